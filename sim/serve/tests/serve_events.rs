//! `GET /v1/events`: 100 concurrent subscribers each receive every event in order; one that reconnects
//! with `Last-Event-ID` misses none; the WebSocket flavour carries the same events; a resume from
//! further back than is kept gets an explicit gap event.

mod common;

use common::{Answer, Served, SessionSetup, SseReader, Upstream, eventually, serve};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warden_serve::ServeConfig;

async fn upstream() -> Upstream {
    Upstream::start(|_| Answer::json(200, serde_json::json!({}))).await
}

/// Real events (resets: revocations, state changes, logins) and synthetic ones, then an end marker.
async fn make_events(served: &Served, synthetic: usize) -> u64 {
    let broker = served.brokers[0].clone();
    let events = &served.service.app().events;
    // A login's last event: the state change to Valid that follows its grant's installation.
    let valid = |e: &&std::sync::Arc<warden_serve::events::StoredEvent>| {
        e.kind == "state_changed" && serde_json::from_str::<Value>(&e.json).is_ok_and(|j| j["data"]["to"] == "Valid")
    };
    let valid_again = || events.kept().iter().filter(valid).count();
    let valid_before = valid_again();
    for round in 0..5u64 {
        served.post("/v1/sessions/s1/reset").send().await.unwrap();
        assert!(eventually(500, || broker.logins() >= round + 2).await, "the reset logged in again");
    }
    // Each reset's login ends with the session Valid again (once its snapshot is durable): wait for the
    // fifth, so that every reset's events are in the log before the marker, however slow the machine.
    assert!(eventually(500, || valid_again() >= valid_before + 5).await, "the five resets ended Valid");
    let now = served.warden.now();
    for i in 0..synthetic {
        events.push(None, now, "test", format!("synthetic event {i}"), Value::Null);
    }
    events.push(None, now, "test_end", "the end".into(), Value::Null)
}

/// Reads until the end marker: the ids, which must be contiguous.
async fn read_to_end(reader: &mut SseReader) -> Vec<u64> {
    let mut ids = Vec::new();
    for _ in 0..100_000 {
        let Some(event) = reader.next().await else { break };
        let id = event.id.expect("every event has an id");
        assert_eq!(event.data["id"].as_u64(), Some(id), "the id line and the JSON agree");
        ids.push(id);
        if event.data["type"] == "test_end" {
            break;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_each_receive_every_event_in_order() {
    let upstream = upstream().await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let start = served.service.app().events.push(None, served.warden.now(), "test_start", "start".into(), Value::Null);
    let mut readers = Vec::new();
    for _ in 0..100 {
        readers.push(SseReader::open(&served, Some(start)).await);
    }
    assert_eq!(served.service.app().events.subscribers(), 100);
    let tasks: Vec<_> =
        readers.into_iter().map(|mut reader| tokio::spawn(async move { read_to_end(&mut reader).await })).collect();
    let end = make_events(&served, 500).await;
    let expected: Vec<u64> = (start + 1..=end).collect();
    assert!(expected.len() > 520, "resets and synthetic events: {}", expected.len());
    for task in tasks {
        let ids = task.await.unwrap();
        assert_eq!(ids, expected, "every subscriber gets every event, in order, once");
    }
    let kinds: Vec<String> = served.service.app().events.kept().iter().map(|e| e.kind.to_owned()).collect();
    assert!(kinds.iter().any(|k| k == "state_changed") && kinds.iter().any(|k| k == "grant_installed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reconnects_with_last_event_id_misses_none() {
    let upstream = upstream().await;
    let served = serve(&upstream, vec![SessionSetup::new("s1")], ServeConfig::default()).await;
    let mut first = SseReader::open(&served, None).await;
    let end = make_events(&served, 300).await;
    let mut seen = Vec::new();
    for _ in 0..120 {
        seen.push(first.next().await.unwrap().id.unwrap());
    }
    drop(first);
    let mut again = SseReader::open(&served, seen.last().copied()).await;
    seen.extend(read_to_end(&mut again).await);
    assert_eq!(*seen.last().unwrap(), end);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "nothing missed, nothing twice");

    // The WebSocket flavour: the same events, resumed the same way.
    let mut request = format!("ws://{}/v1/events", served.addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", common::TOKEN).parse().unwrap());
    request.headers_mut().insert("last-event-id", seen[9].to_string().parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket");
    let mut ws_ids = Vec::new();
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).unwrap();
            ws_ids.push(event["id"].as_u64().unwrap());
            if event["type"] == "test_end" {
                break;
            }
        }
    }
    assert_eq!(ws_ids, seen[10..].to_vec());
}

#[tokio::test]
async fn a_resume_from_further_back_than_kept_gets_a_gap_event() {
    let upstream = upstream().await;
    let config = ServeConfig { events_kept: 10, ..ServeConfig::default() };
    let served = serve(&upstream, vec![SessionSetup::new("s1")], config).await;
    let events = &served.service.app().events;
    let now = served.warden.now();
    let first = events.push(None, now, "test", "first".into(), Value::Null);
    for i in 0..30 {
        events.push(None, now, "test", format!("event {i}"), Value::Null);
    }
    let end = events.push(None, now, "test_end", "the end".into(), Value::Null);
    let mut reader = SseReader::open(&served, Some(first)).await;
    let gap = reader.next().await.unwrap();
    assert_eq!(gap.id, None);
    assert_eq!(gap.data["type"], "gap");
    let oldest = events.kept()[0].id;
    assert_eq!(gap.data["first_missed"].as_u64(), Some(first + 1));
    assert_eq!(gap.data["last_missed"].as_u64(), Some(oldest - 1));
    let rest = read_to_end(&mut reader).await;
    assert_eq!(rest.first(), Some(&oldest));
    assert_eq!(rest.last(), Some(&end));
    let bad = served.get("/v1/events").header("Last-Event-ID", "yesterday").send().await.unwrap();
    assert_eq!(bad.status(), 400);
}
