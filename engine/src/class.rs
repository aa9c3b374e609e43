//! Error classes: what a broker error means for the session, whatever its wire form.
//!
//! Each adapter maps its broker's errors onto [`ErrorClass`] (Kotak's `900901`, IBKR's
//! `authenticated: false`, Saxo's 401 all become [`ErrorClass::AuthExpired`]); the state machine decides
//! from the class alone. [`AuthFailure`] is a failed login, refresh or keep-alive as the core sees it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an error means for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The broker rejected the token or the credentials as not (or no longer) authenticated.
    AuthExpired,
    /// Too many requests; come back after `retry_after` if the broker said.
    RateLimited {
        /// How long the broker asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A passing failure (timeout, connection loss, 5xx); trying again later may work.
    Transient,
    /// Will not work however often it is tried (bad credentials, account blocked).
    Permanent,
    /// A person must act (second factor, captcha, terms to accept).
    NeedsHuman,
    /// Another login holds the account (IBKR `competing`, Saxo trading-capability demotion).
    Competing,
}

impl ErrorClass {
    /// The usual meaning of an HTTP status, for adapters to start from: 401 is
    /// [`ErrorClass::AuthExpired`], 429 is [`ErrorClass::RateLimited`], 408 and 5xx are
    /// [`ErrorClass::Transient`], other 4xx — 403 among them — are [`ErrorClass::Permanent`], anything
    /// else transient.
    ///
    /// A 403 is a refusal of the call ("segment not permitted", "insufficient funds"), not of the token:
    /// treating it as an expired token makes every refused order cost a login. Brokers that signal an
    /// expired token with a 403 (Kotak Neo's "Invalid session", Kite's `TokenException`) say so in their
    /// adapter's [`crate::Broker::classify`], by the body's code or message, not by the status alone.
    pub fn from_http_status(status: u16, retry_after: Option<Duration>) -> ErrorClass {
        match status {
            401 => ErrorClass::AuthExpired,
            429 => ErrorClass::RateLimited { retry_after },
            408 | 500..=599 => ErrorClass::Transient,
            400..=499 => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::AuthExpired => f.write_str("authentication expired or rejected"),
            ErrorClass::RateLimited { retry_after: Some(d) } => {
                write!(f, "rate limited (retry after {})", crate::time::format_duration(*d))
            }
            ErrorClass::RateLimited { retry_after: None } => f.write_str("rate limited"),
            ErrorClass::Transient => f.write_str("transient failure"),
            ErrorClass::Permanent => f.write_str("permanent failure"),
            ErrorClass::NeedsHuman => f.write_str("a person must act (e.g. a second factor)"),
            ErrorClass::Competing => f.write_str("another login holds the account"),
        }
    }
}

/// A failed login, refresh or keep-alive: its class and a short description without secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailure {
    /// What the failure means.
    pub class: ErrorClass,
    /// What the broker said, for people; adapters must keep secrets out of it.
    pub detail: String,
}

impl AuthFailure {
    /// A failure of `class` described by `detail`.
    pub fn new(class: ErrorClass, detail: impl Into<String>) -> AuthFailure {
        AuthFailure { class, detail: detail.into() }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_classes() {
        assert_eq!(ErrorClass::from_http_status(401, None), ErrorClass::AuthExpired);
        assert_eq!(ErrorClass::from_http_status(403, None), ErrorClass::Permanent, "a business refusal");
        let wait = Some(Duration::from_secs(600));
        assert_eq!(ErrorClass::from_http_status(429, wait), ErrorClass::RateLimited { retry_after: wait });
        assert_eq!(ErrorClass::from_http_status(503, None), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(400, None), ErrorClass::Permanent);
    }
}
