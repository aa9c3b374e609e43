//! The OAuth 2.0 client-credentials mock (RFC 6749 §4.4, RFC 6750): the model of `oauth2` as a token
//! endpoint and a small bearer-protected API. It has no stream.
//!
//! - `POST /oauth2/token` (also `/token`), the client by HTTP Basic (form-encoded id and secret, §2.3.1)
//!   or in the form: `grant_type=client_credentials` is a login on the model (a wrong secret is a login
//!   with wrong credentials: 401 `invalid_client`); `grant_type=refresh_token` a refresh, when the model
//!   has refresh tokens. Answers `{access_token, token_type: "Bearer", expires_in[, refresh_token,
//!   refresh_token_expires_in]}`; errors `{"error":…,"error_description":…}`, 429 with `Retry-After`.
//! - `GET /api/v1/quote` (kind `quote`), `GET /api/v1/orders` (`orders`), `POST /api/v1/orders`
//!   (`order`, JSON, client order id `client_order_id`), `GET /api/v1/positions` (`positions`), with
//!   `Authorization: Bearer …`; a dead token: 401 with `WWW-Authenticate: Bearer error="invalid_token"`
//!   and `{"error":"invalid_token",…}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;
use warden_engine::BrokerError;

use super::common::{
    self, Counters, OrderRecord, auth_failure, bad_request, field, form_pairs, header_str, json, json_body,
    json_fields, order_identity, status_of, with_header, with_retry_after,
};
use super::{Account, OAuth2Account, Shared};
use crate::model::{CODE_INVALID_CREDENTIALS, CODE_INVALID_GRANT, CODE_RESPONSE_LOST, CallKind, LoginAttempt};

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/token", post(token))
        .route("/api/v1/quote", get(api))
        .route("/api/v1/orders", get(api).post(api))
        .route("/api/v1/positions", get(api))
}

fn account(shared: &Shared) -> Option<&OAuth2Account> {
    match &shared.account {
        Account::OAuth2(a) => Some(a),
        _ => None,
    }
}

fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    json(status, &json!({"error": code, "error_description": description}))
}

fn token_error(e: &BrokerError) -> Response {
    let status = status_of(e);
    let response = match (e.code.as_deref(), status) {
        (Some(CODE_INVALID_CREDENTIALS), _) => oauth_error(401, "invalid_client", &e.message),
        (Some(CODE_INVALID_GRANT), _) => oauth_error(400, "invalid_grant", &e.message),
        (_, 429) => oauth_error(429, "slow_down", "too many requests"),
        (_, s) if s >= 500 => oauth_error(s, "temporarily_unavailable", &e.message),
        (_, s) => oauth_error(s, "access_denied", &e.message),
    };
    with_retry_after(response, e.retry_after)
}

fn api_error(e: &BrokerError) -> Response {
    match status_of(e) {
        401 => {
            let response = oauth_error(401, "invalid_token", &e.message);
            with_header(response, "www-authenticate", r#"Bearer realm="mock", error="invalid_token""#)
        }
        429 => with_retry_after(oauth_error(429, "rate_limited", "too many requests"), e.retry_after),
        status => oauth_error(status, e.code.as_deref().unwrap_or("error"), &e.message),
    }
}

/// The client's id and secret: HTTP Basic (form-encoded parts), else the form.
fn client(headers: &HeaderMap, form: &[(String, String)]) -> Option<(String, String)> {
    if let Some(basic) = header_str(headers, "authorization").and_then(|h| h.strip_prefix("Basic ")) {
        let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok()?).ok()?;
        let (id, secret) = text.split_once(':')?;
        let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return Some((decode(id)?, decode(secret)?));
    }
    Some((field(form, "client_id")?.to_owned(), field(form, "client_secret")?.to_owned()))
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let Some(account) = account(&shared) else { return oauth_error(500, "server_error", "not an OAuth2 mock") };
    let form = form_pairs(&body);
    let Some((id, secret)) = client(&headers, &form) else {
        return auth_failure(&shared, oauth_error(401, "invalid_client", "no client authentication"));
    };
    let right = id == account.client_id && secret == account.client_secret;
    let answer = match field(&form, "grant_type") {
        Some("client_credentials") => {
            let attempt = LoginAttempt { wrong_credentials: !right, ..LoginAttempt::default() };
            common::judge(&shared, CallKind::Login, |trip| shared.model.judge_login(trip, attempt)).await
        }
        Some("refresh_token") => {
            let Some(refresh) = field(&form, "refresh_token") else {
                return bad_request(&shared, oauth_error(400, "invalid_request", "refresh_token is required"));
            };
            if !right {
                return auth_failure(&shared, oauth_error(401, "invalid_client", "unknown client or wrong secret"));
            }
            common::judge(&shared, CallKind::Refresh, |trip| shared.model.judge_refresh(trip, refresh)).await
        }
        _ => {
            let description = "grant_type must be client_credentials or refresh_token";
            return bad_request(&shared, oauth_error(400, "unsupported_grant_type", description));
        }
    };
    match answer {
        Ok(grant) => {
            let now = shared.now();
            let seconds = |t: Option<warden_engine::UnixMs>| t.map(|t| t.saturating_duration_since(now).as_secs());
            let mut body = json!({"access_token": grant.access_token.expose(), "token_type": "Bearer",
                "expires_in": seconds(grant.expires_at)});
            if let Some(refresh) = &grant.refresh_token {
                body["refresh_token"] = json!(refresh.expose());
                body["refresh_token_expires_in"] = json!(seconds(grant.refresh_expires_at));
            }
            json(200, &body)
        }
        Err(e) => token_error(&e),
    }
}

async fn api(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&shared.counters.http_requests);
    let token =
        header_str(&headers, "authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default().to_owned();
    let path = uri.path();
    let order = method == Method::POST;
    let mut request = serde_json::Value::Null;
    if order {
        request = match json_body(&body) {
            Ok(value) if value.is_object() => value,
            Ok(_) => {
                return bad_request(&shared, oauth_error(400, "invalid_request", "the body must be a JSON object"));
            }
            Err(problem) => return bad_request(&shared, oauth_error(400, "invalid_request", &problem)),
        };
        for required in ["symbol", "side", "quantity"] {
            if request.get(required).is_none() {
                return bad_request(&shared, oauth_error(400, "invalid_request", &format!("`{required}` is required")));
            }
        }
    }
    let (kind, idempotent) = match path {
        _ if order => ("order", false),
        "/api/v1/quote" => ("quote", true),
        "/api/v1/orders" => ("orders", true),
        _ => ("positions", true),
    };
    let client_order_id = request.get("client_order_id").and_then(|c| c.as_str()).map(str::to_owned);
    let op_id = if order { order_identity(client_order_id.as_deref(), &json_fields(&request)) } else { 0 };
    let result = common::judge_request(&shared, &token, shared.kind_of(kind, idempotent), idempotent, op_id).await;
    let mut order_id = None;
    if order && (result.is_ok() || result.as_ref().is_err_and(|e| e.code.as_deref() == Some(CODE_RESPONSE_LOST))) {
        let get = |k: &str| {
            request.get(k).map_or_else(String::new, |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        order_id = Some(shared.orders.record(OrderRecord {
            order_id: String::new(),
            client_order_id: client_order_id.clone(),
            instrument: get("symbol"),
            side: get("side"),
            quantity: get("quantity"),
            at_ms: shared.to_wire(shared.now()).as_millis(),
        }));
    }
    if let Err(e) = result {
        return api_error(&e);
    }
    let now = shared.to_wire(shared.now());
    match kind {
        "order" => json(201, &json!({"order_id": order_id, "client_order_id": client_order_id, "status": "filled"})),
        "quote" => {
            json(200, &json!({"symbol": "ACME", "price": common::price_at(100.0, now, 1), "at_ms": now.as_millis()}))
        }
        "orders" => json(200, &json!({"orders": shared.orders.all()})),
        _ => json(200, &json!({"positions": []})),
    }
}
