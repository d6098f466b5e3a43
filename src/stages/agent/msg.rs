//! The agent stage's messages: which attempt it runs ([`AttemptInfo`]) and how it ended
//! ([`Outcome`]), as the domain stage receives it.

use crate::breaker::Permit;
use crate::task::FailureKind;

/// One attempt: which agent, with which breaker permit, when, which number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptInfo {
    pub(crate) agent: u16,
    /// `Denied` once the permit has been used (reported or released).
    pub(crate) permit: Permit,
    pub(crate) started_ns: u64,
    pub(crate) number: u8,
    pub(crate) hedge: bool,
}

/// How an attempt ended, as the domain stage sees it (its reply bytes, if any, travel beside).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) failure: Option<FailureKind>,
    pub(crate) code: i32,
    pub(crate) value: u64,
    pub(crate) latency_ns: u64,
}

impl Outcome {
    #[inline]
    pub(crate) fn ok(value: u64, latency_ns: u64) -> Self {
        Self { failure: None, code: 0, value, latency_ns }
    }
    #[inline]
    pub(crate) fn failed(kind: FailureKind, code: i32, latency_ns: u64) -> Self {
        Self { failure: Some(kind), code, value: 0, latency_ns }
    }
}
