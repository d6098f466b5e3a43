//! A worker: one pinned thread that runs a shard of every stage.
//!
//! Stages are actors, not threads. Each worker hosts the meta stage, the domain stage and the
//! agent stage for the tasks it admits, with an inbound queue per stage; a task admitted by a
//! worker stays on it from admission to completion, so every hop between stages on the same
//! worker is a move into a local queue (one owner, nothing shared, nothing to synchronise).
//! Hops that cross threads go through lock-free rings: submitter to meta (the ingress ring),
//! domain to an isolated agent and back (SPSC rings), meta to the caller (the completion queue).
//!
//! A turn: read the clock, collect isolated agents' answers, fire expired attempt timers, take a
//! batch from the ingress ring (meta: admit, decompose into the domain queue), then run the
//! domain queue until it is empty: each sub-task picks an agent, runs the attempt (a call, for an
//! agent on this worker), fails over, and is joined (meta: join, complete); then publish to
//! isolated agents once. An idle worker spins briefly, yields, then parks until a
//! publisher wakes it (`park`).

use crate::breaker::Permit;
use crate::park::Idle;
use crate::ring::{Consumer, Producer};
use crate::shared::{Policy, STOPPING, Shared};
use crate::sync::Ordering;
use crate::task::{FailureKind, Reason, Ticket};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// What travels between stages: one sub-task (a task's share in one domain) and its current
/// attempt. Small and `Copy`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msg {
    pub(crate) ticket: Ticket,
    pub(crate) domain: u16,
    pub(crate) agent: u16,
    pub(crate) attempt: u8,
    /// False on the way to an agent, true on the way back with the attempt's outcome.
    pub(crate) returned: bool,
    /// The agent breaker's permit for the current attempt.
    pub(crate) agent_permit: Permit,
    /// The domain breaker's permit for the sub-task (`Denied` until acquired).
    pub(crate) domain_permit: Permit,
    /// Outcome of the last attempt: `None` for success.
    pub(crate) failure: Option<FailureKind>,
    pub(crate) code: i32,
    /// Outcome of the sub-task, on its way to the join.
    pub(crate) reason: Reason,
    /// Agents of the domain already tried (bit = the agent's position in its domain).
    pub(crate) tried: u64,
    pub(crate) value: u64,
    /// When the sub-task started (for the domain timeout).
    pub(crate) started_ns: u64,
    /// How long the last attempt took.
    pub(crate) latency_ns: u64,
    /// The attempt's key in `Outstanding` while it is at an isolated agent.
    pub(crate) token: u64,
}

impl Msg {
    pub(crate) fn new(ticket: Ticket, domain: u16) -> Self {
        Self {
            ticket,
            domain,
            agent: 0,
            attempt: 0,
            returned: false,
            agent_permit: Permit::Denied,
            domain_permit: Permit::Denied,
            failure: None,
            code: 0,
            reason: Reason::None,
            tried: 0,
            value: 0,
            started_ns: 0,
            latency_ns: 0,
            token: 0,
        }
    }
}

/// Attempts sent to isolated agents and not yet answered or abandoned, by token
/// (generation << 32 | index), so that a late answer is recognised and dropped.
pub(crate) struct Outstanding {
    entries: Vec<(u32, Option<Msg>)>,
    free: Vec<u32>,
}

impl Outstanding {
    fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n), free: Vec::with_capacity(n) }
    }

    pub(crate) fn insert(&mut self, m: Msg) -> u64 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push((0, None));
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[idx as usize];
        e.1 = Some(m);
        (u64::from(e.0) << 32) | u64::from(idx)
    }

    pub(crate) fn take(&mut self, token: u64) -> Option<Msg> {
        let (idx, generation) = (token as u32, (token >> 32) as u32);
        let e = self.entries.get_mut(idx as usize)?;
        if e.0 != generation || e.1.is_none() {
            return None;
        }
        e.0 = e.0.wrapping_add(1);
        self.free.push(idx);
        e.1.take()
    }

    pub(crate) fn contains(&self, token: u64) -> bool {
        self.entries.get(token as u32 as usize).is_some_and(|e| e.0 == (token >> 32) as u32 && e.1.is_some())
    }

    fn drain(&mut self) -> impl Iterator<Item = Msg> + '_ {
        self.entries.iter_mut().filter_map(|e| e.1.take())
    }
}

pub(crate) struct Worker {
    pub(crate) id: usize,
    pub(crate) sh: Arc<Shared>,
    /// The clock, read at the start of each turn and after each agent call.
    pub(crate) now: u64,
    /// The routing snapshot, refreshed when an operator changes it.
    pub(crate) policy: Arc<Policy>,
    policy_version: u64,
    /// Domain stage inbound: new sub-tasks (from meta), and attempt results that crossed threads
    /// (from isolated agents, or their expired timers). An attempt at an agent on this worker is
    /// a call, and its answer comes straight back to the domain stage, which joins a finished
    /// sub-task at once: each sub-task runs to its outcome before the next starts.
    pub(crate) domain_in: VecDeque<Msg>,
    /// Tasks waiting for the concurrency throttle, by priority.
    pub(crate) pending: [VecDeque<Ticket>; 4],
    /// To each isolated agent (index = isolated agent index), and back.
    pub(crate) iso_tx: Vec<Producer<Msg>>,
    pub(crate) iso_rx: Vec<Consumer<Msg>>,
    pub(crate) iso_dirty: Vec<bool>,
    /// (deadline, token) of attempts at isolated agents, in deadline order (every attempt gets
    /// the same agent timeout, so arrival order is deadline order).
    pub(crate) timers: VecDeque<(u64, u64)>,
    pub(crate) outstanding: Outstanding,
    /// Per domain: where the round-robin over its agents resumes.
    pub(crate) rr: Vec<u32>,
    /// Sub-tasks admitted and not yet joined.
    pub(crate) live: usize,
}

impl Worker {
    pub(crate) fn new(id: usize, sh: Arc<Shared>, iso_tx: Vec<Producer<Msg>>, iso_rx: Vec<Consumer<Msg>>) -> Self {
        // Room for every sub-task the worker may hold, so the queues never grow (allocate)
        // in steady state: `worker_capacity`, plus one task's worth of overshoot.
        let cap = sh.cfg.worker_capacity + crate::task::MAX_DOMAINS;
        let policy = sh.policy.load();
        let domains = sh.topo.domains.len();
        let n_iso = iso_tx.len();
        Self {
            id,
            now: 0,
            policy,
            policy_version: 0,
            domain_in: VecDeque::with_capacity(cap),
            pending: std::array::from_fn(|_| VecDeque::with_capacity(sh.cfg.admission.queue_capacity.min(cap))),
            iso_tx,
            iso_rx,
            iso_dirty: vec![false; n_iso],
            timers: VecDeque::with_capacity(cap),
            outstanding: Outstanding::with_capacity(cap),
            rr: vec![0; domains],
            live: 0,
            sh,
        }
    }

    pub(crate) fn run(mut self) {
        self.sh.workers[self.id].parker.register();
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
        let mut work = self.collect_isolated() + self.fire_timers() + self.promote_pending() + self.ingest();
        work += self.drain();
        self.flush_isolated();
        if work > 0 {
            self.sh.pollers.notify_all();
        }
        work
    }

    /// Runs the domain stage's queue until it is empty, one sub-task at a time (each to its
    /// outcome, so outcomes reach the breakers in the order the tasks came; processing a batch
    /// stage by stage would report its fast failures, its injected faults, before its successes,
    /// and a run-of-failures trigger would see runs that are not there).
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
        let mut timeout = self.timers.front().map(|&(d, _)| Duration::from_nanos(d.saturating_sub(now)));
        if self.pending.iter().any(|q| !q.is_empty()) {
            // Throttled tasks wait for other workers' completions: look again soon.
            timeout = Some(timeout.map_or(Duration::from_millis(1), |t| t.min(Duration::from_millis(1))));
        }
        let sh = self.sh.clone();
        let id = self.id;
        let rx = &self.iso_rx;
        sh.workers[id].parker.sleep(
            || !sh.workers[id].ingress.is_empty() || rx.iter().any(|r| r.has_pending()) || sh.lifecycle() >= STOPPING,
            timeout,
        );
    }

    /// Completes every task this worker holds as rejected (`ShuttingDown`); the engine is
    /// stopping. A task with several sub-tasks in the queues is completed once (the slot's
    /// claim decides).
    fn abort_all(&mut self) {
        let mut held: Vec<Ticket> = Vec::new();
        held.extend(self.pending.iter_mut().flat_map(|q| q.drain(..)));
        held.extend(self.domain_in.drain(..).map(|m| m.ticket));
        held.extend(self.outstanding.drain().map(|m| m.ticket));
        for t in held {
            self.complete(t, Reason::ShuttingDown);
        }
        self.flush_isolated();
    }
}
