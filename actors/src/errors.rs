//! The runtime's errors: what a caller of `token()`, `execute()` or `Warden` can get back.

use warden_engine::{BrokerError, ErrorClass, PolicyError, RequestError, SessionId, StoreError};

/// Why no token was handed out: the core's [`RequestError`] (`Invalid`, `Timeout`, `Stopped`,
/// `Overloaded`), or `Closed` when the session or its `Warden` is gone. *(interface)*
pub type TokenError = RequestError;

/// Why `execute` did not return the operation's result. *(interface)*
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError {
    /// No token to run it with.
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
    /// A call that is not idempotent got no answer: the broker may or may not have executed it. It was
    /// not retried (no duplicate orders); check its status before trying again.
    #[error("outcome unknown (not retried, to avoid a duplicate): {0}")]
    OutcomeUnknown(BrokerError),
    /// The account's request rate limit did not free up within the request timeout.
    #[error("request rate limit of account `{account}` did not free up within the request timeout")]
    RateLimited {
        /// The broker account.
        account: String,
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
}
