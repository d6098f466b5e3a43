//! What every thread of one engine shares: the topology, the breakers, the task slots, the
//! rings that cross threads, the counters, and the lifecycle.

use crate::attempt::Hub;
use crate::breaker::{Breaker, BreakerMode, Transition};
use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::handler::Agent;
use crate::isolated::Pool;
use crate::park::{Parker, WaitList};
use crate::queue::Mpmc;
use crate::slab::Slab;
use crate::stats::WorkerCounters;
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Ordering, Snapshot};
use crate::task::{AgentId, Completion, Ticket};
use crate::timer::Timer;
use crate::topology::Topology;
use crossbeam_utils::CachePadded;
use serde::Serialize;

pub(crate) const RUNNING: u8 = 0;
/// No new tasks; tasks in flight run to completion.
pub(crate) const DRAINING: u8 = 1;
/// Workers complete what they hold as rejected and exit.
pub(crate) const STOPPING: u8 = 2;
pub(crate) const STOPPED: u8 = 3;

/// Something that happened in an engine, for an event listener
/// ([`crate::Engine::set_event_listener`]).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EngineEvent<'a> {
    /// A breaker changed state; `name` says which, as in the audit trail (`agent API/REST`).
    Breaker {
        /// The transition.
        event: &'a BreakerEvent,
        /// The breaker's name.
        name: &'a str,
    },
    /// An operator action was recorded in the audit trail.
    Audit(&'a crate::AuditRecord),
}

impl EngineEvent<'_> {
    /// The event as one line of JSON: `{"event":"breaker","at_ns":..,"breaker":"agent
    /// API/REST","level":"agent","index":0,"from":"closed","to":"open","cause":"failures",
    /// "task_id":7}` (`task_id` null when no task caused it), or `{"event":"audit",...}` with
    /// the audit record's fields.
    pub fn to_json(&self) -> String {
        let v = match self {
            EngineEvent::Breaker { event, name } => serde_json::json!({
                "event": "breaker",
                "at_ns": event.at_ns,
                "breaker": name,
                "level": event.level,
                "index": event.index,
                "from": event.transition.from.to_string(),
                "to": event.transition.to.to_string(),
                "cause": event.transition.cause.name(),
                "task_id": event.task,
            }),
            EngineEvent::Audit(r) => {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.insert("event".into(), "audit".into());
                }
                v
            }
        };
        v.to_string()
    }
}

/// An event listener ([`crate::Engine::set_event_listener`]).
pub type EventListener = std::sync::Arc<dyn Fn(&EngineEvent<'_>) + Send + Sync>;

thread_local! {
    /// The engine locks this thread holds (bits below): taking one again would deadlock.
    static HELD: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}
/// The audit log's lock.
pub(crate) const AUDIT_LOCK: u8 = 1;
/// The reconfiguration lock.
pub(crate) const WRITER_LOCK: u8 = 2;

/// A lock guard that marks its lock held by this thread while it lives.
pub(crate) struct Held<G> {
    guard: Option<G>,
    bit: u8,
}

impl<G> Held<G> {
    /// Takes a lock with `take`, unless this thread holds it already: that is an event listener
    /// acting from inside the action that called it, and a panic (which the listener's caller
    /// catches and logs) rather than a deadlock.
    pub(crate) fn take(bit: u8, take: impl FnOnce() -> G) -> Self {
        if HELD.with(|h| h.get() & bit != 0) {
            panic!(
                "an engine operation was called from an event listener inside the operator action \
                 that raised the event; it would deadlock (act on the event from another thread)"
            );
        }
        let guard = take();
        HELD.with(|h| h.set(h.get() | bit));
        Self { guard: Some(guard), bit }
    }

    /// Releases the lock.
    fn release(&mut self) -> Option<G> {
        let g = self.guard.take();
        if g.is_some() {
            HELD.with(|h| h.set(h.get() & !self.bit));
        }
        g
    }
}

impl<G> Drop for Held<G> {
    fn drop(&mut self) {
        drop(self.release());
    }
}

impl<G: std::ops::Deref> std::ops::Deref for Held<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        self.guard.as_mut().expect("held until dropped")
    }
}

/// The audit log, locked; on unlocking, the records made meanwhile go to the event listener.
pub(crate) struct AuditGuard<'a> {
    sh: &'a Shared,
    held: Held<std::sync::MutexGuard<'a, crate::audit::AuditLog>>,
}

impl std::ops::Deref for AuditGuard<'_> {
    type Target = crate::audit::AuditLog;
    fn deref(&self) -> &crate::audit::AuditLog {
        &self.held
    }
}

impl std::ops::DerefMut for AuditGuard<'_> {
    fn deref_mut(&mut self) -> &mut crate::audit::AuditLog {
        &mut self.held
    }
}

impl Drop for AuditGuard<'_> {
    fn drop(&mut self) {
        let pending = match self.held.guard.as_mut() {
            Some(log) if !log.pending.is_empty() => std::mem::take(&mut log.pending),
            _ => return,
        };
        drop(self.held.release());
        if let Some(l) = &*self.sh.listener.load() {
            for r in &pending {
                self.sh.tell(l, &EngineEvent::Audit(r));
            }
        }
    }
}

/// The completion callback's type.
pub type CompletionCallback = Box<dyn Fn(&mut Completion) + Send + Sync>;

/// The breaker levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Level {
    /// The meta orchestrator (one breaker).
    Meta = 0,
    /// A domain orchestrator.
    Domain = 1,
    /// An agent.
    Agent = 2,
}

/// A breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerEvent {
    /// When, in nanoseconds since the engine started.
    pub at_ns: u64,
    /// Which level.
    pub level: Level,
    /// The domain or agent index (0 for the meta level).
    pub index: u16,
    /// The change.
    pub transition: Transition,
    /// The id of the task whose admission or result caused it, where one did (a meta or domain
    /// breaker's transition; agent breakers' are reported without).
    pub task: Option<u64>,
}

/// The live routing table: which agents of each domain are in rotation, in what order (by
/// weight), and the handlers of the agents that run on the workers. Replaced whole (a snapshot)
/// when an operator takes an agent out or puts it back, changes a weight, or adds or removes an
/// agent; workers load it once per turn and never block, and a worker's attempts use the
/// snapshot they were chosen from (so a removed agent's handler lives until they are done).
#[derive(Clone)]
pub(crate) struct Policy {
    /// Per domain: the rotation, each agent in rotation appearing as often as its weight
    /// (divided by the weights' common divisor), interleaved (smooth weighted round-robin).
    pub(crate) routing: Vec<Vec<AgentId>>,
    /// Per domain: its agents (not removed), in or out of rotation, by id.
    pub(crate) members: Vec<Vec<AgentId>>,
    /// By agent id: in rotation, and weight.
    pub(crate) in_rotation: Box<[bool]>,
    pub(crate) weights: Box<[u32]>,
    /// By agent id: the handler of an agent added while the engine runs (None for the agents
    /// it started with, spare ids, and removed agents).
    pub(crate) handlers: Box<[Option<std::sync::Arc<dyn Agent>>]>,
}

impl Policy {
    /// Recomputes domain `d`'s rotation from its members, rotation flags and weights.
    pub(crate) fn route(&mut self, d: usize) {
        let members: Vec<AgentId> =
            self.members[d].iter().copied().filter(|a| self.in_rotation[usize::from(a.0)]).collect();
        let w: Vec<u64> = members.iter().map(|a| u64::from(self.weights[usize::from(a.0)])).collect();
        self.routing[d] = smooth_weighted(&members, &w);
    }
}

/// One cycle of smooth weighted round-robin (nginx's): each agent appears `w / gcd` times,
/// spread out rather than in runs.
pub(crate) fn smooth_weighted(agents: &[AgentId], weights: &[u64]) -> Vec<AgentId> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| (x / g) as i64).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(agents[best]);
    }
    out
}

/// One worker's share: its ingress ring, its attempt slots and inbox (with its parker), its
/// counters.
pub(crate) struct WorkerShared {
    /// Tickets of submitted tasks; any thread pushes, this worker pops.
    pub(crate) ingress: Mpmc<u64>,
    /// Its deferred attempts, and the parker every publisher wakes it with.
    pub(crate) hub: std::sync::Arc<Hub>,
    pub(crate) counters: WorkerCounters,
    /// Set when the worker thread has returned.
    pub(crate) exited: AtomicBool,
}

impl WorkerShared {
    #[inline]
    pub(crate) fn parker(&self) -> &Parker {
        &self.hub.parker
    }
}

/// What the stages need of one agent, in one place (one bounds check, one cache line). The
/// engine makes one per agent it starts with and per spare id.
pub(crate) struct AgentRt {
    pub(crate) run: AgentRun,
    /// Its bit in a sub-task's set of tried agents (its position in its domain). Written once,
    /// before a spare id is published in the routing snapshot.
    pub(crate) bit: AtomicU64,
    /// Its limit on attempts in flight.
    pub(crate) bulkhead: crate::bulkhead::Bulkhead,
}

impl AgentRt {
    /// Its bit in a sub-task's set of tried agents.
    #[inline]
    pub(crate) fn bit(&self) -> u64 {
        self.bit.load(Ordering::Relaxed)
    }
}

/// How an agent's attempts run.
pub(crate) enum AgentRun {
    /// On the workers: the attempt is a call (which may defer it).
    Local(std::sync::Arc<dyn Agent>),
    /// An agent added while the engine runs (a spare id), on the workers: the call goes to its
    /// handler in the routing snapshot ([`Policy::handlers`]), which releases it when the agent
    /// is removed.
    Added,
    /// On a pool of threads of its own (index into `Shared::pools`).
    Pool(usize),
}

thread_local! {
    /// The engine whose thread this is (a worker or an isolated agent's thread), by address.
    static ENGINE_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as one of `sh`'s: calls that would block on this engine refuse.
pub(crate) fn enter_engine_thread(sh: &Shared) {
    ENGINE_THREAD.with(|e| e.set(sh as *const Shared as usize));
}

/// Whether the calling thread is one of `sh`'s (a handler or a completion callback runs on it).
pub(crate) fn on_engine_thread(sh: &Shared) -> bool {
    ENGINE_THREAD.with(|e| e.get() == sh as *const Shared as usize)
}

/// A token bucket at admission, as GCRA on one atomic: `tat` is the theoretical arrival time of
/// the next task.
pub(crate) struct RateLimiter {
    /// Nanoseconds between admissions at the sustained rate (0: no limit). Operators may change
    /// it and the tolerance while tasks run; a check sees either setting, both are valid.
    interval_ns: AtomicU64,
    tolerance_ns: AtomicU64,
    tat: AtomicU64,
}

impl RateLimiter {
    pub(crate) fn new(per_s: f64, burst: f64) -> Self {
        let (interval, tolerance) = Self::params(per_s, burst);
        Self { interval_ns: AtomicU64::new(interval), tolerance_ns: AtomicU64::new(tolerance), tat: AtomicU64::new(0) }
    }

    fn params(per_s: f64, burst: f64) -> (u64, u64) {
        let interval_ns = if per_s > 0.0 { (1e9 / per_s).max(1.0) as u64 } else { 0 };
        (interval_ns, (interval_ns as f64 * (burst - 1.0).max(0.0)) as u64)
    }

    /// Changes the rate (0: no limit) and the burst, from the next admission on.
    pub(crate) fn set(&self, per_s: f64, burst: f64) {
        let (interval, tolerance) = Self::params(per_s, burst);
        self.tolerance_ns.store(tolerance, Ordering::Relaxed);
        self.interval_ns.store(interval, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn allow(&self, now: u64) -> bool {
        let interval_ns = self.interval_ns.load(Ordering::Relaxed);
        if interval_ns == 0 {
            return true;
        }
        let tolerance_ns = self.tolerance_ns.load(Ordering::Relaxed);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > tolerance_ns {
                return false;
            }
            match self.tat.compare_exchange_weak(tat, start + interval_ns, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

/// The live admission settings: each is one relaxed load where it is used, and a check sees
/// either the old or the new value of each (all are valid).
pub(crate) struct Admission {
    /// Tasks past the throttle at once (0: no throttle).
    pub(crate) max_concurrent: AtomicU64,
    /// Tasks waiting for the throttle, per worker.
    pub(crate) queue_capacity: AtomicU64,
    /// The lowest priority admitted while degraded.
    pub(crate) essential_priority: AtomicU8,
    /// Per priority: free slots that must remain after a task of that priority takes one.
    pub(crate) reserve: [AtomicU64; 4],
}

impl Admission {
    pub(crate) fn new(a: &crate::config::AdmissionConfig, slots: usize) -> Self {
        let s = Self {
            max_concurrent: AtomicU64::new(0),
            queue_capacity: AtomicU64::new(0),
            essential_priority: AtomicU8::new(0),
            reserve: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        s.set(a, slots);
        s
    }

    pub(crate) fn set(&self, a: &crate::config::AdmissionConfig, slots: usize) {
        self.max_concurrent.store(a.max_concurrent as u64, Ordering::Relaxed);
        self.queue_capacity.store(a.queue_capacity as u64, Ordering::Relaxed);
        self.essential_priority.store(a.essential_priority, Ordering::Relaxed);
        for (r, f) in self.reserve.iter().zip(a.priority_reserve) {
            r.store((f * slots as f64) as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn max_concurrent(&self) -> u64 {
        self.max_concurrent.load(Ordering::Relaxed)
    }
}

pub(crate) struct Shared {
    /// The topology now (agents added and removed while running included).
    pub(crate) topo: Snapshot<Topology>,
    /// Per domain: its hedging policy (fixed at the start).
    pub(crate) hedges: Box<[Option<crate::Hedge>]>,
    pub(crate) cfg: EngineConfig,
    pub(crate) clock: Clock,
    /// How each agent runs, by agent id.
    pub(crate) agents: Box<[CachePadded<AgentRt>]>,
    /// Isolated agents' thread pools.
    pub(crate) pools: Box<[Pool]>,
    /// The simulated I/O timer, when an agent needs it.
    pub(crate) timer: Option<std::sync::Arc<Timer>>,
    /// The engine's handle in the C ABI's table (0 for an engine started from Rust).
    pub(crate) ffi_handle: AtomicU64,
    pub(crate) agent_breakers: Box<[Breaker]>,
    pub(crate) domain_breakers: Box<[Breaker]>,
    pub(crate) meta_breaker: Breaker,
    pub(crate) slab: Slab,
    pub(crate) workers: Box<[WorkerShared]>,
    /// Tickets of completed tasks delivered by `poll`, one queue per worker (worker `w` pushes
    /// to queue `w`, or the next with room; the shutdown sweep to any). Together they hold more
    /// than the slot count, so a push always finds room.
    pub(crate) completions: Box<[CachePadded<Mpmc<u64>>]>,
    /// Callers blocked in `poll_wait`.
    pub(crate) pollers: WaitList,
    pub(crate) callback: Option<CompletionCallback>,
    pub(crate) lifecycle: AtomicU8,
    pub(crate) policy: Snapshot<Policy>,
    /// Per domain: the agents whose calls fail because an operator or a test marked them, or
    /// their whole domain, down (bit `local`; all ones while the domain is down). One load per
    /// attempt. Recomputed from the two fields below by whoever changes them, under the audit
    /// lock.
    pub(crate) down: Box<[AtomicU64]>,
    /// Per domain: marked down as a whole (a correlated fault).
    pub(crate) domain_down: Box<[AtomicBool]>,
    /// Per domain: agents marked down one by one (bit `local`).
    pub(crate) agents_down: Box<[AtomicU64]>,
    pub(crate) events: Mpmc<BreakerEvent>,
    pub(crate) events_dropped: AtomicU64,
    /// The admission settings operators may change while tasks run.
    pub(crate) admission: Admission,
    /// Tasks admitted past the throttle and not completed (only when it is configured).
    pub(crate) throttle: AtomicU64,
    pub(crate) rate: RateLimiter,
    pub(crate) submit_full: AtomicU64,
    /// Tasks completed as rejected (`ShuttingDown`) by the shutdown sweep or by a submitter
    /// that raced the shutdown, rather than by a worker.
    pub(crate) swept: AtomicU64,
    pub(crate) pin_failures: AtomicU64,
    /// Per domain id (spare ids included), from the topology: the injected fault threshold
    /// and the attempts a sub-task may make. Written before a domain is published, and
    /// `max_attempts` again when agents come and go in a domain that attempts each agent.
    pub(crate) domain_fault_threshold: Box<[AtomicU64]>,
    pub(crate) meta_fault_threshold: u64,
    pub(crate) max_attempts: Box<[crate::sync::AtomicU32]>,
    /// The domains tasks may name (bit per id): those not removed.
    pub(crate) live_domains: AtomicU64,
    /// The time budgets in nanoseconds, indexed by [`Level`]: each level's breaker timeout,
    /// changed with it while tasks run ([`crate::Engine::set_breaker_config`]).
    pub(crate) timeouts_ns: [AtomicU64; 3],
    /// Operator actions, newest last.
    pub(crate) audit: std::sync::Mutex<crate::audit::AuditLog>,
    /// By agent id: the live controls of simulated agents ([`crate::Engine::set_sim_agent`]).
    pub(crate) sims: std::sync::Mutex<Vec<Option<std::sync::Arc<crate::sim::SimControl>>>>,
    /// The event listener, if one is set; `listening` says whether to look (one relaxed load,
    /// so that engines without a listener never touch the snapshot on a worker: arc-swap's
    /// first load on a thread allocates).
    pub(crate) listener: Snapshot<Option<EventListener>>,
    pub(crate) listening: AtomicBool,
    /// The online reliability monitor's samples (read paths only).
    pub(crate) monitor: std::sync::Mutex<crate::stats::monitor::Monitor>,
}

/// A breaker mode's name, as in the audit trail and the C constants.
pub(crate) fn mode_name(m: BreakerMode) -> &'static str {
    match m {
        BreakerMode::Normal => "normal",
        BreakerMode::Disabled => "disabled",
        BreakerMode::ForcedOpen => "forced_open",
    }
}

impl Shared {
    /// Recomputes domain `d`'s word of [`Shared::down`] (the caller holds the audit lock).
    pub(crate) fn refresh_down(&self, d: usize) {
        let word = if self.domain_down[d].load(Ordering::Relaxed) {
            u64::MAX
        } else {
            self.agents_down[d].load(Ordering::Relaxed)
        };
        self.down[d].store(word, Ordering::Relaxed);
    }

    /// The agent level's time budget: an attempt slower than this failed.
    #[inline]
    pub(crate) fn agent_timeout_ns(&self) -> u64 {
        self.timeouts_ns[Level::Agent as usize].load(Ordering::Relaxed)
    }

    /// The domain level's time budget for a sub-task.
    #[inline]
    pub(crate) fn domain_timeout_ns(&self) -> u64 {
        self.timeouts_ns[Level::Domain as usize].load(Ordering::Relaxed)
    }

    /// The meta level's time budget for a task, from its submission.
    #[inline]
    pub(crate) fn meta_timeout_ns(&self) -> u64 {
        self.timeouts_ns[Level::Meta as usize].load(Ordering::Relaxed)
    }

    /// Each domain's success over the monitor's window, beside its prediction.
    pub(crate) fn observe_reliability(&self, s: &crate::Stats) -> Vec<crate::stats::ReliabilityWindow> {
        let counts = crate::stats::monitor::DomainCount::of(s);
        let mut m = self.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.observe(&counts, std::time::Instant::now())
    }

    /// Hands a finished task's outcome to its one destination: the waiter on its ticket, the
    /// completion callback, or the completion queue.
    pub(crate) fn deliver(&self, t: Ticket, shard: usize) {
        // SAFETY: the slot is DONE and not yet taken, so its request is still the task's and
        // read-only.
        if unsafe { self.slab.req(t.slot()) }.waitable {
            return; // `wait` takes it
        }
        match &self.callback {
            Some(cb) => {
                if let Some(mut c) = self.slab.take(t)
                    && crate::handler::guarded(|| cb(&mut c)).is_none()
                {
                    let id = c.id;
                    crate::handler::guarded(|| {
                        tracing::error!(task = id, "the completion callback panicked; the engine runs on")
                    });
                }
            }
            None => {
                // The queues hold at least the slot count together, one entry per slot at most:
                // if this worker's is full, another has room.
                let n = self.completions.len();
                let mut t = t.0;
                for k in 0..n {
                    match self.completions[(shard + k) % n].push(t) {
                        Ok(()) => return,
                        Err(back) => t = back,
                    }
                }
                unreachable!("the completion queues hold every task slot");
            }
        }
    }

    /// Publishes a breaker transition (bounded queue; the oldest events are kept).
    #[inline]
    pub(crate) fn emit(&self, level: Level, index: usize, tr: Option<Transition>) {
        if let Some(transition) = tr {
            self.publish(level, index, transition, None);
        }
    }

    /// As [`Shared::emit`], for a transition the task `t` caused. The caller is the worker that
    /// holds `t`.
    #[inline]
    pub(crate) fn emit_for(&self, level: Level, index: usize, tr: Option<Transition>, t: Ticket) {
        if let Some(transition) = tr {
            // SAFETY: the caller holds the task (it is admitted and not finished), so its
            // request is not written while this reads it.
            let id = unsafe { self.slab.req(t.slot()) }.id;
            self.publish(level, index, transition, Some(id));
        }
    }

    #[cold]
    fn publish(&self, level: Level, index: usize, transition: Transition, task: Option<u64>) {
        let ev = BreakerEvent { at_ns: self.clock.now(), level, index: index as u16, transition, task };
        // A subscriber is the application's code: whatever it does, the worker runs on. The name
        // is only spelled out (allocated) for a subscriber that wants the event.
        if self.listening.load(Ordering::Acquire)
            && let Some(l) = &*self.listener.load()
        {
            let name = self.breaker_name(level, index);
            self.tell(l, &EngineEvent::Breaker { event: &ev, name: &name });
        }
        if !tracing::enabled!(target: "metafed::breaker", tracing::Level::INFO) {
            return self.queue_event(ev);
        }
        crate::handler::guarded(|| {
            let name = self.breaker_name(level, index);
            let (from, to, cause) = (transition.from, transition.to, transition.cause.name());
            let msg = if to == crate::BreakerState::Open { "breaker opened" } else { "breaker transition" };
            tracing::info!(target: "metafed::breaker", breaker = %name, %from, %to, cause = %cause, task, "{msg}");
        });
        self.queue_event(ev);
    }

    /// Keeps an event for `drain_events` (up to 1,024 between drains; later ones are counted as
    /// dropped).
    fn queue_event(&self, ev: BreakerEvent) {
        if self.events.push(ev).is_err() {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn breaker(&self, level: Level, index: usize) -> Option<&Breaker> {
        match level {
            Level::Meta => (index == 0).then_some(&self.meta_breaker),
            Level::Domain if index < self.topo.load().domains.len() => self.domain_breakers.get(index),
            Level::Domain => None,
            // Spare ids' breakers exist but are not agents' yet.
            Level::Agent if index < self.topo.load().agents.len() => self.agent_breakers.get(index),
            Level::Agent => None,
        }
    }

    pub(crate) fn set_mode(&self, level: Level, index: usize, mode: BreakerMode) -> bool {
        match self.breaker(level, index) {
            Some(b) => {
                let tr = {
                    let mut audit = self.audit();
                    let before = b.mode();
                    let tr = b.set_mode(mode);
                    audit.record(
                        "breaker_mode",
                        self.breaker_name(level, index),
                        mode_name(before).into(),
                        mode_name(mode).into(),
                    );
                    tr
                };
                // Reported with the audit log unlocked: a listener may read it.
                self.emit(level, index, tr);
                true
            }
            None => false,
        }
    }

    /// The audit log, locked.
    pub(crate) fn audit(&self) -> AuditGuard<'_> {
        let held = Held::take(AUDIT_LOCK, || self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        AuditGuard { sh: self, held }
    }

    /// Hands an event to the listener; a panic in it is logged.
    #[cold]
    pub(crate) fn tell(&self, l: &EventListener, ev: &EngineEvent<'_>) {
        if crate::handler::guarded(|| l(ev)).is_none() {
            crate::handler::guarded(|| tracing::error!("the event listener panicked; the engine runs on"));
        }
    }

    /// A breaker's name in words: `meta`, `domain API`, `agent API/REST`.
    pub(crate) fn breaker_name(&self, level: Level, index: usize) -> String {
        match level {
            Level::Meta => "meta".into(),
            Level::Domain => format!("domain {}", self.topo.load().domains[index].name),
            Level::Agent => format!("agent {}", self.agent_path(index)),
        }
    }

    /// `domain/agent`.
    pub(crate) fn agent_path(&self, index: usize) -> String {
        let topo = self.topo.load();
        let a = &topo.agents[index];
        format!("{}/{}", topo.domains[usize::from(a.domain.0)].name, a.name)
    }

    /// Whether any completion is waiting for `poll`.
    pub(crate) fn completions_ready(&self) -> bool {
        self.completions.iter().any(|q| !q.is_empty())
    }

    #[inline]
    pub(crate) fn lifecycle(&self) -> u8 {
        self.lifecycle.load(Ordering::Acquire)
    }

    pub(crate) fn ffi_handle(&self) -> u64 {
        self.ffi_handle.load(Ordering::Relaxed)
    }

    /// Late completions of deferred attempts, over every worker.
    pub(crate) fn late_results(&self) -> u64 {
        self.workers.iter().map(|w| w.hub.late()).sum()
    }
}
