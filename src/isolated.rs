//! Isolated agents: an agent whose handler may block runs on a pool of threads of its own, so
//! that a handler that blocks or hangs stalls only that agent.
//!
//! The worker hands each attempt to the pool as a deferred attempt: it arms an attempt slot,
//! pushes the job onto the pool's queue (a bounded MPMC queue), and goes on; a pool thread runs
//! the handler and completes the attempt, whose answer travels back like any deferred answer
//! (see [`crate::attempt`]). The worker's timer abandons an attempt not answered within the
//! agent timeout, and the domain fails over; a late answer is dropped and counted.
//!
//! A pool thread reads the task's request after the task may have completed without it (its
//! attempt abandoned), so it pins the task's slot while the call runs (see [`crate::slab`]).

use crate::attempt::{Answer, Attempt};
use crate::handler::{Agent, Call, CallCx, Request, guarded};
use crate::park::{Idle, WaitList};
use crate::queue::Mpmc;
use crate::shared::{STOPPING, Shared};
use crate::sync::{AtomicBool, Ordering};
use crate::task::{AgentId, DomainId, FailureKind, Ticket};
use std::sync::Arc;

/// One attempt handed to a pool.
pub(crate) struct Job {
    pub(crate) attempt: Attempt,
    pub(crate) ticket: Ticket,
    pub(crate) domain: u16,
    pub(crate) attempt_no: u32,
}

/// An isolated agent's pool.
pub(crate) struct Pool {
    pub(crate) agent: AgentId,
    pub(crate) handler: Arc<dyn Agent>,
    pub(crate) threads: usize,
    jobs: Mpmc<Job>,
    sleepers: WaitList,
    /// One flag per thread, set when it has returned.
    pub(crate) exited: Box<[AtomicBool]>,
}

impl Pool {
    pub(crate) fn new(agent: AgentId, handler: Arc<dyn Agent>, threads: usize, queue: usize) -> Self {
        Self {
            agent,
            handler,
            threads,
            jobs: Mpmc::new(queue.max(1)),
            sleepers: WaitList::new(),
            exited: (0..threads).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Hands a job to the pool; gives it back when the queue is full.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.push(job)?;
        self.sleepers.notify_one();
        Ok(())
    }

    /// Wakes every thread (the engine is stopping).
    pub(crate) fn wake_all(&self) {
        self.sleepers.notify_all();
    }

    /// Runs one job on this thread.
    fn run_job(&self, sh: &Shared, job: Job) {
        let Job { attempt, ticket, domain, attempt_no } = job;
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
            let r = Request {
                ticket,
                task_id: req.id,
                payload: req.payload,
                data: &req.data,
                domain: DomainId(domain),
                agent: self.agent,
                attempt: attempt_no,
                fanout: req.domains.count_ones(),
                priority: req.priority,
            };
            if sh.domain_down[usize::from(domain)].load(Ordering::Relaxed) {
                Call::Failed(FailureKind::Down, crate::stages::DOWN_CODE)
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
