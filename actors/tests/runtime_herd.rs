//! Herds and rejections: however many requests wait, one login; stale rejections trigger nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, Warden};
use warden_engine::{Capabilities, ErrorClass, Generation, Mode, Preset, SessionId, StateKind};

#[tokio::test(start_paused = true)]
async fn ten_thousand_concurrent_requests_on_an_expired_session_cause_one_login() {
    let broker = Arc::new(ScriptedBroker::new("herd").with_latency(Duration::from_millis(200)));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Lazy;
    let spec = SessionSpec::new(SessionId::new("herd").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert!(wait_for_state(&session, StateKind::Expired, Duration::from_secs(1)).await);
    assert_eq!(broker.logins(), 0, "lazy: no login before the first request");

    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.token().await.map(|lease| lease.generation) })
        })
        .collect();
    let mut generations = Vec::with_capacity(tasks.len());
    for task in tasks {
        generations.push(task.await.unwrap());
    }
    assert_eq!(broker.logins(), 1, "exactly one login for the whole herd");
    assert_eq!(generations.len(), 10_000);
    assert!(generations.iter().all(|g| *g == Ok(Generation(1))), "every request got the new generation");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_thousand_stale_rejections_after_a_refresh_cause_no_login() {
    let broker = Arc::new(
        ScriptedBroker::new("stale")
            .with_capabilities(Capabilities { refresh: true, keepalive: false })
            .login_fallback(Reply::grant_with_refresh(Duration::from_secs(1200), Duration::from_secs(3600)))
            .refresh_fallback(Reply::grant_with_refresh(Duration::from_secs(1200), Duration::from_secs(3600))),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Proactive);
    policy.refresh_buffer = Some(Duration::from_secs(30));
    let spec = SessionSpec::new(SessionId::new("stale").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    // Past the refresh point: generation 2 replaces 1.
    tokio::time::sleep(Duration::from_secs(1171)).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(2));
    assert_eq!((broker.logins(), broker.refreshes()), (1, 1));

    for _ in 0..1_000 {
        session.report_rejection(Generation(1), ErrorClass::AuthExpired);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((broker.logins(), broker.refreshes()), (1, 1), "stale rejections started nothing");
    assert_eq!(session.status().state, StateKind::Valid);
    assert_eq!(session.token().await.unwrap().generation, Generation(2));

    // The current generation's rejection does start one (a refresh: the refresh token still works).
    session.report_rejection(Generation(2), ErrorClass::AuthExpired);
    assert_eq!(session.token_newer_than(Generation(2)).await.unwrap().generation, Generation(3));
    assert_eq!((broker.logins(), broker.refreshes()), (1, 2));
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_herd_on_a_session_that_gives_up_is_told_so_at_once_after_one_login() {
    let broker = Arc::new(ScriptedBroker::new("bad").login_fallback(Reply::error(400, "wrong password")));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Lazy;
    let spec = SessionSpec::new(SessionId::new("bad").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.token().await.map(|lease| lease.generation) })
        })
        .collect();
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(matches!(answer, Err(warden_actors::TokenError::Invalid(_))), "{answer:?}");
    }
    assert_eq!(broker.logins(), 1, "one failed login for the whole herd, no retry per request");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_that_gives_up_while_asking_for_the_herd_hands_the_asking_on() {
    let broker = Arc::new(ScriptedBroker::new("slow").with_latency(Duration::from_millis(200)));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Lazy;
    let spec = SessionSpec::new(SessionId::new("slow").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    // The first request asks for the herd, then its caller gives up.
    let first = {
        let session = session.clone();
        tokio::spawn(async move { session.token().await.map(|lease| lease.generation) })
    };
    tokio::task::yield_now().await;
    let rest: Vec<_> = (0..100)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.token().await.map(|lease| lease.generation) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    first.abort();
    for task in rest {
        assert_eq!(task.await.unwrap(), Ok(Generation(1)), "the others still get the token");
    }
    assert_eq!(broker.logins(), 1);
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_max_waiters_are_refused_at_once() {
    let broker = Arc::new(ScriptedBroker::new("full").with_latency(Duration::from_millis(200)));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Lazy;
    policy.max_waiters = 10;
    let spec = SessionSpec::new(SessionId::new("full").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.token().await.map(|lease| lease.generation) })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(generation) => {
                assert_eq!(generation, Generation(1));
                served += 1;
            }
            Err(warden_actors::TokenError::Overloaded { max_waiters: 10 }) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((served, refused), (10, 20), "ten wait, the rest are refused without waiting");
    warden.shutdown(false).await;
}
