//! A per-agent bulkhead: at most `limit` attempts in flight at once, counted across every
//! worker, with a reservation that cannot overshoot (a compare-and-swap, not a check and then an
//! increment: two workers that both see room could otherwise both take it).
//!
//! An agent with no limit (0) costs one branch and no shared write, unless its domain balances
//! by peak EWMA: then the bulkhead counts its attempts in flight without limiting them (the
//! `TRACK` bit of the limit word, so the untracked, unlimited path stays one load and one branch).

use crate::sync::{AtomicU32, Ordering};

pub(crate) struct Bulkhead {
    /// The most attempts in flight at once (the low 31 bits; 0 for no limit), and `TRACK`: count
    /// them even without a limit. An operator may change one limit into another while attempts
    /// run (never to or from 0: without a limit or `TRACK`, nothing is counted).
    limit: AtomicU32,
    /// Attempts in flight, counted only when there is a limit or `TRACK`. Any worker reserves
    /// and releases.
    inflight: AtomicU32,
}

/// The limit word's flag: count the attempts in flight of an agent without a limit.
const TRACK: u32 = 1 << 31;

/// The largest limit (the top bit of the word is `TRACK`).
pub(crate) const MAX_LIMIT: u32 = TRACK - 1;

impl Bulkhead {
    pub(crate) fn new(limit: u32) -> Self {
        Self { limit: AtomicU32::new(limit.min(MAX_LIMIT)), inflight: AtomicU32::new(0) }
    }

    /// The limit now (0: none).
    /// Sets the limit of a spare agent id's bulkhead, before the id is published (nothing is
    /// in flight).
    pub(crate) fn init(&self, limit: u32) {
        self.limit.store(limit.min(MAX_LIMIT), Ordering::Relaxed);
        self.inflight.store(0, Ordering::Relaxed);
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed) & MAX_LIMIT
    }

    /// Counts the attempts in flight even without a limit (`on`), or stops counting them. Turned
    /// on, the count of an unlimited agent starts from zero: attempts already in flight then
    /// release without going below it (the count is a load estimate, not a limit).
    pub(crate) fn set_tracked(&self, on: bool) {
        let word = self.limit.load(Ordering::Relaxed);
        if (word & TRACK != 0) == on {
            return;
        }
        if on && word & MAX_LIMIT == 0 {
            self.inflight.store(0, Ordering::Relaxed);
        }
        if on {
            self.limit.fetch_or(TRACK, Ordering::Relaxed);
        } else {
            self.limit.fetch_and(MAX_LIMIT, Ordering::Relaxed);
        }
    }

    /// Changes a limit into another (both at least 1). Attempts over a lowered limit finish;
    /// new ones wait until the count is under it.
    pub(crate) fn set_limit(&self, limit: u32) -> Result<(), &'static str> {
        if limit == 0 || self.limit() == 0 {
            return Err("an agent's concurrency limit can be changed, not added or removed, while the engine runs");
        }
        let limit = limit.min(MAX_LIMIT);
        let _ = self.limit.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some((w & TRACK) | limit));
        Ok(())
    }

    /// Whether it neither limits nor counts the attempts (reserving and releasing do nothing).
    #[inline]
    pub(crate) fn is_free(&self) -> bool {
        self.limit.load(Ordering::Relaxed) == 0
    }

    /// Takes a place for one more attempt, if there is no limit or room under it.
    #[inline]
    pub(crate) fn reserve(&self) -> bool {
        let word = self.limit.load(Ordering::Relaxed);
        if word == 0 {
            return true;
        }
        let limit = word & MAX_LIMIT;
        if limit == 0 {
            self.inflight.fetch_add(1, Ordering::Relaxed); // tracked only
            return true;
        }
        let mut n = self.inflight.load(Ordering::Relaxed);
        loop {
            if n >= limit {
                return false;
            }
            match self.inflight.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// Gives back a place taken by [`reserve`](Self::reserve).
    #[inline]
    pub(crate) fn release(&self) {
        let word = self.limit.load(Ordering::Relaxed);
        if word == 0 {
            return;
        }
        if word & MAX_LIMIT != 0 {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
        } else {
            // Tracked only: an attempt reserved before tracking began was not counted.
            let _ = self.inflight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Attempts in flight now (0 when there is no limit and no tracking).
    pub(crate) fn in_flight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Whether a worker may keep a place between its calls (see [`Held`]): a limit of at least
    /// `min_limit`, and no tracking for a load estimate (which a kept place would skew).
    #[inline]
    fn holdable(&self, min_limit: u32) -> bool {
        roomy(self.limit.load(Ordering::Relaxed), min_limit)
    }

    /// Whether a kept place may start another attempt: still [`holdable`](Self::holdable), and
    /// the count, the kept place in it, within the limit (an operator may have lowered it below
    /// the count: new attempts then wait for room, kept places or not).
    #[inline]
    fn kept_fits(&self, min_limit: u32) -> bool {
        let word = self.limit.load(Ordering::Relaxed);
        roomy(word, min_limit) && self.inflight.load(Ordering::Relaxed) <= word
    }
}

/// Whether limit word `word` lets a worker keep places: a limit of at least `min_limit`, not
/// tracked for a load estimate.
#[inline]
fn roomy(word: u32, min_limit: u32) -> bool {
    word & TRACK == 0 && word >= min_limit
}

/// The places one worker keeps between its calls, within a turn (io_uring's registered
/// resources, in miniature): an attempt whose answer the worker takes (at once, or a deferred
/// one collected in a turn) gives its agent's place back to the worker instead of the bulkhead,
/// and the worker's next attempt at that agent in the turn takes it without touching the shared
/// count. Every kept place goes back at the end of the turn, and wherever the turn publishes its
/// completions before a call (a call to an agent whose last call on this worker was slow, or
/// any call once the turn has run `PUBLISH_NS`), so a place is kept between two calls of one
/// thread, for at most about `PUBLISH_NS` and one call (a call that blocks for the first time on
/// the worker keeps them until it returns, as it holds back the turn's completions). A turn of
/// 64 attempts over nine agents then moves each agent's shared count twice, not 64 times each
/// way.
///
/// A kept place still counts as in flight, so an agent's count may read one place per worker
/// high while a turn runs (its `stats()` too, after a completion delivered within the turn):
/// a limit is never exceeded, but a call near it may wait for room a turn early. Places are
/// kept only for limits of at least [`HOLD_PER_WORKER`] places per worker, where that reads at
/// most an eighth high, and never for a count kept for a load estimate (peak EWMA balancing); a
/// kept place is not used once the count is over a limit an operator lowered.
pub(crate) struct Held {
    /// Per agent: [`KEPT`] (a place is kept) and [`LISTED`] (the agent is in `list`).
    state: Box<[u8]>,
    /// The agents that may have a kept place, each once: what `release_all` walks.
    list: Vec<u16>,
    min_limit: u32,
}

/// Places per worker a limit must have for its places to be kept (see [`Held`]).
pub(crate) const HOLD_PER_WORKER: u32 = 8;

const KEPT: u8 = 1;
const LISTED: u8 = 2;

impl Held {
    /// For `agents` agent ids (spare ones included) and `workers` workers.
    pub(crate) fn new(agents: usize, workers: usize) -> Self {
        let min_limit = u32::try_from(workers).unwrap_or(u32::MAX).saturating_mul(HOLD_PER_WORKER).max(1);
        Self { state: vec![0; agents].into_boxed_slice(), list: Vec::with_capacity(agents), min_limit }
    }

    /// Takes the place kept for agent `a` (of bulkhead `b`), if there is one and it still fits
    /// under the limit (it is then the caller's, to give back with [`give_back`](Self::give_back)
    /// or the bulkhead's `release`); a kept place that no longer fits is released.
    #[inline]
    pub(crate) fn take(&mut self, a: usize, b: &Bulkhead) -> bool {
        let s = &mut self.state[a];
        if *s & KEPT == 0 {
            return false;
        }
        *s &= !KEPT;
        if b.kept_fits(self.min_limit) {
            return true;
        }
        b.release();
        false
    }

    /// Gives back a place at agent `a` (of bulkhead `b`): kept, if `b` allows it and none is
    /// kept for `a` yet, else released.
    #[inline]
    pub(crate) fn give_back(&mut self, a: usize, b: &Bulkhead) {
        let s = &mut self.state[a];
        if *s & KEPT != 0 || !b.holdable(self.min_limit) {
            return b.release();
        }
        if *s & LISTED == 0 {
            self.list.push(a as u16);
        }
        *s = KEPT | LISTED;
    }

    /// Releases every kept place, `bulkhead(a)` being agent `a`'s.
    #[inline]
    pub(crate) fn release_all<'a>(&mut self, bulkhead: impl Fn(usize) -> &'a Bulkhead) {
        if self.list.is_empty() {
            return;
        }
        for a in self.list.drain(..) {
            let a = usize::from(a);
            if self.state[a] & KEPT != 0 {
                bulkhead(a).release();
            }
            self.state[a] = 0;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tracking_tests {
    use super::*;

    #[test]
    fn a_kept_place_is_reused_counted_and_released_once() {
        let b = Bulkhead::new(64);
        let mut held = Held::new(4, 2);
        assert!(!held.take(1, &b), "nothing kept yet");
        assert!(b.reserve());
        held.give_back(1, &b);
        assert_eq!(b.in_flight(), 1, "a kept place still counts as in flight");
        assert!(held.take(1, &b), "the next attempt takes it without reserving");
        assert!(!held.take(1, &b), "once");
        held.give_back(1, &b);
        assert!(b.reserve());
        held.give_back(1, &b); // one is kept already: this one is released
        assert_eq!(b.in_flight(), 1);
        held.release_all(|_| &b);
        assert_eq!(b.in_flight(), 0);
        held.release_all(|_| &b);
        assert_eq!(b.in_flight(), 0, "released once");
        assert!(!held.take(1, &b));
    }

    #[test]
    fn places_are_kept_only_under_a_roomy_limit_without_tracking() {
        let mut held = Held::new(2, 2); // at least 16 places
        let small = Bulkhead::new(15);
        assert!(small.reserve());
        held.give_back(0, &small);
        assert_eq!(small.in_flight(), 0, "a small limit: released at once");
        let tracked = Bulkhead::new(64);
        tracked.set_tracked(true);
        assert!(tracked.reserve());
        held.give_back(1, &tracked);
        assert_eq!(tracked.in_flight(), 0, "a count for a load estimate: released at once");
        assert!(!held.take(0, &small) && !held.take(1, &tracked));
    }

    #[test]
    fn a_kept_place_is_not_used_over_a_lowered_limit() {
        let b = Bulkhead::new(64);
        let mut held = Held::new(1, 2);
        for _ in 0..20 {
            assert!(b.reserve());
        }
        held.give_back(0, &b); // 20 in flight, one of them kept
        b.set_limit(16).unwrap();
        assert!(!held.take(0, &b), "20 in flight over a limit of 16: the kept place is released");
        assert_eq!(b.in_flight(), 19);
        assert!(!b.reserve(), "and new attempts wait for room");
    }

    #[test]
    fn a_tracked_bulkhead_counts_without_limiting_and_never_goes_below_zero() {
        let b = Bulkhead::new(0);
        assert!(b.reserve());
        assert_eq!(b.in_flight(), 0, "untracked and unlimited: nothing counted");
        b.set_tracked(true);
        assert_eq!(b.limit(), 0);
        b.release(); // the attempt reserved before tracking began
        assert_eq!(b.in_flight(), 0);
        for _ in 0..5 {
            assert!(b.reserve());
        }
        assert_eq!(b.in_flight(), 5);
        b.release();
        assert_eq!(b.in_flight(), 4);
        b.set_tracked(false);
        assert!(b.reserve());
        assert_eq!(b.in_flight(), 4, "no longer counted");
        b.set_tracked(true);
        assert_eq!(b.in_flight(), 0, "tracking starts again from zero");

        // A limited agent counts either way, and its limit is kept through the flag.
        let l = Bulkhead::new(2);
        l.set_tracked(true);
        assert_eq!(l.limit(), 2);
        assert!(l.reserve() && l.reserve() && !l.reserve());
        l.set_limit(3).unwrap();
        assert!(l.limit() == 3 && l.reserve());
        l.set_tracked(false);
        assert_eq!((l.limit(), l.in_flight()), (3, 3));
    }
}
