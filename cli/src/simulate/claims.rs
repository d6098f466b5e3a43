//! Section 7: a verdict on each of the seed report's claims, from the other sections' figures.

use super::figures::{pct, ratio, times, within};
use super::report::{Breakers, Claim, Config, Containment, Level, Sweep};
use metafed::model::Z999;
use metafed_bench::driver::RunReport;

#[allow(clippy::too_many_arguments)]
pub(super) fn judge(
    levels: &[Level],
    configs: &[Config],
    sweep: &[Sweep],
    off: &RunReport,
    on: &RunReport,
    unloaded: Option<&RunReport>,
    c: &Containment,
    b: &Breakers,
    n: u64,
    breakers_of: &str,
    wall: bool,
) -> Vec<Claim> {
    const LEFT_OUT: &str = "measured on the wall clock: left out by --reproducible";
    let l2 = &levels[0];
    let sys = &levels[2];
    let (single, flat3, fed) = (&configs[0], &configs[1], &configs[2]);
    let gain = fed.measured / single.measured - 1.0;
    let signs_match = sweep.iter().all(|s| (s.improvement > 0.0) == (s.seed_claim_federation > s.seed_claim_single));
    let sweep_text = sweep
        .iter()
        .map(|s| format!("{:.0}%: {:+.2} points", s.error_rate * 100.0, s.improvement * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    let crossover = sweep
        .iter()
        .find(|s| s.improvement > 0.0)
        .map_or("none in 5..25%".to_string(), |s| format!("{:.0}%", s.error_rate * 100.0));
    let (k_on, k_off) = (on.ok, off.ok);
    let absorbed = ratio(c.absorbed_by_failover, c.subtasks_with_failed_attempts);
    vec![
        Claim {
            claim: "The 3x3 federation reaches 100% reliability (\"perfect in testing\")",
            holds: Some(fed.ci95[1] >= 1.0),
            evidence: format!(
                "measured {} (95% CI {} to {}) over {n} tasks; the model predicts {}",
                pct(fed.measured),
                pct(fed.ci95[0]),
                pct(fed.ci95[1]),
                pct(fed.predicted)
            ),
        },
        Claim {
            claim: "Agent level (3 agents per domain): 99.83% reliability",
            holds: (l2.n > 0).then(|| within(0.9983, l2.measured_k(), l2.n, Z999)),
            evidence: format!(
                "measured {} (95% CI {} to {}), model 1 - e^3 = {}",
                pct(l2.measured),
                pct(l2.ci95[0]),
                pct(l2.ci95[1]),
                pct(l2.predicted)
            ),
        },
        Claim {
            claim: "Theoretical system reliability is 86.95%",
            holds: (sys.n > 0).then(|| within(0.8695, sys.measured_k(), sys.n, Z999)),
            evidence: format!(
                "the seed's own formula with its own rates gives {} (not 86.95%); measured {} (95% CI {} to {})",
                pct(sys.predicted),
                pct(sys.measured),
                pct(sys.ci95[0]),
                pct(sys.ci95[1])
            ),
        },
        Claim {
            claim: "The federation improves reliability by 14.2% over a single agent",
            holds: (single.measured > 0.0).then_some(gain >= 0.142),
            evidence: format!(
                "3x3 {} vs single agent {}: {:+.2}% relative; the agent level alone (1x3) reaches {}",
                pct(fed.measured),
                pct(single.measured),
                gain * 100.0,
                pct(flat3.measured)
            ),
        },
        Claim {
            claim: "Reliability scales exponentially with depth x breadth",
            holds: Some(single.measured < flat3.measured && flat3.measured < fed.measured),
            evidence: format!(
                "breadth helps (1x1 {} -> 1x3 {}, 1 - e^n), depth hurts (1x3 {} -> 3x3 {}): levels are in series, each adds its own faults",
                pct(single.measured),
                pct(flat3.measured),
                pct(flat3.measured),
                pct(fed.measured)
            ),
        },
        Claim {
            claim: "The federation's benefit grows with the error rate (loses at 5-10%, wins from 15%)",
            holds: Some(signs_match),
            evidence: format!("federation minus single agent: {sweep_text}; first win at {crossover}"),
        },
        Claim {
            claim: "Throughput of 47,207 RPS",
            holds: wall.then_some(off.tasks_per_s >= 47_207.0),
            evidence: if wall {
                format!(
                    "{:.0} tasks/s measured (W1, 1024 in flight, one submitting thread, every task on the full path)",
                    off.tasks_per_s
                )
            } else {
                LEFT_OUT.into()
            },
        },
        Claim {
            claim: "Mean and P99 execution time under 0.1 ms",
            holds: unloaded.filter(|u| u.latency_ns.samples > 0).map(|u| u.latency_ns.p99 < 100_000),
            evidence: match unloaded {
                Some(u) => format!(
                    "unloaded (1 in flight): p50 {:.1} us, p99 {:.1} us; loaded (1024 in flight, queueing included): p99 {:.1} us",
                    u.latency_ns.p50 as f64 / 1e3,
                    u.latency_ns.p99 as f64 / 1e3,
                    off.latency_ns.p99 as f64 / 1e3
                ),
                None => LEFT_OUT.into(),
            },
        },
        Claim {
            claim: "100% of failures are contained at the appropriate level",
            holds: (c.subtasks_with_failed_attempts + c.escalated_domain_faults + c.meta_faults > 0)
                .then_some(c.escalated_all_attempts_failed + c.escalated_domain_faults + c.meta_faults == 0),
            evidence: format!(
                "failover absorbed {} of sub-tasks with a failed attempt ({} of {}); {} sub-tasks failed every attempt, {} domain faults and {} meta faults failed their task: nothing stands in for a domain or the meta level",
                pct(absorbed),
                c.absorbed_by_failover,
                c.subtasks_with_failed_attempts,
                c.escalated_all_attempts_failed,
                c.escalated_domain_faults,
                c.meta_faults
            ),
        },
        Claim {
            claim: "The seed's circuit breakers isolate failures without costing reliability",
            holds: (on.submitted > 0).then(|| within(ratio(k_off, off.submitted), k_on, on.submitted, Z999)),
            evidence: format!(
                "success {} with {} breakers (virtual time, open loop) vs {} without; agent breakers tripped {} ({} attempts panic-routed), domain breakers {} (shedding {} sub-tasks), meta {}",
                pct(ratio(k_on, on.submitted)),
                breakers_of,
                pct(ratio(k_off, off.submitted)),
                times(b.agent_trips),
                b.panic_routed_attempts,
                times(b.domain_trips),
                c.shed_by_domain_breakers,
                times(b.meta_trips)
            ),
        },
    ]
}
