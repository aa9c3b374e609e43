//! A store or key problem never stops trading, and a lost key is never silently replaced, seen through
//! the public runtime: a damaged database is moved aside (or its lost records noticed) and every session
//! starts fresh with an event and its logins still limited (one at once, then the policy's rate, never
//! a burst); a deleted or changed key stops `build()` with a clear error and changes nothing; starting
//! over keeps the old records in the quarantine; a key rotation keeps every grant.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{Clock, SessionHandle, SessionSpec, Warden, WardenError, WardenEventKind};
use warden_adapters::{KeySource, SledOptions, SledStore, StoreKey};
use warden_engine::{Generation, LoadOutcome, Mode, Preset, SessionId, Store, StoreError};

/// Sessions per test, named `<prefix>-<n>` (actor names are global to the test binary).
const SESSIONS: usize = 3;

fn ids(prefix: &str) -> Vec<SessionId> {
    (0..SESSIONS).map(|n| SessionId::new(format!("{prefix}-{n}")).unwrap()).collect()
}

/// A broker that grants one-hour tokens.
fn granting() -> Arc<ScriptedBroker> {
    Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(3600))))
}

/// A broker whose logins all fail with a transient error: every attempt the session makes is counted,
/// and backoff alone (5 s, then 10 s…) would allow three within a minute.
fn failing() -> Arc<ScriptedBroker> {
    Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::error(503, "broker down")))
}

async fn open(warden: &Warden, id: &SessionId, broker: &Arc<ScriptedBroker>) -> SessionHandle {
    let mut policy = quiet_policy(Preset::Reactive); // login_rate: 3 per 5 minutes
    policy.mode = Mode::Eager;
    warden.open(SessionSpec::new(id.clone(), broker.clone()).with_policy(policy)).await.unwrap()
}

fn key_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".key");
    PathBuf::from(name)
}

/// A first process logs every session in (generation 1) and shuts down cleanly.
async fn first_process(path: &Path, options: SledOptions, clock: Clock, prefix: &str) {
    let warden = Warden::builder().store_path_with(path, options).clock(clock.clone()).build().await.unwrap();
    for id in ids(prefix) {
        let broker = granting();
        let session = open(&warden, &id, &broker).await;
        assert_eq!(session.token().await.unwrap().generation, Generation(1));
    }
    warden.shutdown(false).await;
}

/// Opens every session with its own failing broker, then checks the logins: one each at once, none more
/// within a minute (the rate, not the 5 s backoff, decides), the next one after the rate's window. Returns
/// the `StoreQuarantined` reasons seen, per session.
async fn every_session_starts_fresh_with_limited_logins(warden: &Warden, prefix: &str) -> Vec<Vec<String>> {
    let mut events = warden.events();
    let mut brokers = Vec::new();
    let mut handles = Vec::new();
    for id in ids(prefix) {
        let broker = failing();
        handles.push(open(warden, &id, &broker).await);
        brokers.push(broker);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logins: Vec<u64> = brokers.iter().map(|b| b.logins()).collect();
    assert_eq!(logins, vec![1; SESSIONS], "one login each, at once");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let logins: Vec<u64> = brokers.iter().map(|b| b.logins()).collect();
    assert_eq!(logins, vec![1; SESSIONS], "no burst: the lost login history counts as spent");
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(brokers.iter().all(|b| b.logins() >= 2), "the policy's rate resumes: no lock-out");

    let mut reasons = vec![Vec::new(); SESSIONS];
    while let Ok(event) = events.try_recv() {
        if let WardenEventKind::StoreQuarantined { reason } = event.kind {
            let n = ids(prefix).iter().position(|id| *id == event.session).unwrap();
            reasons[n].push(reason);
        }
    }
    drop(handles);
    reasons
}

#[tokio::test(start_paused = true)]
async fn a_corrupted_database_does_not_stop_trading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    first_process(&path, SledOptions::default(), clock.clone(), "conf").await;
    // sled cannot read a damaged `conf`: the old build failed here, with every session down.
    std::fs::write(path.join("conf"), [0xEE; 64]).unwrap();

    let warden = Warden::builder().store_path(&path).clock(clock.clone()).build().await.expect("build succeeds");
    let reasons = every_session_starts_fresh_with_limited_logins(&warden, "conf").await;
    let aside = dir.path().join("warden.db.unreadable.20260309T033000Z");
    for (n, reasons) in reasons.iter().enumerate() {
        assert_eq!(reasons.len(), 1, "session {n}: one event: {reasons:?}");
        assert!(reasons[0].contains(&aside.display().to_string()), "session {n}: {reasons:?}");
    }
    assert!(aside.join("db").exists(), "the damaged files are kept, named with the time");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn records_lost_in_a_damaged_data_file_do_not_become_a_login_burst() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    first_process(&path, SledOptions::default(), clock.clone(), "data").await;
    // sled opens a `db` file of random bytes without a word and drops every record in it.
    let mut noise = 0x9E37_79B9_7F4A_7C15u64;
    let garbage: Vec<u8> = (0..std::fs::metadata(path.join("db")).unwrap().len())
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            noise as u8
        })
        .collect();
    std::fs::write(path.join("db"), garbage).unwrap();

    let warden = Warden::builder().store_path(&path).clock(clock.clone()).build().await.unwrap();
    let reasons = every_session_starts_fresh_with_limited_logins(&warden, "data").await;
    for (n, reasons) in reasons.iter().enumerate() {
        assert_eq!(reasons.len(), 1, "session {n}: {reasons:?}");
        assert!(reasons[0].contains("although one was saved"), "session {n}: {reasons:?}");
    }
    warden.shutdown(false).await;
}

fn key_error(result: Result<Warden, WardenError>) -> String {
    match result {
        Err(WardenError::Store(StoreError::Key { detail })) => detail,
        other => panic!("expected a key error, got {other:?}"),
    }
}

/// A second process on the same store resumes every session without a login (its grant survived).
async fn resumes_without_a_login(path: &Path, options: SledOptions, clock: Clock, prefix: &str) {
    let warden = Warden::builder().store_path_with(path, options).clock(clock.clone()).build().await.unwrap();
    let mut events = warden.events();
    for id in ids(prefix) {
        let broker = granting();
        let session = open(&warden, &id, &broker).await;
        assert_eq!(session.token().await.unwrap().generation, Generation(1), "{id}: the stored grant");
        assert_eq!(broker.logins(), 0, "{id}: no login");
    }
    let quarantined = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e.kind, WardenEventKind::StoreQuarantined { .. }))
        .count();
    assert_eq!(quarantined, 0);
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_key_file_stops_the_start_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    first_process(&path, SledOptions::default(), clock.clone(), "lost").await;
    let key = key_file(&path);
    let backup = dir.path().join("backup.key");
    std::fs::rename(&key, &backup).unwrap();

    let detail = key_error(Warden::builder().store_path(&path).clock(clock.clone()).build().await);
    assert!(detail.contains(&format!("key file {} does not exist", key.display())), "{detail}");
    assert!(detail.contains("from a backup") && detail.contains("start_over_if_key_lost"), "{detail}");
    assert!(!key.exists(), "no new key replaced the lost one");

    std::fs::rename(&backup, &key).unwrap();
    resumes_without_a_login(&path, SledOptions::default(), clock.clone(), "lost").await;
}

#[tokio::test(start_paused = true)]
async fn a_changed_key_stops_the_start_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    first_process(&path, SledOptions::default(), clock.clone(), "changed").await;
    let key = key_file(&path);
    let original = std::fs::read(&key).unwrap();
    std::fs::write(&key, StoreKey::from_bytes([0x42; 32]).to_base64().as_bytes()).unwrap();

    let detail = key_error(Warden::builder().store_path(&path).clock(clock.clone()).build().await);
    assert!(detail.contains(&format!("sealed with another key than key file {}", key.display())), "{detail}");
    let with_bytes = SledOptions::default().key(KeySource::Bytes([0x42; 32]));
    let detail = key_error(Warden::builder().store_path_with(&path, with_bytes).clock(clock.clone()).build().await);
    assert!(detail.contains("another key than the key given in the store options"), "{detail}");

    std::fs::write(&key, original).unwrap();
    resumes_without_a_login(&path, SledOptions::default(), clock.clone(), "changed").await;
}

#[tokio::test(start_paused = true)]
async fn starting_over_keeps_the_old_records_and_limits_logins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    first_process(&path, SledOptions::default(), clock.clone(), "over").await;
    std::fs::remove_file(key_file(&path)).unwrap();

    // One quarantined log entry kept at most: log entries must not push the snapshots out.
    let options = SledOptions::default().start_over_if_key_lost(true).quarantine_log_retention(1);
    let warden = Warden::builder().store_path_with(&path, options).clock(clock.clone()).build().await.unwrap();
    let reasons = every_session_starts_fresh_with_limited_logins(&warden, "over").await;
    for (n, reasons) in reasons.iter().enumerate() {
        assert_eq!(reasons.len(), 1, "session {n}: {reasons:?}");
        assert!(reasons[0].contains("started over"), "session {n}: {reasons:?}");
    }
    warden.shutdown(false).await;
    drop(warden);

    let store = SledStore::open(&path, SledOptions::default()).unwrap();
    let entries = store.quarantined().unwrap();
    let mut kept: Vec<String> = entries.iter().filter(|e| e.tree == "snapshots").map(|e| e.session.clone()).collect();
    kept.sort();
    let expected: Vec<String> = ids("over").iter().map(ToString::to_string).collect();
    assert_eq!(kept, expected, "every old snapshot is kept in the quarantine");
    assert_eq!(entries.iter().filter(|e| e.tree == "log").count(), 1, "log entries up to their own cap");
    for id in ids("over") {
        assert!(matches!(store.load(&id).unwrap(), LoadOutcome::Found(_)), "{id}: saved again under the new key");
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_rotation_keeps_every_grant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let clock = clock_at(MONDAY_0900_IST);
    first_process(&path, SledOptions::default(), clock.clone(), "rotate").await;
    let old = dir.path().join("old.key");
    std::fs::rename(key_file(&path), &old).unwrap();

    // The documented rotation: move the key file aside, start once with it as the previous key.
    let rotate = SledOptions::default().previous_key(KeySource::File(old.clone()));
    resumes_without_a_login(&path, rotate, clock.clone(), "rotate").await;
    assert!(key_file(&path).exists(), "a new key file");
    resumes_without_a_login(&path, SledOptions::default(), clock.clone(), "rotate").await;

    let old_only = SledOptions::default().key(KeySource::File(old));
    let detail = key_error(Warden::builder().store_path_with(&path, old_only).clock(clock.clone()).build().await);
    assert!(detail.contains("sealed with another key"), "the old key no longer opens the store: {detail}");
}
