//! `metafed overload`: W4. Measures the engine's capacity on the W4 federation and its latency
//! unloaded, then offers a multiple of the capacity in an open loop, priorities mixed, with
//! faults on the way (a domain down; then callers with 5 ms deadlines), and reports what every
//! protection turned away, the success share per priority, the latency of the tasks admitted,
//! resident memory, and the exactly-once check; with the throttle fixed, adaptive (AIMD, whose
//! limit's path it reports), or each in turn.

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
    /// The throttle's limit: `fixed` (`--max-concurrent`), `aimd` (Netflix concurrency-limits'
    /// AIMD from `--max-concurrent`, bounded by 4 and 8 x it, driven by the admitted tasks'
    /// latency against `--target-ms`), `gradient2` (its Gradient2, the same bounds, driven by the
    /// latency's gradient), or several in turn, side by side (`fixed,aimd,gradient2`).
    #[arg(long, default_value = "fixed", value_parser = parse_throttles)]
    throttle: Throttles,
    /// The adaptive throttle's target: a task slower than this from admission counts as a drop.
    #[arg(long, default_value_t = 5.0)]
    target_ms: f64,
    /// How long a task may wait for the throttle, from its submission, before it is rejected
    /// (`Throttled`); 0 for no bound (only its deadline).
    #[arg(long, default_value_t = 0.0)]
    queue_timeout_ms: f64,
    /// No faults: overload alone.
    #[arg(long)]
    no_faults: bool,
    /// One JSON document (capacity and the report) instead of the table.
    #[arg(long)]
    json: bool,
}

/// How the throttle's limit is set in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Throttle {
    Fixed,
    Aimd,
    Gradient2,
}

/// The throttles to run, in order.
#[derive(Clone, Debug)]
pub struct Throttles(Vec<Throttle>);

fn parse_throttles(s: &str) -> Result<Throttles, String> {
    s.split(',')
        .map(|t| match t.trim() {
            "fixed" => Ok(Throttle::Fixed),
            "aimd" => Ok(Throttle::Aimd),
            "gradient2" => Ok(Throttle::Gradient2),
            other => Err(format!("unknown throttle {other:?}: fixed, aimd, gradient2, or several as fixed,aimd")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Throttles)
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
    if !(args.target_ms.is_finite() && (0.001..=60_000.0).contains(&args.target_ms)) {
        return Err(format!("--target-ms must be 0.001 to 60000, got {}", args.target_ms));
    }
    if !(args.queue_timeout_ms.is_finite() && (0.0..=60_000.0).contains(&args.queue_timeout_ms)) {
        return Err(format!("--queue-timeout-ms must be 0 to 60000, got {}", args.queue_timeout_ms));
    }
    let go_with = |plan: &Plan, throttle: Throttle| -> Result<Report, String> {
        let topology = overload::seed_io_topology(args.latency_us).build().map_err(|e| e.to_string())?;
        let mut config = overload::throttled_config(args.workers, args.max_concurrent as usize);
        config.admission.queue_timeout = Duration::from_secs_f64(args.queue_timeout_ms / 1e3);
        let algorithm = match throttle {
            Throttle::Fixed => None,
            Throttle::Aimd => Some(metafed::policy::LimitAlgorithm::Aimd),
            Throttle::Gradient2 => Some(metafed::policy::LimitAlgorithm::Gradient2),
        };
        if let Some(algorithm) = algorithm {
            config.adaptive_throttle = Some(metafed::policy::AdaptiveThrottle {
                algorithm,
                initial_limit: args.max_concurrent,
                min_limit: 4.min(args.max_concurrent),
                max_limit: args.max_concurrent * 8,
                backoff_ratio: 0.9,
                target_latency: Duration::from_secs_f64(args.target_ms / 1e3),
                ..metafed::policy::AdaptiveThrottle::default()
            });
        }
        overload::run(topology, config, plan).map_err(|e| e.to_string())
    };
    let go = |plan: &Plan| go_with(plan, Throttle::Fixed);
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
    // Unloaded: a twentieth of the capacity, no faults, for the latency admitted tasks should keep.
    eprintln!("measuring latency unloaded (1 s at {:.0} tasks/s) ...", capacity / 20.0);
    let unloaded =
        go(&Plan { duration: Duration::from_secs(1), offered_per_s: capacity / 20.0, submitters: 1, faults: false })?;
    let mut runs = Vec::new();
    for &throttle in &args.throttle.0 {
        eprintln!(
            "capacity {capacity:.0} tasks/s; offering {target:.0} tasks/s for {} s, throttle {throttle:?} ...",
            args.duration
        );
        let plan = Plan {
            duration: Duration::from_secs(args.duration),
            offered_per_s: target,
            submitters: args.submitters as usize,
            faults: !args.no_faults,
        };
        runs.push((throttle, go_with(&plan, throttle)?));
    }
    if runs.len() > 1 {
        return compare(args, capacity, &unloaded, &runs);
    }
    let r = runs.pop().expect("one throttle at least").1;
    let offered_rate = r.offered as f64 / r.offered_s;
    let exact = r.lost == 0 && r.duplicates == 0 && r.unexpected == 0 && r.completed == r.accepted;
    if args.json {
        let doc = serde_json::json!({
            "capacity_per_s": capacity,
            "target_per_s": target,
            "offered_per_s": offered_rate,
            "factor": offered_rate / capacity,
            "exactly_once": exact,
            "unloaded_ok_latency_ns": unloaded.ok_latency_ns,
            "report": r,
        });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        return Ok(exact);
    }
    println!(
        "W4 overload: {} s, {} submitters, {} workers, throttle {}{}",
        args.duration,
        args.submitters,
        args.workers,
        args.max_concurrent,
        queue_timeout(args)
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
        "  latency of ok tasks   p50 {}, p99 {} ({:.1}x the unloaded p99 of {})",
        ms(r.ok_latency_ns.p50),
        ms(r.ok_latency_ns.p99),
        r.ok_latency_ns.p99 as f64 / unloaded.ok_latency_ns.p99.max(1) as f64,
        ms(unloaded.ok_latency_ns.p99)
    );
    if !r.limit_path.is_empty() {
        println!("  adaptive limit        {}", limit_words(&r.limit_path));
    }
    println!(
        "  resident memory       {} KiB after a quarter, {} KiB peak, {} KiB at the end; drained {}",
        r.rss_kib[0], r.rss_kib[1], r.rss_kib[2], r.drained
    );
    Ok(exact)
}

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// The limit's path in a line: its range, and a sample every second.
fn limit_words(path: &[(f64, u64)]) -> String {
    let (lo, hi) = path.iter().fold((u64::MAX, 0), |(lo, hi), &(_, l)| (lo.min(l), hi.max(l)));
    let per_s: Vec<String> = path.iter().step_by(10).map(|(t, l)| format!("{t:.0}s:{l}")).collect();
    format!("{lo} to {hi}; {}", per_s.join(" "))
}

/// The queue timeout, for a report's first line ("" when there is none).
fn queue_timeout(args: &Args) -> String {
    if args.queue_timeout_ms > 0.0 { format!(", queue timeout {} ms", args.queue_timeout_ms) } else { String::new() }
}

/// Each throttle's run side by side.
fn compare(args: &Args, capacity: f64, unloaded: &Report, runs: &[(Throttle, Report)]) -> Result<bool, String> {
    let exact = |r: &Report| r.lost == 0 && r.duplicates == 0 && r.unexpected == 0 && r.completed == r.accepted;
    let all_exact = runs.iter().all(|(_, r)| exact(r));
    if args.json {
        let doc = serde_json::json!({
            "capacity_per_s": capacity,
            "unloaded_ok_latency_ns": unloaded.ok_latency_ns,
            "exactly_once": all_exact,
            "runs": runs.iter().map(|(t, r)| serde_json::json!({"throttle": t, "report": r})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        return Ok(all_exact);
    }
    println!(
        "W4 overload: {} s at {:.0}x the measured capacity of {capacity:.0} tasks/s, {} submitters, {} workers{}{}",
        args.duration,
        args.factor,
        args.submitters,
        args.workers,
        if args.no_faults { ", no faults" } else { ", with W4's faults" },
        queue_timeout(args)
    );
    println!("  unloaded p99 of ok tasks: {}", ms(unloaded.ok_latency_ns.p99));
    println!(
        "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>7}  limit",
        "throttle", "accepted", "ok", "p50", "p99", "p99/unl", "ok p0", "ok p3", "exact"
    );
    for (t, r) in runs {
        println!(
            "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>7.1}x {:>8.2}% {:>8.2}% {:>7}  {}",
            format!("{t:?}").to_lowercase(),
            r.accepted,
            r.by_priority.iter().map(|c| c.ok).sum::<u64>(),
            ms(r.ok_latency_ns.p50),
            ms(r.ok_latency_ns.p99),
            r.ok_latency_ns.p99 as f64 / unloaded.ok_latency_ns.p99.max(1) as f64,
            100.0 * r.ok_share(0),
            100.0 * r.ok_share(3),
            if exact(r) { "yes" } else { "NO" },
            if r.limit_path.is_empty() {
                format!("{} (fixed)", args.max_concurrent)
            } else {
                limit_words(&r.limit_path)
            }
        );
    }
    Ok(all_exact)
}
