//! criterion figures per call, in nanoseconds, beside the peers' in the same run:
//! `cargo bench -p metafed-bench --bench per_call`.
//!
//! - `breaker`: one closed call's bookkeeping (permission, then the outcome: 1 failure in 8),
//!   metafed's `Breaker` (`try_acquire` + `on_result`, both triggers on: a run of failures and
//!   the failure rate over a window) against failsafe-rs's `StateMachine` with its default
//!   policy's shape (success rate over a window, or a run of failures), each set never to trip.
//!   The engine passes the clock in (a worker reads it once per turn); failsafe reads its own.
//! - `limiter`: one admission, metafed's GCRA (`policy::RateLimiter::allow`) against governor's
//!   direct limiter (`check`) and keyed limiter (`check_key`, one key), never limiting.
//! - `keyed`: one keyed check at 1 and 2 threads over 1,000 keys per thread, never limiting:
//!   metafed's `policy::KeyedLimiter` against governor's keyed limiter.
//! - `task`: one W1 task through the engine with nothing else on (breakers disabled, no limiter),
//!   1,024 in flight from one submitting thread, on 1 and 2 workers, beside the crossbeam pool.

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use metafed::breaker::{Breaker, BreakerConfig};
use metafed_bench::driver::Workload;
use metafed_bench::peers::{EnginePeer, PoolPeer, closed_loop, guarded};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

fn breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    let cfg = BreakerConfig { consecutive_failures: u32::MAX, failure_rate: 1.0, ..BreakerConfig::agent() };
    let ours = Breaker::new(cfg.clone(), 1);
    let mut i = 0u64;
    g.bench_function("metafed", |b| {
        b.iter(|| {
            i += 1;
            let now = i * 100;
            let (permit, _) = ours.try_acquire(now);
            black_box(ours.on_result(permit, now, 50, !i.is_multiple_of(8), 0));
        })
    });
    // resilience4j's options: the count window (a shared ring) and the slow-call rate.
    for (name, cfg) in [
        ("metafed-count-window", BreakerConfig { count_window: 100, ..cfg.clone() }),
        (
            "metafed-slow-call-rate",
            BreakerConfig { slow_call_duration: Duration::from_nanos(40), slow_call_rate: 1.0, ..cfg.clone() },
        ),
    ] {
        let ours = Breaker::new(cfg, 1);
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                let now = i * 100;
                let (permit, _) = ours.try_acquire(now);
                black_box(ours.on_result(permit, now, 30 + i % 16 * 2, !i.is_multiple_of(8), 0));
            })
        });
    }
    let theirs = guarded::breaker();
    let mut j = 0u64;
    g.bench_function("failsafe", |b| {
        b.iter(|| {
            j += 1;
            black_box(theirs.call(|| if !j.is_multiple_of(8) { Ok(()) } else { Err(()) }).is_ok());
        })
    });
    g.finish();
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter");
    let ours = metafed::policy::RateLimiter::new(f64::from(u32::MAX), f64::from(u32::MAX));
    let mut now = 0u64;
    g.bench_function("metafed", |b| {
        b.iter(|| {
            now += 100;
            black_box(ours.allow(now))
        })
    });
    let quota = governor::Quota::per_second(NonZeroU32::MAX);
    let direct = governor::RateLimiter::direct(quota);
    g.bench_function("governor", |b| b.iter(|| black_box(direct.check().is_ok())));
    let keyed = governor::RateLimiter::<u64, _, _>::keyed(quota);
    g.bench_function("governor-keyed", |b| b.iter(|| black_box(keyed.check_key(&7).is_ok())));
    g.finish();
    keyed_limiter(c);
}

/// Keyed checks at 1 and 2 threads over 1,000 keys each (never limiting): metafed's
/// `KeyedLimiter` (striped tables, a mutex per stripe) against governor's keyed limiter (a
/// dashmap of GCRA cells), per check.
fn keyed_limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed");
    let limits = metafed::policy::KeyedLimits {
        capacity: 65_536,
        default_per_s: f64::from(u32::MAX),
        default_burst: f64::from(u32::MAX),
        ..metafed::policy::KeyedLimits::default()
    };
    let ours = std::sync::Arc::new(metafed::policy::KeyedLimiter::new(&limits));
    let theirs =
        std::sync::Arc::new(governor::RateLimiter::<u64, _, _>::keyed(governor::Quota::per_second(NonZeroU32::MAX)));
    for threads in [1u64, 2] {
        let o = ours.clone();
        g.bench_function(format!("metafed/{threads}t"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |t, i| {
                    black_box(o.allow_key(1 + t * 1_000 + i % 1_000, i * 100));
                })
            })
        });
        let th = theirs.clone();
        g.bench_function(format!("governor/{threads}t"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |t, i| {
                    black_box(th.check_key(&(1 + t * 1_000 + i % 1_000)).is_ok());
                })
            })
        });
    }
    g.finish();
}

/// Runs `iters` calls of `f(thread, i)` spread over `threads` threads and returns the wall time
/// (criterion divides it by `iters`: the wall time per check with the checks spread over the
/// threads, so 2 threads show what two cores do together).
fn run_threads(threads: u64, iters: u64, f: impl Fn(u64, u64) + Sync) -> Duration {
    let per = iters.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || (0..per).for_each(|i| f(t, i)));
        }
    });
    start.elapsed()
}

fn task(c: &mut Criterion) {
    let mut g = c.benchmark_group("task");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for workers in [1, 2] {
        let impls: [(&str, Box<dyn metafed_bench::peers::Federation>); 2] =
            [("engine", Box::new(EnginePeer::new(workers))), ("pool", Box::new(PoolPeer::new(workers)))];
        for (name, mut f) in impls {
            let mut first_id = 0u64;
            g.bench_function(format!("{name}/{workers}w"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let r = closed_loop(&mut *f, Workload::Route, 1024, iters, Duration::from_secs(3600), first_id);
                    assert!(r.exact(), "{name}: {r:?}");
                    first_id += iters;
                    start.elapsed()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, breaker, limiter, task);
criterion_main!(benches);
