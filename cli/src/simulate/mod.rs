//! `metafed simulate`: the seed report's tables, reproduced with the real engine.
//!
//! Every figure comes from a run of the engine on simulated agents whose failures follow the
//! oracle of `WORKLOADS.md` (W1 routing: task `i` needs domain `i mod D`), or from the model in
//! `metafed::model`. Each table says which.

mod args;
mod claims;
mod classify;
mod figures;
mod hedging;
#[cfg(feature = "plot")]
mod plot;
mod recovery;
mod report;
mod reroute;
mod runner;
mod schedule;
mod slow_agent;
mod tables;
mod what_if;

pub use args::Args;

use crate::progress::Progress;
use args::{Rates, check_rate};
use claims::judge;
use figures::{ci, level_counts, pct, ratio, summary, uniform};
use hedging::{hedging_runs, hedging_tasks};
use metafed::model::{self};
use metafed::stats::Stats;
use metafed::{DomainId, EngineConfig, Levels, Reason, Topology, TopologyBuilder};
use metafed_bench::driver::{Load, RunReport};
use recovery::recovery_runs;
use report::{Breakers, Claim, Config, Containment, Level, Point, Report, Runs, Sweep};
use report::{SEED_SWEEP, SWEEP};
use runner::{Halt, Runner, flat_topology, seed_topology};
use schedule::{schedule_run, schedule_tasks};
use tables::print_tables;
use what_if::{WHAT_IF_DOMAIN, WHAT_IF_OPEN_MS, WHAT_IF_THRESHOLDS, what_if_domain_runs, what_if_runs};

/// The what-if grids' topologies: the agent settings (threshold, open time), the domain ones.
type WhatIfTopologies<'a> = (&'a [(u32, u64, Topology)], &'a [(&'static str, Topology)]);

pub fn run(args: &Args) -> Result<(), String> {
    let (agent_error, domain_error, meta_error) =
        (args.agent_error.unwrap_or(0.12), args.domain_error.unwrap_or(0.08), args.meta_error.unwrap_or(0.05));
    check_rate("agent-error", agent_error)?;
    check_rate("domain-error", domain_error)?;
    check_rate("meta-error", meta_error)?;
    if args.repeats > 20 {
        return Err(format!("--repeats must be 1 to 20, got {}", args.repeats));
    }
    let n = args.tasks;
    let (main_builder, mut config) = match &args.config {
        Some(path) => {
            let at = |e: metafed::Error| format!("{}: {e}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut b = TopologyBuilder::from_toml(&text).map_err(at)?;
            // Rates given on the command line override the file's.
            if let Some(rate) = args.agent_error {
                b.sim_error_rate(None, rate);
            }
            if let Some(rate) = args.domain_error {
                for d in 0..b.domain_count() {
                    b.domain_fault_rate(DomainId(d as u16), rate).map_err(at)?;
                }
            }
            if let Some(rate) = args.meta_error {
                b.meta_fault_rate(rate);
            }
            b.clone().build().map_err(at)?;
            let c = EngineConfig::from_toml(&text).map_err(at)?;
            (Some(b), c)
        }
        None => (None, EngineConfig::default()),
    };
    if let Some(w) = args.workers {
        config.workers = usize::from(w);
    }
    if args.no_pin {
        config.pin = false;
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if config.workers > cores && !args.json {
        eprintln!(
            "metafed: {} workers on {cores} cores: workers beyond the cores share them, so expect lower throughput",
            config.workers
        );
    }
    // The main topology, with its breakers (the seed's, or the file's) and with breakers disabled.
    let main_with = |levels: Option<Levels>| -> Result<Topology, String> {
        match &main_builder {
            Some(b) => {
                let mut b = b.clone();
                if let Some(l) = levels {
                    b.breakers(l);
                }
                b.build().map_err(|e| e.to_string())
            }
            None => seed_topology(agent_error, domain_error, meta_error, levels.unwrap_or_default()),
        }
    };
    let topo_off = main_with(Some(Levels::disabled()))?;
    let topo_on = main_with(None)?;
    let rates = Rates {
        agent: uniform((0..topo_off.agent_count()).filter_map(|a| topo_off.sim_error_rate(metafed::AgentId(a as u16)))),
        domain: uniform((0..topo_off.domain_count()).map(|d| topo_off.domain_fault_rate(DomainId(d as u16)))),
        meta: topo_off.meta_fault_rate(),
        breakers: if main_builder.is_some() { "the file's" } else { "the seed's" },
    };
    let unloaded_n = (n / 5).clamp(1_000, 200_000);
    if !(args.offered_rps.is_finite() && (100.0..=10_000_000.0).contains(&args.offered_rps)) {
        return Err(format!("--offered-rps must be 100 to 10000000, got {}", args.offered_rps));
    }
    // Each fault's run and its paired control.
    let recovery_n = 2 * 3 * (args.offered_rps * 4.0) as u64;
    // What-if: the main topology with each agent-breaker setting of the grid.
    let what_if_topos = WHAT_IF_THRESHOLDS
        .iter()
        .flat_map(|&t| WHAT_IF_OPEN_MS.iter().map(move |&o| (t, o)))
        .map(|(t, o)| {
            let mut levels = topo_on.breakers().clone();
            levels.agent.consecutive_failures = t;
            levels.agent.open_base = std::time::Duration::from_millis(o);
            levels.agent.open_max = levels.agent.open_max.max(levels.agent.open_base);
            Ok((t, o, main_with(Some(levels))?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // What-if for the domain level: the main topology with each domain-breaker setting.
    let what_if_domain_topos = WHAT_IF_DOMAIN
        .iter()
        .map(|&(name, t, rate)| {
            let mut levels = topo_on.breakers().clone();
            levels.domain.consecutive_failures = t;
            levels.domain.failure_rate = rate;
            Ok((name, main_with(Some(levels))?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let what_if_n = (what_if_topos.len() + what_if_domain_topos.len()) as u64 * (args.offered_rps * 4.0) as u64
        + what_if_domain_topos.len() as u64 * (args.offered_rps * what_if::CHANCE_S) as u64;
    let hedging_n = (2 + 3) * hedging_tasks(args) + schedule_tasks(args.offered_rps);
    let unloaded_n = if args.reproducible { 0 } else { unloaded_n };
    let total = (1 + args.repeats) * n
        + unloaded_n
        + 3 * n
        + SWEEP.len() as u64 * n
        + recovery_n
        + what_if_n
        + hedging_n
        + reroute::reroute_tasks(n);
    let mut r = Runner {
        config,
        seed: args.seed,
        progress: Progress::new(total, !args.json),
        done_before: 0,
        runs: 0,
        repeat_ids: false,
        last_first_id: 0,
        pin_ids: None,
        tasks_total: 0,
        lost: 0,
        duplicated: 0,
        workers: 0,
        finished: Vec::new(),
    };
    let result =
        simulate(args, &mut r, &topo_off, &topo_on, (&what_if_topos, &what_if_domain_topos), &rates, unloaded_n);
    r.progress.finish();
    match result {
        Ok(report) => {
            if let Some(dir) = &args.plot {
                #[cfg(feature = "plot")]
                for f in plot::figures(dir, &report)? {
                    eprintln!("wrote {}", f.display());
                }
                #[cfg(not(feature = "plot"))]
                return Err(format!("--plot {}: this build has no plots (cargo feature `plot`)", dir.display()));
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                print_tables(&report);
            }
            Ok(())
        }
        Err(Halt::Error(e)) => Err(e),
        Err(Halt::Interrupted) => {
            // Ctrl-C: the run under way stopped submitting and drained; say what completed.
            if args.json {
                let partial = serde_json::json!({ "interrupted": true, "runs": &r.finished });
                println!("{}", serde_json::to_string_pretty(&partial).map_err(|e| e.to_string())?);
            } else {
                println!(
                    "metafed simulate: interrupted; {} runs completed (tasks lost 0, completed twice 0)",
                    r.finished.len()
                );
                println!("   {:<36} {:>10} {:>10} {:>12}", "run", "tasks", "success", "tasks/s");
                for d in &r.finished {
                    println!(
                        "   {:<36} {:>10} {:>10} {:>12.0}",
                        d.step,
                        d.tasks,
                        pct(ratio(d.ok, d.tasks)),
                        d.tasks_per_s
                    );
                }
            }
            Err("interrupted".into())
        }
    }
}

fn simulate(
    args: &Args,
    r: &mut Runner,
    topo_off: &Topology,
    topo_on: &Topology,
    (what_if_topos, what_if_domain_topos): WhatIfTopologies<'_>,
    rates: &Rates,
    unloaded_n: u64,
) -> Result<Report, Halt> {
    let n = args.tasks;
    let wall = !args.reproducible;
    // 1. The main runs: W1 on the main topology, without breakers (live: with breakers off
    // every outcome is the oracle's, whatever the timing) and with breakers (in virtual time at
    // the offered load: breakers act on time, so a live run's result would depend on how fast
    // the machine pushes tasks; repeated on other task ids for the spread). The unloaded run,
    // measured on the wall clock, comes last (below), so that leaving it out (--reproducible)
    // changes no other run's task ids.
    let (off, _) = r.run("W1, breakers off", topo_off.clone(), Load::w1(n))?;
    let mut with: Vec<(RunReport, Stats)> = Vec::new();
    for k in 0..args.repeats {
        let step = format!("W1, breakers on, virtual time ({}/{})", k + 1, args.repeats);
        let (run, stats) = r.run_virtual(
            &step,
            topo_on.clone(),
            Load::w1(n),
            args.offered_rps,
            10_000_000,
            |_, _| {},
            &mut Vec::new(),
        )?;
        with.push((run.report, stats));
    }
    // The run whose success is the median stands for them; the others give the spread.
    with.sort_by(|a, b| ratio(a.0.ok, a.0.submitted).total_cmp(&ratio(b.0.ok, b.0.submitted)));
    let spread =
        [ratio(with[0].0.ok, with[0].0.submitted), ratio(with[with.len() - 1].0.ok, with[with.len() - 1].0.submitted)];
    let (on, on_stats) = with.swap_remove(with.len() / 2);

    let per_domain = model::predict_domains(topo_off, |a| topo_off.sim_error_rate(a).unwrap_or(0.0));
    let mean =
        |f: &dyn Fn(&model::DomainPrediction) -> f64| per_domain.iter().map(f).sum::<f64>() / per_domain.len() as f64;
    let predicted =
        [mean(&|p| p.agents), mean(&|p| p.domain), mean(&|p| p.domain) * (1.0 - topo_off.meta_fault_rate())];
    let (c_off, c_on) = (level_counts(&off), level_counts(&on));
    let names = ["agents", "domains", "meta"];
    let seed_levels = [0.9983, 0.9159, 0.8701];
    let levels: Vec<Level> = (0..3)
        .map(|i| Level {
            level: 2 - i as u8,
            name: names[i],
            predicted: predicted[i],
            measured: ratio(c_off[i].0, c_off[i].1),
            ci95: ci(c_off[i].0, c_off[i].1),
            n: c_off[i].1,
            measured_with_breakers: ratio(c_on[i].0, c_on[i].1),
            ci95_with_breakers: ci(c_on[i].0, c_on[i].1),
            n_with_breakers: c_on[i].1,
            seed_claim: seed_levels[i],
        })
        .collect();

    // 2. Depth x breadth, breakers off.
    let e = rates.agent.unwrap_or(0.12);
    let (fd, fm) = (rates.domain.unwrap_or(0.08), rates.meta);
    let shapes: [(&str, u32, u32, Topology, f64); 3] = [
        ("1x1", 1, 1, flat_topology(1, e)?, 0.880),
        ("1x3", 1, 3, flat_topology(3, e)?, 0.998),
        ("3x3", 3, 3, seed_topology(e, fd, fm, Levels::disabled())?, 1.000),
    ];
    let mut configs = Vec::new();
    for (name, depth, breadth, topo, seed_claim) in shapes {
        let p = model::predict_domains(&topo, |a| topo.sim_error_rate(a).unwrap_or(0.0));
        let predicted = (0..topo.domain_count())
            .map(|d| model::task_success(&topo, &p, metafed::DomainSet::one(DomainId(d as u16))))
            .sum::<f64>()
            / topo.domain_count() as f64;
        let (rep, _) = r.run(&format!("depth x breadth {name}"), topo, Load::w1(n))?;
        configs.push(Config {
            name,
            depth,
            breadth,
            predicted,
            measured: ratio(rep.ok, rep.submitted),
            ci95: ci(rep.ok, rep.submitted),
            tasks_per_s: wall.then_some(rep.tasks_per_s),
            latency_ns: wall.then_some(rep.latency_ns),
            seed_claim,
        });
    }

    // 3. The error-rate sweep: single agent vs the 3 x 3 federation, breakers off.
    let mut sweep = Vec::new();
    for (i, &rate) in SWEEP.iter().enumerate() {
        let (single, _) =
            r.run(&format!("sweep {:.0}% single", rate * 100.0), flat_topology(1, rate)?, Load::w1(n / 2))?;
        let (fed, _) = r.run(
            &format!("sweep {:.0}% federation", rate * 100.0),
            seed_topology(rate, fd, fm, Levels::disabled())?,
            Load::w1(n / 2),
        )?;
        let fed_pred = model::seed_formula(&[(rate, 3), (fd, 1), (fm, 1)]);
        let (ps, pf) = (ratio(single.ok, single.submitted), ratio(fed.ok, fed.submitted));
        sweep.push(Sweep {
            error_rate: rate,
            single: Point { measured: ps, ci95: ci(single.ok, single.submitted), predicted: 1.0 - rate },
            federation: Point { measured: pf, ci95: ci(fed.ok, fed.submitted), predicted: fed_pred },
            improvement: pf - ps,
            seed_claim_single: SEED_SWEEP[i].0,
            seed_claim_federation: SEED_SWEEP[i].1,
        });
    }

    // 5. Containment and breaker activity, from the run with breakers.
    let recovered: u64 = on_stats.domains.iter().map(|d| d.recovered).sum();
    let exhausted = on.reason(Reason::AgentsExhausted) + on.reason(Reason::NoAgent);
    let containment = Containment {
        subtasks_with_failed_attempts: recovered + exhausted,
        absorbed_by_failover: recovered,
        escalated_all_attempts_failed: exhausted,
        escalated_domain_faults: on.reason(Reason::DomainFault),
        meta_faults: on.reason(Reason::MetaFault),
        shed_by_domain_breakers: on.reason(Reason::DomainShed),
        failed_attempts: on_stats.agents.iter().map(|a| a.failures).sum(),
        lost: r.lost,
        duplicated: r.duplicated,
    };
    let breakers = Breakers {
        agent_trips: on_stats.agents.iter().map(|a| a.breaker.opened + a.breaker.reopened).sum(),
        domain_trips: on_stats.domains.iter().map(|d| d.breaker.opened + d.breaker.reopened).sum(),
        meta_trips: on_stats.meta.breaker.opened + on_stats.meta.breaker.reopened,
        panic_routed_attempts: on_stats.panic_routed,
    };

    // 6. Recovery and containment of injected faults, in virtual time.
    let recovery = recovery_runs(args, r, topo_on)?;
    // 8. What-if: the agent outage under other agent-breaker settings.
    let what_if = what_if_runs(args, r, what_if_topos)?;
    let what_if_domain = what_if_domain_runs(args, r, what_if_domain_topos)?;
    // 9. W3's tail, without and with hedging, in virtual time.
    let hedging = hedging_runs(args, r)?;
    // W6: a slow agent in each domain, under each way of choosing agents, in virtual time.
    let slow_agent = slow_agent::slow_agent_runs(args, r)?;
    // 10. A varying load and a fault schedule, in virtual time.
    let schedule = schedule_run(args, r, rates)?;
    // 11. Cross-domain rerouting, breakers off.
    let reroute = reroute::reroute_runs(r, n, (e, fd, fm))?;
    // 12. The decision engine, breakers off (its own closed loop, not counted above).
    let classify = classify::classify_runs(n.min(200_000), (e, fd, fm), args.seed << 40, wall).map_err(Halt::from)?;
    // The runs every mode makes end here: the total counts them, whatever the mode.
    let tasks_total = r.tasks_total;
    // Latency and throughput are judged on runs where every task takes the whole path (with
    // breakers, shed tasks fail fast and would flatter both).
    let unloaded_load = Load { in_flight: 1, sample_every: 1, ..Load::w1(unloaded_n) };
    let unloaded = if wall { Some(r.run("W1 unloaded", topo_off.clone(), unloaded_load)?.0) } else { None };

    let mut claims = judge(
        &levels,
        &configs,
        &sweep,
        &off,
        &on,
        unloaded.as_ref(),
        &containment,
        &breakers,
        n,
        rates.breakers,
        wall,
    );
    for rec in &recovery {
        claims.push(Claim {
            claim: match rec.level {
                "agent" => "Agent-level recovery in under 100 ms",
                "domain" => "Domain-level recovery in under 500 ms",
                _ => "System-wide recovery in under 2 s",
            },
            holds: rec.holds,
            evidence: format!(
                "{} from {:.1} s to {:.1} s at {:.0} tasks/s (virtual time): {}; {}",
                rec.fault,
                rec.from_s,
                rec.to_s,
                args.offered_rps,
                match (rec.breaker_opened_ms, rec.breaker_closed_ms) {
                    (None, _) => "its breaker did not open".to_string(),
                    (Some(o), None) =>
                        format!("its breaker opened {o:.1} ms after it began and did not close within the run"),
                    (Some(o), Some(c)) =>
                        format!("its breaker opened {o:.1} ms after it began, closed {c:.1} ms after it ended"),
                },
                match rec.success_back_ms {
                    Some(b) => format!("success back {b:.1} ms after"),
                    None => "success not back within the run".to_string(),
                }
            ),
        });
    }
    Ok(Report {
        tasks: n,
        tasks_total,
        lost: r.lost,
        duplicated: r.duplicated,
        workers: r.workers,
        custom_topology: args.config.is_some(),
        rates: Rates { agent: rates.agent, domain: rates.domain, meta: rates.meta, breakers: rates.breakers },
        with_breakers_spread: spread,
        repeats: args.repeats,
        levels,
        configs,
        sweep,
        offered_rps: args.offered_rps,
        throughput_tasks_per_s: wall.then_some(off.tasks_per_s),
        latency_ns: wall.then_some(off.latency_ns),
        unloaded_latency_ns: unloaded.as_ref().map(|u| u.latency_ns),
        runs: Runs {
            loaded_without_breakers: summary(&off, 1024, wall),
            loaded_with_breakers: summary(&on, 0, true),
            unloaded_without_breakers: unloaded.as_ref().map(|u| summary(u, 1, true)),
        },
        containment,
        breakers,
        recovery,
        what_if,
        what_if_domain,
        hedging,
        slow_agent,
        reroute,
        classify,
        schedule,
        claims,
    })
}
