//! The thin IO shell every adapter shares: one `reqwest` client, size-limited reads, transport errors
//! mapped to [`BrokerError`]s, and the server's remaining allowance filed by endpoint class.
//!
//! - [`HttpSettings`]: connect and request timeouts, the largest response read (10 MiB by default),
//!   the user agent. [`HttpClient::new`] builds one `reqwest::Client` (rustls, no redirects); clone the
//!   [`HttpClient`] to share its connection pool between adapters.
//! - [`HttpClient::exchange`]: sends one request and reads the answer. A `Content-Length` over the limit
//!   is refused before the body is read, and the body is read chunk by chunk and refused as soon as it
//!   passes the limit. A connection that never opened is [`BrokerError::not_sent`]; a timeout or a
//!   connection lost after sending is [`BrokerError::no_answer`] (the broker may have acted).
//! - [`ApiRequest`] / [`ApiResponse`]: what a user's call through an adapter's `send` looks like.
//! - [`AllowanceBook`]: the latest [`RateAllowance`] each endpoint class reported, for a limiter to read.
//!
//! Error messages name the broker, the method and the path — never the query string, a header or a
//! body field that could hold a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use warden_engine::time::format_duration;
use warden_engine::{BrokerError, BrokerRequest, Delivery, Grant, UnixMs};

use super::headers::{RateAllowance, retry_after};
use super::json::{self, WireError};
use super::limits::{EndpointLimit, Route, ServerAllowance, classify};
use super::{AdapterError, codes};

/// The default largest response body read: 10 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// Settings of the shared HTTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long opening a connection (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long a whole request may take, from connecting to the last byte of the answer.
    pub request_timeout: Duration,
    /// The largest response body read; a longer one is refused before it is parsed.
    pub max_response_bytes: usize,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: concat!("warden/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The allowance one endpoint class reported last, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedAllowance {
    /// When the response came (the call's `now`).
    pub at: UnixMs,
    /// What its headers said.
    pub allowance: RateAllowance,
}

/// How many observations an [`AllowanceBook`] keeps; past it, the oldest are dropped.
pub const ALLOWANCE_BOOK_CAPACITY: usize = 1_024;

/// Whose calls an observation counts: a grant, known only by a keyed hash of its access token (the key
/// is random per book, so the hash says nothing outside the process), or no grant (logins, refreshes).
type GrantKey = Option<u64>;

/// An entry's key: the broker's and the class's names (static in every adapter's table) and the grant.
type AllowanceKey = (&'static str, &'static str, GrantKey);

/// The latest remaining allowance per broker, endpoint class (`("saxo", "orders")`; requests in no class
/// are filed under `"other"`) and grant: two sessions of one broker that share a client do not see each
/// other's allowance. Responses without rate-limit headers change nothing. At most
/// [`ALLOWANCE_BOOK_CAPACITY`] entries are kept, the oldest dropped first.
#[derive(Default)]
pub struct AllowanceBook {
    hasher: std::hash::RandomState,
    latest: Mutex<BTreeMap<AllowanceKey, ObservedAllowance>>,
}

impl fmt::Debug for AllowanceBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowanceBook").field("entries", &self.lock().len()).finish_non_exhaustive()
    }
}

impl AllowanceBook {
    /// Files what a response of `class` said at `at`, for the calls made with `grant` (`None`: calls
    /// without one, such as logins).
    pub fn record(
        &self,
        broker: &'static str,
        class: &'static str,
        grant: Option<&Grant>,
        at: UnixMs,
        allowance: RateAllowance,
    ) {
        if allowance.is_empty() {
            return;
        }
        let key = (broker, class, self.key_of(grant));
        let mut latest = self.lock();
        latest.insert(key, ObservedAllowance { at, allowance });
        while latest.len() > ALLOWANCE_BOOK_CAPACITY {
            let Some(oldest) = latest.iter().min_by_key(|(_, seen)| seen.at).map(|(key, _)| *key) else { break };
            latest.remove(&oldest);
        }
    }

    /// What `class` of `broker` reported last to calls made with `grant`.
    pub fn latest(
        &self,
        broker: &'static str,
        class: &'static str,
        grant: Option<&Grant>,
    ) -> Option<ObservedAllowance> {
        self.lock().get(&(broker, class, self.key_of(grant))).cloned()
    }

    /// The latest report of every broker and class, whichever grant it came with.
    pub fn all(&self) -> BTreeMap<(&'static str, &'static str), ObservedAllowance> {
        let mut all: BTreeMap<(&'static str, &'static str), ObservedAllowance> = BTreeMap::new();
        for ((broker, class, _), seen) in self.lock().iter() {
            let entry = all.entry((*broker, *class)).or_insert_with(|| seen.clone());
            if seen.at > entry.at {
                *entry = seen.clone();
            }
        }
        all
    }

    /// The allowance left in the tightest window (fewest requests left, with a known reset) that the
    /// last answer to a call with `grant` in `route`'s class reported, for the runtime's limiter.
    pub fn reported(
        &self,
        broker: &'static str,
        table: &'static [EndpointLimit],
        grant: &Grant,
        route: Route<'_>,
    ) -> Option<ServerAllowance> {
        let class = classify(table, route).map_or("other", |limit| limit.class);
        let seen = self.latest(broker, class, Some(grant))?;
        let window = seen
            .allowance
            .windows
            .iter()
            .filter(|w| w.remaining.is_some() && w.reset_after.is_some())
            .min_by_key(|w| w.remaining)?;
        Some(ServerAllowance { at: seen.at, remaining: window.remaining?, reset_after: window.reset_after? })
    }

    fn key_of(&self, grant: Option<&Grant>) -> GrantKey {
        use std::hash::BuildHasher;
        grant.map(|g| self.hasher.hash_one(g.access_token.expose()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<AllowanceKey, ObservedAllowance>> {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The shared HTTP client: cheap to clone, every clone shares the connection pool and the allowance book.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    allowances: Arc<AllowanceBook>,
}

impl HttpClient {
    /// Builds the client (rustls with the system's roots, HTTP/1.1 and HTTP/2, no redirects: a broker
    /// API that redirects is misconfigured, and a redirect must not carry an authorisation header away).
    pub fn new(settings: HttpSettings) -> Result<HttpClient, AdapterError> {
        if settings.max_response_bytes == 0 {
            return Err(AdapterError::Setting { name: "max_response_bytes", problem: "must be more than zero".into() });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(settings.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AdapterError::Client { detail: root_cause(&e) })?;
        Ok(HttpClient { client, settings, allowances: Arc::new(AllowanceBook::default()) })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The latest remaining allowances, by broker and endpoint class.
    pub fn allowances(&self) -> &AllowanceBook {
        &self.allowances
    }

    /// A request builder on the shared client.
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends one request and reads its answer (at most `max_response_bytes`), whatever its status.
    pub async fn exchange(
        &self,
        now: UnixMs,
        endpoint: &Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<RawResponse, BrokerError> {
        tracing::debug!(broker = endpoint.broker, method = %endpoint.method, path = %endpoint.path, "request");
        let mut response = request.send().await.map_err(|e| self.transport_error(endpoint, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let max = self.settings.max_response_bytes;
        if let Some(length) = response.content_length()
            && length > max as u64
        {
            return Err(too_large(endpoint, status, WireError::TooLarge { size: length, max: max as u64 }));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        let size = (body.len() + chunk.len()) as u64;
                        return Err(too_large(endpoint, status, WireError::TooLarge { size, max: max as u64 }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let mut error = self.transport_error(endpoint, &e);
                    error.status = Some(status);
                    error.delivery = if is_success(status) { Delivery::Unknown } else { Delivery::Answered };
                    return Err(error);
                }
            }
        }
        tracing::debug!(broker = endpoint.broker, method = %endpoint.method, path = %endpoint.path, status, bytes = body.len(), "response");
        let allowance = RateAllowance::from_header_map(&headers, now);
        self.allowances.record(endpoint.broker, endpoint.class.unwrap_or("other"), None, now, allowance);
        Ok(RawResponse { status, headers, body })
    }

    fn transport_error(&self, endpoint: &Endpoint, e: &reqwest::Error) -> BrokerError {
        let cause = root_cause(e);
        if e.is_connect() {
            BrokerError::not_sent(format!("{endpoint}: could not connect ({cause})"))
        } else if e.is_builder() {
            BrokerError::not_sent(format!("{endpoint}: the request could not be built ({cause})"))
        } else if e.is_timeout() {
            BrokerError::no_answer(format!(
                "{endpoint}: no answer within the request timeout ({})",
                format_duration(self.settings.request_timeout)
            ))
        } else {
            BrokerError::no_answer(format!("{endpoint}: the connection failed after the request was sent ({cause})"))
        }
    }

    /// Parses a response body as JSON within this client's size limit.
    pub fn parse_json(&self, endpoint: &Endpoint, raw: &RawResponse) -> Result<serde_json::Value, BrokerError> {
        json::parse(&raw.body, self.settings.max_response_bytes).map_err(|e| wire_error(endpoint, raw.status, e))
    }
}

/// The innermost cause of an error, as text. The outermost `reqwest::Error` is skipped: its text
/// carries the URL, whose query may hold a secret.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e.source();
    let mut last = None;
    while let Some(source) = current {
        last = Some(source);
        current = source.source();
    }
    last.map_or_else(|| "no further detail".to_owned(), ToString::to_string)
}

/// Whether a status is 2xx.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// One broker endpoint as errors and logs name it: `saxo POST /token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The broker's short name.
    pub broker: &'static str,
    /// The HTTP method.
    pub method: Method,
    /// The URL's path (never the query: it may hold a secret).
    pub path: String,
    /// The endpoint class from the broker's limit table, if the request falls in one.
    pub class: Option<&'static str>,
}

impl Endpoint {
    /// The endpoint of a request to `url`, classed by `table`.
    pub fn new(broker: &'static str, method: Method, url: &Url, table: &[EndpointLimit]) -> Endpoint {
        let path = url.path().to_owned();
        let class = classify(table, Route::new(method.as_str(), &path)).map(|limit| limit.class);
        Endpoint { broker, method, path, class }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.broker, self.method, self.path)
    }
}

/// An answer as read from the wire: status, headers and the (size-limited) body.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, at most the client's `max_response_bytes`.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A response (for tests of the pure parsers).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> RawResponse {
        RawResponse { status, headers: HeaderMap::new(), body: body.into() }
    }

    /// Adds a header (for tests of the pure parsers); invalid names or values are ignored.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> RawResponse {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            self.headers.append(name, value);
        }
        self
    }

    /// How long the server asked to wait: `Retry-After`, or else — on a 429 — the reset of a
    /// rate-limit window with nothing left.
    pub fn retry_after(&self, now: UnixMs) -> Option<Duration> {
        let header = self.headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
        header.and_then(|v| retry_after(v, now)).or_else(|| {
            (self.status == 429).then(|| RateAllowance::from_header_map(&self.headers, now).exhausted_for()).flatten()
        })
    }
}

/// A [`WireError`] in a response of `status` as a [`BrokerError`] naming the endpoint. A 2xx answer that
/// cannot be read may still have been acted on, so its delivery is unknown.
pub fn wire_error(endpoint: &Endpoint, status: u16, error: WireError) -> BrokerError {
    let code = if matches!(error, WireError::TooLarge { .. }) { codes::TOO_LARGE } else { codes::MALFORMED };
    let mut out = BrokerError::http(status, format!("{endpoint}: {error}")).with_code(code);
    out.delivery = if is_success(status) { Delivery::Unknown } else { Delivery::Answered };
    out
}

fn too_large(endpoint: &Endpoint, status: u16, error: WireError) -> BrokerError {
    wire_error(endpoint, status, error)
}

/// An error answer: the status, the broker's code and text, and the wait the server asked for.
pub fn error_answer(
    endpoint: &Endpoint,
    raw: &RawResponse,
    now: UnixMs,
    code: Option<String>,
    text: Option<String>,
) -> BrokerError {
    let reason = reqwest::StatusCode::from_u16(raw.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let message = match text {
        Some(text) if !text.is_empty() => format!("{endpoint}: HTTP {} {reason}: {text}", raw.status),
        _ => format!("{endpoint}: HTTP {} {reason}", raw.status),
    };
    let mut error = BrokerError::http(raw.status, message.trim_end().to_owned());
    if let Some(code) = code {
        error = error.with_code(code);
    }
    if let Some(wait) = raw.retry_after(now) {
        error = error.with_retry_after(wait);
    }
    error
}

/// Replaces every occurrence of a secret (four characters or more) in `text` with `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret) {
            out = out.replace(secret, warden_engine::secret::REDACTED);
        }
    }
    out
}

/// The secrets of a grant, for [`scrub`].
pub(crate) fn grant_secrets(grant: &Grant) -> Vec<&str> {
    let mut secrets = vec![grant.access_token.expose()];
    secrets.extend(grant.refresh_token.as_ref().map(|s| s.expose()));
    secrets.extend(grant.extras.values().map(|s| s.expose()));
    secrets
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An `application/x-www-form-urlencoded` body.
pub fn form_urlencode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k.as_ref()), percent_encode(v.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

/// A call made through an adapter's `send`.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    /// The HTTP method.
    pub method: Method,
    /// The full URL.
    pub url: String,
    /// Headers besides the authorisation the adapter adds.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: RequestBody,
}

/// The body of an [`ApiRequest`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum RequestBody {
    /// No body.
    #[default]
    Empty,
    /// A JSON body (`Content-Type: application/json`).
    Json(serde_json::Value),
    /// A form (`Content-Type: application/x-www-form-urlencoded`).
    Form(Vec<(String, String)>),
    /// Bytes sent as they are, with their content type if they have one (a transparent proxy's body).
    Raw {
        /// The `Content-Type` header, if any.
        content_type: Option<String>,
        /// The bytes.
        bytes: bytes::Bytes,
    },
}

impl ApiRequest {
    /// A request with `method` to `url`, no headers, no body.
    pub fn new(method: Method, url: impl Into<String>) -> ApiRequest {
        ApiRequest { method, url: url.into(), headers: Vec::new(), body: RequestBody::Empty }
    }

    /// A GET.
    pub fn get(url: impl Into<String>) -> ApiRequest {
        ApiRequest::new(Method::GET, url)
    }

    /// A POST.
    pub fn post(url: impl Into<String>) -> ApiRequest {
        ApiRequest::new(Method::POST, url)
    }

    /// A PUT.
    pub fn put(url: impl Into<String>) -> ApiRequest {
        ApiRequest::new(Method::PUT, url)
    }

    /// A DELETE.
    pub fn delete(url: impl Into<String>) -> ApiRequest {
        ApiRequest::new(Method::DELETE, url)
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ApiRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body.
    #[must_use]
    pub fn json(mut self, body: serde_json::Value) -> ApiRequest {
        self.body = RequestBody::Json(body);
        self
    }

    /// Sets a form body.
    #[must_use]
    pub fn form(mut self, pairs: Vec<(String, String)>) -> ApiRequest {
        self.body = RequestBody::Form(pairs);
        self
    }
}

/// A successful answer to an [`ApiRequest`].
#[derive(Clone, Debug)]
pub struct ApiResponse {
    /// The HTTP status (2xx).
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (at most the client's `max_response_bytes`).
    pub body: Vec<u8>,
    /// What the rate-limit headers said about the remaining allowance.
    pub allowance: RateAllowance,
}

impl ApiResponse {
    /// The body as JSON (parse errors name the field and type, never a value).
    pub fn json(&self) -> Result<serde_json::Value, WireError> {
        json::parse(&self.body, usize::MAX)
    }
}

/// Reads whether an answer is an error and which: `None` for a success. Each adapter has one.
pub(crate) type ErrorReader = fn(&Endpoint, &RawResponse, UnixMs) -> Option<BrokerError>;

/// What the `send` shell needs to know of a broker's wire format.
pub(crate) struct Wire {
    /// The broker's short name.
    pub(crate) name: &'static str,
    /// Its endpoint classes.
    pub(crate) limits: &'static [EndpointLimit],
    /// Its error reader.
    pub(crate) read_error: ErrorReader,
}

impl Wire {
    /// `Broker::reported_allowance` for an adapter on `http`.
    pub(crate) fn reported_allowance(
        &self,
        http: &HttpClient,
        grant: &Grant,
        route: Route<'_>,
    ) -> Option<ServerAllowance> {
        http.allowances().reported(self.name, self.limits, grant, route)
    }
}

/// How an adapter puts a grant on a request (its `Broker::authorize`, or a variant of it).
pub(crate) type Authorize<'a> = &'a (dyn Fn(&Grant, &mut BrokerRequest) -> Result<(), BrokerError> + Sync);

/// Authorises `request` with `grant` through `authorize`, sends it, and reads the answer: the shell of
/// every adapter's `send`. An error's message has every secret of the grant scrubbed from it.
pub(crate) async fn send_authorized(
    http: &HttpClient,
    wire: &Wire,
    authorize: Authorize<'_>,
    now: UnixMs,
    grant: &Grant,
    request: ApiRequest,
) -> Result<ApiResponse, BrokerError> {
    // The caller is the program itself: the answer's body is its own to read (IBKR's tickle hands back
    // the session the grant keeps), only error messages are scrubbed.
    let answer = exchange_authorized(http, wire, authorize, now, grant, request, false).await?;
    if let Some(error) = answer.error {
        return Err(error);
    }
    let raw = answer.response;
    let allowance = RateAllowance::from_header_map(&raw.headers, now);
    Ok(ApiResponse { status: raw.status, headers: raw.headers, body: raw.body, allowance })
}

/// An answer read in raw mode: the broker's response whatever its status, and the adapter's reading of
/// it — `error` is `None` for a success, else the error the adapter's `send` would have returned.
#[derive(Clone, Debug)]
pub struct RawAnswer {
    /// Status, headers and body as the broker sent them (the grant's secrets scrubbed, see
    /// [`scrub_bytes`]).
    pub response: RawResponse,
    /// The adapter's reading: `None` for a success, else the error (its class comes from the adapter's
    /// `Broker::classify`).
    pub error: Option<BrokerError>,
}

/// The raw mode of the `send` shell, for a transparent proxy: authorises `request` with `grant`, sends
/// it, and returns the answer whatever its status with the adapter's reading of it. Only a request that
/// got no answer (never sent, timed out, connection lost, a body over the size limit) is an `Err`.
/// The grant's secrets are scrubbed from the error's message and from the answer's headers and body (an
/// endpoint that echoes the request must not hand the token to the caller).
pub(crate) async fn send_authorized_raw(
    http: &HttpClient,
    wire: &Wire,
    authorize: Authorize<'_>,
    now: UnixMs,
    grant: &Grant,
    request: ApiRequest,
) -> Result<RawAnswer, BrokerError> {
    exchange_authorized(http, wire, authorize, now, grant, request, true).await
}

/// Authorises, sends and reads one request; the grant's secrets are scrubbed from error messages, and
/// from the answer's headers and body when `scrub_answer` (raw mode: the answer goes to another program).
async fn exchange_authorized(
    http: &HttpClient,
    wire: &Wire,
    authorize: Authorize<'_>,
    now: UnixMs,
    grant: &Grant,
    request: ApiRequest,
    scrub_answer: bool,
) -> Result<RawAnswer, BrokerError> {
    let url = Url::parse(&request.url).map_err(|e| {
        BrokerError::not_sent(format!("{} {} request: the URL is not valid ({e})", wire.name, request.method))
    })?;
    let endpoint = Endpoint::new(wire.name, request.method.clone(), &url, wire.limits);
    let mut authorized =
        BrokerRequest { method: request.method.to_string(), url: request.url.clone(), headers: Vec::new() };
    authorize(grant, &mut authorized)?;
    let mut builder = http.request(request.method.clone(), url);
    for (header, value) in &request.headers {
        builder = builder.header(header.as_str(), value.as_str());
    }
    for (header, value) in &authorized.headers {
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| BrokerError::not_sent(format!("{endpoint}: the `{header}` header is not a valid value")))?;
        value.set_sensitive(true);
        builder = builder.header(header.as_str(), value);
    }
    builder = match request.body {
        RequestBody::Empty => builder,
        RequestBody::Json(body) => builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default()),
        RequestBody::Form(pairs) => builder
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_urlencode(&pairs)),
        RequestBody::Raw { content_type, bytes } => {
            let builder = match content_type {
                Some(content_type) => builder.header(reqwest::header::CONTENT_TYPE, content_type),
                None => builder,
            };
            builder.body(bytes)
        }
    };
    let secrets = grant_secrets(grant);
    let mut raw = http.exchange(now, &endpoint, builder).await.map_err(|mut error| {
        error.message = scrub(&error.message, &secrets);
        error
    })?;
    // Filed for the grant whatever the answer: a 429 says the most about what is left.
    let allowance = RateAllowance::from_header_map(&raw.headers, now);
    http.allowances.record(endpoint.broker, endpoint.class.unwrap_or("other"), Some(grant), now, allowance);
    let error = (wire.read_error)(&endpoint, &raw, now).map(|mut error| {
        error.message = scrub(&error.message, &secrets);
        error
    });
    if scrub_answer {
        scrub_response(&mut raw, &secrets);
    }
    Ok(RawAnswer { response: raw, error })
}

/// Replaces every occurrence of a secret (four bytes or more) in `bytes` with `***`; returns whether
/// anything was replaced. One pass per secret (memchr's substring search), so a clean body costs a scan.
pub fn scrub_bytes(bytes: &mut Vec<u8>, secrets: &[&str]) -> bool {
    let mut replaced = false;
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        let finder = memchr::memmem::Finder::new(secret.as_bytes());
        if finder.find(bytes).is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = 0;
        for at in finder.find_iter(bytes) {
            out.extend_from_slice(&bytes[rest..at]);
            out.extend_from_slice(warden_engine::secret::REDACTED.as_bytes());
            rest = at + secret.len();
        }
        out.extend_from_slice(&bytes[rest..]);
        *bytes = out;
        replaced = true;
    }
    replaced
}

/// Scrubs `secrets` from a response's header values and body.
fn scrub_response(raw: &mut RawResponse, secrets: &[&str]) {
    scrub_bytes(&mut raw.body, secrets);
    for value in raw.headers.values_mut() {
        let mut bytes = value.as_bytes().to_vec();
        if scrub_bytes(&mut bytes, secrets) {
            *value = HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static("***"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        let url = Url::parse("https://broker.example/api/orders?token=SECRET").unwrap();
        Endpoint::new("demo", Method::POST, &url, &[])
    }

    #[test]
    fn endpoints_name_the_path_never_the_query() {
        assert_eq!(endpoint().to_string(), "demo POST /api/orders");
    }

    #[test]
    fn error_answers_carry_status_code_text_and_wait() {
        let now = UnixMs::from_millis(0);
        let raw = RawResponse::new(429, "").with_header("Retry-After", "30");
        let e = error_answer(&endpoint(), &raw, now, Some("throttled".into()), Some("slow down".into()));
        assert_eq!(e.message, "demo POST /api/orders: HTTP 429 Too Many Requests: slow down");
        assert_eq!((e.status, e.code.as_deref()), (Some(429), Some("throttled")));
        assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
        let raw = RawResponse::new(429, "")
            .with_header("X-RateLimit-Session-Remaining", "0")
            .with_header("X-RateLimit-Session-Reset", "7");
        assert_eq!(raw.retry_after(now), Some(Duration::from_secs(7)), "from the exhausted window");
        let raw = RawResponse::new(503, "");
        assert_eq!(
            error_answer(&endpoint(), &raw, now, None, None).message,
            "demo POST /api/orders: HTTP 503 Service Unavailable"
        );
    }

    #[test]
    fn unreadable_successes_have_unknown_delivery() {
        let e = wire_error(&endpoint(), 200, WireError::Empty);
        assert_eq!((e.delivery, e.code.as_deref()), (Delivery::Unknown, Some(codes::MALFORMED)));
        let e = wire_error(&endpoint(), 400, WireError::TooLarge { size: 11, max: 10 });
        assert_eq!((e.delivery, e.code.as_deref()), (Delivery::Answered, Some(codes::TOO_LARGE)));
    }

    #[test]
    fn encoding_and_scrubbing() {
        assert_eq!(percent_encode("a b/c~d=é"), "a%20b%2Fc~d%3D%C3%A9");
        assert_eq!(
            form_urlencode(&[("grant_type", "refresh_token"), ("x", "a&b")]),
            "grant_type=refresh_token&x=a%26b"
        );
        assert_eq!(
            scrub("token abcd1234 leaked, abc", &["abcd1234", "abc"]),
            "token *** leaked, abc",
            "short ones stay"
        );
        let mut body = b"{\"echo\":\"Bearer tok-12345\",\"again\":\"tok-12345\"}".to_vec();
        assert!(scrub_bytes(&mut body, &["tok-12345", "abc"]));
        assert_eq!(body, b"{\"echo\":\"Bearer ***\",\"again\":\"***\"}");
        assert!(!scrub_bytes(&mut body, &["absent-secret"]), "a clean body is left alone");
    }
}
