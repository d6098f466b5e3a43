//! `metafed_topology`: building a topology from C (in code, or from TOML), with simulated agents
//! and agents backed by C callbacks.

use crate::convert::{
    breaker_config_to_c, check_flags, duration_ns, level_config, non_null, rate, read_in, sim_agent, str_arg,
    write_opt, write_out,
};
use crate::error::{FfiError, METAFED_E_INVALID, boundary, err};
use crate::handler::callback_spec;
use crate::handles::{TOPOLOGIES, metafed_topology, new_handle, with_builder};
use crate::types::{
    METAFED_AGENT_ISOLATED, METAFED_LEVEL_DOMAIN, METAFED_LEVEL_META, METAFED_SIM_IO, metafed_breaker_config,
    metafed_finalizer_fn, metafed_handler_fn, metafed_hedge_config, metafed_sim_agent,
};
use metafed_rs::policy::{Hedge, HedgeDelay, RetryBudget};
use metafed_rs::{AgentId, AgentSpec, DomainId, TopologyBuilder};
use std::ffi::{c_char, c_void};
use std::time::Duration;

/// Creates an empty topology. Free it with `metafed_topology_free`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_new(out: *mut *mut metafed_topology) -> crate::error::metafed_status {
    boundary("metafed_topology_new", || new_handle(TopologyBuilder::default(), out))
}

/// Creates the seed's 3 x 3 topology (API, Database, Auth; three simulated agents each, failing
/// at `agent_error`), with the seed's breaker defaults.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_new_seed(
    agent_error: f64,
    out: *mut *mut metafed_topology,
) -> crate::error::metafed_status {
    boundary("metafed_topology_new_seed", || {
        if !(0.0..=1.0).contains(&agent_error) {
            return Err(err(METAFED_E_INVALID, format!("agent_error must be in [0, 1], got {agent_error}")));
        }
        new_handle(metafed_rs::Topology::seed_builder(agent_error), out)
    })
}

/// Parses a topology from NUL-terminated TOML text (the format of `examples/topology.toml`).
/// Agents without a `sim` table must be bound with `metafed_topology_bind_callback_agent` before an
/// engine is started.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_new_from_toml(
    text: *const c_char,
    out: *mut *mut metafed_topology,
) -> crate::error::metafed_status {
    boundary("metafed_topology_new_from_toml", || {
        // SAFETY: the caller passes a NUL-terminated string (or NULL, refused).
        let text = unsafe { str_arg(text, "text") }?;
        new_handle(TopologyBuilder::from_toml(text)?, out)
    })
}

/// Reads and parses a TOML topology file.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_new_from_file(
    path: *const c_char,
    out: *mut *mut metafed_topology,
) -> crate::error::metafed_status {
    boundary("metafed_topology_new_from_file", || {
        // SAFETY: the caller passes a NUL-terminated string (or NULL, refused).
        let path = unsafe { str_arg(path, "path") }?;
        new_handle(TopologyBuilder::from_file(path)?, out)
    })
}

/// Adds a domain; its id goes to `*out_domain` (may be NULL). Refused (`METAFED_E_TOPOLOGY`)
/// when the name is empty, blank, longer than `METAFED_MAX_NAME_LEN` bytes or taken, or the
/// topology has `METAFED_MAX_DOMAINS` domains already.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_add_domain(
    topology: *mut metafed_topology,
    name: *const c_char,
    out_domain: *mut u16,
) -> crate::error::metafed_status {
    boundary("metafed_topology_add_domain", || {
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        let d = with_builder(topology, |b| Ok(b.domain(name)?))?;
        write_opt(out_domain, d.0);
        Ok(())
    })
}

pub(crate) fn check_domain(b: &TopologyBuilder, domain: u16) -> Result<DomainId, FfiError> {
    if usize::from(domain) >= b.domain_count() {
        return Err(err(
            crate::error::METAFED_E_UNKNOWN_DOMAIN,
            format!("domain id {domain} does not exist ({} domains)", b.domain_count()),
        ));
    }
    Ok(DomainId(domain))
}

fn check_agent(b: &TopologyBuilder, agent: u16) -> Result<AgentId, FfiError> {
    let n = b.agent_count();
    if usize::from(agent) >= n {
        return Err(err(METAFED_E_INVALID, format!("agent id {agent} does not exist ({n} agents)")));
    }
    Ok(AgentId(agent))
}

/// Fills `*out` with a simulated agent's defaults (no errors, no latency, no fault). Set
/// `out->struct_size` first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_sim_agent_init(out: *mut metafed_sim_agent) -> crate::error::metafed_status {
    boundary("metafed_sim_agent_init", || {
        non_null(out, "out")?;
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &metafed_sim_agent::defaults()) }
    })
}

/// Adds a simulated agent to a domain; its id goes to `*out_agent` (may be NULL).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_add_sim_agent(
    topology: *mut metafed_topology,
    domain: u16,
    name: *const c_char,
    spec: *const metafed_sim_agent,
    out_agent: *mut u16,
) -> crate::error::metafed_status {
    boundary("metafed_topology_add_sim_agent", || {
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        non_null(spec, "spec")?;
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        let spec = unsafe { read_in(spec, metafed_sim_agent::defaults()) }?;
        let sim = sim_agent(&spec)?;
        let isolated = check_flags(spec.flags, METAFED_AGENT_ISOLATED | METAFED_SIM_IO)?;
        let a = with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            let spec = AgentSpec::sim(sim);
            Ok(b.agent(d, name, if isolated { spec.isolated() } else { spec })?)
        })?;
        write_opt(out_agent, a.0);
        Ok(())
    })
}

/// Adds an agent run by the C function `handler` to a domain; its id goes to `*out_agent` (may
/// be NULL).
///
/// `handler(user_data, request, response)` runs one attempt and returns `METAFED_HANDLER_OK`
/// (with `response->value` and, optionally, reply bytes in `response->data`),
/// `METAFED_HANDLER_ERROR` (with `response->code`) or `METAFED_HANDLER_RAISED`; or it defers the
/// attempt (`metafed_request_defer`) and returns `METAFED_HANDLER_PENDING`, then completes it
/// later from any thread (`metafed_attempt_complete`). Any other return is recorded as a failure
/// of kind `METAFED_FAILURE_INVALID_REPLY`. It must not unwind (throw) into the library, and
/// must not block on this engine (`metafed_engine_wait`, a blocking submit or poll, a shutdown:
/// they return `METAFED_E_WOULD_DEADLOCK`). It is called from the engine's worker threads,
/// several at once, unless `flags` has `METAFED_AGENT_ISOLATED` (then from that agent's own
/// threads only).
///
/// On success the topology owns `user_data`: `finalizer(user_data)` (if not NULL) runs once when
/// neither the topology nor any engine started from it can call `handler` again (after
/// `metafed_topology_free` and `metafed_engine_free` of every such engine; later if a handler
/// never returned). On failure nothing is kept and `finalizer` is not called.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn metafed_topology_add_callback_agent(
    topology: *mut metafed_topology,
    domain: u16,
    name: *const c_char,
    handler: metafed_handler_fn,
    user_data: *mut c_void,
    finalizer: metafed_finalizer_fn,
    flags: u32,
    out_agent: *mut u16,
) -> crate::error::metafed_status {
    boundary("metafed_topology_add_callback_agent", || {
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        with_builder(topology, |b| check_domain(b, domain).map(|_| ()))?;
        // Built last, so that no earlier check drops it (which would run the finalizer).
        let spec = callback_spec(handler, user_data, finalizer, flags)?;
        let result = with_builder(topology, |b| Ok(b.agent(DomainId(domain), name, spec)?));
        write_opt(out_agent, result?.0);
        Ok(())
    })
}

/// Binds a C handler to agent `agent` of domain `domain`, both by name: how agents declared in
/// TOML without a `sim` table get their behaviour. Ownership as for
/// `metafed_topology_add_callback_agent`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn metafed_topology_bind_callback_agent(
    topology: *mut metafed_topology,
    domain: *const c_char,
    agent: *const c_char,
    handler: metafed_handler_fn,
    user_data: *mut c_void,
    finalizer: metafed_finalizer_fn,
    flags: u32,
    out_agent: *mut u16,
) -> crate::error::metafed_status {
    boundary("metafed_topology_bind_callback_agent", || {
        // SAFETY: as above.
        let (domain, agent) = unsafe { (str_arg(domain, "domain")?, str_arg(agent, "agent")?) };
        with_builder(topology, |b| b.agent_id(domain, agent).map(|_| ()).map_err(FfiError::from))?;
        let spec = callback_spec(handler, user_data, finalizer, flags)?;
        let a = with_builder(topology, |b| Ok(b.bind(domain, agent, spec)?))?;
        write_opt(out_agent, a.0);
        Ok(())
    })
}

/// The id of the domain called `name`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_get_domain_id(
    topology: *const metafed_topology,
    name: *const c_char,
    out_domain: *mut u16,
) -> crate::error::metafed_status {
    boundary("metafed_topology_get_domain_id", || {
        // SAFETY: as above.
        let name = unsafe { str_arg(name, "name") }?;
        non_null(out_domain, "out_domain")?;
        let d = with_builder(topology, |b| {
            b.domain_id(name)
                .ok_or_else(|| err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("no domain named {name:?}")))
        })?;
        write_opt(out_domain, d.0);
        Ok(())
    })
}

/// Sets the injected fault rate of a domain's sub-tasks (a correlated failure, whatever its
/// agents do).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_domain_fault_rate(
    topology: *mut metafed_topology,
    domain: u16,
    fault_rate: f64,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_domain_fault_rate", || {
        let r = rate(fault_rate, "fault_rate")?;
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            b.domain_fault_rate(d, r)?;
            Ok(())
        })
    })
}

/// Sets the injected fault rate at the meta level.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_meta_fault_rate(
    topology: *mut metafed_topology,
    fault_rate: f64,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_meta_fault_rate", || {
        let r = rate(fault_rate, "fault_rate")?;
        with_builder(topology, |b| {
            b.meta_fault_rate(r);
            Ok(())
        })
    })
}

/// Sets the attempts a domain's sub-task may make (default: its agent count).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_max_attempts(
    topology: *mut metafed_topology,
    domain: u16,
    attempts: u32,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_max_attempts", || {
        if attempts == 0 || attempts > 255 {
            return Err(err(METAFED_E_INVALID, format!("attempts must be 1 to 255, got {attempts}")));
        }
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            b.max_attempts(d, attempts)?;
            Ok(())
        })
    })
}

/// Fills `*out` with the seed's breaker defaults of `level` (`METAFED_LEVEL_*`). Set
/// `out->struct_size` first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_breaker_config_init(
    level: i32,
    out: *mut metafed_breaker_config,
) -> crate::error::metafed_status {
    boundary("metafed_breaker_config_init", || {
        non_null(out, "out")?;
        let v = breaker_config_to_c(&level_config(level)?);
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &v) }
    })
}

/// Sets the breaker settings of one level (`METAFED_LEVEL_*`) for every breaker of that level.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_breaker_config(
    topology: *mut metafed_topology,
    level: i32,
    config: *const metafed_breaker_config,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_breaker_config", || {
        level_config(level)?;
        with_builder(topology, |b| {
            let mut levels = b.levels().clone();
            // A caller of an earlier ABI gives no 1.3 fields: they keep the level's settings.
            let now = match level {
                METAFED_LEVEL_META => &levels.meta,
                METAFED_LEVEL_DOMAIN => &levels.domain,
                _ => &levels.agent,
            };
            let cfg = crate::convert::breaker_config_arg_over(config, now)?;
            match level {
                METAFED_LEVEL_META => levels.meta = cfg,
                METAFED_LEVEL_DOMAIN => levels.domain = cfg,
                _ => levels.agent = cfg,
            }
            b.breakers(levels);
            Ok(())
        })
    })
}

/// Limits agent `agent` to `max_concurrency` attempts in flight at once, counted across workers
/// (0: no limit). Beyond it the domain picks another agent, or the sub-task waits in the domain
/// (not on a thread) until one has room.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_agent_max_concurrency(
    topology: *mut metafed_topology,
    agent: u16,
    max_concurrency: u32,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_agent_max_concurrency", || {
        with_builder(topology, |b| {
            let a = check_agent(b, agent)?;
            let spec = b.agent_spec(a).expect("checked");
            let threads = if spec.isolated { spec.threads } else { 0 };
            b.agent_limits(a, threads, max_concurrency)?;
            Ok(())
        })
    })
}

/// Sets agent `agent`'s routing weight (1 to `METAFED_MAX_WEIGHT`, default 1): an agent of
/// weight 3 is chosen first three times as often as one of weight 1 (smooth weighted
/// round-robin; failover still tries every agent).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_agent_weight(
    topology: *mut metafed_topology,
    agent: u16,
    weight: u32,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_agent_weight", || {
        with_builder(topology, |b| {
            let a = check_agent(b, agent)?;
            b.agent_weight(a, weight)?;
            Ok(())
        })
    })
}

/// Runs agent `agent` on a pool of `threads` threads of its own (isolated; 1 to 256), or on the
/// workers (0). For handlers that block; a handler that waits on I/O is better deferred.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_agent_threads(
    topology: *mut metafed_topology,
    agent: u16,
    threads: u32,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_agent_threads", || {
        with_builder(topology, |b| {
            let a = check_agent(b, agent)?;
            let limit = b.agent_spec(a).expect("checked").max_concurrency;
            b.agent_limits(a, threads as usize, limit)?;
            Ok(())
        })
    })
}

/// Fills `*out` with hedging defaults: once, after the 95th percentile of the domain's recent
/// latency (once 100 latencies are known, over a 1 s rotating window). Set `out->struct_size`
/// first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_hedge_config_init(out: *mut metafed_hedge_config) -> crate::error::metafed_status {
    boundary("metafed_hedge_config_init", || {
        non_null(out, "out")?;
        // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
        unsafe { write_out(out, &metafed_hedge_config::defaults()) }
    })
}

/// Makes domain `domain` hedge: an attempt (deferred, or at an isolated agent) not answered
/// after the delay gets one more attempt at another agent; the first success wins and the
/// others are abandoned. `config` NULL turns hedging off.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_hedge(
    topology: *mut metafed_topology,
    domain: u16,
    config: *const metafed_hedge_config,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_hedge", || {
        let hedge = if config.is_null() {
            None
        } else {
            // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
            let c = unsafe { read_in(config, metafed_hedge_config::defaults()) }?;
            let delay = match (c.delay_ns, c.percentile) {
                (0, p) if p != 0.0 => HedgeDelay::Percentile(p),
                (ns, p) if ns != 0 && p == 0.0 => HedgeDelay::Fixed(duration_ns(ns, "delay_ns")?),
                (ns, p) => {
                    return Err(err(
                        METAFED_E_INVALID,
                        format!("set exactly one of delay_ns and percentile (the other 0), got {ns} and {p}"),
                    ));
                }
            };
            let h = Hedge {
                delay,
                max_extra: c.max_extra,
                min_samples: c.min_samples,
                period: duration_ns(c.period_ns, "period_ns")?,
            };
            h.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
            Some(h)
        };
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            match hedge {
                Some(h) => b.hedge(d, h)?,
                None => b.no_hedge(d)?,
            };
            Ok(())
        })
    })
}

/// Holds domain `domain`'s failovers and hedges to a retry budget: at most `ratio` retries per
/// sub-task (0 to 10), plus `min_per_s` per second per worker, over a sliding window of
/// `window_ns`. A failed attempt the budget does not allow to retry ends its sub-task with
/// `METAFED_REASON_BUDGET_EXHAUSTED`. `metafed_topology_remove_retry_budget` removes it.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_retry_budget(
    topology: *mut metafed_topology,
    domain: u16,
    ratio: f64,
    min_per_s: f64,
    window_ns: u64,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_retry_budget", || {
        let budget = RetryBudget { ratio, min_per_s, window: duration_ns(window_ns, "window_ns")? };
        budget.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            b.retry_budget(d, budget)?;
            Ok(())
        })
    })
}

/// Removes domain `domain`'s retry budget: its failovers and hedges are bounded by its attempts
/// alone.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_remove_retry_budget(
    topology: *mut metafed_topology,
    domain: u16,
) -> crate::error::metafed_status {
    boundary("metafed_topology_remove_retry_budget", || {
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            b.no_retry_budget(d)?;
            Ok(())
        })
    })
}

/// Sets the three levels' timeouts in nanoseconds, keeping the rest of their breaker settings;
/// 0 leaves one unchanged. `agent_ns`: one attempt (a deferred attempt is abandoned after it);
/// `domain_ns`: a sub-task across its attempts; `meta_ns`: a task from submission, whatever its
/// own deadline. They apply whether or not the breakers are enabled (defaults 50, 200 and
/// 500 ms).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_timeouts(
    topology: *mut metafed_topology,
    agent_ns: u64,
    domain_ns: u64,
    meta_ns: u64,
) -> crate::error::metafed_status {
    boundary("metafed_topology_set_timeouts", || {
        let t = |ns: u64, what: &str| -> Result<Option<Duration>, FfiError> {
            if ns == 0 { Ok(None) } else { duration_ns(ns, what).map(Some) }
        };
        let (a, d, m) = (t(agent_ns, "agent_ns")?, t(domain_ns, "domain_ns")?, t(meta_ns, "meta_ns")?);
        with_builder(topology, |b| {
            b.timeouts(a, d, m)?;
            Ok(())
        })
    })
}

/// Disables every breaker (results still counted): the configuration of the exactness checks.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_disable_breakers(topology: *mut metafed_topology) -> crate::error::metafed_status {
    boundary("metafed_topology_disable_breakers", || {
        with_builder(topology, |b| {
            b.breakers(metafed_rs::Levels::disabled());
            Ok(())
        })
    })
}

/// Frees a topology. NULL does nothing. Engines started from it keep working (they hold what
/// they need). Freeing a handle twice is detected and ignored.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_free(topology: *mut metafed_topology) {
    if topology.is_null() {
        return;
    }
    let _ = boundary("metafed_topology_free", || TOPOLOGIES.remove(topology as usize, |_| ()));
}
