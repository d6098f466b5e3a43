//! The reliability model, and the confidence intervals measured figures are compared with.
//!
//! Levels are in series, redundant agents in parallel. A sub-task of a domain succeeds when one
//! of its attempts does; attempts go to distinct agents in turn, so with per-attempt failure
//! rates `e_1 .. e_n` it fails only if all its attempts fail (`1 - e^n` for equal rates, the
//! seed's `1 - e^breadth`). A domain's injected fault takes its sub-task out first, a meta fault
//! the whole task:
//!
//! ```text
//! P(task) = (1 - f_meta) * prod over its domains d of (1 - f_d) * (1 - prod over attempts of e)
//! ```
//!
//! This is the seed's formula `P = prod over levels (1 - e_level ^ breadth_level)` with breadth
//! 1 at the domain and meta levels (there is one meta orchestrator and one orchestrator per
//! domain: nothing stands in for them when they fail).

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
}

/// Predicts each domain from its agents' failure rates (`rate(agent)`), attempts and fault rate.
pub fn predict_domains(topo: &Topology, rate: impl Fn(crate::task::AgentId) -> f64) -> Vec<DomainPrediction> {
    (0..topo.domain_count())
        .map(|d| {
            let d = DomainId(d as u16);
            let rates: Vec<f64> = topo.agents_of(d).iter().map(|&a| rate(a)).collect();
            let agents = subtask_success(&rates, topo.max_attempts(d));
            DomainPrediction { agents, domain: agents * (1.0 - topo.domain_fault_rate(d)) }
        })
        .collect()
}

/// Success probability of a task that needs `domains`, given per-domain predictions.
pub fn task_success(topo: &Topology, per_domain: &[DomainPrediction], domains: crate::task::DomainSet) -> f64 {
    (1.0 - topo.meta_fault_rate()) * domains.iter().map(|d| per_domain[usize::from(d.0)].domain).product::<f64>()
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
    }
}
