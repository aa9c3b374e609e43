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
//! `build()` opens the store and starts the supervisor, the timers and the group commit; `open()` spawns
//! one session actor, linked to the supervisor, that resumes from the store (a still-valid grant is
//! reused: no login, no second-factor prompt after a restart). Opens run concurrently: each spawns its
//! actor from the caller's task, with no round trip through the supervisor, so a platform opening 100,000
//! sessions opens them as fast as it calls `open`. Sessions of the same policy share one `Arc<Policy>`.
//! `events()` is a broadcast of every session's events, so an engine can clear its feed, symbol and order
//! caches when a grant is revoked. `shutdown()` stops everything cleanly (optionally logging out) in time
//! linear in the number of sessions, with one store flush at the end; dropping a `Warden` stops its actors
//! without logging out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::{broadcast, watch};
use warden_engine::limits::LimitScope;
use warden_engine::{
    Broker, Credentials, Fence, LeaseOutcome, MemberName, Policy, SessionId, Store, StoreError, UnixMs,
};

use crate::clock::Clock;
use crate::commit::GroupCommit;
use crate::errors::WardenError;
use crate::handle::SessionHandle;
use crate::ratelimit::{AccountLimiter, ClassLimiter};
use crate::session_actor::SessionActor;
use crate::shared::{Env, Membership, NewSession, SessionShared, WardenEvent, WardenEventKind, lock};
use crate::supervisor::{Supervisor, SupervisorMsg};
use crate::timer::Timers;

/// How many events the broadcast keeps for a slow receiver before it reports a lag.
pub const EVENT_CAPACITY: usize = 4096;

/// How long a session waits for the disk to confirm a durable write before it hands out what waited
/// anyway (and says so with a `PersistFailed` event), unless set with [`WardenBuilder::durable_wait`].
pub const DEFAULT_DURABLE_WAIT: Duration = Duration::from_secs(2);

/// How many distinct policies a `Warden` shares between sessions (one `Arc` each); sessions with a
/// policy beyond these get their own copy.
pub const SHARED_POLICIES: usize = 64;

/// How long a member's leases last unless renewed, unless set with [`WardenBuilder::lease_ttl`]. The
/// `Warden` renews them every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long `shutdown` and `close` wait for session actors to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How many logouts `shutdown(true)` runs at once.
const LOGOUTS_AT_ONCE: usize = 256;

/// How session actors are ended.
#[derive(Clone, Copy)]
enum Ending {
    /// A stop: the actor finishes its message and runs `post_stop` (which disarms its timer); ractor then
    /// hands its state to the supervisor, which frees it. For one session.
    Stop,
    /// A kill: the actor ends between two messages (its handlers never wait, so never within one) and
    /// frees its state on its own thread. For every session at once, in parallel; `post_stop` does not
    /// run, so `shutdown` then clears the timers in one go.
    Kill,
}

/// What to open: one broker session.
#[derive(Clone)]
pub struct SessionSpec {
    /// The session's id (unique in the store).
    pub id: SessionId,
    /// The broker adapter.
    pub broker: Arc<dyn Broker>,
    /// The credentials for logins.
    pub credentials: Credentials,
    /// The policy; `None` uses the `Warden`'s default. Sessions of equal policies share one copy.
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
    /// Opened by `build` (off the async runtime: the client connects synchronously).
    Postgres(Box<warden_adapters::PostgresOptions>),
}

/// Builds a [`Warden`].
pub struct WardenBuilder {
    store: StoreChoice,
    policy: Policy,
    clock: Option<Clock>,
    seed: u64,
    durable_wait: Duration,
    member: Option<MemberName>,
    lease_ttl: Duration,
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

    /// Keep snapshots in PostgreSQL, shared with the other members (see `docs/cluster.md`); opened by
    /// `build`, which then needs a [`WardenBuilder::member`] name.
    #[must_use]
    pub fn postgres(mut self, options: warden_adapters::PostgresOptions) -> WardenBuilder {
        self.store = StoreChoice::Postgres(Box::new(options));
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

    /// How long a session waits for the disk to confirm that a new grant (or a login attempt) is durable
    /// before it hands the grant out (or starts the login) anyway, saying so with a `PersistFailed` event;
    /// default [`DEFAULT_DURABLE_WAIT`]. Group commit keeps the wait to a few milliseconds; this bounds it
    /// when the store fails or hangs.
    #[must_use]
    pub fn durable_wait(mut self, wait: Duration) -> WardenBuilder {
        self.durable_wait = wait;
        self
    }

    /// This `Warden`'s name among the members that share the store (see `docs/cluster.md`). Needed when
    /// the store is shared ([`Store::is_shared`]); ignored by a store with one owner.
    #[must_use]
    pub fn member(mut self, name: MemberName) -> WardenBuilder {
        self.member = Some(name);
        self
    }

    /// How long a member's leases last unless renewed (default [`DEFAULT_LEASE_TTL`]): a member that
    /// stops renewing loses its sessions to the others this long after its last renewal. Renewed every
    /// third of it.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> WardenBuilder {
        self.lease_ttl = ttl;
        self
    }

    /// Opens the store and starts the supervisor (and, on a shared store, the renewal of this member's
    /// leases). Must be called inside a tokio runtime.
    pub async fn build(self) -> Result<Warden, WardenError> {
        let clock = self.clock.unwrap_or_else(Clock::system);
        let store: Arc<dyn Store> = match self.store {
            StoreChoice::Memory => Arc::new(warden_adapters::MemoryStore::new()),
            StoreChoice::Given(store) => store,
            StoreChoice::Postgres(options) => {
                let opened = tokio::task::spawn_blocking(move || warden_adapters::PostgresStore::open(*options))
                    .await
                    .map_err(|e| WardenError::Runtime(format!("opening the PostgreSQL store did not finish: {e}")))?;
                Arc::new(opened?)
            }
            StoreChoice::Path(path, options) => {
                let stamp = clock.clone();
                open_sled(&path, options.clock(Arc::new(move || stamp.now())))?
            }
        };
        let membership = match (store.is_shared(), self.member) {
            (false, _) => None,
            (true, None) => {
                return Err(WardenError::Runtime(
                    "the store is shared by several processes: give this one a member name (WardenBuilder::member, \
                     or `member` in warden.toml's [cluster])"
                        .to_owned(),
                ));
            }
            (true, Some(member)) => {
                if self.lease_ttl < MIN_LEASE_TTL {
                    return Err(WardenError::Runtime(format!(
                        "lease_ttl ({}) must be at least {}",
                        warden_engine::time::format_duration(self.lease_ttl),
                        warden_engine::time::format_duration(MIN_LEASE_TTL)
                    )));
                }
                Some(Membership { member, lease_ttl: self.lease_ttl })
            }
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let env = Arc::new(Env {
            membership,
            timers: Timers::start(&clock),
            commit: GroupCommit::start(store.clone()),
            durable_wait: self.durable_wait,
            actors: Mutex::new(HashMap::new()),
            actor_started: watch::Sender::new(0),
            clock,
            store,
            events,
        });
        let (supervisor, _join) = Actor::spawn(None, Supervisor, (self.seed, env.clone()))
            .await
            .map_err(|e| WardenError::Runtime(format!("could not start the supervisor: {e}")))?;
        self.policy.validate().map_err(|error| WardenError::Runtime(format!("the default policy: {error}")))?;
        let warden = Warden {
            inner: Arc::new(WardenInner {
                env,
                supervisor,
                policies: Mutex::new(vec![Arc::new(self.policy)]),
                sessions: Mutex::new(HashMap::new()),
                limiters: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                placed: Mutex::new(None),
                renewal: Mutex::new(None),
            }),
        };
        if let Some(membership) = warden.inner.env.membership.clone() {
            warden.heartbeat(&membership).await?;
            let task = tokio::spawn(renewal_loop(Arc::downgrade(&warden.inner), membership));
            *lock(&warden.inner.renewal) = Some(task.abort_handle());
        }
        Ok(warden)
    }
}

/// Sled databases open in this process, by path: a `Warden` rebuilt on the same path while the old
/// one's actors are still winding down shares the open database instead of failing on sled's lock, and
/// one rebuilt while the old database is being closed waits (bounded) for the close. Entries stay after
/// their store is gone (one per path this process opened).
static OPEN_STORES: Mutex<Vec<(PathBuf, Weak<warden_adapters::SledStore>)>> = Mutex::new(Vec::new());

fn open_sled(path: &Path, options: warden_adapters::SledOptions) -> Result<Arc<dyn Store>, WardenError> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut open = OPEN_STORES.lock().map_err(|_| StoreError::Io {
        path: path.display().to_string(),
        detail: "the store registry lock is poisoned".to_owned(),
    })?;
    if let Some(store) = open.iter().find(|(p, _)| *p == key).and_then(|(_, s)| s.upgrade()) {
        return Ok(store);
    }
    // This process had the store open: its last holder may be closing it on another thread right now (a
    // flush on the blocking pool dropping the last reference), and the lock goes with the close.
    let closing = open.iter().any(|(p, _)| *p == key);
    let mut waited = Duration::ZERO;
    let store = loop {
        match warden_adapters::SledStore::open(path, options.clone()) {
            Err(StoreError::Locked { .. }) if closing && waited < CLOSING_STORE_WAIT => {
                std::thread::sleep(CLOSING_STORE_POLL);
                waited += CLOSING_STORE_POLL;
            }
            result => break Arc::new(result?),
        }
    };
    let key = std::fs::canonicalize(path).unwrap_or(key);
    open.retain(|(p, _)| *p != key);
    open.push((key, Arc::downgrade(&store)));
    Ok(store)
}

/// How long a `Warden` built on a store this process closed a moment ago waits for the close to release
/// the store's lock, polling every [`CLOSING_STORE_POLL`]. A lock held by another process is reported
/// at once.
const CLOSING_STORE_WAIT: Duration = Duration::from_secs(2);

/// The shortest lease TTL a member accepts: renewals every third of it must fit a store round trip.
const MIN_LEASE_TTL: Duration = Duration::from_millis(300);
const CLOSING_STORE_POLL: Duration = Duration::from_millis(10);

/// The running warden: a supervisor, its sessions, a store, a clock, an event broadcast.
#[derive(Clone)]
pub struct Warden {
    inner: Arc<WardenInner>,
}

struct WardenInner {
    env: Arc<Env>,
    supervisor: ActorRef<SupervisorMsg>,
    /// The policies sessions share, validated; the first is the default.
    policies: Mutex<Vec<Arc<Policy>>>,
    sessions: Mutex<HashMap<SessionId, Arc<SessionShared>>>,
    limiters: Mutex<HashMap<String, Arc<AccountLimiter>>>,
    closed: AtomicBool,
    /// In a cluster, the sessions given to [`Warden::place`]: the renewal loop opens the ones placed here.
    placed: Mutex<Option<Arc<Vec<SessionSpec>>>>,
    /// The renewal loop of a member.
    renewal: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Warden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sessions = lock(&self.inner.sessions).len();
        f.debug_struct("Warden").field("sessions", &sessions).finish_non_exhaustive()
    }
}

impl Warden {
    /// A builder: memory store, `hybrid` policy, system clock.
    pub fn builder() -> WardenBuilder {
        WardenBuilder {
            store: StoreChoice::Memory,
            policy: Policy::default(),
            clock: None,
            seed: 0,
            durable_wait: DEFAULT_DURABLE_WAIT,
            member: None,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// This member's name, when the store is shared.
    pub fn member(&self) -> Option<&MemberName> {
        self.inner.env.membership.as_ref().map(|m| &m.member)
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
        lock(&self.inner.sessions).get(id).cloned().map(SessionHandle::new)
    }

    /// Opens a session: validates its policy, spawns its actor (which resumes from the store) linked to
    /// the supervisor, and returns its handle. Opens may run concurrently.
    pub async fn open(&self, spec: SessionSpec) -> Result<SessionHandle, WardenError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(WardenError::Closed);
        }
        let policy =
            self.shared_policy(spec.policy).map_err(|error| WardenError::Policy { session: spec.id.clone(), error })?;
        let limiter = policy.request_rate.map(|rate| {
            let account = spec.account.clone().unwrap_or_else(|| spec.id.to_string());
            let mut limiters = lock(&self.inner.limiters);
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
        let new = NewSession {
            id: spec.id.clone(),
            policy,
            broker: spec.broker,
            credentials: spec.credentials,
            limiter,
            class_limiters,
            seed: spec.seed,
        };
        let shared = Arc::new(SessionShared::new(&self.inner.env, new, now));
        {
            let mut sessions = lock(&self.inner.sessions);
            if sessions.contains_key(&spec.id) {
                return Err(WardenError::AlreadyOpen(spec.id));
            }
            sessions.insert(spec.id.clone(), shared.clone());
        }
        if let Some(membership) = &self.inner.env.membership {
            // The session is reserved in the table first: a second open of it here fails above instead of
            // acquiring again (which would fence out the first).
            match self.acquire(&spec.id, membership).await {
                Ok(fence) => shared.fence.store(fence.0, Ordering::Release),
                Err(error) => {
                    self.forget(&spec.id);
                    shared.closed.store(true, Ordering::Release);
                    return Err(error);
                }
            }
        }
        let spawned = Actor::spawn_linked(None, SessionActor, shared.clone(), self.inner.supervisor.get_cell()).await;
        if let Err(error) = spawned {
            self.forget(&spec.id);
            shared.closed.store(true, Ordering::Release);
            if let Some(actor) = shared.actor() {
                lock(&self.inner.env.actors).remove(&actor.get_id());
                actor.stop(None);
            }
            return Err(WardenError::Spawn { session: spec.id, detail: error.to_string() });
        }
        Ok(SessionHandle::new(shared))
    }

    /// The shared copy of `policy` (the default when `None`), validated once.
    fn shared_policy(&self, policy: Option<Policy>) -> Result<Arc<Policy>, warden_engine::PolicyError> {
        let mut policies = lock(&self.inner.policies);
        let Some(policy) = policy else {
            return Ok(policies[0].clone());
        };
        if let Some(shared) = policies.iter().find(|p| ***p == policy) {
            return Ok(shared.clone());
        }
        policy.validate()?;
        let policy = Arc::new(policy);
        if policies.len() < SHARED_POLICIES {
            policies.push(policy.clone());
        }
        Ok(policy)
    }

    fn forget(&self, id: &SessionId) -> Option<Arc<SessionShared>> {
        lock(&self.inner.sessions).remove(id)
    }

    /// Takes the session's lease for this member: its fence, or who holds it.
    async fn acquire(&self, id: &SessionId, membership: &Membership) -> Result<Fence, WardenError> {
        let (session, member, ttl, now) =
            (id.clone(), membership.member.clone(), membership.lease_ttl, self.inner.env.clock.now());
        let outcome = crate::cluster::blocking(self.inner.env.store.clone(), move |store| {
            store.acquire_lease(&session, &member, ttl, now)
        })
        .await?;
        match outcome {
            LeaseOutcome::Granted(lease) => Ok(lease.fence),
            LeaseOutcome::Held { holder, expires_at, .. } => {
                Err(WardenError::NotOwner { session: id.clone(), holder, expires_at })
            }
            other => Err(WardenError::Runtime(format!("session {id}: unexpected lease outcome {other:?}"))),
        }
    }

    /// Registers (or keeps) this member among the live ones.
    async fn heartbeat(&self, membership: &Membership) -> Result<(), WardenError> {
        let (member, ttl, now) = (membership.member.clone(), membership.lease_ttl, self.inner.env.clock.now());
        crate::cluster::blocking(self.inner.env.store.clone(), move |store| store.heartbeat_member(&member, ttl, now))
            .await?;
        Ok(())
    }

    /// Closes a session: stops its actor, withdraws its lease, flushes the store. Its snapshot stays in
    /// the store, so opening it again resumes it. In a cluster the session's lease is then released
    /// (without logging out), so another member can take the session over at once.
    pub async fn close(&self, id: &SessionId) -> Result<(), WardenError> {
        let shared = self.forget(id).ok_or_else(|| WardenError::NotOpen(id.clone()))?;
        self.stop_sessions(std::slice::from_ref(&shared), Ending::Stop).await;
        self.flush_store();
        self.release(std::slice::from_ref(&shared)).await;
        Ok(())
    }

    /// Releases the leases of `sessions` (closed, their writes flushed) and says so: a handover. A session
    /// whose lease was lost is skipped.
    async fn release(&self, sessions: &[Arc<SessionShared>]) {
        let Some(membership) = &self.inner.env.membership else { return };
        let leases: Vec<(SessionId, Fence)> = sessions
            .iter()
            .filter(|s| !s.lost.load(Ordering::Acquire))
            .map(|s| (s.id.clone(), Fence(s.fence.load(Ordering::Acquire))))
            .filter(|(_, fence)| *fence != Fence::NONE)
            .collect();
        if leases.is_empty() {
            return;
        }
        let member = membership.member.clone();
        let released = crate::cluster::blocking(self.inner.env.store.clone(), move |store| {
            let mut released = Vec::with_capacity(leases.len());
            for (session, fence) in leases {
                match store.release_lease(&session, &member, fence) {
                    Ok(()) => released.push((session, fence)),
                    Err(error) => tracing::warn!(%session, %error, "lease not released; it lapses after its TTL"),
                }
            }
            Ok(released)
        })
        .await
        .unwrap_or_default();
        let now = self.inner.env.clock.now();
        for (session, fence) in released {
            self.inner.env.publish(&session, now, WardenEventKind::HandedOver { fence });
        }
    }

    /// Ends the actors of `sessions` (no restart), all at once, and waits (bounded) until they are gone.
    async fn stop_sessions(&self, sessions: &[Arc<SessionShared>], ending: Ending) {
        for shared in sessions {
            shared.closed.store(true, Ordering::Release);
        }
        let actors: Vec<ActorRef<crate::message::SessionMsg>> = sessions.iter().filter_map(|s| s.actor()).collect();
        for actor in &actors {
            match ending {
                Ending::Stop => actor.stop(Some("closed".to_owned())),
                Ending::Kill => actor.kill(),
            }
        }
        let deadline = self.inner.env.clock.monotonic_now() + STOP_WAIT;
        for actor in &actors {
            let _ = tokio::time::timeout_at(deadline, actor.wait(None)).await;
        }
        let mut table = lock(&self.inner.env.actors);
        for actor in &actors {
            table.remove(&actor.get_id());
        }
        for shared in sessions {
            shared.lease.publish(None);
            if let Some(actor) = shared.actor() {
                table.remove(&actor.get_id());
                shared.clear_actor(actor.get_id());
            }
        }
    }

    fn flush_store(&self) {
        if let Err(error) = self.inner.env.store.flush() {
            tracing::warn!(%error, "final store flush failed");
        }
    }

    /// Stops every session (logging each out first if `logout`, up to 256 at a time), stops the supervisor
    /// and flushes the store once. Linear in the number of sessions: every actor is ended at once, between
    /// two of its messages, and frees its own state.
    pub async fn shutdown(&self, logout: bool) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let sessions: Vec<Arc<SessionShared>> = lock(&self.inner.sessions).drain().map(|(_, v)| v).collect();
        if logout {
            let mut logouts = tokio::task::JoinSet::new();
            for shared in &sessions {
                if logouts.len() >= LOGOUTS_AT_ONCE {
                    let _ = logouts.join_next().await;
                }
                let handle = SessionHandle::new(shared.clone());
                logouts.spawn(async move {
                    let _ = handle.logout().await;
                });
            }
            while logouts.join_next().await.is_some() {}
        }
        self.stop_sessions(&sessions, Ending::Kill).await;
        // A killed actor does not disarm its timer: drop every entry (and the actor it names) at once.
        self.inner.env.timers.clear();
        let _ = self.inner.supervisor.stop_and_wait(Some("shutdown".to_owned()), Some(STOP_WAIT)).await;
        lock(&self.inner.env.actors).clear();
        self.flush_store();
        // A member drains: its leases are released so that the others take its sessions over at once.
        if let Some(renewal) = lock(&self.inner.renewal).take() {
            renewal.abort();
        }
        self.release(&sessions).await;
        if let Some(membership) = &self.inner.env.membership {
            let member = membership.member.clone();
            let left =
                crate::cluster::blocking(self.inner.env.store.clone(), move |store| store.leave_member(&member)).await;
            if let Err(error) = left {
                tracing::warn!(%error, "could not leave the members; this member lapses after its TTL");
            }
        }
    }

    /// What the group commit has done so far (flushes, tickets answered, failed flushes).
    pub fn commit_stats(&self) -> crate::commit::CommitStats {
        self.inner.env.commit.stats()
    }

    /// The time now on the warden's clock.
    pub fn now(&self) -> UnixMs {
        self.inner.env.clock.now()
    }
}

impl Drop for WardenInner {
    fn drop(&mut self) {
        // A dropped member does not release its leases (it may be dying): they lapse after their TTL.
        if let Some(renewal) = lock(&self.renewal).take() {
            renewal.abort();
        }
        // Stop the actors (without logout); their snapshots are already in the store.
        for shared in lock(&self.sessions).values() {
            shared.closed.store(true, Ordering::Release);
            shared.lease.publish(None);
            if let Some(actor) = shared.actor() {
                actor.kill();
            }
        }
        // The table of actors refers to the sessions, which refer to the shared state: break the circle.
        lock(&self.env.actors).clear();
        self.supervisor.stop(Some("warden dropped".to_owned()));
    }
}

/// Cluster membership: placement, renewal, handover (see `docs/cluster.md`).
impl Warden {
    /// In a cluster, the full list of sessions the members share: this member opens the ones rendezvous
    /// hashing places on it ([`crate::cluster::owner`] over the live members) and, on every renewal tick,
    /// places them again — it takes over a session whose owner's lease lapsed (restoring its snapshot: a
    /// still-valid grant is reused, no login) and hands over one that now belongs to another member
    /// (a last flush, then the lease released, without logging out). Every member gets the same list.
    ///
    /// Returns how many sessions run here after this first round. Fails on a store that is not shared.
    pub async fn place(&self, specs: Vec<SessionSpec>) -> Result<usize, WardenError> {
        if self.inner.env.membership.is_none() {
            return Err(WardenError::Runtime(
                "place() spreads sessions over the members of a shared store; this store has one owner: open them"
                    .to_owned(),
            ));
        }
        *lock(&self.inner.placed) = Some(Arc::new(specs));
        self.place_round().await;
        Ok(self.owned().len())
    }

    /// The sessions this member runs now: open here, lease not lost.
    pub fn owned(&self) -> Vec<SessionId> {
        lock(&self.inner.sessions).values().filter(|s| !s.lost.load(Ordering::Acquire)).map(|s| s.id.clone()).collect()
    }

    /// Stops renewing this member's leases and heartbeat, as a paused or dying process would: after the
    /// TTL the others take its sessions over, and each of its sessions stops at its first refused write or
    /// login. For tests of failures; a real member stops renewing only when it dies or shuts down.
    #[doc(hidden)]
    pub fn stop_renewing(&self) {
        if let Some(renewal) = lock(&self.inner.renewal).take() {
            renewal.abort();
        }
    }

    /// One renewal: the heartbeat and every lease at once; a lease that was not renewed is lost, and a
    /// member that could not renew for a whole TTL gives up all of them.
    async fn renew(&self, membership: &Membership, last_renewed: &mut UnixMs) {
        let held: Vec<Arc<SessionShared>> = lock(&self.inner.sessions)
            .values()
            .filter(|s| !s.lost.load(Ordering::Acquire) && s.fence.load(Ordering::Acquire) != Fence::NONE.0)
            .cloned()
            .collect();
        let now = self.inner.env.clock.now();
        let (member, ttl) = (membership.member.clone(), membership.lease_ttl);
        let renewed = crate::cluster::blocking(self.inner.env.store.clone(), move |store| {
            store.heartbeat_member(&member, ttl, now)?;
            store.renew_all(&member, ttl, now)
        })
        .await;
        match renewed {
            Ok(leases) => {
                *last_renewed = now;
                let renewed: HashMap<SessionId, Fence> = leases.into_iter().map(|l| (l.session, l.fence)).collect();
                for shared in held {
                    let fence = Fence(shared.fence.load(Ordering::Acquire));
                    if renewed.get(&shared.id) != Some(&fence) {
                        lose_session(&shared, now, "its lease was not renewed: it lapsed or another member took it");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not renew this member's leases");
                if now >= last_renewed.saturating_add(ttl) {
                    let detail = format!("its lease could not be renewed within its TTL ({error})");
                    for shared in held {
                        lose_session(&shared, now, &detail);
                    }
                }
            }
        }
    }

    /// Places the sessions given to [`Warden::place`] over the live members: opens the ones placed here
    /// that are free, hands over the ones placed elsewhere.
    async fn place_round(&self) {
        let Some(membership) = self.inner.env.membership.clone() else { return };
        let Some(specs) = lock(&self.inner.placed).clone() else { return };
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        let now = self.inner.env.clock.now();
        let live = match crate::cluster::blocking(self.inner.env.store.clone(), move |s| s.live_members(now)).await {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!(%error, "could not list the live members; placement waits for the next tick");
                return;
            }
        };
        if !live.contains(&membership.member) {
            return;
        }
        let mut leaving = Vec::new();
        for spec in specs.iter() {
            let mine = crate::cluster::owner(&spec.id, &live) == Some(&membership.member);
            let here = lock(&self.inner.sessions).get(&spec.id).cloned();
            match here {
                Some(shared) if shared.lost.load(Ordering::Acquire) => {
                    self.forget_if(&shared);
                    if mine {
                        self.open_placed(spec).await;
                    }
                }
                Some(shared) if !mine => leaving.push(shared),
                Some(_) => {}
                None if mine => self.open_placed(spec).await,
                None => {}
            }
        }
        if !leaving.is_empty() {
            for shared in &leaving {
                self.forget_if(shared);
            }
            // A last flush, then the leases go: the new owners acquire them and restore the snapshots.
            self.stop_sessions(&leaving, Ending::Stop).await;
            self.flush_store();
            self.release(&leaving).await;
        }
    }

    /// Takes `shared` out of the table of open sessions, if it is still the one there.
    fn forget_if(&self, shared: &Arc<SessionShared>) {
        let mut sessions = lock(&self.inner.sessions);
        if sessions.get(&shared.id).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            sessions.remove(&shared.id);
        }
    }

    /// Opens a session placed here; one another member still holds is tried again at the next tick.
    async fn open_placed(&self, spec: &SessionSpec) {
        match self.open(spec.clone()).await {
            Ok(_) | Err(WardenError::NotOwner { .. } | WardenError::AlreadyOpen(_) | WardenError::Closed) => {}
            Err(error) => tracing::warn!(session = %spec.id, %error, "could not open a session placed here"),
        }
    }
}

/// This member lost `shared`'s lease: mark it and stop its actor (no logout, no further write).
fn lose_session(shared: &SessionShared, now: UnixMs, detail: &str) {
    if shared.is_closed() {
        // Closed meanwhile (its lease released on purpose), or already lost: nothing to say.
        return;
    }
    shared.mark_lost(now, detail.to_owned());
    if let Some(actor) = shared.actor() {
        let _ = actor.cast(crate::message::SessionMsg::LeaseLost { detail: detail.to_owned() });
    }
}

/// A member's renewal: every third of the TTL, the heartbeat and every lease at once, then placement.
/// Ends when the `Warden` is gone or shut down.
async fn renewal_loop(inner: Weak<WardenInner>, membership: Membership) {
    let period = membership.lease_ttl / 3;
    let mut last_renewed = match inner.upgrade() {
        Some(inner) => inner.env.clock.now(),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let warden = Warden { inner };
        warden.renew(&membership, &mut last_renewed).await;
        warden.place_round().await;
    }
}
