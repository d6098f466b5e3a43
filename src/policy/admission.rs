//! Admission at the meta level: the rate limiter (GCRA on one atomic) and the live admission
//! settings (the concurrency throttle, its queue, the essential priority, the slot reserve).

use crate::config::AdmissionConfig;
use crate::sync::{AtomicU8, AtomicU64, Ordering};

/// A token bucket at admission, as GCRA on one atomic: `tat` is the theoretical arrival time of
/// the next task. The engine's limiter ([`AdmissionConfig::rate_limit_per_s`]); public so that its
/// cost per check can be measured beside governor's (`benches/per_call.rs`).
///
/// ```
/// let limiter = metafed::policy::RateLimiter::new(1_000.0, 10.0);
/// assert!(limiter.allow(0)); // the clock is in nanoseconds, any origin
/// ```
pub struct RateLimiter {
    /// Nanoseconds between admissions at the sustained rate (0: no limit). Operators may change
    /// it and the tolerance while tasks run; a check sees either setting, both are valid.
    interval_ns: AtomicU64,
    tolerance_ns: AtomicU64,
    tat: AtomicU64,
}

impl RateLimiter {
    /// `per_s` admissions per second sustained (0: no limit), bursts of up to `burst` (at least
    /// 1).
    pub fn new(per_s: f64, burst: f64) -> Self {
        let (interval, tolerance) = crate::policy::gcra::params(per_s, burst);
        Self { interval_ns: AtomicU64::new(interval), tolerance_ns: AtomicU64::new(tolerance), tat: AtomicU64::new(0) }
    }

    /// Changes the rate (0: no limit) and the burst, from the next admission on.
    pub fn set(&self, per_s: f64, burst: f64) {
        let (interval, tolerance) = crate::policy::gcra::params(per_s, burst);
        self.tolerance_ns.store(tolerance, Ordering::Relaxed);
        self.interval_ns.store(interval, Ordering::Relaxed);
    }

    /// [`allow`](Self::allow) for a caller whose `now` may be stale (read once per batch, or
    /// before it was preempted): a refusal at `now` is checked once more at `fresh()`, so that
    /// another thread's newer clock reading in the bucket never refuses a task the rate admits.
    /// Only refusals pay for the second reading.
    #[inline]
    pub fn allow_fresh(&self, now: u64, fresh: impl FnOnce() -> u64) -> bool {
        self.allow(now) || self.recheck(fresh())
    }

    /// Claims `n` admissions at `now` at once, for a worker's batch of tickets: one
    /// compare-and-swap where [`allow`](Self::allow) takes one per task. Only when they fit with
    /// room to spare (the last of them at most half the burst tolerance ahead of `now`): at
    /// least half the tolerance stays for the other workers' admissions while the batch runs,
    /// and near the limit no claim is made and each task is checked alone, as before. Returns
    /// the claim, or `None`. What the batch does not use goes back with
    /// [`unclaim`](Self::unclaim), when it can be.
    #[inline]
    pub(crate) fn claim(&self, now: u64, n: u32) -> Option<Claim> {
        let interval_ns = self.interval_ns.load(Ordering::Relaxed);
        if interval_ns == 0 || n == 0 {
            return None;
        }
        let span = interval_ns.checked_mul(u64::from(n))?;
        let end = self.advance(now, interval_ns, span, self.tolerance_ns.load(Ordering::Relaxed) / 2)?;
        Some(Claim { left: n, interval_ns, end })
    }

    /// Counts admissions spanning `span` (whole `interval_ns` each) from `now`, if the last of
    /// them starts at most `limit` ahead of `now`; returns where they leave the bucket (`tat`).
    #[inline(always)]
    fn advance(&self, now: u64, interval_ns: u64, span: u64, limit: u64) -> Option<u64> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            // The last admission starts at `start + span - interval`.
            if (start - now).saturating_add(span - interval_ns) > limit {
                return None;
            }
            let end = start.checked_add(span)?;
            match self.tat.compare_exchange_weak(tat, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(end),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back what a [`claim`](Self::claim) did not use, if no admission was counted after
    /// it (the bucket still ends where the claim left it): as if those admissions had never
    /// been counted. Otherwise they stay counted, for they cannot be told apart from the
    /// admissions counted since (after a bucket that emptied meanwhile, those do not start
    /// where the claim ended): the bucket then refuses a little early for a while, never late.
    /// Returns whether they went back.
    #[inline]
    pub(crate) fn unclaim(&self, c: Claim) -> bool {
        c.left == 0
            || self
                .tat
                .compare_exchange(
                    c.end,
                    c.end - c.interval_ns * u64::from(c.left),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether it limits the rate at all (an operator may turn it on or off while tasks run).
    #[inline]
    pub(crate) fn is_limited(&self) -> bool {
        self.interval_ns.load(Ordering::Relaxed) != 0
    }

    #[cold]
    #[inline(never)]
    fn recheck(&self, now: u64) -> bool {
        self.allow(now)
    }

    /// Whether an admission at `now` (nanoseconds) is within the rate; if so, it is counted.
    #[inline]
    pub fn allow(&self, now: u64) -> bool {
        let interval_ns = self.interval_ns.load(Ordering::Relaxed);
        if interval_ns == 0 {
            return true;
        }
        self.advance(now, interval_ns, interval_ns, self.tolerance_ns.load(Ordering::Relaxed)).is_some()
    }
}

/// Admissions a worker claimed from the [`RateLimiter`] for its batch
/// ([`RateLimiter::claim`]): `left` not yet used, at `interval_ns` each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claim {
    pub(crate) left: u32,
    interval_ns: u64,
    /// Where the claim left the bucket (its `tat`).
    end: u64,
}

impl Claim {
    /// Uses one of the claimed admissions, if any is left.
    #[inline]
    pub(crate) fn take(&mut self) -> bool {
        let some = self.left > 0;
        self.left -= u32::from(some);
        some
    }
}

/// The live admission settings: each is one relaxed load where it is used, and a check sees
/// either the old or the new value of each (all are valid).
pub(crate) struct Admission {
    /// Tasks past the throttle at once (0: no throttle).
    pub(crate) max_concurrent: AtomicU64,
    /// Tasks waiting for the throttle, per worker.
    pub(crate) queue_capacity: AtomicU64,
    /// The lowest priority admitted while degraded.
    pub(crate) essential_priority: AtomicU8,
    /// Per priority: free slots that must remain after a task of that priority takes one.
    pub(crate) reserve: [AtomicU64; 4],
    /// The cost budget in complexity units (ten-thousandths; 0: none).
    pub(crate) max_cost: AtomicU64,
    /// The least a task costs, in the same units.
    pub(crate) min_cost: AtomicU64,
    /// The longest a task waits for the throttle, from its submission (ns; 0: no bound).
    pub(crate) queue_timeout_ns: AtomicU64,
}

impl Admission {
    pub(crate) fn new(a: &AdmissionConfig, slots: usize) -> Self {
        let s = Self {
            max_concurrent: AtomicU64::new(0),
            queue_capacity: AtomicU64::new(0),
            essential_priority: AtomicU8::new(0),
            reserve: std::array::from_fn(|_| AtomicU64::new(0)),
            max_cost: AtomicU64::new(0),
            min_cost: AtomicU64::new(0),
            queue_timeout_ns: AtomicU64::new(0),
        };
        s.set(a, slots);
        s
    }

    pub(crate) fn set(&self, a: &AdmissionConfig, slots: usize) {
        self.max_concurrent.store(a.max_concurrent as u64, Ordering::Relaxed);
        self.queue_capacity.store(a.queue_capacity as u64, Ordering::Relaxed);
        self.essential_priority.store(a.essential_priority, Ordering::Relaxed);
        let units = |c: f64| (c * f64::from(crate::task::Complexity::SCALE)).round() as u64;
        self.min_cost.store(units(a.min_cost).max(1), Ordering::Relaxed);
        self.max_cost.store(units(a.max_cost), Ordering::Relaxed);
        self.queue_timeout_ns.store(a.queue_timeout.as_nanos() as u64, Ordering::Relaxed);
        for (r, f) in self.reserve.iter().zip(a.priority_reserve) {
            r.store((f * slots as f64) as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn max_concurrent(&self) -> u64 {
        self.max_concurrent.load(Ordering::Relaxed)
    }

    /// Whether admission holds tasks back by count or by cost.
    #[inline]
    pub(crate) fn gated(&self) -> bool {
        (self.max_concurrent.load(Ordering::Relaxed) | self.max_cost.load(Ordering::Relaxed)) != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::RateLimiter;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_refusal_on_a_stale_clock_is_checked_again_on_a_fresh_one() {
        // One per second, burst 1: another thread's reading at 10 s moved the bucket; this
        // caller's reading of 0 is stale and would refuse, the fresh one (11 s) admits.
        let l = RateLimiter::new(1.0, 1.0);
        assert!(l.allow(10 * S));
        assert!(!l.allow(0), "a stale reading refuses");
        assert!(l.allow_fresh(0, || 11 * S), "the fresh reading admits");
        // A refusal the fresh reading confirms stays a refusal, and the fresh clock is read
        // only for refusals.
        assert!(!l.allow_fresh(11 * S, || 11 * S + 1));
        assert!(l.allow_fresh(13 * S, || unreachable!("an admission reads no clock")));
    }

    #[test]
    fn a_claim_counts_its_admissions_at_once_and_gives_back_what_it_did_not_use() {
        // 1,000 a second (1 ms apart), bursts of 11: a tolerance of 10 ms.
        let ms = S / 1_000;
        let l = RateLimiter::new(1_000.0, 11.0);
        let mut c = l.claim(0, 5).expect("room for five, within half the tolerance");
        assert_eq!(c.left, 5);
        assert!(c.take() && c.take());
        // Three unused: given back, the bucket holds the two taken (2 ms ahead of 0), so nine
        // more fit at 0 and the twelfth does not.
        assert!(l.unclaim(c));
        for k in 0..9 {
            assert!(l.allow(0), "admission {k} after the claim");
        }
        assert!(!l.allow(0));
        // Near the limit a claim is refused and tasks are checked one by one.
        assert!(l.claim(0, 1).is_none());
        // Past the tolerance's half: refused, though it would fit in the whole.
        let l = RateLimiter::new(1_000.0, 11.0);
        assert!(l.claim(0, 7).is_none(), "the seventh would start 6 ms ahead, past half of 10 ms");
        assert_eq!(l.claim(0, 6).map(|c| c.left), Some(6));
        // The six count: five more fit at 0 (starting 6 to 10 ms ahead), not a sixth.
        for k in 0..5 {
            assert!(l.allow(0), "admission {k} after the claim of six");
        }
        assert!(!l.allow(0));
        assert!(l.allow(ms), "a millisecond later, one more");
        // No limit: nothing to claim.
        assert!(RateLimiter::new(0.0, 1.0).claim(0, 64).is_none());
    }

    #[test]
    fn what_a_claim_did_not_use_stays_counted_once_another_admission_came_after_it() {
        // 1,000 a second, bursts of 41: a tolerance of 40 ms.
        let ms = S / 1_000;
        let l = RateLimiter::new(1_000.0, 41.0);
        let mut c = l.claim(0, 16).expect("16 fit in half of 40 ms");
        assert!(c.take());
        // Past the claim's end (16 ms) the bucket has emptied: another worker admits its whole
        // burst at 30 ms, starting afresh, not where the claim ended.
        let burst = (0..64).take_while(|_| l.allow(30 * ms)).count();
        assert_eq!(burst, 41);
        // Subtracting the fifteen unused now would free places that burst took: they stay.
        assert!(!l.unclaim(c));
        assert!(!l.allow(30 * ms), "no more than the burst");
    }
}
