//! The handle tables behind the C ABI's opaque handles: a concurrent map from handle to object,
//! read on every call without a lock, with epoch-based reclamation (crossbeam-epoch) so that a
//! handle freed while another thread is using it stays valid until that thread is done.
//!
//! A handle is not a pointer: it encodes the table's type tag, a slot index and the slot's
//! generation at insertion (`tag << 56 | generation << 17 | (index + 1)`, never 0, so never
//! NULL). Every lookup compares the tag and the generation, so a stale handle, a double free, a
//! handle of another type (an engine passed as a topology) or a made-up value is refused with
//! `METAFED_E_HANDLE` instead of touching memory.

use crate::convert::non_null;
use crate::error::{FfiError, FfiResult, METAFED_E_HANDLE, METAFED_E_INVALID, err};
use metafed_rs::{Engine, TopologyBuilder};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_epoch::{self as epoch, Atomic, Owned};

const SLOTS: usize = 1 << 16;
const INDEX_BITS: u32 = 17;
const TAG_SHIFT: u32 = 56;

struct Entry<T> {
    generation: u32,
    value: T,
}

pub(crate) struct HandleTable<T> {
    what: &'static str,
    /// Distinguishes the tables' handles (1 to 255).
    tag: usize,
    /// The live entry of each slot, or null. Swapped in by `insert`, out by `remove`.
    slots: [Atomic<Entry<T>>; SLOTS],
    /// The generation each slot last handed out.
    generations: [AtomicU32; SLOTS],
    /// Slots that have been used and freed. Taken only by `insert` and `remove`, never by
    /// lookups.
    free: Mutex<Vec<u32>>,
    /// Slots never used are `next..SLOTS`.
    next: AtomicU32,
}

impl<T: Send + Sync> HandleTable<T> {
    pub(crate) const fn new(what: &'static str, tag: u8) -> Self {
        Self {
            what,
            tag: tag as usize,
            slots: [const { Atomic::null() }; SLOTS],
            generations: [const { AtomicU32::new(0) }; SLOTS],
            free: Mutex::new(Vec::new()),
            next: AtomicU32::new(0),
        }
    }

    fn split(&self, h: usize) -> Result<(usize, u32), FfiError> {
        let index = (h & ((1 << INDEX_BITS) - 1)).wrapping_sub(1);
        let generation = (h >> INDEX_BITS) as u32;
        // Bits 49 to 55 (between the generation and the tag) are 0 in every handle made here.
        if h >> TAG_SHIFT != self.tag || index >= SLOTS || generation == 0 || (h >> (INDEX_BITS + 32)) & 0x7f != 0 {
            return Err(err(METAFED_E_HANDLE, format!("{:#x} is not a {} handle", h, self.what)));
        }
        Ok((index, generation))
    }

    fn stale(&self, h: usize) -> FfiError {
        err(METAFED_E_HANDLE, format!("{} handle {:#x} is stale or already freed", self.what, h))
    }

    /// Stores `value` and returns its handle.
    pub(crate) fn insert(&self, value: T) -> Result<usize, FfiError> {
        let index = match self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(i) => i as usize,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= SLOTS {
                    self.next.store(SLOTS as u32, Ordering::Relaxed);
                    return Err(err(
                        METAFED_E_INVALID,
                        format!("too many live {} handles (at most {SLOTS})", self.what),
                    ));
                }
                i
            }
        };
        // Generations skip 0 so that a handle is never 0; they wrap after 2^32 uses of a slot.
        let mut generation = self.generations[index].fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if generation == 0 {
            generation = self.generations[index].fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        }
        let guard = epoch::pin();
        self.slots[index].store(Owned::new(Entry { generation, value }), Ordering::Release);
        drop(guard);
        Ok(self.tag << TAG_SHIFT | (generation as usize) << INDEX_BITS | (index + 1))
    }

    /// Runs `f` on the object of handle `h`. Lock-free: pins the epoch, loads the slot and
    /// compares generations. The object stays alive for the duration of `f` even if another
    /// thread frees the handle meanwhile.
    #[inline]
    pub(crate) fn with<R>(&self, h: usize, f: impl FnOnce(&T) -> Result<R, FfiError>) -> Result<R, FfiError> {
        let (index, generation) = self.split(h)?;
        let guard = epoch::pin();
        let entry = self.slots[index].load(Ordering::Acquire, &guard);
        // SAFETY: a non-null pointer in a slot was stored by `insert` and is destroyed only
        // through `defer_destroy` after being unlinked, which waits for our guard.
        match unsafe { entry.as_ref() } {
            Some(e) if e.generation == generation => f(&e.value),
            _ => Err(self.stale(h)),
        }
    }

    /// Unlinks handle `h`, runs `f` on its object (still alive), and schedules the object's
    /// destruction for when no thread can still be using it. A second removal of the same
    /// handle fails with `METAFED_E_HANDLE`.
    pub(crate) fn remove<R>(&self, h: usize, f: impl FnOnce(&T) -> R) -> Result<R, FfiError> {
        let (index, generation) = self.split(h)?;
        let guard = epoch::pin();
        let entry = self.slots[index].load(Ordering::Acquire, &guard);
        // SAFETY: as in `with`.
        match unsafe { entry.as_ref() } {
            Some(e) if e.generation == generation => {}
            _ => return Err(self.stale(h)),
        }
        if self.slots[index]
            .compare_exchange(entry, epoch::Shared::null(), Ordering::AcqRel, Ordering::Acquire, &guard)
            .is_err()
        {
            return Err(self.stale(h)); // freed concurrently by another thread
        }
        // SAFETY: we unlinked it; it is still valid under our guard.
        let result = f(&unsafe { entry.deref() }.value);
        // SAFETY: unlinked, so no new reference can be taken; existing ones are protected by
        // their guards, which `defer_destroy` waits for.
        unsafe { guard.defer_destroy(entry) };
        drop(guard);
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(index as u32);
        // Give the collector a chance to run now rather than at some later call.
        for _ in 0..3 {
            epoch::pin().flush();
        }
        Ok(result)
    }
}

/// A running engine. Opaque; a handle, not a pointer to memory. Every function taking an
/// engine may be called from any thread, concurrently.
pub struct metafed_engine {
    _private: [u8; 0],
}

pub(crate) static ENGINES: HandleTable<Arc<Engine>> = HandleTable::new("engine", 2);

/// Runs `f` on the engine behind a handle (lock-free; see `handles`).
pub(crate) fn with_engine<R>(
    e: *const metafed_engine,
    f: impl FnOnce(&Engine) -> Result<R, FfiError>,
) -> Result<R, FfiError> {
    ENGINES.with(e as usize, |arc| f(arc))
}

/// Runs `f` on the engine whose handle value is `h` (for attempts, which name their engine by
/// value).
pub(crate) fn with_engine_by_value<R>(h: usize, f: impl FnOnce(&Engine) -> Result<R, FfiError>) -> Result<R, FfiError> {
    ENGINES.with(h, |arc| f(arc))
}

/// Takes a reference-counted handle on the engine, for calls that may block (so that no epoch
/// guard is held while they wait).
pub(crate) fn engine_arc(e: *const metafed_engine) -> Result<Arc<Engine>, FfiError> {
    ENGINES.with(e as usize, |arc| Ok(arc.clone()))
}

/// A topology under construction: domains, agents, breakers, injected faults. Opaque; a handle,
/// not a pointer to memory. Not thread-safe to build from several threads at once (calls are
/// serialised, but the result would depend on their order).
pub struct metafed_topology {
    _private: [u8; 0],
}

pub(crate) static TOPOLOGIES: HandleTable<Mutex<TopologyBuilder>> = HandleTable::new("topology", 1);

/// Runs `f` on the builder behind a topology handle.
pub(crate) fn with_builder<R>(
    t: *const metafed_topology,
    f: impl FnOnce(&mut TopologyBuilder) -> Result<R, FfiError>,
) -> Result<R, FfiError> {
    TOPOLOGIES.with(t as usize, |m| f(&mut m.lock().unwrap_or_else(|e| e.into_inner())))
}

pub(crate) fn new_handle(b: TopologyBuilder, out: *mut *mut metafed_topology) -> FfiResult {
    non_null(out, "out")?;
    let h = TOPOLOGIES.insert(Mutex::new(b))?;
    // SAFETY: `out` is not NULL and, per the API contract, points to writable storage.
    unsafe { *out = h as *mut metafed_topology };
    Ok(())
}

/// A copy of the builder behind a topology handle (an engine starts from a copy, so the
/// topology stays usable).
pub(crate) fn builder_snapshot(t: *const metafed_topology) -> Result<TopologyBuilder, FfiError> {
    with_builder(t, |b| Ok(b.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_with_any_bit_changed_is_refused() {
        static T: HandleTable<u32> = HandleTable::new("test", 9);
        let h = T.insert(7).ok().expect("inserted");
        assert_eq!(T.with(h, |v| Ok(*v)).ok(), Some(7));
        for bit in 0..64 {
            let forged = h ^ (1 << bit);
            // A flip in the index or generation may name another live handle of the table; there
            // is only this one, so every flip is refused.
            assert!(T.with(forged, |v| Ok(*v)).is_err(), "bit {bit} flipped: {forged:#x} accepted");
        }
        assert_eq!(T.remove(h, |v| *v).ok(), Some(7));
    }
}
