//! The threads of an isolated agent's pool: each takes attempts from the pool's queue and runs
//! the agent's handler on them, completing each attempt as a deferred one (see
//! [`crate::isolated`]).

use super::request;
use crate::attempt::Answer;
use crate::handler::{Call, CallCx, guarded};
use crate::isolated::{Job, Pool};
use crate::park::Idle;
use crate::shared::{STOPPING, Shared};
use crate::sync::Ordering;
use crate::task::{DOWN_CODE, FailureKind};
use std::sync::Arc;

impl Pool {
    /// Runs one job on this thread.
    fn run_job(&self, sh: &Shared, job: Job) {
        let Job { attempt, ticket, domain, origin, attempt_no } = job;
        if attempt.is_abandoned() {
            return; // timed out while it queued: dropping the handle retires it
        }
        if !sh.slab.try_pin(ticket) {
            return; // its task finished while the attempt queued (dropped: the worker ignores it)
        }
        let mut cx = CallCx::holding(attempt, sh.clock.now(), sh.ffi_handle());
        let call = {
            // SAFETY: we pinned the slot of a running task, so its request is not reused until
            // we unpin it, below, after the call.
            let req = unsafe { sh.slab.req(ticket.slot()) };
            // SAFETY: as above.
            let extra = unsafe { sh.slab.extra(ticket.slot()) };
            let r = request((req, extra), ticket, (domain, origin), self.agent, attempt_no);
            if sh.domain_down[usize::from(domain)].load(Ordering::Relaxed) {
                Call::Failed(FailureKind::Down, DOWN_CODE)
            } else {
                guarded(|| self.handler.call(&r, &mut cx)).unwrap_or(Call::Failed(FailureKind::Panicked, 0))
            }
        };
        sh.slab.unpin(ticket.slot());
        // A handler that deferred (a C handler may) keeps the attempt and completes it later.
        let Some(attempt) = cx.take_held() else { return };
        let answer = match call {
            Call::Value(v) => Answer::ok(v, Vec::new()),
            Call::Body(v, body) => Answer::ok(v, body),
            Call::Failed(kind, code) => Answer::failed(kind, code),
            // "Pending" without deferring breaks the contract.
            Call::Pending => Answer::failed(FailureKind::InvalidReply, 0),
        };
        let _ = attempt.finish(answer);
    }
}

/// A pool thread: takes jobs and runs them until the engine stops.
pub(crate) fn run(sh: Arc<Shared>, pool: usize, thread: usize) {
    crate::shared::enter_engine_thread(&sh);
    let p = &sh.pools[pool];
    let mut idle = Idle::new(sh.cfg.idle_spins, u64::from(sh.cfg.idle_yield_us) * 1_000);
    while sh.lifecycle() < STOPPING {
        match p.jobs.pop() {
            Some(job) => {
                idle.reset();
                p.run_job(&sh, job);
            }
            None => {
                if idle.wait() {
                    p.sleepers.sleep(|| !p.jobs.is_empty() || sh.lifecycle() >= STOPPING, None);
                }
            }
        }
    }
    p.exited[thread].store(true, Ordering::Release);
}
