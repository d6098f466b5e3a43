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
//! The crate root holds the engine ([`Engine`], [`EngineConfig`], [`Simulation`]), the tasks
//! ([`Task`], [`Completion`]), the topology ([`Topology`], [`AgentSpec`]), the handlers
//! ([`Handler`], [`DeferredHandler`], [`Attempt`]) and the errors. The rest sits in modules by
//! theme: [`breaker`], [`policy`] (hedging, retry budgets), [`stats`], [`events`], [`audit`],
//! [`sim`] (simulated agents and workloads), [`model`] (the reliability model), and with their
//! cargo features `metrics` (Prometheus) and `admin` (an HTTP endpoint).
//!
//! The README and `docs/` in the repository hold the architecture, the breakers' behaviour, the
//! C and Python interfaces and the measurements.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Under loom only the primitives are built (the models exercise them); the rest is unused.
#![cfg_attr(loom, allow(dead_code, unused_imports))]
// docs.rs (`--cfg docsrs`, nightly) marks what each cargo feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The Rust programs of the README and of docs/, compiled and run as doctests (`cargo test
// --doc`): what a newcomer copies works as printed.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/rust.md")]
struct DocsRustDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/simulate.md")]
struct DocsSimulateDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/architecture.md")]
struct DocsArchitectureDoctests;

// The public face: modules by theme.
#[cfg(all(not(loom), feature = "admin"))]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
#[cfg(not(loom))]
pub mod audit;
pub mod breaker;
pub mod classify;
#[cfg(not(loom))]
pub mod events;
#[cfg(all(not(loom), feature = "metrics"))]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod model;
pub mod policy;
pub mod sim;
#[cfg(not(loom))]
pub mod stats;

// What the C library needs beyond the Rust API (hidden; see the module).
#[cfg(not(loom))]
#[doc(hidden)]
pub mod ffi_support;

// The engine's parts, from the engine down to its primitives.
mod attempt;
#[cfg(not(loom))]
mod attempt_queue;
mod buckets;
mod clock;
#[cfg(not(loom))]
mod completion_queue;
mod completions;
mod config;
mod counters;
#[cfg(not(loom))]
mod doorbell;
mod duration;
#[cfg(not(loom))]
mod engine;
mod error;
#[cfg(all(not(loom), feature = "tokio"))]
mod future_handler;
mod guard;
mod handler;
mod ingress;
#[cfg(not(loom))]
mod isolated;
#[cfg(not(loom))]
mod monitor;
mod park;
mod queue;
mod ring;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod sink;
mod slab;
#[cfg(not(loom))]
mod stages;
mod sync;
mod task;
mod timer;
#[cfg(not(loom))]
mod toml_file;
mod topology;

#[cfg(all(test, loom))]
mod loom_models;

// The engine.
pub use config::{AdmissionConfig, EngineConfig};
pub use duration::MAX_DURATION;
#[cfg(not(loom))]
pub use engine::{Engine, EngineBuilder, OpenLoop, Reload, ShutdownReport, Simulation};
#[cfg(not(loom))]
pub use events::Level;

// Tasks and their outcomes.
pub use task::{AgentId, AttemptFailure, Completion, DomainId, DomainSet, FailureKind, Reason, Status, Task, Ticket};
pub use task::{DOWN_CODE, LOWEST_PRIORITY, MAX_AGENTS_PER_DOMAIN, MAX_DOMAINS, MAX_RECORDED_FAILURES};

// The topology.
pub use topology::{AgentKind, AgentSpec, ForeignAgent, Levels, SEED_DOMAINS, Topology, TopologyBuilder};
pub use topology::{MAX_AGENT_THREADS, MAX_NAME_LEN, MAX_WEIGHT};

// Handlers.
pub use attempt::{Abandoned, Attempt};
#[cfg(not(loom))]
pub use attempt_queue::{AttemptQueue, AttemptQueueStats, DEFAULT_QUEUE_CAPACITY, QueuedAttempt};
#[cfg(not(loom))]
pub use completion_queue::CompletionQueue;
#[cfg(all(not(loom), feature = "tokio"))]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use future_handler::{IntoAnswer, future_handler};
pub use handler::{DeferredHandler, Handler, OwnedRequest, Reply, Request};

// Errors.
pub use error::{Error, SubmitError, WaitError, WouldDeadlock};
