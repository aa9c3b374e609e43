//! Zerodha Kite Connect v3: a daily session from an operator's request token.
//!
//! Kite has no unattended login: each day a person signs in on Kite's login page for the app
//! (`https://kite.zerodha.com/connect/login?v=3&api_key=…`) and is redirected with a single-use
//! `request_token`, which lives minutes. The operator hands it in as the login's second factor (or the
//! credential `request_token`); the adapter exchanges it at `POST /session/token` (form `api_key`,
//! `request_token`, `checksum` = hex SHA-256 of api_key + request_token + api_secret) for the access
//! token. Without a request token — or when Kite refuses it as used or expired — the login fails with
//! [`ErrorClass::NeedsHuman`]. The token dies at 06:00 Asia/Kolkata the next morning (the grant's
//! `expires_at`); pair the session with the runtime's `after_cutoff = "operator"` policy.
//!
//! Every request sends `X-Kite-Version: 3` and `Authorization: token <api_key>:<access_token>`. Errors are
//! `{"status":"error","error_type":…,"message":…}` with the HTTP status carrying the meaning: a
//! `TokenException` (403) is an expired session, any other 403 (`PermissionException`) a refusal of the
//! call. Logout is `DELETE /session/token`.
//!
//! Credentials: `api_key`, `api_secret`, and `request_token` (or a second factor).

use std::time::Duration;

use reqwest::{Method, Url};
use sha2::{Digest, Sha256};
use warden_engine::{
    BoxFuture, Broker, BrokerError, BrokerRequest, Capabilities, ErrorClass, Grant, LoginRequest, Secret, UnixMs,
};

use super::http::{
    ApiRequest, ApiResponse, Endpoint, HttpClient, RawResponse, Wire, error_answer, form_urlencode, is_success,
    send_authorized, wire_error,
};
use super::json::{Obj, WireError, clean_text};
use super::limits::{EndpointLimit, LimitScope};
use super::{AdapterError, classify_adapter_code, codes, credential, join_url, parse_base_url};

/// Its name in logs and errors.
const NAME: &str = "kite";

/// Its wire format, for the `send` shell.
const WIRE: Wire = Wire { name: NAME, limits: KITE_LIMITS, read_error };

/// Kite's exception type for an invalid or expired session.
pub const TOKEN_EXCEPTION: &str = "TokenException";

/// The `X-Kite-Version` every request sends.
pub const KITE_VERSION: &str = "3";

/// Kite's published limits: quotes 1/s, historical candles 3/s, orders 10/s and 200/min, everything
/// else 10/s (per API key). A request may fall in several rows (orders); see
/// [`super::limits::matching`].
pub const KITE_LIMITS: &[EndpointLimit] = &[
    EndpointLimit {
        class: "quote",
        method: None,
        path: "/quote",
        scope: LimitScope::App,
        max: 1,
        per: Duration::from_secs(1),
    },
    EndpointLimit {
        class: "historical",
        method: None,
        path: "/instruments/historical",
        scope: LimitScope::App,
        max: 3,
        per: Duration::from_secs(1),
    },
    EndpointLimit {
        class: "orders",
        method: None,
        path: "/orders",
        scope: LimitScope::App,
        max: 10,
        per: Duration::from_secs(1),
    },
    EndpointLimit {
        class: "orders_per_minute",
        method: None,
        path: "/orders",
        scope: LimitScope::App,
        max: 200,
        per: Duration::from_secs(60),
    },
    EndpointLimit {
        class: "other",
        method: None,
        path: "/",
        scope: LimitScope::App,
        max: 10,
        per: Duration::from_secs(1),
    },
];

/// Settings of [`Kite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KiteSettings {
    /// The API root (`https://api.kite.trade`).
    pub base_url: String,
}

impl Default for KiteSettings {
    fn default() -> KiteSettings {
        KiteSettings { base_url: "https://api.kite.trade".into() }
    }
}

/// The checksum of a session request: hex SHA-256 of api_key + request_token + api_secret.
pub fn checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(api_key.as_bytes());
    hash.update(request_token.as_bytes());
    hash.update(api_secret.as_bytes());
    hex::encode(hash.finalize())
}

/// The form of `POST /session/token`.
pub fn session_form(api_key: &str, request_token: &str, api_secret: &str) -> String {
    let sum = checksum(api_key, request_token, api_secret);
    form_urlencode(&[("api_key", api_key), ("request_token", request_token), ("checksum", sum.as_str())])
}

/// Reads `POST /session/token`'s answer: `{"status":"success","data":{"access_token":…}}`.
pub fn parse_session(value: &serde_json::Value) -> Result<Secret, WireError> {
    let root = Obj::root(value)?;
    if root.str("status")? != "success" {
        return Err(root.invalid("status", "it is not \"success\""));
    }
    Ok(Secret::new(root.obj("data")?.non_empty_str("access_token")?))
}

/// When a token issued at `now` dies: the next 06:00 in Asia/Kolkata (UTC+05:30, no daylight saving),
/// i.e. the next 00:30 UTC strictly after `now`.
pub fn next_expiry(now: UnixMs) -> UnixMs {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    const EXPIRY_UTC_MS: i64 = 30 * 60 * 1000; // 06:00 IST = 00:30 UTC
    let day_start = now.as_millis().div_euclid(DAY_MS) * DAY_MS;
    let today = day_start + EXPIRY_UTC_MS;
    UnixMs::from_millis(if now.as_millis() < today { today } else { today + DAY_MS })
}

/// Reads a Kite answer: `None` for a success. A non-2xx or `"status":"error"` is an error whose code is
/// the `error_type`.
pub fn read_error(endpoint: &Endpoint, raw: &RawResponse, now: UnixMs) -> Option<BrokerError> {
    let body = super::json::parse(&raw.body, raw.body.len().max(1)).ok();
    let root = body.as_ref().and_then(|b| Obj::root(b).ok());
    let status_error = root.as_ref().and_then(|r| r.opt_str("status").ok().flatten()).is_some_and(|s| s == "error");
    if is_success(raw.status) && !status_error {
        return None;
    }
    let code = root.as_ref().and_then(|r| r.opt_code("error_type"));
    let text = root.as_ref().and_then(|r| r.opt_str("message").ok().flatten()).map(|t| clean_text(t, 200));
    Some(error_answer(endpoint, raw, now, code, text))
}

/// What a Kite error means: a `TokenException` is an expired session; the rest by the HTTP status (a
/// `PermissionException` 403 is a refusal of the call; `NetworkException` 502/503 transient).
pub fn classify(error: &BrokerError) -> ErrorClass {
    if let Some(class) = classify_adapter_code(error) {
        return class;
    }
    if error.code.as_deref() == Some(TOKEN_EXCEPTION) {
        return ErrorClass::AuthExpired;
    }
    match error.status {
        Some(status) if is_success(status) => ErrorClass::Permanent,
        Some(status) => ErrorClass::from_http_status(status, error.retry_after),
        None => ErrorClass::Transient,
    }
}

/// The Kite Connect adapter.
#[derive(Debug)]
pub struct Kite {
    base_url: Url,
    http: HttpClient,
}

impl Kite {
    /// An adapter for `settings`, sending through `http`.
    pub fn new(settings: KiteSettings, http: HttpClient) -> Result<Kite, AdapterError> {
        Ok(Kite { base_url: parse_base_url("base_url", &settings.base_url)?, http })
    }

    /// The shared HTTP client (its allowance book among other things).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The URL of an API `path` (`orders/regular`).
    pub fn api_url(&self, path: &str) -> String {
        join_url(&self.base_url, path).into()
    }

    /// Authorises `request` with `grant`, sends it and reads the answer (see [`crate::broker::http`]).
    pub async fn send(&self, now: UnixMs, grant: &Grant, request: ApiRequest) -> Result<ApiResponse, BrokerError> {
        send_authorized(&self.http, &WIRE, &|g, r| self.authorize(g, r), now, grant, request).await
    }

    async fn login_inner(&self, now: UnixMs, request: LoginRequest<'_>) -> Result<Grant, BrokerError> {
        let api_key = credential(request.credentials, NAME, "api_key")?;
        let api_secret = credential(request.credentials, NAME, "api_secret")?;
        let request_token = request
            .second_factor
            .or_else(|| request.credentials.get("request_token"))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                BrokerError::not_sent(format!(
                    "{NAME} login: a request token is needed: an operator signs in on Kite's login page \
                     (connect/login?v=3&api_key=…) and hands the request_token in as the second factor"
                ))
                .with_code(codes::NEEDS_OPERATOR)
            })?;
        let url = join_url(&self.base_url, "session/token");
        let endpoint = Endpoint::new(NAME, Method::POST, &url, KITE_LIMITS);
        let builder = self
            .http
            .request(Method::POST, url)
            .header("X-Kite-Version", KITE_VERSION)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(session_form(api_key.expose(), request_token.expose(), api_secret.expose()));
        let raw = self.http.exchange(now, &endpoint, builder).await?;
        if let Some(error) = read_error(&endpoint, &raw, now) {
            let secrets = [api_secret.expose(), request_token.expose()];
            let message = super::http::scrub(&error.message, &secrets);
            if error.code.as_deref() == Some(TOKEN_EXCEPTION) {
                return Err(BrokerError {
                    message: format!("{message}; the request token is used or expired: an operator must sign in again"),
                    code: Some(codes::NEEDS_OPERATOR.to_owned()),
                    ..error
                });
            }
            return Err(BrokerError { message, ..error });
        }
        let value = self.http.parse_json(&endpoint, &raw)?;
        let access_token = parse_session(&value).map_err(|e| wire_error(&endpoint, raw.status, e))?;
        let mut grant = Grant::new(access_token, now).with_extra("api_key", api_key.clone());
        grant.expires_at = Some(next_expiry(now));
        tracing::info!(broker = NAME, expires_at = %next_expiry(now), "logged in");
        Ok(grant)
    }

    async fn logout_inner(&self, now: UnixMs, grant: &Grant) -> Result<(), BrokerError> {
        let api_key = grant.extras.get("api_key").map(Secret::expose).unwrap_or_default();
        let mut url = join_url(&self.base_url, "session/token");
        url.query_pairs_mut().append_pair("api_key", api_key).append_pair("access_token", grant.access_token.expose());
        let request = ApiRequest::delete(String::from(url));
        self.send(now, grant, request).await.map(|_| ())
    }
}

impl Broker for Kite {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(self.login_inner(now, request))
    }

    fn logout<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.logout_inner(now, grant))
    }

    fn classify(&self, error: &BrokerError) -> ErrorClass {
        classify(error)
    }

    fn authorize(&self, grant: &Grant, request: &mut BrokerRequest) -> Result<(), BrokerError> {
        let api_key = grant
            .extras
            .get("api_key")
            .ok_or_else(|| BrokerError::not_sent(format!("{NAME}: the grant has no api_key (log in again)")))?;
        request.headers.push(("X-Kite-Version".to_owned(), Secret::new(KITE_VERSION)));
        request.headers.push((
            "Authorization".to_owned(),
            Secret::new(format!("token {}:{}", api_key.expose(), grant.access_token.expose())),
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_hex_sha256_of_key_token_secret() {
        // printf 'kitefrontrequest-123secret-xyz' | sha256sum
        assert_eq!(
            checksum("kitefront", "request-123", "secret-xyz"),
            "c321afabcb789d79d2c478b6d2f5b5a83d34d6e0df38163c7829b18140212b1f"
        );
        assert!(session_form("k", "r", "s").starts_with("api_key=k&request_token=r&checksum="));
    }

    #[test]
    fn tokens_die_at_six_in_the_morning_in_india() {
        // 2026-03-09T10:00:00Z (15:30 IST) → 2026-03-10T00:30:00Z
        assert_eq!(next_expiry(UnixMs::from_millis(1_773_050_400_000)), UnixMs::from_millis(1_773_102_600_000));
        // 2026-03-09T00:10:00Z (05:40 IST) → the same day's 00:30Z
        assert_eq!(next_expiry(UnixMs::from_millis(1_773_015_000_000)), UnixMs::from_millis(1_773_016_200_000));
        // exactly 06:00 IST → the next day
        assert_eq!(next_expiry(UnixMs::from_millis(1_773_016_200_000)), UnixMs::from_millis(1_773_102_600_000));
    }

    #[test]
    fn answers_parse_and_classify() {
        let v = serde_json::json!({"status":"success","data":{"access_token":"AT","user_id":"AB1234"}});
        assert_eq!(parse_session(&v).unwrap().expose(), "AT");
        let v = serde_json::json!({"status":"error","data":{}});
        assert!(parse_session(&v).is_err());
        let url = Url::parse("https://api.kite.trade/orders/regular").unwrap();
        let ep = Endpoint::new(NAME, Method::POST, &url, KITE_LIMITS);
        assert_eq!(ep.class, Some("orders"));
        let now = UnixMs::EPOCH;
        let raw = RawResponse::new(
            403,
            r#"{"status":"error","error_type":"TokenException","message":"Incorrect `api_key` or `access_token`."}"#,
        );
        let e = read_error(&ep, &raw, now).unwrap();
        assert_eq!(classify(&e), ErrorClass::AuthExpired);
        let raw = RawResponse::new(
            403,
            r#"{"status":"error","error_type":"PermissionException","message":"Insufficient permission"}"#,
        );
        assert_eq!(classify(&read_error(&ep, &raw, now).unwrap()), ErrorClass::Permanent, "a business 403");
        let raw = RawResponse::new(
            400,
            r#"{"status":"error","error_type":"InputException","message":"Invalid `checksum`."}"#,
        );
        assert_eq!(classify(&read_error(&ep, &raw, now).unwrap()), ErrorClass::Permanent);
        let raw = RawResponse::new(429, r#"{"status":"error","error_type":"NetworkException"}"#)
            .with_header("Retry-After", "1");
        assert!(matches!(classify(&read_error(&ep, &raw, now).unwrap()), ErrorClass::RateLimited { .. }));
        assert!(read_error(&ep, &RawResponse::new(200, r#"{"status":"success","data":{}}"#), now).is_none());
    }

    #[test]
    fn authorize_sends_version_and_token_header() {
        let kite = Kite::new(KiteSettings::default(), HttpClient::new(Default::default()).unwrap()).unwrap();
        let grant = Grant::new("AT", UnixMs::EPOCH).with_extra("api_key", "KEY");
        let mut request = BrokerRequest::default();
        kite.authorize(&grant, &mut request).unwrap();
        let headers: Vec<(&str, &str)> = request.headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert_eq!(headers, [("X-Kite-Version", "3"), ("Authorization", "token KEY:AT")]);
    }
}
