//! `ANY /proxy/{session}/{path…}`: an engine's broker call, made with the session's grant.
//!
//! The call goes through `SessionHandle::execute`, so it gets warden's guarantees: a token the broker
//! accepts (waiting, bounded, for a login when there is none), the account's request limit, and rule 7 —
//! a call the broker rejected as unauthenticated runs again with a newer grant; nothing else is retried.
//! The adapter ([`BrokerApi`]) builds the URL from the session's API root and the path as the caller
//! wrote it (query included), puts the grant on, sends it in raw mode and reads the answer.
//!
//! - Idempotency: GET, HEAD and OPTIONS are idempotent. Any other method is not, unless the caller sends an
//!   `Idempotency-Key` and the adapter maps it to a de-duplication feature its broker documents (Saxo's
//!   `x-request-id` on order operations); then the call counts as idempotent. Otherwise the header changes
//!   nothing. The answer says which in `Warden-Idempotency: mapped | ignored`.
//! - Answers: the broker's answer, status, headers and body as sent (the grant's secrets scrubbed), with
//!   `Warden-Origin: broker`, `Warden-Session`, `Warden-Generation`; a broker's error answer also carries
//!   warden's reading of it in `Warden-Error-Class` (`auth_expired`, `permanent`, `rate_limited`, …).
//! - warden's own answers (`Warden-Origin: warden`, JSON `{"error": …, "detail": …}`): `outcome_unknown`
//!   (502: a call that is not idempotent got no answer, or a gateway's 500/502/504, or did not finish
//!   within `proxy_timeout` — the broker may have executed it; reconcile, do not resend), `no_answer`
//!   and `unreachable` (502, idempotent or never sent), `timeout` (504, idempotent), `rate_limited` (429:
//!   the account's request limit did not free up within the request timeout), `no_token` (503, with the
//!   session's state and why), `unknown_session` (404), `bad_request` (400).
//!
//! Forwarded: the caller's headers except hop-by-hop ones, `Host`, `Content-Length`, `Authorization` and
//! `Cookie` (warden's own credentials), `Accept-Encoding` (the adapter must read error bodies),
//! `Idempotency-Key`, `X-CSRF-Token` and `Warden-*`.
//!
//! Each call runs as a task the service tracks, so a caller that hangs up does not cancel an order half
//! way, and a shutdown waits for calls in flight (`drain_timeout`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, header};
use serde_json::json;
use warden_actors::ExecuteError;
use warden_adapters::broker::{ApiRequest, RawResponse, RequestBody};
use warden_engine::limits::Route;
use warden_engine::{Delivery, Idempotency, RequestError};

use crate::app::App;
use crate::view::class_label;

/// The `session` label of proxied calls to a session that is not served.
pub const UNKNOWN_SESSION_LABEL: &str = "_unknown";

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Request headers never forwarded to the broker.
const DROPPED_REQUEST_HEADERS: [&str; 17] = [
    "host",
    "content-length",
    "authorization",
    "cookie",
    "accept-encoding",
    "idempotency-key",
    "x-csrf-token",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Response headers never passed back (hop-by-hop; the length is recomputed).
const DROPPED_RESPONSE_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// What one attempt left behind for the answer.
#[derive(Default)]
struct Attempt {
    /// The broker's error answer, when it gave one.
    answer: Mutex<Option<RawResponse>>,
    /// The generation of the grant the last attempt used.
    generation: AtomicU64,
}

/// The handler.
pub async fn proxy(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let started = app.clock.monotonic_now();
    let (session, path) = split(uri.path());
    let response = forward(&app, session, path, method, &uri, headers, body).await;
    let elapsed = app.clock.monotonic_now().saturating_duration_since(started);
    // Only served sessions become labels: made-up names must not grow the metrics without bound.
    let label = if app.registry.find(session).is_some() { session } else { UNKNOWN_SESSION_LABEL };
    app.metrics.record_proxy(label, response.status().as_u16(), elapsed);
    response
}

/// `/proxy/{session}/{path}` → (`session`, `/path`), the path kept as written.
fn split(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix("/proxy/").unwrap_or_default();
    match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    }
}

/// Whether a path has a `.` or `..` segment, plainly or percent-encoded (it could leave the API root).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

async fn forward(
    app: &Arc<App>,
    session: &str,
    path: &str,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let Some(served) = app.registry.find(session) else {
        return warden_error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            format!("no served session `{session}`"),
            session,
        );
    };
    if has_dot_segment(path) {
        let detail = "the path has a `.` or `..` segment".to_owned();
        return warden_error(StatusCode::BAD_REQUEST, "bad_request", detail, session);
    }
    let key = match headers.get("idempotency-key").map(|v| v.to_str().map(str::to_owned)) {
        None => None,
        Some(Ok(key)) if valid_key(&key) => Some(key),
        Some(_) => {
            let detail = format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters");
            return warden_error(StatusCode::BAD_REQUEST, "bad_request", detail, session);
        }
    };
    let naturally_idempotent = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mapped = key.as_ref().is_some_and(|key| {
        let mut probe = ApiRequest::new(method.clone(), format!("http://proxy.invalid{path}"));
        served.api.apply_idempotency_key(&mut probe, key)
    });
    let idempotency = if naturally_idempotent || mapped { Idempotency::Idempotent } else { Idempotency::NonIdempotent };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let forwarded: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name != "content-type" && !name.starts_with("warden-") && !DROPPED_REQUEST_HEADERS.contains(&name)
        })
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    let request_body = if body.is_empty() && content_type.is_none() {
        RequestBody::Empty
    } else {
        RequestBody::Raw { content_type, bytes: body }
    };
    let path = path.to_owned();
    let query = uri.query().map(str::to_owned);
    let attempt = Arc::new(Attempt::default());
    let guard = app.metrics.counters(served.id()).start_call();
    let call = {
        let served = served.clone();
        let attempt = attempt.clone();
        let clock = app.clock.clone();
        let method = method.clone();
        let key = key.clone();
        async move {
            let api = served.api.clone();
            let base = served.base_url.clone();
            // The route the broker's endpoint classes are matched on (the path under the API root).
            let route_path = format!("/{}", path.trim_start_matches('/'));
            let route_method = method.clone();
            served
                .handle
                .execute_at(Route::new(route_method.as_str(), &route_path), idempotency, |lease| {
                    guard.waited();
                    let grant = lease.grant.clone();
                    attempt.generation.store(lease.generation.0, Ordering::Relaxed);
                    drop(lease);
                    let (api, base, attempt, clock) = (api.clone(), base.clone(), attempt.clone(), clock.clone());
                    let (method, path, query, key) = (method.clone(), path.clone(), query.clone(), key.clone());
                    let (headers, body) = (forwarded.clone(), request_body.clone());
                    async move {
                        attempt.answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                        let url = api.url(base.as_ref(), &grant, &path, query.as_deref())?;
                        let mut request = ApiRequest::new(method, url.as_str());
                        request.headers = headers;
                        request.body = body;
                        if let Some(key) = &key {
                            api.apply_idempotency_key(&mut request, key);
                        }
                        let answer = api.send_raw(clock.now(), &grant, request).await?;
                        match answer.error {
                            Some(error) => {
                                *attempt.answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(answer.response);
                                Err(error)
                            }
                            None => Ok(answer.response),
                        }
                    }
                })
                .await
        }
    };
    let task = app.in_flight.spawn(call);
    let result = match tokio::time::timeout(app.config.proxy_timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            tracing::error!(session, error = %join, "a proxied call's task failed");
            let detail = "the call's task failed; the broker may or may not have acted".to_owned();
            return unknown_outcome(detail, session);
        }
        Err(_) => {
            let limit = warden_engine::time::format_duration(app.config.proxy_timeout);
            tracing::warn!(session, method = %method, path = %split(uri.path()).1, "a proxied call ran past proxy_timeout");
            return match idempotency {
                Idempotency::NonIdempotent => unknown_outcome(
                    format!("the call did not finish within proxy_timeout ({limit}); it is still running"),
                    session,
                ),
                Idempotency::Idempotent => warden_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!("no answer within proxy_timeout ({limit})"),
                    session,
                ),
            };
        }
    };
    let generation = attempt.generation.load(Ordering::Relaxed);
    let stashed = attempt.answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let mut response = match result {
        Ok(raw) => passthrough(raw, None, session, generation),
        Err(error) => answer_error(error, stashed, session, generation, idempotency),
    };
    if key.is_some() {
        let value = if mapped { "mapped" } else { "ignored" };
        response.headers_mut().insert("warden-idempotency", HeaderValue::from_static(value));
    }
    response
}

fn answer_error(
    error: ExecuteError,
    stashed: Option<RawResponse>,
    session: &str,
    generation: u64,
    idempotency: Idempotency,
) -> Response<Body> {
    match error {
        ExecuteError::Broker { class, error } => match stashed {
            Some(raw) => passthrough(raw, Some(class_label(&class)), session, generation),
            _ => {
                let (status, code) = match error.delivery {
                    Delivery::NotSent => (StatusCode::BAD_GATEWAY, "unreachable"),
                    _ => (StatusCode::BAD_GATEWAY, "no_answer"),
                };
                let mut response = warden_error(status, code, error.message.clone(), session);
                let retry_safe = error.delivery == Delivery::NotSent || idempotency == Idempotency::Idempotent;
                set_class(&mut response, class_label(&class));
                response.headers_mut().insert("warden-retry-safe", HeaderValue::from_static(yes_no(retry_safe)));
                response
            }
        },
        ExecuteError::OutcomeUnknown(error) => unknown_outcome(error.message, session),
        ExecuteError::FreshTokenRefused { error, .. } => match stashed {
            Some(raw) => passthrough(raw, Some("fresh_token_refused"), session, generation),
            None => warden_error(StatusCode::BAD_GATEWAY, "fresh_token_refused", error.message, session),
        },
        ExecuteError::RateLimited { .. } => {
            let mut response = warden_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", error.to_string(), session);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        ExecuteError::Token(token) => {
            let reason = match &token {
                RequestError::Invalid(_) => "invalid",
                RequestError::Timeout(_) => "timeout",
                RequestError::Stopped => "stopped",
                RequestError::Overloaded { .. } => "overloaded",
                _ => "closed",
            };
            let mut response = warden_error(StatusCode::SERVICE_UNAVAILABLE, "no_token", token.to_string(), session);
            response.headers_mut().insert("warden-no-token", HeaderValue::from_static(reason));
            response
        }
        other => warden_error(StatusCode::BAD_GATEWAY, "error", other.to_string(), session),
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

fn set_class(response: &mut Response<Body>, class: &'static str) {
    response.headers_mut().insert("warden-error-class", HeaderValue::from_static(class));
}

/// The broker's answer as it sent it.
fn passthrough(raw: RawResponse, class: Option<&'static str>, session: &str, generation: u64) -> Response<Body> {
    let mut response = Response::new(Body::from(raw.body));
    *response.status_mut() = StatusCode::from_u16(raw.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in &raw.headers {
        if !DROPPED_RESPONSE_HEADERS.contains(&name.as_str()) && !name.as_str().starts_with("warden-") {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert("warden-origin", HeaderValue::from_static("broker"));
    if let Ok(value) = HeaderValue::from_str(session) {
        headers.insert("warden-session", value);
    }
    headers.insert(HeaderName::from_static("warden-generation"), HeaderValue::from(generation));
    if let Some(class) = class {
        set_class(&mut response, class);
    }
    response
}

fn unknown_outcome(detail: String, session: &str) -> Response<Body> {
    let body = json!({
        "error": "outcome_unknown",
        "session": session,
        "detail": detail,
        "hint": "the broker may or may not have executed this call; check its status (the order book) before \
                 sending it again",
    });
    let mut response = json_response(StatusCode::BAD_GATEWAY, &body, session);
    set_class(&mut response, "outcome_unknown");
    response.headers_mut().insert("warden-retry-safe", HeaderValue::from_static("no"));
    response
}

/// One of warden's own error answers.
fn warden_error(status: StatusCode, error: &str, detail: String, session: &str) -> Response<Body> {
    json_response(status, &json!({"error": error, "session": session, "detail": detail}), session)
}

fn json_response(status: StatusCode, body: &serde_json::Value, session: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("warden-origin", HeaderValue::from_static("warden"));
    if let Ok(value) = HeaderValue::from_str(session) {
        headers.insert("warden-session", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_keep_their_encoding_and_refuse_dot_segments() {
        assert_eq!(split("/proxy/kite-main/orders/regular"), ("kite-main", "/orders/regular"));
        assert_eq!(split("/proxy/kite-main"), ("kite-main", "/"));
        assert_eq!(split("/proxy/s/a%2Fb"), ("s", "/a%2Fb"));
        assert!(has_dot_segment("/a/../admin"));
        assert!(has_dot_segment("/a/%2E%2e/admin"));
        assert!(!has_dot_segment("/a/..b/c.d"));
        assert!(valid_key("order-2026-03-09-0001"));
        assert!(!valid_key("with space") && !valid_key("") && !valid_key(&"k".repeat(256)));
    }
}
