//! Benchmarks of session input handling, the work a driver does per message:
//!
//! - `tick_without_transition`: a tick on a `Valid` session with nothing due (the timer fired early, or
//!   a driver ticks defensively), plus the `poll_output()` that finds nothing;
//! - `request_served`: a request on a `Valid` session, answered at once with a `Serve`, outputs drained;
//! - `refresh_cycle`: a tick at refresh-at (→ `ExpiringSoon`, `Refresh` output), the refresh's
//!   answer (→ `Valid` with the next generation), outputs drained after each.
//!
//! Each benchmark checks once, before measuring, that one iteration does exactly what its name says, and
//! again afterwards that the measured iterations did not drift into other work. Inputs and results pass
//! through `black_box`. Run with `cargo bench -p warden-engine --bench session`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_engine::{
    AttemptId, Capabilities, Grant, Output, Policy, Preset, Session, SessionConfig, SessionId, StateKind, UnixMs,
    WaiterId,
};

const LIFETIME: Duration = Duration::from_secs(20 * 60);

/// A hybrid session without keep-alives or lazy threshold, with a refresh-token broker, that has just
/// installed its first grant at `now`.
fn valid_session() -> (Session, UnixMs) {
    let mut policy = Policy::preset(Preset::Hybrid);
    policy.refresh_buffer = Some(Duration::from_secs(30));
    policy.lazy_threshold = None;
    policy.keepalive_interval = None;
    policy.jitter = 0.0;
    let config = SessionConfig::new(SessionId::new("bench").expect("id"), policy)
        .with_capabilities(Capabilities { refresh: true, keepalive: false });
    let now = UnixMs::from_millis(1_772_425_800_000);
    let mut session = Session::new(config, now);
    let attempt = drain(&mut session)
        .iter()
        .find_map(|o| match o {
            Output::Login { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("an eager session logs in");
    session.handle_auth_completed(now, attempt, Ok(grant(now)));
    drain(&mut session);
    assert_eq!(session.state(), StateKind::Valid);
    (session, now)
}

fn grant(issued_at: UnixMs) -> Grant {
    Grant::new("access-token-0123456789", issued_at)
        .expires_in(LIFETIME)
        .with_refresh("refresh-token-0123456789", Some(Duration::from_secs(24 * 3600)))
}

fn drain(session: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn tick_without_transition(c: &mut Criterion) {
    let (mut session, now) = valid_session();
    let t = UnixMs::from_millis(now.as_millis() + 1_000);
    assert!(session.poll_timeout().is_some_and(|d| d > t), "nothing is due at t");
    session.handle_tick(t);
    assert!(session.poll_output().is_none(), "a tick with nothing due produces nothing");
    let generation = session.generation();
    c.bench_function("tick_without_transition", |b| {
        b.iter(|| {
            session.handle_tick(black_box(t));
            black_box(session.poll_output())
        })
    });
    assert_eq!((session.state(), session.generation()), (StateKind::Valid, generation));
    assert!(session.poll_output().is_none());
}

fn request_served(c: &mut Criterion) {
    let (mut session, now) = valid_session();
    let t = UnixMs::from_millis(now.as_millis() + 1_000);
    session.handle_request(t, WaiterId(1), None);
    let outputs = drain(&mut session);
    assert!(matches!(outputs.as_slice(), [Output::Serve { waiter: WaiterId(1), .. }]), "{outputs:#?}");
    c.bench_function("request_served", |b| {
        b.iter(|| {
            session.handle_request(black_box(t), black_box(WaiterId(1)), None);
            while let Some(output) = session.poll_output() {
                black_box(output);
            }
        })
    });
    assert_eq!((session.state(), session.waiting()), (StateKind::Valid, 0));
}

/// One refresh: tick at refresh-at, answer the refresh; returns the outputs of both inputs.
fn refresh_cycle_once(session: &mut Session) -> (usize, usize) {
    let t = session.poll_timeout().expect("refresh-at");
    session.handle_tick(t);
    let mut attempt = AttemptId(0);
    let mut ticked = 0;
    while let Some(output) = session.poll_output() {
        if let Output::Refresh { attempt: a, .. } = &output {
            attempt = *a;
        }
        ticked += 1;
        black_box(output);
    }
    session.handle_auth_completed(t, attempt, Ok(grant(t)));
    let mut completed = 0;
    while let Some(output) = session.poll_output() {
        completed += 1;
        black_box(output);
    }
    (ticked, completed)
}

fn refresh_cycle(c: &mut Criterion) {
    let (mut session, now) = valid_session();
    assert_eq!(session.poll_timeout(), Some(now.saturating_add(LIFETIME - Duration::from_secs(30))));
    let t = session.poll_timeout().expect("refresh-at");
    session.handle_tick(t);
    let outputs = drain(&mut session);
    assert_eq!(session.state(), StateKind::ExpiringSoon);
    let attempt = outputs
        .iter()
        .find_map(|o| match o {
            Output::Refresh { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("the tick at refresh-at starts a refresh");
    session.handle_auth_completed(t, attempt, Ok(grant(t)));
    let outputs = drain(&mut session);
    assert!(outputs.iter().any(|o| matches!(o, Output::Publish(Some(l)) if l.generation.0 == 2)), "{outputs:#?}");
    assert_eq!(session.state(), StateKind::Valid);
    let before = session.generation();
    c.bench_function("refresh_cycle", |b| b.iter(|| refresh_cycle_once(&mut session)));
    assert_eq!(session.state(), StateKind::Valid);
    assert!(session.generation().0 > before.0 + 1, "the measured iterations refreshed");
}

criterion_group!(benches, tick_without_transition, request_served, refresh_cycle);
criterion_main!(benches);
