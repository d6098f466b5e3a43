//! A closed-loop load driver: the canonical workloads of `WORKLOADS.md` run against an engine
//! from one submitting thread, with the latency the submitter observes and an exactly-once check.
//! `metafed simulate`, `metafed bench` and the tests all use it.

use metafed::sim::LatencyHistogram;
pub use metafed::sim::{Load, Percentiles, RunReport, Workload};
use metafed::{Completion, Engine, Reason, SubmitError, Task, Ticket};
use std::time::Instant;

/// Runs `load` against `engine` from the calling thread. `progress(done)` is called about every
/// 65,536 completions. The engine must deliver completions to `poll` (no callback set).
pub fn closed_loop(engine: &Engine, load: &Load, progress: impl FnMut(u64)) -> RunReport {
    closed_loop_until(engine, load, progress, &std::sync::atomic::AtomicBool::new(false))
}

/// [`closed_loop`] that stops submitting once `stop` is set (a Ctrl-C, say), lets the tasks in
/// flight complete, and reports what ran: `submitted` is then below `load.tasks`.
pub fn closed_loop_until(
    engine: &Engine,
    load: &Load,
    mut progress: impl FnMut(u64),
    stop: &std::sync::atomic::AtomicBool,
) -> RunReport {
    let domains = engine.topology().domain_count();
    let task_for = |i: u64| Task::fan_out(load.first_id.wrapping_add(i), load.workload.domains_of(i, domains));
    let n = load.tasks;
    let mut seen = vec![0u64; n.div_ceil(64) as usize];
    // Submit times of sampled tasks, by slot (each slot holds one task at a time).
    let slots = engine.stats().slots;
    let mut sampled: Vec<(Ticket, Instant)> = vec![(Ticket::default(), Instant::now()); slots];
    let mut hist = LatencyHistogram::new();
    let mut report = RunReport {
        submitted: 0,
        completed: 0,
        ok: 0,
        failed: 0,
        timed_out: 0,
        rejected: 0,
        reasons: [0; Reason::COUNT],
        lost: 0,
        duplicated: 0,
        unknown: 0,
        elapsed_s: 0.0,
        tasks_per_s: 0.0,
        latency_ns: Percentiles::default(),
    };
    let batch = 64usize.min(load.in_flight.max(1));
    let mut tasks: Vec<Task<'static>> = Vec::with_capacity(batch);
    let mut tickets = vec![Ticket::default(); batch];
    let mut out = vec![Completion::default(); 256];
    let every = load.sample_every.max(1);
    let mut next = 0u64;
    let mut in_flight = 0usize;
    let mut last_progress = 0u64;
    let start = Instant::now();
    let mut n = n;
    while report.completed < report.submitted || next < n {
        if next < n && stop.load(std::sync::atomic::Ordering::Relaxed) {
            n = next; // submit no more; drain what is in flight
        }
        // Submit what the window allows.
        let room = load.in_flight.saturating_sub(in_flight).min((n - next) as usize).min(batch);
        if room > 0 {
            tasks.clear();
            tasks.extend((next..next + room as u64).map(task_for));
            let t0 = Instant::now();
            let accepted = match engine.submit_batch(&tasks, &mut tickets) {
                Ok(k) => k,
                Err(SubmitError::Full) => 0,
                Err(e) => panic!("submission refused: {e}"),
            };
            for (k, t) in tickets[..accepted].iter().enumerate() {
                if (next + k as u64).is_multiple_of(every) {
                    sampled[t.slot() as usize] = (*t, t0);
                }
            }
            next += accepted as u64;
            in_flight += accepted;
            report.submitted += accepted as u64;
        }
        // Collect what is done; when there is nothing to submit either, wait for it rather than
        // spin (a spinning caller competes with the workers for cores).
        // (With nothing in flight there is nothing to wait for: a stop before the first
        // submission ends the run here.)
        let got = if room == 0 && in_flight > 0 {
            engine.poll_wait(&mut out, None).expect("the driver runs on its own thread")
        } else {
            engine.poll(&mut out)
        };
        let t1 = Instant::now();
        for c in &out[..got] {
            in_flight -= 1;
            if report.count(c, load.first_id, n, &mut seen).is_none() {
                continue;
            }
            let (t, t0) = sampled[c.ticket.slot() as usize];
            if t == c.ticket {
                hist.record((t1 - t0).as_nanos().max(1) as u64);
            }
        }
        if report.completed - last_progress >= 65_536 {
            last_progress = report.completed;
            progress(report.completed);
        }
    }
    let elapsed = start.elapsed();
    report.lost = report.submitted - (report.completed - report.duplicated - report.unknown);
    report.elapsed_s = elapsed.as_secs_f64();
    report.tasks_per_s = report.completed as f64 / elapsed.as_secs_f64().max(1e-9);
    report.latency_ns = Percentiles::of(&hist);
    progress(report.completed);
    report
}

/// The oracle's success count for `load` on agents that all fail at `p` with `attempts`
/// attempts per sub-task and no other fault: the count the engine must match exactly with
/// breakers disabled.
pub fn oracle_successes(load: &Load, domains: usize, p: f64, attempts: u32) -> u64 {
    let thr = metafed::sim::threshold(p);
    let sub_ok = |key: u64| (0..u64::from(attempts)).any(|a| !metafed::sim::fails_below(key, a, thr));
    (0..load.tasks)
        .filter(|&i| {
            let id = load.first_id.wrapping_add(i);
            match load.workload {
                Workload::Route | Workload::RouteFirst(_) => sub_ok(id),
                Workload::FanOut => {
                    (0..domains as u64).all(|d| sub_ok(metafed::sim::oracle_key(id, d as u16, domains as u32)))
                }
            }
        })
        .count() as u64
}
