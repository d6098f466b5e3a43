//! # metafed
//!
//! A three-level meta-federation task engine. A meta orchestrator admits and decomposes tasks,
//! domain orchestrators route each sub-task to one of their redundant agents and fail over when
//! it fails, and circuit breakers at every level (agent, domain, meta) keep failures from
//! cascading. It runs on a fixed set of pinned worker threads; stages are actors, not threads,
//! and every hop that crosses threads goes through a lock-free ring.
//!
//! ```
//! use metafed::{Engine, EngineConfig, Task, Topology};
//!
//! let topology = Topology::seed(0.12)?; // the seed's 3 x 3, agents failing 12% of attempts
//! let engine = Engine::start(topology, EngineConfig::default())?;
//! let api = engine.topology().domain_id("API").unwrap();
//! let ticket = engine.try_submit(&Task::new(42, api).waitable())?;
//! let done = engine.wait(ticket, None)?;
//! assert!(done.is_ok()); // task 42 fails on no attempt at p = 0.12
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See the README for the architecture, the breakers' behaviour and the measurements.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Under loom only the primitives are built (the models exercise them); the rest is unused.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

mod attempt;
mod breaker;
mod buckets;
mod clock;
mod config;
mod counters;
mod duration;
mod error;
mod guard;
mod handler;
pub mod model;
#[cfg(not(loom))]
mod monitor;
mod park;
mod policy;
mod queue;
// The SPSC ring: tested, and a model under loom; no stage uses it yet.
#[cfg(any(loom, test))]
mod ring;
pub mod sim;
mod slab;
#[cfg(not(loom))]
mod stats;
mod sync;
mod task;
#[cfg(not(loom))]
mod toml_file;
mod topology;

#[cfg(not(loom))]
mod engine;
#[cfg(not(loom))]
mod events;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod ffi_support;
#[cfg(not(loom))]
mod isolated;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod stages;
mod timer;

pub use attempt::{Abandoned, Attempt};
pub use breaker::{
    Breaker, BreakerConfig, BreakerMode, BreakerSnapshot, BreakerState, Permit, Transition, TransitionCause,
};
pub use config::{AdmissionConfig, EngineConfig};
pub use duration::MAX_DURATION;
pub use error::{Error, SubmitError, WaitError, WouldDeadlock};
pub use handler::{DeferredHandler, Handler, OwnedRequest, Reply, Request};
pub use policy::budget::RetryBudget;
pub use policy::hedge::{Hedge, HedgeDelay};
pub use sim::{Latency, SimAgent, SimFault};
pub use task::{AgentId, AttemptFailure, Completion, DomainId, DomainSet, FailureKind, Reason, Status, Task, Ticket};
pub use task::{LOWEST_PRIORITY, MAX_AGENTS_PER_DOMAIN, MAX_DOMAINS, MAX_RECORDED_FAILURES};
pub use topology::{AgentKind, AgentSpec, ForeignAgent, Levels, SEED_DOMAINS, Topology, TopologyBuilder};
pub use topology::{MAX_AGENT_THREADS, MAX_NAME_LEN, MAX_WEIGHT};

#[cfg(not(loom))]
pub use engine::{Engine, EngineBuilder, Reload, ShutdownReport};
#[cfg(not(loom))]
pub use engine::{OpenLoop, Simulation};
#[cfg(not(loom))]
pub use events::{BreakerEvent, CompletionCallback, EngineEvent, EventListener, Level};
#[cfg(not(loom))]
pub use stats::{
    AgentStats, DomainStats, Health, HealthStatus, LatencySummary, MetaStats, RELIABILITY_MIN_SAMPLE,
    RELIABILITY_WINDOW, ReasonCount, ReliabilityWindow, Stats,
};
#[cfg(not(loom))]
pub use task::DOWN_CODE;

#[cfg(all(test, loom))]
mod loom_models;

#[cfg(not(loom))]
mod audit;
#[cfg(not(loom))]
pub use audit::{AUDIT_CAPACITY, ActorGuard, AuditRecord, MAX_ACTOR_LEN, act_as};
#[cfg(all(not(loom), feature = "admin"))]
mod admin;
#[cfg(all(not(loom), feature = "metrics"))]
mod metrics;
#[cfg(all(not(loom), feature = "admin"))]
pub use admin::{AdminOptions, DEFAULT_ADDR as DEFAULT_ADMIN_ADDR};
#[cfg(all(not(loom), feature = "metrics"))]
pub use metrics::EngineCollector;
/// The Prometheus client the metrics are encoded with (to register them with an application's
/// own registry).
#[cfg(all(not(loom), feature = "metrics"))]
pub use prometheus_client;

#[cfg(all(not(loom), feature = "tokio"))]
mod future_handler;
#[cfg(all(not(loom), feature = "tokio"))]
pub use future_handler::{IntoAnswer, future_handler};
