//! The `[expect]` bounds and how they judge a report: [`Expectations`], [`Bound`], [`ExpectationResult`].
//!
//! A bound names a report field by its dotted path in the JSON report (`logins`, `failed_by.timeout`,
//! `invalid_by.needs_human`, `by_kind.order.failed`, `events.cutoff`, `events.cutoff.first_ms`,
//! `time_in_state.Invalid`). A range (`{ min, max }`) bounds a number — or, for an event category, its
//! count; a flag (`true`/`false`) a boolean; `per_day` bounds an event category's count on every day the
//! run covers whole. [`field_shape`] says what a path names in a report of a given shape, so that a
//! scenario's bounds are checked (and misspellings caught) before the run.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::Report;

/// What an expectation demands of a field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// A number (or an event category's count) within `[min, max]` (either end open when `None`).
    Range {
        /// The least allowed value.
        min: Option<f64>,
        /// The greatest allowed value.
        max: Option<f64>,
    },
    /// A flag with this value.
    Is(bool),
    /// An event category's count on every day the run covers whole, within `[min, max]`.
    PerDay {
        /// The least allowed count.
        min: Option<f64>,
        /// The greatest allowed count.
        max: Option<f64>,
    },
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

fn write_range(f: &mut fmt::Formatter<'_>, min: Option<f64>, max: Option<f64>) -> fmt::Result {
    match (min, max) {
        (Some(min), Some(max)) if min == max => write!(f, "= {min}"),
        (Some(min), Some(max)) => write!(f, "{min} ..= {max}"),
        (Some(min), None) => write!(f, ">= {min}"),
        (None, Some(max)) => write!(f, "<= {max}"),
        (None, None) => f.write_str("any"),
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bound::Range { min, max } => write_range(f, min, max),
            Bound::Is(v) => write!(f, "= {v}"),
            Bound::PerDay { min, max } => {
                f.write_str("per day ")?;
                write_range(f, min, max)
            }
        }
    }
}

/// One `[expect]` entry: a report field and its bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// The report field's dotted path.
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

/// What a report field was, for an expectation's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Actual {
    /// A count or a duration in ms.
    Number(u64),
    /// A flag.
    Flag(bool),
    /// The counts on each day the run covers whole.
    Days(Vec<u64>),
    /// The report has no such field (or it is of another kind).
    Missing,
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actual::Number(n) => write!(f, "{n}"),
            Actual::Flag(b) => write!(f, "{b}"),
            Actual::Days(days) => {
                let list: Vec<String> = days.iter().map(u64::to_string).collect();
                write!(f, "[{}]", list.join(", "))
            }
            Actual::Missing => f.write_str("(missing)"),
        }
    }
}

/// One judged expectation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// The report field.
    pub name: String,
    /// The bound, as text (`<= 8`, `10 ..= 40`, `= true`, `per day = 1`).
    pub bound: String,
    /// The field's value.
    pub actual: Actual,
    /// Whether the bound held.
    pub pass: bool,
}

/// What a field path names in a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldShape {
    /// A number: range bounds.
    Number,
    /// A boolean: flag bounds.
    Flag,
    /// An event category: range bounds on its count, `per_day` bounds.
    Events,
}

/// Top-level report fields that describe the run rather than measure it: not boundable.
const NOT_MEASURES: [&str; 5] = ["scenario", "seed", "policy", "days", "expectations"];

fn lookup<'a>(json: &'a Value, name: &str) -> Option<&'a Value> {
    let mut parts = name.split('.');
    let first = parts.next()?;
    if NOT_MEASURES.contains(&first) {
        return None;
    }
    let mut value = json.get(first)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn shape_of(value: &Value) -> Option<FieldShape> {
    match value {
        Value::Number(_) => Some(FieldShape::Number),
        Value::Bool(_) => Some(FieldShape::Flag),
        Value::Object(map) if map.contains_key("per_day") && map.contains_key("count") => Some(FieldShape::Events),
        _ => None,
    }
}

/// What `name` names in reports shaped like `template` (see [`Report::template`]); `None` if nothing
/// boundable.
pub fn field_shape(template: &Report, name: &str) -> Option<FieldShape> {
    let json = serde_json::to_value(template).ok()?;
    lookup(&json, name).and_then(shape_of)
}

/// Every boundable field path of reports shaped like `template`, for suggestions.
pub fn field_names(template: &Report) -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        if let Some(shape) = shape_of(value) {
            out.push(prefix.to_owned());
            if shape != FieldShape::Events {
                return;
            }
        }
        if let Value::Object(map) = value {
            for (key, child) in map {
                walk(&format!("{prefix}.{key}"), child, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(template) {
        for (key, value) in &map {
            if !NOT_MEASURES.contains(&key.as_str()) {
                walk(key, value, &mut out);
            }
        }
    }
    out
}

fn within(v: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
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
        let json = serde_json::to_value(&*report).unwrap_or(Value::Null);
        let full: Vec<bool> = report.days.iter().map(|d| d.full).collect();
        let results = self
            .items
            .iter()
            .map(|e| {
                let value = lookup(&json, &e.name);
                let (actual, pass) = match e.bound {
                    Bound::Range { min, max } => {
                        let n = value.and_then(|v| v.get("count").unwrap_or(v).as_u64());
                        match n {
                            Some(n) => (Actual::Number(n), within(n as f64, min, max)),
                            None => (Actual::Missing, false),
                        }
                    }
                    Bound::Is(want) => match value.and_then(Value::as_bool) {
                        Some(b) => (Actual::Flag(b), b == want),
                        None => (Actual::Missing, false),
                    },
                    Bound::PerDay { min, max } => {
                        match value.and_then(|v| v.get("per_day")).and_then(Value::as_array) {
                            Some(days) => {
                                let counts: Vec<u64> = days
                                    .iter()
                                    .zip(&full)
                                    .filter(|(_, full)| **full)
                                    .map(|(n, _)| n.as_u64().unwrap_or(0))
                                    .collect();
                                let pass = !counts.is_empty() && counts.iter().all(|n| within(*n as f64, min, max));
                                (Actual::Days(counts), pass)
                            }
                            None => (Actual::Missing, false),
                        }
                    }
                };
                ExpectationResult { name: e.name.clone(), bound: e.bound.to_string(), actual, pass }
            })
            .collect();
        report.expectations = results;
    }
}
