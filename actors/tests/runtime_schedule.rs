//! Proactive refreshes, keep-alives, daily cut-offs and lock-out protection, over simulated hours.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, TokenError, Warden};
use warden_engine::policy::LocalTime;
use warden_engine::{
    Capabilities, DailyCutoff, Generation, InvalidReason, KeepaliveStatus, Mode, Preset, SessionId, StateKind,
};

#[tokio::test(start_paused = true)]
async fn twenty_minute_tokens_with_a_thirty_second_buffer_over_eight_hours() {
    let pair = Reply::grant_with_refresh(Duration::from_secs(20 * 60), Duration::from_secs(60 * 60));
    let broker = Arc::new(
        ScriptedBroker::new("saxo")
            .with_capabilities(Capabilities { refresh: true, keepalive: false })
            .login_fallback(pair.clone())
            .refresh_fallback(pair),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.refresh_buffer = Some(Duration::from_secs(30));
    policy.lazy_threshold = None;
    let spec = SessionSpec::new(SessionId::new("saxo").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert!(wait_for_state(&session, StateKind::Valid, Duration::from_secs(1)).await);

    // One request a second for eight hours: every one finds a token on the hot path.
    let mut waited = 0;
    let mut generations = std::collections::BTreeSet::new();
    for _ in 0..8 * 3600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match session.try_token() {
            Some(lease) => {
                generations.insert(lease.generation);
            }
            None => waited += 1,
        }
    }
    assert_eq!(waited, 0, "no request ever had to wait");
    // A refresh every 19.5 minutes: 480 / 19.5 = 24.6, so 24 refreshes and one login.
    assert_eq!((broker.logins(), broker.refreshes()), (1, 24));
    assert_eq!(generations.len(), 25);
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_saying_unauthenticated_triggers_a_relogin_and_waiting_requests_succeed() {
    let broker = Arc::new(
        ScriptedBroker::new("ibkr")
            .with_capabilities(Capabilities { refresh: false, keepalive: true })
            .with_latency(Duration::from_millis(200))
            .login_fallback(Reply::Grant { lifetime: None, refresh: None }),
    );
    broker.push_keepalives([
        Reply::Keepalive(KeepaliveStatus::Alive),
        Reply::Keepalive(KeepaliveStatus::Unauthenticated), // HTTP 200, authenticated: false
    ]);
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let policy = quiet_policy(Preset::Keepalive);
    let spec = SessionSpec::new(SessionId::new("ibkr").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));

    // Login done at 0.2 s; pings at 60.2 s (alive) and 120.4 s, answered at 120.6 s: silently expired.
    // The eager re-login then takes until 120.8 s; a request at 120.7 s must wait for it.
    let clock = warden.clock();
    tokio::time::sleep_until(clock.instant_at(warden_engine::UnixMs::from_millis(MONDAY_0900_IST + 120_700))).await;
    assert_eq!(broker.keepalives(), 2);
    assert!(session.try_token().is_none(), "the dead token is no longer handed out");
    let asked = clock.now();
    let lease = session.token().await.expect("the request waits for the re-login, then succeeds");
    assert_eq!(lease.generation, Generation(2));
    assert!(clock.now() > asked, "the request waited for the login");
    assert_eq!(broker.logins(), 2);
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_for_a_day_costs_at_most_the_failure_budget() {
    let broker = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::error(401, "Invalid Credentials")));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.mode = Mode::Eager;
    let budget = policy.max_consecutive_failures;
    let spec = SessionSpec::new(SessionId::new("kotak").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(broker.logins(), u64::from(budget));
    let status = session.status();
    assert_eq!(status.state, StateKind::Invalid);
    assert_eq!(status.invalid_reason, Some(InvalidReason::FailureBudgetSpent { failures: budget }));
    let clock = warden.clock();
    let asked = clock.now();
    let error = session.token().await.expect_err("an invalid session fails fast");
    assert_eq!(clock.now(), asked, "no waiting");
    assert!(matches!(error, TokenError::Invalid(InvalidReason::FailureBudgetSpent { .. })));
    assert!(error.to_string().contains("rejected logins in a row"), "{error}");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_token_issued_at_nine_is_not_served_after_the_three_am_cutoff() {
    let broker =
        Arc::new(ScriptedBroker::new("openalgo").login_fallback(Reply::Grant { lifetime: None, refresh: None }));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Daily);
    policy.mode = Mode::Lazy;
    policy.daily_cutoff = Some(DailyCutoff::new(LocalTime::hm(3, 0).unwrap(), "Asia/Kolkata").unwrap());
    let spec = SessionSpec::new(SessionId::new("openalgo").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(broker.logins(), 0, "lazy: no login before the first request");
    let lease = session.token().await.unwrap();
    assert_eq!((lease.generation, broker.logins()), (Generation(1), 1));
    drop(lease);

    // From 09:00:10 to 03:00:01 the next day.
    tokio::time::sleep(Duration::from_secs(18 * 3600 - 10 + 1)).await;
    let now = warden.clock().now().to_string();
    assert_eq!(now, "2026-03-09T21:30:01Z");
    assert!(session.try_token().is_none(), "not served after the cut-off");
    assert_eq!(session.status().state, StateKind::Expired);
    assert_eq!(broker.logins(), 1, "lazy: no login until a request asks");
    assert_eq!(session.token().await.unwrap().generation, Generation(2));
    assert_eq!(broker.logins(), 2);
    warden.shutdown(false).await;
}
