//! Loom models of the engine's concurrency protocols, explored over every interleaving loom
//! reaches (`LOOM_MAX_PREEMPTIONS=2` in CI):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib loom_models
//! ```
//!
//! They exercise the very code the engine runs: under `--cfg loom` the `sync` facade hands it
//! loom's atomics, cells, locks and threads. Capacities are tiny so models stay small.

use crate::breaker::{Breaker, BreakerConfig, BreakerMode, BreakerState, Permit, TransitionCause};
use crate::completions::Completions;
use crate::ingress::{Ingress, push_all};
use crate::park::{Parker, WaitList};
use crate::queue::Mpmc;
use crate::ring;
use crate::slab::Slab;
use crate::sync::{Arc, AtomicU64, Ordering, thread};
use crate::task::{Completion, Reason, Status, Ticket};
use std::time::Duration;

/// A breaker with only the consecutive-failure trigger (no window: fewer atomics to explore).
fn breaker(threshold: u32, probes: u32) -> Breaker {
    Breaker::new(breaker_config(threshold, probes), 1)
}

fn breaker_config(threshold: u32, probes: u32) -> BreakerConfig {
    BreakerConfig {
        timeout: Duration::from_millis(50),
        consecutive_failures: threshold,
        failure_rate: 0.0,
        window: Duration::from_secs(1),
        min_calls: 1,
        count_window: 0,
        slow_call_duration: Duration::ZERO,
        slow_call_rate: 0.0,
        open_base: Duration::from_nanos(10),
        open_max: Duration::from_nanos(1000),
        half_open_probes: probes,
        mode: BreakerMode::Normal,
    }
}

#[test]
fn ring_is_fifo_across_a_full_ring() {
    loom::model(|| {
        let (mut p, mut c) = ring::channel::<u32>(2);
        let producer = thread::spawn(move || {
            for v in 0..3 {
                let mut v = v;
                loop {
                    match p.push(v) {
                        Ok(()) => break,
                        Err(back) => {
                            v = back;
                            p.publish();
                            thread::yield_now();
                        }
                    }
                }
                p.publish();
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            match c.pop() {
                Some(v) => got.push(v),
                None => {
                    c.release();
                    thread::yield_now();
                }
            }
        }
        c.release();
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    });
}

#[test]
fn ring_drops_what_was_not_consumed_exactly_once() {
    loom::model(|| {
        let item = Arc::new(());
        let (mut p, mut c) = ring::channel(2);
        let i2 = item.clone();
        let producer = thread::spawn(move || {
            let _ = p.push(i2.clone());
            let _ = p.push(i2);
            p.publish();
        });
        let consumed = c.pop();
        producer.join().unwrap();
        drop(consumed);
        drop(c);
        // The producer half is gone; the consumer half was the last owner of the ring.
        assert_eq!(Arc::strong_count(&item), 1);
    });
}

#[test]
fn a_count_window_filled_by_racing_failures_trips_once_and_counts_exactly() {
    loom::model(|| {
        // A count window of two calls holding two successes; two threads each record a failure
        // over them. Whichever records last sees both failures and trips; the other may or may
        // not: exactly one transition, and the totals are the ring's contents.
        let cfg = BreakerConfig {
            consecutive_failures: 0,
            failure_rate: 1.0,
            min_calls: 2,
            count_window: 2,
            ..breaker_config(0, 1)
        };
        let b = Arc::new(Breaker::new(cfg, 2));
        b.on_result(Permit::Call, 1, 1, true, 0);
        b.on_result(Permit::Call, 1, 1, true, 0);
        let b2 = b.clone();
        let t = thread::spawn(move || b2.on_result(Permit::Call, 2, 1, false, 1).is_some() as u32);
        let here = b.on_result(Permit::Call, 2, 1, false, 0).is_some() as u32;
        let there = t.join().unwrap();
        assert_eq!(here + there, 1, "exactly one thread makes the transition");
        let s = b.snapshot(3);
        assert_eq!((s.window_calls, s.window_failures, s.opened), (2, 2, 1));
    });
}

#[test]
fn concurrent_failures_trip_the_breaker_once() {
    loom::model(|| {
        let b = Arc::new(breaker(2, 1));
        let b2 = b.clone();
        let t = thread::spawn(move || b2.on_result(Permit::Call, 1, 1, false, 0).is_some() as u32);
        let here = b.on_result(Permit::Call, 1, 1, false, 0).is_some() as u32;
        let there = t.join().unwrap();
        assert_eq!(here + there, 1, "exactly one thread makes the transition");
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot(0).opened, 1);
    });
}

#[test]
fn half_open_grants_no_more_probes_than_allowed() {
    loom::model(|| {
        let b = Arc::new(breaker(1, 1));
        b.on_result(Permit::Call, 0, 1, false, 0); // open until t = 10
        let b2 = b.clone();
        let t = thread::spawn(move || b2.try_acquire(100).0);
        let here = b.try_acquire(100).0;
        let there = t.join().unwrap();
        let probes = [here, there].iter().filter(|&&p| p == Permit::Probe).count();
        assert_eq!(probes, 1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    });
}

#[test]
fn a_failed_probe_and_a_successful_one_race_to_one_outcome() {
    loom::model(|| {
        let b = Arc::new(breaker(1, 2));
        b.on_result(Permit::Call, 0, 1, false, 0);
        assert_eq!(b.try_acquire(100).0, Permit::Probe);
        assert_eq!(b.try_acquire(100).0, Permit::Probe);
        let b2 = b.clone();
        let t = thread::spawn(move || b2.on_result(Permit::Probe, 101, 1, true, 0));
        let failed = b.on_result(Permit::Probe, 101, 1, false, 0);
        let succeeded = t.join().unwrap();
        // Two successes are needed to close, so the failure always wins: reopened, once.
        assert_eq!(failed.map(|t| t.cause), Some(TransitionCause::ProbeFailed));
        assert_eq!(succeeded, None);
        assert_eq!(b.state(), BreakerState::Open);
    });
}

fn publish_one(slab: &Slab, waitable: bool) -> Ticket {
    let idx = slab.pool(0).alloc().unwrap();
    // SAFETY: just allocated, not published.
    let req = unsafe { slab.req_mut(idx) };
    req.id = 7;
    slab.publish(idx, !waitable, waitable)
}

/// What a worker does before it completes a slot it admitted: fills in the outcome.
fn write_outcome(slab: &Slab, t: Ticket) {
    // SAFETY: the caller admitted the slot and has not completed it.
    let c: &mut Completion = unsafe { slab.out(t.slot()) };
    c.ticket = t;
    c.id = 7;
    c.status = Status::Failed;
    c.reason = Reason::AgentsExhausted;
}

/// What a worker does with a task it is given: admits it, fills in the outcome, completes it.
fn run_as_worker(slab: &Slab, t: Ticket) {
    assert!(slab.admit(t));
    write_outcome(slab, t);
    assert!(slab.complete(t));
}

#[test]
fn a_waiter_gets_the_completion_exactly_once() {
    loom::model(|| {
        let slab = Arc::new(Slab::new(1, 1));
        let t = publish_one(&slab, true);
        let s2 = slab.clone();
        let worker = thread::spawn(move || {
            run_as_worker(&s2, t);
        });
        let c = slab.wait(t, None).unwrap();
        worker.join().unwrap();
        assert_eq!((c.id, c.reason), (7, Reason::AgentsExhausted));
        // Delivered once: the slot is free again and the ticket is stale.
        assert_eq!(slab.wait(t, None), Err(crate::error::WaitError::UnknownTicket));
        assert_eq!(slab.free_len(), 1);
    });
}

#[test]
fn a_waiter_leaves_the_next_tasks_waiter_registered() {
    loom::model(|| {
        // One slot. A waits on the first task; as soon as A frees the slot, B submits the next
        // task into it and waits on that. Had A cleared its registration after freeing the slot,
        // B could find A's registration still there (and be refused as `AlreadyWaiting`), or A
        // could clear B's (and B would sleep unwoken).
        let slab = Arc::new(Slab::new(1, 1));
        let t1 = publish_one(&slab, true);
        let next = Arc::new(AtomicU64::new(0));
        let (s2, n2) = (slab.clone(), next.clone());
        let worker = thread::spawn(move || {
            for t in [Some(t1), None] {
                let t = t.unwrap_or_else(|| {
                    loop {
                        match n2.load(Ordering::Acquire) {
                            0 => thread::yield_now(),
                            raw => break Ticket(raw),
                        }
                    }
                });
                run_as_worker(&s2, t);
            }
        });
        let (s3, n3) = (slab.clone(), next.clone());
        let b = thread::spawn(move || {
            let idx = loop {
                match s3.pool(0).alloc() {
                    Some(idx) => break idx,
                    None => thread::yield_now(),
                }
            };
            let t2 = s3.publish(idx, false, true);
            n3.store(t2.0, Ordering::Release);
            s3.wait(t2, None).map(|c| c.id)
        });
        assert_eq!(slab.wait(t1, None).map(|c| c.id), Ok(7));
        assert_eq!(b.join().unwrap(), Ok(7));
        worker.join().unwrap();
    });
}

#[test]
fn a_completion_is_taken_once_by_racing_pollers() {
    loom::model(|| {
        let slab = Arc::new(Slab::new(1, 1));
        let queue = Arc::new(Mpmc::new(1));
        let t = publish_one(&slab, false);
        assert!(slab.admit(t));
        let (s2, q2) = (slab.clone(), queue.clone());
        let worker = thread::spawn(move || {
            write_outcome(&s2, t);
            assert!(s2.complete(t));
            q2.push(t.0).unwrap();
        });
        let s3 = slab.clone();
        // A second thread tries to take the same ticket directly while the poller pops it.
        let racer = thread::spawn(move || s3.take(t).is_some() as u32);
        let mut polled = 0;
        loop {
            if let Some(raw) = queue.pop() {
                polled += slab.take(Ticket(raw)).is_some() as u32;
                break;
            }
            thread::yield_now();
        }
        worker.join().unwrap();
        let raced = racer.join().unwrap();
        assert_eq!(polled + raced, 1);
        assert_eq!(slab.free_len(), 1);
    });
}

/// `poll_wait`'s loop over the completion rings: drain, else sleep unless a ticket is ready.
fn poll_one(queues: &Completions, pollers: &WaitList) -> u64 {
    loop {
        let mut got = None;
        queues.drain(0, |t| {
            got = Some(t);
            false
        });
        if let Some(t) = got {
            return t;
        }
        pollers.sleep(|| queues.ready(), None);
        thread::yield_now();
    }
}

/// One worker's completion ring and the pollers' wait list, and the worker's thread, which
/// completes `tickets` in turns of one: each pushed, then published, then the sleepers woken.
#[allow(clippy::type_complexity)]
fn completing(tickets: &'static [u64]) -> (Arc<(Completions, WaitList)>, thread::JoinHandle<()>) {
    let (queues, mut tx) = Completions::new(1, 2, 2);
    let shared = Arc::new((queues, WaitList::new()));
    let mut tx = tx.pop().unwrap();
    let s2 = shared.clone();
    let worker = thread::spawn(move || {
        for &t in tickets {
            s2.0.push(t, Some(&mut tx));
            tx.publish();
            s2.1.notify_all();
        }
    });
    (shared, worker)
}

#[test]
fn a_poller_asleep_on_the_completion_rings_is_woken_by_a_publish() {
    loom::model(|| {
        let (shared, worker) = completing(&[7]);
        // A lost wake-up would leave the poller parked for ever: loom reports the deadlock.
        assert_eq!(poll_one(&shared.0, &shared.1), 7);
        worker.join().unwrap();
    });
}

#[test]
fn pollers_racing_for_a_ring_take_each_ticket_once() {
    loom::model(|| {
        let (shared, worker) = completing(&[1, 2]);
        let s3 = shared.clone();
        let other = thread::spawn(move || poll_one(&s3.0, &s3.1));
        let mine = poll_one(&shared.0, &shared.1);
        let theirs = other.join().unwrap();
        worker.join().unwrap();
        let mut both = [mine, theirs];
        both.sort_unstable();
        assert_eq!(both, [1, 2], "each ticket to exactly one poller");
        assert!(!shared.0.ready());
    });
}

// Ingress (`crate::ingress`): submitters take turns as a worker's ring's producer, the worker
// and thieves as its consumer; the overflow queue takes what finds every ring taken.

/// Takes every ticket waiting in `ring`, if no one else holds its consuming half.
fn take_all(ring: &Ingress, into: &mut Vec<u64>) {
    if let Some(mut rx) = ring.try_consumer() {
        while let Some(t) = rx.pop() {
            into.push(t.0);
        }
        rx.release();
    }
}

#[test]
fn a_worker_asleep_is_woken_by_a_batch_published_on_its_ring() {
    loom::model(|| {
        let ring = Arc::new(Ingress::new(2));
        let overflow = Arc::new(Mpmc::new(2));
        let parker = Arc::new(Parker::new());
        let (r2, o2, p2) = (ring.clone(), overflow.clone(), parker.clone());
        let worker = thread::spawn(move || {
            p2.register();
            let mut got = Vec::new();
            while got.len() < 2 {
                take_all(&r2, &mut got);
                if got.len() < 2 {
                    p2.sleep(|| !r2.is_empty() || !o2.is_empty(), None);
                }
            }
            got
        });
        // A submitter's batch: pushed, published with one store, then the fence and the wake-up
        // (`Engine::submit_batch`).
        let woken = push_all(1, |_| &*ring, &overflow, 0, &[Ticket(1), Ticket(2)]);
        assert_eq!(woken, 1);
        crate::sync::fence(Ordering::SeqCst);
        parker.wake_fenced();
        // A lost wake-up would leave the worker parked for ever: loom reports the deadlock.
        assert_eq!(worker.join().unwrap(), [1, 2], "in order, each once");
    });
}

#[test]
fn racing_submitters_and_a_thief_hand_every_ticket_to_one_worker_once() {
    loom::model(|| {
        let rings = Arc::new([Ingress::new(2), Ingress::new(2)]);
        let overflow = Arc::new(Mpmc::new(4));
        let (r2, o2) = (rings.clone(), overflow.clone());
        // A second submitter, aiming at the same worker.
        let other = thread::spawn(move || {
            push_all(2, |w| &r2[w], &o2, 0, &[Ticket(3), Ticket(4)]);
        });
        let r3 = rings.clone();
        // A thief takes what it can from worker 0's ring meanwhile.
        let thief = thread::spawn(move || {
            let mut got = Vec::new();
            take_all(&r3[0], &mut got);
            got
        });
        push_all(2, |w| &rings[w], &overflow, 0, &[Ticket(1), Ticket(2)]);
        other.join().unwrap();
        let mut all = thief.join().unwrap();
        for ring in rings.iter() {
            take_all(ring, &mut all);
        }
        while let Some(t) = overflow.pop() {
            all.push(t.0);
        }
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3, 4], "every ticket taken exactly once");
    });
}

#[test]
fn the_shutdown_sweep_and_the_worker_complete_a_task_once() {
    loom::model(|| {
        let slab = Arc::new(Slab::new(1, 1));
        let t = publish_one(&slab, false);
        let s2 = slab.clone();
        let worker = thread::spawn(move || {
            // The worker writes its outcome before it completes (a worker stuck in a handler
            // writes it after the sweep claimed the task: never read then).
            if !s2.admit(t) {
                return 0;
            }
            write_outcome(&s2, t);
            s2.complete(t) as u32
        });
        let swept = slab.claim_abandoned(t.slot()).is_some();
        if swept {
            slab.finish_swept(t.slot(), 5);
        }
        let worked = worker.join().unwrap();
        assert_eq!(swept as u32 + worked, 1);
        // Whoever completed it, the one outcome taken says so.
        let c = slab.take(t).unwrap();
        assert_eq!(c.reason, if swept { Reason::ShuttingDown } else { Reason::AgentsExhausted });
    });
}

#[test]
fn a_pinned_slot_is_freed_once_after_its_last_reader() {
    loom::model(|| {
        let slab = Arc::new(Slab::new(1, 1));
        let t = publish_one(&slab, false);
        assert!(slab.admit(t));
        let s2 = slab.clone();
        // An isolated agent pins the slot if the task is still running, reads, and unpins.
        let agent = thread::spawn(move || {
            if s2.try_pin(t) {
                s2.unpin(t.slot());
            }
        });
        write_outcome(&slab, t);
        assert!(slab.complete(t));
        assert!(slab.take(t).is_some());
        agent.join().unwrap();
        assert_eq!(slab.free_len(), 1, "freed exactly once, whoever finished last");
        assert!(slab.pool(0).alloc().is_some());
    });
}

#[test]
fn a_sleeping_thread_is_never_left_asleep_with_work_waiting() {
    loom::model(|| {
        let parker = Arc::new(Parker::new());
        let work = Arc::new(AtomicU64::new(0));
        let (p2, w2) = (parker.clone(), work.clone());
        let sleeper = thread::spawn(move || {
            p2.register();
            while w2.load(Ordering::Acquire) == 0 {
                p2.sleep(|| w2.load(Ordering::Acquire) != 0, None);
            }
        });
        work.store(1, Ordering::Release);
        parker.wake();
        // If the wake-up were lost, the sleeper would park forever and loom would report a
        // deadlock here.
        sleeper.join().unwrap();
    });
}

// Deferred attempts (`crate::attempt`): the hand-off of an answer from any thread back to the
// worker that armed the attempt, against the worker's own timeout.

use crate::attempt::{Attempt, Hub, Taken};
use crate::policy::bulkhead::Bulkhead;

fn hub(slots: usize) -> Arc<Hub> {
    Arc::new(Hub::new(slots, 0, crate::clock::Clock::new()))
}

/// Takes the worker's next inbox entry, waiting for it.
fn take_next(h: &Hub) -> Taken {
    loop {
        if let Some(t) = h.take() {
            return t;
        }
        thread::yield_now();
    }
}

#[test]
fn an_attempt_is_answered_or_abandoned_never_both() {
    loom::model(|| {
        let h = hub(1);
        let g = h.arm(0);
        let attempt = Attempt::new(h.clone(), 0, g, 0);
        // A completer answers from another thread while the worker's timer fires.
        let completer = thread::spawn(move || attempt.succeed_with(42, vec![1, 2, 3]).is_ok());
        let abandoned = h.abandon(0, g);
        let answered = completer.join().unwrap();
        assert!(answered != abandoned, "exactly one of the two wins");
        match take_next(&h) {
            Taken::Answer(0, a) => {
                assert!(answered);
                assert_eq!((a.failure, a.value, a.body.as_slice()), (None, 42, &[1u8, 2, 3][..]));
            }
            Taken::Retired(0) => assert!(abandoned),
            _ => unreachable!(),
        }
        assert_eq!(h.late(), u64::from(abandoned), "a completion after abandonment is counted late");
        assert!(h.take().is_none(), "one inbox entry per attempt");
        // The slot is free again, one generation on: the old handle is stale.
        assert_eq!(h.arm(0), g + 1);
    });
}

#[test]
fn a_completer_wakes_a_sleeping_worker() {
    loom::model(|| {
        let h = hub(1);
        let g = h.arm(0);
        let attempt = Attempt::new(h.clone(), 0, g, 0);
        let h2 = h.clone();
        let worker = thread::spawn(move || {
            h2.parker.register();
            loop {
                if let Some(t) = h2.take() {
                    return matches!(t, Taken::Answer(0, _));
                }
                h2.parker.sleep(|| h2.has_mail(), None);
            }
        });
        attempt.fail(5).unwrap();
        // A lost wake-up would leave the worker parked forever: loom reports the deadlock.
        assert!(worker.join().unwrap());
    });
}

#[test]
fn a_dropped_handle_of_an_abandoned_attempt_retires_it_without_counting_it_late() {
    loom::model(|| {
        let h = hub(1);
        let g = h.arm(0);
        let attempt = Attempt::new(h.clone(), 0, g, 0);
        let holder = thread::spawn(move || drop(attempt));
        let abandoned = h.abandon(0, g);
        holder.join().unwrap();
        match take_next(&h) {
            Taken::Answer(0, a) => {
                assert!(!abandoned);
                assert_eq!(a.failure, Some(crate::task::FailureKind::Dropped));
            }
            Taken::Retired(0) => assert!(abandoned),
            _ => unreachable!(),
        }
        assert_eq!(h.late(), 0);
    });
}

#[test]
fn a_bulkhead_never_lets_more_in_than_its_limit() {
    loom::model(|| {
        let b = Arc::new(Bulkhead::new(1));
        let b2 = b.clone();
        let t = thread::spawn(move || b2.reserve() as u32);
        let here = b.reserve() as u32;
        let there = t.join().unwrap();
        assert_eq!(here + there, 1, "one place, one taker");
        b.release();
        assert!(b.reserve(), "a released place is taken again");
    });
}

#[test]
fn a_claim_racing_single_admissions_never_lets_the_limiter_count_less_than_was_admitted() {
    use crate::policy::RateLimiter;
    loom::model(|| {
        // One admission every 10 ns, bursts of 5 (a tolerance of 40 ns): room for all three
        // admissions below, at any interleaving, so none is refused.
        let l = Arc::new(RateLimiter::new(1e8, 5.0));
        let l2 = l.clone();
        // A worker's batch: two claimed at once, one of them used, the other given back if no
        // admission came after the claim (or, when the claim finds too little room, one
        // checked alone).
        let t = thread::spawn(move || match l2.claim(0, 2) {
            Some(mut c) => {
                assert!(c.take());
                (1, l2.unclaim(c))
            }
            None => (u32::from(l2.allow(0)), true),
        });
        let here = u32::from(l.allow(0)) + u32::from(l.allow(0));
        let (there, given_back) = t.join().unwrap();
        assert_eq!(here + there, 3, "room for every admission");
        // The bucket counts the three, and the claim's unused admission unless it went back:
        // two more fit at 0, or one, never three.
        let more = (0..3).take_while(|_| l.allow(0)).count();
        assert_eq!(more, if given_back { 2 } else { 1 });
    });
}

// The multi-producer multi-consumer queue (`crate::queue`, under loom a transcription of
// crossbeam-queue's algorithm on loom's atomics): the overflow queues of the rings, the
// workers' inboxes and the free slots' queues all rest on it.

#[test]
fn mpmc_hands_every_item_to_exactly_one_consumer() {
    loom::model(|| {
        // Capacity 1: the second push needs the first item gone, and the queue goes round a lap.
        let q = Arc::new(Mpmc::new(1));
        let (q1, q2) = (q.clone(), q.clone());
        let producer = thread::spawn(move || [1u64, 2].into_iter().filter(|&v| q1.push(v).is_ok()).collect::<Vec<_>>());
        // Two consumers: the ring's owner and a worker stealing from it.
        let thief = thread::spawn(move || q2.pop());
        let mut got: Vec<u64> = q.pop().into_iter().collect();
        let accepted = producer.join().unwrap();
        got.extend(thief.join().unwrap());
        got.extend(q.pop());
        got.sort_unstable();
        assert_eq!(got, accepted, "what was accepted came out, once each");
        assert!(q.pop().is_none() && q.is_empty());
    });
}

#[test]
fn mpmc_keeps_one_producers_order() {
    loom::model(|| {
        let q = Arc::new(Mpmc::new(2));
        let q1 = q.clone();
        let p = thread::spawn(move || {
            q1.push(1u64).unwrap();
            q1.push(2u64).unwrap();
        });
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match q.pop() {
                Some(v) => seen.push(v),
                None => thread::yield_now(),
            }
        }
        p.join().unwrap();
        assert_eq!(seen, [1, 2]);
        assert!(q.is_empty() && q.pop().is_none());
    });
}

/// Two threads allocate at once from a slab of two free slots, one from shard 0 once, the
/// other from shard 1 twice: both slots are handed out, neither twice.
fn two_allocate_both_slots(slab: Arc<Slab>) {
    let s2 = slab.clone();
    let t = thread::spawn(move || {
        let mut pool = s2.pool(1);
        (pool.alloc(), pool.alloc())
    });
    let mine = slab.pool(0).alloc();
    let (a, b) = t.join().unwrap();
    let mut got: Vec<u32> = [mine, a, b].into_iter().flatten().collect();
    assert_eq!(got.len(), 2, "two slots, both handed out, none invented");
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 2, "no slot handed out twice");
}

#[test]
fn slot_caches_hand_out_each_slot_once() {
    loom::model(|| {
        // Two slots, one in each shard's cache; each thread allocates from its own shard first
        // and, finding it empty, from the other's (waiting for it if held): never both get the
        // same slot.
        let slab = Arc::new(Slab::new(2, 2));
        two_allocate_both_slots(slab);
    });
}

#[test]
fn the_free_queues_hand_out_each_slot_once() {
    loom::model(|| {
        // Two slots, both freed one at a time (as a worker delivering to a callback frees
        // them), so on the lock-free queues and in no cache: two threads allocate from them at
        // once, and never both get the same slot.
        let slab = Arc::new(Slab::new(2, 2));
        let (a, b) = {
            let (mut p0, mut p1) = (slab.pool(0), slab.pool(1));
            (p0.alloc().unwrap(), p1.alloc().unwrap())
        };
        for idx in [a, b] {
            let t = slab.publish(idx, true, false);
            run_as_worker(&slab, t);
            assert!(slab.take(t).is_some());
        }
        assert_eq!(slab.free_len(), 2);
        two_allocate_both_slots(slab);
    });
}

#[test]
fn a_waiter_and_a_racing_taker_end_with_one_completion() {
    loom::model(|| {
        // A thread waits on a ticket while another takes its completion directly (as a
        // spinning waiter does): one of them gets it, and the waiter, if it lost, is woken and
        // told the ticket is gone rather than left asleep.
        let slab = Arc::new(Slab::new(1, 1));
        let t = publish_one(&slab, true);
        let s2 = slab.clone();
        let worker = thread::spawn(move || {
            run_as_worker(&s2, t);
        });
        let s3 = slab.clone();
        let taker = thread::spawn(move || {
            loop {
                match s3.try_take_waitable(t) {
                    Ok(Some(c)) => break Some(c.id),
                    Ok(None) => thread::yield_now(),
                    Err(_) => break None,
                }
            }
        });
        let waited = slab.wait(t, None);
        worker.join().unwrap();
        let took = taker.join().unwrap();
        match waited {
            Ok(c) => assert_eq!((c.id, took), (7, None)),
            Err(e) => assert_eq!((e, took), (crate::error::WaitError::UnknownTicket, Some(7))),
        }
        assert_eq!(slab.free_len(), 1);
    });
}

#[test]
fn a_slot_freed_into_a_cache_is_reused_after_its_last_read() {
    loom::model(|| {
        // Slot 0 in shard 0's cache, slot 1 in shard 1's. Slot 0's task is done; a poller of
        // shard 0 takes its completion, freeing the slot into its cache, while a submitter of
        // shard 1 allocates twice: its own slot, then (its cache and the queues empty) one
        // taken from shard 0's cache, waiting for the poller if it holds it. The slot is reused
        // only after the poller has read its outcome (loom flags the cell otherwise), and no
        // slot is handed out twice.
        let slab = Arc::new(Slab::new(2, 2));
        let t = publish_one(&slab, false);
        assert_eq!(t.slot(), 0);
        run_as_worker(&slab, t);
        let s2 = slab.clone();
        let submitter = thread::spawn(move || {
            let mut pool = s2.pool(1);
            let (mine, taken) = (pool.alloc(), pool.alloc());
            if let Some(idx) = taken {
                // The next task's outcome is written into the reused slot.
                // SAFETY: allocated here; the model stands in for the worker.
                unsafe { s2.out(idx) }.id = 8;
            }
            (mine, taken)
        });
        let mut c = Completion::default();
        assert!(slab.pool(0).take_into(t, &mut c));
        assert_eq!((c.id, c.reason), (7, Reason::AgentsExhausted));
        let (mine, taken) = submitter.join().unwrap();
        assert_eq!(mine, Some(1));
        assert!(taken.is_none_or(|idx| idx == 0));
        assert_eq!(slab.free_len(), 2 - taken.is_some() as usize - 1);
    });
}

/// The submit side of `Engine::try_submit` against `shutdown`: the submitter publishes a task,
/// pushes it onto a worker's ring, fences, and completes it itself if the engine began stopping;
/// the shutdown sets STOPPING, then sweeps every slot still unfinished. Whatever the
/// interleaving, the task is completed exactly once, and never left waiting.
#[test]
fn a_task_submitted_against_shutdown_is_completed_exactly_once() {
    use crate::sync::{AtomicU8, fence};
    // `crate::shared`'s lifecycle values (that module is not built under loom).
    const RUNNING: u8 = 0;
    const STOPPING: u8 = 2;
    loom::model(|| {
        let slab = Arc::new(Slab::new(1, 1));
        let ring = Arc::new(Ingress::new(1));
        let overflow = Arc::new(Mpmc::new(1));
        let lifecycle = Arc::new(AtomicU8::new(RUNNING));
        let (s2, r2, o2, l2) = (slab.clone(), ring.clone(), overflow.clone(), lifecycle.clone());
        let submitter = thread::spawn(move || {
            let t = publish_one(&s2, false);
            // As `Engine::try_submit`: the ticket onto the worker's ring, then the fence.
            push_all(1, |_| &*r2, &o2, 0, &[t]);
            fence(Ordering::SeqCst);
            let mut completed = 0;
            if l2.load(Ordering::SeqCst) >= STOPPING && s2.claim_abandoned_ticket(t) {
                s2.finish_swept(t.slot(), 1);
                completed += 1;
            }
            (t, completed)
        });
        lifecycle.store(STOPPING, Ordering::SeqCst);
        // As `stop` does before its sweep; without this fence the model finds the task lost
        // (the submitter reads RUNNING and the sweep misses the publication).
        fence(Ordering::SeqCst);
        let mut swept = 0;
        if let Some(_t) = slab.claim_abandoned(0) {
            slab.finish_swept(0, 2);
            swept += 1;
        }
        let (t, by_submitter) = submitter.join().unwrap();
        assert_eq!(swept + by_submitter, 1, "completed once, by the sweep or by the submitter");
        assert_eq!(slab.take(t).map(|c| c.reason), Some(Reason::ShuttingDown));
        // The ring still holds the ticket; a worker that takes it later finds it already done.
        let mut taken = Vec::new();
        take_all(&ring, &mut taken);
        assert_eq!(taken.len(), 1);
        assert!(!slab.admit(Ticket(taken[0])));
    });
}

// Live reconfiguration: an agent added while workers run is published through the routing
// snapshot (`sync::Snapshot`, as the engine's `Policy`); its settings (its bit in the tried set,
// its concurrency limit: `AgentRt`'s atomics) are written before. `shared` is not compiled
// under loom, so the model holds the same fields in a struct of its own.

#[test]
fn an_agent_added_while_running_is_seen_whole_by_a_worker_that_routes_to_it() {
    use crate::sync::Snapshot;
    struct Rt {
        bit: AtomicU64,
        bulkhead: Bulkhead,
    }
    loom::model(|| {
        let agents = Arc::new([
            Rt { bit: AtomicU64::new(1), bulkhead: Bulkhead::new(0) },
            Rt { bit: AtomicU64::new(0), bulkhead: Bulkhead::new(0) }, // a spare id
        ]);
        let snap = Arc::new(Snapshot::new(vec![0usize]));
        let (a2, s2) = (agents.clone(), snap.clone());
        let operator = thread::spawn(move || {
            a2[1].bit.store(1 << 1, Ordering::Relaxed);
            a2[1].bulkhead.init(1);
            s2.store(vec![0, 1]);
        });
        // A worker's turns: refresh its copy, then route over it.
        let mut copy = snap.load();
        let mut seen = 0;
        for _ in 0..2 {
            snap.refresh(&mut copy, &mut seen);
            for &a in copy.iter() {
                assert_ne!(agents[a].bit.load(Ordering::Relaxed), 0, "a routed agent has its bit");
                if a == 1 {
                    assert_eq!(agents[a].bulkhead.limit(), 1, "and its limit");
                }
            }
        }
        operator.join().unwrap();
    });
}
