//! Streams that follow the session, against small WebSocket servers on 127.0.0.1 written here: a new
//! grant re-authorised in place with no message lost; a new grant on a broker that needs a new socket
//! (make-before-break, subscriptions replayed); a dropped socket reconnected with the gap reported; a
//! silent socket detected; the heartbeat kept and authentication sent before any subscription; a
//! reconnect storm held to the account's budget; a socket closed because its token died reconnected with
//! the new grant only; a stream whose session is `Invalid` waiting for it without spending the budget,
//! and a logout closing the socket. Every wait is bounded; the servers stop with the test.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, put};
use tokio::sync::mpsc;
use warden_actors::stream::{
    Frame, KiteTicker, KotakStream, SaxoStream, StreamEvent, StreamSettings, StreamSpec, StreamState, Streams,
};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionHandle, SessionSpec, Warden};
use warden_adapters::broker::{HttpClient, HttpSettings, Saxo, SaxoSettings};
use warden_engine::ports::{BoxFuture, LoginRequest};
use warden_engine::{Broker, BrokerError, Capabilities, Credentials, Generation, Grant, SessionId, StateKind, UnixMs};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

/// What a test server does with one accepted socket.
type Behaviour = Arc<dyn Fn(Arc<Server>, usize, WebSocket) -> BoxFuture<'static, ()> + Send + Sync>;

/// A WebSocket server on 127.0.0.1 that logs what it sees.
struct Server {
    log: Mutex<Vec<String>>,
    valid: Mutex<HashSet<String>>,
    connections: AtomicUsize,
    behaviour: Mutex<Option<Behaviour>>,
    refuse_all: AtomicBool,
}

impl Server {
    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn position(&self, line: &str) -> Option<usize> {
        self.lines().iter().position(|l| l == line)
    }
}

fn token_of(headers: &HeaderMap, query: &HashMap<String, String>) -> String {
    query.get("access_token").cloned().unwrap_or_else(|| {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned()
    })
}

async fn upgrade(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = token_of(&headers, &query);
    if server.refuse_all.load(Ordering::SeqCst) {
        server.note("refused (storm)".to_owned());
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if !token.is_empty() && !server.valid.lock().unwrap().contains(&token) {
        server.note(format!("refused {token}"));
        return StatusCode::FORBIDDEN.into_response();
    }
    let id = server.connections.fetch_add(1, Ordering::SeqCst) + 1;
    server.note(format!("open {id} {token}"));
    let behaviour = server.behaviour.lock().unwrap().clone().expect("a behaviour");
    ws.on_upgrade(move |socket| behaviour(server, id, socket))
}

async fn authorize(State(server): State<Arc<Server>>, headers: HeaderMap) -> StatusCode {
    let token = token_of(&headers, &HashMap::new());
    server.note(format!("put {token}"));
    if server.valid.lock().unwrap().contains(&token) { StatusCode::ACCEPTED } else { StatusCode::UNAUTHORIZED }
}

/// Starts a server; returns it and its base URL (`127.0.0.1:port`).
async fn serve(behaviour: Behaviour) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        log: Mutex::new(Vec::new()),
        valid: Mutex::new(HashSet::new()),
        connections: AtomicUsize::new(0),
        behaviour: Mutex::new(Some(behaviour)),
        refuse_all: AtomicBool::new(false),
    });
    let app = Router::new()
        .route("/ws", any(upgrade))
        .route("/ws/connect", any(upgrade))
        .route("/ws/authorize", put(authorize))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (server, address.to_string())
}

/// Sends a numbered data frame every `every` until the client goes away or `stop` says so; logs what the
/// client sends.
fn ticker(
    every: Duration,
    stop: impl Fn(&Server, usize, u64) -> Option<Option<CloseFrame>> + Send + Sync + 'static,
) -> Behaviour {
    let stop = Arc::new(stop);
    Arc::new(move |server: Arc<Server>, id: usize, mut socket: WebSocket| {
        let stop = stop.clone();
        Box::pin(async move {
            let mut seq = 0u64;
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    received = socket.recv() => match received {
                        Some(Ok(Message::Text(text))) => server.note(format!("recv {id} {}", text.as_str())),
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = tick.tick() => {
                        if let Some(close) = stop(&server, id, seq) {
                            if let Some(frame) = close {
                                let _ = socket.send(Message::Close(Some(frame))).await;
                            }
                            break;
                        }
                        seq += 1;
                        // Kite-shaped: a binary tick longer than one byte; the payload is "conn:seq".
                        let payload = format!("{id}:{seq}").into_bytes();
                        if socket.send(Message::Binary(payload.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            server.note(format!("close {id}"));
        })
    })
}

/// A broker whose grants carry Kite's `api_key` extra; tokens are `kite-tok-N`.
struct KiteLike(ScriptedBroker);

impl Broker for KiteLike {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(async move {
            self.0.login(now, request).await.map(|g| g.with_extra("api_key", "KEY").with_extra("sid", "SID"))
        })
    }
    fn logout<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.0.logout(now, grant)
    }
}

async fn session(name: &str) -> (Warden, SessionHandle) {
    let warden = Warden::builder().memory_store().build().await.unwrap();
    let broker =
        Arc::new(KiteLike(ScriptedBroker::new("kite").login_fallback(Reply::grant(Duration::from_secs(3600)))));
    let handle = warden.open(SessionSpec::new(SessionId::new(name).unwrap(), broker)).await.unwrap();
    (warden, handle)
}

fn settings() -> StreamSettings {
    let mut settings = StreamSettings::default();
    settings.backoff_min = Duration::from_millis(20);
    settings.backoff_max = Duration::from_millis(200);
    settings
}

/// The next event that `pick` accepts (others are kept in `seen`), within [`WAIT`].
async fn until<T>(
    events: &mut mpsc::Receiver<StreamEvent>,
    seen: &mut Vec<StreamEvent>,
    mut pick: impl FnMut(&StreamEvent) -> Option<T>,
) -> T {
    let search = async {
        loop {
            let event = events.recv().await.expect("the stream ended");
            if let Some(found) = pick(&event) {
                return found;
            }
            seen.push(event);
        }
    };
    match tokio::time::timeout(WAIT, search).await {
        Ok(found) => found,
        Err(_) => panic!("no such event within {WAIT:?}; saw {seen:?}"),
    }
}

/// Waits (at most [`WAIT`], in steps of 10 ms) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let steps = WAIT.as_millis() / 10;
    for _ in 0..steps {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(check(), "not within {WAIT:?}: {what}");
}

fn tick_of(frame: &Frame) -> (usize, u64) {
    let text = String::from_utf8(frame.as_bytes().to_vec()).unwrap();
    let (conn, seq) = text.split_once(':').unwrap();
    (conn.parse().unwrap(), seq.parse().unwrap())
}

#[tokio::test]
async fn saxo_reauthorises_in_place_and_loses_no_message() {
    // Saxo-shaped binary frames: 8 bytes message id, 2 reserved, the reference id's length and the id.
    let behaviour: Behaviour = Arc::new(|server: Arc<Server>, id: usize, mut socket: WebSocket| {
        Box::pin(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for seq in 1..=100_000u64 {
                tick.tick().await;
                let mut frame = seq.to_le_bytes().to_vec();
                frame.extend_from_slice(&[0, 0, 2]);
                frame.extend_from_slice(b"p1");
                frame.extend_from_slice(&seq.to_be_bytes());
                if socket.send(Message::Binary(frame.into())).await.is_err() {
                    break;
                }
            }
            server.note(format!("close {id}"));
        })
    });
    let (server, address) = serve(behaviour).await;
    server.valid.lock().unwrap().extend(["kite-tok-1".to_owned(), "kite-tok-2".to_owned()]);
    let (warden, handle) = session("saxo-stream").await;
    let http = HttpClient::new(HttpSettings::default()).unwrap();
    let mut saxo_settings = SaxoSettings::simulation("https://my.app/callback");
    saxo_settings.auth_url = format!("http://{address}");
    let saxo = Arc::new(Saxo::new(saxo_settings, http).unwrap());
    let streams = Streams::new(&warden, settings());
    let protocol = Arc::new(SaxoStream::new(format!("ws://{address}/ws"), "ctx1"));
    let (stream, mut events) = streams.open(&handle, StreamSpec::new(protocol).reauthorizer(saxo));
    let mut seen = Vec::new();
    let mut sequence = Vec::new();
    let seq_of = |frame: &Frame| u64::from_be_bytes(frame.as_bytes()[13..21].try_into().unwrap());
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    // Some data, then a new grant.
    while sequence.len() < 20 {
        let frame = until(&mut events, &mut seen, |e| match e {
            StreamEvent::Message(f) => Some(f.clone()),
            _ => None,
        })
        .await;
        sequence.push(seq_of(&frame));
    }
    handle.reset().await.unwrap();
    let generation = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Reauthorized { generation } => Some(*generation),
        StreamEvent::Message(f) => {
            sequence.push(seq_of(f));
            None
        }
        _ => None,
    })
    .await;
    assert_eq!(generation, Generation(2));
    while sequence.len() < 200 {
        let frame = until(&mut events, &mut seen, |e| match e {
            StreamEvent::Message(f) => Some(f.clone()),
            _ => None,
        })
        .await;
        sequence.push(seq_of(&frame));
    }
    assert!(seen.iter().all(|e| !matches!(e, StreamEvent::Reconnected { .. } | StreamEvent::Down { .. })), "{seen:?}");
    let expected: Vec<u64> = (sequence[0]..sequence[0] + sequence.len() as u64).collect();
    assert_eq!(sequence, expected, "every message, in order, across the re-authorisation");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "one socket throughout");
    assert!(server.position("put kite-tok-2").is_some(), "the new token went to /authorize: {:?}", server.lines());
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test]
async fn a_new_grant_reconnects_make_before_break_with_subscriptions_restored() {
    let (server, address) = serve(ticker(Duration::from_millis(5), |_, _, _| None)).await;
    server.valid.lock().unwrap().extend(["kite-tok-1".to_owned(), "kite-tok-2".to_owned()]);
    let (warden, handle) = session("kite-mbb").await;
    let streams = Streams::new(&warden, settings());
    let (stream, mut events) =
        streams.open(&handle, StreamSpec::new(Arc::new(KiteTicker::new(format!("ws://{address}/ws")))));
    let mut seen = Vec::new();
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    stream.subscribe("408065").await.unwrap();
    stream.subscribe("738561").await.unwrap();
    eventually("both subscriptions reach socket 1", || {
        server.position(r#"recv 1 {"a":"mode","v":["full",[738561]]}"#).is_some()
    })
    .await;
    handle.reset().await.unwrap();
    let (generation, gap) = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Reconnected { generation, gap } => Some((*generation, *gap)),
        _ => None,
    })
    .await;
    assert_eq!((generation, gap), (Generation(2), None), "the new socket was ready before the old one closed");
    eventually("both subscriptions are replayed on socket 2, and socket 1 closes", || {
        server.position(r#"recv 2 {"a":"subscribe","v":[738561]}"#).is_some() && server.position("close 1").is_some()
    })
    .await;
    let open2 = server.position("open 2 kite-tok-2").expect("socket 2 with the new token");
    assert!(server.position(r#"recv 2 {"a":"subscribe","v":[408065]}"#).is_some(), "replayed on socket 2");
    // Socket 2 was open (its upgrade answered) before socket 1 was closed. (The client also wrote socket
    // 2's subscriptions before closing socket 1, but two connections give the server no order to check.)
    let close1 = server.position("close 1").unwrap();
    assert!(open2 < close1, "make before break: {:?}", server.lines());
    // Data flows from socket 2.
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Message(f) if tick_of(f).0 == 2).then_some(())).await;
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_reports_the_gap_with_its_bounds() {
    // Socket 1 drops after 30 ticks (no close frame); socket 2 goes on.
    let (server, address) =
        serve(ticker(Duration::from_millis(5), |_, id, seq| (id == 1 && seq == 30).then_some(None))).await;
    server.valid.lock().unwrap().insert("kite-tok-1".to_owned());
    let (warden, handle) = session("kite-gap").await;
    let streams = Streams::new(&warden, settings());
    let (stream, mut events) =
        streams.open(&handle, StreamSpec::new(Arc::new(KiteTicker::new(format!("ws://{address}/ws")))));
    let mut seen = Vec::new();
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    stream.subscribe("408065").await.unwrap();
    let before = warden.now();
    let why = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Down { why } => Some(why.clone()),
        _ => None,
    })
    .await;
    assert!(!why.contains("kite-tok"), "no token in the reason: {why}");
    let (generation, gap) = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Reconnected { generation, gap } => Some((*generation, *gap)),
        _ => None,
    })
    .await;
    let after = warden.now();
    assert_eq!(generation, Generation(1), "the grant was fine: same generation");
    let (from, to) = gap.expect("a gap");
    assert!(before <= from && from <= to && to <= after, "{before} <= {from} <= {to} <= {after}");
    let last_of_1 = seen.iter().rev().find_map(|e| match e {
        StreamEvent::Message(f) => Some(tick_of(f)),
        _ => None,
    });
    assert_eq!(last_of_1.map(|t| t.0), Some(1));
    eventually("the subscription is replayed on socket 2", || {
        server.position(r#"recv 2 {"a":"subscribe","v":[408065]}"#).is_some()
    })
    .await;
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test]
async fn a_connected_but_silent_socket_is_declared_dead() {
    // Socket 1 says nothing (axum still answers pings); socket 2 ticks.
    let behaviour: Behaviour = Arc::new(|server: Arc<Server>, id: usize, mut socket: WebSocket| {
        Box::pin(async move {
            if id == 1 {
                while let Some(Ok(_)) = socket.recv().await {}
                server.note("close 1".to_owned());
                return;
            }
            ticker(Duration::from_millis(5), |_, _, _| None)(server, id, socket).await;
        })
    });
    let (server, address) = serve(behaviour).await;
    server.valid.lock().unwrap().insert("kite-tok-1".to_owned());
    let (warden, handle) = session("kite-silent").await;
    let mut settings = settings();
    settings.idle_timeout = Duration::from_millis(300);
    let streams = Streams::new(&warden, settings);
    let (stream, mut events) =
        streams.open(&handle, StreamSpec::new(Arc::new(KiteTicker::new(format!("ws://{address}/ws")))));
    let mut seen = Vec::new();
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    // Pings do not count as traffic.
    stream.send(Frame::text("hello")).await.unwrap();
    let why = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Down { why } => Some(why.clone()),
        _ => None,
    })
    .await;
    assert!(why.contains("silent"), "{why}");
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Reconnected { gap: Some(_), .. }).then_some(())).await;
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Message(f) if tick_of(f).0 == 2).then_some(())).await;
    eventually("socket 1 is closed by the client", || server.position("close 1").is_some()).await;
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test]
async fn kotak_authenticates_before_subscribing_and_keeps_its_heartbeat() {
    // Kotak-shaped: the first frame must be `cn`; it is answered; `hb` frames are counted.
    let behaviour: Behaviour = Arc::new(|server: Arc<Server>, id: usize, mut socket: WebSocket| {
        Box::pin(async move {
            while let Some(Ok(message)) = socket.recv().await {
                let Message::Text(text) = message else { continue };
                let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                let kind = value["type"].as_str().unwrap_or("").to_owned();
                server.note(format!("recv {id} {kind}"));
                if kind == "cn" {
                    let ok = value["Authorization"].as_str().is_some_and(|t| t.starts_with("kite-tok-"));
                    let answer = if ok { r#"{"type":"cn","stat":"Ok"}"# } else { r#"{"type":"cn","stat":"NotOk"}"# };
                    let _ = socket.send(Message::Text(answer.into())).await;
                }
                if kind == "hb" {
                    let _ = socket.send(Message::Text(r#"{"type":"hb"}"#.into())).await;
                }
            }
            server.note(format!("close {id}"));
        })
    });
    let (server, address) = serve(behaviour).await;
    let (warden, handle) = session("kotak-hb").await;
    let mut protocol = KotakStream::new(format!("ws://{address}/ws"));
    protocol.heartbeat_interval = Duration::from_millis(50);
    let streams = Streams::new(&warden, settings());
    let (stream, mut events) = streams.open(&handle, StreamSpec::new(Arc::new(protocol)));
    let mut seen = Vec::new();
    stream.subscribe("nse_cm|11536").await.unwrap();
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    eventually("five heartbeats", || server.lines().iter().filter(|l| *l == "recv 1 hb").count() >= 5).await;
    let lines = server.lines();
    let first = lines.iter().position(|l| l.starts_with("recv 1 ")).unwrap();
    assert_eq!(lines[first], "recv 1 cn", "authentication first: {lines:?}");
    assert!(server.position("recv 1 mws").unwrap() > first, "then the subscription: {lines:?}");
    assert!(seen.iter().all(|e| !matches!(e, StreamEvent::Down { .. })), "{seen:?}");
    // A new grant: Kotak allows one socket, so break then make, and authenticate before resubscribing.
    handle.reset().await.unwrap();
    let gap = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Reconnected { gap, .. } => Some(*gap),
        _ => None,
    })
    .await;
    assert!(gap.is_some(), "break-before-make leaves a gap, and says so");
    eventually("socket 2 resubscribes", || server.position("recv 2 mws").is_some()).await;
    let cn2 = server.position("recv 2 cn").expect("socket 2 authenticates");
    let mws2 = server.position("recv 2 mws").unwrap();
    assert!(cn2 < mws2, "authentication before resubscription: {:?}", server.lines());
    eventually("socket 1 is closed", || server.position("close 1").is_some()).await;
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test]
async fn a_reconnect_storm_is_held_to_the_accounts_budget() {
    let (server, address) = serve(ticker(Duration::from_millis(5), |_, _, _| None)).await;
    server.refuse_all.store(true, Ordering::SeqCst);
    let (warden, handle) = session("kite-storm").await;
    let mut settings = settings();
    settings.backoff_min = Duration::from_millis(1);
    settings.backoff_max = Duration::from_millis(5);
    settings.reconnects_per_window = 4;
    settings.reconnect_window = Duration::from_secs(60);
    let streams = Streams::new(&warden, settings);
    let url = format!("ws://{address}/ws");
    // Three streams of one account against a broker that refuses every connection.
    let mut opened = Vec::new();
    for _ in 0..3 {
        let spec = StreamSpec::new(Arc::new(KiteTicker::new(url.clone()))).account("ZX1234");
        opened.push(streams.open(&handle, spec));
    }
    eventually("the budget is spent", || server.lines().len() >= 4).await;
    // Give a storm every chance to happen: many backoff periods.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = server.lines().iter().filter(|l| l.starts_with("refused")).count();
    assert_eq!(attempts, 4, "at most 4 attempts per minute for the account, all streams together");
    for (stream, _) in &opened {
        stream.close().await;
    }
    warden.shutdown(false).await;
}

#[tokio::test]
async fn a_socket_closed_because_its_token_died_reconnects_with_the_new_grant_only() {
    // Socket 1 is closed with 4001 "token expired" after 20 ticks, and tok-1 is refused from then on.
    let (server, address) = serve(ticker(Duration::from_millis(5), |server, id, seq| {
        if id == 1 && seq == 20 {
            server.valid.lock().unwrap().remove("kite-tok-1");
            server.note("killed kite-tok-1".to_owned());
            return Some(Some(CloseFrame { code: 4001, reason: "token expired".into() }));
        }
        None
    }))
    .await;
    server.valid.lock().unwrap().extend(["kite-tok-1".to_owned(), "kite-tok-2".to_owned()]);
    let (warden, handle) = session("kite-dead").await;
    let streams = Streams::new(&warden, settings());
    let (stream, mut events) =
        streams.open(&handle, StreamSpec::new(Arc::new(KiteTicker::new(format!("ws://{address}/ws")))));
    let mut seen = Vec::new();
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    let why = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Down { why } => Some(why.clone()),
        _ => None,
    })
    .await;
    assert!(why.contains("4001"), "{why}");
    let (generation, gap) = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Reconnected { generation, gap } => Some((*generation, *gap)),
        _ => None,
    })
    .await;
    assert_eq!(generation, Generation(2), "the session logged in again after the stream reported the rejection");
    assert!(gap.is_some());
    let lines = server.lines();
    let killed = server.position("killed kite-tok-1").unwrap();
    assert!(
        lines[killed + 1..].iter().all(|l| !l.ends_with("kite-tok-1")),
        "never again with the dead token: {lines:?}"
    );
    assert!(server.position("open 2 kite-tok-2").is_some(), "{lines:?}");
    assert_eq!(handle.status().generation, Generation(2));
    stream.close().await;
    warden.shutdown(false).await;
}

#[tokio::test]
async fn a_stream_waits_for_an_invalid_session_without_spending_its_budget_and_a_logout_closes_it() {
    // Socket 1 is closed with 4001 "token expired" after 10 ticks, and tok-1 is refused from then on.
    let (server, address) = serve(ticker(Duration::from_millis(5), |server, id, seq| {
        if id == 1 && seq == 10 {
            server.valid.lock().unwrap().remove("kite-tok-1");
            return Some(Some(CloseFrame { code: 4001, reason: "token expired".into() }));
        }
        None
    }))
    .await;
    server.valid.lock().unwrap().extend(["kite-tok-1".to_owned(), "kite-tok-2".to_owned()]);
    // The login after the rejection is refused (bad credentials: the session is `Invalid` until an
    // operator updates them); the one after that succeeds.
    let scripted = ScriptedBroker::new("kite")
        .script_logins([Reply::grant(Duration::from_secs(3600)), Reply::error(403, "bad credentials")])
        .login_fallback(Reply::grant(Duration::from_secs(3600)));
    let warden = Warden::builder().memory_store().build().await.unwrap();
    let spec = SessionSpec::new(SessionId::new("kite-invalid").unwrap(), Arc::new(KiteLike(scripted)));
    let handle = warden.open(spec).await.unwrap();
    // Three attempts a minute, a backoff of a few milliseconds: a stream that retried while the session
    // gives no grant would spend the budget at once, and then wait most of a minute for the new grant.
    let mut settings = settings();
    settings.backoff_min = Duration::from_millis(1);
    settings.backoff_max = Duration::from_millis(5);
    settings.reconnects_per_window = 3;
    settings.reconnect_window = Duration::from_secs(60);
    let streams = Streams::new(&warden, settings);
    let (stream, mut events) =
        streams.open(&handle, StreamSpec::new(Arc::new(KiteTicker::new(format!("ws://{address}/ws")))));
    let mut seen = Vec::new();
    until(&mut events, &mut seen, |e| matches!(e, StreamEvent::Connected { .. }).then_some(())).await;
    let why = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Down { why } => Some(why.clone()),
        _ => None,
    })
    .await;
    assert!(why.contains("4001"), "{why}");
    eventually("the session is Invalid", || handle.status().state == StateKind::Invalid).await;
    // Many backoff periods pass; the stream stays down and makes no attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.state(), StreamState::Down);
    handle.update_credentials(Credentials::new()).await.unwrap();
    let generation = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Reconnected { generation, .. } => Some(*generation),
        _ => None,
    })
    .await;
    assert_eq!(generation, Generation(2), "at once, within the budget: {seen:?}");
    assert!(server.position("open 2 kite-tok-2").is_some(), "{:?}", server.lines());

    // A logout closes the socket (the broker here would keep it open) and the stream stays down.
    handle.logout().await.unwrap();
    let why = until(&mut events, &mut seen, |e| match e {
        StreamEvent::Down { why } => Some(why.clone()),
        _ => None,
    })
    .await;
    assert!(why.contains("logged out"), "{why}");
    eventually("socket 2 is closed by the client", || server.position("close 2").is_some()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stream.state(), StreamState::Down);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2, "no attempt after the logout");
    stream.close().await;
    assert_eq!(stream.state(), StreamState::Closed);
    warden.shutdown(false).await;
}
