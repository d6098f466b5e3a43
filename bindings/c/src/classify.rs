//! ABI 1.5: the decision engine from C: a classifier callback, the `[classify]` rules as TOML,
//! and task attributes (`metafed_task.attrs`).

use crate::error::{FfiError, METAFED_E_CONFIG, METAFED_E_NULL, boundary, err, metafed_status};
use crate::handles::{metafed_engine, metafed_topology, with_builder, with_engine};
use crate::types::{metafed_attr, metafed_finalizer_fn};
use metafed_rs::DomainSet;
use metafed_rs::classify::{Classification, ClassifyConfig, ClassifyError, TaskInfo};
use std::ffi::{c_char, c_void};
use std::time::Duration;

/// A classifier's verdict: the task is classified (the engine reads `*out`).
pub const METAFED_CLASSIFY_OK: i32 = 0;
/// `metafed_classification.flags`: `priority` replaces the task's priority.
pub const METAFED_CLASSIFY_PRIORITY: u32 = 1;
/// `metafed_classification.flags`: `deadline_ns` is the task's deadline from submission.
pub const METAFED_CLASSIFY_DEADLINE: u32 = 2;
/// `metafed_classification.flags`: `key` keys a task that carries none.
pub const METAFED_CLASSIFY_KEY: u32 = 4;

/// What a classifier sees of a task (valid during the call only).
#[repr(C)]
pub struct metafed_classify_input {
    /// `sizeof(metafed_classify_input)` of the library.
    pub struct_size: u32,
    /// The priority it was submitted with.
    pub priority: u32,
    /// The caller's id.
    pub id: u64,
    /// The caller's payload value.
    pub payload: u64,
    /// Its bytes (NULL when `data_len` is 0).
    pub data: *const u8,
    /// Their length.
    pub data_len: usize,
    /// Its attributes, lengths given, strings not NUL-terminated (NULL when `attrs_len` is 0).
    pub attrs: *const metafed_attr,
    /// How many.
    pub attrs_len: usize,
    /// Its key (0: none).
    pub key: u64,
}

/// A classifier's verdict, which it fills. The library zeroes it and sets `struct_size` before
/// the call.
#[repr(C)]
pub struct metafed_classification {
    /// `sizeof(metafed_classification)` of the library.
    pub struct_size: u32,
    /// `METAFED_CLASSIFY_*` flags: which optional fields are set.
    pub flags: u32,
    /// The domains the task needs (bit `d` for domain id `d`; not 0).
    pub domains: u64,
    /// Its complexity, 0 to 1 (clamped).
    pub complexity: f64,
    /// With `METAFED_CLASSIFY_PRIORITY`: 0 (highest) to 3.
    pub priority: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// With `METAFED_CLASSIFY_DEADLINE`: nanoseconds from submission.
    pub deadline_ns: u64,
    /// With `METAFED_CLASSIFY_KEY`: its key for the keyed rate limits.
    pub key: u64,
}

/// A classifier: fills `*out` and returns `METAFED_CLASSIFY_OK`, or returns anything else to
/// refuse the task (it completes `METAFED_REASON_UNCLASSIFIED`; the value is logged). Called on
/// a worker thread, possibly from several at once.
pub type metafed_classify_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        task: *const metafed_classify_input,
        out: *mut metafed_classification,
    ) -> i32,
>;

struct CClassifier {
    f: unsafe extern "C" fn(*mut c_void, *const metafed_classify_input, *mut metafed_classification) -> i32,
    user_data: *mut c_void,
    finalizer: metafed_finalizer_fn,
    /// Set once the library kept it: a refused classifier is dropped without its finalizer (as
    /// a refused callback agent is), so the caller still owns `user_data`.
    kept: std::sync::atomic::AtomicBool,
}

// SAFETY: the C caller guarantees `f` and `user_data` may be used from the engine's threads
// (documented on `metafed_topology_set_classifier`).
unsafe impl Send for CClassifier {}
// SAFETY: as above.
unsafe impl Sync for CClassifier {}

impl metafed_rs::classify::Classifier for CClassifier {
    fn classify(&self, t: &TaskInfo<'_>) -> Result<Classification, ClassifyError> {
        let mut attrs = [metafed_attr { name: std::ptr::null(), name_len: 0, value: std::ptr::null(), value_len: 0 };
            crate::types::METAFED_MAX_ATTRS];
        let n = t.attrs.len().min(attrs.len());
        for (slot, (name, value)) in attrs.iter_mut().zip(t.attrs.iter()) {
            *slot = metafed_attr {
                name: name.as_ptr().cast::<c_char>(),
                name_len: name.len(),
                value: value.as_ptr().cast::<c_char>(),
                value_len: value.len(),
            };
        }
        let input = metafed_classify_input {
            struct_size: size_of::<metafed_classify_input>() as u32,
            priority: u32::from(t.priority),
            id: t.id,
            payload: t.payload,
            data: if t.data.is_empty() { std::ptr::null() } else { t.data.as_ptr() },
            data_len: t.data.len(),
            attrs: if n == 0 { std::ptr::null() } else { attrs.as_ptr() },
            attrs_len: n,
            key: t.key,
        };
        let mut out = metafed_classification {
            struct_size: size_of::<metafed_classification>() as u32,
            flags: 0,
            domains: 0,
            complexity: 0.0,
            priority: 0,
            reserved: 0,
            deadline_ns: 0,
            key: 0,
        };
        // SAFETY: the caller's classifier; both pointers are valid for the call.
        let rc = unsafe { (self.f)(self.user_data, &input, &mut out) };
        if rc != METAFED_CLASSIFY_OK {
            return Err(ClassifyError(format!("the C classifier returned {rc}")));
        }
        let flag = |f: u32| out.flags & f != 0;
        Ok(Classification {
            domains: DomainSet(out.domains),
            complexity: out.complexity as f32,
            priority: flag(METAFED_CLASSIFY_PRIORITY).then(|| out.priority.min(255) as u8),
            deadline: flag(METAFED_CLASSIFY_DEADLINE)
                .then(|| Duration::from_nanos(out.deadline_ns.min(crate::types::METAFED_MAX_DURATION_NS))),
            key: flag(METAFED_CLASSIFY_KEY).then_some(out.key),
        })
    }
}

impl Drop for CClassifier {
    fn drop(&mut self) {
        if let Some(fin) = self.finalizer.filter(|_| self.kept.load(std::sync::atomic::Ordering::Acquire)) {
            // SAFETY: the caller's finalizer, called once, when nothing can call `f` again.
            unsafe { fin(self.user_data) };
        }
    }
}

/// A classifier the topology and the caller share (the caller marks it kept once it is).
struct Shared(std::sync::Arc<CClassifier>);

impl metafed_rs::classify::Classifier for Shared {
    fn classify(&self, t: &TaskInfo<'_>) -> Result<Classification, ClassifyError> {
        self.0.classify(t)
    }
}

fn classifier(f: metafed_classify_fn, user_data: *mut c_void, finalizer: metafed_finalizer_fn) -> Option<CClassifier> {
    f.map(|f| CClassifier { f, user_data, finalizer, kept: std::sync::atomic::AtomicBool::new(false) })
}

/// The `[classify]` table of a TOML text (other tables are ignored: a topology file will do).
fn classify_toml(text: *const c_char) -> Result<ClassifyConfig, FfiError> {
    // SAFETY: a NUL-terminated string per the contract (NULL is refused).
    let text = unsafe { crate::convert::str_arg(text, "toml") }?;
    ClassifyConfig::from_toml(text).map_err(|e| err(METAFED_E_CONFIG, e.to_string()))
}

/// Gives the topology a classifier for tasks that name no domain (`metafed_task.domains` 0), in
/// place of rules: `f` is called with `user_data` from the engine's worker threads, possibly
/// from several at once, and `finalizer` (may be NULL) with `user_data` once `f` will never be
/// called again. NULL `f`: `METAFED_E_NULL`. The topology must have no `[classify]` rules
/// (bands and the key attribute still apply). On failure nothing is kept and `finalizer` is not
/// called.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_classifier(
    topology: *mut metafed_topology,
    f: metafed_classify_fn,
    user_data: *mut c_void,
    finalizer: metafed_finalizer_fn,
) -> metafed_status {
    boundary("metafed_topology_set_classifier", || {
        crate::convert::knows_abi_1_5();
        let c =
            std::sync::Arc::new(classifier(f, user_data, finalizer).ok_or_else(|| err(METAFED_E_NULL, "f is NULL"))?);
        let kept = c.clone();
        with_builder(topology, |b| {
            b.classifier(Shared(c));
            Ok(())
        })?;
        kept.kept.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    })
}

/// Sets the topology's decision-engine settings from TOML text holding a `[classify]` table
/// (rules, bands, key attribute, as in a topology file); rules name the topology's domains,
/// checked when the engine is made. `METAFED_E_CONFIG` names a bad field.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_topology_set_classify_toml(
    topology: *mut metafed_topology,
    toml: *const c_char,
) -> metafed_status {
    boundary("metafed_topology_set_classify_toml", || {
        crate::convert::knows_abi_1_5();
        let cfg = classify_toml(toml)?;
        with_builder(topology, |b| {
            b.classify(cfg);
            Ok(())
        })
    })
}

/// Installs a classifier while tasks run (arguments as `metafed_topology_set_classifier`), or
/// removes it with a NULL `f` (the rules classify again; without rules, tasks must name their
/// domains). `METAFED_E_CONFIG` while the engine has rules. On failure nothing is kept and
/// `finalizer` is not called. Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_classifier(
    engine: *mut metafed_engine,
    f: metafed_classify_fn,
    user_data: *mut c_void,
    finalizer: metafed_finalizer_fn,
) -> metafed_status {
    boundary("metafed_engine_set_classifier", || {
        crate::convert::knows_abi_1_5();
        let c = classifier(f, user_data, finalizer).map(std::sync::Arc::new);
        let kept = c.clone();
        with_engine(engine, |e| {
            Ok(e.set_classifier(c.map(|c| c as std::sync::Arc<dyn metafed_rs::classify::Classifier>))?)
        })?;
        if let Some(k) = kept {
            k.kept.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    })
}

/// Replaces the decision engine's settings while tasks run, from TOML text holding a
/// `[classify]` table (an empty text removes the rules). `METAFED_E_CONFIG` names a bad field
/// and changes nothing. Recorded in the audit trail.
#[unsafe(no_mangle)]
pub extern "C" fn metafed_engine_set_classify_toml(engine: *mut metafed_engine, toml: *const c_char) -> metafed_status {
    boundary("metafed_engine_set_classify_toml", || {
        crate::convert::knows_abi_1_5();
        let cfg = classify_toml(toml)?;
        with_engine(engine, |e| Ok(e.set_classify(&cfg)?))
    })
}
