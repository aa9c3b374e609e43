//! Lost, changed and rotated keys: a store whose records need a key that is not there refuses to open
//! (naming the key source and the ways on) and touches nothing, unless told to start over (every record
//! kept in the quarantine) or given the previous key (every record re-sealed under the new key, in one
//! transaction that a kill -9 cannot split: the store then opens with exactly one of the two keys).
//!
//! The kill test's child is this test binary run again with `WARDEN_ROTATE_CHILD` set.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use warden_adapters::{KeySource, RecordAddress, RecordCodec, SledOptions, SledStore, StoreKey};
use warden_engine::{Durability, LoadOutcome, Store, StoreError};

const CHILD_ENV: &str = "WARDEN_ROTATE_CHILD";

fn file_key(file: &Path) -> SledOptions {
    SledOptions::default().key(KeySource::File(file.to_path_buf()))
}

/// A store sealed with the key in `key_file` (created), holding `sessions` snapshots and `entries` log
/// entries each, closed.
fn populated(path: &Path, key_file: &Path, sessions: usize, entries: i64) {
    let store = SledStore::open(path, file_key(key_file)).expect("open");
    for n in 0..sessions {
        let session = id(&format!("s{n}"));
        store.save(&snapshot_with_grant(&session, n as u64 + 1), Durability::Buffered).expect("save");
        for e in 0..entries {
            store.append_log(&session, &state_event(e)).expect("append");
        }
    }
    store.flush().expect("flush");
}

/// Every record of every tree of the (closed) database.
fn dump(path: &Path) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    with_raw_sled(path, |db| {
        let mut out = Vec::new();
        for name in db.tree_names() {
            for item in db.open_tree(&name).expect("tree").iter() {
                let (key, value) = item.expect("record");
                out.push((name.to_vec(), key.to_vec(), value.to_vec()));
            }
        }
        out
    })
}

fn key_error(result: Result<SledStore, StoreError>) -> String {
    match result {
        Err(StoreError::Key { detail }) => detail,
        other => panic!("expected a key error, got {other:?}"),
    }
}

/// Checks that every session of [`populated`] is found intact and its log complete.
fn all_there(store: &SledStore, sessions: usize, entries: usize) {
    for n in 0..sessions {
        let session = id(&format!("s{n}"));
        match store.load(&session).expect("load") {
            LoadOutcome::Found(snapshot) => assert_eq!(*snapshot, snapshot_with_grant(&session, n as u64 + 1)),
            other => panic!("s{n}: expected the snapshot, got {other:?}"),
        }
        assert_eq!(store.read_log(&session, usize::MAX).expect("log").len(), entries, "s{n}");
    }
    assert!(store.quarantined().expect("quarantine").is_empty(), "nothing quarantined");
}

#[test]
fn a_deleted_key_file_with_records_refuses_to_start_and_changes_nothing() {
    let (dir, path) = temp_db();
    let key_file = dir.path().join("store.key");
    populated(&path, &key_file, 3, 2);
    let key_text = fs::read(&key_file).expect("key");
    fs::remove_file(&key_file).expect("delete the key");
    let before = dump(&path);

    let detail = key_error(SledStore::open(&path, file_key(&key_file)));
    assert!(detail.contains(&format!("key file {} does not exist", key_file.display())), "{detail}");
    assert!(detail.contains("holds records") && detail.contains("from a backup"), "{detail}");
    assert!(detail.contains("start_over_if_key_lost(true)"), "{detail}");
    assert!(!key_file.exists(), "no new key was created");
    assert_eq!(dump(&path), before, "no record was touched");

    // The key comes back from the backup: everything is there.
    fs::write(&key_file, key_text).expect("restore the key");
    let mut permissions = fs::metadata(&key_file).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    fs::set_permissions(&key_file, permissions).expect("chmod");
    let store = SledStore::open(&path, file_key(&key_file)).expect("opens with the restored key");
    all_there(&store, 3, 2);
}

#[test]
fn a_store_without_records_just_gets_a_new_key() {
    let (dir, path) = temp_db();
    let key_file = dir.path().join("store.key");
    drop(SledStore::open(&path, file_key(&key_file)).expect("open"));
    fs::remove_file(&key_file).expect("delete the key");
    let store = SledStore::open(&path, file_key(&key_file)).expect("an empty store takes a new key");
    assert!(key_file.exists());
    store.save(&bare_snapshot(&id("a")), Durability::Flushed).expect("save");
    drop(store);
    assert!(SledStore::open(&path, file_key(&key_file)).is_ok(), "and keeps it");
}

#[test]
fn a_changed_key_file_is_refused_naming_the_file() {
    let (dir, path) = temp_db();
    let key_file = dir.path().join("store.key");
    populated(&path, &key_file, 2, 1);
    fs::remove_file(&key_file).expect("delete");
    fs::write(&key_file, StoreKey::from_bytes(KEY_B).to_base64().as_bytes()).expect("another key");
    let mut permissions = fs::metadata(&key_file).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    fs::set_permissions(&key_file, permissions).expect("chmod");
    let detail = key_error(SledStore::open(&path, file_key(&key_file)));
    assert!(detail.contains(&format!("sealed with another key than key file {}", key_file.display())), "{detail}");
    assert!(detail.contains("neither its key check nor any of the 4 records tried opens"), "{detail}");
}

/// Removes the key check, as a store written by an older build has none.
fn strip_key_check(path: &Path) {
    with_raw_sled(path, |db| db.open_tree("meta").expect("meta").remove("key_check").expect("remove"));
}

#[test]
fn an_older_store_without_a_key_check_tells_a_changed_key_from_damage() {
    let (_dir, path) = temp_db();
    {
        let store = open(&path, KEY_A);
        for n in 0..4 {
            store.save(&snapshot_with_grant(&id(&format!("s{n}")), 1), Durability::Flushed).expect("save");
        }
    }
    strip_key_check(&path);
    let detail = key_error(SledStore::open(&path, options(KEY_B)));
    assert!(detail.contains("none of the 4 records tried opens"), "{detail}");

    // One damaged record among good ones is damage, not a key change.
    with_raw_sled(&path, |db| db.open_tree("snapshots").expect("tree").insert("s0", vec![1u8; 60]).expect("damage"));
    let store = open(&path, KEY_A);
    assert!(matches!(store.load(&id("s0")).expect("load"), LoadOutcome::Quarantined { .. }));
    assert!(matches!(store.load(&id("s1")).expect("load"), LoadOutcome::Found(_)));
    drop(store);
    // The key check was written on that open.
    let detail = key_error(SledStore::open(&path, options(KEY_B)));
    assert!(detail.contains("neither its key check nor any"), "{detail}");
}

#[test]
fn a_damaged_key_check_is_rewritten_when_the_records_open() {
    let (_dir, path) = temp_db();
    {
        let store = open(&path, KEY_A);
        store.save(&snapshot_with_grant(&id("a"), 1), Durability::Flushed).expect("save");
    }
    with_raw_sled(&path, |db| db.open_tree("meta").expect("meta").insert("key_check", vec![1u8; 80]).expect("damage"));
    let store = open(&path, KEY_A);
    assert!(matches!(store.load(&id("a")).expect("load"), LoadOutcome::Found(_)));
    drop(store);
    let codec = RecordCodec::new(&StoreKey::from_bytes(KEY_A));
    let check = with_raw_sled(&path, |db| db.open_tree("meta").expect("meta").get("key_check").expect("get"));
    assert!(codec.opens_key_check(&check.expect("a key check")), "rewritten with the key");
}

#[test]
fn starting_over_keeps_every_record_in_the_quarantine() {
    let (dir, path) = temp_db();
    let key_file = dir.path().join("store.key");
    populated(&path, &key_file, 4, 30);
    let old_key = StoreKey::from_base64(&fs::read_to_string(&key_file).expect("key"), "old key").expect("key");
    fs::remove_file(&key_file).expect("delete the key");

    // Log entries have their own, small cap here: they must not push out the snapshots.
    let start_over =
        || file_key(&key_file).start_over_if_key_lost(true).quarantine_retention(4).quarantine_log_retention(10);
    let store = SledStore::open(&path, start_over()).expect("starts over");
    assert!(key_file.exists(), "a new key file");
    for n in 0..4 {
        match store.load(&id(&format!("s{n}"))).expect("load") {
            LoadOutcome::Quarantined { reason, login_attempts: None } => {
                assert!(reason.contains("started over") && reason.contains("kept in the quarantine"), "{reason}")
            }
            other => panic!("s{n}: expected quarantined, got {other:?}"),
        }
        assert!(store.read_log(&id(&format!("s{n}")), usize::MAX).expect("log").is_empty());
    }
    let entries = store.quarantined().expect("quarantine");
    let snapshots: Vec<_> = entries.iter().filter(|e| e.tree == "snapshots").collect();
    assert_eq!(snapshots.len(), 4, "every snapshot is kept");
    assert_eq!(entries.iter().filter(|e| e.tree == "log").count(), 10, "log entries up to their cap");
    // The kept records still open with the old key, should it turn up.
    let old = RecordCodec::new(&old_key);
    for entry in snapshots {
        let session = id(&entry.session);
        assert!(old.open_snapshot(&session, &entry.record).is_ok(), "{entry:?}");
    }
    store.save(&snapshot_with_grant(&id("s0"), 9), Durability::Flushed).expect("save under the new key");
    drop(store);

    // The next open needs no start over: the store is sealed with the new key now.
    let store = SledStore::open(&path, file_key(&key_file)).expect("reopen");
    assert!(matches!(store.load(&id("s0")).expect("load"), LoadOutcome::Found(_)));
    assert!(matches!(store.load(&id("s1")).expect("load"), LoadOutcome::Quarantined { .. }), "until it saves");
}

#[test]
fn starting_over_also_covers_a_changed_key() {
    let (_dir, path) = temp_db();
    {
        let store = open(&path, KEY_A);
        store.save(&snapshot_with_grant(&id("a"), 1), Durability::Flushed).expect("save");
    }
    let store = SledStore::open(&path, options(KEY_B).start_over_if_key_lost(true)).expect("starts over");
    assert!(matches!(store.load(&id("a")).expect("load"), LoadOutcome::Quarantined { .. }));
    assert_eq!(store.quarantined().expect("quarantine").len(), 1);
}

#[test]
fn rotation_re_seals_every_record_under_the_new_key() {
    let (dir, path) = temp_db();
    let old_file = dir.path().join("old.key");
    let new_file = dir.path().join("new.key");
    populated(&path, &old_file, 3, 5);
    // A record quarantined under the old key comes along too.
    let codec = RecordCodec::new(&StoreKey::from_base64(&fs::read_to_string(&old_file).expect("key"), "k").expect("k"));
    let drifted = codec.seal_envelope(RecordAddress::Snapshot(&id("q")), 1, &"not a snapshot").expect("seal");
    with_raw_sled(&path, |db| db.open_tree("snapshots").expect("tree").insert("q", drifted).expect("insert"));
    {
        let store = SledStore::open(&path, file_key(&old_file)).expect("open");
        assert!(matches!(store.load(&id("q")).expect("load"), LoadOutcome::Quarantined { .. }));
    }

    let rotate = || file_key(&new_file).previous_key(KeySource::File(old_file.clone()));
    let store = SledStore::open(&path, rotate()).expect("rotates");
    assert!(new_file.exists(), "the new key file was created");
    for n in 0..3 {
        let session = id(&format!("s{n}"));
        assert!(matches!(store.load(&session).expect("load"), LoadOutcome::Found(_)), "s{n}");
        assert_eq!(store.read_log(&session, usize::MAX).expect("log").len(), 5);
    }
    let new_key = StoreKey::from_base64(&fs::read_to_string(&new_file).expect("key"), "new").expect("key");
    let quarantined = store.quarantined().expect("quarantine");
    assert_eq!(quarantined.len(), 1);
    let new = RecordCodec::new(&new_key);
    assert!(new.authenticates(RecordAddress::Snapshot(&id("q")), &quarantined[0].record), "re-sealed too");
    drop(store);

    let detail = key_error(SledStore::open(&path, file_key(&old_file)));
    assert!(detail.contains("sealed with another key than key file"), "the old key alone no longer opens: {detail}");
    drop(SledStore::open(&path, rotate()).expect("a second rotation run is a no-op"));
    let store = SledStore::open(&path, file_key(&new_file)).expect("the new key alone opens");
    assert!(matches!(store.load(&id("s0")).expect("load"), LoadOutcome::Found(_)));
    assert_eq!(fs::metadata(&new_file).expect("new key").len(), 45, "the new key file is whole");
    drop(store);

    // Left in the options after its file is gone, the previous key is harmless: it is not needed.
    let missing = dir.path().join("gone.key");
    drop(SledStore::open(&path, file_key(&new_file).previous_key(KeySource::File(missing.clone()))).expect("opens"));
    // Needed and missing, it is an error that names it.
    let other = dir.path().join("other.key");
    let detail = key_error(SledStore::open(&path, file_key(&other).previous_key(KeySource::File(missing))));
    assert!(detail.contains("previous key's file") && detail.contains("gone.key"), "{detail}");
    assert!(!other.exists(), "no key file is created for a refused rotation");
}

#[test]
fn rotation_with_a_previous_key_that_does_not_open_is_refused() {
    let (_dir, path) = temp_db();
    {
        let store = open(&path, KEY_A);
        store.save(&snapshot_with_grant(&id("a"), 1), Durability::Flushed).expect("save");
    }
    let detail = key_error(SledStore::open(&path, options([3; 32]).previous_key(KeySource::Bytes(KEY_B))));
    assert!(detail.contains("the previous key given") && detail.contains("does not open it either"), "{detail}");
}

/// Child: rotates the store at `WARDEN_ROTATE_CHILD` from `old.key` to `new.key` (beside it), printing
/// when it starts and when it is done.
#[test]
fn child_rotator() {
    let Some(path) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else { return };
    let dir = path.parent().expect("parent").to_path_buf();
    println!("ROTATING");
    let options = file_key(&dir.join("new.key")).previous_key(KeySource::File(dir.join("old.key")));
    let store = SledStore::open(&path, options).expect("rotation");
    println!("ROTATED");
    drop(store);
    println!("CLOSED");
}

/// Which key opens a store after its rotation was killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opens {
    Old,
    New,
}

/// Copies the template store, starts a rotation in a child, kills it `delay_ms` after it began (`None`:
/// once it reports done), and checks that exactly one key opens the store, with every record intact.
fn rotate_and_kill(template_dir: &Path, delay_ms: Option<u64>, sessions: usize, entries: usize) -> Opens {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    for file in files_under(template_dir) {
        let to = dir.path().join(file.strip_prefix(template_dir).expect("inside"));
        fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        fs::copy(&file, &to).expect("copy");
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_rotator", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("ROTATING") {
            break;
        }
    }
    let mut finished = false;
    match delay_ms {
        Some(delay_ms) => std::thread::sleep(Duration::from_millis(delay_ms)),
        None => finished = lines.by_ref().map_while(Result::ok).any(|l| l.contains("ROTATED")),
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    finished |= lines.map_while(Result::ok).any(|l| l.contains("ROTATED"));

    let old = SledStore::open(&path, file_key(&dir.path().join("old.key")));
    let old_opens = old.is_ok();
    if let Ok(store) = old {
        all_there(&store, sessions, entries);
    }
    let new_file = dir.path().join("new.key");
    let new_opens = new_file.exists() && {
        match SledStore::open(&path, file_key(&new_file)) {
            Ok(store) => {
                all_there(&store, sessions, entries);
                true
            }
            Err(StoreError::Key { .. }) => false,
            Err(other) => panic!("delay {delay_ms:?} ms: {other}"),
        }
    };
    assert!(old_opens != new_opens, "delay {delay_ms:?} ms: exactly one key opens (old {old_opens}, new {new_opens})");
    assert!(!finished || new_opens, "delay {delay_ms:?} ms: a finished rotation opens with the new key");
    if new_opens { Opens::New } else { Opens::Old }
}

#[test]
fn a_rotation_killed_at_any_point_leaves_a_store_that_one_key_opens() {
    const SESSIONS: usize = 20;
    const ENTRIES: i64 = 100;
    let (template_dir, template) = temp_db();
    populated(&template, &template_dir.path().join("old.key"), SESSIONS, ENTRIES);
    let run = |delay_ms| rotate_and_kill(template_dir.path(), delay_ms, SESSIONS, ENTRIES as usize);
    assert_eq!(run(Some(0)), Opens::Old, "killed at once: still the old key");
    assert_eq!(run(None), Opens::New, "killed after it reported done: the new key");
    // Bisect the kill time towards the commit (a second or so in a debug build), so that the last kills
    // land within a few milliseconds of it, where a torn transaction would show.
    let (mut old_at, mut new_at) = (0u64, 1_000u64);
    while run(Some(new_at)) == Opens::Old {
        old_at = new_at;
        new_at *= 2;
        assert!(new_at <= 64_000, "the rotation finishes within a minute");
    }
    let mut kills = vec![(old_at, Opens::Old), (new_at, Opens::New)];
    for _ in 0..6 {
        let mid = (old_at + new_at) / 2;
        let opens = run(Some(mid));
        kills.push((mid, opens));
        match opens {
            Opens::Old => old_at = mid,
            Opens::New => new_at = mid,
        }
    }
    println!("kills (ms after the start, key that opened): {kills:?}");
}
