//! The public report: [`Stats`] and [`Health`], summed from the workers' counters.
//!
//! Each worker writes its own counters (a plain load and store, no read-modify-write, no shared
//! cache line); a report sums them. The reliability windows come from the engine's online
//! monitor, which judges each domain's recent success against the model.

pub use crate::counters::LatencySummary;
pub use crate::monitor::{RELIABILITY_MIN_SAMPLE, RELIABILITY_WINDOW, ReliabilityWindow};

use crate::breaker::{BreakerSnapshot, BreakerState};
use crate::counters::{AgentCounters, Counter, DomainCounters, Histogram, WorkerCounters};
use crate::monitor::DomainCount;
use crate::shared::Shared;
use crate::shared::{DRAINING, RUNNING, STOPPING};
use crate::sync::Ordering;
use crate::task::Reason;
use serde::Serialize;

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
    /// Removed from the running engine (its counters stay).
    pub removed: bool,
    /// Sub-tasks it received.
    pub subtasks: u64,
    /// Sub-tasks that succeeded.
    pub ok: u64,
    /// Sub-tasks that failed (every attempt, a fault, no agent).
    pub failed: u64,
    /// Sub-tasks shed by its open breaker.
    pub shed: u64,
    /// Sub-tasks shed because it was overloaded (adaptive shedding: queue time above its target
    /// for an interval, or its wait queue full). Not failures of the domain.
    pub overloaded: u64,
    /// Sub-tasks taken out by an injected domain fault.
    pub faults: u64,
    /// Sub-tasks that ran out of time.
    pub timeouts: u64,
    /// Attempts that failed over to another agent.
    pub failovers: u64,
    /// Sub-tasks that succeeded after at least one failed attempt (failures absorbed).
    pub recovered: u64,
    /// Hedge attempts sent.
    pub hedges: u64,
    /// Sub-tasks a hedge attempt won.
    pub hedge_wins: u64,
    /// Failovers and hedges its retry budget refused.
    pub budget_denied: u64,
    /// Times a sub-task waited for an agent with room (every candidate at its limit).
    pub waited: u64,
    /// Sub-tasks that failed here and were handed to an alternate domain (counted in `failed`,
    /// `shed`, `overloaded` or `timeouts` too; the alternate counts them in its `subtasks`).
    pub rerouted: u64,
    /// Its breaker.
    pub breaker: BreakerSnapshot,
    /// The model's success probability for one of its sub-tasks, from its agents' error rates
    /// (configured for simulated agents, observed for handlers), its attempts and its fault rate.
    pub predicted_success: f64,
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
    /// Of which: abandoned at the timeout (deferred attempts, isolated agents).
    pub abandoned: u64,
    /// Of which: no room (its queue, or the worker's attempt slots, full).
    pub overloaded: u64,
    /// Attempts deferred (answered later, or by its own threads).
    pub deferred: u64,
    /// Attempts abandoned because another attempt of their sub-task answered first (not
    /// failures: its breaker does not count them).
    pub cancelled: u64,
    /// Attempts in flight now (counted only when it has a concurrency limit).
    pub in_flight: u32,
    /// Its concurrency limit (0: none).
    pub max_concurrency: u32,
    /// Mean attempt latency, nanoseconds.
    pub mean_latency_ns: u64,
    /// Time spent in its attempts in all, nanoseconds (wrapping at 2^64: 585 years of attempt
    /// time): what `metafed_agent_attempt_seconds_total` exports, a counter that only grows.
    pub latency_ns_total: u64,
    /// Whether its domain routes to it.
    pub in_rotation: bool,
    /// Its routing weight.
    pub weight: u32,
    /// Removed from the running engine (its counters stay).
    pub removed: bool,
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
    /// Complexity units the admitted tasks hold of the cost budget
    /// ([`AdmissionConfig::max_cost`](crate::AdmissionConfig::max_cost); 0 without one).
    pub cost_held: f64,
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
    /// Answers of deferred attempts (isolated agents' included) that came after their attempt
    /// was abandoned, and were dropped.
    pub late_results: u64,
    /// Attempts made although every remaining agent's breaker was open (panic routing).
    pub panic_routed: u64,
    /// Breaker events not kept (the event queue was full).
    pub events_dropped: u64,
    /// Submission-to-completion latency on the engine's clock.
    pub latency_ns: LatencySummary,
    /// The meta level.
    pub meta: MetaStats,
    /// The decision engine: tasks classified, refused, and their complexity by domain set.
    pub classify: crate::classify::ClassifyStats,
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
    /// What is not healthy, in words (empty when healthy).
    pub reasons: Vec<String>,
    /// Per domain, measured success over the last minute beside the model's prediction.
    pub reliability: Vec<ReliabilityWindow>,
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
    let topo = sh.topo.load();
    let mut domains: Vec<DomainStats> = topo
        .domains
        .iter()
        .enumerate()
        .map(|(d, def)| {
            let s = |f: &dyn Fn(&DomainCounters) -> u64| sum(&|c| f(&c.domain[d]));
            DomainStats {
                name: def.name.clone(),
                removed: def.removed,
                subtasks: s(&|c| c.subtasks.get()),
                ok: s(&|c| c.ok.get()),
                failed: s(&|c| c.failed.get()),
                shed: s(&|c| c.shed.get()),
                overloaded: s(&|c| c.overloaded.get()),
                faults: s(&|c| c.faults.get()),
                timeouts: s(&|c| c.timeouts.get()),
                failovers: s(&|c| c.failovers.get()),
                recovered: s(&|c| c.recovered.get()),
                hedges: s(&|c| c.hedges.get()),
                hedge_wins: s(&|c| c.hedge_wins.get()),
                budget_denied: s(&|c| c.budget_denied.get()),
                waited: s(&|c| c.waited.get()),
                rerouted: s(&|c| c.rerouted.get()),
                breaker: sh.domain_breakers[d].snapshot(now),
                predicted_success: 0.0,
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
            // Each worker's sum wraps (a `Counter`); so does theirs.
            let latency_ns_total = ws.iter().fold(0u64, |t, w| t.wrapping_add(w.counters.agent[a].latency_ns.get()));
            AgentStats {
                name: def.name.clone(),
                domain: topo.domains[usize::from(def.domain.0)].name.clone(),
                calls,
                failures: s(&|c| c.failures.get()),
                slow: s(&|c| c.slow.get()),
                panics: s(&|c| c.panics.get()),
                abandoned: s(&|c| c.abandoned.get()),
                overloaded: s(&|c| c.overloaded.get()),
                deferred: s(&|c| c.deferred.get()),
                cancelled: s(&|c| c.cancelled.get()),
                in_flight: sh.agents[a].bulkhead.in_flight(),
                max_concurrency: sh.agents[a].bulkhead.limit(),
                mean_latency_ns: latency_ns_total / calls.max(1),
                latency_ns_total,
                in_rotation: !def.removed
                    && policy.routing[usize::from(def.domain.0)].iter().any(|x| usize::from(x.0) == a),
                weight: policy.weights[a],
                removed: def.removed,
                isolated: def.spec.isolated,
                breaker: sh.agent_breakers[a].snapshot(now),
            }
        })
        .collect();
    let rate = |a: crate::task::AgentId| {
        topo.sim_error_rate(a).unwrap_or_else(|| {
            let s = &agents[usize::from(a.0)];
            if s.calls == 0 { 0.0 } else { s.failures as f64 / s.calls as f64 }
        })
    };
    let per_domain = crate::model::predict_domains(&topo, rate);
    for (d, p) in domains.iter_mut().zip(&per_domain) {
        d.predicted_success = p.domain;
    }
    let live: Vec<usize> = (0..topo.domain_count()).filter(|&d| !topo.domains[d].removed).collect();
    let predicted_success = live
        .iter()
        .map(|&d| {
            crate::model::task_success(&topo, &per_domain, crate::task::DomainSet::one(crate::task::DomainId(d as u16)))
        })
        .sum::<f64>()
        / live.len().max(1) as f64;
    // Tasks the shutdown sweep (or a submitter racing it) completed as rejected.
    let swept = sh.swept.load(Ordering::Relaxed);
    let by_status = |s: crate::task::Status| {
        sum(&|c| c.completed[s as usize].get()) + if s == crate::task::Status::Rejected { swept } else { 0 }
    };
    Stats {
        workers: ws.len(),
        pin_failures: sh.pin_failures.load(Ordering::Relaxed),
        slots: sh.slab.capacity(),
        in_flight: sh.slab.capacity() - sh.slab.free_len(),
        submit_full: sh.submit_full.load(Ordering::Relaxed),
        admitted: sum(&|c| c.admitted.get()),
        completed: sum(&|c| c.completed.iter().map(Counter::get).sum()) + swept,
        ok: by_status(crate::task::Status::Ok),
        failed: by_status(crate::task::Status::Failed),
        timed_out: by_status(crate::task::Status::TimedOut),
        rejected: by_status(crate::task::Status::Rejected),
        reasons: Reason::ALL
            .iter()
            .map(|&reason| {
                let extra = if reason == Reason::ShuttingDown { swept } else { 0 };
                ReasonCount { reason, count: sum(&|c| c.reasons[reason as usize].get()) + extra }
            })
            .filter(|r| r.count > 0)
            .collect(),
        late_results: sh.late_results(),
        panic_routed: sum(&|c| c.panic_routed.get()),
        events_dropped: sh.events_dropped.load(Ordering::Relaxed),
        latency_ns: Histogram::percentiles(&latency),
        meta: MetaStats {
            degraded_admits: sum(&|c| c.degraded_admits.get()),
            breaker: sh.meta_breaker.snapshot(now),
            cost_held: sh.cost_held.load(Ordering::Relaxed) as f64 / f64::from(crate::task::Complexity::SCALE),
        },
        classify: ws.iter().fold(crate::classify::ClassifyStats::default(), |mut acc, w| {
            w.counters.classify.merge_into(&mut acc);
            acc
        }),
        domains,
        agents,
        predicted_success,
    }
}

/// A summary for a health check: open breakers, domains without an available agent, the
/// lifecycle.
pub(crate) fn health(sh: &Shared) -> Health {
    let stats = collect(sh);
    let reliability = observe_reliability(sh, &stats);
    health_of(sh, reliability)
}

/// Health, given the reliability monitor's reading.
pub(crate) fn health_of(sh: &Shared, reliability: Vec<ReliabilityWindow>) -> Health {
    let policy = sh.policy.load();
    let mut status = HealthStatus::Healthy;
    let mut reasons = Vec::new();
    let meta = sh.meta_breaker.state();
    if meta != BreakerState::Closed {
        status = HealthStatus::Unhealthy;
        reasons.push(format!("meta breaker {meta}: degraded mode, essential priorities only"));
    }
    let topo = sh.topo.load();
    for (d, dom) in topo.domains.iter().enumerate().filter(|(_, dom)| !dom.removed) {
        let state = sh.domain_breakers[d].state();
        // Distinct agents (a weighted rotation lists an agent more than once).
        let available = policy.members[d]
            .iter()
            .filter(|a| policy.in_rotation[usize::from(a.0)])
            .filter(|a| sh.agent_breakers[usize::from(a.0)].state() != BreakerState::Open)
            .count();
        if state == BreakerState::Open || available == 0 {
            status = HealthStatus::Unhealthy;
            reasons.push(format!(
                "domain {}: breaker {state}, {available}/{} agents available",
                dom.name,
                dom.agents.len()
            ));
        } else if state != BreakerState::Closed || available < dom.agents.len() {
            if status == HealthStatus::Healthy {
                status = HealthStatus::Degraded;
            }
            reasons.push(format!(
                "domain {}: breaker {state}, {available}/{} agents available",
                dom.name,
                dom.agents.len()
            ));
        }
    }
    let lifecycle = match sh.lifecycle() {
        RUNNING => "running",
        DRAINING => "draining",
        STOPPING => "stopping",
        _ => "stopped",
    };
    if lifecycle != "running" {
        status = HealthStatus::Unhealthy;
        reasons.push(format!("engine {lifecycle}"));
    }
    for w in reliability.iter().filter(|w| w.below_prediction) {
        if status == HealthStatus::Healthy {
            status = HealthStatus::Degraded;
        }
        reasons.push(format!(
            "domain {}: {:.2}% of {} sub-tasks succeeded in the last {:.0} s (99.9% interval {:.2}%..{:.2}%), below the predicted {:.2}%",
            w.domain,
            100.0 * w.measured,
            w.finished,
            w.window_s,
            100.0 * w.low,
            100.0 * w.high,
            100.0 * w.predicted
        ));
    }
    Health { status, lifecycle, reasons, reliability }
}

impl<'a> DomainCount<'a> {
    pub(crate) fn of(s: &'a Stats) -> Vec<DomainCount<'a>> {
        s.domains
            .iter()
            .map(|d| DomainCount {
                name: &d.name,
                ok: d.ok,
                finished: d.ok + d.failed + d.shed + d.faults + d.timeouts,
                predicted: d.predicted_success,
            })
            .collect()
    }
}

/// Each domain's success over the monitor's window, beside its prediction.
pub(crate) fn observe_reliability(sh: &Shared, s: &Stats) -> Vec<ReliabilityWindow> {
    let counts = DomainCount::of(s);
    let mut m = sh.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    m.observe(&counts, std::time::Instant::now())
}
