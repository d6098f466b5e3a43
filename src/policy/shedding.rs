//! Adaptive shedding in the domain, on CoDel's idea (Nichols and Jacobson, "Controlling Queue
//! Delay", 2012): a queue is in trouble not when it is long but when even its shortest wait
//! stays above a target for a whole interval.
//!
//! A sub-task waits in its domain when every agent that could take it is at its concurrency
//! limit. With shedding on, each worker keeps, per domain, the shortest wait of the sub-tasks that
//! left the wait queue during the current interval (for an agent, or to their end). When an
//! interval ends with that minimum above the target (or with no sub-task leaving while the oldest
//! has waited longer than the target), the domain is overloaded: a sub-task that has waited
//! longer than the target is shed with `Reason::DomainOverloaded` instead of waiting on. Shedding
//! keeps the waits at about the target, so the minimum no longer says whether the overload goes
//! on; as CoDel stays in its dropping state while a standing queue remains, the domain stays
//! overloaded until an interval in which its wait queue drained. A sub-task that finds the wait queue full (`queue_capacity`, per worker) is shed at
//! once with the same reason. Short bursts pass: a queue that drains below the target within an
//! interval sheds nothing.
//!
//! The state is the worker's own (no shared write); the settings are atomics read when a
//! sub-task waits, changed live.

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A domain's adaptive shedding ([`TopologyBuilder::shedding`](crate::TopologyBuilder::shedding),
/// [`Engine::set_domain_shedding`](crate::Engine::set_domain_shedding), `shedding = { ... }` in a
/// domain's TOML table). The defaults are CoDel's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shedding {
    /// The queue time a sub-task may wait for an agent while the domain is overloaded. CoDel:
    /// 5 ms.
    #[serde(with = "crate::duration::ms")]
    pub target: Duration,
    /// The domain is overloaded when the shortest wait over this long stayed above the target.
    /// CoDel: 100 ms.
    #[serde(with = "crate::duration::ms")]
    pub interval: Duration,
    /// Sub-tasks that may wait for an agent at once, per worker (0: no bound but the worker's
    /// slots).
    pub queue_capacity: u32,
}

impl Default for Shedding {
    fn default() -> Self {
        Self { target: Duration::from_millis(5), interval: Duration::from_millis(100), queue_capacity: 0 }
    }
}

impl Shedding {
    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        for (what, d) in [("target", self.target), ("interval", self.interval)] {
            if d.is_zero() || d > crate::duration::MAX_DURATION {
                return Err(format!("shedding {what} must be greater than zero and at most 30 days, got {d:?}"));
            }
        }
        Ok(())
    }
}

/// A domain's shedding settings as the workers read them.
pub(crate) struct DomainShedding {
    target_ns: AtomicU64,
    interval_ns: AtomicU64,
    capacity: AtomicU32,
    /// Bumped by each change: a worker's state from before a change starts over.
    generation: AtomicU64,
}

impl DomainShedding {
    pub(crate) fn new(s: &Shedding) -> Self {
        let d = Self {
            target_ns: AtomicU64::new(1),
            interval_ns: AtomicU64::new(1),
            capacity: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        };
        d.set(s);
        d
    }

    pub(crate) fn set(&self, s: &Shedding) {
        self.target_ns.store((s.target.as_nanos() as u64).max(1), Ordering::Relaxed);
        self.interval_ns.store((s.interval.as_nanos() as u64).max(1), Ordering::Relaxed);
        self.capacity.store(s.queue_capacity, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn get(&self) -> Shedding {
        Shedding {
            target: Duration::from_nanos(self.target_ns.load(Ordering::Relaxed)),
            interval: Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed)),
            queue_capacity: self.capacity.load(Ordering::Relaxed),
        }
    }

    #[inline]
    pub(crate) fn target_ns(&self) -> u64 {
        self.target_ns.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn interval_ns(&self) -> u64 {
        self.interval_ns.load(Ordering::Relaxed)
    }
}

/// One worker's view of one domain's queue (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Codel {
    /// When the current interval ends (0: none started).
    interval_end: u64,
    /// The shortest wait of a sub-task that left the queue in this interval (`u64::MAX`: none).
    min_wait: u64,
    /// The settings' generation this state belongs to.
    generation: u64,
    /// Shedding in this interval.
    pub(crate) overloaded: bool,
    /// The wait queue was empty at some point of this interval.
    pub(crate) drained: bool,
}

impl Default for Codel {
    fn default() -> Self {
        Self { interval_end: 0, generation: 0, min_wait: u64::MAX, overloaded: false, drained: false }
    }
}

impl Codel {
    /// A sub-task left the queue after waiting `wait_ns`.
    #[inline]
    pub(crate) fn left(&mut self, wait_ns: u64) {
        self.min_wait = self.min_wait.min(wait_ns);
    }

    /// Moves to the next interval if this one is over, deciding whether the domain is overloaded
    /// in it; `oldest_wait_ns` is how long the oldest sub-task still waiting has waited (0: none
    /// waits).
    pub(crate) fn tick(&mut self, now: u64, oldest_wait_ns: u64, s: &DomainShedding) {
        let generation = s.generation.load(Ordering::Acquire);
        if generation != self.generation {
            // Shedding was turned on again or changed: judge afresh.
            *self = Self { generation, ..Self::default() };
        }
        if self.interval_end == 0 {
            self.interval_end = now + s.interval_ns();
            return;
        }
        if now < self.interval_end {
            return;
        }
        let target = s.target_ns();
        let above = if self.min_wait == u64::MAX { oldest_wait_ns > target } else { self.min_wait > target };
        self.overloaded = above || (self.overloaded && !self.drained);
        self.min_wait = u64::MAX;
        self.drained = false;
        self.interval_end = now + s.interval_ns();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn overloaded_only_when_the_shortest_wait_stays_above_the_target_for_an_interval() {
        let s = DomainShedding::new(&Shedding::default()); // 5 ms, 100 ms
        let mut c = Codel::default();
        c.tick(0, 0, &s);
        // A burst: waits of 20 ms, but one left after 1 ms: not overloaded.
        c.left(20 * MS);
        c.left(MS);
        c.tick(100 * MS, 0, &s);
        assert!(!c.overloaded);
        // Every wait above the target for the whole interval: overloaded for the next.
        c.left(8 * MS);
        c.left(30 * MS);
        c.tick(150 * MS, 0, &s);
        assert!(!c.overloaded, "the interval is not over yet");
        c.tick(200 * MS, 0, &s);
        assert!(c.overloaded);
        // Shedding keeps the waits at the target: overloaded while the queue never drains.
        c.left(4 * MS);
        c.tick(300 * MS, 3 * MS, &s);
        assert!(c.overloaded, "a standing queue");
        c.left(4 * MS);
        c.drained = true;
        c.tick(400 * MS, 0, &s);
        assert!(!c.overloaded, "it drained");
        // Nothing left the queue, and its oldest has waited 3 ms: not overloaded.
        c.tick(500 * MS, 3 * MS, &s);
        assert!(!c.overloaded);
        // Nothing left, and the oldest has waited 50 ms: stuck, overloaded.
        c.tick(600 * MS, 50 * MS, &s);
        assert!(c.overloaded);
        assert!(Shedding { target: Duration::ZERO, ..Shedding::default() }.validate().unwrap_err().contains("target"));
        assert_eq!(s.get(), Shedding::default());
    }
}
