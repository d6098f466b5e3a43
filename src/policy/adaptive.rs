//! An adaptive concurrency throttle: the admission throttle's limit (`max_concurrent`) moved by
//! the admitted tasks' latency, on Netflix concurrency-limits' AIMD algorithm (`AIMDLimit`): a
//! task that failed by time (its deadline or a domain's timeout) or took longer than the target
//! from its permit on is a drop. Each worker gathers its completions in batches of 64: a batch
//! with a drop multiplies the limit by the backoff ratio (0.9), once; a batch without one, while
//! the tasks in flight used at least half the limit, adds one. (AIMDLimit moves per completion;
//! per batch, a run of drops from one overload lowers the limit once per batch instead of
//! collapsing it to its floor: measured, per completion it sat at its minimum and cut the
//! goodput by 40%.) The limit stays within [`min_limit`, `max_limit`].
//!
//! The shared limit is written a few hundred times a second at most, under a small lock that no
//! hot path takes; the throttle itself reads the limit with one relaxed load, as before.

use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The adaptive throttle's settings ([`EngineConfig::adaptive_throttle`](crate::EngineConfig::adaptive_throttle),
/// `[engine.adaptive_throttle]` in TOML). The defaults are concurrency-limits' AIMD defaults,
/// with the target latency in place of its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveThrottle {
    /// The limit it starts from.
    pub initial_limit: u64,
    /// The least and the most it goes to.
    pub min_limit: u64,
    /// See `min_limit`.
    pub max_limit: u64,
    /// A drop multiplies the limit by this (0.5 to 1).
    pub backoff_ratio: f64,
    /// A task slower than this, from taking its throttle permit to its completion, counts as a
    /// drop (its wait for the permit is the throttle's own queue, not the load it measures).
    #[serde(with = "crate::duration::ms")]
    pub target_latency: Duration,
}

impl Default for AdaptiveThrottle {
    fn default() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            target_latency: Duration::from_secs(5),
        }
    }
}

impl AdaptiveThrottle {
    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_limit == 0 || self.min_limit > self.max_limit {
            return Err(format!(
                "adaptive_throttle: min_limit must be at least 1 and at most max_limit, got {} and {}",
                self.min_limit, self.max_limit
            ));
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(format!(
                "adaptive_throttle: initial_limit must be within [min_limit, max_limit], got {}",
                self.initial_limit
            ));
        }
        if !(0.5..1.0).contains(&self.backoff_ratio) {
            return Err(format!("adaptive_throttle: backoff_ratio must be in [0.5, 1), got {}", self.backoff_ratio));
        }
        if self.target_latency.is_zero() || self.target_latency > crate::duration::MAX_DURATION {
            return Err(format!("adaptive_throttle: target_latency must be above zero, got {:?}", self.target_latency));
        }
        Ok(())
    }
}

/// The adaptive throttle's state ([`Engine::adaptive_throttle`](crate::Engine::adaptive_throttle)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AdaptiveStats {
    /// The limit now.
    pub limit: u64,
    /// Times a drop lowered it.
    pub decreases: u64,
    /// Times a busy batch raised it.
    pub increases: u64,
}

/// A worker's completions since it last applied them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Batch {
    samples: u64,
    drops: u64,
    /// The most tasks in flight seen in the batch.
    in_flight: u64,
}

/// Completions gathered per worker before they move the shared limit.
const BATCH: u64 = 64;

/// The shared limit and its path over time.
pub(crate) struct Aimd {
    cfg: AdaptiveThrottle,
    limit: Mutex<f64>,
    /// Times the limit was lowered and raised.
    pub(crate) decreases: AtomicU64,
    pub(crate) increases: AtomicU64,
}

impl Aimd {
    pub(crate) fn new(cfg: AdaptiveThrottle) -> Self {
        Self {
            cfg,
            limit: Mutex::new(cfg.initial_limit as f64),
            decreases: AtomicU64::new(0),
            increases: AtomicU64::new(0),
        }
    }

    /// The target latency in nanoseconds.
    #[inline]
    pub(crate) fn target_ns(&self) -> u64 {
        self.cfg.target_latency.as_nanos() as u64
    }

    /// Adds one completion to a worker's batch; returns the new limit when the batch was applied.
    #[inline]
    pub(crate) fn sample(&self, b: &mut Batch, dropped: bool, in_flight: u64) -> Option<u64> {
        b.samples += 1;
        b.drops += u64::from(dropped);
        b.in_flight = b.in_flight.max(in_flight);
        if b.samples < BATCH {
            return None;
        }
        let batch = std::mem::take(b);
        Some(self.apply(batch))
    }

    fn apply(&self, b: Batch) -> u64 {
        let mut limit = lock(&self.limit);
        if b.drops > 0 {
            *limit = (*limit * self.cfg.backoff_ratio).max(self.cfg.min_limit as f64);
            self.decreases.fetch_add(1, Ordering::Relaxed);
        } else if (b.in_flight * 2) as f64 >= *limit {
            *limit = (*limit + 1.0).min(self.cfg.max_limit as f64);
            self.increases.fetch_add(1, Ordering::Relaxed);
        }
        *limit as u64
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> u64 {
        *lock(&self.limit) as u64
    }

    pub(crate) fn stats(&self) -> AdaptiveStats {
        AdaptiveStats {
            limit: self.limit(),
            decreases: self.decreases.load(Ordering::Relaxed),
            increases: self.increases.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_drop_backs_off_and_busy_batches_climb_within_bounds() {
        let a = Aimd::new(AdaptiveThrottle {
            initial_limit: 100,
            min_limit: 10,
            max_limit: 150,
            ..AdaptiveThrottle::default()
        });
        let mut b = Batch::default();
        // A batch of 64 with drops in it: 100 x 0.9, once.
        let got: Vec<_> = (0..64).filter_map(|i| a.sample(&mut b, i % 2 == 0, 100)).collect();
        assert_eq!(got, [90]);
        // A busy batch (half the limit in flight) without a drop: + 1.
        let got: Vec<_> = (0..64).filter_map(|_| a.sample(&mut b, false, 60)).collect();
        assert_eq!(got, [91]);
        // An idle one leaves it.
        let got: Vec<_> = (0..64).filter_map(|_| a.sample(&mut b, false, 10)).collect();
        assert_eq!(got, [91]);
        for _ in 0..64 * 100 {
            a.sample(&mut b, true, 150);
        }
        assert_eq!(a.limit(), 10, "never below min_limit");
        for _ in 0..64 * 500 {
            a.sample(&mut b, false, 150);
        }
        assert_eq!(a.limit(), 150, "never above max_limit");
        assert!(
            AdaptiveThrottle { backoff_ratio: 1.5, ..AdaptiveThrottle::default() }
                .validate()
                .unwrap_err()
                .contains("backoff_ratio")
        );
    }
}
