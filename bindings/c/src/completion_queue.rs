//! `metafed_completion_queue` (ABI 1.7): the completions of the tasks one consumer submitted,
//! for that consumer alone, with a file descriptor its event loop watches. A task names its queue
//! in `metafed_task.completion_queue`; the loop watches `metafed_completion_queue_get_fd` and
//! takes completions in batches with `metafed_completion_queue_take` on its own thread, with no
//! thread in between (no `metafed_engine_poll`, no callback on a worker). The handle's type,
//! `metafed_completion_queue`, is in `types` (a task names one).

use crate::convert::{non_null, stride_of};
use crate::error::{FfiError, METAFED_E_INVALID, boundary, err, metafed_status};
use crate::handles::{HandleTable, metafed_engine, with_engine};
use crate::types::{metafed_completion, metafed_completion_queue};
use metafed_rs::{CompletionQueue, Engine};
use std::sync::Arc;

/// A queue of completions for one consumer. Opaque; a handle, not a pointer to memory. Made by
/// `metafed_engine_completion_queue_new`; any thread may take from it, one taker at a time.
static QUEUES: HandleTable<Arc<CompletionQueue>> = HandleTable::new("completion queue", 4);

/// Runs `f` on the queue `q` names, after checking that `engine` made it (`what` names the
/// argument in the error).
pub(crate) fn with_queue_of<R>(
    q: *const metafed_completion_queue,
    engine: &Engine,
    what: &str,
    f: impl FnOnce(&Arc<CompletionQueue>) -> Result<R, FfiError>,
) -> Result<R, FfiError> {
    QUEUES.with(q as usize, |cq| {
        if !engine.owns(cq) {
            return Err(err(METAFED_E_INVALID, format!("{what} was made by another engine")));
        }
        f(cq)
    })
}

/// Makes a completion queue of `engine`'s; `*out` receives it. Tasks that name it
/// (`metafed_task.completion_queue`) are delivered to it and nowhere else. It holds as many
/// completions as the engine has task slots, so none is ever refused; each holds its slot until
/// taken.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_completion_queue_new(
    engine: *mut metafed_engine,
    out: *mut *mut metafed_completion_queue,
) -> metafed_status {
    boundary("metafed_engine_completion_queue_new", || {
        non_null(out, "out")?;
        let q = with_engine(engine, |e| Ok(e.completion_queue()))?;
        let h = QUEUES.insert(Arc::new(q))?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out = h as *mut metafed_completion_queue };
        Ok(())
    })
}

/// Frees a queue (NULL does nothing). Completions waiting in it, and those of its tasks still
/// running when they finish, are discarded (their slots freed). Free it after the engine's
/// shutdown to take every completion first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_completion_queue_free(queue: *mut metafed_completion_queue) {
    if queue.is_null() {
        return;
    }
    let _ = boundary("metafed_completion_queue_free", || QUEUES.remove(queue as usize, |_| ()));
}

/// The queue's file descriptor: readable while completions wait (level-triggered: it stays
/// readable until a take leaves the queue empty). Watch it for reading (`poll`, `epoll`,
/// `loop.add_reader`); never read, write or close it: `metafed_completion_queue_take` reads it.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_completion_queue_get_fd(
    queue: *const metafed_completion_queue,
    out_fd: *mut i32,
) -> metafed_status {
    boundary("metafed_completion_queue_get_fd", || {
        non_null(out_fd, "out_fd")?;
        let fd = QUEUES.with(queue as usize, |q| crate::queue::fd_of(q.fd()))?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_fd = fd };
        Ok(())
    })
}

/// Moves up to `cap` waiting completions into `out` (an array whose stride is
/// `out[0].struct_size`, which the caller sets), oldest first, and their count into `*out_n` (0
/// when none waits: it never waits). Release each completion that has reply bytes with
/// `metafed_completion_release`, as those of `metafed_engine_poll`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_completion_queue_take(
    queue: *mut metafed_completion_queue,
    out: *mut metafed_completion,
    cap: usize,
    out_n: *mut usize,
) -> metafed_status {
    boundary("metafed_completion_queue_take", || {
        non_null(out_n, "out_n")?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_n = 0 };
        if cap == 0 {
            return Ok(());
        }
        non_null(out, "out")?;
        // SAFETY: `out` points to at least one completion per the contract.
        let stride = unsafe { stride_of(out) }?;
        let total = QUEUES.with(queue as usize, |q| {
            // SAFETY: `out` holds `cap` completions of `stride` bytes per the contract.
            unsafe { crate::convert::completions_into(out, stride, cap, |buf, _| Ok(q.take(buf))) }
        })?;
        // SAFETY: checked above.
        unsafe { *out_n = total };
        Ok(())
    })
}
