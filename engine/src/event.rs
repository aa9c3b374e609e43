//! Session events: what happened to a session and why, for engines (clear your caches), operators
//! (why did my session die at 11:42) and the transition log.
//!
//! Events carry no secrets: a grant appears as its generation and lifetime only.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::ids::Generation;
use crate::kinds::{AuthKind, StateKind};
use crate::time::{UnixMs, format_duration};

/// One thing that happened to a session, at a wall-clock time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// When it happened.
    pub at: UnixMs,
    /// What happened.
    pub kind: EventKind,
}

/// What happened (variants may be added).
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
    /// A login issued before the daily cut-off came back after it: its grant is dead. It was thrown away
    /// (and logged out); a new login starts at once (or, with `after_cutoff = "operator"`, waits for a
    /// person). The discarded attempt and its replacement count as one attempt against `login_rate`.
    LoginDiscarded {
        /// When the discarded grant was issued.
        issued_at: UnixMs,
        /// The cut-off it missed.
        cutoff_at: UnixMs,
    },
    /// The policy cannot keep this broker's tokens alive as configured (e.g. `login_rate` allows fewer
    /// logins than tokens this short need without a refresh grant). Said once per session.
    PolicyWarning {
        /// What does not fit, naming the settings.
        detail: String,
    },
}

impl fmt::Display for SessionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.kind)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::StateChanged { from, to, reason } => write!(f, "moved from {from} to {to}: {reason}"),
            EventKind::GrantInstalled { generation, kind, expires_at, lifetime_ms, .. } => {
                write!(f, "installed grant {generation} from a {kind}")?;
                match (expires_at, lifetime_ms) {
                    (Some(at), Some(ms)) => {
                        write!(f, ", expiring at {at} (lifetime {})", format_duration(Duration::from_millis(*ms)))
                    }
                    (Some(at), None) => write!(f, ", expiring at {at}"),
                    _ => f.write_str(", with no expiry given"),
                }
            }
            EventKind::Revoked { generation, reason } => {
                write!(f, "revoked grant {generation} ({reason}): drop every cache derived from it")
            }
            EventKind::AuthFailed { kind, class, detail, consecutive_failures } => {
                write!(f, "the {kind} failed ({class}: {detail})")?;
                if *consecutive_failures > 0 {
                    write!(f, "; {consecutive_failures} rejected login(s) in a row")?;
                }
                Ok(())
            }
            EventKind::Deferred { until, cause } => {
                write!(f, "the next login or refresh waits until {until} ({cause})")
            }
            EventKind::KeepaliveFailed { class, consecutive } => {
                write!(f, "a keep-alive failed ({class}); {consecutive} in a row")
            }
            EventKind::LoginDiscarded { issued_at, cutoff_at } => write!(
                f,
                "a login issued at {issued_at}, before the daily cut-off at {cutoff_at}, came back after it: its \
                 grant was discarded"
            ),
            EventKind::PolicyWarning { detail } => write!(f, "the policy does not fit the broker: {detail}"),
        }
    }
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

impl fmt::Display for DeferCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeferCause::Backoff => "backing off after failures",
            DeferCause::LoginRate => "the login rate limit is spent until then",
            DeferCause::RetryAfter => "the broker asked to wait",
        })
    }
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

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Started => f.write_str("the session was created"),
            Reason::Restored => f.write_str("the session was restored from the store"),
            Reason::Authenticated => f.write_str("a login or refresh succeeded"),
            Reason::RefreshDue => f.write_str("the refresh time was reached"),
            Reason::SessionAgeReached => f.write_str("the login reached max_session_age"),
            Reason::LazyRefresh => f.write_str("a request came within the lazy threshold of expiry"),
            Reason::TokenExpired => f.write_str("the token's usable life ended"),
            Reason::DailyCutoff => f.write_str("the daily cut-off passed"),
            Reason::Rejected => f.write_str("the broker rejected the token"),
            Reason::KeepaliveUnauthenticated => f.write_str("a keep-alive said the session is not authenticated"),
            Reason::KeepaliveFailed => f.write_str("too many keep-alives failed in a row"),
            Reason::Idle => f.write_str("no request came for idle_timeout"),
            Reason::Demand => f.write_str("a request asked for a token"),
            Reason::Eager => f.write_str("the policy is eager"),
            Reason::Warmup => f.write_str("the warm-up time was reached"),
            Reason::AuthFailed => f.write_str("a login or refresh failed"),
            Reason::GaveUp(reason) => write!(f, "gave up: {reason}"),
            Reason::Reset => f.write_str("an operator reset the session"),
            Reason::CredentialsUpdated => f.write_str("new credentials were supplied"),
            Reason::SecondFactor => f.write_str("an operator supplied a second factor or login code"),
            Reason::Competing => f.write_str("another login holds the account"),
            Reason::LoggedOut => f.write_str("the session was logged out"),
        }
    }
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
    /// The broker's daily expiry passed and its next login needs a person (`after_cutoff =
    /// "operator"`): hand in a request token or code (`supply_second_factor`) or new credentials.
    AfterCutoff {
        /// The cut-off that passed.
        cutoff_at: UnixMs,
    },
    /// The session actor crashed too often (in this process; a new process starts with a fresh budget).
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
                write!(f, "{failures} rejected logins in a row (stopped there to protect the account from lock-out)")
            }
            InvalidReason::Competing => f.write_str("another login holds the account and the policy says yield"),
            InvalidReason::AfterCutoff { cutoff_at } => write!(
                f,
                "the broker's daily expiry at {cutoff_at} passed and its next login needs a person: hand in a request \
                 token or login code (supply_second_factor) or new credentials (update_credentials)"
            ),
            InvalidReason::RestartLimit { restarts, within_ms } => write!(
                f,
                "the session actor failed {restarts} times within {}",
                format_duration(Duration::from_millis(*within_ms))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_sentences() {
        let at = UnixMs::from_millis(1_773_027_000_000);
        let changed = SessionEvent {
            at,
            kind: EventKind::StateChanged {
                from: StateKind::Valid,
                to: StateKind::Expired,
                reason: Reason::DailyCutoff,
            },
        };
        assert_eq!(changed.to_string(), "2026-03-09T03:30:00Z: moved from Valid to Expired: the daily cut-off passed");
        let failed = EventKind::AuthFailed {
            kind: AuthKind::Login,
            class: ErrorClass::Transient,
            detail: "HTTP 503 service unavailable".into(),
            consecutive_failures: 0,
        };
        assert_eq!(failed.to_string(), "the login failed (transient failure: HTTP 503 service unavailable)");
        let gave_up = Reason::GaveUp(InvalidReason::FailureBudgetSpent { failures: 3 });
        assert_eq!(
            gave_up.to_string(),
            "gave up: 3 rejected logins in a row (stopped there to protect the account from lock-out)"
        );
        let deferred = EventKind::Deferred { until: at, cause: DeferCause::LoginRate };
        assert!(deferred.to_string().ends_with("(the login rate limit is spent until then)"), "{deferred}");
    }
}
