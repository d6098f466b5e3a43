//! Deterministic simulation: the real engine on a virtual clock, driven on one thread. The same
//! inputs give the same run, transition for transition, whatever the machine is doing.

#![cfg(not(miri))]

use metafed::{
    AgentSpec, BreakerEvent, Completion, DomainId, DomainSet, Engine, EngineConfig, Latency, SimAgent, Task,
    TopologyBuilder,
};
use std::sync::{Arc, Mutex};

/// The seed's 3 x 3 with 12% agent failures and exponential latency (mean 200 us), the seed's
/// breakers; `rate` tasks per second of virtual time for `secs` seconds; the API domain down
/// from 0.2 s to 0.3 s. Returns everything observable, as text.
fn run(rate: f64, secs: f64, workers: usize) -> String {
    let mut b = TopologyBuilder::default();
    for (domain, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(domain).unwrap();
        for (i, a) in agents.iter().enumerate() {
            let sim = SimAgent {
                error_rate: 0.12,
                latency: Latency::Exponential { mean_us: 200.0 },
                seed: 7 + i as u64,
                ..SimAgent::default()
            };
            b.agent(d, *a, AgentSpec::sim(sim)).unwrap();
        }
    }
    let completions = Arc::new(Mutex::new(Vec::new()));
    let sink = completions.clone();
    let mut sim = Engine::builder(b.build().unwrap())
        .config(EngineConfig { workers, ..EngineConfig::default() })
        .on_complete(move |c: &Completion| {
            sink.lock().unwrap().push(format!("{} {:?} {:?} {}", c.id, c.status, c.reason, c.latency_ns))
        })
        .simulate()
        .unwrap();
    let gap = (1e9 / rate) as u64;
    let n = (rate * secs) as u64;
    let mut events: Vec<BreakerEvent> = Vec::new();
    for i in 0..n {
        let t = i * gap;
        sim.run_until(t);
        match t {
            200_000_000 => assert!(sim.engine().set_domain_down(DomainId(0), true)),
            300_000_000 => assert!(sim.engine().set_domain_down(DomainId(0), false)),
            _ => {}
        }
        let task =
            if i % 10 == 9 { Task::fan_out(i, DomainSet::first(3)) } else { Task::new(i, DomainId((i % 3) as u16)) };
        let _ = sim.engine().try_submit(&task);
    }
    sim.run_idle(u64::MAX);
    sim.engine().drain_events(&mut events);
    let stats = sim.engine().stats();
    let end = sim.now_ns();
    sim.finish();
    let c = completions.lock().unwrap();
    let mut out = format!("end {end}\ncompleted {}\n", c.len());
    for e in &events {
        out += &format!("{} {:?} {} {:?} {:?}\n", e.at_ns, e.level, e.index, e.transition.to, e.transition.cause);
    }
    out += &format!("ok {} failed {} rejected {}\n", stats.ok, stats.failed, stats.rejected);
    out += &c.join("\n");
    out
}

#[test]
fn the_same_inputs_give_the_same_run() {
    let first = run(20_000.0, 0.5, 2);
    assert!(first.lines().count() > 9_000, "{}", &first[..200]);
    for _ in 0..2 {
        assert!(run(20_000.0, 0.5, 2) == first, "a simulation with the same inputs differed");
    }
    // The fault opened the API domain's breaker, in virtual time, and it closed again after.
    let api: Vec<&str> = first.lines().filter(|l| l.contains(" Domain 0 ")).collect();
    assert!(api.iter().any(|l| l.contains("Open")), "{api:?}");
    assert!(api.last().is_some_and(|l| l.contains("Closed")), "{api:?}");
}

#[test]
fn virtual_time_moves_only_as_the_simulation_says() {
    let topology = metafed::Topology::seed(0.0).unwrap();
    let mut sim = Engine::builder(topology).simulate().unwrap();
    assert_eq!(sim.now_ns(), 0);
    sim.engine().try_submit(&Task::new(1, DomainId(0))).unwrap();
    sim.run_until(5_000);
    assert_eq!(sim.now_ns(), 5_000);
    let stats = sim.engine().stats();
    assert_eq!(stats.ok, 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(sim.now_ns(), 5_000, "wall-clock time does not move it");
    sim.finish();
}

#[test]
fn isolated_agents_cannot_be_simulated() {
    let mut b = TopologyBuilder::default();
    let d = b.domain("D").unwrap();
    b.agent(d, "iso", AgentSpec::handler(|r: &metafed::Request<'_>| Ok(r.task_id)).isolated()).unwrap();
    let err = Engine::builder(b.build().unwrap()).simulate().err().unwrap();
    assert!(err.to_string().contains("isolated"), "{err}");
}
