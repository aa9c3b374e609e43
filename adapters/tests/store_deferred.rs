//! Writes for group commit: `save_deferred` says what a durable write still needs under each flush
//! policy, `append_logs` writes the entries of a step as one record in order and keeps the newest steps
//! (and records of one entry written by older builds are still read), and the list of known sessions
//! grows by appends (one line per new session) and survives an append cut short.

mod common;

use common::*;
use warden_adapters::{FaultyStore, FlushPolicy, MemoryStore, SledStore};
use warden_engine::{LoadOutcome, Pending, Store};

#[test]
fn save_deferred_says_what_a_durable_write_still_needs() {
    for (policy, pending) in [
        (FlushPolicy::AsRequested, Pending::Flush),
        (FlushPolicy::Always, Pending::Durable),
        (FlushPolicy::Never, Pending::Durable),
    ] {
        let (_dir, path) = temp_db();
        let store = SledStore::open(&path, options(KEY_A).flush(policy)).expect("store opens");
        let session = id("deferred");
        let snapshot = snapshot_with_grant(&session, 3);
        assert_eq!(store.save_deferred(&snapshot).expect("saved"), pending, "{policy:?}");
        match store.load(&session).expect("load") {
            LoadOutcome::Found(found) => assert_eq!(found.generation, snapshot.generation, "written at once"),
            other => panic!("{policy:?}: {other:?}"),
        }
        store.flush().expect("flush");
        drop(store);
        let reopened = open(&path, KEY_A);
        assert!(matches!(reopened.load(&session).expect("load"), LoadOutcome::Found(_)), "{policy:?}");
    }
    let memory = MemoryStore::new();
    assert_eq!(memory.save_deferred(&bare_snapshot(&id("m"))).expect("saved"), Pending::Durable);
    assert_eq!(memory.stats().flushed_saves, 1);
    let faulty = FaultyStore::new(MemoryStore::new());
    faulty.faults().fail_next(1);
    assert!(faulty.save_deferred(&bare_snapshot(&id("f"))).is_err(), "the fault switch covers deferred saves");
}

#[test]
fn append_logs_writes_a_step_in_order_and_keeps_the_newest_steps() {
    let (_dir, path) = temp_db();
    let sled = SledStore::open(&path, options(KEY_A).log_retention(2)).expect("store opens");
    let memory = MemoryStore::with_log_retention(2);
    for store in [&sled as &dyn Store, &memory] {
        let session = id("logged");
        store.append_logs(&session, &[state_event(1), state_event(2), state_event(3)]).expect("first step");
        store.append_log(&session, &state_event(4)).expect("a step of one entry");
        store.append_logs(&session, &[]).expect("an empty step is nothing");
        store.append_logs(&session, &[state_event(5), state_event(6), state_event(7)]).expect("third step");
        let times = |limit| -> Vec<i64> {
            store.read_log(&session, limit).expect("read").iter().map(|e| e.at.as_millis()).collect()
        };
        assert_eq!(times(100), vec![4, 5, 6, 7], "the newest two steps, oldest first");
        assert_eq!(times(3), vec![5, 6, 7], "the newest entries, even within a step");
    }
    assert_eq!(memory.stats().log_appends, 7, "entries are counted one by one");
    drop(sled);
    let reopened = open(&path, KEY_A);
    let times: Vec<i64> =
        reopened.read_log(&id("logged"), 100).expect("read").iter().map(|e| e.at.as_millis()).collect();
    assert_eq!(times, vec![4, 5, 6, 7], "the steps are on disk");
}

#[test]
fn log_records_of_one_entry_from_older_builds_are_still_read() {
    let (_dir, path) = temp_db();
    let session = id("older");
    {
        // An older build wrote one record per entry (envelope format 1), at sequence numbers 0 and 1.
        let store = open(&path, KEY_A);
        store.append_log(&session, &state_event(1)).expect("append");
        drop(store);
        // Written with plain sled, which holds its lock a moment after the drop: wait for it to let go.
        with_raw_sled(&path, |db| {
            let log = db.open_tree("log").expect("log tree");
            let codec = warden_adapters::RecordCodec::new(&warden_adapters::StoreKey::from_bytes(KEY_A));
            let mut key = session.as_str().as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&1u64.to_be_bytes());
            log.insert(key, codec.seal_log(&session, 1, &state_event(2)).expect("sealed")).expect("insert");
        });
    }
    let store = open(&path, KEY_A);
    store.append_logs(&session, &[state_event(3), state_event(4)]).expect("a new step after them");
    let times: Vec<i64> = store.read_log(&session, 100).expect("read").iter().map(|e| e.at.as_millis()).collect();
    assert_eq!(times, vec![1, 2, 3, 4]);
}

#[test]
fn the_known_list_grows_by_appends_and_an_append_cut_short_is_repaired() {
    let (_dir, path) = temp_db();
    let list = path.join(warden_adapters::store::sled_store::KNOWN_SESSIONS_FILE_NAME);
    {
        let store = open(&path, KEY_A);
        for name in ["a", "b", "c"] {
            store.save(&bare_snapshot(&id(name)), warden_engine::Durability::Buffered).expect("saved");
        }
        store.flush().expect("flush");
    }
    let text = std::fs::read_to_string(&list).expect("the list");
    assert_eq!(text, "a\nb\nc\n", "one line per session, in the order they first saved");
    // A crash in the middle of an append leaves half a line.
    std::fs::write(&list, "a\nb\nc\nd").expect("cut short");
    let store = open(&path, KEY_A);
    store.save(&bare_snapshot(&id("e")), warden_engine::Durability::Buffered).expect("saved");
    store.flush().expect("flush");
    drop(store);
    let text = std::fs::read_to_string(&list).expect("the list");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec!["a", "b", "c", "e"], "the half line is gone and the next append is a line of its own");
    assert!(text.ends_with('\n'));
}
