//! What a session's handle, its actor and its supervisor share: the lease cell, the status watch, the
//! current actor (it changes across restarts), the broker, the policy, the credentials, counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use warden_engine::{Broker, Credentials, Generation, InvalidReason, Policy, SessionId, StateKind, Store, UnixMs};

use crate::clock::Clock;
use crate::lease::LeaseCell;
use crate::ratelimit::AccountLimiter;
use crate::session_actor::SessionMsg;

/// A session's status, as `subscribe()` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionStatus {
    /// The state.
    pub state: StateKind,
    /// The newest generation.
    pub generation: Generation,
    /// Why the session gave up, when `Invalid`.
    pub invalid_reason: Option<InvalidReason>,
    /// When the state was entered.
    pub since: UnixMs,
}

/// Counts of what the runtime did for one session (for tests, the simulator and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) logins: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) keepalives: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) persist_failures: AtomicU64,
    pub(crate) rejections_reported: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    /// Login calls started.
    pub logins: u64,
    /// Refresh calls started.
    pub refreshes: u64,
    /// Keep-alive calls started.
    pub keepalives: u64,
    /// Actor restarts by the supervisor.
    pub restarts: u64,
    /// Snapshot writes that failed.
    pub persist_failures: u64,
    /// Rejections reported by `execute` (or `report_rejection`).
    pub rejections_reported: u64,
    /// Operations `execute` ran again after a rejection.
    pub retries: u64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SessionStats {
            logins: get(&self.logins),
            refreshes: get(&self.refreshes),
            keepalives: get(&self.keepalives),
            restarts: get(&self.restarts),
            persist_failures: get(&self.persist_failures),
            rejections_reported: get(&self.rejections_reported),
            retries: get(&self.retries),
        }
    }
}

/// One event on the `Warden`'s broadcast: what happened to which session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WardenEvent {
    /// The session.
    pub session: SessionId,
    /// When.
    pub at: UnixMs,
    /// What.
    pub kind: WardenEventKind,
}

/// What happened. *(interface; variants may be added)*
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub enum WardenEventKind {
    /// An event of the session's state machine (state changes, grants, revocations, failures).
    Session(warden_engine::EventKind),
    /// The stored record could not be read; it was quarantined and the session started fresh.
    StoreQuarantined {
        /// What was wrong with it.
        reason: String,
    },
    /// A snapshot could not be written (the session goes on from memory).
    PersistFailed {
        /// The store's error.
        detail: String,
    },
    /// The session actor failed and will be restarted after `delay_ms`.
    ActorRestarting {
        /// Restarts within the restart-limit window, this one included.
        restarts: u32,
        /// The delay before the restart.
        delay_ms: u64,
        /// The failure.
        cause: String,
    },
}

/// What the runtime holds for every session, whoever runs it.
pub(crate) struct Env {
    pub(crate) clock: Clock,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) events: broadcast::Sender<WardenEvent>,
}

impl Env {
    pub(crate) fn publish(&self, session: &SessionId, at: UnixMs, kind: WardenEventKind) {
        // No receiver is fine: events are offered, not owed.
        let _ = self.events.send(WardenEvent { session: session.clone(), at, kind });
    }
}

/// The state one session's handle, actor and supervisor share.
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) lease: LeaseCell,
    pub(crate) status: watch::Sender<SessionStatus>,
    pub(crate) actor: watch::Sender<Option<ActorRef<SessionMsg>>>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) policy: Policy,
    pub(crate) credentials: Mutex<Credentials>,
    pub(crate) limiter: Option<Arc<AccountLimiter>>,
    pub(crate) seed: u64,
    pub(crate) counters: Counters,
    pub(crate) closed: AtomicBool,
    pub(crate) env: Arc<Env>,
}

impl SessionShared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn credentials(&self) -> Credentials {
        self.credentials.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for SessionShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionShared")
            .field("id", &self.id)
            .field("broker", &self.broker.name())
            .finish_non_exhaustive()
    }
}
