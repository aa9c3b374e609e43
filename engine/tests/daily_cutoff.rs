//! The daily cut-off at session level: a token issued before the cut-off is never handed out after it,
//! the cut-off falls on the right UTC instant in Asia/Kolkata (no DST) and in America/New_York and
//! Europe/Copenhagen on both of their 2026 DST change days, the warm-up time brings an eager session back
//! before market open, and a lazy session does not log in before the first request.
//!
//! Instants are written in UTC; the comments give the local time.

mod support;

use std::time::Duration;

use support::{Harness, at, plus, plus_ms};
use warden_engine::{
    Capabilities, DailyCutoff, EventKind, Generation, Input, Mode, Output, Policy, Preset, Reason, SessionConfig,
    StateKind, UnixMs,
};

fn policy(zone: &str, cutoff: &str, warmup: Option<&str>, mode: Mode) -> Policy {
    let mut p = Policy::preset(Preset::Daily);
    let mut daily = DailyCutoff::new(cutoff.parse().expect("time"), zone).expect("zone");
    daily.warmup = warmup.map(|w| w.parse().expect("time"));
    p.daily_cutoff = Some(daily);
    p.mode = mode;
    p.validate().expect("valid policy");
    p
}

fn config(policy: Policy, refresh: bool) -> SessionConfig {
    SessionConfig::new(support::sid(), policy).with_capabilities(Capabilities { refresh, keepalive: false })
}

/// A session whose login started at `login_at` and returned one second later with a token living
/// `lifetime` (long enough that only the cut-off matters).
fn logged_in(policy: Policy, login_at: UnixMs, lifetime: Duration) -> Harness {
    let lazy = policy.mode == Mode::Lazy;
    let mut h = Harness::new(config(policy, false), login_at);
    if lazy {
        h.request(None);
    }
    assert!(h.auth.is_some(), "a login is under way");
    h.now = plus(login_at, 1);
    let grant = h.grant(Some(lifetime), false);
    h.complete_auth(Ok(grant));
    assert_eq!(h.session.state(), StateKind::Valid);
    h
}

fn served(outputs: &[Output]) -> Option<Generation> {
    outputs.iter().find_map(|o| match o {
        Output::Serve { lease, .. } => Some(lease.generation),
        _ => None,
    })
}

fn has_login(outputs: &[Output]) -> bool {
    outputs.iter().any(|o| matches!(o, Output::Login { .. }))
}

fn revoked_for_cutoff(outputs: &[Output]) -> bool {
    outputs.iter().any(
        |o| matches!(o, Output::Event(e) if matches!(&e.kind, EventKind::Revoked { reason: Reason::DailyCutoff, .. })),
    )
}

/// The instant up to which the session hands out its current token.
fn usable_until(h: &Harness) -> UnixMs {
    h.session.lease().expect("a usable lease").usable_until
}

const TWO_DAYS: Duration = Duration::from_secs(48 * 3600);

#[test]
fn kolkata_token_from_before_the_cutoff_is_not_served_after_it() {
    // Logged in Monday 2026-03-09 10:00 IST with a 48-hour token; the cut-off is 03:00 IST = 21:30Z.
    let mut h = logged_in(policy("Asia/Kolkata", "03:00", None, Mode::Lazy), at("2026-03-09T04:30:00Z"), TWO_DAYS);
    let cutoff = at("2026-03-09T21:30:00Z");
    assert_eq!(usable_until(&h), cutoff);
    assert_eq!(h.session.poll_timeout(), Some(cutoff));

    // One millisecond before: still served.
    h.now = plus_ms(cutoff, -1);
    let (_, outputs) = h.request(None);
    assert_eq!(served(&outputs), Some(Generation(1)));

    // At the cut-off: revoked, withdrawn from the hot path, and never served again.
    let outputs = h.tick(cutoff);
    assert!(revoked_for_cutoff(&outputs), "{outputs:#?}");
    assert!(outputs.contains(&Output::Publish(None)), "{outputs:#?}");
    assert_eq!(h.session.state(), StateKind::Expired);
    assert!(!has_login(&outputs), "lazy: no login before a request");
    let (_, outputs) = h.request(None);
    assert_eq!(served(&outputs), None);
    assert!(has_login(&outputs), "the request starts a fresh login: {outputs:#?}");

    // The next day's login is good until the next day's cut-off.
    h.now = plus(cutoff, 2);
    let grant = h.grant(Some(TWO_DAYS), false);
    let outputs = h.complete_auth(Ok(grant));
    assert_eq!(served(&outputs), Some(Generation(2)));
    assert_eq!(usable_until(&h), at("2026-03-10T21:30:00Z"));
}

#[test]
fn a_late_tick_still_does_not_serve_the_old_token() {
    // The driver's timer fires late: the request arrives first, an hour after the cut-off.
    let mut h = logged_in(policy("Asia/Kolkata", "03:00", None, Mode::Lazy), at("2026-03-09T04:30:00Z"), TWO_DAYS);
    h.now = at("2026-03-09T22:30:00Z");
    let (_, outputs) = h.request(None);
    assert_eq!(served(&outputs), None, "{outputs:#?}");
    assert!(revoked_for_cutoff(&outputs));
    assert!(has_login(&outputs));
}

#[test]
fn a_login_in_flight_across_the_cutoff_is_discarded_and_made_again_at_once() {
    // The login starts at 02:59:59 IST and its answer arrives at 03:00:01 IST: the broker issued the
    // token before its cut-off, so it is dead. The session throws it away (logging it out) and logs in
    // again at once — no backoff — and the two attempts count as one against the login rate.
    let mut h =
        Harness::new(config(policy("Asia/Kolkata", "03:00", None, Mode::Lazy), false), at("2026-03-09T21:00:00Z"));
    h.now = at("2026-03-09T21:29:59Z");
    let (waiter, outputs) = h.request(None);
    assert!(has_login(&outputs));
    h.now = at("2026-03-09T21:30:01Z");
    let grant = h.grant(Some(TWO_DAYS), false);
    assert_eq!(grant.issued_at, at("2026-03-09T21:29:59Z"));
    let outputs = h.complete_auth(Ok(grant));
    assert_eq!(served(&outputs), None, "{outputs:#?}");
    assert_eq!(h.session.generation(), Generation::NONE);
    assert_eq!(h.session.state(), StateKind::Reinitializing);
    assert!(has_login(&outputs), "the new login starts at once: {outputs:#?}");
    assert!(outputs.iter().any(|o| matches!(o, Output::Logout { .. })), "the dead grant is logged out");
    assert!(
        outputs.iter().any(|o| matches!(o, Output::Event(e) if matches!(e.kind, EventKind::LoginDiscarded { cutoff_at, .. } if cutoff_at == at("2026-03-09T21:30:00Z")))),
        "{outputs:#?}"
    );
    assert_eq!(h.session.login_attempts().count(), 1, "the discarded login and its replacement count once");
    // The new login's token (issued after the cut-off) serves the waiter.
    let grant = h.grant(Some(TWO_DAYS), false);
    let outputs = h.complete_auth(Ok(grant));
    assert!(outputs.iter().any(|o| matches!(o, Output::Serve { waiter: w, .. } if *w == waiter)), "{outputs:#?}");
    assert_eq!(usable_until(&h), at("2026-03-10T21:30:00Z"));
}

#[test]
fn a_refresh_answered_after_the_cutoff_is_refused_and_a_login_follows() {
    // Login at 02:40 IST (21:10Z) with a 20-minute token and a refresh token: handed out until expiry −
    // 5 s = 21:29:55Z, refresh due at expiry − 30 s = 21:29:30Z, cut-off at 21:30Z. The refresh's answer
    // arrives after the cut-off: it extends a login from before the cut-off, so it is dead.
    let mut p = policy("Asia/Kolkata", "03:00", None, Mode::Eager);
    p.refresh_buffer = Some(Duration::from_secs(30));
    p.jitter = 0.0;
    let login_at = at("2026-03-09T21:10:00Z");
    let mut h = Harness::new(config(p, true), login_at);
    h.now = plus(login_at, 1);
    let grant = h.grant(Some(Duration::from_secs(20 * 60)), true);
    h.complete_auth(Ok(grant));
    assert_eq!(usable_until(&h), at("2026-03-09T21:29:55Z"));
    assert_eq!(h.session.poll_timeout(), Some(at("2026-03-09T21:29:30Z")));
    let outputs = h.tick_at_timeout();
    assert!(outputs.iter().any(|o| matches!(o, Output::Refresh { .. })), "{outputs:#?}");
    // A request after the token's end waits for the refresh.
    h.now = at("2026-03-09T21:29:58Z");
    let (waiter, outputs) = h.request(None);
    assert_eq!(served(&outputs), None);
    h.now = at("2026-03-09T21:30:05Z");
    let grant = h.grant(Some(Duration::from_secs(20 * 60)), true);
    let outputs = h.complete_auth(Ok(grant));
    assert_eq!(served(&outputs), None, "the waiter got a token from before the cut-off: {outputs:#?}");
    assert!(!outputs.iter().any(|o| matches!(o, Output::Publish(Some(_)))), "{outputs:#?}");
    assert!(has_login(&outputs), "a full login replaces the refused refresh: {outputs:#?}");
    assert_eq!(h.session.generation(), Generation(1), "the refreshed grant was not installed");
    // The login's grant serves the waiter until the next day's cut-off.
    h.now = plus(h.now, 1);
    let grant = h.grant(Some(TWO_DAYS), false);
    let outputs = h.complete_auth(Ok(grant));
    assert!(outputs.iter().any(|o| matches!(o, Output::Serve { waiter: w, .. } if *w == waiter)), "{outputs:#?}");
    assert_eq!(usable_until(&h), at("2026-03-10T21:30:00Z"));
}

/// Logs in at `login_at` and checks the cut-off that follows, then that after the re-login the next
/// request asks for (an eager session without a warm-up time does not log in at the cut-off itself: nobody
/// is trading then) the next cut-off falls at `next`.
fn check_cutoffs(zone: &str, cutoff: &str, login_at: &str, first: &str, next: &str) {
    let mut h = logged_in(policy(zone, cutoff, None, Mode::Eager), at(login_at), TWO_DAYS);
    let first = at(first);
    assert_eq!(usable_until(&h), first, "{zone} {cutoff}: first cut-off after {login_at}");
    assert_eq!(h.session.poll_timeout(), Some(first));
    let outputs = h.tick(plus_ms(first, -1));
    assert!(outputs.is_empty(), "{outputs:#?}");
    let outputs = h.tick(first);
    assert!(revoked_for_cutoff(&outputs), "{zone}: no revocation at {first}: {outputs:#?}");
    assert!(!has_login(&outputs), "no login at the cut-off until a request asks: {outputs:#?}");
    h.now = plus(first, 1);
    let (_, outputs) = h.request(None);
    assert!(has_login(&outputs), "the first request after the cut-off logs in");
    let grant = h.grant(Some(TWO_DAYS), false);
    h.complete_auth(Ok(grant));
    assert_eq!(usable_until(&h), at(next), "{zone} {cutoff}: cut-off after the one at {first}");
}

#[test]
fn new_york_cutoffs_across_the_spring_forward_of_2026_03_08() {
    // Saturday 12:00 EST → Sunday 03:00 EDT (the first hour after the jump) = 07:00Z → Monday 07:00Z.
    check_cutoffs("America/New_York", "03:00", "2026-03-07T17:00:00Z", "2026-03-08T07:00:00Z", "2026-03-09T07:00:00Z");
    // The day before the change, 03:00 EST = 08:00Z.
    check_cutoffs("America/New_York", "03:00", "2026-03-06T17:00:00Z", "2026-03-07T08:00:00Z", "2026-03-08T07:00:00Z");
    // 02:30 does not exist on 2026-03-08: it moves forward by the gap to 03:30 EDT.
    check_cutoffs("America/New_York", "02:30", "2026-03-07T17:00:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z");
}

#[test]
fn new_york_cutoffs_across_the_fall_back_of_2026_11_01() {
    // Saturday 12:00 EDT → Sunday 03:00 EST (after the repeated hour) = 08:00Z → Monday 08:00Z.
    check_cutoffs("America/New_York", "03:00", "2026-10-31T16:00:00Z", "2026-11-01T08:00:00Z", "2026-11-02T08:00:00Z");
    // The day before, 03:00 EDT = 07:00Z.
    check_cutoffs("America/New_York", "03:00", "2026-10-30T16:00:00Z", "2026-10-31T07:00:00Z", "2026-11-01T08:00:00Z");
    // 01:30 happens twice on 2026-11-01: the first (EDT, 05:30Z) counts, once.
    check_cutoffs("America/New_York", "01:30", "2026-10-31T16:00:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z");
}

#[test]
fn copenhagen_cutoffs_across_the_spring_forward_of_2026_03_29() {
    // 03:00 on the change day is CEST (+2) = 01:00Z; the day before it is CET (+1) = 02:00Z.
    check_cutoffs("Europe/Copenhagen", "03:00", "2026-03-28T11:00:00Z", "2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z");
    check_cutoffs("Europe/Copenhagen", "03:00", "2026-03-27T11:00:00Z", "2026-03-28T02:00:00Z", "2026-03-29T01:00:00Z");
    // 02:30 does not exist on 2026-03-29: 03:30 CEST = 01:30Z.
    check_cutoffs("Europe/Copenhagen", "02:30", "2026-03-28T11:00:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z");
}

#[test]
fn copenhagen_cutoffs_across_the_fall_back_of_2026_10_25() {
    // 03:00 on the change day is CET again (+1) = 02:00Z; the day before, CEST = 01:00Z.
    check_cutoffs("Europe/Copenhagen", "03:00", "2026-10-24T10:00:00Z", "2026-10-25T02:00:00Z", "2026-10-26T02:00:00Z");
    check_cutoffs("Europe/Copenhagen", "03:00", "2026-10-23T10:00:00Z", "2026-10-24T01:00:00Z", "2026-10-25T02:00:00Z");
    // 02:30 happens twice on 2026-10-25: the first (CEST, 00:30Z) counts, once; the next day's is 01:30Z.
    check_cutoffs("Europe/Copenhagen", "02:30", "2026-10-24T10:00:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z");
}

#[test]
fn warmup_brings_an_eager_session_back_before_market_open() {
    // Kolkata: cut-off 03:00 IST (21:30Z), warm-up 08:45 IST (03:15Z the next day).
    let mut h =
        logged_in(policy("Asia/Kolkata", "03:00", Some("08:45"), Mode::Eager), at("2026-03-09T04:30:00Z"), TWO_DAYS);
    let outputs = h.tick(at("2026-03-09T21:30:00Z"));
    assert!(revoked_for_cutoff(&outputs));
    assert!(!has_login(&outputs), "eager with a warm-up: no login at the cut-off");
    assert_eq!(h.session.state(), StateKind::Expired);
    let warmup = at("2026-03-10T03:15:00Z");
    assert_eq!(h.session.poll_timeout(), Some(warmup));
    // Nothing happens overnight.
    for t in ["2026-03-09T23:00:00Z", "2026-03-10T01:00:00Z", "2026-03-10T03:14:59Z"] {
        assert!(h.tick(at(t)).is_empty(), "something happened at {t}");
    }
    let outputs = h.tick(warmup);
    assert!(has_login(&outputs), "{outputs:#?}");
    assert_eq!(h.session.state(), StateKind::Reinitializing);
    h.now = plus(warmup, 1);
    let grant = h.grant(Some(TWO_DAYS), false);
    h.complete_auth(Ok(grant));
    assert_eq!(usable_until(&h), at("2026-03-10T21:30:00Z"));
}

#[test]
fn a_request_before_the_warmup_logs_in_on_demand() {
    let mut h =
        logged_in(policy("Asia/Kolkata", "03:00", Some("08:45"), Mode::Eager), at("2026-03-09T04:30:00Z"), TWO_DAYS);
    h.tick(at("2026-03-09T21:30:00Z"));
    h.now = at("2026-03-10T01:00:00Z");
    let (_, outputs) = h.request(None);
    assert!(has_login(&outputs));
    assert_eq!(h.session.state(), StateKind::Reinitializing);
}

#[test]
fn warmup_moves_with_daylight_saving_time() {
    // New York, cut-off 03:00, warm-up 08:00. On 2026-03-08 (spring forward) 08:00 EDT = 12:00Z; on
    // 2026-11-01 (fall back) 08:00 EST = 13:00Z.
    for (login_at, cutoff, warmup) in [
        ("2026-03-07T17:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T12:00:00Z"),
        ("2026-10-31T16:00:00Z", "2026-11-01T08:00:00Z", "2026-11-01T13:00:00Z"),
    ] {
        let mut h = logged_in(policy("America/New_York", "03:00", Some("08:00"), Mode::Eager), at(login_at), TWO_DAYS);
        h.tick(at(cutoff));
        assert_eq!(h.session.state(), StateKind::Expired);
        assert_eq!(h.session.poll_timeout(), Some(at(warmup)), "warm-up after the cut-off at {cutoff}");
        assert!(has_login(&h.tick(at(warmup))));
    }
}

#[test]
fn lazy_mode_logs_in_only_when_asked() {
    let start = at("2026-03-09T04:30:00Z");
    let mut h = Harness::new(config(policy("Asia/Kolkata", "03:00", None, Mode::Lazy), false), start);
    assert_eq!(h.session.state(), StateKind::Expired);
    assert!(h.auth.is_none(), "no login at creation");
    assert_eq!(h.session.poll_timeout(), None);
    // Days pass, across several cut-offs: nothing.
    for day in 1..=3 {
        let outputs = h.tick(plus(start, day * 86_400));
        assert!(outputs.is_empty(), "day {day}: {outputs:#?}");
        assert_eq!(h.session.poll_timeout(), None);
    }
    assert!(h.session.login_attempts().next().is_none());
    let (_, outputs) = h.request(None);
    assert!(has_login(&outputs));
    // After the next cut-off the lazy session again waits for a request.
    h.now = plus(h.now, 1);
    let grant = h.grant(Some(TWO_DAYS), false);
    h.complete_auth(Ok(grant));
    let cutoff = usable_until(&h);
    let outputs = h.tick(cutoff);
    assert!(revoked_for_cutoff(&outputs) && !has_login(&outputs), "{outputs:#?}");
    assert_eq!(h.session.poll_timeout(), None);
    assert_eq!(h.input(Input::Activity), Vec::<Output>::new());
}

#[test]
fn a_restart_between_the_cutoff_and_the_warmup_waits_for_the_warmup() {
    use warden_engine::{Session, SessionConfig, SessionId};
    let config = SessionConfig::new(
        SessionId::new("warm").unwrap(),
        policy("Asia/Kolkata", "03:00", Some("08:45"), Mode::Eager),
    );
    // Logged in on Monday 10:00 IST; the 03:00 cut-off ended the grant; the process restarts at 05:00.
    let mut before = Session::new(config.clone(), at("2026-03-09T04:30:00Z"));
    let attempt = std::iter::from_fn(|| before.poll_output())
        .find_map(|o| match o {
            Output::Login { attempt, .. } => Some(attempt),
            _ => None,
        })
        .expect("eager login");
    let grant = warden_engine::Grant::new("tok", at("2026-03-09T04:30:00Z")).expires_in(TWO_DAYS);
    before.handle_auth_completed(at("2026-03-09T04:30:01Z"), attempt, Ok(grant));
    before.handle_tick(at("2026-03-09T21:30:00Z"));
    assert_eq!(before.state(), warden_engine::StateKind::Expired);
    let snapshot = before.snapshot();

    let mut after = Session::restore(config, snapshot, at("2026-03-09T23:30:00Z")).expect("restores");
    let outputs: Vec<Output> = std::iter::from_fn(|| after.poll_output()).collect();
    assert!(!has_login(&outputs), "no login at 05:00 IST: the warm-up is at 08:45: {outputs:#?}");
    assert_eq!(after.state(), warden_engine::StateKind::Expired);
    assert_eq!(after.poll_timeout(), Some(at("2026-03-10T03:15:00Z")), "08:45 IST");
    after.handle_tick(at("2026-03-10T03:15:00Z"));
    let outputs: Vec<Output> = std::iter::from_fn(|| after.poll_output()).collect();
    assert!(has_login(&outputs), "the warm-up logs in: {outputs:#?}");
}
