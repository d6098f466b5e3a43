//! `metafed overload`: W4. Measures the engine's capacity on the W4 federation, then offers a
//! multiple of it in an open loop, priorities mixed, with faults on the way (a domain down; then
//! callers with 5 ms deadlines), and reports what every protection turned away, the success
//! share per priority, resident memory, and the exactly-once check.

use metafed_bench::overload::{self, Plan, Report};
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Offered load as a multiple of the measured capacity.
    #[arg(long, default_value_t = 50.0)]
    factor: f64,
    /// Seconds of overload.
    #[arg(long, default_value = "10", value_parser = crate::parse::parse_count::<1>)]
    duration: u64,
    /// Submitting threads (1 to 64).
    #[arg(long, default_value = "2", value_parser = crate::parse::parse_count::<1>)]
    submitters: u64,
    /// Worker threads, 0 (one per core) to 1,024.
    #[arg(long, default_value = "2", allow_hyphen_values = true, value_parser = crate::parse::parse_workers)]
    workers: usize,
    /// Each agent call's latency in microseconds (an I/O agent: no thread held).
    #[arg(long, default_value_t = 1000.0)]
    latency_us: f64,
    /// The concurrency throttle: tasks past admission at once (256 more wait per worker).
    #[arg(long, default_value = "32", value_parser = crate::parse::parse_count::<1>)]
    max_concurrent: u64,
    /// No faults: overload alone.
    #[arg(long)]
    no_faults: bool,
    /// One JSON document (capacity and the report) instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<bool, String> {
    if !(args.factor.is_finite() && args.factor > 0.0) {
        return Err(format!("--factor must be greater than 0, got {}", args.factor));
    }
    if !(args.latency_us.is_finite() && (1.0..=1e6).contains(&args.latency_us)) {
        return Err(format!("--latency-us must be 1 to 1000000, got {}", args.latency_us));
    }
    if args.submitters > 64 {
        return Err(format!("--submitters must be 1 to 64, got {}", args.submitters));
    }
    let go = |plan: &Plan| -> Result<Report, String> {
        let topology = overload::seed_io_topology(args.latency_us).build().map_err(|e| e.to_string())?;
        overload::run(topology, overload::throttled_config(args.workers, args.max_concurrent as usize), plan)
            .map_err(|e| e.to_string())
    };
    // Capacity: what the engine completes per second (other than by rejecting) when offered all
    // it can take, with no faults.
    eprintln!("measuring capacity (2 s, no faults) ...");
    let probe = go(&Plan {
        duration: Duration::from_secs(2),
        offered_per_s: 0.0,
        submitters: args.submitters as usize,
        faults: false,
    })?;
    let served = |r: &Report| r.by_priority.iter().map(|c| c.ok + c.failed + c.timed_out).sum::<u64>();
    let capacity = served(&probe) as f64 / probe.offered_s;
    let target = capacity * args.factor;
    eprintln!("capacity {capacity:.0} tasks/s; offering {target:.0} tasks/s for {} s ...", args.duration);
    let r = go(&Plan {
        duration: Duration::from_secs(args.duration),
        offered_per_s: target,
        submitters: args.submitters as usize,
        faults: !args.no_faults,
    })?;
    let offered_rate = r.offered as f64 / r.offered_s;
    let exact = r.lost == 0 && r.duplicates == 0 && r.unexpected == 0 && r.completed == r.accepted;
    if args.json {
        let doc = serde_json::json!({
            "capacity_per_s": capacity,
            "target_per_s": target,
            "offered_per_s": offered_rate,
            "factor": offered_rate / capacity,
            "exactly_once": exact,
            "report": r,
        });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        return Ok(exact);
    }
    println!(
        "W4 overload: {} s, {} submitters, {} workers, throttle {}",
        args.duration, args.submitters, args.workers, args.max_concurrent
    );
    println!("  capacity (measured)   {capacity:>12.0} tasks/s");
    println!(
        "  offered               {offered_rate:>12.0} tasks/s  ({:.1}x capacity; target {:.0}x{})",
        offered_rate / capacity,
        args.factor,
        if offered_rate < 0.9 * target { ": the submitters could not offer more" } else { "" }
    );
    println!("  refused at submission {:>12}  (Full: no slot for the priority)", r.offered - r.accepted);
    println!("  accepted              {:>12}", r.accepted);
    println!(
        "  completed             {:>12}  lost {}, duplicated {}, unexpected {}: {}",
        r.completed,
        r.lost,
        r.duplicates,
        r.unexpected,
        if exact { "exactly once" } else { "NOT EXACTLY ONCE" }
    );
    println!(
        "  by reason             {}",
        r.reasons.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
    );
    println!("  priority   accepted         ok    failed  timed out   rejected   ok share");
    for (p, c) in r.by_priority.iter().enumerate() {
        println!(
            "  {p:>8} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9.3}%",
            c.accepted,
            c.ok,
            c.failed,
            c.timed_out,
            c.rejected,
            100.0 * r.ok_share(p)
        );
    }
    println!(
        "  resident memory       {} KiB after a quarter, {} KiB peak, {} KiB at the end; drained {}",
        r.rss_kib[0], r.rss_kib[1], r.rss_kib[2], r.drained
    );
    Ok(exact)
}
