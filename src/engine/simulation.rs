//! Deterministic simulation: the real engine (its stages, breakers, limiter, admission, timers)
//! on a virtual clock, driven on one thread in a fixed order.
//!
//! [`EngineBuilder::simulate`](crate::EngineBuilder::simulate) builds an engine whose clock is
//! virtual and whose workers are not threads: a [`Simulation`] runs their turns, worker 0 first,
//! until none has work, then moves the clock to the next thing due (an attempt's timeout, a
//! hedge, a simulated agent's latency), or to the time the caller asks for. Submissions, operator
//! actions and completion callbacks all happen on the caller's thread between turns. A run is
//! then a function of the topology, the configuration, what the caller does at which virtual
//! time, and nothing else: the same inputs give the same completions, the same breaker
//! transitions and the same stats on any machine at any load.
//!
//! What differs from a live engine: there are no thread interleavings (a live engine's workers
//! race for stolen work, hand-offs and slots, and its breakers see outcomes in the order threads
//! happen to report them); work takes no virtual time (only latencies, timeouts and the gaps
//! between submissions move the clock), so throughput limits and queueing behind a busy worker
//! do not appear unless modelled as latency; isolated simulated agents run on the workers (they
//! block nothing), and isolated handlers and hanging agents (which need threads) are refused.
//!
//! This is the approach of FoundationDB's and TigerBeetle's simulators (and of Rust's
//! `turmoil` and `madsim`): run the production code, replace time and scheduling.

use crate::engine::Engine;
use crate::error::SubmitError;
use crate::sim::{LatencyHistogram, Load, Percentiles, RunReport};
use crate::stages::worker::Worker;
use crate::task::{Completion, Status, Task};
use std::sync::atomic::Ordering;

/// An engine running in virtual time; see the module documentation.
pub struct Simulation {
    engine: Engine,
    workers: Vec<Worker>,
    finished: bool,
}

impl Simulation {
    pub(crate) fn new(engine: Engine, workers: Vec<Worker>) -> Self {
        debug_assert!(engine.shared().clock.is_virtual());
        Self { engine, workers, finished: false }
    }

    /// The engine: submit tasks (`try_submit`), read stats, change settings, as with a live one.
    /// Calls that wait for the engine (`wait`, `poll_wait`, `run_batch`, blocking submission)
    /// would wait for turns that only this simulation runs: use `try_submit`, `poll` and the
    /// completion callback.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The virtual time now, in nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.engine.shared().clock.now()
    }

    /// Runs the workers' turns until none has work at the current time; returns the turns that
    /// did some.
    pub fn settle(&mut self) -> usize {
        let mut busy = 0;
        loop {
            let mut work = 0;
            if let Some(timer) = &self.engine.shared().timer {
                work += timer.fire_due(self.now_ns());
            }
            for w in &mut self.workers {
                work += w.turn();
            }
            if work == 0 {
                return busy;
            }
            busy += 1;
        }
    }

    /// The next time something is due (an attempt's timeout, a hedge, a simulated latency), if
    /// anything is.
    pub fn next_due_ns(&self) -> Option<u64> {
        let timer = self.engine.shared().timer.as_ref().and_then(|t| t.next_due());
        let workers = self.workers.iter().filter_map(|w| w.timers.peek().map(|r| r.0.0)).min();
        match (timer, workers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until virtual time `t_ns`: everything due before it happens at its time, then the
    /// clock stands at `t_ns` with the workers settled.
    pub fn run_until(&mut self, t_ns: u64) {
        self.settle();
        while let Some(next) = self.next_due_ns().filter(|&n| n <= t_ns) {
            self.engine.shared().clock.set(next);
            self.settle();
            if self.next_due_ns() == Some(next) {
                break; // nothing fired it (cannot happen with the engine's timers): do not spin
            }
        }
        self.engine.shared().clock.set(t_ns);
        self.settle();
    }

    /// Runs until nothing is due any more (every task in flight finished), or until `limit_ns`.
    pub fn run_idle(&mut self, limit_ns: u64) {
        self.settle();
        while let Some(next) = self.next_due_ns() {
            if next > limit_ns {
                break;
            }
            self.run_until(next);
        }
    }

    /// Ends the simulation: what is still held is completed as shut down (as a live shutdown
    /// past its drain deadline does), then the engine stops. Idempotent; dropping the
    /// simulation does it too.
    pub fn finish(&mut self) -> crate::engine::ShutdownReport {
        if !self.finished {
            self.finished = true;
            let sh = self.engine.shared();
            sh.lifecycle.store(crate::shared::STOPPING, Ordering::SeqCst);
            for w in &mut self.workers {
                w.stop_now();
            }
            if let Some(timer) = &sh.timer {
                timer.finish_all();
            }
        }
        self.engine.shutdown(std::time::Duration::ZERO).expect("the simulation's thread is not an engine thread")
    }
}

/// What [`Simulation::open_loop`] observed.
#[derive(Clone, Debug)]
pub struct OpenLoop {
    /// The tasks' outcomes; `elapsed_s` and `tasks_per_s` are in virtual time, the latency is
    /// each completion's own (submission to completion, virtual).
    pub report: RunReport,
    /// Tasks the engine refused at submission (`Full`).
    pub refused: u64,
    /// Per bucket of submission time, per group (the task's domain for routed tasks, 0 for
    /// fan-out): (tasks completed, tasks that succeeded).
    pub buckets: Vec<Vec<(u64, u64)>>,
    /// Every completed task's latency (virtual nanoseconds), for a distribution.
    pub latency: LatencyHistogram,
}

impl Simulation {
    /// Runs `load` as an open loop: task `i` is submitted at `i / rate_per_s` seconds of virtual
    /// time from now (`load.in_flight` is not used: arrivals do not wait for completions).
    /// Before each submission `hook(engine, t_ns)` may act (a fault schedule, say). Then runs
    /// until everything completed. Completions are taken with `poll` (the engine must not have
    /// a completion callback) and counted per `bucket_ns` of submission time.
    pub fn open_loop(
        &mut self,
        load: &Load,
        rate_per_s: f64,
        bucket_ns: u64,
        hook: impl FnMut(&Engine, u64),
    ) -> OpenLoop {
        self.open_loop_steps(load, &[(0, rate_per_s)], bucket_ns, hook)
    }

    /// As [`open_loop`](Self::open_loop), with an offered load that changes in steps: `steps`
    /// holds (from, tasks per second) pairs, `from` in nanoseconds of virtual time after the
    /// start, the first from 0, in increasing order; a burst is a short step. The load's tasks
    /// are submitted at those rates until they are all out.
    pub fn open_loop_steps(
        &mut self,
        load: &Load,
        steps: &[(u64, f64)],
        bucket_ns: u64,
        mut hook: impl FnMut(&Engine, u64),
    ) -> OpenLoop {
        assert!(bucket_ns > 0, "a positive bucket");
        assert!(steps.first().is_some_and(|s| s.0 == 0), "the first step starts at 0");
        assert!(steps.iter().all(|s| s.1 > 0.0 && s.1.is_finite()), "positive rates");
        assert!(steps.windows(2).all(|w| w[0].0 < w[1].0), "steps in increasing order");
        // Each step's first task: the tasks its predecessors' spans hold.
        let mut firsts = vec![0f64];
        for w in steps.windows(2) {
            let last = *firsts.last().expect("one per step");
            firsts.push(last + (w[1].0 - w[0].0) as f64 * w[0].1 / 1e9);
        }
        let time_of = |i: u64| -> u64 {
            let k = firsts.iter().rposition(|&f| f <= i as f64).unwrap_or(0);
            steps[k].0 + ((i as f64 - firsts[k]) * 1e9 / steps[k].1) as u64
        };
        let domains = self.engine.topology().domain_count();
        let start = self.now_ns();
        let n = load.tasks;
        let mut seen = vec![0u64; n.div_ceil(64) as usize];
        let mut hist = LatencyHistogram::new();
        let mut report = RunReport::default();
        let groups = load.workload.groups(domains);
        let mut buckets: Vec<Vec<(u64, u64)>> = Vec::new();
        let mut refused = 0;
        let mut out = vec![Completion::default(); 256];
        let mut take = |sim: &mut Simulation, report: &mut RunReport, buckets: &mut Vec<Vec<(u64, u64)>>| loop {
            let got = sim.engine.poll(&mut out);
            for c in &out[..got] {
                let Some(i) = report.count(c, load.first_id, n, &mut seen) else { continue };
                hist.record(c.latency_ns);
                let b = (time_of(i) / bucket_ns) as usize;
                if buckets.len() <= b {
                    buckets.resize(b + 1, vec![(0, 0); groups]);
                }
                let cell = &mut buckets[b][(i % groups as u64) as usize];
                cell.0 += 1;
                cell.1 += u64::from(c.status == Status::Ok);
            }
            if got < out.len() {
                return;
            }
        };
        for i in 0..n {
            let t = start + time_of(i);
            self.run_until(t);
            take(self, &mut report, &mut buckets);
            hook(&self.engine, t);
            let id = load.first_id.wrapping_add(i);
            let task = Task::fan_out(id, load.workload.domains_of(i, domains));
            match self.engine.try_submit(&task) {
                Ok(_) => report.submitted += 1,
                Err(SubmitError::Full) => refused += 1,
                Err(e) => panic!("submission refused: {e}"),
            }
        }
        self.run_idle(u64::MAX);
        take(self, &mut report, &mut buckets);
        let elapsed = (self.now_ns() - start) as f64 / 1e9;
        report.lost = report.submitted - (report.completed - report.duplicated - report.unknown);
        report.elapsed_s = elapsed;
        report.tasks_per_s = report.completed as f64 / elapsed.max(1e-9);
        report.latency_ns = Percentiles::of(&hist);
        OpenLoop { report, refused, buckets, latency: hist }
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::config::EngineConfig;
    use crate::engine::Engine;
    use crate::stages::worker::STALL_NS;
    use crate::task::{Completion, DomainId, Task};
    use crate::topology::{Levels, Topology};

    /// The lean path is decided again after every change to a setting it depends on: each
    /// setter bumps the settings epoch (a worker that kept its last answer would run the next
    /// tasks without the feature just turned on), and turning the feature off again makes the
    /// path lean again.
    #[test]
    fn every_setting_of_the_lean_path_is_seen_at_once() {
        use crate::breaker::{BreakerConfig, BreakerMode};
        use crate::config::AdmissionConfig;
        use crate::events::Level;
        use crate::policy::{Balance, Outlier};
        use crate::task::AgentId;
        let mut b = Topology::seed_builder(0.0);
        b.breakers(Levels::disabled());
        let config = EngineConfig { workers: 1, ..EngineConfig::default() };
        let mut sim = Engine::builder(b.build().unwrap()).config(config).simulate().unwrap();
        assert!(sim.workers[0].lean_now(), "everything off: lean");
        // A level's breakers on (the state machine decides) or disabled, by their settings.
        fn level_breakers(e: &Engine, level: Level, on: bool) {
            let mode = if on { BreakerMode::Normal } else { BreakerMode::Disabled };
            let cfg = BreakerConfig { mode, ..e.breaker_config(level).unwrap() };
            e.set_breaker_config(level, &cfg).unwrap();
        }
        type Toggle = fn(&Engine, bool);
        let toggles: [(&str, Toggle); 13] = [
            ("meta breaker", |e, on| {
                e.set_breaker_mode(Level::Meta, 0, if on { BreakerMode::Normal } else { BreakerMode::Disabled });
            }),
            ("domain breaker", |e, on| {
                e.set_breaker_mode(Level::Domain, 1, if on { BreakerMode::ForcedOpen } else { BreakerMode::Disabled });
            }),
            ("agent breaker", |e, on| {
                e.set_breaker_mode(Level::Agent, 4, if on { BreakerMode::Normal } else { BreakerMode::Disabled });
            }),
            ("agent breakers' settings", |e, on| level_breakers(e, Level::Agent, on)),
            ("domain breakers' settings", |e, on| level_breakers(e, Level::Domain, on)),
            ("agent down", |e, on| {
                assert!(e.set_agent_down(AgentId(4), on));
            }),
            ("domain down", |e, on| {
                assert!(e.set_domain_down(DomainId(1), on));
            }),
            ("rate limit", |e, on| e.set_rate_limit(if on { 1000.0 } else { 0.0 }, 1.0).unwrap()),
            ("concurrency throttle", |e, on| {
                let a = AdmissionConfig { max_concurrent: if on { 100 } else { 0 }, ..e.admission() };
                e.set_admission(&a).unwrap();
            }),
            ("cost budget", |e, on| {
                let a = AdmissionConfig { max_cost: if on { 100.0 } else { 0.0 }, ..e.admission() };
                e.set_admission(&a).unwrap();
            }),
            ("peak EWMA", |e, on| {
                let balance = if on { Balance::peak_ewma() } else { Balance::RoundRobin };
                e.set_domain_balance(DomainId(1), balance).unwrap();
            }),
            ("outlier detection", |e, on| {
                e.set_domain_outlier(DomainId(1), on.then(Outlier::default)).unwrap();
            }),
            ("an alternate domain", |e, on| {
                let alternates: &[DomainId] = if on { &[DomainId(2)] } else { &[] };
                e.set_domain_alternates(DomainId(1), alternates).unwrap();
            }),
        ];
        for (name, toggle) in toggles {
            // The routing snapshot (alternates) is read at the start of a turn; the other
            // settings are seen at once, through the epoch.
            let routing = name == "an alternate domain";
            toggle(&sim.engine, true);
            if routing {
                sim.workers[0].turn();
            }
            assert!(!sim.workers[0].lean_now(), "{name} on: not lean");
            toggle(&sim.engine, false);
            if routing {
                sim.workers[0].turn();
            }
            assert!(sim.workers[0].lean_now(), "{name} off again: lean");
        }
    }

    /// A worker with work of its own also takes tickets from the ring of a worker that has not
    /// turned for longer than the stall threshold (descheduled, in a live engine), and only then.
    #[test]
    fn a_busy_worker_relieves_a_stuck_one() {
        let mut b = Topology::seed_builder(0.0);
        b.breakers(Levels::disabled());
        let config = EngineConfig { workers: 2, ..EngineConfig::default() };
        let mut sim = Engine::builder(b.build().unwrap()).config(config).simulate().unwrap();
        let batch = sim.engine.shared().cfg.batch;
        // A simulation fills the first worker's ring to two batches, then the second's.
        let n = 2 * batch + 10;
        for i in 0..n {
            sim.engine.try_submit(&Task::new(i as u64, DomainId((i % 3) as u16))).unwrap();
        }
        let sh = sim.engine.shared_arc().clone();
        assert_eq!((sh.workers[0].ingress.len(), sh.workers[1].ingress.len()), (2 * batch as u64, 10));
        // The second worker turned (it published its turn clock) at time 0: not stuck yet.
        let w0 = &mut sim.workers[0];
        w0.now = STALL_NS;
        assert_eq!(w0.relieve_stuck(batch), 0, "a worker within the threshold is left alone");
        w0.now = STALL_NS + 1;
        assert_eq!(w0.relieve_stuck(batch), 10, "a stuck worker's backlog is taken");
        assert!(sh.workers[1].ingress.is_empty());
        sim.engine.shared().clock.set(STALL_NS + 1);
        sim.settle();
        let mut out = vec![Completion::default(); n + 1];
        assert_eq!(sim.engine.poll(&mut out), n, "every task completes once");
        let mut ids: Vec<u64> = out[..n].iter().map(|c| c.id).collect();
        ids.sort_unstable();
        assert!(ids.iter().copied().eq(0..n as u64));
    }
}
