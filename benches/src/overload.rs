//! W4, overload: an open loop that offers many times an engine's capacity for a while, priorities
//! 0 to 3 mixed, with faults that open a domain breaker and the meta breaker on the way, and an
//! exactly-once check over every task id. `metafed overload` and `tests/overload.rs` use it.
//!
//! Several submitting threads offer tasks at a paced rate (or as fast as they can) with
//! `try_submit`; a refusal at submission (`Full`) is counted and the task is dropped, as an open
//! loop does. Every accepted task must complete exactly once, whatever happens: a bit per id
//! records acceptance, another its completion, and a completion that finds its bit already set
//! is a duplicate.

use metafed::{
    Completion, DomainId, DomainSet, Engine, EngineConfig, Error, Reason, Status, SubmitError, Task, Topology,
};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most task ids one run may use (a bit each, twice: 16 MiB).
pub const MAX_TASKS: u64 = 1 << 26;

/// How to overload.
#[derive(Clone, Debug)]
pub struct Plan {
    /// How long to offer tasks.
    pub duration: Duration,
    /// Tasks offered per second in all; 0 offers as fast as the submitters can.
    pub offered_per_s: f64,
    /// Submitting threads (1 to 64).
    pub submitters: usize,
    /// Inject faults: from 35% to 80% of the run domain 1 is down (its breaker opens and the
    /// domain sheds its sub-tasks); from 55% to 80% the callers want answers within 5 ms (each
    /// task carries that deadline), so tasks that wait at the throttle time out, the meta
    /// breaker opens on the failure rate and the engine runs degraded. Needs two domains.
    pub faults: bool,
}

/// What one priority got.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PriorityCounts {
    /// Accepted at submission.
    pub accepted: u64,
    /// Refused at submission (`Full`: no slot for this priority).
    pub refused: u64,
    /// Completed `Ok`.
    pub ok: u64,
    /// Completed `Failed`.
    pub failed: u64,
    /// Completed `TimedOut`.
    pub timed_out: u64,
    /// Completed `Rejected` (shed, degraded, throttled, rate limited, shutting down).
    pub rejected: u64,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Seconds the submitters offered tasks.
    pub offered_s: f64,
    /// Tasks offered (accepted or refused).
    pub offered: u64,
    /// Tasks accepted.
    pub accepted: u64,
    /// Completions delivered.
    pub completed: u64,
    /// Accepted tasks that never completed (must be 0).
    pub lost: u64,
    /// Completions for a task already completed (must be 0).
    pub duplicates: u64,
    /// Completions for a task that was never accepted (must be 0).
    pub unexpected: u64,
    /// Per priority, 0 (highest) to 3.
    pub by_priority: [PriorityCounts; 4],
    /// Completions per reason (those that occurred), in `Reason::ALL` order, by name.
    pub reasons: Vec<(String, u64)>,
    /// Resident memory in KiB: after the first quarter, at the peak, and at the end.
    pub rss_kib: [u64; 3],
    /// Whether the shutdown drained everything in flight in time.
    pub drained: bool,
    /// Submission to completion of the tasks that succeeded, in nanoseconds.
    pub ok_latency_ns: metafed::sim::Percentiles,
    /// The adaptive throttle's limit over the run, (seconds from the start, limit), every
    /// 100 ms; empty without an adaptive throttle.
    pub limit_path: Vec<(f64, u64)>,
}

impl Report {
    /// Completions with reason `r`.
    pub fn reason(&self, r: Reason) -> u64 {
        let name = format!("{r:?}");
        self.reasons.iter().find(|(n, _)| *n == name).map_or(0, |&(_, n)| n)
    }

    /// The share of accepted tasks of priority `p` that completed `Ok`.
    pub fn ok_share(&self, p: usize) -> f64 {
        let c = &self.by_priority[p];
        if c.accepted == 0 { 0.0 } else { c.ok as f64 / c.accepted as f64 }
    }
}

struct Bits(Box<[AtomicU64]>);

impl Bits {
    fn new(n: u64) -> Self {
        Self((0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }
    /// Sets bit `i`; returns whether it was set already.
    fn set(&self, i: u64) -> bool {
        let bit = 1u64 << (i % 64);
        self.0[(i / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0
    }
}

#[derive(Default)]
struct Counts {
    by_status: [[AtomicU64; 4]; 4], // [priority][ok, failed, timed out, rejected]
    reasons: [AtomicU64; Reason::COUNT],
    completed: AtomicU64,
    duplicates: AtomicU64,
    /// The latency of the tasks that succeeded (recorded at the rate the engine completes
    /// them, not the offered rate: a lock is cheap enough).
    ok_latency: std::sync::Mutex<metafed::sim::LatencyHistogram>,
}

/// W4's federation: the seed's 3 x 3, every agent an I/O agent (a deferred attempt answered by
/// the timer) that takes `latency_us` and fails 12% of attempts, with the seed's breakers.
pub fn seed_io_topology(latency_us: f64) -> metafed::TopologyBuilder {
    let mut b = metafed::TopologyBuilder::default();
    for (domain, agents) in metafed::SEED_DOMAINS {
        let d = b.domain(domain).expect("the seed's domain names are valid");
        for a in agents {
            let sim = metafed::sim::SimAgent {
                error_rate: 0.12,
                latency: metafed::sim::Latency::Fixed { us: latency_us },
                io: true,
                ..metafed::sim::SimAgent::default()
            };
            b.agent(d, a, metafed::AgentSpec::sim(sim)).expect("the domain was just added");
        }
    }
    b
}

/// W4's engine settings: a concurrency throttle of `max_concurrent` tasks past admission, with
/// 256 waiting per worker beyond it (then `Throttled`).
pub fn throttled_config(workers: usize, max_concurrent: usize) -> EngineConfig {
    let mut c = EngineConfig { workers, ..EngineConfig::default() };
    c.admission.max_concurrent = max_concurrent;
    c.admission.queue_capacity = 256;
    c
}

/// A field of `/proc/self/status` given in kB (`VmRSS`, `VmHWM`, ...); 0 where there is none.
pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size of this process in KiB (0 where /proc is not there).
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// Starts an engine on `topology` with `config`, runs `plan` against it, shuts it down and
/// reports. Task `i` has priority `i mod 4` and needs domain `i mod D`; every tenth needs all.
pub fn run(topology: Topology, config: EngineConfig, plan: &Plan) -> Result<Report, Error> {
    if plan.submitters == 0 || plan.submitters > 64 {
        return Err(Error::Config(format!("submitters must be 1 to 64, got {}", plan.submitters)));
    }
    if !(plan.offered_per_s.is_finite() && plan.offered_per_s >= 0.0) {
        return Err(Error::Config(format!("offered_per_s must be >= 0, got {}", plan.offered_per_s)));
    }
    let domains = topology.domain_count();
    if plan.faults && domains < 2 {
        return Err(Error::Config("faults need at least two domains".into()));
    }
    let accepted = Arc::new(Bits::new(MAX_TASKS));
    let done = Arc::new(Bits::new(MAX_TASKS));
    let counts = Arc::new(Counts::default());
    let (d2, c2) = (done.clone(), counts.clone());
    let engine = Engine::builder(topology)
        .config(config)
        .on_complete(move |c: &Completion| {
            if d2.set(c.id) {
                c2.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            let col = match c.status {
                Status::Ok => 0,
                Status::Failed => 1,
                Status::TimedOut => 2,
                Status::Rejected => 3,
            };
            c2.by_status[usize::from(c.priority.min(3))][col].fetch_add(1, Ordering::Relaxed);
            if col == 0 {
                c2.ok_latency.lock().unwrap_or_else(|e| e.into_inner()).record(c.latency_ns);
            }
            c2.reasons[c.reason as usize].fetch_add(1, Ordering::Relaxed);
            c2.completed.fetch_add(1, Ordering::Relaxed);
        })
        .start()?;
    let engine = Arc::new(engine);
    let stop = Arc::new(AtomicBool::new(false));
    let tight = Arc::new(AtomicBool::new(false)); // tasks carry a 5 ms deadline
    let started = Instant::now();
    let all = DomainSet::first(domains);
    let n = plan.submitters as u64;
    let per_submitter = plan.offered_per_s / n as f64;
    let submitters: Vec<_> = (0..n)
        .map(|s| {
            let (engine, accepted, stop, tight) = (engine.clone(), accepted.clone(), stop.clone(), tight.clone());
            std::thread::spawn(move || {
                let mut by_p = [[0u64; 2]; 4]; // [priority][accepted, refused]
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let owed = if per_submitter > 0.0 {
                        (started.elapsed().as_secs_f64() * per_submitter) as u64
                    } else {
                        k + 256
                    };
                    while k < owed {
                        let id = k * n + s;
                        if id >= MAX_TASKS {
                            return by_p;
                        }
                        let p = (id % 4) as u8;
                        let mut task = if id % 10 == 9 {
                            Task::fan_out(id, all)
                        } else {
                            Task::new(id, DomainId((id % domains as u64) as u16))
                        }
                        .priority(p);
                        if tight.load(Ordering::Relaxed) {
                            task = task.deadline(Duration::from_millis(5));
                        }
                        match engine.try_submit(&task) {
                            Ok(_) => {
                                accepted.set(id);
                                by_p[usize::from(p)][0] += 1;
                            }
                            Err(SubmitError::Full) => by_p[usize::from(p)][1] += 1,
                            Err(_) => return by_p,
                        }
                        k += 1;
                    }
                    if per_submitter > 0.0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                by_p
            })
        })
        .collect();

    // The main thread: the fault schedule and the memory samples.
    let mut rss = [0u64; 3];
    let mut limit_path = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut down = false;
    let _actor = metafed::audit::act_as("metafed overload", "W4 fault schedule");
    while started.elapsed() < plan.duration {
        let f = started.elapsed().as_secs_f64() / plan.duration.as_secs_f64();
        if plan.faults {
            let want = (0.35..0.80).contains(&f);
            if want != down {
                engine.set_domain_down(DomainId(1), want);
                down = want;
            }
            tight.store((0.55..0.80).contains(&f), Ordering::Relaxed);
        }
        if started.elapsed() >= next_sample
            && let Some(a) = engine.adaptive_throttle()
        {
            limit_path.push((started.elapsed().as_secs_f64(), a.limit));
            next_sample += Duration::from_millis(100);
        }
        let now = rss_kib();
        rss[1] = rss[1].max(now);
        if f >= 0.25 && rss[0] == 0 {
            rss[0] = now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let offered_s = started.elapsed().as_secs_f64();
    let mut by_priority = [PriorityCounts::default(); 4];
    for h in submitters {
        let by_p = h.join().expect("a submitter panicked");
        for (c, [a, r]) in by_priority.iter_mut().zip(by_p) {
            c.accepted += a;
            c.refused += r;
        }
    }
    if down {
        engine.set_domain_down(DomainId(1), false);
    }
    let report = engine.shutdown(Duration::from_secs(5)).map_err(|e| Error::Config(e.to_string()))?;
    rss[2] = rss_kib();
    rss[1] = rss[1].max(rss[2]);

    let mut lost = 0;
    let mut unexpected = 0;
    for (a, d) in accepted.0.iter().zip(done.0.iter()) {
        let (a, d) = (a.load(Ordering::Relaxed), d.load(Ordering::Relaxed));
        lost += u64::from((a & !d).count_ones());
        unexpected += u64::from((d & !a).count_ones());
    }
    for (p, c) in by_priority.iter_mut().enumerate() {
        let s = &counts.by_status[p];
        [c.ok, c.failed, c.timed_out, c.rejected] = std::array::from_fn(|i| s[i].load(Ordering::Relaxed));
    }
    let accepted_n = by_priority.iter().map(|c| c.accepted).sum();
    Ok(Report {
        offered_s,
        offered: by_priority.iter().map(|c| c.accepted + c.refused).sum(),
        accepted: accepted_n,
        completed: counts.completed.load(Ordering::Relaxed),
        lost,
        duplicates: counts.duplicates.load(Ordering::Relaxed),
        unexpected,
        by_priority,
        reasons: Reason::ALL
            .iter()
            .map(|&r| (format!("{r:?}"), counts.reasons[r as usize].load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect(),
        rss_kib: rss,
        drained: report.drained,
        ok_latency_ns: counts.ok_latency.lock().unwrap_or_else(|e| e.into_inner()).percentiles(),
        limit_path,
    })
}
