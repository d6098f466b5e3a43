//! The engine's completion queues, which `poll` and `poll_wait` drain: the tickets of finished
//! tasks that go to no waiter, callback or caller's queue.
//!
//! Each worker owns the producing half of its own single-producer ring ([`crate::ring`]): it
//! pushes a ticket per completed task with a plain store, and publishes the turn's tickets with
//! one release store (at the end of the turn, before it wakes sleeping pollers; sooner in a turn
//! that runs long). The callers of `poll`, on any threads, take turns as the ring's consumer
//! behind a lock they only ever try: a caller that finds a ring taken moves on to the next, so
//! `poll` never blocks, and the lock is taken once per ring per `poll`, not per completion. The
//! Disruptor's batching (one claim and one publish per batch) in place of one compare-and-swap
//! per ticket on each side, as the multi-producer multi-consumer queue cost.
//!
//! Tickets that come from elsewhere (the shutdown sweep, a submitter that raced it) or find their
//! worker's ring full go to a shared overflow queue, which holds the slot count: each ticket is
//! queued in one place, so a delivery always finds room. The shutdown's copies for a worker stuck
//! in a handler have a queue of their own (`rescue`).

use crate::queue::Mpmc;
use crate::ring::{self, Consumer, Probe, Producer};
use crate::sync::{Mutex, try_lock};
use crossbeam_utils::CachePadded;

/// A worker's ring, as its consumers see it.
struct Shard {
    rx: Mutex<Consumer<u64>>,
    probe: Probe<u64>,
}

/// The completion queues of one engine.
pub(crate) struct Completions {
    shards: Box<[CachePadded<Shard>]>,
    overflow: Mpmc<u64>,
    /// Copies of tickets the shutdown queues again when a worker is stuck in a handler (see
    /// [`rescue`](Self::rescue)): made then, of the slot count.
    rescued: std::sync::OnceLock<Mpmc<u64>>,
    slots: usize,
}

impl Completions {
    /// Queues for `workers` workers, each ring of at least `per_worker` tickets, the overflow
    /// of `slots` (the engine's task slots); returns the workers' producing halves, in order.
    pub(crate) fn new(workers: usize, per_worker: usize, slots: usize) -> (Self, Vec<Producer<u64>>) {
        let (producers, shards): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| {
                let (tx, rx) = ring::channel(per_worker);
                let probe = rx.probe();
                (tx, CachePadded::new(Shard { rx: Mutex::new(rx), probe }))
            })
            .unzip();
        let overflow = Mpmc::new(slots.max(1));
        (Self { shards: shards.into_boxed_slice(), overflow, rescued: std::sync::OnceLock::new(), slots }, producers)
    }

    /// Queues ticket `t` from worker-owned producer `tx` (not visible until `tx` publishes), or
    /// into the overflow when `tx` is full or absent (visible at once).
    #[inline]
    pub(crate) fn push(&self, t: u64, tx: Option<&mut Producer<u64>>) {
        let t = match tx {
            Some(tx) => match tx.push(t) {
                Ok(()) => return,
                Err(t) => t,
            },
            None => t,
        };
        if self.overflow.push(t).is_err() {
            unreachable!("the overflow queue holds every task slot");
        }
    }

    /// Queues copies of `tickets` for `poll` in a queue of their own, once (the shutdown's last
    /// resort for the completions a worker stuck in a handler made and never published; at most
    /// one copy per slot, so they always fit). A ticket may also be queued elsewhere: whichever
    /// copy is taken second is skipped, its slot no longer `DONE` for it.
    pub(crate) fn rescue(&self, tickets: impl Iterator<Item = u64>) {
        let q = self.rescued.get_or_init(|| Mpmc::new(self.slots.max(1)));
        for t in tickets {
            if q.push(t).is_err() {
                unreachable!("at most one rescued copy per task slot");
            }
        }
    }

    /// Calls `take` on waiting tickets, the rings from `start` on, then the overflow, until it
    /// returns `false` (no room for more). A ring another caller is draining is skipped: its
    /// tickets are that caller's.
    #[inline]
    pub(crate) fn drain(&self, start: usize, mut take: impl FnMut(u64) -> bool) {
        let n = self.shards.len();
        for k in 0..n {
            let shard = &self.shards[(start + k) % n];
            if shard.probe.is_empty() {
                continue;
            }
            // A ring another caller holds is skipped (a lock poisoned by a panic is taken as it
            // is: the ring's indices are only ever stored whole).
            let Some(mut rx) = try_lock(&shard.rx) else { continue };
            let mut more = true;
            while more {
                let Some(t) = rx.pop() else { break };
                more = take(t);
            }
            rx.release();
            if !more {
                return;
            }
        }
        for q in std::iter::once(&self.overflow).chain(self.rescued.get()) {
            while let Some(t) = q.pop() {
                if !take(t) {
                    return;
                }
            }
        }
    }

    /// Whether any ticket waits (published).
    #[inline]
    pub(crate) fn ready(&self) -> bool {
        self.shards.iter().any(|s| !s.probe.is_empty())
            || !self.overflow.is_empty()
            || self.rescued.get().is_some_and(|q| !q.is_empty())
    }

    /// Tickets waiting in worker `w`'s ring.
    pub(crate) fn depth(&self, w: usize) -> u64 {
        self.shards[w].probe.len()
    }

    /// Tickets waiting in the overflow queue.
    pub(crate) fn overflow_depth(&self) -> u64 {
        self.overflow.len() as u64
    }

    /// How many worker rings there are.
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }
}
