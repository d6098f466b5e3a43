//! A small engine exercising every cross-thread hand-off once or a few times: two workers, an
//! isolated agent (its own thread and rings), a handler that panics, a deferred agent answered
//! from another thread, fan-out to three domains, `wait`, `poll` and `shutdown`. Small enough to
//! run under Miri (`scripts/miri.sh`, many seeds), where every access is checked for undefined
//! behaviour and data races; it also runs as an ordinary test.

use metafed::{
    AgentSpec, Attempt, Completion, DomainSet, Engine, EngineConfig, Levels, Request, Status, Task, Topology,
};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn every_hand_off_once() {
    let (tx, rx) = mpsc::channel::<(u64, Attempt)>();
    let answerer = std::thread::spawn(move || {
        for (id, attempt) in rx {
            let _ = attempt.succeed_with(id, format!("r{id}").into_bytes());
        }
    });
    let mut b = Topology::builder();
    let api = b.domain("API").unwrap();
    b.agent(
        api,
        "flaky",
        AgentSpec::handler(|r: &Request<'_>| if r.task_id.is_multiple_of(3) { Err(7) } else { Ok(1) }),
    )
    .unwrap();
    b.agent(api, "iso", AgentSpec::handler(|_: &Request<'_>| Ok(2)).isolated()).unwrap();
    let db = b.domain("DB").unwrap();
    b.agent(
        db,
        "deferred",
        AgentSpec::deferred(move |r: &Request<'_>, a: Attempt| {
            tx.send((r.task_id, a)).unwrap();
        }),
    )
    .unwrap();
    let auth = b.domain("Auth").unwrap();
    b.agent(auth, "panics", AgentSpec::handler(|_: &Request<'_>| -> metafed::Reply { panic!("handler bug") })).unwrap();
    b.agent(auth, "backup", AgentSpec::handler(|_: &Request<'_>| Ok(4))).unwrap();
    b.breakers(Levels::disabled());
    // Under Miri the engine runs a thousand times slower on the real clock: no timeout may fire.
    let hour = Some(Duration::from_secs(3600));
    b.timeouts(hour, hour, hour).unwrap();
    let config = EngineConfig { workers: 2, pin: false, max_in_flight: 64, ..EngineConfig::default() };
    // The handler's panics are expected: keep them off stderr, and everything else on it.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"handler bug") {
            previous(info);
        }
    }));
    let engine = Engine::start(b.build().unwrap(), config).unwrap();

    let all = DomainSet::first(3);
    let waited: Vec<Completion> = (0..6)
        .map(|i| {
            let t = engine.submit(&Task::fan_out(i, all).waitable(), None).unwrap();
            engine.wait(t, Some(Duration::from_secs(600))).unwrap()
        })
        .collect();
    for c in &waited {
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert_eq!(c.body_of(db), Some(format!("r{}", c.id).as_bytes()));
    }
    for i in 6..12 {
        engine.submit(&Task::new(i, if i % 2 == 0 { api } else { auth }), None).unwrap();
    }
    let mut out = vec![Completion::default(); 8];
    let mut polled = 0;
    while polled < 6 {
        polled += engine.poll_wait(&mut out, Some(Duration::from_secs(600))).unwrap();
    }
    assert_eq!(polled, 6);
    let report = engine.shutdown(Duration::from_secs(600)).unwrap();
    assert!(report.drained);
    let s = engine.stats();
    assert_eq!((s.completed, s.ok), (12, 12));
    assert_eq!(s.agents[3].name, "panics");
    assert!(s.agents[3].panics > 0, "the panicking handler ran: {:?}", s.agents[3]);
    drop(engine); // closes the deferred agent's channel
    answerer.join().unwrap();
}
