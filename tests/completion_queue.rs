//! Completion queues: tasks submitted to a queue are delivered there and nowhere else, exactly
//! once; its descriptor is readable while completions wait; a dropped queue frees the slots of the
//! tasks still on their way to it; the shutdown sweep delivers to the queue too.

use metafed::{
    AgentSpec, AttemptQueue, Completion, CompletionQueue, DomainId, Engine, EngineConfig, Levels, Reason, Status, Task,
    Ticket, Topology,
};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; a zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// An engine whose one domain's agent waits in `queue` until the test answers (or, with no queue,
/// the seed's simulated agents).
fn engine(queue: Option<&AttemptQueue>, max_in_flight: usize) -> (Engine, DomainId) {
    let cfg = EngineConfig { workers: 1, max_in_flight, ..EngineConfig::default() };
    match queue {
        Some(q) => {
            let mut t = Topology::builder();
            let d = t.domain("IO").unwrap();
            t.agent(d, "Q", AgentSpec::queued(q.clone(), 0)).unwrap();
            t.breakers(Levels::disabled());
            (Engine::start(t.build().unwrap(), cfg).unwrap(), d)
        }
        None => {
            let e = Engine::start(Topology::seed(0.0).unwrap(), cfg).unwrap();
            let d = e.topology().domain_id("API").unwrap();
            (e, d)
        }
    }
}

/// Takes from `q` until `n` completions came (fails after 10 s rather than hang).
fn take_n(q: &CompletionQueue, n: usize) -> Vec<Completion> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = vec![Completion::default(); 64];
    while got.len() < n {
        assert!(Instant::now() < end, "took {} of {n} completions", got.len());
        let k = q.take(&mut buf);
        got.extend(buf[..k].iter().cloned());
        if k == 0 {
            std::thread::yield_now();
        }
    }
    got
}

#[test]
fn each_queue_gets_its_own_tasks_and_poll_none_of_them() {
    let (e, d) = engine(None, 8192);
    let (a, b) = (e.completion_queue(), e.completion_queue());
    let mut mine: [HashSet<Ticket>; 2] = [HashSet::new(), HashSet::new()];
    for i in 0..2_000u64 {
        let (q, side) = if i % 2 == 0 { (&a, 0) } else { (&b, 1) };
        let t = e.try_submit_to(q, &Task::new(i, d)).unwrap();
        mine[side].insert(t);
    }
    // A batch to one queue, and a task to poll beside them.
    let tasks: Vec<Task<'_>> = (2_000..2_100).map(|i| Task::new(i, d)).collect();
    let mut tickets = vec![Ticket::default(); tasks.len()];
    assert_eq!(e.submit_batch_to(&a, &tasks, &mut tickets).unwrap(), 100);
    mine[0].extend(tickets);
    let polled = e.try_submit(&Task::new(9_999, d)).unwrap();
    for (q, side, n) in [(&a, 0, 1_100), (&b, 1, 1_000)] {
        let got = take_n(q, n);
        let tickets: HashSet<Ticket> = got.iter().map(|c| c.ticket).collect();
        assert_eq!(tickets.len(), n, "no completion twice");
        assert_eq!(tickets, mine[side], "queue {side} got exactly its own tasks");
        assert!(got.iter().all(Completion::is_ok));
        assert_eq!(q.delivered(), n as u64);
    }
    let mut out = vec![Completion::default(); 8];
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < end {
        let k = e.poll(&mut out);
        seen.extend(out[..k].iter().map(|c| c.ticket));
    }
    assert_eq!(seen, vec![polled], "poll sees only the task submitted without a queue");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(a.take(&mut out) + b.take(&mut out) + e.poll(&mut out), 0, "nothing more anywhere");
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn the_descriptor_is_readable_while_completions_wait() {
    let aq = AttemptQueue::new(16);
    let (e, d) = engine(Some(&aq), 64);
    let q = e.completion_queue();
    let fd = q.fd().unwrap();
    assert!(!readable(fd));
    let t = e.try_submit_to(&q, &Task::new(1, d)).unwrap();
    let u = e.try_submit_to(&q, &Task::new(2, d)).unwrap();
    let mut attempts = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while attempts.len() < 2 {
        assert!(Instant::now() < end, "the attempts never reached their queue");
        aq.take(2, &mut attempts);
    }
    assert!(!readable(fd), "nothing is done yet");
    for a in attempts {
        a.attempt.succeed(1).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(10);
    while q.len() < 2 {
        assert!(Instant::now() < end, "the completions never came");
        std::thread::yield_now();
    }
    assert!(readable(fd));
    let mut out = vec![Completion::default(); 1];
    assert_eq!(q.take(&mut out), 1);
    assert!(readable(fd), "one completion still waits");
    let first = out[0].ticket;
    assert_eq!(q.take(&mut out), 1);
    assert!(!readable(fd), "the queue is empty");
    assert_eq!(HashSet::from([first, out[0].ticket]), HashSet::from([t, u]));
    // Not waitable: the queue took it.
    assert!(e.wait(t, Some(Duration::ZERO)).is_err());
    e.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_dropped_queue_frees_the_slots_of_the_tasks_still_on_their_way() {
    let aq = AttemptQueue::new(64);
    let (e, d) = engine(Some(&aq), 16);
    let q = e.completion_queue();
    let mut n = 0;
    while e.try_submit_to(&q, &Task::new(n, d)).is_ok() {
        n += 1;
    }
    assert!(n >= 16, "the engine took {n} tasks");
    drop(q); // the consumer goes away with every slot in flight
    let mut attempts = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while (attempts.len() as u64) < n {
        assert!(Instant::now() < end, "took {} of {n} attempts", attempts.len());
        aq.take(64, &mut attempts);
    }
    for a in attempts.drain(..) {
        a.attempt.succeed(1).unwrap();
    }
    // Their completions were discarded: the slots are free again for tasks to poll.
    let end = Instant::now() + Duration::from_secs(10);
    let mut again = 0;
    while again < n {
        assert!(Instant::now() < end, "only {again} of {n} slots came back");
        if e.try_submit(&Task::new(100 + again, d)).is_ok() {
            again += 1;
        } else {
            std::thread::yield_now();
        }
    }
    let mut out = vec![Completion::default(); 64];
    assert_eq!(e.poll(&mut out), 0, "no completion of the dropped queue's tasks reached poll");
    drop(e);
}

#[test]
fn the_shutdown_sweep_delivers_to_the_queue() {
    let aq = AttemptQueue::new(64);
    let (e, d) = engine(Some(&aq), 64);
    let q = e.completion_queue();
    let tickets: HashSet<Ticket> = (0..10).map(|i| e.try_submit_to(&q, &Task::new(i, d)).unwrap()).collect();
    // Nobody answers the attempts: the shutdown abandons them.
    let report = e.shutdown(Duration::from_millis(50)).unwrap();
    assert!(!report.drained);
    let got = take_n(&q, 10);
    assert_eq!(got.iter().map(|c| c.ticket).collect::<HashSet<_>>(), tickets);
    assert!(got.iter().all(|c| c.status != Status::Ok));
    assert!(got.iter().any(|c| c.reason == Reason::ShuttingDown || c.status == Status::Failed));
    drop(aq);
}

#[test]
#[should_panic(expected = "another engine")]
fn a_queue_of_another_engine_is_refused() {
    let (e, d) = engine(None, 64);
    let (other, _) = engine(None, 64);
    let q = other.completion_queue();
    let _ = e.try_submit_to(&q, &Task::new(1, d));
}
