//! What a simulated run produced: [`Report`] (the standard fields plus the safety counters),
//! the `[expect]` bounds that judge it ([`Expectations`]), and the plain-text tables the CLI prints.
//!
//! A report serialises with its fields in declaration order and its maps sorted, so two runs of the same
//! scenario and seed give byte-identical JSON. The runner fills the counters, then calls
//! [`Report::finish`] (which derives the safety flags) and [`Expectations::evaluate`].
//!
//! ```
//! use warden_sim::report::{Bound, Expectation, Expectations, Report};
//!
//! let mut report = Report::new("demo", 7, "hybrid");
//! report.logins = 3;
//! report.finish();
//! let expect = Expectations::new(vec![
//!     Expectation::new("logins", Bound::at_most(8.0)),
//!     Expectation::new("never_dead_token", Bound::Is(true)),
//! ]);
//! expect.evaluate(&mut report);
//! assert!(report.passed());
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::Serialize;

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
    /// Requests that finally failed (after any retries).
    pub requests_failed: u64,
    /// Requests retried after a rejection.
    pub requests_retried: u64,
    /// Successful logins.
    pub logins: u64,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Keep-alive pings sent.
    pub keepalives: u64,
    /// Failed logins.
    pub login_failures: u64,
    /// Broker calls refused for their token (expired, revoked or unknown).
    pub rejections: u64,
    /// The longest wait of a request for its answer, in ms.
    pub max_request_delay_ms: u64,
    /// The 99th percentile of that wait, in ms.
    pub p99_request_delay_ms: u64,
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
    /// Milliseconds spent in each session state (summed over sessions), by state name.
    pub time_in_state: BTreeMap<String, u64>,
    /// The `[expect]` bounds and whether each held.
    pub expectations: Vec<ExpectationResult>,
}

/// The numeric report fields an `[expect]` bound may name (besides `time_in_state.<State>`).
pub const NUMBER_FIELDS: [&str; 20] = [
    "requests_total",
    "requests_ok",
    "requests_failed",
    "requests_retried",
    "logins",
    "refreshes",
    "keepalives",
    "login_failures",
    "rejections",
    "max_request_delay_ms",
    "p99_request_delay_ms",
    "dead_token_uses",
    "duplicate_orders",
    "outcome_unknown",
    "refresh_failures",
    "keepalive_failures",
    "rate_limited",
    "account_lockouts",
    "time_in_invalid_ms",
    "time_unusable_ms",
];

/// The boolean report fields an `[expect]` entry may name.
pub const FLAG_FIELDS: [&str; 2] = ["never_dead_token", "no_duplicate_orders"];

/// The session states, for `time_in_state.<State>` bounds.
pub const STATE_NAMES: [&str; 7] =
    ["Initializing", "Valid", "ExpiringSoon", "Expired", "Reinitializing", "Invalid", "Stopped"];

impl Report {
    /// An empty report of a run.
    pub fn new(scenario: impl Into<String>, seed: u64, policy: impl Into<String>) -> Report {
        Report {
            scenario: scenario.into(),
            seed,
            policy: policy.into(),
            never_dead_token: true,
            no_duplicate_orders: true,
            ..Report::default()
        }
    }

    /// Derives the safety flags from the counters; call once the counters are final.
    pub fn finish(&mut self) {
        self.never_dead_token = self.dead_token_uses == 0;
        self.no_duplicate_orders = self.duplicate_orders == 0;
    }

    /// A numeric field by name: one of [`NUMBER_FIELDS`] or `time_in_state.<State>`.
    /// `time_in_invalid_ms` is the time in `Invalid`; `time_unusable_ms` the time in every state that
    /// hands out no token (all but `Valid` and `ExpiringSoon`).
    pub fn number(&self, name: &str) -> Option<u64> {
        if let Some(state) = name.strip_prefix("time_in_state.") {
            return STATE_NAMES.contains(&state).then(|| self.time_in_state.get(state).copied().unwrap_or(0));
        }
        Some(match name {
            "requests_total" => self.requests_total,
            "requests_ok" => self.requests_ok,
            "requests_failed" => self.requests_failed,
            "requests_retried" => self.requests_retried,
            "logins" => self.logins,
            "refreshes" => self.refreshes,
            "keepalives" => self.keepalives,
            "login_failures" => self.login_failures,
            "rejections" => self.rejections,
            "max_request_delay_ms" => self.max_request_delay_ms,
            "p99_request_delay_ms" => self.p99_request_delay_ms,
            "dead_token_uses" => self.dead_token_uses,
            "duplicate_orders" => self.duplicate_orders,
            "outcome_unknown" => self.outcome_unknown,
            "refresh_failures" => self.refresh_failures,
            "keepalive_failures" => self.keepalive_failures,
            "rate_limited" => self.rate_limited,
            "account_lockouts" => self.account_lockouts,
            "time_in_invalid_ms" => self.time_in_state.get("Invalid").copied().unwrap_or(0),
            "time_unusable_ms" => self
                .time_in_state
                .iter()
                .filter(|(state, _)| !matches!(state.as_str(), "Valid" | "ExpiringSoon"))
                .map(|(_, ms)| *ms)
                .sum(),
            _ => return None,
        })
    }

    /// A boolean field by name: one of [`FLAG_FIELDS`].
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

/// Whether `name` is a numeric field an expectation may bound.
pub fn is_number_field(name: &str) -> bool {
    NUMBER_FIELDS.contains(&name)
        || name.strip_prefix("time_in_state.").is_some_and(|state| STATE_NAMES.contains(&state))
}

/// Whether `name` is a boolean field an expectation may name.
pub fn is_flag_field(name: &str) -> bool {
    FLAG_FIELDS.contains(&name)
}

/// What an expectation demands of a field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// A number within `[min, max]` (either end open when `None`).
    Range {
        /// The least allowed value.
        min: Option<f64>,
        /// The greatest allowed value.
        max: Option<f64>,
    },
    /// A flag with this value.
    Is(bool),
}

impl Bound {
    /// At most `max`.
    pub fn at_most(max: f64) -> Bound {
        Bound::Range { min: None, max: Some(max) }
    }

    /// At least `min`.
    pub fn at_least(min: f64) -> Bound {
        Bound::Range { min: Some(min), max: None }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bound::Range { min: Some(min), max: Some(max) } => write!(f, "{min} ..= {max}"),
            Bound::Range { min: Some(min), max: None } => write!(f, ">= {min}"),
            Bound::Range { min: None, max: Some(max) } => write!(f, "<= {max}"),
            Bound::Range { min: None, max: None } => f.write_str("any"),
            Bound::Is(v) => write!(f, "= {v}"),
        }
    }
}

/// One `[expect]` entry: a report field and its bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// The report field.
    pub name: String,
    /// What it must be.
    pub bound: Bound,
}

impl Expectation {
    /// An expectation on `name`.
    pub fn new(name: impl Into<String>, bound: Bound) -> Expectation {
        Expectation { name: name.into(), bound }
    }
}

/// A scenario's `[expect]` table, in the order of its field names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expectations {
    items: Vec<Expectation>,
}

/// What a report field was, for an expectation's result: a number or a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Actual {
    /// A count or a duration in ms.
    Number(u64),
    /// A flag.
    Flag(bool),
    /// The report has no such field (or it is of the other kind).
    Missing,
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actual::Number(n) => write!(f, "{n}"),
            Actual::Flag(b) => write!(f, "{b}"),
            Actual::Missing => f.write_str("(missing)"),
        }
    }
}

/// One judged expectation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// The report field.
    pub name: String,
    /// The bound, as text (`<= 8`, `10 ..= 40`, `= true`).
    pub bound: String,
    /// The field's value.
    pub actual: Actual,
    /// Whether the bound held.
    pub pass: bool,
}

impl Expectations {
    /// Expectations in this order.
    pub fn new(items: Vec<Expectation>) -> Expectations {
        Expectations { items }
    }

    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = &Expectation> {
        self.items.iter()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Judges `report` and replaces its `expectations` with the results.
    pub fn evaluate(&self, report: &mut Report) {
        let results = self
            .items
            .iter()
            .map(|e| {
                let (actual, pass) = match e.bound {
                    Bound::Range { min, max } => match report.number(&e.name) {
                        Some(n) => {
                            let v = n as f64;
                            (Actual::Number(n), min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
                        }
                        None => (Actual::Missing, false),
                    },
                    Bound::Is(want) => match report.flag(&e.name) {
                        Some(b) => (Actual::Flag(b), b == want),
                        None => (Actual::Missing, false),
                    },
                };
                ExpectationResult { name: e.name.clone(), bound: e.bound.to_string(), actual, pass }
            })
            .collect();
        report.expectations = results;
    }
}

/// The p99 and maximum of request delays, recorded in O(1) without allocating: exact to the
/// millisecond up to 4,096 ms, then within 1/256 (the bucket's upper edge is reported).
#[derive(Clone, Debug)]
pub struct DelayHistogram {
    exact: Vec<u64>,
    /// `(octave, sub-bucket)` counts above the exact range.
    coarse: Vec<u64>,
    count: u64,
    max_ms: u64,
}

const EXACT_MS: u64 = 4_096;
const SUB_BUCKETS: u64 = 256;
const OCTAVES: u64 = 52;

impl Default for DelayHistogram {
    fn default() -> DelayHistogram {
        DelayHistogram {
            exact: vec![0; EXACT_MS as usize],
            coarse: vec![0; (OCTAVES * SUB_BUCKETS) as usize],
            count: 0,
            max_ms: 0,
        }
    }
}

impl DelayHistogram {
    /// An empty histogram.
    pub fn new() -> DelayHistogram {
        DelayHistogram::default()
    }

    /// Records one delay.
    pub fn record(&mut self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.record_ms(ms);
    }

    /// Records one delay in milliseconds.
    pub fn record_ms(&mut self, ms: u64) {
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
        if ms < EXACT_MS {
            self.exact[ms as usize] += 1;
        } else {
            let (octave, sub) = coarse_bucket(ms);
            if let Some(slot) = self.coarse.get_mut((octave * SUB_BUCKETS + sub) as usize) {
                *slot += 1;
            }
        }
    }

    /// How many delays were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The longest delay, in ms.
    pub fn max_ms(&self) -> u64 {
        self.max_ms
    }

    /// The delay at quantile `q` (0..=1), in ms; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.exact.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as u64;
            }
        }
        for (i, n) in self.coarse.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (octave, sub) = (i as u64 / SUB_BUCKETS, i as u64 % SUB_BUCKETS);
                let low = EXACT_MS << octave;
                let width = low / SUB_BUCKETS;
                return (low + (sub + 1) * width - 1).min(self.max_ms);
            }
        }
        self.max_ms
    }

    /// The 99th percentile, in ms.
    pub fn p99_ms(&self) -> u64 {
        self.quantile_ms(0.99)
    }
}

/// The octave (power of two above 4,096 ms) and sub-bucket of a delay of at least 4,096 ms.
fn coarse_bucket(ms: u64) -> (u64, u64) {
    let octave = u64::from((ms / EXACT_MS).ilog2()).min(OCTAVES - 1);
    let low = EXACT_MS << octave;
    let sub = ((ms - low) / (low / SUB_BUCKETS)).min(SUB_BUCKETS - 1);
    (octave, sub)
}

/// The rows of the single-report table: label and value.
fn rows(report: &Report) -> Vec<(&'static str, String)> {
    vec![
        ("requests_total", report.requests_total.to_string()),
        ("requests_ok", report.requests_ok.to_string()),
        ("requests_failed", report.requests_failed.to_string()),
        ("requests_retried", report.requests_retried.to_string()),
        ("logins", report.logins.to_string()),
        ("refreshes", report.refreshes.to_string()),
        ("keepalives", report.keepalives.to_string()),
        ("login_failures", report.login_failures.to_string()),
        ("rejections", report.rejections.to_string()),
        ("max_request_delay_ms", report.max_request_delay_ms.to_string()),
        ("p99_request_delay_ms", report.p99_request_delay_ms.to_string()),
        ("dead_token_uses", report.dead_token_uses.to_string()),
        ("duplicate_orders", report.duplicate_orders.to_string()),
        ("outcome_unknown", report.outcome_unknown.to_string()),
        ("refresh_failures", report.refresh_failures.to_string()),
        ("keepalive_failures", report.keepalive_failures.to_string()),
        ("rate_limited", report.rate_limited.to_string()),
        ("account_lockouts", report.account_lockouts.to_string()),
    ]
}

/// A plain-text table of one report: the counters, the time in each state, and each expectation with
/// PASS or FAIL.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {}  (seed {}, policy {})", report.scenario, report.seed, report.policy);
    let rows = rows(report);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for (label, value) in &rows {
        let _ = writeln!(out, "  {label:<width$}  {value:>value_width$}");
    }
    if !report.time_in_state.is_empty() {
        let _ = writeln!(out, "  time in state:");
        for (state, ms) in &report.time_in_state {
            let _ =
                writeln!(out, "    {state:<14}  {}", warden_engine::time::format_duration(Duration::from_millis(*ms)));
        }
    }
    if !report.expectations.is_empty() {
        let _ = writeln!(out, "  expectations:");
        let width = report.expectations.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for e in &report.expectations {
            let verdict = if e.pass { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "    {verdict}  {:<width$}  {:<12}  actual {}", e.name, e.bound, e.actual);
        }
    }
    out
}

/// A side-by-side table of several runs of one scenario, one row per policy (for `compare`).
pub fn render_comparison(reports: &[Report]) -> String {
    const COLUMNS: [(&str, &str); 13] = [
        ("ok", "requests_ok"),
        ("failed", "requests_failed"),
        ("retried", "requests_retried"),
        ("logins", "logins"),
        ("refreshes", "refreshes"),
        ("keepalives", "keepalives"),
        ("login_fail", "login_failures"),
        ("rejections", "rejections"),
        ("p99_ms", "p99_request_delay_ms"),
        ("max_ms", "max_request_delay_ms"),
        ("dead", "dead_token_uses"),
        ("dup", "duplicate_orders"),
        ("unknown", "outcome_unknown"),
    ];
    let mut header: Vec<String> = vec!["policy".to_owned()];
    header.extend(COLUMNS.iter().map(|(h, _)| (*h).to_owned()));
    header.push("expect".to_owned());
    let mut table = vec![header];
    for report in reports {
        let mut row = vec![report.policy.clone()];
        row.extend(COLUMNS.iter().map(|(_, field)| report.number(field).unwrap_or(0).to_string()));
        let passed = report.expectations.iter().filter(|e| e.pass).count();
        row.push(format!("{passed}/{}", report.expectations.len()));
        table.push(row);
    }
    let widths: Vec<usize> =
        (0..table[0].len()).map(|c| table.iter().map(|r| r.get(c).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut out = String::new();
    if let Some(first) = reports.first() {
        let _ = writeln!(out, "scenario {}  (seed {})", first.scenario, first.seed);
    }
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| if c == 0 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_judge_numbers_and_flags() {
        let mut report = Report::new("s", 1, "hybrid");
        report.logins = 9;
        report.refreshes = 20;
        report.dead_token_uses = 1;
        report.time_in_state.insert("Invalid".into(), 1_000);
        report.time_in_state.insert("Valid".into(), 5_000);
        report.finish();
        Expectations::new(vec![
            Expectation::new("logins", Bound::at_most(8.0)),
            Expectation::new("refreshes", Bound::Range { min: Some(10.0), max: Some(40.0) }),
            Expectation::new("never_dead_token", Bound::Is(true)),
            Expectation::new("time_in_state.Invalid", Bound::at_most(0.0)),
            Expectation::new("time_unusable_ms", Bound::at_most(1_000.0)),
        ])
        .evaluate(&mut report);
        let verdicts: Vec<bool> = report.expectations.iter().map(|e| e.pass).collect();
        assert_eq!(verdicts, [false, true, false, false, true]);
        assert_eq!(report.expectations[1].bound, "10 ..= 40");
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
        let report = Report::new("s", 1, "hybrid");
        for name in NUMBER_FIELDS {
            assert!(report.number(name).is_some(), "{name}");
            assert!(is_number_field(name));
        }
        for name in FLAG_FIELDS {
            assert!(report.flag(name).is_some(), "{name}");
        }
        assert!(is_number_field("time_in_state.Valid"));
        assert!(!is_number_field("time_in_state.Bogus"));
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = DelayHistogram::new();
        assert_eq!(h.p99_ms(), 0);
        for ms in 1..=1000 {
            h.record_ms(ms);
        }
        assert_eq!(h.p99_ms(), 990);
        assert_eq!(h.max_ms(), 1000);
        h.record_ms(100_000);
        assert_eq!(h.max_ms(), 100_000);
        let mut big = DelayHistogram::new();
        big.record_ms(10_000);
        let p = big.p99_ms();
        assert!((10_000..=10_000 + 10_000 / 256 + 1).contains(&p), "{p}");
        big.record(Duration::MAX);
        assert_eq!(big.max_ms(), u64::MAX);
    }

    #[test]
    fn comparison_has_a_row_per_policy() {
        let a = Report::new("s", 1, "reactive");
        let mut b = Report::new("s", 1, "hybrid");
        b.logins = 12;
        let table = render_comparison(&[a, b]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[2].starts_with("reactive"));
        assert!(lines[3].starts_with("hybrid") && lines[3].contains("12"));
    }
}
