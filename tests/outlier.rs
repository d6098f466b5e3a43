//! Outlier ejection relative to the domain's peers, in virtual time: a small domain ejects its
//! failing agent (one at most, never the last), it returns after its ejection time, and an agent
//! far slower than its peers is ejected by latency (W6).

use metafed::breaker::{BreakerConfig, BreakerState, TransitionCause};
use metafed::events::{BreakerEvent, Level};
use metafed::policy::Outlier;
use metafed::sim::{Latency, Load, SimAgent, Workload};
use metafed::{AgentSpec, DomainId, Engine, Levels, Topology};
use std::time::Duration;

const MS: u64 = 1_000_000;

/// Breakers enabled (so an agent can be ejected) that never trip by themselves.
fn quiet_breakers() -> Levels {
    let never = |c: BreakerConfig| BreakerConfig { consecutive_failures: 0, failure_rate: 0.0, ..c };
    let l = Levels::default();
    Levels { agent: never(l.agent), domain: never(l.domain), meta: never(l.meta) }
}

fn domain(agents: &[(&str, SimAgent)], outlier: Option<Outlier>) -> Topology {
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    for (name, sim) in agents {
        b.agent(d, *name, AgentSpec::sim(sim.clone())).unwrap();
    }
    b.breakers(quiet_breakers());
    if let Some(o) = outlier {
        b.outlier(d, o).unwrap();
    }
    b.build().unwrap()
}

fn io(us: f64, error_rate: f64, seed: u64) -> SimAgent {
    SimAgent { latency: Latency::Fixed { us }, io: true, error_rate, seed, ..SimAgent::default() }
}

/// For each agent, the intervals (from, to) its breaker was open, from the events.
fn open_intervals(events: &[BreakerEvent], agents: usize, end: u64) -> Vec<Vec<(u64, u64)>> {
    let mut out = vec![Vec::new(); agents];
    let mut since = vec![None; agents];
    for e in events.iter().filter(|e| e.level == Level::Agent) {
        let a = usize::from(e.index);
        match (e.transition.to, since[a]) {
            (BreakerState::Open, None) => since[a] = Some(e.at_ns),
            (BreakerState::Closed, Some(t)) => {
                out[a].push((t, e.at_ns));
                since[a] = None;
            }
            _ => {}
        }
    }
    for (a, s) in since.iter().enumerate() {
        if let Some(t) = s {
            out[a].push((*t, end));
        }
    }
    out
}

#[test]
fn a_three_agent_domain_ejects_its_failing_agent_and_never_two() {
    // Two of three agents fail 60% of their calls: the failure rate over 20 calls ejects one
    // (Envoy's 10% would eject none of three); the domain keeps the other two in, and the first
    // returns after its second (base 1 s).
    let outlier = Outlier {
        consecutive_failures: 0,
        failure_rate: 0.5,
        min_calls: 20,
        base_ejection: Duration::from_secs(1),
        max_ejection: Duration::from_secs(4),
        ..Outlier::default()
    };
    let agents = [("ok", io(500.0, 0.0, 1)), ("bad", io(500.0, 0.6, 2)), ("worse", io(500.0, 0.6, 3))];
    let mut sim = Engine::builder(domain(&agents, Some(outlier))).simulate().unwrap();
    let load = Load { tasks: 40_000, in_flight: 1, first_id: 0, workload: Workload::Route, sample_every: 1 };
    let mut events = Vec::new();
    let r = sim.open_loop(&load, 4_000.0, 1_000 * MS, |e, _| {
        e.drain_events(&mut events);
    });
    sim.engine().drain_events(&mut events);
    assert_eq!((r.report.lost, r.report.duplicated), (0, 0), "{:?}", r.report);
    let stats = sim.engine().stats();
    let end = sim.now_ns();
    let ejected: Vec<u64> = stats.agents.iter().map(|a| a.breaker.ejected).collect();
    assert_eq!(ejected[0], 0, "the healthy agent is never ejected");
    assert!(ejected[1] + ejected[2] >= 3, "ejections {ejected:?}");
    // Every trip from closed is an ejection (a failed probe on the way back reopens as after any
    // trip).
    for e in events.iter().filter(|e| e.transition.to == BreakerState::Open) {
        let want = if e.transition.from == BreakerState::Closed {
            TransitionCause::OutlierFailureRate
        } else {
            TransitionCause::ProbeFailed
        };
        assert_eq!(e.transition.cause, want, "{e:?}");
    }
    // Never two out at once.
    let open = open_intervals(&events, 3, end);
    for &(s1, e1) in &open[1] {
        for &(s2, e2) in &open[2] {
            assert!(e1 <= s2 || e2 <= s1, "both out: {s1}..{e1} and {s2}..{e2}");
        }
    }
    // The first ejection lasts its second, then the agent probes its way back.
    let first = open.iter().flatten().min().copied().expect("an ejection");
    assert!(first.1 - first.0 >= 1_000 * MS, "{first:?}");
    // Every task completed; with one bad agent out the domain succeeds more often than the
    // agents' average alone would allow.
    assert_eq!(r.report.ok + r.report.failed + r.report.timed_out + r.report.rejected, 40_000);
    sim.finish();
}

#[test]
fn an_agent_far_slower_than_its_peers_is_ejected_by_latency() {
    // W6 by round-robin: three 1 ms agents, one 10 ms on 30% of its calls.
    let slow = SimAgent {
        latency: Latency::LongTail { base_us: 1_000.0, slow_us: 10_000.0, slow_rate: 0.3 },
        io: true,
        seed: 3,
        ..SimAgent::default()
    };
    let agents = [("a", io(1_000.0, 0.0, 1)), ("b", io(1_000.0, 0.0, 2)), ("slow", slow)];
    let run = |outlier: Option<Outlier>| {
        let mut sim = Engine::builder(domain(&agents, outlier)).simulate().unwrap();
        let load = Load { tasks: 20_000, in_flight: 1, first_id: 0, workload: Workload::Route, sample_every: 1 };
        let r = sim.open_loop(&load, 5_000.0, 1_000 * MS, |_, _| {});
        assert_eq!((r.report.lost, r.report.duplicated, r.report.ok), (0, 0, 20_000));
        let stats = sim.engine().stats();
        let calls: u64 = stats.agents.iter().map(|a| a.calls).sum();
        let out =
            (r.latency.percentiles().p99, stats.agents[2].calls as f64 / calls as f64, stats.agents[2].breaker.ejected);
        sim.finish();
        out
    };
    let (rr_p99, rr_share, _) = run(None);
    let latency = Outlier {
        consecutive_failures: 0,
        latency_factor: 2.0,
        min_samples: 10,
        base_ejection: Duration::from_secs(1),
        ..Outlier::default()
    };
    let (p99, share, ejected) = run(Some(latency));
    assert!(ejected >= 1);
    assert!(share < rr_share / 2.0, "slow agent's share {share} against {rr_share}");
    assert!(p99 * 5 <= rr_p99, "p99 {p99} against round-robin's {rr_p99}");
}

#[test]
fn outlier_detection_changes_while_tasks_run_and_loads_from_toml() {
    let agents = [("a", io(500.0, 0.0, 1)), ("b", io(500.0, 1.0, 2))];
    let mut sim = Engine::builder(domain(&agents, None)).simulate().unwrap();
    let d = DomainId(0);
    assert_eq!(sim.engine().domain_outlier(d), None);
    let _actor = metafed::audit::act_as("test", "outlier drill");
    let o =
        Outlier { base_ejection: Duration::from_secs(10), max_ejection: Duration::from_secs(10), ..Outlier::default() };
    sim.engine().set_domain_outlier(d, Some(o)).unwrap();
    assert_eq!(sim.engine().domain_outlier(d), Some(o));
    let load = Load { tasks: 2_000, in_flight: 1, first_id: 0, workload: Workload::Route, sample_every: 1 };
    sim.open_loop(&load, 1_000.0, 1_000 * MS, |_, _| {});
    // The always-failing agent is ejected after five failures in a row and stays out 10 s.
    let b = &sim.engine().stats().agents[1];
    assert_eq!(b.breaker.ejected, 1);
    assert!(b.calls < 20, "{} calls", b.calls);
    let bad = Outlier { latency_factor: 0.5, ..o };
    assert!(sim.engine().set_domain_outlier(d, Some(bad)).unwrap_err().to_string().contains("latency_factor"));
    sim.engine().set_domain_outlier(d, None).unwrap();
    assert_eq!(sim.engine().domain_outlier(d), None);
    let log = sim.engine().audit_log();
    assert_eq!(log.iter().filter(|r| r.action == "domain_outlier").count(), 2);
    sim.finish();

    let text = "[[domains]]\nname = \"D\"\noutlier = { consecutive_failures = 3, latency_factor = 4.0 }\n\
                agents = [{ name = \"a\", sim = { error_rate = 0.0 } }]\n";
    let t = Topology::from_toml(text).unwrap();
    let o = t.outlier(DomainId(0)).copied().unwrap();
    assert_eq!((o.consecutive_failures, o.latency_factor, o.base_ejection), (3, 4.0, Duration::from_secs(30)));
    let bad = Topology::from_toml(&text.replace("4.0", "0.5")).unwrap_err().to_string();
    assert!(bad.contains("latency_factor"), "{bad}");
}

#[test]
fn equal_agents_at_low_traffic_are_never_ejected_by_latency() {
    // Three equal 1 ms agents, 5 tasks a second for 20 s: each agent's estimate is compared as
    // its last sample left it with its peers' as theirs left them (a peer's estimate read 0.6 s
    // 0.4 s after its sample has decayed by 4% and made the agent just sampled look slow).
    let agents = [("a", io(1_000.0, 0.0, 1)), ("b", io(1_000.0, 0.0, 2)), ("c", io(1_000.0, 0.0, 3))];
    let o = Outlier { consecutive_failures: 0, latency_factor: 1.01, min_samples: 5, ..Outlier::default() };
    let mut sim = Engine::builder(domain(&agents, Some(o))).simulate().unwrap();
    let load = Load { tasks: 100, in_flight: 1, first_id: 0, workload: Workload::Route, sample_every: 1 };
    let r = sim.open_loop(&load, 5.0, 1_000 * MS, |_, _| {});
    assert_eq!(r.report.ok, 100);
    let ejected: u64 = sim.engine().stats().agents.iter().map(|a| a.breaker.ejected).sum();
    assert_eq!(ejected, 0);
    sim.finish();
}
