//! The names shared by the session core, its events and its errors: the seven [`StateKind`]s and the two
//! [`AuthKind`]s. They sit below both the state machine and the event vocabulary, so neither depends on
//! the other for them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The seven states of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateKind {
    /// No grant yet; the first login is under way.
    Initializing,
    /// The grant is good; the next deadline is the refresh time.
    Valid,
    /// Within the refresh buffer: one refresh in flight or backing off; the current token is still served.
    ExpiringSoon,
    /// No usable grant and nothing in flight (after the daily cut-off, overnight, lazy mode).
    Expired,
    /// A full re-login (or a refresh after expiry) under way, or waiting out backoff or the rate limit.
    Reinitializing,
    /// Gave up (bad credentials, second factor needed, failure budget spent); requests fail fast.
    Invalid,
    /// Logged out; the grant is revoked.
    Stopped,
}

impl StateKind {
    /// All states, in table order.
    pub const ALL: [StateKind; 7] = [
        StateKind::Initializing,
        StateKind::Valid,
        StateKind::ExpiringSoon,
        StateKind::Expired,
        StateKind::Reinitializing,
        StateKind::Invalid,
        StateKind::Stopped,
    ];

    /// Whether a token is handed out in this state.
    pub fn token_usable(self) -> bool {
        matches!(self, StateKind::Valid | StateKind::ExpiringSoon)
    }

    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Initializing => "Initializing",
            StateKind::Valid => "Valid",
            StateKind::ExpiringSoon => "ExpiringSoon",
            StateKind::Expired => "Expired",
            StateKind::Reinitializing => "Reinitializing",
            StateKind::Invalid => "Invalid",
            StateKind::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a grant comes from a full login or a refresh-token grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthKind {
    /// A full login (credentials, maybe a second factor).
    Login,
    /// A refresh-token grant.
    Refresh,
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthKind::Login => "login",
            AuthKind::Refresh => "refresh",
        })
    }
}
