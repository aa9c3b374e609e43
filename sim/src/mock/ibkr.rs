//! The Interactive Brokers Web API mock (first-party OAuth 1.0a): the model of `ibkr` behind IBKR's
//! signatures, checked for real.
//!
//! - `POST /v1/api/oauth/live_session_token`: the RSA-SHA256 signature (PKCS#1 v1.5, the account's
//!   public signature key) over the prepend (the decrypted access-token secret, in hex) and the base
//!   string is verified; so are the realm, consumer key, access token and timestamp (within
//!   [`TIMESTAMP_SKEW_S`] of the wire's time). A failure is a 401 and a login with wrong credentials on
//!   the model. Then the Diffie-Hellman exchange: `B = g^b mod p`, `K = A^b mod p`, the live session
//!   token `base64(HMAC-SHA1(K as Java bytes, prepend))`, answered with its `live_session_token_signature`
//!   (hex HMAC-SHA1 of the consumer key) and `live_session_token_expiration`. The mock keeps the last
//!   [`SESSIONS_KEPT`] tokens.
//! - Every later call is signed HMAC-SHA256 under a live session token: the mock finds the token whose
//!   signature matches (401 `{"error":"invalid signature"}` if none). Base strings are computed from the
//!   URL the mock serves (`http://127.0.0.1:PORT/v1/api/…`, or the `sign_as` origin such as
//!   `https://api.ibkr.com`), never from the `Host` header.
//! - `POST /v1/api/iserver/auth/ssodh/init` `{"publish":true,"compete":…}`: the login on the model
//!   (`compete` is its take-over); a competing hold answers `{"authenticated":false,"competing":true}`.
//! - `POST /v1/api/tickle`: the keep-alive on the model, answered with `session` (the WebSocket cookie),
//!   `ssoExpires` and `iserver.authStatus` (`authenticated: false` when the model says unauthenticated,
//!   `competing: true` when another login took the account). `POST /v1/api/logout`: logout.
//!   `GET|POST /v1/api/iserver/auth/status`: the status without a call on the model.
//! - Requests: `GET /v1/api/iserver/accounts` (kind `accounts`), `GET /v1/api/iserver/marketdata/snapshot`
//!   (`quote`), `POST /v1/api/iserver/account/{acct}/orders` (`order`, client order id `cOID`),
//!   `DELETE /v1/api/iserver/account/{acct}/order/{id}` (`order`), `GET /v1/api/iserver/account/orders`
//!   (`orders`), `GET /v1/api/portfolio/accounts`, `GET /v1/api/portfolio/{acct}/positions/{page}`
//!   (`positions`). A token known but not initialised: 400 `{"error":"Init session first"}`; a dead
//!   one: 401 `{"error":"no session"}`; 429 with `Retry-After` (the model's penalty box).
//! - The WebSocket, `GET /v1/api/ws` with the cookie `api=<session>` (401 for a dead session): a `system`
//!   and an `sts` message on open; `tic` is a keep-alive on the model; `smd+CONID+{"fields":[…]}`
//!   subscribes, `umd+CONID+{}` unsubscribes; ticks `{"topic":"smd+CONID","conid":…,"31":…}`; a
//!   `{"topic":"system","hb":…}` heartbeat every 10 s; a client silent for `client_silence` (60 s) is
//!   closed; when the token dies, `{"topic":"sts","args":{"authenticated":false}}` and a close.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{any, get};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use num_bigint::BigUint;
use serde_json::json;
use sha1::Sha1;
use warden_adapters::broker::ibkr::oauth;
use warden_engine::{BrokerError, KeepaliveStatus, Secret};

use super::common::{
    self, Counters, OrderRecord, auth_failure, bad_request, header_str, json, json_body, json_fields, order_identity,
    query_pairs, status_of, with_retry_after,
};
use super::stream::{self, Timers};
use super::{Account, BrokerState, IbkrAccount, Shared};
use crate::model::{CODE_COMPETING, CODE_IBKR_NO_SESSION, CODE_RESPONSE_LOST, CallKind, LoginAttempt};

/// The most live session tokens the mock remembers (older ones are refused as unknown).
pub const SESSIONS_KEPT: usize = 16;

/// How far an `oauth_timestamp` may be from the wire's time.
pub const TIMESTAMP_SKEW_S: i64 = 600;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The IBKR mock's wire state: live session tokens and the model sessions they opened.
#[derive(Debug, Default)]
pub(crate) struct IbkrState {
    sessions: Mutex<VecDeque<LstSession>>,
}

#[derive(Clone, Debug)]
struct LstSession {
    /// The live session token (base64).
    lst: String,
    /// The model's token, once `ssodh/init` opened the brokerage session.
    model_token: Option<String>,
    /// The WebSocket cookie of that session.
    ws_cookie: Option<String>,
}

impl IbkrState {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LstSession>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, lst: String) {
        let mut sessions = self.lock();
        if sessions.len() >= SESSIONS_KEPT {
            sessions.pop_front();
        }
        sessions.push_back(LstSession { lst, model_token: None, ws_cookie: None });
    }

    fn snapshot(&self) -> Vec<LstSession> {
        self.lock().iter().cloned().collect()
    }

    fn update(&self, lst: &str, f: impl FnOnce(&mut LstSession)) {
        if let Some(session) = self.lock().iter_mut().find(|s| s.lst == lst) {
            f(session);
        }
    }

    fn by_cookie(&self, cookie: &str) -> Option<LstSession> {
        self.lock().iter().find(|s| s.ws_cookie.as_deref() == Some(cookie)).cloned()
    }
}

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new().route("/v1/api/ws", get(websocket)).route("/v1/api/{*rest}", any(dispatch))
}

fn parts(shared: &Shared) -> Option<(&IbkrAccount, &IbkrState)> {
    match (&shared.account, &shared.broker_state) {
        (Account::Ibkr(a), BrokerState::Ibkr(s)) => Some((a, s)),
        _ => None,
    }
}

fn ibkr_error(status: u16, message: &str) -> Response {
    json(status, &json!({"error": message, "statusCode": status}))
}

/// A model error in IBKR's words.
fn model_error(e: &BrokerError) -> Response {
    let status = status_of(e);
    let message = match (e.code.as_deref(), status) {
        (Some(CODE_IBKR_NO_SESSION), _) => "no session".to_owned(),
        (_, 429) => "Too many requests".to_owned(),
        (_, 504) => "gateway timeout".to_owned(),
        _ => e.message.clone(),
    };
    with_retry_after(ibkr_error(status, &message), e.retry_after)
}

/// Percent-decoding without `+` as a space (OAuth header values).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(b) = std::str::from_utf8(hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters of an `OAuth realm="…", k="v", …` header, values as written.
fn header_params(header: &str) -> Option<BTreeMap<String, String>> {
    let rest = header.trim().strip_prefix("OAuth")?;
    let mut params = BTreeMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        params.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
    }
    Some(params)
}

/// What a signed request carries, checked against the account (realm, consumer, token, timestamp).
struct Signed {
    /// The parameters of the base string (OAuth's without the signature, the DH challenge, the query's).
    params: BTreeMap<String, String>,
    /// The signature, percent-decoded.
    signature: String,
    method: String,
    /// The URL of the base string.
    url: String,
}

fn signed(
    shared: &Shared,
    account: &IbkrAccount,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Signed, &'static str> {
    let header = header_str(headers, "authorization").ok_or("no OAuth Authorization header")?;
    let mut params = header_params(header).ok_or("the Authorization header is not OAuth")?;
    let realm = params.remove("realm").unwrap_or_default();
    let signature = percent_decode(&params.remove("oauth_signature").ok_or("no oauth_signature")?);
    if realm != account.realm {
        return Err("wrong realm");
    }
    if params.get("oauth_consumer_key") != Some(&account.consumer_key)
        || params.get("oauth_token") != Some(&account.access_token)
    {
        return Err("unknown consumer key or access token");
    }
    let timestamp: i64 = params.get("oauth_timestamp").and_then(|t| t.parse().ok()).ok_or("no oauth_timestamp")?;
    let wire_now_s = shared.to_wire(shared.now()).as_millis() / 1000;
    if (timestamp - wire_now_s).abs() > TIMESTAMP_SKEW_S {
        return Err("oauth_timestamp is too far from the server's time");
    }
    for (k, v) in query_pairs(uri) {
        params.insert(k, v);
    }
    let url = format!("{}{}", shared.sign_origin, uri.path());
    Ok(Signed { params, signature, method: method.as_str().to_owned(), url })
}

/// The live session token that signed `request` (HMAC-SHA256), if the mock knows one.
fn session_of(state: &IbkrState, request: &Signed) -> Option<LstSession> {
    if request.params.get("oauth_signature_method").map(String::as_str) != Some("HMAC-SHA256") {
        return None;
    }
    let base = oauth::base_string(&request.method, &request.url, &request.params, None);
    state.snapshot().into_iter().rev().find(|session| {
        oauth::hmac_sha256_signature(&Secret::new(session.lst.clone()), &base)
            .is_ok_and(|expected| percent_decode(&expected) == request.signature)
    })
}

async fn refuse_login(shared: &Shared, why: &str) -> Response {
    let attempt = LoginAttempt { wrong_credentials: true, ..LoginAttempt::default() };
    let answer = common::judge(shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await;
    match answer {
        Err(e) if e.code.as_deref() == Some(crate::model::CODE_INVALID_CREDENTIALS) => {
            auth_failure(shared, ibkr_error(401, why))
        }
        Err(e) => model_error(&e),
        Ok(_) => ibkr_error(500, "a login with wrong credentials was granted"),
    }
}

async fn live_session_token(shared: &Shared, account: &IbkrAccount, state: &IbkrState, request: Signed) -> Response {
    let prepend = Secret::new(account.prepend_hex.clone());
    let base = oauth::base_string("POST", &request.url, &request.params, Some(&prepend));
    let signature = B64.decode(request.signature.as_bytes()).unwrap_or_default();
    let verified = request.params.get("oauth_signature_method").map(String::as_str) == Some("RSA-SHA256")
        && account.signature_key.pkcs1v15_verify::<rsa::sha2::Sha256>(base.as_bytes(), &signature).is_ok();
    if !verified {
        return refuse_login(shared, "invalid signature").await;
    }
    let p = &account.dh.prime;
    let challenge = request
        .params
        .get("diffie_hellman_challenge")
        .and_then(|c| oauth::parse_hex(c, "diffie_hellman_challenge").ok())
        .filter(|a| *a > BigUint::from(1u32) && *a < p - 1u32);
    let Some(challenge) = challenge else {
        return bad_request(shared, ibkr_error(400, "diffie_hellman_challenge is missing or out of range"));
    };
    let Ok(random) = oauth::dh_random() else { return ibkr_error(500, "no randomness for the exchange") };
    let response = oauth::dh_challenge(&account.dh, &random);
    let shared_secret = oauth::dh_shared_secret(&account.dh, &challenge, &random);
    let Ok(lst) = oauth::live_session_token(&shared_secret, &prepend) else {
        return ibkr_error(500, "the live session token could not be computed");
    };
    let Ok(key) = B64.decode(lst.expose()) else { return ibkr_error(500, "the live session token is not base64") };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&key) else { return ibkr_error(500, "hmac") };
    mac.update(account.consumer_key.as_bytes());
    let lst_signature = hex::encode(mac.finalize().into_bytes());
    let expires = shared.to_wire(shared.now().saturating_add(shared.model.token_lifetime()));
    state.add(lst.expose().to_owned());
    json(
        200,
        &json!({
            "diffie_hellman_response": response.to_str_radix(16),
            "live_session_token_signature": lst_signature,
            "live_session_token_expiration": expires.as_millis(),
        }),
    )
}

fn auth_status(authenticated: bool, competing: bool) -> serde_json::Value {
    json!({"authenticated": authenticated, "competing": competing, "connected": true, "message": "",
        "MAC": "98:F2:B3:23:BF:A0", "serverInfo": {"serverName": "mock", "serverVersion": "mock"}})
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((account, state)) = parts(&shared) else { return ibkr_error(500, "not an IBKR mock") };
    let path = uri.path().trim_start_matches("/v1/api").to_owned();
    let request = match signed(&shared, account, &method, &uri, &headers) {
        Ok(request) => request,
        Err(why) if path == "/oauth/live_session_token" => return refuse_login(&shared, why).await,
        Err(why) => return auth_failure(&shared, ibkr_error(401, why)),
    };
    if path == "/oauth/live_session_token" && method == Method::POST {
        return live_session_token(&shared, account, state, request).await;
    }
    let Some(session) = session_of(state, &request) else {
        return auth_failure(&shared, ibkr_error(401, "invalid signature"));
    };
    let token = session.model_token.clone();
    match (&method, path.as_str()) {
        (&Method::POST, "/iserver/auth/ssodh/init") => {
            let body = match json_body(&body) {
                Ok(body) => body,
                Err(problem) => return bad_request(&shared, ibkr_error(400, &problem)),
            };
            let compete = body.get("compete").and_then(|c| c.as_bool()).unwrap_or(false);
            let attempt = LoginAttempt { take_over: compete, ..LoginAttempt::default() };
            match common::judge(&shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await {
                Ok(grant) => {
                    let cookie = grant.extras.get("ws_cookie").map(|c| c.expose().to_owned());
                    let model_token = grant.access_token.expose().to_owned();
                    state.update(&session.lst, |s| {
                        s.model_token = Some(model_token);
                        s.ws_cookie = cookie;
                    });
                    json(200, &auth_status(true, false))
                }
                Err(e) if e.code.as_deref() == Some(CODE_COMPETING) => json(200, &auth_status(false, true)),
                Err(e) => model_error(&e),
            }
        }
        (_, "/iserver/auth/status") => {
            let alive = token.as_deref().is_some_and(|t| stream::token_alive(&shared, t));
            json(200, &auth_status(alive, false))
        }
        _ => {
            let Some(token) = token else { return ibkr_error(400, "Init session first") };
            serve_session(&shared, &method, &path, &uri, &body, &session, &token).await
        }
    }
}

/// The calls of an initialised session.
async fn serve_session(
    shared: &Shared,
    method: &Method,
    path: &str,
    uri: &Uri,
    body: &[u8],
    session: &LstSession,
    token: &str,
) -> Response {
    match (method, path) {
        (&Method::POST, "/tickle") => {
            let answer =
                common::judge(shared, CallKind::Keepalive, |trip| shared.model.judge_keepalive(trip, token)).await;
            match answer {
                Ok(status) => {
                    let (authenticated, competing) = match status {
                        KeepaliveStatus::Alive => (true, false),
                        KeepaliveStatus::Competing => (true, true),
                        _ => (false, false),
                    };
                    let idle_ms = shared.model.spec().idle_timeout.map_or(0, |d| d.as_millis() as u64);
                    json(
                        200,
                        &json!({
                            "session": session.ws_cookie, "ssoExpires": idle_ms, "collission": competing, "userId": 1,
                            "hmds": {"error": "no bridge"},
                            "iserver": {"authStatus": auth_status(authenticated, competing)},
                        }),
                    )
                }
                Err(e) => model_error(&e),
            }
        }
        (&Method::POST, "/logout") => {
            common::judge(shared, CallKind::Keepalive, |trip| {
                shared.model.judge_logout(trip, token, None);
                (trip.latency, ())
            })
            .await;
            json(200, &json!({"status": true}))
        }
        _ => request(shared, method, path, uri, body, token).await,
    }
}

async fn request(shared: &Shared, method: &Method, path: &str, uri: &Uri, body: &[u8], token: &str) -> Response {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (kind, idempotent) = match (method, segments.as_slice()) {
        (&Method::POST, ["iserver", "account", _, "orders"])
        | (&Method::DELETE, ["iserver", "account", _, "order", _]) => ("order", false),
        (&Method::GET, ["iserver", "accounts"]) => ("accounts", true),
        (&Method::GET, ["iserver", "marketdata", "snapshot"]) => ("quote", true),
        (&Method::GET, ["iserver", "account", "orders"]) => ("orders", true),
        (&Method::GET, ["portfolio", "accounts"]) | (&Method::GET, ["portfolio", _, "positions", _]) => {
            ("positions", true)
        }
        _ => return ibkr_error(404, "not found"),
    };
    let mut order = None;
    if method == Method::POST {
        let value = match json_body(body) {
            Ok(value) => value,
            Err(problem) => return bad_request(shared, ibkr_error(400, &problem)),
        };
        let Some(first) = value.get("orders").and_then(|o| o.as_array()).and_then(|o| o.first()).cloned() else {
            return bad_request(shared, ibkr_error(400, "the body must hold `orders`, a non-empty list"));
        };
        for required in ["conid", "orderType", "side", "quantity"] {
            if first.get(required).is_none() {
                return bad_request(shared, ibkr_error(400, &format!("`orders[0].{required}` is required")));
            }
        }
        order = Some(first);
    }
    let client_order_id = order.as_ref().and_then(|o| o.get("cOID")).and_then(|c| c.as_str()).map(str::to_owned);
    let mut fields = order.as_ref().map(json_fields).unwrap_or_default();
    fields.push(("path".to_owned(), format!("{method} {path}")));
    let op_id = if idempotent { 0 } else { order_identity(client_order_id.as_deref(), &fields) };
    let result = common::judge_request(shared, token, shared.kind_of(kind, idempotent), idempotent, op_id).await;
    let mut order_id = None;
    if let Some(order) = &order {
        let lost = result.as_ref().is_err_and(|e| e.code.as_deref() == Some(CODE_RESPONSE_LOST));
        if result.is_ok() || lost {
            let get = |k: &str| {
                order.get(k).map_or_else(String::new, |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            };
            order_id = Some(shared.orders.record(OrderRecord {
                order_id: String::new(),
                client_order_id: client_order_id.clone(),
                instrument: get("conid"),
                side: get("side"),
                quantity: get("quantity"),
                at_ms: shared.to_wire(shared.now()).as_millis(),
            }));
        }
    }
    if let Err(e) = result {
        return model_error(&e);
    }
    let now = shared.to_wire(shared.now());
    match kind {
        "order" if method == Method::POST => {
            json(200, &json!([{"order_id": order_id, "order_status": "Submitted", "encrypt_message": "1"}]))
        }
        "order" => json(200, &json!({"msg": "Request was submitted", "order_id": segments.last(), "conid": -1})),
        "accounts" => json(
            200,
            &json!({"accounts": [super::client::IBKR_ACCOUNT_ID], "selectedAccount": super::client::IBKR_ACCOUNT_ID}),
        ),
        "quote" => {
            let conids = query_pairs(uri).into_iter().find(|(k, _)| k == "conids").map(|(_, v)| v).unwrap_or_default();
            let data: Vec<serde_json::Value> = conids
                .split(',')
                .filter_map(|c| c.trim().parse::<u64>().ok())
                .take(100)
                .map(|conid| json!({"conid": conid, "31": format!("{:.2}", common::price_at(190.0, now, conid)), "_updated": now.as_millis()}))
                .collect();
            json(200, &json!(data))
        }
        "orders" => json(
            200,
            &json!({"snapshot": true, "orders": shared.orders.all().iter().map(|o| json!({
            "orderId": o.order_id, "order_ref": o.client_order_id, "conid": o.instrument, "side": o.side,
            "totalSize": o.quantity, "status": "Filled",
        })).collect::<Vec<_>>()}),
        ),
        _ if path == "/portfolio/accounts" => json(
            200,
            &json!([{"id": super::client::IBKR_ACCOUNT_ID, "accountId": super::client::IBKR_ACCOUNT_ID, "currency": "USD"}]),
        ),
        _ => json(200, &json!([])),
    }
}

/// The value of the cookie `api`.
fn api_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == "api").then(|| value.trim_matches('"').to_owned())
    })
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((_, state)) = parts(&shared) else { return ibkr_error(500, "not an IBKR mock") };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return bad_request(&shared, ibkr_error(400, &rejection.body_text())),
    };
    let token = api_cookie(&headers).and_then(|cookie| state.by_cookie(&cookie)).and_then(|s| s.model_token);
    let Some(token) = token else {
        Counters::bump(&shared.counters.streams_refused);
        return ibkr_error(401, "no session");
    };
    if !stream::admit(&shared, &token) {
        return ibkr_error(401, "no session");
    }
    Counters::bump(&shared.counters.streams_opened);
    stream::limited(upgrade).on_upgrade(move |socket| run_websocket(shared, socket, token))
}

async fn send(shared: &Shared, socket: &mut WebSocket, value: serde_json::Value) -> bool {
    let ok = socket.send(Message::Text(value.to_string().into())).await.is_ok();
    if ok {
        Counters::bump(&shared.counters.stream_messages);
    }
    ok
}

async fn run_websocket(shared: Arc<Shared>, mut socket: WebSocket, token: String) {
    let mut timers = Timers::new(&shared, std::time::Duration::from_secs(10));
    let mut stopping = shared.stopping.clone();
    let mut subscribed: BTreeSet<u64> = BTreeSet::new();
    let silence = shared.streams.client_silence;
    let mut heard = shared.clock.monotonic_now();
    let hello = [
        json!({"topic": "system", "success": "mockuser", "isFT": false, "isPaper": true}),
        json!({"topic": "sts", "args": {"authenticated": true, "competing": false, "message": "", "fail": "", "serverName": "mock", "serverVersion": "mock"}}),
    ];
    for message in hello {
        if !send(&shared, &mut socket, message).await {
            return;
        }
    }
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    heard = shared.clock.monotonic_now();
                    let text = text.as_str();
                    if text == "tic" {
                        common::judge(&shared, CallKind::Keepalive, |trip| shared.model.judge_keepalive(trip, &token)).await.ok();
                    } else if let Some(rest) = text.strip_prefix("smd+") {
                        if let Some(conid) = rest.split('+').next().and_then(|c| c.parse().ok())
                            && subscribed.len() < stream::MAX_SUBSCRIPTIONS
                        {
                            subscribed.insert(conid);
                        }
                    } else if let Some(rest) = text.strip_prefix("umd+")
                        && let Some(conid) = rest.split('+').next().and_then(|c| c.parse::<u64>().ok())
                    {
                        subscribed.remove(&conid);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => heard = shared.clock.monotonic_now(),
            },
            _ = timers.tick.tick() => {
                let now = shared.to_wire(shared.now());
                for conid in subscribed.clone() {
                    let tick = json!({"topic": format!("smd+{conid}"), "conid": conid,
                        "31": format!("{:.2}", common::price_at(190.0, now, conid)), "_updated": now.as_millis()});
                    if !send(&shared, &mut socket, tick).await { return; }
                }
            }
            _ = timers.heartbeat.tick() => {
                let now = shared.to_wire(shared.now());
                if !send(&shared, &mut socket, json!({"topic": "system", "hb": now.as_millis()})).await { return; }
            }
            _ = timers.check.tick() => {
                if !stream::token_alive(&shared, &token) {
                    Counters::bump(&shared.counters.streams_closed_token_died);
                    let _ = send(&shared, &mut socket, json!({"topic": "sts", "args": {"authenticated": false}})).await;
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "session ended".into() }))).await;
                    return;
                }
                if shared.clock.monotonic_now().saturating_duration_since(heard) > silence {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "no tic within a minute".into() }))).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(timers.deadline) => return,
            () = stream::stopped(&mut stopping) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_headers_and_percent_decoding() {
        let p =
            header_params(r#"OAuth realm="limited_poa", oauth_consumer_key="K", oauth_signature="a%2Bb%3D""#).unwrap();
        assert_eq!(p["realm"], "limited_poa");
        assert_eq!(percent_decode(&p["oauth_signature"]), "a+b=");
        assert!(header_params("Bearer x").is_none());
        assert_eq!(percent_decode("%zz%4"), "%zz%4", "broken escapes stay as they are");
    }
}
