//! The structs and constants the C ABI exchanges, and their conversions.

use metafed_rs::{Reason, Status};
use std::ffi::{c_char, c_void};

/// Outcome of a task (`metafed_completion.outcome`): every sub-task succeeded.
pub const METAFED_OUTCOME_OK: i32 = 0;
/// Outcome: a sub-task failed (every attempt failed, or a fault).
pub const METAFED_OUTCOME_FAILED: i32 = 1;
/// Outcome: its deadline or a level's timeout passed first.
pub const METAFED_OUTCOME_TIMED_OUT: i32 = 2;
/// Outcome: the engine refused it (breaker open, shed, throttled, rate limited, shutting down).
pub const METAFED_OUTCOME_REJECTED: i32 = 3;
/// How many outcomes there are (the size of `metafed_stats.outcomes` and of the counts of
/// `metafed_engine_run_batch`).
pub const METAFED_OUTCOME_COUNT: usize = 4;

/// Reason (`metafed_completion.reason`): none, it succeeded.
pub const METAFED_REASON_NONE: i32 = 0;
/// Reason: every attempt in a domain failed.
pub const METAFED_REASON_AGENTS_EXHAUSTED: i32 = 1;
/// Reason: an injected domain-level fault.
pub const METAFED_REASON_DOMAIN_FAULT: i32 = 2;
/// Reason: an injected meta-level fault.
pub const METAFED_REASON_META_FAULT: i32 = 3;
/// Reason: no agent of a domain could take the sub-task.
pub const METAFED_REASON_NO_AGENT: i32 = 4;
/// Reason: an open domain breaker shed the sub-task.
pub const METAFED_REASON_DOMAIN_SHED: i32 = 5;
/// Reason: degraded mode (meta breaker open) and the priority is not essential.
pub const METAFED_REASON_DEGRADED: i32 = 6;
/// Reason: the concurrency throttle's queue was full.
pub const METAFED_REASON_THROTTLED: i32 = 7;
/// Reason: the rate limiter refused it.
pub const METAFED_REASON_RATE_LIMITED: i32 = 8;
/// Reason: the engine shut down first.
pub const METAFED_REASON_SHUTTING_DOWN: i32 = 9;
/// Reason: the task's deadline passed.
pub const METAFED_REASON_DEADLINE: i32 = 10;
/// Reason: a sub-task exceeded its domain's timeout.
pub const METAFED_REASON_DOMAIN_TIMEOUT: i32 = 11;
/// Reason: an attempt failed and the domain's retry budget allowed no other.
pub const METAFED_REASON_BUDGET_EXHAUSTED: i32 = 12;
/// Reason: the domain was overloaded (its queue time above its target for an interval, or its
/// wait queue full) and shed the sub-task (ABI 1.3; counted in `metafed_stats.domain_overloaded`).
/// Reported only once the process has made an engine with a `metafed_engine_config` of ABI 1.3's
/// size; before, as `METAFED_REASON_DOMAIN_SHED` (an earlier program does not know 13).
pub const METAFED_REASON_DOMAIN_OVERLOADED: i32 = 13;
/// The reasons of ABI 1.0, the size of `metafed_stats.reasons` (kept: later reasons have fields
/// of their own, appended).
pub const METAFED_REASON_COUNT: usize = 13;

/// ABI 1.5: rejected: the task named no domain (`domains` 0) and could not be classified: the
/// engine has no classifier, or it refused, crashed, or named no domain (or an unknown one, or a
/// priority out of range). Counted in `metafed_stats.unclassified` (not in `reasons`). A
/// program that has used no ABI 1.5 function sees it as `METAFED_REASON_DEGRADED` (refused at
/// the meta level).
pub const METAFED_REASON_UNCLASSIFIED: i32 = 14;

/// How an attempt failed (`metafed_failure.kind`): the handler returned an error code.
pub const METAFED_FAILURE_ERROR: i32 = 0;
/// The handler panicked, or a C handler returned `METAFED_HANDLER_RAISED`.
pub const METAFED_FAILURE_PANICKED: i32 = 1;
/// The handler answered after the agent timeout.
pub const METAFED_FAILURE_SLOW: i32 = 2;
/// The attempt (deferred, or at an isolated agent) was not answered in time; it was abandoned.
pub const METAFED_FAILURE_ABANDONED: i32 = 3;
/// The agent's queue was full.
pub const METAFED_FAILURE_OVERLOADED: i32 = 4;
/// The agent's domain was marked down.
pub const METAFED_FAILURE_DOWN: i32 = 5;
/// A C handler returned a code other than the `METAFED_HANDLER_*` ones (the code is kept), or
/// returned `METAFED_HANDLER_PENDING` without deferring the attempt.
pub const METAFED_FAILURE_INVALID_REPLY: i32 = 6;
/// A deferred attempt was dropped without being completed (a Rust handle dropped; from C, an
/// attempt completed with `METAFED_HANDLER_PENDING`).
pub const METAFED_FAILURE_DROPPED: i32 = 7;

/// What a handler returns: success; `response->value` is the result.
pub const METAFED_HANDLER_OK: i32 = 0;
/// The attempt failed; `response->code` is the error code.
pub const METAFED_HANDLER_ERROR: i32 = 1;
/// The handler raised (a C++ exception caught, a Python exception): a failed attempt, counted
/// as a panic.
pub const METAFED_HANDLER_RAISED: i32 = 2;
/// The handler deferred the attempt with `metafed_request_defer` and will complete it later,
/// from any thread, with `metafed_attempt_complete`.
pub const METAFED_HANDLER_PENDING: i32 = 3;
/// For completing a deferred attempt only (`metafed_attempt_complete`,
/// `metafed_attempts_complete`): the attempt ran out of the time it was given (a queued
/// attempt's `timeout_ns`); a failure of kind `METAFED_FAILURE_ABANDONED`. Since ABI 1.2. (4 is
/// left unassigned: a handler's unknown code is recorded as `METAFED_FAILURE_INVALID_REPLY`.)
pub const METAFED_HANDLER_TIMED_OUT: i32 = 5;

/// `metafed_task.flags`: deliver the completion to `metafed_engine_wait` on its ticket, not to
/// `metafed_engine_poll` or the completion callback.
pub const METAFED_TASK_WAITABLE: u32 = 1;
/// Flag for agents: run the agent on a thread of its own (a hang stalls only it); see
/// `metafed_topology_set_agent_threads` for a pool of several.
pub const METAFED_AGENT_ISOLATED: u32 = 1;
/// Flag for simulated agents (`metafed_sim_agent.flags`): wait the latency the way an I/O agent
/// does, holding no thread (each call is a deferred attempt completed by the engine's timer).
pub const METAFED_SIM_IO: u32 = 2;

/// The longest duration any parameter may have, in nanoseconds (30 days): a longer timeout,
/// open time, window or deadline is refused with `METAFED_E_INVALID`.
pub const METAFED_MAX_DURATION_NS: u64 = 2_592_000_000_000_000;
/// A wait without end, where a function takes a timeout (`timeout_ns`): `UINT64_MAX`.
pub const METAFED_FOREVER: u64 = u64::MAX;
/// The most bytes in a domain or agent name.
pub const METAFED_MAX_NAME_LEN: usize = 256;
/// The most domains a topology may have (a task's domains are a 64-bit set).
pub const METAFED_MAX_DOMAINS: usize = 64;
/// The most agents a domain may have.
pub const METAFED_MAX_AGENTS_PER_DOMAIN: usize = 64;
/// The largest agent weight (`metafed_topology_set_agent_weight`, `metafed_engine_set_agent_weight`).
pub const METAFED_MAX_WEIGHT: u32 = 100;

/// Breaker levels, for `metafed_topology_set_breaker_config` and `metafed_engine_set_breaker_mode`.
pub const METAFED_LEVEL_META: i32 = 0;
/// See `METAFED_LEVEL_META`.
pub const METAFED_LEVEL_DOMAIN: i32 = 1;
/// See `METAFED_LEVEL_META`.
pub const METAFED_LEVEL_AGENT: i32 = 2;

/// Breaker mode: the state machine decides.
pub const METAFED_BREAKER_NORMAL: i32 = 0;
/// Breaker mode: every call passes, nothing trips.
pub const METAFED_BREAKER_DISABLED: i32 = 1;
/// Breaker mode: every call is refused.
pub const METAFED_BREAKER_FORCED_OPEN: i32 = 2;

/// Breaker state (in stats): closed.
pub const METAFED_STATE_CLOSED: i32 = 0;
/// Breaker state: open.
pub const METAFED_STATE_OPEN: i32 = 1;
/// Breaker state: half-open.
pub const METAFED_STATE_HALF_OPEN: i32 = 2;

/// Failed attempts a completion records (later ones are counted in `failures_total`).
pub const METAFED_MAX_FAILURES: usize = 8;

/// A task to submit. Set `struct_size`, then `metafed_task_init` fills the defaults.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_task {
    /// `sizeof(metafed_task)`, set by the caller.
    pub struct_size: u32,
    /// `METAFED_TASK_*` flags.
    pub flags: u32,
    /// The caller's correlation id.
    pub id: u64,
    /// The domains it needs, as a bit set (bit `d` = domain id `d`).
    pub domains: u64,
    /// An opaque value handlers see.
    pub payload: u64,
    /// Opaque bytes handlers see (copied at submission; may be NULL when `data_len` is 0).
    pub data: *const u8,
    /// Length of `data`.
    pub data_len: usize,
    /// 0 (highest) to 3 (lowest).
    pub priority: u32,
    /// A deadline relative to submission, in nanoseconds; 0 for none (the meta level's timeout
    /// still applies). At most `METAFED_MAX_DURATION_NS`.
    pub deadline_ns: u64,
    /// ABI 1.3: its key for the keyed rate limits (a tenant, a client; `metafed_key_of` hashes a
    /// name), 0 for none.
    pub key: u64,
    /// ABI 1.5: named strings the engine's classifier reads (a path, an operation, a tenant),
    /// `attrs_len` of them (at most `METAFED_MAX_ATTRS`; may be NULL when `attrs_len` is 0),
    /// copied at submission. A task with `domains` 0 is classified by them.
    pub attrs: *const metafed_attr,
    /// ABI 1.5: how many `attrs`.
    pub attrs_len: usize,
    /// ABI 1.7: the caller's completion queue (`metafed_engine_completion_queue_new`, of the
    /// same engine), or NULL. A task given one is delivered there and nowhere else: not to
    /// `metafed_engine_poll`, the completion callback or `metafed_engine_wait` (so it cannot be
    /// `METAFED_TASK_WAITABLE`).
    pub completion_queue: *const metafed_completion_queue,
}

/// ABI 1.7: a queue of completions for one consumer. Opaque; a handle, not a pointer to memory.
/// Made by `metafed_engine_completion_queue_new`; any thread may take from it, one taker at a
/// time.
pub struct metafed_completion_queue {
    _private: [u8; 0],
}

/// ABI 1.5: a task attribute. On submission a length of 0 with a non-NULL pointer means a
/// NUL-terminated string (so `{"path", 0, "/api/x", 0}` works); names are 1 to
/// `METAFED_MAX_ATTR_NAME` bytes, values at most `METAFED_MAX_ATTR_VALUE`, both UTF-8. In a
/// classifier's input the lengths are always given and the strings are not NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_attr {
    /// The name.
    pub name: *const c_char,
    /// Its length in bytes (0: NUL-terminated, on submission).
    pub name_len: usize,
    /// The value (NULL: empty).
    pub value: *const c_char,
    /// Its length in bytes (0: NUL-terminated, or empty when `value` is NULL).
    pub value_len: usize,
}

/// ABI 1.5: at most this many attributes per task.
pub const METAFED_MAX_ATTRS: usize = 16;
/// ABI 1.5: an attribute's name is at most this many bytes.
pub const METAFED_MAX_ATTR_NAME: usize = 64;
/// ABI 1.5: an attribute's value is at most this many bytes.
pub const METAFED_MAX_ATTR_VALUE: usize = 4096;

/// One failed attempt of a task. Embedded in `metafed_completion` (which carries the size), so
/// it has no `struct_size` of its own and never changes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_failure {
    /// The sub-task's domain id.
    pub domain: u16,
    /// The agent id.
    pub agent: u16,
    /// `METAFED_FAILURE_*`.
    pub kind: i32,
    /// The handler's error code (for `METAFED_FAILURE_ERROR` and `_INVALID_REPLY`).
    pub code: i32,
    /// The attempt's number within its sub-task (from 0), as `metafed_request.attempt` said.
    pub attempt: u32,
}

/// The one completion of an accepted task.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_completion {
    /// `sizeof(metafed_completion)`, set by the caller: in the first element of an output array
    /// (it is the array's stride); the library writes it in every element it fills. A
    /// completion the library hands a callback carries the library's size (ABI 1.0's when the
    /// engine was made with a `metafed_engine_config` of a size before ABI 1.3): read a field
    /// appended later only when `struct_size` reaches past it.
    pub struct_size: u32,
    /// `METAFED_OUTCOME_*`.
    pub outcome: i32,
    /// `METAFED_REASON_*`.
    pub reason: i32,
    /// The task's priority.
    pub priority: u32,
    /// The ticket its submission returned.
    pub ticket: u64,
    /// The task's correlation id.
    pub id: u64,
    /// The sum (wrapping) of the values the successful agents returned, one per sub-task.
    pub value: u64,
    /// Submission to completion, in nanoseconds.
    pub latency_ns: u64,
    /// Agent attempts made.
    pub attempts: u32,
    /// Failed attempts recorded in `failures`.
    pub failures_len: u32,
    /// Failed attempts in all.
    pub failures_total: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// The first failed attempts.
    pub failures: [metafed_failure; METAFED_MAX_FAILURES],
    /// How many entries `bodies` has: the sub-tasks whose successful attempt returned bytes.
    pub bodies_len: u32,
    /// Reserved (0).
    pub reserved2: u32,
    /// The reply bytes, one entry per sub-task that returned some (NULL when `bodies_len` is 0).
    /// Owned by the library: a completion returned by `metafed_engine_poll` or
    /// `metafed_engine_wait` with `bodies_len > 0` must be released with
    /// `metafed_completion_release` once read (releasing any completion is allowed). A
    /// completion passed to the `on_complete` callback is valid during the call only; the
    /// library releases it.
    pub bodies: *const metafed_body,
    /// ABI 1.4: the domains whose sub-tasks succeeded (bit `d` for domain id `d`): those the
    /// task asked for, except that a sub-task rerouted after failing at its domain answered from
    /// an alternate (`metafed_topology_set_domain_alternates`).
    pub answered: u64,
    /// ABI 1.4: times a sub-task was handed to an alternate domain.
    pub reroutes: u32,
    /// Reserved (0).
    pub reserved3: u32,
    /// ABI 1.5: the domains the task needed: those it named, or those its classifier chose (0
    /// for a task rejected before it was classified).
    pub domains: u64,
    /// ABI 1.5: its complexity score from its classifier, 0 to 1 (0 for a task that named its
    /// domains).
    pub complexity: f64,
}

/// One sub-task's reply bytes, in an array the library allocates (`metafed_completion.bodies`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_body {
    /// The library's `sizeof(metafed_body)`: the array's stride.
    pub struct_size: u32,
    /// The sub-task's domain id.
    pub domain: u16,
    /// The bytes (owned by the completion; see `metafed_completion.bodies`).
    pub data: *const u8,
    /// How many.
    pub len: usize,
}

/// A deferred attempt: what `metafed_request_defer` hands a handler, to be completed once,
/// later, from any thread, with `metafed_attempt_complete`. A plain value (copy it freely); it
/// names the attempt by its engine, slot and generation, so completing it twice, or after the
/// engine is freed, is refused with an error instead of touching anything. A handle, not a
/// struct the caller fills: it has no `struct_size` and never changes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_attempt {
    /// The engine's handle value.
    pub engine: u64,
    /// The attempt's worker, slot and generation.
    pub id: u64,
}

/// An attempt taken from a `metafed_attempt_queue` (`metafed_attempt_queue_take` fills an array
/// of them; the caller sets the first one's `struct_size`). Since ABI 1.2.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_queued_attempt {
    /// `sizeof(metafed_queued_attempt)`.
    pub struct_size: u32,
    /// The sub-task's domain.
    pub domain: u16,
    /// The agent.
    pub agent: u16,
    /// The attempt, to complete once (`metafed_attempt_complete` or `metafed_attempts_complete`).
    pub attempt: metafed_attempt,
    /// The tag the agent was added with (`metafed_topology_add_queue_agent`).
    pub tag: u64,
    /// The task's ticket.
    pub ticket: u64,
    /// The task's id.
    pub task_id: u64,
    /// The task's payload.
    pub payload: u64,
    /// The task's bytes (NULL when `data_len` is 0), kept by the queue until its next take.
    pub data: *const u8,
    /// Length of `data`.
    pub data_len: usize,
    /// How long the attempt waited in the queue.
    pub waited_ns: u64,
    /// How long the taker has to complete it, from the take: the agent timeout, or less when the
    /// task's deadline or the domain timeout comes sooner. Past it, complete it with
    /// `METAFED_HANDLER_TIMED_OUT` (the engine abandons it at the task's deadline or domain
    /// timeout in any case).
    pub timeout_ns: u64,
    /// The attempt's number within its sub-task (0 first), as `metafed_request.attempt`.
    pub attempt_number: u32,
    /// How many domains the task needs.
    pub fanout: u32,
    /// The task's priority.
    pub priority: u32,
}

/// What a `metafed_attempt_queue` has seen (`metafed_attempt_queue_get_stats`). Since ABI 1.2.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_attempt_queue_stats {
    /// `sizeof(metafed_attempt_queue_stats)`.
    pub struct_size: u32,
    /// Attempts it can hold.
    pub capacity: u64,
    /// Attempts waiting now.
    pub waiting: u64,
    /// The most that waited at once.
    pub high_water: u64,
    /// Attempts queued since it was made.
    pub queued: u64,
    /// Attempts taken.
    pub taken: u64,
    /// Attempts the engine abandoned while they waited (never handed out).
    pub expired: u64,
    /// Attempts refused because it was full (failed at once as overloaded).
    pub refused: u64,
}

/// What a handler sees for one attempt. Valid for the duration of the call only: a handler that
/// defers copies what it needs before returning.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_request {
    /// The library's `sizeof(metafed_request)`: read only the fields below it.
    pub struct_size: u32,
    /// The sub-task's domain id.
    pub domain: u16,
    /// The agent id.
    pub agent: u16,
    /// The task's correlation id.
    pub task_id: u64,
    /// The task's payload value.
    pub payload: u64,
    /// The task's payload bytes (NULL when `data_len` is 0).
    pub data: *const u8,
    /// Length of `data`.
    pub data_len: usize,
    /// The attempt within the sub-task, from 0.
    pub attempt: u32,
    /// How many domains the task needs.
    pub fanout: u32,
    /// The task's priority.
    pub priority: u32,
    /// The task's ticket (what its submission returned): unique among tasks in flight.
    pub ticket: u64,
    /// Nanoseconds until the engine abandons this attempt if it is deferred and not completed
    /// (the agent timeout, or the task's deadline or domain timeout when sooner).
    pub time_left_ns: u64,
    /// Library use: identifies the call to `metafed_request_defer`.
    pub internal: *mut c_void,
}

/// What a handler writes back (or what a deferred attempt is completed with). The library hands a
/// handler one with `struct_size` set to its own size; a caller completing an attempt sets it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_response {
    /// `sizeof(metafed_response)`.
    pub struct_size: u32,
    /// The error code, with `METAFED_HANDLER_ERROR` (and, if wanted, `_RAISED`).
    pub code: i32,
    /// The value, with `METAFED_HANDLER_OK`.
    pub value: u64,
    /// Reply bytes, with `METAFED_HANDLER_OK` (may be NULL when `data_len` is 0). The library
    /// copies them before the handler's call (or `metafed_attempt_complete`) returns; the
    /// memory stays the caller's.
    pub data: *const u8,
    /// Length of `data`.
    pub data_len: usize,
}

/// A handler: runs one attempt. Returns `METAFED_HANDLER_OK`, `_ERROR`, `_RAISED`, or
/// `_PENDING` after `metafed_request_defer`. It may be called from several worker threads at
/// once unless its agent is isolated.
pub type metafed_handler_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        request: *const metafed_request,
        response: *mut metafed_response,
    ) -> i32,
>;

/// Releases `user_data` once the library will never call the handler again.
pub type metafed_finalizer_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Receives each completion (on a worker thread) when set in the engine configuration.
pub type metafed_completion_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, completion: *const metafed_completion)>;

/// A simulated agent. Set `struct_size`, then `metafed_sim_agent_init` fills the defaults (an
/// agent that never fails and answers at once). Its latency: none (every latency field 0),
/// `latency_ns` on every call, exponential with mean `exponential_mean_ns`, or the long tail of
/// `latency_ns` with `slow_latency_ns` on a `slow_rate` share of first attempts. Its fault: none,
/// a hang of `hang_ns` on every call, or a panic on a `panic_rate` share of calls.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_sim_agent {
    /// `sizeof(metafed_sim_agent)`, set by the caller.
    pub struct_size: u32,
    /// `METAFED_AGENT_*` and `METAFED_SIM_*` flags.
    pub flags: u32,
    /// Failure probability per attempt (the oracle's p), 0 to 1.
    pub error_rate: f64,
    /// Every call's latency (ns); with `slow_rate`, the common case's. 0: none.
    pub latency_ns: u64,
    /// The mean of an exponentially distributed latency (ns), drawn per call. 0: not exponential.
    pub exponential_mean_ns: u64,
    /// The latency of a slow first attempt (ns), with `slow_rate`.
    pub slow_latency_ns: u64,
    /// The share of tasks whose first attempt takes `slow_latency_ns` (0: none).
    pub slow_rate: f64,
    /// Every call blocks this long (ns), then fails: a hung agent. 0: none.
    pub hang_ns: u64,
    /// The share of calls that panic (0: none).
    pub panic_rate: f64,
    /// Seeds the latency draws.
    pub seed: u64,
}

/// A domain's hedging policy. Set `struct_size`, then `metafed_hedge_config_init` fills the
/// defaults. A hedge goes out after a fixed delay (`delay_ns`) or after a percentile of the
/// domain's recent latency (`percentile`): exactly one of the two is set, the other 0.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_hedge_config {
    /// `sizeof(metafed_hedge_config)`, set by the caller.
    pub struct_size: u32,
    /// Extra attempts per sub-task at most (1 to 3).
    pub max_extra: u32,
    /// A fixed hedge delay (ns); 0 with a percentile.
    pub delay_ns: u64,
    /// Hedge after this percentile (0 < p < 100) of the domain's recent latency; 0 with a
    /// fixed delay.
    pub percentile: f64,
    /// With a percentile: latencies needed before hedging starts.
    pub min_samples: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// With a percentile: the rotating window's period (ns).
    pub period_ns: u64,
}

/// A breaker's settings. Set `struct_size`, then `metafed_breaker_config_init` fills the seed's
/// defaults of a level.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_breaker_config {
    /// `sizeof(metafed_breaker_config)`, set by the caller.
    pub struct_size: u32,
    /// `METAFED_BREAKER_*`.
    pub mode: i32,
    /// A call slower than this counts as a failure (ns, > 0); also the level's time budget.
    pub timeout_ns: u64,
    /// Trip after this many failures in a row (0: off).
    pub consecutive_failures: u32,
    /// The rates are judged on at least this many calls (with a count window, on at least the
    /// smaller of this and `count_window`).
    pub min_calls: u32,
    /// Trip at this failure rate over the window (0: off; else in (0, 1]).
    pub failure_rate: f64,
    /// The time window the rates are judged over (ns), unless `count_window` is set.
    pub window_ns: u64,
    /// The first open time (ns); doubles per failed probe.
    pub open_base_ns: u64,
    /// The cap on the open time (ns).
    pub open_max_ns: u64,
    /// Probes at once while half-open, and the successes that close it (1 to 255).
    pub half_open_probes: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// ABI 1.3: a call slower than this is slow, whatever it returned (ns; 0: none is).
    pub slow_call_duration_ns: u64,
    /// ABI 1.3: trip when slow calls reach this fraction of the window's calls (0: off; else in
    /// (0, 1], with `slow_call_duration_ns` set). A slow probe fails while it is set.
    pub slow_call_rate: f64,
    /// ABI 1.3: when non-zero, the rates are judged over the last this many calls instead of
    /// over `window_ns` (a count window, at most 1,000,000).
    pub count_window: u32,
    /// Reserved (0).
    pub reserved2: u32,
}

/// The engine's settings. Set `struct_size`, then `metafed_engine_config_init` fills the
/// defaults.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_engine_config {
    /// `sizeof(metafed_engine_config)`, set by the caller.
    pub struct_size: u32,
    /// Worker threads; 0 for one per core in the affinity mask.
    pub workers: u32,
    /// Pin workers to cores (0 or 1).
    pub pin: u32,
    /// Tasks in flight at most (task slots).
    pub max_in_flight: u32,
    /// Sub-tasks a worker holds at once.
    pub worker_capacity: u32,
    /// Tasks a worker takes per turn.
    pub batch: u32,
    /// Idle spins before yielding.
    pub idle_spins: u32,
    /// Ring capacity between a worker and an isolated agent.
    pub isolated_queue: u32,
    /// Yielding before parking, once the spins are done (ns, counted in whole microseconds; at
    /// most 4,294 s).
    pub idle_yield_ns: u64,
    /// Drain deadline when an engine is freed without `metafed_engine_shutdown` (ns).
    pub drain_timeout_ns: u64,
    /// Try an open agent when every remaining one is open (0 or 1).
    pub panic_routing: u32,
    /// System-wide concurrency throttle (0: none).
    pub max_concurrent: u32,
    /// Tasks waiting for the throttle, per worker.
    pub queue_capacity: u32,
    /// Priorities admitted in degraded mode (0 to 3).
    pub essential_priority: u32,
    /// Share of slots each priority may not take.
    pub priority_reserve: [f64; 4],
    /// Admission rate limit, tasks per second (0: none).
    pub rate_limit_per_s: f64,
    /// Rate limit burst, tasks.
    pub rate_limit_burst: f64,
    /// Receives every completion instead of `metafed_engine_poll` (NULL: poll).
    pub on_complete: metafed_completion_fn,
    /// Passed to `on_complete`.
    pub on_complete_user_data: *mut c_void,
    /// Agents that can be added to the running engine (`metafed_engine_add_agent`) beyond those
    /// it starts with, at most 4,096: their breakers and counters are made at the start.
    /// Since ABI 1.1: a caller with the 1.0 header gets the default, 16.
    pub spare_agents: u32,
    /// Domains that can be added to the running engine (`metafed_engine_add_domain`) beyond
    /// those it starts with (together at most `METAFED_MAX_DOMAINS`). Since ABI 1.1: a caller
    /// with the 1.0 header gets the default, 4.
    pub spare_domains: u32,
    /// ABI 1.3: keyed rate limits, as JSON (the fields of `[engine.keyed_limits]` in TOML:
    /// `{"capacity": 65536, "default_per_s": 100, "default_burst": 10, "classes": [{"name":
    /// "gold", "per_s": 1000, "burst": 100, "keys": ["acme", 42]}]}`); NULL for none. Read when
    /// the engine starts; the capacity is fixed then.
    pub keyed_limits_json: *const c_char,
    /// ABI 1.3: an adaptive throttle, as JSON (the fields of `[engine.adaptive_throttle]`:
    /// `{"algorithm": "aimd", "initial_limit": 20, "min_limit": 20, "max_limit": 200,
    /// "backoff_ratio": 0.9, "target_latency": 5000.0}`, the latency in ms; or `"algorithm":
    /// "gradient2"` with `"smoothing": 0.2, "queue_size": 4, "long_window": 600`); NULL for none.
    /// It then owns `max_concurrent`.
    pub adaptive_throttle_json: *const c_char,
    /// ABI 1.5: see `metafed_admission_config.max_cost`.
    pub max_cost: f64,
    /// ABI 1.5: see `metafed_admission_config.min_cost`.
    pub min_cost: f64,
    /// ABI 1.6: see `metafed_admission_config.queue_timeout_ns`.
    pub queue_timeout_ns: u64,
}

/// The admission settings of a running engine (`metafed_engine_get_admission`,
/// `metafed_engine_set_admission`); the fields mean what the same fields of
/// `metafed_engine_config` mean. `struct_size` must be set by the caller.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_admission_config {
    /// `sizeof(metafed_admission_config)`.
    pub struct_size: u32,
    /// System-wide concurrency throttle (0: none).
    pub max_concurrent: u32,
    /// Tasks waiting for the throttle, per worker.
    pub queue_capacity: u32,
    /// Priorities admitted in degraded mode (0 to 3).
    pub essential_priority: u32,
    /// Share of slots each priority may not take.
    pub priority_reserve: [f64; 4],
    /// Admission rate limit, tasks per second (0: none).
    pub rate_limit_per_s: f64,
    /// Rate limit burst, tasks.
    pub rate_limit_burst: f64,
    /// ABI 1.5: a concurrency budget in complexity units (0: none): admitted tasks together cost
    /// at most this much, a task costing its complexity and at least `min_cost`.
    pub max_cost: f64,
    /// ABI 1.5: the least a task costs against `max_cost`, in (0, 1].
    pub min_cost: f64,
    /// ABI 1.6: how long a task may wait for the throttle (or the cost budget), from its
    /// submission, in nanoseconds (0: as long as its deadline allows); one that waits longer
    /// completes `METAFED_REASON_THROTTLED`, so the tasks admitted have not queued past it.
    pub queue_timeout_ns: u64,
}

/// Engine-wide counters. `struct_size` must be set by the caller.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_stats {
    /// `sizeof(metafed_stats)`.
    pub struct_size: u32,
    /// Worker threads.
    pub workers: u32,
    /// Domains in the topology.
    pub domains: u32,
    /// Agents in the topology.
    pub agents: u32,
    /// Task slots.
    pub slots: u64,
    /// Tasks accepted and not yet delivered.
    pub in_flight: u64,
    /// Submissions refused with `METAFED_E_FULL`.
    pub submit_full: u64,
    /// Tasks admitted.
    pub admitted: u64,
    /// Tasks completed.
    pub completed: u64,
    /// Completed by outcome, indexed by `METAFED_OUTCOME_*` (tasks the shutdown completed
    /// included).
    pub outcomes: [u64; METAFED_OUTCOME_COUNT],
    /// Completed by reason, indexed by `METAFED_REASON_*`.
    pub reasons: [u64; METAFED_REASON_COUNT],
    /// Attempts panic-routed.
    pub panic_routed: u64,
    /// Late answers: deferred attempts (isolated agents' included) completed after they had
    /// been abandoned; their answers were dropped.
    pub late_results: u64,
    /// Tasks admitted in degraded mode.
    pub degraded_admits: u64,
    /// Latency percentiles (ns, within ~6%).
    pub latency_p50_ns: u64,
    /// See `latency_p50_ns`.
    pub latency_p99_ns: u64,
    /// See `latency_p50_ns`.
    pub latency_p999_ns: u64,
    /// The meta breaker's state, `METAFED_STATE_*`.
    pub meta_state: i32,
    /// Worker threads that could not be pinned.
    pub pin_failures: u32,
    /// The meta breaker's trips (closed or half-open to open).
    pub meta_trips: u64,
    /// The model's success probability for a single-domain task.
    pub predicted_success: f64,
    /// Breaker events `metafed_engine_drain_events` could not keep (it keeps 1,024 between
    /// drains). Since ABI 1.1: a caller with the 1.0 header does not get it.
    pub events_dropped: u64,
    /// ABI 1.3: tasks completed with `METAFED_REASON_DOMAIN_OVERLOADED` (not in `reasons`).
    pub domain_overloaded: u64,
    /// ABI 1.5: tasks that named no domain and were classified.
    pub classified: u64,
    /// ABI 1.5: tasks completed with `METAFED_REASON_UNCLASSIFIED` (not in `reasons`).
    pub unclassified: u64,
    /// ABI 1.5: complexity units the admitted tasks hold of the cost budget.
    pub cost_held: f64,
}

/// One domain's counters.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_domain_stats {
    /// `sizeof(metafed_domain_stats)`.
    pub struct_size: u32,
    /// `METAFED_STATE_*` of its breaker.
    pub state: i32,
    /// Sub-tasks received.
    pub subtasks: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Shed by its open breaker.
    pub shed: u64,
    /// Taken out by injected faults.
    pub faults: u64,
    /// Out of time.
    pub timeouts: u64,
    /// Failovers.
    pub failovers: u64,
    /// Succeeded after a failed attempt.
    pub recovered: u64,
    /// Its breaker's trips.
    pub trips: u64,
    /// Hedge attempts sent.
    pub hedges: u64,
    /// Sub-tasks a hedge attempt won.
    pub hedge_wins: u64,
    /// Failovers and hedges the retry budget refused.
    pub budget_denied: u64,
    /// Times a sub-task waited for an agent with room (every candidate at its limit).
    pub waited: u64,
    /// ABI 1.4: sub-tasks that failed here and were handed to an alternate domain.
    pub rerouted: u64,
}

/// One agent's counters.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_agent_stats {
    /// `sizeof(metafed_agent_stats)`.
    pub struct_size: u32,
    /// `METAFED_STATE_*` of its breaker.
    pub state: i32,
    /// Attempts.
    pub calls: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Slower than the timeout.
    pub slow: u64,
    /// Panicked or raised.
    pub panics: u64,
    /// Abandoned: not answered within the agent timeout (deferred or isolated).
    pub abandoned: u64,
    /// No room: its queue (isolated) or the worker's attempt slots were full.
    pub overloaded: u64,
    /// Mean latency (ns).
    pub mean_latency_ns: u64,
    /// Its breaker's trips.
    pub trips: u64,
    /// 1 if in rotation.
    pub in_rotation: u32,
    /// 1 if isolated.
    pub isolated: u32,
    /// Attempts deferred (answered later, or by its own threads).
    pub deferred: u64,
    /// Attempts abandoned because another attempt of their sub-task answered first.
    pub cancelled: u64,
    /// Attempts in flight now (counted only when it has a concurrency limit).
    pub in_flight: u32,
    /// Its concurrency limit (0: none).
    pub max_concurrency: u32,
    /// ABI 1.3: times the domain's outlier detection ejected it.
    pub ejections: u64,
}

/// What a shutdown did.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct metafed_shutdown_report {
    /// `sizeof(metafed_shutdown_report)`.
    pub struct_size: u32,
    /// 1 if every task in flight finished before the deadline.
    pub drained: u32,
    /// Tasks completed as rejected because the deadline passed.
    pub rejected: u64,
    /// Threads detached because a handler did not return.
    pub detached_threads: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// How long it took (ns).
    pub elapsed_ns: u64,
}

const _: () = assert!(METAFED_REASON_COUNT + 2 == Reason::COUNT);
const _: () = assert!(METAFED_REASON_UNCLASSIFIED == Reason::Unclassified as i32);
const _: () = assert!(
    METAFED_MAX_ATTRS == metafed_rs::classify::MAX_ATTRS
        && METAFED_MAX_ATTR_NAME == metafed_rs::classify::MAX_ATTR_NAME
        && METAFED_MAX_ATTR_VALUE == metafed_rs::classify::MAX_ATTR_VALUE
);
const _: () = assert!(METAFED_REASON_DOMAIN_OVERLOADED == Reason::DomainOverloaded as i32);
const _: () = assert!(
    METAFED_CAUSE_SLOW_CALL_RATE == metafed_rs::breaker::TransitionCause::SlowCallRate as i32
        && METAFED_CAUSE_OUTLIER_FAILURES == metafed_rs::breaker::TransitionCause::OutlierFailures as i32
        && METAFED_CAUSE_OUTLIER_FAILURE_RATE == metafed_rs::breaker::TransitionCause::OutlierFailureRate as i32
        && METAFED_CAUSE_OUTLIER_LATENCY == metafed_rs::breaker::TransitionCause::OutlierLatency as i32
);
const _: () = assert!(METAFED_OUTCOME_COUNT == 4 && Status::Rejected as usize == 3);

/// Health: every breaker closed, measured reliability as predicted.
pub const METAFED_HEALTHY: i32 = 0;

/// Health: some agents out, or a domain doing measurably worse than predicted; still served.
pub const METAFED_DEGRADED: i32 = 1;

/// Health: a domain cannot be served, the meta level is degraded, or the engine is stopping.
pub const METAFED_UNHEALTHY: i32 = 2;

/// Breaker event cause: consecutive failures reached the threshold (closed to open).
pub const METAFED_CAUSE_CONSECUTIVE_FAILURES: i32 = 0;

/// Breaker event cause: the failure rate over the window reached the threshold.
pub const METAFED_CAUSE_FAILURE_RATE: i32 = 1;

/// Breaker event cause: the open time ended (open to half-open).
pub const METAFED_CAUSE_OPEN_TIME_ELAPSED: i32 = 2;

/// Breaker event cause: a probe failed (half-open to open).
pub const METAFED_CAUSE_PROBE_FAILED: i32 = 3;

/// Breaker event cause: enough probes succeeded (half-open to closed).
pub const METAFED_CAUSE_PROBES_SUCCEEDED: i32 = 4;

/// Breaker event cause: an operator forced the breaker open.
pub const METAFED_CAUSE_FORCED: i32 = 5;

/// Breaker event cause: an operator returned the breaker to normal.
pub const METAFED_CAUSE_RESET: i32 = 6;

/// Breaker event cause: the slow-call rate over the window reached the threshold (ABI 1.3).
pub const METAFED_CAUSE_SLOW_CALL_RATE: i32 = 7;

/// Breaker event cause: the domain's outlier detection ejected the agent for a run of failures
/// (ABI 1.3).
pub const METAFED_CAUSE_OUTLIER_FAILURES: i32 = 8;

/// Breaker event cause: ejected for its failure rate (ABI 1.3).
pub const METAFED_CAUSE_OUTLIER_FAILURE_RATE: i32 = 9;

/// Breaker event cause: ejected for a latency far above its peers' (ABI 1.3).
pub const METAFED_CAUSE_OUTLIER_LATENCY: i32 = 10;

/// A domain's outlier detection (ABI 1.3). Set `struct_size`, then `metafed_outlier_config_init`
/// fills the defaults (Envoy's: 5 failures in a row; failure rate and latency off; 30 s
/// ejections up to 300 s; at most 10% of the agents out, but one always may be, never the last).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_outlier_config {
    /// `sizeof(metafed_outlier_config)`, set by the caller.
    pub struct_size: u32,
    /// Eject after this many failures in a row (0: off).
    pub consecutive_failures: u32,
    /// Eject at this failure rate over the agent's last `min_calls` calls (0: off; else in (0, 1]).
    pub failure_rate: f64,
    /// The calls the failure rate is judged over (at least 1).
    pub min_calls: u32,
    /// Latency samples an agent needs before its latency is judged (at least 1).
    pub min_samples: u32,
    /// Eject when the agent's peak-EWMA latency exceeds this factor times its peers' median (0:
    /// off; else above 1).
    pub latency_factor: f64,
    /// The first ejection's time (ns); each ejection in a row adds as much.
    pub base_ejection_ns: u64,
    /// The longest ejection (ns).
    pub max_ejection_ns: u64,
    /// The most agents out at once, in percent of the domain's (0 to 100).
    pub max_ejected_percent: f64,
}

/// A domain's balance: smooth weighted round-robin (the default; ABI 1.3).
pub const METAFED_BALANCE_ROUND_ROBIN: i32 = 0;

/// A domain's balance: the power of two choices over peak-EWMA latency x (in flight + 1) (ABI
/// 1.3).
pub const METAFED_BALANCE_PEAK_EWMA: i32 = 1;

/// A breaker changed state (see `metafed_engine_drain_events`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct metafed_breaker_event {
    /// `sizeof(metafed_breaker_event)`, set by the caller in the first element of the array
    /// `metafed_engine_drain_events` fills (it is the array's stride); the library writes it in
    /// every element it fills. An event a callback receives carries the library's size.
    pub struct_size: u32,
    /// When, in nanoseconds since the engine started.
    pub at_ns: u64,
    /// The task whose admission or result caused it (meta and domain breakers), if `has_task`.
    pub task_id: u64,
    /// 1 if `task_id` is set.
    pub has_task: u32,
    /// `METAFED_LEVEL_*`.
    pub level: i32,
    /// The domain or agent id (0 for the meta level).
    pub index: u32,
    /// `METAFED_STATE_*` before.
    pub from: i32,
    /// `METAFED_STATE_*` after.
    pub to: i32,
    /// `METAFED_CAUSE_*`.
    pub cause: i32,
}

/// An event of `metafed_engine_set_event_callback`: a breaker changed state.
pub const METAFED_EVENT_BREAKER: i32 = 1;

/// An event of `metafed_engine_set_event_callback`: an operator action was audited.
pub const METAFED_EVENT_AUDIT: i32 = 2;

/// What `metafed_engine_set_event_callback`'s callback receives. Valid during the call only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct metafed_event {
    /// The library's `sizeof(metafed_event)`: read only the fields below it.
    pub struct_size: u32,
    /// `METAFED_EVENT_*`.
    pub kind: i32,
    /// The transition, for `METAFED_EVENT_BREAKER` (NULL otherwise); valid during the call, and
    /// carrying the library's `struct_size`.
    pub breaker: *const metafed_breaker_event,
    /// The audit record's number, for `METAFED_EVENT_AUDIT` (`metafed_engine_get_audit_json`
    /// numbers them alike; 0 otherwise).
    pub audit_seq: u64,
    /// The event as one line of JSON, NUL-terminated (`json_len` bytes before the NUL): for a
    /// breaker `{"event":"breaker","at_ns":..,"breaker":"agent API/REST","level":"agent",
    /// "index":0,"from":"closed","to":"open","cause":"consecutive_failures","task_id":7}`, for an audit
    /// record `{"event":"audit","seq":..,"actor":..,"action":..,"target":..,"from":..,"to":..}`.
    pub json: *const c_char,
    /// Its length in bytes.
    pub json_len: usize,
}

/// Receives each engine event (see `metafed_engine_set_event_callback`).
pub type metafed_event_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const metafed_event)>;
