//! Re-entrancy guards: which engine locks the calling thread holds (taking one again from an event
//! listener would deadlock, so it panics instead), and whether the calling thread is one of an
//! engine's own (where a call that waits for the engine could wait for itself).

thread_local! {
    /// The engine locks this thread holds (bits below): taking one again would deadlock.
    static HELD: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// The audit log's lock.
pub(crate) const AUDIT_LOCK: u8 = 1;

/// The reconfiguration lock.
pub(crate) const WRITER_LOCK: u8 = 2;

/// A lock guard that marks its lock held by this thread while it lives.
pub(crate) struct Held<G> {
    guard: Option<G>,
    bit: u8,
}

impl<G> Held<G> {
    /// Takes a lock with `take`, unless this thread holds it already: that is an event listener
    /// acting from inside the action that called it, and a panic (which the listener's caller
    /// catches and logs) rather than a deadlock.
    pub(crate) fn take(bit: u8, take: impl FnOnce() -> G) -> Self {
        if HELD.with(|h| h.get() & bit != 0) {
            panic!(
                "an engine operation was called from an event listener inside the operator action \
                 that raised the event; it would deadlock (act on the event from another thread)"
            );
        }
        let guard = take();
        HELD.with(|h| h.set(h.get() | bit));
        Self { guard: Some(guard), bit }
    }

    /// The guard, while the lock is held.
    pub(crate) fn guard_mut(&mut self) -> Option<&mut G> {
        self.guard.as_mut()
    }

    /// Releases the lock.
    pub(crate) fn release(&mut self) -> Option<G> {
        let g = self.guard.take();
        if g.is_some() {
            HELD.with(|h| h.set(h.get() & !self.bit));
        }
        g
    }
}

impl<G> Drop for Held<G> {
    fn drop(&mut self) {
        drop(self.release());
    }
}

impl<G: std::ops::Deref> std::ops::Deref for Held<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        self.guard.as_mut().expect("held until dropped")
    }
}

thread_local! {
    /// The engine whose thread this is (a worker or an isolated agent's thread), by address.
    static ENGINE_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as one of the engine's whose shared state is at `owner` (see
/// [`crate::shared::enter_engine_thread`]).
pub(crate) fn set_engine_thread(owner: usize) {
    ENGINE_THREAD.with(|e| e.set(owner));
}

/// The address of the shared state of the engine the calling thread belongs to (0: none).
pub(crate) fn engine_thread() -> usize {
    ENGINE_THREAD.with(|e| e.get())
}
