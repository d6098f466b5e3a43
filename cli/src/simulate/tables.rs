//! The report as text: every section's table.

use super::figures::{pct, ratio, times};
use super::report::Report;

pub(super) fn print_tables(r: &Report) {
    let topo =
        if r.custom_topology { "the configured topology" } else { "the seed's 3 x 3 (API, Database, Auth x 3 agents)" };
    println!("metafed simulate: {topo}, simulated agents failing by the WORKLOADS.md oracle");
    let rate = |v: Option<f64>, varies: &str| v.map_or(varies.to_string(), pct);
    println!(
        "error rates: agents {}, domain faults {}, meta faults {}; {} {}; {} tasks per run, {} in all{}",
        rate(r.rates.agent, "per agent (from the file)"),
        rate(r.rates.domain, "per domain (from the file)"),
        pct(r.rates.meta),
        r.workers,
        if r.workers == 1 { "worker" } else { "workers" },
        r.tasks,
        r.tasks_total,
        r.runs.unloaded_without_breakers.as_ref().map_or(String::new(), |u| format!(" (and {} unloaded)", u.tasks))
    );
    println!();
    println!("1. Reliability per level (cumulative; W1 routing; 95% Wilson intervals)");
    println!(
        "   {:<14} {:>9} {:>9} {:>21} {:>13} {:>21} {:>9}",
        "level", "model", "measured", "95% CI", "with breakers", "95% CI", "seed"
    );
    for l in &r.levels {
        println!(
            "   {:<14} {:>9} {:>9} {:>21} {:>13} {:>21} {:>9}",
            format!("{} ({})", l.level, l.name),
            pct(l.predicted),
            pct(l.measured),
            format!("{} - {}", pct(l.ci95[0]), pct(l.ci95[1])),
            pct(l.measured_with_breakers),
            format!("{} - {}", pct(l.ci95_with_breakers[0]), pct(l.ci95_with_breakers[1])),
            pct(l.seed_claim)
        );
    }
    println!(
        "   model: P = (1 - f_meta) (1 - f_domain) (1 - e^3); \"measured\" runs with breakers disabled, \"with breakers\" with {} breakers.",
        r.rates.breakers
    );
    println!(
        "   with breakers: in virtual time, an open loop at {:.0} tasks/s; meta-level success ranged {} to {} over {} runs on",
        r.offered_rps,
        pct(r.with_breakers_spread[0]),
        pct(r.with_breakers_spread[1]),
        r.repeats
    );
    println!("   other task ids (the median run is shown); the same arguments give the same figures on any machine.");
    println!();
    println!("2. Depth x breadth (breakers off)");
    println!(
        "   {:<6} {:>9} {:>9} {:>21} {:>12} {:>10} {:>8}",
        "config", "model", "measured", "95% CI", "tasks/s", "p50", "seed"
    );
    for c in &r.configs {
        println!(
            "   {:<6} {:>9} {:>9} {:>21} {:>12} {:>10} {:>8}",
            c.name,
            pct(c.predicted),
            pct(c.measured),
            format!("{} - {}", pct(c.ci95[0]), pct(c.ci95[1])),
            c.tasks_per_s.map_or("-".into(), |t| format!("{t:.0}")),
            c.latency_ns.map_or("-".into(), |l| format!("{:.1} us", l.p50 as f64 / 1e3)),
            pct(c.seed_claim)
        );
    }
    println!();
    println!("3. Error-rate sweep: single agent vs 3 x 3 federation (breakers off; seed's claim in brackets)");
    println!("   {:<6} {:>18} {:>22} {:>10} {:>12}", "error", "single agent", "federation", "model", "difference");
    for s in &r.sweep {
        println!(
            "   {:<6} {:>18} {:>22} {:>10} {:>12}",
            pct(s.error_rate),
            format!("{} [{}]", pct(s.single.measured), pct(s.seed_claim_single)),
            format!("{} [{}]", pct(s.federation.measured), pct(s.seed_claim_federation)),
            pct(s.federation.predicted),
            format!("{:+.2} pts", s.improvement * 100.0)
        );
    }
    println!();
    println!(
        "4. Throughput and latency (submit to completion as the submitter saw it; loaded runs sample 1 task in 64)"
    );
    println!("   {:<44} {:>12} {:>10} {:>10} {:>10}", "run", "tasks/s", "p50", "p99", "p99.9");
    let us = |ns: u64| format!("{:.1} us", ns as f64 / 1e3);
    for (name, s) in [
        ("W1 loaded (1024 in flight), no breakers", Some(&r.runs.loaded_without_breakers)),
        ("W1 with breakers (virtual time, offered rate)", Some(&r.runs.loaded_with_breakers)),
        ("W1 unloaded (1 in flight), no breakers", r.runs.unloaded_without_breakers.as_ref()),
    ] {
        let Some(s) = s else { continue };
        match (s.tasks_per_s, s.latency_ns) {
            (Some(t), Some(l)) => {
                println!("   {:<44} {:>12.0} {:>10} {:>10} {:>10}", name, t, us(l.p50), us(l.p99), us(l.p999))
            }
            _ => println!("   {name:<44} {:>12} (left out by --reproducible)", "-"),
        }
    }
    println!();
    let c = &r.containment;
    println!("5. Containment (run with {} breakers)", r.rates.breakers);
    println!("   failed agent attempts                      {:>10}", c.failed_attempts);
    println!("   sub-tasks with a failed attempt            {:>10}", c.subtasks_with_failed_attempts);
    println!(
        "     absorbed by failover (agent level)       {:>10}  ({})",
        c.absorbed_by_failover,
        pct(ratio(c.absorbed_by_failover, c.subtasks_with_failed_attempts))
    );
    println!("     every attempt failed (task failed)       {:>10}", c.escalated_all_attempts_failed);
    println!("   domain faults (task failed)                {:>10}", c.escalated_domain_faults);
    println!("   meta faults (task failed)                  {:>10}", c.meta_faults);
    println!("   shed by open domain breakers               {:>10}", c.shed_by_domain_breakers);
    println!(
        "   breaker trips: agents {}, domains {}, meta {}; attempts panic-routed {}",
        r.breakers.agent_trips, r.breakers.domain_trips, r.breakers.meta_trips, r.breakers.panic_routed_attempts
    );
    println!("   tasks lost {}, completed twice {} (all runs)", c.lost, c.duplicated);
    println!();
    println!(
        "6. Recovery and containment: one fault each from 1 s to 2 s, in virtual time at {:.0} tasks/s",
        r.offered_rps
    );
    println!(
        "   {:<24} {:>10} {:>12} {:>12} {:>9} {:>15} {:>15} {:>8}",
        "fault", "opened", "closed", "success back", "steady", "during: theirs", "during: others", "seed"
    );
    for c in &r.recovery {
        let short = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:<24} {:>10} {:>12} {:>12} {:>9} {:>15} {:>15} {:>8}",
            c.fault,
            short(c.breaker_opened_ms),
            short(c.breaker_closed_ms),
            short(c.success_back_ms),
            pct(c.steady),
            pct(c.during_affected),
            c.during_others.map_or("-".into(), |d| format!("{} ({})", pct(d), c.steady_others.map_or("-".into(), pct))),
            format!("{:.0} ms", c.seed_claim_ms)
        );
    }
    println!(
        "   opened: after the fault began; closed, success back: after it ended (5 buckets of 10 ms in a row at the steady"
    );
    println!(
        "   success). During: success of the tasks that need the faulted part, and of the others (their steady value)."
    );
    for c in r.recovery.iter().filter(|c| c.paired.is_some()) {
        let p = c.paired.as_ref().expect("filtered");
        println!(
            "   {}: the others' success {} with the fault, {} without it (the same task ids): effect {:+.2} points; \
             in the control, domain breakers tripped {} by chance and shed {:.3}% of sub-tasks",
            c.fault,
            c.during_others.map_or("-".into(), pct),
            pct(p.others),
            p.effect_pp,
            times(p.chance_domain_trips),
            p.chance_shed_percent
        );
    }
    println!();
    println!("7. The seed's claims");
    for cl in &r.claims {
        let verdict = match cl.holds {
            Some(true) => "holds",
            Some(false) => "does not hold",
            None => "n/a: no sample",
        };
        println!("   [{verdict}] {}", cl.claim);
        println!("          {}", cl.evidence);
    }
    println!();
    let fault = r.recovery.first().map_or("an agent down", |c| c.fault.as_str());
    println!(
        "8. What-if: the agent breaker's failure threshold and open time, {fault} from 1 s to 2 s at {:.0} tasks/s",
        r.offered_rps
    );
    println!(
        "   {:>9} {:>9} {:>14} {:>9} {:>13} {:>10} {:>13}",
        "failures", "open", "during fault", "overall", "failed calls", "closed", "success back"
    );
    for w in &r.what_if {
        let short = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:>9} {:>9} {:>14} {:>9} {:>13} {:>10} {:>13}",
            w.consecutive_failures,
            format!("{} ms", w.open_base_ms),
            pct(w.during_fault),
            pct(w.overall),
            w.failed_calls,
            short(w.breaker_closed_ms),
            short(w.success_back_ms)
        );
    }
    println!(
        "   during fault: success of the tasks of the agent's domain; failed calls: calls the down agent failed (what a"
    );
    println!(
        "   breaker spares); closed, success back: after the outage ended. Other settings as the main runs'; try yours with"
    );
    println!("   --offered-rps and --agent-error, or --config FILE.");
    println!();
    println!(
        "   The domain breaker's trigger: domain {} down from 1 s to 2 s, and 60 s with nothing down (chance):",
        r.recovery.get(1).map_or("0", |c| c.fault.trim_start_matches("domain ").trim_end_matches(" down"))
    );
    println!(
        "   {:<20} {:>13} {:>12} {:>10} {:>10} {:>13}",
        "trips on", "chance trips", "chance shed", "opened", "closed", "success back"
    );
    for w in &r.what_if_domain {
        let short = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:<20} {:>13} {:>12} {:>10} {:>10} {:>13}",
            w.setting,
            w.chance_trips,
            format!("{:.3}%", w.chance_shed_percent),
            short(w.opened_ms),
            short(w.closed_ms),
            short(w.success_back_ms)
        );
    }
    println!(
        "   chance trips and shed: with nothing down, domain breakers tripped by chance and shed that share of healthy"
    );
    println!("   sub-tasks (all domains, 60 s); opened: after the outage began; closed, success back: after it ended.");
    println!();
    println!(
        "9. Hedging (W3 in virtual time at {:.0} tasks/s): 10 us calls, the first attempt of 1 task in 100 takes 1 ms",
        r.offered_rps
    );
    println!(
        "   {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "hedge", "tasks", "p50", "p99", "p99.9", "max", "extra calls"
    );
    for h in &r.hedging {
        println!(
            "   {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
            h.hedge,
            h.tasks,
            format!("{:.0} us", h.p50_us),
            format!("{:.0} us", h.p99_us),
            format!("{:.0} us", h.p999_us),
            format!("{:.0} us", h.max_us),
            format!("{} ({})", h.extra_calls, pct(h.extra_share))
        );
    }
    println!(
        "   In virtual time no thread hands work over, so this is what hedging does to the tail by itself; a live engine"
    );
    println!("   adds its hand-offs (metafed bench --workloads w3 measures that).");
    println!();
    println!(
        "   W6: W3's calls, the third agent of each domain 10x slower (100 us) on 30% of its calls, by domain policy:"
    );
    println!(
        "   {:<32} {:>9} {:>9} {:>9} {:>10} {:>11} {:>10}",
        "policy", "p50", "p99", "p99.9", "slow share", "extra calls", "ejections"
    );
    for w in &r.slow_agent {
        println!(
            "   {:<32} {:>9} {:>9} {:>9} {:>10} {:>11} {:>10}",
            w.policy,
            format!("{:.0} us", w.p50_us),
            format!("{:.0} us", w.p99_us),
            format!("{:.0} us", w.p999_us),
            pct(w.slow_share),
            w.extra_calls,
            w.ejections
        );
    }
    println!("   slow share: the slow agents' share of the attempts; extra calls: attempts beyond one per sub-task.");
    println!();
    println!(
        "10. A schedule in virtual time: load steps and faults on the seed's 3 x 3 (agents of mean latency 200 us)"
    );
    println!(
        "   {:<11} {:>9} {:<30} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "time", "tasks/s", "what", "tasks", "success", "domain", "opened", "closed"
    );
    for p in &r.schedule {
        let short = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
        println!(
            "   {:<11} {:>9.0} {:<30} {:>8} {:>9} {:>9} {:>9} {:>9}",
            format!("{:.1}-{:.1} s", p.from_s, p.to_s),
            p.offered,
            p.what,
            p.tasks,
            pct(p.success),
            pct(p.domain_success),
            short(p.breaker_opened_ms),
            short(p.breaker_closed_ms)
        );
    }
    println!(
        "   domain: success of the faulted agent's domain (API when none is); opened: the faulted agent's breaker, after"
    );
    println!("   the phase began; closed: after it ended. Tasks are counted in the phase they were submitted in.");
    println!();
    println!("11. Cross-domain rerouting: a sub-task that fails at its domain goes to the domain's alternates in turn");
    println!(
        "   (breakers off; alternates are domains of the same kind and error rates; model: P(d) = 1 - (1 - D(d)) x prod(1 - D(alt)))"
    );
    let row = |label: String, b: &super::report::Breadth| {
        println!(
            "   {:<34} {:>9} {:>9} {:>21} {:>14}",
            label,
            pct(b.predicted),
            pct(b.measured),
            format!("{} - {}", pct(b.ci95[0]), pct(b.ci95[1])),
            format!("{:.4}", b.reroutes_per_task)
        );
    };
    println!(
        "   {:<34} {:>9} {:>9} {:>21} {:>14}",
        "the seed's 3 x 3 (W1)", "model", "measured", "95% CI", "reroutes/task"
    );
    for b in &r.reroute.seed {
        let label = match b.domain_breadth {
            1 => "no alternates".to_owned(),
            k => format!("{} alternate(s) per domain", k - 1),
        };
        row(label, b);
    }
    println!(
        "   {:<34} {:>9} {:>9} {:>21} {:>14}",
        "depth x breadth (one domain asked)", "model", "measured", "95% CI", "reroutes/task"
    );
    for b in &r.reroute.grid {
        row(format!("{} agent(s) x {} domain(s)", b.agent_breadth, b.domain_breadth), b);
    }
    println!(
        "   With breadth at the agent and domain levels, failure falls as a power of the breadth at each; the meta level"
    );
    println!("   (one meta orchestrator, its fault rate) stays a factor that no breadth below it removes.");
    super::classify::print(&r.classify);
}
