//! Persistence across process restarts: a `Warden` rebuilt on the same sled path resumes its sessions
//! (no login while the grant is valid, exactly one when it expired); secrets never reach the files in
//! clear; a wrong key is refused at open, and quarantines the record (never a panic) when told to start
//! over.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{Clock, SessionHandle, SessionSpec, Warden, WardenEventKind};
use warden_adapters::{KeySource, SledOptions, SledStore};
use warden_engine::{Generation, Mode, Preset, SessionId, StateKind};

fn broker() -> Arc<ScriptedBroker> {
    Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(3600))))
}

async fn open(warden: &Warden, broker: &Arc<ScriptedBroker>) -> SessionHandle {
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Eager;
    let spec = SessionSpec::new(SessionId::new("kotak").unwrap(), broker.clone()).with_policy(policy);
    warden.open(spec).await.unwrap()
}

async fn warden_at(path: &Path, clock: Clock) -> Warden {
    Warden::builder().store_path(path).clock(clock).build().await.unwrap()
}

/// A first process logs in (generation 1) and is dropped without a goodbye; `down` later, a second
/// `Warden` on the same path opens the session again with a fresh broker.
async fn restart_after(path: &Path, clock: Clock, down: Duration) -> (Warden, SessionHandle, Arc<ScriptedBroker>) {
    let first = broker();
    let warden = warden_at(path, clock.clone()).await;
    let session = open(&warden, &first).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    assert_eq!(first.logins(), 1);
    drop(session);
    drop(warden);
    tokio::time::sleep(down).await;

    let second = broker();
    let warden = warden_at(path, clock).await;
    let session = open(&warden, &second).await;
    (warden, session, second)
}

#[tokio::test(start_paused = true)]
async fn a_rebuilt_warden_resumes_a_valid_grant_without_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let (warden, session, second) = restart_after(&path, clock_at(MONDAY_0900_IST), Duration::from_secs(600)).await;
    assert!(wait_for_state(&session, StateKind::Valid, Duration::from_secs(1)).await);
    assert_eq!(session.token().await.unwrap().generation, Generation(1), "the stored grant is reused");
    assert_eq!(second.logins(), 0, "no login after the restart");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_rebuilt_warden_logs_in_exactly_once_when_the_grant_expired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    // The one-hour token expires while the process is down.
    let down = Duration::from_secs(2 * 3600);
    let (warden, session, second) = restart_after(&path, clock_at(MONDAY_0900_IST), down).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(2), "generations keep growing");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(second.logins(), 1, "exactly one login");
    warden.shutdown(false).await;
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            return files_contain(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test(start_paused = true)]
async fn tokens_never_reach_the_files_in_clear_and_a_wrong_key_quarantines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    let options = |key: u8| SledOptions::default().key(KeySource::Bytes([key; 32]));
    let store = |options: SledOptions| -> Arc<SledStore> { Arc::new(SledStore::open(&path, options).unwrap()) };

    let first = broker();
    let warden = Warden::builder().store(store(options(7))).clock(clock.clone()).build().await.unwrap();
    let session = open(&warden, &first).await;
    let token = session.token().await.unwrap().token().to_owned();
    assert_eq!(token, "kotak-tok-1");
    warden.shutdown(false).await;
    drop(session);
    drop(warden);
    assert!(!files_contain(dir.path(), token.as_bytes()), "the token is encrypted at rest");
    assert!(files_contain(dir.path(), b"snapshots"), "the scan does read the database files");

    // Another key is refused at open; told to start over, the store quarantines the old records.
    assert!(matches!(SledStore::open(&path, options(8)), Err(warden_engine::StoreError::Key { .. })));
    let second = broker();
    let warden =
        Warden::builder().store(store(options(8).start_over_if_key_lost(true))).clock(clock).build().await.unwrap();
    let mut events = warden.events();
    let session = open(&warden, &second).await;
    assert_eq!(session.token().await.unwrap().token(), "kotak-tok-1", "a fresh login (the script restarts at 1)");
    assert_eq!(second.logins(), 1, "the unreadable record was set aside and the session started fresh");
    let quarantined = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e.kind, WardenEventKind::StoreQuarantined { .. }));
    assert!(quarantined, "a clear event says the record was quarantined");
    warden.shutdown(false).await;
}
