//! Identifiers: which session, which grant, which waiting request, which broker call.
//!
//! [`SessionId`] names a broker session (validated: it becomes a store key and a log field).
//! [`Generation`] numbers grants; it only grows, so a rejection naming an older generation is stale.
//! [`WaiterId`] and [`AttemptId`] let a driver match answers to questions.
//! [`MemberName`] names a warden process among several sharing one store, and [`Fence`] numbers the
//! leases a store grants on a session: it only grows, so a write carrying an older fence is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of one broker session, e.g. `kotak-main` or `saxo.sim.1`.
///
/// 1 to 64 characters of ASCII letters, digits, `.`, `_` and `-`: it is used as a store key, in file
/// names and in logs, so nothing that needs quoting is allowed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

/// Why a text is not a valid [`SessionId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionIdError {
    /// The id is empty.
    #[error("a session id must not be empty")]
    Empty,
    /// The id is longer than 64 characters.
    #[error("session id `{0}…` is longer than 64 characters")]
    TooLong(String),
    /// The id contains a character outside `[A-Za-z0-9._-]`.
    #[error("session id `{id}` contains {ch:?}; use letters, digits, '.', '_' and '-'")]
    BadChar {
        /// The id as given.
        id: String,
        /// The first offending character.
        ch: char,
    },
}

impl SessionId {
    /// Longest allowed id, in characters.
    pub const MAX_LEN: usize = 64;

    /// A validated session id.
    pub fn new(id: impl Into<String>) -> Result<SessionId, SessionIdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(SessionIdError::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return Err(SessionIdError::TooLong(id.chars().take(16).collect()));
        }
        if let Some(ch) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(SessionIdError::BadChar { id, ch });
        }
        Ok(SessionId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = SessionIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SessionId::new(s)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl std::str::FromStr for SessionId {
    type Err = SessionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionId::new(s)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number of a grant. Zero means "no grant yet"; every new grant gets the next number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// No grant has been installed yet.
    pub const NONE: Generation = Generation(0);

    /// The generation after this one.
    #[must_use]
    pub fn next(self) -> Generation {
        Generation(self.0.saturating_add(1))
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// A request waiting for a token, chosen by the driver (unique among the waiting ones).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct WaiterId(pub u64);

/// One login, refresh or keep-alive call, chosen by the session; its answer must name it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct AttemptId(pub u64);

/// The fencing number of a lease on a session: every lease a store grants on a session gets a larger one
/// than the last, so a write or a login carrying an older fence comes from an owner that lost the session.
///
/// It is its own number, not the grant's [`Generation`]: a member that takes a session over and reuses
/// the stored grant keeps the generation but holds a new fence.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Fence(pub u64);

impl Fence {
    /// No lease was ever granted.
    pub const NONE: Fence = Fence(0);
    /// The one fence of a store with a single owner (the in-process stores): its leases never change hands.
    pub const SINGLE_OWNER: Fence = Fence(1);
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}", self.0)
    }
}

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// The name of one warden process (a member) among several that share a store, e.g. `warden-a` or
/// `host-3.1`. The same rules as a [`SessionId`]: 1 to 64 characters of ASCII letters, digits, `.`, `_`
/// and `-`. Two live processes must never share a name: a lease belongs to a name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberName(String);

/// Why a text is not a valid [`MemberName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("member name `{0}` must be 1 to 64 characters of ASCII letters, digits, '.', '_' and '-'")]
pub struct MemberNameError(String);

impl MemberName {
    /// A validated member name.
    pub fn new(name: impl Into<String>) -> Result<MemberName, MemberNameError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= SessionId::MAX_LEN
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(MemberNameError(name.chars().take(64).collect()));
        }
        Ok(MemberName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MemberName {
    type Error = MemberNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MemberName::new(s)
    }
}

impl From<MemberName> for String {
    fn from(name: MemberName) -> String {
        name.0
    }
}

impl fmt::Debug for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_validated() {
        assert!(SessionId::new("kotak-main.1_a").is_ok());
        assert_eq!(SessionId::new(""), Err(SessionIdError::Empty));
        assert!(matches!(SessionId::new("a b"), Err(SessionIdError::BadChar { ch: ' ', .. })));
        assert!(matches!(SessionId::new("x".repeat(65)), Err(SessionIdError::TooLong(_))));
        let err = serde_json::from_str::<SessionId>("\"a/b\"").unwrap_err().to_string();
        assert!(err.contains("'/'"), "{err}");
    }

    #[test]
    fn generations_only_grow() {
        assert!(Generation::NONE.next() > Generation::NONE);
        assert_eq!(Generation(u64::MAX).next(), Generation(u64::MAX));
    }

    #[test]
    fn member_names_follow_the_session_id_rules() {
        assert_eq!(MemberName::new("warden-a.1").expect("valid").as_str(), "warden-a.1");
        assert!(MemberName::new("").is_err());
        assert!(MemberName::new("a b").is_err());
        assert!(MemberName::new("x".repeat(65)).is_err());
        assert!(Fence::SINGLE_OWNER > Fence::NONE);
    }
}
