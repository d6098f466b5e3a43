//! The timer of simulated I/O agents: a thread that completes deferred attempts when their
//! latency has passed, as an I/O reactor completes requests when their answers arrive.
//!
//! Workers hand it `(due, attempt, answer)` through a bounded MPMC queue and go on; the thread
//! keeps them in a heap by due time, sleeps until the earliest, completes every attempt that is
//! due, and wakes each worker it answered once per round. It runs only when the topology has a
//! simulated agent with `io = true`.
//!
//! Sleeping precision decides how close to its latency an attempt completes: on Linux the
//! thread asks for a 1 us timer slack (the default 50 us would make every 10 us wait a 60 us
//! one).

use crate::attempt::{Answer, Attempt, Hub};
use crate::clock::Clock;
use crate::park::Parker;
use crate::queue::Mpmc;
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering, fence};
use std::cmp::Ordering as Cmp;
use std::collections::BinaryHeap;
use std::time::Duration;

struct Job {
    due_ns: u64,
    seq: u64,
    attempt: Attempt,
    answer: Answer,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ns, self.seq) == (other.due_ns, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Cmp> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    /// Reversed: the heap's top is the earliest due (first scheduled among equals).
    fn cmp(&self, other: &Self) -> Cmp {
        (other.due_ns, other.seq).cmp(&(self.due_ns, self.seq))
    }
}

/// The timer's shared half.
pub(crate) struct Timer {
    clock: Clock,
    queue: Mpmc<(u64, Attempt, Answer)>,
    parker: Parker,
    /// The due time the thread sleeps until (`u64::MAX` while it sleeps with nothing
    /// scheduled; 0 while it is awake): a job due sooner wakes it.
    wake_at: AtomicU64,
    stop: AtomicBool,
    /// In a simulation there is no thread: the simulation's driver moves jobs into this heap
    /// and fires them as virtual time passes ([`fire_due`](Self::fire_due)).
    sim: std::sync::Mutex<(BinaryHeap<Job>, u64)>,
}

impl Timer {
    /// A timer for at most `capacity` attempts in flight (every worker's attempt slots).
    pub(crate) fn new(clock: Clock, capacity: usize) -> Self {
        Self {
            clock,
            queue: Mpmc::new(capacity.max(1)),
            parker: Parker::new(),
            wake_at: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sim: std::sync::Mutex::new((BinaryHeap::new(), 0)),
        }
    }

    /// Simulation: moves scheduled jobs into the heap; returns the earliest due time.
    pub(crate) fn next_due(&self) -> Option<u64> {
        let mut g = self.sim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (heap, seq) = &mut *g;
        while let Some((due_ns, attempt, answer)) = self.queue.pop() {
            heap.push(Job { due_ns, seq: *seq, attempt, answer });
            *seq += 1;
        }
        heap.peek().map(|j| j.due_ns)
    }

    /// Simulation: completes every job due by `now` (in due order, then scheduling order);
    /// returns how many.
    pub(crate) fn fire_due(&self, now: u64) -> usize {
        self.next_due();
        let mut g = self.sim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut n = 0;
        while g.0.peek().is_some_and(|j| j.due_ns <= now) {
            let job = g.0.pop().expect("peeked");
            let _ = job.attempt.finish_quiet(job.answer);
            n += 1;
        }
        n
    }

    /// Simulation, at the end: completes whatever is left, as the thread does when it stops.
    pub(crate) fn finish_all(&self) {
        self.next_due();
        let mut g = self.sim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for job in g.0.drain() {
            let _ = job.attempt.finish_quiet(job.answer);
        }
    }

    /// Completes `attempt` with `answer` `delay_ns` from now.
    pub(crate) fn schedule(&self, delay_ns: u64, attempt: Attempt, answer: Answer) {
        let due = self.clock.now().saturating_add(delay_ns);
        // Cannot fail: the queue holds as many entries as there are attempt slots. Should it
        // ever, the attempt is completed at once rather than lost.
        if let Err((_, attempt, answer)) = self.queue.push((due, attempt, answer)) {
            let _ = attempt.finish(answer);
            return;
        }
        // Dekker with the thread's `wake_at` store and its check of the queue (see `park`):
        // either it sees this job before sleeping, or we see when it means to wake.
        fence(Ordering::SeqCst);
        if due < self.wake_at.load(Ordering::Relaxed) {
            self.parker.wake_fenced();
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.parker.wake();
    }

    /// The thread's body.
    pub(crate) fn run(&self) {
        self.parker.register();
        set_timer_slack();
        let mut heap: BinaryHeap<Job> = BinaryHeap::with_capacity(self.queue.capacity());
        let mut seq = 0u64;
        let mut woken: Vec<Arc<Hub>> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            while let Some((due_ns, attempt, answer)) = self.queue.pop() {
                heap.push(Job { due_ns, seq, attempt, answer });
                seq += 1;
            }
            let now = self.clock.now();
            while heap.peek().is_some_and(|j| j.due_ns <= now) {
                let job = heap.pop().expect("peeked");
                let hub = job.attempt.finish_quiet(job.answer);
                if !woken.iter().any(|h| Arc::ptr_eq(h, &hub)) {
                    woken.push(hub);
                }
            }
            for hub in woken.drain(..) {
                hub.parker.wake();
            }
            // Sleep until the earliest due time, or until a job due sooner arrives.
            let next = heap.peek().map_or(u64::MAX, |j| j.due_ns);
            let wait = next.saturating_sub(self.clock.now());
            if wait > 0 {
                self.wake_at.store(next, Ordering::Relaxed);
                let timeout = (next != u64::MAX).then(|| Duration::from_nanos(wait));
                self.parker.sleep(|| !self.queue.is_empty() || self.stop.load(Ordering::Relaxed), timeout);
                self.wake_at.store(0, Ordering::Relaxed);
            }
        }
        // Stopping: the workers have abandoned what they waited for; complete what is left so
        // that every handle is consumed (each completion of an abandoned attempt retires it).
        while let Some((_, attempt, answer)) = self.queue.pop() {
            let _ = attempt.finish_quiet(answer);
        }
        for job in heap.drain() {
            let _ = job.attempt.finish_quiet(job.answer);
        }
    }
}

/// Asks for a 1 us timer slack on this thread, so that short sleeps end close to on time.
pub(crate) fn set_timer_slack() {
    // (Miri does not model prctl; the slack only changes how late sleeps end.)
    #[cfg(all(target_os = "linux", not(miri)))]
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
    }
}
