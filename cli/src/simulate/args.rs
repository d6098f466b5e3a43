//! The command line of `metafed simulate`, and the error rates a run uses.

use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Tasks per run (at least 1,000): each of the main runs, each depth x breadth
    /// configuration; each sweep point runs half as many.
    #[arg(long, default_value = "1000000", allow_hyphen_values = true, value_parser = crate::parse::parse_count::<1000>)]
    pub(super) tasks: u64,
    /// Runs with breakers enabled, each on other task ids (so other oracle draws); the table
    /// reports their spread (1 to 20). They run in virtual time (see --offered-rps), so the
    /// same arguments give the same results on any machine.
    #[arg(long, default_value = "3", allow_hyphen_values = true, value_parser = crate::parse::parse_count::<1>)]
    pub(super) repeats: u64,
    /// The offered load of the runs with breakers and of the recovery runs, in tasks per second
    /// of virtual time (default: the seed's 47,207). Breakers, windows, timeouts and open times
    /// then act on that load, whatever the machine's speed.
    #[arg(long, default_value_t = 47_207.0)]
    pub(super) offered_rps: f64,
    /// Leave out what is measured on the wall clock (throughput, latency, the unloaded run):
    /// what remains is a pure function of the arguments, byte for byte (with --json).
    #[arg(long)]
    pub(super) reproducible: bool,
    /// Also write the figures, as SVG, into this folder (created if needed): reliability
    /// against the agents' error rate, and success and breaker state around each injected fault.
    #[arg(long)]
    pub(super) plot: Option<PathBuf>,
    /// Chooses the task ids (and so, through the oracle, every failure): run with seed `s`
    /// sends ids from `s * 2^40`.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// The agents' error rate (the oracle's p per attempt; default 0.12). With --config it
    /// overrides every simulated agent's rate in the file.
    #[arg(long)]
    pub(super) agent_error: Option<f64>,
    /// The domain level's fault rate: a domain's sub-task fails as a whole, whatever its agents
    /// do (a correlated fault; default 0.08). With --config it overrides the file's.
    #[arg(long)]
    pub(super) domain_error: Option<f64>,
    /// The meta level's fault rate: admission or decomposition fails (default 0.05). With
    /// --config it overrides the file's.
    #[arg(long)]
    pub(super) meta_error: Option<f64>,
    /// A TOML file (topology, breakers, `[engine]`) for the main runs instead of the seed's
    /// 3 x 3; the depth x breadth table and the sweep keep the seed's shapes.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub(super) json: bool,
    /// Worker threads, 0 to 1,024 (0: one per core in the affinity mask).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(super) workers: Option<u16>,
    /// Do not pin workers to cores.
    #[arg(long)]
    pub(super) no_pin: bool,
}

/// The error rates and breakers the main runs used.
#[derive(Serialize)]
pub(super) struct Rates {
    /// Every simulated agent's error rate, when they share one.
    pub(super) agent: Option<f64>,
    /// Every domain's fault rate, when they share one.
    pub(super) domain: Option<f64>,
    pub(super) meta: f64,
    pub(super) breakers: &'static str,
}

pub(super) fn check_rate(name: &str, r: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&r) { Ok(()) } else { Err(format!("--{name} must be in [0, 1], got {r}")) }
}
