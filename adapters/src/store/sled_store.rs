//! [`SledStore`]: the [`Store`] on disk, in a sled database, every record encrypted.
//!
//! Three trees: `snapshots` (key: session id; value: the sealed [`Snapshot`]), `log` (key: session id,
//! a zero byte, the big-endian sequence number; value: a sealed [`SessionEvent`]; append-only, trimmed to
//! [`SledOptions::log_retention`] entries per session) and `quarantine` (records that could not be read,
//! moved aside with the reason; key: a big-endian id from sled's id generator, then the session id).
//! Records are sealed by [`RecordCodec`]: see [`record`](super::record) for the bytes.
//!
//! Opening takes a lock file (`warden.lock` in the database directory) before sled's own lock, so a second
//! opener — another process, or another `SledStore` in this one — gets [`StoreError::Locked`] at once,
//! never a hang; dropping the store waits (bounded) until sled has let go of its files, so it can be
//! reopened at once. A record that does not decrypt or decode is moved to `quarantine` in one transaction,
//! reported with `tracing::warn!` (session and reason, never bytes) and [`Store::load`] returns
//! [`LoadOutcome::Quarantined`]; nothing here panics on stored bytes.
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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional};
use warden_engine::{
    Durability, LoadOutcome, SNAPSHOT_FORMAT_VERSION, SessionEvent, SessionId, Snapshot, Store, StoreError, UnixMs,
};

use super::key::KeySource;
use super::lifetimes::{ObservedLifetime, observed_lifetimes};
use super::record::{RecordCodec, redact_quoted};

/// The name of the lock file in the database directory.
pub const LOCK_FILE_NAME: &str = "warden.lock";

/// Tree names.
const SNAPSHOTS: &str = "snapshots";
const LOG: &str = "log";
const QUARANTINE: &str = "quarantine";

/// Log entries kept per session unless set otherwise.
pub const DEFAULT_LOG_RETENTION: usize = 1_000;
/// Quarantined records kept (all sessions together) unless set otherwise; the oldest go first.
pub const DEFAULT_QUARANTINE_RETENTION: usize = 10_000;
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
    /// it returns; other writes reach the disk with sled's background flush.
    #[default]
    AsRequested,
    /// Every `save`, `append_log` and `remove` flushes before it returns.
    Always,
    /// No write flushes; only [`Store::flush`] and sled's background flush reach the disk.
    Never,
}

/// A source of wall-clock time for stamping quarantined records (the runtime passes its one real clock;
/// this crate never reads a clock).
pub type WallClock = Arc<dyn Fn() -> UnixMs + Send + Sync>;

/// How to open a [`SledStore`]. Build it with the setters: `SledOptions::default().key(…).log_retention(…)`.
#[derive(Clone)]
pub struct SledOptions {
    key: KeySource,
    flush: FlushPolicy,
    log_retention: usize,
    quarantine_retention: usize,
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
            flush: FlushPolicy::default(),
            log_retention: DEFAULT_LOG_RETENTION,
            quarantine_retention: DEFAULT_QUARANTINE_RETENTION,
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            snapshot_cache_entries: DEFAULT_SNAPSHOT_CACHE_ENTRIES,
            background_flush_ms: Some(DEFAULT_BACKGROUND_FLUSH_MS),
            clock: None,
            rebuild_if_unreadable: false,
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

    /// When writes flush (default [`FlushPolicy::AsRequested`]).
    #[must_use]
    pub fn flush(mut self, flush: FlushPolicy) -> SledOptions {
        self.flush = flush;
        self
    }

    /// Log entries kept per session, at least 1 (default [`DEFAULT_LOG_RETENTION`]).
    #[must_use]
    pub fn log_retention(mut self, entries: usize) -> SledOptions {
        self.log_retention = entries.max(1);
        self
    }

    /// Quarantined records kept, at least 1 (default [`DEFAULT_QUARANTINE_RETENTION`]).
    #[must_use]
    pub fn quarantine_retention(mut self, entries: usize) -> SledOptions {
        self.quarantine_retention = entries.max(1);
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

    /// The clock that stamps quarantined records (default none: records carry no time).
    #[must_use]
    pub fn clock(mut self, clock: WallClock) -> SledOptions {
        self.clock = Some(clock);
        self
    }

    /// When sled cannot read the database (damaged files, a panic while opening), move the directory
    /// aside to `<path>.unreadable.<n>` and start a fresh one, with a warning, instead of failing
    /// (default `false`: fail with [`StoreError::Io`]). Lock, permission and other IO errors always fail.
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
            .field("flush", &self.flush)
            .field("log_retention", &self.log_retention)
            .field("quarantine_retention", &self.quarantine_retention)
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

/// Where a session's log stands: the next sequence number and the oldest one that may still be stored.
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

/// How long dropping a store waits, at most, for sled's background work to let go of its files.
const SLED_RELEASE_WAIT_MS: u64 = 2_000;
/// How often it looks.
const SLED_RELEASE_POLL_MS: u64 = 5;

/// The store's lock file, held (flock) while the store is open.
///
/// Dropped last, it first waits (at most [`SLED_RELEASE_WAIT_MS`]) until sled has let go of its own lock
/// on its `db` file: sled's thread pool can hold the file for a moment after the `Db` is dropped, and a
/// store reopened at once would otherwise find it locked.
struct DirLock {
    _file: File,
    /// sled's `db` file, once this store's sled has opened it (a failed open has nothing to wait for).
    sled_file: Option<PathBuf>,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let Some(sled_file) = &self.sled_file else { return };
        let Ok(db_file) = File::open(sled_file) else { return };
        for _ in 0..SLED_RELEASE_WAIT_MS / SLED_RELEASE_POLL_MS {
            match db_file.try_lock() {
                Ok(()) => return, // closing `db_file` releases it again
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(SLED_RELEASE_POLL_MS)),
                Err(TryLockError::Error(_)) => return,
            }
        }
        tracing::warn!(
            file = %sled_file.display(),
            waited_ms = SLED_RELEASE_WAIT_MS,
            "sled still holds its lock after the store was closed"
        );
    }
}

/// The sled store. See the [module documentation](self).
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    snapshots: sled::Tree,
    log: sled::Tree,
    quarantine: sled::Tree,
    codec: RecordCodec,
    flush: FlushPolicy,
    log_retention: usize,
    quarantine_retention: usize,
    quarantine_len: AtomicUsize,
    clock: Option<WallClock>,
    /// Held across a snapshot's tree read or write and its cache update, so the cache never goes stale.
    cache: Mutex<SnapshotCache>,
    /// Held across a log append (sequence number, insert, trim).
    cursors: Mutex<HashMap<SessionId, LogCursor>>,
    /// The lock file, flock-ed while the store is open; declared last so it is released after sled closes.
    _lock: DirLock,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("flush", &self.flush)
            .field("log_retention", &self.log_retention)
            .finish_non_exhaustive()
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
    /// open, [`StoreError::Key`] if the key is missing or malformed, and [`StoreError::Io`] naming the path
    /// and the problem for anything else (including a database sled cannot read: move the directory aside
    /// to start a fresh one; the store only holds rebuildable state).
    pub fn open(path: impl AsRef<Path>, options: SledOptions) -> Result<SledStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(|e| io_error(&path, format!("cannot create the directory: {e}")))?;
        let mut lock_file = take_lock(&path)?;
        let key = options.key.resolve(&path)?;
        let db = match open_sled(&path, &options) {
            Ok(db) => db,
            Err(SledOpenError { error, unreadable: true }) if options.rebuild_if_unreadable => {
                let aside = move_aside(&path)?;
                tracing::warn!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    %error,
                    "store unreadable; moved aside, starting a fresh one (sessions log in again)"
                );
                fs::create_dir_all(&path).map_err(|e| io_error(&path, format!("cannot create the directory: {e}")))?;
                lock_file = take_lock(&path)?;
                open_sled(&path, &options).map_err(|e| e.error)?
            }
            Err(e) => return Err(e.error),
        };
        lock_file.sled_file = Some(path.join("db"));
        let tree =
            |name: &str| db.open_tree(name).map_err(|e| io_error(&path, format!("cannot open the `{name}` tree: {e}")));
        let (snapshots, log, quarantine) = (tree(SNAPSHOTS)?, tree(LOG)?, tree(QUARANTINE)?);
        let quarantine_len = quarantine.iter().keys().count();
        if quarantine_len > 0 {
            tracing::info!(path = %path.display(), records = quarantine_len, "store has quarantined records");
        }
        Ok(SledStore {
            codec: RecordCodec::new(&key),
            flush: options.flush,
            log_retention: options.log_retention,
            quarantine_retention: options.quarantine_retention,
            quarantine_len: AtomicUsize::new(quarantine_len),
            clock: options.clock.clone(),
            cache: Mutex::new(SnapshotCache { capacity: options.snapshot_cache_entries, entries: HashMap::new() }),
            cursors: Mutex::new(HashMap::new()),
            path,
            db,
            snapshots,
            log,
            quarantine,
            _lock: lock_file,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token lifetimes a session's log has seen, oldest first (see [`observed_lifetimes`]).
    pub fn read_observed_lifetimes(&self, session: &SessionId) -> Result<Vec<ObservedLifetime>, StoreError> {
        Ok(observed_lifetimes(&self.read_log(session, usize::MAX)?))
    }

    /// Every quarantined record, oldest first. An entry that itself does not decode is skipped (and
    /// reported with a warning).
    pub fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError> {
        let mut entries = Vec::new();
        for item in self.quarantine.iter() {
            let (key, value) = item.map_err(|e| self.io(format!("reading the quarantine: {e}")))?;
            match rmp_serde::from_slice::<QuarantineEntry>(&value) {
                Ok(entry) => entries.push(entry),
                Err(e) => tracing::warn!(
                    key_len = key.len(),
                    error = %redact_quoted(&e.to_string()),
                    "quarantine entry does not decode; skipped"
                ),
            }
        }
        Ok(entries)
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

    /// Moves an unreadable record from `tree` to the quarantine, in one transaction (the record is removed
    /// only if it is still the same bytes), and reports it.
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
        let value = rmp_serde::to_vec_named(&entry).map_err(|e| StoreError::Encode {
            session: session.to_string(),
            detail: format!("quarantine entry: {e}"),
        })?;
        let mut quarantine_key = id.to_be_bytes().to_vec();
        quarantine_key.extend_from_slice(session.as_str().as_bytes());
        (tree, &self.quarantine)
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
        self.trim_quarantine()
    }

    fn trim_quarantine(&self) -> Result<(), StoreError> {
        let len = self.quarantine_len.fetch_add(1, Ordering::SeqCst) + 1;
        for _ in self.quarantine_retention..len {
            match self.quarantine.pop_min() {
                Ok(Some(_)) => {
                    self.quarantine_len.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(None) => break,
                Err(e) => return Err(self.io(format!("trimming the quarantine: {e}"))),
            }
        }
        Ok(())
    }

    /// Finds where a session's log stands by looking at its first and last keys.
    fn scan_cursor(&self, session: &SessionId) -> Result<LogCursor, StoreError> {
        let prefix = log_prefix(session);
        let seq = |item: sled::Result<IVec>| -> Result<Option<u64>, StoreError> {
            let key = item.map_err(|e| self.io(format!("reading the log of session {session}: {e}")))?;
            Ok(seq_of(&key, prefix.len()))
        };
        let mut first = None;
        for item in self.log.scan_prefix(&prefix).keys() {
            if let Some(s) = seq(item)? {
                first = Some(s);
                break;
            }
        }
        let mut last = None;
        for item in self.log.scan_prefix(&prefix).keys().rev() {
            if let Some(s) = seq(item)? {
                last = Some(s);
                break;
            }
        }
        Ok(match (first, last) {
            (Some(oldest), Some(last)) => LogCursor { next: last.saturating_add(1), oldest },
            _ => LogCursor { next: 0, oldest: 0 },
        })
    }
}

impl Store for SledStore {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        let mut cache = lock(&self.cache);
        if let Some(snapshot) = cache.entries.get(session) {
            return Ok(LoadOutcome::Found(Box::new(snapshot.clone())));
        }
        let key = session.as_str().as_bytes();
        let Some(record) =
            self.snapshots.get(key).map_err(|e| self.io(format!("reading the snapshot of session {session}: {e}")))?
        else {
            return Ok(LoadOutcome::Missing);
        };
        match self.codec.open_snapshot(session, &record) {
            Ok(snapshot) => {
                cache.put(&snapshot);
                Ok(LoadOutcome::Found(Box::new(snapshot)))
            }
            Err(error) => {
                let reason = error.to_string();
                self.quarantine_record(&self.snapshots, SNAPSHOTS, session, key, &record, &reason)?;
                Ok(LoadOutcome::Quarantined { reason, login_attempts: None })
            }
        }
    }

    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        let session = &snapshot.session_id;
        let record = self.codec.seal_snapshot(snapshot)?;
        {
            let mut cache = lock(&self.cache);
            self.snapshots
                .insert(session.as_str().as_bytes(), record)
                .map_err(|e| self.io(format!("writing the snapshot of session {session}: {e}")))?;
            cache.put(snapshot);
        }
        self.flush_if(match self.flush {
            FlushPolicy::AsRequested => durability == Durability::Flushed,
            FlushPolicy::Always => true,
            FlushPolicy::Never => false,
        })
    }

    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        {
            let mut cursors = lock(&self.cursors);
            let cursor = match cursors.entry(session.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(self.scan_cursor(session)?),
            };
            let seq = cursor.next;
            let mut batch = sled::Batch::default();
            batch.insert(log_key(session, seq), self.codec.seal_log(session, seq, event)?);
            // Keep the newest `log_retention` sequence numbers: seq - retention + 1 ..= seq.
            let keep_from = seq.saturating_add(1).saturating_sub(self.log_retention as u64);
            if cursor.oldest < keep_from {
                for key in self.log.range(log_key(session, cursor.oldest)..log_key(session, keep_from)).keys() {
                    batch.remove(key.map_err(|e| self.io(format!("trimming the log of session {session}: {e}")))?);
                }
            }
            self.log
                .apply_batch(batch)
                .map_err(|e| self.io(format!("appending to the log of session {session}: {e}")))?;
            cursor.next = seq.saturating_add(1);
            cursor.oldest = cursor.oldest.max(keep_from);
        }
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
                Some(seq) => self.codec.open_log(session, seq, &record).map_err(|e| e.to_string()),
                None => Err(format!("log key is {} bytes long, not a session id and a sequence number", key.len())),
            };
            match opened {
                Ok(event) => events.push(event),
                Err(reason) => unreadable.push((key, record, reason)),
            }
        }
        for (key, record, reason) in unreadable {
            self.quarantine_record(&self.log, LOG, session, &key, &record, &reason)?;
        }
        events.reverse();
        Ok(events)
    }

    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        {
            let mut cache = lock(&self.cache);
            let mut cursors = lock(&self.cursors);
            self.snapshots
                .remove(session.as_str().as_bytes())
                .map_err(|e| self.io(format!("removing the snapshot of session {session}: {e}")))?;
            let mut batch = sled::Batch::default();
            for key in self.log.scan_prefix(log_prefix(session)).keys() {
                batch.remove(key.map_err(|e| self.io(format!("removing the log of session {session}: {e}")))?);
            }
            self.log.apply_batch(batch).map_err(|e| self.io(format!("removing the log of session {session}: {e}")))?;
            cache.entries.remove(session);
            cursors.remove(session);
        }
        self.flush_if(self.flush == FlushPolicy::Always)
    }

    fn flush(&self) -> Result<(), StoreError> {
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

/// Takes the store's lock file, or says who holds it.
fn take_lock(path: &Path) -> Result<DirLock, StoreError> {
    let lock_path = path.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| io_error(path, format!("cannot open the lock file {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file, sled_file: None }),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.display().to_string(),
            detail: format!(
                "{} is held by another process (or another store in this process) that has the database open",
                lock_path.display()
            ),
        }),
        Err(TryLockError::Error(e)) => {
            Err(io_error(path, format!("cannot lock the lock file {}: {e}", lock_path.display())))
        }
    }
}

/// A failed sled open, and whether it looks like unreadable files (as opposed to a lock or an IO error).
struct SledOpenError {
    error: StoreError,
    unreadable: bool,
}

/// What to do about a database sled cannot read.
const REBUILD_ADVICE: &str = "the store holds only rebuildable state: move the directory aside to start a fresh \
                              one (sessions log in again), or open with `rebuild_if_unreadable`";

/// Opens sled, turning its errors (and panics on damaged files) into clear [`StoreError`]s.
fn open_sled(path: &Path, options: &SledOptions) -> Result<sled::Db, SledOpenError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity_bytes)
        .flush_every_ms(options.background_flush_ms);
    let unreadable = |detail: String| SledOpenError { error: io_error(path, detail), unreadable: true };
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => Err(SledOpenError {
            error: StoreError::Locked { path: path.display().to_string(), detail: format!("sled: {e}") },
            unreadable: false,
        }),
        Ok(Err(sled::Error::Io(e))) => {
            Err(SledOpenError { error: io_error(path, format!("sled cannot open it: {e}")), unreadable: false })
        }
        Ok(Err(sled::Error::Corruption { at, .. })) => {
            let at = at.map(|at| format!(" at {at}")).unwrap_or_default();
            Err(unreadable(format!("sled found damaged data{at}; {REBUILD_ADVICE}")))
        }
        Ok(Err(e)) => Err(unreadable(format!("sled cannot read it ({e}); {REBUILD_ADVICE}"))),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(unreadable(format!("sled panicked while opening it ({message}); {REBUILD_ADVICE}")))
        }
    }
}

/// Renames the database directory to the first free `<path>.unreadable.<n>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    const MAX_ASIDE: u32 = 1_000;
    for n in 1..=MAX_ASIDE {
        let mut name = path.as_os_str().to_os_string();
        name.push(format!(".unreadable.{n}"));
        let aside = PathBuf::from(name);
        if aside.exists() {
            continue;
        }
        return fs::rename(path, &aside)
            .map(|()| aside)
            .map_err(|e| io_error(path, format!("cannot move the unreadable database aside: {e}")));
    }
    Err(io_error(path, format!("cannot move the unreadable database aside: {MAX_ASIDE} earlier copies are in the way")))
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
    }
}
