//! The models' wire errors: what each broker answers when it refuses a call, and how those answers are
//! classified.
//!
//! The errors are the ones the brokers document (Kotak's `900901` "Invalid Credentials", "invalid jwt
//! token", `stCode 100022`, 403 "Invalid session"; IBKR's 401 `{"error":"no session"}`; Saxo's bare 401;
//! Kite's 403 `TokenException`; 429 with a retry-after), and [`classify`] maps them onto
//! [`ErrorClass`] exactly as a real adapter for that broker would.

use std::time::Duration;

use warden_engine::{BrokerError, ErrorClass};

use super::spec::{ModelKind, RejectionForm};

/// Code of a login refused for wrong credentials.
pub const CODE_INVALID_CREDENTIALS: &str = "invalid_credentials";
/// Code of a login that needs a second factor.
pub const CODE_SECOND_FACTOR: &str = "second_factor_required";
/// Code of a login refused because the account is locked.
pub const CODE_ACCOUNT_LOCKED: &str = "account_locked";
/// Code of a call refused because another login holds the account.
pub const CODE_COMPETING: &str = "competing_session";
/// Code of a refused refresh-token grant (OAuth2 `invalid_grant`).
pub const CODE_INVALID_GRANT: &str = "invalid_grant";
/// Kotak's gateway code for an expired or invalid JWT.
pub const CODE_KOTAK_JWT: &str = "900901";
/// Kotak's `stCode` for an invalid session token on some endpoints.
pub const CODE_KOTAK_SESSION: &str = "100022";
/// Kite's exception type for an expired or invalid access token.
pub const CODE_KITE_TOKEN: &str = "TokenException";
/// IBKR's "no session".
pub const CODE_IBKR_NO_SESSION: &str = "no_session";
/// OAuth2's `invalid_token` (RFC 6750).
pub const CODE_INVALID_TOKEN: &str = "invalid_token";
/// OpenAlgo's expired session.
pub const CODE_OPENALGO_EXPIRED: &str = "session_expired";
/// Angel One's invalid or expired token [U: the code is from the SmartAPI SDKs, not its documentation].
pub const CODE_ANGEL_INVALID_TOKEN: &str = "AG8001";
/// A login after the daily expiry that a program cannot make: a person must log in (Kite's browser
/// login, OpenAlgo's web UI) and hand the code to warden.
pub const CODE_NEEDS_PERSON: &str = "login_needs_person";
/// A login code that expired or was already used.
pub const CODE_LOGIN_CODE_INVALID: &str = "login_code_invalid";
/// A non-idempotent request the broker executed whose answer was lost (a mock server still files the
/// order in its order book).
pub const CODE_RESPONSE_LOST: &str = "response_lost";

/// The error a broker answers for a token it does not (or no longer) accept, in `form`. For Kotak's
/// native form `pick` chooses among its four (any value is fine); other brokers have one form.
pub(crate) fn token_rejected(kind: ModelKind, form: RejectionForm, pick: u64) -> BrokerError {
    let kotak = match (kind, form) {
        (ModelKind::KotakNeo, RejectionForm::Native) => Some(pick % 4),
        (_, RejectionForm::Kotak900901) => Some(0),
        (_, RejectionForm::KotakInvalidJwt) => Some(1),
        (_, RejectionForm::Kotak100022) => Some(2),
        (_, RejectionForm::KotakInvalidSession) => Some(3),
        _ => None,
    };
    if let Some(form) = kotak {
        return match form {
            0 => BrokerError::http(401, "Invalid Credentials").with_code(CODE_KOTAK_JWT),
            1 => BrokerError::http(401, "invalid jwt token"),
            2 => BrokerError::http(403, "invalid session token").with_code(CODE_KOTAK_SESSION),
            _ => BrokerError::http(403, "Invalid session, please re-login to continue"),
        };
    }
    match kind {
        ModelKind::KotakNeo => BrokerError::http(401, "Invalid Credentials").with_code(CODE_KOTAK_JWT),
        ModelKind::Saxo => BrokerError::http(401, "Unauthorized"),
        ModelKind::Ibkr => BrokerError::http(401, r#"{"error":"no session"}"#).with_code(CODE_IBKR_NO_SESSION),
        ModelKind::OpenAlgo => {
            BrokerError::http(401, "session expired, please log in again").with_code(CODE_OPENALGO_EXPIRED)
        }
        ModelKind::OAuth2 => BrokerError::http(401, "the access token expired").with_code(CODE_INVALID_TOKEN),
        ModelKind::Zerodha => {
            BrokerError::http(403, "Incorrect `api_key` or `access_token`.").with_code(CODE_KITE_TOKEN)
        }
        ModelKind::AngelOne => BrokerError::http(401, "Invalid Token").with_code(CODE_ANGEL_INVALID_TOKEN),
    }
}

/// The error for a token past its declared expiry: each broker's plainest expiry form (or the form the
/// scenario chose).
pub(crate) fn token_expired(kind: ModelKind, form: RejectionForm) -> BrokerError {
    token_rejected(kind, form, 0)
}

/// A call refused because another login holds the account.
pub(crate) fn competing(kind: ModelKind) -> BrokerError {
    match kind {
        // IBKR says "competing" only in the tickle answer; a plain request just finds no session.
        ModelKind::Ibkr => token_rejected(kind, RejectionForm::Native, 0),
        _ => BrokerError::http(409, "another session holds the account").with_code(CODE_COMPETING),
    }
}

/// A login that another session's hold refuses (no take-over asked).
pub(crate) fn login_competing() -> BrokerError {
    BrokerError::http(409, "another session holds the account; log in with take-over").with_code(CODE_COMPETING)
}

/// A login with wrong credentials.
pub(crate) fn invalid_credentials(kind: ModelKind) -> BrokerError {
    let message = match kind {
        ModelKind::KotakNeo => "Invalid Credentials: wrong MPIN or TOTP",
        ModelKind::Zerodha => "Invalid `checksum` or `request_token`.",
        _ => "invalid user name or password",
    };
    BrokerError::http(401, message).with_code(CODE_INVALID_CREDENTIALS)
}

/// A login that needs a second factor.
pub(crate) fn second_factor() -> BrokerError {
    BrokerError::http(400, "a second factor (TOTP) is required").with_code(CODE_SECOND_FACTOR)
}

/// A login after the daily expiry without a code from a person.
pub(crate) fn login_needs_person() -> BrokerError {
    BrokerError::http(400, "a person must log in through the broker's web page and hand in the code")
        .with_code(CODE_NEEDS_PERSON)
}

/// A login with a code that expired or was used before.
pub(crate) fn login_code_invalid() -> BrokerError {
    BrokerError::http(400, "the login code expired or was already used; a person must log in again")
        .with_code(CODE_LOGIN_CODE_INVALID)
}

/// A login refused because repeated wrong credentials locked the account.
pub(crate) fn account_locked() -> BrokerError {
    BrokerError::http(403, "the account is locked after repeated failed logins").with_code(CODE_ACCOUNT_LOCKED)
}

/// A refused refresh-token grant.
pub(crate) fn invalid_grant() -> BrokerError {
    BrokerError::http(401, "the refresh token is invalid or expired").with_code(CODE_INVALID_GRANT)
}

/// 429, with how long to wait.
pub(crate) fn rate_limited(retry_after: Duration) -> BrokerError {
    BrokerError::http(429, "too many requests").with_retry_after(retry_after)
}

/// 503, the broker is down or failed this call.
pub(crate) fn unavailable() -> BrokerError {
    BrokerError::http(503, "service unavailable")
}

/// No answer within the hang of an outage.
pub(crate) fn hung() -> BrokerError {
    BrokerError::no_answer("no answer from the broker (connection timed out)")
}

/// A non-idempotent request that was executed but whose answer was lost.
pub(crate) fn response_lost() -> BrokerError {
    BrokerError::no_answer("the connection dropped before the answer arrived").with_code(CODE_RESPONSE_LOST)
}

/// What a broker error means, as the real broker's adapter would classify it: every expiry form
/// (`900901`, "invalid jwt token", `100022`, 403 "Invalid session", `TokenException`, 401) and wrong
/// credentials are [`ErrorClass::AuthExpired`]; a second factor or a locked account needs a person; a
/// competing session is [`ErrorClass::Competing`]; 429 is rate limited with its retry-after; 5xx and
/// unanswered calls are transient.
pub fn classify(error: &BrokerError) -> ErrorClass {
    if let Some(code) = error.code.as_deref() {
        match code {
            CODE_KOTAK_JWT
            | CODE_KOTAK_SESSION
            | CODE_KITE_TOKEN
            | CODE_IBKR_NO_SESSION
            | CODE_INVALID_TOKEN
            | CODE_OPENALGO_EXPIRED
            | CODE_ANGEL_INVALID_TOKEN
            | CODE_INVALID_CREDENTIALS
            | CODE_INVALID_GRANT => return ErrorClass::AuthExpired,
            CODE_SECOND_FACTOR | CODE_ACCOUNT_LOCKED | CODE_NEEDS_PERSON | CODE_LOGIN_CODE_INVALID => {
                return ErrorClass::NeedsHuman;
            }
            CODE_COMPETING => return ErrorClass::Competing,
            _ => {}
        }
    }
    let message = error.message.to_ascii_lowercase();
    if message.contains("invalid jwt token") || message.contains("invalid session") {
        return ErrorClass::AuthExpired;
    }
    match error.status {
        Some(status) => ErrorClass::from_http_status(status, error.retry_after),
        None => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expiry_form_is_auth_expired() {
        for kind in ModelKind::ALL {
            for (form, name) in RejectionForm::NAMED {
                for pick in 0..4 {
                    let error = token_rejected(kind, form, pick);
                    assert_eq!(classify(&error), ErrorClass::AuthExpired, "{kind} form {name} pick {pick}");
                }
            }
        }
        let st = token_rejected(ModelKind::KotakNeo, RejectionForm::Kotak100022, 0);
        assert_eq!((st.status, st.code.as_deref()), (Some(403), Some("100022")));
        assert_eq!(classify(&invalid_credentials(ModelKind::KotakNeo)), ErrorClass::AuthExpired);
        assert_eq!(classify(&invalid_grant()), ErrorClass::AuthExpired);
    }

    #[test]
    fn other_classes() {
        assert_eq!(classify(&second_factor()), ErrorClass::NeedsHuman);
        assert_eq!(classify(&account_locked()), ErrorClass::NeedsHuman);
        assert_eq!(classify(&login_needs_person()), ErrorClass::NeedsHuman);
        assert_eq!(classify(&login_code_invalid()), ErrorClass::NeedsHuman);
        assert_eq!(classify(&competing(ModelKind::Saxo)), ErrorClass::Competing);
        assert_eq!(classify(&login_competing()), ErrorClass::Competing);
        let wait = Duration::from_secs(600);
        assert_eq!(classify(&rate_limited(wait)), ErrorClass::RateLimited { retry_after: Some(wait) });
        assert_eq!(classify(&unavailable()), ErrorClass::Transient);
        assert_eq!(classify(&hung()), ErrorClass::Transient);
        assert_eq!(classify(&response_lost()), ErrorClass::Transient);
    }
}
