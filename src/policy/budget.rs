//! The retry budget: failovers and hedges together may add at most a fraction of a domain's
//! sub-tasks, plus a small floor, over a sliding window, so that under a partial outage retries
//! cannot multiply the load on the agents that still answer (Envoy's retry budget; tower's
//! `retry::budget`).
//!
//! Each worker keeps its own count per domain (no shared write): the sub-tasks it started and
//! the retries it sent, in ten buckets spanning the window. A retry is allowed while
//! `retries + 1 <= min_per_s * window + ratio * sub-tasks` over the window.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A domain's retry budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries (failovers and hedges) per sub-task started, at most, over the window (in
    /// [0, 10]; Envoy's default is 0.2).
    pub ratio: f64,
    /// Retries per second each worker may send whatever the ratio allows (the floor, so that a
    /// quiet domain can still retry).
    #[serde(default = "ten")]
    pub min_per_s: f64,
    /// The sliding window.
    #[serde(with = "crate::duration::ms", default = "second")]
    pub window: Duration,
}

fn ten() -> f64 {
    10.0
}
fn second() -> Duration {
    Duration::from_secs(1)
}

impl RetryBudget {
    /// `ratio` retries per sub-task, a floor of 10 per second per worker, over one second.
    pub fn ratio(ratio: f64) -> Self {
        Self { ratio, min_per_s: ten(), window: second() }
    }

    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ratio.is_finite() && (0.0..=10.0).contains(&self.ratio)) {
            return Err(format!("retry_budget.ratio must be in [0, 10], got {}", self.ratio));
        }
        if !(self.min_per_s.is_finite() && self.min_per_s >= 0.0) {
            return Err(format!("retry_budget.min_per_s must be >= 0, got {}", self.min_per_s));
        }
        if self.window < Duration::from_millis(10) || self.window > Duration::from_secs(3600) {
            return Err(format!("retry_budget.window must be 10 ms to 1 h, got {:?}", self.window));
        }
        Ok(())
    }
}

const BUCKETS: usize = 10;

/// One worker's budget for one domain.
pub(crate) struct Budget {
    ratio: f64,
    floor: f64,
    bucket_ns: u64,
    /// (sub-tasks, retries) per bucket; `head` is the current one, which began at `since_ns`.
    buckets: [(u32, u32); BUCKETS],
    head: usize,
    since_ns: u64,
    subtasks: u64,
    retries: u64,
}

impl Budget {
    pub(crate) fn new(cfg: &RetryBudget) -> Self {
        let window_ns = cfg.window.as_nanos() as u64;
        Self {
            ratio: cfg.ratio,
            floor: cfg.min_per_s * cfg.window.as_secs_f64(),
            bucket_ns: (window_ns / BUCKETS as u64).max(1),
            buckets: [(0, 0); BUCKETS],
            head: 0,
            since_ns: 0,
            subtasks: 0,
            retries: 0,
        }
    }

    /// Moves the window to `now`, dropping buckets that fell out of it.
    fn advance(&mut self, now: u64) {
        let steps = now.saturating_sub(self.since_ns) / self.bucket_ns;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS as u64) {
            self.head = (self.head + 1) % BUCKETS;
            let (s, r) = std::mem::take(&mut self.buckets[self.head]);
            self.subtasks -= u64::from(s);
            self.retries -= u64::from(r);
        }
        self.since_ns += steps * self.bucket_ns;
    }

    /// A sub-task started (a deposit).
    pub(crate) fn deposit(&mut self, now: u64) {
        self.advance(now);
        let b = &mut self.buckets[self.head].0;
        *b = b.saturating_add(1);
        self.subtasks += 1;
    }

    /// Takes one retry from the budget if it allows one.
    pub(crate) fn withdraw(&mut self, now: u64) -> bool {
        self.advance(now);
        if (self.retries + 1) as f64 > self.floor + self.ratio * self.subtasks as f64 {
            return false;
        }
        let b = &mut self.buckets[self.head].1;
        *b = b.saturating_add(1);
        self.retries += 1;
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn retries_are_held_to_the_ratio_plus_the_floor() {
        let cfg = RetryBudget { ratio: 0.2, min_per_s: 5.0, window: Duration::from_secs(1) };
        let mut b = Budget::new(&cfg);
        for _ in 0..100 {
            b.deposit(0);
        }
        // 5 (floor) + 0.2 * 100 = 25 retries.
        let allowed = (0..100).filter(|_| b.withdraw(0)).count();
        assert_eq!(allowed, 25);
        // A window later everything has expired; only the floor remains.
        let allowed = (0..100).filter(|_| b.withdraw(2_000_000_000)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(RetryBudget::ratio(-1.0).validate().unwrap_err().contains("ratio"));
        let mut r = RetryBudget::ratio(0.2);
        r.window = Duration::ZERO;
        assert!(r.validate().unwrap_err().contains("window"));
    }
}
