//! Why a session has no token to give: what failed last, and what the session waits for now.
//!
//! A request that times out gets a [`Stall`] inside its error ([`crate::RequestError::Timeout`]), so the
//! caller reads the cause where it meets the problem — "the last login failed at 09:14:03 (transient
//! failure: HTTP 503 service unavailable); the next login may start at 09:14:13 (backing off after
//! failures)" — instead of finding it in an event stream. The runtime shows the same in a session's status.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::event::DeferCause;
use crate::kinds::AuthKind;
use crate::time::UnixMs;

/// Which broker call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallKind {
    /// A full login.
    Login,
    /// A refresh-token grant.
    Refresh,
    /// A keep-alive ping.
    Keepalive,
}

impl From<AuthKind> for CallKind {
    fn from(kind: AuthKind) -> CallKind {
        match kind {
            AuthKind::Login => CallKind::Login,
            AuthKind::Refresh => CallKind::Refresh,
        }
    }
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallKind::Login => "login",
            CallKind::Refresh => "refresh",
            CallKind::Keepalive => "keep-alive",
        })
    }
}

/// The most recent failed login, refresh or keep-alive since the last grant was installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    /// When it failed.
    pub at: UnixMs,
    /// Which call.
    pub call: CallKind,
    /// What the failure means.
    pub class: ErrorClass,
    /// What the broker said (no secrets).
    pub detail: String,
}

/// What a session without a usable grant is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitingFor {
    /// A login or refresh is in flight.
    Call {
        /// Which.
        kind: AuthKind,
        /// Since when.
        since: UnixMs,
    },
    /// The next login or refresh may start at `at`; `cause` holds it back until then.
    Attempt {
        /// Which call comes next.
        kind: AuthKind,
        /// The earliest start.
        at: UnixMs,
        /// What holds it back.
        cause: DeferCause,
    },
    /// Expired until the warm-up time (a request starts a login earlier).
    Warmup {
        /// The warm-up instant.
        at: UnixMs,
    },
}

/// Why a session has no token to give now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// The last failure since the last grant, if any.
    pub last_failure: Option<LastFailure>,
    /// What the session waits for, if anything.
    pub waiting_for: Option<WaitingFor>,
}

impl fmt::Display for LastFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the last {} failed at {} ({}: {})", self.call, self.at, self.class, self.detail)
    }
}

impl fmt::Display for WaitingFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitingFor::Call { kind, since } => write!(f, "a {kind} has been in flight since {since}"),
            WaitingFor::Attempt { kind, at, cause } => write!(f, "the next {kind} may start at {at} ({cause})"),
            WaitingFor::Warmup { at } => write!(f, "the session waits for its warm-up time at {at}"),
        }
    }
}

impl fmt::Display for Stall {
    /// `"; the last login failed at … (…); the next login may start at … (…)"`, or nothing when nothing
    /// is known: written to follow a sentence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(failure) = &self.last_failure {
            write!(f, "; {failure}")?;
        }
        if let Some(waiting) = &self.waiting_for {
            write!(f, "; {waiting}")?;
        }
        Ok(())
    }
}
