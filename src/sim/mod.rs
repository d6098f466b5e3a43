//! Simulated agents and the failure oracle of `WORKLOADS.md`, and the workloads as data.
//!
//! - [`SimAgent`] (with [`Latency`] and [`SimFault`]) is an agent whose every answer follows the
//!   oracle: the engine, the benchmark peers and the reliability model see the same failures, so
//!   their counts can be compared exactly;
//! - [`Load`], [`Workload`], [`RunReport`], [`Percentiles`] and [`LatencyHistogram`] describe a run
//!   and what it observed;
//!
//! [`Simulation`](crate::Simulation) runs the real engine on them on a virtual clock, on one
//! thread, in a fixed order ([`EngineBuilder::simulate`](crate::EngineBuilder::simulate)).

mod agent;
mod load;

pub use agent::*;
pub use load::{LatencyHistogram, Load, Percentiles, RunReport, Workload};
