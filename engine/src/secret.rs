//! Secrets: tokens, passwords and keys that must never reach a log, a Debug print or an error message.
//!
//! [`Secret`] wraps the text, prints as `Secret(***)`, zeroes its memory when dropped and gives the text
//! only through [`Secret::expose`], so every place that reads a secret says so. It serialises as plain
//! text because snapshots must carry the grant: the store encrypts every record before it touches disk.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string (token, password, key). Debug prints `Secret(***)`; there is no Display.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Default)]
#[serde(transparent)]
pub struct Secret(String);

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
}
