//! Section 9: W3's latency tail without and with hedging, in virtual time.

use super::args::Args;
use super::figures::ratio;
use super::report::Hedging;
use super::runner::{Halt, Runner};
use metafed::sim::SimAgent;
use metafed::{AgentSpec, Levels, TopologyBuilder};
use metafed_bench::driver::Load;

/// Tasks of each hedging run: a fifth of --tasks, at least 10,000.
pub(super) fn hedging_tasks(args: &Args) -> u64 {
    (args.tasks / 5).max(10_000)
}

/// W3 (WORKLOADS.md) in virtual time at the offered load: the seed's 3 x 3 with p = 0 and no
/// injected faults or breakers, every agent an I/O agent answering after 10 us except the first
/// attempt of 1 task in 100, which takes 1 ms; run without hedging, and with a hedge after each
/// domain's p95 latency.
pub(super) fn hedging_runs(args: &Args, r: &mut Runner) -> Result<Vec<Hedging>, Halt> {
    let mut out = Vec::new();
    for (name, hedge) in [("none", None), ("after the domain's p95", Some(metafed::policy::Hedge::at_percentile(95.0)))]
    {
        let mut b = TopologyBuilder::default();
        for (domain, agents) in metafed::SEED_DOMAINS {
            let d = b.domain(domain).map_err(|e| e.to_string())?;
            for (i, a) in agents.iter().enumerate() {
                let latency = metafed::sim::Latency::LongTail { base_us: 10.0, slow_us: 1000.0, slow_rate: 0.01 };
                let sim = SimAgent { error_rate: 0.0, latency, io: true, seed: i as u64, ..SimAgent::default() };
                b.agent(d, *a, AgentSpec::sim(sim)).map_err(|e| e.to_string())?;
            }
            if let Some(h) = hedge {
                b.hedge(d, h).map_err(|e| e.to_string())?;
            }
        }
        b.breakers(Levels::disabled());
        let topo = b.build().map_err(|e| e.to_string())?;
        let load = Load::w1(hedging_tasks(args));
        let (run, stats) = r.run_virtual(
            &format!("W3, hedge {name}"),
            topo,
            load,
            args.offered_rps,
            10_000_000,
            |_, _| {},
            &mut Vec::new(),
        )?;
        let h = &run.latency;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let subtasks: u64 = stats.domains.iter().map(|d| d.subtasks).sum();
        let extra: u64 = stats.domains.iter().map(|d| d.hedges).sum();
        let mut cdf: Vec<(f64, f64)> = h.quantile_steps(8).into_iter().map(|(v, q)| (v as f64 / 1e3, q)).collect();
        cdf.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        out.push(Hedging {
            hedge: name,
            tasks: run.report.submitted,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1e3,
            extra_calls: extra,
            extra_share: ratio(extra, subtasks),
            success: ratio(run.report.ok, run.report.submitted),
            cdf,
        });
    }
    Ok(out)
}
