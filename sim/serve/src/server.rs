//! The listener: plain HTTP or TLS (rustls), HTTP/1.1 and HTTP/2, and a shutdown that drains.
//!
//! A connection gets [`HANDSHAKE_TIMEOUT`] for its TLS handshake and [`HEADER_READ_TIMEOUT`] for each
//! request's headers, so a client that opens connections and sends nothing cannot hold them forever.
//!
//! [`Server::run`] accepts connections until its shutdown future completes, then:
//!
//! 1. stops accepting (the socket is closed: new connections are refused);
//! 2. ends every event stream (SSE and WebSocket clients see the end and reconnect elsewhere or later);
//! 3. lets each open connection finish the requests it has (idle keep-alive connections close) and waits
//!    for every proxied call still running, together at most `drain_timeout`;
//! 4. shuts the `Warden` down without logging out: actors stop, the store is flushed, and the sessions
//!    resume from their stored grants on the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::TlsFiles;
use crate::app::App;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client may take to send a request's headers (HTTP/1) before the connection is closed.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the service could not start or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {detail}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        detail: String,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Sessions could not be opened from the source.
    #[error("sessions: {0}")]
    Sessions(String),
    /// The listen address is not safe to serve as configured.
    #[error("{0}")]
    Unsafe(String),
}

/// A bound listener, ready to run.
pub struct Server {
    app: Arc<App>,
    router: Router,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    local: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local", &self.local).field("tls", &self.tls.is_some()).finish()
    }
}

/// A rustls acceptor for the certificate chain and key in `files` (PEM), offering h2 and http/1.1.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{}: no certificate in it", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(format!("the certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Server {
    /// Binds `listen`; with `tls`, connections are TLS.
    pub async fn bind(
        app: Arc<App>,
        router: Router,
        listen: SocketAddr,
        tls: Option<TlsFiles>,
    ) -> Result<Server, ServeError> {
        let tls = tls.as_ref().map(tls_acceptor).transpose()?;
        let listener =
            TcpListener::bind(listen).await.map_err(|e| ServeError::Bind { addr: listen, detail: e.to_string() })?;
        let local = listener.local_addr().map_err(|e| ServeError::Bind { addr: listen, detail: e.to_string() })?;
        Ok(Server { app, router, listener, tls, local })
    }

    /// The address it listens on (the port the system picked, for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` completes, then drains and stops (see the module documentation).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server { app, router, listener, tls, local } = self;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %local, scheme, sessions = app.registry.len(), "warden serve is listening");
        let graceful = GracefulShutdown::new();
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(router.clone());
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let served = match tls {
                    Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    },
                    None => {
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                };
                if let Err(error) = served {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
            });
        }
        drop(listener);
        let in_flight = app.in_flight.len();
        tracing::info!(in_flight, "shutting down: no new connections; draining calls in flight");
        app.events.close();
        app.stopping.cancel();
        app.in_flight.close();
        let drained = tokio::time::timeout(app.config.drain_timeout, async {
            graceful.shutdown().await;
            app.in_flight.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                still_running = app.in_flight.len(),
                "drain_timeout passed with calls still in flight; stopping anyway"
            );
        }
        app.warden.shutdown(false).await;
        tracing::info!("stopped; sessions were not logged out and resume from the store on the next start");
        Ok(())
    }
}
