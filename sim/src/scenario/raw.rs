//! The scenario file as written: serde structs with `deny_unknown_fields` everywhere, before any value
//! is checked against another or placed on the calendar (that is [`super::resolve`]'s job).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, Visitor};
use warden_engine::policy::PolicyFile;
use warden_engine::policy::{LocalTime, Toggle, Zone};

use super::values::{DayName, Instant, Probability, SpanDuration, TimeSpec};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    pub start: Instant,
    pub duration: Option<SpanDuration>,
    pub end: Option<Instant>,
    pub broker: RawBroker,
    #[serde(default)]
    pub policy: PolicyFile,
    #[serde(default)]
    pub workload: RawWorkload,
    #[serde(default)]
    pub faults: RawFaults,
    #[serde(default)]
    pub expect: BTreeMap<String, RawBound>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    pub model: String,
    pub tz: Option<Zone>,
    pub token_lifetime: Option<SpanDuration>,
    pub token_expires_at: Option<LocalTime>,
    pub refresh_lifetime: Option<Toggle<SpanDuration>>,
    pub early_expiries: Option<Vec<TimeSpec>>,
    pub early_expiry_rate_per_day: Option<f64>,
    pub silent_deauths: Option<Vec<TimeSpec>>,
    pub silent_deauth_rate_per_day: Option<f64>,
    pub competing_logins: Option<Vec<TimeSpec>>,
    pub idle_timeout: Option<Toggle<SpanDuration>>,
    pub keepalive_required: Option<bool>,
    pub login_revokes_previous: Option<bool>,
    pub daily_reset: Option<Toggle<RawReset>>,
    pub weekly_reset: Option<Toggle<RawWeeklyReset>>,
    pub login_latency: Option<RawLatency>,
    pub refresh_latency: Option<RawLatency>,
    pub keepalive_latency: Option<RawLatency>,
    pub request_latency: Option<RawLatency>,
    pub errors: Option<RawErrors>,
    pub login_limits: Option<Vec<RawLimit>>,
    pub login_penalty: Option<Toggle<SpanDuration>>,
    pub request_limits: Option<Vec<RawLimit>>,
    pub request_penalty: Option<Toggle<SpanDuration>>,
    #[serde(default)]
    pub outages: Vec<RawOutage>,
    pub wrong_credentials: Option<Windows>,
    pub second_factor: Option<Windows>,
    pub lockout: Option<Toggle<RawLockout>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReset {
    pub at: LocalTime,
    pub tz: Option<Zone>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeeklyReset {
    pub day: DayName,
    pub at: LocalTime,
    pub tz: Option<Zone>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLatency {
    pub fixed: Option<SpanDuration>,
    pub min: Option<SpanDuration>,
    pub max: Option<SpanDuration>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawErrors {
    pub login: Option<Probability>,
    pub refresh: Option<Probability>,
    pub keepalive: Option<Probability>,
    pub request: Option<Probability>,
    pub response_lost: Option<Probability>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub max: u32,
    pub per: SpanDuration,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AffectName {
    Login,
    Refresh,
    Keepalive,
    Requests,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutage {
    pub from: TimeSpec,
    pub to: TimeSpec,
    pub affects: Option<Vec<AffectName>>,
    pub hang: Option<SpanDuration>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    pub from: TimeSpec,
    pub to: TimeSpec,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLockout {
    pub after: u32,
    #[serde(rename = "for")]
    pub duration: SpanDuration,
}

/// `"always"`, one `{ from, to }` table, or a list of them.
#[derive(Debug)]
pub(crate) enum Windows {
    Always,
    List(Vec<RawWindow>),
}

impl<'de> Deserialize<'de> for Windows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Windows, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Windows;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""always", false, or a list of { from, to } periods"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Windows, E> {
                match v {
                    "always" => Ok(Windows::Always),
                    "never" | "off" => Ok(Windows::List(Vec::new())),
                    _ => Err(E::custom(format!(r#"`{v}`: write "always", or a list of {{ from, to }} periods"#))),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Windows, E> {
                Ok(if v { Windows::Always } else { Windows::List(Vec::new()) })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Windows, A::Error> {
                Vec::<RawWindow>::deserialize(SeqAccessDeserializer::new(seq)).map(Windows::List)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Windows, M::Error> {
                RawWindow::deserialize(MapAccessDeserializer::new(map)).map(|w| Windows::List(vec![w]))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    #[serde(default)]
    pub strategies: u32,
    pub rate_per_strategy: Option<f64>,
    pub arrival: Option<ArrivalName>,
    #[serde(default)]
    pub mix: Vec<RawMix>,
    pub market_hours: Option<RawMarketHours>,
    pub trading_days: Option<Vec<DayName>>,
    pub sessions: Option<u32>,
    pub hosts: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArrivalName {
    Poisson,
    Periodic,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMix {
    pub kind: String,
    pub idempotent: bool,
    pub weight: Option<f64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMarketHours {
    pub open: Option<LocalTime>,
    pub close: Option<LocalTime>,
    pub tz: Option<Zone>,
    pub always: Option<bool>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFaults {
    #[serde(default)]
    pub panics: Vec<PanicEntry>,
    #[serde(default)]
    pub restarts: Vec<RestartEntry>,
    #[serde(default)]
    pub store_write_failures: Vec<RawWindow>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPanicLoop {
    pub from: TimeSpec,
    pub count: u32,
    pub every: Option<SpanDuration>,
    pub session: Option<u32>,
}

/// `"+3h"` or `{ from, count, every, session }`.
#[derive(Debug)]
pub(crate) enum PanicEntry {
    At(TimeSpec),
    Loop(RawPanicLoop),
}

impl<'de> Deserialize<'de> for PanicEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PanicEntry, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PanicEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a time ("+3h") or a panic loop { from, count, every }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PanicEntry, E> {
                super::values::parse_time_spec(v).map(PanicEntry::At).map_err(E::custom)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<PanicEntry, M::Error> {
                RawPanicLoop::deserialize(MapAccessDeserializer::new(map)).map(PanicEntry::Loop)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub at: TimeSpec,
    pub downtime: Option<SpanDuration>,
}

/// `"+3h"` or `{ at, downtime }`.
#[derive(Debug)]
pub(crate) enum RestartEntry {
    At(TimeSpec),
    Table(RawRestart),
}

impl<'de> Deserialize<'de> for RestartEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RestartEntry, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RestartEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a time ("+3h") or { at, downtime }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RestartEntry, E> {
                super::values::parse_time_spec(v).map(RestartEntry::At).map_err(E::custom)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<RestartEntry, M::Error> {
                RawRestart::deserialize(MapAccessDeserializer::new(map)).map(RestartEntry::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// `{ min, max }` or `true`/`false`.
#[derive(Debug)]
pub(crate) enum RawBound {
    Range(RawRange),
    Flag(bool),
}

impl<'de> Deserialize<'de> for RawBound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawBound, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bound { min = …, max = … } or true/false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawBound, E> {
                Ok(RawBound::Flag(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawBound, E> {
                Err(E::custom(format!("a bare number ({v}) is not a bound: write {{ max = {v} }} or {{ min = {v} }}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawBound, E> {
                Err(E::custom(format!("a bare number ({v}) is not a bound: write {{ max = {v} }} or {{ min = {v} }}")))
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<RawBound, M::Error> {
                RawRange::deserialize(MapAccessDeserializer::new(map)).map(RawBound::Range)
            }
        }
        d.deserialize_any(V)
    }
}
