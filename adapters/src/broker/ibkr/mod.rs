//! Interactive Brokers Web API with first-party OAuth 1.0a: live session token, brokerage session,
//! `tickle` keep-alive.
//!
//! A login is three calls: the OAuth handshake at `POST {base}/oauth/live_session_token` (see [`oauth`])
//! gives the live session token (the grant's access token, expiring at the answer's
//! `live_session_token_expiration`); then `POST {base}/iserver/auth/ssodh/init`
//! `{"publish":true,"compete":<take_over>}` opens the brokerage session; then a first `POST {base}/tickle`
//! reads the session's `session` value, the WebSocket's `api` cookie, kept in the grant as the secret
//! extra `session` (`warden_actors::stream::IbkrStream` connects with it). Every later request is signed
//! HMAC-SHA256 under the token ([`Broker::authorize`] adds the `Authorization: OAuth …` header; the
//! timestamp comes from the clock the adapter was given, since `authorize` takes no time). The keep-alive
//! is `POST {base}/tickle`: HTTP 200 with `iserver.authStatus.authenticated: false` is
//! [`KeepaliveStatus::Unauthenticated`], `competing: true` is [`KeepaliveStatus::Competing`]. Logout is
//! `POST {base}/logout`.
//!
//! `compete` follows the login's `take_over` flag: the first login does not push another session out; if
//! one holds the account the login fails as [`ErrorClass::Competing`] and the session's `on_competing`
//! policy decides whether the next login takes over.
//!
//! Error classes: 401 (`{"error":"no session"}`) and 410 Gone (a dead live session token) are
//! [`ErrorClass::AuthExpired`]; so is a 400 "Init session first" / "no bridge" (the brokerage session is
//! gone: a new login opens it); other 4xx — 403 among them — are [`ErrorClass::Permanent`]; 429 is
//! rate limited, for IBKR's 10-minute penalty box when no `Retry-After` says otherwise; 5xx transient.
//!
//! Credentials (text, as [`credentials_from_files`] reads them): `consumer_key`, `access_token`,
//! `access_token_secret` (base64, as IBKR's portal shows it), `signature_key` and `encryption_key`
//! (PEM), `dh_prime` (hex) and `dh_generator` (default 2).

pub mod oauth;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use num_bigint::BigUint;
use reqwest::{Method, Url};
use warden_engine::{
    BoxFuture, Broker, BrokerError, BrokerRequest, Capabilities, Credentials, ErrorClass, Grant, KeepaliveStatus,
    LoginRequest, Secret, UnixMs,
};

use self::oauth::{DhParams, OAuthError};
use super::http::{
    ApiRequest, ApiResponse, Endpoint, HttpClient, RawResponse, Wire, error_answer, is_success, send_authorized,
    wire_error,
};
use super::json::{Obj, WireError, clean_text};
use super::limits::{EndpointLimit, LimitScope};
use super::{AdapterError, classify_adapter_code, codes, credential, join_url, parse_base_url};
use crate::store::WallClock;

/// Its name in logs and errors.
const NAME: &str = "ibkr";

/// Its wire format, for the `send` shell.
const WIRE: Wire = Wire { name: NAME, limits: IBKR_LIMITS, read_error };

/// How long IBKR's penalty box holds a client that exceeded the limits, when a 429 does not say.
pub const PENALTY_BOX: Duration = Duration::from_secs(10 * 60);

/// The code of a login whose brokerage session did not come up.
pub const CODE_NOT_AUTHENTICATED: &str = "not_authenticated";

/// IBKR's published pacing limits (per user name): 50 requests a second overall with OAuth, `tickle`
/// 1/s, `sso/validate` 1/min, the live-orders list 1 per 5 s, trades and portfolio accounts 1 per 5 s,
/// market-data snapshots 10/s.
pub const IBKR_LIMITS: &[EndpointLimit] = &[
    EndpointLimit {
        class: "tickle",
        method: None,
        path: "/tickle",
        scope: LimitScope::User,
        max: 1,
        per: Duration::from_secs(1),
    },
    EndpointLimit {
        class: "sso_validate",
        method: None,
        path: "/sso/validate",
        scope: LimitScope::User,
        max: 1,
        per: Duration::from_secs(60),
    },
    EndpointLimit {
        class: "orders",
        method: Some("GET"),
        path: "/iserver/account/orders",
        scope: LimitScope::User,
        max: 1,
        per: Duration::from_secs(5),
    },
    EndpointLimit {
        class: "trades",
        method: None,
        path: "/iserver/account/trades",
        scope: LimitScope::User,
        max: 1,
        per: Duration::from_secs(5),
    },
    EndpointLimit {
        class: "portfolio_accounts",
        method: None,
        path: "/portfolio/accounts",
        scope: LimitScope::User,
        max: 1,
        per: Duration::from_secs(5),
    },
    EndpointLimit {
        class: "snapshot",
        method: None,
        path: "/iserver/marketdata/snapshot",
        scope: LimitScope::User,
        max: 10,
        per: Duration::from_secs(1),
    },
    EndpointLimit {
        class: "global",
        method: None,
        path: "/",
        scope: LimitScope::User,
        max: 50,
        per: Duration::from_secs(1),
    },
];

/// Settings of [`Ibkr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IbkrSettings {
    /// The Web API root (`https://api.ibkr.com/v1/api`).
    pub base_url: String,
    /// The OAuth realm: `limited_poa`, or `test_realm` for IBKR's test consumer.
    pub realm: String,
    /// The live session token's lifetime when the answer does not say (24 hours).
    pub lst_lifetime: Duration,
}

impl Default for IbkrSettings {
    fn default() -> IbkrSettings {
        IbkrSettings {
            base_url: "https://api.ibkr.com/v1/api".into(),
            realm: "limited_poa".into(),
            lst_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// Reads IBKR OAuth material from its files into [`Credentials`]: the two PEM keys and the
/// `dhparam.pem` (its prime and generator), with the consumer key, access token and encrypted
/// access-token secret as IBKR's portal shows them.
pub fn credentials_from_files(
    consumer_key: &str,
    access_token: &str,
    access_token_secret: &str,
    signature_key: &Path,
    encryption_key: &Path,
    dh_param: &Path,
) -> Result<Credentials, AdapterError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| AdapterError::CredentialFile { path: path.display().to_string(), detail: e.to_string() })
    };
    let file_error = |path: &Path, e: OAuthError| AdapterError::CredentialFile {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let signature_pem = read(signature_key)?;
    oauth::parse_private_key(&signature_pem, "signature_key").map_err(|e| file_error(signature_key, e))?;
    let encryption_pem = read(encryption_key)?;
    oauth::parse_private_key(&encryption_pem, "encryption_key").map_err(|e| file_error(encryption_key, e))?;
    let dh = DhParams::from_pem(&read(dh_param)?).map_err(|e| file_error(dh_param, e))?;
    Ok(Credentials::new()
        .with("consumer_key", consumer_key)
        .with("access_token", access_token)
        .with("access_token_secret", access_token_secret)
        .with("signature_key", signature_pem)
        .with("encryption_key", encryption_pem)
        .with("dh_prime", dh.prime.to_str_radix(16))
        .with("dh_generator", dh.generator.to_string()))
}

/// The live session token endpoint's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct LstAnswer {
    /// `B`, the server's Diffie-Hellman value.
    pub dh_response: BigUint,
    /// The hex HMAC-SHA1 of the consumer key under the token.
    pub signature: String,
    /// When the token expires, if said.
    pub expires_at: Option<UnixMs>,
}

/// Reads `/oauth/live_session_token`'s answer.
pub fn parse_lst_answer(value: &serde_json::Value) -> Result<LstAnswer, WireError> {
    let root = Obj::root(value)?;
    let hex = root.non_empty_str("diffie_hellman_response")?;
    let dh_response = oauth::parse_hex(hex, "diffie_hellman_response")
        .map_err(|_| root.invalid("diffie_hellman_response", "it is not hex"))?;
    let signature = root.non_empty_str("live_session_token_signature")?.to_owned();
    let expires_at =
        root.opt_u64("live_session_token_expiration")?.map(|ms| UnixMs::from_millis(ms.min(i64::MAX as u64) as i64));
    Ok(LstAnswer { dh_response, signature, expires_at })
}

/// What the brokerage session says about itself (`ssodh/init`, `auth/status`, `tickle`'s
/// `iserver.authStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthStatus {
    /// `authenticated`.
    pub authenticated: bool,
    /// `competing`.
    pub competing: bool,
}

impl AuthStatus {
    /// As a keep-alive result: competing first, then unauthenticated.
    pub fn keepalive(self) -> KeepaliveStatus {
        if self.competing {
            KeepaliveStatus::Competing
        } else if !self.authenticated {
            KeepaliveStatus::Unauthenticated
        } else {
            KeepaliveStatus::Alive
        }
    }
}

/// Reads an auth status object (`{"authenticated":…,"competing":…}`); a missing `competing` is false.
pub fn parse_auth_status(value: &serde_json::Value) -> Result<AuthStatus, WireError> {
    let root = Obj::root(value)?;
    Ok(AuthStatus {
        authenticated: root.bool("authenticated")?,
        competing: root.opt_bool("competing")?.unwrap_or(false),
    })
}

/// The `session` value of a `tickle` answer (the WebSocket's `api` cookie), if it has one.
pub fn parse_tickle_session(value: &serde_json::Value) -> Result<Option<String>, WireError> {
    let root = Obj::root(value)?;
    Ok(root.opt_str("session")?.filter(|s| !s.is_empty()).map(str::to_owned))
}

/// Reads a `tickle` answer. Without `iserver.authStatus` the brokerage session is not there:
/// unauthenticated.
pub fn parse_tickle(value: &serde_json::Value) -> Result<KeepaliveStatus, WireError> {
    let root = Obj::root(value)?;
    let Some(status) = root.opt_obj("iserver")?.map(|i| i.opt_obj("authStatus")).transpose()?.flatten() else {
        return Ok(KeepaliveStatus::Unauthenticated);
    };
    let status = AuthStatus {
        authenticated: status.opt_bool("authenticated")?.unwrap_or(false),
        competing: status.opt_bool("competing")?.unwrap_or(false),
    };
    Ok(status.keepalive())
}

/// Reads an IBKR error answer: `None` for a 2xx. Bodies are `{"error":"…"}`; the text becomes the
/// message, and a 429 without `Retry-After` waits out the [`PENALTY_BOX`].
pub fn read_error(endpoint: &Endpoint, raw: &RawResponse, now: UnixMs) -> Option<BrokerError> {
    if is_success(raw.status) {
        return None;
    }
    let body = super::json::parse(&raw.body, raw.body.len().max(1)).ok();
    let root = body.as_ref().and_then(|b| Obj::root(b).ok());
    let text = root
        .as_ref()
        .and_then(|r| r.opt_str("error").ok().flatten().or_else(|| r.opt_str("message").ok().flatten()))
        .map(|t| clean_text(t, 200));
    let mut error = error_answer(endpoint, raw, now, None, text);
    if raw.status == 429 && error.retry_after.is_none() {
        error.retry_after = Some(PENALTY_BOX);
    }
    Some(error)
}

/// What an IBKR error means (see the module documentation).
pub fn classify(error: &BrokerError) -> ErrorClass {
    if let Some(class) = classify_adapter_code(error) {
        return class;
    }
    if error.code.as_deref() == Some(CODE_NOT_AUTHENTICATED) {
        return ErrorClass::Transient;
    }
    let lower = error.message.to_ascii_lowercase();
    match error.status {
        Some(401 | 410) => ErrorClass::AuthExpired,
        Some(400) if lower.contains("init session first") || lower.contains("no bridge") => ErrorClass::AuthExpired,
        Some(status) => ErrorClass::from_http_status(status, error.retry_after),
        None => ErrorClass::Transient,
    }
}

/// The OAuth material of a login, parsed from the credentials.
struct Material {
    consumer_key: Secret,
    access_token: Secret,
    prepend: Secret,
    signature_key: rsa::PrivateKey,
    dh: DhParams,
}

fn bad_credential(e: OAuthError) -> BrokerError {
    BrokerError::not_sent(format!("{NAME} login: {e}")).with_code(codes::BAD_CREDENTIAL)
}

impl Material {
    fn from_credentials(credentials: &Credentials) -> Result<Material, BrokerError> {
        let consumer_key = credential(credentials, NAME, "consumer_key")?.clone();
        let access_token = credential(credentials, NAME, "access_token")?.clone();
        let secret = credential(credentials, NAME, "access_token_secret")?;
        let signature_key =
            oauth::parse_private_key(credential(credentials, NAME, "signature_key")?.expose(), "signature_key")
                .map_err(bad_credential)?;
        let encryption_key =
            oauth::parse_private_key(credential(credentials, NAME, "encryption_key")?.expose(), "encryption_key")
                .map_err(bad_credential)?;
        let generator = match credentials.get("dh_generator").filter(|g| !g.is_empty()) {
            Some(g) => g.expose().trim().parse::<u32>().map_err(|_| {
                BrokerError::not_sent(format!("{NAME} login: `dh_generator` is not a small integer"))
                    .with_code(codes::BAD_CREDENTIAL)
            })?,
            None => 2,
        };
        let dh = DhParams::from_hex(credential(credentials, NAME, "dh_prime")?.expose(), generator)
            .map_err(bad_credential)?;
        let prepend = oauth::decrypt_prepend(&encryption_key, secret.expose()).map_err(bad_credential)?;
        Ok(Material { consumer_key, access_token, prepend, signature_key, dh })
    }
}

/// The IBKR Web API adapter (OAuth 1.0a).
pub struct Ibkr {
    settings: IbkrSettings,
    base: Url,
    http: HttpClient,
    clock: WallClock,
}

impl std::fmt::Debug for Ibkr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ibkr").field("settings", &self.settings).field("http", &self.http).finish_non_exhaustive()
    }
}

impl Ibkr {
    /// An adapter for `settings`, sending through `http`; `clock` stamps the signatures of requests
    /// authorised through [`Broker::authorize`] (pass the runtime's clock: `Arc::new(move || clock.now())`).
    pub fn new(settings: IbkrSettings, http: HttpClient, clock: WallClock) -> Result<Ibkr, AdapterError> {
        let base = parse_base_url("base_url", &settings.base_url)?;
        if settings.realm.is_empty() {
            return Err(AdapterError::Setting { name: "realm", problem: "must not be empty".into() });
        }
        Ok(Ibkr { settings, base, http, clock })
    }

    /// The shared HTTP client (its allowance book among other things).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The URL of an API `path` (`iserver/accounts`).
    pub fn api_url(&self, path: &str) -> String {
        join_url(&self.base, path).into()
    }

    /// Authorises `request` with `grant` (signed at `now`), sends it and reads the answer.
    pub async fn send(&self, now: UnixMs, grant: &Grant, request: ApiRequest) -> Result<ApiResponse, BrokerError> {
        let authorize = |g: &Grant, r: &mut BrokerRequest| authorize_at(self, g, r, now);
        send_authorized(&self.http, &WIRE, &authorize, now, grant, request).await
    }

    /// The `Authorization` header of a request signed HMAC-SHA256 at `now` with `nonce`.
    pub fn signed_header(
        &self,
        grant: &Grant,
        method: &str,
        url: &str,
        now: UnixMs,
        nonce: &str,
    ) -> Result<Secret, BrokerError> {
        let extra = |name: &str| {
            grant
                .extras
                .get(name)
                .ok_or_else(|| BrokerError::not_sent(format!("{NAME}: the grant has no {name} (log in again)")))
        };
        let consumer_key = extra("oauth_consumer_key")?;
        let token = extra("oauth_token")?;
        let mut url =
            Url::parse(url).map_err(|_| BrokerError::not_sent(format!("{NAME}: the request URL is not valid")))?;
        let mut params =
            oauth::oauth_params(consumer_key.expose(), token.expose(), nonce, now.as_millis() / 1000, "HMAC-SHA256");
        for (k, v) in url.query_pairs() {
            params.insert(k.into_owned(), v.into_owned());
        }
        url.set_query(None);
        url.set_fragment(None);
        let base = oauth::base_string(method, url.as_str(), &params, None);
        let signature = oauth::hmac_sha256_signature(&grant.access_token, &base)
            .map_err(|e| BrokerError::not_sent(format!("{NAME}: {e}")))?;
        let mut header_params: BTreeMap<String, String> =
            params.into_iter().filter(|(k, _)| k.starts_with("oauth_")).collect();
        header_params.insert("oauth_signature".into(), signature);
        Ok(Secret::new(oauth::authorization_header(&self.settings.realm, &header_params)))
    }

    /// Sends an OAuth-signed request and reads its JSON answer.
    async fn signed_call(
        &self,
        now: UnixMs,
        grant: &Grant,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(Endpoint, u16, serde_json::Value), BrokerError> {
        let url = join_url(&self.base, path);
        let endpoint = Endpoint::new(NAME, method.clone(), &url, IBKR_LIMITS);
        let nonce =
            oauth::nonce().map_err(|_| BrokerError::not_sent(format!("{endpoint}: no randomness for a nonce")))?;
        let header = self.signed_header(grant, method.as_str(), url.as_str(), now, &nonce)?;
        let mut value = reqwest::header::HeaderValue::from_str(header.expose())
            .map_err(|_| BrokerError::not_sent(format!("{endpoint}: the OAuth header is not a valid value")))?;
        value.set_sensitive(true);
        let mut builder = self.http.request(method, url).header(reqwest::header::AUTHORIZATION, value);
        builder = match body {
            Some(body) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default()),
            None => builder.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        let raw = self.http.exchange(now, &endpoint, builder).await?;
        if let Some(mut error) = read_error(&endpoint, &raw, now) {
            error.message = super::http::scrub(&error.message, &super::http::grant_secrets(grant));
            return Err(error);
        }
        let value = self.http.parse_json(&endpoint, &raw)?;
        Ok((endpoint, raw.status, value))
    }

    /// The OAuth handshake: a grant holding the live session token.
    async fn live_session_token(&self, now: UnixMs, material: &Material) -> Result<Grant, BrokerError> {
        let url = join_url(&self.base, "oauth/live_session_token");
        let endpoint = Endpoint::new(NAME, Method::POST, &url, IBKR_LIMITS);
        let no_random = || BrokerError::not_sent(format!("{endpoint}: no randomness for the handshake"));
        let random = oauth::dh_random().map_err(|_| no_random())?;
        let nonce = oauth::nonce().map_err(|_| no_random())?;
        let challenge = oauth::dh_challenge(&material.dh, &random);
        let mut params = oauth::oauth_params(
            material.consumer_key.expose(),
            material.access_token.expose(),
            &nonce,
            now.as_millis() / 1000,
            "RSA-SHA256",
        );
        params.insert("diffie_hellman_challenge".into(), challenge.to_str_radix(16));
        let base = oauth::base_string("POST", url.as_str(), &params, Some(&material.prepend));
        let signature = oauth::rsa_sha256_signature(&material.signature_key, &base).map_err(bad_credential)?;
        params.insert("oauth_signature".into(), signature);
        let header = oauth::authorization_header(&self.settings.realm, &params);
        let mut value = reqwest::header::HeaderValue::from_str(&header)
            .map_err(|_| BrokerError::not_sent(format!("{endpoint}: the OAuth header is not a valid value")))?;
        value.set_sensitive(true);
        let builder = self
            .http
            .request(Method::POST, url)
            .header(reqwest::header::AUTHORIZATION, value)
            .header(reqwest::header::CONTENT_LENGTH, "0");
        let raw = self.http.exchange(now, &endpoint, builder).await?;
        if let Some(mut error) = read_error(&endpoint, &raw, now) {
            let secrets = [material.access_token.expose(), material.prepend.expose(), material.consumer_key.expose()];
            error.message = super::http::scrub(&error.message, &secrets);
            return Err(error);
        }
        let value = self.http.parse_json(&endpoint, &raw)?;
        let answer = parse_lst_answer(&value).map_err(|e| wire_error(&endpoint, raw.status, e))?;
        let shared = oauth::dh_shared_secret(&material.dh, &answer.dh_response, &random);
        let lst = oauth::live_session_token(&shared, &material.prepend).map_err(bad_credential)?;
        if !oauth::lst_signature_valid(&lst, material.consumer_key.expose(), &answer.signature) {
            return Err(BrokerError::http(
                raw.status,
                format!(
                    "{endpoint}: the live session token does not match IBKR's signature (the keys, the access \
                     token secret or the DH prime differ from the ones registered with IBKR)"
                ),
            )
            .with_code(codes::BAD_CREDENTIAL));
        }
        let expires_at =
            answer.expires_at.filter(|e| *e > now).unwrap_or_else(|| now.saturating_add(self.settings.lst_lifetime));
        let mut grant = Grant::new(lst, now)
            .with_extra("oauth_consumer_key", material.consumer_key.clone())
            .with_extra("oauth_token", material.access_token.clone());
        grant.expires_at = Some(expires_at);
        Ok(grant)
    }

    async fn login_inner(&self, now: UnixMs, request: LoginRequest<'_>) -> Result<Grant, BrokerError> {
        let material = Material::from_credentials(request.credentials)?;
        let grant = self.live_session_token(now, &material).await?;
        let body = serde_json::json!({ "publish": true, "compete": request.take_over });
        let (endpoint, status, value) =
            self.signed_call(now, &grant, Method::POST, "iserver/auth/ssodh/init", Some(body)).await?;
        let auth = parse_auth_status(&value).map_err(|e| wire_error(&endpoint, status, e))?;
        if auth.competing && !auth.authenticated {
            return Err(BrokerError::http(
                status,
                format!("{endpoint}: another session holds the account (competing)"),
            )
            .with_code(codes::COMPETING));
        }
        if !auth.authenticated {
            return Err(BrokerError::http(status, format!("{endpoint}: the brokerage session did not authenticate"))
                .with_code(CODE_NOT_AUTHENTICATED));
        }
        // The brokerage session's `session` value is the WebSocket's `api` cookie: read it once now and keep
        // it in the grant. A failed call fails the login (a grant without it cannot stream for its whole
        // life); an answer without it is logged, and the grant has no `session`.
        let (endpoint, status, value) = self.signed_call(now, &grant, Method::POST, "tickle", None).await?;
        let grant = match parse_tickle_session(&value).map_err(|e| wire_error(&endpoint, status, e))? {
            Some(session) => grant.with_extra("session", Secret::new(session)),
            None => {
                tracing::warn!(
                    broker = NAME,
                    "the tickle answer has no `session`: the grant cannot open the WebSocket"
                );
                grant
            }
        };
        tracing::info!(broker = NAME, take_over = request.take_over, expires_at = ?grant.expires_at, "logged in");
        Ok(grant)
    }

    async fn keepalive_inner(&self, now: UnixMs, grant: &Grant) -> Result<KeepaliveStatus, BrokerError> {
        let (endpoint, status, value) = self.signed_call(now, grant, Method::POST, "tickle", None).await?;
        parse_tickle(&value).map_err(|e| wire_error(&endpoint, status, e))
    }

    async fn logout_inner(&self, now: UnixMs, grant: &Grant) -> Result<(), BrokerError> {
        self.signed_call(now, grant, Method::POST, "logout", None).await.map(|_| ())
    }
}

fn authorize_at(ibkr: &Ibkr, grant: &Grant, request: &mut BrokerRequest, now: UnixMs) -> Result<(), BrokerError> {
    let nonce = oauth::nonce().map_err(|_| BrokerError::not_sent(format!("{NAME}: no randomness for a nonce")))?;
    let header = ibkr.signed_header(grant, &request.method, &request.url, now, &nonce)?;
    request.headers.push(("Authorization".to_owned(), header));
    Ok(())
}

impl Broker for Ibkr {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { refresh: false, keepalive: true }
    }

    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(self.login_inner(now, request))
    }

    fn keepalive<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<KeepaliveStatus, BrokerError>> {
        Box::pin(self.keepalive_inner(now, grant))
    }

    fn logout<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.logout_inner(now, grant))
    }

    fn classify(&self, error: &BrokerError) -> ErrorClass {
        classify(error)
    }

    fn authorize(&self, grant: &Grant, request: &mut BrokerRequest) -> Result<(), BrokerError> {
        authorize_at(self, grant, request, (self.clock)())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(path: &str) -> Endpoint {
        Endpoint::new(
            NAME,
            Method::POST,
            &Url::parse(&format!("https://api.ibkr.com/v1/api{path}")).unwrap(),
            IBKR_LIMITS,
        )
    }

    #[test]
    fn tickle_answers() {
        let alive = serde_json::json!({"session":"abc","ssoExpires":445000,"collission":false,
            "iserver":{"authStatus":{"authenticated":true,"competing":false,"connected":true,"message":""}}});
        assert_eq!(parse_tickle(&alive).unwrap(), KeepaliveStatus::Alive);
        let dead = serde_json::json!({"iserver":{"authStatus":{"authenticated":false,"competing":false}}});
        assert_eq!(parse_tickle(&dead).unwrap(), KeepaliveStatus::Unauthenticated);
        let competing = serde_json::json!({"iserver":{"authStatus":{"authenticated":true,"competing":true}}});
        assert_eq!(parse_tickle(&competing).unwrap(), KeepaliveStatus::Competing);
        let no_bridge = serde_json::json!({"session":"abc","hmds":{"error":"no bridge"}});
        assert_eq!(parse_tickle(&no_bridge).unwrap(), KeepaliveStatus::Unauthenticated);
        assert_eq!(parse_tickle_session(&alive).unwrap().as_deref(), Some("abc"));
        assert_eq!(parse_tickle_session(&serde_json::json!({"session":""})).unwrap(), None);
        assert_eq!(parse_tickle_session(&dead).unwrap(), None);
        assert!(parse_tickle_session(&serde_json::json!({"session":7})).is_err());
        let wrong = serde_json::json!({"iserver":{"authStatus":{"authenticated":"yes"}}});
        assert_eq!(
            parse_tickle(&wrong).unwrap_err().to_string(),
            "field `iserver.authStatus.authenticated` must be a boolean, found a string"
        );
    }

    #[test]
    fn lst_answers() {
        let v = serde_json::json!({"diffie_hellman_response":"0a1b","live_session_token_signature":"ff00",
            "live_session_token_expiration":1_700_086_400_000u64});
        let a = parse_lst_answer(&v).unwrap();
        assert_eq!(a.dh_response, BigUint::from(0x0a1bu32));
        assert_eq!(a.expires_at, Some(UnixMs::from_millis(1_700_086_400_000)));
        let v = serde_json::json!({"diffie_hellman_response":"xyz","live_session_token_signature":"ff"});
        assert_eq!(
            parse_lst_answer(&v).unwrap_err().to_string(),
            "field `diffie_hellman_response` is not valid: it is not hex"
        );
    }

    #[test]
    fn errors_classify() {
        let now = UnixMs::EPOCH;
        let e = read_error(&ep("/iserver/accounts"), &RawResponse::new(401, r#"{"error":"no session"}"#), now).unwrap();
        assert_eq!(classify(&e), ErrorClass::AuthExpired);
        assert!(e.message.ends_with(": no session"), "{}", e.message);
        assert_eq!(
            classify(&read_error(&ep("/tickle"), &RawResponse::new(410, ""), now).unwrap()),
            ErrorClass::AuthExpired
        );
        let e = read_error(&ep("/iserver/accounts"), &RawResponse::new(400, r#"{"error":"Init session first"}"#), now)
            .unwrap();
        assert_eq!(classify(&e), ErrorClass::AuthExpired);
        let e =
            read_error(&ep("/iserver/account/U1/orders"), &RawResponse::new(403, r#"{"error":"not permitted"}"#), now)
                .unwrap();
        assert_eq!(classify(&e), ErrorClass::Permanent, "a business 403");
        let e = read_error(&ep("/iserver/accounts"), &RawResponse::new(429, ""), now).unwrap();
        assert_eq!(classify(&e), ErrorClass::RateLimited { retry_after: Some(PENALTY_BOX) });
        assert_eq!(
            classify(&read_error(&ep("/tickle"), &RawResponse::new(503, ""), now).unwrap()),
            ErrorClass::Transient
        );
        assert_eq!(classify(&BrokerError::http(200, "x").with_code(codes::COMPETING)), ErrorClass::Competing);
        assert_eq!(classify(&BrokerError::http(200, "x").with_code(CODE_NOT_AUTHENTICATED)), ErrorClass::Transient);
    }

    #[test]
    fn limits_classify_requests() {
        let c = |m: &str, p: &str| super::super::limits::classify(IBKR_LIMITS, m, p).map(|l| l.class);
        assert_eq!(c("POST", "/v1/api/tickle"), Some("tickle"));
        assert_eq!(c("GET", "/v1/api/iserver/account/orders"), Some("orders"));
        assert_eq!(c("POST", "/v1/api/iserver/account/U1/orders"), Some("global"));
    }
}
