//! How a domain chooses its agents, from C: round-robin or peak EWMA (ABI 1.3).

use crate::convert::{duration_ns, non_null, ns_of};
use crate::error::{FfiError, METAFED_E_INVALID, boundary, err, metafed_status};
use crate::handles::{metafed_engine, metafed_topology, with_builder, with_engine};
use crate::topology::check_domain;
use crate::types::{METAFED_BALANCE_PEAK_EWMA, METAFED_BALANCE_ROUND_ROBIN};
use metafed_rs::DomainId;
use metafed_rs::policy::Balance;

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
            if usize::from(domain) >= e.topology().domain_count() {
                return Err(err(crate::error::METAFED_E_UNKNOWN_DOMAIN, format!("domain id {domain} does not exist")));
            }
            Ok(e.set_domain_balance(DomainId(domain), balance)?)
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
