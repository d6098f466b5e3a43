//! The domain stage: sheds sub-tasks while the domain's breaker is open, injects the domain's
//! correlated faults, picks a healthy agent with room (round-robin, skipping agents already
//! tried, agents whose breaker refuses, and agents at their concurrency limit), fails over to
//! another agent on failure or timeout (at most `max_attempts` attempts, within the retry
//! budget), hedges a slow deferred attempt, and reports the sub-task's outcome to the domain
//! breaker and the meta stage.

pub(crate) mod msg;
pub(crate) mod timers;

use crate::breaker::{BreakerMode, Permit};
use crate::events::Level;
use crate::handler::Call;
use crate::policy::bulkhead::Held;
use crate::shared::Shared;
use crate::sim::{DOMAIN_FAULT_SALT, fails_below, rerouted_key, splitmix64};
use crate::stages::agent::Sent;
use crate::stages::agent::msg::{AttemptInfo, Outcome};
use crate::stages::domain::msg::{Msg, NOT_PARKED};
use crate::stages::worker::Worker;
use crate::sync::Ordering;
use crate::task::{AgentId, AttemptFailure, DomainId, FailureKind, Reason};

/// The domain's choice for the next attempt.
pub(super) enum Choice {
    Agent(AgentId, Permit),
    /// Every untried agent refused (breaker open), and panic routing is off.
    NoneAvailable,
    /// Every agent in rotation has been tried.
    AllTried,
    /// An untried agent would take it but is at its concurrency limit: wait for room.
    Busy,
}

/// Round-robin from the domain's cursor over the agents in rotation, skipping those tried and
/// those at their concurrency limit; the first whose breaker grants a permit wins. If none does
/// and one was only full, the sub-task waits for room. If every untried agent refuses, panic
/// routing takes the first of them whose breaker tripped by itself (a `Bypass` permit moves no
/// breaker state); an agent an operator forced open is never tried. A domain balanced by peak
/// EWMA starts the round at the cheaper of two agents drawn at random instead of at the cursor
/// (the test is one load of a mask, so a round-robin domain's choice is what it always was).
///
/// On the lean path (`LEAN`: every agent's breaker disabled, no concurrency limit, no balancing
/// by latency; see `Worker::lean_now`) the first untried agent from the cursor wins, with no
/// permit to report (`Denied`: a disabled breaker judges nothing).
///
/// A place the worker kept at an agent (`held`, see [`Held`]) is taken before the agent's
/// shared count is.
#[inline(always)]
pub(super) fn choose<const LEAN: bool>(
    sh: &Shared,
    d: usize,
    agents: &[AgentId],
    cursor: &mut u32,
    held: &mut Held,
    tried: u64,
    now: u64,
) -> Choice {
    if LEAN {
        return choose_untried(sh, agents, cursor, tried);
    }
    if sh.peak_ewma.load(Ordering::Relaxed) & (1u64 << d) != 0 {
        choose_by_peak_ewma(sh, d, agents, cursor, held, tried, now)
    } else {
        choose_from(sh, agents, cursor, None, held, tried, now)
    }
}

#[inline(never)]
fn choose_by_peak_ewma(
    sh: &Shared,
    d: usize,
    agents: &[AgentId],
    cursor: &mut u32,
    held: &mut Held,
    tried: u64,
    now: u64,
) -> Choice {
    choose_from(sh, agents, cursor, Some(d), held, tried, now)
}

/// Where a round over a rotation of `n` agents starts (None when it is empty): at the cursor,
/// which moves on by one.
#[inline(always)]
fn take_turn(cursor: &mut u32, n: usize) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let i = if (*cursor as usize) < n { *cursor as usize } else { 0 };
    *cursor = if i + 1 == n { 0 } else { i as u32 + 1 };
    Some(i)
}

/// `choose` from the cursor, or (`peak`, with the domain) from the better of two choices.
#[inline(always)]
fn choose_from(
    sh: &Shared,
    agents: &[AgentId],
    cursor: &mut u32,
    peak: Option<usize>,
    held: &mut Held,
    tried: u64,
    now: u64,
) -> Choice {
    let n = agents.len();
    let Some(mut i) = take_turn(cursor, n) else { return Choice::NoneAvailable };
    if let Some(d) = peak
        && n > 1
    {
        i = two_choices(sh, d, agents, i, tried, now);
    }
    let mut fallback = None;
    let mut forced = false;
    let mut busy = false;
    // Agents tried by the sub-task, or considered in this round (a weighted rotation lists an
    // agent more than once).
    let mut seen = tried;
    for _ in 0..n {
        let a = agents[i];
        i = if i + 1 == n { 0 } else { i + 1 };
        let ai = usize::from(a.0);
        let rt = &sh.agents[ai];
        let bit = rt.bit();
        if seen & bit != 0 {
            continue;
        }
        seen |= bit;
        if !held.take(ai, &rt.bulkhead) && !rt.bulkhead.reserve() {
            busy = true;
            continue;
        }
        let breaker = &sh.agent_breakers[ai];
        let (permit, tr) = breaker.try_acquire(now);
        sh.emit(Level::Agent, usize::from(a.0), tr);
        if permit != Permit::Denied {
            return Choice::Agent(a, permit); // with its place reserved
        }
        rt.bulkhead.release();
        if breaker.mode() != BreakerMode::ForcedOpen {
            fallback.get_or_insert(a);
        } else {
            forced = true;
        }
    }
    match fallback {
        _ if busy => Choice::Busy,
        // The agent had room a moment ago; if another attempt took it since, the sub-task waits
        // for room there, as for any agent at its limit (it failed as `NoAgent` before).
        Some(a) if sh.cfg.panic_routing => {
            if sh.agents[usize::from(a.0)].bulkhead.reserve() {
                Choice::Agent(a, Permit::Bypass)
            } else {
                Choice::Busy
            }
        }
        Some(_) => Choice::NoneAvailable,
        None if forced => Choice::NoneAvailable,
        None => Choice::AllTried,
    }
}

/// The lean path's choice: the first agent from the cursor the sub-task has not tried.
#[inline(always)]
fn choose_untried(sh: &Shared, agents: &[AgentId], cursor: &mut u32, tried: u64) -> Choice {
    let n = agents.len();
    let Some(mut i) = take_turn(cursor, n) else { return Choice::NoneAvailable };
    for _ in 0..n {
        let a = agents[i];
        if tried & sh.agents[usize::from(a.0)].bit() == 0 {
            return Choice::Agent(a, Permit::Denied);
        }
        i = if i + 1 == n { 0 } else { i + 1 };
    }
    Choice::AllTried
}

/// The power of two choices: of two distinct positions of the rotation drawn at random (from
/// the clock, the cursor and the tried set, so a simulation stays reproducible), the one whose
/// agent costs less (peak-EWMA latency x (in flight + 1)); an agent the sub-task already tried
/// loses to one it did not.
#[inline(never)]
fn two_choices(sh: &Shared, d: usize, agents: &[AgentId], cursor: usize, tried: u64, now: u64) -> usize {
    let n = agents.len() as u64;
    let h = splitmix64(now ^ (cursor as u64).rotate_left(32) ^ tried);
    let x = (h % n) as usize;
    let y = ((x as u64 + 1 + (h >> 32) % (n - 1)) % n) as usize;
    let (decay, default_rtt) = sh.balance[d].params();
    let cost = |k: usize| {
        let rt = &sh.agents[usize::from(agents[k].0)];
        if tried & rt.bit() != 0 {
            return f64::INFINITY;
        }
        rt.ewma.estimate(now, decay, default_rtt) * f64::from(rt.bulkhead.in_flight() + 1)
    };
    if cost(y) < cost(x) { y } else { x }
}

/// Watches an attempt's outcome at `agent` when its domain balances by peak EWMA or has
/// outlier detection (one relaxed load of a mask otherwise): feeds the latency estimate and
/// judges the agent an outlier or not.
#[inline(always)]
fn watch(sh: &Shared, members: &[Vec<AgentId>], agent: usize, now: u64, latency_ns: u64, failed: bool) {
    if sh.watched.load(Ordering::Relaxed) != 0 {
        watch_domain(sh, members, agent, now, latency_ns, failed);
    }
}

#[inline(never)]
fn watch_domain(sh: &Shared, members: &[Vec<AgentId>], agent: usize, now: u64, latency_ns: u64, failed: bool) {
    let rt = &sh.agents[agent];
    let d = rt.domain.load(Ordering::Relaxed) as usize;
    let bit = 1u64 << d;
    if sh.watched.load(Ordering::Relaxed) & bit == 0 {
        return;
    }
    let (decay, _) = sh.balance[d].params();
    let outlier = (sh.outlier_on.load(Ordering::Relaxed) & bit != 0).then(|| &sh.outlier[d]);
    let factor = outlier.map_or(0.0, |o| o.latency_factor());
    if sh.peak_ewma.load(Ordering::Relaxed) & bit != 0 || factor > 0.0 {
        rt.ewma.observe(now, latency_ns, decay);
    }
    let Some(o) = outlier else { return };
    let mut trigger = rt.outlier.count(o, failed);
    let peers = members.get(d).map_or(&[][..], Vec::as_slice);
    if trigger.is_none() && factor > 0.0 && rt.outlier.sampled(o) {
        // The estimates as their last samples left them (a peer's decays while it waits for its
        // next), of the peers in service (an ejected peer's is stale).
        let mut est = [0f64; 64];
        let mut n = 0;
        for &p in peers.iter().filter(|p| usize::from(p.0) != agent) {
            let pi = usize::from(p.0);
            if let Some(e) = sh.agents[pi].ewma.stored()
                && sh.agent_breakers[pi].state() == crate::breaker::BreakerState::Closed
                && n < est.len()
            {
                est[n] = e;
                n += 1;
            }
        }
        if let (Some(median), Some(mine)) = (crate::policy::outlier::median(&mut est[..n]), rt.ewma.stored())
            && mine > factor * median
        {
            trigger = Some(crate::policy::outlier::Trigger::Latency);
        }
    }
    if let Some(t) = trigger {
        eject(sh, o, peers, agent, now, t);
    }
}

/// Ejects `agent` (one of `peers`, its domain's members) for `trigger`, unless as many of the
/// domain's agents as may be out already are (their breakers open for any reason).
fn eject(
    sh: &Shared,
    o: &crate::policy::outlier::DomainOutlier,
    peers: &[AgentId],
    agent: usize,
    now: u64,
    trigger: crate::policy::outlier::Trigger,
) {
    use crate::breaker::{BreakerState, TransitionCause};
    use crate::policy::outlier::Trigger;
    let out = peers.iter().filter(|p| sh.agent_breakers[usize::from(p.0)].state() != BreakerState::Closed).count();
    if out >= o.max_out(peers.len()) {
        return;
    }
    let rt = &sh.agents[agent];
    let (k, ns) = rt.outlier.next_ejection(o, now);
    let cause = match trigger {
        Trigger::Failures => TransitionCause::OutlierFailures,
        Trigger::FailureRate => TransitionCause::OutlierFailureRate,
        Trigger::Latency => TransitionCause::OutlierLatency,
    };
    let tr = sh.agent_breakers[agent].eject(now, ns, cause);
    if tr.is_some() {
        rt.outlier.ejected(k, now, ns);
    }
    sh.emit(Level::Agent, agent, tr);
}

/// A pass over a domain's wait queue stops after this many sub-tasks in a row found no room.
const RETRY_MISSES: usize = 16;

impl Worker {
    /// Starts sub-task `m`: the domain breaker's permit, the domain's injected faults and its
    /// retry budget's deposit, then its first attempt. The lean path (`LEAN`) has none of them
    /// on (its domain breakers disabled, no faults, no budgets; see `Worker::lean_now`).
    pub(crate) fn start_subtask<const LEAN: bool>(&mut self, mut m: Msg) {
        let d = usize::from(m.domain);
        m.started_ns = self.now;
        self.counters().domain[d].subtasks.inc();
        if !LEAN {
            let (permit, tr) = self.sh.domain_breakers[d].try_acquire(self.now);
            self.sh.emit_for(Level::Domain, d, tr, m.ticket);
            if permit == Permit::Denied {
                self.counters().domain[d].shed.inc();
                return self.finish_subtask::<false>(m, Reason::DomainShed);
            }
            m.domain_permit = permit;
            let fault = self.sh.domain_fault_threshold[d].load(Ordering::Relaxed);
            if fault != 0 {
                let (id, fanout) = {
                    // SAFETY: the task is ours (admitted).
                    let r = unsafe { self.sh.slab.req(m.ticket.slot()) };
                    (r.id, u32::from(r.fanout.get()))
                };
                if fails_below(splitmix64(rerouted_key(id, m.domain, m.origin, fanout) ^ DOMAIN_FAULT_SALT), 0, fault) {
                    self.counters().domain[d].faults.inc();
                    return self.finish_subtask::<false>(m, Reason::DomainFault);
                }
            }
            if let Some(b) = &mut self.budgets[d] {
                b.deposit(self.now);
            }
        }
        self.dispatch::<LEAN>(m);
    }

    /// Counts an answered (or abandoned) attempt: its agent's breaker and counters, the
    /// domain's latency window, and its failure on the task's record.
    fn record(&mut self, m: &Msg, info: &AttemptInfo, out: &mut Outcome) {
        let d = usize::from(m.domain);
        self.report_to_breaker(info, out);
        if let Some(w) = &mut self.windows[d] {
            w.record(self.now, out.latency_ns);
        }
        if let Some(kind) = out.failure {
            let failure = AttemptFailure {
                domain: DomainId(m.domain),
                agent: AgentId(info.agent),
                kind,
                code: out.code,
                attempt: u32::from(info.number),
            };
            // SAFETY: the task is ours (admitted, with this sub-task in flight).
            unsafe { self.sh.slab.out(m.ticket.slot()) }.record_failure(failure);
            self.counters().domain[d].failovers.inc();
        }
    }

    /// Reports a success in time to its agent's breaker and counters.
    /// The lean path (`LEAN`) holds no permit and watches no agent.
    #[inline(always)]
    pub(crate) fn report_success<const LEAN: bool>(&mut self, info: &AttemptInfo, latency_ns: u64) {
        let a = usize::from(info.agent);
        if !LEAN {
            if info.permit != Permit::Denied {
                let tr = self.sh.agent_breakers[a].on_result(info.permit, self.now, latency_ns, true, self.id);
                self.sh.emit(Level::Agent, a, tr);
            }
            watch(&self.sh, &self.policy.members, a, self.now, latency_ns, false);
        }
        let ctr = &self.ctr.agent[a];
        ctr.calls.inc();
        ctr.latency_ns.add(latency_ns);
    }

    /// Reports an attempt's outcome to its agent's breaker (unless its permit was used) and
    /// counters. An answer slower than the agent timeout counts as a failure (`Slow`).
    pub(crate) fn report_to_breaker(&mut self, info: &AttemptInfo, out: &mut Outcome) {
        let a = usize::from(info.agent);
        if out.failure.is_none() && out.latency_ns > self.sh.agent_timeout_ns() {
            out.failure = Some(crate::task::FailureKind::Slow);
        }
        let ok = out.failure.is_none();
        if info.permit != Permit::Denied {
            let tr = self.sh.agent_breakers[a].on_result(info.permit, self.now, out.latency_ns, ok, self.id);
            self.sh.emit(Level::Agent, a, tr);
        }
        watch(&self.sh, &self.policy.members, a, self.now, out.latency_ns, !ok);
        let ctr = &self.ctr.agent[a];
        ctr.calls.inc();
        ctr.latency_ns.add(out.latency_ns);
        if let Some(kind) = out.failure {
            ctr.failures.inc();
            match kind {
                crate::task::FailureKind::Slow => ctr.slow.inc(),
                crate::task::FailureKind::Panicked => ctr.panics.inc(),
                crate::task::FailureKind::Overloaded => ctr.overloaded.inc(),
                _ => {}
            }
        }
    }

    /// An attempt answered at once: done, or fail over.
    pub(crate) fn answered<const LEAN: bool>(&mut self, m: Msg, info: AttemptInfo, mut out: Outcome, body: Vec<u8>) {
        if m.parked != NOT_PARKED {
            return self.on_parked_answer(m.parked, info, out, body);
        }
        self.record(&m, &info, &mut out);
        if out.failure.is_none() {
            return self.succeeded::<LEAN>(m, &info, out.value, body);
        }
        self.dispatch::<LEAN>(m);
    }

    /// An attempt of parked sub-task `p` answered, failed, or was abandoned: done, wait for
    /// its other attempts, or fail over.
    pub(crate) fn on_parked_answer(&mut self, p: u32, info: AttemptInfo, mut out: Outcome, body: Vec<u8>) {
        let sub = *self.parked.at(p);
        self.record(&sub.m, &info, &mut out);
        if out.failure.is_none() {
            return self.succeeded::<false>(sub.m, &info, out.value, body);
        }
        if sub.n_live > 0 {
            return; // another attempt (a hedge) may still answer
        }
        self.dispatch::<false>(sub.m);
    }

    fn succeeded<const LEAN: bool>(&mut self, mut m: Msg, info: &AttemptInfo, value: u64, body: Vec<u8>) {
        if info.number > 0 {
            let d = usize::from(m.domain);
            self.counters().domain[d].recovered.inc();
            if info.hedge {
                self.counters().domain[d].hedge_wins.inc();
            }
        }
        m.value = value;
        if !body.is_empty() {
            // SAFETY: the task is ours (admitted, with this sub-task in flight).
            // Under the domain the task asked for, also when an alternate answered for it.
            unsafe { self.sh.slab.out(m.ticket.slot()) }.push_body(DomainId(m.origin), body);
        }
        self.finish_subtask::<LEAN>(m, Reason::None);
    }

    /// Sends the sub-task's next attempt to an agent, or ends the sub-task. A parked sub-task
    /// comes here with no attempt in flight. The lean path (`LEAN`) has no retry budget and no
    /// panic routing (see `Worker::lean_now`).
    pub(crate) fn dispatch<const LEAN: bool>(&mut self, mut m: Msg) {
        let d = usize::from(m.domain);
        // SAFETY: the task is ours (admitted).
        let deadline = unsafe { self.sh.slab.req(m.ticket.slot()) }.deadline_ns.get();
        if self.now >= deadline {
            return self.finish_subtask::<LEAN>(m, Reason::Deadline);
        }
        if self.now.saturating_sub(m.started_ns) > self.sh.domain_timeout_ns() {
            return self.finish_subtask::<LEAN>(m, Reason::DomainTimeout);
        }
        if u32::from(m.attempt) >= self.sh.max_attempts[d].load(Ordering::Relaxed) {
            return self.finish_subtask::<LEAN>(m, Reason::AgentsExhausted);
        }
        let mut choice =
            choose::<LEAN>(&self.sh, d, &self.policy.routing[d], &mut self.rr[d], &mut self.held, m.tried, self.now);
        if matches!(choice, Choice::AllTried) {
            // More attempts allowed than agents: start another round over them.
            m.tried = 0;
            choice = choose::<LEAN>(&self.sh, d, &self.policy.routing[d], &mut self.rr[d], &mut self.held, 0, self.now);
        }
        let (a, permit) = match choice {
            Choice::Agent(a, p) => (a, p),
            Choice::Busy => return self.wait_for_room(m),
            Choice::NoneAvailable | Choice::AllTried => return self.finish_subtask::<LEAN>(m, Reason::NoAgent),
        };
        if !LEAN {
            if m.attempt > 0 && !self.withdraw(d) {
                self.sh.agent_breakers[usize::from(a.0)].release(permit);
                self.sh.agents[usize::from(a.0)].bulkhead.release();
                return self.finish_subtask::<false>(m, Reason::BudgetExhausted);
            }
            if permit == Permit::Bypass {
                self.counters().panic_routed.inc();
            }
        }
        self.attempt::<LEAN>(m, a, permit, false);
    }

    /// Sends an attempt of the sub-task to agent `a` through the agent stage, and acts on what
    /// comes back: an answer at once (done, or fail over), a deferred attempt (the sub-task
    /// parks, its timers start), or a stopping engine (the task is rejected as shutting down;
    /// its other sub-tasks, if any, find it completed and stop there).
    #[inline(never)] // one copy, the agent stage's call inlined in it, for failover and hedges
    pub(crate) fn attempt<const LEAN: bool>(&mut self, mut m: Msg, a: AgentId, permit: Permit, hedge: bool) {
        match self.send::<LEAN>(&mut m, a, permit, hedge) {
            (info, Sent::Answered { call, latency_ns }) => self.answered_at_once::<LEAN>(m, info, call, latency_ns),
            (info, Sent::Deferred { slot, g, deadline }) => self.deferred(m, info, slot, g, deadline),
            (_, Sent::Stopping) => self.complete_if_held(m.ticket, Reason::ShuttingDown),
        }
    }

    /// The agent answered at once: done, or fail over.
    #[inline(always)]
    fn answered_at_once<const LEAN: bool>(&mut self, mut m: Msg, info: AttemptInfo, call: Call, latency: u64) {
        match call {
            // The common case, kept short: a success at once, in time, of a sub-task not parked.
            Call::Value(v) if m.parked == NOT_PARKED && latency <= self.sh.agent_timeout_ns() => {
                self.report_success::<LEAN>(&info, latency);
                if info.number > 0 {
                    self.counters().domain[usize::from(m.domain)].recovered.inc();
                }
                // The lean path has no hedging by percentile (no latency windows).
                if !LEAN && let Some(w) = &mut self.windows[usize::from(m.domain)] {
                    w.record(self.now, latency);
                }
                m.value = v;
                self.finish_subtask::<LEAN>(m, Reason::None);
            }
            Call::Value(v) => self.answered::<LEAN>(m, info, Outcome::ok(v, latency), Vec::new()),
            Call::Body(v, body) => self.answered::<LEAN>(m, info, Outcome::ok(v, latency), body),
            Call::Failed(kind, code) => {
                self.answered::<LEAN>(m, info, Outcome::failed(kind, code, latency), Vec::new())
            }
            // "Pending" without deferring breaks the contract.
            Call::Pending => {
                self.answered::<LEAN>(m, info, Outcome::failed(FailureKind::InvalidReply, 0, latency), Vec::new())
            }
        }
    }

    /// Takes a retry from domain `d`'s budget, if it has one; false if the budget is spent.
    fn withdraw(&mut self, d: usize) -> bool {
        let now = self.now;
        if self.budgets[d].as_mut().is_none_or(|b| b.withdraw(now)) {
            return true;
        }
        self.counters().domain[d].budget_denied.inc();
        false
    }

    /// Every agent that could take the sub-task is at its concurrency limit: it waits in the
    /// domain (not on a thread) until one has room.
    fn wait_for_room(&mut self, mut m: Msg) {
        if m.parked != NOT_PARKED {
            self.parked.remove(m.parked);
            m.parked = NOT_PARKED;
        }
        let d = usize::from(m.domain);
        if m.waiting_since == 0 {
            if self.sh.shedding_on.load(Ordering::Relaxed) & (1u64 << d) != 0 {
                let cap = self.sh.shedding[d].capacity() as usize;
                if cap != 0 && self.waiting[d].len() >= cap {
                    return self.shed_overloaded(m); // the wait queue is full
                }
            }
            m.waiting_since = self.now.max(1);
        }
        self.counters().domain[d].waited.inc();
        self.waiting[d].push_back(m);
        self.waiting_len += 1;
    }

    /// Ends a sub-task shed by its overloaded domain: not an outcome of the domain (its
    /// breaker's permit is handed back unjudged).
    fn shed_overloaded(&mut self, mut m: Msg) {
        let d = usize::from(m.domain);
        if m.domain_permit != Permit::Denied {
            self.sh.domain_breakers[d].release(m.domain_permit);
            m.domain_permit = Permit::Denied;
        }
        self.finish_subtask::<false>(m, Reason::DomainOverloaded);
    }

    /// Sends the sub-tasks that wait for room again (those that still find none wait on).
    /// Returns how many left the wait queue: a sub-task that finds no room again is no progress
    /// (a simulation's turn would otherwise never settle; a live worker keeps turning while
    /// sub-tasks wait, see `Worker::turn`).
    pub(crate) fn retry_waiting(&mut self) -> usize {
        if self.waiting_len == 0 {
            return 0;
        }
        let mut n = 0;
        let shedding_on = self.sh.shedding_on.load(Ordering::Relaxed);
        for d in 0..self.waiting.len() {
            if self.waiting[d].is_empty() {
                continue;
            }
            let shedding = shedding_on & (1u64 << d) != 0;
            if shedding {
                let oldest = self.waiting[d].front().map_or(0, |m| self.now.saturating_sub(m.waiting_since));
                self.codel[d].tick(self.now, oldest, &self.sh.shedding[d]);
            }
            // A pass stops after a run of sub-tasks that still find no room (the rest would
            // almost surely find none either: they want the same agents), so that a long queue
            // costs a turn little; the order of the queue is kept.
            let (mut misses, mut requeued) = (0usize, 0usize);
            let len = self.waiting[d].len();
            for _ in 0..len {
                if misses == RETRY_MISSES {
                    if requeued < self.waiting[d].len() {
                        self.waiting[d].rotate_right(requeued);
                    }
                    break;
                }
                let Some(mut m) = self.waiting[d].pop_front() else { break };
                self.waiting_len -= 1;
                let (since, wait) = (m.waiting_since, self.now.saturating_sub(m.waiting_since));
                if shedding && self.codel[d].overloaded && wait > self.sh.shedding[d].target_ns() {
                    self.codel[d].left(wait);
                    self.shed_overloaded(m);
                    n += 1;
                    continue;
                }
                m.waiting_since = 0;
                let queued = self.waiting[d].len();
                self.dispatch::<false>(m);
                if self.waiting[d].len() > queued {
                    // Still no room: it waits on, from when it began.
                    if let Some(back) = self.waiting[d].back_mut() {
                        back.waiting_since = since;
                    }
                    (misses, requeued) = (misses + 1, requeued + 1);
                } else {
                    misses = 0;
                    n += 1;
                    if shedding {
                        self.codel[d].left(wait);
                    }
                }
            }
            if shedding && self.waiting[d].is_empty() {
                self.codel[d].drained = true;
            }
        }
        n
    }

    /// Ends a sub-task: lets go of its attempts still in flight, reports it to the domain
    /// breaker (unless it was shed, or holds no permit) and hands it to the meta stage's join,
    /// unless it is rerouted. The lean path (`LEAN`) has no alternates to reroute to.
    #[inline(always)]
    pub(crate) fn finish_subtask<const LEAN: bool>(&mut self, mut m: Msg, reason: Reason) {
        if m.parked != NOT_PARKED {
            self.let_go(m.parked);
            m.parked = NOT_PARKED;
        }
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
            self.sh.emit_for(Level::Domain, d, tr, m.ticket);
        }
        let ctr = &self.ctr.domain[d];
        match reason {
            Reason::None => ctr.ok.inc(),
            Reason::Deadline | Reason::DomainTimeout => ctr.timeouts.inc(),
            Reason::DomainShed => {}
            Reason::DomainOverloaded => ctr.overloaded.inc(),
            _ => ctr.failed.inc(),
        }
        if !LEAN && crate::policy::reroute::reroutable(reason) && self.reroute(&m) {
            return;
        }
        m.reason = reason;
        self.join(m);
    }

    /// Hands sub-task `m`, which failed at its domain, to the next alternate of the domain its
    /// task asked for (skipping removed ones), if the task's deadline has not passed: into the
    /// domain stage's inbound queue, which this turn drains (a queue, not a call: the stage's
    /// entry stays inlined in the turn, and reroutes do not nest). False if there is none: the
    /// sub-task ends with its failure.
    #[inline(never)]
    fn reroute(&mut self, m: &Msg) -> bool {
        let live = self.sh.live_domains.load(Ordering::Relaxed);
        let next = {
            let alts = &self.policy.alternates[usize::from(m.origin)];
            (usize::from(m.reroutes)..alts.len()).find(|&k| live & (1u64 << alts[k].0) != 0).map(|k| (k, alts[k]))
        };
        let Some((k, alt)) = next else { return false };
        // SAFETY: the task is ours (admitted, with this sub-task in flight).
        if self.now >= unsafe { self.sh.slab.req(m.ticket.slot()) }.deadline_ns.get() {
            return false;
        }
        self.counters().domain[usize::from(m.domain)].rerouted.inc();
        // SAFETY: as above: the outcome record is ours until we finish the slot.
        unsafe { self.sh.slab.out(m.ticket.slot()) }.reroutes += 1;
        let mut next = Msg::new(m.ticket, alt.0);
        (next.origin, next.reroutes) = (m.origin, k as u8 + 1);
        self.domain_in.push_back(next);
        true
    }
}
