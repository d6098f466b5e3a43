//! The one place the engine takes its atomics, cells, locks and thread primitives from.
//!
//! A normal build gets the standard library's types. A `RUSTFLAGS="--cfg loom"` build gets
//! loom's instrumented versions, so the model tests in `tests/loom.rs` explore every
//! interleaving of the very code the engine runs (the pattern of `tokio/src/loom`). Nothing in
//! the crate names `std::sync::atomic`, `std::cell::UnsafeCell` or `std::thread` directly.
//!
//! Loom cannot model crossbeam-queue's `ArrayQueue` or arc-swap's `ArcSwap`. Under loom,
//! [`crate::queue`] runs a transcription of the same queue algorithm on loom's atomics, and
//! [`Snapshot`] swaps arc-swap for a small lock-based stand-in, which is sound for a model
//! because it has the same (linearizable) contract.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

/// Locks a mutex, recovering the guard if a holder panicked: the data the engine keeps behind
/// its few locks (a waiter's thread handle, a join handle) stays valid whatever a panic
/// interrupted, and a poisoned lock must never turn one panic into many.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes `m` if no one holds it, recovering the guard if a holder panicked (as [`lock`]); None
/// if another thread holds it. For the rings' halves and the caches of free slots, taken in
/// turns by whoever finds them free.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Tells the processor (or loom's scheduler) that this thread is waiting for another one.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// `std::cell::UnsafeCell` with loom's closure-based API, so that code using a cell is written
/// once and loom can see (and check) every access to it.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(std::cell::UnsafeCell::new(v))
    }

    /// Runs `f` with a shared pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A value that readers load cheaply and a writer replaces whole: arc-swap's `ArcSwap`, or a
/// lock under loom (arc-swap has no loom support). The engine keeps its live policy (breaker
/// settings, agent enablement, admission limits) in one, so that reconfiguring a running engine
/// never blocks a worker.
pub(crate) struct Snapshot<T> {
    #[cfg(not(loom))]
    inner: arc_swap::ArcSwap<T>,
    #[cfg(loom)]
    inner: Mutex<Arc<T>>,
    /// Bumped after each `store`, so a reader holding a copy can tell, with one load of a line
    /// nobody writes in steady state, whether it must reload (as `arc_swap::Cache` does).
    version: AtomicU64,
}

impl<T> Snapshot<T> {
    pub(crate) fn new(v: T) -> Self {
        #[cfg(not(loom))]
        return Self { inner: arc_swap::ArcSwap::from_pointee(v), version: AtomicU64::new(0) };
        #[cfg(loom)]
        return Self { inner: Mutex::new(Arc::new(v)), version: AtomicU64::new(0) };
    }

    /// The current value. Cheap enough for once per worker batch.
    #[cfg(not(loom))]
    pub(crate) fn load(&self) -> std::sync::Arc<T> {
        self.inner.load_full()
    }

    #[cfg(loom)]
    pub(crate) fn load(&self) -> Arc<T> {
        lock(&self.inner).clone()
    }

    /// Runs `f` on the current value without touching its reference count: arc-swap's guard
    /// (a per-thread slot, no shared read-modify-write), or the lock under loom.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.inner.load())
    }

    #[cfg(loom)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let v = lock(&self.inner).clone();
        f(&v)
    }

    /// Replaces the value and returns the old one (to drop where the caller chooses).
    #[cfg(not(loom))]
    pub(crate) fn swap(&self, v: T) -> std::sync::Arc<T> {
        let old = self.inner.swap(std::sync::Arc::new(v));
        self.version.fetch_add(1, Ordering::Release);
        old
    }

    /// Replaces the value; readers see the old one or the new one, never a mix.
    pub(crate) fn store(&self, v: T) {
        #[cfg(not(loom))]
        drop(self.swap(v));
        #[cfg(loom)]
        {
            *lock(&self.inner) = Arc::new(v);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Refreshes a reader's copy (`seen` is the version it was loaded at) if a `store` happened
    /// since. A store between the version read and the load only makes the next call reload the
    /// same value again.
    #[inline]
    pub(crate) fn refresh(&self, copy: &mut Arc<T>, seen: &mut u64) {
        let v = self.version.load(Ordering::Acquire);
        if v != *seen {
            *copy = self.load();
            *seen = v;
        }
    }
}
