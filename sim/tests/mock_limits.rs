//! The runtime's endpoint limits against a broker's real wire protocol: Saxo's mock refuses a second
//! order within a second with 429. Orders through `execute_at` with their route are spaced by warden (Saxo's
//! adapter declares the class) and none is refused; the same orders through `execute`, which knows no
//! route, meet the broker's 429. Real time on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{client, mock, open, order, policy, spec, warden};
use warden_actors::ExecuteError;
use warden_engine::{ErrorClass, Idempotency};
use warden_sim::mock::client::MockClient;
use warden_sim::model::ModelKind;

/// `count` orders at once through `order` (which uses `execute_at`) or through plain `execute`.
async fn orders(
    handle: &warden_actors::SessionHandle,
    client: &MockClient,
    count: usize,
    routed: bool,
) -> Vec<ExecuteError> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let (handle, client) = (handle.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("{}-{i}", if routed { "routed" } else { "plain" });
            if routed {
                return order(&handle, &client, &id).await;
            }
            let clock = warden_actors::Clock::system();
            handle
                .execute(Idempotency::NonIdempotent, |lease| {
                    let (client, clock, id) = (client.clone(), clock.clone(), id.clone());
                    async move {
                        let request = client.order(&lease.grant, &id)?;
                        client.send(clock.now(), &lease.grant, request).await.map(|_| ())
                    }
                })
                .await
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        if let Err(error) = task.await.expect("the task ends") {
            errors.push(error);
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saxo_orders_are_spaced_by_the_class_limit_and_meet_no_429() {
    let mock = mock(spec(ModelKind::Saxo, Duration::from_secs(600), Some(Duration::from_secs(3600)))).await;
    let client = client(&mock);
    let warden = warden().await;
    let mut policy = policy(Duration::from_secs(30), None);
    // The loopback's delay does not vary: the class's window need not widen.
    policy.network_jitter = Duration::from_millis(20);
    let credentials = client.first_login_credentials(&mock, mock.now());
    let session = open(&warden, &client, credentials, policy, "saxo").await;
    session.token().await.expect("the session logs in");

    let routed = orders(&session, &client, 3, true).await;
    assert!(routed.is_empty(), "every routed order went through: {routed:?}");
    let stats = mock.stats().model;
    assert_eq!((stats.orders_executed, stats.rate_limited), (3, 0), "{stats:?}");

    // Without a route warden knows no class: the broker refuses the orders that come within its second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let plain = orders(&session, &client, 3, false).await;
    assert!(!plain.is_empty(), "two of three orders within a second meet the broker's limit");
    assert!(
        plain.iter().all(|e| matches!(e, ExecuteError::Broker { class: ErrorClass::RateLimited { .. }, .. })),
        "{plain:?}"
    );
    let stats = mock.stats().model;
    assert!(stats.rate_limited >= 1, "{stats:?}");
    assert_eq!(stats.duplicate_orders, 0, "{stats:?}");
    warden.shutdown(false).await;
}
