//! `metafed bench`'s workloads of agents that wait: W5 (I/O, the engine against tokio) and W3
//! (the tail, without and with hedging). See `WORKLOADS.md`.

use metafed_bench::driver::{Percentiles, Workload};
use metafed_bench::peers::io::{TokioIoPeer, W5_DELAY, w3_engine, w5_engine};
use metafed_bench::peers::{EnginePeer, Federation, Run, closed_loop_sampled};
use serde::Serialize;
use std::time::Duration;

/// W5: 1,024 tasks in flight.
pub const W5_IN_FLIGHT: usize = 1024;

/// One implementation's W5 figures at one error rate.
#[derive(Serialize)]
pub struct W5Row {
    pub p: f64,
    pub implementation: &'static str,
    pub runs: usize,
    pub tasks_per_s: f64,
    /// tasks/s over the I/O limit (in-flight / delay).
    pub of_limit: f64,
    pub latency_ns: Percentiles,
    pub exact: bool,
    /// Median over the pairs of engine tasks/s / tokio tasks/s (on the tokio row).
    pub engine_ratio: Option<f64>,
}

/// W3's figures with one hedging policy.
#[derive(Serialize)]
pub struct W3Row {
    pub hedge: &'static str,
    pub runs: usize,
    pub in_flight: usize,
    pub tasks_per_s: f64,
    pub latency_ns: Percentiles,
    /// Hedge attempts sent per task, percent.
    pub extra_calls_percent: f64,
    /// Sub-tasks a hedge won, per task, percent.
    pub hedge_wins_percent: f64,
    pub exact: bool,
}

/// W6 (a slow agent per domain) on the engine under one domain policy: medians over the pairs.
#[derive(Clone, Debug, Serialize)]
pub struct W6Row {
    pub policy: &'static str,
    pub runs: usize,
    pub in_flight: usize,
    pub tasks_per_s: f64,
    pub latency_ns: Percentiles,
    /// The slow agents' share of the attempts, percent.
    pub slow_share_percent: f64,
    /// Attempts beyond one per sub-task, per task, percent.
    pub extra_calls_percent: f64,
    pub ejections: u64,
    pub exact: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_latency(runs: &[Run]) -> Percentiles {
    let m = |f: &dyn Fn(&Percentiles) -> u64| median(runs.iter().map(|r| f(&r.latency_ns) as f64).collect()) as u64;
    Percentiles {
        samples: runs.iter().map(|r| r.latency_ns.samples).sum(),
        p50: m(&|p| p.p50),
        p99: m(&|p| p.p99),
        p999: m(&|p| p.p999),
        max: m(&|p| p.max),
    }
}

/// The I/O limit of W5: tasks in flight over the agent delay.
pub fn w5_limit() -> f64 {
    W5_IN_FLIGHT as f64 / W5_DELAY.as_secs_f64()
}

/// W5, engine and tokio in turn (`pairs` pairs per error rate), `tasks` tasks per run.
pub fn w5(pairs: usize, tasks: u64, workers: usize, next_ids: &mut dyn FnMut() -> u64) -> Result<Vec<W5Row>, String> {
    let mut rows = Vec::new();
    for p in [0.0, 0.12] {
        let (mut engine_runs, mut tokio_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..pairs {
            let mut pair = Vec::new();
            for name in ["engine", "tokio"] {
                let mut f: Box<dyn Federation> = if name == "engine" {
                    Box::new(w5_engine(p, workers))
                } else {
                    Box::new(TokioIoPeer::new(p, workers))
                };
                let r = closed_loop_sampled(
                    &mut *f,
                    Workload::Route,
                    W5_IN_FLIGHT,
                    tasks,
                    Duration::from_secs(3600),
                    next_ids(),
                    p,
                    64,
                );
                drop(f);
                if !r.exact() {
                    return Err(format!(
                        "{name} on w5 (p = {p}): {} ok against the oracle's {}, {} lost, {} duplicated",
                        r.ok, r.oracle_ok, r.lost, r.duplicated
                    ));
                }
                pair.push(r.tasks_per_s);
                if name == "engine" { engine_runs.push(r) } else { tokio_runs.push(r) }
            }
            ratios.push(pair[0] / pair[1].max(1e-9));
        }
        for (name, runs, ratio) in
            [("engine", &engine_runs, None), ("tokio", &tokio_runs, Some(median(ratios.clone())))]
        {
            let tps = median(runs.iter().map(|r| r.tasks_per_s).collect());
            rows.push(W5Row {
                p,
                implementation: name,
                runs: runs.len(),
                tasks_per_s: tps,
                of_limit: tps / w5_limit(),
                latency_ns: median_latency(runs),
                exact: runs.iter().all(Run::exact),
                engine_ratio: ratio,
            });
        }
    }
    Ok(rows)
}

/// A warm-up of 5,000 tasks, then `tasks` with every task's latency recorded: the measured run,
/// and the engine's stats before and after it.
fn warm_then_measure(
    mut peer: EnginePeer,
    in_flight: usize,
    tasks: u64,
    next_ids: &mut dyn FnMut() -> u64,
) -> (Run, metafed::stats::Stats, metafed::stats::Stats) {
    let mut run = |peer: &mut EnginePeer, n: u64, budget: Duration, every: u64| {
        closed_loop_sampled(peer, Workload::Route, in_flight, n, budget, next_ids(), 0.0, every)
    };
    let _ = run(&mut peer, 5_000, Duration::from_secs(60), 64);
    let before = peer.engine().stats();
    let r = run(&mut peer, tasks, Duration::from_secs(3600), 1);
    (r, before, peer.engine().stats())
}

/// W3: the engine without hedging and with a hedge after the observed p95, in turn.
pub fn w3(
    pairs: usize,
    tasks: u64,
    workers: usize,
    in_flight: usize,
    next_ids: &mut dyn FnMut() -> u64,
) -> Result<Vec<W3Row>, String> {
    let policies: [(&'static str, Option<f64>); 2] = [("none", None), ("p95", Some(95.0))];
    let mut runs: Vec<Vec<(Run, f64, f64)>> = vec![Vec::new(), Vec::new()];
    for _ in 0..pairs {
        for (k, (name, hedge)) in policies.iter().enumerate() {
            // The warm-up makes the percentile delay known before the measured run.
            let (r, before, after) = warm_then_measure(w3_engine(*hedge, workers), in_flight, tasks, next_ids);
            if !r.exact() {
                return Err(format!("engine on w3 (hedge {name}): {} ok of {}, {} lost", r.ok, r.tasks, r.lost));
            }
            let sum = |s: &metafed::stats::Stats, f: &dyn Fn(&metafed::stats::DomainStats) -> u64| {
                s.domains.iter().map(f).sum::<u64>()
            };
            let hedges = sum(&after, &|d| d.hedges) - sum(&before, &|d| d.hedges);
            let wins = sum(&after, &|d| d.hedge_wins) - sum(&before, &|d| d.hedge_wins);
            let per = |x: u64| 100.0 * x as f64 / r.tasks.max(1) as f64;
            runs[k].push((r.clone(), per(hedges), per(wins)));
        }
    }
    Ok(policies
        .iter()
        .zip(runs)
        .map(|((name, _), rs)| {
            let plain: Vec<Run> = rs.iter().map(|x| x.0.clone()).collect();
            W3Row {
                hedge: name,
                runs: rs.len(),
                in_flight,
                tasks_per_s: median(plain.iter().map(|r| r.tasks_per_s).collect()),
                latency_ns: median_latency(&plain),
                extra_calls_percent: median(rs.iter().map(|x| x.1).collect()),
                hedge_wins_percent: median(rs.iter().map(|x| x.2).collect()),
                exact: plain.iter().all(Run::exact),
            }
        })
        .collect())
}

pub fn print_w5(rows: &[W5Row]) {
    println!();
    println!(
        "w5 I/O ({W5_IN_FLIGHT} in flight, every call 1 ms without holding a thread; I/O limit {:.0} tasks/s): medians; \
         engine/tokio = median of pairwise ratios",
        w5_limit()
    );
    println!(
        "  {:<6} {:<7} {:>12} {:>9} {:>10} {:>10} {:>10} {:>6} {:>13}",
        "p", "impl", "tasks/s", "of limit", "p50", "p99", "p99.9", "exact", "engine/tokio"
    );
    for r in rows {
        let ms = |ns: u64| format!("{:.2} ms", ns as f64 / 1e6);
        println!(
            "  {:<6} {:<7} {:>12.0} {:>9.3} {:>10} {:>10} {:>10} {:>6} {:>13}",
            r.p,
            r.implementation,
            r.tasks_per_s,
            r.of_limit,
            ms(r.latency_ns.p50),
            ms(r.latency_ns.p99),
            ms(r.latency_ns.p999),
            r.exact,
            r.engine_ratio.map_or("-".into(), |x| format!("{x:.2}x"))
        );
    }
}

/// W6's common call, live: 1 ms (W5's scale). At W3's 10 us the engine's timer thread, which
/// completes simulated I/O, rounds every call to tens of microseconds and hides the slow agent.
pub const W6_BASE_US: f64 = 1_000.0;

/// W6 (WORKLOADS.md): a slow agent per domain, under round-robin, peak EWMA and round-robin with
/// latency ejection, interleaved (A B C A B C ...), each run after a warm-up.
pub fn w6(
    pairs: usize,
    tasks: u64,
    workers: usize,
    in_flight: usize,
    next_ids: &mut dyn FnMut() -> u64,
) -> Result<Vec<W6Row>, String> {
    let policies = metafed_bench::peers::io::w6_policies();
    let mut runs: Vec<Vec<(Run, f64, f64, u64)>> = vec![Vec::new(); policies.len()];
    for _ in 0..pairs {
        for (k, (name, balance, outlier)) in policies.iter().enumerate() {
            let peer = metafed_bench::peers::io::w6_engine(W6_BASE_US, *balance, *outlier, workers);
            let (r, before, after) = warm_then_measure(peer, in_flight, tasks, next_ids);
            if !r.exact() {
                return Err(format!("engine on w6 ({name}): {} ok of {}, {} lost", r.ok, r.tasks, r.lost));
            }
            let calls = |s: &metafed::stats::Stats| s.agents.iter().map(|a| a.calls).sum::<u64>();
            let slow = |s: &metafed::stats::Stats| s.agents.iter().skip(2).step_by(3).map(|a| a.calls).sum::<u64>();
            let subtasks = |s: &metafed::stats::Stats| s.domains.iter().map(|d| d.subtasks).sum::<u64>();
            let ejected = |s: &metafed::stats::Stats| s.agents.iter().map(|a| a.breaker.ejected).sum::<u64>();
            let n = (calls(&after) - calls(&before)).max(1);
            let share = 100.0 * (slow(&after) - slow(&before)) as f64 / n as f64;
            let extra = 100.0 * n.saturating_sub(subtasks(&after) - subtasks(&before)) as f64 / r.tasks.max(1) as f64;
            runs[k].push((r.clone(), share, extra, ejected(&after)));
        }
    }
    Ok(policies
        .iter()
        .zip(runs)
        .map(|((name, _, _), rs)| {
            let plain: Vec<Run> = rs.iter().map(|x| x.0.clone()).collect();
            W6Row {
                policy: name,
                runs: rs.len(),
                in_flight,
                tasks_per_s: median(plain.iter().map(|r| r.tasks_per_s).collect()),
                latency_ns: median_latency(&plain),
                slow_share_percent: median(rs.iter().map(|x| x.1).collect()),
                extra_calls_percent: median(rs.iter().map(|x| x.2).collect()),
                ejections: rs.iter().map(|x| x.3).max().unwrap_or(0),
                exact: plain.iter().all(Run::exact),
            }
        })
        .collect())
}

pub fn print_w6(rows: &[W6Row]) {
    println!();
    let in_flight = rows.first().map_or(0, |r| r.in_flight);
    println!(
        "w6 slow agent ({in_flight} in flight, calls of {:.0} us, the third agent of each domain 10x slower on 30% of its calls; medians)",
        W6_BASE_US
    );
    println!(
        "  {:<12} {:>12} {:>10} {:>10} {:>10} {:>11} {:>12} {:>10}",
        "policy", "tasks/s", "p50", "p99", "p99.9", "slow share", "extra calls", "ejections"
    );
    for r in rows {
        let us = |ns: u64| format!("{:.1} us", ns as f64 / 1e3);
        println!(
            "  {:<12} {:>12.0} {:>10} {:>10} {:>10} {:>10.2}% {:>11.2}% {:>10}",
            r.policy,
            r.tasks_per_s,
            us(r.latency_ns.p50),
            us(r.latency_ns.p99),
            us(r.latency_ns.p999),
            r.slow_share_percent,
            r.extra_calls_percent,
            r.ejections
        );
    }
}

pub fn print_w3(rows: &[W3Row]) {
    println!();
    let in_flight = rows.first().map_or(0, |r| r.in_flight);
    println!(
        "w3 tail ({in_flight} in flight, calls of 10 us, the first attempt of 1 task in 100 takes 1 ms; every task's latency recorded)"
    );
    println!(
        "  {:<6} {:>12} {:>10} {:>10} {:>10} {:>12} {:>11}",
        "hedge", "tasks/s", "p50", "p99", "p99.9", "extra calls", "hedge wins"
    );
    for r in rows {
        let us = |ns: u64| format!("{:.1} us", ns as f64 / 1e3);
        println!(
            "  {:<6} {:>12.0} {:>10} {:>10} {:>10} {:>11.2}% {:>10.2}%",
            r.hedge,
            r.tasks_per_s,
            us(r.latency_ns.p50),
            us(r.latency_ns.p99),
            us(r.latency_ns.p999),
            r.extra_calls_percent,
            r.hedge_wins_percent
        );
    }
}
