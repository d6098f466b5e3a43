//! Section 8: the agent outage again under a grid of agent-breaker settings.

use super::args::Args;
use super::recovery::fault_run;
use super::report::WhatIf;
use super::runner::{Halt, Runner};
use metafed::Topology;

/// The agent breaker's failure thresholds and open times the what-if runs try.
pub(super) const WHAT_IF_THRESHOLDS: [u32; 4] = [2, 3, 5, 10];

pub(super) const WHAT_IF_OPEN_MS: [u64; 4] = [25, 50, 100, 250];

/// What-if: the agent outage of the recovery runs under each agent-breaker setting of the grid
/// (`topos`: the main topology with that setting), at the offered load in virtual time.
pub(super) fn what_if_runs(args: &Args, r: &mut Runner, topos: &[(u32, u64, Topology)]) -> Result<Vec<WhatIf>, Halt> {
    let mut out = Vec::new();
    for (t, o, topo) in topos {
        let (rec, overall, failed_calls) = fault_run(args, r, topo, "agent", &format!("what-if {t} failures, {o} ms"))?;
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
