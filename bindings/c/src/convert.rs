//! Conversions between the C types and the engine's: arguments checked and turned into Rust
//! values (naming the argument when one is bad), results written into C structs.

use crate::error::{FfiError, FfiResult, METAFED_E_INVALID, METAFED_E_NULL, METAFED_E_STRUCT_SIZE, err};
use crate::types::{
    METAFED_AGENT_ISOLATED, METAFED_BREAKER_DISABLED, METAFED_BREAKER_FORCED_OPEN, METAFED_BREAKER_NORMAL,
    METAFED_FAULT_HANG, METAFED_FAULT_NONE, METAFED_FAULT_PANIC, METAFED_HANDLER_ERROR, METAFED_HANDLER_OK,
    METAFED_HANDLER_PENDING, METAFED_HANDLER_RAISED, METAFED_LATENCY_EXPONENTIAL, METAFED_LATENCY_FIXED,
    METAFED_LATENCY_LONG_TAIL, METAFED_LATENCY_NONE, METAFED_LEVEL_AGENT, METAFED_LEVEL_DOMAIN, METAFED_LEVEL_META,
    METAFED_MAX_DURATION_MS, METAFED_MAX_FAILURES, METAFED_SIM_IO, METAFED_TASK_WAITABLE, metafed_body,
    metafed_breaker_config, metafed_breaker_event, metafed_completion, metafed_engine_config, metafed_failure,
    metafed_response, metafed_shutdown_report, metafed_sim_agent, metafed_task,
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

/// A duration argument in milliseconds: finite, from 0 to `METAFED_MAX_DURATION_MS`.
pub(crate) fn duration_ms(ms: f64, what: &str) -> Result<std::time::Duration, FfiError> {
    if ms.is_finite() && (0.0..=METAFED_MAX_DURATION_MS as f64).contains(&ms) {
        Ok(std::time::Duration::from_secs_f64(ms / 1e3))
    } else {
        Err(err(METAFED_E_INVALID, format!("{what} must be 0 to {METAFED_MAX_DURATION_MS} ms (30 days), got {ms}")))
    }
}

/// A boolean-like argument: 0 or 1, nothing else.
pub(crate) fn flag(v: u32, what: &str) -> Result<bool, FfiError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(err(METAFED_E_INVALID, format!("{what} must be 0 or 1, got {v}"))),
    }
}

/// Checks the `struct_size` a caller gave: at least the size of the struct in this library's
/// header, and not absurd.
pub(crate) fn check_size(given: u32, ours: usize, what: &str) -> Result<(), FfiError> {
    if (given as usize) < ours || given > 65_536 {
        return Err(err(
            METAFED_E_STRUCT_SIZE,
            format!("{what}.struct_size is {given}; this library expects at least {ours} (set it to sizeof({what}))"),
        ));
    }
    Ok(())
}

/// A timeout in milliseconds: negative (or longer than `METAFED_MAX_DURATION_MS`) waits
/// forever, 0 does not wait.
pub(crate) fn timeout(ms: i64) -> Option<Duration> {
    (ms >= 0 && ms as u64 <= METAFED_MAX_DURATION_MS).then(|| Duration::from_millis(ms as u64))
}

pub(crate) fn engine_config(c: &metafed_engine_config) -> Result<EngineConfig, FfiError> {
    check_size(c.struct_size, size_of::<metafed_engine_config>(), "metafed_engine_config")?;
    let cfg = EngineConfig {
        workers: c.workers as usize,
        pin: flag(c.pin, "pin")?,
        max_in_flight: c.max_in_flight as usize,
        worker_capacity: c.worker_capacity as usize,
        batch: c.batch as usize,
        idle_spins: c.idle_spins,
        idle_yield_us: c.idle_yield_us,
        isolated_queue: c.isolated_queue as usize,
        panic_routing: flag(c.panic_routing, "panic_routing")?,
        drain_timeout: Duration::from_millis(u64::from(c.drain_timeout_ms)),
        admission: AdmissionConfig {
            max_concurrent: c.max_concurrent as usize,
            queue_capacity: c.queue_capacity as usize,
            essential_priority: c.essential_priority.min(255) as u8,
            priority_reserve: c.priority_reserve,
            rate_limit_per_s: c.rate_limit_per_s,
            rate_limit_burst: c.rate_limit_burst,
        },
        ..EngineConfig::default()
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
        elapsed_us: r.elapsed_us,
    }
}

pub(crate) fn write_opt<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: not NULL; per the API contract it points to writable storage.
        unsafe { *out = v };
    }
}

pub(crate) fn sim_agent(s: &metafed_sim_agent) -> Result<SimAgent, FfiError> {
    check_size(s.struct_size, size_of::<metafed_sim_agent>(), "metafed_sim_agent")?;
    let latency = match s.latency_kind {
        METAFED_LATENCY_NONE => Latency::None,
        METAFED_LATENCY_FIXED => Latency::Fixed { us: s.latency_us },
        METAFED_LATENCY_EXPONENTIAL => Latency::Exponential { mean_us: s.latency_us },
        METAFED_LATENCY_LONG_TAIL => {
            Latency::LongTail { base_us: s.latency_us, slow_us: s.slow_us, slow_rate: s.slow_rate }
        }
        k => return Err(err(METAFED_E_INVALID, format!("unknown latency_kind {k}"))),
    };
    let fault = match s.fault_kind {
        METAFED_FAULT_NONE => SimFault::None,
        METAFED_FAULT_HANG if s.fault_value >= 0.0 && s.fault_value.is_finite() => {
            SimFault::Hang { ms: s.fault_value as u64 }
        }
        METAFED_FAULT_PANIC => SimFault::Panic { rate: s.fault_value },
        k => return Err(err(METAFED_E_INVALID, format!("invalid fault_kind {k} with fault_value {}", s.fault_value))),
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

/// Reads and checks a caller's `metafed_breaker_config`.
pub(crate) fn breaker_config_arg(config: *const metafed_breaker_config) -> Result<BreakerConfig, FfiError> {
    non_null(config, "config")?;
    // SAFETY: not NULL; points to a `metafed_breaker_config` per the contract.
    let c = unsafe { &*config };
    check_size(c.struct_size, size_of::<metafed_breaker_config>(), "metafed_breaker_config")?;
    let dur = duration_ms;
    let cfg = BreakerConfig {
        timeout: dur(c.timeout_ms, "timeout_ms")?,
        consecutive_failures: c.consecutive_failures,
        failure_rate: c.failure_rate,
        window: dur(c.window_ms, "window_ms")?,
        min_calls: c.min_calls,
        open_base: dur(c.open_base_ms, "open_base_ms")?,
        open_max: dur(c.open_max_ms, "open_max_ms")?,
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

/// A breaker configuration as the C struct.
pub(crate) fn breaker_config_to_c(c: &BreakerConfig) -> metafed_breaker_config {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    metafed_breaker_config {
        struct_size: size_of::<metafed_breaker_config>() as u32,
        mode: c.mode as i32,
        timeout_ms: ms(c.timeout),
        consecutive_failures: c.consecutive_failures,
        min_calls: c.min_calls,
        failure_rate: c.failure_rate,
        window_ms: ms(c.window),
        open_base_ms: ms(c.open_base),
        open_max_ms: ms(c.open_max),
        half_open_probes: c.half_open_probes,
        reserved: 0,
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
            bodies_len: 0,
            reserved2: 0,
            bodies: std::ptr::null(),
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
                    metafed_body { domain: d.0, data: data.cast::<u8>(), len: data.len() }
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
        if self.bodies.is_null() {
            self.bodies_len = 0;
            return;
        }
        let n = self.bodies_len as usize;
        // SAFETY: per the contract, `bodies` is a leaked `Box<[metafed_body]>` of `n` entries,
        // each of whose `data` is a leaked `Box<[u8]>` of `len` bytes; released once, here.
        unsafe {
            let entries = Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.bodies.cast_mut(), n));
            for e in entries.iter() {
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(e.data.cast_mut(), e.len)));
            }
        }
        self.bodies = std::ptr::null();
        self.bodies_len = 0;
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

/// Checks a task and turns it into a Rust task that borrows its bytes.
///
/// # Safety
/// `t.data` must be valid for `t.data_len` bytes for the lifetime `'a` (or `data_len` 0).
pub(crate) unsafe fn task<'a>(t: &metafed_task) -> Result<metafed_rs::Task<'a>, FfiError> {
    check_size(t.struct_size, size_of::<metafed_task>(), "metafed_task")?;
    if t.deadline_us > METAFED_MAX_DURATION_MS * 1000 {
        return Err(err(
            METAFED_E_INVALID,
            format!(
                "deadline_us is {}; at most {} (METAFED_MAX_DURATION_MS)",
                t.deadline_us,
                METAFED_MAX_DURATION_MS * 1000
            ),
        ));
    }
    if t.priority > 3 {
        return Err(err(METAFED_E_INVALID, format!("priority {} is out of range (0 highest .. 3 lowest)", t.priority)));
    }
    if t.flags & !METAFED_TASK_WAITABLE != 0 {
        return Err(err(METAFED_E_INVALID, format!("unknown task flags {:#x}", t.flags)));
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
        deadline: (t.deadline_us > 0).then(|| std::time::Duration::from_micros(t.deadline_us)),
        waitable: t.flags & METAFED_TASK_WAITABLE != 0,
    })
}

pub(crate) fn answer(result: i32, response: *const metafed_response) -> Result<Answer, FfiError> {
    let (code, value, data) = if response.is_null() {
        (0, 0, Vec::new())
    } else {
        // SAFETY: not NULL; points to a response per the contract.
        let r = unsafe { &*response };
        check_size(r.struct_size, size_of::<metafed_response>(), "metafed_response")?;
        let data = if r.data_len == 0 || result != METAFED_HANDLER_OK {
            Vec::new()
        } else if r.data.is_null() {
            return Err(err(crate::error::METAFED_E_NULL, "response data is NULL but data_len is not 0"));
        } else {
            // SAFETY: per the contract, `data` holds `data_len` readable bytes.
            unsafe { std::slice::from_raw_parts(r.data, r.data_len) }.to_vec()
        };
        (r.code, r.value, data)
    };
    Ok(match result {
        METAFED_HANDLER_OK => Answer::ok(value, data),
        METAFED_HANDLER_ERROR => Answer::failed(FailureKind::Error, code),
        METAFED_HANDLER_RAISED => Answer::failed(FailureKind::Panicked, code),
        METAFED_HANDLER_PENDING => Answer::failed(FailureKind::Dropped, code),
        other => {
            return Err(err(
                METAFED_E_INVALID,
                format!("result must be METAFED_HANDLER_OK, _ERROR, _RAISED or _PENDING (to drop it), got {other}"),
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
