//! The canonical workloads of WORKLOADS.md, checked against the failure oracle and the model.

use metafed::model::{Z999, wilson};
use metafed::{Engine, EngineConfig, Levels, Topology};
use metafed_bench::driver::{Load, Workload, closed_loop, oracle_successes};

fn engine(levels: Levels, workers: usize) -> Engine {
    let mut b = Topology::seed_builder(0.12);
    b.breakers(levels);
    Engine::start(b.build().unwrap(), EngineConfig { workers, ..EngineConfig::default() }).unwrap()
}

fn check_exact(workers: usize, workload: Workload, tasks: u64) {
    let engine = engine(Levels::disabled(), workers);
    let load = Load { workload, ..Load::w1(tasks) };
    let r = closed_loop(&engine, &load, |_| {});
    assert_eq!((r.lost, r.duplicated, r.unknown), (0, 0, 0), "{r:?}");
    assert_eq!(r.submitted, tasks);
    assert_eq!(r.ok, oracle_successes(&load, 3, 0.12, 3), "{workers} workers, {workload:?}: {r:?}");
    assert_eq!(r.ok + r.failed, tasks, "no other outcome with breakers disabled: {r:?}");
}

#[test]
fn w1_with_breakers_disabled_matches_the_oracle_exactly() {
    check_exact(0, Workload::Route, 400_000);
}

#[test]
fn w1_is_exact_on_one_worker_and_on_more_workers_than_cores() {
    check_exact(1, Workload::Route, 100_000);
    check_exact(4, Workload::Route, 100_000);
}

#[test]
fn w2_fan_out_matches_the_oracle_exactly() {
    check_exact(0, Workload::FanOut, 200_000);
}

#[test]
fn w1_with_the_seed_breakers_stays_within_the_model_interval() {
    let engine = engine(Levels::default(), 0);
    let load = Load::w1(400_000);
    let r = closed_loop(&engine, &load, |_| {});
    assert_eq!((r.lost, r.duplicated), (0, 0));
    let predicted = 1.0 - 0.12f64.powi(3);
    let (lo, hi) = wilson(r.ok, r.submitted, Z999);
    assert!(
        (lo..=hi).contains(&predicted),
        "model {predicted} outside the 99.9% interval [{lo}, {hi}] of {}/{}",
        r.ok,
        r.submitted
    );
    // The breakers did act (3 failures in a row happen every ~600 calls at 12%): the agent
    // breakers opened, and failover plus panic routing kept every sub-task's attempts.
    let s = engine.stats();
    assert!(s.agents.iter().map(|a| a.breaker.opened).sum::<u64>() > 0, "{s:?}");
}

/// The global limiter set a thousand times above the offered load refuses nothing: a worker
/// whose clock reading went stale during its turn (or while it was preempted) checks a refusal
/// again on a fresh reading, instead of refusing against a bucket another worker moved with a
/// newer one. Every task of W1 is then exactly the oracle's.
#[test]
fn a_limiter_far_above_the_load_refuses_nothing() {
    let admission = metafed::AdmissionConfig { rate_limit_per_s: 1e9, rate_limit_burst: 1e6, ..Default::default() };
    let mut b = Topology::seed_builder(0.12);
    b.breakers(Levels::disabled());
    let engine =
        Engine::start(b.build().unwrap(), EngineConfig { workers: 2, admission, ..EngineConfig::default() }).unwrap();
    let tasks = 1_000_000;
    let load = Load::w1(tasks);
    let r = closed_loop(&engine, &load, |_| {});
    let rejected = engine.stats().rejected;
    assert_eq!(rejected, 0, "tasks refused as RateLimited: {r:?}");
    assert_eq!((r.lost, r.duplicated, r.unknown), (0, 0, 0), "{r:?}");
    assert_eq!(r.ok, oracle_successes(&load, 3, 0.12, 3), "{r:?}");
}
