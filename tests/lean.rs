//! The lean path: a worker runs the tasks it takes on a copy of the stages without what is off
//! (breakers disabled, no limits, no faults, no alternates), decided per batch from the live
//! settings. What an operator turns on while the engine runs applies to the tasks submitted
//! after it, as on an engine that started with it on.

use crate::common::{PATIENCE, config, no_breakers};
use metafed::breaker::BreakerMode;
use metafed::events::Level;
use metafed::{AgentId, AgentSpec, Completion, DomainId, DomainSet, Engine, Reason, Request, Status, Task, Topology};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A handler that answers `value` and counts its calls in `calls`.
fn counted(value: u64, calls: &Arc<AtomicU64>) -> AgentSpec {
    let calls = calls.clone();
    AgentSpec::handler(move |_: &Request<'_>| {
        calls.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    })
}

struct Federation {
    engine: Engine,
    d: DomainId,
    e: DomainId,
    a: AgentId,
    b: AgentId,
    calls: [Arc<AtomicU64>; 3],
}

/// Domain "D" of agents "a" (answers 1) and "b" (answers 2), domain "E" of agent "e" (answers
/// 3); every breaker disabled, nothing else on: the lean path's case.
fn federation() -> Federation {
    let calls = [(); 3].map(|()| Arc::new(AtomicU64::new(0)));
    let mut t = Topology::builder();
    let d = t.domain("D").unwrap();
    let e = t.domain("E").unwrap();
    let a = t.agent(d, "a", counted(1, &calls[0])).unwrap();
    let b = t.agent(d, "b", counted(2, &calls[1])).unwrap();
    t.agent(e, "e", counted(3, &calls[2])).unwrap();
    no_breakers(&mut t);
    let engine = Engine::builder(t.build().unwrap()).config(config()).start().unwrap();
    Federation { engine, d, e, a, b, calls }
}

impl Federation {
    /// Runs `n` tasks of domain D one after another (each submitted after the last completed).
    fn run(&self, n: u64) -> Vec<Completion> {
        (0..n)
            .map(|i| {
                let t = self.engine.submit(&Task::new(i, self.d).priority(1).waitable(), None).unwrap();
                self.engine.wait(t, Some(PATIENCE)).unwrap()
            })
            .collect()
    }

    fn calls(&self) -> [u64; 3] {
        self.calls.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

#[test]
fn an_agent_breaker_forced_open_or_an_agent_down_is_not_called() {
    let f = federation();
    let all = f.run(20);
    assert!(all.iter().all(|c| c.status == Status::Ok), "{all:?}");
    let before = f.calls();
    assert!(before[0] > 0 && before[1] > 0, "both agents in rotation: {before:?}");

    assert!(f.engine.set_breaker_mode(Level::Agent, usize::from(f.a.0), BreakerMode::ForcedOpen));
    let all = f.run(20);
    assert!(all.iter().all(|c| (c.status, c.value) == (Status::Ok, 2)), "b answers every task: {all:?}");
    assert_eq!(f.calls()[0], before[0], "a forced open is never called");

    assert!(f.engine.set_breaker_mode(Level::Agent, usize::from(f.a.0), BreakerMode::Disabled));
    assert!(f.engine.set_agent_down(f.b, true));
    let before = f.calls();
    let all = f.run(20);
    assert!(all.iter().all(|c| (c.status, c.value) == (Status::Ok, 1)), "a answers every task: {all:?}");
    assert_eq!(f.calls()[1], before[1], "b down is never called");
    assert!(all.iter().any(|c| c.failures().iter().any(|x| x.agent == f.b)), "tasks tried b and found it down");

    assert!(f.engine.set_agent_down(f.b, false));
    let before = f.calls();
    let all = f.run(20);
    assert!(all.iter().all(|c| c.status == Status::Ok && c.failures().is_empty()), "{all:?}");
    assert!(f.calls()[1] > before[1], "b is up again");
}

#[test]
fn a_domain_or_meta_breaker_forced_open_sheds_and_alternates_reroute() {
    let f = federation();
    assert!(f.run(10).iter().all(|c| c.status == Status::Ok));

    assert!(f.engine.set_breaker_mode(Level::Domain, usize::from(f.d.0), BreakerMode::ForcedOpen));
    let before = f.calls();
    let all = f.run(10);
    assert!(all.iter().all(|c| c.reason == Reason::DomainShed), "{all:?}");
    assert_eq!(f.calls(), before, "a shed domain calls no agent");

    // With an alternate, the shed sub-tasks are answered by E.
    f.engine.set_domain_alternates(f.d, &[f.e]).unwrap();
    let all = f.run(10);
    assert!(
        all.iter().all(|c| (c.status, c.value, c.reroutes, c.answered) == (Status::Ok, 3, 1, DomainSet::one(f.e))),
        "{all:?}"
    );
    f.engine.set_domain_alternates(f.d, &[]).unwrap();
    assert!(f.engine.set_breaker_mode(Level::Domain, usize::from(f.d.0), BreakerMode::Disabled));
    assert!(f.run(10).iter().all(|c| c.status == Status::Ok && c.reroutes == 0));

    // The meta breaker forced open: tasks above the essential priority are turned away.
    assert!(f.engine.set_breaker_mode(Level::Meta, 0, BreakerMode::ForcedOpen));
    let all = f.run(10);
    assert!(all.iter().all(|c| (c.status, c.reason) == (Status::Rejected, Reason::Degraded)), "{all:?}");
    assert!(f.engine.set_breaker_mode(Level::Meta, 0, BreakerMode::Disabled));
    assert!(f.run(10).iter().all(|c| c.status == Status::Ok));
}

#[test]
fn a_rate_limit_set_while_running_limits_the_next_tasks() {
    let f = federation();
    assert!(f.run(10).iter().all(|c| c.status == Status::Ok));
    f.engine.set_rate_limit(1.0, 1.0).unwrap();
    let all = f.run(10);
    let limited = all.iter().filter(|c| c.reason == Reason::RateLimited).count();
    // One a second with a burst of one: at most a couple pass in the time ten tasks take.
    assert!(limited >= 8, "{limited} of 10 rate limited: {all:?}");
    f.engine.set_rate_limit(0.0, 1.0).unwrap();
    assert!(f.run(10).iter().all(|c| c.status == Status::Ok));
}
