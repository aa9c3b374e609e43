//! Wall-clock instants and human-readable durations.
//!
//! Broker expiries are wall-clock times and the daily cut-off needs a time zone, so the core counts time
//! in [`UnixMs`]: milliseconds since the Unix epoch, UTC. Durations are `std::time::Duration`; in policy
//! and scenario files they are written the way people say them (`"30s"`, `"5m"`, `"1h 30m"`, or ISO 8601
//! `"PT5M"`), parsed by [`parse_duration`] and printed back by [`format_duration`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A wall-clock instant: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct UnixMs(i64);

impl UnixMs {
    /// The epoch itself.
    pub const EPOCH: UnixMs = UnixMs(0);
    /// The latest representable instant; used as "never".
    pub const MAX: UnixMs = UnixMs(i64::MAX);

    /// An instant from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> UnixMs {
        UnixMs(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant plus `d`, saturating at [`UnixMs::MAX`].
    pub fn saturating_add(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_add(duration_ms(d)))
    }

    /// This instant minus `d`, saturating at `i64::MIN` milliseconds.
    pub fn saturating_sub(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_sub(duration_ms(d)))
    }

    /// How long after `earlier` this instant is; zero if it is not later.
    pub fn saturating_duration_since(self, earlier: UnixMs) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }

    /// The same instant as a jiff timestamp, if it lies in jiff's range (years -9999..=9999).
    pub fn to_timestamp(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_millisecond(self.0).ok()
    }

    /// The instant of a jiff timestamp, truncated to milliseconds.
    pub fn from_timestamp(ts: jiff::Timestamp) -> UnixMs {
        UnixMs(ts.as_millisecond())
    }
}

/// A duration in whole milliseconds as `i64`, saturating.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl fmt::Debug for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_timestamp() {
            Some(ts) if *self != UnixMs::MAX => write!(f, "{ts}"),
            _ => write!(f, "{}ms", self.0),
        }
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is not a duration jiff understands.
    #[error("`{text}` is not a duration (write it like \"30s\", \"5m\", \"1h 30m\" or \"PT5M\")")]
    Syntax {
        /// The text that was given.
        text: String,
    },
    /// The duration is negative.
    #[error("`{text}` is negative; durations here must be zero or more")]
    Negative {
        /// The text that was given.
        text: String,
    },
}

/// Reads a duration written as `"30s"`, `"5m"`, `"1h 30m"`, `"250ms"` or ISO 8601 (`"PT5M"`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let signed: jiff::SignedDuration =
        text.trim().parse().map_err(|_| DurationError::Syntax { text: text.to_owned() })?;
    Duration::try_from(signed).map_err(|_| DurationError::Negative { text: text.to_owned() })
}

/// Prints a duration the way [`parse_duration`] reads it: `"1h 30m"`, `"30s"`, `"250ms"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            parts.push(format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    parts.join(" ")
}

/// A duration that reads and writes as human text; the wire form of policy durations.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct HumanDuration(pub Duration);

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or \"1h 30m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!("a bare number ({v}) is ambiguous: write the unit, e.g. \"{v}s\" or \"{v}ms\"")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!("a bare number ({v}) is ambiguous: write the unit, e.g. \"{v}s\" or \"{v}ms\"")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_friendly_and_iso_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("PT5M").unwrap(), Duration::from_secs(300));
        assert!(matches!(parse_duration("soon"), Err(DurationError::Syntax { .. })));
        assert!(matches!(parse_duration("-5s"), Err(DurationError::Negative { .. })));
    }

    #[test]
    fn format_round_trips() {
        for d in [0, 1, 999, 1_000, 61_000, 3_600_000, 5_400_250, 90_061_001] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{}", format_duration(d));
        }
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = UnixMs::from_millis(1_000);
        assert_eq!(t.saturating_add(Duration::from_secs(1)), UnixMs::from_millis(2_000));
        assert_eq!(UnixMs::MAX.saturating_add(Duration::from_secs(1)), UnixMs::MAX);
        assert_eq!(t.saturating_duration_since(UnixMs::from_millis(5_000)), Duration::ZERO);
        assert_eq!(UnixMs::from_millis(0).to_string(), "1970-01-01T00:00:00Z");
    }
}
