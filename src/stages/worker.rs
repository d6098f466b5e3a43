//! A worker: one pinned thread that runs a shard of every stage.
//!
//! Stages are actors, not threads. Each worker hosts the meta stage, the domain stage and the
//! agent stage for the tasks it admits; a task admitted by a worker stays on it from admission
//! to completion, so every hop between stages on the same worker is a call or a move into a
//! local queue (one owner, nothing shared, nothing to synchronise). Hops that cross threads go
//! through rings and queues where no thread waits for another: submitter to meta (the worker's
//! ingress ring, see [`crate::ingress`]), a deferred attempt's answer back to the worker (its
//! inbox, see [`crate::attempt`]), meta to the caller (the worker's completion ring, see
//! [`crate::completions`]).
//!
//! A sub-task whose attempt is deferred (an agent that answers later, an isolated agent's pool,
//! a simulated I/O agent) is parked in the worker's table of parked sub-tasks until an answer
//! or a timer moves it on; a sub-task whose attempts are all answered at once never is.
//!
//! A turn: read the clock, take the answers of deferred attempts from the inbox, fire expired
//! timers (abandon unanswered attempts, send hedges), retry sub-tasks that wait for an agent's
//! capacity, take a batch from the ingress ring (meta: admit, decompose into the domain queue),
//! then run the domain queue until it is empty: each sub-task picks an agent, runs the attempt
//! (a call), fails over, and is joined (meta: join, complete). When nothing is queued ahead of a
//! batch and admission holds nothing back, each task's sub-tasks start as it is admitted instead
//! of going through the queue (the same order, without the push and pop). An idle worker spins
//! briefly, yields, then parks until a publisher wakes it (`park`), or its next timer is due.

use crate::attempt::Hub;
use crate::park::Idle;
use crate::policy::budget::Budget;
use crate::policy::hedge::{HedgeDelay, LatencyWindow};
use crate::shared::{STOPPING, Shared};
use crate::stages::domain::msg::{Msg, NOT_PARKED, ParkedTable, PendingTable, Sub};
use crate::sync::Ordering;
use crate::task::{Reason, Ticket};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Worker {
    pub(crate) id: usize,
    pub(crate) sh: Arc<Shared>,
    pub(crate) hub: Arc<Hub>,
    /// The clock, read at the start of each turn and after each agent call.
    pub(crate) now: u64,
    /// The routing snapshot, refreshed when an operator changes it.
    pub(crate) policy: Arc<crate::policy::routing::Policy>,
    policy_version: u64,
    /// Domain stage inbound: new sub-tasks from the meta stage (unless they start as their task
    /// is admitted, see `decompose`), and sub-tasks rerouted to an alternate domain. Each
    /// runs to its outcome, or to parking, before the next starts.
    pub(crate) domain_in: VecDeque<Msg>,
    /// Tasks waiting for the concurrency throttle, by priority.
    pub(crate) pending: [VecDeque<Ticket>; 4],
    /// Per domain: sub-tasks waiting for an agent with room (every candidate at its limit).
    pub(crate) waiting: Vec<VecDeque<Msg>>,
    pub(crate) waiting_len: usize,
    /// This worker's completions not yet applied to the adaptive throttle.
    pub(crate) adaptive_batch: crate::policy::adaptive::Batch,
    /// Whether the engine runs in virtual time (a simulation drives the turns).
    pub(crate) simulated: bool,
    /// Per domain: the wait queue's CoDel state, for a domain with adaptive shedding.
    pub(crate) codel: Vec<crate::policy::shedding::Codel>,
    /// Sub-tasks with attempts in flight elsewhere.
    pub(crate) parked: ParkedTable,
    /// Free attempt slots of this worker's hub.
    pub(crate) free_slots: Vec<u32>,
    /// How many slots the hub has (all free: no deferred attempt out).
    free_capacity: usize,
    /// Per attempt slot: the deferred attempt that holds it.
    pub(crate) pending_attempts: PendingTable,
    /// (due, key) of attempt timeouts and hedges, earliest first.
    pub(crate) timers: BinaryHeap<Reverse<(u64, u64)>>,
    /// Per domain: where the round-robin over its agents resumes.
    pub(crate) rr: Vec<u32>,
    /// Per domain: its retry budget, if it has one.
    pub(crate) budgets: Vec<Option<Budget>>,
    /// Per domain hedging by percentile: its recent attempt latency.
    pub(crate) windows: Vec<Option<LatencyWindow>>,
    /// Sub-tasks admitted and not yet joined.
    pub(crate) live: usize,
    /// The turn start last published in `turn_ns`.
    turn_published: u64,
    /// A completion went to the engine's completion queues this turn: callers in `poll_wait`
    /// are woken when they are published (completions for `wait`, a callback or a caller's
    /// completion queue have their own wake-ups).
    pub(crate) wake_pollers: bool,
    /// The places this worker keeps at agents between its calls within a turn (see `Held`).
    pub(crate) held: crate::policy::bulkhead::Held,
    /// The rate limiter's admissions claimed for the batch being admitted (see
    /// `RateLimiter::claim`); `None` outside a batch.
    pub(crate) rate_claim: Option<crate::policy::admission::Claim>,
    /// While a batch from a ring is admitted: whether its tasks' sub-tasks start at once
    /// (nothing was queued in the domain stage ahead of them; see `decompose`).
    pub(crate) direct: bool,
    /// This worker's ring of tickets for `poll` (see [`crate::completions`]): published at the
    /// end of each turn, and before a call that may block (see [`PUBLISH_NS`]).
    pub(crate) done_tx: crate::ring::Producer<u64>,
    /// The clock at the start of this turn.
    pub(crate) turn_start: u64,
    /// This worker's counters (`WorkerShared::counters`, held here: one load from any stage).
    pub(crate) ctr: Arc<crate::counters::WorkerCounters>,
    /// Per agent: whether its last call on this worker took longer than [`PUBLISH_NS`] (its next
    /// call is preceded by a publish of the turn's completions).
    pub(crate) slow_calls: Vec<bool>,
    /// Tickets just taken from a ring, before they are admitted (room for a batch).
    pub(crate) taken: Vec<Ticket>,
    /// Whether this turn's new tasks take the lean path (see [`Worker::lean_now`]); false until
    /// the turn takes tickets from a ring.
    pub(crate) lean: bool,
    /// What of the lean path's conditions is fixed when the worker starts: no retry budget and
    /// no latency window (hedging by percentile) in any domain, no keyed rate limits, no meta
    /// faults.
    lean_fixed: bool,
    /// The settings epoch (`Shared::settings_epoch`) `lean_settings` was last read at, and its
    /// answer; `u64::MAX` when the routing snapshot has changed since.
    lean_epoch: u64,
    lean_cached: bool,
}

/// How long a turn runs, or an agent's last call took, before the turn's completions are
/// published and sleeping pollers woken ahead of its end (before each further call, or that
/// agent's next call): a turn of fast calls ends within microseconds and publishes once (a store,
/// a fence and a load); a handler that blocks does not hold back what was completed before it,
/// unless it blocks for the first time on this worker (then until it returns, as the rest of its
/// batch waits). A classifier or an event listener that blocks is not covered either. If the
/// call never returns, the shutdown queues those completions for `poll` itself.
pub(crate) const PUBLISH_NS: u64 = 20_000;

/// How long a worker may be inside one turn before a task pushed to it wakes a sleeping worker
/// to steal it (see `Engine::conserve`): long against a turn that keeps up (a batch of fast
/// attempts takes microseconds), short against a handler that blocks. A worker publishes its turn
/// start at most every quarter of this, so it counts as stuck after 150 to 200 us in one turn.
pub(crate) const STALL_NS: u64 = 200_000;

impl Worker {
    pub(crate) fn new(id: usize, sh: Arc<Shared>, done_tx: crate::ring::Producer<u64>) -> Self {
        // Room for every sub-task the worker may hold, so the queues never grow (allocate)
        // in steady state: `worker_capacity`, plus one task's worth of overshoot.
        let cap = sh.cfg.worker_capacity + crate::task::MAX_DOMAINS;
        let policy = sh.policy.load();
        let topo = sh.topo.load();
        // Spare domain ids included (a domain added while running has no budget or hedge).
        let domains = sh.domain_breakers.len();
        let hub = sh.workers[id].hub.clone();
        let slots = hub.capacity();
        let budgets: Vec<Option<Budget>> =
            (0..domains).map(|d| topo.domains.get(d).and_then(|d| d.retry_budget.as_ref().map(Budget::new))).collect();
        let windows: Vec<Option<LatencyWindow>> = (0..domains)
            .map(|d| match topo.domains.get(d).and_then(|d| d.hedge) {
                Some(h) if matches!(h.delay, HedgeDelay::Percentile(_)) => Some(LatencyWindow::new(h.period)),
                _ => None,
            })
            .collect();
        let lean_fixed = sh.keyed.is_none()
            && sh.meta_fault_threshold == 0
            && budgets.iter().all(Option::is_none)
            && windows.iter().all(Option::is_none);
        Self {
            id,
            now: 0,
            policy,
            policy_version: 0,
            domain_in: VecDeque::with_capacity(cap),
            pending: std::array::from_fn(|_| VecDeque::with_capacity(sh.cfg.admission.queue_capacity.min(cap))),
            waiting: (0..domains).map(|_| VecDeque::new()).collect(),
            waiting_len: 0,
            codel: vec![crate::policy::shedding::Codel::default(); domains],
            simulated: sh.clock.is_virtual(),
            adaptive_batch: crate::policy::adaptive::Batch::default(),
            parked: ParkedTable::with_capacity(cap.min(slots)),
            free_slots: (0..slots as u32).rev().collect(),
            free_capacity: slots,
            pending_attempts: PendingTable::new(slots),
            timers: BinaryHeap::with_capacity(2 * slots),
            rr: vec![0; domains],
            budgets,
            windows,
            live: 0,
            turn_published: 0,
            wake_pollers: false,
            held: crate::policy::bulkhead::Held::new(sh.agents.len(), sh.workers.len()),
            rate_claim: None,
            direct: false,
            done_tx,
            turn_start: 0,
            slow_calls: vec![false; sh.agents.len()],
            ctr: sh.workers[id].counters.clone(),
            taken: Vec::with_capacity(sh.cfg.batch),
            lean: false,
            lean_fixed,
            lean_epoch: u64::MAX,
            lean_cached: false,
            hub,
            sh,
        }
    }

    pub(crate) fn run(mut self) {
        crate::shared::enter_engine_thread(&self.sh);
        // A worker sleeps with a timeout only when a timer is due (an attempt's timeout, a
        // hedge): 1 us of slack instead of 50 keeps hedges and abandonment on time.
        crate::timer::set_timer_slack();
        self.hub.parker.register();
        let mut idle = Idle::new(self.sh.cfg.idle_spins, u64::from(self.sh.cfg.idle_yield_us) * 1_000);
        loop {
            if self.sh.lifecycle() >= STOPPING {
                self.abort_all();
                break;
            }
            if self.turn() > 0 {
                idle.reset();
            } else if idle.wait() {
                self.sleep();
            }
        }
        self.sh.workers[self.id].exited.store(true, Ordering::Release);
    }

    /// One turn; returns how much work it did.
    pub(crate) fn turn(&mut self) -> usize {
        self.now = self.sh.clock.now();
        self.turn_start = self.now;
        // Published at most every quarter of the stall threshold: a worker spinning through empty
        // turns would otherwise write the line a submitter reads on every push.
        if self.now.wrapping_sub(self.turn_published) > STALL_NS / 4 {
            self.turn_published = self.now;
            self.sh.workers[self.id].turn_ns.store(self.now, Ordering::Relaxed);
        }
        let version = self.policy_version;
        self.sh.policy.refresh(&mut self.policy, &mut self.policy_version);
        if self.policy_version != version {
            self.lean_epoch = u64::MAX; // its agents and alternates are read again
        }
        self.lean = false;
        // Deferred attempts out (slots not free) may have answers in the inbox; a worker whose
        // agents all answer at once never looks.
        let mut work = if self.free_slots.len() < self.free_capacity { self.collect_deferred() } else { 0 };
        work += self.fire_timers() + self.retry_waiting();
        if self.waiting_len > 0 && !self.simulated {
            // Sub-tasks wait for room that another worker's answers may free: a live worker keeps
            // turning (a sleeping one would leave its queue to the workers its answers wake, and
            // starve it). A simulation's turn settles: its clock only moves between turns.
            work += 1;
        }
        work += self.promote_pending() + self.ingest();
        work += self.drain();
        self.publish_completions();
        work
    }

    /// Makes the completions queued for `poll` visible, and wakes the callers sleeping in
    /// `poll_wait` if any were. The places kept at agents between calls (see `Held`) go back
    /// first, wherever the worker publishes: at the end of a turn, and before a call that may
    /// block (completions for `wait`, a callback or a caller's queue were delivered as they
    /// came: their agents' counts may include a kept place until here).
    #[inline]
    pub(crate) fn publish_completions(&mut self) {
        let agents = &self.sh.agents;
        self.held.release_all(|a| &agents[a].bulkhead);
        self.done_tx.publish();
        if std::mem::take(&mut self.wake_pollers) {
            self.sh.pollers.notify_all();
        }
    }

    /// Runs the domain stage's queue until it is empty, one sub-task at a time (each to its
    /// outcome or to parking, so outcomes reach the breakers in the order the tasks came;
    /// processing a batch stage by stage would report its fast failures, its injected faults,
    /// before its successes, and a run-of-failures trigger would see runs that are not there).
    pub(crate) fn drain(&mut self) -> usize {
        if self.lean { self.drain_as::<true>() } else { self.drain_as::<false>() }
    }

    /// [`drain`](Self::drain) on the lean path or the full one.
    fn drain_as<const LEAN: bool>(&mut self) -> usize {
        let mut work = 0;
        while let Some(m) = self.domain_in.pop_front() {
            self.start_subtask::<LEAN>(m);
            work += 1;
        }
        work
    }

    /// Whether the tasks this turn takes may run on the lean path: a copy of the stages with
    /// what is off left out, not tested per task. It is, when every feature the full path would
    /// check per task is off now: the meta breaker, the breakers of every domain and of every
    /// agent in rotation disabled; no agent in rotation with a concurrency limit or counted for
    /// balancing, no domain balanced by latency or watched for outliers; no rate limit, no
    /// concurrency throttle or cost budget; no injected faults, no agent or domain down; no
    /// alternate domains, retry budgets, hedging by percentile or keyed limits. Decided once per
    /// batch of tickets, after the tickets are taken, so that a change made before a task was
    /// submitted applies to it: one load of the settings epoch, which every writer of those
    /// settings bumps after the change, and the settings themselves (a few dozen loads, a few
    /// hundred instructions: as much as the rest of a task's path) only when it has moved or
    /// the routing snapshot has changed. A ticket taken from a ring (acquire) was pushed after
    /// its submission, so after any change made before it, and the epoch's acquire load shows
    /// the change.
    ///
    /// The lean path leaves out only what would do nothing under these conditions, and checks
    /// what a task carries (its permits, its throttle place), so a task admitted on one path and
    /// finished on the other, or a setting that changes within a turn, is handled as the full
    /// path would have handled it at some instant of that turn.
    #[inline]
    pub(crate) fn lean_now(&mut self) -> bool {
        let epoch = self.sh.settings_epoch.load(Ordering::Acquire);
        if epoch != self.lean_epoch {
            self.lean_cached = self.lean_settings();
            self.lean_epoch = epoch;
        }
        self.lean_cached
    }

    /// `lean_now`, read from the settings.
    #[cold]
    #[inline(never)]
    fn lean_settings(&self) -> bool {
        let sh = &*self.sh;
        if !(self.lean_fixed && sh.meta_breaker.is_disabled())
            || self.policy.alternates.iter().any(|a| !a.is_empty())
            || sh.rate.is_limited()
            || sh.admission.gated()
            // Balancing by peak EWMA and outlier detection, both (`watched` is their union).
            || sh.watched.load(Ordering::Relaxed) != 0
        {
            return false;
        }
        for d in 0..sh.domain_breakers.len() {
            if !sh.domain_breakers[d].is_disabled()
                || sh.domain_fault_threshold[d].load(Ordering::Relaxed) != 0
                || sh.down[d].load(Ordering::Relaxed) != 0
            {
                return false;
            }
        }
        for agents in &self.policy.routing {
            for a in agents {
                let ai = usize::from(a.0);
                if !sh.agent_breakers[ai].is_disabled() || !sh.agents[ai].bulkhead.is_free() {
                    return false;
                }
            }
        }
        true
    }

    fn sleep(&mut self) {
        let now = self.sh.clock.now();
        let mut timeout = self.timers.peek().map(|&Reverse((d, _))| Duration::from_nanos(d.saturating_sub(now)));
        let mut cap = |t: Duration| timeout = Some(timeout.map_or(t, |x| x.min(t)));
        if self.pending.iter().any(|q| !q.is_empty()) {
            // Throttled tasks wait for other workers' completions: look again soon.
            cap(Duration::from_millis(1));
        }
        if self.waiting_len > 0 {
            // Sub-tasks wait for agents' room, which other workers' attempts may free.
            cap(Duration::from_micros(200));
        }
        let sh = self.sh.clone();
        let id = self.id;
        let hub = &self.hub;
        hub.parker.sleep(
            || {
                !sh.workers[id].ingress.is_empty()
                    || !sh.ingress_overflow.is_empty()
                    || hub.has_mail()
                    || sh.lifecycle() >= STOPPING
            },
            timeout,
        );
    }

    /// A simulation's end: what [`run`](Self::run) does when the engine stops.
    pub(crate) fn stop_now(&mut self) {
        self.abort_all();
        self.sh.workers[self.id].exited.store(true, Ordering::Release);
    }

    /// Completes every task this worker holds as rejected (`ShuttingDown`); the engine is
    /// stopping. Deferred attempts still in flight are abandoned. A task with several sub-tasks
    /// in the queues is completed once (see `complete_if_held`).
    fn abort_all(&mut self) {
        let mut held: Vec<Ticket> = Vec::new();
        held.extend(self.pending.iter_mut().flat_map(|q| q.drain(..)));
        held.extend(self.domain_in.drain(..).map(|m| m.ticket));
        held.extend(self.waiting.iter_mut().flat_map(|q| q.drain(..)).map(|m| m.ticket));
        let subs: Vec<Sub> = self.parked.drain().collect();
        for sub in subs {
            for &slot in &sub.live[..usize::from(sub.n_live)] {
                let p = self.pending_attempts.at(slot);
                let _ = self.hub.abandon(slot, p.g);
                p.parked = NOT_PARKED;
            }
            held.push(sub.m.ticket);
        }
        for t in held {
            self.complete_if_held(t, Reason::ShuttingDown);
        }
        self.publish_completions();
    }
}
