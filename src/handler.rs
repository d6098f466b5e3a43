//! The agent contract: what a handler sees and returns.

use crate::task::{AgentId, DomainId};

/// One attempt at a sub-task, as a handler sees it. Borrowed for the call only.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The task's correlation id.
    pub task_id: u64,
    /// The task's payload value.
    pub payload: u64,
    /// The task's payload bytes.
    pub data: &'a [u8],
    /// The sub-task's domain.
    pub domain: DomainId,
    /// The agent being called.
    pub agent: AgentId,
    /// The attempt within the sub-task, from 0.
    pub attempt: u32,
    /// How many domains the task needs (its sub-task count).
    pub fanout: u32,
    /// The task's priority.
    pub priority: u8,
}

/// A handler's answer: a value on success, an error code on failure.
pub type Reply = Result<u64, i32>;

/// An agent's behaviour. A handler of an agent that is not isolated may be called from several
/// worker threads at once; an isolated agent's handler is called from its own thread only.
/// A panic counts as a failed attempt (the engine catches it and runs on).
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

/// How a handler that cannot panic (one behind the C ABI) reports a failure other than an error
/// code: it unwinds with this payload (`std::panic::resume_unwind`), which the engine catches
/// like a panic and records as `kind` with `code`. Unwinding costs microseconds, paid only on
/// these failure paths.
pub(crate) struct ReplyFault {
    pub(crate) kind: crate::FailureKind,
    pub(crate) code: i32,
}
