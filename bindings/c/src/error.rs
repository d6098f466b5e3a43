//! Status codes, the error a call returns, the boundary every exported function runs its body in
//! (errors to statuses and `metafed_last_error`, panics to `METAFED_E_PANIC`), and the version.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A status code: `METAFED_OK` (0), or one of the `METAFED_E_*` errors.
pub type metafed_status = i32;

/// Success.
pub const METAFED_OK: metafed_status = 0;

/// A required pointer argument was NULL.
pub const METAFED_E_NULL: metafed_status = 1;

/// The handle is invalid, stale, or already freed.
pub const METAFED_E_HANDLE: metafed_status = 2;

/// A struct's `struct_size` is not one this library understands.
pub const METAFED_E_STRUCT_SIZE: metafed_status = 3;

/// An argument is out of range or malformed (see `metafed_last_error`).
pub const METAFED_E_INVALID: metafed_status = 4;

/// The topology is invalid (see `metafed_last_error`).
pub const METAFED_E_TOPOLOGY: metafed_status = 5;

/// The configuration is invalid, or its TOML does not parse.
pub const METAFED_E_CONFIG: metafed_status = 6;

/// A file could not be read.
pub const METAFED_E_IO: metafed_status = 7;

/// Backpressure: no room for the task now. Poll completions and retry.
pub const METAFED_E_FULL: metafed_status = 8;

/// The engine is shutting down or stopped.
pub const METAFED_E_SHUTTING_DOWN: metafed_status = 9;

/// The task names a domain the topology does not have (or none).
pub const METAFED_E_UNKNOWN_DOMAIN: metafed_status = 10;

/// The operation did not complete within its timeout.
pub const METAFED_E_TIMEOUT: metafed_status = 11;

/// The ticket names no task in flight.
pub const METAFED_E_UNKNOWN_TICKET: metafed_status = 12;

/// The task was not submitted as waitable.
pub const METAFED_E_NOT_WAITABLE: metafed_status = 13;

/// Another thread is already waiting on this ticket.
pub const METAFED_E_ALREADY_WAITING: metafed_status = 14;

/// The engine's threads could not be started.
pub const METAFED_E_SPAWN: metafed_status = 15;

/// The library panicked (a bug); the call had no effect that can be relied on.
pub const METAFED_E_PANIC: metafed_status = 16;

/// The call would block one of the engine's own threads (it was made from a handler or a
/// completion callback), where it could wait for itself. Only calls that do not wait are
/// allowed there.
pub const METAFED_E_WOULD_DEADLOCK: metafed_status = 17;

/// The deferred attempt had been abandoned (it timed out, another attempt won, or the engine
/// stopped): its answer was dropped, and counted as late. The attempt needs nothing more.
pub const METAFED_E_ABANDONED: metafed_status = 18;

/// The version, as `METAFED_VERSION_MAJOR.MINOR.PATCH` (checked against Cargo.toml by a test).
pub const METAFED_VERSION_MAJOR: u32 = 1;

/// See `METAFED_VERSION_MAJOR`.
pub const METAFED_VERSION_MINOR: u32 = 7;

/// See `METAFED_VERSION_MAJOR`.
pub const METAFED_VERSION_PATCH: u32 = 0;

/// A failed call: its status and message.
pub(crate) struct FfiError {
    pub(crate) status: metafed_status,
    pub(crate) message: String,
}

pub(crate) type FfiResult = Result<(), FfiError>;

pub(crate) fn err(status: metafed_status, message: impl Into<String>) -> FfiError {
    FfiError { status, message: message.into() }
}

impl From<metafed_rs::Error> for FfiError {
    fn from(e: metafed_rs::Error) -> Self {
        let status = match e {
            metafed_rs::Error::Topology(_) => METAFED_E_TOPOLOGY,
            metafed_rs::Error::Config(_) => METAFED_E_CONFIG,
            metafed_rs::Error::Io(_) => METAFED_E_IO,
            metafed_rs::Error::Spawn(_) => METAFED_E_SPAWN,
        };
        err(status, e.to_string())
    }
}

impl From<metafed_rs::SubmitError> for FfiError {
    fn from(e: metafed_rs::SubmitError) -> Self {
        use metafed_rs::SubmitError as S;
        let status = match e {
            S::Full => METAFED_E_FULL,
            S::ShuttingDown => METAFED_E_SHUTTING_DOWN,
            S::UnknownDomain(_) | S::NoDomains => METAFED_E_UNKNOWN_DOMAIN,
            S::InvalidPriority(_) | S::InvalidAttrs(_) => METAFED_E_INVALID,
            S::Timeout => METAFED_E_TIMEOUT,
            S::WouldDeadlock => METAFED_E_WOULD_DEADLOCK,
        };
        err(status, e.to_string())
    }
}

impl From<metafed_rs::WouldDeadlock> for FfiError {
    fn from(e: metafed_rs::WouldDeadlock) -> Self {
        err(METAFED_E_WOULD_DEADLOCK, e.to_string())
    }
}

impl From<metafed_rs::WaitError> for FfiError {
    fn from(e: metafed_rs::WaitError) -> Self {
        use metafed_rs::WaitError as W;
        let status = match e {
            W::Timeout => METAFED_E_TIMEOUT,
            W::UnknownTicket => METAFED_E_UNKNOWN_TICKET,
            W::NotWaitable => METAFED_E_NOT_WAITABLE,
            W::AlreadyWaiting => METAFED_E_ALREADY_WAITING,
            W::WouldDeadlock => METAFED_E_WOULD_DEADLOCK,
        };
        err(status, e.to_string())
    }
}

thread_local! {
    pub(crate) static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// Set while this thread runs an exported function's body: a panic there is reported
    /// through the status and `metafed_last_error`, not printed.
    pub(crate) static IN_BOUNDARY: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Installs, once, a panic hook that keeps the library quiet: a panic inside an exported
/// function (a bug, reported as `METAFED_E_PANIC`) prints nothing on the host's stderr. Panics
/// elsewhere go to the hook that was there before.
pub(crate) fn quiet_panics() {
    pub(crate) static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_BOUNDARY.with(|b| b.get()) == 0 {
                previous(info);
            }
        }));
    });
}

pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an exported function's body: converts its error to a status and the thread's last
/// error message, and a panic to `METAFED_E_PANIC`. The fast path (success) leaves the last
/// error untouched.
#[inline]
pub(crate) fn boundary(name: &str, body: impl FnOnce() -> FfiResult) -> metafed_status {
    quiet_panics();
    IN_BOUNDARY.with(|b| b.set(b.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(body));
    IN_BOUNDARY.with(|b| b.set(b.get() - 1));
    match result {
        Ok(Ok(())) => METAFED_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{name}: {}", e.message));
            e.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("{name}: panicked (a bug in metafed): {what}"));
            METAFED_E_PANIC
        }
    }
}

/// The library's version, "MAJOR.MINOR.PATCH". A static string; never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A static, human-readable name for a status code; never NULL ("unknown status" for codes
/// this library does not define).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_status_str(status: metafed_status) -> *const c_char {
    let s: &'static str = match status {
        METAFED_OK => "ok\0",
        METAFED_E_NULL => "a required pointer was NULL\0",
        METAFED_E_HANDLE => "invalid, stale or freed handle\0",
        METAFED_E_STRUCT_SIZE => "wrong struct_size\0",
        METAFED_E_INVALID => "invalid argument\0",
        METAFED_E_TOPOLOGY => "invalid topology\0",
        METAFED_E_CONFIG => "invalid configuration\0",
        METAFED_E_IO => "I/O error\0",
        METAFED_E_FULL => "engine full (backpressure)\0",
        METAFED_E_SHUTTING_DOWN => "engine shutting down\0",
        METAFED_E_UNKNOWN_DOMAIN => "unknown domain\0",
        METAFED_E_TIMEOUT => "timed out\0",
        METAFED_E_UNKNOWN_TICKET => "unknown ticket\0",
        METAFED_E_NOT_WAITABLE => "task not waitable\0",
        METAFED_E_ALREADY_WAITING => "already waiting on this ticket\0",
        METAFED_E_SPAWN => "could not start threads\0",
        METAFED_E_PANIC => "internal panic\0",
        METAFED_E_WOULD_DEADLOCK => "would deadlock: blocking call on an engine thread\0",
        METAFED_E_ABANDONED => "attempt abandoned; its answer was dropped\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}

/// The detailed message of the last call on this thread that failed ("" if none has). The
/// pointer is valid until the next failing call on this thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
