//! Prometheus metrics (cargo feature `metrics`): a collector that reads the engine's counters at
//! scrape time and encodes them with the Prometheus project's client (`prometheus-client`), in
//! the OpenMetrics text format. Scraping reads atomics the workers write; it never stops them.
//!
//! Names follow Prometheus' conventions: a `metafed_` prefix, base units (`_seconds`), counters
//! ending in `_total`. Labels name the level's parts: `domain`, `agent`, `outcome`, `reason`,
//! `kind`, `state`, `worker`.

/// The Prometheus client the metrics are encoded with (to register them with an application's
/// own registry: [`Engine::register_metrics`](crate::Engine::register_metrics)).
pub use prometheus_client;

use crate::breaker::BreakerState;
use crate::buckets;
use crate::counters::Histogram;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::task::Reason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, Weak};

/// Latency buckets, in seconds: from 100 ns to 10 s, 1-2.5-5 per decade.
const BUCKETS_S: [f64; 25] = [
    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The engine's metrics, read at each scrape. Holds the engine weakly: once the engine is gone it
/// reports nothing.
#[derive(Debug, Clone)]
pub struct EngineCollector {
    sh: Weak<Shared>,
    /// Extra constant labels on every series (an application running several engines).
    labels: Vec<(String, String)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metafed engine")
    }
}

/// What `collector` reports now, in the OpenMetrics text format.
pub(crate) fn openmetrics(collector: EngineCollector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// The Prometheus text format of an OpenMetrics text: the two differ, for what is written here,
/// in that a counter's metadata names its samples' family (`foo_total`, not `foo`), and that
/// there are no `# UNIT` lines and no `# EOF`.
pub(crate) fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(prefix);
                out.push_str(name);
                out.push_str(suffix);
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl EngineCollector {
    pub(crate) fn of(sh: &Arc<Shared>) -> Self {
        EngineCollector { sh: Arc::downgrade(sh), labels: Vec::new() }
    }

    /// Adds a constant label to every series (e.g. `engine="orders"`).
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }
}

/// Writes one family of counters or gauges: `name` (the encoder adds the unit and, for a
/// counter, `_total`), then one sample per label set.
fn family<V: Sample>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, v) in samples {
        if labels.is_empty() {
            v.write(&mut m, kind)?;
        } else {
            v.write(&mut m.encode_family(&labels)?, kind)?;
        }
    }
    Ok(())
}

/// A sample value: counters take u64 or f64; gauges i64 or f64.
trait Sample {
    fn write(
        &self,
        e: &mut prometheus_client::encoding::MetricEncoder,
        kind: MetricType,
    ) -> Result<(), std::fmt::Error>;
}

impl Sample for u64 {
    fn write(
        &self,
        e: &mut prometheus_client::encoding::MetricEncoder,
        kind: MetricType,
    ) -> Result<(), std::fmt::Error> {
        match kind {
            MetricType::Counter => e.encode_counter::<NoLabelSet, _, u64>(self, None),
            _ => e.encode_gauge(&(*self as i64)),
        }
    }
}

impl Sample for f64 {
    fn write(
        &self,
        e: &mut prometheus_client::encoding::MetricEncoder,
        kind: MetricType,
    ) -> Result<(), std::fmt::Error> {
        match kind {
            MetricType::Counter => e.encode_counter::<NoLabelSet, _, f64>(self, None),
            _ => e.encode_gauge(self),
        }
    }
}

type Labels = Vec<(String, String)>;
/// Builds a series' labels: the collector's constant labels, then `extra`.
type LabelFn<'a> = &'a dyn Fn(&[(&str, &str)]) -> Labels;

impl Collector for EngineCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sh) = self.sh.upgrade() else { return Ok(()) };
        let s = crate::stats::collect(&sh);
        let base = |extra: &[(&str, &str)]| -> Labels {
            let mut l = self.labels.clone();
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        let one = |v: u64| vec![(base(&[]), v)];
        let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);

        // Tasks.
        family(&mut enc, "metafed_tasks_admitted", "Tasks a worker admitted.", None, counter, one(s.admitted))?;
        let completed = Reason::ALL.iter().map(|&r| {
            let n = s.reasons.iter().find(|c| c.reason == r).map_or(0, |c| c.count);
            (base(&[("outcome", status_name(r.status())), ("reason", reason_name(r))]), n)
        });
        family(
            &mut enc,
            "metafed_tasks_completed",
            "Tasks completed, by outcome and reason.",
            None,
            counter,
            completed,
        )?;
        family(
            &mut enc,
            "metafed_submissions_refused",
            "Submissions refused because the engine was full (backpressure).",
            None,
            counter,
            one(s.submit_full),
        )?;
        family(
            &mut enc,
            "metafed_tasks_in_flight",
            "Tasks accepted and not yet delivered.",
            None,
            gauge,
            one(s.in_flight as u64),
        )?;
        family(
            &mut enc,
            "metafed_task_slots",
            "Task slots (the most tasks in flight).",
            None,
            gauge,
            one(s.slots as u64),
        )?;
        self.latency(&mut enc, &sh)?;

        // The meta level.
        family(
            &mut enc,
            "metafed_degraded_admissions",
            "Tasks admitted in degraded mode (meta breaker open, essential priority).",
            None,
            counter,
            one(s.meta.degraded_admits),
        )?;
        family(
            &mut enc,
            "metafed_admission_cost_held",
            "Complexity units the admitted tasks hold of the admission's cost budget.",
            None,
            gauge,
            vec![(base(&[]), s.meta.cost_held)],
        )?;
        self.classify(&mut enc, &sh, &s, &base)?;
        family(
            &mut enc,
            "metafed_late_results",
            "Answers of deferred attempts that came after the attempt was abandoned.",
            None,
            counter,
            one(s.late_results),
        )?;
        family(
            &mut enc,
            "metafed_panic_routed_attempts",
            "Attempts sent to an agent with an open breaker because every other one was open.",
            None,
            counter,
            one(s.panic_routed),
        )?;
        family(
            &mut enc,
            "metafed_reliability_predicted_ratio",
            "The model's success probability for a one-domain task, from the agents' error rates.",
            None,
            gauge,
            vec![(base(&[]), s.predicted_success)],
        )?;
        let measured = if s.completed == 0 { 0.0 } else { s.ok as f64 / s.completed as f64 };
        family(
            &mut enc,
            "metafed_reliability_measured_ratio",
            "Tasks that succeeded over tasks completed, since the engine started.",
            None,
            gauge,
            vec![(base(&[]), measured)],
        )?;

        // The online reliability monitor, per domain.
        let windows = crate::stats::observe_reliability(&sh, &s);
        let per_window = |f: &dyn Fn(&crate::stats::ReliabilityWindow) -> f64| -> Vec<(Labels, f64)> {
            windows.iter().map(|w| (base(&[("domain", &w.domain)]), f(w))).collect()
        };
        family(
            &mut enc,
            "metafed_domain_reliability_predicted_ratio",
            "The model's success probability for one sub-task of the domain.",
            None,
            gauge,
            per_window(&|w| w.predicted),
        )?;
        family(
            &mut enc,
            "metafed_domain_reliability_measured_ratio",
            "Sub-tasks of the domain that succeeded over those finished, in the monitor's window (about a minute).",
            None,
            gauge,
            per_window(&|w| w.measured),
        )?;
        family(
            &mut enc,
            "metafed_domain_reliability_low_ratio",
            "Lower end of the 99.9% Wilson interval around the measured ratio.",
            None,
            gauge,
            per_window(&|w| w.low),
        )?;
        family(
            &mut enc,
            "metafed_domain_reliability_high_ratio",
            "Upper end of the 99.9% Wilson interval around the measured ratio.",
            None,
            gauge,
            per_window(&|w| w.high),
        )?;
        family(
            &mut enc,
            "metafed_domain_reliability_below_prediction",
            "1 when the prediction lies above the measured interval (at least 100 sub-tasks in the window).",
            None,
            gauge,
            per_window(&|w| f64::from(u8::from(w.below_prediction))),
        )?;
        family(
            &mut enc,
            "metafed_health_status",
            "0 healthy, 1 degraded, 2 unhealthy (what /health reports).",
            None,
            gauge,
            vec![(base(&[]), crate::stats::health_of(&sh, windows.clone()).status as u8 as f64)],
        )?;

        // Domains.
        let per_domain = |f: &dyn Fn(&crate::stats::DomainStats) -> u64| -> Vec<(Labels, u64)> {
            s.domains.iter().map(|d| (base(&[("domain", &d.name)]), f(d))).collect()
        };
        family(
            &mut enc,
            "metafed_domain_subtasks",
            "Sub-tasks a domain received.",
            None,
            counter,
            per_domain(&|d| d.subtasks),
        )?;
        let results = s.domains.iter().flat_map(|d| {
            [
                ("ok", d.ok),
                ("failed", d.failed),
                ("shed", d.shed),
                ("fault", d.faults),
                ("timeout", d.timeouts),
                ("overloaded", d.overloaded),
            ]
            .into_iter()
            .map(|(r, n)| (base(&[("domain", &d.name), ("result", r)]), n))
        });
        family(&mut enc, "metafed_domain_subtasks_finished", "Sub-tasks finished, by result.", None, counter, results)?;
        family(
            &mut enc,
            "metafed_domain_rerouted",
            "Sub-tasks that failed at a domain and were handed to an alternate domain.",
            None,
            counter,
            per_domain(&|d| d.rerouted),
        )?;
        // Keyed rate limits, per quota class (never per key: keys are unbounded).
        if let Some(k) = &sh.keyed {
            let ks = k.stats();
            let checks = ks.classes.iter().flat_map(|(class, admitted, refused)| {
                [("admitted", *admitted), ("limited", *refused)]
                    .into_iter()
                    .map(move |(r, n)| (base(&[("class", class.as_str()), ("result", r)]), n))
            });
            family(
                &mut enc,
                "metafed_keyed_checks",
                "Keyed rate-limit checks, by quota class and result.",
                None,
                counter,
                checks,
            )?;
            family(
                &mut enc,
                "metafed_keyed_keys",
                "Keys tracked by the keyed rate limits.",
                None,
                gauge,
                vec![(base(&[]), ks.tracked as f64)],
            )?;
            family(
                &mut enc,
                "metafed_keyed_evictions",
                "Idle keys forgotten to make room, and new keys refused because every key was active.",
                None,
                counter,
                vec![(base(&[("kind", "idle")]), ks.evicted), (base(&[("kind", "table_full")]), ks.table_full)],
            )?;
        }
        family(
            &mut enc,
            "metafed_domain_failovers",
            "Failed attempts a domain failed over from.",
            None,
            counter,
            per_domain(&|d| d.failovers),
        )?;
        family(
            &mut enc,
            "metafed_domain_recovered",
            "Sub-tasks that succeeded after a failed attempt (failures absorbed).",
            None,
            counter,
            per_domain(&|d| d.recovered),
        )?;
        family(&mut enc, "metafed_domain_hedges", "Hedge attempts sent.", None, counter, per_domain(&|d| d.hedges))?;
        family(
            &mut enc,
            "metafed_domain_hedge_wins",
            "Sub-tasks a hedge attempt won.",
            None,
            counter,
            per_domain(&|d| d.hedge_wins),
        )?;
        family(
            &mut enc,
            "metafed_domain_retries_denied",
            "Failovers and hedges the retry budget refused.",
            None,
            counter,
            per_domain(&|d| d.budget_denied),
        )?;
        family(
            &mut enc,
            "metafed_domain_waits",
            "Times a sub-task waited for an agent with room (every candidate at its limit).",
            None,
            counter,
            per_domain(&|d| d.waited),
        )?;

        // Agents.
        let agent_labels = |a: &crate::stats::AgentStats| base(&[("domain", &a.domain), ("agent", &a.name)]);
        let per_agent = |f: &dyn Fn(&crate::stats::AgentStats) -> u64| -> Vec<(Labels, u64)> {
            s.agents.iter().map(|a| (agent_labels(a), f(a))).collect()
        };
        family(
            &mut enc,
            "metafed_agent_attempts",
            "Attempts answered (or abandoned).",
            None,
            counter,
            per_agent(&|a| a.calls),
        )?;
        let failures = s.agents.iter().flat_map(|a| {
            let other = a.failures.saturating_sub(a.slow + a.panics + a.abandoned + a.overloaded);
            [
                ("slow", a.slow),
                ("panicked", a.panics),
                ("abandoned", a.abandoned),
                ("overloaded", a.overloaded),
                ("error", other),
            ]
            .into_iter()
            .map(move |(k, n)| {
                let mut l = agent_labels(a);
                l.push(("kind".into(), k.into()));
                (l, n)
            })
        });
        family(&mut enc, "metafed_agent_failures", "Failed attempts, by kind.", None, counter, failures)?;
        family(
            &mut enc,
            "metafed_agent_attempt",
            "Time spent in attempts (its rate over metafed_agent_attempts_total's is the mean).",
            Some(&Unit::Seconds),
            counter,
            s.agents.iter().map(|a| (agent_labels(a), a.latency_ns_total as f64 / 1e9)),
        )?;
        family(
            &mut enc,
            "metafed_agent_deferred_attempts",
            "Attempts deferred (answered later).",
            None,
            counter,
            per_agent(&|a| a.deferred),
        )?;
        family(
            &mut enc,
            "metafed_agent_cancelled_attempts",
            "Attempts abandoned because another attempt of their sub-task answered first.",
            None,
            counter,
            per_agent(&|a| a.cancelled),
        )?;
        family(
            &mut enc,
            "metafed_agent_attempts_in_flight",
            "Attempts in flight now (counted for agents with a concurrency limit).",
            None,
            gauge,
            per_agent(&|a| u64::from(a.in_flight)),
        )?;
        family(
            &mut enc,
            "metafed_agent_in_rotation",
            "1 if the agent's domain routes to it.",
            None,
            gauge,
            per_agent(&|a| u64::from(a.in_rotation)),
        )?;
        family(
            &mut enc,
            "metafed_agent_weight",
            "The agent's routing weight within its domain.",
            None,
            gauge,
            per_agent(&|a| u64::from(a.weight)),
        )?;

        // Breakers, every level.
        self.breakers(&mut enc, &s, &base)?;

        // Queues.
        let depths = sh
            .workers
            .iter()
            .enumerate()
            .map(|(w, ws)| (base(&[("worker", &w.to_string())]), ws.ingress.len()))
            .chain(std::iter::once((base(&[("worker", "overflow")]), sh.ingress_overflow.len() as u64)));
        family(
            &mut enc,
            "metafed_ingress_queue_depth",
            "Tasks waiting in a worker's ingress ring (worker=\"overflow\": in the shared overflow queue).",
            None,
            gauge,
            depths,
        )?;
        let c = &sh.completions;
        let depths = (0..c.len())
            .map(|w| (base(&[("worker", &w.to_string())]), c.depth(w)))
            .chain(std::iter::once((base(&[("worker", "overflow")]), c.overflow_depth())));
        family(
            &mut enc,
            "metafed_completion_queue_depth",
            "Completions waiting to be polled, per worker ring (worker=\"overflow\": in the shared overflow queue).",
            None,
            gauge,
            depths,
        )?;
        Ok(())
    }
}

impl EngineCollector {
    /// The decision engine: classified and unclassified tasks, and a complexity histogram per
    /// domain set (labelled by the domains' names joined with `+`; `other` for the sets past
    /// those each worker tracks).
    fn classify(
        &self,
        enc: &mut DescriptorEncoder,
        sh: &Shared,
        s: &Stats,
        base: LabelFn<'_>,
    ) -> Result<(), std::fmt::Error> {
        let c = &s.classify;
        family(
            enc,
            "metafed_tasks_classified",
            "Tasks that named no domain and were classified.",
            None,
            MetricType::Counter,
            vec![(base(&[]), c.classified)],
        )?;
        let causes = [
            ("failed", c.failed),
            ("panicked", c.panicked),
            ("no_domain", c.no_domain),
            ("invalid", c.invalid),
            ("no_classifier", c.no_classifier),
        ];
        family(
            enc,
            "metafed_tasks_unclassified",
            "Tasks that named no domain and could not be classified, by cause.",
            None,
            MetricType::Counter,
            causes.iter().map(|(cause, n)| (base(&[("cause", cause)]), *n)),
        )?;
        if c.complexity.is_empty() {
            return Ok(());
        }
        let topo = sh.topo.load();
        let mut m = enc.encode_descriptor(
            "metafed_task_complexity",
            "Classified tasks' complexity score (0 to 1), by domain set.",
            None,
            MetricType::Histogram,
        )?;
        for h in &c.complexity {
            let set = if h.domains.0 == u64::MAX {
                "other".to_string()
            } else {
                h.domains.iter().map(|d| topo.domain_name(d).unwrap_or("?")).collect::<Vec<_>>().join("+")
            };
            let buckets: Vec<(f64, u64)> = h
                .buckets
                .iter()
                .enumerate()
                .map(|(k, &n)| ((k + 1) as f64 / crate::classify::COMPLEXITY_BUCKETS as f64, n))
                .chain(std::iter::once((f64::MAX, 0)))
                .collect();
            let labels = base(&[("domains", &set)]);
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)?;
        }
        Ok(())
    }

    fn latency(&self, enc: &mut DescriptorEncoder, sh: &Shared) -> Result<(), std::fmt::Error> {
        let mut counts = Histogram::empty_counts();
        for w in sh.workers.iter() {
            w.counters.latency.merge_into(&mut counts);
        }
        // Each log-linear bucket (12.5% wide) counts towards the boundaries at or above its
        // middle value: within a bucket's width of exact.
        let mut cumulative = [0u64; BUCKETS_S.len()];
        let (mut sum, mut count) = (0.0f64, 0u64);
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let v = buckets::value(i) as f64 / 1e9;
            sum += v * c as f64;
            count += c;
            for (b, &le) in BUCKETS_S.iter().enumerate() {
                if v <= le {
                    cumulative[b] += c;
                }
            }
        }
        let buckets: Vec<(f64, u64)> = BUCKETS_S
            .iter()
            .zip(cumulative.iter())
            .enumerate()
            .map(|(i, (&le, &c))| (le, c - if i == 0 { 0 } else { cumulative[i - 1] }))
            .chain(std::iter::once((f64::MAX, count - cumulative[BUCKETS_S.len() - 1])))
            .collect();
        let mut m = enc.encode_descriptor(
            "metafed_task_latency",
            "Submission to completion, on the engine's clock.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        if self.labels.is_empty() {
            return m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None);
        }
        m.encode_family(&self.labels)?.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn breakers(&self, enc: &mut DescriptorEncoder, s: &Stats, base: LabelFn<'_>) -> Result<(), std::fmt::Error> {
        let mut all: Vec<(Labels, &crate::breaker::BreakerSnapshot)> =
            vec![(base(&[("level", "meta"), ("name", "meta")]), &s.meta.breaker)];
        all.extend(s.domains.iter().map(|d| (base(&[("level", "domain"), ("name", &d.name)]), &d.breaker)));
        all.extend(s.agents.iter().map(|a| {
            let name = format!("{}/{}", a.domain, a.name);
            (base(&[("level", "agent"), ("name", &name)]), &a.breaker)
        }));
        let states = all.iter().flat_map(|(l, b)| {
            [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen].into_iter().map(move |st| {
                let mut l = l.clone();
                l.push(("state".into(), state_name(st).into()));
                (l, u64::from(b.state == st))
            })
        });
        family(
            enc,
            "metafed_breaker_state",
            "1 for the state a breaker is in, 0 for the others.",
            None,
            MetricType::Gauge,
            states,
        )?;
        let transitions = all.iter().flat_map(|(l, b)| {
            [
                ("open", b.opened),
                ("reopen", b.reopened),
                ("half_open", b.half_opened),
                ("close", b.closed),
                ("eject", b.ejected),
            ]
            .into_iter()
            .map(move |(t, n)| {
                let mut l = l.clone();
                l.push(("transition".into(), t.into()));
                (l, n)
            })
        });
        family(
            enc,
            "metafed_breaker_transitions",
            "Breaker state changes, by transition (eject: an outlier ejection of an agent).",
            None,
            MetricType::Counter,
            transitions,
        )
    }
}

fn status_name(s: crate::task::Status) -> &'static str {
    match s {
        crate::task::Status::Ok => "ok",
        crate::task::Status::Failed => "failed",
        crate::task::Status::TimedOut => "timed_out",
        crate::task::Status::Rejected => "rejected",
    }
}

fn state_name(s: BreakerState) -> &'static str {
    match s {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// A reason's name in snake case, as in the JSON and the C constants.
pub(crate) fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::None => "none",
        Reason::AgentsExhausted => "agents_exhausted",
        Reason::DomainFault => "domain_fault",
        Reason::MetaFault => "meta_fault",
        Reason::NoAgent => "no_agent",
        Reason::DomainShed => "domain_shed",
        Reason::Degraded => "degraded",
        Reason::Throttled => "throttled",
        Reason::RateLimited => "rate_limited",
        Reason::ShuttingDown => "shutting_down",
        Reason::Deadline => "deadline",
        Reason::DomainTimeout => "domain_timeout",
        Reason::BudgetExhausted => "budget_exhausted",
        Reason::DomainOverloaded => "domain_overloaded",
        Reason::Unclassified => "unclassified",
    }
}

#[cfg(test)]
mod tests {
    /// 1, 2.5 and 5 in every decade from 100 ns to 5 s, then 10 s.
    #[test]
    fn the_latency_buckets_are_one_two_and_a_half_five_per_decade() {
        let want: Vec<f64> =
            (-7..=0).flat_map(|e| [1.0, 2.5, 5.0].map(|m| m * 10f64.powi(e))).chain(std::iter::once(10.0)).collect();
        assert_eq!(super::BUCKETS_S.len(), want.len());
        for (got, want) in super::BUCKETS_S.iter().zip(&want) {
            assert!((got / want - 1.0).abs() < 1e-9, "{got} != {want}");
        }
    }
}
