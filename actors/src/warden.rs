//! `Warden`: the facade an algo engine embeds.
//!
//! ```no_run
//! # async fn demo(broker: std::sync::Arc<dyn warden_engine::Broker>) -> Result<(), Box<dyn std::error::Error>> {
//! use warden_actors::{SessionSpec, Warden};
//! use warden_engine::{Credentials, SessionId};
//!
//! let warden = Warden::builder().store_path("/var/lib/algo/warden.db").build().await?;
//! let spec = SessionSpec::new(SessionId::new("kotak-main")?, broker)
//!     .with_credentials(Credentials::new().with("user", "u").with("password", "p"));
//! let session = warden.open(spec).await?;
//! let token = session.token().await?; // lock-free while the session is valid
//! # let _ = token;
//! warden.shutdown(false).await;
//! # Ok(()) }
//! ```
//!
//! `build()` opens the store and starts the supervisor; `open()` spawns one supervised session actor that
//! resumes from the store (a still-valid grant is reused: no login, no second-factor prompt after a
//! restart). `events()` is a broadcast of every session's events, so an engine can clear its feed,
//! symbol and order caches when a grant is revoked. `shutdown()` stops everything cleanly (optionally
//! logging out) and flushes the store; dropping a `Warden` stops its actors without logging out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::{broadcast, oneshot, watch};
use warden_engine::limits::LimitScope;
use warden_engine::{Broker, Credentials, Generation, Policy, SessionId, StateKind, Store, StoreError, UnixMs};

use crate::clock::Clock;
use crate::errors::WardenError;
use crate::handle::SessionHandle;
use crate::lease::LeaseCell;
use crate::ratelimit::{AccountLimiter, ClassLimiter};
use crate::session_actor::SessionArgs;
use crate::shared::{Counters, Env, SessionShared, SessionStatus, WardenEvent};
use crate::supervisor::{Supervisor, SupervisorMsg};

/// How many events the broadcast keeps for a slow receiver before it reports a lag.
pub const EVENT_CAPACITY: usize = 4096;

/// What to open: one broker session.
#[derive(Clone)]
pub struct SessionSpec {
    /// The session's id (unique in the store).
    pub id: SessionId,
    /// The broker adapter.
    pub broker: Arc<dyn Broker>,
    /// The credentials for logins.
    pub credentials: Credentials,
    /// The policy; `None` uses the `Warden`'s default.
    pub policy: Option<Policy>,
    /// The broker account whose request rate limit this session shares (`None`: the session id).
    pub account: Option<String>,
    /// Seed of the session's jitter (deterministic replays).
    pub seed: u64,
}

impl std::fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSpec")
            .field("id", &self.id)
            .field("broker", &self.broker.name())
            .field("credentials", &self.credentials)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SessionSpec {
    /// A session of `broker` named `id`, with no credentials and the default policy.
    pub fn new(id: SessionId, broker: Arc<dyn Broker>) -> SessionSpec {
        SessionSpec { id, broker, credentials: Credentials::new(), policy: None, account: None, seed: 0 }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> SessionSpec {
        self.credentials = credentials;
        self
    }

    /// Sets the policy.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> SessionSpec {
        self.policy = Some(policy);
        self
    }

    /// Sets the broker account that shares the request rate limit.
    #[must_use]
    pub fn with_account(mut self, account: impl Into<String>) -> SessionSpec {
        self.account = Some(account.into());
        self
    }

    /// Sets the jitter seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> SessionSpec {
        self.seed = seed;
        self
    }
}

/// Where the `Warden` keeps its snapshots.
enum StoreChoice {
    Memory,
    Path(PathBuf, warden_adapters::SledOptions),
    Given(Arc<dyn Store>),
}

/// Builds a [`Warden`].
pub struct WardenBuilder {
    store: StoreChoice,
    policy: Policy,
    clock: Option<Clock>,
    seed: u64,
}

impl std::fmt::Debug for WardenBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WardenBuilder").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl WardenBuilder {
    /// Keep snapshots in a sled database at `path` (encrypted; see `docs/store.md`).
    #[must_use]
    pub fn store_path(self, path: impl AsRef<Path>) -> WardenBuilder {
        self.store_path_with(path, warden_adapters::SledOptions::default())
    }

    /// Keep snapshots in a sled database at `path`, opened with `options` (key source, flush policy,
    /// log retention).
    #[must_use]
    pub fn store_path_with(mut self, path: impl AsRef<Path>, options: warden_adapters::SledOptions) -> WardenBuilder {
        self.store = StoreChoice::Path(path.as_ref().to_path_buf(), options);
        self
    }

    /// Keep snapshots in memory only (tests; sessions do not survive the process).
    #[must_use]
    pub fn memory_store(mut self) -> WardenBuilder {
        self.store = StoreChoice::Memory;
        self
    }

    /// Use this store.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn Store>) -> WardenBuilder {
        self.store = StoreChoice::Given(store);
        self
    }

    /// The policy of sessions opened without one.
    #[must_use]
    pub fn default_policy(mut self, policy: Policy) -> WardenBuilder {
        self.policy = policy;
        self
    }

    /// Use this clock (the simulator's virtual wall clock); default: the system clock.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> WardenBuilder {
        self.clock = Some(clock);
        self
    }

    /// Seed of the supervisor's restart jitter.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> WardenBuilder {
        self.seed = seed;
        self
    }

    /// Opens the store and starts the supervisor. Must be called inside a tokio runtime.
    pub async fn build(self) -> Result<Warden, WardenError> {
        let clock = self.clock.unwrap_or_else(Clock::system);
        let store: Arc<dyn Store> = match self.store {
            StoreChoice::Memory => Arc::new(warden_adapters::MemoryStore::new()),
            StoreChoice::Given(store) => store,
            StoreChoice::Path(path, options) => {
                let stamp = clock.clone();
                open_sled(&path, options.clock(Arc::new(move || stamp.now())))?
            }
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let env = Arc::new(Env { clock, store, events });
        let (supervisor, _join) = Actor::spawn(None, Supervisor, self.seed)
            .await
            .map_err(|e| WardenError::Runtime(format!("could not start the supervisor: {e}")))?;
        Ok(Warden {
            inner: Arc::new(WardenInner {
                env,
                supervisor,
                policy: self.policy,
                sessions: Mutex::new(HashMap::new()),
                limiters: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }
}

/// Sled databases open in this process, by path: a `Warden` rebuilt on the same path while the old
/// one's actors are still winding down shares the open database instead of failing on sled's lock.
static OPEN_STORES: Mutex<Vec<(PathBuf, Weak<warden_adapters::SledStore>)>> = Mutex::new(Vec::new());

fn open_sled(path: &Path, options: warden_adapters::SledOptions) -> Result<Arc<dyn Store>, WardenError> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut open = OPEN_STORES.lock().map_err(|_| StoreError::Io {
        path: path.display().to_string(),
        detail: "the store registry lock is poisoned".to_owned(),
    })?;
    open.retain(|(_, store)| store.strong_count() > 0);
    if let Some(store) = open.iter().find(|(p, _)| *p == key).and_then(|(_, s)| s.upgrade()) {
        return Ok(store);
    }
    let store = Arc::new(warden_adapters::SledStore::open(path, options)?);
    let key = std::fs::canonicalize(path).unwrap_or(key);
    open.push((key, Arc::downgrade(&store)));
    Ok(store)
}

/// The running warden: a supervisor, its sessions, a store, a clock, an event broadcast.
#[derive(Clone)]
pub struct Warden {
    inner: Arc<WardenInner>,
}

struct WardenInner {
    env: Arc<Env>,
    supervisor: ActorRef<SupervisorMsg>,
    policy: Policy,
    sessions: Mutex<HashMap<SessionId, Arc<SessionShared>>>,
    limiters: Mutex<HashMap<String, Arc<AccountLimiter>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Warden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sessions = self.inner.sessions.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Warden").field("sessions", &sessions).finish_non_exhaustive()
    }
}

impl Warden {
    /// A builder: memory store, `hybrid` policy, system clock.
    pub fn builder() -> WardenBuilder {
        WardenBuilder { store: StoreChoice::Memory, policy: Policy::default(), clock: None, seed: 0 }
    }

    /// The clock sessions run on.
    pub fn clock(&self) -> Clock {
        self.inner.env.clock.clone()
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.inner.env.store.clone()
    }

    /// Every session's events from now on.
    pub fn events(&self) -> broadcast::Receiver<WardenEvent> {
        self.inner.env.events.subscribe()
    }

    /// The limiters of the endpoint classes `spec`'s broker declares: one per session for a
    /// session's limit (kept across a close and a reopen), one per account for an application's or a
    /// user's. Classes allowing more than [`crate::ratelimit::MAX_CLASS_LOG`] per window are left to
    /// the broker's allowance headers.
    fn class_limiters(
        &self,
        id: &SessionId,
        account: Option<&str>,
        broker: &dyn Broker,
        policy: &Policy,
    ) -> Box<[ClassLimiter]> {
        let account = account.map_or_else(|| id.to_string(), str::to_owned);
        let mut limiters = self.inner.limiters.lock().unwrap_or_else(|p| p.into_inner());
        let mut classes = Vec::new();
        for limit in broker.endpoint_limits() {
            if limit.max > crate::ratelimit::MAX_CLASS_LOG {
                continue;
            }
            let name = match limit.scope {
                LimitScope::Session => format!("session {id} · {}", limit.class),
                _ => format!("{account} · {}", limit.class),
            };
            let limiter = limiters
                .entry(name.clone())
                .or_insert_with(|| {
                    let limiter = AccountLimiter::new(name, limit.rate(), self.inner.env.clock.clone());
                    Arc::new(limiter.with_network_jitter(policy.network_jitter))
                })
                .clone();
            classes.push(ClassLimiter { limit: *limit, limiter });
        }
        classes.into_boxed_slice()
    }

    /// The handle of an open session.
    pub fn session(&self, id: &SessionId) -> Option<SessionHandle> {
        let sessions = self.inner.sessions.lock().ok()?;
        sessions.get(id).cloned().map(SessionHandle::new)
    }

    /// Opens a session: validates its policy, spawns its supervised actor (which resumes from the
    /// store) and returns its handle.
    pub async fn open(&self, spec: SessionSpec) -> Result<SessionHandle, WardenError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(WardenError::Closed);
        }
        let policy = spec.policy.unwrap_or_else(|| self.inner.policy.clone());
        policy.validate().map_err(|error| WardenError::Policy { session: spec.id.clone(), error })?;
        let limiter = policy.request_rate.map(|rate| {
            let account = spec.account.clone().unwrap_or_else(|| spec.id.to_string());
            let mut limiters = self.inner.limiters.lock().unwrap_or_else(|p| p.into_inner());
            limiters
                .entry(account.clone())
                .or_insert_with(|| {
                    let limiter = AccountLimiter::new(account, rate, self.inner.env.clock.clone());
                    Arc::new(limiter.with_network_jitter(policy.network_jitter))
                })
                .clone()
        });
        let class_limiters = self.class_limiters(&spec.id, spec.account.as_deref(), spec.broker.as_ref(), &policy);
        let now = self.inner.env.clock.now();
        if let Some(detail) = spec
            .broker
            .token_lifetime()
            .and_then(|lifetime| policy.feasibility(lifetime, spec.broker.capabilities().refresh))
        {
            tracing::warn!(session = %spec.id, %detail, "the session's policy does not fit its broker");
            self.inner.env.publish(&spec.id, now, crate::shared::WardenEventKind::PolicyWarning { detail });
        }
        let shared = Arc::new(SessionShared {
            id: spec.id.clone(),
            lease: LeaseCell::default(),
            revoked_upto: std::sync::atomic::AtomicU64::new(0),
            clock: self.inner.env.clock.clone(),
            status: watch::Sender::new(SessionStatus {
                state: StateKind::Expired,
                generation: Generation::NONE,
                invalid_reason: None,
                since: now,
                last_failure: None,
                waiting_for: None,
            }),
            actor: watch::Sender::new(None),
            broker: spec.broker,
            policy,
            credentials: Mutex::new(spec.credentials),
            limiter,
            class_limiters,
            seed: spec.seed,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            env: self.inner.env.clone(),
        });
        {
            let mut sessions = self.inner.sessions.lock().map_err(|_| WardenError::Closed)?;
            if sessions.contains_key(&spec.id) {
                return Err(WardenError::AlreadyOpen(spec.id));
            }
            sessions.insert(spec.id.clone(), shared.clone());
        }
        let (reply, started) = oneshot::channel();
        let args = SessionArgs { shared: shared.clone(), give_up: None };
        let sent = self.inner.supervisor.cast(SupervisorMsg::Start { args, reply });
        let result = match sent {
            Ok(()) => started.await.unwrap_or_else(|_| Err("the supervisor stopped".to_owned())),
            Err(_) => Err("the supervisor stopped".to_owned()),
        };
        if let Err(detail) = result {
            self.forget(&spec.id);
            return Err(WardenError::Spawn { session: spec.id, detail });
        }
        Ok(SessionHandle::new(shared))
    }

    fn forget(&self, id: &SessionId) -> Option<Arc<SessionShared>> {
        self.inner.sessions.lock().ok()?.remove(id)
    }

    /// Closes a session: stops its actor (flushing the store), withdraws its lease. Its snapshot stays
    /// in the store, so opening it again resumes it.
    pub async fn close(&self, id: &SessionId) -> Result<(), WardenError> {
        let shared = self.forget(id).ok_or_else(|| WardenError::NotOpen(id.clone()))?;
        self.stop_session(&shared).await;
        Ok(())
    }

    async fn stop_session(&self, shared: &Arc<SessionShared>) {
        shared.closed.store(true, Ordering::Release);
        let (reply, forgotten) = oneshot::channel();
        if self.inner.supervisor.cast(SupervisorMsg::Forget { session: shared.id.clone(), reply }).is_ok() {
            let _ = forgotten.await;
        }
        let actor = shared.actor.borrow().clone();
        if let Some(actor) = actor {
            let _ = actor.stop_and_wait(Some("closed".to_owned()), Some(Duration::from_secs(5))).await;
        }
        shared.lease.publish(None);
        shared.actor.send_replace(None);
    }

    /// Stops every session (logging each out first if `logout`), stops the supervisor and flushes the
    /// store.
    pub async fn shutdown(&self, logout: bool) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let sessions: Vec<Arc<SessionShared>> =
            self.inner.sessions.lock().map(|mut s| s.drain().map(|(_, v)| v).collect()).unwrap_or_default();
        for shared in &sessions {
            if logout {
                let _ = SessionHandle::new(shared.clone()).logout().await;
            }
            self.stop_session(shared).await;
        }
        let _ = self.inner.supervisor.stop_and_wait(Some("shutdown".to_owned()), Some(Duration::from_secs(5))).await;
        if let Err(error) = self.inner.env.store.flush() {
            tracing::warn!(%error, "final store flush failed");
        }
    }

    /// The time now on the warden's clock.
    pub fn now(&self) -> UnixMs {
        self.inner.env.clock.now()
    }
}

impl Drop for WardenInner {
    fn drop(&mut self) {
        // Stop the actors (without logout); their snapshots are already in the store.
        if let Ok(sessions) = self.sessions.lock() {
            for shared in sessions.values() {
                shared.closed.store(true, Ordering::Release);
                shared.lease.publish(None);
                if let Some(actor) = shared.actor.borrow().as_ref() {
                    actor.stop(Some("warden dropped".to_owned()));
                }
            }
        }
        self.supervisor.stop(Some("warden dropped".to_owned()));
    }
}
