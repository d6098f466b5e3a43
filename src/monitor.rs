//! The online reliability monitor: per domain, the share of sub-tasks that succeeded over a
//! sliding window, beside the model's prediction for the live topology and the agents' error
//! rates, with a Wilson interval. A domain whose prediction lies above the interval's upper end
//! is doing measurably worse than its agents' error rates explain (its breaker sheds, its agents
//! time out, its faults are correlated): health turns degraded.
//!
//! The window is built from samples of the engine's counters, taken (at most once a second)
//! whenever health, stats or metrics are read; the admin endpoint reads them at least once a
//! second while it runs. Nothing here touches the workers.

use crate::model::{Z999, wilson};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the monitor looks.
pub const RELIABILITY_WINDOW: Duration = Duration::from_secs(60);
/// Fewer sub-tasks than this in the window: too few to judge.
pub const RELIABILITY_MIN_SAMPLE: u64 = 100;
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One domain's reliability over the window.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReliabilityWindow {
    /// The domain's name.
    pub domain: String,
    /// The window's length in seconds (shorter while the engine is younger than the window).
    pub window_s: f64,
    /// Sub-tasks finished in the window (succeeded, failed, shed, faulted or timed out).
    pub finished: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// `ok / finished` (0 when nothing finished).
    pub measured: f64,
    /// The 99.9% Wilson interval around `measured`.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// The model's success probability for one sub-task of this domain.
    pub predicted: f64,
    /// True when `predicted` lies above `high` and at least [`RELIABILITY_MIN_SAMPLE`] sub-tasks
    /// finished: the domain does measurably worse than predicted.
    pub below_prediction: bool,
}

struct Sample {
    at: Instant,
    /// Per domain: (ok, finished), cumulative.
    domains: Vec<(u64, u64)>,
}

pub(crate) struct Monitor {
    samples: VecDeque<Sample>,
}

/// One domain's cumulative counts: name, succeeded, finished, and the model's prediction.
pub(crate) struct DomainCount<'a> {
    pub(crate) name: &'a str,
    pub(crate) ok: u64,
    pub(crate) finished: u64,
    pub(crate) predicted: f64,
}

impl Monitor {
    pub(crate) fn new(domains: usize, started: Instant) -> Self {
        let mut samples = VecDeque::new();
        samples.push_back(Sample { at: started, domains: vec![(0, 0); domains] });
        Monitor { samples }
    }

    /// Records `s` (taken at `now`) if the last sample is a second old, forgets what lies before
    /// the window, and reports each domain over the window.
    pub(crate) fn observe(&mut self, domains: &[DomainCount<'_>], now: Instant) -> Vec<ReliabilityWindow> {
        let cur: Vec<(u64, u64)> = domains.iter().map(|d| (d.ok, d.finished)).collect();
        if self.samples.back().is_none_or(|b| now.saturating_duration_since(b.at) >= SAMPLE_EVERY) {
            self.samples.push_back(Sample { at: now, domains: cur.clone() });
        }
        // Keep the newest sample at or before the window's start, so the window spans it all.
        let start = now.checked_sub(RELIABILITY_WINDOW);
        while self.samples.len() > 1 && start.is_some_and(|st| self.samples[1].at <= st) {
            self.samples.pop_front();
        }
        let base = &self.samples[0];
        let window_s = now.saturating_duration_since(base.at).as_secs_f64();
        // A domain added since the base sample counts from zero.
        let base_of = |i: usize| base.domains.get(i).copied().unwrap_or((0, 0));
        domains
            .iter()
            .zip(cur.iter().enumerate().map(|(i, c)| (c, base_of(i))))
            .map(|(d, (&(ok, fin), (ok0, fin0)))| {
                let (ok, finished) = (ok.saturating_sub(ok0), fin.saturating_sub(fin0));
                let (low, high) = wilson(ok, finished, Z999);
                // All succeeded: the upper bound is 1 (rounding would put it a hair below, and a
                // prediction of exactly 1 above it).
                let high = if ok == finished { 1.0 } else { high };
                let measured = if finished == 0 { 0.0 } else { ok as f64 / finished as f64 };
                ReliabilityWindow {
                    domain: d.name.to_owned(),
                    window_s,
                    finished,
                    ok,
                    measured,
                    low,
                    high,
                    predicted: d.predicted,
                    below_prediction: finished >= RELIABILITY_MIN_SAMPLE && d.predicted > high,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(ok: u64, failed: u64, predicted: f64) -> [DomainCount<'static>; 1] {
        [DomainCount { name: "api", ok, finished: ok + failed, predicted }]
    }

    #[test]
    fn window_slides_and_judges() {
        let t0 = Instant::now();
        let mut m = Monitor::new(1, t0);
        // 1,000 sub-tasks, 95% ok, predicted 99%: below.
        let w = m.observe(&api(950, 50, 0.99), t0 + Duration::from_secs(10));
        assert_eq!((w[0].ok, w[0].finished), (950, 1000));
        assert!(w[0].below_prediction, "{w:?}");
        // Predicted 95%: inside the interval.
        assert!(!m.observe(&api(950, 50, 0.95), t0 + Duration::from_secs(10))[0].below_prediction);
        // Two minutes later, 1,000 more, all ok: the window holds only what came since the
        // newest sample at or before its start (the one at 10 s).
        let w = m.observe(&api(1950, 50, 0.99), t0 + Duration::from_secs(130));
        assert_eq!((w[0].ok, w[0].finished), (1000, 1000));
        assert!(!w[0].below_prediction);
        assert!((w[0].window_s - 120.0).abs() < 1e-9, "{}", w[0].window_s);
        // Every sub-task succeeded against a prediction of exactly 1: not below it.
        let mut m = Monitor::new(1, t0);
        assert!(!m.observe(&api(5000, 0, 1.0), t0 + Duration::from_secs(10))[0].below_prediction);
        // Too few to judge.
        let mut m = Monitor::new(1, t0);
        assert!(!m.observe(&api(10, 40, 0.99), t0 + Duration::from_secs(1))[0].below_prediction);
    }
}
