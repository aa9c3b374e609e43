//! Supervision: a panicking adapter restarts the actor, which resumes from the store without a login;
//! a crash loop hits the restart-intensity limit and the session gives up with an event.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, TokenError, Warden, WardenEventKind};
use warden_engine::policy::RestartLimit;
use warden_engine::time::HumanDuration;
use warden_engine::{Capabilities, Generation, InvalidReason, Preset, SessionId, StateKind};

fn ibkr_like() -> ScriptedBroker {
    ScriptedBroker::new("ibkr")
        .with_capabilities(Capabilities { refresh: false, keepalive: true })
        .login_fallback(Reply::grant(Duration::from_secs(24 * 3600)))
}

#[tokio::test(start_paused = true)]
async fn a_panicking_adapter_restarts_the_actor_which_resumes_without_a_login() {
    let broker = Arc::new(ibkr_like());
    broker.push_keepalives([Reply::Panic("adapter bug: unexpected tickle body")]);
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut events = warden.events();
    let policy = quiet_policy(Preset::Keepalive);
    let delay = policy.reinitialize_delay;
    let spec = SessionSpec::new(SessionId::new("ibkr").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));

    // The first keep-alive (at 60 s) panics inside the adapter.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(session.stats().restarts, 1);
    let restart = loop {
        let event = events.recv().await.unwrap();
        if let WardenEventKind::ActorRestarting { delay_ms, cause, .. } = event.kind {
            break (delay_ms, cause);
        }
    };
    let expected = delay.as_millis() as u64;
    assert!(
        (expected * 8 / 10..=expected * 12 / 10).contains(&restart.0),
        "restart after the reinitialize delay: {restart:?}"
    );
    assert!(restart.1.contains("adapter bug"), "{restart:?}");
    // While the actor is down, the still-valid lease keeps being served.
    assert_eq!(session.try_token().map(|l| l.generation), Some(Generation(1)));

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(session.status().state, StateKind::Valid);
    assert_eq!(session.token().await.unwrap().generation, Generation(1), "the grant came back from the store");
    assert_eq!(broker.logins(), 1, "no extra login while the grant is valid");
    let pings = broker.keepalives();
    tokio::time::sleep(Duration::from_secs(121)).await;
    assert!(broker.keepalives() >= pings + 2, "the restarted actor keeps pinging");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_hits_the_restart_limit_and_the_session_gives_up() {
    let broker = Arc::new(ibkr_like().keepalive_fallback(Reply::Panic("adapter bug")));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut events = warden.events();
    let mut policy = quiet_policy(Preset::Keepalive);
    policy.restart_limit = RestartLimit { max: 3, within: HumanDuration(Duration::from_secs(600)) };
    let spec = SessionSpec::new(SessionId::new("loop").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert!(wait_for_state(&session, StateKind::Invalid, Duration::from_secs(3600)).await);
    assert_eq!(session.stats().restarts, 4, "three restarts allowed, the fourth failure gives up");
    let status = session.status();
    assert_eq!(status.invalid_reason, Some(InvalidReason::RestartLimit { restarts: 4, within_ms: 600_000 }));
    let mut gave_up = false;
    while let Ok(event) = events.try_recv() {
        if let WardenEventKind::Session(warden_engine::EventKind::StateChanged {
            to: StateKind::Invalid, reason, ..
        }) = event.kind
        {
            gave_up = matches!(reason, warden_engine::Reason::GaveUp(InvalidReason::RestartLimit { .. }));
        }
    }
    assert!(gave_up, "an event says why");
    assert_eq!(broker.logins(), 1, "restarts resumed the stored grant each time");
    let error = session.token().await.expect_err("requests fail fast");
    assert!(matches!(error, TokenError::Invalid(InvalidReason::RestartLimit { .. })), "{error}");
    // No restart after giving up.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(session.stats().restarts, 4);
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_a_login_cancels_it_so_logins_stay_single_flight() {
    // A 10 s login: the actor fails 1 s into it; its successor must not see the orphan finish beside its
    // own login.
    let broker = Arc::new(ScriptedBroker::new("slow").with_latency(Duration::from_secs(10)));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let policy = quiet_policy(Preset::Hybrid);
    let delay = policy.reinitialize_delay;
    let spec = SessionSpec::new(SessionId::new("slow").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.logins(), 1, "the eager first login is in flight");
    session.inject_failure("crash in the middle of a login").await.unwrap();
    // The successor starts after the reinitialize delay (±20 %) and logs in again.
    tokio::time::sleep(delay * 2).await;
    assert_eq!(broker.logins(), 2, "the successor logs in");
    // The first login would have answered at 10 s: it was cancelled with its actor.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.grants_issued(), 0, "the orphan login did not complete beside the new one");
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    assert_eq!(broker.grants_issued(), 1);
    warden.shutdown(false).await;
}
