//! Section 9, second table: W6 (one agent per domain slower on a share of its calls) under each
//! way a domain may choose its agents, in virtual time.

use super::args::Args;
use super::figures::ratio;
use super::hedging::hedging_tasks;
use super::report::SlowAgent;
use super::runner::{Halt, Runner};
use metafed::breaker::BreakerConfig;
use metafed::policy::{Balance, Outlier};
use metafed::sim::{Latency, SimAgent};
use metafed::{AgentSpec, Levels, TopologyBuilder};
use metafed_bench::driver::Load;

/// W6's domain policies: (name, balance, outlier detection).
fn policies() -> [(&'static str, Balance, Option<Outlier>); 3] {
    let latency = Outlier {
        consecutive_failures: 0,
        latency_factor: 2.0,
        min_samples: 20,
        base_ejection: std::time::Duration::from_secs(1),
        max_ejection: std::time::Duration::from_secs(10),
        ..Outlier::default()
    };
    [
        ("round-robin", Balance::RoundRobin, None),
        ("peak EWMA (p2c)", Balance::peak_ewma(), None),
        ("round-robin + latency ejection", Balance::RoundRobin, Some(latency)),
    ]
}

/// W6 (WORKLOADS.md) in virtual time at the offered load: the seed's 3 x 3 with W3's calls (I/O
/// agents answering after 10 us, p = 0), the third agent of each domain ten times slower (100 us)
/// on 30% of its calls; agent breakers on with no trigger of their own (so that only outlier
/// detection takes an agent out), the other levels' off.
pub(super) fn slow_agent_runs(args: &Args, r: &mut Runner) -> Result<Vec<SlowAgent>, Halt> {
    let mut out = Vec::new();
    r.pin_ids = Some((r.seed << 40) + (r.runs << 32));
    for (name, balance, outlier) in policies() {
        let run = w6_run(args, r, name, balance, outlier);
        match run {
            Ok(row) => out.push(row),
            Err(e) => {
                r.pin_ids = None;
                return Err(e);
            }
        }
    }
    r.pin_ids = None;
    Ok(out)
}

fn w6_run(
    args: &Args,
    r: &mut Runner,
    name: &'static str,
    balance: Balance,
    outlier: Option<Outlier>,
) -> Result<SlowAgent, Halt> {
    let mut b = TopologyBuilder::default();
    for (domain, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(domain).map_err(|e| e.to_string())?;
        for (i, a) in agents.iter().enumerate() {
            let latency = if i == 2 {
                Latency::LongTail { base_us: 10.0, slow_us: 100.0, slow_rate: 0.3 }
            } else {
                Latency::Fixed { us: 10.0 }
            };
            let sim = SimAgent { latency, io: true, seed: i as u64, ..SimAgent::default() };
            b.agent(d, *a, AgentSpec::sim(sim)).map_err(|e| e.to_string())?;
        }
        b.balance(d, balance).map_err(|e| e.to_string())?;
        if let Some(o) = outlier {
            b.outlier(d, o).map_err(|e| e.to_string())?;
        }
    }
    let off = Levels::disabled();
    let quiet = BreakerConfig { consecutive_failures: 0, failure_rate: 0.0, ..BreakerConfig::agent() };
    b.breakers(Levels { agent: quiet, ..off });
    let topo = b.build().map_err(|e| e.to_string())?;
    let (run, stats) = r.run_virtual(
        &format!("W6, {name}"),
        topo,
        Load::w1(hedging_tasks(args)),
        args.offered_rps,
        10_000_000,
        |_, _| {},
        &mut Vec::new(),
    )?;
    let h = &run.latency;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let calls: u64 = stats.agents.iter().map(|a| a.calls).sum();
    let slow_calls: u64 = stats.agents.iter().skip(2).step_by(3).map(|a| a.calls).sum();
    let subtasks: u64 = stats.domains.iter().map(|d| d.subtasks).sum();
    Ok(SlowAgent {
        policy: name,
        tasks: run.report.submitted,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        slow_share: ratio(slow_calls, calls),
        extra_calls: calls.saturating_sub(subtasks),
        ejections: stats.agents.iter().map(|a| a.breaker.ejected).sum(),
        success: ratio(run.report.ok, run.report.submitted),
    })
}
