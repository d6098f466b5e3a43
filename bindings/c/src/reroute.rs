//! Cross-domain rerouting from C (ABI 1.4): the alternate domains a failed sub-task goes to.

use crate::balance::engine_domain;
use crate::convert::non_null;
use crate::error::{FfiError, boundary, metafed_status};
use crate::handles::{metafed_engine, metafed_topology, with_builder, with_engine};
use crate::topology::check_domain;
use metafed_rs::DomainId;

/// The `n` domain ids at `alternates` (which may be NULL when `n` is 0).
fn alternates_arg(alternates: *const u16, n: usize) -> Result<Vec<DomainId>, FfiError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    non_null(alternates, "alternates")?;
    if n > metafed_rs::policy::MAX_ALTERNATES {
        return Err(crate::error::err(
            crate::error::METAFED_E_INVALID,
            format!("n is {n}: a domain has at most {} alternates", metafed_rs::policy::MAX_ALTERNATES),
        ));
    }
    // SAFETY: not NULL; `n` readable ids per the contract.
    Ok(unsafe { std::slice::from_raw_parts(alternates, n) }.iter().map(|&d| DomainId(d)).collect())
}

/// Names the domains (`n` ids at `alternates`, in order) that a sub-task of `domain` is
/// rerouted to when it fails at `domain` through the domain's own fault (its breaker open or
/// shedding, every agent failed or none available, its injected fault, its time or retry budget
/// spent), while the task's deadline has not passed; the completion's `answered` and
/// `reroutes` tell what happened. Alternates must already be domains of the topology, not
/// `domain` itself, each once, at most 8; `n` = 0 removes them. A sub-task follows the
/// alternates of the domain it started in only. `METAFED_E_UNKNOWN_DOMAIN` for an unknown
/// `domain`, `METAFED_E_TOPOLOGY` (with the reason) for a bad list, `METAFED_E_INVALID` for
/// more than 8.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_domain_alternates(
    topology: *mut metafed_topology,
    domain: u16,
    alternates: *const u16,
    n: usize,
) -> metafed_status {
    boundary("metafed_topology_set_domain_alternates", || {
        let alts = alternates_arg(alternates, n)?;
        with_builder(topology, |b| {
            let d = check_domain(b, domain)?;
            b.alternates(d, &alts)?;
            Ok(())
        })
    })
}

/// Changes domain `domain`'s alternates while tasks run (arguments as
/// `metafed_topology_set_domain_alternates`, but a bad list is `METAFED_E_CONFIG`; an
/// alternate must not have been removed). Workers
/// reroute by them from their next turn; an alternate removed later is skipped. Recorded in the
/// audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_domain_alternates(
    engine: *mut metafed_engine,
    domain: u16,
    alternates: *const u16,
    n: usize,
) -> metafed_status {
    boundary("metafed_engine_set_domain_alternates", || {
        let alts = alternates_arg(alternates, n)?;
        with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            Ok(e.set_domain_alternates(d, &alts)?)
        })
    })
}

/// Writes domain `domain`'s alternates, in order, into `out` (room for `cap` ids; NULL allowed
/// when `cap` is 0) and their number into `*out_n` (which may exceed `cap`: call again with
/// more room).
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_get_domain_alternates(
    engine: *mut metafed_engine,
    domain: u16,
    out: *mut u16,
    cap: usize,
    out_n: *mut usize,
) -> metafed_status {
    boundary("metafed_engine_get_domain_alternates", || {
        non_null(out_n, "out_n")?;
        if cap > 0 {
            non_null(out, "out")?;
        }
        with_engine(engine, |e| {
            let d = engine_domain(e, domain)?;
            let alts = e.domain_alternates(d).unwrap_or_default();
            for (i, a) in alts.iter().take(cap).enumerate() {
                // SAFETY: `out` has room for `cap` ids per the contract, and i < cap.
                unsafe { out.add(i).write(a.0) };
            }
            // SAFETY: not NULL; writable per the contract.
            unsafe { *out_n = alts.len() };
            Ok(())
        })
    })
}
