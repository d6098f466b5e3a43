//! How a domain chooses its agents (round-robin or peak EWMA), ejects its outliers and sheds
//! when overloaded, from C (ABI 1.3).

use crate::convert::{duration_ns, non_null, ns_of, read_in, write_opt, write_out};
use crate::error::{FfiError, METAFED_E_INVALID, boundary, err, metafed_status};
use crate::handles::{metafed_engine, metafed_topology, with_builder, with_engine};
use crate::topology::check_domain;
use crate::types::{METAFED_BALANCE_PEAK_EWMA, METAFED_BALANCE_ROUND_ROBIN, metafed_outlier_config};
use metafed_rs::DomainId;
use metafed_rs::policy::{Balance, Outlier, Shedding};

/// Domain id `domain` of a running engine, or `METAFED_E_UNKNOWN_DOMAIN`.
pub(crate) fn engine_domain(e: &metafed_rs::Engine, domain: u16) -> Result<DomainId, FfiError> {
    if usize::from(domain) >= e.topology().domain_count() {
        return Err(err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("domain id {domain} does not exist")));
    }
    Ok(DomainId(domain))
}

/// A balance from its C form: `kind` (`METAFED_BALANCE_*`) and, for peak EWMA, its decay and
/// default RTT in nanoseconds (0: the defaults, 10 s and 30 ms).
fn balance_arg(kind: i32, decay_ns: u64, default_rtt_ns: u64) -> Result<Balance, FfiError> {
    let b = match kind {
        METAFED_BALANCE_ROUND_ROBIN => Balance::RoundRobin,
        METAFED_BALANCE_PEAK_EWMA => {
            let Balance::PeakEwma { decay, default_rtt } = Balance::peak_ewma() else { unreachable!() };
            Balance::PeakEwma {
                decay: if decay_ns == 0 { decay } else { duration_ns(decay_ns, "decay_ns")? },
                default_rtt: if default_rtt_ns == 0 {
                    default_rtt
                } else {
                    duration_ns(default_rtt_ns, "default_rtt_ns")?
                },
            }
        }
        k => return Err(err(METAFED_E_INVALID, format!("unknown balance kind {k} (METAFED_BALANCE_*)"))),
    };
    b.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
    Ok(b)
}

/// Sets how domain `domain` chooses its agents: `METAFED_BALANCE_ROUND_ROBIN` (smooth weighted
/// round-robin, the default) or `METAFED_BALANCE_PEAK_EWMA` (of two agents drawn at random, the
/// one with the lower peak-EWMA latency x (attempts in flight + 1); `decay_ns` is the estimate's
/// time constant and `default_rtt_ns` the estimate of an agent without a sample, 0 for the
/// defaults of 10 s and 30 ms). The durations are ignored for round-robin.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_domain_balance(
    topology: *mut metafed_topology,
    domain: u16,
    kind: i32,
    decay_ns: u64,
    default_rtt_ns: u64,
) -> metafed_status {
    boundary("metafed_topology_set_domain_balance", || {
        let balance = balance_arg(kind, decay_ns, default_rtt_ns)?;
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            b.balance(d, balance)?;
            Ok(())
        })
    })
}

/// Changes how domain `domain` chooses its agents while tasks run (arguments as
/// `metafed_topology_set_domain_balance`); switching to peak EWMA starts its agents' estimates
/// afresh. Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_domain_balance(
    engine: *mut metafed_engine,
    domain: u16,
    kind: i32,
    decay_ns: u64,
    default_rtt_ns: u64,
) -> metafed_status {
    boundary("metafed_engine_set_domain_balance", || {
        let balance = balance_arg(kind, decay_ns, default_rtt_ns)?;
        with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            Ok(e.set_domain_balance(d, balance)?)
        })
    })
}

/// How domain `domain` chooses its agents now: `*kind` (`METAFED_BALANCE_*`) and, for peak
/// EWMA, `*decay_ns` and `*default_rtt_ns` (0 for round-robin). Each pointer may be NULL but
/// `kind`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_domain_balance(
    engine: *mut metafed_engine,
    domain: u16,
    kind: *mut i32,
    decay_ns: *mut u64,
    default_rtt_ns: *mut u64,
) -> metafed_status {
    boundary("metafed_engine_get_domain_balance", || {
        non_null(kind, "kind")?;
        let b = with_engine(engine, |e| {
            e.domain_balance(DomainId(domain)).ok_or_else(|| {
                err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("domain id {domain} does not exist"))
            })
        })?;
        let (k, decay, rtt) = match b {
            Balance::RoundRobin => (METAFED_BALANCE_ROUND_ROBIN, 0, 0),
            Balance::PeakEwma { decay, default_rtt } => (METAFED_BALANCE_PEAK_EWMA, ns_of(decay), ns_of(default_rtt)),
        };
        // SAFETY: `kind` is not NULL, the others are checked; writable per the contract.
        unsafe {
            *kind = k;
            if !decay_ns.is_null() {
                *decay_ns = decay;
            }
            if !default_rtt_ns.is_null() {
                *default_rtt_ns = rtt;
            }
        }
        Ok(())
    })
}

fn outlier_to_c(o: &Outlier) -> metafed_outlier_config {
    metafed_outlier_config {
        struct_size: size_of::<metafed_outlier_config>() as u32,
        consecutive_failures: o.consecutive_failures,
        failure_rate: o.failure_rate,
        min_calls: o.min_calls,
        min_samples: o.min_samples,
        latency_factor: o.latency_factor,
        base_ejection_ns: ns_of(o.base_ejection),
        max_ejection_ns: ns_of(o.max_ejection),
        max_ejected_percent: o.max_ejected_percent,
    }
}

/// Reads a caller's `metafed_outlier_config` (NULL: no outlier detection), checked.
fn outlier_arg(config: *const metafed_outlier_config) -> Result<Option<Outlier>, FfiError> {
    if config.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL; a struct of `struct_size` bytes per the contract.
    let c = unsafe { read_in(config, outlier_to_c(&Outlier::default())) }?;
    let o = Outlier {
        consecutive_failures: c.consecutive_failures,
        failure_rate: c.failure_rate,
        min_calls: c.min_calls,
        latency_factor: c.latency_factor,
        min_samples: c.min_samples,
        base_ejection: duration_ns(c.base_ejection_ns, "base_ejection_ns")?,
        max_ejection: duration_ns(c.max_ejection_ns, "max_ejection_ns")?,
        max_ejected_percent: c.max_ejected_percent,
    };
    o.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
    Ok(Some(o))
}

/// Fills `*out` with the outlier detection's defaults (Envoy's where it has them: ejection after
/// 5 failures in a row, for 30 s growing by 30 s per ejection in a row up to 300 s, at most 10%
/// of the agents out but one always may be; the failure rate and latency triggers off). Set
/// `out->struct_size` first.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_outlier_config_init(out: *mut metafed_outlier_config) -> metafed_status {
    boundary("metafed_outlier_config_init", || {
        non_null(out, "out")?;
        // SAFETY: not NULL; `struct_size` writable bytes per the contract.
        unsafe { write_out(out, &outlier_to_c(&Outlier::default())) }
    })
}

/// Gives domain `domain` outlier detection (`config`), or removes it (NULL): an agent that fails
/// in a row, fails at a rate, or answers far slower than its peers is ejected through its
/// breaker for a while.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_domain_outlier(
    topology: *mut metafed_topology,
    domain: u16,
    config: *const metafed_outlier_config,
) -> metafed_status {
    boundary("metafed_topology_set_domain_outlier", || {
        let o = outlier_arg(config)?;
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            match o {
                Some(o) => b.outlier(d, o)?,
                None => b.no_outlier(d)?,
            };
            Ok(())
        })
    })
}

/// Changes domain `domain`'s outlier detection while tasks run (NULL: off). Recorded in the
/// audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_domain_outlier(
    engine: *mut metafed_engine,
    domain: u16,
    config: *const metafed_outlier_config,
) -> metafed_status {
    boundary("metafed_engine_set_domain_outlier", || {
        let o = outlier_arg(config)?;
        with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            Ok(e.set_domain_outlier(d, o)?)
        })
    })
}

/// Domain `domain`'s outlier detection now: `*on` is 1 and `*out` its settings (the caller sets
/// `out->struct_size`), or `*on` is 0 and `*out` is left as it is.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_domain_outlier(
    engine: *mut metafed_engine,
    domain: u16,
    out: *mut metafed_outlier_config,
    on: *mut i32,
) -> metafed_status {
    boundary("metafed_engine_get_domain_outlier", || {
        non_null(out, "out")?;
        non_null(on, "on")?;
        // SAFETY: not NULL; the struct starts with a readable `u32` per the contract. Checked
        // before anything is written, whether or not there is a setting to write.
        crate::convert::check_size::<metafed_outlier_config>(unsafe { out.cast::<u32>().read_unaligned() })?;
        let o = with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            Ok(e.domain_outlier(d))
        })?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *on = i32::from(o.is_some()) };
        match o {
            // SAFETY: not NULL; `struct_size` writable bytes per the contract.
            Some(o) => unsafe { write_out(out, &outlier_to_c(&o)) },
            None => Ok(()),
        }
    })
}

/// A shedding setting from its C form: `target_ns` 0 turns it off; `interval_ns` 0 is CoDel's
/// 100 ms.
fn shedding_arg(target_ns: u64, interval_ns: u64, queue_capacity: u32) -> Result<Option<Shedding>, FfiError> {
    if target_ns == 0 {
        return Ok(None);
    }
    let s = Shedding {
        target: duration_ns(target_ns, "target_ns")?,
        interval: if interval_ns == 0 {
            Shedding::default().interval
        } else {
            duration_ns(interval_ns, "interval_ns")?
        },
        queue_capacity,
    };
    s.validate().map_err(|m| err(METAFED_E_INVALID, m))?;
    Ok(Some(s))
}

/// Gives domain `domain` adaptive shedding (CoDel's idea): while its sub-tasks' shortest wait
/// for an agent has stayed above `target_ns` for an interval (`interval_ns`, 0: 100 ms), a
/// sub-task that has waited longer than the target is rejected with
/// `METAFED_REASON_DOMAIN_OVERLOADED`, as is one that finds the wait queue full
/// (`queue_capacity` per worker, 0: no bound). `target_ns` 0 removes it.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_domain_shedding(
    topology: *mut metafed_topology,
    domain: u16,
    target_ns: u64,
    interval_ns: u64,
    queue_capacity: u32,
) -> metafed_status {
    boundary("metafed_topology_set_domain_shedding", || {
        let s = shedding_arg(target_ns, interval_ns, queue_capacity)?;
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            match s {
                Some(s) => b.shedding(d, s)?,
                None => b.no_shedding(d)?,
            };
            Ok(())
        })
    })
}

/// Changes domain `domain`'s adaptive shedding while tasks run (arguments as
/// `metafed_topology_set_domain_shedding`). Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_domain_shedding(
    engine: *mut metafed_engine,
    domain: u16,
    target_ns: u64,
    interval_ns: u64,
    queue_capacity: u32,
) -> metafed_status {
    boundary("metafed_engine_set_domain_shedding", || {
        let s = shedding_arg(target_ns, interval_ns, queue_capacity)?;
        with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            Ok(e.set_domain_shedding(d, s)?)
        })
    })
}

/// Domain `domain`'s adaptive shedding now: its target, interval and queue capacity (all 0 when
/// it has none). Each pointer may be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_domain_shedding(
    engine: *mut metafed_engine,
    domain: u16,
    target_ns: *mut u64,
    interval_ns: *mut u64,
    queue_capacity: *mut u32,
) -> metafed_status {
    boundary("metafed_engine_get_domain_shedding", || {
        let s = with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            Ok(e.domain_shedding(d))
        })?;
        let (t, i, c) = s.map_or((0, 0, 0), |s| (ns_of(s.target), ns_of(s.interval), s.queue_capacity));
        write_opt(target_ns, t);
        write_opt(interval_ns, i);
        write_opt(queue_capacity, c);
        Ok(())
    })
}

/// The key of a name (a tenant, a client address) for `metafed_task.key`: the engine's hash of
/// the NUL-terminated `name`, stable across runs and builds, never 0. Into `*out`.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_key_of(name: *const std::ffi::c_char, out: *mut u64) -> metafed_status {
    boundary("metafed_key_of", || {
        non_null(out, "out")?;
        // SAFETY: the caller passes a NUL-terminated string (or NULL, refused).
        let name = unsafe { crate::convert::str_arg(name, "name") }?;
        // SAFETY: not NULL; writable per the contract.
        unsafe { *out = metafed_rs::policy::key_of(name) };
        Ok(())
    })
}

/// Changes the keyed rate limits' quotas and classes while tasks run, from JSON (as
/// `metafed_engine_config.keyed_limits_json`; the capacity stays as it started). Refused
/// (`METAFED_E_CONFIG`) by an engine started without keyed limits. Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_keyed_limits_json(
    engine: *mut metafed_engine,
    json: *const std::ffi::c_char,
) -> metafed_status {
    boundary("metafed_engine_set_keyed_limits_json", || {
        // SAFETY: the caller passes a NUL-terminated string (or NULL, refused).
        let json = unsafe { crate::convert::str_arg(json, "json") }?;
        let limits = crate::convert::keyed_limits_arg(json)?;
        with_engine(engine, |e| Ok(e.set_keyed_limits(&limits)?))
    })
}

/// What the keyed rate limits counted, as JSON (`{"tracked":..,"capacity":..,"evicted":..,
/// "table_full":..,"classes":[["default",admitted,refused],..]}`; `null` without keyed limits),
/// into `buf` by the header's rule for texts.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_keyed_stats_json(
    engine: *mut metafed_engine,
    buf: *mut std::ffi::c_char,
    cap: usize,
    out_len: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_keyed_stats_json", || {
        with_engine(engine, |e| {
            let json = serde_json::to_string(&e.keyed_stats()).expect("stats serialise");
            crate::convert::write_name(&json, buf, cap, out_len)
        })
    })
}
