//! The integration tests of the `metafed` library, as one binary (one link of the crate, one
//! process): a module per area. `cargo test -p metafed --test integration MODULE::` runs one.
//! The allocation check (`tests/alloc.rs`) is a binary of its own: it counts every allocation of
//! the process, which other tests running beside it would make.

mod common;

mod adaptive;
mod api;
mod balance;
mod breaker;
mod classify;
mod completion_queue;
mod deferred;
mod faults;
mod future_handler;
mod http;
mod keyed;
mod lean;
mod ops;
mod outlier;
mod overload;
mod queue;
mod reroute;
mod scheduling;
mod shedding;
mod simulation;
mod slots;
mod small_engine;
mod workloads;
