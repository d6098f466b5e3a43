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
