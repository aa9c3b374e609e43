//! Smoke tests of the main session flows, written with the core (the exhaustive tests live beside).

use std::time::Duration;

use warden_engine::{
    AuthFailure, Capabilities, ErrorClass, EventKind, Grant, Output, Policy, Preset, Session, SessionConfig, SessionId,
    StateKind, UnixMs, WaiterId,
};

fn t(s: i64) -> UnixMs {
    UnixMs::from_millis(1_767_225_600_000 + s * 1000)
}

fn drain(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn login_attempt(outs: &[Output]) -> Option<warden_engine::AttemptId> {
    outs.iter().find_map(|o| match o {
        Output::Login { attempt, .. } | Output::Refresh { attempt, .. } => Some(*attempt),
        _ => None,
    })
}

#[test]
fn eager_login_serve_refresh_cycle() {
    let mut policy = Policy::preset(Preset::Hybrid);
    policy.refresh_buffer = Some(Duration::from_secs(30));
    policy.lazy_threshold = None;
    policy.jitter = 0.0;
    let cfg = SessionConfig::new(SessionId::new("s").unwrap(), policy)
        .with_capabilities(Capabilities { refresh: true, keepalive: false });
    let mut s = Session::new(cfg, t(0));
    let outs = drain(&mut s);
    assert_eq!(s.state(), StateKind::Initializing);
    let a = login_attempt(&outs).expect("login");
    s.handle_request(t(0), WaiterId(1), None);
    assert!(drain(&mut s).iter().all(|o| !matches!(o, Output::Serve { .. })));
    let grant = Grant::new("tok1", t(0))
        .expires_in(Duration::from_secs(1200))
        .with_refresh("r1", Some(Duration::from_secs(3600)));
    s.handle_auth_completed(t(1), a, Ok(grant));
    let outs = drain(&mut s);
    assert!(outs.iter().any(|o| matches!(o, Output::Serve { waiter: WaiterId(1), .. })), "{outs:#?}");
    assert!(outs.iter().any(|o| matches!(o, Output::Publish(Some(_)))));
    assert_eq!(s.state(), StateKind::Valid);
    assert_eq!(s.poll_timeout(), Some(t(1170)));
    s.handle_tick(t(1170));
    let outs = drain(&mut s);
    assert_eq!(s.state(), StateKind::ExpiringSoon);
    let a = outs
        .iter()
        .find_map(|o| match o {
            Output::Refresh { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("refresh");
    s.handle_auth_completed(t(1171), a, Ok(Grant::new("tok2", t(1170)).expires_in(Duration::from_secs(1200))));
    drain(&mut s);
    assert_eq!(s.state(), StateKind::Valid);
    assert_eq!(s.generation().0, 2);
    // A stale rejection does nothing.
    s.handle_rejected(t(1172), warden_engine::Generation(1), ErrorClass::AuthExpired);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.state(), StateKind::Valid);
}

#[test]
fn wrong_password_spends_the_budget_then_invalid() {
    let mut policy = Policy::preset(Preset::Reactive);
    policy.mode = warden_engine::Mode::Eager;
    let cfg = SessionConfig::new(SessionId::new("s").unwrap(), policy);
    let mut s = Session::new(cfg, t(0));
    let mut logins = 0;
    let mut now = t(0);
    let mut outs = drain(&mut s);
    for _ in 0..10_000 {
        if let Some(a) = login_attempt(&outs) {
            logins += 1;
            s.handle_auth_completed(now, a, Err(AuthFailure::new(ErrorClass::AuthExpired, "bad password")));
            outs = drain(&mut s);
            continue;
        }
        match s.poll_timeout() {
            Some(next) => {
                now = next;
                s.handle_tick(now);
                outs = drain(&mut s);
            }
            None => break,
        }
    }
    assert_eq!(logins, 3);
    assert_eq!(s.state(), StateKind::Invalid);
    s.handle_request(now, WaiterId(9), None);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Fail { .. }]));
}

#[test]
fn daily_cutoff_expires_and_lazy_waits_for_demand() {
    let mut policy = Policy::preset(Preset::Daily);
    policy.mode = warden_engine::Mode::Lazy;
    let cfg = SessionConfig::new(SessionId::new("s").unwrap(), policy);
    // 2026-01-01T09:00+05:30 = 03:30Z
    let start = UnixMs::from_millis(1_767_238_200_000);
    let mut s = Session::new(cfg, start);
    drain(&mut s);
    assert_eq!(s.state(), StateKind::Expired);
    s.handle_request(start, WaiterId(1), None);
    let a = login_attempt(&drain(&mut s)).unwrap();
    s.handle_auth_completed(start, a, Ok(Grant::new("tok", start)));
    drain(&mut s);
    let cutoff = s.poll_timeout().unwrap();
    assert_eq!(cutoff.to_string(), "2026-01-01T21:30:00Z");
    s.handle_tick(cutoff);
    let outs = drain(&mut s);
    assert!(outs.iter().any(|o| matches!(o, Output::Event(e) if matches!(e.kind, EventKind::Revoked { .. }))));
    assert_eq!(s.state(), StateKind::Expired);
    assert!(login_attempt(&outs).is_none());
    assert_eq!(s.poll_timeout(), None);
}

/// A keep-alive in flight when the supervisor gives up answers that the grant is dead: the session keeps
/// its grant for the next process only while the broker has not said so. Before the fix the answer was
/// ignored in `Invalid`, and a restored session served the dead grant (found by the `never_serve_a_dead_token`
/// property).
#[test]
fn a_grant_the_keepalive_found_dead_after_giving_up_is_not_served_after_a_restart() {
    let mut policy = Policy::preset(Preset::Keepalive);
    policy.keepalive_interval = Some(Duration::from_secs(5));
    policy.jitter = 0.0;
    let cfg = || {
        SessionConfig::new(SessionId::new("s").unwrap(), policy.clone())
            .with_capabilities(Capabilities { refresh: false, keepalive: true })
    };
    let mut s = Session::new(cfg(), t(0));
    let a = login_attempt(&drain(&mut s)).expect("login");
    s.handle_auth_completed(t(1), a, Ok(Grant::new("tok1", t(1))));
    drain(&mut s);
    s.handle_tick(t(6));
    let ping = drain(&mut s)
        .iter()
        .find_map(|o| match o {
            Output::Keepalive { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("a keep-alive ping");
    s.handle_give_up(t(7), warden_engine::InvalidReason::RestartLimit { restarts: 5, within_ms: 60_000 });
    s.handle_keepalive_completed(t(8), ping, Ok(warden_engine::KeepaliveStatus::Unauthenticated));
    drain(&mut s);
    assert_eq!(s.state(), StateKind::Invalid);

    // The next process restores the session: the grant the broker called dead is not served.
    let mut next = Session::restore(cfg(), s.snapshot(), t(9)).expect("restores");
    assert!(next.lease().is_none(), "the dead grant is not handed out");
    next.handle_request(t(9), WaiterId(1), None);
    let outs = drain(&mut next);
    assert!(!outs.iter().any(|o| matches!(o, Output::Serve { .. } | Output::Publish(Some(_)))), "{outs:#?}");
    assert!(login_attempt(&outs).is_some(), "a new login instead: {outs:#?}");
}
