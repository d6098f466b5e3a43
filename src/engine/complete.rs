//! Completions, as callers collect them: `poll`, `poll_wait` and `wait`.

use super::Engine;
use crate::error::{WaitError, WouldDeadlock};
use crate::park::Idle;
use crate::shared::STOPPED;
use crate::shared::on_engine_thread;
use crate::task::{Completion, Ticket};
use std::time::{Duration, Instant};

impl Engine {
    /// Moves up to `out.len()` completions into `out` and returns how many. Never blocks.
    /// With a completion callback set, there is nothing to poll. Callers on several threads
    /// share the completions: a worker's queue that another caller is draining at that moment
    /// is skipped (its completions go to that caller), so one call may return 0 while another
    /// takes what was ready.
    pub fn poll(&self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        if out.is_empty() {
            return 0;
        }
        let shard = self.submitter();
        // The shard's cache of free slots, held from the first completion taken (a poll that
        // finds nothing takes no lock).
        let mut pool = None;
        self.sh.completions.drain(shard, |raw| {
            if pool.get_or_insert_with(|| self.sh.slab.pool(shard)).take_into(Ticket(raw), &mut out[n]) {
                n += 1;
            }
            n < out.len()
        });
        n
    }

    /// Like [`poll`](Self::poll), but when nothing is ready it waits, up to `timeout`, for
    /// something to be: spinning briefly, then sleeping until a worker delivers a completion.
    /// A caller that waits this way leaves its core to the workers (a caller that spins on
    /// `poll` competes with them when threads outnumber cores). Returns 0 when the timeout
    /// passes, or the engine has stopped, with nothing delivered. Refused with
    /// [`WouldDeadlock`] on one of this engine's threads (in a handler or a completion
    /// callback), where waiting could keep the engine from ever delivering.
    pub fn poll_wait(&self, out: &mut [Completion], timeout: Option<Duration>) -> Result<usize, WouldDeadlock> {
        let n = self.poll(out);
        if n > 0 || out.is_empty() || timeout.is_some_and(|t| t.is_zero()) {
            return Ok(n);
        }
        if on_engine_thread(&self.sh) {
            return Err(WouldDeadlock);
        }
        Ok(self.poll_wait_inner(out, timeout))
    }

    fn poll_wait_inner(&self, out: &mut [Completion], timeout: Option<Duration>) -> usize {
        let start = Instant::now();
        let mut idle = Idle::new(self.sh.cfg.idle_spins, u64::from(self.sh.cfg.idle_yield_us) * 1_000);
        while !idle.wait() {
            // Ready, yet none taken: another caller is draining that ring (its completions are
            // that caller's), or has just taken them. Keep waiting.
            if self.sh.completions_ready() {
                let n = self.poll(out);
                if n > 0 {
                    return n;
                }
            }
        }
        // A timeout too long to be an instant is none.
        let deadline = timeout.and_then(|d| start.checked_add(d));
        loop {
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return self.poll(out),
                },
                None => None,
            };
            // Stopped with nothing left to deliver: nothing will come.
            if self.sh.lifecycle() == STOPPED && !self.sh.completions_ready() {
                return 0;
            }
            self.sh.pollers.sleep(|| self.sh.completions_ready() || self.sh.lifecycle() == STOPPED, left);
            let n = self.poll(out);
            if n > 0 {
                return n;
            }
            if self.sh.completions_ready() {
                // Another caller holds the ring that is ready, for the few copies of one `poll`:
                // let it run rather than spin on the wait list.
                std::thread::yield_now();
            }
        }
    }

    /// Blocks until the waitable task of `ticket` completes, or `timeout` passes (forever if
    /// `None`), and returns its completion. One thread may wait on a ticket at a time.
    pub fn wait(&self, ticket: Ticket, timeout: Option<Duration>) -> Result<Completion, WaitError> {
        // Spin and yield briefly before sleeping, as every waiting thread of the engine does: a
        // task that completes within microseconds costs no futex wake-up. Spinning only tries to
        // take the completion; registering as the ticket's waiter happens once, to sleep.
        if let Some(c) = self.sh.slab.try_take_waitable(ticket)? {
            return Ok(c);
        }
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(WaitError::Timeout);
        }
        if on_engine_thread(&self.sh) {
            return Err(WaitError::WouldDeadlock);
        }
        let start = Instant::now();
        let mut idle = Idle::new(self.sh.cfg.idle_spins, u64::from(self.sh.cfg.idle_yield_us) * 1_000);
        while !idle.wait() {
            if let Some(c) = self.sh.slab.try_take_waitable(ticket)? {
                return Ok(c);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(WaitError::Timeout);
            }
        }
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        self.sh.slab.wait(ticket, left)
    }
}
