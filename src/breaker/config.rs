//! A breaker's settings: the caller's form ([`BreakerConfig`], with the seed's defaults per
//! level and its checks), and the form a running breaker reads them in ([`Live`]: one atomic
//! per setting, changed while calls run).

use super::BreakerMode;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A breaker's settings. The defaults of each level are the seed's: see
/// [`BreakerConfig::agent`], [`BreakerConfig::domain`] and [`BreakerConfig::meta`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// A call slower than this counts as a failure (and the level abandons it where it can).
    #[serde(with = "crate::duration::ms")]
    pub timeout: Duration,
    /// Trip after this many failures in a row; 0 turns this trigger off.
    pub consecutive_failures: u32,
    /// Trip when the failure rate over the window reaches this fraction (0 < rate <= 1); 0
    /// turns this trigger off.
    pub failure_rate: f64,
    /// The sliding window over which the rate is measured.
    #[serde(with = "crate::duration::ms")]
    pub window: Duration,
    /// The rates are not judged on fewer calls than this (with a count window, on fewer than
    /// the smaller of this and `count_window`).
    pub min_calls: u32,
    /// When non-zero, the rates are judged over the last this many calls (a count window, like
    /// resilience4j's `COUNT_BASED`, at most 1,000,000) instead of over `window`.
    pub count_window: u32,
    /// A call slower than this is a slow call, whatever it returned (0: none is). A slow call
    /// is not a failure unless it is also slower than `timeout`.
    #[serde(with = "crate::duration::ms")]
    pub slow_call_duration: Duration,
    /// Trip when slow calls reach this fraction of the window's calls (0 < rate <= 1; 0 turns
    /// this trigger off), judged apart from the failure rate. While half-open, a slow probe
    /// counts as a failed one when this is set.
    pub slow_call_rate: f64,
    /// The first open time; each re-open from half-open doubles it.
    #[serde(with = "crate::duration::ms")]
    pub open_base: Duration,
    /// The cap on the open time.
    #[serde(with = "crate::duration::ms")]
    pub open_max: Duration,
    /// Probes let through at once while half-open, and the successes that close the breaker
    /// (1 to 255).
    pub half_open_probes: u32,
    /// Normal, disabled or forced open.
    pub mode: BreakerMode,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::agent()
    }
}

impl BreakerConfig {
    /// The seed's agent level: 50 ms timeout, trips after 3 consecutive failures; the domain
    /// fails over to another agent at once.
    pub fn agent() -> Self {
        Self {
            timeout: Duration::from_millis(50),
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: Duration::from_secs(1),
            min_calls: 20,
            count_window: 0,
            slow_call_duration: Duration::ZERO,
            slow_call_rate: 0.0,
            open_base: Duration::from_millis(50),
            open_max: Duration::from_secs(5),
            half_open_probes: 1,
            mode: BreakerMode::Normal,
        }
    }

    /// The seed's domain level: 200 ms timeout, trips after 5 consecutive failures; while open
    /// the domain sheds its sub-tasks.
    pub fn domain() -> Self {
        Self {
            timeout: Duration::from_millis(200),
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(1),
            min_calls: 50,
            count_window: 0,
            slow_call_duration: Duration::ZERO,
            slow_call_rate: 0.0,
            open_base: Duration::from_millis(200),
            open_max: Duration::from_secs(10),
            half_open_probes: 3,
            mode: BreakerMode::Normal,
        }
    }

    /// The seed's meta level: 500 ms timeout and no run-of-failures trigger (the seed gives
    /// none); it trips on the failure rate, and while open the engine runs degraded (see
    /// `AdmissionConfig::essential_priority`).
    pub fn meta() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            consecutive_failures: 0,
            failure_rate: 0.5,
            window: Duration::from_secs(2),
            min_calls: 100,
            count_window: 0,
            slow_call_duration: Duration::ZERO,
            slow_call_rate: 0.0,
            open_base: Duration::from_millis(500),
            open_max: Duration::from_secs(30),
            half_open_probes: 5,
            mode: BreakerMode::Normal,
        }
    }

    /// The same settings with the breaker disabled.
    pub fn disabled(mut self) -> Self {
        self.mode = BreakerMode::Disabled;
        self
    }

    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        for (what, d) in [
            ("timeout", self.timeout),
            ("window", self.window),
            ("open_base", self.open_base),
            ("open_max", self.open_max),
            ("slow_call_duration", self.slow_call_duration),
        ] {
            if d > crate::duration::MAX_DURATION {
                return Err(format!("{what} must be at most 30 days, got {d:?}"));
            }
        }
        let r = self.failure_rate;
        if !(0.0..=1.0).contains(&r) {
            return Err(format!("failure_rate must be in [0, 1] (0 = off), got {r}"));
        }
        let slow = self.slow_call_rate;
        if !(0.0..=1.0).contains(&slow) {
            return Err(format!("slow_call_rate must be in [0, 1] (0 = off), got {slow}"));
        }
        if slow > 0.0 && self.slow_call_duration.is_zero() {
            return Err("slow_call_duration must be greater than zero when slow_call_rate is set".into());
        }
        if self.count_window > MAX_COUNT_WINDOW {
            return Err(format!("count_window must be at most {MAX_COUNT_WINDOW} calls, got {}", self.count_window));
        }
        if (r > 0.0 || slow > 0.0) && self.count_window == 0 && self.window.is_zero() {
            return Err(
                "window must be greater than zero when failure_rate or slow_call_rate is set (or give count_window)"
                    .into(),
            );
        }
        if self.open_base.is_zero() {
            return Err("open_base must be greater than zero".into());
        }
        if self.open_max < self.open_base {
            return Err("open_max must be at least open_base".into());
        }
        if !(1..=255).contains(&self.half_open_probes) {
            return Err(format!("half_open_probes must be 1 to 255, got {}", self.half_open_probes));
        }
        Ok(())
    }
}

/// The longest count window, in calls (one byte each).
pub const MAX_COUNT_WINDOW: u32 = 1_000_000;

/// The settings an operator may change while calls run, each in an atomic of its own: a call
/// reads the ones it needs with relaxed loads (as cheap as plain fields), and a change applies
/// from the next read. A check may see some settings before a change and some after; each
/// combination is a valid configuration, and none moves the state word.
pub(super) struct Live {
    pub(super) timeout_ns: AtomicU64,
    pub(super) consecutive_failures: AtomicU32,
    /// `f64::to_bits` of the failure rate.
    pub(super) failure_rate: AtomicU64,
    pub(super) min_calls: AtomicU32,
    pub(super) count_window: AtomicU32,
    pub(super) slow_call_ns: AtomicU64,
    /// `f64::to_bits` of the slow-call rate.
    pub(super) slow_call_rate: AtomicU64,
    /// What `on_result` records, decided when the settings are stored (one load on the hot
    /// path): `RECORD_TIME`, `RECORD_COUNT`, `JUDGE_SLOW`.
    pub(super) judged: AtomicU32,
    pub(super) open_base_ns: AtomicU64,
    pub(super) open_max_ns: AtomicU64,
    pub(super) half_open_probes: AtomicU32,
}

impl Live {
    pub(super) fn new(cfg: &BreakerConfig) -> Self {
        let live = Self {
            timeout_ns: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            failure_rate: AtomicU64::new(0),
            min_calls: AtomicU32::new(0),
            count_window: AtomicU32::new(0),
            slow_call_ns: AtomicU64::new(0),
            slow_call_rate: AtomicU64::new(0),
            judged: AtomicU32::new(0),
            open_base_ns: AtomicU64::new(0),
            open_max_ns: AtomicU64::new(0),
            half_open_probes: AtomicU32::new(0),
        };
        live.store(cfg);
        live
    }

    pub(super) fn store(&self, cfg: &BreakerConfig) {
        let r = Ordering::Relaxed;
        self.timeout_ns.store(cfg.timeout.as_nanos() as u64, r);
        self.consecutive_failures.store(cfg.consecutive_failures, r);
        self.failure_rate.store(cfg.failure_rate.to_bits(), r);
        self.min_calls.store(cfg.min_calls, r);
        self.count_window.store(cfg.count_window, r);
        self.slow_call_ns.store(cfg.slow_call_duration.as_nanos() as u64, r);
        self.slow_call_rate.store(cfg.slow_call_rate.to_bits(), r);
        let rates = cfg.failure_rate > 0.0 || cfg.slow_call_rate > 0.0;
        let judged = match (rates, cfg.count_window) {
            (false, _) => 0,
            (true, 0) => RECORD_TIME,
            (true, _) => RECORD_COUNT,
        } | if cfg.slow_call_rate > 0.0 { JUDGE_SLOW } else { 0 };
        self.judged.store(judged, r);
        self.open_base_ns.store(cfg.open_base.as_nanos() as u64, r);
        self.open_max_ns.store(cfg.open_max.as_nanos() as u64, r);
        self.half_open_probes.store(cfg.half_open_probes, r);
    }

    #[inline]
    pub(super) fn failure_rate(&self) -> f64 {
        f64::from_bits(self.failure_rate.load(Ordering::Relaxed))
    }

    #[inline]
    pub(super) fn slow_call_rate(&self) -> f64 {
        f64::from_bits(self.slow_call_rate.load(Ordering::Relaxed))
    }
}

pub(super) const RECORD_TIME: u32 = 1;
pub(super) const RECORD_COUNT: u32 = 2;
pub(super) const JUDGE_SLOW: u32 = 4;
