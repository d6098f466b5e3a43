//! The bounded multi-producer multi-consumer queue the engine uses where any thread may push or
//! pop: the overflow queues of the ingress and completion rings (`crate::ingress`,
//! `crate::completions`), the workers' inboxes of answers, and the free list of task slots.
//!
//! It is crossbeam-queue's `ArrayQueue`, Dmitry Vyukov's bounded MPMC queue: one
//! compare-and-swap per push or pop and no allocation after construction. crossbeam-queue has
//! no loom support, so under `--cfg loom` a transcription of the same algorithm on loom's atomics
//! takes its place (`stand_in`, written after crossbeam-queue 0.3's `array_queue.rs`): the
//! models then explore the queue's own orderings together with the engine's protocols around it
//! (slot states, wake-ups, stealing, shutdown).

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue as Mpmc;

#[cfg(loom)]
pub(crate) use stand_in::Mpmc;

#[cfg(loom)]
mod stand_in {
    use crate::sync::{AtomicU64, Ordering, UnsafeCell, fence, spin_hint};
    use std::mem::MaybeUninit;

    /// One slot: its stamp says whose turn it is (a push when it equals the tail, a pop when it
    /// equals the head plus one), its value is written by the push that won the tail.
    struct Slot<T> {
        stamp: AtomicU64,
        value: UnsafeCell<MaybeUninit<T>>,
    }

    /// Vyukov's bounded queue as crossbeam-queue writes it: `head` and `tail` hold an index in
    /// the low bits and a lap count above them (`one_lap` is the next power of two above the
    /// capacity).
    pub(crate) struct Mpmc<T> {
        head: AtomicU64,
        tail: AtomicU64,
        buffer: Box<[Slot<T>]>,
        cap: usize,
        one_lap: u64,
    }

    // SAFETY: values move between threads through the stamp protocol (a value is written before
    // its stamp is published with Release and read after the stamp is seen with Acquire), so the
    // queue is as thread-safe as `T` is sendable; as crossbeam-queue's `ArrayQueue`.
    unsafe impl<T: Send> Sync for Mpmc<T> {}
    // SAFETY: as above; the queue owns its values.
    unsafe impl<T: Send> Send for Mpmc<T> {}

    impl<T> Mpmc<T> {
        pub(crate) fn new(cap: usize) -> Self {
            assert!(cap > 0, "capacity must be non-zero");
            let buffer = (0..cap)
                .map(|i| Slot { stamp: AtomicU64::new(i as u64), value: UnsafeCell::new(MaybeUninit::uninit()) })
                .collect();
            Self {
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                buffer,
                cap,
                one_lap: (cap as u64 + 1).next_power_of_two(),
            }
        }

        fn next(&self, at: u64) -> u64 {
            let index = at & (self.one_lap - 1);
            let lap = at & !(self.one_lap - 1);
            if (index as usize) + 1 < self.cap { at + 1 } else { lap.wrapping_add(self.one_lap) }
        }

        pub(crate) fn push(&self, v: T) -> Result<(), T> {
            let mut tail = self.tail.load(Ordering::Relaxed);
            loop {
                let slot = &self.buffer[(tail & (self.one_lap - 1)) as usize];
                let stamp = slot.stamp.load(Ordering::Acquire);
                if tail == stamp {
                    // The slot is free on this lap: win the tail, then write and publish.
                    match self.tail.compare_exchange_weak(tail, self.next(tail), Ordering::SeqCst, Ordering::Relaxed) {
                        Ok(_) => {
                            // SAFETY: winning the tail gives this thread the slot until it
                            // publishes the stamp below.
                            slot.value.with_mut(|p| unsafe { (*p).write(v) });
                            slot.stamp.store(tail + 1, Ordering::Release);
                            return Ok(());
                        }
                        Err(t) => tail = t,
                    }
                } else if stamp.wrapping_add(self.one_lap) == tail + 1 {
                    // The slot still holds last lap's value: full, unless a pop has moved on.
                    fence(Ordering::SeqCst);
                    let head = self.head.load(Ordering::Relaxed);
                    if head.wrapping_add(self.one_lap) == tail {
                        return Err(v);
                    }
                    spin_hint();
                    tail = self.tail.load(Ordering::Relaxed);
                } else {
                    // Another push is between winning the tail and publishing.
                    spin_hint();
                    tail = self.tail.load(Ordering::Relaxed);
                }
            }
        }

        pub(crate) fn pop(&self) -> Option<T> {
            let mut head = self.head.load(Ordering::Relaxed);
            loop {
                let slot = &self.buffer[(head & (self.one_lap - 1)) as usize];
                let stamp = slot.stamp.load(Ordering::Acquire);
                if head + 1 == stamp {
                    match self.head.compare_exchange_weak(head, self.next(head), Ordering::SeqCst, Ordering::Relaxed) {
                        Ok(_) => {
                            // SAFETY: the stamp says a push published this value, and winning
                            // the head makes this thread its only reader.
                            let v = slot.value.with(|p| unsafe { (*p).assume_init_read() });
                            slot.stamp.store(head.wrapping_add(self.one_lap), Ordering::Release);
                            return Some(v);
                        }
                        Err(h) => head = h,
                    }
                } else if stamp == head {
                    // Nothing published here yet: empty, unless a push has won the tail.
                    fence(Ordering::SeqCst);
                    let tail = self.tail.load(Ordering::Relaxed);
                    if tail == head {
                        return None;
                    }
                    spin_hint();
                    head = self.head.load(Ordering::Relaxed);
                } else {
                    spin_hint();
                    head = self.head.load(Ordering::Relaxed);
                }
            }
        }

        pub(crate) fn len(&self) -> usize {
            loop {
                let tail = self.tail.load(Ordering::SeqCst);
                let head = self.head.load(Ordering::SeqCst);
                if self.tail.load(Ordering::SeqCst) == tail {
                    let hix = (head & (self.one_lap - 1)) as usize;
                    let tix = (tail & (self.one_lap - 1)) as usize;
                    return if hix < tix {
                        tix - hix
                    } else if hix > tix {
                        self.cap - hix + tix
                    } else if tail == head {
                        0
                    } else {
                        self.cap
                    };
                }
            }
        }

        pub(crate) fn is_empty(&self) -> bool {
            let head = self.head.load(Ordering::SeqCst);
            let tail = self.tail.load(Ordering::SeqCst);
            tail == head
        }

        pub(crate) fn capacity(&self) -> usize {
            self.cap
        }
    }

    impl<T> Drop for Mpmc<T> {
        fn drop(&mut self) {
            while self.pop().is_some() {}
        }
    }
}
