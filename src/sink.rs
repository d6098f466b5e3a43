//! The engine's side of a [`CompletionQueue`](crate::CompletionQueue): what a task's slot points
//! to, and where its worker delivers it. It knows tickets, not slots: the caller passes what frees
//! a slot (taking its completion and dropping it) where one must be discarded.

use crate::doorbell::Doorbell;
use crate::queue::Mpmc;
use crate::task::Ticket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) struct Sink {
    items: Mpmc<u64>,
    bell: Doorbell,
    /// The consumer's handle is gone: deliveries are discarded.
    orphaned: AtomicBool,
    /// Completions taken, and discarded, so far: with those waiting, what was delivered. Counted
    /// by takers and discards, never by the workers that deliver.
    taken: AtomicU64,
    discarded: AtomicU64,
}

impl Sink {
    /// A sink that holds `capacity` tickets (the engine's slot count: a delivery always finds
    /// room).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            items: Mpmc::new(capacity.max(1)),
            bell: Doorbell::new(),
            orphaned: AtomicBool::new(false),
            taken: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// Hands ticket `t`, done, to the queue (from the thread that finished it); `discard` frees
    /// a slot whose consumer has gone.
    pub(crate) fn deliver(&self, t: Ticket, discard: impl Fn(Ticket)) {
        if self.orphaned.load(Ordering::Acquire) {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            discard(t);
            return;
        }
        // The queue holds the slot count: a push always finds room.
        if self.items.push(t.0).is_err() {
            unreachable!("a completion queue holds every task slot");
        }
        // A handle dropped between the check and the push drains what it can see; this sees the
        // drop (SeqCst on both sides) or the drop's drain sees the push.
        if self.orphaned.load(Ordering::SeqCst) {
            self.drain_into(&discard);
        } else {
            self.bell.ring();
        }
    }

    /// The consumer's handle is gone: discards what waits, and from now on what comes.
    pub(crate) fn orphan(&self, discard: impl Fn(Ticket)) {
        self.orphaned.store(true, Ordering::SeqCst);
        self.drain_into(&discard);
    }

    fn drain_into(&self, discard: &impl Fn(Ticket)) {
        while let Some(raw) = self.items.pop() {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            discard(Ticket(raw));
        }
    }

    /// Pops up to `max` tickets, oldest first, handing each to `take(i, t)` (`i`: how many it
    /// accepted so far), which says whether it took the completion; returns how many it did.
    /// Takers serialise; the descriptor stays readable while tickets are left.
    pub(crate) fn take(&self, max: usize, mut take: impl FnMut(usize, Ticket) -> bool) -> usize {
        let taking = self.bell.begin_take();
        let (mut n, mut popped) = (0, 0);
        while n < max {
            let Some(raw) = self.items.pop() else { break };
            popped += 1;
            if take(n, Ticket(raw)) {
                n += 1;
            }
        }
        self.taken.fetch_add(popped, Ordering::Relaxed);
        self.bell.end_take(!self.items.is_empty(), taking);
        n
    }

    #[cfg(unix)]
    pub(crate) fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.bell.fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Delivered so far: taken, discarded or waiting (a take in progress can hide the few it
    /// holds).
    pub(crate) fn delivered(&self) -> u64 {
        self.taken.load(Ordering::Relaxed) + self.discarded.load(Ordering::Relaxed) + self.items.len() as u64
    }
}
