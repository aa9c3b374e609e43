//! Located problems: a message that names the file, the line and column, the key and the problem, with a
//! "did you mean" when a name is close to a known one. Shared by every TOML parser in the workspace
//! (`warden.toml` in [`super`], the simulator's scenario files), so both word their errors alike.
//!
//! ```text
//! warden.toml line 12, column 1: unknown key `redirect_url` in [sessions.saxo-main] (did you mean `redirect_uri`?)
//! warden.toml line 7, column 19: `http.request_timeout`: `15 secs` is not a duration (write it like …)
//! ```
//!
//! [`Locator`] builds them for one parsed [`Document`]: serde errors from toml carry a byte span, which it
//! turns into a line, a column and the key path under it ([`Locator::toml_error`]); problems found after
//! parsing carry a [`KeyPath`], which is found in the document again to give the line
//! ([`Locator::invalid`]). Each parser wraps a [`LocatedProblem`] into its own error type.

use std::fmt;
use std::ops::Range;

use super::locate::{Document, KeyPath, line_column};

/// A problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedProblem {
    /// The file (or the name the text was given).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key, as a dotted path (`sessions.kite.base_url`); empty for the file as a whole.
    pub key: String,
    /// What is wrong, naming the key.
    pub problem: String,
}

impl fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}, column {}: {}", self.origin, self.line, self.column, self.problem)
    }
}

/// A place in a file, kept after parsing for problems found later (an unset environment variable named
/// by a credential, an adapter that cannot be built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file (or the name the text was given).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key, as a dotted path.
    pub key: String,
}

impl Place {
    /// A problem at this place: "`key`: problem".
    pub fn problem(&self, problem: impl fmt::Display) -> LocatedProblem {
        let problem = if self.key.is_empty() { problem.to_string() } else { format!("`{}`: {problem}", self.key) };
        LocatedProblem {
            origin: self.origin.clone(),
            line: self.line,
            column: self.column,
            key: self.key.clone(),
            problem,
        }
    }
}

/// A TOML syntax error at the place the parser gives (the key is empty: the text did not parse).
pub fn syntax_problem(origin: &str, text: &str, error: &toml::de::Error) -> LocatedProblem {
    let (line, column) = line_column(text, error.span().map_or(0, |s| s.start));
    LocatedProblem { origin: origin.to_owned(), line, column, key: String::new(), problem: error.message().to_owned() }
}

/// Builds located problems for one document.
#[derive(Debug, Clone, Copy)]
pub struct Locator<'a> {
    /// The file (or the name the text was given), first in every message.
    pub origin: &'a str,
    /// The parsed text.
    pub doc: &'a Document<'a>,
}

impl<'a> Locator<'a> {
    /// A locator for `doc`, naming it `origin`.
    pub fn new(origin: &'a str, doc: &'a Document<'a>) -> Locator<'a> {
        Locator { origin, doc }
    }

    /// A problem with the value at `path`: "`path`: problem".
    pub fn invalid(&self, path: &KeyPath, problem: impl fmt::Display) -> LocatedProblem {
        let message = if path.is_root() { problem.to_string() } else { format!("`{path}`: {problem}") };
        self.message_at(path, message)
    }

    /// A problem at `path` with a message that already names what it is about.
    pub fn message_at(&self, path: &KeyPath, message: String) -> LocatedProblem {
        let span = self.doc.span_of(path);
        self.at_span(span, path, message)
    }

    /// Where `path` is written (or its deepest written ancestor), to report problems found later.
    pub fn place(&self, path: &KeyPath) -> Place {
        let (line, column) = self.doc.line_column(self.doc.span_of(path).start);
        Place { origin: self.origin.to_owned(), line, column, key: path.to_string() }
    }

    /// A problem at a byte span, about `path`.
    pub fn at_span(&self, span: Range<usize>, path: &KeyPath, problem: String) -> LocatedProblem {
        let (line, column) = self.doc.line_column(span.start);
        LocatedProblem { origin: self.origin.to_owned(), line, column, key: path.to_string(), problem }
    }

    /// A serde error from toml, rewritten to name the key the way the file writes it: an unknown key with
    /// the table it is in and the closest known name, a missing key, an unknown value with the known ones,
    /// a value of the wrong type.
    pub fn toml_error(&self, error: &toml::de::Error) -> LocatedProblem {
        let span = error.span().unwrap_or(0..0);
        let path = self.doc.path_at(&span);
        let message = error.message();
        if let Some(name) = quoted_after(message, "unknown field `") {
            // The span is the unknown key itself, so the path ends with it.
            let table = if path.last_key() == Some(name) { path.parent() } else { path.clone() };
            let known = backticked(message.split_once("expected").map_or("", |(_, rest)| rest));
            let problem = format!("unknown key `{name}` {}{}", table.table_phrase(), suggest(name, &known));
            // Point at the key as written (a table's header rather than its body).
            let key = table.key(name);
            let span = if self.doc.has(&key) { self.doc.span_of(&key) } else { span };
            return self.at_span(span, &key, problem);
        }
        if let Some(name) = quoted_after(message, "missing field `") {
            let problem = format!("missing key `{name}` {}", path.table_phrase());
            return self.at_span(span, &path.key(name), problem);
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
        self.at_span(span, &path, problem)
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

/// " (did you mean `x`?)" when a known name is close to `name` (within a third of its length in edits,
/// at least one); empty otherwise.
pub fn suggest(name: &str, known: &[&str]) -> String {
    let limit = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map_or_else(String::new, |(_, k)| format!(" (did you mean `{k}`?)"))
}

/// Edit distance by characters, counting a swap of neighbours as one edit (optimal string alignment).
pub fn edit_distance(a: &str, b: &str) -> usize {
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

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        store: DemoStore,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct DemoStore {
        path: String,
        durability: Option<u32>,
    }

    #[test]
    fn serde_errors_name_the_line_the_key_and_a_close_name() {
        let text = "[store]\npath = \"x\"\ndurabilty = 3\n";
        let doc = Document::parse(text).unwrap();
        let loc = Locator::new("w.toml", &doc);
        let err = loc.toml_error(&toml::from_str::<Demo>(text).unwrap_err());
        assert_eq!(
            err.to_string(),
            "w.toml line 3, column 1: unknown key `durabilty` in [store] (did you mean `durability`?)"
        );
        assert_eq!(err.key, "store.durabilty");
        let text = "[store]\npath = 3\n";
        let doc = Document::parse(text).unwrap();
        let err = Locator::new("w.toml", &doc).toml_error(&toml::from_str::<Demo>(text).unwrap_err());
        assert_eq!((err.line, err.key.as_str()), (2, "store.path"));
        assert!(err.problem.starts_with("`store.path`: expected a string, found integer"), "{err}");
        let doc = Document::parse("[store]\n").unwrap();
        let err = Locator::new("w.toml", &doc).toml_error(&toml::from_str::<Demo>("[store]\n").unwrap_err());
        assert_eq!(err.problem, "missing key `path` in [store]");
    }
}
