//! Many sessions in one runtime: opens run concurrently (no round trip through the supervisor), sessions
//! of the same policy share one copy, shutdown stops every session and flushes the store once, and every
//! session keeps its own deadlines without a task of its own (keep-alives of many sessions on time).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy};
use warden_actors::testing::ScriptedBroker;
use warden_actors::{SessionHandle, SessionSpec, Warden};
use warden_adapters::MemoryStore;
use warden_engine::{Capabilities, Generation, Mode, Policy, Preset, SessionId};

fn eager() -> Policy {
    let mut policy = quiet_policy(Preset::Reactive);
    policy.mode = Mode::Eager;
    policy
}

#[tokio::test(start_paused = true)]
async fn sessions_opened_from_many_tasks_at_once_each_log_in_once() {
    const TASKS: usize = 20;
    const EACH: usize = 25;
    let broker = Arc::new(ScriptedBroker::new("many").with_latency(Duration::from_millis(50)));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let openers: Vec<_> = (0..TASKS)
        .map(|t| {
            let (warden, broker) = (warden.clone(), broker.clone());
            tokio::spawn(async move {
                let mut opened = Vec::new();
                for i in 0..EACH {
                    let id = SessionId::new(format!("t{t}-s{i}")).unwrap();
                    opened.push(warden.open(SessionSpec::new(id, broker.clone()).with_policy(eager())).await.unwrap());
                }
                opened
            })
        })
        .collect();
    let mut handles: Vec<SessionHandle> = Vec::new();
    for opener in openers {
        handles.extend(opener.await.unwrap());
    }
    for handle in &handles {
        assert_eq!(handle.token().await.unwrap().generation, Generation(1));
    }
    assert_eq!(broker.logins(), (TASKS * EACH) as u64, "one login per session");
    assert!(warden.session(handles[0].id()).is_some());
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn sessions_of_equal_policies_share_one_copy() {
    let broker = Arc::new(ScriptedBroker::new("shared"));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let open = |name: &str, policy: Option<Policy>| {
        let mut spec = SessionSpec::new(SessionId::new(name).unwrap(), broker.clone());
        if let Some(policy) = policy {
            spec = spec.with_policy(policy);
        }
        warden.open(spec)
    };
    let a = open("a", Some(eager())).await.unwrap();
    let b = open("b", Some(eager())).await.unwrap();
    let mut other = eager();
    other.request_timeout = Duration::from_secs(7);
    let c = open("c", Some(other)).await.unwrap();
    let d = open("d", None).await.unwrap();
    let e = open("e", None).await.unwrap();
    assert!(std::ptr::eq(a.policy(), b.policy()), "equal policies are one copy");
    assert!(!std::ptr::eq(a.policy(), c.policy()));
    assert_eq!(c.policy().request_timeout, Duration::from_secs(7));
    assert!(std::ptr::eq(d.policy(), e.policy()), "the default policy is one copy");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_session_and_flushes_the_store_once() {
    let store = MemoryStore::new();
    let broker = Arc::new(ScriptedBroker::new("down"));
    let warden =
        Warden::builder().store(Arc::new(store.clone())).clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..50 {
        let spec = SessionSpec::new(SessionId::new(format!("s{i}")).unwrap(), broker.clone()).with_policy(eager());
        handles.push(warden.open(spec).await.unwrap());
    }
    for handle in &handles {
        handle.token().await.unwrap();
    }
    assert_eq!(store.stats().flushes, 0, "a memory store needs no flush for durability");
    warden.shutdown(false).await;
    assert_eq!(store.stats().flushes, 1, "one flush at the end, not one per session");
    for handle in &handles {
        assert!(handle.try_token().is_none(), "leases are withdrawn");
        assert!(handle.token().await.is_err(), "a closed session gives no token");
    }
    assert_eq!(store.sessions().len(), 50, "snapshots stay for the next start");
}

#[tokio::test(start_paused = true)]
async fn the_keep_alives_of_many_sessions_come_on_time_without_a_task_each() {
    const SESSIONS: usize = 200;
    let broker = Arc::new(
        ScriptedBroker::new("ping")
            .with_capabilities(Capabilities { refresh: false, keepalive: true })
            .login_fallback(warden_actors::testing::Reply::grant(Duration::from_secs(20 * 60))),
    );
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Keepalive);
    policy.keepalive_interval = Some(Duration::from_secs(60));
    let mut handles = Vec::new();
    for i in 0..SESSIONS {
        let spec =
            SessionSpec::new(SessionId::new(format!("k{i}")).unwrap(), broker.clone()).with_policy(policy.clone());
        handles.push(warden.open(spec).await.unwrap());
    }
    for handle in &handles {
        handle.token().await.unwrap();
    }
    // Five minutes: five keep-alives per session, each a minute after the last.
    tokio::time::sleep(Duration::from_secs(5 * 60 + 1)).await;
    assert_eq!(broker.keepalives(), (5 * SESSIONS) as u64);
    assert!(handles.iter().all(|h| h.stats().keepalives == 5));
    warden.shutdown(false).await;
}
