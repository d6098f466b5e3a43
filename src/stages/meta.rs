//! The meta stage: admission (meta breaker and degraded mode, injected meta faults, the rate
//! limiter, the concurrency throttle with priority queuing), decomposition into one sub-task per
//! domain, the join of sub-task outcomes, and the completion.

use crate::breaker::Permit;
use crate::counters::WorkerCounters;
use crate::events::Level;
use crate::policy::admission::Claim;
use crate::sim::{META_FAULT_SALT, fails_below, splitmix64};
use crate::stages::domain::msg::Msg;
use crate::stages::worker::Worker;
use crate::sync::Ordering;
use crate::task::{DomainSet, Reason, Status, Ticket};

impl Worker {
    pub(crate) fn counters(&self) -> &WorkerCounters {
        &self.ctr
    }

    /// Takes up to a batch of tasks from this worker's ingress ring and admits them, while the
    /// worker holds fewer sub-tasks than its capacity (the rest go back for other workers).
    /// The sub-tasks then run one at a time (see `Worker::drain`), or, where nothing is queued
    /// ahead of them, start as their task is admitted (see `decompose`).
    ///
    /// With nothing of its own to take, it steals up to half a batch from the first other
    /// worker with a backlog: a worker that is descheduled (more threads than cores) or busy in a
    /// slow handler does not leave its queued tasks waiting while another worker idles. A busy
    /// worker also takes half a batch from a worker that is stuck (see [`Worker::stuck`]).
    pub(crate) fn ingest(&mut self) -> usize {
        let batch = self.sh.cfg.batch;
        let mut n = self.ingest_from(self.id, batch);
        if n < batch && !self.sh.ingress_overflow.is_empty() {
            n += self.ingest_overflow(batch - n);
        }
        let workers = self.sh.workers.len();
        if workers == 1 {
            return n;
        }
        if n > 0 {
            // Not in a simulation: its driver turns every worker, and a worker it has not yet
            // turned at a new virtual time is not stuck.
            if !self.simulated {
                n += self.relieve_stuck(batch.div_ceil(2));
            }
            return n;
        }
        for k in 1..workers {
            let victim = (self.id + k) % workers;
            if !self.sh.workers[victim].ingress.is_empty() {
                let stolen = self.ingest_from(victim, batch.div_ceil(2));
                if stolen > 0 {
                    return stolen;
                }
            }
        }
        0
    }

    /// Takes up to `max` tasks from the ring of the first other worker that is stuck with a
    /// backlog: tasks do not wait for a descheduled worker's next time slice (milliseconds, with
    /// more threads than cores) while this one runs. One load of each other worker's turn clock
    /// per turn (a line written every 50 us at most).
    pub(crate) fn relieve_stuck(&mut self, max: usize) -> usize {
        let workers = self.sh.workers.len();
        for k in 1..workers {
            let v = (self.id + k) % workers;
            if self.stuck(v) && !self.sh.workers[v].ingress.is_empty() {
                return self.ingest_from(v, max);
            }
        }
        0
    }

    /// Whether worker `v` has not started a turn for [`STALL_NS`](crate::stages::worker::STALL_NS)
    /// (it publishes its turn clock every quarter of that at most): descheduled, inside a long
    /// handler, or asleep.
    #[inline]
    fn stuck(&self, v: usize) -> bool {
        let seen = self.sh.workers[v].turn_ns.load(Ordering::Relaxed);
        self.now.saturating_sub(seen) > crate::stages::worker::STALL_NS
    }

    /// Feeds a completed task that held a throttle permit to the adaptive throttle (out of line:
    /// engines without one pay one test): a task that ran out of time or took longer than the
    /// target from its permit on is a drop.
    #[inline(never)]
    fn adapt(&mut self, status: Status, rtt: u64, in_flight: u64) {
        let Some(adaptive) = &self.sh.adaptive else { return };
        let dropped = status == Status::TimedOut || rtt > adaptive.target_ns();
        if let Some(limit) = adaptive.sample(&mut self.adaptive_batch, dropped, rtt, in_flight) {
            let before = self.sh.admission.max_concurrent.swap(limit, Ordering::Relaxed);
            if before != limit {
                self.sh.settings_changed();
            }
        }
    }

    /// The keyed rate limits' check of the task in slot `idx` (out of line: engines without
    /// keyed limits pay one test).
    #[inline(never)]
    fn keyed_allow(&self, idx: u32) -> bool {
        let Some(keyed) = &self.sh.keyed else { return true };
        // SAFETY: the caller admitted the slot: its request is read-only while it holds the task.
        let key = unsafe { self.sh.slab.req(idx) }.key.get();
        let clock = &self.sh.clock;
        key == 0 || keyed.allow(key, self.now, || clock.now()).is_ok()
    }

    /// Admits up to `max` tasks from worker `from`'s ingress ring, unless another worker holds
    /// it (see [`crate::ingress`]). The tickets are taken first and the ring let go (one store
    /// hands their slots back), then admitted: admitting may run a classifier, an event listener
    /// or a completion callback, and the ring is not held while they run. Tickets that find the
    /// worker at its capacity go to the shared overflow queue, for any worker, and a sleeping
    /// worker is woken to take them.
    fn ingest_from(&mut self, from: usize, max: usize) -> usize {
        let cap = self.sh.cfg.worker_capacity;
        if self.live >= cap {
            return 0;
        }
        let mut taken = std::mem::take(&mut self.taken);
        if let Some(mut rx) = self.sh.workers[from].ingress.try_consumer() {
            while taken.len() < max {
                let Some(t) = rx.pop() else { break };
                taken.push(t);
            }
            rx.release();
        }
        if !taken.is_empty() {
            // Decided after the tickets were taken (acquire): what their submitters changed
            // before they submitted is seen.
            self.lean = self.lean_now();
        }
        // The rate limiter's admissions for the batch's tasks that will be admitted, in one
        // step where it has room (see `RateLimiter::claim`); what is not used goes back after
        // the batch if it can. Not where tasks are often refused before the rate check (keyed
        // limits, injected meta faults): a refused task must not use up the global bucket.
        let admits = taken.len().min(cap - self.live);
        if !self.lean && admits > 1 && self.sh.keyed.is_none() && self.sh.meta_fault_threshold == 0 {
            self.rate_claim = self.sh.rate.claim(self.now, admits as u32);
        }
        // Sub-tasks start as their tasks are admitted (see `decompose`) when nothing is
        // queued ahead of them, when admission does not hold tasks back by count or cost (there
        // the whole batch is admitted first, so that its tasks wait for the throttle in
        // priority order rather than in the order they came), and when the whole batch fits
        // under the worker's capacity whatever its fan-out (otherwise the tickets past it must
        // go to the overflow for other workers before any handler runs, not after).
        self.direct = self.domain_in.is_empty()
            && !self.sh.admission.gated()
            && self.live + taken.len() * self.policy.routing.len() <= cap;
        let mut n = 0;
        for &t in &taken {
            if self.live < cap {
                if self.lean {
                    self.admit::<true>(t);
                } else {
                    self.admit::<false>(t);
                }
                n += 1;
            } else if self.sh.ingress_overflow.push(t).is_err() {
                unreachable!("the ingress overflow holds every task slot");
            }
        }
        self.direct = false;
        if let Some(c) = self.rate_claim.take() {
            let _ = self.sh.rate.unclaim(c);
        }
        if n < taken.len() {
            self.hand_over();
        }
        taken.clear();
        self.taken = taken;
        n
    }

    /// Wakes one sleeping worker for the tickets this one put back in the overflow queue (it is
    /// at its capacity). After a fence, as every publisher of work (see `park`).
    #[cold]
    #[inline(never)]
    fn hand_over(&self) {
        crate::sync::fence(Ordering::SeqCst);
        self.sh.wake_sleeper_after(self.id);
    }

    /// Admits up to `max` tasks from the shared overflow queue (tickets that found every ring
    /// taken or full).
    #[cold]
    #[inline(never)]
    fn ingest_overflow(&mut self, max: usize) -> usize {
        let cap = self.sh.cfg.worker_capacity;
        let mut n = 0;
        while n < max && self.live < cap {
            let Some(t) = self.sh.ingress_overflow.pop() else { break };
            self.admit::<false>(t);
            n += 1;
        }
        if n > 0 {
            // The turn's choice of path, made again after these tickets were taken: their
            // sub-tasks run in this turn's drain with the others.
            self.lean = self.lean_now();
        }
        n
    }

    /// Admits a task taken from a ring: the meta breaker (degraded mode), injected meta faults,
    /// the keyed and global rate limits, the concurrency throttle; then decomposes it. The lean
    /// path (`LEAN`) has none of them on (see `Worker::lean_now`): past its deadline's check,
    /// the task is decomposed.
    fn admit<const LEAN: bool>(&mut self, t: Ticket) {
        if !self.sh.slab.admit(t) {
            return; // completed by a submitter that raced the shutdown
        }
        self.counters().admitted.inc();
        let idx = t.slot();
        let (mut deadline, mut priority, id, domains) = {
            // SAFETY: we admitted the slot: its request is read-only and its run record ours.
            let r = unsafe { self.sh.slab.req(idx) };
            (r.deadline_ns.get(), r.priority.get(), r.id, r.domains.get())
        };
        // SAFETY: as above.
        unsafe { self.sh.slab.run(idx) }.reset();
        // SAFETY: as above: the outcome record is ours until we finish the slot.
        unsafe { self.sh.slab.out(idx) }.reset();
        if domains == 0 {
            if !self.classify(t) {
                return self.complete(t, Reason::Unclassified);
            }
            // SAFETY: as above.
            let r = unsafe { self.sh.slab.req(idx) };
            (deadline, priority) = (r.deadline_ns.get(), r.priority.get());
        }
        if self.now >= deadline {
            return self.complete(t, Reason::Deadline);
        }
        if LEAN {
            return self.decompose::<true>(t);
        }
        let (mut permit, tr) = self.sh.meta_breaker.try_acquire(self.now);
        self.sh.emit_for(Level::Meta, 0, tr, t);
        if permit == Permit::Denied {
            if priority > self.sh.admission.essential_priority.load(Ordering::Relaxed) {
                return self.complete(t, Reason::Degraded);
            }
            // Degraded mode: essential tasks still run, without moving the breaker.
            permit = Permit::Bypass;
            self.counters().degraded_admits.inc();
        }
        // SAFETY: as above.
        unsafe { self.sh.slab.run(idx) }.meta_permit = Some(permit);
        let fault = self.sh.meta_fault_threshold;
        if fault != 0 && fails_below(splitmix64(id ^ META_FAULT_SALT), 0, fault) {
            return self.complete(t, Reason::MetaFault);
        }
        // `self.now` was read at the start of the turn; another worker may have moved the bucket
        // with a newer reading since, so a refusal is checked again on a fresh one.
        // The keyed limits first: a key over its quota must not use up the global bucket that
        // the other keys share.
        if self.sh.keyed.is_some() && !self.keyed_allow(idx) {
            return self.complete(t, Reason::RateLimited);
        }
        let clock = &self.sh.clock;
        if !self.rate_claim.as_mut().is_some_and(Claim::take) && !self.sh.rate.allow_fresh(self.now, || clock.now()) {
            return self.complete(t, Reason::RateLimited);
        }
        // A task does not overtake those waiting at its priority or above on this worker (a
        // cheap one would otherwise pass an expensive one for ever).
        if self.sh.admission.gated() && (self.waiting_ahead(priority) || !self.throttle_acquire(idx)) {
            let q = &mut self.pending[usize::from(priority)];
            if q.len() as u64 >= self.sh.admission.queue_capacity.load(Ordering::Relaxed) {
                return self.complete(t, Reason::Throttled);
            }
            q.push_back(t);
            return;
        }
        self.decompose::<false>(t);
    }

    /// Whether tasks of priority `p` or higher wait for the throttle or the budget here.
    fn waiting_ahead(&self, p: u8) -> bool {
        self.pending[..=usize::from(p)].iter().any(|q| !q.is_empty())
    }

    /// Takes a throttle permit and the task's cost from the budget, where each is on; false
    /// (holding neither) when either is out.
    fn throttle_acquire(&mut self, idx: u32) -> bool {
        let max = self.sh.admission.max_concurrent();
        if max > 0 && self.sh.throttle.fetch_add(1, Ordering::AcqRel) >= max {
            self.sh.throttle.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let cost = if self.sh.admission.max_cost.load(Ordering::Relaxed) == 0 { 0 } else { self.cost_acquire(idx) };
        if cost == u32::MAX {
            if max > 0 {
                self.sh.throttle.fetch_sub(1, Ordering::AcqRel);
            }
            return false;
        }
        // SAFETY: the task is ours (admitted).
        let run = unsafe { self.sh.slab.run(idx) };
        (run.holds_permit, run.permit_ns, run.cost) = (max > 0, self.now, cost);
        true
    }

    /// Takes the task's cost from the budget: its units, or `u32::MAX` when they do not fit
    /// (a task costing more than the whole budget fits when nothing else holds any).
    #[inline(never)]
    fn cost_acquire(&self, idx: u32) -> u32 {
        let a = &self.sh.admission;
        // SAFETY: the task is ours (admitted).
        let score = u64::from(unsafe { self.sh.slab.out(idx) }.complexity.units());
        let cost = score.max(a.min_cost.load(Ordering::Relaxed));
        let max = a.max_cost.load(Ordering::Relaxed);
        let held = self.sh.cost_held.fetch_add(cost, Ordering::AcqRel);
        if held == 0 || held + cost <= max {
            cost as u32
        } else {
            self.sh.cost_held.fetch_sub(cost, Ordering::AcqRel);
            u32::MAX
        }
    }

    /// Admits throttled tasks, highest priority first, while the throttle has room (all of
    /// them once an operator turned the throttle off).
    pub(crate) fn promote_pending(&mut self) -> usize {
        if !self.sh.admission.gated() && self.pending.iter().all(|q| q.is_empty()) {
            return 0;
        }
        let mut n = 0;
        let queue_timeout = self.sh.admission.queue_timeout_ns.load(Ordering::Relaxed);
        for p in 0..self.pending.len() {
            while let Some(&t) = self.pending[p].front() {
                if let Some(reason) = self.expired(t, queue_timeout) {
                    self.pending[p].pop_front();
                    self.complete(t, reason);
                } else if self.throttle_acquire(t.slot()) {
                    self.pending[p].pop_front();
                    self.decompose::<false>(t);
                } else {
                    // The throttle is full: the lower priorities wait on, but not past the queue
                    // timeout (at each queue's front: a queue is mostly in submission order; a
                    // task taken from another worker's backlog behind newer ones is caught when
                    // it reaches the front, never admitted).
                    if queue_timeout != 0 {
                        n += self.expire_pending(p + 1, queue_timeout);
                    }
                    return n;
                }
                n += 1;
            }
        }
        n
    }

    /// Why a waiting task may wait no more: its deadline passed (`Deadline`), or it waited for
    /// the throttle `queue_timeout` ns or more since its submission (`Throttled`; 0: no bound).
    #[inline]
    fn expired(&self, t: Ticket, queue_timeout: u64) -> Option<Reason> {
        // SAFETY: a pending task is admitted by us.
        let req = unsafe { self.sh.slab.req(t.slot()) };
        if self.now >= req.deadline_ns.get() {
            Some(Reason::Deadline)
        } else if queue_timeout != 0 && self.now.saturating_sub(req.submit_ns) >= queue_timeout {
            Some(Reason::Throttled)
        } else {
            None
        }
    }

    /// Completes the waiting tasks at the fronts of the queues of priority `from` and lower that
    /// [`expired`](Self::expired).
    #[inline(never)]
    fn expire_pending(&mut self, from: usize, queue_timeout: u64) -> usize {
        let mut n = 0;
        for p in from..self.pending.len() {
            while let Some(&t) = self.pending[p].front() {
                let Some(reason) = self.expired(t, queue_timeout) else { break };
                self.pending[p].pop_front();
                self.complete(t, reason);
                n += 1;
            }
        }
        n
    }

    /// One sub-task per domain the task needs, into the domain stage, counted first (the task's
    /// fan-out, counted here once rather than per attempt; one domain, the common case, is a
    /// power of two and needs no count). Where the domain queue was empty when the batch's
    /// admissions began (`self.direct`), the sub-tasks start at once, in order, without the
    /// queue's push and pop: the queue's order, for draining it after the batch would have
    /// started these first, and whatever a sub-task queues meanwhile (a reroute) is drained after
    /// the batch, as it was behind them. Outside a batch (`direct` is false) they are queued.
    #[inline(always)] // once per task, from admission
    fn decompose<const LEAN: bool>(&mut self, t: Ticket) {
        // SAFETY: the task is ours (admitted): the worker that admits it writes what the
        // classifier decided, and nothing reads it until its sub-tasks run.
        let req = unsafe { self.sh.slab.req(t.slot()) };
        let domains = DomainSet(req.domains.get());
        let n = if domains.0 != 0 && domains.0 & (domains.0 - 1) == 0 { 1 } else { domains.len() };
        // Counted before any sub-task starts: one may complete the task before the next starts.
        req.fanout.set(n as u8); // at most MAX_DOMAINS (64)
        // SAFETY: as above.
        unsafe { self.sh.slab.run(t.slot()) }.remaining = n;
        self.live += n as usize;
        for d in domains.iter() {
            if self.direct {
                self.start_subtask::<LEAN>(Msg::new(t, d.0));
            } else {
                self.domain_in.push_back(Msg::new(t, d.0));
            }
        }
    }

    /// A sub-task finished: fold its outcome into the task's; complete the task on the last.
    pub(crate) fn join(&mut self, m: Msg) {
        self.live -= 1;
        // SAFETY: the task is ours (admitted, not completed: it has a sub-task in flight).
        let run = unsafe { self.sh.slab.run(m.ticket.slot()) };
        run.remaining -= 1;
        let last = run.remaining == 0;
        // SAFETY: as above: the outcome record is ours until we finish the slot.
        let out = unsafe { self.sh.slab.out(m.ticket.slot()) };
        out.value = out.value.wrapping_add(m.value);
        out.answered.0 |= u64::from(m.reason == Reason::None) << m.domain;
        if m.reason != Reason::None && out.reason == Reason::None {
            out.reason = m.reason;
        }
        if last {
            let reason = out.reason;
            self.complete(m.ticket, reason);
        }
    }

    /// [`complete`](Self::complete), unless the task is no longer this worker's to complete: at
    /// shutdown a task with several sub-tasks is met once per sub-task (in `abort_all`, or as
    /// each one's attempt is refused because the engine stops), and only the first completes it.
    /// The others must not write the outcome record of a slot that its taker may be reading.
    pub(crate) fn complete_if_held(&mut self, t: Ticket, reason: Reason) {
        if self.sh.slab.is_admitted(t) {
            self.complete(t, reason);
        }
    }

    /// Completes a task this worker holds: reports to the meta breaker, releases its throttle
    /// permit, writes the outcome, marks the slot `DONE` and delivers the outcome. Called once
    /// per task (see [`complete_if_held`](Self::complete_if_held) where a task may be met again).
    pub(crate) fn complete(&mut self, t: Ticket, reason: Reason) {
        let idx = t.slot();
        let (submit_ns, id, priority, domains) = {
            // SAFETY: the task is ours (admitted).
            let r = unsafe { self.sh.slab.req(idx) };
            (r.submit_ns, r.id, r.priority.get(), r.domains.get())
        };
        // Read while the task is ours: once `DONE`, a waiter may take it and the slot be reused.
        let waitable = self.sh.slab.is_waitable(idx);
        let status = reason.status();
        let latency = self.now.saturating_sub(submit_ns);
        if status != Status::Ok {
            failed_event(id, t, reason, latency);
        }
        // SAFETY: as above.
        let run = unsafe { self.sh.slab.run(idx) };
        if let Some(p) = run.meta_permit.take() {
            if status == Status::Rejected {
                self.sh.meta_breaker.release(p);
            } else {
                let tr = self.sh.meta_breaker.on_result(p, self.now, latency, status == Status::Ok, self.id);
                self.sh.emit_for(Level::Meta, 0, tr, t);
            }
        }
        if run.cost != 0 {
            self.sh.cost_held.fetch_sub(u64::from(std::mem::take(&mut run.cost)), Ordering::AcqRel);
        }
        if std::mem::take(&mut run.holds_permit) {
            let in_flight = self.sh.throttle.fetch_sub(1, Ordering::AcqRel);
            if self.sh.adaptive.is_some() {
                let rtt = self.now.saturating_sub(run.permit_ns);
                self.adapt(status, rtt, in_flight);
            }
        }
        // SAFETY: we admitted the slot: the outcome record is ours until `complete` (or, if the
        // shutdown sweep claims the task first, never read again: see `Slab::take_into`).
        let c = unsafe { self.sh.slab.out(idx) };
        c.ticket = t;
        c.id = id;
        c.status = status;
        c.reason = reason;
        c.latency_ns = latency;
        c.priority = priority;
        c.domains = DomainSet(domains);
        if !self.sh.slab.complete(t) {
            return; // the shutdown sweep completed it (this worker was stuck in a handler)
        }
        let ctr = self.counters();
        ctr.completed[status as usize].inc();
        ctr.reasons[reason as usize].inc();
        ctr.latency.record(latency);
        self.wake_pollers |= self.sh.deliver(t, waitable, Some(&mut self.done_tx));
    }
}

/// A task that did not succeed, as a `tracing` event (target `metafed::task`, level DEBUG):
/// its id is the correlation id. Off unless a subscriber enables that level.
#[cold]
fn failed_event(id: u64, t: Ticket, reason: Reason, latency_ns: u64) {
    crate::handler::guarded(
        || tracing::debug!(target: "metafed::task", task = id, ticket = t.0, ?reason, latency_us = latency_ns / 1000, "task did not succeed"),
    );
}
