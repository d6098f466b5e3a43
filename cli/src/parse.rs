//! Parsers of the command line's numbers, with messages that name the rule.

/// A count argument of at least `MIN`, with a message that names the rule (a negative number is
/// a bad value, not an unknown option).
pub fn parse_count<const MIN: u64>(s: &str) -> Result<u64, String> {
    match s.trim().replace('_', "").parse::<i128>() {
        Ok(v) if v >= i128::from(MIN) && v <= i128::from(u64::MAX) => Ok(v as u64),
        Ok(v) => Err(format!("must be at least {MIN}, got {v}")),
        Err(_) => Err(format!("must be a whole number of at least {MIN}, got {s:?}")),
    }
}

/// A worker count: 0 (one per core) to 1,024.
pub fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i64>() {
        Ok(v) if (0..=1024).contains(&v) => Ok(v as usize),
        _ => Err(format!("must be 0 (one per core) to 1024, got {s:?}")),
    }
}
