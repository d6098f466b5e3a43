//! The breaker's sliding window: calls and failures over the last `window`, in ten buckets.
//!
//! Every recording thread owns one stripe (a worker records into the stripe of its index), and a
//! stripe is written by that thread alone, with a plain load and store: the success path of a
//! call never performs a read-modify-write on a line another core writes. Readers sum all
//! stripes, which only happens when a failure asks whether the rate has crossed the threshold.
//!
//! A bucket is one `u64`: the bucket's epoch (`now / bucket_len`, low 32 bits) in the high half,
//! then 16 bits of calls and 16 bits of failures. A bucket from an older epoch reads as empty;
//! a bucket that reaches 65,535 calls stops counting until its epoch ends, which keeps the
//! failure *rate* of its first 65,535 calls rather than overflowing.

use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// Buckets per window.
pub(crate) const BUCKETS: usize = 10;

pub(crate) struct Window {
    /// Length of one bucket in nanoseconds (`window / BUCKETS`, at least 2).
    bucket_ns: AtomicU64,
    /// `ceil(2^64 / bucket_ns)`, so that `now / bucket_ns` is `(now * recip) >> 64`: a multiply
    /// instead of a division on every call. The result is exact or one too high just below a
    /// bucket boundary, which only moves the boundary by a nanosecond or so. An operator may
    /// change the window while calls run ([`set_len`](Self::set_len)).
    recip: AtomicU64,
    /// One stripe per recording thread; stripe `i` is written only by the thread that records
    /// with `stripe == i`.
    stripes: Box<[CachePadded<[AtomicU64; BUCKETS]>]>,
}

impl Window {
    pub(crate) fn new(window_ns: u64, stripes: usize) -> Self {
        let stripes =
            (0..stripes.max(1)).map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0)))).collect();
        let w = Self { bucket_ns: AtomicU64::new(2), recip: AtomicU64::new(1 << 63), stripes };
        w.set_len(window_ns);
        w
    }

    /// Changes the window's length, and empties it: counts kept on the old scale would land in
    /// the wrong buckets. A call recorded while the change is made may survive it or be lost
    /// (its thread writes its stripe without a read-modify-write); the window only judges a
    /// rate, so one call either way does not matter.
    pub(crate) fn set_len(&self, window_ns: u64) {
        let bucket_ns = (window_ns / BUCKETS as u64).max(2);
        // At least 2, so the reciprocal fits in 64 bits.
        let recip = (u128::from(u64::MAX) + u128::from(bucket_ns)) / u128::from(bucket_ns);
        self.bucket_ns.store(bucket_ns, Ordering::Relaxed);
        self.recip.store(recip as u64, Ordering::Relaxed);
        for stripe in self.stripes.iter() {
            for bucket in stripe.iter() {
                bucket.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The window's length in nanoseconds (a multiple of ten buckets).
    pub(crate) fn len_ns(&self) -> u64 {
        self.bucket_ns.load(Ordering::Relaxed) * BUCKETS as u64
    }

    #[inline]
    fn epoch(&self, now_ns: u64) -> u64 {
        ((u128::from(now_ns) * u128::from(self.recip.load(Ordering::Relaxed))) >> 64) as u64
    }

    /// Records one call. `stripe` must be the caller's own stripe (see the module docs); an
    /// out-of-range stripe is folded into range, which keeps memory safety but may lose counts
    /// if two threads then share a stripe.
    #[inline]
    pub(crate) fn record(&self, stripe: usize, now_ns: u64, failure: bool) {
        let epoch = self.epoch(now_ns);
        let bucket = &self.stripes[stripe % self.stripes.len()][(epoch % BUCKETS as u64) as usize];
        let word = bucket.load(Ordering::Relaxed);
        let fail = u64::from(failure) << 16;
        let next = if word >> 32 != epoch & 0xffff_ffff {
            ((epoch & 0xffff_ffff) << 32) | fail | 1
        } else if word & 0xffff == 0xffff {
            return;
        } else {
            word + fail + 1
        };
        bucket.store(next, Ordering::Relaxed);
    }

    /// Calls and failures recorded in the window that ends at `now_ns`, over all stripes.
    pub(crate) fn totals(&self, now_ns: u64) -> (u64, u64) {
        let current = self.epoch(now_ns);
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let (mut calls, mut failures) = (0, 0);
        for stripe in self.stripes.iter() {
            for bucket in stripe.iter() {
                let word = bucket.load(Ordering::Relaxed);
                let low = word >> 32;
                // Rebuild the full epoch from its low 32 bits, relative to `current`.
                let epoch = (current & !0xffff_ffff) | low;
                let epoch = if epoch > current { epoch.wrapping_sub(1 << 32) } else { epoch };
                if epoch >= oldest && epoch <= current {
                    calls += word & 0xffff;
                    failures += (word >> 16) & 0xffff;
                }
            }
        }
        (calls, failures)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_live_window() {
        let w = Window::new(1_000, 2); // ten buckets of 100 ns
        for t in 0..10 {
            w.record(0, t * 100, t % 2 == 0);
        }
        w.record(1, 950, true);
        assert_eq!(w.totals(999), (11, 6));
        // At t = 1000 the bucket of epoch 0 has left the window.
        assert_eq!(w.totals(1_000), (10, 5));
        // A recording in a new epoch reuses the old bucket from scratch.
        w.record(0, 1_000, false);
        assert_eq!(w.totals(1_000), (11, 5));
        assert_eq!(w.totals(50_000), (0, 0));
    }

    #[test]
    fn the_reciprocal_matches_division_up_to_a_boundary() {
        for window in [10u64, 1_000, 999_999_937, 1_000_000_000, 60_000_000_000] {
            let w = Window::new(window, 1);
            for now in [0u64, 1, 99, 100, 12_345_678_901, 999_999_999_999, 1 << 50] {
                let b = w.bucket_ns.load(Ordering::Relaxed);
                let (exact, got) = (now / b, w.epoch(now));
                let near_boundary = b - now % b <= 4;
                assert!(got == exact || (got == exact + 1 && near_boundary), "{window} {now}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn a_changed_window_counts_in_its_new_buckets() {
        let w = Window::new(1_000, 1);
        w.record(0, 500, true);
        assert_eq!(w.totals(500), (1, 1));
        w.set_len(10_000); // buckets of 1,000 ns
        assert_eq!(w.len_ns(), 10_000);
        assert_eq!(w.totals(500), (0, 0), "a changed window starts empty");
        w.record(0, 600, false);
        w.record(0, 9_000, true);
        assert_eq!(w.totals(9_500), (2, 1));
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let w = Window::new(1_000_000, 1);
        for i in 0..70_000u64 {
            w.record(0, 5, i % 4 == 0);
        }
        let (calls, failures) = w.totals(5);
        assert_eq!(calls, 0xffff);
        assert_eq!(failures, 0xffff / 4 + 1);
    }
}
