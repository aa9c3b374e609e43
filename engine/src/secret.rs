//! Secrets: tokens, passwords and keys that must never reach a log, a Debug print, an error message or a
//! serialised form.
//!
//! [`Secret`] wraps the text, prints as `Secret(***)`, zeroes its memory when dropped and gives the text
//! only through [`Secret::expose`], so every place that reads a secret says so. Serialised, a secret is
//! the redaction `"***"` — `serde_json::to_string(&grant)` shows no token — except inside
//! [`serialize_exposed`], the one named path through which a store writes the plain text into a record
//! it encrypts before it touches disk. Deserialising always reads the plain text.
//!
//! ```
//! use warden_engine::{Grant, UnixMs, secret::serialize_exposed};
//!
//! let grant = Grant::new("tok-123", UnixMs::EPOCH);
//! assert!(!serde_json::to_string(&grant).unwrap().contains("tok-123"));
//! let plain = serialize_exposed(|| serde_json::to_string(&grant)).unwrap();
//! assert!(plain.contains("tok-123"));
//! ```

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// What a secret serialises as outside [`serialize_exposed`].
pub const REDACTED: &str = "***";

thread_local! {
    /// Set while [`serialize_exposed`] runs on this thread.
    static EXPOSE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `serialize` with secrets serialising as their plain text, on this thread only. The one path by
/// which a secret's text reaches a serialised form: a store calls it around the encoding of a record it
/// then encrypts. Nested calls are fine; the previous mode is restored even if `serialize` panics.
pub fn serialize_exposed<R>(serialize: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            EXPOSE.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EXPOSE.with(|e| e.replace(true)));
    serialize()
}

/// A secret string (token, password, key). Debug prints `Secret(***)`; there is no Display; it
/// serialises as `"***"` (see the module documentation).
#[derive(Clone, Deserialize, Zeroize, ZeroizeOnDrop, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if EXPOSE.with(Cell::get) { s.serialize_str(&self.0) } else { s.serialize_str(REDACTED) }
    }
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret text. Call it only where the secret leaves the process for the broker.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Secret {
    /// Compares in time that does not depend on where the first difference is.
    fn eq(&self, other: &Secret) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2-token");
        assert_eq!(s, Secret::new("hunter2-token"));
        assert_ne!(s, Secret::new("hunter2-tokem"));
    }

    #[test]
    fn serialising_redacts_except_on_the_named_path() {
        let s = Secret::new("hunter2-token");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        let exposed = serialize_exposed(|| serialize_exposed(|| serde_json::to_string(&s).unwrap()));
        assert_eq!(exposed, "\"hunter2-token\"");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"", "the exposed mode ends with the call");
        let back: Secret = serde_json::from_str(&exposed).unwrap();
        assert_eq!(back, s);
        let caught = std::panic::catch_unwind(|| serialize_exposed(|| panic!("encoder bug")));
        assert!(caught.is_err());
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"", "restored after a panic");
    }
}
