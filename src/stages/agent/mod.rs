//! The agent stage: runs an attempt and hands its answer to the domain stage.
//!
//! An agent on the workers is called inline. [`Worker::send`] runs the attempt and returns what
//! became of it to the domain stage ([`Sent`]): an answer at once (a [`Handler`], a simulated
//! agent, most C calls), or a deferred attempt (a [`DeferredHandler`], a simulated I/O agent, a
//! C handler that returned "pending"), whose answer comes back later through this worker's
//! inbox ([`Worker::collect_deferred`]) unless the domain's timer abandons it first. An isolated
//! agent's attempts go to its pool's threads as deferred attempts ([`crate::isolated`]).
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
use crate::slab::{Req, ReqExtra};
use crate::stages::agent::msg::{AttemptInfo, Outcome};
use crate::stages::domain::msg::{Msg, NOT_PARKED};
use crate::stages::worker::Worker;
use crate::sync::Ordering;
use crate::task::{AgentId, DOWN_CODE, DomainId, FailureKind, Ticket};

/// What the agent stage hands back to the domain stage for an attempt it was given.
pub(crate) enum Sent {
    /// The agent answered at once, `latency_ns` after the attempt started.
    Answered { call: Call, latency_ns: u64 },
    /// The attempt was deferred (slot `slot` of generation `g`): its answer comes through the
    /// inbox, or the domain's timer abandons it at `deadline`.
    Deferred { slot: u32, g: u32, deadline: u64 },
    /// The engine is stopping: no handler is called again, and the task is to be rejected.
    Stopping,
}

/// The request an agent's handler sees for attempt `attempt` of task `req`'s sub-task in
/// `domain`: one builder for the workers and for isolated agents' threads.
#[inline]
pub(crate) fn request<'a>(
    (req, extra): (&'a Req, &'a ReqExtra),
    ticket: Ticket,
    (domain, origin): (u16, u16),
    agent: AgentId,
    attempt: u32,
) -> Request<'a> {
    Request {
        ticket,
        task_id: req.id,
        payload: req.payload,
        data: req.data(extra),
        domain: DomainId(domain),
        origin: DomainId(origin),
        agent,
        attempt,
        fanout: u32::from(req.fanout.get()),
        priority: req.priority.get(),
    }
}

impl Worker {
    /// Runs the sub-task's next attempt at agent `a` (holding `permit` from its breaker): calls
    /// the agent's handler on this worker, or hands the attempt to its pool. Counts the attempt
    /// on `m`, and returns the attempt and what became of it, for the domain stage. On the lean
    /// path (`LEAN`) no agent is down and none has a concurrency limit (see `Worker::lean_now`).
    #[inline(always)] // into the domain stage's `attempt`: one function per attempt, as one call
    pub(crate) fn send<const LEAN: bool>(
        &mut self,
        m: &mut Msg,
        a: AgentId,
        permit: Permit,
        hedge: bool,
    ) -> (AttemptInfo, Sent) {
        let ai = usize::from(a.0);
        let info = AttemptInfo { agent: a.0, permit, started_ns: self.now, number: m.attempt, hedge };
        // Once the engine is stopping, no handler is called again (a C caller may free what its
        // handlers use as soon as shutdown returns).
        if self.sh.lifecycle() >= crate::shared::STOPPING {
            return (info, Sent::Stopping);
        }
        // What this turn completed so far is published (and sleeping pollers woken, and the
        // places kept at other agents given back) before a call that may block: once the turn
        // has run long, or when this agent's last call on this worker was slow. A turn of fast
        // calls publishes once, at its end.
        if self.slow_calls[ai] || self.now.wrapping_sub(self.turn_start) > crate::stages::worker::PUBLISH_NS {
            self.publish_completions();
        }
        let sh = &*self.sh;
        let rt = &sh.agents[ai];
        m.attempt += 1;
        let bit = rt.bit();
        m.tried |= bit;
        // SAFETY: the task is ours (admitted).
        unsafe { sh.slab.out(m.ticket.slot()) }.attempts += 1;
        if m.parked != NOT_PARKED {
            self.parked.at(m.parked).m = *m;
        }
        // SAFETY: the task is ours (admitted); its request is read-only.
        let req = unsafe { sh.slab.req(m.ticket.slot()) };
        // When the attempt is abandoned if it is deferred and not answered: the agent timeout, or
        // the task's deadline or the sub-task's domain timeout when sooner.
        // (Times are engine nanoseconds, below 2^63, and timeouts at most 30 days: no overflow.)
        let limit = req.deadline_ns.get().min(m.started_ns + sh.domain_timeout_ns());
        let deadline = (self.now + sh.agent_timeout_ns()).min(limit);
        // SAFETY: as above.
        let extra = unsafe { sh.slab.extra(m.ticket.slot()) };
        let r = request((req, extra), m.ticket, (m.domain, m.origin), a, u32::from(info.number));
        let down = !LEAN && sh.down[usize::from(m.domain)].load(Ordering::Relaxed) & bit != 0;
        // On the workers: the agent's handler (an agent added while running has it in the
        // snapshot that routed to it); else its pool's index.
        let local = match &rt.run {
            AgentRun::Local(agent) => Ok(agent),
            AgentRun::Added => {
                Ok(self.policy.handlers[ai].as_ref().expect("a snapshot routes only to agents it holds"))
            }
            AgentRun::Pool(p) => Err(*p),
        };
        // `called`: whether a handler ran on this worker (then how long it took decides
        // whether this agent's next call is preceded by a publish, see `PUBLISH_NS`).
        let (call, armed, deadline, called) = match local {
            _ if down => (Call::Failed(FailureKind::Down, DOWN_CODE), None, deadline, false),
            Ok(agent) => {
                let mut cx =
                    CallCx::on_worker(&self.hub, &mut self.free_slots, self.now, deadline, limit, &sh.ffi_handle);
                // A panic is a failed attempt; a panic after deferring is the deferred
                // attempt's business (its handle, dropped while unwinding, fails it).
                let call = guarded(|| agent.call(&r, &mut cx)).unwrap_or(Call::Failed(FailureKind::Panicked, 0));
                // A queued agent's attempt waits until `limit` (its agent timeout counts later).
                (call, cx.armed, cx.deadline_ns, true)
            }
            Err(p) => match self.free_slots.pop() {
                None => (Call::Failed(FailureKind::Overloaded, 0), None, deadline, false),
                Some(idx) => {
                    let g = self.hub.arm(idx);
                    let attempt = Attempt::new(self.hub.clone(), idx, g, deadline);
                    let job = Job {
                        attempt,
                        ticket: m.ticket,
                        domain: m.domain,
                        origin: m.origin,
                        attempt_no: u32::from(info.number),
                    };
                    match sh.pools[p].submit(job) {
                        Ok(()) => (Call::Pending, Some((idx, g)), deadline, false),
                        Err(job) => {
                            self.free_slots.push(job.attempt.disarm());
                            (Call::Failed(FailureKind::Overloaded, 0), None, deadline, false)
                        }
                    }
                }
            },
        };
        if let Some((slot, g)) = armed {
            if called {
                // A handler that deferred may still have blocked before it did.
                let took = self.sh.clock.now().saturating_sub(info.started_ns);
                self.slow_calls[ai] = took > crate::stages::worker::PUBLISH_NS;
            }
            // Deferred (a call that also answered at once broke the contract: the deferred
            // attempt's answer, which its holder still owes, is the one that counts).
            return (info, Sent::Deferred { slot, g, deadline });
        }
        let end = self.sh.clock.now();
        self.now = end;
        if called {
            self.slow_calls[ai] = end.saturating_sub(info.started_ns) > crate::stages::worker::PUBLISH_NS;
        }
        if !LEAN {
            self.release_agent(ai);
        }
        (info, Sent::Answered { call, latency_ns: end.saturating_sub(info.started_ns) })
    }

    /// An attempt at agent `a` is no longer in flight (answered at once, or its deferred answer
    /// or abandonment collected): its place (reserved when the domain chose the agent) goes
    /// back, kept by this worker for its next attempt there in this turn where the agent's
    /// limit allows (see `Held`).
    #[inline]
    fn release_agent(&mut self, a: usize) {
        self.held.give_back(a, &self.sh.agents[a].bulkhead);
    }

    /// Takes the answers of deferred attempts from the inbox, and frees the slots of abandoned
    /// attempts whose handles have been completed or dropped.
    pub(crate) fn collect_deferred(&mut self) -> usize {
        let mut n = 0;
        while let Some(taken) = self.hub.take() {
            n += 1;
            match taken {
                Taken::Answer(slot, answer) => {
                    let pa = self.pending_attempts.get(slot);
                    self.pending_attempts.at(slot).parked = NOT_PARKED;
                    self.free_slot(slot);
                    let out = Outcome {
                        failure: answer.failure,
                        code: answer.code,
                        value: answer.value,
                        // From the hand-over, or from its start by the holder when later (a
                        // queued attempt's wait for its loop is not the agent's latency).
                        latency_ns: answer.at_ns.saturating_sub(pa.info.started_ns.max(answer.started_ns)),
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
        self.release_agent(usize::from(self.pending_attempts.get(slot).info.agent));
        self.free_slots.push(slot);
    }
}
