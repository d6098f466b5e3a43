//! The engine's clock: nanoseconds since the engine started, monotonic.
//!
//! Every agent call is timed, so the clock is on the hot path. On x86-64 with an invariant TSC
//! (CPUID 0x8000_0007, EDX bit 8: constant rate, runs in every power state, synchronised across
//! cores) it reads the time-stamp counter and scales it with a multiply; the scale is calibrated
//! once per process against `Instant` over 5 ms. Elsewhere it is `Instant`. On the development
//! machine a TSC read costs about 9 ns and `Instant::now` about 22 ns (through the vDSO).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    /// (TSC at `origin`, nanoseconds per tick in 32.32 fixed point), when the TSC is usable.
    tsc: Option<(u64, u64)>,
    /// A virtual clock (a simulation, `crate::Simulation`): time is what the simulation set.
    /// Never together with `tsc`, so the TSC path does not look at it.
    virt: Option<&'static VirtualTime>,
}

/// The time of a virtual clock. One per simulated engine, leaked (a few bytes) so that the
/// clock stays `Copy`. Only the thread that drives the simulation reads and sets it, so it is a
/// plain standard atomic, not one of the loom facade's.
#[derive(Debug, Default)]
pub(crate) struct VirtualTime(std::sync::atomic::AtomicU64);

impl Clock {
    pub(crate) fn new() -> Self {
        let origin = Instant::now();
        let tsc = tsc_scale().map(|scale| (read_tsc(), scale));
        Self { origin, tsc, virt: None }
    }

    /// A virtual clock at time 0 that moves only by [`set`](Self::set).
    pub(crate) fn virtual_clock() -> Self {
        Self { origin: Instant::now(), tsc: None, virt: Some(Box::leak(Box::default())) }
    }

    /// Whether the clock is virtual.
    pub(crate) fn is_virtual(&self) -> bool {
        self.virt.is_some()
    }

    /// Moves a virtual clock to `ns` (never back); nothing on a real one.
    pub(crate) fn set(&self, ns: u64) {
        if let Some(v) = self.virt {
            v.0.fetch_max(ns, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The `Instant` of engine time `ns`, reckoned from now: engine time (the TSC scaled by a
    /// rate measured once) and `Instant` (which NTP may slew) drift apart by a small fraction of
    /// the time since the engine started, so an instant counted from the start would be off by
    /// as much (minutes after days), where one counted from now is off by that fraction of the
    /// time left.
    pub(crate) fn instant_at(&self, ns: u64) -> Instant {
        let (now_ns, now) = (self.now(), Instant::now());
        if ns >= now_ns {
            now.checked_add(Duration::from_nanos(ns - now_ns)).unwrap_or(now)
        } else {
            now.checked_sub(Duration::from_nanos(now_ns - ns)).unwrap_or(now)
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self.tsc {
            // An invariant TSC (CPUID says so) never reads below the base taken at the start; a
            // counter reset that nothing restored (a suspend, a migration) would wrap to 2^64
            // ticks ahead. Clamping that here cost 3 to 6 instructions a task (callgrind, two
            // builds), so it is not done.
            Some((base, scale)) => ((u128::from(read_tsc().wrapping_sub(base)) * u128::from(scale)) >> 32) as u64,
            None => match self.virt {
                Some(v) => v.0.load(std::sync::atomic::Ordering::Relaxed),
                None => self.origin.elapsed().as_nanos() as u64,
            },
        }
    }
}

/// The TSC's nanoseconds per tick (32.32), if this machine has an invariant TSC.
fn tsc_scale() -> Option<u64> {
    static SCALE: OnceLock<Option<u64>> = OnceLock::new();
    *SCALE.get_or_init(|| {
        if !invariant_tsc() || std::env::var_os("METAFED_NO_TSC").is_some() {
            return None;
        }
        let (t0, c0) = (Instant::now(), read_tsc());
        while t0.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let (ns, ticks) = (t0.elapsed().as_nanos() as u64, read_tsc().wrapping_sub(c0));
        (ticks > 0).then(|| ((u128::from(ns) << 32) / u128::from(ticks)) as u64)
    })
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
fn invariant_tsc() -> bool {
    // CPUID exists on every x86-64 processor; leaf 0x8000_0000 says whether the extended leaf
    // 0x8000_0007 exists before we read it.
    use core::arch::x86_64::__cpuid;
    // `__cpuid` is a safe function in recent Rust (its target feature is always enabled on
    // x86-64) and an unsafe one in 1.88, the minimum supported: the block serves both.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86-64 processor.
    unsafe {
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
}

/// Elsewhere, and under Miri (which runs neither CPUID nor RDTSC): `Instant`.
#[cfg(any(not(target_arch = "x86_64"), miri))]
fn invariant_tsc() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(any(not(target_arch = "x86_64"), miri))]
#[inline]
fn read_tsc() -> u64 {
    0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn follows_the_system_clock() {
        let c = Clock::new();
        let t0 = Instant::now();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = c.now();
        let real = t0.elapsed().as_nanos() as u64;
        assert!(b > a);
        // Within 5% of the elapsed time the system clock saw (sleep overshoots, never undershoots).
        assert!((b - a) as f64 <= real as f64 * 1.05 + 100_000.0, "{} vs {real}", b - a);
        assert!((b - a) as f64 >= 20_000_000.0 * 0.95, "{}", b - a);
    }

    #[test]
    fn an_instant_is_reckoned_from_now_however_far_engine_time_has_drifted() {
        // A virtual clock 10 s ahead of the wall clock stands for an engine clock that has
        // drifted from `Instant` since the start: an engine time 20 ms from now is an instant
        // 20 ms from now, not 10 s later.
        let c = Clock::virtual_clock();
        c.set(10_000_000_000);
        let at = c.instant_at(10_020_000_000);
        let want = Instant::now() + Duration::from_millis(20);
        let off = if at > want { at - want } else { want - at };
        assert!(off < Duration::from_secs(1), "off by {off:?}");
        let past = c.instant_at(9_000_000_000);
        assert!(past <= Instant::now(), "an engine time before now is an instant before now");
    }
}
