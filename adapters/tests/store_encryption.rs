//! Encryption at rest and recovery: no secret reaches the sled files; records that do not decrypt or
//! decode (damaged bytes, unknown versions, moved between sessions) are quarantined and reported, never
//! a panic; a changed key is refused at open, not mistaken for damage.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use warden_adapters::store::key::default_key_file;
use warden_adapters::{KeySource, RecordAddress, RecordCodec, SledOptions, SledStore, StoreKey};
use warden_engine::{Durability, LoadOutcome, SessionId, Snapshot, Store, StoreError};

fn reason(outcome: LoadOutcome) -> String {
    match outcome {
        LoadOutcome::Quarantined { reason, .. } => reason,
        other => panic!("expected a quarantined record, got {other:?}"),
    }
}

/// Opens the (closed) database with plain sled, waiting a moment if an earlier plain `sled::Db` still
/// holds its lock (sled's thread pool can, for a moment after the drop).
fn raw_open(path: &Path) -> sled::Db {
    for _ in 0..400 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("raw open: {e}"),
        }
    }
    panic!("raw open: still locked after 2 s")
}

/// Writes `value` under `key` in `tree` of the (closed) database, as damage or a foreign writer would.
fn write_raw(path: &Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = raw_open(path);
    db.open_tree(tree).expect("tree").insert(key, value).expect("raw insert");
    db.flush().expect("raw flush");
}

/// Every record of every tree of the (closed) database, by tree.
fn dump(path: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let db = raw_open(path);
    let mut out = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("tree");
        for item in tree.iter() {
            let (key, value) = item.expect("record");
            out.push((String::from_utf8_lossy(&name).into_owned(), key.to_vec(), value.to_vec()));
        }
    }
    out
}

fn read_raw(path: &Path, tree: &str, key: &[u8]) -> Option<Vec<u8>> {
    let db = raw_open(path);
    db.open_tree(tree).expect("tree").get(key).expect("raw get").map(|v| v.to_vec())
}

/// Saves a snapshot of `session` and closes the store.
fn saved(path: &Path, session: &SessionId) {
    let store = open(path, KEY_A);
    store.save(&snapshot_with_grant(session, 1), Durability::Flushed).expect("save");
}

#[test]
fn no_secret_reaches_the_sled_files() {
    let (dir, path) = temp_db();
    let a = id("saxo-main");
    {
        let store = open(&path, KEY_A);
        for generation in 0..20 {
            store.save(&snapshot_with_grant(&a, generation), Durability::Flushed).expect("save");
        }
        store.append_log(&a, &state_event(1)).expect("append");
        store.flush().expect("flush");
    }
    let files = files_under(dir.path());
    assert!(files.len() >= 2, "sled wrote files: {files:?}");
    let mut bytes_seen = 0;
    for file in &files {
        let bytes = fs::read(file).expect("read file");
        bytes_seen += bytes.len();
        for secret in [ACCESS_TOKEN, REFRESH_TOKEN, FEED_TOKEN, "ACCESS-TOKEN", "REFRESH-TOKEN"] {
            assert!(!contains(&bytes, secret.as_bytes()), "{secret} found in {}", file.display());
        }
    }
    assert!(bytes_seen > 1_000, "the files hold the records ({bytes_seen} bytes)");
    // The same records are readable with the key.
    let store = open(&path, KEY_A);
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Found(_)));
}

#[test]
fn a_changed_key_is_refused_and_nothing_is_touched() {
    let (_dir, path) = temp_db();
    let a = id("a");
    let b = id("b");
    {
        let store = open(&path, KEY_A);
        store.save(&snapshot_with_grant(&a, 1), Durability::Flushed).expect("save");
        store.save(&snapshot_with_grant(&b, 1), Durability::Flushed).expect("save");
        store.append_log(&a, &state_event(1)).expect("append");
        store.append_log(&a, &state_event(2)).expect("append");
    }
    let before = dump(&path);
    match SledStore::open(&path, options(KEY_B)) {
        Err(StoreError::Key { detail }) => {
            assert!(detail.contains("sealed with another key than the key given in the store options"), "{detail}");
            assert!(detail.contains(&path.display().to_string()), "{detail}");
            assert!(detail.contains("previous_key") && detail.contains("start_over_if_key_lost"), "{detail}");
        }
        other => panic!("expected a key error, got {other:?}"),
    }
    assert_eq!(dump(&path), before, "a refused open changes no record");
    // Nothing was quarantined: the right key still reads everything.
    let store = open(&path, KEY_A);
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Found(_)));
    assert!(matches!(store.load(&b).expect("load"), LoadOutcome::Found(_)));
    assert_eq!(store.read_log(&a, 10).expect("read").len(), 2);
    assert!(store.quarantined().expect("quarantine").is_empty());
}

/// A way to damage a record's bytes.
type Damage = fn(Vec<u8>) -> Vec<u8>;

#[test]
fn damaged_records_are_quarantined_with_a_reason() {
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "bit flip",
            (|mut v| {
                let last = v.len() - 1;
                v[last / 2] ^= 0x01;
                v
            }),
            "does not decrypt",
        ),
        ("truncated", (|v| v[..v.len() / 2].to_vec()), "does not decrypt"),
        ("torn to a few bytes", (|v| v[..7].to_vec()), "shorter than the 41-byte minimum"),
        ("empty", (|_| Vec::new()), "record is 0 bytes"),
        ("zeroed", (|v| vec![0; v.len()]), "layout byte 0x00"),
        ("plain text", (|_| b"hello, this is not a warden record at all!!".to_vec()), "layout byte 0x68"),
    ];
    for (name, damage, expected) in cases {
        let (_dir, path) = temp_db();
        let a = id("a");
        saved(&path, &a);
        let good = read_raw(&path, "snapshots", b"a").expect("record present");
        write_raw(&path, "snapshots", b"a", &damage(good));
        let store = open(&path, KEY_A);
        let why = reason(store.load(&a).expect("load"));
        assert!(why.contains(expected), "{name}: {why}");
        assert_eq!(store.quarantined().expect("quarantine").len(), 1, "{name}");
        // Until the session saves again, it stays a session whose record was lost (logins limited).
        let again = reason(store.load(&a).expect("load"));
        assert!(again.contains("no readable snapshot of session a although one was saved"), "{name}: {again}");
        assert_eq!(store.quarantined().expect("quarantine").len(), 1, "{name}: quarantined once");
        store.save(&snapshot_with_grant(&a, 2), Durability::Flushed).expect("save");
        assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Found(_)), "{name}");
    }
}

#[test]
fn a_record_moved_to_another_session_does_not_open() {
    let (_dir, path) = temp_db();
    let a = id("a");
    saved(&path, &a);
    let record = read_raw(&path, "snapshots", b"a").expect("record");
    write_raw(&path, "snapshots", b"b", &record);
    let store = open(&path, KEY_A);
    let why = reason(store.load(&id("b")).expect("load"));
    assert!(why.contains("moved from another session"), "{why}");
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Found(_)));
}

#[test]
fn unknown_format_versions_are_named() {
    let (_dir, path) = temp_db();
    let a = id("a");
    let b = id("b");
    {
        // A newer build's snapshot format.
        let store = open(&path, KEY_A);
        let future = Snapshot { format_version: 99, ..snapshot_with_grant(&a, 1) };
        store.save(&future, Durability::Flushed).expect("save");
        let why = reason(store.load(&a).expect("load"));
        assert!(why.contains("snapshot format version 99") && why.contains("reads version 1"), "{why}");
    }
    // A newer build's envelope format, sealed with the right key.
    let codec = RecordCodec::new(&StoreKey::from_bytes(KEY_A));
    let record = codec.seal_envelope(RecordAddress::Snapshot(&b), 7, &snapshot_with_grant(&b, 1)).expect("seal");
    write_raw(&path, "snapshots", b"b", &record);
    // A body that is not a snapshot at all.
    let c = id("c");
    let record = codec.seal_envelope(RecordAddress::Snapshot(&c), 1, &vec!["a string", ACCESS_TOKEN]).expect("seal");
    write_raw(&path, "snapshots", b"c", &record);
    // A body whose fields have the wrong types, with a secret where a number belongs.
    let d = id("d");
    #[derive(serde::Serialize)]
    struct Drifted<'a> {
        format_version: u32,
        session_id: &'a str,
        saved_at: &'a str,
    }
    let drifted = Drifted { format_version: 1, session_id: "d", saved_at: ACCESS_TOKEN };
    let record = codec.seal_envelope(RecordAddress::Snapshot(&d), 1, &drifted).expect("seal");
    write_raw(&path, "snapshots", b"d", &record);

    let store = open(&path, KEY_A);
    let why = reason(store.load(&b).expect("load"));
    assert!(why.contains("record format version 7"), "{why}");
    for session in [c, d] {
        let why = reason(store.load(&session).expect("load"));
        assert!(why.contains("does not decode as a snapshot"), "{why}");
        assert!(!why.contains(ACCESS_TOKEN) && !why.contains("ACCESS-TOKEN"), "a reason never quotes values: {why}");
    }
}

#[test]
fn damaged_log_entries_are_skipped_and_quarantined() {
    let (_dir, path) = temp_db();
    let a = id("a");
    {
        let store = open(&path, KEY_A);
        for n in 0..4 {
            store.append_log(&a, &state_event(n)).expect("append");
        }
    }
    let mut key = b"a\0".to_vec();
    key.extend_from_slice(&2u64.to_be_bytes());
    write_raw(&path, "log", &key, b"garbage");
    let mut short_key = b"a\0".to_vec();
    short_key.extend_from_slice(&[1, 2, 3]);
    write_raw(&path, "log", &short_key, b"whatever");

    let store = open(&path, KEY_A);
    let times: Vec<i64> = store.read_log(&a, 10).expect("read").iter().map(|e| e.at.as_millis()).collect();
    assert_eq!(times, vec![0, 1, 3]);
    let reasons: Vec<String> = store.quarantined().expect("quarantine").into_iter().map(|e| e.reason).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not a session id and a sequence number")), "{reasons:?}");
    store.append_log(&a, &state_event(4)).expect("the log goes on");
    assert_eq!(store.read_log(&a, 1).expect("read"), vec![state_event(4)]);
}

#[test]
fn the_quarantine_is_bounded_and_log_entries_never_push_out_snapshots() {
    let (_dir, path) = temp_db();
    let a = id("a");
    {
        let store = open(&path, KEY_A);
        for n in 0..5 {
            store.save(&snapshot_with_grant(&id(&format!("s{n}")), 1), Durability::Buffered).expect("save");
        }
        for n in 0..20 {
            store.append_log(&a, &state_event(n)).expect("append");
        }
    }
    {
        let db = raw_open(&path);
        let snapshots = db.open_tree("snapshots").expect("tree");
        for n in 0..5 {
            snapshots
                .insert(format!("s{n}").as_bytes(), b"damaged beyond repair, forty-one bytes or more".as_slice())
                .expect("insert");
        }
        let log = db.open_tree("log").expect("tree");
        for seq in 0..20u64 {
            let mut key = b"a\0".to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            log.insert(key, b"garbage".as_slice()).expect("insert");
        }
        db.flush().expect("flush");
    }
    let store =
        SledStore::open(&path, options(KEY_A).quarantine_retention(3).quarantine_log_retention(5)).expect("open");
    for n in 0..5 {
        reason(store.load(&id(&format!("s{n}"))).expect("load"));
    }
    // Twenty damaged log entries are quarantined after the snapshots: with one shared cap they would
    // push every snapshot out.
    assert!(store.read_log(&a, usize::MAX).expect("read").is_empty());
    let entries = store.quarantined().expect("quarantine");
    let sessions: Vec<&str> = entries.iter().filter(|e| e.tree == "snapshots").map(|e| e.session.as_str()).collect();
    assert_eq!(sessions, vec!["s2", "s3", "s4"], "the newest snapshot entries are kept");
    assert_eq!(entries.iter().filter(|e| e.tree == "log").count(), 5, "log entries have their own cap");
    drop(store);
    let store = SledStore::open(&path, options(KEY_A).quarantine_retention(2)).expect("reopen");
    let snapshots = store.quarantined().expect("quarantine").into_iter().filter(|e| e.tree == "snapshots").count();
    assert_eq!(snapshots, 2, "a lower cap applies at open");
}

#[test]
fn log_entries_older_builds_quarantined_with_the_snapshots_get_their_own_cap() {
    let (_dir, path) = temp_db();
    drop(open(&path, KEY_A));
    {
        // What an older build left: log entries in `quarantine`, without the `quarantine_sorted` mark.
        let db = raw_open(&path);
        db.open_tree("meta").expect("meta").remove("quarantine_sorted").expect("remove");
        let quarantine = db.open_tree("quarantine").expect("tree");
        for (n, tree) in ["snapshots", "log", "log", "log"].iter().enumerate() {
            let entry = warden_adapters::QuarantineEntry {
                session: "a".to_owned(),
                tree: (*tree).to_owned(),
                key: b"a".to_vec(),
                reason: "old".to_owned(),
                at: None,
                record: vec![0; 50],
            };
            let mut key = (n as u64).to_be_bytes().to_vec();
            key.push(b'a');
            quarantine.insert(key, rmp_serde::to_vec_named(&entry).expect("encode")).expect("insert");
        }
        db.flush().expect("flush");
    }
    let store =
        SledStore::open(&path, options(KEY_A).quarantine_retention(1).quarantine_log_retention(2)).expect("open");
    let trees: Vec<String> = store.quarantined().expect("quarantine").into_iter().map(|e| e.tree).collect();
    assert_eq!(trees, vec!["snapshots", "log", "log"], "the snapshot stays; log entries are capped apart");
}

#[test]
fn the_key_file_is_created_0600_and_reused() {
    let (_dir, path) = temp_db();
    let key_file = default_key_file(&path);
    let a = id("a");
    {
        let store =
            SledStore::open(&path, SledOptions::default().key(KeySource::File(key_file.clone()))).expect("open");
        store.save(&snapshot_with_grant(&a, 1), Durability::Flushed).expect("save");
    }
    let mode = fs::metadata(&key_file).expect("key file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&key_file).expect("key text");
    assert_eq!(text.trim().len(), 44, "base64 of 32 bytes");

    let store = SledStore::open(&path, SledOptions::default().key(KeySource::File(key_file.clone()))).expect("reopen");
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Found(_)), "the same key was read back");
}

/// The base64 of 33 bytes: one too many for a key.
const BASE64_33_BYTES: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn key_error(result: Result<SledStore, StoreError>) -> String {
    match result {
        Err(StoreError::Key { detail }) => detail,
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn bad_key_files_are_refused_clearly() {
    let (dir, path) = temp_db();
    let key_file = dir.path().join("custom.key");
    let open_with_file = || SledStore::open(&path, SledOptions::default().key(KeySource::File(key_file.clone())));

    fs::write(&key_file, StoreKey::from_bytes([1; 32]).to_base64().as_bytes()).expect("write");
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let detail = key_error(open_with_file());
    assert!(detail.contains("mode 0644") && detail.contains("chmod 600") && detail.contains("custom.key"), "{detail}");

    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(&key_file, "c2hvcnQ=\n").expect("write");
    let detail = key_error(open_with_file());
    assert!(detail.contains("(5 bytes)") && detail.contains("truncated") && detail.contains("custom.key"), "{detail}");

    fs::write(&key_file, BASE64_33_BYTES).expect("write");
    let detail = key_error(open_with_file());
    assert!(detail.contains("decodes to 33 bytes") && detail.contains("custom.key"), "{detail}");

    fs::write(&key_file, "!!!! not base64 !!!!").expect("write");
    let detail = key_error(open_with_file());
    assert!(detail.contains("is not base64"), "{detail}");

    fs::write(&key_file, StoreKey::from_bytes([1; 32]).to_base64().as_bytes()).expect("write");
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o400)).expect("chmod");
    open_with_file().expect("a read-only key file (0400) is fine");
}

#[test]
fn debug_output_holds_no_key_or_token() {
    let (_dir, path) = temp_db();
    let options = options(KEY_A);
    let store = SledStore::open(&path, options.clone()).expect("open");
    store.save(&snapshot_with_grant(&id("a"), 1), Durability::Flushed).expect("save");
    let text = format!("{options:?} {store:?} {:?}", store.load(&id("a")).expect("load"));
    assert!(!text.contains(ACCESS_TOKEN) && !text.contains(REFRESH_TOKEN) && !text.contains(FEED_TOKEN), "{text}");
    assert!(!text.contains("165") && !text.contains("0xa5") && !text.contains("pWWl"), "no key bytes: {text}");
}
