//! Simulated agents and the failure oracle of `WORKLOADS.md`.
//!
//! A simulated agent decides success from the task id and the attempt number alone, so every
//! implementation (the engine, each peer, the model) sees the same failures and the counts can
//! be compared exactly:
//!
//! ```text
//! fails(task_id, attempt, p) = splitmix64(task_id * 31 + attempt) < floor(p * 2^64)
//! ```
//!
//! For a task that needs several domains, the sub-task for domain `d` uses `task_id * 4 + d` in
//! place of `task_id` ([`oracle_key`]). A sub-task rerouted to alternate domain `d` draws its own
//! failures: its key is that key xor `(d + 1) * REROUTE_SALT` ([`rerouted_key`]), so that an
//! alternate does not fail exactly where the domain it stands in for failed.

use crate::attempt::Answer;
use crate::handler::{Agent, Call, CallCx, Request};
use crate::task::FailureKind;
use crate::timer::Timer;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sebastiano Vigna's splitmix64 finaliser (wrapping arithmetic on `u64`).
#[inline]
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `floor(p * 2^64)`, the oracle's threshold for failure probability `p` (saturating).
#[inline]
pub fn threshold(p: f64) -> u64 {
    if p <= 0.0 {
        0
    } else if p >= 1.0 {
        u64::MAX
    } else {
        (p * 18_446_744_073_709_551_616.0) as u64
    }
}

/// Whether attempt `attempt` of the (sub-)task keyed `key` fails at probability `p`.
#[inline]
pub fn fails(key: u64, attempt: u64, p: f64) -> bool {
    fails_below(key, attempt, threshold(p))
}

/// [`fails`] with a precomputed [`threshold`]; a threshold of `u64::MAX` always fails.
#[inline]
pub fn fails_below(key: u64, attempt: u64, threshold: u64) -> bool {
    threshold == u64::MAX || splitmix64(key.wrapping_mul(31).wrapping_add(attempt)) < threshold
}

/// The oracle key of the sub-task of `task_id` in domain `domain` when the task needs `fanout`
/// domains: the task id itself for a single-domain task, `task_id * 4 + domain` otherwise.
#[inline]
pub fn oracle_key(task_id: u64, domain: u16, fanout: u32) -> u64 {
    if fanout > 1 { task_id.wrapping_mul(4).wrapping_add(u64::from(domain)) } else { task_id }
}

/// The oracle key of a sub-task in `domain`, rerouted there from `origin` when they differ (see
/// the module's documentation).
#[inline]
pub fn rerouted_key(task_id: u64, domain: u16, origin: u16, fanout: u32) -> u64 {
    let key = oracle_key(task_id, domain, fanout);
    if domain == origin { key } else { key ^ REROUTE_SALT.wrapping_mul(u64::from(domain) + 1) }
}

/// The salt of a rerouted sub-task's oracle key.
const REROUTE_SALT: u64 = 0x5E70_07ED_0000_0003;

/// Salts that give the domain-level and meta-level fault injections their own oracle streams.
pub(crate) const DOMAIN_FAULT_SALT: u64 = 0xD0D0_0000_0000_0001;
pub(crate) const META_FAULT_SALT: u64 = 0x3E7A_0000_0000_0002;

/// A simulated agent's latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Returns at once.
    #[default]
    None,
    /// Every call takes `us` microseconds.
    Fixed {
        /// Microseconds.
        us: f64,
    },
    /// Exponentially distributed with mean `mean_us` microseconds (deterministic per call).
    Exponential {
        /// Microseconds.
        mean_us: f64,
    },
    /// `base_us`, except the first attempt of one task in `1 / slow_rate` (chosen by the oracle
    /// with `p = slow_rate` on attempt 0), which takes `slow_us`: W3's long tail.
    LongTail {
        /// Microseconds, the common case.
        base_us: f64,
        /// Microseconds, the slow case.
        slow_us: f64,
        /// The fraction of tasks whose first attempt is slow.
        slow_rate: f64,
    },
}

/// A fault to inject into a simulated agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SimFault {
    /// None.
    #[default]
    None,
    /// Every call blocks for `ms` milliseconds, then fails: a hung agent.
    Hang {
        /// Milliseconds.
        ms: u64,
    },
    /// A call panics with probability `rate` (by its own oracle stream), else behaves normally.
    Panic {
        /// Probability per call.
        rate: f64,
    },
}

/// The longest simulated latency or hang (one hour).
pub const MAX_SIM_LATENCY_US: f64 = 3.6e9;

/// A simulated agent: fails by the oracle at `error_rate`, takes `latency`, suffers `fault`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimAgent {
    /// Failure probability per attempt (the oracle's `p`).
    pub error_rate: f64,
    /// Latency per call.
    pub latency: Latency,
    /// Seeds the latency draws (not the oracle, which stays canonical).
    pub seed: u64,
    /// An injected fault.
    pub fault: SimFault,
    /// Waits its latency the way an I/O agent does, holding no thread: each call is a deferred
    /// attempt, completed by the engine's timer thread when the latency has passed. Without it
    /// the latency is spent on the calling worker (spinning for short waits, sleeping for long
    /// ones), as a CPU-bound or blocking agent spends it.
    pub io: bool,
}

impl Default for SimAgent {
    fn default() -> Self {
        Self { error_rate: 0.0, latency: Latency::None, seed: 0, fault: SimFault::None, io: false }
    }
}

impl SimAgent {
    /// An agent that fails at `error_rate` and takes no time.
    pub fn with_error_rate(error_rate: f64) -> Self {
        Self { error_rate, ..Self::default() }
    }

    /// Checks the parameters, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
        if !rate_ok(self.error_rate) {
            return Err(format!("error_rate must be in [0, 1], got {}", self.error_rate));
        }
        let us_ok = |v: f64| v.is_finite() && (0.0..=MAX_SIM_LATENCY_US).contains(&v);
        let ok = match self.latency {
            Latency::None => true,
            Latency::Fixed { us } => us_ok(us),
            Latency::Exponential { mean_us } => us_ok(mean_us),
            Latency::LongTail { base_us, slow_us, slow_rate } => us_ok(base_us) && us_ok(slow_us) && rate_ok(slow_rate),
        };
        if !ok {
            return Err(format!(
                "latency must have times from 0 to {MAX_SIM_LATENCY_US} us (one hour) and a rate in [0, 1]: {:?}",
                self.latency
            ));
        }
        match self.fault {
            SimFault::Panic { rate } if !rate_ok(rate) => {
                return Err(format!("panic rate must be in [0, 1], got {rate}"));
            }
            SimFault::Hang { ms } if ms as f64 * 1e3 > MAX_SIM_LATENCY_US => {
                return Err(format!("hang must be at most one hour, got {ms} ms"));
            }
            _ => {}
        }
        if self.io && self.fault != SimFault::None {
            return Err("an I/O agent (io = true) simulates latency only, not faults".into());
        }
        Ok(())
    }

    pub(crate) fn into_handler(self, timer: Option<Arc<Timer>>) -> SimHandler {
        let plain = self.latency == Latency::None && self.fault == SimFault::None && !self.io;
        SimHandler {
            control: Arc::new(SimControl {
                threshold: AtomicU64::new(threshold(self.error_rate)),
                rate_bits: AtomicU64::new(self.error_rate.to_bits()),
                extra_ns: AtomicU64::new(0),
                plain: AtomicBool::new(plain),
                plain_at_start: plain,
                waits_on_timer: self.io && timer.is_some(),
            }),
            timer: if self.io { timer } else { None },
            spec: self,
        }
    }
}

/// What an operator may change of a running simulated agent
/// ([`crate::Engine::set_sim_agent`]): its error rate, and latency added to every call (a slow
/// agent). Relaxed loads where the fields were read.
pub(crate) struct SimControl {
    threshold: AtomicU64,
    /// The error rate as given (for reading back).
    rate_bits: AtomicU64,
    extra_ns: AtomicU64,
    /// No latency (its own or added), no fault, no timer: the oracle alone.
    plain: AtomicBool,
    plain_at_start: bool,
    /// It waits its latency on the engine's timer (else on the calling thread).
    pub(crate) waits_on_timer: bool,
}

impl SimControl {
    /// Changes the error rate and the added latency.
    pub(crate) fn set(&self, error_rate: Option<f64>, extra: Option<Duration>) {
        if let Some(p) = error_rate {
            self.threshold.store(threshold(p), Ordering::Relaxed);
            self.rate_bits.store(p.to_bits(), Ordering::Relaxed);
        }
        if let Some(d) = extra {
            let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
            self.extra_ns.store(ns, Ordering::Relaxed);
            self.plain.store(self.plain_at_start && ns == 0, Ordering::Relaxed);
        }
    }

    /// The error rate (the oracle's p) and the added latency now.
    pub(crate) fn get(&self) -> (f64, Duration) {
        let p = f64::from_bits(self.rate_bits.load(Ordering::Relaxed));
        (p, Duration::from_nanos(self.extra_ns.load(Ordering::Relaxed)))
    }
}

/// A [`SimAgent`] ready to run, with its oracle threshold precomputed.
pub(crate) struct SimHandler {
    spec: SimAgent,
    pub(crate) control: Arc<SimControl>,
    /// The engine's timer, for an I/O agent.
    timer: Option<Arc<Timer>>,
}

/// Error code a simulated agent returns when the oracle fails it.
pub const SIM_ERROR: i32 = 1;
/// Error code a hung simulated agent returns when it finally answers.
pub const SIM_HUNG: i32 = 2;

impl Agent for SimHandler {
    #[inline]
    fn call(&self, req: &Request<'_>, cx: &mut CallCx<'_>) -> Call {
        let key = rerouted_key(req.task_id, req.domain.0, req.origin.0, req.fanout);
        let attempt = u64::from(req.attempt);
        let c = &*self.control;
        if c.plain.load(Ordering::Relaxed) {
            return if fails_below(key, attempt, c.threshold.load(Ordering::Relaxed)) {
                Call::Failed(FailureKind::Error, SIM_ERROR)
            } else {
                Call::Value(key)
            };
        }
        self.call_slow(key, attempt, cx)
    }
}

impl SimHandler {
    /// An agent with latency, faults or a timer.
    fn call_slow(&self, key: u64, attempt: u64, cx: &mut CallCx<'_>) -> Call {
        match self.spec.fault {
            SimFault::None => {}
            SimFault::Hang { ms } => {
                std::thread::sleep(Duration::from_millis(ms));
                return Call::Failed(FailureKind::Error, SIM_HUNG);
            }
            SimFault::Panic { rate } => {
                if fails(key ^ 0x5A5A_5A5A, attempt, rate) {
                    // resume_unwind skips the panic hook: an injected fault is not a bug report.
                    std::panic::resume_unwind(Box::new("simulated agent panic"));
                }
            }
        }
        let us = self.latency_us(key, attempt) + self.control.extra_ns.load(Ordering::Relaxed) as f64 / 1e3;
        let ok = !fails_below(key, attempt, self.control.threshold.load(Ordering::Relaxed));
        if let Some(timer) = &self.timer {
            let Some(a) = cx.defer() else { return Call::Failed(FailureKind::Overloaded, 0) };
            let answer = if ok { Answer::ok(key, Vec::new()) } else { Answer::failed(FailureKind::Error, SIM_ERROR) };
            timer.schedule((us * 1e3) as u64, a, answer);
            return Call::Pending;
        }
        if us > 0.0 {
            take(Duration::from_secs_f64(us / 1e6));
        }
        if ok { Call::Value(key) } else { Call::Failed(FailureKind::Error, SIM_ERROR) }
    }

    /// The latency of attempt `attempt` of the sub-task keyed `key`, in microseconds.
    #[inline]
    fn latency_us(&self, key: u64, attempt: u64) -> f64 {
        match self.spec.latency {
            Latency::None => 0.0,
            Latency::Fixed { us } => us,
            Latency::Exponential { mean_us } => {
                let u = (splitmix64(key ^ attempt.rotate_left(32) ^ self.spec.seed) >> 11) as f64 / (1u64 << 53) as f64;
                -(1.0 - u).ln() * mean_us
            }
            Latency::LongTail { base_us, slow_us, slow_rate } => {
                if attempt == 0 && fails(key, 0, slow_rate) {
                    slow_us
                } else {
                    base_us
                }
            }
        }
    }
}

/// Spends `d`: spinning for short waits (a sleep cannot be shorter than the timer slack, about
/// 50 us on Linux), sleeping for long ones.
fn take(d: Duration) {
    let start = Instant::now();
    if d > Duration::from_micros(200) {
        std::thread::sleep(d);
        return;
    }
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn oracle_matches_the_workload_definition() {
        // Reference values computed from the definition in WORKLOADS.md.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(1), 0x910A_2DEC_8902_5CC1);
        let n = if cfg!(miri) { 200_000u64 } else { 1_000_000 };
        let failures = (0..n).filter(|&i| fails(i, 0, 0.12)).count() as f64;
        assert!((failures / n as f64 - 0.12).abs() < 0.002, "{failures}");
        assert!(!fails(5, 0, 0.0));
        assert!(fails(5, 0, 1.0));
        assert_eq!(oracle_key(10, 2, 1), 10);
        assert_eq!(oracle_key(10, 2, 3), 42);
        // A rerouted sub-task's key, as WORKLOADS.md gives it; not rerouted, the plain key.
        assert_eq!(rerouted_key(10, 2, 2, 1), 10);
        assert_eq!(rerouted_key(10, 2, 0, 1), 10 ^ 0x5E70_07ED_0000_0003u64.wrapping_mul(3));
        assert_eq!(rerouted_key(10, 2, 0, 3), 42 ^ 0x5E70_07ED_0000_0003u64.wrapping_mul(3));
        // Independent draws: an alternate fails where its domain did about 12% of the time.
        let both = (0..n)
            .filter(|&i| {
                fails_below(i, 0, threshold(0.12)) && fails_below(rerouted_key(i, 1, 0, 1), 0, threshold(0.12))
            })
            .count();
        assert!((both as f64 / n as f64 - 0.0144).abs() < 0.001, "{both}");
    }
}
