//! Completion queues: the completions of the tasks one consumer submitted, delivered to that
//! consumer alone, with a file descriptor its event loop watches.
//!
//! Without one, a completion goes to [`Engine::poll`](crate::Engine::poll) (shared by every
//! caller of the engine), to the completion callback, or to [`Engine::wait`](crate::Engine::wait).
//! A caller that runs its own event loop (asyncio, libuv, epoll) would need a thread that polls
//! and hands completions over to the loop, a crossing per batch, and for Python the GIL passed
//! back and forth between that thread and the loop. With a queue of its own the loop submits
//! with [`Engine::try_submit_to`], watches [`CompletionQueue::fd`] (readable while completions
//! wait; written once each time the queue goes from drained to waiting, not once per completion),
//! and takes them in batches with [`CompletionQueue::take`] on its own thread.
//!
//! **Bounds.** A queue holds as many completions as the engine has task slots, so a delivery
//! always finds room and none is lost. Completions wait in it until taken; each holds its task
//! slot until then, as with `poll`.
//!
//! **Lifetime.** A task keeps its queue alive until it is delivered. Completions that reach a
//! queue whose handle has been dropped are taken and discarded (their slots freed), so a consumer
//! that goes away does not leak the engine's slots.

use crate::doorbell::Doorbell;
use crate::queue::Mpmc;
use crate::shared::Shared;
use crate::task::{Completion, Ticket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The engine's side of a [`CompletionQueue`]: what a task's slot points to.
pub(crate) struct Sink {
    items: Mpmc<u64>,
    bell: Doorbell,
    /// The consumer's handle is gone: deliveries are discarded.
    orphaned: AtomicBool,
    delivered: AtomicU64,
}

impl Sink {
    /// Hands ticket `t`, done, to the queue (from the thread that finished it).
    pub(crate) fn deliver(&self, t: Ticket, sh: &Shared) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if self.orphaned.load(Ordering::Acquire) {
            drop(sh.slab.take(t));
            return;
        }
        // The queue holds the slot count: a push always finds room.
        if self.items.push(t.0).is_err() {
            unreachable!("a completion queue holds every task slot");
        }
        // A handle dropped between the check and the push drains what it can see; this sees the
        // drop (SeqCst on both sides) or the drop's drain sees the push.
        if self.orphaned.load(Ordering::SeqCst) {
            self.discard(sh);
        } else {
            self.bell.ring();
        }
    }

    fn discard(&self, sh: &Shared) {
        while let Some(raw) = self.items.pop() {
            drop(sh.slab.take(Ticket(raw)));
        }
    }
}

/// A queue of completions for one consumer: the tasks submitted with
/// [`Engine::try_submit_to`](crate::Engine::try_submit_to) (or
/// [`submit_to`](crate::Engine::submit_to), [`submit_batch_to`](crate::Engine::submit_batch_to))
/// are delivered here, and to no other caller. Made by
/// [`Engine::completion_queue`](crate::Engine::completion_queue). See the module documentation.
///
/// ```
/// use metafed::{Completion, Engine, EngineConfig, Task, Topology};
///
/// let engine = Engine::start(Topology::seed(0.0)?, EngineConfig::default())?;
/// let queue = engine.completion_queue();
/// let api = engine.topology().domain_id("API").unwrap();
/// let ticket = engine.try_submit_to(&queue, &Task::new(7, api))?;
/// let mut out = vec![Completion::default(); 16];
/// let mut got = 0;
/// while got == 0 {
///     // A loop would wait for `queue.fd()` to be readable; this spins.
///     got = queue.take(&mut out);
/// }
/// assert_eq!(out[0].ticket, ticket);
/// assert!(out[0].is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CompletionQueue {
    sh: Arc<Shared>,
    sink: Arc<Sink>,
}

impl std::fmt::Debug for CompletionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionQueue").field("waiting", &self.len()).field("delivered", &self.delivered()).finish()
    }
}

impl CompletionQueue {
    pub(crate) fn new(sh: Arc<Shared>) -> Self {
        let capacity = sh.slab.capacity();
        let sink = Arc::new(Sink {
            items: Mpmc::new(capacity.max(1)),
            bell: Doorbell::new(),
            orphaned: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
        });
        Self { sh, sink }
    }

    pub(crate) fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    pub(crate) fn is_of(&self, sh: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.sh, sh)
    }

    /// Whether `engine` made this queue (only its engine takes tasks for it).
    pub fn belongs_to(&self, engine: &crate::Engine) -> bool {
        engine.owns(self)
    }

    /// The file descriptor a loop watches: readable while completions wait (a level: it stays
    /// readable until a take leaves the queue empty). `None` where the platform has none.
    #[cfg(unix)]
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.sink.bell.fd()
    }

    /// Moves up to `out.len()` waiting completions into `out`, oldest first, and returns how
    /// many. Never blocks: a loop calls it when the file descriptor is readable, or polls it.
    /// Takers serialise (one take at a time).
    pub fn take(&self, out: &mut [Completion]) -> usize {
        let s = &*self.sink;
        let taking = s.bell.begin_take();
        let mut n = 0;
        while n < out.len() {
            let Some(raw) = s.items.pop() else { break };
            if self.sh.slab.take_into(Ticket(raw), &mut out[n]) {
                n += 1;
            }
        }
        s.bell.end_take(!s.items.is_empty(), taking);
        n
    }

    /// Completions waiting now.
    pub fn len(&self) -> usize {
        self.sink.items.len()
    }

    /// Whether no completion waits.
    pub fn is_empty(&self) -> bool {
        self.sink.items.is_empty()
    }

    /// Completions delivered to this queue since it was made (taken or waiting).
    pub fn delivered(&self) -> u64 {
        self.sink.delivered.load(Ordering::Relaxed)
    }
}

impl Drop for CompletionQueue {
    fn drop(&mut self) {
        self.sink.orphaned.store(true, Ordering::SeqCst);
        self.sink.discard(&self.sh);
    }
}
