//! criterion benchmarks of the workloads of WORKLOADS.md on the engine and its peers:
//! `cargo bench --bench workloads`. Each measurement runs a block of tasks through the same
//! closed-loop driver `metafed bench` uses (W1 loaded: 1024 in flight; W1 unloaded: 1; W2:
//! fan-out to all three domains); the implementation is started once per benchmark, outside the
//! timing. `metafed bench` runs the same set interleaved and reports medians and ratios.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metafed_bench::driver::Workload;
use metafed_bench::peers::{NAMES, closed_loop, start};
use std::time::{Duration, Instant};

fn group(c: &mut Criterion, name: &str, workload: Workload, in_flight: usize, block: u64) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(block))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for peer in NAMES {
        let mut f = start(peer, 0).expect("a known implementation");
        let mut first_id = 0u64;
        g.bench_function(peer, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = closed_loop(&mut *f, workload, in_flight, block, Duration::from_secs(3600), first_id);
                    assert!(r.exact(), "{peer}: {r:?}");
                    first_id += block;
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn workloads(c: &mut Criterion) {
    group(c, "w1_loaded", Workload::Route, 1024, 100_000);
    group(c, "w1_unloaded", Workload::Route, 1, 10_000);
    group(c, "w2", Workload::FanOut, 1024, 50_000);
}

criterion_group!(benches, workloads);
criterion_main!(benches);
