//! Session events: what happened to a session and why, for engines (clear your caches), operators
//! (why did my session die at 11:42) and the transition log.
//!
//! Events carry no secrets: a grant appears as its generation and lifetime only.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::ids::Generation;
use crate::session::{AuthKind, StateKind};
use crate::time::{UnixMs, format_duration};

/// One thing that happened to a session, at a wall-clock time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// When it happened.
    pub at: UnixMs,
    /// What happened.
    pub kind: EventKind,
}

/// What happened. *(interface; variants may be added)*
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// The session moved from one state to another.
    StateChanged {
        /// The state it left.
        from: StateKind,
        /// The state it entered.
        to: StateKind,
        /// Why.
        reason: Reason,
    },
    /// A new grant was installed.
    GrantInstalled {
        /// Its generation.
        generation: Generation,
        /// Whether a login or a refresh produced it.
        kind: AuthKind,
        /// When it was issued.
        issued_at: UnixMs,
        /// When it expires, if it does.
        expires_at: Option<UnixMs>,
        /// Its lifetime as issued, in milliseconds (for learning brokers' real token lifetimes).
        lifetime_ms: Option<u64>,
    },
    /// The grant of this generation is dead: drop every cache derived from it (feed tokens, symbols,
    /// sockets authorised with it).
    Revoked {
        /// The generation revoked.
        generation: Generation,
        /// Why.
        reason: Reason,
    },
    /// A login or refresh failed.
    AuthFailed {
        /// Login or refresh.
        kind: AuthKind,
        /// What the failure means.
        class: ErrorClass,
        /// What the broker said (no secrets).
        detail: String,
        /// Credential rejections in a row so far.
        consecutive_failures: u32,
    },
    /// The next login or refresh waits until `until` (backoff, rate limit or a broker's retry-after).
    Deferred {
        /// The earliest next attempt.
        until: UnixMs,
        /// Why it waits.
        cause: DeferCause,
    },
    /// A keep-alive ping failed or said the session is gone.
    KeepaliveFailed {
        /// What the failure means.
        class: ErrorClass,
        /// Failed pings in a row.
        consecutive: u32,
    },
}

/// Why an attempt waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DeferCause {
    /// Backoff after failures.
    Backoff,
    /// The login rate limit is spent until then.
    LoginRate,
    /// The broker asked to wait.
    RetryAfter,
}

/// Why a transition happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// The session was created.
    Started,
    /// The session was restored from a snapshot.
    Restored,
    /// A login or refresh succeeded.
    Authenticated,
    /// The proactive refresh time was reached.
    RefreshDue,
    /// The login reached `max_session_age`.
    SessionAgeReached,
    /// A request arrived with less than `lazy_threshold` left on the token.
    LazyRefresh,
    /// The token's usable life (expiry minus margin) ended.
    TokenExpired,
    /// The daily cut-off passed.
    DailyCutoff,
    /// The broker rejected the current token.
    Rejected,
    /// A keep-alive said the session is not authenticated.
    KeepaliveUnauthenticated,
    /// Too many keep-alives failed in a row.
    KeepaliveFailed,
    /// No request for `idle_timeout`.
    Idle,
    /// A request asked for a token.
    Demand,
    /// The policy's eager mode logs in at once.
    Eager,
    /// The warm-up time before market open.
    Warmup,
    /// A login or refresh failed and will be retried.
    AuthFailed,
    /// The session gave up.
    GaveUp(InvalidReason),
    /// An operator reset the session.
    Reset,
    /// New credentials were supplied.
    CredentialsUpdated,
    /// An operator supplied a second factor.
    SecondFactor,
    /// Another login holds the account and the policy says take over.
    Competing,
    /// The session was logged out.
    LoggedOut,
}

/// Why a session gave up (`Invalid`); it stays there until an operator acts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The broker says the credentials are wrong (or the account is blocked).
    BadCredentials {
        /// What the broker said.
        detail: String,
    },
    /// A person must act: a second factor, a captcha. Supply it with the handle's second-factor call.
    NeedsHuman {
        /// What the broker asked for.
        detail: String,
    },
    /// Too many credential rejections in a row.
    FailureBudgetSpent {
        /// How many.
        failures: u32,
    },
    /// Another login holds the account and the policy says yield.
    Competing,
    /// The session actor crashed too often.
    RestartLimit {
        /// Restarts counted.
        restarts: u32,
        /// In this window, in milliseconds.
        within_ms: u64,
    },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::BadCredentials { detail } => write!(f, "the broker rejected the credentials: {detail}"),
            InvalidReason::NeedsHuman { detail } => write!(f, "a person must act (second factor?): {detail}"),
            InvalidReason::FailureBudgetSpent { failures } => {
                write!(f, "gave up after {failures} rejected logins in a row (protecting the account from lock-out)")
            }
            InvalidReason::Competing => f.write_str("another login holds the account and the policy says yield"),
            InvalidReason::RestartLimit { restarts, within_ms } => write!(
                f,
                "the session actor failed {restarts} times within {}",
                format_duration(Duration::from_millis(*within_ms))
            ),
        }
    }
}
