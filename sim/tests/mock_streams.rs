//! The mock brokers' streams, with a plain WebSocket client (tokio-tungstenite) on 127.0.0.1: each
//! authenticates with its session's token, cookie or context, takes a subscription, pushes ticks and
//! heartbeats in its broker's form, and is closed by the mock when its token dies; Kite's ticker refuses
//! a dead token with 403 at the handshake; Saxo's re-authorisation keeps a stream past its first token
//! (and a subscription made with a newer token does not).

mod common;

use std::time::Duration;

use common::{client as client_of, spec};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use warden_adapters::broker::ApiRequest;
use warden_engine::{Credentials, Grant, LoginRequest};
use warden_sim::mock::client::MockClient;
use warden_sim::mock::{MockBroker, MockConfig, StreamSettings};
use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A mock with fast streams: a tick every 100 ms, a heartbeat every 150 ms, the token checked every 50 ms.
async fn mock(spec: BrokerSpec) -> MockBroker {
    let mut config = MockConfig::demo(BrokerModel::new(spec, 7), warden_actors::Clock::system()).unwrap();
    config.streams = StreamSettings {
        heartbeat: Some(Duration::from_millis(150)),
        tick: Duration::from_millis(100),
        token_check: Duration::from_millis(50),
        ..StreamSettings::default()
    };
    MockBroker::start(config).await.unwrap()
}

async fn login(mock: &MockBroker, client: &MockClient) -> Grant {
    let credentials: Credentials = client.first_login_credentials(mock, mock.now());
    let request = LoginRequest { credentials: &credentials, second_factor: None, take_over: false };
    client.broker().login(mock.now(), request).await.expect("login")
}

async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// The next message (at most 3 s), `None` when the socket closed.
async fn next(socket: &mut Socket) -> Option<Message> {
    match tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(_) => None,
        Err(_) => panic!("no message within 3 s"),
    }
}

/// Reads (at most 100 messages) until `wanted` accepts one; the messages seen before it.
async fn until(socket: &mut Socket, mut wanted: impl FnMut(&Message) -> bool) -> Vec<Message> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let Some(message) = next(socket).await else { panic!("closed before the message: {seen:?}") };
        if wanted(&message) {
            seen.push(message);
            return seen;
        }
        seen.push(message);
    }
    panic!("not among 100 messages: {seen:?}");
}

/// Reads until the socket closes (at most 100 messages); the text messages seen and whether a close
/// frame came.
async fn until_closed(socket: &mut Socket) -> (Vec<String>, bool) {
    let mut texts = Vec::new();
    for _ in 0..100 {
        match next(socket).await {
            Some(Message::Text(text)) => texts.push(text.to_string()),
            Some(Message::Close(_)) | None => return (texts, true),
            Some(_) => {}
        }
    }
    (texts, false)
}

fn text(message: &Message) -> Option<serde_json::Value> {
    match message {
        Message::Text(text) => serde_json::from_str(text).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kite_ticker_pushes_binary_ticks_and_refuses_a_dead_token_with_403() {
    let mock = mock(spec(ModelKind::Zerodha, Duration::from_secs(3600), None)).await;
    let client = client_of(&mock);
    let grant = login(&mock, &client).await;
    let url = format!("ws://{}/ws?api_key=mockkiteapikey&access_token={}", mock.addr(), grant.access_token.expose());
    let mut socket = connect(&url, &[]).await.expect("the ticker accepts a live token");
    socket.send(Message::Text(r#"{"a":"subscribe","v":[408065]}"#.into())).await.unwrap();
    socket.send(Message::Text(r#"{"a":"mode","v":["ltp",[408065]]}"#.into())).await.unwrap();
    let seen = until(&mut socket, |m| matches!(m, Message::Binary(b) if b.len() == 12)).await;
    let Some(Message::Binary(tick)) = seen.last() else { unreachable!() };
    assert_eq!(u16::from_be_bytes([tick[0], tick[1]]), 1, "one packet");
    assert_eq!(u16::from_be_bytes([tick[2], tick[3]]), 8, "an ltp packet is 8 bytes");
    assert_eq!(u32::from_be_bytes([tick[4], tick[5], tick[6], tick[7]]), 408065);
    assert!(u32::from_be_bytes([tick[8], tick[9], tick[10], tick[11]]) > 100_000, "a price in paise");
    until(&mut socket, |m| matches!(m, Message::Binary(b) if b.len() == 1)).await;

    mock.model().invalidate(mock.now());
    let (texts, closed) = until_closed(&mut socket).await;
    assert!(closed && texts.iter().any(|t| t.contains("TokenException")), "{texts:?}");
    match connect(&url, &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!("a dead token must get 403 at the handshake: {:?}", other.map(|_| ())),
    }
    let server = mock.stats().server;
    assert_eq!((server.streams_opened, server.streams_refused, server.streams_closed_token_died), (1, 1, 1));
    assert_eq!(server.stream_dead_tokens, 1, "the refused handshake came with a token the mock had issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kotak_stream_authenticates_ticks_beats_and_closes_on_expiry() {
    let mock = mock(spec(ModelKind::KotakNeo, Duration::from_secs(3600), None)).await;
    let client = client_of(&mock);
    let grant = login(&mock, &client).await;
    let url = format!("ws://{}/realtime", mock.addr());

    let mut wrong = connect(&url, &[]).await.unwrap();
    wrong.send(Message::Text(r#"{"type":"cn","Authorization":"x.y.z","Sid":"s"}"#.into())).await.unwrap();
    let (texts, closed) = until_closed(&mut wrong).await;
    assert!(closed && texts.iter().any(|t| t.contains("Not_Ok")), "{texts:?}");

    let mut socket = connect(&url, &[]).await.unwrap();
    let sid = grant.extras.get("sid").unwrap().expose().to_owned();
    let cn = serde_json::json!({"type": "cn", "Authorization": grant.access_token.expose(), "Sid": sid});
    socket.send(Message::Text(cn.to_string().into())).await.unwrap();
    let seen = until(&mut socket, |m| text(m).is_some_and(|v| v["type"] == "cn")).await;
    assert_eq!(text(seen.last().unwrap()).unwrap()["stat"], "Ok");
    socket
        .send(Message::Text(r#"{"type":"mws","scrips":"nse_cm|11536&nse_cm|1594","channelnum":1}"#.into()))
        .await
        .unwrap();
    let seen = until(&mut socket, |m| text(m).is_some_and(|v| v["type"] == "sf")).await;
    let tick = text(seen.last().unwrap()).unwrap();
    assert_eq!(tick["data"].as_array().map(Vec::len), Some(2), "{tick}");
    until(&mut socket, |m| text(m).is_some_and(|v| v["type"] == "hb")).await;

    mock.model().invalidate(mock.now());
    let (texts, closed) = until_closed(&mut socket).await;
    assert!(closed && texts.iter().any(|t| t.contains("invalid session")), "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibkr_websocket_takes_the_session_cookie_and_tic() {
    let mock = mock(spec(ModelKind::Ibkr, Duration::from_secs(3600), None)).await;
    let client = client_of(&mock);
    let grant = login(&mock, &client).await;
    let tickle = ApiRequest::post(format!("{}/v1/api/tickle", mock.base_url()));
    let answer = client.send(mock.now(), &grant, tickle).await.expect("tickle");
    let session = answer.json().unwrap()["session"].as_str().unwrap().to_owned();
    let url = format!("ws://{}/v1/api/ws", mock.addr());
    match connect(&url, &[("cookie", "api=not-a-session")]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("an unknown session must be refused: {:?}", other.map(|_| ())),
    }

    let mut socket = connect(&url, &[("cookie", &format!("api={session}"))]).await.expect("the session's cookie");
    until(&mut socket, |m| text(m).is_some_and(|v| v["topic"] == "sts" && v["args"]["authenticated"] == true)).await;
    let keepalives = mock.stats().model.keepalives;
    socket.send(Message::Text("tic".into())).await.unwrap();
    socket.send(Message::Text(r#"smd+265598+{"fields":["31","84","86"]}"#.into())).await.unwrap();
    let seen = until(&mut socket, |m| text(m).is_some_and(|v| v["topic"] == "smd+265598")).await;
    assert!(text(seen.last().unwrap()).unwrap()["31"].is_string());
    until(&mut socket, |m| text(m).is_some_and(|v| v["topic"] == "system" && v["hb"].is_number())).await;
    assert!(mock.stats().model.keepalives > keepalives, "a tic is a keep-alive on the model");

    mock.model().invalidate(mock.now());
    let (texts, closed) = until_closed(&mut socket).await;
    assert!(closed && texts.iter().any(|t| t.contains(r#""authenticated":false"#)), "{texts:?}");
}

/// Saxo's frame: message id, reserved, reference id, format, payload.
fn saxo_frame(bytes: &[u8]) -> (u64, String, serde_json::Value) {
    let id = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
    let reference_len = bytes[10] as usize;
    let reference = String::from_utf8(bytes[11..11 + reference_len].to_vec()).unwrap();
    let at = 11 + reference_len;
    assert_eq!(bytes[at], 0, "JSON payload");
    let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
    (id, reference, serde_json::from_slice(&bytes[at + 5..at + 5 + len]).unwrap())
}

fn saxo_reference(message: &Message) -> Option<String> {
    match message {
        Message::Binary(bytes) => Some(saxo_frame(bytes).1),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saxo_stream_lives_on_reauthorisation_and_dies_without() {
    let mock = mock(spec(ModelKind::Saxo, Duration::from_millis(1_500), Some(Duration::from_secs(60)))).await;
    let client = client_of(&mock);
    let first = login(&mock, &client).await;
    let bearer = |grant: &Grant| format!("Bearer {}", grant.access_token.expose());
    for context in ["ctx1", "ctx2"] {
        let subscription = serde_json::json!({"ContextId": context, "ReferenceId": "r1",
            "Arguments": {"Uic": 21, "AssetType": "FxSpot"}});
        let request = ApiRequest::post(format!("{}/openapi/trade/v1/infoprices/subscriptions", mock.base_url()))
            .json(subscription);
        let answer = client.send(mock.now(), &first, request).await.expect("a subscription");
        assert_eq!(answer.status, 201);
    }
    let url = |context: &str| format!("ws://{}/openapi/streamingws/connect?contextId={context}", mock.addr());
    let mut renewed = connect(&url("ctx1"), &[("authorization", &bearer(&first))]).await.unwrap();
    let mut lapsing = connect(&url("ctx2"), &[("authorization", &bearer(&first))]).await.unwrap();
    let seen = until(&mut renewed, |m| saxo_reference(m).as_deref() == Some("r1")).await;
    let Some(Message::Binary(bytes)) = seen.last() else { unreachable!() };
    let (id, _, payload) = saxo_frame(bytes);
    assert!(id >= 1 && payload["Quote"]["Mid"].is_number(), "{payload}");
    until(&mut renewed, |m| saxo_reference(m).as_deref() == Some("_heartbeat")).await;

    // A refresh, and the new token handed to ctx1's stream.
    let second = client.broker().refresh(mock.now(), &first).await.expect("refresh");
    let reauthorize = ApiRequest::new(
        reqwest::Method::PUT,
        format!("{}/openapi/streamingws/authorize?contextId=ctx1", mock.base_url()),
    );
    assert_eq!(client.send(mock.now(), &second, reauthorize).await.expect("re-authorise").status, 202);
    // A subscription made with the new token names ctx2 but does not re-authorise its stream.
    let subscription = serde_json::json!({"ContextId": "ctx2", "ReferenceId": "r2",
        "Arguments": {"Uic": 22, "AssetType": "FxSpot"}});
    let request =
        ApiRequest::post(format!("{}/openapi/trade/v1/infoprices/subscriptions", mock.base_url())).json(subscription);
    assert_eq!(client.send(mock.now(), &second, request).await.expect("a subscription").status, 201);
    // The first token dies at 1.5 s: ctx2's stream is closed with `_disconnect`, ctx1's lives on.
    let mut disconnect = false;
    for _ in 0..100 {
        match next(&mut lapsing).await {
            Some(message) if saxo_reference(&message).as_deref() == Some("_disconnect") => disconnect = true,
            Some(Message::Close(_)) | None => break,
            Some(_) => {}
        }
    }
    assert!(disconnect, "ctx2 got `_disconnect` before its close");
    until(&mut renewed, |m| saxo_reference(m).as_deref() == Some("r1")).await;
    assert_eq!(mock.stats().server.streams_closed_token_died, 1);

    mock.model().invalidate(mock.now());
    let (_, closed) = until_closed(&mut renewed).await;
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_refuse_bad_handshakes_without_panicking() {
    let mock = mock(spec(ModelKind::Saxo, Duration::from_secs(60), Some(Duration::from_secs(600)))).await;
    let url = format!("ws://{}/openapi/streamingws/connect?contextId=x", mock.addr());
    match connect(&url, &[("authorization", "Bearer nope")]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("an unknown token must be refused: {:?}", other.map(|_| ())),
    }
    let plain = reqwest::get(format!("{}/openapi/streamingws/connect?contextId=x", mock.base_url())).await.unwrap();
    assert_eq!(plain.status().as_u16() / 100, 4, "a plain GET is not an upgrade");
    let server = mock.stats().server;
    assert!(server.streams_refused >= 1);
    assert_eq!(server.stream_dead_tokens, 0, "a token never issued is not a dead one");
}
