//! Saxo OpenAPI: OAuth 2.0 authorization code and refresh-token grants on Saxo's token endpoint.
//!
//! Saxo's access tokens live 20 minutes and its refresh tokens 60 (the answer's `expires_in` and
//! `refresh_token_expires_in` decide; the settings are the fallback). The first grant needs a person
//! once: an operator signs in at `{auth_url}/authorize` and hands the one-time authorization code in as
//! the login's second factor (`SessionHandle::supply_second_factor`) or as the credential
//! `authorization_code`; or a refresh token saved from an earlier run is given as the credential
//! `refresh_token`. From then on the session lives on `refresh_token` grants. A login with neither fails
//! with [`ErrorClass::NeedsHuman`]; so does a login whose code or stored refresh token the token endpoint
//! refuses (`invalid_grant`): a new code is needed, and trying again cannot help. No browser automation.
//!
//! Credentials: `app_key`, `app_secret` (the application's), and `authorization_code` or
//! `refresh_token` for the first grant. API calls carry `Authorization: Bearer …`; a 401 is an expired
//! token, a 403 a refusal of the call, 429 a rate limit with Saxo's `X-RateLimit-*` windows.
//!
//! ```no_run
//! use warden_adapters::broker::{HttpClient, HttpSettings, Saxo, SaxoSettings};
//!
//! let http = HttpClient::new(HttpSettings::default())?;
//! let saxo = Saxo::new(SaxoSettings::simulation("http://localhost/mytestapp"), http)?;
//! # Ok::<(), warden_adapters::broker::AdapterError>(())
//! ```

use std::time::Duration;

use reqwest::{Method, Url};
use warden_engine::{BoxFuture, Broker, BrokerError, Capabilities, ErrorClass, Grant, LoginRequest, Secret, UnixMs};

use super::http::{
    ApiRequest, ApiResponse, Endpoint, HttpClient, RawResponse, Wire, error_answer, is_success, send_authorized,
};
use super::json::{Obj, clean_text};
use super::limits::{EndpointLimit, LimitScope};
use super::oauth2::{self, ClientAuth, TokenResponse, request_token, token_form};
use super::{AdapterError, codes, credential, join_url, parse_base_url};

/// Its name in logs and errors.
const NAME: &str = "saxo";

/// Its wire format, for the `send` shell.
const WIRE: Wire = Wire { name: NAME, limits: SAXO_LIMITS, read_error };

/// A service group's limit: 120 requests a minute per session.
const fn group(class: &'static str, path: &'static str) -> EndpointLimit {
    EndpointLimit { class, method: None, path, scope: LimitScope::Session, max: 120, per: Duration::from_secs(60) }
}

/// Saxo's published limits: 1 order a second per session, 120 requests a minute per session in each
/// service group, 10 million requests a day per application.
pub const SAXO_LIMITS: &[EndpointLimit] = &[
    EndpointLimit {
        class: "orders",
        method: None,
        path: "/trade/v2/orders",
        scope: LimitScope::Session,
        max: 1,
        per: Duration::from_secs(1),
    },
    group("trade", "/trade/"),
    group("port", "/port/"),
    group("ref", "/ref/"),
    group("chart", "/chart/"),
    group("root", "/root/"),
    group("ens", "/ens/"),
    group("hist", "/hist/"),
    group("cs", "/cs/"),
    EndpointLimit {
        class: "app_day",
        method: None,
        path: "/",
        scope: LimitScope::App,
        max: 10_000_000,
        per: Duration::from_secs(24 * 3600),
    },
];

/// Settings of [`Saxo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaxoSettings {
    /// The authentication server (`https://live.logonvalidation.net`); the token endpoint is `{auth_url}/token`.
    pub auth_url: String,
    /// The application's redirect URI (its "AppUrl"), sent with every token request.
    pub redirect_uri: String,
    /// How the application authenticates to the token endpoint.
    pub client_auth: ClientAuth,
    /// The access token's lifetime when the answer does not say (20 minutes).
    pub token_lifetime: Duration,
    /// The refresh token's lifetime when the answer does not say (60 minutes).
    pub refresh_lifetime: Duration,
}

impl SaxoSettings {
    /// Saxo's live environment.
    pub fn live(redirect_uri: impl Into<String>) -> SaxoSettings {
        SaxoSettings {
            auth_url: "https://live.logonvalidation.net".into(),
            redirect_uri: redirect_uri.into(),
            client_auth: ClientAuth::Basic,
            token_lifetime: Duration::from_secs(20 * 60),
            refresh_lifetime: Duration::from_secs(60 * 60),
        }
    }

    /// Saxo's simulation environment.
    pub fn simulation(redirect_uri: impl Into<String>) -> SaxoSettings {
        SaxoSettings { auth_url: "https://sim.logonvalidation.net".into(), ..SaxoSettings::live(redirect_uri) }
    }
}

/// The Saxo OpenAPI adapter.
#[derive(Debug)]
pub struct Saxo {
    settings: SaxoSettings,
    token_url: Url,
    http: HttpClient,
}

/// How the first grant is obtained.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstGrant<'a> {
    /// A one-time authorization code from an operator.
    AuthorizationCode(&'a Secret),
    /// A refresh token saved earlier.
    StoredRefreshToken(&'a Secret),
}

/// Which first grant a login uses: the operator's code (second factor first, then the credential
/// `authorization_code`), else a stored `refresh_token`; `None` when there is neither.
pub fn first_grant<'a>(request: &LoginRequest<'a>) -> Option<FirstGrant<'a>> {
    let code = request.second_factor.or_else(|| request.credentials.get("authorization_code"));
    match code.filter(|c| !c.is_empty()) {
        Some(code) => Some(FirstGrant::AuthorizationCode(code)),
        None => request.credentials.get("refresh_token").filter(|t| !t.is_empty()).map(FirstGrant::StoredRefreshToken),
    }
}

/// Reads a Saxo error answer: `None` for a 2xx. OpenAPI errors are `{"ErrorCode":…,"Message":…}`; the
/// token endpoint's are OAuth 2.0's (`error`, `error_description`).
pub fn read_error(endpoint: &Endpoint, raw: &RawResponse, now: UnixMs) -> Option<BrokerError> {
    if is_success(raw.status) {
        return None;
    }
    let body = super::json::parse(&raw.body, raw.body.len().max(1)).ok();
    let root = body.as_ref().and_then(|b| Obj::root(b).ok());
    let saxo_code = root.as_ref().and_then(|r| r.opt_code("ErrorCode"));
    let saxo_text = root.as_ref().and_then(|r| r.opt_str("Message").ok().flatten()).map(|t| clean_text(t, 200));
    match (saxo_code, saxo_text) {
        (None, None) => oauth2::token_error(endpoint, raw, now),
        (code, text) => Some(error_answer(endpoint, raw, now, code, text)),
    }
}

/// What a Saxo error means: OAuth 2.0's codes (`invalid_grant` is an expired refresh token), then the
/// HTTP status (401 expired, 403 a refusal, 429 rate limited with its wait, 5xx transient).
pub fn classify(error: &BrokerError) -> ErrorClass {
    oauth2::classify(error)
}

impl Saxo {
    /// An adapter for `settings`, sending through `http`.
    pub fn new(settings: SaxoSettings, http: HttpClient) -> Result<Saxo, AdapterError> {
        let auth = parse_base_url("auth_url", &settings.auth_url)?;
        if settings.redirect_uri.is_empty() {
            return Err(AdapterError::Setting { name: "redirect_uri", problem: "must not be empty".into() });
        }
        let token_url = join_url(&auth, "token");
        Ok(Saxo { settings, token_url, http })
    }

    /// The shared HTTP client (its allowance book among other things).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Authorises `request` with `grant`, sends it and reads the answer (see [`crate::broker::http`]).
    pub async fn send(&self, now: UnixMs, grant: &Grant, request: ApiRequest) -> Result<ApiResponse, BrokerError> {
        send_authorized(&self.http, &WIRE, &|g, r| self.authorize(g, r), now, grant, request).await
    }

    /// One token request with `params` (plus the redirect URI and the client's authentication).
    async fn token(
        &self,
        now: UnixMs,
        credentials: &warden_engine::Credentials,
        params: &[(&str, &str)],
        secret: &Secret,
    ) -> Result<TokenResponse, BrokerError> {
        let app_key = credential(credentials, NAME, "app_key")?;
        let app_secret = credential(credentials, NAME, "app_secret")?;
        let mut all = params.to_vec();
        all.push(("redirect_uri", self.settings.redirect_uri.as_str()));
        let (form, header) = token_form(&all, self.settings.client_auth, app_key.expose(), app_secret.expose());
        let endpoint = Endpoint::new(NAME, Method::POST, &self.token_url, SAXO_LIMITS);
        let secrets = [app_secret.expose(), secret.expose()];
        let mut token =
            request_token(&self.http, now, &endpoint, self.token_url.clone(), form, header.as_ref(), &secrets).await?;
        token.expires_in = token.expires_in.or(Some(self.settings.token_lifetime));
        if token.refresh_token.is_some() {
            token.refresh_expires_in = token.refresh_expires_in.or(Some(self.settings.refresh_lifetime));
        }
        Ok(token)
    }

    async fn login_inner(&self, now: UnixMs, request: LoginRequest<'_>) -> Result<Grant, BrokerError> {
        let (params, secret, what) = match first_grant(&request) {
            Some(FirstGrant::AuthorizationCode(code)) => {
                (vec![("grant_type", "authorization_code"), ("code", code.expose())], code, "authorization code")
            }
            Some(FirstGrant::StoredRefreshToken(token)) => (
                vec![("grant_type", "refresh_token"), ("refresh_token", token.expose())],
                token,
                "stored refresh token",
            ),
            None => {
                return Err(BrokerError::not_sent(format!(
                    "{NAME} login: an authorization code is needed: an operator signs in at {}/authorize and \
                     hands the code in as the second factor",
                    self.settings.auth_url.trim_end_matches('/')
                ))
                .with_code(codes::NEEDS_OPERATOR));
            }
        };
        let token = self.token(now, request.credentials, &params, secret).await.map_err(|e| {
            if e.code.as_deref() == Some("invalid_grant") {
                BrokerError {
                    message: format!(
                        "{}; the {what} was refused: an operator must supply a new authorization code",
                        e.message
                    ),
                    code: Some(codes::NEEDS_OPERATOR.to_owned()),
                    ..e
                }
            } else {
                e
            }
        })?;
        tracing::info!(broker = NAME, first_grant = what, "logged in");
        Ok(token.into_grant(now, None))
    }

    async fn refresh_inner(&self, now: UnixMs, grant: &Grant) -> Result<Grant, BrokerError> {
        let Some(refresh) = grant.refresh_token.as_ref().filter(|_| grant.can_refresh(now)) else {
            return Err(BrokerError::not_sent(format!("{NAME} refresh: the grant has no live refresh token"))
                .with_code("invalid_grant"));
        };
        let credentials = self.credentials_for_refresh(grant);
        let params = [("grant_type", "refresh_token"), ("refresh_token", refresh.expose())];
        let token = self.token(now, &credentials, &params, refresh).await?;
        Ok(token.into_grant(now, Some((refresh, grant.refresh_expires_at))))
    }

    /// A refresh needs the application's key and secret; the login kept them in the grant's extras.
    fn credentials_for_refresh(&self, grant: &Grant) -> warden_engine::Credentials {
        let mut credentials = warden_engine::Credentials::new();
        for name in ["app_key", "app_secret"] {
            if let Some(value) = grant.extras.get(name) {
                credentials = credentials.with(name, value.clone());
            }
        }
        credentials
    }
}

impl Broker for Saxo {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { refresh: true, keepalive: false }
    }

    fn token_lifetime(&self) -> Option<Duration> {
        Some(self.settings.token_lifetime)
    }

    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(async move {
            let grant = self.login_inner(now, request).await?;
            // The refresh grant authenticates the application too: keep its key and secret with the grant
            // (a `Secret` each, encrypted at rest with the snapshot).
            let mut grant = grant;
            for name in ["app_key", "app_secret"] {
                if let Some(value) = request.credentials.get(name) {
                    grant.extras.insert(name.to_owned(), value.clone());
                }
            }
            Ok(grant)
        })
    }

    fn refresh<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(async move {
            let mut fresh = self.refresh_inner(now, grant).await?;
            for (name, value) in &grant.extras {
                fresh.extras.entry(name.clone()).or_insert_with(|| value.clone());
            }
            Ok(fresh)
        })
    }

    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        // Saxo's token endpoint has no revocation call; the grant ends with its tokens' lifetimes.
        Box::pin(async { Ok(()) })
    }

    fn classify(&self, error: &BrokerError) -> ErrorClass {
        classify(error)
    }
}

#[cfg(test)]
mod tests {
    use warden_engine::Credentials;

    use super::*;

    #[test]
    fn the_first_grant_prefers_the_operators_code() {
        let code = Secret::new("CODE");
        let stored = Credentials::new().with("refresh_token", "R").with("authorization_code", "C2");
        let with_factor = LoginRequest { credentials: &stored, second_factor: Some(&code), take_over: false };
        assert_eq!(first_grant(&with_factor), Some(FirstGrant::AuthorizationCode(&code)));
        let plain = LoginRequest { credentials: &stored, second_factor: None, take_over: false };
        assert!(matches!(first_grant(&plain), Some(FirstGrant::AuthorizationCode(c)) if c.expose() == "C2"));
        let only_refresh = Credentials::new().with("refresh_token", "R");
        let r = LoginRequest { credentials: &only_refresh, second_factor: None, take_over: false };
        assert!(matches!(first_grant(&r), Some(FirstGrant::StoredRefreshToken(_))));
        let nothing = Credentials::new().with("app_key", "k");
        assert_eq!(first_grant(&LoginRequest { credentials: &nothing, second_factor: None, take_over: false }), None);
    }

    #[test]
    fn errors_read_and_classify() {
        let url = Url::parse("https://gateway.example/openapi/trade/v2/orders").unwrap();
        let ep = Endpoint::new(NAME, Method::POST, &url, SAXO_LIMITS);
        assert_eq!(ep.class, Some("orders"));
        let now = UnixMs::EPOCH;
        let raw = RawResponse::new(400, r#"{"ErrorCode":"InvalidRequest","Message":"Price is missing"}"#);
        let e = read_error(&ep, &raw, now).unwrap();
        assert_eq!(e.code.as_deref(), Some("InvalidRequest"));
        assert_eq!(e.message, "saxo POST /openapi/trade/v2/orders: HTTP 400 Bad Request: Price is missing");
        assert_eq!(classify(&e), ErrorClass::Permanent);
        assert_eq!(classify(&read_error(&ep, &RawResponse::new(401, ""), now).unwrap()), ErrorClass::AuthExpired);
        assert_eq!(
            classify(&read_error(&ep, &RawResponse::new(403, r#"{"ErrorCode":"Forbidden"}"#), now).unwrap()),
            ErrorClass::Permanent,
            "a business 403"
        );
        let raw = RawResponse::new(429, "")
            .with_header("X-RateLimit-SessionOrders-Remaining", "0")
            .with_header("X-RateLimit-SessionOrders-Reset", "1");
        assert_eq!(
            classify(&read_error(&ep, &raw, now).unwrap()),
            ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(1)) }
        );
        let e = read_error(&ep, &RawResponse::new(500, ""), now).unwrap();
        assert_eq!((classify(&e), e.delivery), (ErrorClass::Transient, warden_engine::Delivery::Unknown));
        let raw = RawResponse::new(400, r#"{"error":"invalid_grant"}"#);
        assert_eq!(classify(&read_error(&ep, &raw, now).unwrap()), ErrorClass::AuthExpired);
    }

    #[test]
    fn limits_classify_requests() {
        let c = |m: &str, p: &str| super::super::limits::classify(SAXO_LIMITS, m, p).map(|l| l.class);
        assert_eq!(c("DELETE", "/openapi/trade/v2/orders/123"), Some("orders"));
        assert_eq!(c("GET", "/openapi/port/v1/balances/me"), Some("port"));
        assert_eq!(c("GET", "/openapi/trade/v1/infoprices"), Some("trade"));
        assert_eq!(c("GET", "/openapi/other"), Some("app_day"));
    }
}
