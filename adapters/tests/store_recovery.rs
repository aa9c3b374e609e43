//! Damaged database files (what an abrupt kill or a bad disk can leave): opening never panics; sled
//! either recovers what it can or the open fails with a clear error and a way on, and
//! `rebuild_if_unreadable` takes that way automatically.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use warden_adapters::SledStore;
use warden_engine::{Durability, LoadOutcome, Store, StoreError};

/// A store with a few sessions' snapshots, closed.
fn populated(path: &Path) {
    let store = open(path, KEY_A);
    for generation in 0..100 {
        store
            .save(&snapshot_with_grant(&id(&format!("s{}", generation % 5)), generation), Durability::Flushed)
            .expect("save");
    }
}

/// A way to damage a file's bytes.
type Damage = fn(&mut Vec<u8>);

fn damage(path: &Path, file: &str, how: impl Fn(&mut Vec<u8>)) {
    let target = path.join(file);
    let mut bytes = fs::read(&target).expect("database file");
    how(&mut bytes);
    fs::write(&target, bytes).expect("write damage");
}

#[test]
fn damaged_data_files_open_without_panicking() {
    let damages: Vec<(&str, Damage)> = vec![
        ("garbage", (|b: &mut Vec<u8>| b.iter_mut().enumerate().for_each(|(i, x)| *x = (i * 31 % 251) as u8))),
        ("truncated", (|b: &mut Vec<u8>| b.truncate(b.len() / 2))),
        (
            "zeroed tail",
            (|b: &mut Vec<u8>| {
                let half = b.len() / 2;
                b[half..].iter_mut().for_each(|x| *x = 0);
            }),
        ),
        ("emptied", (|b: &mut Vec<u8>| b.clear())),
    ];
    for (name, how) in damages {
        let (_dir, path) = temp_db();
        populated(&path);
        damage(&path, "db", how);
        let store = SledStore::open(&path, options(KEY_A)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for n in 0..5 {
            let session = id(&format!("s{n}"));
            match store.load(&session).expect("load") {
                // sled keeps what it can read back and drops the rest; a kept record is intact.
                LoadOutcome::Found(snapshot) => {
                    assert_eq!(*snapshot, snapshot_with_grant(&session, snapshot.generation.0))
                }
                LoadOutcome::Missing => {}
                other => panic!("{name}: {other:?}"),
            }
        }
        store.save(&bare_snapshot(&id("new")), Durability::Flushed).expect("the store is writable again");
    }
}

#[test]
fn an_unreadable_database_fails_with_a_way_on() {
    let (_dir, path) = temp_db();
    populated(&path);
    damage(&path, "conf", |b| b.iter_mut().for_each(|x| *x = 0xEE));
    match SledStore::open(&path, options(KEY_A)) {
        Err(StoreError::Io { path: named, detail }) => {
            assert_eq!(named, path.display().to_string());
            assert!(
                detail.contains("move the directory aside") && detail.contains("rebuild_if_unreadable"),
                "{detail}"
            );
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn rebuild_if_unreadable_moves_the_database_aside() {
    let (dir, path) = temp_db();
    populated(&path);
    damage(&path, "conf", |b| b.iter_mut().for_each(|x| *x = 0xEE));
    let store = SledStore::open(&path, options(KEY_A).rebuild_if_unreadable(true)).expect("rebuilt");
    assert!(matches!(store.load(&id("s1")).expect("load"), LoadOutcome::Missing), "a fresh store");
    store.save(&snapshot_with_grant(&id("s1"), 1), Durability::Flushed).expect("save");
    let aside = dir.path().join("store.unreadable.1");
    assert!(aside.join("db").exists(), "the old files are kept at {}", aside.display());
    drop(store);
    // Reopening the rebuilt store needs no rebuild.
    let store = SledStore::open(&path, options(KEY_A)).expect("reopen");
    assert!(matches!(store.load(&id("s1")).expect("load"), LoadOutcome::Found(_)));
}
