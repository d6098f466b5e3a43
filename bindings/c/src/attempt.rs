//! `metafed_attempt`: deferred attempts from C. A handler that waits on I/O calls
//! `metafed_request_defer` during its call, returns `METAFED_HANDLER_PENDING`, and later, from
//! any thread, completes the attempt once with `metafed_attempt_complete`.
//!
//! Ownership: the handler owns the attempt from `metafed_request_defer` until it completes it.
//! It must complete every attempt it deferred exactly once, even one the engine has abandoned
//! (`metafed_attempt_is_abandoned` says so; completing it then returns `METAFED_E_ABANDONED` and
//! costs nothing): the engine reuses the attempt's slot only after that. A second completion,
//! or a completion after the engine was freed, is refused with `METAFED_E_HANDLE`.

use crate::convert::{answer, non_null};
use crate::error::{METAFED_E_ABANDONED, METAFED_E_HANDLE, METAFED_E_INVALID, boundary, err, metafed_status};
use crate::handler::CURRENT_CALL;
use crate::types::{metafed_attempt, metafed_completion, metafed_request, metafed_response};
use metafed_rs::ffi_support::{CallCx, Refused};

/// Packs a C attempt id: generation, worker, slot.
pub(crate) fn pack(worker: u16, slot: u32, g: u32) -> u64 {
    (u64::from(g) << 32) | (u64::from(worker) << 22) | u64::from(slot & ((1 << 22) - 1))
}

pub(crate) fn unpack(id: u64) -> (usize, u32, u32) {
    (((id >> 22) & 0x3ff) as usize, (id & ((1 << 22) - 1)) as u32, (id >> 32) as u32)
}

/// Defers the attempt of the handler call that received `request`: `*out` receives the attempt,
/// which the handler completes later, from any thread, with `metafed_attempt_complete`; the
/// handler then returns `METAFED_HANDLER_PENDING`. Callable only during that call, once.
/// `METAFED_E_FULL` when the worker has no attempt slot free (the handler should then answer at
/// once, typically with `METAFED_HANDLER_ERROR`).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_request_defer(request: *const metafed_request, out: *mut metafed_attempt) -> metafed_status {
    boundary("metafed_request_defer", || {
        non_null(request, "request")?;
        non_null(out, "out")?;
        // SAFETY: not NULL; points to the request the library passed the handler.
        let ctx = unsafe { (*request).internal };
        if ctx.is_null() || CURRENT_CALL.with(|c| c.get()) != ctx {
            return Err(err(
                METAFED_E_INVALID,
                "only a handler may defer, during its call, with the request it was given",
            ));
        }
        // SAFETY: `ctx` is the context of the call running on this thread (checked above), a
        // `CallCx` that outlives the call.
        let cx = unsafe { &mut *ctx.cast::<CallCx<'_>>() };
        let engine = cx.engine_handle();
        let Some(attempt) = cx.defer() else {
            return Err(if cx.handed_out() {
                err(METAFED_E_INVALID, "this call's attempt is already deferred")
            } else {
                err(crate::error::METAFED_E_FULL, "no attempt slot is free on this worker; answer at once")
            });
        };
        let (worker, slot, g) = attempt.into_raw();
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out = metafed_attempt { engine, id: pack(worker, slot, g) } };
        Ok(())
    })
}

/// Completes a deferred attempt, once, from any thread: `result` is `METAFED_HANDLER_OK` (with
/// `response->value` and, if any, `response->data`), `METAFED_HANDLER_ERROR` (with
/// `response->code`), `METAFED_HANDLER_RAISED`, or `METAFED_HANDLER_PENDING` to drop it (a
/// failure of kind `METAFED_FAILURE_DROPPED`). `response` may be NULL (value, code 0). The
/// reply bytes are copied before the call returns.
///
/// Returns `METAFED_OK`; `METAFED_E_ABANDONED` if the engine had abandoned the attempt (the
/// answer is dropped; the attempt needs nothing more); `METAFED_E_HANDLE` if the attempt was
/// completed already, was never issued, or its engine has been freed.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_complete(
    attempt: metafed_attempt,
    result: i32,
    response: *const metafed_response,
) -> metafed_status {
    boundary("metafed_attempt_complete", || {
        let answer = answer(result, response)?;
        let (worker, slot, g) = unpack(attempt.id);
        crate::handles::with_engine_by_value(attempt.engine as usize, |e| {
            match metafed_rs::ffi_support::complete_attempt(e, worker, slot, g, answer) {
                None => Err(err(METAFED_E_HANDLE, "the attempt handle names no attempt")),
                Some(Ok(())) => Ok(()),
                Some(Err(Refused::Abandoned)) => Err(err(
                    METAFED_E_ABANDONED,
                    "the attempt had been abandoned (timed out, another attempt won, or the engine stopped); the answer was dropped",
                )),
                Some(Err(Refused::Stale)) => Err(err(
                    METAFED_E_HANDLE,
                    "the attempt handle is stale: the attempt was completed already, or never issued",
                )),
            }
        })
        .map_err(|e| {
            if e.status == METAFED_E_HANDLE && e.message.starts_with("engine handle") {
                err(METAFED_E_HANDLE, "the attempt's engine has been freed: nothing to complete")
            } else {
                e
            }
        })
    })
}

/// Whether the engine has abandoned a deferred attempt (`*out` 1) or still waits for it (0): a
/// handler can drop the work of an abandoned one (then complete it, which costs nothing).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_is_abandoned(attempt: metafed_attempt, out: *mut u32) -> metafed_status {
    boundary("metafed_attempt_is_abandoned", || {
        non_null(out, "out")?;
        let (worker, slot, g) = unpack(attempt.id);
        let abandoned = crate::handles::with_engine_by_value(attempt.engine as usize, |e| {
            Ok(metafed_rs::ffi_support::attempt_abandoned(e, worker, slot, g))
        })
        .unwrap_or(true); // its engine is gone: nobody waits for it
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out = u32::from(abandoned) };
        Ok(())
    })
}

/// Frees the reply bytes a completion owns (see `metafed_completion.bodies`) and sets
/// `bodies` to NULL and `bodies_len` to 0. Any completion the library wrote may be released,
/// with or without bytes, once; NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_completion_release(completion: *mut metafed_completion) {
    if completion.is_null() {
        return;
    }
    let _ = boundary("metafed_completion_release", || {
        // SAFETY: not NULL; a completion the library wrote (of the caller's size, at least
        // ABI 1.0's), per the contract.
        unsafe { metafed_completion::release_at(completion) };
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_round_trip() {
        for (w, s, g) in [(0u16, 0u32, 1u32), (1023, (1 << 22) - 1, u32::MAX), (7, 12345, 99)] {
            let id = pack(w, s, g);
            assert_eq!(unpack(id), (usize::from(w), s, g));
        }
    }
}
