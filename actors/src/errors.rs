//! The runtime's errors: what a caller of `token()`, `execute()` or `Warden` can get back.

use std::time::Duration;

use warden_engine::time::format_duration;
use warden_engine::{
    BrokerError, ErrorClass, Generation, MemberName, PolicyError, RequestError, SessionId, StoreError, UnixMs,
};

/// Why no token was handed out: the core's [`RequestError`] (`Invalid`, `Timeout`, `Stopped`,
/// `Overloaded`), or `Closed` when the session or its `Warden` is gone.
pub type TokenError = RequestError;

/// Why `execute` did not return the operation's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError {
    /// No token to run it with (the wait for a token ran out, or the session is invalid, stopped, …).
    #[error("no token: {0}")]
    Token(#[from] TokenError),
    /// The broker refused it (after any automatic retries rule 7 allows).
    #[error("broker error ({class}): {error}")]
    Broker {
        /// What the error means.
        class: ErrorClass,
        /// The error.
        error: BrokerError,
    },
    /// A call that is not idempotent got no answer (or a gateway's 500/502/504): the broker may or may not
    /// have executed it. It was not retried (no duplicate orders); check its status before trying again.
    #[error("outcome unknown (not retried, to avoid a duplicate): {0}")]
    OutcomeUnknown(BrokerError),
    /// The wait for the account's request rate limit ran out: the token wait and the rate-limit wait of
    /// one attempt share its `request_timeout`.
    #[error(
        "the request rate limit of account `{account}` did not free up within the attempt's request timeout ({})",
        format_duration(*request_timeout)
    )]
    RateLimited {
        /// The broker account.
        account: String,
        /// The budget the two waits shared.
        request_timeout: Duration,
    },
    /// The retry after a rejection was rejected again although its grant was fresh (younger than
    /// `min_grant_age`): the broker refuses this call whatever the token (a permission, a segment not
    /// enabled). No further login was started for it; the session keeps its grant.
    #[error(
        "the broker refused a fresh token ({generation}, {} old) for this call; no further login was started: {error}",
        format_duration(*grant_age)
    )]
    FreshTokenRefused {
        /// The grant the refused retry used.
        generation: Generation,
        /// How old that grant was.
        grant_age: Duration,
        /// The broker's answer.
        error: BrokerError,
    },
}

/// Why a `Warden` operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WardenError {
    /// The store could not be opened or used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session's policy is not valid.
    #[error("session {session}: {error}")]
    Policy {
        /// The session.
        session: SessionId,
        /// What is wrong.
        error: PolicyError,
    },
    /// A session of this id is already open.
    #[error("session {0} is already open")]
    AlreadyOpen(SessionId),
    /// No open session has this id.
    #[error("no open session {0}")]
    NotOpen(SessionId),
    /// The actor system refused to start an actor.
    #[error("could not start the actor for session {session}: {detail}")]
    Spawn {
        /// The session.
        session: SessionId,
        /// What went wrong.
        detail: String,
    },
    /// The actor runtime could not start.
    #[error("{0}")]
    Runtime(String),
    /// The `Warden` is shut down.
    #[error("warden is shut down")]
    Closed,
    /// Another member of the cluster holds the session's lease: it runs there, not here (a session is
    /// never opened by two members at once).
    #[error("session {session} is held by member {holder} (its lease runs until {expires_at} unless renewed)")]
    NotOwner {
        /// The session.
        session: SessionId,
        /// The member that holds it.
        holder: MemberName,
        /// When its lease lapses unless renewed.
        expires_at: UnixMs,
    },
}
