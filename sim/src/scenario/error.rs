//! Why a scenario file was refused: [`ScenarioError`], whose message names the file, the line and column,
//! the key and the problem.
//!
//! ```text
//! sim/scenarios/kotak.toml line 12, column 1: unknown key `refrsh_buffer` in [policy] (did you mean `refresh_buffer`?)
//! sim/scenarios/kotak.toml line 7, column 12: `duration`: "5 dayz" is not a duration (write it like …)
//! ```
//!
//! The locating and the wording are shared with `warden.toml`'s parser: [`Located`] wraps
//! `warden_adapters::config::located::Locator`, which turns a serde error's byte span into a line, a
//! column and the key path under it, and finds the key path of a problem found after parsing in the
//! document again to give the line.

use std::fmt;

use warden_adapters::config::locate::{Document, KeyPath};
pub(crate) use warden_adapters::config::located::suggest;
use warden_adapters::config::located::{LocatedProblem, Locator, syntax_problem};

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

impl From<LocatedProblem> for ScenarioError {
    fn from(p: LocatedProblem) -> ScenarioError {
        ScenarioError::Invalid { origin: p.origin, line: p.line, column: p.column, key: p.key, problem: p.problem }
    }
}

/// Builds located errors for one document: the shared [`Locator`] of `warden-adapters`, with its
/// problems turned into [`ScenarioError`]s and [`super::ScenarioWarning`]s.
pub(crate) struct Located<'a> {
    pub(crate) origin: &'a str,
    pub(crate) doc: &'a Document<'a>,
}

impl Located<'_> {
    fn locator(&self) -> Locator<'_> {
        Locator::new(self.origin, self.doc)
    }

    /// An error about the value at `path`: "`path`: problem".
    pub(crate) fn invalid(&self, path: &KeyPath, problem: impl fmt::Display) -> ScenarioError {
        self.locator().invalid(path, problem).into()
    }

    /// An error at `path` with a message that already names what it is about.
    pub(crate) fn message_at(&self, path: &KeyPath, message: String) -> ScenarioError {
        self.locator().message_at(path, message).into()
    }

    /// A warning about the value at `path`, located like an error.
    pub(crate) fn warning(&self, path: &KeyPath, problem: String) -> super::ScenarioWarning {
        let p = self.locator().invalid(path, problem);
        super::ScenarioWarning { origin: p.origin, line: p.line, column: p.column, key: p.key, problem: p.problem }
    }

    /// A serde error from toml, rewritten to name the key the way the file writes it.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        self.locator().toml_error(error).into()
    }
}

/// A TOML syntax error.
pub(crate) fn syntax_error(origin: &str, text: &str, error: &toml::de::Error) -> ScenarioError {
    let p = syntax_problem(origin, text, error);
    ScenarioError::Syntax { origin: p.origin, line: p.line, column: p.column, problem: p.problem }
}
