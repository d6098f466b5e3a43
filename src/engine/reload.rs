//! `reload_toml`: the settings of a TOML file that can change while tasks run, applied whole.

use super::Engine;
use super::control::level_key;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::events::Level;
use crate::sync::lock;
use crate::topology::{AgentKind, Topology};

impl Engine {
    /// Applies the settings of a TOML file (the format of `examples/topology.toml`) that can
    /// change while tasks run: each level's breakers and time budget, the admission settings,
    /// the keyed rate limits' quotas, the decision engine's `[classify]` table, each domain's
    /// balance, outlier detection, shedding and alternates,
    /// each agent's concurrency limit and weight, and the domains and agents themselves (found
    /// by name): a domain or an agent the file adds (agents with a `sim` table) is added, a
    /// running one it lacks is removed. Anything else that differs from the running engine
    /// (worker count, slots, spare ids, an agent's threads, a simulated agent's settings, a
    /// running domain's fault rate, attempts, hedging and retry budget, keyed limits added,
    /// removed or resized) is listed in
    /// [`Reload::needs_restart`] and left as it is. Checked in full before
    /// anything changes: an error changes nothing. What changed is in [`Reload::applied`] and in the audit trail.
    /// `metafed serve --config FILE` calls it on SIGHUP.
    pub fn reload_toml(&self, text: &str) -> Result<Reload, Error> {
        let new = crate::topology::TopologyBuilder::from_toml(text)?;
        let cfg = EngineConfig::from_toml(text)?;
        let topo = self.sh.topo.load();
        // Domains and agents are found by name: the file's new ones are added, the running ones
        // it lacks removed, and those in both keep their ids.
        let mut scratch = Topology::clone(&topo); // the topology as it will be, to vet additions
        let mut remove_domains = Vec::new();
        for (d, dom) in topo.domains.iter().enumerate().filter(|(_, dom)| !dom.removed) {
            if new.domain_id(&dom.name).is_none() {
                remove_domains.push(crate::task::DomainId(d as u16));
            }
        }
        let mut add_domains = Vec::new(); // (name, fault rate, max attempts)
        for name in new.domain_names() {
            if topo.domain_id(&name).is_some() {
                continue;
            }
            let id = new.domain_id(&name).expect("a name the builder has");
            let (fault_rate, max_attempts, hedge, budget) = new.domain_settings(id);
            let extras = hedge.is_some() || budget.is_some();
            if !(0.0..=1.0).contains(&fault_rate) {
                return Err(Error::Config(format!("domain {name}: fault_rate must be in [0, 1], got {fault_rate}")));
            }
            if let Some(n) = max_attempts
                && !(1..=255).contains(&n)
            {
                return Err(Error::Config(format!("domain {name}: max_attempts must be 1 to 255, got {n}")));
            }
            if extras {
                return Err(Error::Config(format!(
                    "domain {name} is new in the file with hedging or a retry budget: a domain added while \
                     running has neither (a restart gives it them)"
                )));
            }
            // As `add_domain_with` will add it: the file's policies for it are applied after.
            scratch.domains.push(crate::topology::DomainDef::new(name.clone(), fault_rate, max_attempts));
            add_domains.push((name, fault_rate, max_attempts));
        }
        if add_domains.len() > self.sh.domain_breakers.len() - topo.domains.len() {
            return Err(Error::Config(format!(
                "the file adds {} domains and the engine has {} spare domain ids (engine.spare_domains is \
                 read at the start)",
                add_domains.len(),
                self.sh.domain_breakers.len() - topo.domains.len()
            )));
        }
        let mut agents = Vec::new(); // (running id, its spec in the file)
        let mut to_add = Vec::new(); // (domain name, agent name, spec)
        let mut to_remove = Vec::new();
        for (d, dom) in scratch.domains.clone().iter().enumerate().filter(|(_, dom)| !dom.removed) {
            let Some(file_id) = new.domain_id(&dom.name) else { continue };
            let file = new.agents_in(file_id);
            for &a in &dom.agents {
                let name = &topo.agents[usize::from(a.0)].name;
                match file.iter().find(|(n, _)| n == name) {
                    Some((_, spec)) => agents.push((a, spec.clone())),
                    None => to_remove.push(a),
                }
            }
            for (name, spec) in file {
                if !dom.agents.iter().any(|a| topo.agents[usize::from(a.0)].name == name) {
                    let path = format!("{}/{name}", dom.name);
                    if matches!(spec.kind, AgentKind::Unbound) {
                        return Err(Error::Config(format!(
                            "agent {path} is new in the file and has no `sim` table: an agent with a handler \
                             is added with Engine::add_agent"
                        )));
                    }
                    let domain = crate::task::DomainId(d as u16);
                    let local = self.vet_new_agent(&scratch, domain, &name, &spec)?;
                    // In the scratch copy, so that two new agents of a domain are vetted together.
                    let id = crate::task::AgentId(scratch.agents.len() as u16);
                    scratch.domains[d].agents.push(id);
                    let def = crate::topology::AgentDef {
                        name: name.clone(),
                        domain,
                        local,
                        spec: spec.clone(),
                        removed: false,
                    };
                    scratch.agents.push(def);
                    to_add.push((dom.name.clone(), name, spec));
                }
            }
        }
        let spare = self.sh.agents.len() - topo.agents.len();
        if to_add.len() > spare {
            return Err(Error::Config(format!(
                "the file adds {} agents and the engine has {spare} spare agent ids (engine.spare_agents \
                 is read at the start)",
                to_add.len()
            )));
        }
        let mut out = Reload::default();
        let levels = new.levels();
        let mut breakers = Vec::new();
        for (level, want) in
            [(Level::Meta, &levels.meta), (Level::Domain, &levels.domain), (Level::Agent, &levels.agent)]
        {
            want.validate().map_err(|m| Error::Config(format!("breakers.{}: {m}", level_key(level))))?;
            if self.breaker_config(level).as_ref() != Some(want) {
                breakers.push((level, want.clone()));
            }
        }
        let mut limits = Vec::new();
        let policy = self.sh.policy.load();
        let weights: Vec<(crate::task::AgentId, u32)> = agents
            .iter()
            .filter(|(a, spec)| policy.weights[usize::from(a.0)] != spec.weight)
            .map(|(a, spec)| (*a, spec.weight))
            .collect();
        for (a, spec) in &agents {
            let rt = &self.sh.agents[usize::from(a.0)];
            let (now, want) = (rt.bulkhead.limit(), spec.max_concurrency);
            let path = self.sh.agent_path(usize::from(a.0));
            if now != want {
                if now == 0 || want == 0 {
                    out.needs_restart.push(format!("agent {path}: max_concurrency {now} -> {want}"));
                } else {
                    limits.push((*a, want));
                }
            }
            let running = &topo.agents[usize::from(a.0)].spec;
            if running.isolated != spec.isolated || (spec.isolated && running.threads != spec.threads) {
                out.needs_restart.push(format!("agent {path}: isolated / threads"));
            }
            if let (AgentKind::Sim(was), AgentKind::Sim(now)) = (&running.kind, &spec.kind)
                && was != now
            {
                out.needs_restart.push(format!("agent {path}: sim"));
            }
        }
        // What a domain that runs on keeps from the start: its faults, attempts, hedging, budget.
        // Its balance, outlier detection and shedding change live (and a new domain takes them).
        let mut policies = Vec::new(); // (name, balance, outlier, shedding) to apply
        let mut alternates = Vec::new(); // (name, its alternates' names) to apply
        let file_names = new.domain_names();
        for dom in scratch.domains.iter().filter(|d| !d.removed) {
            let Some(id) = new.domain_id(&dom.name) else { continue };
            let want: Vec<String> =
                new.domain_alternates(id).iter().map(|a| file_names[usize::from(a.0)].clone()).collect();
            let running: Vec<&str> = dom.alternates.iter().filter_map(|a| scratch.domain_name(*a)).collect();
            if want != running {
                alternates.push((dom.name.clone(), want));
            }
            if topo.domain_id(&dom.name).is_some() {
                let file = new.domain_settings(id);
                if file != (dom.fault_rate, dom.max_attempts, dom.hedge, dom.retry_budget) {
                    out.needs_restart
                        .push(format!("domain {}: fault_rate / max_attempts / hedge / retry_budget", dom.name));
                }
            }
            let (balance, outlier, shedding) = new.domain_policies(id);
            let named = |m: String| Error::Config(format!("domain {}: {m}", dom.name));
            balance.validate().map_err(named)?;
            outlier.map_or(Ok(()), |o| o.validate()).map_err(named)?;
            shedding.map_or(Ok(()), |s| s.validate()).map_err(named)?;
            if (balance, outlier, shedding) != (dom.balance, dom.outlier, dom.shedding) {
                policies.push((dom.name.clone(), balance, outlier, shedding));
            }
        }
        let keyed_change = match (&self.sh.keyed, &cfg.keyed_limits) {
            (None, None) => None,
            (Some(running), Some(k)) if k.capacity == running.limits().capacity => {
                k.validate().map_err(Error::Config)?;
                (running.limits() != *k).then(|| k.clone())
            }
            _ => {
                out.needs_restart.push("engine.keyed_limits (added, removed, or a new capacity)".into());
                None
            }
        };
        let running = &self.sh.cfg;
        // With an adaptive throttle the limit in force is its own, not the file's.
        let mut file_admission = cfg.admission.clone();
        if self.sh.adaptive.is_some() {
            file_admission.max_concurrent = self.admission().max_concurrent;
        }
        let admission_changed = self.admission() != file_admission;
        let mut engine_diff = Vec::new();
        if (cfg.workers != 0 && cfg.workers != running.workers) || cfg.max_in_flight != running.max_in_flight {
            engine_diff.push("engine.workers / max_in_flight");
        }
        if (cfg.spare_agents, cfg.spare_domains) != (running.spare_agents, running.spare_domains) {
            engine_diff.push("engine.spare_agents / spare_domains");
        }
        if cfg.adaptive_throttle != running.adaptive_throttle {
            engine_diff.push("engine.adaptive_throttle");
        }
        out.needs_restart.extend(engine_diff.into_iter().map(String::from));
        // The decision engine's rules name the file's domains, which the running topology has
        // once the file's are added.
        let classify_change = (self.classify_config() != new.classify).then(|| new.classify.clone());
        if let Some(c) = &classify_change {
            let custom = lock(&self.classify_setting).1.clone();
            crate::classify::Decider::new(c, custom.as_ref(), |n| new.domain_id(n)).map_err(Error::Config)?;
        }
        // Everything checked: apply.
        for (level, want) in breakers {
            self.set_breaker_config(level, &want)?;
            out.applied.push(format!("breakers.{}", level_key(level)));
        }
        for (a, want) in limits {
            self.set_agent_max_concurrency(a, want)?;
            out.applied.push(format!("agent {}: max_concurrency {want}", self.sh.agent_path(usize::from(a.0))));
        }
        if admission_changed {
            self.set_admission(&file_admission)?;
            out.applied.push("engine.admission".into());
        }
        for (a, weight) in weights {
            self.set_agent_weight(a, weight)?;
            out.applied.push(format!("agent {}: weight {weight}", self.sh.agent_path(usize::from(a.0))));
        }
        for d in remove_domains {
            let name = self.sh.topo.load().domains[usize::from(d.0)].name.clone();
            self.remove_domain(d)?;
            out.applied.push(format!("domain {name} removed"));
        }
        for a in to_remove {
            let path = self.sh.agent_path(usize::from(a.0));
            self.remove_agent(a)?;
            out.applied.push(format!("agent {path} removed"));
        }
        for (name, fault_rate, max_attempts) in add_domains {
            self.add_domain_with(&name, fault_rate, max_attempts)?;
            out.applied.push(format!("domain {name} added"));
        }
        for (domain, name, spec) in to_add {
            let d = self.sh.topo.load().domain_id(&domain).expect("added or running");
            let a = self.add_agent(d, name, spec)?;
            out.applied.push(format!("agent {} added", self.sh.agent_path(usize::from(a.0))));
        }
        for (name, balance, outlier, shedding) in policies {
            let now = self.sh.topo.load();
            let d = now.domain_id(&name).expect("added or running");
            let (b, o, s) = (now.balance(d), now.outlier(d).copied(), now.shedding(d).copied());
            if b != Some(balance) {
                self.set_domain_balance(d, balance)?;
                out.applied.push(format!("domain {name}: balance"));
            }
            if o != outlier {
                self.set_domain_outlier(d, outlier)?;
                out.applied.push(format!("domain {name}: outlier"));
            }
            if s != shedding {
                self.set_domain_shedding(d, shedding)?;
                out.applied.push(format!("domain {name}: shedding"));
            }
        }
        for (name, alts) in alternates {
            let now = self.sh.topo.load();
            let d = now.domain_id(&name).expect("added or running");
            let ids: Vec<crate::task::DomainId> =
                alts.iter().map(|a| now.domain_id(a).expect("a domain of the file, added or running")).collect();
            self.set_domain_alternates(d, &ids)?;
            out.applied.push(format!("domain {name}: alternates"));
        }
        if let Some(k) = keyed_change {
            self.set_keyed_limits(&k)?;
            out.applied.push("engine.keyed_limits".into());
        }
        if let Some(c) = classify_change {
            self.set_classify(&c)?;
            out.applied.push("classify".into());
        }
        Ok(out)
    }
}

/// What [`Engine::reload_toml`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// The settings it changed (each also in the audit trail).
    pub applied: Vec<String>,
    /// Settings that differ from the running engine but cannot change while it runs.
    pub needs_restart: Vec<String>,
}
