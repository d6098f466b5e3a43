//! The rings that carry submitted tasks' tickets to the workers.
//!
//! Each worker has one single-producer single-consumer ring ([`crate::ring`]). Submitting threads
//! take turns as its producer, and the worker and the workers that steal from it take turns as
//! its consumer, each behind a lock that is only ever tried, once per batch: a submitter writes
//! a batch's tickets with plain stores and publishes them with one release store, and a worker
//! takes a turn's batch and hands the slots back with one release store. The Disruptor's
//! batching (one claim and one publish per batch) in place of a compare-and-swap per ticket on
//! each side, as the multi-producer multi-consumer queue cost.
//!
//! Nobody waits for a lock: a submitter that finds a ring taken (or full) tries the next
//! worker's, and after every ring the shared overflow queue, which holds the slot count, so a
//! push always finds room; every worker takes from the overflow queue too. A worker that finds
//! a ring taken leaves it to the one that holds it.

use crate::queue::Mpmc;
use crate::ring::{self, Consumer, Probe, Producer};
use crate::sync::{Mutex, MutexGuard, try_lock};
use crate::task::Ticket;
use crossbeam_utils::CachePadded;

/// One worker's ring, its two halves for whoever holds them.
pub(crate) struct Ingress {
    tx: CachePadded<Mutex<Producer<Ticket>>>,
    rx: CachePadded<Mutex<Consumer<Ticket>>>,
    probe: Probe<Ticket>,
}

impl Ingress {
    /// A ring of at least `capacity` tickets.
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = ring::channel(capacity);
        let probe = rx.probe();
        Self { tx: CachePadded::new(Mutex::new(tx)), rx: CachePadded::new(Mutex::new(rx)), probe }
    }

    /// The producing half, unless another submitter holds it.
    #[inline]
    pub(crate) fn try_producer(&self) -> Option<MutexGuard<'_, Producer<Ticket>>> {
        try_lock(&self.tx)
    }

    /// The consuming half, unless another worker holds it.
    #[inline]
    pub(crate) fn try_consumer(&self) -> Option<MutexGuard<'_, Consumer<Ticket>>> {
        try_lock(&self.rx)
    }

    /// Tickets published and not yet taken (a hint while others move them).
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.probe.len()
    }

    /// Whether no published ticket waits (a hint while others move them).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.probe.is_empty()
    }
}

/// Pushes `tickets` onto the rings of the `n` workers (`ring(w)` is worker `w`'s), worker
/// `first`'s first, then the next ones', then onto `overflow`; each ring's share is published
/// with one store. Returns the workers whose rings took tickets, as a bit set (wrapping above
/// 128), with `first` for the overflow.
pub(crate) fn push_all<'a>(
    n: usize,
    ring: impl Fn(usize) -> &'a Ingress,
    overflow: &Mpmc<Ticket>,
    first: usize,
    tickets: &[Ticket],
) -> u128 {
    let (mut pushed, mut woken) = (0, 0u128);
    for k in 0..n {
        let w = (first + k) % n;
        let Some(mut tx) = ring(w).try_producer() else { continue };
        let before = pushed;
        while pushed < tickets.len() && tx.push(tickets[pushed]).is_ok() {
            pushed += 1;
        }
        if pushed > before {
            tx.publish();
            woken |= 1u128 << (w % 128);
        }
        if pushed == tickets.len() {
            return woken;
        }
    }
    for &t in &tickets[pushed..] {
        if overflow.push(t).is_err() {
            unreachable!("the overflow queue holds every task slot");
        }
    }
    woken | 1u128 << (first % 128)
}
