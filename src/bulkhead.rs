//! A per-agent bulkhead: at most `limit` attempts in flight at once, counted across every
//! worker, with a reservation that cannot overshoot (a compare-and-swap, not a check and then an
//! increment: two workers that both see room could otherwise both take it).
//!
//! An agent with no limit (0) costs one branch and no shared write.

use crate::sync::{AtomicU32, Ordering};

pub(crate) struct Bulkhead {
    /// The most attempts in flight at once; 0 for no limit.
    pub(crate) limit: u32,
    /// Attempts in flight, counted only when there is a limit. Any worker reserves and
    /// releases.
    inflight: AtomicU32,
}

impl Bulkhead {
    pub(crate) fn new(limit: u32) -> Self {
        Self { limit, inflight: AtomicU32::new(0) }
    }

    /// Takes a place for one more attempt, if there is no limit or room under it.
    #[inline]
    pub(crate) fn reserve(&self) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut n = self.inflight.load(Ordering::Relaxed);
        loop {
            if n >= self.limit {
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
        if self.limit != 0 {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Attempts in flight now (0 when there is no limit).
    pub(crate) fn in_flight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }
}
