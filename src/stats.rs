//! Counters and the latency histogram. Each worker writes its own (a plain load and store, no
//! read-modify-write, no shared cache line); readers sum them.

use crate::sync::{AtomicU64, Ordering};
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
}

pub(crate) struct WorkerCounters {
    pub(crate) admitted: Counter,
    pub(crate) completed: [Counter; 4],
    pub(crate) reasons: [Counter; 12],
    pub(crate) late_results: Counter,
    pub(crate) panic_routed: Counter,
    pub(crate) degraded_admits: Counter,
    pub(crate) domain: Box<[DomainCounters]>,
    pub(crate) agent: Box<[AgentCounters]>,
    pub(crate) latency: Histogram,
}

impl WorkerCounters {
    pub(crate) fn new(domains: usize, agents: usize) -> Self {
        Self {
            admitted: Counter::default(),
            completed: Default::default(),
            reasons: Default::default(),
            late_results: Counter::default(),
            panic_routed: Counter::default(),
            degraded_admits: Counter::default(),
            domain: (0..domains).map(|_| DomainCounters::default()).collect(),
            agent: (0..agents).map(|_| AgentCounters::default()).collect(),
            latency: Histogram::new(),
        }
    }
}

/// Log-linear buckets: exact below 8, then 8 sub-buckets per power of two (12.5% wide, so a
/// reported percentile is within about 6% of the true value).
const SUB: u32 = 3;
const BUCKETS: usize = ((64 - SUB as usize) << SUB) + (1 << SUB);

pub(crate) struct Histogram {
    buckets: Box<[Counter]>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self { buckets: (0..BUCKETS).map(|_| Counter::default()).collect() }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < (1 << SUB) {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        (((msb - SUB + 1) as usize) << SUB) + ((v >> (msb - SUB)) & ((1 << SUB) - 1)) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < (1 << SUB) {
            return i as u64;
        }
        let msb = (i >> SUB) as u32 + SUB - 1;
        let sub = (i & ((1 << SUB) - 1)) as u64;
        let width = 1u64 << (msb - SUB);
        (((1 << SUB) + sub) << (msb - SUB)) + width / 2
    }

    #[inline]
    pub(crate) fn record(&self, v: u64) {
        self.buckets[Self::index(v)].inc();
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
                    return Self::value(i);
                }
            }
            0
        };
        let max = counts.iter().rposition(|&c| c > 0).map_or(0, Self::value);
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
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for i in 0..BUCKETS - 1 {
            let v = Histogram::value(i);
            assert!(v >= last, "bucket {i}");
            assert_eq!(Histogram::index(v), i, "value {v} maps back to bucket {i}");
            last = v;
        }
        for v in [9u64, 100, 1_000, 123_456, 10_000_000_000] {
            let m = Histogram::value(Histogram::index(v));
            assert!((m as f64 - v as f64).abs() / v as f64 <= 0.0625, "{v} -> {m}");
        }
    }

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

use crate::breaker::BreakerSnapshot;
use crate::shared::Shared;
use crate::task::Reason;

/// How many tasks ended for one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// The reason.
    pub reason: Reason,
    /// Tasks.
    pub count: u64,
}

/// One domain's counters and breaker.
#[derive(Clone, Debug, Serialize)]
pub struct DomainStats {
    /// Its name.
    pub name: String,
    /// Sub-tasks it received.
    pub subtasks: u64,
    /// Sub-tasks that succeeded.
    pub ok: u64,
    /// Sub-tasks that failed (every attempt, a fault, no agent).
    pub failed: u64,
    /// Sub-tasks shed by its open breaker.
    pub shed: u64,
    /// Sub-tasks taken out by an injected domain fault.
    pub faults: u64,
    /// Sub-tasks that ran out of time.
    pub timeouts: u64,
    /// Attempts that failed over to another agent.
    pub failovers: u64,
    /// Sub-tasks that succeeded after at least one failed attempt (failures absorbed).
    pub recovered: u64,
    /// Its breaker.
    pub breaker: BreakerSnapshot,
}

/// One agent's counters and breaker.
#[derive(Clone, Debug, Serialize)]
pub struct AgentStats {
    /// Its name.
    pub name: String,
    /// Its domain's name.
    pub domain: String,
    /// Attempts it answered (or that were abandoned).
    pub calls: u64,
    /// Attempts that failed, all kinds.
    pub failures: u64,
    /// Of which: slower than the agent timeout.
    pub slow: u64,
    /// Of which: the handler panicked.
    pub panics: u64,
    /// Of which: abandoned at the timeout (isolated agents).
    pub abandoned: u64,
    /// Of which: its queue was full.
    pub overloaded: u64,
    /// Mean attempt latency, nanoseconds.
    pub mean_latency_ns: u64,
    /// Whether its domain routes to it.
    pub in_rotation: bool,
    /// Whether it runs on its own thread.
    pub isolated: bool,
    /// Its breaker.
    pub breaker: BreakerSnapshot,
}

/// The meta level.
#[derive(Clone, Debug, Serialize)]
pub struct MetaStats {
    /// Tasks admitted in degraded mode (meta breaker open, essential priority).
    pub degraded_admits: u64,
    /// Its breaker.
    pub breaker: BreakerSnapshot,
}

/// Everything the engine counts. Sums of per-worker counters, read one by one (not an atomic
/// snapshot of the whole engine).
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Worker threads.
    pub workers: usize,
    /// Workers that could not be pinned.
    pub pin_failures: u64,
    /// Task slots.
    pub slots: usize,
    /// Slots in use: tasks accepted and not yet delivered.
    pub in_flight: usize,
    /// Submissions refused with `Full`.
    pub submit_full: u64,
    /// Tasks admitted by a worker.
    pub admitted: u64,
    /// Tasks completed, all statuses.
    pub completed: u64,
    /// Completed `Ok`.
    pub ok: u64,
    /// Completed `Failed`.
    pub failed: u64,
    /// Completed `TimedOut`.
    pub timed_out: u64,
    /// Completed `Rejected`.
    pub rejected: u64,
    /// Completions by reason (those that occurred).
    pub reasons: Vec<ReasonCount>,
    /// Answers from isolated agents that came after their attempt was abandoned.
    pub late_results: u64,
    /// Attempts made although every remaining agent's breaker was open (panic routing).
    pub panic_routed: u64,
    /// Breaker events not kept (the event queue was full).
    pub events_dropped: u64,
    /// Submission-to-completion latency on the engine's clock.
    pub latency_ns: LatencySummary,
    /// The meta level.
    pub meta: MetaStats,
    /// Per domain.
    pub domains: Vec<DomainStats>,
    /// Per agent.
    pub agents: Vec<AgentStats>,
    /// The model's success probability for a single-domain task, averaged over domains, from
    /// the simulated agents' error rates (or, for handler agents, their observed failure rates).
    pub predicted_success: f64,
}

/// Overall health, for a health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every breaker closed.
    Healthy,
    /// Some agents out (open or half-open breakers), every domain still served.
    Degraded,
    /// A domain cannot be served, the meta level is degraded, or the engine is stopping.
    Unhealthy,
}

/// A health summary.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// running, draining, stopping or stopped.
    pub lifecycle: &'static str,
    /// What is not healthy, in words.
    pub notes: Vec<String>,
}

pub(crate) fn collect(sh: &Shared) -> Stats {
    let now = sh.clock.now();
    let ws = &sh.workers;
    let sum = |f: &dyn Fn(&WorkerCounters) -> u64| ws.iter().map(|w| f(&w.counters)).sum::<u64>();
    let mut latency = Histogram::empty_counts();
    for w in ws.iter() {
        w.counters.latency.merge_into(&mut latency);
    }
    let policy = sh.policy.load();
    let topo = &sh.topo;
    let domains = topo
        .domains
        .iter()
        .enumerate()
        .map(|(d, def)| {
            let s = |f: &dyn Fn(&DomainCounters) -> u64| sum(&|c| f(&c.domain[d]));
            DomainStats {
                name: def.name.clone(),
                subtasks: s(&|c| c.subtasks.get()),
                ok: s(&|c| c.ok.get()),
                failed: s(&|c| c.failed.get()),
                shed: s(&|c| c.shed.get()),
                faults: s(&|c| c.faults.get()),
                timeouts: s(&|c| c.timeouts.get()),
                failovers: s(&|c| c.failovers.get()),
                recovered: s(&|c| c.recovered.get()),
                breaker: sh.domain_breakers[d].snapshot(now),
            }
        })
        .collect();
    let agents: Vec<AgentStats> = topo
        .agents
        .iter()
        .enumerate()
        .map(|(a, def)| {
            let s = |f: &dyn Fn(&AgentCounters) -> u64| sum(&|c| f(&c.agent[a]));
            let calls = s(&|c| c.calls.get());
            AgentStats {
                name: def.name.clone(),
                domain: topo.domains[usize::from(def.domain.0)].name.clone(),
                calls,
                failures: s(&|c| c.failures.get()),
                slow: s(&|c| c.slow.get()),
                panics: s(&|c| c.panics.get()),
                abandoned: s(&|c| c.abandoned.get()),
                overloaded: s(&|c| c.overloaded.get()),
                mean_latency_ns: s(&|c| c.latency_ns.get()) / calls.max(1),
                in_rotation: policy.routing[usize::from(def.domain.0)].iter().any(|x| usize::from(x.0) == a),
                isolated: def.spec.isolated,
                breaker: sh.agent_breakers[a].snapshot(now),
            }
        })
        .collect();
    let rate = |a: crate::AgentId| {
        topo.sim_error_rate(a).unwrap_or_else(|| {
            let s = &agents[usize::from(a.0)];
            if s.calls == 0 { 0.0 } else { s.failures as f64 / s.calls as f64 }
        })
    };
    let per_domain = crate::model::predict_domains(topo, rate);
    let predicted_success = (0..topo.domain_count())
        .map(|d| crate::model::task_success(topo, &per_domain, crate::DomainSet::one(crate::DomainId(d as u16))))
        .sum::<f64>()
        / topo.domain_count() as f64;
    let by_status = |s: crate::Status| sum(&|c| c.completed[s as usize].get());
    Stats {
        workers: ws.len(),
        pin_failures: sh.pin_failures.load(Ordering::Relaxed),
        slots: sh.slab.capacity(),
        in_flight: sh.slab.capacity() - sh.slab.free_len(),
        submit_full: sh.submit_full.load(Ordering::Relaxed),
        admitted: sum(&|c| c.admitted.get()),
        completed: sum(&|c| c.completed.iter().map(Counter::get).sum()),
        ok: by_status(crate::Status::Ok),
        failed: by_status(crate::Status::Failed),
        timed_out: by_status(crate::Status::TimedOut),
        rejected: by_status(crate::Status::Rejected),
        reasons: Reason::ALL
            .iter()
            .map(|&reason| ReasonCount { reason, count: sum(&|c| c.reasons[reason as usize].get()) })
            .filter(|r| r.count > 0)
            .collect(),
        late_results: sum(&|c| c.late_results.get()),
        panic_routed: sum(&|c| c.panic_routed.get()),
        events_dropped: sh.events_dropped.load(Ordering::Relaxed),
        latency_ns: Histogram::percentiles(&latency),
        meta: MetaStats { degraded_admits: sum(&|c| c.degraded_admits.get()), breaker: sh.meta_breaker.snapshot(now) },
        domains,
        agents,
        predicted_success,
    }
}
