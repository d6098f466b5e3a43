//! A worker: one pinned thread that runs a shard of every stage.
//!
//! Stages are actors, not threads. Each worker hosts the meta stage, the domain stage and the
//! agent stage for the tasks it admits; a task admitted by a worker stays on it from admission
//! to completion, so every hop between stages on the same worker is a call or a move into a
//! local queue (one owner, nothing shared, nothing to synchronise). Hops that cross threads go
//! through lock-free queues: submitter to meta (the ingress ring), a deferred attempt's answer
//! back to the worker (its inbox, see [`crate::attempt`]), meta to the caller (the completion
//! queue).
//!
//! A sub-task whose attempt is deferred (an agent that answers later, an isolated agent's pool,
//! a simulated I/O agent) is parked in the worker's table of parked sub-tasks until an answer
//! or a timer moves it on; a sub-task whose attempts are all answered at once never is.
//!
//! A turn: read the clock, take the answers of deferred attempts from the inbox, fire expired
//! timers (abandon unanswered attempts, send hedges), retry sub-tasks that wait for an agent's
//! capacity, take a batch from the ingress ring (meta: admit, decompose into the domain queue),
//! then run the domain queue until it is empty: each sub-task picks an agent, runs the attempt
//! (a call), fails over, and is joined (meta: join, complete). An idle worker spins briefly,
//! yields, then parks until a publisher wakes it (`park`), or its next timer is due.

use crate::attempt::Hub;
use crate::breaker::Permit;
use crate::budget::Budget;
use crate::hedge::{HedgeDelay, LatencyWindow};
use crate::park::Idle;
use crate::shared::{STOPPING, Shared};
use crate::sync::Ordering;
use crate::task::{FailureKind, Reason, Ticket};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// `Msg::parked` of a sub-task that is not parked.
pub(crate) const NOT_PARKED: u32 = u32::MAX;

/// One sub-task (a task's share in one domain) on its way through the domain stage. Small and
/// `Copy`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msg {
    pub(crate) ticket: Ticket,
    pub(crate) domain: u16,
    /// Attempts sent so far (failovers and hedges included).
    pub(crate) attempt: u8,
    /// The domain breaker's permit for the sub-task (`Denied` until acquired).
    pub(crate) domain_permit: Permit,
    /// Outcome of the sub-task, on its way to the join.
    pub(crate) reason: Reason,
    /// Agents of the domain already tried (bit = the agent's position in its domain).
    pub(crate) tried: u64,
    /// The successful attempt's value.
    pub(crate) value: u64,
    /// When the sub-task started (for the domain timeout).
    pub(crate) started_ns: u64,
    /// Its entry in the table of parked sub-tasks, or `NOT_PARKED`.
    pub(crate) parked: u32,
}

impl Msg {
    pub(crate) fn new(ticket: Ticket, domain: u16) -> Self {
        Self {
            ticket,
            domain,
            attempt: 0,
            domain_permit: Permit::Denied,
            reason: Reason::None,
            tried: 0,
            value: 0,
            started_ns: 0,
            parked: NOT_PARKED,
        }
    }
}

/// Most attempts of one sub-task in flight at once (the first and its hedges).
pub(crate) const MAX_LIVE: usize = 1 + crate::hedge::MAX_HEDGES as usize;

/// A parked sub-task: its state, and its attempts in flight (attempt slots).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sub {
    pub(crate) m: Msg,
    pub(crate) live: [u32; MAX_LIVE],
    pub(crate) n_live: u8,
    pub(crate) hedges: u8,
}

impl Sub {
    pub(crate) fn remove_live(&mut self, slot: u32) {
        let n = usize::from(self.n_live);
        if let Some(i) = self.live[..n].iter().position(|&s| s == slot) {
            self.live[i] = self.live[n - 1];
            self.n_live -= 1;
        }
    }
}

/// The parked sub-tasks, by index, with a generation per entry so that a stale reference (an
/// attempt or a timer that outlived its sub-task) is recognised.
pub(crate) struct ParkedTable {
    entries: Vec<(u32, Option<Sub>)>,
    free: Vec<u32>,
}

impl ParkedTable {
    fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n), free: Vec::with_capacity(n) }
    }

    pub(crate) fn insert(&mut self, m: Msg) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push((1, None));
                (self.entries.len() - 1) as u32
            }
        };
        self.entries[idx as usize].1 = Some(Sub { m, live: [0; MAX_LIVE], n_live: 0, hedges: 0 });
        idx
    }

    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.entries[idx as usize].0
    }

    pub(crate) fn get(&mut self, idx: u32, generation: u32) -> Option<&mut Sub> {
        let e = self.entries.get_mut(idx as usize)?;
        if e.0 == generation { e.1.as_mut() } else { None }
    }

    /// Whether entry `idx` holds a sub-task whose generation's low 31 bits are `gen31` (the
    /// form a hedge timer keeps).
    pub(crate) fn holds(&self, idx: u32, gen31: u32) -> bool {
        self.entries.get(idx as usize).is_some_and(|e| e.1.is_some() && (e.0 & 0x7fff_ffff) == gen31)
    }

    pub(crate) fn at(&mut self, idx: u32) -> &mut Sub {
        self.entries[idx as usize].1.as_mut().expect("a parked sub-task")
    }

    pub(crate) fn remove(&mut self, idx: u32) -> Sub {
        let e = &mut self.entries[idx as usize];
        let sub = e.1.take().expect("a parked sub-task");
        e.0 = e.0.wrapping_add(1).max(1);
        self.free.push(idx);
        sub
    }

    fn drain(&mut self) -> impl Iterator<Item = Sub> + '_ {
        self.entries.iter_mut().filter_map(|e| e.1.take())
    }
}

/// What the worker remembers of a deferred attempt, by attempt slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    /// The slot's generation while this attempt holds it.
    pub(crate) g: u32,
    /// The parked sub-task it belongs to and that entry's generation; `NOT_PARKED` once the
    /// sub-task no longer waits for it.
    pub(crate) parked: u32,
    pub(crate) parked_gen: u32,
    pub(crate) info: AttemptInfo,
}

/// One attempt: which agent, with which breaker permit, when, which number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptInfo {
    pub(crate) agent: u16,
    /// `Denied` once the permit has been used (reported or released).
    pub(crate) permit: Permit,
    pub(crate) started_ns: u64,
    pub(crate) number: u8,
    pub(crate) hedge: bool,
}

/// How an attempt ended, as the domain stage sees it (its reply bytes, if any, travel beside).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) failure: Option<FailureKind>,
    pub(crate) code: i32,
    pub(crate) value: u64,
    pub(crate) latency_ns: u64,
}

impl Outcome {
    #[inline]
    pub(crate) fn ok(value: u64, latency_ns: u64) -> Self {
        Self { failure: None, code: 0, value, latency_ns }
    }
    #[inline]
    pub(crate) fn failed(kind: FailureKind, code: i32, latency_ns: u64) -> Self {
        Self { failure: Some(kind), code, value: 0, latency_ns }
    }
}

/// A timer key: an attempt's slot and generation, or (with `HEDGE`) a parked sub-task's index
/// and generation.
pub(crate) const HEDGE: u64 = 1 << 63;

pub(crate) struct Worker {
    pub(crate) id: usize,
    pub(crate) sh: Arc<Shared>,
    pub(crate) hub: Arc<Hub>,
    /// The clock, read at the start of each turn and after each agent call.
    pub(crate) now: u64,
    /// The routing snapshot, refreshed when an operator changes it.
    pub(crate) policy: Arc<crate::shared::Policy>,
    policy_version: u64,
    /// Domain stage inbound: new sub-tasks from the meta stage. Each runs to its outcome, or
    /// to parking, before the next starts.
    pub(crate) domain_in: VecDeque<Msg>,
    /// Tasks waiting for the concurrency throttle, by priority.
    pub(crate) pending: [VecDeque<Ticket>; 4],
    /// Per domain: sub-tasks waiting for an agent with room (every candidate at its limit).
    pub(crate) waiting: Vec<VecDeque<Msg>>,
    pub(crate) waiting_len: usize,
    /// Sub-tasks with attempts in flight elsewhere.
    pub(crate) parked: ParkedTable,
    /// Free attempt slots of this worker's hub.
    pub(crate) free_slots: Vec<u32>,
    /// How many slots the hub has (all free: no deferred attempt out).
    free_capacity: usize,
    /// Per attempt slot: the deferred attempt that holds it.
    pub(crate) pending_attempts: Vec<Pending>,
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
}

impl Worker {
    pub(crate) fn new(id: usize, sh: Arc<Shared>) -> Self {
        // Room for every sub-task the worker may hold, so the queues never grow (allocate)
        // in steady state: `worker_capacity`, plus one task's worth of overshoot.
        let cap = sh.cfg.worker_capacity + crate::task::MAX_DOMAINS;
        let policy = sh.policy.load();
        let topo = sh.topo.load();
        // Spare domain ids included (a domain added while running has no budget or hedge).
        let domains = sh.domain_breakers.len();
        let hub = sh.workers[id].hub.clone();
        let slots = hub.capacity();
        Self {
            id,
            now: 0,
            policy,
            policy_version: 0,
            domain_in: VecDeque::with_capacity(cap),
            pending: std::array::from_fn(|_| VecDeque::with_capacity(sh.cfg.admission.queue_capacity.min(cap))),
            waiting: (0..domains).map(|_| VecDeque::new()).collect(),
            waiting_len: 0,
            parked: ParkedTable::with_capacity(cap.min(slots)),
            free_slots: (0..slots as u32).rev().collect(),
            free_capacity: slots,
            pending_attempts: vec![
                Pending {
                    g: 0,
                    parked: NOT_PARKED,
                    parked_gen: 0,
                    info: AttemptInfo { agent: 0, permit: Permit::Denied, started_ns: 0, number: 0, hedge: false },
                };
                slots
            ],
            timers: BinaryHeap::with_capacity(2 * slots),
            rr: vec![0; domains],
            budgets: (0..domains)
                .map(|d| topo.domains.get(d).and_then(|d| d.retry_budget.as_ref().map(Budget::new)))
                .collect(),
            windows: (0..domains)
                .map(|d| match topo.domains.get(d).and_then(|d| d.hedge) {
                    Some(h) if matches!(h.delay, HedgeDelay::Percentile(_)) => Some(LatencyWindow::new(h.period)),
                    _ => None,
                })
                .collect(),
            live: 0,
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
        self.sh.policy.refresh(&mut self.policy, &mut self.policy_version);
        // Deferred attempts out (slots not free) may have answers in the inbox; a worker whose
        // agents all answer at once never looks.
        let mut work = if self.free_slots.len() < self.free_capacity { self.collect_deferred() } else { 0 };
        work += self.fire_timers() + self.retry_waiting();
        work += self.promote_pending() + self.ingest();
        work += self.drain();
        if work > 0 {
            self.sh.pollers.notify_all();
        }
        work
    }

    /// Runs the domain stage's queue until it is empty, one sub-task at a time (each to its
    /// outcome or to parking, so outcomes reach the breakers in the order the tasks came;
    /// processing a batch stage by stage would report its fast failures, its injected faults,
    /// before its successes, and a run-of-failures trigger would see runs that are not there).
    pub(crate) fn drain(&mut self) -> usize {
        let mut work = 0;
        while let Some(m) = self.domain_in.pop_front() {
            self.domain_step(m);
            work += 1;
        }
        work
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
        hub.parker
            .sleep(|| !sh.workers[id].ingress.is_empty() || hub.has_mail() || sh.lifecycle() >= STOPPING, timeout);
    }

    /// A simulation's end: what [`run`](Self::run) does when the engine stops.
    pub(crate) fn stop_now(&mut self) {
        self.abort_all();
        self.sh.workers[self.id].exited.store(true, Ordering::Release);
    }

    /// Completes every task this worker holds as rejected (`ShuttingDown`); the engine is
    /// stopping. Deferred attempts still in flight are abandoned. A task with several sub-tasks
    /// in the queues is completed once (the slot's claim decides).
    fn abort_all(&mut self) {
        let mut held: Vec<Ticket> = Vec::new();
        held.extend(self.pending.iter_mut().flat_map(|q| q.drain(..)));
        held.extend(self.domain_in.drain(..).map(|m| m.ticket));
        held.extend(self.waiting.iter_mut().flat_map(|q| q.drain(..)).map(|m| m.ticket));
        let subs: Vec<Sub> = self.parked.drain().collect();
        for sub in subs {
            for &slot in &sub.live[..usize::from(sub.n_live)] {
                let p = &mut self.pending_attempts[slot as usize];
                let _ = self.hub.abandon(slot, p.g);
                p.parked = NOT_PARKED;
            }
            held.push(sub.m.ticket);
        }
        for t in held {
            self.complete(t, Reason::ShuttingDown);
        }
    }
}
