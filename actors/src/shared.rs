//! What a session's handle, its actor and its supervisor share: the lease cell, the status (and its watch,
//! made when someone subscribes), the current actor (it changes across restarts), the broker, the policy
//! (one `Arc` for every session of the same policy), the credentials, the restart history, counters — and
//! what every session of a `Warden` shares ([`Env`]): the clock, the store, its committer, the timers.
//!
//! A session's own share is kept small (a platform holds 100,000 of them): no channel or task per session
//! here, and nothing allocated until it is used.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use ractor::{ActorId, ActorRef};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use warden_engine::{
    Broker, Credentials, Fence, Generation, InvalidReason, LastFailure, MemberName, Policy, RequestError, SessionId,
    StateKind, Store, UnixMs, WaitingFor,
};

use crate::clock::Clock;
use crate::commit::GroupCommit;
use crate::herd::Herd;
use crate::lease::LeaseCell;
use crate::message::SessionMsg;
use crate::ratelimit::{AccountLimiter, ClassLimiter};
use crate::timer::Timers;

/// Takes a lock whose data stays consistent at every step (a panic elsewhere does not spoil it).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

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
    /// This member lost the session's lease (a store shared by several members): another member took it
    /// over, or this one could not renew it in time. Its actor ended without logging out and without any
    /// further write; its handles answer `NotOwner`.
    OwnershipLost {
        /// The fence this member held.
        fence: Fence,
        /// How the loss was noticed.
        detail: String,
    },
    /// This member handed the session over on purpose (placement moved it, or the `Warden` shut down):
    /// it released the lease after a last flush, without logging out.
    HandedOver {
        /// The fence this member held.
        fence: Fence,
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
            WardenEventKind::OwnershipLost { fence, detail } => {
                write!(f, "this member lost its lease (fence {fence}): {detail}; it stopped without logging out")
            }
            WardenEventKind::HandedOver { fence } => {
                write!(f, "this member handed it over (released fence {fence}) without logging out")
            }
        }
    }
}

/// A `Warden` that is a member of a cluster: its name and how long its leases last unless renewed.
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    pub(crate) member: MemberName,
    pub(crate) lease_ttl: Duration,
}

/// What the runtime holds for every session of a `Warden`, whoever runs it.
pub(crate) struct Env {
    /// Set when the store is shared by several members: every write and login of a session then carries
    /// the fence of its lease.
    pub(crate) membership: Option<Membership>,
    pub(crate) clock: Clock,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) events: broadcast::Sender<WardenEvent>,
    /// Every session actor's one deadline.
    pub(crate) timers: Timers,
    /// One flush for the durable writes of many sessions.
    pub(crate) commit: GroupCommit,
    /// How long a session waits for the disk before it hands out a new grant anyway (and says so).
    pub(crate) durable_wait: Duration,
    /// The session of every running actor, by actor id: how the supervisor finds the session of an actor
    /// that failed.
    pub(crate) actors: Mutex<HashMap<ActorId, Arc<SessionShared>>>,
    /// Bumped whenever a session actor starts or is gone: handles waiting for a restarted actor look again.
    pub(crate) actor_started: watch::Sender<u64>,
}

impl Env {
    pub(crate) fn publish(&self, session: &SessionId, at: UnixMs, kind: WardenEventKind) {
        // No receiver is fine: events are offered, not owed.
        let _ = self.events.send(WardenEvent { session: session.clone(), at, kind });
    }
}

/// A session's status and, once someone subscribed, the watch that shows it.
struct StatusCell {
    status: SessionStatus,
    watch: Option<watch::Sender<SessionStatus>>,
}

/// What the supervisor keeps about a session across its actor's restarts.
#[derive(Default)]
pub(crate) struct Supervision {
    /// When its actor failed, within the restart-limit window.
    pub(crate) restarts: VecDeque<UnixMs>,
    /// Set when the restart limit is spent: the next actor goes `Invalid` at once.
    pub(crate) give_up: Option<InvalidReason>,
}

/// The state one session's handle, actor and supervisor share. Laid out in declaration order so that what
/// `token()` reads (the lease cell, the clock) shares a cache line with the reference counts that precede
/// it: a handle picked at random among 100,000 costs one cache miss for its state, not two.
#[repr(C)]
pub(crate) struct SessionShared {
    /// The published lease: the token hot path's one load.
    pub(crate) lease: LeaseCell,
    /// The runtime's clock (a clone kept here so the hot path reaches its coarse reading in one step).
    pub(crate) clock: Clock,
    /// Every generation up to this one is revoked (rejected, expired, cut off): a lease of one is dead
    /// even if a caller still holds it.
    pub(crate) revoked_upto: AtomicU64,
    pub(crate) closed: AtomicBool,
    /// The fence of the lease this member holds on the session (`0`: none, the store is not shared).
    pub(crate) fence: AtomicU64,
    /// Set (with `closed`) once this member lost the lease: handles then answer `NotOwner`.
    pub(crate) lost: AtomicBool,
    pub(crate) id: SessionId,
    pub(crate) policy: Arc<Policy>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) limiter: Option<Arc<AccountLimiter>>,
    /// The limiters of the broker's endpoint classes (see `SessionHandle::execute_at`).
    pub(crate) class_limiters: Box<[ClassLimiter]>,
    pub(crate) seed: u64,
    pub(crate) env: Arc<Env>,
    pub(crate) counters: Counters,
    pub(crate) credentials: Mutex<Credentials>,
    pub(crate) supervision: Mutex<Supervision>,
    status: Mutex<StatusCell>,
    actor: Mutex<Option<ActorRef<SessionMsg>>>,
    /// Requests waiting for a token, made at the first one.
    herd: OnceLock<Box<Herd>>,
}

/// What a new session starts with.
pub(crate) struct NewSession {
    pub(crate) id: SessionId,
    pub(crate) policy: Arc<Policy>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) credentials: Credentials,
    pub(crate) limiter: Option<Arc<AccountLimiter>>,
    pub(crate) class_limiters: Box<[ClassLimiter]>,
    pub(crate) seed: u64,
}

impl SessionShared {
    pub(crate) fn new(env: &Arc<Env>, new: NewSession, now: UnixMs) -> SessionShared {
        let status = SessionStatus {
            state: StateKind::Expired,
            generation: Generation::NONE,
            invalid_reason: None,
            since: now,
            last_failure: None,
            waiting_for: None,
        };
        SessionShared {
            lease: LeaseCell::default(),
            clock: env.clock.clone(),
            revoked_upto: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            fence: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            id: new.id,
            policy: new.policy,
            broker: new.broker,
            limiter: new.limiter,
            class_limiters: new.class_limiters,
            seed: new.seed,
            env: env.clone(),
            counters: Counters::default(),
            credentials: Mutex::new(new.credentials),
            supervision: Mutex::new(Supervision::default()),
            status: Mutex::new(StatusCell { status, watch: None }),
            actor: Mutex::new(None),
            herd: OnceLock::new(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// What a handle answers once the session is closed: `NotOwner` when this member lost its lease.
    pub(crate) fn closed_error(&self) -> RequestError {
        if self.lost.load(Ordering::Acquire) { RequestError::NotOwner } else { RequestError::Closed }
    }

    /// The fence every write and login of the session carries: `Some` when the store is shared.
    pub(crate) fn fence(&self) -> Option<Fence> {
        self.env.membership.as_ref().map(|_| Fence(self.fence.load(Ordering::Acquire)))
    }

    /// This member lost the session's lease: close it (no restart), withdraw the published lease and say
    /// so, once. Returns whether this call was the one that marked it. The actor, if one runs, must stop
    /// itself without any further write or broker call (see `ActorState::lose`).
    pub(crate) fn mark_lost(&self, now: UnixMs, detail: String) -> bool {
        if self.lost.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.closed.store(true, Ordering::Release);
        self.lease.publish(None);
        let fence = Fence(self.fence.load(Ordering::Acquire));
        tracing::warn!(session = %self.id, %fence, %detail, "lease lost; the session stops here without logging out");
        self.env.publish(&self.id, now, WardenEventKind::OwnershipLost { fence, detail });
        self.env.actor_started.send_modify(|n| *n = n.wrapping_add(1));
        true
    }

    pub(crate) fn credentials(&self) -> Credentials {
        lock(&self.credentials).clone()
    }

    /// Whether a lease taken earlier may still be used for a call starting at `now`: not revoked since,
    /// and not past its usable end.
    pub(crate) fn is_current(&self, lease: &warden_engine::Lease, now: UnixMs) -> bool {
        lease.generation.0 > self.revoked_upto.load(Ordering::Acquire) && now < lease.usable_until
    }

    /// Where requests wait for a token together.
    pub(crate) fn herd(&self) -> &Herd {
        self.herd.get_or_init(Box::default)
    }

    /// The session's running actor, if it has one now.
    pub(crate) fn actor(&self) -> Option<ActorRef<SessionMsg>> {
        lock(&self.actor).clone()
    }

    /// A new actor runs the session: handles waiting for one look again.
    pub(crate) fn set_actor(&self, actor: ActorRef<SessionMsg>) {
        *lock(&self.actor) = Some(actor);
        self.env.actor_started.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The actor `id` is gone (if it is still the session's actor): handles waiting on it look again.
    pub(crate) fn clear_actor(&self, id: ActorId) {
        let mut actor = lock(&self.actor);
        if actor.as_ref().is_some_and(|a| a.get_id() == id) {
            *actor = None;
            drop(actor);
            self.env.actor_started.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether the session has no running actor.
    pub(crate) fn has_no_actor(&self) -> bool {
        lock(&self.actor).is_none()
    }

    /// The status now.
    pub(crate) fn status(&self) -> SessionStatus {
        lock(&self.status).status.clone()
    }

    /// A watch of the status (made at the first subscription).
    pub(crate) fn subscribe(&self) -> watch::Receiver<SessionStatus> {
        let mut cell = lock(&self.status);
        let StatusCell { status, watch } = &mut *cell;
        watch.get_or_insert_with(|| watch::Sender::new(status.clone())).subscribe()
    }

    /// Changes the status; subscribers hear of it only if it changed.
    pub(crate) fn update_status(&self, update: impl FnOnce(&mut SessionStatus)) {
        let mut cell = lock(&self.status);
        let mut next = cell.status.clone();
        update(&mut next);
        if next != cell.status {
            if let Some(watch) = &cell.watch {
                watch.send_replace(next.clone());
            }
            cell.status = next;
        }
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
