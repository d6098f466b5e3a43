//! Zero heap allocations per task in steady state, checked with a counting allocator that sees
//! every thread (the submitter here and the engine's workers).

use metafed::{Completion, DomainId, DomainSet, Engine, EngineConfig, Task, Ticket, Topology};
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Set while a check measures: the first few allocations then also record where they came
/// from (their stacks, unformatted until the window ends), for the failure message.
static RECORDING: AtomicBool = AtomicBool::new(false);
static SITES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while this thread records a site: what recording allocates is not counted.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Counts an allocation (unless it is the recording's own), and records where it came from
/// while `RECORDING`.
fn counted() {
    if IN_HOOK.with(Cell::get) {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if RECORDING.load(Ordering::Relaxed) {
        // Captured before `SITES` is locked, and symbolised only after the window, so that no
        // thread waits on `SITES` while it holds the standard library's backtrace lock.
        IN_HOOK.with(|h| h.set(true));
        let site = Backtrace::force_capture();
        let mut sites = SITES.lock().unwrap_or_else(|e| e.into_inner());
        if sites.len() < 4 {
            sites.push(site);
        }
        drop(sites);
        IN_HOOK.with(|h| h.set(false));
    }
}

/// Measures the allocations `f` makes (every thread's), returning their count and, for the
/// first few, where they came from.
fn allocations_in(f: impl FnOnce()) -> (u64, String) {
    SITES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    RECORDING.store(true, Ordering::Relaxed);
    f();
    RECORDING.store(false, Ordering::Relaxed);
    let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let sites = std::mem::take(&mut *SITES.lock().unwrap_or_else(|e| e.into_inner()));
    (n, sites.iter().map(|b| format!("at:\n{b}")).collect::<Vec<_>>().join("\n"))
}

// SAFETY: forwards to the system allocator unchanged, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter sees every allocation of the process, the test harness's own included: when
/// one test of several ends, the harness formats its result on its main thread, and on a loaded
/// machine that can land in another test's measured window. So the checks run in one test, in
/// turn, with nothing else running.
#[test]
fn nothing_is_allocated_per_task() {
    steady_state_allocates_nothing_per_task();
    a_million_distinct_keys_keep_the_table_at_its_capacity_and_allocate_nothing();
}

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
    let n = 200_000;
    let (allocations, sites) = allocations_in(|| run(&engine, &tasks, n, &mut out, &mut tickets));
    assert_eq!(allocations, 0, "{allocations} allocations for {n} tasks, the first {sites}");
}

/// A million distinct keys through keyed limits whose table holds 4,096: idle keys are forgotten
/// to make room, the table stays at its capacity, and nothing is allocated per task (so memory
/// stays flat whatever the number of keys).
fn a_million_distinct_keys_keep_the_table_at_its_capacity_and_allocate_nothing() {
    let limits = metafed::policy::KeyedLimits {
        capacity: 4096,
        default_per_s: 1_000_000.0,
        default_burst: 1.0,
        ..metafed::policy::KeyedLimits::default()
    };
    let cfg = EngineConfig { keyed_limits: Some(limits), ..EngineConfig::default() };
    let engine = Engine::start(Topology::seed(0.0).unwrap(), cfg).unwrap();
    let mut out = vec![Completion::default(); 256];
    let mut key = 0u64;
    let mut go = |n: u64| {
        let (mut sent, mut done, mut in_flight) = (0u64, 0u64, 0u64);
        while done < n {
            while in_flight < 256 && sent < n {
                key += 1;
                match engine.try_submit(&Task::new(key, DomainId((key % 3) as u16)).key(key)) {
                    Ok(_) => (sent, in_flight) = (sent + 1, in_flight + 1),
                    Err(_) => break,
                }
            }
            let got = engine.poll(&mut out) as u64;
            done += got;
            in_flight -= got;
        }
    };
    go(50_000);
    let (allocations, sites) = allocations_in(|| go(1_000_000));
    let s = engine.keyed_stats().unwrap();
    assert_eq!(allocations, 0, "{allocations} allocations for a million keys, the first {sites}");
    assert!(s.tracked <= s.capacity && s.capacity >= 4096, "{s:?}");
    assert!(s.evicted >= 1_000_000, "{s:?}");
    assert_eq!(s.classes[0].1 + s.classes[0].2, 1_050_000, "{s:?}");
}
