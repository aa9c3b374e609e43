//! Policy: every setting that decides when a session logs in, refreshes, pings and gives up.
//!
//! One struct, read from TOML, with the strategies of the seed documents as presets so that the
//! simulator can compare them on the same scenario:
//!
//! | preset | what it does |
//! | --- | --- |
//! | `reactive` | re-authenticates only after a rejection or at expiry, when a request asks |
//! | `proactive` | refreshes (or re-logs in) `refresh_buffer` before the token expires |
//! | `scheduled` | re-logs in every `max_session_age` (8 h) |
//! | `daily` | logs in again after the broker's daily cut-off |
//! | `keepalive` | pings every `keepalive_interval` and re-initialises when a ping says the session died |
//! | `hybrid` | warden's default: all of the above, login-frugal — refreshes `refresh_buffer` before expiry (refresh chains stay alive), logs in only when a request needs it (never early, never for an unused token), pings, honours the broker's cut-off and request limit, re-logs in at once after a kill; scheduled re-login, lazy early renewal and an idle timeout only if you set them |
//!
//! A policy file names a preset and overrides any setting; nested tables (`backoff`, `login_rate`,
//! `daily_cutoff`) are replaced as a whole. Optional settings are switched off with `"off"`.
//!
//! ```
//! use std::time::Duration;
//! use warden_engine::Policy;
//!
//! let policy = Policy::from_toml_str(r#"
//!     preset = "hybrid"
//!     refresh_buffer = "30s"
//!     daily_cutoff = { at = "03:00", tz = "Asia/Kolkata" }
//!     login_rate = { max = 3, per = "5m" }
//! "#).unwrap();
//! assert_eq!(policy.refresh_buffer, Some(Duration::from_secs(30)));
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::IntoDeserializer;
use serde::de::value::MapAccessDeserializer;
use serde::{Deserialize, Serialize};

use crate::time::{HumanDuration, format_duration};

/// A peer strategy, as a starting point for a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Re-authenticate only after a rejection (or at expiry, when a request asks).
    Reactive,
    /// Refresh before expiry, nothing else.
    Proactive,
    /// Re-login every few hours (the Kotak document's option 3).
    Scheduled,
    /// Re-login after the daily cut-off only (OpenAlgo).
    Daily,
    /// Keep-alive pings plus re-initialisation on failure (the IBKR document).
    Keepalive,
    /// All of them together: warden's default.
    #[default]
    Hybrid,
}

impl Preset {
    /// Every preset, in the order the simulator's `compare` prints them.
    pub const ALL: [Preset; 6] =
        [Preset::Reactive, Preset::Proactive, Preset::Scheduled, Preset::Daily, Preset::Keepalive, Preset::Hybrid];

    /// The preset's name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Reactive => "reactive",
            Preset::Proactive => "proactive",
            Preset::Scheduled => "scheduled",
            Preset::Daily => "daily",
            Preset::Keepalive => "keepalive",
            Preset::Hybrid => "hybrid",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Preset, PolicyError> {
        Preset::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| PolicyError::UnknownPreset { name: s.to_owned() })
    }
}

/// When an expired session logs in again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// As soon as the session is expired (or at the warm-up time after a daily cut-off).
    Eager,
    /// Only when a request asks for a token.
    Lazy,
}

/// What to do when the broker says another login holds the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCompeting {
    /// Log in again, asking the broker to make this session the active one.
    TakeOver,
    /// Let the other login have it: go to `Invalid` with that reason.
    Yield,
}

/// What happens after the daily cut-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AfterCutoff {
    /// warden logs in again by itself (at the warm-up time, on demand, or at once when eager).
    #[default]
    Login,
    /// The broker's login after its daily expiry needs a person (Zerodha's browser login, OpenAlgo's
    /// forced re-login): no automatic login after a cut-off; requests fail fast, naming the cut-off and the
    /// way back, until an operator hands in a request token, a code or new credentials.
    Operator,
}

/// A rate: at most `max` events in any window of length `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Events allowed per window.
    pub max: u32,
    /// The window.
    pub per: HumanDuration,
}

impl Rate {
    /// `max` events per `per`.
    pub fn new(max: u32, per: Duration) -> Rate {
        Rate { max, per: HumanDuration(per) }
    }
}

/// Exponential backoff between failed attempts: `min × multiplier^(n-1)`, capped at `max`, spread by
/// ± `jitter` (a fraction).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// The first delay.
    pub min: HumanDuration,
    /// The longest delay.
    pub max: HumanDuration,
    /// Growth per consecutive failure (≥ 1).
    pub multiplier: f64,
    /// Random spread, a fraction in `[0, 1]` of the delay.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            min: HumanDuration(Duration::from_secs(5)),
            // A minute: after an outage, renewal resumes within a minute of the broker coming back.
            // Logins are also held to `login_rate`, so a short backoff cannot hammer an account.
            max: HumanDuration(Duration::from_secs(60)),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before attempt `failures + 1`, given `failures` consecutive failures (≥ 1) and a
    /// uniform random `unit` in `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(64);
        let base_ms = self.min.0.as_millis() as f64 * self.multiplier.powi(exp as i32);
        let capped_ms = base_ms.min(self.max.0.as_millis() as f64);
        let spread = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Duration::from_millis((capped_ms * spread).max(0.0).round() as u64)
    }
}

/// The supervisor's restart-intensity limit: at most `max` restarts within `within`, then give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartLimit {
    /// Restarts allowed inside the window.
    pub max: u32,
    /// The window.
    pub within: HumanDuration,
}

/// A wall-clock time of day, written `"HH:MM"` or `"HH:MM:SS"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(pub jiff::civil::Time);

impl LocalTime {
    /// Hours and minutes; `None` if out of range.
    pub fn hm(hour: i8, minute: i8) -> Option<LocalTime> {
        jiff::civil::Time::new(hour, minute, 0, 0).ok().map(LocalTime)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        if t.second() == 0 {
            write!(f, "{:02}:{:02}", t.hour(), t.minute())
        } else {
            write!(f, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
        }
    }
}

impl std::str::FromStr for LocalTime {
    type Err = String;
    fn from_str(s: &str) -> Result<LocalTime, String> {
        let bad = || format!("`{s}` is not a time of day (write \"03:00\" or \"15:30:00\")");
        let parts: Vec<&str> = s.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let num = |p: &str| p.parse::<i8>().map_err(|_| bad());
        let (h, m) = (num(parts[0])?, num(parts[1])?);
        let sec = if parts.len() == 3 { num(parts[2])? } else { 0 };
        jiff::civil::Time::new(h, m, sec, 0).map(LocalTime).map_err(|_| bad())
    }
}

impl Serialize for LocalTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LocalTime, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An IANA time zone (`Asia/Kolkata`), checked against the time zone database when read.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Zone {
    /// The zone of an IANA name.
    pub fn new(name: &str) -> Result<Zone, PolicyError> {
        jiff::tz::TimeZone::get(name)
            .map(|tz| Zone { name: name.to_owned(), tz })
            .map_err(|_| PolicyError::UnknownTimeZone { name: name.to_owned() })
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's rules.
    pub fn tz(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
        let name = String::deserialize(d)?;
        Zone::new(&name).map_err(serde::de::Error::custom)
    }
}

/// A daily forced expiry (OpenAlgo's `SESSION_EXPIRY_TIME`, a broker's nightly reset), optionally with
/// a warm-up time at which an eager session logs in again before the market opens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyCutoff {
    /// The local time of the cut-off.
    pub at: LocalTime,
    /// The zone `at` and `warmup` are in.
    pub tz: Zone,
    /// When to log in again after the cut-off (eager mode); without it an eager session logs in at
    /// once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<LocalTime>,
}

impl DailyCutoff {
    /// A cut-off at `at` in the zone named `tz`.
    pub fn new(at: LocalTime, tz: &str) -> Result<DailyCutoff, PolicyError> {
        Ok(DailyCutoff { at, tz: Zone::new(tz)?, warmup: None })
    }
}

/// What the broker is known to need, used to fill broker-specific settings of the presets.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BrokerHints {
    /// The broker's recommended refresh lead (Saxo: 30 s).
    pub refresh_buffer: Option<Duration>,
    /// The keep-alive interval the broker needs (IBKR: 60 s); `None` if it needs none.
    pub keepalive_interval: Option<Duration>,
    /// The broker's daily (or nightly) reset.
    pub daily_reset: Option<DailyCutoff>,
    /// The broker's request limit per account (the hybrid preset stays under it).
    pub request_rate: Option<Rate>,
}

/// A setting that can be switched off with `"off"` (or `false`); the wire form of optional settings.
#[derive(Clone, Debug, PartialEq)]
pub enum Toggle<T> {
    /// Switched off.
    Off,
    /// Switched on with this value.
    On(T),
}

impl<T: Serialize> Serialize for Toggle<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Off => s.serialize_str("off"),
            Toggle::On(v) => v.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Toggle<T>, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or \"off\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Toggle<T>, E> {
                if v == "off" {
                    return Ok(Toggle::Off);
                }
                T::deserialize(v.into_deserializer()).map(Toggle::On)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Toggle<T>, E> {
                if v { Err(E::custom("`true` says nothing: give a value, or \"off\"")) } else { Ok(Toggle::Off) }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Toggle<T>, E> {
                T::deserialize(v.into_deserializer()).map(Toggle::On)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Toggle<T>, E> {
                T::deserialize(v.into_deserializer()).map(Toggle::On)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Toggle<T>, M::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// How a policy value is written in files.
pub trait Wire<T>: Sized {
    /// The value this wire form stands for.
    fn into_value(self) -> T;
    /// The wire form of a value.
    fn from_value(value: &T) -> Self;
}

impl<T: Clone> Wire<T> for T {
    fn into_value(self) -> T {
        self
    }
    fn from_value(value: &T) -> T {
        value.clone()
    }
}

impl Wire<Duration> for HumanDuration {
    fn into_value(self) -> Duration {
        self.0
    }
    fn from_value(value: &Duration) -> HumanDuration {
        HumanDuration(*value)
    }
}

impl Wire<Option<Duration>> for Toggle<HumanDuration> {
    fn into_value(self) -> Option<Duration> {
        match self {
            Toggle::Off => None,
            Toggle::On(d) => Some(d.0),
        }
    }
    fn from_value(value: &Option<Duration>) -> Self {
        value.map_or(Toggle::Off, |d| Toggle::On(HumanDuration(d)))
    }
}

impl<T: Clone> Wire<Option<T>> for Toggle<T> {
    fn into_value(self) -> Option<T> {
        match self {
            Toggle::Off => None,
            Toggle::On(v) => Some(v),
        }
    }
    fn from_value(value: &Option<T>) -> Self {
        value.clone().map_or(Toggle::Off, Toggle::On)
    }
}

/// Declares [`Policy`] and its file form [`PolicyFile`] from one list of settings, so that the two
/// cannot disagree.
macro_rules! policy_settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty => $wire:ty, )*) => {
        /// Every setting that decides a session's behaviour. Start from [`Policy::preset`] (or
        /// `Default`, which is the `hybrid` preset) and change fields, or read a file with
        /// [`Policy::from_toml_str`]; call [`Policy::validate`] after changing fields by hand.
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub struct Policy {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        /// A policy as written in a file: an optional preset, then any settings to override.
        #[derive(Clone, Debug, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PolicyFile {
            /// The preset the other settings start from (default `hybrid`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub preset: Option<Preset>,
            $(
                #[allow(missing_docs)]
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$wire>,
            )*
        }

        impl PolicyFile {
            /// Writes every override present onto `policy`.
            pub fn apply_to(self, policy: &mut Policy) {
                $( if let Some(v) = self.$name { policy.$name = Wire::<$ty>::into_value(v); } )*
            }

            /// The file form of a whole policy (every setting written out).
            pub fn from_policy(policy: &Policy) -> PolicyFile {
                PolicyFile { preset: None, $( $name: Some(<$wire as Wire<$ty>>::from_value(&policy.$name)), )* }
            }
        }
    };
}

policy_settings! {
    /// Refresh (or re-login) this long before the token expires; `None`: not proactively.
    refresh_buffer: Option<Duration> => Toggle<HumanDuration>,
    /// With this little left, a request that reaches the session starts a refresh (lazy refresh).
    lazy_threshold: Option<Duration> => Toggle<HumanDuration>,
    /// Whether `refresh_buffer` renews by a full login when the broker has no refresh grant (or the
    /// refresh token is gone) even if nobody uses the session; if not, such a renewal waits for a
    /// request within `lazy_threshold` of expiry. Refreshes are proactive either way.
    proactive_logins: bool => bool,
    /// A token is not handed out within this long of its expiry (time for the request to travel).
    expiry_margin: Duration => HumanDuration,
    /// Spread proactive refreshes by up to this fraction of `refresh_buffer` (many sessions, one broker).
    jitter: f64 => f64,
    /// Ping the broker this often while the session is up (brokers that have a keep-alive).
    keepalive_interval: Option<Duration> => Toggle<HumanDuration>,
    /// This many failed pings in a row mean the session is gone.
    keepalive_failures_before_expired: u32 => u32,
    /// A daily forced expiry, with an optional warm-up login time.
    daily_cutoff: Option<DailyCutoff> => Toggle<DailyCutoff>,
    /// Log in again (not just refresh) when the login is this old (scheduled re-auth).
    max_session_age: Option<Duration> => Toggle<HumanDuration>,
    /// Let the session lapse after this long without a request; it logs in again when asked.
    idle_timeout: Option<Duration> => Toggle<HumanDuration>,
    /// The supervisor waits this long before restarting a failed session actor (then backs off).
    reinitialize_delay: Duration => HumanDuration,
    /// Backoff between failed login or refresh attempts.
    backoff: Backoff => Backoff,
    /// Credential rejections in a row before giving up (`Invalid`): protects the account from lock-out.
    max_consecutive_failures: u32 => u32,
    /// At most this many logins per window, counted across restarts.
    login_rate: Option<Rate> => Toggle<Rate>,
    /// At most this many broker requests per window, per broker account (all its sessions together).
    request_rate: Option<Rate> => Toggle<Rate>,
    /// The spread of the one-way network delay to the broker. The broker counts requests when they arrive;
    /// the request limiter widens its window by this much, so that requests sent evenly but delayed
    /// unevenly still never put more than `request_rate` into one of the broker's windows.
    network_jitter: Duration => HumanDuration,
    /// How long a request may wait for a token.
    request_timeout: Duration => HumanDuration,
    /// How long a login, refresh, keep-alive or logout call may take before it counts as failed.
    auth_timeout: Duration => HumanDuration,
    /// At most this many requests wait for a token; more are refused at once (`Overloaded`).
    max_waiters: u32 => u32,
    /// Automatic retries of a call the broker rejected as unauthenticated (with a newer grant).
    retry_on_rejection: u32 => u32,
    /// A retried call rejected again with a grant younger than this fails ("the broker refused a fresh
    /// token") instead of starting another login: the refusal is about the call, not the token.
    min_grant_age: Duration => HumanDuration,
    /// While requests wait for a refresh that failed, the next refresh try comes at most this long after
    /// the failure, whatever the backoff says (refreshes do not lock accounts; logins keep the backoff).
    waiting_refresh_retry: Duration => HumanDuration,
    /// Whether warden logs in again after the daily cut-off, or a person must.
    after_cutoff: AfterCutoff => AfterCutoff,
    /// Whether an expired session logs in again at once or when asked.
    mode: Mode => Mode,
    /// What to do when another login holds the account.
    on_competing: OnCompeting => OnCompeting,
    /// Restart intensity of the session's supervisor.
    restart_limit: RestartLimit => RestartLimit,
}

impl Default for Policy {
    /// The `hybrid` preset with no broker hints.
    fn default() -> Policy {
        Policy::preset(Preset::Hybrid)
    }
}

impl Policy {
    /// A preset with no broker-specific hints.
    pub fn preset(preset: Preset) -> Policy {
        Policy::preset_for(preset, &BrokerHints::default())
    }

    /// A preset, filled in with what is known about the broker (its refresh lead, keep-alive interval,
    /// daily reset).
    pub fn preset_for(preset: Preset, hints: &BrokerHints) -> Policy {
        let refresh_buffer = Some(hints.refresh_buffer.unwrap_or(Duration::from_secs(300)));
        let keepalive_interval = Some(hints.keepalive_interval.unwrap_or(Duration::from_secs(60)));
        let daily = hints.daily_reset.clone().or_else(|| {
            DailyCutoff::new(LocalTime::hm(3, 0).unwrap_or(LocalTime(jiff::civil::Time::midnight())), "Asia/Kolkata")
                .ok()
        });
        let base = Policy {
            refresh_buffer: None,
            lazy_threshold: None,
            proactive_logins: false,
            expiry_margin: Duration::from_secs(5),
            jitter: 0.1,
            keepalive_interval: None,
            keepalive_failures_before_expired: 2,
            daily_cutoff: None,
            max_session_age: None,
            idle_timeout: None,
            reinitialize_delay: Duration::from_secs(5),
            backoff: Backoff::default(),
            max_consecutive_failures: 3,
            login_rate: Some(Rate::new(3, Duration::from_secs(300))),
            request_rate: None,
            network_jitter: Duration::from_millis(50),
            request_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(30),
            max_waiters: 16_384,
            retry_on_rejection: 1,
            min_grant_age: Duration::from_secs(10),
            waiting_refresh_retry: Duration::from_secs(1),
            after_cutoff: AfterCutoff::Login,
            mode: Mode::Lazy,
            on_competing: OnCompeting::TakeOver,
            restart_limit: RestartLimit { max: 5, within: HumanDuration(Duration::from_secs(60)) },
        };
        match preset {
            Preset::Reactive => base,
            Preset::Proactive => Policy { refresh_buffer, proactive_logins: true, mode: Mode::Eager, ..base },
            Preset::Scheduled => Policy { max_session_age: Some(Duration::from_secs(8 * 3600)), ..base },
            Preset::Daily => Policy { daily_cutoff: daily, ..base },
            Preset::Keepalive => {
                Policy { keepalive_interval, keepalive_failures_before_expired: 1, mode: Mode::Eager, ..base }
            }
            Preset::Hybrid => Policy {
                // Refreshes run on the timer: they are cheap, and they keep the refresh chain (and so the
                // login) alive overnight. A renewal that needs a full login is never made early: a login
                // before expiry shortens every token's life and costs a login a day per session; the
                // first request after expiry logs in (and waits for it, once), and an unused token
                // lapses at no cost. Set `lazy_threshold` to trade that wait for the extra logins.
                refresh_buffer,
                lazy_threshold: None,
                proactive_logins: false,
                keepalive_interval,
                daily_cutoff: hints.daily_reset.clone(),
                request_rate: hints.request_rate,
                mode: Mode::Eager,
                ..base
            },
        }
    }

    /// Reads a policy file: a preset (default `hybrid`) plus overrides, then validates it.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax { message: e.to_string() })?;
        file.into_policy(&BrokerHints::default())
    }

    /// Checks that the settings make sense together; the error names the setting and the problem.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (setting, value) in [
            ("request_timeout", Some(self.request_timeout)),
            ("auth_timeout", Some(self.auth_timeout)),
            ("keepalive_interval", self.keepalive_interval),
            ("max_session_age", self.max_session_age),
            ("idle_timeout", self.idle_timeout),
            ("backoff.min", Some(self.backoff.min.0)),
            ("restart_limit.within", Some(self.restart_limit.within.0)),
            ("waiting_refresh_retry", Some(self.waiting_refresh_retry)),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(PolicyError::Zero { setting });
            }
        }
        for (setting, rate) in [("login_rate", self.login_rate), ("request_rate", self.request_rate)] {
            if let Some(rate) = rate
                && (rate.max == 0 || rate.per.0.is_zero())
            {
                return Err(PolicyError::ZeroRate { setting, max: rate.max, per: rate.per.0 });
            }
        }
        for (setting, value) in [("jitter", self.jitter), ("backoff.jitter", self.backoff.jitter)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(PolicyError::Fraction { setting, value });
            }
        }
        if !(self.backoff.multiplier >= 1.0 && self.backoff.multiplier <= 100.0) {
            return Err(PolicyError::Multiplier { value: self.backoff.multiplier });
        }
        if self.backoff.min.0 > self.backoff.max.0 {
            return Err(PolicyError::BackoffOrder { min: self.backoff.min.0, max: self.backoff.max.0 });
        }
        for (setting, value) in [
            ("max_consecutive_failures", self.max_consecutive_failures),
            ("max_waiters", self.max_waiters),
            ("keepalive_failures_before_expired", self.keepalive_failures_before_expired),
            ("restart_limit.max", self.restart_limit.max),
        ] {
            if value == 0 {
                return Err(PolicyError::ZeroCount { setting });
            }
        }
        if self.after_cutoff == AfterCutoff::Operator && self.daily_cutoff.is_none() {
            return Err(PolicyError::OperatorWithoutCutoff);
        }
        Ok(())
    }

    /// The expiry margin used for a token of `lifetime`: `expiry_margin`, scaled down to a tenth of the
    /// lifetime when it does not fit (a 10 s token keeps 1 s, not 5 s, and so can be refreshed ahead).
    pub fn expiry_margin_for(&self, lifetime: Option<Duration>) -> Duration {
        lifetime.map_or(self.expiry_margin, |l| self.expiry_margin.min(l / 10))
    }

    /// What does not fit between this policy and a broker whose tokens live `lifetime`, or `None`.
    /// `refreshable`: the broker renews tokens by a refresh grant (which does not count against
    /// `login_rate`); without one, a session in use needs a login per token lifetime, and a `login_rate`
    /// that allows fewer starves it.
    pub fn feasibility(&self, lifetime: Duration, refreshable: bool) -> Option<String> {
        let usable = lifetime.saturating_sub(self.expiry_margin_for(Some(lifetime)));
        if usable.is_zero() {
            return Some(format!("tokens live {} and cannot be used at all", format_duration(lifetime)));
        }
        let rate = self.login_rate.filter(|_| !refreshable)?;
        let per_ms = rate.per.0.as_millis();
        let needed = per_ms.div_ceil(usable.as_millis().max(1));
        (needed > u128::from(rate.max)).then(|| {
            format!(
                "tokens live {} and the broker has no refresh grant, so a session in use needs a login every {}: \
                 {needed} per {}, but `login_rate` allows {} — requests will wait for logins; raise `login_rate` \
                 (within the broker's own limit) or expect gaps",
                format_duration(lifetime),
                format_duration(usable),
                format_duration(rate.per.0),
                rate.max,
            )
        })
    }

    /// Checks the policy against a token lifetime the broker is known to give: the refresh buffer, the
    /// lazy threshold and the expiry margin must each be shorter than it.
    pub fn validate_for_lifetime(&self, lifetime: Duration) -> Result<(), PolicyError> {
        self.validate()?;
        for (setting, value) in [
            ("refresh_buffer", self.refresh_buffer),
            ("lazy_threshold", self.lazy_threshold),
            ("expiry_margin", Some(self.expiry_margin)),
        ] {
            if let Some(value) = value
                && value >= lifetime
            {
                return Err(PolicyError::LongerThanLifetime { setting, value, lifetime });
            }
        }
        Ok(())
    }
}

impl PolicyFile {
    /// The policy this file describes: its preset (filled with `hints`) with the overrides applied,
    /// validated.
    pub fn into_policy(self, hints: &BrokerHints) -> Result<Policy, PolicyError> {
        let mut policy = Policy::preset_for(self.preset.unwrap_or_default(), hints);
        self.apply_to(&mut policy);
        policy.validate()?;
        Ok(policy)
    }
}

impl Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PolicyFile::from_policy(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        let file = PolicyFile::deserialize(d)?;
        file.into_policy(&BrokerHints::default()).map_err(serde::de::Error::custom)
    }
}

/// Why a policy is not acceptable. Each message names the setting and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file is not valid TOML or has an unknown key or a bad value.
    #[error("policy: {message}")]
    Syntax {
        /// The parser's message, with line and column.
        message: String,
    },
    /// No preset has this name.
    #[error("unknown preset `{name}` (known: reactive, proactive, scheduled, daily, keepalive, hybrid)")]
    UnknownPreset {
        /// The name given.
        name: String,
    },
    /// The time zone database has no zone of this name.
    #[error("unknown time zone `{name}` (use an IANA name such as \"Asia/Kolkata\")")]
    UnknownTimeZone {
        /// The name given.
        name: String,
    },
    /// A duration that must be positive is zero.
    #[error("`{setting}` must be longer than zero")]
    Zero {
        /// The setting.
        setting: &'static str,
    },
    /// A rate allows nothing.
    #[error("`{setting}` = {max} per {} allows nothing: both must be above zero", format_duration(*per))]
    ZeroRate {
        /// The setting.
        setting: &'static str,
        /// Events per window.
        max: u32,
        /// The window.
        per: Duration,
    },
    /// A count that must be positive is zero.
    #[error("`{setting}` must be at least 1")]
    ZeroCount {
        /// The setting.
        setting: &'static str,
    },
    /// A fraction outside `[0, 1]`.
    #[error("`{setting}` = {value} must be a fraction between 0 and 1")]
    Fraction {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: f64,
    },
    /// The backoff multiplier is below 1 or absurdly large.
    #[error("`backoff.multiplier` = {value} must be between 1 and 100")]
    Multiplier {
        /// The value given.
        value: f64,
    },
    /// The backoff's minimum exceeds its maximum.
    #[error("`backoff.min` ({}) must not exceed `backoff.max` ({})", format_duration(*min), format_duration(*max))]
    BackoffOrder {
        /// The minimum.
        min: Duration,
        /// The maximum.
        max: Duration,
    },
    /// `after_cutoff = "operator"` without a daily cut-off to apply it to.
    #[error(
        "`after_cutoff = \"operator\"` needs a `daily_cutoff` (the broker's daily expiry, after which a person must log in)"
    )]
    OperatorWithoutCutoff,
    /// A lead time is not shorter than the broker's token lifetime.
    #[error("`{setting}` ({}) must be shorter than the token lifetime ({})", format_duration(*value), format_duration(*lifetime))]
    LongerThanLifetime {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: Duration,
        /// The token lifetime.
        lifetime: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_round_trips() {
        for preset in Preset::ALL {
            let policy = Policy::preset(preset);
            policy.validate().unwrap_or_else(|e| panic!("{preset}: {e}"));
            let text = toml::to_string(&policy).unwrap();
            let back = Policy::from_toml_str(&text).unwrap_or_else(|e| panic!("{preset}: {e}\n{text}"));
            assert_eq!(back, policy, "{preset}");
            assert_eq!(preset.name().parse::<Preset>().unwrap(), preset);
        }
    }

    #[test]
    fn presets_differ_as_documented() {
        let reactive = Policy::preset(Preset::Reactive);
        assert_eq!((reactive.refresh_buffer, reactive.keepalive_interval, reactive.mode), (None, None, Mode::Lazy));
        assert!(Policy::preset(Preset::Proactive).refresh_buffer.is_some());
        assert_eq!(Policy::preset(Preset::Scheduled).max_session_age, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(Policy::preset(Preset::Daily).daily_cutoff.unwrap().tz.name(), "Asia/Kolkata");
        assert!(Policy::preset(Preset::Keepalive).keepalive_interval.is_some());
        let hybrid = Policy::default();
        assert!(hybrid.refresh_buffer.is_some() && !hybrid.proactive_logins, "hybrid logs in on demand only");
        assert!(Policy::preset(Preset::Proactive).proactive_logins);
        assert!(
            hybrid.lazy_threshold.is_none() && hybrid.keepalive_interval.is_some() && hybrid.idle_timeout.is_none()
        );
        let hints = BrokerHints { request_rate: Some(Rate::new(10, Duration::from_secs(1))), ..BrokerHints::default() };
        assert_eq!(Policy::preset_for(Preset::Hybrid, &hints).request_rate, hints.request_rate);
        assert_eq!(Policy::preset_for(Preset::Reactive, &hints).request_rate, None, "peers do not throttle");
        assert_eq!(hybrid.mode, Mode::Eager);
    }

    #[test]
    fn overrides_apply_on_the_preset() {
        let p = Policy::from_toml_str(
            "preset = \"reactive\"\nrefresh_buffer = \"30s\"\nkeepalive_interval = \"off\"\nmode = \"eager\"\n\
             daily_cutoff = { at = \"03:00\", tz = \"Asia/Kolkata\", warmup = \"08:45\" }\n\
             backoff = { max = \"10m\" }\n",
        )
        .unwrap();
        assert_eq!(p.refresh_buffer, Some(Duration::from_secs(30)));
        assert_eq!(p.keepalive_interval, None);
        assert_eq!(p.mode, Mode::Eager);
        assert_eq!(p.backoff.max.0, Duration::from_secs(600));
        assert_eq!(p.backoff.min.0, Duration::from_secs(5));
        let cutoff = p.daily_cutoff.unwrap();
        assert_eq!((cutoff.at.to_string(), cutoff.warmup.unwrap().to_string()), ("03:00".into(), "08:45".into()));
    }

    fn err(text: &str) -> String {
        Policy::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_policies_name_the_setting_and_the_problem() {
        assert!(err("refrsh_buffer = \"30s\"").contains("refrsh_buffer"));
        assert!(err("refresh_buffer = \"soon\"").contains("`soon` is not a duration"));
        assert!(err("refresh_buffer = 30").contains("write the unit"));
        let tz = err("daily_cutoff = { at = \"03:00\", tz = \"Asia/Kolkatta\" }");
        assert!(tz.contains("unknown time zone `Asia/Kolkatta`"), "{tz}");
        assert!(err("daily_cutoff = { at = \"25:00\", tz = \"UTC\" }").contains("not a time of day"));
        assert!(err("login_rate = { max = 0, per = \"5m\" }").contains("`login_rate` = 0 per 5m allows nothing"));
        assert!(err("request_rate = { max = 5, per = \"0s\" }").contains("`request_rate`"));
        assert!(err("jitter = 1.5").contains("`jitter` = 1.5 must be a fraction"));
        assert!(err("backoff = { min = \"10m\", max = \"1m\" }").contains("`backoff.min` (10m) must not exceed"));
        assert!(err("max_waiters = 0").contains("`max_waiters` must be at least 1"));
        assert!(err("request_timeout = \"0s\"").contains("`request_timeout` must be longer than zero"));
        assert!(err("preset = \"lazy\"").contains("lazy"));
        let p = Policy { refresh_buffer: Some(Duration::from_secs(25 * 60)), ..Policy::default() };
        let e = p.validate_for_lifetime(Duration::from_secs(20 * 60)).unwrap_err().to_string();
        assert_eq!(e, "`refresh_buffer` (25m) must be shorter than the token lifetime (20m)");
    }

    #[test]
    fn backoff_grows_caps_and_spreads() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(10));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(60));
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(4));
        assert!(b.delay(1, 0.999_999) <= Duration::from_secs(6));
    }
}
