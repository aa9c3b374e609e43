//! Durable before handed out: a new grant is published and served only after a flush that started after
//! its snapshot was written has returned, and a login starts only once its attempt is on disk; one flush
//! serves many sessions (group commit); a store that fails or hangs holds nothing back for longer than
//! `durable_wait`; a request whose lease died while it waited for the disk gets the next grant, never the
//! dead one.
//!
//! The stores here keep what they were given in memory and make it "durable" only when a flush returns:
//! `DiskStore` after a delay in real time, `GatedStore` when the test lets a held flush go (or makes it
//! fail). The flush runs on the blocking pool, so these tests run on a real clock; their bounded waits
//! only turn a hang into a failure, they never assert a duration.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::quiet_policy;
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionHandle, SessionSpec, Warden, WardenEventKind};
use warden_adapters::{FaultyStore, MemoryStore};
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, Durability, ErrorClass, Generation, Grant, LoadOutcome, LoginRequest,
    Mode, Pending, Policy, Preset, SessionEvent, SessionId, Snapshot, Store, StoreError, UnixMs,
};

/// A store whose durable writes need a flush; a flush takes `flush_delay` and then makes durable what
/// was written before it started.
struct DiskStore {
    inner: MemoryStore,
    flush_delay: Duration,
    /// The newest snapshot written, per session.
    written: Mutex<Vec<Snapshot>>,
    /// The newest snapshot made durable by a flush that returned, per session.
    durable: Mutex<Vec<Snapshot>>,
    flushes: AtomicU64,
}

impl DiskStore {
    fn new(flush_delay: Duration) -> Arc<DiskStore> {
        Arc::new(DiskStore {
            inner: MemoryStore::new(),
            flush_delay,
            written: Mutex::new(Vec::new()),
            durable: Mutex::new(Vec::new()),
            flushes: AtomicU64::new(0),
        })
    }

    fn note(list: &Mutex<Vec<Snapshot>>, snapshot: &Snapshot) {
        let mut list = list.lock().unwrap();
        list.retain(|s| s.session_id != snapshot.session_id);
        list.push(snapshot.clone());
    }

    /// The snapshot of `session` that a crash now would leave.
    fn durable(&self, session: &str) -> Option<Snapshot> {
        self.durable.lock().unwrap().iter().find(|s| s.session_id.as_str() == session).cloned()
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl Store for DiskStore {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        self.inner.load(session)
    }
    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        self.inner.save(snapshot, Durability::Buffered)?;
        DiskStore::note(&self.written, snapshot);
        if durability == Durability::Flushed { self.flush() } else { Ok(()) }
    }
    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.save(snapshot, Durability::Buffered).map(|()| Pending::Flush)
    }
    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        self.inner.append_log(session, event)
    }
    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        self.inner.read_log(session, limit)
    }
    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        self.inner.remove(session)
    }
    fn flush(&self) -> Result<(), StoreError> {
        let covered = self.written.lock().unwrap().clone();
        std::thread::sleep(self.flush_delay);
        for snapshot in &covered {
            DiskStore::note(&self.durable, snapshot);
        }
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A store whose flushes wait for the test: each flush counts itself as entered, then blocks until the
/// test lets one flush through ([`GatedStore::let_one_through`]), opens the gate for good, or makes every
/// flush fail; a flush that returns `Ok` makes durable what was written before it started.
struct GatedStore {
    inner: MemoryStore,
    written: Mutex<Vec<Snapshot>>,
    durable: Mutex<Vec<Snapshot>>,
    gate: Mutex<Gate>,
    opened: Condvar,
}

#[derive(Default)]
struct Gate {
    entered: u64,
    permits: u64,
    open: bool,
    failing: bool,
}

impl GatedStore {
    fn new() -> Arc<GatedStore> {
        Arc::new(GatedStore {
            inner: MemoryStore::new(),
            written: Mutex::new(Vec::new()),
            durable: Mutex::new(Vec::new()),
            gate: Mutex::new(Gate::default()),
            opened: Condvar::new(),
        })
    }

    fn let_one_through(&self) {
        self.gate.lock().unwrap().permits += 1;
        self.opened.notify_all();
    }

    /// Lets every flush through from now on (the final flush of a shutdown, say).
    fn open(&self) {
        self.gate.lock().unwrap().open = true;
        self.opened.notify_all();
    }

    fn fail_every_flush(&self) {
        self.gate.lock().unwrap().failing = true;
        self.opened.notify_all();
    }

    fn flushes_entered(&self) -> u64 {
        self.gate.lock().unwrap().entered
    }

    fn durable_generation(&self, session: &str) -> Option<Generation> {
        self.durable.lock().unwrap().iter().find(|s| s.session_id.as_str() == session).map(|s| s.generation)
    }
}

impl Store for GatedStore {
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError> {
        self.inner.load(session)
    }
    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError> {
        self.inner.save(snapshot, Durability::Buffered)?;
        DiskStore::note(&self.written, snapshot);
        if durability == Durability::Flushed { self.flush() } else { Ok(()) }
    }
    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.save(snapshot, Durability::Buffered).map(|()| Pending::Flush)
    }
    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError> {
        self.inner.append_log(session, event)
    }
    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        self.inner.read_log(session, limit)
    }
    fn remove(&self, session: &SessionId) -> Result<(), StoreError> {
        self.inner.remove(session)
    }
    fn flush(&self) -> Result<(), StoreError> {
        let covered = self.written.lock().unwrap().clone();
        let mut gate = self.gate.lock().unwrap();
        gate.entered += 1;
        while gate.permits == 0 && !gate.open && !gate.failing {
            gate = self.opened.wait(gate).unwrap();
        }
        if gate.failing {
            return Err(StoreError::WriteFailed { detail: "the disk is full".to_owned() });
        }
        if !gate.open {
            gate.permits -= 1;
        }
        drop(gate);
        for snapshot in &covered {
            DiskStore::note(&self.durable, snapshot);
        }
        Ok(())
    }
}

/// Opens the gate of a `GatedStore` when dropped, so that a failing test (or a shutdown's last flush)
/// never leaves a flush blocked on the runtime's blocking pool, which the runtime's end would wait for.
struct OpenAtEnd(Arc<GatedStore>);

impl Drop for OpenAtEnd {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Polls `future` once: `Some` if it is done.
fn poll_once<T>(future: &mut Pin<Box<impl Future<Output = T> + ?Sized>>) -> Option<T> {
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// Waits (bounded: a hang is a failure, not a timing) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up waiting until {what}");
}

/// Far longer than any of these tests: a grant held for the disk is never released by the bound.
const NO_BOUND: Duration = Duration::from_secs(3600);

/// How long a test waits for what must come at once, before it calls that a hang.
const HANG: Duration = Duration::from_secs(20);

/// A broker that notes, at each login, whether the store already holds the attempt durably.
struct AuditingBroker {
    store: Arc<DiskStore>,
    session: &'static str,
    logins: AtomicU64,
    attempt_durable: AtomicBool,
}

impl Broker for AuditingBroker {
    fn name(&self) -> &str {
        "auditing"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn login<'a>(&'a self, now: UnixMs, _request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let durable = self.store.durable(self.session).is_some_and(|s| s.login_attempts.contains(&now));
        self.attempt_durable.store(durable, Ordering::SeqCst);
        self.logins.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(Grant::new("tok", now).expires_in(Duration::from_secs(3600))) })
    }
    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }
}

fn eager() -> Policy {
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Eager;
    policy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_grant_is_handed_out_only_once_a_flush_made_it_durable_and_a_login_only_once_its_attempt_is() {
    let store = DiskStore::new(Duration::from_millis(100));
    let broker = Arc::new(AuditingBroker {
        store: store.clone(),
        session: "audited",
        logins: AtomicU64::new(0),
        attempt_durable: AtomicBool::new(false),
    });
    let warden = Warden::builder().store(store.clone()).build().await.unwrap();
    let spec = SessionSpec::new(SessionId::new("audited").unwrap(), broker.clone()).with_policy(eager());
    let session = warden.open(spec).await.unwrap();
    let lease = session.token().await.unwrap();
    assert_eq!(lease.generation, Generation(1));
    let durable = store.durable("audited").expect("a durable snapshot");
    assert!(durable.generation >= lease.generation, "the grant was handed out before a flush made it durable");
    assert!(durable.grant.is_some_and(|g| g.generation == lease.generation), "the durable snapshot holds the grant");
    assert_eq!(broker.logins.load(Ordering::SeqCst), 1);
    assert!(broker.attempt_durable.load(Ordering::SeqCst), "the login left before its attempt was durable");
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flush_makes_the_writes_of_many_sessions_durable() {
    const SESSIONS: usize = 40;
    let store = DiskStore::new(Duration::from_millis(20));
    let broker = Arc::new(ScriptedBroker::new("many"));
    let warden = Warden::builder().store(store.clone()).build().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let spec = SessionSpec::new(SessionId::new(format!("s{i}")).unwrap(), broker.clone()).with_policy(eager());
        handles.push(warden.open(spec).await.unwrap());
    }
    for handle in &handles {
        assert_eq!(handle.token().await.unwrap().generation, Generation(1));
        let id = handle.id().as_str();
        assert!(store.durable(id).is_some_and(|s| s.generation == Generation(1)), "{id} served before durable");
    }
    let stats = warden.commit_stats();
    assert_eq!(stats.tickets, 2 * SESSIONS as u64, "two durable writes per session: the attempt and the grant");
    assert!(stats.flushes <= SESSIONS as u64 / 4, "flushes are shared: {stats:?}");
    assert_eq!(broker.logins(), SESSIONS as u64);
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_hangs_holds_a_grant_back_only_until_durable_wait() {
    let store = DiskStore::new(Duration::from_secs(3));
    let broker = Arc::new(ScriptedBroker::new("hang"));
    let warden = Warden::builder().store(store.clone()).durable_wait(Duration::from_millis(200)).build().await.unwrap();
    let mut events = warden.events();
    let spec = SessionSpec::new(SessionId::new("hang").unwrap(), broker.clone()).with_policy(eager());
    let session = warden.open(spec).await.unwrap();
    let lease = session.token().await.unwrap();
    assert_eq!(lease.generation, Generation(1), "trading goes on from memory");
    assert_eq!(store.flushes(), 0, "no flush had returned when the grant was handed out");
    let told = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(&e.kind, WardenEventKind::PersistFailed { detail } if detail.contains("no flush confirmed")));
    assert!(told, "an event says the grant went out before the disk confirmed it");
    assert!(session.stats().persist_failures > 0);
    drop(session);
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_lease_died_while_waiting_for_the_disk_gets_the_next_grant() {
    let store = DiskStore::new(Duration::from_millis(300));
    let broker = Arc::new(ScriptedBroker::new("dies"));
    let warden = Warden::builder().store(store.clone()).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Lazy;
    let spec = SessionSpec::new(SessionId::new("dies").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    let waiting = {
        let session: SessionHandle = session.clone();
        tokio::spawn(async move { session.token().await.map(|lease| lease.generation) })
    };
    // The first grant arrives (after its attempt's flush) and waits for its own flush; meanwhile the
    // broker rejects it.
    while broker.logins() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.durable("dies").is_none_or(|s| s.generation < Generation(1)), "the grant's flush is still running");
    session.report_rejection(Generation(1), ErrorClass::AuthExpired);
    assert_eq!(waiting.await.unwrap(), Ok(Generation(2)), "the dead grant is never handed out");
    assert_eq!(broker.logins(), 2);
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_writes_never_blocks_trading() {
    let store = FaultyStore::new(MemoryStore::new());
    store.faults().set_failing(true);
    let broker = Arc::new(ScriptedBroker::new("failing").login_fallback(Reply::grant(Duration::from_secs(3600))));
    // Real time and no usable bound: a grant held until `durable_wait` would hang the test.
    let warden = Warden::builder().store(Arc::new(store)).durable_wait(NO_BOUND).build().await.unwrap();
    let mut events = warden.events();
    let spec = SessionSpec::new(SessionId::new("failing").unwrap(), broker.clone()).with_policy(eager());
    let session = warden.open(spec).await.unwrap();
    let lease = tokio::time::timeout(HANG, session.token()).await.expect("a failing write blocked trading");
    assert_eq!(lease.unwrap().generation, Generation(1), "served from memory");
    assert!(session.stats().persist_failures >= 2, "the attempt and the grant were not saved");
    assert!(
        std::iter::from_fn(|| events.try_recv().ok()).any(|e| matches!(e.kind, WardenEventKind::PersistFailed { .. }))
    );
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_flush_of_a_new_grant_is_held_back_the_grant_is_neither_published_nor_served() {
    let store = GatedStore::new();
    let _open_at_end = OpenAtEnd(store.clone());
    let broker = Arc::new(ScriptedBroker::new("held"));
    let warden = Warden::builder().store(store.clone()).durable_wait(NO_BOUND).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Lazy;
    let spec = SessionSpec::new(SessionId::new("held").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();

    // The request asks for a login; the save of its attempt waits for the first flush, and so does the login.
    let mut request = Box::pin(session.token());
    assert!(poll_once(&mut request).is_none());
    wait_until("the attempt's flush is entered", || store.flushes_entered() == 1).await;
    assert_eq!(broker.logins(), 0, "the login left before the flush of its attempt returned");

    // The attempt is durable: the login runs, its grant is written and waits for the second flush.
    store.let_one_through();
    wait_until("the grant's flush is entered", || store.flushes_entered() == 2).await;
    wait_until("the actor took the grant in", || session.status().generation == Generation(1)).await;
    assert_eq!(broker.logins(), 1);
    assert_eq!(store.durable_generation("held"), Some(Generation::NONE), "only the attempt is durable");
    assert!(poll_once(&mut request).is_none(), "the waiting request was served a grant not yet on disk");
    assert!(session.try_token().is_none(), "a grant not yet on disk was published");

    // The flush returns: now, and only now, the grant goes out.
    store.let_one_through();
    let lease = tokio::time::timeout(HANG, request).await.expect("the grant never came after its flush").unwrap();
    assert_eq!(lease.generation, Generation(1));
    assert_eq!(store.durable_generation("held"), Some(Generation(1)), "served before its flush returned");
    wait_until("the grant is published", || session.try_token().is_some()).await;
    assert_eq!(warden.commit_stats().flushes, 2);
    store.open();
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_fails_hands_the_grant_out_at_once_from_memory_and_says_so() {
    let store = GatedStore::new();
    store.fail_every_flush();
    let broker = Arc::new(ScriptedBroker::new("full"));
    // No usable bound: only the failure may release the grant.
    let warden = Warden::builder().store(store.clone()).durable_wait(NO_BOUND).build().await.unwrap();
    let mut events = warden.events();
    let spec = SessionSpec::new(SessionId::new("full").unwrap(), broker.clone()).with_policy(eager());
    let session = warden.open(spec).await.unwrap();
    let lease = tokio::time::timeout(HANG, session.token()).await.expect("a failing flush blocked trading");
    assert_eq!(lease.unwrap().generation, Generation(1), "trading goes on from memory");
    assert_eq!(broker.logins(), 1);
    assert_eq!(store.durable_generation("full"), None, "nothing was ever durable");
    assert!(session.stats().persist_failures >= 2, "the attempt's and the grant's flushes failed");
    let told = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(&e.kind, WardenEventKind::PersistFailed { detail } if detail.contains("the disk is full")));
    assert!(told, "an event says the grant went out without reaching the disk");
    assert!(warden.commit_stats().failures >= 2);
    warden.shutdown(false).await;
}
