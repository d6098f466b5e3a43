//! Start-up: an engine made from a topology and a configuration, its threads started (or, for a
//! simulation, its workers handed back).

use super::{Engine, Threads};
use crate::attempt::Hub;
use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::counters::WorkerCounters;
use crate::error::Error;
use crate::events::CompletionCallback;
use crate::handler::{Agent, Deferred, Immediate};
use crate::isolated::Pool;
use crate::park::WaitList;
use crate::policy::admission::RateLimiter;
use crate::policy::routing::Policy;
use crate::queue::Mpmc;
use crate::shared::RUNNING;
use crate::shared::{AgentRt, AgentRun, Shared, WorkerShared};
use crate::sim;
use crate::slab::Slab;
use crate::stages::agent::run_pool;
use crate::stages::worker::Worker;
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Mutex, Ordering, Snapshot, lock};
use crate::timer::Timer;
use crate::topology::{AgentKind, Topology};
use crossbeam_utils::CachePadded;
use std::sync::Arc;

impl Engine {
    /// Builds an engine; starts its threads unless `simulated`, in which case the workers come
    /// back to be run by a [`crate::Simulation`].
    pub(super) fn build(
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
        // worker count: each ring (ingress, completions) holds a share of the task slots (a full
        // one spills to an overflow queue of the slot count), and each hub twice a share of them (a worker that runs out of attempt
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
        let domains = (topo.domains.len() + cfg.spare_domains).min(crate::task::MAX_DOMAINS).max(topo.domains.len());
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
                    bulkhead: crate::policy::bulkhead::Bulkhead::new(0),
                    ewma: crate::policy::balance::PeakEwma::new(),
                    outlier: crate::policy::outlier::AgentOutlier::new(),
                    domain: crate::sync::AtomicU32::new(u32::from(a.domain.0)),
                }));
                continue;
            }
            let (agent, control) = make_agent(&a.spec.kind, &timer);
            sims.push(control);
            handlers.push(None);
            let run = if a.spec.isolated {
                let id = crate::task::AgentId(i as u16);
                pools.push(Pool::new(id, agent, a.spec.threads, cfg.isolated_queue));
                AgentRun::Pool(pools.len() - 1)
            } else {
                AgentRun::Local(agent)
            };
            agents.push(CachePadded::new(AgentRt {
                run,
                bit: AtomicU64::new(1u64 << a.local),
                bulkhead: {
                    let b = crate::policy::bulkhead::Bulkhead::new(a.spec.max_concurrency);
                    b.set_tracked(topo.domains[usize::from(a.domain.0)].balance != crate::policy::Balance::RoundRobin);
                    b
                },
                ewma: crate::policy::balance::PeakEwma::new(),
                outlier: crate::policy::outlier::AgentOutlier::new(),
                domain: crate::sync::AtomicU32::new(u32::from(a.domain.0)),
            }));
        }
        for _ in topo.agents.len()..capacity {
            handlers.push(None);
            agents.push(CachePadded::new(AgentRt {
                run: AgentRun::Added,
                bit: AtomicU64::new(0),
                bulkhead: crate::policy::bulkhead::Bulkhead::new(0),
                ewma: crate::policy::balance::PeakEwma::new(),
                outlier: crate::policy::outlier::AgentOutlier::new(),
                domain: crate::sync::AtomicU32::new(0),
            }));
        }
        let mut policy = Policy {
            routing: vec![Vec::new(); domains],
            members: (0..domains).map(|d| topo.domains.get(d).map_or_else(Vec::new, |d| d.agents.clone())).collect(),
            in_rotation: vec![true; capacity].into(),
            weights: (0..capacity).map(|a| topo.agents.get(a).map_or(1, |d| d.spec.weight)).collect(),
            handlers: handlers.into(),
            alternates: (0..domains)
                .map(|d| topo.domains.get(d).map_or_else(Default::default, |d| d.alternates.clone().into()))
                .collect(),
        };
        for d in 0..topo.domains.len() {
            policy.route(d);
        }
        let agents: Box<[CachePadded<AgentRt>]> = agents.into();
        let levels = topo.breakers.clone();
        let (topo_classify, topo_classifier) = (topo.classify.clone(), topo.classifier.clone());
        let (completions, mut done_tx) = crate::completions::Completions::new(n_workers, share, slots);
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
                    ingress: crate::ingress::Ingress::new(share),
                    hub: Arc::new(Hub::new(attempt_slots, w as u16, clock)),
                    counters: Arc::new(WorkerCounters::new(domains, capacity)),
                    turn_ns: CachePadded::new(AtomicU64::new(0)),
                    exited: AtomicBool::new(false),
                })
                .collect(),
            ingress_overflow: Mpmc::new(slots.max(1)),
            completions,
            pollers: WaitList::new(),
            callback,
            lifecycle: AtomicU8::new(RUNNING),
            policy: Snapshot::new(policy),
            down: (0..domains).map(|_| AtomicU64::new(0)).collect(),
            domain_down: (0..domains).map(|_| AtomicBool::new(false)).collect(),
            agents_down: (0..domains).map(|_| AtomicU64::new(0)).collect(),
            events: Mpmc::new(1024),
            events_dropped: AtomicU64::new(0),
            admission: crate::policy::admission::Admission::new(
                &crate::config::AdmissionConfig {
                    // The adaptive throttle, when there is one, starts the limit.
                    max_concurrent: cfg
                        .adaptive_throttle
                        .map_or(cfg.admission.max_concurrent, |a| a.initial_limit as usize),
                    ..cfg.admission.clone()
                },
                slots,
            ),
            throttle: AtomicU64::new(0),
            cost_held: AtomicU64::new(0),
            decider: Snapshot::new(
                crate::classify::Decider::new(&topo.classify, topo.classifier.as_ref(), |n| topo.domain_id(n))
                    .map_err(Error::topology)?,
            ),
            rate: RateLimiter::new(cfg.admission.rate_limit_per_s, cfg.admission.rate_limit_burst),
            keyed: cfg.keyed_limits.as_ref().map(|k| Box::new(crate::policy::KeyedLimiter::new(k))),
            adaptive: cfg.adaptive_throttle.map(|a| Box::new(crate::policy::adaptive::AdaptiveLimit::new(a))),
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
                        topo.max_attempts(crate::task::DomainId(d as u16))
                    } else {
                        0
                    })
                })
                .collect(),
            peak_ewma: AtomicU64::new(
                topo.domains
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.balance != crate::policy::Balance::RoundRobin)
                    .fold(0, |m, (d, _)| m | 1u64 << d),
            ),
            outlier_on: AtomicU64::new(
                topo.domains.iter().enumerate().filter(|(_, d)| d.outlier.is_some()).fold(0, |m, (d, _)| m | 1u64 << d),
            ),
            settings_epoch: AtomicU64::new(0),
            watched: AtomicU64::new(
                topo.domains
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.outlier.is_some() || d.balance != crate::policy::Balance::RoundRobin)
                    .fold(0, |m, (d, _)| m | 1u64 << d),
            ),
            shedding_on: AtomicU64::new(
                topo.domains
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.shedding.is_some())
                    .fold(0, |m, (d, _)| m | 1u64 << d),
            ),
            shedding: (0..domains)
                .map(|d| {
                    crate::policy::shedding::DomainShedding::new(
                        &topo.domains.get(d).and_then(|d| d.shedding).unwrap_or_default(),
                    )
                })
                .collect(),
            outlier: (0..domains)
                .map(|d| {
                    crate::policy::outlier::DomainOutlier::new(
                        &topo.domains.get(d).and_then(|d| d.outlier).unwrap_or_default(),
                    )
                })
                .collect(),
            balance: (0..domains)
                .map(|d| {
                    crate::policy::balance::DomainBalance::new(
                        &topo.domains.get(d).map_or(crate::policy::Balance::RoundRobin, |d| d.balance),
                    )
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
            monitor: std::sync::Mutex::new(crate::monitor::Monitor::new(domains, std::time::Instant::now())),
            hedges: (0..domains).map(|d| topo.domains.get(d).and_then(|d| d.hedge)).collect(),
            topo: Snapshot::new(topo),
            cfg,
        });

        let engine = Engine {
            sh: sh.clone(),
            threads: Mutex::new(Threads::default()),
            policy_writer: Mutex::new(()),
            admission_setting: Mutex::new(sh.cfg.admission.clone()),
            classify_setting: Mutex::new((topo_classify, topo_classifier)),
            simulated,
            #[cfg(feature = "admin")]
            admin: Mutex::new(None),
        };
        if simulated {
            let workers = done_tx.drain(..).enumerate().map(|(id, tx)| Worker::new(id, sh.clone(), tx)).collect();
            return Ok((engine, workers));
        }
        let pin = sh.cfg.pin;
        for (id, tx) in done_tx.into_iter().enumerate() {
            let core = cores.get(id % cores.len().max(1)).copied();
            let worker = Worker::new(id, sh.clone(), tx);
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
                match std::thread::Builder::new().name(name).spawn(move || run_pool(shared, p, t)) {
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
}

/// The call behind an agent's declared behaviour.
pub(super) fn make_agent(
    kind: &AgentKind,
    timer: &Option<Arc<Timer>>,
) -> (Arc<dyn Agent>, Option<Arc<sim::SimControl>>) {
    match kind {
        AgentKind::Sim(s) => {
            let h = s.clone().into_handler(timer.clone());
            let control = h.control.clone();
            (Arc::new(h), Some(control))
        }
        AgentKind::Handler(h) => (Arc::new(Immediate(h.clone())), None),
        AgentKind::Deferred(h) => (Arc::new(Deferred(h.clone())), None),
        AgentKind::Foreign(f) => (f.0.clone(), None),
        AgentKind::Queued(queue, tag) => {
            (Arc::new(crate::attempt_queue::QueueAgent { queue: queue.clone(), tag: *tag }), None)
        }
        AgentKind::Unbound => unreachable!("build() and add_agent() refuse unbound agents"),
    }
}
