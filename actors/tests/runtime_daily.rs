//! Daily cut-offs in the runtime: the warm-up login happens whatever ended the token, a broker whose login
//! after its daily expiry needs a person gets no automatic login, a login in flight across the cut-off is
//! made again at once, and short tokens are refreshed ahead.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, TokenError, Warden, WardenEventKind};
use warden_engine::{
    AfterCutoff, Capabilities, DailyCutoff, EventKind, Generation, InvalidReason, Mode, Preset, Rate, Secret,
    SessionId, StateKind, UnixMs,
};

const HOUR_MS: i64 = 3_600_000;

fn cutoff(at: &str, warmup: Option<&str>) -> DailyCutoff {
    let mut cutoff = DailyCutoff::new(at.parse().unwrap(), "Asia/Kolkata").unwrap();
    cutoff.warmup = warmup.map(|w| w.parse().unwrap());
    cutoff
}

/// Kite's token dies at 06:00 IST; the policy's cut-off is 06:00 with a warm-up at 08:45. The token's
/// end (minus the margin) comes first, at 05:59:55, so the session expires for `TokenExpired` — and still
/// logs in at 08:45, before the first request of the day.
#[tokio::test(start_paused = true)]
async fn the_warmup_login_happens_when_the_token_died_just_before_the_cutoff() {
    // Logged in Monday 09:00 IST; the token lives until Tuesday 06:00 IST (21 h).
    let broker = Arc::new(ScriptedBroker::new("kite").login_fallback(Reply::grant(Duration::from_secs(21 * 3600))));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.keepalive_interval = None;
    policy.daily_cutoff = Some(cutoff("06:00", Some("08:45")));
    let spec = SessionSpec::new(SessionId::new("kite").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    let clock = warden.clock();
    // Tuesday 08:44:59 IST: expired since 05:59:55, nobody asked, no login yet.
    tokio::time::sleep_until(
        clock.instant_at(UnixMs::from_millis(MONDAY_0900_IST + 23 * HOUR_MS + 44 * 60_000 + 59_000)),
    )
    .await;
    assert_eq!(session.status().state, StateKind::Expired);
    assert_eq!(broker.logins(), 1);
    // 08:45: the warm-up login.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker.logins(), 2, "the warm-up logs in whatever ended the token");
    assert_eq!(session.try_token().map(|l| l.generation), Some(Generation(2)), "the first request finds a token");
    warden.shutdown(false).await;
}

/// With `after_cutoff = "operator"` no login starts by itself after the cut-off; requests fail fast with
/// an error that names the cut-off and the way back; a request token handed in brings the session back.
#[tokio::test(start_paused = true)]
async fn after_the_cutoff_a_person_must_log_in() {
    let broker = Arc::new(ScriptedBroker::new("kite").login_fallback(Reply::grant(Duration::from_secs(30 * 3600))));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.keepalive_interval = None;
    policy.daily_cutoff = Some(cutoff("06:00", Some("08:45")));
    policy.after_cutoff = AfterCutoff::Operator;
    let spec = SessionSpec::new(SessionId::new("kite").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    let clock = warden.clock();
    // Tuesday 06:00 IST: the cut-off. Nothing logs in for the rest of the day: not the warm-up, not a
    // request, not a rejection.
    tokio::time::sleep_until(clock.instant_at(UnixMs::from_millis(MONDAY_0900_IST + 21 * HOUR_MS + 1_000))).await;
    assert_eq!(session.status().state, StateKind::Invalid);
    session.report_rejection(Generation(1), warden_engine::ErrorClass::AuthExpired);
    let asked = clock.now();
    let error = session.token().await.unwrap_err();
    assert_eq!(clock.now(), asked, "the request fails fast");
    match &error {
        TokenError::Invalid(InvalidReason::AfterCutoff { cutoff_at }) => {
            assert_eq!(*cutoff_at, UnixMs::from_millis(MONDAY_0900_IST + 21 * HOUR_MS));
        }
        other => panic!("{other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("daily expiry") && text.contains("supply_second_factor"), "{text}");
    tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
    assert_eq!(broker.logins(), 1, "no automatic login after the cut-off");
    // An operator hands in the request token from the broker's browser login.
    session.supply_second_factor(Secret::new("request-token-1")).await.unwrap();
    assert_eq!(session.token().await.unwrap().generation, Generation(2));
    assert_eq!(broker.logins(), 2);
    warden.shutdown(false).await;
}

/// A login started at 02:59:59 IST and answered at 03:00:01, after the 03:00 cut-off: its token is dead.
/// It is discarded and made again at once (no backoff), and the waiting request gets the new token.
#[tokio::test(start_paused = true)]
async fn a_login_across_the_cutoff_is_discarded_and_made_again_at_once() {
    let start = MONDAY_0900_IST + 18 * HOUR_MS - 1_000; // Tuesday 02:59:59 IST
    let broker = Arc::new(
        ScriptedBroker::new("kotak")
            .with_latency(Duration::from_secs(2))
            .login_fallback(Reply::grant(Duration::from_secs(24 * 3600))),
    );
    let warden = Warden::builder().clock(clock_at(start)).build().await.unwrap();
    let mut events = warden.events();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.keepalive_interval = None;
    policy.daily_cutoff = Some(cutoff("03:00", None));
    let spec = SessionSpec::new(SessionId::new("kotak").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    let lease = session.token().await.unwrap();
    let clock = warden.clock();
    assert_eq!(lease.generation, Generation(1), "the discarded grant never got a generation");
    assert_eq!(clock.now(), UnixMs::from_millis(start + 4_000), "served at 03:00:03: the second login ran at once");
    assert_eq!(broker.logins(), 2);
    assert_eq!(broker.logouts(), 1, "the dead grant is logged out");
    let discarded = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e.kind, WardenEventKind::Session(EventKind::LoginDiscarded { .. })));
    assert!(discarded, "an event says the login was discarded");
    warden.shutdown(false).await;
}

/// Ten-second tokens with a refresh grant: the defaults (5 s margin, 300 s buffer) scale down, so a
/// request a second never waits.
#[tokio::test(start_paused = true)]
async fn ten_second_tokens_are_refreshed_ahead_with_the_default_policy() {
    let pair = Reply::grant_with_refresh(Duration::from_secs(10), Duration::from_secs(3600));
    let broker = Arc::new(
        ScriptedBroker::new("oauth")
            .with_capabilities(Capabilities { refresh: true, keepalive: false })
            .login_fallback(pair.clone())
            .refresh_fallback(pair),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let spec = SessionSpec::new(SessionId::new("oauth").unwrap(), broker.clone());
    let session = warden.open(spec).await.unwrap();
    assert!(wait_for_state(&session, StateKind::Valid, Duration::from_secs(1)).await);
    let mut waited = 0;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if session.try_token().is_none() {
            waited += 1;
        }
    }
    assert_eq!(waited, 0, "no request waited");
    assert_eq!(broker.logins(), 1);
    assert!(broker.refreshes() >= 55, "refreshed ahead every ~5 s: {}", broker.refreshes());
    warden.shutdown(false).await;
}

/// A login-only broker with 60 s tokens cannot be kept alive by 3 logins per 5 minutes: said when the
/// session opens (the broker declares its token lifetime) and again when the first grant shows it.
#[tokio::test(start_paused = true)]
async fn a_policy_that_cannot_keep_the_broker_alive_is_reported_when_the_session_opens() {
    let broker = Arc::new(
        ScriptedBroker::new("short")
            .with_token_lifetime(Duration::from_secs(60))
            .login_fallback(Reply::grant(Duration::from_secs(60))),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut events = warden.events();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.mode = Mode::Eager;
    policy.login_rate = Some(Rate::new(3, Duration::from_secs(300)));
    let spec = SessionSpec::new(SessionId::new("short").unwrap(), broker.clone()).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    session.token().await.unwrap();
    let warnings: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match e.kind {
            WardenEventKind::PolicyWarning { detail }
            | WardenEventKind::Session(EventKind::PolicyWarning { detail }) => Some(detail),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("`login_rate` allows 3"), "{}", warnings[0]);
    warden.shutdown(false).await;
}
