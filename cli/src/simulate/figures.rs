//! Small helpers the sections share: shares, intervals, percentages, run summaries.

use super::report::Summary;
use metafed::Reason;
use metafed::model::{self, Z95};
use metafed_bench::driver::RunReport;

/// The one value every item has, if they all have the same.
pub(super) fn uniform(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut it = values;
    let first = it.next()?;
    it.all(|v| v == first).then_some(first)
}

pub(super) fn level_counts(r: &RunReport) -> [(u64, u64); 3] {
    let refused_at_meta = r.reason(Reason::MetaFault)
        + r.reason(Reason::Degraded)
        + r.reason(Reason::RateLimited)
        + r.reason(Reason::Throttled);
    let subtasks = r.submitted - refused_at_meta;
    let at_agents = subtasks - r.reason(Reason::DomainFault) - r.reason(Reason::DomainShed);
    [(r.ok, at_agents), (r.ok, subtasks), (r.ok, r.submitted)]
}

pub(super) fn ratio(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

pub(super) fn ci(k: u64, n: u64) -> [f64; 2] {
    let (lo, hi) = model::wilson(k, n, Z95);
    [lo, hi]
}

pub(super) fn within(p: f64, k: u64, n: u64, z: f64) -> bool {
    let (lo, hi) = model::wilson(k, n, z);
    (lo..=hi).contains(&p)
}

pub(super) fn pct(p: f64) -> String {
    format!("{:.2}%", p * 100.0)
}

pub(super) fn summary(r: &RunReport, in_flight: usize, wall: bool) -> Summary {
    Summary {
        tasks: r.submitted,
        in_flight,
        tasks_per_s: wall.then_some(r.tasks_per_s),
        latency_ns: wall.then_some(r.latency_ns),
        success: ratio(r.ok, r.submitted),
    }
}

/// "1 time", "n times".
pub(super) fn times(n: u64) -> String {
    if n == 1 { "1 time".into() } else { format!("{n} times") }
}
