//! The three stages a task passes through, in the order it meets them:
//!
//! ```text
//! caller -> ingress ring -> meta (admit, decompose) -> domain (choose agent) -> agent (run
//! handler) -> domain (fail over, or done) -> meta (join, complete) -> caller
//! ```
//!
//! A [`worker`] hosts a shard of every stage on one thread; each stage is an `impl Worker` block
//! in its own module, and the hops between them are the worker's local stage queues.

pub(crate) mod agent;
mod decide;
pub(crate) mod domain;
mod meta;
pub(crate) mod worker;
