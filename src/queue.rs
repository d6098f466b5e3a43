//! The bounded multi-producer multi-consumer queue the engine uses where any thread may push or
//! pop: the ingress rings (any submitting thread to a worker), the completion queue (any worker
//! to any polling thread) and the free list of task slots.
//!
//! It is crossbeam-queue's `ArrayQueue`, Dmitry Vyukov's bounded MPMC queue: one
//! compare-and-swap per push or pop and no allocation after construction. crossbeam-queue has
//! no loom support, so under `--cfg loom` a lock-based stand-in with the same linearizable
//! contract takes its place; the engine's own protocols around it (slot states, wake-ups) are
//! what the models check.

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue as Mpmc;

#[cfg(loom)]
pub(crate) use stand_in::Mpmc;

#[cfg(loom)]
mod stand_in {
    use crate::sync::{Mutex, lock};
    use std::collections::VecDeque;

    /// A linearizable stand-in for `ArrayQueue` that loom can model.
    pub(crate) struct Mpmc<T> {
        items: Mutex<VecDeque<T>>,
        cap: usize,
    }

    impl<T> Mpmc<T> {
        pub(crate) fn new(cap: usize) -> Self {
            Self { items: Mutex::new(VecDeque::with_capacity(cap)), cap }
        }
        pub(crate) fn push(&self, v: T) -> Result<(), T> {
            let mut q = lock(&self.items);
            if q.len() == self.cap {
                return Err(v);
            }
            q.push_back(v);
            Ok(())
        }
        pub(crate) fn pop(&self) -> Option<T> {
            lock(&self.items).pop_front()
        }
        pub(crate) fn len(&self) -> usize {
            lock(&self.items).len()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.len() == 0
        }
        pub(crate) fn capacity(&self) -> usize {
            self.cap
        }
    }
}
