//! The PostgreSQL store against a real PostgreSQL (`eval "$(tests/pg/start.sh)"` sets `WARDEN_PG_URL`):
//! round trips, read-your-writes, what a flush means, leases and fences, membership, the shared login
//! history, quarantine, and a connection killed mid-run. Each test has its own schema, so they run in
//! parallel. Without `WARDEN_PG_URL` every test says why it skips and passes, unless
//! `WARDEN_PG_TEST=required`. A PostgreSQL restart is in `store_postgres_restart.rs` (it would cut the
//! other tests' connections); the group-commit measurement is the ignored `group_commit_throughput`.

mod common;

use std::time::Duration;

use common::pg::pg;
use common::*;
use warden_adapters::PostgresStore;
use warden_engine::{
    Durability, Fence, Generation, LeaseOutcome, LoadOutcome, LoginAttempt, MemberName, Pending, Snapshot, Store,
    StoreError,
};

fn found(outcome: LoadOutcome) -> Snapshot {
    match outcome {
        LoadOutcome::Found(snapshot) => *snapshot,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn member(name: &str) -> MemberName {
    MemberName::new(name).expect("member name")
}

fn granted(outcome: LeaseOutcome) -> Fence {
    match outcome {
        LeaseOutcome::Granted(lease) => lease.fence,
        other => panic!("expected the lease, got {other:?}"),
    }
}

const TTL: Duration = Duration::from_secs(10);

#[test]
fn snapshots_and_logs_round_trip() {
    let Some(pg) = pg("round_trip") else { return };
    let store = pg.open();
    let (a, b) = (id("saxo-main"), id("kotak.1"));
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Missing));
    store.save(&snapshot_with_grant(&a, 3), Durability::Flushed).expect("save");
    store.save(&bare_snapshot(&b), Durability::Buffered).expect("save");
    store.flush().expect("flush");
    assert_eq!(found(store.load(&a).expect("load")), snapshot_with_grant(&a, 3));
    assert_eq!(found(store.load(&b).expect("load")), bare_snapshot(&b));

    // Steps of one and of several entries come back in order, the newest `limit` entries.
    store.append_log(&a, &state_event(1)).expect("append");
    store.append_logs(&a, &[state_event(2), grant_event(2, 1_200_000)]).expect("append");
    store.append_log(&b, &state_event(9)).expect("append");
    store.flush().expect("flush");
    assert_eq!(store.read_log(&a, 10).expect("read"), vec![state_event(1), state_event(2), grant_event(2, 1_200_000)]);
    assert_eq!(store.read_log(&a, 2).expect("read"), vec![state_event(2), grant_event(2, 1_200_000)]);
    assert_eq!(store.read_log(&b, 10).expect("read"), vec![state_event(9)]);

    // A second instance on the same tables reads the same, and continues the log after it.
    drop(store);
    let again = pg.open();
    assert_eq!(found(again.load(&a).expect("load")), snapshot_with_grant(&a, 3));
    again.append_log(&a, &state_event(3)).expect("append");
    assert_eq!(again.read_log(&a, 10).expect("read").len(), 4);

    again.remove(&a).expect("remove");
    assert!(matches!(again.load(&a).expect("load"), LoadOutcome::Missing));
    assert!(again.read_log(&a, 10).expect("read").is_empty());
    again.flush().expect("flush");
    assert_eq!(pg.count("SELECT count(*) FROM log WHERE session = 'saxo-main'"), 0);
    assert_eq!(found(again.load(&b).expect("load")), bare_snapshot(&b), "removing one session keeps the others");

    // Nothing secret is in the tables in clear.
    let mut raw = pg.raw();
    for row in raw.query("SELECT record FROM snapshots UNION ALL SELECT record FROM log", &[]).expect("rows") {
        let record: Vec<u8> = row.get(0);
        assert!(!contains(&record, ACCESS_TOKEN.as_bytes()) && !contains(&record, REFRESH_TOKEN.as_bytes()));
    }
}

#[test]
fn reads_see_queued_writes_and_a_flush_waits_for_the_commit() {
    let Some(pg) = pg("read_your_writes") else { return };
    let store = PostgresStore::open(pg.options(KEY_A).flush_timeout(Duration::from_millis(300))).expect("open");
    let other = pg.open();
    let a = id("a");
    store.save(&bare_snapshot(&a), Durability::Flushed).expect("first save");

    // Hold the snapshots table so the worker's next batch cannot commit.
    let mut blocker = pg.raw();
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE snapshots IN EXCLUSIVE MODE").expect("lock");
    assert_eq!(store.save_deferred(&snapshot_with_grant(&a, 7)).expect("deferred"), Pending::Flush);
    assert_eq!(found(store.load(&a).expect("load")).generation, Generation(7), "the writer reads its write");
    assert_eq!(found(other.load(&a).expect("load")).generation, Generation::NONE, "nobody else sees it yet");
    match store.flush() {
        Err(StoreError::Io { detail, .. }) => assert!(detail.contains("not committed"), "{detail}"),
        other => panic!("a flush cannot succeed before the commit: {other:?}"),
    }
    assert_eq!(found(other.load(&a).expect("load")).generation, Generation::NONE);
    tx.rollback().expect("unlock");

    // Once the batch commits, the flush succeeds and everyone sees it.
    let mut flushed = false;
    for _ in 0..100 {
        if store.flush().is_ok() {
            flushed = true;
            break;
        }
    }
    assert!(flushed, "the flush succeeds once the table is free");
    assert_eq!(found(other.load(&a).expect("load")).generation, Generation(7));

    // A log step is read back at once, before any flush.
    store.append_logs(&a, &[state_event(1), state_event(2)]).expect("append");
    assert_eq!(store.read_log(&a, 10).expect("read"), vec![state_event(1), state_event(2)]);
}

#[test]
fn a_flush_means_another_instance_sees_every_write() {
    let Some(pg) = pg("flush_committed") else { return };
    let writer = pg.open();
    let sessions: Vec<_> = (0..200).map(|n| id(&format!("s{n}"))).collect();
    for (n, session) in sessions.iter().enumerate() {
        assert_eq!(writer.save_deferred(&snapshot_with_grant(session, n as u64 + 1)).expect("save"), Pending::Flush);
    }
    writer.flush().expect("flush");
    let reader = pg.open();
    for (n, session) in sessions.iter().enumerate() {
        assert_eq!(found(reader.load(session).expect("load")).generation, Generation(n as u64 + 1));
    }
    let stats = writer.stats();
    assert_eq!(stats.writes_committed, 200);
    assert!(stats.batches >= 1 && stats.batches <= 200, "{stats:?}");
}

#[test]
fn fences_only_grow() {
    let Some(pg) = pg("fences_grow") else { return };
    let store = pg.open();
    let s = id("s");
    let (m1, m2) = (member("m1"), member("m2"));
    let now = t(1_000_000);
    let f1 = granted(store.acquire_lease(&s, &m1, TTL, now).expect("acquire"));
    assert_eq!(f1, Fence(1));
    // The holder acquiring again fences out its own older holder.
    let f2 = granted(store.acquire_lease(&s, &m1, TTL, now).expect("acquire"));
    assert!(f2 > f1);
    store.release_lease(&s, &m1, f2).expect("release");
    let f3 = granted(store.acquire_lease(&s, &m2, TTL, now).expect("acquire"));
    assert!(f3 > f2);
    // Removing the session's data keeps its fence.
    store.save(&bare_snapshot(&s), Durability::Flushed).expect("save");
    store.remove(&s).expect("remove");
    store.flush().expect("flush");
    let f4 = granted(store.acquire_lease(&s, &m1, TTL, now.saturating_add(TTL)).expect("acquire after expiry"));
    assert!(f4 > f3);
    assert_eq!(pg.count("SELECT fence FROM leases WHERE session = 's'"), f4.0 as i64);
}

#[test]
fn a_stale_fence_cannot_write() {
    let Some(pg) = pg("stale_fence") else { return };
    let old = pg.open();
    let new = pg.open();
    let s = id("s");
    let (m1, m2) = (member("m1"), member("m2"));
    let now = t(5_000);
    let f1 = granted(old.acquire_lease(&s, &m1, TTL, now).expect("acquire"));
    old.save_fenced(&snapshot_with_grant(&s, 1), Durability::Flushed, f1).expect("the owner writes");
    old.append_logs_fenced(&s, &[state_event(1)], f1).expect("the owner logs");
    old.flush().expect("flush");
    let before: Vec<u8> =
        pg.raw().query_one("SELECT record FROM snapshots WHERE session = 's'", &[]).expect("row").get(0);

    // m1 stops renewing; after the TTL m2 takes the session over.
    let later = now.saturating_add(TTL);
    let f2 = granted(new.acquire_lease(&s, &m2, TTL, later).expect("take over"));
    assert!(f2 > f1);

    // A flushed save under the old fence is refused and names both fences.
    match old.save_fenced(&snapshot_with_grant(&s, 2), Durability::Flushed, f1) {
        Err(StoreError::Fenced { fence, current, .. }) => assert_eq!((fence, current), (f1, f2)),
        other => panic!("expected Fenced, got {other:?}"),
    }
    // Later writes under it are refused at once, without a round trip.
    assert!(matches!(old.append_logs_fenced(&s, &[state_event(2)], f1), Err(StoreError::Fenced { .. })));
    assert!(matches!(old.save_deferred_fenced(&snapshot_with_grant(&s, 3), f1), Err(StoreError::Fenced { .. })));
    assert!(matches!(old.fence_status(&s, f1), Err(StoreError::Fenced { .. })));

    let after: Vec<u8> =
        pg.raw().query_one("SELECT record FROM snapshots WHERE session = 's'", &[]).expect("row").get(0);
    assert_eq!(after, before, "the row is unchanged");
    assert_eq!(found(new.load(&s).expect("load")).generation, Generation(1));
    assert_eq!(new.read_log(&s, 10).expect("read"), vec![state_event(1)]);
    assert_eq!(old.stats().writes_refused, 1);

    // The new owner writes, and its log sorts after the old owner's.
    new.save_fenced(&snapshot_with_grant(&s, 4), Durability::Flushed, f2).expect("the new owner writes");
    new.append_logs_fenced(&s, &[state_event(4)], f2).expect("the new owner logs");
    assert_eq!(new.read_log(&s, 10).expect("read"), vec![state_event(1), state_event(4)]);
    new.flush().expect("flush");
    assert_eq!(found(pg.open().load(&s).expect("load")).generation, Generation(4));
}

#[test]
fn a_deferred_write_under_a_lost_fence_shows_after_the_flush() {
    let Some(pg) = pg("deferred_fenced") else { return };
    let old = pg.open();
    let new = pg.open();
    let (s, other) = (id("s"), id("other"));
    let (m1, m2) = (member("m1"), member("m2"));
    let f1 = granted(old.acquire_lease(&s, &m1, TTL, t(0)).expect("acquire"));
    let g1 = granted(old.acquire_lease(&other, &m1, TTL, t(0)).expect("acquire"));
    let f2 = granted(new.acquire_lease(&s, &m2, TTL, t(10_000)).expect("take over"));
    // One flush serves both writes: it succeeds, and each session asks about its own.
    assert_eq!(old.save_deferred_fenced(&snapshot_with_grant(&s, 9), f1).expect("queued"), Pending::Flush);
    assert_eq!(old.save_deferred_fenced(&snapshot_with_grant(&other, 9), g1).expect("queued"), Pending::Flush);
    old.flush().expect("the flush covers both");
    match old.fence_status(&s, f1) {
        Err(StoreError::Fenced { fence, current, session }) => {
            assert_eq!((fence, current, session.as_str()), (f1, f2, "s"))
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    old.fence_status(&other, g1).expect("the other session's write landed");
    assert!(matches!(new.load(&s).expect("load"), LoadOutcome::Missing));
    assert_eq!(found(new.load(&other).expect("load")).generation, Generation(9));
}

#[test]
fn a_lapsed_lease_goes_to_the_next_member_with_a_larger_fence() {
    let Some(pg) = pg("lease_expiry") else { return };
    let store = pg.open();
    let s = id("s");
    let (m1, m2) = (member("m1"), member("m2"));
    let f1 = granted(store.acquire_lease(&s, &m1, TTL, t(0)).expect("acquire"));
    match store.acquire_lease(&s, &m2, TTL, t(5_000)).expect("acquire") {
        LeaseOutcome::Held { holder, fence, expires_at } => {
            assert_eq!((holder, fence, expires_at), (m1.clone(), f1, t(10_000)));
        }
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(store.renew_lease(&s, &m1, f1, TTL, t(6_000)).expect("renew"), t(16_000));
    assert!(matches!(store.acquire_lease(&s, &m2, TTL, t(15_999)).expect("acquire"), LeaseOutcome::Held { .. }));
    let f2 = granted(store.acquire_lease(&s, &m2, TTL, t(16_000)).expect("acquire at expiry"));
    assert!(f2 > f1);
    match store.renew_lease(&s, &m1, f1, TTL, t(16_001)) {
        Err(StoreError::Fenced { fence, current, .. }) => assert_eq!((fence, current), (f1, f2)),
        other => panic!("the old holder cannot renew: {other:?}"),
    }
    // A lapsed lease nobody took is not renewed either: it must be acquired again.
    assert!(matches!(store.renew_lease(&s, &m2, f2, TTL, t(26_000)), Err(StoreError::Fenced { .. })));
}

#[test]
fn renew_all_renews_every_lease_of_a_member_and_only_those() {
    let Some(pg) = pg("renew_all") else { return };
    let store = pg.open();
    let (m1, m2) = (member("m1"), member("m2"));
    for n in 0..50 {
        granted(store.acquire_lease(&id(&format!("a{n:02}")), &m1, TTL, t(0)).expect("acquire"));
    }
    for n in 0..5 {
        granted(store.acquire_lease(&id(&format!("b{n}")), &m2, TTL, t(0)).expect("acquire"));
    }
    // a00 is released; the other 49 are renewed in one call.
    store.release_lease(&id("a00"), &m1, Fence(1)).expect("release");
    let renewed = store.renew_all(&m1, TTL, t(5_000)).expect("renew all");
    assert_eq!(renewed.len(), 49);
    assert!(renewed.iter().all(|lease| lease.expires_at == t(15_000) && lease.fence == Fence(1)));
    assert_eq!(renewed.first().map(|l| l.session.as_str()), Some("a01"));
    assert_eq!(pg.count("SELECT count(*) FROM leases WHERE member = 'm1' AND expires_at_ms = 15000"), 49);
    assert_eq!(pg.count("SELECT count(*) FROM leases WHERE member = 'm2' AND expires_at_ms = 10000"), 5);
    // m2 did not renew: after its TTL its sessions are free, and renewing them now finds none.
    assert!(store.renew_all(&m2, TTL, t(10_000)).expect("renew all").is_empty());
    granted(store.acquire_lease(&id("b0"), &m1, TTL, t(10_000)).expect("take over"));
    assert_eq!(store.renew_all(&m1, TTL, t(12_000)).expect("renew all").len(), 50);
}

#[test]
fn members_heartbeat_and_lapse() {
    let Some(pg) = pg("members") else { return };
    let store = pg.open();
    let (m1, m2, m3) = (member("m1"), member("m2"), member("m3"));
    store.heartbeat_member(&m2, TTL, t(0)).expect("heartbeat");
    store.heartbeat_member(&m1, TTL, t(0)).expect("heartbeat");
    store.heartbeat_member(&m3, TTL, t(0)).expect("heartbeat");
    assert_eq!(store.live_members(t(1)).expect("live"), vec![m1.clone(), m2.clone(), m3.clone()]);
    store.heartbeat_member(&m1, TTL, t(8_000)).expect("heartbeat");
    store.leave_member(&m3).expect("leave");
    assert_eq!(store.live_members(t(12_000)).expect("live"), vec![m1.clone()]);
    assert!(store.live_members(t(18_000)).expect("live").is_empty());
}

#[test]
fn login_attempts_are_shared_and_fenced() {
    let Some(pg) = pg("login_attempts") else { return };
    let a = pg.open();
    let b = pg.open();
    let s = id("s");
    let (m1, m2) = (member("m1"), member("m2"));
    let f1 = granted(a.acquire_lease(&s, &m1, TTL, t(0)).expect("acquire"));
    a.record_login_attempt(&s, f1, t(100)).expect("the owner records its attempt");
    assert_eq!(b.login_attempts(&s, 10).expect("read"), vec![LoginAttempt { at: t(100), fence: f1 }]);

    // After the takeover the old owner cannot record (so it does not log in); the new one can.
    let f2 = granted(b.acquire_lease(&s, &m2, TTL, t(10_000)).expect("take over"));
    assert!(matches!(a.record_login_attempt(&s, f1, t(10_001)), Err(StoreError::Fenced { .. })));
    // A lapsed lease nobody took does not allow a login either.
    assert!(matches!(b.record_login_attempt(&s, f2, t(20_000)), Err(StoreError::Fenced { .. })));
    b.record_login_attempt(&s, f2, t(10_500)).expect("the new owner records");
    let seen = a.login_attempts(&s, 10).expect("read");
    assert_eq!(seen, vec![LoginAttempt { at: t(100), fence: f1 }, LoginAttempt { at: t(10_500), fence: f2 }]);
    assert_eq!(a.login_attempts(&s, 1).expect("read"), vec![LoginAttempt { at: t(10_500), fence: f2 }]);
    assert!(b.login_attempts(&id("other"), 10).expect("read").is_empty());
    // The history is capped.
    for n in 0..100 {
        b.record_login_attempt(&s, f2, t(11_000 + n)).expect("record");
    }
    assert_eq!(pg.count("SELECT count(*) FROM login_attempts WHERE session = 's'"), 64);
    assert_eq!(b.login_attempts(&s, 1).expect("read")[0].at, t(11_099));
}

#[test]
fn damaged_records_are_quarantined() {
    let Some(pg) = pg("quarantine") else { return };
    let store = pg.open();
    let (a, b) = (id("a"), id("b"));
    store.save(&snapshot_with_grant(&a, 1), Durability::Flushed).expect("save");
    store.save(&snapshot_with_grant(&b, 1), Durability::Flushed).expect("save");
    store.append_logs(&a, &[state_event(1)]).expect("append");
    store.append_logs(&a, &[state_event(2)]).expect("append");
    store.flush().expect("flush");
    let mut raw = pg.raw();
    raw.batch_execute(
        "UPDATE snapshots SET record = '\\x0102'::bytea WHERE session = 'a';
         UPDATE snapshots SET record = set_byte(record, 30, (get_byte(record, 30) + 1) % 256) WHERE session = 'b';
         UPDATE log SET record = '\\x01'::bytea || substr(record, 2, 30) WHERE session = 'a' AND seq = (SELECT min(seq) FROM log WHERE session = 'a');",
    )
    .expect("damage");
    match store.load(&a).expect("load") {
        LoadOutcome::Quarantined { reason, login_attempts } => {
            assert!(reason.contains("shorter than"), "{reason}");
            assert_eq!(login_attempts, None);
        }
        other => panic!("expected Quarantined, got {other:?}"),
    }
    assert!(matches!(store.load(&b).expect("load"), LoadOutcome::Quarantined { .. }));
    // Until the next save it stays quarantined (no fresh login allowance from a reload).
    assert!(matches!(store.load(&a).expect("load"), LoadOutcome::Quarantined { .. }));
    assert_eq!(store.read_log(&a, 10).expect("read"), vec![state_event(2)], "the damaged step is skipped");
    assert_eq!(pg.count("SELECT count(*) FROM quarantine WHERE kind = 'snapshot'"), 2);
    assert_eq!(pg.count("SELECT count(*) FROM quarantine WHERE kind = 'log'"), 1);
    store.save(&snapshot_with_grant(&a, 2), Durability::Flushed).expect("save");
    assert_eq!(found(pg.open().load(&a).expect("load")).generation, Generation(2));
}

#[test]
fn another_key_is_refused_and_the_url_password_stays_secret() {
    let Some(pg) = pg("key_check") else { return };
    drop(pg.open());
    match PostgresStore::open(pg.options(KEY_B)) {
        Err(StoreError::Key { detail }) => assert!(detail.contains("another key"), "{detail}"),
        other => panic!("expected a key error, got {other:?}"),
    }
    let with_password = pg.url.replacen("postgres://warden@", "postgres://warden:hunter2-secret@", 1);
    let options = warden_adapters::PostgresOptions::new(with_password, warden_adapters::StoreKey::from_bytes(KEY_A))
        .schema(pg.schema.clone());
    assert!(!format!("{options:?}").contains("hunter2"));
    // Trust authentication ignores the password: the store opens and names itself without it.
    let store = PostgresStore::open(options).expect("open");
    assert!(!format!("{store:?}").contains("hunter2") && !store.place().contains("hunter2"));
    let unreachable = warden_adapters::PostgresOptions::new(
        "postgres://warden:hunter2-secret@127.0.0.1:1/warden",
        warden_adapters::StoreKey::from_bytes(KEY_A),
    );
    match PostgresStore::open(unreachable) {
        Err(error) => assert!(!error.to_string().contains("hunter2"), "{error}"),
        Ok(_) => panic!("port 1 has no PostgreSQL"),
    }
}

#[test]
fn a_killed_connection_loses_no_write_reported_durable() {
    let Some(pg) = pg("killed_connection") else { return };
    let store = pg.open();
    let sessions: Vec<_> = (0..20).map(|n| id(&format!("k{n}"))).collect();
    let mut durable = vec![0u64; sessions.len()];
    let mut written = vec![0u64; sessions.len()];
    let mut killed = 0;
    let mut failed_flushes = 0;
    let mut killer = pg.raw();
    let kill = format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'warden/{}' AND pid <> pg_backend_pid()) AS k",
        pg.schema
    );
    for round in 1..=60u64 {
        for (n, session) in sessions.iter().enumerate() {
            store.save_deferred(&snapshot_with_grant(session, round)).expect("queued");
            written[n] = round;
        }
        if round % 10 == 5 {
            // Kill the store's connection between queueing and flushing.
            killed += killer.query_one(&kill, &[]).expect("kill").get::<_, i64>(0);
        }
        match store.flush() {
            Ok(()) => durable.clone_from(&written),
            Err(StoreError::Io { .. }) => failed_flushes += 1,
            Err(other) => panic!("unexpected flush error: {other}"),
        }
    }
    let mut settled = false;
    for _ in 0..50 {
        if store.flush().is_ok() {
            settled = true;
            break;
        }
    }
    assert!(settled, "the store recovers its connection");
    assert!(killed >= 6, "the connection was killed {killed} times");
    assert!(store.stats().reconnects >= 1, "{:?}", store.stats());
    let reader = pg.open();
    for (n, session) in sessions.iter().enumerate() {
        let generation = found(reader.load(session).expect("load")).generation;
        assert!(
            generation.0 >= durable[n],
            "session {session}: {generation} is older than the durable g{}",
            durable[n]
        );
        assert_eq!(generation.0, written[n], "every queued write is retried until committed");
    }
    eprintln!("killed {killed} times, {failed_flushes} flushes failed, stats {:?}", store.stats());
}

/// Group commit on PostgreSQL: 10,000 sessions' snapshots saved deferred by 4 threads, each write
/// handing a ticket to one committer thread that takes every ticket queued and flushes once for them, as
/// the runtime's `GroupCommit` does; then, for comparison, 1,000 saves with `Durability::Flushed` one
/// after the other (a transaction each). Elapsed time from the database's clock (this crate reads no
/// clock). `cargo test --release -p warden-adapters --test store_postgres -- --ignored --nocapture
/// group_commit_throughput`
#[test]
#[ignore = "a measurement: run it by name"]
fn group_commit_throughput() {
    let Some(pg) = pg("throughput") else { return };
    let store = std::sync::Arc::new(pg.open());
    let sessions: Vec<_> = (0..10_000).map(|n| id(&format!("bench-{n:05}"))).collect();
    let snapshots: Vec<Snapshot> = sessions.iter().map(|s| snapshot_with_grant(s, 1)).collect();
    let mut clock = pg.raw();
    let mut seconds_now = || -> f64 {
        clock.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]).expect("clock").get(0)
    };
    let started = seconds_now();
    let (tickets, queued) = std::sync::mpsc::channel::<()>();
    let committer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let (mut flushes, mut answered) = (0u64, 0u64);
            // Blocks for the first ticket of a round, then takes every other one queued.
            while let Ok(()) = queued.recv() {
                let round = 1 + queued.try_iter().count() as u64;
                store.flush().expect("flush");
                flushes += 1;
                answered += round;
            }
            (flushes, answered)
        })
    };
    std::thread::scope(|scope| {
        for chunk in snapshots.chunks(2_500) {
            let (store, tickets) = (store.clone(), tickets.clone());
            scope.spawn(move || {
                for snapshot in chunk {
                    assert_eq!(store.save_deferred(snapshot).expect("save"), Pending::Flush);
                    tickets.send(()).expect("ticket");
                }
            });
        }
    });
    drop(tickets);
    let (flushes, answered) = committer.join().expect("committer");
    let ended = seconds_now();
    let stats = store.stats();
    let seconds = ended - started;
    eprintln!(
        "group commit on PostgreSQL: {} writes in {:.3} s = {:.0} writes/s, {:.1} µs/write; {} transactions \
         ({:.2} per 1000 writes), {} flushes for {} tickets ({:.2} per 1000 writes)",
        stats.writes_committed,
        seconds,
        stats.writes_committed as f64 / seconds,
        seconds * 1e6 / stats.writes_committed as f64,
        stats.batches,
        stats.batches as f64 * 1000.0 / stats.writes_committed as f64,
        flushes,
        answered,
        flushes as f64 * 1000.0 / answered as f64,
    );
    assert_eq!((stats.writes_committed, answered), (10_000, 10_000));
    assert_eq!(pg.count("SELECT count(*) FROM snapshots"), 10_000);

    let started = seconds_now();
    for snapshot in &snapshots[..1_000] {
        store.save(snapshot, Durability::Flushed).expect("flushed save");
    }
    let seconds = seconds_now() - started;
    eprintln!(
        "without group commit: 1000 saves with Durability::Flushed, one after the other: {:.3} s = {:.0} writes/s, \
         {:.1} µs/write",
        seconds,
        1_000.0 / seconds,
        seconds * 1e3
    );
}

#[test]
fn a_flushed_save_that_cannot_commit_fails_after_a_bounded_wait() {
    let Some(pg) = pg("bounded_wait") else { return };
    let store = PostgresStore::open(pg.options(KEY_A).flush_timeout(Duration::from_millis(200))).expect("open");
    let s = id("s");
    // Hold the lease row's table exclusively: the batch cannot take its share lock.
    let m = member("m");
    let f = granted(store.acquire_lease(&s, &m, TTL, t(0)).expect("acquire"));
    let mut blocker = pg.raw();
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE").expect("lock");
    match store.save_fenced(&bare_snapshot(&s), Durability::Flushed, f) {
        Err(StoreError::Io { detail, .. }) => assert!(detail.contains("none of them is durable"), "{detail}"),
        other => panic!("a flushed save cannot succeed while its batch waits: {other:?}"),
    }
    tx.rollback().expect("unlock");
    let mut flushed = false;
    for _ in 0..100 {
        if store.flush().is_ok() {
            flushed = true;
            break;
        }
    }
    assert!(flushed);
    assert_eq!(found(store.load(&s).expect("load")), bare_snapshot(&s));
}

#[test]
fn two_members_racing_for_the_same_sessions_get_one_owner_each() {
    let Some(pg) = pg("race") else { return };
    let sessions: Vec<_> = (0..100).map(|n| id(&format!("race{n:03}"))).collect();
    let winners: Vec<Vec<(usize, Fence)>> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["m1", "m2"]
            .into_iter()
            .map(|name| {
                let (pg, sessions) = (pg.clone(), &sessions);
                scope.spawn(move || {
                    let store = pg.open();
                    let me = member(name);
                    let mut won = Vec::new();
                    for (n, session) in sessions.iter().enumerate() {
                        if let LeaseOutcome::Granted(lease) =
                            store.acquire_lease(session, &me, TTL, t(0)).expect("acquire")
                        {
                            won.push((n, lease.fence));
                        }
                    }
                    won
                })
            })
            .collect();
        racers.into_iter().map(|racer| racer.join().expect("racer")).collect()
    });
    let mut owners = vec![0; sessions.len()];
    for won in &winners {
        for (n, fence) in won {
            owners[*n] += 1;
            assert_eq!(*fence, Fence(1), "the first grant of a session");
        }
    }
    assert!(owners.iter().all(|count| *count == 1), "exactly one owner per session: {owners:?}");
    assert_eq!(pg.count("SELECT count(*) FROM leases WHERE fence = 1"), 100);
}

#[test]
fn logs_are_trimmed_to_the_retention_in_passing() {
    let Some(pg) = pg("log_retention") else { return };
    let store = PostgresStore::open(pg.options(KEY_A).log_retention(5)).expect("open");
    let s = id("s");
    for n in 0..200 {
        store.append_log(&s, &state_event(n)).expect("append");
    }
    store.flush().expect("flush");
    let kept = pg.count("SELECT count(*) FROM log WHERE session = 's'");
    assert!((5..=5 + 64).contains(&kept), "{kept} steps kept");
    assert_eq!(store.read_log(&s, 3).expect("read"), vec![state_event(197), state_event(198), state_event(199)]);
}
