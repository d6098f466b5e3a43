//! Keyed rate limits: a hot key held at its quota while cold keys churn through a table of
//! fixed capacity, in virtual time (exact) and live (across workers); classes from TOML.

use metafed::policy::{Key, KeyedLimits, QuotaClass, key_of};
use metafed::sim::SimAgent;
use metafed::{AgentSpec, Completion, DomainId, Engine, EngineConfig, Reason, Status, Task, Topology};

fn topology() -> Topology {
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    b.agent(d, "a", AgentSpec::sim(SimAgent::default())).unwrap();
    b.build().unwrap()
}

/// The hot key in class "hot" at 1,000 tasks/s (burst 10); every other key 100/s, burst 1.
fn limits(capacity: usize) -> KeyedLimits {
    KeyedLimits {
        capacity,
        default_per_s: 100.0,
        default_burst: 1.0,
        classes: vec![QuotaClass {
            name: "hot".into(),
            per_s: 1_000.0,
            burst: 10.0,
            keys: vec![Key::Name("hot".into())],
        }],
    }
}

#[test]
fn a_hot_key_gets_its_quota_within_one_percent_while_cold_keys_churn() {
    // 100,000 tasks/s for 2 s of virtual time: every other task the hot key, the rest each a new
    // cold key (100,000 of them) through a table of 4,096.
    let config = EngineConfig { keyed_limits: Some(limits(4096)), ..EngineConfig::default() };
    let mut sim = Engine::builder(topology()).config(config).simulate().unwrap();
    let hot = key_of("hot");
    let n = 200_000u64;
    let (mut hot_ok, mut hot_limited, mut cold_ok, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut out = vec![Completion::default(); 256];
    let mut take = |sim: &metafed::Simulation| loop {
        let got = sim.engine().poll(&mut out);
        for c in &out[..got] {
            match (c.id % 2 == 0, c.status, c.reason) {
                (true, Status::Ok, _) => hot_ok += 1,
                (true, _, Reason::RateLimited) => hot_limited += 1,
                (false, Status::Ok, _) => cold_ok += 1,
                _ => other += 1,
            }
        }
        if got < out.len() {
            return;
        }
    };
    for id in 0..n {
        sim.run_until(id * 10_000); // 100,000 a second
        take(&sim);
        let key = if id % 2 == 0 { hot } else { id };
        sim.engine().try_submit(&Task::new(id, DomainId(0)).key(key)).unwrap();
    }
    sim.run_idle(u64::MAX);
    take(&sim);
    let stats = sim.engine().keyed_stats().unwrap();
    sim.finish();
    // 2 s at 1,000/s plus the burst of 10.
    let want = 2_010.0;
    assert!((hot_ok as f64 - want).abs() <= 0.01 * want, "hot key admitted {hot_ok}, want {want}");
    assert_eq!(hot_ok + hot_limited, n / 2);
    assert_eq!((cold_ok, other), (n / 2, 0), "every cold key is new: each admitted once");
    assert!(stats.tracked <= stats.capacity && stats.evicted > 90_000, "{stats:?}");
    assert_eq!(stats.table_full, 0);
    let hot_class = stats.classes.iter().find(|c| c.0 == "hot").unwrap();
    assert_eq!((hot_class.1, hot_class.2), (hot_ok, hot_limited));
}

#[test]
fn a_hot_key_is_exact_across_live_workers() {
    // Two workers, one hot key offered as fast as one thread submits for 0.5 s: the key's bucket
    // is one, wherever the tasks are admitted.
    let config = EngineConfig { workers: 2, pin: false, keyed_limits: Some(limits(1024)), ..EngineConfig::default() };
    let engine = Engine::start(topology(), config).unwrap();
    let hot = key_of("hot");
    let start = std::time::Instant::now();
    let mut out = vec![Completion::default(); 256];
    let (mut id, mut ok) = (0u64, 0u64);
    while start.elapsed() < std::time::Duration::from_millis(500) {
        if engine.try_submit(&Task::new(id, DomainId(0)).key(hot)).is_ok() {
            id += 1;
        }
        let got = engine.poll(&mut out);
        ok += out[..got].iter().filter(|c| c.is_ok()).count() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    engine.shutdown(std::time::Duration::from_secs(5)).unwrap();
    // Completions still in flight at the end are not counted: at most a few.
    let most = 10.0 + 1_000.0 * elapsed;
    assert!(id > 2 * most as u64, "the key was offered more than its quota ({id} tasks)");
    assert!(ok as f64 <= most + 1.0, "admitted {ok}, the quota allows {most:.0}");
    assert!(ok as f64 >= 0.9 * (most - 10.0), "admitted {ok} of {most:.0}");
}

#[test]
fn keyed_limits_load_from_toml_change_live_and_are_checked() {
    let text = "[engine.keyed_limits]\ncapacity = 1000\ndefault_per_s = 5.0\n\
                [[engine.keyed_limits.classes]]\nname = \"gold\"\nper_s = 100.0\nburst = 20.0\nkeys = [\"acme\", 42]\n";
    let cfg = EngineConfig::from_toml(text).unwrap();
    let k = cfg.keyed_limits.clone().unwrap();
    assert_eq!((k.capacity, k.default_per_s, k.classes[0].keys.len()), (1000, 5.0, 2));
    assert_eq!(k.classes[0].keys[1], Key::Id(42));
    let bad = EngineConfig::from_toml(&text.replace("burst = 20.0", "burst = 0.5")).unwrap_err().to_string();
    assert!(bad.contains("burst") && bad.contains("gold"), "{bad}");
    let engine = Engine::start(topology(), EngineConfig { workers: 1, pin: false, ..cfg }).unwrap();
    let _actor = metafed::audit::act_as("test", "quota change");
    let mut gold = k.clone();
    gold.classes[0].per_s = 1.0;
    engine.set_keyed_limits(&gold).unwrap();
    assert_eq!(engine.audit_log().last().unwrap().action, "keyed_limits");
    gold.default_burst = 0.0;
    assert!(engine.set_keyed_limits(&gold).unwrap_err().to_string().contains("burst"));
    // Metrics per quota class, never per key.
    let t = engine.submit(&Task::new(1, DomainId(0)).key(key_of("acme")).waitable(), None).unwrap();
    assert!(engine.wait(t, None).unwrap().is_ok());
    let text = engine.metrics_text();
    assert!(text.contains(r#"metafed_keyed_checks_total{class="gold",result="admitted"} 1"#), "{text}");
    assert!(text.contains("metafed_keyed_keys 1"), "{text}");
    assert!(!text.contains(&key_of("acme").to_string()));
    engine.shutdown(std::time::Duration::from_secs(1)).unwrap();
    // An engine started without keyed limits refuses them, and ignores tasks' keys.
    let plain = Engine::start(topology(), EngineConfig { workers: 1, pin: false, ..EngineConfig::default() }).unwrap();
    assert!(plain.set_keyed_limits(&k).unwrap_err().to_string().contains("started without"));
    assert!(plain.keyed_stats().is_none());
    plain.shutdown(std::time::Duration::from_secs(1)).unwrap();
}

#[test]
fn a_reload_changes_the_quotas_and_names_a_new_capacity_as_needing_a_restart() {
    let text = |capacity: u32, per_s: f64| {
        format!(
            "[engine]\nworkers = 1\npin = false\n[engine.keyed_limits]\ncapacity = {capacity}\ndefault_per_s = {per_s}\n\
             [[domains]]\nname = \"D\"\nagents = [{{ name = \"a\", sim = {{ error_rate = 0.0 }} }}]\n"
        )
    };
    let t = text(512, 10.0);
    let engine = Engine::start(Topology::from_toml(&t).unwrap(), EngineConfig::from_toml(&t).unwrap()).unwrap();
    let r = engine.reload_toml(&text(512, 20.0)).unwrap();
    assert!(r.applied.iter().any(|a| a == "engine.keyed_limits"), "{r:?}");
    let r = engine.reload_toml(&text(512, 20.0)).unwrap();
    assert!(!r.applied.iter().any(|a| a == "engine.keyed_limits"), "unchanged: {r:?}");
    let r = engine.reload_toml(&text(1024, 20.0)).unwrap();
    assert!(r.needs_restart.iter().any(|n| n.contains("keyed_limits")), "{r:?}");
    engine.shutdown(std::time::Duration::from_secs(1)).unwrap();
}

#[test]
fn a_key_over_its_quota_does_not_use_up_the_global_limit() {
    // Global: 5 tasks, then (near) nothing; every key: 2. Ten tasks of one key: 2 admitted, 8
    // refused by the key, which must leave 3 of the global 5 for everyone else.
    let admission = metafed::AdmissionConfig { rate_limit_per_s: 0.001, rate_limit_burst: 5.0, ..Default::default() };
    let keyed = KeyedLimits { capacity: 64, default_per_s: 0.001, default_burst: 2.0, classes: Vec::new() };
    let config =
        EngineConfig { workers: 1, pin: false, admission, keyed_limits: Some(keyed), ..EngineConfig::default() };
    let engine = Engine::start(topology(), config).unwrap();
    let run = |id: u64, key: u64| {
        let t = engine.submit(&Task::new(id, DomainId(0)).key(key).waitable(), None).unwrap();
        engine.wait(t, None).unwrap().is_ok()
    };
    let noisy = (0..10).filter(|&i| run(i, 7)).count();
    let others = (10..20).filter(|&i| run(i, 0)).count();
    assert_eq!((noisy, others), (2, 3));
    engine.shutdown(std::time::Duration::from_secs(1)).unwrap();
}
