//! The scenario file as written: serde structs with `deny_unknown_fields` everywhere, before any value
//! is checked against another or placed on the calendar (that is [`super::resolve`]'s job).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, Visitor};
use warden_engine::policy::PolicyFile;
use warden_engine::policy::{Toggle, Zone};

use super::values::{DayName, DayTime, Instant, Probability, SpanDuration, TimeSpec};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub transport: Option<TransportName>,
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
    pub operator: RawOperator,
    #[serde(default)]
    pub expect: BTreeMap<String, ExpectNode>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    pub model: String,
    pub tz: Option<Zone>,
    pub token_lifetime: Option<SpanDuration>,
    pub token_expires_at: Option<DayTime>,
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
    pub order_limits: Option<Vec<RawLimit>>,
    pub order_penalty: Option<Toggle<SpanDuration>>,
    pub rejection_form: Option<String>,
    pub login_after_expiry: Option<LoginAfterExpiryName>,
    pub login_code_lifetime: Option<SpanDuration>,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

/// `transport = "virtual" | "http"`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TransportName {
    Virtual,
    Http,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LoginAfterExpiryName {
    Automatic,
    Person,
}

/// `[[broker.endpoints]]`: request kinds with rules of their own.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub kinds: Vec<String>,
    pub limits: Option<Vec<RawLimit>>,
    pub penalty: Option<Toggle<SpanDuration>>,
    pub rejection_form: Option<String>,
    pub early_expiries: Option<Vec<TimeSpec>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReset {
    pub at: DayTime,
    pub tz: Option<Zone>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeeklyReset {
    pub day: DayName,
    pub at: DayTime,
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
    #[serde(default)]
    pub at: Vec<RawScripted>,
}

/// `[[workload.at]]`: requests at an exact instant.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScripted {
    pub at: TimeSpec,
    pub kind: String,
    pub count: Option<u32>,
    pub session: Option<u32>,
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
    pub open: Option<DayTime>,
    pub close: Option<DayTime>,
    pub tz: Option<Zone>,
    pub always: Option<bool>,
}

/// `[operator]`: what a person does during the run.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOperator {
    #[serde(default)]
    pub login_codes: Vec<OperatorEntry>,
    #[serde(default)]
    pub resets: Vec<OperatorEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOperatorAction {
    pub at: TimeSpec,
    pub session: Option<u32>,
}

/// `"09:05"` or `{ at, session }`.
#[derive(Debug)]
pub(crate) enum OperatorEntry {
    At(TimeSpec),
    Table(RawOperatorAction),
}

impl<'de> Deserialize<'de> for OperatorEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OperatorEntry, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OperatorEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a time ("09:05") or { at, session }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OperatorEntry, E> {
                super::values::parse_time_spec(v).map(OperatorEntry::At).map_err(E::custom)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<OperatorEntry, M::Error> {
                RawOperatorAction::deserialize(MapAccessDeserializer::new(map)).map(OperatorEntry::Table)
            }
        }
        d.deserialize_any(V)
    }
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
    pub to: Option<TimeSpec>,
    pub count: Option<u32>,
    pub every: Option<SpanDuration>,
    pub session: Option<u32>,
}

/// `"+3h"` or `{ from, count | to, every, session }`.
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
                f.write_str(r#"a time ("+3h") or a panic loop { from, count or to, every }"#)
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
    pub at: Option<TimeSpec>,
    pub from: Option<TimeSpec>,
    pub to: Option<TimeSpec>,
    pub every: Option<SpanDuration>,
    pub downtime: Option<SpanDuration>,
}

/// `"+3h"`, `{ at, downtime }` or `{ from, to, every, downtime }`.
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
                f.write_str(r#"a time ("+3h"), { at, downtime } or { from, to, every, downtime }"#)
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

/// A value under `[expect]`, before it is known whether it is a bound (`{ min, max, per_day }`, a flag)
/// or a table of bounds under a dotted name (`failed_by.timeout = { max = 0 }` is the table
/// `failed_by` holding `timeout`). [`super::resolve`] tells them apart, knowing the report's fields.
#[derive(Debug)]
pub(crate) enum ExpectNode {
    Flag(bool),
    Number(f64),
    Table(Vec<(String, ExpectNode)>),
    /// Anything else (a string, a list, a date), described for the error message.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for ExpectNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ExpectNode, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExpectNode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bound { min = …, max = … }, { per_day = … } or true/false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ExpectNode, E> {
                Ok(ExpectNode::Flag(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExpectNode, E> {
                Ok(ExpectNode::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExpectNode, E> {
                Ok(ExpectNode::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ExpectNode, E> {
                Ok(ExpectNode::Number(v))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ExpectNode, E> {
                Ok(ExpectNode::Other("a string"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ExpectNode, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(ExpectNode::Other("a list"))
            }
            fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<ExpectNode, M::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == TOML_DATETIME_KEY {
                        map.next_value::<de::IgnoredAny>()?;
                        return Ok(ExpectNode::Other("a date"));
                    }
                    entries.push((key, map.next_value::<ExpectNode>()?));
                }
                Ok(ExpectNode::Table(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The key under which toml hands a TOML datetime to a visitor.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";
