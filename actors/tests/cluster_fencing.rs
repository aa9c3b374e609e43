//! Fenced sessions through `Warden::open` on a shared store (PostgreSQL from `WARDEN_PG_URL`; skipped
//! without it unless `WARDEN_PG_TEST=required`): a session opens on one member only; a member whose lease
//! lapsed is fenced out — it neither logs in nor overwrites the new owner, and its handles answer
//! `NotOwner` — while the new owner reuses the grant; a member that shuts down hands its sessions over at
//! once; a new owner waits out a login its predecessor may still have in flight. Paused time, bounded
//! loops, outcomes asserted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, TokenError, WardenError, WardenEventKind};
use warden_engine::SessionId;

fn spec(name: &str, broker: &Arc<ScriptedBroker>) -> SessionSpec {
    SessionSpec::new(SessionId::new(name).expect("id"), broker.clone())
}

fn long_grants(name: &str) -> Arc<ScriptedBroker> {
    Arc::new(ScriptedBroker::new(name).login_fallback(Reply::grant(Duration::from_secs(8 * 3600))))
}

#[tokio::test(start_paused = true)]
async fn a_session_opens_on_one_member_only() {
    let Some((url, schema)) = pg("one_member") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let b = member(&url, &schema, "warden-b", &clock).await;
    let broker = long_grants("kite");
    let on_a = a.open(spec("kite-main", &broker)).await.expect("a opens it");
    on_a.token().await.expect("a token");
    match b.open(spec("kite-main", &broker)).await {
        Err(WardenError::NotOwner { holder, .. }) => assert_eq!(holder.as_str(), "warden-a"),
        other => panic!("b must not open a session a holds: {other:?}"),
    }
    // A renews its lease: much later, b still cannot take it.
    tokio::time::sleep(TTL * 5).await;
    assert!(matches!(b.open(spec("kite-main", &broker)).await, Err(WardenError::NotOwner { .. })));
    assert!(on_a.token().await.is_ok());
    assert_eq!(broker.logins(), 1);
    a.shutdown(false).await;
    b.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_lease_lapsed_is_fenced_out_and_the_new_owner_reuses_the_grant() {
    let Some((url, schema)) = pg("fenced_out") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let b = member(&url, &schema, "warden-b", &clock).await;
    let broker = long_grants("saxo");
    let idle = long_grants("saxo-idle");
    let on_a = a.open(spec("saxo-main", &broker)).await.expect("a opens it");
    let first = on_a.token().await.expect("a token").generation;
    // A second session a holds but has not logged in yet.
    let idle_on_a = a.open(spec("saxo-idle", &idle)).await.expect("a opens it");
    let mut a_events = a.events();

    // A pauses (no renewal); past its TTL b takes both sessions over and gets the stored grant, no login.
    a.stop_renewing();
    tokio::time::sleep(TTL + TICK).await;
    let on_b = b.open(spec("saxo-main", &broker)).await.expect("b takes the lapsed session over");
    assert_eq!(on_b.token().await.expect("b's token").generation, first, "the grant was reused");
    assert_eq!(broker.logins(), 1);
    b.open(spec("saxo-idle", &idle)).await.expect("b takes the idle session over");

    // A wakes and is asked for a token its idle session does not have: its login is refused before the
    // broker call (the attempt is not recorded under a lost lease), and the session stops for good.
    assert_eq!(idle_on_a.token().await.map(|_| ()), Err(TokenError::NotOwner));
    assert_eq!(idle.logins(), 0, "the stale member made no login");
    // Asked to log in again on the session b now runs (an operator reset), a is refused the same way.
    let _ = on_a.reset().await;
    let mut answer = Ok(());
    for _ in 0..MAX_TICKS {
        answer = on_a.token().await.map(|_| ());
        if answer.is_err() {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(answer, Err(TokenError::NotOwner));
    assert_eq!(broker.logins(), 1, "the stale member made no login");
    assert_eq!(broker.logouts() + idle.logouts(), 0, "and no logout");
    let mut lost = Vec::new();
    while let Ok(event) = a_events.try_recv() {
        assert!(!lost.contains(&event.session), "nothing is said of a session after its loss: {event}");
        if matches!(event.kind, WardenEventKind::OwnershipLost { .. }) {
            lost.push(event.session.clone());
        }
    }
    assert_eq!(lost.len(), 2, "a said it lost both sessions: {lost:?}");

    // B's session is untouched by a's reset: same grant, still served; reopened, it is still that grant.
    assert_eq!(on_b.token().await.expect("b's token").generation, first);
    b.close(on_b.id()).await.expect("close");
    let again = b.open(spec("saxo-main", &broker)).await.expect("reopen");
    assert_eq!(again.token().await.expect("token").generation, first, "nothing of a's reset was stored");
    assert_eq!(broker.logins(), 1);
    a.shutdown(false).await;
    b.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_member_that_shuts_down_hands_its_sessions_over_at_once() {
    let Some((url, schema)) = pg("drain") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let b = member(&url, &schema, "warden-b", &clock).await;
    let broker = long_grants("ibkr");
    a.open(spec("ibkr-main", &broker)).await.expect("open").token().await.expect("token");
    let mut events = a.events();
    a.shutdown(false).await;
    // No wait for a TTL: the lease was released.
    let on_b = b.open(spec("ibkr-main", &broker)).await.expect("b opens it at once");
    on_b.token().await.expect("token");
    assert_eq!((broker.logins(), broker.logouts()), (1, 0));
    let handed = std::iter::from_fn(|| events.try_recv().ok())
        .any(|event| matches!(event.kind, WardenEventKind::HandedOver { .. }));
    assert!(handed, "a said it handed the session over");
    b.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_new_owner_waits_out_its_predecessors_login_attempt() {
    let Some((url, schema)) = pg("wait_out") else { return };
    let clock = clock_at(MONDAY_0900_IST);
    let a = member(&url, &schema, "warden-a", &clock).await;
    let b = member(&url, &schema, "warden-b", &clock).await;
    // A's login hangs (the broker is slow); a dies in the middle of it.
    let broker = Arc::new(ScriptedBroker::new("kotak").script_logins([Reply::Hang]));
    let on_a = a.open(spec("kotak-main", &broker)).await.expect("open");
    let auth_timeout = on_a.policy().auth_timeout;
    let waiting = tokio::spawn({
        let on_a = on_a.clone();
        async move { on_a.token().await.map(|_| ()) }
    });
    for _ in 0..MAX_TICKS {
        if broker.logins() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(broker.logins(), 1, "a's login is in flight");
    a.stop_renewing();
    drop(on_a);
    drop(a);
    let _ = waiting.await;

    // After the TTL b takes over: there is no grant, so it must log in, but only once a's attempt is older
    // than auth_timeout (a's call may still reach the broker until then).
    tokio::time::sleep(TTL + TICK).await;
    let on_b = b.open(spec("kotak-main", &broker)).await.expect("b takes over");
    on_b.token().await.expect("b's login");
    assert_eq!(broker.logins(), 2);
    let store = b.store();
    let id = on_b.id().clone();
    let attempts = tokio::task::spawn_blocking(move || store.login_attempts(&id, 2)).await.expect("ran").expect("read");
    let [first, second] = attempts[..] else { panic!("two attempts: {attempts:?}") };
    eprintln!(
        "b's login attempt came {} ms after a's (auth_timeout {} ms)",
        second.at.as_millis() - first.at.as_millis(),
        auth_timeout.as_millis()
    );
    assert!(first.fence < second.fence, "a's attempt, then b's under a newer fence");
    assert!(second.at >= first.at.saturating_add(auth_timeout), "b logged in only after a's attempt timed out");
    b.shutdown(false).await;
}
