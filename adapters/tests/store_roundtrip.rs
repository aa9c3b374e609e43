//! Round trips through both stores: snapshots with grants, logs with their retention cap, removal,
//! observed lifetimes, the fault switch, and a property test over random snapshots.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use warden_adapters::{FaultyStore, FlushPolicy, MemoryStore, SledStore};
use warden_engine::snapshot::StoredGrant;
use warden_engine::{
    Durability, Fence, Generation, Grant, InvalidReason, LeaseOutcome, LoadOutcome, MemberName,
    SNAPSHOT_FORMAT_VERSION, Secret, Snapshot, StateKind, Store, StoreError, UnixMs,
};

fn found(outcome: LoadOutcome) -> Snapshot {
    match outcome {
        LoadOutcome::Found(snapshot) => *snapshot,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// What every store must do with snapshots.
fn snapshots_round_trip(store: &dyn Store) {
    let a = id("saxo-main");
    let b = id("kotak.1");
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Missing));

    let with_grant = snapshot_with_grant(&a, 3);
    store.save(&with_grant, Durability::Flushed).expect("save");
    store.save(&bare_snapshot(&b), Durability::Buffered).expect("save");
    let loaded = found(store.load(&a).expect("load"));
    assert_eq!(loaded, with_grant);
    let grant = &loaded.grant.as_ref().expect("grant").grant;
    assert_eq!(grant.access_token.expose(), ACCESS_TOKEN);
    assert_eq!(grant.refresh_token.as_ref().map(Secret::expose), Some(REFRESH_TOKEN));
    assert_eq!(grant.extras.get("feed_token").map(Secret::expose), Some(FEED_TOKEN));
    assert_eq!(found(store.load(&b).expect("load")), bare_snapshot(&b));

    // A newer save replaces the older one.
    let newer = snapshot_with_grant(&a, 4);
    store.save(&newer, Durability::Flushed).expect("save");
    assert_eq!(found(store.load(&a).expect("load")).generation, Generation(4));

    store.remove(&a).expect("remove");
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Missing));
    assert_eq!(found(store.load(&b).expect("load")), bare_snapshot(&b), "removing one session keeps the others");
    store.flush().expect("flush");
}

/// What every store must do with logs, given its retention cap.
fn logs_round_trip(store: &dyn Store, retention: usize) {
    let a = id("a");
    let ab = id("ab");
    assert!(store.read_log(&a, 10).expect("read").is_empty());
    let total = retention as i64 + 7;
    for n in 0..total {
        store.append_log(&a, &state_event(n)).expect("append");
    }
    store.append_log(&ab, &state_event(-1)).expect("append");

    let all = store.read_log(&a, usize::MAX).expect("read");
    assert_eq!(all.len(), retention, "the log keeps the newest {retention} entries");
    let times: Vec<i64> = all.iter().map(|e| e.at.as_millis()).collect();
    let expected: Vec<i64> = (total - retention as i64..total).collect();
    assert_eq!(times, expected, "oldest first, the oldest ones dropped");

    let newest = store.read_log(&a, 3).expect("read");
    assert_eq!(newest.iter().map(|e| e.at.as_millis()).collect::<Vec<_>>(), vec![total - 3, total - 2, total - 1]);
    assert!(store.read_log(&a, 0).expect("read").is_empty());
    assert_eq!(store.read_log(&ab, 10).expect("read"), vec![state_event(-1)], "a prefix session's log is separate");

    store.remove(&a).expect("remove");
    assert!(store.read_log(&a, 10).expect("read").is_empty());
    store.append_log(&a, &state_event(99)).expect("append after remove");
    assert_eq!(store.read_log(&a, 10).expect("read"), vec![state_event(99)]);
    assert_eq!(store.read_log(&ab, 10).expect("read").len(), 1);
}

#[test]
fn memory_store_round_trips_snapshots_and_logs() {
    let store = MemoryStore::with_log_retention(5);
    snapshots_round_trip(&store);
    logs_round_trip(&store, 5);
    let stats = store.stats();
    assert_eq!((stats.saves, stats.flushed_saves), (3, 2));
}

#[test]
fn sled_store_round_trips_snapshots_and_logs() {
    let (_dir, path) = temp_db();
    let store = SledStore::open(&path, options(KEY_A).log_retention(5)).expect("open");
    snapshots_round_trip(&store);
    logs_round_trip(&store, 5);
}

#[test]
fn sled_store_round_trips_without_its_cache_and_across_reopen() {
    let (_dir, path) = temp_db();
    let a = id("a");
    {
        let store = SledStore::open(&path, options(KEY_A).snapshot_cache_entries(0).log_retention(4)).expect("open");
        snapshots_round_trip(&store);
        store.save(&snapshot_with_grant(&a, 9), Durability::Flushed).expect("save");
        for n in 0..6 {
            store.append_log(&a, &state_event(n)).expect("append");
        }
    }
    // Reopened: the snapshot decrypts from disk, and the log continues where it was, still capped.
    let store = SledStore::open(&path, options(KEY_A).log_retention(4)).expect("reopen");
    assert_eq!(found(store.load(&a).expect("load")), snapshot_with_grant(&a, 9));
    store.append_log(&a, &state_event(6)).expect("append");
    let times: Vec<i64> = store.read_log(&a, 100).expect("read").iter().map(|e| e.at.as_millis()).collect();
    assert_eq!(times, vec![3, 4, 5, 6]);
}

#[test]
fn sled_store_snapshot_cache_is_bounded_and_coherent() {
    let (_dir, path) = temp_db();
    let store = SledStore::open(&path, options(KEY_A).snapshot_cache_entries(2)).expect("open");
    let ids: Vec<_> = (0..5).map(|n| id(&format!("s{n}"))).collect();
    for (n, session) in ids.iter().enumerate() {
        store.save(&snapshot_with_grant(session, n as u64), Durability::Buffered).expect("save");
    }
    for _ in 0..2 {
        for (n, session) in ids.iter().enumerate() {
            assert_eq!(found(store.load(session).expect("load")).generation, Generation(n as u64));
        }
    }
    store.save(&snapshot_with_grant(&ids[0], 40), Durability::Buffered).expect("save");
    assert_eq!(found(store.load(&ids[0]).expect("load")).generation, Generation(40));
}

#[test]
fn every_flush_policy_round_trips() {
    for policy in [FlushPolicy::AsRequested, FlushPolicy::Always, FlushPolicy::Never] {
        let (_dir, path) = temp_db();
        let store = SledStore::open(&path, options(KEY_A).flush(policy).log_retention(3)).expect("open");
        snapshots_round_trip(&store);
        logs_round_trip(&store, 3);
    }
}

#[test]
fn observed_lifetimes_come_from_the_log() {
    let (_dir, path) = temp_db();
    let sled = open(&path, KEY_A);
    let memory = MemoryStore::new();
    let a = id("kotak");
    for store in [&sled as &dyn Store, &memory] {
        store.append_log(&a, &state_event(1)).expect("append");
        store.append_log(&a, &grant_event(1, 1_200_000)).expect("append");
        store.append_log(&a, &grant_event(2, 900_000)).expect("append");
    }
    let from_sled = sled.read_observed_lifetimes(&a).expect("lifetimes");
    assert_eq!(from_sled, memory.read_observed_lifetimes(&a));
    let lifetimes: Vec<Duration> = from_sled.iter().map(|l| l.lifetime).collect();
    assert_eq!(lifetimes, vec![Duration::from_secs(1_200), Duration::from_secs(900)]);
    assert_eq!(from_sled[1].generation, Generation(2));
}

#[test]
fn faulty_store_fails_writes_while_switched_on() {
    let (_dir, path) = temp_db();
    let store = FaultyStore::new(open(&path, KEY_A));
    let faults = store.faults();
    let a = id("a");
    store.save(&snapshot_with_grant(&a, 1), Durability::Flushed).expect("save");

    faults.set_failing(true);
    let failed = store.save(&snapshot_with_grant(&a, 2), Durability::Flushed);
    assert!(matches!(failed, Err(StoreError::WriteFailed { .. })), "{failed:?}");
    assert!(matches!(store.append_log(&a, &state_event(1)), Err(StoreError::WriteFailed { .. })));
    // Reads still work and see the last good write.
    assert_eq!(found(store.load(&a).expect("load")).generation, Generation(1));
    assert!(store.read_log(&a, 10).expect("read").is_empty());

    faults.set_failing(false);
    faults.fail_next(1);
    assert!(store.append_log(&a, &state_event(2)).is_err());
    store.append_log(&a, &state_event(3)).expect("the fault was for one write only");
    assert_eq!(faults.injected(), 3);
    assert_eq!(store.read_log(&a, 10).expect("read"), vec![state_event(3)]);
}

/// The in-process stores have one owner: every lease is theirs under `Fence::SINGLE_OWNER`, fenced writes
/// are plain writes whatever the fence, and there is nothing shared to renew, list or record.
fn single_owner(store: &dyn Store) {
    let s = id("solo");
    let me = MemberName::new("me").expect("member");
    let ttl = Duration::from_secs(10);
    assert!(!store.is_shared());
    match store.acquire_lease(&s, &me, ttl, t(1_000)).expect("acquire") {
        LeaseOutcome::Granted(lease) => assert_eq!((lease.fence, lease.expires_at), (Fence::SINGLE_OWNER, t(11_000))),
        other => panic!("a single owner always gets the lease: {other:?}"),
    }
    assert_eq!(store.renew_lease(&s, &me, Fence::SINGLE_OWNER, ttl, t(2_000)).expect("renew"), t(12_000));
    store.save_fenced(&snapshot_with_grant(&s, 2), Durability::Flushed, Fence(7)).expect("fenced save");
    assert!(store.save_deferred_fenced(&snapshot_with_grant(&s, 3), Fence::NONE).is_ok());
    store.append_logs_fenced(&s, &[state_event(1)], Fence(7)).expect("fenced append");
    store.flush().expect("flush");
    store.fence_status(&s, Fence::NONE).expect("nothing is ever refused");
    assert_eq!(found(store.load(&s).expect("load")).generation, Generation(3));
    assert_eq!(store.read_log(&s, 10).expect("read"), vec![state_event(1)]);
    assert!(store.renew_all(&me, ttl, t(3_000)).expect("renew all").is_empty());
    store.heartbeat_member(&me, ttl, t(3_000)).expect("heartbeat");
    assert!(store.live_members(t(3_000)).expect("members").is_empty());
    store.record_login_attempt(&s, Fence::SINGLE_OWNER, t(3_000)).expect("record");
    assert!(store.login_attempts(&s, 10).expect("attempts").is_empty(), "the history lives in the snapshot");
    store.release_lease(&s, &me, Fence::SINGLE_OWNER).expect("release");
}

#[test]
fn the_in_process_stores_are_single_owners() {
    single_owner(&MemoryStore::new());
    let (_dir, path) = temp_db();
    single_owner(&open(&path, KEY_A));
    let faulty = FaultyStore::new(MemoryStore::new());
    single_owner(&faulty);
    faulty.faults().set_failing(true);
    assert!(matches!(
        faulty.save_fenced(&bare_snapshot(&id("x")), Durability::Flushed, Fence(1)),
        Err(StoreError::WriteFailed { .. })
    ));
    assert!(matches!(faulty.record_login_attempt(&id("x"), Fence(1), t(0)), Err(StoreError::WriteFailed { .. })));
    assert!(matches!(
        faulty.acquire_lease(&id("x"), &MemberName::new("me").expect("member"), Duration::from_secs(1), t(0)),
        Ok(LeaseOutcome::Granted(_))
    ));
}

#[test]
fn memory_store_reports_planted_unreadable_records_once() {
    let store = MemoryStore::new();
    let a = id("a");
    store.save(&snapshot_with_grant(&a, 1), Durability::Flushed).expect("save");
    store.put_unreadable(&a, "record does not decrypt with this store's key");
    match store.load(&a).expect("load") {
        LoadOutcome::Quarantined { reason, .. } => assert!(reason.contains("decrypt"), "{reason}"),
        other => panic!("expected quarantine, got {other:?}"),
    }
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Missing), "the record was moved aside");
    assert_eq!(store.stats().quarantined, 1);
}

fn arb_secret() -> impl Strategy<Value = Secret> {
    "[ -~]{0,40}".prop_map(Secret::new)
}

fn arb_time() -> impl Strategy<Value = UnixMs> {
    any::<i64>().prop_map(UnixMs::from_millis)
}

fn arb_grant() -> impl Strategy<Value = StoredGrant> {
    (
        arb_secret(),
        proptest::option::of(arb_secret()),
        arb_time(),
        proptest::option::of(arb_time()),
        proptest::option::of(arb_time()),
        proptest::collection::btree_map("[a-z_]{1,12}", arb_secret(), 0..4),
        any::<u64>(),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(access, refresh, issued, expires, refresh_expires, extras, generation, (access_dead, refresh_dead))| {
                let grant = Grant {
                    access_token: access,
                    refresh_token: refresh,
                    issued_at: issued,
                    expires_at: expires,
                    refresh_expires_at: refresh_expires,
                    extras: extras.into_iter().collect::<BTreeMap<_, _>>(),
                };
                StoredGrant {
                    grant,
                    generation: Generation(generation),
                    logged_in_at: issued,
                    access_dead,
                    refresh_dead,
                }
            },
        )
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        "[A-Za-z0-9._-]{1,64}",
        arb_time(),
        proptest::sample::select(StateKind::ALL.to_vec()),
        proptest::option::of(prop_oneof![
            "[ -~]{0,20}".prop_map(|detail| InvalidReason::BadCredentials { detail }),
            any::<u32>().prop_map(|failures| InvalidReason::FailureBudgetSpent { failures }),
            Just(InvalidReason::Competing),
        ]),
        proptest::option::of(arb_grant()),
        proptest::collection::vec(arb_time(), 0..5),
        any::<(u64, u32, u32, bool)>(),
        (arb_time(), arb_time()),
    )
        .prop_map(
            |(session, saved_at, state, invalid_reason, grant, login_attempts, numbers, (retry_not_before, last))| {
                let (generation, consecutive_failures, consecutive_rejections, take_over) = numbers;
                Snapshot {
                    format_version: SNAPSHOT_FORMAT_VERSION,
                    session_id: id(&session),
                    saved_at,
                    state,
                    invalid_reason,
                    generation: Generation(generation),
                    grant,
                    login_attempts,
                    consecutive_failures,
                    consecutive_rejections,
                    retry_not_before,
                    take_over,
                    force_login: take_over && generation % 2 == 0,
                    last_activity: last,
                    credentials_fingerprint: None,
                    operator_anchor: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_snapshots_round_trip_through_both_stores(snapshots in proptest::collection::vec(arb_snapshot(), 1..6)) {
        let (_dir, path) = temp_db();
        let sled = SledStore::open(&path, options(KEY_A).snapshot_cache_entries(0)).expect("open");
        let memory = MemoryStore::new();
        for snapshot in &snapshots {
            for store in [&sled as &dyn Store, &memory] {
                store.save(snapshot, Durability::Buffered).expect("save");
                match store.load(&snapshot.session_id).expect("load") {
                    LoadOutcome::Found(back) => prop_assert_eq!(&*back, snapshot),
                    other => prop_assert!(false, "expected the snapshot back, got {:?}", other),
                }
            }
        }
    }
}
