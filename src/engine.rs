//! The engine's public face: start it, submit tasks, collect completions, watch it, stop it.

use crate::attempt::Hub;
use crate::breaker::{Breaker, BreakerConfig, BreakerMode};
use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::error::{Error, SubmitError, WaitError, WouldDeadlock};
use crate::handler::{Agent, Deferred, Immediate};
use crate::isolated::{self, Pool};
use crate::park::{Idle, WaitList};
use crate::queue::Mpmc;
use crate::shared::{
    AgentRt, AgentRun, BreakerEvent, CompletionCallback, Level, Policy, RateLimiter, Shared, WorkerShared,
};
use crate::shared::{DRAINING, RUNNING, STOPPED, STOPPING, on_engine_thread};
use crate::sim;
use crate::slab::Slab;
use crate::stats::{Health, Stats, WorkerCounters};
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Mutex, Ordering, Snapshot, fence, lock};
use crate::task::{Completion, Reason, Task, Ticket};
use crate::timer::Timer;
use crate::topology::{AgentKind, Topology};
use crate::worker::Worker;
use crossbeam_utils::CachePadded;
use serde::Serialize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running federation. Cheap to share between threads (`&Engine` or `Arc<Engine>`): every
/// method takes `&self`. Dropping it shuts it down with the configured drain timeout.
pub struct Engine {
    sh: Arc<Shared>,
    threads: Mutex<Threads>,
    /// Serialises operators' updates of the routing snapshot.
    policy_writer: Mutex<()>,
    /// The rate limit in force (per second, burst), for the audit trail.
    /// The admission settings now (the engine's atomics hold them as used).
    admission_setting: Mutex<crate::config::AdmissionConfig>,
    /// A simulation's engine (virtual clock, no threads): submissions pick workers and shards
    /// without regard to the calling thread. Kept here, next to the hot path's other reads.
    simulated: bool,
    /// The admin endpoint, while it runs.
    #[cfg(feature = "admin")]
    admin: Mutex<Option<crate::admin::AdminServer>>,
}

#[derive(Default)]
struct Threads {
    workers: Vec<JoinHandle<()>>,
    /// Isolated agents' pool threads: (pool, thread in pool, handle).
    isolated: Vec<(usize, usize, JoinHandle<()>)>,
    timer: Option<JoinHandle<()>>,
    report: Option<ShutdownReport>,
}

/// What [`Engine::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Whether every task in flight finished before the drain deadline.
    pub drained: bool,
    /// Tasks completed as rejected (`ShuttingDown`) because the deadline passed first.
    pub rejected: u64,
    /// Threads that did not stop in time (a handler that never returns) and were detached.
    pub detached_threads: usize,
    /// How long the shutdown took, in microseconds.
    pub elapsed_us: u64,
}

/// Sets up an engine: its topology, configuration and completion callback.
pub struct EngineBuilder {
    topology: Topology,
    config: EngineConfig,
    callback: Option<CompletionCallback>,
}

impl EngineBuilder {
    /// Sets the runtime configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Delivers completions to `f` (on the thread that completed the task) instead of to
    /// `poll`. Waitable tasks still go to `wait`. `f` must not block for long: it runs on a
    /// worker, where calls that would block on this engine are refused ([`WouldDeadlock`]).
    pub fn on_complete(mut self, f: impl Fn(&Completion) + Send + Sync + 'static) -> Self {
        self.callback = Some(Box::new(move |c: &mut Completion| f(c)));
        self
    }

    /// [`on_complete`](Self::on_complete) with the completion by mutable reference, so that `f`
    /// can take its reply bytes ([`Completion::take_bodies`]) without copying them.
    pub fn on_complete_mut(mut self, f: impl Fn(&mut Completion) + Send + Sync + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Validates the configuration and starts the worker threads.
    pub fn start(self) -> Result<Engine, Error> {
        Engine::launch(self.topology, self.config, self.callback)
    }

    /// Builds the engine as a deterministic simulation instead of starting it: no threads, a
    /// virtual clock, and the workers' turns run by [`crate::Simulation`] on the calling thread
    /// in a fixed order. `config.workers` workers (0: one). Simulated agents with a latency wait
    /// it as I/O agents do (on the simulation's timer, in virtual time); isolated simulated
    /// agents run on the workers. Isolated handlers, and simulated agents that hang, need real
    /// threads and are refused.
    pub fn simulate(self) -> Result<crate::Simulation, Error> {
        let (engine, workers) = Engine::build(self.topology, self.config, self.callback, true)?;
        Ok(crate::Simulation::new(engine, workers))
    }
}

impl Engine {
    /// A builder for an engine that runs `topology`.
    pub fn builder(topology: Topology) -> EngineBuilder {
        EngineBuilder { topology, config: EngineConfig::default(), callback: None }
    }

    /// Starts an engine with `config` and completions delivered to `poll`.
    pub fn start(topology: Topology, config: EngineConfig) -> Result<Engine, Error> {
        Self::launch(topology, config, None)
    }

    fn launch(topo: Topology, cfg: EngineConfig, callback: Option<CompletionCallback>) -> Result<Engine, Error> {
        Ok(Self::build(topo, cfg, callback, false)?.0)
    }

    /// Builds an engine; starts its threads unless `simulated`, in which case the workers come
    /// back to be run by a [`crate::Simulation`].
    fn build(
        mut topo: Topology,
        cfg: EngineConfig,
        callback: Option<CompletionCallback>,
        simulated: bool,
    ) -> Result<(Engine, Vec<Worker>), Error> {
        cfg.validate().map_err(Error::Config)?;
        // The affinity mask, read once, before any thread is pinned.
        let cores = if simulated { Vec::new() } else { core_affinity::get_core_ids().unwrap_or_default() };
        let n_workers = match cfg.workers {
            0 if simulated => 1,
            0 if !cores.is_empty() => cores.len(),
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let clock = if simulated {
            for a in topo.agents.iter_mut() {
                if a.spec.isolated {
                    if !matches!(a.spec.kind, AgentKind::Sim(_)) {
                        return Err(Error::Config(format!(
                            "agent {}: isolated agents run on threads of their own and cannot be simulated",
                            a.name
                        )));
                    }
                    // A simulated agent blocks nothing: isolation changes no outcome here.
                    a.spec.isolated = false;
                }
                if let AgentKind::Sim(s) = &mut a.spec.kind {
                    if matches!(s.fault, sim::SimFault::Hang { .. }) {
                        return Err(Error::Config(format!(
                            "agent {}: a hanging simulated agent blocks a thread and cannot be simulated",
                            a.name
                        )));
                    }
                    // Latency is waited in virtual time, on the simulation's timer.
                    if s.latency != sim::Latency::None {
                        s.io = true;
                    }
                }
            }
            Clock::virtual_clock()
        } else {
            Clock::new()
        };
        // Attempt slots per worker: room for two deferred attempts per sub-task it may hold
        // (an attempt and a hedge, or an abandoned attempt whose handle is not yet released).
        // Sized per worker from the engine's totals, so that memory does not grow with the
        // worker count: each queue holds a share of the task slots (a full one spills to the
        // next worker's), and each hub twice a share of them (a worker that runs out of attempt
        // slots fails an attempt over as `Overloaded`).
        let slots = cfg.max_in_flight;
        let share = slots.div_ceil(n_workers) + cfg.batch;
        let attempt_slots = (2 * share).clamp(256, (cfg.worker_capacity * 2).max(256)).min(1 << 22);
        let timer = topo
            .agents
            .iter()
            .any(|a| matches!(&a.spec.kind, AgentKind::Sim(s) if s.io))
            .then(|| Arc::new(Timer::new(clock, attempt_slots * n_workers)));
        let mut pools = Vec::new();
        // Spare ids up to the limits (fewer when the topology is near them).
        let capacity = (topo.agents.len() + cfg.spare_agents).min(usize::from(u16::MAX)).max(topo.agents.len());
        let domains = (topo.domains.len() + cfg.spare_domains).min(crate::MAX_DOMAINS).max(topo.domains.len());
        let mut handlers: Vec<Option<Arc<dyn Agent>>> = Vec::with_capacity(capacity);
        let mut sims = Vec::with_capacity(capacity);
        let mut agents: Vec<CachePadded<AgentRt>> = Vec::with_capacity(capacity);
        for (i, a) in topo.agents.iter().enumerate() {
            if a.removed {
                // A running engine's snapshot started again: the id stays, unused.
                handlers.push(None);
                sims.push(None);
                agents.push(CachePadded::new(AgentRt {
                    run: AgentRun::Added,
                    bit: AtomicU64::new(0),
                    bulkhead: crate::bulkhead::Bulkhead::new(0),
                }));
                continue;
            }
            let (agent, control) = make_agent(&a.spec.kind, &timer);
            sims.push(control);
            handlers.push(None);
            let run = if a.spec.isolated {
                let id = crate::AgentId(i as u16);
                pools.push(Pool::new(id, agent, a.spec.threads, cfg.isolated_queue));
                AgentRun::Pool(pools.len() - 1)
            } else {
                AgentRun::Local(agent)
            };
            agents.push(CachePadded::new(AgentRt {
                run,
                bit: AtomicU64::new(1u64 << a.local),
                bulkhead: crate::bulkhead::Bulkhead::new(a.spec.max_concurrency),
            }));
        }
        for _ in topo.agents.len()..capacity {
            handlers.push(None);
            agents.push(CachePadded::new(AgentRt {
                run: AgentRun::Added,
                bit: AtomicU64::new(0),
                bulkhead: crate::bulkhead::Bulkhead::new(0),
            }));
        }
        let mut policy = Policy {
            routing: vec![Vec::new(); domains],
            members: (0..domains).map(|d| topo.domains.get(d).map_or_else(Vec::new, |d| d.agents.clone())).collect(),
            in_rotation: vec![true; capacity].into(),
            weights: (0..capacity).map(|a| topo.agents.get(a).map_or(1, |d| d.spec.weight)).collect(),
            handlers: handlers.into(),
        };
        for d in 0..topo.domains.len() {
            policy.route(d);
        }
        let agents: Box<[CachePadded<AgentRt>]> = agents.into();
        let levels = topo.breakers.clone();
        let sh = Arc::new(Shared {
            clock,
            agents,
            pools: pools.into_boxed_slice(),
            timer,
            ffi_handle: AtomicU64::new(0),
            agent_breakers: (0..capacity).map(|_| Breaker::new(levels.agent.clone(), n_workers)).collect(),
            domain_breakers: (0..domains).map(|_| Breaker::new(levels.domain.clone(), n_workers)).collect(),
            meta_breaker: Breaker::new(levels.meta.clone(), n_workers),
            slab: Slab::new(slots, n_workers),
            workers: (0..n_workers)
                .map(|w| WorkerShared {
                    ingress: Mpmc::new(share),
                    hub: Arc::new(Hub::new(attempt_slots, w as u16, clock)),
                    counters: WorkerCounters::new(domains, capacity),
                    exited: AtomicBool::new(false),
                })
                .collect(),
            completions: (0..n_workers).map(|_| CachePadded::new(Mpmc::new(share))).collect(),
            pollers: WaitList::new(),
            callback,
            lifecycle: AtomicU8::new(RUNNING),
            policy: Snapshot::new(policy),
            down: (0..domains).map(|_| AtomicU64::new(0)).collect(),
            domain_down: (0..domains).map(|_| AtomicBool::new(false)).collect(),
            agents_down: (0..domains).map(|_| AtomicU64::new(0)).collect(),
            events: Mpmc::new(1024),
            events_dropped: AtomicU64::new(0),
            admission: crate::shared::Admission::new(&cfg.admission, slots),
            throttle: AtomicU64::new(0),
            rate: RateLimiter::new(cfg.admission.rate_limit_per_s, cfg.admission.rate_limit_burst),
            submit_full: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            pin_failures: AtomicU64::new(0),
            domain_fault_threshold: (0..domains)
                .map(|d| AtomicU64::new(topo.domains.get(d).map_or(0, |d| sim::threshold(d.fault_rate))))
                .collect(),
            meta_fault_threshold: sim::threshold(topo.meta_fault_rate),
            max_attempts: (0..domains)
                .map(|d| {
                    crate::sync::AtomicU32::new(if d < topo.domains.len() {
                        topo.max_attempts(crate::DomainId(d as u16))
                    } else {
                        0
                    })
                })
                .collect(),
            // Every domain of the topology but those removed (a running engine's snapshot).
            live_domains: AtomicU64::new(
                topo.domains.iter().enumerate().filter(|(_, d)| !d.removed).fold(0, |m, (d, _)| m | 1u64 << d),
            ),
            timeouts_ns: [&levels.meta, &levels.domain, &levels.agent]
                .map(|c| AtomicU64::new(c.timeout.as_nanos() as u64)),
            audit: std::sync::Mutex::new(crate::audit::AuditLog::new()),
            listener: Snapshot::new(None),
            listening: AtomicBool::new(false),
            sims: std::sync::Mutex::new(sims),
            monitor: std::sync::Mutex::new(crate::stats::monitor::Monitor::new(domains, std::time::Instant::now())),
            hedges: (0..domains).map(|d| topo.domains.get(d).and_then(|d| d.hedge)).collect(),
            topo: Snapshot::new(topo),
            cfg,
        });

        let engine = Engine {
            sh: sh.clone(),
            threads: Mutex::new(Threads::default()),
            policy_writer: Mutex::new(()),
            admission_setting: Mutex::new(sh.cfg.admission.clone()),
            simulated,
            #[cfg(feature = "admin")]
            admin: Mutex::new(None),
        };
        if simulated {
            let workers = (0..n_workers).map(|id| Worker::new(id, sh.clone())).collect();
            return Ok((engine, workers));
        }
        let pin = sh.cfg.pin;
        for id in 0..n_workers {
            let core = cores.get(id % cores.len().max(1)).copied();
            let worker = Worker::new(id, sh.clone());
            let shared = sh.clone();
            let spawned = std::thread::Builder::new().name(format!("metafed-w{id}")).spawn(move || {
                if pin {
                    let pinned = core.is_some_and(core_affinity::set_for_current);
                    if !pinned {
                        shared.pin_failures.fetch_add(1, Ordering::Relaxed);
                        crate::handler::guarded(|| {
                            tracing::warn!(worker = id, ?core, "could not pin the worker to a core; it runs unpinned")
                        });
                    }
                }
                worker.run();
            });
            match spawned {
                Ok(h) => lock(&engine.threads).workers.push(h),
                Err(e) => return Err(Error::Spawn(format!("worker thread {id}: {e}"))), // Drop stops the rest
            }
        }
        for (p, pool) in sh.pools.iter().enumerate() {
            for t in 0..pool.threads {
                let shared = sh.clone();
                let name = format!("metafed-iso-{}", sh.topo.load().agents[usize::from(pool.agent.0)].name);
                match std::thread::Builder::new().name(name).spawn(move || isolated::run(shared, p, t)) {
                    Ok(h) => lock(&engine.threads).isolated.push((p, t, h)),
                    Err(e) => return Err(Error::Spawn(format!("isolated agent thread {p}.{t}: {e}"))),
                }
            }
        }
        if let Some(timer) = sh.timer.clone() {
            match std::thread::Builder::new().name("metafed-timer".into()).spawn(move || timer.run()) {
                Ok(h) => lock(&engine.threads).timer = Some(h),
                Err(e) => return Err(Error::Spawn(format!("timer thread: {e}"))),
            }
        }
        Ok((engine, Vec::new()))
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.sh
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn shared_arc(&self) -> &Arc<Shared> {
        &self.sh
    }

    #[cfg(feature = "admin")]
    pub(crate) fn admin_slot(&self) -> &Mutex<Option<crate::admin::AdminServer>> {
        &self.admin
    }

    /// The topology it runs now: a snapshot, with the agents added and removed while it runs
    /// up to this call ([`add_agent`](Self::add_agent), [`remove_agent`](Self::remove_agent)).
    pub fn topology(&self) -> Arc<Topology> {
        self.sh.topo.load()
    }

    /// Its configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.sh.cfg
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.sh.workers.len()
    }

    fn check(&self, task: &Task<'_>) -> Result<(), SubmitError> {
        if task.domains.is_empty() {
            return Err(SubmitError::NoDomains);
        }
        // Acquire: a domain added while running had its settings written before its bit was
        // published; the task carries them on to its worker through the ingress queue.
        let unknown = task.domains.0 & !self.sh.live_domains.load(Ordering::Acquire);
        if unknown != 0 {
            return Err(SubmitError::UnknownDomain(unknown.trailing_zeros() as u16));
        }
        if task.priority > crate::task::LOWEST_PRIORITY {
            return Err(SubmitError::InvalidPriority(task.priority));
        }
        Ok(())
    }

    /// Takes a slot, copies the task into it and publishes it. The caller pushes the ticket.
    #[inline]
    fn stage(&self, task: &Task<'_>, now: u64) -> Result<Ticket, SubmitError> {
        let sh = &*self.sh;
        let reserve = sh.admission.reserve[usize::from(task.priority)].load(Ordering::Relaxed) as usize;
        if reserve > 0 && sh.slab.free_len() <= reserve {
            sh.submit_full.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full);
        }
        let Some(idx) = sh.slab.alloc(self.submitter()) else {
            sh.submit_full.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full);
        };
        // SAFETY: we allocated the slot and have not published it.
        let req = unsafe { sh.slab.req_mut(idx) };
        req.id = task.id;
        req.payload = task.payload;
        req.data.clear();
        req.data.extend_from_slice(task.data);
        req.domains = task.domains.0;
        req.priority = task.priority;
        req.waitable = task.waitable;
        req.submit_ns = now;
        let meta = now.saturating_add(sh.meta_timeout_ns());
        req.deadline_ns = task.deadline.map_or(meta, |d| meta.min(now.saturating_add(d.as_nanos() as u64)));
        Ok(sh.slab.publish(idx))
    }

    /// The worker this thread's next submission should go to: the one it used last, while
    /// that worker keeps up (its ingress backlog is under two batches); otherwise the next one.
    /// One submitting thread thus feeds one worker until it needs more, and does not wake (and
    /// compete for cores with) every worker in turn.
    #[inline]
    fn target(&self) -> usize {
        let n = self.sh.workers.len();
        if self.simulated {
            // A simulation: the first worker that keeps up, whoever submits.
            return (0..n).find(|&w| self.sh.workers[w].ingress.len() < 2 * self.sh.cfg.batch).unwrap_or(0);
        }
        let w = PREFERRED.with(|p| p.get().unwrap_or_else(submitter)) % n;
        if n > 1 && self.sh.workers[w].ingress.len() >= 2 * self.sh.cfg.batch {
            let next = (w + 1) % n;
            PREFERRED.with(|p| p.set(Some(next)));
            return next;
        }
        w
    }

    /// Pushes a published ticket onto worker `w`'s ingress ring, or the next one with room.
    #[inline]
    fn push(&self, t: Ticket, w: usize) -> Option<usize> {
        let n = self.sh.workers.len();
        (0..n).map(|i| (w + i) % n).find(|&w| self.sh.workers[w].ingress.push(t.0).is_ok())
    }

    /// After a fence: if the engine began stopping while these tickets were published, the
    /// shutdown sweep may have missed them, so complete them here (each at most once).
    #[cold]
    fn reject_if_stopping(&self, tickets: &[Ticket]) {
        for &t in tickets {
            if self.sh.slab.claim_abandoned_ticket(t) {
                self.sh.slab.finish_swept(t.slot(), self.sh.clock.now());
                self.sh.swept.fetch_add(1, Ordering::Relaxed);
                self.sh.deliver(t, t.slot() as usize);
            }
        }
    }

    /// Submits a task without blocking. `Err(Full)` is backpressure: poll, then retry.
    /// An accepted task gets exactly one completion.
    #[inline]
    pub fn try_submit(&self, task: &Task<'_>) -> Result<Ticket, SubmitError> {
        let sh = &*self.sh;
        if sh.lifecycle() != RUNNING {
            return Err(SubmitError::ShuttingDown);
        }
        self.check(task)?;
        let t = self.stage(task, sh.clock.now())?;
        let Some(w) = self.push(t, self.target()) else {
            // Every ingress ring full: cannot happen while the rings hold the slot count together, but
            // stay correct if it does.
            self.reject_if_stopping(&[t]);
            return Ok(t);
        };
        // Orders the QUEUED store and the ring push before the lifecycle and sleeper checks
        // (see `park` and `shutdown`).
        fence(Ordering::SeqCst);
        if sh.lifecycle() >= STOPPING {
            self.reject_if_stopping(&[t]);
        }
        sh.workers[w].parker().wake_fenced();
        Ok(t)
    }

    /// Submits a task, waiting while the engine is full, up to `timeout` (forever if `None`).
    pub fn submit(&self, task: &Task<'_>, timeout: Option<Duration>) -> Result<Ticket, SubmitError> {
        if on_engine_thread(&self.sh) && !timeout.is_some_and(|t| t.is_zero()) {
            return Err(SubmitError::WouldDeadlock);
        }
        let deadline = timeout.map(|d| Instant::now() + d);
        let mut round = 0u32;
        loop {
            match self.try_submit(task) {
                Err(SubmitError::Full) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(SubmitError::Timeout);
                    }
                    backoff(&mut round);
                }
                other => return other,
            }
        }
    }

    /// Submits tasks in order until one is refused; `tickets[i]` receives task `i`'s ticket.
    /// Returns how many were accepted (all of them, or a prefix). A refusal after the first
    /// task is not an error: the count says where it stopped, and retrying the rest returns the
    /// reason. Cheaper per task than `try_submit`: one fence and one wake-up per batch.
    pub fn submit_batch(&self, tasks: &[Task<'_>], tickets: &mut [Ticket]) -> Result<usize, SubmitError> {
        let sh = &*self.sh;
        if sh.lifecycle() != RUNNING {
            return Err(SubmitError::ShuttingDown);
        }
        let n = tasks.len().min(tickets.len());
        let workers = sh.workers.len();
        let mut woken = 0u128; // workers to wake, as a bit set (wraps above 128 workers)
        let mut done = 0;
        let mut first_err = None;
        let now = sh.clock.now();
        'chunks: while done < n {
            let end = (done + sh.cfg.batch).min(n);
            let mut target = self.target();
            let start = done;
            for i in start..end {
                if let Err(e) = self.check(&tasks[i]) {
                    first_err = Some(e);
                    break 'chunks;
                }
                let t = match self.stage(&tasks[i], now) {
                    Ok(t) => t,
                    Err(e) => {
                        first_err = Some(e);
                        break 'chunks;
                    }
                };
                tickets[i] = t;
                match self.push(t, target) {
                    Some(w) => {
                        woken |= 1u128 << (w % 128);
                        target = w;
                    }
                    None => self.reject_if_stopping(&[t]),
                }
                done = i + 1;
            }
        }
        if done > 0 {
            fence(Ordering::SeqCst);
            if sh.lifecycle() >= STOPPING {
                self.reject_if_stopping(&tickets[..done]);
            }
            for w in 0..workers {
                if woken & (1u128 << (w % 128)) != 0 {
                    sh.workers[w].parker().wake_fenced();
                }
            }
        }
        match (done, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(done),
        }
    }

    /// Moves up to `out.len()` completions into `out` and returns how many. Never blocks.
    /// With a completion callback set, there is nothing to poll.
    pub fn poll(&self, out: &mut [Completion]) -> usize {
        let queues = &self.sh.completions;
        let start = self.submitter();
        let mut n = 0;
        for k in 0..queues.len() {
            let q = &queues[(start + k) % queues.len()];
            while n < out.len() {
                let Some(raw) = q.pop() else { break };
                if let Some(c) = self.sh.slab.take(Ticket(raw)) {
                    out[n] = c;
                    n += 1;
                }
            }
        }
        n
    }

    /// Like [`poll`](Self::poll), but when nothing is ready it waits, up to `timeout`, for
    /// something to be: spinning briefly, then sleeping until a worker delivers a completion.
    /// A caller that waits this way leaves its core to the workers (a caller that spins on
    /// `poll` competes with them when threads outnumber cores). Returns 0 when the timeout
    /// passes, or the engine has stopped, with nothing delivered. Refused with
    /// [`WouldDeadlock`] on one of this engine's threads (in a handler or a completion
    /// callback), where waiting could keep the engine from ever delivering.
    pub fn poll_wait(&self, out: &mut [Completion], timeout: Option<Duration>) -> Result<usize, WouldDeadlock> {
        let n = self.poll(out);
        if n > 0 || out.is_empty() || timeout.is_some_and(|t| t.is_zero()) {
            return Ok(n);
        }
        if on_engine_thread(&self.sh) {
            return Err(WouldDeadlock);
        }
        Ok(self.poll_wait_inner(out, timeout))
    }

    fn poll_wait_inner(&self, out: &mut [Completion], timeout: Option<Duration>) -> usize {
        let start = Instant::now();
        let mut idle = Idle::new(self.sh.cfg.idle_spins, u64::from(self.sh.cfg.idle_yield_us) * 1_000);
        while !idle.wait() {
            if self.sh.completions_ready() {
                return self.poll(out);
            }
        }
        let deadline = timeout.map(|d| start + d);
        loop {
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return self.poll(out),
                },
                None => None,
            };
            // Stopped with nothing left to deliver: nothing will come.
            if self.sh.lifecycle() == STOPPED && !self.sh.completions_ready() {
                return 0;
            }
            self.sh.pollers.sleep(|| self.sh.completions_ready() || self.sh.lifecycle() == STOPPED, left);
            let n = self.poll(out);
            if n > 0 {
                return n;
            }
        }
    }

    /// Blocks until the waitable task of `ticket` completes, or `timeout` passes (forever if
    /// `None`), and returns its completion. One thread may wait on a ticket at a time.
    pub fn wait(&self, ticket: Ticket, timeout: Option<Duration>) -> Result<Completion, WaitError> {
        // Spin and yield briefly before sleeping, as every waiting thread of the engine does: a
        // task that completes within microseconds costs no futex wake-up. Spinning only tries to
        // take the completion; registering as the ticket's waiter happens once, to sleep.
        if let Some(c) = self.sh.slab.try_take_waitable(ticket)? {
            return Ok(c);
        }
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(WaitError::Timeout);
        }
        if on_engine_thread(&self.sh) {
            return Err(WaitError::WouldDeadlock);
        }
        let start = Instant::now();
        let mut idle = Idle::new(self.sh.cfg.idle_spins, u64::from(self.sh.cfg.idle_yield_us) * 1_000);
        while !idle.wait() {
            if let Some(c) = self.sh.slab.try_take_waitable(ticket)? {
                return Ok(c);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(WaitError::Timeout);
            }
        }
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        self.sh.slab.wait(ticket, left)
    }

    /// Drains the breaker transitions recorded since the last call into `out` (at most 1,024
    /// are kept between calls; [`Stats::events_dropped`] counts the rest).
    pub fn drain_events(&self, out: &mut Vec<BreakerEvent>) -> usize {
        let before = out.len();
        while let Some(e) = self.sh.events.pop() {
            out.push(e);
        }
        out.len() - before
    }

    /// Forces a breaker open, disables it, or returns it to normal. `index` is the domain or
    /// agent index (0 for the meta level). Returns false if there is no such breaker.
    pub fn set_breaker_mode(&self, level: Level, index: usize, mode: BreakerMode) -> bool {
        self.sh.set_mode(level, index, mode)
    }

    /// Marks a domain down (every call to its agents fails, a correlated fault) or up again.
    pub fn set_domain_down(&self, domain: crate::DomainId, down: bool) -> bool {
        let d = usize::from(domain.0);
        match self
            .sh
            .domain_down
            .get(d)
            .filter(|_| !self.sh.topo.load().is_domain_removed(domain) && d < self.sh.topo.load().domains.len())
        {
            Some(flag) => {
                let mut audit = self.sh.audit();
                let before = flag.swap(down, Ordering::Relaxed);
                self.sh.refresh_down(d);
                let name = format!("domain {}", self.sh.topo.load().domains[d].name);
                audit.record("domain_down", name, before.to_string(), down.to_string());
                true
            }
            None => false,
        }
    }

    /// Changes a simulated agent while tasks run, for fault schedules and drills: its error rate
    /// (the oracle's p per attempt, 0 to 1) and latency added to each of its calls (a slow
    /// agent; zero removes it). An I/O agent (and every agent with a latency in a simulation)
    /// waits the added latency on the engine's timer; any other waits it on the calling worker.
    /// `None` keeps a setting. Refused for an agent that is not simulated. Audited.
    pub fn set_sim_agent(
        &self,
        agent: crate::AgentId,
        error_rate: Option<f64>,
        extra_latency: Option<Duration>,
    ) -> Result<(), Error> {
        let (_, path) = self.live_agent(agent)?;
        if let Some(p) = error_rate
            && !(0.0..=1.0).contains(&p)
        {
            return Err(Error::Config(format!("agent {path}: error_rate must be in [0, 1], got {p}")));
        }
        if let Some(d) = extra_latency
            && d > crate::MAX_DURATION
        {
            return Err(Error::Config(format!("agent {path}: the added latency must be at most 30 days, got {d:?}")));
        }
        let control = {
            let sims = self.sh.sims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sims.get(usize::from(agent.0)).cloned().flatten()
        };
        let Some(control) = control else {
            return Err(Error::Config(format!("agent {path} is not a simulated agent")));
        };
        if self.simulated && !control.waits_on_timer && extra_latency.is_some_and(|d| !d.is_zero()) {
            return Err(Error::Config(format!(
                "agent {path}: added latency in a simulation needs an agent with a latency of its own \
                 (it then waits on the simulation's timer; this one would wait in real time)"
            )));
        }
        let mut audit = self.sh.audit();
        let words = |(p, d): (f64, Duration)| format!("error_rate {p}, added latency {d:?}");
        let before = control.get();
        control.set(error_rate, extra_latency);
        audit.record("sim_agent", format!("agent {path}"), words(before), words(control.get()));
        Ok(())
    }

    /// Marks one agent down (every call to it fails, as `FailureKind::Down`: an outage of one
    /// dependency, for drills and simulations) or up again. Its breaker and its domain react as
    /// to any failing agent. Returns false if there is no such agent (or it was removed).
    /// Audited.
    pub fn set_agent_down(&self, agent: crate::AgentId, down: bool) -> bool {
        // Under the reconfiguration lock: a removal and an add cannot hand the agent's bit in
        // its domain to another agent meanwhile.
        let _w = self.writer();
        let topo = self.sh.topo.load();
        let Some(def) = topo.agents.get(usize::from(agent.0)).filter(|a| !a.removed) else { return false };
        let d = usize::from(def.domain.0);
        let bit = 1u64 << def.local;
        let mut audit = self.sh.audit();
        let before = if down {
            self.sh.agents_down[d].fetch_or(bit, Ordering::Relaxed)
        } else {
            self.sh.agents_down[d].fetch_and(!bit, Ordering::Relaxed)
        } & bit
            != 0;
        self.sh.refresh_down(d);
        let name = format!("agent {}", self.sh.agent_path(usize::from(agent.0)));
        audit.record("agent_down", name, before.to_string(), down.to_string());
        true
    }

    /// The reconfiguration lock (one change at a time). Taking it again on a thread that holds
    /// it (an event listener that reconfigures from inside a reconfiguration) panics rather
    /// than deadlocks.
    fn writer(&self) -> crate::shared::Held<std::sync::MutexGuard<'_, ()>> {
        crate::shared::Held::take(crate::shared::WRITER_LOCK, || lock(&self.policy_writer))
    }

    /// Calls `listener` with every breaker transition and every audit record from now on
    /// (`None`: no more calls), beside `tracing` and `drain_events`. A breaker's transition
    /// is reported on the thread that caused it (often a worker: keep the listener short and
    /// never block in it); an audit record on the thread of the operator action, with the audit
    /// log unlocked (and, but for `set_breaker_config`'s records of each breaker's mode, the
    /// reconfiguration lock too). A listener that panics is logged and the engine runs on.
    /// It may read the engine (stats, health, the audit log) and act on the event, with one
    /// exception: `set_breaker_config` holds the reconfiguration lock while it sets each
    /// breaker's mode, so a reconfiguration (breaker settings, agents, weights, rotation, a
    /// reload) from inside a breaker event it raised would deadlock; it panics instead (caught
    /// and logged). Recorded in the audit trail.
    pub fn set_event_listener(&self, listener: Option<crate::EventListener>) {
        let on = listener.is_some();
        let before = {
            let mut audit = self.sh.audit();
            audit.listening = on;
            let before = self.sh.listener.load().is_some();
            self.sh.listener.store(listener);
            self.sh.listening.store(on, Ordering::Release);
            before
        };
        let word = |b: bool| if b { "set" } else { "none" };
        self.sh.audit().record("event_listener", "engine".into(), word(before).into(), word(on).into());
    }

    /// Changes the routing of agent `agent`'s domain under the reconfiguration lock (the agent
    /// checked under it, so that a removal cannot slip in between): `f` edits a copy of the
    /// current snapshot, which replaces it if `f` succeeds. Returns the agent's path and what
    /// `f` returned.
    fn change_routing<R>(
        &self,
        agent: crate::AgentId,
        f: impl FnOnce(&mut Policy) -> Result<R, Error>,
    ) -> Result<(String, R), Error> {
        let _w = self.writer();
        let (d, name) = self.live_agent(agent)?;
        let mut next = Policy::clone(&self.sh.policy.load());
        let r = f(&mut next)?;
        next.route(usize::from(d.0));
        self.sh.policy.store(next);
        Ok((name, r))
    }

    /// The running agent `agent` (not removed), or an error naming it.
    fn live_agent(&self, agent: crate::AgentId) -> Result<(crate::DomainId, String), Error> {
        let topo = self.sh.topo.load();
        match topo.agents.get(usize::from(agent.0)) {
            Some(def) if !def.removed => Ok((def.domain, self.sh.agent_path(usize::from(agent.0)))),
            Some(_) => Err(Error::Config(format!("agent {} was removed", self.sh.agent_path(usize::from(agent.0))))),
            None => Err(Error::Config(format!("agent id {} does not exist", agent.0))),
        }
    }

    /// Takes an agent out of rotation (its domain routes around it) or puts it back. Workers see
    /// the change from their next turn. Returns false if there is no such agent.
    pub fn set_agent_in_rotation(&self, agent: crate::AgentId, in_rotation: bool) -> bool {
        let Ok((name, before)) = self
            .change_routing(agent, |p| Ok(std::mem::replace(&mut p.in_rotation[usize::from(agent.0)], in_rotation)))
        else {
            return false;
        };
        let word = |b: bool| if b { "in" } else { "out" };
        self.sh.audit().record(
            "agent_rotation",
            format!("agent {name}"),
            word(before).into(),
            word(in_rotation).into(),
        );
        true
    }

    /// Changes an agent's routing weight (1 to [`crate::MAX_WEIGHT`]; see
    /// [`AgentSpec::weight`](crate::AgentSpec::weight)) while tasks run; workers route by it
    /// from their next turn. Recorded in the audit trail.
    pub fn set_agent_weight(&self, agent: crate::AgentId, weight: u32) -> Result<(), Error> {
        let (name, before) = self.change_routing(agent, |p| {
            if !(1..=crate::MAX_WEIGHT).contains(&weight) {
                return Err(Error::Config(format!(
                    "agent {}: weight must be 1 to {}, got {weight}",
                    self.sh.agent_path(usize::from(agent.0)),
                    crate::MAX_WEIGHT
                )));
            }
            Ok(std::mem::replace(&mut p.weights[usize::from(agent.0)], weight))
        })?;
        self.sh.audit().record("agent_weight", format!("agent {name}"), before.to_string(), weight.to_string());
        Ok(())
    }

    /// An agent's routing weight now.
    pub fn agent_weight(&self, agent: crate::AgentId) -> Option<u32> {
        self.live_agent(agent).ok().map(|_| self.sh.policy.load().weights[usize::from(agent.0)])
    }

    /// Checks that agent `name` of `spec` can be added to domain `domain` of a running engine
    /// whose topology is `topo`; returns its bit in the domain.
    fn vet_new_agent(
        &self,
        topo: &Topology,
        domain: crate::DomainId,
        name: &str,
        spec: &crate::AgentSpec,
    ) -> Result<u8, Error> {
        let Some(dom) = topo.domains.get(usize::from(domain.0)) else {
            return Err(Error::Config(format!("domain id {} does not exist", domain.0)));
        };
        let path = format!("{}/{name}", dom.name);
        crate::topology::check_name("an agent", name)?;
        if dom.agents.iter().any(|a| topo.agents[usize::from(a.0)].name == name) {
            return Err(Error::Config(format!("domain {} already has an agent named {name:?}", dom.name)));
        }
        spec.validate().map_err(|m| Error::Config(format!("agent {path}: {m}")))?;
        let refuse = |why: &str| Err(Error::Config(format!("agent {path}: {why}")));
        if dom.removed {
            return refuse("its domain was removed");
        }
        match &spec.kind {
            AgentKind::Unbound => return refuse("it has no handler"),
            AgentKind::Sim(s) => {
                s.validate().map_err(|m| Error::Config(format!("agent {path}: {m}")))?;
                if (s.io || self.simulated && s.latency != crate::Latency::None) && self.sh.timer.is_none() {
                    return refuse(
                        "a simulated I/O agent needs the engine's timer, which starts only with an engine that \
                         has one: start the engine with it",
                    );
                }
                if self.simulated && matches!(s.fault, crate::SimFault::Hang { .. }) {
                    return refuse("a hanging simulated agent blocks a thread and cannot be simulated");
                }
            }
            _ => {}
        }
        if spec.isolated {
            return refuse(
                "an isolated agent runs on threads started with the engine; add it to the topology and restart",
            );
        }
        // The domain's free bit (agents removed free theirs).
        let used = dom.agents.iter().fold(0u64, |m, a| m | 1u64 << topo.agents[usize::from(a.0)].local);
        if used == u64::MAX {
            return refuse(&format!(
                "the domain has {} agents, the most a domain may have",
                crate::MAX_AGENTS_PER_DOMAIN
            ));
        }
        Ok((!used).trailing_zeros() as u8)
    }

    /// Adds an agent to domain `domain` of the running engine and returns its id; workers route
    /// to it from their next turn, in rotation with its weight, with a fresh breaker at the
    /// agent level's settings now and its own concurrency limit. It takes one of the spare ids
    /// the engine started with ([`EngineConfig::spare_agents`]; ids are never reused). An
    /// isolated agent (threads of its own) and a simulated agent with latency or I/O in an
    /// engine started without one cannot be added: they need threads started with the engine.
    /// Refused, with the reason, for an unknown domain, a name taken in the domain, a full
    /// domain or no spare id left. Recorded in the audit trail.
    pub fn add_agent(
        &self,
        domain: crate::DomainId,
        name: impl Into<String>,
        spec: crate::AgentSpec,
    ) -> Result<crate::AgentId, Error> {
        let name = name.into();
        let d = usize::from(domain.0);
        let _w = self.writer();
        let mut topo = Topology::clone(&self.sh.topo.load());
        let local = self.vet_new_agent(&topo, domain, &name, &spec)?;
        let path = format!("{}/{name}", topo.domains[d].name);
        let refuse = |why: &str| Err(Error::Config(format!("agent {path}: {why}")));
        let a = topo.agents.len();
        if a >= self.sh.agents.len() {
            return refuse(&format!(
                "no spare agent id left (the engine started with {} agents and spare_agents = {})",
                self.sh.agents.len() - self.sh.cfg.spare_agents,
                self.sh.cfg.spare_agents
            ));
        }
        let mut spec = spec;
        if self.simulated
            && let AgentKind::Sim(s) = &mut spec.kind
            && s.latency != crate::Latency::None
        {
            s.io = true; // latency is waited in virtual time, as for the agents it started with
        }
        let id = crate::AgentId(a as u16);
        let rt = &self.sh.agents[a];
        // Before the snapshot publishes the id: its bit (an agent of this domain that was
        // removed may have had it: its down flag goes with it) and its limit.
        self.sh.agents_down[d].fetch_and(!(1u64 << local), Ordering::Relaxed);
        {
            let _audit = self.sh.audit();
            self.sh.refresh_down(d);
        }
        rt.bit.store(1u64 << local, Ordering::Relaxed);
        rt.bulkhead.init(spec.max_concurrency);
        let (handler, control) = make_agent(&spec.kind, &self.sh.timer);
        {
            let mut sims = self.sh.sims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sims.resize(a + 1, None);
            sims[a] = control;
        }
        let weight = spec.weight;
        topo.domains[d].agents.push(id);
        topo.agents.push(crate::topology::AgentDef { name, domain, local, spec, removed: false });
        self.refresh_max_attempts(&topo, d);
        self.sh.topo.store(topo);
        let mut next = Policy::clone(&self.sh.policy.load());
        next.members[d].push(id);
        next.in_rotation[a] = true;
        next.weights[a] = weight;
        next.handlers[a] = Some(handler);
        next.route(d);
        self.sh.policy.store(next);
        drop(_w);
        self.sh.audit().record("agent_added", format!("agent {path}"), "-".into(), format!("weight {weight}"));
        Ok(id)
    }

    /// A domain without a `max_attempts` of its own attempts each of its agents once: when
    /// agents come or go, so does its limit (at least 1).
    fn refresh_max_attempts(&self, topo: &Topology, d: usize) {
        if topo.domains[d].max_attempts.is_none() {
            let n = topo.domains[d].agents.len().max(1) as u32;
            self.sh.max_attempts[d].store(n, Ordering::Relaxed);
        }
    }

    /// Adds a domain to the running engine and returns its id: tasks may name it as soon as
    /// this returns; add its agents with [`add_agent`](Self::add_agent) first (until then its
    /// sub-tasks fail as `NoAgent`). It takes one of the spare domain ids the engine started
    /// with ([`EngineConfig::spare_domains`]; ids are never reused), with a fresh breaker at the
    /// domain level's settings now, no injected faults, one attempt per agent, and no hedging
    /// or retry budget (those are fixed at the start). Refused, with the reason, for a name in
    /// use or no spare id left. Recorded in the audit trail.
    pub fn add_domain(&self, name: impl Into<String>) -> Result<crate::DomainId, Error> {
        self.add_domain_with(&name.into(), 0.0, None)
    }

    /// [`add_domain`](Self::add_domain) with an injected fault rate and a limit on attempts
    /// (None: one per agent), as a reloaded file may give them.
    fn add_domain_with(
        &self,
        name: &str,
        fault_rate: f64,
        max_attempts: Option<u32>,
    ) -> Result<crate::DomainId, Error> {
        let name = name.to_owned();
        crate::topology::check_name("a domain", &name)?;
        if !(0.0..=1.0).contains(&fault_rate) {
            return Err(Error::Config(format!("domain {name}: fault_rate must be in [0, 1], got {fault_rate}")));
        }
        if let Some(n) = max_attempts
            && !(1..=255).contains(&n)
        {
            return Err(Error::Config(format!("domain {name}: max_attempts must be 1 to 255, got {n}")));
        }
        let _w = self.writer();
        let mut topo = Topology::clone(&self.sh.topo.load());
        if topo.domain_id(&name).is_some() {
            return Err(Error::Config(format!("there is already a domain named {name:?}")));
        }
        let d = topo.domains.len();
        if d >= self.sh.domain_breakers.len() {
            return Err(Error::Config(format!(
                "domain {name}: no spare domain id left (the engine started with {} domains and spare_domains = {})",
                self.sh.domain_breakers.len() - self.sh.cfg.spare_domains,
                self.sh.cfg.spare_domains
            )));
        }
        let mut def = topo.domains[0].clone();
        (def.name, def.removed, def.agents) = (name.clone(), false, Vec::new());
        (def.fault_rate, def.max_attempts, def.hedge, def.retry_budget) = (fault_rate, max_attempts, None, None);
        topo.domains.push(def);
        self.sh.domain_fault_threshold[d].store(sim::threshold(fault_rate), Ordering::Relaxed);
        self.sh.max_attempts[d].store(max_attempts.unwrap_or(1), Ordering::Relaxed);
        self.sh.topo.store(topo);
        // Its routing (empty) is in every snapshot already; tasks may name it from now on.
        self.sh.live_domains.fetch_or(1u64 << d, Ordering::Release);
        drop(_w);
        self.sh.audit().record("domain_added", format!("domain {name}"), "-".into(), "in the engine".into());
        Ok(crate::DomainId(d as u16))
    }

    /// Removes a domain from the running engine: from this call on, a task that names it is
    /// refused at submission (`UnknownDomain`); the sub-tasks already admitted run to their
    /// outcome on its agents, so no task is lost or failed by the removal. Its id is not reused
    /// (its name may be added again as a new domain); its counters stay in [`Stats`] (marked
    /// removed), and its agents, which serve those last sub-tasks, are released when the engine
    /// is dropped. Recorded in the audit trail.
    pub fn remove_domain(&self, domain: crate::DomainId) -> Result<(), Error> {
        let d = usize::from(domain.0);
        let _w = self.writer();
        let mut topo = Topology::clone(&self.sh.topo.load());
        let name = match topo.domains.get(d) {
            Some(def) if def.removed => return Err(Error::Config(format!("domain {} was removed", def.name))),
            Some(def) => def.name.clone(),
            None => return Err(Error::Config(format!("domain id {d} does not exist"))),
        };
        self.sh.live_domains.fetch_and(!(1u64 << d), Ordering::Release);
        topo.domains[d].removed = true;
        self.sh.topo.store(topo);
        drop(_w);
        self.sh.audit().record("domain_removed", format!("domain {name}"), "in the engine".into(), "-".into());
        Ok(())
    }

    /// Removes an agent from the running engine: workers stop routing to it from their next
    /// turn; its attempts in flight finish (or are abandoned at their timeout) and count as
    /// usual, sub-tasks that wait for it choose again, and no task is lost. Its id is not
    /// reused, its counters stay in [`Stats`] (marked removed), and the handler of an agent on
    /// the workers is released once the workers' snapshots and its attempts in flight no
    /// longer hold it (an isolated agent's threads idle until shutdown). Removing the last
    /// agent of a domain is allowed: its sub-tasks then fail as `NoAgent`. Recorded in the
    /// audit trail.
    pub fn remove_agent(&self, agent: crate::AgentId) -> Result<(), Error> {
        let _w = self.writer();
        let (d, path) = self.live_agent(agent)?;
        let (a, d) = (usize::from(agent.0), usize::from(d.0));
        let mut next = Policy::clone(&self.sh.policy.load());
        next.members[d].retain(|&x| x != agent);
        next.handlers[a] = None;
        next.route(d);
        self.sh.policy.store(next);
        let mut topo = Topology::clone(&self.sh.topo.load());
        topo.domains[d].agents.retain(|&x| x != agent);
        topo.agents[a].removed = true;
        // The topology keeps the name, not the handler: it is released with the last snapshot
        // and attempt that holds it.
        topo.agents[a].spec.kind = AgentKind::Unbound;
        self.refresh_max_attempts(&topo, d);
        self.sh.topo.store(topo);
        drop(_w);
        self.sh.audit().record("agent_removed", format!("agent {path}"), "in the engine".into(), "-".into());
        Ok(())
    }

    /// Changes the admission rate limit while tasks run: `per_s` tasks per second sustained (0:
    /// no limit), bursts of up to `burst` (at least 1). From the next admission on; recorded in
    /// the audit trail.
    pub fn set_rate_limit(&self, per_s: f64, burst: f64) -> Result<(), Error> {
        if !(per_s.is_finite() && per_s >= 0.0) {
            return Err(Error::Config(format!("rate limit: per_s must be a number >= 0, got {per_s}")));
        }
        if per_s > 0.0 && !(burst.is_finite() && burst >= 1.0) {
            return Err(Error::Config(format!("rate limit: burst must be >= 1, got {burst}")));
        }
        let mut a = self.admission();
        (a.rate_limit_per_s, a.rate_limit_burst) = (per_s, burst);
        self.set_admission(&a)
    }

    /// The admission settings now: the throttle, its queue, the essential priority, the
    /// per-priority slot reserve and the rate limit, as the engine started with them or as
    /// [`set_admission`](Self::set_admission) last set them.
    pub fn admission(&self) -> crate::config::AdmissionConfig {
        lock(&self.admission_setting).clone()
    }

    /// Changes the admission settings while tasks run, from the next admission on: the
    /// concurrency throttle (`max_concurrent`, 0 for none; tasks already past it keep their
    /// place, and tasks waiting for it go on when it has room, at once when it is turned off),
    /// its queue per worker (tasks already queued stay), the essential priority of degraded
    /// mode, the slot reserve per priority, and the rate limit. Checked whole first (an error
    /// names the setting and changes nothing); each changed setting is an audit record.
    pub fn set_admission(&self, want: &crate::config::AdmissionConfig) -> Result<(), Error> {
        let check = EngineConfig { admission: want.clone(), ..self.sh.cfg.clone() };
        check.validate().map_err(Error::Config)?;
        let mut audit = self.sh.audit();
        let mut cur = lock(&self.admission_setting);
        let before = std::mem::replace(&mut *cur, want.clone());
        self.sh.admission.set(want, self.sh.cfg.max_in_flight);
        self.sh.rate.set(want.rate_limit_per_s, want.rate_limit_burst);
        let rate = |a: &crate::config::AdmissionConfig| {
            if a.rate_limit_per_s > 0.0 {
                format!("{}/s, burst {}", a.rate_limit_per_s, a.rate_limit_burst)
            } else {
                "none".to_owned()
            }
        };
        let changes = [
            ("rate_limit", rate(&before), rate(want)),
            ("max_concurrent", before.max_concurrent.to_string(), want.max_concurrent.to_string()),
            ("queue_capacity", before.queue_capacity.to_string(), want.queue_capacity.to_string()),
            ("essential_priority", before.essential_priority.to_string(), want.essential_priority.to_string()),
            ("priority_reserve", format!("{:?}", before.priority_reserve), format!("{:?}", want.priority_reserve)),
        ];
        for (what, from, to) in changes {
            if from != to {
                audit.record(what, "admission".into(), from, to);
            }
        }
        Ok(())
    }

    /// Changes an agent's limit on attempts in flight while tasks run (both the old and the new
    /// limit at least 1: an agent started without a limit cannot get one, nor lose it). Attempts
    /// over a lowered limit finish; new ones wait for room. Recorded in the audit trail.
    pub fn set_agent_max_concurrency(&self, agent: crate::AgentId, limit: u32) -> Result<(), Error> {
        let a = usize::from(agent.0);
        self.live_agent(agent)?;
        let rt = &self.sh.agents[a];
        let mut audit = self.sh.audit();
        let before = rt.bulkhead.limit();
        rt.bulkhead.set_limit(limit).map_err(|m| Error::Config(format!("agent {}: {m}", self.sh.agent_path(a))))?;
        audit.record(
            "max_concurrency",
            format!("agent {}", self.sh.agent_path(a)),
            before.to_string(),
            limit.to_string(),
        );
        Ok(())
    }

    /// Changes the breaker settings of one level while tasks run: every breaker of that level
    /// takes `cfg` (thresholds, window, open times, probes, and the mode, as
    /// [`set_breaker_mode`](Self::set_breaker_mode) would set it), and the level's time budget
    /// becomes `cfg.timeout`. Breakers keep their state: an open one stays open until its
    /// deadline, a run of failures counts toward the new threshold; a changed window starts
    /// over. Attempts and sub-tasks already running keep the budget they started with. Recorded
    /// in the audit trail.
    pub fn set_breaker_config(&self, level: Level, cfg: &BreakerConfig) -> Result<(), Error> {
        cfg.validate().map_err(|m| Error::Config(format!("breakers.{}: {m}", level_key(level))))?;
        let _w = self.writer(); // one reconfiguration at a time
        // Spare ids' breakers take the settings too, without events of their own.
        let spare = |all: &[Breaker], used: usize| {
            for b in &all[used..] {
                b.set_config(cfg);
                b.set_mode(cfg.mode);
            }
            used
        };
        let topo = self.sh.topo.load();
        let count = match level {
            Level::Meta => 1,
            Level::Domain => spare(&self.sh.domain_breakers, topo.domains.len()),
            Level::Agent => spare(&self.sh.agent_breakers, topo.agents.len()),
        };
        let before = self.sh.breaker(level, 0).map(|b| b.config());
        for i in 0..count {
            let b = self.sh.breaker(level, i).expect("index below the level's count");
            b.set_config(cfg);
            // Mode changes are events and audit records of their own.
            if b.mode() != cfg.mode {
                self.sh.set_mode(level, i, cfg.mode);
            }
        }
        self.sh.timeouts_ns[level as usize].store(cfg.timeout.as_nanos() as u64, Ordering::Relaxed);
        drop(_w);
        self.sh.audit().record(
            "breaker_config",
            format!("{} breakers", level_key(level)),
            before.map(|c| settings_words(&c)).unwrap_or_default(),
            settings_words(cfg),
        );
        Ok(())
    }

    /// The breaker settings of one level now (those of its first breaker: a level's breakers
    /// share them).
    pub fn breaker_config(&self, level: Level) -> Option<BreakerConfig> {
        self.sh.breaker(level, 0).map(|b| b.config())
    }

    /// Applies the settings of a TOML file (the format of `examples/topology.toml`) that can
    /// change while tasks run: each level's breakers and time budget, the admission settings,
    /// each agent's concurrency limit and weight, and the domains and agents themselves (found
    /// by name): a domain or an agent the file adds (agents with a `sim` table) is added, a
    /// running one it lacks is removed. Anything else that differs from the running engine
    /// (worker count, slots, spare ids, an agent's threads, a simulated agent's settings, a
    /// running domain's fault rate, attempts, hedging and retry budget) is listed in
    /// [`Reload::needs_restart`] and left as it is. Checked in full before
    /// anything changes: an error changes nothing. What changed is in [`Reload::applied`] and in the audit trail.
    /// `metafed serve --config FILE` calls it on SIGHUP.
    pub fn reload_toml(&self, text: &str) -> Result<Reload, Error> {
        let new = crate::TopologyBuilder::from_toml(text)?;
        let cfg = EngineConfig::from_toml(text)?;
        let topo = self.sh.topo.load();
        // Domains and agents are found by name: the file's new ones are added, the running ones
        // it lacks removed, and those in both keep their ids.
        let mut scratch = Topology::clone(&topo); // the topology as it will be, to vet additions
        let mut remove_domains = Vec::new();
        for (d, dom) in topo.domains.iter().enumerate().filter(|(_, dom)| !dom.removed) {
            if new.domain_id(&dom.name).is_none() {
                remove_domains.push(crate::DomainId(d as u16));
            }
        }
        let mut add_domains = Vec::new(); // (name, fault rate, max attempts)
        for name in new.domain_names() {
            if topo.domain_id(&name).is_some() {
                continue;
            }
            let id = new.domain_id(&name).expect("a name the builder has");
            let (fault_rate, max_attempts, hedge, budget) = new.domain_settings(id);
            let extras = hedge.is_some() || budget.is_some();
            if !(0.0..=1.0).contains(&fault_rate) {
                return Err(Error::Config(format!("domain {name}: fault_rate must be in [0, 1], got {fault_rate}")));
            }
            if let Some(n) = max_attempts
                && !(1..=255).contains(&n)
            {
                return Err(Error::Config(format!("domain {name}: max_attempts must be 1 to 255, got {n}")));
            }
            if extras {
                return Err(Error::Config(format!(
                    "domain {name} is new in the file with hedging or a retry budget: a domain added while \
                     running has neither (a restart gives it them)"
                )));
            }
            let mut def = scratch.domains[0].clone();
            (def.name, def.removed, def.agents) = (name.clone(), false, Vec::new());
            (def.fault_rate, def.max_attempts, def.hedge, def.retry_budget) = (fault_rate, max_attempts, None, None);
            scratch.domains.push(def);
            add_domains.push((name, fault_rate, max_attempts));
        }
        if add_domains.len() > self.sh.domain_breakers.len() - topo.domains.len() {
            return Err(Error::Config(format!(
                "the file adds {} domains and the engine has {} spare domain ids (engine.spare_domains is \
                 read at the start)",
                add_domains.len(),
                self.sh.domain_breakers.len() - topo.domains.len()
            )));
        }
        let mut agents = Vec::new(); // (running id, its spec in the file)
        let mut to_add = Vec::new(); // (domain name, agent name, spec)
        let mut to_remove = Vec::new();
        for (d, dom) in scratch.domains.clone().iter().enumerate().filter(|(_, dom)| !dom.removed) {
            let Some(file_id) = new.domain_id(&dom.name) else { continue };
            let file = new.agents_in(file_id);
            for &a in &dom.agents {
                let name = &topo.agents[usize::from(a.0)].name;
                match file.iter().find(|(n, _)| n == name) {
                    Some((_, spec)) => agents.push((a, spec.clone())),
                    None => to_remove.push(a),
                }
            }
            for (name, spec) in file {
                if !dom.agents.iter().any(|a| topo.agents[usize::from(a.0)].name == name) {
                    let path = format!("{}/{name}", dom.name);
                    if matches!(spec.kind, AgentKind::Unbound) {
                        return Err(Error::Config(format!(
                            "agent {path} is new in the file and has no `sim` table: an agent with a handler \
                             is added with Engine::add_agent"
                        )));
                    }
                    let domain = crate::DomainId(d as u16);
                    let local = self.vet_new_agent(&scratch, domain, &name, &spec)?;
                    // In the scratch copy, so that two new agents of a domain are vetted together.
                    let id = crate::AgentId(scratch.agents.len() as u16);
                    scratch.domains[d].agents.push(id);
                    let def = crate::topology::AgentDef {
                        name: name.clone(),
                        domain,
                        local,
                        spec: spec.clone(),
                        removed: false,
                    };
                    scratch.agents.push(def);
                    to_add.push((dom.name.clone(), name, spec));
                }
            }
        }
        let spare = self.sh.agents.len() - topo.agents.len();
        if to_add.len() > spare {
            return Err(Error::Config(format!(
                "the file adds {} agents and the engine has {spare} spare agent ids (engine.spare_agents \
                 is read at the start)",
                to_add.len()
            )));
        }
        let mut out = Reload::default();
        let levels = new.levels();
        let mut breakers = Vec::new();
        for (level, want) in
            [(Level::Meta, &levels.meta), (Level::Domain, &levels.domain), (Level::Agent, &levels.agent)]
        {
            want.validate().map_err(|m| Error::Config(format!("breakers.{}: {m}", level_key(level))))?;
            if self.breaker_config(level).as_ref() != Some(want) {
                breakers.push((level, want.clone()));
            }
        }
        let mut limits = Vec::new();
        let policy = self.sh.policy.load();
        let weights: Vec<(crate::AgentId, u32)> = agents
            .iter()
            .filter(|(a, spec)| policy.weights[usize::from(a.0)] != spec.weight)
            .map(|(a, spec)| (*a, spec.weight))
            .collect();
        for (a, spec) in &agents {
            let rt = &self.sh.agents[usize::from(a.0)];
            let (now, want) = (rt.bulkhead.limit(), spec.max_concurrency);
            let path = self.sh.agent_path(usize::from(a.0));
            if now != want {
                if now == 0 || want == 0 {
                    out.needs_restart.push(format!("agent {path}: max_concurrency {now} -> {want}"));
                } else {
                    limits.push((*a, want));
                }
            }
            let running = &topo.agents[usize::from(a.0)].spec;
            if running.isolated != spec.isolated || (spec.isolated && running.threads != spec.threads) {
                out.needs_restart.push(format!("agent {path}: isolated / threads"));
            }
            if let (AgentKind::Sim(was), AgentKind::Sim(now)) = (&running.kind, &spec.kind)
                && was != now
            {
                out.needs_restart.push(format!("agent {path}: sim"));
            }
        }
        // What a domain that runs on keeps from the start: its faults, attempts, hedging, budget.
        for dom in topo.domains.iter().filter(|d| !d.removed) {
            if let Some(id) = new.domain_id(&dom.name) {
                let file = new.domain_settings(id);
                if file != (dom.fault_rate, dom.max_attempts, dom.hedge, dom.retry_budget) {
                    out.needs_restart
                        .push(format!("domain {}: fault_rate / max_attempts / hedge / retry_budget", dom.name));
                }
            }
        }
        let running = &self.sh.cfg;
        let admission_changed = self.admission() != cfg.admission;
        let mut engine_diff = Vec::new();
        if (cfg.workers != 0 && cfg.workers != running.workers) || cfg.max_in_flight != running.max_in_flight {
            engine_diff.push("engine.workers / max_in_flight");
        }
        if (cfg.spare_agents, cfg.spare_domains) != (running.spare_agents, running.spare_domains) {
            engine_diff.push("engine.spare_agents / spare_domains");
        }
        out.needs_restart.extend(engine_diff.into_iter().map(String::from));
        // Everything checked: apply.
        for (level, want) in breakers {
            self.set_breaker_config(level, &want)?;
            out.applied.push(format!("breakers.{}", level_key(level)));
        }
        for (a, want) in limits {
            self.set_agent_max_concurrency(a, want)?;
            out.applied.push(format!("agent {}: max_concurrency {want}", self.sh.agent_path(usize::from(a.0))));
        }
        if admission_changed {
            self.set_admission(&cfg.admission)?;
            out.applied.push("engine.admission".into());
        }
        for (a, weight) in weights {
            self.set_agent_weight(a, weight)?;
            out.applied.push(format!("agent {}: weight {weight}", self.sh.agent_path(usize::from(a.0))));
        }
        for d in remove_domains {
            let name = self.sh.topo.load().domains[usize::from(d.0)].name.clone();
            self.remove_domain(d)?;
            out.applied.push(format!("domain {name} removed"));
        }
        for a in to_remove {
            let path = self.sh.agent_path(usize::from(a.0));
            self.remove_agent(a)?;
            out.applied.push(format!("agent {path} removed"));
        }
        for (name, fault_rate, max_attempts) in add_domains {
            self.add_domain_with(&name, fault_rate, max_attempts)?;
            out.applied.push(format!("domain {name} added"));
        }
        for (domain, name, spec) in to_add {
            let d = self.sh.topo.load().domain_id(&domain).expect("added or running");
            let a = self.add_agent(d, name, spec)?;
            out.applied.push(format!("agent {} added", self.sh.agent_path(usize::from(a.0))));
        }
        Ok(out)
    }

    /// The operator actions recorded so far (the newest [`crate::AUDIT_CAPACITY`]), oldest
    /// first. See [`crate::act_as`] for how an action names its actor.
    pub fn audit_log(&self) -> Vec<crate::AuditRecord> {
        self.sh.audit().since(0)
    }

    /// The records numbered above `seq` (to follow the trail without reading it all again).
    pub fn audit_since(&self, seq: u64) -> Vec<crate::AuditRecord> {
        self.sh.audit().since(seq)
    }

    /// Counters per level, breaker states, latency, and the model's prediction.
    pub fn stats(&self) -> Stats {
        crate::stats::collect(&self.sh)
    }

    /// A summary for a health check.
    pub fn health(&self) -> Health {
        crate::stats::health(&self.sh)
    }

    /// Stops accepting tasks, lets the tasks in flight finish for up to `drain`, then completes
    /// the rest as rejected (`ShuttingDown`) and stops the threads. Idempotent: later calls
    /// return the first report. Completions stay available to `poll` and `wait` afterwards.
    ///
    /// Refused with [`WouldDeadlock`] on one of this engine's own threads (in a handler or a
    /// completion callback): it would wait for the very thread that calls it. Dropping the
    /// last handle of an engine there is allowed: the shutdown then runs on a thread of its own.
    pub fn shutdown(&self, drain: Duration) -> Result<ShutdownReport, WouldDeadlock> {
        if on_engine_thread(&self.sh) {
            return Err(WouldDeadlock);
        }
        Ok(stop(&self.sh, &mut lock(&self.threads), drain))
    }
}

/// The shutdown itself (see [`Engine::shutdown`]).
fn stop(sh: &Shared, threads: &mut Threads, drain: Duration) -> ShutdownReport {
    if let Some(r) = threads.report {
        return r;
    }
    let started = Instant::now();
    let rejected_before = shutdown_rejections(sh);
    sh.lifecycle.store(DRAINING, Ordering::SeqCst);
    wake_all(sh);
    let deadline = started + drain;
    let cap = sh.slab.capacity() as u32;
    let drained = loop {
        if (0..cap).all(|i| !sh.slab.is_unfinished(i)) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    sh.lifecycle.store(STOPPING, Ordering::SeqCst);
    wake_all(sh);
    // Workers complete what they hold and return; a worker stuck in a handler cannot.
    let grace = Instant::now() + Duration::from_millis(500);
    let all_exited = || {
        sh.workers.iter().all(|w| w.exited.load(Ordering::Acquire))
            && sh.pools.iter().all(|p| p.exited.iter().all(|e| e.load(Ordering::Acquire)))
    };
    while !all_exited() && Instant::now() < grace {
        std::thread::sleep(Duration::from_micros(100));
    }
    let mut detached = 0;
    for (i, h) in std::mem::take(&mut threads.workers).into_iter().enumerate() {
        if sh.workers[i].exited.load(Ordering::Acquire) {
            let _ = h.join();
        } else {
            detached += 1; // dropping the handle detaches the thread
            tracing::warn!(worker = i, "a worker did not stop (a handler is not returning); detached");
        }
    }
    for (p, t, h) in std::mem::take(&mut threads.isolated) {
        if sh.pools[p].exited[t].load(Ordering::Acquire) {
            let _ = h.join();
        } else {
            detached += 1;
            let agent = &sh.topo.load().agents[usize::from(sh.pools[p].agent.0)].name;
            tracing::warn!(agent = %agent, "an isolated agent's thread did not stop (its handler is not returning); detached");
        }
    }
    if let Some(timer) = &sh.timer {
        timer.stop();
        if let Some(h) = threads.timer.take() {
            let _ = h.join();
        }
    }
    // Pairs with the submitter's fence in `try_submit`: either it sees STOPPING and completes
    // its task itself, or this sweep sees the task published (loom model
    // `a_task_submitted_against_shutdown_is_completed_exactly_once`).
    fence(Ordering::SeqCst);
    // The sweep: tasks still queued, or held by a worker that did not stop.
    let mut swept = 0;
    for idx in 0..cap {
        if let Some(t) = sh.slab.claim_abandoned(idx) {
            sh.slab.finish_swept(idx, sh.clock.now());
            sh.swept.fetch_add(1, Ordering::Relaxed);
            sh.deliver(t, idx as usize);
            swept += 1;
        }
    }
    sh.lifecycle.store(STOPPED, Ordering::SeqCst);
    sh.pollers.notify_all();
    let report = ShutdownReport {
        drained,
        rejected: shutdown_rejections(sh) - rejected_before + swept,
        detached_threads: detached,
        elapsed_us: started.elapsed().as_micros() as u64,
    };
    threads.report = Some(report);
    report
}

fn wake_all(sh: &Shared) {
    for w in sh.workers.iter() {
        w.parker().wake();
    }
    for p in sh.pools.iter() {
        p.wake_all();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let drain = self.sh.cfg.drain_timeout;
        if on_engine_thread(&self.sh) {
            // A handler or callback dropped the last handle: the shutdown waits for this very
            // thread, so it runs on a thread of its own, after this call returns.
            let sh = self.sh.clone();
            let mut threads = std::mem::take(&mut *lock(&self.threads));
            let _ = std::thread::Builder::new().name("metafed-shutdown".into()).spawn(move || {
                stop(&sh, &mut threads, drain);
            });
            return;
        }
        stop(&self.sh, &mut lock(&self.threads), drain);
    }
}

fn shutdown_rejections(sh: &Shared) -> u64 {
    sh.workers.iter().map(|w| w.counters.reasons[Reason::ShuttingDown as usize].get()).sum()
}

thread_local! {
    /// The worker this thread last submitted to (a hint; shared by all engines).
    static PREFERRED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// This thread's number among the threads that have submitted (to any engine).
    static SUBMITTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// A number for the calling thread, distinct from other submitting threads' (in order of first
/// use): it spreads submitters over workers and over the slot free list's shards, so that they
/// do not all contend on the same queue.
impl Engine {
    /// This thread's submitter index (its free-list shard and first completion queue); 0 in a
    /// simulation, so that a run does not depend on which threads the process ran before.
    #[inline]
    fn submitter(&self) -> usize {
        if self.simulated { 0 } else { submitter() }
    }
}

fn submitter() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    SUBMITTER.with(|s| match s.get() {
        Some(n) => n,
        None => {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.set(Some(n));
            n
        }
    })
}

/// Waits a little longer each round: spin, then yield, then sleep up to 1 ms.
fn backoff(round: &mut u32) {
    *round = round.saturating_add(1);
    match *round {
        0..=64 => std::hint::spin_loop(),
        65..=128 => std::thread::yield_now(),
        r => std::thread::sleep(Duration::from_micros(u64::from((r - 128).min(20)) * 50)),
    }
}

/// A level's name as in the TOML file's `[breakers.LEVEL]` tables.
/// The call behind an agent's declared behaviour.
fn make_agent(kind: &AgentKind, timer: &Option<Arc<Timer>>) -> (Arc<dyn Agent>, Option<Arc<sim::SimControl>>) {
    match kind {
        AgentKind::Sim(s) => {
            let h = s.clone().into_handler(timer.clone());
            let control = h.control.clone();
            (Arc::new(h), Some(control))
        }
        AgentKind::Handler(h) => (Arc::new(Immediate(h.clone())), None),
        AgentKind::Deferred(h) => (Arc::new(Deferred(h.clone())), None),
        AgentKind::Foreign(f) => (f.0.clone(), None),
        AgentKind::Unbound => unreachable!("build() and add_agent() refuse unbound agents"),
    }
}

fn level_key(level: Level) -> &'static str {
    match level {
        Level::Meta => "meta",
        Level::Domain => "domain",
        Level::Agent => "agent",
    }
}

/// Breaker settings in a few words, for the audit trail.
fn settings_words(c: &BreakerConfig) -> String {
    format!(
        "timeout {:?}, consecutive_failures {}, failure_rate {} over {:?} (min_calls {}), open {:?}..{:?}, probes {}, mode {:?}",
        c.timeout,
        c.consecutive_failures,
        c.failure_rate,
        c.window,
        c.min_calls,
        c.open_base,
        c.open_max,
        c.half_open_probes,
        c.mode
    )
}

/// What [`Engine::reload_toml`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// The settings it changed (each also in the audit trail).
    pub applied: Vec<String>,
    /// Settings that differ from the running engine but cannot change while it runs.
    pub needs_restart: Vec<String>,
}
