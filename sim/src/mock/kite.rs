//! The Zerodha Kite Connect v3 mock: the model of `zerodha` in Kite's wire format, close enough that the
//! official `kiteconnect` client works when given the mock's URL as its `root`.
//!
//! - `GET /connect/login?v=3&api_key=…`: a person logs in (the mock's stand-in for Kite's login page):
//!   a request token (the model's login code, single-use, `login_code_lifetime`) — a redirect to the
//!   account's `redirect_url` with `request_token=…&action=login&status=success`, or, without one,
//!   `{"status":"success","data":{"request_token":…}}`.
//! - `POST /session/token` (form `api_key`, `request_token`, `checksum` = hex SHA-256 of api_key +
//!   request_token + api_secret): a login on the model that needs the request token
//!   ([`LoginAttempt::code_required`]); a wrong key or checksum is a login with wrong credentials.
//! - `DELETE /session/token?api_key=…&access_token=…`: logout.
//! - API routes with `Authorization: token api_key:access_token` (`X-Kite-Version: 3`): `/user/profile`,
//!   `/user/margins`, `/quote`, `/quote/ltp`, `/quote/ohlc` (kind `quote`), `/orders` (`orders`),
//!   `POST /orders/{variety}` (kind `order`, client order id `tag`), `PUT`/`DELETE
//!   /orders/{variety}/{id}` (`order`), `/portfolio/positions`, `/portfolio/holdings`.
//! - Answers `{"status":"success","data":…}`; errors `{"status":"error","error_type":…,"message":…}`:
//!   a dead token, a used request token, wrong credentials → 403 `TokenException`; 429 →
//!   `NetworkException` with `Retry-After`; 5xx → `NetworkException`; bad input → 400 `InputException`.
//! - The ticker, `GET /ws?api_key=…&access_token=…`: 403 at the handshake for a token the model does not
//!   accept; text `{"a":"subscribe","v":[tokens]}`, `{"a":"unsubscribe",…}`, `{"a":"mode","v":["ltp"|"quote"|"full",[tokens]]}`;
//!   binary tick messages (a 2-byte packet count, then per packet a 2-byte length and the packet: `ltp`
//!   8 bytes, `quote`/`full` 44, big-endian, prices in paise); a 1-byte heartbeat every second; when the
//!   token dies, `{"type":"error","data":"TokenException: …"}` and a close.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::json;
use sha2::{Digest, Sha256};
use warden_engine::BrokerError;

use super::common::{
    self, Counters, OrderRecord, bad_request, field, form_pairs, header_str, json, order_identity, query_pairs,
    status_of, with_retry_after,
};
use super::stream::{self, Timers};
use super::{Account, KiteAccount, Shared};
use crate::model::{
    CODE_ACCOUNT_LOCKED, CODE_COMPETING, CODE_INVALID_CREDENTIALS, CODE_INVALID_GRANT, CODE_KITE_TOKEN,
    CODE_LOGIN_CODE_INVALID, CODE_NEEDS_PERSON, CODE_RESPONSE_LOST, CODE_SECOND_FACTOR, CallKind, LoginAttempt,
};

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/connect/login", get(connect_login))
        .route("/session/token", post(session_token).delete(api))
        .route("/user/profile", get(api))
        .route("/user/margins", get(api))
        .route("/quote", get(api))
        .route("/quote/ltp", get(api))
        .route("/quote/ohlc", get(api))
        .route("/orders", get(api))
        .route("/orders/{variety}", post(api))
        .route("/orders/{variety}/{order_id}", put(api).delete(api))
        .route("/portfolio/positions", get(api))
        .route("/portfolio/holdings", get(api))
        .route("/ws", get(ticker))
}

fn account(shared: &Shared) -> Option<&KiteAccount> {
    match &shared.account {
        Account::Kite(a) => Some(a),
        _ => None,
    }
}

/// A Kite error answer.
fn error(status: u16, error_type: &str, message: &str) -> Response {
    json(status, &json!({"status": "error", "message": message, "data": null, "error_type": error_type}))
}

/// A model error in Kite's words.
fn model_error(e: &BrokerError) -> Response {
    let status = status_of(e);
    let token_like = [
        CODE_KITE_TOKEN,
        CODE_LOGIN_CODE_INVALID,
        CODE_NEEDS_PERSON,
        CODE_INVALID_CREDENTIALS,
        CODE_SECOND_FACTOR,
        CODE_ACCOUNT_LOCKED,
        CODE_COMPETING,
        CODE_INVALID_GRANT,
    ];
    let (status, error_type, message) = match e.code.as_deref() {
        Some(CODE_LOGIN_CODE_INVALID | CODE_NEEDS_PERSON) => {
            (403, "TokenException", "Token is invalid or has expired.".to_owned())
        }
        Some(code) if token_like.contains(&code) => (403, "TokenException", e.message.clone()),
        _ => match status {
            429 => (429, "NetworkException", "Too many requests".to_owned()),
            400 => (400, "InputException", e.message.clone()),
            403 => (403, "PermissionException", e.message.clone()),
            s if s >= 500 => (s, "NetworkException", e.message.clone()),
            s => (s, "GeneralException", e.message.clone()),
        },
    };
    with_retry_after(error(status, error_type, &message), e.retry_after)
}

fn success(data: serde_json::Value) -> Response {
    json(200, &json!({"status": "success", "data": data}))
}

async fn connect_login(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some(account) = account(&shared) else { return error(500, "GeneralException", "not a Kite mock") };
    let query = query_pairs(&uri);
    if field(&query, "api_key") != Some(account.api_key.as_str()) {
        return bad_request(&shared, error(400, "InputException", "Invalid `api_key`."));
    }
    let code = shared.model.issue_login_code(shared.now());
    match &account.redirect_url {
        Some(redirect) => {
            let separator = if redirect.contains('?') { '&' } else { '?' };
            let location = format!("{redirect}{separator}request_token={code}&action=login&type=login&status=success");
            common::with_header(common::empty(302), "location", &location)
        }
        None => success(json!({ "request_token": code })),
    }
}

async fn session_token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some(account) = account(&shared) else { return error(500, "GeneralException", "not a Kite mock") };
    if let Some(version) = header_str(&headers, "x-kite-version").filter(|v| *v != "3") {
        let message =
            format!("X-Kite-Version `{}` is not supported; send 3", version.chars().take(8).collect::<String>());
        return bad_request(&shared, error(400, "InputException", &message));
    }
    let form = form_pairs(&body);
    let (Some(api_key), Some(request_token), Some(checksum)) =
        (field(&form, "api_key"), field(&form, "request_token"), field(&form, "checksum"))
    else {
        return bad_request(
            &shared,
            error(400, "InputException", "`api_key`, `request_token` and `checksum` are required."),
        );
    };
    let expected = hex::encode(Sha256::digest(format!("{}{request_token}{}", account.api_key, account.api_secret)));
    let wrong = api_key != account.api_key || !checksum.eq_ignore_ascii_case(&expected);
    let attempt = LoginAttempt {
        second_factor: Some(request_token),
        wrong_credentials: wrong,
        code_required: true,
        ..LoginAttempt::default()
    };
    let answer = common::judge(&shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await;
    match answer {
        Ok(grant) => {
            let login_time = common::kolkata_time(shared.to_wire(shared.now()));
            success(json!({
                "user_type": "individual", "email": "mock@example.com", "user_name": "Mock User",
                "user_shortname": "Mock", "broker": "ZERODHA", "exchanges": ["NSE", "BSE", "NFO"],
                "products": ["CNC", "NRML", "MIS"], "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "avatar_url": null, "user_id": account.user_id, "api_key": account.api_key,
                "access_token": grant.access_token.expose(), "public_token": common::random_hex(16),
                "refresh_token": "", "enctoken": "", "login_time": login_time,
                "meta": {"demat_consent": "consent"},
            }))
        }
        Err(e) => model_error(&e),
    }
}

/// The access token of `Authorization: token api_key:access_token`, if the API key is the account's.
fn access_token<'h>(headers: &'h HeaderMap, account: &KiteAccount) -> Option<&'h str> {
    let value = header_str(headers, "authorization")?.strip_prefix("token ")?;
    let (api_key, token) = value.split_once(':')?;
    (api_key == account.api_key).then_some(token)
}

/// What a route is, for the model and for its answer.
enum Route {
    Read(&'static str),
    Order { fields: Vec<(String, String)>, tag: Option<String> },
    Logout,
}

async fn api(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some(account) = account(&shared) else { return error(500, "GeneralException", "not a Kite mock") };
    if let Some(version) = header_str(&headers, "x-kite-version").filter(|v| *v != "3") {
        let message =
            format!("X-Kite-Version `{}` is not supported; send 3", version.chars().take(8).collect::<String>());
        return bad_request(&shared, error(400, "InputException", &message));
    }
    let path = uri.path();
    let query = query_pairs(&uri);
    let route = match (&method, path) {
        (&Method::DELETE, "/session/token") => Route::Logout,
        (&Method::GET, "/orders") => Route::Read("orders"),
        (&Method::GET, p) if p.starts_with("/quote") => Route::Read("quote"),
        (&Method::GET, "/user/profile") => Route::Read("profile"),
        (&Method::GET, "/user/margins") => Route::Read("margins"),
        (&Method::GET, p) if p.starts_with("/portfolio/") => Route::Read("positions"),
        (&Method::POST, _) => {
            let fields = form_pairs(&body);
            for required in ["exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"] {
                if field(&fields, required).is_none_or(str::is_empty) {
                    return bad_request(&shared, error(400, "InputException", &format!("Missing `{required}`.")));
                }
            }
            if field(&fields, "quantity").is_some_and(|q| q.parse::<u64>().is_err()) {
                return bad_request(&shared, error(400, "InputException", "`quantity` must be a whole number."));
            }
            let tag = field(&fields, "tag").map(str::to_owned);
            if tag.as_ref().is_some_and(|t| t.len() > 20) {
                return bad_request(&shared, error(400, "InputException", "`tag` is longer than 20 characters."));
            }
            Route::Order { fields, tag }
        }
        (&Method::PUT | &Method::DELETE, _) => {
            let mut fields = form_pairs(&body);
            fields.push(("path".to_owned(), path.to_owned()));
            fields.push(("method".to_owned(), method.to_string()));
            Route::Order { fields, tag: None }
        }
        _ => return common::not_found(State(shared.clone()), uri).await,
    };
    let token = match &route {
        // Logout names its token in the query (and the client authenticates with it as usual).
        Route::Logout => field(&query, "access_token").filter(|_| field(&query, "api_key") == Some(&account.api_key)),
        _ => access_token(&headers, account),
    }
    .unwrap_or_default()
    .to_owned();
    match route {
        Route::Logout => {
            if !stream::token_alive(&shared, &token) {
                return error(403, "TokenException", "Incorrect `api_key` or `access_token`.");
            }
            common::judge(&shared, CallKind::Keepalive, |trip| {
                shared.model.judge_logout(trip, &token, None);
                (trip.latency, ())
            })
            .await;
            success(json!(true))
        }
        Route::Read(kind) => {
            let kind_id = shared.kind_of(kind, true);
            match common::judge_request(&shared, &token, kind_id, true, 0).await {
                Ok(()) => success(read_data(&shared, kind, account, &query)),
                Err(e) => model_error(&e),
            }
        }
        Route::Order { fields, tag } => {
            let op_id = order_identity(tag.as_deref(), &fields);
            let kind_id = shared.kind_of("order", false);
            let result = common::judge_request(&shared, &token, kind_id, false, op_id).await;
            let executed =
                result.is_ok() || result.as_ref().is_err_and(|e| e.code.as_deref() == Some(CODE_RESPONSE_LOST));
            let order_id = executed.then(|| {
                shared.orders.record(OrderRecord {
                    order_id: String::new(),
                    client_order_id: tag.clone(),
                    instrument: format!(
                        "{}:{}",
                        field(&fields, "exchange").unwrap_or("NSE"),
                        field(&fields, "tradingsymbol").unwrap_or("?")
                    ),
                    side: field(&fields, "transaction_type").unwrap_or("?").to_owned(),
                    quantity: field(&fields, "quantity").unwrap_or("0").to_owned(),
                    at_ms: shared.to_wire(shared.now()).as_millis(),
                })
            });
            match (result, order_id) {
                (Ok(()), Some(order_id)) => success(json!({ "order_id": order_id })),
                (Err(e), _) => model_error(&e),
                (Ok(()), None) => error(500, "GeneralException", "the order was not recorded"),
            }
        }
    }
}

/// The data of a read route.
fn read_data(shared: &Shared, kind: &str, account: &KiteAccount, query: &[(String, String)]) -> serde_json::Value {
    let now = shared.to_wire(shared.now());
    match kind {
        "quote" => {
            let mut data = BTreeMap::new();
            for (n, (_, instrument)) in query.iter().filter(|(k, _)| k == "i").take(500).enumerate() {
                let token = 408_065 + n as u64;
                let price = common::price_at(1500.0, now, token);
                data.insert(
                    instrument.clone(),
                    json!({
                        "instrument_token": token, "timestamp": common::kolkata_time(now),
                        "last_trade_time": common::kolkata_time(now), "last_price": price, "last_quantity": 1,
                        "buy_quantity": 1000, "sell_quantity": 1000, "volume": 100000, "average_price": price,
                        "oi": 0, "oi_day_high": 0, "oi_day_low": 0, "net_change": 0.0,
                        "lower_circuit_limit": price * 0.9, "upper_circuit_limit": price * 1.1,
                        "ohlc": {"open": 1500.0, "high": price.max(1500.0), "low": price.min(1500.0), "close": 1500.0},
                        "depth": {"buy": [], "sell": []},
                    }),
                );
            }
            json!(data)
        }
        "orders" => json!(
            shared
                .orders
                .all()
                .iter()
                .map(|o| json!({
                    "order_id": o.order_id, "status": "COMPLETE", "tag": o.client_order_id,
                    "tradingsymbol": o.instrument.split(':').nth(1).unwrap_or(""),
                    "exchange": o.instrument.split(':').next().unwrap_or(""),
                    "transaction_type": o.side, "quantity": o.quantity.parse::<u64>().unwrap_or(0),
                    "order_timestamp": common::kolkata_time(warden_engine::UnixMs::from_millis(o.at_ms)),
                }))
                .collect::<Vec<_>>()
        ),
        "profile" => json!({
            "user_id": account.user_id, "user_type": "individual", "email": "mock@example.com",
            "user_name": "Mock User", "user_shortname": "Mock", "broker": "ZERODHA",
            "exchanges": ["NSE", "BSE", "NFO"], "products": ["CNC", "NRML", "MIS"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"], "avatar_url": null, "meta": {"demat_consent": "consent"},
        }),
        "margins" => json!({"equity": {"enabled": true, "net": 100000.0, "available": {"cash": 100000.0}}}),
        _ => json!({"net": [], "day": []}),
    }
}

/// A ticker subscription mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ltp,
    Quote,
}

async fn ticker(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return bad_request(&shared, error(400, "InputException", &rejection.body_text())),
    };
    let query = query_pairs(&uri);
    let Some(account) = account(&shared) else { return error(500, "GeneralException", "not a Kite mock") };
    let token = field(&query, "access_token").unwrap_or_default().to_owned();
    if field(&query, "api_key") != Some(account.api_key.as_str()) {
        Counters::bump(&shared.counters.streams_refused);
        return error(403, "TokenException", "Incorrect `api_key` or `access_token`.");
    }
    if !stream::admit(&shared, &token) {
        return error(403, "TokenException", "Incorrect `api_key` or `access_token`.");
    }
    Counters::bump(&shared.counters.streams_opened);
    stream::limited(upgrade).on_upgrade(move |socket| run_ticker(shared, socket, token))
}

async fn run_ticker(shared: Arc<Shared>, mut socket: WebSocket, token: String) {
    let mut timers = Timers::new(&shared, std::time::Duration::from_secs(1));
    let mut stopping = shared.stopping.clone();
    let mut subscribed: BTreeMap<u32, Mode> = BTreeMap::new();
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => handle_command(&text, &mut subscribed),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = timers.tick.tick() => {
                if subscribed.is_empty() { continue; }
                let packet = ticks(&shared, &subscribed);
                if socket.send(Message::Binary(packet.into())).await.is_err() { return; }
                Counters::bump(&shared.counters.stream_messages);
            }
            _ = timers.heartbeat.tick() => {
                if socket.send(Message::Binary(vec![0u8].into())).await.is_err() { return; }
                Counters::bump(&shared.counters.stream_messages);
            }
            _ = timers.check.tick() => {
                if !stream::token_alive(&shared, &token) {
                    Counters::bump(&shared.counters.streams_closed_token_died);
                    let notice = json!({"type": "error", "data": "TokenException: the access token is no longer valid"});
                    let _ = socket.send(Message::Text(notice.to_string().into())).await;
                    let close = CloseFrame { code: 1000, reason: "access token expired".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(timers.deadline) => return,
            () = stream::stopped(&mut stopping) => return,
        }
    }
}

/// Applies a ticker command; anything else is ignored, as Kite does.
fn handle_command(text: &str, subscribed: &mut BTreeMap<u32, Mode>) {
    let Ok(command) = serde_json::from_str::<serde_json::Value>(text) else { return };
    let tokens = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .map(|a| a.iter().filter_map(|t| t.as_u64()).filter_map(|t| u32::try_from(t).ok()).collect())
            .unwrap_or_default()
    };
    match command.get("a").and_then(|a| a.as_str()) {
        Some("subscribe") => {
            for token in tokens(&command["v"]) {
                if subscribed.len() < stream::MAX_SUBSCRIPTIONS {
                    subscribed.entry(token).or_insert(Mode::Quote);
                }
            }
        }
        Some("unsubscribe") => {
            for token in tokens(&command["v"]) {
                subscribed.remove(&token);
            }
        }
        Some("mode") => {
            let mode = match command["v"][0].as_str() {
                Some("ltp") => Mode::Ltp,
                Some("quote" | "full") => Mode::Quote,
                _ => return,
            };
            for token in tokens(&command["v"][1]) {
                if let Some(m) = subscribed.get_mut(&token) {
                    *m = mode;
                }
            }
        }
        _ => {}
    }
}

/// One binary tick message for the subscriptions.
fn ticks(shared: &Shared, subscribed: &BTreeMap<u32, Mode>) -> Vec<u8> {
    let now = shared.to_wire(shared.now());
    let mut out = Vec::with_capacity(2 + subscribed.len() * 46);
    out.extend_from_slice(&u16::try_from(subscribed.len()).unwrap_or(u16::MAX).to_be_bytes());
    for (&token, &mode) in subscribed {
        let paise = |p: f64| (p * 100.0).round() as u32;
        let price = paise(common::price_at(1500.0, now, u64::from(token)));
        let mut packet = vec![token.to_be_bytes(), price.to_be_bytes()];
        if mode == Mode::Quote {
            // last qty, average price, volume, buy qty, sell qty, open, high, low, close
            let base = paise(1500.0);
            packet.extend(
                [1u32, price, 100_000, 1_000, 1_000, base, price.max(base), price.min(base), base]
                    .map(u32::to_be_bytes),
            );
        }
        let bytes: Vec<u8> = packet.concat();
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}
