//! Hedged attempts: when a sub-task's attempt has not answered after a delay, send one more to
//! another agent of the domain; the first success completes the sub-task and the other attempts
//! are abandoned ("The Tail at Scale", Dean and Barroso, 2013; tower's `hedge` layer).
//!
//! The delay is fixed, or a percentile of the domain's recent attempt latency. The latency is
//! kept per worker in two rotating histograms (the current period and the one before, as tower's
//! `RotatingHistogram`), so that the estimate follows the traffic without a shared write, and the
//! percentile is recomputed every few hundred samples rather than per attempt.

use crate::buckets;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When to hedge a sub-task's attempt.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HedgeDelay {
    /// After a fixed delay.
    Fixed(#[serde(with = "crate::duration::ms")] Duration),
    /// After this percentile (in (0, 100)) of the domain's recent attempt latency.
    Percentile(f64),
}

/// A domain's hedging policy. Hedges go only to agents whose attempts are deferred or isolated
/// (an attempt on a worker answers before there is anything to hedge), and count against the
/// domain's retry budget and its `max_attempts`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    /// After how long an unanswered attempt is hedged.
    pub delay: HedgeDelay,
    /// Extra attempts per sub-task at most (1 to 3), each after another `delay`.
    #[serde(default = "one")]
    pub max_extra: u32,
    /// With a percentile delay: latencies the window must hold before hedging starts.
    #[serde(default = "hundred")]
    pub min_samples: u32,
    /// With a percentile delay: how long a period of the rotating latency window lasts.
    #[serde(with = "crate::duration::ms", default = "second")]
    pub period: Duration,
}

fn one() -> u32 {
    1
}
fn hundred() -> u32 {
    100
}
fn second() -> Duration {
    Duration::from_secs(1)
}

/// Most hedges a sub-task may send.
pub const MAX_HEDGES: u32 = 3;

impl Hedge {
    /// Hedge once after a fixed delay.
    pub fn after(delay: Duration) -> Self {
        Self { delay: HedgeDelay::Fixed(delay), max_extra: 1, min_samples: 100, period: second() }
    }

    /// Hedge once after the `p`-th percentile (0 < p < 100) of the domain's recent latency.
    pub fn at_percentile(p: f64) -> Self {
        Self { delay: HedgeDelay::Percentile(p), max_extra: 1, min_samples: 100, period: second() }
    }

    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        match self.delay {
            HedgeDelay::Fixed(d) if d.is_zero() => return Err("hedge delay must be > 0".into()),
            HedgeDelay::Percentile(p) if !(p > 0.0 && p < 100.0) => {
                return Err(format!("hedge percentile must be in (0, 100), got {p}"));
            }
            _ => {}
        }
        if !(1..=MAX_HEDGES).contains(&self.max_extra) {
            return Err(format!("hedge max_extra must be 1 to {MAX_HEDGES}, got {}", self.max_extra));
        }
        if self.period.is_zero() {
            return Err("hedge period must be > 0".into());
        }
        Ok(())
    }
}

/// One worker's view of a domain's recent attempt latency, for percentile delays.
pub(crate) struct LatencyWindow {
    /// Counts per latency bucket (64-bit: a bucket of 32 bits filled up within a long period,
    /// and the percentile's search, counting what the buckets hold against a total that kept
    /// counting, then found no bucket and gave a delay of 0).
    current: Box<[u64]>,
    previous: Box<[u64]>,
    /// Samples in `current` and `previous`.
    n_current: u64,
    n_previous: u64,
    /// When `current` began, on the engine clock.
    since_ns: u64,
    period_ns: u64,
    /// Samples since the percentile was last computed.
    stale: u32,
    /// The last computed (percentile, nanoseconds).
    cached: Option<(f64, u64)>,
}

impl LatencyWindow {
    pub(crate) fn new(period: Duration) -> Self {
        let n = buckets::BUCKETS;
        Self {
            current: vec![0; n].into_boxed_slice(),
            previous: vec![0; n].into_boxed_slice(),
            n_current: 0,
            n_previous: 0,
            since_ns: 0,
            period_ns: period.as_nanos().min(u128::from(u64::MAX)) as u64,
            stale: 0,
            cached: None,
        }
    }

    /// Records one attempt's latency at engine time `now`.
    pub(crate) fn record(&mut self, now: u64, latency_ns: u64) {
        if now.saturating_sub(self.since_ns) >= self.period_ns {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.fill(0);
            self.n_previous = self.n_current;
            self.n_current = 0;
            self.since_ns = now;
            self.stale = u32::MAX; // recompute on the next read
        }
        let b = &mut self.current[buckets::index(latency_ns)];
        *b += 1;
        self.n_current += 1;
        self.stale = self.stale.saturating_add(1);
    }

    /// The `p`-th percentile of the window, once it holds `min_samples`; recomputed every 256
    /// samples.
    pub(crate) fn percentile(&mut self, p: f64, min_samples: u32) -> Option<u64> {
        let total = self.n_current + self.n_previous;
        if total < u64::from(min_samples) {
            return None;
        }
        if self.cached.is_none_or(|(q, _)| q != p) || self.stale >= 256 {
            let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            let mut at = 0;
            for (i, (a, b)) in self.current.iter().zip(self.previous.iter()).enumerate() {
                seen += *a + *b;
                if seen >= rank {
                    // The bucket's largest value, not its middle: hedging "after the p-th
                    // percentile" then hedges at most (100 - p)% of attempts (with every
                    // latency equal, the middle lay below them all and every attempt was hedged).
                    at = buckets::upper(i);
                    break;
                }
            }
            self.cached = Some((p, at));
            self.stale = 0;
        }
        self.cached.map(|(_, ns)| ns)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn percentile_follows_the_recent_window() {
        let mut w = LatencyWindow::new(Duration::from_millis(10));
        assert_eq!(w.percentile(95.0, 100), None, "too few samples");
        for i in 0..1000u64 {
            w.record(1, if i % 100 == 0 { 1_000_000 } else { 10_000 });
        }
        // A percentile reads as its bucket's largest value: never below the true one, at most
        // 1/8 above.
        let p95 = w.percentile(95.0, 100).unwrap();
        assert!((10_000..=11_250).contains(&p95), "{p95}");
        let p999 = w.percentile(99.9, 100).unwrap();
        assert!(p999 >= 900_000, "{p999}");
        // Two periods later the old samples are gone.
        w.record(20_000_000, 50_000);
        w.record(40_000_000, 50_000);
        let p50 = w.percentile(50.0, 1).unwrap();
        assert!((50_000..=56_250).contains(&p50), "{p50}");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(Hedge::at_percentile(100.0).validate().unwrap_err().contains("percentile"));
        assert!(Hedge::after(Duration::ZERO).validate().unwrap_err().contains("delay"));
        let mut h = Hedge::after(Duration::from_millis(1));
        h.max_extra = 0;
        assert!(h.validate().unwrap_err().contains("max_extra"));
    }
}
