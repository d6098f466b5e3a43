//! The engine's public face: start it, submit tasks, collect completions, watch it, stop it.
//!
//! One file per concern, every `impl Engine` among them: [`build`] (start-up), [`submit`],
//! [`complete`] (poll and wait), [`control`] (operator settings while tasks run), [`membership`]
//! (agents and domains added and removed), [`reload`] (a TOML file applied live), [`observe`]
//! (stats, health, events, audit; metrics and the admin endpoint with their features),
//! [`shutdown`], and [`simulation`] (an engine run in virtual time).

mod build;
mod complete;
mod control;
mod decide;
mod membership;
mod observe;
mod reload;
mod shutdown;
mod simulation;
mod submit;

pub use reload::Reload;
pub use shutdown::ShutdownReport;
pub use simulation::{OpenLoop, Simulation};

use crate::config::EngineConfig;
use crate::error::Error;
use crate::events::CompletionCallback;
use crate::shared::Shared;
use crate::sync::Mutex;
use crate::task::Completion;
use crate::topology::Topology;
use std::sync::Arc;
use std::thread::JoinHandle;

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
    /// The decision engine's settings and custom classifier now (the worker reads the compiled
    /// form in `Shared::decider`).
    classify_setting: Mutex<(crate::classify::ClassifyConfig, Option<crate::classify::Custom>)>,
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
    /// worker, where calls that would block on this engine are refused ([`WouldDeadlock`](crate::WouldDeadlock)).
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
    pub fn simulate(self) -> Result<Simulation, Error> {
        let (engine, workers) = Engine::build(self.topology, self.config, self.callback, true)?;
        Ok(Simulation::new(engine, workers))
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
}
