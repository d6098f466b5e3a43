//! Zero heap allocations per task in steady state, checked with a counting allocator that sees
//! every thread (the submitter here and the engine's workers).

use metafed::{Completion, DomainId, DomainSet, Engine, EngineConfig, Task, Ticket, Topology};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `n` tasks through a closed loop of 256 in flight with buffers made beforehand.
fn run(engine: &Engine, tasks: &[Task<'_>], n: usize, out: &mut [Completion], tickets: &mut [Ticket]) {
    let (mut sent, mut done, mut in_flight) = (0, 0, 0usize);
    while done < n {
        let room = (256 - in_flight).min(n - sent).min(64);
        if room > 0 {
            let k = engine.submit_batch(&tasks[(sent % 1024)..(sent % 1024) + room], &mut tickets[..room]).unwrap_or(0);
            sent += k;
            in_flight += k;
        }
        let got = if room == 0 { engine.poll_wait(out, None).unwrap() } else { engine.poll(out) };
        done += got;
        in_flight -= got;
    }
}

#[test]
fn steady_state_allocates_nothing_per_task() {
    // The seed's breakers (they trip and emit events), 12% failures, payload bytes, W1 and W2.
    let engine = Engine::start(Topology::seed(0.12).unwrap(), EngineConfig::default()).unwrap();
    let data = [7u8; 48];
    let tasks: Vec<Task<'_>> = (0..1024 + 64)
        .map(|i| {
            let t =
                if i % 5 == 0 { Task::fan_out(i, DomainSet::first(3)) } else { Task::new(i, DomainId((i % 3) as u16)) };
            t.data(&data).priority((i % 4) as u8)
        })
        .collect();
    let mut out = vec![Completion::default(); 256];
    let mut tickets = vec![Ticket::default(); 64];
    // Warm up: every slot's payload buffer, queues, wait lists reach their working size.
    run(&engine, &tasks, 100_000, &mut out, &mut tickets);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let n = 200_000;
    run(&engine, &tasks, n, &mut out, &mut tickets);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "{allocations} allocations for {n} tasks");
}
