//! An adaptive concurrency throttle: the admission throttle's limit (`max_concurrent`) moved by
//! the admitted tasks' latency, on one of Netflix concurrency-limits' algorithms.
//!
//! **AIMD** (`AIMDLimit`, the default): a task that failed by time (its deadline or a domain's
//! timeout) or took longer than the target from its permit on is a drop. Each worker gathers its
//! completions in batches of 64: a batch with a drop multiplies the limit by the backoff ratio
//! (0.9), once; a batch without one, while the tasks in flight used at least half the limit, adds
//! one. (AIMDLimit moves per completion; per batch, a run of drops from one overload lowers the
//! limit once per batch instead of collapsing it to its floor: measured, per completion it sat at
//! its minimum and cut the goodput by 40%.)
//!
//! **Gradient2** (`Gradient2Limit`, as at concurrency-limits' commit 14ddfa2; later versions
//! multiply the gradient by an RTT tolerance of 1.5 and decay by 0.95): no target; the limit follows the ratio of a long-term
//! average of the latency (an exponential average over `long_window` samples) to the current one,
//! the batch's mean (as concurrency-limits' `WindowedLimit` hands its delegate a window's
//! average): `gradient = clamp(long / short, 0.5, 1)`, `new = limit x gradient + queue_size`,
//! smoothed as `limit x (1 - smoothing) + new x smoothing`. A long average more than twice the
//! current one comes down to twice it (the load has passed: the reference's 0.9 per sample over a
//! batch); a batch that used less than half the limit
//! leaves it (the application, not the limit, bounds the load).
//!
//! Either way the limit stays within [`min_limit`, `max_limit`]. The shared limit is written a few
//! hundred times a second at most, under a small lock that no hot path takes; the throttle itself
//! reads the limit with one relaxed load, as before.

use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which of concurrency-limits' algorithms moves the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAlgorithm {
    /// `AIMDLimit`: down by `backoff_ratio` on a drop (a task slower than `target_latency`), up
    /// by one otherwise.
    #[default]
    Aimd,
    /// `Gradient2Limit`: by the gradient of the latency, its long-term average over the current
    /// one (`smoothing`, `queue_size`, `long_window`).
    Gradient2,
}

/// The adaptive throttle's settings ([`EngineConfig::adaptive_throttle`](crate::EngineConfig::adaptive_throttle),
/// `[engine.adaptive_throttle]` in TOML). The defaults are concurrency-limits' defaults (the
/// same limits for both algorithms), with the target latency in place of AIMD's timeout.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveThrottle {
    /// The algorithm (`"aimd"`, the default, or `"gradient2"`).
    pub algorithm: LimitAlgorithm,
    /// The limit it starts from.
    pub initial_limit: u64,
    /// The least and the most it goes to.
    pub min_limit: u64,
    /// See `min_limit`.
    pub max_limit: u64,
    /// AIMD: a drop multiplies the limit by this (0.5 to 1).
    pub backoff_ratio: f64,
    /// AIMD: a task slower than this, from taking its throttle permit to its completion, counts
    /// as a drop (its wait for the permit is the throttle's own queue, not the load it measures).
    #[serde(with = "crate::duration::ms")]
    pub target_latency: Duration,
    /// Gradient2: how much of each new estimate the limit takes (above 0, at most 1).
    pub smoothing: f64,
    /// Gradient2: the queue it allows on top of the limit while the latency holds.
    pub queue_size: u64,
    /// Gradient2: the completions the long-term latency average spans (at least 1).
    pub long_window: u64,
}

impl Default for AdaptiveThrottle {
    fn default() -> Self {
        Self {
            algorithm: LimitAlgorithm::Aimd,
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            target_latency: Duration::from_secs(5),
            smoothing: 0.2,
            queue_size: 4,
            long_window: 600,
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
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(format!("adaptive_throttle: smoothing must be in (0, 1], got {}", self.smoothing));
        }
        if self.queue_size > self.max_limit {
            return Err(format!(
                "adaptive_throttle: queue_size must be at most max_limit ({}), got {}",
                self.max_limit, self.queue_size
            ));
        }
        if self.long_window == 0 {
            return Err("adaptive_throttle: long_window must be at least 1, got 0".into());
        }
        Ok(())
    }
}

/// The adaptive throttle's state ([`Engine::adaptive_throttle`](crate::Engine::adaptive_throttle)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AdaptiveStats {
    /// The limit now.
    pub limit: u64,
    /// Times the limit in force went down (AIMD: a batch with a drop; Gradient2: a gradient
    /// below one).
    pub decreases: u64,
    /// Times it went up.
    pub increases: u64,
}

/// A worker's completions since it last applied them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Batch {
    samples: u64,
    drops: u64,
    /// Their latencies from the permit on, summed (ns).
    rtt_sum: u64,
    /// The most tasks in flight seen in the batch.
    in_flight: u64,
}

/// Completions gathered per worker before they move the shared limit.
const BATCH: u64 = 64;

/// The limit, and Gradient2's long-term latency average.
struct State {
    limit: f64,
    /// Gradient2: the long-term average latency (ns; 0 until the first batch).
    long_rtt: f64,
}

/// The shared limit and its moves.
pub(crate) struct AdaptiveLimit {
    cfg: AdaptiveThrottle,
    state: Mutex<State>,
    /// Times the limit was lowered and raised.
    pub(crate) decreases: AtomicU64,
    pub(crate) increases: AtomicU64,
}

impl AdaptiveLimit {
    pub(crate) fn new(cfg: AdaptiveThrottle) -> Self {
        Self {
            cfg,
            state: Mutex::new(State { limit: cfg.initial_limit as f64, long_rtt: 0.0 }),
            decreases: AtomicU64::new(0),
            increases: AtomicU64::new(0),
        }
    }

    /// AIMD's target latency in nanoseconds.
    #[inline]
    pub(crate) fn target_ns(&self) -> u64 {
        self.cfg.target_latency.as_nanos() as u64
    }

    /// Adds one completion (a drop or not, its latency from the permit on, the tasks in flight)
    /// to a worker's batch; returns the new limit when the batch was applied.
    #[inline]
    pub(crate) fn sample(&self, b: &mut Batch, dropped: bool, rtt_ns: u64, in_flight: u64) -> Option<u64> {
        b.samples += 1;
        b.drops += u64::from(dropped);
        b.rtt_sum = b.rtt_sum.saturating_add(rtt_ns);
        b.in_flight = b.in_flight.max(in_flight);
        if b.samples < BATCH {
            return None;
        }
        let batch = std::mem::take(b);
        Some(self.apply(batch))
    }

    fn apply(&self, b: Batch) -> u64 {
        let mut s = lock(&self.state);
        let before = s.limit as u64;
        match self.cfg.algorithm {
            LimitAlgorithm::Aimd => {
                if b.drops > 0 {
                    s.limit = (s.limit * self.cfg.backoff_ratio).max(self.cfg.min_limit as f64);
                } else if (b.in_flight * 2) as f64 >= s.limit {
                    s.limit = (s.limit + 1.0).min(self.cfg.max_limit as f64);
                }
            }
            LimitAlgorithm::Gradient2 => self.gradient2(&mut s, &b),
        }
        let after = s.limit as u64;
        if after < before {
            self.decreases.fetch_add(1, Ordering::Relaxed);
        } else if after > before {
            self.increases.fetch_add(1, Ordering::Relaxed);
        }
        after
    }

    /// Gradient2Limit's update, with the batch's mean latency as the current one.
    fn gradient2(&self, s: &mut State, b: &Batch) {
        let cfg = &self.cfg;
        let short = (b.rtt_sum as f64 / b.samples.max(1) as f64).max(1.0);
        // The long-term average (ExpAvgMeasurement): the first batch sets it, then each of a
        // batch's samples weighs 2 / (long_window + 1).
        let long = if s.long_rtt == 0.0 {
            short
        } else {
            let keep = (1.0 - 2.0 / (cfg.long_window as f64 + 1.0)).powf(b.samples as f64);
            s.long_rtt * keep + short * (1.0 - keep)
        };
        // The load has passed: bring the long average down sooner than its window would. The
        // reference multiplies it by 0.9 per sample while it is above twice the current latency;
        // over a batch of 64 (0.9^64 = 0.001) that lands it at twice the current latency.
        s.long_rtt = long.min(2.0 * short);
        // Application-limited: the limit did not bound the load, so the latency says nothing of it.
        if (b.in_flight as f64) < s.limit / 2.0 {
            return;
        }
        let gradient = (long / short).clamp(0.5, 1.0);
        let estimate = s.limit * gradient + cfg.queue_size as f64;
        let smoothed = s.limit * (1.0 - cfg.smoothing) + estimate * cfg.smoothing;
        s.limit = smoothed.clamp(cfg.min_limit as f64, cfg.max_limit as f64);
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> u64 {
        lock(&self.state).limit as u64
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

    const MS: u64 = 1_000_000;

    #[test]
    fn a_drop_backs_off_and_busy_batches_climb_within_bounds() {
        let a = AdaptiveLimit::new(AdaptiveThrottle {
            initial_limit: 100,
            min_limit: 10,
            max_limit: 150,
            ..AdaptiveThrottle::default()
        });
        let mut b = Batch::default();
        // A batch of 64 with drops in it: 100 x 0.9, once.
        let got: Vec<_> = (0..64).filter_map(|i| a.sample(&mut b, i % 2 == 0, MS, 100)).collect();
        assert_eq!(got, [90]);
        // A busy batch (half the limit in flight) without a drop: + 1.
        let got: Vec<_> = (0..64).filter_map(|_| a.sample(&mut b, false, MS, 60)).collect();
        assert_eq!(got, [91]);
        // An idle one leaves it.
        let got: Vec<_> = (0..64).filter_map(|_| a.sample(&mut b, false, MS, 10)).collect();
        assert_eq!(got, [91]);
        for _ in 0..64 * 100 {
            a.sample(&mut b, true, MS, 150);
        }
        assert_eq!(a.limit(), 10, "never below min_limit");
        for _ in 0..64 * 500 {
            a.sample(&mut b, false, MS, 150);
        }
        assert_eq!(a.limit(), 150, "never above max_limit");
        assert!(
            AdaptiveThrottle { backoff_ratio: 1.5, ..AdaptiveThrottle::default() }
                .validate()
                .unwrap_err()
                .contains("backoff_ratio")
        );
    }

    #[test]
    fn gradient2_follows_the_latency_gradient_within_bounds() {
        let cfg = AdaptiveThrottle {
            algorithm: LimitAlgorithm::Gradient2,
            initial_limit: 100,
            min_limit: 10,
            max_limit: 150,
            ..AdaptiveThrottle::default()
        };
        let a = AdaptiveLimit::new(cfg);
        let mut b = Batch::default();
        let batch = |a: &AdaptiveLimit, b: &mut Batch, rtt: u64, in_flight: u64| {
            (0..64).filter_map(|_| a.sample(b, false, rtt, in_flight)).last().unwrap()
        };
        // Steady latency, the limit in use: the gradient is 1, so the limit grows by the
        // queue's share: 100 x 0.8 + (100 + 4) x 0.2 = 100.8.
        assert_eq!(batch(&a, &mut b, MS, 100), 100);
        assert!((lock(&a.state).limit - 100.8).abs() < 1e-9);
        // The latency doubles: the long average moves a batch's share of the way (64 samples of
        // 2 / 601 each: 19%), so the gradient is 1.19 / 2 and the limit 93.46.
        let keep = (1.0 - 2.0 / 601.0f64).powi(64);
        let gradient = (keep + 2.0 * (1.0 - keep)) / 2.0;
        let expected = 100.8 * 0.8 + (100.8 * gradient + 4.0) * 0.2;
        assert_eq!(batch(&a, &mut b, 2 * MS, 100), expected as u64);
        assert!((lock(&a.state).limit - expected).abs() < 1e-6 && expected < 93.5, "{expected}");
        // Application-limited (under half the limit in flight): unchanged.
        assert_eq!(batch(&a, &mut b, 4 * MS, 10), expected as u64);
        // A latency that keeps growing (x 1.5 a batch) holds the gradient at 0.5 and the limit
        // at its floor; a long calm takes it to the ceiling.
        let mut rtt = MS as f64;
        for _ in 0..60 {
            rtt *= 1.5;
            batch(&a, &mut b, rtt as u64, 150);
        }
        assert_eq!(a.limit(), 10, "never below min_limit");
        for _ in 0..2000 {
            batch(&a, &mut b, MS, 150);
        }
        assert_eq!(a.limit(), 150, "never above max_limit");
        let s = a.stats();
        assert!(s.decreases > 0 && s.increases > 0, "{s:?}");
        for (bad, field) in [
            (AdaptiveThrottle { smoothing: 0.0, ..cfg }, "smoothing"),
            (AdaptiveThrottle { queue_size: 151, ..cfg }, "queue_size"),
            (AdaptiveThrottle { long_window: 0, ..cfg }, "long_window"),
        ] {
            assert!(bad.validate().unwrap_err().contains(field), "{field}");
        }
    }
}
