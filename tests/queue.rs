//! Queue agents: attempts that wait in an `AttemptQueue` for a loop of the caller's, taken in
//! batches; their agent timeout counts from the take; attempts abandoned while they wait are never
//! handed out; a full queue fails the attempt over at once; the descriptor is readable while
//! attempts wait.

use metafed::{AgentSpec, AttemptQueue, DomainId, Engine, EngineConfig, FailureKind, Levels, Status, Task, Topology};
use std::time::Duration;

fn engine(queue: &AttemptQueue, agents: usize) -> (Engine, DomainId) {
    let mut t = Topology::builder();
    let d = t.domain("IO").unwrap();
    for k in 0..agents {
        t.agent(d, format!("Q{k}"), AgentSpec::queued(queue.clone(), k as u64)).unwrap();
    }
    t.breakers(Levels::disabled());
    let cfg = EngineConfig { workers: 1, ..EngineConfig::default() };
    (Engine::start(t.build().unwrap(), cfg).unwrap(), d)
}

/// Waits until `cond` holds; fails the test after 10 s rather than hang.
fn until(what: &str, cond: impl Fn() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < end, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

#[test]
fn attempts_wait_in_the_queue_and_complete_from_the_taker() {
    let q = AttemptQueue::new(16);
    let (e, d) = engine(&q, 1);
    let tickets: Vec<_> =
        (0..5u64).map(|i| e.try_submit(&Task::new(i, d).payload(i).data(&[i as u8; 3]).waitable()).unwrap()).collect();
    until("the five attempts wait", || q.len() == 5);
    let mut got = Vec::new();
    assert_eq!((q.take(2, &mut got), q.take(2, &mut got), q.take(2, &mut got)), (2, 2, 1));
    assert!(q.is_empty());
    for a in got {
        assert_eq!(a.request.data, vec![a.request.task_id as u8; 3]);
        assert_eq!((a.tag, a.request.domain, a.request.attempt), (0, d, 0));
        assert!(a.timeout > Duration::ZERO && a.timeout <= Duration::from_millis(50));
        let v = a.request.payload * 10;
        a.attempt.succeed(v).unwrap();
    }
    for (i, t) in tickets.into_iter().enumerate() {
        let c = e.wait(t, Some(Duration::from_secs(5))).unwrap();
        assert_eq!((c.status, c.value), (Status::Ok, i as u64 * 10));
    }
    let s = q.stats();
    assert_eq!((s.queued, s.taken, s.expired, s.refused, s.waiting), (5, 5, 0, 0, 0));
    assert!(s.high_water >= 1);
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn the_agent_timeout_counts_from_the_take() {
    let q = AttemptQueue::new(16);
    let (e, d) = engine(&q, 1);
    let t = e.try_submit(&Task::new(1, d).waitable()).unwrap();
    until("the attempt waits", || q.len() == 1);
    // Longer than the agent timeout (50 ms), shorter than the domain timeout (200 ms): still
    // handed out, and answered at once it is neither abandoned nor slow.
    std::thread::sleep(Duration::from_millis(90));
    let mut got = Vec::new();
    assert_eq!(q.take(8, &mut got), 1, "{:?}", q.stats());
    assert!(got[0].waited >= Duration::from_millis(80), "waited {:?}", got[0].waited);
    got.pop().unwrap().attempt.succeed(7).unwrap();
    let c = e.wait(t, Some(Duration::from_secs(5))).unwrap();
    assert_eq!((c.status, c.value), (Status::Ok, 7), "{c:?}");
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_attempt_abandoned_while_waiting_is_never_handed_out() {
    let q = AttemptQueue::new(16);
    let (e, d) = engine(&q, 1);
    let t = e.try_submit(&Task::new(1, d).waitable()).unwrap();
    // The domain timeout (200 ms) passes while it waits: the engine abandons it.
    let c = e.wait(t, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.status, Status::TimedOut, "{c:?}");
    let mut got = Vec::new();
    assert_eq!(q.take(8, &mut got), 0);
    assert_eq!(q.stats().expired, 1);
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_full_queue_fails_the_attempt_over_at_once() {
    let q = AttemptQueue::new(1);
    let (e, d) = engine(&q, 2);
    let first = e.try_submit(&Task::new(1, d).waitable()).unwrap();
    // The queue holds the first task's attempt; the second task's attempts find it full.
    until("the first attempt waits", || q.len() == 1);
    let second = e.try_submit(&Task::new(2, d).waitable()).unwrap();
    let c = e.wait(second, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.status, Status::Failed, "{c:?}");
    assert!(c.failures().iter().all(|f| f.kind == FailureKind::Overloaded), "{c:?}");
    assert_eq!(q.stats().refused, 2);
    let mut got = Vec::new();
    assert_eq!(q.take(8, &mut got), 1);
    got.pop().unwrap().attempt.succeed(1).unwrap();
    assert_eq!(e.wait(first, Some(Duration::from_secs(5))).unwrap().status, Status::Ok);
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn the_descriptor_is_readable_while_attempts_wait() {
    fn readable(fd: std::os::fd::RawFd) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; a zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }
    let q = AttemptQueue::new(16);
    let fd = q.fd().unwrap();
    let (e, d) = engine(&q, 1);
    assert!(!readable(fd));
    let t = e.try_submit(&Task::new(1, d).waitable()).unwrap();
    let u = e.try_submit(&Task::new(2, d).waitable()).unwrap();
    until("both attempts wait", || q.len() == 2);
    assert!(readable(fd));
    let mut got = Vec::new();
    assert_eq!(q.take(1, &mut got), 1);
    assert!(readable(fd), "one attempt still waits");
    assert_eq!(q.take(1, &mut got), 1);
    assert!(!readable(fd), "the queue is empty");
    for a in got {
        a.attempt.succeed(1).unwrap();
    }
    for x in [t, u] {
        assert_eq!(e.wait(x, Some(Duration::from_secs(5))).unwrap().status, Status::Ok);
    }
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_queued_agent_cannot_be_isolated() {
    let mut t = Topology::builder();
    let d = t.domain("IO").unwrap();
    let e = t
        .agent(d, "Q", AgentSpec::queued(AttemptQueue::default(), 0).isolated())
        .map(|_| ())
        .and_then(|()| t.build().map(|_| ()));
    let message = format!("{}", e.unwrap_err());
    assert!(message.contains("cannot be isolated"), "{message}");
}
