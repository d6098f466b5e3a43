//! Operator controls while tasks run: breaker modes and settings, faults for drills, routing
//! (rotation, weights), admission, concurrency limits, the event listener.

use super::Engine;
use crate::breaker::{Breaker, BreakerConfig, BreakerMode};
use crate::config::EngineConfig;
use crate::error::Error;
use crate::events::Level;
use crate::policy::routing::Policy;
use crate::sync::{Ordering, lock};
use std::time::Duration;

impl Engine {
    /// Forces a breaker open, disables it, or returns it to normal. `index` is the domain or
    /// agent index (0 for the meta level). Returns false if there is no such breaker.
    pub fn set_breaker_mode(&self, level: Level, index: usize, mode: BreakerMode) -> bool {
        self.sh.set_mode(level, index, mode)
    }

    /// Marks a domain down (every call to its agents fails, a correlated fault) or up again.
    pub fn set_domain_down(&self, domain: crate::task::DomainId, down: bool) -> bool {
        let d = usize::from(domain.0);
        match self
            .sh
            .domain_down
            .get(d)
            .filter(|_| !self.sh.topo.load().is_domain_removed(domain) && d < self.sh.topo.load().domains.len())
        {
            Some(flag) => {
                let mut audit = self.sh.audit();
                let before = flag.swap(down, Ordering::Relaxed);
                self.sh.refresh_down(d);
                let name = format!("domain {}", self.sh.topo.load().domains[d].name);
                audit.record("domain_down", name, before.to_string(), down.to_string());
                true
            }
            None => false,
        }
    }

    /// Changes a simulated agent while tasks run, for fault schedules and drills: its error rate
    /// (the oracle's p per attempt, 0 to 1) and latency added to each of its calls (a slow
    /// agent; zero removes it). An I/O agent (and every agent with a latency in a simulation)
    /// waits the added latency on the engine's timer; any other waits it on the calling worker.
    /// `None` keeps a setting. Refused for an agent that is not simulated. Audited.
    pub fn set_sim_agent(
        &self,
        agent: crate::task::AgentId,
        error_rate: Option<f64>,
        extra_latency: Option<Duration>,
    ) -> Result<(), Error> {
        let (_, path) = self.live_agent(agent)?;
        if let Some(p) = error_rate
            && !(0.0..=1.0).contains(&p)
        {
            return Err(Error::Config(format!("agent {path}: error_rate must be in [0, 1], got {p}")));
        }
        if let Some(d) = extra_latency
            && d > crate::duration::MAX_DURATION
        {
            return Err(Error::Config(format!("agent {path}: the added latency must be at most 30 days, got {d:?}")));
        }
        let control = {
            let sims = self.sh.sims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sims.get(usize::from(agent.0)).cloned().flatten()
        };
        let Some(control) = control else {
            return Err(Error::Config(format!("agent {path} is not a simulated agent")));
        };
        if self.simulated && !control.waits_on_timer && extra_latency.is_some_and(|d| !d.is_zero()) {
            return Err(Error::Config(format!(
                "agent {path}: added latency in a simulation needs an agent with a latency of its own \
                 (it then waits on the simulation's timer; this one would wait in real time)"
            )));
        }
        let mut audit = self.sh.audit();
        let words = |(p, d): (f64, Duration)| format!("error_rate {p}, added latency {d:?}");
        let before = control.get();
        control.set(error_rate, extra_latency);
        audit.record("sim_agent", format!("agent {path}"), words(before), words(control.get()));
        Ok(())
    }

    /// Marks one agent down (every call to it fails, as `FailureKind::Down`: an outage of one
    /// dependency, for drills and simulations) or up again. Its breaker and its domain react as
    /// to any failing agent. Returns false if there is no such agent (or it was removed).
    /// Audited.
    pub fn set_agent_down(&self, agent: crate::task::AgentId, down: bool) -> bool {
        // Under the reconfiguration lock: a removal and an add cannot hand the agent's bit in
        // its domain to another agent meanwhile.
        let _w = self.writer();
        let topo = self.sh.topo.load();
        let Some(def) = topo.agents.get(usize::from(agent.0)).filter(|a| !a.removed) else { return false };
        let d = usize::from(def.domain.0);
        let bit = 1u64 << def.local;
        let mut audit = self.sh.audit();
        let before = if down {
            self.sh.agents_down[d].fetch_or(bit, Ordering::Relaxed)
        } else {
            self.sh.agents_down[d].fetch_and(!bit, Ordering::Relaxed)
        } & bit
            != 0;
        self.sh.refresh_down(d);
        let name = format!("agent {}", self.sh.agent_path(usize::from(agent.0)));
        audit.record("agent_down", name, before.to_string(), down.to_string());
        true
    }

    /// The reconfiguration lock (one change at a time). Taking it again on a thread that holds
    /// it (an event listener that reconfigures from inside a reconfiguration) panics rather
    /// than deadlocks.
    pub(super) fn writer(&self) -> crate::guard::Held<std::sync::MutexGuard<'_, ()>> {
        crate::guard::Held::take(crate::guard::WRITER_LOCK, || lock(&self.policy_writer))
    }

    /// Calls `listener` with every breaker transition and every audit record from now on
    /// (`None`: no more calls), beside `tracing` and `drain_events`. A breaker's transition
    /// is reported on the thread that caused it (often a worker: keep the listener short and
    /// never block in it); an audit record on the thread of the operator action, with the audit
    /// log unlocked (and, but for `set_breaker_config`'s records of each breaker's mode, the
    /// reconfiguration lock too). A listener that panics is logged and the engine runs on.
    /// It may read the engine (stats, health, the audit log) and act on the event, with one
    /// exception: `set_breaker_config` holds the reconfiguration lock while it sets each
    /// breaker's mode, so a reconfiguration (breaker settings, agents, weights, rotation, a
    /// reload) from inside a breaker event it raised would deadlock; it panics instead (caught
    /// and logged). Recorded in the audit trail.
    pub fn set_event_listener(&self, listener: Option<crate::events::EventListener>) {
        let on = listener.is_some();
        let before = {
            let mut audit = self.sh.audit();
            audit.listening = on;
            let before = self.sh.listener.load().is_some();
            self.sh.listener.store(listener);
            self.sh.listening.store(on, Ordering::Release);
            before
        };
        let word = |b: bool| if b { "set" } else { "none" };
        self.sh.audit().record("event_listener", "engine".into(), word(before).into(), word(on).into());
    }

    /// Changes the routing of agent `agent`'s domain under the reconfiguration lock (the agent
    /// checked under it, so that a removal cannot slip in between): `f` edits a copy of the
    /// current snapshot, which replaces it if `f` succeeds. Returns the agent's path and what
    /// `f` returned.
    fn change_routing<R>(
        &self,
        agent: crate::task::AgentId,
        f: impl FnOnce(&mut Policy) -> Result<R, Error>,
    ) -> Result<(String, R), Error> {
        let _w = self.writer();
        let (d, name) = self.live_agent(agent)?;
        let mut next = Policy::clone(&self.sh.policy.load());
        let r = f(&mut next)?;
        next.route(usize::from(d.0));
        self.sh.policy.store(next);
        Ok((name, r))
    }

    /// Takes an agent out of rotation (its domain routes around it) or puts it back. Workers see
    /// the change from their next turn. Returns false if there is no such agent.
    pub fn set_agent_in_rotation(&self, agent: crate::task::AgentId, in_rotation: bool) -> bool {
        let Ok((name, before)) = self
            .change_routing(agent, |p| Ok(std::mem::replace(&mut p.in_rotation[usize::from(agent.0)], in_rotation)))
        else {
            return false;
        };
        let word = |b: bool| if b { "in" } else { "out" };
        self.sh.audit().record(
            "agent_rotation",
            format!("agent {name}"),
            word(before).into(),
            word(in_rotation).into(),
        );
        true
    }

    /// Changes an agent's routing weight (1 to [`crate::MAX_WEIGHT`]; see
    /// [`AgentSpec::weight`](crate::AgentSpec::weight)) while tasks run; workers route by it
    /// from their next turn. Recorded in the audit trail.
    pub fn set_agent_weight(&self, agent: crate::task::AgentId, weight: u32) -> Result<(), Error> {
        let (name, before) = self.change_routing(agent, |p| {
            if !(1..=crate::topology::MAX_WEIGHT).contains(&weight) {
                return Err(Error::Config(format!(
                    "agent {}: weight must be 1 to {}, got {weight}",
                    self.sh.agent_path(usize::from(agent.0)),
                    crate::topology::MAX_WEIGHT
                )));
            }
            Ok(std::mem::replace(&mut p.weights[usize::from(agent.0)], weight))
        })?;
        self.sh.audit().record("agent_weight", format!("agent {name}"), before.to_string(), weight.to_string());
        Ok(())
    }

    /// An agent's routing weight now.
    pub fn agent_weight(&self, agent: crate::task::AgentId) -> Option<u32> {
        self.live_agent(agent).ok().map(|_| self.sh.policy.load().weights[usize::from(agent.0)])
    }

    /// Changes how a domain chooses its agents while tasks run (round-robin or peak EWMA; see
    /// [`Balance`](crate::policy::Balance)): workers choose by it from their next attempt.
    /// Switching to peak EWMA starts every agent of the domain at the default RTT and counts its
    /// attempts in flight from zero; changing only its decay or default RTT keeps the estimates.
    /// Refused for a domain that does not exist or was removed. Recorded in the audit trail.
    pub fn set_domain_balance(
        &self,
        domain: crate::task::DomainId,
        balance: crate::policy::Balance,
    ) -> Result<(), Error> {
        self.change_domain(domain, "domain_balance", |topo, d, name, def| {
            balance.validate().map_err(|m| Error::Config(format!("domain {name}: {m}")))?;
            let before = self.sh.balance[d].get();
            let peak = !matches!(balance, crate::policy::Balance::RoundRobin);
            let switched = std::mem::discriminant(&before) != std::mem::discriminant(&balance);
            for &a in &topo.domains[d].agents {
                let rt = &self.sh.agents[usize::from(a.0)];
                if switched {
                    rt.ewma.reset();
                }
                rt.bulkhead.set_tracked(peak);
            }
            self.sh.balance[d].set(&balance);
            self.sh.set_domain_bit(&self.sh.peak_ewma, d, peak);
            def.balance = balance;
            Ok((balance_words(&before), balance_words(&balance)))
        })
    }

    /// Applies a change to live domain `domain` under the reconfiguration lock and records it in
    /// the audit trail as `action`: `change(running topology, id, name, the domain's definition
    /// in the next topology)` validates, applies the live state and returns the (before, after)
    /// words; the next topology is stored when it succeeds. Refused for a domain that does not
    /// exist or was removed.
    fn change_domain(
        &self,
        domain: crate::task::DomainId,
        action: &'static str,
        change: impl FnOnce(
            &crate::topology::Topology,
            usize,
            &str,
            &mut crate::topology::DomainDef,
        ) -> Result<(String, String), Error>,
    ) -> Result<(), Error> {
        let d = usize::from(domain.0);
        let w = self.writer();
        let topo = self.sh.topo.load();
        let name = live_domain_name(&topo, d)?;
        let mut next = crate::topology::Topology::clone(&topo);
        let (from, to) = change(&topo, d, &name, &mut next.domains[d])?;
        self.sh.topo.store(next);
        drop(w);
        self.sh.audit().record(action, format!("domain {name}"), from, to);
        Ok(())
    }

    /// Names the domains a sub-task of `domain` is rerouted to, in order, when it fails at
    /// `domain` (see [`TopologyBuilder::alternates`](crate::TopologyBuilder::alternates)); an
    /// empty list stops its rerouting. Workers reroute by it from their next turn; a sub-task
    /// already on its way through the alternates goes on from its position in the list as it
    /// then is (after a reorder it may skip one or meet one again). Refused, with
    /// the reason, for a domain or alternate that does not exist or was removed, the domain
    /// itself, a repeated alternate, or more than [`MAX_ALTERNATES`](crate::policy::MAX_ALTERNATES).
    /// An alternate removed later is skipped. Recorded in the audit trail.
    pub fn set_domain_alternates(
        &self,
        domain: crate::task::DomainId,
        alternates: &[crate::task::DomainId],
    ) -> Result<(), Error> {
        self.change_domain(domain, "domain_alternates", |topo, d, _, def| {
            let names: Vec<&str> = topo.domains.iter().map(|d| d.name.as_str()).collect();
            crate::policy::reroute::validate(domain, alternates, &names, |a| topo.is_domain_removed(a))
                .map_err(Error::Config)?;
            let words = |alts: &[crate::task::DomainId]| {
                let v: Vec<&str> = alts.iter().map(|a| names[usize::from(a.0)]).collect();
                if v.is_empty() { "none".to_owned() } else { v.join(", ") }
            };
            let mut next = Policy::clone(&self.sh.policy.load());
            next.alternates[d] = alternates.into();
            self.sh.policy.store(next);
            let before = words(&def.alternates);
            def.alternates = alternates.to_vec();
            Ok((before, words(alternates)))
        })
    }

    /// The domains a sub-task of `domain` is rerouted to now, in order (`None` for a domain
    /// that does not exist).
    pub fn domain_alternates(&self, domain: crate::task::DomainId) -> Option<Vec<crate::task::DomainId>> {
        self.sh.topo.load().domains.get(usize::from(domain.0)).map(|d| d.alternates.clone())
    }

    /// Gives a domain outlier detection while tasks run, changes it, or (`None`) removes it (see
    /// [`Outlier`](crate::policy::Outlier)): from each worker's next outcome. Turning it on or
    /// changing it starts the agents' counts afresh; agents ejected stay out until their
    /// ejection time ends. Recorded in the audit trail.
    pub fn set_domain_outlier(
        &self,
        domain: crate::task::DomainId,
        outlier: Option<crate::policy::Outlier>,
    ) -> Result<(), Error> {
        self.change_domain(domain, "domain_outlier", |topo, d, name, def| {
            if let Some(o) = &outlier {
                o.validate().map_err(|m| Error::Config(format!("domain {name}: {m}")))?;
            }
            // Off while the settings and the counts change, so no outcome is judged half-way.
            self.sh.set_domain_bit(&self.sh.outlier_on, d, false);
            if let Some(o) = &outlier {
                self.sh.outlier[d].set(o);
                for &a in &topo.domains[d].agents {
                    self.sh.agents[usize::from(a.0)].outlier.forget();
                }
                self.sh.set_domain_bit(&self.sh.outlier_on, d, true);
            }
            let words = |o: &Option<crate::policy::Outlier>| match o {
                None => "off".to_string(),
                Some(o) => format!(
                    "consecutive_failures {}, failure_rate {} of {}, latency_factor {} (min_samples {}), ejection {:?}..{:?}, max {}%",
                    o.consecutive_failures,
                    o.failure_rate,
                    o.min_calls,
                    o.latency_factor,
                    o.min_samples,
                    o.base_ejection,
                    o.max_ejection,
                    o.max_ejected_percent
                ),
            };
            let before = std::mem::replace(&mut def.outlier, outlier);
            Ok((words(&before), words(&outlier)))
        })
    }

    /// Gives a domain adaptive shedding while tasks run, changes it, or (`None`) removes it (see
    /// [`Shedding`](crate::policy::Shedding)): from each worker's next look at its wait queue.
    /// Recorded in the audit trail.
    pub fn set_domain_shedding(
        &self,
        domain: crate::task::DomainId,
        shedding: Option<crate::policy::Shedding>,
    ) -> Result<(), Error> {
        self.change_domain(domain, "domain_shedding", |_, d, name, def| {
            if let Some(s) = &shedding {
                s.validate().map_err(|m| Error::Config(format!("domain {name}: {m}")))?;
                self.sh.shedding[d].set(s);
                self.sh.shedding_on.fetch_or(1u64 << d, Ordering::Relaxed);
            } else {
                self.sh.shedding_on.fetch_and(!(1u64 << d), Ordering::Relaxed);
            }
            let words = |s: &Option<crate::policy::Shedding>| match s {
                None => "off".to_string(),
                Some(s) => format!(
                    "target {:?} over {:?}, queue {}",
                    s.target,
                    s.interval,
                    if s.queue_capacity == 0 { "unbounded".to_string() } else { s.queue_capacity.to_string() }
                ),
            };
            let before = std::mem::replace(&mut def.shedding, shedding);
            Ok((words(&before), words(&shedding)))
        })
    }

    /// A domain's adaptive shedding now (None when it has none or the id does not exist).
    pub fn domain_shedding(&self, domain: crate::task::DomainId) -> Option<crate::policy::Shedding> {
        let d = usize::from(domain.0);
        (d < self.sh.shedding.len() && self.sh.shedding_on.load(Ordering::Relaxed) & (1u64 << (d % 64)) != 0)
            .then(|| self.sh.shedding[d].get())
    }

    /// A domain's outlier detection now (None when it has none or the id does not exist).
    pub fn domain_outlier(&self, domain: crate::task::DomainId) -> Option<crate::policy::Outlier> {
        let d = usize::from(domain.0);
        (self.sh.outlier_on.load(Ordering::Relaxed) & (1u64 << (d % 64)) != 0 && d < self.sh.outlier.len())
            .then(|| self.sh.outlier[d].get())
    }

    /// How a domain chooses its agents now (None for an id that does not exist).
    pub fn domain_balance(&self, domain: crate::task::DomainId) -> Option<crate::policy::Balance> {
        let d = usize::from(domain.0);
        (d < self.sh.topo.load().domains.len()).then(|| self.sh.balance[d].get())
    }

    /// Changes the keyed rate limits' quotas and classes while tasks run (the capacity stays as
    /// the engine started with it; an engine started without keyed limits refuses). A tracked
    /// key keeps its bucket and is judged by its class's new quota. Recorded in the audit trail.
    pub fn set_keyed_limits(&self, limits: &crate::policy::KeyedLimits) -> Result<(), Error> {
        let Some(keyed) = &self.sh.keyed else {
            return Err(Error::Config(
                "keyed limits: the engine started without them (engine.keyed_limits is read at the start)".into(),
            ));
        };
        limits.validate().map_err(Error::Config)?;
        let _w = self.writer();
        keyed.set(limits);
        drop(_w);
        let words = format!(
            "default {}/s, burst {}; {} classes",
            limits.default_per_s,
            limits.default_burst,
            limits.classes.len()
        );
        self.sh.audit().record("keyed_limits", "engine".into(), "-".into(), words);
        Ok(())
    }

    /// The adaptive throttle's limit now and its moves (None without one).
    pub fn adaptive_throttle(&self) -> Option<crate::policy::AdaptiveStats> {
        self.sh.adaptive.as_ref().map(|a| a.stats())
    }

    /// What the keyed rate limits counted, per quota class (None without keyed limits).
    pub fn keyed_stats(&self) -> Option<crate::policy::KeyedStats> {
        self.sh.keyed.as_ref().map(|k| k.stats())
    }

    /// Changes the admission rate limit while tasks run: `per_s` tasks per second sustained (0:
    /// no limit), bursts of up to `burst` (at least 1). From the next admission on; recorded in
    /// the audit trail.
    pub fn set_rate_limit(&self, per_s: f64, burst: f64) -> Result<(), Error> {
        if !(per_s.is_finite() && per_s >= 0.0) {
            return Err(Error::Config(format!("rate limit: per_s must be a number >= 0, got {per_s}")));
        }
        if per_s > 0.0 && !(burst.is_finite() && burst >= 1.0) {
            return Err(Error::Config(format!("rate limit: burst must be >= 1, got {burst}")));
        }
        let mut a = self.admission();
        (a.rate_limit_per_s, a.rate_limit_burst) = (per_s, burst);
        self.set_admission(&a)
    }

    /// The admission settings now: the throttle, its queue, the essential priority, the
    /// per-priority slot reserve and the rate limit, as the engine started with them or as
    /// [`set_admission`](Self::set_admission) last set them.
    pub fn admission(&self) -> crate::config::AdmissionConfig {
        let mut a = lock(&self.admission_setting).clone();
        if self.sh.adaptive.is_some() {
            // The adaptive throttle owns the limit: the one in force now.
            a.max_concurrent = self.sh.admission.max_concurrent() as usize;
        }
        a
    }

    /// Changes the admission settings while tasks run, from the next admission on: the
    /// concurrency throttle (`max_concurrent`, 0 for none; tasks already past it keep their
    /// place, and tasks waiting for it go on when it has room, at once when it is turned off),
    /// its queue per worker (tasks already queued stay), the essential priority of degraded
    /// mode, the slot reserve per priority, the rate limit, the cost budget and the queue
    /// timeout (tasks already waiting are held to the new one). Checked whole first (an error
    /// names the setting and changes nothing); each changed setting is an audit record.
    pub fn set_admission(&self, want: &crate::config::AdmissionConfig) -> Result<(), Error> {
        let check = EngineConfig { admission: want.clone(), ..self.sh.cfg.clone() };
        check.validate().map_err(Error::Config)?;
        let mut audit = self.sh.audit();
        let mut cur = lock(&self.admission_setting);
        let before = std::mem::replace(&mut *cur, want.clone());
        self.sh.admission.set(want, self.sh.cfg.max_in_flight);
        self.sh.rate.set(want.rate_limit_per_s, want.rate_limit_burst);
        self.sh.settings_changed();
        let rate = |a: &crate::config::AdmissionConfig| {
            if a.rate_limit_per_s > 0.0 {
                format!("{}/s, burst {}", a.rate_limit_per_s, a.rate_limit_burst)
            } else {
                "none".to_owned()
            }
        };
        let changes = [
            ("rate_limit", rate(&before), rate(want)),
            ("max_concurrent", before.max_concurrent.to_string(), want.max_concurrent.to_string()),
            ("queue_capacity", before.queue_capacity.to_string(), want.queue_capacity.to_string()),
            ("essential_priority", before.essential_priority.to_string(), want.essential_priority.to_string()),
            ("priority_reserve", format!("{:?}", before.priority_reserve), format!("{:?}", want.priority_reserve)),
            ("max_cost", before.max_cost.to_string(), want.max_cost.to_string()),
            ("min_cost", before.min_cost.to_string(), want.min_cost.to_string()),
            ("queue_timeout", format!("{:?}", before.queue_timeout), format!("{:?}", want.queue_timeout)),
        ];
        for (what, from, to) in changes {
            if from != to {
                audit.record(what, "admission".into(), from, to);
            }
        }
        Ok(())
    }

    /// Changes an agent's limit on attempts in flight while tasks run (both the old and the new
    /// limit at least 1: an agent started without a limit cannot get one, nor lose it). Attempts
    /// over a lowered limit finish; new ones wait for room. Recorded in the audit trail.
    pub fn set_agent_max_concurrency(&self, agent: crate::task::AgentId, limit: u32) -> Result<(), Error> {
        let a = usize::from(agent.0);
        self.live_agent(agent)?;
        let rt = &self.sh.agents[a];
        let mut audit = self.sh.audit();
        let before = rt.bulkhead.limit();
        rt.bulkhead.set_limit(limit).map_err(|m| Error::Config(format!("agent {}: {m}", self.sh.agent_path(a))))?;
        self.sh.settings_changed();
        audit.record(
            "max_concurrency",
            format!("agent {}", self.sh.agent_path(a)),
            before.to_string(),
            limit.to_string(),
        );
        Ok(())
    }

    /// Changes the breaker settings of one level while tasks run: every breaker of that level
    /// takes `cfg` (thresholds, window, open times, probes, and the mode, as
    /// [`set_breaker_mode`](Self::set_breaker_mode) would set it), and the level's time budget
    /// becomes `cfg.timeout`. Breakers keep their state: an open one stays open until its
    /// deadline, a run of failures counts toward the new threshold; a changed window starts
    /// over. Attempts and sub-tasks already running keep the budget they started with. Recorded
    /// in the audit trail.
    pub fn set_breaker_config(&self, level: Level, cfg: &BreakerConfig) -> Result<(), Error> {
        cfg.validate().map_err(|m| Error::Config(format!("breakers.{}: {m}", level_key(level))))?;
        let _w = self.writer(); // one reconfiguration at a time
        // Spare ids' breakers take the settings too, without events of their own.
        let spare = |all: &[Breaker], used: usize| {
            for b in &all[used..] {
                b.set_config(cfg);
                b.set_mode(cfg.mode);
            }
            used
        };
        let topo = self.sh.topo.load();
        let count = match level {
            Level::Meta => 1,
            Level::Domain => spare(&self.sh.domain_breakers, topo.domains.len()),
            Level::Agent => spare(&self.sh.agent_breakers, topo.agents.len()),
        };
        let before = self.sh.breaker(level, 0).map(|b| b.config());
        for i in 0..count {
            let b = self.sh.breaker(level, i).expect("index below the level's count");
            b.set_config(cfg);
            // Mode changes are events and audit records of their own.
            if b.mode() != cfg.mode {
                self.sh.set_mode(level, i, cfg.mode);
            }
        }
        self.sh.timeouts_ns[level as usize].store(cfg.timeout.as_nanos() as u64, Ordering::Relaxed);
        self.sh.settings_changed(); // the spare ids' modes
        drop(_w);
        self.sh.audit().record(
            "breaker_config",
            format!("{} breakers", level_key(level)),
            before.map(|c| settings_words(&c)).unwrap_or_default(),
            settings_words(cfg),
        );
        Ok(())
    }

    /// The breaker settings of one level now (those of its first breaker: a level's breakers
    /// share them).
    pub fn breaker_config(&self, level: Level) -> Option<BreakerConfig> {
        self.sh.breaker(level, 0).map(|b| b.config())
    }
}

/// A level's name as in the TOML file's `[breakers.LEVEL]` tables.
pub(super) fn level_key(level: Level) -> &'static str {
    match level {
        Level::Meta => "meta",
        Level::Domain => "domain",
        Level::Agent => "agent",
    }
}

/// The name of domain `d` of `topo`, refused if it does not exist or was removed.
fn live_domain_name(topo: &crate::topology::Topology, d: usize) -> Result<String, Error> {
    match topo.domains.get(d) {
        Some(def) if !def.removed => Ok(def.name.clone()),
        Some(def) => Err(Error::Config(format!("domain {} was removed", def.name))),
        None => Err(Error::Config(format!("domain id {d} does not exist"))),
    }
}

/// A domain's balance in a few words, for the audit trail.
fn balance_words(b: &crate::policy::Balance) -> String {
    match b {
        crate::policy::Balance::RoundRobin => b.name().into(),
        crate::policy::Balance::PeakEwma { decay, default_rtt } => {
            format!("{} (decay {decay:?}, default_rtt {default_rtt:?})", b.name())
        }
    }
}

/// Breaker settings in a few words, for the audit trail.
fn settings_words(c: &BreakerConfig) -> String {
    let window =
        if c.count_window > 0 { format!("the last {} calls", c.count_window) } else { format!("{:?}", c.window) };
    let slow = if c.slow_call_rate > 0.0 {
        format!(", slow_call_rate {} of calls over {:?}", c.slow_call_rate, c.slow_call_duration)
    } else {
        String::new()
    };
    format!(
        "timeout {:?}, consecutive_failures {}, failure_rate {}{slow} over {window} (min_calls {}), open {:?}..{:?}, probes {}, mode {:?}",
        c.timeout,
        c.consecutive_failures,
        c.failure_rate,
        c.min_calls,
        c.open_base,
        c.open_max,
        c.half_open_probes,
        c.mode
    )
}
