//! Conversions between the C types and the engine's: arguments checked and turned into Rust
//! values (naming the argument when one is bad), results written into C structs.

use crate::error::{FfiError, FfiResult, METAFED_E_INVALID, METAFED_E_NULL, METAFED_E_STRUCT_SIZE, err};
use crate::types::{
    METAFED_AGENT_ISOLATED, METAFED_BREAKER_DISABLED, METAFED_BREAKER_FORCED_OPEN, METAFED_BREAKER_NORMAL,
    METAFED_FOREVER, METAFED_HANDLER_ERROR, METAFED_HANDLER_OK, METAFED_HANDLER_PENDING, METAFED_HANDLER_RAISED,
    METAFED_HANDLER_TIMED_OUT, METAFED_LEVEL_AGENT, METAFED_LEVEL_DOMAIN, METAFED_LEVEL_META, METAFED_MAX_DURATION_NS,
    METAFED_MAX_FAILURES, METAFED_SIM_IO, METAFED_TASK_WAITABLE, metafed_admission_config, metafed_agent_stats,
    metafed_attempt_queue_stats, metafed_body, metafed_breaker_config, metafed_breaker_event, metafed_completion,
    metafed_domain_stats, metafed_engine_config, metafed_event, metafed_failure, metafed_hedge_config,
    metafed_outlier_config, metafed_queued_attempt, metafed_request, metafed_response, metafed_shutdown_report,
    metafed_sim_agent, metafed_stats, metafed_task,
};
use metafed_rs::breaker::{BreakerConfig, BreakerMode};
use metafed_rs::ffi_support::Answer;
use metafed_rs::sim::{Latency, SimAgent, SimFault};
use metafed_rs::{AdmissionConfig, AttemptFailure, Completion, EngineConfig, FailureKind, Level, Status, Ticket};
use std::ffi::{CStr, c_char};
use std::time::Duration;

/// Checks a required pointer.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<(), FfiError> {
    if p.is_null() { Err(err(METAFED_E_NULL, format!("{what} is NULL"))) } else { Ok(()) }
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p`, if not NULL, must point to a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, FfiError> {
    non_null(p, what)?;
    // SAFETY: not NULL, and NUL-terminated per the contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| err(METAFED_E_INVALID, format!("{what} is not valid UTF-8")))
}

/// A duration argument in nanoseconds: at most `METAFED_MAX_DURATION_NS` (30 days).
pub(crate) fn duration_ns(ns: u64, what: &str) -> Result<Duration, FfiError> {
    if ns <= METAFED_MAX_DURATION_NS {
        Ok(Duration::from_nanos(ns))
    } else {
        Err(err(METAFED_E_INVALID, format!("{what} must be at most {METAFED_MAX_DURATION_NS} ns (30 days), got {ns}")))
    }
}

/// A duration as the C ABI reports it: nanoseconds, saturating.
pub(crate) fn ns_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A boolean-like argument: 0 or 1, nothing else.
pub(crate) fn flag(v: u32, what: &str) -> Result<bool, FfiError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(err(METAFED_E_INVALID, format!("{what} must be 0 or 1, got {v}"))),
    }
}

/// A struct of the C ABI that starts with `uint32_t struct_size`. Structs only grow, by fields
/// appended at the end: `MIN_SIZE` is the size of its first form in ABI 1, and the library
/// accepts every size from it to its own, reading and writing only the fields a size holds.
///
/// # Safety
/// `Self` is `#[repr(C)]`, starts with a `u32` struct_size, and every bit pattern of its
/// fields' bytes that a C caller may write is a valid value (integers, floats, raw pointers,
/// `Option` of function pointers).
pub(crate) unsafe trait CStruct: Copy {
    /// The name C sees, for messages.
    const NAME: &'static str;
    /// The size of the struct as ABI 1.0 declared it.
    const MIN_SIZE: usize = size_of::<Self>();
}

/// Checks a caller's `struct_size` for `T`: from `T::MIN_SIZE` (ABI 1.0) to this library's.
pub(crate) fn check_size<T: CStruct>(given: u32) -> Result<usize, FfiError> {
    let (given, ours) = (given as usize, size_of::<T>());
    if given == 0 {
        return Err(err(
            METAFED_E_STRUCT_SIZE,
            format!("{}.struct_size is 0: set it to sizeof({}) before the call", T::NAME, T::NAME),
        ));
    }
    if given < T::MIN_SIZE {
        return Err(err(
            METAFED_E_STRUCT_SIZE,
            format!(
                "{}.struct_size is {given}, below the {} bytes of its first form (ABI 1.0): set it to sizeof({})",
                T::NAME,
                T::MIN_SIZE,
                T::NAME
            ),
        ));
    }
    if given > ours {
        return Err(err(
            METAFED_E_STRUCT_SIZE,
            format!(
                "{}.struct_size is {given}; this library's is {ours}: the header is newer than the library (use the \
                 library that came with it)",
                T::NAME
            ),
        ));
    }
    Ok(given)
}

/// Reads a struct the caller filled: its `struct_size` checked, the fields that size holds
/// copied over `defaults` (those of a later form keep their defaults).
///
/// # Safety
/// `p` is not NULL and points to `p->struct_size` readable bytes.
pub(crate) unsafe fn read_in<T: CStruct>(p: *const T, defaults: T) -> Result<T, FfiError> {
    // SAFETY: per the contract, the struct starts with a readable `u32`.
    let given = check_size::<T>(unsafe { p.cast::<u32>().read_unaligned() })?;
    let mut v = defaults;
    // SAFETY: `given` bytes are readable at `p` (the caller's struct) and writable in `v`
    // (`given` is at most `size_of::<T>()`); any bytes are valid for `T` (CStruct's contract).
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&raw mut v).cast::<u8>(), given) };
    Ok(v)
}

/// Writes `value` into a struct the caller provides, as far as its `struct_size` (checked, and
/// kept) reaches: a caller with an older header gets the fields it knows.
///
/// # Safety
/// `p` is not NULL and points to `p->struct_size` writable bytes, `struct_size` first.
pub(crate) unsafe fn write_out<T: CStruct>(p: *mut T, value: &T) -> Result<(), FfiError> {
    // SAFETY: per the contract, the struct starts with a readable `u32`.
    let given = check_size::<T>(unsafe { p.cast::<u32>().read_unaligned() })?;
    // SAFETY: `given` bytes are writable at `p` and readable in `value` (at most its size).
    unsafe { std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), p.cast::<u8>(), given) };
    // SAFETY: as above; the caller's size stays (the copy wrote ours over it).
    unsafe { p.cast::<u32>().write_unaligned(given as u32) };
    Ok(())
}

/// The stride of an array the caller provides: its first element's `struct_size`, checked.
///
/// # Safety
/// `p` is not NULL and points to at least one element.
pub(crate) unsafe fn stride_of<T: CStruct>(p: *const T) -> Result<usize, FfiError> {
    // SAFETY: per the contract.
    check_size::<T>(unsafe { p.cast::<u32>().read_unaligned() })
}

/// A timeout in nanoseconds: `METAFED_FOREVER` waits forever (`None`), 0 does not wait; any
/// other value above `METAFED_MAX_DURATION_NS` is refused.
pub(crate) fn timeout(ns: u64, what: &str) -> Result<Option<Duration>, FfiError> {
    if ns == METAFED_FOREVER { Ok(None) } else { duration_ns(ns, what).map(Some) }
}

pub(crate) fn engine_config(c: &metafed_engine_config) -> Result<EngineConfig, FfiError> {
    let idle_yield_us = u32::try_from(c.idle_yield_ns / 1_000).map_err(|_| {
        err(
            crate::error::METAFED_E_CONFIG,
            format!("idle_yield_ns must be at most {} ns, got {}", u64::from(u32::MAX) * 1_000, c.idle_yield_ns),
        )
    })?;
    let cfg = EngineConfig {
        workers: c.workers as usize,
        pin: flag(c.pin, "pin")?,
        max_in_flight: c.max_in_flight as usize,
        worker_capacity: c.worker_capacity as usize,
        batch: c.batch as usize,
        idle_spins: c.idle_spins,
        idle_yield_us,
        isolated_queue: c.isolated_queue as usize,
        panic_routing: flag(c.panic_routing, "panic_routing")?,
        drain_timeout: duration_ns(c.drain_timeout_ns, "drain_timeout_ns")?,
        spare_agents: c.spare_agents as usize,
        spare_domains: c.spare_domains as usize,
        admission: AdmissionConfig {
            max_concurrent: c.max_concurrent as usize,
            queue_capacity: c.queue_capacity as usize,
            essential_priority: c.essential_priority.min(255) as u8,
            priority_reserve: c.priority_reserve,
            rate_limit_per_s: c.rate_limit_per_s,
            rate_limit_burst: c.rate_limit_burst,
            max_cost: c.max_cost,
            min_cost: c.min_cost,
            queue_timeout: duration_ns(c.queue_timeout_ns, "queue_timeout_ns")?,
        },
        keyed_limits: if c.keyed_limits_json.is_null() {
            None
        } else {
            // SAFETY: not NULL: a NUL-terminated string, per the contract.
            let json = unsafe { str_arg(c.keyed_limits_json, "keyed_limits_json") }?;
            Some(keyed_limits_arg(json)?)
        },
        adaptive_throttle: if c.adaptive_throttle_json.is_null() {
            None
        } else {
            // SAFETY: not NULL: a NUL-terminated string, per the contract.
            let json = unsafe { str_arg(c.adaptive_throttle_json, "adaptive_throttle_json") }?;
            let a: metafed_rs::policy::AdaptiveThrottle = serde_json::from_str(json)
                .map_err(|e| err(crate::error::METAFED_E_CONFIG, format!("adaptive throttle JSON: {e}")))?;
            Some(a)
        },
    };
    cfg.validate().map_err(|m| err(crate::error::METAFED_E_CONFIG, m))?;
    Ok(cfg)
}

pub(crate) fn write_ticket(out: *mut u64, t: Ticket) {
    if !out.is_null() {
        // SAFETY: not NULL; points to writable storage per the contract.
        unsafe { *out = t.0 };
    }
}

pub(crate) fn state_code(s: metafed_rs::breaker::BreakerState) -> i32 {
    s as i32
}

/// Writes a name into the caller's buffer: NUL-terminated, truncated to `cap - 1` bytes; its
/// full length (without the NUL) goes to `*out_len` (may be NULL), so that a call with `cap` 0
/// asks for the size.
pub(crate) fn write_name(name: &str, buf: *mut std::ffi::c_char, cap: usize, out_len: *mut usize) -> FfiResult {
    if cap > 0 {
        non_null(buf, "buf")?;
        let n = name.len().min(cap - 1);
        // SAFETY: the caller provides `cap` writable bytes at `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    if !out_len.is_null() {
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_len = name.len() };
    }
    Ok(())
}

/// A `METAFED_LEVEL_*` argument.
pub(crate) fn level_arg(level: i32) -> Result<Level, FfiError> {
    match level {
        METAFED_LEVEL_META => Ok(Level::Meta),
        METAFED_LEVEL_DOMAIN => Ok(Level::Domain),
        METAFED_LEVEL_AGENT => Ok(Level::Agent),
        l => Err(err(METAFED_E_INVALID, format!("unknown breaker level {l}"))),
    }
}

pub(crate) fn report(r: metafed_rs::ShutdownReport) -> metafed_shutdown_report {
    metafed_shutdown_report {
        struct_size: size_of::<metafed_shutdown_report>() as u32,
        drained: u32::from(r.drained),
        rejected: r.rejected,
        detached_threads: r.detached_threads as u32,
        reserved: 0,
        elapsed_ns: r.elapsed_us.saturating_mul(1_000),
    }
}

pub(crate) fn write_opt<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: not NULL; per the API contract it points to writable storage.
        unsafe { *out = v };
    }
}

pub(crate) fn sim_agent(s: &metafed_sim_agent) -> Result<SimAgent, FfiError> {
    for (ns, what) in [
        (s.latency_ns, "latency_ns"),
        (s.exponential_mean_ns, "exponential_mean_ns"),
        (s.slow_latency_ns, "slow_latency_ns"),
        (s.hang_ns, "hang_ns"),
    ] {
        duration_ns(ns, what)?;
    }
    let us = |ns: u64| ns as f64 / 1e3;
    let latency = match (s.latency_ns, s.exponential_mean_ns, s.slow_latency_ns, s.slow_rate) {
        (0, 0, 0, 0.0) => Latency::None,
        (l, 0, 0, 0.0) => Latency::Fixed { us: us(l) },
        (0, m, 0, 0.0) => Latency::Exponential { mean_us: us(m) },
        (l, 0, slow, r) if r > 0.0 => Latency::LongTail { base_us: us(l), slow_us: us(slow), slow_rate: r },
        (l, m, slow, r) => {
            return Err(err(
                METAFED_E_INVALID,
                format!(
                    "a latency is none, latency_ns alone, exponential_mean_ns alone, or latency_ns with \
                     slow_latency_ns and slow_rate; got latency_ns {l}, exponential_mean_ns {m}, slow_latency_ns \
                     {slow}, slow_rate {r}"
                ),
            ));
        }
    };
    let fault = match (s.hang_ns, s.panic_rate) {
        (0, 0.0) => SimFault::None,
        (h, 0.0) => SimFault::Hang { ms: h.div_ceil(1_000_000) },
        (0, r) => SimFault::Panic { rate: r },
        (h, r) => {
            return Err(err(METAFED_E_INVALID, format!("set hang_ns or panic_rate, not both: got {h} and {r}")));
        }
    };
    let io = s.flags & METAFED_SIM_IO != 0;
    let agent = SimAgent { error_rate: s.error_rate, latency, seed: s.seed, fault, io };
    agent.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
    Ok(agent)
}

pub(crate) fn rate(r: f64, what: &str) -> Result<f64, FfiError> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(err(METAFED_E_INVALID, format!("{what} must be in [0, 1], got {r}")))
    }
}

pub(crate) fn level_config(level: i32) -> Result<BreakerConfig, FfiError> {
    match level {
        METAFED_LEVEL_META => Ok(BreakerConfig::meta()),
        METAFED_LEVEL_DOMAIN => Ok(BreakerConfig::domain()),
        METAFED_LEVEL_AGENT => Ok(BreakerConfig::agent()),
        l => Err(err(METAFED_E_INVALID, format!("unknown breaker level {l}"))),
    }
}

/// Reads and checks a caller's `metafed_breaker_config`, the fields its (earlier, smaller) struct
/// does not hold taken from `base` (the level's settings now).
pub(crate) fn breaker_config_arg_over(
    config: *const metafed_breaker_config,
    base: &BreakerConfig,
) -> Result<BreakerConfig, FfiError> {
    non_null(config, "config")?;
    // SAFETY: not NULL; a struct of `struct_size` bytes per the contract. A caller of ABI 1.0
    // to 1.2 gives none of 1.3's fields: they keep the defaults (no slow-call rate, the time
    // window).
    let c = unsafe { read_in(config, breaker_config_to_c(base)) }?;
    // The durations' own checks, naming the C fields (the rest are named alike in Rust).
    let zero = |what: &str| err(METAFED_E_INVALID, format!("{what} must be greater than zero"));
    if c.timeout_ns == 0 {
        return Err(zero("timeout_ns"));
    }
    if c.open_base_ns == 0 {
        return Err(zero("open_base_ns"));
    }
    if (c.failure_rate > 0.0 || c.slow_call_rate > 0.0) && c.count_window == 0 && c.window_ns == 0 {
        return Err(err(
            METAFED_E_INVALID,
            "window_ns must be greater than zero when failure_rate or slow_call_rate is set (or give count_window)",
        ));
    }
    if c.slow_call_rate > 0.0 && c.slow_call_duration_ns == 0 {
        return Err(err(
            METAFED_E_INVALID,
            "slow_call_duration_ns must be greater than zero when slow_call_rate is set",
        ));
    }
    if c.open_max_ns < c.open_base_ns {
        return Err(err(
            METAFED_E_INVALID,
            format!("open_max_ns must be at least open_base_ns, got {} and {}", c.open_max_ns, c.open_base_ns),
        ));
    }
    let dur = duration_ns;
    let cfg = BreakerConfig {
        timeout: dur(c.timeout_ns, "timeout_ns")?,
        consecutive_failures: c.consecutive_failures,
        failure_rate: c.failure_rate,
        window: dur(c.window_ns, "window_ns")?,
        min_calls: c.min_calls,
        count_window: c.count_window,
        slow_call_duration: dur(c.slow_call_duration_ns, "slow_call_duration_ns")?,
        slow_call_rate: c.slow_call_rate,
        open_base: dur(c.open_base_ns, "open_base_ns")?,
        open_max: dur(c.open_max_ns, "open_max_ns")?,
        half_open_probes: c.half_open_probes,
        mode: breaker_mode(c.mode)?,
    };
    cfg.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
    Ok(cfg)
}

pub(crate) fn breaker_mode(mode: i32) -> Result<BreakerMode, FfiError> {
    match mode {
        METAFED_BREAKER_NORMAL => Ok(BreakerMode::Normal),
        METAFED_BREAKER_DISABLED => Ok(BreakerMode::Disabled),
        METAFED_BREAKER_FORCED_OPEN => Ok(BreakerMode::ForcedOpen),
        m => Err(err(METAFED_E_INVALID, format!("unknown breaker mode {m}"))),
    }
}

/// Keyed rate limits from their JSON form, checked.
pub(crate) fn keyed_limits_arg(json: &str) -> Result<metafed_rs::policy::KeyedLimits, FfiError> {
    let k: metafed_rs::policy::KeyedLimits = serde_json::from_str(json)
        .map_err(|e| err(crate::error::METAFED_E_CONFIG, format!("keyed limits JSON: {e}")))?;
    k.validate().map_err(|m| err(crate::error::METAFED_E_CONFIG, m))?;
    Ok(k)
}

/// A breaker configuration as the C struct.
pub(crate) fn breaker_config_to_c(c: &BreakerConfig) -> metafed_breaker_config {
    metafed_breaker_config {
        struct_size: size_of::<metafed_breaker_config>() as u32,
        mode: c.mode as i32,
        timeout_ns: ns_of(c.timeout),
        consecutive_failures: c.consecutive_failures,
        min_calls: c.min_calls,
        failure_rate: c.failure_rate,
        window_ns: ns_of(c.window),
        open_base_ns: ns_of(c.open_base),
        open_max_ns: ns_of(c.open_max),
        half_open_probes: c.half_open_probes,
        reserved: 0,
        slow_call_duration_ns: ns_of(c.slow_call_duration),
        slow_call_rate: c.slow_call_rate,
        count_window: c.count_window,
        reserved2: 0,
    }
}

pub(crate) fn breaker_event_to_c(ev: &metafed_rs::events::BreakerEvent) -> metafed_breaker_event {
    metafed_breaker_event {
        struct_size: size_of::<metafed_breaker_event>() as u32,
        at_ns: ev.at_ns,
        task_id: ev.task.unwrap_or(0),
        has_task: u32::from(ev.task.is_some()),
        level: ev.level as i32,
        index: u32::from(ev.index),
        from: ev.transition.from as i32,
        to: ev.transition.to as i32,
        cause: ev.transition.cause as i32,
    }
}

pub(crate) fn outcome_code(s: Status) -> i32 {
    s as i32
}

pub(crate) fn failure_code(k: FailureKind) -> i32 {
    k as i32
}

/// Whether this process's C code knows ABI 1.3's reasons: set when an engine is made with a
/// `metafed_engine_config` of 1.3's size. A program built against an earlier header may index an
/// array of `METAFED_REASON_COUNT` by `completion.reason`, so until then a sub-task shed by an
/// overloaded domain is reported as `METAFED_REASON_DOMAIN_SHED` (shed by the domain), never as
/// a reason it cannot know.
static KNOWS_1_3_REASONS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set once this process's C code used a function or a struct of ABI 1.5 (a classifier, rules,
/// a task with attributes): until then `METAFED_REASON_UNCLASSIFIED` is reported as
/// `METAFED_REASON_DEGRADED`.
static KNOWS_1_5_REASONS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn knows_abi_1_5() {
    KNOWS_1_5_REASONS.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn knows_abi_1_3() {
    KNOWS_1_3_REASONS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A reason as this process's C code may see it (see `KNOWS_1_3_REASONS`).
fn reason_code(r: metafed_rs::Reason) -> i32 {
    if r == metafed_rs::Reason::Unclassified && !KNOWS_1_5_REASONS.load(std::sync::atomic::Ordering::Relaxed) {
        return crate::types::METAFED_REASON_DEGRADED;
    }
    if r == metafed_rs::Reason::DomainOverloaded && !KNOWS_1_3_REASONS.load(std::sync::atomic::Ordering::Relaxed) {
        return crate::types::METAFED_REASON_DOMAIN_SHED;
    }
    r as i32
}

impl metafed_completion {
    /// The C form of a completion, with no reply bytes (they stay in `c`).
    pub(crate) fn from_completion(c: &Completion) -> Self {
        let mut failures = [metafed_failure::default(); METAFED_MAX_FAILURES];
        for (out, f) in failures.iter_mut().zip(c.failures()) {
            *out = failure(f);
        }
        Self {
            struct_size: size_of::<Self>() as u32,
            outcome: outcome_code(c.status),
            reason: reason_code(c.reason),
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
            bodies_len: 0,
            reserved2: 0,
            bodies: std::ptr::null(),
            answered: c.answered.0,
            reroutes: c.reroutes,
            reserved3: 0,
            domains: c.domains.0,
            complexity: f64::from(c.complexity.get()),
        }
    }

    /// The C form of a completion, owning its reply bytes (moved out of `c`): release it with
    /// [`release`](Self::release) (`metafed_completion_release`).
    pub(crate) fn with_bodies(c: &mut Completion) -> Self {
        let mut out = Self::from_completion(c);
        let bodies = c.take_bodies();
        if !bodies.is_empty() {
            let entries: Box<[metafed_body]> = bodies
                .into_iter()
                .map(|(d, data)| {
                    let data = Box::into_raw(data.into_boxed_slice());
                    metafed_body {
                        struct_size: size_of::<metafed_body>() as u32,
                        domain: d.0,
                        data: data.cast::<u8>(),
                        len: data.len(),
                    }
                })
                .collect();
            out.bodies_len = entries.len() as u32;
            out.bodies = Box::into_raw(entries).cast::<metafed_body>();
        }
        out
    }

    /// Frees the reply bytes this completion owns and clears its fields.
    ///
    /// # Safety
    /// `bodies` and `bodies_len` must be as [`with_bodies`](Self::with_bodies) made them (or
    /// NULL and 0).
    pub(crate) unsafe fn release(&mut self) {
        // SAFETY: a whole completion, as the contract above.
        unsafe { Self::release_at(self) }
    }

    /// [`release`](Self::release) through a pointer to a caller's completion, which may be of
    /// an earlier, shorter form (its `struct_size`): only `bodies` and `bodies_len`, fields of
    /// every form, are touched, and no reference to the whole struct is made.
    ///
    /// # Safety
    /// `c` points to a completion of at least ABI 1.0's size whose `bodies` and `bodies_len` are
    /// as [`with_bodies`](Self::with_bodies) made them (or NULL and 0).
    pub(crate) unsafe fn release_at(c: *mut Self) {
        // SAFETY: both fields lie within ABI 1.0's form, which `c` points to.
        let (bodies, len) = unsafe { (std::ptr::addr_of_mut!((*c).bodies), std::ptr::addr_of_mut!((*c).bodies_len)) };
        // SAFETY: as above; plain reads of the caller's fields.
        let (b, n) = unsafe { (bodies.read_unaligned(), len.read_unaligned() as usize) };
        if !b.is_null() {
            // SAFETY: per the contract, `b` is a leaked `Box<[metafed_body]>` of `n` entries,
            // each of whose `data` is a leaked `Box<[u8]>` of `len` bytes; released once, here.
            unsafe {
                let entries = Box::from_raw(std::ptr::slice_from_raw_parts_mut(b.cast_mut(), n));
                for e in entries.iter() {
                    drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(e.data.cast_mut(), e.len)));
                }
            }
        }
        // SAFETY: as above.
        unsafe {
            bodies.write_unaligned(std::ptr::null());
            len.write_unaligned(0);
        }
    }
}

pub(crate) fn failure(f: &AttemptFailure) -> metafed_failure {
    metafed_failure {
        domain: f.domain.0,
        agent: f.agent.0,
        kind: failure_code(f.kind),
        code: f.code,
        attempt: f.attempt,
    }
}

/// Moves completions into the caller's array `out` of `cap` elements of `stride` bytes (each
/// element's `struct_size` written first, the reply bytes kept for `metafed_completion_release`),
/// taking them from `next(buf, first)` up to 64 at a time (`first`: nothing taken yet), until
/// `cap` or a take that comes back short; returns how many. The body of `metafed_engine_poll`
/// and `metafed_completion_queue_take`.
///
/// # Safety
/// `out` points to `cap` elements of `stride` bytes, `stride` checked by `stride_of`.
pub(crate) unsafe fn completions_into(
    out: *mut metafed_completion,
    stride: usize,
    cap: usize,
    mut next: impl FnMut(&mut [Completion], bool) -> Result<usize, FfiError>,
) -> Result<usize, FfiError> {
    let mut buf: [Completion; 64] = std::array::from_fn(|_| Completion::default());
    let mut total = 0;
    while total < cap {
        let want = (cap - total).min(buf.len());
        let got = next(&mut buf[..want], total == 0)?;
        for (i, c) in buf[..got].iter_mut().enumerate() {
            let v = metafed_completion::with_bodies(c);
            // SAFETY: element `total + i` < `cap` lies within the caller's array of `stride`
            // bytes each, its `struct_size` written first (the stride).
            unsafe {
                let at = out.cast::<u8>().add((total + i) * stride).cast::<metafed_completion>();
                at.cast::<u32>().write_unaligned(stride as u32);
                write_out(at, &v)?;
            }
        }
        total += got;
        if got < want {
            break;
        }
    }
    Ok(total)
}

/// Reads a caller's task (checked, as far as its `struct_size` reaches) into a Rust task that
/// borrows its bytes.
///
/// # Safety
/// `t` is not NULL and points to `t->struct_size` readable bytes; `t->data` is valid for
/// `t->data_len` bytes for the lifetime `'a` (or `data_len` is 0).
/// Its attributes (ABI 1.5) are appended to `store`; the range they take is returned with the
/// task, whose `attrs` the caller points at them once `store` is complete.
pub(crate) unsafe fn task<'a>(
    t: *const metafed_task,
    store: &mut Vec<(&'a str, &'a str)>,
) -> Result<CTask<'a>, FfiError> {
    // SAFETY: per the contract.
    let t = unsafe { read_in(t, metafed_task::defaults()) }?;
    // SAFETY: as above.
    let task = unsafe { task_from(t) }?;
    // SAFETY: as above: the attributes are valid for the call.
    let attrs = unsafe { attrs_into(&t, store) }?;
    Ok(CTask { task, attrs, queue: t.completion_queue })
}

/// A caller's task read: the Rust task, the range of `store` its attributes take (the caller
/// points `task.attrs` at them once `store` is complete), and its completion queue (ABI 1.7;
/// NULL for none).
pub(crate) struct CTask<'a> {
    pub(crate) task: metafed_rs::Task<'a>,
    pub(crate) attrs: std::ops::Range<usize>,
    pub(crate) queue: *const crate::types::metafed_completion_queue,
}

/// Appends a task's attributes to `store` (checked: NULL pointers, UTF-8, the limits; errors
/// name the attribute).
///
/// # Safety
/// `t.attrs` points to `t.attrs_len` attributes whose strings are valid for `'a` (or
/// `attrs_len` is 0).
unsafe fn attrs_into<'a>(
    t: &metafed_task,
    store: &mut Vec<(&'a str, &'a str)>,
) -> Result<std::ops::Range<usize>, FfiError> {
    let start = store.len();
    if t.attrs_len == 0 {
        return Ok(start..start);
    }
    crate::convert::knows_abi_1_5();
    non_null(t.attrs, "task attrs")?;
    if t.attrs_len > crate::types::METAFED_MAX_ATTRS {
        return Err(err(
            METAFED_E_INVALID,
            format!("attrs_len is {}; a task has at most {} attributes", t.attrs_len, crate::types::METAFED_MAX_ATTRS),
        ));
    }
    // SAFETY: per the contract.
    let attrs = unsafe { std::slice::from_raw_parts(t.attrs, t.attrs_len) };
    for (i, a) in attrs.iter().enumerate() {
        // SAFETY: per the contract.
        let name = unsafe { attr_str(a.name, a.name_len, i, "name") }?;
        let value = if a.value.is_null() && a.value_len == 0 {
            ""
        } else {
            // SAFETY: as above.
            unsafe { attr_str(a.value, a.value_len, i, "value") }?
        };
        store.push((name, value));
    }
    metafed_rs::classify::check_attrs(&store[start..]).map_err(|e| err(METAFED_E_INVALID, e.to_string()))?;
    Ok(start..store.len())
}

/// A string of attribute `i` (`part`: its name or value): `len` bytes, or NUL-terminated when
/// `len` is 0. Errors name it (formatted only then).
///
/// # Safety
/// `p` points to `len` readable bytes, or (`len` 0) to a NUL-terminated string.
unsafe fn attr_str<'a>(p: *const c_char, len: usize, i: usize, part: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(err(crate::error::METAFED_E_NULL, format!("attrs[{i}].{part} is NULL")));
    }
    let bytes = if len == 0 {
        // SAFETY: NUL-terminated per the contract.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    } else {
        // SAFETY: `len` readable bytes per the contract.
        unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }
    };
    std::str::from_utf8(bytes).map_err(|_| err(METAFED_E_INVALID, format!("attrs[{i}].{part} is not valid UTF-8")))
}

/// [`task`] for an element of an array of `stride` bytes each (the first element's
/// `struct_size`, checked by the caller): the element's own `struct_size` is not read.
///
/// # Safety
/// `t` points to `stride` readable bytes, `stride` a size [`check_size`] accepted; its data as
/// for [`task`].
pub(crate) unsafe fn task_of_size<'a>(
    t: *const metafed_task,
    stride: usize,
    store: &mut Vec<(&'a str, &'a str)>,
) -> Result<CTask<'a>, FfiError> {
    let mut v = metafed_task::defaults();
    // SAFETY: `stride` bytes are readable at `t` and, accepted by `check_size`, at most
    // `size_of::<metafed_task>()`; any bytes are valid for the struct.
    unsafe { std::ptr::copy_nonoverlapping(t.cast::<u8>(), (&raw mut v).cast::<u8>(), stride) };
    // SAFETY: as above.
    let task = unsafe { task_from(v) }?;
    // SAFETY: as above.
    let attrs = unsafe { attrs_into(&v, store) }?;
    Ok(CTask { task, attrs, queue: v.completion_queue })
}

/// # Safety
/// `t.data` is valid for `t.data_len` bytes for `'a` (or `data_len` is 0).
unsafe fn task_from<'a>(t: metafed_task) -> Result<metafed_rs::Task<'a>, FfiError> {
    if t.deadline_ns > METAFED_MAX_DURATION_NS {
        return Err(err(
            METAFED_E_INVALID,
            format!("deadline_ns is {}; at most {METAFED_MAX_DURATION_NS} (30 days)", t.deadline_ns),
        ));
    }
    if t.priority > 3 {
        return Err(err(METAFED_E_INVALID, format!("priority {} is out of range (0 highest .. 3 lowest)", t.priority)));
    }
    if t.flags & !METAFED_TASK_WAITABLE != 0 {
        return Err(err(METAFED_E_INVALID, format!("unknown task flags {:#x}", t.flags)));
    }
    if t.flags & METAFED_TASK_WAITABLE != 0 && !t.completion_queue.is_null() {
        return Err(err(
            METAFED_E_INVALID,
            "a task with a completion_queue is delivered there: it cannot be METAFED_TASK_WAITABLE",
        ));
    }
    let data: &'a [u8] = if t.data_len == 0 {
        &[]
    } else if t.data.is_null() {
        return Err(err(crate::error::METAFED_E_NULL, "task data is NULL but data_len is not 0"));
    } else {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(t.data, t.data_len) }
    };
    Ok(metafed_rs::Task {
        id: t.id,
        domains: metafed_rs::DomainSet(t.domains),
        priority: t.priority as u8,
        payload: t.payload,
        data,
        deadline: (t.deadline_ns > 0).then(|| Duration::from_nanos(t.deadline_ns)),
        waitable: t.flags & METAFED_TASK_WAITABLE != 0,
        key: t.key,
        attrs: &[],
    })
}

pub(crate) fn answer(result: i32, response: *const metafed_response) -> Result<Answer, FfiError> {
    let r = if response.is_null() {
        None
    } else {
        // SAFETY: not NULL; a response of `struct_size` bytes per the contract.
        Some(unsafe { read_in(response, metafed_response::empty()) }?)
    };
    answer_of(result, r)
}

impl metafed_response {
    /// A response with no value, code or bytes.
    pub(crate) fn empty() -> Self {
        Self { struct_size: size_of::<Self>() as u32, code: 0, value: 0, data: std::ptr::null(), data_len: 0 }
    }
}

/// Reads element `i` of an array of structs whose stride (checked, `stride_of`) is `stride`:
/// the fields that size holds, over `defaults`; the element's own `struct_size` is not read.
///
/// # Safety
/// `p` points to at least `i + 1` elements of `stride` bytes.
pub(crate) unsafe fn read_element<T: CStruct>(p: *const T, i: usize, stride: usize, defaults: T) -> T {
    let mut v = defaults;
    // SAFETY: `stride` (at most `size_of::<T>()`, checked) bytes are readable at element `i` and
    // writable in `v`; any bytes are valid for `T` (CStruct's contract).
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>().add(i * stride), (&raw mut v).cast::<u8>(), stride) };
    v
}

/// A completion's answer from `result` and the caller's response (`None`: values and codes 0).
pub(crate) fn answer_of(result: i32, r: Option<metafed_response>) -> Result<Answer, FfiError> {
    let (code, value, data) = match r {
        None => (0, 0, Vec::new()),
        Some(r) => {
            let data = if r.data_len == 0 || result != METAFED_HANDLER_OK {
                Vec::new()
            } else if r.data.is_null() {
                return Err(err(crate::error::METAFED_E_NULL, "response data is NULL but data_len is not 0"));
            } else {
                // SAFETY: per the contract, `data` holds `data_len` readable bytes.
                unsafe { std::slice::from_raw_parts(r.data, r.data_len) }.to_vec()
            };
            (r.code, r.value, data)
        }
    };
    Ok(match result {
        METAFED_HANDLER_OK => Answer::ok(value, data),
        METAFED_HANDLER_ERROR => Answer::failed(FailureKind::Error, code),
        METAFED_HANDLER_RAISED => Answer::failed(FailureKind::Panicked, code),
        METAFED_HANDLER_PENDING => Answer::failed(FailureKind::Dropped, code),
        METAFED_HANDLER_TIMED_OUT => Answer::failed(FailureKind::Abandoned, code),
        other => {
            return Err(err(
                METAFED_E_INVALID,
                format!(
                    "result must be METAFED_HANDLER_OK, _ERROR, _RAISED, _TIMED_OUT or _PENDING (to drop it), got {other}"
                ),
            ));
        }
    })
}

pub(crate) fn check_flags(flags: u32, allowed: u32) -> Result<bool, FfiError> {
    if flags & !allowed != 0 {
        return Err(err(METAFED_E_INVALID, format!("unknown agent flags {:#x}", flags & !allowed)));
    }
    Ok(flags & METAFED_AGENT_ISOLATED != 0)
}

// SAFETY (each impl below): a `#[repr(C)]` struct of types.rs that starts with `u32 struct_size`
// and holds only integers, floats, raw pointers and `Option`s of function pointers.
macro_rules! c_structs {
    ($($t:ident),* $(,)?) => {
        $(
            // SAFETY: see above.
            unsafe impl CStruct for $t {
                const NAME: &'static str = stringify!($t);
            }
        )*
    };
}
// SAFETY: as above.
unsafe impl CStruct for metafed_engine_config {
    const NAME: &'static str = "metafed_engine_config";
    /// ABI 1.0's form ended before `spare_agents` (1.1 appended it and `spare_domains`).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_engine_config, spare_agents);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_stats {
    const NAME: &'static str = "metafed_stats";
    /// ABI 1.0's form ended before `events_dropped` (appended in 1.1).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_stats, events_dropped);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_breaker_config {
    const NAME: &'static str = "metafed_breaker_config";
    /// ABI 1.0's form ended before `slow_call_duration_ns` (1.3 appended it, `slow_call_rate`
    /// and `count_window`).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_breaker_config, slow_call_duration_ns);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_agent_stats {
    const NAME: &'static str = "metafed_agent_stats";
    /// ABI 1.0's form ended before `ejections` (appended in 1.3).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_agent_stats, ejections);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_task {
    const NAME: &'static str = "metafed_task";
    /// ABI 1.0's form ended before `key` (appended in 1.3).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_task, key);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_completion {
    const NAME: &'static str = "metafed_completion";
    /// ABI 1.0's form ended before `answered` (1.4 appended it and `reroutes`).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_completion, answered);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_admission_config {
    const NAME: &'static str = "metafed_admission_config";
    /// ABI 1.0's form ended before `max_cost` (1.5 appended it and `min_cost`).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_admission_config, max_cost);
}
// SAFETY: as above.
unsafe impl CStruct for metafed_domain_stats {
    const NAME: &'static str = "metafed_domain_stats";
    /// ABI 1.0's form ended before `rerouted` (appended in 1.4).
    const MIN_SIZE: usize = std::mem::offset_of!(metafed_domain_stats, rerouted);
}
c_structs!(
    metafed_outlier_config,
    metafed_body,
    metafed_request,
    metafed_response,
    metafed_sim_agent,
    metafed_hedge_config,
    metafed_shutdown_report,
    metafed_breaker_event,
    metafed_event,
    metafed_queued_attempt,
    metafed_attempt_queue_stats,
);

impl metafed_task {
    /// What `metafed_task_init` fills: no flags, id 0, no domains, priority 0, no payload, no
    /// deadline.
    pub(crate) fn defaults() -> Self {
        Self {
            struct_size: size_of::<Self>() as u32,
            flags: 0,
            id: 0,
            domains: 0,
            payload: 0,
            data: std::ptr::null(),
            data_len: 0,
            priority: 0,
            deadline_ns: 0,
            key: 0,
            attrs: std::ptr::null(),
            attrs_len: 0,
            completion_queue: std::ptr::null(),
        }
    }
}

impl metafed_engine_config {
    /// What `metafed_engine_config_init` fills: the engine's defaults.
    pub(crate) fn defaults() -> Self {
        let c = EngineConfig::default();
        let a = admission_to_c(&c.admission);
        Self {
            struct_size: size_of::<Self>() as u32,
            workers: c.workers as u32,
            pin: u32::from(c.pin),
            max_in_flight: c.max_in_flight as u32,
            worker_capacity: c.worker_capacity as u32,
            batch: c.batch as u32,
            idle_spins: c.idle_spins,
            isolated_queue: c.isolated_queue as u32,
            idle_yield_ns: u64::from(c.idle_yield_us) * 1_000,
            drain_timeout_ns: ns_of(c.drain_timeout),
            panic_routing: u32::from(c.panic_routing),
            max_concurrent: a.max_concurrent,
            queue_capacity: a.queue_capacity,
            essential_priority: a.essential_priority,
            priority_reserve: a.priority_reserve,
            rate_limit_per_s: a.rate_limit_per_s,
            rate_limit_burst: a.rate_limit_burst,
            on_complete: None,
            on_complete_user_data: std::ptr::null_mut(),
            spare_agents: c.spare_agents as u32,
            spare_domains: c.spare_domains as u32,
            keyed_limits_json: std::ptr::null(),
            adaptive_throttle_json: std::ptr::null(),
            max_cost: a.max_cost,
            min_cost: a.min_cost,
            queue_timeout_ns: a.queue_timeout_ns,
        }
    }
}

impl metafed_sim_agent {
    /// What `metafed_sim_agent_init` fills: never fails, answers at once, no fault.
    pub(crate) fn defaults() -> Self {
        Self {
            struct_size: size_of::<Self>() as u32,
            flags: 0,
            error_rate: 0.0,
            latency_ns: 0,
            exponential_mean_ns: 0,
            slow_latency_ns: 0,
            slow_rate: 0.0,
            hang_ns: 0,
            panic_rate: 0.0,
            seed: 0,
        }
    }
}

impl metafed_hedge_config {
    /// What `metafed_hedge_config_init` fills: once, after the 95th percentile of the domain's
    /// recent latency, once 100 latencies are known, over a 1 s rotating window.
    pub(crate) fn defaults() -> Self {
        Self {
            struct_size: size_of::<Self>() as u32,
            max_extra: 1,
            delay_ns: 0,
            percentile: 95.0,
            min_samples: 100,
            reserved: 0,
            period_ns: 1_000_000_000,
        }
    }
}

/// Admission settings as the C struct.
pub(crate) fn admission_to_c(a: &AdmissionConfig) -> metafed_admission_config {
    metafed_admission_config {
        struct_size: size_of::<metafed_admission_config>() as u32,
        max_concurrent: a.max_concurrent.min(u32::MAX as usize) as u32,
        queue_capacity: a.queue_capacity.min(u32::MAX as usize) as u32,
        essential_priority: u32::from(a.essential_priority),
        priority_reserve: a.priority_reserve,
        rate_limit_per_s: a.rate_limit_per_s,
        rate_limit_burst: a.rate_limit_burst,
        max_cost: a.max_cost,
        min_cost: a.min_cost,
        queue_timeout_ns: ns_of(a.queue_timeout),
    }
}
