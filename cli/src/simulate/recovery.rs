//! Section 6: recovery and containment of one injected fault at each level, in virtual time.

use super::args::Args;
use super::figures::ratio;
use super::report::{Paired, Recovery};
use super::runner::{Halt, Runner};
use metafed::{DomainId, Topology};
use metafed_bench::driver::Load;

/// The seed's recovery claims, one fault each, in virtual time at the offered load: a fault
/// from 1 s to 2 s of a 4 s run (steady state measured from 0.5 s to 1 s).
pub(super) fn recovery_runs(args: &Args, r: &mut Runner, topo: &Topology) -> Result<Vec<Recovery>, Halt> {
    ["agent", "domain", "meta"]
        .into_iter()
        .map(|level| fault_run(args, r, topo, level, "recovery", true).map(|f| f.0))
        .collect()
}

/// The seed's recovery claim for a fault at `level`: the fault, the claimed time, the breaker
/// that should catch it.
pub(super) fn fault_of(topo: &Topology, level: &str) -> (String, f64, metafed::Level, u16) {
    use metafed::Level as L;
    let agent0 = topo.agents_of(DomainId(0))[0];
    let d0 = topo.domain_name(DomainId(0)).unwrap_or("0").to_string();
    let a0 = format!("{d0}/{}", topo.agent_name(agent0).unwrap_or("?"));
    match level {
        "agent" => (format!("agent {a0} down"), 100.0, L::Agent, agent0.0),
        "domain" => (format!("domain {d0} down"), 500.0, L::Domain, 0),
        _ => ("every domain down".to_string(), 2000.0, L::Meta, 0),
    }
}

/// One injected fault at `level` ("agent", "domain" or "meta") from 1 s to 2 s of a 4 s run in
/// virtual time at the offered load (steady state measured from 0.5 s to 1 s): the recovery it
/// shows, and the run's success over every task and the calls that failed at the faulted agent.
/// With `control`, the same run (the same task ids) without the fault follows, and the fault's
/// effect on the tasks that do not need the faulted part is the difference between the two over
/// the fault's span: exact in virtual time, where a comparison with the steady value before the
/// fault also counts whatever chance did meanwhile (another domain's breaker tripping, say).
pub(super) fn fault_run(
    args: &Args,
    r: &mut Runner,
    topo: &Topology,
    level: &'static str,
    step: &str,
    control: bool,
) -> Result<(Recovery, f64, u64), Halt> {
    use metafed::breaker::BreakerState;
    const BUCKET: u64 = 10_000_000; // 10 ms
    let (from_ns, to_ns, end_s) = (1_000_000_000u64, 2_000_000_000u64, 4.0);
    let (steady_from, fault_from, fault_to) = (50usize, 100usize, 200usize); // in buckets
    let rate = args.offered_rps;
    let domains = topo.domain_count();
    let agent0 = topo.agents_of(DomainId(0))[0];
    let (fault, claim_ms, lvl, idx) = fault_of(topo, level);
    let n = (rate * end_s) as u64;
    {
        let mut on = false;
        let mut events = Vec::new();
        let (run, stats) = r.run_virtual(
            &format!("{step}: {fault}"),
            topo.clone(),
            Load::w1(n),
            rate,
            BUCKET,
            |engine, t| {
                let want = (from_ns..to_ns).contains(&t);
                if want != on {
                    on = want;
                    match level {
                        "agent" => {
                            engine.set_agent_down(agent0, want);
                        }
                        "domain" => {
                            engine.set_domain_down(DomainId(0), want);
                        }
                        _ => {
                            for d in 0..domains {
                                engine.set_domain_down(DomainId(d as u16), want);
                            }
                        }
                    }
                }
            },
            &mut events,
        )?;
        let mine: Vec<_> = events.iter().filter(|e| e.level == lvl && e.index == idx).collect();
        let opened = mine
            .iter()
            .find(|e| e.at_ns >= from_ns && e.transition.to == BreakerState::Open)
            .map(|e| (e.at_ns - from_ns) as f64 / 1e6);
        // Closed at the end of the fault already (it never opened), or the first close after.
        let closed = match mine.iter().rev().find(|e| e.at_ns < to_ns) {
            None => Some(0.0),
            Some(e) if e.transition.to == BreakerState::Closed => Some(0.0),
            Some(_) => mine
                .iter()
                .find(|e| e.at_ns >= to_ns && e.transition.to == BreakerState::Closed)
                .map(|e| (e.at_ns - to_ns) as f64 / 1e6),
        };
        // Success of the affected tasks (those of domain 0; every task when every domain is
        // down) and of the others, over a range of buckets.
        let affected = |g: usize| level == "meta" || g == 0;
        // (succeeded, completed) in bucket `b`, of the affected tasks (`want`) or of the others.
        let counts = |b: usize, want: bool| {
            run.buckets[b]
                .iter()
                .enumerate()
                .filter(|&(g, _)| affected(g) == want)
                .fold((0u64, 0u64), |(k, t), (_, c)| (k + c.1, t + c.0))
        };
        let share = |range: std::ops::Range<usize>, want: bool| -> Option<f64> {
            let (k, t) = range
                .filter(|&b| b < run.buckets.len())
                .map(|b| counts(b, want))
                .fold((0, 0), |(k, t), (bk, bt)| (k + bk, t + bt));
            (t > 0).then(|| k as f64 / t as f64)
        };
        let steady = share(steady_from..fault_from, true).unwrap_or(0.0);
        let back = (fault_to..run.buckets.len().saturating_sub(5))
            .find(|&b| {
                (b..b + 5).all(|i| {
                    let (k, t) = counts(i, true);
                    let tol = 4.0 * (steady * (1.0 - steady) / t.max(1) as f64).sqrt() + 0.005;
                    t > 0 && k as f64 / t as f64 >= steady - tol
                })
            })
            .map(|b| ((b - fault_to) as u64 * BUCKET) as f64 / 1e6);
        let holds = match (closed, back) {
            (Some(c), Some(b)) => Some(c <= claim_ms && b <= claim_ms),
            _ => Some(false),
        };
        let timeline = (0..run.buckets.len())
            .filter_map(|b| {
                let (k, t) = counts(b, true);
                (t > 0).then(|| ((b as u64 * BUCKET) as f64 / 1e9, k as f64 / t as f64))
            })
            .collect();
        let states = mine
            .iter()
            .map(|e| {
                let y = match e.transition.to {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen => 0.5,
                    BreakerState::Open => 1.0,
                };
                (e.at_ns as f64 / 1e9, y)
            })
            .collect();
        let overall = ratio(run.report.ok, run.report.submitted);
        let failed_calls = stats.agents[usize::from(agent0.0)].failures;
        let during_others = share(fault_from..fault_to, false);
        let paired = if control && during_others.is_some() {
            r.repeat_ids = true;
            let (run_c, stats_c) = r.run_virtual(
                &format!("{step}: {fault}, control"),
                topo.clone(),
                Load::w1(n),
                rate,
                BUCKET,
                |_, _| {},
                &mut Vec::new(),
            )?;
            let others = (fault_from..fault_to.min(run_c.buckets.len()))
                .flat_map(|b| run_c.buckets[b].iter().enumerate().filter(|&(g, _)| !affected(g)).map(|(_, c)| *c))
                .fold((0u64, 0u64), |(k, t), c| (k + c.1, t + c.0));
            let (shed, subtasks) = stats_c.domains.iter().fold((0u64, 0u64), |(s, n), d| (s + d.shed, n + d.subtasks));
            let trips: u64 = stats_c.domains.iter().map(|d| d.breaker.opened).sum();
            Some(Paired {
                others: ratio(others.0, others.1),
                effect_pp: 100.0 * (during_others.unwrap_or(0.0) - ratio(others.0, others.1)),
                chance_domain_trips: trips,
                chance_shed_percent: 100.0 * ratio(shed, subtasks),
            })
        } else {
            None
        };
        let rec = Recovery {
            timeline,
            states,
            fault,
            level,
            from_s: from_ns as f64 / 1e9,
            to_s: to_ns as f64 / 1e9,
            breaker_opened_ms: opened,
            breaker_closed_ms: closed,
            success_back_ms: back,
            steady,
            during_affected: share(fault_from..fault_to, true).unwrap_or(0.0),
            during_others,
            paired,
            steady_others: share(steady_from..fault_from, false),
            seed_claim_ms: claim_ms,
            holds,
        };
        Ok((rec, overall, failed_calls))
    }
}
