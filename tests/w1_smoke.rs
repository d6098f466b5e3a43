use metafed::driver::{Load, Workload, closed_loop, oracle_successes};
use metafed::{Engine, EngineConfig, Levels, Topology};

#[test]
fn w1_w2_smoke() {
    for (levels, workload) in [
        (Levels::disabled(), Workload::Route),
        (Levels::disabled(), Workload::FanOut),
        (Levels::default(), Workload::Route),
    ] {
        let mut b = Topology::seed_builder(0.12);
        b.breakers(levels);
        let engine = Engine::start(b.build().unwrap(), EngineConfig::default()).unwrap();
        let mut load = Load::w1(300_000);
        load.workload = workload;
        let r = closed_loop(&engine, &load, |_| {});
        let s = engine.stats();
        eprintln!(
            "{workload:?} ok={} oracle={} {:.2}M/s panic_routed={} opened={:?}",
            r.ok,
            oracle_successes(&load, 3, 0.12, 3),
            r.tasks_per_s / 1e6,
            s.panic_routed,
            s.agents.iter().map(|a| a.breaker.opened).collect::<Vec<_>>()
        );
        assert_eq!(r.lost, 0);
    }
}
