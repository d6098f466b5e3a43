//! Cross-domain rerouting: a sub-task that fails at its domain goes to the domain's alternates,
//! in order, within the task's deadline; the completion says which domains answered.

use crate::common::{PATIENCE, config, no_breakers};
use metafed::Request;
use metafed::breaker::BreakerMode;
use metafed::events::Level;
use metafed::{AgentSpec, DomainId, DomainSet, Engine, Levels, Reason, Status, Task, Topology, TopologyBuilder};
use std::time::Duration;

/// A handler that answers `value`, or fails with `code` when `value` is 0.
fn agent(value: u64) -> AgentSpec {
    AgentSpec::handler(move |_: &Request<'_>| if value == 0 { Err(7) } else { Ok(value) })
}

/// Domains "Primary" (its two agents fail), "Replica" (answers 20) and "Backup" (answers 30),
/// without breakers; Primary's alternates are `alternates` (names).
fn federation(alternates: &[&str]) -> (TopologyBuilder, [DomainId; 3]) {
    let mut b = Topology::builder();
    let p = b.domain("Primary").unwrap();
    let r = b.domain("Replica").unwrap();
    let k = b.domain("Backup").unwrap();
    b.agent(p, "p1", agent(0)).unwrap();
    b.agent(p, "p2", agent(0)).unwrap();
    b.agent(r, "r1", agent(20)).unwrap();
    b.agent(k, "k1", agent(30)).unwrap();
    no_breakers(&mut b);
    let ids = [p, r, k];
    let alts: Vec<DomainId> =
        alternates.iter().map(|n| ids[["Primary", "Replica", "Backup"].iter().position(|x| x == n).unwrap()]).collect();
    b.alternates(p, &alts).unwrap();
    (b, ids)
}

fn run(engine: &Engine, task: Task<'_>) -> metafed::Completion {
    let t = engine.submit(&task.waitable(), None).unwrap();
    engine.wait(t, Some(PATIENCE)).unwrap()
}

#[test]
fn a_sub_task_that_fails_at_its_domain_is_answered_by_its_alternate() {
    let (b, [p, r, _]) = federation(&["Replica"]);
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    let c = run(&engine, Task::new(1, p));
    assert_eq!((c.status, c.reason, c.value), (Status::Ok, Reason::None, 20), "{c:?}");
    assert_eq!(c.answered, DomainSet::one(r));
    assert_eq!(c.reroutes, 1);
    // The primary's two failed attempts are on the record, then the replica's success.
    assert_eq!(c.failures().len(), 2);
    assert!(c.failures().iter().all(|f| f.domain == p && f.code == 7));
    assert_eq!(c.attempts, 3);
    let s = engine.stats();
    let (sp, sr) = (&s.domains[usize::from(p.0)], &s.domains[usize::from(r.0)]);
    assert_eq!((sp.subtasks, sp.failed, sp.rerouted), (1, 1, 1));
    assert_eq!((sr.subtasks, sr.ok, sr.rerouted), (1, 1, 0));
    // A task that needs the primary and the replica: both answers come from the replica.
    let c = run(&engine, Task::fan_out(2, DomainSet::one(p).with(r)));
    assert_eq!((c.status, c.value, c.reroutes, c.answered), (Status::Ok, 40, 1, DomainSet::one(r)));
    #[cfg(feature = "metrics")]
    assert!(engine.metrics_text().contains("metafed_domain_rerouted_total{domain=\"Primary\"} 2"));
}

#[test]
fn without_alternates_a_failed_domain_fails_its_task() {
    let (b, [p, ..]) = federation(&[]);
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    let c = run(&engine, Task::new(1, p));
    assert_eq!(
        (c.status, c.reason, c.reroutes, c.answered),
        (Status::Failed, Reason::AgentsExhausted, 0, DomainSet(0))
    );
}

#[test]
fn alternates_are_tried_in_order_and_the_last_failure_is_the_reason() {
    // Replica fails too (its breaker forced open: it sheds), Backup answers.
    let (b, [p, r, k]) = federation(&["Replica", "Backup"]);
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    assert!(engine.set_breaker_mode(Level::Domain, usize::from(r.0), BreakerMode::ForcedOpen));
    let c = run(&engine, Task::new(1, p));
    assert_eq!((c.status, c.value, c.reroutes, c.answered), (Status::Ok, 30, 2, DomainSet::one(k)), "{c:?}");
    assert_eq!(engine.stats().domains[usize::from(r.0)].rerouted, 1);
    // Backup down as well: the sub-task ends where its last alternate left it.
    assert!(engine.set_breaker_mode(Level::Domain, usize::from(k.0), BreakerMode::ForcedOpen));
    let c = run(&engine, Task::new(2, p));
    assert_eq!((c.status, c.reason, c.reroutes), (Status::Rejected, Reason::DomainShed, 2), "{c:?}");
    // Alternates of an alternate are not followed: Replica's alternate is Primary, and a task
    // that starts in Replica goes to Primary only.
    engine.set_domain_alternates(r, &[p]).unwrap();
    let c = run(&engine, Task::new(3, r));
    assert_eq!((c.status, c.reason, c.reroutes), (Status::Failed, Reason::AgentsExhausted, 1), "{c:?}");
}

#[test]
fn a_passed_deadline_ends_rerouting() {
    // A task needs Slow (its agent takes 300 ms) and Primary (its breaker forced open: it sheds
    // at once). Slow's sub-task runs first and uses up the 100 ms deadline, so Primary's, shed
    // after it, is not rerouted: the replica never sees it. The agent and domain timeouts are
    // raised past the slow call, so that only the deadline ends the task.
    let mut b = Topology::builder();
    let slow = b.domain("Slow").unwrap();
    let p = b.domain("Primary").unwrap();
    let r = b.domain("Replica").unwrap();
    b.agent(
        slow,
        "slow",
        AgentSpec::handler(|_: &Request<'_>| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(1)
        }),
    )
    .unwrap();
    b.agent(p, "p1", agent(10)).unwrap();
    b.agent(r, "r1", agent(20)).unwrap();
    let mut levels = Levels::disabled();
    (levels.agent.timeout, levels.domain.timeout) = (Duration::from_secs(5), Duration::from_secs(5));
    b.breakers(levels);
    b.alternates(p, &[r]).unwrap();
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    assert!(engine.set_breaker_mode(Level::Domain, usize::from(p.0), BreakerMode::ForcedOpen));
    // On a loaded machine the deadline may pass before the task is admitted (it ends `Deadline`
    // there, never reaching a domain): that run proves nothing about rerouting, and is tried
    // again. Whichever way a run ends, nothing is rerouted.
    let mut shed = false;
    for id in 1..=5 {
        let c = run(&engine, Task::fan_out(id, DomainSet::one(slow).with(p)).deadline(Duration::from_millis(100)));
        assert!(matches!(c.reason, Reason::DomainShed | Reason::Deadline), "{c:?}");
        assert_eq!(c.reroutes, 0, "{c:?}");
        assert_eq!(engine.stats().domains[usize::from(r.0)].subtasks, 0);
        if c.reason == Reason::DomainShed {
            shed = true;
            break;
        }
    }
    assert!(shed, "the deadline passed before admission in five runs of five");
    // With time left, the same task is rerouted.
    let c = run(&engine, Task::fan_out(10, DomainSet::one(slow).with(p)));
    assert_eq!((c.status, c.reroutes, c.value), (Status::Ok, 1, 21), "{c:?}");
}

#[test]
fn alternates_change_live_are_audited_and_a_removed_one_is_skipped() {
    let (b, [p, r, k]) = federation(&[]);
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    assert_eq!(run(&engine, Task::new(1, p)).status, Status::Failed);
    engine.set_domain_alternates(p, &[r, k]).unwrap();
    assert_eq!(engine.domain_alternates(p), Some(vec![r, k]));
    let rec = engine.audit_log().into_iter().find(|a| a.action == "domain_alternates").expect("audited");
    assert_eq!(
        (rec.target.as_str(), rec.from.as_str(), rec.to.as_str()),
        ("domain Primary", "none", "Replica, Backup")
    );
    let c = run(&engine, Task::new(2, p));
    assert_eq!((c.value, c.answered), (20, DomainSet::one(r)));
    engine.remove_domain(r).unwrap();
    let c = run(&engine, Task::new(3, p));
    assert_eq!((c.value, c.answered, c.reroutes), (30, DomainSet::one(k), 1), "{c:?}");
    // Refusals name the problem, and change nothing.
    let err = |alts: &[DomainId]| engine.set_domain_alternates(p, alts).unwrap_err().to_string();
    assert!(err(&[p]).contains("cannot be its own alternate"), "{}", err(&[p]));
    assert!(err(&[r]).contains("alternate \"Replica\" was removed"), "{}", err(&[r]));
    assert!(err(&[k, k]).contains("named twice"));
    assert!(err(&[DomainId(40)]).contains("does not exist"));
    assert_eq!(engine.domain_alternates(p), Some(vec![r, k]));
    engine.set_domain_alternates(p, &[]).unwrap();
    assert_eq!(run(&engine, Task::new(4, p)).status, Status::Failed);
}

#[test]
fn alternates_come_from_toml_and_reload() {
    let toml = |alts: &str| {
        format!(
            r#"
[[domains]]
name = "Database"
alternates = [{alts}]
agents = [{{ name = "sql", sim = {{ error_rate = 1.0 }} }}]

[[domains]]
name = "ReadReplica"
agents = [{{ name = "replica", sim = {{ error_rate = 0.0 }} }}]
"#
        )
    };
    let b = TopologyBuilder::from_toml(&toml("\"ReadReplica\"")).unwrap();
    let topo = b.build().unwrap();
    let (db, replica) = (topo.domain_id("Database").unwrap(), topo.domain_id("ReadReplica").unwrap());
    assert_eq!(topo.alternates(db), &[replica]);
    let err = TopologyBuilder::from_toml(&toml("\"Cache\"")).unwrap_err().to_string();
    assert!(err.contains("domains[0]") && err.contains("\"Cache\", which is not a domain"), "{err}");
    let err = TopologyBuilder::from_toml(&toml("\"Database\"")).unwrap_err().to_string();
    assert!(err.contains("cannot be its own alternate"), "{err}");
    let engine = Engine::builder(topo).config(config()).start().unwrap();
    assert_eq!(run(&engine, Task::new(1, db)).answered, DomainSet::one(replica));
    let out = engine.reload_toml(&toml("")).unwrap();
    assert_eq!(out.applied, vec!["domain Database: alternates".to_owned()]);
    assert_eq!(engine.domain_alternates(db), Some(vec![]));
    assert_eq!(run(&engine, Task::new(2, db)).status, Status::Failed);
    let out = engine.reload_toml(&toml("\"ReadReplica\"")).unwrap();
    assert_eq!(out.applied, vec!["domain Database: alternates".to_owned()]);
    assert!(engine.reload_toml(&toml("\"ReadReplica\"")).unwrap().applied.is_empty());
}

#[test]
fn the_seed_federation_with_alternates_matches_the_extended_model() {
    use metafed::model::{self, Z999, wilson};
    use metafed::sim::{Load, SimAgent, Workload};
    // The seed's 3 x 3 at its error rates, each domain with one alternate of the same kind;
    // tasks ask for the three primaries only. Breakers off: every outcome is the oracle's.
    let mut b = Topology::builder();
    let mut primaries = Vec::new();
    for name in ["API", "Database", "Auth", "API-alt", "Database-alt", "Auth-alt"] {
        let d = b.domain(name).unwrap();
        for a in 0..3 {
            b.agent(d, format!("a{a}"), AgentSpec::sim(SimAgent::with_error_rate(0.12))).unwrap();
        }
        b.domain_fault_rate(d, 0.08).unwrap();
        primaries.push(d);
    }
    for k in 0..3 {
        b.alternates(primaries[k], &[primaries[k + 3]]).unwrap();
    }
    b.meta_fault_rate(0.05);
    no_breakers(&mut b);
    let topo = b.build().unwrap();
    let p = model::predict_domains(&topo, |a| topo.sim_error_rate(a).unwrap());
    let predicted = (0..3).map(|d| model::task_success(&topo, &p, DomainSet::one(DomainId(d)))).sum::<f64>() / 3.0;
    let without = model::seed_formula(&[(0.12, 3), (0.08, 1), (0.05, 1)]);
    assert!(predicted > without + 0.07, "{predicted} against {without}");
    let engine = Engine::builder(topo).config(config()).start().unwrap();
    let n = 150_000;
    let load = Load { workload: Workload::RouteFirst(3), ..Load::w1(n) };
    let r = metafed_bench::driver::closed_loop(&engine, &load, |_| {});
    assert_eq!((r.lost, r.duplicated, r.submitted), (0, 0, n));
    let (lo, hi) = wilson(r.ok, n, Z999);
    assert!(lo <= predicted && predicted <= hi, "measured {} ({lo} - {hi}), model {predicted}", r.ok as f64 / n as f64);
    let rerouted: u64 = engine.stats().domains.iter().map(|d| d.rerouted).sum();
    assert!(rerouted > n / 20, "{rerouted} sub-tasks rerouted");
}

#[test]
fn an_alternates_reply_is_the_asked_domains_body_and_its_handler_sees_the_origin() {
    let mut b = Topology::builder();
    let p = b.domain("Primary").unwrap();
    let r = b.domain("Replica").unwrap();
    b.agent(p, "p1", agent(0)).unwrap();
    b.agent(
        r,
        "r1",
        AgentSpec::deferred(|req: &Request<'_>, a: metafed::Attempt| {
            let _ = a.succeed_with(5, format!("{}->{}", req.origin.0, req.domain.0));
        }),
    )
    .unwrap();
    no_breakers(&mut b);
    b.alternates(p, &[r]).unwrap();
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    let c = run(&engine, Task::new(1, p));
    assert_eq!((c.status, c.answered), (Status::Ok, DomainSet::one(r)), "{c:?}");
    assert_eq!(c.body_of(p), Some(&b"0->1"[..]));
    assert_eq!(c.body_of(r), None);
    // Asked of the replica directly, its handler sees itself as the origin.
    assert_eq!(run(&engine, Task::new(2, r)).body_of(r), Some(&b"1->1"[..]));
}

#[test]
fn a_reroute_reports_the_failed_domain_to_its_breaker_once() {
    // The primary's breaker trips after 3 failures in a row: three tasks rerouted, then it
    // sheds (and the fourth is rerouted from the shed), each failure counted once.
    let (mut b, [p, r, _]) = federation(&["Replica"]);
    let mut levels = metafed::Levels::disabled();
    levels.domain = metafed::breaker::BreakerConfig { consecutive_failures: 3, ..metafed::Levels::default().domain };
    b.breakers(levels);
    let engine = Engine::builder(b.build().unwrap()).config(config()).start().unwrap();
    for i in 0..4 {
        let c = run(&engine, Task::new(i, p));
        assert_eq!((c.status, c.answered, c.reroutes), (Status::Ok, DomainSet::one(r), 1), "task {i}: {c:?}");
    }
    let s = engine.stats();
    let sp = &s.domains[usize::from(p.0)];
    assert_eq!((sp.failed, sp.shed, sp.rerouted), (3, 1, 4), "{sp:?}");
    assert_eq!(sp.breaker.opened, 1, "{:?}", sp.breaker);
    assert_eq!(s.domains[usize::from(r.0)].breaker.opened, 0);
}
