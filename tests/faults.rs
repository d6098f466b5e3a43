//! Injected faults: failures, a hung agent, panicking handlers, a domain down, shutdown in the
//! middle of a run. Whatever happens, every accepted task completes exactly once.

use metafed::breaker::BreakerMode;
use metafed::sim::{SimAgent, SimFault};
use metafed::{
    AgentSpec, Completion, DomainId, Engine, EngineConfig, FailureKind, Level, Levels, Reason, Request, Status,
    SubmitError, Task, Ticket, Topology,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A handler that blocks until the test opens its gate: a hung agent whose release the test
/// controls, so nothing here depends on timing.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (m, c) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = c.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (m, c) = &*self.0;
        *m.lock().unwrap() = true;
        c.notify_all();
    }
}

/// Collects completions from `poll` until `n` have arrived.
fn collect(engine: &Engine, n: usize) -> Vec<Completion> {
    let mut all = Vec::with_capacity(n);
    let mut buf = vec![Completion::default(); 256];
    while all.len() < n {
        let got = engine.poll_wait(&mut buf, Some(Duration::from_secs(30))).unwrap();
        assert!(got > 0, "no completion within 30 s; {} of {n} arrived", all.len());
        all.extend_from_slice(&buf[..got]);
    }
    all
}

#[test]
fn a_hung_isolated_agent_stalls_nothing_else() {
    let gate = Gate::default();
    let mut b = Topology::seed_builder(0.0);
    let g = gate.clone();
    let hung = b
        .bind(
            "API",
            "REST",
            AgentSpec::handler(move |_: &Request<'_>| {
                g.wait();
                Ok(0)
            })
            .isolated(),
        )
        .unwrap();
    let engine = Engine::start(b.build().unwrap(), EngineConfig::default()).unwrap();
    // Tasks for every domain, API included: the hung agent gets some first attempts.
    let n = 300;
    for i in 0..n {
        engine.submit(&Task::new(i, DomainId((i % 3) as u16)), None).unwrap();
    }
    // All complete while the agent is still hung (the gate is still closed): its attempts were
    // abandoned at the agent timeout and failed over, and other domains never waited for it.
    let done = collect(&engine, n as usize);
    assert!(done.iter().all(Completion::is_ok), "{:?}", done.iter().find(|c| !c.is_ok()));
    let abandoned: Vec<_> =
        done.iter().flat_map(|c| c.failures()).filter(|f| f.kind == FailureKind::Abandoned).collect();
    assert!(!abandoned.is_empty(), "the hung agent was tried");
    assert!(abandoned.iter().all(|f| f.agent == hung));
    let s = engine.stats();
    assert!(s.agents[usize::from(hung.0)].abandoned > 0);
    assert!(s.agents[usize::from(hung.0)].breaker.opened > 0, "three abandoned calls in a row trip its breaker");
    gate.open();
}

#[test]
fn a_panicking_handler_is_an_agent_failure_and_the_engine_runs_on() {
    quiet_panics();
    let mut b = Topology::seed_builder(0.0);
    b.bind("Database", "SQL", AgentSpec::handler(|_: &Request<'_>| -> metafed::Reply { panic!("handler bug") }))
        .unwrap();
    b.breakers(Levels::disabled());
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let db = engine.topology().domain_id("Database").unwrap();
    let n = 30;
    for i in 0..n {
        engine.submit(&Task::new(i, db), None).unwrap();
    }
    let done = collect(&engine, n as usize);
    assert!(done.iter().all(Completion::is_ok), "failover around the panicking agent");
    let panics = done.iter().flat_map(|c| c.failures()).filter(|f| f.kind == FailureKind::Panicked).count();
    assert_eq!(panics as u64, engine.stats().agents[3].panics);
    assert!(panics > 0);
}

/// A silent panic hook for this test binary: the panics here are the behaviour under test, and
/// the default hook (with RUST_BACKTRACE=1, a backtrace per panic) would make them slow enough to
/// time out, whatever the environment says.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// A panic payload whose `Drop` panics too.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a panic while dropping a panic's payload");
    }
}

#[test]
fn a_panic_whose_payload_panics_when_dropped_does_not_kill_the_worker() {
    quiet_panics();
    let mut b = Topology::seed_builder(0.0);
    b.bind("Database", "SQL", AgentSpec::handler(|_: &Request<'_>| -> metafed::Reply { std::panic::panic_any(Bomb) }))
        .unwrap();
    b.breakers(Levels::disabled());
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let db = engine.topology().domain_id("Database").unwrap();
    for i in 0..30 {
        engine.submit(&Task::new(i, db), None).unwrap();
    }
    let done = collect(&engine, 30);
    assert!(done.iter().all(Completion::is_ok), "the worker lived on and failed over every time");
    assert!(engine.stats().agents[3].panics > 0);
}

#[test]
fn a_domain_down_trips_its_breaker_and_is_shed_while_others_run() {
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig::default()).unwrap();
    let auth = engine.topology().domain_id("Auth").unwrap();
    assert!(engine.set_domain_down(auth, true));
    let n = 600u64;
    for i in 0..n {
        engine.submit(&Task::new(i, DomainId((i % 3) as u16)), None).unwrap();
    }
    let done = collect(&engine, n as usize);
    let (auth_done, others): (Vec<&Completion>, Vec<&Completion>) = done.iter().partition(|c| c.id % 3 == 2);
    assert!(others.iter().all(|c| c.is_ok()), "the other domains are untouched");
    assert!(auth_done.iter().all(|c| !c.is_ok()));
    assert!(auth_done.iter().any(|c| c.reason == Reason::AgentsExhausted), "first its agents fail");
    assert!(auth_done.iter().any(|c| c.reason == Reason::DomainShed), "then its open breaker sheds");
    assert!(
        auth_done
            .iter()
            .flat_map(|c| c.failures())
            .all(|f| f.kind == FailureKind::Down && f.code == metafed::DOWN_CODE)
    );
    let s = engine.stats();
    assert!(s.domains[2].breaker.opened >= 1);
    assert_eq!(s.domains[2].shed, auth_done.iter().filter(|c| c.reason == Reason::DomainShed).count() as u64);
    let mut events = Vec::new();
    engine.drain_events(&mut events);
    assert!(
        events.iter().any(|e| e.level == Level::Domain
            && e.index == 2
            && e.transition.to == metafed::breaker::BreakerState::Open)
    );
}

#[test]
fn a_forced_open_agent_is_routed_around() {
    let engine = Engine::start(Topology::seed(0.0).unwrap(), EngineConfig::default()).unwrap();
    let rest = engine.topology().agent_id("API", "REST").unwrap();
    assert!(engine.set_breaker_mode(Level::Agent, usize::from(rest.0), BreakerMode::ForcedOpen));
    for i in 0..90 {
        engine.submit(&Task::new(i, DomainId(0)), None).unwrap();
    }
    let done = collect(&engine, 90);
    assert!(done.iter().all(|c| c.is_ok() && c.attempts == 1));
    assert_eq!(engine.stats().agents[usize::from(rest.0)].calls, 0);
    assert!(!engine.set_breaker_mode(Level::Agent, 999, BreakerMode::Normal), "no such breaker");
}

#[test]
fn panic_routing_never_tries_an_agent_forced_open() {
    // Every agent fails, so every natural breaker trips and panic routing carries the load; the
    // agent an operator forced open must still get no call.
    let mut b = Topology::seed_builder(1.0);
    b.breakers(Levels::default());
    let engine = Engine::start(b.build().unwrap(), EngineConfig::default()).unwrap();
    let rest = engine.topology().agent_id("API", "REST").unwrap();
    engine.set_breaker_mode(Level::Agent, usize::from(rest.0), BreakerMode::ForcedOpen);
    for i in 0..300 {
        engine.submit(&Task::new(i, DomainId(0)), None).unwrap();
    }
    let done = collect(&engine, 300);
    assert!(done.iter().all(|c| !c.is_ok()));
    let s = engine.stats();
    assert_eq!(s.agents[usize::from(rest.0)].calls, 0);
    assert!(s.panic_routed > 0, "the naturally open agents were panic-routed");
}

/// Every ticket that `submit` accepted completes exactly once; nothing else completes.
fn assert_exactly_once(accepted: &[Ticket], done: &[Completion]) {
    let mut seen: HashMap<Ticket, u32> = HashMap::new();
    for c in done {
        *seen.entry(c.ticket).or_default() += 1;
    }
    for t in accepted {
        assert_eq!(seen.remove(t), Some(1), "ticket {t:?} must complete exactly once");
    }
    assert!(seen.is_empty(), "completions for tickets never accepted: {seen:?}");
}

#[test]
fn every_ticket_completes_exactly_once_under_faults_and_a_shutdown_mid_run() {
    // 20% failures everywhere, a panicking agent, a hung isolated agent, the seed's breakers,
    // four submitting threads, and a shutdown while they are still submitting.
    let gate = Gate::default();
    let mut b = Topology::seed_builder(0.2);
    let g = gate.clone();
    b.bind(
        "Auth",
        "OAuth",
        AgentSpec::handler(move |_: &Request<'_>| {
            g.wait();
            Err(9)
        })
        .isolated(),
    )
    .unwrap();
    b.bind(
        "API",
        "GraphQL",
        AgentSpec::sim(SimAgent { error_rate: 0.2, fault: SimFault::Panic { rate: 0.3 }, ..SimAgent::default() }),
    )
    .unwrap();
    let cfg = EngineConfig { max_in_flight: 512, ..EngineConfig::default() };
    let engine = Arc::new(Engine::start(b.build().unwrap(), cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..4u64)
        .map(|s| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut i = 0u64;
                loop {
                    let task = Task::new(s << 32 | i, DomainId((i % 3) as u16)).priority((i % 4) as u8);
                    match engine.try_submit(&task) {
                        Ok(t) => accepted.push(t),
                        Err(SubmitError::Full) => std::thread::yield_now(),
                        Err(SubmitError::ShuttingDown) => return accepted,
                        Err(e) => panic!("unexpected: {e}"),
                    }
                    i += 1;
                    if accepted.len() == 2_000 {
                        stop.store(true, Ordering::Release); // enough submitted: start the shutdown
                    }
                }
            })
        })
        .collect();
    // The poller collects while the run goes on, so the engine never stays full.
    let poller = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let mut done = Vec::new();
            let mut buf = vec![Completion::default(); 256];
            loop {
                let n = engine.poll_wait(&mut buf, Some(Duration::from_millis(200))).unwrap();
                done.extend_from_slice(&buf[..n]);
                if n == 0 && engine.health().lifecycle == "stopped" {
                    return done;
                }
            }
        })
    };
    while !stop.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let report = engine.shutdown(Duration::from_millis(20)).unwrap();
    gate.open();
    let accepted: Vec<Ticket> = submitters.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let done = poller.join().unwrap();
    let mut rest = vec![Completion::default(); 4096];
    let n = engine.poll(&mut rest);
    let done: Vec<_> = done.into_iter().chain(rest[..n].iter().cloned()).collect();
    assert!(accepted.len() >= 2_000, "{}", accepted.len());
    assert_exactly_once(&accepted, &done);
    let count = |r: Reason| done.iter().filter(|c| c.reason == r).count();
    assert!(count(Reason::None) > 0 && count(Reason::AgentsExhausted) + count(Reason::DomainShed) > 0);
    assert_eq!(count(Reason::ShuttingDown) as u64, report.rejected, "{report:?}");
    assert!(done.iter().flat_map(|c| c.failures()).any(|f| f.kind == FailureKind::Panicked));
    assert_eq!(engine.try_submit(&Task::new(1, DomainId(0))), Err(SubmitError::ShuttingDown));
}

#[test]
fn shutdown_drains_what_is_in_flight_when_it_can() {
    let engine = Engine::start(Topology::seed(0.1).unwrap(), EngineConfig::default()).unwrap();
    let mut accepted = Vec::new();
    for i in 0..2_000u64 {
        accepted.push(engine.submit(&Task::new(i, DomainId((i % 3) as u16)), None).unwrap());
    }
    let report = engine.shutdown(Duration::from_secs(30)).unwrap();
    assert!(report.drained, "{report:?}");
    assert_eq!((report.rejected, report.detached_threads), (0, 0));
    let done = collect(&engine, accepted.len());
    assert_exactly_once(&accepted, &done);
    assert!(done.iter().all(|c| c.status != Status::Rejected));
    assert_eq!(engine.shutdown(Duration::ZERO).unwrap(), report, "idempotent");
}
