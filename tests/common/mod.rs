//! Helpers the integration tests share.

use metafed::{AgentSpec, Completion, DomainId, Engine, EngineConfig, Levels, Task, Topology, TopologyBuilder};
use std::time::{Duration, Instant};

/// How long a test waits for what should happen soon: long, because a shared machine may stall
/// a thread for seconds. A passing test waits only as long as the thing takes.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `done()` holds, looking every millisecond; fails the test, naming `what`, after
/// [`PATIENCE`]. Tests synchronise with this, never with a sleep of a guessed length.
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every breaker of `b` disabled (outcomes still counted).
pub fn no_breakers(b: &mut TopologyBuilder) {
    b.breakers(Levels::disabled());
}

/// One domain, "D", of `agents`, without breakers.
pub fn one_domain(agents: Vec<(&str, AgentSpec)>) -> (Topology, DomainId) {
    let mut b = Topology::builder();
    let d = b.domain("D").unwrap();
    for (name, spec) in agents {
        b.agent(d, name, spec).unwrap();
    }
    no_breakers(&mut b);
    (b.build().unwrap(), d)
}

/// Two unpinned workers: what the tests run live engines with.
pub fn config() -> EngineConfig {
    EngineConfig { workers: 2, pin: false, ..EngineConfig::default() }
}

/// Runs `n` waitable tasks of domain `d` (ids 0 to n - 1) and returns their completions, in id
/// order.
pub fn run_all(engine: &Engine, d: DomainId, n: u64) -> Vec<Completion> {
    let tickets: Vec<_> = (0..n).map(|i| engine.submit(&Task::new(i, d).waitable(), None).unwrap()).collect();
    tickets.into_iter().map(|t| engine.wait(t, Some(PATIENCE)).unwrap()).collect()
}

/// Takes every completion the engine holds for `poll`.
pub fn poll_all(engine: &Engine) -> Vec<Completion> {
    let mut out = vec![Completion::default(); 256];
    let mut all = Vec::new();
    loop {
        let n = engine.poll(&mut out);
        all.extend(out[..n].iter_mut().map(std::mem::take));
        if n < out.len() {
            return all;
        }
    }
}
