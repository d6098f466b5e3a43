//! What `simulate` reports: each section's figures, as printed and as JSON.

use super::args::Rates;
use metafed_bench::driver::Percentiles;
use serde::Serialize;

/// The error rates of the sweep (section 3).
pub(super) const SWEEP: [f64; 5] = [0.05, 0.10, 0.15, 0.20, 0.25];
/// The seed report's sweep: (single agent, 3 x 3 federation) reliability.
pub(super) const SEED_SWEEP: [(f64, f64); 5] =
    [(0.950, 0.874), (0.900, 0.873), (0.850, 0.871), (0.800, 0.867), (0.750, 0.860)];

#[derive(Serialize)]
pub(super) struct Level {
    pub(super) level: u8,
    pub(super) name: &'static str,
    /// The model's cumulative success probability up to this level.
    pub(super) predicted: f64,
    /// Measured with breakers disabled (the model's assumptions).
    pub(super) measured: f64,
    pub(super) ci95: [f64; 2],
    pub(super) n: u64,
    /// Measured with breakers (the seed's, or the file's).
    pub(super) measured_with_breakers: f64,
    pub(super) ci95_with_breakers: [f64; 2],
    pub(super) n_with_breakers: u64,
    pub(super) seed_claim: f64,
}

#[derive(Serialize)]
pub(super) struct Config {
    pub(super) name: &'static str,
    pub(super) depth: u32,
    pub(super) breadth: u32,
    pub(super) predicted: f64,
    pub(super) measured: f64,
    pub(super) ci95: [f64; 2],
    /// Wall clock (left out by --reproducible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tasks_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) latency_ns: Option<Percentiles>,
    pub(super) seed_claim: f64,
}

#[derive(Serialize)]
pub(super) struct Point {
    pub(super) measured: f64,
    pub(super) ci95: [f64; 2],
    pub(super) predicted: f64,
}

#[derive(Serialize)]
pub(super) struct Sweep {
    pub(super) error_rate: f64,
    pub(super) single: Point,
    pub(super) federation: Point,
    /// Federation minus single agent, in probability.
    pub(super) improvement: f64,
    pub(super) seed_claim_single: f64,
    pub(super) seed_claim_federation: f64,
}

#[derive(Serialize)]
pub(super) struct Containment {
    /// Sub-tasks with at least one failed attempt.
    pub(super) subtasks_with_failed_attempts: u64,
    /// Of which succeeded by failing over to another agent (absorbed at the agent level).
    pub(super) absorbed_by_failover: u64,
    /// Of which failed every attempt (escalated: the task failed).
    pub(super) escalated_all_attempts_failed: u64,
    /// Sub-tasks taken out by a domain-level fault (escalated: nothing stands in for a domain).
    pub(super) escalated_domain_faults: u64,
    /// Tasks failed by a meta-level fault.
    pub(super) meta_faults: u64,
    /// Sub-tasks shed by an open domain breaker.
    pub(super) shed_by_domain_breakers: u64,
    /// Agent attempts that failed.
    pub(super) failed_attempts: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
}

#[derive(Serialize)]
pub(super) struct Breakers {
    pub(super) agent_trips: u64,
    pub(super) domain_trips: u64,
    pub(super) meta_trips: u64,
    pub(super) panic_routed_attempts: u64,
}

#[derive(Serialize)]
pub(super) struct Claim {
    pub(super) claim: &'static str,
    /// None when the runs gave no sample to judge it on.
    pub(super) holds: Option<bool>,
    pub(super) evidence: String,
}

#[derive(Serialize)]
pub(super) struct Runs {
    pub(super) loaded_without_breakers: Summary,
    /// In virtual time, open loop at the offered load: `tasks_per_s` is the offered rate's
    /// outcome, the latency each task's own in virtual time.
    pub(super) loaded_with_breakers: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) unloaded_without_breakers: Option<Summary>,
}

#[derive(Serialize)]
pub(super) struct Summary {
    pub(super) tasks: u64,
    pub(super) in_flight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tasks_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) latency_ns: Option<Percentiles>,
    pub(super) success: f64,
}

/// One injected fault, run in virtual time at the offered load: when the faulted level's
/// breaker opened and closed, when success came back, and whether the fault stayed in its
/// scope.
#[derive(Serialize)]
pub(super) struct Recovery {
    pub(super) fault: String,
    /// The level whose recovery the seed claims a time for.
    pub(super) level: &'static str,
    /// The fault lasts from `from_s` to `to_s` (virtual seconds).
    pub(super) from_s: f64,
    pub(super) to_s: f64,
    /// After the fault began: when the faulted component's breaker first opened.
    pub(super) breaker_opened_ms: Option<f64>,
    /// After the fault ended: when that breaker closed (None: not within the run).
    pub(super) breaker_closed_ms: Option<f64>,
    /// After the fault ended: the start of the first 10 ms bucket from which five in a row are
    /// back at the steady success of the affected tasks (None: not within the run).
    pub(super) success_back_ms: Option<f64>,
    /// Success of the affected tasks before the fault (0.5 s to its start).
    pub(super) steady: f64,
    /// Success during the fault: of the tasks that need the faulted component, and of the rest.
    pub(super) during_affected: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) during_others: Option<f64>,
    /// Success of the rest during the fault, before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) steady_others: Option<f64>,
    /// The same run without the fault (the same task ids), where there are other tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) paired: Option<Paired>,
    pub(super) seed_claim_ms: f64,
    /// Breaker closed and success back within the seed's time.
    pub(super) holds: Option<bool>,
    /// For the plots: (virtual seconds, success of the affected tasks) per 10 ms bucket.
    #[serde(skip)]
    pub(super) timeline: Vec<(f64, f64)>,
    /// For the plots: (virtual seconds, state) at each transition of the faulted component's
    /// breaker (0 closed, 0.5 half-open, 1 open).
    #[serde(skip)]
    pub(super) states: Vec<(f64, f64)>,
}

/// A fault run's paired control: the same run, the same task ids, no fault.
#[derive(Serialize)]
pub(super) struct Paired {
    /// Success of the tasks that do not need the faulted part over the fault's span.
    pub(super) others: f64,
    /// The fault's effect on them: their success with the fault minus without, in percentage
    /// points (0 when the fault stays in its scope).
    pub(super) effect_pp: f64,
    /// In the control: domain breakers that tripped by chance over the whole run, and the share
    /// of sub-tasks they shed.
    pub(super) chance_domain_trips: u64,
    pub(super) chance_shed_percent: f64,
}

#[derive(Serialize)]
pub(super) struct Report {
    pub(super) tasks: u64,
    /// The tasks of every run but the unloaded one (measured on the wall clock, left out by
    /// --reproducible; its tasks are in `runs.unloaded_without_breakers`): the same in both modes.
    pub(super) tasks_total: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) workers: usize,
    /// Whether the main runs used a topology from --config.
    pub(super) custom_topology: bool,
    pub(super) rates: Rates,
    /// The lowest and highest meta-level success over the repeated runs with breakers.
    pub(super) with_breakers_spread: [f64; 2],
    pub(super) repeats: u64,
    pub(super) levels: Vec<Level>,
    pub(super) configs: Vec<Config>,
    pub(super) sweep: Vec<Sweep>,
    /// The offered load (tasks per second of virtual time) of the runs with breakers and of
    /// the recovery runs.
    pub(super) offered_rps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) throughput_tasks_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) latency_ns: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) unloaded_latency_ns: Option<Percentiles>,
    pub(super) runs: Runs,
    pub(super) containment: Containment,
    pub(super) breakers: Breakers,
    pub(super) recovery: Vec<Recovery>,
    /// The agent outage of the recovery runs under other agent-breaker settings.
    pub(super) what_if: Vec<WhatIf>,
    pub(super) what_if_domain: Vec<WhatIfDomain>,
    pub(super) slow_agent: Vec<SlowAgent>,
    /// Cross-domain rerouting against the model with breadth at the domain level.
    pub(super) reroute: Reroute,
    /// The decision engine: the seed's rules over a request mix, and admission by cost.
    pub(super) classify: Classify,
    /// W3's tail in virtual time, without hedging and with it.
    pub(super) hedging: Vec<Hedging>,
    /// A run with a varying load and a fault schedule, phase by phase.
    pub(super) schedule: Vec<Phase>,
    pub(super) claims: Vec<Claim>,
}

/// One phase of the scheduled run.
#[derive(Serialize)]
pub(super) struct Phase {
    pub(super) from_s: f64,
    pub(super) to_s: f64,
    /// Offered load, tasks per second.
    pub(super) offered: f64,
    /// What happens in it.
    pub(super) what: String,
    pub(super) tasks: u64,
    pub(super) success: f64,
    /// Success of the tasks of the faulted agent's domain (of API when nothing is faulted).
    pub(super) domain_success: f64,
    /// The faulted agent's breaker: opened, after the phase began; closed, after it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) breaker_opened_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) breaker_closed_ms: Option<f64>,
}

/// W3 in virtual time, without hedging or with it: latency percentiles and the extra calls.
#[derive(Serialize)]
pub(super) struct Hedging {
    pub(super) hedge: &'static str,
    pub(super) tasks: u64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    pub(super) max_us: f64,
    /// Hedged attempts sent: the hedges' cost in calls.
    pub(super) extra_calls: u64,
    pub(super) extra_share: f64,
    pub(super) success: f64,
    /// For the plot: (latency in microseconds, share of tasks at or below it).
    #[serde(skip)]
    pub(super) cdf: Vec<(f64, f64)>,
}

/// Section 11: the seed's 3 x 3 without alternates and with one per domain, and depth x breadth
/// with breadth at the domain level.
#[derive(Serialize)]
pub(super) struct Reroute {
    pub(super) seed: Vec<Breadth>,
    pub(super) grid: Vec<Breadth>,
}

/// One shape of section 11: agents per domain, domains per sub-task (the one asked for and its
/// alternates), the model's and the measured task success.
#[derive(Serialize)]
pub(super) struct Breadth {
    pub(super) agent_breadth: u32,
    pub(super) domain_breadth: u32,
    pub(super) predicted: f64,
    pub(super) measured: f64,
    pub(super) ci95: [f64; 2],
    pub(super) tasks: u64,
    /// Sub-tasks handed to an alternate, per task.
    pub(super) reroutes_per_task: f64,
}

/// W6 under one of the domains' policies.
#[derive(Serialize)]
pub(super) struct SlowAgent {
    pub(super) policy: &'static str,
    pub(super) tasks: u64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    /// The slow agents' share of all attempts.
    pub(super) slow_share: f64,
    /// Attempts beyond one per sub-task.
    pub(super) extra_calls: u64,
    pub(super) ejections: u64,
    pub(super) success: f64,
}

/// One setting of the agent breaker tried against an agent outage.
#[derive(Serialize)]
pub(super) struct WhatIf {
    pub(super) consecutive_failures: u32,
    pub(super) open_base_ms: u64,
    /// Success of the tasks of the faulted agent's domain during the outage.
    pub(super) during_fault: f64,
    /// Success over the whole run (every task, 4 s).
    pub(super) overall: f64,
    /// Calls that failed at the down agent: what the breaker exists to spare.
    pub(super) failed_calls: u64,
    /// After the outage ended: the agent breaker closed, and success came back.
    pub(super) breaker_closed_ms: Option<f64>,
    pub(super) success_back_ms: Option<f64>,
}

/// One domain-breaker setting of the domain what-if.
#[derive(Serialize)]
pub(super) struct WhatIfDomain {
    pub(super) setting: &'static str,
    /// In a fault-free run of 60 s at the offered load: domain-breaker trips, and the share of
    /// sub-tasks they shed.
    pub(super) chance_trips: u64,
    pub(super) chance_shed_percent: f64,
    /// With the domain down from 1 s to 2 s: its breaker opened after (from the fault's start),
    /// closed after and success back after (from its end).
    pub(super) opened_ms: Option<f64>,
    pub(super) closed_ms: Option<f64>,
    pub(super) success_back_ms: Option<f64>,
}

impl Level {
    pub(super) fn measured_k(&self) -> u64 {
        (self.measured * self.n as f64).round() as u64
    }
}

/// One kind of request: its domain set, score, model and measured success.
#[derive(Serialize)]
pub(super) struct KindRow {
    pub(super) kind: &'static str,
    pub(super) domains: String,
    pub(super) complexity: f32,
    pub(super) tasks: u64,
    pub(super) predicted: f64,
    pub(super) measured: f64,
    pub(super) ci95: [f64; 2],
}

/// Admission by cost: tasks of one kind under the cost budget.
#[derive(Serialize)]
pub(super) struct CostRow {
    pub(super) kind: &'static str,
    pub(super) complexity: f32,
    /// The budget over the task's cost: how many should run at once.
    pub(super) expected_in_flight: f64,
    /// Little's law over the run: throughput x the agents' latency.
    pub(super) measured_in_flight: f64,
    pub(super) tasks_per_s: f64,
}

#[derive(Serialize)]
pub(super) struct Classify {
    pub(super) kinds: Vec<KindRow>,
    /// Classified tasks by tenths of their score, `(k / 10, (k + 1) / 10]`.
    pub(super) histogram: [u64; 10],
    pub(super) unclassified: u64,
    pub(super) max_cost: f64,
    /// Timed on the wall clock: left out with --reproducible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cost: Option<Vec<CostRow>>,
}
