//! `metafed_engine`: starting an engine from a topology, submitting tasks, collecting
//! completions, watching it, and stopping it.

use crate::completion_queue::with_queue_of;
use crate::convert::CTask;
use crate::convert::{
    breaker_mode, duration_ns, engine_config, flag, level_arg, non_null, outcome_code, read_in, report, state_code,
    stride_of, timeout, write_name, write_out, write_ticket,
};
use crate::error::{FfiError, FfiResult, METAFED_E_INVALID, boundary, err, metafed_status};
use crate::handler::CCallback;
use crate::handles::{ENGINES, builder_snapshot, engine_arc, metafed_engine, metafed_topology, with_engine};
use crate::types::{
    METAFED_OUTCOME_COUNT, METAFED_REASON_COUNT, metafed_agent_stats, metafed_completion, metafed_domain_stats,
    metafed_engine_config, metafed_shutdown_report, metafed_stats, metafed_task,
};
use metafed_rs::{Completion, DomainId, Engine, EngineConfig, Task, Ticket};
use std::sync::Arc;
use std::time::Duration;

/// Fills `*out` with a task's defaults: no flags, id 0, no domains (set `domains`), priority 0,
/// no payload, no deadline. Set `out->struct_size` first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_task_init(out: *mut metafed_task) -> metafed_status {
    boundary("metafed_task_init", || {
        non_null(out, "out")?;
        // SAFETY: not NULL; a `metafed_task` of `struct_size` bytes per the contract.
        unsafe { write_out(out, &metafed_task::defaults()) }
    })
}

/// Fills `*out` with the default engine settings. Set `out->struct_size` first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_config_init(out: *mut metafed_engine_config) -> metafed_status {
    boundary("metafed_engine_config_init", || {
        non_null(out, "out")?;
        // SAFETY: not NULL; a `metafed_engine_config` of `struct_size` bytes per the contract.
        unsafe { write_out(out, &metafed_engine_config::defaults()) }
    })
}

// SAFETY: the caller guarantees the callback may run on the engine's threads.
unsafe impl Send for CCallback {}
// SAFETY: as above.
unsafe impl Sync for CCallback {}

/// Starts an engine running `topology` (which is copied: the topology may be freed or reused
/// afterwards) with `config` (NULL for the defaults). Free it with `metafed_engine_free`.
///
/// With `config->on_complete` set, every completion of a task not submitted as waitable is
/// passed to it on a worker thread (it must not block for long), and `metafed_engine_poll`
/// finds none.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_new(
    topology: *const metafed_topology,
    config: *const metafed_engine_config,
    out: *mut *mut metafed_engine,
) -> metafed_status {
    boundary("metafed_engine_new", || {
        non_null(out, "out")?;
        let topo = builder_snapshot(topology)?.build()?;
        let (cfg, callback) = if config.is_null() {
            (EngineConfig::default(), None)
        } else {
            // SAFETY: not NULL; a `metafed_engine_config` of `struct_size` bytes per the contract.
            let c = unsafe { read_in(config, metafed_engine_config::defaults()) }?;
            // SAFETY: as above: the struct starts with a readable `u32`.
            let size = unsafe { config.cast::<u32>().read_unaligned() } as usize;
            // A config of ABI 1.3's size or later (1.5 appended max_cost): the program knows the
            // reasons of 1.3; of 1.5's (1.6 appended queue_timeout_ns), those of 1.5.
            let knows_1_3 = size >= std::mem::offset_of!(metafed_engine_config, max_cost);
            let knows_1_5 = size >= std::mem::offset_of!(metafed_engine_config, queue_timeout_ns);
            if knows_1_3 {
                crate::convert::knows_abi_1_3();
            }
            if knows_1_5 {
                crate::convert::knows_abi_1_5();
            }
            // A program whose config is of a size before ABI 1.3 knows the completion of ABI 1.0
            // (it grew in 1.4): its callback gets completions that say that size, as they did;
            // one of 1.3 or 1.4 gets 1.4's, one of 1.5 the library's.
            let completion_size = if knows_1_5 {
                size_of::<metafed_completion>()
            } else if knows_1_3 {
                std::mem::offset_of!(metafed_completion, domains)
            } else {
                <metafed_completion as crate::convert::CStruct>::MIN_SIZE
            } as u32;
            let cb = c.on_complete.map(|f| CCallback { f, user_data: c.on_complete_user_data, completion_size });
            (engine_config(&c)?, cb)
        };
        let mut builder = Engine::builder(topo).config(cfg);
        if let Some(cb) = callback {
            builder = builder.on_complete_mut(move |c: &mut Completion| cb.call(c));
        }
        let engine = Arc::new(builder.start()?);
        let h = ENGINES.insert(engine.clone())?;
        metafed_rs::ffi_support::set_engine_handle(&engine, h as u64);
        // SAFETY: not NULL; points to writable storage per the contract.
        unsafe { *out = h as *mut metafed_engine };
        Ok(())
    })
}

/// Submits a task without waiting for room; its ticket goes to `*out_ticket` (may be NULL).
/// `METAFED_E_FULL` is backpressure: poll completions, then retry. An accepted task gets
/// exactly one completion. (When the only free slots are held by other submitting threads in
/// the middle of a batch, it waits for one of those batches to end, microseconds, rather than
/// report `METAFED_E_FULL` while slots are free.)
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_submit(
    engine: *mut metafed_engine,
    task: *const metafed_task,
    out_ticket: *mut u64,
) -> metafed_status {
    boundary("metafed_engine_submit", || {
        non_null(task, "task")?;
        let mut store = Vec::new();
        // SAFETY: not NULL; per the contract it points to a task whose data is valid for the call.
        let CTask { task: mut t, attrs, queue } = unsafe { crate::convert::task(task, &mut store) }?;
        t.attrs = &store[attrs];
        let ticket = with_engine(engine, |e| {
            if queue.is_null() {
                return Ok(e.try_submit(&t)?);
            }
            with_queue_of(queue, e, "task completion_queue", |q| Ok(e.try_submit_to(q, &t)?))
        })?;
        write_ticket(out_ticket, ticket);
        Ok(())
    })
}

/// Submits a task, waiting while the engine is full for up to `timeout_ns` (`METAFED_FOREVER`:
/// as long as it takes).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_submit_blocking(
    engine: *mut metafed_engine,
    task: *const metafed_task,
    timeout_ns: u64,
    out_ticket: *mut u64,
) -> metafed_status {
    boundary("metafed_engine_submit_blocking", || {
        non_null(task, "task")?;
        let timeout = timeout(timeout_ns, "timeout_ns")?;
        let mut store = Vec::new();
        // SAFETY: as in `metafed_engine_submit`.
        let CTask { task: mut t, attrs, queue } = unsafe { crate::convert::task(task, &mut store) }?;
        t.attrs = &store[attrs];
        let e = engine_arc(engine)?;
        let ticket = if queue.is_null() {
            e.submit(&t, timeout)?
        } else {
            // The queue's handle is held (by value) for the wait, not its epoch pin.
            let q = with_queue_of(queue, &e, "task completion_queue", |q| Ok(q.clone()))?;
            e.submit_to(&q, &t, timeout)?
        };
        write_ticket(out_ticket, ticket);
        Ok(())
    })
}

/// Submits `n` tasks in order until one is refused; `tickets[i]` receives task `i`'s ticket and
/// `*out_submitted` how many were accepted. Returns `METAFED_OK` when at least one was accepted
/// (check `*out_submitted`), or the reason the first was refused. `tasks` is an array whose
/// stride is `tasks[0].struct_size`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_submit_batch(
    engine: *mut metafed_engine,
    tasks: *const metafed_task,
    n: usize,
    tickets: *mut u64,
    out_submitted: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_submit_batch", || {
        non_null(out_submitted, "out_submitted")?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_submitted = 0 };
        if n == 0 {
            return Ok(());
        }
        non_null(tasks, "tasks")?;
        non_null(tickets, "tickets")?;
        // SAFETY: `tasks` points to at least one task per the contract.
        let stride = unsafe { stride_of(tasks) }?;
        // SAFETY: the caller provides `n` tickets.
        let tickets: &mut [Ticket] = unsafe { std::slice::from_raw_parts_mut(tickets.cast::<Ticket>(), n) };
        with_engine(engine, |e| {
            const CHUNK: usize = 64;
            let mut done = 0;
            while done < n {
                let k = (n - done).min(CHUNK);
                let mut chunk = [Task::new(0, DomainId(0)); CHUNK];
                // The chunk's attributes (ABI 1.5), and each task's range of them.
                let mut store = Vec::new();
                let mut ranges: [std::ops::Range<usize>; CHUNK] = std::array::from_fn(|_| 0..0);
                let mut converted = k;
                // One completion queue (ABI 1.7) per chunk: a chunk ends where the queue changes.
                let mut queue = std::ptr::null();
                for (i, slot) in chunk[..k].iter_mut().enumerate() {
                    // SAFETY: element `done + i` lies within the caller's array of `n` tasks of
                    // `stride` bytes; its data is valid for the call per the contract.
                    let raw = unsafe { tasks.cast::<u8>().add((done + i) * stride).cast::<metafed_task>() };
                    // SAFETY: as above: a task of `stride` bytes whose data is valid for the call.
                    match unsafe { crate::convert::task_of_size(raw, stride, &mut store) } {
                        Ok(c) if i == 0 || c.queue == queue => {
                            queue = c.queue;
                            (*slot, ranges[i]) = (c.task, c.attrs);
                        }
                        Ok(_) => {
                            converted = i; // the next chunk starts with the other queue
                            break;
                        }
                        Err(e) if done + i == 0 => return Err(e),
                        Err(_) => {
                            converted = i; // submit the prefix; the caller retries the rest
                            break;
                        }
                    }
                }
                if !store.is_empty() {
                    for (slot, r) in chunk[..converted].iter_mut().zip(&ranges) {
                        slot.attrs = &store[r.clone()];
                    }
                }
                let k = converted;
                if k == 0 {
                    return Ok(done);
                }
                let submitted = if queue.is_null() {
                    e.submit_batch(&chunk[..k], &mut tickets[done..done + k])
                } else {
                    match with_queue_of(queue, e, "task completion_queue", |q| {
                        Ok(e.submit_batch_to(q, &chunk[..k], &mut tickets[done..done + k]))
                    }) {
                        Ok(r) => r,
                        Err(err) if done == 0 => return Err(err),
                        Err(_) => break,
                    }
                };
                match submitted {
                    Ok(m) => {
                        done += m;
                        if m < k {
                            break;
                        }
                    }
                    Err(err) if done == 0 => return Err(err.into()),
                    Err(_) => break,
                }
            }
            Ok(done)
        })
        .map(|done| {
            // SAFETY: checked above.
            unsafe { *out_submitted = done };
        })
    })
}

/// Moves up to `cap` completions into `out` (an array whose stride is `out[0].struct_size`,
/// which the caller sets) and their count into `*out_n`. Waits up to `timeout_ns` for the first
/// one when none is ready (0: no wait; `METAFED_FOREVER`: until one comes or the engine stops).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_poll(
    engine: *mut metafed_engine,
    out: *mut metafed_completion,
    cap: usize,
    timeout_ns: u64,
    out_n: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_poll", || {
        non_null(out_n, "out_n")?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_n = 0 };
        let timeout = timeout(timeout_ns, "timeout_ns")?;
        if cap == 0 {
            return Ok(());
        }
        non_null(out, "out")?;
        // SAFETY: `out` points to at least one completion per the contract.
        let stride = unsafe { stride_of(out) }?;
        let engine = engine_arc(engine)?;
        // SAFETY: `out` holds `cap` completions of `stride` bytes per the contract.
        let total = unsafe {
            crate::convert::completions_into(out, stride, cap, |buf, first| {
                Ok(if first && timeout != Some(Duration::ZERO) {
                    engine.poll_wait(buf, timeout)?
                } else {
                    engine.poll(buf)
                })
            })
        }?;
        // SAFETY: checked above.
        unsafe { *out_n = total };
        Ok(())
    })
}

/// Runs `n` tasks as a closed loop from the calling thread, with at most `in_flight` of them in
/// flight (0: 1024), and returns when all have completed: task `i` has correlation id `ids[i]`
/// and needs the domains in the bit set `domains[i]` (or `domains[0]` for every task when
/// `domains_len` is 1). `outcomes` (may be NULL) receives task `i`'s `METAFED_OUTCOME_*` at
/// index `i`; `counts` (may be NULL) receives the number of tasks per outcome (4 entries);
/// `*out_done` the tasks completed. The tasks are waitable, so this never takes completions
/// meant for `metafed_engine_poll` or the callback. Returns `METAFED_E_SHUTTING_DOWN` if the
/// engine stops first (`*out_done` says how far it got).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn metafed_engine_run_batch(
    engine: *mut metafed_engine,
    ids: *const u64,
    domains: *const u64,
    domains_len: usize,
    n: usize,
    priority: u32,
    in_flight: usize,
    outcomes: *mut i32,
    counts: *mut u64,
    out_done: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_run_batch", || {
        non_null(out_done, "out_done")?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_done = 0 };
        if n == 0 {
            return Ok(());
        }
        non_null(ids, "ids")?;
        non_null(domains, "domains")?;
        if domains_len != 1 && domains_len != n {
            return Err(err(METAFED_E_INVALID, format!("domains_len must be 1 or n ({n}), got {domains_len}")));
        }
        if priority > 3 {
            return Err(err(METAFED_E_INVALID, format!("priority {priority} is out of range (0 highest .. 3 lowest)")));
        }
        // SAFETY: the caller provides `n` ids, `domains_len` domain sets and, when not NULL,
        // `n` outcomes and 4 counts.
        let (ids, domains) =
            unsafe { (std::slice::from_raw_parts(ids, n), std::slice::from_raw_parts(domains, domains_len)) };
        // SAFETY: when not NULL, the caller provides `n` outcomes.
        let mut outcomes = (!outcomes.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(outcomes, n) });
        let mut tally = [0u64; METAFED_OUTCOME_COUNT];
        let window = if in_flight == 0 { 1024 } else { in_flight };
        let engine = engine_arc(engine)?;
        if metafed_rs::ffi_support::on_engine_thread(&engine) {
            return Err(metafed_rs::WouldDeadlock.into());
        }
        let mut pending: std::collections::VecDeque<(usize, Ticket)> =
            std::collections::VecDeque::with_capacity(window.min(n));
        let mut chunk = [Task::new(0, DomainId(0)); 64];
        let mut tickets = [Ticket::default(); 64];
        let (mut next, mut done) = (0usize, 0usize);
        let result = loop {
            // Fill the window.
            let room = (window - pending.len()).min(n - next).min(chunk.len());
            let mut refused = None;
            if room > 0 {
                for (k, t) in chunk[..room].iter_mut().enumerate() {
                    let i = next + k;
                    let d = if domains_len == 1 { domains[0] } else { domains[i] };
                    *t = Task::fan_out(ids[i], metafed_rs::DomainSet(d)).priority(priority as u8).waitable();
                }
                match engine.submit_batch(&chunk[..room], &mut tickets[..room]) {
                    Ok(m) => {
                        pending.extend((next..next + m).zip(tickets[..m].iter().copied()));
                        next += m;
                    }
                    Err(metafed_rs::SubmitError::Full) => {}
                    Err(e) => refused = Some(e),
                }
            }
            // Collect the oldest (waiting only when the window is full or nothing more can go).
            let Some(&(i, t)) = pending.front() else {
                match refused {
                    Some(e) => break Err(FfiError::from(e)),
                    None if next == n => break Ok(()),
                    None => continue,
                }
            };
            let must_wait = pending.len() == window || next == n || refused.is_some();
            let wait = if must_wait { None } else { Some(Duration::ZERO) };
            match engine.wait(t, wait) {
                Ok(c) => {
                    pending.pop_front();
                    let o = outcome_code(c.status);
                    tally[o as usize] += 1;
                    if let Some(out) = outcomes.as_deref_mut() {
                        out[i] = o;
                    }
                    done += 1;
                }
                Err(metafed_rs::WaitError::Timeout) => {}
                Err(e) => break Err(e.into()),
            }
        };
        // SAFETY: checked above.
        unsafe { *out_done = done };
        if !counts.is_null() {
            // SAFETY: the caller provides 4 counts.
            unsafe { std::ptr::copy_nonoverlapping(tally.as_ptr(), counts, 4) };
        }
        result
    })
}

/// Waits up to `timeout_ns` (`METAFED_FOREVER`: as long as it takes) for the waitable task of
/// `ticket` and writes its completion to `*out` (set `out->struct_size`). One thread may wait
/// on a ticket at a time.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_wait(
    engine: *mut metafed_engine,
    ticket: u64,
    timeout_ns: u64,
    out: *mut metafed_completion,
) -> metafed_status {
    boundary("metafed_engine_wait", || {
        non_null(out, "out")?;
        let timeout = timeout(timeout_ns, "timeout_ns")?;
        // SAFETY: not NULL; readable per the contract.
        unsafe { stride_of(out) }?;
        let mut c = engine_arc(engine)?.wait(Ticket(ticket), timeout)?;
        // SAFETY: not NULL; a completion of `struct_size` bytes per the contract.
        unsafe { write_out(out, &metafed_completion::with_bodies(&mut c)) }
    })
}

/// Engine-wide counters into `*out` (the caller sets `out->struct_size`).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_stats(engine: *mut metafed_engine, out: *mut metafed_stats) -> metafed_status {
    boundary("metafed_engine_get_stats", || {
        non_null(out, "out")?;
        let s = with_engine(engine, |e| Ok(e.stats()))?;
        let mut reasons = [0u64; METAFED_REASON_COUNT];
        let (mut domain_overloaded, mut unclassified) = (0, 0);
        for r in &s.reasons {
            match (reasons.get_mut(r.reason as usize), r.reason) {
                (Some(slot), _) => *slot = r.count,
                (None, metafed_rs::Reason::DomainOverloaded) => domain_overloaded = r.count,
                (None, _) => unclassified += r.count, // past ABI 1.0's array
            }
        }
        let v = metafed_stats {
            struct_size: 0,
            workers: s.workers as u32,
            domains: s.domains.len() as u32,
            agents: s.agents.len() as u32,
            slots: s.slots as u64,
            in_flight: s.in_flight as u64,
            submit_full: s.submit_full,
            admitted: s.admitted,
            completed: s.completed,
            outcomes: [s.ok, s.failed, s.timed_out, s.rejected],
            reasons,
            panic_routed: s.panic_routed,
            late_results: s.late_results,
            degraded_admits: s.meta.degraded_admits,
            latency_p50_ns: s.latency_ns.p50,
            latency_p99_ns: s.latency_ns.p99,
            latency_p999_ns: s.latency_ns.p999,
            meta_state: state_code(s.meta.breaker.state),
            pin_failures: s.pin_failures as u32,
            meta_trips: s.meta.breaker.opened + s.meta.breaker.reopened,
            predicted_success: s.predicted_success,
            events_dropped: s.events_dropped,
            domain_overloaded,
            classified: s.classify.classified,
            unclassified,
            cost_held: s.meta.cost_held,
        };
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &v) }
    })
}

/// Counters of domain `domain` into `*out` (the caller sets `out->struct_size`).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_domain_stats(
    engine: *mut metafed_engine,
    domain: u16,
    out: *mut metafed_domain_stats,
) -> metafed_status {
    boundary("metafed_engine_get_domain_stats", || {
        non_null(out, "out")?;
        let s = with_engine(engine, |e| Ok(e.stats()))?;
        let d = s
            .domains
            .get(usize::from(domain))
            .ok_or_else(|| err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("domain id {domain} does not exist")))?;
        let v = metafed_domain_stats {
            struct_size: 0,
            state: state_code(d.breaker.state),
            subtasks: d.subtasks,
            ok: d.ok,
            failed: d.failed,
            shed: d.shed,
            faults: d.faults,
            timeouts: d.timeouts,
            failovers: d.failovers,
            recovered: d.recovered,
            trips: d.breaker.opened + d.breaker.reopened,
            hedges: d.hedges,
            hedge_wins: d.hedge_wins,
            budget_denied: d.budget_denied,
            waited: d.waited,
            rerouted: d.rerouted,
        };
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &v) }
    })
}

/// Counters of agent `agent` into `*out` (the caller sets `out->struct_size`).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_agent_stats(
    engine: *mut metafed_engine,
    agent: u16,
    out: *mut metafed_agent_stats,
) -> metafed_status {
    boundary("metafed_engine_get_agent_stats", || {
        non_null(out, "out")?;
        let s = with_engine(engine, |e| Ok(e.stats()))?;
        let a = s
            .agents
            .get(usize::from(agent))
            .ok_or_else(|| err(METAFED_E_INVALID, format!("agent id {agent} does not exist")))?;
        let v = metafed_agent_stats {
            struct_size: 0,
            state: state_code(a.breaker.state),
            calls: a.calls,
            failures: a.failures,
            slow: a.slow,
            panics: a.panics,
            abandoned: a.abandoned,
            overloaded: a.overloaded,
            mean_latency_ns: a.mean_latency_ns,
            trips: a.breaker.opened + a.breaker.reopened,
            in_rotation: u32::from(a.in_rotation),
            isolated: u32::from(a.isolated),
            deferred: a.deferred,
            cancelled: a.cancelled,
            in_flight: a.in_flight,
            max_concurrency: a.max_concurrency,
            ejections: a.breaker.ejected,
        };
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &v) }
    })
}

/// The name of domain `domain`: copied into `buf`
/// (`cap` bytes, NUL-terminated, truncated if short), its full length to `*out_len` (may be NULL).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_domain_name(
    engine: *mut metafed_engine,
    domain: u16,
    buf: *mut std::ffi::c_char,
    cap: usize,
    out_len: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_domain_name", || {
        with_engine(engine, |e| {
            let topo = e.topology();
            let name = topo.domain_name(DomainId(domain)).ok_or_else(|| {
                err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("domain id {domain} does not exist"))
            })?;
            write_name(name, buf, cap, out_len)
        })
    })
}

/// The name of agent `agent`: copied into `buf` (`cap` bytes, NUL-terminated, truncated if
/// short), its full length to `*out_len` (may be NULL).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_agent_name(
    engine: *mut metafed_engine,
    agent: u16,
    buf: *mut std::ffi::c_char,
    cap: usize,
    out_len: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_agent_name", || {
        with_engine(engine, |e| {
            let topo = e.topology();
            let name = topo
                .agent_name(metafed_rs::AgentId(agent))
                .ok_or_else(|| err(METAFED_E_INVALID, format!("agent id {agent} does not exist")))?;
            write_name(name, buf, cap, out_len)
        })
    })
}

/// Forces a breaker open, disables it, or returns it to normal (`METAFED_BREAKER_*`). `level` is
/// a `METAFED_LEVEL_*`; `index` the domain or agent id (0 for the meta level).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_breaker_mode(
    engine: *mut metafed_engine,
    level: i32,
    index: u32,
    mode: i32,
) -> metafed_status {
    boundary("metafed_engine_set_breaker_mode", || {
        let level = level_arg(level)?;
        let mode = breaker_mode(mode)?;
        with_engine(engine, |e| {
            if e.set_breaker_mode(level, index as usize, mode) {
                Ok(())
            } else {
                Err(err(METAFED_E_INVALID, format!("no {level:?} breaker with index {index}")))
            }
        })
    })
}

/// Marks a domain down (`down` 1: every call to its agents fails, a correlated fault) or up
/// again (0).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_domain_down(
    engine: *mut metafed_engine,
    domain: u16,
    down: u32,
) -> metafed_status {
    boundary("metafed_engine_set_domain_down", || {
        let down = flag(down, "down")?;
        with_engine(engine, |e| {
            if e.set_domain_down(DomainId(domain), down) {
                Ok(())
            } else {
                Err(err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("domain id {domain} does not exist")))
            }
        })
    })
}

/// Marks one agent down (`down` 1: every call to it fails, as `METAFED_FAILURE_DOWN`; an outage
/// of one dependency, for drills) or up again (0). Its breaker and its domain react as to any
/// failing agent. Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_agent_down(engine: *mut metafed_engine, agent: u16, down: u32) -> metafed_status {
    boundary("metafed_engine_set_agent_down", || {
        let down = flag(down, "down")?;
        with_engine(engine, |e| {
            if e.set_agent_down(metafed_rs::AgentId(agent), down) {
                Ok(())
            } else {
                Err(err(METAFED_E_INVALID, format!("agent id {agent} does not exist")))
            }
        })
    })
}

/// Takes an agent out of rotation (`in_rotation` 0) or puts it back (1).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_agent_in_rotation(
    engine: *mut metafed_engine,
    agent: u16,
    in_rotation: u32,
) -> metafed_status {
    boundary("metafed_engine_set_agent_in_rotation", || {
        let in_rotation = flag(in_rotation, "in_rotation")?;
        with_engine(engine, |e| {
            if e.set_agent_in_rotation(metafed_rs::AgentId(agent), in_rotation) {
                Ok(())
            } else {
                Err(err(METAFED_E_INVALID, format!("agent id {agent} does not exist")))
            }
        })
    })
}

/// Stops accepting tasks, lets those in flight finish for up to `drain_ns`, then completes the
/// rest as rejected (`METAFED_REASON_SHUTTING_DOWN`) and stops the threads. No handler is called
/// after it returns (unless one never returned: see `detached_threads`). Completions stay
/// available to poll and wait. Idempotent. `out` (may be NULL; set `out->struct_size`) receives
/// what happened.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_shutdown(
    engine: *mut metafed_engine,
    drain_ns: u64,
    out: *mut metafed_shutdown_report,
) -> metafed_status {
    boundary("metafed_engine_shutdown", || {
        let drain = duration_ns(drain_ns, "drain_ns")?;
        if !out.is_null() {
            // SAFETY: not NULL; readable per the contract (checked before anything stops).
            unsafe { stride_of(out) }?;
        }
        let r = engine_arc(engine)?.shutdown(drain)?;
        if !out.is_null() {
            // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
            unsafe { write_out(out, &report(r)) }?;
        }
        Ok(())
    })
}

/// Shuts the engine down (with its configured drain timeout, unless already shut down) and
/// frees it. NULL does nothing; a stale or already freed handle is detected and ignored (with
/// `metafed_last_error` set). Calls on other threads that are using the engine finish safely.
/// Called from a handler or a completion callback (one of the engine's own threads), it frees
/// the handle at once and leaves the shutdown to a thread of its own, which runs once the call
/// has returned.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_free(engine: *mut metafed_engine) {
    if engine.is_null() {
        return;
    }
    let _ = boundary("metafed_engine_free", || -> FfiResult {
        let arc = ENGINES.remove(engine as usize, Arc::clone)?;
        let drain = arc.config().drain_timeout;
        if arc.shutdown(drain).is_err() {
            // On an engine thread: shut down from a thread of our own.
            let _ = std::thread::Builder::new().name("metafed-shutdown".into()).spawn(move || {
                let _ = arc.shutdown(drain);
            });
        }
        Ok(())
    });
}
