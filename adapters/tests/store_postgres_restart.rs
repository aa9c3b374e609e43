//! The PostgreSQL store across a restart of PostgreSQL itself (`pg_ctl restart` of the cluster that
//! `tests/pg/start.sh` started, found through `WARDEN_PG_DIR`): writes reported durable before it are
//! there after it, and the store reconnects by itself. Alone in its binary, because the restart cuts
//! every connection to the cluster. Skips (and passes) without `WARDEN_PG_URL` or `WARDEN_PG_DIR`,
//! unless `WARDEN_PG_TEST=required`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::pg::pg;
use common::*;
use warden_engine::{Durability, Fence, Generation, LeaseOutcome, LoadOutcome, MemberName, Store, StoreError};

#[test]
fn the_store_recovers_from_a_postgresql_restart() {
    let Some(pg) = pg("restart") else { return };
    let Ok(dir) = std::env::var("WARDEN_PG_DIR") else {
        let required = std::env::var("WARDEN_PG_TEST").is_ok_and(|v| v == "required");
        assert!(!required, "WARDEN_PG_TEST=required but WARDEN_PG_DIR is not set (tests/pg/start.sh sets it)");
        eprintln!("restart: WARDEN_PG_DIR is not set: no cluster to restart; skipped");
        return;
    };
    let store = pg.open();
    let sessions: Vec<_> = (0..50).map(|n| id(&format!("r{n}"))).collect();
    let member = MemberName::new("m1").expect("member");
    let LeaseOutcome::Granted(lease) =
        store.acquire_lease(&sessions[0], &member, Duration::from_secs(60), t(0)).expect("acquire")
    else {
        panic!("the lease is free")
    };
    for session in &sessions {
        store.save_deferred(&snapshot_with_grant(session, 1)).expect("queued");
    }
    store.flush().expect("durable before the restart");

    let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    let mut restart = Command::new("runuser");
    restart.args(["-u", "postgres", "--", &format!("{bin}/pg_ctl"), "-D", &format!("{dir}/data"), "-m", "fast", "-w"]);
    restart.arg("restart");
    let status = restart.stdout(std::process::Stdio::null()).status().expect("pg_ctl");
    assert!(status.success(), "pg_ctl restart failed");

    // Writes queued after the restart are committed once the store has reconnected.
    for session in &sessions {
        store.save_deferred(&snapshot_with_grant(session, 2)).expect("queued");
    }
    let mut flushed = false;
    for _ in 0..20 {
        match store.flush() {
            Ok(()) => {
                flushed = true;
                break;
            }
            Err(StoreError::Io { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(flushed, "the store reconnects after the restart");
    assert!(store.stats().reconnects >= 1, "{:?}", store.stats());
    for session in &sessions {
        match store.load(session).expect("load") {
            LoadOutcome::Found(snapshot) => assert_eq!(snapshot.generation, Generation(2)),
            other => panic!("expected the snapshot of {session}, got {other:?}"),
        }
    }
    // Leases and fences survive the restart.
    assert_eq!(
        store.renew_lease(&sessions[0], &member, lease.fence, Duration::from_secs(60), t(1_000)).expect("renew"),
        t(61_000)
    );
    assert_eq!(lease.fence, Fence(1));
    store.save_fenced(&snapshot_with_grant(&sessions[0], 3), Durability::Flushed, lease.fence).expect("fenced save");
}
