//! One process per database, and crashes: a second opener gets `StoreError::Locked` at once (in this
//! process and from another one), and a process killed with SIGKILL in the middle of writes leaves a
//! store that opens, with every flushed snapshot intact.
//!
//! The other processes are this test binary run again with `WARDEN_STORE_CHILD` set, which turns the
//! `child_*` tests from no-ops into the child's work.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use warden_adapters::{FlushPolicy, SledStore};
use warden_engine::{Durability, Generation, LoadOutcome, Store, StoreError};

const CHILD_ENV: &str = "WARDEN_STORE_CHILD";

/// Runs child test `name` of this binary with `WARDEN_STORE_CHILD=path`, stdout piped.
fn spawn_child(name: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// The database path a child works on, if this process is a child.
fn child_path() -> Option<std::path::PathBuf> {
    std::env::var_os(CHILD_ENV).map(Into::into)
}

#[test]
fn a_second_open_in_this_process_is_locked() {
    let (_dir, path) = temp_db();
    let first = open(&path, KEY_A);
    match SledStore::open(&path, options(KEY_A)) {
        Err(StoreError::Locked { path: locked, detail }) => {
            assert_eq!(locked, path.display().to_string());
            assert!(detail.contains("warden.lock"), "{detail}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    open(&path, KEY_A);
}

/// Child: tries to open the store and prints what happened.
#[test]
fn child_opener() {
    let Some(path) = child_path() else { return };
    match SledStore::open(&path, options(KEY_A)) {
        Ok(_) => println!("CHILD OPENED"),
        Err(e @ StoreError::Locked { .. }) => println!("CHILD LOCKED {e}"),
        Err(e) => println!("CHILD ERROR {e}"),
    }
}

#[test]
fn another_process_is_locked_out_and_told_why() {
    let (_dir, path) = temp_db();
    let store = open(&path, KEY_A);
    let output = spawn_child("child_opener", &path).wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("CHILD LOCKED store at") && stdout.contains("locked by another process"), "{stdout}");
    drop(store);

    let output = spawn_child("child_opener", &path).wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("CHILD OPENED"), "once the first process lets go, the next one opens: {stdout}");
}

/// Child: writes snapshots (flushed) and log entries as fast as it can, printing each flushed generation,
/// until it is killed.
#[test]
fn child_writer() {
    let Some(path) = child_path() else { return };
    let store = SledStore::open(&path, options(KEY_A).flush(FlushPolicy::AsRequested)).expect("child opens");
    let a = id("a");
    for generation in 1.. {
        store.append_log(&a, &state_event(generation as i64)).expect("append");
        store.save(&snapshot_with_grant(&a, generation), Durability::Flushed).expect("save");
        println!("FLUSHED {generation}");
        // Unflushed writes in between, so the kill lands in the middle of some.
        store.save(&bare_snapshot(&id("b")), Durability::Buffered).expect("save");
    }
}

#[test]
fn a_store_killed_mid_write_reopens_with_its_flushed_snapshots() {
    for round in 0..3 {
        let (_dir, path) = temp_db();
        let mut child = spawn_child("child_writer", &path);
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let target = 40 + round * 37;
        let mut last_flushed = 0u64;
        while last_flushed < target {
            let line = received.recv_timeout(Duration::from_secs(60)).expect("the child writes");
            if let Some(generation) = line.strip_prefix("FLUSHED ") {
                last_flushed = generation.parse().expect("generation");
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let store = SledStore::open(&path, options(KEY_A)).expect("the killed store reopens");
        match store.load(&id("a")).expect("load") {
            LoadOutcome::Found(snapshot) => {
                assert!(
                    snapshot.generation >= Generation(last_flushed),
                    "round {round}: flushed generation {last_flushed} lost, found {:?}",
                    snapshot.generation
                );
                assert_eq!(*snapshot, snapshot_with_grant(&id("a"), snapshot.generation.0));
            }
            other => panic!("round {round}: expected the flushed snapshot, got {other:?}"),
        }
        let log = store.read_log(&id("a"), usize::MAX).expect("the log reads");
        assert!(log.len() as u64 >= last_flushed.min(1_000) - 1, "round {round}: {} entries", log.len());
        assert!(store.quarantined().expect("quarantine").is_empty(), "round {round}: nothing was damaged");
    }
}

#[test]
fn a_database_held_by_plain_sled_is_reported_locked() {
    let (_dir, path) = temp_db();
    let raw = sled::open(&path).expect("raw sled");
    match SledStore::open(&path, options(KEY_A)) {
        Err(StoreError::Locked { detail, .. }) => assert!(detail.contains("could not acquire lock"), "{detail}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(raw);
}

#[test]
fn open_failures_name_the_path_and_the_problem() {
    let (dir, _) = temp_db();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").expect("write");
    match SledStore::open(&file, options(KEY_A)) {
        Err(StoreError::Io { path, detail }) => {
            assert_eq!(path, file.display().to_string());
            assert!(detail.contains("cannot create the directory"), "{detail}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
}
