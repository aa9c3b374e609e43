//! The Kotak Neo Trade API mock: the model of `kotak-neo` in Kotak's wire format (as the official SDK
//! speaks it), login host and API on one port.
//!
//! - `POST /login/1.0/tradeApiLogin` (`Authorization: <consumer key>`, `neo-fin-key`, JSON
//!   `{mobileNumber, ucc, totp}`): the TOTP is checked against the account's secret at the wire's time
//!   (one 30 s step either side); a mismatch is a login with wrong credentials on the model. Answers a
//!   view token and `sid` (at most [`VIEWS_KEPT`] pending).
//! - `POST /login/1.0/tradeApiValidate` (`sid`/`Auth` of the view session, JSON `{mpin}`): the login on
//!   the model. Answers the trade token — a JWT (HS256 under the mock's own key) whose `exp` is the
//!   model's expiry and whose `jti` names the model's token —, its `sid`, `baseUrl` (the mock) and
//!   `hsServerId`.
//! - API routes with `Auth: <token>` and `Sid: <sid>` (a `Sid` that is not the token's: 403 `stCode
//!   100022` at the wire): `POST /quick/order/rule/ms/place` (form `jData`; kind `order`, client order id
//!   `ig`), `POST /quick/order/vr/modify`, `POST /quick/order/cancel` (`order`), `GET /quick/user/orders`
//!   (`orders`), `GET /quick/user/trades`, `GET /quick/user/positions`, `GET|POST /quick/user/limits`,
//!   `GET /portfolio/v1/holdings` (`positions`), `GET /script-details/1.0/quotes/neosymbol/{…}` (`quote`).
//! - Refusals in Kotak's forms, as the model picks them (`rejection_form`): 401 `{"code":"900901",…}`,
//!   401 `{"message":"invalid jwt token"}`, 403 `{"stCode":100022,…}`, 403 "Invalid session, please
//!   re-login to continue"; 429 with `Retry-After`; other errors `{"stat":"Not_Ok","stCode":…,"errMsg":…}`.
//! - The stream, `GET /realtime`: `{"type":"cn","Authorization":<token>,"Sid":<sid>}` →
//!   `{"type":"cn","stat":"Ok"}` (or `Not_Ok` and a close); `{"type":"mws","scrips":"nse_cm|11536&…"}`
//!   subscribes; ticks `{"type":"sf","data":[{"tk":…,"e":…,"ltp":…}]}`; `{"type":"hb"}` every 30 s; when
//!   the token dies `{"type":"cn","stat":"Not_Ok","msg":"invalid session, please re-login"}` and a close.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use warden_adapters::broker::totp;
use warden_engine::BrokerError;

use super::common::{
    self, Counters, OrderRecord, auth_failure, bad_request, field, form_pairs, header_str, json, json_body,
    json_fields, order_identity, status_of, with_retry_after,
};
use super::stream::{self, Timers};
use super::{Account, BrokerState, KotakAccount, Shared};
use crate::model::{CODE_KOTAK_JWT, CODE_KOTAK_SESSION, CODE_RESPONSE_LOST, CallKind, LoginAttempt};

/// The most view sessions (first login steps) waiting for their MPIN step.
pub const VIEWS_KEPT: usize = 256;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The Kotak mock's wire state.
#[derive(Debug)]
pub(crate) struct KotakState {
    /// Signs the trade tokens the mock hands out.
    jwt_key: Vec<u8>,
    /// Pending view sessions, oldest first.
    views: Mutex<VecDeque<View>>,
}

impl Default for KotakState {
    fn default() -> KotakState {
        KotakState { jwt_key: common::random_hex(32).into_bytes(), views: Mutex::new(VecDeque::new()) }
    }
}

#[derive(Debug)]
struct View {
    token: String,
    sid: String,
    totp: String,
}

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/login/1.0/tradeApiLogin", post(trade_api_login))
        .route("/login/1.0/tradeApiValidate", post(trade_api_validate))
        .route("/quick/order/rule/ms/place", post(api))
        .route("/quick/order/vr/modify", post(api))
        .route("/quick/order/cancel", post(api))
        .route("/quick/user/orders", get(api))
        .route("/quick/user/trades", get(api))
        .route("/quick/user/positions", get(api))
        .route("/quick/user/limits", get(api).post(api))
        .route("/portfolio/v1/holdings", get(api))
        .route("/script-details/1.0/quotes/neosymbol/{*instrument}", get(api))
        .route("/realtime", get(realtime))
}

fn parts(shared: &Shared) -> Option<(&KotakAccount, &KotakState)> {
    match (&shared.account, &shared.broker_state) {
        (Account::Kotak(a), BrokerState::Kotak(s)) => Some((a, s)),
        _ => None,
    }
}

fn not_ok(status: u16, message: &str) -> Response {
    json(status, &json!({"stat": "Not_Ok", "stCode": status, "errMsg": message}))
}

/// A model error in Kotak's words.
fn model_error(e: &BrokerError) -> Response {
    let status = status_of(e);
    let body = match (e.code.as_deref(), status) {
        (Some(CODE_KOTAK_JWT), _) | (Some(crate::model::CODE_INVALID_CREDENTIALS), _) => json!({
            "code": "900901", "message": "Invalid Credentials",
            "description": "Invalid Credentials. Make sure you have provided the correct security credentials",
        }),
        (Some(CODE_KOTAK_SESSION), _) => json!({"stCode": 100022, "errMsg": "invalid session token", "stat": "Not_Ok"}),
        (_, 401 | 403) if e.message.to_ascii_lowercase().contains("invalid") => json!({"message": e.message}),
        (_, 429) => json!({"stat": "Not_Ok", "stCode": 429, "errMsg": "Too many requests"}),
        (code, status) => json!({"stat": "Not_Ok", "stCode": status, "errMsg": e.message, "code": code}),
    };
    with_retry_after(json(status, &body), e.retry_after)
}

fn sign(key: &[u8], data: &str) -> String {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data.as_bytes());
            B64URL.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The trade token for a model token: a JWT the mock signs.
fn trade_jwt(state: &KotakState, ucc: &str, model_token: &str, sid: &str, exp_s: i64, iat_s: i64) -> String {
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"sub": ucc, "jti": model_token, "sid": sid, "exp": exp_s, "iat": iat_s, "scope": ["Trade"]});
    let payload = B64URL.encode(claims.to_string());
    let signature = sign(&state.jwt_key, &format!("{header}.{payload}"));
    format!("{header}.{payload}.{signature}")
}

/// The model token and `sid` of a trade JWT the mock signed; `None` for anything else.
fn read_jwt(state: &KotakState, jwt: &str) -> Option<(String, String)> {
    let mut parts = jwt.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || sign(&state.jwt_key, &format!("{header}.{payload}")) != signature {
        return None;
    }
    let claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(payload).ok()?).ok()?;
    Some((claims.get("jti")?.as_str()?.to_owned(), claims.get("sid")?.as_str()?.to_owned()))
}

/// Whether `code` is the account's TOTP at the wire's time, one step either side.
fn totp_matches(shared: &Shared, account: &KotakAccount, code: &str) -> bool {
    let Ok(key) = totp::base32_decode(&account.totp_secret) else { return false };
    let now = shared.to_wire(shared.now());
    [-30_000i64, 0, 30_000]
        .iter()
        .any(|offset| totp::totp(&key, warden_engine::UnixMs::from_millis(now.as_millis() + offset), 30, 6) == code)
}

async fn wrong_login(shared: &Shared, totp: Option<&str>) -> Response {
    let attempt = LoginAttempt { second_factor: totp, wrong_credentials: true, ..LoginAttempt::default() };
    match common::judge(shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await {
        Ok(_) => not_ok(500, "a login with wrong credentials was granted"),
        Err(e) => model_error(&e),
    }
}

async fn trade_api_login(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((account, state)) = parts(&shared) else { return not_ok(500, "not a Kotak mock") };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(problem) => return bad_request(&shared, not_ok(400, &problem)),
    };
    let text = |name: &str| body.get(name).and_then(|v| v.as_str());
    let (Some(mobile), Some(ucc), Some(code)) = (text("mobileNumber"), text("ucc"), text("totp")) else {
        return bad_request(&shared, not_ok(400, "`mobileNumber`, `ucc` and `totp` are required"));
    };
    if header_str(&headers, "neo-fin-key").is_none() {
        return bad_request(&shared, not_ok(400, "the `neo-fin-key` header is required"));
    }
    let right = header_str(&headers, "authorization") == Some(account.consumer_key.as_str())
        && mobile == account.mobile_number
        && ucc == account.ucc
        && totp_matches(&shared, account, code);
    if !right {
        return wrong_login(&shared, Some(code)).await;
    }
    let view =
        View { token: format!("view-{}", common::random_hex(16)), sid: common::random_hex(12), totp: code.to_owned() };
    let answer = json!({"data": {
        "token": view.token, "sid": view.sid, "rid": common::random_hex(8), "hsServerId": "",
        "isUserPwdExpired": false, "caseId": "", "ucc": account.ucc, "greetingName": "Mock",
        "isTrialAccount": false, "dataCenter": "E21", "kType": "View",
    }});
    let mut views = state.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if views.len() >= VIEWS_KEPT {
        views.pop_front();
    }
    views.push_back(view);
    json(201, &answer)
}

async fn trade_api_validate(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((account, state)) = parts(&shared) else { return not_ok(500, "not a Kotak mock") };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(problem) => return bad_request(&shared, not_ok(400, &problem)),
    };
    let Some(mpin) = body.get("mpin").and_then(|v| v.as_str()) else {
        return bad_request(&shared, not_ok(400, "`mpin` is required"));
    };
    let (sid, auth) = (header_str(&headers, "sid"), header_str(&headers, "auth"));
    let view = {
        let mut views = state.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = views.iter().position(|v| Some(v.sid.as_str()) == sid && Some(v.token.as_str()) == auth);
        found.and_then(|i| views.remove(i))
    };
    let Some(view) = view else {
        return auth_failure(
            &shared,
            json(
                401,
                &json!({"code": "900901", "message": "Invalid Credentials", "description": "unknown view session"}),
            ),
        );
    };
    if mpin != account.mpin || header_str(&headers, "authorization") != Some(account.consumer_key.as_str()) {
        return wrong_login(&shared, Some(&view.totp)).await;
    }
    let attempt = LoginAttempt { second_factor: Some(&view.totp), ..LoginAttempt::default() };
    match common::judge(&shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await {
        Ok(grant) => {
            let model_sid =
                grant.extras.get("sid").map(|s| s.expose().to_owned()).unwrap_or_else(|| common::random_hex(8));
            let exp = grant.expires_at.map_or(i64::MAX / 1000, |e| shared.to_wire(e).as_millis() / 1000);
            let iat = shared.to_wire(shared.now()).as_millis() / 1000;
            let token = trade_jwt(state, &account.ucc, grant.access_token.expose(), &model_sid, exp, iat);
            json(
                201,
                &json!({"data": {
                    "token": token, "sid": model_sid, "rid": common::random_hex(8), "hsServerId": "mock",
                    "isUserPwdExpired": false, "caseId": "", "ucc": account.ucc, "greetingName": "Mock",
                    "isTrialAccount": false, "dataCenter": "E21", "kType": "Trade",
                    "baseUrl": format!("{}/", shared.base_url),
                }}),
            )
        }
        Err(e) => model_error(&e),
    }
}

async fn api(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some((_, state)) = parts(&shared) else { return not_ok(500, "not a Kotak mock") };
    let path = uri.path().to_owned();
    let order = method == Method::POST && path.starts_with("/quick/order/");
    let mut fields = Vec::new();
    let mut client_order_id = None;
    if order {
        let form = form_pairs(&body);
        let Some(data) = field(&form, "jData") else {
            return bad_request(&shared, not_ok(400, "the form field `jData` is required"));
        };
        let value = match json_body(data.as_bytes()) {
            Ok(value) if value.is_object() => value,
            Ok(_) => return bad_request(&shared, not_ok(400, "`jData` must be a JSON object")),
            Err(problem) => return bad_request(&shared, not_ok(400, &format!("`jData`: {problem}"))),
        };
        if path.ends_with("/place") {
            for required in ["es", "ts", "tt", "qt", "pt", "pc"] {
                if value.get(required).is_none() {
                    return bad_request(&shared, not_ok(400, &format!("`jData.{required}` is required")));
                }
            }
        }
        client_order_id = value.get("ig").and_then(|v| v.as_str()).map(str::to_owned);
        fields = json_fields(&value);
        fields.push(("path".to_owned(), path.clone()));
    }
    let (token, sid) = header_str(&headers, "auth").and_then(|jwt| read_jwt(state, jwt)).unwrap_or_default();
    if !token.is_empty() && header_str(&headers, "sid") != Some(sid.as_str()) {
        return auth_failure(
            &shared,
            json(403, &json!({"stCode": 100022, "errMsg": "invalid session token", "stat": "Not_Ok"})),
        );
    }
    let (kind, idempotent) = if order {
        ("order", false)
    } else if path.starts_with("/script-details/") {
        ("quote", true)
    } else if path == "/quick/user/orders" {
        ("orders", true)
    } else {
        ("positions", true)
    };
    let op_id = if order { order_identity(client_order_id.as_deref(), &fields) } else { 0 };
    let result = common::judge_request(&shared, &token, shared.kind_of(kind, idempotent), idempotent, op_id).await;
    if order && path.ends_with("/place") {
        let lost = result.as_ref().is_err_and(|e| e.code.as_deref() == Some(CODE_RESPONSE_LOST));
        if result.is_ok() || lost {
            let get = |k: &str| fields.iter().find(|(f, _)| f == k).map_or("?", |(_, v)| v.as_str()).to_owned();
            let id = shared.orders.record(OrderRecord {
                order_id: String::new(),
                client_order_id: client_order_id.clone(),
                instrument: format!("{}|{}", get("es"), get("ts")),
                side: get("tt"),
                quantity: get("qt"),
                at_ms: shared.to_wire(shared.now()).as_millis(),
            });
            if result.is_ok() {
                return json(200, &json!({"nOrdNo": id, "stat": "Ok", "stCode": 200}));
            }
        }
    }
    match result {
        Err(e) => model_error(&e),
        Ok(()) => json(200, &read_data(&shared, kind, &path)),
    }
}

fn read_data(shared: &Shared, kind: &str, path: &str) -> serde_json::Value {
    let now = shared.to_wire(shared.now());
    match kind {
        "order" => json!({"stat": "Ok", "stCode": 200, "result": "ok"}),
        "quote" => {
            let instrument = path.rsplit('/').nth(1).unwrap_or("nse_cm|11536");
            json!([{"exchange_token": instrument, "display_symbol": instrument, "exchange": "nse_cm",
                "ltp": format!("{:.2}", common::price_at(1500.0, now, 11536)), "last_volume": "1",
                "total_buy": "1000", "total_sell": "1000"}])
        }
        "orders" => json!({"stat": "Ok", "stCode": 200, "data": shared.orders.all().iter().map(|o| json!({
            "nOrdNo": o.order_id, "ordSt": "complete", "trdSym": o.instrument, "trnsTp": o.side, "qty": o.quantity,
            "ig": o.client_order_id,
        })).collect::<Vec<_>>()}),
        _ if path.contains("limits") => {
            json!({"stat": "Ok", "stCode": 200, "Net": "100000.00", "CollateralValue": "0"})
        }
        _ => json!({"stat": "Ok", "stCode": 200, "data": []}),
    }
}

async fn realtime(
    State(shared): State<Arc<Shared>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    Counters::bump(&shared.counters.http_requests);
    match upgrade {
        Ok(upgrade) => stream::limited(upgrade).on_upgrade(move |socket| run_realtime(shared, socket)),
        Err(rejection) => bad_request(&shared, not_ok(400, &rejection.body_text())),
    }
}

async fn send(shared: &Shared, socket: &mut WebSocket, value: serde_json::Value) -> bool {
    let ok = socket.send(Message::Text(value.to_string().into())).await.is_ok();
    if ok {
        Counters::bump(&shared.counters.stream_messages);
    }
    ok
}

async fn run_realtime(shared: Arc<Shared>, mut socket: WebSocket) {
    let Some((_, state)) = parts(&shared) else { return };
    let mut timers = Timers::new(&shared, std::time::Duration::from_secs(30));
    let mut stopping = shared.stopping.clone();
    let mut token: Option<String> = None;
    let mut scrips: Vec<(String, String)> = Vec::new();
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(command) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                    match command.get("type").and_then(|t| t.as_str()) {
                        Some("cn") => {
                            let jwt = command.get("Authorization").and_then(|a| a.as_str()).unwrap_or_default();
                            let sid = command.get("Sid").and_then(|a| a.as_str());
                            let found = read_jwt(state, jwt).filter(|(_, s)| Some(s.as_str()) == sid);
                            let admitted = match &found {
                                Some((t, _)) => stream::admit(&shared, t),
                                None => {
                                    Counters::bump(&shared.counters.streams_refused);
                                    false
                                }
                            };
                            match found.filter(|_| admitted) {
                                Some((t, _)) => {
                                    Counters::bump(&shared.counters.streams_opened);
                                    token = Some(t);
                                    if !send(&shared, &mut socket, json!({"type": "cn", "stat": "Ok", "msg": "connected"})).await { return; }
                                }
                                None => {
                                    let _ = send(&shared, &mut socket, json!({"type": "cn", "stat": "Not_Ok", "msg": "Invalid session"})).await;
                                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1008, reason: "invalid session".into() }))).await;
                                    return;
                                }
                            }
                        }
                        Some("mws") if token.is_some() => {
                            let list = command.get("scrips").and_then(|s| s.as_str()).unwrap_or_default();
                            for scrip in list.split('&').filter(|s| !s.is_empty()) {
                                let (exchange, instrument) = scrip.split_once('|').unwrap_or(("nse_cm", scrip));
                                if scrips.len() < stream::MAX_SUBSCRIPTIONS {
                                    scrips.push((exchange.to_owned(), instrument.to_owned()));
                                }
                            }
                        }
                        Some("hb") | Some(_) | None => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = timers.tick.tick() => {
                if token.is_none() || scrips.is_empty() { continue; }
                let now = shared.to_wire(shared.now());
                let data: Vec<serde_json::Value> = scrips.iter().map(|(e, tk)| json!({
                    "tk": tk, "e": e, "ltp": format!("{:.2}", common::price_at(1500.0, now, tk.len() as u64)),
                })).collect();
                if !send(&shared, &mut socket, json!({"type": "sf", "data": data})).await { return; }
            }
            _ = timers.heartbeat.tick() => {
                if !send(&shared, &mut socket, json!({"type": "hb"})).await { return; }
            }
            _ = timers.check.tick() => {
                if let Some(t) = &token && !stream::token_alive(&shared, t) {
                    Counters::bump(&shared.counters.streams_closed_token_died);
                    let _ = send(&shared, &mut socket, json!({"type": "cn", "stat": "Not_Ok", "msg": "invalid session, please re-login"})).await;
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1008, reason: "invalid session".into() }))).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(timers.deadline) => return,
            () = stream::stopped(&mut stopping) => return,
        }
    }
}
