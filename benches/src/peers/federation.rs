//! What every peer implements ([`Federation`]) and shares (the routing, [`Router`], at the
//! workloads' failure rate), the floor that runs it inline ([`InlinePeer`]), and the closed loop
//! that drives any of them ([`closed_loop`]) and reports a [`Run`].

use crate::driver::{Percentiles, Workload};
use metafed::sim::{LatencyHistogram, fails_below, oracle_key, threshold};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The agents' failure rate in the benchmark workloads.
pub const P: f64 = 0.12;

/// Domains and agents per domain (the seed's 3 x 3).
pub const DOMAINS: usize = 3;

/// Agents per domain; also the attempts a sub-task may make.
pub const AGENTS: usize = 3;

/// A federation under test: submits tasks and hands back their outcomes.
pub trait Federation {
    /// Submits tasks `(id, domain set)` in order until one is refused (backpressure); returns how
    /// many were accepted.
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize;
    /// Appends completed tasks `(id, succeeded)` to `out`. With `wait`, blocks (or spins, as the
    /// implementation waits) until at least one is there.
    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>);
}

/// The routing logic every peer runs (and the floor runs alone): per domain a round-robin
/// cursor, attempts at successive agents, failover on failure, at most `AGENTS` attempts.
pub struct Router {
    cursors: [u32; DOMAINS],
    threshold: u64,
}

impl Default for Router {
    fn default() -> Self {
        Self::with_error_rate(P)
    }
}

impl Router {
    /// A router whose agents fail at `p` by the oracle.
    pub fn with_error_rate(p: f64) -> Self {
        Self { cursors: [0; DOMAINS], threshold: threshold(p) }
    }

    /// Runs a whole task: every sub-task, each with failover. True if all succeeded.
    #[inline]
    pub fn task(&mut self, id: u64, domains: u64) -> bool {
        let fanout = domains.count_ones();
        let mut ok = true;
        let mut m = domains;
        while m != 0 {
            let d = m.trailing_zeros() as usize;
            m &= m - 1;
            ok &= self.subtask(id, d, fanout);
        }
        ok
    }

    /// Where the round-robin over `domain`'s agents starts for its next sub-task (and moves on).
    #[inline]
    pub fn next_start(&mut self, domain: usize) -> u32 {
        let start = self.cursors[domain];
        self.cursors[domain] = start.wrapping_add(1);
        start
    }

    /// The failure threshold of the oracle (see [`metafed::sim::threshold`]).
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// One sub-task: the attempts at the domain's agents in turn.
    #[inline]
    pub fn subtask(&mut self, id: u64, domain: usize, fanout: u32) -> bool {
        let key = oracle_key(id, domain as u16, fanout);
        let start = self.next_start(domain);
        (0..AGENTS as u64).any(|attempt| self.attempt(key, attempt, (start as usize + attempt as usize) % AGENTS))
    }

    /// One attempt at agent `agent` (the oracle does not depend on which agent).
    #[inline]
    pub fn attempt(&self, key: u64, attempt: u64, agent: usize) -> bool {
        std::hint::black_box(agent);
        !fails_below(key, attempt, self.threshold)
    }
}

/// The floor: the routing as plain function calls on the submitting thread.
#[derive(Default)]
pub struct InlinePeer {
    router: Router,
    done: Vec<(u64, bool)>,
}

impl Federation for InlinePeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        for &(id, d) in tasks {
            let ok = self.router.task(id, d);
            self.done.push((id, ok));
        }
        tasks.len()
    }
    fn poll(&mut self, _wait: bool, out: &mut Vec<(u64, bool)>) {
        out.append(&mut self.done);
    }
}

/// What one closed-loop run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Tasks completed.
    pub tasks: u64,
    /// Tasks that succeeded.
    pub ok: u64,
    /// What the oracle says should have succeeded.
    pub oracle_ok: u64,
    /// Tasks completed twice, or never.
    pub duplicated: u64,
    /// See `duplicated`.
    pub lost: u64,
    /// Seconds.
    pub elapsed_s: f64,
    /// Tasks per second.
    pub tasks_per_s: f64,
    /// Submit to completion as the submitter saw it, 1 task in 64.
    pub latency_ns: Percentiles,
}

impl Run {
    /// Whether the run matched the oracle exactly and lost and duplicated nothing.
    pub fn exact(&self) -> bool {
        self.ok == self.oracle_ok && self.lost == 0 && self.duplicated == 0
    }
}

/// Runs a closed loop against `f` from the calling thread: at most `in_flight` tasks in flight,
/// tasks `first_id ..` of `workload`, until `max_tasks` have been submitted or `budget` has
/// passed (then it drains what is in flight). Latency is sampled on 1 task in 64.
pub fn closed_loop(
    f: &mut dyn Federation,
    workload: Workload,
    in_flight: usize,
    max_tasks: u64,
    budget: Duration,
    first_id: u64,
) -> Run {
    closed_loop_at(f, workload, in_flight, max_tasks, budget, first_id, P)
}

/// [`closed_loop`] against agents that fail at `p` (the oracle's count is for that `p`).
pub fn closed_loop_at(
    f: &mut dyn Federation,
    workload: Workload,
    in_flight: usize,
    max_tasks: u64,
    budget: Duration,
    first_id: u64,
    p: f64,
) -> Run {
    closed_loop_sampled(f, workload, in_flight, max_tasks, budget, first_id, p, 64)
}

/// [`closed_loop_at`] recording the latency of 1 task in `sample_every` (at most 4,096 tasks in
/// flight when it is below 64).
#[allow(clippy::too_many_arguments)]
pub fn closed_loop_sampled(
    f: &mut dyn Federation,
    workload: Workload,
    in_flight: usize,
    max_tasks: u64,
    budget: Duration,
    first_id: u64,
    p: f64,
    sample_every: u64,
) -> Run {
    let sample = sample_every.max(1);
    const SLOTS: usize = 4096;
    let mask_of = |i: u64| workload.domains_of(i, DOMAINS).0;
    let mut seen = vec![0u64; max_tasks.div_ceil(64) as usize];
    let mut sent_at = vec![Instant::now(); SLOTS];
    let mut hist = LatencyHistogram::new();
    let mut batch: Vec<(u64, u64)> = Vec::with_capacity(64);
    let mut out: Vec<(u64, bool)> = Vec::with_capacity(4096);
    let (mut next, mut done, mut ok, mut duplicated) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut open = true;
    while open || done < next {
        if open && (next == max_tasks || (next % 1024 == 0 && start.elapsed() > budget)) {
            open = false;
        }
        let room = if open { (in_flight - (next - done) as usize).min((max_tasks - next) as usize).min(64) } else { 0 };
        if room > 0 {
            batch.clear();
            batch.extend((next..next + room as u64).map(|i| (first_id + i, mask_of(i))));
            let t0 = Instant::now();
            let k = f.submit(&batch);
            for i in (next..next + k as u64).filter(|i| i % sample == 0) {
                sent_at[((i / sample) as usize) % SLOTS] = t0;
            }
            next += k as u64;
        }
        out.clear();
        let in_flight_now = next - done;
        f.poll(in_flight_now > 0 && (room == 0 || in_flight_now == in_flight as u64), &mut out);
        let t1 = Instant::now();
        for &(id, success) in &out {
            let i = id - first_id;
            let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
            if seen[w] & b != 0 {
                duplicated += 1;
                continue;
            }
            seen[w] |= b;
            done += 1;
            ok += u64::from(success);
            if i.is_multiple_of(sample) {
                hist.record((t1 - sent_at[((i / sample) as usize) % SLOTS]).as_nanos().max(1) as u64);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut router = Router::with_error_rate(p);
    let oracle_ok = (0..next).filter(|&i| router.task(first_id + i, mask_of(i))).count() as u64;
    Run {
        tasks: done,
        ok,
        oracle_ok,
        duplicated,
        lost: next - done,
        elapsed_s: elapsed,
        tasks_per_s: done as f64 / elapsed.max(1e-9),
        latency_ns: Percentiles::of(&hist),
    }
}
