//! Cross-domain rerouting: a domain may name alternates, domains that do the same job another
//! way (a read replica beside the primary database, a second API region). A sub-task that fails
//! at its domain through the domain's own fault (its breaker open or shedding, every agent
//! failed or none available, its injected fault, its time or retry budget spent) is handed to
//! the next alternate of the domain the task asked for, as long as the task's deadline has not
//! passed; the completion says which domains answered
//! ([`Completion::answered`](crate::Completion::answered)). A sub-task goes through the
//! alternates of the domain it started in, in order, once each: alternates of alternates are
//! not followed, so a cycle of alternates cannot loop.
//!
//! This is the seed's "cross-domain rerouting" (Level 1 failures: domain isolation, rerouting):
//! with alternates, the domain level has breadth too, and the reliability model multiplies the
//! failure probabilities of a domain and its alternates ([`crate::model`]).

use crate::task::{DomainId, Reason};

/// The most alternates a domain may name.
pub const MAX_ALTERNATES: usize = 8;

/// Whether a sub-task that ended for `reason` failed at its domain and may go to an alternate:
/// the domain's own failures, not the task's (its deadline) and not success.
#[inline]
pub(crate) fn reroutable(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::AgentsExhausted
            | Reason::DomainFault
            | Reason::NoAgent
            | Reason::DomainShed
            | Reason::DomainTimeout
            | Reason::BudgetExhausted
            | Reason::DomainOverloaded
    )
}

/// Checks domain `d`'s alternates against the domains there are (`names`, by id; `removed`
/// tells which were removed): each must exist, not be removed, not be `d`, and appear once; at
/// most [`MAX_ALTERNATES`]. The message names the domains by name.
pub(crate) fn validate(
    d: DomainId,
    alternates: &[DomainId],
    names: &[&str],
    removed: impl Fn(DomainId) -> bool,
) -> Result<(), String> {
    let name = names.get(usize::from(d.0)).copied().unwrap_or("?");
    if alternates.len() > MAX_ALTERNATES {
        return Err(format!("domain {name:?}: at most {MAX_ALTERNATES} alternates, got {}", alternates.len()));
    }
    for (i, a) in alternates.iter().enumerate() {
        let Some(alt) = names.get(usize::from(a.0)) else {
            return Err(format!("domain {name:?}: alternate {i} is domain id {}, which does not exist", a.0));
        };
        if *a == d {
            return Err(format!("domain {name:?}: a domain cannot be its own alternate"));
        }
        if removed(*a) {
            return Err(format!("domain {name:?}: alternate {alt:?} was removed"));
        }
        if alternates[..i].contains(a) {
            return Err(format!("domain {name:?}: alternate {alt:?} is named twice"));
        }
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_alternate() {
        let names = ["Database", "ReadReplica", "Cache"];
        let ok = |alts: &[u16]| {
            validate(DomainId(0), &alts.iter().map(|&a| DomainId(a)).collect::<Vec<_>>(), &names, |d| d.0 == 2)
        };
        assert_eq!(ok(&[1]), Ok(()));
        assert_eq!(ok(&[]), Ok(()));
        assert_eq!(ok(&[0]).unwrap_err(), "domain \"Database\": a domain cannot be its own alternate");
        assert_eq!(ok(&[1, 1]).unwrap_err(), "domain \"Database\": alternate \"ReadReplica\" is named twice");
        assert_eq!(ok(&[2]).unwrap_err(), "domain \"Database\": alternate \"Cache\" was removed");
        assert!(ok(&[7]).unwrap_err().contains("domain id 7, which does not exist"));
        assert!(ok(&[1; 9]).unwrap_err().contains("at most 8 alternates"));
    }

    #[test]
    fn only_the_domains_own_failures_reroute() {
        let yes = [
            Reason::AgentsExhausted,
            Reason::DomainFault,
            Reason::NoAgent,
            Reason::DomainShed,
            Reason::DomainTimeout,
            Reason::BudgetExhausted,
            Reason::DomainOverloaded,
        ];
        for r in Reason::ALL {
            assert_eq!(reroutable(r), yes.contains(&r), "{r:?}");
        }
    }
}
