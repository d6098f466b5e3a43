//! Signals: the first Ctrl-C (or SIGTERM) asks a run to stop and report what it did; SIGHUP asks
//! `serve` to reload its file.

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set by the first Ctrl-C: runs stop submitting, drain, and what ran is reported.
pub fn stop_flag() -> &'static std::sync::atomic::AtomicBool {
    &STOP
}

pub fn interrupted() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
pub fn on_ctrl_c() {
    extern "C" fn handler(_: libc::c_int) {
        // Async-signal-safe: an atomic store, then the default action for the next Ctrl-C.
        STOP.store(true, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: restoring the default disposition is async-signal-safe.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    }
    // SAFETY: installs a handler that only touches an atomic and the signal disposition.
    unsafe { libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t) };
    // SIGTERM (a service manager stopping `serve`) is treated like a first Ctrl-C.
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGTERM, handler as *const () as libc::sighandler_t) };
}

#[cfg(not(target_os = "linux"))]
pub fn on_ctrl_c() {}

static RELOAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a SIGHUP arrived since the last call (after [`on_sighup`]).
pub fn take_reload() -> bool {
    RELOAD.swap(false, std::sync::atomic::Ordering::Relaxed)
}

/// From now on SIGHUP asks for a reload ([`take_reload`]) instead of ending the process.
#[cfg(target_os = "linux")]
pub fn on_sighup() {
    extern "C" fn handler(_: libc::c_int) {
        RELOAD.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // SAFETY: installs a handler that only touches an atomic.
    unsafe { libc::signal(libc::SIGHUP, handler as *const () as libc::sighandler_t) };
}

#[cfg(not(target_os = "linux"))]
pub fn on_sighup() {}
