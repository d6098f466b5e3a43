//! The peers with the engine's features on: what a user assembles from the field's crates when
//! they want circuit breakers at three levels, a rate limiter and counters, as the engine has them.
//!
//! - `pool-failsafe`: the crossbeam pool ([`super::PoolPeer`]) with a failsafe-rs breaker per
//!   agent, per domain and for the whole federation, a governor rate limiter checked once per
//!   task, and per-agent atomic counters (attempts, failures).
//! - `tokio-tower`: a tokio task per request; each agent a tower service with its `Timeout`
//!   (the agent timeout, 50 ms) and `ConcurrencyLimit` layers; failsafe-rs's futures breakers per
//!   agent, per domain and for the whole; governor; the same counters.
//!
//! They run against `engine-guarded` ([`super::EnginePeer::guarded`]): the engine with its
//! breakers on at all three levels, its GCRA limiter on, a concurrency limit per agent, and its
//! statistics (always on).
//!
//! Every breaker and limiter is configured never to trip, so that what is measured is their
//! bookkeeping, not their decisions, and every run still matches the oracle: a breaker opens on a
//! failure rate of 100% over its window (none reaches it at p = 0.12), or on 2^32 - 1 failures in
//! a row; the limiters allow 2^32 - 1 tasks per second (governor's largest quota); the concurrency
//! limits (1,024 per agent) are never reached with 1,024 tasks in flight.

use super::federation::{AGENTS, DOMAINS, Federation, Router};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use failsafe::failure_policy::FailurePolicy as _;
use failsafe::futures::CircuitBreaker as Async;
use failsafe::{CircuitBreaker as Blocking, Config, StateMachine, backoff, failure_policy};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use metafed::sim::{fails_below, oracle_key};
use std::convert::Infallible;
use std::future::Ready;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tower::ServiceExt as _;
use tower::limit::ConcurrencyLimit;
use tower::timeout::Timeout;
use tower::util::ServiceFn;

/// The agent timeout, the engine's default (50 ms).
const AGENT_TIMEOUT: Duration = Duration::from_millis(50);

/// Attempts in flight per agent at most (tower's `ConcurrencyLimit`, the engine's
/// `max_concurrency`): never reached with 1,024 tasks in flight.
pub const AGENT_LIMIT: u32 = 1024;

/// The limiters' rate: governor's largest quota, per second.
pub const RATE_PER_S: u32 = u32::MAX;

type Policy = failure_policy::OrElse<
    failure_policy::SuccessRateOverTimeWindow<backoff::Constant>,
    failure_policy::ConsecutiveFailures<backoff::Constant>,
>;

/// A failsafe-rs breaker that trips on the success rate over a 10 s window (at most 0% required,
/// judged past 20 calls) or on a run of failures (2^32 - 1): the engine's two triggers, set never
/// to trip.
pub type Breaker = StateMachine<Policy, ()>;

/// A breaker as [`Breaker`] says.
pub fn breaker() -> Breaker {
    let open = || backoff::constant(Duration::from_secs(1));
    let policy = failure_policy::success_rate_over_time_window(0.0, 20, Duration::from_secs(10), open())
        .or_else(failure_policy::consecutive_failures(u32::MAX, open()));
    Config::new().failure_policy(policy).build()
}

/// An agent's counters, as a user keeps them: two shared atomics.
#[derive(Default)]
struct AgentCounters {
    attempts: AtomicU64,
    failures: AtomicU64,
}

impl AgentCounters {
    #[inline]
    fn record(&self, ok: bool) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The guards every worker of a peer shares.
struct Guards {
    agents: Vec<Breaker>,
    domains: Vec<Breaker>,
    whole: Breaker,
    limiter: DefaultDirectRateLimiter,
    counters: Vec<AgentCounters>,
}

impl Guards {
    fn new() -> Self {
        Self {
            agents: (0..DOMAINS * AGENTS).map(|_| breaker()).collect(),
            domains: (0..DOMAINS).map(|_| breaker()).collect(),
            whole: breaker(),
            limiter: RateLimiter::direct(Quota::per_second(NonZeroU32::new(RATE_PER_S).expect("not zero"))),
            counters: (0..DOMAINS * AGENTS).map(|_| AgentCounters::default()).collect(),
        }
    }

    /// A whole task, synchronously: the limiter, then the whole's breaker around every sub-task,
    /// each in its domain's breaker, each attempt in its agent's breaker, with failover.
    fn task(&self, router: &mut Router, id: u64, domains: u64) -> bool {
        if self.limiter.check().is_err() {
            return false;
        }
        let fanout = domains.count_ones();
        Blocking::call(&self.whole, || {
            let mut ok = true;
            let mut m = domains;
            while m != 0 {
                let d = m.trailing_zeros() as usize;
                m &= m - 1;
                ok &= Blocking::call(&self.domains[d], || self.subtask(router, id, d, fanout)).is_ok();
            }
            if ok { Ok(()) } else { Err(()) }
        })
        .is_ok()
    }

    fn subtask(&self, router: &mut Router, id: u64, d: usize, fanout: u32) -> Result<(), ()> {
        let key = oracle_key(id, d as u16, fanout);
        let start = router.next_start(d) as usize;
        for attempt in 0..AGENTS as u64 {
            let a = d * AGENTS + (start + attempt as usize) % AGENTS;
            let ok = Blocking::call(&self.agents[a], || {
                if router.attempt(key, attempt, a % AGENTS) { Ok(()) } else { Err(()) }
            })
            .is_ok();
            self.counters[a].record(ok);
            if ok {
                return Ok(());
            }
        }
        Err(())
    }
}

/// `pool-failsafe`: the crossbeam pool, each worker running a task's whole route inside the
/// shared breakers, limiter and counters.
pub struct GuardedPoolPeer {
    tx: Option<Sender<(u64, u64)>>,
    rx: Receiver<(u64, bool)>,
    threads: Vec<JoinHandle<()>>,
}

impl GuardedPoolPeer {
    /// Starts `workers` threads.
    pub fn new(workers: usize) -> Self {
        let guards = Arc::new(Guards::new());
        let (tx, work) = bounded::<(u64, u64)>(4096);
        let (done, rx) = bounded::<(u64, bool)>(4096);
        let threads = (0..workers.max(1))
            .map(|_| {
                let (work, done, guards) = (work.clone(), done.clone(), guards.clone());
                std::thread::spawn(move || {
                    let mut router = Router::default();
                    while let Ok((id, d)) = work.recv() {
                        if done.send((id, guards.task(&mut router, id, d))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self { tx: Some(tx), rx, threads }
    }
}

impl Federation for GuardedPoolPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let tx = self.tx.as_ref().expect("open");
        tasks.iter().take_while(|&&t| !matches!(tx.try_send(t), Err(TrySendError::Full(_)))).count()
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        if wait && let Ok(c) = self.rx.recv() {
            out.push(c);
        }
        out.extend(self.rx.try_iter());
    }
}

impl Drop for GuardedPoolPeer {
    fn drop(&mut self) {
        self.tx.take(); // closes the channel: the workers return
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// An attempt's request to an agent's service: the oracle's key, the attempt's number, the
/// failure threshold.
type Call = (u64, u64, u64);

/// The agent itself: answers at once, failing by the oracle.
fn agent_call((key, attempt, threshold): Call) -> Ready<Result<bool, Infallible>> {
    std::future::ready(Ok(!fails_below(key, attempt, threshold)))
}

/// An agent's tower stack: a concurrency limit, then a timeout, around the call.
type AgentService = ConcurrencyLimit<Timeout<ServiceFn<fn(Call) -> Ready<Result<bool, Infallible>>>>>;

fn agent_service() -> AgentService {
    tower::ServiceBuilder::new()
        .concurrency_limit(AGENT_LIMIT as usize)
        .timeout(AGENT_TIMEOUT)
        .service_fn(agent_call as fn(Call) -> Ready<Result<bool, Infallible>>)
}

struct TowerShared {
    guards: Guards,
    services: Vec<AgentService>,
    cursors: [AtomicU32; DOMAINS],
    threshold: u64,
}

/// One task on tokio: the limiter, the whole's breaker around the sub-tasks, each in its
/// domain's breaker, each attempt a call of the agent's tower stack in the agent's breaker.
async fn route(s: Arc<TowerShared>, id: u64, domains: u64) -> bool {
    if s.guards.limiter.check().is_err() {
        return false;
    }
    let fanout = domains.count_ones();
    let whole = async {
        let mut ok = true;
        let mut m = domains;
        while m != 0 {
            let d = m.trailing_zeros() as usize;
            m &= m - 1;
            ok &= Async::call(&s.guards.domains[d], subtask(&s, id, d, fanout)).await.is_ok();
        }
        if ok { Ok(()) } else { Err(()) }
    };
    Async::call(&s.guards.whole, whole).await.is_ok()
}

async fn subtask(s: &TowerShared, id: u64, d: usize, fanout: u32) -> Result<(), ()> {
    let key = oracle_key(id, d as u16, fanout);
    let start = s.cursors[d].fetch_add(1, Ordering::Relaxed) as usize;
    for attempt in 0..AGENTS as u64 {
        let a = d * AGENTS + (start + attempt as usize) % AGENTS;
        let call = async {
            match s.services[a].clone().oneshot((key, attempt, s.threshold)).await {
                Ok(true) => Ok(()),
                _ => Err(()),
            }
        };
        let ok = Async::call(&s.guards.agents[a], call).await.is_ok();
        s.guards.counters[a].record(ok);
        if ok {
            return Ok(());
        }
    }
    Err(())
}

/// `tokio-tower`: a multi-thread runtime, a spawned task per request.
pub struct TowerPeer {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<TowerShared>,
    done_tx: Sender<(u64, bool)>,
    done_rx: Receiver<(u64, bool)>,
}

impl TowerPeer {
    /// A runtime of `workers` threads.
    pub fn new(workers: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let (done_tx, done_rx) = bounded(1 << 16);
        let shared = Arc::new(TowerShared {
            guards: Guards::new(),
            services: (0..DOMAINS * AGENTS).map(|_| agent_service()).collect(),
            cursors: std::array::from_fn(|_| AtomicU32::new(0)),
            threshold: Router::default().threshold(),
        });
        Self { runtime: Some(runtime), shared, done_tx, done_rx }
    }
}

impl Federation for TowerPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let rt = self.runtime.as_ref().expect("open");
        for &(id, domains) in tasks {
            let (shared, done) = (self.shared.clone(), self.done_tx.clone());
            rt.spawn(async move {
                let ok = route(shared, id, domains).await;
                let _ = done.send((id, ok));
            });
        }
        tasks.len()
    }

    fn poll(&mut self, wait: bool, out: &mut Vec<(u64, bool)>) {
        if wait && let Ok(c) = self.done_rx.recv() {
            out.push(c);
        }
        out.extend(self.done_rx.try_iter());
    }
}

impl Drop for TowerPeer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
