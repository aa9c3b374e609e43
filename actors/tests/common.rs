//! Shared helpers for the runtime tests: a fixed virtual clock, policies, waiting for a state.

#![allow(dead_code)]

use std::time::Duration;

use warden_actors::{Clock, SessionHandle};
use warden_engine::{Policy, Preset, StateKind, UnixMs};

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
