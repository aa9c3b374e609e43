//! Shared helpers for the runtime tests: a fixed virtual clock, policies, waiting for a state, and for
//! the cluster tests the PostgreSQL database from `WARDEN_PG_URL` and members on it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use warden_actors::{Clock, SessionHandle, Warden};
use warden_adapters::{PostgresOptions, PostgresStore, StoreKey};
use warden_engine::{MemberName, Policy, Preset, StateKind, Store, UnixMs};

/// 2026-03-09T09:00:00+05:30 (a Monday morning in Mumbai).
pub const MONDAY_0900_IST: i64 = 1_773_027_000_000;

/// A virtual wall clock starting at `wall`, moved by tokio's paused time.
pub fn clock_at(wall_ms: i64) -> Clock {
    Clock::starting_at(UnixMs::from_millis(wall_ms))
}

/// A policy with nothing proactive and no idle timeout: the tests switch on what they test.
pub fn quiet_policy(preset: Preset) -> Policy {
    let mut policy = Policy::preset(preset);
    policy.idle_timeout = None;
    policy.jitter = 0.0;
    policy
}

/// Waits (in virtual time, at most `limit`) until the session reaches `state`.
pub async fn wait_for_state(handle: &SessionHandle, state: StateKind, limit: Duration) -> bool {
    let mut status = handle.subscribe();
    tokio::time::timeout(limit, status.wait_for(|s| s.state == state)).await.is_ok_and(|r| r.is_ok())
}

pub const TTL: Duration = Duration::from_secs(3);
pub const TICK: Duration = Duration::from_millis(250);
/// At most this many ticks for the cluster to settle (60 s of paused time).
pub const MAX_TICKS: usize = 240;

/// The database and this test's schema, or `None` to skip.
pub fn pg(name: &str) -> Option<(String, String)> {
    let Ok(url) = std::env::var("WARDEN_PG_URL") else {
        let required = std::env::var("WARDEN_PG_TEST").is_ok_and(|v| v == "required");
        assert!(!required, "WARDEN_PG_TEST=required but WARDEN_PG_URL is not set (eval \"$(tests/pg/start.sh)\")");
        eprintln!("{name}: WARDEN_PG_URL is not set (start a database with tests/pg/start.sh); skipped");
        return None;
    };
    // A fresh schema per run: the throwaway cluster keeps old ones, and tests run in parallel.
    let stamp = std::time::UNIX_EPOCH.elapsed().map(|d| d.as_micros()).unwrap_or(0);
    Some((url, format!("c_{name}_{}_{stamp}", std::process::id())))
}

/// A member's own store (its own connection); opened off the runtime (the client connects synchronously).
pub async fn store(url: &str, schema: &str) -> Arc<dyn Store> {
    let options = PostgresOptions::new(url.to_owned(), StoreKey::from_bytes([7; 32])).schema(schema.to_owned());
    let store = tokio::task::spawn_blocking(move || PostgresStore::open(options)).await.expect("the open ran");
    Arc::new(store.expect("open the PostgreSQL store"))
}

pub async fn member(url: &str, schema: &str, name: &str, clock: &Clock) -> Warden {
    Warden::builder()
        .store(store(url, schema).await)
        .member(MemberName::new(name).expect("member name"))
        .lease_ttl(TTL)
        .clock(clock.clone())
        .default_policy(quiet_policy(Preset::Reactive))
        .build()
        .await
        .expect("build a member")
}
