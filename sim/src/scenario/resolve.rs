//! From the file as written ([`super::raw`]) to a [`Scenario`]: times placed on the run's calendar,
//! model defaults overridden, the policy built and checked, and every cross-field rule enforced with an
//! error that points at the key.
//!
//! Local times of day are expanded day by day over the run: point events (early expiries, silent
//! de-authentications, competing logins, panics, restarts) on trading days, periods (outages, wrong
//! credentials, second factor, store write failures) on every calendar day. Broker-side local times are
//! in the broker's zone (`[broker] tz`, default the model's home zone); fault times in the zone of `start`.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use warden_engine::policy::{DailyCutoff, LocalTime, Toggle};
use warden_engine::rng::SplitMix64;
use warden_engine::time::format_duration;
use warden_engine::{PolicyError, UnixMs};

use warden_adapters::config::locate::{Document, KeyPath};

use super::error::{Located, ScenarioError, suggest, syntax_error};
use super::raw::{
    AffectName, ArrivalName, ExpectNode, LoginAfterExpiryName, OperatorEntry, PanicEntry, RawBroker, RawLatency,
    RawLimit, RawScenario, RawWindow, RawWorkload, RestartEntry, TransportName, Windows,
};
use super::values::{DayTime, TimeSpec, format_time_of_day};
use super::{
    Arrival, Faults, MAX_DURATION, MAX_HTTP_DURATION, MarketHours, MixEntry, Operator, OperatorAction, PanicFault,
    RestartFault, Scenario, ScriptedBurst, TradingDays, Transport, Workload,
};
use crate::model::{
    Affects, BrokerEvent, BrokerSpec, Endpoint, ErrorRates, EventKind, KindId, Latency, Limit, Lockout,
    LoginAfterExpiry, ModelKind, Outage, OutageMode, RateLimit, RejectionForm, TokenExpiry, WeeklyReset, Window,
};
use crate::report::{self, Bound, Expectation, Expectations, FieldShape, Report, RunDays};

type Result<T> = std::result::Result<T, ScenarioError>;

/// Most strategies a workload may have.
const MAX_STRATEGIES: u32 = 100_000;
/// Most requests per second per strategy.
const MAX_RATE: f64 = 1_000.0;
/// Most broker sessions.
const MAX_SESSIONS: u32 = 1_000;
/// Most random events per day.
const MAX_EVENTS_PER_DAY: f64 = 1_000.0;
/// Most panics in one panic loop.
const MAX_PANIC_LOOP: u32 = 10_000;
/// Most panics over a run (all entries together).
const MAX_PANICS: usize = 100_000;
/// Most requests in one `[[workload.at]]` entry.
const MAX_SCRIPTED_COUNT: u32 = 100_000;
/// Most scripted requests over a run.
const MAX_SCRIPTED_REQUESTS: u64 = 10_000_000;
/// Most process restarts over a run.
const MAX_RESTARTS: usize = 10_000;
/// The largest `max` of a rate-limit window.
const MAX_LIMIT: u32 = 1_000_000;

/// Parses and resolves a scenario.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Scenario> {
    let doc = Document::parse(text).map_err(|e| syntax_error(origin, text, &e))?;
    let loc = Located { origin, doc: &doc };
    let raw: RawScenario = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
    resolve(&loc, raw)
}

/// The run's calendar, and where errors go.
struct Ctx<'a> {
    loc: &'a Located<'a>,
    seed: u64,
    start: UnixMs,
    end: UnixMs,
    days: TradingDays,
}

fn resolve(loc: &Located<'_>, raw: RawScenario) -> Result<Scenario> {
    let root = KeyPath::root();
    if raw.name.trim().is_empty() {
        return Err(loc.invalid(&root.key("name"), "must not be empty"));
    }
    let start = raw.start.at;
    let (end, duration) = match (raw.duration, &raw.end) {
        (Some(_), Some(_)) => return Err(loc.invalid(&root.key("end"), "give either `duration` or `end`, not both")),
        (None, None) => {
            return Err(loc.message_at(&root, "missing key `duration` at the top level (or give `end`)".to_owned()));
        }
        (Some(d), None) => {
            if d.0.is_zero() {
                return Err(loc.invalid(&root.key("duration"), "must be longer than zero"));
            }
            (start.saturating_add(d.0), d.0)
        }
        (None, Some(end)) => {
            if end.at <= start {
                let problem = format!("{} is not after `start` ({start})", end.at);
                return Err(loc.invalid(&root.key("end"), problem));
            }
            (end.at, end.at.saturating_duration_since(start))
        }
    };
    if duration > MAX_DURATION {
        let path = root.key(if raw.end.is_some() { "end" } else { "duration" });
        return Err(
            loc.invalid(&path, format!("the run is {}; at most 366 days are allowed", format_duration(duration)))
        );
    }
    if start.to_timestamp().is_none() || end.to_timestamp().is_none() {
        return Err(loc.invalid(&root.key("start"), "lies outside the years -9999..=9999"));
    }
    let model_path = KeyPath::of(&["broker", "model"]);
    let kind = ModelKind::from_name(&raw.broker.model).ok_or_else(|| {
        let known: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
        let problem = format!(
            "unknown broker model `{}` (known: {}){}",
            raw.broker.model,
            known.join(", "),
            suggest(&raw.broker.model, &known)
        );
        loc.invalid(&model_path, problem)
    })?;
    let transport = match raw.transport {
        None | Some(TransportName::Virtual) => Transport::Virtual,
        Some(TransportName::Http) => {
            let path = root.key("transport");
            if !crate::mock::SERVED.contains(&kind) {
                let problem = format!(
                    "the `{kind}` model has no mock broker; `transport = \"http\"` serves saxo, ibkr, kotak-neo, \
                     zerodha and oauth2"
                );
                return Err(loc.invalid(&path, problem));
            }
            if duration > MAX_HTTP_DURATION {
                let problem = format!(
                    "an HTTP scenario runs in real time: the run is {}, at most {} are allowed (scale the \
                     lifetimes down instead: a 20s token)",
                    format_duration(duration),
                    format_duration(MAX_HTTP_DURATION)
                );
                return Err(loc.invalid(&root.key(if raw.end.is_some() { "end" } else { "duration" }), problem));
            }
            Transport::Http
        }
    };
    let days = match &raw.workload.trading_days {
        None => TradingDays::WEEKDAYS,
        Some(list) if list.is_empty() => {
            return Err(loc.invalid(&KeyPath::of(&["workload", "trading_days"]), "must name at least one day"));
        }
        Some(list) => TradingDays::of(list.iter().map(|d| d.0)),
    };
    let ctx = Ctx { loc, seed: raw.seed, start, end, days };
    let zone = raw.start.zone.clone();
    let workload = resolve_workload(&ctx, raw.workload, kind, &zone)?;
    let broker = resolve_broker(&ctx, raw.broker, kind, &workload)?;
    let policy_file = raw.policy.clone();
    let lifetime = broker.nominal_lifetime();
    let policy = raw
        .policy
        .into_policy(&broker.hints())
        .and_then(|p| p.validate_for_lifetime(lifetime).map(|()| p))
        .map_err(|e| policy_error(loc, &e, kind))?;
    let faults = resolve_faults(&ctx, raw.faults, &zone, workload.sessions.len())?;
    let operator = resolve_operator(&ctx, raw.operator, &zone, workload.sessions.len())?;
    let days = RunDays::new(start, end, workload.zone());
    let kinds: Vec<String> = workload.mix.iter().map(|m| m.kind.clone()).collect();
    let expect = resolve_expect(loc, raw.expect, &Report::template(&kinds, &days), &days)?;
    let warnings = super::feasibility::warnings(loc, &broker, &workload, &policy, (start, end));
    Ok(Scenario {
        name: raw.name,
        description: raw.description,
        origin: loc.origin.to_owned(),
        transport,
        seed: raw.seed,
        start,
        end,
        duration,
        zone,
        broker,
        policy,
        policy_file,
        workload,
        faults,
        operator,
        expect,
        warnings,
    })
}

/// A policy error, pointed at the setting it names (or the preset, when the setting comes from it).
fn policy_error(loc: &Located<'_>, error: &PolicyError, kind: ModelKind) -> ScenarioError {
    let setting = match error {
        PolicyError::Zero { setting }
        | PolicyError::ZeroRate { setting, .. }
        | PolicyError::ZeroCount { setting }
        | PolicyError::Fraction { setting, .. }
        | PolicyError::LongerThanLifetime { setting, .. } => Some(*setting),
        PolicyError::Multiplier { .. } => Some("backoff.multiplier"),
        PolicyError::BackoffOrder { .. } => Some("backoff.min"),
        _ => None,
    };
    let policy = KeyPath::of(&["policy"]);
    let mut path = policy.clone();
    for part in setting.unwrap_or("").split('.').filter(|p| !p.is_empty()) {
        path = path.key(part);
    }
    let at =
        if loc.doc.has(&path) || !loc.doc.has(&policy.key("preset")) { path.clone() } else { policy.key("preset") };
    let problem = match error {
        PolicyError::LongerThanLifetime { value, lifetime, .. } => format!(
            "`{path}` ({}) must be shorter than the token lifetime of the {kind} model ({}){}",
            format_duration(*value),
            format_duration(*lifetime),
            if at == path { String::new() } else { " — the preset sets it; override it in [policy]".to_owned() }
        ),
        other => format!("in [policy]: {other}"),
    };
    let mut located = loc.message_at(&at, problem);
    if let ScenarioError::Invalid { key, .. } = &mut located {
        *key = path.to_string();
    }
    located
}

impl Ctx<'_> {
    fn dates(&self, tz: &TimeZone) -> Vec<Date> {
        let date_of = |t: UnixMs| t.to_timestamp().map(|ts| ts.to_zoned(tz.clone()).date());
        let (Some(first), Some(last)) = (date_of(self.start), date_of(self.end)) else { return Vec::new() };
        let mut dates = Vec::new();
        let mut day = first.yesterday().unwrap_or(first);
        while day <= last {
            dates.push(day);
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        dates
    }

    fn in_run(&self, t: UnixMs) -> bool {
        self.start <= t && t <= self.end
    }

    /// The instants of a list of point events: instants and `+offsets` once, local times on every
    /// trading day; sorted, without repeats.
    fn points(&self, specs: &[TimeSpec], path: &KeyPath, tz: &TimeZone) -> Result<Vec<UnixMs>> {
        let mut out = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            out.extend(self.point(*spec, &path.index(i), tz)?);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The instants of one point event written at `path`.
    fn point(&self, spec: TimeSpec, path: &KeyPath, tz: &TimeZone) -> Result<Vec<UnixMs>> {
        match spec {
            TimeSpec::Daily(at) => Ok(self
                .dates(tz)
                .into_iter()
                .filter(|date| self.days.contains(date.weekday()))
                .filter_map(|date| at_local(date, at, tz))
                .filter(|t| self.in_run(*t))
                .collect()),
            other => Ok(vec![self.instant(other, path)?]),
        }
    }

    /// One instant of the run.
    fn instant(&self, spec: TimeSpec, path: &KeyPath) -> Result<UnixMs> {
        let t = match spec {
            TimeSpec::At(t) => t,
            TimeSpec::AfterStart(d) => self.start.saturating_add(d),
            TimeSpec::Daily(at) => {
                return Err(self.loc.invalid(path, format!("a local time ({at}) names no single instant here")));
            }
        };
        if !self.in_run(t) {
            let problem = format!("{t} is outside the run ({} to {})", self.start, self.end);
            return Err(self.loc.invalid(path, problem));
        }
        Ok(t)
    }

    /// The periods of a `{ from, to }` entry: once for instants, every day for local times.
    fn windows(&self, raw: &RawWindow, path: &KeyPath, tz: &TimeZone) -> Result<Vec<Window>> {
        match (raw.from, raw.to) {
            (TimeSpec::Daily(from), TimeSpec::Daily(to)) => {
                if from == to {
                    return Err(self
                        .loc
                        .invalid(path, format!("`from` and `to` are both {from}: the period is empty")));
                }
                let mut out = Vec::new();
                for date in self.dates(tz) {
                    let end_date = if to > from { Some(date) } else { date.tomorrow().ok() };
                    if let (Some(f), Some(t)) = (at_local(date, from, tz), end_date.and_then(|d| at_local(d, to, tz)))
                        && t > f
                        && t > self.start
                        && f < self.end
                    {
                        out.push(Window { from: f, to: t });
                    }
                }
                Ok(out)
            }
            (TimeSpec::Daily(_), _) | (_, TimeSpec::Daily(_)) => {
                Err(self.loc.invalid(path, "`from` and `to` must both be local times of day, or both instants"))
            }
            (from, to) => {
                let f = self.window_end(from);
                let t = self.window_end(to);
                if t < f {
                    return Err(self
                        .loc
                        .invalid(&path.key("to"), format!("the period ends ({t}) before it starts ({f})")));
                }
                if t == f {
                    return Err(self
                        .loc
                        .invalid(&path.key("to"), format!("the period is empty (it starts and ends at {f})")));
                }
                if t <= self.start || f >= self.end {
                    let problem =
                        format!("the period {f} to {t} lies outside the run ({} to {})", self.start, self.end);
                    return Err(self.loc.invalid(path, problem));
                }
                Ok(vec![Window { from: f, to: t }])
            }
        }
    }

    /// Where a repeated fault (`from`, and `to` if given) repeats: from each start until its end (the end
    /// of the run when there is no `to`). Without `to`, a local `from` starts on every trading day; with
    /// one, the entry is a period (every calendar day for local times).
    fn repeat_spans(&self, from: TimeSpec, to: Option<TimeSpec>, path: &KeyPath, tz: &TimeZone) -> Result<Vec<Window>> {
        match to {
            None => Ok(self
                .point(from, &path.key("from"), tz)?
                .into_iter()
                .map(|at| Window { from: at, to: self.end.saturating_add(Duration::from_millis(1)) })
                .collect()),
            Some(to) => self.windows(&RawWindow { from, to }, path, tz),
        }
    }

    /// The instants `every` apart from the start of each span, before its end, inside the run: at most
    /// `cap` per span.
    fn repeat(&self, spans: &[Window], every: Duration, cap: u32) -> Vec<UnixMs> {
        let mut out = Vec::new();
        for span in spans {
            let mut at = span.from;
            for _ in 0..cap {
                if at >= span.to || at > self.end {
                    break;
                }
                if at >= self.start {
                    out.push(at);
                }
                if every.is_zero() {
                    break;
                }
                at = at.saturating_add(every);
            }
        }
        out
    }

    fn window_end(&self, spec: TimeSpec) -> UnixMs {
        match spec {
            TimeSpec::At(t) => t,
            TimeSpec::AfterStart(d) => self.start.saturating_add(d),
            TimeSpec::Daily(_) => self.start,
        }
    }

    /// Random instants at `rate_per_day` per trading day, spread over the open periods (a Poisson
    /// process), from the scenario's seed and a salt per kind of event.
    fn random_points(&self, rate_per_day: f64, salt: u64, open: &[Window], open_per_day: Duration) -> Vec<UnixMs> {
        let mut out = Vec::new();
        let day_ms = open_per_day.as_millis() as f64;
        if rate_per_day <= 0.0 || day_ms <= 0.0 {
            return out;
        }
        let mean_gap_ms = day_ms / rate_per_day;
        let mut rng = SplitMix64::new(self.seed ^ salt);
        for window in open {
            let mut t = window.from.as_millis() as f64;
            loop {
                t += -(1.0 - rng.next_unit()).ln() * mean_gap_ms;
                if t >= window.to.as_millis() as f64 {
                    break;
                }
                out.push(UnixMs::from_millis(t as i64));
            }
        }
        out
    }
}

/// A local time on a date in a zone (the "compatible" rule across DST changes).
fn at_local(date: Date, at: LocalTime, tz: &TimeZone) -> Option<UnixMs> {
    date.to_datetime(at.0).to_zoned(tz.clone()).ok().map(|z| UnixMs::from_timestamp(z.timestamp()))
}

/// Sorts periods and merges those that overlap or touch.
fn merge(mut windows: Vec<Window>) -> Vec<Window> {
    windows.sort_unstable();
    let mut out: Vec<Window> = Vec::with_capacity(windows.len());
    for w in windows {
        match out.last_mut() {
            Some(last) if w.from <= last.to => last.to = last.to.max(w.to),
            _ => out.push(w),
        }
    }
    out
}

fn resolve_workload(ctx: &Ctx<'_>, raw: RawWorkload, kind: ModelKind, zone: &TimeZone) -> Result<Workload> {
    let loc = ctx.loc;
    let path = KeyPath::of(&["workload"]);
    if raw.strategies > MAX_STRATEGIES {
        return Err(loc.invalid(&path.key("strategies"), format!("{} is more than {MAX_STRATEGIES}", raw.strategies)));
    }
    let rate_per_strategy = match raw.rate_per_strategy {
        Some(r) if !(r > 0.0 && r <= MAX_RATE) => {
            let problem = format!("{r} is not a rate: give requests per second, above 0 and at most {MAX_RATE}");
            return Err(loc.invalid(&path.key("rate_per_strategy"), problem));
        }
        Some(r) => r,
        None if raw.strategies > 0 => {
            let problem =
                format!("missing key `rate_per_strategy` in [workload] (needed with {} strategies)", raw.strategies);
            return Err(loc.message_at(&path.key("strategies"), problem));
        }
        None => 0.0,
    };
    if raw.strategies > 0 && raw.mix.is_empty() {
        let problem = "a workload with strategies needs a request mix: add [[workload.mix]] entries".to_owned();
        return Err(loc.message_at(&path.key("strategies"), problem));
    }
    if !raw.at.is_empty() && raw.mix.is_empty() {
        let problem = "scripted requests name kinds of the request mix: add [[workload.mix]] entries".to_owned();
        return Err(loc.message_at(&path.key("at"), problem));
    }
    if raw.mix.len() > usize::from(u16::MAX) {
        return Err(loc.invalid(&path.key("mix"), "has more than 65535 entries"));
    }
    let mut kinds = BTreeSet::new();
    let mut mix = Vec::with_capacity(raw.mix.len());
    for (i, entry) in raw.mix.into_iter().enumerate() {
        let entry_path = path.key("mix").index(i);
        let weight = entry.weight.unwrap_or(1.0);
        if !(weight > 0.0 && weight.is_finite()) {
            return Err(loc.invalid(&entry_path.key("weight"), format!("{weight} must be a number above 0")));
        }
        if entry.kind.trim().is_empty() {
            return Err(loc.invalid(&entry_path.key("kind"), "must not be empty"));
        }
        if !entry.kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            let problem = format!("`{}`: write a kind with letters, digits, `_` and `-` only", entry.kind);
            return Err(loc.invalid(&entry_path.key("kind"), problem));
        }
        if !kinds.insert(entry.kind.clone()) {
            return Err(loc.invalid(&entry_path.key("kind"), format!("`{}` appears twice in the mix", entry.kind)));
        }
        mix.push(MixEntry { kind: entry.kind, idempotent: entry.idempotent, weight });
    }
    let arrival = match raw.arrival {
        None | Some(ArrivalName::Poisson) => Arrival::Poisson,
        Some(ArrivalName::Periodic) => Arrival::Periodic,
    };
    let hours_path = path.key("market_hours");
    let market_hours = match raw.market_hours {
        None => MarketHours::Always { tz: zone.clone() },
        Some(m) => {
            let tz = m.tz.map_or_else(|| zone.clone(), |z| z.tz().clone());
            match (m.always, m.open, m.close) {
                (Some(true), None, None) => MarketHours::Always { tz },
                (Some(true), _, _) => {
                    return Err(loc.invalid(&hours_path.key("always"), "`always = true` excludes `open` and `close`"));
                }
                (_, Some(DayTime(open)), Some(DayTime(close))) => {
                    if close <= open {
                        let problem = format!(
                            "close ({}) is not after open ({})",
                            format_time_of_day(close),
                            format_time_of_day(open)
                        );
                        return Err(loc.invalid(&hours_path.key("close"), problem));
                    }
                    MarketHours::Daily { open, close, tz }
                }
                (_, open, _) => {
                    let missing = if open.is_none() { "open" } else { "close" };
                    let problem =
                        format!("missing key `{missing}` in [workload.market_hours] (or write `always = true`)");
                    return Err(loc.message_at(&hours_path, problem));
                }
            }
        }
    };
    let sessions = match (raw.hosts, raw.sessions) {
        (Some(_), Some(_)) => {
            return Err(loc.invalid(&path.key("hosts"), "give either `hosts` or `sessions`, not both"));
        }
        (Some(hosts), None) => {
            if kind != ModelKind::OAuth2 {
                let problem = format!("only the oauth2 model has per-host tokens; the {kind} model uses `sessions`");
                return Err(loc.invalid(&path.key("hosts"), problem));
            }
            if hosts.is_empty() {
                return Err(loc.invalid(&path.key("hosts"), "must name at least one host"));
            }
            let mut seen = BTreeSet::new();
            for (i, host) in hosts.iter().enumerate() {
                if let Err(e) = warden_engine::SessionId::new(host.as_str()) {
                    return Err(
                        loc.invalid(&path.key("hosts").index(i), format!("`{host}` cannot name a session: {e}"))
                    );
                }
                if !seen.insert(host) {
                    return Err(loc.invalid(&path.key("hosts").index(i), format!("`{host}` appears twice")));
                }
            }
            hosts
        }
        (None, Some(n)) if n == 0 || n > MAX_SESSIONS => {
            return Err(loc.invalid(&path.key("sessions"), format!("{n} must be between 1 and {MAX_SESSIONS}")));
        }
        (None, Some(1)) | (None, None) => vec![kind.name().to_owned()],
        (None, Some(n)) => (1..=n).map(|i| format!("{kind}.s{i}")).collect(),
    };
    let mut open_windows = Vec::new();
    match &market_hours {
        MarketHours::Always { tz } => {
            for date in ctx.dates(tz) {
                if ctx.days.contains(date.weekday())
                    && let (Some(from), Some(to)) = (
                        at_local(date, LocalTime(jiff::civil::Time::midnight()), tz),
                        date.tomorrow().ok().and_then(|d| at_local(d, LocalTime(jiff::civil::Time::midnight()), tz)),
                    )
                {
                    open_windows.push(Window { from, to });
                }
            }
        }
        MarketHours::Daily { open, close, tz } => {
            for date in ctx.dates(tz) {
                if ctx.days.contains(date.weekday())
                    && let (Some(from), Some(to)) = (at_local(date, *open, tz), at_local(date, *close, tz))
                {
                    open_windows.push(Window { from, to });
                }
            }
        }
    }
    let open_windows = merge(
        open_windows
            .into_iter()
            .map(|w| Window { from: w.from.max(ctx.start), to: w.to.min(ctx.end) })
            .filter(|w| w.from < w.to)
            .collect(),
    );
    let market_zone = match &market_hours {
        MarketHours::Always { tz } | MarketHours::Daily { tz, .. } => tz.clone(),
    };
    let mut scripted = Vec::new();
    let mut scripted_total = 0u64;
    for (i, entry) in raw.at.iter().enumerate() {
        let entry_path = path.key("at").index(i);
        let Some(kind) = mix.iter().position(|m| m.kind == entry.kind) else {
            let known: Vec<&str> = mix.iter().map(|m| m.kind.as_str()).collect();
            let problem = format!(
                "unknown request kind `{}` (the kinds of [[workload.mix]]: {}){}",
                entry.kind,
                known.join(", "),
                suggest(&entry.kind, &known)
            );
            return Err(loc.invalid(&entry_path.key("kind"), problem));
        };
        let count = entry.count.unwrap_or(1);
        if count == 0 || count > MAX_SCRIPTED_COUNT {
            let problem = format!("{count} must be between 1 and {MAX_SCRIPTED_COUNT}");
            return Err(loc.invalid(&entry_path.key("count"), problem));
        }
        let session = match entry.session {
            Some(n) if n as usize >= sessions.len() => {
                let problem = format!("session {n} does not exist (sessions are numbered 0 to {})", sessions.len() - 1);
                return Err(loc.invalid(&entry_path.key("session"), problem));
            }
            other => other.map(|n| n as usize),
        };
        for at in ctx.point(entry.at, &entry_path.key("at"), &market_zone)? {
            scripted_total += u64::from(count);
            if scripted_total > MAX_SCRIPTED_REQUESTS {
                let problem = format!("scripted requests add up to more than {MAX_SCRIPTED_REQUESTS} over the run");
                return Err(loc.invalid(&entry_path, problem));
            }
            scripted.push(ScriptedBurst { at, kind: KindId(kind as u16), count, session });
        }
    }
    // Stable: bursts at the same instant keep the order they are written in.
    scripted.sort_by_key(|b| b.at);
    Ok(Workload {
        scripted,
        strategies: raw.strategies,
        rate_per_strategy,
        arrival,
        mix,
        market_hours,
        trading_days: ctx.days,
        sessions,
        open_windows,
    })
}

fn latency(loc: &Located<'_>, raw: RawLatency, path: &KeyPath) -> Result<Latency> {
    match (raw.fixed, raw.min, raw.max) {
        (Some(fixed), None, None) => Ok(Latency::fixed(fixed.0)),
        (None, Some(min), Some(max)) => {
            if min.0 > max.0 {
                let problem =
                    format!("`min` ({}) is longer than `max` ({})", format_duration(min.0), format_duration(max.0));
                return Err(loc.invalid(&path.key("min"), problem));
            }
            Ok(Latency { min: min.0, max: max.0 })
        }
        _ => Err(loc.invalid(path, r#"write either { fixed = "200ms" } or { min = "80ms", max = "400ms" }"#)),
    }
}

fn rate_limit(
    loc: &Located<'_>,
    windows: Option<Vec<RawLimit>>,
    penalty: Option<Toggle<super::values::SpanDuration>>,
    default: RateLimit,
    path: &KeyPath,
    penalty_key: &str,
) -> Result<RateLimit> {
    let mut limit = default;
    if let Some(list) = windows {
        limit.windows = Vec::with_capacity(list.len());
        for (i, w) in list.into_iter().enumerate() {
            let entry = path.index(i);
            if w.max == 0 || w.max > MAX_LIMIT {
                return Err(loc.invalid(&entry.key("max"), format!("{} must be between 1 and {MAX_LIMIT}", w.max)));
            }
            if w.per.0.is_zero() {
                return Err(loc.invalid(&entry.key("per"), "must be longer than zero"));
            }
            limit.windows.push(Limit { max: w.max, per: w.per.0 });
        }
    }
    match penalty {
        Some(Toggle::On(d)) if d.0.is_zero() => {
            return Err(loc.invalid(&path.parent().key(penalty_key), "must be longer than zero (or \"off\")"));
        }
        Some(Toggle::On(d)) => limit.penalty = Some(d.0),
        Some(Toggle::Off) => limit.penalty = None,
        None => {}
    }
    Ok(limit)
}

/// A rejection form by name; the Kotak forms are for the kotak-neo model only.
fn rejection_form(loc: &Located<'_>, name: &str, kind: ModelKind, path: &KeyPath) -> Result<RejectionForm> {
    let names: Vec<&str> = RejectionForm::NAMED.iter().map(|(_, n)| *n).collect();
    let form = RejectionForm::from_name(name).ok_or_else(|| {
        let problem = format!("unknown rejection form `{name}` (known: {}){}", names.join(", "), suggest(name, &names));
        loc.invalid(path, problem)
    })?;
    if form != RejectionForm::Native && kind != ModelKind::KotakNeo {
        let problem = format!("the {kind} model has one rejection form (`native`); `{name}` is one of Kotak Neo's");
        return Err(loc.invalid(path, problem));
    }
    Ok(form)
}

fn resolve_broker(ctx: &Ctx<'_>, raw: RawBroker, kind: ModelKind, workload: &Workload) -> Result<BrokerSpec> {
    let loc = ctx.loc;
    let path = KeyPath::of(&["broker"]);
    let mut spec = BrokerSpec::preset(kind);
    if let Some(tz) = raw.tz {
        spec.tz = tz;
    }
    let tz = spec.tz.tz().clone();
    match (raw.token_lifetime, raw.token_expires_at) {
        (Some(_), Some(_)) => {
            return Err(loc.invalid(
                &path.key("token_expires_at"),
                "give either `token_lifetime` or `token_expires_at`, not both",
            ));
        }
        (Some(d), None) if d.0.is_zero() => {
            return Err(loc.invalid(&path.key("token_lifetime"), "must be longer than zero"));
        }
        (Some(d), None) => spec.token_expiry = TokenExpiry::After(d.0),
        (None, Some(at)) => spec.token_expiry = TokenExpiry::DailyAt(at.0),
        (None, None) => {}
    }
    match raw.refresh_lifetime {
        Some(Toggle::On(_)) if !matches!(kind, ModelKind::Saxo | ModelKind::OAuth2) => {
            let problem = format!("the {kind} model has no refresh token (only saxo and oauth2 have one)");
            return Err(loc.invalid(&path.key("refresh_lifetime"), problem));
        }
        Some(Toggle::On(d)) if d.0.is_zero() => {
            return Err(loc.invalid(&path.key("refresh_lifetime"), "must be longer than zero (or \"off\")"));
        }
        Some(Toggle::On(d)) => spec.refresh_lifetime = Some(d.0),
        Some(Toggle::Off) => spec.refresh_lifetime = None,
        None => {}
    }
    match raw.idle_timeout {
        Some(Toggle::On(d)) if d.0.is_zero() => {
            return Err(loc.invalid(&path.key("idle_timeout"), "must be longer than zero (or \"off\")"));
        }
        Some(Toggle::On(d)) => spec.idle_timeout = Some(d.0),
        Some(Toggle::Off) => spec.idle_timeout = None,
        None => {}
    }
    if let Some(k) = raw.keepalive_required {
        spec.keepalive = k;
    }
    if let Some(r) = raw.login_revokes_previous {
        spec.login_revokes_previous = r;
    }
    match raw.daily_reset {
        Some(Toggle::On(r)) => {
            spec.daily_reset =
                Some(DailyCutoff { at: r.at.0, tz: r.tz.unwrap_or_else(|| spec.tz.clone()), warmup: None });
        }
        Some(Toggle::Off) => spec.daily_reset = None,
        None => {}
    }
    match raw.weekly_reset {
        Some(Toggle::On(r)) => {
            spec.weekly_reset =
                Some(WeeklyReset { day: r.day.0, at: r.at.0, tz: r.tz.unwrap_or_else(|| spec.tz.clone()) });
        }
        Some(Toggle::Off) => spec.weekly_reset = None,
        None => {}
    }
    for (key, raw_latency, target) in [
        ("login_latency", raw.login_latency, &mut spec.login_latency),
        ("refresh_latency", raw.refresh_latency, &mut spec.refresh_latency),
        ("keepalive_latency", raw.keepalive_latency, &mut spec.keepalive_latency),
        ("request_latency", raw.request_latency, &mut spec.request_latency),
    ] {
        if let Some(l) = raw_latency {
            *target = latency(loc, l, &path.key(key))?;
        }
    }
    if let Some(e) = raw.errors {
        let d = spec.errors;
        spec.errors = ErrorRates {
            login: e.login.map_or(d.login, |p| p.0),
            refresh: e.refresh.map_or(d.refresh, |p| p.0),
            keepalive: e.keepalive.map_or(d.keepalive, |p| p.0),
            request: e.request.map_or(d.request, |p| p.0),
            response_lost: e.response_lost.map_or(d.response_lost, |p| p.0),
        };
    }
    spec.login_limit = rate_limit(
        loc,
        raw.login_limits,
        raw.login_penalty,
        spec.login_limit,
        &path.key("login_limits"),
        "login_penalty",
    )?;
    spec.request_limit = rate_limit(
        loc,
        raw.request_limits,
        raw.request_penalty,
        spec.request_limit,
        &path.key("request_limits"),
        "request_penalty",
    )?;
    spec.order_limit = rate_limit(
        loc,
        raw.order_limits,
        raw.order_penalty,
        spec.order_limit,
        &path.key("order_limits"),
        "order_penalty",
    )?;
    if let Some(name) = &raw.rejection_form {
        spec.rejection_form = rejection_form(loc, name, kind, &path.key("rejection_form"))?;
    }
    match raw.login_after_expiry {
        Some(LoginAfterExpiryName::Automatic) => spec.login_after_expiry = LoginAfterExpiry::Automatic,
        Some(LoginAfterExpiryName::Person) => spec.login_after_expiry = LoginAfterExpiry::Person,
        None => {}
    }
    if spec.login_after_expiry == LoginAfterExpiry::Person
        && !matches!(spec.token_expiry, TokenExpiry::DailyAt(_))
        && spec.daily_reset.is_none()
    {
        let at = if loc.doc.has(&path.key("login_after_expiry")) { "login_after_expiry" } else { "model" };
        let problem = format!(
            "a login that needs a person after the daily expiry needs a daily expiry: give the {kind} model \
             `token_expires_at` or `daily_reset` (or `login_after_expiry = \"automatic\"`)"
        );
        return Err(loc.invalid(&path.key(at), problem));
    }
    if let Some(d) = raw.login_code_lifetime {
        if d.0.is_zero() {
            return Err(loc.invalid(&path.key("login_code_lifetime"), "must be longer than zero"));
        }
        spec.login_code_lifetime = d.0;
    }
    let mut served: Vec<Option<usize>> = vec![None; workload.mix.len()];
    for (i, raw_endpoint) in raw.endpoints.iter().enumerate() {
        let entry = path.key("endpoints").index(i);
        if raw_endpoint.kinds.is_empty() {
            return Err(loc.invalid(&entry.key("kinds"), "names no request kind"));
        }
        let mut endpoint = Endpoint::default();
        for (j, name) in raw_endpoint.kinds.iter().enumerate() {
            let Some(k) = workload.mix.iter().position(|m| m.kind == *name) else {
                let known: Vec<&str> = workload.mix.iter().map(|m| m.kind.as_str()).collect();
                let problem = format!(
                    "unknown request kind `{name}` (the kinds of [[workload.mix]]: {}){}",
                    known.join(", "),
                    suggest(name, &known)
                );
                return Err(loc.invalid(&entry.key("kinds").index(j), problem));
            };
            if let Some(other) = served[k].replace(i) {
                let problem = format!("`{name}` is already served by endpoint #{}", other + 1);
                return Err(loc.invalid(&entry.key("kinds").index(j), problem));
            }
            endpoint.kinds.push(KindId(k as u16));
        }
        if raw_endpoint.limits.is_some() || raw_endpoint.penalty.is_some() {
            let limit = rate_limit(
                loc,
                raw_endpoint.limits.clone(),
                raw_endpoint.penalty.clone(),
                RateLimit::default(),
                &entry.key("limits"),
                "penalty",
            )?;
            endpoint.limit = Some(limit);
        }
        if let Some(name) = &raw_endpoint.rejection_form {
            endpoint.rejection_form = Some(rejection_form(loc, name, kind, &entry.key("rejection_form"))?);
        }
        if let Some(times) = &raw_endpoint.early_expiries {
            endpoint.early_expiries = ctx.points(times, &entry.key("early_expiries"), &tz)?;
        }
        spec.endpoints.push(endpoint);
    }
    // Outages: expanded, then checked for overlap (which would make "what fails" ambiguous).
    let mut outages: Vec<(Outage, usize)> = Vec::new();
    for (i, o) in raw.outages.iter().enumerate() {
        let entry = path.key("outages").index(i);
        let affects = match &o.affects {
            None => Affects::ALL,
            Some(list) if list.is_empty() => {
                return Err(
                    loc.invalid(&entry.key("affects"), "names nothing: list login, refresh, keepalive or requests")
                );
            }
            Some(list) => list.iter().fold(Affects::NONE, |mut a, name| {
                match name {
                    AffectName::Login => a.login = true,
                    AffectName::Refresh => a.refresh = true,
                    AffectName::Keepalive => a.keepalive = true,
                    AffectName::Requests => a.requests = true,
                }
                a
            }),
        };
        let mode = match o.hang {
            Some(h) if h.0.is_zero() => return Err(loc.invalid(&entry.key("hang"), "must be longer than zero")),
            Some(h) => OutageMode::Hang(h.0),
            None => OutageMode::Error,
        };
        let window = RawWindow { from: o.from, to: o.to };
        for w in ctx.windows(&window, &entry, &tz)? {
            outages.push((Outage { window: w, affects, mode }, i));
        }
    }
    outages.sort_by_key(|(o, _)| o.window);
    for pair in outages.windows(2) {
        if let [(a, first), (b, second)] = pair
            && b.window.from < a.window.to
        {
            let problem = format!(
                "overlaps outage #{} ({} to {}); merge them or make them disjoint",
                first + 1,
                a.window.from,
                a.window.to
            );
            return Err(loc.invalid(&path.key("outages").index(*first.max(second)), problem));
        }
    }
    spec.outages = outages.into_iter().map(|(o, _)| o).collect();
    for (key, windows, target) in [
        ("wrong_credentials", raw.wrong_credentials, &mut spec.wrong_credentials),
        ("second_factor", raw.second_factor, &mut spec.second_factor),
    ] {
        *target = match windows {
            None => Vec::new(),
            Some(Windows::Always) => vec![Window::ALWAYS],
            Some(Windows::List(list)) => {
                let mut all = Vec::new();
                for (i, w) in list.iter().enumerate() {
                    let entry = if list.len() == 1 && !loc.doc.has(&path.key(key).index(0)) {
                        path.key(key)
                    } else {
                        path.key(key).index(i)
                    };
                    all.extend(ctx.windows(w, &entry, &tz)?);
                }
                merge(all)
            }
        };
    }
    match raw.lockout {
        Some(Toggle::On(l)) if l.after == 0 => {
            return Err(loc.invalid(&path.key("lockout").key("after"), "must be at least 1"));
        }
        Some(Toggle::On(l)) if l.duration.0.is_zero() => {
            return Err(loc.invalid(&path.key("lockout").key("for"), "must be longer than zero"));
        }
        Some(Toggle::On(l)) => spec.lockout = Some(Lockout { after: l.after, duration: l.duration.0 }),
        Some(Toggle::Off) => spec.lockout = None,
        None => {}
    }
    let open_per_day = match &workload.market_hours {
        MarketHours::Always { .. } => Duration::from_secs(24 * 3600),
        MarketHours::Daily { open, close, .. } => {
            let millis = |t: LocalTime| {
                (i64::from(t.0.hour()) * 3600 + i64::from(t.0.minute()) * 60 + i64::from(t.0.second())) * 1000
                    + i64::from(t.0.subsec_nanosecond() / 1_000_000)
            };
            Duration::from_millis((millis(*close) - millis(*open)).max(0).unsigned_abs())
        }
    };
    let mut events = Vec::new();
    for (key, rate_key, specs, rate, kind_of, salt) in [
        (
            "early_expiries",
            "early_expiry_rate_per_day",
            raw.early_expiries,
            raw.early_expiry_rate_per_day,
            EventKind::EarlyExpiry,
            0xE4A1_7E59_0000_0001u64,
        ),
        (
            "silent_deauths",
            "silent_deauth_rate_per_day",
            raw.silent_deauths,
            raw.silent_deauth_rate_per_day,
            EventKind::SilentDeauth,
            0x51DE_DEA0_0000_0002,
        ),
        ("competing_logins", "", raw.competing_logins, None, EventKind::CompetingLogin, 0),
    ] {
        if let Some(specs) = specs {
            for at in ctx.points(&specs, &path.key(key), &tz)? {
                events.push(BrokerEvent { at, kind: kind_of });
            }
        }
        if let Some(rate) = rate {
            if !(0.0..=MAX_EVENTS_PER_DAY).contains(&rate) {
                let problem = format!("{rate} must be a rate per trading day from 0 to {MAX_EVENTS_PER_DAY}");
                return Err(loc.invalid(&path.key(rate_key), problem));
            }
            for at in ctx.random_points(rate, salt, &workload.open_windows, open_per_day) {
                events.push(BrokerEvent { at, kind: kind_of });
            }
        }
    }
    events.sort_unstable();
    spec.events = events;
    Ok(spec)
}

fn resolve_operator(ctx: &Ctx<'_>, raw: super::raw::RawOperator, zone: &TimeZone, sessions: usize) -> Result<Operator> {
    let path = KeyPath::of(&["operator"]);
    let mut lists = [Vec::new(), Vec::new()];
    for ((key, entries), out) in [("login_codes", raw.login_codes), ("resets", raw.resets)].into_iter().zip(&mut lists)
    {
        for (i, entry) in entries.iter().enumerate() {
            let entry_path = path.key(key).index(i);
            let (spec, session, at_path) = match entry {
                OperatorEntry::At(spec) => (*spec, None, entry_path.clone()),
                OperatorEntry::Table(t) => (t.at, t.session, entry_path.key("at")),
            };
            if let Some(s) = session
                && s as usize >= sessions
            {
                let problem = format!("session {s} does not exist (sessions are numbered 0 to {})", sessions - 1);
                return Err(ctx.loc.invalid(&entry_path.key("session"), problem));
            }
            for at in ctx.point(spec, &at_path, zone)? {
                out.push(OperatorAction { at, session: session.map(|s| s as usize) });
            }
        }
        out.sort_by_key(|a| (a.at, a.session));
    }
    let [login_codes, resets] = lists;
    Ok(Operator { login_codes, resets })
}

fn resolve_faults(ctx: &Ctx<'_>, raw: super::raw::RawFaults, zone: &TimeZone, sessions: usize) -> Result<Faults> {
    let loc = ctx.loc;
    let path = KeyPath::of(&["faults"]);
    let mut panics = Vec::new();
    for (i, entry) in raw.panics.iter().enumerate() {
        let entry_path = path.key("panics").index(i);
        match entry {
            PanicEntry::At(spec) => {
                for at in ctx.point(*spec, &entry_path, zone)? {
                    panics.push(PanicFault { at, session: None });
                }
            }
            PanicEntry::Loop(l) => {
                if let Some(count) = l.count
                    && (count == 0 || count > MAX_PANIC_LOOP)
                {
                    let problem = format!("{count} must be between 1 and {MAX_PANIC_LOOP}");
                    return Err(loc.invalid(&entry_path.key("count"), problem));
                }
                if l.count.is_none() && l.to.is_none() {
                    let problem = format!(
                        "missing key `count` {} (or give `to`: panics `every` apart until then)",
                        entry_path.table_phrase()
                    );
                    return Err(loc.message_at(&entry_path, problem));
                }
                let every = repeat_every(loc, l.every, l.count.unwrap_or(2) > 1, &entry_path, Duration::ZERO)?;
                let session = match l.session {
                    Some(s) if s as usize >= sessions => {
                        let problem =
                            format!("session {s} does not exist (sessions are numbered 0 to {})", sessions - 1);
                        return Err(loc.invalid(&entry_path.key("session"), problem));
                    }
                    other => other.map(|s| s as usize),
                };
                let spans = ctx.repeat_spans(l.from, l.to, &entry_path, zone)?;
                let cap = l.count.unwrap_or(MAX_PANIC_LOOP);
                for at in ctx.repeat(&spans, every, cap) {
                    panics.push(PanicFault { at, session });
                    if panics.len() > MAX_PANICS {
                        return Err(
                            loc.invalid(&entry_path, format!("gives more than {MAX_PANICS} panics over the run"))
                        );
                    }
                }
            }
        }
    }
    panics.sort_by_key(|p| (p.at, p.session));
    let mut restarts = Vec::new();
    for (i, entry) in raw.restarts.iter().enumerate() {
        let entry_path = path.key("restarts").index(i);
        match entry {
            RestartEntry::At(spec) => {
                let instants = ctx.point(*spec, &entry_path, zone)?;
                restarts.extend(instants.into_iter().map(|at| RestartFault { at, downtime: Duration::ZERO }));
            }
            RestartEntry::Table(t) => {
                let downtime = t.downtime.map_or(Duration::ZERO, |d| d.0);
                match (t.at, t.from) {
                    (Some(_), Some(_)) => {
                        let problem = "give either `at` (one restart) or `from`, `to` and `every`, not both";
                        return Err(loc.invalid(&entry_path.key("from"), problem));
                    }
                    (None, None) => {
                        let problem =
                            format!("missing key `at` {} (or `from`, `to` and `every`)", entry_path.table_phrase());
                        return Err(loc.message_at(&entry_path, problem));
                    }
                    (Some(at), None) => {
                        for key in ["to", "every"] {
                            if loc.doc.has(&entry_path.key(key)) {
                                let problem = format!("`{key}` goes with `from`, not with `at`");
                                return Err(loc.invalid(&entry_path.key(key), problem));
                            }
                        }
                        let instants = ctx.point(at, &entry_path.key("at"), zone)?;
                        restarts.extend(instants.into_iter().map(|at| RestartFault { at, downtime }));
                    }
                    (None, Some(from)) => {
                        if t.to.is_none() {
                            let problem = format!(
                                "missing key `to` {} (restarts `every` apart until then)",
                                entry_path.table_phrase()
                            );
                            return Err(loc.message_at(&entry_path, problem));
                        }
                        let every = repeat_every(loc, t.every, true, &entry_path, downtime)?;
                        let spans = ctx.repeat_spans(from, t.to, &entry_path, zone)?;
                        for at in ctx.repeat(&spans, every, MAX_RESTARTS as u32 + 1) {
                            restarts.push(RestartFault { at, downtime });
                            if restarts.len() > MAX_RESTARTS {
                                let problem = format!("gives more than {MAX_RESTARTS} restarts over the run");
                                return Err(loc.invalid(&entry_path, problem));
                            }
                        }
                    }
                }
            }
        }
    }
    restarts.sort_by_key(|r| r.at);
    let mut store_write_failures = Vec::new();
    for (i, w) in raw.store_write_failures.iter().enumerate() {
        store_write_failures.extend(ctx.windows(w, &path.key("store_write_failures").index(i), zone)?);
    }
    Ok(Faults { panics, restarts, store_write_failures: merge(store_write_failures) })
}

/// The `every` of a repeated fault: required when it repeats, longer than zero and than `downtime`.
fn repeat_every(
    loc: &Located<'_>,
    every: Option<super::values::SpanDuration>,
    repeats: bool,
    path: &KeyPath,
    downtime: Duration,
) -> Result<Duration> {
    match every {
        Some(e) if e.0.is_zero() => Err(loc.invalid(&path.key("every"), "must be longer than zero")),
        Some(e) if e.0 <= downtime => {
            let problem = format!(
                "({}) must be longer than the `downtime` ({}): a restart cannot begin while the process is down",
                format_duration(e.0),
                format_duration(downtime)
            );
            Err(loc.invalid(&path.key("every"), problem))
        }
        Some(e) => Ok(e.0),
        None if repeats => {
            let problem = format!("missing key `every` {} (needed when it repeats)", path.table_phrase());
            Err(loc.message_at(path, problem))
        }
        None => Ok(Duration::ZERO),
    }
}

/// The keys of a bound table.
const BOUND_KEYS: [&str; 3] = ["min", "max", "per_day"];

fn resolve_expect(
    loc: &Located<'_>,
    raw: std::collections::BTreeMap<String, ExpectNode>,
    template: &Report,
    days: &RunDays,
) -> Result<Expectations> {
    let mut items = Vec::with_capacity(raw.len());
    let known = report::field_names(template);
    let mut ctx =
        ExpectCtx { loc, template, days, known: known.iter().map(String::as_str).collect(), items: &mut items };
    for (name, node) in &raw {
        ctx.node(&KeyPath::of(&["expect"]).key(name), name, node)?;
    }
    Ok(Expectations::new(items))
}

/// Turns `[expect]` nodes into expectations, checking each field against the report's shape.
struct ExpectCtx<'a, 'b> {
    loc: &'a Located<'a>,
    template: &'a Report,
    days: &'a RunDays,
    known: Vec<&'a str>,
    items: &'b mut Vec<Expectation>,
}

impl ExpectCtx<'_, '_> {
    /// The node written at `path` for the report field `name`.
    fn node(&mut self, path: &KeyPath, name: &str, node: &ExpectNode) -> Result<()> {
        let shape = report::field_shape(self.template, name);
        match node {
            ExpectNode::Table(entries) => {
                // A bound table, or a table of subfields? An event category has both bounds and subfields
                // (`events.cutoff.first_ms`): keys close to a bound key are taken as misspelt bounds.
                let is_bound = entries.iter().any(|(k, _)| BOUND_KEYS.contains(&k.as_str()));
                let bound_like = match shape {
                    Some(FieldShape::Number) => true,
                    Some(FieldShape::Events) => entries.iter().all(|(k, _)| !suggest(k, &BOUND_KEYS).is_empty()),
                    _ => false,
                };
                if is_bound || bound_like || entries.is_empty() {
                    let shape = self.field(path, name, shape)?;
                    return self.bound(path, name, shape, entries);
                }
                if shape == Some(FieldShape::Flag) {
                    return Err(self.loc.invalid(path, "is true or false: write `= true` or `= false`"));
                }
                for (key, child) in entries {
                    self.node(&path.key(key), &format!("{name}.{key}"), child)?;
                }
                Ok(())
            }
            ExpectNode::Flag(value) => match self.field(path, name, shape)? {
                FieldShape::Flag => {
                    self.items.push(Expectation::new(name, Bound::Is(*value)));
                    Ok(())
                }
                _ => Err(self.loc.invalid(path, "is a number: write { max = N }, { min = N } or both")),
            },
            ExpectNode::Number(v) => {
                self.field(path, name, shape)?;
                let problem = format!("a bare number ({v}) is not a bound: write {{ max = {v} }} or {{ min = {v} }}");
                Err(self.loc.invalid(path, problem))
            }
            ExpectNode::Other(what) => {
                self.field(path, name, shape)?;
                let problem = format!("expected a bound {{ min = …, max = … }} or true/false, found {what}");
                Err(self.loc.invalid(path, problem))
            }
        }
    }

    /// The shape of a known field, or the unknown-field error with a suggestion.
    fn field(&self, path: &KeyPath, name: &str, shape: Option<FieldShape>) -> Result<FieldShape> {
        shape.ok_or_else(|| {
            let hint = suggest(name, &self.known);
            let problem = if hint.is_empty() {
                format!(
                    "unknown report field `{name}` in [expect] (fields: {}; see docs/scenarios.md)",
                    self.known.iter().filter(|k| !k.contains('.')).copied().collect::<Vec<_>>().join(", ")
                )
            } else {
                format!("unknown report field `{name}` in [expect]{hint}")
            };
            self.loc.message_at(path, problem)
        })
    }

    /// A `{ min, max, per_day }` table for the field `name`.
    fn bound(&mut self, path: &KeyPath, name: &str, shape: FieldShape, entries: &[(String, ExpectNode)]) -> Result<()> {
        if shape == FieldShape::Flag {
            return Err(self.loc.invalid(path, "is true or false: write `= true` or `= false`"));
        }
        let (mut min, mut max, mut per_day) = (None, None, None);
        for (key, value) in entries {
            let at = path.key(key);
            match key.as_str() {
                "min" => min = Some(self.count(&at, value)?),
                "max" => max = Some(self.count(&at, value)?),
                "per_day" => {
                    if shape != FieldShape::Events {
                        let problem = "only an event category (`events.<name>`) has per-day counts";
                        return Err(self.loc.invalid(&at, problem));
                    }
                    if !self.days.days().iter().any(|d| d.full) {
                        let problem = "the run covers no whole day in the market's zone, so there is no day to judge";
                        return Err(self.loc.invalid(&at, problem));
                    }
                    per_day = Some(match value {
                        ExpectNode::Table(range) => {
                            let (mut lo, mut hi) = (None, None);
                            for (k, v) in range {
                                match k.as_str() {
                                    "min" => lo = Some(self.count(&at.key(k), v)?),
                                    "max" => hi = Some(self.count(&at.key(k), v)?),
                                    other => {
                                        let problem = format!(
                                            "unknown key `{other}` in [{at}]{}",
                                            suggest(other, &["min", "max"])
                                        );
                                        return Err(self.loc.message_at(&at.key(other), problem));
                                    }
                                }
                            }
                            self.range(&at, lo, hi)?
                        }
                        exact => {
                            let n = self.count(&at, exact)?;
                            (Some(n), Some(n))
                        }
                    });
                }
                other => {
                    let problem = format!("unknown key `{other}` in [{path}]{}", suggest(other, &BOUND_KEYS));
                    return Err(self.loc.message_at(&at, problem));
                }
            }
        }
        if min.is_none() && max.is_none() && per_day.is_none() {
            return Err(self.loc.invalid(path, "bounds nothing: give `min`, `max` or both"));
        }
        if min.is_some() || max.is_some() {
            let (min, max) = self.range(path, min, max)?;
            self.items.push(Expectation::new(name, Bound::Range { min, max }));
        }
        if let Some((min, max)) = per_day {
            self.items.push(Expectation::new(name, Bound::PerDay { min, max }));
        }
        Ok(())
    }

    fn count(&self, path: &KeyPath, node: &ExpectNode) -> Result<f64> {
        match node {
            ExpectNode::Number(v) if *v >= 0.0 && v.is_finite() => Ok(*v),
            ExpectNode::Number(v) => Err(self.loc.invalid(path, format!("{v} must be a number of at least 0"))),
            _ => Err(self.loc.invalid(path, "must be a number")),
        }
    }

    fn range(&self, path: &KeyPath, min: Option<f64>, max: Option<f64>) -> Result<(Option<f64>, Option<f64>)> {
        match (min, max) {
            (Some(lo), Some(hi)) if lo > hi => {
                Err(self.loc.invalid(path, format!("`min` ({lo}) is above `max` ({hi})")))
            }
            (None, None) => Err(self.loc.invalid(path, "bounds nothing: give `min`, `max` or both")),
            range => Ok(range),
        }
    }
}
