//! Waiting on a slot: `wait`, the waiter's registration, and the wake-ups of whoever completes or
//! takes the task.

use super::{ADMITTED, COMPLETING, DONE, FREE, QUEUED, Slab, Slot, TAKEN, WAITABLE, WAITING, ZOMBIE};
use super::{generation, state};
use crate::error::WaitError;
use crate::sync::{Ordering, lock, thread};
use crate::task::{Completion, Ticket};
use std::time::{Duration, Instant};

impl Slab {
    /// Wakes the thread in `wait` on slot `s`, if the word before `DONE` (`w`) says one waits:
    /// the test inlined where a task completes, the wake-up out of line.
    #[inline(always)]
    pub(super) fn wake_waiter(&self, s: &Slot, w: u64) {
        if w & WAITING != 0 {
            Self::unpark_waiter(s);
        }
    }

    #[cold]
    #[inline(never)]
    fn unpark_waiter(s: &Slot) {
        if let Some(t) = lock(&s.waiter).as_ref() {
            t.unpark();
        }
    }

    /// A thread waits on the ticket of slot `s`, and this one (the waiter or another) has taken
    /// the completion (`TAKEN`): clears the registration before the slot is freed, so that the
    /// next task's waiter is not refused, and wakes another thread's waiter, which finds the
    /// ticket gone and returns `UnknownTicket`.
    #[cold]
    #[inline(never)]
    pub(super) fn taken_from_waiter(s: &Slot) {
        let waiter = lock(&s.waiter).take();
        // The waiter itself taking its completion needs no wake-up.
        if let Some(h) = waiter
            && h.id() != thread::current().id()
        {
            h.unpark();
        }
    }

    /// Whether the task of ticket `t` is waitable, if `t` names a task in flight: from the
    /// word alone (the request of a slot that another thread frees meanwhile is rewritten).
    fn waitable(&self, t: Ticket) -> Option<bool> {
        let s = self.slots.get(t.slot() as usize)?;
        let w = s.word.load(Ordering::Acquire);
        if generation(w) != t.generation() || !matches!(state(w), QUEUED | ADMITTED | COMPLETING | DONE) {
            return None;
        }
        Some(w & WAITABLE != 0)
    }

    /// Takes the completion of the waitable task of ticket `t` if it is done, without waiting
    /// or registering as its waiter: what a spinning waiter calls.
    pub(crate) fn try_take_waitable(&self, t: Ticket) -> Result<Option<Completion>, WaitError> {
        match self.waitable(t) {
            None => Err(WaitError::UnknownTicket),
            Some(false) => Err(WaitError::NotWaitable),
            Some(true) => Ok(self.take(t)),
        }
    }

    /// Blocks until the waitable task of ticket `t` completes (or `timeout`), then takes its
    /// outcome. One waiter per ticket.
    pub(crate) fn wait(&self, t: Ticket, timeout: Option<Duration>) -> Result<Completion, WaitError> {
        match self.waitable(t) {
            None => return Err(WaitError::UnknownTicket),
            Some(false) => return Err(WaitError::NotWaitable),
            Some(true) => {}
        }
        let s = self.slot(t.slot());
        // A timeout too long to be an instant is none.
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        let me = thread::current();
        let mut registered = false;
        let result = loop {
            // Registered, the slot carries `WAITING`, and whoever takes it (this thread or
            // another) clears the registration before freeing the slot (`taken_from_waiter`).
            if let Some(c) = self.take(t) {
                return Ok(c);
            }
            let w = s.word.load(Ordering::Acquire);
            // Gone, or taken by another thread (which wakes this one if registered).
            if generation(w) != t.generation() || matches!(state(w), TAKEN | ZOMBIE | FREE) {
                break Err(WaitError::UnknownTicket);
            }
            if !registered {
                // The handle and the flag together, under the lock, as they are cleared: a
                // waiter that gives up and one that comes after it never interleave.
                let mut g = lock(&s.waiter);
                if g.is_some() {
                    return Err(WaitError::AlreadyWaiting);
                }
                *g = Some(me.clone());
                registered = true;
                // The flag after the handle: `complete` reads the handle when it sees it. Set on
                // a done slot too, so that whoever takes it takes the two-step path, which
                // clears this registration before freeing the slot.
                let mut w = w;
                while generation(w) == t.generation() && matches!(state(w), QUEUED | ADMITTED | COMPLETING | DONE) {
                    match s.word.compare_exchange_weak(w, w | WAITING, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => break,
                        Err(actual) => w = actual,
                    }
                }
                continue; // re-check before sleeping
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Err(WaitError::Timeout);
                    }
                    park_timeout(d - now);
                }
            }
        };
        if registered {
            // Timed out, or the ticket was taken elsewhere: the slot may hold another task by
            // now, so only this thread's own registration is cleared, flag and handle together.
            let mut g = lock(&s.waiter);
            if g.as_ref().is_some_and(|h| h.id() == me.id()) {
                *g = None;
                let mut w = s.word.load(Ordering::Relaxed);
                while w & WAITING != 0 && generation(w) == t.generation() {
                    match s.word.compare_exchange_weak(w, w & !WAITING, Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => break,
                        Err(actual) => w = actual,
                    }
                }
            }
        }
        result
    }
}

#[cfg(not(loom))]
fn park_timeout(d: Duration) {
    thread::park_timeout(d);
}

#[cfg(loom)]
fn park_timeout(_: Duration) {
    // loom has no timed park; a model's waits are untimed.
    thread::park();
}
