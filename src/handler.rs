//! The agent contract: what a handler sees and returns.
//!
//! Two kinds of handlers face users:
//!
//! - a [`Handler`] answers at once: it returns a value or an error code from `call`. It runs on
//!   the engine's workers (or on an isolated agent's own threads) and its path allocates
//!   nothing;
//! - a [`DeferredHandler`] answers later: `start` receives the request and an [`Attempt`], and
//!   whoever holds the attempt completes it once, from any thread, with a value, the reply's
//!   bytes, or an error code. The worker does not wait for it; the agent timeout is enforced
//!   by the engine.
//!
//! Inside the engine both (and C handlers, which may do either per call, and simulated agents)
//! are an [`Agent`]: `call` returns the answer, or [`Call::Pending`] after deferring the attempt
//! through its [`CallCx`].

use crate::attempt::{Attempt, Hub};
use crate::sync::Arc;
use crate::task::{AgentId, DomainId, FailureKind, Ticket};

/// One attempt at a sub-task, as a handler sees it. Borrowed for the call only: a deferred
/// handler copies what it needs before `start` returns.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The task's ticket (what `submit` returned): unique among tasks in flight.
    pub ticket: Ticket,
    /// The task's correlation id.
    pub task_id: u64,
    /// The task's payload value.
    pub payload: u64,
    /// The task's payload bytes.
    pub data: &'a [u8],
    /// The sub-task's domain.
    pub domain: DomainId,
    /// The domain the task asked for: `domain`, unless the sub-task failed there and was
    /// rerouted to `domain` as one of its alternates.
    pub origin: DomainId,
    /// The agent being called.
    pub agent: AgentId,
    /// The attempt within the sub-task, from 0.
    pub attempt: u32,
    /// How many domains the task needs (its sub-task count).
    pub fanout: u32,
    /// The task's priority.
    pub priority: u8,
}

impl Request<'_> {
    /// An owned copy (the payload bytes copied), for a handler that answers later.
    pub fn to_owned(&self) -> OwnedRequest {
        OwnedRequest {
            ticket: self.ticket,
            task_id: self.task_id,
            payload: self.payload,
            data: self.data.to_vec(),
            domain: self.domain,
            origin: self.origin,
            agent: self.agent,
            attempt: self.attempt,
            fanout: self.fanout,
            priority: self.priority,
        }
    }
}

/// A [`Request`] that owns its payload bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedRequest {
    /// The task's ticket.
    pub ticket: Ticket,
    /// The task's correlation id.
    pub task_id: u64,
    /// The task's payload value.
    pub payload: u64,
    /// The task's payload bytes.
    pub data: Vec<u8>,
    /// The sub-task's domain.
    pub domain: DomainId,
    /// The domain the task asked for (see [`Request::origin`]).
    pub origin: DomainId,
    /// The agent being called.
    pub agent: AgentId,
    /// The attempt within the sub-task, from 0.
    pub attempt: u32,
    /// How many domains the task needs.
    pub fanout: u32,
    /// The task's priority.
    pub priority: u8,
}

/// A handler's answer: a value on success, an error code on failure.
pub type Reply = Result<u64, i32>;

/// An agent's behaviour, answering at once. A handler of an agent that is not isolated may be
/// called from several worker threads at once; an isolated agent's handler from its pool's
/// threads. A panic counts as a failed attempt (the engine catches it and runs on).
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn call(&self, req: &Request<'_>) -> Reply;
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>) -> Reply + Send + Sync + 'static,
{
    fn call(&self, req: &Request<'_>) -> Reply {
        self(req)
    }
}

/// An agent's behaviour, answering later: an agent that waits on I/O. `start` runs on a worker
/// and must not block: it starts the work (sends the request, registers a timer, spawns a
/// future) and returns; whoever holds the [`Attempt`] completes it once, from any thread.
/// Completing it inside `start` is fine too.
pub trait DeferredHandler: Send + Sync + 'static {
    /// Starts one attempt.
    fn start(&self, req: &Request<'_>, attempt: Attempt);
}

impl<F> DeferredHandler for F
where
    F: Fn(&Request<'_>, Attempt) + Send + Sync + 'static,
{
    fn start(&self, req: &Request<'_>, attempt: Attempt) {
        self(req, attempt)
    }
}

/// Runs `f`, turning a panic into `None`. The panic's payload is dropped inside a guard of its
/// own, so that a payload whose `Drop` panics in turn cannot unwind out of the engine (a second
/// payload is leaked rather than dropped).
#[inline]
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            drop_payload(payload);
            None
        }
    }
}

#[cold]
fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// What an agent's call returned.
#[derive(Debug)]
pub enum Call {
    /// Success with a value.
    Value(u64),
    /// Success with a value and the reply's bytes.
    Body(u64, Vec<u8>),
    /// A failed attempt.
    Failed(FailureKind, i32),
    /// The attempt was deferred (through the call's [`CallCx`]); its answer comes later.
    Pending,
}

/// How the engine runs an agent's attempts: the one interface behind Rust handlers (either
/// kind), C handlers, Python handlers and simulated agents.
pub trait Agent: Send + Sync {
    /// Runs (or starts) one attempt.
    fn call(&self, req: &Request<'_>, cx: &mut CallCx<'_>) -> Call;
}

/// A [`Handler`] as an [`Agent`].
pub(crate) struct Immediate(pub(crate) Arc<dyn Handler>);

impl Agent for Immediate {
    #[inline]
    fn call(&self, req: &Request<'_>, _: &mut CallCx<'_>) -> Call {
        match self.0.call(req) {
            Ok(v) => Call::Value(v),
            Err(code) => Call::Failed(FailureKind::Error, code),
        }
    }
}

/// A [`DeferredHandler`] as an [`Agent`].
pub(crate) struct Deferred(pub(crate) Arc<dyn DeferredHandler>);

impl Agent for Deferred {
    fn call(&self, req: &Request<'_>, cx: &mut CallCx<'_>) -> Call {
        match cx.defer() {
            Some(attempt) => {
                self.0.start(req, attempt);
                Call::Pending
            }
            None => Call::Failed(FailureKind::Overloaded, 0),
        }
    }
}

/// What an agent's call may use besides the request: the means to defer the attempt.
pub struct CallCx<'a> {
    source: Source<'a>,
    /// The attempt deferred during this call, if any: (slot, generation).
    pub(crate) armed: Option<(u32, u32)>,
    /// When the engine will abandon a deferred attempt, on the engine clock.
    pub(crate) deadline_ns: u64,
    /// The latest `deadline_ns` may become: the task's deadline or its domain timeout.
    limit_ns: u64,
    /// The engine's clock reading when the call started.
    pub(crate) now_ns: u64,
    /// The engine's C handle (0 when it has none), for C handlers that defer.
    engine: Handle<'a>,
}

/// Where the engine's C handle is read, when a C handler defers.
enum Handle<'a> {
    Shared(&'a crate::sync::AtomicU64),
    Value(u64),
}

enum Source<'a> {
    /// On a worker: arm one of its free slots.
    Worker { hub: &'a Arc<Hub>, free: &'a mut Vec<u32> },
    /// On an isolated agent's thread: the attempt the worker armed for this call.
    Held(Option<Attempt>),
}

impl<'a> CallCx<'a> {
    /// A context for a call on a worker, which arms a slot of `hub` from `free` when deferred.
    #[inline]
    pub(crate) fn on_worker(
        hub: &'a Arc<Hub>,
        free: &'a mut Vec<u32>,
        now_ns: u64,
        deadline_ns: u64,
        limit_ns: u64,
        engine_handle: &'a crate::sync::AtomicU64,
    ) -> Self {
        Self {
            source: Source::Worker { hub, free },
            armed: None,
            deadline_ns,
            limit_ns,
            now_ns,
            engine: Handle::Shared(engine_handle),
        }
    }

    /// A context for a call on an isolated agent's thread, holding the attempt armed for it.
    pub(crate) fn holding(attempt: Attempt, now_ns: u64, engine_handle: u64) -> CallCx<'static> {
        let deadline_ns = attempt.deadline_ns();
        let armed = Some(attempt.id());
        CallCx {
            source: Source::Held(Some(attempt)),
            armed,
            deadline_ns,
            limit_ns: deadline_ns,
            now_ns,
            engine: Handle::Value(engine_handle),
        }
    }

    /// The engine's C handle (0 for an engine started from Rust).
    pub fn engine_handle(&self) -> u64 {
        match self.engine {
            Handle::Shared(h) => h.load(crate::sync::Ordering::Relaxed),
            Handle::Value(v) => v,
        }
    }

    /// Defers this call's attempt: its handle, to be completed later. `None` if it was already
    /// deferred, or no attempt slot is free (the worker holds as many deferred attempts as it
    /// has slots).
    pub fn defer(&mut self) -> Option<Attempt> {
        match &mut self.source {
            Source::Worker { hub, free } => {
                if self.armed.is_some() {
                    return None;
                }
                let idx = free.pop()?;
                let g = hub.arm(idx);
                self.armed = Some((idx, g));
                Some(Attempt::new(Arc::clone(hub), idx, g, self.deadline_ns))
            }
            Source::Held(held) => held.take(),
        }
    }

    /// Before [`defer`](Self::defer): the attempt's agent timeout will count from when its
    /// holder starts it ([`crate::AttemptQueue::take`]), so the engine waits for it until the
    /// task's deadline or the domain timeout only. Returns the agent timeout the holder then has
    /// (the time this call would have had).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn count_timeout_from_start(&mut self) -> u64 {
        let budget = self.time_left_ns();
        if matches!(self.source, Source::Worker { .. }) && self.armed.is_none() {
            self.deadline_ns = self.limit_ns;
        }
        budget
    }

    /// Takes back an attempt this call deferred and could not hand over: the call answers at
    /// once instead.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn undefer(&mut self, attempt: Attempt) {
        match &mut self.source {
            Source::Worker { free, .. } => {
                free.push(attempt.disarm());
                self.armed = None;
            }
            Source::Held(held) => *held = Some(attempt),
        }
    }

    /// Whether this call's attempt has been deferred (handed to the handler).
    pub fn handed_out(&self) -> bool {
        match &self.source {
            Source::Worker { .. } => self.armed.is_some(),
            Source::Held(held) => held.is_none(),
        }
    }

    /// How long the engine waits for a deferred answer from the call's start, in nanoseconds.
    pub fn time_left_ns(&self) -> u64 {
        self.deadline_ns.saturating_sub(self.now_ns)
    }

    /// The attempt this context still holds (an isolated call that answered at once).
    pub(crate) fn take_held(&mut self) -> Option<Attempt> {
        match &mut self.source {
            Source::Held(held) => held.take(),
            Source::Worker { .. } => None,
        }
    }
}
