//! Section 11: cross-domain rerouting, against the reliability model with breadth at the domain
//! level. The seed's 3 x 3 where each domain has one alternate, and depth x breadth again with
//! breadth at every level but the meta level's (one meta orchestrator). Breakers off, live:
//! with breakers off every outcome is the oracle's whatever the timing.

use super::figures::{ci, ratio};
use super::report::{Breadth, Reroute};
use super::runner::{Halt, Runner};
use metafed::model;
use metafed::sim::SimAgent;
use metafed::{AgentSpec, DomainId, Levels, Topology};
use metafed_bench::driver::{Load, Workload};

/// The domains tasks ask for (`primaries`), each of `agents` agents failing at `e` with domain
/// fault rate `fd`, and behind each `alternates` more domains of the same kind, its alternates
/// in order; meta fault rate `fm`; breakers disabled. The primaries take ids 0 to
/// `primaries.len() - 1`, so W1 over the first that many domains asks for them only.
pub(super) fn with_alternates(
    primaries: &[&str],
    alternates: usize,
    agents: usize,
    (e, fd, fm): (f64, f64, f64),
) -> Result<Topology, String> {
    let s = |e: metafed::Error| e.to_string();
    let mut b = Topology::builder();
    let mut add = |name: String| -> Result<DomainId, String> {
        let d = b.domain(name).map_err(s)?;
        for i in 0..agents {
            b.agent(d, format!("Agent{i}"), AgentSpec::sim(SimAgent::with_error_rate(e))).map_err(s)?;
        }
        b.domain_fault_rate(d, fd).map_err(s)?;
        Ok(d)
    };
    let firsts: Vec<DomainId> = primaries.iter().map(|p| add((*p).to_owned())).collect::<Result<_, _>>()?;
    let mut alts = Vec::new();
    for p in primaries {
        alts.push((1..=alternates).map(|k| add(format!("{p}-alt{k}"))).collect::<Result<Vec<_>, _>>()?);
    }
    for (d, a) in firsts.iter().zip(&alts) {
        b.alternates(*d, a).map_err(s)?;
    }
    b.meta_fault_rate(fm).breakers(Levels::disabled());
    b.build().map_err(s)
}

/// Runs W1 over the primaries of `topo`; returns (model, measured, its 95% interval, tasks,
/// sub-tasks rerouted per task).
fn measure(r: &mut Runner, step: &str, topo: Topology, primaries: u16, n: u64) -> Result<Breadth, Halt> {
    let p = model::predict_domains(&topo, |a| topo.sim_error_rate(a).unwrap_or(0.0));
    let predicted =
        (0..primaries).map(|d| model::task_success(&topo, &p, metafed::DomainSet::one(DomainId(d)))).sum::<f64>()
            / f64::from(primaries);
    let load = Load { workload: Workload::RouteFirst(primaries), ..Load::w1(n) };
    let (rep, stats) = r.run(step, topo, load)?;
    let rerouted: u64 = stats.domains.iter().map(|d| d.rerouted).sum();
    Ok(Breadth {
        agent_breadth: 0,
        domain_breadth: 0,
        predicted,
        measured: ratio(rep.ok, rep.submitted),
        ci95: ci(rep.ok, rep.submitted),
        tasks: rep.submitted,
        reroutes_per_task: ratio(rerouted, rep.submitted),
    })
}

/// The section's runs at the agents', domains' and meta level's error rates `rates`.
pub(super) fn reroute_runs(r: &mut Runner, n: u64, rates: (f64, f64, f64)) -> Result<Reroute, Halt> {
    let seed = ["API", "Database", "Auth"];
    let mut shapes = Vec::new();
    for alternates in [0, 1] {
        let topo = with_alternates(&seed, alternates, 3, rates)?;
        let step = format!("rerouting: 3 x 3, {alternates} alternate(s) per domain");
        shapes.push(Breadth {
            agent_breadth: 3,
            domain_breadth: 1 + alternates as u32,
            ..measure(r, &step, topo, 3, n)?
        });
    }
    let mut grid = Vec::new();
    for agents in [1, 3] {
        for alternates in 0..3 {
            let topo = with_alternates(&["D"], alternates, agents, rates)?;
            let step = format!("rerouting: depth x breadth, {agents} agent(s), {} domain(s)", 1 + alternates);
            let b = measure(r, &step, topo, 1, n / 2)?;
            grid.push(Breadth { agent_breadth: agents as u32, domain_breadth: 1 + alternates as u32, ..b });
        }
    }
    Ok(Reroute { seed: shapes, grid })
}

/// The tasks [`reroute_runs`] runs for `n` tasks per run.
pub(super) fn reroute_tasks(n: u64) -> u64 {
    2 * n + 6 * (n / 2)
}
