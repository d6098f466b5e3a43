//! Adaptive shedding in the domain (CoDel's idea), in virtual time: a domain offered more than
//! its agents can take keeps its queue time near the target by shedding with a reason of its
//! own, while another domain is unaffected and every task has exactly one outcome.

use metafed::policy::Shedding;
use metafed::sim::{Latency, LatencyHistogram, SimAgent};
use metafed::{AgentSpec, Completion, DomainId, Engine, EngineConfig, Levels, Reason, Status, Task, Topology};
use std::time::Duration;

const MS: u64 = 1_000_000;

/// "Slow": three I/O agents of 2 ms, each at most 4 attempts at once (6,000 sub-tasks/s in all);
/// "Fast": three of 100 us, no limit. Breakers off.
fn topology(shedding: Option<Shedding>) -> Topology {
    let mut b = Topology::builder();
    let slow = b.domain("Slow").unwrap();
    let fast = b.domain("Fast").unwrap();
    for i in 0..3u64 {
        let s = SimAgent { latency: Latency::Fixed { us: 2_000.0 }, io: true, seed: i, ..SimAgent::default() };
        b.agent(slow, format!("s{i}"), AgentSpec::sim(s).max_concurrency(4)).unwrap();
        let f = SimAgent { latency: Latency::Fixed { us: 100.0 }, io: true, seed: i, ..SimAgent::default() };
        b.agent(fast, format!("f{i}"), AgentSpec::sim(f)).unwrap();
    }
    b.breakers(Levels::disabled());
    if let Some(s) = shedding {
        b.shedding(slow, s).unwrap();
    }
    b.build().unwrap()
}

struct Run {
    /// Per domain: outcomes by reason, and the latency of the tasks that succeeded.
    reasons: [[u64; Reason::COUNT]; 2],
    latency: [LatencyHistogram; 2],
}

/// 20,000 tasks/s for 1 s of virtual time, alternating between the domains: "Slow" is offered
/// 10,000 sub-tasks/s against its 6,000.
fn run(shedding: Option<Shedding>) -> Run {
    let config = EngineConfig { max_in_flight: 65_536, ..EngineConfig::default() };
    let mut sim = Engine::builder(topology(shedding)).config(config).simulate().unwrap();
    let n = 20_000u64;
    let mut seen = vec![false; n as usize];
    let mut out = vec![Completion::default(); 512];
    let mut r = Run { reasons: [[0; Reason::COUNT]; 2], latency: [LatencyHistogram::new(), LatencyHistogram::new()] };
    let mut take = |sim: &metafed::Simulation, r: &mut Run| loop {
        let got = sim.engine().poll(&mut out);
        for c in &out[..got] {
            assert!(!std::mem::replace(&mut seen[c.id as usize], true), "task {} completed twice", c.id);
            let d = (c.id % 2) as usize;
            r.reasons[d][c.reason as usize] += 1;
            // The latency of the tasks submitted after the first half second: the steady state
            // (CoDel needs an interval or two to see the overload).
            if c.status == Status::Ok && c.id >= 10_000 {
                r.latency[d].record(c.latency_ns);
            }
        }
        if got < out.len() {
            return;
        }
    };
    for id in 0..n {
        sim.run_until(id * 1_000_000_000 / 20_000);
        take(&sim, &mut r);
        sim.engine().try_submit(&Task::new(id, DomainId((id % 2) as u16))).unwrap();
    }
    sim.run_idle(u64::MAX);
    take(&sim, &mut r);
    sim.finish();
    assert!(seen.iter().all(|&s| s), "every task has one outcome");
    r
}

#[test]
fn an_overloaded_domain_sheds_to_its_target_and_the_others_run_on() {
    let without = run(None);
    let shedding =
        Shedding { target: Duration::from_millis(5), interval: Duration::from_millis(100), queue_capacity: 0 };
    let with = run(Some(shedding));
    let p99 = |r: &Run, d: usize| r.latency[d].value_at_quantile(0.99);
    let reason = |r: &Run, x: Reason| r.reasons[0][x as usize];
    // Without shedding the queue grows until its sub-tasks hit the domain timeout (200 ms):
    // goodput collapses to what ran before the queue was 200 ms long.
    assert_eq!(reason(&without, Reason::DomainOverloaded), 0);
    assert!(reason(&without, Reason::DomainTimeout) > 7_000, "{:?}", without.reasons[0]);
    assert!(reason(&without, Reason::None) < 3_000, "{:?}", without.reasons[0]);
    // With it, once the overload is seen, the tasks that run wait about the target: their p99
    // stays within a few targets of the 2 ms call, and the rest are shed with a reason of
    // their own.
    assert!(p99(&with, 0) <= 2 * MS + 2 * 5 * MS, "p99 with shedding {} ns", p99(&with, 0));
    let (shed, ok) = (reason(&with, Reason::DomainOverloaded), reason(&with, Reason::None));
    // The agents' capacity (6,000 a second) is what succeeds; the rest is shed.
    assert!(shed > 3_000 && ok > 5_500, "shed {shed}, ok {ok}");
    assert_eq!(shed + ok, 10_000, "nothing times out: {:?}", with.reasons[0]);
    // The other domain: every task succeeds, as fast as without.
    for r in [&without, &with] {
        assert_eq!(r.reasons[1][Reason::None as usize], 10_000);
        assert!(p99(r, 1) < MS);
    }
}

#[test]
fn a_full_wait_queue_sheds_at_once_and_settings_change_live() {
    let full = Shedding { queue_capacity: 8, ..Shedding::default() };
    let mut sim = Engine::builder(topology(None)).simulate().unwrap();
    let d = DomainId(0);
    assert_eq!(sim.engine().domain_shedding(d), None);
    let _actor = metafed::audit::act_as("test", "shedding drill");
    sim.engine().set_domain_shedding(d, Some(full)).unwrap();
    assert_eq!(sim.engine().domain_shedding(d), Some(full));
    // 100 sub-tasks at once: 12 take the agents' places, 8 wait, the rest are shed at once.
    for id in 0..100u64 {
        sim.engine().try_submit(&Task::new(id, d)).unwrap();
    }
    sim.run_idle(u64::MAX);
    let mut out = vec![Completion::default(); 128];
    let got = sim.engine().poll(&mut out);
    assert_eq!(got, 100);
    let shed = out[..got].iter().filter(|c| c.reason == Reason::DomainOverloaded).count();
    assert!((70..=80).contains(&shed), "{shed} shed");
    assert!(out[..got].iter().filter(|c| c.reason == Reason::DomainOverloaded).all(|c| c.status == Status::Rejected));
    let stats = sim.engine().stats();
    assert_eq!(stats.domains[0].overloaded, shed as u64);
    assert_eq!(stats.domains[0].failed, 0, "shedding is not the domain failing");
    let bad = Shedding { interval: Duration::ZERO, ..full };
    assert!(sim.engine().set_domain_shedding(d, Some(bad)).unwrap_err().to_string().contains("interval"));
    sim.engine().set_domain_shedding(d, None).unwrap();
    assert_eq!(sim.engine().domain_shedding(d), None);
    assert_eq!(sim.engine().audit_log().iter().filter(|r| r.action == "domain_shedding").count(), 2);
    sim.finish();

    let text = "[[domains]]\nname = \"D\"\nshedding = { target = 10.0, queue_capacity = 64 }\n\
                agents = [{ name = \"a\", sim = { error_rate = 0.0 } }]\n";
    let t = Topology::from_toml(text).unwrap();
    let s = t.shedding(DomainId(0)).copied().unwrap();
    assert_eq!((s.target, s.interval, s.queue_capacity), (Duration::from_millis(10), Duration::from_millis(100), 64));
}
