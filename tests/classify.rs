//! The decision engine: tasks that name no domain are classified by the rules (or a custom
//! classifier) into domains and a complexity score, which drive their priority, deadline, key
//! and cost at admission; a task that cannot be classified is rejected with its own reason.

use crate::common::{PATIENCE, config, no_breakers, wait_for};
use metafed::classify::{AttrError, Band, Classification, ClassifyConfig, ClassifyError, MAX_ATTRS, Rule, TaskInfo};
use metafed::policy::{KeyedLimits, key_of};
use metafed::{
    AdmissionConfig, AgentSpec, Completion, DomainId, DomainSet, Engine, Reason, Request, Status, SubmitError, Task,
    Topology, TopologyBuilder,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The seed's three domains, one agent each answering 1 (API), 10 (Database), 100 (Auth).
fn seed() -> (TopologyBuilder, [DomainId; 3]) {
    let mut b = Topology::builder();
    let ids = ["API", "Database", "Auth"].map(|n| b.domain(n).unwrap());
    for (i, d) in ids.iter().enumerate() {
        let v = 10u64.pow(i as u32);
        b.agent(*d, "a", AgentSpec::handler(move |_: &Request<'_>| Ok(v))).unwrap();
    }
    no_breakers(&mut b);
    (b, ids)
}

/// The seed's extraction of domain requirements, as rules.
fn rules() -> ClassifyConfig {
    ClassifyConfig {
        base: 0.1,
        rules: vec![
            Rule::attr_prefix("path", "/api/", &["API"], 0.2),
            Rule::data_contains("SELECT", &["Database"], 0.3),
            Rule { attr: Some("token".into()), domains: vec!["Auth".into()], weight: 0.2, ..Rule::default() },
        ],
        ..ClassifyConfig::default()
    }
}

fn start(b: TopologyBuilder) -> Engine {
    Engine::builder(b.build().unwrap()).config(config()).start().unwrap()
}

fn run(engine: &Engine, task: Task<'_>) -> Completion {
    let t = engine.submit(&task.waitable(), None).unwrap();
    engine.wait(t, Some(PATIENCE)).unwrap()
}

#[test]
fn a_task_with_only_attributes_is_classified_into_the_domains_it_needs() {
    let (mut b, [api, db, auth]) = seed();
    b.classify(rules());
    let engine = start(b);
    let attrs = [("path", "/api/orders"), ("token", "t0k")];
    let c = run(&engine, Task::classified(1).attrs(&attrs).data(b"SELECT * FROM orders"));
    assert_eq!((c.status, c.value), (Status::Ok, 111), "{c:?}");
    assert_eq!(c.domains, DomainSet::one(api).with(db).with(auth));
    assert!((c.complexity.get() - 0.8).abs() < 1e-4, "{c:?}");
    let c = run(&engine, Task::classified(2).attrs(&[("path", "/api/health")]));
    assert_eq!((c.status, c.value, c.domains), (Status::Ok, 1, DomainSet::one(api)));
    assert!((c.complexity.get() - 0.3).abs() < 1e-4);
    // A task that names its domains is not classified: complexity 0.
    let c = run(&engine, Task::new(3, db).attrs(&[("path", "/api/x")]));
    assert_eq!((c.status, c.value, c.domains, c.complexity.units()), (Status::Ok, 10, DomainSet::one(db), 0));
    let s = engine.stats();
    assert_eq!((s.classify.classified, s.classify.unclassified()), (2, 0));
    assert_eq!(s.classify.complexity.len(), 2, "{:?}", s.classify.complexity);
    let all = s.classify.complexity.iter().find(|h| h.domains == c_all(api, db, auth)).unwrap();
    assert_eq!((all.count(), all.buckets[7]), (1, 1)); // 0.8 is in (0.7, 0.8]
    #[cfg(feature = "metrics")]
    {
        let text = engine.metrics_text();
        assert!(text.contains("metafed_tasks_classified_total 2"), "{text}");
        assert!(text.contains("metafed_task_complexity_count{domains=\"API+Database+Auth\"} 1"), "{text}");
        assert!(text.contains("metafed_task_complexity_bucket{le=\"0.3\",domains=\"API\"} 1"), "{text}");
    }
}

fn c_all(a: DomainId, b: DomainId, c: DomainId) -> DomainSet {
    DomainSet::one(a).with(b).with(c)
}

#[test]
fn a_task_that_cannot_be_classified_is_rejected_with_the_cause_counted() {
    // No classifier: refused where it is given.
    let (b, _) = seed();
    let engine = start(b);
    let err = engine.submit(&Task::classified(1), None).unwrap_err();
    assert_eq!(err, SubmitError::NoDomains);
    assert!(err.to_string().contains("no classifier"), "{err}");
    drop(engine);

    let (mut b, [api, ..]) = seed();
    b.classifier(move |t: &TaskInfo<'_>| match t.attrs.get("case") {
        Some("error") => Err(ClassifyError("no route for this tenant".into())),
        Some("panic") => panic!("a classifier bug"),
        Some("empty") => Ok(Classification::new(DomainSet(0), 0.5)),
        Some("unknown") => Ok(Classification::new(DomainSet::one(DomainId(40)), 0.5)),
        Some("priority") => Ok(Classification { priority: Some(9), ..Classification::new(DomainSet::one(api), 0.5) }),
        _ => Ok(Classification::new(DomainSet::one(api), 2.0)), // clamped to 1
    });
    let engine = start(b);
    for case in ["error", "panic", "empty", "unknown", "priority"] {
        let attrs = [("case", case)];
        let c = run(&engine, Task::classified(7).attrs(&attrs));
        assert_eq!((c.status, c.reason, c.attempts), (Status::Rejected, Reason::Unclassified, 0), "{case}: {c:?}");
        assert_eq!(c.domains, DomainSet(0), "{case}");
    }
    let c = run(&engine, Task::classified(8));
    assert_eq!((c.status, c.complexity.get()), (Status::Ok, 1.0));
    let s = engine.stats().classify;
    assert_eq!((s.failed, s.panicked, s.no_domain, s.invalid, s.classified), (1, 1, 1, 2, 1), "{s:?}");
    assert_eq!(Reason::Unclassified.status(), Status::Rejected);
}

#[test]
fn attributes_beyond_the_limits_are_refused_at_submission_naming_the_attribute() {
    let (mut b, _) = seed();
    b.classify(rules());
    let engine = start(b);
    let long = "v".repeat(5000);
    let attrs = [("path", "/api/"), ("blob", long.as_str())];
    let err = engine.submit(&Task::classified(1).attrs(&attrs), None).unwrap_err();
    assert_eq!(err, SubmitError::InvalidAttrs(AttrError::ValueTooLong(1)));
    assert!(err.to_string().contains("attrs[1]"), "{err}");
    let many = vec![("k", "v"); MAX_ATTRS + 1];
    assert_eq!(
        engine.submit(&Task::classified(2).attrs(&many), None).unwrap_err(),
        SubmitError::InvalidAttrs(AttrError::TooMany(MAX_ATTRS + 1))
    );
    assert_eq!(
        engine.submit(&Task::classified(3).attrs(&[("", "v")]), None).unwrap_err(),
        SubmitError::InvalidAttrs(AttrError::EmptyName(0))
    );
}

#[test]
fn bands_give_priority_and_deadline_by_complexity_and_the_key_attribute_keys_the_task() {
    let (mut b, [api, ..]) = seed();
    let slow = b.domain("Slow").unwrap();
    b.agent(
        slow,
        "s",
        AgentSpec::handler(|_: &Request<'_>| {
            std::thread::sleep(Duration::from_millis(50));
            Ok(5)
        })
        .isolated(),
    )
    .unwrap();
    let mut cfg = rules();
    cfg.rules.push(Rule::attr_equals("op", "report", &["Slow"], 0.6));
    cfg.bands = vec![
        Band { up_to: 0.5, priority: Some(0), deadline: None },
        Band { up_to: 1.0, priority: Some(3), deadline: Some(Duration::from_millis(5)) },
    ];
    cfg.key_attr = Some("tenant".into());
    b.classify(cfg);
    let mut ec = config();
    ec.keyed_limits = Some(KeyedLimits { capacity: 1024, default_per_s: 1.0, default_burst: 1.0, classes: Vec::new() });
    let engine = Engine::builder(b.build().unwrap()).config(ec).start().unwrap();
    // Low complexity: priority 0, no deadline of its own.
    let c = run(&engine, Task::classified(1).attrs(&[("path", "/api/a")]).priority(2));
    assert_eq!((c.status, c.priority, c.domains), (Status::Ok, 0, DomainSet::one(api)));
    // High complexity: priority 3 and a 5 ms deadline, which the 50 ms agent misses.
    let c = run(&engine, Task::classified(2).attrs(&[("op", "report")]));
    assert_eq!((c.status, c.reason, c.priority), (Status::TimedOut, Reason::Deadline, 3), "{c:?}");
    // The tenant attribute keys the task: one per second per tenant.
    let t = |tenant: &'static str| [("path", "/api/b"), ("tenant", tenant)];
    let (a1, a2, b1) = (t("acme"), t("acme"), t("globex"));
    assert_eq!(run(&engine, Task::classified(3).attrs(&a1)).status, Status::Ok);
    let c = run(&engine, Task::classified(4).attrs(&a2));
    assert_eq!((c.status, c.reason), (Status::Rejected, Reason::RateLimited));
    assert_eq!(run(&engine, Task::classified(5).attrs(&b1)).status, Status::Ok);
    // A task's own key wins over the attribute.
    assert_eq!(run(&engine, Task::classified(6).attrs(&a2).key(key_of("initech"))).status, Status::Ok);
}

#[test]
fn admission_weighs_tasks_by_cost() {
    // One domain whose agent holds each call until released; tasks of complexity 0.5 against a
    // budget of 1.0: two run at once, the others wait, and all complete.
    let mut b = Topology::builder();
    let d = b.domain("Work").unwrap();
    let (now, peak) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (n2, p2) = (now.clone(), peak.clone());
    b.agent(
        d,
        "w",
        AgentSpec::handler(move |_: &Request<'_>| {
            let k = n2.fetch_add(1, Ordering::SeqCst) + 1;
            p2.fetch_max(k, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            n2.fetch_sub(1, Ordering::SeqCst);
            Ok(1)
        })
        .isolated()
        .threads(4),
    )
    .unwrap();
    no_breakers(&mut b);
    b.classify(ClassifyConfig {
        base: 0.5,
        rules: vec![Rule { domains: vec!["Work".into()], ..Rule::default() }],
        ..ClassifyConfig::default()
    });
    let mut ec = config();
    ec.admission = AdmissionConfig { max_cost: 1.0, ..AdmissionConfig::default() };
    let engine = Engine::builder(b.build().unwrap()).config(ec).start().unwrap();
    let tickets: Vec<_> = (0..8).map(|i| engine.submit(&Task::classified(i).waitable(), None).unwrap()).collect();
    for t in tickets {
        let c = engine.wait(t, Some(PATIENCE)).unwrap();
        assert_eq!((c.status, c.complexity.get()), (Status::Ok, 0.5));
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2, "two tasks of cost 0.5 fit a budget of 1.0");
    wait_for("the budget to be returned", || engine.stats().meta.cost_held == 0.0);
    // Raised live: four at once.
    engine.set_admission(&AdmissionConfig { max_cost: 2.0, ..AdmissionConfig::default() }).unwrap();
    peak.store(0, Ordering::SeqCst);
    let tickets: Vec<_> = (0..8).map(|i| engine.submit(&Task::classified(i).waitable(), None).unwrap()).collect();
    for t in tickets {
        assert!(engine.wait(t, Some(PATIENCE)).unwrap().is_ok());
    }
    assert_eq!(peak.load(Ordering::SeqCst), 4);
    assert!(engine.audit_log().iter().any(|r| r.action == "max_cost" && r.to == "2"));
}

#[test]
fn the_rules_and_the_classifier_change_live_and_are_audited() {
    let (mut b, [api, db, _]) = seed();
    b.classify(rules());
    let engine = start(b);
    let attrs = [("path", "/api/x")];
    assert_eq!(run(&engine, Task::classified(1).attrs(&attrs)).domains, DomainSet::one(api));
    // New rules: the path now goes to the database.
    let mut cfg = rules();
    cfg.rules[0].domains = vec!["Database".into()];
    engine.set_classify(&cfg).unwrap();
    assert_eq!(run(&engine, Task::classified(2).attrs(&attrs)).domains, DomainSet::one(db));
    assert_eq!(engine.classify_config(), cfg);
    // A rule naming a domain the topology lacks is refused, naming it; nothing changes.
    let mut bad = cfg.clone();
    bad.rules[1].domains = vec!["Cache".into()];
    let err = engine.set_classify(&bad).unwrap_err().to_string();
    assert!(err.contains("classify.rules[1].domains[0] names \"Cache\""), "{err}");
    assert_eq!(engine.classify_config(), cfg);
    // A custom classifier needs rules-free settings.
    let custom: Arc<dyn metafed::classify::Classifier> =
        Arc::new(move |_: &TaskInfo<'_>| Ok(Classification::new(DomainSet::one(api), 0.9)));
    assert!(engine.set_classifier(Some(custom.clone())).unwrap_err().to_string().contains("both given"));
    engine.set_classify(&ClassifyConfig::default()).unwrap();
    assert!(!engine.has_classifier());
    assert_eq!(engine.submit(&Task::classified(3), None).unwrap_err(), SubmitError::NoDomains);
    engine.set_classifier(Some(custom)).unwrap();
    let c = run(&engine, Task::classified(4));
    assert_eq!((c.domains, c.complexity.get()), (DomainSet::one(api), 0.9));
    let actions: Vec<String> = engine.audit_log().iter().map(|r| r.action.to_string()).collect();
    assert_eq!(actions.iter().filter(|a| *a == "classify").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "classifier").count(), 1, "{actions:?}");
}

const FILE: &str = r#"
[[domains]]
name = "API"
[[domains.agents]]
name = "REST"
sim = { error_rate = 0.0 }

[[domains]]
name = "Database"
[[domains.agents]]
name = "SQL"
sim = { error_rate = 0.0 }

[classify]
base = 0.2
[[classify.rules]]
attr = "path"
prefix = "/api/"
domains = ["API"]
weight = 0.1
"#;

#[test]
fn the_classify_table_of_a_toml_file_is_read_and_reloaded() {
    let engine = Engine::builder(Topology::from_toml(FILE).unwrap()).config(config()).start().unwrap();
    let c = run(&engine, Task::classified(1).attrs(&[("path", "/api/v1")]));
    assert_eq!((c.status, c.domains), (Status::Ok, DomainSet::one(DomainId(0))));
    assert!((c.complexity.get() - 0.3).abs() < 1e-4);
    let reloaded = FILE.replace("domains = [\"API\"]", "domains = [\"API\", \"Database\"]");
    let r = engine.reload_toml(&reloaded).unwrap();
    assert_eq!(r.applied, ["classify"]);
    let c = run(&engine, Task::classified(2).attrs(&[("path", "/api/v1")]));
    assert_eq!(c.domains, DomainSet::one(DomainId(0)).with(DomainId(1)));
    // Errors name the field.
    let bad = FILE.replace("domains = [\"API\"]", "domains = [\"Cache\"]");
    let err = Topology::from_toml(&bad).unwrap_err().to_string();
    assert!(err.contains("classify.rules[0].domains[0] names \"Cache\""), "{err}");
    assert!(engine.reload_toml(&bad).is_err());
    let bad = FILE.replace("weight = 0.1", "weight = 0.1\nsize = 3");
    assert!(Topology::from_toml(&bad).unwrap_err().to_string().contains("size"));
}
