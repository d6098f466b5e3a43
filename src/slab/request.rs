//! What a slot holds for its task: the request the submitter wrote, and the run record of the
//! worker that admitted it.

use crate::breaker::Permit;

/// A request field the worker that admitted the task may rewrite: the classifier's verdict
/// (domains, priority, deadline, key) replaces what a task that named no domain was submitted
/// with. Relaxed atomics, so that the shutdown sweep and `take`, which may read the request of a
/// task whose worker is stuck in a classifier, never race a plain write. Not a synchronisation
/// point (the slot's word is), hence std's atomics, which loom need not model; a relaxed load
/// or store is a plain `mov`.
#[derive(Default)]
pub(crate) struct Field<T: FieldAtomic>(T::Atomic);

pub(crate) trait FieldAtomic: Copy {
    type Atomic: Default;
    fn load(a: &Self::Atomic) -> Self;
    fn store(a: &Self::Atomic, v: Self);
}

macro_rules! field_atomic {
    ($($t:ty => $a:ty),*) => {$(
        impl FieldAtomic for $t {
            type Atomic = $a;
            #[inline]
            fn load(a: &Self::Atomic) -> Self {
                a.load(std::sync::atomic::Ordering::Relaxed)
            }
            #[inline]
            fn store(a: &Self::Atomic, v: Self) {
                a.store(v, std::sync::atomic::Ordering::Relaxed)
            }
        }
    )*};
}
field_atomic!(u64 => std::sync::atomic::AtomicU64, u8 => std::sync::atomic::AtomicU8);

impl<T: FieldAtomic> Field<T> {
    #[inline]
    pub(crate) fn get(&self) -> T {
        T::load(&self.0)
    }
    #[inline]
    pub(crate) fn set(&self, v: T) {
        T::store(&self.0, v)
    }
}

/// What the submitter wrote that every task's worker reads: 56 bytes, which the slot keeps in
/// the cache line of its state word (see `Slot`). Written only while the slot is `FILLING` (by
/// the thread that allocated it); read-only from `QUEUED` until the slot is freed, but for the
/// relaxed fields the admitting worker may rewrite.
#[derive(Default)]
#[repr(C)]
pub(crate) struct Req {
    pub(crate) id: u64,
    pub(crate) payload: u64,
    pub(crate) domains: Field<u64>,
    pub(crate) submit_ns: u64,
    /// Absolute, on the engine clock; `u64::MAX` for none.
    pub(crate) deadline_ns: Field<u64>,
    /// For the keyed rate limits; 0 for none.
    pub(crate) key: Field<u64>,
    /// How many domains the task needs, counted by the worker that decomposes it (after the
    /// classifier, if any, named them): what a handler sees as `Request::fanout`.
    pub(crate) fanout: Field<u8>,
    pub(crate) priority: Field<u8>,
    /// Which of the [`ReqExtra`] fields hold something ([`Req::DATA`], [`Req::SINK`]): a task
    /// that carries none is handled without reading their line.
    pub(crate) carries: u8,
}

impl Req {
    /// `carries`: the task has bytes.
    pub(crate) const DATA: u8 = 1;
    /// `carries`: the task's completion goes to a caller's queue.
    pub(crate) const SINK: u8 = 2;

    /// The task's bytes, from `extra` (its slot's) only if it has some.
    #[inline]
    pub(crate) fn data<'a>(&self, extra: &'a ReqExtra) -> &'a [u8] {
        if self.carries & Self::DATA != 0 { &extra.data } else { &[] }
    }

    /// The task's completion queue, from `extra` (its slot's) only if it has one.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn sink<'a>(&self, extra: &'a ReqExtra) -> Option<&'a std::sync::Arc<crate::sink::Sink>> {
        if self.carries & Self::SINK != 0 { extra.sink.as_ref() } else { None }
    }
}

/// What the submitter wrote that only some tasks carry: bytes, attributes, a completion queue.
/// Kept out of the state word's line (and, 64-byte aligned, off the run record's), the bytes and
/// the queue written only when a task has some or the slot's previous one had, and read only
/// when [`Req::carries`] says so; the attributes written for a task that names no domain and read
/// by the classifier alone. A task with none of them and its domains named does not touch these
/// lines. Same rules as [`Req`].
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct ReqExtra {
    /// Reused from task to task, so steady-state submission does not allocate.
    pub(crate) data: Vec<u8>,
    /// The caller's completion queue, if it submitted to one: delivery goes there.
    #[cfg(not(loom))]
    pub(crate) sink: Option<std::sync::Arc<crate::sink::Sink>>,
    /// For the classifier; reused from task to task like `data`.
    pub(crate) attrs: crate::classify::AttrList,
}

/// The task's progress. Touched only by the worker that admitted it, between `ADMITTED` and
/// its claim; nobody else reads it.
#[derive(Default)]
pub(crate) struct Run {
    /// Sub-tasks not yet joined.
    pub(crate) remaining: u32,
    /// The meta breaker's permit for this task.
    pub(crate) meta_permit: Option<Permit>,
    /// Whether the task holds one of the concurrency throttle's permits.
    pub(crate) holds_permit: bool,
    /// When it took the permit (the adaptive throttle judges the time from there: its wait for
    /// the permit is the throttle's own queue, not the load it measures).
    pub(crate) permit_ns: u64,
    /// The complexity units it holds of the admission's cost budget (0: none).
    pub(crate) cost: u32,
}

impl Run {
    /// Clears it for a new task.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}
