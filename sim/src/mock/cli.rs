//! `warden-sim mock-broker`: one mock broker as a product — a broker's wire protocol on 127.0.0.1 with
//! a scenario's faults in real time, for a client in any language.
//!
//! Without a scenario the mock serves the broker model's defaults on the real clock. With one, the
//! model is the scenario's (`[broker]`: lifetimes, scheduled early expiries, silent de-authentications,
//! competing logins, outages, rate limits, …) and its timeline starts now: the model's clock reads the
//! scenario's `start` at the moment the mock starts and runs in real time from there, and every time
//! the mock writes on the wire (a JWT's `exp`, an IBKR expiration, a Kite login time) is translated back
//! to the real clock the client runs on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use warden_actors::Clock;
use warden_engine::UnixMs;

use super::{Account, MockBroker, MockConfig, MockError, MockStats, StreamSettings};
use crate::model::{BrokerModel, BrokerSpec, ModelKind};
use crate::scenario::Scenario;

/// What `mock-broker` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The broker model.
    pub kind: ModelKind,
    /// The port (0: a free one).
    pub port: u16,
    /// A scenario whose `[broker]` the mock plays, from its `start`, in real time.
    pub scenario: Option<Scenario>,
    /// An account folder (`Account::load`); `None`: the demo account.
    pub creds: Option<PathBuf>,
    /// Wait the model's latencies.
    pub latency: bool,
    /// The model's seed (the scenario's if it has one).
    pub seed: u64,
    /// IBKR: sign as this origin.
    pub sign_as: Option<String>,
    /// Streams.
    pub streams: StreamSettings,
}

/// Why `mock-broker` could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The mock could not start.
    #[error(transparent)]
    Mock(#[from] MockError),
    /// The scenario models another broker.
    #[error("the scenario models `{scenario}` but --broker says `{broker}`")]
    BrokerMismatch {
        /// The scenario's model.
        scenario: ModelKind,
        /// `--broker`.
        broker: ModelKind,
    },
}

/// A clock that reads `start` now and runs in real time from there, and the offset from the real clock
/// (model time minus real time, in milliseconds).
pub fn clock_starting_at(start: UnixMs) -> (Clock, i64) {
    let system = Clock::system();
    let offset_ms = start.as_millis().saturating_sub(system.now().as_millis());
    let source = Arc::new(move || UnixMs::from_millis(system.now().as_millis().saturating_add(offset_ms)));
    (Clock::from_source(source, Duration::from_secs(1)), offset_ms)
}

/// The model name `--broker` takes (`kite` and `kotak` are accepted for `zerodha` and `kotak-neo`).
pub fn broker_kind(name: &str) -> Option<ModelKind> {
    match name {
        "kite" => Some(ModelKind::Zerodha),
        "kotak" => Some(ModelKind::KotakNeo),
        other => ModelKind::from_name(other),
    }
}

/// Starts the mock `options` describe.
pub async fn start(options: &ServeOptions) -> Result<MockBroker, ServeError> {
    let (model, clock, offset, kinds) = match &options.scenario {
        Some(scenario) => {
            if scenario.broker.kind != options.kind {
                return Err(ServeError::BrokerMismatch { scenario: scenario.broker.kind, broker: options.kind });
            }
            let (clock, offset) = clock_starting_at(scenario.start);
            let kinds = scenario.workload.mix.iter().map(|m| (m.kind.clone(), m.idempotent)).collect();
            (scenario.model(0), clock, offset, kinds)
        }
        None => {
            let model = BrokerModel::new(BrokerSpec::preset(options.kind), options.seed);
            (model, Clock::system(), 0, Vec::new())
        }
    };
    let account = match &options.creds {
        Some(dir) => Account::load(options.kind, dir)?,
        None => Account::demo(options.kind)?,
    };
    let config = MockConfig {
        model,
        account,
        clock,
        wire_offset_ms: offset,
        port: options.port,
        latency: options.latency,
        kinds,
        streams: options.streams,
        sign_as: options.sign_as.clone(),
    };
    Ok(MockBroker::start(config).await?)
}

/// What a person needs to point a client at the mock: the base URL, the account, the routes to try.
pub fn banner(mock: &MockBroker, demo: bool) -> Vec<String> {
    let base = mock.base_url();
    let mut lines = vec![format!("mock {} listening on {base}", mock.model().spec().kind.name())];
    let account = mock.account();
    let credentials = account.client_credentials();
    let mut names: Vec<String> = credentials.names().map(str::to_owned).collect();
    names.sort();
    if demo {
        lines.push("demo account (client side):".to_owned());
        for name in &names {
            if let Some(value) = credentials.get(name) {
                lines.push(format!("  {name} = {}", value.expose()));
            }
        }
        if matches!(account, Account::Ibkr(_)) {
            lines.push("  keys and encrypted secret: sim/fixtures/ibkr-demo/client/".to_owned());
        }
    }
    let hint = match account {
        Account::Kite(a) => {
            format!("request token: GET {base}/connect/login?v=3&api_key={}  (kiteconnect root={base})", a.api_key)
        }
        Account::Saxo(a) => format!(
            "authorization code: GET {base}/authorize?response_type=code&client_id={}&redirect_uri={}",
            a.app_key, a.redirect_uri
        ),
        Account::Kotak(_) => format!("login_url = {base} (tradeApiLogin, then tradeApiValidate)"),
        Account::Ibkr(_) => format!("base_url = {base}/v1/api"),
        Account::OAuth2(_) => format!("token_url = {base}/oauth2/token"),
    };
    lines.push(hint);
    lines
        .push(format!("control: GET {base}/__mock/stats, POST {base}/__mock/invalidate, GET {base}/__mock/login-code"));
    lines
}

/// Serves until `stop` resolves, and returns what the mock counted.
pub async fn serve_until(mock: MockBroker, stop: impl std::future::Future<Output = ()>) -> MockStats {
    stop.await;
    let stats = mock.stats();
    mock.stop().await;
    stats
}
