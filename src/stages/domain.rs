//! The domain stage: sheds sub-tasks while the domain's breaker is open, injects the domain's
//! correlated faults, picks a healthy agent (round-robin, skipping agents already tried and
//! agents whose breaker refuses), fails over to another agent on failure or timeout (at most
//! `max_attempts` attempts), and reports the sub-task's outcome to the domain breaker and the
//! meta stage.

use crate::breaker::{BreakerMode, Permit};
use crate::shared::{Level, Shared};
use crate::sim::{DOMAIN_FAULT_SALT, fails_below, oracle_key, splitmix64};
use crate::task::{AgentId, AttemptFailure, DomainId, FailureKind, Reason};
use crate::worker::{Msg, Worker};

/// The domain's choice for the next attempt.
enum Choice {
    Agent(AgentId, Permit),
    /// Every untried agent refused (breaker open), and panic routing is off.
    NoneAvailable,
    /// Every agent in rotation has been tried.
    AllTried,
}

/// Round-robin from the domain's cursor over the agents in rotation, skipping those tried; the
/// first whose breaker grants a permit wins. If every untried agent refuses, panic routing
/// takes the first of them whose breaker tripped by itself (a `Bypass` permit moves no breaker
/// state); an agent an operator forced open is never tried.
fn choose(sh: &Shared, agents: &[AgentId], cursor: &mut u32, tried: u64, now: u64) -> Choice {
    let n = agents.len();
    if n == 0 {
        return Choice::NoneAvailable;
    }
    let mut i = *cursor as usize;
    if i >= n {
        i = 0;
    }
    *cursor = if i + 1 == n { 0 } else { i as u32 + 1 };
    let mut fallback = None;
    let mut forced = false;
    for _ in 0..n {
        let a = agents[i];
        i = if i + 1 == n { 0 } else { i + 1 };
        if tried & (1u64 << sh.topo.agents[usize::from(a.0)].local) != 0 {
            continue;
        }
        let breaker = &sh.agent_breakers[usize::from(a.0)];
        let (permit, tr) = breaker.try_acquire(now);
        sh.emit(Level::Agent, usize::from(a.0), tr);
        if permit != Permit::Denied {
            return Choice::Agent(a, permit);
        }
        if breaker.mode() != BreakerMode::ForcedOpen {
            fallback.get_or_insert(a);
        } else {
            forced = true;
        }
    }
    match fallback {
        Some(a) if sh.cfg.panic_routing => Choice::Agent(a, Permit::Bypass),
        Some(_) => Choice::NoneAvailable,
        None if forced => Choice::NoneAvailable,
        None => Choice::AllTried,
    }
}

impl Worker {
    pub(crate) fn domain_step(&mut self, m: Msg) {
        // New sub-tasks, and answers that crossed threads (isolated agents, expired timers).
        if m.returned { self.on_attempt_result(m) } else { self.start_subtask(m) }
    }

    fn start_subtask(&mut self, mut m: Msg) {
        let d = usize::from(m.domain);
        m.started_ns = self.now;
        self.counters().domain[d].subtasks.inc();
        let (permit, tr) = self.sh.domain_breakers[d].try_acquire(self.now);
        self.sh.emit(Level::Domain, d, tr);
        if permit == Permit::Denied {
            self.counters().domain[d].shed.inc();
            return self.finish_subtask(m, Reason::DomainShed);
        }
        m.domain_permit = permit;
        let fault = self.sh.domain_fault_threshold[d];
        if fault != 0 {
            let (id, fanout) = {
                // SAFETY: the task is ours (admitted).
                let r = unsafe { self.sh.slab.req(m.ticket.slot()) };
                (r.id, r.domains.count_ones())
            };
            if fails_below(splitmix64(oracle_key(id, m.domain, fanout) ^ DOMAIN_FAULT_SALT), 0, fault) {
                self.counters().domain[d].faults.inc();
                return self.finish_subtask(m, Reason::DomainFault);
            }
        }
        self.dispatch(m);
    }

    /// An attempt came back (from the agent stage, an isolated agent, or its timer).
    pub(crate) fn on_attempt_result(&mut self, mut m: Msg) {
        let (a, d) = (usize::from(m.agent), usize::from(m.domain));
        let ok = m.failure.is_none();
        let tr = self.sh.agent_breakers[a].on_result(m.agent_permit, self.now, m.latency_ns, ok, self.id);
        self.sh.emit(Level::Agent, a, tr);
        let ctr = &self.sh.workers[self.id].counters.agent[a];
        ctr.calls.inc();
        ctr.latency_ns.add(m.latency_ns);
        if let Some(kind) = m.failure {
            ctr.failures.inc();
            match kind {
                FailureKind::Slow => ctr.slow.inc(),
                FailureKind::Panicked => ctr.panics.inc(),
                FailureKind::Abandoned => ctr.abandoned.inc(),
                FailureKind::Overloaded => ctr.overloaded.inc(),
                FailureKind::Error | FailureKind::Down | FailureKind::InvalidReply => {}
            }
        }
        if ok {
            if m.attempt > 0 {
                self.counters().domain[d].recovered.inc();
            }
            return self.finish_subtask(m, Reason::None);
        }
        let failure = AttemptFailure {
            domain: DomainId(m.domain),
            agent: AgentId(m.agent),
            kind: m.failure.unwrap_or_default(),
            code: m.code,
        };
        // SAFETY: the task is ours (admitted, with this sub-task in flight).
        unsafe { self.sh.slab.out(m.ticket.slot()) }.record_failure(failure);
        self.counters().domain[d].failovers.inc();
        m.attempt = m.attempt.saturating_add(1);
        self.dispatch(m);
    }

    /// Sends the sub-task's next attempt to an agent, or ends the sub-task.
    fn dispatch(&mut self, mut m: Msg) {
        let d = usize::from(m.domain);
        // SAFETY: the task is ours (admitted).
        let deadline = unsafe { self.sh.slab.req(m.ticket.slot()) }.deadline_ns;
        if self.now >= deadline {
            return self.finish_subtask(m, Reason::Deadline);
        }
        if self.now.saturating_sub(m.started_ns) > self.sh.domain_timeout_ns {
            return self.finish_subtask(m, Reason::DomainTimeout);
        }
        if u32::from(m.attempt) >= self.sh.max_attempts[d] {
            return self.finish_subtask(m, Reason::AgentsExhausted);
        }
        let mut choice = choose(&self.sh, &self.policy.routing[d], &mut self.rr[d], m.tried, self.now);
        if matches!(choice, Choice::AllTried) {
            // More attempts allowed than agents: start another round over them.
            m.tried = 0;
            choice = choose(&self.sh, &self.policy.routing[d], &mut self.rr[d], 0, self.now);
        }
        let (a, permit) = match choice {
            Choice::Agent(a, p) => (a, p),
            Choice::NoneAvailable | Choice::AllTried => return self.finish_subtask(m, Reason::NoAgent),
        };
        if permit == Permit::Bypass {
            self.counters().panic_routed.inc();
        }
        m.agent = a.0;
        m.agent_permit = permit;
        m.tried |= 1u64 << self.sh.topo.agents[usize::from(a.0)].local;
        m.failure = None;
        m.returned = false;
        // SAFETY: the task is ours (admitted).
        unsafe { self.sh.slab.out(m.ticket.slot()) }.attempts += 1;
        if self.sh.iso_index[usize::from(a.0)] == u16::MAX {
            self.agent_step(m); // on this worker: the attempt runs now, its answer comes straight back
        } else {
            self.send_isolated(m);
        }
    }

    /// Ends a sub-task: reports it to the domain breaker (unless it was shed) and hands it to the
    /// meta stage's join.
    pub(crate) fn finish_subtask(&mut self, mut m: Msg, reason: Reason) {
        let d = usize::from(m.domain);
        if m.domain_permit != Permit::Denied {
            let ok = reason == Reason::None;
            let tr = self.sh.domain_breakers[d].on_result(
                m.domain_permit,
                self.now,
                self.now.saturating_sub(m.started_ns),
                ok,
                self.id,
            );
            self.sh.emit(Level::Domain, d, tr);
        }
        let ctr = &self.sh.workers[self.id].counters.domain[d];
        match reason {
            Reason::None => ctr.ok.inc(),
            Reason::Deadline | Reason::DomainTimeout => ctr.timeouts.inc(),
            Reason::DomainShed => {}
            _ => ctr.failed.inc(),
        }
        m.reason = reason;
        self.join(m);
    }
}
