//! The workload and the run: a mix of tasks that need one, two or all three domains, from a
//! closed loop (so many in flight) or an open loop (so many a second), while a scheduler thread
//! starts and ends the faults and takes the engine's stats at each edge.

use crate::agents::Call;
use crate::auth::Auth;
use crate::data::{ORDERS, USERS};
use crate::faults::{Fault, World};
use metafed::events::BreakerEvent;
use metafed::stats::Stats;
use metafed::{Completion, Engine, Reason, SubmitError, Task};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kind of request in the mix.
pub struct Kind {
    /// Its name in the report.
    pub name: &'static str,
    /// Its share of the tasks, in percent.
    pub share: u64,
    /// The `path` attribute.
    pub path: &'static str,
    /// Whether it carries the caller's token (the classifier then adds Auth).
    pub token: bool,
    /// The `op` attribute.
    pub op: &'static str,
    /// The query in its bytes (the classifier then adds the Database).
    pub query: Option<&'static str>,
}

/// The mix, the seed's kinds of request.
pub const KINDS: [Kind; 5] = [
    Kind { name: "health check", share: 20, path: "/api/health", token: false, op: "read", query: None },
    Kind { name: "login", share: 15, path: "/login", token: true, op: "write", query: None },
    Kind {
        name: "public read",
        share: 30,
        path: "/api/orders",
        token: false,
        op: "read",
        query: Some("SELECT * FROM orders WHERE id = ?"),
    },
    Kind {
        name: "authenticated read",
        share: 25,
        path: "/api/orders",
        token: true,
        op: "read",
        query: Some("SELECT * FROM orders WHERE id = ? AND user = ?"),
    },
    Kind {
        name: "report",
        share: 10,
        path: "/api/reports",
        token: true,
        op: "report",
        query: Some("SELECT sum(total) FROM orders WHERE user = ?"),
    },
];

/// The kind of task `id` (a fixed pseudo-random draw, so a run's mix is the same each time).
pub fn kind_of(id: u64) -> usize {
    let roll = metafed::sim::splitmix64(id ^ 0xFEDE_7A7E) % 100;
    let mut acc = 0;
    KINDS
        .iter()
        .position(|k| {
            acc += k.share;
            roll < acc
        })
        .unwrap_or(0)
}

/// What a run does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// How long the workload runs.
    pub duration: Duration,
    /// Tasks in flight (a closed loop), when `rate` is not set.
    pub in_flight: usize,
    /// Tasks a second (open loop).
    pub rate: Option<f64>,
    /// The scheduled faults, each with its start and end from the run's start.
    pub schedule: Vec<(Fault, Duration, Duration)>,
    /// Faults held for the whole run.
    pub held: Vec<Fault>,
}

impl Plan {
    /// `faults` spread over `duration`: a tenth of it fault-free first, then a slot each, the
    /// fault on for the first `on` share of its slot and off for the rest (the recovery).
    pub fn spread(duration: Duration, faults: &[Fault], on: f64) -> Vec<(Fault, Duration, Duration)> {
        let lead = duration.mul_f64(0.1);
        let slot = duration.saturating_sub(lead).div_f64(faults.len().max(1) as f64);
        faults
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                let start = lead + slot.mul_f64(i as f64);
                (f, start, start + slot.mul_f64(on))
            })
            .collect()
    }
}

/// One completed task.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Record {
    /// Its kind (index into [`KINDS`]).
    pub kind: u8,
    /// The domains it needed (the classifier's set, as bits of domain ids).
    pub domains: u64,
    /// When it completed, seconds from the run's start.
    pub at: f64,
    /// Its latency, in milliseconds.
    pub latency_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not, where it did not.
    #[serde(serialize_with = "reason_name")]
    pub reason: Reason,
}

fn reason_name<S: serde::Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.describe())
}

/// The engine's stats at one fault's edges.
pub struct Marks {
    /// The fault.
    pub fault: Fault,
    /// When it started and ended, seconds from the run's start.
    pub window: (f64, f64),
    /// When its slot (its recovery time included) ended.
    pub slot_end: f64,
    /// Stats as it started.
    pub before: Stats,
    /// Stats as it ended.
    pub during: Stats,
}

/// What a run measured.
pub struct Outcome {
    /// Tasks accepted by the engine.
    pub submitted: u64,
    /// Submissions the engine refused as full (tried again later; not tasks).
    pub full: u64,
    /// Completions received.
    pub completions: u64,
    /// Tasks completed more than once.
    pub duplicates: u64,
    /// Tasks accepted and never completed.
    pub missing: u64,
    /// Every completion.
    pub records: Vec<Record>,
    /// Breaker transitions, each with its time from the run's start.
    pub events: Vec<(f64, BreakerEvent)>,
    /// The faults' edges.
    pub marks: Vec<Marks>,
    /// Stats at the start and the end of the run.
    pub first: Stats,
    /// Stats at the end.
    pub last: Stats,
    /// How long it ran.
    pub elapsed: f64,
    /// A sample reply of each domain (its bytes as text), to show real data crossed.
    pub samples: Vec<(String, String)>,
}

/// Runs `plan` on `engine` (whose agents are `world`'s), `tick` called about every second with
/// the seconds run and the tasks completed so far.
pub fn run(
    engine: &Engine,
    engine_started: Instant,
    world: &Arc<World>,
    plan: &Plan,
    mut tick: impl FnMut(f64, u64),
) -> Result<Outcome, String> {
    for &f in &plan.held {
        world.start(f)?;
    }
    let first = engine.stats();
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        let scheduler = std::thread::Builder::new()
            .name("fault-scheduler".into())
            .spawn_scoped(scope, || schedule(engine, world, plan, t0))
            .map_err(|e| e.to_string())?;
        let driven = drive(engine, engine_started, world, plan, t0, first, &mut tick);
        let marks = scheduler.join().map_err(|_| "the fault scheduler panicked".to_owned())??;
        let mut out = driven?;
        out.marks = marks;
        Ok::<_, String>(out)
    })
    .and_then(|out| {
        for &f in &plan.held {
            world.end(f)?;
        }
        Ok(out)
    })
}

/// Starts and ends the scheduled faults, taking the engine's stats at each edge.
fn schedule(engine: &Engine, world: &World, plan: &Plan, t0: Instant) -> Result<Vec<Marks>, String> {
    let mut marks = Vec::new();
    for (i, &(fault, start, end)) in plan.schedule.iter().enumerate() {
        let slot_end = plan.schedule.get(i + 1).map_or(plan.duration, |n| n.1);
        sleep_until(t0 + start);
        let before = engine.stats();
        world.start(fault)?;
        sleep_until(t0 + end);
        let during = engine.stats();
        world.end(fault)?;
        let s = |d: Duration| d.as_secs_f64();
        marks.push(Marks { fault, window: (s(start), s(end)), slot_end: s(slot_end), before, during });
    }
    Ok(marks)
}

/// Submits the mix and collects completions until the run's end and every task's completion.
fn drive(
    engine: &Engine,
    engine_started: Instant,
    world: &World,
    plan: &Plan,
    t0: Instant,
    first: Stats,
    tick: &mut impl FnMut(f64, u64),
) -> Result<Outcome, String> {
    let auth = &world.auth;
    let mut buf: Vec<Completion> = (0..256).map(|_| Completion::default()).collect();
    let mut submitted_at: Vec<Instant> = Vec::new();
    let mut seen: Vec<u8> = Vec::new();
    let (mut out, mut full, mut completions, mut duplicates) = (0usize, 0u64, 0u64, 0u64);
    let mut records = Vec::new();
    let mut events = Vec::new();
    let mut ev_buf = Vec::new();
    let mut samples: Vec<(String, String)> = Vec::new();
    let mut next_tick = 1.0;
    let topo = engine.topology();
    loop {
        let now = t0.elapsed();
        let running = now < plan.duration;
        if running {
            let want = match plan.rate {
                Some(r) => {
                    ((r * now.as_secs_f64()) as u64).saturating_sub(submitted_at.len() as u64).min(4096) as usize
                }
                None => plan.in_flight.saturating_sub(out),
            };
            for _ in 0..want {
                let id = submitted_at.len() as u64;
                if !submit(engine, auth, id)? {
                    full += 1;
                    break;
                }
                submitted_at.push(Instant::now());
                seen.push(0);
                out += 1;
            }
        } else if out == 0 {
            break;
        }
        let got = engine.poll_wait(&mut buf, Some(Duration::from_millis(2))).map_err(|e| e.to_string())?;
        let at = t0.elapsed().as_secs_f64();
        for c in &buf[..got] {
            completions += 1;
            let Some(n) = seen.get_mut(c.id as usize) else {
                return Err(format!("a completion for task {} never submitted", c.id));
            };
            *n = n.saturating_add(1);
            if *n > 1 {
                duplicates += 1;
                continue;
            }
            out -= 1;
            if c.is_ok() && samples.len() < topo.domain_count() {
                for &(d, ref body) in c.bodies() {
                    let name = topo.domain_name(d).unwrap_or("?").to_owned();
                    if !samples.iter().any(|s| s.0 == name) {
                        samples.push((name, String::from_utf8_lossy(body).into_owned()));
                    }
                }
            }
            records.push(Record {
                kind: kind_of(c.id) as u8,
                domains: c.domains.0,
                at,
                latency_ms: c.latency_ns as f64 / 1e6,
                ok: c.is_ok(),
                reason: c.reason,
            });
        }
        if engine.drain_events(&mut ev_buf) > 0 {
            for e in ev_buf.drain(..) {
                let when = (engine_started + Duration::from_nanos(e.at_ns)).saturating_duration_since(t0);
                events.push((when.as_secs_f64(), e));
            }
        }
        if at >= next_tick {
            tick(at, completions);
            next_tick += 1.0;
        }
        if !running && t0.elapsed() > plan.duration + Duration::from_secs(30) {
            return Err(format!("{out} tasks still in flight 30 s after the run's end"));
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let missing = seen.iter().filter(|&&n| n == 0).count() as u64;
    samples.sort();
    Ok(Outcome {
        submitted: submitted_at.len() as u64,
        full,
        completions,
        duplicates,
        missing,
        records,
        events,
        marks: Vec::new(),
        first,
        last: engine.stats(),
        elapsed,
        samples,
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Submits task `id` of the mix: attributes for the classifier, the call for the agents.
/// `Ok(false)`: the engine is full (try again later).
fn submit(engine: &Engine, auth: &Auth, id: u64) -> Result<bool, String> {
    let k = &KINDS[kind_of(id)];
    let order = 1 + metafed::sim::splitmix64(id) % ORDERS;
    let user = format!("u{}", metafed::sim::splitmix64(id ^ 0x5EED) % USERS);
    let token = if k.token { Some(auth.token_for(&user)?) } else { None };
    let call = Call {
        order,
        user,
        op: k.op.into(),
        token: token.as_deref().map(str::to_owned),
        query: k.query.map(str::to_owned),
    };
    let data = serde_json::to_vec(&call).expect("a call serializes");
    let mut attrs = vec![("path", k.path), ("op", k.op)];
    if let Some(t) = token.as_deref() {
        attrs.push(("token", t));
    }
    match engine.try_submit(&Task::classified(id).attrs(&attrs).data(&data)) {
        Ok(_) => Ok(true),
        Err(SubmitError::Full) => Ok(false),
        Err(e) => Err(format!("task {id} was refused: {e}")),
    }
}
