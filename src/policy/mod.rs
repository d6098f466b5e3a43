//! The policies the stages apply, each a small module with one idea: hedging a slow attempt
//! ([`hedge`]), the retry budget ([`budget`]), an agent's limit on attempts in flight
//! ([`bulkhead`]), admission at the meta level ([`admission`]) and the routing snapshot
//! ([`routing`]).

pub(crate) mod admission;
pub(crate) mod budget;
pub(crate) mod bulkhead;
pub(crate) mod hedge;
pub(crate) mod routing;
