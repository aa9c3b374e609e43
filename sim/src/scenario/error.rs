//! Why a scenario file was refused: [`ScenarioError`], whose message names the file, the line and column,
//! the key and the problem.
//!
//! ```text
//! sim/scenarios/kotak.toml line 12, column 1: unknown key `refrsh_buffer` in [policy] (did you mean `refresh_buffer`?)
//! sim/scenarios/kotak.toml line 7, column 12: `duration`: "5 dayz" is not a duration (write it like …)
//! ```
//!
//! Serde errors from toml carry a byte span, which [`Located`] turns into a line, a column and the key
//! path under it; semantic errors found after parsing carry the key path, which is found in the document
//! again to give the line.

use std::fmt;
use std::ops::Range;

use super::locate::{Document, KeyPath};

/// Why a scenario could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read the scenario: {detail}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        detail: String,
    },
    /// The directory could not be listed.
    #[error("{path}: cannot list the scenarios in it: {detail}")]
    ReadDir {
        /// The directory.
        path: String,
        /// The operating system's reason.
        detail: String,
    },
    /// The text is not TOML.
    #[error("{origin} line {line}, column {column}: not valid TOML: {problem}")]
    Syntax {
        /// The file (or the name given to [`super::Scenario::parse`]).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's complaint.
        problem: String,
    },
    /// A key is unknown or missing, or its value is wrong.
    #[error("{origin} line {line}, column {column}: {problem}")]
    Invalid {
        /// The file (or the name given to [`super::Scenario::parse`]).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The key, as a dotted path (`broker.outages[1].to`); empty for the file as a whole.
        key: String,
        /// What is wrong, naming the key.
        problem: String,
    },
}

impl ScenarioError {
    /// The 1-based line the error points at, if it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Syntax { line, .. } | ScenarioError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ScenarioError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Builds located errors for one document.
pub(crate) struct Located<'a> {
    pub(crate) origin: &'a str,
    pub(crate) doc: &'a Document<'a>,
}

impl Located<'_> {
    /// An error about the value at `path`: "`path`: problem".
    pub(crate) fn invalid(&self, path: &KeyPath, problem: impl fmt::Display) -> ScenarioError {
        let message = if path.is_root() { problem.to_string() } else { format!("`{path}`: {problem}") };
        self.message_at(path, message)
    }

    /// An error at `path` with a message that already names what it is about.
    pub(crate) fn message_at(&self, path: &KeyPath, message: String) -> ScenarioError {
        let span = self.doc.span_of(path);
        self.build(span, path, message)
    }

    /// A warning about the value at `path`, located like an error.
    pub(crate) fn warning(&self, path: &KeyPath, problem: String) -> super::ScenarioWarning {
        let (line, column) = self.doc.line_column(self.doc.span_of(path).start);
        let problem = if path.is_root() { problem } else { format!("`{path}`: {problem}") };
        super::ScenarioWarning { origin: self.origin.to_owned(), line, column, key: path.to_string(), problem }
    }

    fn build(&self, span: Range<usize>, path: &KeyPath, problem: String) -> ScenarioError {
        let (line, column) = self.doc.line_column(span.start);
        ScenarioError::Invalid { origin: self.origin.to_owned(), line, column, key: path.to_string(), problem }
    }

    /// A serde error from toml, rewritten to name the key the way the file writes it.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        let span = error.span().unwrap_or(0..0);
        let path = self.doc.path_at(&span);
        let message = error.message();
        if let Some(name) = quoted_after(message, "unknown field `") {
            // The span is the unknown key itself, so the path ends with it.
            let table = if path.last_key() == Some(name) { path.parent() } else { path.clone() };
            let known = backticked(message.split_once("expected").map_or("", |(_, rest)| rest));
            let problem = format!("unknown key `{name}` {}{}", table.table_phrase(), suggest(name, &known));
            return self.build(span, &table.key(name), problem);
        }
        if let Some(name) = quoted_after(message, "missing field `") {
            let problem = format!("missing key `{name}` {}", path.table_phrase());
            return self.build(span, &path.key(name), problem);
        }
        let problem = if let Some(value) = quoted_after(message, "unknown variant `") {
            let known = backticked(message.split_once("expected").map_or("", |(_, rest)| rest));
            let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            format!("unknown value `{value}` (expected one of {list}){}", suggest(value, &known))
        } else if let Some((found, expected)) = split_invalid(message) {
            format!("expected {expected}, found {found}")
        } else {
            message.to_owned()
        };
        let problem = if path.is_root() { problem } else { format!("`{path}`: {problem}") };
        self.build(span, &path, problem)
    }
}

/// The text between `prefix` and the next backtick.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// Every `backticked` word in a text.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// serde's "invalid type: X, expected Y" (or "invalid value: …") as (X, Y).
fn split_invalid(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))?;
    rest.split_once(", expected ")
}

/// " (did you mean `x`?)" when a known name is close to `name`.
pub(crate) fn suggest(name: &str, known: &[&str]) -> String {
    let limit = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map_or_else(String::new, |(_, k)| format!(" (did you mean `{k}`?)"))
}

/// Edit distance by characters, counting a swap of neighbours as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (d[(i - 1) * width + j] + 1).min(d[i * width + j - 1] + 1).min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_close_names() {
        assert_eq!(suggest("refrsh_buffer", &["preset", "refresh_buffer"]), " (did you mean `refresh_buffer`?)");
        assert_eq!(suggest("zzz", &["preset", "refresh_buffer"]), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("sede", "seed"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(suggest("sede", &["name", "seed", "start"]), " (did you mean `seed`?)");
    }

    #[test]
    fn serde_messages_are_taken_apart() {
        assert_eq!(quoted_after("unknown field `x`, expected `y`", "unknown field `"), Some("x"));
        assert_eq!(backticked("expected one of `a`, `b`"), vec!["a", "b"]);
        assert_eq!(split_invalid("invalid type: string \"a\", expected u64"), Some(("string \"a\"", "u64")));
    }
}
