//! What every mock shares: the server's counters, the order book, judging a wire call on the model
//! (with the model's latency), parsing input by hand (no extractor that can reject in its own words),
//! JSON answers, and the control routes under `/__mock/`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use warden_engine::{BrokerError, UnixMs};

use super::{MAX_HOLD, MockStats, Shared};
use crate::model::{CallKind, KindId, ModelRequest, Trip};

/// The server's own counters, as [`MockStats::server`] shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MockCounters {
    /// HTTP requests served (every route, the control routes included).
    pub http_requests: u64,
    /// Requests refused for malformed input (a body that is not the form or JSON the route takes, a
    /// missing field): 400, never a panic.
    pub bad_requests: u64,
    /// Requests refused at the wire before the model saw them: a bad signature, an unknown session id,
    /// a wrong client secret on a refresh.
    pub auth_failures: u64,
    /// Streams opened (WebSocket handshakes accepted).
    pub streams_opened: u64,
    /// Stream handshakes refused (a dead or unknown token: Kite's 403, 401 elsewhere).
    pub streams_refused: u64,
    /// Streams the mock closed because their token died.
    pub streams_closed_token_died: u64,
    /// Stream handshakes, authentications and re-authorisations presented with a token the model issued
    /// and no longer accepts (expired, invalidated, logged out, superseded): a client that came back
    /// with a dead grant. Also counted in `streams_refused` (or `auth_failures` for a re-authorisation).
    pub stream_dead_tokens: u64,
    /// Messages pushed on streams (ticks and heartbeats).
    pub stream_messages: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) http_requests: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) streams_opened: AtomicU64,
    pub(crate) streams_refused: AtomicU64,
    pub(crate) streams_closed_token_died: AtomicU64,
    pub(crate) stream_dead_tokens: AtomicU64,
    pub(crate) stream_messages: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MockCounters {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MockCounters {
            http_requests: read(&self.http_requests),
            bad_requests: read(&self.bad_requests),
            auth_failures: read(&self.auth_failures),
            streams_opened: read(&self.streams_opened),
            streams_refused: read(&self.streams_refused),
            streams_closed_token_died: read(&self.streams_closed_token_died),
            stream_dead_tokens: read(&self.stream_dead_tokens),
            stream_messages: read(&self.stream_messages),
        }
    }
}

/// The counters of a mock.
pub(crate) fn stats(shared: &Shared) -> MockStats {
    MockStats {
        broker: shared.model.spec().kind.name(),
        model: shared.model.stats(),
        server: shared.counters.snapshot(),
    }
}

/// The most orders the order book keeps (older ones are forgotten).
pub(crate) const ORDERS_KEPT: usize = 1_000;

/// An order the mock executed, for the order-book routes.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OrderRecord {
    pub(crate) order_id: String,
    pub(crate) client_order_id: Option<String>,
    pub(crate) instrument: String,
    pub(crate) side: String,
    pub(crate) quantity: String,
    /// When the broker executed it (wire time, milliseconds).
    pub(crate) at_ms: i64,
}

/// The executed orders, newest last (at most [`ORDERS_KEPT`]).
#[derive(Debug, Default)]
pub(crate) struct OrderBook {
    next: AtomicU64,
    kept: Mutex<VecDeque<OrderRecord>>,
}

impl OrderBook {
    /// Records an executed order and returns its id.
    pub(crate) fn record(&self, mut order: OrderRecord) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        order.order_id = format!("{}{n:07}", 2_600_000);
        let id = order.order_id.clone();
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() >= ORDERS_KEPT {
            kept.pop_front();
        }
        kept.push_back(order);
        id
    }

    /// The kept orders, oldest first.
    pub(crate) fn all(&self) -> Vec<OrderRecord> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }
}

/// An order's identity for duplicate detection: its client order id if it has one, else its content
/// (the fields, sorted). Two orders with the same identity executed twice are a duplicate.
pub(crate) fn order_identity(client_order_id: Option<&str>, fields: &[(String, String)]) -> u64 {
    match client_order_id.filter(|c| !c.is_empty()) {
        Some(id) => fnv1a(format!("id:{id}").as_bytes()),
        None => {
            let mut sorted: Vec<&(String, String)> = fields.iter().collect();
            sorted.sort();
            let text: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
            fnv1a(format!("content:{}", text.join("&")).as_bytes())
        }
    }
}

/// FNV-1a, 64 bits: stable across runs and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The flat fields of a JSON object (nested values as their JSON text), for [`order_identity`].
pub(crate) fn json_fields(value: &serde_json::Value) -> Vec<(String, String)> {
    match value.as_object() {
        Some(map) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
        }
        None => vec![(String::new(), value.to_string())],
    }
}

/// The round trip of a call of `kind` arriving now: the model's sampled latency, or none.
fn trip(shared: &Shared, kind: CallKind) -> Trip {
    let sent = shared.now();
    if shared.latency { shared.model.sample_trip(kind, sent) } else { Trip::new(sent, Duration::ZERO) }
}

/// Judges a call of `kind` on the model as the in-process model does: waits the uplink, lets `judge`
/// decide at the arrival instant, and waits the rest of the round trip (or an outage's hang), at most
/// [`MAX_HOLD`] in all.
pub(crate) async fn judge<T>(shared: &Shared, kind: CallKind, judge: impl FnOnce(Trip) -> (Duration, T)) -> T {
    let trip = trip(shared, kind);
    hold(trip.uplink()).await;
    let (wait, answer) = judge(trip);
    hold(wait.saturating_sub(trip.uplink())).await;
    answer
}

/// Waits `span` (at most [`MAX_HOLD`]); no wait at all for zero. (tokio's timer has millisecond
/// resolution: even a zero sleep waits for its next tick, which would add up to a millisecond per wait
/// to a mock without latency.)
async fn hold(span: Duration) {
    if !span.is_zero() {
        tokio::time::sleep(span.min(MAX_HOLD)).await;
    }
}

/// A workload request with `token`, judged by the model.
pub(crate) async fn judge_request(
    shared: &Shared,
    token: &str,
    kind: KindId,
    idempotent: bool,
    op_id: u64,
) -> Result<(), BrokerError> {
    let request = ModelRequest { kind, idempotent, op_id };
    judge(shared, CallKind::Request, |trip| {
        let answer = shared.model.judge_request(trip, token, &request);
        (answer.latency, answer.result)
    })
    .await
}

/// A JSON answer.
pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// An empty answer.
pub(crate) fn empty(status: u16) -> Response {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

/// Adds `Retry-After` (whole seconds, rounded up, at least 1) when the model said how long to wait.
pub(crate) fn with_retry_after(mut response: Response, retry_after: Option<Duration>) -> Response {
    if let Some(wait) = retry_after {
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// Adds a header (ignored if the value cannot be a header).
pub(crate) fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The HTTP status a model error is answered with: its own, or 504 for a call that got no answer (an
/// outage's hang: the client's timeout is usually shorter).
pub(crate) fn status_of(error: &BrokerError) -> u16 {
    error.status.unwrap_or(504)
}

/// Counts a request refused for malformed input and answers it.
pub(crate) fn bad_request(shared: &Shared, response: Response) -> Response {
    Counters::bump(&shared.counters.bad_requests);
    response
}

/// Counts a request refused at the wire (bad signature, unknown session) and answers it.
pub(crate) fn auth_failure(shared: &Shared, response: Response) -> Response {
    Counters::bump(&shared.counters.auth_failures);
    response
}

/// A header's value as text.
pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A form body (or a query string) decoded into pairs.
pub(crate) fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The query string's pairs.
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_pairs(uri.query().unwrap_or_default().as_bytes())
}

/// The value of `name` among `pairs`.
pub(crate) fn field<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A JSON body, or what is wrong with it (the position, never the content).
pub(crate) fn json_body(bytes: &[u8]) -> Result<serde_json::Value, String> {
    if bytes.is_empty() {
        return Err("the body is empty; a JSON object was expected".to_owned());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| format!("the body is not JSON (line {}, column {})", e.line(), e.column()))
}

/// Random bytes as lowercase hex (tokens the wire protocol adds: view tokens, context ids).
pub(crate) fn random_hex(bytes: usize) -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(1);
    let mut buf = vec![0u8; bytes.min(64)];
    if getrandom::fill(&mut buf).is_err() {
        // No randomness: a counter keeps the values distinct (they name a mock's test sessions; they
        // guard no real account).
        return format!("{:0width$x}", FALLBACK.fetch_add(1, Ordering::Relaxed), width = bytes.min(64) * 2);
    }
    hex::encode(buf)
}

/// `YYYY-MM-DD HH:MM:SS` in Asia/Kolkata, as Kite writes times.
pub(crate) fn kolkata_time(t: UnixMs) -> String {
    let tz = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap_or(jiff::tz::TimeZone::UTC);
    match t.to_timestamp() {
        Some(ts) => ts.to_zoned(tz).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => "1970-01-01 05:30:00".to_owned(),
    }
}

/// A price that moves a little with time (ticks and quotes): `base` ± 1 %.
pub(crate) fn price_at(base: f64, t: UnixMs, instrument: u64) -> f64 {
    let phase = (t.as_millis() / 1000) as f64 / 7.0 + instrument as f64;
    (base * (1.0 + 0.01 * phase.sin()) * 100.0).round() / 100.0
}

/// The control routes every mock serves.
pub(crate) fn control_router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__mock/stats", get(stats_route))
        .route("/__mock/invalidate", post(invalidate_route))
        .route("/__mock/login-code", get(login_code_route))
        .route("/__mock/orders", get(orders_route))
        .route("/__mock/health", get(health_route))
}

async fn stats_route(State(shared): State<Arc<Shared>>) -> Response {
    Counters::bump(&shared.counters.http_requests);
    json(200, &serde_json::to_value(stats(&shared)).unwrap_or_default())
}

async fn invalidate_route(State(shared): State<Arc<Shared>>) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let ended = shared.model.invalidate(shared.now());
    json(200, &serde_json::json!({ "ended": ended }))
}

async fn login_code_route(State(shared): State<Arc<Shared>>) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let code = shared.model.issue_login_code(shared.now());
    json(200, &serde_json::json!({ "code": code }))
}

async fn orders_route(State(shared): State<Arc<Shared>>) -> Response {
    Counters::bump(&shared.counters.http_requests);
    json(200, &serde_json::to_value(shared.orders.all()).unwrap_or_default())
}

async fn health_route(State(shared): State<Arc<Shared>>) -> Response {
    Counters::bump(&shared.counters.http_requests);
    json(200, &serde_json::json!({ "status": "ok", "broker": shared.model.spec().kind.name() }))
}

/// What every mock answers for a route it does not have.
pub(crate) async fn not_found(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let body = serde_json::json!({
        "status": "error",
        "error_type": "GeneralException",
        "error": "not found",
        "message": format!("the mock {} broker has no route {}", shared.model.spec().kind.name(), uri.path()),
    });
    json(404, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_identity_by_client_id_or_content() {
        let fields = vec![("qty".to_owned(), "1".to_owned()), ("sym".to_owned(), "INFY".to_owned())];
        let reordered = vec![("sym".to_owned(), "INFY".to_owned()), ("qty".to_owned(), "1".to_owned())];
        assert_eq!(order_identity(None, &fields), order_identity(None, &reordered), "content, in any order");
        assert_ne!(order_identity(Some("c1"), &fields), order_identity(Some("c2"), &fields));
        assert_eq!(order_identity(Some("c1"), &fields), order_identity(Some("c1"), &[]));
        assert_eq!(order_identity(Some(""), &fields), order_identity(None, &fields), "an empty id is no id");
    }

    #[test]
    fn bad_json_names_the_place_not_the_content() {
        let e = json_body(b"{\"secret\": 12").unwrap_err();
        assert!(e.starts_with("the body is not JSON (line 1"), "{e}");
        assert!(!e.contains("secret"));
        assert!(json_body(b"").is_err());
    }
}
