//! How a domain chooses its agents: round-robin against the power of two choices over peak-EWMA
//! latency, in virtual time (W6: one agent of the domain ten times slower on 30% of its calls),
//! and the balance changed while tasks run.

use metafed::policy::Balance;
use metafed::sim::{Latency, Load, SimAgent, Workload};
use metafed::{AgentSpec, DomainId, Engine, Levels, Topology};

const MS: u64 = 1_000_000;

/// One domain of three I/O agents of 1 ms; the third takes 10 ms on 30% of its calls.
fn w6_domain(balance: Balance) -> Topology {
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    let fast = |seed| SimAgent { latency: Latency::Fixed { us: 1_000.0 }, io: true, seed, ..SimAgent::default() };
    b.agent(d, "a", AgentSpec::sim(fast(1))).unwrap();
    b.agent(d, "b", AgentSpec::sim(fast(2))).unwrap();
    let slow = SimAgent {
        latency: Latency::LongTail { base_us: 1_000.0, slow_us: 10_000.0, slow_rate: 0.3 },
        io: true,
        seed: 3,
        ..SimAgent::default()
    };
    b.agent(d, "slow", AgentSpec::sim(slow)).unwrap();
    b.breakers(Levels::disabled());
    b.balance(d, balance).unwrap();
    b.build().unwrap()
}

struct W6 {
    p50: u64,
    p99: u64,
    slow_share: f64,
    calls: u64,
}

/// 20,000 tasks at 5,000 per second (about 10 in flight), in virtual time.
fn run_w6(balance: Balance) -> W6 {
    let mut sim = Engine::builder(w6_domain(balance)).simulate().unwrap();
    let load = Load { tasks: 20_000, in_flight: 1, first_id: 0, workload: Workload::Route, sample_every: 1 };
    let r = sim.open_loop(&load, 5_000.0, 100 * MS, |_, _| {});
    assert_eq!((r.report.lost, r.report.duplicated, r.report.ok), (0, 0, 20_000), "{:?}", r.report);
    let stats = sim.engine().stats();
    let calls: u64 = stats.agents.iter().map(|a| a.calls).sum();
    let p = r.latency.percentiles();
    sim.finish();
    W6 { p50: p.p50, p99: p.p99, slow_share: stats.agents[2].calls as f64 / calls as f64, calls }
}

#[test]
fn peak_ewma_steers_work_away_from_a_slow_agent() {
    let rr = run_w6(Balance::RoundRobin);
    let ewma = run_w6(Balance::peak_ewma());
    // Round-robin gives the slow agent its third, and 30% of those take 10 ms: the p99 is the
    // slow call itself.
    assert!((0.32..0.35).contains(&rr.slow_share), "round-robin share {}", rr.slow_share);
    assert!(rr.p99 >= 9 * MS, "round-robin p99 {} ns", rr.p99);
    // Peak EWMA learns at the slow agent's first slow call and sends it almost nothing; its
    // estimate decays toward zero while it rests, so it is probed again now and then.
    assert!(ewma.slow_share < 0.02, "peak-EWMA share {}", ewma.slow_share);
    assert!(ewma.slow_share > 0.0, "the slow agent is still probed");
    assert!(ewma.p99 * 5 <= rr.p99, "p99 {} ns against round-robin's {} ns", ewma.p99, rr.p99);
    assert!(ewma.p50 <= rr.p50);
    // No extra calls: the choice moves work, it sends none twice.
    assert_eq!((rr.calls, ewma.calls), (20_000, 20_000));
}

#[test]
fn the_balance_changes_while_tasks_run_and_is_audited() {
    let mut sim = Engine::builder(w6_domain(Balance::RoundRobin)).simulate().unwrap();
    let d = DomainId(0);
    assert_eq!(sim.engine().domain_balance(d), Some(Balance::RoundRobin));
    let _actor = metafed::audit::act_as("test", "W6 drill");
    let load = Load { tasks: 20_000, in_flight: 1, first_id: 0, workload: Workload::Route, sample_every: 1 };
    let mut slow_calls_at_switch = None;
    let r = sim.open_loop(&load, 5_000.0, 1_000 * MS, |engine, t| {
        if slow_calls_at_switch.is_none() && t >= 2_000 * MS {
            slow_calls_at_switch = Some(engine.stats().agents[2].calls);
            engine.set_domain_balance(d, Balance::peak_ewma()).unwrap();
        }
    });
    assert_eq!((r.report.lost, r.report.duplicated, r.report.ok), (0, 0, 20_000));
    // Four seconds: the first two round-robin (the slow agent takes its third of 10,000 tasks),
    // the last two by peak EWMA (it takes almost none).
    let before = slow_calls_at_switch.expect("switched at 2 s");
    let after = sim.engine().stats().agents[2].calls - before;
    assert!((3_200..3_500).contains(&before), "{before} calls before the switch");
    assert!(after < 200, "{after} calls after the switch");
    assert_eq!(sim.engine().domain_balance(d), Some(Balance::peak_ewma()));
    let log = sim.engine().audit_log();
    let rec = log.iter().find(|r| r.action == "domain_balance").expect("audited");
    assert_eq!((rec.target.as_str(), rec.from.as_str()), ("domain D", "round_robin"));
    assert!(rec.to.starts_with("peak_ewma"), "{}", rec.to);
    // Bad settings are named; unknown domains refused; the balance is unchanged by them.
    let bad = Balance::PeakEwma { decay: std::time::Duration::ZERO, default_rtt: std::time::Duration::from_millis(30) };
    assert!(sim.engine().set_domain_balance(d, bad).unwrap_err().to_string().contains("decay"));
    assert!(sim.engine().set_domain_balance(DomainId(7), Balance::RoundRobin).unwrap_err().to_string().contains("7"));
    sim.engine().set_domain_balance(d, Balance::RoundRobin).unwrap();
    assert_eq!(sim.engine().domain_balance(d), Some(Balance::RoundRobin));
    sim.finish();
}

#[test]
fn the_balance_loads_from_toml() {
    let text = "[[domains]]\nname = \"D\"\nbalance = { kind = \"peak_ewma\", decay = 5000.0 }\n\
                agents = [{ name = \"a\", sim = { error_rate = 0.0 } }]\n\
                [[domains]]\nname = \"E\"\nagents = [{ name = \"a\", sim = { error_rate = 0.0 } }]\n";
    let t = Topology::from_toml(text).unwrap();
    assert_eq!(
        t.balance(DomainId(0)),
        Some(Balance::PeakEwma {
            decay: std::time::Duration::from_secs(5),
            default_rtt: std::time::Duration::from_millis(30)
        })
    );
    assert_eq!(t.balance(DomainId(1)), Some(Balance::RoundRobin));
    let bad = Topology::from_toml(&text.replace("peak_ewma", "least_loaded")).unwrap_err().to_string();
    assert!(bad.contains("least_loaded") && bad.contains("round_robin"), "{bad}");
}

#[test]
fn a_reload_applies_the_domain_policies_and_refuses_bad_ones_whole() {
    let text = |extra: &str| {
        format!(
            "[[domains]]\nname = \"D\"\n{extra}\nagents = [{{ name = \"a\", sim = {{ error_rate = 0.0 }} }}, {{ name = \"b\", sim = {{ error_rate = 0.0 }} }}]\n"
        )
    };
    let engine = Engine::start(
        Topology::from_toml(&text("")).unwrap(),
        metafed::EngineConfig { workers: 1, pin: false, ..Default::default() },
    )
    .unwrap();
    let d = DomainId(0);
    let r = engine
        .reload_toml(&text(
            "balance = { kind = \"peak_ewma\" }\noutlier = { latency_factor = 3.0 }\nshedding = { target = 10.0 }",
        ))
        .unwrap();
    assert!(r.applied.iter().any(|a| a == "domain D: balance"), "{r:?}");
    assert!(r.applied.iter().any(|a| a == "domain D: outlier") && r.applied.iter().any(|a| a == "domain D: shedding"));
    assert_eq!(engine.domain_balance(d), Some(Balance::peak_ewma()));
    assert_eq!(engine.domain_outlier(d).map(|o| o.latency_factor), Some(3.0));
    assert_eq!(engine.domain_shedding(d).map(|s| s.target), Some(std::time::Duration::from_millis(10)));
    // A bad setting refuses the whole file: nothing changes.
    let err = engine
        .reload_toml(&text("balance = { kind = \"round_robin\" }\noutlier = { latency_factor = 0.5 }"))
        .unwrap_err();
    assert!(err.to_string().contains("latency_factor"), "{err}");
    assert_eq!(engine.domain_balance(d), Some(Balance::peak_ewma()));
    // The same file again changes nothing; a file without them turns them off.
    let same = engine
        .reload_toml(&text(
            "balance = { kind = \"peak_ewma\" }\noutlier = { latency_factor = 3.0 }\nshedding = { target = 10.0 }",
        ))
        .unwrap();
    assert!(same.applied.is_empty(), "{same:?}");
    engine.reload_toml(&text("")).unwrap();
    assert_eq!(
        (engine.domain_balance(d), engine.domain_outlier(d), engine.domain_shedding(d)),
        (Some(Balance::RoundRobin), None, None)
    );
    engine.shutdown(std::time::Duration::from_secs(1)).unwrap();
}

#[test]
fn a_domain_a_reload_adds_gets_the_policies_its_file_gives_it_even_those_of_the_first_domain() {
    // The file's new domain has the same policies as the running first domain: the reload must
    // still give them to it (a domain added while running starts round-robin, without either).
    let policies = "balance = { kind = \"peak_ewma\" }\nshedding = { target = 10.0 }";
    let domain = |name: &str| {
        format!(
            "[[domains]]\nname = \"{name}\"\n{policies}\nagents = [{{ name = \"a\", sim = {{ error_rate = 0.0 }} }}]\n"
        )
    };
    let engine = Engine::start(
        Topology::from_toml(&domain("D")).unwrap(),
        metafed::EngineConfig { workers: 1, pin: false, spare_domains: 1, ..Default::default() },
    )
    .unwrap();
    let r = engine.reload_toml(&format!("{}{}", domain("D"), domain("E"))).unwrap();
    assert!(r.applied.iter().any(|a| a == "domain E added"), "{r:?}");
    let e = DomainId(1);
    assert_eq!(engine.domain_balance(e), Some(Balance::peak_ewma()), "{r:?}");
    assert_eq!(engine.domain_shedding(e).map(|s| s.target), Some(std::time::Duration::from_millis(10)));
    engine.shutdown(std::time::Duration::from_secs(1)).unwrap();
}
