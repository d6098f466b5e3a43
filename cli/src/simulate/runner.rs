//! Running the engine for a section: live with the closed-loop driver, or in virtual time; the
//! topologies the sections run; progress and Ctrl-C.

use crate::progress::Progress;
use metafed::sim::SimAgent;
use metafed::stats::Stats;
use metafed::{AgentSpec, DomainId, Engine, EngineConfig, Levels, Topology};
use metafed_bench::driver::{Load, RunReport, closed_loop_until};
use serde::Serialize;

/// Why a run sequence stopped early.
pub(super) enum Halt {
    Error(String),
    Interrupted,
}

impl From<String> for Halt {
    fn from(e: String) -> Self {
        Self::Error(e)
    }
}

/// One finished run, for the partial report of an interrupted simulation.
#[derive(Serialize)]
pub(super) struct Done {
    pub(super) step: String,
    pub(super) tasks: u64,
    pub(super) ok: u64,
    pub(super) tasks_per_s: f64,
}

pub(super) struct Runner {
    pub(super) config: EngineConfig,
    pub(super) seed: u64,
    pub(super) progress: Progress,
    pub(super) done_before: u64,
    pub(super) runs: u64,
    /// The next virtual run takes the task ids of the one before (a paired control).
    pub(super) repeat_ids: bool,
    pub(super) last_first_id: u64,
    /// Every virtual run takes these task ids while set (rows of a table that differ only in
    /// a setting).
    pub(super) pin_ids: Option<u64>,
    pub(super) tasks_total: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) workers: usize,
    pub(super) finished: Vec<Done>,
}

impl Runner {
    /// Adds a finished run to the totals; a lost, duplicated or unknown completion is a bug.
    pub(super) fn account(&mut self, step: &str, tasks: u64, report: &RunReport) -> Result<(), Halt> {
        self.done_before += tasks;
        self.tasks_total += report.submitted;
        self.lost += report.lost;
        self.duplicated += report.duplicated;
        if report.lost != 0 || report.duplicated != 0 || report.unknown != 0 {
            return Err(Halt::Error(format!(
                "{step}: {} lost, {} duplicated, {} unknown completions: a bug",
                report.lost, report.duplicated, report.unknown
            )));
        }
        Ok(())
    }

    /// Runs `load` on a fresh engine; returns what the submitter saw and what the engine counted.
    pub(super) fn run(&mut self, step: &str, topology: Topology, mut load: Load) -> Result<(RunReport, Stats), Halt> {
        if crate::signals::interrupted() {
            return Err(Halt::Interrupted);
        }
        self.progress.step(step);
        load.first_id = (self.seed << 40) + (self.runs << 32);
        self.runs += 1;
        let engine = Engine::start(topology, self.config.clone()).map_err(|e| e.to_string())?;
        self.workers = engine.workers();
        let base = self.done_before;
        let progress = &mut self.progress;
        let report = closed_loop_until(&engine, &load, |done| progress.set(base + done), crate::signals::stop_flag());
        let stats = engine.stats();
        engine.shutdown(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
        self.account(step, load.tasks, &report)?;
        self.finished.push(Done {
            step: step.to_string(),
            tasks: report.submitted,
            ok: report.ok,
            tasks_per_s: report.tasks_per_s,
        });
        if report.submitted < load.tasks {
            return Err(Halt::Interrupted);
        }
        Ok((report, stats))
    }
}

impl Runner {
    /// Runs `load` in virtual time on a simulated engine, as an open loop at `rate` tasks per
    /// second, `hook(engine, t_ns)` acting before each submission; the engine's events go to
    /// `events`. Returns what the loop saw, the engine's stats, and buckets of `bucket_ns`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_virtual(
        &mut self,
        step: &str,
        topology: Topology,
        load: Load,
        rate: f64,
        bucket_ns: u64,
        hook: impl FnMut(&Engine, u64),
        events: &mut Vec<metafed::events::BreakerEvent>,
    ) -> Result<(metafed::OpenLoop, Stats), Halt> {
        self.run_virtual_steps(step, topology, load, &[(0, rate)], bucket_ns, hook, events)
    }

    /// As [`Runner::run_virtual`], with an offered load in steps ((from ns, tasks per second)).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_virtual_steps(
        &mut self,
        step: &str,
        topology: Topology,
        mut load: Load,
        steps: &[(u64, f64)],
        bucket_ns: u64,
        mut hook: impl FnMut(&Engine, u64),
        events: &mut Vec<metafed::events::BreakerEvent>,
    ) -> Result<(metafed::OpenLoop, Stats), Halt> {
        let rate = steps.iter().map(|s| s.1).fold(0.0, f64::max);
        if crate::signals::interrupted() {
            return Err(Halt::Interrupted);
        }
        self.progress.step(step);
        load.first_id = match (std::mem::take(&mut self.repeat_ids), self.pin_ids) {
            (_, Some(id)) => id,
            (true, None) => self.last_first_id,
            (false, None) => (self.seed << 40) + (self.runs << 32),
        };
        self.last_first_id = load.first_id;
        self.runs += 1;
        let mut sim = Engine::builder(topology).config(self.config.clone()).simulate().map_err(|e| e.to_string())?;
        let every = (rate as u64 / 10).max(1);
        let (base, progress) = (self.done_before, &mut self.progress);
        let mut k = 0u64;
        let run = sim.open_loop_steps(&load, steps, bucket_ns, |engine, t| {
            hook(engine, t);
            engine.drain_events(events);
            k += 1;
            if k.is_multiple_of(every) {
                progress.set(base + k);
            }
        });
        sim.engine().drain_events(events);
        let stats = sim.engine().stats();
        sim.finish();
        let report = &run.report;
        self.account(step, load.tasks, report)?;
        self.finished.push(Done { step: step.to_string(), tasks: report.submitted, ok: report.ok, tasks_per_s: rate });
        Ok((run, stats))
    }
}

/// The seed's 3 x 3 with the given error rates.
pub(super) fn seed_topology(agent: f64, domain: f64, meta: f64, levels: Levels) -> Result<Topology, String> {
    let mut b = Topology::seed_builder(agent);
    for d in 0..3 {
        b.domain_fault_rate(DomainId(d), domain).map_err(|e| e.to_string())?;
    }
    b.meta_fault_rate(meta).breakers(levels);
    b.build().map_err(|e| e.to_string())
}

/// One domain of `breadth` agents failing at `agent`, no other faults: 1 x 1 and 1 x 3.
pub(super) fn flat_topology(breadth: usize, agent: f64) -> Result<Topology, String> {
    let mut b = Topology::builder();
    let d = b.domain("Single").map_err(|e| e.to_string())?;
    for i in 0..breadth {
        b.agent(d, format!("Agent{i}"), AgentSpec::sim(SimAgent::with_error_rate(agent))).map_err(|e| e.to_string())?;
    }
    b.breakers(Levels::disabled());
    b.build().map_err(|e| e.to_string())
}
