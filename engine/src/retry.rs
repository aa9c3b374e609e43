//! Rule 7, safe retries: what to do after a broker call made with a lease has failed.
//!
//! An operation is retried automatically only when the broker provably did not execute it — it answered
//! that the token was not authenticated — and only with a newer grant, at most `retry_on_rejection`
//! times. A timeout, a lost connection or a gateway's 500/502/504 on a call that is not idempotent (an
//! order) is reported as an unknown outcome and never retried: a retry could place the order twice. And a
//! retry that is rejected again although its grant is fresh (younger than `min_grant_age`) fails the call
//! without another login: the broker refuses the call, not the token.
//!
//! ```
//! use std::time::Duration;
//! use warden_engine::retry::{AfterFailure, FailedCall, after_failure};
//! use warden_engine::{Delivery, ErrorClass, Idempotency, Policy};
//!
//! let policy = Policy::default();
//! let order = FailedCall {
//!     class: ErrorClass::Transient,
//!     delivery: Delivery::Unknown, // a 502 from the broker's gateway
//!     idempotency: Idempotency::NonIdempotent,
//!     retries_done: 0,
//!     grant_age: Duration::from_secs(600),
//! };
//! assert_eq!(after_failure(&order, &policy), AfterFailure::OutcomeUnknown);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::policy::Policy;
use crate::ports::Delivery;

/// Whether repeating an operation is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Idempotency {
    /// Reading (quotes, positions) or naturally idempotent (cancel by id, orders with a client id the
    /// broker de-duplicates).
    Idempotent,
    /// Doing it twice does it twice (placing an order).
    NonIdempotent,
}

/// The decision after a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// The broker rejected the token, so it did nothing: report the rejection, wait for a newer grant
    /// and run the operation again.
    RetryWithNewerGrant,
    /// Give the error to the caller (a rejection among them is still reported to the session).
    Fail,
    /// The broker may or may not have executed it: tell the caller so and do not retry.
    OutcomeUnknown,
    /// A retry was rejected again with a grant younger than `min_grant_age`: the broker refuses this call
    /// whatever the token. Fail it, keep the grant, start no login.
    FreshTokenRefused,
}

impl AfterFailure {
    /// Whether the session should hear of the rejection (and so replace the grant).
    pub fn reports_rejection(self) -> bool {
        self != AfterFailure::FreshTokenRefused
    }
}

/// What is known about a failed call when deciding what follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedCall {
    /// What the error means ([`crate::Broker::classify`]).
    pub class: ErrorClass,
    /// How far the request got.
    pub delivery: Delivery,
    /// Whether running it again is harmless.
    pub idempotency: Idempotency,
    /// Automatic retries already made for this operation.
    pub retries_done: u32,
    /// How old the grant the call used was (from its `issued_at`).
    pub grant_age: Duration,
}

/// Decides what follows a failed call under `policy` (`retry_on_rejection`, `min_grant_age`).
pub fn after_failure(call: &FailedCall, policy: &Policy) -> AfterFailure {
    let rejected = call.class == ErrorClass::AuthExpired && call.delivery == Delivery::Answered;
    if rejected && call.retries_done > 0 && call.grant_age < policy.min_grant_age {
        return AfterFailure::FreshTokenRefused;
    }
    if rejected && call.retries_done < policy.retry_on_rejection {
        // A rejection for authentication is the one proof that nothing was executed.
        return AfterFailure::RetryWithNewerGrant;
    }
    if call.delivery == Delivery::Unknown && call.idempotency == Idempotency::NonIdempotent {
        return AfterFailure::OutcomeUnknown;
    }
    AfterFailure::Fail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(class: ErrorClass, delivery: Delivery, idempotency: Idempotency, retries_done: u32) -> AfterFailure {
        let call = FailedCall { class, delivery, idempotency, retries_done, grant_age: Duration::from_secs(600) };
        after_failure(&call, &Policy::default())
    }

    #[test]
    fn only_rejections_are_retried_and_unknown_orders_are_reported() {
        use AfterFailure::*;
        use Idempotency::*;
        let auth = ErrorClass::AuthExpired;
        assert_eq!(decide(auth, Delivery::Answered, NonIdempotent, 0), RetryWithNewerGrant);
        assert_eq!(decide(auth, Delivery::Answered, NonIdempotent, 1), Fail);
        assert_eq!(decide(ErrorClass::Transient, Delivery::Unknown, NonIdempotent, 0), OutcomeUnknown);
        assert_eq!(decide(auth, Delivery::Unknown, NonIdempotent, 0), OutcomeUnknown);
        assert_eq!(decide(ErrorClass::Transient, Delivery::Unknown, Idempotent, 0), Fail);
        assert_eq!(decide(ErrorClass::Transient, Delivery::NotSent, NonIdempotent, 0), Fail);
        assert_eq!(decide(ErrorClass::Permanent, Delivery::Answered, NonIdempotent, 0), Fail, "a business 403");
    }

    #[test]
    fn a_fresh_grant_rejected_again_fails_the_call_without_a_login() {
        let policy = Policy::default();
        let mut call = FailedCall {
            class: ErrorClass::AuthExpired,
            delivery: Delivery::Answered,
            idempotency: Idempotency::NonIdempotent,
            retries_done: 1,
            grant_age: Duration::from_secs(2),
        };
        assert_eq!(after_failure(&call, &policy), AfterFailure::FreshTokenRefused);
        assert!(!AfterFailure::FreshTokenRefused.reports_rejection());
        call.grant_age = Duration::from_secs(11);
        assert_eq!(after_failure(&call, &policy), AfterFailure::Fail, "an older grant: report it, re-login");
        call.retries_done = 0;
        call.grant_age = Duration::from_secs(2);
        assert_eq!(after_failure(&call, &policy), AfterFailure::RetryWithNewerGrant, "the first rejection retries");
    }
}
