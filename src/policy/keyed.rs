//! Keyed rate limits: a GCRA bucket per key (a tenant, a client), with quotas by class from the
//! configuration and a default quota, in a table whose memory is fixed at the start whatever the
//! number of distinct keys.
//!
//! The table is split into stripes, each a small open-addressing table (linear probing, deletion
//! by backward shift) behind a mutex of its own, so that the same key is always judged in one
//! place and a hot key is exact across workers, while different keys rarely meet. A lookup or an
//! insertion holds the stripe's lock for a few dozen instructions and allocates nothing.
//!
//! Eviction: when a stripe is full, a CLOCK hand walks its slots for a key that is idle, one whose
//! bucket is full again (its theoretical arrival time is not after now). Forgetting such a key is
//! exact: seen again, it starts with a full bucket, which is what it had. A key whose bucket is
//! not yet full is never evicted, so no key can exceed its quota by being forgotten; when every
//! key of a stripe is active, a new key is refused (`RateLimited`) and counted in
//! `KeyedStats::table_full`: the table's capacity bounds the keys active at once (about the rate
//! of new keys times a quota's interval).

use crate::policy::gcra;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crossbeam_utils::CachePadded;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The hash of a key given as a name (a tenant, a client address): what C and Python callers
/// pass as a task's key. Stable across runs and builds (FNV-1a, then a mix); never 0, which
/// means "no key".
pub fn key_of(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    crate::sim::splitmix64(h).max(1)
}

/// A key in the configuration: a 64-bit value, or a name hashed with [`key_of`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// The key itself (not 0).
    Id(u64),
    /// A name, hashed with [`key_of`].
    Name(String),
}

impl Key {
    /// The 64-bit key.
    pub fn value(&self) -> u64 {
        match self {
            Self::Id(v) => *v,
            Self::Name(n) => key_of(n),
        }
    }
}

/// A named class of keys and their quota.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaClass {
    /// Its name, in stats and metrics (keys are never named there).
    pub name: String,
    /// Tasks per second each key of the class may start, sustained (0: unlimited).
    pub per_s: f64,
    /// Tasks a key may start at once (at least 1).
    #[serde(default = "one")]
    pub burst: f64,
    /// Its keys.
    #[serde(default)]
    pub keys: Vec<Key>,
}

fn one() -> f64 {
    1.0
}

/// Keyed rate limits ([`EngineConfig::keyed_limits`](crate::EngineConfig::keyed_limits),
/// `[engine.keyed_limits]` in TOML, [`Engine::set_keyed_limits`](crate::Engine::set_keyed_limits)
/// to change the quotas while tasks run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyedLimits {
    /// Keys tracked at once (fixed when the engine starts; about 36 bytes each). The table holds
    /// up to a tenth more, as room for the keys' uneven spread over its stripes.
    pub capacity: usize,
    /// The quota of a key in no class: tasks per second (0: unlimited) ...
    pub default_per_s: f64,
    /// ... and burst (at least 1).
    pub default_burst: f64,
    /// Classes of keys with quotas of their own.
    pub classes: Vec<QuotaClass>,
}

impl Default for KeyedLimits {
    fn default() -> Self {
        Self { capacity: 65_536, default_per_s: 0.0, default_burst: 1.0, classes: Vec::new() }
    }
}

/// The largest capacity.
pub const MAX_KEYED_CAPACITY: usize = 1 << 26;

/// The smallest non-zero quota: one task a day.
pub const MIN_PER_S: f64 = 1.0 / 86_400.0;

impl KeyedLimits {
    /// Checks the settings, naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_KEYED_CAPACITY).contains(&self.capacity) {
            return Err(format!("keyed_limits.capacity must be 1 to {MAX_KEYED_CAPACITY}, got {}", self.capacity));
        }
        let quota = |what: &str, per_s: f64, burst: f64| {
            if !(per_s.is_finite() && (per_s == 0.0 || per_s >= MIN_PER_S)) {
                return Err(format!(
                    "{what}: per_s must be 0 (unlimited) or at least {MIN_PER_S} (one a day), got {per_s}"
                ));
            }
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(format!("{what}: burst must be >= 1, got {burst}"));
            }
            Ok(())
        };
        quota("keyed_limits default", self.default_per_s, self.default_burst)?;
        if self.classes.len() > 1024 {
            return Err(format!("keyed_limits has {} classes; at most 1,024", self.classes.len()));
        }
        let mut seen = HashMap::new();
        for c in &self.classes {
            quota(&format!("keyed_limits class {:?}", c.name), c.per_s, c.burst)?;
            for k in &c.keys {
                if k.value() == 0 {
                    return Err(format!("keyed_limits class {:?}: key 0 means no key", c.name));
                }
                if let Some(other) = seen.insert(k.value(), &c.name) {
                    return Err(format!("keyed_limits: key {k:?} is in classes {other:?} and {:?}", c.name));
                }
            }
        }
        Ok(())
    }
}

/// A quota as the buckets use it: nanoseconds between tasks (0: unlimited) and the tolerance.
#[derive(Clone, Copy)]
struct Gcra {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Gcra {
    fn of(per_s: f64, burst: f64) -> Self {
        let (interval_ns, tolerance_ns) = gcra::params(per_s, burst);
        Self { interval_ns, tolerance_ns }
    }
}

/// The quotas in force: class 0 is the default.
struct Quotas {
    gcra: Vec<Gcra>,
    class_of: HashMap<u64, u16>,
}

/// Per class: tasks admitted and refused.
#[derive(Default)]
struct ClassCounts {
    admitted: AtomicU64,
    limited: AtomicU64,
}

/// What the keyed limiter counted, per quota class.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KeyedStats {
    /// Keys tracked now.
    pub tracked: u64,
    /// Keys that can be tracked at once.
    pub capacity: u64,
    /// Idle keys forgotten to make room.
    pub evicted: u64,
    /// New keys refused because every tracked key was active.
    pub table_full: u64,
    /// Per class (the default first, named "default"): (name, admitted, refused).
    pub classes: Vec<(String, u64, u64)>,
}

const EMPTY: u64 = 0;

/// One stripe: parallel arrays of key, theoretical arrival time and class, a power of two long.
struct Stripe {
    keys: Box<[u64]>,
    tats: Box<[u64]>,
    classes: Box<[u16]>,
    len: usize,
    max: usize,
    hand: usize,
}

impl Stripe {
    fn new(max: usize) -> Self {
        let slots = (max * 2).next_power_of_two().max(4);
        Self {
            keys: vec![EMPTY; slots].into(),
            tats: vec![0; slots].into(),
            classes: vec![0; slots].into(),
            len: 0,
            max,
            hand: 0,
        }
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        (h as usize) & (self.keys.len() - 1)
    }

    fn find(&self, key: u64, h: u64) -> Option<usize> {
        let mask = self.keys.len() - 1;
        let mut i = self.home(h);
        loop {
            match self.keys[i] {
                EMPTY => return None,
                k if k == key => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn insert(&mut self, key: u64, h: u64, tat: u64, class: u16) {
        let mask = self.keys.len() - 1;
        let mut i = self.home(h);
        while self.keys[i] != EMPTY {
            i = (i + 1) & mask;
        }
        (self.keys[i], self.tats[i], self.classes[i]) = (key, tat, class);
        self.len += 1;
    }

    /// Removes slot `i`, shifting back the entries of its probe run (no tombstones).
    fn remove(&mut self, mut i: usize) {
        let mask = self.keys.len() - 1;
        self.keys[i] = EMPTY;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.keys[j] == EMPTY {
                return;
            }
            let home = self.home(mix(self.keys[j]));
            // Move j back to i unless its home lies cyclically in (i, j].
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                (self.keys[i], self.tats[i], self.classes[i]) = (self.keys[j], self.tats[j], self.classes[j]);
                self.keys[j] = EMPTY;
                i = j;
            }
        }
    }

    /// Walks the CLOCK hand for an idle key (bucket full again at `now`) and forgets it.
    fn evict_idle(&mut self, now: u64, quotas: &Quotas) -> bool {
        for _ in 0..self.keys.len() {
            let i = self.hand;
            self.hand = (self.hand + 1) & (self.keys.len() - 1);
            if self.keys[i] == EMPTY {
                continue;
            }
            let g = quotas
                .gcra
                .get(usize::from(self.classes[i]))
                .copied()
                .unwrap_or(Gcra { interval_ns: 0, tolerance_ns: 0 });
            // Idle: the bucket holds its whole burst again.
            if self.tats[i] <= now || g.interval_ns == 0 {
                self.remove(i);
                return true;
            }
        }
        false
    }
}

#[inline]
fn mix(key: u64) -> u64 {
    crate::sim::splitmix64(key)
}

/// Why a keyed check refused a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key is over its quota.
    Limited,
    /// Every key of the stripe was active: a new key cannot be tracked.
    TableFull,
}

/// The keyed limiter; see the module documentation.
pub struct KeyedLimiter {
    stripes: Box<[CachePadded<Mutex<Stripe>>]>,
    quotas: crate::sync::Snapshot<Quotas>,
    /// Per class index (the configuration's classes after the default), up to 1,025.
    counts: Box<[ClassCounts]>,
    /// The settings now.
    current: Mutex<KeyedLimits>,
    evicted: AtomicU64,
    table_full: AtomicU64,
    capacity: usize,
}

impl KeyedLimiter {
    /// A limiter with `limits` (which must be valid), its table sized for `limits.capacity` keys.
    pub fn new(limits: &KeyedLimits) -> Self {
        // Stripes of at least 256 keys (up to 64 stripes), each with a tenth more room than its
        // share: keys hash unevenly over the stripes, and a stripe's share alone would refuse
        // new keys well before the table held `capacity` (a stripe of 2 keys of 64 such).
        let stripes = (limits.capacity / 256).clamp(1, 64).next_power_of_two().min(64);
        let share = limits.capacity.div_ceil(stripes);
        let per = share + share / 10;
        Self {
            stripes: (0..stripes).map(|_| CachePadded::new(Mutex::new(Stripe::new(per)))).collect(),
            quotas: crate::sync::Snapshot::new(Self::quotas(limits)),
            counts: (0..=1024).map(|_| ClassCounts::default()).collect(),
            current: Mutex::new(limits.clone()),
            evicted: AtomicU64::new(0),
            table_full: AtomicU64::new(0),
            capacity: stripes * per,
        }
    }

    fn quotas(l: &KeyedLimits) -> Quotas {
        let mut gcra = vec![Gcra::of(l.default_per_s, l.default_burst)];
        let mut class_of = HashMap::new();
        for (i, c) in l.classes.iter().enumerate() {
            gcra.push(Gcra::of(c.per_s, c.burst));
            for k in &c.keys {
                class_of.insert(k.value(), (i + 1) as u16);
            }
        }
        Quotas { gcra, class_of }
    }

    fn names(l: &KeyedLimits) -> Vec<String> {
        std::iter::once("default".to_string()).chain(l.classes.iter().map(|c| c.name.clone())).collect()
    }

    /// Changes the quotas and classes while tasks run (the capacity stays as it started): a
    /// tracked key keeps its bucket and is judged by its class's new quota. A class's counts
    /// follow its name to its new place; a new class starts at 0 (a task counted while the
    /// change is made may land in the class that had its place).
    pub fn set(&self, limits: &KeyedLimits) {
        let mut current = lock(&self.current);
        let (old, new) = (Self::names(&current), Self::names(limits));
        let load = |i: usize| {
            (self.counts[i].admitted.load(Ordering::Relaxed), self.counts[i].limited.load(Ordering::Relaxed))
        };
        let kept: Vec<(u64, u64)> = new.iter().map(|n| old.iter().position(|o| o == n).map_or((0, 0), load)).collect();
        for (i, c) in self.counts.iter().enumerate().take(old.len().max(new.len())) {
            let (admitted, limited) = kept.get(i).copied().unwrap_or((0, 0));
            c.admitted.store(admitted, Ordering::Relaxed);
            c.limited.store(limited, Ordering::Relaxed);
        }
        *current = KeyedLimits { capacity: current.capacity, ..limits.clone() };
        self.quotas.store(Self::quotas(limits));
    }

    /// Whether a task of `key` (not 0) may start at `now`; if so, it is counted. A refusal is
    /// checked again at `fresh()` (a caller's `now` may be stale, as with the global limiter).
    pub(crate) fn allow(&self, key: u64, now: u64, fresh: impl FnOnce() -> u64) -> Result<(), Refused> {
        self.quotas.with(|q| {
            let class = if q.class_of.is_empty() { 0 } else { q.class_of.get(&key).copied().unwrap_or(0) };
            let g = q.gcra[usize::from(class)];
            let counts = &self.counts[usize::from(class)];
            if g.interval_ns == 0 {
                counts.admitted.fetch_add(1, Ordering::Relaxed);
                return Ok(()); // unlimited: nothing to track
            }
            // A refusal is judged again on a fresh reading: a stale `now` may make a key look
            // over its quota, or every key of a stripe look active.
            let r = match self.check(key, class, g, now, q) {
                Err(_) => self.check(key, class, g, fresh(), q),
                ok => ok,
            };
            let c = if r.is_ok() { &counts.admitted } else { &counts.limited };
            c.fetch_add(1, Ordering::Relaxed);
            if r == Err(Refused::TableFull) {
                self.table_full.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
    }

    fn check(&self, key: u64, class: u16, g: Gcra, now: u64, q: &Quotas) -> Result<(), Refused> {
        let h = mix(key);
        let mut s = lock(&self.stripes[(h >> 58) as usize % self.stripes.len()]);
        match s.find(key, h) {
            Some(i) => {
                let start = s.tats[i].max(now);
                if start - now > g.tolerance_ns {
                    return Err(Refused::Limited);
                }
                s.tats[i] = start.saturating_add(g.interval_ns);
                s.classes[i] = class;
                Ok(())
            }
            None => {
                if s.len >= s.max {
                    if !s.evict_idle(now, q) {
                        return Err(Refused::TableFull);
                    }
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                // A new key (or one forgotten while idle) starts with a full bucket.
                s.insert(key, h, now.saturating_add(g.interval_ns), class);
                Ok(())
            }
        }
    }

    /// Whether a task of `key` (not 0) may start at `now` (nanoseconds, any origin); if so, it
    /// is counted. The engine's own check; public so that its cost can be measured beside
    /// governor's keyed limiter (`benches/per_call.rs`).
    pub fn allow_key(&self, key: u64, now: u64) -> bool {
        self.allow(key, now, || now).is_ok()
    }

    /// The settings now (the capacity as it started).
    pub fn limits(&self) -> KeyedLimits {
        lock(&self.current).clone()
    }

    /// What it counted.
    pub fn stats(&self) -> KeyedStats {
        let names = Self::names(&lock(&self.current));
        KeyedStats {
            tracked: self.stripes.iter().map(|s| lock(s).len as u64).sum(),
            capacity: self.capacity as u64,
            evicted: self.evicted.load(Ordering::Relaxed),
            table_full: self.table_full.load(Ordering::Relaxed),
            classes: names
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    (n, self.counts[i].admitted.load(Ordering::Relaxed), self.counts[i].limited.load(Ordering::Relaxed))
                })
                .collect(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn limits(capacity: usize, per_s: f64, burst: f64) -> KeyedLimits {
        KeyedLimits { capacity, default_per_s: per_s, default_burst: burst, classes: Vec::new() }
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let l = KeyedLimiter::new(&limits(16, 10.0, 2.0)); // 100 ms apart, bursts of 2
        let now = 1_000 * MS;
        assert_eq!(l.allow(7, now, || now), Ok(()));
        assert_eq!(l.allow(7, now, || now), Ok(()));
        assert_eq!(l.allow(7, now, || now), Err(Refused::Limited));
        assert_eq!(l.allow(8, now, || now), Ok(()), "another key is not affected");
        assert_eq!(l.allow(7, now + 100 * MS, || now), Ok(()));
        // A stale reading refuses; the fresh one admits.
        assert_eq!(l.allow(7, now + 100 * MS, || now + 200 * MS), Ok(()));
        let s = l.stats();
        assert_eq!((s.tracked, s.classes[0].1, s.classes[0].2), (2, 5, 1));
    }

    #[test]
    fn a_full_table_forgets_idle_keys_only() {
        let l = KeyedLimiter::new(&limits(1, 1.0, 1.0)); // one key at once, 1 s apart
        let t = 10_000 * MS;
        assert_eq!(l.allow(1, t, || t), Ok(()));
        // Key 1 is active for a second: key 2 finds no room.
        assert_eq!(l.allow(2, t, || t), Err(Refused::TableFull));
        // A second later key 1 is idle: forgotten for key 2.
        assert_eq!(l.allow(2, t + 1_000 * MS, || t), Ok(()));
        let s = l.stats();
        assert_eq!((s.tracked, s.evicted, s.table_full), (1, 1, 1));
        // Key 1, seen again while key 2 is active, is refused: forgetting never lets it through.
        assert_eq!(l.allow(1, t + 1_000 * MS, || t + 1_000 * MS), Err(Refused::TableFull));
    }

    #[test]
    fn the_table_takes_about_its_capacity_of_active_keys() {
        for capacity in [100usize, 4096, 65_536] {
            let l = KeyedLimiter::new(&limits(capacity, 1.0, 1.0)); // each key active for 1 s
            let n = capacity * 9 / 10;
            let refused = (1..=n as u64).filter(|&k| l.allow(k * 0x9e37_79b9, 5, || 5).is_err()).count();
            assert_eq!(refused, 0, "capacity {capacity}: {refused} of {n} active keys refused");
            assert!(l.stats().capacity >= capacity as u64);
        }
    }

    #[test]
    fn classes_have_their_quotas_and_change_live() {
        let mut cfg = limits(64, 1.0, 1.0);
        cfg.classes.push(QuotaClass {
            name: "gold".into(),
            per_s: 1000.0,
            burst: 10.0,
            keys: vec![Key::Name("acme".into())],
        });
        assert!(cfg.validate().is_ok());
        let l = KeyedLimiter::new(&cfg);
        let (acme, t) = (key_of("acme"), 5_000 * MS);
        assert_eq!((0..20).filter(|_| l.allow(acme, t, || t).is_ok()).count(), 10);
        assert_eq!((0..20).filter(|_| l.allow(99, t, || t).is_ok()).count(), 1);
        cfg.classes[0].burst = 20.0;
        l.set(&cfg);
        assert_eq!((0..40).filter(|_| l.allow(acme, t + 20 * MS, || t + 20 * MS).is_ok()).count(), 20);
        let s = l.stats();
        assert_eq!(s.classes[1].0, "gold");
        assert_eq!((s.classes[1].1, s.classes[0].1), (30, 1));
    }

    #[test]
    fn a_class_keeps_its_counts_when_the_classes_change() {
        let class =
            |name: &str, key: u64| QuotaClass { name: name.into(), per_s: 0.0, burst: 1.0, keys: vec![Key::Id(key)] };
        let mut cfg = limits(64, 0.0, 1.0);
        cfg.classes = vec![class("gold", 7), class("silver", 8)];
        let l = KeyedLimiter::new(&cfg);
        let t = 5_000 * MS;
        (0..3).for_each(|_| assert!(l.allow(7, t, || t).is_ok()));
        (0..5).for_each(|_| assert!(l.allow(8, t, || t).is_ok()));
        // Gold goes, silver moves to gold's place, bronze is new.
        cfg.classes = vec![class("silver", 8), class("bronze", 9)];
        l.set(&cfg);
        let s = l.stats();
        let counts: Vec<(&str, u64)> = s.classes.iter().map(|(n, a, _)| (n.as_str(), *a)).collect();
        assert_eq!(counts, [("default", 0), ("silver", 5), ("bronze", 0)]);
    }

    #[test]
    fn removal_keeps_every_key_findable() {
        // Many keys through a small table, removing at random points: each key present is found.
        let mut s = Stripe::new(8);
        let mut present = Vec::new();
        for k in 1..2_000u64 {
            if s.len == s.max {
                let victim = present.remove((k as usize * 7) % present.len());
                let i = s.find(victim, mix(victim)).expect("present");
                s.remove(i);
            }
            s.insert(k, mix(k), k, 0);
            present.push(k);
            for &p in &present {
                assert!(s.find(p, mix(p)).is_some(), "key {p} lost at step {k}");
            }
        }
    }

    #[test]
    fn settings_are_checked_and_names_hash_stably() {
        assert!(limits(0, 1.0, 1.0).validate().unwrap_err().contains("capacity"));
        assert!(limits(8, -1.0, 1.0).validate().unwrap_err().contains("per_s"));
        let dup = KeyedLimits {
            classes: vec![
                QuotaClass { name: "a".into(), per_s: 1.0, burst: 1.0, keys: vec![Key::Id(5)] },
                QuotaClass { name: "b".into(), per_s: 1.0, burst: 1.0, keys: vec![Key::Id(5)] },
            ],
            ..limits(8, 1.0, 1.0)
        };
        assert!(dup.validate().unwrap_err().contains("classes"));
        assert_eq!(key_of("tenant-1"), key_of("tenant-1"));
        assert_ne!(key_of("tenant-1"), key_of("tenant-2"));
        assert_ne!(key_of(""), 0);
    }
}
