//! Damaged database files (what an abrupt kill or a bad disk can leave): opening never panics and never
//! prints a panic; by default a database sled cannot read is moved aside and a fresh one opened, and
//! every session whose record was lost — moved aside with the database, or silently dropped by sled —
//! loads as `Quarantined` (logins still limited) instead of `Missing`, until it saves again. With
//! rebuilding off, the open fails with a clear error and a way on, never blaming sled.
//!
//! The damage sweep runs in a child process (this test binary again, with `WARDEN_DAMAGE_CHILD` set), so
//! the parent can check that nothing reached stderr.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use warden_adapters::{RecordAddress, RecordCodec, SledStore, StoreKey};
use warden_engine::{Durability, LoadOutcome, Store, StoreError, UnixMs};

const CHILD_ENV: &str = "WARDEN_DAMAGE_CHILD";

/// Sessions in [`populated`].
const SESSIONS: usize = 5;

/// A store with a few sessions' snapshots and a log, closed.
fn populated(path: &Path) {
    let store = open(path, KEY_A);
    for generation in 0..100 {
        let session = id(&format!("s{}", generation as usize % SESSIONS));
        store.save(&snapshot_with_grant(&session, generation), Durability::Flushed).expect("save");
        store.append_log(&session, &state_event(generation as i64)).expect("append");
    }
}

fn damage(path: &Path, file: &str, mut how: impl FnMut(&mut Vec<u8>)) {
    let target = path.join(file);
    let mut bytes = fs::read(&target).expect("database file");
    how(&mut bytes);
    fs::write(&target, bytes).expect("write damage");
}

/// A small deterministic generator for random damage (xorshift64).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The ways a file is damaged in the sweep.
const DAMAGES: &[&str] =
    &["random bytes", "half truncated", "one byte left", "emptied", "zeroed 4 KiB block", "zeroed", "one byte flipped"];

fn apply(how: &str, bytes: &mut Vec<u8>, noise: &mut Noise) {
    match how {
        "random bytes" => bytes.iter_mut().for_each(|b| *b = noise.next() as u8),
        "half truncated" => bytes.truncate(bytes.len() / 2),
        "one byte left" => bytes.truncate(1),
        "emptied" => bytes.clear(),
        "zeroed 4 KiB block" => {
            let start = bytes.len() / 3;
            let end = (start + 4096).min(bytes.len());
            bytes[start..end].iter_mut().for_each(|b| *b = 0);
        }
        "zeroed" => bytes.iter_mut().for_each(|b| *b = 0),
        _ => {
            if !bytes.is_empty() {
                let at = noise.next() as usize % bytes.len();
                bytes[at] ^= 0xFF;
            }
        }
    }
}

/// Words that would blame sled or ask for a bug report: never in an error about damaged files.
fn blames_sled(text: &str) -> bool {
    let text = text.to_lowercase();
    ["sled version", "report this bug", "bug has happened", "backtrace"].iter().any(|w| text.contains(w))
}

/// Child: damages every file of a populated store in every way, opens it (default options, then with
/// rebuilding off) and prints one line per case; the parent checks the lines and the silence of stderr.
#[test]
fn child_damage_sweep() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (_template_dir, template) = temp_db();
    populated(&template);
    let files: Vec<String> = files_under(&template)
        .into_iter()
        .map(|f| f.strip_prefix(&template).expect("inside").display().to_string())
        .collect();
    let mut noise = Noise(0x5EED_0FDA_4A6E);
    for file in &files {
        for how in DAMAGES {
            for rebuild in [true, false] {
                let case = format!("{file} / {how} / rebuild {rebuild}");
                let (_dir, path) = temp_db();
                for other in &files {
                    let to = path.join(other);
                    fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                    fs::copy(template.join(other), &to).expect("copy");
                }
                damage(&path, file, |bytes| apply(how, bytes, &mut noise));
                let clock: warden_adapters::WallClock = Arc::new(|| UnixMs::from_millis(1_773_027_000_000));
                let opened = SledStore::open(&path, options(KEY_A).clock(clock).rebuild_if_unreadable(rebuild));
                let store = match opened {
                    Ok(store) => store,
                    Err(error @ StoreError::Io { .. }) if !rebuild => {
                        let text = error.to_string();
                        let ok = !blames_sled(&text) && text.contains("move the directory aside");
                        println!("CASE {case}: {} refused: {text}", if ok { "OK" } else { "BAD" });
                        continue;
                    }
                    Err(error) => {
                        println!("CASE {case}: BAD open failed: {error}");
                        continue;
                    }
                };
                let mut outcome = Vec::new();
                let mut bad = false;
                for n in 0..SESSIONS {
                    let session = id(&format!("s{n}"));
                    match store.load(&session) {
                        Ok(LoadOutcome::Found(snapshot)) => {
                            bad |= *snapshot != snapshot_with_grant(&session, snapshot.generation.0);
                            outcome.push("found");
                        }
                        Ok(LoadOutcome::Quarantined { reason, .. }) => {
                            bad |= blames_sled(&reason);
                            outcome.push("quarantined");
                        }
                        other => {
                            bad = true;
                            outcome.push(if matches!(other, Ok(LoadOutcome::Missing)) { "MISSING" } else { "ERROR" });
                        }
                    }
                    bad |= store.read_log(&session, usize::MAX).is_err();
                }
                bad |= store.save(&bare_snapshot(&id("new")), Durability::Flushed).is_err();
                let aside = store.moved_aside().map(|p| p.display().to_string()).unwrap_or_default();
                println!("CASE {case}: {} {outcome:?} {aside}", if bad { "BAD" } else { "OK" });
            }
        }
    }
    println!("SWEEP DONE");
}

#[test]
fn damaged_files_never_panic_lose_the_login_limit_or_blame_sled() {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_damage_sweep", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run the sweep");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("SWEEP DONE"), "the sweep finished: {stdout}\n{stderr}");
    let cases: Vec<&str> = stdout.lines().filter(|l| l.starts_with("CASE ")).collect();
    assert!(cases.len() >= 3 * DAMAGES.len() * 2, "every file was damaged every way: {cases:#?}");
    let bad: Vec<&&str> = cases.iter().filter(|l| l.contains(": BAD")).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(!stderr.contains("panicked"), "no panic reached stderr: {stderr}");
    // The sweep does reach the interesting cases: some databases are moved aside, some records dropped.
    assert!(cases.iter().any(|l| l.contains(".unreadable.20260309T033000Z")), "{cases:#?}");
    assert!(cases.iter().any(|l| l.contains("rebuild false") && l.contains("refused")), "{cases:#?}");
    assert!(cases.iter().any(|l| l.starts_with("CASE db /") && l.contains("quarantined")), "{cases:#?}");
}

#[test]
fn an_unreadable_database_fails_with_a_way_on_when_rebuilding_is_off() {
    let (_dir, path) = temp_db();
    populated(&path);
    damage(&path, "conf", |b| b.iter_mut().for_each(|x| *x = 0xEE));
    match SledStore::open(&path, options(KEY_A).rebuild_if_unreadable(false)) {
        Err(StoreError::Io { path: named, detail }) => {
            assert_eq!(named, path.display().to_string());
            assert!(detail.contains("damaged"), "{detail}");
            assert!(
                detail.contains("move the directory aside") && detail.contains("rebuild_if_unreadable"),
                "{detail}"
            );
            assert!(!blames_sled(&detail), "plain damage is not blamed on a sled version or bug: {detail}");
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn an_unreadable_database_is_moved_aside_and_its_sessions_start_fresh() {
    let (dir, path) = temp_db();
    populated(&path);
    damage(&path, "conf", |b| b.iter_mut().for_each(|x| *x = 0xEE));
    let clock: warden_adapters::WallClock = Arc::new(|| UnixMs::from_millis(1_773_027_000_000));
    let store = SledStore::open(&path, options(KEY_A).clock(clock.clone())).expect("rebuilt by default");
    let aside = dir.path().join("store.unreadable.20260309T033000Z");
    assert_eq!(store.moved_aside(), Some(aside.as_path()));
    assert!(aside.join("db").exists() && aside.join("conf").exists(), "the old files are kept");
    // Every session loads as quarantined (an event, logins limited), known or not, until it saves.
    for name in ["s0", "s1", "never-seen"] {
        match store.load(&id(name)).expect("load") {
            LoadOutcome::Quarantined { reason, login_attempts: None } => {
                assert!(reason.contains("was unreadable") && reason.contains(&aside.display().to_string()), "{reason}");
            }
            other => panic!("{name}: expected quarantined, got {other:?}"),
        }
    }
    store.save(&snapshot_with_grant(&id("s0"), 7), Durability::Flushed).expect("save");
    assert!(matches!(store.load(&id("s0")).expect("load"), LoadOutcome::Found(_)), "saved: found again");
    drop(store);

    // The next process: the rebuilt store opens as it is; the sessions that have not saved yet are
    // still known to have lost their record, a session never seen is new.
    let store = SledStore::open(&path, options(KEY_A).clock(clock)).expect("reopen");
    assert_eq!(store.moved_aside(), None);
    assert!(matches!(store.load(&id("s0")).expect("load"), LoadOutcome::Found(_)));
    match store.load(&id("s1")).expect("load") {
        LoadOutcome::Quarantined { reason, .. } => assert!(reason.contains("was unreadable"), "{reason}"),
        other => panic!("expected quarantined, got {other:?}"),
    }
    assert!(matches!(store.load(&id("brand-new")).expect("load"), LoadOutcome::Missing));
}

#[test]
fn records_sled_drops_silently_load_as_quarantined() {
    let (_dir, path) = temp_db();
    populated(&path);
    let mut noise = Noise(7);
    damage(&path, "db", |bytes| bytes.iter_mut().for_each(|b| *b = noise.next() as u8));
    let store = open(&path, KEY_A);
    for n in 0..SESSIONS {
        match store.load(&id(&format!("s{n}"))).expect("load") {
            LoadOutcome::Quarantined { reason, login_attempts: None } => {
                assert!(reason.contains("although one was saved"), "{reason}")
            }
            LoadOutcome::Found(_) => {}
            other => panic!("s{n}: a saved session never loads as Missing: {other:?}"),
        }
    }
    assert!(matches!(store.load(&id("brand-new")).expect("load"), LoadOutcome::Missing));
}

#[test]
fn a_snapshot_that_decrypts_but_does_not_decode_keeps_its_login_attempts() {
    #[derive(serde::Serialize)]
    struct Drifted<'a> {
        format_version: u32,
        session_id: &'a str,
        saved_at: &'a str,
        login_attempts: Vec<UnixMs>,
    }
    let (_dir, path) = temp_db();
    let a = id("a");
    let attempts = vec![t(1_000), t(2_000), t(3_000)];
    {
        let store = open(&path, KEY_A);
        store.save(&snapshot_with_grant(&a, 1), Durability::Flushed).expect("save");
    }
    let codec = RecordCodec::new(&StoreKey::from_bytes(KEY_A));
    let drifted =
        Drifted { format_version: 1, session_id: "a", saved_at: "yesterday", login_attempts: attempts.clone() };
    let record = codec.seal_envelope(RecordAddress::Snapshot(&a), 1, &drifted).expect("seal");
    with_raw_sled(&path, |db| {
        db.open_tree("snapshots").expect("tree").insert(b"a", record).expect("insert");
    });
    let store = open(&path, KEY_A);
    match store.load(&a).expect("load") {
        LoadOutcome::Quarantined { reason, login_attempts } => {
            assert!(reason.contains("does not decode as a snapshot"), "{reason}");
            assert_eq!(login_attempts, Some(attempts), "the login history is salvaged");
        }
        other => panic!("expected quarantined, got {other:?}"),
    }
}
