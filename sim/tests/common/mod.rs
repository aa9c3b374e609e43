//! Helpers the mock tests share: a mock of a model with short lifetimes (and fast streams), a real-time
//! warden, a policy for seconds-long tokens, requests through `SessionHandle::execute` and bounded waits.

#![allow(dead_code)] // each test binary uses a part

use std::sync::Arc;
use std::time::Duration;

use warden_actors::{Clock, ExecuteError, SessionHandle, SessionSpec, Warden};
use warden_adapters::broker::{HttpClient, HttpSettings};
use warden_engine::policy::{Backoff, Rate};
use warden_engine::time::HumanDuration;
use warden_engine::{Credentials, Idempotency, Policy, Preset, SessionId, StateKind};
use warden_sim::mock::client::MockClient;
use warden_sim::mock::{MockBroker, MockConfig, StreamSettings};
use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind, TokenExpiry};

/// A model's defaults with a token lifetime of `lifetime` (and, for models with one, a refresh token
/// living `refresh`), no daily reset, no idle timeout.
pub fn spec(kind: ModelKind, lifetime: Duration, refresh: Option<Duration>) -> BrokerSpec {
    let mut spec = BrokerSpec::preset(kind);
    spec.token_expiry = TokenExpiry::After(lifetime);
    if spec.refresh_lifetime.is_some() || refresh.is_some() {
        spec.refresh_lifetime = refresh;
    }
    spec.daily_reset = None;
    spec.weekly_reset = None;
    spec.idle_timeout = None;
    spec
}

/// A mock of `spec` with the demo account on a free port, on the system clock.
pub async fn mock(spec: BrokerSpec) -> MockBroker {
    let clock = Clock::system();
    let config = MockConfig::demo(BrokerModel::new(spec, 7), clock).expect("a served model");
    MockBroker::start(config).await.expect("the mock starts")
}

/// A mock of `spec` with fast streams: a tick every 100 ms, the broker's heartbeat every `heartbeat`,
/// the token checked every 50 ms, a client silent for 2 s closed (IBKR's `tic` rule, shortened).
pub async fn stream_mock(spec: BrokerSpec, heartbeat: Duration) -> MockBroker {
    let clock = Clock::system();
    let mut config = MockConfig::demo(BrokerModel::new(spec, 7), clock).expect("a served model");
    config.streams = StreamSettings {
        heartbeat: Some(heartbeat),
        tick: Duration::from_millis(100),
        token_check: Duration::from_millis(50),
        client_silence: Duration::from_secs(2),
        ..StreamSettings::default()
    };
    MockBroker::start(config).await.expect("the mock starts")
}

pub fn http() -> HttpClient {
    HttpClient::new(HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    })
    .expect("client")
}

/// The adapter for `mock`, on the system clock.
pub fn client(mock: &MockBroker) -> MockClient {
    MockClient::for_mock(mock, http(), Clock::system()).expect("adapter")
}

/// Hybrid for tokens of a few seconds: a short expiry margin and refresh lead, a fast backoff, room for
/// many logins, no daily cut-off.
pub fn policy(refresh_buffer: Duration, keepalive: Option<Duration>) -> Policy {
    let mut policy = Policy::preset(Preset::Hybrid);
    policy.refresh_buffer = Some(refresh_buffer);
    policy.expiry_margin = Duration::from_millis(200);
    policy.keepalive_interval = keepalive;
    policy.daily_cutoff = None;
    policy.min_grant_age = Duration::from_millis(300);
    policy.request_timeout = Duration::from_secs(10);
    policy.auth_timeout = Duration::from_secs(5);
    policy.reinitialize_delay = Duration::from_millis(100);
    policy.login_rate = Some(Rate { max: 100, per: HumanDuration(Duration::from_secs(60)) });
    policy.backoff = Backoff {
        min: HumanDuration(Duration::from_millis(100)),
        max: HumanDuration(Duration::from_secs(1)),
        multiplier: 2.0,
        jitter: 0.0,
    };
    policy
}

pub async fn warden() -> Warden {
    Warden::builder().memory_store().clock(Clock::system()).build().await.expect("warden")
}

pub async fn open(
    warden: &Warden,
    client: &MockClient,
    credentials: Credentials,
    policy: Policy,
    id: &str,
) -> SessionHandle {
    let spec = SessionSpec::new(SessionId::new(id).expect("id"), client.broker())
        .with_credentials(credentials)
        .with_policy(policy);
    warden.open(spec).await.expect("open")
}

/// A quote through `execute`.
pub async fn quote(handle: &SessionHandle, client: &MockClient) -> Result<(), ExecuteError> {
    let clock = Clock::system();
    handle
        .execute(Idempotency::Idempotent, |lease| {
            let client = client.clone();
            let clock = clock.clone();
            async move {
                let request = client.quote(&lease.grant)?;
                client.send(clock.now(), &lease.grant, request).await.map(|_| ())
            }
        })
        .await
}

/// An order with a client order id through `execute`.
pub async fn order(handle: &SessionHandle, client: &MockClient, client_order_id: &str) -> Result<(), ExecuteError> {
    let clock = Clock::system();
    let id = client_order_id.to_owned();
    handle
        .execute(Idempotency::NonIdempotent, |lease| {
            let client = client.clone();
            let clock = clock.clone();
            let id = id.clone();
            async move {
                let request = client.order(&lease.grant, &id)?;
                client.send(clock.now(), &lease.grant, request).await.map(|_| ())
            }
        })
        .await
}

/// Waits (polling every 20 ms, at most `max`) until `done` holds; false if it never did.
pub async fn until(max: Duration, mut done: impl FnMut() -> bool) -> bool {
    let rounds = (max.as_millis() / 20).max(1);
    for _ in 0..rounds {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Waits until the session is `Invalid` (a person must act), at most 10 s.
pub async fn until_invalid(handle: &SessionHandle) -> bool {
    until(Duration::from_secs(10), || handle.status().state == StateKind::Invalid).await
}

pub type Shared<T> = Arc<T>;
