//! The domain stage's timers: a deferred attempt's timeout (it is abandoned and the sub-task fails
//! over) and the hedge of a slow one (another attempt is sent to another agent).

use super::{Choice, choose};
use crate::breaker::Permit;
use crate::stages::agent::msg::{AttemptInfo, Outcome};
use crate::stages::domain::msg::{Msg, NOT_PARKED, Pending};
use crate::stages::worker::Worker;
use crate::sync::Ordering;
use crate::task::FailureKind;
use std::cmp::Reverse;

/// A timer key: an attempt's slot and generation, or (with `HEDGE`) a parked sub-task's index
/// and generation. A key keeps a generation's low 31 bits (bit 63 is `HEDGE`): a timer lives
/// for a timeout, far fewer generations of its slot or entry than 2^31.
const HEDGE: u64 = 1 << 63;

/// A generation as a timer key keeps it.
const GEN31: u32 = 0x7fff_ffff;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The timeout of the deferred attempt in slot (`.0`) at generation (`.1`, its low 31 bits).
    Attempt(u32, u32),
    /// The hedge of the sub-task parked at entry (`.0`) at generation (`.1`, its low 31 bits).
    Hedge(u32, u32),
}

impl Timer {
    #[inline]
    pub(crate) fn key(self) -> u64 {
        match self {
            Timer::Attempt(slot, g) => (u64::from(g & GEN31) << 32) | u64::from(slot),
            Timer::Hedge(p, g) => HEDGE | (u64::from(g & GEN31) << 32) | u64::from(p),
        }
    }

    #[inline]
    pub(crate) fn of(key: u64) -> Self {
        let (idx, g) = (key as u32, ((key >> 32) as u32) & GEN31);
        if key & HEDGE != 0 { Timer::Hedge(idx, g) } else { Timer::Attempt(idx, g) }
    }
}

impl Worker {
    /// The hedge timer of parked sub-task `p` is due: sends one more attempt to another agent
    /// if its attempt in flight has been out a hedge delay and its budget allows.
    pub(crate) fn hedge(&mut self, p: u32) {
        let sub = *self.parked.at(p);
        let m = sub.m;
        let d = usize::from(m.domain);
        let Some(h) = self.sh.hedges[d] else { return };
        if sub.n_live == 0
            || u32::from(sub.hedges) >= h.max_extra
            || u32::from(m.attempt) >= self.sh.max_attempts[d].load(Ordering::Relaxed)
        {
            return;
        }
        let Some(delay) = self.hedge_delay(d) else { return };
        // The newest attempt in flight must have been out a full delay (a failover may have
        // replaced the attempt this timer was set for).
        let newest = sub.live[..usize::from(sub.n_live)]
            .iter()
            .map(|&s| self.pending_attempts.get(s).info.started_ns)
            .max()
            .unwrap_or(0);
        if self.now < newest.saturating_add(delay) {
            let g = self.parked.generation(p);
            return self.schedule_hedge(d, p, g, newest);
        }
        let (a, permit) = match choose::<false>(
            &self.sh,
            d,
            &self.policy.routing[d],
            &mut self.rr[d],
            &mut self.held,
            m.tried,
            self.now,
        ) {
            Choice::Agent(a, permit) => (a, permit),
            _ => return, // nobody else to ask now
        };
        if !self.withdraw(d) {
            self.sh.agent_breakers[usize::from(a.0)].release(permit);
            self.sh.agents[usize::from(a.0)].bulkhead.release();
            return;
        }
        self.parked.at(p).hedges += 1;
        self.counters().domain[d].hedges.inc();
        let g = self.parked.generation(p);
        self.attempt::<false>(m, a, permit, true);
        // Another hedge later, if allowed and the sub-task still waits (the hedge may have
        // answered at once).
        if u32::from(sub.hedges) + 1 < h.max_extra && self.parked.get(p, g).is_some_and(|s| s.n_live > 0) {
            self.schedule_hedge(d, p, g, self.now);
        }
    }

    /// The attempt was deferred: parks its sub-task (if it is not already) and starts its timer,
    /// and, for a domain that hedges, the timer of a hedge.
    pub(crate) fn deferred(&mut self, mut m: Msg, info: AttemptInfo, slot: u32, g: u32, deadline: u64) {
        self.counters().agent[usize::from(info.agent)].deferred.inc();
        if m.parked == NOT_PARKED {
            m.parked = self.parked.insert(m);
            self.parked.at(m.parked).m = m;
        }
        let p = m.parked;
        let parked_gen = self.parked.generation(p);
        let sub = self.parked.at(p);
        sub.live[usize::from(sub.n_live)] = slot;
        sub.n_live += 1;
        let hedges = sub.hedges;
        *self.pending_attempts.at(slot) = Pending { g, parked: p, parked_gen, info };
        self.timers.push(Reverse((deadline, Timer::Attempt(slot, g).key())));
        if !info.hedge && hedges == 0 {
            self.schedule_hedge(usize::from(m.domain), p, parked_gen, self.now);
        }
    }

    /// Schedules a hedge of parked sub-task `p` just past one hedge delay after `from`, if its
    /// domain hedges and the delay is known: an attempt is hedged once it has been out longer
    /// than the delay, so one that answers at the delay itself (every attempt, when latencies
    /// are all equal, as a simulation's can be) is not.
    pub(crate) fn schedule_hedge(&mut self, d: usize, p: u32, parked_gen: u32, from: u64) {
        if let Some(delay) = self.hedge_delay(d) {
            self.timers
                .push(Reverse((from.saturating_add(delay).saturating_add(1), Timer::Hedge(p, parked_gen).key())));
        }
    }

    /// Domain `d`'s hedge delay now, in nanoseconds (`None`: it does not hedge, or its
    /// percentile is not known yet).
    pub(crate) fn hedge_delay(&mut self, d: usize) -> Option<u64> {
        let h = self.sh.hedges[d]?;
        match h.delay {
            crate::policy::hedge::HedgeDelay::Fixed(t) => Some(t.as_nanos().min(u128::from(u64::MAX)) as u64),
            crate::policy::hedge::HedgeDelay::Percentile(p) => self.windows[d].as_mut()?.percentile(p, h.min_samples),
        }
    }

    /// Fires the timers that are due: abandons unanswered attempts, sends hedges.
    pub(crate) fn fire_timers(&mut self) -> usize {
        let mut n = 0;
        while let Some(&Reverse((due, key))) = self.timers.peek() {
            if due > self.now {
                break;
            }
            self.timers.pop();
            n += 1;
            match Timer::of(key) {
                Timer::Hedge(p, g31) => {
                    if self.parked.holds(p, g31) {
                        self.hedge(p);
                    }
                }
                Timer::Attempt(slot, g31) => self.expire(slot, g31),
            }
        }
        n
    }

    /// The timer of the attempt in `slot` whose generation's low 31 bits are `g31` is due:
    /// abandons it unless its answer came first.
    fn expire(&mut self, slot: u32, g31: u32) {
        let pa = self.pending_attempts.get(slot);
        if pa.g & GEN31 != g31 || pa.parked == NOT_PARKED {
            return; // answered, or its sub-task ended and let it go
        }
        if !self.hub.abandon(slot, pa.g) {
            return; // the answer has been claimed: it is on its way
        }
        // The slot waits for its handle to be completed or dropped (then it is retired).
        self.pending_attempts.at(slot).parked = NOT_PARKED;
        self.counters().agent[usize::from(pa.info.agent)].abandoned.inc();
        let out = Outcome::failed(FailureKind::Abandoned, 0, self.now.saturating_sub(pa.info.started_ns));
        if let Some(sub) = self.parked.get(pa.parked, pa.parked_gen) {
            sub.remove_live(slot);
            self.on_parked_answer(pa.parked, pa.info, out, Vec::new());
        }
    }

    /// Lets go of every attempt of parked sub-task `p` still in flight (it has ended): each is
    /// abandoned and its breaker permit released, unless its answer has been claimed (then the
    /// answer, when it comes, is reported to the agent's breaker and dropped).
    pub(crate) fn let_go(&mut self, p: u32) {
        let sub = self.parked.remove(p);
        for &slot in &sub.live[..usize::from(sub.n_live)] {
            let pa = self.pending_attempts.at(slot);
            pa.parked = NOT_PARKED;
            if self.hub.abandon(slot, pa.g) {
                let info = pa.info;
                pa.info.permit = Permit::Denied;
                self.sh.agent_breakers[usize::from(info.agent)].release(info.permit);
                self.counters().agent[usize::from(info.agent)].cancelled.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_key_keeps_what_it_is_for_at_every_generation() {
        for g in [1, 7, GEN31, 1 << 31, (1 << 31) + 5, u32::MAX] {
            for idx in [0, 1, 4_095, u32::MAX] {
                // An attempt's key never reads as a hedge's, whatever its generation.
                assert_eq!(Timer::of(Timer::Attempt(idx, g).key()), Timer::Attempt(idx, g & GEN31), "{idx} {g}");
                assert_eq!(Timer::of(Timer::Hedge(idx, g).key()), Timer::Hedge(idx, g & GEN31), "{idx} {g}");
            }
        }
    }
}
