//! Operating the engine: Prometheus metrics (checked by `promtool`, a parser no one here wrote),
//! the admin endpoint over real HTTP, and the online reliability monitor.

#![cfg(feature = "admin")]

use crate::common::wait_for;
use metafed::admin::AdminOptions;
use metafed::stats::HealthStatus;
use metafed::{DomainId, Engine, EngineConfig, Levels, Task, Topology};
use metafed_bench::driver::{Load, closed_loop};
use std::io::{Read, Write};
use std::time::Duration;

/// The seed's federation at 12% agent errors, breakers off (so health depends on the
/// reliability monitor alone).
fn engine() -> Engine {
    let mut b = Topology::seed_builder(0.12);
    b.breakers(Levels::disabled());
    Engine::start(b.build().unwrap(), EngineConfig { workers: 2, ..EngineConfig::default() }).unwrap()
}

/// `promtool check metrics` on `text`; None when promtool is not installed (and not required).
fn promtool(text: &str) -> Option<String> {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(std::env::var_os("METAFED_REQUIRE_TOOLS").is_none(), "promtool is required but cannot run: {e}");
            eprintln!("promtool not installed (apt-get install prometheus): skipping its check");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool rejected the metrics:\n{said}");
    Some(said)
}

/// The value of the sample `series` (name and labels exactly as written) in a text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_pass_promtool_and_agree_with_stats() {
    let engine = engine();
    let report = closed_loop(&engine, &Load::w1(20_000), |_| {});
    assert_eq!(report.completed, 20_000);
    let text = engine.metrics_text();
    if let Some(said) = promtool(&text) {
        // promtool prints lint findings (not errors) on stdout; there should be none.
        assert!(said.trim().is_empty(), "promtool lint findings:\n{said}");
    }
    let s = engine.stats();
    assert_eq!(sample(&text, "metafed_tasks_completed_total{outcome=\"ok\",reason=\"none\"}"), s.ok as f64);
    assert_eq!(sample(&text, "metafed_task_latency_seconds_count"), 20_000.0);
    assert_eq!(sample(&text, "metafed_task_latency_seconds_bucket{le=\"+Inf\"}"), 20_000.0);
    assert_eq!(sample(&text, "metafed_domain_subtasks_total{domain=\"API\"}"), s.domains[0].subtasks as f64);
    assert_eq!(sample(&text, "metafed_breaker_state{level=\"meta\",name=\"meta\",state=\"closed\"}"), 1.0);
    assert_eq!(
        sample(&text, "metafed_agent_attempts_total{domain=\"Database\",agent=\"SQL\"}"),
        s.agents[3].calls as f64
    );
    // The time in attempts is their sum, not the mean times the calls (which, rounded down,
    // could go backwards between scrapes: no counter may).
    let sql = &s.agents[3];
    assert!(sql.latency_ns_total >= sql.mean_latency_ns * sql.calls && sql.latency_ns_total > 0);
    assert_eq!(
        sample(&text, "metafed_agent_attempt_seconds_total{domain=\"Database\",agent=\"SQL\"}"),
        sql.latency_ns_total as f64 / 1e9
    );
    assert_eq!(sample(&text, "metafed_health_status"), 0.0);
    for family in [
        "metafed_tasks_in_flight",
        "metafed_ingress_queue_depth",
        "metafed_completion_queue_depth",
        "metafed_domain_hedges_total",
        "metafed_domain_retries_denied_total",
        "metafed_breaker_transitions_total",
        "metafed_reliability_predicted_ratio",
        "metafed_domain_reliability_measured_ratio",
        "metafed_domain_reliability_below_prediction",
        "metafed_agent_attempt_seconds_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing");
    }
    // OpenMetrics: the same samples, `# EOF` at the end.
    let om = engine.metrics_openmetrics();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE metafed_tasks_completed counter"));
}

#[test]
fn an_application_registry_includes_the_engine() {
    let engine = engine();
    let mut registry = metafed::metrics::prometheus_client::registry::Registry::default();
    engine.register_metrics(&mut registry);
    let mut text = String::new();
    metafed::metrics::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("metafed_tasks_admitted_total 0"));
    drop(engine);
    // The collector holds the engine weakly: once it is gone, it reports nothing.
    let mut text = String::new();
    metafed::metrics::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(!text.contains("metafed_tasks_admitted"));
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn get(url: &str, auth: Option<&str>, accept: Option<&str>) -> (u16, String, String) {
    let mut req = client().get(url);
    if let Some(t) = auth {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let mut resp = req.call().unwrap();
    let ctype = resp.headers().get("content-type").map_or("", |v| v.to_str().unwrap()).to_string();
    (resp.status().as_u16(), ctype, resp.body_mut().read_to_string().unwrap())
}

#[test]
fn the_admin_endpoint_serves_metrics_health_and_readiness() {
    let engine = engine();
    let addr = engine.serve_admin(&AdminOptions { addr: "127.0.0.1:0".into(), token: Some("s3cret".into()) }).unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    assert_eq!(engine.admin_addr(), Some(addr));
    let url = |p: &str| format!("http://{addr}{p}");
    closed_loop(&engine, &Load::w1(5_000), |_| {});

    // Without the token, or with a wrong one: 401, and nothing else is said.
    let (code, _, body) = get(&url("/metrics"), None, None);
    assert_eq!(code, 401, "{body}");
    assert_eq!(get(&url("/health"), Some("wrong"), None).0, 401);

    let (code, ctype, text) = get(&url("/metrics"), Some("s3cret"), None);
    assert_eq!((code, ctype.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(sample(&text, "metafed_task_latency_seconds_count"), 5_000.0);
    promtool(&text);
    let (code, ctype, om) = get(
        &url("/metrics?x=1"),
        Some("s3cret"),
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(code, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.ends_with("# EOF\n"));

    let (code, ctype, body) = get(&url("/health"), Some("s3cret"), None);
    assert_eq!((code, ctype.as_str()), (200, "application/json"), "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "healthy", "{body}");
    assert_eq!(h["lifecycle"], "running");
    assert_eq!(h["reliability"].as_array().unwrap().len(), 3);
    assert_eq!(get(&url("/ready"), Some("s3cret"), None).0, 200);

    // Bad requests: 404, 405, and garbage on the socket get answers, not a dead server.
    assert_eq!(get(&url("/nope"), Some("s3cret"), None).0, 404);
    let resp = client().post(&url("/metrics")).header("Authorization", "Bearer s3cret").send("x").unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    raw.write_all(b"\x00\x01 not http at all\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert_eq!(get(&url("/ready"), Some("s3cret"), None).0, 200, "still serving");

    // A second endpoint is refused; the error says where the first listens.
    let err = engine.serve_admin(&AdminOptions { addr: "127.0.0.1:0".into(), token: None }).unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    // After a shutdown: not ready, unhealthy, and health says why.
    engine.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(get(&url("/ready"), Some("s3cret"), None).0, 503);
    let (code, _, body) = get(&url("/health"), Some("s3cret"), None);
    assert_eq!(code, 503);
    assert!(body.contains("engine stopped"), "{body}");
    assert!(engine.stop_admin());
    assert!(!engine.stop_admin());
    // The listener closes (tiny_http's accept thread ends on its own, soon after).
    wait_for("the admin port to close", || std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn bad_admin_options_are_refused_with_the_argument_named() {
    let engine = engine();
    let err = engine.serve_admin(&AdminOptions { addr: "no-port".into(), token: None }).unwrap_err();
    assert!(err.to_string().contains("admin address \"no-port\""), "{err}");
    let err =
        engine.serve_admin(&AdminOptions { addr: "127.0.0.1:0".into(), token: Some("two words".into()) }).unwrap_err();
    assert!(err.to_string().contains("admin token"), "{err}");
    assert_eq!(engine.admin_addr(), None);
}

#[test]
fn health_turns_degraded_when_a_domain_does_worse_than_predicted() {
    let engine = engine();
    let run = |n: u64| {
        for i in 0..n {
            let t = engine.try_submit(&Task::new(i, DomainId(1)).waitable()).unwrap();
            engine.wait(t, None).unwrap();
        }
    };
    run(500);
    let h = engine.health();
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    let db = &h.reliability[1];
    assert_eq!((db.domain.as_str(), db.finished), ("Database", 500));
    assert!(!db.below_prediction && db.low <= db.predicted, "{db:?}");

    // A correlated fault the agents' error rates do not explain: every call fails.
    engine.set_domain_down(DomainId(1), true);
    run(500);
    let h = engine.health();
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    assert!(h.reliability[1].below_prediction);
    assert!(h.reasons.iter().any(|r| r.starts_with("domain Database:") && r.contains("below the predicted")), "{h:?}");
    assert!(!h.reliability[0].below_prediction, "other domains are not blamed");
}

#[test]
fn the_shipped_alerting_rules_pass_promtool() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/prometheus/alerts.yml");
    match std::process::Command::new("promtool").args(["check", "rules", rules]).output() {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(std::env::var_os("METAFED_REQUIRE_TOOLS").is_none(), "promtool is required but cannot run: {e}");
            eprintln!("promtool not installed (apt-get install prometheus): skipping its check");
        }
    }
}

#[test]
fn the_rate_limit_and_an_agents_concurrency_change_while_tasks_run() {
    use metafed::{AgentSpec, Reason, Request, Status};
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    b.agent(d, "limited", AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id)).max_concurrency(2)).unwrap();
    b.agent(d, "open", AgentSpec::handler(|r: &Request<'_>| Ok(r.task_id))).unwrap();
    b.breakers(Levels::disabled());
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let run = |from: u64, n: u64| -> Vec<metafed::Completion> {
        let ts: Vec<_> = (from..from + n).map(|i| engine.submit(&Task::new(i, d).waitable(), None).unwrap()).collect();
        ts.into_iter().map(|t| engine.wait(t, None).unwrap()).collect()
    };
    assert!(run(0, 100).iter().all(|c| c.status == Status::Ok));

    // One task a minute, no burst: of 50 submitted at once, the first passes, the rest are
    // rate limited.
    let _actor = metafed::audit::act_as("test", "rate limit drill");
    engine.set_rate_limit(1.0 / 60.0, 1.0).unwrap();
    let done = run(100, 50);
    let limited = done.iter().filter(|c| c.reason == Reason::RateLimited).count();
    assert!(limited >= 48, "{limited} of 50 rate limited");
    engine.set_rate_limit(0.0, 1.0).unwrap();
    assert!(run(150, 100).iter().all(|c| c.status == Status::Ok));

    engine.set_agent_max_concurrency(metafed::AgentId(0), 5).unwrap();
    assert_eq!(engine.stats().agents[0].max_concurrency, 5);
    assert!(run(250, 100).iter().all(|c| c.status == Status::Ok));
    let err = engine.set_agent_max_concurrency(metafed::AgentId(1), 3).unwrap_err();
    assert!(err.to_string().contains("agent D/open") && err.to_string().contains("not added or removed"), "{err}");
    assert!(engine.set_agent_max_concurrency(metafed::AgentId(0), 0).is_err());
    assert!(engine.set_agent_max_concurrency(metafed::AgentId(9), 1).is_err());
    let err = engine.set_rate_limit(f64::NAN, 1.0).unwrap_err();
    assert!(err.to_string().contains("per_s"), "{err}");
    assert!(engine.set_rate_limit(10.0, 0.5).unwrap_err().to_string().contains("burst"));

    let log = engine.audit_log();
    let summary: Vec<_> = log.iter().map(|r| (r.action, r.from.as_str(), r.to.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("rate_limit", "none", "0.016666666666666666/s, burst 1"),
            ("rate_limit", "0.016666666666666666/s, burst 1", "none"),
            ("max_concurrency", "2", "5"),
        ]
    );
    assert!(log.iter().all(|r| r.actor == "test" && r.reason == "rate limit drill"));
}

#[test]
fn breaker_settings_and_time_budgets_change_while_tasks_run() {
    use metafed::breaker::{BreakerConfig, BreakerMode};
    use metafed::{AgentSpec, FailureKind, Level, Request, Status};
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    // An agent that takes 30 ms: inside the seed's 50 ms agent budget, outside 20 ms.
    b.agent(
        d,
        "slow",
        AgentSpec::handler(|r: &Request<'_>| {
            std::thread::sleep(Duration::from_millis(30));
            Ok(r.task_id)
        }),
    )
    .unwrap();
    // Settings of the file's own, not the defaults: reading them back must return these.
    let started = BreakerConfig { consecutive_failures: 4, half_open_probes: 2, ..BreakerConfig::agent() };
    let domain = BreakerConfig { consecutive_failures: 9, ..BreakerConfig::domain() };
    b.breakers(Levels { agent: started.clone(), domain: domain.clone(), ..Levels::default() });
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let run = |id: u64| engine.wait(engine.submit(&Task::new(id, d).waitable(), None).unwrap(), None).unwrap();
    assert_eq!(run(1).status, Status::Ok);
    assert_eq!(engine.breaker_config(Level::Agent), Some(started));
    assert_eq!(engine.breaker_config(Level::Domain), Some(domain.clone()));
    assert_ne!(domain, BreakerConfig::domain());

    let _actor = metafed::audit::act_as("test", "tighter budget");
    let tight = BreakerConfig {
        timeout: Duration::from_millis(20),
        consecutive_failures: 100,
        window: Duration::from_secs(3),
        ..BreakerConfig::agent()
    };
    engine.set_breaker_config(Level::Agent, &tight).unwrap();
    assert_eq!(engine.breaker_config(Level::Agent), Some(tight.clone()));
    let c = run(2);
    assert_eq!(c.status, Status::Failed);
    assert!(c.failures().iter().any(|f| f.kind == FailureKind::Slow), "{:?}", c.failures());

    // Back to the seed's budget, and the mode with it: disabled breakers still time calls.
    engine.set_breaker_config(Level::Agent, &BreakerConfig::agent().disabled()).unwrap();
    assert_eq!(engine.stats().agents[0].breaker.mode, BreakerMode::Disabled);
    assert_eq!(run(3).status, Status::Ok);

    let bad = BreakerConfig { half_open_probes: 0, ..BreakerConfig::domain() };
    let err = engine.set_breaker_config(Level::Domain, &bad).unwrap_err();
    assert!(err.to_string().contains("breakers.domain") && err.to_string().contains("half_open_probes"), "{err}");
    assert_eq!(engine.breaker_config(Level::Domain), Some(domain), "a refused change changes nothing");

    let actions: Vec<_> = engine.audit_log().iter().map(|r| (r.action, r.target.clone())).collect();
    assert_eq!(
        actions,
        [
            ("breaker_config", "agent breakers".to_string()),
            ("breaker_mode", "agent D/slow".to_string()),
            ("breaker_config", "agent breakers".to_string()),
        ]
    );
}

#[test]
fn a_toml_file_reloads_what_can_change_while_tasks_run() {
    use metafed::Level;
    use metafed::breaker::BreakerConfig;
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/topology.toml")).unwrap();
    let topology = Topology::from_toml(&original).unwrap();
    let config = EngineConfig { workers: 1, pin: false, ..EngineConfig::from_toml(&original).unwrap() };
    let engine = Engine::start(topology, config).unwrap();
    // The same file: nothing to do (the worker count differs from the file's 0 = per core, a
    // restart setting, but `workers = 0` is not a request for a count).
    let same = engine.reload_toml(&original).unwrap();
    assert!(same.applied.is_empty(), "{same:?}");

    let changed = original
        .replace("consecutive_failures = 3", "consecutive_failures = 7")
        .replace(
            "[engine.admission]",
            "[engine.admission]\nrate_limit_per_s = 50000.0\nrate_limit_burst = 100.0\nmax_concurrent = 64",
        )
        .replace("max_in_flight = 8192", "max_in_flight = 1024");
    let r = engine.reload_toml(&changed).unwrap();
    assert_eq!(r.applied, ["breakers.agent", "engine.admission"]);
    assert_eq!((engine.admission().max_concurrent, engine.admission().rate_limit_per_s), (64, 50000.0));
    assert_eq!(r.needs_restart, ["engine.workers / max_in_flight"]);
    let agent = engine.breaker_config(Level::Agent).unwrap();
    assert_eq!((agent.consecutive_failures, agent.timeout), (7, BreakerConfig::agent().timeout));

    // A bad new domain, or a file that does not parse: an error, and nothing changes.
    let err = engine.reload_toml(&original.replace("name = \"Database\"", "name = \"Store\"\nmax_attempts = 0"));
    assert!(err.unwrap_err().to_string().contains("domain Store: max_attempts must be 1 to 255"));
    assert!(engine.topology().domain_id("Database").is_some());
    assert!(engine.reload_toml("[[domains]\nname = ").is_err());
    let bad = changed.replace("consecutive_failures = 5", "consecutive_failures = 5\nhalf_open_probes = 0");
    assert!(engine.reload_toml(&bad).unwrap_err().to_string().contains("half_open_probes"));
    assert_eq!(engine.breaker_config(Level::Agent).unwrap().consecutive_failures, 7);
    let actions: Vec<_> = engine.audit_log().iter().map(|r| r.action).collect();
    assert_eq!(actions, ["breaker_config", "rate_limit", "max_concurrent"]);
}

#[test]
fn the_throttle_changes_while_tasks_wait_for_it() {
    use metafed::{AdmissionConfig, Reason, Status};
    use std::sync::Arc;
    // One agent that holds every attempt until released: tasks past the throttle stay in flight.
    let held: Arc<std::sync::Mutex<Vec<metafed::Attempt>>> = Arc::default();
    let keep = held.clone();
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    b.agent(
        d,
        "held",
        metafed::AgentSpec::deferred(move |_: &metafed::Request<'_>, a: metafed::Attempt| keep.lock().unwrap().push(a)),
    )
    .unwrap();
    let minute = Some(std::time::Duration::from_secs(60));
    b.timeouts(minute, minute, minute).unwrap();
    let admission = AdmissionConfig { max_concurrent: 2, queue_capacity: 3, ..AdmissionConfig::default() };
    let engine = Engine::start(
        b.build().unwrap(),
        EngineConfig { workers: 1, pin: false, admission: admission.clone(), ..EngineConfig::default() },
    )
    .unwrap();
    let tickets: Vec<_> = (0..8).map(|id| engine.submit(&Task::new(id, d).waitable(), None).unwrap()).collect();
    // Two run, three wait, three are refused at once.
    let refused: Vec<_> = tickets[5..].iter().map(|&t| engine.wait(t, None).unwrap()).collect();
    assert!(refused.iter().all(|c| c.status == Status::Rejected && c.reason == Reason::Throttled), "{refused:?}");

    // A bad setting names itself and changes nothing.
    let bad = AdmissionConfig { essential_priority: 9, ..admission.clone() };
    assert!(engine.set_admission(&bad).unwrap_err().to_string().contains("essential_priority"));
    assert_eq!(engine.admission(), admission);

    // Turned off: the waiting tasks go on; every task completes once the agent answers.
    engine.set_admission(&AdmissionConfig { max_concurrent: 0, ..admission }).unwrap();
    let mut answered = 0;
    wait_for("the waiting tasks to reach the agent", || {
        for a in std::mem::take(&mut *held.lock().unwrap()) {
            a.succeed(1).unwrap();
            answered += 1;
        }
        answered >= 5
    });
    assert_eq!(answered, 5, "the waiting tasks reached the agent");
    for &t in &tickets[..5] {
        assert_eq!(engine.wait(t, Some(std::time::Duration::from_secs(30))).unwrap().status, Status::Ok);
    }
    let audit: Vec<_> = engine.audit_log().iter().map(|r| (r.action, r.from.clone(), r.to.clone())).collect();
    assert_eq!(audit, [("max_concurrent", "2".to_string(), "0".to_string())]);
}

#[test]
fn an_agent_marked_down_fails_its_calls_and_its_domain_fails_over() {
    use metafed::{AgentId, FailureKind, Status};
    let engine =
        Engine::start(Topology::seed(0.0).unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let run =
        |id: u64| engine.wait(engine.submit(&Task::new(id, DomainId(0)).waitable(), None).unwrap(), None).unwrap();
    let _actor = metafed::audit::act_as("test", "outage drill");
    assert!(engine.set_agent_down(AgentId(0), true));
    // Every task still succeeds (the domain fails over); the first agent's calls fail as Down.
    for id in 0..30 {
        let c = run(id);
        assert_eq!(c.status, Status::Ok);
        assert!(c.failures().iter().all(|f| f.kind == FailureKind::Down && f.agent == AgentId(0)));
    }
    assert!(engine.stats().agents[0].failures > 0);
    // Down with its domain: the domain's flag wins while set, the agent's stays after.
    assert!(engine.set_domain_down(DomainId(0), true));
    assert_eq!(run(100).status, Status::Failed);
    assert!(engine.set_domain_down(DomainId(0), false));
    assert!(engine.set_agent_down(AgentId(0), false));
    assert!(!engine.set_agent_down(AgentId(99), true));
    let last: Vec<_> = engine.audit_log().iter().map(|r| (r.action, r.to.clone())).collect();
    assert_eq!(last.first(), Some(&("agent_down", "true".to_string())));
}

/// The engine's stats once its completion counters reach `n` (a waiter may see its completion
/// a moment before the worker's counters do).
fn settled(engine: &Engine, n: u64) -> metafed::stats::Stats {
    wait_for("the completion counters to catch up", || engine.stats().completed >= n);
    engine.stats()
}

/// An agent that counts its calls.
fn counting(calls: &std::sync::Arc<std::sync::atomic::AtomicU64>) -> metafed::AgentSpec {
    let calls = calls.clone();
    metafed::AgentSpec::handler(move |_: &metafed::Request<'_>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(1)
    })
}

#[test]
fn weights_share_a_domains_traffic_and_change_while_running() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut t = Topology::builder();
    let d = t.domain("D").unwrap();
    let ia = t.agent(d, "a", counting(&a)).unwrap();
    let ib = t.agent(d, "b", counting(&b).weight(3)).unwrap();
    assert!(t.agent(d, "c", counting(&a).weight(0)).unwrap_err().to_string().contains("weight must be 1 to 100"));
    let engine = Engine::start(t.build().unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let run = |n: u64| {
        for id in 0..n {
            let c = engine.wait(engine.submit(&Task::new(id, d).waitable(), None).unwrap(), None).unwrap();
            assert_eq!(c.status, metafed::Status::Ok);
        }
    };
    run(400);
    // One worker, every call answered: the rotation's cycle of four is followed exactly.
    assert_eq!((a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)), (100, 300));
    assert_eq!(engine.agent_weight(ib), Some(3));

    engine.set_agent_weight(ia, 4).unwrap();
    engine.set_agent_weight(ib, 1).unwrap();
    run(500);
    assert_eq!((a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)), (500, 400));
    assert!(engine.set_agent_weight(ia, 101).unwrap_err().to_string().contains("agent D/a: weight must be 1 to 100"));
    assert_eq!(engine.stats().agents.iter().map(|s| s.weight).collect::<Vec<_>>(), [4, 1]);
    // One of two agents open: degraded, counted once whatever its weight.
    assert!(engine.set_breaker_mode(metafed::Level::Agent, 1, metafed::breaker::BreakerMode::ForcedOpen));
    let h = engine.health();
    assert_eq!(h.status, metafed::stats::HealthStatus::Degraded, "{h:?}");
    assert!(h.reasons.iter().any(|r| r.contains("1/2 agents available")), "{h:?}");
    assert!(engine.set_breaker_mode(metafed::Level::Agent, 1, metafed::breaker::BreakerMode::Normal));
    let audit: Vec<_> = engine.audit_log().iter().map(|r| (r.action, r.to.clone())).collect();
    assert_eq!(audit[..2], [("agent_weight", "4".to_string()), ("agent_weight", "1".to_string())]);
}

#[test]
fn agents_are_added_and_removed_while_tasks_run_and_no_task_is_lost() {
    use metafed::{AgentId, Status};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let first = Arc::new(AtomicU64::new(0));
    let added = Arc::new(AtomicU64::new(0));
    let mut t = Topology::builder();
    let d = t.domain("D").unwrap();
    let old = t.agent(d, "old", counting(&first)).unwrap();
    let engine = Arc::new(
        Engine::start(
            t.build().unwrap(),
            EngineConfig { workers: 2, pin: false, spare_agents: 2, ..EngineConfig::default() },
        )
        .unwrap(),
    );
    // Submitters run throughout: every task must complete once, and succeed (the domain always
    // has an agent in rotation).
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..2u64)
        .map(|s| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = engine.submit(&Task::new(s << 32 | n, d).waitable(), None).unwrap();
                    let c = engine.wait(t, Some(std::time::Duration::from_secs(30))).unwrap();
                    assert_eq!(c.status, Status::Ok, "{c:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    wait_for("calls to the first agent", || first.load(Ordering::Relaxed) > 1000);
    let _actor = metafed::audit::act_as("test", "migration");
    let new = engine.add_agent(d, "new", counting(&added).weight(2)).unwrap();
    assert_eq!(new, AgentId(1));
    wait_for("calls to the added agent", || added.load(Ordering::Relaxed) > 1000);
    engine.remove_agent(old).unwrap();
    // Workers see the removal from their next turn: once the new agent has taken another
    // thousand calls (every worker has turned since), no call reaches the old agent.
    let added_then = added.load(Ordering::Relaxed);
    wait_for("more calls to the added agent", || added.load(Ordering::Relaxed) > added_then + 1000);
    let calls_then = first.load(Ordering::Relaxed);
    let added_then = added.load(Ordering::Relaxed);
    wait_for("still more calls to the added agent", || added.load(Ordering::Relaxed) > added_then + 1000);
    assert_eq!(first.load(Ordering::Relaxed), calls_then, "a removed agent is not called");
    stop.store(true, Ordering::Relaxed);
    let submitted: u64 = submitters.into_iter().map(|h| h.join().unwrap()).sum();
    // A waiter may see its completion a moment before the worker's counters do.
    let s = settled(&engine, submitted);
    assert_eq!(s.completed, submitted, "every task completed once");
    assert_eq!(s.agents.len(), 2);
    assert!(s.agents[0].removed && !s.agents[0].in_rotation && s.agents[1].in_rotation);
    assert_eq!(s.agents[0].calls + s.agents[1].calls, first.load(Ordering::Relaxed) + added.load(Ordering::Relaxed));
    assert!(engine.topology().is_removed(old));
    assert_eq!(engine.topology().agents_of(d), [new]);
    let again = Engine::start(
        Topology::clone(&engine.topology()),
        EngineConfig { workers: 1, pin: false, ..EngineConfig::default() },
    )
    .unwrap();
    let c = again.wait(again.submit(&Task::new(1, d).waitable(), None).unwrap(), None).unwrap();
    assert_eq!(c.status, Status::Ok, "a snapshot with a removed agent starts another engine");

    // Refusals name the reason; ids are not reused.
    let err = |r: Result<AgentId, metafed::Error>| r.unwrap_err().to_string();
    assert!(err(engine.add_agent(d, "new", counting(&added))).contains("already has an agent named \"new\""));
    assert!(err(engine.add_agent(metafed::DomainId(5), "x", counting(&added))).contains("domain id 5"));
    assert!(err(engine.add_agent(d, "iso", counting(&added).isolated())).contains("restart"));
    assert!(err(engine.add_agent(d, "", counting(&added))).contains("empty"));
    assert!(engine.remove_agent(old).unwrap_err().to_string().contains("agent D/old was removed"));
    assert_eq!(engine.add_agent(d, "old", counting(&first)).unwrap(), AgentId(2), "a name can come back");
    assert!(err(engine.add_agent(d, "more", counting(&added))).contains("no spare agent id left"));
    let audit: Vec<_> = engine.audit_log().iter().map(|r| (r.actor.clone(), r.action, r.target.clone())).collect();
    assert_eq!(
        audit,
        [
            ("test".to_string(), "agent_added", "agent D/new".to_string()),
            ("test".to_string(), "agent_removed", "agent D/old".to_string()),
            ("test".to_string(), "agent_added", "agent D/old".to_string()),
        ]
    );
    let report =
        Arc::try_unwrap(engine).ok().expect("the submitters are done").shutdown(std::time::Duration::from_secs(5));
    assert!(report.unwrap().drained);
}

#[test]
fn a_reload_adds_and_removes_agents() {
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/topology.toml")).unwrap();
    let engine = Engine::start(
        Topology::from_toml(&original).unwrap(),
        EngineConfig { workers: 1, pin: false, ..EngineConfig::from_toml(&original).unwrap() },
    )
    .unwrap();
    // Cache renamed Redis: Cache goes, Redis comes, with its weight.
    let renamed = original.replace("name = \"Cache\",", "name = \"Redis\", weight = 2,");
    let r = engine.reload_toml(&renamed).unwrap();
    assert_eq!(r.applied, ["agent Database/Cache removed", "agent Database/Redis added"], "{r:?}");
    let topo = engine.topology();
    let db = topo.domain_id("Database").unwrap();
    let redis = topo.agent_id("Database", "Redis").unwrap();
    assert!(topo.agent_id("Database", "Cache").is_none());
    assert!(topo.agents_of(db).contains(&redis));
    assert_eq!(engine.agent_weight(redis), Some(2));
    // A new agent without a sim table has no handler.
    let unbound = renamed.replace("  { name = \"Redis\"", "  { name = \"Bare\" },\n  { name = \"Redis\"");
    let err = engine.reload_toml(&unbound).unwrap_err();
    assert!(err.to_string().contains("Bare") && err.to_string().contains("sim"), "{err}");
}

#[test]
fn an_event_listener_hears_breakers_and_operator_actions_and_may_act_on_them() {
    use metafed::breaker::BreakerMode;
    use metafed::events::EngineEvent;
    use metafed::{AgentId, Level};
    use std::sync::{Arc, Mutex};
    let engine = Arc::new(
        Engine::start(Topology::seed(0.0).unwrap(), EngineConfig { workers: 1, pin: false, ..EngineConfig::default() })
            .unwrap(),
    );
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen, weak) = (lines.clone(), Arc::downgrade(&engine));
    engine.set_event_listener(Some(Arc::new(move |ev: &EngineEvent<'_>| {
        seen.lock().unwrap().push(ev.to_json());
        // Acting on an audit record: put an agent taken out of rotation back with weight 2.
        if let (EngineEvent::Audit(r), Some(engine)) = (ev, weak.upgrade())
            && r.action == "agent_rotation"
            && r.to == "out"
        {
            engine.set_agent_weight(AgentId(1), 2).unwrap();
        }
        if matches!(ev, EngineEvent::Breaker { name, .. } if name.contains("GraphQL")) {
            panic!("a listener that panics is logged; the engine runs on");
        }
    })));
    assert!(engine.set_breaker_mode(Level::Agent, 0, BreakerMode::ForcedOpen));
    assert!(engine.set_agent_in_rotation(AgentId(1), false));
    assert_eq!(engine.agent_weight(AgentId(1)), Some(2), "the listener acted");
    assert!(engine.set_breaker_mode(Level::Agent, 1, BreakerMode::ForcedOpen)); // its listener panics
    let ok = engine.wait(engine.submit(&Task::new(1, DomainId(0)).waitable(), None).unwrap(), None).unwrap();
    assert_eq!(ok.status, metafed::Status::Ok, "the engine runs on");
    engine.set_event_listener(None);
    assert!(engine.set_breaker_mode(Level::Agent, 0, BreakerMode::Normal));

    let lines = lines.lock().unwrap().clone();
    let parsed: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<(&str, &str)> = parsed
        .iter()
        .map(|v| (v["event"].as_str().unwrap(), v["action"].as_str().or(v["to"].as_str()).unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("audit", "event_listener"),
            ("audit", "breaker_mode"),
            ("breaker", "open"),
            ("audit", "agent_rotation"),
            ("audit", "agent_weight"),
            ("audit", "breaker_mode"),
            ("breaker", "open"),
        ],
        "{lines:#?}"
    );
    assert_eq!(parsed[2]["breaker"], "agent API/REST");
    assert_eq!(parsed[2]["cause"], "forced");
    assert!(parsed[2]["task_id"].is_null());
}

#[test]
fn a_listener_that_reconfigures_inside_a_reconfiguration_panics_instead_of_deadlocking() {
    use metafed::breaker::BreakerConfig;
    use metafed::events::EngineEvent;
    use metafed::{AgentId, Level};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let engine = Arc::new(
        Engine::start(Topology::seed(0.0).unwrap(), EngineConfig { workers: 1, pin: false, ..EngineConfig::default() })
            .unwrap(),
    );
    let (tries, weak) = (Arc::new(AtomicU32::new(0)), Arc::downgrade(&engine));
    let t = tries.clone();
    engine.set_event_listener(Some(Arc::new(move |ev: &EngineEvent<'_>| {
        if let (EngineEvent::Breaker { .. }, Some(engine)) = (ev, weak.upgrade()) {
            t.fetch_add(1, Ordering::Relaxed);
            let _ = engine.set_agent_weight(AgentId(0), 5); // would deadlock: panics
        }
    })));
    // Forcing every agent breaker open through the level's settings raises nine events under
    // the reconfiguration lock; each listener call panics, is logged, and the call returns.
    engine
        .set_breaker_config(
            Level::Agent,
            &BreakerConfig { mode: metafed::breaker::BreakerMode::ForcedOpen, ..BreakerConfig::agent() },
        )
        .unwrap();
    assert_eq!(tries.load(Ordering::Relaxed), 9);
    assert_eq!(engine.agent_weight(AgentId(0)), Some(1), "nothing changed from inside");
    // Outside a reconfiguration the same call works.
    engine.set_agent_weight(AgentId(0), 5).unwrap();
}

#[test]
fn domains_are_added_and_removed_while_tasks_run() {
    use metafed::sim::SimAgent;
    use metafed::{AgentSpec, Status, SubmitError};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let engine = Arc::new(
        Engine::start(
            Topology::seed(0.0).unwrap(),
            EngineConfig { workers: 2, pin: false, spare_domains: 1, ..EngineConfig::default() },
        )
        .unwrap(),
    );
    let _actor = metafed::audit::act_as("test", "new region");
    let geo = engine.add_domain("Geo").unwrap();
    assert_eq!(geo, DomainId(3));
    engine.add_agent(geo, "Maps", AgentSpec::sim(SimAgent::default())).unwrap();
    engine.add_agent(geo, "Tiles", AgentSpec::sim(SimAgent::default())).unwrap();
    // Tasks across the new domain and an old one, from two threads, while Auth is removed.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..2u64)
        .map(|s| {
            let (engine, stop, done) = (engine.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = engine
                        .submit(
                            &Task::fan_out(s << 32 | n, metafed::DomainSet::one(geo).with(DomainId(0))).waitable(),
                            None,
                        )
                        .unwrap();
                    assert_eq!(engine.wait(t, Some(std::time::Duration::from_secs(30))).unwrap().status, Status::Ok);
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                n
            })
        })
        .collect();
    wait_for("tasks through the new domain", || done.load(Ordering::Relaxed) >= 200);
    engine.remove_domain(DomainId(2)).unwrap();
    let then = done.load(Ordering::Relaxed);
    wait_for("tasks after the removal", || done.load(Ordering::Relaxed) >= then + 200);
    stop.store(true, Ordering::Relaxed);
    let submitted: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(submitted > 0);
    // A waiter may see its completion a moment before the worker's counters do.
    let s = settled(&engine, submitted);
    assert_eq!(s.completed, submitted, "every task completed once");
    assert_eq!(s.domains[3].name, "Geo");
    assert_eq!(s.domains[3].subtasks, submitted);
    assert!(s.domains[2].removed && !s.domains[3].removed);
    assert_eq!(s.agents.iter().filter(|a| a.domain == "Geo").count(), 2);

    // A removed domain refuses new tasks; its name may come back as a new domain, but the
    // engine had one spare domain id.
    assert!(matches!(engine.submit(&Task::new(1, DomainId(2)), None), Err(SubmitError::UnknownDomain(2))));
    assert!(engine.topology().domain_id("Auth").is_none() && engine.topology().is_domain_removed(DomainId(2)));
    assert!(engine.remove_domain(DomainId(2)).unwrap_err().to_string().contains("domain Auth was removed"));
    assert!(engine.add_domain("API").unwrap_err().to_string().contains("already a domain named \"API\""));
    assert!(engine.add_domain("Auth").unwrap_err().to_string().contains("no spare domain id left"));
    let err = engine.add_agent(DomainId(2), "JWT2", AgentSpec::sim(SimAgent::default())).unwrap_err();
    assert!(err.to_string().contains("its domain was removed"), "{err}");
    assert_eq!(engine.health().status, metafed::stats::HealthStatus::Healthy, "{:?}", engine.health());
    // The running topology, removals included, starts another engine as it stands.
    let again = Engine::start(
        metafed::Topology::clone(&engine.topology()),
        EngineConfig { workers: 1, pin: false, ..EngineConfig::default() },
    )
    .unwrap();
    assert!(matches!(again.submit(&Task::new(1, DomainId(2)), None), Err(SubmitError::UnknownDomain(2))));
    let c = again.wait(again.submit(&Task::new(2, geo).waitable(), None).unwrap(), None).unwrap();
    assert_eq!(c.status, Status::Ok);
    let audit: Vec<_> = engine.audit_log().iter().map(|r| (r.action, r.target.clone())).collect();
    assert_eq!(audit[0], ("domain_added", "domain Geo".to_string()));
    assert!(audit.contains(&("domain_removed", "domain Auth".to_string())));
}

#[test]
fn a_reload_adds_and_removes_domains() {
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/topology.toml")).unwrap();
    let engine = Engine::start(
        Topology::from_toml(&original).unwrap(),
        EngineConfig { workers: 1, pin: false, ..EngineConfig::from_toml(&original).unwrap() },
    )
    .unwrap();
    // Auth renamed Login, with the same agents: RBAC is isolated (threads of its own), which
    // needs a restart, and nothing changes.
    let renamed = original.replace("name = \"Auth\"", "name = \"Login\"");
    let err = engine.reload_toml(&renamed).unwrap_err().to_string();
    assert!(err.contains("agent Login/RBAC") && err.contains("restart"), "{err}");
    assert!(engine.topology().domain_id("Auth").is_some());
    let renamed = renamed.replace("{ name = \"RBAC\", isolated = true,", "{ name = \"RBAC\",");
    let r = engine.reload_toml(&renamed).unwrap();
    assert_eq!(
        r.applied,
        [
            "domain Auth removed",
            "domain Login added",
            "agent Login/JWT added",
            "agent Login/OAuth added",
            "agent Login/RBAC added"
        ],
        "{r:?}"
    );
    // A domain that runs on keeps its fault rate: a changed one is listed, not applied.
    let refaulted = renamed.replace("name = \"API\"\nfault_rate = 0.08", "name = \"API\"\nfault_rate = 0.5");
    let r2 = engine.reload_toml(&refaulted).unwrap();
    assert!(r2.applied.is_empty(), "{r2:?}");
    assert_eq!(r2.needs_restart, ["domain API: fault_rate / max_attempts / hedge / retry_budget"]);
    let topo = engine.topology();
    let login = topo.domain_id("Login").unwrap();
    assert_eq!(topo.agents_of(login).len(), 3);
    let c = engine.wait(engine.submit(&Task::new(1, login).waitable(), None).unwrap(), None).unwrap();
    assert!(matches!(c.status, metafed::Status::Ok | metafed::Status::Failed), "{c:?}");
}

#[test]
fn the_admin_endpoint_listens_on_loopback_by_default() {
    let opts = AdminOptions::default();
    assert_eq!(opts.addr, "127.0.0.1:9464");
    assert_eq!(metafed::admin::DEFAULT_ADDR, "127.0.0.1:9464");
    assert!(opts.token.is_none());
    let engine = engine();
    match engine.serve_admin(&opts) {
        Ok(addr) => {
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_eq!(addr.port(), 9464);
            assert!(engine.stop_admin());
        }
        // Another program holds Prometheus' exporter port here: the error still names where
        // the default would listen.
        Err(e) => assert!(e.to_string().contains("127.0.0.1:9464"), "{e}"),
    }
}
