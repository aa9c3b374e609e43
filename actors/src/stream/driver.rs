//! The driver of one stream: one task that owns the socket (and, during a make-before-break switch, its
//! successor), follows the session, and is the only writer of the stream's state — in the spirit of a
//! single controller task with one atomic connection state.
//!
//! Its loop waits for whichever comes first: a command from the user, a frame from the open socket, the
//! end of a connection attempt in progress, a change of the session's status (a new generation), an
//! event of the `Warden` (a revocation), or its one timer (the next heartbeat, the idle deadline, the next
//! connection attempt). Connection attempts run as a future beside the loop, so the old socket keeps
//! delivering while its successor connects, authenticates and subscribes.
//!
//! Invariants: a socket is never opened with a generation at or below `dead_upto` (grants the session
//! revoked or the broker refused); every attempt takes a place in the account's reconnect budget; after
//! a failure the next attempt waits for the stream's backoff; a socket that delivered nothing for
//! `idle_timeout` is closed as dead; while the session has no grant to give until its status changes
//! (`Invalid`: an operator must act; `Stopped`: logged out) no attempt is made, so a stream waiting for a
//! person spends neither the account's reconnect budget nor log lines; a logout closes the socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use warden_engine::{ErrorClass, EventKind, Generation, StateKind, UnixMs};

use super::budget::{Backoff, ReconnectBudget};
use super::ledger::Ledger;
use super::protocol::{Frame, GenerationChange, Inbound, StreamProtocol};
use super::socket::{self, Ws};
use super::{Command, Reauthorizer, StreamEvent, StreamSettings, StreamState};
use crate::clock::Clock;
use crate::errors::TokenError;
use crate::handle::SessionHandle;
use crate::shared::{SessionStatus, WardenEvent, WardenEventKind};

/// What a driver is made of.
pub(super) struct DriverArgs {
    pub(super) session: SessionHandle,
    pub(super) protocol: Arc<dyn StreamProtocol>,
    pub(super) reauthorizer: Option<Arc<dyn Reauthorizer>>,
    pub(super) settings: StreamSettings,
    pub(super) clock: Clock,
    pub(super) budget: Arc<ReconnectBudget>,
    pub(super) events: mpsc::Sender<StreamEvent>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) state: Arc<AtomicU8>,
    pub(super) warden_events: broadcast::Receiver<WardenEvent>,
    pub(super) seed: u64,
}

/// An open, authenticated, subscribed socket.
struct Conn {
    ws: Ws,
    generation: Generation,
    /// When it last delivered a frame (wall clock: the start of a gap if it dies).
    last_frame_at: UnixMs,
    /// The same on the monotonic clock (the idle deadline).
    last_frame: Instant,
    next_heartbeat: Option<Instant>,
    /// Its grant was superseded and it must be replaced by a socket with the new one.
    stale: bool,
}

/// A socket ready to take over.
struct Ready {
    conn: Conn,
    /// The ledger it was subscribed with.
    subscribed: Ledger,
    /// Data frames that arrived before the authentication was confirmed.
    early: Vec<Frame>,
    ready_at: UnixMs,
}

/// Why an attempt failed.
struct Failed {
    why: String,
    /// The broker refused this generation's grant.
    refused: Option<Generation>,
    /// The session is closed: the stream ends.
    closed: bool,
    /// The session gives no grant until its status changes (`Invalid`, `Stopped`): wait for that.
    wait_for_session: bool,
}

type Attempt = Pin<Box<dyn Future<Output = Result<Ready, Failed>> + Send>>;

/// The sink of events: bounded; what does not fit is counted and reported as `Lagged`.
struct Events {
    tx: mpsc::Sender<StreamEvent>,
    dropped: u64,
}

impl Events {
    fn emit(&mut self, event: StreamEvent) {
        if self.dropped > 0 {
            match self.tx.try_send(StreamEvent::Lagged { dropped: self.dropped }) {
                Ok(()) => self.dropped = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped += 1;
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.dropped += 1;
        }
    }
}

pub(super) struct Driver {
    session: SessionHandle,
    protocol: Arc<dyn StreamProtocol>,
    reauthorizer: Option<Arc<dyn Reauthorizer>>,
    settings: StreamSettings,
    clock: Clock,
    budget: Arc<ReconnectBudget>,
    backoff: Backoff,
    ledger: Ledger,
    events: Events,
    commands: mpsc::Receiver<Command>,
    state: Arc<AtomicU8>,
    warden_events: broadcast::Receiver<WardenEvent>,
    status: watch::Receiver<SessionStatus>,
    /// Grants up to this generation are dead (revoked by the session, or refused by the broker).
    dead_upto: Generation,
    conn: Option<Conn>,
    attempt: Option<Attempt>,
    /// When the next connection attempt may start (`None`: none is wanted).
    next_attempt: Option<Instant>,
    /// When the last socket stopped delivering, while there is none (the start of a gap).
    lost_since: Option<UnixMs>,
    ever_connected: bool,
    /// A `Down` was reported since the last socket was ready.
    reported_down: bool,
    /// No attempt until the session's status changes: it gives no grant now (`Invalid`, `Stopped`).
    waiting_for_session: bool,
    /// The session logged out: the socket was closed and the stream waits (for good: `Stopped` is final).
    logged_out: bool,
}

impl Driver {
    pub(super) fn new(args: DriverArgs) -> Driver {
        let status = args.session.subscribe();
        let backoff = Backoff::new(args.settings.backoff_min, args.settings.backoff_max, args.seed);
        let now = args.clock.monotonic_now();
        Driver {
            ledger: Ledger::new(args.settings.max_subscriptions),
            session: args.session,
            protocol: args.protocol,
            reauthorizer: args.reauthorizer,
            settings: args.settings,
            clock: args.clock,
            budget: args.budget,
            backoff,
            events: Events { tx: args.events, dropped: 0 },
            commands: args.commands,
            state: args.state,
            warden_events: args.warden_events,
            status,
            dead_upto: Generation::NONE,
            conn: None,
            attempt: None,
            next_attempt: Some(now),
            lost_since: None,
            ever_connected: false,
            reported_down: false,
            waiting_for_session: false,
            logged_out: false,
        }
    }

    fn set_state(&self, state: StreamState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(super) async fn run(mut self) {
        loop {
            self.maybe_start_attempt();
            let deadline = self.deadline();
            tokio::select! {
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => break,
                    Some(command) => self.on_command(command).await,
                },
                message = next_message(&mut self.conn) => self.on_message(message).await,
                result = poll_attempt(&mut self.attempt) => {
                    self.attempt = None;
                    if !self.on_attempt(result).await {
                        break;
                    }
                }
                changed = self.status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.on_status().await;
                }
                event = self.warden_events.recv() => self.on_warden_event(event),
                () = sleep_until(deadline) => self.on_timer().await,
            }
        }
        self.close().await;
    }

    /// The earliest of: the next heartbeat, the idle deadline, the next connection attempt.
    fn deadline(&self) -> Option<Instant> {
        let mut deadline = None;
        let mut earliest = |t: Instant| deadline = Some(deadline.map_or(t, |d: Instant| d.min(t)));
        if let Some(conn) = &self.conn {
            if let Some(t) = conn.next_heartbeat {
                earliest(t);
            }
            earliest(conn.last_frame + self.settings.idle_timeout);
        }
        if self.attempt.is_none()
            && let Some(t) = self.next_attempt
        {
            earliest(t);
        }
        deadline
    }

    /// Starts a connection attempt if one is wanted, due, and the account's budget has room.
    fn maybe_start_attempt(&mut self) {
        if self.attempt.is_some() {
            return;
        }
        let wanted = self.conn.as_ref().is_none_or(|c| c.stale);
        let Some(at) = self.next_attempt.filter(|_| wanted) else { return };
        let now = self.clock.monotonic_now();
        if at > now {
            return;
        }
        if let Some(free_at) = self.budget.try_take(self.clock.now()) {
            tracing::debug!(account = self.budget.account(), "reconnect budget spent; waiting for room");
            self.next_attempt = Some(self.clock.instant_at(free_at));
            return;
        }
        self.next_attempt = None;
        let newer_than = match &self.conn {
            Some(conn) => conn.generation.max(self.dead_upto),
            None => self.dead_upto,
        };
        self.attempt = Some(Box::pin(attempt(
            self.session.clone(),
            self.protocol.clone(),
            self.settings.clone(),
            self.clock.clone(),
            self.ledger.clone(),
            newer_than,
        )));
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Subscribe(topic, reply) => match self.ledger.add(&topic) {
                Ok(added) => {
                    let _ = reply.send(Ok(()));
                    if added {
                        let frames = self.protocol.subscribe(&topic);
                        self.write(frames).await;
                    }
                }
                Err(full) => {
                    let _ = reply.send(Err(full.into()));
                }
            },
            Command::Unsubscribe(topic) => {
                if self.ledger.remove(&topic) {
                    let frames = self.protocol.unsubscribe(&topic);
                    self.write(frames).await;
                }
            }
            Command::Send(frame) => self.write(vec![frame]).await,
            Command::Close => {}
        }
    }

    /// Writes frames on the open socket; a failed write kills it.
    async fn write(&mut self, frames: Vec<Frame>) {
        let Some(conn) = self.conn.as_mut() else { return };
        if frames.is_empty() {
            return;
        }
        if let Err(why) = socket::send_all(&mut conn.ws, frames, self.settings.write_timeout).await {
            self.lose(why, None);
        }
    }

    async fn on_message(&mut self, message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        let Some(conn) = self.conn.as_mut() else { return };
        let frame = match message {
            Some(Ok(Message::Text(text))) => Frame::Text(text.to_string()),
            Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
            // Pings are answered by the library; neither they nor pongs prove that data flows.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return,
            Some(Ok(Message::Close(close))) => {
                let (code, reason) = close.map_or((1005, String::new()), |c| (u16::from(c.code), c.reason.to_string()));
                let refused = self.protocol.closed_for_auth(code, &reason).then_some(conn.generation);
                let reason = if reason.is_empty() { String::new() } else { format!(": {}", clip(&reason)) };
                self.lose(format!("closed by the broker (code {code}{reason})"), refused);
                return;
            }
            Some(Err(error)) => {
                self.lose(format!("the connection failed ({})", clip(&error.to_string())), None);
                return;
            }
            None => {
                self.lose("the connection ended".to_owned(), None);
                return;
            }
        };
        conn.last_frame = self.clock.monotonic_now();
        conn.last_frame_at = self.clock.now();
        match self.protocol.classify(&frame) {
            Inbound::Data => self.events.emit(StreamEvent::Message(frame)),
            Inbound::AuthRejected(why) => {
                let generation = conn.generation;
                self.lose(format!("the broker refused grant {generation}: {}", clip(&why)), Some(generation));
            }
            Inbound::Heartbeat | Inbound::Authenticated | Inbound::Ignore => {}
        }
    }

    /// The open socket is gone: report it, remember when it last delivered, plan the next attempt.
    fn lose(&mut self, why: String, refused: Option<Generation>) {
        let Some(conn) = self.conn.take() else { return };
        tracing::warn!(session = %self.session.id(), stream = self.protocol.name(), %why, "stream down");
        self.lost_since.get_or_insert(conn.last_frame_at);
        if let Some(generation) = refused {
            self.refused(generation);
        }
        self.set_state(StreamState::Down);
        self.events.emit(StreamEvent::Down { why });
        self.reported_down = true;
        self.schedule_retry();
        drop(conn);
    }

    /// The broker refused `generation`: never use it again, and tell the session.
    fn refused(&mut self, generation: Generation) {
        self.dead_upto = self.dead_upto.max(generation);
        self.session.report_rejection(generation, ErrorClass::AuthExpired);
    }

    fn schedule_retry(&mut self) {
        let delay = self.backoff.next_delay();
        self.next_attempt = Some(self.clock.monotonic_now() + delay);
    }

    /// A connection attempt ended. Returns whether the stream goes on.
    async fn on_attempt(&mut self, result: Result<Ready, Failed>) -> bool {
        let ready = match result {
            Ok(ready) => ready,
            Err(failed) => {
                if failed.closed {
                    return false;
                }
                if let Some(generation) = failed.refused {
                    self.refused(generation);
                }
                tracing::warn!(session = %self.session.id(), stream = self.protocol.name(), why = %failed.why, "stream connection failed");
                if self.conn.is_none() && !self.reported_down {
                    self.set_state(StreamState::Down);
                    self.events.emit(StreamEvent::Down { why: failed.why });
                    self.reported_down = true;
                }
                if failed.wait_for_session {
                    // `borrow`, not `borrow_and_update`: a change not yet seen still wakes `on_status`.
                    let state = self.status.borrow().state;
                    match state {
                        StateKind::Stopped => self.session_stopped().await,
                        StateKind::Invalid => self.waiting_for_session = true,
                        // The session moved on since it answered: try again, after the backoff (the
                        // status watch may lag the answer by a moment).
                        _ => self.schedule_retry(),
                    }
                    return true;
                }
                self.schedule_retry();
                return true;
            }
        };
        let Ready { conn: mut new, subscribed, early, ready_at } = ready;
        // Subscriptions changed while it connected: bring it up to date.
        let (added, removed) = self.ledger.changes_since(&subscribed);
        let mut frames: Vec<Frame> = added.iter().flat_map(|t| self.protocol.subscribe(t)).collect();
        frames.extend(removed.iter().flat_map(|t| self.protocol.unsubscribe(t)));
        if let Err(why) = socket::send_all(&mut new.ws, frames, self.settings.write_timeout).await {
            self.schedule_retry();
            tracing::warn!(session = %self.session.id(), %why, "stream resubscription failed");
            return true;
        }
        let generation = new.generation;
        let event = match self.conn.take() {
            Some(mut old) => {
                // Make-before-break: the new socket is ready, the old one goes.
                let _ = tokio::time::timeout(self.settings.write_timeout, old.ws.close(None)).await;
                StreamEvent::Reconnected { generation, gap: None }
            }
            None => match self.lost_since.take() {
                Some(from) => StreamEvent::Reconnected { generation, gap: Some((from, ready_at)) },
                None if self.ever_connected => StreamEvent::Reconnected { generation, gap: None },
                None => StreamEvent::Connected { generation },
            },
        };
        self.conn = Some(new);
        self.ever_connected = true;
        self.reported_down = false;
        self.backoff.reset();
        self.set_state(StreamState::Live);
        tracing::info!(session = %self.session.id(), stream = self.protocol.name(), "{event}");
        self.events.emit(event);
        for frame in early {
            self.events.emit(StreamEvent::Message(frame));
        }
        // A newer grant may have arrived while it connected.
        self.on_status().await;
        true
    }

    /// The session's status changed: a logout closes the socket; a session that gives grants again ends
    /// the wait for it; a new generation means what the protocol says.
    async fn on_status(&mut self) {
        let (state, latest) = {
            let status = self.status.borrow_and_update();
            (status.state, status.generation)
        };
        if state == StateKind::Stopped {
            self.session_stopped().await;
            return;
        }
        if self.waiting_for_session {
            if state == StateKind::Invalid {
                return;
            }
            self.waiting_for_session = false;
            if self.attempt.is_none() {
                self.next_attempt = Some(self.clock.monotonic_now());
            }
        }
        match self.conn.as_mut() {
            None => {
                // Waiting to reconnect (perhaps for a grant newer than a dead one): try now.
                if latest > self.dead_upto && self.attempt.is_none() && self.next_attempt.is_some() {
                    self.next_attempt = Some(self.clock.monotonic_now());
                }
            }
            Some(conn) if latest > conn.generation && !conn.stale => {
                if self.protocol.on_new_grant() == GenerationChange::ReauthorizeInPlace
                    && self.reauthorize_in_place().await
                {
                    return;
                }
                let Some(conn) = self.conn.as_mut() else { return };
                conn.stale = true;
                if self.protocol.allows_overlap() {
                    self.next_attempt = Some(self.clock.monotonic_now());
                } else {
                    // One socket at a time: break, then make (a gap the user is told about).
                    let mut old = self.conn.take().expect("checked above");
                    self.lost_since.get_or_insert(old.last_frame_at);
                    let _ = tokio::time::timeout(self.settings.write_timeout, old.ws.close(None)).await;
                    self.set_state(StreamState::Down);
                    self.next_attempt = Some(self.clock.monotonic_now());
                }
            }
            Some(_) => {}
        }
    }

    /// The session logged out (`Stopped`, which is final): close the socket, drop any attempt, report
    /// `Down` once, and make no attempt from then on. The grant is revoked; a socket left open would keep
    /// delivering on a session the user ended (Saxo's logout is local: its broker would not close it).
    async fn session_stopped(&mut self) {
        self.attempt = None;
        self.next_attempt = None;
        self.waiting_for_session = true;
        if self.logged_out {
            return;
        }
        self.logged_out = true;
        if let Some(mut conn) = self.conn.take() {
            self.lost_since.get_or_insert(conn.last_frame_at);
            let _ = tokio::time::timeout(self.settings.write_timeout, conn.ws.close(None)).await;
        }
        tracing::info!(session = %self.session.id(), stream = self.protocol.name(), "session logged out; stream down");
        self.set_state(StreamState::Down);
        self.events
            .emit(StreamEvent::Down { why: "the session logged out; no reconnection without a new login".to_owned() });
        self.reported_down = true;
    }

    /// Hands the session's current grant to the open socket over HTTP. Whether it worked.
    async fn reauthorize_in_place(&mut self) -> bool {
        let (Some(reauthorizer), Some(request)) = (self.reauthorizer.clone(), self.protocol.reauthorize()) else {
            return false;
        };
        let Some(lease) = self.session.try_token() else { return false };
        let Some(conn) = self.conn.as_ref() else { return false };
        if lease.generation <= conn.generation {
            return false;
        }
        let (generation, grant) = (lease.generation, lease.grant.clone());
        drop(lease);
        let call = reauthorizer.reauthorize(self.clock.now(), &grant, request);
        match tokio::time::timeout(self.settings.auth_timeout, call).await {
            Ok(Ok(())) => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.generation = generation;
                }
                self.events.emit(StreamEvent::Reauthorized { generation });
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(session = %self.session.id(), %error, "in-place re-authorisation failed; reconnecting");
                false
            }
            Err(_) => {
                tracing::warn!(session = %self.session.id(), "in-place re-authorisation timed out; reconnecting");
                false
            }
        }
    }

    fn on_warden_event(&mut self, event: Result<WardenEvent, broadcast::error::RecvError>) {
        let Ok(event) = event else { return };
        if &event.session != self.session.id() {
            return;
        }
        if let WardenEventKind::Session(EventKind::Revoked { generation, .. }) = event.kind {
            // Never (re)connect with it; an open socket keeps delivering until the broker closes it.
            self.dead_upto = self.dead_upto.max(generation);
        }
    }

    async fn on_timer(&mut self) {
        let now = self.clock.monotonic_now();
        let Some(conn) = self.conn.as_mut() else { return };
        if now >= conn.last_frame + self.settings.idle_timeout {
            let silent = warden_engine::time::format_duration(self.settings.idle_timeout);
            self.lose(format!("connected but silent for {silent}"), None);
            return;
        }
        if conn.next_heartbeat.is_some_and(|t| t <= now)
            && let Some((frame, interval)) = self.protocol.heartbeat()
        {
            conn.next_heartbeat = Some(now + interval);
            self.write(vec![frame]).await;
        }
    }

    async fn close(&mut self) {
        self.attempt = None;
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.settings.write_timeout, conn.ws.close(None)).await;
        }
        self.set_state(StreamState::Closed);
    }
}

/// At most 200 characters of a text from outside.
fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

async fn next_message(conn: &mut Option<Conn>) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match conn {
        Some(conn) => conn.ws.next().await,
        None => std::future::pending().await,
    }
}

async fn poll_attempt(attempt: &mut Option<Attempt>) -> Result<Ready, Failed> {
    match attempt {
        Some(attempt) => attempt.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One connection attempt: a grant newer than `newer_than`, the socket, authentication (confirmed if the
/// protocol wants it), then the ledger's subscriptions.
async fn attempt(
    session: SessionHandle,
    protocol: Arc<dyn StreamProtocol>,
    settings: StreamSettings,
    clock: Clock,
    ledger: Ledger,
    newer_than: Generation,
) -> Result<Ready, Failed> {
    let fail = |why: String| Failed { why, refused: None, closed: false, wait_for_session: false };
    let lease =
        if newer_than > Generation::NONE { session.token_newer_than(newer_than).await } else { session.token().await };
    let lease = match lease {
        Ok(lease) => lease,
        Err(TokenError::Closed) => {
            let why = "the session is closed".to_owned();
            return Err(Failed { why, refused: None, closed: true, wait_for_session: false });
        }
        Err(error @ (TokenError::Invalid(_) | TokenError::Stopped)) => {
            let why = format!("no grant to connect with: {error}");
            return Err(Failed { why, refused: None, closed: false, wait_for_session: true });
        }
        Err(error) => return Err(fail(format!("no grant to connect with: {error}"))),
    };
    let (generation, grant) = (lease.generation, lease.grant.clone());
    drop(lease);
    let request = protocol.connect(&grant).map_err(fail)?;
    let mut ws = socket::connect(&request, settings.connect_timeout, settings.max_frame_bytes).await.map_err(|e| {
        let refused = matches!(e.status, Some(401 | 403)).then_some(generation);
        Failed { why: e.why, refused, closed: false, wait_for_session: false }
    })?;
    let target = request.target.clone();
    socket::send_all(&mut ws, protocol.authenticate(&grant), settings.write_timeout)
        .await
        .map_err(|why| fail(format!("{target}: {why}")))?;
    let mut early = Vec::new();
    let mut last_frame_at = clock.now();
    let mut last_frame = clock.monotonic_now();
    if protocol.awaits_auth_ack() {
        let deadline = clock.monotonic_now() + settings.auth_timeout;
        loop {
            let message = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return Err(fail(format!("{target}: the authentication was not confirmed in time"))),
                Ok(None) | Ok(Some(Err(_))) => return Err(fail(format!("{target}: closed during authentication"))),
                Ok(Some(Ok(message))) => message,
            };
            let frame = match message {
                Message::Text(text) => Frame::Text(text.to_string()),
                Message::Binary(bytes) => Frame::Binary(bytes.to_vec()),
                Message::Close(_) => {
                    return Err(Failed {
                        why: format!("{target}: closed during authentication"),
                        refused: Some(generation),
                        closed: false,
                        wait_for_session: false,
                    });
                }
                _ => continue,
            };
            (last_frame_at, last_frame) = (clock.now(), clock.monotonic_now());
            match protocol.classify(&frame) {
                Inbound::Authenticated => break,
                Inbound::AuthRejected(why) => {
                    return Err(Failed {
                        why: format!("{target}: the broker refused grant {generation}: {}", clip(&why)),
                        refused: Some(generation),
                        closed: false,
                        wait_for_session: false,
                    });
                }
                Inbound::Data if early.len() < settings.max_early_frames => early.push(frame),
                _ => {}
            }
        }
    }
    let frames: Vec<Frame> = ledger.topics().flat_map(|t| protocol.subscribe(t)).collect();
    socket::send_all(&mut ws, frames, settings.write_timeout).await.map_err(|why| fail(format!("{target}: {why}")))?;
    let next_heartbeat = protocol.heartbeat().map(|(_, interval)| clock.monotonic_now() + interval);
    let conn = Conn { ws, generation, last_frame_at, last_frame, next_heartbeat, stale: false };
    Ok(Ready { conn, subscribed: ledger, early, ready_at: clock.now() })
}
