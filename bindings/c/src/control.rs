//! Operating an engine from C: Prometheus metrics, health, the admin endpoint, the audit trail
//! and breaker events.
//!
//! Texts (metrics, JSON) are copied into the caller's buffer the way names are: NUL-terminated,
//! cut at `cap - 1` bytes if the buffer is short, with the full length (without the NUL) written
//! to `*out_len`, so that a call with `cap` 0 asks for the size. Counters move between two
//! calls, so a text can grow: leave some room, and call again if `*out_len >= cap`.

use crate::convert::{
    admission_to_c, breaker_config_arg_over, breaker_config_to_c, breaker_event_to_c, flag, level_arg, non_null,
    read_in, str_arg, stride_of, write_name, write_out,
};
use crate::error::{METAFED_E_CONFIG, METAFED_E_INVALID, boundary, err, metafed_status};
use crate::handler::CEvents;
use crate::handles::{engine_arc, metafed_engine, with_engine};
use crate::types::{
    METAFED_EVENT_AUDIT, METAFED_EVENT_BREAKER, metafed_admission_config, metafed_breaker_config,
    metafed_breaker_event, metafed_event, metafed_event_fn,
};
use std::ffi::{c_char, c_void};

/// Calls `callback(user_data, &event)` with every breaker transition and every audit record
/// of this engine from now on (NULL `callback`: no more calls); a push beside the pull of
/// `metafed_engine_drain_events`. A transition is reported on the thread that caused it, often
/// a worker: the callback must return quickly and never block (hand the event to a queue of
/// yours); it may run on several threads at once. An audit record is reported on the thread
/// of the operator action, after the action, with the audit log unlocked. The event and its JSON are valid during the call
/// only. From inside the callback the engine may be read and acted on, except that a
/// reconfiguration from inside a breaker event raised by `metafed_engine_set_breaker_config` (which
/// holds the reconfiguration lock while it sets each breaker's mode, and reports those
/// transitions and their audit records meanwhile) fails with `METAFED_E_PANIC` instead of
/// deadlocking.
/// Replacing or clearing the callback does not wait for calls in progress on other threads.
/// Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_event_callback(
    engine: *mut metafed_engine,
    callback: metafed_event_fn,
    user_data: *mut c_void,
) -> metafed_status {
    boundary("metafed_engine_set_event_callback", || {
        let listener: Option<metafed_rs::events::EventListener> = callback.map(|f| {
            let c = CEvents { f, user_data };
            let l: metafed_rs::events::EventListener =
                std::sync::Arc::new(move |ev: &metafed_rs::events::EngineEvent<'_>| {
                    let json = std::ffi::CString::new(ev.to_json()).unwrap_or_default();
                    let (kind, breaker, audit_seq) = match ev {
                        metafed_rs::events::EngineEvent::Breaker { event, .. } => {
                            (METAFED_EVENT_BREAKER, Some(breaker_event_to_c(event)), 0)
                        }
                        metafed_rs::events::EngineEvent::Audit(r) => (METAFED_EVENT_AUDIT, None, r.seq),
                        _ => return, // a kind of event this C ABI does not know
                    };
                    let v = metafed_event {
                        struct_size: size_of::<metafed_event>() as u32,
                        kind,
                        breaker: breaker.as_ref().map_or(std::ptr::null(), |b| b as *const metafed_breaker_event),
                        audit_seq,
                        json_len: json.as_bytes().len(),
                        json: json.as_ptr(),
                    };
                    let c = &c;
                    // SAFETY: the caller's callback, with its user data, per the contract above;
                    // `v` and the JSON outlive the call.
                    unsafe { (c.f)(c.user_data, &v) };
                });
            l
        });
        with_engine(engine, |e| {
            e.set_event_listener(listener);
            Ok(())
        })
    })
}

/// The engine's Prometheus metrics now: the text format when `openmetrics` is 0 (what
/// `promtool check metrics` and every Prometheus parser read), the OpenMetrics format when 1.
/// Copied into `buf` (`cap` bytes, NUL-terminated, truncated if short); its full length
/// (without the NUL) goes to `*out_len` (may be NULL), so that a call with `cap` 0 asks for the
/// size. Metric names and labels are in docs/operating.md.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_metrics_text(
    engine: *mut metafed_engine,
    openmetrics: u32,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_metrics_text", || {
        let openmetrics = flag(openmetrics, "openmetrics")?;
        with_engine(engine, |e| {
            let text = if openmetrics { e.metrics_openmetrics() } else { e.metrics_text() };
            write_name(&text, buf, cap, out_len)
        })
    })
}

/// The engine's health as JSON (`status`, `lifecycle`, `reasons`, and per domain the measured
/// reliability beside the prediction; docs/operating.md shows it), into `buf` by the header's
/// rule for texts; `*out_status` (may be NULL) gets `METAFED_HEALTHY`,
/// `METAFED_DEGRADED` or `METAFED_UNHEALTHY`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_health_json(
    engine: *mut metafed_engine,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    out_status: *mut i32,
) -> metafed_status {
    boundary("metafed_engine_get_health_json", || {
        with_engine(engine, |e| {
            let h = e.health();
            let json = serde_json::to_string(&h).expect("health serialises");
            write_name(&json, buf, cap, out_len)?;
            if !out_status.is_null() {
                // SAFETY: not NULL; writable per the contract.
                unsafe { *out_status = h.status as i32 };
            }
            Ok(())
        })
    })
}

/// Starts the admin endpoint (`GET /metrics`, `/health`, `/ready`) on a thread of its own.
/// `addr` is `host:port` (NULL: `127.0.0.1:9464`, loopback only; port 0 picks a free port);
/// `token`, if not NULL, is a bearer token every request must carry. The port it listens on goes
/// to `*out_port` (may be NULL). One per engine; it stops with `metafed_engine_stop_admin` or
/// when the engine is freed. Fails with `METAFED_E_CONFIG` (a bad address or token, or one
/// already running) or `METAFED_E_IO` (the port is taken).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_serve_admin(
    engine: *mut metafed_engine,
    addr: *const c_char,
    token: *const c_char,
    out_port: *mut u16,
) -> metafed_status {
    boundary("metafed_engine_serve_admin", || {
        {
            let mut opts = metafed_rs::admin::AdminOptions::default();
            if !addr.is_null() {
                // SAFETY: not NULL; a NUL-terminated string per the contract.
                opts.addr = unsafe { str_arg(addr, "addr") }?.to_owned();
            }
            if !token.is_null() {
                // SAFETY: as above.
                opts.token = Some(unsafe { str_arg(token, "token") }?.to_owned());
            }
            let bound = with_engine(engine, |e| Ok(e.serve_admin(&opts)?))?;
            if !out_port.is_null() {
                // SAFETY: not NULL; writable per the contract.
                unsafe { *out_port = bound.port() };
            }
            Ok(())
        }
    })
}

/// Stops the admin endpoint; `METAFED_E_INVALID` if it was not running.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_stop_admin(engine: *mut metafed_engine) -> metafed_status {
    boundary("metafed_engine_stop_admin", || {
        let e = engine_arc(engine)?;
        if e.stop_admin() { Ok(()) } else { Err(err(METAFED_E_INVALID, "the admin endpoint is not running")) }
    })
}

/// Changes the admission rate limit while tasks run: `per_s` tasks per second (0: no limit),
/// bursts of up to `burst` (at least 1). Recorded in the audit trail. `METAFED_E_CONFIG` names a
/// bad value.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_rate_limit(engine: *mut metafed_engine, per_s: f64, burst: f64) -> metafed_status {
    boundary("metafed_engine_set_rate_limit", || with_engine(engine, |e| Ok(e.set_rate_limit(per_s, burst)?)))
}

/// The admission settings now into `*out` (the caller sets `out->struct_size`): as the engine
/// started with them or as `metafed_engine_set_admission` last set them.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_admission(
    engine: *mut metafed_engine,
    out: *mut metafed_admission_config,
) -> metafed_status {
    boundary("metafed_engine_get_admission", || {
        non_null(out, "out")?;
        let a = with_engine(engine, |e| Ok(e.admission()))?;
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &admission_to_c(&a)) }
    })
}

/// Changes the admission settings while tasks run, from the next admission on: the throttle
/// (`max_concurrent`, 0: none; tasks waiting for it go on when it has room, at once when it is
/// turned off, except those already past the queue timeout), its queue, the essential priority,
/// the slot reserve per priority, the rate limit, the cost budget (`max_cost`, `min_cost`) and
/// the queue timeout (`queue_timeout_ns`, held to by the tasks already waiting). Read them with
/// `metafed_engine_get_admission`, change what you need, and pass them back. Checked whole first:
/// `METAFED_E_CONFIG` names a bad setting, `METAFED_E_INVALID` a duration over 30 days, and
/// nothing changes. Each changed setting is an audit record.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_admission(
    engine: *mut metafed_engine,
    config: *const metafed_admission_config,
) -> metafed_status {
    boundary("metafed_engine_set_admission", || {
        non_null(config, "config")?;
        // Fields an older header lacks keep their values now.
        let now = with_engine(engine, |e| Ok(e.admission()))?;
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        let c = unsafe { read_in(config, admission_to_c(&now)) }?;
        if c.essential_priority > 255 {
            return Err(err(
                METAFED_E_CONFIG,
                format!("engine.admission.essential_priority must be 0 to 3, got {}", c.essential_priority),
            ));
        }
        let a = metafed_rs::AdmissionConfig {
            max_concurrent: c.max_concurrent as usize,
            queue_capacity: c.queue_capacity as usize,
            essential_priority: c.essential_priority as u8,
            priority_reserve: c.priority_reserve,
            rate_limit_per_s: c.rate_limit_per_s,
            rate_limit_burst: c.rate_limit_burst,
            max_cost: c.max_cost,
            min_cost: c.min_cost,
            queue_timeout: crate::convert::duration_ns(c.queue_timeout_ns, "queue_timeout_ns")?,
        };
        with_engine(engine, |e| Ok(e.set_admission(&a)?))
    })
}

/// Changes the breaker settings of level `level` (`METAFED_LEVEL_*`) while tasks run: every
/// breaker of the level takes `*config` (as `metafed_topology_set_breaker_config` sets it before the
/// start, the mode included), and the level's time budget becomes `config->timeout_ns`. Breakers
/// keep their state; a changed window starts over; attempts already running keep the budget
/// they started with. Recorded in the audit trail. `METAFED_E_INVALID` names a bad setting.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_breaker_config(
    engine: *mut metafed_engine,
    level: i32,
    config: *const metafed_breaker_config,
) -> metafed_status {
    boundary("metafed_engine_set_breaker_config", || {
        let level = level_arg(level)?;
        with_engine(engine, |e| {
            // A caller of an earlier ABI gives no 1.3 fields: they keep the level's settings now,
            // not the defaults (a get, change the timeout, set must not wipe a slow-call rate).
            let now = e.breaker_config(level).unwrap_or_else(metafed_rs::breaker::BreakerConfig::agent);
            let cfg = breaker_config_arg_over(config, &now)?;
            Ok(e.set_breaker_config(level, &cfg)?)
        })
    })
}

/// The breaker settings of level `level` now (`METAFED_LEVEL_*`) into `*out` (the caller sets
/// `out->struct_size`), the mode of the level's first breaker included.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_breaker_config(
    engine: *mut metafed_engine,
    level: i32,
    out: *mut metafed_breaker_config,
) -> metafed_status {
    boundary("metafed_engine_get_breaker_config", || {
        non_null(out, "out")?;
        let level = level_arg(level)?;
        let cfg = with_engine(engine, |e| Ok(e.breaker_config(level)))?;
        let cfg = cfg.ok_or_else(|| err(METAFED_E_INVALID, format!("the engine has no {level:?} breaker")))?;
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &breaker_config_to_c(&cfg)) }
    })
}

/// Changes agent `agent`'s limit on attempts in flight while tasks run. Both its old and its new
/// limit must be at least 1 (an agent started without a limit cannot get one while running:
/// `METAFED_E_CONFIG`). Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_agent_max_concurrency(
    engine: *mut metafed_engine,
    agent: u16,
    limit: u32,
) -> metafed_status {
    boundary("metafed_engine_set_agent_max_concurrency", || {
        with_engine(engine, |e| {
            if usize::from(agent) >= e.topology().agent_count() {
                return Err(err(METAFED_E_INVALID, format!("agent id {agent} does not exist")));
            }
            Ok(e.set_agent_max_concurrency(metafed_rs::AgentId(agent), limit)?)
        })
    })
}

/// Sets who this thread's operator actions (breaker modes, rotation, domain down, the admin
/// endpoint) are recorded as in the audit trail, until set again: `actor` names a person or a
/// system, `reason` (may be NULL) says why. NULL `actor` clears it (actions are then recorded as
/// by `unknown`). Each is kept up to `METAFED_MAX_NAME_LEN` bytes.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_audit_set_actor(actor: *const c_char, reason: *const c_char) -> metafed_status {
    boundary("metafed_audit_set_actor", || {
        if actor.is_null() {
            metafed_rs::ffi_support::set_actor(None);
            return Ok(());
        }
        // SAFETY: not NULL; a NUL-terminated string per the contract.
        let actor = unsafe { str_arg(actor, "actor") }?;
        // SAFETY: as above, when not NULL.
        let reason = if reason.is_null() { "" } else { unsafe { str_arg(reason, "reason") }? };
        metafed_rs::ffi_support::set_actor(Some((actor, reason)));
        Ok(())
    })
}

/// The audit trail as a JSON array of records (`seq`, `at_unix_ms`, `actor`, `reason`,
/// `action`, `target`, `from`, `to`), oldest first: those numbered above `after_seq` (0: every
/// record kept, the newest 1,024). Into `buf` by the header's rule for texts.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_audit_json(
    engine: *mut metafed_engine,
    after_seq: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_audit_json", || {
        with_engine(engine, |e| {
            let json = serde_json::to_string(&e.audit_since(after_seq)).expect("records serialise");
            write_name(&json, buf, cap, out_len)
        })
    })
}

/// A breaker's name in words, as events and the audit trail say it: `meta`, `domain API`,
/// `agent API/REST`. `level` is a `METAFED_LEVEL_*`, `index` the domain or agent id. Into `buf`
/// by the header's rule for texts.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_breaker_name(
    engine: *mut metafed_engine,
    level: i32,
    index: u32,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_breaker_name", || {
        let level = level_arg(level)?;
        with_engine(engine, |e| {
            let Some(name) = metafed_rs::ffi_support::breaker_name(e, level, index as usize) else {
                return Err(err(METAFED_E_INVALID, format!("no {level:?} breaker with index {index}")));
            };
            write_name(&name, buf, cap, out_len)
        })
    })
}

/// Moves up to `cap` breaker events (the oldest first) into `out` (an array whose stride is
/// `out[0].struct_size`, which the caller sets), their number into `*out_n`. The engine keeps up
/// to 1,024 between calls (those that come later are dropped, and counted in
/// `metafed_stats.events_dropped`); call it every second or so to follow the breakers.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_drain_events(
    engine: *mut metafed_engine,
    out: *mut metafed_breaker_event,
    cap: usize,
    out_n: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_drain_events", || {
        non_null(out_n, "out_n")?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_n = 0 };
        let mut stride = size_of::<metafed_breaker_event>();
        if cap > 0 {
            non_null(out, "out")?;
            // SAFETY: `out` points to at least one event per the contract.
            stride = unsafe { stride_of(out) }?;
        }
        let n = with_engine(engine, |e| {
            let mut n = 0;
            while n < cap {
                let Some(ev) = metafed_rs::ffi_support::pop_event(e) else { break };
                let v = breaker_event_to_c(&ev);
                // SAFETY: `out` holds `cap` writable records of `stride` bytes per the contract
                // (a stride this library accepts was checked); n < cap. Each element's
                // `struct_size` is the stride.
                unsafe {
                    let at = out.cast::<u8>().add(n * stride).cast::<metafed_breaker_event>();
                    at.cast::<u32>().write_unaligned(stride as u32);
                    write_out(at, &v)?;
                }
                n += 1;
            }
            Ok(n)
        })?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out_n = n };
        Ok(())
    })
}

/// Adds agent `agent` of domain `domain`, as topology `from` declares it (its handler or
/// simulation, concurrency limit and weight; the domain may be the only one `from` has), to the
/// domain of that name in the running engine, and writes its new id to `*out_agent` (may be
/// NULL). Workers route to it from their next turn. It takes one of the engine's spare agent
/// ids (`metafed_engine_config.spare_agents`, 16 by default); ids are never reused. The engine keeps its own reference to the handler: `from` may be freed
/// at once. Refused with the reason (`metafed_last_error`): `METAFED_E_UNKNOWN_DOMAIN` when the
/// engine has no such domain, `METAFED_E_CONFIG` for an agent `from` lacks, a name the running
/// domain has, an isolated agent (its threads start with the engine), no spare id left.
/// Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_add_agent(
    engine: *mut metafed_engine,
    from: *const crate::handles::metafed_topology,
    domain: *const c_char,
    agent: *const c_char,
    out_agent: *mut u16,
) -> metafed_status {
    boundary("metafed_engine_add_agent", || {
        // SAFETY: NUL-terminated strings per the contract (checked for NULL).
        let (domain, agent) = unsafe { (str_arg(domain, "domain")?, str_arg(agent, "agent")?) };
        let spec = crate::handles::with_builder(from, |b| {
            let id = b.agent_id(domain, agent).map_err(|_| {
                err(METAFED_E_CONFIG, format!("the topology passed as `from` has no agent {domain}/{agent}"))
            })?;
            Ok(b.agent_spec(id).expect("an id the builder gave").clone())
        })?;
        let id = with_engine(engine, |e| {
            let d = e.topology().domain_id(domain).ok_or_else(|| {
                err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("the engine has no domain named {domain:?}"))
            })?;
            Ok(e.add_agent(d, agent, spec)?)
        })?;
        if !out_agent.is_null() {
            // SAFETY: not NULL; writable per the contract.
            unsafe { *out_agent = id.0 };
        }
        Ok(())
    })
}

/// Removes agent `agent` from the running engine: workers stop routing to it from their next
/// turn; its attempts in flight finish and count as usual; no task is lost. Its id is not
/// reused and its counters stay (`metafed_engine_get_agent_stats` still answers for it;
/// `metafed_engine_get_agent_weight` refuses a removed agent). A C
/// handler's finalizer runs once the engine no longer holds it. Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_remove_agent(engine: *mut metafed_engine, agent: u16) -> metafed_status {
    boundary("metafed_engine_remove_agent", || {
        with_engine(engine, |e| {
            e.remove_agent(metafed_rs::AgentId(agent)).map_err(|x| err(METAFED_E_INVALID, x.to_string()))
        })
    })
}

/// Changes agent `agent`'s routing weight (1 to `METAFED_MAX_WEIGHT`) while tasks run: an
/// agent of weight 3 is chosen first three times as often as one of weight 1. Recorded in the
/// audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_agent_weight(
    engine: *mut metafed_engine,
    agent: u16,
    weight: u32,
) -> metafed_status {
    boundary("metafed_engine_set_agent_weight", || {
        with_engine(engine, |e| {
            if usize::from(agent) >= e.topology().agent_count() {
                return Err(err(METAFED_E_INVALID, format!("agent id {agent} does not exist")));
            }
            Ok(e.set_agent_weight(metafed_rs::AgentId(agent), weight)?)
        })
    })
}

/// Agent `agent`'s routing weight now, into `*out`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_agent_weight(
    engine: *mut metafed_engine,
    agent: u16,
    out: *mut u32,
) -> metafed_status {
    boundary("metafed_engine_get_agent_weight", || {
        non_null(out, "out")?;
        let w = with_engine(engine, |e| {
            e.agent_weight(metafed_rs::AgentId(agent))
                .ok_or_else(|| err(METAFED_E_INVALID, format!("agent id {agent} does not exist or was removed")))
        })?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out = w };
        Ok(())
    })
}

/// Adds a domain named `name` to the running engine and writes its id to `*out_domain` (may be
/// NULL): tasks may name it as soon as this returns; add its agents first with
/// `metafed_engine_add_agent` (until then its sub-tasks fail with `METAFED_REASON_NO_AGENT`).
/// It takes one of the engine's spare domain ids (`metafed_engine_config.spare_domains`, 4 by
/// default), with a fresh breaker, no injected faults, one attempt per agent, and no
/// hedging or retry budget. Refused with the reason: `METAFED_E_TOPOLOGY` for a bad name (empty,
/// too long, control characters), `METAFED_E_CONFIG` for a name in use or no spare id left.
/// Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_add_domain(
    engine: *mut metafed_engine,
    name: *const c_char,
    out_domain: *mut u16,
) -> metafed_status {
    boundary("metafed_engine_add_domain", || {
        // SAFETY: a NUL-terminated string per the contract (checked for NULL).
        let name = unsafe { str_arg(name, "name") }?;
        let d = with_engine(engine, |e| Ok(e.add_domain(name)?))?;
        if !out_domain.is_null() {
            // SAFETY: not NULL; writable per the contract.
            unsafe { *out_domain = d.0 };
        }
        Ok(())
    })
}

/// Removes domain `domain` from the running engine: from this call on a task that names it is
/// refused (`METAFED_E_UNKNOWN_DOMAIN`); the sub-tasks already admitted run to their outcome
/// on its agents, so no task is lost or failed by the removal. Its id is not reused; its
/// counters stay (`metafed_engine_get_domain_stats`). Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_remove_domain(engine: *mut metafed_engine, domain: u16) -> metafed_status {
    boundary("metafed_engine_remove_domain", || {
        with_engine(engine, |e| {
            e.remove_domain(metafed_rs::DomainId(domain))
                .map_err(|x| err(crate::error::METAFED_E_UNKNOWN_DOMAIN, x.to_string()))
        })
    })
}
