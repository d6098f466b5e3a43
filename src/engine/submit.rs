//! Submission: a task checked, copied into a slot, and its ticket pushed onto a worker's ingress
//! ring.

use super::Engine;
use crate::completion_queue::CompletionQueue;
use crate::error::SubmitError;
use crate::shared::on_engine_thread;
use crate::shared::{RUNNING, STOPPING};
use crate::sink::Sink;
use crate::slab::{Pool, Req};
use crate::stages::worker::STALL_NS;
use crate::sync::{Ordering, fence};
use crate::task::{Task, Ticket};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Engine {
    fn check(&self, task: &Task<'_>) -> Result<(), SubmitError> {
        if task.domains.is_empty() && !self.classifies() {
            return Err(SubmitError::NoDomains);
        }
        if !task.attrs.is_empty() {
            crate::classify::check_attrs(task.attrs).map_err(SubmitError::InvalidAttrs)?;
        }
        // Acquire: a domain added while running had its settings written before its bit was
        // published; the task carries them on to its worker through the ingress queue.
        let unknown = task.domains.0 & !self.sh.live_domains.load(Ordering::Acquire);
        if unknown != 0 {
            return Err(SubmitError::UnknownDomain(unknown.trailing_zeros() as u16));
        }
        if task.priority > crate::task::LOWEST_PRIORITY {
            return Err(SubmitError::InvalidPriority(task.priority));
        }
        Ok(())
    }

    /// [`has_classifier`](Self::has_classifier), kept out of the submission path (only tasks
    /// that name no domain ask; inlined, arc-swap's load costs every submission).
    #[cold]
    #[inline(never)]
    fn classifies(&self) -> bool {
        self.has_classifier()
    }

    /// Takes a slot from `pool` (the submitting thread's shard, see
    /// [`submitter`](Self::submitter), held once per call), copies the task into it and
    /// publishes it. The caller pushes the ticket.
    #[inline(always)] // into the batch loop: a call per task cost 16 instructions of prologue
    fn stage(
        &self,
        task: &Task<'_>,
        now: u64,
        sink: Option<&Arc<Sink>>,
        pool: &mut Pool<'_>,
    ) -> Result<Ticket, SubmitError> {
        let sh = &*self.sh;
        let reserve = sh.admission.reserve[usize::from(task.priority)].load(Ordering::Relaxed) as usize;
        if reserve > 0 && sh.slab.free_len() <= reserve {
            sh.submit_full.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full);
        }
        let Some(idx) = pool.alloc() else {
            sh.submit_full.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full);
        };
        // SAFETY: we allocated the slot and have not published it.
        let req = unsafe { sh.slab.req_mut(idx) };
        req.id = task.id;
        req.payload = task.payload;
        req.domains.set(task.domains.0);
        req.priority.set(task.priority);
        // A task for a completion queue is delivered there, never to `wait`.
        let waitable = task.waitable && sink.is_none();
        req.key.set(task.key);
        // The extra fields, each written only when this task or the slot's last has some (see
        // `ReqExtra`).
        let carries = if task.data.is_empty() { 0 } else { Req::DATA } | if sink.is_some() { Req::SINK } else { 0 };
        let had = std::mem::replace(&mut req.carries, carries);
        // SAFETY: as above.
        let extra = unsafe { sh.slab.extra_mut(idx) };
        if (had | carries) & Req::DATA != 0 {
            extra.data.clear();
            extra.data.extend_from_slice(task.data);
        }
        if (had | carries) & Req::SINK != 0 {
            extra.sink = sink.cloned();
        }
        debug_assert_eq!(extra.data.is_empty(), carries & Req::DATA == 0);
        debug_assert_eq!(extra.sink.is_none(), carries & Req::SINK == 0);
        // Only a classifier reads the attributes: a task that names its domains leaves them.
        if task.domains.is_empty() {
            extra.attrs.set(task.attrs);
        }
        req.submit_ns = now;
        let meta = now.saturating_add(sh.meta_timeout_ns());
        req.deadline_ns.set(match task.deadline {
            None => meta,
            Some(d) => meta.min(deadline_after(now, d)),
        });
        Ok(sh.slab.publish(idx, !task.waitable && sink.is_none(), waitable))
    }

    /// The worker this thread's next submission should go to: the one it used last, while
    /// that worker keeps up (its ingress backlog is under two batches); otherwise the next one.
    /// One submitting thread thus feeds one worker until it needs more, and does not wake (and
    /// compete for cores with) every worker in turn.
    #[inline]
    fn target(&self) -> usize {
        let n = self.sh.workers.len();
        if self.simulated {
            // A simulation: the first worker that keeps up, whoever submits.
            return (0..n).find(|&w| self.sh.workers[w].ingress.len() < 2 * self.sh.cfg.batch as u64).unwrap_or(0);
        }
        let w = PREFERRED.with(|p| p.get().unwrap_or_else(submitter));
        let w = if w < n { w } else { w % n };
        if n > 1 && self.sh.workers[w].ingress.len() >= 2 * self.sh.cfg.batch as u64 {
            let next = (w + 1) % n;
            PREFERRED.with(|p| p.set(Some(next)));
            return next;
        }
        w
    }

    /// Pushes published tickets onto worker `w`'s ingress ring, or the next ones' (see
    /// [`crate::ingress`]); returns the workers that took them, as a bit set.
    #[inline]
    fn push(&self, tickets: &[Ticket], w: usize) -> u128 {
        let sh = &*self.sh;
        crate::ingress::push_all(sh.workers.len(), |w| &sh.workers[w].ingress, &sh.ingress_overflow, w, tickets)
    }

    /// After a fence: if the engine began stopping while these tickets were published, the
    /// shutdown sweep may have missed them, so complete them here (each at most once).
    #[cold]
    fn reject_if_stopping(&self, tickets: &[Ticket]) {
        for &t in tickets {
            if self.sh.slab.claim_abandoned_ticket(t) {
                self.sh.deliver_swept(t);
            }
        }
    }

    /// Submits a task without waiting for room. `Err(Full)` is backpressure: poll, then retry.
    /// An accepted task gets exactly one completion. (When the only free slots are held by
    /// other submitting threads in the middle of a batch, it waits for one of those batches to
    /// end, microseconds, rather than report `Full` while slots are free.)
    #[inline]
    pub fn try_submit(&self, task: &Task<'_>) -> Result<Ticket, SubmitError> {
        self.try_submit_in(task, None)
    }

    /// Submits a task without blocking, for delivery to `queue` alone (see [`CompletionQueue`]);
    /// as [`try_submit`](Self::try_submit) otherwise. The task's `waitable` is ignored: the queue
    /// takes its completion.
    ///
    /// # Panics
    /// If `queue` was made by another engine.
    #[inline]
    pub fn try_submit_to(&self, queue: &CompletionQueue, task: &Task<'_>) -> Result<Ticket, SubmitError> {
        self.try_submit_in(task, Some(self.sink_of(queue)))
    }

    fn sink_of<'q>(&self, queue: &'q CompletionQueue) -> &'q Arc<Sink> {
        assert!(self.owns(queue), "the completion queue was made by another engine");
        queue.sink()
    }

    /// Whether this engine made `queue` (only its engine takes tasks for it).
    pub fn owns(&self, queue: &CompletionQueue) -> bool {
        queue.is_of(&self.sh)
    }

    /// A completion queue of this engine's: the tasks submitted to it (with
    /// [`try_submit_to`](Self::try_submit_to), [`submit_to`](Self::submit_to) or
    /// [`submit_batch_to`](Self::submit_batch_to)) are delivered there and nowhere else. It holds
    /// as many completions as the engine has task slots.
    pub fn completion_queue(&self) -> CompletionQueue {
        CompletionQueue::new(self.sh.clone())
    }

    #[inline(always)]
    fn try_submit_in(&self, task: &Task<'_>, sink: Option<&Arc<Sink>>) -> Result<Ticket, SubmitError> {
        let sh = &*self.sh;
        if sh.lifecycle() != RUNNING {
            return Err(SubmitError::ShuttingDown);
        }
        self.check(task)?;
        let now = sh.clock.now();
        let t = self.stage(task, now, sink, &mut sh.slab.pool(self.submitter()))?;
        let woken = self.push(&[t], self.target());
        // Orders the QUEUED store and the ring push before the lifecycle and sleeper checks
        // (see `park` and `shutdown`).
        fence(Ordering::SeqCst);
        if sh.lifecycle() >= STOPPING {
            self.reject_if_stopping(&[t]);
        }
        self.wake(woken, now);
        Ok(t)
    }

    /// Submits a task, waiting while the engine is full, up to `timeout` (forever if `None`).
    pub fn submit(&self, task: &Task<'_>, timeout: Option<Duration>) -> Result<Ticket, SubmitError> {
        self.submit_in(task, timeout, None)
    }

    /// [`submit`](Self::submit), for delivery to `queue` alone (see
    /// [`try_submit_to`](Self::try_submit_to)).
    ///
    /// # Panics
    /// If `queue` was made by another engine.
    pub fn submit_to(
        &self,
        queue: &CompletionQueue,
        task: &Task<'_>,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        self.submit_in(task, timeout, Some(self.sink_of(queue)))
    }

    fn submit_in(
        &self,
        task: &Task<'_>,
        timeout: Option<Duration>,
        sink: Option<&Arc<Sink>>,
    ) -> Result<Ticket, SubmitError> {
        if on_engine_thread(&self.sh) && !timeout.is_some_and(|t| t.is_zero()) {
            return Err(SubmitError::WouldDeadlock);
        }
        // A timeout too long to be an instant is none.
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        let mut round = 0u32;
        loop {
            match self.try_submit_in(task, sink) {
                Err(SubmitError::Full) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(SubmitError::Timeout);
                    }
                    backoff(&mut round);
                }
                other => return other,
            }
        }
    }

    /// Submits tasks in order until one is refused; `tickets[i]` receives task `i`'s ticket.
    /// Returns how many were accepted (all of them, or a prefix). A refusal after the first
    /// task is not an error: the count says where it stopped, and retrying the rest returns the
    /// reason. Cheaper per task than `try_submit`: one fence and one wake-up per batch.
    pub fn submit_batch(&self, tasks: &[Task<'_>], tickets: &mut [Ticket]) -> Result<usize, SubmitError> {
        self.submit_batch_in(tasks, tickets, None)
    }

    /// [`submit_batch`](Self::submit_batch), for delivery to `queue` alone (see
    /// [`try_submit_to`](Self::try_submit_to)).
    ///
    /// # Panics
    /// If `queue` was made by another engine.
    pub fn submit_batch_to(
        &self,
        queue: &CompletionQueue,
        tasks: &[Task<'_>],
        tickets: &mut [Ticket],
    ) -> Result<usize, SubmitError> {
        self.submit_batch_in(tasks, tickets, Some(self.sink_of(queue)))
    }

    fn submit_batch_in(
        &self,
        tasks: &[Task<'_>],
        tickets: &mut [Ticket],
        sink: Option<&Arc<Sink>>,
    ) -> Result<usize, SubmitError> {
        let sh = &*self.sh;
        if sh.lifecycle() != RUNNING {
            return Err(SubmitError::ShuttingDown);
        }
        let n = tasks.len().min(tickets.len());
        let mut woken = 0u128; // workers to wake, as a bit set (wraps above 128 workers)
        let mut done = 0;
        let mut first_err = None;
        let now = sh.clock.now();
        let mut pool = sh.slab.pool(self.submitter());
        while done < n && first_err.is_none() {
            let end = (done + sh.cfg.batch).min(n);
            let start = done;
            for i in start..end {
                match self.check(&tasks[i]).and_then(|()| self.stage(&tasks[i], now, sink, &mut pool)) {
                    Ok(t) => tickets[i] = t,
                    Err(e) => {
                        first_err = Some(e);
                        break;
                    }
                }
                done = i + 1;
            }
            // The chunk's tickets, published with one store per ring.
            if done > start {
                woken |= self.push(&tickets[start..done], self.target());
            }
        }
        drop(pool);
        if done > 0 {
            fence(Ordering::SeqCst);
            if sh.lifecycle() >= STOPPING {
                self.reject_if_stopping(&tickets[..done]);
            }
            self.wake(woken, now);
        }
        match (done, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(done),
        }
    }

    /// Wakes the workers in `woken` (a bit set) that sleep; for one awake, see
    /// [`conserve`](Self::conserve). After the fence that follows the pushes.
    #[inline]
    fn wake(&self, woken: u128, now: u64) {
        for w in 0..self.sh.workers.len() {
            if woken & (1u128 << (w % 128)) != 0 && !self.sh.workers[w].parker().wake_fenced() {
                self.conserve(w, now);
            }
        }
    }

    /// Work conservation: no task waits in a ring while a worker sleeps. Worker `w`, just given
    /// work and not asleep, normally takes it within its turn; but one that has been inside the
    /// same turn for longer than [`STALL_NS`] (a handler that blocks, a long batch) leaves it
    /// waiting. Then one sleeping worker is woken to steal it (idle workers steal from the
    /// others' rings), and this thread's next tasks go to that worker. Tokio's rule ("notify a
    /// parked worker when work is pushed"), narrowed to a worker that is stuck, so that a push
    /// to a worker that keeps up wakes nobody: one load of the target's turn clock per push.
    #[inline]
    fn conserve(&self, w: usize, now: u64) {
        let sh = &*self.sh;
        if sh.workers.len() > 1 && now.saturating_sub(sh.workers[w].turn_ns.load(Ordering::Relaxed)) > STALL_NS {
            self.wake_idle(w);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_idle(&self, stuck: usize) {
        if self.simulated {
            return; // a simulation's workers are turned by its driver, not woken
        }
        if let Some(v) = self.sh.wake_sleeper_after(stuck) {
            PREFERRED.with(|p| p.set(Some(v)));
        }
    }

    /// This thread's submitter index (its shard of free slots and first completion queue); 0 in a
    /// simulation, so that a run does not depend on which threads the process ran before.
    #[inline]
    pub(super) fn submitter(&self) -> usize {
        if self.simulated { 0 } else { submitter() }
    }
}

thread_local! {
    /// The worker this thread last submitted to (a hint; shared by all engines).
    static PREFERRED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// This thread's number among the threads that have submitted (to any engine).
    static SUBMITTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// A number for the calling thread, distinct from other submitting threads' (in order of first
/// use): it spreads submitters over workers and over the shards of free slots, so that they
/// do not all contend on the same queue.
pub(super) fn submitter() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    SUBMITTER.with(|s| match s.get() {
        Some(n) => n,
        None => {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.set(Some(n));
            n
        }
    })
}

/// Waits a little longer each round: spin, then yield, then sleep up to 1 ms.
fn backoff(round: &mut u32) {
    *round = round.saturating_add(1);
    match *round {
        0..=64 => std::hint::spin_loop(),
        65..=128 => std::thread::yield_now(),
        r => std::thread::sleep(Duration::from_micros(u64::from((r - 128).min(20)) * 50)),
    }
}

/// Engine time `d` after `now`, saturating (a `Duration` holds more nanoseconds than a u64).
#[cold]
fn deadline_after(now: u64, d: Duration) -> u64 {
    now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
