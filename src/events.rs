//! What an engine reports as it runs: breaker transitions ([`BreakerEvent`], by [`Level`]) and
//! audit records, pushed to an [`EventListener`] as [`EngineEvent`]s; and the completion
//! callback's type.

use crate::audit::AuditRecord;
use crate::breaker::Transition;
use crate::task::Completion;
use serde::Serialize;

/// Something that happened in an engine, for an event listener
/// ([`crate::Engine::set_event_listener`]).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EngineEvent<'a> {
    /// A breaker changed state; `name` says which, as in the audit trail (`agent API/REST`).
    Breaker {
        /// The transition.
        event: &'a BreakerEvent,
        /// The breaker's name.
        name: &'a str,
    },
    /// An operator action was recorded in the audit trail.
    Audit(&'a AuditRecord),
}

impl EngineEvent<'_> {
    /// The event as one line of JSON: `{"event":"breaker","at_ns":..,"breaker":"agent
    /// API/REST","level":"agent","index":0,"from":"closed","to":"open","cause":"consecutive_failures",
    /// "task_id":7}` (`task_id` null when no task caused it), or `{"event":"audit",...}` with
    /// the audit record's fields.
    pub fn to_json(&self) -> String {
        let v = match self {
            EngineEvent::Breaker { event, name } => serde_json::json!({
                "event": "breaker",
                "at_ns": event.at_ns,
                "breaker": name,
                "level": event.level,
                "index": event.index,
                "from": event.transition.from.to_string(),
                "to": event.transition.to.to_string(),
                "cause": event.transition.cause.name(),
                "task_id": event.task,
            }),
            EngineEvent::Audit(r) => {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.insert("event".into(), "audit".into());
                }
                v
            }
        };
        v.to_string()
    }
}

/// An event listener ([`crate::Engine::set_event_listener`]).
pub type EventListener = std::sync::Arc<dyn Fn(&EngineEvent<'_>) + Send + Sync>;

/// The completion callback's type.
pub type CompletionCallback = Box<dyn Fn(&mut Completion) + Send + Sync>;

/// The breaker levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Level {
    /// The meta orchestrator (one breaker).
    Meta = 0,
    /// A domain orchestrator.
    Domain = 1,
    /// An agent.
    Agent = 2,
}

/// A breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerEvent {
    /// When, in nanoseconds since the engine started.
    pub at_ns: u64,
    /// Which level.
    pub level: Level,
    /// The domain or agent index (0 for the meta level).
    pub index: u16,
    /// The change.
    pub transition: Transition,
    /// The id of the task whose admission or result caused it, where one did (a meta or domain
    /// breaker's transition; agent breakers' are reported without).
    pub task: Option<u64>,
}
