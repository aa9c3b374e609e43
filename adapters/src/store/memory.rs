//! [`MemoryStore`]: a [`Store`] in memory, for tests and for runs that need no persistence.
//!
//! It behaves like the sled store where tests can tell: snapshots go through the same rmp-serde encoding
//! (so a field that does not survive serialisation fails here too), logs keep the entries of the newest
//! `log_retention` steps (an `append_log` is a step of one entry, an `append_logs` a step of all of its
//! entries), and [`MemoryStore::put_unreadable`] plants a record that the next
//! [`Store::load`] reports as [`LoadOutcome::Quarantined`]. The handle is an `Arc` inside: clone it, give
//! one clone to the code under test and inspect the other ([`MemoryStore::snapshot`],
//! [`MemoryStore::log`], [`MemoryStore::stats`]). It has one owner, this process: it keeps the `Store`
//! trait's ownership defaults (every lease granted under `Fence::SINGLE_OWNER`, never lapsing; fenced
//! writes are plain writes; no members, no shared login history).
//!
//! ```
//! use warden_adapters::MemoryStore;
//! use warden_engine::{LoadOutcome, SessionId, Store};
//!
//! let store = MemoryStore::new();
//! let id = SessionId::new("demo").unwrap();
//! assert!(matches!(store.clone().load(&id), Ok(LoadOutcome::Missing)));
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use warden_engine::{Durability, LoadOutcome, Pending, SessionEvent, SessionId, Snapshot, Store, StoreError};
use zeroize::Zeroizing;

use super::lifetimes::{ObservedLifetime, observed_lifetimes};

/// Log steps kept per session unless set otherwise.
pub const DEFAULT_MEMORY_LOG_RETENTION: usize = 1_000;

/// Counts of what a [`MemoryStore`] was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// `save` calls that succeeded.
    pub saves: u64,
    /// Of those, how many asked for [`Durability::Flushed`].
    pub flushed_saves: u64,
    /// `load` calls.
    pub loads: u64,
    /// Loads that found an unreadable record and quarantined it.
    pub quarantined: u64,
    /// Log entries appended (`append_log`, and every entry of `append_logs`).
    pub log_appends: u64,
    /// `flush` calls.
    pub flushes: u64,
    /// `remove` calls.
    pub removes: u64,
}

/// An in-memory [`Store`]; cheap to clone (all clones share the data).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    snapshots: HashMap<SessionId, Slot>,
    /// Each session's log, one list of entries per step.
    logs: HashMap<SessionId, VecDeque<Vec<SessionEvent>>>,
    log_retention: usize,
    stats: MemoryStats,
}

enum Slot {
    Readable(Box<Snapshot>),
    Unreadable(String),
}

impl MemoryStore {
    /// An empty store keeping [`DEFAULT_MEMORY_LOG_RETENTION`] log steps per session.
    pub fn new() -> MemoryStore {
        MemoryStore::with_log_retention(DEFAULT_MEMORY_LOG_RETENTION)
    }

    /// An empty store keeping the newest `steps` log steps per session (as the sled store does).
    pub fn with_log_retention(steps: usize) -> MemoryStore {
        let inner = Inner { log_retention: steps, ..Inner::default() };
        MemoryStore { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data (every update is one step).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored snapshot of a session, if a readable one is there.
    pub fn snapshot(&self, session: &SessionId) -> Option<Snapshot> {
        match self.lock().snapshots.get(session) {
            Some(Slot::Readable(snapshot)) => Some(Snapshot::clone(snapshot)),
            _ => None,
        }
    }

    /// A session's whole log, oldest first.
    pub fn log(&self, session: &SessionId) -> Vec<SessionEvent> {
        self.lock().logs.get(session).map(|log| log.iter().flatten().cloned().collect()).unwrap_or_default()
    }

    /// The sessions that have a snapshot (readable or not), sorted.
    pub fn sessions(&self) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.lock().snapshots.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// What the store was asked to do so far.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// Replaces a session's snapshot with an unreadable record: the next `load` quarantines it and reports
    /// `Quarantined { reason }`, as the sled store does with a record that does not decrypt.
    pub fn put_unreadable(&self, session: &SessionId, reason: impl Into<String>) {
        self.lock().snapshots.insert(session.clone(), Slot::Unreadable(reason.into()));
    }

    /// The token lifetimes the session's log has seen (see [`observed_lifetimes`]).
    pub fn read_observed_lifetimes(&self, session: &SessionId) -> Vec<ObservedLifetime> {
        observed_lifetimes(&self.log(session))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("sessions", &inner.snapshots.len())
            .field("logs", &inner.logs.len())
            .field("log_retention", &inner.log_retention)
            .field("stats", &inner.stats)
            .finish()
    }
}

/// The snapshot after an encode/decode round trip, as a disk store would give it back.
fn round_trip(snapshot: &Snapshot) -> Result<Snapshot, StoreError> {
    let encode_error = |detail: String| StoreError::Encode { session: snapshot.session_id.to_string(), detail };
    let encoded = warden_engine::secret::serialize_exposed(|| rmp_serde::to_vec_named(snapshot));
    let bytes = Zeroizing::new(encoded.map_err(|e| encode_error(format!("rmp-serde: {e}")))?);
    rmp_serde::from_slice(&bytes).map_err(|_| encode_error("the snapshot does not decode after encoding".to_owned()))
}

impl Store for MemoryStore {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        let mut inner = self.lock();
        inner.stats.loads += 1;
        match inner.snapshots.remove(session) {
            None => Ok(LoadOutcome::Missing),
            Some(Slot::Readable(snapshot)) => {
                let found = snapshot.clone();
                inner.snapshots.insert(session.clone(), Slot::Readable(snapshot));
                Ok(LoadOutcome::Found(found))
            }
            Some(Slot::Unreadable(reason)) => {
                inner.stats.quarantined += 1;
                tracing::warn!(session = %session, %reason, "store record quarantined; the session starts fresh");
                Ok(LoadOutcome::Quarantined { reason, login_attempts: None })
            }
        }
    }

    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        let copy = round_trip(snapshot)?;
        let mut inner = self.lock();
        inner.snapshots.insert(snapshot.session_id.clone(), Slot::Readable(Box::new(copy)));
        inner.stats.saves += 1;
        if durability == Durability::Flushed {
            inner.stats.flushed_saves += 1;
        }
        Ok(())
    }

    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.save(snapshot, Durability::Flushed).map(|()| Pending::Durable)
    }

    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        self.append_logs(session, std::slice::from_ref(event))
    }

    fn append_logs(&self, session: &SessionId, events: &[SessionEvent]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.stats.log_appends += events.len() as u64;
        let retention = inner.log_retention;
        if events.is_empty() {
            return Ok(());
        }
        let log = inner.logs.entry(session.clone()).or_default();
        log.push_back(events.to_vec());
        while log.len() > retention {
            log.pop_front();
        }
        Ok(())
    }

    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        let inner = self.lock();
        let Some(log) = inner.logs.get(session) else { return Ok(Vec::new()) };
        let all: Vec<&SessionEvent> = log.iter().flatten().collect();
        Ok(all[all.len().saturating_sub(limit)..].iter().map(|e| (*e).clone()).collect())
    }

    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.stats.removes += 1;
        inner.snapshots.remove(session);
        inner.logs.remove(session);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.lock().stats.flushes += 1;
        Ok(())
    }
}
