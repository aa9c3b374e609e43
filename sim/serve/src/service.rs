//! [`Service`]: the service built from a `Warden`, its sessions and the `[serve]` settings; its router
//! with the layers every route shares; reloads.
//!
//! ```no_run
//! # async fn demo(warden: warden_actors::Warden, handle: warden_actors::SessionHandle,
//! #               api: std::sync::Arc<dyn warden_adapters::broker::BrokerApi>) -> Result<(), Box<dyn std::error::Error>> {
//! use warden_engine::Secret;
//! use warden_serve::{ServeConfig, ServedSession, Service};
//!
//! let token = Secret::new("a-long-random-bearer-token-of-32-characters-or-more");
//! let service = Service::builder(warden, ServeConfig::default(), token)
//!     .session(ServedSession::new(handle, api))
//!     .build()
//!     .await?;
//! let server = service.bind(ServeConfig::default().listen, None).await?;
//! server.run(std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! The layers, outermost first: tracing (method and path, never the query or a header), the body limit
//! (`max_request_bytes`, refused by `Content-Length` before reading and while reading), then per group of
//! routes: `/healthz` open; everything else behind the auth layer; the API routes under a time limit
//! (`request_timeout`, 408 past it); the proxy under its own (`proxy_timeout`, see [`crate::proxy`]); the
//! event streams and the broker stream relay ([`crate::stream`]) under none (they end at shutdown).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::auth::AsyncRequireAuthorizationLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use warden_actors::Warden;
use warden_actors::stream::StreamSettings;
use warden_engine::Secret;

use crate::app::App;
use crate::auth::{Auth, Authorizer};
use crate::config::ServeConfig;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::page::Page;
use crate::registry::{Registry, ServedSession};
use crate::server::{ServeError, Server};
use crate::source::{ReloadReport, SessionSource, SourceError, apply};
use crate::{api, proxy};

/// Why a reload did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The service has no session source.
    #[error("this service has no session source to reload from")]
    NoSource,
    /// The source could not be read; nothing was changed.
    #[error("the session source could not be read, nothing was changed: {0}")]
    Source(#[from] SourceError),
}

/// Builds a [`Service`].
pub struct ServiceBuilder {
    warden: Warden,
    config: ServeConfig,
    token: Secret,
    sessions: Vec<ServedSession>,
    source: Option<Arc<dyn SessionSource>>,
    secure_cookie: Option<bool>,
    /// Subscribed when the builder is made, so that sessions opened after it have all their events
    /// numbered.
    warden_events: tokio::sync::broadcast::Receiver<warden_actors::WardenEvent>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder").field("sessions", &self.sessions.len()).finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    /// Serves `session` (already open on the `Warden`); reloads leave it alone.
    #[must_use]
    pub fn session(mut self, session: ServedSession) -> ServiceBuilder {
        self.sessions.push(session);
        self
    }

    /// Reads sessions from `source` at start and on every reload.
    #[must_use]
    pub fn source(mut self, source: Arc<dyn SessionSource>) -> ServiceBuilder {
        self.source = Some(source);
        self
    }

    /// Whether the browser cookie is `Secure` (default: when `[serve.tls]` is configured).
    #[must_use]
    pub fn secure_cookie(mut self, secure: bool) -> ServiceBuilder {
        self.secure_cookie = Some(secure);
        self
    }

    /// Builds the service: opens the source's sessions, starts the event pump. Call inside a tokio runtime.
    pub async fn build(self) -> Result<Service, ServeError> {
        let clock = self.warden.clock();
        let config = self.config;
        let secure = self.secure_cookie.unwrap_or(config.tls.is_some());
        let events = Arc::new(EventLog::new(
            clock.clone(),
            config.events_kept,
            config.events_kept_for,
            config.max_event_subscribers,
        ));
        let warden_events = self.warden_events;
        let streams = warden_actors::stream::Streams::new(&self.warden, StreamSettings::default());
        let app = Arc::new(App {
            streams,
            stream_relays: Arc::default(),
            warden: self.warden,
            clock: clock.clone(),
            registry: Registry::default(),
            events,
            auth: Arc::new(Auth::new(&self.token, config.browser_session_ttl, secure, clock)),
            page: Arc::new(Page::new()),
            metrics: Metrics::new(),
            notifier: Notifier::start(config.webhook.clone(), config.webhook_timeout),
            source: self.source,
            reload_lock: tokio::sync::Mutex::new(()),
            config,
            in_flight: TaskTracker::new(),
            stopping: CancellationToken::new(),
        });
        app.start_background(warden_events);
        for session in self.sessions {
            app.registry.insert(session);
        }
        if app.source.is_some() {
            let report = reload(&app).await.map_err(|e| ServeError::Sessions(e.to_string()))?;
            if !report.failed.is_empty() {
                let failed: Vec<String> =
                    report.failed.iter().map(|f| format!("{}: {}", f.session, f.detail)).collect();
                return Err(ServeError::Sessions(failed.join("; ")));
            }
        }
        Ok(Service { app })
    }
}

/// The service: cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct Service {
    app: Arc<App>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("app", &self.app).finish()
    }
}

impl Service {
    /// A builder over `warden`, with the `[serve]` settings and the bearer token. It subscribes to the
    /// warden's events at once: make it before opening the sessions it will serve, and their first events
    /// (the first login) are on `/v1/events` too.
    pub fn builder(warden: Warden, config: ServeConfig, token: Secret) -> ServiceBuilder {
        let warden_events = warden.events();
        ServiceBuilder { warden, config, token, sessions: Vec::new(), source: None, secure_cookie: None, warden_events }
    }

    /// The router (every route and layer), for serving it another way or calling it in tests.
    pub fn router(&self) -> Router {
        router(self.app.clone())
    }

    /// The shared state (the registry, the event log, the metrics).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Re-reads the session source and applies it (see [`crate::source`]).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        reload(&self.app).await
    }

    /// Binds `listen` (with TLS when `tls` is given): ready to [`Server::run`].
    pub async fn bind(&self, listen: std::net::SocketAddr, tls: Option<crate::TlsFiles>) -> Result<Server, ServeError> {
        Server::bind(self.app.clone(), self.router(), listen, tls).await
    }
}

/// Reloads the session source into the registry (one reload at a time).
pub(crate) async fn reload(app: &App) -> Result<ReloadReport, ReloadError> {
    let source = app.source.clone().ok_or(ReloadError::NoSource)?;
    let _one_at_a_time = app.reload_lock.lock().await;
    let entries = source.load().await?;
    let report = apply(&app.warden, &app.registry, entries).await;
    tracing::info!(
        source = %source.describe(),
        added = report.added.len(),
        changed = report.changed.len(),
        removed = report.removed.len(),
        unchanged = report.unchanged.len(),
        failed = report.failed.len(),
        "sessions reloaded"
    );
    let text = format!(
        "sessions reloaded from {}: {} added, {} changed, {} removed, {} failed",
        source.describe(),
        report.added.len(),
        report.changed.len(),
        report.removed.len(),
        report.failed.len()
    );
    let data = serde_json::to_value(&report).unwrap_or_default();
    app.events.push(None, app.clock.now(), "reload", text, data);
    Ok(report)
}

/// Every route with its layers.
pub fn router(app: Arc<App>) -> Router {
    let config = &app.config;
    let api_routes = Router::new()
        .route("/", get(api::page))
        .route("/callback/{session}", get(api::page).post(api::callback))
        .route("/v1/sessions", get(api::sessions))
        .route("/v1/sessions/{id}", get(api::session))
        .route("/v1/sessions/{id}/history", get(api::history))
        .route("/v1/sessions/{id}/reset", post(api::reset))
        .route("/v1/sessions/{id}/second-factor", post(api::second_factor))
        .route("/v1/sessions/{id}/request-token", post(api::request_token))
        .route("/v1/sessions/{id}/credentials", post(api::credentials))
        .route("/v1/sessions/{id}/logout", post(api::logout))
        .route("/readyz", get(api::readyz))
        .route("/v1/reload", post(api::reload))
        .route("/v1/signin", post(api::signin))
        .route("/v1/signout", post(api::signout))
        .route("/v1/whoami", get(api::whoami))
        .route("/metrics", get(api::metrics))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout));
    let streams = Router::new()
        .route("/v1/events", get(api::events))
        .route("/v1/sessions/{id}/stream", get(crate::stream::stream));
    let proxied =
        Router::new().route("/proxy/{session}", any(proxy::proxy)).route("/proxy/{session}/{*path}", any(proxy::proxy));
    let authorizer = Authorizer::new(app.auth.clone(), app.page.clone());
    let protected = api_routes.merge(streams).merge(proxied).layer(AsyncRequireAuthorizationLayer::new(authorizer));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &axum::http::Request<_>| {
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
        })
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG));
    Router::new()
        .route("/healthz", get(api::healthz))
        .merge(protected)
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_request_bytes))
        .layer(trace)
        .with_state(app)
}

async fn not_found() -> (StatusCode, axum::Json<serde_json::Value>) {
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found", "detail": "no such route"})))
}
