//! The generic cell rate algorithm's parameters, shared by the global rate limiter
//! ([`RateLimiter`](crate::policy::RateLimiter)) and the keyed limits' buckets.

/// (interval, tolerance) in nanoseconds for `per_s` tasks a second (0: no limit) and a burst of
/// `burst` tasks at once.
pub(crate) fn params(per_s: f64, burst: f64) -> (u64, u64) {
    let interval_ns = if per_s > 0.0 { (1e9 / per_s).max(1.0) as u64 } else { 0 };
    (interval_ns, (interval_ns as f64 * (burst - 1.0).max(0.0)) as u64)
}
