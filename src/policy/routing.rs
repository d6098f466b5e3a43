//! The routing snapshot a domain chooses its agents from: members, rotation, weights (smooth
//! weighted round-robin), the handlers of agents added while the engine runs, and the alternate
//! domains a failed sub-task is rerouted to.

use crate::handler::Agent;
use crate::task::{AgentId, DomainId};

/// The live routing table: which agents of each domain are in rotation, in what order (by
/// weight), and the handlers of the agents that run on the workers. Replaced whole (a snapshot)
/// when an operator takes an agent out or puts it back, changes a weight, or adds or removes an
/// agent; workers load it once per turn and never block, and a worker's attempts use the
/// snapshot they were chosen from (so a removed agent's handler lives until they are done).
#[derive(Clone)]
pub(crate) struct Policy {
    /// Per domain: the rotation, each agent in rotation appearing as often as its weight
    /// (divided by the weights' common divisor), interleaved (smooth weighted round-robin).
    pub(crate) routing: Vec<Vec<AgentId>>,
    /// Per domain: its agents (not removed), in or out of rotation, by id.
    pub(crate) members: Vec<Vec<AgentId>>,
    /// By agent id: in rotation, and weight.
    pub(crate) in_rotation: Box<[bool]>,
    pub(crate) weights: Box<[u32]>,
    /// By agent id: the handler of an agent added while the engine runs (None for the agents
    /// it started with, spare ids, and removed agents).
    pub(crate) handlers: Box<[Option<std::sync::Arc<dyn Agent>>]>,
    /// Per domain: the domains its failed sub-tasks are rerouted to, in order (see
    /// `policy::reroute`).
    pub(crate) alternates: Vec<Box<[DomainId]>>,
}

impl Policy {
    /// Recomputes domain `d`'s rotation from its members, rotation flags and weights.
    pub(crate) fn route(&mut self, d: usize) {
        let members: Vec<AgentId> =
            self.members[d].iter().copied().filter(|a| self.in_rotation[usize::from(a.0)]).collect();
        let w: Vec<u64> = members.iter().map(|a| u64::from(self.weights[usize::from(a.0)])).collect();
        self.routing[d] = smooth_weighted(&members, &w);
    }
}

/// One cycle of smooth weighted round-robin (nginx's): each agent appears `w / gcd` times,
/// spread out rather than in runs.
pub(crate) fn smooth_weighted(agents: &[AgentId], weights: &[u64]) -> Vec<AgentId> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| (x / g) as i64).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(agents[best]);
    }
    out
}
