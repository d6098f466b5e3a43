//! Circuit breakers held in atomics, one per agent, per domain and for the meta level.
//!
//! A breaker is closed (calls pass), open (calls are refused until its open time ends) or
//! half-open (a bounded number of probe calls pass; enough successes close it, one failure opens
//! it again with twice the open time, up to a cap). It trips from closed to open on a run of
//! consecutive failures, on a failure rate, or on a slow-call rate, each rate judged over a
//! sliding window once the window holds a minimum number of calls. The window is a time window
//! (the last `window`) or a count window (the last `count_window` calls), resilience4j's two
//! kinds, and the rates follow resilience4j's semantics: a call slower than `slow_call_duration`
//! is slow whatever it returned, the failure rate and the slow-call rate are judged separately,
//! each `>=` its threshold, and not at all on fewer than `min_calls` calls (for a count window,
//! on fewer than the smaller of `min_calls` and its length). A call slower than the level's
//! timeout counts as a failure. Two modes override the state machine: disabled (every call
//! passes, nothing trips) and forced-open (every call is refused).
//!
//! All mutable state is in one `AtomicU64` (state, mode, probes in flight, probe successes,
//! backoff exponent, consecutive failures), so every transition is one compare-and-swap and two
//! threads can never both make the same transition. The open deadline lives in a second atomic;
//! it is written in a transient `Opening` state that refuses calls, then published by the store
//! that makes the state `Open`, so no reader pairs `Open` with a stale deadline.
//!
//! Time is a plain `now_ns` argument on every call: the engine passes its monotonic clock, and
//! the tests drive a fake one through exact sequences (`tests/breaker.rs`).

mod config;
mod types;
mod window;

pub use config::{BreakerConfig, MAX_COUNT_WINDOW};
pub use types::{BreakerMode, BreakerSnapshot, BreakerState, Permit, Transition, TransitionCause};

use crate::sync::{AtomicU64, Ordering, Snapshot};
use config::{JUDGE_SLOW, Live, RECORD_COUNT, RECORD_TIME};
use std::fmt;
use std::time::Duration;
use window::{CountWindow, Totals, Window};

// The state word. Changing any field is one compare-and-swap of the whole word.
const STATE_MASK: u64 = 0b111;
const S_CLOSED: u64 = 0;
const S_OPEN: u64 = 1;
const S_HALF_OPEN: u64 = 2;
/// Transient: the thread that tripped the breaker is writing the open deadline. Refuses calls.
const S_OPENING: u64 = 3;
const MODE_SHIFT: u32 = 3;
const MODE_MASK: u64 = 0b11 << MODE_SHIFT;
/// A breaker the state machine decides (mode `Normal`, 0) that is closed (0): the word's mode and
/// state bits, for the one test of the common case.
const CLOSED_NORMAL: u64 = S_CLOSED | ((BreakerMode::Normal as u64) << MODE_SHIFT);
const PROBES_SHIFT: u32 = 8;
const SUCC_SHIFT: u32 = 16;
const EXP_SHIFT: u32 = 24;
const CONSEC_SHIFT: u32 = 32;
const CONSEC_MASK: u64 = !0 << CONSEC_SHIFT;

#[inline]
fn st(w: u64) -> u64 {
    w & STATE_MASK
}
#[inline]
fn mode_of(w: u64) -> BreakerMode {
    match (w & MODE_MASK) >> MODE_SHIFT {
        1 => BreakerMode::Disabled,
        2 => BreakerMode::ForcedOpen,
        _ => BreakerMode::Normal,
    }
}
#[inline]
fn probes(w: u64) -> u64 {
    (w >> PROBES_SHIFT) & 0xff
}
#[inline]
fn succ(w: u64) -> u64 {
    (w >> SUCC_SHIFT) & 0xff
}
#[inline]
fn exp(w: u64) -> u64 {
    (w >> EXP_SHIFT) & 0xff
}
#[inline]
fn consec(w: u64) -> u64 {
    w >> CONSEC_SHIFT
}
#[inline]
fn pack(state: u64, mode_bits: u64, probes: u64, succ: u64, exp: u64, consec: u64) -> u64 {
    state | mode_bits | (probes << PROBES_SHIFT) | (succ << SUCC_SHIFT) | (exp << EXP_SHIFT) | (consec << CONSEC_SHIFT)
}
fn public_state(w: u64) -> BreakerState {
    match st(w) {
        S_CLOSED => BreakerState::Closed,
        S_HALF_OPEN => BreakerState::HalfOpen,
        _ => BreakerState::Open,
    }
}

/// A circuit breaker; see the module documentation.
pub struct Breaker {
    /// The settings (the mode lives in the state word).
    live: Live,
    /// The state word (layout above). Every transition is a compare-and-swap on it.
    word: AtomicU64,
    /// While the state is `Open`: the clock reading at which it may move to half-open. Written
    /// only by the thread that won the transition to `Opening`, before it publishes `Open`.
    open_until: AtomicU64,
    /// Per-thread stripes of calls, failures and slow calls over the time window.
    window: Window,
    /// The count window, when `count_window` is set (replaced whole when its length changes;
    /// a one-call placeholder otherwise).
    counts: Snapshot<CountWindow>,
    /// Transition counters, indexed by [`TransitionCause`].
    transitions: [AtomicU64; 11],
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker").field("state", &self.state()).field("mode", &self.mode()).finish()
    }
}

impl Breaker {
    /// A closed breaker with `cfg`, whose window has one stripe per recording thread
    /// (`stripes`, at least 1). The configuration must be valid ([`BreakerConfig::validate`]).
    pub fn new(cfg: BreakerConfig, stripes: usize) -> Self {
        let mode_bits = (cfg.mode as u64) << MODE_SHIFT;
        let window = Window::new(cfg.window.as_nanos() as u64, stripes);
        Self {
            live: Live::new(&cfg),
            word: AtomicU64::new(mode_bits),
            open_until: AtomicU64::new(0),
            window,
            counts: Snapshot::new(CountWindow::new(cfg.count_window)),
            transitions: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The settings now (the window rounded to its ten buckets), with the current mode.
    pub fn config(&self) -> BreakerConfig {
        let r = Ordering::Relaxed;
        BreakerConfig {
            timeout: Duration::from_nanos(self.live.timeout_ns.load(r)),
            consecutive_failures: self.live.consecutive_failures.load(r),
            failure_rate: self.live.failure_rate(),
            window: Duration::from_nanos(self.window.len_ns()),
            min_calls: self.live.min_calls.load(r),
            count_window: self.live.count_window.load(r),
            slow_call_duration: Duration::from_nanos(self.live.slow_call_ns.load(r)),
            slow_call_rate: self.live.slow_call_rate(),
            open_base: Duration::from_nanos(self.live.open_base_ns.load(r)),
            open_max: Duration::from_nanos(self.live.open_max_ns.load(r)),
            half_open_probes: self.live.half_open_probes.load(r),
            mode: self.mode(),
        }
    }

    /// Changes the settings while calls run (the mode is not among them: see
    /// [`set_mode`](Self::set_mode)). The state is kept: an open breaker stays open until the
    /// deadline it had, a run of failures keeps counting toward the new threshold. A changed
    /// window (its length, or a count window of another length) starts over. `cfg` must be
    /// valid ([`BreakerConfig::validate`]).
    pub fn set_config(&self, cfg: &BreakerConfig) {
        debug_assert!(cfg.validate().is_ok());
        if cfg.window.as_nanos() as u64 / window::BUCKETS as u64 != self.window.len_ns() / window::BUCKETS as u64 {
            self.window.set_len(cfg.window.as_nanos() as u64);
        }
        if cfg.count_window != self.live.count_window.load(Ordering::Relaxed) {
            self.counts.store(CountWindow::new(cfg.count_window));
        }
        self.live.store(cfg);
    }

    /// The timeout in nanoseconds: a call slower than this counts as a failure.
    #[inline]
    pub(crate) fn timeout_ns(&self) -> u64 {
        self.live.timeout_ns.load(Ordering::Relaxed)
    }

    /// The effective state (forced-open reads as open, the transient opening state as open).
    pub fn state(&self) -> BreakerState {
        let w = self.word.load(Ordering::Acquire);
        if mode_of(w) == BreakerMode::ForcedOpen { BreakerState::Open } else { public_state(w) }
    }

    /// Whether the breaker is disabled (one relaxed load: the mode changes rarely).
    #[inline]
    pub(crate) fn is_disabled(&self) -> bool {
        self.word.load(Ordering::Relaxed) & MODE_MASK == (BreakerMode::Disabled as u64) << MODE_SHIFT
    }

    /// The operator's override.
    pub fn mode(&self) -> BreakerMode {
        mode_of(self.word.load(Ordering::Acquire))
    }

    /// Asks whether a call may be made now. A `Probe` permit is one of the bounded half-open
    /// probes: its result must be reported with [`on_result`](Self::on_result) to free it.
    /// The transition, if the request moved the breaker from open to half-open, comes back too.
    #[inline]
    pub fn try_acquire(&self, now_ns: u64) -> (Permit, Option<Transition>) {
        // The common case in one test: the state machine decides, and the breaker is closed.
        if self.word.load(Ordering::Acquire) & (MODE_MASK | STATE_MASK) == CLOSED_NORMAL {
            return (Permit::Call, None);
        }
        self.try_acquire_slow(now_ns)
    }

    #[inline(never)]
    fn try_acquire_slow(&self, now_ns: u64) -> (Permit, Option<Transition>) {
        loop {
            let w = self.word.load(Ordering::Acquire);
            match mode_of(w) {
                BreakerMode::Disabled => return (Permit::Call, None),
                BreakerMode::ForcedOpen => return (Permit::Denied, None),
                BreakerMode::Normal => {}
            }
            match st(w) {
                S_CLOSED => return (Permit::Call, None),
                S_OPEN => {
                    // Acquire on the word made the deadline written before `Open` visible.
                    if now_ns < self.open_until.load(Ordering::Acquire) {
                        return (Permit::Denied, None);
                    }
                    let next = pack(S_HALF_OPEN, w & MODE_MASK, 1, 0, exp(w), 0);
                    if self.cas(w, next) {
                        return (
                            Permit::Probe,
                            Some(self.count(
                                BreakerState::Open,
                                BreakerState::HalfOpen,
                                TransitionCause::OpenTimeElapsed,
                            )),
                        );
                    }
                }
                S_HALF_OPEN => {
                    if probes(w) >= u64::from(self.live.half_open_probes.load(Ordering::Relaxed)) {
                        return (Permit::Denied, None);
                    }
                    if self.cas(w, w + (1 << PROBES_SHIFT)) {
                        return (Permit::Probe, None);
                    }
                }
                _ => return (Permit::Denied, None), // opening
            }
        }
    }

    /// Reports the outcome of a call made under `permit`: `ok` is what the call returned,
    /// `latency_ns` how long it took (a call slower than the timeout is a failure whatever it
    /// returned), `stripe` the caller's own window stripe. Returns the transition it caused.
    #[inline]
    pub fn on_result(
        &self,
        permit: Permit,
        now_ns: u64,
        latency_ns: u64,
        ok: bool,
        stripe: usize,
    ) -> Option<Transition> {
        if self.is_disabled() {
            return None; // nothing to judge; the engine's counters still count the call
        }
        self.judge(permit, now_ns, latency_ns, ok, stripe)
    }

    /// `on_result` past the disabled check, kept apart so that the check inlines alone.
    #[inline(always)]
    fn judge(&self, permit: Permit, now_ns: u64, latency_ns: u64, ok: bool, stripe: usize) -> Option<Transition> {
        let failure = !ok || latency_ns > self.timeout_ns();
        let judged = self.live.judged.load(Ordering::Relaxed);
        // The seed's settings (a failure rate over the time window) take the first branch, with
        // nothing of the slow-call rate in it.
        let slow = if judged == RECORD_TIME {
            self.window.record(stripe, now_ns, failure, false);
            false
        } else {
            judged != 0 && self.record(judged, stripe, now_ns, latency_ns, failure)
        };
        match permit {
            // A success in the closed state with no run of failures to end changes nothing:
            // one load and one test, the call to the state machine left out.
            Permit::Call
                if !failure
                    && !slow
                    && self.word.load(Ordering::Acquire) & (MODE_MASK | STATE_MASK | CONSEC_MASK) == CLOSED_NORMAL =>
            {
                None
            }
            Permit::Call => self.on_closed_result(now_ns, failure, slow),
            Permit::Probe => self.on_probe_result(now_ns, failure || slow),
            Permit::Denied | Permit::Bypass => None,
        }
    }

    /// Records a call in the window the settings judge (`judged` != 0) when the slow-call rate
    /// or the count window is on; returns whether it was slow.
    #[inline(never)]
    fn record(&self, judged: u32, stripe: usize, now_ns: u64, latency_ns: u64, failure: bool) -> bool {
        let slow = judged & JUDGE_SLOW != 0 && latency_ns > self.live.slow_call_ns.load(Ordering::Relaxed);
        if judged & RECORD_TIME != 0 {
            self.window.record(stripe, now_ns, failure, slow);
        } else {
            self.counts.with(|c| c.record(failure, slow));
        }
        slow
    }

    /// Frees a permit whose call ended with no outcome that should count (the work was refused
    /// further down, or abandoned at shutdown): a probe's slot is handed back, nothing else moves.
    pub fn release(&self, permit: Permit) {
        if permit != Permit::Probe {
            return;
        }
        loop {
            let w = self.word.load(Ordering::Acquire);
            if mode_of(w) != BreakerMode::Normal || st(w) != S_HALF_OPEN || probes(w) == 0 {
                return;
            }
            if self.cas(w, w - (1 << PROBES_SHIFT)) {
                return;
            }
        }
    }

    fn on_closed_result(&self, now_ns: u64, failure: bool, slow: bool) -> Option<Transition> {
        loop {
            let w = self.word.load(Ordering::Acquire);
            if mode_of(w) != BreakerMode::Normal || st(w) != S_CLOSED {
                return None; // disabled, forced, or a result from before the breaker opened
            }
            if !failure {
                // A slow success may trip the slow-call rate; it still ends a run of failures.
                if slow && let Some(cause) = self.rate_tripped(now_ns, false, true) {
                    if let Some(t) = self.trip(w, now_ns, 0, BreakerState::Closed, cause) {
                        return Some(t);
                    }
                    continue;
                }
                // The common path: read-only unless a run of failures must be reset.
                if consec(w) == 0 || self.cas(w, w & ((1 << CONSEC_SHIFT) - 1)) {
                    return None;
                }
                continue;
            }
            let run = consec(w) + 1;
            let threshold = u64::from(self.live.consecutive_failures.load(Ordering::Relaxed));
            let cause = if threshold > 0 && run >= threshold {
                TransitionCause::ConsecutiveFailures
            } else if let Some(cause) = self.rate_tripped(now_ns, true, slow) {
                cause
            } else {
                let next = (w & ((1 << CONSEC_SHIFT) - 1)) | (run.min(u64::from(u32::MAX)) << CONSEC_SHIFT);
                if self.cas(w, next) {
                    return None;
                }
                continue;
            };
            if let Some(t) = self.trip(w, now_ns, 0, BreakerState::Closed, cause) {
                return Some(t);
            }
        }
    }

    fn on_probe_result(&self, now_ns: u64, failure: bool) -> Option<Transition> {
        loop {
            let w = self.word.load(Ordering::Acquire);
            if mode_of(w) != BreakerMode::Normal || st(w) != S_HALF_OPEN {
                return None; // the probe's round ended without it
            }
            if failure {
                let e = (exp(w) + 1).min(32);
                if let Some(t) = self.trip(w, now_ns, e, BreakerState::HalfOpen, TransitionCause::ProbeFailed) {
                    return Some(t);
                }
                continue;
            }
            let s = succ(w) + 1;
            if s >= u64::from(self.live.half_open_probes.load(Ordering::Relaxed)) {
                if self.cas(w, w & MODE_MASK) {
                    self.clear_window(); // as resilience4j: closed again, judged afresh
                    return Some(self.count(
                        BreakerState::HalfOpen,
                        BreakerState::Closed,
                        TransitionCause::ProbesSucceeded,
                    ));
                }
            } else {
                let next = pack(S_HALF_OPEN, w & MODE_MASK, probes(w).saturating_sub(1), s, exp(w), 0);
                if self.cas(w, next) {
                    return None;
                }
            }
        }
    }

    /// Moves from the state seen in `w` to open with backoff exponent `e`: claims the move with
    /// one CAS (to the transient `Opening`), writes the deadline, then publishes `Open`.
    fn trip(&self, w: u64, now_ns: u64, e: u64, from: BreakerState, cause: TransitionCause) -> Option<Transition> {
        let base = self.live.open_base_ns.load(Ordering::Relaxed);
        let open_ns = base.saturating_mul(1u64 << e.min(40)).min(self.live.open_max_ns.load(Ordering::Relaxed));
        self.open_for(w, now_ns, open_ns, e, from, cause)
    }

    /// The move of [`trip`](Self::trip) and [`eject`](Self::eject): to open for `open_ns`.
    fn open_for(
        &self,
        w: u64,
        now_ns: u64,
        open_ns: u64,
        e: u64,
        from: BreakerState,
        cause: TransitionCause,
    ) -> Option<Transition> {
        if !self.cas(w, pack(S_OPENING, w & MODE_MASK, 0, 0, e, 0)) {
            return None;
        }
        self.open_until.store(now_ns.saturating_add(open_ns), Ordering::Relaxed);
        // Only the winner of the CAS above changes the state bits while they say `Opening`;
        // an operator may change the mode bits meanwhile, so keep whatever mode is there.
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            if st(cur) != S_OPENING {
                break; // an operator reset the breaker meanwhile; the reset wins
            }
            let next = (cur & !STATE_MASK) | S_OPEN;
            match self.word.compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        Some(self.count(from, BreakerState::Open, cause))
    }

    /// Empties the window the settings judge by (none when no rate is judged).
    fn clear_window(&self) {
        let judged = self.live.judged.load(Ordering::Relaxed);
        if judged & RECORD_COUNT != 0 {
            self.counts.with(|c| c.clear());
        } else if judged & RECORD_TIME != 0 {
            self.window.clear();
        }
    }

    /// What the window holds now: the count window's totals when one is set, else the time
    /// window's.
    fn totals(&self, now_ns: u64) -> Totals {
        let judged = self.live.judged.load(Ordering::Relaxed);
        if judged & RECORD_COUNT != 0 {
            self.counts.with(|c| c.totals())
        } else if judged & RECORD_TIME != 0 {
            self.window.totals(now_ns, judged & JUDGE_SLOW != 0)
        } else {
            Totals::default()
        }
    }

    /// Whether a rate trips the breaker after a call that failed (`failure`) or was slow
    /// (`slow`): the failure rate is asked only after a failure and the slow-call rate only
    /// after a slow call (no other call can raise them), each once the window holds the
    /// minimum number of calls. The failure rate is named first when both trip. Out of line: it
    /// runs only after a failure or a slow call, and the success path stays small.
    #[inline(never)]
    fn rate_tripped(&self, now_ns: u64, failure: bool, slow: bool) -> Option<TransitionCause> {
        let failure_rate = if failure { self.live.failure_rate() } else { 0.0 };
        let slow_rate = if slow { self.live.slow_call_rate() } else { 0.0 };
        if failure_rate <= 0.0 && slow_rate <= 0.0 {
            return None;
        }
        let t = self.totals(now_ns);
        let mut min_calls = self.live.min_calls.load(Ordering::Relaxed).max(1);
        if self.live.judged.load(Ordering::Relaxed) & RECORD_COUNT != 0 {
            min_calls = min_calls.min(self.counts.with(|c| c.len()));
        }
        if t.calls < u64::from(min_calls) {
            return None;
        }
        if failure_rate > 0.0 && t.failures as f64 >= failure_rate * t.calls as f64 {
            Some(TransitionCause::FailureRate)
        } else if slow_rate > 0.0 && t.slow as f64 >= slow_rate * t.calls as f64 {
            Some(TransitionCause::SlowCallRate)
        } else {
            None
        }
    }

    /// Ejects the agent this breaker guards (the domain's outlier detection, `cause` one of the
    /// outlier causes): from closed to open for `open_ns`, after which it probes as after any
    /// trip. Only a closed breaker in normal mode is ejected (a disabled or forced one, or one
    /// already open, is left as it is).
    pub fn eject(&self, now_ns: u64, open_ns: u64, cause: TransitionCause) -> Option<Transition> {
        debug_assert!(cause.is_ejection());
        let w = self.word.load(Ordering::Acquire);
        if mode_of(w) != BreakerMode::Normal || st(w) != S_CLOSED {
            return None;
        }
        self.open_for(w, now_ns, open_ns, exp(w), BreakerState::Closed, cause)
    }

    /// Sets the operator's override. Forcing open and returning to normal are transitions;
    /// a breaker returned to normal restarts closed with its counts cleared.
    pub fn set_mode(&self, mode: BreakerMode) -> Option<Transition> {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let old_mode = mode_of(cur);
            if old_mode == mode {
                return None;
            }
            let mode_bits = (mode as u64) << MODE_SHIFT;
            let next = match mode {
                BreakerMode::Normal => mode_bits, // closed, counts cleared
                _ => (cur & !MODE_MASK) | mode_bits,
            };
            match self.word.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if mode == BreakerMode::Normal {
                        self.clear_window(); // restarts closed with its counts cleared
                    }
                    let before =
                        if old_mode == BreakerMode::ForcedOpen { BreakerState::Open } else { public_state(cur) };
                    return match mode {
                        BreakerMode::ForcedOpen => {
                            Some(self.count(before, BreakerState::Open, TransitionCause::Forced))
                        }
                        BreakerMode::Normal => Some(self.count(before, BreakerState::Closed, TransitionCause::Reset)),
                        BreakerMode::Disabled => None,
                    };
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// A point-in-time view (the counts are read one by one, not as one atomic snapshot).
    pub fn snapshot(&self, now_ns: u64) -> BreakerSnapshot {
        let w = self.word.load(Ordering::Acquire);
        let totals = self.totals(now_ns);
        let n = |c: TransitionCause| self.transitions[c as usize].load(Ordering::Relaxed);
        BreakerSnapshot {
            state: self.state(),
            mode: mode_of(w),
            consecutive_failures: consec(w).min(u64::from(u32::MAX)) as u32,
            window_calls: totals.calls,
            window_failures: totals.failures,
            window_slow: totals.slow,
            opened: n(TransitionCause::ConsecutiveFailures)
                + n(TransitionCause::FailureRate)
                + n(TransitionCause::SlowCallRate),
            ejected: n(TransitionCause::OutlierFailures)
                + n(TransitionCause::OutlierFailureRate)
                + n(TransitionCause::OutlierLatency),
            reopened: n(TransitionCause::ProbeFailed),
            half_opened: n(TransitionCause::OpenTimeElapsed),
            closed: n(TransitionCause::ProbesSucceeded),
        }
    }

    #[inline]
    fn cas(&self, current: u64, next: u64) -> bool {
        self.word.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn count(&self, from: BreakerState, to: BreakerState, cause: TransitionCause) -> Transition {
        self.transitions[cause as usize].fetch_add(1, Ordering::Relaxed);
        Transition { from, to, cause }
    }
}
