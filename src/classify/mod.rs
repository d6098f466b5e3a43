//! The decision engine of the meta level: a task that comes with no domain set is classified on
//! its worker, before admission, into the domains it needs, a complexity score in [0, 1] and
//! optionally a priority, a deadline and a key.
//!
//! A classifier is a [`Classifier`]: the rule-based default ([`Rules`], configured in TOML's
//! `[classify]` table), a Rust implementation, a C callback or a Python callable. Whichever it
//! is, the engine then applies the [`ClassifyConfig`]'s complexity bands (a priority and a
//! deadline by score, where the classifier gave none) and its key attribute (the keyed rate
//! limits' key from an attribute such as a tenant, where the task carries no key).
//!
//! The score is the task's cost at admission when [`AdmissionConfig::max_cost`] is set (a
//! concurrency budget in complexity units), it is on every [`Completion`], and its distribution
//! per domain set is in [`Stats::classify`](crate::stats::Stats::classify) and the metrics.
//!
//! A classifier that returns an error, panics, names no domain, names a domain the topology does
//! not have or a priority out of range completes the task `Rejected` with
//! [`Reason::Unclassified`]; the cause is counted in [`ClassifyStats`] and logged.
//!
//! ```
//! use metafed::classify::{ClassifyConfig, Rule};
//! use metafed::{Engine, EngineConfig, Task, Topology};
//!
//! let mut b = Topology::builder();
//! let api = b.domain("API")?;
//! b.agent(api, "REST", metafed::AgentSpec::handler(|_: &metafed::Request<'_>| Ok(1)))?;
//! b.classify(ClassifyConfig {
//!     rules: vec![Rule::attr_prefix("path", "/api/", &["API"], 0.3)],
//!     ..ClassifyConfig::default()
//! });
//! let engine = Engine::builder(b.build()?).config(EngineConfig::default()).start()?;
//! let attrs = [("path", "/api/users")];
//! let t = engine.submit(&Task::classified(7).attrs(&attrs).waitable(), None)?;
//! let c = engine.wait(t, None)?;
//! assert!(c.is_ok());
//! assert_eq!(c.complexity.get(), 0.3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`AdmissionConfig::max_cost`]: crate::AdmissionConfig::max_cost
//! [`Completion`]: crate::Completion
//! [`Reason::Unclassified`]: crate::Reason::Unclassified

mod attrs;
mod rules;

pub use attrs::check as check_attrs;
pub use attrs::{AttrError, AttrList, Attrs, MAX_ATTR_NAME, MAX_ATTR_VALUE, MAX_ATTRS};
pub use rules::{Band, ClassifyConfig, Rule, Rules};

pub use crate::task::Complexity;
use crate::task::DomainSet;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// What a classifier sees of a task: borrowed from the task's slot, valid for the call.
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo<'a> {
    /// The caller's id.
    pub id: u64,
    /// The caller's payload value.
    pub payload: u64,
    /// The task's bytes.
    pub data: &'a [u8],
    /// The task's attributes.
    pub attrs: Attrs<'a>,
    /// The task's key for the keyed rate limits (0: none).
    pub key: u64,
    /// The priority the task was submitted with.
    pub priority: u8,
}

/// A classifier's verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Classification {
    /// The domains the task needs (not empty).
    pub domains: DomainSet,
    /// How demanding the task is, from 0 to 1 (clamped; NaN counts as 0).
    pub complexity: f32,
    /// A priority (0 highest .. 3 lowest) in place of the one submitted; `None` keeps it, or
    /// takes the complexity band's.
    pub priority: Option<u8>,
    /// A deadline from submission; the task's own and the meta timeout still apply when
    /// shorter. `None`: the complexity band's, if any.
    pub deadline: Option<Duration>,
    /// A key for the keyed rate limits, for a task that carries none.
    pub key: Option<u64>,
}

impl Classification {
    /// Domains and a score; no priority, deadline or key of its own.
    pub fn new(domains: DomainSet, complexity: f32) -> Self {
        Self { domains, complexity, ..Self::default() }
    }
}

/// Why a classifier could not classify a task (logged with the task's id; the task completes
/// with [`Reason::Unclassified`](crate::Reason::Unclassified)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifyError(pub String);

impl fmt::Display for ClassifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClassifyError {}

/// Maps a task that named no domain to the domains it needs and its complexity. Called on the
/// worker that admits the task, once per such task; it must not block for long (the worker
/// admits and routes other tasks meanwhile). A panic is caught and rejects the task.
pub trait Classifier: Send + Sync + 'static {
    /// Classifies one task.
    fn classify(&self, task: &TaskInfo<'_>) -> Result<Classification, ClassifyError>;
}

impl<F> Classifier for F
where
    F: Fn(&TaskInfo<'_>) -> Result<Classification, ClassifyError> + Send + Sync + 'static,
{
    fn classify(&self, task: &TaskInfo<'_>) -> Result<Classification, ClassifyError> {
        self(task)
    }
}

/// How many buckets [`ComplexityHistogram`] has: tenths of the score, `(k / 10, (k + 1) / 10]`.
pub const COMPLEXITY_BUCKETS: usize = 10;

/// Classified tasks of one domain set by complexity.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ComplexityHistogram {
    /// The domain set (`DomainSet(u64::MAX)`: every set past the first
    /// [`MAX_TRACKED_SETS`] a worker saw, together).
    pub domains: DomainSet,
    /// Tasks whose score is in `(k / 10, (k + 1) / 10]` (the first bucket includes 0), as
    /// Prometheus's `le` bounds count them.
    pub buckets: [u64; COMPLEXITY_BUCKETS],
    /// The sum of their scores.
    pub sum: f64,
}

impl ComplexityHistogram {
    /// How many tasks.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
    /// Their mean score (0 with none).
    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 { 0.0 } else { self.sum / n as f64 }
    }
}

/// The distinct domain sets whose complexity each worker tracks apart; the others share one
/// histogram (memory stays bounded whatever the classifier returns).
pub const MAX_TRACKED_SETS: usize = 64;

/// The decision engine's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassifyStats {
    /// Tasks a classifier classified.
    pub classified: u64,
    /// Tasks the classifier refused (it returned an error).
    pub failed: u64,
    /// Tasks whose (Rust) classifier panicked. A C classifier's non-zero return and a Python
    /// classifier's exception count as `failed`.
    pub panicked: u64,
    /// Tasks classified into no domain.
    pub no_domain: u64,
    /// Tasks classified into a domain the topology does not have, or a priority out of range.
    pub invalid: u64,
    /// Tasks that named no domain while the engine had no classifier.
    pub no_classifier: u64,
    /// Classified tasks' complexity by domain set.
    pub complexity: Vec<ComplexityHistogram>,
}

impl ClassifyStats {
    /// Tasks rejected as [`Reason::Unclassified`](crate::Reason::Unclassified).
    pub fn unclassified(&self) -> u64 {
        self.failed + self.panicked + self.no_domain + self.invalid + self.no_classifier
    }
}

/// The bucket of a score: `(k / 10, (k + 1) / 10]`, 0 in the first.
pub(crate) fn bucket_of(c: Complexity) -> usize {
    (usize::from(c.units()) * COMPLEXITY_BUCKETS).div_ceil(usize::from(Complexity::SCALE)).saturating_sub(1)
}

/// A classifier as the topology keeps it.
#[derive(Clone)]
pub(crate) struct Custom(pub(crate) std::sync::Arc<dyn Classifier>);

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Custom(..)")
    }
}

/// What the engine classifies with: the classifier and the settings applied after it.
pub(crate) struct Decider {
    pub(crate) classifier: std::sync::Arc<dyn Classifier>,
    pub(crate) config: ClassifyConfig,
}

impl Decider {
    /// The decider of a configuration and an optional custom classifier (`None`: neither a
    /// custom classifier nor rules, so tasks must name their domains).
    pub(crate) fn new(
        cfg: &ClassifyConfig,
        custom: Option<&Custom>,
        domain: impl Fn(&str) -> Option<crate::task::DomainId>,
    ) -> Result<Option<Self>, String> {
        cfg.validate()?;
        let classifier: std::sync::Arc<dyn Classifier> = match custom {
            Some(_) if !cfg.rules.is_empty() => {
                return Err("classify.rules and a custom classifier are both given: the engine uses one".into());
            }
            Some(c) => c.0.clone(),
            None => {
                let rules = Rules::new(cfg, domain)?;
                if rules.is_empty() {
                    return Ok(None);
                }
                std::sync::Arc::new(rules)
            }
        };
        Ok(Some(Self { classifier, config: cfg.clone() }))
    }
}
