//! A full cycle of every broker stream against its mock broker, through the real runtime and warden's
//! streams (`warden_actors::stream`), in real time on 127.0.0.1: a `Warden` with the broker's real
//! adapter, a stream opened on the session with subscriptions, messages flowing, then the grant changes —
//!
//! - Saxo: refreshes, each handed to the open socket (`PUT /openapi/streamingws/authorize`); one socket
//!   throughout and no message lost (Saxo's message ids come without a hole);
//! - Kite, Kotak Neo, IBKR: the token expires or is invalidated (`POST /__mock/invalidate`), the session
//!   logs in again (Kite: with a person's request token), and the stream reconnects with the new grant
//!   only, its subscriptions replayed from the ledger and the gap reported with bounds around the outage;
//!
//! then logout, and the stream goes `Down` and stays there. The mock counts every stream handshake or
//! authentication with a token it issued and no longer accepts (`stream_dead_tokens`): none is allowed.
//! Each test takes a few seconds (seconds-long tokens); every wait is bounded.

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use common::{client, open, order, policy, quote, spec, stream_mock, until, until_invalid, warden};
use tokio::sync::mpsc;
use warden_actors::stream::{
    Frame, IbkrStream, KiteTicker, KotakStream, SaxoStream, StreamEvent, StreamHandle, StreamSettings, StreamSpec,
    StreamState, Streams,
};
use warden_actors::{Clock, ExecuteError, SessionHandle};
use warden_adapters::broker::ApiRequest;
use warden_engine::{Generation, Idempotency, Secret, StateKind, UnixMs};
use warden_sim::mock::MockBroker;
use warden_sim::mock::client::{Adapter, MockClient};
use warden_sim::model::ModelKind;

/// The longest any one wait for an event may take.
const WAIT: Duration = Duration::from_secs(10);

fn now() -> UnixMs {
    Clock::system().now()
}

/// Streams that retry fast (the mocks are on loopback).
fn stream_settings() -> StreamSettings {
    let mut settings = StreamSettings::default();
    settings.backoff_min = Duration::from_millis(50);
    settings.backoff_max = Duration::from_millis(500);
    settings.idle_timeout = Duration::from_secs(5);
    settings
}

/// A stream's events as the test read them, each with the wall-clock time it was read.
struct Recorder {
    rx: mpsc::Receiver<StreamEvent>,
    log: Vec<(UnixMs, StreamEvent)>,
}

impl Recorder {
    fn new(rx: mpsc::Receiver<StreamEvent>) -> Recorder {
        Recorder { rx, log: Vec::new() }
    }

    /// Reads events until `pick` accepts one (at most [`WAIT`]): when it was read, and what `pick` made of it.
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&StreamEvent) -> Option<T>) -> (UnixMs, T) {
        let (rx, log) = (&mut self.rx, &mut self.log);
        let search = async {
            while let Some(event) = rx.recv().await {
                let at = now();
                let found = pick(&event);
                log.push((at, event));
                if let Some(found) = found {
                    return Some((at, found));
                }
            }
            None
        };
        match tokio::time::timeout(WAIT, search).await {
            Ok(Some(found)) => found,
            Ok(None) => panic!("the stream ended before {what}: {}", self.summary()),
            Err(_) => panic!("no {what} within {WAIT:?}: {}", self.summary()),
        }
    }

    /// Reads messages until every key of `wanted` was in one (`decode` reads a message's keys).
    async fn until_all<K: Ord + Debug>(&mut self, what: &str, decode: impl Fn(&Frame) -> Vec<K>, wanted: &[K]) {
        let mut seen = BTreeSet::new();
        self.until(what, |event| {
            if let StreamEvent::Message(frame) = event {
                seen.extend(decode(frame));
            }
            wanted.iter().all(|k| seen.contains(k)).then_some(())
        })
        .await;
    }

    /// Reads whatever comes for `span`.
    async fn drain(&mut self, span: Duration) {
        let (rx, log) = (&mut self.rx, &mut self.log);
        let _ = tokio::time::timeout(span, async {
            while let Some(event) = rx.recv().await {
                log.push((now(), event));
            }
        })
        .await;
    }

    /// The messages read from position `from` of the log on.
    fn messages(&self, from: usize) -> impl Iterator<Item = (UnixMs, &Frame)> {
        self.log[from..].iter().filter_map(|(at, e)| match e {
            StreamEvent::Message(frame) => Some((*at, frame)),
            _ => None,
        })
    }

    /// The events other than messages, from position `from` on.
    fn others(&self, from: usize) -> Vec<&StreamEvent> {
        self.log[from..].iter().map(|(_, e)| e).filter(|e| !matches!(e, StreamEvent::Message(_))).collect()
    }

    /// The log in short: events other than messages, and runs of messages counted.
    fn summary(&self) -> String {
        let mut out = Vec::new();
        let mut run = 0;
        for (_, event) in &self.log {
            if matches!(event, StreamEvent::Message(_)) {
                run += 1;
                continue;
            }
            if run > 0 {
                out.push(format!("{run} message(s)"));
                run = 0;
            }
            out.push(event.to_string());
        }
        if run > 0 {
            out.push(format!("{run} message(s)"));
        }
        out.join(" | ")
    }
}

fn connected(event: &StreamEvent) -> Option<Generation> {
    match event {
        StreamEvent::Connected { generation } => Some(*generation),
        _ => None,
    }
}

fn down(event: &StreamEvent) -> Option<String> {
    match event {
        StreamEvent::Down { why } => Some(why.clone()),
        _ => None,
    }
}

fn reconnected(event: &StreamEvent) -> Option<(Generation, Option<(UnixMs, UnixMs)>)> {
    match event {
        StreamEvent::Reconnected { generation, gap } => Some((*generation, *gap)),
        _ => None,
    }
}

/// An intraday invalidation through the mock's control route; how many tokens it ended.
async fn invalidate(mock: &MockBroker) -> u64 {
    let answer = reqwest::Client::new().post(format!("{}/__mock/invalidate", mock.base_url())).send().await;
    let body: serde_json::Value = answer.expect("POST /__mock/invalidate").json().await.expect("JSON");
    body["ended"].as_u64().expect("ended")
}

/// A person's login code through the mock's control route.
async fn login_code(mock: &MockBroker) -> String {
    let answer = reqwest::get(format!("{}/__mock/login-code", mock.base_url())).await;
    let body: serde_json::Value = answer.expect("GET /__mock/login-code").json().await.expect("JSON");
    body["code"].as_str().expect("code").to_owned()
}

/// The generation and the instant of issue of the session's current grant.
fn current_grant(session: &SessionHandle) -> (Generation, UnixMs) {
    let lease = session.try_token().expect("a usable grant");
    (lease.generation, lease.grant.issued_at)
}

/// Logs out and waits for the stream to go `Down` because of it (the broker may have closed the socket
/// a moment before: Kite's and IBKR's logouts end the token); then, for half a second, silence: no
/// message, no new socket.
async fn logout_and_down(session: &SessionHandle, stream: &StreamHandle, events: &mut Recorder) {
    let mark = events.log.len();
    session.logout().await.expect("logout");
    assert_eq!(session.status().state, StateKind::Stopped);
    let logged_out = |e: &StreamEvent| down(e).filter(|why| why.contains("logged out"));
    events.until("Down after the logout", logged_out).await;
    let others = events.others(mark);
    let socket_opened = |e: &&StreamEvent| matches!(e, StreamEvent::Connected { .. } | StreamEvent::Reconnected { .. });
    assert!(!others.iter().any(socket_opened), "no socket after the logout: {}", events.summary());
    assert_eq!(stream.state(), StreamState::Down);
    let mark = events.log.len();
    events.drain(Duration::from_millis(500)).await;
    assert_eq!(events.log.len(), mark, "nothing after the logout's Down: {}", events.summary());
    assert_eq!(stream.state(), StreamState::Down);
}

/// The instrument tokens of a Kite binary tick message.
fn kite_instruments(frame: &Frame) -> Vec<u32> {
    let bytes = frame.as_bytes();
    let count = u16::from_be_bytes([bytes[0], bytes[1]]);
    let mut at = 2;
    let mut tokens = Vec::new();
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        tokens.push(u32::from_be_bytes(bytes[at + 2..at + 6].try_into().unwrap()));
        at += 2 + len;
    }
    tokens
}

/// The scrips of a Kotak `sf` tick.
fn kotak_scrips(frame: &Frame) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(frame.as_bytes()).unwrap_or_default();
    if value["type"] != "sf" {
        return Vec::new();
    }
    value["data"].as_array().into_iter().flatten().filter_map(|d| d["tk"].as_str().map(str::to_owned)).collect()
}

/// The conid and the mock's send time (`_updated`, ms) of an IBKR market-data tick.
fn ibkr_tick(frame: &Frame) -> Option<(u64, i64)> {
    let value: serde_json::Value = serde_json::from_slice(frame.as_bytes()).ok()?;
    value["topic"].as_str()?.strip_prefix("smd+")?;
    Some((value["conid"].as_u64()?, value["_updated"].as_i64()?))
}

fn ibkr_conids(frame: &Frame) -> Vec<u64> {
    ibkr_tick(frame).map(|(conid, _)| conid).into_iter().collect()
}

/// The message id and reference id of a Saxo frame.
fn saxo_message(frame: &Frame) -> Option<(u64, String)> {
    let bytes = frame.as_bytes();
    let id = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let reference = warden_actors::stream::brokers::saxo_reference_id(bytes)?.to_owned();
    Some((id, reference))
}

fn saxo_references(frame: &Frame) -> Vec<String> {
    saxo_message(frame).map(|(_, r)| r).into_iter().collect()
}

/// After a gap-reporting reconnection: the gap `(from, to)` starts when the old socket died — after the
/// grant was killed at `killed_at`, by the time the test read `Down` at `down_at` — and ends once a
/// socket with the new grant (issued at `issued_at`) was subscribed, by the time the test read
/// `Reconnected` at `reconnected_at`. So it contains the whole outage.
fn assert_gap_bounds(
    gap: Option<(UnixMs, UnixMs)>,
    killed_at: UnixMs,
    down_at: UnixMs,
    issued_at: UnixMs,
    reconnected_at: UnixMs,
) {
    let (from, to) = gap.expect("a gap: the old socket died before the new one was ready");
    assert!(killed_at <= from && from <= down_at, "the gap starts at the death: {killed_at} <= {from} <= {down_at}");
    assert!(
        issued_at <= to && to <= reconnected_at,
        "the gap ends once the new grant's socket is subscribed: {issued_at} <= {to} <= {reconnected_at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kite_ticker_reconnects_with_the_new_grant_only() {
    let mock = stream_mock(spec(ModelKind::Zerodha, Duration::from_secs(3600), None), Duration::from_millis(200)).await;
    let client = client(&mock);
    let warden = warden().await;
    let credentials = client.first_login_credentials(&mock, mock.now());
    let session = open(&warden, &client, credentials, policy(Duration::from_secs(1), None), "kite").await;
    quote(&session, &client).await.expect("a quote after the request-token login");

    let streams = Streams::new(&warden, stream_settings());
    let ticker = KiteTicker::new(format!("ws://{}/ws", mock.addr()));
    let (stream, events) = streams.open(&session, StreamSpec::new(Arc::new(ticker)));
    let mut events = Recorder::new(events);
    stream.subscribe("408065").await.unwrap();
    stream.subscribe("738561").await.unwrap();
    let (_, generation) = events.until("Connected", connected).await;
    assert_eq!(generation, Generation(1));
    events.until_all("ticks of both instruments", kite_instruments, &[408_065, 738_561]).await;

    // The token dies intraday: the ticker says so and closes; the session cannot log in without a person.
    let token = session.try_token().unwrap().grant.access_token.expose().to_owned();
    let killed_at = now();
    assert_eq!(invalidate(&mock).await, 1);
    let (down_at, why) = events.until("Down", down).await;
    assert!(why.contains("refused grant g1") && !why.contains(&token), "{why}");
    assert!(until_invalid(&session).await, "the session waits for a request token: {:?}", session.status());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.state(), StreamState::Down);
    assert_eq!(mock.stats().server.streams_opened, 1, "no new socket without a new grant");

    // The operator hands a request token in: a new grant, and the stream comes back with it.
    let code = login_code(&mock).await;
    session.supply_second_factor(Secret::new(code)).await.expect("hand the request token in");
    let (reconnected_at, (generation, gap)) = events.until("Reconnected", reconnected).await;
    let (current, issued_at) = current_grant(&session);
    assert_eq!((generation, current), (Generation(2), Generation(2)));
    assert_gap_bounds(gap, killed_at, down_at, issued_at, reconnected_at);
    events.until_all("both instruments on the new socket", kite_instruments, &[408_065, 738_561]).await;
    order(&session, &client, "kite-stream-1").await.expect("an order with the new grant");

    let server = mock.stats().server;
    assert_eq!((server.streams_opened, server.streams_closed_token_died), (2, 1), "{server:?}");
    assert_eq!((server.streams_refused, server.stream_dead_tokens), (0, 0), "never the dead token again: {server:?}");

    logout_and_down(&session, &stream, &mut events).await;
    assert!(until(Duration::from_secs(5), || mock.stats().model.logouts == 1).await, "DELETE /session/token");
    let server = mock.stats().server;
    assert_eq!((server.streams_opened, server.stream_dead_tokens), (2, 0), "{server:?}");
    stream.close().await;
    assert_eq!(stream.state(), StreamState::Closed);
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kotak_feed_reconnects_with_the_new_grant_only() {
    let mock = stream_mock(spec(ModelKind::KotakNeo, Duration::from_secs(4), None), Duration::from_millis(200)).await;
    let client = client(&mock);
    let warden = warden().await;
    let credentials = client.credentials().clone();
    let session = open(&warden, &client, credentials, policy(Duration::from_secs(1), None), "kotak").await;
    quote(&session, &client).await.expect("a quote after the TOTP and MPIN login");

    let streams = Streams::new(&warden, stream_settings());
    let mut protocol = KotakStream::new(format!("ws://{}/realtime", mock.addr()));
    protocol.heartbeat_interval = Duration::from_millis(500);
    let (stream, events) = streams.open(&session, StreamSpec::new(Arc::new(protocol)));
    let mut events = Recorder::new(events);
    stream.subscribe("nse_cm|11536").await.unwrap();
    stream.subscribe("nse_cm|1594").await.unwrap();
    let (_, generation) = events.until("Connected", connected).await;
    assert_eq!(generation, Generation(1));
    let scrips = ["11536".to_owned(), "1594".to_owned()];
    events.until_all("ticks of both scrips", kotak_scrips, &scrips).await;

    // The 4 s token expires: the session logs in again; one socket per session, so the stream closes the
    // old socket and opens one with the new grant, and says there was a gap.
    let mark = events.log.len();
    let (reconnected_at, (generation, gap)) = events.until("Reconnected after the expiry", reconnected).await;
    let (current, issued_at) = current_grant(&session);
    assert_eq!((generation, current), (Generation(2), Generation(2)));
    let (from, to) = gap.expect("break before make: a gap, reported");
    assert!(from <= to && issued_at <= to && to <= reconnected_at, "{from} {to} {issued_at} {reconnected_at}");
    assert!(events.others(mark).len() <= 2, "at most a Down before it: {}", events.summary());
    events.until_all("both scrips on the new socket", kotak_scrips, &scrips).await;

    // An intraday invalidation: the feed refuses the session and closes; the session logs in again.
    let killed_at = now();
    assert!(invalidate(&mock).await >= 1);
    let (down_at, why) = events.until("Down", down).await;
    assert!(why.contains("refused grant g2"), "{why}");
    let (reconnected_at, (generation, gap)) = events.until("Reconnected", reconnected).await;
    let (current, issued_at) = current_grant(&session);
    assert_eq!((generation, current), (Generation(3), Generation(3)));
    assert_gap_bounds(gap, killed_at, down_at, issued_at, reconnected_at);
    events.until_all("both scrips on the third socket", kotak_scrips, &scrips).await;
    order(&session, &client, "kotak-stream-1").await.expect("an order with the new grant");

    let server = mock.stats().server;
    assert_eq!(server.streams_opened, 3, "{server:?}");
    assert_eq!((server.streams_refused, server.stream_dead_tokens), (0, 0), "never a dead token: {server:?}");

    logout_and_down(&session, &stream, &mut events).await;
    assert_eq!(mock.stats().server.stream_dead_tokens, 0);
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibkr_websocket_reconnects_with_the_new_session_cookie_only() {
    let mock = stream_mock(spec(ModelKind::Ibkr, Duration::from_secs(4), None), Duration::from_millis(200)).await;
    let client = client(&mock);
    let warden = warden().await;
    let policy = policy(Duration::from_secs(1), Some(Duration::from_millis(700)));
    let session = open(&warden, &client, client.credentials().clone(), policy, "ibkr").await;
    quote(&session, &client).await.expect("a snapshot after the live session token and ssodh/init");
    // The adapter keeps `/tickle`'s `session` in the grant: the WebSocket's `api` cookie.
    let grant = session.try_token().unwrap().grant.clone();
    let cookie = grant.extras.get("session").expect("the tickle's session in the grant").expose().to_owned();
    assert!(!cookie.is_empty() && cookie != grant.access_token.expose());

    let streams = Streams::new(&warden, stream_settings());
    let mut protocol = IbkrStream::new(format!("ws://{}/v1/api/ws", mock.addr()));
    protocol.tic_interval = Duration::from_millis(500);
    let (stream, events) = streams.open(&session, StreamSpec::new(Arc::new(protocol)));
    let mut events = Recorder::new(events);
    stream.subscribe(r#"smd+265598+{"fields":["31"]}"#).await.unwrap();
    stream.subscribe(r#"smd+8314+{"fields":["31"]}"#).await.unwrap();
    let (_, generation) = events.until("Connected", connected).await;
    assert_eq!(generation, Generation(1));
    events.until_all("ticks of both conids", ibkr_conids, &[265_598, 8_314]).await;

    // The 4 s live session token expires: a new handshake and brokerage session (which ends the old one:
    // one session per user), a new cookie, a new socket.
    let (_, (generation, _)) = events.until("Reconnected after the expiry", reconnected).await;
    assert_eq!(generation, Generation(2));
    // The mock closes a client silent for 2 s: the first socket lived 4 s on its tics, until the new
    // login ended its brokerage session (if the new socket was not ready first).
    let whys: Vec<String> = events.others(0).into_iter().filter_map(down).collect();
    assert!(whys.iter().all(|why| why.contains("refused grant g1")), "only the new login ended it: {whys:?}");
    events.until_all("both conids on the new socket", ibkr_conids, &[265_598, 8_314]).await;
    let new_cookie = session.try_token().unwrap().grant.extras.get("session").unwrap().expose().to_owned();
    assert_ne!(new_cookie, cookie, "a new brokerage session, a new cookie");

    // An intraday invalidation: `sts` says unauthenticated and the socket closes; the session logs in.
    let mark = events.log.len();
    let killed_at = now();
    assert!(invalidate(&mock).await >= 1);
    let (down_at, why) = events.until("Down", down).await;
    assert!(why.contains("refused grant g2"), "{why}");
    let (reconnected_at, (generation, gap)) = events.until("Reconnected", reconnected).await;
    let (current, issued_at) = current_grant(&session);
    assert_eq!((generation, current), (Generation(3), Generation(3)));
    assert_gap_bounds(gap, killed_at, down_at, issued_at, reconnected_at);
    let (from, _) = gap.unwrap();
    let old_ticks: Vec<i64> = events.messages(mark).filter_map(|(_, f)| ibkr_tick(f)).map(|(_, t)| t).collect();
    assert!(old_ticks.iter().all(|t| *t <= from.as_millis()), "every tick before the gap was sent before it");
    let after = events.log.len();
    events.until_all("both conids on the third socket", ibkr_conids, &[265_598, 8_314]).await;
    let new_ticks: Vec<i64> = events.messages(after).filter_map(|(_, f)| ibkr_tick(f)).map(|(_, t)| t).collect();
    assert!(new_ticks.iter().all(|t| *t >= issued_at.as_millis()), "every new tick came with the new grant");
    quote(&session, &client).await.expect("a snapshot with the new grant");

    let stats = mock.stats();
    assert_eq!(stats.server.streams_opened, 3, "{:?}", stats.server);
    assert_eq!((stats.server.streams_refused, stats.server.stream_dead_tokens), (0, 0), "{:?}", stats.server);
    assert!(stats.model.keepalives >= 4, "tickles and tics: {:?}", stats.model);

    logout_and_down(&session, &stream, &mut events).await;
    assert!(until(Duration::from_secs(5), || mock.stats().model.logouts == 1).await, "POST /logout");
    assert_eq!(mock.stats().server.stream_dead_tokens, 0);
    stream.close().await;
    warden.shutdown(false).await;
}

/// A Saxo price subscription on the streaming context, through `execute`.
async fn saxo_subscribe(
    session: &SessionHandle,
    client: &MockClient,
    mock: &MockBroker,
    reference: &str,
    uic: u64,
) -> Result<(), ExecuteError> {
    let url = format!("{}/openapi/trade/v1/infoprices/subscriptions", mock.base_url());
    let body = serde_json::json!({"ContextId": SAXO_CONTEXT, "ReferenceId": reference,
        "Arguments": {"Uic": uic, "AssetType": "FxSpot"}});
    session
        .execute(Idempotency::NonIdempotent, |lease| {
            let (client, request) = (client.clone(), ApiRequest::post(url.clone()).json(body.clone()));
            async move { client.send(now(), &lease.grant, request).await.map(|_| ()) }
        })
        .await
}

/// The streaming context of the Saxo test.
const SAXO_CONTEXT: &str = "warden-ctx";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saxo_stream_is_reauthorised_in_place_and_loses_nothing() {
    // No heartbeat during the test: every frame the user sees is data, and Saxo's message ids (one
    // sequence per socket, control messages included) must then come without a hole.
    let spec = spec(ModelKind::Saxo, Duration::from_secs(3), Some(Duration::from_secs(60)));
    let mock = stream_mock(spec, Duration::from_secs(3600)).await;
    let client = client(&mock);
    let warden = warden().await;
    let credentials = client.first_login_credentials(&mock, mock.now());
    let session = open(&warden, &client, credentials, policy(Duration::from_secs(1), None), "saxo").await;
    quote(&session, &client).await.expect("a quote after the authorization code grant");
    // The mock ends the first token 3 s after it issued it (the grant says 2 or 3 s: `expires_in` is in
    // whole seconds, rounded down, from when the answer is written).
    let first_death = session.try_token().unwrap().grant.issued_at.saturating_add(Duration::from_secs(3));

    let Adapter::Saxo(saxo) = client.adapter() else { unreachable!() };
    let streams = Streams::new(&warden, stream_settings());
    let protocol = SaxoStream::new(format!("ws://{}/openapi/streamingws", mock.addr()), SAXO_CONTEXT);
    let (stream, events) = streams.open(&session, StreamSpec::new(Arc::new(protocol)).reauthorizer(saxo.clone()));
    let mut events = Recorder::new(events);
    let (_, generation) = events.until("Connected", connected).await;
    assert_eq!(generation, Generation(1));
    saxo_subscribe(&session, &client, &mock, "r1", 21).await.expect("a price subscription");
    saxo_subscribe(&session, &client, &mock, "r2", 22).await.expect("another");
    let references = ["r1".to_owned(), "r2".to_owned()];
    events.until_all("prices of both subscriptions", saxo_references, &references).await;

    // Refreshes (a second before the grant's expiry), each handed to the open socket, until well after the
    // first token died at the mock.
    let second =
        |e: &StreamEvent| matches!(e, StreamEvent::Reauthorized { generation } if *generation >= Generation(3));
    events.until("a second re-authorisation", |e| second(e).then_some(())).await;
    let past = first_death.saturating_add(Duration::from_millis(500));
    let message_after = |e: &StreamEvent| (matches!(e, StreamEvent::Message(_)) && now() > past).then_some(());
    events.until("a message after the first token's death", message_after).await;
    events.until_all("both subscriptions after it", saxo_references, &references).await;

    let others = events.others(0);
    let generations: Vec<Generation> = others
        .iter()
        .map(|e| match e {
            StreamEvent::Connected { generation } | StreamEvent::Reauthorized { generation } => *generation,
            other => panic!("only Connected and Reauthorized: {other}; {}", events.summary()),
        })
        .collect();
    assert!(generations.len() >= 3, "at least two refreshes: {}", events.summary());
    assert!(generations.iter().zip(1..).all(|(g, n)| *g == Generation(n)), "every grant, in order: {generations:?}");
    let ids: Vec<u64> = events.messages(0).map(|(_, f)| saxo_message(f).expect("a Saxo frame").0).collect();
    let holes: Vec<(u64, u64)> = ids.windows(2).filter(|w| w[1] != w[0] + 1).map(|w| (w[0], w[1])).collect();
    assert!(holes.is_empty(), "no message lost across the re-authorisations: holes {holes:?} in {} ids", ids.len());
    let stats = mock.stats();
    assert_eq!((stats.server.streams_opened, stats.server.streams_closed_token_died), (1, 0), "{:?}", stats.server);
    assert_eq!((stats.server.auth_failures, stats.server.stream_dead_tokens), (0, 0), "{:?}", stats.server);
    assert_eq!(stats.model.logins, 1, "{:?}", stats.model);
    assert!(stats.model.refreshes >= generations.len() as u64 - 1, "{:?}", stats.model);

    // An invalidation ends the access and the refresh token: the server sends `_disconnect` and closes;
    // the stream reports the rejection, the session needs a person's authorization code, and the stream
    // waits with it (no socket, so no dead token).
    let killed_at = now();
    assert!(invalidate(&mock).await >= 1);
    let (down_at, why) = events.until("Down", down).await;
    assert!(why.contains("_disconnect"), "{why}");
    assert!(until_invalid(&session).await, "the session waits for a person: {:?}", session.status());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.state(), StreamState::Down);
    let code = login_code(&mock).await;
    session.supply_second_factor(Secret::new(code)).await.expect("hand the authorization code in");
    let (reconnected_at, (generation, gap)) = events.until("Reconnected", reconnected).await;
    let (current, issued_at) = current_grant(&session);
    assert!(generation > *generations.last().unwrap() && generation <= current, "{generation} {current}");
    assert_gap_bounds(gap, killed_at, down_at, issued_at, reconnected_at);
    // Saxo keeps a context's subscriptions across a reconnection (for a while).
    events.until_all("both subscriptions on the new socket", saxo_references, &references).await;
    let server = mock.stats().server;
    assert_eq!((server.streams_opened, server.streams_closed_token_died), (2, 1), "{server:?}");
    assert_eq!((server.streams_refused, server.stream_dead_tokens), (0, 0), "never the dead token again: {server:?}");

    // Saxo's logout is local (no revocation call): the stream closes its socket itself.
    logout_and_down(&session, &stream, &mut events).await;
    stream.close().await;
    warden.shutdown(false).await;
}
