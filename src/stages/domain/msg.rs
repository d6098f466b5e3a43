//! The domain stage's messages and state: a sub-task ([`Msg`]) on its way through the domain, and
//! the table of sub-tasks parked while their deferred attempts are out.

use crate::breaker::Permit;
use crate::stages::agent::msg::AttemptInfo;
use crate::task::{Reason, Ticket};

/// `Msg::parked` of a sub-task that is not parked.
pub(crate) const NOT_PARKED: u32 = u32::MAX;

/// One sub-task (a task's share in one domain) on its way through the domain stage. Small and
/// `Copy`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msg {
    pub(crate) ticket: Ticket,
    pub(crate) domain: u16,
    /// Attempts sent so far (failovers and hedges included).
    pub(crate) attempt: u8,
    /// The domain breaker's permit for the sub-task (`Denied` until acquired).
    pub(crate) domain_permit: Permit,
    /// Outcome of the sub-task, on its way to the join.
    pub(crate) reason: Reason,
    /// Agents of the domain already tried (bit = the agent's position in its domain).
    pub(crate) tried: u64,
    /// The successful attempt's value.
    pub(crate) value: u64,
    /// When the sub-task started (for the domain timeout).
    pub(crate) started_ns: u64,
    /// Its entry in the table of parked sub-tasks, or `NOT_PARKED`.
    pub(crate) parked: u32,
    /// When it began waiting for an agent with room (0: it does not wait).
    pub(crate) waiting_since: u64,
    /// The domain the task asked for (the one whose alternates a failed sub-task goes to).
    pub(crate) origin: u16,
    /// Alternates of `origin` passed so far (0: it runs in `origin`).
    pub(crate) reroutes: u8,
}

impl Msg {
    pub(crate) fn new(ticket: Ticket, domain: u16) -> Self {
        Self {
            ticket,
            domain,
            attempt: 0,
            domain_permit: Permit::Denied,
            reason: Reason::None,
            tried: 0,
            value: 0,
            started_ns: 0,
            parked: NOT_PARKED,
            waiting_since: 0,
            origin: domain,
            reroutes: 0,
        }
    }
}

/// Most attempts of one sub-task in flight at once (the first and its hedges).
pub(crate) const MAX_LIVE: usize = 1 + crate::policy::hedge::MAX_HEDGES as usize;

/// A parked sub-task: its state, and its attempts in flight (attempt slots).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sub {
    pub(crate) m: Msg,
    pub(crate) live: [u32; MAX_LIVE],
    pub(crate) n_live: u8,
    pub(crate) hedges: u8,
}

impl Sub {
    pub(crate) fn remove_live(&mut self, slot: u32) {
        let n = usize::from(self.n_live);
        if let Some(i) = self.live[..n].iter().position(|&s| s == slot) {
            self.live[i] = self.live[n - 1];
            self.n_live -= 1;
        }
    }
}

/// The parked sub-tasks, by index, with a generation per entry so that a stale reference (an
/// attempt or a timer that outlived its sub-task) is recognised.
pub(crate) struct ParkedTable {
    entries: Vec<(u32, Option<Sub>)>,
    free: Vec<u32>,
}

impl ParkedTable {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n), free: Vec::with_capacity(n) }
    }

    pub(crate) fn insert(&mut self, m: Msg) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push((1, None));
                (self.entries.len() - 1) as u32
            }
        };
        self.entries[idx as usize].1 = Some(Sub { m, live: [0; MAX_LIVE], n_live: 0, hedges: 0 });
        idx
    }

    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.entries[idx as usize].0
    }

    pub(crate) fn get(&mut self, idx: u32, generation: u32) -> Option<&mut Sub> {
        let e = self.entries.get_mut(idx as usize)?;
        if e.0 == generation { e.1.as_mut() } else { None }
    }

    /// Whether entry `idx` holds a sub-task whose generation's low 31 bits are `gen31` (the
    /// form a hedge timer keeps).
    pub(crate) fn holds(&self, idx: u32, gen31: u32) -> bool {
        self.entries.get(idx as usize).is_some_and(|e| e.1.is_some() && (e.0 & 0x7fff_ffff) == gen31)
    }

    pub(crate) fn at(&mut self, idx: u32) -> &mut Sub {
        self.entries[idx as usize].1.as_mut().expect("a parked sub-task")
    }

    pub(crate) fn remove(&mut self, idx: u32) -> Sub {
        let e = &mut self.entries[idx as usize];
        let sub = e.1.take().expect("a parked sub-task");
        e.0 = e.0.wrapping_add(1).max(1);
        self.free.push(idx);
        sub
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Sub> + '_ {
        self.entries.iter_mut().filter_map(|e| e.1.take())
    }
}

/// What the worker remembers of a deferred attempt, by attempt slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    /// The slot's generation while this attempt holds it.
    pub(crate) g: u32,
    /// The parked sub-task it belongs to and that entry's generation; `NOT_PARKED` once the
    /// sub-task no longer waits for it.
    pub(crate) parked: u32,
    pub(crate) parked_gen: u32,
    pub(crate) info: AttemptInfo,
}

/// The worker's [`Pending`] records, by attempt slot, grown as slots are first used (the hub
/// makes its slots the same way): a slot never used reads as a record of no attempt.
pub(crate) struct PendingTable {
    items: Vec<Pending>,
    /// The most slots there are (the hub's capacity).
    cap: usize,
}

impl PendingTable {
    /// Records grow by this many slots at a time.
    const STEP: usize = 64;
    const NONE: Pending = Pending {
        g: 0,
        parked: NOT_PARKED,
        parked_gen: 0,
        info: AttemptInfo { agent: 0, permit: Permit::Denied, started_ns: 0, number: 0, hedge: false },
    };

    pub(crate) fn new(cap: usize) -> Self {
        Self { items: Vec::new(), cap }
    }

    /// The record of `slot` (a copy).
    #[inline]
    pub(crate) fn get(&self, slot: u32) -> Pending {
        self.items.get(slot as usize).copied().unwrap_or(Self::NONE)
    }

    /// The record of `slot`, to write.
    #[inline]
    pub(crate) fn at(&mut self, slot: u32) -> &mut Pending {
        let i = slot as usize;
        if i >= self.items.len() {
            self.grow(i);
        }
        &mut self.items[i]
    }

    #[cold]
    fn grow(&mut self, i: usize) {
        let len = ((i / Self::STEP + 1) * Self::STEP).min(self.cap).max(i + 1);
        self.items.resize(len, Self::NONE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_records_grow_as_slots_are_first_written_and_read_as_none_before() {
        let mut t = PendingTable::new(100);
        assert_eq!(t.get(99).parked, NOT_PARKED);
        assert_eq!(t.get(1_000).g, 0, "beyond the capacity too: a record of no attempt");
        t.at(70).g = 7;
        assert_eq!(t.items.len(), 100, "grown by a step, capped at the capacity");
        assert_eq!((t.get(70).g, t.get(69).g, t.get(69).parked), (7, 0, NOT_PARKED));
        t.at(3).parked = 5;
        assert_eq!(t.get(3).parked, 5);
        assert_eq!(t.items.len(), 100);
        let mut t = PendingTable::new(1_000);
        t.at(0).g = 1;
        assert_eq!(t.items.len(), PendingTable::STEP);
    }
}
