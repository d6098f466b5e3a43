//! The circuit breaker's state machine, specified transition by transition against a fake clock
//! (in the manner of resilience4j's `CircuitBreakerStateMachineTest`). Time is the `now` argument;
//! nothing here sleeps.

use metafed::breaker::{Breaker, BreakerConfig, BreakerMode, BreakerState, Permit, Transition, TransitionCause};
use std::time::Duration;

const MS: u64 = 1_000_000;

fn cfg() -> BreakerConfig {
    BreakerConfig {
        timeout: Duration::from_millis(50),
        consecutive_failures: 3,
        failure_rate: 0.0,
        window: Duration::from_secs(1),
        min_calls: 10,
        open_base: Duration::from_millis(100),
        open_max: Duration::from_millis(400),
        half_open_probes: 1,
        mode: BreakerMode::Normal,
    }
}

fn t(from: BreakerState, to: BreakerState, cause: TransitionCause) -> Option<Transition> {
    Some(Transition { from, to, cause })
}

/// One call at `now` that succeeds (`ok`) in `lat` ns; returns the permit and every transition.
fn call(b: &Breaker, now: u64, ok: bool, lat: u64) -> (Permit, Option<Transition>, Option<Transition>) {
    let (p, t1) = b.try_acquire(now);
    let t2 = if p == Permit::Denied { None } else { b.on_result(p, now, lat, ok, 0) };
    (p, t1, t2)
}

#[test]
fn starts_closed_and_lets_calls_through() {
    let b = Breaker::new(cfg(), 1);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.try_acquire(0), (Permit::Call, None));
    assert_eq!(b.on_result(Permit::Call, 0, 1, true, 0), None);
}

#[test]
fn trips_on_the_nth_consecutive_failure_exactly() {
    let b = Breaker::new(cfg(), 1);
    assert_eq!(call(&b, 0, false, 1), (Permit::Call, None, None));
    assert_eq!(call(&b, 1, false, 1), (Permit::Call, None, None));
    assert_eq!(b.snapshot(1).consecutive_failures, 2);
    assert_eq!(
        call(&b, 2, false, 1),
        (Permit::Call, None, t(BreakerState::Closed, BreakerState::Open, TransitionCause::ConsecutiveFailures))
    );
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.try_acquire(3), (Permit::Denied, None));
    assert_eq!(b.snapshot(3).opened, 1);
}

#[test]
fn a_success_resets_the_run_of_failures() {
    let b = Breaker::new(cfg(), 1);
    for round in 0..5 {
        let now = round * 10;
        call(&b, now, false, 1);
        call(&b, now + 1, false, 1);
        assert_eq!(call(&b, now + 2, true, 1).2, None);
        assert_eq!(b.snapshot(now).consecutive_failures, 0);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn a_slow_success_counts_as_a_failure() {
    let b = Breaker::new(cfg(), 1);
    let slow = 50 * MS + 1;
    call(&b, 0, true, slow);
    call(&b, 1, true, slow);
    assert_eq!(
        call(&b, 2, true, slow).2,
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::ConsecutiveFailures)
    );
    // Exactly at the timeout is not slow.
    let b = Breaker::new(cfg(), 1);
    for i in 0..10 {
        assert_eq!(call(&b, i, true, 50 * MS).2, None);
    }
}

#[test]
fn open_time_ends_in_half_open_with_one_probe() {
    let b = Breaker::new(cfg(), 1);
    for i in 0..3 {
        call(&b, i, false, 1);
    }
    // Opened at t = 2 for 100 ms.
    assert_eq!(b.try_acquire(2 + 100 * MS - 1), (Permit::Denied, None));
    assert_eq!(
        b.try_acquire(2 + 100 * MS),
        (Permit::Probe, t(BreakerState::Open, BreakerState::HalfOpen, TransitionCause::OpenTimeElapsed))
    );
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // The one probe is out: everyone else is refused.
    assert_eq!(b.try_acquire(2 + 100 * MS + 1), (Permit::Denied, None));
    // It succeeds: closed, counts cleared.
    assert_eq!(
        b.on_result(Permit::Probe, 2 + 100 * MS + 2, 1, true, 0),
        t(BreakerState::HalfOpen, BreakerState::Closed, TransitionCause::ProbesSucceeded)
    );
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot(0).consecutive_failures, 0);
    let s = b.snapshot(0);
    assert_eq!((s.opened, s.half_opened, s.closed, s.reopened), (1, 1, 1, 0));
}

#[test]
fn a_failed_probe_reopens_with_doubled_open_time_up_to_the_cap() {
    let b = Breaker::new(cfg(), 1);
    for i in 0..3 {
        call(&b, i, false, 1);
    }
    let mut now = 2;
    // Open times: 100, then 200, 400, 400 (cap) as probes keep failing.
    for open_ms in [100, 200, 400, 400] {
        assert_eq!(b.try_acquire(now + open_ms * MS - 1).0, Permit::Denied, "still open just before {open_ms} ms");
        now += open_ms * MS;
        let (p, tr) = b.try_acquire(now);
        assert_eq!(
            (p, tr),
            (Permit::Probe, t(BreakerState::Open, BreakerState::HalfOpen, TransitionCause::OpenTimeElapsed))
        );
        assert_eq!(
            b.on_result(p, now, 1, false, 0),
            t(BreakerState::HalfOpen, BreakerState::Open, TransitionCause::ProbeFailed)
        );
    }
    // A success closes it, and the next trip starts again from the base open time.
    now += 400 * MS;
    let (p, _) = b.try_acquire(now);
    assert_eq!(
        b.on_result(p, now, 1, true, 0),
        t(BreakerState::HalfOpen, BreakerState::Closed, TransitionCause::ProbesSucceeded)
    );
    for i in 0..3 {
        call(&b, now + i, false, 1);
    }
    now += 2;
    assert_eq!(b.try_acquire(now + 100 * MS - 1).0, Permit::Denied);
    assert_eq!(b.try_acquire(now + 100 * MS).0, Permit::Probe);
    assert_eq!(b.snapshot(0).reopened, 4);
}

#[test]
fn half_open_lets_a_bounded_number_of_probes_and_needs_them_all_to_succeed() {
    let b = Breaker::new(BreakerConfig { half_open_probes: 3, ..cfg() }, 1);
    for i in 0..3 {
        call(&b, i, false, 1);
    }
    let now = 200 * MS;
    let permits: Vec<_> = (0..5).map(|i| b.try_acquire(now + i).0).collect();
    assert_eq!(permits, [Permit::Probe, Permit::Probe, Permit::Probe, Permit::Denied, Permit::Denied]);
    assert_eq!(b.on_result(Permit::Probe, now, 1, true, 0), None);
    // A slot freed by a success goes to the next caller.
    assert_eq!(b.try_acquire(now + 10).0, Permit::Probe);
    assert_eq!(b.on_result(Permit::Probe, now, 1, true, 0), None);
    assert_eq!(
        b.on_result(Permit::Probe, now, 1, true, 0),
        t(BreakerState::HalfOpen, BreakerState::Closed, TransitionCause::ProbesSucceeded)
    );
    // The last probe's result arrives after the breaker closed: it moves nothing.
    assert_eq!(b.on_result(Permit::Probe, now, 1, false, 0), None);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn releasing_a_probe_without_an_outcome_frees_its_slot() {
    let b = Breaker::new(cfg(), 1);
    for i in 0..3 {
        call(&b, i, false, 1);
    }
    let now = 200 * MS;
    assert_eq!(b.try_acquire(now).0, Permit::Probe);
    assert_eq!(b.try_acquire(now).0, Permit::Denied);
    b.release(Permit::Probe);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.try_acquire(now).0, Permit::Probe);
}

#[test]
fn trips_on_the_failure_rate_once_the_window_holds_enough_calls() {
    let c = BreakerConfig { consecutive_failures: 0, failure_rate: 0.5, min_calls: 10, ..cfg() };
    let b = Breaker::new(c, 1);
    // Alternate success and failure: 50% once there are 10 calls. Nine calls (4 failures):
    // below the minimum, no trip.
    for i in 0..9u64 {
        assert_eq!(call(&b, i * MS, i % 2 == 1, 1).2, None, "call {i}");
    }
    // The tenth call fails: 5 of 10.
    assert_eq!(call(&b, 9 * MS, false, 1).2, t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate));
}

#[test]
fn the_rate_window_slides() {
    let c = BreakerConfig { consecutive_failures: 0, failure_rate: 0.5, min_calls: 10, ..cfg() };
    let b = Breaker::new(c, 1);
    // Six failures at t ~ 0, then ten successes at t ~ 0.5 s: 6/16 < 50%.
    for i in 0..6 {
        call(&b, i, false, 1);
    }
    for i in 0..10 {
        call(&b, 500 * MS + i, true, 1);
    }
    // At t = 1.2 s the failures have left the window: 1 failure in 11 calls, no trip.
    assert_eq!(call(&b, 1200 * MS, false, 1).2, None);
    assert_eq!(b.snapshot(1200 * MS).window_calls, 11);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn stripes_are_summed_for_the_rate() {
    let c = BreakerConfig { consecutive_failures: 0, failure_rate: 0.5, min_calls: 4, ..cfg() };
    let b = Breaker::new(c, 4);
    // Each of four threads' stripes sees one call; three fail.
    assert_eq!(b.on_result(Permit::Call, 1, 1, true, 0), None);
    assert_eq!(b.on_result(Permit::Call, 2, 1, false, 1), None);
    assert_eq!(b.on_result(Permit::Call, 3, 1, false, 2), None);
    assert_eq!(
        b.on_result(Permit::Call, 4, 1, false, 3),
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate)
    );
}

#[test]
fn forced_open_refuses_everything_and_reset_restarts_closed() {
    let b = Breaker::new(cfg(), 1);
    call(&b, 0, false, 1);
    assert_eq!(
        b.set_mode(BreakerMode::ForcedOpen),
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::Forced)
    );
    assert_eq!(b.state(), BreakerState::Open);
    for now in [0, 10 * 1_000 * MS] {
        assert_eq!(b.try_acquire(now), (Permit::Denied, None));
    }
    assert_eq!(b.set_mode(BreakerMode::ForcedOpen), None, "no transition when nothing changes");
    assert_eq!(b.set_mode(BreakerMode::Normal), t(BreakerState::Open, BreakerState::Closed, TransitionCause::Reset));
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot(0).consecutive_failures, 0, "reset clears the run");
}

#[test]
fn disabled_lets_everything_through_and_never_trips() {
    let b = Breaker::new(cfg().disabled(), 1);
    for i in 0..100 {
        assert_eq!(call(&b, i, false, 1), (Permit::Call, None, None));
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.mode(), BreakerMode::Disabled);
}

#[test]
fn results_of_calls_admitted_before_the_trip_move_nothing() {
    let b = Breaker::new(cfg(), 1);
    let early: Vec<_> = (0..3).map(|i| b.try_acquire(i).0).collect();
    for _ in 0..3 {
        call(&b, 5, false, 1);
    }
    assert_eq!(b.state(), BreakerState::Open);
    for p in early {
        assert_eq!(b.on_result(p, 6, 1, true, 0), None);
        assert_eq!(b.on_result(p, 6, 1, false, 0), None);
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn concurrent_failures_trip_it_exactly_once() {
    let b = std::sync::Arc::new(Breaker::new(BreakerConfig { consecutive_failures: 50, ..cfg() }, 8));
    let trips: usize = (0..8)
        .map(|stripe| {
            let b = b.clone();
            std::thread::spawn(move || {
                (0..1_000).filter(|&i| b.on_result(Permit::Call, i, 1, false, stripe).is_some()).count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(trips, 1);
    assert_eq!(b.snapshot(0).opened, 1);
}

#[test]
fn invalid_settings_are_named() {
    let bad = |c: BreakerConfig| c.validate().unwrap_err();
    assert!(bad(BreakerConfig { timeout: Duration::ZERO, ..cfg() }).contains("timeout"));
    assert!(bad(BreakerConfig { failure_rate: 1.5, ..cfg() }).contains("failure_rate"));
    assert!(bad(BreakerConfig { half_open_probes: 0, ..cfg() }).contains("half_open_probes"));
    assert!(bad(BreakerConfig { open_max: Duration::from_millis(1), ..cfg() }).contains("open_max"));
    assert!(cfg().validate().is_ok());
}
