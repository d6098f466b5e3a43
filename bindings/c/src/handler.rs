//! C function pointers as the engine's callbacks: an agent run by a C handler (which may answer at
//! once or defer the attempt), the completion callback and the event callback.

use crate::convert::check_flags;
use crate::error::{FfiError, err};
use crate::types::{
    METAFED_AGENT_ISOLATED, METAFED_HANDLER_ERROR, METAFED_HANDLER_OK, METAFED_HANDLER_PENDING, METAFED_HANDLER_RAISED,
    metafed_completion, metafed_event, metafed_finalizer_fn, metafed_handler_fn, metafed_request, metafed_response,
};
use metafed_rs::ffi_support::{Agent, Call, CallCx};
use metafed_rs::{AgentSpec, Completion, FailureKind, Request};
use std::ffi::c_void;
use std::sync::Arc;

thread_local! {
    /// The context of the C handler call running on this thread, if any: what
    /// `metafed_request_defer` checks a request's `internal` field against, so that a request
    /// kept past its call is refused instead of followed.
    pub(crate) static CURRENT_CALL: std::cell::Cell<*mut c_void> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Runs `f` (a C handler's call) with `cx` registered as the current call.
pub(crate) fn with_current_call<R>(cx: *mut c_void, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT_CALL.with(|c| c.replace(cx));
    let r = f();
    CURRENT_CALL.with(|c| c.set(previous));
    r
}

/// A handler behind a C function pointer. The caller of `metafed_topology_add_callback_agent`
/// promises that `f` may be called with `user_data` from the threads the documentation names.
pub(crate) struct CHandler {
    pub(crate) f: unsafe extern "C" fn(*mut c_void, *const metafed_request, *mut metafed_response) -> i32,
    pub(crate) user_data: *mut c_void,
    pub(crate) finalizer: metafed_finalizer_fn,
}

// SAFETY: the C caller guarantees `f` and `user_data` may be used from the engine's threads
// (documented on `metafed_topology_add_callback_agent`).
unsafe impl Send for CHandler {}

// SAFETY: as above.
unsafe impl Sync for CHandler {}

impl Agent for CHandler {
    fn call(&self, r: &Request<'_>, cx: &mut CallCx<'_>) -> Call {
        let ctx = (cx as *mut CallCx<'_>).cast::<c_void>();
        let req = metafed_request {
            struct_size: size_of::<metafed_request>() as u32,
            domain: r.domain.0,
            agent: r.agent.0,
            task_id: r.task_id,
            payload: r.payload,
            data: if r.data.is_empty() { std::ptr::null() } else { r.data.as_ptr() },
            data_len: r.data.len(),
            attempt: r.attempt,
            fanout: r.fanout,
            priority: u32::from(r.priority),
            ticket: r.ticket.0,
            time_left_ns: cx.time_left_ns(),
            internal: ctx,
        };
        let mut resp = metafed_response {
            struct_size: size_of::<metafed_response>() as u32,
            code: 0,
            value: 0,
            data: std::ptr::null(),
            data_len: 0,
        };
        // SAFETY: `f` is the caller's handler; both pointers are valid for the call.
        let rc = crate::handler::with_current_call(ctx, || unsafe { (self.f)(self.user_data, &req, &mut resp) });
        match rc {
            METAFED_HANDLER_OK if resp.data_len == 0 => Call::Value(resp.value),
            METAFED_HANDLER_OK if resp.data.is_null() => Call::Failed(FailureKind::InvalidReply, rc),
            METAFED_HANDLER_OK => {
                // SAFETY: per the contract, `data` holds `data_len` bytes until the handler
                // returns, which it has; we copy them now.
                let body = unsafe { std::slice::from_raw_parts(resp.data, resp.data_len) }.to_vec();
                Call::Body(resp.value, body)
            }
            METAFED_HANDLER_ERROR => Call::Failed(FailureKind::Error, resp.code),
            METAFED_HANDLER_RAISED => Call::Failed(FailureKind::Panicked, resp.code),
            METAFED_HANDLER_PENDING => Call::Pending,
            other => Call::Failed(FailureKind::InvalidReply, other),
        }
    }
}

impl Drop for CHandler {
    fn drop(&mut self) {
        if let Some(fin) = self.finalizer {
            // SAFETY: the caller's finalizer, called once, when nothing can call `f` again.
            unsafe { fin(self.user_data) };
        }
    }
}

pub(crate) fn callback_spec(
    handler: metafed_handler_fn,
    user_data: *mut c_void,
    finalizer: metafed_finalizer_fn,
    flags: u32,
) -> Result<AgentSpec, FfiError> {
    let Some(f) = handler else { return Err(err(crate::error::METAFED_E_NULL, "handler is NULL")) };
    let isolated = check_flags(flags, METAFED_AGENT_ISOLATED)?;
    let h = CHandler { f, user_data, finalizer };
    let spec = metafed_rs::ffi_support::agent_spec(Arc::new(h));
    Ok(if isolated { spec.isolated() } else { spec })
}

/// The C caller's completion callback and its user data.
pub(crate) struct CCallback {
    pub(crate) f: unsafe extern "C" fn(*mut c_void, *const metafed_completion),
    pub(crate) user_data: *mut c_void,
    /// The `struct_size` its completions say: the library's, or ABI 1.0's for a program that
    /// made its engine with an earlier config (every field is there either way).
    pub(crate) completion_size: u32,
}

impl CCallback {
    pub(crate) fn call(&self, c: &mut Completion) {
        let mut cc = metafed_completion::with_bodies(c);
        cc.struct_size = self.completion_size;
        // SAFETY: the caller's callback; the completion is valid for the call.
        unsafe { (self.f)(self.user_data, &cc) };
        // SAFETY: made by `with_bodies` just above; the callback does not keep it.
        unsafe { cc.release() };
    }
}

/// The C caller's event callback and its user data.
pub(crate) struct CEvents {
    pub(crate) f: unsafe extern "C" fn(*mut c_void, *const metafed_event),
    pub(crate) user_data: *mut c_void,
}

// SAFETY: the caller guarantees the callback may run on any thread (the contract below).
unsafe impl Send for CEvents {}

// SAFETY: as above.
unsafe impl Sync for CEvents {}
