//! Deferred attempts: handlers that answer later from another thread, the engine's own timeout
//! and abandonment, late and dropped completions, reply bytes, concurrency limits, hedging, the
//! retry budget, isolated pools, and calls that would deadlock an engine thread.

use crate::common::{config, no_breakers, one_domain, poll_all, run_all, wait_for};
use metafed::policy::{Hedge, RetryBudget};
use metafed::sim::SimAgent;
use metafed::{
    AgentSpec, Attempt, Completion, DomainId, DomainSet, Engine, EngineConfig, FailureKind, Reason, Request, Status,
    SubmitError, Task, Topology, WaitError,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the reactor answers: a value and bytes, or an error code.
type Answer = Result<(u64, Vec<u8>), i32>;

/// A thread that completes attempts when told to: what an I/O reactor does.
struct Reactor {
    tx: mpsc::Sender<(Instant, Attempt, Answer)>,
}

impl Reactor {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel::<(Instant, Attempt, Answer)>();
        std::thread::spawn(move || {
            let mut queue = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_micros(200)) {
                    Ok(job) => queue.push(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) if queue.is_empty() => return,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {}
                }
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) = queue.drain(..).partition(|(at, _, _)| *at <= now);
                queue = later;
                for (_, attempt, answer) in due {
                    let _ = match answer {
                        Ok((v, body)) => attempt.succeed_with(v, body),
                        Err(code) => attempt.fail(code),
                    };
                }
            }
        });
        Self { tx }
    }

    fn after(&self, delay: Duration, attempt: Attempt, answer: Answer) {
        self.tx.send((Instant::now() + delay, attempt, answer)).unwrap();
    }
}

#[test]
fn answers_from_another_thread_carry_values_and_bytes() {
    let reactor = Arc::new(Reactor::start());
    let r = reactor.clone();
    let (topo, d) = one_domain(vec![(
        "Rest",
        AgentSpec::deferred(move |req: &Request<'_>, attempt: Attempt| {
            let body = format!("task {}", req.task_id).into_bytes();
            r.after(Duration::from_micros(300), attempt, Ok((req.task_id * 2, body)));
        }),
    )]);
    let engine = Engine::start(topo, config()).unwrap();
    let done = run_all(&engine, d, 500);
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert_eq!(c.value, i as u64 * 2);
        assert_eq!(c.body(), Some(format!("task {i}").as_bytes()));
        assert_eq!(c.body_of(d), c.body());
    }
    let s = engine.stats();
    assert_eq!(s.agents[0].deferred, 500);
    assert_eq!(s.late_results, 0);
}

#[test]
fn an_unanswered_attempt_is_abandoned_at_the_agent_timeout_and_fails_over() {
    // In virtual time: "Hang" keeps its attempts; "Good" answers at once. Round-robin sends
    // every other task's first attempt to Hang: those fail over at the 50 ms agent timeout.
    let kept: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let k = kept.clone();
    let (topo, d) = one_domain(vec![
        ("Hang", AgentSpec::deferred(move |_: &Request<'_>, a: Attempt| k.lock().unwrap().push(a))),
        ("Good", AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id))),
    ]);
    let timeout = topo.breakers().agent.timeout;
    assert_eq!(timeout, Duration::from_millis(50));
    let mut sim = Engine::builder(topo).simulate().unwrap();
    for i in 0..20 {
        sim.engine().try_submit(&Task::new(i, d)).unwrap();
    }
    sim.run_idle(u64::MAX);
    let done = poll_all(sim.engine());
    assert_eq!(done.len(), 20);
    assert!(done.iter().all(Completion::is_ok), "{done:?}");
    let failed_over: Vec<_> = done.iter().filter(|c| c.attempts == 2).collect();
    assert_eq!(failed_over.len(), 10);
    for c in &failed_over {
        assert_eq!(c.failures()[0].kind, FailureKind::Abandoned);
        assert_eq!(c.latency_ns, timeout.as_nanos() as u64, "abandoned at the 50 ms agent timeout");
    }
    assert!(done.iter().filter(|c| c.attempts == 1).all(|c| c.latency_ns == 0), "Good answers at once");
    // The kept attempts were abandoned: completing them now is late, and counted.
    let attempts: Vec<Attempt> = std::mem::take(&mut *kept.lock().unwrap());
    assert_eq!(attempts.len(), 10);
    for a in attempts {
        assert!(a.is_abandoned());
        assert!(a.succeed(1).is_err(), "a late completion is refused");
    }
    sim.settle();
    let s = sim.engine().stats();
    assert_eq!(s.late_results, 10);
    assert_eq!(s.agents[0].abandoned, 10);
}

#[test]
fn a_dropped_attempt_is_a_failure_and_a_deadline_shorter_than_the_timeout_wins() {
    let (topo, d) = one_domain(vec![
        ("Drop", AgentSpec::deferred(|_: &Request<'_>, a: Attempt| drop(a))),
        ("Good", AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id))),
    ]);
    let engine = Engine::start(topo, EngineConfig { workers: 1, ..config() }).unwrap();
    let done = run_all(&engine, d, 10);
    assert!(done.iter().all(Completion::is_ok));
    let dropped = done.iter().filter(|c| c.failures().first().is_some_and(|f| f.kind == FailureKind::Dropped)).count();
    // Round-robin sends every other first attempt to Drop, or every one when the tasks arrive
    // one by one (each failover's choice then moves the round-robin past Good): 5 to 10.
    assert!((5..=10).contains(&dropped), "{dropped} dropped");
    assert_eq!(engine.stats().agents[0].failures, dropped as u64, "each call to Drop failed as dropped");

    // A task whose deadline (5 ms) is shorter than the agent timeout (50 ms) times out at its
    // deadline while its attempt is in flight.
    let kept: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let k = kept.clone();
    let (topo, d) =
        one_domain(vec![("Hang", AgentSpec::deferred(move |_: &Request<'_>, a: Attempt| k.lock().unwrap().push(a)))]);
    let mut sim = Engine::builder(topo).simulate().unwrap();
    sim.engine().try_submit(&Task::new(1, d).deadline(Duration::from_millis(5))).unwrap();
    sim.run_idle(u64::MAX);
    let c = poll_all(sim.engine()).pop().unwrap();
    assert_eq!((c.status, c.reason), (Status::TimedOut, Reason::Deadline), "{c:?}");
    assert_eq!(c.latency_ns, 5_000_000, "at the deadline, not the agent timeout");
}

#[test]
fn sub_tasks_beyond_a_concurrency_limit_wait_in_the_domain_and_nothing_is_lost() {
    let reactor = Arc::new(Reactor::start());
    let r = reactor.clone();
    let spec = AgentSpec::deferred(move |req: &Request<'_>, attempt: Attempt| {
        r.after(Duration::from_micros(500), attempt, Ok((req.task_id, Vec::new())));
    })
    .max_concurrency(3);
    let (topo, d) = one_domain(vec![("Limited", spec)]);
    let engine = Engine::start(topo, config()).unwrap();
    let done = run_all(&engine, d, 300);
    let bad: Vec<_> = done.iter().filter(|c| !c.is_ok()).map(|c| (c.id, c.reason, c.latency_ns)).collect();
    assert!(bad.is_empty(), "{} not ok: {:?}", bad.len(), &bad[..bad.len().min(5)]);
    let s = engine.stats();
    assert_eq!(s.agents[0].max_concurrency, 3);
    assert_eq!(s.agents[0].in_flight, 0, "every attempt released its place");
    assert!(s.domains[0].waited > 0, "with 300 tasks and room for 3, sub-tasks waited in the domain");
}

/// A worker keeps an agent's place between its calls within a turn, and gives every kept place
/// back before the turn's completions for `poll` are published: once the last completion is
/// polled, no place is counted.
#[test]
fn places_kept_between_calls_are_all_back_when_the_completions_are() {
    // A limit roomy enough for the workers to keep places (8 per worker), answers at once.
    let spec = AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id)).max_concurrency(64);
    let (topo, d) = one_domain(vec![("Roomy", spec)]);
    let engine = Engine::start(topo, config()).unwrap();
    let n = 2_000u64;
    let tasks: Vec<Task<'_>> = (0..n).map(|i| Task::new(i, d)).collect();
    let mut tickets = vec![metafed::Ticket::default(); tasks.len()];
    let mut out = vec![Completion::default(); 256];
    let (mut sent, mut done) = (0, 0u64);
    while done < n {
        if sent < tasks.len() {
            sent += engine.submit_batch(&tasks[sent..], &mut tickets[sent..]).unwrap_or(0);
        }
        let got = engine.poll_wait(&mut out, Some(crate::common::PATIENCE)).unwrap();
        assert!(got > 0, "no completion ({done} of {n})");
        assert!(out[..got].iter().all(Completion::is_ok));
        done += got as u64;
    }
    let s = engine.stats();
    assert_eq!(s.agents[0].max_concurrency, 64);
    assert_eq!(s.agents[0].in_flight, 0, "a place kept between calls was not given back");
}

#[test]
fn the_engine_never_has_more_attempts_out_than_the_limit() {
    // Counts from the engine's side: attempts handed out minus answers delivered by the
    // reactor can never exceed the limit, since the engine counts an attempt until it has
    // taken the answer.
    let out = Arc::new(AtomicU64::new(0));
    let max_seen = Arc::new(AtomicU64::new(0));
    let (o, m) = (out.clone(), max_seen.clone());
    let (tx, rx) = mpsc::channel::<Attempt>();
    let completer_out = out.clone();
    std::thread::spawn(move || {
        while let Ok(a) = rx.recv() {
            std::thread::sleep(Duration::from_micros(200));
            completer_out.fetch_sub(1, Ordering::SeqCst);
            let _ = a.succeed(1);
        }
    });
    let tx = Mutex::new(tx);
    let spec = AgentSpec::deferred(move |_: &Request<'_>, a: Attempt| {
        let now = o.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        tx.lock().unwrap().send(a).unwrap();
    })
    .max_concurrency(4);
    let (topo, d) = one_domain(vec![("A", spec)]);
    let engine = Engine::start(topo, config()).unwrap();
    let done = run_all(&engine, d, 200);
    assert!(done.iter().all(Completion::is_ok));
    assert!(max_seen.load(Ordering::SeqCst) <= 4, "{} attempts out at once", max_seen.load(Ordering::SeqCst));
    assert!(max_seen.load(Ordering::SeqCst) >= 2, "the limit, not a single thread, bounded it");
}

#[test]
fn a_hedge_answers_for_a_slow_agent_and_the_slow_attempt_is_cancelled() {
    // In virtual time: "Slow" answers 30 ms later (a simulated I/O agent), "Fast" at once with
    // its reply bytes; the domain hedges an attempt out for 2 ms.
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    let slow = SimAgent { latency: metafed::sim::Latency::Fixed { us: 30_000.0 }, ..SimAgent::default() };
    b.agent(d, "Slow", AgentSpec::sim(slow)).unwrap();
    b.agent(
        d,
        "Fast",
        AgentSpec::deferred(|req: &Request<'_>, a: Attempt| {
            let _ = a.succeed_with(req.task_id, b"fast".to_vec());
        }),
    )
    .unwrap();
    b.hedge(d, Hedge::after(Duration::from_millis(2))).unwrap();
    no_breakers(&mut b);
    let mut sim = Engine::builder(b.build().unwrap()).simulate().unwrap();
    for i in 0..40 {
        sim.engine().try_submit(&Task::new(i, d)).unwrap();
    }
    // Past the hedges, before the slow answers.
    sim.run_until(10_000_000);
    let done = poll_all(sim.engine());
    assert_eq!(done.len(), 40);
    assert!(done.iter().all(Completion::is_ok));
    // Round-robin sends every other first attempt to Slow; each is hedged to Fast and wins.
    let hedged: Vec<_> = done.iter().filter(|c| c.attempts == 2).collect();
    assert_eq!(hedged.len(), 20);
    for c in &hedged {
        assert_eq!(c.body(), Some(&b"fast"[..]));
        assert_eq!(c.latency_ns, 2_000_001, "hedged just past the 2 ms delay, answered at once");
        assert!(c.failures().is_empty(), "a cancelled attempt is not a failure");
    }
    let s = sim.engine().stats();
    assert_eq!(s.domains[0].hedges, 20);
    assert_eq!(s.domains[0].hedge_wins, 20);
    assert_eq!(s.agents[0].cancelled, 20, "Slow loses every race");
    assert_eq!(s.late_results, 0);
    // The slow answers come at 30 ms, for attempts already abandoned: late, and dropped.
    sim.run_idle(u64::MAX);
    assert_eq!(sim.engine().stats().late_results, 20);
    assert!(poll_all(sim.engine()).is_empty(), "no second completion");
}

#[test]
fn the_retry_budget_stops_failovers_when_spent() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let fail = move |_: &Request<'_>| {
        c.fetch_add(1, Ordering::Relaxed);
        Err(7)
    };
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    for name in ["A", "B", "C"] {
        b.agent(d, name, AgentSpec::handler(fail.clone())).unwrap();
    }
    // No floor, 10% of sub-tasks: 100 tasks may retry 10 times in all.
    b.retry_budget(d, RetryBudget { ratio: 0.1, min_per_s: 0.0, window: Duration::from_secs(60) }).unwrap();
    no_breakers(&mut b);
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..config() }).unwrap();
    let done = run_all(&engine, d, 100);
    let exhausted = done.iter().filter(|c| c.reason == Reason::BudgetExhausted).count();
    let tried_all = done.iter().filter(|c| c.reason == Reason::AgentsExhausted).count();
    assert_eq!(exhausted + tried_all, 100);
    assert!(exhausted >= 90, "{exhausted} of 100 stopped by the budget");
    assert!(calls.load(Ordering::Relaxed) <= 100 + 11, "{} calls for 100 tasks", calls.load(Ordering::Relaxed));
    assert!(engine.stats().domains[0].budget_denied >= 90);
}

#[test]
fn an_isolated_pool_runs_blocking_handlers_side_by_side() {
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let spec = AgentSpec::handler(move |req: &Request<'_>| {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(10));
        r.fetch_sub(1, Ordering::SeqCst);
        Ok(req.task_id)
    })
    .threads(4);
    let (topo, d) = one_domain(vec![("Blocking", spec)]);
    let engine = Engine::start(topo, config()).unwrap();
    let done = run_all(&engine, d, 16);
    assert!(done.iter().all(Completion::is_ok));
    assert_eq!(peak.load(Ordering::SeqCst), 4, "four threads, four calls at once");
    assert!(engine.stats().agents[0].isolated);
}

#[test]
fn simulated_io_agents_match_the_oracle_exactly() {
    // W5 at small scale: every call completes 200 us later on the timer thread, p = 0.12.
    let sim = SimAgent {
        error_rate: 0.12,
        latency: metafed::sim::Latency::Fixed { us: 200.0 },
        io: true,
        ..SimAgent::default()
    };
    let mut b = Topology::builder();
    for (name, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(name).unwrap();
        for a in agents {
            b.agent(d, a, AgentSpec::sim(sim.clone())).unwrap();
        }
    }
    no_breakers(&mut b);
    let engine = Engine::start(b.build().unwrap(), config()).unwrap();
    let load = metafed_bench::driver::Load { tasks: 20_000, in_flight: 256, ..metafed_bench::driver::Load::w1(20_000) };
    let report = metafed_bench::driver::closed_loop(&engine, &load, |_| {});
    assert_eq!((report.lost, report.duplicated), (0, 0));
    assert_eq!(report.ok, metafed_bench::driver::oracle_successes(&load, 3, 0.12, 3));
    let s = engine.stats();
    assert_eq!(s.agents.iter().map(|a| a.deferred).sum::<u64>(), s.agents.iter().map(|a| a.calls).sum::<u64>());
}

#[test]
fn fan_out_tasks_join_deferred_and_immediate_sub_tasks() {
    let reactor = Arc::new(Reactor::start());
    let r = reactor.clone();
    let mut b = Topology::builder();
    let io = b.domain("IO").unwrap();
    let cpu = b.domain("CPU").unwrap();
    b.agent(
        io,
        "Rest",
        AgentSpec::deferred(move |req: &Request<'_>, a: Attempt| {
            r.after(Duration::from_micros(200), a, Ok((1, req.task_id.to_le_bytes().to_vec())));
        }),
    )
    .unwrap();
    b.agent(cpu, "Calc", AgentSpec::handler(|_: &Request<'_>| Ok(10))).unwrap();
    no_breakers(&mut b);
    let engine = Engine::start(b.build().unwrap(), config()).unwrap();
    for i in 0..50u64 {
        let t = engine.submit(&Task::fan_out(i, DomainSet::first(2)).waitable(), None).unwrap();
        let c = engine.wait(t, Some(Duration::from_secs(10))).unwrap();
        assert_eq!((c.status, c.value), (Status::Ok, 11));
        assert_eq!(c.body_of(io), Some(&i.to_le_bytes()[..]));
        assert_eq!(c.body_of(cpu), None);
    }
}

#[test]
fn blocking_calls_from_a_handler_are_refused_and_others_work() {
    let engine: Arc<Mutex<Option<Arc<Engine>>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (e, s) = (engine.clone(), seen.clone());
    let spec = AgentSpec::handler(move |req: &Request<'_>| {
        if req.task_id != 1 {
            return Ok(0);
        }
        let engine = e.lock().unwrap().clone().unwrap();
        let d = DomainId(0);
        let inner = engine.try_submit(&Task::new(2, d).waitable()).expect("a non-blocking submit works");
        let mut out = s.lock().unwrap();
        out.push(format!("{:?}", engine.wait(inner, None).err()));
        out.push(format!("{:?}", engine.wait(inner, Some(Duration::ZERO)).err()));
        out.push(format!("{:?}", engine.poll_wait(&mut [Completion::default()], None).err()));
        out.push(format!("{:?}", engine.submit(&Task::new(3, d), None).err()));
        out.push(format!("{:?}", engine.shutdown(Duration::from_secs(1)).err()));
        out.push(format!("{}", engine.stats().workers));
        Ok(1)
    });
    let (topo, d) = one_domain(vec![("A", spec)]);
    let e = Arc::new(Engine::start(topo, EngineConfig { workers: 1, ..config() }).unwrap());
    *engine.lock().unwrap() = Some(e.clone());
    let t = e.submit(&Task::new(1, d).waitable(), None).unwrap();
    let c = e.wait(t, Some(Duration::from_secs(10))).unwrap();
    assert!(c.is_ok());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], format!("{:?}", Some(WaitError::WouldDeadlock)));
    // A zero timeout does not block: it is allowed (the task may simply not be done yet).
    assert!(seen[1] == "None" || seen[1] == format!("{:?}", Some(WaitError::Timeout)), "{}", seen[1]);
    assert_eq!(seen[2], "Some(WouldDeadlock)");
    assert_eq!(seen[3], format!("{:?}", Some(SubmitError::WouldDeadlock)));
    assert_eq!(seen[4], "Some(WouldDeadlock)");
    assert_eq!(seen[5], "1");
    *engine.lock().unwrap() = None;
}

#[test]
fn dropping_the_last_engine_in_a_handler_shuts_it_down_elsewhere() {
    let holder: Arc<Mutex<Option<Engine>>> = Arc::default();
    let released = Arc::new(AtomicBool::new(false));
    let (h, r) = (holder.clone(), released.clone());
    let spec = AgentSpec::handler(move |_: &Request<'_>| {
        if let Some(engine) = h.lock().unwrap().take() {
            drop(engine); // the last handle, dropped on a worker
            r.store(true, Ordering::SeqCst);
        }
        Ok(0)
    });
    let (topo, d) = one_domain(vec![("A", spec)]);
    let engine = Engine::start(topo, EngineConfig { workers: 1, ..config() }).unwrap();
    engine.try_submit(&Task::new(1, d)).unwrap();
    *holder.lock().unwrap() = Some(engine);
    wait_for("the handler to drop the engine", || released.load(Ordering::SeqCst));
}

#[test]
fn shutdown_abandons_attempts_in_flight_and_completes_every_task_once() {
    let kept: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let k = kept.clone();
    let (topo, d) =
        one_domain(vec![("Hang", AgentSpec::deferred(move |_: &Request<'_>, a: Attempt| k.lock().unwrap().push(a)))]);
    let engine = Engine::start(topo, config()).unwrap();
    let tickets: Vec<_> = (0..100).map(|i| engine.submit(&Task::new(i, d).waitable(), None).unwrap()).collect();
    wait_for("every task's attempt to reach the agent", || kept.lock().unwrap().len() == 100);
    let report = engine.shutdown(Duration::ZERO).unwrap();
    assert_eq!(report.detached_threads, 0);
    for t in tickets {
        let c = engine.wait(t, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c.reason, Reason::ShuttingDown);
    }
    for a in std::mem::take(&mut *kept.lock().unwrap()) {
        assert!(a.is_abandoned());
        assert!(a.succeed(0).is_err());
    }
    let s = engine.stats();
    assert_eq!(s.completed, 100);
    assert_eq!(s.reasons.iter().find(|r| r.reason == Reason::ShuttingDown).map(|r| r.count), Some(100));
}
