//! Durations in settings: the longest any may be, and their form in TOML and JSON (milliseconds).

use std::time::Duration;

/// The longest duration any setting may have (30 days): a timeout, an open time, a window, a
/// deadline. Longer ones are refused where they are given.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

pub(crate) mod ms {
    //! Durations as milliseconds in TOML and JSON.
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        let max = super::MAX_DURATION.as_secs_f64() * 1e3;
        if !(ms.is_finite() && (0.0..=max).contains(&ms)) {
            return Err(serde::de::Error::custom(format!("a duration in ms must be 0 to {max} (30 days), got {ms}")));
        }
        Ok(Duration::from_secs_f64(ms / 1e3))
    }
}

pub(crate) mod opt_ms {
    //! Optional durations as milliseconds in TOML and JSON (absent: `None`).
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::ms")] Duration);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}
