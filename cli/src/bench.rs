//! `metafed bench`: the engine against its peers, side by side, interleaved.
//!
//! For each workload and each peer, `--pairs` pairs of runs: engine, peer, engine, peer, ...
//! Each run starts a fresh instance (outside the timing) and runs a closed loop from this thread
//! (`metafed_bench::peers::closed_loop`), up to `--tasks` tasks or `--budget-ms` of time. The report
//! gives each implementation's median throughput and latency over its runs, and the median of
//! the pairwise ratios engine / peer: on a shared machine a single timing is noise, a ratio of
//! neighbours is much less so.

use metafed_bench::driver::{Percentiles, Workload};
use metafed_bench::peers::{NAMES, Run, closed_loop, engine_for, start};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Workloads: w1 (loaded, 1024 in flight), w1-unloaded (1 in flight), w2 (fan-out),
    /// w5 (agents that wait 1 ms on I/O, against tokio), w3 (the tail, without and with hedging),
    /// w6 (a slow agent per domain: round-robin, peak EWMA, latency ejection; not in the default).
    #[arg(long, value_delimiter = ',', default_value = "w1,w1-unloaded,w2,w5,w3")]
    workloads: Vec<String>,
    /// Peers to compare with: stages, pool, actors, ring, inline (against the engine with its
    /// breakers disabled); pool-failsafe, tokio-tower (with breakers, a rate limiter and counters,
    /// against the engine with the same on: engine-guarded).
    #[arg(long, value_delimiter = ',', default_value = "stages,pool,actors,ring,inline,pool-failsafe,tokio-tower")]
    peers: Vec<String>,
    /// Pairs of runs (engine, peer) per peer and workload.
    #[arg(long, default_value_t = 5)]
    pairs: usize,
    /// Tasks per loaded run at most.
    #[arg(long, default_value_t = 2_000_000)]
    tasks: u64,
    /// Tasks per unloaded run at most.
    #[arg(long, default_value_t = 100_000)]
    unloaded_tasks: u64,
    /// Tasks per W5 and W3 run (they run to the count, not to the time budget); W6 runs a tenth.
    #[arg(long, default_value_t = 200_000)]
    io_tasks: u64,
    /// Tasks in flight in W3 (a tail shows where service time, not queueing, dominates).
    #[arg(long, default_value_t = 16)]
    w3_in_flight: usize,
    /// Time per run at most, in milliseconds (a run stops submitting then, and drains).
    #[arg(long, default_value_t = 400)]
    budget_ms: u64,
    /// Worker threads of the engine and of the pool and tokio peers (0: one per core).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::parse::parse_workers, default_value_t = 0)]
    workers: usize,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ImplReport {
    runs: usize,
    tasks_per_s: f64,
    latency_ns: Percentiles,
    ok: u64,
    exact: bool,
    /// Median over the pairs of engine tasks/s / this implementation's tasks/s.
    ratio: Option<f64>,
    /// Median over the pairs of engine p50 latency / this implementation's p50 latency.
    p50_ratio: Option<f64>,
}

#[derive(Serialize)]
struct WorkloadReport {
    workload: String,
    in_flight: usize,
    implementations: BTreeMap<String, ImplReport>,
}

#[derive(Serialize)]
struct Target {
    target: &'static str,
    met: bool,
    figure: String,
}

#[derive(Serialize)]
struct Report {
    machine: String,
    cpus: usize,
    workers: usize,
    pairs: usize,
    workloads: Vec<WorkloadReport>,
    /// W5 (I/O agents), engine and tokio.
    w5: Option<Vec<crate::bench_io::W5Row>>,
    /// W3 (the tail), without and with hedging.
    w3: Option<Vec<crate::bench_io::W3Row>>,
    /// W6 (a slow agent per domain) under each domain policy.
    w6: Option<Vec<crate::bench_io::W6Row>>,
    rss_kib: Option<u64>,
    /// CPU used by a started engine while idle (after a burst of work), percent of one core.
    idle_cpu_percent: Option<f64>,
    targets: Vec<Target>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn median_percentiles(runs: &[Run]) -> Percentiles {
    let m = |f: &dyn Fn(&Percentiles) -> u64| median(runs.iter().map(|r| f(&r.latency_ns) as f64).collect()) as u64;
    Percentiles {
        samples: runs.iter().map(|r| r.latency_ns.samples).sum(),
        p50: m(&|p| p.p50),
        p99: m(&|p| p.p99),
        p999: m(&|p| p.p999),
        max: m(&|p| p.max),
    }
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// CPU time (user + system, all threads) this process uses over one second while a started
/// engine sits idle after a burst of work: its workers should be parked.
pub fn idle_cpu() -> Option<f64> {
    fn cpu_ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }
    let engine = metafed::Engine::start(metafed::Topology::seed(0.12).ok()?, metafed::EngineConfig::default()).ok()?;
    let _ = metafed_bench::driver::closed_loop(&engine, &metafed_bench::driver::Load::w1(200_000), |_| {});
    std::thread::sleep(Duration::from_millis(100)); // past the idle spin and yield phase
    let before = cpu_ticks()?;
    std::thread::sleep(Duration::from_secs(1));
    let ticks = cpu_ticks()?.saturating_sub(before);
    // Clock ticks are 1/100 s on Linux: percent of one core over one second.
    Some(ticks as f64)
}

/// Resident memory of a fresh process running the default engine (the seed's 3 x 3, default
/// configuration) through 100,000 W1 tasks: `metafed bench-rss` in a child process.
fn rss_of_default_engine() -> Option<u64> {
    let out = std::process::Command::new(std::env::current_exe().ok()?).arg("bench-rss").output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

pub fn rss_probe() {
    let engine =
        metafed::Engine::start(metafed::Topology::seed(0.12).expect("valid"), metafed::EngineConfig::default())
            .expect("starts");
    let _ = metafed_bench::driver::closed_loop(&engine, &metafed_bench::driver::Load::w1(100_000), |_| {});
    println!("{}", metafed_bench::overload::proc_status_kib("VmHWM"));
}

pub fn run(args: &Args) -> Result<(), String> {
    for p in &args.peers {
        if p.starts_with("engine") || !NAMES.contains(&p.as_str()) {
            return Err(format!(
                "unknown peer {p:?} in --peers (peers: stages, pool, actors, ring, inline, pool-failsafe, tokio-tower)"
            ));
        }
    }
    if args.pairs == 0 {
        return Err("--pairs must be at least 1".into());
    }
    let budget = Duration::from_millis(args.budget_ms);
    let mut workloads = Vec::new();
    let mut id_base = 0u64;
    let mut next_ids = || {
        id_base += 1;
        id_base << 32
    };
    let (mut w5, mut w3, mut w6) = (None, None, None);
    for w in &args.workloads {
        let (workload, in_flight, tasks) = match w.as_str() {
            "w1" => (Workload::Route, 1024, args.tasks),
            "w1-unloaded" => (Workload::Route, 1, args.unloaded_tasks),
            "w2" => (Workload::FanOut, 1024, args.tasks / 2),
            "w5" => {
                if !args.json {
                    eprintln!("w5: {} pairs, engine and tokio, p = 0 and 0.12 ...", args.pairs);
                }
                w5 = Some(crate::bench_io::w5(args.pairs, args.io_tasks, args.workers, &mut next_ids)?);
                continue;
            }
            "w3" => {
                if !args.json {
                    eprintln!("w3: {} pairs, without and with hedging ...", args.pairs);
                }
                w3 = Some(crate::bench_io::w3(
                    args.pairs,
                    args.io_tasks,
                    args.workers,
                    args.w3_in_flight,
                    &mut next_ids,
                )?);
                continue;
            }
            "w6" => {
                if !args.json {
                    eprintln!("w6: {} rounds of round-robin, peak EWMA and latency ejection ...", args.pairs);
                }
                // Calls of 1 ms at 16 in flight: a tenth of the I/O runs' tasks takes about 1.3 s.
                w6 = Some(crate::bench_io::w6(
                    args.pairs,
                    (args.io_tasks / 10).max(1_000),
                    args.workers,
                    args.w3_in_flight,
                    &mut next_ids,
                )?);
                continue;
            }
            other => return Err(format!("unknown workload {other:?} (w1, w1-unloaded, w2, w5, w3, w6)")),
        };
        if !args.json {
            eprintln!("{w}: {} pairs against {} ...", args.pairs, args.peers.join(", "));
        }
        let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        let mut ratios: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for _ in 0..args.pairs {
            for peer in &args.peers {
                let mut pair = Vec::with_capacity(2);
                for name in [engine_for(peer), peer.as_str()] {
                    let mut f = start(name, args.workers).expect("known");
                    let r = closed_loop(&mut *f, workload, in_flight, tasks, budget, next_ids());
                    drop(f);
                    if !r.exact() {
                        return Err(format!(
                            "{name} on {w}: {} ok against the oracle's {}, {} lost, {} duplicated",
                            r.ok, r.oracle_ok, r.lost, r.duplicated
                        ));
                    }
                    pair.push(r.clone());
                    runs.entry(name.to_string()).or_default().push(r);
                }
                let e = ratios.entry(peer.clone()).or_default();
                e.0.push(pair[0].tasks_per_s / pair[1].tasks_per_s.max(1e-9));
                e.1.push(pair[0].latency_ns.p50 as f64 / (pair[1].latency_ns.p50.max(1)) as f64);
            }
        }
        let implementations = runs
            .into_iter()
            .map(|(name, rs)| {
                let r = ratios.get(&name);
                let report = ImplReport {
                    runs: rs.len(),
                    tasks_per_s: median(rs.iter().map(|r| r.tasks_per_s).collect()),
                    latency_ns: median_percentiles(&rs),
                    ok: rs.iter().map(|r| r.ok).sum(),
                    exact: rs.iter().all(Run::exact),
                    ratio: r.map(|r| median(r.0.clone())),
                    p50_ratio: r.map(|r| median(r.1.clone())),
                };
                (name, report)
            })
            .collect();
        workloads.push(WorkloadReport { workload: w.clone(), in_flight, implementations });
    }
    let rss_kib = rss_of_default_engine();
    let idle_cpu_percent = idle_cpu();
    let mut targets = targets(&workloads, rss_kib);
    io_targets(&mut targets, w5.as_deref(), w3.as_deref());
    let report = Report {
        machine: machine(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        workers: if args.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            args.workers
        },
        pairs: args.pairs,
        workloads,
        w5,
        w3,
        w6,
        rss_kib,
        idle_cpu_percent,
        targets,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn targets(workloads: &[WorkloadReport], rss: Option<u64>) -> Vec<Target> {
    let mut t = Vec::new();
    let find = |w: &str| workloads.iter().find(|r| r.workload == w);
    if let Some(w1) = find("w1") {
        let peers = ["stages", "pool", "actors"];
        if let Some((best, r)) = peers
            .iter()
            .filter_map(|p| w1.implementations.get(*p).map(|r| (p, r)))
            .max_by(|a, b| a.1.tasks_per_s.total_cmp(&b.1.tasks_per_s))
        {
            let ratio = r.ratio.unwrap_or(0.0);
            t.push(Target {
                target: "W1 loaded throughput >= 2x the best peer",
                met: ratio >= 2.0,
                figure: format!("{ratio:.2}x the best peer ({best}, {:.0} tasks/s)", r.tasks_per_s),
            });
        }
        for (peer, want, what) in [
            ("pool", 1.0, "W1 features off: engine / crossbeam pool >= 1.0x"),
            ("pool-failsafe", 2.0, "W1 features on: engine-guarded / pool + failsafe-rs + governor >= 2.0x"),
            ("tokio-tower", 5.0, "W1 features on: engine-guarded / tokio + tower + failsafe-rs + governor >= 5.0x"),
        ] {
            if let Some(r) = w1.implementations.get(peer) {
                let ratio = r.ratio.unwrap_or(0.0);
                t.push(Target {
                    target: what,
                    met: ratio >= want,
                    figure: format!("{ratio:.2}x ({peer}: {:.0} tasks/s)", r.tasks_per_s),
                });
            }
        }
        if let (Some(on), Some(off)) = (w1.implementations.get("engine-guarded"), w1.implementations.get("engine")) {
            t.push(Target {
                target: "W1: what the features cost the engine (engine-guarded / engine), reported",
                met: true,
                figure: format!(
                    "{:.2}x (medians: {:.0} / {:.0} tasks/s)",
                    on.tasks_per_s / off.tasks_per_s.max(1e-9),
                    on.tasks_per_s,
                    off.tasks_per_s
                ),
            });
        }
        if let Some(ring) = w1.implementations.get("ring") {
            let ratio = ring.ratio.unwrap_or(0.0);
            t.push(Target {
                target: "W1 loaded throughput >= 0.5x the bare ring round trip",
                met: ratio >= 0.5,
                figure: format!("{ratio:.3}x the ring ({:.0} tasks/s)", ring.tasks_per_s),
            });
        }
    }
    if let Some(u) = find("w1-unloaded") {
        if let Some(ring) = u.implementations.get("ring") {
            let ratio = ring.p50_ratio.unwrap_or(0.0);
            t.push(Target {
                target: "W1 unloaded p50 <= 1.5x the bare ring round trip's p50",
                met: ratio <= 1.5,
                figure: format!("{ratio:.2}x (ring p50 {} ns)", ring.latency_ns.p50),
            });
        }
        if let Some(e) = u.implementations.get("engine") {
            t.push(Target {
                target: "W1 unloaded p99 <= 5 us",
                met: e.latency_ns.p99 <= 5_000,
                figure: format!("p99 {} ns (p50 {} ns)", e.latency_ns.p99, e.latency_ns.p50),
            });
        }
    }
    if let Some(kib) = rss {
        t.push(Target {
            target: "resident memory of the default topology < 16 MiB",
            met: kib < 16 * 1024,
            figure: format!("{:.1} MiB peak RSS of a process running the default engine", kib as f64 / 1024.0),
        });
    }
    t.push(Target {
        target: "zero heap allocations per task",
        met: true,
        figure: "checked by tests/alloc.rs (a counting allocator over 200,000 tasks)".into(),
    });
    t
}

fn io_targets(t: &mut Vec<Target>, w5: Option<&[crate::bench_io::W5Row]>, w3: Option<&[crate::bench_io::W3Row]>) {
    if let Some(rows) = w5 {
        for p in [0.0, 0.12] {
            let engine = rows.iter().find(|r| r.p == p && r.implementation == "engine");
            let tokio = rows.iter().find(|r| r.p == p && r.implementation == "tokio");
            if let (Some(e), Some(k)) = (engine, tokio) {
                t.push(Target {
                    target: if p == 0.0 {
                        "W5 (p = 0) >= 0.5 of the I/O limit"
                    } else {
                        "W5 (p = 0.12) >= 0.5 of the I/O limit"
                    },
                    met: e.of_limit >= 0.5,
                    figure: format!("{:.3} of the limit ({:.0} tasks/s)", e.of_limit, e.tasks_per_s),
                });
                let ratio = k.engine_ratio.unwrap_or(0.0);
                t.push(Target {
                    target: if p == 0.0 { "W5 (p = 0) ahead of tokio" } else { "W5 (p = 0.12) ahead of tokio" },
                    met: ratio > 1.0,
                    figure: format!("{ratio:.2}x tokio ({:.0} tasks/s, {:.3} of the limit)", k.tasks_per_s, k.of_limit),
                });
                t.push(Target {
                    target: if p == 0.0 {
                        "W5 (p = 0) success count equals the oracle's"
                    } else {
                        "W5 (p = 0.12) success count equals the oracle's"
                    },
                    met: e.exact,
                    figure: format!("exact on every run: {}", e.exact),
                });
            }
        }
    }
    if let Some(rows) = w3
        && let (Some(none), Some(hedged)) =
            (rows.iter().find(|r| r.hedge == "none"), rows.iter().find(|r| r.hedge == "p95"))
    {
        let cut = none.latency_ns.p999 as f64 / hedged.latency_ns.p999.max(1) as f64;
        t.push(Target {
            target: "W3: hedging cuts p99.9 by 10x or more",
            met: cut >= 10.0,
            figure: format!(
                "{cut:.1}x ({:.0} us without, {:.0} us with)",
                none.latency_ns.p999 as f64 / 1e3,
                hedged.latency_ns.p999 as f64 / 1e3
            ),
        });
        t.push(Target {
            target: "W3: for at most a few percent extra calls",
            met: hedged.extra_calls_percent <= 6.0,
            figure: format!("{:.2}% extra calls", hedged.extra_calls_percent),
        });
    }
}

fn print_report(r: &Report) {
    println!(
        "metafed bench: {} ({} CPUs), engine and pool/actors with {} worker{}, {} pairs per peer",
        r.machine,
        r.cpus,
        r.workers,
        if r.workers == 1 { "" } else { "s" },
        r.pairs
    );
    for w in &r.workloads {
        println!();
        println!(
            "{} ({} in flight): medians over the runs; ratio = median of the pairwise engine/peer ratios \
             (engine-guarded for pool-failsafe and tokio-tower)",
            w.workload, w.in_flight
        );
        println!(
            "  {:<14} {:>14} {:>10} {:>10} {:>10} {:>16} {:>14}",
            "impl", "tasks/s", "p50", "p99", "p99.9", "engine/impl", "p50 eng/impl"
        );
        for (name, i) in &w.implementations {
            let us = |ns: u64| format!("{:.2} us", ns as f64 / 1e3);
            println!(
                "  {:<14} {:>14.0} {:>10} {:>10} {:>10} {:>16} {:>14}",
                name,
                i.tasks_per_s,
                us(i.latency_ns.p50),
                us(i.latency_ns.p99),
                us(i.latency_ns.p999),
                i.ratio.map_or("-".into(), |x| format!("{x:.3}x")),
                i.p50_ratio.map_or("-".into(), |x| format!("{x:.2}x"))
            );
        }
    }
    if let Some(rows) = &r.w5 {
        crate::bench_io::print_w5(rows);
    }
    if let Some(rows) = &r.w3 {
        crate::bench_io::print_w3(rows);
    }
    if let Some(rows) = &r.w6 {
        crate::bench_io::print_w6(rows);
    }
    println!();
    if let Some(p) = r.idle_cpu_percent {
        println!("idle engine (default configuration, after 200,000 tasks): {p:.1}% of one core over 1 s");
        println!();
    }
    println!("targets");
    for t in &r.targets {
        println!("  [{}] {}: {}", if t.met { "met" } else { "missed" }, t.target, t.figure);
    }
}

/// A minimal W1 closed loop through the engine's Rust API, the same loop as
/// `benches/c/w1_from_c.c` runs through the C ABI: batches of 64, 1024 in flight, no latency
/// sampling. Prints the tasks per second.
pub fn probe(tasks: u64, workers: usize, guarded: bool) -> Result<(), String> {
    use metafed::{Completion, DomainId, Engine, EngineConfig, Levels, Task, Ticket, Topology};
    let (topology, config) = if guarded {
        metafed_bench::peers::guarded_setup(workers)
    } else {
        let mut b = Topology::seed_builder(0.12);
        b.breakers(Levels::disabled());
        (b.build().map_err(|e| e.to_string())?, EngineConfig { workers, ..EngineConfig::default() })
    };
    let engine = Engine::start(topology, config).map_err(|e| e.to_string())?;
    let mut batch = [Task::new(0, DomainId(0)); 64];
    let mut tickets = [Ticket::default(); 64];
    let mut out = vec![Completion::default(); 256];
    let (mut sent, mut done, mut ok) = (0u64, 0u64, 0u64);
    let start = std::time::Instant::now();
    while done < tasks {
        let room = (1024 - (sent - done)).min(64).min(tasks - sent) as usize;
        for (k, t) in batch[..room].iter_mut().enumerate() {
            let i = sent + k as u64;
            *t = Task::new(i, DomainId((i % 3) as u16));
        }
        if room > 0 {
            sent += engine.submit_batch(&batch[..room], &mut tickets[..room]).unwrap_or(0) as u64;
        }
        let got = if room == 0 && sent > done {
            engine.poll_wait(&mut out, None).map_err(|e| e.to_string())?
        } else {
            engine.poll(&mut out)
        };
        ok += out[..got].iter().filter(|c| c.is_ok()).count() as u64;
        done += got as u64;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    println!("{done} tasks, {ok} ok, tasks/s {rate:.0}");
    Ok(())
}

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Worker counts to measure.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::parse::parse_workers, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Submitting threads, each running its own closed loop (1024 in flight) on the one engine.
    #[arg(long, default_value_t = 1)]
    submitters: usize,
    /// Time per point, in milliseconds.
    #[arg(long, default_value_t = 500)]
    budget_ms: u64,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ScalePoint {
    implementation: &'static str,
    workers: usize,
    submitters: usize,
    tasks_per_s: f64,
    exact: bool,
}

/// Many submitting threads against one engine (and against the crossbeam pool, the best peer on
/// one submitter): W1, each submitter with its own ids and 1024 tasks in flight, for a fixed
/// time. How throughput scales with workers when one submitter no longer bounds it.
pub fn scale(args: &ScaleArgs) -> Result<(), String> {
    use metafed_bench::peers::{EnginePeer, Federation, PoolPeer};
    use std::sync::Barrier;
    let budget = Duration::from_millis(args.budget_ms);
    let mut points = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &w in &args.workers {
        // 0 means one per core, for the engine and the pool alike: report the number used.
        let w = if w == 0 { cores } else { w };
        for implementation in ["engine", "pool"] {
            // Engine: one engine, each submitter with its own view (its own buffers and waitable
            // tickets). Pool: the crossbeam pool cannot be shared without serialising its
            // submitters on one channel end, so each submitter gets its own pool of
            // workers / submitters threads: an upper bound for the peer.
            let engine = EnginePeer::new(w);
            let barrier = Barrier::new(args.submitters);
            let runs: Vec<Run> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..args.submitters)
                    .map(|s| {
                        let (engine, barrier) = (&engine, &barrier);
                        scope.spawn(move || -> Run {
                            let first = (s as u64 + 1) << 40;
                            if implementation == "engine" {
                                let mut view = metafed_bench::peers::SharedEngine::new(engine);
                                barrier.wait();
                                closed_loop(&mut view, Workload::Route, 1024, 50_000_000, budget, first)
                            } else {
                                let mut pool = PoolPeer::new((w / args.submitters).max(1));
                                barrier.wait();
                                closed_loop(
                                    &mut pool as &mut dyn Federation,
                                    Workload::Route,
                                    1024,
                                    50_000_000,
                                    budget,
                                    first,
                                )
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a submitter")).collect()
            });
            points.push(ScalePoint {
                implementation,
                workers: w,
                submitters: args.submitters,
                tasks_per_s: runs.iter().map(|r| r.tasks_per_s).sum(),
                exact: runs.iter().all(Run::exact),
            });
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&points).map_err(|e| e.to_string())?);
    } else {
        println!(
            "W1, {} submitting threads, {} ms per point ({} CPUs: {})",
            args.submitters,
            args.budget_ms,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            machine()
        );
        println!("  {:<8} {:>8} {:>16} {:>6}", "impl", "workers", "tasks/s", "exact");
        for p in &points {
            println!("  {:<8} {:>8} {:>16.0} {:>6}", p.implementation, p.workers, p.tasks_per_s, p.exact);
        }
    }
    Ok(())
}
