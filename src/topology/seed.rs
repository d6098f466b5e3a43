//! The seed report's federation: three domains of three agents each.

use super::{AgentSpec, Topology, TopologyBuilder};
use crate::error::Error;
use crate::sim::SimAgent;

/// The seed report's domains and agents.
pub const SEED_DOMAINS: [(&str, [&str; 3]); 3] = [
    ("API", ["REST", "GraphQL", "WebSocket"]),
    ("Database", ["SQL", "NoSQL", "Cache"]),
    ("Auth", ["JWT", "OAuth", "RBAC"]),
];

impl Topology {
    /// The seed's 3 x 3 (API, Database, Auth; three agents each) on simulated agents failing at
    /// `agent_error`, with the seed's breaker defaults and no injected domain or meta faults.
    pub fn seed(agent_error: f64) -> Result<Self, Error> {
        Self::seed_builder(agent_error).build()
    }

    /// [`seed`](Self::seed) as a builder, to adjust before building.
    pub fn seed_builder(agent_error: f64) -> TopologyBuilder {
        let mut b = TopologyBuilder::default();
        for (domain, agents) in SEED_DOMAINS {
            let d = b.domain(domain).expect("the seed's domain names are valid");
            for a in agents {
                b.agent(d, a, AgentSpec::sim(SimAgent::with_error_rate(agent_error)))
                    .expect("the domain was just added");
            }
        }
        b
    }
}
