//! Real wall time through suspends and clock steps: a wall clock that jumps forward while tokio's
//! monotonic time stands still (a laptop asleep) is noticed within the clock's check interval; no lease
//! past its real end is handed out later than that, and a cut-off that fell in the jump takes effect at
//! once, not when the monotonic timer would have fired. A jump back undoes nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy};
use warden_actors::clock::WallSource;
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{Clock, SessionSpec, Warden, WardenEventKind};
use warden_engine::{DailyCutoff, EventKind, Generation, Preset, Reason, SessionId, UnixMs};

/// A wall clock that follows tokio's time from `start`, plus an offset the test moves.
fn jumping_clock(start: i64) -> (Clock, Arc<AtomicI64>) {
    let follows = clock_at(start);
    let offset_ms = Arc::new(AtomicI64::new(0));
    let source: WallSource = {
        let offset_ms = offset_ms.clone();
        Arc::new(move || UnixMs::from_millis(follows.now().as_millis() + offset_ms.load(Ordering::SeqCst)))
    };
    (Clock::from_source(source, Duration::from_secs(1)), offset_ms)
}

#[tokio::test(start_paused = true)]
async fn after_a_suspend_a_dead_lease_is_withdrawn_within_the_check_interval() {
    let broker = Arc::new(ScriptedBroker::new("saxo").login_fallback(Reply::grant(Duration::from_secs(3600))));
    let (clock, offset_ms) = jumping_clock(MONDAY_0900_IST);
    let warden = Warden::builder().clock(clock.clone()).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.keepalive_interval = None;
    let spec = SessionSpec::new(SessionId::new("laptop").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    assert!(session.try_token().is_some());
    // 45 minutes asleep: the one-hour token died at 10:00 on the wall clock, now 10:15.
    offset_ms.store(45 * 60_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(session.try_token().is_none(), "the dead lease is not handed out after the check interval");
    let lease = session.token().await.unwrap();
    assert_eq!(lease.generation, Generation(2), "a request gets a new login's token");
    assert!(lease.usable_until > clock.now());
    // A jump back changes nothing already decided: no third login, the new lease stays.
    offset_ms.store(15 * 60_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(2));
    assert_eq!(broker.logins(), 2);
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_cutoff_that_fell_in_a_suspend_takes_effect_when_the_process_wakes() {
    // 02:30 IST with a 03:00 cut-off; the machine sleeps 45 minutes.
    let start = MONDAY_0900_IST + 17 * 3_600_000 + 30 * 60_000;
    let broker = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(24 * 3600))));
    let (clock, offset_ms) = jumping_clock(start);
    let warden = Warden::builder().clock(clock.clone()).build().await.unwrap();
    let mut events = warden.events();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.keepalive_interval = None;
    policy.daily_cutoff = Some(DailyCutoff::new("03:00".parse().unwrap(), "Asia/Kolkata").unwrap());
    let spec = SessionSpec::new(SessionId::new("kotak").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    tokio::time::sleep(Duration::from_secs(60)).await;
    offset_ms.store(45 * 60_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let cut = std::iter::from_fn(|| events.try_recv().ok()).find_map(|e| match e.kind {
        WardenEventKind::Session(EventKind::Revoked { reason: Reason::DailyCutoff, .. }) => Some(e.at),
        _ => None,
    });
    let cut = cut.expect("the cut-off took effect within the check interval of waking");
    // The wall clock showed 03:16 when the process woke; without following it, the cut-off would have
    // waited for 45 more minutes of monotonic time.
    assert!(cut.as_millis() <= start + 46 * 60_000 + 2_000, "cut at {cut}");
    assert!(session.try_token().is_none());
    warden.shutdown(false).await;
}
