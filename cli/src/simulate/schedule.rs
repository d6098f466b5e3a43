//! Section 10: a schedule of load steps and faults, in virtual time.

use super::args::{Args, Rates};
use super::figures::ratio;
use super::report::Phase;
use super::runner::{Halt, Runner};
use metafed::sim::SimAgent;
use metafed::{AgentSpec, TopologyBuilder};
use metafed_bench::driver::Load;

/// The scheduled run's phases: (from s, to s, load as a multiple of --offered-rps / 2, fault).
/// Fault 1: API/REST's error rate 0.6; fault 2: Database/SQL 80 ms slower (its timeout is 50).
pub(super) const PHASES: [(f64, f64, f64, u8); 7] = [
    (0.0, 1.0, 1.0, 0),
    (1.0, 1.5, 4.0, 0),
    (1.5, 2.0, 1.0, 0),
    (2.0, 2.5, 1.0, 1),
    (2.5, 3.0, 1.0, 0),
    (3.0, 3.5, 1.0, 2),
    (3.5, 4.0, 1.0, 0),
];

pub(super) fn schedule_tasks(rate: f64) -> u64 {
    PHASES.iter().map(|p| ((p.1 - p.0) * p.2 * rate / 2.0) as u64).sum()
}

/// A varying load and a fault schedule in virtual time, on the seed's 3 x 3 with the main runs'
/// error rates and the seed's breakers, every agent answering after an exponential latency of
/// mean 200 us: half the offered load, a burst of twice it from 1 s to 1.5 s, API/REST failing
/// 60% of its calls from 2 s to 2.5 s, Database/SQL 80 ms slower from 3 s to 3.5 s.
pub(super) fn schedule_run(args: &Args, r: &mut Runner, rates: &Rates) -> Result<Vec<Phase>, Halt> {
    use metafed::breaker::BreakerState;
    let agent_error = rates.agent.unwrap_or(0.12);
    let mut b = TopologyBuilder::default();
    let mut ids = Vec::new();
    for (domain, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(domain).map_err(|e| e.to_string())?;
        b.domain_fault_rate(d, rates.domain.unwrap_or(0.08)).map_err(|e| e.to_string())?;
        for (i, a) in agents.iter().enumerate() {
            let latency = metafed::sim::Latency::Exponential { mean_us: 200.0 };
            let sim = SimAgent { error_rate: agent_error, latency, seed: i as u64, ..SimAgent::default() };
            ids.push(b.agent(d, *a, AgentSpec::sim(sim)).map_err(|e| e.to_string())?);
        }
    }
    b.meta_fault_rate(rates.meta);
    let topo = b.build().map_err(|e| e.to_string())?;
    let (rest, sql) = (ids[0], ids[3]);
    let half = args.offered_rps / 2.0;
    let steps: Vec<(u64, f64)> = PHASES.iter().map(|p| ((p.0 * 1e9) as u64, p.2 * half)).collect();
    let ns = |s: f64| (s * 1e9) as u64;
    let mut state = 0u8;
    let mut events = Vec::new();
    let (run, _) = r.run_virtual_steps(
        "schedule: load steps and faults",
        topo,
        Load::w1(schedule_tasks(args.offered_rps)),
        &steps,
        10_000_000,
        |engine, t| {
            let want = PHASES.iter().find(|p| ns(p.0) <= t && t < ns(p.1)).map_or(0, |p| p.3);
            if want != state {
                let off = |f: u8| match f {
                    1 => engine.set_sim_agent(rest, Some(agent_error), None),
                    2 => engine.set_sim_agent(sql, None, Some(std::time::Duration::ZERO)),
                    _ => Ok(()),
                };
                let on = |f: u8| match f {
                    1 => engine.set_sim_agent(rest, Some(0.6), None),
                    2 => engine.set_sim_agent(sql, None, Some(std::time::Duration::from_millis(80))),
                    _ => Ok(()),
                };
                off(state).and_then(|_| on(want)).expect("simulated agents");
                state = want;
            }
        },
        &mut events,
    )?;
    let bucket = |s: f64| (s * 100.0).round() as usize; // 10 ms buckets
    let mut out = Vec::new();
    for &(from, to, mult, fault) in &PHASES {
        let (agent, d, what) = match fault {
            1 => (Some(rest), 0, "API/REST fails 60% of calls".to_string()),
            2 => (Some(sql), 1, "Database/SQL 80 ms slower".to_string()),
            _ if mult > 1.0 => (None, 0, format!("burst: {mult:.0}x the steady load")),
            _ => (None, 0, "steady".to_string()),
        };
        let (mut k, mut t, mut dk, mut dt) = (0, 0, 0, 0);
        for b in bucket(from)..bucket(to).min(run.buckets.len()) {
            for (g, c) in run.buckets[b].iter().enumerate() {
                (k, t) = (k + c.1, t + c.0);
                if g == d {
                    (dk, dt) = (dk + c.1, dt + c.0);
                }
            }
        }
        let mine: Vec<_> = agent
            .map(|a| events.iter().filter(|e| e.level == metafed::Level::Agent && e.index == a.0).collect())
            .unwrap_or_default();
        let opened = mine
            .iter()
            .find(|e| e.at_ns >= ns(from) && e.transition.to == BreakerState::Open)
            .map(|e| (e.at_ns - ns(from)) as f64 / 1e6);
        let closed = opened.and_then(|_| {
            mine.iter()
                .find(|e| e.at_ns >= ns(to) && e.transition.to == BreakerState::Closed)
                .map(|e| (e.at_ns - ns(to)) as f64 / 1e6)
        });
        out.push(Phase {
            from_s: from,
            to_s: to,
            offered: mult * half,
            what,
            tasks: t,
            success: ratio(k, t),
            domain_success: ratio(dk, dt),
            breaker_opened_ms: opened,
            breaker_closed_ms: closed,
        });
    }
    Ok(out)
}
