//! Rule 7, safe retries: what to do after a broker call made with a lease has failed.
//!
//! An operation is retried automatically only when the broker provably did not execute it — it answered
//! that the token was not authenticated — and only with a newer grant, at most `retry_on_rejection`
//! times. A timeout or a connection lost after the request left, on a call that is not idempotent (an
//! order), is reported as an unknown outcome and never retried: a retry could place the order twice.

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
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
    /// Give the error to the caller.
    Fail,
    /// The broker may or may not have executed it: tell the caller so and do not retry.
    OutcomeUnknown,
}

/// Decides what follows a failure of `class`, delivered as `delivery`, on an operation of
/// `idempotency`, after `retries_done` automatic retries of at most `retry_limit`.
pub fn after_failure(
    class: ErrorClass,
    delivery: Delivery,
    idempotency: Idempotency,
    retries_done: u32,
    retry_limit: u32,
) -> AfterFailure {
    match (class, delivery) {
        // A rejection for authentication is the one proof that nothing was executed.
        (ErrorClass::AuthExpired, Delivery::Answered) if retries_done < retry_limit => {
            AfterFailure::RetryWithNewerGrant
        }
        (_, Delivery::Unknown) if idempotency == Idempotency::NonIdempotent => AfterFailure::OutcomeUnknown,
        _ => AfterFailure::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rejections_are_retried_and_unknown_orders_are_reported() {
        use AfterFailure::*;
        use Idempotency::*;
        let auth = ErrorClass::AuthExpired;
        assert_eq!(after_failure(auth, Delivery::Answered, NonIdempotent, 0, 1), RetryWithNewerGrant);
        assert_eq!(after_failure(auth, Delivery::Answered, NonIdempotent, 1, 1), Fail);
        assert_eq!(after_failure(ErrorClass::Transient, Delivery::Unknown, NonIdempotent, 0, 1), OutcomeUnknown);
        assert_eq!(after_failure(auth, Delivery::Unknown, NonIdempotent, 0, 1), OutcomeUnknown);
        assert_eq!(after_failure(ErrorClass::Transient, Delivery::Unknown, Idempotent, 0, 1), Fail);
        assert_eq!(after_failure(ErrorClass::Transient, Delivery::NotSent, NonIdempotent, 0, 1), Fail);
    }
}
