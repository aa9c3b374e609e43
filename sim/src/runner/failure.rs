//! Which report bucket a failed request goes to: the runtime's errors mapped onto
//! [`FailureKind`](crate::report::FailureKind).
//!
//! The runtime's error enums are `#[non_exhaustive]` and grow: a kind this module does not know yet lands
//! in `other` (and an `Invalid` reason in `invalid_by.other`) until it is given a bucket here.

use warden_actors::ExecuteError;
use warden_engine::{ErrorClass, InvalidReason, RequestError};

use crate::report::{FailureKind, InvalidKind};

/// The bucket of a request that `execute` failed.
pub(crate) fn failure_kind(error: &ExecuteError) -> FailureKind {
    match error {
        ExecuteError::Token(token) => match token {
            RequestError::Invalid(reason) => FailureKind::Invalid(invalid_kind(reason)),
            RequestError::Timeout(_) => FailureKind::Timeout,
            RequestError::Stopped => FailureKind::Stopped,
            RequestError::Overloaded { .. } => FailureKind::Overloaded,
            RequestError::Closed => FailureKind::Closed,
            // New kinds of the runtime: counted, in `other`, until they get a bucket.
            _ => FailureKind::Other,
        },
        ExecuteError::Broker { class, .. } => match class {
            ErrorClass::AuthExpired | ErrorClass::Competing => FailureKind::RejectedAfterRetries,
            ErrorClass::RateLimited { .. } => FailureKind::BrokerRateLimited,
            ErrorClass::Transient => FailureKind::BrokerUnavailable,
            ErrorClass::Permanent | ErrorClass::NeedsHuman => FailureKind::BrokerRefused,
            _ => FailureKind::Other,
        },
        ExecuteError::OutcomeUnknown(_) => FailureKind::OutcomeUnknown,
        ExecuteError::RateLimited { .. } => FailureKind::RateLimited,
        ExecuteError::FreshTokenRefused { .. } => FailureKind::FreshTokenRefused,
        _ => FailureKind::Other,
    }
}

/// The bucket of a reason to give up.
fn invalid_kind(reason: &InvalidReason) -> InvalidKind {
    match reason {
        InvalidReason::BadCredentials { .. } => InvalidKind::BadCredentials,
        InvalidReason::NeedsHuman { .. } => InvalidKind::NeedsHuman,
        InvalidReason::FailureBudgetSpent { .. } => InvalidKind::FailureBudgetSpent,
        InvalidReason::Competing => InvalidKind::Competing,
        InvalidReason::RestartLimit { .. } => InvalidKind::RestartLimit,
        InvalidReason::AfterCutoff { .. } => InvalidKind::AfterCutoff,
        _ => InvalidKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use warden_engine::BrokerError;

    use super::*;

    #[test]
    fn errors_land_in_their_buckets() {
        let needs_human = RequestError::Invalid(InvalidReason::NeedsHuman { detail: "totp".into() });
        assert_eq!(failure_kind(&ExecuteError::Token(needs_human)), FailureKind::Invalid(InvalidKind::NeedsHuman));
        let timeout = RequestError::Timeout(Box::default());
        assert_eq!(failure_kind(&ExecuteError::Token(timeout)), FailureKind::Timeout);
        let rejected = ExecuteError::Broker { class: ErrorClass::AuthExpired, error: BrokerError::http(401, "no") };
        assert_eq!(failure_kind(&rejected), FailureKind::RejectedAfterRetries);
        let throttled = ExecuteError::Broker {
            class: ErrorClass::RateLimited { retry_after: None },
            error: BrokerError::http(429, "slow down"),
        };
        assert_eq!(failure_kind(&throttled), FailureKind::BrokerRateLimited);
        let limited =
            ExecuteError::RateLimited { account: "a".into(), request_timeout: std::time::Duration::from_secs(30) };
        assert_eq!(failure_kind(&limited), FailureKind::RateLimited);
        let refused = ExecuteError::FreshTokenRefused {
            generation: warden_engine::Generation(2),
            grant_age: std::time::Duration::from_secs(1),
            error: BrokerError::http(401, "no"),
        };
        assert_eq!(failure_kind(&refused), FailureKind::FreshTokenRefused);
        let after = RequestError::Invalid(InvalidReason::AfterCutoff { cutoff_at: warden_engine::UnixMs::EPOCH });
        assert_eq!(failure_kind(&ExecuteError::Token(after)), FailureKind::Invalid(InvalidKind::AfterCutoff));
        assert_eq!(
            failure_kind(&ExecuteError::OutcomeUnknown(BrokerError::no_answer("lost"))),
            FailureKind::OutcomeUnknown
        );
    }
}
