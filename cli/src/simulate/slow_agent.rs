//! Section 9, second table: W6 (one agent per domain slower on a share of its calls) under each
//! way a domain may choose its agents, in virtual time.

use super::args::Args;
use super::figures::ratio;
use super::hedging::hedging_tasks;
use super::report::SlowAgent;
use super::runner::{Halt, Runner};
use metafed_bench::driver::Load;
use metafed_bench::peers::io::{w6_policies, w6_topology};

/// W6 (WORKLOADS.md) in virtual time at the offered load: the seed's 3 x 3 with W3's calls (I/O
/// agents answering after 10 us, p = 0), the third agent of each domain ten times slower (100 us)
/// on 30% of its calls; agent breakers on with no trigger of their own (so that only outlier
/// detection takes an agent out), the other levels' off. The topology and the policies are
/// `metafed bench --workloads w6`'s, with W3's 10 us calls.
pub(super) fn slow_agent_runs(args: &Args, r: &mut Runner) -> Result<Vec<SlowAgent>, Halt> {
    let mut out = Vec::new();
    // Every row on the same task ids.
    r.pin_ids = Some((r.seed << 40) + (r.runs << 32));
    for (name, balance, outlier) in w6_policies() {
        let topo = w6_topology(10.0, balance, outlier);
        let run = r.run_virtual(
            &format!("W6, {name}"),
            topo,
            Load::w1(hedging_tasks(args)),
            args.offered_rps,
            10_000_000,
            |_, _| {},
            &mut Vec::new(),
        );
        let (run, stats) = match run {
            Ok(x) => x,
            Err(e) => {
                r.pin_ids = None;
                return Err(e);
            }
        };
        let h = &run.latency;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let calls: u64 = stats.agents.iter().map(|a| a.calls).sum();
        let slow_calls: u64 = stats.agents.iter().skip(2).step_by(3).map(|a| a.calls).sum();
        let subtasks: u64 = stats.domains.iter().map(|d| d.subtasks).sum();
        out.push(SlowAgent {
            policy: name,
            tasks: run.report.submitted,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            slow_share: ratio(slow_calls, calls),
            extra_calls: calls.saturating_sub(subtasks),
            ejections: stats.agents.iter().map(|a| a.breaker.ejected).sum(),
            success: ratio(run.report.ok, run.report.submitted),
        });
    }
    r.pin_ids = None;
    Ok(out)
}
