//! Streams that follow the session: a supervised WebSocket per broker stream whose grant is always the
//! session's current one.
//!
//! ```no_run
//! # async fn demo(warden: warden_actors::Warden, kite: warden_actors::SessionHandle) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use warden_actors::stream::{KiteTicker, StreamEvent, StreamSettings, StreamSpec, Streams};
//!
//! let streams = Streams::new(&warden, StreamSettings::default());
//! let (ticker, mut events) = streams.open(&kite, StreamSpec::new(Arc::new(KiteTicker::new("wss://ws.kite.trade"))));
//! ticker.subscribe("408065").await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         StreamEvent::Message(frame) => { /* a tick */ let _ = frame; }
//!         StreamEvent::Reconnected { gap: Some(_), .. } => { /* reconcile orders and positions */ }
//!         other => println!("{other}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`protocol::StreamProtocol`]: one broker's WebSocket protocol as pure functions — the connect
//!   request from a grant, authentication, (re)subscription, heartbeats, what a frame is, and what a new
//!   generation means ([`GenerationChange::ReauthorizeInPlace`] or [`GenerationChange::Reconnect`]).
//!   [`brokers`] has Saxo, IBKR, Kotak Neo and Kite's ticker.
//! - [`Streams::open`]: one driver task per stream (`driver`), which owns the socket(s) and follows the
//!   session through its status watch (new generations) and the `Warden`'s events (revocations).
//! - [`StreamHandle`]: `subscribe`, `unsubscribe`, `send`, `state`, `close`; the user's subscriptions
//!   are kept in a bounded [`ledger::Ledger`] and replayed on every new socket, after it authenticated.
//! - [`StreamEvent`]s on a bounded channel: `Connected`, `Reauthorized`, `Reconnected { gap }` (a gap
//!   that could not be avoided, with its bounds: reconcile), `Message`, `Down { why }`, `Lagged`.
//! - [`budget`]: reconnects are limited per broker account (all its streams together) and backed off
//!   per stream, so a flapping network cannot become a connection storm.
//!
//! `docs/runtime.md` ("Streams") explains the design: make-before-break, gaps, silence, budgets.

pub mod brokers;
pub mod budget;
mod driver;
pub mod ledger;
pub mod protocol;
mod socket;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use warden_adapters::{ApiRequest, Saxo};
use warden_engine::ports::BoxFuture;
use warden_engine::{BrokerError, Generation, Grant, UnixMs};

pub use brokers::{IbkrStream, KiteTicker, KotakStream, SaxoStream};
pub use budget::{Backoff, ReconnectBudget};
pub use ledger::{Ledger, LedgerFull};
pub use protocol::{ConnectRequest, Frame, GenerationChange, Inbound, StreamProtocol};

use crate::clock::Clock;
use crate::handle::SessionHandle;
use crate::shared::WardenEvent;
use crate::warden::Warden;

/// Settings of streams; every wait, queue and retry has a limit here.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StreamSettings {
    /// How long opening a socket (TCP, TLS, the upgrade) may take.
    pub connect_timeout: Duration,
    /// How long the broker may take to confirm an authentication, and an in-place re-authorisation call.
    pub auth_timeout: Duration,
    /// How long one write may take.
    pub write_timeout: Duration,
    /// A socket that delivered no frame for this long is dead, even if it answers pings (WebSocket
    /// ping/pong does not count; data and the broker's heartbeats do).
    pub idle_timeout: Duration,
    /// The first wait after a failed connection; doubled per failure.
    pub backoff_min: Duration,
    /// The longest wait between connection attempts.
    pub backoff_max: Duration,
    /// At most this many connection attempts per `reconnect_window`, per broker account.
    pub reconnects_per_window: u32,
    /// The window of `reconnects_per_window`.
    pub reconnect_window: Duration,
    /// How many events wait for the user; beyond it messages are dropped and counted (`Lagged`).
    pub event_capacity: usize,
    /// How many commands (subscribe, send) wait for the driver.
    pub command_capacity: usize,
    /// The most subscriptions a stream keeps.
    pub max_subscriptions: usize,
    /// The largest frame read.
    pub max_frame_bytes: usize,
    /// Frames kept while a new socket waits for its authentication to be confirmed.
    pub max_early_frames: usize,
    /// The seed of the backoff's jitter.
    pub seed: u64,
}

impl Default for StreamSettings {
    fn default() -> StreamSettings {
        StreamSettings {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            reconnects_per_window: 10,
            reconnect_window: Duration::from_secs(60),
            event_capacity: 4096,
            command_capacity: 64,
            max_subscriptions: 4096,
            max_frame_bytes: 16 * 1024 * 1024,
            max_early_frames: 256,
            seed: 0,
        }
    }
}

/// What happened on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The first socket is open, authenticated and subscribed.
    Connected {
        /// The grant it uses.
        generation: Generation,
    },
    /// The open socket took a new grant in place (nothing was interrupted).
    Reauthorized {
        /// The new grant.
        generation: Generation,
    },
    /// A new socket replaced the old one, authenticated and resubscribed.
    Reconnected {
        /// The grant it uses.
        generation: Generation,
        /// `None`: the new socket was ready before the old one closed (messages around the switch may
        /// come twice, never not at all). `Some((from, to))`: nothing was received between these two
        /// instants — reconcile orders and positions for that time.
        gap: Option<(UnixMs, UnixMs)>,
    },
    /// A data frame.
    Message(Frame),
    /// The socket is gone. The stream reconnects (with backoff, within the account's budget, with a
    /// grant the broker has not refused) — except after a logout, which `why` then says.
    Down {
        /// Why, without secrets.
        why: String,
    },
    /// The user did not read events fast enough: this many were dropped (a gap: reconcile).
    Lagged {
        /// How many.
        dropped: u64,
    },
}

impl fmt::Display for StreamEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamEvent::Connected { generation } => write!(f, "connected with grant {generation}"),
            StreamEvent::Reauthorized { generation } => write!(f, "re-authorised in place with grant {generation}"),
            StreamEvent::Reconnected { generation, gap: None } => {
                write!(f, "reconnected with grant {generation}, no gap (the new socket was ready first)")
            }
            StreamEvent::Reconnected { generation, gap: Some((from, to)) } => write!(
                f,
                "reconnected with grant {generation}, gap from {from} to {to}: reconcile orders and positions"
            ),
            StreamEvent::Message(frame) => write!(f, "message {frame:?}"),
            StreamEvent::Down { why } => write!(f, "down: {why}"),
            StreamEvent::Lagged { dropped } => {
                write!(f, "{dropped} event(s) dropped because they were not read in time: reconcile")
            }
        }
    }
}

/// Where a stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamState {
    /// Opening its first socket.
    Connecting = 0,
    /// A socket is open and subscribed.
    Live = 1,
    /// The socket is gone; reconnecting (or, after a logout, waiting for good).
    Down = 2,
    /// Closed by the user (or its session closed).
    Closed = 3,
}

impl StreamState {
    fn from_u8(value: u8) -> StreamState {
        match value {
            0 => StreamState::Connecting,
            1 => StreamState::Live,
            2 => StreamState::Down,
            _ => StreamState::Closed,
        }
    }
}

/// Why a command to a stream failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream is closed.
    #[error("the stream is closed")]
    Closed,
    /// The subscription ledger is full.
    #[error(transparent)]
    LedgerFull(#[from] LedgerFull),
}

/// Hands a new grant to an open socket over HTTP (Saxo's `PUT /streamingws/authorize`): puts the grant
/// on the request the broker's way and sends it.
pub trait Reauthorizer: Send + Sync + 'static {
    /// Sends `request` with `grant`.
    fn reauthorize<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;
}

impl Reauthorizer for Saxo {
    fn reauthorize<'a>(
        &'a self,
        now: UnixMs,
        grant: &'a Grant,
        request: ApiRequest,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move { self.send(now, grant, request).await.map(|_| ()) })
    }
}

/// What to open: a protocol, the account whose reconnect budget it shares, and (for in-place
/// re-authorisation) the reauthorizer.
#[derive(Clone)]
pub struct StreamSpec {
    protocol: Arc<dyn StreamProtocol>,
    account: Option<String>,
    reauthorizer: Option<Arc<dyn Reauthorizer>>,
}

impl fmt::Debug for StreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSpec")
            .field("protocol", &self.protocol.name())
            .field("account", &self.account)
            .field("reauthorizer", &self.reauthorizer.is_some())
            .finish()
    }
}

impl StreamSpec {
    /// A stream speaking `protocol`.
    pub fn new(protocol: Arc<dyn StreamProtocol>) -> StreamSpec {
        StreamSpec { protocol, account: None, reauthorizer: None }
    }

    /// The broker account whose reconnect budget it shares (default: the session's id).
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> StreamSpec {
        self.account = Some(account.into());
        self
    }

    /// The reauthorizer of a protocol that re-authorises in place (Saxo: the session's `Saxo` adapter).
    /// Without one, a new grant reconnects.
    #[must_use]
    pub fn reauthorizer(mut self, reauthorizer: Arc<dyn Reauthorizer>) -> StreamSpec {
        self.reauthorizer = Some(reauthorizer);
        self
    }
}

/// Opens streams that follow sessions of one `Warden`, sharing reconnect budgets per account.
pub struct Streams {
    clock: Clock,
    events: broadcast::Receiver<WardenEvent>,
    settings: StreamSettings,
    budgets: Mutex<HashMap<String, Arc<ReconnectBudget>>>,
    opened: AtomicU64,
}

impl fmt::Debug for Streams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streams").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Streams {
    /// Streams on `warden`'s sessions, with `settings`.
    pub fn new(warden: &Warden, settings: StreamSettings) -> Streams {
        Streams {
            clock: warden.clock(),
            events: warden.events(),
            settings,
            budgets: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        }
    }

    /// The reconnect budget of `account` (shared by every stream of it).
    pub fn budget(&self, account: &str) -> Arc<ReconnectBudget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        budgets
            .entry(account.to_owned())
            .or_insert_with(|| {
                Arc::new(ReconnectBudget::new(
                    account,
                    self.settings.reconnects_per_window,
                    self.settings.reconnect_window,
                ))
            })
            .clone()
    }

    /// Opens a stream on `session`: spawns its driver task, which connects with the session's current
    /// grant and follows it. Must be called inside a tokio runtime. Dropping the handle closes the stream.
    pub fn open(&self, session: &SessionHandle, spec: StreamSpec) -> (StreamHandle, mpsc::Receiver<StreamEvent>) {
        let account = spec.account.clone().unwrap_or_else(|| session.id().to_string());
        let (commands, command_rx) = mpsc::channel(self.settings.command_capacity.max(1));
        let (events, event_rx) = mpsc::channel(self.settings.event_capacity.max(1));
        let state = Arc::new(AtomicU8::new(StreamState::Connecting as u8));
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        let driver = driver::Driver::new(driver::DriverArgs {
            session: session.clone(),
            protocol: spec.protocol,
            reauthorizer: spec.reauthorizer,
            settings: self.settings.clone(),
            clock: self.clock.clone(),
            budget: self.budget(&account),
            events,
            commands: command_rx,
            state: state.clone(),
            warden_events: self.events.resubscribe(),
            seed: self.settings.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        });
        let task = tokio::spawn(driver.run());
        (StreamHandle { commands, state, task: Arc::new(Mutex::new(Some(task))) }, event_rx)
    }
}

/// A command to a stream's driver.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe(String, oneshot::Sender<Result<(), StreamError>>),
    Unsubscribe(String),
    Send(Frame),
    Close,
}

/// The user's side of a stream. Cheap to clone; the stream closes when every clone is dropped or
/// [`StreamHandle::close`] is called.
#[derive(Clone, Debug)]
pub struct StreamHandle {
    commands: mpsc::Sender<Command>,
    state: Arc<AtomicU8>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl StreamHandle {
    /// Subscribes to `topic` (the protocol's form: an instrument token, a scrip list, a command): sent
    /// now if a socket is open, and on every new socket after it authenticated.
    pub async fn subscribe(&self, topic: impl Into<String>) -> Result<(), StreamError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Subscribe(topic.into(), reply)).await.map_err(|_| StreamError::Closed)?;
        answer.await.map_err(|_| StreamError::Closed)?
    }

    /// Unsubscribes from `topic`.
    pub async fn unsubscribe(&self, topic: impl Into<String>) -> Result<(), StreamError> {
        self.commands.send(Command::Unsubscribe(topic.into())).await.map_err(|_| StreamError::Closed)
    }

    /// Sends a frame on the open socket (dropped if none is open: subscriptions belong in
    /// [`StreamHandle::subscribe`]).
    pub async fn send(&self, frame: Frame) -> Result<(), StreamError> {
        self.commands.send(Command::Send(frame)).await.map_err(|_| StreamError::Closed)
    }

    /// Where the stream is.
    pub fn state(&self) -> StreamState {
        StreamState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Closes the stream (the socket with a close frame) and waits for its driver to end.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
