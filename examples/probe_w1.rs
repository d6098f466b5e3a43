use metafed::driver::{Load, closed_loop};
use metafed::{Engine, EngineConfig, Levels, Topology};
fn main() {
    let workers: usize = std::env::args().nth(1).map_or(0, |s| s.parse().unwrap());
    let inflight: usize = std::env::args().nth(2).map_or(1024, |s| s.parse().unwrap());
    let n: u64 = std::env::args().nth(3).map_or(1_000_000, |s| s.parse().unwrap());
    let mut b = Topology::seed_builder(0.12);
    b.breakers(Levels::disabled());
    let env = |k: &str, d: u32| std::env::var(k).map_or(d, |v| v.parse().unwrap());
    let cfg = EngineConfig {
        workers,
        idle_spins: env("SPINS", 128),
        idle_yield_us: env("YIELD", 50),
        ..EngineConfig::default()
    };
    let engine = Engine::start(b.build().unwrap(), cfg).unwrap();
    let mut load = Load::w1(n);
    load.in_flight = inflight;
    let r = closed_loop(&engine, &load, |_| {});
    println!(
        "workers={} inflight={} {:.2} Mtasks/s p50={} p99={} p999={}",
        engine.workers(),
        inflight,
        r.tasks_per_s / 1e6,
        r.latency_ns.p50,
        r.latency_ns.p99,
        r.latency_ns.p999
    );
}
