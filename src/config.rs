//! How the engine runs: threads, capacities, admission policy. (What it runs is the
//! [`Topology`](crate::Topology).)

use crate::duration::{MAX_DURATION, ms};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The engine's runtime settings. Every field has a default; in TOML they form the `[engine]`
/// table (durations in milliseconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Worker threads; 0 means one per core in the process's affinity mask.
    pub workers: usize,
    /// Pin worker `i` to the `i`-th core of the affinity mask. A failure to pin is reported
    /// (a warning and `Stats::pin_failures`), never fatal.
    pub pin: bool,
    /// Tasks accepted and not yet delivered, at most (the task slots). Submitting beyond it
    /// returns `Full`.
    pub max_in_flight: usize,
    /// Sub-tasks a worker holds at once (admitted and not yet joined); it stops taking new
    /// tasks from its ingress ring while at this limit.
    pub worker_capacity: usize,
    /// Tasks a worker takes from its ingress ring per turn, and sub-tasks per stage batch.
    pub batch: usize,
    /// An idle worker (or isolated agent, or caller in `poll_wait`) spins this many times,
    pub idle_spins: u32,
    /// then yields the processor for up to this many microseconds, then parks until woken.
    pub idle_yield_us: u32,
    /// Capacity of each ring between a worker and an isolated agent's thread.
    pub isolated_queue: usize,
    /// When every agent a sub-task may still try has an open breaker, try one anyway (Envoy's
    /// "panic routing") rather than fail the sub-task. Keeps independent failures from turning
    /// into rejections when thresholds are tight; a whole domain that is down is still caught
    /// by the domain breaker. An agent tried this way that is at its concurrency limit is
    /// waited for, as any agent at its limit is.
    pub panic_routing: bool,
    /// How long dropping a running engine waits for in-flight tasks before rejecting them.
    #[serde(with = "ms")]
    pub drain_timeout: Duration,
    /// Agents that can be added to the running engine ([`crate::Engine::add_agent`]) beyond
    /// those it starts with: their breakers and counters are made at the start. At most 4,096.
    pub spare_agents: usize,
    /// Domains that can be added to the running engine ([`crate::Engine::add_domain`]) beyond
    /// those it starts with (together at most [`crate::MAX_DOMAINS`]).
    pub spare_domains: usize,
    /// Admission control at the meta level.
    pub admission: AdmissionConfig,
    /// Rate limits per key (a task's `key`: a tenant, a client), in a table of fixed capacity
    /// (None: no keyed limits; tasks' keys are then ignored). See
    /// [`KeyedLimits`](crate::policy::KeyedLimits).
    pub keyed_limits: Option<crate::policy::KeyedLimits>,
    /// An adaptive throttle (AIMD or Gradient2): the admission throttle's limit moved by the
    /// admitted tasks' latency, starting from its `initial_limit` (it then owns `admission.max_concurrent`).
    /// See [`AdaptiveThrottle`](crate::policy::AdaptiveThrottle).
    pub adaptive_throttle: Option<crate::policy::AdaptiveThrottle>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            pin: true,
            max_in_flight: 8192,
            worker_capacity: 4096,
            batch: 64,
            idle_spins: 128,
            idle_yield_us: 20,
            isolated_queue: 1024,
            panic_routing: true,
            drain_timeout: Duration::from_secs(5),
            spare_agents: 16,
            spare_domains: 4,
            admission: AdmissionConfig::default(),
            keyed_limits: None,
            adaptive_throttle: None,
        }
    }
}

/// Admission control: throttling, priority queuing, degraded mode, rate limiting, and the
/// share of task slots each priority may not take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// System-wide limit on tasks admitted past the meta stage and not yet completed; 0 means
    /// no limit beyond the task slots. Tasks over the limit wait in priority order.
    pub max_concurrent: usize,
    /// Tasks waiting for the throttle, per worker; beyond it they are rejected (`Throttled`).
    pub queue_capacity: usize,
    /// While the meta breaker is open the engine runs degraded: only tasks of this priority or
    /// higher (numerically lower or equal) are admitted.
    pub essential_priority: u8,
    /// Fraction of the task slots that priority `p` may not take (index `p`): under overload
    /// the lowest priorities see `Full` first. Each in [0, 1).
    pub priority_reserve: [f64; 4],
    /// A token bucket at admission: tasks per second, 0 for none.
    pub rate_limit_per_s: f64,
    /// The token bucket's burst, in tasks.
    pub rate_limit_burst: f64,
    /// A concurrency budget in complexity units (0: none): the tasks admitted past the meta
    /// stage and not yet completed may cost this much together, a task's cost being its
    /// complexity score ([`classify`](crate::classify)) and at least `min_cost`. Tasks over it
    /// wait in priority order with the throttled ones (and are `Throttled` when that queue is
    /// full); a task that costs more than the whole budget runs when no other holds any.
    pub max_cost: f64,
    /// The least a task costs against `max_cost`, in (0, 1]: a task that named its domains has
    /// complexity 0 and costs this.
    pub min_cost: f64,
    /// How long a task may wait for the throttle (or the cost budget), from its submission
    /// (zero: as long as its deadline allows). One that waits longer is rejected (`Throttled`),
    /// so that the tasks admitted have not queued past it: a bound on their latency that the
    /// limit alone does not give. In TOML, milliseconds.
    #[serde(with = "crate::duration::ms")]
    pub queue_timeout: std::time::Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 0,
            queue_capacity: 4096,
            essential_priority: 0,
            priority_reserve: [0.0, 0.05, 0.10, 0.20],
            rate_limit_per_s: 0.0,
            rate_limit_burst: 1.0,
            max_cost: 0.0,
            min_cost: 0.1,
            queue_timeout: std::time::Duration::ZERO,
        }
    }
}

impl EngineConfig {
    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_in_flight == 0 || self.max_in_flight > (1 << 24) {
            return Err(format!("engine.max_in_flight must be 1 to {}, got {}", 1 << 24, self.max_in_flight));
        }
        if self.worker_capacity == 0 {
            return Err("engine.worker_capacity must be at least 1".into());
        }
        if self.batch == 0 {
            return Err("engine.batch must be at least 1".into());
        }
        if self.isolated_queue == 0 {
            return Err("engine.isolated_queue must be at least 1".into());
        }
        if self.drain_timeout > MAX_DURATION {
            return Err(format!("engine.drain_timeout must be at most 30 days, got {:?}", self.drain_timeout));
        }
        if self.spare_agents > 4096 {
            return Err(format!("engine.spare_agents must be at most 4096, got {}", self.spare_agents));
        }
        if self.workers > 1024 {
            return Err(format!("engine.workers must be at most 1024, got {}", self.workers));
        }
        if let Some(k) = &self.keyed_limits {
            k.validate().map_err(|m| format!("engine.{m}"))?;
        }
        if let Some(a) = &self.adaptive_throttle {
            a.validate().map_err(|m| format!("engine.{m}"))?;
        }
        let a = &self.admission;
        if a.essential_priority > crate::task::LOWEST_PRIORITY {
            return Err(format!("engine.admission.essential_priority must be 0 to 3, got {}", a.essential_priority));
        }
        for (p, r) in a.priority_reserve.iter().enumerate() {
            if !(0.0..1.0).contains(r) {
                return Err(format!("engine.admission.priority_reserve[{p}] must be in [0, 1), got {r}"));
            }
        }
        if !(a.rate_limit_per_s.is_finite() && a.rate_limit_per_s >= 0.0) {
            return Err(format!("engine.admission.rate_limit_per_s must be >= 0, got {}", a.rate_limit_per_s));
        }
        if a.rate_limit_per_s > 0.0 && !(a.rate_limit_burst.is_finite() && a.rate_limit_burst >= 1.0) {
            return Err(format!("engine.admission.rate_limit_burst must be >= 1, got {}", a.rate_limit_burst));
        }
        if !(a.max_cost.is_finite() && (0.0..=1e9).contains(&a.max_cost)) {
            return Err(format!("engine.admission.max_cost must be 0 to 1e9, got {}", a.max_cost));
        }
        if !(a.min_cost > 0.0 && a.min_cost <= 1.0) {
            return Err(format!("engine.admission.min_cost must be in (0, 1], got {}", a.min_cost));
        }
        if a.queue_timeout > MAX_DURATION {
            return Err(format!("engine.admission.queue_timeout must be at most 30 days, got {:?}", a.queue_timeout));
        }
        Ok(())
    }
}
