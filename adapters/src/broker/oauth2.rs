//! OAuth 2.0 (RFC 6749): the token endpoint's wire format, and the client-credentials adapter.
//!
//! The pure core, shared with [`crate::broker::saxo`]: [`token_form`] builds a token request's form and
//! client authentication (HTTP Basic per §2.3.1, or the client's id and secret in the form);
//! [`parse_token_response`] reads a §5.1 answer into a [`TokenResponse`]; [`token_error`] reads a §5.2
//! error (`{"error":"invalid_grant","error_description":…}`) or an RFC 6750 `WWW-Authenticate: Bearer
//! error="invalid_token"`; [`classify`] says what each code means.
//!
//! [`OAuth2ClientCredentials`] is a [`Broker`] for any server with the client-credentials grant
//! (§4.4): its login asks the token endpoint for a token with `grant_type=client_credentials`, the
//! grant expires after `expires_in`, and [`Broker::authorize`] puts `Authorization: Bearer …` on requests
//! to the hosts listed in [`OAuth2Settings::api_hosts`] only — a token is never sent to another host.
//!
//! ```no_run
//! use warden_adapters::broker::{ClientAuth, HttpClient, HttpSettings, OAuth2ClientCredentials, OAuth2Settings};
//! use warden_engine::Credentials;
//!
//! let http = HttpClient::new(HttpSettings::default())?;
//! let settings = OAuth2Settings {
//!     token_url: "https://auth.example.com/oauth2/token".into(),
//!     scope: Some("orders:write".into()),
//!     client_auth: ClientAuth::Basic,
//!     api_hosts: vec!["api.example.com".into()],
//!     ..OAuth2Settings::default()
//! };
//! let broker = OAuth2ClientCredentials::new(settings, http)?;
//! let credentials = Credentials::new().with("client_id", "my-app").with("client_secret", "…");
//! # Ok::<(), warden_adapters::broker::AdapterError>(())
//! ```

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, Url};
use warden_engine::{
    BoxFuture, Broker, BrokerError, BrokerRequest, Capabilities, ErrorClass, Grant, LoginRequest, Secret, UnixMs,
};

use super::http::{
    ApiRequest, ApiResponse, Endpoint, HttpClient, RawResponse, Wire, error_answer, form_urlencode, is_success,
    send_authorized, wire_error,
};
use super::json::{Obj, WireError, clean_text};
use super::limits::EndpointLimit;
use super::{AdapterError, classify_default, credential, parse_base_url};

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))`, the method servers must support.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Form,
}

/// A token endpoint's answer (RFC 6749 §5.1, plus Saxo's `refresh_token_expires_in`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: Secret,
    /// How long the access token lives, if the server said.
    pub expires_in: Option<Duration>,
    /// A refresh token, if one was issued.
    pub refresh_token: Option<Secret>,
    /// How long the refresh token lives, if the server said.
    pub refresh_expires_in: Option<Duration>,
}

impl TokenResponse {
    /// The grant it makes, issued at `now`. A refresh token without its own lifetime keeps `fallback`
    /// (a refresh that did not return a new refresh token keeps using the old one, §6).
    pub fn into_grant(self, now: UnixMs, fallback_refresh: Option<(&Secret, Option<UnixMs>)>) -> Grant {
        let mut grant = Grant::new(self.access_token, now);
        if let Some(lifetime) = self.expires_in {
            grant = grant.expires_in(lifetime);
        }
        match (self.refresh_token, fallback_refresh) {
            (Some(token), _) => grant = grant.with_refresh(token, self.refresh_expires_in),
            (None, Some((token, until))) => {
                grant.refresh_token = Some(token.clone());
                grant.refresh_expires_at = until;
            }
            (None, None) => {}
        }
        grant
    }
}

/// The form and client authentication of a token request: `params` are the grant's own
/// (`grant_type`, `refresh_token`, …). Returns the form body and the `Authorization` header, if any.
pub fn token_form(
    params: &[(&str, &str)],
    client_auth: ClientAuth,
    client_id: &str,
    client_secret: &str,
) -> (String, Option<Secret>) {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    match client_auth {
        ClientAuth::Basic => {
            let joined =
                format!("{}:{}", super::http::percent_encode(client_id), super::http::percent_encode(client_secret));
            let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(joined));
            (form_urlencode(&pairs), Some(Secret::new(header)))
        }
        ClientAuth::Form => {
            pairs.push(("client_id", client_id));
            pairs.push(("client_secret", client_secret));
            (form_urlencode(&pairs), None)
        }
    }
}

/// Reads a token endpoint's success answer. `access_token` is required and must not be empty;
/// `token_type`, when present, must be `Bearer` (any case); `expires_in` and
/// `refresh_token_expires_in` may be numbers or strings of digits.
pub fn parse_token_response(value: &serde_json::Value) -> Result<TokenResponse, WireError> {
    let root = Obj::root(value)?;
    let access_token = Secret::new(root.non_empty_str("access_token")?);
    if let Some(kind) = root.opt_str("token_type")?
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(root.invalid("token_type", "only Bearer tokens are supported"));
    }
    let expires_in = root.opt_u64_lenient("expires_in")?.map(Duration::from_secs);
    let refresh_token = root.opt_str("refresh_token")?.filter(|t| !t.is_empty()).map(Secret::new);
    let refresh_expires_in = root.opt_u64_lenient("refresh_token_expires_in")?.map(Duration::from_secs);
    Ok(TokenResponse { access_token, expires_in, refresh_token, refresh_expires_in })
}

/// Reads an OAuth 2.0 error answer: `None` for a 2xx. The code is the body's `error` (§5.2) or the
/// `error` of a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3); the text is `error_description`.
pub fn token_error(endpoint: &Endpoint, raw: &RawResponse, now: UnixMs) -> Option<BrokerError> {
    if is_success(raw.status) {
        return None;
    }
    let body = super::json::parse(&raw.body, raw.body.len().max(1)).ok();
    let root = body.as_ref().and_then(|b| Obj::root(b).ok());
    let mut code = root.as_ref().and_then(|r| r.opt_code("error"));
    let text = root
        .as_ref()
        .and_then(|r| r.opt_str("error_description").ok().flatten().or_else(|| r.opt_str("message").ok().flatten()))
        .map(|t| clean_text(t, 200));
    if code.is_none() {
        code = raw
            .headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_challenge_error);
    }
    Some(error_answer(endpoint, raw, now, code, text))
}

/// The `error` parameter of a `Bearer` challenge (`Bearer realm="x", error="invalid_token"`).
pub fn bearer_challenge_error(challenge: &str) -> Option<String> {
    let rest = challenge.trim().strip_prefix("Bearer").or_else(|| challenge.trim().strip_prefix("bearer"))?;
    rest.split(',').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name.trim() == "error").then(|| value.trim().trim_matches('"').to_owned()).filter(|v| !v.is_empty())
    })
}

/// What an OAuth 2.0 error means: `invalid_grant` (a dead refresh token or code) and `invalid_token`
/// are [`ErrorClass::AuthExpired`]; `invalid_client`, `unauthorized_client`, `invalid_scope`,
/// `unsupported_grant_type` and `invalid_request` are [`ErrorClass::Permanent`] (wrong credentials or
/// configuration: retrying cannot help); anything else by its HTTP status.
pub fn classify(error: &BrokerError) -> ErrorClass {
    match error.code.as_deref() {
        Some("invalid_grant" | "invalid_token") => ErrorClass::AuthExpired,
        Some(
            "invalid_client" | "unauthorized_client" | "invalid_scope" | "unsupported_grant_type" | "invalid_request",
        ) => ErrorClass::Permanent,
        _ => classify_default(error),
    }
}

/// Sends a token request and reads its answer; `secrets` are scrubbed from any error message.
pub(crate) async fn request_token(
    http: &HttpClient,
    now: UnixMs,
    endpoint: &Endpoint,
    url: Url,
    form: String,
    client_auth_header: Option<&Secret>,
    secrets: &[&str],
) -> Result<TokenResponse, BrokerError> {
    let mut builder = http
        .request(Method::POST, url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(form);
    if let Some(header) = client_auth_header {
        let mut value = reqwest::header::HeaderValue::from_str(header.expose())
            .map_err(|_| BrokerError::not_sent(format!("{endpoint}: the client credentials are not a valid header")))?;
        value.set_sensitive(true);
        builder = builder.header(reqwest::header::AUTHORIZATION, value);
    }
    let raw = http.exchange(now, endpoint, builder).await?;
    if let Some(mut error) = token_error(endpoint, &raw, now) {
        error.message = super::http::scrub(&error.message, secrets);
        return Err(error);
    }
    let value = http.parse_json(endpoint, &raw)?;
    parse_token_response(&value).map_err(|e| wire_error(endpoint, raw.status, e))
}

/// Settings of [`OAuth2ClientCredentials`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Settings {
    /// The token endpoint.
    pub token_url: String,
    /// The `scope` to ask for, if any.
    pub scope: Option<String>,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
    /// The API hosts (`api.example.com`, `127.0.0.1:8080`) the token may be sent to; empty: any host.
    pub api_hosts: Vec<String>,
    /// The token lifetime, if known before the first login (for the policy check).
    pub token_lifetime: Option<Duration>,
}

impl Default for OAuth2Settings {
    fn default() -> OAuth2Settings {
        OAuth2Settings {
            token_url: String::new(),
            scope: None,
            client_auth: ClientAuth::Basic,
            api_hosts: Vec::new(),
            token_lifetime: None,
        }
    }
}

/// The client-credentials grant of RFC 6749 §4.4 as a [`Broker`]. Credentials: `client_id`,
/// `client_secret`.
#[derive(Debug)]
pub struct OAuth2ClientCredentials {
    settings: OAuth2Settings,
    token_url: Url,
    http: HttpClient,
}

/// Its name in logs and errors.
const NAME: &str = "oauth2";

/// Its wire format, for the `send` shell.
const WIRE: Wire = Wire { name: NAME, limits: OAUTH2_LIMITS, read_error: token_error };

impl OAuth2ClientCredentials {
    /// An adapter for `settings`, sending through `http`.
    pub fn new(settings: OAuth2Settings, http: HttpClient) -> Result<OAuth2ClientCredentials, AdapterError> {
        let token_url = parse_base_url("token_url", &settings.token_url)?;
        Ok(OAuth2ClientCredentials { settings, token_url, http })
    }

    /// The shared HTTP client (its allowance book among other things).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Whether the token may be sent to `url`'s host.
    fn host_allowed(&self, url: &Url) -> bool {
        if self.settings.api_hosts.is_empty() {
            return true;
        }
        let host = url.host_str().unwrap_or_default();
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        self.settings.api_hosts.iter().any(|h| h.eq_ignore_ascii_case(host) || Some(h) == with_port.as_ref())
    }

    /// Authorises `request` with `grant`, sends it and reads the answer (see [`crate::broker::http`]).
    pub async fn send(&self, now: UnixMs, grant: &Grant, request: ApiRequest) -> Result<ApiResponse, BrokerError> {
        send_authorized(&self.http, &WIRE, &|g, r| self.authorize(g, r), now, grant, request).await
    }

    async fn login_inner(&self, now: UnixMs, request: LoginRequest<'_>) -> Result<Grant, BrokerError> {
        let client_id = credential(request.credentials, NAME, "client_id")?;
        let client_secret = credential(request.credentials, NAME, "client_secret")?;
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.settings.scope {
            params.push(("scope", scope.as_str()));
        }
        let (form, header) = token_form(&params, self.settings.client_auth, client_id.expose(), client_secret.expose());
        let endpoint = Endpoint::new(NAME, Method::POST, &self.token_url, &[]);
        let secrets = [client_secret.expose()];
        let token =
            request_token(&self.http, now, &endpoint, self.token_url.clone(), form, header.as_ref(), &secrets).await?;
        let lifetime = token.expires_in;
        tracing::info!(broker = NAME, lifetime_s = lifetime.map(|l| l.as_secs()), "client-credentials token issued");
        Ok(token.into_grant(now, None))
    }
}

/// The client-credentials adapter has no endpoint classes of its own.
pub const OAUTH2_LIMITS: &[EndpointLimit] = &[];

impl Broker for OAuth2ClientCredentials {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn token_lifetime(&self) -> Option<Duration> {
        self.settings.token_lifetime
    }

    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(self.login_inner(now, request))
    }

    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        // Token revocation (RFC 7009) is not part of the client-credentials grant; the token simply expires.
        Box::pin(async { Ok(()) })
    }

    fn classify(&self, error: &BrokerError) -> ErrorClass {
        classify(error)
    }

    fn authorize(&self, grant: &Grant, request: &mut BrokerRequest) -> Result<(), BrokerError> {
        let url = Url::parse(&request.url)
            .map_err(|_| BrokerError::not_sent(format!("{NAME}: the request URL is not valid")))?;
        if !self.host_allowed(&url) {
            return Err(BrokerError::not_sent(format!(
                "{NAME}: refusing to send the token to host `{}`, which is not in api_hosts",
                url.host_str().unwrap_or_default()
            )));
        }
        request
            .headers
            .push(("Authorization".to_owned(), Secret::new(format!("Bearer {}", grant.access_token.expose()))));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_client_auth_encodes_before_base64() {
        let (form, header) = token_form(&[("grant_type", "client_credentials")], ClientAuth::Basic, "my app", "s:cret");
        assert_eq!(form, "grant_type=client_credentials");
        // base64("my%20app:s%3Acret")
        assert_eq!(header.unwrap().expose(), "Basic bXklMjBhcHA6cyUzQWNyZXQ=");
        let (form, header) = token_form(&[("grant_type", "client_credentials")], ClientAuth::Form, "id", "sec");
        assert_eq!(form, "grant_type=client_credentials&client_id=id&client_secret=sec");
        assert!(header.is_none());
    }

    #[test]
    fn token_responses_parse() {
        let v = serde_json::json!({"access_token":"A","token_type":"bearer","expires_in":"1200",
            "refresh_token":"R","refresh_token_expires_in":3600,"extra":[1]});
        let t = parse_token_response(&v).unwrap();
        assert_eq!(t.expires_in, Some(Duration::from_secs(1200)));
        assert_eq!(t.refresh_expires_in, Some(Duration::from_secs(3600)));
        let g = t.into_grant(UnixMs::from_millis(1_000), None);
        assert_eq!(g.expires_at, Some(UnixMs::from_millis(1_201_000)));
        assert_eq!(g.refresh_expires_at, Some(UnixMs::from_millis(3_601_000)));
        let v = serde_json::json!({"access_token":"A","token_type":"mac"});
        assert_eq!(
            parse_token_response(&v).unwrap_err().to_string(),
            "field `token_type` is not valid: only Bearer tokens are supported"
        );
        let v = serde_json::json!({"access_token":""});
        assert!(parse_token_response(&v).is_err());
        let v = serde_json::json!({"access_token":"A","expires_in":true});
        assert_eq!(
            parse_token_response(&v).unwrap_err().to_string(),
            "field `expires_in` must be a number, found a boolean"
        );
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let v = serde_json::json!({"access_token":"A2","expires_in":60});
        let old = Secret::new("R1");
        let g = parse_token_response(&v).unwrap().into_grant(UnixMs::EPOCH, Some((&old, Some(UnixMs::from_millis(9)))));
        assert_eq!(g.refresh_token, Some(old));
        assert_eq!(g.refresh_expires_at, Some(UnixMs::from_millis(9)));
    }

    #[test]
    fn errors_read_and_classify() {
        let url = Url::parse("https://auth.example/token").unwrap();
        let ep = Endpoint::new(NAME, Method::POST, &url, &[]);
        let now = UnixMs::EPOCH;
        assert!(token_error(&ep, &RawResponse::new(200, "{}"), now).is_none());
        let raw = RawResponse::new(400, r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#);
        let e = token_error(&ep, &raw, now).unwrap();
        assert_eq!(e.code.as_deref(), Some("invalid_grant"));
        assert_eq!(e.message, "oauth2 POST /token: HTTP 400 Bad Request: refresh token expired");
        assert_eq!(classify(&e), ErrorClass::AuthExpired);
        let raw = RawResponse::new(401, r#"{"error":"invalid_client"}"#);
        assert_eq!(classify(&token_error(&ep, &raw, now).unwrap()), ErrorClass::Permanent, "not an expiry");
        let raw =
            RawResponse::new(401, "").with_header("WWW-Authenticate", r#"Bearer realm="api", error="invalid_token""#);
        let e = token_error(&ep, &raw, now).unwrap();
        assert_eq!((e.code.as_deref(), classify(&e)), (Some("invalid_token"), ErrorClass::AuthExpired));
        let raw = RawResponse::new(403, "<html>forbidden</html>");
        assert_eq!(classify(&token_error(&ep, &raw, now).unwrap()), ErrorClass::Permanent);
        let raw = RawResponse::new(429, "").with_header("Retry-After", "5");
        let e = token_error(&ep, &raw, now).unwrap();
        assert_eq!(classify(&e), ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(5)) });
        assert_eq!(classify(&token_error(&ep, &RawResponse::new(502, ""), now).unwrap()), ErrorClass::Transient);
    }

    #[test]
    fn the_token_goes_to_listed_hosts_only() {
        let http = HttpClient::new(super::super::HttpSettings::default()).unwrap();
        let settings = OAuth2Settings {
            token_url: "https://auth.example/token".into(),
            api_hosts: vec!["api.example".into(), "127.0.0.1:8080".into()],
            ..OAuth2Settings::default()
        };
        let broker = OAuth2ClientCredentials::new(settings, http).unwrap();
        let grant = Grant::new("tok-S3CRET", UnixMs::EPOCH);
        let mut ok = BrokerRequest { method: "GET".into(), url: "https://api.example/v1/x".into(), headers: vec![] };
        broker.authorize(&grant, &mut ok).unwrap();
        assert_eq!(ok.headers[0].1.expose(), "Bearer tok-S3CRET");
        let mut local = BrokerRequest { method: "GET".into(), url: "http://127.0.0.1:8080/x".into(), headers: vec![] };
        assert!(broker.authorize(&grant, &mut local).is_ok());
        let mut other = BrokerRequest { method: "GET".into(), url: "https://evil.example/x".into(), headers: vec![] };
        let err = broker.authorize(&grant, &mut other).unwrap_err();
        assert!(err.message.contains("evil.example") && !err.message.contains("S3CRET"), "{}", err.message);
        assert!(other.headers.is_empty());
    }
}
