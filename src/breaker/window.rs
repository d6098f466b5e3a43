//! The breaker's sliding windows: calls, failures and slow calls over the last `window` (the
//! time window, ten buckets), or over the last N calls (the count window, resilience4j's
//! `COUNT_BASED`).
//!
//! Every recording thread owns one stripe (a worker records into the stripe of its index), and a
//! stripe is written by that thread alone, with a plain load and store: the success path of a
//! call never performs a read-modify-write on a line another core writes. Readers sum all
//! stripes, which only happens when a failure asks whether the rate has crossed the threshold.
//!
//! A bucket is one `u64`: the bucket's epoch (`now / bucket_len`, low 32 bits) in the high half,
//! then 16 bits of calls and 16 bits of failures. A bucket from an older epoch reads as empty;
//! a bucket that reaches 65,535 calls stops counting until its epoch ends, which keeps the
//! failure *rate* of its first 65,535 calls rather than overflowing. Slow calls are counted in a
//! second word per bucket, written only when the breaker judges a slow-call rate.
//!
//! The count window ([`CountWindow`]) is a ring of one byte per call, shared by every recording
//! thread: a call takes the next position with one `fetch_add`, swaps its outcome in, and moves
//! the running totals by the difference from the outcome it replaced. Each swap is atomic, so
//! once the recordings in flight have landed the totals equal the ring's contents exactly; a
//! reader in between may see a total one or two calls off, which a rate tolerates. It costs
//! three or four shared read-modify-writes per call, which is why it is an option.

use crate::sync::{AtomicU8, AtomicU64, Ordering};
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
    stripes: Box<[CachePadded<Stripe>]>,
}

/// One thread's buckets: calls and failures, and slow calls (same epoch scheme).
struct Stripe {
    main: [AtomicU64; BUCKETS],
    slow: [AtomicU64; BUCKETS],
}

/// What a window holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Window {
    pub(crate) fn new(window_ns: u64, stripes: usize) -> Self {
        let stripes = (0..stripes.max(1))
            .map(|_| {
                CachePadded::new(Stripe {
                    main: std::array::from_fn(|_| AtomicU64::new(0)),
                    slow: std::array::from_fn(|_| AtomicU64::new(0)),
                })
            })
            .collect();
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
        self.clear();
    }

    /// Empties the window (the breaker closed again: the calls that tripped it are judged no
    /// more). A call recorded meanwhile may survive or be lost.
    pub(crate) fn clear(&self) {
        for stripe in self.stripes.iter() {
            for bucket in stripe.main.iter().chain(stripe.slow.iter()) {
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
    pub(crate) fn record(&self, stripe: usize, now_ns: u64, failure: bool, slow: bool) {
        let epoch = self.epoch(now_ns);
        let n = self.stripes.len();
        // A worker's index is below the stripe count: no division on the common path.
        let stripe = &self.stripes[if stripe < n { stripe } else { stripe % n }];
        let index = (epoch % BUCKETS as u64) as usize;
        let bucket = &stripe.main[index];
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
        if slow {
            let bucket = &stripe.slow[index];
            let word = bucket.load(Ordering::Relaxed);
            // Counted only while the call was (the call count above has not saturated).
            let next = if word >> 32 != epoch & 0xffff_ffff { ((epoch & 0xffff_ffff) << 32) | 1 } else { word + 1 };
            bucket.store(next, Ordering::Relaxed);
        }
    }

    /// Calls, failures and (with `slow`) slow calls recorded in the window that ends at
    /// `now_ns`, over all stripes.
    pub(crate) fn totals(&self, now_ns: u64, slow: bool) -> Totals {
        // Whether a bucket word belongs to the window: its epoch (the low 32 bits it keeps) is
        // one of the last `BUCKETS` up to `current`, by the wrapping distance back from
        // `current` (a word from a later epoch, another worker's clock a little ahead, is far
        // by that distance, and not counted, as a bucket from long ago).
        let current = self.epoch(now_ns) as u32;
        let live = |word: u64| current.wrapping_sub((word >> 32) as u32) < BUCKETS as u32;
        let mut t = Totals::default();
        for stripe in self.stripes.iter() {
            for bucket in stripe.main.iter() {
                let word = bucket.load(Ordering::Relaxed);
                if live(word) {
                    t.calls += word & 0xffff;
                    t.failures += (word >> 16) & 0xffff;
                }
            }
            if slow {
                for bucket in stripe.slow.iter() {
                    let word = bucket.load(Ordering::Relaxed);
                    if live(word) {
                        t.slow += word & 0xffff;
                    }
                }
            }
        }
        t
    }
}

/// The count window: the outcomes of the last `len` calls (see the module docs).
pub(crate) struct CountWindow {
    /// Calls recorded since the window was made; the next call takes `head % len`.
    head: AtomicU64,
    /// Failures and slow calls among the ring's contents, moved by wrapping differences (a
    /// reader clamps a transiently negative value to zero).
    failures: AtomicU64,
    slow: AtomicU64,
    /// One outcome per call: 0 empty, else `RECORDED | FAILED? | SLOW?`.
    ring: Box<[AtomicU8]>,
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

impl CountWindow {
    /// A window over the last `len` calls (at least 1).
    pub(crate) fn new(len: u32) -> Self {
        Self {
            head: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            ring: (0..len.max(1)).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// Empties the window (see [`Window::clear`]).
    pub(crate) fn clear(&self) {
        for slot in self.ring.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        self.head.store(0, Ordering::Relaxed);
    }

    /// The number of calls it holds when full.
    pub(crate) fn len(&self) -> u32 {
        self.ring.len() as u32
    }

    /// Records one call.
    #[inline]
    pub(crate) fn record(&self, failure: bool, slow: bool) {
        let at = self.head.fetch_add(1, Ordering::Relaxed) % self.ring.len() as u64;
        let new = RECORDED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let old = self.ring[at as usize].swap(new, Ordering::Relaxed);
        let moved = |counter: &AtomicU64, bit: u8| match (old & bit != 0, new & bit != 0) {
            (false, true) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        };
        moved(&self.failures, FAILED);
        moved(&self.slow, SLOW);
    }

    /// What the window holds now.
    pub(crate) fn totals(&self) -> Totals {
        let clamp = |v: u64| if (v as i64) < 0 { 0 } else { v };
        Totals {
            calls: self.head.load(Ordering::Relaxed).min(self.ring.len() as u64),
            failures: clamp(self.failures.load(Ordering::Relaxed)),
            slow: clamp(self.slow.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn tot(calls: u64, failures: u64, slow: u64) -> Totals {
        Totals { calls, failures, slow }
    }

    #[test]
    fn counts_only_the_live_window() {
        let w = Window::new(1_000, 2); // ten buckets of 100 ns
        for t in 0..10 {
            w.record(0, t * 100, t % 2 == 0, t < 3);
        }
        w.record(1, 950, true, false);
        assert_eq!(w.totals(999, true), tot(11, 6, 3));
        // At t = 1000 the bucket of epoch 0 has left the window.
        assert_eq!(w.totals(1_000, true), tot(10, 5, 2));
        // A recording in a new epoch reuses the old bucket from scratch.
        w.record(0, 1_000, false, true);
        assert_eq!(w.totals(1_000, true), tot(11, 5, 3));
        assert_eq!(w.totals(50_000, true), tot(0, 0, 0));
        // A bucket from a later epoch (another worker's clock a little ahead) is not counted.
        w.record(1, 50_150, true, false);
        assert_eq!(w.totals(50_050, true), tot(0, 0, 0));
        assert_eq!(w.totals(50_150, true), tot(1, 1, 0));
    }

    #[test]
    fn the_window_spans_the_wrap_of_the_epochs_low_bits() {
        let w = Window::new(1_000, 1); // epochs of 100 ns; a word keeps an epoch's low 32 bits
        let epoch = |e: u64| e * 100;
        let wrap = 1u64 << 32;
        w.record(0, epoch(wrap - 2), true, false);
        w.record(0, epoch(wrap - 1), false, false);
        w.record(0, epoch(wrap), false, false);
        assert_eq!(w.totals(epoch(wrap), false), tot(3, 1, 0));
        assert_eq!(w.totals(epoch(wrap + 7), false), tot(3, 1, 0));
        // Ten epochs after the first record, it has left the window; then the second.
        assert_eq!(w.totals(epoch(wrap + 8), false), tot(2, 0, 0));
        assert_eq!(w.totals(epoch(wrap + 9), false), tot(1, 0, 0));
        assert_eq!(w.totals(epoch(wrap + 10), false), tot(0, 0, 0));
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
        w.record(0, 500, true, true);
        assert_eq!(w.totals(500, true), tot(1, 1, 1));
        w.set_len(10_000); // buckets of 1,000 ns
        assert_eq!(w.len_ns(), 10_000);
        assert_eq!(w.totals(500, true), tot(0, 0, 0), "a changed window starts empty");
        w.record(0, 600, false, false);
        w.record(0, 9_000, true, false);
        assert_eq!(w.totals(9_500, true), tot(2, 1, 0));
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let w = Window::new(1_000_000, 1);
        for i in 0..70_000u64 {
            w.record(0, 5, i % 4 == 0, i % 2 == 0);
        }
        let t = w.totals(5, true);
        assert_eq!(t.calls, 0xffff);
        assert_eq!(t.failures, 0xffff / 4 + 1);
        assert_eq!(t.slow, 0xffff / 2 + 1, "slow calls stop counting with the calls");
    }

    #[test]
    fn the_count_window_holds_the_last_n_calls() {
        let w = CountWindow::new(4);
        assert_eq!(w.totals(), tot(0, 0, 0));
        w.record(true, false);
        w.record(true, true);
        assert_eq!(w.totals(), tot(2, 2, 1));
        w.record(false, false);
        w.record(false, true);
        assert_eq!(w.totals(), tot(4, 2, 2));
        // The fifth call replaces the first (a failure), the sixth the second.
        w.record(false, false);
        assert_eq!(w.totals(), tot(4, 1, 2));
        w.record(false, false);
        assert_eq!(w.totals(), tot(4, 0, 1));
        for _ in 0..4 {
            w.record(true, true);
        }
        assert_eq!(w.totals(), tot(4, 4, 4));
    }

    #[test]
    fn the_count_window_is_exact_after_concurrent_recording() {
        let w = std::sync::Arc::new(CountWindow::new(100));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        w.record((i + t) % 3 == 0, (i + t) % 5 == 0);
                    }
                })
            })
            .collect();
        for h in threads {
            h.join().unwrap();
        }
        let ring = |bit: u8| w.ring.iter().filter(|b| b.load(Ordering::Relaxed) & bit != 0).count() as u64;
        assert_eq!(w.totals(), tot(100, ring(FAILED), ring(SLOW)));
    }
}
