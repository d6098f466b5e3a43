//! The free slots: a cache per shard, taken a batch at a time, and a lock-free queue per shard
//! (see [`Pool`]).

use super::{FILLING, FREE, Slab, Slot, state, with_state};
use crate::sync::{AtomicU32, Mutex, MutexGuard, Ordering, lock, try_lock};
use crate::task::{Completion, Ticket};
use std::collections::VecDeque;

/// Free slots of one shard, taken and returned a batch at a time under one lock, where the
/// lock-free queue costs a compare-and-swap per slot each way. First in, first out: a slot
/// freed is reused after the shard's other free slots, as the lock-free queue reused them.
/// Reusing the slot just freed (a stack) was 15% slower on the 2-core machine in wall time,
/// though it saved the same instructions: the slot's lines were still in the other core's
/// cache, and each reuse invalidated them there.
pub(super) struct Cache {
    items: Mutex<VecDeque<u32>>,
    /// `items.len()`, stored by whoever holds `items`: what `free_len` counts without the lock.
    len: AtomicU32,
}

impl Cache {
    /// A cache holding `items` (its shard's free slots, at the start).
    pub(super) fn new(items: VecDeque<u32>) -> Self {
        let len = AtomicU32::new(items.len() as u32);
        Self { items: Mutex::new(items), len }
    }
}

impl Slab {
    /// Free slots now, in the queues and the caches: counts read one by one with relaxed loads,
    /// which may count a slot moving between two of them twice: capped at the capacity.
    pub(crate) fn free_len(&self) -> usize {
        let n = self.free.iter().map(|q| q.len()).sum::<usize>()
            + self.caches.iter().map(|c| c.len.load(Ordering::Relaxed) as usize).sum::<usize>();
        n.min(self.capacity())
    }

    /// The shard of submitter `shard`, without a division where it is in range (a submitter's
    /// number is below the shard count unless more threads submit than there are workers).
    #[inline]
    fn shard_of(&self, shard: usize) -> usize {
        let n = self.free.len();
        if shard < n { shard } else { shard % n }
    }

    /// A hold on submitter `shard`'s cache of free slots for one batch of allocations or takes
    /// (see [`Pool`]); without the cache when another thread holds it.
    #[inline]
    pub(crate) fn pool(&self, shard: usize) -> Pool<'_> {
        let shard = self.shard_of(shard);
        let c = &self.caches[shard];
        Pool { slab: self, shard, cache: try_lock(&c.items), len: &c.len }
    }

    /// Pops a free slot from the lock-free queues, from shard `at`'s (in range) first.
    #[inline]
    fn pop_free(&self, mut at: usize) -> Option<u32> {
        let n = self.free.len();
        for _ in 0..n {
            if let Some(idx) = self.free[at].pop() {
                return Some(idx);
            }
            at = if at + 1 == n { 0 } else { at + 1 };
        }
        None
    }

    /// Marks free slot `idx`, just taken from a queue or a cache, `FILLING`.
    #[inline]
    fn fill(&self, idx: u32) -> u32 {
        let s = self.slot(idx);
        let w = s.word.load(Ordering::Relaxed);
        debug_assert_eq!(state(w), FREE);
        s.word.store(with_state(w, FILLING), Ordering::Relaxed);
        idx
    }

    /// A slot just freed lets go of its task's completion queue now, so that a queue its
    /// consumer dropped (its descriptors, its ring) goes with its last task rather than when
    /// the slot is next used.
    #[inline]
    pub(super) fn let_go(s: &Slot) {
        #[cfg(not(loom))]
        {
            // SAFETY: a FREE slot not yet in a cache or on a queue is this thread's alone.
            let carries = s.req.with_mut(|p| unsafe { &mut (*p).carries });
            if *carries & super::Req::SINK != 0 {
                // SAFETY: as above.
                s.extra.with_mut(|p| unsafe { (*p).sink = None });
                // The next task without a queue then leaves the field alone.
                *carries &= !super::Req::SINK;
            }
        }
        #[cfg(loom)]
        let _ = s;
    }

    /// Returns freed slot `s` (index `idx`) to its shard (it always has room: a shard holds its
    /// own slots).
    pub(super) fn push_free(&self, s: &Slot, idx: u32) {
        Self::let_go(s);
        let _ = self.free[s.home as usize].push(idx);
    }
}

/// A thread's hold on its shard's cache of free slots for one batch of submissions or one
/// poll (`Slab::pool`): the slots it allocates come out of the cache and the slots it frees (the
/// completions it takes) go back in, under one lock for the batch instead of a shared
/// compare-and-swap per slot, as an io_uring submitter owns its ring's entries. Where another
/// thread of the shard holds the cache, the lock-free queues serve. No free slot is out of
/// reach: an allocation that finds its cache and the queues empty takes from the other shards'
/// caches, waiting for one that a thread holds (holding none itself, so two threads never wait
/// on each other), so `Full` means that every slot is in use. `free_len` counts the cached
/// slots, so `stats().in_flight` and the priority reserve see them as free.
pub(crate) struct Pool<'a> {
    slab: &'a Slab,
    shard: usize,
    cache: Option<MutexGuard<'a, VecDeque<u32>>>,
    len: &'a AtomicU32,
}

impl Pool<'_> {
    /// Takes a free slot (from the cache, the lock-free queues, then the other shards' caches)
    /// and marks it `FILLING`; the caller owns it until `publish`.
    #[inline]
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        if let Some(items) = self.cache.as_mut()
            && let Some(idx) = items.pop_front()
        {
            self.len.store(items.len() as u32, Ordering::Relaxed);
            return Some(self.slab.fill(idx));
        }
        let idx = match self.slab.pop_free(self.shard) {
            Some(idx) => idx,
            None => self.steal()?,
        };
        Some(self.slab.fill(idx))
    }

    /// The cache and the queues are empty: takes a slot from another cache (this shard's too
    /// when another thread holds it), and half the rest into this one's if held. Caches that
    /// their threads hold are waited for only if no other has a slot, after letting go of this
    /// one's (empty) cache.
    #[cold]
    #[inline(never)]
    fn steal(&mut self) -> Option<u32> {
        let slab = self.slab;
        let n = slab.caches.len();
        let mut busy = false;
        for k in 0..n {
            let at = if self.shard + k < n { self.shard + k } else { self.shard + k - n };
            if at == self.shard && self.cache.is_some() {
                continue;
            }
            match try_lock(&slab.caches[at].items) {
                Some(theirs) => {
                    if let Some(idx) = self.take_from(at, theirs) {
                        return Some(idx);
                    }
                }
                None => busy = true,
            }
        }
        if !busy {
            // Slots freed while we looked went to the queues.
            return slab.pop_free(self.shard);
        }
        // Held by threads in the middle of a batch: wait for each in turn, holding no cache.
        self.cache = None;
        for at in 0..n {
            if let Some(idx) = self.take_from(at, lock(&slab.caches[at].items)) {
                return Some(idx);
            }
        }
        // Slots those threads freed while we waited went to the queues.
        slab.pop_free(self.shard)
    }

    /// Takes one slot from shard `at`'s cache, held as `theirs`, and half the rest into this
    /// pool's cache if held.
    fn take_from(&mut self, at: usize, mut theirs: MutexGuard<'_, VecDeque<u32>>) -> Option<u32> {
        let idx = theirs.pop_front()?;
        let half = if self.cache.is_some() { theirs.len() / 2 } else { 0 };
        // The owner's count first: the moved slots are counted in neither cache for a moment,
        // never in both (`free_len` must not exceed the capacity).
        self.slab.caches[at].len.store((theirs.len() - half) as u32, Ordering::Relaxed);
        if let Some(mine) = self.cache.as_mut() {
            mine.extend(theirs.drain(..half));
            self.len.store(mine.len() as u32, Ordering::Relaxed);
        }
        Some(idx)
    }

    /// [`Slab::take_into`], freeing the slot into the cache (or, if it is full or not held,
    /// onto its shard's queue).
    #[inline]
    pub(crate) fn take_into(&mut self, t: Ticket, dst: &mut Completion) -> bool {
        let slab = self.slab;
        let idx = t.slot();
        let s = slab.slot(idx);
        match slab.take_out(s, t, dst) {
            None => false,
            Some(freed) => {
                if freed {
                    self.put(s, idx);
                }
                true
            }
        }
    }

    /// Puts freed slot `s` (index `idx`) in the cache, or on its shard's queue if the cache is
    /// full or not held.
    #[inline]
    fn put(&mut self, s: &Slot, idx: u32) {
        match self.cache.as_mut() {
            Some(items) if items.len() < self.slab.cache_cap => {
                Slab::let_go(s);
                items.push_back(idx);
                self.len.store(items.len() as u32, Ordering::Relaxed);
            }
            _ => self.slab.push_free(s, idx),
        }
    }
}
