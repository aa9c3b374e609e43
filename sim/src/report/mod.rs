//! What a simulated run produced: [`Report`] (the request and session counters, the safety counters,
//! failures by error kind, outcomes per request kind, engine events per day), the `[expect]` bounds that
//! judge it ([`Expectations`]), and the plain-text tables the CLI prints.
//!
//! A report serialises with its fields in declaration order and its maps sorted, so two runs of the same
//! scenario and seed give byte-identical JSON. Every field an `[expect]` bound may name is a path in that
//! JSON (`failed_by.timeout`, `events.warmup_login`). The runner fills the counters, then calls
//! [`Report::finish`] (which derives the safety flags and totals) and [`Expectations::evaluate`].
//!
//! ```
//! use warden_sim::report::{Bound, Expectation, Expectations, Report};
//!
//! let mut report = Report::new("demo", 7, "hybrid");
//! report.logins = 3;
//! report.finish();
//! let expect = Expectations::new(vec![
//!     Expectation::new("logins", Bound::at_most(8.0)),
//!     Expectation::new("failed_by.timeout", Bound::at_most(0.0)),
//!     Expectation::new("never_dead_token", Bound::Is(true)),
//! ]);
//! expect.evaluate(&mut report);
//! assert!(report.passed());
//! ```

mod counts;
mod days;
mod expect;
mod histogram;
mod table;

use std::collections::BTreeMap;

use serde::Serialize;

pub use counts::{
    EventCategory, EventSummary, EventTally, FailureCounts, FailureKind, InvalidCounts, InvalidKind, KindCounts,
};
pub use days::{RunDay, RunDays};
pub use expect::{Actual, Bound, Expectation, ExpectationResult, Expectations, FieldShape, field_names, field_shape};
pub use histogram::DelayHistogram;
pub use table::{render_comparison, render_table};

/// One day of the run, as listed in the report (the `per_day` counts follow this list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayEntry {
    /// The date in the market's zone.
    pub date: String,
    /// Whether the run covers the whole day (only these are judged by `per_day` bounds).
    pub full: bool,
}

/// The outcome of one simulated run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed it ran with.
    pub seed: u64,
    /// The policy preset it ran with.
    pub policy: String,
    /// Workload requests issued.
    pub requests_total: u64,
    /// Requests that succeeded.
    pub requests_ok: u64,
    /// Requests that finally failed (after any retries), not counting `outcome_unknown`.
    pub requests_failed: u64,
    /// Attempts made again after a rejection (rule 7).
    pub requests_retried: u64,
    /// Login grants warden installed (from the engine's events).
    pub logins: u64,
    /// Logins that reached the broker, successful or not.
    pub login_attempts: u64,
    /// Logins the broker granted that warden never installed (the answer came after the session moved on,
    /// or the process died with the login in flight).
    pub logins_discarded: u64,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Keep-alive pings that reached the broker.
    pub keepalives: u64,
    /// Failed logins.
    pub login_failures: u64,
    /// Requests the broker refused for their token (expired, revoked or unknown).
    pub rejections: u64,
    /// The longest time from issuing a request to its answer, in ms (network latency included).
    pub max_request_delay_ms: u64,
    /// The 99th percentile of that time, in ms.
    pub p99_request_delay_ms: u64,
    /// The longest time a request waited inside warden (for a token, or the request limiter) before its
    /// first attempt was sent, in ms.
    pub max_token_wait_ms: u64,
    /// The 99th percentile of that wait, in ms.
    pub p99_token_wait_ms: u64,
    /// Requests that presented a token past its declared expiry (warden served a dead token).
    pub dead_token_uses: u64,
    /// Non-idempotent operations the broker executed more than once.
    pub duplicate_orders: u64,
    /// Requests answered `OutcomeUnknown` (the broker may or may not have executed them).
    pub outcome_unknown: u64,
    /// Failed refresh-token grants.
    pub refresh_failures: u64,
    /// Keep-alive pings that did not say `Alive`.
    pub keepalive_failures: u64,
    /// Broker calls answered 429.
    pub rate_limited: u64,
    /// Times the broker locked the account after wrong credentials.
    pub account_lockouts: u64,
    /// `dead_token_uses == 0`.
    pub never_dead_token: bool,
    /// `duplicate_orders == 0`.
    pub no_duplicate_orders: bool,
    /// Failed requests by kind of error (they add up to `requests_failed + outcome_unknown`).
    pub failed_by: FailureCounts,
    /// Requests failed because the session gave up, by its reason (they add up to `failed_by.invalid`).
    pub invalid_by: InvalidCounts,
    /// Outcomes per request kind (the `[[workload.mix]]` entries).
    pub by_kind: BTreeMap<String, KindCounts>,
    /// The calendar days of the run in the market's zone.
    pub days: Vec<DayEntry>,
    /// Engine events by category: how many, per day, first and last.
    pub events: BTreeMap<String, EventSummary>,
    /// Milliseconds spent in each session state (summed over sessions), by state name.
    pub time_in_state: BTreeMap<String, u64>,
    /// Milliseconds in `Invalid`.
    pub time_in_invalid_ms: u64,
    /// Milliseconds in the states that hand out no token (all but `Valid` and `ExpiringSoon`).
    pub time_unusable_ms: u64,
    /// The `[expect]` bounds and whether each held.
    pub expectations: Vec<ExpectationResult>,
}

/// The session states, for `time_in_state.<State>` bounds.
pub const STATE_NAMES: [&str; 7] =
    ["Initializing", "Valid", "ExpiringSoon", "Expired", "Reinitializing", "Invalid", "Stopped"];

impl Report {
    /// An empty report of a run: every state, event category and failure bucket present, at zero.
    pub fn new(scenario: impl Into<String>, seed: u64, policy: impl Into<String>) -> Report {
        Report {
            scenario: scenario.into(),
            seed,
            policy: policy.into(),
            never_dead_token: true,
            no_duplicate_orders: true,
            events: EventCategory::ALL.iter().map(|c| (c.name().to_owned(), EventSummary::default())).collect(),
            time_in_state: STATE_NAMES.iter().map(|s| ((*s).to_owned(), 0)).collect(),
            ..Report::default()
        }
    }

    /// A report shaped like the ones a scenario with these request kinds and days produces (for checking
    /// `[expect]` field names before a run).
    pub fn template(kinds: &[String], days: &RunDays) -> Report {
        let mut report = Report::new("", 0, "");
        report.by_kind = kinds.iter().map(|k| (k.clone(), KindCounts::default())).collect();
        report.days = day_entries(days);
        for summary in report.events.values_mut() {
            *summary = EventSummary {
                per_day: vec![0; days.len()],
                first: Some(String::new()),
                last: Some(String::new()),
                first_ms: Some(0),
                last_ms: Some(0),
                ..EventSummary::default()
            };
        }
        report
    }

    /// Derives the safety flags and the time totals from the counters; call once the counters are final.
    pub fn finish(&mut self) {
        self.never_dead_token = self.dead_token_uses == 0;
        self.no_duplicate_orders = self.duplicate_orders == 0;
        self.time_in_invalid_ms = self.time_in_state.get("Invalid").copied().unwrap_or(0);
        self.time_unusable_ms = self
            .time_in_state
            .iter()
            .filter(|(state, _)| !matches!(state.as_str(), "Valid" | "ExpiringSoon"))
            .map(|(_, ms)| *ms)
            .sum();
    }

    /// A numeric field by its dotted path (`logins`, `failed_by.timeout`, `time_in_state.Valid`); an
    /// event category gives its count.
    pub fn number(&self, name: &str) -> Option<u64> {
        let json = serde_json::to_value(self).ok()?;
        let mut value = &json;
        for part in name.split('.') {
            value = value.get(part)?;
        }
        value.get("count").unwrap_or(value).as_u64()
    }

    /// A boolean field by name.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match name {
            "never_dead_token" => Some(self.never_dead_token),
            "no_duplicate_orders" => Some(self.no_duplicate_orders),
            _ => None,
        }
    }

    /// Whether every expectation held (true when there are none).
    pub fn passed(&self) -> bool {
        self.expectations.iter().all(|e| e.pass)
    }

    /// The failed expectations.
    pub fn failures(&self) -> impl Iterator<Item = &ExpectationResult> {
        self.expectations.iter().filter(|e| !e.pass)
    }
}

/// The report's list of days.
pub fn day_entries(days: &RunDays) -> Vec<DayEntry> {
    days.days().iter().map(|d| DayEntry { date: d.date.to_string(), full: d.full }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_judge_numbers_flags_and_days() {
        let mut report = Report::new("s", 1, "hybrid");
        report.logins = 9;
        report.refreshes = 20;
        report.dead_token_uses = 1;
        report.failed_by.timeout = 2;
        report.time_in_state.insert("Invalid".into(), 1_000);
        report.time_in_state.insert("Valid".into(), 5_000);
        report.days = vec![
            DayEntry { date: "2026-03-09".into(), full: false },
            DayEntry { date: "2026-03-10".into(), full: true },
        ];
        report.events.insert("cutoff".into(), EventSummary { count: 2, per_day: vec![1, 1], ..Default::default() });
        report.finish();
        Expectations::new(vec![
            Expectation::new("logins", Bound::at_most(8.0)),
            Expectation::new("refreshes", Bound::Range { min: Some(10.0), max: Some(40.0) }),
            Expectation::new("never_dead_token", Bound::Is(true)),
            Expectation::new("time_in_state.Invalid", Bound::at_most(0.0)),
            Expectation::new("time_unusable_ms", Bound::at_most(1_000.0)),
            Expectation::new("failed_by.timeout", Bound::at_most(0.0)),
            Expectation::new("events.cutoff", Bound::Range { min: Some(2.0), max: Some(2.0) }),
            Expectation::new("events.cutoff", Bound::PerDay { min: Some(1.0), max: Some(1.0) }),
        ])
        .evaluate(&mut report);
        let verdicts: Vec<bool> = report.expectations.iter().map(|e| e.pass).collect();
        assert_eq!(verdicts, [false, true, false, false, true, false, true, true]);
        assert_eq!(report.expectations[1].bound, "10 ..= 40");
        assert_eq!(report.expectations[7].bound, "per day = 1");
        assert_eq!(report.expectations[7].actual, Actual::Days(vec![1]));
        assert!(!report.passed());
        let table = render_table(&report);
        assert!(table.contains("FAIL  logins"), "{table}");
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.starts_with("{\"scenario\":\"s\",\"seed\":1,\"policy\":\"hybrid\",\"requests_total\":0"),
            "{json}"
        );
        assert!(json.contains("\"actual\":9"), "{json}");
    }

    #[test]
    fn every_listed_field_has_a_value() {
        let zone = jiff::tz::TimeZone::UTC;
        let start = warden_engine::UnixMs::from_millis(0);
        let days = RunDays::new(start, start.saturating_add(std::time::Duration::from_secs(3 * 86_400)), &zone);
        let template = Report::template(&["quote".to_owned(), "order".to_owned()], &days);
        let names = field_names(&template);
        for name in [
            "requests_total",
            "logins",
            "login_attempts",
            "logins_discarded",
            "p99_token_wait_ms",
            "failed_by.timeout",
            "failed_by.other",
            "invalid_by.needs_human",
            "by_kind.order.failed",
            "events.cutoff",
            "events.warmup_login.first_ms",
            "time_in_state.Invalid",
            "time_unusable_ms",
            "never_dead_token",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
            assert!(field_shape(&template, name).is_some(), "{name}");
        }
        assert_eq!(field_shape(&template, "events.cutoff"), Some(FieldShape::Events));
        assert_eq!(field_shape(&template, "never_dead_token"), Some(FieldShape::Flag));
        for bad in ["seed", "events.cutoff.first", "by_kind.positions.ok", "time_in_state.Bogus", "failed_by"] {
            assert!(field_shape(&template, bad).is_none(), "{bad}");
        }
        let report = Report::new("s", 1, "hybrid");
        assert_eq!(report.number("time_in_state.Valid"), Some(0));
        assert_eq!(report.number("events.login"), Some(0));
    }
}
