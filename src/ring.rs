//! A bounded, wait-free, single-producer single-consumer ring.
//!
//! The algorithm is Lamport's queue in the shape rtrb and the LMAX Disruptor give it: a
//! power-of-two array, a `tail` only the producer writes and a `head` only the consumer writes,
//! each in its own cache-line pair, and each side keeping a cached copy of the other side's index
//! so that it touches the shared line only when its cached view says the ring is full (producer)
//! or empty (consumer). Indices are free-running `u64`s, masked on access, so "full" is
//! `tail - head == capacity` and no slot is wasted.
//!
//! Progress is published in batches, the Disruptor's way: [`Producer::push`] writes a slot but
//! only [`Producer::publish`] makes the batch visible, with one release store; [`Consumer::pop`]
//! reads a slot but only [`Consumer::release`] hands the batch's slots back, with one release
//! store. Every operation is wait-free: a bounded number of steps, no locks, no retries, no
//! allocation after [`channel`].
//!
//! The engine uses it in both directions between the callers and each worker: submitters take
//! turns as the producer of a worker's ingress ring (`crate::ingress`), and the callers of `poll`
//! as the consumer of its completion ring (`crate::completions`), each behind a lock they only
//! try.

use crate::sync::{Arc, AtomicU64, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;
use std::mem::MaybeUninit;

struct Ring<T> {
    /// The next index the consumer will read. Written only by the consumer, in
    /// [`Consumer::release`] (release); read by the producer when its cached copy says "full"
    /// (acquire), which makes the consumer's reads of the freed slots happen before the
    /// producer's writes to them.
    head: CachePadded<AtomicU64>,
    /// The next index the producer will write. Written only by the producer, in
    /// [`Producer::publish`] (release); read by the consumer when its cached copy says "empty"
    /// (acquire), which makes the producer's slot writes visible before the consumer reads them.
    tail: CachePadded<AtomicU64>,
    /// Slot `i & mask` holds an initialised value exactly when `head <= i < tail`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: u64,
}

// SAFETY: a value moves from the producer's thread to the consumer's thread through the slots,
// which needs `T: Send`. Each slot is accessed by one side at a time, as the index protocol above
// guarantees, so sharing the ring between the two threads is sound.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns values of `T`, which may be dropped on either thread.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Both halves are gone (the ring lives in an `Arc` they shared), so nothing races us.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for i in head..tail {
            let slot = &self.slots[(i & self.mask) as usize];
            // SAFETY: slots in `head..tail` hold initialised values (published, not consumed);
            // each is dropped exactly once here.
            slot.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

/// Creates a ring of at least `capacity` slots (rounded up to a power of two, at least 2) and
/// returns its two halves.
pub(crate) fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let ring = Arc::new(Ring {
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        slots,
        mask: capacity as u64 - 1,
    });
    (
        Producer { ring: ring.clone(), tail: 0, published: 0, head_cache: 0 },
        Consumer { ring, head: 0, released: 0, tail_cache: 0 },
    )
}

/// The writing half. Owned by one thread at a time.
pub(crate) struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// The next index to write; `published..tail` are written but not yet visible.
    tail: u64,
    /// The last value stored into `ring.tail`.
    published: u64,
    /// A lower bound on `ring.head`: refreshed only when the ring looks full.
    head_cache: u64,
}

impl<T> Producer<T> {
    /// Writes `value` into the next slot, or gives it back when the ring is full. The value is
    /// not visible to the consumer until [`publish`](Self::publish).
    #[inline]
    pub(crate) fn push(&mut self, value: T) -> Result<(), T> {
        let cap = self.ring.mask + 1;
        if self.tail.wrapping_sub(self.head_cache) == cap {
            self.head_cache = self.ring.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) == cap {
                return Err(value);
            }
        }
        let slot = &self.ring.slots[(self.tail & self.ring.mask) as usize];
        // SAFETY: `tail - head < capacity`, so this slot is outside `head..tail`: the consumer
        // neither reads it nor will until we publish an index past it, and it holds no value.
        slot.with_mut(|p| unsafe { (*p).write(value) });
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Makes every value pushed so far visible to the consumer, with one release store.
    /// Returns whether there was anything to publish.
    #[inline]
    pub(crate) fn publish(&mut self) -> bool {
        if self.published == self.tail {
            return false;
        }
        self.ring.tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
        true
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Values pushed but not published would otherwise be neither consumed nor dropped.
        self.publish();
    }
}

/// A view of a ring's published length, for any thread: neither half, so it reads only the two
/// shared indices (a hint while the halves move; exact when neither has work unpublished).
pub(crate) struct Probe<T> {
    ring: Arc<Ring<T>>,
}

impl<T> Probe<T> {
    /// Values published and not yet released. The head is read first: the tail read after it is
    /// at least as new, so the difference never underflows.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        let head = self.ring.head.load(Ordering::Acquire);
        self.ring.tail.load(Ordering::Acquire).wrapping_sub(head)
    }

    /// Whether no published value waits (see [`len`](Self::len)).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The reading half. Owned by one thread at a time.
pub(crate) struct Consumer<T> {
    ring: Arc<Ring<T>>,
    /// The next index to read; `released..head` are read but their slots not yet handed back.
    head: u64,
    /// The last value stored into `ring.head`.
    released: u64,
    /// A lower bound on `ring.tail`: refreshed only when the ring looks empty.
    tail_cache: u64,
}

impl<T> Consumer<T> {
    /// Takes the oldest published value, if any. Its slot is not reusable by the producer until
    /// [`release`](Self::release).
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_cache {
            self.tail_cache = self.ring.tail.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let slot = &self.ring.slots[(self.head & self.ring.mask) as usize];
        // SAFETY: `head < tail` as published with release and loaded with acquire, so the slot
        // holds an initialised value the producer will not touch until we release past it; we
        // move it out exactly once because `head` advances past it.
        let value = slot.with(|p| unsafe { (*p).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        Some(value)
    }

    /// Hands every slot read so far back to the producer, with one release store.
    #[inline]
    pub(crate) fn release(&mut self) {
        if self.released != self.head {
            self.ring.head.store(self.head, Ordering::Release);
            self.released = self.head;
        }
    }

    /// A view of the ring's length for other threads.
    pub(crate) fn probe(&self) -> Probe<T> {
        Probe { ring: self.ring.clone() }
    }

    /// Whether a published value is waiting. Reads the producer's index, so it costs a shared
    /// cache line: call it when deciding to sleep, not per value.
    #[inline]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn has_pending(&self) -> bool {
        self.head != self.ring.tail.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Values read were moved out; hand their slots back so the ring's drop skips them.
        self.release();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_wraps_and_reports_full() {
        let (mut p, mut c) = channel::<u32>(4);
        for round in 0..10u32 {
            for i in 0..4 {
                p.push(round * 4 + i).unwrap();
            }
            assert_eq!(p.push(99), Err(99), "a full ring refuses");
            assert_eq!(c.pop(), None, "nothing is visible before publish");
            p.publish();
            assert!(c.has_pending());
            for i in 0..4 {
                assert_eq!(c.pop(), Some(round * 4 + i));
            }
            assert_eq!(c.pop(), None);
            assert_eq!(p.push(7), Err(7), "slots come back only on release");
            c.release();
        }
    }

    #[test]
    fn drops_unconsumed_values_once() {
        let counter = std::sync::Arc::new(());
        {
            let (mut p, mut c) = channel(8);
            for _ in 0..5 {
                p.push(counter.clone()).unwrap();
            }
            p.publish();
            drop(c.pop());
            assert_eq!(std::sync::Arc::strong_count(&counter), 5);
        }
        assert_eq!(std::sync::Arc::strong_count(&counter), 1);
    }

    #[test]
    fn crosses_threads_in_order() {
        let (mut p, mut c) = channel::<u64>(64);
        let n = if cfg!(miri) { 2_000u64 } else { 200_000 };
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < n {
                match p.push(i) {
                    Ok(()) => i += 1,
                    Err(_) => {
                        p.publish();
                        std::thread::yield_now();
                    }
                }
                if i % 16 == 0 {
                    p.publish();
                }
            }
        });
        let mut expect = 0;
        while expect < n {
            match c.pop() {
                Some(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                None => {
                    c.release();
                    std::thread::yield_now();
                }
            }
        }
        t.join().unwrap();
    }
}
