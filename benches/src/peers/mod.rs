//! The engine's peers for the side-by-side benchmarks (`metafed bench`, `benches/workloads.rs`):
//! what a user would pick instead, on the workloads of `WORKLOADS.md`, behind one small trait and
//! one closed-loop driver, so every implementation is measured the same way.
//!
//! Every peer implements the engine's semantics: tasks of W1 (one domain) or W2 (all three,
//! joined), three agents per domain chosen round-robin, failover to the next agent on failure, at
//! most three attempts, agents failing by the oracle at p = 0.12, and exactly one completion per
//! task. Their success counts equal the oracle's; the driver checks it on every run.
//!
//! 1. `stages`: crossbeam-channel, one thread per stage (1 meta, 3 domain, 9 agent threads).
//! 2. `pool`: crossbeam-channel, a worker pool, each worker running a task's whole route.
//! 3. `actors`: tokio mpsc, one task (actor) per stage on a multi-thread runtime.
//! 4. `ring`: the limit: a bare SPSC ring out and back, one thread routing inline.
//! 5. `inline`: the floor: the routing as plain function calls on the submitting thread.
//!
//! With the features on (breakers at three levels, a rate limiter, counters; see [`guarded`]),
//! against `engine-guarded`:
//!
//! 6. `pool-failsafe`: the pool with failsafe-rs breakers, a governor limiter, atomic counters.
//! 7. `tokio-tower`: a tokio task per request, tower's timeout and concurrency limit per agent,
//!    failsafe-rs's futures breakers, governor, atomic counters.

mod actors;
mod engine;
mod federation;
pub mod guarded;
pub mod io;
mod pool;
mod ring;
mod stages;

pub use engine::{EnginePeer, SharedEngine, guarded_setup};
pub use federation::{
    AGENTS, DOMAINS, Federation, InlinePeer, P, Router, Run, closed_loop, closed_loop_at, closed_loop_sampled,
};

pub use actors::ActorsPeer;
pub use guarded::{GuardedPoolPeer, TowerPeer};
pub use pool::PoolPeer;
pub use ring::RingPeer;
pub use stages::StagesPeer;

/// The implementations `metafed bench` knows, by name.
pub const NAMES: [&str; 9] =
    ["engine", "stages", "pool", "actors", "ring", "inline", "engine-guarded", "pool-failsafe", "tokio-tower"];

/// The peers run with the engine's features on: they pair with `engine-guarded`.
pub const GUARDED: [&str; 2] = ["pool-failsafe", "tokio-tower"];

/// The engine a peer is compared with: `engine-guarded` for the peers with features on, else
/// `engine`.
pub fn engine_for(peer: &str) -> &'static str {
    if GUARDED.contains(&peer) { "engine-guarded" } else { "engine" }
}

/// Starts implementation `name` with `workers` threads where it has a choice (0: one per core).
pub fn start(name: &str, workers: usize) -> Option<Box<dyn Federation>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let w = if workers == 0 { cores } else { workers };
    Some(match name {
        "engine" => Box::new(EnginePeer::new(workers)),
        "stages" => Box::new(StagesPeer::new()),
        "pool" => Box::new(PoolPeer::new(w)),
        "actors" => Box::new(ActorsPeer::new(w)),
        "ring" => Box::new(RingPeer::new()),
        "inline" => Box::new(InlinePeer::default()),
        "engine-guarded" => Box::new(EnginePeer::guarded(workers)),
        "pool-failsafe" => Box::new(GuardedPoolPeer::new(w)),
        "tokio-tower" => Box::new(TowerPeer::new(w)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Workload;
    use std::time::Duration;

    /// Every implementation, both workloads, loaded and unloaded: the oracle's count exactly.
    #[test]
    #[cfg_attr(miri, ignore = "runs every peer on W1 and W2: hours under Miri")]
    fn every_peer_matches_the_oracle() {
        for name in NAMES {
            for (workload, in_flight) in [(Workload::Route, 1024), (Workload::FanOut, 256), (Workload::Route, 1)] {
                let mut f = start(name, 2).unwrap();
                let n = if in_flight == 1 { 2_000 } else { 20_000 };
                let r = closed_loop(&mut *f, workload, in_flight, n, Duration::from_secs(600), 1_000);
                assert!(r.exact(), "{name} {workload:?} in flight {in_flight}: {r:?}");
                assert_eq!(r.tasks, n, "{name}");
            }
        }
    }
}
