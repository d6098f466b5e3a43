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

use crate::shared::Shared;
use crate::sink::Sink;
use crate::task::Completion;
use std::sync::Arc;

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
        let sink = Arc::new(Sink::new(sh.slab.capacity()));
        Self { sh, sink }
    }

    pub(crate) fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    pub(crate) fn is_of(&self, sh: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.sh, sh)
    }

    /// The file descriptor a loop watches: readable while completions wait (a level: it stays
    /// readable until a take leaves the queue empty). `None` where the platform has none.
    #[cfg(unix)]
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.sink.fd()
    }

    /// Moves up to `out.len()` waiting completions into `out`, oldest first, and returns how
    /// many. Never blocks: a loop calls it when the file descriptor is readable, or polls it.
    /// Takers serialise (one take at a time).
    pub fn take(&self, out: &mut [Completion]) -> usize {
        let slab = &self.sh.slab;
        self.sink.take(out.len(), |i, t| slab.take_into(t, &mut out[i]))
    }

    /// Completions waiting now.
    pub fn len(&self) -> usize {
        self.sink.len()
    }

    /// Whether no completion waits.
    pub fn is_empty(&self) -> bool {
        self.sink.len() == 0
    }

    /// Completions delivered to this queue since it was made (taken or waiting).
    pub fn delivered(&self) -> u64 {
        self.sink.delivered()
    }
}

impl Drop for CompletionQueue {
    fn drop(&mut self) {
        let slab = &self.sh.slab;
        self.sink.orphan(|t| drop(slab.take(t)));
    }
}
