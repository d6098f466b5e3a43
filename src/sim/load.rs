//! The workloads of `WORKLOADS.md` as data: which tasks a run sends ([`Load`], [`Workload`]), what
//! it observed ([`RunReport`], [`Percentiles`]), and a latency distribution
//! ([`LatencyHistogram`]). [`Simulation::open_loop`](super::Simulation::open_loop) runs a load in
//! virtual time; the benchmark crate's closed-loop driver runs one live.

use crate::task::{Completion, Reason, Status};
use serde::Serialize;

/// Which tasks to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// W1: task `i` needs domain `i mod D`.
    Route,
    /// W2: every task needs every domain.
    FanOut,
    /// W1 over the first `k` domains only: task `i` needs domain `i mod k` (a topology whose
    /// later domains serve as alternates, which no task asks for).
    RouteFirst(u16),
}

impl Workload {
    /// The domains task `i` of the load needs, on a topology of `domains` domains.
    pub fn domains_of(self, i: u64, domains: usize) -> crate::task::DomainSet {
        use crate::task::{DomainId, DomainSet};
        let route = |k: usize| DomainSet::one(DomainId((i % k.max(1) as u64) as u16));
        match self {
            Self::Route => route(domains),
            Self::RouteFirst(k) => route(usize::from(k).min(domains)),
            Self::FanOut => DomainSet::first(domains),
        }
    }

    /// How many groups a load's tasks fall in by their domain (task `i` in group `i mod
    /// groups`): one per domain routed to, or one when every task needs every domain.
    pub fn groups(self, domains: usize) -> usize {
        match self {
            Self::Route => domains,
            Self::RouteFirst(k) => usize::from(k).min(domains),
            Self::FanOut => 1,
        }
    }
}

/// A closed-loop run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Tasks to complete.
    pub tasks: u64,
    /// Tasks in flight at most (1024 loaded, 1 unloaded).
    pub in_flight: usize,
    /// The id of the first task; task `i` has id `first_id + i`.
    pub first_id: u64,
    /// Which tasks.
    pub workload: Workload,
    /// Record the latency of one task in this many (64 in `WORKLOADS.md`; 1 for every task).
    pub sample_every: u64,
}

impl Load {
    /// W1 loaded: `tasks` tasks, 1024 in flight, 1 latency sample in 64.
    pub fn w1(tasks: u64) -> Self {
        Self { tasks, in_flight: 1024, first_id: 0, workload: Workload::Route, sample_every: 64 }
    }
}

/// Latency percentiles in nanoseconds, from a [`LatencyHistogram`] (3 significant digits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of a histogram.
    pub fn of(h: &LatencyHistogram) -> Self {
        Self {
            samples: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// What a run observed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// Tasks submitted and accepted.
    pub submitted: u64,
    /// Completions received.
    pub completed: u64,
    /// By status.
    pub ok: u64,
    /// By status.
    pub failed: u64,
    /// By status.
    pub timed_out: u64,
    /// By status.
    pub rejected: u64,
    /// Completions per reason code (index = `Reason as u8`).
    pub reasons: [u64; Reason::COUNT],
    /// Tasks accepted that never completed.
    pub lost: u64,
    /// Completions beyond the first for a task.
    pub duplicated: u64,
    /// Completions whose id was not one the run submitted.
    pub unknown: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Completed tasks per second.
    pub tasks_per_s: f64,
    /// Submit-to-completion latency as the submitter observed it.
    pub latency_ns: Percentiles,
}

impl RunReport {
    /// Completions with this reason.
    pub fn reason(&self, r: Reason) -> u64 {
        self.reasons[r as usize]
    }

    /// Counts one completion of a run whose task `i` has id `first_id + i`, `i < n`, with a
    /// bit per task in `seen`: returns `i` for a task's first completion, None for an unknown
    /// id or a second completion (counted as such).
    pub fn count(&mut self, c: &Completion, first_id: u64, n: u64, seen: &mut [u64]) -> Option<u64> {
        self.completed += 1;
        let i = c.id.wrapping_sub(first_id);
        if i >= n {
            self.unknown += 1;
            return None;
        }
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if seen[word] & bit != 0 {
            self.duplicated += 1;
            return None;
        }
        seen[word] |= bit;
        match c.status {
            Status::Ok => self.ok += 1,
            Status::Failed => self.failed += 1,
            Status::TimedOut => self.timed_out += 1,
            Status::Rejected => self.rejected += 1,
        }
        self.reasons[c.reason as usize] += 1;
        Some(i)
    }
}

/// A distribution of latencies in nanoseconds, from 1 ns to one hour, at 3 significant digits
/// (an HDR histogram: fixed memory, constant-time recording).
#[derive(Clone, Debug)]
pub struct LatencyHistogram(hdrhistogram::Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty distribution.
    pub fn new() -> Self {
        Self(hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds"))
    }

    /// Records one latency (0 counts as 1 ns; a value above an hour is not recorded).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let _ = self.0.record(ns.max(1));
    }

    /// How many latencies it holds.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The largest recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.0.max()
    }

    /// The latency at quantile `q` (0 to 1): the smallest value that at least that share of the
    /// recorded values do not exceed.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    /// The distribution as (latency, quantile) steps for a cumulative plot: finer toward the
    /// tail, `ticks_per_half` steps per halving of the share above (HDR's quantile iteration).
    pub fn quantile_steps(&self, ticks_per_half: u32) -> Vec<(u64, f64)> {
        self.0.iter_quantiles(ticks_per_half).map(|v| (v.value_iterated_to(), v.quantile_iterated_to())).collect()
    }

    /// The percentiles a report gives.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(self)
    }
}
