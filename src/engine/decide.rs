//! The decision engine's live settings: the rules, bands and key attribute, and a custom
//! classifier, changed while tasks run.

use super::Engine;
use crate::classify::{Classifier, ClassifyConfig, Custom, Decider};
use crate::error::Error;
use crate::sync::lock;

impl Engine {
    /// The decision engine's settings in force (see [`classify`](crate::classify)).
    pub fn classify_config(&self) -> ClassifyConfig {
        lock(&self.classify_setting).0.clone()
    }

    /// Whether tasks may name no domain: the engine has a custom classifier or rules.
    pub fn has_classifier(&self) -> bool {
        self.sh.decider.with(|d| d.is_some())
    }

    /// Replaces the decision engine's settings while tasks run: the rules (their domain names
    /// resolved against the running topology; a domain removed later makes a task classified
    /// into it `Unclassified`), the bands and the key attribute. Tasks already classified keep
    /// their verdict. Checked first (an error names the field and changes nothing); an audit
    /// record.
    pub fn set_classify(&self, cfg: &ClassifyConfig) -> Result<(), Error> {
        let mut audit = self.sh.audit();
        let mut cur = lock(&self.classify_setting);
        let decider = self.decider(cfg, cur.1.as_ref())?;
        let from = describe(&cur.0, cur.1.is_some());
        cur.0 = cfg.clone();
        let old = self.sh.decider.swap(decider);
        audit.record("classify", "meta".into(), from, describe(cfg, cur.1.is_some()));
        drop((cur, audit));
        drop(old); // a C or Python finalizer may call back into the engine: no lock held
        Ok(())
    }

    /// Installs a classifier of its own in place of the rules, or (`None`) removes it: the
    /// rules classify again, or, without rules, tasks must name their domains. An audit record.
    /// Refused while the settings have rules (set rules-free settings first).
    pub fn set_classifier(&self, classifier: Option<std::sync::Arc<dyn Classifier>>) -> Result<(), Error> {
        let mut audit = self.sh.audit();
        let mut cur = lock(&self.classify_setting);
        let custom = classifier.map(Custom);
        let decider = match self.decider(&cur.0, custom.as_ref()) {
            Ok(d) => d,
            Err(e) => {
                drop((cur, audit));
                drop(custom); // refused: dropped with no lock held
                return Err(e);
            }
        };
        let from = describe(&cur.0, cur.1.is_some());
        let old = std::mem::replace(&mut cur.1, custom);
        let old_decider = self.sh.decider.swap(decider);
        audit.record("classifier", "meta".into(), from, describe(&cur.0, cur.1.is_some()));
        drop((cur, audit));
        drop((old, old_decider)); // a C or Python finalizer may call back into the engine
        Ok(())
    }

    fn decider(&self, cfg: &ClassifyConfig, custom: Option<&Custom>) -> Result<Option<Decider>, Error> {
        let topo = self.sh.topo.load();
        Decider::new(cfg, custom, |n| topo.domain_id(n)).map_err(Error::Config)
    }
}

/// A one-line summary for the audit trail.
fn describe(cfg: &ClassifyConfig, custom: bool) -> String {
    format!(
        "{}, {} bands, key_attr {}",
        if custom { "custom classifier".to_string() } else { format!("{} rules", cfg.rules.len()) },
        cfg.bands.len(),
        cfg.key_attr.as_deref().unwrap_or("none")
    )
}
