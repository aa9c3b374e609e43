//! What the mocks' streaming endpoints share: [`StreamSettings`] (heartbeat and tick intervals, the
//! limits of a stream) and the loop's timers.
//!
//! Every stream is a WebSocket on the mock's port (Kite `/ws`, Kotak `/realtime`, IBKR `/v1/api/ws`,
//! Saxo `/openapi/streamingws/connect`). A stream authenticates with the session's token (or cookie,
//! or context), takes subscriptions, pushes a tick for each subscription every `tick` and a heartbeat
//! every `heartbeat` (the broker's own, unless set), and is closed by the mock when its token dies:
//! the model's verdict on the token is checked every `token_check`. A stream lives at most
//! `max_lifetime`, holds at most [`MAX_SUBSCRIPTIONS`] subscriptions, and a client message larger than
//! [`MAX_MESSAGE_BYTES`] closes it. A stream refused for a token the model issued but no longer accepts is
//! counted (`stream_dead_tokens`): a client should never come back with a dead grant.

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use tokio::time::{Interval, MissedTickBehavior};

use super::Shared;
use super::common::Counters;
use crate::model::TokenVerdict;

/// The most subscriptions one stream holds (more are ignored).
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// The largest client message a stream reads.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// How the mocks' streams behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// A heartbeat this often; `None`: the broker's (Kite 1 s, Kotak 30 s, IBKR 10 s, Saxo 10 s).
    pub heartbeat: Option<Duration>,
    /// A tick for every subscription this often.
    pub tick: Duration,
    /// How often the stream's token is checked against the model.
    pub token_check: Duration,
    /// IBKR: the socket is closed after this long without a message from the client (a `tic` at least
    /// once a minute).
    pub client_silence: Duration,
    /// The longest a stream stays open.
    pub max_lifetime: Duration,
}

impl Default for StreamSettings {
    fn default() -> StreamSettings {
        StreamSettings {
            heartbeat: None,
            tick: Duration::from_secs(1),
            token_check: Duration::from_millis(250),
            client_silence: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// The timers of one stream's loop.
pub(crate) struct Timers {
    pub(crate) tick: Interval,
    pub(crate) heartbeat: Interval,
    pub(crate) check: Interval,
    pub(crate) deadline: tokio::time::Instant,
}

impl Timers {
    /// Timers for a stream of `shared`'s mock whose broker's heartbeat is `broker_heartbeat`.
    pub(crate) fn new(shared: &Shared, broker_heartbeat: Duration) -> Timers {
        let settings = &shared.streams;
        let now = shared.clock.monotonic_now();
        let every = |d: Duration| {
            let d = d.max(Duration::from_millis(10));
            let mut interval = tokio::time::interval_at(now + d, d);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        Timers {
            tick: every(settings.tick),
            heartbeat: every(settings.heartbeat.unwrap_or(broker_heartbeat)),
            check: every(settings.token_check),
            deadline: now + settings.max_lifetime,
        }
    }
}

/// Whether the model still accepts `token` now.
pub(crate) fn token_alive(shared: &Shared, token: &str) -> bool {
    shared.model.verdict(token, shared.now()) == TokenVerdict::Accepted
}

/// Whether a stream may open with `token` (its handshake, or its authentication frame): the model
/// accepts it now. A refusal is counted in `streams_refused`, and a token the model issued but no longer
/// accepts also in `stream_dead_tokens` (see [`dead_token`]).
pub(crate) fn admit(shared: &Shared, token: &str) -> bool {
    if token_alive(shared, token) {
        return true;
    }
    Counters::bump(&shared.counters.streams_refused);
    dead_token(shared, token);
    false
}

/// Counts `token` in `stream_dead_tokens` if the model issued it and no longer accepts it (a client
/// presenting a dead grant on a stream endpoint, rather than one it never had); whether it did.
pub(crate) fn dead_token(shared: &Shared, token: &str) -> bool {
    let dead = matches!(shared.model.verdict(token, shared.now()), TokenVerdict::Expired | TokenVerdict::Revoked(_));
    if dead {
        Counters::bump(&shared.counters.stream_dead_tokens);
    }
    dead
}

/// The upgrade with the stream's message limits.
pub(crate) fn limited(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade.max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES)
}

/// Resolves when the mock stops.
pub(crate) async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}
