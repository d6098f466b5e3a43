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

use crate::attempt::Attempt;
use crate::handler::Agent;
use crate::park::WaitList;
use crate::queue::Mpmc;
use crate::sync::AtomicBool;
use crate::task::{AgentId, Ticket};
use std::sync::Arc;

/// One attempt handed to a pool.
pub(crate) struct Job {
    pub(crate) attempt: Attempt,
    pub(crate) ticket: Ticket,
    pub(crate) domain: u16,
    /// The domain the task asked for (`domain` unless rerouted).
    pub(crate) origin: u16,
    pub(crate) attempt_no: u32,
}

/// An isolated agent's pool.
pub(crate) struct Pool {
    pub(crate) agent: AgentId,
    pub(crate) handler: Arc<dyn Agent>,
    pub(crate) threads: usize,
    pub(crate) jobs: Mpmc<Job>,
    pub(crate) sleepers: WaitList,
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
}
