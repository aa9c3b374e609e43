//! [`SledStore`]: the [`Store`] on disk, in a sled database, every record encrypted.
//!
//! Five trees: `snapshots` (key: session id; value: the sealed [`Snapshot`]), `log` (key: session id,
//! a zero byte, the big-endian sequence number; value: the sealed [`SessionEvent`]s of one step;
//! append-only, trimmed to [`SledOptions::log_retention`] steps per session), `quarantine` and `quarantine_log` (snapshot and
//! log records that could not be read, moved aside with the reason, each with its own cap so that log
//! entries never push out snapshots; key: a big-endian id from sled's id generator, then the session id)
//! and `meta` (the key check, see [`keys`]). Records are sealed by [`RecordCodec`]: see
//! [`record`](super::record) for the bytes. Beside sled's files, `warden.sessions` lists the sessions that
//! have saved a snapshot (see [`known`]).
//!
//! Opening takes a lock file (`warden.lock` in the database directory) before sled's own lock, so a second
//! opener — another process, or another `SledStore` in this one — gets [`StoreError::Locked`] at once,
//! never a hang; dropping the store waits (bounded) until sled has let go of its files, so it can be
//! reopened at once (see [`open`]). A database sled cannot read is moved aside and a fresh one started
//! (unless [`SledOptions::rebuild_if_unreadable`] is off); a lost or changed key stops the open with a
//! [`StoreError::Key`] (see [`keys`]). A record that does not decrypt or decode is moved to the quarantine
//! in one transaction, reported with `tracing::warn!` (session and reason, never bytes) and
//! [`Store::load`] returns [`LoadOutcome::Quarantined`], with the login attempts salvaged from the record
//! when it decrypts. A session whose record was lost with the rest of the store (rebuilt, started over,
//! or silently dropped by sled) loads as `Quarantined` too, until its next save. Nothing here panics on
//! stored bytes.
//!
//! One process owns a sled database (the lock above), so it keeps the `Store` trait's ownership defaults:
//! every lease is granted under `Fence::SINGLE_OWNER` and never lapses, fenced writes are plain writes,
//! and the login history lives in the snapshots. A store shared by several processes is
//! [`PostgresStore`](crate::PostgresStore).
//!
//! ```
//! use warden_adapters::{KeySource, SledOptions, SledStore};
//! use warden_engine::{LoadOutcome, SessionId, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SledStore::open(dir.path().join("store"), SledOptions::default().key(KeySource::Bytes([7; 32])))
//!     .unwrap();
//! let id = SessionId::new("demo").unwrap();
//! assert!(matches!(store.load(&id), Ok(LoadOutcome::Missing)));
//! ```

pub mod keys;
pub mod known;
pub mod open;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional};
use warden_engine::{
    Durability, LoadOutcome, Pending, SNAPSHOT_FORMAT_VERSION, SessionEvent, SessionId, Snapshot, Store, StoreError,
    UnixMs,
};

pub use self::keys::KEY_PROBE_LIMIT;
use self::keys::{Settled, settle_key};
pub use self::known::KNOWN_SESSIONS_FILE_NAME;
pub use self::open::LOCK_FILE_NAME;
use self::open::{DirLock, SledOpenError, move_aside, open_sled, take_lock};
use super::key::KeySource;
use super::lifetimes::{ObservedLifetime, observed_lifetimes};
use super::record::{RecordCodec, redact_quoted};

/// Tree names.
const SNAPSHOTS: &str = "snapshots";
const LOG: &str = "log";
const QUARANTINE: &str = "quarantine";
const QUARANTINE_LOG: &str = "quarantine_log";
const META: &str = "meta";

/// The key in `meta` of the reason a store's sessions start fresh (it was rebuilt or started over),
/// kept until every known session has saved again.
const FRESH_START: &[u8] = b"fresh_start";

/// The key in `meta` that says the quarantine holds snapshots only (log entries that older builds kept
/// there were moved to `quarantine_log`).
const QUARANTINE_SORTED: &[u8] = b"quarantine_sorted";

/// Log steps (records of one step's entries) kept per session unless set otherwise.
pub const DEFAULT_LOG_RETENTION: usize = 1_000;
/// Quarantined snapshot records kept (all sessions together) unless set otherwise; the oldest go first.
pub const DEFAULT_QUARANTINE_RETENTION: usize = 10_000;
/// Quarantined log entries kept (all sessions together) unless set otherwise; the oldest go first.
pub const DEFAULT_QUARANTINE_LOG_RETENTION: usize = 10_000;
/// sled's page cache, in bytes, unless set otherwise (sled's own default, 1 GiB, is far too large here).
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;
/// Decrypted snapshots kept in memory unless set otherwise.
pub const DEFAULT_SNAPSHOT_CACHE_ENTRIES: usize = 1_024;
/// sled's background flush interval unless set otherwise.
pub const DEFAULT_BACKGROUND_FLUSH_MS: u64 = 500;

/// When a write waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlushPolicy {
    /// A `save` asking for [`Durability::Flushed`] (the engine asks on every grant change) flushes before
    /// it returns, and a [`Store::save_deferred`] answers [`Pending::Flush`] (the runtime's group commit
    /// flushes it together with other sessions' writes); other writes reach the disk with sled's
    /// background flush.
    #[default]
    AsRequested,
    /// Every `save`, `append_log` and `remove` flushes before it returns.
    Always,
    /// No write flushes; only [`Store::flush`] and sled's background flush reach the disk.
    Never,
}

/// A source of wall-clock time for stamping quarantined records and naming a database moved aside (the
/// runtime passes its one real clock; this crate never reads a clock).
pub type WallClock = Arc<dyn Fn() -> UnixMs + Send + Sync>;

/// How to open a [`SledStore`]. Build it with the setters: `SledOptions::default().key(…).log_retention(…)`.
#[derive(Clone)]
pub struct SledOptions {
    key: KeySource,
    previous_key: Option<KeySource>,
    start_over_if_key_lost: bool,
    flush: FlushPolicy,
    log_retention: usize,
    quarantine_retention: usize,
    quarantine_log_retention: usize,
    cache_capacity_bytes: u64,
    snapshot_cache_entries: usize,
    background_flush_ms: Option<u64>,
    clock: Option<WallClock>,
    rebuild_if_unreadable: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            key: KeySource::default(),
            previous_key: None,
            start_over_if_key_lost: false,
            flush: FlushPolicy::default(),
            log_retention: DEFAULT_LOG_RETENTION,
            quarantine_retention: DEFAULT_QUARANTINE_RETENTION,
            quarantine_log_retention: DEFAULT_QUARANTINE_LOG_RETENTION,
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            snapshot_cache_entries: DEFAULT_SNAPSHOT_CACHE_ENTRIES,
            background_flush_ms: Some(DEFAULT_BACKGROUND_FLUSH_MS),
            clock: None,
            rebuild_if_unreadable: true,
        }
    }
}

impl SledOptions {
    /// Where the encryption key comes from (default [`KeySource::EnvOrFile`]).
    #[must_use]
    pub fn key(mut self, key: KeySource) -> SledOptions {
        self.key = key;
        self
    }

    /// The key the store was sealed with until now, to rotate to [`SledOptions::key`]: when the store does
    /// not open with the key but opens with this one, every record (snapshots, log, quarantine, key check)
    /// is re-sealed under the new key in one transaction — a crash leaves the store opening with exactly
    /// one of the two keys. A key file named by [`SledOptions::key`] that does not exist yet is created
    /// with a new random key. The previous key is read only when the store does not open with the new
    /// one, so it may stay in the options after the rotation (even once its file is deleted). Default:
    /// none.
    #[must_use]
    pub fn previous_key(mut self, key: KeySource) -> SledOptions {
        self.previous_key = Some(key);
        self
    }

    /// What to do when the store's records need a key that is not there — its key file is missing, or no
    /// record opens with the key given: `false` (the default) refuses to open with a [`StoreError::Key`]
    /// naming the key source and the ways on; `true` starts over: every snapshot and log record is moved
    /// to the quarantine (kept, still sealed with the old key, so it can be read if the key turns up), a
    /// missing key file is created, and every session starts fresh (one login at once, then the policy's
    /// rate).
    #[must_use]
    pub fn start_over_if_key_lost(mut self, start_over: bool) -> SledOptions {
        self.start_over_if_key_lost = start_over;
        self
    }

    /// When writes flush (default [`FlushPolicy::AsRequested`]).
    #[must_use]
    pub fn flush(mut self, flush: FlushPolicy) -> SledOptions {
        self.flush = flush;
        self
    }

    /// Log steps kept per session (each the entries of one step of the session), at least 1 (default
    /// [`DEFAULT_LOG_RETENTION`]).
    #[must_use]
    pub fn log_retention(mut self, steps: usize) -> SledOptions {
        self.log_retention = steps.max(1);
        self
    }

    /// Quarantined snapshot records kept, at least 1 (default [`DEFAULT_QUARANTINE_RETENTION`]); log
    /// entries have their own cap, so they never push snapshots out.
    #[must_use]
    pub fn quarantine_retention(mut self, entries: usize) -> SledOptions {
        self.quarantine_retention = entries.max(1);
        self
    }

    /// Quarantined log entries kept, at least 1 (default [`DEFAULT_QUARANTINE_LOG_RETENTION`]).
    #[must_use]
    pub fn quarantine_log_retention(mut self, entries: usize) -> SledOptions {
        self.quarantine_log_retention = entries.max(1);
        self
    }

    /// sled's page cache size (default [`DEFAULT_CACHE_CAPACITY_BYTES`]).
    #[must_use]
    pub fn cache_capacity_bytes(mut self, bytes: u64) -> SledOptions {
        self.cache_capacity_bytes = bytes;
        self
    }

    /// Decrypted snapshots kept in memory, 0 for none (default [`DEFAULT_SNAPSHOT_CACHE_ENTRIES`]).
    #[must_use]
    pub fn snapshot_cache_entries(mut self, entries: usize) -> SledOptions {
        self.snapshot_cache_entries = entries;
        self
    }

    /// sled's background flush interval; `None` turns it off (default [`DEFAULT_BACKGROUND_FLUSH_MS`]).
    #[must_use]
    pub fn background_flush_ms(mut self, interval_ms: Option<u64>) -> SledOptions {
        self.background_flush_ms = interval_ms;
        self
    }

    /// The clock that stamps quarantined records and names a database moved aside (default none: records
    /// carry no time, and a database moved aside is numbered instead).
    #[must_use]
    pub fn clock(mut self, clock: WallClock) -> SledOptions {
        self.clock = Some(clock);
        self
    }

    /// When sled cannot read the database (damaged files, a panic while opening): `true` (the default)
    /// moves the directory aside to `<path>.unreadable.<UTC time>` (`<path>.unreadable.<n>` without a
    /// [`clock`](SledOptions::clock)), keeps it, warns, and opens a fresh one, where every session that
    /// had a record starts fresh with its logins still limited (its `load` says `Quarantined` until it
    /// saves); `false` fails with [`StoreError::Io`] instead. Lock, permission and other IO errors always
    /// fail: they are not damage.
    #[must_use]
    pub fn rebuild_if_unreadable(mut self, rebuild: bool) -> SledOptions {
        self.rebuild_if_unreadable = rebuild;
        self
    }
}

impl fmt::Debug for SledOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledOptions")
            .field("key", &self.key)
            .field("previous_key", &self.previous_key)
            .field("start_over_if_key_lost", &self.start_over_if_key_lost)
            .field("flush", &self.flush)
            .field("log_retention", &self.log_retention)
            .field("quarantine_retention", &self.quarantine_retention)
            .field("quarantine_log_retention", &self.quarantine_log_retention)
            .field("cache_capacity_bytes", &self.cache_capacity_bytes)
            .field("snapshot_cache_entries", &self.snapshot_cache_entries)
            .field("background_flush_ms", &self.background_flush_ms)
            .field("clock", &self.clock.as_ref().map(|_| "set"))
            .field("rebuild_if_unreadable", &self.rebuild_if_unreadable)
            .finish()
    }
}

/// A record moved aside because it could not be read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The session it belonged to.
    pub session: String,
    /// The tree it was in (`snapshots` or `log`).
    pub tree: String,
    /// Its key in that tree.
    pub key: Vec<u8>,
    /// Why it could not be read.
    pub reason: String,
    /// When it was moved, if the store has a clock ([`SledOptions::clock`]).
    pub at: Option<UnixMs>,
    /// The record's bytes as found (still sealed; kept so that a record written with a lost key can be
    /// recovered when the key turns up).
    pub record: Vec<u8>,
}

impl fmt::Debug for QuarantineEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuarantineEntry")
            .field("session", &self.session)
            .field("tree", &self.tree)
            .field("reason", &self.reason)
            .field("at", &self.at)
            .field("record_len", &self.record.len())
            .finish_non_exhaustive()
    }
}

/// The sessions with records, the lines not yet written to the list file, and the file open for
/// appending (opened at the first append, and again after the file was replaced).
#[derive(Default)]
struct KnownList {
    sessions: HashSet<SessionId>,
    /// New sessions' lines, written to the file (and fsync-ed) before the next flush of the store.
    unwritten: Vec<u8>,
    file: Option<fs::File>,
}

/// How many locks order the writes of sessions (a session's writes always take the same one).
const STRIPES: usize = 64;

/// Where a session's log stands: the next sequence number, and a lower bound of the ones still stored.
#[derive(Clone, Copy, Debug)]
struct LogCursor {
    next: u64,
    oldest: u64,
}

/// A bounded map of the latest snapshot per session.
#[derive(Default)]
struct SnapshotCache {
    capacity: usize,
    entries: HashMap<SessionId, Snapshot>,
}

impl SnapshotCache {
    /// Remembers a snapshot as `load` would return it from disk: one of another format version would be
    /// quarantined there, so it is not cached here.
    fn put(&mut self, snapshot: &Snapshot) {
        if self.capacity == 0 || snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            self.entries.remove(&snapshot.session_id);
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&snapshot.session_id) {
            // Evict any one entry: the cache only saves decryptions, so which one matters little.
            if let Some(victim) = self.entries.keys().next().cloned() {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(snapshot.session_id.clone(), snapshot.clone());
    }
}

/// The open trees of a store.
struct Trees {
    db: sled::Db,
    snapshots: sled::Tree,
    log: sled::Tree,
    quarantine: sled::Tree,
    quarantine_log: sled::Tree,
    meta: sled::Tree,
}

impl Trees {
    fn open(path: &Path, db: sled::Db) -> Result<Trees, StoreError> {
        let tree =
            |name: &str| db.open_tree(name).map_err(|e| io_error(path, format!("cannot open the `{name}` tree: {e}")));
        Ok(Trees {
            snapshots: tree(SNAPSHOTS)?,
            log: tree(LOG)?,
            quarantine: tree(QUARANTINE)?,
            quarantine_log: tree(QUARANTINE_LOG)?,
            meta: tree(META)?,
            db,
        })
    }
}

/// The sled store. See the [module documentation](self).
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    snapshots: sled::Tree,
    log: sled::Tree,
    quarantine: sled::Tree,
    quarantine_log: sled::Tree,
    codec: RecordCodec,
    flush: FlushPolicy,
    log_retention: usize,
    quarantine_retention: usize,
    quarantine_log_retention: usize,
    quarantine_len: AtomicUsize,
    quarantine_log_len: AtomicUsize,
    clock: Option<WallClock>,
    /// One of these is held across every write of a session (snapshot, log, removal) and across a read
    /// of its snapshot with the cache update, so that a session's writes keep their order and the cache
    /// never serves an older snapshot than the disk holds; sessions that hash apart never wait for each
    /// other.
    stripes: Box<[Mutex<()>]>,
    /// The latest snapshots (held only for a lookup or an update).
    cache: Mutex<SnapshotCache>,
    /// Where each session's log stands (held only for a lookup or an update).
    cursors: Mutex<HashMap<SessionId, LogCursor>>,
    /// The sessions that have saved a snapshot (the `warden.sessions` file).
    known: Mutex<KnownList>,
    /// The file was changed since it was last made durable (done before the next flush).
    known_unsynced: AtomicBool,
    /// The file was replaced (rewritten and renamed) since the directory was last fsync-ed.
    known_renamed: AtomicBool,
    /// Why a known session without a record starts fresh (the store was rebuilt or started over), if
    /// that is why; otherwise such a session's record was lost some other way.
    fresh_start: Option<String>,
    /// Set when this process rebuilt the store: every session without a record starts fresh, known or
    /// not (the old list of sessions may be lost with the rest).
    rebuilt: Option<String>,
    /// Where an unreadable database was moved, if this open moved one.
    moved_aside: Option<PathBuf>,
    /// The lock file, flock-ed while the store is open; declared last so it is released after sled closes.
    _lock: DirLock,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("flush", &self.flush)
            .field("log_retention", &self.log_retention)
            .field("moved_aside", &self.moved_aside)
            .finish_non_exhaustive()
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // sled flushes its own files when the `Db` drops (after this); the list goes first.
        self.sync_known();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent at each step, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SledStore {
    /// Opens (or creates) the store at `path`, a directory.
    ///
    /// Fails with [`StoreError::Locked`] if another process (or another `SledStore` in this one) has it
    /// open; with [`StoreError::Key`] if the key is malformed, or lost or changed while the store holds
    /// records sealed with the old one (unless [`SledOptions::previous_key`] or
    /// [`SledOptions::start_over_if_key_lost`] says what to do); and with [`StoreError::Io`] naming the
    /// path and the problem for anything else. A database sled cannot read is moved aside and a fresh one
    /// opened (see [`SledOptions::rebuild_if_unreadable`]).
    pub fn open(path: impl AsRef<Path>, options: SledOptions) -> Result<SledStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(|e| io_error(&path, format!("cannot create the directory: {e}")))?;
        let mut lock_file = take_lock(&path)?;
        // Keys first: a malformed key fails before anything is touched.
        let lookup = options.key.lookup(&path)?;
        let mut rebuilt = None;
        let db = match open_sled(&path, &options) {
            Ok(db) => db,
            Err(SledOpenError { error, unreadable: true }) if options.rebuild_if_unreadable => {
                let aside = move_aside(&path, options.clock.as_ref())?;
                let problem = match &error {
                    StoreError::Io { detail, .. } => detail.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    %problem,
                    "store unreadable; moved aside, starting a fresh one (sessions log in again, their logins still limited)"
                );
                fs::create_dir_all(&path).map_err(|e| io_error(&path, format!("cannot create the directory: {e}")))?;
                lock_file = take_lock(&path)?;
                let db = open_sled(&path, &options).map_err(|e| e.error)?;
                let reason = format!(
                    "the store at {} was unreadable ({problem}) and was moved to {}; the session's record was lost \
                     with it and it starts fresh",
                    path.display(),
                    aside.display()
                );
                rebuilt = Some((aside, reason));
                db
            }
            Err(e) => return Err(e.error),
        };
        lock_file.sled_file = Some(path.join("db"));
        let trees = Trees::open(&path, db)?;

        // The sessions that have saved: the list beside the files (the moved-aside one after a rebuild),
        // and every snapshot sled still has.
        let list_dir = rebuilt.as_ref().map_or(path.as_path(), |(aside, _)| aside.as_path());
        let listed = known::read(list_dir).unwrap_or_else(|problem| {
            tracing::warn!(%problem, "the list of known sessions cannot be read; rebuilding it from the snapshots");
            None
        });
        let mut known_sessions = listed.as_ref().map(|l| l.sessions.clone()).unwrap_or_default();
        for key in trees.snapshots.iter().keys() {
            let key = key.map_err(|e| io_error(&path, format!("reading the snapshots: {e}")))?;
            if let Some(session) = std::str::from_utf8(&key).ok().and_then(|s| SessionId::new(s).ok()) {
                known_sessions.insert(session);
            }
        }
        if listed.as_ref().is_none_or(|l| !l.complete) {
            // No list to trust (an older store, a lost or damaged file): the sessions with log entries
            // count too, so that from here on a session not in the list has no record at all.
            for key in trees.log.iter().keys() {
                let key = key.map_err(|e| io_error(&path, format!("reading the log: {e}")))?;
                if let Some((session, _)) = parse_log_key(&key) {
                    known_sessions.insert(session);
                }
            }
        }

        let Settled { codec, started_over } = settle_key(&path, &trees, &options, lookup)?;

        if rebuilt.is_some() || listed.as_ref().is_none_or(|l| !l.clean || l.sessions != known_sessions) {
            known::write(&path, &known_sessions, true)
                .map_err(|e| io_error(&path, format!("cannot write the list of known sessions: {e}")))?;
        }
        let fresh_start = settle_fresh_start(
            &path,
            &trees,
            &known_sessions,
            rebuilt.as_ref().map(|(_, reason)| reason.clone()).or(started_over),
        )?;
        let (quarantine_len, quarantine_log_len) = sort_quarantine(&path, &trees)?;
        if quarantine_len + quarantine_log_len > 0 {
            tracing::info!(
                path = %path.display(),
                snapshots = quarantine_len,
                log_entries = quarantine_log_len,
                "store has quarantined records"
            );
        }
        let Trees { db, snapshots, log, quarantine, quarantine_log, meta: _ } = trees;
        let (moved_aside, rebuilt) = rebuilt.map_or((None, None), |(aside, reason)| (Some(aside), Some(reason)));
        let store = SledStore {
            codec,
            flush: options.flush,
            log_retention: options.log_retention,
            quarantine_retention: options.quarantine_retention,
            quarantine_log_retention: options.quarantine_log_retention,
            quarantine_len: AtomicUsize::new(quarantine_len),
            quarantine_log_len: AtomicUsize::new(quarantine_log_len),
            clock: options.clock.clone(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            cache: Mutex::new(SnapshotCache { capacity: options.snapshot_cache_entries, entries: HashMap::new() }),
            cursors: Mutex::new(HashMap::new()),
            known: Mutex::new(KnownList { sessions: known_sessions, unwritten: Vec::new(), file: None }),
            known_unsynced: AtomicBool::new(false),
            known_renamed: AtomicBool::new(false),
            fresh_start,
            rebuilt,
            moved_aside,
            path,
            db,
            snapshots,
            log,
            quarantine,
            quarantine_log,
            _lock: lock_file,
        };
        store.trim_quarantine(&store.quarantine, &store.quarantine_len, store.quarantine_retention)?;
        store.trim_quarantine(&store.quarantine_log, &store.quarantine_log_len, store.quarantine_log_retention)?;
        Ok(store)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where this open moved an unreadable database (see [`SledOptions::rebuild_if_unreadable`]), if it
    /// did.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    /// The token lifetimes a session's log has seen, oldest first (see [`observed_lifetimes`]).
    pub fn read_observed_lifetimes(&self, session: &SessionId) -> Result<Vec<ObservedLifetime>, StoreError> {
        Ok(observed_lifetimes(&self.read_log(session, usize::MAX)?))
    }

    /// Every quarantined record, snapshots and log entries together, oldest first. An entry that itself
    /// does not decode is skipped (and reported with a warning).
    pub fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError> {
        let mut entries = Vec::new();
        for tree in [&self.quarantine, &self.quarantine_log] {
            for item in tree.iter() {
                let (key, value) = item.map_err(|e| self.io(format!("reading the quarantine: {e}")))?;
                match rmp_serde::from_slice::<QuarantineEntry>(&value) {
                    Ok(entry) => entries.push((key, entry)),
                    Err(e) => tracing::warn!(
                        key_len = key.len(),
                        error = %redact_quoted(&e.to_string()),
                        "quarantine entry does not decode; skipped"
                    ),
                }
            }
        }
        // Keys start with the id from sled's generator: their order is the order of quarantining.
        entries.sort_by(|(a, _), (b, _)| a.get(..8).cmp(&b.get(..8)));
        Ok(entries.into_iter().map(|(_, entry)| entry).collect())
    }

    /// The size of the database files, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| self.io(format!("measuring the database: {e}")))
    }

    fn io(&self, detail: String) -> StoreError {
        io_error(&self.path, detail)
    }

    fn flush_if(&self, wanted: bool) -> Result<(), StoreError> {
        if wanted { self.flush() } else { Ok(()) }
    }

    /// Why a session without a record starts fresh rather than new, if it does: the store was rebuilt in
    /// this process, or the session had saved a snapshot that is gone.
    fn lost_record_reason(&self, session: &SessionId) -> Option<String> {
        if let Some(reason) = &self.rebuilt {
            return Some(reason.clone());
        }
        if !lock(&self.known).sessions.contains(session) {
            return None;
        }
        Some(self.fresh_start.clone().unwrap_or_else(|| {
            format!(
                "no readable snapshot of session {session} although one was saved (it was quarantined, lost with \
                 damaged database files, or the process stopped before it reached the disk); the session starts \
                 fresh"
            )
        }))
    }

    /// Adds a session to the list of sessions with records, before its first record is written: one line
    /// for the file, written and fsync-ed before the next flush (so before the record can be reported
    /// durable). A session new to the list has no log yet, so its log cursor starts at 0 without a scan.
    fn remember(&self, session: &SessionId) {
        let mut known = lock(&self.known);
        if known.sessions.contains(session) {
            return;
        }
        known.sessions.insert(session.clone());
        known.unwritten.extend_from_slice(session.as_str().as_bytes());
        known.unwritten.push(b'\n');
        drop(known);
        self.known_unsynced.store(true, Ordering::SeqCst);
        lock(&self.cursors).entry(session.clone()).or_insert(LogCursor { next: 0, oldest: 0 });
    }

    /// The lock that orders `session`'s writes.
    fn stripe(&self, session: &SessionId) -> MutexGuard<'_, ()> {
        let hash = session
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        lock(&self.stripes[(hash % STRIPES as u64) as usize])
    }

    /// Removes a session from the list, after its records were removed (the file is rewritten whole).
    fn forget(&self, session: &SessionId) {
        let mut known = lock(&self.known);
        if known.sessions.remove(session) {
            known.file = None;
            known.unwritten.clear();
            match known::write(&self.path, &known.sessions, false) {
                Ok(()) => {
                    self.known_renamed.store(true, Ordering::SeqCst);
                    self.known_unsynced.store(true, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, path = %self.path.display(), "cannot update the list of known sessions")
                }
            }
        }
    }

    /// Writes the new sessions' lines and makes the list durable if it changed since it last was.
    /// Sessions remembered while this runs set the flag again, so the next flush covers them. A failure
    /// is reported, not returned: the list only sharpens what a lost record is reported as.
    fn sync_known(&self) {
        if self.known_unsynced.swap(false, Ordering::SeqCst) {
            {
                let mut known = lock(&self.known);
                if !known.unwritten.is_empty() {
                    let file = match known.file.take() {
                        Some(file) => Ok(file),
                        None => known::open_for_append(&self.path),
                    };
                    let lines = std::mem::take(&mut known.unwritten);
                    match file.and_then(|mut file| known::append_lines(&mut file, &lines).map(|()| file)) {
                        Ok(file) => known.file = Some(file),
                        Err(e) => {
                            tracing::warn!(error = %e, path = %self.path.display(), "cannot update the list of known sessions")
                        }
                    }
                }
            }
            let renamed = self.known_renamed.swap(false, Ordering::SeqCst);
            if let Err(e) = known::sync(&self.path, renamed) {
                self.known_unsynced.store(true, Ordering::SeqCst);
                self.known_renamed.fetch_or(renamed, Ordering::SeqCst);
                tracing::warn!(error = %e, path = %self.path.display(), "cannot sync the list of known sessions");
            }
        }
    }

    /// Seals and writes a snapshot (the list of known sessions first), keeping the cache in step.
    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let session = &snapshot.session_id;
        let record = self.codec.seal_snapshot(snapshot)?;
        self.remember(session);
        let _order = self.stripe(session);
        self.snapshots
            .insert(session.as_str().as_bytes(), record)
            .map_err(|e| self.io(format!("writing the snapshot of session {session}: {e}")))?;
        lock(&self.cache).put(snapshot);
        Ok(())
    }

    /// Moves an unreadable record from `tree` to its quarantine (snapshots to `quarantine`, log entries to
    /// `quarantine_log`), in one transaction (the record is removed only if it is still the same bytes),
    /// and reports it.
    fn quarantine_record(
        &self,
        tree: &sled::Tree,
        tree_name: &str,
        session: &SessionId,
        key: &[u8],
        record: &IVec,
        reason: &str,
    ) -> Result<(), StoreError> {
        let id = self.db.generate_id().map_err(|e| self.io(format!("quarantining a record: {e}")))?;
        let entry = QuarantineEntry {
            session: session.to_string(),
            tree: tree_name.to_owned(),
            key: key.to_vec(),
            reason: reason.to_owned(),
            at: self.clock.as_ref().map(|clock| clock()),
            record: record.to_vec(),
        };
        let value = encode_quarantine_entry(&entry)?;
        let quarantine_key = quarantine_key(id, session.as_str());
        let (target, len, cap) = if tree_name == LOG {
            (&self.quarantine_log, &self.quarantine_log_len, self.quarantine_log_retention)
        } else {
            (&self.quarantine, &self.quarantine_len, self.quarantine_retention)
        };
        (tree, target)
            .transaction(|(source, quarantine)| {
                if source.get(key)?.as_ref() == Some(record) {
                    source.remove(key)?;
                }
                quarantine.insert(quarantine_key.as_slice(), value.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| self.io(format!("quarantining a record of session {session}: {e:?}")))?;
        tracing::warn!(
            session = %session,
            tree = tree_name,
            reason,
            "store record quarantined; the session starts fresh"
        );
        len.fetch_add(1, Ordering::SeqCst);
        self.trim_quarantine(target, len, cap)
    }

    /// Drops the oldest entries of one quarantine tree beyond its cap.
    fn trim_quarantine(&self, tree: &sled::Tree, len: &AtomicUsize, cap: usize) -> Result<(), StoreError> {
        while len.load(Ordering::SeqCst) > cap {
            match tree.pop_min() {
                Ok(Some(_)) => {
                    len.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(None) => break,
                Err(e) => return Err(self.io(format!("trimming the quarantine: {e}"))),
            }
        }
        Ok(())
    }

    /// Finds where a session's log stands by looking at its last key (a scan: sled copies a whole node to
    /// iterate, so this is done once per session and process, and never for a session new to the list).
    /// The oldest sequence number is taken as 0, a lower bound: the first trim removes whatever is there.
    fn scan_cursor(&self, session: &SessionId) -> Result<LogCursor, StoreError> {
        let prefix = log_prefix(session);
        for item in self.log.scan_prefix(&prefix).keys().rev() {
            let key = item.map_err(|e| self.io(format!("reading the log of session {session}: {e}")))?;
            if let Some(last) = seq_of(&key, prefix.len()) {
                return Ok(LogCursor { next: last.saturating_add(1), oldest: 0 });
            }
        }
        Ok(LogCursor { next: 0, oldest: 0 })
    }
}

/// Records (`Some`) or reads back (`None`) why known sessions without a record start fresh. A reason
/// read back is dropped once every known session has a record again.
fn settle_fresh_start(
    path: &Path,
    trees: &Trees,
    known_sessions: &HashSet<SessionId>,
    new_reason: Option<String>,
) -> Result<Option<String>, StoreError> {
    let meta_error = |e: sled::Error| io_error(path, format!("the `meta` tree: {e}"));
    if let Some(reason) = new_reason {
        trees.meta.insert(FRESH_START, reason.as_bytes()).map_err(meta_error)?;
        trees.db.flush().map_err(meta_error)?;
        return Ok(Some(reason));
    }
    let Some(stored) = trees.meta.get(FRESH_START).map_err(meta_error)? else { return Ok(None) };
    let mut all_saved = true;
    for session in known_sessions {
        if !trees.snapshots.contains_key(session.as_str().as_bytes()).map_err(meta_error)? {
            all_saved = false;
            break;
        }
    }
    if all_saved {
        trees.meta.remove(FRESH_START).map_err(meta_error)?;
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&stored).into_owned()))
}

/// Moves log entries that older builds quarantined together with snapshots into `quarantine_log` (once
/// per store), and counts both quarantines.
fn sort_quarantine(path: &Path, trees: &Trees) -> Result<(usize, usize), StoreError> {
    let read_error = |e: sled::Error| io_error(path, format!("reading the quarantine: {e}"));
    if trees.meta.contains_key(QUARANTINE_SORTED).map_err(read_error)? {
        return Ok((trees.quarantine.len(), trees.quarantine_log.len()));
    }
    let mut snapshots = 0;
    for item in trees.quarantine.iter() {
        let (key, value) = item.map_err(read_error)?;
        match rmp_serde::from_slice::<QuarantineEntry>(&value) {
            Ok(entry) if entry.tree == LOG => {
                (&trees.quarantine, &trees.quarantine_log)
                    .transaction(|(quarantine, quarantine_log)| {
                        quarantine.remove(&key)?;
                        quarantine_log.insert(&key, &value)?;
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e: TransactionError<()>| io_error(path, format!("sorting the quarantine: {e:?}")))?;
            }
            _ => snapshots += 1,
        }
    }
    trees.meta.insert(QUARANTINE_SORTED, &[]).map_err(read_error)?;
    Ok((snapshots, trees.quarantine_log.len()))
}

/// A quarantine entry's bytes.
fn encode_quarantine_entry(entry: &QuarantineEntry) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(entry)
        .map_err(|e| StoreError::Encode { session: entry.session.clone(), detail: format!("quarantine entry: {e}") })
}

/// A quarantine key: the id (big-endian, so keys sort in the order records were quarantined), then the
/// session.
fn quarantine_key(id: u64, session: &str) -> Vec<u8> {
    let mut key = id.to_be_bytes().to_vec();
    key.extend_from_slice(session.as_bytes());
    key
}

impl Store for SledStore {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        let _order = self.stripe(session);
        if let Some(snapshot) = lock(&self.cache).entries.get(session) {
            return Ok(LoadOutcome::Found(Box::new(snapshot.clone())));
        }
        if self.rebuilt.is_none() && !lock(&self.known).sessions.contains(session) {
            // Every session with a record is in the list: a new session needs no read.
            return Ok(LoadOutcome::Missing);
        }
        let key = session.as_str().as_bytes();
        let Some(record) =
            self.snapshots.get(key).map_err(|e| self.io(format!("reading the snapshot of session {session}: {e}")))?
        else {
            return Ok(match self.lost_record_reason(session) {
                Some(reason) => LoadOutcome::Quarantined { reason, login_attempts: None },
                None => LoadOutcome::Missing,
            });
        };
        match self.codec.open_snapshot(session, &record) {
            Ok(snapshot) => {
                lock(&self.cache).put(&snapshot);
                Ok(LoadOutcome::Found(Box::new(snapshot)))
            }
            Err(error) => {
                let reason = error.to_string();
                // A record that decrypts may still hold a readable login history: keep the limit.
                let login_attempts = self.codec.salvage_login_attempts(session, &record);
                self.quarantine_record(&self.snapshots, SNAPSHOTS, session, key, &record, &reason)?;
                Ok(LoadOutcome::Quarantined { reason, login_attempts })
            }
        }
    }

    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        self.write_snapshot(snapshot)?;
        self.flush_if(match self.flush {
            FlushPolicy::AsRequested => durability == Durability::Flushed,
            FlushPolicy::Always => true,
            FlushPolicy::Never => false,
        })
    }

    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.write_snapshot(snapshot)?;
        match self.flush {
            FlushPolicy::AsRequested => Ok(Pending::Flush),
            FlushPolicy::Always => self.flush().map(|()| Pending::Durable),
            FlushPolicy::Never => Ok(Pending::Durable),
        }
    }

    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        self.append_logs(session, std::slice::from_ref(event))
    }

    fn append_logs(&self, session: &SessionId, events: &[SessionEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.remember(session);
        let _order = self.stripe(session);
        let known_cursor = lock(&self.cursors).get(session).copied();
        let mut cursor = match known_cursor {
            Some(cursor) => cursor,
            None => self.scan_cursor(session)?,
        };
        // The step's entries in one record, one plain insert (not a sled batch: a batch seals and writes
        // sled's IO buffer before and after itself and takes a global lock).
        let seq = cursor.next;
        let written = self.codec.seal_log_step(session, seq, events).and_then(|record| {
            self.log
                .insert(log_key(session, seq), record)
                .map(|_| cursor.next = seq.saturating_add(1))
                .map_err(|e| self.io(format!("appending to the log of session {session}: {e}")))
        });
        // Keep the newest `log_retention` records: next - retention ..= next - 1.
        let keep_from = cursor.next.saturating_sub(self.log_retention as u64);
        let trimmed = if written.is_ok() && cursor.oldest < keep_from {
            let trim_error = |e: sled::Error| self.io(format!("trimming the log of session {session}: {e}"));
            let old: Result<Vec<IVec>, StoreError> = self
                .log
                .range(log_key(session, cursor.oldest)..log_key(session, keep_from))
                .keys()
                .collect::<Result<_, _>>()
                .map_err(trim_error);
            old.and_then(|old| old.into_iter().try_for_each(|key| self.log.remove(key).map(|_| ()).map_err(trim_error)))
                .map(|()| cursor.oldest = keep_from)
        } else {
            Ok(())
        };
        lock(&self.cursors).insert(session.clone(), cursor);
        written?;
        trimmed?;
        self.flush_if(self.flush == FlushPolicy::Always)
    }

    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        let prefix = log_prefix(session);
        let mut events = Vec::new();
        let mut unreadable = Vec::new();
        for item in self.log.scan_prefix(&prefix).rev() {
            if events.len() >= limit {
                break;
            }
            let (key, record) = item.map_err(|e| self.io(format!("reading the log of session {session}: {e}")))?;
            let opened = match seq_of(&key, prefix.len()) {
                Some(seq) => self.codec.open_log_step(session, seq, &record).map_err(|e| e.to_string()),
                None => Err(format!("log key is {} bytes long, not a session id and a sequence number", key.len())),
            };
            match opened {
                // Newest first: a step's entries go in backwards.
                Ok(step) => events.extend(step.into_iter().rev()),
                Err(reason) => unreadable.push((key, record, reason)),
            }
        }
        for (key, record, reason) in unreadable {
            self.quarantine_record(&self.log, LOG, session, &key, &record, &reason)?;
        }
        events.truncate(limit);
        events.reverse();
        Ok(events)
    }

    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        {
            let _order = self.stripe(session);
            self.snapshots
                .remove(session.as_str().as_bytes())
                .map_err(|e| self.io(format!("removing the snapshot of session {session}: {e}")))?;
            let mut batch = sled::Batch::default();
            for key in self.log.scan_prefix(log_prefix(session)).keys() {
                batch.remove(key.map_err(|e| self.io(format!("removing the log of session {session}: {e}")))?);
            }
            self.log.apply_batch(batch).map_err(|e| self.io(format!("removing the log of session {session}: {e}")))?;
            lock(&self.cache).entries.remove(session);
            lock(&self.cursors).remove(session);
        }
        self.forget(session);
        self.flush_if(self.flush == FlushPolicy::Always)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.sync_known();
        self.db.flush().map(|_| ()).map_err(|e| self.io(format!("flushing: {e}")))
    }
}

fn io_error(path: &Path, detail: String) -> StoreError {
    StoreError::Io { path: path.display().to_string(), detail }
}

/// The log keys of a session start with its id and a zero byte (ids never contain one, so no session's
/// prefix is a prefix of another's keys).
fn log_prefix(session: &SessionId) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(session.as_str().len() + 9);
    prefix.extend_from_slice(session.as_str().as_bytes());
    prefix.push(0);
    prefix
}

fn log_key(session: &SessionId, seq: u64) -> Vec<u8> {
    let mut key = log_prefix(session);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8], prefix_len: usize) -> Option<u64> {
    let bytes = key.get(prefix_len..)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The session and sequence number of a log key, if it is one.
fn parse_log_key(key: &[u8]) -> Option<(SessionId, u64)> {
    let split = key.len().checked_sub(9)?;
    let (session, rest) = key.split_at(split);
    if rest.first() != Some(&0) {
        return None;
    }
    let session = SessionId::new(std::str::from_utf8(session).ok()?).ok()?;
    Some((session, seq_of(rest, 1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_session_then_sequence() {
        let a = SessionId::new("a").expect("id");
        let ab = SessionId::new("ab").expect("id");
        assert!(log_key(&a, u64::MAX) < log_key(&ab, 0), "a session's keys never interleave with another's");
        assert!(log_key(&a, 255) < log_key(&a, 256));
        assert_eq!(seq_of(&log_key(&a, 42), log_prefix(&a).len()), Some(42));
        assert_eq!(seq_of(b"a\0short", 2), None);
        assert_eq!(parse_log_key(&log_key(&ab, 7)), Some((ab.clone(), 7)));
        assert_eq!(parse_log_key(b"a\x01\0\0\0\0\0\0\0\x07"), None);
        assert_eq!(parse_log_key(b"\0\0\0"), None);
    }
}
