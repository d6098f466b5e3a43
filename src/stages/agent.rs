//! The agent stage: runs a handler, times it, and sends the outcome back to the domain stage.
//!
//! An agent that runs on the workers is called inline, from the worker's agent queue. An
//! isolated agent runs on its own thread ([`crate::isolated`]): the worker hands it the attempt
//! through an SPSC ring, starts a timer, and takes the answer from the ring back, or abandons
//! the attempt when the timer fires first (the domain then fails over). A late answer to an
//! abandoned attempt is recognised by its token and dropped.

use crate::handler::{Handler, ReplyFault, Request};
use crate::slab::Req;
use crate::sync::Ordering;
use crate::task::{AgentId, DomainId, FailureKind};
use crate::worker::{Msg, Worker};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The error code of an attempt at an agent whose domain is marked down.
pub const DOWN_CODE: i32 = -503;

/// Runs one attempt: the handler's value, or how it failed and its error code. A panic is
/// caught and counts as a failure.
#[inline]
pub(crate) fn run_attempt(handler: &dyn Handler, req: &Req, m: &Msg, down: bool) -> (Option<FailureKind>, i32, u64) {
    if down {
        return (Some(FailureKind::Down), DOWN_CODE, 0);
    }
    let r = Request {
        task_id: req.id,
        payload: req.payload,
        data: &req.data,
        domain: DomainId(m.domain),
        agent: AgentId(m.agent),
        attempt: u32::from(m.attempt),
        fanout: req.domains.count_ones(),
        priority: req.priority,
    };
    match catch_unwind(AssertUnwindSafe(|| handler.call(&r))) {
        Ok(Ok(v)) => (None, 0, v),
        Ok(Err(code)) => (Some(FailureKind::Error), code, 0),
        Err(payload) => match payload.downcast_ref::<ReplyFault>() {
            Some(f) => (Some(f.kind), f.code, 0),
            None => (Some(FailureKind::Panicked), 0, 0),
        },
    }
}

impl Worker {
    /// Runs an attempt at an agent that lives on the workers, and hands the answer to the domain
    /// stage at once.
    pub(crate) fn agent_step(&mut self, mut m: Msg) {
        let a = usize::from(m.agent);
        let start = self.now;
        // Once the engine is stopping, no handler is called again (a C caller may free what its
        // handlers use as soon as shutdown returns): the task is rejected as shutting down. Its
        // other sub-tasks, if any, find it completed (the slot's claim fails) and stop there.
        if self.sh.lifecycle() >= crate::shared::STOPPING {
            return self.complete(m.ticket, crate::task::Reason::ShuttingDown);
        }
        let down = self.sh.domain_down[usize::from(m.domain)].load(Ordering::Relaxed);
        // SAFETY: the task is ours (admitted); its request is read-only.
        let req = unsafe { self.sh.slab.req(m.ticket.slot()) };
        let (failure, code, value) = run_attempt(&*self.sh.handlers[a], req, &m, down);
        let end = self.sh.clock.now();
        self.now = end;
        m.latency_ns = end.saturating_sub(start);
        m.failure = failure.or((m.latency_ns > self.sh.agent_timeout_ns).then_some(FailureKind::Slow));
        m.code = code;
        m.value = if m.failure.is_none() { value } else { 0 };
        m.returned = true;
        self.on_attempt_result(m);
    }

    /// Hands an attempt to an isolated agent's thread and starts its timer. A full ring counts
    /// as an overloaded agent: the domain fails over at once.
    pub(crate) fn send_isolated(&mut self, mut m: Msg) {
        let iso = usize::from(self.sh.iso_index[usize::from(m.agent)]);
        m.token = self.outstanding.insert(m);
        match self.iso_tx[iso].push(m) {
            Ok(()) => {
                self.iso_dirty[iso] = true;
                self.timers.push_back((self.now.saturating_add(self.sh.agent_timeout_ns), m.token));
            }
            Err(mut m) => {
                self.outstanding.take(m.token);
                m.failure = Some(FailureKind::Overloaded);
                m.latency_ns = 0;
                m.returned = true;
                self.domain_in.push_back(m);
            }
        }
    }

    /// Publishes the attempts queued for isolated agents this turn and wakes their threads.
    pub(crate) fn flush_isolated(&mut self) {
        for (i, dirty) in self.iso_dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                self.iso_tx[i].publish();
                self.sh.isolated[i].parker.wake();
            }
        }
    }

    /// Takes isolated agents' answers; drops those whose attempt was already abandoned.
    pub(crate) fn collect_isolated(&mut self) -> usize {
        let mut n = 0;
        for rx in self.iso_rx.iter_mut() {
            while let Some(m) = rx.pop() {
                n += 1;
                if self.outstanding.take(m.token).is_some() {
                    self.domain_in.push_back(m);
                } else {
                    self.sh.workers[self.id].counters.late_results.inc();
                }
            }
            rx.release();
        }
        n
    }

    /// Abandons attempts at isolated agents whose timer has expired; drops timers of attempts
    /// already answered.
    pub(crate) fn fire_timers(&mut self) -> usize {
        let mut n = 0;
        while let Some(&(deadline, token)) = self.timers.front() {
            if !self.outstanding.contains(token) {
                self.timers.pop_front();
                continue;
            }
            if deadline > self.now {
                break;
            }
            self.timers.pop_front();
            if let Some(mut m) = self.outstanding.take(token) {
                m.failure = Some(FailureKind::Abandoned);
                m.latency_ns = self.sh.agent_timeout_ns;
                m.returned = true;
                self.domain_in.push_back(m);
                n += 1;
            }
        }
        n
    }
}
