//! The audit trail: every operator action (a breaker's mode, an agent's rotation, a domain's
//! down flag, the admin endpoint) is recorded with the time, what changed from what to what, and
//! who did it and why: the actor and reason the calling thread set with [`act_as`] (or the C
//! and Python equivalents). Records are kept in a bounded buffer (the newest
//! [`AUDIT_CAPACITY`]), read with [`crate::Engine::audit_log`], and emitted as `tracing` events
//! (target `metafed::audit`, level INFO).

use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;

/// The most audit records an engine keeps (the oldest go first).
pub const AUDIT_CAPACITY: usize = 1024;
/// The most bytes kept of an actor or a reason (longer ones are cut at a character boundary).
pub const MAX_ACTOR_LEN: usize = 256;

/// One operator action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Its number, from 1, in the order actions were taken on this engine.
    pub seq: u64,
    /// Wall-clock time, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Who: the actor the calling thread set (`"unknown"` if none).
    pub actor: String,
    /// Why, as the actor said (empty if not said).
    pub reason: String,
    /// What kind of action: `breaker_mode`, `breaker_config`, `agent_rotation`, `domain_down`,
    /// `rate_limit`, `max_concurrency`, `admin_endpoint` (a reload records the actions it takes).
    pub action: &'static str,
    /// What it acted on: `meta`, `domain API`, `agent API/REST`, an address.
    pub target: String,
    /// The value before.
    pub from: String,
    /// The value after.
    pub to: String,
}

thread_local! {
    static ACTOR: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Sets who this thread's operator actions are recorded as, until the guard is dropped (the
/// previous actor then comes back). `actor` names a person or a system, `reason` says why (a
/// ticket, an incident).
pub fn act_as(actor: &str, reason: &str) -> ActorGuard {
    let prev = ACTOR.with(|a| a.replace(Some((cut(actor), cut(reason)))));
    ActorGuard { prev }
}

/// Restores the previous actor when dropped (see [`act_as`]).
#[must_use = "the actor is reset when the guard is dropped"]
pub struct ActorGuard {
    prev: Option<(String, String)>,
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        ACTOR.with(|a| *a.borrow_mut() = prev);
    }
}

/// Sets (or, with `None`, clears) this thread's actor without a guard: for the C and Python
/// bindings, whose callers set and clear it explicitly.
pub(crate) fn set_actor(actor: Option<(&str, &str)>) {
    ACTOR.with(|a| *a.borrow_mut() = actor.map(|(x, r)| (cut(x), cut(r))));
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_ACTOR_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub(crate) struct AuditLog {
    records: VecDeque<AuditRecord>,
    next: u64,
    /// Records to hand to an event listener once the log is unlocked (kept only while one is
    /// set).
    pub(crate) pending: Vec<AuditRecord>,
    pub(crate) listening: bool,
}

impl AuditLog {
    pub(crate) fn new() -> Self {
        AuditLog { records: VecDeque::new(), next: 1, pending: Vec::new(), listening: false }
    }

    pub(crate) fn record(&mut self, action: &'static str, target: String, from: String, to: String) {
        let (actor, reason) = ACTOR.with(|a| a.borrow().clone()).unwrap_or_else(|| ("unknown".into(), String::new()));
        let at_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let rec = AuditRecord { seq: self.next, at_unix_ms, actor, reason, action, target, from, to };
        self.next += 1;
        tracing::info!(
            target: "metafed::audit",
            seq = rec.seq,
            actor = %rec.actor,
            reason = %rec.reason,
            action = rec.action,
            target_name = %rec.target,
            from = %rec.from,
            to = %rec.to,
            "operator action"
        );
        if self.listening {
            self.pending.push(rec.clone());
        }
        if self.records.len() == AUDIT_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(rec);
    }

    /// The records after `after` (0: all that are kept).
    pub(crate) fn since(&self, after: u64) -> Vec<AuditRecord> {
        self.records.iter().filter(|r| r.seq > after).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_who_what_and_keeps_the_newest() {
        let mut log = AuditLog::new();
        log.record("domain_down", "domain API".into(), "false".into(), "true".into());
        {
            let _g = act_as("alice", "incident 42");
            {
                let _h = act_as("bob", "");
                log.record("agent_rotation", "agent API/REST".into(), "in".into(), "out".into());
            }
            log.record("agent_rotation", "agent API/REST".into(), "out".into(), "in".into());
        }
        let r = log.since(0);
        assert_eq!(r.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(), ["unknown", "bob", "alice"]);
        assert_eq!((r[2].reason.as_str(), r[2].seq, r[2].from.as_str()), ("incident 42", 3, "out"));
        assert_eq!(log.since(2).len(), 1);
        for _ in 0..AUDIT_CAPACITY {
            log.record("domain_down", "domain API".into(), "false".into(), "true".into());
        }
        let r = log.since(0);
        assert_eq!(r.len(), AUDIT_CAPACITY);
        assert_eq!(r[0].seq, 4);
        let long = "é".repeat(200);
        let _g = act_as(&long, "");
        log.record("domain_down", "x".into(), "a".into(), "b".into());
        assert_eq!(log.since(0).last().unwrap().actor.len(), 256);
    }
}
