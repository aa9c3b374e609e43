//! Warnings about scenarios that load but cannot go well: [`ScenarioWarning`].
//!
//! A warning is not an error — a scenario may overload a broker on purpose — but it is printed when the
//! scenario loads, with the file, the line and the key, like an error:
//!
//! - the offered load exceeds one of the broker's limits (the account's request limit, the orders
//!   endpoint's, an endpoint's own): requests will queue in warden's limiter until they time out, or
//!   meet 429s;
//! - the token's fixed lifetime cannot cover a day with 25 hours (a daylight-saving change inside the
//!   run) although the session is meant to last from one daily cut-off to the next: that day the token
//!   expires before the cut-off.

use std::fmt;
use std::time::Duration;

use warden_engine::Policy;
use warden_engine::time::format_duration;

use super::Workload;
use warden_adapters::config::locate::KeyPath;

use super::error::Located;
use crate::model::{BrokerSpec, Limit, RateLimit, TokenExpiry};
use crate::report::RunDays;

/// Something about a scenario that will not go well, located like an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioWarning {
    /// The file (or the name given to `Scenario::parse`).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key it is about, as a dotted path.
    pub key: String,
    /// What will not go well.
    pub problem: String,
}

impl fmt::Display for ScenarioWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}, column {}: {}", self.origin, self.line, self.column, self.problem)
    }
}

/// A lifetime meant to last a day: from this long up, a token is taken as meant to cover a day.
const DAY_LIKE_LIFETIME: Duration = Duration::from_secs(22 * 3600);

/// Every warning about a resolved scenario.
pub(crate) fn warnings(
    loc: &Located<'_>,
    broker: &BrokerSpec,
    workload: &Workload,
    policy: &Policy,
    start_end: (warden_engine::UnixMs, warden_engine::UnixMs),
) -> Vec<ScenarioWarning> {
    let mut out = Vec::new();
    let mut warn = |path: KeyPath, problem: String| out.push(loc.warning(&path, problem));
    // The offered load per session: the strategies are spread over the sessions.
    let sessions = workload.sessions.len().max(1) as u32;
    let per_session = f64::from(workload.strategies.div_ceil(sessions)) * workload.rate_per_strategy;
    let total_weight: f64 = workload.mix.iter().map(|m| m.weight).sum();
    let share = |pick: &dyn Fn(usize) -> bool| -> f64 {
        if total_weight <= 0.0 {
            return 0.0;
        }
        workload.mix.iter().enumerate().filter(|(i, _)| pick(*i)).map(|(_, m)| m.weight).sum::<f64>() / total_weight
    };
    let load_path = KeyPath::of(&["workload", "rate_per_strategy"]);
    let what = broker.kind;
    let mut check = |load: f64, limit: &RateLimit, name: &str| {
        for window in &limit.windows {
            if load > rate(window) {
                warn(
                    load_path.clone(),
                    format!(
                        "the offered load ({} per session) exceeds the {what} model's {name} ({} per {} = {}): requests \
                         will wait in warden's limiter until they time out, or meet 429s",
                        per_second(load),
                        window.max,
                        format_duration(window.per),
                        per_second(rate(window)),
                    ),
                );
            }
        }
    };
    if per_session > 0.0 {
        check(per_session, &broker.request_limit, "request limit");
        let mut covered = vec![false; workload.mix.len()];
        for endpoint in &broker.endpoints {
            let kinds: Vec<usize> = endpoint.kinds.iter().map(|k| usize::from(k.0)).collect();
            for k in &kinds {
                if let Some(c) = covered.get_mut(*k) {
                    *c = endpoint.limit.is_some();
                }
            }
            if let Some(limit) = &endpoint.limit {
                let names: Vec<&str> =
                    kinds.iter().filter_map(|k| workload.mix.get(*k)).map(|m| m.kind.as_str()).collect();
                check(per_session * share(&|i| kinds.contains(&i)), limit, &format!("limit for {}", names.join(", ")));
            }
        }
        let orders = share(&|i| !workload.mix[i].idempotent && !covered[i]);
        if orders > 0.0 {
            check(per_session * orders, &broker.order_limit, "order limit");
        }
    }
    // A token meant to last a day, a daily cut-off, and a 25-hour day in the run.
    if let (TokenExpiry::After(lifetime), Some(cutoff)) = (broker.token_expiry, policy.daily_cutoff.as_ref())
        && lifetime >= DAY_LIKE_LIFETIME
    {
        let zone_days = RunDays::new(start_end.0, start_end.1, cutoff.tz.tz());
        if let Some(long) = zone_days.days().iter().find(|d| {
            let length = d.to.saturating_duration_since(d.from);
            length > Duration::from_secs(24 * 3600) && lifetime < length
        }) {
            let length = long.to.saturating_duration_since(long.from);
            let path = if loc.doc.has(&KeyPath::of(&["broker", "token_lifetime"])) {
                KeyPath::of(&["broker", "token_lifetime"])
            } else {
                KeyPath::of(&["broker", "model"])
            };
            warn(
                path,
                format!(
                    "the token lifetime ({}) cannot cover {}, which has {} in {}: a token issued at one daily cut-off \
                     expires {} before the next (a login more that day, or requests meeting a dead session)",
                    format_duration(lifetime),
                    long.date,
                    format_duration(length),
                    cutoff.tz.name(),
                    format_duration(length - lifetime),
                ),
            );
        }
    }
    out
}

/// Events per second of a window.
fn rate(window: &Limit) -> f64 {
    f64::from(window.max) / window.per.as_secs_f64().max(1e-3)
}

/// A rate, written for people: "0.3 req/s".
fn per_second(rate: f64) -> String {
    let rounded = (rate * 100.0).round() / 100.0;
    format!("{rounded} req/s")
}
