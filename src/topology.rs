//! What the engine runs: domains, their agents, the breakers of each level, injected faults.
//!
//! Build one in code with [`TopologyBuilder`], load one from TOML ([`TopologyBuilder::from_toml`],
//! [`Topology::from_file`]), or take the seed's ([`Topology::seed`]). Validation happens once,
//! in [`TopologyBuilder::build`], and names the first problem it finds.

use crate::breaker::BreakerConfig;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::handler::Handler;
use crate::sim::SimAgent;
use crate::task::{AgentId, DomainId, MAX_AGENTS_PER_DOMAIN, MAX_DOMAINS};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The seed report's domains and agents.
pub const SEED_DOMAINS: [(&str, [&str; 3]); 3] = [
    ("API", ["REST", "GraphQL", "WebSocket"]),
    ("Database", ["SQL", "NoSQL", "Cache"]),
    ("Auth", ["JWT", "OAuth", "RBAC"]),
];

/// Breaker settings for the three levels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Levels {
    /// One breaker per agent.
    pub agent: BreakerConfig,
    /// One breaker per domain.
    pub domain: BreakerConfig,
    /// One breaker for the meta level.
    pub meta: BreakerConfig,
}

impl Default for Levels {
    fn default() -> Self {
        Self { agent: BreakerConfig::agent(), domain: BreakerConfig::domain(), meta: BreakerConfig::meta() }
    }
}

impl Levels {
    /// The seed's settings with every breaker disabled (results still counted).
    pub fn disabled() -> Self {
        let l = Self::default();
        Self { agent: l.agent.disabled(), domain: l.domain.disabled(), meta: l.meta.disabled() }
    }
}

/// What runs an agent's attempts.
#[derive(Clone)]
pub enum AgentKind {
    /// The simulator.
    Sim(SimAgent),
    /// A caller's handler.
    Handler(Arc<dyn Handler>),
    /// Declared (in TOML) but not yet bound to a handler; building fails until it is bound.
    Unbound,
}

impl fmt::Debug for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sim(s) => f.debug_tuple("Sim").field(s).finish(),
            Self::Handler(_) => f.write_str("Handler"),
            Self::Unbound => f.write_str("Unbound"),
        }
    }
}

/// An agent as declared: what runs it, and whether it runs on its own thread.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// What runs its attempts.
    pub kind: AgentKind,
    /// Run its handler on a thread of its own, so that a handler that hangs or blocks stalls
    /// only this agent: its attempts are abandoned at the agent timeout and fail over.
    pub isolated: bool,
}

impl AgentSpec {
    /// A simulated agent.
    pub fn sim(sim: SimAgent) -> Self {
        Self { kind: AgentKind::Sim(sim), isolated: false }
    }
    /// An agent run by `handler`.
    pub fn handler(handler: impl Handler) -> Self {
        Self { kind: AgentKind::Handler(Arc::new(handler)), isolated: false }
    }
    /// An agent run by a shared handler.
    pub fn shared(handler: Arc<dyn Handler>) -> Self {
        Self { kind: AgentKind::Handler(handler), isolated: false }
    }
    /// Runs the agent on its own thread.
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }
}

#[derive(Clone, Debug)]
pub(crate) struct AgentDef {
    pub(crate) name: String,
    pub(crate) domain: DomainId,
    /// Position within its domain (the bit in a sub-task's tried set).
    pub(crate) local: u8,
    pub(crate) spec: AgentSpec,
}

#[derive(Clone, Debug)]
pub(crate) struct DomainDef {
    pub(crate) name: String,
    pub(crate) agents: Vec<AgentId>,
    pub(crate) fault_rate: f64,
    pub(crate) max_attempts: Option<u32>,
}

/// A validated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    pub(crate) domains: Vec<DomainDef>,
    pub(crate) agents: Vec<AgentDef>,
    pub(crate) breakers: Levels,
    pub(crate) meta_fault_rate: f64,
}

impl Topology {
    /// A builder.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The seed's 3 x 3 (API, Database, Auth; three agents each) on simulated agents failing at
    /// `agent_error`, with the seed's breaker defaults and no injected domain or meta faults.
    pub fn seed(agent_error: f64) -> Result<Self, Error> {
        Self::seed_builder(agent_error).build()
    }

    /// [`seed`](Self::seed) as a builder, to adjust before building.
    pub fn seed_builder(agent_error: f64) -> TopologyBuilder {
        let mut b = TopologyBuilder::default();
        for (domain, agents) in SEED_DOMAINS {
            let d = b.domain(domain);
            for a in agents {
                b.agent(d, a, AgentSpec::sim(SimAgent::with_error_rate(agent_error)))
                    .expect("the domain was just added");
            }
        }
        b
    }

    /// Loads and builds a topology from a TOML file whose agents are all simulated.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        TopologyBuilder::from_file(path)?.build()
    }

    /// Parses and builds a topology from TOML text whose agents are all simulated.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        TopologyBuilder::from_toml(text)?.build()
    }

    /// The number of domains.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// The number of agents, over all domains.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// The id of the domain called `name`.
    pub fn domain_id(&self, name: &str) -> Option<DomainId> {
        self.domains.iter().position(|d| d.name == name).map(|i| DomainId(i as u16))
    }

    /// The id of agent `agent` of domain `domain`.
    pub fn agent_id(&self, domain: &str, agent: &str) -> Option<AgentId> {
        let d = self.domain_id(domain)?;
        self.domains[usize::from(d.0)].agents.iter().copied().find(|a| self.agents[usize::from(a.0)].name == agent)
    }

    /// A domain's name.
    pub fn domain_name(&self, d: DomainId) -> Option<&str> {
        self.domains.get(usize::from(d.0)).map(|d| d.name.as_str())
    }

    /// An agent's name.
    pub fn agent_name(&self, a: AgentId) -> Option<&str> {
        self.agents.get(usize::from(a.0)).map(|a| a.name.as_str())
    }

    /// The agents of a domain.
    pub fn agents_of(&self, d: DomainId) -> &[AgentId] {
        self.domains.get(usize::from(d.0)).map_or(&[], |d| &d.agents)
    }

    /// The domain an agent belongs to.
    pub fn domain_of(&self, a: AgentId) -> Option<DomainId> {
        self.agents.get(usize::from(a.0)).map(|a| a.domain)
    }

    /// Attempts a sub-task of domain `d` may make: its `max_attempts`, or its agent count.
    pub fn max_attempts(&self, d: DomainId) -> u32 {
        let dom = &self.domains[usize::from(d.0)];
        dom.max_attempts.unwrap_or(dom.agents.len() as u32)
    }

    /// The breaker settings.
    pub fn breakers(&self) -> &Levels {
        &self.breakers
    }

    /// The injected fault rate of domain `d`'s sub-tasks.
    pub fn domain_fault_rate(&self, d: DomainId) -> f64 {
        self.domains[usize::from(d.0)].fault_rate
    }

    /// The injected fault rate at the meta level.
    pub fn meta_fault_rate(&self) -> f64 {
        self.meta_fault_rate
    }

    /// The simulated error rate of an agent (`None` for a handler agent).
    pub fn sim_error_rate(&self, a: AgentId) -> Option<f64> {
        match &self.agents.get(usize::from(a.0))?.spec.kind {
            AgentKind::Sim(s) => Some(s.error_rate),
            _ => None,
        }
    }
}

/// Builds a [`Topology`].
#[derive(Clone, Debug, Default)]
pub struct TopologyBuilder {
    domains: Vec<DomainDef>,
    agents: Vec<AgentDef>,
    breakers: Levels,
    meta_fault_rate: f64,
}

impl TopologyBuilder {
    /// Adds a domain and returns its id (names are checked in `build`).
    pub fn domain(&mut self, name: impl Into<String>) -> DomainId {
        self.domains.push(DomainDef { name: name.into(), agents: Vec::new(), fault_rate: 0.0, max_attempts: None });
        DomainId((self.domains.len() - 1) as u16)
    }

    /// Adds an agent to a domain and returns its id.
    pub fn agent(&mut self, domain: DomainId, name: impl Into<String>, spec: AgentSpec) -> Result<AgentId, Error> {
        let dom = self
            .domains
            .get_mut(usize::from(domain.0))
            .ok_or_else(|| Error::topology(format!("unknown domain id {}", domain.0)))?;
        let id = AgentId(self.agents.len() as u16);
        let local = dom.agents.len().min(255) as u8;
        dom.agents.push(id);
        self.agents.push(AgentDef { name: name.into(), domain, local, spec });
        Ok(id)
    }

    /// Binds a handler to agent `agent` of domain `domain` (replacing what it had): how agents
    /// declared in TOML get their handlers.
    pub fn bind(&mut self, domain: &str, agent: &str, spec: AgentSpec) -> Result<AgentId, Error> {
        let d = self
            .domains
            .iter()
            .position(|d| d.name == domain)
            .ok_or_else(|| Error::topology(format!("no domain named {domain:?}")))?;
        let id = *self.domains[d]
            .agents
            .iter()
            .find(|a| self.agents[usize::from(a.0)].name == agent)
            .ok_or_else(|| Error::topology(format!("domain {domain:?} has no agent named {agent:?}")))?;
        self.agents[usize::from(id.0)].spec = spec;
        Ok(id)
    }

    /// Sets the injected fault rate of a domain's sub-tasks (a correlated failure of the whole
    /// sub-task, whatever its agents do).
    pub fn domain_fault_rate(&mut self, domain: DomainId, rate: f64) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?.fault_rate = rate;
        Ok(self)
    }

    /// Sets how many attempts a domain's sub-task may make (default: its agent count).
    pub fn max_attempts(&mut self, domain: DomainId, attempts: u32) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?.max_attempts = Some(attempts);
        Ok(self)
    }

    /// Sets the injected fault rate at the meta level (admission or decomposition fails).
    pub fn meta_fault_rate(&mut self, rate: f64) -> &mut Self {
        self.meta_fault_rate = rate;
        self
    }

    /// Sets the breaker settings of all three levels.
    pub fn breakers(&mut self, levels: Levels) -> &mut Self {
        self.breakers = levels;
        self
    }

    /// The number of domains added so far.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// The id of the domain called `name`, if added.
    pub fn domain_id(&self, name: &str) -> Option<DomainId> {
        self.domains.iter().position(|d| d.name == name).map(|i| DomainId(i as u16))
    }

    /// The id of agent `agent` of domain `domain`, or an error naming what is missing.
    pub fn agent_id(&self, domain: &str, agent: &str) -> Result<AgentId, Error> {
        let d = self
            .domains
            .iter()
            .position(|d| d.name == domain)
            .ok_or_else(|| Error::topology(format!("no domain named {domain:?}")))?;
        self.domains[d]
            .agents
            .iter()
            .copied()
            .find(|a| self.agents[usize::from(a.0)].name == agent)
            .ok_or_else(|| Error::topology(format!("domain {domain:?} has no agent named {agent:?}")))
    }

    /// The breaker settings so far.
    pub fn levels(&self) -> &Levels {
        &self.breakers
    }

    /// Sets one agent's simulated error rate (every simulated agent when `agent` is `None`).
    pub fn sim_error_rate(&mut self, agent: Option<AgentId>, rate: f64) -> &mut Self {
        for (i, a) in self.agents.iter_mut().enumerate() {
            if agent.is_none_or(|id| usize::from(id.0) == i)
                && let AgentKind::Sim(s) = &mut a.spec.kind
            {
                s.error_rate = rate;
            }
        }
        self
    }

    fn domain_mut(&mut self, domain: DomainId) -> Result<&mut DomainDef, Error> {
        self.domains
            .get_mut(usize::from(domain.0))
            .ok_or_else(|| Error::topology(format!("unknown domain id {}", domain.0)))
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Topology, Error> {
        let e = Error::topology;
        if self.domains.is_empty() {
            return Err(e("it has no domains".into()));
        }
        if self.domains.len() > MAX_DOMAINS {
            return Err(e(format!("it has {} domains; at most {MAX_DOMAINS} are supported", self.domains.len())));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if d.name.trim().is_empty() {
                return Err(e(format!("domain {i} has an empty name")));
            }
            if self.domains[..i].iter().any(|o| o.name == d.name) {
                return Err(e(format!("two domains are named {:?}", d.name)));
            }
            if d.agents.is_empty() {
                return Err(e(format!("domain {:?} has no agents", d.name)));
            }
            if d.agents.len() > MAX_AGENTS_PER_DOMAIN {
                return Err(e(format!(
                    "domain {:?} has {} agents; at most {MAX_AGENTS_PER_DOMAIN} are supported",
                    d.name,
                    d.agents.len()
                )));
            }
            if !(0.0..=1.0).contains(&d.fault_rate) {
                return Err(e(format!("domain {:?}: fault_rate must be in [0, 1], got {}", d.name, d.fault_rate)));
            }
            if d.max_attempts == Some(0) {
                return Err(e(format!("domain {:?}: max_attempts must be at least 1", d.name)));
            }
            for (j, a) in d.agents.iter().enumerate() {
                let agent = &self.agents[usize::from(a.0)];
                if agent.name.trim().is_empty() {
                    return Err(e(format!("agent {j} of domain {:?} has an empty name", d.name)));
                }
                if d.agents[..j].iter().any(|o| self.agents[usize::from(o.0)].name == agent.name) {
                    return Err(e(format!("domain {:?} has two agents named {:?}", d.name, agent.name)));
                }
                match &agent.spec.kind {
                    AgentKind::Sim(s) => {
                        s.validate().map_err(|m| e(format!("agent {}/{}: {m}", d.name, agent.name)))?
                    }
                    AgentKind::Unbound => {
                        return Err(e(format!(
                            "agent {}/{} has no handler: bind one before building",
                            d.name, agent.name
                        )));
                    }
                    AgentKind::Handler(_) => {}
                }
            }
        }
        if self.agents.len() > usize::from(u16::MAX) {
            return Err(e(format!("it has {} agents; at most {} are supported", self.agents.len(), u16::MAX)));
        }
        if !(0.0..=1.0).contains(&self.meta_fault_rate) {
            return Err(e(format!("meta_fault_rate must be in [0, 1], got {}", self.meta_fault_rate)));
        }
        for (level, cfg) in
            [("agent", &self.breakers.agent), ("domain", &self.breakers.domain), ("meta", &self.breakers.meta)]
        {
            cfg.validate().map_err(|m| e(format!("breakers.{level}: {m}")))?;
        }
        Ok(Topology {
            domains: self.domains,
            agents: self.agents,
            breakers: self.breakers,
            meta_fault_rate: self.meta_fault_rate,
        })
    }

    /// Parses TOML text (see `examples/topology.toml` for the format). Agents with a `sim`
    /// table are simulated; agents without one must be bound ([`bind`](Self::bind)) before
    /// building.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let file: FileSpec =
            toml::from_str(text).map_err(|err| Error::Config(format!("TOML: {}", err.message().trim())))?;
        let mut b = TopologyBuilder::default();
        let levels = Levels::default();
        b.breakers = Levels {
            agent: overlay(levels.agent, file.breakers.agent, "breakers.agent")?,
            domain: overlay(levels.domain, file.breakers.domain, "breakers.domain")?,
            meta: overlay(levels.meta, file.breakers.meta, "breakers.meta")?,
        };
        b.meta_fault_rate = file.meta_fault_rate;
        for d in file.domains {
            let id = b.domain(d.name);
            b.domains[usize::from(id.0)].fault_rate = d.fault_rate;
            b.domains[usize::from(id.0)].max_attempts = d.max_attempts;
            for a in d.agents {
                let kind = a.sim.map_or(AgentKind::Unbound, AgentKind::Sim);
                b.agent(id, a.name, AgentSpec { kind, isolated: a.isolated })?;
            }
        }
        Ok(b)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|err| Error::Io(format!("cannot read {}: {err}", path.display())))?;
        Self::from_toml(&text).map_err(|err| err.context(&path.display().to_string()))
    }
}

impl EngineConfig {
    /// The `[engine]` table of a TOML text (defaults where it is absent).
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let file: FileSpec =
            toml::from_str(text).map_err(|err| Error::Config(format!("TOML: {}", err.message().trim())))?;
        file.engine.validate().map_err(Error::Config)?;
        Ok(file.engine)
    }
}

/// Applies the keys of a partial `[breakers.<level>]` table over that level's defaults.
fn overlay(base: BreakerConfig, table: Option<toml::Table>, what: &str) -> Result<BreakerConfig, Error> {
    let Some(table) = table else { return Ok(base) };
    let mut merged = toml::Table::try_from(&base).map_err(|err| Error::Config(format!("{what}: {err}")))?;
    merged.extend(table);
    merged.try_into().map_err(|err: toml::de::Error| Error::Config(format!("{what}: {}", err.message().trim())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    breakers: LevelsSpec,
    #[serde(default)]
    meta_fault_rate: f64,
    #[serde(default)]
    domains: Vec<DomainSpecFile>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelsSpec {
    agent: Option<toml::Table>,
    domain: Option<toml::Table>,
    meta: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainSpecFile {
    name: String,
    #[serde(default)]
    fault_rate: f64,
    max_attempts: Option<u32>,
    #[serde(default)]
    agents: Vec<AgentSpecFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSpecFile {
    name: String,
    #[serde(default)]
    isolated: bool,
    sim: Option<SimAgent>,
}
