//! metafed's benchmarks, apart from the library: the peers a user would build instead of the
//! engine ([`peers`]), the closed-loop driver that runs the workloads of `WORKLOADS.md` against an
//! engine or a peer ([`driver`]), and W4's overload driver ([`overload`]). `metafed bench`,
//! `metafed overload`, `metafed simulate` and the criterion benches (`cargo bench -p
//! metafed-bench`) use them. Not published: it exists to measure the engine.

#![deny(missing_docs)]

pub mod driver;
pub mod overload;
pub mod peers;
