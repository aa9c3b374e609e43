//! Kotak Neo Trade API: the two-step login (TOTP, then MPIN) and Kotak's many expiry signals.
//!
//! The login, as the official SDK (`neo_api_client`) does it:
//! 1. `POST {login_url}/login/1.0/tradeApiLogin` with `Authorization: <consumer key>` and
//!    `neo-fin-key: neotradeapi`, JSON `{mobileNumber, ucc, totp}` → a view token and a view `sid`;
//! 2. `POST {login_url}/login/1.0/tradeApiValidate` with those as `Auth` and `sid`, JSON `{mpin}` → the
//!    trade token, its `sid`, the `baseUrl` every later call goes to and the `hsServerId`.
//!
//! The TOTP comes from the credential `totp_secret` (base32, [`crate::broker::totp`]) at the login's
//! `now`, or from an operator as the login's second factor. Later calls carry `Auth: <token>` and
//! `Sid: <sid>` ([`Broker::authorize`]) and go to [`KotakNeo::api_url`] (`baseUrl` + path + `?sId=`).
//! The token lives `token_lifetime` (one hour by default) unless its JWT `exp` says otherwise. Logout is
//! local, as in the SDK: the session simply stops being used.
//!
//! Expiry signals, all [`ErrorClass::AuthExpired`]: the gateway's `{"code":"900901"}` (HTTP 401),
//! "invalid jwt token", `stCode 100022` (even inside an HTTP 200 — one endpoint can say it while others
//! still work) and HTTP 403 "Invalid session, please re-login to continue". Any other 403 is a refusal of
//! the call ([`ErrorClass::Permanent`]), as is a 2xx answer with `"stat":"Not_Ok"`.
//!
//! Credentials: `consumer_key`, `mobile_number` (`+91…`), `ucc`, `mpin`, `totp_secret`.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, Url};
use warden_engine::{
    BoxFuture, Broker, BrokerError, BrokerRequest, Capabilities, ErrorClass, Grant, LoginRequest, Secret, UnixMs,
};

use super::http::{
    ApiRequest, ApiResponse, Endpoint, HttpClient, RawResponse, Wire, error_answer, is_success, send_authorized,
    wire_error,
};
use super::json::{Obj, WireError, clean_text};
use super::limits::{EndpointLimit, LimitScope};
use super::totp::{base32_decode, totp};
use super::{AdapterError, classify_adapter_code, codes, credential, join_url, parse_base_url};

/// Its name in logs and errors.
const NAME: &str = "kotak";

/// Its wire format, for the `send` shell.
const WIRE: Wire = Wire { name: NAME, limits: KOTAK_LIMITS, read_error };

/// The gateway's code for an invalid or expired JWT.
pub const CODE_INVALID_CREDENTIALS: &str = "900901";
/// The `stCode` for an invalid session token.
pub const CODE_INVALID_SESSION: &str = "100022";

/// Kotak's limit as published by users of the API (about 10 requests a second; not confirmed by Kotak's
/// own documentation, so treat it as a starting point).
pub const KOTAK_LIMITS: &[EndpointLimit] = &[EndpointLimit {
    class: "api",
    method: None,
    path: "/",
    scope: LimitScope::User,
    max: 10,
    per: Duration::from_secs(1),
}];

/// Settings of [`KotakNeo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KotakSettings {
    /// The login host (`https://mis.kotaksecurities.com`).
    pub login_url: String,
    /// The `neo-fin-key` header of the login calls.
    pub neo_fin_key: String,
    /// The trade token's lifetime when its JWT does not say (one hour).
    pub token_lifetime: Duration,
    /// The TOTP step (30 s) and digits (6).
    pub totp_step_s: u64,
    /// The TOTP's number of digits.
    pub totp_digits: u32,
}

impl Default for KotakSettings {
    fn default() -> KotakSettings {
        KotakSettings {
            login_url: "https://mis.kotaksecurities.com".into(),
            neo_fin_key: "neotradeapi".into(),
            token_lifetime: Duration::from_secs(3600),
            totp_step_s: 30,
            totp_digits: 6,
        }
    }
}

/// The first step's answer: the view token and `sid`.
#[derive(Debug, PartialEq, Eq)]
pub struct ViewSession {
    /// The view token (the second step's `Auth`).
    pub token: Secret,
    /// The view `sid`.
    pub sid: Secret,
}

/// The second step's answer: the trade session.
#[derive(Debug, PartialEq, Eq)]
pub struct TradeSession {
    /// The trade token (`Auth`).
    pub token: Secret,
    /// The trade `sid` (`Sid`).
    pub sid: Secret,
    /// Where later calls go.
    pub base_url: String,
    /// The `sId` query parameter of later calls, if given.
    pub hs_server_id: Option<String>,
}

/// The first step's JSON body.
pub fn login_body(mobile_number: &str, ucc: &str, totp: &str) -> serde_json::Value {
    serde_json::json!({ "mobileNumber": mobile_number, "ucc": ucc, "totp": totp })
}

/// Reads the first step's answer (`data.token`, `data.sid`).
pub fn parse_view_session(value: &serde_json::Value) -> Result<ViewSession, WireError> {
    let data = Obj::root(value)?.obj("data")?;
    Ok(ViewSession { token: Secret::new(data.non_empty_str("token")?), sid: Secret::new(data.non_empty_str("sid")?) })
}

/// Reads the second step's answer (`data.token`, `data.sid`, `data.baseUrl`, `data.hsServerId`).
pub fn parse_trade_session(value: &serde_json::Value) -> Result<TradeSession, WireError> {
    let data = Obj::root(value)?.obj("data")?;
    let base_url = data.non_empty_str("baseUrl")?;
    if Url::parse(base_url).is_err() {
        return Err(data.invalid("baseUrl", "it is not a URL"));
    }
    Ok(TradeSession {
        token: Secret::new(data.non_empty_str("token")?),
        sid: Secret::new(data.non_empty_str("sid")?),
        base_url: base_url.to_owned(),
        hs_server_id: data.opt_code("hsServerId"),
    })
}

/// The `exp` claim of a JWT (seconds since the epoch), if the token is a JWT that has one. The
/// signature is not checked: this only reads when the broker says the token ends.
pub fn jwt_expiry(token: &str) -> Option<UnixMs> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    Some(UnixMs::from_millis(exp.checked_mul(1000)?))
}

/// The error code and text of a Kotak body: `code` or `stCode` or `error[0].code`; `message`, `errMsg`,
/// `emsg`, `description` or `error[0].message`.
fn code_and_text(value: &serde_json::Value) -> (Option<String>, Option<String>, bool) {
    let Ok(root) = Obj::root(value) else { return (None, None, false) };
    let first_error =
        value.get("error").and_then(|e| e.as_array()).and_then(|a| a.first()).and_then(|e| Obj::root(e).ok());
    let code =
        root.opt_code("code").or_else(|| root.opt_code("stCode")).or_else(|| first_error.as_ref()?.opt_code("code"));
    let text = ["message", "errMsg", "emsg", "description"]
        .iter()
        .find_map(|f| root.opt_str(f).ok().flatten())
        .or_else(|| first_error.as_ref()?.opt_str("message").ok().flatten())
        .map(|t| clean_text(t, 200));
    let not_ok = root.opt_str("stat").ok().flatten().is_some_and(|s| s.eq_ignore_ascii_case("not_ok"));
    (code, text, not_ok)
}

/// Reads a Kotak answer: `None` for a success. Any non-2xx is an error; so is a 2xx whose body carries
/// an expiry code (`100022`, `900901`), an expiry text, or `"stat":"Not_Ok"`.
pub fn read_error(endpoint: &Endpoint, raw: &RawResponse, now: UnixMs) -> Option<BrokerError> {
    let body = super::json::parse(&raw.body, raw.body.len().max(1)).ok();
    let (code, text, not_ok) = body.as_ref().map(code_and_text).unwrap_or((None, None, false));
    if is_success(raw.status) {
        let expiry_code = matches!(code.as_deref(), Some(CODE_INVALID_SESSION | CODE_INVALID_CREDENTIALS));
        let expiry_text = text.as_deref().is_some_and(is_expiry_text);
        if !(expiry_code || expiry_text || not_ok) {
            return None;
        }
    }
    Some(error_answer(endpoint, raw, now, code, text))
}

/// Whether a text is one of Kotak's expiry messages.
fn is_expiry_text(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("invalid jwt token") || lower.contains("invalid session")
}

/// What a Kotak error means: `900901`, `100022`, "invalid jwt token" and a 403 "Invalid session" are
/// [`ErrorClass::AuthExpired`]; another refusal inside a 2xx is [`ErrorClass::Permanent`]; the rest by
/// the HTTP status (a plain 403 is a refusal of the call).
pub fn classify(error: &BrokerError) -> ErrorClass {
    if let Some(class) = classify_adapter_code(error) {
        return class;
    }
    if matches!(error.code.as_deref(), Some(CODE_INVALID_CREDENTIALS | CODE_INVALID_SESSION)) {
        return ErrorClass::AuthExpired;
    }
    let lower = error.message.to_ascii_lowercase();
    if lower.contains("invalid jwt token") {
        return ErrorClass::AuthExpired;
    }
    match error.status {
        Some(403) if lower.contains("invalid session") => ErrorClass::AuthExpired,
        Some(status) if is_success(status) => {
            if lower.contains("invalid session") {
                ErrorClass::AuthExpired
            } else {
                ErrorClass::Permanent
            }
        }
        Some(status) => ErrorClass::from_http_status(status, error.retry_after),
        None => ErrorClass::Transient,
    }
}

/// The Kotak Neo adapter.
#[derive(Debug)]
pub struct KotakNeo {
    settings: KotakSettings,
    login_url: Url,
    http: HttpClient,
}

impl KotakNeo {
    /// An adapter for `settings`, sending through `http`.
    pub fn new(settings: KotakSettings, http: HttpClient) -> Result<KotakNeo, AdapterError> {
        let login_url = parse_base_url("login_url", &settings.login_url)?;
        if !(6..=8).contains(&settings.totp_digits) {
            return Err(AdapterError::Setting { name: "totp_digits", problem: "must be 6, 7 or 8".into() });
        }
        Ok(KotakNeo { settings, login_url, http })
    }

    /// The shared HTTP client (its allowance book among other things).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The URL of an API `path` for the session of `grant`: its `baseUrl` + `path`, with `?sId=` when
    /// the login gave a server id.
    pub fn api_url(grant: &Grant, path: &str) -> Result<String, BrokerError> {
        let base = grant
            .extras
            .get("base_url")
            .and_then(|b| Url::parse(b.expose()).ok())
            .ok_or_else(|| BrokerError::not_sent(format!("{NAME}: the grant has no baseUrl (log in again)")))?;
        let mut url = join_url(&base, path);
        if let Some(server) = grant.extras.get("hs_server_id") {
            url.query_pairs_mut().append_pair("sId", server.expose());
        }
        Ok(url.into())
    }

    /// Authorises `request` with `grant`, sends it and reads the answer (see [`crate::broker::http`]).
    pub async fn send(&self, now: UnixMs, grant: &Grant, request: ApiRequest) -> Result<ApiResponse, BrokerError> {
        send_authorized(&self.http, &WIRE, &|g, r| self.authorize(g, r), now, grant, request).await
    }

    /// One login step: POST `body` to `path` with `headers`, read the answer as JSON.
    async fn step(
        &self,
        now: UnixMs,
        path: &str,
        headers: &[(&str, &Secret)],
        body: serde_json::Value,
        secrets: &[&str],
    ) -> Result<(Endpoint, serde_json::Value, u16), BrokerError> {
        let url = join_url(&self.login_url, path);
        let endpoint = Endpoint::new(NAME, Method::POST, &url, KOTAK_LIMITS);
        let mut builder = self
            .http
            .request(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("neo-fin-key", self.settings.neo_fin_key.as_str())
            .body(serde_json::to_vec(&body).unwrap_or_default());
        for (name, value) in headers {
            let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                .map_err(|_| BrokerError::not_sent(format!("{endpoint}: the `{name}` header is not a valid value")))?;
            value.set_sensitive(true);
            builder = builder.header(*name, value);
        }
        let raw = self.http.exchange(now, &endpoint, builder).await?;
        if let Some(mut error) = read_error(&endpoint, &raw, now) {
            error.message = super::http::scrub(&error.message, secrets);
            return Err(error);
        }
        let value = self.http.parse_json(&endpoint, &raw)?;
        Ok((endpoint, value, raw.status))
    }

    async fn login_inner(&self, now: UnixMs, request: LoginRequest<'_>) -> Result<Grant, BrokerError> {
        let creds = request.credentials;
        let consumer_key = credential(creds, NAME, "consumer_key")?;
        let mobile = credential(creds, NAME, "mobile_number")?;
        let ucc = credential(creds, NAME, "ucc")?;
        let mpin = credential(creds, NAME, "mpin")?;
        let code = match request.second_factor {
            Some(code) if !code.is_empty() => code.clone(),
            _ => {
                let Some(secret) = creds.get("totp_secret").filter(|s| !s.is_empty()) else {
                    return Err(BrokerError::not_sent(format!(
                        "{NAME} login: no `totp_secret` credential and no TOTP from an operator"
                    ))
                    .with_code(codes::NEEDS_OPERATOR));
                };
                let key = base32_decode(secret.expose()).map_err(|e| {
                    BrokerError::not_sent(format!("{NAME} login: credential `totp_secret`: {e}"))
                        .with_code(codes::BAD_CREDENTIAL)
                })?;
                Secret::new(totp(&key, now, self.settings.totp_step_s, self.settings.totp_digits))
            }
        };
        let secrets = [consumer_key.expose(), mpin.expose(), code.expose()];
        let body = login_body(mobile.expose(), ucc.expose(), code.expose());
        let (endpoint, value, status) =
            self.step(now, "login/1.0/tradeApiLogin", &[("Authorization", consumer_key)], body, &secrets).await?;
        let view = parse_view_session(&value).map_err(|e| wire_error(&endpoint, status, e))?;
        let headers = [("Authorization", consumer_key), ("sid", &view.sid), ("Auth", &view.token)];
        let body = serde_json::json!({ "mpin": mpin.expose() });
        let (endpoint, value, status) = self.step(now, "login/1.0/tradeApiValidate", &headers, body, &secrets).await?;
        let session = parse_trade_session(&value).map_err(|e| wire_error(&endpoint, status, e))?;
        let expires_at = jwt_expiry(session.token.expose())
            .filter(|exp| *exp > now)
            .unwrap_or_else(|| now.saturating_add(self.settings.token_lifetime));
        let mut grant = Grant::new(session.token, now)
            .with_extra("sid", session.sid)
            .with_extra("base_url", session.base_url.as_str());
        grant.expires_at = Some(expires_at);
        if let Some(server) = session.hs_server_id {
            grant = grant.with_extra("hs_server_id", server);
        }
        tracing::info!(broker = NAME, lifetime_s = grant.lifetime().map(|l| l.as_secs()), "logged in");
        Ok(grant)
    }
}

impl Broker for KotakNeo {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn token_lifetime(&self) -> Option<Duration> {
        Some(self.settings.token_lifetime)
    }

    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(self.login_inner(now, request))
    }

    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        // As in the official SDK: logging out forgets the session; there is no server call.
        Box::pin(async { Ok(()) })
    }

    fn classify(&self, error: &BrokerError) -> ErrorClass {
        classify(error)
    }

    fn authorize(&self, grant: &Grant, request: &mut BrokerRequest) -> Result<(), BrokerError> {
        let sid = grant
            .extras
            .get("sid")
            .ok_or_else(|| BrokerError::not_sent(format!("{NAME}: the grant has no sid (log in again)")))?;
        request.headers.push(("Auth".to_owned(), grant.access_token.clone()));
        request.headers.push(("Sid".to_owned(), sid.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint::new(
            NAME,
            Method::POST,
            &Url::parse("https://e21.example/quick/order/rule/ms/place").unwrap(),
            KOTAK_LIMITS,
        )
    }

    #[test]
    fn login_answers_parse() {
        let v = serde_json::json!({"data":{"token":"VIEW","sid":"S1","rid":"r"}});
        assert_eq!(parse_view_session(&v).unwrap(), ViewSession { token: "VIEW".into(), sid: "S1".into() });
        let v = serde_json::json!({"data":{"token":"T","sid":"S2","baseUrl":"https://e21.example/","hsServerId":7}});
        let s = parse_trade_session(&v).unwrap();
        assert_eq!((s.base_url.as_str(), s.hs_server_id.as_deref()), ("https://e21.example/", Some("7")));
        let v = serde_json::json!({"data":{"token":"T","sid":"S2"}});
        assert_eq!(parse_trade_session(&v).unwrap_err().to_string(), "field `data.baseUrl` is missing");
        let v = serde_json::json!({"data":{"token":"T","sid":"S2","baseUrl":"nope"}});
        assert_eq!(
            parse_trade_session(&v).unwrap_err().to_string(),
            "field `data.baseUrl` is not valid: it is not a URL"
        );
    }

    #[test]
    fn jwt_expiry_reads_exp() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1700003600}"#);
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        assert_eq!(jwt_expiry(&token), Some(UnixMs::from_millis(1_700_003_600_000)));
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }

    #[test]
    fn every_expiry_form_is_auth_expired() {
        let now = UnixMs::EPOCH;
        let forms = [
            RawResponse::new(401, r#"{"code":"900901","message":"Invalid Credentials","description":"x"}"#),
            RawResponse::new(401, r#"{"message":"invalid jwt token"}"#),
            RawResponse::new(200, r#"{"stCode":100022,"errMsg":"invalid session token"}"#),
            RawResponse::new(403, r#"{"message":"Invalid session, please re-login to continue"}"#),
            RawResponse::new(403, r#"{"error":[{"code":"100022","message":"invalid session token"}]}"#),
        ];
        for raw in forms {
            let e = read_error(&ep(), &raw, now).expect("an error");
            assert_eq!(classify(&e), ErrorClass::AuthExpired, "{}", e.message);
        }
    }

    #[test]
    fn other_answers() {
        let now = UnixMs::EPOCH;
        assert!(read_error(&ep(), &RawResponse::new(200, r#"{"stat":"Ok","stCode":200,"nOrdNo":"1"}"#), now).is_none());
        let e =
            read_error(&ep(), &RawResponse::new(200, r#"{"stat":"Not_Ok","emsg":"RMS:Margin Exceeds"}"#), now).unwrap();
        assert_eq!(classify(&e), ErrorClass::Permanent);
        assert!(e.message.ends_with("RMS:Margin Exceeds"), "{}", e.message);
        let e = read_error(&ep(), &RawResponse::new(403, r#"{"message":"segment not permitted"}"#), now).unwrap();
        assert_eq!(classify(&e), ErrorClass::Permanent, "a business 403");
        let e = read_error(&ep(), &RawResponse::new(429, "").with_header("Retry-After", "3600"), now).unwrap();
        assert_eq!(classify(&e), ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(3600)) });
        assert_eq!(classify(&read_error(&ep(), &RawResponse::new(503, "down"), now).unwrap()), ErrorClass::Transient);
    }

    #[test]
    fn api_urls_and_headers() {
        let grant = Grant::new("T", UnixMs::EPOCH)
            .with_extra("sid", "S")
            .with_extra("base_url", "https://e21.example/")
            .with_extra("hs_server_id", "7");
        assert_eq!(
            KotakNeo::api_url(&grant, "quick/user/limits").unwrap(),
            "https://e21.example/quick/user/limits?sId=7"
        );
        let broker = KotakNeo::new(KotakSettings::default(), HttpClient::new(Default::default()).unwrap()).unwrap();
        let mut request = BrokerRequest::default();
        broker.authorize(&grant, &mut request).unwrap();
        let headers: Vec<(&str, &str)> = request.headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert_eq!(headers, [("Auth", "T"), ("Sid", "S")]);
    }
}
