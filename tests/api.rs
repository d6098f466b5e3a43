//! The engine's API: bad input gets a clear error, never a panic; each delivery mode delivers
//! once; admission control behaves as documented.

use metafed::breaker::BreakerMode;
use metafed::sim::SimAgent;
use metafed::{
    AdmissionConfig, AgentSpec, Completion, DomainId, DomainSet, Engine, EngineConfig, Error, Level, Levels, Reason,
    Request, Status, SubmitError, Task, Ticket, Topology, TopologyBuilder, WaitError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn topology_error(b: TopologyBuilder) -> String {
    match b.build() {
        Err(Error::Topology(m)) => m,
        other => panic!("expected a topology error, got {other:?}"),
    }
}

#[test]
fn invalid_topologies_are_named() {
    assert!(topology_error(Topology::builder()).contains("no domains"));
    let mut b = Topology::builder();
    b.domain("API").unwrap();
    assert!(topology_error(b).contains("domain \"API\" has no agents"));
    // Refused where they are given, not at build time.
    let mut b = Topology::seed_builder(0.1);
    assert!(b.domain("API").unwrap_err().to_string().contains("already a domain named \"API\""));
    for bad in ["", "   ", "a\nb"] {
        assert!(b.domain(bad).is_err(), "{bad:?}");
    }
    assert!(b.domain("x".repeat(metafed::MAX_NAME_LEN + 1)).unwrap_err().to_string().contains("at most 256"));
    let mut b = Topology::builder();
    for i in 0..64 {
        b.domain(format!("d{i}")).unwrap();
    }
    assert!(b.domain("one too many").unwrap_err().to_string().contains("at most 64 domains"));
    let mut b = Topology::builder();
    let d = b.domain("API").unwrap();
    b.agent(d, "REST", AgentSpec::sim(SimAgent::default())).unwrap();
    let e = b.agent(d, "REST", AgentSpec::sim(SimAgent::default())).unwrap_err().to_string();
    assert!(e.contains("already has an agent named \"REST\""), "{e}");
    assert!(b.agent(metafed::DomainId(7), "X", AgentSpec::sim(SimAgent::default())).is_err());
    let mut b = Topology::seed_builder(1.5);
    assert!(topology_error(b.clone()).contains("error_rate must be in [0, 1], got 1.5"));
    b.sim_error_rate(None, 0.1).domain_fault_rate(DomainId(0), -0.1).unwrap();
    assert!(topology_error(b).contains("fault_rate"));
    let mut b = Topology::seed_builder(0.1);
    b.meta_fault_rate(2.0);
    assert!(topology_error(b).contains("meta_fault_rate"));
    let mut b = Topology::seed_builder(0.1);
    let mut levels = Levels::default();
    levels.domain.timeout = Duration::ZERO;
    b.breakers(levels);
    assert!(topology_error(b).contains("breakers.domain: timeout must be greater than zero"));
    let mut b = Topology::builder();
    assert!(b.agent(DomainId(3), "x", AgentSpec::sim(SimAgent::default())).is_err(), "unknown domain id");
}

#[test]
fn invalid_engine_settings_are_named() {
    let start = |cfg: EngineConfig| match Engine::start(Topology::seed(0.1).unwrap(), cfg) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    };
    assert!(start(EngineConfig { max_in_flight: 0, ..Default::default() }).contains("max_in_flight"));
    let admission = AdmissionConfig { essential_priority: 7, ..Default::default() };
    assert!(start(EngineConfig { admission, ..Default::default() }).contains("essential_priority"));
}

#[test]
fn toml_topologies_load_overlay_defaults_and_reject_unknown_keys() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/topology.toml")).unwrap();
    let t = Topology::from_toml(&text).unwrap();
    assert_eq!((t.domain_count(), t.agent_count()), (3, 9));
    assert_eq!(t.breakers().agent.consecutive_failures, 3);
    assert_eq!(t.breakers().domain.half_open_probes, 3, "keys not given keep the level's default");
    assert_eq!(t.meta_fault_rate(), 0.05);
    assert_eq!(EngineConfig::from_toml(&text).unwrap().max_in_flight, 8192);
    let bad = Topology::from_toml("[[domains]]\nname = \"A\"\ncolour = \"red\"\n").unwrap_err();
    assert!(bad.to_string().contains("colour"), "{bad}");
    let unbound = Topology::from_toml("[[domains]]\nname = \"A\"\nagents = [{ name = \"X\" }]\n").unwrap_err();
    assert!(unbound.to_string().contains("agent A/X has no handler"), "{unbound}");
    let mut b = TopologyBuilder::from_toml("[[domains]]\nname = \"A\"\nagents = [{ name = \"X\" }]\n").unwrap();
    b.bind("A", "X", AgentSpec::handler(|_: &Request<'_>| Ok(1))).unwrap();
    assert!(b.bind("A", "Y", AgentSpec::handler(|_: &Request<'_>| Ok(1))).is_err());
    assert!(b.build().is_ok());
    assert!(matches!(Topology::from_file("/nonexistent.toml"), Err(Error::Io(m)) if m.contains("/nonexistent.toml")));
}

#[test]
fn bad_tasks_and_late_submissions_get_clear_errors() {
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig::default()).unwrap();
    assert_eq!(engine.try_submit(&Task::new(1, DomainId(3))), Err(SubmitError::UnknownDomain(3)));
    assert_eq!(engine.try_submit(&Task::fan_out(1, DomainSet(0))), Err(SubmitError::NoDomains));
    assert_eq!(engine.try_submit(&Task::new(1, DomainId(0)).priority(4)), Err(SubmitError::InvalidPriority(4)));
    assert!(SubmitError::UnknownDomain(3).to_string().contains("domain 3"));
    engine.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(engine.try_submit(&Task::new(1, DomainId(0))), Err(SubmitError::ShuttingDown));
    let mut t = [Ticket::default()];
    assert_eq!(engine.submit_batch(&[Task::new(1, DomainId(0))], &mut t), Err(SubmitError::ShuttingDown));
}

#[test]
fn wait_delivers_a_waitable_task_once_and_poll_never_sees_it() {
    let engine = Engine::start(Topology::seed(0.12).unwrap(), EngineConfig::default()).unwrap();
    let waited = engine.try_submit(&Task::new(7, DomainId(1)).payload(5).data(b"hello").waitable()).unwrap();
    let polled = engine.try_submit(&Task::new(8, DomainId(1))).unwrap();
    assert_eq!(engine.wait(polled, None), Err(WaitError::NotWaitable));
    let c = engine.wait(waited, Some(Duration::from_secs(30))).unwrap();
    assert_eq!((c.ticket, c.id, c.status), (waited, 7, Status::Ok));
    assert_eq!(engine.wait(waited, None), Err(WaitError::UnknownTicket), "delivered once");
    let mut out = vec![Completion::default(); 8];
    let n = engine.poll_wait(&mut out, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(n, 1);
    assert_eq!(out[0].ticket, polled);
    assert_eq!(engine.wait(Ticket(0), None), Err(WaitError::UnknownTicket));
}

#[test]
fn timeouts_and_deadlines_too_long_for_an_instant_are_none() {
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig::default()).unwrap();
    let forever = Some(Duration::MAX);
    // 2^62 s is 2^71 x 1,953,125 ns: its low 64 bits, all a u64 kept of it, are 0.
    let far = Duration::from_secs(1 << 62);
    let waited = engine.submit(&Task::new(1, DomainId(0)).waitable().deadline(far), forever).unwrap();
    let c = engine.wait(waited, forever).unwrap();
    assert_eq!((c.id, c.status), (1, Status::Ok), "a deadline past u64 nanoseconds is no sooner than the engine's own");
    engine.submit(&Task::new(2, DomainId(1)), forever).unwrap();
    let mut out = vec![Completion::default(); 1];
    let mut n = 0;
    while n == 0 {
        n = engine.poll_wait(&mut out, forever).unwrap();
    }
    assert_eq!((out[0].id, out[0].status), (2, Status::Ok));
}

#[test]
fn wait_times_out_and_the_ticket_stays_valid() {
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let mut b = Topology::builder();
    let d = b.domain("Slow").unwrap();
    b.agent(
        d,
        "Gated",
        AgentSpec::handler(move |_: &Request<'_>| {
            g.wait();
            Ok(3)
        }),
    )
    .unwrap();
    b.breakers(Levels::disabled());
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..Default::default() }).unwrap();
    let t = engine.try_submit(&Task::new(1, d).waitable()).unwrap();
    assert_eq!(engine.wait(t, Some(Duration::from_millis(10))), Err(WaitError::Timeout));
    gate.wait(); // let the handler return
    let c = engine.wait(t, None).unwrap();
    assert_eq!((c.status, c.value), (Status::Ok, 3));
}

#[test]
fn a_callback_receives_every_completion_once() {
    let count = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(AtomicU64::new(0));
    let (c2, s2) = (count.clone(), sum.clone());
    let engine = Engine::builder(Topology::seed(0.3).unwrap())
        .on_complete(move |c: &Completion| {
            c2.fetch_add(1, Ordering::Relaxed);
            s2.fetch_add(c.id, Ordering::Relaxed);
        })
        .start()
        .unwrap();
    let n = 5_000u64;
    let tasks: Vec<Task<'_>> = (0..n).map(|i| Task::new(i, DomainId((i % 3) as u16))).collect();
    let mut tickets = vec![Ticket::default(); tasks.len()];
    let mut sent = 0;
    while sent < tasks.len() {
        sent += engine.submit_batch(&tasks[sent..], &mut tickets[sent..]).unwrap_or(0);
    }
    assert!(engine.shutdown(Duration::from_secs(30)).unwrap().drained);
    assert_eq!(count.load(Ordering::Relaxed), n);
    assert_eq!(sum.load(Ordering::Relaxed), n * (n - 1) / 2, "each id once");
    let mut out: [Completion; 4] = Default::default();
    assert_eq!(engine.poll(&mut out), 0, "nothing for poll with a callback");
}

#[test]
fn handlers_see_the_request_and_fan_out_joins_values() {
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let mut b = Topology::builder();
    for name in ["A", "B"] {
        let d = b.domain(name).unwrap();
        let s = s2.clone();
        b.agent(
            d,
            "x",
            AgentSpec::handler(move |r: &Request<'_>| {
                assert_eq!((r.task_id, r.payload, r.data, r.fanout, r.priority), (9, 40, &b"abc"[..], 2, 1));
                s.fetch_add(1, Ordering::Relaxed);
                Ok(u64::from(r.domain.0) + 1)
            }),
        )
        .unwrap();
    }
    let engine = Engine::start(b.build().unwrap(), EngineConfig::default()).unwrap();
    let t = engine
        .try_submit(&Task::fan_out(9, DomainSet::first(2)).payload(40).data(b"abc").priority(1).waitable())
        .unwrap();
    let c = engine.wait(t, None).unwrap();
    assert_eq!((c.status, c.value, c.attempts), (Status::Ok, 3, 2), "values 1 + 2 joined");
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

#[test]
fn failures_record_which_agents_and_why() {
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    for (i, code) in [11, 22, 33].into_iter().enumerate() {
        b.agent(d, format!("a{i}"), AgentSpec::handler(move |_: &Request<'_>| Err(code))).unwrap();
    }
    b.breakers(Levels::disabled());
    let engine = Engine::start(b.build().unwrap(), EngineConfig::default()).unwrap();
    let c = engine.wait(engine.try_submit(&Task::new(1, d).waitable()).unwrap(), None).unwrap();
    assert_eq!((c.status, c.reason, c.attempts, c.failures_total), (Status::Failed, Reason::AgentsExhausted, 3, 3));
    let mut codes: Vec<i32> = c.failures().iter().map(|f| f.code).collect();
    codes.sort();
    assert_eq!(codes, [11, 22, 33], "each agent tried once, each failure recorded");
}

#[test]
fn low_priorities_see_full_first() {
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g = gate.clone();
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    b.agent(
        d,
        "a",
        AgentSpec::handler(move |_: &Request<'_>| {
            while !g.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            Ok(0)
        }),
    )
    .unwrap();
    let admission = AdmissionConfig { priority_reserve: [0.0, 0.25, 0.5, 0.75], ..Default::default() };
    let engine =
        Engine::start(b.build().unwrap(), EngineConfig { max_in_flight: 8, admission, ..Default::default() }).unwrap();
    let mut accepted = [0; 4];
    for p in (0..4u8).rev() {
        while engine.try_submit(&Task::new(0, d).priority(p)).is_ok() {
            accepted[usize::from(p)] += 1;
        }
    }
    // Priority 3 may not take the last 6 slots, priority 2 the last 4, 1 the last 2.
    assert_eq!(accepted, [2, 2, 2, 2]);
    gate.store(true, Ordering::Release);
}

#[test]
fn an_open_meta_breaker_runs_degraded_essential_priorities_only() {
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig::default()).unwrap();
    engine.set_breaker_mode(Level::Meta, 0, BreakerMode::ForcedOpen);
    let run = |p: u8| {
        engine.wait(engine.try_submit(&Task::new(1, DomainId(0)).priority(p).waitable()).unwrap(), None).unwrap()
    };
    assert_eq!(run(0).status, Status::Ok, "essential work goes on");
    assert_eq!((run(1).status, run(1).reason), (Status::Rejected, Reason::Degraded));
    assert_eq!(engine.health().status, metafed::stats::HealthStatus::Unhealthy);
    assert_eq!(engine.stats().meta.degraded_admits, 1);
    engine.set_breaker_mode(Level::Meta, 0, BreakerMode::Normal);
    assert_eq!(run(3).status, Status::Ok);
    assert_eq!(engine.health().status, metafed::stats::HealthStatus::Healthy);
}

#[test]
fn the_rate_limiter_rejects_beyond_its_burst() {
    let admission = AdmissionConfig { rate_limit_per_s: 0.001, rate_limit_burst: 3.0, ..Default::default() };
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig { admission, ..Default::default() }).unwrap();
    let reasons: Vec<Reason> = (0..5)
        .map(|i| engine.wait(engine.try_submit(&Task::new(i, DomainId(0)).waitable()).unwrap(), None).unwrap().reason)
        .collect();
    assert_eq!(reasons, [Reason::None, Reason::None, Reason::None, Reason::RateLimited, Reason::RateLimited]);
}

/// A limiter held at its quota by two threads that offer far more admits within 1% of
/// `burst + rate x elapsed`, though each thread reads its clock once per 64 checks (as a worker
/// reads it once per turn): the stale reading never refuses what the rate allows, and the
/// fresh one never admits more.
#[test]
fn a_limiter_at_its_quota_admits_within_one_percent() {
    use metafed::policy::RateLimiter;
    use std::time::Instant;
    // A burst of 100 ms of the rate: both threads may be descheduled that long on a busy machine
    // without losing admissions the quota allows.
    let (rate, burst) = (20_000.0, 2_000.0);
    let limiter = Arc::new(RateLimiter::new(rate, burst));
    let origin = Instant::now();
    let now = move || origin.elapsed().as_nanos() as u64;
    let run_ns = 1_000_000_000;
    let admitted: u64 = (0..2)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || {
                let (mut admitted, mut stale) = (0u64, now());
                for i in 0u64.. {
                    if i % 64 == 0 {
                        stale = now();
                        if stale >= run_ns {
                            break;
                        }
                    }
                    admitted += u64::from(limiter.allow_fresh(stale, now));
                }
                admitted
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    let expected = burst + rate * run_ns as f64 / 1e9;
    let error = (admitted as f64 - expected).abs() / expected;
    assert!(error <= 0.01, "admitted {admitted}, expected {expected}: {:.2}% off", error * 100.0);
}

#[test]
fn the_throttle_queues_by_priority() {
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r2, o2) = (release.clone(), order.clone());
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    b.agent(
        d,
        "a",
        AgentSpec::handler(move |r: &Request<'_>| {
            if r.task_id == 0 {
                while !r2.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
            }
            o2.lock().unwrap().push(r.task_id);
            Ok(0)
        }),
    )
    .unwrap();
    let admission = AdmissionConfig { max_concurrent: 1, ..Default::default() };
    let engine =
        Engine::start(b.build().unwrap(), EngineConfig { workers: 1, admission, ..Default::default() }).unwrap();
    let first = engine.try_submit(&Task::new(0, d).waitable()).unwrap();
    // Task 0 holds the only permit; these wait, and run highest priority first.
    let rest: Vec<Ticket> = [(1, 3), (2, 1), (3, 2), (4, 0)]
        .iter()
        .map(|&(id, p)| engine.try_submit(&Task::new(id, d).priority(p).waitable()).unwrap())
        .collect();
    release.store(true, Ordering::Release);
    engine.wait(first, None).unwrap();
    for t in rest {
        assert_eq!(engine.wait(t, None).unwrap().status, Status::Ok);
    }
    assert_eq!(*order.lock().unwrap(), [0, 4, 2, 3, 1]);
}

#[test]
fn an_agent_out_of_rotation_gets_no_calls() {
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig::default()).unwrap();
    let sql = engine.topology().agent_id("Database", "SQL").unwrap();
    assert!(engine.set_agent_in_rotation(sql, false));
    let tickets: Vec<Ticket> =
        (0..60).map(|i| engine.try_submit(&Task::new(i, DomainId(1)).waitable()).unwrap()).collect();
    for t in tickets {
        assert!(engine.wait(t, None).unwrap().is_ok());
    }
    let s = engine.stats();
    assert_eq!(s.agents[usize::from(sql.0)].calls, 0);
    assert!(!s.agents[usize::from(sql.0)].in_rotation);
    assert!(engine.set_agent_in_rotation(sql, true));
    assert!(engine.stats().agents[usize::from(sql.0)].in_rotation);
}

#[test]
fn stats_count_what_happened() {
    let engine = Engine::start(Topology::seed(0.12).unwrap(), EngineConfig::default()).unwrap();
    let tickets: Vec<Ticket> =
        (0..3_000).map(|i| engine.submit(&Task::new(i, DomainId((i % 3) as u16)).waitable(), None).unwrap()).collect();
    let done: Vec<Completion> = tickets.iter().map(|&t| engine.wait(t, None).unwrap()).collect();
    let s = engine.stats();
    assert_eq!((s.admitted, s.completed), (3_000, 3_000));
    assert_eq!(s.ok, done.iter().filter(|c| c.is_ok()).count() as u64);
    assert_eq!(s.in_flight, 0);
    let attempts: u64 = done.iter().map(|c| u64::from(c.attempts)).sum();
    assert_eq!(s.agents.iter().map(|a| a.calls).sum::<u64>(), attempts);
    assert!((s.predicted_success - (1.0 - 0.12f64.powi(3))).abs() < 1e-12);
    assert_eq!(s.latency_ns.count, 3_000);
    assert!(s.latency_ns.p50 > 0 && s.latency_ns.p50 <= s.latency_ns.p99);
}

#[test]
fn the_architecture_docs_toml_example_parses_into_what_it_says() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md")).unwrap();
    let start = doc.find("Settings in TOML:\n\n```toml\n").expect("the TOML example in docs/architecture.md") + 27;
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let t = Topology::from_toml(text).unwrap();
    let api = t.domain_id("API").unwrap();
    assert_eq!(t.hedge(api).map(|h| h.delay), Some(metafed::policy::HedgeDelay::Percentile(95.0)));
    assert_eq!(t.retry_budget(api).map(|b| b.ratio), Some(0.2));
    let rest = t.agent_spec(t.agent_id("API", "REST").unwrap()).unwrap();
    assert_eq!(rest.max_concurrency, 256);
    let legacy = t.agent_spec(t.agent_id("API", "Legacy").unwrap()).unwrap();
    assert!(legacy.isolated && legacy.threads == 4);
}

#[test]
fn the_meta_level_gives_a_task_500_ms_from_its_submission_by_default() {
    use metafed::breaker::BreakerConfig;
    use metafed::{Attempt, FailureKind};
    assert_eq!(BreakerConfig::meta().timeout, Duration::from_millis(500));
    assert_eq!(Levels::default().meta.timeout, Duration::from_millis(500));
    // In virtual time: an agent that never answers, and agent and domain budgets longer than
    // the meta level's: the task times out at 500 ms, its attempt abandoned then.
    let kept = Arc::new(std::sync::Mutex::new(Vec::<Attempt>::new()));
    let k = kept.clone();
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    b.agent(d, "Hang", AgentSpec::deferred(move |_: &Request<'_>, a: Attempt| k.lock().unwrap().push(a))).unwrap();
    let long = Duration::from_secs(10);
    let defaults = Levels::default();
    b.breakers(Levels {
        agent: BreakerConfig { timeout: long, ..defaults.agent.disabled() },
        domain: BreakerConfig { timeout: long, ..defaults.domain.disabled() },
        meta: defaults.meta.disabled(),
    });
    let mut sim = Engine::builder(b.build().unwrap()).simulate().unwrap();
    sim.engine().try_submit(&Task::new(1, d)).unwrap();
    sim.run_idle(u64::MAX);
    let c = crate::common::poll_all(sim.engine()).pop().unwrap();
    assert_eq!((c.status, c.reason), (Status::TimedOut, Reason::Deadline), "{c:?}");
    assert_eq!(c.latency_ns, 500_000_000);
    assert_eq!(c.failures()[0].kind, FailureKind::Abandoned);
    assert!(kept.lock().unwrap()[0].is_abandoned());
}

/// The CPUs the calling thread may run on, as Linux lists them (`0-1`, `3`).
#[cfg(target_os = "linux")]
fn cpus_allowed() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn pinned_workers_run_on_one_core_each_and_unpinned_ones_anywhere() {
    for pin in [true, false] {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        let spec = AgentSpec::handler(move |r: &Request<'_>| {
            s.lock().unwrap().push(cpus_allowed());
            Ok(r.task_id)
        });
        let (topo, d) = crate::common::one_domain(vec![("A", spec)]);
        let engine = Engine::start(topo, EngineConfig { workers: 2, pin, ..EngineConfig::default() }).unwrap();
        let done = crate::common::run_all(&engine, d, 50);
        assert!(done.iter().all(Completion::is_ok));
        assert_eq!(engine.stats().pin_failures, 0, "pinning to a core of the process's mask succeeds");
        let seen = seen.lock().unwrap();
        if pin {
            // One core: a single number, no range or list.
            assert!(seen.iter().all(|m| m.parse::<u32>().is_ok()), "pinned workers ran on {seen:?}");
        } else {
            let mine = cpus_allowed();
            assert!(seen.iter().all(|m| *m == mine), "unpinned workers ran on {seen:?}, the process on {mine}");
        }
    }
}
