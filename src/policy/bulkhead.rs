//! A per-agent bulkhead: at most `limit` attempts in flight at once, counted across every
//! worker, with a reservation that cannot overshoot (a compare-and-swap, not a check and then an
//! increment: two workers that both see room could otherwise both take it).
//!
//! An agent with no limit (0) costs one branch and no shared write.

use crate::sync::{AtomicU32, Ordering};

pub(crate) struct Bulkhead {
    /// The most attempts in flight at once; 0 for no limit. An operator may change one limit
    /// into another while attempts run (never to or from 0: without a limit nothing is counted).
    limit: AtomicU32,
    /// Attempts in flight, counted only when there is a limit. Any worker reserves and
    /// releases.
    inflight: AtomicU32,
}

impl Bulkhead {
    pub(crate) fn new(limit: u32) -> Self {
        Self { limit: AtomicU32::new(limit), inflight: AtomicU32::new(0) }
    }

    /// The limit now (0: none).
    /// Sets the limit of a spare agent id's bulkhead, before the id is published (nothing is
    /// in flight).
    pub(crate) fn init(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes a limit into another (both at least 1). Attempts over a lowered limit finish;
    /// new ones wait until the count is under it.
    pub(crate) fn set_limit(&self, limit: u32) -> Result<(), &'static str> {
        if limit == 0 || self.limit() == 0 {
            return Err("an agent's concurrency limit can be changed, not added or removed, while the engine runs");
        }
        self.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// Takes a place for one more attempt, if there is no limit or room under it.
    #[inline]
    pub(crate) fn reserve(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
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
        if self.limit.load(Ordering::Relaxed) != 0 {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Attempts in flight now (0 when there is no limit).
    pub(crate) fn in_flight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }
}
