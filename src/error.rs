//! Errors. Every one names the problem in words a caller can act on.

use std::fmt;

/// A problem building a topology, reading a configuration, or starting an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The topology is invalid (no domains, an empty domain, a duplicate name, a rate outside
    /// [0, 1], a zero timeout, an agent without a handler, ...).
    Topology(String),
    /// The configuration is invalid, or its TOML does not parse.
    Config(String),
    /// A file could not be read.
    Io(String),
    /// The engine's threads could not be started.
    Spawn(String),
}

impl Error {
    pub(crate) fn topology(message: String) -> Self {
        Self::Topology(message)
    }

    /// Prefixes the message with where it came from (a file name, say).
    pub(crate) fn context(self, ctx: &str) -> Self {
        match self {
            Self::Topology(m) => Self::Topology(format!("{ctx}: {m}")),
            Self::Config(m) => Self::Config(format!("{ctx}: {m}")),
            Self::Io(m) => Self::Io(format!("{ctx}: {m}")),
            Self::Spawn(m) => Self::Spawn(format!("{ctx}: {m}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Topology(m) => write!(f, "invalid topology: {m}"),
            Self::Config(m) => write!(f, "invalid configuration: {m}"),
            Self::Io(m) => write!(f, "{m}"),
            Self::Spawn(m) => write!(f, "cannot start the engine: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a task was not accepted. A task that was accepted always gets exactly one
/// [`Completion`](crate::Completion) instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// Backpressure: no task slot is free for this priority.
    /// Poll completions, then retry.
    Full,
    /// The engine is shutting down or stopped.
    ShuttingDown,
    /// The task names a domain the topology does not have (its index).
    UnknownDomain(u16),
    /// The task names no domain and the engine has no classifier.
    NoDomains,
    /// The task's attributes break a limit (which, and where).
    InvalidAttrs(crate::classify::AttrError),
    /// The priority is above 3.
    InvalidPriority(u8),
    /// A blocking submission found no room before its timeout.
    Timeout,
    /// A blocking submission on one of the engine's own threads (in a handler or a completion
    /// callback), where waiting for room could wait forever.
    WouldDeadlock,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("the engine is full (backpressure): poll completions and retry"),
            Self::ShuttingDown => f.write_str("the engine is shutting down and accepts no tasks"),
            Self::UnknownDomain(d) => write!(f, "the task names domain {d}, which the topology does not have"),
            Self::NoDomains => {
                f.write_str("the task names no domain and the engine has no classifier (see TopologyBuilder::classify)")
            }
            Self::InvalidAttrs(e) => write!(f, "the task's attributes: {e}"),
            Self::InvalidPriority(p) => write!(f, "priority {p} is out of range (0 highest .. 3 lowest)"),
            Self::Timeout => f.write_str("no room for the task before the submission timeout"),
            Self::WouldDeadlock => f.write_str(WOULD_DEADLOCK),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Why [`Engine::wait`](crate::Engine::wait) returned without a completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The task has not completed within the timeout; the ticket stays valid.
    Timeout,
    /// The ticket does not name a task in flight: never issued, or already delivered.
    UnknownTicket,
    /// The task was not submitted as waitable; its completion goes to `poll` or the callback.
    NotWaitable,
    /// Another thread is already waiting on this ticket.
    AlreadyWaiting,
    /// A wait on one of the engine's own threads (in a handler or a completion callback), where
    /// it could wait for itself.
    WouldDeadlock,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "the task did not complete within the timeout",
            Self::UnknownTicket => "the ticket names no task in flight (never issued, or already delivered)",
            Self::NotWaitable => {
                "the task was not submitted as waitable: its completion is delivered by poll or the callback"
            }
            Self::AlreadyWaiting => "another thread is already waiting on this ticket",
            Self::WouldDeadlock => WOULD_DEADLOCK,
        })
    }
}

impl std::error::Error for WaitError {}

const WOULD_DEADLOCK: &str = "this call would block one of the engine's own threads (it was made from a handler or a \
     completion callback), where it could wait for itself; only non-blocking calls are allowed there";

/// A call that would block was made on one of the engine's own threads (from a handler or a
/// completion callback), where it could wait for itself forever. Non-blocking calls
/// (`try_submit`, `submit_batch`, `poll`, `stats`, ...) are allowed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WouldDeadlock;

impl fmt::Display for WouldDeadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(WOULD_DEADLOCK)
    }
}

impl std::error::Error for WouldDeadlock {}
