//! How an idle thread sleeps and how whoever gives it work wakes it.
//!
//! The sleeper announces itself (`sleeping = true`), then looks for work once more, then parks;
//! a publisher makes its work visible, then looks at `sleeping`, and unparks the sleeper if it
//! is set. A sequentially consistent fence on each side (the Dekker pattern) guarantees that at
//! least one of the two sees the other's store: either the sleeper finds the work, or the
//! publisher finds the sleeper. No wake-up is lost, and an idle engine makes no system calls
//! and uses no CPU. Publishers pay one fence and one load per batch; the unpark (a system call)
//! happens only when the thread really sleeps.

use crate::sync::{AtomicBool, Mutex, Ordering, fence, lock, thread};
use crossbeam_utils::CachePadded;
use std::time::Duration;

pub(crate) struct Parker {
    /// Set by the owner just before it parks; cleared by the one waker that unparks it, or by
    /// the owner when it wakes.
    sleeping: CachePadded<AtomicBool>,
    /// The owner's handle, set once when it starts. Locked only to unpark.
    thread: Mutex<Option<thread::Thread>>,
}

impl Parker {
    pub(crate) fn new() -> Self {
        Self { sleeping: CachePadded::new(AtomicBool::new(false)), thread: Mutex::new(None) }
    }

    /// Called by the owning thread before it first sleeps.
    pub(crate) fn register(&self) {
        *lock(&self.thread) = Some(thread::current());
    }

    /// Called by a publisher after its work is visible (pushed and published).
    #[inline]
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        self.wake_fenced();
    }

    /// [`wake`](Self::wake) for a publisher that has already issued the sequentially
    /// consistent fence after making its work visible.
    /// Returns whether the owner was asleep (and is now woken).
    #[inline]
    pub(crate) fn wake_fenced(&self) -> bool {
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = lock(&self.thread).as_ref() {
                t.unpark();
            }
            return true;
        }
        false
    }

    /// Called by the owner when it has found nothing to do: sleeps unless `has_work` finds
    /// something after the announcement, until woken or `timeout` passes.
    pub(crate) fn sleep(&self, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            match timeout {
                None => thread::park(),
                #[cfg(not(loom))]
                Some(d) => thread::park_timeout(d),
                #[cfg(loom)]
                Some(_) => thread::yield_now(),
            }
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

/// Threads waiting for something any of several threads may provide (callers blocked in
/// `poll_wait` for completions). Same protocol as [`Parker`], with a list of sleepers; the
/// list's lock is taken only by threads going to sleep and by a notifier that found sleepers.
pub(crate) struct WaitList {
    sleepers: CachePadded<crate::sync::AtomicU64>,
    threads: Mutex<Vec<thread::Thread>>,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        // Room for a few sleepers from the start: the first sleep of a caller in `poll_wait`
        // or of an isolated agent's thread should not allocate in steady state (it did, once,
        // when the first sleep came after a warm-up that never slept: tests/alloc.rs, 1 run
        // in 10 on a loaded machine).
        Self { sleepers: CachePadded::new(crate::sync::AtomicU64::new(0)), threads: Mutex::new(Vec::with_capacity(8)) }
    }

    /// Sleeps unless `has_work` finds something after the announcement.
    pub(crate) fn sleep(&self, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        let me = thread::current();
        lock(&self.threads).push(me.clone());
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            match timeout {
                None => thread::park(),
                #[cfg(not(loom))]
                Some(d) => thread::park_timeout(d),
                #[cfg(loom)]
                Some(_) => thread::yield_now(),
            }
        }
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        let mut threads = lock(&self.threads);
        if let Some(i) = threads.iter().position(|t| t.id() == me.id()) {
            threads.swap_remove(i);
        }
    }

    /// Called after making work visible: wakes one sleeper, if there are any.
    #[inline]
    pub(crate) fn notify_one(&self) {
        fence(Ordering::SeqCst);
        // Taken off the list, so that the next notification wakes another sleeper.
        if self.sleepers.load(Ordering::Relaxed) != 0
            && let Some(t) = lock(&self.threads).pop()
        {
            t.unpark();
        }
    }

    /// Called after making work visible: wakes every sleeper, if there are any.
    #[inline]
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            for t in lock(&self.threads).iter() {
                t.unpark();
            }
        }
    }
}

/// The idle policy every waiting thread of the engine follows (workers, isolated agents, callers
/// in `poll_wait`), the LMAX Disruptor's yielding strategy with a parking end: spin `spins` times
/// (cheapest wake-up when a core is free), then yield the processor for up to `yield_ns`
/// (hands the core to a runnable thread that shares it, returns at once when there is none),
/// then report that it is time to park.
pub(crate) struct Idle {
    spins: u32,
    yield_ns: u64,
    round: u32,
    yielding_since: Option<std::time::Instant>,
}

impl Idle {
    pub(crate) fn new(spins: u32, yield_ns: u64) -> Self {
        Self { spins, yield_ns, round: 0, yielding_since: None }
    }

    /// Work was found: start over.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.round = 0;
        self.yielding_since = None;
    }

    /// Waits a little; returns true when the thread should park instead.
    #[inline]
    pub(crate) fn wait(&mut self) -> bool {
        if self.round < self.spins {
            self.round += 1;
            crate::sync::spin_hint();
            return false;
        }
        let since = *self.yielding_since.get_or_insert_with(std::time::Instant::now);
        if (since.elapsed().as_nanos() as u64) < self.yield_ns {
            thread::yield_now();
            return false;
        }
        self.reset();
        true
    }
}
