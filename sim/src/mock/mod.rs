//! Mock brokers: the broker models of [`crate::model`] served over HTTP and WebSocket on 127.0.0.1, each
//! in its broker's own wire format, so that a broker's real client — warden's adapters, or a broker's
//! published SDK pointed at the mock's base URL — meets scripted expiries, invalidations, outages and
//! rate limits in real time.
//!
//! **One source of truth.** A mock does not re-implement a broker's rules. Its handlers translate a wire
//! request into a call on the same [`BrokerModel`] the simulator replays in virtual time
//! ([`BrokerModel::judge_login`], [`BrokerModel::judge_refresh`], [`BrokerModel::judge_keepalive`],
//! [`BrokerModel::judge_request`], [`BrokerModel::judge_logout`]), at the wall clock the mock runs on,
//! and translate the model's verdict back into the broker's wire format (status, error body, headers such
//! as `Retry-After`). Lifetimes, intraday invalidations, idle timeouts, resets, competing logins, rate
//! limits and their penalties, outages and error rates are the model's. What only a wire protocol has —
//! IBKR's OAuth signatures, Kite's checksum, Kotak's TOTP and MPIN steps, client secrets, streaming
//! frames — is checked here; a mismatch reaches the model as a login with wrong credentials.
//!
//! - [`MockBroker::start`] serves one model ([`MockConfig`]) on a free port (or a given one) and returns
//!   its base URL; [`MockBroker::stats`] reads what the model and the server counted.
//! - [`Account`]: the credentials the mock accepts (a demo account per broker, or loaded from files).
//! - [`client`]: the client side — warden's adapter for a mock, with the demo account's credentials.
//! - [`ibkr_creds`]: `warden-sim gen-creds`, matching IBKR key material for a client and a mock.
//!
//! Every mock also serves `GET /__mock/stats` (the counters as JSON), `POST /__mock/invalidate` (an
//! intraday invalidation now), `GET /__mock/login-code` (a person's login code: Kite's request token,
//! Saxo's authorization code) and `GET /__mock/health`. Bodies are limited to [`MAX_BODY_BYTES`], every
//! answer to [`MAX_HOLD`], and handlers parse their input by hand: bad input gets a 4xx that names the
//! problem, never a panic. The protocols are described in `docs/adapters.md`.

pub mod account;
pub mod cli;
pub mod client;
mod common;
mod ibkr;
pub mod ibkr_creds;
mod kite;
mod kotak;
mod oauth2;
mod saxo;
mod stream;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde::Serialize;
use tokio::sync::watch;
use warden_actors::Clock;
use warden_engine::UnixMs;

use crate::model::{BrokerModel, ModelKind, ModelStats};

pub use account::{Account, IbkrAccount, KiteAccount, KotakAccount, OAuth2Account, SaxoAccount};
pub use common::MockCounters;
pub use stream::StreamSettings;

/// The largest request body a mock reads (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest a mock holds a request (an outage's hang included) before it answers.
pub const MAX_HOLD: Duration = Duration::from_secs(120);

/// The brokers a mock serves (the models with an adapter in `warden_adapters::broker`).
pub const SERVED: [ModelKind; 5] =
    [ModelKind::Saxo, ModelKind::Ibkr, ModelKind::KotakNeo, ModelKind::Zerodha, ModelKind::OAuth2];

/// Why a mock could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// The model has no wire format here.
    #[error("broker model `{model}` has no mock server (served: saxo, ibkr, kotak-neo, zerodha, oauth2)")]
    NotServed {
        /// The model.
        model: ModelKind,
    },
    /// The account does not belong to the model.
    #[error("the {account} account does not fit the {model} model")]
    AccountMismatch {
        /// The account's broker.
        account: &'static str,
        /// The model.
        model: ModelKind,
    },
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {detail}")]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// What failed.
        detail: String,
    },
    /// A credential file is missing or unusable.
    #[error("{path}: {problem}")]
    Credentials {
        /// The file.
        path: String,
        /// What is wrong (never the file's content).
        problem: String,
    },
}

/// What a mock serves and how.
#[derive(Debug)]
pub struct MockConfig {
    /// The model it serves (shared: the caller can read its stats and issue login codes).
    pub model: BrokerModel,
    /// The credentials it accepts.
    pub account: Account,
    /// The clock the model is driven by (the model's time). Must be a real-time clock: the server's
    /// sockets do not work under tokio's paused clock.
    pub clock: Clock,
    /// Model time minus the time clients see on the wire, in milliseconds: 0 when the clients use the
    /// same clock; with a scenario replayed from now, the scenario's start minus the real time it started.
    pub wire_offset_ms: i64,
    /// The port (0: a free one).
    pub port: u16,
    /// Wait each call's latency from the model's spec (its round trip), as the in-process model does.
    pub latency: bool,
    /// The request kinds of a scenario's mix (name, idempotent), for rules per endpoint; empty: kind 0.
    pub kinds: Vec<(String, bool)>,
    /// Streaming: heartbeat and tick intervals.
    pub streams: StreamSettings,
    /// IBKR: compute signature base strings as if served from this origin (`https://api.ibkr.com`)
    /// instead of the mock's own `http://127.0.0.1:PORT`.
    pub sign_as: Option<String>,
}

impl MockConfig {
    /// A mock of `model` with the demo account, the system clock, a free port and no latency.
    pub fn demo(model: BrokerModel, clock: Clock) -> Result<MockConfig, MockError> {
        let account = Account::demo(model.spec().kind)?;
        Ok(MockConfig {
            model,
            account,
            clock,
            wire_offset_ms: 0,
            port: 0,
            latency: false,
            kinds: Vec::new(),
            streams: StreamSettings::default(),
            sign_as: None,
        })
    }
}

/// What a mock counted: the model's counters and the server's own.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct MockStats {
    /// The broker model served.
    pub broker: &'static str,
    /// The model's counters: logins (and `logins_while_live`, those that competed with a live session),
    /// requests, rejections, `orders_executed`, `duplicate_orders` (by client order id or content), 429s.
    pub model: ModelStats,
    /// The server's counters: wire requests, bad input, signature and credential failures, streams.
    pub server: MockCounters,
}

/// What every handler of one mock shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) model: BrokerModel,
    pub(crate) account: Account,
    pub(crate) clock: Clock,
    pub(crate) wire_offset_ms: i64,
    pub(crate) latency: bool,
    pub(crate) kinds: Vec<(String, bool)>,
    pub(crate) streams: StreamSettings,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base_url: String,
    /// The origin IBKR signature base strings use.
    pub(crate) sign_origin: String,
    pub(crate) counters: common::Counters,
    pub(crate) orders: common::OrderBook,
    /// Becomes true when the mock stops: streams close.
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) broker_state: BrokerState,
}

/// The per-broker wire state (pending login steps, live session tokens, streaming contexts).
#[derive(Debug)]
pub(crate) enum BrokerState {
    Kite,
    Kotak(kotak::KotakState),
    Saxo(saxo::SaxoState),
    Ibkr(ibkr::IbkrState),
    OAuth2,
}

impl Shared {
    /// The model's time now.
    pub(crate) fn now(&self) -> UnixMs {
        self.clock.now()
    }

    /// A model instant as clients see it on the wire.
    pub(crate) fn to_wire(&self, t: UnixMs) -> UnixMs {
        UnixMs::from_millis(t.as_millis().saturating_sub(self.wire_offset_ms))
    }

    /// The request kind (an index into the scenario's mix) of a route named `name`: the mix entry of that
    /// name, else the first with the same idempotency, else kind 0.
    pub(crate) fn kind_of(&self, name: &str, idempotent: bool) -> crate::model::KindId {
        let index = self
            .kinds
            .iter()
            .position(|(n, _)| n == name)
            .or_else(|| self.kinds.iter().position(|(_, i)| *i == idempotent))
            .unwrap_or(0);
        crate::model::KindId(u16::try_from(index).unwrap_or(0))
    }
}

/// A running mock broker. Dropping it stops the server and closes its streams.
#[derive(Debug)]
pub struct MockBroker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockBroker {
    /// Starts serving `config` on 127.0.0.1.
    pub async fn start(config: MockConfig) -> Result<MockBroker, MockError> {
        let kind = config.model.spec().kind;
        let broker_state = match (&config.account, kind) {
            (Account::Kite(_), ModelKind::Zerodha) => BrokerState::Kite,
            (Account::Kotak(_), ModelKind::KotakNeo) => BrokerState::Kotak(kotak::KotakState::default()),
            (Account::Saxo(_), ModelKind::Saxo) => BrokerState::Saxo(saxo::SaxoState::default()),
            (Account::Ibkr(_), ModelKind::Ibkr) => BrokerState::Ibkr(ibkr::IbkrState::default()),
            (Account::OAuth2(_), ModelKind::OAuth2) => BrokerState::OAuth2,
            (account, model) if SERVED.contains(&model) => {
                return Err(MockError::AccountMismatch { account: account.broker(), model });
            }
            (_, model) => return Err(MockError::NotServed { model }),
        };
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(|e| MockError::Bind { port: config.port, detail: e.to_string() })?;
        let addr = listener.local_addr().map_err(|e| MockError::Bind { port: config.port, detail: e.to_string() })?;
        let base_url = format!("http://{addr}");
        let sign_origin = config.sign_as.clone().unwrap_or_else(|| base_url.clone()).trim_end_matches('/').to_owned();
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            model: config.model,
            account: config.account,
            clock: config.clock,
            wire_offset_ms: config.wire_offset_ms,
            latency: config.latency,
            kinds: config.kinds,
            streams: config.streams,
            base_url,
            sign_origin,
            counters: common::Counters::default(),
            orders: common::OrderBook::default(),
            stopping,
            broker_state,
        });
        let broker_routes = match kind {
            ModelKind::Zerodha => kite::router(),
            ModelKind::KotakNeo => kotak::router(),
            ModelKind::Saxo => saxo::router(),
            ModelKind::Ibkr => ibkr::router(),
            _ => oauth2::router(),
        };
        let app: Router = broker_routes
            .merge(common::control_router())
            .fallback(common::not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(tower_http::catch_panic::CatchPanicLayer::new())
            .with_state(shared.clone());
        let mut stop_signal = stop.subscribe();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_signal.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::warn!(%error, "a mock broker's server stopped");
            }
        });
        tracing::info!(broker = kind.name(), %addr, "mock broker listening");
        Ok(MockBroker { shared, addr, stop, task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model's time now (the clock the mock runs on).
    pub fn now(&self) -> UnixMs {
        self.shared.now()
    }

    /// The model it serves.
    pub fn model(&self) -> &BrokerModel {
        &self.shared.model
    }

    /// The account it accepts.
    pub fn account(&self) -> &Account {
        &self.shared.account
    }

    /// What it counted so far.
    pub fn stats(&self) -> MockStats {
        common::stats(&self.shared)
    }

    /// Tells the server and its streams to stop, without waiting.
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the server and closes its streams, waiting (at most a second) for the server to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
