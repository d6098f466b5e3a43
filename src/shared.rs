//! What every thread of one engine shares: the topology, the breakers, the task slots, the
//! rings that cross threads, the counters, and the lifecycle.

use crate::attempt::Hub;
use crate::breaker::{Breaker, BreakerMode, Transition};
use crate::clock::Clock;
use crate::completions::Completions;
use crate::config::EngineConfig;
use crate::counters::WorkerCounters;
use crate::events::{BreakerEvent, CompletionCallback, EngineEvent, EventListener, Level};
use crate::guard::{AUDIT_LOCK, Held};
use crate::handler::Agent;
use crate::ingress::Ingress;
use crate::isolated::Pool;
use crate::park::{Parker, WaitList};
use crate::policy::admission::{Admission, RateLimiter};
use crate::policy::routing::Policy;
use crate::queue::Mpmc;
use crate::slab::Slab;
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Ordering, Snapshot};
use crate::task::Ticket;
use crate::timer::Timer;
use crate::topology::Topology;
use crossbeam_utils::CachePadded;

/// Marks the calling thread as one of `sh`'s: calls that would block on this engine refuse.
pub(crate) fn enter_engine_thread(sh: &Shared) {
    crate::guard::set_engine_thread(sh as *const Shared as usize);
}

/// Whether the calling thread is one of `sh`'s (a handler or a completion callback runs on it).
pub(crate) fn on_engine_thread(sh: &Shared) -> bool {
    crate::guard::engine_thread() == sh as *const Shared as usize
}

pub(crate) const RUNNING: u8 = 0;
/// No new tasks; tasks in flight run to completion.
pub(crate) const DRAINING: u8 = 1;
/// Workers complete what they hold as rejected and exit.
pub(crate) const STOPPING: u8 = 2;
pub(crate) const STOPPED: u8 = 3;

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
        let pending = match self.held.guard_mut() {
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

/// One worker's share: its ingress ring, its attempt slots and inbox (with its parker), its
/// counters.
pub(crate) struct WorkerShared {
    /// Tickets of submitted tasks (see [`crate::ingress`]): submitters push, this worker takes,
    /// and idle workers steal.
    pub(crate) ingress: Ingress,
    /// Its deferred attempts, and the parker every publisher wakes it with.
    pub(crate) hub: std::sync::Arc<Hub>,
    /// Its counters (its own allocation: the worker keeps a handle, one load from any stage).
    pub(crate) counters: std::sync::Arc<WorkerCounters>,
    /// The clock when the worker began its current turn (its own cache line: written once a
    /// turn, read by submitters to see a worker stuck in one turn, see `Engine::conserve`).
    pub(crate) turn_ns: CachePadded<AtomicU64>,
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
    /// Its limit on attempts in flight (which also counts them when its domain balances by
    /// peak EWMA).
    pub(crate) bulkhead: crate::policy::bulkhead::Bulkhead,
    /// Its latency estimate, kept while its domain balances by peak EWMA.
    pub(crate) ewma: crate::policy::balance::PeakEwma,
    /// Its domain's id (written before a spare id is published).
    pub(crate) domain: crate::sync::AtomicU32,
    /// Its outlier counts, kept while its domain has outlier detection.
    pub(crate) outlier: crate::policy::outlier::AgentOutlier,
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

pub(crate) struct Shared {
    /// The topology now (agents added and removed while running included).
    pub(crate) topo: Snapshot<Topology>,
    /// Per domain: its hedging policy (fixed at the start).
    pub(crate) hedges: Box<[Option<crate::policy::hedge::Hedge>]>,
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
    /// Tickets that found every worker's ingress ring taken or full; every worker takes from
    /// it. Holds the slot count.
    pub(crate) ingress_overflow: Mpmc<Ticket>,
    /// Tickets of completed tasks delivered by `poll`: a ring per worker, and an overflow queue
    /// (see [`Completions`]).
    pub(crate) completions: Completions,
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
    /// Complexity units the admitted tasks hold of the cost budget (only when it is set).
    pub(crate) cost_held: AtomicU64,
    /// The decision engine: the classifier of tasks that name no domain, if any.
    pub(crate) decider: Snapshot<Option<crate::classify::Decider>>,
    pub(crate) rate: RateLimiter,
    /// The keyed rate limits, when configured.
    pub(crate) keyed: Option<Box<crate::policy::KeyedLimiter>>,
    /// The adaptive throttle, when configured: it moves `admission.max_concurrent`.
    pub(crate) adaptive: Option<Box<crate::policy::adaptive::AdaptiveLimit>>,
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
    /// Per domain id (spare ids included): how it chooses its agents, changed live
    /// ([`crate::Engine::set_domain_balance`]).
    pub(crate) balance: Box<[crate::policy::balance::DomainBalance]>,
    /// Bit `d` set while domain `d` balances by peak EWMA: the choice's one load and test.
    pub(crate) peak_ewma: AtomicU64,
    /// Per domain id: its outlier detection (read while its bit in `outlier_on` is set).
    pub(crate) outlier: Box<[crate::policy::outlier::DomainOutlier]>,
    pub(crate) outlier_on: AtomicU64,
    /// `peak_ewma | outlier_on`: the domains whose attempts' outcomes are watched (one load and
    /// test per outcome for the others).
    pub(crate) watched: AtomicU64,
    /// Bumped after every change to a setting the lean path depends on (see
    /// `Worker::lean_now`, which decides again only when it moves): breaker modes, the down
    /// masks, watched domains (balancing, outlier detection), admission limits and the adaptive
    /// throttle's, the rate limit, agents' concurrency limits, added agents and domains (their
    /// limits, fault thresholds).
    pub(crate) settings_epoch: AtomicU64,
    /// Per domain id: its adaptive shedding (read while its bit in `shedding_on` is set).
    pub(crate) shedding: Box<[crate::policy::shedding::DomainShedding]>,
    pub(crate) shedding_on: AtomicU64,
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
    pub(crate) monitor: std::sync::Mutex<crate::monitor::Monitor>,
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
        self.settings_changed();
    }

    /// A setting the lean path depends on has changed (stored before this call): workers
    /// decide again whether to take it, for the tasks they take from now on (release: a worker
    /// that sees the new epoch sees the setting). Every writer of those settings calls it.
    pub(crate) fn settings_changed(&self) {
        self.settings_epoch.fetch_add(1, Ordering::Release);
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

    /// Completes task `t` as rejected (`ShuttingDown`) on behalf of the engine, its slot claimed
    /// by the caller (the shutdown sweep, or a submitter that raced the shutdown), and hands it to
    /// its destination.
    #[cold]
    pub(crate) fn deliver_swept(&self, t: Ticket) {
        // Claimed (`COMPLETING`): read before `DONE`, as the worker does.
        let waitable = self.slab.is_waitable(t.slot());
        self.slab.finish_swept(t.slot(), self.clock.now());
        self.swept.fetch_add(1, Ordering::Relaxed);
        // The sweep's callers wake the pollers (or the engine has stopped: they return).
        self.deliver(t, waitable, None);
    }

    /// Hands a finished task's outcome to its one destination: the waiter on its ticket, the
    /// caller's completion queue, the completion callback, or the engine's completion queues.
    /// Returns whether it went to the engine's completion queues (callers of `poll_wait` may
    /// be waiting for it): through `tx`, a worker's ring, when given (visible once the worker
    /// publishes it), else the overflow queue. `waitable` is the task's (`Slab::is_waitable`),
    /// read by the caller before the slot was marked `DONE`: from then on a waiter may take the completion, free
    /// the slot and another task fill it, so the request is not read again for such a task.
    pub(crate) fn deliver(&self, t: Ticket, waitable: bool, tx: Option<&mut crate::ring::Producer<u64>>) -> bool {
        if waitable {
            return false; // `wait` takes it
        }
        // SAFETY: the slot is DONE and, its task not waitable, taken only by whoever receives
        // the ticket below: its request is still the task's and read-only.
        let req = unsafe { self.slab.req(t.slot()) };
        // SAFETY: as above (read only when the task has a queue).
        if let Some(sink) = req.sink(unsafe { self.slab.extra(t.slot()) }) {
            // Its own handle: once the ticket is pushed the consumer may take it and free the
            // slot, dropping the slot's handle while this still rings the queue's bell.
            std::sync::Arc::clone(sink).deliver(t, |t| drop(self.slab.take(t)));
            return false;
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
                false
            }
            None => {
                self.completions.push(t.0, tx);
                true
            }
        }
    }

    /// Sets or clears domain `d`'s bit in `mask` (`peak_ewma` or `outlier_on`), and keeps
    /// `watched` their union.
    pub(crate) fn set_domain_bit(&self, mask: &AtomicU64, d: usize, on: bool) {
        if on {
            mask.fetch_or(1u64 << d, Ordering::Relaxed);
        } else {
            mask.fetch_and(!(1u64 << d), Ordering::Relaxed);
        }
        let union = self.peak_ewma.load(Ordering::Relaxed) | self.outlier_on.load(Ordering::Relaxed);
        self.watched.store(union, Ordering::Relaxed);
        self.settings_changed();
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
            let msg = if to == crate::breaker::BreakerState::Open { "breaker opened" } else { "breaker transition" };
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
                    self.settings_changed();
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

    /// Wakes the first worker after `w`, in turn, that sleeps, and returns it: for work the
    /// caller made visible before its sequentially consistent fence (see `park`).
    pub(crate) fn wake_sleeper_after(&self, w: usize) -> Option<usize> {
        let n = self.workers.len();
        (1..n).map(|k| (w + k) % n).find(|&v| self.workers[v].parker().wake_fenced())
    }

    /// Whether any completion is waiting for `poll`.
    pub(crate) fn completions_ready(&self) -> bool {
        self.completions.ready()
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
