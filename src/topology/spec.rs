//! How an agent runs: its handler (or simulation), isolation, concurrency limit and weight.

use crate::handler::{Agent, DeferredHandler, Handler};
use crate::sim::SimAgent;
use std::fmt;
use std::sync::Arc;

/// The most threads an isolated agent's pool may have.
pub const MAX_AGENT_THREADS: usize = 256;

/// What runs an agent's attempts.
#[derive(Clone)]
pub enum AgentKind {
    /// The simulator.
    Sim(SimAgent),
    /// A caller's handler that answers at once.
    Handler(Arc<dyn Handler>),
    /// A caller's handler that answers later (an agent that waits on I/O).
    Deferred(Arc<dyn DeferredHandler>),
    /// Attempts that wait in a queue for a loop of the caller's, and the tag the loop knows the
    /// agent by ([`AgentSpec::queued`]).
    #[cfg(not(loom))]
    Queued(crate::attempt_queue::AttemptQueue, u64),
    /// An agent implemented over the C ABI (a C or Python handler).
    #[doc(hidden)]
    Foreign(ForeignAgent),
    /// Declared (in TOML) but not yet bound to a handler; building fails until it is bound.
    Unbound,
}

/// A handler reached through the C ABI: it may answer at once or defer, call by call.
#[doc(hidden)]
#[derive(Clone)]
pub struct ForeignAgent(pub(crate) Arc<dyn Agent>);

impl fmt::Debug for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sim(s) => f.debug_tuple("Sim").field(s).finish(),
            Self::Handler(_) => f.write_str("Handler"),
            Self::Deferred(_) => f.write_str("Deferred"),
            #[cfg(not(loom))]
            Self::Queued(_, tag) => f.debug_tuple("Queued").field(tag).finish(),
            Self::Foreign(_) => f.write_str("Foreign"),
            Self::Unbound => f.write_str("Unbound"),
        }
    }
}

/// An agent as declared: what runs it, where, and how many attempts it may have in flight.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// What runs its attempts.
    pub kind: AgentKind,
    /// Run its handler on threads of its own (`threads` of them), so that a handler that blocks
    /// or hangs stalls only this agent: its attempts are abandoned at the agent timeout and fail
    /// over. For handlers that block; a handler that waits on I/O is better deferred.
    pub isolated: bool,
    /// Threads of an isolated agent (1 to 256).
    pub threads: usize,
    /// Attempts in flight at once at most (a bulkhead), counted across workers from the call
    /// (or hand-over) until the answer is taken or, for an abandoned attempt, until its handle
    /// is completed or dropped. Beyond it the domain picks another agent, or the sub-task waits
    /// in the domain (not on a thread). 0: no limit.
    pub max_concurrency: u32,
    /// Its share of its domain's traffic against the other agents' weights (1 to
    /// [`MAX_WEIGHT`]): an agent of weight 3 is chosen first three times as often as one of
    /// weight 1 (smooth weighted round-robin). Failover still tries every agent.
    pub weight: u32,
}

/// The largest agent weight.
pub const MAX_WEIGHT: u32 = 100;

impl AgentSpec {
    fn of(kind: AgentKind) -> Self {
        Self { kind, isolated: false, threads: 1, max_concurrency: 0, weight: 1 }
    }
    /// A simulated agent.
    pub fn sim(sim: SimAgent) -> Self {
        Self::of(AgentKind::Sim(sim))
    }
    /// An agent run by `handler`, which answers at once.
    pub fn handler(handler: impl Handler) -> Self {
        Self::of(AgentKind::Handler(Arc::new(handler)))
    }
    /// An agent run by a shared handler.
    pub fn shared(handler: Arc<dyn Handler>) -> Self {
        Self::of(AgentKind::Handler(handler))
    }
    /// An agent run by `handler`, which answers later through an [`Attempt`](crate::Attempt).
    pub fn deferred(handler: impl DeferredHandler) -> Self {
        Self::of(AgentKind::Deferred(Arc::new(handler)))
    }
    /// An agent whose attempts wait in `queue` for a loop of the caller's to take and run them
    /// ([`AttemptQueue`](crate::AttemptQueue)); `tag` tells the loop which of its handlers runs
    /// this agent's attempts. The agent timeout counts from the take.
    #[cfg(not(loom))]
    pub fn queued(queue: crate::attempt_queue::AttemptQueue, tag: u64) -> Self {
        Self::of(AgentKind::Queued(queue, tag))
    }
    pub(crate) fn foreign(agent: Arc<dyn Agent>) -> Self {
        Self::of(AgentKind::Foreign(ForeignAgent(agent)))
    }
    /// Runs the agent on a thread of its own.
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }
    /// Runs the agent on a pool of `threads` threads of its own (isolated).
    pub fn threads(mut self, threads: usize) -> Self {
        self.isolated = true;
        self.threads = threads;
        self
    }
    /// Allows at most `n` attempts in flight at once (0: no limit).
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = n;
        self
    }
    /// Sets the agent's routing weight (1 to [`MAX_WEIGHT`]; see [`AgentSpec::weight`]).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            return Err(format!("weight must be 1 to {MAX_WEIGHT}, got {}", self.weight));
        }
        if self.isolated && !(1..=MAX_AGENT_THREADS).contains(&self.threads) {
            return Err(format!("threads must be 1 to {MAX_AGENT_THREADS}, got {}", self.threads));
        }
        if self.isolated && matches!(self.kind, AgentKind::Deferred(_)) {
            return Err("a deferred agent cannot be isolated (it holds no thread while it waits)".into());
        }
        #[cfg(not(loom))]
        if self.isolated && matches!(self.kind, AgentKind::Queued(..)) {
            return Err("a queued agent cannot be isolated (its attempts run on the caller's loop)".into());
        }
        if let AgentKind::Sim(s) = &self.kind
            && s.io
            && self.isolated
        {
            return Err("a simulated I/O agent cannot be isolated (it holds no thread while it waits)".into());
        }
        Ok(())
    }
}
