//! What a caller submits and what comes back: [`Task`], [`Ticket`], [`Completion`].

use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The most domains a topology may have (a task's domains are a 64-bit set).
pub const MAX_DOMAINS: usize = 64;
/// The most agents a domain may have (a sub-task's tried agents are a 64-bit set).
pub const MAX_AGENTS_PER_DOMAIN: usize = 64;
/// Failed attempts recorded in a [`Completion`]; later ones are counted, not recorded.
pub const MAX_RECORDED_FAILURES: usize = 8;
/// Priorities run from 0 (highest) to this (lowest).
pub const LOWEST_PRIORITY: u8 = 3;

/// A domain's index in its topology (the order domains were added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DomainId(pub u16);

/// An agent's index in its topology, counting across domains in the order agents were added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AgentId(pub u16);

/// A set of domains (a 64-bit mask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct DomainSet(pub u64);

impl DomainSet {
    /// The set holding one domain.
    pub fn one(d: DomainId) -> Self {
        Self(1u64 << (d.0 as u32 % 64))
    }
    /// The set of the first `n` domains.
    pub fn first(n: usize) -> Self {
        Self(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
    }
    /// Adds a domain.
    pub fn with(self, d: DomainId) -> Self {
        Self(self.0 | Self::one(d).0)
    }
    /// How many domains.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }
    /// Whether it holds none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The domains, lowest index first.
    pub fn iter(self) -> impl Iterator<Item = DomainId> {
        let mut m = self.0;
        std::iter::from_fn(move || {
            (m != 0).then(|| {
                let d = m.trailing_zeros();
                m &= m - 1;
                DomainId(d as u16)
            })
        })
    }
}

impl FromIterator<DomainId> for DomainSet {
    fn from_iter<I: IntoIterator<Item = DomainId>>(it: I) -> Self {
        it.into_iter().fold(Self::default(), Self::with)
    }
}

/// A unit of work. Borrowed while it is submitted: the engine copies `data`.
#[derive(Clone, Copy, Debug)]
pub struct Task<'a> {
    /// The caller's correlation id; handlers and the failure oracle see it.
    pub id: u64,
    /// The domains it needs: the meta stage makes one sub-task per domain and joins them; the
    /// task succeeds only if every sub-task does.
    pub domains: DomainSet,
    /// 0 (highest) to 3 (lowest): decides admission order under throttling and who is shed
    /// first under overload and in degraded mode.
    pub priority: u8,
    /// An opaque value handlers see.
    pub payload: u64,
    /// Opaque bytes handlers see (copied at submission).
    pub data: &'a [u8],
    /// A deadline relative to submission; the meta level's timeout applies when it is shorter.
    pub deadline: Option<Duration>,
    /// Delivered to [`Engine::wait`](crate::Engine::wait) on its ticket instead of to
    /// `poll` or the completion callback.
    pub waitable: bool,
    /// Its key for the keyed rate limits (a tenant, a client; [`key_of`](crate::policy::key_of)
    /// hashes a name): 0 for none.
    pub key: u64,
    /// Named strings a classifier reads (a path, an operation, a tenant): at most
    /// [`MAX_ATTRS`](crate::classify::MAX_ATTRS), copied at submission.
    pub attrs: &'a [(&'a str, &'a str)],
}

impl<'a> Task<'a> {
    /// A task for one domain, priority 0, no payload, no deadline, delivered to `poll`.
    pub fn new(id: u64, domain: DomainId) -> Self {
        Self::fan_out(id, DomainSet::one(domain))
    }
    /// A task that needs every domain in `domains`.
    pub fn fan_out(id: u64, domains: DomainSet) -> Self {
        Self { id, domains, priority: 0, payload: 0, data: &[], deadline: None, waitable: false, key: 0, attrs: &[] }
    }
    /// A task that names no domain: the engine's classifier decides its domains and complexity
    /// from its attributes and bytes (see [`classify`](crate::classify)).
    pub fn classified(id: u64) -> Self {
        Self::fan_out(id, DomainSet::default())
    }
    /// Sets the attributes a classifier reads.
    pub fn attrs(mut self, attrs: &'a [(&'a str, &'a str)]) -> Self {
        self.attrs = attrs;
        self
    }
    /// Sets the key for the keyed rate limits (0: none).
    pub fn key(mut self, key: u64) -> Self {
        self.key = key;
        self
    }
    /// Sets the priority (0 highest .. 3 lowest).
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    /// Sets the payload value.
    pub fn payload(mut self, v: u64) -> Self {
        self.payload = v;
        self
    }
    /// Sets the payload bytes.
    pub fn data(mut self, data: &'a [u8]) -> Self {
        self.data = data;
        self
    }
    /// Sets a deadline relative to submission.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }
    /// Makes the task deliverable through `wait` on its ticket (and not through `poll`).
    pub fn waitable(mut self) -> Self {
        self.waitable = true;
        self
    }
}

/// The handle of a submitted task: its slot and the slot's generation, so a ticket from an
/// earlier use of the same slot is recognised as stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[repr(transparent)]
pub struct Ticket(pub u64);

impl Ticket {
    pub(crate) fn new(slot: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(slot))
    }
    /// The task slot it names, below [`Stats::slots`](crate::stats::Stats::slots): a slot holds one
    /// task at a time, so a caller may keep what it knows of its tasks in flight in an array
    /// indexed by slot (a ticket's whole value tells an earlier task of the slot apart).
    pub fn slot(self) -> u32 {
        self.0 as u32
    }
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// How a task ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Status {
    /// Every sub-task succeeded.
    #[default]
    Ok = 0,
    /// A sub-task failed: every attempt failed, or a fault took out its domain or the meta level.
    Failed = 1,
    /// Its deadline, or a level's timeout, passed first.
    TimedOut = 2,
    /// The engine refused it: a breaker was open, it was shed or throttled, or the engine was
    /// shutting down.
    Rejected = 3,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::TimedOut => "timed out",
            Self::Rejected => "rejected",
        })
    }
}

/// Why a task did not succeed (or `None`). Each reason belongs to one [`Status`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Reason {
    /// It succeeded.
    #[default]
    None = 0,
    /// Failed: every attempt in a domain failed (see [`Completion::failures`]).
    AgentsExhausted = 1,
    /// Failed: a correlated fault took out a domain's sub-task whatever its agents did.
    DomainFault = 2,
    /// Failed: a fault at the meta level (admission or decomposition).
    MetaFault = 3,
    /// Failed: no agent of a domain could take the sub-task (all out of rotation or forced open).
    NoAgent = 4,
    /// Rejected: a domain's breaker was open and it shed the sub-task.
    DomainShed = 5,
    /// Rejected: the meta breaker was open (degraded mode) and the task's priority is below the
    /// essential ones.
    Degraded = 6,
    /// Rejected: the concurrency throttle was saturated and its queue full.
    Throttled = 7,
    /// Rejected: the rate limiter refused it.
    RateLimited = 8,
    /// Rejected: the engine shut down before the task could run.
    ShuttingDown = 9,
    /// Timed out: the task's deadline (or the meta timeout) passed.
    Deadline = 10,
    /// Timed out: a sub-task exceeded its domain's timeout across its attempts.
    DomainTimeout = 11,
    /// Failed: an attempt failed and the domain's retry budget allowed no other.
    BudgetExhausted = 12,
    /// Rejected: the domain was overloaded (its sub-tasks had waited for an agent longer than
    /// its target queue time for a whole interval, or its wait queue was full) and shed the
    /// sub-task (see [`Shedding`](crate::policy::Shedding)).
    DomainOverloaded = 13,
    /// Rejected: the task named no domain and could not be classified: the engine has no
    /// classifier, or it failed, panicked, or named no domain (or an unknown one, or a priority
    /// out of range); see [`ClassifyStats`](crate::classify::ClassifyStats).
    Unclassified = 14,
}

impl Reason {
    /// The status this reason belongs to.
    pub fn status(self) -> Status {
        match self {
            Self::None => Status::Ok,
            Self::AgentsExhausted | Self::DomainFault | Self::MetaFault | Self::NoAgent | Self::BudgetExhausted => {
                Status::Failed
            }
            Self::DomainShed
            | Self::Degraded
            | Self::Throttled
            | Self::RateLimited
            | Self::ShuttingDown
            | Self::DomainOverloaded
            | Self::Unclassified => Status::Rejected,
            Self::Deadline | Self::DomainTimeout => Status::TimedOut,
        }
    }

    /// How many reasons there are (their codes are `0..COUNT`).
    pub const COUNT: usize = 15;

    /// Every reason, in code order.
    pub const ALL: [Reason; Self::COUNT] = [
        Self::None,
        Self::AgentsExhausted,
        Self::DomainFault,
        Self::MetaFault,
        Self::NoAgent,
        Self::DomainShed,
        Self::Degraded,
        Self::Throttled,
        Self::RateLimited,
        Self::ShuttingDown,
        Self::Deadline,
        Self::DomainTimeout,
        Self::BudgetExhausted,
        Self::DomainOverloaded,
        Self::Unclassified,
    ];

    /// A short description.
    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "succeeded",
            Self::AgentsExhausted => "every attempt failed",
            Self::DomainFault => "domain fault",
            Self::MetaFault => "meta fault",
            Self::NoAgent => "no agent available",
            Self::DomainShed => "shed by an open domain breaker",
            Self::Degraded => "refused in degraded mode (meta breaker open)",
            Self::Throttled => "throttled",
            Self::RateLimited => "rate limited",
            Self::ShuttingDown => "engine shutting down",
            Self::Deadline => "deadline passed",
            Self::DomainTimeout => "domain timeout",
            Self::BudgetExhausted => "retry budget exhausted",
            Self::DomainOverloaded => "shed by an overloaded domain",
            Self::Unclassified => "could not be classified",
        }
    }
}

/// How one attempt at an agent failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FailureKind {
    /// The handler returned an error code.
    #[default]
    Error = 0,
    /// The handler panicked (or a C or Python handler raised).
    Panicked = 1,
    /// The handler returned, but later than the agent timeout.
    Slow = 2,
    /// The attempt (deferred, or at an isolated agent) was not answered within the agent
    /// timeout, or the task's deadline or domain timeout came first; it was abandoned.
    Abandoned = 3,
    /// The agent's queue was full.
    Overloaded = 4,
    /// The agent's domain was marked down (injected correlated fault).
    Down = 5,
    /// The handler's reply broke its contract (a C handler returned an unknown code, kept in
    /// `code`; or a handler said "pending" without deferring the attempt).
    InvalidReply = 6,
    /// A deferred attempt's handle was dropped without being completed.
    Dropped = 7,
}

/// The error code of an attempt at an agent whose domain is marked down.
pub const DOWN_CODE: i32 = -503;

/// One failed attempt: where, how, and the handler's error code (0 when it has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AttemptFailure {
    /// The domain of the sub-task.
    pub domain: DomainId,
    /// The agent that failed.
    pub agent: AgentId,
    /// How.
    pub kind: FailureKind,
    /// The handler's error code, for [`FailureKind::Error`].
    pub code: i32,
    /// The attempt's number within its sub-task (from 0), as the handler saw it.
    pub attempt: u32,
}

/// The one outcome of an accepted task.
///
/// `repr(C)` with the fields every task writes first, in 64 bytes: the engine keeps one in each
/// task slot, in the cache line after the slot's state word (see `slab::Slot`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Completion {
    /// The ticket `submit` returned.
    pub ticket: Ticket,
    /// The task's correlation id.
    pub id: u64,
    /// The sum (wrapping) of the values the successful agents returned, one per sub-task.
    pub value: u64,
    /// Submission to completion, in nanoseconds, on the engine's clock.
    pub latency_ns: u64,
    /// The domains whose sub-tasks succeeded: those the task asked for, except that a sub-task
    /// rerouted after failing at its domain answered from an alternate (see
    /// [`TopologyBuilder::alternates`](crate::TopologyBuilder::alternates)).
    pub answered: DomainSet,
    /// The domains the task needed: those it named, or those its classifier chose (empty for a
    /// task rejected before it was classified).
    pub domains: DomainSet,
    /// Agent attempts made, over all sub-tasks.
    pub attempts: u32,
    /// Times a sub-task was handed to an alternate domain (0 for a task that never was).
    pub reroutes: u32,
    /// Failed attempts in all, recorded or not.
    pub failures_total: u32,
    /// How it ended.
    pub status: Status,
    /// Why, when it did not succeed.
    pub reason: Reason,
    /// The task's priority.
    pub priority: u8,
    failures_len: u8,
    /// Its complexity score, from its classifier (0 for a task that named its domains).
    pub complexity: Complexity,
    /// The reply bytes of the sub-tasks whose successful attempt returned some, in the order
    /// they succeeded. Empty (and unallocated) when none did.
    bodies: Vec<(DomainId, Vec<u8>)>,
    failures: [AttemptFailure; MAX_RECORDED_FAILURES],
}

/// What `Completion::copy_hot` and `reset` rely on, checked when the crate compiles.
const _HOT_IS_PLAIN: () = {
    use std::mem::{offset_of, size_of};
    // No padding: the fields' sizes add up to the span, the last one ending it.
    assert!(size_of::<Ticket>() + 5 * size_of::<u64>() + 3 * size_of::<u32>() + 4 == Completion::HOT_BYTES);
    assert!(offset_of!(Completion, failures_len) + 1 == Completion::HOT_BYTES);
    assert!(size_of::<Ticket>() == 8 && size_of::<DomainSet>() == 8);
    assert!(size_of::<Status>() == 1 && size_of::<Reason>() == 1);
    // All zeros is the default of each.
    assert!(Status::Ok as u8 == 0 && Reason::None as u8 == 0);
};

impl Completion {
    /// The bytes at the start that every task writes (see the type's documentation): the
    /// scalars from `ticket` to `failures_len`, plain data without padding, for which all
    /// zeros is the cleared value (`_HOT_IS_PLAIN` checks both).
    pub(crate) const HOT_BYTES: usize = std::mem::offset_of!(Completion, complexity);

    /// Copies the first `HOT_BYTES` (the per-task scalars) to `dst` as one block: a few vector
    /// moves where a copy field by field took 30 instructions.
    #[inline(always)]
    fn copy_hot(&self, dst: &mut Self) {
        // SAFETY: both are valid `Completion`s (`repr(C)`); their first `HOT_BYTES` bytes are
        // the same plain-data fields in both (integers, `Ticket`, `DomainSet`, and the fieldless
        // `Status` and `Reason`, whose values in `self` are valid), with no padding
        // (`_HOT_IS_PLAIN`): the copy writes valid values to the same fields of `dst`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::from_ref(self).cast::<u8>(),
                std::ptr::from_mut(dst).cast::<u8>(),
                Self::HOT_BYTES,
            );
        }
    }

    /// The first [`MAX_RECORDED_FAILURES`] failed attempts, in the order they happened.
    pub fn failures(&self) -> &[AttemptFailure] {
        &self.failures[..usize::from(self.failures_len)]
    }

    /// Whether the task succeeded.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The reply bytes of the first sub-task that returned some: for a task of one domain, its
    /// reply's body.
    pub fn body(&self) -> Option<&[u8]> {
        self.bodies.first().map(|(_, b)| b.as_slice())
    }

    /// The reply bytes of domain `d`'s sub-task, if its successful attempt returned some (`d`
    /// as the task asked for it: the reply of an alternate that answered for `d` is here too;
    /// [`answered`](Self::answered) says which domain it was).
    pub fn body_of(&self, d: DomainId) -> Option<&[u8]> {
        self.bodies.iter().find(|(x, _)| *x == d).map(|(_, b)| b.as_slice())
    }

    /// Every sub-task's reply bytes, by domain.
    pub fn bodies(&self) -> &[(DomainId, Vec<u8>)] {
        &self.bodies
    }

    /// Takes the reply bytes out of the completion (no copy).
    pub fn take_bodies(&mut self) -> Vec<(DomainId, Vec<u8>)> {
        std::mem::take(&mut self.bodies)
    }

    pub(crate) fn push_body(&mut self, d: DomainId, body: Vec<u8>) {
        self.bodies.push((d, body));
    }

    /// Moves the outcome into `dst`: the scalars and the recorded failures (not the rest of the
    /// array) are copied, and the reply bytes' storage is swapped with `dst`'s, cleared, so that
    /// this one is left empty (keeping `dst`'s capacity for the next task).
    #[inline]
    pub(crate) fn move_into(&mut self, dst: &mut Self) {
        if dst.failures_len > self.failures_len {
            dst.clear_failures(self.failures_len, dst.failures_len);
        }
        // The scalars, `failures_len` and `failures_total` among them.
        self.copy_hot(dst);
        dst.complexity = self.complexity;
        let n = usize::from(self.failures_len);
        if n > 0 {
            // Most tasks record none: no call to copy nothing.
            dst.failures[..n].copy_from_slice(&self.failures[..n]);
        }
        dst.bodies.clear();
        if !self.bodies.is_empty() {
            // Not written when empty: this record may be a task slot's (see `reset`).
            std::mem::swap(&mut dst.bodies, &mut self.bodies);
        }
    }

    /// Clears recorded failures `from..to`, left from an earlier task in a caller's record that
    /// `move_into` reuses, so that no record a caller holds keeps them (its `==` and `{:?}` read
    /// the whole array). Rare, and out of line so that `move_into` stays small enough to inline
    /// into `poll` (not inlined, it cost 20 instructions a completion).
    #[cold]
    #[inline(never)]
    fn clear_failures(&mut self, from: u8, to: u8) {
        self.failures[usize::from(from)..usize::from(to)].fill(AttemptFailure::default());
    }

    /// Clears it for a new task. Only the counts and scalars: recorded failures past
    /// `failures_len` are never read.
    pub(crate) fn reset(&mut self) {
        // SAFETY: the first `HOT_BYTES` bytes are plain-data fields without padding, and all
        // zeros is a valid value of each, its default (`_HOT_IS_PLAIN`): `Ticket(0)`, 0,
        // `DomainSet(0)`, `Status::Ok`, `Reason::None`.
        unsafe { std::ptr::write_bytes(std::ptr::from_mut(self).cast::<u8>(), 0, Self::HOT_BYTES) };
        // Past the first `HOT_BYTES`, written only when set: a task slot's record (see
        // `slab::Slot`) then leaves that line shared between the worker and the submitter.
        if self.complexity != Complexity::default() {
            self.complexity = Complexity::default();
        }
        if !self.bodies.is_empty() {
            self.bodies.clear();
        }
    }

    pub(crate) fn record_failure(&mut self, f: AttemptFailure) {
        if usize::from(self.failures_len) < MAX_RECORDED_FAILURES {
            self.failures[usize::from(self.failures_len)] = f;
            self.failures_len += 1;
        }
        self.failures_total += 1;
    }
}

/// A task's complexity score, kept in ten-thousandths so that a [`Completion`](crate::Completion)
/// stays `Eq`: 0 for a task that named its own domains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "f32")]
pub struct Complexity(u16);

impl Complexity {
    /// The scale: `Complexity::from_units(SCALE)` is 1.0.
    pub const SCALE: u16 = 10_000;

    /// A score from a number, clamped to [0, 1] (NaN is 0).
    pub fn new(v: f32) -> Self {
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        Self((v * f32::from(Self::SCALE)).round() as u16)
    }

    /// A score in ten-thousandths (clamped to `SCALE`).
    pub fn from_units(units: u16) -> Self {
        Self(units.min(Self::SCALE))
    }

    /// The score, 0.0 to 1.0.
    pub fn get(self) -> f32 {
        f32::from(self.0) / f32::from(Self::SCALE)
    }

    /// The score in ten-thousandths.
    pub fn units(self) -> u16 {
        self.0
    }
}

impl From<Complexity> for f32 {
    fn from(c: Complexity) -> f32 {
        c.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A completion with every field set, none to its default.
    fn full() -> Completion {
        let mut c = Completion {
            ticket: Ticket::new(7, 9),
            id: 11,
            value: 13,
            latency_ns: 17,
            answered: DomainSet(0b101),
            domains: DomainSet(0b111),
            attempts: 19,
            reroutes: 23,
            status: Status::Failed,
            reason: Reason::AgentsExhausted,
            priority: 2,
            complexity: Complexity::from_units(29),
            ..Completion::default()
        };
        for k in 0..3 {
            c.record_failure(AttemptFailure {
                domain: DomainId(k),
                agent: AgentId(k + 1),
                kind: FailureKind::Panicked,
                code: -1,
                attempt: u32::from(k),
            });
        }
        c.push_body(DomainId(1), vec![1, 2, 3]);
        c
    }

    #[test]
    fn move_into_copies_every_field_and_leaves_no_bodies_behind() {
        let (mut src, want) = (full(), full());
        let mut dst = Completion::default();
        dst.push_body(DomainId(0), vec![9]); // a caller's record, reused
        src.move_into(&mut dst);
        assert_eq!(dst, want);
        assert!(src.bodies().is_empty());
    }

    #[test]
    fn a_reused_record_keeps_no_failures_of_an_earlier_task() {
        let mut dst = Completion::default();
        full().move_into(&mut dst); // three failures recorded
        let mut one = Completion { id: 5, ..Completion::default() };
        one.record_failure(AttemptFailure { kind: FailureKind::Slow, ..AttemptFailure::default() });
        let want = one.clone();
        one.move_into(&mut dst);
        assert_eq!(dst, want);
        assert_eq!(format!("{dst:?}"), format!("{want:?}"));
    }

    #[test]
    fn reset_clears_every_field_read_for_the_next_task() {
        let mut c = full();
        c.reset();
        assert!(c.failures().is_empty() && c.bodies().is_empty());
        // The recorded failures past `failures_len` are never read, and not cleared.
        let cleared = Completion { failures: c.failures, ..Completion::default() };
        assert_eq!(c, cleared);
    }
}
