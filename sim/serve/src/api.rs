//! The status API, the operator's commands, the event streams, sign-in, `/healthz`, `/readyz`,
//! `/metrics`, the page and the login callback: small handlers over [`App`].
//!
//! | route | what |
//! | --- | --- |
//! | `GET /healthz` | the process is up (no auth) |
//! | `GET /readyz` | 200 when every session is ready, else 503 with those that are not and why |
//! | `GET /v1/sessions`, `GET /v1/sessions/{id}` | the [`SessionView`]s |
//! | `GET /v1/sessions/{id}/history?since=` | the transition log since a time (Unix ms or RFC 3339) |
//! | `POST /v1/sessions/{id}/reset` | `SessionHandle::reset` |
//! | `POST /v1/sessions/{id}/second-factor` `{"code": …}` | `SessionHandle::supply_second_factor` |
//! | `POST /v1/sessions/{id}/request-token` `{"request_token": …}` | the same, for Kite's request token |
//! | `POST /v1/sessions/{id}/credentials` `{"credentials": {name: value}}` | `SessionHandle::update_credentials` (replaces them all) |
//! | `POST /v1/sessions/{id}/logout` | `SessionHandle::logout` (logs out at the broker; the session stops) |
//! | `POST /v1/reload` | re-reads the session source (SIGHUP does the same) |
//! | `GET /v1/events` | Server-Sent Events, or a WebSocket when asked to upgrade; resume with `Last-Event-ID` |
//! | `POST /v1/signin`, `POST /v1/signout`, `GET /v1/whoami` | the browser page's cookie and CSRF token |
//! | `GET /metrics` | Prometheus text |
//! | `GET /`, `GET /callback/{session}` | the status page |
//! | `POST /callback/{session}` `{"code" or "request_token": …}` | a broker's login code from its browser login |
//!
//! Request bodies are parsed by hand so that a malformed one is refused without echoing any of it (a
//! serde message would quote the value it could not read — a code, a password).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warden_actors::{SessionHandle, WardenEventKind};
use warden_engine::{Credentials, RequestError, Secret, UnixMs};

use crate::app::App;
use crate::auth::Principal;
use crate::events::{Subscription, event_json};
use crate::registry::ServedSession;
use crate::view::SessionView;

/// How often an idle event stream sends a keep-alive.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// An error answer: status, a short code and a sentence.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, code, detail: detail.into() }
    }

    pub(crate) fn unknown(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_session", format!("no served session `{id}`"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.code, "detail": self.detail}))).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> ApiError {
        let status = match error {
            RequestError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            RequestError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, "session", error.to_string())
    }
}

fn served(app: &App, id: &str) -> Result<Arc<ServedSession>, ApiError> {
    app.registry.find(id).ok_or_else(|| ApiError::unknown(id))
}

/// Parses a JSON body into `T`; a failure names what was expected, never what was sent.
fn parse_body<T: DeserializeOwned>(body: &Bytes, expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("the body must be JSON like {expected}"))
    })
}

/// `GET /healthz`.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "up"}))
}

/// `GET /readyz`.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let views = app.views();
    let not_ready: Vec<Value> = views
        .iter()
        .filter(|v| !v.ready.ready)
        .map(|v| json!({"session": v.id, "state": v.state, "because": v.ready.because}))
        .collect();
    let status = if not_ready.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": not_ready.is_empty(), "sessions": views.len(), "not_ready": not_ready})))
        .into_response()
}

/// `GET /v1/sessions`.
pub async fn sessions(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"now_ms": app.clock.now().as_millis(), "sessions": app.views()}))
}

/// `GET /v1/sessions/{id}`.
pub async fn session(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<SessionView>, ApiError> {
    let served = served(&app, &id)?;
    Ok(Json(app.view_of(&served)))
}

/// The query of `GET /v1/sessions/{id}/history`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    since: Option<String>,
}

fn parse_since(text: &str) -> Result<UnixMs, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(UnixMs::from_millis(ms));
    }
    text.parse::<jiff::Timestamp>().map(UnixMs::from_timestamp).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "`since` must be Unix milliseconds or an RFC 3339 time")
    })
}

/// `GET /v1/sessions/{id}/history?since=`.
pub async fn history(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let served = served(&app, &id)?;
    let since = query.since.as_deref().map(parse_since).transpose()?;
    let events: Vec<Value> = app
        .history(served.id())
        .into_iter()
        .filter(|e| since.is_none_or(|since| e.at >= since))
        .map(|event| {
            let kind = WardenEventKind::Session(event.kind);
            let (name, data) = event_json(&kind);
            json!({"at": event.at.to_string(), "at_ms": event.at.as_millis(), "type": name, "text": kind.to_string(),
                   "data": data})
        })
        .collect();
    Ok(Json(json!({"session": id, "events": events})))
}

fn accepted(handle: &SessionHandle, command: &str) -> Response {
    let status = handle.status();
    let body = json!({"session": handle.id().as_str(), "accepted": command, "state": status.state,
                      "generation": status.generation.0});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `POST /v1/sessions/{id}/reset`.
pub async fn reset(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let served = served(&app, &id)?;
    served.handle.reset().await?;
    tracing::info!(session = %id, "reset by an operator");
    Ok(accepted(&served.handle, "reset"))
}

#[derive(Deserialize)]
struct CodeBody {
    code: Secret,
}

#[derive(Deserialize)]
struct RequestTokenBody {
    request_token: Secret,
}

#[derive(Deserialize)]
struct CredentialsBody {
    credentials: std::collections::BTreeMap<String, Secret>,
}

/// `POST /v1/sessions/{id}/second-factor` with `{"code": "…"}`.
pub async fn second_factor(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let served = served(&app, &id)?;
    let CodeBody { code } = parse_body(&body, "{\"code\": \"…\"}")?;
    served.handle.supply_second_factor(code).await?;
    tracing::info!(session = %id, "second factor handed in by an operator");
    Ok(accepted(&served.handle, "second-factor"))
}

/// `POST /v1/sessions/{id}/request-token` with `{"request_token": "…"}` (Kite's daily login).
pub async fn request_token(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let served = served(&app, &id)?;
    let RequestTokenBody { request_token } = parse_body(&body, "{\"request_token\": \"…\"}")?;
    served.handle.supply_second_factor(request_token).await?;
    tracing::info!(session = %id, "request token handed in by an operator");
    Ok(accepted(&served.handle, "request-token"))
}

/// `POST /v1/sessions/{id}/credentials` with `{"credentials": {"name": "value", …}}`.
pub async fn credentials(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let served = served(&app, &id)?;
    let CredentialsBody { credentials } = parse_body(&body, "{\"credentials\": {\"name\": \"value\"}}")?;
    let names: Vec<String> = credentials.keys().cloned().collect();
    let credentials = credentials.into_iter().fold(Credentials::new(), |c, (name, value)| c.with(name, value));
    served.handle.update_credentials(credentials).await?;
    tracing::info!(session = %id, fields = ?names, "credentials replaced by an operator");
    Ok(accepted(&served.handle, "credentials"))
}

/// `POST /v1/sessions/{id}/logout`.
pub async fn logout(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let served = served(&app, &id)?;
    served.handle.logout().await?;
    tracing::info!(session = %id, "logged out by an operator");
    Ok(accepted(&served.handle, "logout"))
}

#[derive(Deserialize)]
struct CallbackBody {
    code: Option<Secret>,
    request_token: Option<Secret>,
}

/// `POST /callback/{session}`: a login code from the broker's browser login (Saxo's `code`, Kite's
/// `request_token`), posted by the page the redirect landed on.
pub async fn callback(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let served = served(&app, &id)?;
    let CallbackBody { code, request_token } = parse_body(&body, "{\"code\": \"…\"} or {\"request_token\": \"…\"}")?;
    let Some(code) = code.or(request_token).filter(|c| !c.is_empty()) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "no `code` or `request_token`"));
    };
    served.handle.supply_second_factor(code).await?;
    tracing::info!(session = %id, "login code handed in from the broker's redirect");
    Ok(accepted(&served.handle, "callback"))
}

/// `POST /v1/reload`.
pub async fn reload(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    match crate::service::reload(&app).await {
        Ok(report) => Ok(Json(json!(report))),
        Err(error) => Err(ApiError::new(StatusCode::CONFLICT, "reload", error.to_string())),
    }
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.views());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /` and `GET /callback/{session}`.
pub async fn page(State(app): State<Arc<App>>) -> Response {
    app.page.response()
}

/// `POST /v1/signin` (with the bearer token): sets the browser cookie, returns the CSRF token.
pub async fn signin(State(app): State<Arc<App>>, principal: Option<axum::Extension<Principal>>) -> Response {
    if principal.map(|p| p.0) != Some(Principal::Bearer) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in with the bearer token")
            .into_response();
    }
    match app.auth.sign_in() {
        Some(sign_in) => {
            let mut response = Json(json!({"csrf": sign_in.csrf})).into_response();
            if let Ok(cookie) = HeaderValue::from_str(&sign_in.set_cookie) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "randomness", "no system randomness").into_response(),
    }
}

/// `POST /v1/signout`.
pub async fn signout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let cookie = app.auth.sign_out(&headers);
    let mut response = Json(json!({"signed_out": true})).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /v1/whoami`: how the caller is signed in, and the browser's CSRF token.
pub async fn whoami(
    State(app): State<Arc<App>>,
    principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
) -> Response {
    let via = match principal.map(|p| p.0) {
        Some(Principal::Browser) => "browser",
        _ => "bearer",
    };
    let csrf = (via == "browser").then(|| app.auth.csrf_of(&headers)).flatten();
    let mut response = Json(json!({"via": via, "csrf": csrf})).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    last_event_id: Option<String>,
}

/// `GET /v1/events`: Server-Sent Events, or a WebSocket when the request asks to upgrade. Resumes after
/// the `Last-Event-ID` header (or `?last_event_id=`).
pub async fn events(State(app): State<Arc<App>>, query: Query<EventsQuery>, request: Request) -> Response {
    let header_id = request.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let last_seen = match header_id.or(query.0.last_event_id).map(|text| text.trim().parse::<u64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "Last-Event-ID must be an event number")
                .into_response();
        }
    };
    let wants_socket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let subscription = match app.events.subscribe(last_seen) {
        Ok(subscription) => subscription,
        Err(error) => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string()).into_response(),
    };
    if wants_socket {
        return match WebSocketUpgrade::from_request(request, &app).await {
            Ok(upgrade) => upgrade.on_upgrade(move |socket| socket_events(socket, subscription)).into_response(),
            Err(rejection) => rejection.into_response(),
        };
    }
    let stream = futures_util::stream::unfold(subscription, |mut subscription| async move {
        let item = subscription.next().await?;
        let mut event = Event::default().data(item.json());
        if let Some(id) = item.id() {
            event = event.id(id.to_string());
        }
        Some((Ok::<Event, Infallible>(event), subscription))
    });
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE_INTERVAL)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn socket_events(mut socket: WebSocket, mut subscription: Subscription) {
    loop {
        tokio::select! {
            item = subscription.next() => match item {
                Some(item) => {
                    if socket.send(Message::Text(item.json().into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
