//! The structs and constants the C ABI exchanges, and their conversions.

use super::{FfiError, METAFED_E_INVALID, check_size, err};
use crate::{AttemptFailure, Completion, FailureKind, Status};
use std::ffi::c_void;

/// Outcome of a task (`metafed_completion.outcome`): every sub-task succeeded.
pub const METAFED_OUTCOME_OK: i32 = 0;
/// Outcome: a sub-task failed (every attempt failed, or a fault).
pub const METAFED_OUTCOME_FAILED: i32 = 1;
/// Outcome: its deadline or a level's timeout passed first.
pub const METAFED_OUTCOME_TIMED_OUT: i32 = 2;
/// Outcome: the engine refused it (breaker open, shed, throttled, rate limited, shutting down).
pub const METAFED_OUTCOME_REJECTED: i32 = 3;

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

/// How an attempt failed (`metafed_failure.kind`): the handler returned an error code.
pub const METAFED_FAILURE_ERROR: i32 = 0;
/// The handler panicked, or a C handler returned `METAFED_HANDLER_RAISED`.
pub const METAFED_FAILURE_PANICKED: i32 = 1;
/// The handler answered after the agent timeout.
pub const METAFED_FAILURE_SLOW: i32 = 2;
/// The isolated agent did not answer in time; the attempt was abandoned.
pub const METAFED_FAILURE_ABANDONED: i32 = 3;
/// The agent's queue was full.
pub const METAFED_FAILURE_OVERLOADED: i32 = 4;
/// The agent's domain was marked down.
pub const METAFED_FAILURE_DOWN: i32 = 5;
/// A C handler returned a code other than the three `METAFED_HANDLER_*` (the code is kept).
pub const METAFED_FAILURE_INVALID_REPLY: i32 = 6;

/// What a handler returns: success; `response->value` is the result.
pub const METAFED_HANDLER_OK: i32 = 0;
/// The attempt failed; `response->code` is the error code.
pub const METAFED_HANDLER_ERROR: i32 = 1;
/// The handler raised (a C++ exception caught, a Python exception): a failed attempt, counted
/// as a panic.
pub const METAFED_HANDLER_RAISED: i32 = 2;

/// `metafed_task.flags`: deliver the completion to `metafed_engine_wait` on its ticket, not to
/// `metafed_engine_poll` or the completion callback.
pub const METAFED_TASK_WAITABLE: u32 = 1;
/// Flag for agents: run the agent on a thread of its own (a hang stalls only it).
pub const METAFED_AGENT_ISOLATED: u32 = 1;

/// Breaker levels, for `metafed_topology_set_breaker` and `metafed_engine_set_breaker_mode`.
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

/// Simulated latency kinds (`metafed_sim_agent.latency_kind`).
pub const METAFED_LATENCY_NONE: i32 = 0;
/// Every call takes `latency_us`.
pub const METAFED_LATENCY_FIXED: i32 = 1;
/// Exponential with mean `latency_us`.
pub const METAFED_LATENCY_EXPONENTIAL: i32 = 2;
/// `latency_us`, except a `slow_rate` share of first attempts that take `slow_us`.
pub const METAFED_LATENCY_LONG_TAIL: i32 = 3;
/// Simulated faults (`metafed_sim_agent.fault_kind`): none.
pub const METAFED_FAULT_NONE: i32 = 0;
/// Every call blocks `fault_value` milliseconds, then fails.
pub const METAFED_FAULT_HANG: i32 = 1;
/// A call panics with probability `fault_value`.
pub const METAFED_FAULT_PANIC: i32 = 2;

/// Failed attempts a completion records (later ones are counted in `failures_total`).
pub const METAFED_MAX_FAILURES: usize = 8;

/// A task to submit. Initialise with `metafed_task_init`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_task {
    /// `sizeof(metafed_task)`.
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
    /// A deadline relative to submission, in microseconds; 0 for none.
    pub deadline_us: u64,
}

/// One failed attempt of a task.
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
}

/// The one completion of an accepted task.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_completion {
    /// `sizeof(metafed_completion)`; set by the caller in the first element of an output array
    /// (it is the array's stride), written by the library in every element it fills.
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
}

/// What a handler sees for one attempt. Valid for the duration of the call only.
#[repr(C)]
pub struct metafed_request {
    /// `sizeof(metafed_request)` of this library.
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
}

/// What a handler writes back.
#[repr(C)]
pub struct metafed_response {
    /// `sizeof(metafed_response)` of this library.
    pub struct_size: u32,
    /// The error code, when returning `METAFED_HANDLER_ERROR`.
    pub code: i32,
    /// The value, when returning `METAFED_HANDLER_OK`.
    pub value: u64,
}

/// A handler: runs one attempt. Returns `METAFED_HANDLER_OK`, `_ERROR` or `_RAISED`. It may be
/// called from several worker threads at once unless its agent is isolated.
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

/// A simulated agent. Initialise with `metafed_sim_agent_init`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_sim_agent {
    /// `sizeof(metafed_sim_agent)`.
    pub struct_size: u32,
    /// `METAFED_AGENT_*` flags.
    pub flags: u32,
    /// Failure probability per attempt (the oracle's p).
    pub error_rate: f64,
    /// `METAFED_LATENCY_*`.
    pub latency_kind: i32,
    /// `METAFED_FAULT_*`.
    pub fault_kind: i32,
    /// Microseconds (see the latency kinds).
    pub latency_us: f64,
    /// Microseconds of a slow call (`METAFED_LATENCY_LONG_TAIL`).
    pub slow_us: f64,
    /// Share of slow first attempts (`METAFED_LATENCY_LONG_TAIL`).
    pub slow_rate: f64,
    /// Milliseconds (hang) or probability (panic).
    pub fault_value: f64,
    /// Seeds the latency draws.
    pub seed: u64,
}

/// A breaker's settings. Initialise with `metafed_breaker_config_init` (the seed's defaults of a
/// level).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_breaker_config {
    /// `sizeof(metafed_breaker_config)`.
    pub struct_size: u32,
    /// `METAFED_BREAKER_*`.
    pub mode: i32,
    /// A call slower than this counts as a failure (ms, > 0).
    pub timeout_ms: f64,
    /// Trip after this many failures in a row (0: off).
    pub consecutive_failures: u32,
    /// The rate is judged on at least this many calls.
    pub min_calls: u32,
    /// Trip at this failure rate over the window (0: off; else in (0, 1]).
    pub failure_rate: f64,
    /// The window (ms).
    pub window_ms: f64,
    /// The first open time (ms); doubles per failed probe.
    pub open_base_ms: f64,
    /// The cap on the open time (ms).
    pub open_max_ms: f64,
    /// Probes at once while half-open, and the successes that close it (1 to 255).
    pub half_open_probes: u32,
    /// Reserved (0).
    pub reserved: u32,
}

/// The engine's settings. Initialise with `metafed_engine_config_init`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct metafed_engine_config {
    /// `sizeof(metafed_engine_config)`.
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
    /// Microseconds of yielding before parking.
    pub idle_yield_us: u32,
    /// Ring capacity between a worker and an isolated agent.
    pub isolated_queue: u32,
    /// Try an open agent when every remaining one is open (0 or 1).
    pub panic_routing: u32,
    /// Drain deadline when an engine is freed without `metafed_engine_shutdown` (ms).
    pub drain_timeout_ms: u32,
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
    /// Completed by outcome, indexed by `METAFED_OUTCOME_*`.
    pub outcomes: [u64; 4],
    /// Completed by reason, indexed by `METAFED_REASON_*`.
    pub reasons: [u64; 12],
    /// Attempts panic-routed.
    pub panic_routed: u64,
    /// Late answers from isolated agents.
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
    /// Abandoned (isolated).
    pub abandoned: u64,
    /// Queue full.
    pub overloaded: u64,
    /// Mean latency (ns).
    pub mean_latency_ns: u64,
    /// Its breaker's trips.
    pub trips: u64,
    /// 1 if in rotation.
    pub in_rotation: u32,
    /// 1 if isolated.
    pub isolated: u32,
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
    /// Microseconds it took.
    pub elapsed_us: u64,
}

pub(crate) fn outcome_code(s: Status) -> i32 {
    s as i32
}

pub(crate) fn failure_code(k: FailureKind) -> i32 {
    k as i32
}

impl metafed_completion {
    pub(crate) fn from_completion(c: &Completion) -> Self {
        let mut failures = [metafed_failure::default(); METAFED_MAX_FAILURES];
        for (out, f) in failures.iter_mut().zip(c.failures()) {
            *out = failure(f);
        }
        Self {
            struct_size: size_of::<Self>() as u32,
            outcome: outcome_code(c.status),
            reason: c.reason as i32,
            priority: u32::from(c.priority),
            ticket: c.ticket.0,
            id: c.id,
            value: c.value,
            latency_ns: c.latency_ns,
            attempts: c.attempts,
            failures_len: c.failures().len() as u32,
            failures_total: c.failures_total,
            reserved: 0,
            failures,
        }
    }
}

fn failure(f: &AttemptFailure) -> metafed_failure {
    metafed_failure { domain: f.domain.0, agent: f.agent.0, kind: failure_code(f.kind), code: f.code }
}

/// Checks a task and turns it into a Rust task that borrows its bytes.
///
/// # Safety
/// `t.data` must be valid for `t.data_len` bytes for the lifetime `'a` (or `data_len` 0).
pub(crate) unsafe fn task<'a>(t: &metafed_task) -> Result<crate::Task<'a>, FfiError> {
    check_size(t.struct_size, size_of::<metafed_task>(), "metafed_task")?;
    if t.priority > 3 {
        return Err(err(METAFED_E_INVALID, format!("priority {} is out of range (0 highest .. 3 lowest)", t.priority)));
    }
    if t.flags & !METAFED_TASK_WAITABLE != 0 {
        return Err(err(METAFED_E_INVALID, format!("unknown task flags {:#x}", t.flags)));
    }
    let data: &'a [u8] = if t.data_len == 0 {
        &[]
    } else if t.data.is_null() {
        return Err(err(super::METAFED_E_NULL, "task data is NULL but data_len is not 0"));
    } else {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(t.data, t.data_len) }
    };
    Ok(crate::Task {
        id: t.id,
        domains: crate::DomainSet(t.domains),
        priority: t.priority as u8,
        payload: t.payload,
        data,
        deadline: (t.deadline_us > 0).then(|| std::time::Duration::from_micros(t.deadline_us)),
        waitable: t.flags & METAFED_TASK_WAITABLE != 0,
    })
}
