//! Scheduling across workers: work conservation (no task waits in one worker's ring while
//! another worker sleeps).

use crate::common::{self, PATIENCE};
use metafed::{AgentSpec, Engine, EngineConfig, Request, Status, Task};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A synchronous handler that blocks holds its worker; a task submitted after it, from the same
/// thread (so to the same worker's ring), runs on the other worker, which was asleep, instead of
/// waiting for the handler to return.
#[test]
fn a_task_behind_a_blocked_worker_runs_on_a_sleeping_one() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let blocked = Arc::new(AtomicBool::new(false));
    let (g, b) = (gate.clone(), blocked.clone());
    let handler = move |r: &Request<'_>| {
        if r.task_id == 0 {
            b.store(true, Ordering::SeqCst);
            let (open, cv) = &*g;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait_timeout(open, PATIENCE).unwrap().0;
            }
        }
        Ok(r.task_id)
    };
    let (topo, d) = common::one_domain(vec![("A", AgentSpec::handler(handler))]);
    // Idle workers park at once (no spinning, no yielding), so the other worker is asleep when
    // the second task comes; the task must not wait for a wake-up that only its own worker gets.
    let config = EngineConfig { idle_spins: 0, idle_yield_us: 0, ..common::config() };
    let engine = Engine::start(topo, config).unwrap();
    let first = engine.submit(&Task::new(0, d).waitable(), None).unwrap();
    common::wait_for("the first task's handler to block its worker", || blocked.load(Ordering::SeqCst));
    // Longer than a worker may spend in one turn before it counts as stuck (200 us): the clock
    // only moves forward, so after this the blocked worker is stuck by the engine's rule.
    std::thread::sleep(Duration::from_millis(2));
    let second = engine.submit(&Task::new(1, d).waitable(), None).unwrap();
    let c = engine.wait(second, Some(PATIENCE)).expect("the second task completes while the first worker is blocked");
    assert_eq!(c.status, Status::Ok);
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let c = engine.wait(first, Some(PATIENCE)).unwrap();
    assert_eq!(c.id, 0);
}

/// A gate a handler waits at until the test opens it (or [`PATIENCE`] passes).
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    entered: AtomicBool,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self { open: Mutex::new(false), cv: Condvar::new(), entered: AtomicBool::new(false) })
    }

    fn pass(&self) {
        self.entered.store(true, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait_timeout(open, PATIENCE).unwrap().0;
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// One worker; domain "F" answers at once, domain "S" runs `slow` (task ids are passed on).
fn fast_and_slow(
    slow: impl Fn(&Request<'_>) + Send + Sync + 'static,
    drain: Duration,
) -> (Engine, [metafed::DomainId; 2]) {
    let mut b = metafed::Topology::builder();
    let f = b.domain("F").unwrap();
    let s = b.domain("S").unwrap();
    b.agent(f, "f", AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id))).unwrap();
    b.agent(
        s,
        "s",
        AgentSpec::handler(move |r: &Request<'_>| {
            slow(r);
            Ok(r.task_id)
        }),
    )
    .unwrap();
    common::no_breakers(&mut b);
    let config = EngineConfig { workers: 1, drain_timeout: drain, ..common::config() };
    (Engine::start(b.build().unwrap(), config).unwrap(), [f, s])
}

/// Polls until a completion comes (failing after [`PATIENCE`]).
fn poll_one(engine: &Engine) -> metafed::Completion {
    let mut out = vec![metafed::Completion::default(); 1];
    let n = engine.poll_wait(&mut out, Some(PATIENCE)).unwrap();
    assert_eq!(n, 1, "a completion within {PATIENCE:?}");
    std::mem::take(&mut out[0])
}

/// A worker publishes what it completed before a call to an agent whose last call was slow:
/// a task completed in the same turn is polled while that handler blocks.
#[test]
fn a_completion_made_before_a_slow_agents_call_is_polled_while_it_blocks() {
    let gate = Gate::new();
    let g = gate.clone();
    let (engine, [f, s]) = fast_and_slow(
        move |r| {
            if r.task_id == 0 {
                std::thread::sleep(Duration::from_millis(2)); // a slow call: "S" is slow now
            } else {
                g.pass();
            }
        },
        Duration::from_secs(5),
    );
    engine.submit(&Task::new(0, s), None).unwrap();
    assert_eq!(poll_one(&engine).id, 0);
    // One batch, so most often one turn: 1 completes, then 2's handler blocks.
    let mut tickets = [metafed::Ticket::default(); 2];
    assert_eq!(engine.submit_batch(&[Task::new(1, f), Task::new(2, s)], &mut tickets).unwrap(), 2);
    let c = poll_one(&engine);
    assert_eq!((c.id, c.status), (1, Status::Ok), "task 1 polled while task 2's handler blocks");
    gate.open();
    assert_eq!(poll_one(&engine).id, 2);
}

/// A worker stuck in a handler at shutdown (detached) may hold completions it made before the
/// call and never published: the shutdown queues them for `poll`, so no task is left without
/// its completion.
#[test]
fn completions_held_by_a_worker_stuck_at_shutdown_are_still_polled() {
    let gate = Gate::new();
    let g = gate.clone();
    let (engine, [f, s]) = fast_and_slow(move |_| g.pass(), Duration::from_millis(20));
    let mut tickets = [metafed::Ticket::default(); 2];
    assert_eq!(engine.submit_batch(&[Task::new(1, f), Task::new(2, s)], &mut tickets).unwrap(), 2);
    common::wait_for("task 2's handler to block the worker", || gate.entered.load(Ordering::SeqCst));
    let report = engine.shutdown(Duration::from_millis(20)).unwrap();
    assert_eq!(report.detached_threads, 1, "{report:?}");
    let mut got: Vec<(u64, Status)> = (0..2).map(|_| poll_one(&engine)).map(|c| (c.id, c.status)).collect();
    got.sort_unstable_by_key(|x| x.0);
    assert_eq!(got, [(1, Status::Ok), (2, Status::Rejected)]);
    let mut out = vec![metafed::Completion::default(); 4];
    assert_eq!(engine.poll(&mut out), 0, "each task once");
    gate.open();
}

/// A worker takes a batch from its ring but admits only up to its capacity: the rest go back to
/// the shared overflow queue for any worker (one asleep is woken), and every task completes once.
#[test]
fn tickets_past_a_workers_capacity_go_to_another_and_all_complete_once() {
    for workers in [1, 2] {
        let (topo, d) = common::one_domain(vec![("A", AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id)))]);
        let config = EngineConfig { workers, worker_capacity: 4, idle_spins: 0, idle_yield_us: 0, ..common::config() };
        let engine = Engine::start(topo, config).unwrap();
        let n = 2_000u64;
        let tasks: Vec<Task<'_>> = (0..n).map(|i| Task::new(i, d)).collect();
        let mut tickets = vec![metafed::Ticket::default(); tasks.len()];
        let mut sent = 0;
        let mut seen = vec![false; n as usize];
        let mut out = vec![metafed::Completion::default(); 256];
        let mut done = 0;
        while done < n {
            if sent < tasks.len() {
                sent += engine.submit_batch(&tasks[sent..], &mut tickets[sent..]).unwrap_or(0);
            }
            let got = engine.poll_wait(&mut out, Some(PATIENCE)).unwrap();
            assert!(got > 0, "{workers} workers: no completion within {PATIENCE:?} ({done} of {n})");
            for c in &out[..got] {
                assert_eq!(c.status, Status::Ok, "{c:?}");
                assert!(!std::mem::replace(&mut seen[c.id as usize], true), "task {} completed twice", c.id);
            }
            done += got as u64;
        }
        assert_eq!(engine.stats().admitted, n, "{workers} workers");
    }
}

/// A batch that does not fit under the worker's capacity is admitted up to it before any of its
/// handlers runs, and the tickets past it go to the overflow at once, not after those handlers
/// return: a worker whose first task blocks still holds the batch's first four admitted (it would
/// hold only the blocked one had their sub-tasks started as each was admitted).
#[test]
fn a_batch_past_the_capacity_is_admitted_up_to_it_before_a_handler_runs() {
    let gate = Gate::new();
    let g = gate.clone();
    let handler = move |r: &Request<'_>| {
        if r.task_id == 0 {
            g.pass();
        }
        Ok(r.task_id)
    };
    let (topo, d) = common::one_domain(vec![("A", AgentSpec::handler(handler))]);
    // One worker (no other to steal part of the batch), of capacity 4.
    let config = EngineConfig { workers: 1, worker_capacity: 4, ..common::config() };
    let engine = Engine::start(topo, config).unwrap();
    let tasks: Vec<Task<'_>> = (0..8).map(|i| Task::new(i, d)).collect();
    let mut tickets = vec![metafed::Ticket::default(); tasks.len()];
    // One batch: the ring publishes the eight tickets at once.
    assert_eq!(engine.submit_batch(&tasks, &mut tickets).unwrap(), 8);
    common::wait_for("the first task's handler to block its worker", || gate.entered.load(Ordering::SeqCst));
    assert_eq!(engine.stats().admitted, 4, "tasks 0 to 3 admitted, 4 to 7 in the overflow");
    gate.open();
    let mut seen = [false; 8];
    let mut out = vec![metafed::Completion::default(); 8];
    let mut done = 0;
    while done < 8 {
        let got = engine.poll_wait(&mut out, Some(PATIENCE)).unwrap();
        assert!(got > 0, "no completion within {PATIENCE:?} ({done} of 8)");
        for c in &out[..got] {
            assert_eq!(c.status, Status::Ok, "{c:?}");
            assert!(!std::mem::replace(&mut seen[c.id as usize], true), "task {} completed twice", c.id);
        }
        done += got;
    }
}
