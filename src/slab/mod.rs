//! Task slots: a fixed table allocated once, the free slots (per shard, a cache taken a batch at
//! a time and a lock-free queue: see [`Pool`]), and one state word per slot that decides, by
//! compare-and-swap, who owns the slot at every step of a task's life.
//!
//! ```text
//!   FREE(g) --alloc--> FILLING(g) --publish--> QUEUED(g) --admit (a worker)--> ADMITTED(g)
//!   ADMITTED(g) --complete (its worker, the outcome written)--> DONE(g)
//!   ADMITTED(g) --claim (the shutdown sweep)--> COMPLETING(g) --finish--> DONE(g)
//!   DONE(g) --take (poll, wait, or the callback path)--> TAKEN(g) --release--> FREE(g+1)
//!   DONE(g) neither pinned, swept nor waited on --take, in one step--> FREE(g+1)
//!   QUEUED(g)  --claim (the shutdown sweep, or a submitter that raced it)--> COMPLETING(g)
//!   TAKEN(g) with pins > 0 --release--> ZOMBIE(g) --last unpin--> FREE(g+1)
//! ```
//!
//! The generation `g` is half of every [`Ticket`] and of every ring entry, so a stale ticket or a
//! stale entry (its slot since freed and reused) fails its compare-and-swap instead of touching
//! another task. Pins count isolated agents still reading the slot's request after the task may
//! have completed without them (an abandoned attempt): the slot is not reused until they finish.
//! An agent pins only while its call runs (and only a task still running), so a hung agent
//! holds one slot at most.
//!
//! The word: generation in bits 32..64, pins in 16..32, the waiter, swept, polled and waitable
//! flags at bits 8, 9, 10 and 11, the state in bits 0..8.

mod free;
mod request;
mod wait;

pub(crate) use free::Pool;
pub(crate) use request::{Req, ReqExtra, Run};

use crate::queue::Mpmc;
use crate::sync::{AtomicU64, Mutex, Ordering, UnsafeCell, thread};
use crate::task::{Completion, Ticket};
use crossbeam_utils::CachePadded;
use free::Cache;
use std::collections::VecDeque;

pub(crate) const FREE: u64 = 0;
pub(crate) const FILLING: u64 = 1;
pub(crate) const QUEUED: u64 = 2;
pub(crate) const ADMITTED: u64 = 3;
pub(crate) const COMPLETING: u64 = 4;
pub(crate) const DONE: u64 = 5;
pub(crate) const TAKEN: u64 = 6;
pub(crate) const ZOMBIE: u64 = 7;

const STATE: u64 = 0xff;
const WAITING: u64 = 1 << 8;
/// Set with `DONE` when the shutdown sweep, not the owning worker, completed the task: `out` is
/// then not the outcome (a stuck worker may still be writing it) and `take` builds the
/// "shutting down" completion from the request instead.
const SWEPT: u64 = 1 << 9;
/// Set at publication for a task whose completion is for `poll` (neither waitable nor for a
/// caller's completion queue): read with the state in one load (see `done_for_poll`).
const POLLED: u64 = 1 << 10;
/// Set at publication for a task whose completion is for `wait`: read in the same load as the
/// generation, never from the request (which a slot freed and reused under the reader
/// rewrites).
const WAITABLE: u64 = 1 << 11;
const PIN: u64 = 1 << 16;
const PINS: u64 = 0xffff << 16;

#[inline]
fn state(w: u64) -> u64 {
    w & STATE
}
#[inline]
fn generation(w: u64) -> u32 {
    (w >> 32) as u32
}
#[inline]
fn with_state(w: u64, s: u64) -> u64 {
    (w & !STATE) | s
}
/// The word of slot word `w`'s slot once freed: `FREE`, the next generation, no pins or flags.
/// Generation 0 is skipped when the count wraps (after 2^32 uses of the slot: 41 days at 10 M
/// tasks/s over the default 8,192 slots), so that a zeroed ticket never names a task.
#[inline]
fn freed(w: u64) -> u64 {
    (u64::from(generation(w).wrapping_add(1).max(1)) << 32) | FREE
}
/// One task's slot. Laid out (`repr(C)`, 128-byte aligned by `CachePadded`) so that what every
/// task touches on both sides of the hand-off sits in one pair of cache lines: the state word
/// and the request's common fields in the first line, the outcome's scalars in the second.
/// Whatever moves between the submitting thread's core and the worker's per task then moves as
/// two lines, not the seven the fields spanned in the compiler's order. The run record follows
/// (the admitting worker's alone), then, on lines of their own, the request's bytes, attributes
/// and completion queue, which only tasks that have some write (see `ReqExtra`); the outcome's
/// recorded failures and reply bodies are written only by tasks that have some too. `layout`
/// below checks the offsets.
#[repr(C)]
pub(crate) struct Slot {
    /// See the module documentation.
    word: AtomicU64,
    pub(crate) req: UnsafeCell<Req>,
    /// The outcome, assembled in place by the worker that admitted the task (failures as they
    /// happen, the rest when it claims the slot); read only after `DONE` without `SWEPT`
    /// (release/acquire on `word`).
    out: UnsafeCell<Completion>,
    pub(crate) run: UnsafeCell<Run>,
    pub(crate) extra: UnsafeCell<ReqExtra>,
    /// When the shutdown sweep completed the task (with `SWEPT`), on the engine clock.
    swept_at: AtomicU64,
    /// The thread waiting on this slot's ticket, if any. Locked only on the waiting path.
    waiter: Mutex<Option<thread::Thread>>,
    /// The shard whose queue the slot returns to (its index modulo the shards, computed once: a
    /// division on every release costs more than the rest of it).
    home: u32,
}

/// The layout `Slot` promises: the word and the request's common fields in the first 64 bytes,
/// the outcome's per-task scalars in the next 64.
#[cfg(not(loom))]
mod layout {
    use super::{Completion, Req, Slot};
    use std::mem::{offset_of, size_of};
    const _: () = assert!(offset_of!(Slot, req) == 8 && size_of::<Req>() <= 56);
    const _: () = assert!(offset_of!(Slot, out) == 64);
    const _: () = assert!(Completion::HOT_BYTES <= 64);
    // Not on a line with the run record, which the worker writes for every task.
    const _: () = assert!(offset_of!(Slot, extra) % 64 == 0);
}

// SAFETY: the cells are accessed under the ownership protocol of the state word described in
// the module documentation; `Req`, `ReqExtra` and `Completion` are plain data.
unsafe impl Sync for Slot {}
// SAFETY: as above.
unsafe impl Send for Slot {}

pub(crate) struct Slab {
    slots: Box<[CachePadded<Slot>]>,
    /// The free slots, per shard: a cache, first-in first-out under a lock that a thread takes
    /// once per batch (see [`Pool`]), and a lock-free queue. Every slot starts in the cache of
    /// its shard (`i % shards`); a slot freed into a cache goes to the freeing thread's shard's,
    /// whatever its own, and a slot freed where no cache is held (another thread of the shard
    /// holds it, it is full, or the freeing thread frees one at a time: a worker delivering to a
    /// callback or a completion queue, `wait`) goes to its own shard's queue. A thread that
    /// allocates from its own shard and frees what it took shares no lock or queue with other
    /// shards'.
    caches: Box<[CachePadded<Cache>]>,
    /// The lock-free queues, one per shard. A push (release) and a pop (acquire) order a slot's
    /// last use before its next, as the cache's lock does.
    free: Box<[CachePadded<Mpmc<u32>>]>,
    /// A shard's share of the slots: the most its cache holds.
    cache_cap: usize,
}

impl Slab {
    /// `n` slots, their free ones in `shards` shards (at least 1).
    pub(crate) fn new(n: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, n.max(1));
        let free: Box<[CachePadded<Mpmc<u32>>]> =
            (0..shards).map(|_| CachePadded::new(Mpmc::new(n.div_ceil(shards).max(1)))).collect();
        let slots = (0..n)
            .map(|i| {
                CachePadded::new(Slot {
                    // Generations start at 1 so that a zeroed ticket is never valid.
                    word: AtomicU64::new(1 << 32),
                    req: UnsafeCell::new(Req::default()),
                    out: UnsafeCell::new(Completion::default()),
                    run: UnsafeCell::new(Run::default()),
                    extra: UnsafeCell::new(ReqExtra::default()),
                    swept_at: AtomicU64::new(0),
                    waiter: Mutex::new(None),
                    home: (i % shards) as u32,
                })
            })
            .collect();
        // Every slot starts in its shard's cache; the lock-free queues start empty.
        let cache_cap = n.div_ceil(shards);
        let caches = (0..shards)
            .map(|k| {
                let mut items = VecDeque::with_capacity(cache_cap);
                items.extend((k..n).step_by(shards).map(|i| i as u32));
                CachePadded::new(Cache::new(items))
            })
            .collect();
        Self { slots, free, caches, cache_cap }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    pub(crate) fn slot(&self, idx: u32) -> &Slot {
        &self.slots[idx as usize]
    }

    /// The slot of a task the caller holds: its index came from this slab (a ticket the engine
    /// made, not one a caller handed in), so it is in range and the bounds check is skipped
    /// (the worker reaches a task's slot a dozen times per task).
    ///
    /// # Safety
    /// `idx` must be below [`capacity`](Self::capacity).
    #[inline]
    unsafe fn held(&self, idx: u32) -> &Slot {
        debug_assert!((idx as usize) < self.slots.len());
        // SAFETY: per the contract.
        unsafe { self.slots.get_unchecked(idx as usize) }
    }

    /// Whether the task in slot `idx`, which the caller holds (admitted or claimed, not yet
    /// done), is for `wait`: the flag its publication set in the word.
    #[inline]
    pub(crate) fn is_waitable(&self, idx: u32) -> bool {
        self.slot(idx).word.load(Ordering::Relaxed) & WAITABLE != 0
    }

    /// Marks a filled slot `QUEUED` (release: the request is visible to whoever admits it),
    /// `polled` if its completion is for `poll`, `waitable` if it is for `wait`, and returns
    /// its ticket.
    #[inline]
    pub(crate) fn publish(&self, idx: u32, polled: bool, waitable: bool) -> Ticket {
        let s = self.slot(idx);
        let w = s.word.load(Ordering::Relaxed);
        let flags = if polled { POLLED } else { 0 } | if waitable { WAITABLE } else { 0 };
        s.word.store(with_state(w, QUEUED) | flags, Ordering::Release);
        Ticket::new(idx, generation(w))
    }

    /// Moves the slot of ticket `t` from one of the states `from` to `to`, for the ticket's
    /// generation only. Keeps pins and flags. Returns whether this caller made the move.
    #[inline]
    fn transition(&self, t: Ticket, from: &[u64], to: u64, success: Ordering) -> bool {
        self.transition_from(t, from, to, success).is_some()
    }

    /// `transition`, returning the word it replaced.
    #[inline]
    fn transition_from(&self, t: Ticket, from: &[u64], to: u64, success: Ordering) -> Option<u64> {
        Self::transition_at(self.slot(t.slot()), t, from, to, success)
    }

    /// `transition_from` on `s`, ticket `t`'s slot.
    #[inline(always)]
    fn transition_at(s: &Slot, t: Ticket, from: &[u64], to: u64, success: Ordering) -> Option<u64> {
        let mut w = s.word.load(Ordering::Acquire);
        loop {
            if generation(w) != t.generation() || !from.contains(&state(w)) {
                return None;
            }
            match s.word.compare_exchange_weak(w, with_state(w, to), success, Ordering::Acquire) {
                Ok(_) => return Some(w),
                Err(actual) => w = actual,
            }
        }
    }

    /// A worker takes ownership of a queued task (acquire: it sees the request).
    #[inline]
    pub(crate) fn admit(&self, t: Ticket) -> bool {
        self.transition(t, &[QUEUED], ADMITTED, Ordering::Acquire)
    }

    /// The owning worker completes its task, its outcome written (`out`): one compare-and-swap
    /// from `ADMITTED` to `DONE` (release: whoever takes it sees the outcome), and the waiter, if
    /// any, woken. False if the shutdown sweep claimed it first: it is then `SWEPT`, and what the
    /// worker wrote in `out` is never read (see `take_into`).
    #[inline]
    pub(crate) fn complete(&self, t: Ticket) -> bool {
        let s = self.slot(t.slot());
        let Some(w) = Self::transition_at(s, t, &[ADMITTED], DONE, Ordering::AcqRel) else { return false };
        self.wake_waiter(s, w);
        true
    }

    /// The shutdown sweep claims a task nobody will complete (still queued, or owned by a
    /// worker that did not stop).
    pub(crate) fn claim_abandoned(&self, idx: u32) -> Option<Ticket> {
        let s = self.slot(idx);
        let w = s.word.load(Ordering::Acquire);
        let t = Ticket::new(idx, generation(w));
        self.transition(t, &[QUEUED, ADMITTED], COMPLETING, Ordering::Acquire).then_some(t)
    }

    /// [`claim_abandoned`](Self::claim_abandoned) for one ticket: a submitter that published it
    /// while the engine began stopping completes it itself if nobody else has.
    pub(crate) fn claim_abandoned_ticket(&self, t: Ticket) -> bool {
        self.transition(t, &[QUEUED], COMPLETING, Ordering::Acquire)
    }

    /// The ticket of slot `idx` if its task is done (by its worker, not the sweep), not yet
    /// taken, and its completion is for `poll`: the shutdown's last resort for the completions
    /// of a worker stuck in a handler, which it made but never published.
    pub(crate) fn done_for_poll(&self, idx: u32) -> Option<Ticket> {
        let w = self.slot(idx).word.load(Ordering::Acquire);
        (state(w) == DONE && w & (SWEPT | POLLED) == POLLED).then(|| Ticket::new(idx, generation(w)))
    }

    /// Whether ticket `t`'s task is admitted: a worker holds it and has not completed it.
    pub(crate) fn is_admitted(&self, t: Ticket) -> bool {
        let w = self.slot(t.slot()).word.load(Ordering::Acquire);
        generation(w) == t.generation() && state(w) == ADMITTED
    }

    /// Whether a slot holds a task that has been published and has not yet been completed.
    pub(crate) fn is_unfinished(&self, idx: u32) -> bool {
        matches!(state(self.slot(idx).word.load(Ordering::Acquire)), QUEUED | ADMITTED | COMPLETING)
    }

    /// Marks a slot the shutdown sweep claimed `DONE` with `SWEPT`, at `now_ns`, and wakes a
    /// thread waiting on the ticket.
    pub(crate) fn finish_swept(&self, idx: u32, now_ns: u64) {
        let s = self.slot(idx);
        s.swept_at.store(now_ns, Ordering::Relaxed);
        let mut w = s.word.load(Ordering::Relaxed);
        loop {
            debug_assert_eq!(state(w), COMPLETING);
            match s.word.compare_exchange_weak(w, with_state(w, DONE) | SWEPT, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => w = actual,
            }
        }
        self.wake_waiter(s, w);
    }

    /// Takes the outcome of a `DONE` slot for ticket `t` and frees the slot. `None` if the slot
    /// is not done for that ticket (or someone else took it).
    pub(crate) fn take(&self, t: Ticket) -> Option<Completion> {
        let mut c = Completion::default();
        self.take_into(t, &mut c).then_some(c)
    }

    /// [`take`](Self::take) into `dst` (a caller's buffer), copying only what the completion
    /// holds (its recorded failures, not the whole array) and swapping the reply bytes' storage
    /// with `dst`'s (cleared). Returns false, leaving `dst` as it was, when `t` is not done.
    pub(crate) fn take_into(&self, t: Ticket, dst: &mut Completion) -> bool {
        let s = self.slot(t.slot());
        match self.take_out(s, t, dst) {
            None => false,
            Some(freed) => {
                if freed {
                    self.push_free(s, t.slot());
                }
                true
            }
        }
    }

    /// Moves the outcome of slot `s`, `DONE` for ticket `t`, into `dst` and frees the slot:
    /// `Some(true)` when it is now `FREE` (the caller puts it in a cache or on a queue; nobody
    /// can allocate it before), `Some(false)` when pinned (`ZOMBIE` until the last unpin).
    /// `None`, `dst` untouched, when `t` is not done.
    #[inline(always)]
    fn take_out(&self, s: &Slot, t: Ticket, dst: &mut Completion) -> Option<bool> {
        // The common case in one step: done, neither pinned nor swept nor waited on, so
        // `DONE -> FREE(g+1)` at once, where the general path moves through `TAKEN` with a
        // second compare-and-swap.
        let w = s.word.load(Ordering::Acquire);
        if generation(w) == t.generation()
            && w & (STATE | SWEPT | PINS | WAITING) == DONE
            && s.word.compare_exchange(w, freed(w), Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            // SAFETY: `DONE` was published with release after `out` was written, our acquire
            // CAS made the slot ours, and nobody can allocate it before the caller puts it back.
            s.out.with_mut(|p| unsafe { (*p).move_into(dst) });
            return Some(true);
        }
        let w = Self::transition_at(s, t, &[DONE], TAKEN, Ordering::Acquire)?;
        if w & SWEPT == 0 {
            // SAFETY: as above; `TAKEN` makes us its only user until we free the slot.
            s.out.with_mut(|p| unsafe { (*p).move_into(dst) });
        } else {
            Self::swept_into(s, t, dst);
        }
        if w & WAITING != 0 {
            Self::taken_from_waiter(s);
        }
        Some(self.release(s))
    }

    /// The completion of a task the shutdown sweep completed: "shutting down", from the request.
    #[cold]
    fn swept_into(s: &Slot, t: Ticket, dst: &mut Completion) {
        // SAFETY: the request is read-only until the slot is freed, after this.
        let req = s.req.with(|p| unsafe { &*p });
        let mut c = Completion::default();
        c.ticket = t;
        c.id = req.id;
        c.status = crate::task::Status::Rejected;
        c.reason = crate::task::Reason::ShuttingDown;
        c.latency_ns = s.swept_at.load(Ordering::Relaxed).saturating_sub(req.submit_ns);
        c.priority = req.priority.get();
        *dst = c;
    }

    /// Frees a `TAKEN` slot `s`, or leaves it `ZOMBIE` until its last pin drops. True when it
    /// is now `FREE`: the caller puts it in a cache or on a queue (see `let_go`).
    #[inline]
    fn release(&self, s: &Slot) -> bool {
        let mut w = s.word.load(Ordering::Relaxed);
        loop {
            let next = if w & PINS == 0 { freed(w) } else { with_state(w, ZOMBIE) };
            match s.word.compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return w & PINS == 0,
                Err(actual) => w = actual,
            }
        }
    }

    /// An isolated agent is about to read the request of ticket `t`: pins the slot if the task
    /// is still running (`ADMITTED`, same generation), so that it is not reused until `unpin`.
    /// Returns false for an attempt whose task has already finished (the agent skips it without
    /// touching the request). Pinning when a call starts, not when it is queued, means a hung
    /// agent holds one slot at most, however many attempts wait in its ring.
    pub(crate) fn try_pin(&self, t: Ticket) -> bool {
        let s = self.slot(t.slot());
        let mut w = s.word.load(Ordering::Acquire);
        loop {
            if generation(w) != t.generation() || state(w) != ADMITTED {
                return false;
            }
            match s.word.compare_exchange_weak(w, w + PIN, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => w = actual,
            }
        }
    }

    /// The isolated agent is done reading; frees a `ZOMBIE` slot on the last pin.
    pub(crate) fn unpin(&self, idx: u32) {
        let s = self.slot(idx);
        let mut w = s.word.load(Ordering::Relaxed);
        loop {
            debug_assert!(w & PINS != 0);
            let pins = w - PIN;
            let next = if state(w) == ZOMBIE && pins & PINS == 0 { freed(pins) } else { pins };
            // Release: our reads of the request happen before the slot's reuse.
            match s.word.compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if state(next) == FREE && state(w) == ZOMBIE {
                        self.push_free(s, idx);
                    }
                    return;
                }
                Err(actual) => w = actual,
            }
        }
    }

    /// The request of an admitted slot.
    ///
    /// # Safety
    /// The slot must hold a published task (`QUEUED` or later, not yet freed), whose request is
    /// then read-only.
    #[inline]
    pub(crate) unsafe fn req(&self, idx: u32) -> &Req {
        // SAFETY: per the contract, no one writes the request while this reference lives.
        // SAFETY: a slot the caller holds (the contract) is one of this slab's.
        unsafe { self.held(idx) }.req.with(|p| unsafe { &*p })
    }

    /// The request's bytes, attributes and completion queue: same contract as
    /// [`req`](Self::req).
    ///
    /// # Safety
    /// As for [`req`](Self::req).
    #[inline]
    pub(crate) unsafe fn extra(&self, idx: u32) -> &ReqExtra {
        // SAFETY: per the contract, no one writes the request while this reference lives.
        // SAFETY: a slot the caller holds (the contract) is one of this slab's.
        unsafe { self.held(idx) }.extra.with(|p| unsafe { &*p })
    }

    /// The outcome record of an admitted slot, which its worker fills in place.
    ///
    /// # Safety
    /// The caller must be the worker that admitted the slot, must not hold another reference to
    /// the record, and must stop writing it once it has called `finish`.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn out(&self, idx: u32) -> &mut Completion {
        // SAFETY: per the contract, the owning worker is the only one touching `out` until
        // `DONE`; a sweep of a stuck worker's slot marks it `SWEPT`, and then nobody reads it.
        // SAFETY: a slot the caller holds (the contract) is one of this slab's.
        unsafe { self.held(idx) }.out.with_mut(|p| unsafe { &mut *p })
    }

    /// The progress record of an admitted slot.
    ///
    /// # Safety
    /// The caller must be the worker that admitted the slot, and must not hold another
    /// reference to the same record.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn run(&self, idx: u32) -> &mut Run {
        // SAFETY: per the contract, the owning worker is the only one touching `run`.
        // SAFETY: a slot the caller holds (the contract) is one of this slab's.
        unsafe { self.held(idx) }.run.with_mut(|p| unsafe { &mut *p })
    }

    /// The request of a `FILLING` slot, for the submitter that allocated it.
    ///
    /// # Safety
    /// The caller must own the slot (it allocated it and has not published it).
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn req_mut(&self, idx: u32) -> &mut Req {
        // SAFETY: per the contract, the slot is invisible to every other thread while FILLING.
        // SAFETY: a slot the caller holds (the contract) is one of this slab's.
        unsafe { self.held(idx) }.req.with_mut(|p| unsafe { &mut *p })
    }

    /// The request's bytes, attributes and completion queue of a `FILLING` slot: same contract
    /// as [`req_mut`](Self::req_mut).
    ///
    /// # Safety
    /// As for [`req_mut`](Self::req_mut).
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn extra_mut(&self, idx: u32) -> &mut ReqExtra {
        // SAFETY: per the contract, the slot is invisible to every other thread while FILLING.
        // SAFETY: a slot the caller holds (the contract) is one of this slab's.
        unsafe { self.held(idx) }.extra.with_mut(|p| unsafe { &mut *p })
    }
}

#[cfg(test)]
mod freed_tests {
    use super::*;

    #[test]
    fn a_freed_slot_takes_the_next_generation_and_never_generation_0() {
        assert_eq!(generation(freed(1 << 32)), 2);
        assert_eq!(state(freed((7 << 32) | DONE)), FREE);
        // The count wraps past u32::MAX to 1, never 0: a zeroed ticket stays invalid.
        assert_eq!(generation(freed(u64::from(u32::MAX) << 32)), 1);
    }
}
