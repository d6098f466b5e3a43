//! The decision engine on the worker: a task that named no domain is classified when its worker
//! admits it, before the meta breaker, the limits and the throttle see it (its priority, key and
//! cost come from the verdict). Out of line: a task that named its domains pays one test.

use crate::classify::{Classification, TaskInfo};
use crate::stages::worker::Worker;
use crate::sync::Ordering;
use crate::task::{Complexity, LOWEST_PRIORITY, Ticket};
use std::borrow::Cow;

/// Why a verdict was refused, for the counters and the log.
enum Refusal {
    NoClassifier,
    Failed(String),
    Panicked,
    NoDomain,
    Invalid(String),
}

impl Worker {
    /// Classifies the task in slot `t`, writes the verdict into its request (domains, priority,
    /// deadline, key) and its outcome record (domains, complexity). False when it could not be
    /// classified: the caller completes it as `Unclassified`.
    #[cold]
    #[inline(never)]
    pub(crate) fn classify(&mut self, t: Ticket) -> bool {
        let idx = t.slot();
        // SAFETY: we admitted the slot: its request is read-only but for the relaxed fields this
        // worker alone rewrites (see `slab::Field`).
        let req = unsafe { self.sh.slab.req(idx) };
        // SAFETY: as above.
        let extra = unsafe { self.sh.slab.extra(idx) };
        let verdict = self.sh.decider.with(|d| {
            let Some(d) = d else { return Err(Refusal::NoClassifier) };
            let info = TaskInfo {
                id: req.id,
                payload: req.payload,
                data: req.data(extra),
                attrs: extra.attrs.view(),
                key: req.key.get(),
                priority: req.priority.get(),
            };
            let c = match crate::handler::guarded(|| d.classifier.classify(&info)) {
                None => return Err(Refusal::Panicked),
                Some(Err(e)) => return Err(Refusal::Failed(e.0)),
                Some(Ok(c)) => c,
            };
            self.check(&c)?;
            let score = Complexity::new(c.complexity);
            let band = d.config.band(score.get());
            let key = c.key.or_else(|| {
                let attr = d.config.key_attr.as_deref()?;
                info.attrs.get(attr).map(crate::policy::key_of)
            });
            Ok((
                c.domains,
                score,
                c.priority.or(band.and_then(|b| b.priority)),
                c.deadline.or(band.and_then(|b| b.deadline)),
                key,
            ))
        });
        let ctr = &self.counters().classify;
        let (domains, score, priority, deadline, key) = match verdict {
            Ok(v) => v,
            Err(r) => {
                // Fixed causes borrow their text: a task that no rule matches allocates nothing.
                let (counter, why): (_, Cow<'static, str>) = match r {
                    Refusal::NoClassifier => (&ctr.no_classifier, "the engine has no classifier".into()),
                    Refusal::Failed(m) => (&ctr.failed, m.into()),
                    Refusal::Panicked => (&ctr.panicked, "the classifier panicked".into()),
                    Refusal::NoDomain => (&ctr.no_domain, "the classifier named no domain".into()),
                    Refusal::Invalid(m) => (&ctr.invalid, m.into()),
                };
                counter.inc();
                let id = req.id;
                crate::handler::guarded(
                    || tracing::debug!(target: "metafed::classify", task = id, reason = %why, "task not classified"),
                );
                return false;
            }
        };
        ctr.record(domains.0, score);
        req.domains.set(domains.0);
        if let Some(p) = priority {
            req.priority.set(p);
        }
        if let Some(d) = deadline {
            let at = req.submit_ns.saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64);
            req.deadline_ns.set(req.deadline_ns.get().min(at));
        }
        if let Some(k) = key
            && req.key.get() == 0
        {
            req.key.set(k);
        }
        // (`complete` writes the domains from the request.)
        // SAFETY: as above: the outcome record is ours until we finish the slot.
        unsafe { self.sh.slab.out(idx) }.complexity = score;
        true
    }

    /// A verdict's domains are live and not empty, its priority in range.
    fn check(&self, c: &Classification) -> Result<(), Refusal> {
        if c.domains.is_empty() {
            return Err(Refusal::NoDomain);
        }
        let unknown = c.domains.0 & !self.sh.live_domains.load(Ordering::Acquire);
        if unknown != 0 {
            return Err(Refusal::Invalid(format!(
                "the classifier named domain {}, which the topology does not have",
                unknown.trailing_zeros()
            )));
        }
        if let Some(p) = c.priority.filter(|&p| p > LOWEST_PRIORITY) {
            return Err(Refusal::Invalid(format!("the classifier gave priority {p} (0 highest .. 3 lowest)")));
        }
        Ok(())
    }
}
