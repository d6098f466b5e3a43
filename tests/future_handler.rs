//! Handlers written as futures on a caller's tokio runtime (cargo feature `tokio`).
#![cfg(feature = "tokio")]

use metafed::{DomainId, Engine, EngineConfig, FailureKind, Levels, OwnedRequest, Task, Topology};
use std::time::Duration;

#[test]
fn futures_answer_with_bytes_and_are_cancelled_at_the_deadline() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let mut b = Topology::builder();
    let d = b.domain("IO").unwrap();
    b.agent(
        d,
        "Slow",
        metafed::future_handler(rt.handle().clone(), |_req: OwnedRequest| async move {
            tokio::time::sleep(Duration::from_secs(5)).await; // past the 50 ms agent timeout
            Ok::<u64, i32>(1)
        }),
    )
    .unwrap();
    b.agent(
        d,
        "Rest",
        metafed::future_handler(rt.handle().clone(), |req: OwnedRequest| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if req.task_id == 3 {
                return Err(418);
            }
            Ok::<(u64, Vec<u8>), i32>((req.task_id, format!("hello {}", req.task_id).into_bytes()))
        }),
    )
    .unwrap();
    b.breakers(Levels::disabled());
    let engine = Engine::start(b.build().unwrap(), EngineConfig { workers: 1, ..EngineConfig::default() }).unwrap();
    let mut results = Vec::new();
    for i in 0..6u64 {
        let t = engine.submit(&Task::new(i, DomainId(0)).waitable(), None).unwrap();
        results.push(engine.wait(t, Some(Duration::from_secs(30))).unwrap());
    }
    for (i, c) in results.iter().enumerate() {
        let i = i as u64;
        if i == 3 {
            assert!(!c.is_ok());
            assert!(c.failures().iter().any(|f| f.kind == FailureKind::Error && f.code == 418));
            continue;
        }
        assert!(c.is_ok(), "{c:?}");
        assert_eq!(c.body(), Some(format!("hello {i}").as_bytes()));
    }
    let abandoned: Vec<_> =
        results.iter().flat_map(|c| c.failures()).filter(|f| f.kind == FailureKind::Abandoned).collect();
    assert!(!abandoned.is_empty(), "the slow agent's futures were abandoned at the agent timeout");
    // Their futures were dropped at the deadline (each would have slept 5 s): once the runtime
    // holds no task, nothing can complete late, and nothing did.
    crate::common::wait_for("the abandoned futures to be dropped", || rt.metrics().num_alive_tasks() == 0);
    assert_eq!(engine.stats().late_results, 0);
}
