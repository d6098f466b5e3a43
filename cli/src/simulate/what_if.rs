//! Section 8: the agent outage again under a grid of agent-breaker settings, and the domain
//! outage under domain-breaker settings, each beside its paired control (what the setting sheds
//! by chance when nothing is wrong).

use super::args::Args;
use super::recovery::fault_run;
use super::report::{WhatIf, WhatIfDomain};
use super::runner::{Halt, Runner};
use metafed::Topology;
use metafed_bench::driver::Load;

/// The agent breaker's failure thresholds and open times the what-if runs try.
pub(super) const WHAT_IF_THRESHOLDS: [u32; 4] = [2, 3, 5, 10];

pub(super) const WHAT_IF_OPEN_MS: [u64; 4] = [25, 50, 100, 250];

/// The domain breaker's settings the domain what-if tries: (name, consecutive failures, failure
/// rate). The first is the seed's.
pub(super) const WHAT_IF_DOMAIN: [(&str, u32, f64); 4] =
    [("5 in a row (seed)", 5, 0.5), ("10 in a row", 10, 0.5), ("20 in a row", 20, 0.5), ("rate only", 0, 0.5)];

/// How long the fault-free run of each domain setting lasts, in seconds of virtual time: a chance
/// trip of the seed's domain breaker comes about every 18 s per domain at the seed's load.
pub(super) const CHANCE_S: f64 = 60.0;

/// What-if for the domain level: the domain outage under each domain-breaker setting (`topos`:
/// the main topology with it), and a fault-free run of `CHANCE_S` seconds that shows the healthy
/// work the setting sheds by chance.
pub(super) fn what_if_domain_runs(
    args: &Args,
    r: &mut Runner,
    topos: &[(&'static str, Topology)],
) -> Result<Vec<WhatIfDomain>, Halt> {
    let mut out = Vec::new();
    // Every row on the same task ids, so that the rows differ only in the setting.
    r.pin_ids = Some((r.seed << 40) + (r.runs << 32));
    for (name, topo) in topos {
        let run = fault_run(args, r, topo, "domain", &format!("what-if domain breaker {name}"), false).and_then(|f| {
            let n = (args.offered_rps * CHANCE_S) as u64;
            let step = format!("what-if domain breaker {name}: {CHANCE_S:.0} s, nothing down");
            r.run_virtual(&step, topo.clone(), Load::w1(n), args.offered_rps, 100_000_000, |_, _| {}, &mut Vec::new())
                .map(|(_, stats)| (f.0, stats))
        });
        let (rec, stats) = match run {
            Ok(x) => x,
            Err(e) => {
                r.pin_ids = None;
                return Err(e);
            }
        };
        let (shed, subtasks) = stats.domains.iter().fold((0u64, 0u64), |(s, n), d| (s + d.shed, n + d.subtasks));
        out.push(WhatIfDomain {
            setting: name,
            chance_trips: stats.domains.iter().map(|d| d.breaker.opened).sum(),
            chance_shed_percent: 100.0 * shed as f64 / subtasks.max(1) as f64,
            opened_ms: rec.breaker_opened_ms,
            closed_ms: rec.breaker_closed_ms,
            success_back_ms: rec.success_back_ms,
        });
    }
    r.pin_ids = None;
    Ok(out)
}

/// What-if: the agent outage of the recovery runs under each agent-breaker setting of the grid
/// (`topos`: the main topology with that setting), at the offered load in virtual time.
pub(super) fn what_if_runs(args: &Args, r: &mut Runner, topos: &[(u32, u64, Topology)]) -> Result<Vec<WhatIf>, Halt> {
    let mut out = Vec::new();
    for (t, o, topo) in topos {
        let (rec, overall, failed_calls) =
            fault_run(args, r, topo, "agent", &format!("what-if {t} failures, {o} ms"), false)?;
        out.push(WhatIf {
            consecutive_failures: *t,
            open_base_ms: *o,
            during_fault: rec.during_affected,
            overall,
            failed_calls,
            breaker_closed_ms: rec.breaker_closed_ms,
            success_back_ms: rec.success_back_ms,
        });
    }
    Ok(out)
}
