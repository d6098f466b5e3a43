//! The TOML file format (see `examples/topology.toml`): the `[engine]` table, the breakers of each
//! level, the domains and their agents; and the loaders of topologies and configurations from it.

use crate::breaker::BreakerConfig;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::policy::budget::RetryBudget;
use crate::policy::hedge::Hedge;
use crate::sim::SimAgent;
use crate::topology::{AgentKind, AgentSpec, Levels, Topology, TopologyBuilder};
use serde::Deserialize;
use std::path::Path;

impl Topology {
    /// Loads and builds a topology from a TOML file whose agents are all simulated.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        TopologyBuilder::from_file(path)?.build()
    }

    /// Parses and builds a topology from TOML text whose agents are all simulated.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        TopologyBuilder::from_toml(text)?.build()
    }
}

impl TopologyBuilder {
    /// Parses TOML text (see `examples/topology.toml` for the format). Agents with a `sim`
    /// table are simulated; agents without one must be bound ([`bind`](Self::bind)) before
    /// building.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let file: FileSpec = toml::from_str(text).map_err(toml_error)?;
        let mut b = TopologyBuilder::default();
        let levels = Levels::default();
        b.breakers = Levels {
            agent: overlay(levels.agent, file.breakers.agent, "breakers.agent")?,
            domain: overlay(levels.domain, file.breakers.domain, "breakers.domain")?,
            meta: overlay(levels.meta, file.breakers.meta, "breakers.meta")?,
        };
        b.meta_fault_rate = file.meta_fault_rate;
        b.classify = file.classify;
        // Alternates may name domains declared later: resolved once every domain exists.
        let mut alternates = Vec::new();
        for (i, d) in file.domains.into_iter().enumerate() {
            let at = |e: Error| e.context(&format!("domains[{i}]"));
            let id = b.domain(d.name).map_err(at)?;
            let def = &mut b.domains[usize::from(id.0)];
            def.fault_rate = d.fault_rate;
            def.max_attempts = d.max_attempts;
            def.hedge = d.hedge;
            def.retry_budget = d.retry_budget;
            def.balance = d.balance;
            def.outlier = d.outlier;
            def.shedding = d.shedding;
            alternates.push((id, d.alternates));
            for (j, a) in d.agents.into_iter().enumerate() {
                let kind = a.sim.map_or(AgentKind::Unbound, AgentKind::Sim);
                let spec = AgentSpec {
                    kind,
                    isolated: a.isolated || a.threads.is_some(),
                    threads: a.threads.unwrap_or(1),
                    max_concurrency: a.max_concurrency,
                    weight: a.weight,
                };
                b.agent(id, a.name, spec).map_err(|e| e.context(&format!("domains[{i}].agents[{j}]")))?;
            }
        }
        for (i, (id, names)) in alternates.into_iter().enumerate() {
            let ids = names
                .iter()
                .map(|n| {
                    b.domain_names().iter().position(|x| x == n).map(|k| crate::task::DomainId(k as u16)).ok_or_else(
                        || Error::topology(format!("alternates names {n:?}, which is not a domain of the file")),
                    )
                })
                .collect::<Result<Vec<_>, Error>>()
                .map_err(|e| e.context(&format!("domains[{i}]")))?;
            b.alternates(id, &ids).map_err(|e| e.context(&format!("domains[{i}]")))?;
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
        let file: FileSpec = toml::from_str(text).map_err(toml_error)?;
        file.engine.validate().map_err(Error::Config)?;
        Ok(file.engine)
    }
}

impl crate::classify::ClassifyConfig {
    /// The `[classify]` table of a TOML text (a topology file, or a text holding only that
    /// table; defaults where it is absent). Errors name the field.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct ClassifyOnly {
            #[serde(default)]
            classify: crate::classify::ClassifyConfig,
        }
        let file: ClassifyOnly = toml::from_str(text).map_err(toml_error)?;
        file.classify.validate().map_err(Error::Config)?;
        Ok(file.classify)
    }
}

/// A TOML error with its line, column and the offending text (toml's own rendering).
fn toml_error(err: toml::de::Error) -> Error {
    Error::Config(format!("TOML: {}", err.to_string().trim()))
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
    #[serde(default)]
    classify: crate::classify::ClassifyConfig,
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
    hedge: Option<Hedge>,
    retry_budget: Option<RetryBudget>,
    #[serde(default)]
    balance: crate::policy::Balance,
    outlier: Option<crate::policy::Outlier>,
    shedding: Option<crate::policy::Shedding>,
    #[serde(default)]
    alternates: Vec<String>,
    #[serde(default)]
    agents: Vec<AgentSpecFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSpecFile {
    name: String,
    #[serde(default)]
    isolated: bool,
    threads: Option<usize>,
    #[serde(default)]
    max_concurrency: u32,
    #[serde(default = "one")]
    weight: u32,
    sim: Option<SimAgent>,
}

fn one() -> u32 {
    1
}
