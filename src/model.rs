//! The reliability model, and the confidence intervals measured figures are compared with.
//!
//! Levels are in series, redundant agents in parallel. A sub-task of a domain succeeds when one
//! of its attempts does; attempts go to distinct agents in turn, so with per-attempt failure
//! rates `e_1 .. e_n` it fails only if all its attempts fail (`1 - e^n` for equal rates, the
//! seed's `1 - e^breadth`). A domain's injected fault takes its sub-task out first, a meta fault
//! the whole task:
//!
//! ```text
//! P(task) = (1 - f_meta) * prod over its domains d of P(d)
//! P(d)    = 1 - (1 - D(d)) * prod over d's alternates a of (1 - D(a))
//! D(d)    = (1 - f_d) * (1 - prod over attempts of e)
//! ```
//!
//! This is the seed's formula `P = prod over levels (1 - e_level ^ breadth_level)`. Without
//! alternates the domain level has breadth 1 (`P(d) = D(d)`: one orchestrator per domain, and
//! nothing stands in for it when it fails); a domain with alternates
//! ([`TopologyBuilder::alternates`](crate::TopologyBuilder::alternates)) has breadth 1 + their
//! number, each alternate's own success (its agents and its fault) standing in turn for the
//! domain's. The meta level keeps breadth 1. The draws are independent: the oracle keys each
//! domain's sub-task apart.

use crate::task::DomainId;
use crate::topology::Topology;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for a two-sided 99.9% interval.
pub const Z999: f64 = 3.290_526_731_491_926;

/// The seed's formula: `prod (1 - e ^ breadth)` over `(e, breadth)` levels.
pub fn seed_formula(levels: &[(f64, u32)]) -> f64 {
    levels.iter().map(|&(e, b)| 1.0 - e.powi(b as i32)).product()
}

/// Success probability of a sub-task making up to `attempts` attempts at agents with failure
/// rates `rates`, in round-robin order from a uniformly random start (cycling when there are
/// more attempts than agents).
pub fn subtask_success(rates: &[f64], attempts: u32) -> f64 {
    let n = rates.len();
    if n == 0 || attempts == 0 {
        return 0.0;
    }
    let all_fail: f64 =
        (0..n).map(|start| (0..attempts as usize).map(|i| rates[(start + i) % n]).product::<f64>()).sum::<f64>()
            / n as f64;
    1.0 - all_fail
}

/// The model's prediction for one domain.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct DomainPrediction {
    /// Agent level: some attempt succeeds.
    pub agents: f64,
    /// Domain level: no domain fault, and some attempt succeeds.
    pub domain: f64,
    /// Domain level with its alternates: the domain succeeds, or else each alternate in turn
    /// (`domain` when it has none).
    pub with_alternates: f64,
}

/// Predicts each domain from its agents' failure rates (`rate(agent)`), attempts and fault rate,
/// and with its alternates (those not removed).
pub fn predict_domains(topo: &Topology, rate: impl Fn(crate::task::AgentId) -> f64) -> Vec<DomainPrediction> {
    let mut out: Vec<DomainPrediction> = (0..topo.domain_count())
        .map(|d| {
            let d = DomainId(d as u16);
            let rates: Vec<f64> = topo.agents_of(d).iter().map(|&a| rate(a)).collect();
            let agents = subtask_success(&rates, topo.max_attempts(d));
            let domain = agents * (1.0 - topo.domain_fault_rate(d));
            DomainPrediction { agents, domain, with_alternates: domain }
        })
        .collect();
    for d in 0..out.len() {
        let alts = topo.alternates(DomainId(d as u16)).iter().filter(|a| !topo.is_domain_removed(**a));
        let fails: f64 = alts.map(|a| 1.0 - out[usize::from(a.0)].domain).product();
        out[d].with_alternates = 1.0 - (1.0 - out[d].domain) * fails;
    }
    out
}

/// The seed's formula with breadth at the domain level: `domain_breadth` domains (the one asked
/// for and its alternates), each with `agent_breadth` agents failing at `e` and its own fault
/// rate `f_domain`, and the meta level's fault rate `f_meta`.
pub fn depth_breadth(e: f64, agent_breadth: u32, f_domain: f64, domain_breadth: u32, f_meta: f64) -> f64 {
    let d = (1.0 - f_domain) * (1.0 - e.powi(agent_breadth as i32));
    (1.0 - f_meta) * (1.0 - (1.0 - d).powi(domain_breadth as i32))
}

/// Success probability of a task that needs `domains`, given per-domain predictions.
pub fn task_success(topo: &Topology, per_domain: &[DomainPrediction], domains: crate::task::DomainSet) -> f64 {
    (1.0 - topo.meta_fault_rate())
        * domains.iter().map(|d| per_domain[usize::from(d.0)].with_alternates).product::<f64>()
}

/// The Wilson score interval for `k` successes in `n` trials at `z` (`Z95`, `Z999`).
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn formulas() {
        assert!((subtask_success(&[0.12; 3], 3) - (1.0 - 0.12f64.powi(3))).abs() < 1e-12);
        assert!((subtask_success(&[0.1, 0.2], 1) - 0.85).abs() < 1e-12);
        assert!((subtask_success(&[0.5], 3) - 0.875).abs() < 1e-12);
        assert!((seed_formula(&[(0.12, 3), (0.08, 1), (0.05, 1)]) - 0.998272 * 0.92 * 0.95).abs() < 1e-9);
        let (lo, hi) = wilson(50, 100, Z95);
        assert!((lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
        // Breadth at the domain level: one alternate squares the domain's failure probability.
        let d = 0.92 * (1.0 - 0.12f64.powi(3));
        assert!((depth_breadth(0.12, 3, 0.08, 2, 0.05) - 0.95 * (1.0 - (1.0 - d).powi(2))).abs() < 1e-12);
        assert!(
            (depth_breadth(0.12, 3, 0.08, 1, 0.05) - seed_formula(&[(0.12, 3), (0.08, 1), (0.05, 1)])).abs() < 1e-12
        );
    }

    #[test]
    fn alternates_add_breadth_to_the_domain_level() {
        let mut b = crate::topology::Topology::builder();
        let mut ids = Vec::new();
        for (name, fault) in [("A", 0.1), ("B", 0.2), ("C", 0.5)] {
            let d = b.domain(name).unwrap();
            b.agent(d, "x", crate::topology::AgentSpec::sim(crate::sim::SimAgent::with_error_rate(0.0))).unwrap();
            b.domain_fault_rate(d, fault).unwrap();
            ids.push(d);
        }
        b.alternates(ids[0], &[ids[1], ids[2]]).unwrap();
        let topo = b.build().unwrap();
        let p = predict_domains(&topo, |_| 0.0);
        assert!((p[0].with_alternates - (1.0 - 0.1 * 0.2 * 0.5)).abs() < 1e-12);
        assert_eq!(p[1].with_alternates, p[1].domain);
        let t = task_success(&topo, &p, crate::task::DomainSet::one(ids[0]));
        assert!((t - 0.99).abs() < 1e-12);
    }
}
