//! Deterministic simulation: the real engine on a virtual clock, driven on one thread. The same
//! inputs give the same run, transition for transition, whatever the machine is doing.

#![cfg(not(miri))]

use metafed::events::BreakerEvent;
use metafed::sim::{Latency, SimAgent};
use metafed::{AgentSpec, Completion, DomainId, DomainSet, Engine, EngineConfig, Task, TopologyBuilder};
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

/// A scenario drawn from `seed`: agents' error rates and latency, a fault schedule (domains and
/// agents down and up again), an offered load and a mix of fan-outs; run in virtual time.
/// Returns the run as text (as `run`), and checks that every accepted task completed once.
fn randomized(seed: u64) -> String {
    let mut state = seed;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut unit = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
    let mut b = TopologyBuilder::default();
    let domains = 1 + (unit() * 4.0) as usize;
    let mut agents = Vec::new();
    for d in 0..domains {
        let id = b.domain(format!("D{d}")).unwrap();
        for a in 0..1 + (unit() * 4.0) as usize {
            let latency = match (unit() * 3.0) as u32 {
                0 => Latency::None,
                1 => Latency::Fixed { us: 50.0 + unit() * 500.0 },
                _ => Latency::Exponential { mean_us: 50.0 + unit() * 500.0 },
            };
            let sim = SimAgent { error_rate: unit() * 0.4, latency, seed: seed ^ a as u64, ..SimAgent::default() };
            agents.push(b.agent(id, format!("A{a}"), AgentSpec::sim(sim)).unwrap());
        }
    }
    // Faults: (at ns, down or up, domain or agent index).
    let mut faults: Vec<(u64, bool, Result<u16, metafed::AgentId>)> = Vec::new();
    for _ in 0..(unit() * 4.0) as usize {
        let from = (unit() * 300e6) as u64;
        let to = from + (unit() * 200e6) as u64;
        let what = if unit() < 0.5 {
            Ok((unit() * domains as f64) as u16)
        } else {
            Err(agents[(unit() * agents.len() as f64) as usize])
        };
        faults.push((from, true, what));
        faults.push((to, false, what));
    }
    faults.sort_by_key(|f| f.0);
    let rate = 2_000.0 + unit() * 30_000.0;
    let workers = 1 + (unit() * 3.0) as usize;
    let fan_every = 2 + (unit() * 10.0) as u64;
    let completions = Arc::new(Mutex::new(Vec::new()));
    let sink = completions.clone();
    let mut sim = Engine::builder(b.build().unwrap())
        .config(EngineConfig { workers, ..EngineConfig::default() })
        .on_complete(move |c: &Completion| {
            sink.lock().unwrap().push((c.id, format!("{:?} {:?} {}", c.status, c.reason, c.latency_ns)))
        })
        .simulate()
        .unwrap();
    let gap = (1e9 / rate) as u64;
    let mut accepted = Vec::new();
    let mut f = 0;
    for i in 0..(rate * 0.5) as u64 {
        let t = i * gap;
        sim.run_until(t);
        while f < faults.len() && faults[f].0 <= t {
            let (_, down, what) = faults[f];
            match what {
                Ok(d) => assert!(sim.engine().set_domain_down(DomainId(d), down)),
                Err(a) => assert!(sim.engine().set_agent_down(a, down)),
            }
            f += 1;
        }
        let task = if i % fan_every == 0 && domains > 1 {
            Task::fan_out(i, DomainSet::first(domains))
        } else {
            Task::new(i, DomainId((i % domains as u64) as u16))
        };
        if sim.engine().try_submit(&task).is_ok() {
            accepted.push(i);
        }
    }
    sim.run_idle(u64::MAX);
    let mut events: Vec<BreakerEvent> = Vec::new();
    sim.engine().drain_events(&mut events);
    sim.finish();
    let mut c = completions.lock().unwrap().clone();
    c.sort_by_key(|x| x.0);
    let ids: Vec<u64> = c.iter().map(|x| x.0).collect();
    assert_eq!(ids, accepted, "every accepted task completed exactly once");
    let mut out = format!("{domains} domains, {} agents, {rate:.0}/s, {workers} workers\n", agents.len());
    for e in &events {
        out += &format!("{} {:?} {} {:?} {:?}\n", e.at_ns, e.level, e.index, e.transition.to, e.transition.cause);
    }
    for (id, line) in c.iter() {
        out += &format!("{id} {line}\n");
    }
    out
}

#[test]
fn randomized_runs_lose_nothing_and_replay_by_their_seed() {
    // A new seed each run, unless METAFED_SEED gives one; the test prints it (a failing test's
    // output is shown), and the same seed replays the same run exactly.
    let seed = std::env::var("METAFED_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "seed {seed}; replay with METAFED_SEED={seed} cargo test --release -p metafed --test integration simulation::randomized"
    );
    for k in 0..3u64 {
        let s = seed.wrapping_add(k);
        let first = randomized(s);
        assert!(randomized(s) == first, "seed {s}: the same seed gave another run");
    }
}

#[test]
fn a_load_in_steps_and_a_simulated_agent_changed_while_running() {
    use metafed::{AgentId, sim::Load};
    let mut b = TopologyBuilder::default();
    let d = b.domain("D").unwrap();
    let sim = SimAgent { latency: Latency::Fixed { us: 100.0 }, ..SimAgent::default() };
    b.agent(d, "only", AgentSpec::sim(sim)).unwrap();
    b.breakers(metafed::Levels::disabled());
    let mut sim = Engine::builder(b.build().unwrap()).simulate().unwrap();
    // 1,000 tasks/s for 1 s, then 4,000/s: 5,000 tasks over 2 s of virtual time. From 1.5 s the
    // agent fails every call; from then on every task fails.
    let mut failing = false;
    let run = sim.open_loop_steps(&Load::w1(5_000), &[(0, 1_000.0), (1_000_000_000, 4_000.0)], 100_000_000, |e, t| {
        if t >= 1_500_000_000 && !failing {
            failing = true;
            e.set_sim_agent(AgentId(0), Some(1.0), Some(std::time::Duration::from_micros(50))).unwrap();
        }
    });
    assert_eq!(run.report.completed, 5_000);
    let per_bucket: Vec<u64> = run.buckets.iter().map(|b| b[0].0).collect();
    assert_eq!(per_bucket[..10], [100; 10], "1,000/s in the first second");
    assert_eq!(per_bucket[10..20], [400; 10], "4,000/s in the second");
    let ok: Vec<u64> = run.buckets.iter().map(|b| b[0].1).collect();
    assert_eq!(ok[..15].iter().sum::<u64>(), 3_000, "all succeed before the change");
    assert_eq!(ok[15..].iter().sum::<u64>(), 0, "none after");
    assert!(sim.engine().stats().failed == 2_000 && run.report.ok == 3_000);
    let audit = sim.engine().audit_log();
    assert_eq!(audit[0].action, "sim_agent");
    assert!(audit[0].to.contains("error_rate 1") && audit[0].to.contains("50"), "{:?}", audit[0]);
    // Bad values name themselves; only simulated agents can be changed this way.
    let err = sim.engine().set_sim_agent(AgentId(0), Some(1.5), None).unwrap_err();
    assert!(err.to_string().contains("error_rate must be in [0, 1]"), "{err}");
    let h = sim.engine().add_agent(d, "real", AgentSpec::handler(|_: &metafed::Request<'_>| Ok(1))).unwrap();
    assert!(sim.engine().set_sim_agent(h, Some(0.5), None).unwrap_err().to_string().contains("not a simulated agent"));
}

/// Containment against a paired control: the seed's 3 x 3 at its error rates (12% agents, 8%
/// domains, 5% meta) with its breakers, W1 from the same task ids twice, once with a fault in
/// domain 0 from 1 s to 2 s and once without. The tasks of the other domains must have the same
/// outcomes, bucket by bucket, in both: the fault's effect on them is exactly zero, whatever
/// chance trips the seed's breakers make in both runs alike. Every single-agent outage of
/// domain 0 and the whole domain's, over several id ranges.
#[test]
fn a_fault_in_one_domain_changes_nothing_elsewhere_against_a_paired_control() {
    use metafed::sim::{Load, Workload};
    const MS: u64 = 1_000_000;
    let mut b = metafed::Topology::seed_builder(0.12);
    for d in 0..3 {
        b.domain_fault_rate(DomainId(d), 0.08).unwrap();
    }
    b.meta_fault_rate(0.05);
    let topo = b.build().unwrap();
    let run = |first_id: u64, fault: Option<Option<usize>>| {
        let mut sim = Engine::builder(topo.clone()).simulate().unwrap();
        let load = Load { tasks: 15_000, in_flight: 1, first_id, workload: Workload::Route, sample_every: 64 };
        let agents = topo.agents_of(DomainId(0)).to_vec();
        let mut on = false;
        let r = sim.open_loop(&load, 5_000.0, 100 * MS, |e, t| {
            let want = fault.is_some() && (1_000 * MS..2_000 * MS).contains(&t);
            if want != on {
                on = want;
                match fault.flatten() {
                    Some(a) => assert!(e.set_agent_down(agents[a], want)),
                    None => assert!(e.set_domain_down(DomainId(0), want)),
                }
            }
        });
        sim.finish();
        assert_eq!((r.report.lost, r.report.duplicated), (0, 0));
        r.buckets
    };
    let mut affected = 0;
    for seed in 0..4u64 {
        let first_id = seed << 40;
        let control = run(first_id, None);
        for fault in [Some(0), Some(1), Some(2), None] {
            let faulted = run(first_id, Some(fault));
            assert_eq!(faulted.len(), control.len());
            for (b, (f, c)) in faulted.iter().zip(&control).enumerate() {
                assert_eq!(&f[1..], &c[1..], "seed {seed}, fault {fault:?}: other domains differ in bucket {b}");
                affected += u64::from(f[0] != c[0]);
            }
        }
    }
    assert!(affected > 0, "the faults did change domain 0's own outcomes");
}
