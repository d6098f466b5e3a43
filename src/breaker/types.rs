//! What a breaker is and says: its states, the operator's modes, the causes of its
//! transitions, the permits it grants, and its snapshot for stats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The three states of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed = 0,
    /// Calls are refused until the open time ends.
    Open = 1,
    /// A bounded number of probe calls pass.
    HalfOpen = 2,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        })
    }
}

/// An override of the state machine, set by an operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BreakerMode {
    /// The state machine decides.
    #[default]
    Normal = 0,
    /// Every call passes and nothing trips (results are still counted).
    Disabled = 1,
    /// Every call is refused.
    ForcedOpen = 2,
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TransitionCause {
    /// Closed to open: the run of consecutive failures reached the threshold.
    ConsecutiveFailures = 0,
    /// Closed to open: the failure rate over the window reached the threshold.
    FailureRate = 1,
    /// Open to half-open: the open time ended.
    OpenTimeElapsed = 2,
    /// Half-open to open: a probe failed.
    ProbeFailed = 3,
    /// Half-open to closed: enough probes succeeded.
    ProbesSucceeded = 4,
    /// An operator forced the breaker open.
    Forced = 5,
    /// An operator returned the breaker to normal (it restarts closed).
    Reset = 6,
    /// Closed to open: the slow-call rate over the window reached the threshold.
    SlowCallRate = 7,
    /// Closed to open: the domain's outlier detection ejected the agent for a run of failures.
    OutlierFailures = 8,
    /// Closed to open: ejected for its failure rate.
    OutlierFailureRate = 9,
    /// Closed to open: ejected for a latency far above its peers'.
    OutlierLatency = 10,
}

impl TransitionCause {
    /// Its name in snake case, as in the JSON, the logs and the C constants.
    pub fn name(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRate => "failure_rate",
            Self::OpenTimeElapsed => "open_time_elapsed",
            Self::ProbeFailed => "probe_failed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::Forced => "forced",
            Self::Reset => "reset",
            Self::SlowCallRate => "slow_call_rate",
            Self::OutlierFailures => "outlier_failures",
            Self::OutlierFailureRate => "outlier_failure_rate",
            Self::OutlierLatency => "outlier_latency",
        }
    }

    /// Whether it is an outlier ejection.
    pub fn is_ejection(self) -> bool {
        matches!(self, Self::OutlierFailures | Self::OutlierFailureRate | Self::OutlierLatency)
    }
}

/// One change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why.
    pub cause: TransitionCause,
}

/// What a caller may do, as decided by [`Breaker::try_acquire`](super::Breaker::try_acquire); hand it back to
/// [`Breaker::on_result`](super::Breaker::on_result) with the call's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Permit {
    /// The call must not be made.
    Denied = 0,
    /// A normal call (closed, or the breaker is disabled).
    Call = 1,
    /// One of the bounded half-open probes.
    Probe = 2,
    /// A call made although the breaker refused it (the domain's panic routing, when every
    /// remaining agent is open): its outcome is counted but moves no state.
    Bypass = 3,
}

/// A point-in-time view of a breaker, for stats and health.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BreakerSnapshot {
    /// The current state (the effective one: forced-open reads as open).
    pub state: BreakerState,
    /// The operator's override.
    pub mode: BreakerMode,
    /// The current run of consecutive failures.
    pub consecutive_failures: u32,
    /// Calls and failures in the sliding window now (the time or the count window; empty when
    /// no rate is judged).
    pub window_calls: u64,
    /// See `window_calls`.
    pub window_failures: u64,
    /// Slow calls in the window now (counted while `slow_call_rate` is set).
    pub window_slow: u64,
    /// Closed-to-open transitions so far (outlier ejections not included).
    pub opened: u64,
    /// Outlier ejections (closed to open by the domain's outlier detection) so far.
    pub ejected: u64,
    /// Half-open-to-open transitions so far.
    pub reopened: u64,
    /// Open-to-half-open transitions so far.
    pub half_opened: u64,
    /// Half-open-to-closed transitions so far.
    pub closed: u64,
}
