//! `metafed_attempt_queue`: agents whose attempts an event loop of the caller's runs (asyncio,
//! libuv, epoll). The worker defers each attempt of such an agent and queues it with a copy of its
//! request, calling no code of the caller's; the loop watches the queue's file descriptor, takes
//! the attempts in batches (`metafed_attempt_queue_take`) and completes them, one by one or many
//! in one call (`metafed_attempts_complete`). The agent timeout counts from the take.

use crate::attempt::pack;
use crate::convert::{answer_of, non_null, read_element, stride_of, write_opt, write_out};
use crate::error::{
    FfiError, METAFED_E_ABANDONED, METAFED_E_HANDLE, METAFED_E_INVALID, METAFED_OK, boundary, err, metafed_status,
};
use crate::handles::metafed_topology;
use crate::handles::{HandleTable, with_builder};
use crate::topology::check_domain;
use crate::types::{metafed_attempt, metafed_attempt_queue_stats, metafed_queued_attempt, metafed_response};
use metafed_rs::{AgentSpec, AttemptQueue, DomainId, QueuedAttempt};
use std::ffi::c_char;
use std::sync::Mutex;

/// A queue of deferred attempts that an event loop takes and runs. Opaque; a handle, not a
/// pointer to memory. Agents added with `metafed_topology_add_queue_agent` queue their attempts
/// in it; any thread may take them, one taker at a time.
pub struct metafed_attempt_queue {
    _private: [u8; 0],
}

/// A queue, and what its takes reuse: the attempts taken, and the request bytes of those the
/// last take handed out (valid until the next).
struct Queue {
    queue: AttemptQueue,
    scratch: Mutex<(Vec<QueuedAttempt>, Vec<Vec<u8>>)>,
}

static QUEUES: HandleTable<Queue> = HandleTable::new("attempt queue", 3);

fn with_queue<R>(
    q: *const metafed_attempt_queue,
    f: impl FnOnce(&Queue) -> Result<R, FfiError>,
) -> Result<R, FfiError> {
    QUEUES.with(q as usize, f)
}

/// Makes a queue for at most `capacity` waiting attempts (0: 65,536); `*out` receives it. An
/// attempt that finds the queue full fails at once as overloaded (the domain fails over).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_queue_new(capacity: u32, out: *mut *mut metafed_attempt_queue) -> metafed_status {
    boundary("metafed_attempt_queue_new", || {
        non_null(out, "out")?;
        if capacity > 1 << 24 {
            return Err(err(
                METAFED_E_INVALID,
                format!("capacity must be at most {} (0: 65,536), got {capacity}", 1 << 24),
            ));
        }
        let queue = if capacity == 0 { AttemptQueue::default() } else { AttemptQueue::new(capacity as usize) };
        let h = QUEUES.insert(Queue { queue, scratch: Mutex::new((Vec::new(), Vec::new())) })?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out = h as *mut metafed_attempt_queue };
        Ok(())
    })
}

/// Frees the caller's handle on a queue (NULL does nothing). Agents that use it keep it until
/// their topology and engines are freed; attempts still waiting then fail (kind
/// `METAFED_FAILURE_DROPPED`), never lost.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_queue_free(queue: *mut metafed_attempt_queue) {
    if queue.is_null() {
        return;
    }
    let _ = boundary("metafed_attempt_queue_free", || QUEUES.remove(queue as usize, |_| ()));
}

/// The queue's file descriptor: readable while attempts wait (level-triggered: it stays readable
/// until a take leaves the queue empty). Watch it for reading (`poll`, `epoll`,
/// `loop.add_reader`); never read, write or close it: `metafed_attempt_queue_take` reads it.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_queue_get_fd(
    queue: *const metafed_attempt_queue,
    out_fd: *mut i32,
) -> metafed_status {
    boundary("metafed_attempt_queue_get_fd", || {
        non_null(out_fd, "out_fd")?;
        let fd = with_queue(queue, |q| fd_of(q.queue.fd()))?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_fd = fd };
        Ok(())
    })
}

/// A queue's descriptor, or the error for a queue without one (its socketpair failed).
pub(crate) fn fd_of(fd: Option<i32>) -> Result<i32, FfiError> {
    fd.ok_or_else(|| err(crate::error::METAFED_E_IO, "the queue has no file descriptor (socketpair failed)"))
}

/// Adds an agent whose attempts wait in `queue` for the caller's loop; its id goes to
/// `*out_agent` (may be NULL). `tag` comes back with each of its attempts
/// (`metafed_queued_attempt.tag`), to tell the loop which of its handlers runs them. `flags`
/// must be 0. The topology (and every engine started from it) holds the queue from here on.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_add_queue_agent(
    topology: *mut metafed_topology,
    domain: u16,
    name: *const c_char,
    queue: *const metafed_attempt_queue,
    tag: u64,
    flags: u32,
    out_agent: *mut u16,
) -> metafed_status {
    boundary("metafed_topology_add_queue_agent", || {
        // SAFETY: NULL or a NUL-terminated string per the contract.
        let name = unsafe { crate::convert::str_arg(name, "name") }?;
        if flags != 0 {
            return Err(err(METAFED_E_INVALID, format!("flags must be 0 for a queue agent, got {flags:#x}")));
        }
        let q = with_queue(queue, |q| Ok(q.queue.clone()))?;
        let a = with_builder(topology, |b| {
            check_domain(b, domain)?;
            Ok(b.agent(DomainId(domain), name, AgentSpec::queued(q, tag))?)
        })?;
        write_opt(out_agent, a.0);
        Ok(())
    })
}

/// Takes up to `cap` waiting attempts into `out` (an array whose stride is `out[0].struct_size`,
/// which the caller sets), oldest first; their count goes to `*out_n` (0 when none waits: it
/// never waits). Each one's agent timeout counts from now: complete it within its `timeout_ns`
/// (`METAFED_HANDLER_TIMED_OUT` when it runs out). Attempts the engine abandoned while they
/// waited are not handed out. The `data` of each points to bytes the queue keeps until the next
/// take from this queue or its free. One taker at a time (calls are serialised).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_queue_take(
    queue: *mut metafed_attempt_queue,
    out: *mut metafed_queued_attempt,
    cap: usize,
    out_n: *mut usize,
) -> metafed_status {
    boundary("metafed_attempt_queue_take", || {
        non_null(out_n, "out_n")?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_n = 0 };
        if cap == 0 {
            return Ok(());
        }
        non_null(out, "out")?;
        // SAFETY: `out` points to at least one element per the contract.
        let stride = unsafe { stride_of(out) }?;
        with_queue(queue, |q| {
            let mut scratch = q.scratch.lock().unwrap_or_else(|e| e.into_inner());
            let (taken, data) = &mut *scratch;
            taken.clear();
            data.clear();
            let n = q.queue.take(cap, taken);
            for (i, a) in taken.drain(..).enumerate() {
                let engine = a.engine_handle();
                let r = a.request;
                let bytes = r.data;
                let (worker, slot, g) = a.attempt.into_raw();
                let v = metafed_queued_attempt {
                    struct_size: size_of::<metafed_queued_attempt>() as u32,
                    domain: r.domain.0,
                    agent: r.agent.0,
                    attempt: metafed_attempt { engine, id: pack(worker, slot, g) },
                    tag: a.tag,
                    ticket: r.ticket.0,
                    task_id: r.task_id,
                    payload: r.payload,
                    data: if bytes.is_empty() { std::ptr::null() } else { bytes.as_ptr() },
                    data_len: bytes.len(),
                    attempt_number: r.attempt,
                    fanout: r.fanout,
                    priority: u32::from(r.priority),
                    waited_ns: a.waited.as_nanos().min(u128::from(u64::MAX)) as u64,
                    timeout_ns: a.timeout.as_nanos().min(u128::from(u64::MAX)) as u64,
                };
                if !bytes.is_empty() {
                    data.push(bytes);
                }
                // SAFETY: element `i` < `n` <= `cap` lies within the caller's array of `stride`
                // bytes each; its `struct_size` is written first (the stride).
                unsafe {
                    let at = out.cast::<u8>().add(i * stride).cast::<metafed_queued_attempt>();
                    at.cast::<u32>().write_unaligned(stride as u32);
                    write_out(at, &v)?;
                }
            }
            // SAFETY: not NULL; writable per the contract.
            unsafe { *out_n = n };
            Ok(())
        })
    })
}

/// What the queue has seen, into `*out` (its `struct_size` set by the caller).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempt_queue_get_stats(
    queue: *const metafed_attempt_queue,
    out: *mut metafed_attempt_queue_stats,
) -> metafed_status {
    boundary("metafed_attempt_queue_get_stats", || {
        non_null(out, "out")?;
        let (s, capacity) = with_queue(queue, |q| Ok((q.queue.stats(), q.queue.capacity() as u64)))?;
        let v = metafed_attempt_queue_stats {
            struct_size: size_of::<metafed_attempt_queue_stats>() as u32,
            capacity,
            waiting: s.waiting,
            high_water: s.high_water,
            queued: s.queued,
            taken: s.taken,
            expired: s.expired,
            refused: s.refused,
        };
        // SAFETY: not NULL; its struct_size is the caller's.
        unsafe { write_out(out, &v) }
    })
}

/// Completes `n` deferred attempts in one call, each as `metafed_attempt_complete` would with
/// `results[i]` and `responses[i]` (`responses` may be NULL: values and codes 0; else an array
/// whose stride is `responses[0].struct_size`), waking each worker once. Each attempt's status
/// goes to `statuses[i]` (may be NULL): `METAFED_OK`, `METAFED_E_ABANDONED`, `METAFED_E_HANDLE`
/// or `METAFED_E_INVALID` (a bad result code; that attempt is not completed). Returns
/// `METAFED_OK` once every attempt has been looked at, whatever their statuses.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_attempts_complete(
    attempts: *const metafed_attempt,
    results: *const i32,
    responses: *const metafed_response,
    n: usize,
    statuses: *mut metafed_status,
) -> metafed_status {
    boundary("metafed_attempts_complete", || {
        if n == 0 {
            return Ok(());
        }
        non_null(attempts, "attempts")?;
        non_null(results, "results")?;
        let stride = if responses.is_null() {
            0
        } else {
            // SAFETY: not NULL; at least one element per the contract.
            unsafe { stride_of(responses) }?
        };
        // SAFETY: per the contract, `attempts` and `results` hold `n` elements.
        let (attempts, results) =
            unsafe { (std::slice::from_raw_parts(attempts, n), std::slice::from_raw_parts(results, n)) };
        let mut batch = metafed_rs::ffi_support::CompletionBatch::default();
        for i in 0..n {
            let response = (!responses.is_null()).then(|| {
                // SAFETY: element `i` of the caller's array of `n` responses of `stride` bytes.
                unsafe { read_element(responses, i, stride, metafed_response::empty()) }
            });
            let status = match answer_of(results[i], response) {
                Err(e) => e.status,
                Ok(ans) => {
                    let (worker, slot, g) = crate::attempt::unpack(attempts[i].id);
                    let engine = attempts[i].engine as usize;
                    crate::handles::with_engine_by_value(engine, |e| Ok(batch.complete(e, worker, slot, g, ans)))
                        .map_or(METAFED_E_HANDLE, |r| match r {
                            None | Some(Err(metafed_rs::ffi_support::Refused::Stale)) => METAFED_E_HANDLE,
                            Some(Ok(())) => METAFED_OK,
                            Some(Err(metafed_rs::ffi_support::Refused::Abandoned)) => METAFED_E_ABANDONED,
                        })
                }
            };
            if !statuses.is_null() {
                // SAFETY: per the contract, `statuses` holds `n` elements when not NULL.
                unsafe { statuses.add(i).write(status) };
            }
        }
        drop(batch); // wakes the workers
        Ok(())
    })
}
