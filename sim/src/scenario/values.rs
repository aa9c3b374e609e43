//! How single values are written in scenario files: durations with days, instants with a zone, times
//! of the scenario (`"+3h"`, `"11:42"`, an RFC 3339 instant), days of the week, probabilities.
//!
//! Each is a small type whose `Deserialize` checks the text, so a bad value fails inside toml's parser
//! and the error carries the value's position in the file.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use warden_engine::UnixMs;
use warden_engine::policy::LocalTime;

/// The key under which toml hands a TOML datetime to a visitor.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// How durations may be written, for error messages.
const DURATION_FORMS: &str = r#"write it like "90s", "20m", "120h", "5d" or "2 days 12h""#;

/// Reads a duration: everything [`warden_engine::time::parse_duration`] reads (`"30s"`, `"1h 30m"`,
/// `"PT5M"`) plus days, which jiff's `SignedDuration` refuses: `"5d"`, `"5 days"`, `"2d 12h"`, `"P5D"`.
/// A day here is exactly 24 hours (a scenario's `duration` is elapsed time, not calendar days).
pub fn parse_duration_with_days(text: &str) -> Result<Duration, String> {
    if let Ok(d) = warden_engine::time::parse_duration(text) {
        return Ok(d);
    }
    let bad = || format!("{text:?} is not a duration ({DURATION_FORMS})");
    let span: jiff::Span = text.trim().parse().map_err(|_| bad())?;
    let signed = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|_| bad())?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative; durations here must be zero or more"))
}

/// A duration with nothing finer than a millisecond (the simulator's resolution), or why not.
fn whole_millis(text: &str, d: Duration) -> Result<Duration, String> {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        Ok(d)
    } else {
        Err(format!("{text:?} is finer than a millisecond, the resolution of scenario times"))
    }
}

/// A duration as written in a scenario file (days allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanDuration(pub Duration);

impl<'de> Deserialize<'de> for SpanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpanDuration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SpanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration such as "30s", "20m", "120h" or "5d""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SpanDuration, E> {
                parse_duration_with_days(v).and_then(|d| whole_millis(v, d)).map(SpanDuration).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpanDuration, E> {
                Err(E::custom(format!("a bare number ({v}) is ambiguous: write the unit, e.g. \"{v}s\" or \"{v}ms\"")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An instant written with its zone or offset, and the zone it names.
#[derive(Clone, Debug, PartialEq)]
pub struct Instant {
    /// The instant.
    pub at: UnixMs,
    /// The IANA zone in brackets, or the fixed offset.
    pub zone: jiff::tz::TimeZone,
}

/// How instants may be written, for error messages.
const INSTANT_FORMS: &str = r#"write it like "2026-03-09T08:00:00+05:30[Asia/Kolkata]" or "2026-03-09T08:00:00+05:30""#;

/// Reads an RFC 3339 instant with an offset, optionally followed by an IANA zone in brackets (RFC 9557):
/// `"2026-03-09T08:00:00+05:30[Asia/Kolkata]"`, `"2026-03-09T02:30:00Z"`. A date and time without an
/// offset or zone is refused: it names no instant.
pub fn parse_instant(text: &str) -> Result<Instant, String> {
    let text = text.trim();
    if text.contains('[') {
        let zoned: jiff::Zoned = text.parse().map_err(|e: jiff::Error| {
            let detail = e.to_string();
            if detail.contains("time zone database") {
                let name = text.split('[').nth(1).unwrap_or("").trim_end_matches(']');
                format!("unknown time zone `{name}` in {text:?} (use an IANA name such as \"Asia/Kolkata\")")
            } else {
                format!("{text:?} is not a date and time with a zone ({INSTANT_FORMS})")
            }
        })?;
        let at = whole_millis_instant(text, zoned.timestamp())?;
        return Ok(Instant { at, zone: zoned.time_zone().clone() });
    }
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) => {
            let offset = jiff::fmt::temporal::Pieces::parse(text)
                .ok()
                .and_then(|pieces| pieces.offset())
                .map_or(jiff::tz::Offset::UTC, |offset| offset.to_numeric_offset());
            Ok(Instant { at: whole_millis_instant(text, ts)?, zone: jiff::tz::TimeZone::fixed(offset) })
        }
        Err(_) if text.parse::<jiff::civil::DateTime>().is_ok() => {
            Err(format!("{text:?} has no time zone or UTC offset, so it names no instant ({INSTANT_FORMS})"))
        }
        Err(_) => Err(format!("{text:?} is not a date and time ({INSTANT_FORMS})")),
    }
}

/// The instant of a timestamp with nothing finer than a millisecond, or why not.
fn whole_millis_instant(text: &str, ts: jiff::Timestamp) -> Result<UnixMs, String> {
    if ts.subsec_nanosecond() % 1_000_000 == 0 {
        Ok(UnixMs::from_timestamp(ts))
    } else {
        Err(format!("{text:?} is finer than a millisecond, the resolution of scenario times"))
    }
}

/// Text that may also be written as a bare TOML datetime (`start = 2026-03-09T08:00:00+05:30`).
fn visit_datetime_map<'de, M: de::MapAccess<'de>>(mut map: M) -> Result<String, M::Error> {
    match map.next_key::<String>()? {
        Some(key) if key == TOML_DATETIME_KEY => map.next_value::<String>(),
        _ => Err(de::Error::custom("expected a date and time, found a table")),
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Instant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date and time with an offset or zone")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Instant, E> {
                parse_instant(v).map_err(E::custom)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Instant, M::Error> {
                let text = visit_datetime_map(map)?;
                parse_instant(&text).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A time in a scenario, before it is placed on the run's calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// An instant (`"2026-03-10T11:42:00+05:30"`).
    At(UnixMs),
    /// A local time of day, repeated (`"11:42"`).
    Daily(LocalTime),
    /// This long after the scenario's start (`"+3h"`).
    AfterStart(Duration),
}

/// How scenario times may be written, for error messages.
const TIME_FORMS: &str = r#"write an instant like "2026-03-10T11:42:00+05:30", a local time of day like "11:42", or "+3h" for 3 hours after the start"#;

/// Reads a time of day to the millisecond: `"HH:MM"`, `"HH:MM:SS"` or `"HH:MM:SS.mmm"` (one to three
/// digits after the point).
pub fn parse_time_of_day(text: &str) -> Result<LocalTime, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a time of day (write \"03:00\", \"15:30:00\" or \"02:59:59.900\")");
    let (clock, millis) = match text.split_once('.') {
        Some((clock, fraction)) => {
            if fraction.is_empty() || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(if fraction.len() > 3 && fraction.bytes().all(|b| b.is_ascii_digit()) {
                    format!("`{text}` is finer than a millisecond, the resolution of scenario times")
                } else {
                    bad()
                });
            }
            let digits: i32 = fraction.parse().map_err(|_| bad())?;
            (clock, digits * 10i32.pow(3 - fraction.len() as u32))
        }
        None => (text, 0),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    if millis > 0 && parts.len() != 3 {
        return Err(bad());
    }
    let num = |p: &str| p.parse::<i8>().map_err(|_| bad());
    let (h, m) = (num(parts[0])?, num(parts[1])?);
    let sec = if parts.len() == 3 { num(parts[2])? } else { 0 };
    jiff::civil::Time::new(h, m, sec, millis * 1_000_000).map(LocalTime).map_err(|_| bad())
}

/// A time of day as printed in messages: `"09:15"`, `"15:30:05"`, `"02:59:59.900"`.
pub fn format_time_of_day(t: LocalTime) -> String {
    let ms = t.0.subsec_nanosecond() / 1_000_000;
    if ms == 0 { t.to_string() } else { format!("{:02}:{:02}:{:02}.{ms:03}", t.0.hour(), t.0.minute(), t.0.second()) }
}

/// A time of day as written in a scenario file, to the millisecond ([`parse_time_of_day`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DayTime(pub LocalTime);

impl<'de> Deserialize<'de> for DayTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DayTime, D::Error> {
        let text = String::deserialize(d)?;
        parse_time_of_day(&text).map(DayTime).map_err(de::Error::custom)
    }
}

/// Whether `text` is written as a time of day (digits, colons and a fraction: no date).
fn looks_like_time_of_day(text: &str) -> bool {
    text.contains(':') && text.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
}

/// Reads a scenario time: an instant, a local time of day, or `+duration` after the start, each to the
/// millisecond.
pub fn parse_time_spec(text: &str) -> Result<TimeSpec, String> {
    let text = text.trim();
    if let Some(after) = text.strip_prefix('+') {
        let after = after.trim();
        return parse_duration_with_days(after).and_then(|d| whole_millis(after, d)).map(TimeSpec::AfterStart);
    }
    if looks_like_time_of_day(text) {
        return parse_time_of_day(text).map(TimeSpec::Daily).map_err(|e| format!("{e}; {TIME_FORMS}"));
    }
    match parse_instant(text) {
        Ok(instant) => Ok(TimeSpec::At(instant.at)),
        Err(e) if e.contains("no time zone") || e.contains("unknown time zone") || e.contains("finer than") => Err(e),
        Err(_) => Err(format!("{text:?} is not a time ({TIME_FORMS})")),
    }
}

impl<'de> Deserialize<'de> for TimeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TimeSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimeSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a time: "2026-03-10T11:42:00+05:30", "11:42" or "+3h""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeSpec, E> {
                parse_time_spec(v).map_err(E::custom)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<TimeSpec, M::Error> {
                let text = visit_datetime_map(map)?;
                parse_time_spec(&text).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A day of the week: `"Mon"` or `"Monday"`, any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DayName(pub jiff::civil::Weekday);

/// The days, Monday first, with their short names.
pub(crate) const DAYS: [(jiff::civil::Weekday, &str); 7] = [
    (jiff::civil::Weekday::Monday, "Mon"),
    (jiff::civil::Weekday::Tuesday, "Tue"),
    (jiff::civil::Weekday::Wednesday, "Wed"),
    (jiff::civil::Weekday::Thursday, "Thu"),
    (jiff::civil::Weekday::Friday, "Fri"),
    (jiff::civil::Weekday::Saturday, "Sat"),
    (jiff::civil::Weekday::Sunday, "Sun"),
];

impl<'de> Deserialize<'de> for DayName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DayName, D::Error> {
        let text = String::deserialize(d)?;
        let lower = text.trim().to_ascii_lowercase();
        DAYS.iter()
            .find(|(day, short)| {
                lower == short.to_ascii_lowercase() || lower == format!("{day:?}").to_ascii_lowercase()
            })
            .map(|(day, _)| DayName(*day))
            .ok_or_else(|| de::Error::custom(format!("`{text}` is not a day of the week (write \"Mon\" … \"Sun\")")))
    }
}

/// A probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Probability(pub f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Probability, D::Error> {
        let p = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&p) {
            Ok(Probability(p))
        } else {
            Err(de::Error::custom(format!("{p} is not a probability (write a number from 0 to 1, e.g. 0.001)")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_days() {
        assert_eq!(parse_duration_with_days("120h").unwrap(), Duration::from_secs(120 * 3600));
        assert_eq!(parse_duration_with_days("5d").unwrap(), Duration::from_secs(5 * 86_400));
        assert_eq!(parse_duration_with_days("5 days").unwrap(), Duration::from_secs(5 * 86_400));
        assert_eq!(parse_duration_with_days("1 day").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration_with_days("2d 12h").unwrap(), Duration::from_secs(60 * 3600));
        assert_eq!(parse_duration_with_days("P5D").unwrap(), Duration::from_secs(5 * 86_400));
        assert_eq!(parse_duration_with_days("90s").unwrap(), Duration::from_secs(90));
        let e = parse_duration_with_days("5 dayz").unwrap_err();
        assert!(e.starts_with("\"5 dayz\" is not a duration"), "{e}");
        assert!(parse_duration_with_days("1 month").is_err());
        assert!(parse_duration_with_days("-5d").is_err());
    }

    #[test]
    fn instants_need_a_zone_or_offset() {
        let zoned = parse_instant("2026-03-09T08:00:00+05:30[Asia/Kolkata]").unwrap();
        assert_eq!(zoned.at.to_string(), "2026-03-09T02:30:00Z");
        assert_eq!(zoned.zone.iana_name(), Some("Asia/Kolkata"));
        let fixed = parse_instant("2026-03-09T08:00:00+05:30").unwrap();
        assert_eq!(fixed.at, zoned.at);
        assert!(parse_instant("2026-03-09T08:00:00").unwrap_err().contains("no time zone or UTC offset"));
        assert!(parse_instant("2026-03-09T08:00:00+05:30[Asia/Kolkatta]").unwrap_err().contains("unknown time zone"));
        assert!(parse_instant("soon").unwrap_err().contains("is not a date and time"));
        assert_eq!(parse_instant("2026-03-09T02:59:59.9Z").unwrap().at.to_string(), "2026-03-09T02:59:59.9Z");
        assert!(parse_instant("2026-03-09T02:59:59.0001Z").unwrap_err().contains("finer than a millisecond"));
    }

    #[test]
    fn times_of_day_to_the_millisecond() {
        let t = parse_time_of_day("02:59:59.9").unwrap();
        assert_eq!(format_time_of_day(t), "02:59:59.900");
        assert_eq!(format_time_of_day(parse_time_of_day("09:15").unwrap()), "09:15");
        assert_eq!(format_time_of_day(parse_time_of_day("09:15:07.045").unwrap()), "09:15:07.045");
        assert!(parse_time_of_day("09:15.500").is_err(), "a fraction needs seconds");
        assert!(parse_time_of_day("9:15").is_err());
        assert!(parse_time_of_day("09:15:60").is_err());
        assert!(parse_time_of_day("09:15:00.").is_err());
    }

    #[test]
    fn time_specs() {
        assert_eq!(parse_time_spec("+3h").unwrap(), TimeSpec::AfterStart(Duration::from_secs(10_800)));
        assert_eq!(parse_time_spec("11:42").unwrap(), TimeSpec::Daily("11:42".parse().unwrap()));
        assert!(matches!(parse_time_spec("2026-03-10T11:42:00Z").unwrap(), TimeSpec::At(_)));
        assert!(parse_time_spec("25:00").unwrap_err().contains("not a time of day"));
        let ms = parse_time_spec("02:59:59.900").unwrap();
        assert_eq!(ms, TimeSpec::Daily(LocalTime(jiff::civil::Time::new(2, 59, 59, 900_000_000).unwrap())));
        assert_eq!(parse_time_spec("+1h 250ms").unwrap(), TimeSpec::AfterStart(Duration::from_millis(3_600_250)));
        assert!(parse_time_spec("+1.5ms").unwrap_err().contains("finer than a millisecond"));
        assert!(parse_time_spec("02:59:59.9001").unwrap_err().contains("finer than a millisecond"));
        assert!(parse_time_spec("tomorrow").unwrap_err().contains("is not a time"));
    }
}
