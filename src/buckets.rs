//! The log-linear latency buckets the engine counts in: the stats' histograms and the hedging
//! windows share them.

/// Log-linear buckets: exact below 8, then 8 sub-buckets per power of two (12.5% wide, so a
/// reported percentile is within about 6% of the true value).
const SUB: u32 = 3;
pub(crate) const BUCKETS: usize = ((64 - SUB as usize) << SUB) + (1 << SUB);

#[inline]
pub(crate) fn index(v: u64) -> usize {
    if v < (1 << SUB) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    (((msb - SUB + 1) as usize) << SUB) + ((v >> (msb - SUB)) & ((1 << SUB) - 1)) as usize
}

/// The middle of bucket `i`.
pub(crate) fn value(i: usize) -> u64 {
    if i < (1 << SUB) {
        return i as u64;
    }
    let msb = (i >> SUB) as u32 + SUB - 1;
    let sub = (i & ((1 << SUB) - 1)) as u64;
    let width = 1u64 << (msb - SUB);
    (((1 << SUB) + sub) << (msb - SUB)) + width / 2
}

/// The largest value of bucket `i`: a percentile read as this is never below the values
/// counted up to it.
pub(crate) fn upper(i: usize) -> u64 {
    if i < (1 << SUB) {
        return i as u64;
    }
    let msb = (i >> SUB) as u32 + SUB - 1;
    let sub = (i & ((1 << SUB) - 1)) as u64;
    let width = 1u64 << (msb - SUB);
    (((1 << SUB) + sub) << (msb - SUB)) + width - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for i in 0..BUCKETS - 1 {
            let v = value(i);
            assert!(v >= last, "bucket {i}");
            assert_eq!(index(v), i, "value {v} maps back to bucket {i}");
            last = v;
        }
        for v in [9u64, 100, 1_000, 10_000, 123_456, 10_000_000_000] {
            let i = index(v);
            assert!(upper(i) >= v && (i + 1 == BUCKETS || upper(i) < value(i + 1)));
            assert_eq!(index(upper(i)), i, "{v}: the upper value stays in its bucket");
            let m = value(index(v));
            assert!((m as f64 - v as f64).abs() / v as f64 <= 0.0625, "{v} -> {m}");
        }
    }
}
