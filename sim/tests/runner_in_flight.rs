//! Requests in flight across a boundary, through the whole runner (the real engine, the broker model, the
//! network's latency): the broker judges each request when it arrives, half its round trip after it was
//! sent, so a request sent just before a cut-off, an intraday invalidation or the token's expiry meets
//! the broker on the far side of it.

use warden_engine::UnixMs;
use warden_sim::model::{Revocation, TokenVerdict};
use warden_sim::runner::{RunOptions, RunOutput, StoreKind, run};
use warden_sim::scenario::Scenario;

fn at(text: &str) -> UnixMs {
    UnixMs::from_timestamp(text.parse::<jiff::Timestamp>().unwrap())
}

fn replay(text: &str) -> RunOutput {
    let scenario = Scenario::parse(text, "in-flight.toml").unwrap_or_else(|e| panic!("{e}"));
    run(&scenario, &RunOptions { store: StoreKind::Memory, ..RunOptions::default() }).expect("the scenario runs")
}

#[test]
fn an_order_in_flight_across_the_cutoff_is_judged_after_it() {
    // OpenAlgo revokes every token at 03:00 IST (the engine's cut-off is the same instant). The order
    // leaves at 02:59:59.900 with a valid token; with a 300 ms round trip it reaches the broker at
    // 03:00:00.050, after the cut-off, and is refused — then retried once with the next login's token
    // (rule 7: a refused order was provably not executed).
    let output = replay(
        r#"
        name = "order-across-the-cutoff"
        seed = 1
        start = "2026-03-10T02:00:00+05:30[Asia/Kolkata]"
        duration = "2h"
        [broker]
        model = "openalgo"
        login_after_expiry = "automatic"
        request_latency = { fixed = "300ms" }
        login_latency = { fixed = "1s" }
        [[workload.mix]]
        kind = "order"
        idempotent = false
        [[workload.at]]
        at = "02:59:59.900"
        kind = "order"
        "#,
    );
    assert_eq!(output.refusals.len(), 1, "{:?}", output.refusals);
    let refusal = output.refusals[0];
    assert_eq!(refusal.sent_at, at("2026-03-09T21:29:59.900Z"), "sent before the cut-off");
    assert_eq!(refusal.arrived_at, at("2026-03-09T21:30:00.050Z"), "judged after it, half its latency later");
    assert_eq!(refusal.verdict, TokenVerdict::Revoked(Revocation::Reset));
    let r = &output.report;
    assert_eq!((r.requests_total, r.requests_ok, r.requests_retried), (1, 1, 1));
    assert_eq!((r.rejections, r.dead_token_uses, r.duplicate_orders), (1, 0, 0));
    assert_eq!(r.by_kind["order"].ok, 1);
    // The answer came after two round trips and the login between them.
    assert!(r.max_request_delay_ms >= 300 + 1_000 + 300, "{}", r.max_request_delay_ms);
    assert_eq!(r.events["cutoff"].count, 1);
}

#[test]
fn a_request_in_flight_across_an_intraday_invalidation_is_refused() {
    // Kotak invalidates the session at 11:42:00 IST. A quote sent at 11:41:59.500 arrives at .650 and is
    // served; an order sent at 11:41:59.900 arrives at 11:42:00.050 and is refused with one of Kotak's
    // expiry forms, then retried after the re-login.
    let output = replay(
        r#"
        name = "order-across-an-invalidation"
        seed = 2
        start = "2026-03-09T11:00:00+05:30[Asia/Kolkata]"
        duration = "1h"
        [broker]
        model = "kotak-neo"
        early_expiries = ["11:42"]
        request_latency = { fixed = "300ms" }
        login_latency = { fixed = "1s" }
        [[workload.mix]]
        kind = "quote"
        idempotent = true
        [[workload.mix]]
        kind = "order"
        idempotent = false
        [[workload.at]]
        at = "11:41:59.500"
        kind = "quote"
        [[workload.at]]
        at = "11:41:59.900"
        kind = "order"
        "#,
    );
    let refused: Vec<_> = output.refusals.iter().map(|r| (r.sent_at, r.arrived_at, r.verdict)).collect();
    assert_eq!(
        refused,
        [(
            at("2026-03-09T06:11:59.900Z"),
            at("2026-03-09T06:12:00.050Z"),
            TokenVerdict::Revoked(Revocation::EarlyExpiry)
        )]
    );
    let r = &output.report;
    assert_eq!((r.by_kind["quote"].ok, r.by_kind["order"].ok), (1, 1));
    assert_eq!((r.rejections, r.requests_retried, r.requests_failed), (1, 1, 0));
    assert_eq!(r.events["relogin"].count, 1);
}

/// A quote sent with the token's last usable moment; `margin` is the engine's `expiry_margin`.
fn across_the_expiry(margin: &str, sent: &str) -> RunOutput {
    replay(&format!(
        r#"
        name = "request-across-the-expiry"
        seed = 3
        start = "2026-03-09T09:00:00+05:30[Asia/Kolkata]"
        duration = "2h"
        [broker]
        model = "kotak-neo"
        token_lifetime = "1h"
        request_latency = {{ fixed = "3s" }}
        login_latency = {{ fixed = "1s" }}
        [policy]
        expiry_margin = "{margin}"
        [[workload.mix]]
        kind = "quote"
        idempotent = true
        [[workload.at]]
        at = "{sent}"
        kind = "quote"
        "#
    ))
}

#[test]
fn a_request_in_flight_across_the_expiry_meets_a_dead_token_unless_the_margin_covers_the_trip() {
    // The token is issued at 09:00:00 and declared to expire at 10:00:00. With a 1 s margin the engine
    // still hands it out at 09:59:58.900; the request takes 1.5 s to reach the broker and arrives at
    // 10:00:00.400, past the declared expiry: a dead token, because the margin is shorter than the trip.
    let short = across_the_expiry("1s", "09:59:58.900");
    let r = &short.report;
    assert_eq!((r.dead_token_uses, r.never_dead_token), (1, false));
    assert_eq!(short.refusals[0].verdict, TokenVerdict::Expired);
    assert_eq!(short.refusals[0].arrived_at, at("2026-03-09T04:30:00.400Z"));
    // With the default 5 s margin the engine stops handing it out at 09:59:55: the same request waits
    // for a new login instead, and the broker never sees the old token late.
    let safe = across_the_expiry("5s", "09:59:58.900");
    let r = &safe.report;
    assert_eq!((r.dead_token_uses, r.rejections, r.requests_ok), (0, 0, 1));
    assert!(r.max_token_wait_ms > 0, "it waited for the login");
}
