//! Building each configured session's broker adapter: [`AdapterFactory`].
//!
//! Sessions with the same HTTP settings share one [`HttpClient`] (one connection pool, one allowance
//! book); a session with its own timeouts gets its own. IBKR's adapter signs requests with a wall clock,
//! which the runtime passes in (this crate never reads a clock).

use std::sync::Arc;

use warden_engine::Broker;

use super::{AdapterConfig, ConfigError, ConfiguredSession};
use crate::broker::{HttpClient, HttpSettings, Ibkr, Kite, KotakNeo, OAuth2ClientCredentials, Saxo};
use crate::store::WallClock;

/// A built adapter, as its own type (for calls through its `send` and its URLs) and as a [`Broker`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Adapter {
    /// Saxo OpenAPI.
    Saxo(Arc<Saxo>),
    /// Interactive Brokers Web API.
    Ibkr(Arc<Ibkr>),
    /// Kotak Neo Trade API.
    KotakNeo(Arc<KotakNeo>),
    /// Zerodha Kite Connect.
    Kite(Arc<Kite>),
    /// OAuth 2.0 client credentials.
    OAuth2(Arc<OAuth2ClientCredentials>),
}

impl Adapter {
    /// The adapter as the engine's `Broker` port.
    pub fn broker(&self) -> Arc<dyn Broker> {
        match self {
            Adapter::Saxo(a) => a.clone(),
            Adapter::Ibkr(a) => a.clone(),
            Adapter::KotakNeo(a) => a.clone(),
            Adapter::Kite(a) => a.clone(),
            Adapter::OAuth2(a) => a.clone(),
        }
    }

    /// Its HTTP client.
    pub fn http(&self) -> &HttpClient {
        match self {
            Adapter::Saxo(a) => a.http(),
            Adapter::Ibkr(a) => a.http(),
            Adapter::KotakNeo(a) => a.http(),
            Adapter::Kite(a) => a.http(),
            Adapter::OAuth2(a) => a.http(),
        }
    }
}

/// Builds adapters for configured sessions, sharing HTTP clients between sessions with equal settings.
pub struct AdapterFactory {
    clients: Vec<(HttpSettings, HttpClient)>,
    clock: WallClock,
}

impl std::fmt::Debug for AdapterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterFactory").field("clients", &self.clients.len()).finish_non_exhaustive()
    }
}

impl AdapterFactory {
    /// A factory whose IBKR adapters sign with `clock`.
    pub fn new(clock: WallClock) -> AdapterFactory {
        AdapterFactory { clients: Vec::new(), clock }
    }

    /// The HTTP client for `settings`: an existing one with equal settings, or a new one.
    fn client(&mut self, settings: &HttpSettings) -> Result<HttpClient, crate::broker::AdapterError> {
        if let Some((_, client)) = self.clients.iter().find(|(s, _)| s == settings) {
            return Ok(client.clone());
        }
        let client = HttpClient::new(settings.clone())?;
        self.clients.push((settings.clone(), client.clone()));
        Ok(client)
    }

    /// The session's adapter. An error (a setting the adapter refuses) is located at the session.
    pub fn build(&mut self, session: &ConfiguredSession) -> Result<Adapter, ConfigError> {
        let located = |e: crate::broker::AdapterError| ConfigError::from(session.place.problem(e));
        let http = self.client(&session.http).map_err(located)?;
        Ok(match &session.adapter {
            AdapterConfig::Saxo(s) => Adapter::Saxo(Arc::new(Saxo::new(s.clone(), http).map_err(located)?)),
            AdapterConfig::Ibkr(s) => {
                Adapter::Ibkr(Arc::new(Ibkr::new(s.clone(), http, self.clock.clone()).map_err(located)?))
            }
            AdapterConfig::KotakNeo(s) => Adapter::KotakNeo(Arc::new(KotakNeo::new(s.clone(), http).map_err(located)?)),
            AdapterConfig::Kite(s) => Adapter::Kite(Arc::new(Kite::new(s.clone(), http).map_err(located)?)),
            AdapterConfig::OAuth2(s) => {
                Adapter::OAuth2(Arc::new(OAuth2ClientCredentials::new(s.clone(), http).map_err(located)?))
            }
        })
    }
}
