//! Why a `warden.toml` was refused: [`ConfigError`], whose message names the file, the line and column,
//! the key and the problem — and never a secret.
//!
//! ```text
//! /etc/warden/warden.toml line 9, column 1: unknown key `redirect_url` in [sessions.saxo-main] (did you mean `redirect_uri`?)
//! /etc/warden/warden.toml line 14, column 1: `sessions.kite-main.credentials.api_secret`: the environment variable `KITE_API_SECRET` is not set
//! ```

use super::located::LocatedProblem;

/// Why a configuration could not be loaded, or its sessions not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {detail}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        detail: String,
    },
    /// The text is not TOML.
    #[error("{origin} line {line}, column {column}: not valid TOML: {problem}")]
    Syntax {
        /// The file (or the name given to [`super::WardenConfig::parse`]).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's complaint.
        problem: String,
    },
    /// A key is unknown or missing, its value is wrong, or what it refers to cannot be had.
    #[error("{origin} line {line}, column {column}: {problem}")]
    Invalid {
        /// The file (or the name given to [`super::WardenConfig::parse`]).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The key, as a dotted path (`sessions.kite-main.base_url`); empty for the file as a whole.
        key: String,
        /// What is wrong, naming the key.
        problem: String,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, if it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Read { .. } => None,
        }
    }

    /// The key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl From<LocatedProblem> for ConfigError {
    fn from(p: LocatedProblem) -> ConfigError {
        ConfigError::Invalid { origin: p.origin, line: p.line, column: p.column, key: p.key, problem: p.problem }
    }
}
