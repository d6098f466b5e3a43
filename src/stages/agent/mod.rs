//! The agent stage: runs an attempt and hands its answer to the domain stage.
//!
//! An agent on the workers is called inline. A call that answers at once (a [`Handler`], a
//! simulated agent, most C calls) comes straight back to the domain stage. A call that defers
//! the attempt (a [`DeferredHandler`], a simulated I/O agent, a C handler that returned
//! "pending") parks its sub-task: the attempt's answer comes back later through this worker's
//! inbox, or its timer abandons it first. An isolated agent's attempts go to its pool's threads
//! as deferred attempts ([`crate::isolated`]).
//!
//! [`Handler`]: crate::Handler
//! [`DeferredHandler`]: crate::DeferredHandler

pub(crate) mod msg;
mod pool;

pub(crate) use pool::run as run_pool;

use crate::attempt::{Attempt, Taken};
use crate::breaker::Permit;
use crate::handler::{Call, CallCx, Request, guarded};
use crate::isolated::Job;
use crate::shared::AgentRun;
use crate::stages::agent::msg::{AttemptInfo, Outcome};
use crate::stages::domain::msg::{Msg, NOT_PARKED};
use crate::stages::worker::Worker;
use crate::sync::Ordering;
use crate::task::{AgentId, DOWN_CODE, DomainId, FailureKind, Reason};

impl Worker {
    /// Sends the sub-task's next attempt to agent `a` (holding `permit` from its breaker).
    pub(crate) fn send(&mut self, mut m: Msg, a: AgentId, permit: Permit, hedge: bool) {
        let ai = usize::from(a.0);
        // Once the engine is stopping, no handler is called again (a C caller may free what its
        // handlers use as soon as shutdown returns): the task is rejected as shutting down. Its
        // other sub-tasks, if any, find it completed (the slot's claim fails) and stop there.
        if self.sh.lifecycle() >= crate::shared::STOPPING {
            return self.complete(m.ticket, Reason::ShuttingDown);
        }
        let info = AttemptInfo { agent: a.0, permit, started_ns: self.now, number: m.attempt, hedge };
        let sh = &*self.sh;
        let rt = &sh.agents[ai];
        m.attempt += 1;
        let bit = rt.bit();
        m.tried |= bit;
        // SAFETY: the task is ours (admitted).
        unsafe { sh.slab.out(m.ticket.slot()) }.attempts += 1;
        if m.parked != NOT_PARKED {
            self.parked.at(m.parked).m = m;
        }
        // SAFETY: the task is ours (admitted); its request is read-only.
        let req = unsafe { sh.slab.req(m.ticket.slot()) };
        // When the attempt is abandoned if it is deferred and not answered: the agent timeout, or
        // the task's deadline or the sub-task's domain timeout when sooner.
        // (Times are engine nanoseconds, below 2^63, and timeouts at most 30 days: no overflow.)
        let deadline =
            (self.now + sh.agent_timeout_ns()).min(req.deadline_ns).min(m.started_ns + sh.domain_timeout_ns());
        let r = Request {
            ticket: m.ticket,
            task_id: req.id,
            payload: req.payload,
            data: &req.data,
            domain: DomainId(m.domain),
            agent: a,
            attempt: u32::from(info.number),
            fanout: req.domains.count_ones(),
            priority: req.priority,
        };
        let down = sh.down[usize::from(m.domain)].load(Ordering::Relaxed) & bit != 0;
        // On the workers: the agent's handler (an agent added while running has it in the
        // snapshot that routed to it); else its pool's index.
        let local = match &rt.run {
            AgentRun::Local(agent) => Ok(agent),
            AgentRun::Added => {
                Ok(self.policy.handlers[ai].as_ref().expect("a snapshot routes only to agents it holds"))
            }
            AgentRun::Pool(p) => Err(*p),
        };
        let (call, armed) = match local {
            _ if down => (Call::Failed(FailureKind::Down, DOWN_CODE), None),
            Ok(agent) => {
                let mut cx = CallCx::on_worker(&self.hub, &mut self.free_slots, self.now, deadline, &sh.ffi_handle);
                // A panic is a failed attempt; a panic after deferring is the deferred
                // attempt's business (its handle, dropped while unwinding, fails it).
                let call = guarded(|| agent.call(&r, &mut cx)).unwrap_or(Call::Failed(FailureKind::Panicked, 0));
                (call, cx.armed)
            }
            Err(p) => match self.free_slots.pop() {
                None => (Call::Failed(FailureKind::Overloaded, 0), None),
                Some(idx) => {
                    let g = self.hub.arm(idx);
                    let attempt = Attempt::new(self.hub.clone(), idx, g, deadline);
                    let job = Job { attempt, ticket: m.ticket, domain: m.domain, attempt_no: u32::from(info.number) };
                    match sh.pools[p].submit(job) {
                        Ok(()) => (Call::Pending, Some((idx, g))),
                        Err(job) => {
                            self.free_slots.push(job.attempt.disarm());
                            (Call::Failed(FailureKind::Overloaded, 0), None)
                        }
                    }
                }
            },
        };
        if let Some((slot, g)) = armed {
            // Deferred (a call that also answered at once broke the contract: the deferred
            // attempt's answer, which its holder still owes, is the one that counts).
            return self.deferred(m, info, slot, g, deadline);
        }
        let end = self.sh.clock.now();
        self.now = end;
        let latency = end.saturating_sub(info.started_ns);
        self.release_agent(ai);
        match call {
            // The common case, kept short: a success at once, in time, of a sub-task not parked.
            Call::Value(v) if m.parked == NOT_PARKED && latency <= self.sh.agent_timeout_ns() => {
                self.report_success(&info, latency);
                if info.number > 0 {
                    self.counters().domain[usize::from(m.domain)].recovered.inc();
                }
                if let Some(w) = &mut self.windows[usize::from(m.domain)] {
                    w.record(end, latency);
                }
                m.value = v;
                self.finish_subtask(m, Reason::None);
            }
            Call::Value(v) => self.answered(m, info, Outcome::ok(v, latency), Vec::new()),
            Call::Body(v, body) => self.answered(m, info, Outcome::ok(v, latency), body),
            Call::Failed(kind, code) => self.answered(m, info, Outcome::failed(kind, code, latency), Vec::new()),
            Call::Pending => {
                self.answered(m, info, Outcome::failed(FailureKind::InvalidReply, 0, latency), Vec::new());
            }
        }
    }

    /// An attempt at agent `a` is no longer in flight (its bulkhead has room again; the place
    /// was reserved when the domain chose the agent).
    #[inline]
    fn release_agent(&self, a: usize) {
        self.sh.agents[a].bulkhead.release();
    }

    /// Takes the answers of deferred attempts from the inbox, and frees the slots of abandoned
    /// attempts whose handles have been completed or dropped.
    pub(crate) fn collect_deferred(&mut self) -> usize {
        let mut n = 0;
        while let Some(taken) = self.hub.take() {
            n += 1;
            match taken {
                Taken::Answer(slot, answer) => {
                    let pa = self.pending_attempts[slot as usize];
                    self.pending_attempts[slot as usize].parked = NOT_PARKED;
                    self.free_slot(slot);
                    let out = Outcome {
                        failure: answer.failure,
                        code: answer.code,
                        value: answer.value,
                        latency_ns: answer.at_ns.saturating_sub(pa.info.started_ns),
                    };
                    match self.parked.get(pa.parked, pa.parked_gen) {
                        Some(sub) => {
                            sub.remove_live(slot);
                            self.on_parked_answer(pa.parked, pa.info, out, answer.body);
                        }
                        // Its sub-task no longer waits for it (another attempt won, or it ended);
                        // the answer still tells the agent's breaker how the agent is doing.
                        None => self.report_to_breaker(&pa.info, &mut { out }),
                    }
                }
                Taken::Retired(slot) => self.free_slot(slot),
            }
        }
        n
    }

    fn free_slot(&mut self, slot: u32) {
        self.release_agent(usize::from(self.pending_attempts[slot as usize].info.agent));
        self.free_slots.push(slot);
    }
}
