//! Snapshots at rest: a session's snapshot survives rmp-serde (the store's encoding) unchanged, and a
//! session restored from it resumes where it was — the same generation, grant, failure counters and login
//! history; a still-valid grant without a login, an expired one as `Expired` (lazy) or with a refresh or
//! login under way (eager). A snapshot of a format this build does not read is refused with an error that
//! names the version.

mod support;

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use support::model::{Driver, Spec, spec_strategy, step_strategy};
use support::{Harness, at, plus};
use warden_engine::{
    Capabilities, InvalidReason, Mode, Output, Policy, Preset, RestoreError, SNAPSHOT_FORMAT_VERSION, Session,
    SessionConfig, SessionId, Snapshot, StateKind, UnixMs,
};

fn round_trip(snapshot: &Snapshot) -> Snapshot {
    let bytes = warden_engine::secret::serialize_exposed(|| rmp_serde::to_vec_named(snapshot)).expect("encodes");
    rmp_serde::from_slice(&bytes).expect("decodes")
}

/// The state a session restored at the instant of its snapshot must be in.
fn restored_kind_is_expected(
    saved: StateKind,
    restart_limit: bool,
    restored: StateKind,
    spec: &Spec,
    now: UnixMs,
) -> bool {
    // Between a daily cut-off and its warm-up time an expired session waits for the warm-up.
    let config = spec.config();
    let waits_for_warmup = config.policy.daily_cutoff.as_ref().is_some_and(|c| {
        c.warmup.is_some_and(|w| {
            warden_engine::calendar::next_local_time_after(now, w, &c.tz)
                < warden_engine::calendar::next_local_time_after(now, c.at, &c.tz)
        })
    });
    match saved {
        StateKind::Valid | StateKind::ExpiringSoon => restored.token_usable(),
        // Giving up after a crash loop lasts as long as the process: a restart leaves `Invalid`.
        StateKind::Invalid if restart_limit => restored != StateKind::Invalid,
        StateKind::Invalid => restored == StateKind::Invalid,
        // Calls in flight died with the process: the session wants a grant again, and asks for one at
        // once only in eager mode (idleness counts from the restart).
        _ if spec.mode == Mode::Lazy || waits_for_warmup => restored == StateKind::Expired,
        _ => restored == StateKind::Reinitializing,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// Whatever a session went through, its snapshot survives rmp-serde unchanged, and restoring it at the
    /// same instant gives a session with the same generation, grant, counters and login history, in the
    /// state the snapshot's state leads to.
    #[test]
    fn snapshot_round_trips_and_restores_the_same_session(
        spec in spec_strategy(),
        steps in vec(step_strategy(false), 1..80),
    ) {
        let mut driver = Driver::new(spec.clone(), false);
        for step in &steps {
            driver.step(step);
        }
        let saved = driver.session.snapshot();
        let decoded = round_trip(&saved);
        prop_assert_eq!(&decoded, &saved);

        let now = driver.now;
        let mut restored = Session::restore(spec.config(), decoded, now).expect("restores");
        let outputs: Vec<Output> = std::iter::from_fn(|| restored.poll_output()).collect();
        let again = restored.snapshot();
        prop_assert_eq!(restored.generation(), saved.generation);
        let restart_limit = matches!(saved.invalid_reason, Some(InvalidReason::RestartLimit { .. }));
        if restart_limit {
            // The grant kept through the crash loop is the same; the restore may find it expired since.
            let generation = |g: &Option<warden_engine::snapshot::StoredGrant>| g.as_ref().map(|g| g.generation);
            prop_assert_eq!(generation(&again.grant), generation(&saved.grant));
        } else {
            prop_assert_eq!(&again.grant, &saved.grant);
        }
        if restart_limit {
            prop_assert_eq!(&again.invalid_reason, &None, "a new process has a fresh restart budget");
        } else {
            prop_assert_eq!(&again.invalid_reason, &saved.invalid_reason);
        }
        prop_assert_eq!(again.consecutive_failures, saved.consecutive_failures);
        prop_assert_eq!(again.consecutive_rejections, saved.consecutive_rejections);
        prop_assert_eq!(again.retry_not_before, saved.retry_not_before);
        prop_assert_eq!(again.take_over, saved.take_over);
        prop_assert_eq!(again.last_activity, now, "idleness counts from the restart");
        // The login history is kept; a login the restore itself started is added at `now`.
        let logged_in_now = outputs.iter().any(|o| matches!(o, Output::Login { .. }));
        let mut attempts = saved.login_attempts.clone();
        if logged_in_now {
            attempts.push(now);
        }
        let kept = again.login_attempts.len();
        prop_assert_eq!(&again.login_attempts[..], &attempts[attempts.len() - kept..]);
        prop_assert!(
            restored_kind_is_expected(saved.state, restart_limit, restored.state(), &spec, now),
            "saved {}, restored {} ({:?})", saved.state, restored.state(), spec.mode
        );
        if restored.state() == StateKind::Valid {
            let calls = outputs.iter().any(|o| matches!(o, Output::Login { .. } | Output::Refresh { .. }));
            prop_assert!(!calls, "a restored Valid session started a call: {:?}", outputs);
            prop_assert_eq!(restored.lease().map(|l| l.generation), saved.grant.as_ref().map(|g| g.generation));
        }
    }
}

fn policy(mode: Mode) -> Policy {
    let mut p = Policy::preset(Preset::Proactive);
    p.mode = mode;
    p.jitter = 0.0;
    p
}

fn config(mode: Mode, refresh: bool) -> SessionConfig {
    SessionConfig::new(support::sid(), policy(mode)).with_capabilities(Capabilities { refresh, keepalive: false })
}

fn start() -> UnixMs {
    at("2026-03-02T04:30:00Z")
}

/// A session that logged in at `start()` with a 20-minute token and a refresh token living an hour.
fn valid(mode: Mode, refresh: bool) -> Harness {
    let mut h = Harness::new(config(mode, refresh), start());
    if mode == Mode::Lazy {
        h.request(None);
    }
    h.now = plus(start(), 1);
    let grant = h.grant(Some(Duration::from_secs(20 * 60)), true);
    h.complete_auth(Ok(grant));
    assert_eq!(h.session.state(), StateKind::Valid);
    h
}

fn starts_call(outputs: &[Output]) -> Option<&'static str> {
    outputs.iter().find_map(|o| match o {
        Output::Login { .. } => Some("Login"),
        Output::Refresh { .. } => Some("Refresh"),
        _ => None,
    })
}

#[test]
fn a_still_valid_grant_resumes_as_valid_without_a_login() {
    let before = valid(Mode::Eager, true);
    let lease = before.session.lease().expect("lease");
    let snapshot = round_trip(&before.session.snapshot());
    // The process was down for ten minutes; the token lives until +20 min.
    let mut after = Harness::restore(config(Mode::Eager, true), snapshot, plus(start(), 600));
    assert_eq!(after.session.state(), StateKind::Valid);
    assert_eq!(starts_call(&after.last), None, "{:#?}", after.last);
    assert!(after.last.iter().any(|o| matches!(o, Output::Publish(Some(l)) if l.generation == lease.generation)));
    assert_eq!(after.session.generation(), lease.generation);
    let (_, outputs) = after.request(None);
    let served = outputs.iter().find_map(|o| match o {
        Output::Serve { lease, .. } => Some(lease.token().to_owned()),
        _ => None,
    });
    assert_eq!(served.as_deref(), Some(lease.token()));
    assert_eq!(after.session.login_attempts().count(), 1, "the one login before the restart");
}

#[test]
fn an_expired_grant_restores_to_expired_when_lazy() {
    let before = valid(Mode::Lazy, true);
    let snapshot = round_trip(&before.session.snapshot());
    let mut after = Harness::restore(config(Mode::Lazy, true), snapshot, plus(start(), 3600 * 2));
    assert_eq!(after.session.state(), StateKind::Expired);
    assert_eq!(starts_call(&after.last), None, "lazy: nothing before a request: {:#?}", after.last);
    assert!(after.session.lease().is_none());
    // The first request starts the re-login; the refresh token (1 h) is spent, so a full login.
    let (_, outputs) = after.request(None);
    assert_eq!(starts_call(&outputs), Some("Login"));
    assert_eq!(after.session.state(), StateKind::Reinitializing);
}

#[test]
fn an_expired_grant_restores_to_reinitializing_with_a_refresh_when_eager() {
    let before = valid(Mode::Eager, true);
    let snapshot = round_trip(&before.session.snapshot());
    // Down for 25 minutes: the access token died at +20 min, the refresh token lives until +60 min.
    let after = Harness::restore(config(Mode::Eager, true), snapshot.clone(), plus(start(), 25 * 60));
    assert_eq!(after.session.state(), StateKind::Reinitializing);
    assert_eq!(starts_call(&after.last), Some("Refresh"), "{:#?}", after.last);
    // A broker without refresh tokens logs in instead.
    let after = Harness::restore(config(Mode::Eager, false), snapshot, plus(start(), 25 * 60));
    assert_eq!(after.session.state(), StateKind::Reinitializing);
    assert_eq!(starts_call(&after.last), Some("Login"), "{:#?}", after.last);
}

#[test]
fn the_login_history_survives_a_restart() {
    // Three failed logins within a minute spend the allowance of 3 per 5 minutes; a restarted process
    // must wait for the window like the old one would have.
    let mut p = policy(Mode::Eager);
    p.login_rate = Some(warden_engine::Rate::new(3, Duration::from_secs(300)));
    p.backoff.min = Duration::from_secs(1).into();
    p.backoff.jitter = 0.0;
    let cfg = SessionConfig::new(support::sid(), p);
    let mut h = Harness::new(cfg.clone(), start());
    for _ in 0..3 {
        assert!(h.auth.is_some());
        h.complete_auth(Err(warden_engine::AuthFailure::new(warden_engine::ErrorClass::Transient, "down")));
        if h.session.poll_timeout().is_some_and(|t| t < plus(start(), 60)) {
            h.tick_at_timeout();
        }
    }
    assert_eq!(h.session.login_attempts().count(), 3);
    assert!(h.auth.is_none(), "the fourth login waits for the rate limit");
    let snapshot = round_trip(&h.session.snapshot());
    let after = Harness::restore(cfg, snapshot, plus(start(), 70));
    assert_eq!(starts_call(&after.last), None, "the restart bought no new allowance: {:#?}", after.last);
    assert_eq!(
        after.session.poll_timeout(),
        Some(plus(start(), 300)),
        "the next login when the first leaves the window"
    );
}

#[test]
fn an_unknown_format_version_is_refused_with_an_error_naming_it() {
    let mut snapshot = valid(Mode::Eager, true).session.snapshot();
    snapshot.format_version = 99;
    let decoded = round_trip(&snapshot);
    assert_eq!(decoded.format_version, 99);
    let err = Session::restore(config(Mode::Eager, true), decoded, plus(start(), 10)).expect_err("version 99");
    assert_eq!(
        err,
        RestoreError::UnsupportedVersion {
            session: "test-session".into(),
            found: 99,
            supported: SNAPSHOT_FORMAT_VERSION
        }
    );
    let message = err.to_string();
    assert_eq!(message, "snapshot of session test-session has format version 99; this build reads version 1");
    assert!(message.contains("99") && message.contains("test-session"), "{message}");
}

#[test]
fn a_snapshot_of_another_session_is_refused() {
    let snapshot = round_trip(&valid(Mode::Eager, true).session.snapshot());
    let other = SessionConfig::new(SessionId::new("other").expect("id"), policy(Mode::Eager));
    let err = Session::restore(other, snapshot, plus(start(), 10)).expect_err("another session");
    assert_eq!(err.to_string(), "snapshot belongs to session test-session, not other");
}
