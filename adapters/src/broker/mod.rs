//! Broker adapters: the engine's [`Broker`] port spoken over HTTP to real brokers.
//!
//! | adapter | broker | login | renewal | keep-alive |
//! | --- | --- | --- | --- | --- |
//! | [`Saxo`] | Saxo OpenAPI | authorization code (from an operator) or a stored refresh token | `refresh_token` grant | — |
//! | [`Ibkr`] | Interactive Brokers Web API | OAuth 1.0a live session token + `ssodh/init` | login | `POST /tickle` |
//! | [`KotakNeo`] | Kotak Neo Trade API | TOTP (RFC 6238) then MPIN | login | — |
//! | [`Kite`] | Zerodha Kite Connect v3 | request token (from an operator) + checksum | login (daily) | — |
//! | [`OAuth2ClientCredentials`] | any RFC 6749 server | client-credentials grant | login | — |
//!
//! Every adapter is a pure core — request building, response parsing and error classification as
//! functions with their own tests — and a thin shell around one shared [`HttpClient`]. Responses are read
//! up to a size limit and refused beyond it before parsing ([`json`]); `Retry-After` and
//! `X-RateLimit-*` become the error's `retry_after` and a [`RateAllowance`] ([`headers`]); each adapter
//! declares its endpoint classes and their published limits as data ([`limits`]). Every adapter also
//! has `send(now, grant, request)`, a real HTTP call through the adapter for `SessionHandle::execute`.
//!
//! Secrets stay [`Secret`](warden_engine::Secret)s until the moment they are written into a request;
//! error messages name the broker, the method, the path, the status and the broker's own error code and
//! text, never a token, and the `send` shell scrubs the grant's secrets from them besides.
//!
//! [`Broker`]: warden_engine::Broker

pub mod headers;
pub mod http;
pub mod ibkr;
pub mod json;
pub mod kite;
pub mod kotak;
pub mod limits;
pub mod oauth2;
pub mod saxo;
pub mod totp;

use reqwest::Url;
use warden_engine::{BrokerError, Credentials, ErrorClass, Secret};

pub use headers::{AllowanceWindow, RateAllowance};
pub use http::{AllowanceBook, ApiRequest, ApiResponse, HttpClient, HttpSettings, ObservedAllowance, RequestBody};
pub use ibkr::{Ibkr, IbkrSettings};
pub use kite::{Kite, KiteSettings};
pub use kotak::{KotakNeo, KotakSettings};
pub use limits::{EndpointLimit, LimitScope};
pub use oauth2::{ClientAuth, OAuth2ClientCredentials, OAuth2Settings};
pub use saxo::{Saxo, SaxoSettings};

/// Why an adapter could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A setting has an unusable value.
    #[error("adapter setting `{name}` {problem}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {detail}")]
    Client {
        /// What failed.
        detail: String,
    },
    /// A credential file could not be read.
    #[error("credential file {path}: {detail}")]
    CredentialFile {
        /// The file.
        path: String,
        /// What failed (never the file's content).
        detail: String,
    },
}

/// The codes adapters put on errors they make themselves (besides the brokers' own codes).
pub mod codes {
    /// The login needs something only a person can give (an authorization code, a request token).
    pub const NEEDS_OPERATOR: &str = "needs_operator";
    /// A credential the login needs is not in the session's credentials.
    pub const MISSING_CREDENTIAL: &str = "missing_credential";
    /// A credential is present but unusable (a key that is not PEM, a secret that is not base32).
    pub const BAD_CREDENTIAL: &str = "bad_credential";
    /// The answer could not be read (not JSON, a missing field, a wrong type).
    pub const MALFORMED: &str = "malformed_response";
    /// The answer was larger than the client's limit and was not read.
    pub const TOO_LARGE: &str = "response_too_large";
    /// Another login holds the account.
    pub const COMPETING: &str = "competing";
}

/// The class of an error an adapter made itself, if it is one of [`codes`].
pub fn classify_adapter_code(error: &BrokerError) -> Option<ErrorClass> {
    match error.code.as_deref()? {
        codes::NEEDS_OPERATOR => Some(ErrorClass::NeedsHuman),
        codes::MISSING_CREDENTIAL | codes::BAD_CREDENTIAL => Some(ErrorClass::Permanent),
        codes::MALFORMED | codes::TOO_LARGE => Some(ErrorClass::Transient),
        codes::COMPETING => Some(ErrorClass::Competing),
        _ => None,
    }
}

/// The default reading of an error: the adapter's own codes, then the HTTP status
/// ([`ErrorClass::from_http_status`]), then transient for errors without an answer.
pub fn classify_default(error: &BrokerError) -> ErrorClass {
    if let Some(class) = classify_adapter_code(error) {
        return class;
    }
    match error.status {
        Some(status) => ErrorClass::from_http_status(status, error.retry_after),
        None => ErrorClass::Transient,
    }
}

/// A required credential field, or an error naming it (never its value).
pub fn credential<'c>(credentials: &'c Credentials, broker: &str, name: &str) -> Result<&'c Secret, BrokerError> {
    match credentials.get(name) {
        Some(secret) if !secret.is_empty() => Ok(secret),
        _ => Err(BrokerError::not_sent(format!("{broker} login: credential `{name}` is missing or empty"))
            .with_code(codes::MISSING_CREDENTIAL)),
    }
}

/// A setting that must be an absolute http(s) URL.
pub fn parse_base_url(name: &'static str, text: &str) -> Result<Url, AdapterError> {
    let url = Url::parse(text).map_err(|e| AdapterError::Setting { name, problem: format!("is not a URL ({e})") })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AdapterError::Setting { name, problem: "must be an http or https URL".into() });
    }
    Ok(url)
}

/// `base` joined with `path` (`https://h/api/` + `session/token`), keeping the base's own path.
pub fn join_url(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_keeping_the_base_path() {
        let base = parse_base_url("base_url", "https://gateway.example/sim/openapi/").unwrap();
        assert_eq!(
            join_url(&base, "/port/v1/balances").as_str(),
            "https://gateway.example/sim/openapi/port/v1/balances"
        );
        let base = parse_base_url("base_url", "http://127.0.0.1:9").unwrap();
        assert_eq!(join_url(&base, "token").as_str(), "http://127.0.0.1:9/token");
        assert!(parse_base_url("base_url", "ftp://x").is_err());
        assert!(parse_base_url("base_url", "not a url").is_err());
    }

    #[test]
    fn adapter_codes_classify() {
        let e = |code: &str| BrokerError::not_sent("x").with_code(code);
        assert_eq!(classify_default(&e(codes::NEEDS_OPERATOR)), ErrorClass::NeedsHuman);
        assert_eq!(classify_default(&e(codes::MISSING_CREDENTIAL)), ErrorClass::Permanent);
        assert_eq!(classify_default(&e(codes::MALFORMED)), ErrorClass::Transient);
        assert_eq!(classify_default(&e(codes::COMPETING)), ErrorClass::Competing);
        assert_eq!(classify_default(&BrokerError::http(403, "no")), ErrorClass::Permanent);
        assert_eq!(classify_default(&BrokerError::no_answer("x")), ErrorClass::Transient);
        let creds = Credentials::new().with("a", "1").with("empty", "");
        assert!(credential(&creds, "demo", "a").is_ok());
        let err = credential(&creds, "demo", "empty").unwrap_err();
        assert_eq!(err.message, "demo login: credential `empty` is missing or empty");
        assert_eq!(classify_default(&err), ErrorClass::Permanent);
    }
}
