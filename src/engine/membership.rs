//! Membership while tasks run: agents and domains added and removed.

use super::Engine;
use super::build::make_agent;
use crate::error::Error;
use crate::policy::routing::Policy;
use crate::sim;
use crate::sync::Ordering;
use crate::topology::{AgentKind, Topology};

impl Engine {
    /// The running agent `agent` (not removed), or an error naming it.
    pub(super) fn live_agent(&self, agent: crate::task::AgentId) -> Result<(crate::task::DomainId, String), Error> {
        let topo = self.sh.topo.load();
        match topo.agents.get(usize::from(agent.0)) {
            Some(def) if !def.removed => Ok((def.domain, self.sh.agent_path(usize::from(agent.0)))),
            Some(_) => Err(Error::Config(format!("agent {} was removed", self.sh.agent_path(usize::from(agent.0))))),
            None => Err(Error::Config(format!("agent id {} does not exist", agent.0))),
        }
    }

    /// Checks that agent `name` of `spec` can be added to domain `domain` of a running engine
    /// whose topology is `topo`; returns its bit in the domain.
    pub(super) fn vet_new_agent(
        &self,
        topo: &Topology,
        domain: crate::task::DomainId,
        name: &str,
        spec: &crate::topology::AgentSpec,
    ) -> Result<u8, Error> {
        let Some(dom) = topo.domains.get(usize::from(domain.0)) else {
            return Err(Error::Config(format!("domain id {} does not exist", domain.0)));
        };
        let path = format!("{}/{name}", dom.name);
        crate::topology::check_name("an agent", name)?;
        if dom.agents.iter().any(|a| topo.agents[usize::from(a.0)].name == name) {
            return Err(Error::Config(format!("domain {} already has an agent named {name:?}", dom.name)));
        }
        spec.validate().map_err(|m| Error::Config(format!("agent {path}: {m}")))?;
        let refuse = |why: &str| Err(Error::Config(format!("agent {path}: {why}")));
        if dom.removed {
            return refuse("its domain was removed");
        }
        match &spec.kind {
            AgentKind::Unbound => return refuse("it has no handler"),
            AgentKind::Sim(s) => {
                s.validate().map_err(|m| Error::Config(format!("agent {path}: {m}")))?;
                if (s.io || self.simulated && s.latency != crate::sim::Latency::None) && self.sh.timer.is_none() {
                    return refuse(
                        "a simulated I/O agent needs the engine's timer, which starts only with an engine that \
                         has one: start the engine with it",
                    );
                }
                if self.simulated && matches!(s.fault, crate::sim::SimFault::Hang { .. }) {
                    return refuse("a hanging simulated agent blocks a thread and cannot be simulated");
                }
            }
            _ => {}
        }
        if spec.isolated {
            return refuse(
                "an isolated agent runs on threads started with the engine; add it to the topology and restart",
            );
        }
        // The domain's free bit (agents removed free theirs).
        let used = dom.agents.iter().fold(0u64, |m, a| m | 1u64 << topo.agents[usize::from(a.0)].local);
        if used == u64::MAX {
            return refuse(&format!(
                "the domain has {} agents, the most a domain may have",
                crate::task::MAX_AGENTS_PER_DOMAIN
            ));
        }
        Ok((!used).trailing_zeros() as u8)
    }

    /// Adds an agent to domain `domain` of the running engine and returns its id; workers route
    /// to it from their next turn, in rotation with its weight, with a fresh breaker at the
    /// agent level's settings now and its own concurrency limit. It takes one of the spare ids
    /// the engine started with ([`EngineConfig::spare_agents`](crate::EngineConfig::spare_agents); ids are never reused). An
    /// isolated agent (threads of its own) and a simulated agent with latency or I/O in an
    /// engine started without one cannot be added: they need threads started with the engine.
    /// Refused, with the reason, for an unknown domain, a name taken in the domain, a full
    /// domain or no spare id left. Recorded in the audit trail.
    pub fn add_agent(
        &self,
        domain: crate::task::DomainId,
        name: impl Into<String>,
        spec: crate::topology::AgentSpec,
    ) -> Result<crate::task::AgentId, Error> {
        let name = name.into();
        let d = usize::from(domain.0);
        let _w = self.writer();
        let mut topo = Topology::clone(&self.sh.topo.load());
        let local = self.vet_new_agent(&topo, domain, &name, &spec)?;
        let path = format!("{}/{name}", topo.domains[d].name);
        let refuse = |why: &str| Err(Error::Config(format!("agent {path}: {why}")));
        let a = topo.agents.len();
        if a >= self.sh.agents.len() {
            return refuse(&format!(
                "no spare agent id left (the engine started with {} agents and spare_agents = {})",
                self.sh.agents.len() - self.sh.cfg.spare_agents,
                self.sh.cfg.spare_agents
            ));
        }
        let mut spec = spec;
        if self.simulated
            && let AgentKind::Sim(s) = &mut spec.kind
            && s.latency != crate::sim::Latency::None
        {
            s.io = true; // latency is waited in virtual time, as for the agents it started with
        }
        let id = crate::task::AgentId(a as u16);
        let rt = &self.sh.agents[a];
        // Before the snapshot publishes the id: its bit (an agent of this domain that was
        // removed may have had it: its down flag goes with it) and its limit.
        self.sh.agents_down[d].fetch_and(!(1u64 << local), Ordering::Relaxed);
        {
            let _audit = self.sh.audit();
            self.sh.refresh_down(d);
        }
        rt.bit.store(1u64 << local, Ordering::Relaxed);
        rt.bulkhead.init(spec.max_concurrency);
        self.sh.settings_changed();
        rt.bulkhead.set_tracked(self.sh.balance[d].is_peak_ewma());
        rt.ewma.reset();
        rt.outlier.reset();
        rt.domain.store(d as u32, Ordering::Relaxed);
        let (handler, control) = make_agent(&spec.kind, &self.sh.timer);
        {
            let mut sims = self.sh.sims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sims.resize(a + 1, None);
            sims[a] = control;
        }
        let weight = spec.weight;
        topo.domains[d].agents.push(id);
        topo.agents.push(crate::topology::AgentDef { name, domain, local, spec, removed: false });
        self.refresh_max_attempts(&topo, d);
        self.sh.topo.store(topo);
        let mut next = Policy::clone(&self.sh.policy.load());
        next.members[d].push(id);
        next.in_rotation[a] = true;
        next.weights[a] = weight;
        next.handlers[a] = Some(handler);
        next.route(d);
        self.sh.policy.store(next);
        drop(_w);
        self.sh.audit().record("agent_added", format!("agent {path}"), "-".into(), format!("weight {weight}"));
        Ok(id)
    }

    /// A domain without a `max_attempts` of its own attempts each of its agents once: when
    /// agents come or go, so does its limit (at least 1).
    fn refresh_max_attempts(&self, topo: &Topology, d: usize) {
        if topo.domains[d].max_attempts.is_none() {
            let n = topo.domains[d].agents.len().max(1) as u32;
            self.sh.max_attempts[d].store(n, Ordering::Relaxed);
        }
    }

    /// Adds a domain to the running engine and returns its id: tasks may name it as soon as
    /// this returns; add its agents with [`add_agent`](Self::add_agent) first (until then its
    /// sub-tasks fail as `NoAgent`). It takes one of the spare domain ids the engine started
    /// with ([`EngineConfig::spare_domains`](crate::EngineConfig::spare_domains); ids are never reused), with a fresh breaker at the
    /// domain level's settings now, no injected faults, one attempt per agent, and no hedging
    /// or retry budget (those are fixed at the start). Refused, with the reason, for a name in
    /// use or no spare id left. Recorded in the audit trail.
    pub fn add_domain(&self, name: impl Into<String>) -> Result<crate::task::DomainId, Error> {
        self.add_domain_with(&name.into(), 0.0, None)
    }

    /// [`add_domain`](Self::add_domain) with an injected fault rate and a limit on attempts
    /// (None: one per agent), as a reloaded file may give them.
    pub(super) fn add_domain_with(
        &self,
        name: &str,
        fault_rate: f64,
        max_attempts: Option<u32>,
    ) -> Result<crate::task::DomainId, Error> {
        let name = name.to_owned();
        crate::topology::check_name("a domain", &name)?;
        if !(0.0..=1.0).contains(&fault_rate) {
            return Err(Error::Config(format!("domain {name}: fault_rate must be in [0, 1], got {fault_rate}")));
        }
        if let Some(n) = max_attempts
            && !(1..=255).contains(&n)
        {
            return Err(Error::Config(format!("domain {name}: max_attempts must be 1 to 255, got {n}")));
        }
        let _w = self.writer();
        let mut topo = Topology::clone(&self.sh.topo.load());
        if topo.domain_id(&name).is_some() {
            return Err(Error::Config(format!("there is already a domain named {name:?}")));
        }
        let d = topo.domains.len();
        if d >= self.sh.domain_breakers.len() {
            return Err(Error::Config(format!(
                "domain {name}: no spare domain id left (the engine started with {} domains and spare_domains = {})",
                self.sh.domain_breakers.len() - self.sh.cfg.spare_domains,
                self.sh.cfg.spare_domains
            )));
        }
        topo.domains.push(crate::topology::DomainDef::new(name.clone(), fault_rate, max_attempts));
        self.sh.balance[d].set(&crate::policy::Balance::RoundRobin);
        for mask in [&self.sh.peak_ewma, &self.sh.outlier_on, &self.sh.watched, &self.sh.shedding_on] {
            mask.fetch_and(!(1u64 << d), Ordering::Relaxed);
        }
        self.sh.domain_fault_threshold[d].store(sim::threshold(fault_rate), Ordering::Relaxed);
        self.sh.max_attempts[d].store(max_attempts.unwrap_or(1), Ordering::Relaxed);
        self.sh.settings_changed();
        self.sh.topo.store(topo);
        // Its routing (empty) is in every snapshot already; tasks may name it from now on.
        self.sh.live_domains.fetch_or(1u64 << d, Ordering::Release);
        drop(_w);
        self.sh.audit().record("domain_added", format!("domain {name}"), "-".into(), "in the engine".into());
        Ok(crate::task::DomainId(d as u16))
    }

    /// Removes a domain from the running engine: from this call on, a task that names it is
    /// refused at submission (`UnknownDomain`); the sub-tasks already admitted run to their
    /// outcome on its agents, so no task is lost or failed by the removal. Its id is not reused
    /// (its name may be added again as a new domain); its counters stay in [`Stats`](crate::stats::Stats) (marked
    /// removed), and its agents, which serve those last sub-tasks, are released when the engine
    /// is dropped. Recorded in the audit trail.
    pub fn remove_domain(&self, domain: crate::task::DomainId) -> Result<(), Error> {
        let d = usize::from(domain.0);
        let _w = self.writer();
        let mut topo = Topology::clone(&self.sh.topo.load());
        let name = match topo.domains.get(d) {
            Some(def) if def.removed => return Err(Error::Config(format!("domain {} was removed", def.name))),
            Some(def) => def.name.clone(),
            None => return Err(Error::Config(format!("domain id {d} does not exist"))),
        };
        self.sh.live_domains.fetch_and(!(1u64 << d), Ordering::Release);
        topo.domains[d].removed = true;
        self.sh.topo.store(topo);
        drop(_w);
        self.sh.audit().record("domain_removed", format!("domain {name}"), "in the engine".into(), "-".into());
        Ok(())
    }

    /// Removes an agent from the running engine: workers stop routing to it from their next
    /// turn; its attempts in flight finish (or are abandoned at their timeout) and count as
    /// usual, sub-tasks that wait for it choose again, and no task is lost. Its id is not
    /// reused, its counters stay in [`Stats`](crate::stats::Stats) (marked removed), and the handler of an agent on
    /// the workers is released once the workers' snapshots and its attempts in flight no
    /// longer hold it (an isolated agent's threads idle until shutdown). Removing the last
    /// agent of a domain is allowed: its sub-tasks then fail as `NoAgent`. Recorded in the
    /// audit trail.
    pub fn remove_agent(&self, agent: crate::task::AgentId) -> Result<(), Error> {
        let _w = self.writer();
        let (d, path) = self.live_agent(agent)?;
        let (a, d) = (usize::from(agent.0), usize::from(d.0));
        let mut next = Policy::clone(&self.sh.policy.load());
        next.members[d].retain(|&x| x != agent);
        next.handlers[a] = None;
        next.route(d);
        self.sh.policy.store(next);
        let mut topo = Topology::clone(&self.sh.topo.load());
        topo.domains[d].agents.retain(|&x| x != agent);
        topo.agents[a].removed = true;
        // The topology keeps the name, not the handler: it is released with the last snapshot
        // and attempt that holds it.
        topo.agents[a].spec.kind = AgentKind::Unbound;
        self.refresh_max_attempts(&topo, d);
        self.sh.topo.store(topo);
        drop(_w);
        self.sh.audit().record("agent_removed", format!("agent {path}"), "in the engine".into(), "-".into());
        Ok(())
    }
}
