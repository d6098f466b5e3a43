//! `metafed simulate`: the seed report's tables, reproduced with the real engine.
//!
//! Every figure comes from a run of the engine on simulated agents whose failures follow the
//! oracle of `WORKLOADS.md` (W1 routing: task `i` needs domain `i mod D`), or from the model in
//! `metafed::model`. Each table says which.

#[cfg(feature = "plot")]
mod plot;

use crate::progress::Progress;
use metafed::model::{self, Z95, Z999};
use metafed::{AgentSpec, DomainId, Engine, EngineConfig, Levels, Reason, SimAgent, Stats, Topology, TopologyBuilder};
use metafed_bench::driver::{Load, Percentiles, RunReport, closed_loop_until};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Tasks per run (at least 1,000): each of the main runs, each depth x breadth
    /// configuration; each sweep point runs half as many.
    #[arg(long, default_value = "1000000", allow_hyphen_values = true, value_parser = crate::parse_count::<1000>)]
    tasks: u64,
    /// Runs with breakers enabled, each on other task ids (so other oracle draws); the table
    /// reports their spread (1 to 20). They run in virtual time (see --offered-rps), so the
    /// same arguments give the same results on any machine.
    #[arg(long, default_value = "3", allow_hyphen_values = true, value_parser = crate::parse_count::<1>)]
    repeats: u64,
    /// The offered load of the runs with breakers and of the recovery runs, in tasks per second
    /// of virtual time (default: the seed's 47,207). Breakers, windows, timeouts and open times
    /// then act on that load, whatever the machine's speed.
    #[arg(long, default_value_t = 47_207.0)]
    offered_rps: f64,
    /// Leave out what is measured on the wall clock (throughput, latency, the unloaded run):
    /// what remains is a pure function of the arguments, byte for byte (with --json).
    #[arg(long)]
    reproducible: bool,
    /// Also write the figures, as SVG, into this folder (created if needed): reliability
    /// against the agents' error rate, and success and breaker state around each injected fault.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Chooses the task ids (and so, through the oracle, every failure): run with seed `s`
    /// sends ids from `s * 2^40`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The agents' error rate (the oracle's p per attempt; default 0.12). With --config it
    /// overrides every simulated agent's rate in the file.
    #[arg(long)]
    agent_error: Option<f64>,
    /// The domain level's fault rate: a domain's sub-task fails as a whole, whatever its agents
    /// do (a correlated fault; default 0.08). With --config it overrides the file's.
    #[arg(long)]
    domain_error: Option<f64>,
    /// The meta level's fault rate: admission or decomposition fails (default 0.05). With
    /// --config it overrides the file's.
    #[arg(long)]
    meta_error: Option<f64>,
    /// A TOML file (topology, breakers, `[engine]`) for the main runs instead of the seed's
    /// 3 x 3; the depth x breadth table and the sweep keep the seed's shapes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// Worker threads, 0 to 1,024 (0: one per core in the affinity mask).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1024))]
    workers: Option<u16>,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
}

const SWEEP: [f64; 5] = [0.05, 0.10, 0.15, 0.20, 0.25];
/// The seed report's sweep: (single agent, 3 x 3 federation) reliability.
const SEED_SWEEP: [(f64, f64); 5] = [(0.950, 0.874), (0.900, 0.873), (0.850, 0.871), (0.800, 0.867), (0.750, 0.860)];

#[derive(Serialize)]
struct Level {
    level: u8,
    name: &'static str,
    /// The model's cumulative success probability up to this level.
    predicted: f64,
    /// Measured with breakers disabled (the model's assumptions).
    measured: f64,
    ci95: [f64; 2],
    n: u64,
    /// Measured with breakers (the seed's, or the file's).
    measured_with_breakers: f64,
    ci95_with_breakers: [f64; 2],
    n_with_breakers: u64,
    seed_claim: f64,
}

#[derive(Serialize)]
struct Config {
    name: &'static str,
    depth: u32,
    breadth: u32,
    predicted: f64,
    measured: f64,
    ci95: [f64; 2],
    /// Wall clock (left out by --reproducible).
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ns: Option<Percentiles>,
    seed_claim: f64,
}

#[derive(Serialize)]
struct Point {
    measured: f64,
    ci95: [f64; 2],
    predicted: f64,
}

#[derive(Serialize)]
struct Sweep {
    error_rate: f64,
    single: Point,
    federation: Point,
    /// Federation minus single agent, in probability.
    improvement: f64,
    seed_claim_single: f64,
    seed_claim_federation: f64,
}

#[derive(Serialize)]
struct Containment {
    /// Sub-tasks with at least one failed attempt.
    subtasks_with_failed_attempts: u64,
    /// Of which succeeded by failing over to another agent (absorbed at the agent level).
    absorbed_by_failover: u64,
    /// Of which failed every attempt (escalated: the task failed).
    escalated_all_attempts_failed: u64,
    /// Sub-tasks taken out by a domain-level fault (escalated: nothing stands in for a domain).
    escalated_domain_faults: u64,
    /// Tasks failed by a meta-level fault.
    meta_faults: u64,
    /// Sub-tasks shed by an open domain breaker.
    shed_by_domain_breakers: u64,
    /// Agent attempts that failed.
    failed_attempts: u64,
    lost: u64,
    duplicated: u64,
}

#[derive(Serialize)]
struct Breakers {
    agent_trips: u64,
    domain_trips: u64,
    meta_trips: u64,
    panic_routed_attempts: u64,
}

#[derive(Serialize)]
struct Claim {
    claim: &'static str,
    /// None when the runs gave no sample to judge it on.
    holds: Option<bool>,
    evidence: String,
}

#[derive(Serialize)]
struct Runs {
    loaded_without_breakers: Summary,
    /// In virtual time, open loop at the offered load: `tasks_per_s` is the offered rate's
    /// outcome, the latency each task's own in virtual time.
    loaded_with_breakers: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    unloaded_without_breakers: Option<Summary>,
}

#[derive(Serialize)]
struct Summary {
    tasks: u64,
    in_flight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ns: Option<Percentiles>,
    success: f64,
}

/// One injected fault, run in virtual time at the offered load: when the faulted level's
/// breaker opened and closed, when success came back, and whether the fault stayed in its
/// scope.
#[derive(Serialize)]
struct Recovery {
    fault: String,
    /// The level whose recovery the seed claims a time for.
    level: &'static str,
    /// The fault lasts from `from_s` to `to_s` (virtual seconds).
    from_s: f64,
    to_s: f64,
    /// After the fault began: when the faulted component's breaker first opened.
    breaker_opened_ms: Option<f64>,
    /// After the fault ended: when that breaker closed (None: not within the run).
    breaker_closed_ms: Option<f64>,
    /// After the fault ended: the start of the first 10 ms bucket from which five in a row are
    /// back at the steady success of the affected tasks (None: not within the run).
    success_back_ms: Option<f64>,
    /// Success of the affected tasks before the fault (0.5 s to its start).
    steady: f64,
    /// Success during the fault: of the tasks that need the faulted component, and of the rest.
    during_affected: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    during_others: Option<f64>,
    /// Success of the rest during the fault, before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    steady_others: Option<f64>,
    seed_claim_ms: f64,
    /// Breaker closed and success back within the seed's time.
    holds: Option<bool>,
    /// For the plots: (virtual seconds, success of the affected tasks) per 10 ms bucket.
    #[serde(skip)]
    timeline: Vec<(f64, f64)>,
    /// For the plots: (virtual seconds, state) at each transition of the faulted component's
    /// breaker (0 closed, 0.5 half-open, 1 open).
    #[serde(skip)]
    states: Vec<(f64, f64)>,
}

#[derive(Serialize)]
struct Report {
    tasks: u64,
    tasks_total: u64,
    lost: u64,
    duplicated: u64,
    workers: usize,
    /// Whether the main runs used a topology from --config.
    custom_topology: bool,
    rates: Rates,
    /// The lowest and highest meta-level success over the repeated runs with breakers.
    with_breakers_spread: [f64; 2],
    repeats: u64,
    levels: Vec<Level>,
    configs: Vec<Config>,
    sweep: Vec<Sweep>,
    /// The offered load (tasks per second of virtual time) of the runs with breakers and of
    /// the recovery runs.
    offered_rps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    throughput_tasks_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ns: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unloaded_latency_ns: Option<Percentiles>,
    runs: Runs,
    containment: Containment,
    breakers: Breakers,
    recovery: Vec<Recovery>,
    /// The agent outage of the recovery runs under other agent-breaker settings.
    what_if: Vec<WhatIf>,
    /// W3's tail in virtual time, without hedging and with it.
    hedging: Vec<Hedging>,
    /// A run with a varying load and a fault schedule, phase by phase.
    schedule: Vec<Phase>,
    claims: Vec<Claim>,
}

/// Why a run sequence stopped early.
enum Halt {
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
struct Done {
    step: String,
    tasks: u64,
    ok: u64,
    tasks_per_s: f64,
}

struct Runner {
    config: EngineConfig,
    seed: u64,
    progress: Progress,
    done_before: u64,
    runs: u64,
    tasks_total: u64,
    lost: u64,
    duplicated: u64,
    workers: usize,
    finished: Vec<Done>,
}

impl Runner {
    /// Adds a finished run to the totals; a lost, duplicated or unknown completion is a bug.
    fn account(&mut self, step: &str, tasks: u64, report: &RunReport) -> Result<(), Halt> {
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
    fn run(&mut self, step: &str, topology: Topology, mut load: Load) -> Result<(RunReport, Stats), Halt> {
        if crate::interrupted() {
            return Err(Halt::Interrupted);
        }
        self.progress.step(step);
        load.first_id = (self.seed << 40) + (self.runs << 32);
        self.runs += 1;
        let engine = Engine::start(topology, self.config.clone()).map_err(|e| e.to_string())?;
        self.workers = engine.workers();
        let base = self.done_before;
        let progress = &mut self.progress;
        let report = closed_loop_until(&engine, &load, |done| progress.set(base + done), crate::stop_flag());
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
    fn run_virtual(
        &mut self,
        step: &str,
        topology: Topology,
        load: Load,
        rate: f64,
        bucket_ns: u64,
        hook: impl FnMut(&Engine, u64),
        events: &mut Vec<metafed::BreakerEvent>,
    ) -> Result<(metafed::OpenLoop, Stats), Halt> {
        self.run_virtual_steps(step, topology, load, &[(0, rate)], bucket_ns, hook, events)
    }

    /// As [`Runner::run_virtual`], with an offered load in steps ((from ns, tasks per second)).
    #[allow(clippy::too_many_arguments)]
    fn run_virtual_steps(
        &mut self,
        step: &str,
        topology: Topology,
        mut load: Load,
        steps: &[(u64, f64)],
        bucket_ns: u64,
        mut hook: impl FnMut(&Engine, u64),
        events: &mut Vec<metafed::BreakerEvent>,
    ) -> Result<(metafed::OpenLoop, Stats), Halt> {
        let rate = steps.iter().map(|s| s.1).fold(0.0, f64::max);
        if crate::interrupted() {
            return Err(Halt::Interrupted);
        }
        self.progress.step(step);
        load.first_id = (self.seed << 40) + (self.runs << 32);
        self.runs += 1;
        let mut sim = Engine::builder(topology).config(self.config.clone()).simulate().map_err(|e| e.to_string())?;
        let every = (rate as u64 / 10).max(1);
        let (base, progress) = (self.done_before, &mut self.progress);
        let mut k = 0u64;
        let run = sim.open_loop_steps(&load, steps, bucket_ns, |engine, t| {
            hook(engine, t);
            engine.drain_events(events);
            k += 1;
            if k % every == 0 {
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

fn check_rate(name: &str, r: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&r) { Ok(()) } else { Err(format!("--{name} must be in [0, 1], got {r}")) }
}

/// The seed's 3 x 3 with the given error rates.
fn seed_topology(agent: f64, domain: f64, meta: f64, levels: Levels) -> Result<Topology, String> {
    let mut b = Topology::seed_builder(agent);
    for d in 0..3 {
        b.domain_fault_rate(DomainId(d), domain).map_err(|e| e.to_string())?;
    }
    b.meta_fault_rate(meta).breakers(levels);
    b.build().map_err(|e| e.to_string())
}

/// One domain of `breadth` agents failing at `agent`, no other faults: 1 x 1 and 1 x 3.
fn flat_topology(breadth: usize, agent: f64) -> Result<Topology, String> {
    let mut b = Topology::builder();
    let d = b.domain("Single").map_err(|e| e.to_string())?;
    for i in 0..breadth {
        b.agent(d, format!("Agent{i}"), AgentSpec::sim(SimAgent::with_error_rate(agent))).map_err(|e| e.to_string())?;
    }
    b.breakers(Levels::disabled());
    b.build().map_err(|e| e.to_string())
}

/// The one value every item has, if they all have the same.
fn uniform(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut it = values;
    let first = it.next()?;
    it.all(|v| v == first).then_some(first)
}

fn level_counts(r: &RunReport) -> [(u64, u64); 3] {
    let refused_at_meta = r.reason(Reason::MetaFault)
        + r.reason(Reason::Degraded)
        + r.reason(Reason::RateLimited)
        + r.reason(Reason::Throttled);
    let subtasks = r.submitted - refused_at_meta;
    let at_agents = subtasks - r.reason(Reason::DomainFault) - r.reason(Reason::DomainShed);
    [(r.ok, at_agents), (r.ok, subtasks), (r.ok, r.submitted)]
}

fn ratio(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

fn ci(k: u64, n: u64) -> [f64; 2] {
    let (lo, hi) = model::wilson(k, n, Z95);
    [lo, hi]
}

fn within(p: f64, k: u64, n: u64, z: f64) -> bool {
    let (lo, hi) = model::wilson(k, n, z);
    (lo..=hi).contains(&p)
}

fn pct(p: f64) -> String {
    format!("{:.2}%", p * 100.0)
}

fn summary(r: &RunReport, in_flight: usize, wall: bool) -> Summary {
    Summary {
        tasks: r.submitted,
        in_flight,
        tasks_per_s: wall.then_some(r.tasks_per_s),
        latency_ns: wall.then_some(r.latency_ns),
        success: ratio(r.ok, r.submitted),
    }
}

pub fn run(args: &Args) -> Result<(), String> {
    let (agent_error, domain_error, meta_error) =
        (args.agent_error.unwrap_or(0.12), args.domain_error.unwrap_or(0.08), args.meta_error.unwrap_or(0.05));
    check_rate("agent-error", agent_error)?;
    check_rate("domain-error", domain_error)?;
    check_rate("meta-error", meta_error)?;
    if args.repeats > 20 {
        return Err(format!("--repeats must be 1 to 20, got {}", args.repeats));
    }
    let n = args.tasks;
    let (main_builder, mut config) = match &args.config {
        Some(path) => {
            let at = |e: metafed::Error| format!("{}: {e}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut b = TopologyBuilder::from_toml(&text).map_err(at)?;
            // Rates given on the command line override the file's.
            if let Some(rate) = args.agent_error {
                b.sim_error_rate(None, rate);
            }
            if let Some(rate) = args.domain_error {
                for d in 0..b.domain_count() {
                    b.domain_fault_rate(DomainId(d as u16), rate).map_err(at)?;
                }
            }
            if let Some(rate) = args.meta_error {
                b.meta_fault_rate(rate);
            }
            b.clone().build().map_err(at)?;
            let c = EngineConfig::from_toml(&text).map_err(at)?;
            (Some(b), c)
        }
        None => (None, EngineConfig::default()),
    };
    if let Some(w) = args.workers {
        config.workers = usize::from(w);
    }
    if args.no_pin {
        config.pin = false;
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if config.workers > cores && !args.json {
        eprintln!(
            "metafed: {} workers on {cores} cores: workers beyond the cores share them, so expect lower throughput",
            config.workers
        );
    }
    // The main topology, with its breakers (the seed's, or the file's) and with breakers disabled.
    let main_with = |levels: Option<Levels>| -> Result<Topology, String> {
        match &main_builder {
            Some(b) => {
                let mut b = b.clone();
                if let Some(l) = levels {
                    b.breakers(l);
                }
                b.build().map_err(|e| e.to_string())
            }
            None => seed_topology(agent_error, domain_error, meta_error, levels.unwrap_or_default()),
        }
    };
    let topo_off = main_with(Some(Levels::disabled()))?;
    let topo_on = main_with(None)?;
    let rates = Rates {
        agent: uniform((0..topo_off.agent_count()).filter_map(|a| topo_off.sim_error_rate(metafed::AgentId(a as u16)))),
        domain: uniform((0..topo_off.domain_count()).map(|d| topo_off.domain_fault_rate(DomainId(d as u16)))),
        meta: topo_off.meta_fault_rate(),
        breakers: if main_builder.is_some() { "the file's" } else { "the seed's" },
    };
    let unloaded_n = (n / 5).clamp(1_000, 200_000);
    if !(args.offered_rps.is_finite() && (100.0..=10_000_000.0).contains(&args.offered_rps)) {
        return Err(format!("--offered-rps must be 100 to 10000000, got {}", args.offered_rps));
    }
    let recovery_n = 3 * (args.offered_rps * 4.0) as u64;
    // What-if: the main topology with each agent-breaker setting of the grid.
    let what_if_topos = WHAT_IF_THRESHOLDS
        .iter()
        .flat_map(|&t| WHAT_IF_OPEN_MS.iter().map(move |&o| (t, o)))
        .map(|(t, o)| {
            let mut levels = topo_on.breakers().clone();
            levels.agent.consecutive_failures = t;
            levels.agent.open_base = std::time::Duration::from_millis(o);
            levels.agent.open_max = levels.agent.open_max.max(levels.agent.open_base);
            Ok((t, o, main_with(Some(levels))?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let what_if_n = what_if_topos.len() as u64 * (args.offered_rps * 4.0) as u64;
    let hedging_n = 2 * hedging_tasks(args) + schedule_tasks(args.offered_rps);
    let unloaded_n = if args.reproducible { 0 } else { unloaded_n };
    let total =
        (1 + args.repeats) * n + unloaded_n + 3 * n + SWEEP.len() as u64 * n + recovery_n + what_if_n + hedging_n;
    let mut r = Runner {
        config,
        seed: args.seed,
        progress: Progress::new(total, !args.json),
        done_before: 0,
        runs: 0,
        tasks_total: 0,
        lost: 0,
        duplicated: 0,
        workers: 0,
        finished: Vec::new(),
    };
    let result = simulate(args, &mut r, &topo_off, &topo_on, &what_if_topos, &rates, unloaded_n);
    r.progress.finish();
    match result {
        Ok(report) => {
            if let Some(dir) = &args.plot {
                #[cfg(feature = "plot")]
                for f in plot::figures(dir, &report)? {
                    eprintln!("wrote {}", f.display());
                }
                #[cfg(not(feature = "plot"))]
                return Err(format!("--plot {}: this build has no plots (cargo feature `plot`)", dir.display()));
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                print_tables(&report);
            }
            Ok(())
        }
        Err(Halt::Error(e)) => Err(e),
        Err(Halt::Interrupted) => {
            // Ctrl-C: the run under way stopped submitting and drained; say what completed.
            if args.json {
                let partial = serde_json::json!({ "interrupted": true, "runs": &r.finished });
                println!("{}", serde_json::to_string_pretty(&partial).map_err(|e| e.to_string())?);
            } else {
                println!(
                    "metafed simulate: interrupted; {} runs completed (tasks lost 0, completed twice 0)",
                    r.finished.len()
                );
                println!("   {:<36} {:>10} {:>10} {:>12}", "run", "tasks", "success", "tasks/s");
                for d in &r.finished {
                    println!(
                        "   {:<36} {:>10} {:>10} {:>12.0}",
                        d.step,
                        d.tasks,
                        pct(ratio(d.ok, d.tasks)),
                        d.tasks_per_s
                    );
                }
            }
            Err("interrupted".into())
        }
    }
}

/// The error rates and breakers the main runs used.
#[derive(Serialize)]
struct Rates {
    /// Every simulated agent's error rate, when they share one.
    agent: Option<f64>,
    /// Every domain's fault rate, when they share one.
    domain: Option<f64>,
    meta: f64,
    breakers: &'static str,
}

fn simulate(
    args: &Args,
    r: &mut Runner,
    topo_off: &Topology,
    topo_on: &Topology,
    what_if_topos: &[(u32, u64, Topology)],
    rates: &Rates,
    unloaded_n: u64,
) -> Result<Report, Halt> {
    let n = args.tasks;
    let wall = !args.reproducible;
    // 1. The main runs: W1 on the main topology, without breakers (live: with breakers off
    // every outcome is the oracle's, whatever the timing) and with breakers (in virtual time at
    // the offered load: breakers act on time, so a live run's result would depend on how fast
    // the machine pushes tasks; repeated on other task ids for the spread); and unloaded.
    let (off, _) = r.run("W1, breakers off", topo_off.clone(), Load::w1(n))?;
    let mut with: Vec<(RunReport, Stats)> = Vec::new();
    for k in 0..args.repeats {
        let step = format!("W1, breakers on, virtual time ({}/{})", k + 1, args.repeats);
        let (run, stats) = r.run_virtual(
            &step,
            topo_on.clone(),
            Load::w1(n),
            args.offered_rps,
            10_000_000,
            |_, _| {},
            &mut Vec::new(),
        )?;
        with.push((run.report, stats));
    }
    // The run whose success is the median stands for them; the others give the spread.
    with.sort_by(|a, b| ratio(a.0.ok, a.0.submitted).total_cmp(&ratio(b.0.ok, b.0.submitted)));
    let spread =
        [ratio(with[0].0.ok, with[0].0.submitted), ratio(with[with.len() - 1].0.ok, with[with.len() - 1].0.submitted)];
    let (on, on_stats) = with.swap_remove(with.len() / 2);
    let unloaded_load = Load { in_flight: 1, sample_every: 1, ..Load::w1(unloaded_n) };
    // Latency and throughput are judged on runs where every task takes the whole path (with
    // breakers, shed tasks fail fast and would flatter both).
    let unloaded = if wall { Some(r.run("W1 unloaded", topo_off.clone(), unloaded_load)?.0) } else { None };

    let per_domain = model::predict_domains(topo_off, |a| topo_off.sim_error_rate(a).unwrap_or(0.0));
    let mean =
        |f: &dyn Fn(&model::DomainPrediction) -> f64| per_domain.iter().map(f).sum::<f64>() / per_domain.len() as f64;
    let predicted =
        [mean(&|p| p.agents), mean(&|p| p.domain), mean(&|p| p.domain) * (1.0 - topo_off.meta_fault_rate())];
    let (c_off, c_on) = (level_counts(&off), level_counts(&on));
    let names = ["agents", "domains", "meta"];
    let seed_levels = [0.9983, 0.9159, 0.8701];
    let levels: Vec<Level> = (0..3)
        .map(|i| Level {
            level: 2 - i as u8,
            name: names[i],
            predicted: predicted[i],
            measured: ratio(c_off[i].0, c_off[i].1),
            ci95: ci(c_off[i].0, c_off[i].1),
            n: c_off[i].1,
            measured_with_breakers: ratio(c_on[i].0, c_on[i].1),
            ci95_with_breakers: ci(c_on[i].0, c_on[i].1),
            n_with_breakers: c_on[i].1,
            seed_claim: seed_levels[i],
        })
        .collect();

    // 2. Depth x breadth, breakers off.
    let e = rates.agent.unwrap_or(0.12);
    let (fd, fm) = (rates.domain.unwrap_or(0.08), rates.meta);
    let shapes: [(&str, u32, u32, Topology, f64); 3] = [
        ("1x1", 1, 1, flat_topology(1, e)?, 0.880),
        ("1x3", 1, 3, flat_topology(3, e)?, 0.998),
        ("3x3", 3, 3, seed_topology(e, fd, fm, Levels::disabled())?, 1.000),
    ];
    let mut configs = Vec::new();
    for (name, depth, breadth, topo, seed_claim) in shapes {
        let p = model::predict_domains(&topo, |a| topo.sim_error_rate(a).unwrap_or(0.0));
        let predicted = (0..topo.domain_count())
            .map(|d| model::task_success(&topo, &p, metafed::DomainSet::one(DomainId(d as u16))))
            .sum::<f64>()
            / topo.domain_count() as f64;
        let (rep, _) = r.run(&format!("depth x breadth {name}"), topo, Load::w1(n))?;
        configs.push(Config {
            name,
            depth,
            breadth,
            predicted,
            measured: ratio(rep.ok, rep.submitted),
            ci95: ci(rep.ok, rep.submitted),
            tasks_per_s: wall.then_some(rep.tasks_per_s),
            latency_ns: wall.then_some(rep.latency_ns),
            seed_claim,
        });
    }

    // 3. The error-rate sweep: single agent vs the 3 x 3 federation, breakers off.
    let mut sweep = Vec::new();
    for (i, &rate) in SWEEP.iter().enumerate() {
        let (single, _) =
            r.run(&format!("sweep {:.0}% single", rate * 100.0), flat_topology(1, rate)?, Load::w1(n / 2))?;
        let (fed, _) = r.run(
            &format!("sweep {:.0}% federation", rate * 100.0),
            seed_topology(rate, fd, fm, Levels::disabled())?,
            Load::w1(n / 2),
        )?;
        let fed_pred = model::seed_formula(&[(rate, 3), (fd, 1), (fm, 1)]);
        let (ps, pf) = (ratio(single.ok, single.submitted), ratio(fed.ok, fed.submitted));
        sweep.push(Sweep {
            error_rate: rate,
            single: Point { measured: ps, ci95: ci(single.ok, single.submitted), predicted: 1.0 - rate },
            federation: Point { measured: pf, ci95: ci(fed.ok, fed.submitted), predicted: fed_pred },
            improvement: pf - ps,
            seed_claim_single: SEED_SWEEP[i].0,
            seed_claim_federation: SEED_SWEEP[i].1,
        });
    }

    // 5. Containment and breaker activity, from the run with breakers.
    let recovered: u64 = on_stats.domains.iter().map(|d| d.recovered).sum();
    let exhausted = on.reason(Reason::AgentsExhausted) + on.reason(Reason::NoAgent);
    let containment = Containment {
        subtasks_with_failed_attempts: recovered + exhausted,
        absorbed_by_failover: recovered,
        escalated_all_attempts_failed: exhausted,
        escalated_domain_faults: on.reason(Reason::DomainFault),
        meta_faults: on.reason(Reason::MetaFault),
        shed_by_domain_breakers: on.reason(Reason::DomainShed),
        failed_attempts: on_stats.agents.iter().map(|a| a.failures).sum(),
        lost: r.lost,
        duplicated: r.duplicated,
    };
    let breakers = Breakers {
        agent_trips: on_stats.agents.iter().map(|a| a.breaker.opened + a.breaker.reopened).sum(),
        domain_trips: on_stats.domains.iter().map(|d| d.breaker.opened + d.breaker.reopened).sum(),
        meta_trips: on_stats.meta.breaker.opened + on_stats.meta.breaker.reopened,
        panic_routed_attempts: on_stats.panic_routed,
    };

    // 6. Recovery and containment of injected faults, in virtual time.
    let recovery = recovery_runs(args, r, topo_on)?;
    // 8. What-if: the agent outage under other agent-breaker settings.
    let what_if = what_if_runs(args, r, what_if_topos)?;
    // 9. W3's tail, without and with hedging, in virtual time.
    let hedging = hedging_runs(args, r)?;
    // 10. A varying load and a fault schedule, in virtual time.
    let schedule = schedule_run(args, r, rates)?;

    let mut claims = judge(
        &levels,
        &configs,
        &sweep,
        &off,
        &on,
        unloaded.as_ref(),
        &containment,
        &breakers,
        n,
        rates.breakers,
        wall,
    );
    for rec in &recovery {
        claims.push(Claim {
            claim: match rec.level {
                "agent" => "Agent-level recovery in under 100 ms",
                "domain" => "Domain-level recovery in under 500 ms",
                _ => "System-wide recovery in under 2 s",
            },
            holds: rec.holds,
            evidence: format!(
                "{} from {:.1} s to {:.1} s at {:.0} tasks/s (virtual time): breaker opened {} after it began, closed {} after it ended; success back {} after",
                rec.fault,
                rec.from_s,
                rec.to_s,
                args.offered_rps,
                ms(rec.breaker_opened_ms),
                ms(rec.breaker_closed_ms),
                ms(rec.success_back_ms)
            ),
        });
    }
    Ok(Report {
        tasks: n,
        tasks_total: r.tasks_total,
        lost: r.lost,
        duplicated: r.duplicated,
        workers: r.workers,
        custom_topology: args.config.is_some(),
        rates: Rates { agent: rates.agent, domain: rates.domain, meta: rates.meta, breakers: rates.breakers },
        with_breakers_spread: spread,
        repeats: args.repeats,
        levels,
        configs,
        sweep,
        offered_rps: args.offered_rps,
        throughput_tasks_per_s: wall.then_some(off.tasks_per_s),
        latency_ns: wall.then_some(off.latency_ns),
        unloaded_latency_ns: unloaded.as_ref().map(|u| u.latency_ns),
        runs: Runs {
            loaded_without_breakers: summary(&off, 1024, wall),
            loaded_with_breakers: summary(&on, 0, true),
            unloaded_without_breakers: unloaded.as_ref().map(|u| summary(u, 1, true)),
        },
        containment,
        breakers,
        recovery,
        what_if,
        hedging,
        schedule,
        claims,
    })
}

/// Milliseconds, or "not within the run".
fn ms(v: Option<f64>) -> String {
    v.map_or("not within the run".into(), |v| format!("{v:.1} ms"))
}

/// The seed's recovery claims, one fault each, in virtual time at the offered load: a fault
/// from 1 s to 2 s of a 4 s run (steady state measured from 0.5 s to 1 s).
fn recovery_runs(args: &Args, r: &mut Runner, topo: &Topology) -> Result<Vec<Recovery>, Halt> {
    ["agent", "domain", "meta"]
        .into_iter()
        .map(|level| fault_run(args, r, topo, level, "recovery").map(|f| f.0))
        .collect()
}

/// The seed's recovery claim for a fault at `level`: the fault, the claimed time, the breaker
/// that should catch it.
fn fault_of(topo: &Topology, level: &str) -> (String, f64, metafed::Level, u16) {
    use metafed::Level as L;
    let agent0 = topo.agents_of(DomainId(0))[0];
    let d0 = topo.domain_name(DomainId(0)).unwrap_or("0").to_string();
    let a0 = format!("{d0}/{}", topo.agent_name(agent0).unwrap_or("?"));
    match level {
        "agent" => (format!("agent {a0} down"), 100.0, L::Agent, agent0.0),
        "domain" => (format!("domain {d0} down"), 500.0, L::Domain, 0),
        _ => ("every domain down".to_string(), 2000.0, L::Meta, 0),
    }
}

/// One injected fault at `level` ("agent", "domain" or "meta") from 1 s to 2 s of a 4 s run in
/// virtual time at the offered load (steady state measured from 0.5 s to 1 s): the recovery it
/// shows, and the run's success over every task and the calls that failed at the faulted agent.
fn fault_run(
    args: &Args,
    r: &mut Runner,
    topo: &Topology,
    level: &'static str,
    step: &str,
) -> Result<(Recovery, f64, u64), Halt> {
    use metafed::BreakerState;
    const BUCKET: u64 = 10_000_000; // 10 ms
    let (from_ns, to_ns, end_s) = (1_000_000_000u64, 2_000_000_000u64, 4.0);
    let (steady_from, fault_from, fault_to) = (50usize, 100usize, 200usize); // in buckets
    let rate = args.offered_rps;
    let domains = topo.domain_count();
    let agent0 = topo.agents_of(DomainId(0))[0];
    let (fault, claim_ms, lvl, idx) = fault_of(topo, level);
    let n = (rate * end_s) as u64;
    {
        let mut on = false;
        let mut events = Vec::new();
        let (run, stats) = r.run_virtual(
            &format!("{step}: {fault}"),
            topo.clone(),
            Load::w1(n),
            rate,
            BUCKET,
            |engine, t| {
                let want = (from_ns..to_ns).contains(&t);
                if want != on {
                    on = want;
                    match level {
                        "agent" => {
                            engine.set_agent_down(agent0, want);
                        }
                        "domain" => {
                            engine.set_domain_down(DomainId(0), want);
                        }
                        _ => {
                            for d in 0..domains {
                                engine.set_domain_down(DomainId(d as u16), want);
                            }
                        }
                    }
                }
            },
            &mut events,
        )?;
        let mine: Vec<_> = events.iter().filter(|e| e.level == lvl && e.index == idx).collect();
        let opened = mine
            .iter()
            .find(|e| e.at_ns >= from_ns && e.transition.to == BreakerState::Open)
            .map(|e| (e.at_ns - from_ns) as f64 / 1e6);
        // Closed at the end of the fault already (it never opened), or the first close after.
        let closed = match mine.iter().rev().find(|e| e.at_ns < to_ns) {
            None => Some(0.0),
            Some(e) if e.transition.to == BreakerState::Closed => Some(0.0),
            Some(_) => mine
                .iter()
                .find(|e| e.at_ns >= to_ns && e.transition.to == BreakerState::Closed)
                .map(|e| (e.at_ns - to_ns) as f64 / 1e6),
        };
        // Success of the affected tasks (those of domain 0; every task when every domain is
        // down) and of the others, over a range of buckets.
        let affected = |g: usize| level == "meta" || g == 0;
        // (succeeded, completed) in bucket `b`, of the affected tasks (`want`) or of the others.
        let counts = |b: usize, want: bool| {
            run.buckets[b]
                .iter()
                .enumerate()
                .filter(|&(g, _)| affected(g) == want)
                .fold((0u64, 0u64), |(k, t), (_, c)| (k + c.1, t + c.0))
        };
        let share = |range: std::ops::Range<usize>, want: bool| -> Option<f64> {
            let (k, t) = range
                .filter(|&b| b < run.buckets.len())
                .map(|b| counts(b, want))
                .fold((0, 0), |(k, t), (bk, bt)| (k + bk, t + bt));
            (t > 0).then(|| k as f64 / t as f64)
        };
        let steady = share(steady_from..fault_from, true).unwrap_or(0.0);
        let back = (fault_to..run.buckets.len().saturating_sub(5))
            .find(|&b| {
                (b..b + 5).all(|i| {
                    let (k, t) = counts(i, true);
                    let tol = 4.0 * (steady * (1.0 - steady) / t.max(1) as f64).sqrt() + 0.005;
                    t > 0 && k as f64 / t as f64 >= steady - tol
                })
            })
            .map(|b| ((b - fault_to) as u64 * BUCKET) as f64 / 1e6);
        let holds = match (closed, back) {
            (Some(c), Some(b)) => Some(c <= claim_ms && b <= claim_ms),
            _ => Some(false),
        };
        let timeline = (0..run.buckets.len())
            .filter_map(|b| {
                let (k, t) = counts(b, true);
                (t > 0).then(|| ((b as u64 * BUCKET) as f64 / 1e9, k as f64 / t as f64))
            })
            .collect();
        let states = mine
            .iter()
            .map(|e| {
                let y = match e.transition.to {
                    BreakerState::Closed => 0.0,
                    BreakerState::HalfOpen => 0.5,
                    BreakerState::Open => 1.0,
                };
                (e.at_ns as f64 / 1e9, y)
            })
            .collect();
        let overall = ratio(run.report.ok, run.report.submitted);
        let failed_calls = stats.agents[usize::from(agent0.0)].failures;
        let rec = Recovery {
            timeline,
            states,
            fault,
            level,
            from_s: from_ns as f64 / 1e9,
            to_s: to_ns as f64 / 1e9,
            breaker_opened_ms: opened,
            breaker_closed_ms: closed,
            success_back_ms: back,
            steady,
            during_affected: share(fault_from..fault_to, true).unwrap_or(0.0),
            during_others: share(fault_from..fault_to, false),
            steady_others: share(steady_from..fault_from, false),
            seed_claim_ms: claim_ms,
            holds,
        };
        Ok((rec, overall, failed_calls))
    }
}

/// One phase of the scheduled run.
#[derive(Serialize)]
struct Phase {
    from_s: f64,
    to_s: f64,
    /// Offered load, tasks per second.
    offered: f64,
    /// What happens in it.
    what: String,
    tasks: u64,
    success: f64,
    /// Success of the tasks of the faulted agent's domain (of API when nothing is faulted).
    domain_success: f64,
    /// The faulted agent's breaker: opened, after the phase began; closed, after it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker_opened_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker_closed_ms: Option<f64>,
}

/// The scheduled run's phases: (from s, to s, load as a multiple of --offered-rps / 2, fault).
/// Fault 1: API/REST's error rate 0.6; fault 2: Database/SQL 80 ms slower (its timeout is 50).
const PHASES: [(f64, f64, f64, u8); 7] = [
    (0.0, 1.0, 1.0, 0),
    (1.0, 1.5, 4.0, 0),
    (1.5, 2.0, 1.0, 0),
    (2.0, 2.5, 1.0, 1),
    (2.5, 3.0, 1.0, 0),
    (3.0, 3.5, 1.0, 2),
    (3.5, 4.0, 1.0, 0),
];

fn schedule_tasks(rate: f64) -> u64 {
    PHASES.iter().map(|p| ((p.1 - p.0) * p.2 * rate / 2.0) as u64).sum()
}

/// A varying load and a fault schedule in virtual time, on the seed's 3 x 3 with the main runs'
/// error rates and the seed's breakers, every agent answering after an exponential latency of
/// mean 200 us: half the offered load, a burst of twice it from 1 s to 1.5 s, API/REST failing
/// 60% of its calls from 2 s to 2.5 s, Database/SQL 80 ms slower from 3 s to 3.5 s.
fn schedule_run(args: &Args, r: &mut Runner, rates: &Rates) -> Result<Vec<Phase>, Halt> {
    use metafed::BreakerState;
    let agent_error = rates.agent.unwrap_or(0.12);
    let mut b = TopologyBuilder::default();
    let mut ids = Vec::new();
    for (domain, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(domain).map_err(|e| e.to_string())?;
        b.domain_fault_rate(d, rates.domain.unwrap_or(0.08)).map_err(|e| e.to_string())?;
        for (i, a) in agents.iter().enumerate() {
            let latency = metafed::Latency::Exponential { mean_us: 200.0 };
            let sim = SimAgent { error_rate: agent_error, latency, seed: i as u64, ..SimAgent::default() };
            ids.push(b.agent(d, *a, AgentSpec::sim(sim)).map_err(|e| e.to_string())?);
        }
    }
    b.meta_fault_rate(rates.meta);
    let topo = b.build().map_err(|e| e.to_string())?;
    let (rest, sql) = (ids[0], ids[3]);
    let half = args.offered_rps / 2.0;
    let steps: Vec<(u64, f64)> = PHASES.iter().map(|p| ((p.0 * 1e9) as u64, p.2 * half)).collect();
    let ns = |s: f64| (s * 1e9) as u64;
    let mut state = 0u8;
    let mut events = Vec::new();
    let (run, _) = r.run_virtual_steps(
        "schedule: load steps and faults",
        topo,
        Load::w1(schedule_tasks(args.offered_rps)),
        &steps,
        10_000_000,
        |engine, t| {
            let want = PHASES.iter().find(|p| ns(p.0) <= t && t < ns(p.1)).map_or(0, |p| p.3);
            if want != state {
                let off = |f: u8| match f {
                    1 => engine.set_sim_agent(rest, Some(agent_error), None),
                    2 => engine.set_sim_agent(sql, None, Some(std::time::Duration::ZERO)),
                    _ => Ok(()),
                };
                let on = |f: u8| match f {
                    1 => engine.set_sim_agent(rest, Some(0.6), None),
                    2 => engine.set_sim_agent(sql, None, Some(std::time::Duration::from_millis(80))),
                    _ => Ok(()),
                };
                off(state).and_then(|_| on(want)).expect("simulated agents");
                state = want;
            }
        },
        &mut events,
    )?;
    let bucket = |s: f64| (s * 100.0).round() as usize; // 10 ms buckets
    let mut out = Vec::new();
    for &(from, to, mult, fault) in &PHASES {
        let (agent, d, what) = match fault {
            1 => (Some(rest), 0, "API/REST fails 60% of calls".to_string()),
            2 => (Some(sql), 1, "Database/SQL 80 ms slower".to_string()),
            _ if mult > 1.0 => (None, 0, format!("burst: {mult:.0}x the steady load")),
            _ => (None, 0, "steady".to_string()),
        };
        let (mut k, mut t, mut dk, mut dt) = (0, 0, 0, 0);
        for b in bucket(from)..bucket(to).min(run.buckets.len()) {
            for (g, c) in run.buckets[b].iter().enumerate() {
                (k, t) = (k + c.1, t + c.0);
                if g == d {
                    (dk, dt) = (dk + c.1, dt + c.0);
                }
            }
        }
        let mine: Vec<_> = agent
            .map(|a| events.iter().filter(|e| e.level == metafed::Level::Agent && e.index == a.0).collect())
            .unwrap_or_default();
        let opened = mine
            .iter()
            .find(|e| e.at_ns >= ns(from) && e.transition.to == BreakerState::Open)
            .map(|e| (e.at_ns - ns(from)) as f64 / 1e6);
        let closed = opened.and_then(|_| {
            mine.iter()
                .find(|e| e.at_ns >= ns(to) && e.transition.to == BreakerState::Closed)
                .map(|e| (e.at_ns - ns(to)) as f64 / 1e6)
        });
        out.push(Phase {
            from_s: from,
            to_s: to,
            offered: mult * half,
            what,
            tasks: t,
            success: ratio(k, t),
            domain_success: ratio(dk, dt),
            breaker_opened_ms: opened,
            breaker_closed_ms: closed,
        });
    }
    Ok(out)
}

/// Tasks of each hedging run: a fifth of --tasks, at least 10,000.
fn hedging_tasks(args: &Args) -> u64 {
    (args.tasks / 5).max(10_000)
}

/// W3 in virtual time, without hedging or with it: latency percentiles and the extra calls.
#[derive(Serialize)]
struct Hedging {
    hedge: &'static str,
    tasks: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Hedged attempts sent: the hedges' cost in calls.
    extra_calls: u64,
    extra_share: f64,
    success: f64,
    /// For the plot: (latency in microseconds, share of tasks at or below it).
    #[serde(skip)]
    cdf: Vec<(f64, f64)>,
}

/// W3 (WORKLOADS.md) in virtual time at the offered load: the seed's 3 x 3 with p = 0 and no
/// injected faults or breakers, every agent an I/O agent answering after 10 us except the first
/// attempt of 1 task in 100, which takes 1 ms; run without hedging, and with a hedge after each
/// domain's p95 latency.
fn hedging_runs(args: &Args, r: &mut Runner) -> Result<Vec<Hedging>, Halt> {
    let mut out = Vec::new();
    for (name, hedge) in [("none", None), ("after the domain's p95", Some(metafed::Hedge::at_percentile(95.0)))] {
        let mut b = TopologyBuilder::default();
        for (domain, agents) in metafed::SEED_DOMAINS {
            let d = b.domain(domain).map_err(|e| e.to_string())?;
            for (i, a) in agents.iter().enumerate() {
                let latency = metafed::Latency::LongTail { base_us: 10.0, slow_us: 1000.0, slow_rate: 0.01 };
                let sim = SimAgent { error_rate: 0.0, latency, io: true, seed: i as u64, ..SimAgent::default() };
                b.agent(d, *a, AgentSpec::sim(sim)).map_err(|e| e.to_string())?;
            }
            if let Some(h) = hedge {
                b.hedge(d, h).map_err(|e| e.to_string())?;
            }
        }
        b.breakers(Levels::disabled());
        let topo = b.build().map_err(|e| e.to_string())?;
        let load = Load::w1(hedging_tasks(args));
        let (run, stats) = r.run_virtual(
            &format!("W3, hedge {name}"),
            topo,
            load,
            args.offered_rps,
            10_000_000,
            |_, _| {},
            &mut Vec::new(),
        )?;
        let h = &run.latency;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let subtasks: u64 = stats.domains.iter().map(|d| d.subtasks).sum();
        let extra: u64 = stats.domains.iter().map(|d| d.hedges).sum();
        let mut cdf: Vec<(f64, f64)> = h.quantile_steps(8).into_iter().map(|(v, q)| (v as f64 / 1e3, q)).collect();
        cdf.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        out.push(Hedging {
            hedge: name,
            tasks: run.report.submitted,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1e3,
            extra_calls: extra,
            extra_share: ratio(extra, subtasks),
            success: ratio(run.report.ok, run.report.submitted),
            cdf,
        });
    }
    Ok(out)
}

/// The agent breaker's failure thresholds and open times the what-if runs try.
const WHAT_IF_THRESHOLDS: [u32; 4] = [2, 3, 5, 10];
const WHAT_IF_OPEN_MS: [u64; 4] = [25, 50, 100, 250];

/// One setting of the agent breaker tried against an agent outage.
#[derive(Serialize)]
struct WhatIf {
    consecutive_failures: u32,
    open_base_ms: u64,
    /// Success of the tasks of the faulted agent's domain during the outage.
    during_fault: f64,
    /// Success over the whole run (every task, 4 s).
    overall: f64,
    /// Calls that failed at the down agent: what the breaker exists to spare.
    failed_calls: u64,
    /// After the outage ended: the agent breaker closed, and success came back.
    breaker_closed_ms: Option<f64>,
    success_back_ms: Option<f64>,
}

/// What-if: the agent outage of the recovery runs under each agent-breaker setting of the grid
/// (`topos`: the main topology with that setting), at the offered load in virtual time.
fn what_if_runs(args: &Args, r: &mut Runner, topos: &[(u32, u64, Topology)]) -> Result<Vec<WhatIf>, Halt> {
    let mut out = Vec::new();
    for (t, o, topo) in topos {
        let (rec, overall, failed_calls) = fault_run(args, r, topo, "agent", &format!("what-if {t} failures, {o} ms"))?;
        out.push(WhatIf {
            consecutive_failures: *t,
            open_base_ms: *o,
            during_fault: rec.during_affected,
            overall,
            failed_calls,
            breaker_closed_ms: rec.breaker_closed_ms,
            success_back_ms: rec.success_back_ms,
        });
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn judge(
    levels: &[Level],
    configs: &[Config],
    sweep: &[Sweep],
    off: &RunReport,
    on: &RunReport,
    unloaded: Option<&RunReport>,
    c: &Containment,
    b: &Breakers,
    n: u64,
    breakers_of: &str,
    wall: bool,
) -> Vec<Claim> {
    const LEFT_OUT: &str = "measured on the wall clock: left out by --reproducible";
    let l2 = &levels[0];
    let sys = &levels[2];
    let (single, flat3, fed) = (&configs[0], &configs[1], &configs[2]);
    let gain = fed.measured / single.measured - 1.0;
    let signs_match = sweep.iter().all(|s| (s.improvement > 0.0) == (s.seed_claim_federation > s.seed_claim_single));
    let sweep_text = sweep
        .iter()
        .map(|s| format!("{:.0}%: {:+.2} points", s.error_rate * 100.0, s.improvement * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    let crossover = sweep
        .iter()
        .find(|s| s.improvement > 0.0)
        .map_or("none in 5..25%".to_string(), |s| format!("{:.0}%", s.error_rate * 100.0));
    let (k_on, k_off) = (on.ok, off.ok);
    let absorbed = ratio(c.absorbed_by_failover, c.subtasks_with_failed_attempts);
    vec![
        Claim {
            claim: "The 3x3 federation reaches 100% reliability (\"perfect in testing\")",
            holds: Some(fed.ci95[1] >= 1.0),
            evidence: format!(
                "measured {} (95% CI {} to {}) over {n} tasks; the model predicts {}",
                pct(fed.measured),
                pct(fed.ci95[0]),
                pct(fed.ci95[1]),
                pct(fed.predicted)
            ),
        },
        Claim {
            claim: "Agent level (3 agents per domain): 99.83% reliability",
            holds: (l2.n > 0).then(|| within(0.9983, l2.measured_k(), l2.n, Z999)),
            evidence: format!(
                "measured {} (95% CI {} to {}), model 1 - e^3 = {}",
                pct(l2.measured),
                pct(l2.ci95[0]),
                pct(l2.ci95[1]),
                pct(l2.predicted)
            ),
        },
        Claim {
            claim: "Theoretical system reliability is 86.95%",
            holds: (sys.n > 0).then(|| within(0.8695, sys.measured_k(), sys.n, Z999)),
            evidence: format!(
                "the seed's own formula with its own rates gives {} (not 86.95%); measured {} (95% CI {} to {})",
                pct(sys.predicted),
                pct(sys.measured),
                pct(sys.ci95[0]),
                pct(sys.ci95[1])
            ),
        },
        Claim {
            claim: "The federation improves reliability by 14.2% over a single agent",
            holds: (single.measured > 0.0).then_some(gain >= 0.142),
            evidence: format!(
                "3x3 {} vs single agent {}: {:+.2}% relative; the agent level alone (1x3) reaches {}",
                pct(fed.measured),
                pct(single.measured),
                gain * 100.0,
                pct(flat3.measured)
            ),
        },
        Claim {
            claim: "Reliability scales exponentially with depth x breadth",
            holds: Some(single.measured < flat3.measured && flat3.measured < fed.measured),
            evidence: format!(
                "breadth helps (1x1 {} -> 1x3 {}, 1 - e^n), depth hurts (1x3 {} -> 3x3 {}): levels are in series, each adds its own faults",
                pct(single.measured),
                pct(flat3.measured),
                pct(flat3.measured),
                pct(fed.measured)
            ),
        },
        Claim {
            claim: "The federation's benefit grows with the error rate (loses at 5-10%, wins from 15%)",
            holds: Some(signs_match),
            evidence: format!("federation minus single agent: {sweep_text}; first win at {crossover}"),
        },
        Claim {
            claim: "Throughput of 47,207 RPS",
            holds: wall.then_some(off.tasks_per_s >= 47_207.0),
            evidence: if wall {
                format!(
                    "{:.0} tasks/s measured (W1, 1024 in flight, one submitting thread, every task on the full path)",
                    off.tasks_per_s
                )
            } else {
                LEFT_OUT.into()
            },
        },
        Claim {
            claim: "Mean and P99 execution time under 0.1 ms",
            holds: unloaded.filter(|u| u.latency_ns.samples > 0).map(|u| u.latency_ns.p99 < 100_000),
            evidence: match unloaded {
                Some(u) => format!(
                    "unloaded (1 in flight): p50 {:.1} us, p99 {:.1} us; loaded (1024 in flight, queueing included): p99 {:.1} us",
                    u.latency_ns.p50 as f64 / 1e3,
                    u.latency_ns.p99 as f64 / 1e3,
                    off.latency_ns.p99 as f64 / 1e3
                ),
                None => LEFT_OUT.into(),
            },
        },
        Claim {
            claim: "100% of failures are contained at the appropriate level",
            holds: (c.subtasks_with_failed_attempts + c.escalated_domain_faults + c.meta_faults > 0)
                .then_some(c.escalated_all_attempts_failed + c.escalated_domain_faults + c.meta_faults == 0),
            evidence: format!(
                "failover absorbed {} of sub-tasks with a failed attempt ({} of {}); {} sub-tasks failed every attempt, {} domain faults and {} meta faults failed their task: nothing stands in for a domain or the meta level",
                pct(absorbed),
                c.absorbed_by_failover,
                c.subtasks_with_failed_attempts,
                c.escalated_all_attempts_failed,
                c.escalated_domain_faults,
                c.meta_faults
            ),
        },
        Claim {
            claim: "The seed's circuit breakers isolate failures without costing reliability",
            holds: (on.submitted > 0).then(|| within(ratio(k_off, off.submitted), k_on, on.submitted, Z999)),
            evidence: format!(
                "success {} with {} breakers (virtual time, open loop) vs {} without; agent breakers tripped {} times ({} attempts panic-routed), domain breakers {} times (shedding {} sub-tasks), meta {} times",
                pct(ratio(k_on, on.submitted)),
                breakers_of,
                pct(ratio(k_off, off.submitted)),
                b.agent_trips,
                b.panic_routed_attempts,
                b.domain_trips,
                c.shed_by_domain_breakers,
                b.meta_trips
            ),
        },
    ]
}

impl Level {
    fn measured_k(&self) -> u64 {
        (self.measured * self.n as f64).round() as u64
    }
}

fn print_tables(r: &Report) {
    let topo =
        if r.custom_topology { "the configured topology" } else { "the seed's 3 x 3 (API, Database, Auth x 3 agents)" };
    println!("metafed simulate: {topo}, simulated agents failing by the WORKLOADS.md oracle");
    let rate = |v: Option<f64>, varies: &str| v.map_or(varies.to_string(), pct);
    println!(
        "error rates: agents {}, domain faults {}, meta faults {}; {} {}; {} tasks per run, {} in all",
        rate(r.rates.agent, "per agent (from the file)"),
        rate(r.rates.domain, "per domain (from the file)"),
        pct(r.rates.meta),
        r.workers,
        if r.workers == 1 { "worker" } else { "workers" },
        r.tasks,
        r.tasks_total
    );
    println!();
    println!("1. Reliability per level (cumulative; W1 routing; 95% Wilson intervals)");
    println!(
        "   {:<14} {:>9} {:>9} {:>21} {:>13} {:>21} {:>9}",
        "level", "model", "measured", "95% CI", "with breakers", "95% CI", "seed"
    );
    for l in &r.levels {
        println!(
            "   {:<14} {:>9} {:>9} {:>21} {:>13} {:>21} {:>9}",
            format!("{} ({})", l.level, l.name),
            pct(l.predicted),
            pct(l.measured),
            format!("{} - {}", pct(l.ci95[0]), pct(l.ci95[1])),
            pct(l.measured_with_breakers),
            format!("{} - {}", pct(l.ci95_with_breakers[0]), pct(l.ci95_with_breakers[1])),
            pct(l.seed_claim)
        );
    }
    println!(
        "   model: P = (1 - f_meta) (1 - f_domain) (1 - e^3); \"measured\" runs with breakers disabled, \"with breakers\" with {} breakers.",
        r.rates.breakers
    );
    println!(
        "   with breakers: in virtual time, an open loop at {:.0} tasks/s; meta-level success ranged {} to {} over {} runs on",
        r.offered_rps,
        pct(r.with_breakers_spread[0]),
        pct(r.with_breakers_spread[1]),
        r.repeats
    );
    println!("   other task ids (the median run is shown); the same arguments give the same figures on any machine.");
    println!();
    println!("2. Depth x breadth (breakers off)");
    println!(
        "   {:<6} {:>9} {:>9} {:>21} {:>12} {:>10} {:>8}",
        "config", "model", "measured", "95% CI", "tasks/s", "p50", "seed"
    );
    for c in &r.configs {
        println!(
            "   {:<6} {:>9} {:>9} {:>21} {:>12} {:>10} {:>8}",
            c.name,
            pct(c.predicted),
            pct(c.measured),
            format!("{} - {}", pct(c.ci95[0]), pct(c.ci95[1])),
            c.tasks_per_s.map_or("-".into(), |t| format!("{t:.0}")),
            c.latency_ns.map_or("-".into(), |l| format!("{:.1} us", l.p50 as f64 / 1e3)),
            pct(c.seed_claim)
        );
    }
    println!();
    println!("3. Error-rate sweep: single agent vs 3 x 3 federation (breakers off; seed's claim in brackets)");
    println!("   {:<6} {:>18} {:>22} {:>10} {:>12}", "error", "single agent", "federation", "model", "difference");
    for s in &r.sweep {
        println!(
            "   {:<6} {:>18} {:>22} {:>10} {:>12}",
            pct(s.error_rate),
            format!("{} [{}]", pct(s.single.measured), pct(s.seed_claim_single)),
            format!("{} [{}]", pct(s.federation.measured), pct(s.seed_claim_federation)),
            pct(s.federation.predicted),
            format!("{:+.2} pts", s.improvement * 100.0)
        );
    }
    println!();
    println!(
        "4. Throughput and latency (submit to completion as the submitter saw it; loaded runs sample 1 task in 64)"
    );
    println!("   {:<44} {:>12} {:>10} {:>10} {:>10}", "run", "tasks/s", "p50", "p99", "p99.9");
    let us = |ns: u64| format!("{:.1} us", ns as f64 / 1e3);
    for (name, s) in [
        ("W1 loaded (1024 in flight), no breakers", Some(&r.runs.loaded_without_breakers)),
        ("W1 with breakers (virtual time, offered rate)", Some(&r.runs.loaded_with_breakers)),
        ("W1 unloaded (1 in flight), no breakers", r.runs.unloaded_without_breakers.as_ref()),
    ] {
        let Some(s) = s else { continue };
        match (s.tasks_per_s, s.latency_ns) {
            (Some(t), Some(l)) => {
                println!("   {:<44} {:>12.0} {:>10} {:>10} {:>10}", name, t, us(l.p50), us(l.p99), us(l.p999))
            }
            _ => println!("   {name:<44} {:>12} (left out by --reproducible)", "-"),
        }
    }
    println!();
    let c = &r.containment;
    println!("5. Containment (run with {} breakers)", r.rates.breakers);
    println!("   failed agent attempts                      {:>10}", c.failed_attempts);
    println!("   sub-tasks with a failed attempt            {:>10}", c.subtasks_with_failed_attempts);
    println!(
        "     absorbed by failover (agent level)       {:>10}  ({})",
        c.absorbed_by_failover,
        pct(ratio(c.absorbed_by_failover, c.subtasks_with_failed_attempts))
    );
    println!("     every attempt failed (task failed)       {:>10}", c.escalated_all_attempts_failed);
    println!("   domain faults (task failed)                {:>10}", c.escalated_domain_faults);
    println!("   meta faults (task failed)                  {:>10}", c.meta_faults);
    println!("   shed by open domain breakers               {:>10}", c.shed_by_domain_breakers);
    println!(
        "   breaker trips: agents {}, domains {}, meta {}; attempts panic-routed {}",
        r.breakers.agent_trips, r.breakers.domain_trips, r.breakers.meta_trips, r.breakers.panic_routed_attempts
    );
    println!("   tasks lost {}, completed twice {} (all runs)", c.lost, c.duplicated);
    println!();
    println!(
        "6. Recovery and containment: one fault each from 1 s to 2 s, in virtual time at {:.0} tasks/s",
        r.offered_rps
    );
    println!(
        "   {:<24} {:>10} {:>12} {:>12} {:>9} {:>15} {:>15} {:>8}",
        "fault", "opened", "closed", "success back", "steady", "during: theirs", "during: others", "seed"
    );
    for c in &r.recovery {
        let short = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:<24} {:>10} {:>12} {:>12} {:>9} {:>15} {:>15} {:>8}",
            c.fault,
            short(c.breaker_opened_ms),
            short(c.breaker_closed_ms),
            short(c.success_back_ms),
            pct(c.steady),
            pct(c.during_affected),
            c.during_others.map_or("-".into(), |d| format!("{} ({})", pct(d), c.steady_others.map_or("-".into(), pct))),
            format!("{:.0} ms", c.seed_claim_ms)
        );
    }
    println!(
        "   opened: after the fault began; closed, success back: after it ended (5 buckets of 10 ms in a row at the steady"
    );
    println!(
        "   success). During: success of the tasks that need the faulted part, and of the others (their steady value)."
    );
    println!();
    println!("7. The seed's claims");
    for cl in &r.claims {
        let verdict = match cl.holds {
            Some(true) => "holds",
            Some(false) => "does not hold",
            None => "n/a: no sample",
        };
        println!("   [{verdict}] {}", cl.claim);
        println!("          {}", cl.evidence);
    }
    println!();
    let fault = r.recovery.first().map_or("an agent down", |c| c.fault.as_str());
    println!(
        "8. What-if: the agent breaker's failure threshold and open time, {fault} from 1 s to 2 s at {:.0} tasks/s",
        r.offered_rps
    );
    println!(
        "   {:>9} {:>9} {:>14} {:>9} {:>13} {:>10} {:>13}",
        "failures", "open", "during fault", "overall", "failed calls", "closed", "success back"
    );
    for w in &r.what_if {
        let short = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:>9} {:>9} {:>14} {:>9} {:>13} {:>10} {:>13}",
            w.consecutive_failures,
            format!("{} ms", w.open_base_ms),
            pct(w.during_fault),
            pct(w.overall),
            w.failed_calls,
            short(w.breaker_closed_ms),
            short(w.success_back_ms)
        );
    }
    println!(
        "   during fault: success of the tasks of the agent's domain; failed calls: calls the down agent failed (what a"
    );
    println!(
        "   breaker spares); closed, success back: after the outage ended. Other settings as the main runs'; try yours with"
    );
    println!("   --offered-rps and --agent-error, or --config FILE.");
    println!();
    println!(
        "9. Hedging (W3 in virtual time at {:.0} tasks/s): 10 us calls, the first attempt of 1 task in 100 takes 1 ms",
        r.offered_rps
    );
    println!(
        "   {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "hedge", "tasks", "p50", "p99", "p99.9", "max", "extra calls"
    );
    for h in &r.hedging {
        println!(
            "   {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
            h.hedge,
            h.tasks,
            format!("{:.0} us", h.p50_us),
            format!("{:.0} us", h.p99_us),
            format!("{:.0} us", h.p999_us),
            format!("{:.0} us", h.max_us),
            format!("{} ({})", h.extra_calls, pct(h.extra_share))
        );
    }
    println!(
        "   In virtual time no thread hands work over, so this is what hedging does to the tail by itself; a live engine"
    );
    println!("   adds its hand-offs (metafed bench --workloads w3 measures that).");
    println!();
    println!(
        "10. A schedule in virtual time: load steps and faults on the seed's 3 x 3 (agents of mean latency 200 us)"
    );
    println!(
        "   {:<11} {:>9} {:<30} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "time", "tasks/s", "what", "tasks", "success", "domain", "opened", "closed"
    );
    for p in &r.schedule {
        let short = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:<11} {:>9.0} {:<30} {:>8} {:>9} {:>9} {:>9} {:>9}",
            format!("{:.1}-{:.1} s", p.from_s, p.to_s),
            p.offered,
            p.what,
            p.tasks,
            pct(p.success),
            pct(p.domain_success),
            short(p.breaker_opened_ms),
            short(p.breaker_closed_ms)
        );
    }
    println!(
        "   domain: success of the faulted agent's domain (API when none is); opened: the faulted agent's breaker, after"
    );
    println!("   the phase began; closed: after it ended. Tasks are counted in the phase they were submitted in.");
}
