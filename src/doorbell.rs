//! The file descriptor a caller's event loop watches for a queue the engine fills: readable while
//! the queue holds something (a level, not an edge), written once each time the queue goes from
//! drained to waiting, not once per item. Used by [`AttemptQueue`](crate::AttemptQueue) (attempts
//! for a loop's handlers) and [`CompletionQueue`](crate::CompletionQueue) (completions for a
//! loop's callers).

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct Doorbell {
    /// Set when the wake-up byte has been written and not yet read back by a take.
    signaled: AtomicBool,
    #[cfg(unix)]
    wake: Option<(std::os::unix::net::UnixStream, std::os::unix::net::UnixStream)>,
    /// Takers serialise on this (the consumer side of the file descriptor).
    take_lock: std::sync::Mutex<()>,
}

impl Doorbell {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        let wake = std::os::unix::net::UnixStream::pair().ok().and_then(|(r, w)| {
            r.set_nonblocking(true).ok()?;
            w.set_nonblocking(true).ok()?;
            Some((r, w))
        });
        Self {
            signaled: AtomicBool::new(false),
            #[cfg(unix)]
            wake,
            take_lock: std::sync::Mutex::new(()),
        }
    }

    /// The descriptor a loop watches; `None` where the platform has none.
    #[cfg(unix)]
    pub(crate) fn fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.wake.as_ref().map(|(r, _)| r.as_raw_fd())
    }

    /// Starts a take: serialises takers, reads the wake-up bytes back and clears the flag. The
    /// caller then pops, and calls [`end_take`](Self::end_take) with whether anything was left.
    pub(crate) fn begin_take(&self) -> MutexGuard<'_, ()> {
        let guard = self.take_lock.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(unix)]
        if let Some((r, _)) = &self.wake {
            use std::io::Read;
            let mut buf = [0u8; 64];
            while matches!((&*r).read(&mut buf), Ok(n) if n > 0) {}
        }
        // Cleared before the queue is read (an acquire RMW): a push after our last pop sees it
        // clear and signals again; a push whose signal we skip is one our pops see (its release
        // RMW on the flag is read by ours).
        self.signaled.swap(false, Ordering::AcqRel);
        guard
    }

    /// Ends a take: the descriptor stays readable when items were left for the next one.
    pub(crate) fn end_take(&self, left: bool, _guard: MutexGuard<'_, ()>) {
        if left {
            self.ring();
        }
    }

    /// Makes the descriptor readable (after a push), unless it already is.
    pub(crate) fn ring(&self) {
        if !self.signaled.swap(true, Ordering::AcqRel) {
            #[cfg(unix)]
            if let Some((_, w)) = &self.wake {
                use std::io::Write;
                // A full socket buffer already holds a byte for the reader: nothing is lost.
                let _ = (&*w).write(&[1]);
            }
        }
    }
}
