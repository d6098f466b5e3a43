//! W4, overload: an open loop far over capacity, priorities mixed, faults that open domain and
//! meta breakers on the way. Live, whatever the timing, every accepted task completes exactly
//! once; in virtual time, where the run is the same on any machine, each protection turns some
//! tasks away and the highest priority keeps the highest share of successes. (Throughput
//! figures come from `metafed overload`, not from here.)

#![cfg(not(miri))]

use metafed::breaker::BreakerConfig;
use metafed::{Completion, DomainId, DomainSet, Engine, Reason, Status, SubmitError, Task};
use metafed_bench::overload::{self, Plan};
use std::time::Duration;

/// The meta breaker judges a short window, so that the fault phase with tight deadlines trips it.
fn w4_topology() -> metafed::Topology {
    let mut b = overload::seed_io_topology(1_000.0);
    let mut levels = b.levels().clone();
    levels.meta = BreakerConfig { window: Duration::from_millis(200), min_calls: 50, ..BreakerConfig::meta() };
    b.breakers(levels);
    b.build().unwrap()
}

#[test]
fn overload_with_faults_loses_nothing_live() {
    let plan = Plan { duration: Duration::from_secs(2), offered_per_s: 0.0, submitters: 2, faults: true };
    let r = overload::run(w4_topology(), overload::throttled_config(2, 32), &plan).unwrap();
    eprintln!("{r:#?}");
    assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "exactly once");
    assert_eq!(r.completed, r.accepted);
    assert!(r.accepted > 0);
    // The latency of every task that succeeded, and no limit's path with a fixed throttle.
    assert_eq!(r.ok_latency_ns.samples, r.by_priority.iter().map(|c| c.ok).sum::<u64>());
    assert!(r.ok_latency_ns.p99 >= r.ok_latency_ns.p50 && r.ok_latency_ns.p50 > 0);
    assert!(r.limit_path.is_empty());
}

#[test]
fn overload_reports_the_adaptive_limits_path() {
    let plan = Plan { duration: Duration::from_secs(1), offered_per_s: 0.0, submitters: 2, faults: false };
    let mut config = overload::throttled_config(2, 32);
    config.adaptive_throttle = Some(metafed::policy::AdaptiveThrottle {
        initial_limit: 32,
        min_limit: 4,
        max_limit: 256,
        backoff_ratio: 0.9,
        target_latency: Duration::from_millis(5),
        ..metafed::policy::AdaptiveThrottle::default()
    });
    let r = overload::run(w4_topology(), config, &plan).unwrap();
    assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "exactly once");
    // A sample every 100 ms from the start, each within the limit's bounds.
    assert!(r.limit_path.len() >= 5, "{:?}", r.limit_path);
    assert!(r.limit_path.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(r.limit_path.iter().all(|&(_, l)| (4..=256).contains(&l)), "{:?}", r.limit_path);
    // The latency moved it: a limit left at its initial 32 is a throttle that does not adapt.
    assert!(r.limit_path.iter().any(|&(_, l)| l != 32), "{:?}", r.limit_path);
}

/// W4 in virtual time: 1 s at 200,000 tasks/s against a throttle of 32 tasks on 1 ms agents
/// (about 32,000 tasks/s), priorities 0 to 3, every tenth task fanning out; from 35% to 80% of
/// the run domain 1 is down, from 55% to 80% the callers want answers within 5 ms.
#[test]
fn overload_with_faults_in_virtual_time_sheds_by_priority_and_loses_nothing() {
    const N: u64 = 200_000;
    const RATE: f64 = 200_000.0;
    let mut config = overload::throttled_config(1, 32);
    // Slots for the throttle and its queues (four of 256, one per priority) and a little more:
    // beyond them submissions are refused (Full), the low priorities first.
    config.max_in_flight = 1100;
    let mut sim = Engine::builder(w4_topology()).config(config).simulate().unwrap();
    let all = DomainSet::first(3);
    let (mut accepted, mut refused) = ([0u64; 4], [0u64; 4]);
    let mut ok = [0u64; 4];
    let mut reasons = [0u64; Reason::COUNT];
    let mut seen = vec![false; N as usize];
    let (mut duplicates, mut completed) = (0u64, 0u64);
    let mut out = vec![Completion::default(); 512];
    let mut take = |sim: &metafed::Simulation| loop {
        let n = sim.engine().poll(&mut out);
        for c in &out[..n] {
            completed += 1;
            duplicates += u64::from(std::mem::replace(&mut seen[c.id as usize], true));
            ok[usize::from(c.priority)] += u64::from(c.status == Status::Ok);
            reasons[c.reason as usize] += 1;
        }
        if n < out.len() {
            return;
        }
    };
    let _actor = metafed::audit::act_as("test", "W4 fault schedule");
    let mut down = false;
    for id in 0..N {
        let t = (id as f64 * 1e9 / RATE) as u64;
        sim.run_until(t);
        take(&sim);
        let f = id as f64 / N as f64;
        let want = (0.35..0.80).contains(&f);
        if want != down {
            sim.engine().set_domain_down(DomainId(1), want);
            down = want;
        }
        let p = (id % 4) as u8;
        let mut task = if id % 10 == 9 { Task::fan_out(id, all) } else { Task::new(id, DomainId((id % 3) as u16)) };
        task = task.priority(p);
        if (0.55..0.80).contains(&f) {
            task = task.deadline(Duration::from_millis(5));
        }
        match sim.engine().try_submit(&task) {
            Ok(_) => accepted[usize::from(p)] += 1,
            Err(SubmitError::Full) => refused[usize::from(p)] += 1,
            Err(e) => panic!("task {id}: {e}"),
        }
    }
    sim.engine().set_domain_down(DomainId(1), false);
    sim.run_idle(u64::MAX);
    take(&sim);
    let accepted_n: u64 = accepted.iter().sum();
    assert_eq!(duplicates, 0, "exactly once");
    assert_eq!(completed, accepted_n, "every accepted task completed");
    assert!(refused.iter().sum::<u64>() > 0, "the submitters offered more than the engine took: {refused:?}");
    for reason in [Reason::Throttled, Reason::DomainShed, Reason::Degraded] {
        assert!(reasons[reason as usize] > 0, "no {reason:?} in {reasons:?}");
    }
    // Degraded mode admits only priority 0: it keeps the highest share of successes.
    let share = |p: usize| ok[p] as f64 / accepted[p] as f64;
    assert!(share(0) > share(3), "p0 {} p3 {}", share(0), share(3));
    sim.finish();
}
