//! A broker's endpoint classes through the public runtime: `SessionHandle::execute_at` keeps each class's
//! limit (per session, or shared by an account's sessions) besides the account's, and what the broker says
//! about its remaining allowance (or a 429's `Retry-After`) holds the limiter it concerns.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{ExecuteError, SessionHandle, SessionSpec, Warden};
use warden_engine::limits::{EndpointLimit, LimitScope, Route, ServerAllowance};
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, ErrorClass, Grant, Idempotency, LoginRequest, Preset, Rate,
    SessionId, UnixMs,
};

const SECOND: Duration = Duration::from_secs(1);

/// Orders: one a second per session. Quotes: five a second per account (every session of it).
const LIMITS: &[EndpointLimit] = &[
    EndpointLimit::new("orders", Some("POST"), "/orders", LimitScope::Session, 1, SECOND),
    EndpointLimit::new("quotes", Some("GET"), "/quotes", LimitScope::App, 5, SECOND),
];

const ORDER: Route<'static> = Route::new("POST", "/api/orders");
const QUOTE: Route<'static> = Route::new("GET", "/api/quotes/INFY");
const OTHER: Route<'static> = Route::new("GET", "/api/positions");

/// A scripted broker that declares [`LIMITS`] and reports the allowance a test sets.
struct LimitedBroker {
    inner: ScriptedBroker,
    allowance: Mutex<Option<ServerAllowance>>,
}

impl Broker for LimitedBroker {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        self.inner.login(now, request)
    }
    fn logout<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.inner.logout(now, grant)
    }
    fn endpoint_limits(&self) -> &[EndpointLimit] {
        LIMITS
    }
    fn reported_allowance(&self, _grant: &Grant, route: Route<'_>) -> Option<ServerAllowance> {
        (route.path.contains("/orders")).then(|| *self.allowance.lock().unwrap()).flatten()
    }
}

async fn warden() -> Warden {
    Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap()
}

/// A logged-in session on `broker` under `account`, with a generous account limit (100/s).
async fn open(warden: &Warden, name: &str, account: &str, broker: Arc<LimitedBroker>) -> SessionHandle {
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.request_rate = Some(Rate::new(100, SECOND));
    policy.network_jitter = Duration::ZERO;
    let spec =
        SessionSpec::new(SessionId::new(name).unwrap(), broker).with_policy(policy).with_account(account.to_owned());
    let session = warden.open(spec).await.unwrap();
    session.token().await.expect("the session logs in");
    session
}

fn broker(name: &str) -> Arc<LimitedBroker> {
    let inner = ScriptedBroker::new(name).login_fallback(Reply::Grant { lifetime: None, refresh: None });
    Arc::new(LimitedBroker { inner, allowance: Mutex::new(None) })
}

/// `count` calls on `route` started at once through `execute_at`; the offsets (ms from `start`) at
/// which the broker call ran, sorted, and the errors.
async fn burst(
    warden: &Warden,
    session: &SessionHandle,
    route: Route<'static>,
    count: usize,
    start: UnixMs,
) -> (Vec<i64>, Vec<ExecuteError>) {
    let clock = warden.clock();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..count {
        let (session, calls, clock) = (session.clone(), calls.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            session
                .execute_at(route, Idempotency::Idempotent, |_lease| {
                    calls.lock().unwrap().push(clock.now().as_millis() - start.as_millis());
                    std::future::ready(Ok(()))
                })
                .await
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        if let Err(error) = task.await.unwrap() {
            errors.push(error);
        }
    }
    let mut calls = std::mem::take(&mut *calls.lock().unwrap());
    calls.sort_unstable();
    (calls, errors)
}

#[tokio::test(start_paused = true)]
async fn each_class_keeps_its_own_limit_and_other_calls_do_not_wait_for_it() {
    let warden = warden().await;
    let session = open(&warden, "s1", "acct", broker("limited")).await;
    let start = warden.clock().now();
    let (orders, quotes, others) = tokio::join!(
        burst(&warden, &session, ORDER, 4, start),
        burst(&warden, &session, QUOTE, 10, start),
        burst(&warden, &session, OTHER, 20, start),
    );
    assert!(orders.1.is_empty() && quotes.1.is_empty() && others.1.is_empty());
    // One order a second (plus the limiter's 1 ms slack): 0, 1.001 s, 2.002 s, 3.003 s.
    assert_eq!(orders.0, [0, 1_001, 2_002, 3_003]);
    // Five quotes at once, then the rest at the class's pace, one window later.
    assert_eq!(&quotes.0[..5], [0; 5]);
    assert!(quotes.0[5..].iter().all(|t| *t >= 1_001), "{:?}", quotes.0);
    // Calls in no class only wait for the account (100/s): all at once.
    assert_eq!(others.0, [0; 20]);
    // `execute` (no route) knows no class: orders through it are limited by the account alone.
    let (tx, mut calls) = (Arc::new(Mutex::new(Vec::new())), Vec::new());
    let at = warden.clock().now();
    for _ in 0..3 {
        let tx = tx.clone();
        let clock = warden.clock();
        session
            .execute(Idempotency::Idempotent, |_lease| {
                tx.lock().unwrap().push(clock.now().as_millis() - at.as_millis());
                std::future::ready(Ok::<(), BrokerError>(()))
            })
            .await
            .unwrap();
    }
    calls.extend(tx.lock().unwrap().iter().copied());
    assert_eq!(calls, [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn an_application_limit_is_shared_by_the_accounts_sessions_and_a_session_limit_is_not() {
    let warden = warden().await;
    let a = open(&warden, "a", "acct", broker("limited-a")).await;
    let b = open(&warden, "b", "acct", broker("limited-b")).await;
    let start = warden.clock().now();
    let (qa, qb, oa, ob) = tokio::join!(
        burst(&warden, &a, QUOTE, 5, start),
        burst(&warden, &b, QUOTE, 5, start),
        burst(&warden, &a, ORDER, 1, start),
        burst(&warden, &b, ORDER, 1, start),
    );
    let mut quotes: Vec<i64> = qa.0.into_iter().chain(qb.0).collect();
    quotes.sort_unstable();
    assert_eq!(quotes.iter().filter(|t| **t == 0).count(), 5, "five quotes a second for the account: {quotes:?}");
    assert!(quotes[5..].iter().all(|t| *t >= 1_001), "{quotes:?}");
    assert_eq!((oa.0, ob.0), (vec![0], vec![0]), "one order a second per session: both at once");
}

#[tokio::test(start_paused = true)]
async fn the_brokers_remaining_allowance_holds_the_class_until_its_reset() {
    let warden = warden().await;
    let limited = broker("limited");
    let session = open(&warden, "s1", "acct", limited.clone()).await;
    let start = warden.clock().now();
    // The broker's answer to the first order says nothing is left for 5 s (another platform used it).
    *limited.allowance.lock().unwrap() =
        Some(ServerAllowance { at: start, remaining: 0, reset_after: Duration::from_secs(5) });
    let (first, _) = burst(&warden, &session, ORDER, 1, start).await;
    assert_eq!(first, [0]);
    *limited.allowance.lock().unwrap() = None;
    let (next, errors) = burst(&warden, &session, ORDER, 1, start).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(next, [5_000], "the next order waits for the broker's reset, not for the class's 1 s");
    // Other classes are not held.
    let (quote, _) = burst(&warden, &session, QUOTE, 1, warden.clock().now()).await;
    assert_eq!(quote, [0]);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_holds_the_class_for_that_long() {
    let warden = warden().await;
    let session = open(&warden, "s1", "acct", broker("limited")).await;
    let start = warden.clock().now();
    let refused = session
        .execute_at(QUOTE, Idempotency::Idempotent, |_lease| {
            let mut error = BrokerError::http(429, "too many requests");
            error.retry_after = Some(Duration::from_secs(3));
            std::future::ready(Err::<(), BrokerError>(error))
        })
        .await
        .unwrap_err();
    assert!(matches!(refused, ExecuteError::Broker { class: ErrorClass::RateLimited { .. }, .. }), "{refused:?}");
    let (next, errors) = burst(&warden, &session, QUOTE, 1, start).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(next, [3_000], "the quote after the 429 waits for its Retry-After");
    let (order, _) = burst(&warden, &session, ORDER, 1, start).await;
    assert!(order[0] >= 3_000, "the order ran after the quote's wait, at once: {order:?}");
}
