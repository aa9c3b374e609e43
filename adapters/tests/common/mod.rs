//! Helpers shared by the store tests: sample snapshots and events, and a store in a temporary directory.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_adapters::{KeySource, SledOptions, SledStore};
use warden_engine::snapshot::StoredGrant;
use warden_engine::{
    AuthKind, EventKind, Generation, Grant, Reason, SNAPSHOT_FORMAT_VERSION, SessionEvent, SessionId, Snapshot,
    StateKind, UnixMs,
};

/// The access token in [`snapshot_with_grant`]; tests search files for it.
pub const ACCESS_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.ACCESS-TOKEN-must-never-hit-disk.s1gn4ture";
/// The refresh token in [`snapshot_with_grant`].
pub const REFRESH_TOKEN: &str = "REFRESH-TOKEN-also-secret-7f3a9c";
/// An extra secret in [`snapshot_with_grant`].
pub const FEED_TOKEN: &str = "FEED-TOKEN-extra-secret-0b1d";

pub const KEY_A: [u8; 32] = [0xA5; 32];
pub const KEY_B: [u8; 32] = [0x5A; 32];

pub mod pg;

pub fn id(name: &str) -> SessionId {
    SessionId::new(name).expect("valid session id")
}

pub fn t(ms: i64) -> UnixMs {
    UnixMs::from_millis(ms)
}

/// A `Valid` snapshot with a grant that has a refresh token and an extra.
pub fn snapshot_with_grant(session: &SessionId, generation: u64) -> Snapshot {
    let issued = t(1_700_000_000_000);
    let grant = Grant::new(ACCESS_TOKEN, issued)
        .expires_in(Duration::from_secs(1_200))
        .with_refresh(REFRESH_TOKEN, Some(Duration::from_secs(3_600)))
        .with_extra("feed_token", FEED_TOKEN)
        .with_extra("sid", "sid-42");
    Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        session_id: session.clone(),
        saved_at: issued,
        state: StateKind::Valid,
        invalid_reason: None,
        generation: Generation(generation),
        grant: Some(StoredGrant {
            grant,
            generation: Generation(generation),
            logged_in_at: issued,
            access_dead: false,
            refresh_dead: false,
        }),
        login_attempts: vec![t(1_699_999_990_000), issued],
        consecutive_failures: 0,
        consecutive_rejections: 0,
        retry_not_before: UnixMs::EPOCH,
        take_over: false,
        force_login: false,
        last_activity: issued,
        credentials_fingerprint: None,
        operator_anchor: None,
    }
}

/// A snapshot without a grant.
pub fn bare_snapshot(session: &SessionId) -> Snapshot {
    Snapshot { grant: None, state: StateKind::Expired, generation: Generation::NONE, ..snapshot_with_grant(session, 0) }
}

/// Event number `n`: a state change at time `n`.
pub fn state_event(n: i64) -> SessionEvent {
    SessionEvent {
        at: t(n),
        kind: EventKind::StateChanged {
            from: StateKind::Valid,
            to: StateKind::ExpiringSoon,
            reason: Reason::RefreshDue,
        },
    }
}

/// A grant-installed event with a lifetime.
pub fn grant_event(generation: u64, lifetime_ms: u64) -> SessionEvent {
    let issued = t(1_700_000_000_000 + generation as i64);
    SessionEvent {
        at: issued,
        kind: EventKind::GrantInstalled {
            generation: Generation(generation),
            kind: if generation == 1 { AuthKind::Login } else { AuthKind::Refresh },
            issued_at: issued,
            expires_at: Some(issued.saturating_add(Duration::from_millis(lifetime_ms))),
            lifetime_ms: Some(lifetime_ms),
        },
    }
}

pub fn options(key: [u8; 32]) -> SledOptions {
    SledOptions::default().key(KeySource::Bytes(key))
}

pub fn open(path: &Path, key: [u8; 32]) -> SledStore {
    SledStore::open(path, options(key)).expect("store opens")
}

/// A temporary directory and the database path inside it.
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    (dir, path)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs `f` on the (closed) database opened with plain sled, as damage or a foreign writer would, then
/// waits (at most 2 s) until sled has let go of its lock, so the next open does not find it held
/// (sled's thread pool can hold the file for a moment after the `Db` is dropped).
pub fn with_raw_sled<R>(path: &Path, f: impl FnOnce(&sled::Db) -> R) -> R {
    let db = (0..400)
        .find_map(|_| match sled::open(path) {
            Ok(db) => Some(db),
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                None
            }
            Err(e) => panic!("raw open: {e}"),
        })
        .expect("raw open: still locked after 2 s");
    let result = f(&db);
    db.flush().expect("raw flush");
    drop(db);
    let file = std::fs::File::open(path.join("db")).expect("sled's db file");
    for _ in 0..400 {
        match file.try_lock() {
            Ok(()) => return result,
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(std::fs::TryLockError::Error(e)) => panic!("checking sled's lock: {e}"),
        }
    }
    panic!("sled still holds its lock 2 s after the raw database was dropped")
}

pub mod mock_http;
