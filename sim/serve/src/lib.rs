//! warden_serve: `warden serve`, a local service that keeps broker sessions alive for trading engines
//! in any language.
//!
//! An engine written in Python (or anything that speaks HTTP) gets warden's guarantees — no dead token,
//! one re-login per herd, no duplicate order, no lock-out — by sending its broker calls through the
//! service's proxy, and an operator sees what every session is doing on a status page, an event stream
//! and `/metrics`. The service sits on top of the whole workspace: it is handed a
//! [`Warden`](warden_actors::Warden) and, per session, its `SessionHandle` and its adapter's
//! [`BrokerApi`](warden_adapters::broker::BrokerApi).
//!
//! - [`Service`] / [`ServiceBuilder`]: build the service from a `Warden`, the `[serve]` settings
//!   ([`ServeConfig`]), the bearer token, and sessions — handed in directly ([`ServedSession`]) or read
//!   from a [`SessionSource`] at start and on every reload.
//! - [`Server`]: the bound listener (plain or TLS); [`Server::run`] serves until its shutdown future
//!   completes, then drains and stops without logging out.
//! - [`ServeOptions`] and [`serve`]: what the `warden` binary fills in and runs.
//! - The routes: [`proxy`] (`ANY /proxy/{session}/{path…}`), [`api`] (status, commands, events, sign-in,
//!   health, metrics, page), [`auth`] (bearer token, cookie, CSRF), [`events`] (the numbered event log),
//!   [`metrics`], [`page`].
//!
//! `docs/serve.md` describes the routes and their answers; `docs/operations.md` running it.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod events;
pub mod file_source;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod service;
pub mod source;
pub mod stream;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, ServeConfig, ServeSession, TlsFiles};
pub use file_source::FileSource;
pub use registry::{Origin, Registry, ServedSession};
pub use server::{ServeError, Server};
pub use service::{ReloadError, Service, ServiceBuilder};
pub use source::{ReloadReport, SessionEntry, SessionSource, SourceError};
pub use view::SessionView;

/// Everything the `warden` binary decides before the service starts: the `[serve]` settings, where to
/// listen, the bearer token, the runtime and where its sessions come from.
pub struct ServeOptions {
    /// The `[serve]` table.
    pub config: ServeConfig,
    /// Where to listen (`--listen`, else `[serve] listen`).
    pub listen: SocketAddr,
    /// Serve a non-loopback address without TLS (`--allow-plain-http`, else `[serve] allow_plain_http`).
    pub allow_plain_http: bool,
    /// The bearer token.
    pub token: warden_engine::Secret,
    /// The runtime.
    pub warden: warden_actors::Warden,
    /// Sessions already open on the runtime, served as they are (reloads leave them alone).
    pub sessions: Vec<ServedSession>,
    /// Where sessions come from at start and on every reload (`POST /v1/reload`, SIGHUP).
    pub source: Option<Arc<dyn SessionSource>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("sessions", &self.sessions.len())
            .field("source", &self.source.as_ref().map(|s| s.describe()))
            .finish_non_exhaustive()
    }
}

/// Builds the service from `options`, binds it and serves until `shutdown` completes; `on_service` gets
/// the built service first (the binary hooks SIGHUP to its reload there).
pub async fn serve(
    options: ServeOptions,
    on_service: impl FnOnce(&Service),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut config = options.config;
    config.allow_plain_http |= options.allow_plain_http;
    config.check_listen(options.listen).map_err(ServeError::Unsafe)?;
    let tls = config.tls.clone();
    let mut builder = Service::builder(options.warden, config, options.token);
    for session in options.sessions {
        builder = builder.session(session);
    }
    if let Some(source) = options.source {
        builder = builder.source(source);
    }
    let service = builder.build().await?;
    on_service(&service);
    let server = service.bind(options.listen, tls).await?;
    server.run(shutdown).await
}
