//! What the engine runs: domains, their agents, the breakers of each level, injected faults.
//!
//! Build one in code with [`TopologyBuilder`], load one from TOML ([`TopologyBuilder::from_toml`],
//! [`Topology::from_file`]), or take the seed's ([`Topology::seed`]). Validation happens once,
//! in [`TopologyBuilder::build`], and names the first problem it finds.

mod seed;
mod spec;

pub use seed::SEED_DOMAINS;
pub use spec::{AgentKind, AgentSpec, ForeignAgent, MAX_AGENT_THREADS, MAX_WEIGHT};

use crate::breaker::BreakerConfig;
use crate::error::Error;
use crate::policy::budget::RetryBudget;
use crate::policy::hedge::Hedge;
use crate::task::{AgentId, DomainId, MAX_AGENTS_PER_DOMAIN, MAX_DOMAINS};
use serde::Serialize;
use std::time::Duration;

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

/// The most bytes in a domain or agent name.
pub const MAX_NAME_LEN: usize = 256;

/// Checks a domain or agent name.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::topology(format!("{what} name is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::topology(format!("{what} name is {} bytes long; at most {MAX_NAME_LEN}", name.len())));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::topology(format!("{what} name {name:?} contains control characters")));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) struct AgentDef {
    pub(crate) name: String,
    pub(crate) domain: DomainId,
    /// Position within its domain (the bit in a sub-task's tried set).
    pub(crate) local: u8,
    pub(crate) spec: AgentSpec,
    /// Removed from a running engine: in no domain's list, its id never reused.
    pub(crate) removed: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct DomainDef {
    pub(crate) name: String,
    /// Removed from a running engine: no new task may name it; its id is never reused.
    pub(crate) removed: bool,
    pub(crate) agents: Vec<AgentId>,
    pub(crate) fault_rate: f64,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) hedge: Option<Hedge>,
    pub(crate) retry_budget: Option<RetryBudget>,
    pub(crate) balance: crate::policy::Balance,
    pub(crate) outlier: Option<crate::policy::Outlier>,
    pub(crate) shedding: Option<crate::policy::Shedding>,
    /// The domains its failed sub-tasks are rerouted to, in order.
    pub(crate) alternates: Vec<DomainId>,
}

impl DomainDef {
    /// A domain as the builder starts it, and as a running engine adds it: no agents, no
    /// fault, hedging, retry budget, outlier detection, shedding or alternates, round-robin.
    pub(crate) fn new(name: String, fault_rate: f64, max_attempts: Option<u32>) -> Self {
        Self {
            name,
            removed: false,
            agents: Vec::new(),
            fault_rate,
            max_attempts,
            hedge: None,
            retry_budget: None,
            balance: crate::policy::Balance::RoundRobin,
            outlier: None,
            shedding: None,
            alternates: Vec::new(),
        }
    }
}

/// A validated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    pub(crate) domains: Vec<DomainDef>,
    pub(crate) agents: Vec<AgentDef>,
    pub(crate) breakers: Levels,
    pub(crate) meta_fault_rate: f64,
    pub(crate) classify: crate::classify::ClassifyConfig,
    pub(crate) classifier: Option<crate::classify::Custom>,
}

impl Topology {
    /// A builder.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
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
        self.domains.iter().position(|d| d.name == name && !d.removed).map(|i| DomainId(i as u16))
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

    /// Whether domain `d` was removed from the running engine this topology describes
    /// ([`crate::Engine::remove_domain`]).
    pub fn is_domain_removed(&self, d: DomainId) -> bool {
        self.domains.get(usize::from(d.0)).is_some_and(|d| d.removed)
    }

    /// Whether agent `a` was removed from the running engine this topology describes
    /// ([`crate::Engine::remove_agent`]); a removed agent keeps its id and its counters.
    pub fn is_removed(&self, a: AgentId) -> bool {
        self.agents.get(usize::from(a.0)).is_some_and(|a| a.removed)
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

    /// How domain `d` chooses its agents.
    pub fn balance(&self, d: DomainId) -> Option<crate::policy::Balance> {
        self.domains.get(usize::from(d.0)).map(|d| d.balance)
    }

    /// Domain `d`'s adaptive shedding, if it has one.
    pub fn shedding(&self, d: DomainId) -> Option<&crate::policy::Shedding> {
        self.domains.get(usize::from(d.0))?.shedding.as_ref()
    }

    /// Domain `d`'s outlier detection, if it has one.
    pub fn outlier(&self, d: DomainId) -> Option<&crate::policy::Outlier> {
        self.domains.get(usize::from(d.0))?.outlier.as_ref()
    }

    /// The domains a sub-task of domain `d` is rerouted to, in order, when it fails at `d` (see
    /// [`TopologyBuilder::alternates`]).
    pub fn alternates(&self, d: DomainId) -> &[DomainId] {
        self.domains.get(usize::from(d.0)).map_or(&[], |d| &d.alternates)
    }

    /// Domain `d`'s hedging policy, if it hedges.
    pub fn hedge(&self, d: DomainId) -> Option<&Hedge> {
        self.domains.get(usize::from(d.0))?.hedge.as_ref()
    }

    /// Domain `d`'s retry budget, if it has one.
    pub fn retry_budget(&self, d: DomainId) -> Option<&RetryBudget> {
        self.domains.get(usize::from(d.0))?.retry_budget.as_ref()
    }

    /// How agent `a` is declared.
    pub fn agent_spec(&self, a: AgentId) -> Option<&AgentSpec> {
        self.agents.get(usize::from(a.0)).map(|a| &a.spec)
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
    pub(crate) domains: Vec<DomainDef>,
    agents: Vec<AgentDef>,
    pub(crate) breakers: Levels,
    pub(crate) meta_fault_rate: f64,
    pub(crate) classify: crate::classify::ClassifyConfig,
    pub(crate) classifier: Option<crate::classify::Custom>,
}

impl TopologyBuilder {
    /// Adds a domain and returns its id. Refuses a name that is empty, blank, longer than
    /// [`MAX_NAME_LEN`] bytes or already taken, and a domain beyond [`MAX_DOMAINS`].
    pub fn domain(&mut self, name: impl Into<String>) -> Result<DomainId, Error> {
        let name = name.into();
        check_name("a domain", &name)?;
        if self.domains.iter().any(|d| d.name == name) {
            return Err(Error::topology(format!("there is already a domain named {name:?}")));
        }
        if self.domains.len() >= MAX_DOMAINS {
            return Err(Error::topology(format!("a topology has at most {MAX_DOMAINS} domains")));
        }
        self.domains.push(DomainDef::new(name, 0.0, None));
        Ok(DomainId((self.domains.len() - 1) as u16))
    }

    /// Adds an agent to a domain and returns its id. Refuses an unknown domain, a name that is
    /// empty, blank, too long or already taken in the domain, and an agent beyond
    /// [`MAX_AGENTS_PER_DOMAIN`].
    pub fn agent(&mut self, domain: DomainId, name: impl Into<String>, spec: AgentSpec) -> Result<AgentId, Error> {
        let name = name.into();
        let d = usize::from(domain.0);
        let Some(dom) = self.domains.get(d) else {
            return Err(Error::topology(format!("unknown domain id {} ({} domains)", domain.0, self.domains.len())));
        };
        check_name("an agent", &name)?;
        if dom.agents.iter().any(|a| self.agents[usize::from(a.0)].name == name) {
            return Err(Error::topology(format!("domain {:?} already has an agent named {name:?}", dom.name)));
        }
        if dom.agents.len() >= MAX_AGENTS_PER_DOMAIN {
            return Err(Error::topology(format!(
                "domain {:?} already has {MAX_AGENTS_PER_DOMAIN} agents, the most a domain may have",
                dom.name
            )));
        }
        spec.validate().map_err(|m| Error::topology(format!("agent {}/{name}: {m}", dom.name)))?;
        let id = AgentId(self.agents.len() as u16);
        let local = dom.agents.len() as u8;
        self.domains[d].agents.push(id);
        self.agents.push(AgentDef { name, domain, local, spec, removed: false });
        Ok(id)
    }

    /// Changes how agent `agent` runs: isolated on `threads` threads (0: on the workers), and
    /// at most `max_concurrency` attempts in flight (0: no limit).
    pub fn agent_limits(&mut self, agent: AgentId, threads: usize, max_concurrency: u32) -> Result<&mut Self, Error> {
        let def = self
            .agents
            .get_mut(usize::from(agent.0))
            .ok_or_else(|| Error::topology(format!("unknown agent id {}", agent.0)))?;
        let mut spec = def.spec.clone();
        spec.isolated = threads > 0;
        spec.threads = threads.max(1);
        spec.max_concurrency = max_concurrency;
        spec.validate().map_err(|m| Error::topology(format!("agent {}: {m}", def.name)))?;
        def.spec = spec;
        Ok(self)
    }

    /// Sets agent `agent`'s routing weight (1 to [`MAX_WEIGHT`]; see [`AgentSpec::weight`]).
    pub fn agent_weight(&mut self, agent: AgentId, weight: u32) -> Result<&mut Self, Error> {
        let def = self
            .agents
            .get_mut(usize::from(agent.0))
            .ok_or_else(|| Error::topology(format!("unknown agent id {}", agent.0)))?;
        let spec = def.spec.clone().weight(weight);
        spec.validate().map_err(|m| Error::topology(format!("agent {}: {m}", def.name)))?;
        def.spec = spec;
        Ok(self)
    }

    /// The domains' names so far, by id.
    pub(crate) fn domain_names(&self) -> Vec<String> {
        self.domains.iter().map(|d| d.name.clone()).collect()
    }

    /// Domain `d`'s injected fault rate, its limit on attempts, its hedging and its retry budget.
    pub(crate) fn domain_settings(&self, d: DomainId) -> (f64, Option<u32>, Option<Hedge>, Option<RetryBudget>) {
        let dom = &self.domains[usize::from(d.0)];
        (dom.fault_rate, dom.max_attempts, dom.hedge, dom.retry_budget)
    }

    /// Domain `d`'s alternates so far.
    pub(crate) fn domain_alternates(&self, d: DomainId) -> &[DomainId] {
        &self.domains[usize::from(d.0)].alternates
    }

    /// Domain `d`'s policies that change while tasks run: balance, outlier detection, shedding.
    pub(crate) fn domain_policies(
        &self,
        d: DomainId,
    ) -> (crate::policy::Balance, Option<crate::policy::Outlier>, Option<crate::policy::Shedding>) {
        let dom = &self.domains[usize::from(d.0)];
        (dom.balance, dom.outlier, dom.shedding)
    }

    /// The agents of domain `d` so far: (name, spec).
    pub(crate) fn agents_in(&self, d: DomainId) -> Vec<(String, AgentSpec)> {
        self.domains.get(usize::from(d.0)).map_or_else(Vec::new, |dom| {
            dom.agents
                .iter()
                .map(|a| {
                    let def = &self.agents[usize::from(a.0)];
                    (def.name.clone(), def.spec.clone())
                })
                .collect()
        })
    }

    /// The number of agents added so far.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// How agent `a` is declared so far.
    pub fn agent_spec(&self, a: AgentId) -> Option<&AgentSpec> {
        self.agents.get(usize::from(a.0)).map(|a| &a.spec)
    }

    /// Stops a domain hedging.
    pub fn no_hedge(&mut self, domain: DomainId) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?.hedge = None;
        Ok(self)
    }

    /// Removes a domain's retry budget.
    pub fn no_retry_budget(&mut self, domain: DomainId) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?.retry_budget = None;
        Ok(self)
    }

    /// Makes a domain hedge its sub-tasks' attempts.
    pub fn hedge(&mut self, domain: DomainId, hedge: Hedge) -> Result<&mut Self, Error> {
        hedge.validate().map_err(Error::topology)?;
        self.domain_mut(domain)?.hedge = Some(hedge);
        Ok(self)
    }

    /// Sets how a domain chooses its agents (round-robin by default, or peak EWMA).
    pub fn balance(&mut self, domain: DomainId, balance: crate::policy::Balance) -> Result<&mut Self, Error> {
        balance.validate().map_err(Error::topology)?;
        self.domain_mut(domain)?.balance = balance;
        Ok(self)
    }

    /// Gives a domain outlier detection: agents that fail in a row, fail at a rate, or answer
    /// far slower than their peers are ejected for a while (see [`Outlier`](crate::policy::Outlier)).
    pub fn outlier(&mut self, domain: DomainId, outlier: crate::policy::Outlier) -> Result<&mut Self, Error> {
        outlier.validate().map_err(Error::topology)?;
        self.domain_mut(domain)?.outlier = Some(outlier);
        Ok(self)
    }

    /// Gives a domain adaptive shedding: a sub-task that waits for an agent longer than the
    /// target while the domain is overloaded, or finds its wait queue full, is rejected with
    /// `Reason::DomainOverloaded` (see [`Shedding`](crate::policy::Shedding)).
    pub fn shedding(&mut self, domain: DomainId, shedding: crate::policy::Shedding) -> Result<&mut Self, Error> {
        shedding.validate().map_err(Error::topology)?;
        self.domain_mut(domain)?.shedding = Some(shedding);
        Ok(self)
    }

    /// Names the domains a sub-task of `domain` is rerouted to, in order, when it fails at
    /// `domain` (its breaker open or shedding, every agent failed or none available, its
    /// injected fault, its time or retry budget spent) while the task's deadline has not passed.
    /// Alternates must be domains added before, not `domain` itself, each once, at most
    /// [`MAX_ALTERNATES`](crate::policy::MAX_ALTERNATES); an empty list removes them. A sub-task
    /// follows the alternates of the domain it started in only (not theirs).
    pub fn alternates(&mut self, domain: DomainId, alternates: &[DomainId]) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?;
        let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        crate::policy::reroute::validate(domain, alternates, &names, |_| false).map_err(Error::topology)?;
        self.domains[usize::from(domain.0)].alternates = alternates.to_vec();
        Ok(self)
    }

    /// Removes a domain's adaptive shedding.
    pub fn no_shedding(&mut self, domain: DomainId) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?.shedding = None;
        Ok(self)
    }

    /// Removes a domain's outlier detection.
    pub fn no_outlier(&mut self, domain: DomainId) -> Result<&mut Self, Error> {
        self.domain_mut(domain)?.outlier = None;
        Ok(self)
    }

    /// Holds a domain's failovers and hedges to a retry budget.
    pub fn retry_budget(&mut self, domain: DomainId, budget: RetryBudget) -> Result<&mut Self, Error> {
        budget.validate().map_err(Error::topology)?;
        self.domain_mut(domain)?.retry_budget = Some(budget);
        Ok(self)
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
        spec.validate().map_err(|m| Error::topology(format!("agent {domain}/{agent}: {m}")))?;
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

    /// Sets the timeouts of the three levels, keeping the rest of their breaker settings: how
    /// long an attempt may take (agent), a sub-task across its attempts (domain), and a task
    /// from submission (meta: it bounds every task, deadline or not). `None` leaves one as it
    /// is. They apply whether or not the breakers are enabled.
    pub fn timeouts(
        &mut self,
        agent: Option<Duration>,
        domain: Option<Duration>,
        meta: Option<Duration>,
    ) -> Result<&mut Self, Error> {
        let mut levels = self.breakers.clone();
        for (cfg, t, what) in [
            (&mut levels.agent, agent, "agent"),
            (&mut levels.domain, domain, "domain"),
            (&mut levels.meta, meta, "meta"),
        ] {
            if let Some(t) = t {
                cfg.timeout = t;
                cfg.validate().map_err(|m| Error::topology(format!("{what} timeout: {m}")))?;
            }
        }
        self.breakers = levels;
        Ok(self)
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

    /// The decision engine's settings: the default classifier's rules (which name domains of
    /// this topology), the complexity bands and the key attribute (see
    /// [`classify`](crate::classify)). Checked when the topology is built.
    pub fn classify(&mut self, cfg: crate::classify::ClassifyConfig) -> &mut Self {
        self.classify = cfg;
        self
    }

    /// A classifier of its own for tasks that name no domain, in place of the rules (the
    /// bands and the key attribute of [`classify`](Self::classify) still apply).
    pub fn classifier(&mut self, c: impl crate::classify::Classifier) -> &mut Self {
        self.classifier = Some(crate::classify::Custom(std::sync::Arc::new(c)));
        self
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
            if let Some(n) = d.max_attempts
                && !(1..=255).contains(&n)
            {
                return Err(e(format!("domain {:?}: max_attempts must be 1 to 255, got {n}", d.name)));
            }
            if let Some(h) = &d.hedge {
                h.validate().map_err(|m| e(format!("domain {:?}: {m}", d.name)))?;
            }
            d.balance.validate().map_err(|m| e(format!("domain {:?}: {m}", d.name)))?;
            if let Some(o) = &d.outlier {
                o.validate().map_err(|m| e(format!("domain {:?}: {m}", d.name)))?;
            }
            if let Some(s) = &d.shedding {
                s.validate().map_err(|m| e(format!("domain {:?}: {m}", d.name)))?;
            }
            if let Some(b) = &d.retry_budget {
                b.validate().map_err(|m| e(format!("domain {:?}: {m}", d.name)))?;
            }
            let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
            crate::policy::reroute::validate(DomainId(i as u16), &d.alternates, &names, |a| {
                self.domains[usize::from(a.0)].removed
            })
            .map_err(e)?;
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
                    AgentKind::Handler(_) | AgentKind::Deferred(_) | AgentKind::Foreign(_) => {}
                    #[cfg(not(loom))]
                    AgentKind::Queued(..) => {}
                }
                agent.spec.validate().map_err(|m| e(format!("agent {}/{}: {m}", d.name, agent.name)))?;
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
        crate::classify::Decider::new(&self.classify, self.classifier.as_ref(), |n| self.domain_id(n)).map_err(e)?;
        Ok(Topology {
            domains: self.domains,
            agents: self.agents,
            breakers: self.breakers,
            meta_fault_rate: self.meta_fault_rate,
            classify: self.classify,
            classifier: self.classifier,
        })
    }
}
