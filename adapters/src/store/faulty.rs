//! [`FaultyStore`]: wraps any [`Store`] and makes its writes fail on demand, for the simulator and tests.
//!
//! A [`WriteFaults`] switch (cheap to clone; every clone controls the same store) decides: while
//! [`WriteFaults::set_failing`] is on, or for the next `n` writes after [`WriteFaults::fail_next`], every
//! write — `save`, `save_deferred`, `append_log`, `append_logs`, `remove`, `flush`, their fenced forms and
//! `record_login_attempt` — returns [`StoreError::WriteFailed`] without reaching the inner store. Reads
//! (`load`, `read_log`, `login_attempts`) and the ownership calls (leases, members, `fence_status`) always
//! pass through, so a wrapped shared store keeps its fencing.
//!
//! ```
//! use warden_adapters::{FaultyStore, MemoryStore};
//! use warden_engine::{Store, StoreError};
//!
//! let store = FaultyStore::new(MemoryStore::new());
//! let faults = store.faults();
//! faults.set_failing(true);
//! assert!(matches!(store.flush(), Err(StoreError::WriteFailed { .. })));
//! faults.set_failing(false);
//! assert!(store.flush().is_ok());
//! assert_eq!(faults.injected(), 1);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

use warden_engine::{
    Durability, Fence, HeldLease, LeaseOutcome, LoadOutcome, LoginAttempt, MemberName, Pending, SessionEvent,
    SessionId, Snapshot, Store, StoreError, UnixMs,
};

/// The switch of a [`FaultyStore`]. Clones share the switch.
#[derive(Clone, Debug, Default)]
pub struct WriteFaults {
    failing: Arc<AtomicBool>,
    fail_next: Arc<AtomicU32>,
    injected: Arc<AtomicU64>,
}

impl WriteFaults {
    /// A switch that lets every write through.
    pub fn new() -> WriteFaults {
        WriteFaults::default()
    }

    /// Makes every write fail (`true`) or pass (`false`) from now on.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Whether writes fail now.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst) || self.fail_next.load(Ordering::SeqCst) > 0
    }

    /// Makes the next `writes` writes fail, then lets writes through again (unless `set_failing(true)`).
    pub fn fail_next(&self, writes: u32) {
        self.fail_next.store(writes, Ordering::SeqCst);
    }

    /// How many writes have been failed so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// `Err(WriteFailed)` if this write must fail.
    fn check(&self, operation: &str) -> Result<(), StoreError> {
        let counted = self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if counted || self.failing.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::WriteFailed { detail: format!("{operation}: injected fault") });
        }
        Ok(())
    }
}

/// A [`Store`] whose writes fail while its [`WriteFaults`] switch says so.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    faults: WriteFaults,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner` with a new switch (off).
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore::with_faults(inner, WriteFaults::new())
    }

    /// Wraps `inner` with a given switch (e.g. one shared by several stores).
    pub fn with_faults(inner: S, faults: WriteFaults) -> FaultyStore<S> {
        FaultyStore { inner, faults }
    }

    /// The switch (a shared handle).
    pub fn faults(&self) -> WriteFaults {
        self.faults.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        self.inner.load(session)
    }

    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        self.faults.check("save")?;
        self.inner.save(snapshot, durability)
    }

    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.faults.check("save")?;
        self.inner.save_deferred(snapshot)
    }

    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        self.faults.check("append_log")?;
        self.inner.append_log(session, event)
    }

    fn append_logs(&self, session: &SessionId, events: &[SessionEvent]) -> Result<(), StoreError> {
        self.faults.check("append_log")?;
        self.inner.append_logs(session, events)
    }

    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        self.inner.read_log(session, limit)
    }

    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        self.faults.check("remove")?;
        self.inner.remove(session)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.faults.check("flush")?;
        self.inner.flush()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn acquire_lease(
        &self,
        session: &SessionId,
        member: &MemberName,
        ttl: Duration,
        now: UnixMs,
    ) -> Result<LeaseOutcome, StoreError> {
        self.inner.acquire_lease(session, member, ttl, now)
    }

    fn renew_lease(
        &self,
        session: &SessionId,
        member: &MemberName,
        fence: Fence,
        ttl: Duration,
        now: UnixMs,
    ) -> Result<UnixMs, StoreError> {
        self.inner.renew_lease(session, member, fence, ttl, now)
    }

    fn renew_all(&self, member: &MemberName, ttl: Duration, now: UnixMs) -> Result<Vec<HeldLease>, StoreError> {
        self.inner.renew_all(member, ttl, now)
    }

    fn release_lease(&self, session: &SessionId, member: &MemberName, fence: Fence) -> Result<(), StoreError> {
        self.inner.release_lease(session, member, fence)
    }

    fn save_fenced(&self, snapshot: &Snapshot, durability: Durability, fence: Fence) -> Result<(), StoreError> {
        self.faults.check("save")?;
        self.inner.save_fenced(snapshot, durability, fence)
    }

    fn save_deferred_fenced(&self, snapshot: &Snapshot, fence: Fence) -> Result<Pending, StoreError> {
        self.faults.check("save")?;
        self.inner.save_deferred_fenced(snapshot, fence)
    }

    fn append_logs_fenced(&self, session: &SessionId, events: &[SessionEvent], fence: Fence) -> Result<(), StoreError> {
        self.faults.check("append_log")?;
        self.inner.append_logs_fenced(session, events, fence)
    }

    fn fence_status(&self, session: &SessionId, fence: Fence) -> Result<(), StoreError> {
        self.inner.fence_status(session, fence)
    }

    fn heartbeat_member(&self, member: &MemberName, ttl: Duration, now: UnixMs) -> Result<(), StoreError> {
        self.inner.heartbeat_member(member, ttl, now)
    }

    fn leave_member(&self, member: &MemberName) -> Result<(), StoreError> {
        self.inner.leave_member(member)
    }

    fn live_members(&self, now: UnixMs) -> Result<Vec<MemberName>, StoreError> {
        self.inner.live_members(now)
    }

    fn record_login_attempt(&self, session: &SessionId, fence: Fence, at: UnixMs) -> Result<(), StoreError> {
        self.faults.check("record_login_attempt")?;
        self.inner.record_login_attempt(session, fence, at)
    }

    fn login_attempts(&self, session: &SessionId, limit: usize) -> Result<Vec<LoginAttempt>, StoreError> {
        self.inner.login_attempts(session, limit)
    }
}
