//! The Saxo OpenAPI mock: the model of `saxo` in Saxo's wire format — its OAuth 2.0 authorization
//! server and the OpenAPI on one port — with the streaming WebSocket.
//!
//! - `GET /authorize?response_type=code&client_id=…&redirect_uri=…&state=…`: a person signs in: a redirect
//!   to the redirect URI with `code` (the model's login code, single-use) and `state`.
//! - `POST /token` (the application by HTTP Basic or `client_id`/`client_secret` in the form):
//!   `grant_type=authorization_code` is a login on the model that needs the code
//!   ([`LoginAttempt::code_required`]); `grant_type=refresh_token` a refresh on the model (the pair
//!   rotates). Answers `{access_token, token_type, expires_in, refresh_token, refresh_token_expires_in}`
//!   (201); errors in OAuth's form: `invalid_grant` (400), `invalid_client` (401), 429 with
//!   `Retry-After`.
//! - OpenAPI routes with `Authorization: Bearer …`: `GET /openapi/port/v1/users/me`,
//!   `/openapi/port/v1/balances/me`, `/openapi/port/v1/positions/me` (kind `positions`),
//!   `/openapi/port/v1/orders/me` (`orders`), `GET /openapi/trade/v1/infoprices` (`quote`),
//!   `POST /openapi/trade/v2/orders` (`order`, client order id `ExternalReference`), `PATCH`/`DELETE
//!   /openapi/trade/v2/orders/{…}` (`order`), `POST /openapi/trade/v1/infoprices/subscriptions` (a
//!   subscription on a streaming context), `DELETE /openapi/trade/v1/infoprices/subscriptions/{…}`.
//!   A dead token: a bare 401. A 429 carries `Retry-After` and `X-RateLimit-Session-Remaining: 0` /
//!   `-Reset` (`X-RateLimit-SessionOrders-*` for orders). Other errors `{"ErrorCode":…,"Message":…}`.
//! - Streaming: `GET /openapi/streamingws/connect?contextId=…` with `Authorization: Bearer …` (or the
//!   query `authorization=Bearer …`; 401 at the handshake for a dead token); binary frames in Saxo's
//!   format (message id u64 LE, 2 reserved bytes, reference id length and ASCII, payload format 0 =
//!   JSON, payload length u32 LE, payload): a delta per subscription each tick, `_heartbeat` control
//!   messages, and on the token's death a `_disconnect` control message and a close — unless
//!   `PUT /openapi/streamingws/authorize?contextId=…` handed in a newer token first (202).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use base64::Engine as _;
use serde_json::json;
use warden_engine::BrokerError;

use super::common::{
    self, Counters, OrderRecord, auth_failure, bad_request, field, form_pairs, header_str, json, json_body,
    json_fields, order_identity, query_pairs, status_of, with_header, with_retry_after,
};
use super::stream::{self, Timers};
use super::{Account, BrokerState, SaxoAccount, Shared};
use crate::model::{
    CODE_INVALID_CREDENTIALS, CODE_INVALID_GRANT, CODE_LOGIN_CODE_INVALID, CODE_NEEDS_PERSON, CODE_RESPONSE_LOST,
    CallKind, LoginAttempt,
};

/// The most streaming contexts the mock keeps (the oldest is forgotten).
pub const CONTEXTS_KEPT: usize = 64;

/// The Saxo mock's wire state: the streaming contexts.
#[derive(Debug, Default)]
pub(crate) struct SaxoState {
    contexts: Mutex<VecDeque<Context>>,
}

#[derive(Debug)]
struct Context {
    id: String,
    /// The token the context is authorised with (the connect's, then each `authorize`'s).
    token: String,
    /// Subscriptions: reference id → instrument (Uic).
    subscriptions: BTreeMap<String, u64>,
}

impl SaxoState {
    fn with_context<T>(&self, id: &str, f: impl FnOnce(&mut Context) -> T) -> Option<T> {
        let mut contexts = self.contexts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        contexts.iter_mut().find(|c| c.id == id).map(f)
    }

    /// The context `id`, authorised with `token`: a new one, or (`reauthorise`: a stream connecting) an
    /// existing one that takes `token`. A subscription names a context without re-authorising its stream:
    /// only a connect and `PUT …/authorize` do that.
    fn open(&self, id: &str, token: &str, reauthorise: bool) {
        let mut contexts = self.contexts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match contexts.iter_mut().find(|c| c.id == id) {
            Some(context) if reauthorise => context.token = token.to_owned(),
            Some(_) => {}
            None => {
                if contexts.len() >= CONTEXTS_KEPT {
                    contexts.pop_front();
                }
                contexts.push_back(Context {
                    id: id.to_owned(),
                    token: token.to_owned(),
                    subscriptions: BTreeMap::new(),
                });
            }
        }
    }
}

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/openapi/port/v1/users/me", get(api))
        .route("/openapi/port/v1/balances/me", get(api))
        .route("/openapi/port/v1/positions/me", get(api))
        .route("/openapi/port/v1/orders/me", get(api))
        .route("/openapi/trade/v1/infoprices", get(api))
        .route("/openapi/trade/v2/orders", post(api))
        .route("/openapi/trade/v2/orders/{*rest}", delete(api).patch(api))
        .route("/openapi/trade/v1/infoprices/subscriptions", post(api))
        .route("/openapi/trade/v1/infoprices/subscriptions/{*rest}", delete(api))
        .route("/openapi/streamingws/connect", get(connect))
        .route("/openapi/streamingws/authorize", put(reauthorize))
}

fn parts(shared: &Shared) -> Option<(&SaxoAccount, &SaxoState)> {
    match (&shared.account, &shared.broker_state) {
        (Account::Saxo(a), BrokerState::Saxo(s)) => Some((a, s)),
        _ => None,
    }
}

fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    json(status, &json!({"error": code, "error_description": description}))
}

fn saxo_error(status: u16, code: &str, message: &str) -> Response {
    json(status, &json!({"ErrorCode": code, "Message": message}))
}

/// A model error at the token endpoint, in OAuth's words.
fn token_error(e: &BrokerError) -> Response {
    let status = status_of(e);
    let response = match (e.code.as_deref(), status) {
        (Some(CODE_INVALID_GRANT | CODE_LOGIN_CODE_INVALID | CODE_NEEDS_PERSON), _) => {
            oauth_error(400, "invalid_grant", &e.message)
        }
        (Some(CODE_INVALID_CREDENTIALS), _) => oauth_error(401, "invalid_client", &e.message),
        (_, 429) => oauth_error(429, "rate_limited", "too many requests"),
        (_, s) if s >= 500 => oauth_error(s, "temporarily_unavailable", &e.message),
        (_, s) => oauth_error(s, "access_denied", &e.message),
    };
    with_retry_after(response, e.retry_after)
}

/// A model error on the OpenAPI, in Saxo's words.
fn api_error(e: &BrokerError, order: bool) -> Response {
    match status_of(e) {
        401 => common::empty(401),
        429 => {
            let seconds = e.retry_after.map_or(1, |w| w.as_millis().div_ceil(1000).max(1)).to_string();
            let dimension = if order { "SessionOrders" } else { "Session" };
            let response = saxo_error(429, "RateLimitExceeded", "Request rate limit exceeded");
            let response = with_header(response, header_name(dimension, "Remaining"), "0");
            with_retry_after(with_header(response, header_name(dimension, "Reset"), &seconds), e.retry_after)
        }
        status => saxo_error(status, e.code.as_deref().unwrap_or("Error"), &e.message),
    }
}

fn header_name(dimension: &str, what: &str) -> &'static str {
    match (dimension, what) {
        ("SessionOrders", "Remaining") => "x-ratelimit-sessionorders-remaining",
        ("SessionOrders", _) => "x-ratelimit-sessionorders-reset",
        (_, "Remaining") => "x-ratelimit-session-remaining",
        _ => "x-ratelimit-session-reset",
    }
}

async fn authorize(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((account, _)) = parts(&shared) else { return saxo_error(500, "Error", "not a Saxo mock") };
    let query = query_pairs(&uri);
    if field(&query, "client_id") != Some(account.app_key.as_str()) {
        return bad_request(&shared, oauth_error(400, "invalid_client", "unknown client_id"));
    }
    if field(&query, "response_type") != Some("code") {
        return bad_request(&shared, oauth_error(400, "unsupported_response_type", "response_type must be code"));
    }
    let redirect = field(&query, "redirect_uri").unwrap_or(&account.redirect_uri);
    if redirect != account.redirect_uri {
        return bad_request(&shared, oauth_error(400, "invalid_request", "redirect_uri is not the application's"));
    }
    let code = shared.model.issue_login_code(shared.now());
    let mut location = format!("{redirect}{}code={code}", if redirect.contains('?') { '&' } else { '?' });
    if let Some(state) = field(&query, "state") {
        location.push_str(&format!("&state={}", form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()));
    }
    with_header(common::empty(302), "location", &location)
}

/// The client id and secret of a token request (HTTP Basic, else the form).
fn client(headers: &HeaderMap, form: &[(String, String)]) -> Option<(String, String)> {
    if let Some(basic) = header_str(headers, "authorization").and_then(|h| h.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return Some((decode(id)?, decode(secret)?));
    }
    Some((field(form, "client_id")?.to_owned(), field(form, "client_secret")?.to_owned()))
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((account, _)) = parts(&shared) else { return saxo_error(500, "Error", "not a Saxo mock") };
    let form = form_pairs(&body);
    let right_client =
        client(&headers, &form).is_some_and(|(id, secret)| id == account.app_key && secret == account.app_secret);
    let answer = match field(&form, "grant_type") {
        Some("authorization_code") => {
            let Some(code) = field(&form, "code") else {
                return bad_request(&shared, oauth_error(400, "invalid_request", "code is required"));
            };
            if field(&form, "redirect_uri").is_some_and(|r| r != account.redirect_uri) {
                return bad_request(&shared, oauth_error(400, "invalid_grant", "redirect_uri does not match"));
            }
            let attempt = LoginAttempt {
                second_factor: Some(code),
                wrong_credentials: !right_client,
                code_required: true,
                ..LoginAttempt::default()
            };
            common::judge(&shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await
        }
        Some("refresh_token") => {
            let Some(refresh) = field(&form, "refresh_token") else {
                return bad_request(&shared, oauth_error(400, "invalid_request", "refresh_token is required"));
            };
            if !right_client {
                return auth_failure(&shared, oauth_error(401, "invalid_client", "unknown client or wrong secret"));
            }
            common::judge(&shared, CallKind::Refresh, |trip| shared.model.judge_refresh(trip, refresh)).await
        }
        _ => {
            return bad_request(
                &shared,
                oauth_error(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"),
            );
        }
    };
    match answer {
        Ok(grant) => {
            let now = shared.now();
            let seconds = |t: Option<warden_engine::UnixMs>| t.map(|t| t.saturating_duration_since(now).as_secs());
            json(
                201,
                &json!({
                    "access_token": grant.access_token.expose(), "token_type": "Bearer",
                    "expires_in": seconds(grant.expires_at),
                    "refresh_token": grant.refresh_token.as_ref().map(|r| r.expose().to_owned()),
                    "refresh_token_expires_in": seconds(grant.refresh_expires_at), "base_uri": null,
                }),
            )
        }
        Err(e) => token_error(&e),
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    header_str(headers, "authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default()
}

async fn api(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((_, state)) = parts(&shared) else { return saxo_error(500, "Error", "not a Saxo mock") };
    let path = uri.path().to_owned();
    let token = bearer(&headers).to_owned();
    let subscription = path.starts_with("/openapi/trade/v1/infoprices/subscriptions");
    let order = path.starts_with("/openapi/trade/v2/orders");
    let mut request = serde_json::Value::Null;
    if method == Method::POST || method == Method::PATCH {
        request = match json_body(&body) {
            Ok(value) if value.is_object() => value,
            Ok(_) => return bad_request(&shared, saxo_error(400, "InvalidRequest", "the body must be a JSON object")),
            Err(problem) => return bad_request(&shared, saxo_error(400, "InvalidRequest", &problem)),
        };
    }
    if order && method == Method::POST {
        for required in ["Uic", "AssetType", "BuySell", "Amount", "OrderType"] {
            if request.get(required).is_none() {
                return bad_request(&shared, saxo_error(400, "InvalidRequest", &format!("{required} is required")));
            }
        }
    }
    if subscription && method == Method::POST {
        let text = |k: &str| request.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        if text("ContextId").is_none() || text("ReferenceId").is_none() {
            return bad_request(&shared, saxo_error(400, "InvalidRequest", "ContextId and ReferenceId are required"));
        }
    }
    let (kind, idempotent) = match () {
        () if order => ("order", false),
        () if path.starts_with("/openapi/trade/v1/infoprices") => ("quote", true),
        () if path.ends_with("/orders/me") => ("orders", true),
        () => ("positions", true),
    };
    let client_order_id = request.get("ExternalReference").and_then(|v| v.as_str()).map(str::to_owned);
    let mut fields = json_fields(&request);
    fields.push(("path".to_owned(), format!("{method} {path}")));
    let op_id = if idempotent { 0 } else { order_identity(client_order_id.as_deref(), &fields) };
    let result = common::judge_request(&shared, &token, shared.kind_of(kind, idempotent), idempotent, op_id).await;
    let mut order_id = None;
    if order && method == Method::POST {
        let lost = result.as_ref().is_err_and(|e| e.code.as_deref() == Some(CODE_RESPONSE_LOST));
        if result.is_ok() || lost {
            let get = |k: &str| {
                request.get(k).map_or_else(String::new, |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            };
            order_id = Some(shared.orders.record(OrderRecord {
                order_id: String::new(),
                client_order_id: client_order_id.clone(),
                instrument: format!("{}/{}", get("AssetType"), get("Uic")),
                side: get("BuySell"),
                quantity: get("Amount"),
                at_ms: shared.to_wire(shared.now()).as_millis(),
            }));
        }
    }
    if let Err(e) = result {
        return api_error(&e, order);
    }
    let now = shared.to_wire(shared.now());
    match (&method, kind) {
        (&Method::POST, "order") => json(200, &json!({"OrderId": order_id.unwrap_or_default()})),
        (_, "order") => json(200, &json!({"OrderId": path.rsplit('/').next().unwrap_or_default()})),
        (&Method::POST, _) if subscription => {
            let context = request["ContextId"].as_str().unwrap_or_default().to_owned();
            let reference = request["ReferenceId"].as_str().unwrap_or_default().to_owned();
            let uic = request["Arguments"]["Uic"].as_u64().unwrap_or(21);
            state.open(&context, &token, false);
            state.with_context(&context, |c| {
                if c.subscriptions.len() < stream::MAX_SUBSCRIPTIONS {
                    c.subscriptions.insert(reference.clone(), uic);
                }
            });
            json(
                201,
                &json!({
                    "ContextId": context, "ReferenceId": reference, "State": "Active", "InactivityTimeout": 120,
                    "RefreshRate": 1000, "Format": "application/json", "Snapshot": quote(uic, now),
                }),
            )
        }
        (&Method::DELETE, _) if subscription => {
            let mut segments = path.trim_start_matches("/openapi/trade/v1/infoprices/subscriptions/").split('/');
            if let (Some(context), reference) = (segments.next(), segments.next()) {
                state.with_context(context, |c| match reference {
                    Some(r) => {
                        c.subscriptions.remove(r);
                    }
                    None => c.subscriptions.clear(),
                });
            }
            common::empty(202)
        }
        (_, "quote") => {
            json(200, &quote(field(&query_pairs(&uri), "Uic").and_then(|u| u.parse().ok()).unwrap_or(21), now))
        }
        (_, "orders") => json(
            200,
            &json!({"Data": shared.orders.all().iter().map(|o| json!({
            "OrderId": o.order_id, "ExternalReference": o.client_order_id, "BuySell": o.side, "Amount": o.quantity,
            "Status": "Filled",
        })).collect::<Vec<_>>()}),
        ),
        _ if path.ends_with("/balances/me") => {
            json(200, &json!({"CashBalance": 100000.0, "Currency": "EUR", "TotalValue": 100000.0}))
        }
        _ if path.ends_with("/users/me") => {
            json(200, &json!({"ClientKey": "mock-client-key", "UserId": "mock-user", "Name": "Mock User"}))
        }
        _ => json(200, &json!({"Data": [], "__count": 0})),
    }
}

fn quote(uic: u64, now: warden_engine::UnixMs) -> serde_json::Value {
    let mid = common::price_at(1.1, now, uic);
    json!({"Uic": uic, "AssetType": "FxSpot", "LastUpdated": now.to_string(),
        "Quote": {"Ask": mid + 0.0001, "Bid": mid - 0.0001, "Mid": mid, "PriceTypeAsk": "Tradable", "PriceTypeBid": "Tradable"}})
}

/// The token of a streaming request: `Authorization: Bearer …`, or the query's `authorization`.
fn stream_token(headers: &HeaderMap, query: &[(String, String)]) -> String {
    let from_header = bearer(headers);
    if !from_header.is_empty() {
        return from_header.to_owned();
    }
    field(query, "authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default().to_owned()
}

async fn reauthorize(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((_, state)) = parts(&shared) else { return saxo_error(500, "Error", "not a Saxo mock") };
    let query = query_pairs(&uri);
    let Some(context) = field(&query, "contextId") else {
        return bad_request(&shared, saxo_error(400, "InvalidRequest", "contextId is required"));
    };
    let token = stream_token(&headers, &query);
    if !stream::token_alive(&shared, &token) {
        stream::dead_token(&shared, &token);
        return auth_failure(&shared, common::empty(401));
    }
    match state.with_context(context, |c| c.token = token) {
        Some(()) => common::empty(202),
        None => saxo_error(404, "NotFound", "no streaming context with this contextId"),
    }
}

async fn connect(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((_, state)) = parts(&shared) else { return saxo_error(500, "Error", "not a Saxo mock") };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return bad_request(&shared, saxo_error(400, "InvalidRequest", &rejection.body_text())),
    };
    let query = query_pairs(&uri);
    let Some(context) = field(&query, "contextId").filter(|c| !c.is_empty() && c.len() <= 50).map(str::to_owned) else {
        return bad_request(
            &shared,
            saxo_error(400, "InvalidRequest", "contextId is required (at most 50 characters)"),
        );
    };
    let token = stream_token(&headers, &query);
    if !stream::admit(&shared, &token) {
        return common::empty(401);
    }
    state.open(&context, &token, true);
    Counters::bump(&shared.counters.streams_opened);
    stream::limited(upgrade).on_upgrade(move |socket| run_stream(shared, socket, context))
}

/// One frame of Saxo's streaming format.
pub(crate) fn frame(message_id: u64, reference: &str, payload: &serde_json::Value) -> Vec<u8> {
    let payload = payload.to_string().into_bytes();
    let reference = &reference.as_bytes()[..reference.len().min(255)];
    let mut out = Vec::with_capacity(16 + reference.len() + payload.len());
    out.extend_from_slice(&message_id.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.push(reference.len() as u8);
    out.extend_from_slice(reference);
    out.push(0);
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

async fn run_stream(shared: Arc<Shared>, mut socket: WebSocket, context: String) {
    let Some((_, state)) = parts(&shared) else { return };
    let mut timers = Timers::new(&shared, std::time::Duration::from_secs(10));
    let mut stopping = shared.stopping.clone();
    let mut message_id = 0u64;
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = timers.tick.tick() => {
                let now = shared.to_wire(shared.now());
                let subscriptions = state.with_context(&context, |c| c.subscriptions.clone()).unwrap_or_default();
                for (reference, uic) in subscriptions {
                    message_id += 1;
                    let frame = frame(message_id, &reference, &quote(uic, now));
                    if socket.send(Message::Binary(frame.into())).await.is_err() { return; }
                    Counters::bump(&shared.counters.stream_messages);
                }
            }
            _ = timers.heartbeat.tick() => {
                message_id += 1;
                let references: Vec<String> = state.with_context(&context, |c| c.subscriptions.keys().cloned().collect()).unwrap_or_default();
                let beats: Vec<serde_json::Value> = references.iter().map(|r| json!({"OriginatingReferenceId": r, "Reason": "NoNewData"})).collect();
                let payload = json!([{"ReferenceId": "_heartbeat", "Heartbeats": beats}]);
                if socket.send(Message::Binary(frame(message_id, "_heartbeat", &payload).into())).await.is_err() { return; }
                Counters::bump(&shared.counters.stream_messages);
            }
            _ = timers.check.tick() => {
                let token = state.with_context(&context, |c| c.token.clone()).unwrap_or_default();
                if !stream::token_alive(&shared, &token) {
                    Counters::bump(&shared.counters.streams_closed_token_died);
                    message_id += 1;
                    let payload = json!([{"ReferenceId": "_disconnect"}]);
                    let _ = socket.send(Message::Binary(frame(message_id, "_disconnect", &payload).into())).await;
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "token expired".into() }))).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(timers.deadline) => return,
            () = stream::stopped(&mut stopping) => return,
        }
    }
}
