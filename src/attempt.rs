//! Deferred attempts: attempts that a handler finishes later, from any thread.
//!
//! A handler that waits on I/O must not hold a worker while it waits. For such an attempt the
//! worker arms an attempt slot, hands the handler an [`Attempt`], and goes on with other work.
//! Whoever holds the `Attempt` completes it once, from any thread; the answer travels back to the
//! worker that armed it through that worker's inbox. The worker enforces the agent timeout
//! itself: an attempt not completed in time is abandoned (its sub-task fails over), and a
//! completion that arrives after that is recognised, dropped and counted.
//!
//! Each worker owns a table of attempt slots, its [`Hub`]. A slot's state word decides every
//! hand-off with one compare-and-swap, the way the task slots of [`crate::slab`] do:
//!
//! ```text
//!   FREE(g)      --arm (its worker)-------------------------------> ARMED(g)
//!   ARMED(g)     --claim (the completer, any thread)---------------> CLAIMED(g)
//!   CLAIMED(g)   --post (the completer: answer written, in inbox)--> POSTED(g)
//!   POSTED(g)    --take (its worker)-------------------------------> FREE(g+1)
//!   ARMED(g)     --abandon (its worker: timeout, hedge won, stop)--> ABANDONED(g)
//!   ABANDONED(g) --retire (the holder completes or drops it)-------> RETIRED(g), in inbox
//!   RETIRED(g)   --take (its worker)-------------------------------> FREE(g+1)
//! ```
//!
//! An armed slot has two owners: the worker, which takes its answer or abandons it, and the
//! holder of the handle, which completes it. The slot goes back to the free list only when both
//! are done, so a handle can never complete a later attempt that reuses its slot. Every handle
//! carries the slot's generation, so a second completion of the same attempt (possible from C,
//! where nothing consumes the handle) is refused instead of touching anything.
//!
//! The word: generation in bits 32..64, state in bits 0..8.

use crate::clock::Clock;
use crate::park::Parker;
use crate::queue::Mpmc;
use crate::sync::{Arc, AtomicU64, Ordering, UnsafeCell};
use crate::task::FailureKind;
use std::fmt;
use std::sync::OnceLock;

pub(crate) const FREE: u64 = 0;
pub(crate) const ARMED: u64 = 1;
pub(crate) const CLAIMED: u64 = 2;
pub(crate) const POSTED: u64 = 3;
pub(crate) const ABANDONED: u64 = 4;
pub(crate) const RETIRED: u64 = 5;

const STATE: u64 = 0xff;

#[inline]
fn state(w: u64) -> u64 {
    w & STATE
}
#[inline]
fn generation(w: u64) -> u32 {
    (w >> 32) as u32
}
#[inline]
fn word(generation: u32, state: u64) -> u64 {
    (u64::from(generation) << 32) | state
}

/// What a completer hands back to the worker: the attempt's outcome and when it came.
#[derive(Debug, Default)]
pub struct Answer {
    /// `None` for success.
    pub(crate) failure: Option<FailureKind>,
    /// The handler's error code (0 when it has none).
    pub(crate) code: i32,
    /// The value, on success.
    pub(crate) value: u64,
    /// The reply's bytes, on success (empty for none; moved, never copied, on its way).
    pub(crate) body: Vec<u8>,
    /// When the completer claimed the slot, on the engine clock.
    pub(crate) at_ns: u64,
    /// When the attempt's handler started it, if later than the worker's hand-over (an attempt
    /// taken from an [`AttemptQueue`](crate::AttemptQueue)); 0 otherwise.
    pub(crate) started_ns: u64,
}

impl Answer {
    /// A success with `value` and the reply's bytes.
    pub fn ok(value: u64, body: Vec<u8>) -> Self {
        Self { failure: None, code: 0, value, body, at_ns: 0, started_ns: 0 }
    }
    /// A failure of `kind` with the handler's error code.
    pub fn failed(kind: FailureKind, code: i32) -> Self {
        Self { failure: Some(kind), code, value: 0, body: Vec::new(), at_ns: 0, started_ns: 0 }
    }
}

/// One attempt slot.
pub(crate) struct Slot {
    /// See the module documentation.
    word: AtomicU64,
    /// Written by the completer between its claim and its post; read by the worker after it
    /// takes a posted slot (release on the post, acquire on the take).
    answer: UnsafeCell<Answer>,
    /// When the holder started the attempt (engine nanoseconds; 0: at the hand-over). Written by
    /// the holder before it completes the attempt, read by the worker when it takes the answer
    /// (ordered by the post and the take), and reset by the worker.
    started: AtomicU64,
}

// SAFETY: `answer` is accessed under the protocol of the state word: only the completer that
// claimed the slot writes it, and only the owning worker reads it, after the post.
unsafe impl Sync for Slot {}
// SAFETY: as above.
unsafe impl Send for Slot {}

/// Why a completion was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The worker had abandoned the attempt; the answer was dropped (and, for a completion,
    /// counted as late). The handle is consumed.
    Abandoned,
    /// The handle names no armed attempt: it was completed already, or never existed.
    Stale,
}

/// What the worker found in its inbox.
pub(crate) enum Taken {
    /// An answer to attempt slot `idx` (the slot is free again).
    Answer(u32, Answer),
    /// The handle of an abandoned attempt was completed or dropped (the slot is free again).
    Retired(u32),
}

/// Attempt slots per chunk of a hub's table.
const CHUNK: usize = 64;

/// A hub's attempt slots, made a chunk at a time as the worker first arms a slot of the chunk:
/// an engine whose agents all answer at once never makes one, and one with deferred attempts
/// makes as many as it ever has in flight at once (the worker arms the lowest free slot first,
/// and reuses the last freed), not its whole capacity.
struct Slots {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    len: usize,
}

impl Slots {
    fn new(len: usize) -> Self {
        Self { chunks: (0..len.div_ceil(CHUNK)).map(|_| OnceLock::new()).collect(), len }
    }

    /// Slot `idx`, if its chunk has been made (acquire: the chunk's making happens before).
    #[inline]
    fn get(&self, idx: u32) -> Option<&Slot> {
        let i = idx as usize;
        self.chunks.get(i / CHUNK)?.get()?.get(i % CHUNK)
    }

    /// Slot `idx`, which has been armed: its chunk is made.
    #[inline]
    fn armed(&self, idx: u32) -> &Slot {
        self.get(idx).expect("an attempt slot that was armed")
    }

    /// Slot `idx`, its chunk made first if it is not yet. Worker only.
    fn make(&self, idx: u32) -> &Slot {
        let (k, i) = (idx as usize / CHUNK, idx as usize % CHUNK);
        let chunk = self.chunks[k].get_or_init(|| {
            (0..CHUNK.min(self.len - k * CHUNK))
                .map(|_| Slot {
                    word: AtomicU64::new(word(1, FREE)),
                    answer: UnsafeCell::new(Answer::default()),
                    started: AtomicU64::new(0),
                })
                .collect()
        });
        &chunk[i]
    }
}

/// One worker's attempt slots and inbox, and its parker (a completer wakes the worker).
pub(crate) struct Hub {
    slots: Slots,
    /// Slots posted or retired, for the worker to take. Holds every slot at most once per
    /// generation, so a push never finds it full.
    inbox: Mpmc<u32>,
    /// The worker's parker: completers wake it.
    pub(crate) parker: Parker,
    /// Completions that arrived after their attempt was abandoned (any thread adds).
    late: AtomicU64,
    pub(crate) clock: Clock,
    /// The worker's index (part of a C attempt handle).
    pub(crate) worker: u16,
}

impl Hub {
    pub(crate) fn new(slots: usize, worker: u16, clock: Clock) -> Self {
        Self {
            slots: Slots::new(slots),
            inbox: Mpmc::new(slots.max(1)),
            parker: Parker::new(),
            late: AtomicU64::new(0),
            clock,
            worker,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len
    }

    pub(crate) fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Whether something waits in the inbox (for the worker's decision to sleep).
    pub(crate) fn has_mail(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// The worker arms free slot `idx` and returns its generation. Worker only.
    pub(crate) fn arm(&self, idx: u32) -> u32 {
        let s = self.slots.make(idx);
        let w = s.word.load(Ordering::Relaxed);
        debug_assert_eq!(state(w), FREE);
        // Release: the worker's last reads of the slot's answer happen before a completer that
        // claims this generation writes it.
        s.word.store(word(generation(w), ARMED), Ordering::Release);
        generation(w)
    }

    /// The worker takes back a slot it armed but never handed out (the hand-over failed).
    pub(crate) fn disarm(&self, idx: u32, g: u32) {
        let s = self.slots.armed(idx);
        debug_assert_eq!(s.word.load(Ordering::Relaxed), word(g, ARMED));
        s.word.store(word(g, FREE), Ordering::Relaxed);
    }

    /// Completes attempt (`idx`, `g`) with `answer`, from any thread, exactly once: claims the
    /// slot, writes the answer, posts it to the worker's inbox, and wakes the worker when
    /// `wake`. A completion of an abandoned attempt retires the slot instead (counted as late
    /// when `late` says the caller is completing, not dropping, the handle).
    pub(crate) fn complete(&self, idx: u32, g: u32, mut answer: Answer, late: bool, wake: bool) -> Result<(), Refused> {
        // A slot never armed (its chunk not made) has no attempt to complete.
        let Some(s) = self.slots.get(idx) else { return Err(Refused::Stale) };
        let mut w = s.word.load(Ordering::Acquire);
        loop {
            if generation(w) != g {
                return Err(Refused::Stale);
            }
            let (to, result) = match state(w) {
                ARMED => (CLAIMED, Ok(())),
                ABANDONED => (RETIRED, Err(Refused::Abandoned)),
                _ => return Err(Refused::Stale),
            };
            // Acquire: the worker's earlier use of the slot happens before our write.
            match s.word.compare_exchange_weak(w, word(g, to), Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    if result.is_ok() {
                        answer.at_ns = self.clock.now();
                        // SAFETY: we claimed the slot; nobody else touches the answer until we
                        // post it, and the worker reads it only after the post.
                        s.answer.with_mut(|p| unsafe { *p = answer });
                        s.word.store(word(g, POSTED), Ordering::Release);
                    } else if late {
                        self.late.fetch_add(1, Ordering::Relaxed);
                    }
                    // Cannot fail: each slot is in the inbox at most once per generation.
                    let _ = self.inbox.push(idx);
                    if wake {
                        self.parker.wake();
                    }
                    return result;
                }
                Err(actual) => w = actual,
            }
        }
    }

    /// The worker abandons attempt (`idx`, `g`): it no longer waits for its answer. False if
    /// the answer has been claimed first (it is in the inbox, or about to be).
    pub(crate) fn abandon(&self, idx: u32, g: u32) -> bool {
        let s = self.slots.armed(idx);
        s.word.compare_exchange(word(g, ARMED), word(g, ABANDONED), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    #[cfg_attr(loom, allow(dead_code))]
    /// The holder of attempt (`idx`, `g`) starts it now: its latency counts from here. Returns the
    /// time, or `None` if the engine has abandoned it.
    pub(crate) fn start(&self, idx: u32, g: u32) -> Option<u64> {
        let s = self.slots.get(idx)?;
        let now = self.clock.now();
        s.started.store(now, Ordering::Relaxed);
        (s.word.load(Ordering::Acquire) == word(g, ARMED)).then_some(now)
    }

    /// Whether attempt (`idx`, `g`) has been abandoned (and not yet retired).
    pub(crate) fn is_abandoned(&self, idx: u32, g: u32) -> bool {
        self.slots.get(idx).is_some_and(|s| s.word.load(Ordering::Acquire) == word(g, ABANDONED))
    }

    /// The worker takes the next slot from its inbox and frees it. Worker only.
    pub(crate) fn take(&self) -> Option<Taken> {
        let idx = self.inbox.pop()?;
        let s = self.slots.armed(idx);
        let w = s.word.load(Ordering::Acquire);
        let taken = match state(w) {
            // SAFETY: the slot was posted (release) and we read the word with acquire: the
            // completer's write of the answer is visible, and it will not write again.
            POSTED => {
                // SAFETY: as above.
                let mut a = s.answer.with_mut(|p| unsafe { std::mem::take(&mut *p) });
                a.started_ns = s.started.swap(0, Ordering::Relaxed);
                Taken::Answer(idx, a)
            }
            RETIRED => {
                s.started.store(0, Ordering::Relaxed);
                Taken::Retired(idx)
            }
            other => unreachable!("attempt slot {idx} in the inbox in state {other}"),
        };
        // Release: our read of the answer happens before the next generation's write.
        s.word.store(word(generation(w).wrapping_add(1).max(1), FREE), Ordering::Release);
        Some(taken)
    }
}

/// An attempt at an agent that its handler completes later, from any thread, exactly once.
///
/// A deferred handler ([`DeferredHandler`](crate::DeferredHandler)) receives one per call and
/// completes it with [`succeed`](Self::succeed), [`succeed_with`](Self::succeed_with),
/// [`fail`](Self::fail) or [`complete`](Self::complete), each of which consumes it. The engine
/// enforces the agent timeout itself: an attempt not completed by [`deadline`](Self::deadline)
/// is abandoned and its sub-task fails over; [`is_abandoned`](Self::is_abandoned) says so, so
/// that the handler can drop the work (an HTTP client its request). Completing an abandoned
/// attempt does nothing but count a late result.
///
/// Dropping an `Attempt` without completing it fails the attempt (kind `Dropped`, or
/// `Panicked` if the thread is unwinding), so that an attempt is never lost.
pub struct Attempt {
    /// `None` once completed (or handed to C, which completes through the engine's handle).
    hub: Option<Arc<Hub>>,
    idx: u32,
    g: u32,
    deadline_ns: u64,
}

/// The engine had abandoned the attempt before it was completed (it timed out, another attempt
/// won, or the engine stopped): the answer was dropped and counted as a late result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abandoned;

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the attempt had been abandoned (timed out, another attempt won, or the engine stopped)")
    }
}

impl std::error::Error for Abandoned {}

impl Attempt {
    pub(crate) fn new(hub: Arc<Hub>, idx: u32, g: u32, deadline_ns: u64) -> Self {
        Self { hub: Some(hub), idx, g, deadline_ns }
    }

    /// Completes the attempt successfully with `value` (the task's value is the sum over its
    /// sub-tasks).
    pub fn succeed(self, value: u64) -> Result<(), Abandoned> {
        self.finish(Answer::ok(value, Vec::new()))
    }

    /// Completes the attempt successfully with `value` and the reply's bytes, which are moved
    /// (not copied) to the task's completion.
    pub fn succeed_with(self, value: u64, body: impl Into<Vec<u8>>) -> Result<(), Abandoned> {
        self.finish(Answer::ok(value, body.into()))
    }

    /// Fails the attempt with error `code`; the domain fails over.
    pub fn fail(self, code: i32) -> Result<(), Abandoned> {
        self.finish(Answer::failed(FailureKind::Error, code))
    }

    /// Completes the attempt with a handler's reply: `Ok(value)` or `Err(code)`.
    pub fn complete(self, reply: Result<u64, i32>) -> Result<(), Abandoned> {
        match reply {
            Ok(v) => self.succeed(v),
            Err(code) => self.fail(code),
        }
    }

    /// Completes the attempt as timed out: its handler gave up at the time it was given
    /// ([`QueuedAttempt::timeout`](crate::QueuedAttempt::timeout)). A failure of kind
    /// [`Abandoned`](FailureKind::Abandoned); the domain fails over.
    pub fn time_out(self) -> Result<(), Abandoned> {
        self.finish(Answer::failed(FailureKind::Abandoned, 0))
    }

    /// Whether the engine has given up on this attempt (its answer would be dropped).
    pub fn is_abandoned(&self) -> bool {
        self.hub.as_ref().is_some_and(|h| h.is_abandoned(self.idx, self.g))
    }

    /// When the engine abandons the attempt if it is not completed: the agent timeout, or the
    /// task's deadline or domain timeout when sooner.
    pub fn deadline(&self) -> std::time::Instant {
        match &self.hub {
            Some(h) => h.clock.instant_at(self.deadline_ns),
            None => std::time::Instant::now(),
        }
    }

    pub(crate) fn finish(mut self, answer: Answer) -> Result<(), Abandoned> {
        let hub = self.hub.take().expect("an attempt is completed once: complete consumes it");
        match hub.complete(self.idx, self.g, answer, true, true) {
            Ok(()) => Ok(()),
            Err(Refused::Abandoned) => Err(Abandoned),
            Err(Refused::Stale) => unreachable!("a live Attempt owns its armed slot"),
        }
    }

    /// [`finish`](Self::finish) without waking the worker: returns its hub, for a completer
    /// that completes many attempts and wakes each worker once.
    pub(crate) fn finish_quiet(mut self, answer: Answer) -> Arc<Hub> {
        let hub = self.hub.take().expect("an attempt is completed once: complete consumes it");
        let _ = hub.complete(self.idx, self.g, answer, true, false);
        hub
    }

    /// Its holder starts it now (see [`Hub::start`]): the engine time, or `None` if abandoned.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn start(&self) -> Option<u64> {
        self.hub.as_ref().and_then(|h| h.start(self.idx, self.g))
    }

    /// (slot, generation).
    pub(crate) fn id(&self) -> (u32, u32) {
        (self.idx, self.g)
    }

    pub(crate) fn deadline_ns(&self) -> u64 {
        self.deadline_ns
    }

    /// Gives up the Rust handle without completing the attempt: its (worker, slot, generation),
    /// for a C caller who completes it through the engine's handle.
    #[doc(hidden)]
    pub fn into_raw(mut self) -> (u16, u32, u32) {
        let worker = self.hub.take().map_or(0, |h| h.worker);
        (worker, self.idx, self.g)
    }

    /// The worker takes back an attempt it never handed out.
    pub(crate) fn disarm(mut self) -> u32 {
        if let Some(h) = self.hub.take() {
            h.disarm(self.idx, self.g);
        }
        self.idx
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            let kind = if std::thread::panicking() { FailureKind::Panicked } else { FailureKind::Dropped };
            let _ = hub.complete(self.idx, self.g, Answer::failed(kind, 0), false, true);
        }
    }
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt").field("slot", &self.idx).field("generation", &self.g).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn hub(n: usize) -> Arc<Hub> {
        Arc::new(Hub::new(n, 0, Clock::new()))
    }

    #[test]
    fn an_answer_reaches_the_worker_once_and_frees_the_slot() {
        let h = hub(2);
        let g = h.arm(0);
        let a = Attempt::new(h.clone(), 0, g, 0);
        assert!(!h.has_mail());
        a.succeed_with(7, b"body".to_vec()).unwrap();
        match h.take() {
            Some(Taken::Answer(0, ans)) => {
                assert_eq!((ans.failure, ans.value, ans.body.as_slice()), (None, 7, &b"body"[..]));
            }
            _ => panic!("expected the answer"),
        }
        assert!(h.take().is_none());
        // The slot is free with the next generation; the old handle is stale.
        assert_eq!(h.complete(0, g, Answer::ok(1, Vec::new()), true, false), Err(Refused::Stale));
        assert_eq!(h.arm(0), g + 1);
    }

    #[test]
    fn a_completion_after_abandonment_is_dropped_and_counted() {
        let h = hub(1);
        let g = h.arm(0);
        let a = Attempt::new(h.clone(), 0, g, 0);
        assert!(h.abandon(0, g));
        assert!(a.is_abandoned());
        assert_eq!(a.succeed(1), Err(Abandoned));
        assert_eq!(h.late(), 1);
        assert!(matches!(h.take(), Some(Taken::Retired(0))));
        assert!(h.take().is_none());
    }

    #[test]
    fn abandoning_fails_once_the_answer_is_claimed() {
        let h = hub(1);
        let g = h.arm(0);
        assert_eq!(h.complete(0, g, Answer::failed(FailureKind::Error, 3), true, false), Ok(()));
        assert!(!h.abandon(0, g), "the answer came first");
        assert!(matches!(h.take(), Some(Taken::Answer(0, Answer { code: 3, .. }))));
    }

    #[test]
    fn a_dropped_attempt_fails_and_a_dropped_abandoned_one_is_not_late() {
        let h = hub(2);
        let g0 = h.arm(0);
        drop(Attempt::new(h.clone(), 0, g0, 0));
        assert!(matches!(h.take(), Some(Taken::Answer(0, Answer { failure: Some(FailureKind::Dropped), .. }))));
        let g1 = h.arm(1);
        let a = Attempt::new(h.clone(), 1, g1, 0);
        assert!(h.abandon(1, g1));
        drop(a);
        assert_eq!(h.late(), 0);
        assert!(matches!(h.take(), Some(Taken::Retired(1))));
    }

    #[test]
    fn slots_are_made_a_chunk_at_a_time_and_a_handle_to_one_never_made_is_stale() {
        let n = 2 * CHUNK + 5;
        let h = hub(n);
        assert_eq!(h.capacity(), n);
        assert!(h.slots.chunks.iter().all(|c| c.get().is_none()), "no slot is made before one is armed");
        // A handle naming a slot whose chunk was never made: refused, not a panic.
        let last = (n - 1) as u32;
        assert_eq!(h.complete(last, 1, Answer::ok(1, Vec::new()), true, false), Err(Refused::Stale));
        assert!(!h.is_abandoned(last, 1));
        assert_eq!(h.start(last, 1), None);
        assert_eq!(h.complete(n as u32, 1, Answer::ok(1, Vec::new()), true, false), Err(Refused::Stale));
        // Arming the last slot makes its chunk (the short last one) and no other.
        let g = h.arm(last);
        let made: Vec<bool> = h.slots.chunks.iter().map(|c| c.get().is_some()).collect();
        assert_eq!(made, [false, false, true]);
        assert_eq!(h.slots.chunks[2].get().unwrap().len(), 5);
        assert!(h.start(last, g).is_some());
        Attempt::new(h.clone(), last, g, 0).succeed_with(3, Vec::new()).unwrap();
        assert!(matches!(h.take(), Some(Taken::Answer(i, Answer { value: 3, .. })) if i == last));
        // Another slot of a chunk already made does not make it again, nor others.
        let g = h.arm(last - 1);
        assert!(h.abandon(last - 1, g));
        assert!(h.is_abandoned(last - 1, g));
        assert_eq!(h.slots.chunks.iter().filter(|c| c.get().is_some()).count(), 1);
    }
}
