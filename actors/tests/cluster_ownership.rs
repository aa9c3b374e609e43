//! Several `Warden`s (members) in one process on one PostgreSQL database (`eval "$(tests/pg/start.sh)"`
//! sets `WARDEN_PG_URL`), each with its own `PostgresStore` (its own connection), and a counting fake
//! broker per session: every session has exactly one owner; a member that dies (its renewal stops and it
//! is dropped without releasing) loses its sessions to the others after the TTL with no login for a
//! still-valid grant; a paused member cannot write or log in after the takeover; a joining member gets its
//! share without a second login. Without `WARDEN_PG_URL` every test says why it skips and passes, unless
//! `WARDEN_PG_TEST=required`. Time is tokio's paused time; loops are bounded and the tests assert outcomes.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, TokenError, Warden, WardenEventKind};
use warden_engine::SessionId;

/// `n` sessions, each with its own counting broker (the same one on every member).
fn sessions(n: usize) -> (Vec<SessionSpec>, Vec<Arc<ScriptedBroker>>) {
    let brokers: Vec<Arc<ScriptedBroker>> = (0..n)
        .map(|i| {
            Arc::new(ScriptedBroker::new(&format!("b{i}")).login_fallback(Reply::grant(Duration::from_secs(8 * 3600))))
        })
        .collect();
    let specs = brokers
        .iter()
        .enumerate()
        .map(|(i, broker)| SessionSpec::new(SessionId::new(format!("acct-{i}")).expect("id"), broker.clone()))
        .collect();
    (specs, brokers)
}

/// Every session owned by exactly one of `members`, or the owners seen (session → members).
fn owners(members: &[&Warden], specs: &[SessionSpec]) -> Result<(), String> {
    for spec in specs {
        let holding: Vec<String> = members
            .iter()
            .filter(|m| m.owned().contains(&spec.id))
            .map(|m| m.member().expect("member").to_string())
            .collect();
        if holding.len() != 1 {
            return Err(format!("session {} is owned by {holding:?}", spec.id));
        }
    }
    Ok(())
}

/// Ticks (bounded) until every session has exactly one owner among `members`; the ticks it took.
async fn settle(members: &[&Warden], specs: &[SessionSpec]) -> usize {
    let mut last = String::new();
    for tick in 0..MAX_TICKS {
        match owners(members, specs) {
            Ok(()) => return tick,
            Err(why) => last = why,
        }
        tokio::time::sleep(TICK).await;
    }
    panic!("the cluster did not settle within {MAX_TICKS} ticks: {last}");
}

/// Takes a token from each session's owner (a login the first time).
async fn use_every_session(members: &[&Warden], specs: &[SessionSpec]) {
    for spec in specs {
        let owner = members.iter().find(|m| m.owned().contains(&spec.id)).expect("an owner");
        let handle = owner.session(&spec.id).expect("open on its owner");
        handle.token().await.expect("a token");
    }
}

fn logins(brokers: &[Arc<ScriptedBroker>]) -> Vec<u64> {
    brokers.iter().map(|b| b.logins()).collect()
}

#[tokio::test(start_paused = true)]
async fn every_session_has_one_owner_and_a_dead_members_sessions_move_without_a_login() {
    let Some((url, schema)) = pg("death") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let b = member(&url, &schema, "warden-b", &clock).await;
    let c = member(&url, &schema, "warden-c", &clock).await;
    let (specs, brokers) = sessions(30);
    for m in [&a, &b, &c] {
        m.place(specs.clone()).await.expect("place");
    }
    settle(&[&a, &b, &c], &specs).await;
    for m in [&a, &b, &c] {
        assert!(!m.owned().is_empty(), "{:?} got no share", m.member());
    }
    use_every_session(&[&a, &b, &c], &specs).await;
    assert!(logins(&brokers).iter().all(|&n| n == 1), "one login per session: {:?}", logins(&brokers));

    // A dies: its renewal stops and it is gone without releasing anything.
    let a_sessions: HashSet<SessionId> = a.owned().into_iter().collect();
    a.stop_renewing();
    drop(a);
    let died = clock.now();
    let ticks = settle(&[&b, &c], &specs).await;
    let took = clock.now().as_millis() - died.as_millis();
    eprintln!(
        "takeover of {} sessions: {took} ms of (paused) time after the death, TTL {} ms ({ticks} ticks)",
        a_sessions.len(),
        TTL.as_millis()
    );
    use_every_session(&[&b, &c], &specs).await;
    assert!(logins(&brokers).iter().all(|&n| n == 1), "the grants were reused: {:?}", logins(&brokers));
    assert!(brokers.iter().all(|b| b.logouts() == 0), "nobody logged out");
    b.shutdown(false).await;
    c.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_member_cannot_write_or_log_in_after_the_takeover() {
    let Some((url, schema)) = pg("paused") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let b = member(&url, &schema, "warden-b", &clock).await;
    let (specs, brokers) = sessions(12);
    for m in [&a, &b] {
        m.place(specs.clone()).await.expect("place");
    }
    settle(&[&a, &b], &specs).await;
    use_every_session(&[&a, &b], &specs).await;
    let stale: Vec<SessionId> = a.owned();
    assert!(!stale.is_empty());
    let handles: Vec<_> = stale.iter().map(|id| a.session(id).expect("open on a")).collect();
    let mut events = a.events();

    // A is paused: it renews nothing, but its sessions' actors still run.
    a.stop_renewing();
    let paused_at = clock.now();
    for _ in 0..MAX_TICKS {
        if stale.iter().all(|id| b.owned().contains(id)) {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    assert!(stale.iter().all(|id| b.owned().contains(id)), "b took over every session of a");
    eprintln!(
        "takeover from a paused member: {} ms after its last renewal",
        clock.now().as_millis() - paused_at.as_millis()
    );
    let before = logins(&brokers);

    // A wakes up and is asked to log in again (a reset): the attempt record under its old fence is refused,
    // so no login reaches the broker, and the session stops there.
    for handle in &handles {
        let _ = handle.reset().await;
    }
    for handle in &handles {
        let mut answer = Err(TokenError::Closed);
        for _ in 0..40 {
            answer = handle.token().await.map(|_| ());
            if answer == Err(TokenError::NotOwner) {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        assert_eq!(answer, Err(TokenError::NotOwner), "session {} on the paused member", handle.id());
    }
    assert_eq!(logins(&brokers), before, "the paused member made no login");
    assert!(a.owned().is_empty(), "the paused member owns nothing");
    let mut lost = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event.kind, WardenEventKind::OwnershipLost { .. }) {
            lost += 1;
        }
    }
    assert_eq!(lost, stale.len(), "one OwnershipLost event per session");

    // Its sessions are B's, with their grants.
    use_every_session(&[&b], &specs).await;
    assert_eq!(logins(&brokers), before, "b reused every grant");
    a.shutdown(false).await;
    b.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_joining_member_gets_its_share_without_a_second_login() {
    let Some((url, schema)) = pg("join") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let (specs, brokers) = sessions(30);
    assert_eq!(a.place(specs.clone()).await.expect("place"), 30, "alone, a runs every session");
    use_every_session(&[&a], &specs).await;

    let b = member(&url, &schema, "warden-b", &clock).await;
    b.place(specs.clone()).await.expect("place");
    let joined = clock.now();
    for _ in 0..MAX_TICKS {
        if !b.owned().is_empty() && owners(&[&a, &b], &specs).is_ok() {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let share = b.owned().len();
    eprintln!("b joined and got {share} of 30 sessions within {} ms", clock.now().as_millis() - joined.as_millis());
    assert!((5..=25).contains(&share), "b got a share: {share}");
    owners(&[&a, &b], &specs).expect("one owner each");
    use_every_session(&[&a, &b], &specs).await;
    assert!(logins(&brokers).iter().all(|&n| n == 1), "the handover reused the grants: {:?}", logins(&brokers));

    // A drains: its leases are released at once, and b takes everything over without waiting for a TTL.
    let drained = clock.now();
    a.shutdown(false).await;
    settle(&[&b], &specs).await;
    eprintln!("after a drained, b ran all 30 within {} ms", clock.now().as_millis() - drained.as_millis());
    use_every_session(&[&b], &specs).await;
    assert!(logins(&brokers).iter().all(|&n| n == 1), "{:?}", logins(&brokers));
    b.shutdown(false).await;
}
