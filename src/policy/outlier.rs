//! Outlier ejection, relative to the domain's peers (Envoy's outlier detection, with what it
//! lacks: latency ejection, envoy#288, and a maximum ejected share that works for a domain of
//! three agents, envoy#3263).
//!
//! Each attempt's outcome at an agent of a domain with outlier detection is judged by up to three
//! triggers, each with its own enable: a run of `consecutive_failures`; a `failure_rate` over the
//! agent's last `min_calls` calls (a tumbling count); and `latency_factor`: the agent's peak-EWMA
//! latency above that factor times the median of its peers' (once it has `min_samples` samples
//! and a peer has one). A tripped trigger ejects the agent through its breaker: closed to open
//! for the ejection time, with the trigger as the transition's cause, so the domain routes
//! around it as around any open breaker, it probes when the time is up (as after any trip), and
//! every ejection and return is a breaker event, in the stats (`BreakerSnapshot::ejected`) and
//! the metrics. The ejection time is `base_ejection` times the agent's ejections in a row (an
//! agent that stayed in for `max_ejection` starts again from one), at most `max_ejection`.
//!
//! At most `max_ejected_percent` of the domain's agents are out at once (agents whose breaker is
//! open for any reason count), but at least one may always be ejected, and never the last agent
//! in: with three agents one may be ejected, the default 10% notwithstanding.
//!
//! An ejection acts through the agent's breaker: a disabled or forced breaker is not ejected.
//! The per-agent counts are atomics any worker updates (a count two workers race on may lose
//! one); the judgement runs only for domains with outlier detection (one mask test otherwise).

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A domain's outlier detection ([`TopologyBuilder::outlier`](crate::TopologyBuilder::outlier),
/// [`Engine::set_domain_outlier`](crate::Engine::set_domain_outlier), `outlier = { ... }` in a
/// domain's TOML table). The defaults are Envoy's where it has them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outlier {
    /// Eject after this many failures in a row (0: off). Envoy's `consecutive_5xx`: 5.
    pub consecutive_failures: u32,
    /// Eject when the failure rate over the agent's last `min_calls` calls reaches this (0 <
    /// rate <= 1; 0: off). Envoy's failure-percentage ejection, off by default there too.
    pub failure_rate: f64,
    /// The calls the failure rate is judged over (at least 1). Envoy's `failure_percentage_request_volume`: 50.
    pub min_calls: u32,
    /// Eject when the agent's peak-EWMA latency exceeds this factor times the median of its
    /// peers' (> 1; 0: off).
    pub latency_factor: f64,
    /// Samples an agent's latency estimate needs before it is judged (at least 1).
    pub min_samples: u32,
    /// The first ejection's time; each ejection in a row adds as much. Envoy: 30 s.
    #[serde(with = "crate::duration::ms")]
    pub base_ejection: Duration,
    /// The longest ejection. Envoy: 300 s.
    #[serde(with = "crate::duration::ms")]
    pub max_ejection: Duration,
    /// The most agents out at once, in percent of the domain's (at least one may always be
    /// ejected, and never the last agent in). Envoy: 10.
    pub max_ejected_percent: f64,
}

impl Default for Outlier {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.0,
            min_calls: 50,
            latency_factor: 0.0,
            min_samples: 20,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 10.0,
        }
    }
}

impl Outlier {
    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(format!("outlier failure_rate must be in [0, 1] (0 = off), got {}", self.failure_rate));
        }
        let f = self.latency_factor;
        if !(f == 0.0 || (f.is_finite() && f > 1.0)) {
            return Err(format!("outlier latency_factor must be above 1 (0 = off), got {f}"));
        }
        if self.min_calls == 0 {
            return Err("outlier min_calls must be at least 1".into());
        }
        if self.min_samples == 0 {
            return Err("outlier min_samples must be at least 1".into());
        }
        if self.base_ejection.is_zero() || self.base_ejection > crate::duration::MAX_DURATION {
            return Err(format!(
                "outlier base_ejection must be above zero and at most 30 days, got {:?}",
                self.base_ejection
            ));
        }
        if self.max_ejection < self.base_ejection || self.max_ejection > crate::duration::MAX_DURATION {
            return Err(format!(
                "outlier max_ejection must be at least base_ejection and at most 30 days, got {:?}",
                self.max_ejection
            ));
        }
        if !(0.0..=100.0).contains(&self.max_ejected_percent) {
            return Err(format!("outlier max_ejected_percent must be 0 to 100, got {}", self.max_ejected_percent));
        }
        Ok(())
    }
}

/// A domain's outlier detection as the workers read it: each setting in an atomic of its own,
/// changed live by [`DomainOutlier::set`] (a judgement may see some settings before a change
/// and some after; each combination is valid).
pub(crate) struct DomainOutlier {
    consecutive_failures: AtomicU32,
    failure_rate: AtomicU64,
    min_calls: AtomicU32,
    latency_factor: AtomicU64,
    min_samples: AtomicU32,
    base_ns: AtomicU64,
    max_ns: AtomicU64,
    max_percent: AtomicU64,
}

impl DomainOutlier {
    pub(crate) fn new(o: &Outlier) -> Self {
        let d = Self {
            consecutive_failures: AtomicU32::new(0),
            failure_rate: AtomicU64::new(0),
            min_calls: AtomicU32::new(1),
            latency_factor: AtomicU64::new(0),
            min_samples: AtomicU32::new(1),
            base_ns: AtomicU64::new(1),
            max_ns: AtomicU64::new(1),
            max_percent: AtomicU64::new(0),
        };
        d.set(o);
        d
    }

    pub(crate) fn set(&self, o: &Outlier) {
        let r = Ordering::Relaxed;
        self.consecutive_failures.store(o.consecutive_failures, r);
        self.failure_rate.store(o.failure_rate.to_bits(), r);
        self.min_calls.store(o.min_calls.max(1), r);
        self.latency_factor.store(o.latency_factor.to_bits(), r);
        self.min_samples.store(o.min_samples.max(1), r);
        self.base_ns.store((o.base_ejection.as_nanos() as u64).max(1), r);
        self.max_ns.store((o.max_ejection.as_nanos() as u64).max(1), r);
        self.max_percent.store(o.max_ejected_percent.to_bits(), r);
    }

    pub(crate) fn get(&self) -> Outlier {
        let r = Ordering::Relaxed;
        Outlier {
            consecutive_failures: self.consecutive_failures.load(r),
            failure_rate: f64::from_bits(self.failure_rate.load(r)),
            min_calls: self.min_calls.load(r),
            latency_factor: f64::from_bits(self.latency_factor.load(r)),
            min_samples: self.min_samples.load(r),
            base_ejection: Duration::from_nanos(self.base_ns.load(r)),
            max_ejection: Duration::from_nanos(self.max_ns.load(r)),
            max_ejected_percent: f64::from_bits(self.max_percent.load(r)),
        }
    }

    /// The latency factor (0: latency is not judged).
    #[inline]
    pub(crate) fn latency_factor(&self) -> f64 {
        f64::from_bits(self.latency_factor.load(Ordering::Relaxed))
    }

    /// Agents that may be out at once among `n` (at least one; never all).
    pub(crate) fn max_out(&self, n: usize) -> usize {
        let pct = f64::from_bits(self.max_percent.load(Ordering::Relaxed));
        ((n as f64 * pct / 100.0).floor() as usize).max(1).min(n.saturating_sub(1))
    }

    /// The ejection time of an agent's `k`-th ejection in a row (k >= 1).
    pub(crate) fn ejection_ns(&self, k: u32) -> u64 {
        let base = self.base_ns.load(Ordering::Relaxed);
        base.saturating_mul(u64::from(k.max(1))).min(self.max_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn max_ejection_ns(&self) -> u64 {
        self.max_ns.load(Ordering::Relaxed)
    }
}

/// Which trigger an outcome tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    Failures,
    FailureRate,
    Latency,
}

/// One agent's outlier counts.
pub(crate) struct AgentOutlier {
    consecutive: AtomicU32,
    calls: AtomicU32,
    failures: AtomicU32,
    samples: AtomicU32,
    /// Ejections in a row, and when the last one ended (its open deadline).
    ejections: AtomicU32,
    last_until_ns: AtomicU64,
}

impl AgentOutlier {
    pub(crate) fn new() -> Self {
        Self {
            consecutive: AtomicU32::new(0),
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            samples: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            last_until_ns: AtomicU64::new(0),
        }
    }

    /// Counts one outcome and says which count-based trigger (failures, failure rate) it trips.
    pub(crate) fn count(&self, o: &DomainOutlier, failed: bool) -> Option<Trigger> {
        let r = Ordering::Relaxed;
        let run = if failed {
            // Saturating: the count wraps after 2^32 failures in a row (an agent that cannot be
            // ejected), and `+ 1` must not overflow there.
            self.consecutive.fetch_add(1, r).saturating_add(1)
        } else {
            if self.consecutive.load(r) != 0 {
                self.consecutive.store(0, r);
            }
            0
        };
        let mut rate_tripped = false;
        let rate = f64::from_bits(o.failure_rate.load(r));
        if rate > 0.0 {
            let calls = self.calls.fetch_add(1, r) + 1;
            let failures = if failed { self.failures.fetch_add(1, r) + 1 } else { self.failures.load(r) };
            if calls >= o.min_calls.load(r) {
                self.calls.store(0, r);
                self.failures.store(0, r);
                rate_tripped = f64::from(failures) >= rate * f64::from(calls);
            }
        }
        let threshold = o.consecutive_failures.load(r);
        if failed && threshold > 0 && run >= threshold {
            Some(Trigger::Failures)
        } else if rate_tripped {
            Some(Trigger::FailureRate)
        } else {
            None
        }
    }

    /// Counts a latency sample; whether the agent has enough to be judged.
    pub(crate) fn sampled(&self, o: &DomainOutlier) -> bool {
        // The count resets only at an ejection: after 2^32 samples it wraps (the agent waits
        // `min_samples` to be judged again), and `+ 1` must not overflow there.
        self.samples.fetch_add(1, Ordering::Relaxed).saturating_add(1) >= o.min_samples.load(Ordering::Relaxed)
    }

    /// The ejection an ejection at `now` would be: (its number in a row, its time).
    pub(crate) fn next_ejection(&self, o: &DomainOutlier, now: u64) -> (u32, u64) {
        let r = Ordering::Relaxed;
        let rested = now.saturating_sub(self.last_until_ns.load(r)) > o.max_ejection_ns();
        let k = if rested { 1 } else { self.ejections.load(r) + 1 };
        (k, o.ejection_ns(k))
    }

    /// Records ejection `k` at `now` for `ns`, and forgets the counts.
    pub(crate) fn ejected(&self, k: u32, now: u64, ns: u64) {
        self.ejections.store(k, Ordering::Relaxed);
        self.last_until_ns.store(now.saturating_add(ns), Ordering::Relaxed);
        self.forget();
    }

    /// The ejection time for an ejection at `now` (counting it), and forgets the counts.
    #[cfg(test)]
    fn next_ejection_ns(&self, o: &DomainOutlier, now: u64) -> u64 {
        let (k, ns) = self.next_ejection(o, now);
        self.ejected(k, now, ns);
        ns
    }

    /// Starts an agent id afresh (added to a running engine).
    pub(crate) fn reset(&self) {
        self.forget();
        self.ejections.store(0, Ordering::Relaxed);
        self.last_until_ns.store(0, Ordering::Relaxed);
    }

    /// Clears the counts (after an ejection, or when the domain's detection changes).
    pub(crate) fn forget(&self) {
        let r = Ordering::Relaxed;
        self.consecutive.store(0, r);
        self.calls.store(0, r);
        self.failures.store(0, r);
        self.samples.store(0, r);
    }

    /// Ejections in a row so far.
    #[cfg(test)]
    fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }
}

/// The median of `v` (the mean of the middle two for an even count); None if empty.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_share_out_allows_one_in_a_small_domain_and_never_the_last() {
        let o = DomainOutlier::new(&Outlier::default()); // 10%
        assert_eq!((o.max_out(1), o.max_out(2), o.max_out(3), o.max_out(10), o.max_out(25)), (0, 1, 1, 1, 2));
        o.set(&Outlier { max_ejected_percent: 100.0, ..Outlier::default() });
        assert_eq!((o.max_out(3), o.max_out(10)), (2, 9), "never the last");
    }

    #[test]
    fn ejections_in_a_row_grow_to_the_cap_and_start_over_after_a_rest() {
        let s = 1_000_000_000u64;
        let o = DomainOutlier::new(&Outlier::default()); // 30 s, cap 300 s
        let a = AgentOutlier::new();
        assert_eq!(a.next_ejection_ns(&o, 1_000 * s), 30 * s);
        assert_eq!(a.next_ejection_ns(&o, 1_040 * s), 60 * s);
        assert_eq!(a.next_ejection_ns(&o, 1_110 * s), 90 * s);
        assert_eq!(a.ejections(), 3);
        // Back at 1,200 s and in for more than 300 s: the next ejection is the first again.
        assert_eq!(a.next_ejection_ns(&o, 1_600 * s), 30 * s);
        for k in 0..20 {
            a.next_ejection_ns(&o, 1_631 * s + k);
        }
        assert_eq!(a.next_ejection_ns(&o, 1_700 * s), 300 * s, "capped");
    }

    #[test]
    fn counts_at_their_limit_do_not_overflow() {
        let o = DomainOutlier::new(&Outlier::default());
        let a = AgentOutlier::new();
        a.samples.store(u32::MAX, Ordering::Relaxed);
        a.consecutive.store(u32::MAX, Ordering::Relaxed);
        // Past 2^32 samples the agent has enough to be judged (not 0 samples), and a run of
        // 2^32 failures is still a run (not 0).
        assert!(a.sampled(&o));
        assert_eq!(a.count(&o, true), Some(Trigger::Failures));
    }

    #[test]
    fn counts_trip_their_triggers() {
        let o = DomainOutlier::new(&Outlier {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_calls: 4,
            ..Outlier::default()
        });
        let a = AgentOutlier::new();
        assert_eq!(a.count(&o, true), None);
        assert_eq!(a.count(&o, false), None, "a success ends the run");
        assert_eq!(a.count(&o, true), None);
        // Four calls, two failed: the rate trips.
        assert_eq!(a.count(&o, false), Some(Trigger::FailureRate));
        a.forget();
        assert_eq!((a.count(&o, true), a.count(&o, true), a.count(&o, true)), (None, None, Some(Trigger::Failures)));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Outlier::default().validate().is_ok());
        let bad = |o: Outlier| o.validate().unwrap_err();
        assert!(bad(Outlier { latency_factor: 0.5, ..Outlier::default() }).contains("latency_factor"));
        assert!(bad(Outlier { failure_rate: 2.0, ..Outlier::default() }).contains("failure_rate"));
        assert!(bad(Outlier { max_ejection: Duration::from_secs(1), ..Outlier::default() }).contains("max_ejection"));
        assert!(bad(Outlier { max_ejected_percent: 120.0, ..Outlier::default() }).contains("max_ejected_percent"));
    }
}
