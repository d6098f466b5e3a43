//! The workloads of agents that wait (`WORKLOADS.md`, W5 I/O and W3 tail): the engine with
//! simulated I/O agents (each call a deferred attempt completed by the engine's timer thread),
//! and W5's peer, the same routing on tokio with a timeout and a concurrency limit per agent.

use super::engine::EnginePeer;
use super::federation::{AGENTS, DOMAINS, Federation};
use crossbeam_channel::{Receiver, Sender, bounded};
use metafed::policy::Hedge;
use metafed::sim::{Latency, SimAgent, fails_below, oracle_key, threshold};
use metafed::{AgentSpec, Levels, SEED_DOMAINS, Topology};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// W5's agent delay: every call completes 1 ms after it starts.
pub const W5_DELAY: Duration = Duration::from_millis(1);
/// The agent timeout of the seed, which both W5 implementations enforce.
pub const AGENT_TIMEOUT: Duration = Duration::from_millis(50);
/// The per-agent concurrency limit both W5 implementations apply (not binding at 1,024 tasks
/// in flight over 9 agents, but on the path).
pub const AGENT_LIMIT: u32 = 1024;

/// The seed's 3 x 3 on simulated I/O agents failing at `p` with `latency`, breakers disabled,
/// each agent limited to [`AGENT_LIMIT`] attempts in flight, and `hedge` on every domain.
pub fn io_topology(p: f64, latency: Latency, hedge: Option<Hedge>) -> Topology {
    let sim = SimAgent { error_rate: p, latency, io: true, ..SimAgent::default() };
    let mut b = Topology::builder();
    for (domain, agents) in SEED_DOMAINS {
        let d = b.domain(domain).expect("a valid name");
        for a in agents {
            b.agent(d, a, AgentSpec::sim(sim.clone()).max_concurrency(AGENT_LIMIT)).expect("a valid agent");
        }
        if let Some(h) = hedge {
            b.hedge(d, h).expect("a valid hedge");
        }
    }
    b.breakers(Levels::disabled());
    b.build().expect("a valid topology")
}

/// W5 on the engine: every agent call completes `W5_DELAY` after it starts.
pub fn w5_engine(p: f64, workers: usize) -> EnginePeer {
    EnginePeer::with_topology(io_topology(p, Latency::Fixed { us: W5_DELAY.as_secs_f64() * 1e6 }, None), workers)
}

/// W3 on the engine: 10 us calls, except the first attempt of 1 task in 100, which takes 1 ms;
/// with a hedge after the observed `hedge_percentile` (none without).
pub fn w3_engine(hedge_percentile: Option<f64>, workers: usize) -> EnginePeer {
    let latency = Latency::LongTail { base_us: 10.0, slow_us: 1000.0, slow_rate: 0.01 };
    EnginePeer::with_topology(io_topology(0.0, latency, hedge_percentile.map(Hedge::at_percentile)), workers)
}

/// W6's domain policies: (name, balance, outlier detection), each on the engine alone (no peer
/// has them: tower's p2c needs a discovery stream, and no outlier ejection by latency exists).
pub fn w6_policies() -> [(&'static str, metafed::policy::Balance, Option<metafed::policy::Outlier>); 3] {
    let latency = metafed::policy::Outlier {
        consecutive_failures: 0,
        latency_factor: 2.0,
        min_samples: 20,
        base_ejection: Duration::from_secs(1),
        max_ejection: Duration::from_secs(10),
        ..metafed::policy::Outlier::default()
    };
    [
        ("round-robin", metafed::policy::Balance::RoundRobin, None),
        ("peak-ewma", metafed::policy::Balance::peak_ewma(), None),
        ("rr+ejection", metafed::policy::Balance::RoundRobin, Some(latency)),
    ]
}

/// W6 on the engine: calls of `base_us` with the third agent of each domain ten times slower on
/// 30% of its calls, each domain with `balance` and `outlier`; agent breakers on with no trigger
/// of their own (only outlier detection takes an agent out), the other levels off.
pub fn w6_engine(
    base_us: f64,
    balance: metafed::policy::Balance,
    outlier: Option<metafed::policy::Outlier>,
    workers: usize,
) -> EnginePeer {
    EnginePeer::with_topology(w6_topology(base_us, balance, outlier), workers)
}

/// W6's topology (see [`w6_engine`]), for the live engine and for `metafed simulate`.
pub fn w6_topology(
    base_us: f64,
    balance: metafed::policy::Balance,
    outlier: Option<metafed::policy::Outlier>,
) -> Topology {
    let mut b = Topology::builder();
    for (domain, agents) in SEED_DOMAINS {
        let d = b.domain(domain).expect("a valid name");
        for (i, a) in agents.iter().enumerate() {
            let latency = if i == 2 {
                Latency::LongTail { base_us, slow_us: 10.0 * base_us, slow_rate: 0.3 }
            } else {
                Latency::Fixed { us: base_us }
            };
            let sim = SimAgent { latency, io: true, seed: i as u64, ..SimAgent::default() };
            b.agent(d, *a, AgentSpec::sim(sim).max_concurrency(AGENT_LIMIT)).expect("a valid agent");
        }
        b.balance(d, balance).expect("a valid balance");
        if let Some(o) = outlier {
            b.outlier(d, o).expect("a valid outlier detection");
        }
    }
    let quiet = metafed::breaker::BreakerConfig {
        consecutive_failures: 0,
        failure_rate: 0.0,
        ..metafed::breaker::BreakerConfig::agent()
    };
    b.breakers(Levels { agent: quiet, ..Levels::disabled() });
    b.build().expect("a valid topology")
}

/// An agent of the tokio peer: a concurrency limit (a semaphore) and a timeout around the call.
struct TokioAgent {
    limit: tokio::sync::Semaphore,
}

/// W5's peer: the W1 routing on tokio, one service per agent with a timeout and a concurrency
/// limit (tower's `timeout` and `concurrency_limit` layers, written out), each call a
/// `tokio::time::sleep` of [`W5_DELAY`]. Each submitted task is a spawned tokio task that runs
/// its sub-tasks with failover and sends its completion back on a channel.
pub struct TokioIoPeer {
    runtime: Option<tokio::runtime::Runtime>,
    agents: Arc<Vec<TokioAgent>>,
    cursors: Arc<[AtomicU32; DOMAINS]>,
    threshold: u64,
    done_tx: Sender<(u64, bool)>,
    done_rx: Receiver<(u64, bool)>,
}

impl TokioIoPeer {
    /// A multi-thread runtime of `workers` threads (0: one per core), agents failing at `p`.
    pub fn new(p: f64, workers: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(if workers == 0 { cores } else { workers })
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let (done_tx, done_rx) = bounded(1 << 16);
        Self {
            runtime: Some(runtime),
            agents: Arc::new(
                (0..DOMAINS * AGENTS)
                    .map(|_| TokioAgent { limit: tokio::sync::Semaphore::new(AGENT_LIMIT as usize) })
                    .collect(),
            ),
            cursors: Arc::new(std::array::from_fn(|_| AtomicU32::new(0))),
            threshold: threshold(p),
            done_tx,
            done_rx,
        }
    }
}

/// One task on tokio: every sub-task, each with failover over the domain's agents (round-robin
/// start, at most `AGENTS` attempts), each attempt bounded by the agent timeout.
async fn route(
    id: u64,
    domains: u64,
    agents: Arc<Vec<TokioAgent>>,
    cursors: Arc<[AtomicU32; DOMAINS]>,
    thr: u64,
) -> bool {
    let fanout = domains.count_ones();
    let mut ok = true;
    let mut m = domains;
    while m != 0 {
        let d = m.trailing_zeros() as usize;
        m &= m - 1;
        let key = oracle_key(id, d as u16, fanout);
        let start = cursors[d].fetch_add(1, Ordering::Relaxed) as usize;
        let mut sub_ok = false;
        for attempt in 0..AGENTS as u64 {
            let agent = &agents[d * AGENTS + (start + attempt as usize) % AGENTS];
            let call = async {
                let _permit = agent.limit.acquire().await.expect("never closed");
                tokio::time::sleep(W5_DELAY).await;
                !fails_below(key, attempt, thr)
            };
            if let Ok(true) = tokio::time::timeout(AGENT_TIMEOUT, call).await {
                sub_ok = true;
                break;
            }
        }
        ok &= sub_ok;
    }
    ok
}

impl Federation for TokioIoPeer {
    fn submit(&mut self, tasks: &[(u64, u64)]) -> usize {
        let rt = self.runtime.as_ref().expect("open");
        for &(id, domains) in tasks {
            let (agents, cursors, thr, done) =
                (self.agents.clone(), self.cursors.clone(), self.threshold, self.done_tx.clone());
            rt.spawn(async move {
                let ok = route(id, domains, agents, cursors, thr).await;
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

impl Drop for TokioIoPeer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Workload;
    use crate::peers::closed_loop_at;

    #[test]
    #[cfg_attr(miri, ignore = "runs W5 with tokio and threads: minutes under Miri")]
    fn both_w5_implementations_match_the_oracle() {
        for p in [0.0, 0.12] {
            let mut e = w5_engine(p, 2);
            let r = closed_loop_at(&mut e, Workload::Route, 256, 5_000, Duration::from_secs(600), 1, p);
            assert!(r.exact(), "engine p={p}: {r:?}");
            let mut t = TokioIoPeer::new(p, 2);
            let r = closed_loop_at(&mut t, Workload::Route, 256, 5_000, Duration::from_secs(600), 1, p);
            assert!(r.exact(), "tokio p={p}: {r:?}");
        }
    }
}
