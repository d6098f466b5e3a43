//! A queue of deferred attempts, for agents whose attempts run on an event loop of the caller's
//! (an asyncio loop, libuv, epoll, a tokio task that drains it).
//!
//! An agent made with [`AgentSpec::queued`](crate::AgentSpec::queued) answers nothing on the
//! worker: the worker defers the attempt and pushes it, with a copy of its request, onto the
//! agent's [`AttemptQueue`], and goes on. No foreign code runs on the worker, so a worker never
//! waits for a lock of the caller's (Python's GIL) to hand an attempt over. The loop learns that
//! attempts wait from the queue's file descriptor, which is readable while the queue is not
//! empty (written once each time the queue goes from drained to waiting, not once per attempt),
//! takes them in batches with [`AttemptQueue::take`], and completes each one once, from any
//! thread, as any deferred attempt.
//!
//! **Time.** A queued attempt's agent timeout counts from when it is taken, not from when it was
//! queued: a loop that falls behind makes attempts wait, not time out in a cascade of failovers.
//! While it waits, the task's deadline and its domain timeout still bound it: an attempt the
//! engine abandons while it waits is never handed out ([`AttemptQueueStats::expired`]). Each
//! taken attempt says how long its taker has ([`QueuedAttempt::timeout`]); the taker enforces it
//! and completes a late attempt as timed out ([`Attempt::time_out`]). Latency, for the agent's
//! breaker and hedging, counts from the take too.
//!
//! **Bounds.** The queue holds at most its capacity; an attempt that finds it full fails at once
//! as overloaded (the domain fails over), counted in [`AttemptQueueStats::refused`]. Attempts
//! still queued when the last handle to the queue goes are failed (kind `Dropped`), never lost.

use crate::attempt::Attempt;
use crate::doorbell::Doorbell;
use crate::handler::{Agent, Call, CallCx, OwnedRequest, Request};
use crate::task::FailureKind;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The capacity of [`AttemptQueue::default`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// A queue of deferred attempts that a loop of the caller's takes and runs (see the module
/// documentation). Cheap to clone: clones share the queue.
#[derive(Clone)]
pub struct AttemptQueue {
    inner: Arc<Inner>,
}

struct Inner {
    items: ArrayQueue<QueuedAttempt>,
    bell: Doorbell,
    taken: AtomicU64,
    expired: AtomicU64,
    refused: AtomicU64,
    /// The most attempts seen waiting at once.
    high_water: AtomicU64,
}

/// An attempt taken from an [`AttemptQueue`]: the attempt to complete, and the request it is for.
#[derive(Debug)]
pub struct QueuedAttempt {
    /// Complete it once (it fails as `Dropped` if dropped).
    pub attempt: Attempt,
    /// The tag the agent was given ([`AgentSpec::queued`](crate::AgentSpec::queued)): which of the
    /// loop's handlers runs it.
    pub tag: u64,
    /// The request, as a handler would see it (its bytes copied when queued).
    pub request: OwnedRequest,
    /// How long it waited in the queue (set by [`AttemptQueue::take`]).
    pub waited: Duration,
    /// How long the taker has to complete it, from the take: the agent timeout, or less when the
    /// task's deadline or the domain timeout comes sooner (set by [`AttemptQueue::take`]).
    pub timeout: Duration,
    /// The engine's C handle (0 for an engine started from Rust).
    engine_handle: u64,
    /// Engine nanoseconds when queued, and the agent timeout then.
    queued_ns: u64,
    budget_ns: u64,
}

impl QueuedAttempt {
    /// The engine's C handle, for the C library (0 for an engine started from Rust).
    #[doc(hidden)]
    pub fn engine_handle(&self) -> u64 {
        self.engine_handle
    }
}

/// What an [`AttemptQueue`] has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptQueueStats {
    /// Attempts waiting now.
    pub waiting: u64,
    /// The most that waited at once.
    pub high_water: u64,
    /// Attempts queued since the queue was made.
    pub queued: u64,
    /// Attempts taken.
    pub taken: u64,
    /// Attempts the engine abandoned while they waited (the task's deadline or its domain
    /// timeout passed, another attempt won, or the engine stopped), never handed out.
    pub expired: u64,
    /// Attempts refused because the queue was full (failed at once as overloaded).
    pub refused: u64,
}

impl Default for AttemptQueue {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE_CAPACITY)
    }
}

impl std::fmt::Debug for AttemptQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptQueue")
            .field("capacity", &self.inner.items.capacity())
            .field("stats", &self.stats())
            .finish()
    }
}

impl AttemptQueue {
    /// A queue for at most `capacity` waiting attempts (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                items: ArrayQueue::new(capacity.max(1)),
                bell: Doorbell::new(),
                taken: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                high_water: AtomicU64::new(0),
            }),
        }
    }

    /// The file descriptor a loop watches: readable while attempts wait (a level, not an edge: it
    /// stays readable until a take leaves the queue empty). `None` where the platform has none.
    #[cfg(unix)]
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.bell.fd()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.inner.items.capacity()
    }

    /// Attempts waiting now.
    pub fn len(&self) -> usize {
        self.inner.items.len()
    }

    /// Whether no attempt waits.
    pub fn is_empty(&self) -> bool {
        self.inner.items.is_empty()
    }

    /// What the queue has seen.
    pub fn stats(&self) -> AttemptQueueStats {
        let i = &self.inner;
        let (taken, expired) = (i.taken.load(Ordering::Relaxed), i.expired.load(Ordering::Relaxed));
        let waiting = i.items.len() as u64;
        AttemptQueueStats {
            waiting,
            high_water: i.high_water.load(Ordering::Relaxed),
            // Every attempt queued is waiting, taken or expired (no counter on the workers' path;
            // a take in progress can hide the few it holds).
            queued: waiting + taken + expired,
            taken,
            expired,
            refused: i.refused.load(Ordering::Relaxed),
        }
    }

    /// Takes up to `max` waiting attempts, oldest first, appending them to `out`; returns how many.
    /// Attempts the engine abandoned while they waited are dropped here (counted as expired), so
    /// everything taken still has time ([`QueuedAttempt::timeout`] is above zero). Each taken
    /// attempt's agent timeout and latency count from now. Never blocks on the engine: a loop
    /// calls it when the file descriptor is readable, or polls it.
    pub fn take(&self, max: usize, out: &mut Vec<QueuedAttempt>) -> usize {
        let i = &self.inner;
        let taking = i.bell.begin_take();
        let mut n = 0;
        while n < max {
            let Some(mut q) = i.items.pop() else { break };
            let Some(now) = q.attempt.start() else {
                // Abandoned while it waited: dropping the handle retires it.
                i.expired.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let left = q.attempt.deadline_ns().saturating_sub(now);
            q.waited = Duration::from_nanos(now.saturating_sub(q.queued_ns));
            q.timeout = Duration::from_nanos(q.budget_ns.min(left).max(1));
            out.push(q);
            n += 1;
        }
        i.taken.fetch_add(n as u64, Ordering::Relaxed);
        i.bell.end_take(!i.items.is_empty(), taking);
        n
    }

    /// Queues an attempt; gives its handle back when the queue is full.
    fn push(&self, q: QueuedAttempt) -> Result<(), Attempt> {
        let i = &self.inner;
        if let Err(q) = i.items.push(q) {
            i.refused.fetch_add(1, Ordering::Relaxed);
            return Err(q.attempt);
        }
        let len = i.items.len() as u64;
        if len > i.high_water.load(Ordering::Relaxed) {
            i.high_water.fetch_max(len, Ordering::Relaxed);
        }
        i.bell.ring();
        Ok(())
    }
}

/// The agent behind [`AgentSpec::queued`](crate::AgentSpec::queued).
pub(crate) struct QueueAgent {
    pub(crate) queue: AttemptQueue,
    pub(crate) tag: u64,
}

impl Agent for QueueAgent {
    fn call(&self, req: &Request<'_>, cx: &mut CallCx<'_>) -> Call {
        let budget_ns = cx.count_timeout_from_start();
        let Some(attempt) = cx.defer() else { return Call::Failed(FailureKind::Overloaded, 0) };
        let q = QueuedAttempt {
            attempt,
            tag: self.tag,
            request: req.to_owned(),
            waited: Duration::ZERO,
            timeout: Duration::ZERO,
            engine_handle: cx.engine_handle(),
            queued_ns: cx.now_ns,
            budget_ns,
        };
        match self.queue.push(q) {
            Ok(()) => Call::Pending,
            Err(attempt) => {
                cx.undefer(attempt);
                Call::Failed(FailureKind::Overloaded, 0)
            }
        }
    }
}
