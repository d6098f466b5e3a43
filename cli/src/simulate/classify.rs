//! Section 12: the decision engine. Tasks that name no domain carry the attributes and bytes a
//! request would (a path, a token, a query), and the seed's rules (`ClassifyConfig::seed`) classify them
//! into the seed's domains with a complexity score. Measured: the mix per domain set against
//! the model's success for that set (breakers off: every outcome is the oracle's), the score's
//! distribution, and admission by cost: under one cost budget, light tasks run more at once
//! than heavy ones, in proportion to their scores.

use super::figures::{ci, ratio};
use super::report::{Classify, CostRow, KindRow};
use metafed::classify::ClassifyConfig;
use metafed::model;
use metafed::sim::{Latency, SimAgent, splitmix64};
use metafed::{AdmissionConfig, AgentSpec, Completion, DomainSet, Engine, EngineConfig, Levels, Task, Topology};
use std::time::Instant;

/// A kind of request: (name, share in percent, path, token, op, bytes).
type Kind = (&'static str, u64, &'static str, bool, &'static str, &'static [u8]);

/// The kinds of request in the mix.
const KINDS: [Kind; 5] = [
    ("health check", 20, "/api/health", false, "read", b""),
    ("login", 15, "/login", true, "write", b""),
    ("public read", 30, "/api/orders", false, "read", b"SELECT * FROM orders"),
    ("authenticated read", 25, "/api/orders", true, "read", b"SELECT * FROM orders WHERE user = ?"),
    ("report", 10, "/api/reports", true, "report", b"SELECT sum(total) FROM orders"),
];

fn kind_of(id: u64) -> usize {
    let roll = splitmix64(id ^ 0xC1A5_51F1_0000_0001) % 100;
    let mut acc = 0;
    KINDS
        .iter()
        .position(|k| {
            acc += k.1;
            roll < acc
        })
        .unwrap_or(0)
}

/// The seed's 3 x 3 at the section's error rates, breakers off, with the seed's rules; agents
/// answer at once, or after `io_us` holding no thread.
fn seed(rates: (f64, f64, f64), io_us: Option<f64>) -> Result<Topology, String> {
    let s = |e: metafed::Error| e.to_string();
    let mut b = Topology::builder();
    for name in ["API", "Database", "Auth"] {
        let d = b.domain(name).map_err(s)?;
        for i in 0..3 {
            let mut sim = SimAgent::with_error_rate(rates.0);
            if let Some(us) = io_us {
                (sim.latency, sim.io) = (Latency::Fixed { us }, true);
            }
            b.agent(d, format!("Agent{i}"), AgentSpec::sim(sim)).map_err(s)?;
        }
        b.domain_fault_rate(d, rates.1).map_err(s)?;
    }
    b.meta_fault_rate(rates.2).breakers(Levels::disabled());
    b.classify(ClassifyConfig::seed());
    b.build().map_err(s)
}

/// Runs `n` tasks of the mix (kinds chosen by id) through `engine`, `in_flight` at a time;
/// calls `done` with each completion.
fn closed_loop(engine: &Engine, ids: impl Iterator<Item = u64>, in_flight: usize, mut done: impl FnMut(&Completion)) {
    let mut buf: Vec<Completion> = (0..256).map(|_| Completion::default()).collect();
    let mut out = 0usize;
    let mut ids = ids.peekable();
    while ids.peek().is_some() || out > 0 {
        while out < in_flight {
            let Some(&id) = ids.peek() else { break };
            let k = &KINDS[kind_of(id)];
            let mut attrs = vec![("path", k.2), ("op", k.4)];
            if k.3 {
                attrs.push(("token", "t0k3n"));
            }
            match engine.try_submit(&Task::classified(id).attrs(&attrs).data(k.5)) {
                Ok(_) => {
                    ids.next();
                    out += 1;
                }
                Err(metafed::SubmitError::Full) => break,
                Err(e) => panic!("the mix's task {id} was refused: {e}"),
            }
        }
        let got = engine.poll_wait(&mut buf, Some(std::time::Duration::from_millis(100))).unwrap_or(0);
        for c in &buf[..got] {
            done(c);
        }
        out -= got;
    }
}

/// `wall`: also the admission-by-cost runs, which are timed on the wall clock.
pub(super) fn classify_runs(n: u64, rates: (f64, f64, f64), seed_id: u64, wall: bool) -> Result<Classify, String> {
    // The mix, instant agents: classification against the model.
    let topo = seed(rates, None)?;
    let p = model::predict_domains(&topo, |a| topo.sim_error_rate(a).unwrap_or(0.0));
    let engine = Engine::builder(topo.clone()).config(EngineConfig::default()).start().map_err(|e| e.to_string())?;
    let mut per_kind = [(0u64, 0u64, DomainSet(0), 0f32); KINDS.len()];
    closed_loop(&engine, seed_id..seed_id + n, 1024, |c| {
        let k = &mut per_kind[kind_of(c.id)];
        k.0 += 1;
        k.1 += u64::from(c.is_ok());
        (k.2, k.3) = (c.domains, c.complexity.get());
    });
    let stats = engine.stats();
    drop(engine);
    let mut histogram = [0u64; 10];
    for h in &stats.classify.complexity {
        for (a, b) in histogram.iter_mut().zip(h.buckets) {
            *a += b;
        }
    }
    let kinds = KINDS
        .iter()
        .zip(per_kind)
        .map(|(k, (tasks, ok, set, score))| KindRow {
            kind: k.0,
            domains: set.iter().map(|d| topo.domain_name(d).unwrap_or("?")).collect::<Vec<_>>().join(" + "),
            complexity: score,
            tasks,
            predicted: model::task_success(&topo, &p, set),
            measured: ratio(ok, tasks),
            ci95: ci(ok, tasks),
        })
        .collect();

    // Admission by cost: one budget, each kind alone, agents that take 2 ms holding no thread.
    let (max_cost, latency_us) = (8.0, 2_000.0);
    let mut cost = Vec::new();
    for kind in if wall { vec![0usize, 4] } else { Vec::new() } {
        let topo = seed((0.0, 0.0, 0.0), Some(latency_us))?;
        let config = EngineConfig {
            admission: AdmissionConfig { max_cost, ..AdmissionConfig::default() },
            ..EngineConfig::default()
        };
        let engine = Engine::builder(topo).config(config).start().map_err(|e| e.to_string())?;
        let ids: Vec<u64> = (0..).filter(|&id| kind_of(id) == kind).take(2_000).collect();
        let mut score = 0.0f32;
        let start = Instant::now();
        closed_loop(&engine, ids.iter().copied(), 1024, |c| score = c.complexity.get());
        let s = start.elapsed().as_secs_f64();
        let tasks_per_s = ids.len() as f64 / s;
        // A task's sub-tasks run side by side: its latency is about one agent call.
        cost.push(CostRow {
            kind: KINDS[kind].0,
            complexity: score,
            expected_in_flight: max_cost / f64::from(score).max(0.1),
            measured_in_flight: tasks_per_s * latency_us / 1e6,
            tasks_per_s,
        });
    }
    let cost = wall.then_some(cost);
    Ok(Classify { kinds, histogram, unclassified: stats.classify.unclassified(), max_cost, cost })
}

/// The section, for the text report.
pub(super) fn print(c: &Classify) {
    use super::figures::pct;
    println!();
    println!("12. The decision engine: tasks that name no domain, classified by the seed's rules (path, token, query)");
    println!("   (breakers off; success: model for the domain set the rules chose, and measured)");
    println!(
        "   {:<20} {:<26} {:>10} {:>8} {:>9} {:>9} {:>21}",
        "kind", "domains", "complexity", "tasks", "model", "measured", "95% CI"
    );
    for k in &c.kinds {
        println!(
            "   {:<20} {:<26} {:>10.2} {:>8} {:>9} {:>9} {:>21}",
            k.kind,
            k.domains,
            k.complexity,
            k.tasks,
            pct(k.predicted),
            pct(k.measured),
            format!("{} - {}", pct(k.ci95[0]), pct(k.ci95[1]))
        );
    }
    let total: u64 = c.histogram.iter().sum();
    let bars: Vec<String> = c
        .histogram
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("({:.1}, {:.1}]: {n}", i as f64 / 10.0, (i + 1) as f64 / 10.0))
        .collect();
    println!("   complexity of the {total} classified tasks: {}; unclassified: {}", bars.join(", "), c.unclassified);
    println!(
        "   admission by cost (budget {} complexity units, agents 2 ms holding no thread, one kind at a time):",
        c.max_cost
    );
    if c.cost.is_none() {
        println!("   (timed on the wall clock: left out with --reproducible)");
    }
    for r in c.cost.iter().flatten() {
        println!(
            "   {:<20} complexity {:.2}: {:.1} in flight expected, {:.1} measured (Little's law), {:.0} tasks/s",
            r.kind, r.complexity, r.expected_in_flight, r.measured_in_flight, r.tasks_per_s
        );
    }
}
