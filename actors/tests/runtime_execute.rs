//! `execute` keeps its promises under load and odd answers: a lease that died while the call waited for
//! the request rate limit is never used, the waits of one attempt share one `request_timeout`, a gateway's
//! 5xx on an order is an unknown outcome, a business 403 costs no login, a fresh token refused again fails
//! the call without another login, and errors say why.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy, wait_for_state};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{ExecuteError, SessionHandle, SessionSpec, TokenError, Warden, WardenEventKind};
use warden_engine::{
    BrokerError, Capabilities, Generation, Idempotency, Mode, Preset, Rate, SessionId, StateKind, UnixMs,
};

async fn open(warden: &Warden, broker: &Arc<ScriptedBroker>, policy: warden_engine::Policy) -> SessionHandle {
    let spec = SessionSpec::new(SessionId::new("acct").unwrap(), broker.clone()).with_policy(policy);
    warden.open(spec).await.unwrap()
}

fn eager(preset: Preset) -> warden_engine::Policy {
    let mut policy = quiet_policy(preset);
    policy.mode = Mode::Eager;
    policy
}

/// A token-endpoint outage across the expiry while a load fills the request limiter: no call starts
/// with a lease past its usable end (or revoked), and no attempt waits longer than its request timeout
/// before its call.
#[tokio::test(start_paused = true)]
async fn a_lease_that_died_during_the_rate_limit_wait_is_never_used() {
    // One-minute tokens, no refresh grant: the re-login at expiry fails twice, 4 s apart (the outage).
    let broker = Arc::new(ScriptedBroker::new("kite").login_fallback(Reply::grant(Duration::from_secs(60))));
    broker.push_logins([Reply::grant(Duration::from_secs(60))]);
    broker.push_logins((0..2).map(|_| Reply::error(503, "token endpoint down")));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = eager(Preset::Reactive);
    policy.request_rate = Some(Rate::new(2, Duration::from_secs(1)));
    policy.request_timeout = Duration::from_secs(30);
    policy.backoff.min = Duration::from_secs(4).into();
    policy.backoff.max = Duration::from_secs(4).into();
    policy.backoff.jitter = 0.0;
    policy.login_rate = None;
    let session = open(&warden, &broker, policy).await;
    assert_eq!(session.token().await.unwrap().generation, Generation(1));
    let clock = warden.clock();
    // From 40 s into the token's life, three calls a second for 40 s against a limit of two: a queue
    // builds in the limiter across the token's usable end (55 s) and the outage (55 s to ~63 s).
    tokio::time::sleep(Duration::from_secs(40)).await;
    let dead_uses = Arc::new(AtomicU64::new(0));
    let waits_ms = Arc::new(Mutex::new(Vec::new()));
    let mut calls = Vec::new();
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(333)).await;
        let (session, clock, dead_uses, waits_ms) =
            (session.clone(), clock.clone(), dead_uses.clone(), waits_ms.clone());
        calls.push(tokio::spawn(async move {
            let asked = clock.now();
            session
                .execute(Idempotency::Idempotent, |lease| {
                    let now = clock.now();
                    if now >= lease.usable_until {
                        dead_uses.fetch_add(1, Ordering::SeqCst);
                    }
                    waits_ms.lock().unwrap().push((lease.generation, now.as_millis() - asked.as_millis()));
                    std::future::ready(Ok::<_, BrokerError>(()))
                })
                .await
        }));
    }
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => ok += 1,
            Err(ExecuteError::RateLimited { .. } | ExecuteError::Token(TokenError::Timeout(_))) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(dead_uses.load(Ordering::SeqCst), 0, "no call used a dead lease");
    let waits = waits_ms.lock().unwrap().clone();
    assert_eq!(waits.len(), ok);
    for generation in [Generation(1), Generation(2)] {
        assert!(waits.iter().any(|(g, _)| *g == generation), "calls went through with {generation}");
    }
    let longest = waits.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
    assert!(longest <= 30_000, "an attempt waited {longest} ms before its call, more than its request timeout");
    assert!(session.stats().stale_after_wait > 0, "the test did put leases past their end during the wait");
    warden.shutdown(false).await;
}

/// Rule 7: a 500, 502 or 504 on an order may have been executed: it is an unknown outcome, never retried;
/// an adapter that knows the answer means "not executed" says so.
#[tokio::test(start_paused = true)]
async fn a_gateway_error_on_an_order_is_an_unknown_outcome() {
    let broker = Arc::new(ScriptedBroker::new("saxo"));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let session = open(&warden, &broker, eager(Preset::Hybrid)).await;
    for status in [500, 502, 504] {
        let calls = AtomicU64::new(0);
        let result = session
            .execute(Idempotency::NonIdempotent, |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err::<(), _>(BrokerError::http(status, "gateway")))
            })
            .await;
        assert!(matches!(result, Err(ExecuteError::OutcomeUnknown(_))), "{status}: {result:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{status}: never retried");
    }
    let result = session
        .execute(Idempotency::NonIdempotent, |_| {
            std::future::ready(Err::<(), _>(BrokerError::http(500, "order rejected: bad price").not_executed()))
        })
        .await;
    assert!(matches!(result, Err(ExecuteError::Broker { .. })), "{result:?}");
    let result = session
        .execute(Idempotency::Idempotent, |_| std::future::ready(Err::<(), _>(BrokerError::http(502, "gateway"))))
        .await;
    assert!(matches!(result, Err(ExecuteError::Broker { .. })), "a quote's 502 is a plain failure: {result:?}");
    warden.shutdown(false).await;
}

/// 20 orders refused with a business 403 ("segment not permitted") 30 s apart: no login, no state change.
#[tokio::test(start_paused = true)]
async fn business_refusals_do_not_log_in_again() {
    let broker = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(8 * 3600))));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let session = open(&warden, &broker, eager(Preset::Hybrid)).await;
    session.token().await.unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let result = session
            .execute(Idempotency::NonIdempotent, |_| {
                std::future::ready(Err::<(), _>(BrokerError::http(403, "segment not permitted")))
            })
            .await;
        match result {
            Err(ExecuteError::Broker { class, .. }) => assert_eq!(class, warden_engine::ErrorClass::Permanent),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(broker.logins(), 1, "a refused order is not an expired token");
    assert_eq!(session.status().state, StateKind::Valid);
    assert_eq!(session.status().generation, Generation(1));
    warden.shutdown(false).await;
}

/// The retry after a rejection is rejected again with a fresh grant: the call fails saying so, no
/// further login starts, an event says so, and the session keeps its grant. A rejection of an older
/// grant still re-logs in (three intraday invalidations are each handled).
#[tokio::test(start_paused = true)]
async fn a_fresh_token_refused_again_fails_the_call_without_another_login() {
    let broker = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::grant(Duration::from_secs(8 * 3600))));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut events = warden.events();
    let session = open(&warden, &broker, eager(Preset::Hybrid)).await;
    session.token().await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let always_401 = |_| std::future::ready(Err::<(), _>(BrokerError::http(401, "not permitted for this token")));
    let result = session.execute(Idempotency::NonIdempotent, always_401).await;
    match &result {
        Err(e @ ExecuteError::FreshTokenRefused { generation, .. }) => {
            assert_eq!(*generation, Generation(2));
            assert!(e.to_string().contains("the broker refused a fresh token"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.logins(), 2, "one re-login for the old grant's rejection, none for the fresh one's");
    assert_eq!((session.status().state, session.status().generation), (StateKind::Valid, Generation(2)));
    let refused = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e.kind, WardenEventKind::FreshTokenRefused { .. }));
    assert!(refused, "an event says the broker refused a fresh token");

    // Three intraday invalidations, minutes apart: each rejection of an older grant re-logs in once and the
    // call succeeds on its retry.
    for n in 0..3u64 {
        tokio::time::sleep(Duration::from_secs(300)).await;
        let first = AtomicU64::new(0);
        let result = session
            .execute(Idempotency::NonIdempotent, |_| {
                let attempt = first.fetch_add(1, Ordering::SeqCst);
                std::future::ready(if attempt == 0 { Err(BrokerError::http(401, "invalid jwt token")) } else { Ok(()) })
            })
            .await;
        assert!(result.is_ok(), "invalidation {n}: {result:?}");
    }
    assert_eq!(broker.logins(), 5);
    warden.shutdown(false).await;
}

/// A request that times out says why: the last failure and what the session waits for.
#[tokio::test(start_paused = true)]
async fn a_timeout_names_the_last_failure_and_the_next_attempt() {
    let broker = Arc::new(ScriptedBroker::new("kotak").login_fallback(Reply::error(503, "service unavailable")));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = eager(Preset::Hybrid);
    policy.request_timeout = Duration::from_secs(3);
    let session = open(&warden, &broker, policy).await;
    let error = session.token().await.unwrap_err();
    assert!(matches!(error, TokenError::Timeout(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.starts_with("no token within the request timeout; the last login failed at"), "{text}");
    assert!(text.contains("HTTP 503") && text.contains("service unavailable"), "{text}");
    assert!(text.contains("the next login may start at") && text.contains("backing off"), "{text}");
    let status = session.status();
    assert!(status.last_failure.is_some() && status.waiting_for.is_some(), "{status:?}");
    warden.shutdown(false).await;
}

/// After a 25 s outage of the token endpoint across the expiry, the session serves again within 2 s of
/// the broker's return, with no login.
#[tokio::test(start_paused = true)]
async fn the_session_serves_within_two_seconds_of_the_token_endpoint_returning() {
    let pair = Reply::grant_with_refresh(Duration::from_secs(20 * 60), Duration::from_secs(60 * 60));
    let broker = Arc::new(
        ScriptedBroker::new("saxo")
            .with_capabilities(Capabilities { refresh: true, keepalive: false })
            .login_fallback(pair.clone())
            .refresh_fallback(pair),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = eager(Preset::Hybrid);
    policy.refresh_buffer = Some(Duration::from_secs(30));
    let session = open(&warden, &broker, policy).await;
    assert!(wait_for_state(&session, StateKind::Valid, Duration::from_secs(1)).await);
    let clock = warden.clock();
    // The refresh is due at 19m30s; the endpoint answers 503 from 19m20s until 20m07s (a 47 s outage;
    // with the plain backoff the next try after the return would come only at about 20m45s).
    let down_from = UnixMs::from_millis(MONDAY_0900_IST + 19 * 60_000 + 20_000);
    let back_at = UnixMs::from_millis(MONDAY_0900_IST + 20 * 60_000 + 7_000);
    tokio::time::sleep_until(clock.instant_at(down_from)).await;
    broker.push_refreshes((0..1000).map(|_| Reply::error(503, "token endpoint down")));
    // A strategy asks every 200 ms; from 19m55s (expiry minus the margin) its requests wait.
    let poller = {
        let (session, clock) = (session.clone(), clock.clone());
        tokio::spawn(async move {
            loop {
                if session.try_token().is_some_and(|l| l.generation > Generation(1)) {
                    return clock.now();
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), session.token()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep_until(clock.instant_at(back_at)).await;
    broker.clear_refreshes(); // the endpoint is back
    let served_at = poller.await.unwrap();
    let recovery_ms = served_at.as_millis() - back_at.as_millis();
    assert!((0..=2_000).contains(&recovery_ms), "served again {recovery_ms} ms after the broker's return");
    assert_eq!(broker.logins(), 1, "the refresh token was kept: no login");
    warden.shutdown(false).await;
}
