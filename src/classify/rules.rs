//! The default classifier: rules on a task's attributes and bytes, each adding domains and
//! weight to the complexity score, as the seed's decision engine extracts a task's domain
//! requirements by keywords; and the settings the engine applies after any classifier
//! (complexity bands, the key attribute). TOML's `[classify]` table.

use super::{Classification, Classifier, ClassifyError, TaskInfo};
use crate::task::{DomainId, DomainSet, LOWEST_PRIORITY};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The decision engine's settings: the default classifier's rules, and the bands and key
/// attribute that apply to whatever classifier the engine has.
///
/// ```toml
/// [classify]
/// base = 0.1              # every task's score starts here
/// key_attr = "tenant"     # a task without a key is keyed by this attribute
///
/// [[classify.rules]]
/// attr = "path"
/// prefix = "/api/"
/// domains = ["API"]
/// weight = 0.2
///
/// [[classify.rules]]
/// data_contains = "SELECT"
/// domains = ["Database"]
/// weight = 0.4
///
/// [[classify.bands]]      # the first band whose up_to is at or above the score applies
/// up_to = 0.3
/// priority = 0
/// deadline_ms = 50
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// The score every task starts with, 0 to 1.
    pub base: f32,
    /// The rules, all tried in order: every rule that matches adds its domains and its weight.
    pub rules: Vec<Rule>,
    /// Priority and deadline by complexity, for tasks whose classifier gave none.
    pub bands: Vec<Band>,
    /// The attribute that keys a task without a key for the keyed rate limits (hashed with
    /// [`key_of`](crate::policy::key_of), as C and Python keys are).
    pub key_attr: Option<String>,
}

/// One rule: its conditions (all must hold; a rule with none always matches) and what it adds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// The attribute a condition reads; with none of `equals`, `prefix` and `contains`, the
    /// condition is that the task has it.
    pub attr: Option<String>,
    /// The attribute's value is this.
    pub equals: Option<String>,
    /// The attribute's value starts with this.
    pub prefix: Option<String>,
    /// The attribute's value contains this.
    pub contains: Option<String>,
    /// The task's bytes start with these.
    pub data_prefix: Option<String>,
    /// The task's bytes contain these.
    pub data_contains: Option<String>,
    /// The domains the rule adds, by name.
    pub domains: Vec<String>,
    /// What the rule adds to the score (-1 to 1; the sum is clamped to [0, 1]).
    pub weight: f32,
}

impl Rule {
    /// A rule on an attribute's prefix.
    pub fn attr_prefix(attr: &str, prefix: &str, domains: &[&str], weight: f32) -> Self {
        Self {
            attr: Some(attr.into()),
            prefix: Some(prefix.into()),
            domains: domains.iter().map(|d| (*d).into()).collect(),
            weight,
            ..Self::default()
        }
    }

    /// A rule on an attribute's value.
    pub fn attr_equals(attr: &str, value: &str, domains: &[&str], weight: f32) -> Self {
        Self { prefix: None, equals: Some(value.into()), ..Self::attr_prefix(attr, "", domains, weight) }
    }

    /// A rule on a keyword in the task's bytes.
    pub fn data_contains(keyword: &str, domains: &[&str], weight: f32) -> Self {
        Self {
            data_contains: Some(keyword.into()),
            domains: domains.iter().map(|d| (*d).into()).collect(),
            weight,
            ..Self::default()
        }
    }
}

/// A band of complexity: tasks scoring at most `up_to` (and above the previous band's) get its
/// priority and deadline where their classifier gave none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// The band's upper bound, 0 to 1; bands are in increasing order.
    pub up_to: f32,
    /// The priority of its tasks (0 highest .. 3 lowest).
    #[serde(default)]
    pub priority: Option<u8>,
    /// The deadline of its tasks, from submission.
    #[serde(
        default,
        rename = "deadline_ms",
        with = "crate::duration::opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
}

impl ClassifyConfig {
    /// The seed report's extraction of the domains a request needs, as rules: an API path
    /// (`path` starting `/api/`) needs the API domain, a query in the bytes (`SELECT`) the
    /// Database, a `token` attribute Auth; a report (`op = report`) weighs more. Domains named
    /// as the seed's topology names them ([`Topology::seed`](crate::Topology::seed)).
    pub fn seed() -> Self {
        Self {
            base: 0.1,
            rules: vec![
                Rule::attr_prefix("path", "/api/", &["API"], 0.1),
                Rule::data_contains("SELECT", &["Database"], 0.2),
                Rule { attr: Some("token".into()), domains: vec!["Auth".into()], weight: 0.2, ..Rule::default() },
                Rule::attr_equals("op", "report", &[], 0.4),
            ],
            ..Self::default()
        }
    }

    /// Checks the settings that do not depend on the topology; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.base) {
            return Err(format!("classify.base must be 0 to 1, got {}", self.base));
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.validate().map_err(|e| format!("classify.rules[{i}]: {e}"))?;
        }
        let mut last = -1.0f32;
        for (i, b) in self.bands.iter().enumerate() {
            if !(0.0..=1.0).contains(&b.up_to) || b.up_to <= last {
                return Err(format!(
                    "classify.bands[{i}].up_to must be 0 to 1 and above the previous band's, got {}",
                    b.up_to
                ));
            }
            last = b.up_to;
            if let Some(p) = b.priority.filter(|&p| p > LOWEST_PRIORITY) {
                return Err(format!("classify.bands[{i}].priority must be 0 to 3, got {p}"));
            }
            if b.deadline == Some(Duration::ZERO) {
                return Err(format!("classify.bands[{i}].deadline_ms must be above 0"));
            }
        }
        if self.key_attr.as_deref() == Some("") {
            return Err("classify.key_attr must not be empty".into());
        }
        Ok(())
    }

    /// The band of a score.
    pub(crate) fn band(&self, score: f32) -> Option<&Band> {
        self.bands.iter().find(|b| score <= b.up_to)
    }
}

impl Rule {
    fn validate(&self) -> Result<(), String> {
        let tests = [&self.equals, &self.prefix, &self.contains].iter().filter(|t| t.is_some()).count();
        if tests > 1 {
            return Err("give at most one of equals, prefix and contains".into());
        }
        if tests == 1 && self.attr.is_none() {
            return Err("equals, prefix and contains test an attribute: name it with attr".into());
        }
        if self.attr.as_deref() == Some("") {
            return Err("attr must not be empty".into());
        }
        if !(-1.0..=1.0).contains(&self.weight) {
            return Err(format!("weight must be -1 to 1, got {}", self.weight));
        }
        if self.domains.is_empty() && self.weight == 0.0 {
            return Err("the rule adds nothing: give it domains or a weight".into());
        }
        Ok(())
    }
}

/// How a rule tests an attribute.
#[derive(Debug)]
enum Test {
    Present,
    Equals(String),
    Prefix(String),
    Contains(String),
}

#[derive(Debug)]
struct Compiled {
    attr: Option<(String, Test)>,
    data_prefix: Option<Vec<u8>>,
    data_contains: Option<Vec<u8>>,
    domains: DomainSet,
    weight: f32,
}

impl Compiled {
    fn matches(&self, task: &TaskInfo<'_>) -> bool {
        if let Some((name, test)) = &self.attr {
            let Some(v) = task.attrs.get(name) else { return false };
            let ok = match test {
                Test::Present => true,
                Test::Equals(s) => v == s,
                Test::Prefix(s) => v.starts_with(s.as_str()),
                Test::Contains(s) => v.contains(s.as_str()),
            };
            if !ok {
                return false;
            }
        }
        if let Some(p) = &self.data_prefix
            && !task.data.starts_with(p)
        {
            return false;
        }
        if let Some(k) = &self.data_contains
            && !contains(task.data, k)
        {
            return false;
        }
        true
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The rule-based classifier, its domain names resolved against a topology. Classifying
/// allocates nothing.
#[derive(Debug)]
pub struct Rules {
    base: f32,
    rules: Vec<Compiled>,
}

impl Rules {
    /// Compiles the rules of `cfg`, resolving domain names with `domain` (a topology's
    /// [`domain_id`](crate::Topology::domain_id)); errors name the rule and the field.
    pub fn new(cfg: &ClassifyConfig, domain: impl Fn(&str) -> Option<DomainId>) -> Result<Self, String> {
        cfg.validate()?;
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (i, r) in cfg.rules.iter().enumerate() {
            let mut domains = DomainSet::default();
            for (j, n) in r.domains.iter().enumerate() {
                let d = domain(n).ok_or_else(|| {
                    format!("classify.rules[{i}].domains[{j}] names {n:?}, which is not a domain of the topology")
                })?;
                domains = domains.with(d);
            }
            let test = match (&r.equals, &r.prefix, &r.contains) {
                (Some(s), _, _) => Test::Equals(s.clone()),
                (_, Some(s), _) => Test::Prefix(s.clone()),
                (_, _, Some(s)) => Test::Contains(s.clone()),
                _ => Test::Present,
            };
            rules.push(Compiled {
                attr: r.attr.clone().map(|a| (a, test)),
                data_prefix: r.data_prefix.as_ref().map(|s| s.as_bytes().to_vec()),
                data_contains: r.data_contains.as_ref().map(|s| s.as_bytes().to_vec()),
                domains,
                weight: r.weight,
            });
        }
        Ok(Self { base: cfg.base, rules })
    }

    /// Whether there are any rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Classifier for Rules {
    fn classify(&self, task: &TaskInfo<'_>) -> Result<Classification, ClassifyError> {
        let (mut domains, mut score) = (DomainSet::default(), self.base);
        for r in &self.rules {
            if r.matches(task) {
                domains.0 |= r.domains.0;
                score += r.weight;
            }
        }
        Ok(Classification::new(domains, score.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::AttrList;

    fn names(n: &str) -> Option<DomainId> {
        ["API", "Database", "Auth"].iter().position(|x| *x == n).map(|i| DomainId(i as u16))
    }

    fn seed() -> ClassifyConfig {
        ClassifyConfig {
            base: 0.1,
            rules: vec![
                Rule::attr_prefix("path", "/api/", &["API"], 0.2),
                Rule::data_contains("SELECT", &["Database"], 0.3),
                Rule { attr: Some("token".into()), domains: vec!["Auth".into()], weight: 0.2, ..Rule::default() },
            ],
            ..ClassifyConfig::default()
        }
    }

    fn info<'a>(attrs: &'a AttrList, data: &'a [u8]) -> TaskInfo<'a> {
        TaskInfo { id: 1, payload: 0, data, attrs: attrs.view(), key: 0, priority: 0 }
    }

    #[test]
    fn matching_rules_add_their_domains_and_weights() {
        let rules = Rules::new(&seed(), names).unwrap();
        let mut a = AttrList::new();
        a.push("path", "/api/orders").unwrap();
        a.push("token", "t").unwrap();
        let c = rules.classify(&info(&a, b"SELECT * FROM orders")).unwrap();
        assert_eq!(c.domains, DomainSet(0b111));
        assert!((c.complexity - 0.8).abs() < 1e-6);
        let none = AttrList::new();
        let c = rules.classify(&info(&none, b"ping")).unwrap();
        assert!(c.domains.is_empty());
        assert!((c.complexity - 0.1).abs() < 1e-6);
        a.clear();
        a.push("path", "/static/x").unwrap();
        assert!(rules.classify(&info(&a, b"")).unwrap().domains.is_empty());
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let mut cfg = seed();
        cfg.rules[1].domains = vec!["Cache".into()];
        assert!(Rules::new(&cfg, names).unwrap_err().contains("classify.rules[1].domains[0] names \"Cache\""));
        let mut cfg = seed();
        cfg.rules[0].equals = Some("/x".into());
        assert!(Rules::new(&cfg, names).unwrap_err().contains("classify.rules[0]: give at most one"));
        let mut cfg = seed();
        cfg.bands = vec![Band { up_to: 0.5, ..Band::default() }, Band { up_to: 0.4, ..Band::default() }];
        assert!(cfg.validate().unwrap_err().contains("classify.bands[1].up_to"));
        let mut cfg = seed();
        cfg.rules.push(Rule { prefix: Some("/".into()), domains: vec!["API".into()], ..Rule::default() });
        assert!(
            cfg.validate().unwrap_err().contains("classify.rules[3]: equals, prefix and contains test an attribute")
        );
    }

    #[test]
    fn bands_pick_the_first_at_or_above_the_score() {
        let cfg = ClassifyConfig {
            bands: vec![
                Band { up_to: 0.3, priority: Some(0), deadline: Some(Duration::from_millis(50)) },
                Band { up_to: 1.0, priority: Some(2), deadline: None },
            ],
            ..ClassifyConfig::default()
        };
        cfg.validate().unwrap();
        assert_eq!(cfg.band(0.3).unwrap().priority, Some(0));
        assert_eq!(cfg.band(0.31).unwrap().priority, Some(2));
        let text = "[[bands]]\nup_to = 0.3\npriority = 0\ndeadline_ms = 50\n";
        let parsed: ClassifyConfig = toml::from_str(text).unwrap();
        assert_eq!(parsed.bands[0].deadline, Some(Duration::from_millis(50)));
    }
}
