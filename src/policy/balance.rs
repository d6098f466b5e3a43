//! How a domain chooses the agent for an attempt: smooth weighted round-robin (the default), or
//! the power of two choices over peak-EWMA latency times (attempts in flight + 1), the load
//! balancer of Finagle, Linkerd and tower (`tower::load::PeakEwma` with `tower::balance::p2c`).
//!
//! Peak EWMA keeps one latency estimate per agent. A sample above the estimate replaces it at
//! once (the peak: an agent that turns slow is avoided at its first slow answer); a sample below
//! it moves the estimate by an exponentially weighted average whose weight decays with the time
//! since the last sample (`decay`, 10 s by default as in Finagle and Linkerd). Read for a choice,
//! the estimate also decays toward zero with the time since its last sample, so that an agent
//! left alone because it was slow is tried again in time. An agent without a sample yet is
//! estimated at `default_rtt` (30 ms, Linkerd's default). The cost of an agent is its estimate
//! times (its attempts in flight + 1); of two agents drawn at random from the rotation (weights
//! included), the cheaper is asked first, and the rest of the rotation follows as the failover
//! order.
//!
//! Lock-free and allocation-free: the estimate is an `f64` in an atomic moved by
//! compare-and-swap, its time stamp a second atomic; two workers recording at once may each use
//! the other's stamp, which only shifts a weight a little. The agents' attempts in flight are
//! counted by their bulkheads, which count for a domain balanced by peak EWMA even without a
//! limit (and only then: round-robin domains keep the bulkhead's one-branch path).

use crate::sync::{AtomicU8, AtomicU64, Ordering};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a domain chooses among its agents ([`TopologyBuilder::balance`](crate::TopologyBuilder::balance),
/// [`Engine::set_domain_balance`](crate::Engine::set_domain_balance), `balance = { kind = ... }`
/// in a domain's TOML table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Balance {
    /// Smooth weighted round-robin: each agent in turn, as often as its weight.
    #[default]
    RoundRobin,
    /// The power of two choices over peak-EWMA latency x (attempts in flight + 1); see the
    /// module documentation.
    PeakEwma {
        /// How fast the estimate forgets (the EWMA's time constant): 10 s by default.
        #[serde(with = "crate::duration::ms", default = "default_decay")]
        decay: Duration,
        /// The estimate of an agent without a sample yet: 30 ms by default.
        #[serde(with = "crate::duration::ms", default = "default_rtt")]
        default_rtt: Duration,
    },
}

fn default_decay() -> Duration {
    Duration::from_secs(10)
}
fn default_rtt() -> Duration {
    Duration::from_millis(30)
}

impl Balance {
    /// Peak EWMA with Finagle's and Linkerd's defaults (decay 10 s, default RTT 30 ms).
    pub fn peak_ewma() -> Self {
        Self::PeakEwma { decay: default_decay(), default_rtt: default_rtt() }
    }

    /// Its name, as in TOML and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::PeakEwma { .. } => "peak_ewma",
        }
    }

    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if let Self::PeakEwma { decay, default_rtt } = self {
            for (what, d) in [("decay", decay), ("default_rtt", default_rtt)] {
                if d.is_zero() || *d > crate::duration::MAX_DURATION {
                    return Err(format!("balance {what} must be greater than zero and at most 30 days, got {d:?}"));
                }
            }
        }
        Ok(())
    }
}

const KIND_ROUND_ROBIN: u8 = 0;
const KIND_PEAK_EWMA: u8 = 1;

/// A domain's balance as the workers read it: one relaxed load of the kind per choice, the two
/// durations only when it is peak EWMA. Changed live by [`DomainBalance::set`].
pub(crate) struct DomainBalance {
    kind: AtomicU8,
    decay_ns: AtomicU64,
    default_rtt_ns: AtomicU64,
}

impl DomainBalance {
    pub(crate) fn new(b: &Balance) -> Self {
        // The defaults' durations even for round-robin: outlier detection reads the decay too.
        let d = Self {
            kind: AtomicU8::new(0),
            decay_ns: AtomicU64::new(default_decay().as_nanos() as u64),
            default_rtt_ns: AtomicU64::new(default_rtt().as_nanos() as u64),
        };
        d.set(b);
        d
    }

    pub(crate) fn set(&self, b: &Balance) {
        match *b {
            Balance::RoundRobin => self.kind.store(KIND_ROUND_ROBIN, Ordering::Relaxed),
            Balance::PeakEwma { decay, default_rtt } => {
                self.decay_ns.store((decay.as_nanos() as u64).max(1), Ordering::Relaxed);
                self.default_rtt_ns.store((default_rtt.as_nanos() as u64).max(1), Ordering::Relaxed);
                self.kind.store(KIND_PEAK_EWMA, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn get(&self) -> Balance {
        match self.kind.load(Ordering::Relaxed) {
            KIND_PEAK_EWMA => Balance::PeakEwma {
                decay: Duration::from_nanos(self.decay_ns.load(Ordering::Relaxed)),
                default_rtt: Duration::from_nanos(self.default_rtt_ns.load(Ordering::Relaxed)),
            },
            _ => Balance::RoundRobin,
        }
    }

    /// Whether the domain chooses by peak EWMA (one relaxed load).
    #[inline]
    pub(crate) fn is_peak_ewma(&self) -> bool {
        self.kind.load(Ordering::Relaxed) == KIND_PEAK_EWMA
    }

    /// (decay, default RTT) in nanoseconds.
    #[inline]
    pub(crate) fn params(&self) -> (f64, f64) {
        (self.decay_ns.load(Ordering::Relaxed) as f64, self.default_rtt_ns.load(Ordering::Relaxed) as f64)
    }
}

/// One agent's peak-EWMA latency estimate (see the module documentation).
pub(crate) struct PeakEwma {
    /// `f64::to_bits` of the estimate in nanoseconds.
    estimate: AtomicU64,
    /// The clock reading of the last sample; 0 before the first.
    stamp: AtomicU64,
}

impl PeakEwma {
    pub(crate) fn new() -> Self {
        Self { estimate: AtomicU64::new(0), stamp: AtomicU64::new(0) }
    }

    /// The estimate at `now` in nanoseconds: the default before any sample, else the last
    /// estimate decayed toward zero over the time since it was made.
    #[inline]
    pub(crate) fn estimate(&self, now: u64, decay_ns: f64, default_rtt_ns: f64) -> f64 {
        let stamp = self.stamp.load(Ordering::Relaxed);
        if stamp == 0 {
            return default_rtt_ns;
        }
        let e = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        e * (-(now.saturating_sub(stamp) as f64) / decay_ns).exp()
    }

    /// Records an attempt's latency at `now`.
    pub(crate) fn observe(&self, now: u64, latency_ns: u64, decay_ns: f64) {
        let rtt = latency_ns as f64;
        let stamp = self.stamp.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(stamp) as f64;
        let w = (-elapsed / decay_ns).exp();
        let mut cur = self.estimate.load(Ordering::Relaxed);
        loop {
            // The first sample replaces the default outright (tower keeps the default as a prior
            // that takes about `decay` to wash out: 30 ms over a 1 ms agent hid its peers'
            // differences for seconds).
            let next = if stamp == 0 {
                rtt
            } else {
                let prior = f64::from_bits(cur);
                if rtt > prior { rtt } else { prior * w + rtt * (1.0 - w) }
            };
            match self.estimate.compare_exchange_weak(cur, next.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.stamp.store(now.max(1), Ordering::Relaxed);
    }

    /// The estimate as its last sample left it (not decayed since), if it has one: what
    /// outlier detection compares, so that an agent just sampled is not judged against peers
    /// whose estimates decayed while they waited for their next sample.
    #[inline]
    pub(crate) fn stored(&self) -> Option<f64> {
        (self.stamp.load(Ordering::Relaxed) != 0).then(|| f64::from_bits(self.estimate.load(Ordering::Relaxed)))
    }

    /// Forgets every sample (the agent's domain changed its balance, or the id is reused).
    pub(crate) fn reset(&self) {
        self.stamp.store(0, Ordering::Relaxed);
        self.estimate.store(0, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_estimate_peaks_at_once_and_comes_down_by_the_decay() {
        let (decay, rtt0) = (1_000.0 * MS as f64, 30.0 * MS as f64);
        let p = PeakEwma::new();
        assert_eq!(p.estimate(5, decay, rtt0), rtt0, "no sample yet: the default");
        p.observe(5 * MS, 10 * MS, decay);
        assert_eq!(p.estimate(5 * MS, decay, rtt0), 10.0 * MS as f64, "the first sample replaces the default");
        p.observe(1_001 * MS, 100 * MS, decay);
        assert_eq!(p.estimate(1_001 * MS, decay, rtt0), 100.0 * MS as f64, "a peak replaces the estimate");
        // A fast sample 1 s later: e^-1 of the peak stays.
        p.observe(2_001 * MS, 10 * MS, decay);
        let want = 100.0 * (-1f64).exp() + 10.0 * (1.0 - (-1f64).exp());
        assert!((p.estimate(2_001 * MS, decay, rtt0) / MS as f64 - want).abs() < 1e-6);
        // Read 1 s after its sample, the estimate has decayed by e^-1 toward zero.
        let later = p.estimate(3_001 * MS, decay, rtt0) / MS as f64;
        assert!((later - want * (-1f64).exp()).abs() < 1e-6, "{later}");
        p.reset();
        assert_eq!(p.estimate(3_001 * MS, decay, rtt0), rtt0);
    }

    #[test]
    fn settings_are_checked_and_read_back() {
        assert!(Balance::peak_ewma().validate().is_ok());
        let bad = Balance::PeakEwma { decay: Duration::ZERO, default_rtt: Duration::from_millis(1) };
        assert!(bad.validate().unwrap_err().contains("decay"));
        let d = DomainBalance::new(&Balance::RoundRobin);
        assert!(!d.is_peak_ewma());
        d.set(&Balance::peak_ewma());
        assert!(d.is_peak_ewma());
        assert_eq!(d.get(), Balance::peak_ewma());
        assert_eq!(Balance::peak_ewma().name(), "peak_ewma");
    }
}
