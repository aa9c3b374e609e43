//! What a session's handle, its actor and its supervisor share: the lease cell, the status watch, the
//! current actor (it changes across restarts), the broker, the policy, the credentials, counters.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use warden_engine::{
    Broker, Credentials, Generation, InvalidReason, LastFailure, Policy, SessionId, StateKind, Store, UnixMs,
    WaitingFor,
};

use crate::clock::Clock;
use crate::lease::LeaseCell;
use crate::message::SessionMsg;
use crate::ratelimit::{AccountLimiter, ClassLimiter};

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
    /// The last failed login, refresh or keep-alive since the last grant (what failed and why).
    pub last_failure: Option<LastFailure>,
    /// What the session waits for when it has no usable grant (a call in flight, the next attempt and
    /// what holds it back, the warm-up time).
    pub waiting_for: Option<WaitingFor>,
}

impl SessionStatus {
    /// Why the session has no token to give, as a request error carries it.
    pub fn stall(&self) -> warden_engine::Stall {
        warden_engine::Stall { last_failure: self.last_failure.clone(), waiting_for: self.waiting_for }
    }
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
    pub(crate) stale_after_wait: AtomicU64,
    pub(crate) fresh_token_refusals: AtomicU64,
}

/// What the runtime has done for one session so far (`SessionHandle::stats`).
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
    /// Leases `execute` dropped because they died while the call waited for the request rate limit
    /// (the call then took the current one, within its request timeout).
    pub stale_after_wait: u64,
    /// Calls that failed because the broker refused a fresh token for them (no login was started).
    pub fresh_token_refusals: u64,
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
            stale_after_wait: get(&self.stale_after_wait),
            fresh_token_refusals: get(&self.fresh_token_refusals),
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

/// What happened (variants may be added).
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
    /// A call retried after a rejection was rejected again although its grant was fresh (younger than
    /// `min_grant_age`): the broker refuses the call, not the token. The call failed; no login was started
    /// for it, and the session keeps its grant.
    FreshTokenRefused {
        /// The grant the refused retry used.
        generation: Generation,
        /// How old it was, in milliseconds.
        grant_age_ms: u64,
        /// What the broker said (no secrets).
        detail: String,
    },
    /// The session's policy does not fit what its broker declares (said when the session opens).
    PolicyWarning {
        /// What does not fit, naming the settings.
        detail: String,
    },
}

impl fmt::Display for WardenEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} session {}: {}", self.at, self.session, self.kind)
    }
}

impl fmt::Display for WardenEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WardenEventKind::Session(kind) => kind.fmt(f),
            WardenEventKind::StoreQuarantined { reason } => {
                write!(f, "its stored record could not be read and was set aside ({reason}); it starts fresh")
            }
            WardenEventKind::PersistFailed { detail } => {
                write!(f, "its snapshot could not be saved ({detail}); it goes on from memory")
            }
            WardenEventKind::ActorRestarting { restarts, delay_ms, cause } => write!(
                f,
                "its actor failed ({cause}) and restarts in {} (restart {restarts} in the window)",
                warden_engine::time::format_duration(std::time::Duration::from_millis(*delay_ms))
            ),
            WardenEventKind::FreshTokenRefused { generation, grant_age_ms, detail } => write!(
                f,
                "the broker refused a fresh token ({generation}, {} old) for a retried call ({detail}); the call \
                 failed and no login was started for it",
                warden_engine::time::format_duration(std::time::Duration::from_millis(*grant_age_ms))
            ),
            WardenEventKind::PolicyWarning { detail } => write!(f, "its policy does not fit the broker: {detail}"),
        }
    }
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
    /// Every generation up to this one is revoked (rejected, expired, cut off): a lease of one is dead
    /// even if a caller still holds it.
    pub(crate) revoked_upto: AtomicU64,
    /// The runtime's clock (a clone kept here so the hot path reaches its coarse reading in one step).
    pub(crate) clock: Clock,
    pub(crate) status: watch::Sender<SessionStatus>,
    pub(crate) actor: watch::Sender<Option<ActorRef<SessionMsg>>>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) policy: Policy,
    pub(crate) credentials: Mutex<Credentials>,
    pub(crate) limiter: Option<Arc<AccountLimiter>>,
    /// The limiters of the broker's endpoint classes (see `SessionHandle::execute_at`).
    pub(crate) class_limiters: Box<[ClassLimiter]>,
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

    /// Whether a lease taken earlier may still be used for a call starting at `now`: not revoked since,
    /// and not past its usable end.
    pub(crate) fn is_current(&self, lease: &warden_engine::Lease, now: UnixMs) -> bool {
        lease.generation.0 > self.revoked_upto.load(Ordering::Acquire) && now < lease.usable_until
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
