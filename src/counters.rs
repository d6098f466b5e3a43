//! The counters each worker writes for its own shard (a plain load and store, no
//! read-modify-write, no shared cache line), and the latency histogram; readers sum them into a
//! [`Stats`](crate::stats::Stats) report.

use crate::buckets::{self, BUCKETS};
use crate::classify::{
    COMPLEXITY_BUCKETS, ClassifyStats, Complexity, ComplexityHistogram, MAX_TRACKED_SETS, bucket_of,
};
use crate::sync::{AtomicU64, Ordering};
use crate::task::DomainSet;
use serde::Serialize;

/// A counter with a single writer.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // Only the owning worker writes, so load + store cannot lose an update.
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct DomainCounters {
    pub(crate) subtasks: Counter,
    pub(crate) ok: Counter,
    pub(crate) failed: Counter,
    pub(crate) shed: Counter,
    pub(crate) faults: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) failovers: Counter,
    pub(crate) recovered: Counter,
    /// Hedge attempts sent.
    pub(crate) hedges: Counter,
    /// Sub-tasks a hedge attempt won.
    pub(crate) hedge_wins: Counter,
    /// Failovers or hedges the retry budget refused.
    pub(crate) budget_denied: Counter,
    /// Times a sub-task had to wait for an agent with room.
    pub(crate) waited: Counter,
    /// Sub-tasks shed because the domain was overloaded (adaptive shedding).
    pub(crate) overloaded: Counter,
    /// Sub-tasks that failed here and were handed to an alternate domain.
    pub(crate) rerouted: Counter,
}

#[derive(Default)]
pub(crate) struct AgentCounters {
    pub(crate) calls: Counter,
    pub(crate) failures: Counter,
    pub(crate) slow: Counter,
    pub(crate) panics: Counter,
    pub(crate) abandoned: Counter,
    pub(crate) overloaded: Counter,
    pub(crate) latency_ns: Counter,
    /// Attempts deferred (answered later, or by an isolated agent's threads).
    pub(crate) deferred: Counter,
    /// Attempts abandoned because another attempt of their sub-task answered first.
    pub(crate) cancelled: Counter,
}

pub(crate) struct WorkerCounters {
    pub(crate) admitted: Counter,
    pub(crate) completed: [Counter; 4],
    pub(crate) reasons: [Counter; crate::task::Reason::COUNT],
    pub(crate) panic_routed: Counter,
    pub(crate) degraded_admits: Counter,
    pub(crate) domain: Box<[DomainCounters]>,
    pub(crate) agent: Box<[AgentCounters]>,
    pub(crate) latency: Histogram,
    pub(crate) classify: ClassifyCounters,
}

impl WorkerCounters {
    pub(crate) fn new(domains: usize, agents: usize) -> Self {
        Self {
            admitted: Counter::default(),
            completed: Default::default(),
            reasons: Default::default(),
            panic_routed: Counter::default(),
            degraded_admits: Counter::default(),
            domain: (0..domains).map(|_| DomainCounters::default()).collect(),
            agent: (0..agents).map(|_| AgentCounters::default()).collect(),
            latency: Histogram::new(),
            classify: ClassifyCounters::default(),
        }
    }
}

pub(crate) struct Histogram {
    buckets: Box<[Counter]>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self { buckets: (0..BUCKETS).map(|_| Counter::default()).collect() }
    }

    #[inline]
    pub(crate) fn record(&self, v: u64) {
        self.buckets[buckets::index(v)].inc();
    }

    pub(crate) fn merge_into(&self, acc: &mut [u64]) {
        for (a, b) in acc.iter_mut().zip(self.buckets.iter()) {
            *a += b.get();
        }
    }

    pub(crate) fn empty_counts() -> Vec<u64> {
        vec![0; BUCKETS]
    }

    /// Percentiles of merged counts.
    pub(crate) fn percentiles(counts: &[u64]) -> LatencySummary {
        let total: u64 = counts.iter().sum();
        let at = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return buckets::value(i);
                }
            }
            0
        };
        let max = counts.iter().rposition(|&c| c > 0).map_or(0, buckets::value);
        LatencySummary { count: total, p50: at(0.50), p99: at(0.99), p999: at(0.999), max }
    }
}

/// Latency percentiles in nanoseconds, from the engine's own log-linear histogram (each within
/// about 6% of the exact value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

#[cfg(all(test, not(loom)))]
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let mut acc = Histogram::empty_counts();
        h.merge_into(&mut acc);
        let s = Histogram::percentiles(&acc);
        assert_eq!(s.count, 1000);
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.0625;
        assert!(close(s.p50, 500_000), "{s:?}");
        assert!(close(s.p99, 990_000), "{s:?}");
        assert!(close(s.max, 1_000_000), "{s:?}");
    }
}

/// The decision engine's counters of one worker, and its classified tasks' complexity per
/// domain set: up to [`MAX_TRACKED_SETS`] sets, each published by its length's release store
/// after its set was written, and one more entry for every other set.
pub(crate) struct ClassifyCounters {
    pub(crate) classified: Counter,
    pub(crate) failed: Counter,
    pub(crate) panicked: Counter,
    pub(crate) no_domain: Counter,
    pub(crate) invalid: Counter,
    pub(crate) no_classifier: Counter,
    sets: Box<[SetCounters]>,
    tracked: AtomicU64,
}

#[derive(Default)]
struct SetCounters {
    domains: AtomicU64,
    buckets: [Counter; COMPLEXITY_BUCKETS],
    sum_units: Counter,
}

impl Default for ClassifyCounters {
    fn default() -> Self {
        Self {
            classified: Counter::default(),
            failed: Counter::default(),
            panicked: Counter::default(),
            no_domain: Counter::default(),
            invalid: Counter::default(),
            no_classifier: Counter::default(),
            sets: (0..=MAX_TRACKED_SETS).map(|_| SetCounters::default()).collect(),
            tracked: AtomicU64::new(0),
        }
    }
}

impl ClassifyCounters {
    /// A task classified into `domains` with score `c` (the worker's own shard).
    pub(crate) fn record(&self, domains: u64, c: Complexity) {
        self.classified.inc();
        let n = self.tracked.load(Ordering::Relaxed) as usize;
        let i = match self.sets[..n].iter().position(|s| s.domains.load(Ordering::Relaxed) == domains) {
            Some(i) => i,
            None if n < MAX_TRACKED_SETS => {
                self.sets[n].domains.store(domains, Ordering::Relaxed);
                self.tracked.store(n as u64 + 1, Ordering::Release);
                n
            }
            None => MAX_TRACKED_SETS,
        };
        let s = &self.sets[i];
        s.buckets[bucket_of(c)].inc();
        s.sum_units.add(u64::from(c.units()));
    }

    /// Adds this worker's counts to `acc`.
    pub(crate) fn merge_into(&self, acc: &mut ClassifyStats) {
        acc.classified += self.classified.get();
        acc.failed += self.failed.get();
        acc.panicked += self.panicked.get();
        acc.no_domain += self.no_domain.get();
        acc.invalid += self.invalid.get();
        acc.no_classifier += self.no_classifier.get();
        let n = self.tracked.load(Ordering::Acquire) as usize;
        for (i, s) in self.sets.iter().enumerate().filter(|(i, _)| *i < n || *i == MAX_TRACKED_SETS) {
            let domains = if i == MAX_TRACKED_SETS { u64::MAX } else { s.domains.load(Ordering::Relaxed) };
            let counts: Vec<u64> = s.buckets.iter().map(Counter::get).collect();
            if counts.iter().all(|&c| c == 0) {
                continue;
            }
            let pos = match acc.complexity.iter().position(|h| h.domains.0 == domains) {
                Some(p) => p,
                None => {
                    acc.complexity.push(ComplexityHistogram { domains: DomainSet(domains), ..Default::default() });
                    acc.complexity.len() - 1
                }
            };
            let h = &mut acc.complexity[pos];
            for (b, c) in h.buckets.iter_mut().zip(counts) {
                *b += c;
            }
            h.sum += s.sum_units.get() as f64 / f64::from(Complexity::SCALE);
        }
    }
}
