//! W4, overload: an open loop far over capacity, priorities mixed, faults that open domain and
//! meta breakers on the way. Whatever the timing, every accepted task completes exactly once,
//! and the protections each turn some tasks away. (Throughput figures come from `metafed
//! overload`, not from here.)

#![cfg(not(miri))]

use metafed::Reason;
use metafed::breaker::BreakerConfig;
use metafed_bench::overload::{self, Plan};
use std::time::Duration;

#[test]
fn overload_with_faults_loses_nothing_and_every_protection_acts() {
    let mut b = overload::seed_io_topology(1_000.0);
    // The meta breaker judges a short window so that the two-domain fault phase trips it even
    // on a slow machine.
    let mut levels = b.levels().clone();
    levels.meta = BreakerConfig { window: Duration::from_millis(200), min_calls: 50, ..BreakerConfig::meta() };
    b.breakers(levels);
    let plan = Plan { duration: Duration::from_secs(2), offered_per_s: 0.0, submitters: 2, faults: true };
    let r = overload::run(b.build().unwrap(), overload::throttled_config(2, 32), &plan).unwrap();
    eprintln!("{r:#?}");
    assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "exactly once");
    assert_eq!(r.completed, r.accepted);
    assert!(r.offered > r.accepted, "the submitters offered more than the engine took");
    for reason in [Reason::Throttled, Reason::DomainShed, Reason::Degraded] {
        assert!(r.reason(reason) > 0, "no {reason:?} in {:?}", r.reasons);
    }
    // Degraded mode admits only priority 0: it keeps the highest share of successes.
    assert!(r.ok_share(0) > r.ok_share(3), "p0 {} p3 {}", r.ok_share(0), r.ok_share(3));
}
