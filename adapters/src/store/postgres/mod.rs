//! [`PostgresStore`]: the [`Store`] in PostgreSQL, shared by several warden processes (members), every
//! record encrypted as in the sled store, every session owned by one member at a time under a fenced
//! lease.
//!
//! Tables (in the store's own PostgreSQL schema, `warden` by default; see [`schema`]): `snapshots`,
//! `log`, `leases`, `members`, `login_attempts`, `quarantine`, `meta` and `schema_version`. Snapshots
//! and log steps are sealed by [`RecordCodec`] exactly as in sled (same bytes, same associated data).
//!
//! One worker thread owns the connection (module `worker`); trait calls never touch it. Writes (`save`,
//! `save_deferred`, `append_logs`, their fenced forms, `remove`) are queued (module `queue`) and committed in
//! batches, one transaction each, as fast as the database takes them: group commit. A `save` with
//! [`Durability::Flushed`] and [`Store::flush`] wait until every write queued before them is committed,
//! and fail with [`StoreError::Io`] after a bounded wait (the writes stay queued and are retried). Reads
//! see queued writes. Ownership calls (leases, members, login attempts) are run by the worker one by one
//! and are committed when they return (module `ops`).
//!
//! Fencing: a write under a fence is committed only if that fence holds the session's lease at commit
//! time — checked in the batch's transaction with the lease row locked, never check-then-write. A refused
//! write of a deferred save shows in [`Store::fence_status`] after the flush, and later writes under that
//! fence are refused at once.
//!
//! The database URL may hold a password: it is kept only inside the connection settings, and `Debug` and
//! every error name the store as `postgres://user@host:port/db` without it. This build connects without
//! TLS (`NoTls`): use it on loopback or a private network.
//!
//! ```no_run
//! use warden_adapters::{PostgresOptions, PostgresStore, StoreKey};
//! use warden_engine::{LoadOutcome, SessionId, Store};
//!
//! let options = PostgresOptions::new("postgres://warden@127.0.0.1:5432/warden", StoreKey::from_bytes([7; 32]));
//! let store = PostgresStore::open(options).unwrap();
//! let id = SessionId::new("demo").unwrap();
//! assert!(matches!(store.load(&id), Ok(LoadOutcome::Missing)));
//! ```

mod ops;
mod queue;
pub mod schema;
mod worker;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::Client;
use warden_engine::{
    Durability, Fence, HeldLease, LeaseOutcome, LoadOutcome, LoginAttempt, MemberName, Pending, SessionEvent,
    SessionId, Snapshot, Store, StoreError, UnixMs,
};
use zeroize::Zeroizing;

use self::queue::{Cursor, QueueLimits, Shared, WAIT_SLICE, WriteKind, fenced};
use self::worker::{Call, WorkerConfig};
use super::key::StoreKey;
use super::record::RecordCodec;

/// Writes committed in one transaction at most.
pub const DEFAULT_MAX_BATCH_WRITES: usize = 4_096;
/// Writes queued (not yet committed) at most; a writer waits, bounded, when the queue is full.
pub const DEFAULT_MAX_QUEUED_WRITES: usize = 100_000;
/// How long a flush (or a `Flushed` save) waits for its writes to commit before it fails.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read or an ownership call waits for the worker before it fails.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run (the server's `statement_timeout`), lock waits included.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server lets the store's connection sit inside a transaction between two statements
/// (`idle_in_transaction_session_timeout`) before it aborts the transaction and frees its locks. The
/// store sends a transaction's statements back to back, so only a stalled process (stopped, swapped out)
/// comes near it; without it such a process would hold the lease rows it locked, and every other
/// member's takeover would wait for it.
pub const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Log steps kept per session (at least; trimmed every [`LOG_TRIM_EVERY`] appends of a session).
pub const DEFAULT_LOG_RETENTION: usize = 1_000;
/// Appends of a session between two trims of its log.
pub const LOG_TRIM_EVERY: u32 = 64;
/// The PostgreSQL schema (namespace) of the store's tables unless set otherwise.
pub const DEFAULT_SCHEMA: &str = "warden";

/// How to open a [`PostgresStore`]: `PostgresOptions::new(url, key)` and the setters.
#[derive(Clone)]
pub struct PostgresOptions {
    url: Zeroizing<String>,
    key: StoreKey,
    schema: String,
    max_batch_writes: usize,
    max_queued_writes: usize,
    flush_timeout: Duration,
    call_timeout: Duration,
    connect_timeout: Duration,
    statement_timeout: Duration,
    idle_in_transaction_timeout: Duration,
    log_retention: usize,
}

impl PostgresOptions {
    /// A store at `url` (`postgres://user:password@host:port/db`, or the `key=value` form) sealed with
    /// `key`.
    pub fn new(url: impl Into<String>, key: StoreKey) -> PostgresOptions {
        PostgresOptions {
            url: Zeroizing::new(url.into()),
            key,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_batch_writes: DEFAULT_MAX_BATCH_WRITES,
            max_queued_writes: DEFAULT_MAX_QUEUED_WRITES,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            idle_in_transaction_timeout: DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT,
            log_retention: DEFAULT_LOG_RETENTION,
        }
    }

    /// The PostgreSQL schema that holds the tables (default [`DEFAULT_SCHEMA`]): lower-case letters,
    /// digits and `_`. Several stores can share a database in different schemas.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> PostgresOptions {
        self.schema = schema.into();
        self
    }

    /// Writes per transaction at most, at least 1 (default [`DEFAULT_MAX_BATCH_WRITES`]).
    #[must_use]
    pub fn max_batch_writes(mut self, writes: usize) -> PostgresOptions {
        self.max_batch_writes = writes.max(1);
        self
    }

    /// Writes queued at most, at least 1 (default [`DEFAULT_MAX_QUEUED_WRITES`]).
    #[must_use]
    pub fn max_queued_writes(mut self, writes: usize) -> PostgresOptions {
        self.max_queued_writes = writes.max(1);
        self
    }

    /// How long a flush waits for its writes (default [`DEFAULT_FLUSH_TIMEOUT`]).
    #[must_use]
    pub fn flush_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.flush_timeout = timeout;
        self
    }

    /// How long a read or an ownership call waits (default [`DEFAULT_CALL_TIMEOUT`]).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.call_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.connect_timeout = timeout;
        self
    }

    /// The server's `statement_timeout` for the store's connection (default
    /// [`DEFAULT_STATEMENT_TIMEOUT`]).
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.statement_timeout = timeout;
        self
    }

    /// The server's `idle_in_transaction_session_timeout` for the store's connection (default
    /// [`DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT`]): how long a stalled member can hold the rows its
    /// transaction locked.
    #[must_use]
    pub fn idle_in_transaction_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.idle_in_transaction_timeout = timeout;
        self
    }

    /// Log steps kept per session, at least 1 (default [`DEFAULT_LOG_RETENTION`]).
    #[must_use]
    pub fn log_retention(mut self, steps: usize) -> PostgresOptions {
        self.log_retention = steps.max(1);
        self
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = self.url.parse::<postgres::Config>().map(|c| describe_config(&c)).unwrap_or_default();
        f.debug_struct("PostgresOptions")
            .field("url", &place)
            .field("key", &self.key)
            .field("schema", &self.schema)
            .field("max_batch_writes", &self.max_batch_writes)
            .field("max_queued_writes", &self.max_queued_writes)
            .field("flush_timeout", &self.flush_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("log_retention", &self.log_retention)
            .finish_non_exhaustive()
    }
}

/// What a [`PostgresStore`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresStats {
    /// Batches committed (one transaction each).
    pub batches: u64,
    /// Writes committed.
    pub writes_committed: u64,
    /// Writes refused for their fence.
    pub writes_refused: u64,
    /// Batches that failed (and were queued again).
    pub batch_failures: u64,
    /// Connections opened again after one was lost.
    pub reconnects: u64,
}

/// The [`Store`] in PostgreSQL. Dropping it commits what is queued (a bounded number of connection
/// attempts) and stops its worker.
pub struct PostgresStore {
    shared: Arc<Shared>,
    codec: Arc<RecordCodec>,
    place: String,
    schema: String,
    limits: QueueLimits,
    flush_slices: u32,
    call_timeout: Duration,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// `postgres://user@host:port/db`, never the password.
fn describe_config(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or(config.get_user().unwrap_or(""))
    )
}

fn slices(timeout: Duration) -> u32 {
    (timeout.as_millis() / WAIT_SLICE.as_millis()).clamp(1, u128::from(u32::MAX)) as u32
}

impl PostgresStore {
    /// Connects, applies the migrations, checks the key and starts the worker. Fails with
    /// [`StoreError::Io`] when the database cannot be reached or migrated (the message names the store
    /// without its password), [`StoreError::Key`] when its records were sealed with another key.
    pub fn open(options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let mut config: postgres::Config = options.url.parse().map_err(|e| StoreError::Io {
            path: "postgres".to_owned(),
            // The parser's message names the bad part, never the password's value.
            detail: format!("the database URL does not parse: {e}"),
        })?;
        let place = describe_config(&config);
        if !schema::valid_schema_name(&options.schema) {
            return Err(StoreError::Io {
                path: place,
                detail: format!(
                    "schema name `{}`: use lower-case letters, digits and `_` (at most 63, not starting with a digit)",
                    options.schema
                ),
            });
        }
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(options.statement_timeout + Duration::from_secs(5))
            .application_name(&format!("warden/{}", options.schema))
            .options(&format!(
                "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
                options.statement_timeout.as_millis(),
                options.idle_in_transaction_timeout.as_millis().max(1)
            ));
        let worker_config = WorkerConfig {
            config,
            schema: options.schema.clone(),
            place: place.clone(),
            max_batch_writes: options.max_batch_writes,
            log_retention: options.log_retention,
        };
        let io = |e: postgres::Error| StoreError::Io { path: place.clone(), detail: worker::describe(&e) };
        let mut client: Client = worker_config.config.connect(postgres::NoTls).map_err(io)?;
        schema::migrate(&mut client, &options.schema, &place)?;
        client.batch_execute(&schema::search_path_statement(&options.schema)).map_err(io)?;
        let codec = Arc::new(RecordCodec::new(&options.key));
        schema::check_key(&mut client, &codec, &place)?;

        let shared = Arc::new(Shared::new());
        let worker_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("warden-postgres".to_owned())
            .spawn(move || {
                let place = worker_config.place.clone();
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker::run(worker_shared.clone(), worker_config, client)
                }));
                if ran.is_err() {
                    // A bug, never stored bytes: the store stops answering at once instead of timing out.
                    tracing::error!(store = %place, "PostgreSQL store: the worker thread panicked; the store is closed");
                    worker::stopped(&worker_shared, &place);
                }
            })
            .map_err(|e| StoreError::Io { path: place.clone(), detail: format!("starting the worker thread: {e}") })?;
        Ok(PostgresStore {
            shared,
            codec,
            place,
            schema: options.schema,
            limits: QueueLimits {
                max_queued_writes: options.max_queued_writes,
                full_wait_slices: slices(options.flush_timeout),
            },
            flush_slices: slices(options.flush_timeout),
            call_timeout: options.call_timeout,
            worker: Mutex::new(Some(handle)),
        })
    }

    /// The store's name in messages: `postgres://user@host:port/db` (no password).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// The PostgreSQL schema that holds the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// What the store has done so far.
    pub fn stats(&self) -> PostgresStats {
        self.shared.lock().stats
    }

    /// Writes queued and not yet committed.
    pub fn queued_writes(&self) -> usize {
        let state = self.shared.lock();
        state.writes.len() + state.in_flight
    }

    /// Runs `run` on the worker's connection and waits (bounded by the call timeout) for its answer.
    fn call<T: Send + 'static>(
        &self,
        what: &str,
        run: impl FnMut(&mut Client) -> ops::Answer<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = sync_channel(1);
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = Call { run, reply, abandoned: abandoned.clone() };
        {
            let mut state = self.shared.lock();
            if state.closing {
                return Err(StoreError::Io {
                    path: self.place.clone(),
                    detail: format!("{what}: the store is closing"),
                });
            }
            state.jobs.push_back(Box::new(job));
        }
        self.shared.work.notify_one();
        match answer.recv_timeout(self.call_timeout) {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => {
                abandoned.store(true, Ordering::Release);
                let last = self.shared.lock().last_error.clone();
                Err(StoreError::Io {
                    path: self.place.clone(),
                    detail: format!(
                        "{what}: no answer within {:?}{}",
                        self.call_timeout,
                        last.map(|e| format!(" (the last attempt failed: {e})")).unwrap_or_default()
                    ),
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(StoreError::Io { path: self.place.clone(), detail: format!("{what}: the worker stopped") })
            }
        }
    }

    fn queue_snapshot(&self, snapshot: &Snapshot, fence: Option<Fence>) -> Result<u64, StoreError> {
        let record = self.codec.seal_snapshot(snapshot)?;
        // The overlay copy is what a load from the database would give: the snapshot as sealed.
        let copy = Box::new(snapshot.clone());
        self.shared.enqueue(&snapshot.session_id, fence, WriteKind::Snapshot(record), &self.limits, |overlay, id| {
            overlay.snapshot = Some((id, Some(copy)));
        })
    }

    /// Waits for write `id`, then reports a refusal of its fence.
    fn wait_for(&self, id: u64, session: &SessionId, fence: Option<Fence>, what: &str) -> Result<(), StoreError> {
        self.shared.wait_done(id, self.flush_slices, what, &self.place)?;
        match fence {
            Some(fence) => self.fence_status(session, fence),
            None => Ok(()),
        }
    }

    fn save_with(&self, snapshot: &Snapshot, durability: Durability, fence: Option<Fence>) -> Result<(), StoreError> {
        let id = self.queue_snapshot(snapshot, fence)?;
        match durability {
            Durability::Buffered => Ok(()),
            Durability::Flushed => self.wait_for(id, &snapshot.session_id, fence, "a flushed save"),
        }
    }

    /// The next log sequence number for `session` under `fence` (0 for unfenced writes): past every step
    /// in the database, and at least `fence << 32`, so the steps of different owners never collide and
    /// sort by owner.
    fn next_seq(&self, session: &SessionId, fence: Fence) -> Result<(u64, bool), StoreError> {
        let cached = {
            let mut state = self.shared.lock();
            match state.cursors.get_mut(session) {
                Some(cursor) if cursor.fence == fence => {
                    let seq = cursor.next;
                    cursor.next += 1;
                    cursor.since_trim += 1;
                    let trim = cursor.since_trim >= LOG_TRIM_EVERY;
                    if trim {
                        cursor.since_trim = 0;
                    }
                    Some((seq, trim))
                }
                _ => None,
            }
        };
        if let Some(next) = cached {
            return Ok(next);
        }
        let id = session.clone();
        let stored = self.call("reading the log cursor", move |client| ops::max_seq(client, &id))?;
        let floor = fence.0 << 32;
        let next = stored.map_or(floor, |max| (max + 1).max(floor));
        let mut state = self.shared.lock();
        let cursor = state.cursors.entry(session.clone()).or_insert(Cursor { fence, next, since_trim: 0 });
        if cursor.fence != fence {
            *cursor = Cursor { fence, next, since_trim: 0 };
        }
        let seq = cursor.next.max(next);
        cursor.next = seq + 1;
        cursor.since_trim += 1;
        Ok((seq, false))
    }

    fn append_with(
        &self,
        session: &SessionId,
        events: &[SessionEvent],
        fence: Option<Fence>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if let (Some(fence), Some(refusal)) = (fence, self.shared.lock().refused.get(session))
            && fence <= refusal.fence
        {
            return Err(fenced(session, fence, refusal.current));
        }
        let (seq, trim) = self.next_seq(session, fence.unwrap_or(Fence::NONE))?;
        let record = self.codec.seal_log_step(session, seq, events)?;
        let steps = events.to_vec();
        self.shared.enqueue(
            session,
            fence,
            WriteKind::LogStep { seq, record, trim },
            &self.limits,
            |overlay, id| {
                overlay.steps.push((id, seq, steps));
            },
        )?;
        Ok(())
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("place", &self.place)
            .field("schema", &self.schema)
            .field("queued_writes", &self.queued_writes())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        if let Some(handle) = self.worker.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = handle.join();
        }
    }
}

impl Store for PostgresStore {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        {
            let state = self.shared.lock();
            if let Some(overlay) = state.overlay.get(session) {
                match &overlay.snapshot {
                    Some((_, Some(snapshot))) => return Ok(LoadOutcome::Found(snapshot.clone())),
                    Some((_, None)) => return Ok(LoadOutcome::Missing),
                    None if overlay.removed.is_some() => return Ok(LoadOutcome::Missing),
                    None => {}
                }
            }
        }
        let codec = self.codec.clone();
        let id = session.clone();
        self.call("loading a snapshot", move |client| ops::load(client, &codec, &id))
    }

    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        self.save_with(snapshot, durability, None)
    }

    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.queue_snapshot(snapshot, None).map(|_| Pending::Flush)
    }

    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        self.append_with(session, std::slice::from_ref(event), None)
    }

    fn append_logs(&self, session: &SessionId, events: &[SessionEvent]) -> Result<(), StoreError> {
        self.append_with(session, events, None)
    }

    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let codec = self.codec.clone();
        let shared = self.shared.clone();
        let id = session.clone();
        self.call("reading a log", move |client| ops::read_log(client, &codec, &shared, &id, limit))
    }

    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        self.shared.enqueue(session, None, WriteKind::Remove, &self.limits, |overlay, id| {
            overlay.snapshot = Some((id, None));
            overlay.removed = Some(id);
            overlay.steps.clear();
        })?;
        self.shared.lock().cursors.remove(session);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let last = self.shared.lock().next_id - 1;
        self.shared.wait_done(last, self.flush_slices, "a flush", &self.place)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn acquire_lease(
        &self,
        session: &SessionId,
        member: &MemberName,
        ttl: Duration,
        now: UnixMs,
    ) -> Result<LeaseOutcome, StoreError> {
        let (id, name) = (session.clone(), member.clone());
        self.call("acquiring a lease", move |client| ops::acquire(client, &id, &name, ttl, now))
    }

    fn renew_lease(
        &self,
        session: &SessionId,
        member: &MemberName,
        fence: Fence,
        ttl: Duration,
        now: UnixMs,
    ) -> Result<UnixMs, StoreError> {
        let (id, name) = (session.clone(), member.clone());
        self.call("renewing a lease", move |client| ops::renew(client, &id, &name, fence, ttl, now))
    }

    fn renew_all(&self, member: &MemberName, ttl: Duration, now: UnixMs) -> Result<Vec<HeldLease>, StoreError> {
        let name = member.clone();
        self.call("renewing leases", move |client| ops::renew_all(client, &name, ttl, now))
    }

    fn release_lease(&self, session: &SessionId, member: &MemberName, fence: Fence) -> Result<(), StoreError> {
        // What was written under the lease lands before it is given up.
        self.flush()?;
        let (id, name) = (session.clone(), member.clone());
        self.call("releasing a lease", move |client| ops::release(client, &id, &name, fence))
    }

    fn save_fenced(&self, snapshot: &Snapshot, durability: Durability, fence: Fence) -> Result<(), StoreError> {
        self.save_with(snapshot, durability, Some(fence))
    }

    fn save_deferred_fenced(&self, snapshot: &Snapshot, fence: Fence) -> Result<Pending, StoreError> {
        self.queue_snapshot(snapshot, Some(fence)).map(|_| Pending::Flush)
    }

    fn append_logs_fenced(&self, session: &SessionId, events: &[SessionEvent], fence: Fence) -> Result<(), StoreError> {
        self.append_with(session, events, Some(fence))
    }

    fn fence_status(&self, session: &SessionId, fence: Fence) -> Result<(), StoreError> {
        match self.shared.lock().refused.get(session) {
            Some(refusal) if fence <= refusal.fence => Err(fenced(session, fence, refusal.current)),
            _ => Ok(()),
        }
    }

    fn heartbeat_member(&self, member: &MemberName, ttl: Duration, now: UnixMs) -> Result<(), StoreError> {
        let name = member.clone();
        self.call("a member heartbeat", move |client| ops::heartbeat(client, &name, ttl, now))
    }

    fn leave_member(&self, member: &MemberName) -> Result<(), StoreError> {
        let name = member.clone();
        self.call("leaving the members", move |client| ops::leave(client, &name))
    }

    fn live_members(&self, now: UnixMs) -> Result<Vec<MemberName>, StoreError> {
        self.call("listing members", move |client| ops::live_members(client, now))
    }

    fn record_login_attempt(&self, session: &SessionId, fence: Fence, at: UnixMs) -> Result<(), StoreError> {
        let id = session.clone();
        self.call("recording a login attempt", move |client| ops::record_attempt(client, &id, fence, at))
    }

    fn login_attempts(&self, session: &SessionId, limit: usize) -> Result<Vec<LoginAttempt>, StoreError> {
        let id = session.clone();
        self.call("reading login attempts", move |client| ops::login_attempts(client, &id, limit))
    }
}
