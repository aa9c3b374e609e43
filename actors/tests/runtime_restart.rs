//! What survives a process and what does not: giving up after a crash loop lasts only as long as the
//! process; giving up on bad credentials lasts until the credentials change, which a restart with other
//! credentials notices by itself; the login attempt is on disk before the login leaves; secrets never
//! serialise in clear.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{Clock, SessionHandle, SessionSpec, TokenError, Warden};
use warden_engine::time::HumanDuration;
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, Credentials, Durability, Generation, Grant, InvalidReason,
    LoadOutcome, LoginRequest, Policy, Preset, RestartLimit, SessionEvent, SessionId, Snapshot, StateKind, Store,
    StoreError, UnixMs,
};

fn policy() -> Policy {
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.keepalive_interval = None;
    policy.restart_limit = RestartLimit { max: 2, within: HumanDuration(Duration::from_secs(600)) };
    policy
}

async fn open(warden: &Warden, broker: Arc<ScriptedBroker>, credentials: Credentials) -> SessionHandle {
    let spec =
        SessionSpec::new(SessionId::new("acct").unwrap(), broker).with_policy(policy()).with_credentials(credentials);
    warden.open(spec).await.unwrap()
}

async fn warden_at(path: &Path, clock: Clock) -> Warden {
    Warden::builder().store_path(path).clock(clock).build().await.unwrap()
}

fn password(p: &str) -> Credentials {
    Credentials::new().with("user", "trader").with("password", p)
}

/// A crash loop makes the session give up in this process; the next process has a fresh restart budget
/// and reuses the still-valid grant without a login.
#[tokio::test(start_paused = true)]
async fn giving_up_after_a_crash_loop_lasts_only_for_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    let first = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(8 * 3600))));
    let warden = warden_at(&path, clock.clone()).await;
    let session = open(&warden, first.clone(), password("p")).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    for _ in 0..3 {
        session.inject_failure("adapter bug").await.unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
    assert!(wait_for_state(&session, StateKind::Invalid, Duration::from_secs(600)).await);
    assert!(matches!(session.status().invalid_reason, Some(InvalidReason::RestartLimit { .. })));
    drop(session);
    warden.shutdown(false).await;
    drop(warden);

    let second = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(8 * 3600))));
    let warden = warden_at(&path, clock).await;
    let session = open(&warden, second.clone(), password("p")).await;
    assert!(wait_for_state(&session, StateKind::Valid, Duration::from_secs(1)).await);
    assert_eq!(session.token().await.unwrap().generation, Generation(1), "the grant kept for it is reused");
    assert_eq!(second.logins(), 0);
    warden.shutdown(false).await;
}

/// Giving up on bad credentials persists across restarts (the lock-out protection) — until the session is
/// opened with different credentials: then it leaves `Invalid` by itself.
#[tokio::test(start_paused = true)]
async fn new_credentials_given_at_open_lift_a_bad_credentials_give_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    let wrong = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::error(400, "wrong password")));
    let warden = warden_at(&path, clock.clone()).await;
    let session = open(&warden, wrong.clone(), password("wrong")).await;
    let error = session.token().await.unwrap_err();
    assert!(matches!(error, TokenError::Invalid(InvalidReason::BadCredentials { .. })), "{error}");
    warden.shutdown(false).await;
    drop((session, warden));

    // The same credentials after a restart: still Invalid, no login.
    let again = Arc::new(ScriptedBroker::new("kotak"));
    let warden = warden_at(&path, clock.clone()).await;
    let session = open(&warden, again.clone(), password("wrong")).await;
    assert!(matches!(session.token().await, Err(TokenError::Invalid(_))));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(again.logins(), 0, "the lock-out protection holds");
    warden.shutdown(false).await;
    drop((session, warden));

    // The operator fixed the password and restarted: the session logs in by itself.
    let fixed = Arc::new(ScriptedBroker::new("kotak"));
    let warden = warden_at(&path, clock).await;
    let session = open(&warden, fixed.clone(), password("right")).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    assert_eq!(fixed.logins(), 1);
    warden.shutdown(false).await;
}

/// A store whose saves take a while, recording the newest snapshot once the save is done.
struct SlowStore {
    saved: Mutex<Option<Snapshot>>,
}

impl Store for SlowStore {
    fn load(&self, _session: &SessionId) -> Result<LoadOutcome, StoreError> {
        Ok(LoadOutcome::Missing)
    }
    fn save(&self, snapshot: &Snapshot, _durability: Durability) -> Result<(), StoreError> {
        std::thread::sleep(Duration::from_millis(50));
        *self.saved.lock().unwrap() = Some(snapshot.clone());
        Ok(())
    }
    fn append_log(&self, _session: &SessionId, _event: &SessionEvent) -> Result<(), StoreError> {
        Ok(())
    }
    fn read_log(&self, _session: &SessionId, _limit: usize) -> Result<Vec<SessionEvent>, StoreError> {
        Ok(Vec::new())
    }
    fn remove(&self, _session: &SessionId) -> Result<(), StoreError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A broker that checks, when a login reaches it, that the store already holds the attempt.
struct CheckingBroker {
    store: Arc<SlowStore>,
    attempt_on_disk: AtomicBool,
    logins: Mutex<Vec<UnixMs>>,
}

impl Broker for CheckingBroker {
    fn name(&self) -> &str {
        "checking"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn login<'a>(&'a self, now: UnixMs, _request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let saved = self.store.saved.lock().unwrap().clone();
        let on_disk = saved.is_some_and(|s| s.login_attempts.contains(&now));
        self.attempt_on_disk.store(on_disk, Ordering::SeqCst);
        self.logins.lock().unwrap().push(now);
        Box::pin(async move { Ok(Grant::new("tok", now).expires_in(Duration::from_secs(3600))) })
    }
    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The driver saves the login attempt (flushed) before the login call starts, whatever the scheduler
/// does: on two worker threads the call's task would otherwise run while the save is still under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_attempt_is_on_disk_before_the_login_leaves() {
    let store = Arc::new(SlowStore { saved: Mutex::new(None) });
    let broker = Arc::new(CheckingBroker {
        store: store.clone(),
        attempt_on_disk: AtomicBool::new(false),
        logins: Mutex::default(),
    });
    let warden = Warden::builder().store(store.clone()).build().await.unwrap();
    let spec = SessionSpec::new(SessionId::new("checked").unwrap(), broker.clone()).with_policy(policy());
    let session = warden.open(spec).await.unwrap();
    session.token().await.unwrap();
    assert_eq!(broker.logins.lock().unwrap().len(), 1);
    assert!(broker.attempt_on_disk.load(Ordering::SeqCst), "the login left before its attempt was saved");
    warden.shutdown(false).await;
}

/// Public types serialise secrets as a redaction: a grant, a lease's grant, a status, an event.
#[tokio::test(start_paused = true)]
async fn secrets_never_serialise_in_clear() {
    let broker = Arc::new(
        ScriptedBroker::new("saxo")
            .with_capabilities(Capabilities { refresh: true, keepalive: false })
            .login_fallback(Reply::grant_with_refresh(Duration::from_secs(1200), Duration::from_secs(3600))),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut events = warden.events();
    let spec = SessionSpec::new(SessionId::new("saxo").unwrap(), broker).with_policy(policy());
    let session = warden.open(spec).await.unwrap();
    let lease = session.token().await.unwrap().into_lease();
    let json = serde_json::to_string(&*lease.grant).unwrap();
    assert!(!json.contains("saxo-tok-1") && !json.contains("saxo-ref-1"), "{json}");
    assert!(json.contains("***"), "{json}");
    let status = serde_json::to_string(&session.status()).unwrap();
    let all_events: Vec<String> =
        std::iter::from_fn(|| events.try_recv().ok()).map(|e| serde_json::to_string(&e).unwrap()).collect();
    for text in all_events.iter().chain([&status]) {
        assert!(!text.contains("saxo-tok") && !text.contains("saxo-ref"), "{text}");
    }
    warden.shutdown(false).await;
}

/// A store whose last holder is dropped on another thread (as a flush on the blocking pool does) can be
/// opened again at once in this process: the new `Warden` waits for the close to release the lock
/// instead of failing with `Locked` (a restart test failed that way once in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_closed_on_another_thread_opens_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    for round in 0..20 {
        let warden = Warden::builder().store_path(&path).build().await.unwrap();
        let broker = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(3600))));
        let session = open(&warden, broker, password("p")).await;
        session.token().await.unwrap();
        warden.shutdown(false).await;
        drop(session);
        let closing = std::thread::spawn(move || drop(warden));
        let again = Warden::builder().store_path(&path).build().await;
        assert!(again.is_ok(), "round {round}: {:?}", again.err());
        drop(again);
        closing.join().unwrap();
    }
}
