//! What the C library (the `metafed-c` crate under `bindings/c`) needs of the engine beyond its
//! Rust API: the per-call agent interface its C handlers implement, and the raw form of a deferred
//! attempt, which crosses the C boundary as integers. Hidden from the documentation: not part of
//! the Rust API, and it changes with the C library, which is built from the same commit.

use crate::engine::Engine;
use crate::events::{BreakerEvent, Level};
use crate::topology::AgentSpec;
use std::sync::Arc;

pub use crate::attempt::{Answer, Refused};
pub use crate::handler::{Agent, Call, CallCx};

/// Records `handle` as the engine's handle in the C library's table: C handlers that defer an
/// attempt read it back ([`CallCx::engine_handle`]) to name the engine the attempt belongs to.
pub fn set_engine_handle(engine: &Engine, handle: u64) {
    engine.shared().ffi_handle.store(handle, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the calling thread is one of `engine`'s (a handler or a completion callback runs on
/// it), where a call that waits for the engine could wait for itself.
pub fn on_engine_thread(engine: &Engine) -> bool {
    crate::shared::on_engine_thread(engine.shared())
}

/// Completes the deferred attempt (`worker`, `slot`, `generation`) that
/// [`Attempt::into_raw`](crate::Attempt::into_raw) gave up. `None` when the worker does not
/// exist.
pub fn complete_attempt(
    engine: &Engine,
    worker: usize,
    slot: u32,
    generation: u32,
    answer: Answer,
) -> Option<Result<(), Refused>> {
    let w = engine.shared().workers.get(worker)?;
    Some(w.hub.complete(slot, generation, answer, true, true))
}

/// Completes raw attempts as [`complete_attempt`] does, but wakes each worker once, when the
/// batch is dropped.
#[derive(Default)]
pub struct CompletionBatch {
    wake: Vec<Arc<crate::attempt::Hub>>,
}

impl CompletionBatch {
    /// Completes the raw attempt (`worker`, `slot`, `generation`) of `engine`; `None` when the
    /// worker does not exist.
    pub fn complete(
        &mut self,
        engine: &Engine,
        worker: usize,
        slot: u32,
        generation: u32,
        answer: Answer,
    ) -> Option<Result<(), Refused>> {
        let w = engine.shared().workers.get(worker)?;
        let r = w.hub.complete(slot, generation, answer, true, false);
        if !self.wake.iter().any(|h| Arc::ptr_eq(h, &w.hub)) {
            self.wake.push(w.hub.clone());
        }
        Some(r)
    }
}

impl Drop for CompletionBatch {
    fn drop(&mut self) {
        for h in self.wake.drain(..) {
            h.parker.wake();
        }
    }
}

/// Whether the engine has abandoned the raw attempt (`worker`, `slot`, `generation`); true for a
/// worker that does not exist.
pub fn attempt_abandoned(engine: &Engine, worker: usize, slot: u32, generation: u32) -> bool {
    engine.shared().workers.get(worker).is_none_or(|w| w.hub.is_abandoned(slot, generation))
}

/// A breaker's name in words (`meta`, `domain API`, `agent API/REST`), or `None` when there is no
/// such breaker.
pub fn breaker_name(engine: &Engine, level: Level, index: usize) -> Option<String> {
    let sh = engine.shared();
    sh.breaker(level, index)?;
    Some(sh.breaker_name(level, index))
}

/// Takes the oldest breaker event kept for `drain_events`, if any.
pub fn pop_event(engine: &Engine) -> Option<BreakerEvent> {
    engine.shared().events.pop()
}

/// Sets (or, with `None`, clears) the actor the audit trail names for this thread's operator
/// actions, until it is set again (the C form of [`act_as`](crate::audit::act_as), which has no scope).
pub fn set_actor(actor: Option<(&str, &str)>) {
    crate::audit::set_actor(actor);
}

/// An agent run by `agent`, answering at once or deferring, call by call.
pub fn agent_spec(agent: Arc<dyn Agent>) -> AgentSpec {
    AgentSpec::foreign(agent)
}
