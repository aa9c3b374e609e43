//! The broker models' rules, one test each: expiry and revocation, resets, idle timeout, competing
//! sessions, refresh rotation, rate-limit penalties, duplicate orders, lock-out, second factor, outages.
//! Calls that sleep run under tokio's paused clock, so latency is virtual time.

use std::time::Duration;

use warden_engine::{Broker, Credentials, Delivery, ErrorClass, Grant, KeepaliveStatus, LoginRequest, Secret, UnixMs};
use warden_sim::model::{
    Affects, BrokerEvent, BrokerModel, BrokerSpec, Endpoint, ErrorRates, EventKind, Latency, Lockout, LoginAfterExpiry,
    ModelKind, ModelRequest, Outage, OutageMode, RejectionForm, Revocation, TokenVerdict, Window,
};

fn at(text: &str) -> UnixMs {
    UnixMs::from_timestamp(text.parse::<jiff::Timestamp>().unwrap())
}

fn secs(t: UnixMs, s: u64) -> UnixMs {
    t.saturating_add(Duration::from_secs(s))
}

/// A spec with fixed latencies, so instants in the tests are exact.
fn spec(kind: ModelKind) -> BrokerSpec {
    let mut spec = BrokerSpec::preset(kind);
    spec.login_latency = Latency::fixed(Duration::from_millis(500));
    spec.refresh_latency = Latency::fixed(Duration::from_millis(200));
    spec.keepalive_latency = Latency::fixed(Duration::from_millis(100));
    spec.request_latency = Latency::fixed(Duration::from_millis(100));
    spec
}

async fn login(model: &BrokerModel, now: UnixMs) -> Result<Grant, warden_engine::BrokerError> {
    let credentials = Credentials::new().with("user", "u");
    model.login(now, LoginRequest { credentials: &credentials, second_factor: None, take_over: false }).await
}

async fn login_with(
    model: &BrokerModel,
    now: UnixMs,
    take_over: bool,
    factor: Option<&Secret>,
) -> Result<Grant, ErrorClass> {
    let credentials = Credentials::new().with("user", "u");
    model
        .login(now, LoginRequest { credentials: &credentials, second_factor: factor, take_over })
        .await
        .map_err(|e| model.classify(&e))
}

fn token(grant: &Grant) -> &str {
    grant.access_token.expose()
}

#[tokio::test(start_paused = true)]
async fn a_token_past_its_declared_expiry_is_a_dead_token_use() {
    let model = BrokerModel::new(spec(ModelKind::KotakNeo), 1);
    let t0 = at("2026-03-09T03:00:00Z");
    let grant = login(&model, t0).await.unwrap();
    assert_eq!(grant.expires_at, Some(secs(t0, 3600)));
    assert!(model.request(secs(t0, 3_000), token(&grant), &ModelRequest::read(1)).result.is_ok());
    // Sent 50 ms before the declared expiry with a 100 ms round trip, it reaches the broker half-way,
    // exactly at the expiry: the broker refuses it.
    let late =
        model.request(secs(t0, 3600).saturating_sub(Duration::from_millis(50)), token(&grant), &ModelRequest::read(2));
    let error = late.result.unwrap_err();
    assert_eq!(error.code.as_deref(), Some("900901"));
    assert_eq!(model.classify(&error), ErrorClass::AuthExpired);
    let stats = model.stats();
    assert_eq!((stats.dead_token_uses, stats.rejections, stats.requests_ok), (1, 1, 1));
    assert_eq!(model.verdict(token(&grant), secs(t0, 3600)), TokenVerdict::Expired);
}

#[tokio::test(start_paused = true)]
async fn silent_deauth_rejects_but_is_not_a_dead_token_use() {
    let t0 = at("2026-03-09T14:00:00Z");
    let mut s = spec(ModelKind::Ibkr);
    s.events = vec![BrokerEvent { at: secs(t0, 600), kind: EventKind::SilentDeauth }];
    let model = BrokerModel::new(s, 2);
    let grant = login(&model, t0).await.unwrap();
    assert_eq!(model.keepalive(secs(t0, 60), &grant).await.unwrap(), KeepaliveStatus::Alive);
    assert!(model.request(secs(t0, 500), token(&grant), &ModelRequest::read(1)).result.is_ok());
    assert_eq!(model.verdict(token(&grant), secs(t0, 601)), TokenVerdict::Revoked(Revocation::SilentDeauth));
    let refused = model.request(secs(t0, 601), token(&grant), &ModelRequest::read(2)).result.unwrap_err();
    assert_eq!(model.classify(&refused), ErrorClass::AuthExpired);
    assert_eq!(model.keepalive(secs(t0, 620), &grant).await.unwrap(), KeepaliveStatus::Unauthenticated);
    let stats = model.stats();
    assert_eq!((stats.rejections, stats.dead_token_uses, stats.silent_deauths), (1, 0, 1));
    // A new login after the event is not affected by it.
    let fresh = login(&model, secs(t0, 700)).await.unwrap();
    assert!(model.is_accepted(token(&fresh), secs(t0, 800)));
}

#[tokio::test(start_paused = true)]
async fn early_expiry_answers_one_of_kotaks_expiry_forms() {
    let t0 = at("2026-03-09T04:00:00Z");
    let mut s = spec(ModelKind::KotakNeo);
    s.events = vec![BrokerEvent { at: secs(t0, 1_800), kind: EventKind::EarlyExpiry }];
    let model = BrokerModel::new(s, 3);
    let grant = login(&model, t0).await.unwrap();
    for i in 0..20 {
        let answer = model.request(secs(t0, 1_900 + i), token(&grant), &ModelRequest::read(i));
        assert_eq!(model.classify(&answer.result.unwrap_err()), ErrorClass::AuthExpired);
    }
    let stats = model.stats();
    assert_eq!((stats.rejections, stats.dead_token_uses, stats.early_expiries), (20, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn openalgo_revokes_tokens_issued_before_the_0300_ist_cutoff() {
    let mut s = spec(ModelKind::OpenAlgo);
    s.login_after_expiry = LoginAfterExpiry::Automatic;
    let model = BrokerModel::new(s, 4);
    // 20:00 IST on Monday 2026-03-09; the cut-off is 03:00 IST on Tuesday = 21:30 UTC on Monday.
    let evening = at("2026-03-09T14:30:00Z");
    let grant = login(&model, evening).await.unwrap();
    let cutoff = at("2026-03-09T21:30:00Z");
    assert!(model.is_accepted(token(&grant), cutoff.saturating_sub(Duration::from_millis(1))));
    assert_eq!(model.verdict(token(&grant), cutoff), TokenVerdict::Revoked(Revocation::Reset));
    let refused = model.request(secs(cutoff, 5), token(&grant), &ModelRequest::read(1)).result.unwrap_err();
    assert_eq!(model.classify(&refused), ErrorClass::AuthExpired);
    assert_eq!(model.stats().dead_token_uses, 0);
    // A token issued after the cut-off lives until the next one.
    let morning = login(&model, at("2026-03-10T03:00:00Z")).await.unwrap();
    assert!(model.is_accepted(token(&morning), at("2026-03-10T21:29:00Z")));
    assert!(!model.is_accepted(token(&morning), at("2026-03-10T21:30:00Z")));
}

#[tokio::test(start_paused = true)]
async fn ibkr_idle_timeout_makes_the_keepalive_say_unauthenticated() {
    let t0 = at("2026-03-09T14:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Ibkr), 5);
    let grant = login(&model, t0).await.unwrap();
    // Tickles every 60 s keep it alive well past the 445 s idle limit.
    for minute in 1..=15 {
        assert_eq!(model.keepalive(secs(t0, 60 * minute), &grant).await.unwrap(), KeepaliveStatus::Alive);
    }
    // Then silence for longer than the idle limit.
    let last = secs(t0, 900);
    assert_eq!(model.verdict(token(&grant), secs(last, 446)), TokenVerdict::Revoked(Revocation::IdleTimeout));
    assert_eq!(model.keepalive(secs(last, 446), &grant).await.unwrap(), KeepaliveStatus::Unauthenticated);
    assert_eq!(model.stats().idle_timeouts, 1);
    assert!(model.request(secs(last, 447), token(&grant), &ModelRequest::read(1)).result.is_err());
    assert_eq!(model.stats().dead_token_uses, 0);
}

#[tokio::test(start_paused = true)]
async fn requests_count_as_activity_for_the_idle_timeout() {
    let t0 = at("2026-03-09T14:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Ibkr), 6);
    let grant = login(&model, t0).await.unwrap();
    for i in 1..=20 {
        assert!(model.request(secs(t0, 300 * i), token(&grant), &ModelRequest::read(i)).result.is_ok(), "request {i}");
    }
    assert_eq!(model.stats().idle_timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn ibkr_competing_login_takes_the_account() {
    let t0 = at("2026-03-09T14:00:00Z");
    let mut s = spec(ModelKind::Ibkr);
    s.events = vec![BrokerEvent { at: secs(t0, 120), kind: EventKind::CompetingLogin }];
    let model = BrokerModel::new(s, 7);
    let grant = login(&model, t0).await.unwrap();
    assert_eq!(model.keepalive(secs(t0, 60), &grant).await.unwrap(), KeepaliveStatus::Alive);
    assert_eq!(model.keepalive(secs(t0, 180), &grant).await.unwrap(), KeepaliveStatus::Competing);
    assert_eq!(login_with(&model, secs(t0, 181), false, None).await.unwrap_err(), ErrorClass::Competing);
    let taken = login_with(&model, secs(t0, 190), true, None).await.unwrap();
    assert_eq!(model.keepalive(secs(t0, 240), &taken).await.unwrap(), KeepaliveStatus::Alive);
    assert_eq!(model.stats().competing_logins, 1);
    // IBKR has one brokerage session per user: the new login superseded nothing else alive, and the
    // old token stays dead.
    assert!(!model.is_accepted(token(&grant), secs(t0, 250)));
}

#[tokio::test(start_paused = true)]
async fn competing_on_a_non_ibkr_broker_classifies_as_competing() {
    let t0 = at("2026-03-09T09:00:00Z");
    let mut s = spec(ModelKind::Saxo);
    s.events = vec![BrokerEvent { at: secs(t0, 60), kind: EventKind::CompetingLogin }];
    let model = BrokerModel::new(s, 8);
    let grant = login(&model, t0).await.unwrap();
    let refused = model.request(secs(t0, 61), token(&grant), &ModelRequest::read(1)).result.unwrap_err();
    assert_eq!(model.classify(&refused), ErrorClass::Competing);
}

#[tokio::test(start_paused = true)]
async fn saxo_refresh_rotates_the_pair_and_the_old_refresh_token_is_rejected() {
    let t0 = at("2026-03-09T09:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Saxo), 9);
    let first = login(&model, t0).await.unwrap();
    assert_eq!(first.expires_at, Some(secs(t0, 1200)));
    assert_eq!(first.refresh_expires_at, Some(secs(t0, 3600)));
    let second = model.refresh(secs(t0, 1170), &first).await.unwrap();
    assert_ne!(token(&second), token(&first));
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.expires_at, Some(secs(t0, 1170 + 1200)));
    assert_eq!(second.refresh_expires_at, Some(secs(t0, 1170 + 3600)));
    // The old refresh token was used up.
    let again = model.refresh(secs(t0, 1180), &first).await.unwrap_err();
    assert_eq!(again.code.as_deref(), Some("invalid_grant"));
    assert_eq!(model.classify(&again), ErrorClass::AuthExpired);
    // The new pair works; the old access token still lives until its own expiry.
    assert!(model.is_accepted(token(&second), secs(t0, 2000)));
    assert!(model.is_accepted(token(&first), secs(t0, 1199)));
    let third = model.refresh(secs(t0, 2300), &second).await.unwrap();
    assert!(model.is_accepted(token(&third), secs(t0, 3000)));
    let stats = model.stats();
    assert_eq!((stats.refreshes, stats.refresh_failures, stats.refresh_rejections), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_expired_refresh_token_means_a_full_login() {
    let t0 = at("2026-03-09T09:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Saxo), 10);
    let grant = login(&model, t0).await.unwrap();
    let late = model.refresh(secs(t0, 3600), &grant).await.unwrap_err();
    assert_eq!(model.classify(&late), ErrorClass::AuthExpired);
    assert!(login(&model, secs(t0, 3601)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_429_penalty_lasts_the_configured_period() {
    let t0 = at("2026-03-09T14:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Ibkr), 11);
    let grant = login(&model, t0).await.unwrap();
    let sent = secs(t0, 10);
    for i in 0..10 {
        assert!(model.request(sent, token(&grant), &ModelRequest::read(i)).result.is_ok(), "request {i}");
    }
    let breach = model.request(sent, token(&grant), &ModelRequest::read(10)).result.unwrap_err();
    assert_eq!(breach.status, Some(429));
    assert_eq!(breach.retry_after, Some(Duration::from_secs(600)));
    let wait = Some(Duration::from_secs(600));
    assert_eq!(model.classify(&breach), ErrorClass::RateLimited { retry_after: wait });
    // Five minutes on, still in the box, however slowly it asks.
    let boxed = model.request(secs(sent, 300), token(&grant), &ModelRequest::read(11)).result.unwrap_err();
    assert_eq!(boxed.status, Some(429));
    assert_eq!(boxed.retry_after, Some(Duration::from_secs(300)));
    // Out of the box after ten minutes (the tickles kept the session alive meanwhile).
    for minute in 1..=10 {
        assert_eq!(model.keepalive(secs(sent, 60 * minute), &grant).await.unwrap(), KeepaliveStatus::Alive);
    }
    assert!(model.request(secs(sent, 601), token(&grant), &ModelRequest::read(12)).result.is_ok());
    assert_eq!(model.stats().rate_limited, 2);
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_non_idempotent_op_id_is_counted() {
    let t0 = at("2026-03-09T04:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::KotakNeo), 12);
    let grant = login(&model, t0).await.unwrap();
    assert!(model.request(secs(t0, 1), token(&grant), &ModelRequest::order(42)).result.is_ok());
    assert!(model.request(secs(t0, 2), token(&grant), &ModelRequest::order(43)).result.is_ok());
    assert!(model.request(secs(t0, 3), token(&grant), &ModelRequest::order(42)).result.is_ok());
    // Idempotent requests may repeat an id freely.
    assert!(model.request(secs(t0, 4), token(&grant), &ModelRequest::read(42)).result.is_ok());
    let stats = model.stats();
    assert_eq!((stats.orders_executed, stats.duplicate_orders), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn a_lost_response_executes_the_order_and_says_so() {
    let t0 = at("2026-03-09T04:00:00Z");
    let mut s = spec(ModelKind::KotakNeo);
    s.errors = ErrorRates { response_lost: 1.0, ..ErrorRates::default() };
    let model = BrokerModel::new(s, 13);
    let grant = login(&model, t0).await.unwrap();
    let lost = model.request(secs(t0, 1), token(&grant), &ModelRequest::order(7)).result.unwrap_err();
    assert_eq!(lost.delivery, Delivery::Unknown);
    assert_eq!(model.classify(&lost), ErrorClass::Transient);
    // Reads are never "lost after execution".
    assert!(model.request(secs(t0, 2), token(&grant), &ModelRequest::read(8)).result.is_ok());
    // Retrying the order blindly is exactly the duplicate rule 7 forbids.
    let _ = model.request(secs(t0, 3), token(&grant), &ModelRequest::order(7));
    let stats = model.stats();
    assert_eq!((stats.outcome_unknown, stats.orders_executed, stats.duplicate_orders), (2, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn wrong_credentials_lock_the_account_after_repeated_logins() {
    let t0 = at("2026-03-09T20:00:00Z");
    let mut s = spec(ModelKind::KotakNeo);
    s.wrong_credentials = vec![Window { from: t0, to: secs(t0, 3600) }];
    s.lockout = Some(Lockout { after: 3, duration: Duration::from_secs(86_400) });
    let model = BrokerModel::new(s, 14);
    for i in 0..3 {
        assert_eq!(login_with(&model, secs(t0, 10 * i), false, None).await.unwrap_err(), ErrorClass::AuthExpired);
    }
    assert_eq!(model.stats().lockouts, 1);
    // Locked for a day, even after the password is right again.
    assert_eq!(login_with(&model, secs(t0, 7_200), false, None).await.unwrap_err(), ErrorClass::NeedsHuman);
    assert!(login_with(&model, secs(t0, 20 + 86_400), false, None).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_second_factor_needs_a_person_unless_one_is_supplied() {
    let t0 = at("2026-03-09T03:00:00Z");
    let mut s = spec(ModelKind::KotakNeo);
    s.second_factor = vec![Window::ALWAYS];
    let model = BrokerModel::new(s, 15);
    assert_eq!(login_with(&model, t0, false, None).await.unwrap_err(), ErrorClass::NeedsHuman);
    let code = Secret::new("123456");
    assert!(login_with(&model, secs(t0, 10), false, Some(&code)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn outages_fail_what_they_affect_and_hang_in_virtual_time() {
    let t0 = at("2026-03-09T03:00:00Z");
    let mut s = spec(ModelKind::Saxo);
    s.outages = vec![
        Outage {
            window: Window { from: secs(t0, 100), to: secs(t0, 200) },
            affects: Affects { login: true, ..Affects::NONE },
            mode: OutageMode::Error,
        },
        Outage {
            window: Window { from: secs(t0, 300), to: secs(t0, 400) },
            affects: Affects::ALL,
            mode: OutageMode::Hang(Duration::from_secs(30)),
        },
    ];
    let model = BrokerModel::new(s, 16);
    let grant = login(&model, t0).await.unwrap();
    let down = login(&model, secs(t0, 150)).await.unwrap_err();
    assert_eq!((down.status, model.classify(&down)), (Some(503), ErrorClass::Transient));
    // Requests were not affected by the first outage.
    assert!(model.request(secs(t0, 150), token(&grant), &ModelRequest::read(1)).result.is_ok());
    // The second one hangs: 30 s of virtual time, then no answer.
    let hung = model.refresh(secs(t0, 350), &grant);
    assert!(tokio::time::timeout(Duration::from_millis(29_999), hung).await.is_err());
    let hung = model.refresh(secs(t0, 350), &grant);
    let error = tokio::time::timeout(Duration::from_millis(30_001), hung).await.unwrap().unwrap_err();
    assert_eq!(error.delivery, Delivery::Unknown);
    let answer = model.request(secs(t0, 350), token(&grant), &ModelRequest::order(2));
    assert_eq!(answer.latency, Duration::from_secs(30));
    assert_eq!(answer.result.unwrap_err().delivery, Delivery::Unknown);
    assert_eq!(model.stats().orders_executed, 0);
}

#[tokio::test(start_paused = true)]
async fn login_sleeps_its_latency_and_stamps_the_grant_with_now() {
    let t0 = at("2026-03-09T03:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::OAuth2), 17);
    assert!(tokio::time::timeout(Duration::from_millis(499), login(&model, t0)).await.is_err());
    let grant = tokio::time::timeout(Duration::from_millis(501), login(&model, t0)).await.unwrap().unwrap();
    assert_eq!(grant.issued_at, t0);
    assert_eq!(grant.expires_at, Some(secs(t0, 3600)));
    assert!(grant.refresh_token.is_none());
}

#[tokio::test(start_paused = true)]
async fn zerodha_tokens_die_at_0600_ist_with_token_exception() {
    let model = BrokerModel::new(spec(ModelKind::Zerodha), 18);
    // 09:00 IST on 2026-03-09 = 03:30 UTC; the next 06:00 IST is 00:30 UTC on 2026-03-10.
    let grant = login(&model, at("2026-03-09T03:30:00Z")).await.unwrap();
    assert_eq!(grant.expires_at, Some(at("2026-03-10T00:30:00Z")));
    let refused = model.request(at("2026-03-10T00:30:00Z"), token(&grant), &ModelRequest::read(1)).result.unwrap_err();
    assert_eq!((refused.status, refused.code.as_deref()), (Some(403), Some("TokenException")));
    assert_eq!(model.classify(&refused), ErrorClass::AuthExpired);
    assert_eq!(model.stats().dead_token_uses, 1);
}

#[tokio::test(start_paused = true)]
async fn logout_revokes_the_grant() {
    let t0 = at("2026-03-09T03:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Saxo), 19);
    let grant = login(&model, t0).await.unwrap();
    model.logout(secs(t0, 10), &grant).await.unwrap();
    assert_eq!(model.verdict(token(&grant), secs(t0, 11)), TokenVerdict::Revoked(Revocation::LoggedOut));
    assert!(model.refresh(secs(t0, 12), &grant).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_and_calls_give_the_same_run() {
    async fn run(seed: u64) -> (Vec<String>, Vec<Duration>, warden_sim::model::ModelStats) {
        let t0 = at("2026-03-09T03:00:00Z");
        let mut s = BrokerSpec::preset(ModelKind::KotakNeo);
        s.errors = ErrorRates { request: 0.2, login: 0.3, ..ErrorRates::default() };
        let model = BrokerModel::new(s, seed);
        let mut tokens = Vec::new();
        let mut latencies = Vec::new();
        for i in 0..20u64 {
            if let Ok(grant) = login(&model, secs(t0, 60 * i)).await {
                tokens.push(token(&grant).to_owned());
                let answer = model.request(secs(t0, 60 * i + 5), token(&grant), &ModelRequest::read(i));
                latencies.push(answer.latency);
            }
        }
        (tokens, latencies, model.stats())
    }
    let a = run(99).await;
    assert_eq!(a, run(99).await);
    assert_ne!(a.1, run(100).await.1);
}

#[test]
fn many_requests_stay_cheap_and_exact() {
    let t0 = at("2026-03-09T09:00:00Z");
    let mut s = BrokerSpec::preset(ModelKind::Saxo);
    s.request_limit.windows.clear();
    s.order_limit.windows.clear();
    s.refresh_lifetime = None;
    s.token_expiry = warden_sim::model::TokenExpiry::After(Duration::from_secs(365 * 86_400));
    let model = BrokerModel::new(s, 20);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let grant = runtime.block_on(login(&model, t0)).unwrap();
    let n = 200_000u64;
    for i in 0..n {
        let sent = t0.saturating_add(Duration::from_millis(100 * i));
        let answer = model.request(sent, token(&grant), &ModelRequest { op_id: i, ..ModelRequest::order(i) });
        debug_assert!(answer.result.is_ok());
    }
    let stats = model.stats();
    assert_eq!((stats.requests_seen, stats.requests_ok, stats.orders_executed, stats.duplicate_orders), (n, n, n, 0));
}

#[tokio::test(start_paused = true)]
async fn a_call_is_judged_when_it_arrives_and_answered_after_its_round_trip() {
    let model = BrokerModel::new(spec(ModelKind::OpenAlgo), 21);
    // 02:59 IST; the cut-off is 03:00 IST = 21:30 UTC.
    let t0 = at("2026-03-09T21:29:00Z");
    let grant = login(&model, t0).await.unwrap();
    // Sent 40 ms before the cut-off with a 100 ms round trip: it reaches the broker 10 ms after it.
    let sent = at("2026-03-09T21:29:59.960Z");
    let clock = warden_actors::Clock::starting_at(sent);
    let refused = model.call(sent, token(&grant), &ModelRequest::order(1)).await.unwrap_err();
    assert_eq!(clock.now(), at("2026-03-09T21:30:00.060Z"), "the answer takes the whole round trip");
    assert_eq!(model.classify(&refused), ErrorClass::AuthExpired);
    let (refusals, dropped) = model.refusals();
    assert_eq!(dropped, 0);
    assert_eq!(refusals.len(), 1);
    assert_eq!((refusals[0].sent_at, refusals[0].arrived_at), (sent, at("2026-03-09T21:30:00.010Z")));
    assert_eq!(refusals[0].verdict, TokenVerdict::Revoked(Revocation::Reset));
    assert_eq!(model.stats().orders_executed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_login_is_judged_when_it_arrives() {
    let model = BrokerModel::new(spec(ModelKind::OpenAlgo), 22);
    // Sent 200 ms before the 03:00 IST cut-off with a 500 ms round trip: the broker issues the token
    // 50 ms after the cut-off, so the cut-off does not revoke it.
    let grant = login(&model, at("2026-03-09T21:29:59.800Z")).await.unwrap();
    assert_eq!(grant.issued_at, at("2026-03-09T21:29:59.800Z"));
    assert!(model.is_accepted(token(&grant), at("2026-03-09T21:31:00Z")));
    // Sent 300 ms before it, the token is issued 50 ms before the cut-off and dies with it.
    let early = login(&model, at("2026-03-10T21:29:59.700Z")).await.unwrap();
    assert_eq!(model.verdict(token(&early), at("2026-03-10T21:30:00Z")), TokenVerdict::Revoked(Revocation::Reset));
}

#[tokio::test(start_paused = true)]
async fn angel_one_limits_token_generation_to_one_a_second_and_dies_at_midnight_ist() {
    let model = BrokerModel::new(spec(ModelKind::AngelOne), 23);
    // 10:00 IST; midnight IST is 18:30 UTC.
    let t0 = at("2026-03-09T04:30:00Z");
    let grant = login(&model, t0).await.unwrap();
    assert_eq!(grant.expires_at, Some(at("2026-03-09T18:30:00Z")));
    let again = login(&model, t0.saturating_add(Duration::from_millis(400))).await.unwrap_err();
    assert_eq!(
        (again.status, model.classify(&again)),
        (Some(429), ErrorClass::RateLimited { retry_after: again.retry_after })
    );
    assert!(login(&model, secs(t0, 2)).await.is_ok());
    let late = model.request(at("2026-03-09T18:30:00Z"), token(&grant), &ModelRequest::read(1)).result.unwrap_err();
    assert_eq!((late.status, late.code.as_deref()), (Some(401), Some("AG8001")));
    assert_eq!(model.classify(&late), ErrorClass::AuthExpired);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_can_lose_the_session_while_others_keep_it() {
    let t0 = at("2026-03-09T05:00:00Z");
    let mut s = spec(ModelKind::KotakNeo);
    let order = warden_sim::model::KindId(1);
    s.endpoints = vec![Endpoint {
        kinds: vec![order],
        rejection_form: Some(RejectionForm::Kotak100022),
        early_expiries: vec![secs(t0, 600)],
        ..Endpoint::default()
    }];
    s.rejection_form = RejectionForm::KotakInvalidSession;
    let model = BrokerModel::new(s, 24);
    let grant = login(&model, t0).await.unwrap();
    let place = |op: u64| ModelRequest { kind: order, idempotent: false, op_id: op };
    assert!(model.request(secs(t0, 590), token(&grant), &place(1)).result.is_ok());
    let refused = model.request(secs(t0, 610), token(&grant), &place(2)).result.unwrap_err();
    assert_eq!((refused.status, refused.code.as_deref()), (Some(403), Some("100022")));
    assert_eq!(model.classify(&refused), ErrorClass::AuthExpired);
    // Quotes (kind 0) still work with the same token.
    assert!(model.request(secs(t0, 611), token(&grant), &ModelRequest::read(3)).result.is_ok());
    assert_eq!(model.refusals().0[0].verdict, TokenVerdict::Revoked(Revocation::EndpointExpiry));
    // A token issued after the endpoint's expiry works there again.
    let fresh = login(&model, secs(t0, 620)).await.unwrap();
    assert!(model.request(secs(t0, 630), token(&fresh), &place(4)).result.is_ok());
    // Expired tokens answer in the broker's chosen form.
    let dead = model.request(secs(t0, 3_700), token(&grant), &ModelRequest::read(5)).result.unwrap_err();
    assert_eq!((dead.status, dead.message.as_str()), (Some(403), "Invalid session, please re-login to continue"));
}

#[tokio::test(start_paused = true)]
async fn orders_have_their_own_limit_beside_the_account_limit() {
    let t0 = at("2026-03-09T09:00:00Z");
    let model = BrokerModel::new(spec(ModelKind::Saxo), 25);
    let grant = login(&model, t0).await.unwrap();
    // 1 order/s per session: the second order within a second is refused, a quote is not.
    assert!(model.request(secs(t0, 10), token(&grant), &ModelRequest::order(1)).result.is_ok());
    let second = model.request(secs(t0, 10), token(&grant), &ModelRequest::order(2)).result.unwrap_err();
    assert_eq!(second.status, Some(429));
    assert!(model.request(secs(t0, 10), token(&grant), &ModelRequest::read(3)).result.is_ok());
    assert!(model.request(secs(t0, 11), token(&grant), &ModelRequest::order(4)).result.is_ok());
    let stats = model.stats();
    assert_eq!((stats.orders_executed, stats.rate_limited), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn after_the_daily_expiry_a_login_needs_a_persons_fresh_code() {
    let model = BrokerModel::new(spec(ModelKind::Zerodha), 26);
    // Monday 09:00 IST: the run's first login needs no code (a person logged in before the start).
    let monday = at("2026-03-09T03:30:00Z");
    assert!(login_with(&model, monday, false, None).await.is_ok());
    // Logins later that day still work without a code.
    assert!(login_with(&model, secs(monday, 3_600), false, None).await.is_ok());
    // After Tuesday's 06:00 IST expiry a program cannot log in.
    let tuesday = at("2026-03-10T03:30:00Z");
    let refused = model
        .login(tuesday, LoginRequest { credentials: &Credentials::new(), second_factor: None, take_over: false })
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code.as_deref(), model.classify(&refused)),
        (Some("login_needs_person"), ErrorClass::NeedsHuman)
    );
    // A person's code lives 5 minutes and works once.
    let code = Secret::new(model.issue_login_code(secs(tuesday, 60)));
    let stale_later = Secret::new(model.issue_login_code(secs(tuesday, 120)));
    assert!(login_with(&model, secs(tuesday, 180), false, Some(&code)).await.is_ok());
    // Single use, and good until Wednesday's expiry for later logins without a code.
    assert!(login_with(&model, secs(tuesday, 240), false, None).await.is_ok());
    let wednesday = at("2026-03-11T03:30:00Z");
    assert_eq!(login_with(&model, wednesday, false, Some(&code)).await.unwrap_err(), ErrorClass::NeedsHuman);
    assert_eq!(
        login_with(&model, secs(wednesday, 1), false, Some(&stale_later)).await.unwrap_err(),
        ErrorClass::NeedsHuman
    );
    let fresh = Secret::new(model.issue_login_code(secs(wednesday, 2)));
    assert!(login_with(&model, secs(wednesday, 3), false, Some(&fresh)).await.is_ok());
    assert_eq!(model.stats().login_codes_issued, 3);
}
