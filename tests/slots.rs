//! The task slots seen from outside: every slot can be taken, from any thread, whichever
//! thread freed it; `Full` means every slot is in use; and slots freed by threads that have
//! since exited are not lost to the others. The slots of a shard sit in a cache its threads
//! take a batch at a time, so these are the cases a cache could get wrong.

use metafed::{Completion, DomainId, Engine, EngineConfig, Levels, SubmitError, Task, Ticket, Topology};
use std::time::Duration;

const SLOTS: usize = 64;

fn engine(workers: usize) -> Engine {
    let mut b = Topology::seed_builder(0.0);
    b.breakers(Levels::disabled());
    let config = EngineConfig { workers, pin: false, max_in_flight: SLOTS, ..EngineConfig::default() };
    Engine::start(b.build().unwrap(), config).unwrap()
}

/// Submits tasks one at a time without taking any completion until one is refused; returns how
/// many were accepted and the refusal.
fn fill(engine: &Engine, first_id: u64) -> (usize, SubmitError) {
    for i in 0.. {
        if let Err(e) = engine.try_submit(&Task::new(first_id + i, DomainId((i % 3) as u16))) {
            return (i as usize, e);
        }
    }
    unreachable!()
}

/// Takes `n` completions.
fn drain(engine: &Engine, n: usize) {
    let mut out = vec![Completion::default(); 16];
    let mut got = 0;
    while got < n {
        got += engine.poll_wait(&mut out, Some(Duration::from_secs(30))).unwrap();
    }
    assert_eq!(got, n);
}

#[test]
fn one_thread_fills_every_slot_of_every_shard_then_is_refused() {
    for workers in [1, 2, 3] {
        let e = engine(workers);
        let (accepted, refusal) = fill(&e, 0);
        assert_eq!((accepted, refusal), (SLOTS, SubmitError::Full), "{workers} workers");
        drain(&e, SLOTS);
        assert_eq!(e.stats().in_flight, 0);
        // Freed by polling (into this thread's cache): all of them can be taken again.
        assert_eq!(fill(&e, 1000).0, SLOTS, "{workers} workers, second round");
        drain(&e, SLOTS);
    }
}

#[test]
fn slots_freed_by_a_thread_that_exited_serve_the_others() {
    let e = engine(2);
    // Threads in turn: each fills the engine, takes every completion (freeing the slots into
    // its own shard's cache), and exits. The next thread, on another shard, finds every slot.
    std::thread::scope(|s| {
        for round in 0..4u64 {
            let e = &e;
            s.spawn(move || {
                let (accepted, refusal) = fill(e, round * 1000);
                assert_eq!((accepted, refusal), (SLOTS, SubmitError::Full), "round {round}");
                drain(e, SLOTS);
            })
            .join()
            .unwrap();
        }
    });
    assert_eq!(e.stats().in_flight, 0);
    assert_eq!(fill(&e, 9000).0, SLOTS, "the main thread, after them");
}

#[test]
fn many_threads_on_few_slots_lose_no_task() {
    let e = engine(2);
    let per_thread = 3000u64;
    let threads = 6u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            let e = &e;
            s.spawn(move || {
                let mut tickets = [Ticket::default(); 8];
                let mut tasks = [Task::new(0, DomainId(0)); 8];
                let mut out = vec![Completion::default(); 8];
                let (mut sent, mut taken) = (0u64, 0u64);
                while sent < per_thread {
                    let n = (per_thread - sent).min(8) as usize;
                    for (k, task) in tasks[..n].iter_mut().enumerate() {
                        let id = t * per_thread + sent + k as u64;
                        *task = Task::new(id, DomainId((id % 3) as u16));
                    }
                    match e.submit_batch(&tasks[..n], &mut tickets[..n]) {
                        Ok(k) => sent += k as u64,
                        Err(SubmitError::Full) => {}
                        Err(other) => panic!("{other:?}"),
                    }
                    // Completions go to whichever thread polls: count what this one takes.
                    taken += e.poll(&mut out) as u64;
                }
                taken
            });
        }
    });
    // What the threads left behind, then the totals: every task completed exactly once.
    let mut out = vec![Completion::default(); 64];
    while e.stats().completed < threads * per_thread || e.stats().in_flight > 0 {
        e.poll_wait(&mut out, Some(Duration::from_millis(50))).unwrap();
    }
    let s = e.stats();
    assert_eq!((s.completed, s.in_flight), (threads * per_thread, 0));
    assert_eq!(fill(&e, 1 << 40).0, SLOTS, "every slot free again");
}

/// A slot's bytes and completion queue are rewritten only when its task or the slot's last one
/// has some: a task without bytes reused a slot whose last task had some must still see none, and
/// one not submitted to a queue must not be delivered to its last task's queue.
#[test]
fn a_reused_slot_carries_only_its_own_tasks_bytes_and_queue() {
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    // The value: how many bytes the agent saw, and their sum.
    let agent =
        |r: &metafed::Request<'_>| Ok(1000 * r.data.len() as u64 + r.data.iter().map(|&x| u64::from(x)).sum::<u64>());
    b.agent(d, "A", metafed::AgentSpec::handler(agent)).unwrap();
    b.breakers(Levels::disabled());
    let config = EngineConfig { workers: 1, pin: false, max_in_flight: 4, ..EngineConfig::default() };
    let e = Engine::start(b.build().unwrap(), config).unwrap();
    let queue = e.completion_queue();
    let mut out = vec![Completion::default(); 1];
    for i in 0..240u64 {
        // Lengths 0, 1, 2 and the queue every other task: every pairing of one task and the
        // next on a slot comes up.
        let bytes = vec![(i % 7) as u8 + 1; (i % 3) as usize];
        let task = Task::new(i, d).data(&bytes);
        let to_queue = i % 4 < 2;
        let t = if to_queue { e.submit_to(&queue, &task, None).unwrap() } else { e.submit(&task, None).unwrap() };
        let c = loop {
            let n = if to_queue { queue.take(&mut out) } else { e.poll(&mut out) };
            if n == 1 {
                break out[0].clone();
            }
            assert_eq!(
                if to_queue { e.poll(&mut out) } else { queue.take(&mut out) },
                0,
                "task {i} went to the wrong place"
            );
            std::thread::yield_now();
        };
        assert_eq!((c.ticket, c.id), (t, i));
        let want = 1000 * bytes.len() as u64 + bytes.iter().map(|&x| u64::from(x)).sum::<u64>();
        assert_eq!(c.value, want, "task {i} ({} bytes)", bytes.len());
    }
}
