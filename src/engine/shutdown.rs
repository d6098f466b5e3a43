//! Shutdown: drain, reject what is left, stop the threads; and what dropping an engine does.

use super::{Engine, Threads};
use crate::error::WouldDeadlock;
use crate::shared::Shared;
use crate::shared::on_engine_thread;
use crate::shared::{DRAINING, STOPPED, STOPPING};
use crate::sync::{Ordering, fence, lock};
use crate::task::Reason;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What [`Engine::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Whether every task in flight finished before the drain deadline.
    pub drained: bool,
    /// Tasks completed as rejected (`ShuttingDown`) because the deadline passed first.
    pub rejected: u64,
    /// Threads that did not stop in time (a handler that never returns) and were detached.
    pub detached_threads: usize,
    /// How long the shutdown took, in microseconds.
    pub elapsed_us: u64,
}

impl Engine {
    /// Stops accepting tasks, lets the tasks in flight finish for up to `drain`, then completes
    /// the rest as rejected (`ShuttingDown`) and stops the threads. Idempotent: later calls
    /// return the first report. Completions stay available to `poll` and `wait` afterwards.
    ///
    /// Refused with [`WouldDeadlock`] on one of this engine's own threads (in a handler or a
    /// completion callback): it would wait for the very thread that calls it. Dropping the
    /// last handle of an engine there is allowed: the shutdown then runs on a thread of its own.
    pub fn shutdown(&self, drain: Duration) -> Result<ShutdownReport, WouldDeadlock> {
        if on_engine_thread(&self.sh) {
            return Err(WouldDeadlock);
        }
        Ok(stop(&self.sh, &mut lock(&self.threads), drain))
    }
}

/// The shutdown itself (see [`Engine::shutdown`]).
fn stop(sh: &Shared, threads: &mut Threads, drain: Duration) -> ShutdownReport {
    if let Some(r) = threads.report {
        return r;
    }
    let started = Instant::now();
    let rejected_before = shutdown_rejections(sh);
    sh.lifecycle.store(DRAINING, Ordering::SeqCst);
    wake_all(sh);
    let deadline = started + drain;
    let cap = sh.slab.capacity() as u32;
    let drained = loop {
        if (0..cap).all(|i| !sh.slab.is_unfinished(i)) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    sh.lifecycle.store(STOPPING, Ordering::SeqCst);
    wake_all(sh);
    // Workers complete what they hold and return; a worker stuck in a handler cannot.
    let grace = Instant::now() + Duration::from_millis(500);
    let all_exited = || {
        sh.workers.iter().all(|w| w.exited.load(Ordering::Acquire))
            && sh.pools.iter().all(|p| p.exited.iter().all(|e| e.load(Ordering::Acquire)))
    };
    while !all_exited() && Instant::now() < grace {
        std::thread::sleep(Duration::from_micros(100));
    }
    let mut detached = 0;
    for (i, h) in std::mem::take(&mut threads.workers).into_iter().enumerate() {
        if sh.workers[i].exited.load(Ordering::Acquire) {
            let _ = h.join();
        } else {
            detached += 1; // dropping the handle detaches the thread
            tracing::warn!(worker = i, "a worker did not stop (a handler is not returning); detached");
        }
    }
    let stuck_workers = detached;
    for (p, t, h) in std::mem::take(&mut threads.isolated) {
        if sh.pools[p].exited[t].load(Ordering::Acquire) {
            let _ = h.join();
        } else {
            detached += 1;
            let agent = &sh.topo.load().agents[usize::from(sh.pools[p].agent.0)].name;
            tracing::warn!(agent = %agent, "an isolated agent's thread did not stop (its handler is not returning); detached");
        }
    }
    if let Some(timer) = &sh.timer {
        timer.stop();
        if let Some(h) = threads.timer.take() {
            let _ = h.join();
        }
    }
    // Pairs with the submitter's fence in `try_submit`: either it sees STOPPING and completes
    // its task itself, or this sweep sees the task published (loom model
    // `a_task_submitted_against_shutdown_is_completed_exactly_once`).
    fence(Ordering::SeqCst);
    // The sweep: tasks still queued, or held by a worker that did not stop.
    let mut swept = 0;
    for idx in 0..cap {
        if let Some(t) = sh.slab.claim_abandoned(idx) {
            sh.deliver_swept(t);
            swept += 1;
        }
    }
    if stuck_workers > 0 && sh.callback.is_none() {
        // A worker stuck in a handler may hold completions it made before the call and never
        // published to its ring: queued again here for `poll` (a copy of one already queued is
        // skipped when taken).
        sh.completions.rescue((0..cap).filter_map(|idx| sh.slab.done_for_poll(idx)).map(|t| t.0));
    }
    sh.lifecycle.store(STOPPED, Ordering::SeqCst);
    sh.pollers.notify_all();
    let report = ShutdownReport {
        drained,
        rejected: shutdown_rejections(sh) - rejected_before + swept,
        detached_threads: detached,
        elapsed_us: started.elapsed().as_micros() as u64,
    };
    threads.report = Some(report);
    report
}

fn wake_all(sh: &Shared) {
    for w in sh.workers.iter() {
        w.parker().wake();
    }
    for p in sh.pools.iter() {
        p.wake_all();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let drain = self.sh.cfg.drain_timeout;
        if on_engine_thread(&self.sh) {
            // A handler or callback dropped the last handle: the shutdown waits for this very
            // thread, so it runs on a thread of its own, after this call returns.
            let sh = self.sh.clone();
            let mut threads = std::mem::take(&mut *lock(&self.threads));
            let _ = std::thread::Builder::new().name("metafed-shutdown".into()).spawn(move || {
                stop(&sh, &mut threads, drain);
            });
            return;
        }
        stop(&self.sh, &mut lock(&self.threads), drain);
    }
}

fn shutdown_rejections(sh: &Shared) -> u64 {
    sh.workers.iter().map(|w| w.counters.reasons[Reason::ShuttingDown as usize].get()).sum()
}
