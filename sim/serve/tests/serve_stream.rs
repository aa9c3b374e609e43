//! `GET /v1/sessions/{id}/stream` against the Kotak Neo mock's real feed (`/realtime`), through the
//! real adapter and runtime: a client connected through the service subscribes, receives ticks, keeps
//! receiving across an intraday invalidation (the warden stream reconnects with the new grant and replays
//! the subscription) and is told of the gap by a control frame; the mock never sees a dead token, and no
//! frame the client gets carries a token. Every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warden_actors::stream::{KotakStream, StreamSpec};
use warden_actors::{Clock, SessionSpec, Warden};
use warden_adapters::broker::{BrokerApi, HttpClient, HttpSettings};
use warden_engine::policy::{Backoff, Rate};
use warden_engine::time::HumanDuration;
use warden_engine::{Policy, Preset, Secret, SessionId};
use warden_serve::{ServeConfig, ServedSession, Service};
use warden_sim::mock::client::{Adapter, MockClient};
use warden_sim::mock::{MockBroker, MockConfig, StreamSettings};
use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind, TokenExpiry};

const TOKEN: &str = "stream-test-bearer-token-0123456789-abcdef";

/// The longest one wait for a frame may take.
const WAIT: Duration = Duration::from_secs(15);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Kotak Neo with an hour-long token and no reset, its feed ticking every 100 ms.
async fn kotak_mock() -> MockBroker {
    let mut spec = BrokerSpec::preset(ModelKind::KotakNeo);
    spec.token_expiry = TokenExpiry::After(Duration::from_secs(3600));
    spec.daily_reset = None;
    spec.weekly_reset = None;
    spec.idle_timeout = None;
    let mut config = MockConfig::demo(BrokerModel::new(spec, 7), Clock::system()).expect("a served model");
    config.streams = StreamSettings {
        heartbeat: Some(Duration::from_millis(200)),
        tick: Duration::from_millis(100),
        token_check: Duration::from_millis(50),
        client_silence: Duration::from_secs(2),
        ..StreamSettings::default()
    };
    MockBroker::start(config).await.expect("the mock starts")
}

/// Hybrid with a fast backoff and room for logins.
fn policy() -> Policy {
    let mut policy = Policy::preset(Preset::Hybrid);
    policy.daily_cutoff = None;
    policy.expiry_margin = Duration::from_millis(200);
    policy.min_grant_age = Duration::from_millis(300);
    policy.reinitialize_delay = Duration::from_millis(100);
    policy.login_rate = Some(Rate { max: 100, per: HumanDuration(Duration::from_secs(60)) });
    policy.backoff = Backoff {
        min: HumanDuration(Duration::from_millis(100)),
        max: HumanDuration(Duration::from_secs(1)),
        multiplier: 2.0,
        jitter: 0.0,
    };
    policy
}

/// What the client read: control frames (parsed) and broker frames (as text), in order.
#[derive(Debug)]
enum Read {
    Control(serde_json::Value),
    Broker(String),
}

/// Reads frames until `pick` accepts one (at most [`WAIT`]); everything read goes into `log`.
async fn until<T>(socket: &mut Socket, log: &mut Vec<Read>, what: &str, mut pick: impl FnMut(&Read) -> Option<T>) -> T {
    let search = async {
        while let Some(message) = socket.next().await {
            let read = match message.expect("a frame") {
                Message::Text(text) => match serde_json::from_str::<serde_json::Value>(text.as_str()) {
                    Ok(value) if value.get("warden").is_some() => Read::Control(value),
                    _ => Read::Broker(text.as_str().to_owned()),
                },
                Message::Binary(bytes) => Read::Broker(String::from_utf8_lossy(&bytes).into_owned()),
                Message::Close(frame) => panic!("closed before {what}: {frame:?}"),
                _ => continue,
            };
            let found = pick(&read);
            log.push(read);
            if let Some(found) = found {
                return found;
            }
        }
        panic!("the socket ended before {what}")
    };
    tokio::time::timeout(WAIT, search).await.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}: {log:?}"))
}

fn control<'a>(read: &'a Read, kind: &str) -> Option<&'a serde_json::Value> {
    match read {
        Read::Control(value) if value["warden"] == kind => Some(value),
        _ => None,
    }
}

/// Whether a broker frame is a Kotak tick of scrip `tk`.
fn tick_of(read: &Read, tk: &str) -> bool {
    let Read::Broker(text) = read else { return false };
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    value["type"] == "sf" && value["data"].as_array().into_iter().flatten().any(|d| d["tk"] == tk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_its_feed_across_an_invalidation_and_is_told_the_gap() {
    let mock = kotak_mock().await;
    let clock = Clock::system();
    let warden = Warden::builder().memory_store().clock(clock.clone()).build().await.expect("warden");
    let service = Service::builder(warden.clone(), ServeConfig::default(), Secret::new(TOKEN));
    let http = HttpClient::new(HttpSettings::default()).expect("client");
    let client = MockClient::for_mock(&mock, http, clock.clone()).expect("the Kotak adapter");
    let Adapter::Kotak(adapter) = client.adapter() else { panic!("a Kotak mock has the Kotak adapter") };
    let api: Arc<dyn BrokerApi> = adapter.clone();
    let spec = SessionSpec::new(SessionId::new("kotak").expect("id"), client.broker())
        .with_credentials(client.credentials().clone())
        .with_policy(policy());
    let handle = warden.open(spec).await.expect("open");
    let first_token = handle.token().await.expect("the first login").token().to_owned();
    let mut feed = KotakStream::new(format!("ws://{}/realtime", mock.addr()));
    feed.heartbeat_interval = Duration::from_millis(500);
    let served = ServedSession::new(handle.clone(), api).with_stream(StreamSpec::new(Arc::new(feed)));
    let service = service.session(served).build().await.expect("service");
    let server = service.bind("127.0.0.1:0".parse().expect("addr"), None).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // Unknown sessions are named; the bearer is the one every route takes.
    let refused = reqwest::Client::new()
        .get(format!("http://{addr}/v1/sessions/nobody/stream"))
        .bearer_auth(TOKEN)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["error"], "unknown_session");

    let mut request = format!("ws://{addr}/v1/sessions/kotak/stream").into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the upgrade");
    let mut log = Vec::new();

    // The warden stream opens with the upgrade, on the session's grant.
    let connected = until(&mut socket, &mut log, "connected", |r| control(r, "connected").cloned()).await;
    assert_eq!(connected["generation"], 1);

    // A malformed command gets an error frame that does not quote it; the relay stays up.
    socket.send(Message::Text("subscribe nse_cm|11536".into())).await.expect("send");
    let error = until(&mut socket, &mut log, "an error frame", |r| control(r, "error").cloned()).await;
    assert!(error["detail"].as_str().expect("detail").starts_with("a command must be a JSON object"), "{error}");

    socket.send(Message::Text(r#"{"subscribe": "nse_cm|11536"}"#.into())).await.expect("send");
    let subscribed =
        until(&mut socket, &mut log, "the subscription's answer", |r| control(r, "subscribed").cloned()).await;
    assert_eq!(subscribed["topic"], "nse_cm|11536");
    until(&mut socket, &mut log, "a tick of 11536", |r| tick_of(r, "11536").then_some(())).await;

    // An intraday invalidation: the feed refuses the grant and closes; the session logs in again and the
    // warden stream reconnects with the new grant only, replaying the subscription.
    let invalidated_at = clock.now().as_millis();
    let answer = reqwest::Client::new().post(format!("{}/__mock/invalidate", mock.base_url())).send().await;
    assert!(answer.expect("POST /__mock/invalidate").status().is_success());
    let down = until(&mut socket, &mut log, "down", |r| control(r, "down").cloned()).await;
    let why = down["why"].as_str().expect("why");
    assert!(why.contains("refused grant g1") && !why.contains(&first_token), "{why}");
    let reconnected = until(&mut socket, &mut log, "reconnected", |r| control(r, "reconnected").cloned()).await;
    assert_eq!(reconnected["generation"], 2);
    let (from, to) = (reconnected["gap"]["from_ms"].as_i64(), reconnected["gap"]["to_ms"].as_i64());
    let (from, to) = (from.expect("a gap's start"), to.expect("a gap's end"));
    assert!(invalidated_at <= from && from <= to && to <= clock.now().as_millis(), "{reconnected}");
    let mark = log.len();
    until(&mut socket, &mut log, "a tick of 11536 on the new socket", |r| tick_of(r, "11536").then_some(())).await;
    assert!(log[mark..].iter().any(|r| tick_of(r, "11536")));

    let second_token = handle.token().await.expect("the second grant").token().to_owned();
    assert_ne!(first_token, second_token);
    let server_stats = mock.stats().server;
    assert_eq!(server_stats.streams_opened, 2, "one socket per grant: {server_stats:?}");
    assert_eq!((server_stats.streams_refused, server_stats.stream_dead_tokens), (0, 0), "{server_stats:?}");
    for read in &log {
        let text = match read {
            Read::Control(value) => value.to_string(),
            Read::Broker(text) => text.clone(),
        };
        assert!(!text.contains(&first_token) && !text.contains(&second_token), "a token reached the client");
    }

    // The client leaves: the relay ends and closes the warden stream.
    socket.close(None).await.expect("close");
    let relays = service.app().stream_relays.clone();
    let ended = async {
        while relays.load(std::sync::atomic::Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(tokio::time::timeout(WAIT, ended).await.is_ok(), "the relay ends with the client");
    let _ = stop.send(());
    let _ = serving.await;
    warden.shutdown(false).await;
}
