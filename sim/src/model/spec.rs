//! What a broker model does: [`BrokerSpec`], one value per broker with every rule as a setting.
//!
//! [`BrokerSpec::preset`] gives each model's defaults, taken from the brokers' public
//! documentation, SDKs and issue trackers (figures that could not be confirmed are settings like everything else); a scenario's
//! `[broker]` table overrides any of them. Time-based events are kept as instants ([`BrokerEvent`],
//! [`Window`]) or as local-time rules (the daily and weekly resets), never as clock reads: the model applies
//! them when a call arrives with a `now` past them.

use std::fmt;
use std::time::Duration;

use warden_engine::UnixMs;
use warden_engine::policy::{BrokerHints, DailyCutoff, LocalTime, Zone};
use warden_engine::rng::SplitMix64;

use super::KindId;

/// The broker models: one per seed document, plus Zerodha Kite and Angel One.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ModelKind {
    /// Kotak Neo: a JWT meant to last the trading day that can die intraday (`900901`).
    KotakNeo,
    /// Saxo OpenAPI: a 20-minute access token and a 60-minute refresh token, rotated on refresh.
    Saxo,
    /// Interactive Brokers Web API: `tickle` keep-alive, idle timeout, nightly and Sunday resets.
    Ibkr,
    /// OpenAlgo: a daily forced expiry at 03:00 Asia/Kolkata that revokes earlier tokens.
    OpenAlgo,
    /// Generic OAuth2 client credentials: per-host tokens, no refresh token.
    OAuth2,
    /// Zerodha Kite: the token dies at 06:00 the next day; expired gives 403 `TokenException`.
    Zerodha,
    /// Angel One SmartAPI: a JWT that dies at midnight IST; login 1/s and 1,000/h; orders 20/s.
    AngelOne,
}

impl ModelKind {
    /// Every model, in the order the docs list them.
    pub const ALL: [ModelKind; 7] = [
        ModelKind::KotakNeo,
        ModelKind::Saxo,
        ModelKind::Ibkr,
        ModelKind::OpenAlgo,
        ModelKind::OAuth2,
        ModelKind::Zerodha,
        ModelKind::AngelOne,
    ];

    /// The model's name as written in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::KotakNeo => "kotak-neo",
            ModelKind::Saxo => "saxo",
            ModelKind::Ibkr => "ibkr",
            ModelKind::OpenAlgo => "openalgo",
            ModelKind::OAuth2 => "oauth2",
            ModelKind::Zerodha => "zerodha",
            ModelKind::AngelOne => "angel-one",
        }
    }

    /// The model of a name, if there is one.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The zone the broker's local times are in unless `[broker] tz` says otherwise.
    pub fn home_zone(self) -> &'static str {
        match self {
            ModelKind::KotakNeo | ModelKind::OpenAlgo | ModelKind::Zerodha | ModelKind::AngelOne => "Asia/Kolkata",
            ModelKind::Saxo => "Europe/Copenhagen",
            ModelKind::Ibkr => "America/New_York",
            ModelKind::OAuth2 => "UTC",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When an access token dies, as the broker declares it in the grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenExpiry {
    /// A fixed lifetime from issue.
    After(Duration),
    /// At the next occurrence of this local time (in the spec's zone) after issue (Zerodha: 06:00).
    DailyAt(LocalTime),
}

/// A latency distribution: uniform between `min` and `max` (equal for a fixed latency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// The shortest latency.
    pub min: Duration,
    /// The longest latency.
    pub max: Duration,
}

impl Latency {
    /// Always `d`.
    pub const fn fixed(d: Duration) -> Latency {
        Latency { min: d, max: d }
    }

    /// Uniform between two millisecond counts.
    pub const fn uniform_ms(min_ms: u64, max_ms: u64) -> Latency {
        Latency { min: Duration::from_millis(min_ms), max: Duration::from_millis(max_ms) }
    }

    /// One sample, in whole milliseconds.
    pub fn sample(&self, rng: &mut SplitMix64) -> Duration {
        let min = self.min.as_millis() as u64;
        let max = self.max.as_millis() as u64;
        if max <= min {
            return Duration::from_millis(min);
        }
        Duration::from_millis(min + rng.below(max - min + 1))
    }
}

/// A half-open interval of wall-clock time, `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// The first instant inside.
    pub from: UnixMs,
    /// The first instant after.
    pub to: UnixMs,
}

impl Window {
    /// The whole of time (`always` in scenario files).
    pub const ALWAYS: Window = Window { from: UnixMs::from_millis(i64::MIN), to: UnixMs::MAX };

    /// Whether `t` lies inside.
    pub fn contains(&self, t: UnixMs) -> bool {
        self.from <= t && t < self.to
    }
}

/// The window among `windows` (sorted by `from`, not overlapping) that contains `t`, in O(log n).
pub fn window_at<T>(windows: &[T], t: UnixMs, window: impl Fn(&T) -> Window) -> Option<&T> {
    let i = windows.partition_point(|w| window(w).to <= t);
    windows.get(i).filter(|w| window(w).contains(t))
}

/// At most `max` events in any window of length `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Events allowed per window.
    pub max: u32,
    /// The window.
    pub per: Duration,
}

/// A broker's rate limit: several windows (OpenAlgo's login: 5/min and 25/h) and an optional penalty.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Every window must hold; empty means no limit.
    pub windows: Vec<Limit>,
    /// After a breach, every call gets 429 for this long (IBKR's 10-minute penalty box); without it a
    /// 429 lasts until the window frees.
    pub penalty: Option<Duration>,
}

/// Probabilities of failures that have nothing to do with the token.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ErrorRates {
    /// A login fails with a 5xx.
    pub login: f64,
    /// A refresh fails with a 5xx.
    pub refresh: f64,
    /// A keep-alive fails with a 5xx.
    pub keepalive: f64,
    /// A request fails with a 5xx (not executed).
    pub request: f64,
    /// A non-idempotent request is executed but its response is lost (`Delivery::Unknown`).
    pub response_lost: f64,
}

/// What an outage takes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affects {
    /// Logins.
    pub login: bool,
    /// Refresh-token grants.
    pub refresh: bool,
    /// Keep-alive pings.
    pub keepalive: bool,
    /// The workload's requests.
    pub requests: bool,
}

impl Affects {
    /// Everything.
    pub const ALL: Affects = Affects { login: true, refresh: true, keepalive: true, requests: true };
    /// Nothing (the start of a list).
    pub const NONE: Affects = Affects { login: false, refresh: false, keepalive: false, requests: false };
}

/// How calls fail during an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutageMode {
    /// The broker answers 503 at once.
    Error,
    /// The call hangs this long, then fails without an answer (`Delivery::Unknown`; never executed).
    Hang(Duration),
}

/// A period in which the broker fails some calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// When.
    pub window: Window,
    /// Which calls fail.
    pub affects: Affects,
    /// How they fail.
    pub mode: OutageMode,
}

/// Account lock-out after repeated wrong credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// Wrong-credential logins in a row that lock the account.
    pub after: u32,
    /// How long it stays locked.
    pub duration: Duration,
}

/// A weekly reset: every token issued before it is revoked.
#[derive(Clone, Debug, PartialEq)]
pub struct WeeklyReset {
    /// The day of the week.
    pub day: jiff::civil::Weekday,
    /// The local time.
    pub at: LocalTime,
    /// The zone.
    pub tz: Zone,
}

/// How a broker refuses a dead or revoked token. Kotak Neo answers in several forms depending on the
/// endpoint and the gateway; the others have one form each ([`RejectionForm::Native`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionForm {
    /// The model's own form; for Kotak any of its four, at random per refusal.
    Native,
    /// Kotak's WSO2 gateway: HTTP 401 `{"code":"900901","message":"Invalid Credentials"}`.
    Kotak900901,
    /// Kotak: HTTP 401 "invalid jwt token".
    KotakInvalidJwt,
    /// Kotak: `stCode 100022` "invalid session token" (HTTP 403), from some endpoints.
    Kotak100022,
    /// Kotak: HTTP 403 "Invalid session, please re-login to continue".
    KotakInvalidSession,
}

impl RejectionForm {
    /// Every form, with its name in scenario files.
    pub const NAMED: [(RejectionForm, &'static str); 5] = [
        (RejectionForm::Native, "native"),
        (RejectionForm::Kotak900901, "900901"),
        (RejectionForm::KotakInvalidJwt, "invalid_jwt"),
        (RejectionForm::Kotak100022, "100022"),
        (RejectionForm::KotakInvalidSession, "invalid_session"),
    ];

    /// The form of a name in scenario files.
    pub fn from_name(name: &str) -> Option<RejectionForm> {
        RejectionForm::NAMED.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// Whether a login after the broker's daily expiry can be made by a program, or needs a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginAfterExpiry {
    /// Logins always work with the stored credentials (TOTP and the like automated).
    Automatic,
    /// After each daily expiry (the token's daily time or the daily reset) a login needs a code a person
    /// obtains (Kite's browser login and its request token; OpenAlgo's forced re-login in its web UI):
    /// until an operator hands one in, logins fail as needing a person. The run's first login counts as
    /// done by a person before the start.
    Person,
}

/// An endpoint of the broker's API (a group of request kinds) with rules of its own.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// The request kinds it serves (entries of the workload's mix).
    pub kinds: Vec<KindId>,
    /// Its own rate limit, beside the account's; `None`: the order limit if the kind is not idempotent,
    /// else none.
    pub limit: Option<RateLimit>,
    /// How it refuses a dead token; `None`: the broker's form.
    pub rejection_form: Option<RejectionForm>,
    /// Instants at which the session dies on this endpoint only (sorted): a token issued before one is
    /// refused here from then on, while other endpoints still accept it.
    pub early_expiries: Vec<UnixMs>,
}

/// A scheduled broker event that ends the current session (every token issued before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The token is invalidated intraday and the broker says so (Kotak `900901`).
    EarlyExpiry,
    /// The broker stops accepting the token without saying so; keep-alive says unauthenticated.
    SilentDeauth,
    /// Another login takes the account.
    CompetingLogin,
}

impl EventKind {
    /// The event's name in scenario files and stats.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::EarlyExpiry => "early_expiry",
            EventKind::SilentDeauth => "silent_deauth",
            EventKind::CompetingLogin => "competing_login",
        }
    }
}

/// A scheduled event at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerEvent {
    /// When it happens.
    pub at: UnixMs,
    /// What happens.
    pub kind: EventKind,
}

/// Every rule of one broker model. Build one with [`BrokerSpec::preset`] and change fields, or let a
/// scenario's `[broker]` table do it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BrokerSpec {
    /// Which broker.
    pub kind: ModelKind,
    /// The zone of the broker's local times (token expiry time of day).
    pub tz: Zone,
    /// When the access token dies, as declared in the grant.
    pub token_expiry: TokenExpiry,
    /// The refresh token's lifetime; `None`: the model has no refresh grant.
    pub refresh_lifetime: Option<Duration>,
    /// Without a keep-alive or request for this long the session silently dies (IBKR).
    pub idle_timeout: Option<Duration>,
    /// The broker has (and needs) a keep-alive endpoint: [`warden_engine::Capabilities::keepalive`].
    pub keepalive: bool,
    /// A new login revokes every earlier token of the account (one session per user).
    pub login_revokes_previous: bool,
    /// A daily reset revoking every token issued before it.
    pub daily_reset: Option<DailyCutoff>,
    /// A weekly reset revoking every token issued before it.
    pub weekly_reset: Option<WeeklyReset>,
    /// Latency of a login.
    pub login_latency: Latency,
    /// Latency of a refresh.
    pub refresh_latency: Latency,
    /// Latency of a keep-alive (and a logout).
    pub keepalive_latency: Latency,
    /// Latency of a workload request.
    pub request_latency: Latency,
    /// Failure probabilities.
    pub errors: ErrorRates,
    /// The login rate limit.
    pub login_limit: RateLimit,
    /// The request rate limit, per account.
    pub request_limit: RateLimit,
    /// Outages, sorted by start, not overlapping.
    pub outages: Vec<Outage>,
    /// Periods in which the credentials are wrong (sorted, not overlapping).
    pub wrong_credentials: Vec<Window>,
    /// Periods in which a login needs a second factor (sorted, not overlapping).
    pub second_factor: Vec<Window>,
    /// Lock-out after wrong credentials.
    pub lockout: Option<Lockout>,
    /// Scheduled session-ending events, sorted by time.
    pub events: Vec<BrokerEvent>,
    /// The order limit: applied to non-idempotent requests (the orders endpoint) beside the request
    /// limit, unless an [`Endpoint`] of theirs has its own.
    pub order_limit: RateLimit,
    /// Endpoints with rules of their own.
    pub endpoints: Vec<Endpoint>,
    /// How the broker refuses a dead or revoked token.
    pub rejection_form: RejectionForm,
    /// Whether a login after the daily expiry needs a person.
    pub login_after_expiry: LoginAfterExpiry,
    /// How long a login code an operator hands in stays good (it is also single-use).
    pub login_code_lifetime: Duration,
}

impl BrokerSpec {
    /// The model's defaults (from the brokers' documentation), with no scheduled events, outages or error rates.
    pub fn preset(kind: ModelKind) -> BrokerSpec {
        let zone = |name: &str| Zone::new(name).unwrap_or_else(|_| utc());
        let hm = |h: i8, m: i8| LocalTime::hm(h, m).unwrap_or(LocalTime(jiff::civil::Time::midnight()));
        let reset = |h: i8, tz: &str| Some(DailyCutoff { at: hm(h, 0), tz: zone(tz), warmup: None });
        let per_second = |max: u32| Limit { max, per: Duration::from_secs(1) };
        let base = BrokerSpec {
            kind,
            tz: zone(kind.home_zone()),
            token_expiry: TokenExpiry::After(Duration::from_secs(3600)),
            refresh_lifetime: None,
            idle_timeout: None,
            keepalive: false,
            login_revokes_previous: false,
            daily_reset: None,
            weekly_reset: None,
            login_latency: Latency::uniform_ms(300, 1_000),
            refresh_latency: Latency::uniform_ms(100, 400),
            keepalive_latency: Latency::uniform_ms(50, 250),
            request_latency: Latency::uniform_ms(30, 200),
            errors: ErrorRates::default(),
            login_limit: RateLimit::default(),
            request_limit: RateLimit::default(),
            outages: Vec::new(),
            wrong_credentials: Vec::new(),
            second_factor: Vec::new(),
            lockout: None,
            events: Vec::new(),
            order_limit: RateLimit::default(),
            endpoints: Vec::new(),
            rejection_form: RejectionForm::Native,
            login_after_expiry: LoginAfterExpiry::Automatic,
            login_code_lifetime: Duration::from_secs(5 * 60),
        };
        match kind {
            // 3,600 s by default; two login steps (TOTP, MPIN); about 10 requests/s [U].
            ModelKind::KotakNeo => BrokerSpec {
                login_latency: Latency::uniform_ms(400, 1_500),
                request_latency: Latency::uniform_ms(50, 300),
                request_limit: RateLimit { windows: vec![per_second(10)], penalty: None },
                ..base
            },
            // Access 20 min, refresh 60 min [U], 120 requests/min per session and service group, 1 order/s
            // per session.
            ModelKind::Saxo => BrokerSpec {
                token_expiry: TokenExpiry::After(Duration::from_secs(20 * 60)),
                refresh_lifetime: Some(Duration::from_secs(60 * 60)),
                request_limit: RateLimit {
                    windows: vec![Limit { max: 120, per: Duration::from_secs(60) }],
                    penalty: None,
                },
                order_limit: RateLimit { windows: vec![per_second(1)], penalty: None },
                ..base
            },
            // Live session token ~24 h [U]; idle ~445 s without a tickle [U]; one session per user;
            // nightly reset around 01:00 and Sunday 01:00 US/Eastern; 10 req/s through the gateway,
            // then a 10-minute penalty box.
            ModelKind::Ibkr => BrokerSpec {
                token_expiry: TokenExpiry::After(Duration::from_secs(24 * 3600)),
                idle_timeout: Some(Duration::from_secs(445)),
                keepalive: true,
                login_revokes_previous: true,
                daily_reset: reset(1, "America/New_York"),
                weekly_reset: Some(WeeklyReset {
                    day: jiff::civil::Weekday::Sunday,
                    at: hm(1, 0),
                    tz: zone("America/New_York"),
                }),
                login_latency: Latency::uniform_ms(1_000, 3_000),
                request_limit: RateLimit { windows: vec![per_second(10)], penalty: Some(Duration::from_secs(600)) },
                ..base
            },
            // The platform's session lives until its daily cut-off (03:00 IST), which revokes earlier
            // tokens and forces a re-login in its web UI; login 5/min and 25/h; API 50/s; orders 10/s.
            ModelKind::OpenAlgo => BrokerSpec {
                token_expiry: TokenExpiry::After(Duration::from_secs(24 * 3600)),
                daily_reset: reset(3, "Asia/Kolkata"),
                login_limit: RateLimit {
                    windows: vec![
                        Limit { max: 5, per: Duration::from_secs(60) },
                        Limit { max: 25, per: Duration::from_secs(3600) },
                    ],
                    penalty: None,
                },
                request_limit: RateLimit { windows: vec![per_second(50)], penalty: None },
                order_limit: RateLimit { windows: vec![per_second(10)], penalty: None },
                login_after_expiry: LoginAfterExpiry::Person,
                ..base
            },
            // Client credentials: `expires_in` typically 3,600 s, no refresh token, a token per host.
            ModelKind::OAuth2 => BrokerSpec { login_latency: Latency::uniform_ms(100, 500), ..base },
            // The access token expires at 06:00 the next day; 10 requests/s; orders 10/s and 200/min; a
            // login is a browser redirect with a single-use request token that lives minutes [U: 5 min].
            ModelKind::Zerodha => BrokerSpec {
                token_expiry: TokenExpiry::DailyAt(hm(6, 0)),
                login_latency: Latency::uniform_ms(500, 2_000),
                request_limit: RateLimit { windows: vec![per_second(10)], penalty: None },
                order_limit: RateLimit {
                    windows: vec![per_second(10), Limit { max: 200, per: Duration::from_secs(60) }],
                    penalty: None,
                },
                login_after_expiry: LoginAfterExpiry::Person,
                ..base
            },
            // The JWT expires daily (at midnight IST); login 1/s and 1,000/h; orders 20/s.
            ModelKind::AngelOne => BrokerSpec {
                token_expiry: TokenExpiry::DailyAt(hm(0, 0)),
                login_limit: RateLimit {
                    windows: vec![per_second(1), Limit { max: 1_000, per: Duration::from_secs(3600) }],
                    penalty: None,
                },
                order_limit: RateLimit { windows: vec![per_second(20)], penalty: None },
                ..base
            },
        }
    }

    /// What the engine's presets should know about this broker: Saxo's 30 s refresh lead, IBKR's 60 s
    /// keep-alive, the daily reset (OpenAlgo 03:00, IBKR 01:00 New York, Zerodha's 06:00 expiry).
    pub fn hints(&self) -> BrokerHints {
        let mut hints = BrokerHints::default();
        if self.kind == ModelKind::Saxo {
            hints.refresh_buffer = Some(Duration::from_secs(30));
        }
        if self.keepalive {
            hints.keepalive_interval = Some(Duration::from_secs(60));
        }
        hints.daily_reset = self.daily_reset.clone().or_else(|| match self.token_expiry {
            TokenExpiry::DailyAt(at) => Some(DailyCutoff { at, tz: self.tz.clone(), warmup: None }),
            TokenExpiry::After(_) => None,
        });
        // The window with the lowest average rate: a limiter that keeps it (warden's is safe for sliding
        // windows) keeps the others in the common case of one window per endpoint family.
        hints.request_rate = self
            .request_limit
            .windows
            .iter()
            .min_by(|a, b| {
                let rate = |l: &&Limit| f64::from(l.max) / l.per.as_secs_f64().max(1e-3);
                rate(a).total_cmp(&rate(b))
            })
            .map(|l| warden_engine::Rate::new(l.max, l.per));
        hints
    }

    /// The token lifetime a policy is checked against: the fixed lifetime, or a day for a daily expiry.
    pub fn nominal_lifetime(&self) -> Duration {
        match self.token_expiry {
            TokenExpiry::After(d) => d,
            TokenExpiry::DailyAt(_) => Duration::from_secs(24 * 3600),
        }
    }

    /// What the model supports besides login.
    pub fn capabilities(&self) -> warden_engine::Capabilities {
        warden_engine::Capabilities { refresh: self.refresh_lifetime.is_some(), keepalive: self.keepalive }
    }

    /// The first daily expiry strictly after `t` — the token's daily expiry time or the daily reset,
    /// whichever comes first — after which a [`LoginAfterExpiry::Person`] broker needs a person;
    /// [`UnixMs::MAX`] if the broker has none.
    pub fn next_daily_expiry_after(&self, t: UnixMs) -> UnixMs {
        let token = match self.token_expiry {
            TokenExpiry::DailyAt(at) => warden_engine::calendar::next_local_time_after(t, at, &self.tz),
            TokenExpiry::After(_) => UnixMs::MAX,
        };
        let reset = self
            .daily_reset
            .as_ref()
            .map_or(UnixMs::MAX, |r| warden_engine::calendar::next_local_time_after(t, r.at, &r.tz));
        token.min(reset)
    }

    /// The endpoint serving a request kind, if one is configured.
    pub fn endpoint_of(&self, kind: KindId) -> Option<usize> {
        self.endpoints.iter().position(|e| e.kinds.contains(&kind))
    }

    /// The first reset (daily or weekly) strictly after `t`; [`UnixMs::MAX`] if none.
    pub fn next_reset_after(&self, t: UnixMs) -> UnixMs {
        let daily = self
            .daily_reset
            .as_ref()
            .map_or(UnixMs::MAX, |r| warden_engine::calendar::next_local_time_after(t, r.at, &r.tz));
        let weekly = self.weekly_reset.as_ref().map_or(UnixMs::MAX, |w| next_weekly_after(t, w));
        daily.min(weekly)
    }
}

/// The first occurrence of a weekly reset strictly after `t`.
fn next_weekly_after(t: UnixMs, reset: &WeeklyReset) -> UnixMs {
    let mut from = t;
    for _ in 0..8 {
        let next = warden_engine::calendar::next_local_time_after(from, reset.at, &reset.tz);
        let Some(ts) = next.to_timestamp() else { return UnixMs::MAX };
        if ts.to_zoned(reset.tz.tz().clone()).weekday() == reset.day {
            return next;
        }
        from = next;
    }
    UnixMs::MAX
}

/// The UTC zone, which always exists.
pub(crate) fn utc() -> Zone {
    // jiff bundles the time zone database (`tzdb-bundle-always`), which always has UTC; `Zone` has no
    // constructor that cannot fail, so this is the one place that states it.
    Zone::new("UTC").expect("the bundled time zone database has UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UnixMs {
        UnixMs::from_timestamp(text.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn presets_follow_brokers_md() {
        let saxo = BrokerSpec::preset(ModelKind::Saxo);
        assert_eq!(saxo.nominal_lifetime(), Duration::from_secs(1200));
        assert_eq!(saxo.refresh_lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(saxo.hints().refresh_buffer, Some(Duration::from_secs(30)));
        let ibkr = BrokerSpec::preset(ModelKind::Ibkr);
        assert!(ibkr.capabilities().keepalive);
        assert_eq!(ibkr.hints().keepalive_interval, Some(Duration::from_secs(60)));
        assert_eq!(ibkr.hints().daily_reset.unwrap().at.to_string(), "01:00");
        let openalgo = BrokerSpec::preset(ModelKind::OpenAlgo);
        assert_eq!(openalgo.hints().daily_reset.unwrap().tz.name(), "Asia/Kolkata");
        assert_eq!(BrokerSpec::preset(ModelKind::Zerodha).hints().daily_reset.unwrap().at.to_string(), "06:00");
        for kind in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn weekly_reset_lands_on_its_day() {
        let ibkr = BrokerSpec::preset(ModelKind::Ibkr);
        // Friday 2026-03-13 12:00 UTC: the next reset is the nightly one at 01:00 EDT on Saturday.
        assert_eq!(ibkr.next_reset_after(at("2026-03-13T12:00:00Z")), at("2026-03-14T05:00:00Z"));
        let weekly = ibkr.weekly_reset.clone().unwrap();
        assert_eq!(next_weekly_after(at("2026-03-13T12:00:00Z"), &weekly), at("2026-03-15T05:00:00Z"));
    }

    #[test]
    fn latency_stays_in_range() {
        let mut rng = SplitMix64::new(1);
        let l = Latency::uniform_ms(80, 400);
        for _ in 0..1000 {
            let d = l.sample(&mut rng);
            assert!(d >= Duration::from_millis(80) && d <= Duration::from_millis(400));
        }
        assert_eq!(Latency::fixed(Duration::from_millis(200)).sample(&mut rng), Duration::from_millis(200));
    }
}
