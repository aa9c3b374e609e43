//! The HTTP transport of the runner (`transport = "http"`): every session's broker model is served by a
//! mock broker on 127.0.0.1 (`crate::mock`), and warden talks to it through the broker's real adapter
//! (`warden_adapters::broker`) over loopback, in real time from the scenario's `start`.
//!
//! The models are the same values the virtual transport uses — the mock judges each wire call on them
//! — so the report's broker-side counts mean the same. The workload's requests are the broker's quote
//! (an idempotent mix entry) or its order (a non-idempotent one, with client order id `w<op>`), sent
//! through the adapter's `send` inside `SessionHandle::execute`. A login that needs a person's code
//! (Kite's request token, Saxo's authorization code) gets one code at the start, as if a person had
//! logged in just before; later ones come from `[operator] login_codes`.

use warden_adapters::broker::{HttpClient, HttpSettings};
use warden_engine::{BrokerError, Credentials, Grant, UnixMs};

use crate::mock::client::{CLIENT_TIMEOUT, MockClient};
use crate::mock::{MockBroker, MockConfig, StreamSettings};
use crate::model::{BrokerModel, ModelRequest};
use crate::scenario::Scenario;

/// The mock brokers of a run and the adapters that talk to them, one per session.
pub(crate) struct HttpWorld {
    mocks: Vec<MockBroker>,
    pub(crate) clients: Vec<MockClient>,
    /// What each session logs in with.
    pub(crate) credentials: Vec<Credentials>,
}

impl HttpWorld {
    /// Starts a mock per model and builds its adapter.
    pub(crate) async fn start(
        scenario: &Scenario,
        models: &[BrokerModel],
        clock: &warden_actors::Clock,
    ) -> Result<HttpWorld, String> {
        let http = HttpClient::new(HttpSettings {
            connect_timeout: std::time::Duration::from_secs(2),
            request_timeout: CLIENT_TIMEOUT,
            ..HttpSettings::default()
        })
        .map_err(|e| e.to_string())?;
        let kinds: Vec<(String, bool)> = scenario.workload.mix.iter().map(|m| (m.kind.clone(), m.idempotent)).collect();
        let mut world = HttpWorld { mocks: Vec::new(), clients: Vec::new(), credentials: Vec::new() };
        for model in models {
            let mut config = MockConfig::demo(model.clone(), clock.clone()).map_err(|e| e.to_string())?;
            config.latency = true;
            config.kinds = kinds.clone();
            config.streams = StreamSettings::default();
            let mock = MockBroker::start(config).await.map_err(|e| e.to_string())?;
            let client = MockClient::for_mock(&mock, http.clone(), clock.clone()).map_err(|e| e.to_string())?;
            world.credentials.push(client.first_login_credentials(&mock, clock.now()));
            world.clients.push(client);
            world.mocks.push(mock);
        }
        Ok(world)
    }

    /// A workload request of session `index` through its adapter: the broker's quote or order.
    pub(crate) async fn call(
        &self,
        index: usize,
        sent_at: UnixMs,
        grant: &Grant,
        request: &ModelRequest,
    ) -> Result<(), BrokerError> {
        let client = &self.clients[index];
        let wire = if request.idempotent {
            client.quote(grant)?
        } else {
            client.order(grant, &format!("w{}", request.op_id))?
        };
        client.send(sent_at, grant, wire).await.map(|_| ())
    }

    /// Signals every mock to stop (their servers end with the runtime).
    pub(crate) fn stop(&self) {
        for mock in &self.mocks {
            mock.signal_stop();
        }
    }
}
