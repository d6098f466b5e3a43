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
        count_window: 0,
        slow_call_duration: Duration::ZERO,
        slow_call_rate: 0.0,
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

// Parity with resilience4j's breaker: the count window, and the slow-call rate judged apart from
// the failure rate, each only past the minimum number of calls.

fn rates(failure_rate: f64, count_window: u32) -> BreakerConfig {
    BreakerConfig { consecutive_failures: 0, failure_rate, min_calls: 10, count_window, ..cfg() }
}

#[test]
fn nine_failures_of_nine_calls_under_a_minimum_of_ten_keep_it_closed() {
    for count_window in [0, 100] {
        let b = Breaker::new(rates(0.5, count_window), 1);
        for i in 0..9u64 {
            assert_eq!(call(&b, i * MS, false, 1).2, None, "call {i}, count_window {count_window}");
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!((b.snapshot(9 * MS).window_calls, b.snapshot(9 * MS).window_failures), (9, 9));
        // The tenth call makes ten: 100% >= 50%.
        assert_eq!(
            call(&b, 9 * MS, false, 1).2,
            t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate),
            "count_window {count_window}"
        );
    }
}

#[test]
fn the_count_window_judges_the_last_n_calls_whenever_they_came() {
    let b = Breaker::new(BreakerConfig { min_calls: 5, ..rates(0.5, 5) }, 1);
    // Two failures long ago still count: a count window has no time in it.
    call(&b, 0, false, 1);
    call(&b, MS, false, 1);
    for i in 0..3u64 {
        assert_eq!(call(&b, 3_600_000 * MS + i, true, 1).2, None);
    }
    assert_eq!(b.snapshot(3_600_000 * MS).window_calls, 5);
    // Failure six replaces the first failure: 2 of the last 5, below 50%.
    assert_eq!(call(&b, 3_600_001 * MS, false, 1).2, None);
    // Failure seven replaces the second failure: still 2 of 5; failure eight replaces a success:
    // 3 of 5.
    assert_eq!(call(&b, 3_600_002 * MS, false, 1).2, None);
    assert_eq!(
        call(&b, 3_600_003 * MS, false, 1).2,
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate)
    );
}

#[test]
fn a_count_window_shorter_than_min_calls_judges_once_it_is_full() {
    // resilience4j: for a count window, the minimum is the smaller of min_calls and its length.
    let b = Breaker::new(BreakerConfig { min_calls: 100, ..rates(0.5, 4) }, 1);
    call(&b, 0, true, 1);
    call(&b, 1, false, 1);
    assert_eq!(call(&b, 2, false, 1).2, None, "three calls: below the window's four");
    assert_eq!(call(&b, 3, true, 1).2, None, "a success never trips");
    assert_eq!(call(&b, 4, false, 1).2, t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate));
}

fn slow(count_window: u32) -> BreakerConfig {
    BreakerConfig { slow_call_duration: Duration::from_millis(10), slow_call_rate: 0.5, ..rates(0.0, count_window) }
}

#[test]
fn trips_on_the_slow_call_rate_even_when_every_call_succeeds() {
    for count_window in [0, 20] {
        let b = Breaker::new(slow(count_window), 1);
        // Alternate fast and slow successes (15 ms > 10 ms); the tenth call is slow: 5 of 10.
        for i in 0..9u64 {
            let lat = if i % 2 == 1 { 15 * MS } else { MS };
            assert_eq!(call(&b, i * MS, true, lat).2, None, "call {i}");
        }
        assert_eq!(b.snapshot(9 * MS).window_slow, 4);
        assert_eq!(
            call(&b, 9 * MS, true, 15 * MS).2,
            t(BreakerState::Closed, BreakerState::Open, TransitionCause::SlowCallRate),
            "count_window {count_window}"
        );
        assert_eq!(b.snapshot(9 * MS).opened, 1);
    }
}

#[test]
fn a_call_exactly_at_the_slow_duration_is_not_slow() {
    // resilience4j: slow is strictly slower than the threshold.
    let b = Breaker::new(BreakerConfig { min_calls: 1, slow_call_rate: 1.0, ..slow(0) }, 1);
    assert_eq!(call(&b, 0, true, 10 * MS).2, None);
    assert_eq!(b.snapshot(0).window_slow, 0);
    assert_eq!(call(&b, 1, true, 10 * MS + 1).2, None, "1 slow of 2 calls is below 100%");
    assert_eq!(call(&b, 2, true, 10 * MS + 1).2, None, "2 of 3: below 100% still; the rate needs every call slow");
    assert_eq!(b.snapshot(2).window_slow, 2);
}

#[test]
fn the_slow_call_rate_is_judged_apart_from_the_failure_rate() {
    // Failure rate 50%, slow-call rate 50%: slow successes do not raise the failure rate, fast
    // failures do not raise the slow-call rate.
    let c = BreakerConfig { failure_rate: 0.5, ..slow(0) };
    let b = Breaker::new(c, 1);
    for i in 0..4u64 {
        call(&b, i, false, MS); // fast failures
        call(&b, i + 100, true, 20 * MS); // slow successes
    }
    // 8 calls: 4 failures, 4 slow; nothing judged under ten.
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(call(&b, 200, true, MS).2, None, "a fast success trips nothing");
    // The tenth call, slow and failed, makes 5 of 10 of each: the failure rate is named.
    assert_eq!(
        call(&b, 201, false, 20 * MS).2,
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate)
    );
}

#[test]
fn a_slow_call_is_a_failure_only_past_the_timeout() {
    // slow_call_duration 10 ms, timeout 50 ms, consecutive failures 3: slow successes at 20 ms
    // never make a run of failures; calls at 60 ms do.
    let b = Breaker::new(BreakerConfig { consecutive_failures: 3, slow_call_rate: 1.0, min_calls: 100, ..slow(0) }, 1);
    for i in 0..10 {
        assert_eq!(call(&b, i, true, 20 * MS).2, None);
    }
    assert_eq!(b.snapshot(10).consecutive_failures, 0);
    call(&b, 11, true, 60 * MS);
    call(&b, 12, true, 60 * MS);
    assert_eq!(
        call(&b, 13, true, 60 * MS).2,
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::ConsecutiveFailures)
    );
}

#[test]
fn a_slow_probe_reopens_while_the_slow_call_rate_is_set() {
    let b = Breaker::new(BreakerConfig { min_calls: 1, slow_call_rate: 1.0, ..slow(0) }, 1);
    assert_eq!(
        call(&b, 0, true, 20 * MS).2,
        t(BreakerState::Closed, BreakerState::Open, TransitionCause::SlowCallRate)
    );
    // Open for 100 ms; the probe at 100 ms is slow: open again for 200 ms.
    let (p, t1, t2) = call(&b, 100 * MS, true, 20 * MS);
    assert_eq!(p, Permit::Probe);
    assert_eq!(t1, t(BreakerState::Open, BreakerState::HalfOpen, TransitionCause::OpenTimeElapsed));
    assert_eq!(t2, t(BreakerState::HalfOpen, BreakerState::Open, TransitionCause::ProbeFailed));
    assert_eq!(b.try_acquire(299 * MS).0, Permit::Denied);
    // A fast probe at 300 ms closes it.
    let (p, _, t2) = call(&b, 300 * MS, true, MS);
    assert_eq!(p, Permit::Probe);
    assert_eq!(t2, t(BreakerState::HalfOpen, BreakerState::Closed, TransitionCause::ProbesSucceeded));
}

#[test]
fn switching_to_a_count_window_live_starts_it_empty() {
    let b = Breaker::new(rates(0.5, 0), 1);
    for i in 0..8u64 {
        call(&b, i, false, 1);
    }
    b.set_config(&rates(0.5, 10));
    assert_eq!(b.config().count_window, 10);
    assert_eq!(b.snapshot(9).window_calls, 0, "a new window starts over");
    for i in 0..9u64 {
        assert_eq!(call(&b, 10 + i, false, 1).2, None);
    }
    assert_eq!(call(&b, 20, false, 1).2, t(BreakerState::Closed, BreakerState::Open, TransitionCause::FailureRate));
    // Back to the time window (its length unchanged): it recorded nothing while the count window
    // judged, so it holds the eight failures from before the switch; a reset closes the breaker
    // and keeps the window.
    b.set_config(&rates(0.5, 0));
    assert_eq!(b.config().count_window, 0);
    assert_eq!(b.snapshot(20).window_calls, 8);
    assert_eq!(b.set_mode(BreakerMode::ForcedOpen), t(BreakerState::Open, BreakerState::Open, TransitionCause::Forced));
    assert_eq!(b.set_mode(BreakerMode::Normal), t(BreakerState::Open, BreakerState::Closed, TransitionCause::Reset));
    assert_eq!(call(&b, 21, false, 1).2, None, "nine calls in the time window now");
}

#[test]
fn invalid_rate_settings_are_named() {
    let bad = |c: BreakerConfig| c.validate().unwrap_err();
    assert!(bad(BreakerConfig { slow_call_rate: 1.5, ..slow(0) }).contains("slow_call_rate"));
    assert!(bad(BreakerConfig { slow_call_duration: Duration::ZERO, ..slow(0) }).contains("slow_call_duration"));
    assert!(bad(BreakerConfig { count_window: 1_000_001, ..rates(0.5, 0) }).contains("count_window"));
    let no_window = BreakerConfig { window: Duration::ZERO, ..slow(0) };
    assert!(bad(no_window.clone()).contains("window"));
    assert!(BreakerConfig { count_window: 50, ..no_window }.validate().is_ok(), "a count window needs no time window");
    assert!(slow(0).validate().is_ok());
}

#[test]
fn the_rate_options_load_from_toml_and_bad_ones_are_named() {
    use metafed::Topology;
    let text = |extra: &str| {
        format!(
            "[breakers.domain]\ncount_window = 100\nslow_call_duration = 150.0\n{extra}\n[[domains]]\nname = \"A\"\nagents = [{{ name = \"X\", sim = {{ error_rate = 0.0 }} }}]\n"
        )
    };
    let t = Topology::from_toml(&text("slow_call_rate = 0.8")).unwrap();
    let d = &t.breakers().domain;
    assert_eq!((d.count_window, d.slow_call_duration, d.slow_call_rate), (100, Duration::from_millis(150), 0.8));
    assert_eq!(d.consecutive_failures, 5, "keys not given keep the level's default");
    assert_eq!(t.breakers().agent.count_window, 0, "off in the seed");
    let bad = Topology::from_toml(&text("slow_call_rate = 1.2")).unwrap_err().to_string();
    assert!(bad.contains("breakers.domain") && bad.contains("slow_call_rate"), "{bad}");
}

#[test]
fn a_breaker_closed_again_judges_its_rates_afresh() {
    // resilience4j resets its window on the move to closed: the failures that tripped it do not
    // trip it again at the first failure after it closes.
    for count_window in [0, 10] {
        let b = Breaker::new(BreakerConfig { min_calls: 4, ..rates(0.5, count_window) }, 1);
        for i in 0..4u64 {
            call(&b, i, false, 1);
        }
        assert_eq!(b.state(), BreakerState::Open, "count_window {count_window}");
        // The probe at 200 ms succeeds: closed, window empty.
        assert_eq!(
            call(&b, 200 * MS, true, 1).2,
            t(BreakerState::HalfOpen, BreakerState::Closed, TransitionCause::ProbesSucceeded)
        );
        assert_eq!(b.snapshot(200 * MS).window_calls, 0);
        assert_eq!(call(&b, 201 * MS, false, 1).2, None, "one failure of one call is under the minimum");
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
