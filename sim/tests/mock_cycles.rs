//! A full cycle of every adapter against its mock broker, through the real runtime, in real time on
//! 127.0.0.1: login, requests (a quote, an order) through `SessionHandle::execute`, the token's expiry
//! (seconds-long lifetimes) and an intraday invalidation, re-authentication, logout. Each test asserts
//! what the broker counted: logins, orders executed once, no duplicate, no dead token used.

mod common;

use std::time::Duration;

use common::{client, mock, open, order, policy, quote, spec, until, until_invalid, warden};
use warden_engine::policy::LocalTime;
use warden_engine::{Secret, StateKind};
use warden_sim::model::{ModelKind, TokenExpiry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kotak_neo_full_cycle() {
    let mock = mock(spec(ModelKind::KotakNeo, Duration::from_secs(3), None)).await;
    let client = client(&mock);
    let warden = warden().await;
    let session =
        open(&warden, &client, client.credentials().clone(), policy(Duration::from_secs(1), None), "kotak").await;

    quote(&session, &client).await.expect("a quote after the TOTP and MPIN login");
    order(&session, &client, "kotak-1").await.expect("an order");
    // The 3 s token dies; the next request finds a new one (a second login).
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    quote(&session, &client).await.expect("a quote after the expiry");
    // An intraday invalidation (one of Kotak's four refusal forms): the call is retried after a login.
    let before = mock.stats().model.logins;
    mock.model().invalidate(mock.now());
    order(&session, &client, "kotak-2").await.expect("an order after the invalidation");
    session.logout().await.expect("logout");

    let stats = mock.stats().model;
    assert!(stats.logins > before, "a login after the invalidation: {stats:?}");
    assert!(stats.logins >= 3, "{stats:?}");
    assert!(stats.rejections >= 1, "the invalidated token was refused once: {stats:?}");
    assert_eq!((stats.orders_executed, stats.duplicate_orders, stats.dead_token_uses), (2, 0, 0), "{stats:?}");
    assert_eq!(session.status().state, StateKind::Stopped);
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibkr_full_cycle() {
    let mock = mock(spec(ModelKind::Ibkr, Duration::from_secs(4), None)).await;
    let client = client(&mock);
    let warden = warden().await;
    let policy = policy(Duration::from_secs(1), Some(Duration::from_millis(700)));
    let session = open(&warden, &client, client.credentials().clone(), policy, "ibkr").await;

    quote(&session, &client).await.expect("a snapshot after the live session token and ssodh/init");
    order(&session, &client, "ibkr-1").await.expect("an order");
    // Tickles keep the session; the 4 s live session token then dies and a new handshake follows.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    quote(&session, &client).await.expect("a snapshot after the expiry");
    mock.model().invalidate(mock.now());
    order(&session, &client, "ibkr-2").await.expect("an order after the invalidation");
    session.logout().await.expect("logout");
    assert!(until(Duration::from_secs(5), || mock.stats().model.logouts == 1).await, "POST /logout reached the broker");

    let stats = mock.stats().model;
    assert!(stats.logins >= 3, "{stats:?}");
    assert!(stats.keepalives >= 2, "tickles: {stats:?}");
    assert_eq!((stats.orders_executed, stats.duplicate_orders, stats.dead_token_uses), (2, 0, 0), "{stats:?}");
    assert_eq!(mock.stats().server.auth_failures, 0, "every signature verified");
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saxo_full_cycle() {
    let mock = mock(spec(ModelKind::Saxo, Duration::from_secs(3), Some(Duration::from_secs(30)))).await;
    let client = client(&mock);
    let warden = warden().await;
    let now = mock.now();
    let credentials = client.first_login_credentials(&mock, now);
    let session = open(&warden, &client, credentials, policy(Duration::from_secs(1), None), "saxo").await;

    quote(&session, &client).await.expect("a quote after the authorization code grant");
    order(&session, &client, "saxo-1").await.expect("an order");
    // The 3 s access token is refreshed a second before it expires; requests never see it die.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    quote(&session, &client).await.expect("a quote on the refreshed token");
    assert!(mock.stats().model.refreshes >= 1, "{:?}", mock.stats().model);
    assert_eq!(mock.stats().model.logins, 1, "refreshes, no logins");
    // An invalidation kills the access and the refresh token: a new login needs a person's code.
    mock.model().invalidate(mock.now());
    assert!(quote(&session, &client).await.is_err(), "no code, no login");
    assert!(until_invalid(&session).await, "the session waits for a person: {:?}", session.status());
    let code = mock.model().issue_login_code(mock.now());
    session.supply_second_factor(Secret::new(code)).await.expect("hand the code in");
    assert!(until(Duration::from_secs(10), || session.status().state == StateKind::Valid).await);
    order(&session, &client, "saxo-2").await.expect("an order after the new login");
    session.logout().await.expect("logout (local: Saxo has no revocation)");

    let stats = mock.stats().model;
    assert_eq!(stats.logins, 2, "{stats:?}");
    assert_eq!((stats.orders_executed, stats.duplicate_orders, stats.dead_token_uses), (2, 0, 0), "{stats:?}");
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kite_full_cycle() {
    // The token dies at its daily time, set three seconds from now in Asia/Kolkata.
    let mut spec = spec(ModelKind::Zerodha, Duration::from_secs(3600), None);
    let now = warden_actors::Clock::system().now();
    let in_three =
        now.to_timestamp().unwrap().to_zoned(spec.tz.tz().clone()).time() + jiff::SignedDuration::from_secs(3);
    spec.token_expiry = TokenExpiry::DailyAt(LocalTime(in_three));
    let mock = mock(spec).await;
    let client = client(&mock);
    let warden = warden().await;
    let credentials = client.first_login_credentials(&mock, now);
    let session = open(&warden, &client, credentials, policy(Duration::from_secs(1), None), "kite").await;

    quote(&session, &client).await.expect("a quote after the request-token login");
    order(&session, &client, "kite-1").await.expect("an order");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    // Dead at its daily time: 403 TokenException; the used request token cannot log in again.
    assert!(quote(&session, &client).await.is_err(), "a dead token and no request token");
    assert!(until_invalid(&session).await, "the session waits for a person: {:?}", session.status());
    let code = mock.model().issue_login_code(mock.now());
    session.supply_second_factor(Secret::new(code)).await.expect("hand the request token in");
    assert!(until(Duration::from_secs(10), || session.status().state == StateKind::Valid).await);
    order(&session, &client, "kite-2").await.expect("an order after the operator's login");
    session.logout().await.expect("logout");
    assert!(until(Duration::from_secs(5), || mock.stats().model.logouts == 1).await, "DELETE /session/token");

    // The adapter declares Kite's 06:00 expiry, so the broker counts the refused call as a dead token.
    let stats = mock.stats().model;
    assert_eq!(stats.logins, 2, "{stats:?}");
    assert!(stats.rejections >= 1 && stats.login_failures >= 1, "{stats:?}");
    assert_eq!((stats.orders_executed, stats.duplicate_orders), (2, 0), "{stats:?}");
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_full_cycle() {
    let mock = mock(spec(ModelKind::OAuth2, Duration::from_secs(3), None)).await;
    let client = client(&mock);
    let warden = warden().await;
    let session =
        open(&warden, &client, client.credentials().clone(), policy(Duration::from_secs(1), None), "oauth2").await;

    quote(&session, &client).await.expect("a quote after the client-credentials grant");
    order(&session, &client, "oauth2-1").await.expect("an order");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    quote(&session, &client).await.expect("a quote after the expiry");
    mock.model().invalidate(mock.now());
    order(&session, &client, "oauth2-2").await.expect("an order after the invalidation");
    session.logout().await.expect("logout (local)");

    let stats = mock.stats().model;
    assert!(stats.logins >= 3, "{stats:?}");
    assert_eq!((stats.orders_executed, stats.duplicate_orders, stats.dead_token_uses), (2, 0, 0), "{stats:?}");
    warden.shutdown(false).await;
}
