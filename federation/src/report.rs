//! What a run shows: the run in a few lines, each fault (what it did, what contained it, how
//! long recovery took, success against the model's prediction for the agents left), as text,
//! as JSON, and as a figure.

use crate::faults::Fault;
use crate::run::{KINDS, Outcome, Record};
use metafed::Topology;
use metafed::model::{subtask_success, wilson};
use metafed::stats::Stats;
use serde::Serialize;

/// The width of the timeline's buckets, in seconds.
const BUCKET: f64 = 0.25;

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    /// The run.
    pub run: RunRow,
    /// Success per kind of request, against the model.
    pub kinds: Vec<KindRow>,
    /// Each domain over the run.
    pub domains: Vec<DomainRow>,
    /// Each agent over the run.
    pub agents: Vec<AgentRow>,
    /// Each scheduled fault.
    pub faults: Vec<FaultRow>,
    /// A reply of each domain, as its agent sent it.
    pub samples: Vec<(String, String)>,
    /// Success and latency over time.
    pub timeline: Vec<Bucket>,
    /// The admin endpoint while it ran.
    pub admin: Option<String>,
}

/// The run in a few numbers.
#[derive(Serialize)]
pub struct RunRow {
    /// Seconds it ran.
    pub seconds: f64,
    /// Tasks accepted.
    pub tasks: u64,
    /// Completions received.
    pub completions: u64,
    /// Tasks completed twice or more (must be 0).
    pub duplicates: u64,
    /// Tasks never completed (must be 0).
    pub missing: u64,
    /// Tasks that succeeded.
    pub ok: u64,
    /// Their share.
    pub success: f64,
    /// Tasks a second.
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Submissions the engine refused as full (tried again later).
    pub engine_full: u64,
    /// Where the Database domain's agents read.
    pub stores: String,
    /// Faults held for the whole run.
    pub held: Vec<&'static str>,
    /// Failed tasks by reason.
    pub reasons: Vec<(String, u64)>,
}

/// One kind of request.
#[derive(Serialize)]
pub struct KindRow {
    /// Its name.
    pub name: &'static str,
    /// The domains the classifier gave it.
    pub domains: String,
    /// Tasks.
    pub tasks: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Measured success.
    pub success: f64,
    /// Its 95% interval.
    pub interval: (f64, f64),
    /// The model's prediction from the agents' measured failure rates over the run (agent
    /// failures only: a whole domain down is outside it).
    pub predicted: f64,
}

/// One domain over the run.
#[derive(Serialize)]
pub struct DomainRow {
    /// Its name.
    pub name: String,
    /// Sub-tasks.
    pub subtasks: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Failovers (a sub-task's later attempt at another agent).
    pub failovers: u64,
    /// Sub-tasks its breaker shed.
    pub shed: u64,
    /// Measured success of its sub-tasks (shed ones count as failed).
    pub success: f64,
    /// The model's prediction from its agents' measured failure rates.
    pub predicted: f64,
}

/// One agent over the run.
#[derive(Serialize)]
pub struct AgentRow {
    /// Its name.
    pub name: String,
    /// Its domain.
    pub domain: String,
    /// Attempts.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Its breaker's state at the end.
    pub breaker: String,
}

/// One fault.
#[derive(Serialize)]
pub struct FaultRow {
    /// Its name.
    pub fault: &'static str,
    /// What it did.
    pub what: &'static str,
    /// The domain it hit.
    pub domain: &'static str,
    /// The agents whose path it broke.
    pub agents: &'static [&'static str],
    /// When it was on, seconds from the start.
    pub window: (f64, f64),
    /// Tasks completed while it was on that needed its domain, and their success.
    pub needing: (u64, f64),
    /// The same before any fault (the baseline).
    pub baseline: f64,
    /// Tasks completed while it was on that did not need its domain, and their success.
    pub others: (u64, f64),
    /// The domain's sub-tasks while it was on: succeeded, failed, shed by its breaker, and
    /// failovers.
    pub subtasks: (u64, u64, u64, u64),
    /// Their success, and its 95% interval.
    pub domain_success: (f64, f64, f64),
    /// The model's prediction for the agents left (from their failure rates while it was on;
    /// an agent its breaker kept out is left out).
    pub predicted: f64,
    /// The broken agents' attempts and failures while it was on.
    pub broken: Vec<(String, u64, u64)>,
    /// Breaker transitions from its start to its slot's end, each `(seconds from its start,
    /// "level name: from -> to")`.
    pub transitions: Vec<(f64, String)>,
    /// Where it was contained: "agent" (failover kept the domain whole), "domain" (the domain
    /// failed, other tasks did not), or "none".
    pub contained_at: &'static str,
    /// The lowest success of tasks needing the domain in a quarter second while it was on.
    pub dip: f64,
    /// Seconds from its end until tasks needing the domain were back at the baseline (minus 5
    /// points) for a quarter second; `None` if they were not by the slot's end.
    pub recovery_s: Option<f64>,
}

/// A quarter second of the run.
#[derive(Serialize)]
pub struct Bucket {
    /// Its start, seconds.
    pub t: f64,
    /// Tasks completed in it.
    pub tasks: u64,
    /// Their success.
    pub success: f64,
    /// Their 99th percentile latency, ms.
    pub p99_ms: f64,
}

fn rate(ok: u64, n: u64) -> f64 {
    if n == 0 { f64::NAN } else { ok as f64 / n as f64 }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn success_of<'a>(rs: impl Iterator<Item = &'a Record>) -> (u64, f64) {
    let (mut n, mut ok) = (0, 0);
    for r in rs {
        n += 1;
        ok += u64::from(r.ok);
    }
    (n, rate(ok, n))
}

/// The model's success for `domain` from each agent's failure rate between two stats (agents
/// with no attempts left out: their breakers kept them out).
fn predict(topo: &Topology, a: &Stats, b: &Stats, domain: &str) -> f64 {
    let Some(d) = topo.domain_id(domain) else { return f64::NAN };
    let rates: Vec<f64> = topo
        .agents_of(d)
        .iter()
        .filter_map(|&ag| {
            let (x, y) = (&a.agents[usize::from(ag.0)], &b.agents[usize::from(ag.0)]);
            let calls = y.calls - x.calls;
            (calls > 0).then(|| (y.failures - x.failures) as f64 / calls as f64)
        })
        .collect();
    if rates.is_empty() { 0.0 } else { subtask_success(&rates, topo.max_attempts(d)) }
}

fn domain_bit(topo: &Topology, name: &str) -> u64 {
    topo.domain_id(name).map_or(0, |d| 1u64 << d.0)
}

fn domain_names(topo: &Topology, bits: u64) -> String {
    (0..64)
        .filter(|i| bits & (1 << i) != 0)
        .filter_map(|i| topo.domain_name(metafed::DomainId(i)))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Builds the report of `out`.
pub fn build(topo: &Topology, out: &Outcome, held: &[Fault], admin: Option<String>, stores: String) -> Report {
    let recs = &out.records;
    let mut lat: Vec<f64> = recs.iter().map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let ok = recs.iter().filter(|r| r.ok).count() as u64;
    let mut reasons: Vec<(String, u64)> = Vec::new();
    for r in recs.iter().filter(|r| !r.ok) {
        match reasons.iter_mut().find(|x| x.0 == r.reason.describe()) {
            Some(x) => x.1 += 1,
            None => reasons.push((r.reason.describe().to_owned(), 1)),
        }
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    let run = RunRow {
        seconds: out.elapsed,
        tasks: out.submitted,
        completions: out.completions,
        duplicates: out.duplicates,
        missing: out.missing,
        ok,
        success: rate(ok, recs.len() as u64),
        per_second: recs.len() as f64 / out.elapsed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        engine_full: out.full,
        stores,
        held: held.iter().map(|f| f.name()).collect(),
        reasons,
    };
    let (a, b) = (&out.first, &out.last);
    let dom_pred: Vec<(String, f64)> =
        ["API", "Database", "Auth"].iter().map(|d| ((*d).to_owned(), predict(topo, a, b, d))).collect();
    let kinds = KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let rs: Vec<&Record> = recs.iter().filter(|r| usize::from(r.kind) == i).collect();
            let bits = rs.first().map_or(0, |r| r.domains);
            let n = rs.len() as u64;
            let ok = rs.iter().filter(|r| r.ok).count() as u64;
            let predicted = dom_pred.iter().filter(|(d, _)| bits & domain_bit(topo, d) != 0).map(|(_, p)| p).product();
            KindRow {
                name: k.name,
                domains: domain_names(topo, bits),
                tasks: n,
                ok,
                success: rate(ok, n),
                interval: wilson(ok, n, 1.96),
                predicted,
            }
        })
        .collect();
    let domains = b
        .domains
        .iter()
        .zip(&a.domains)
        .zip(&dom_pred)
        .map(|((y, x), (_, p))| DomainRow {
            name: y.name.clone(),
            subtasks: y.subtasks - x.subtasks,
            ok: y.ok - x.ok,
            failovers: y.failovers - x.failovers,
            shed: y.shed - x.shed,
            success: rate(y.ok - x.ok, (y.ok - x.ok) + (y.failed - x.failed) + (y.shed - x.shed)),
            predicted: *p,
        })
        .collect();
    let agents = b
        .agents
        .iter()
        .zip(&a.agents)
        .map(|(y, x)| AgentRow {
            name: y.name.clone(),
            domain: y.domain.clone(),
            calls: y.calls - x.calls,
            failures: y.failures - x.failures,
            mean_ms: y.mean_latency_ns as f64 / 1e6,
            breaker: format!("{:?}", y.breaker.state),
        })
        .collect();
    let lead_end = out.marks.first().map_or(f64::INFINITY, |m| m.window.0);
    let faults = out.marks.iter().map(|m| fault_row(topo, out, m, lead_end)).collect();
    let n_buckets = (out.elapsed / BUCKET).ceil() as usize;
    let mut timeline: Vec<(u64, u64, Vec<f64>)> = vec![(0, 0, Vec::new()); n_buckets.max(1)];
    for r in recs {
        let i = ((r.at / BUCKET) as usize).min(timeline.len() - 1);
        timeline[i].0 += 1;
        timeline[i].1 += u64::from(r.ok);
        timeline[i].2.push(r.latency_ms);
    }
    let timeline = timeline
        .into_iter()
        .enumerate()
        .map(|(i, (n, ok, mut l))| {
            l.sort_by(f64::total_cmp);
            Bucket { t: i as f64 * BUCKET, tasks: n, success: rate(ok, n), p99_ms: percentile(&l, 0.99) }
        })
        .collect();
    Report { run, kinds, domains, agents, faults, samples: out.samples.clone(), timeline, admin }
}

fn fault_row(topo: &Topology, out: &Outcome, m: &crate::run::Marks, lead_end: f64) -> FaultRow {
    let (domain, broken_agents) = m.fault.target();
    let bit = domain_bit(topo, domain);
    let (t0, t1) = m.window;
    let recs = &out.records;
    let in_window = |r: &&Record| r.at >= t0 && r.at < t1;
    let needing = success_of(recs.iter().filter(in_window).filter(|r| r.domains & bit != 0));
    let others = success_of(recs.iter().filter(in_window).filter(|r| r.domains & bit == 0));
    let baseline = success_of(recs.iter().filter(|r| r.at < lead_end && r.domains & bit != 0)).1;
    let others_baseline = success_of(recs.iter().filter(|r| r.at < lead_end && r.domains & bit == 0)).1;
    let d = topo.domain_id(domain).map_or(0, |d| usize::from(d.0));
    let (x, y) = (&m.before.domains[d], &m.during.domains[d]);
    let (ok, failed, shed, failovers) = (y.ok - x.ok, y.failed - x.failed, y.shed - x.shed, y.failovers - x.failovers);
    let (lo, hi) = wilson(ok, ok + failed + shed, 1.96);
    let measured = rate(ok, ok + failed + shed);
    let predicted = predict(topo, &m.before, &m.during, domain);
    let broken = broken_agents
        .iter()
        .filter_map(|name| {
            let i = m.during.agents.iter().position(|s| s.name == *name)?;
            let (x, y) = (&m.before.agents[i], &m.during.agents[i]);
            Some(((*name).to_owned(), y.calls - x.calls, y.failures - x.failures))
        })
        .collect();
    let transitions = out
        .events
        .iter()
        // The engine stamps events from its own start, a little after the run's clock reads
        // it: a transition at the fault's edge may read a few milliseconds early.
        .filter(|(at, _)| *at >= t0 - 0.05 && *at < m.slot_end)
        .map(|(at, e)| {
            let name = match e.level {
                metafed::Level::Meta => "meta".to_owned(),
                metafed::Level::Domain => topo.domain_name(metafed::DomainId(e.index)).unwrap_or("?").to_owned(),
                metafed::Level::Agent => topo.agent_name(metafed::AgentId(e.index)).unwrap_or("?").to_owned(),
            };
            ((at - t0).max(0.0), format!("{name}: {:?} -> {:?}", e.transition.from, e.transition.to))
        })
        .collect();
    // Success of tasks needing the domain per quarter second, from the fault's start to the
    // slot's end.
    let mut buckets = Vec::new();
    let mut t = t0;
    while t < m.slot_end {
        let s = success_of(recs.iter().filter(|r| r.at >= t && r.at < t + BUCKET && r.domains & bit != 0));
        buckets.push((t, s));
        t += BUCKET;
    }
    let dip = buckets.iter().filter(|(t, s)| *t < t1 && s.0 > 0).map(|(_, s)| s.1).fold(f64::NAN, f64::min);
    let back = |s: &(u64, f64)| s.0 > 0 && s.1 >= baseline - 0.05;
    let recovery_s = if buckets.iter().filter(|(t, _)| *t < t1).all(|(_, s)| s.0 == 0 || back(s)) {
        Some(0.0)
    } else {
        buckets.iter().find(|(t, s)| *t + BUCKET > t1 && back(s)).map(|(t, _)| (t - t1).max(0.0))
    };
    let contained_at = if needing.0 > 0 && needing.1 >= baseline - 0.05 {
        "agent"
    } else if others.0 == 0 || others.1 >= others_baseline - 0.05 {
        "domain"
    } else {
        "none"
    };
    FaultRow {
        fault: m.fault.name(),
        what: m.fault.what(),
        domain,
        agents: broken_agents,
        window: m.window,
        needing,
        baseline,
        others,
        subtasks: (ok, failed, shed, failovers),
        domain_success: (measured, lo, hi),
        predicted,
        broken,
        transitions,
        contained_at,
        dip,
        recovery_s,
    }
}

fn pct(x: f64) -> String {
    if x.is_nan() { "-".into() } else { format!("{:.1}%", 100.0 * x) }
}

/// The report as a person reads it.
pub fn text(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let run = &r.run;
    let _ = writeln!(
        s,
        "metafed federation: the seed's 3 x 3 on real services, {:.1} s ({})\n\n{} tasks, {} completions ({} twice, {} never), {} ok = {}, {:.0} tasks/s, p50 {:.2} ms, p99 {:.2} ms",
        run.seconds,
        run.stores,
        run.tasks,
        run.completions,
        run.duplicates,
        run.missing,
        run.ok,
        pct(run.success),
        run.per_second,
        run.p50_ms,
        run.p99_ms
    );
    if run.engine_full > 0 {
        let _ = writeln!(s, "the engine was full {} times (those submissions were tried again)", run.engine_full);
    }
    if !run.held.is_empty() {
        let _ = writeln!(s, "held for the whole run: {}", run.held.join(", "));
    }
    if !run.reasons.is_empty() {
        let rs: Vec<String> = run.reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "failed: {}", rs.join(", "));
    }
    let _ = writeln!(
        s,
        "\n{:<20} {:<24} {:>7} {:>8} {:>17} {:>9}",
        "kind", "domains (classifier)", "tasks", "success", "95% interval", "model"
    );
    for k in &r.kinds {
        let _ = writeln!(
            s,
            "{:<20} {:<24} {:>7} {:>8} {:>8}-{:<8} {:>9}",
            k.name,
            k.domains,
            k.tasks,
            pct(k.success),
            pct(k.interval.0),
            pct(k.interval.1),
            pct(k.predicted)
        );
    }
    let _ = writeln!(
        s,
        "(model: what the seed's model predicts from the agents' failure rates over the run; a domain\n whose every agent is down, its sub-tasks shed by its breaker, is outside it)"
    );
    let _ = writeln!(
        s,
        "\n{:<10} {:>9} {:>8} {:>7} {:>10} {:>9}   agents: attempts / failed / mean ms / breaker",
        "domain", "sub-tasks", "success", "shed", "failovers", "model"
    );
    for d in &r.domains {
        let ags: Vec<String> = r
            .agents
            .iter()
            .filter(|a| a.domain == d.name)
            .map(|a| format!("{} {}/{}/{:.2}/{}", a.name, a.calls, a.failures, a.mean_ms, a.breaker))
            .collect();
        let _ = writeln!(
            s,
            "{:<10} {:>9} {:>8} {:>7} {:>10} {:>9}   {}",
            d.name,
            d.subtasks,
            pct(d.success),
            d.shed,
            d.failovers,
            pct(d.predicted),
            ags.join(", ")
        );
    }
    for f in &r.faults {
        let _ = writeln!(s, "\nfault {} at {:.1}-{:.1} s: {}", f.fault, f.window.0, f.window.1, f.what);
        let broken: Vec<String> = f.broken.iter().map(|(n, c, x)| format!("{n} {x}/{c} attempts failed")).collect();
        let _ = writeln!(
            s,
            "  {}: sub-tasks {} ok, {} failed, {} shed, {} failovers: {} (95% {}-{}), model for the agents left {}; {}",
            f.domain,
            f.subtasks.0,
            f.subtasks.1,
            f.subtasks.2,
            f.subtasks.3,
            pct(f.domain_success.0),
            pct(f.domain_success.1),
            pct(f.domain_success.2),
            pct(f.predicted),
            broken.join(", ")
        );
        let _ = writeln!(
            s,
            "  tasks needing {}: {} at {} (baseline {}, lowest quarter second {}); others: {} at {}",
            f.domain,
            f.needing.0,
            pct(f.needing.1),
            pct(f.baseline),
            pct(f.dip),
            f.others.0,
            pct(f.others.1)
        );
        let rec = f.recovery_s.map_or("not by the slot's end".to_owned(), |x| format!("{x:.2} s after it ended"));
        let _ = writeln!(s, "  contained at the {} level; back at the baseline {rec}", f.contained_at);
        if !f.transitions.is_empty() {
            let ts: Vec<String> = f.transitions.iter().take(8).map(|(t, e)| format!("+{t:.2}s {e}")).collect();
            let more = f.transitions.len().saturating_sub(8);
            let _ = writeln!(
                s,
                "  breakers: {}{}",
                ts.join("; "),
                if more > 0 { format!("; {more} more") } else { String::new() }
            );
        }
    }
    if !r.samples.is_empty() {
        let _ = writeln!(s, "\nreplies, as the agents sent them:");
        for (d, body) in &r.samples {
            let _ = writeln!(s, "  {d}: {body}");
        }
    }
    if let Some(a) = &r.admin {
        let _ = writeln!(s, "\nmetrics were served at http://{a}/metrics while it ran");
    }
    s
}

/// The figure: success and p99 latency per quarter second, the faults shaded and named.
pub fn svg(r: &Report, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| format!("the figure {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(300);
    let end = r.run.seconds.max(1.0);
    let p99_max = r.timeline.iter().map(|b| b.p99_ms).filter(|x| x.is_finite()).fold(1.0, f64::max) * 1.1;
    let shade = RGBColor(250, 200, 120).mix(0.35);
    let mut ok_chart = ChartBuilder::on(&top)
        .caption("tasks succeeding (per quarter second), faults shaded", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..100.0)
        .map_err(|x| e(&x))?;
    ok_chart.configure_mesh().y_desc("success %").draw().map_err(|x| e(&x))?;
    for f in &r.faults {
        ok_chart
            .draw_series([Rectangle::new([(f.window.0, 0.0), (f.window.1, 100.0)], shade.filled())])
            .map_err(|x| e(&x))?;
        ok_chart
            .draw_series([Text::new(f.fault.to_owned(), (f.window.0, 8.0), ("sans-serif", 12))])
            .map_err(|x| e(&x))?;
    }
    let pts: Vec<(f64, f64)> =
        r.timeline.iter().filter(|b| b.tasks > 0).map(|b| (b.t + 0.125, 100.0 * b.success)).collect();
    ok_chart.draw_series(LineSeries::new(pts, BLUE.stroke_width(2))).map_err(|x| e(&x))?;
    let mut lat_chart = ChartBuilder::on(&bottom)
        .caption("p99 latency (ms)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..p99_max)
        .map_err(|x| e(&x))?;
    lat_chart.configure_mesh().x_desc("seconds").y_desc("ms").draw().map_err(|x| e(&x))?;
    for f in &r.faults {
        lat_chart
            .draw_series([Rectangle::new([(f.window.0, 0.0), (f.window.1, p99_max)], shade.filled())])
            .map_err(|x| e(&x))?;
    }
    let pts: Vec<(f64, f64)> =
        r.timeline.iter().filter(|b| b.p99_ms.is_finite()).map(|b| (b.t + 0.125, b.p99_ms)).collect();
    lat_chart.draw_series(LineSeries::new(pts, RED.stroke_width(2))).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
