//! The policies the stages apply, each a small module with one idea: hedging a slow attempt
//! ([`Hedge`]), the retry budget ([`RetryBudget`]), how a domain chooses its agent ([`Balance`]:
//! round-robin or peak EWMA), outlier ejection ([`Outlier`]), adaptive shedding ([`Shedding`]),
//! rerouting to alternate domains (`reroute`), an agent's limit on attempts in flight (the
//! bulkhead), admission at the meta level and the routing snapshot. The first two are set per
//! domain ([`TopologyBuilder::hedge`](crate::TopologyBuilder::hedge),
//! [`TopologyBuilder::retry_budget`](crate::TopologyBuilder::retry_budget)).

pub use adaptive::{AdaptiveStats, AdaptiveThrottle, LimitAlgorithm};
pub use admission::RateLimiter;
pub use balance::Balance;
pub use budget::RetryBudget;
pub use hedge::{Hedge, HedgeDelay, MAX_HEDGES};
pub use keyed::{Key, KeyedLimiter, KeyedLimits, KeyedStats, QuotaClass, key_of};
pub use outlier::Outlier;
pub use reroute::MAX_ALTERNATES;
pub use shedding::Shedding;

pub(crate) mod adaptive;
pub(crate) mod admission;
pub(crate) mod balance;
pub(crate) mod budget;
pub(crate) mod bulkhead;
pub(crate) mod gcra;
pub(crate) mod hedge;
pub(crate) mod keyed;
pub(crate) mod outlier;
pub(crate) mod reroute;
pub(crate) mod routing;
pub(crate) mod shedding;
