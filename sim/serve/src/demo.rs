//! `warden serve --demo`: a working service with nothing configured. [`DemoSource::start`] starts the
//! simulator's mock brokers in this process (Saxo, IBKR, Kotak Neo, Kite, OAuth2, each on a free port of
//! 127.0.0.1 with its demo account) and serves a session for each, through warden's real adapters, so
//! that a fresh machine shows the proxy, the status API, the events and the status page at work.
//!
//! The sessions are `saxo`, `ibkr`, `kotak-neo`, `kite` and `oauth2`; the runtime keeps its snapshots in
//! memory. The mocks are the same servers `warden-sim mock-broker` runs: their control routes
//! (`POST {mock}/__mock/invalidate` ends the session's token now, `GET {mock}/__mock/stats` counts what
//! the broker saw) are printed in the log at start, so an intraday invalidation can be played by hand and
//! watched on the page. Kite's and Saxo's first logins take a login code the demo asks its mock for (what
//! a person would get from the broker's login page); after Kite's daily cut-off the session waits for a
//! person, as a real one does (`GET {mock}/__mock/login-code`, then `POST /v1/sessions/kite/request-token`).
//! The `kite`, `kotak-neo` and `ibkr` sessions relay their mock's feed at `GET /v1/sessions/{id}/stream`.

use std::sync::Arc;

use warden_actors::stream::{IbkrStream, KiteTicker, KotakStream, StreamProtocol, StreamSpec};
use warden_actors::{Clock, SessionSpec};
use warden_adapters::broker::{BrokerApi, HttpClient, HttpSettings};
use warden_engine::{BoxFuture, SessionId};
use warden_sim::mock::client::{Adapter, MockClient};
use warden_sim::mock::{MockBroker, MockConfig, SERVED};
use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind};

use crate::source::{SessionEntry, SessionSource, SourceError};

/// The session id the demo gives a broker.
pub fn session_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Zerodha => "kite",
        other => other.name(),
    }
}

/// One demo broker: its mock and warden's adapter for it.
struct DemoBroker {
    mock: MockBroker,
    client: MockClient,
}

/// The mock brokers of the demo and a session for each.
pub struct DemoSource {
    brokers: Vec<DemoBroker>,
}

impl std::fmt::Debug for DemoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSource").field("brokers", &self.brokers.len()).finish()
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[error("the demo's mock {broker} broker could not start: {detail}")]
pub struct DemoError {
    /// The broker.
    pub broker: &'static str,
    /// Why.
    pub detail: String,
}

impl DemoSource {
    /// Starts a mock of every broker warden has an adapter for, on free ports of 127.0.0.1, on `clock`
    /// (a real-time clock: the mocks' sockets need one).
    pub async fn start(clock: Clock) -> Result<DemoSource, DemoError> {
        let mut brokers = Vec::with_capacity(SERVED.len());
        for (seed, kind) in (1u64..).zip(SERVED) {
            let failed = |detail: String| DemoError { broker: kind.name(), detail };
            let model = BrokerModel::new(BrokerSpec::preset(kind), seed);
            let config = MockConfig::demo(model, clock.clone()).map_err(|e| failed(e.to_string()))?;
            let mock = MockBroker::start(config).await.map_err(|e| failed(e.to_string()))?;
            let http = HttpClient::new(HttpSettings::default()).map_err(|e| failed(e.to_string()))?;
            let client = MockClient::for_mock(&mock, http, clock.clone()).map_err(|e| failed(e.to_string()))?;
            tracing::info!(
                session = session_name(kind),
                mock = mock.base_url(),
                "demo: mock broker (POST {}/__mock/invalidate ends its token now)",
                mock.base_url()
            );
            brokers.push(DemoBroker { mock, client });
        }
        Ok(DemoSource { brokers })
    }

    /// The base URL of the mock behind a demo session.
    pub fn mock_url(&self, session: &str) -> Option<&str> {
        self.brokers.iter().find(|b| session_name(b.mock.model().spec().kind) == session).map(|b| b.mock.base_url())
    }

    /// What the mock behind a demo session counted.
    pub fn mock_stats(&self, session: &str) -> Option<warden_sim::mock::MockStats> {
        self.brokers.iter().find(|b| session_name(b.mock.model().spec().kind) == session).map(|b| b.mock.stats())
    }

    fn entry(broker: &DemoBroker) -> Result<SessionEntry, SourceError> {
        let kind = broker.mock.model().spec().kind;
        let name = session_name(kind);
        let id = SessionId::new(name).map_err(|e| SourceError { origin: "demo".to_owned(), detail: e.to_string() })?;
        let credentials = broker.client.first_login_credentials(&broker.mock, broker.mock.now());
        let spec = SessionSpec::new(id, broker.client.broker()).with_credentials(credentials).with_seed(7);
        let base = broker.mock.base_url();
        let (api, root, login_url): (Arc<dyn BrokerApi>, Option<String>, Option<String>) = match broker.client.adapter()
        {
            Adapter::Saxo(a) => {
                (a.clone(), Some(format!("{base}/openapi/")), Some(format!("{base}/__mock/login-code")))
            }
            Adapter::Ibkr(a) => (a.clone(), None, None),
            Adapter::Kotak(a) => (a.clone(), None, None),
            Adapter::Kite(a) => (a.clone(), None, Some(format!("{base}/connect/login?v=3&api_key=mockkiteapikey"))),
            Adapter::OAuth2(a) => (a.clone(), Some(format!("{base}/")), None),
            _ => {
                let detail = format!("{name}: no proxy mapping for this mock's adapter");
                return Err(SourceError { origin: "demo".to_owned(), detail });
            }
        };
        let base_url = match root {
            Some(root) => Some(
                reqwest::Url::parse(&root)
                    .map_err(|e| SourceError { origin: "demo".to_owned(), detail: format!("{name}: {e}") })?,
            ),
            None => None,
        };
        // The mocks' feeds (Saxo's needs subscriptions made over HTTP with a context id: not relayed here).
        let addr = broker.mock.addr();
        let stream: Option<Arc<dyn StreamProtocol>> = match broker.client.adapter() {
            Adapter::Kite(_) => Some(Arc::new(KiteTicker::new(format!("ws://{addr}/ws")))),
            Adapter::Kotak(_) => Some(Arc::new(KotakStream::new(format!("ws://{addr}/realtime")))),
            Adapter::Ibkr(_) => Some(Arc::new(IbkrStream::new(format!("ws://{addr}/v1/api/ws")))),
            _ => None,
        };
        let stream = stream.map(StreamSpec::new);
        // The demo's configuration never changes: a reload leaves every session as it is.
        Ok(SessionEntry { spec, api, base_url, login_url, revision: "demo".to_owned(), stream })
    }
}

impl SessionSource for DemoSource {
    fn describe(&self) -> String {
        "the demo's mock brokers".to_owned()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<SessionEntry>, SourceError>> {
        Box::pin(async move { self.brokers.iter().map(DemoSource::entry).collect() })
    }
}
