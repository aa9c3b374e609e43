//! Where secrets come from: references written in `warden.toml` (`env:NAME`, `file:PATH`) and the
//! [`Environment`] that resolves them.
//!
//! A configuration file is handed to operations, checked into repositories, attached to tickets: it must
//! not hold secrets. So a credential is written as a reference — `"env:KITE_API_SECRET"` (an
//! environment variable) or `"file:/run/secrets/kite_api_secret"` (a file readable by its owner only) —
//! and resolved when the sessions are built. A value without one of those prefixes is an inline secret
//! and is refused unless the file says `allow_inline_secrets = true` at the top level.
//!
//! Resolving goes through the [`Environment`] trait, so tests pass a [`StaticEnvironment`] (variables
//! and files in memory) and production the [`SystemEnvironment`] (the process's environment and the
//! filesystem). A secret file is refused if every user may read it (its mode has the "others read"
//! bit), if it is larger than [`MAX_SECRET_FILE_BYTES`], or if it is empty; its trailing line break is
//! dropped. Errors name the variable or the file, never the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use warden_engine::Secret;

/// The largest secret file read (a PEM key is about 3 KiB).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// How a secret is written in the file.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME`.
    Env(String),
    /// `file:PATH`: the contents of the file at `PATH`.
    File(PathBuf),
    /// The secret itself, written in the file (refused unless `allow_inline_secrets = true`).
    Inline(Secret),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Inline(_) => f.write_str("inline(***)"),
        }
    }
}

impl SecretRef {
    /// Reads a reference: `env:NAME`, `file:PATH`, or else an inline secret. `env:` needs a variable
    /// name of letters, digits and `_`; `file:` a non-empty path.
    pub fn parse(text: &str) -> Result<SecretRef, SourceError> {
        if let Some(name) = text.strip_prefix("env:") {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(SourceError::BadVariableName { name: name.to_owned() });
            }
            return Ok(SecretRef::Env(name.to_owned()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SourceError::EmptyPath);
            }
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        Ok(SecretRef::Inline(Secret::new(text)))
    }

    /// Whether the secret is written in the file itself.
    pub fn is_inline(&self) -> bool {
        matches!(self, SecretRef::Inline(_))
    }

    /// The secret, from `env`.
    pub fn resolve(&self, env: &dyn Environment) -> Result<Secret, SourceError> {
        match self {
            SecretRef::Inline(secret) => Ok(secret.clone()),
            SecretRef::Env(name) => match env.var(name) {
                Some(value) if !value.is_empty() => Ok(Secret::new(value)),
                Some(_) => Err(SourceError::EmptyVariable { name: name.clone() }),
                None => Err(SourceError::UnsetVariable { name: name.clone() }),
            },
            SecretRef::File(path) => {
                let file = env.read_file(path).map_err(|e| SourceError::Unreadable {
                    path: path.clone(),
                    detail: match e.kind() {
                        std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
                        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                        _ => e.to_string(),
                    },
                })?;
                if let Some(mode) = file.mode
                    && mode & 0o004 != 0
                {
                    return Err(SourceError::WorldReadable { path: path.clone(), mode: mode & 0o7777 });
                }
                let text = file.text.expose();
                let text = text.strip_suffix('\n').map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
                if text.is_empty() {
                    return Err(SourceError::EmptyFile { path: path.clone() });
                }
                Ok(Secret::new(text))
            }
        }
    }
}

/// Why a secret reference could not be read or resolved. Never holds the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// `env:` followed by something that is not a variable name.
    #[error("`env:{name}` does not name an environment variable (letters, digits and `_`, not starting with a digit)")]
    BadVariableName {
        /// What followed `env:`.
        name: String,
    },
    /// `file:` followed by nothing.
    #[error("`file:` names no file")]
    EmptyPath,
    /// The variable is not set.
    #[error("the environment variable `{name}` is not set")]
    UnsetVariable {
        /// The variable.
        name: String,
    },
    /// The variable is set to the empty string.
    #[error("the environment variable `{name}` is empty")]
    EmptyVariable {
        /// The variable.
        name: String,
    },
    /// The file could not be read.
    #[error("the file {} cannot be read: {detail}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why (never its contents).
        detail: String,
    },
    /// Every user may read the file.
    #[error(
        "the file {} may be read by every user (mode {mode:04o}); a secret file must not be: `chmod o-r {}` (or 600)",
        path.display(), path.display()
    )]
    WorldReadable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is empty.
    #[error("the file {} is empty", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
}

/// A secret file as read: its text and its Unix permission bits (`None` where there are none).
#[derive(Debug)]
pub struct SecretFile {
    /// The contents.
    pub text: Secret,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: Option<u32>,
}

/// Environment variables and files: what secret references resolve against.
pub trait Environment: Send + Sync {
    /// The value of an environment variable; `None` if it is not set (or not UTF-8).
    fn var(&self, name: &str) -> Option<String>;

    /// Reads a secret file (at most [`MAX_SECRET_FILE_BYTES`]) and its permission bits.
    fn read_file(&self, path: &Path) -> std::io::Result<SecretFile>;
}

/// The process's environment and the filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<SecretFile> {
        use std::io::Read as _;
        use std::os::unix::fs::PermissionsExt as _;
        let file = std::fs::File::open(path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(std::io::Error::other("it is not a regular file"));
        }
        if metadata.len() > MAX_SECRET_FILE_BYTES {
            return Err(std::io::Error::other(format!(
                "it is {} bytes; a secret file is at most {MAX_SECRET_FILE_BYTES}",
                metadata.len()
            )));
        }
        let mut text = zeroize::Zeroizing::new(String::new());
        file.take(MAX_SECRET_FILE_BYTES).read_to_string(&mut text)?;
        Ok(SecretFile { text: Secret::new(text.as_str()), mode: Some(metadata.permissions().mode() & 0o7777) })
    }
}

/// Variables and files held in memory (tests, or an application that fetched them from its own secret
/// manager).
#[derive(Clone, Debug, Default)]
pub struct StaticEnvironment {
    vars: BTreeMap<String, Secret>,
    files: BTreeMap<PathBuf, (Secret, u32)>,
}

impl StaticEnvironment {
    /// An empty environment.
    pub fn new() -> StaticEnvironment {
        StaticEnvironment::default()
    }

    /// With the variable `name` set to `value`.
    #[must_use]
    pub fn var(mut self, name: &str, value: &str) -> StaticEnvironment {
        self.vars.insert(name.to_owned(), Secret::new(value));
        self
    }

    /// With a file at `path` holding `text`, with permission bits `mode`.
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>, text: &str, mode: u32) -> StaticEnvironment {
        self.files.insert(path.into(), (Secret::new(text), mode));
        self
    }
}

impl Environment for StaticEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|s| s.expose().to_owned())
    }

    fn read_file(&self, path: &Path) -> std::io::Result<SecretFile> {
        let (text, mode) = self.files.get(path).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        Ok(SecretFile { text: text.clone(), mode: Some(*mode) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_resolve() {
        let env = StaticEnvironment::new()
            .var("A", "alpha")
            .var("EMPTY", "")
            .file("/s/ok", "key\n", 0o600)
            .file("/s/open", "key", 0o644)
            .file("/s/blank", "\n", 0o600);
        let get = |text: &str| SecretRef::parse(text).unwrap().resolve(&env);
        assert_eq!(get("env:A").unwrap().expose(), "alpha");
        assert_eq!(get("file:/s/ok").unwrap().expose(), "key");
        assert_eq!(get("inline").unwrap().expose(), "inline");
        assert_eq!(get("env:B").unwrap_err(), SourceError::UnsetVariable { name: "B".into() });
        assert_eq!(get("env:EMPTY").unwrap_err(), SourceError::EmptyVariable { name: "EMPTY".into() });
        assert!(matches!(get("file:/s/open").unwrap_err(), SourceError::WorldReadable { mode: 0o644, .. }));
        assert!(matches!(get("file:/s/none").unwrap_err(), SourceError::Unreadable { .. }));
        assert!(matches!(get("file:/s/blank").unwrap_err(), SourceError::EmptyFile { .. }));
        assert_eq!(SecretRef::parse("env:1X").unwrap_err(), SourceError::BadVariableName { name: "1X".into() });
        assert_eq!(SecretRef::parse("file:").unwrap_err(), SourceError::EmptyPath);
        assert!(SecretRef::parse("hunter2").unwrap().is_inline());
        assert_eq!(format!("{:?}", SecretRef::parse("hunter2").unwrap()), "inline(***)");
    }
}
