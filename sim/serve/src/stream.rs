//! `GET /v1/sessions/{id}/stream`: the session's broker stream relayed over a WebSocket. The upgrade
//! opens a warden stream on the session (`warden_actors::stream`, the [`StreamSpec`] the session was
//! served with), which connects with the session's current grant and follows it — re-authorised in place
//! (Saxo) or reconnected with the new grant (IBKR, Kotak Neo, Kite), its subscriptions replayed from its
//! ledger, gaps reported. The client never sees a token.
//!
//! The wire, client to warden (text frames, JSON; anything else is answered with an `error` frame):
//!
//! - `{"subscribe": TOPIC}` — kept in the stream's ledger, sent now and on every new socket; answered
//!   `{"warden": "subscribed", "topic": TOPIC}` (or an `error` frame: the ledger is full).
//! - `{"unsubscribe": TOPIC}` — dropped from the ledger.
//! - `{"send": TEXT}`, or a binary frame — sent as it is on the open socket, not replayed.
//!
//! Warden to client: the broker's frames as they came (text as text, binary as binary; the grant's
//! secrets scrubbed), and control frames, JSON objects with a `warden` key: `connected`,
//! `reauthorized` (`generation`), `reconnected` (`generation`, `gap`: `null` or `{from_ms, to_ms}` —
//! nothing was received between them: reconcile), `down` (`why`), `lagged` (`dropped`), `error`
//! (`detail`).
//!
//! Every buffer is bounded: the stream's own event queue (its driver drops and reports `lagged`), and
//! the frames waiting for the client ([`RelayLimits::outbox`], `[serve] stream_buffer`): a client that
//! lets it fill is disconnected with close code 1008 and a reason that says so. A client message is at
//! most [`MAX_CLIENT_MESSAGE_BYTES`]. At most `[serve] max_streams` relays are open at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use warden_actors::SessionHandle;
use warden_actors::stream::{Frame, StreamEvent, StreamHandle};
use warden_adapters::broker::http::scrub_bytes;
use warden_engine::SessionId;

use crate::api::ApiError;
use crate::app::App;

/// The largest message a client may send (a command or a frame for the broker).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// How long the close frame to a client that is let go may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The limits of one relay.
#[derive(Clone, Copy, Debug)]
pub struct RelayLimits {
    /// Frames waiting for the client; when full, the client is too slow and is disconnected.
    pub outbox: usize,
    /// How long one write to the client may take.
    pub write_timeout: Duration,
}

/// `GET /v1/sessions/{id}/stream` upgraded to a WebSocket.
pub async fn stream(State(app): State<Arc<App>>, Path(id): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    let Some(served) = app.registry.find(&id) else { return ApiError::unknown(&id).into_response() };
    let Some(spec) = served.stream.clone() else {
        let detail = format!("session `{id}` is served without a broker stream");
        return ApiError::new(StatusCode::NOT_FOUND, "no_stream", detail).into_response();
    };
    let Some(slot) = Slot::take(&app.stream_relays, app.config.max_streams) else {
        let detail = format!("{} broker streams are open, the most allowed (max_streams)", app.config.max_streams);
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail).into_response();
    };
    let limits = RelayLimits { outbox: app.config.stream_buffer, write_timeout: app.config.request_timeout };
    let session = served.handle.clone();
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            // The broker socket is opened once the client's is: a failed upgrade opens nothing.
            let (handle, events) = app.streams.open(&session, spec);
            relay(socket, session, handle, events, limits, app.stopping.clone()).await;
            drop(slot);
        })
        .into_response()
}

/// One open relay, counted while it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a relay ends, as the close frame says it.
fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// A client's command, parsed.
#[derive(Debug, PartialEq, Eq)]
enum ClientCommand {
    Subscribe(String),
    Unsubscribe(String),
    Send(Frame),
}

/// Reads a client's text frame; the error never quotes it.
fn parse_command(text: &str) -> Result<ClientCommand, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("a command must be a JSON object ({e})"))?;
    let object = value.as_object().ok_or_else(|| "a command must be a JSON object".to_owned())?;
    let string = |key: &str| match object.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("`{key}` must be a string")),
    };
    match object.keys().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["subscribe"] => Ok(ClientCommand::Subscribe(string("subscribe")?)),
        ["unsubscribe"] => Ok(ClientCommand::Unsubscribe(string("unsubscribe")?)),
        ["send"] => Ok(ClientCommand::Send(Frame::Text(string("send")?))),
        _ => Err("a command has exactly one key: `subscribe`, `unsubscribe` or `send`".to_owned()),
    }
}

/// A stream event as the client gets it: a broker frame as it came, or a control frame.
fn encode(event: StreamEvent) -> Message {
    let control = match event {
        StreamEvent::Message(Frame::Text(text)) => return Message::Text(text.into()),
        StreamEvent::Message(Frame::Binary(bytes)) => return Message::Binary(bytes.into()),
        StreamEvent::Connected { generation } => json!({"warden": "connected", "generation": generation.0}),
        StreamEvent::Reauthorized { generation } => json!({"warden": "reauthorized", "generation": generation.0}),
        StreamEvent::Reconnected { generation, gap } => json!({
            "warden": "reconnected", "generation": generation.0,
            "gap": gap.map(|(from, to)| json!({"from_ms": from.as_millis(), "to_ms": to.as_millis()})),
        }),
        StreamEvent::Down { why } => json!({"warden": "down", "why": why}),
        StreamEvent::Lagged { dropped } => json!({"warden": "lagged", "dropped": dropped}),
        other => json!({"warden": "event", "text": other.to_string()}),
    };
    Message::Text(control.to_string().into())
}

fn error_frame(detail: &str) -> Message {
    Message::Text(json!({"warden": "error", "detail": detail}).to_string().into())
}

/// Replaces the session's current grant's secrets in a broker frame (a frame that echoes one).
fn scrubbed(session: &SessionHandle, message: Message) -> Message {
    let Some(lease) = session.peek_lease() else { return message };
    let grant = &lease.grant;
    let mut secrets = vec![grant.access_token.expose()];
    secrets.extend(grant.refresh_token.as_ref().map(|s| s.expose()));
    secrets.extend(grant.extras.values().map(|s| s.expose()));
    match message {
        Message::Text(text) => {
            let mut bytes = text.as_str().as_bytes().to_vec();
            if !scrub_bytes(&mut bytes, &secrets) {
                return Message::Text(text);
            }
            Message::Text(String::from_utf8_lossy(&bytes).into_owned().into())
        }
        Message::Binary(data) => {
            let mut bytes = data.to_vec();
            if !scrub_bytes(&mut bytes, &secrets) {
                return Message::Binary(data);
            }
            Message::Binary(bytes.into())
        }
        other => other,
    }
}

/// What the relay loop does with the client's socket after it.
enum End {
    /// Close with this frame.
    Close(Message),
    /// The client went away.
    Gone,
}

/// Relays until the client leaves, the stream ends, the client falls behind or the service stops; then
/// closes the warden stream.
async fn relay(
    socket: WebSocket,
    session: SessionHandle,
    stream: StreamHandle,
    mut events: mpsc::Receiver<StreamEvent>,
    limits: RelayLimits,
    stopping: CancellationToken,
) {
    let (mut sink, mut source) = socket.split();
    let (outbox, mut pending) = mpsc::channel::<Message>(limits.outbox.max(1));
    let (end_tx, mut end_rx) = oneshot::channel::<End>();
    // The writer: the only one to write to the client; every write bounded by `write_timeout`.
    let writer = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                end = &mut end_rx => {
                    if let Ok(End::Close(frame)) = end {
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
                    }
                    return;
                }
                next = pending.recv() => next,
            };
            let Some(message) = next else { return };
            match tokio::time::timeout(limits.write_timeout, sink.send(message)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });
    let end = loop {
        tokio::select! {
            _ = stopping.cancelled() => break End::Close(close(1001, "warden is shutting down")),
            event = events.recv() => {
                let Some(event) = event else { break End::Close(close(1000, "the session's stream closed")) };
                let message = match &event {
                    StreamEvent::Message(_) => scrubbed(&session, encode(event)),
                    _ => encode(event),
                };
                if let Some(end) = queue(&outbox, message, session.id()) {
                    break end;
                }
            }
            incoming = source.next() => {
                let reply = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Ok(Message::Text(text))) => match parse_command(text.as_str()) {
                        Ok(command) => command_reply(&stream, command).await,
                        Err(problem) => Some(error_frame(&problem)),
                    },
                    Some(Ok(Message::Binary(bytes))) => {
                        command_reply(&stream, ClientCommand::Send(Frame::Binary(bytes.to_vec()))).await
                    }
                    Some(Ok(_)) => None,
                };
                if let Some(end) = reply.and_then(|reply| queue(&outbox, reply, session.id())) {
                    break end;
                }
            }
        }
    };
    let _ = end_tx.send(end);
    stream.close().await;
    let _ = writer.await;
}

/// Queues a frame for the client's writer; how the relay ends if it cannot: the client let
/// `stream_buffer` frames pile up (too slow), or the writer already ended (a write failed or timed out).
fn queue(outbox: &mpsc::Sender<Message>, message: Message, session: &SessionId) -> Option<End> {
    match outbox.try_send(message) {
        Ok(()) => None,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::info!(%session, "stream client disconnected: too slow");
            let reason = format!("client too slow: {} frames waiting", outbox.max_capacity());
            Some(End::Close(close(1008, &reason)))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Some(End::Gone),
    }
}

/// Hands a command to the stream; what to tell the client.
async fn command_reply(stream: &StreamHandle, command: ClientCommand) -> Option<Message> {
    let result = match command {
        ClientCommand::Subscribe(topic) => match stream.subscribe(topic.clone()).await {
            Ok(()) => {
                return Some(Message::Text(json!({"warden": "subscribed", "topic": topic}).to_string().into()));
            }
            Err(e) => Err(e),
        },
        ClientCommand::Unsubscribe(topic) => stream.unsubscribe(topic).await,
        ClientCommand::Send(frame) => stream.send(frame).await,
    };
    result.err().map(|e| error_frame(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_engine::{Generation, UnixMs};

    fn text(message: Message) -> serde_json::Value {
        match message {
            Message::Text(t) => serde_json::from_str(t.as_str()).expect("JSON"),
            other => panic!("a text frame, not {other:?}"),
        }
    }

    #[test]
    fn a_gap_becomes_a_control_frame_with_its_bounds() {
        let gap = Some((UnixMs::from_millis(1_000), UnixMs::from_millis(1_750)));
        let frame = text(encode(StreamEvent::Reconnected { generation: Generation(3), gap }));
        assert_eq!(frame, json!({"warden": "reconnected", "generation": 3, "gap": {"from_ms": 1000, "to_ms": 1750}}));
        let frame = text(encode(StreamEvent::Reconnected { generation: Generation(4), gap: None }));
        assert_eq!(frame["gap"], serde_json::Value::Null);
        let frame = text(encode(StreamEvent::Down { why: "the broker closed the socket".to_owned() }));
        assert_eq!(frame, json!({"warden": "down", "why": "the broker closed the socket"}));
    }

    #[test]
    fn broker_frames_pass_as_they_came() {
        assert_eq!(encode(StreamEvent::Message(Frame::text("{\"tk\":1}"))), Message::Text("{\"tk\":1}".into()));
        assert_eq!(encode(StreamEvent::Message(Frame::Binary(vec![0, 1, 2]))), Message::Binary(vec![0, 1, 2].into()));
    }

    #[test]
    fn commands_are_parsed_and_bad_ones_named_without_quoting_them() {
        assert_eq!(
            parse_command(r#"{"subscribe": "nse_cm|11536"}"#),
            Ok(ClientCommand::Subscribe("nse_cm|11536".into()))
        );
        assert_eq!(parse_command(r#"{"unsubscribe": "x"}"#), Ok(ClientCommand::Unsubscribe("x".into())));
        assert_eq!(parse_command(r#"{"send": "ping"}"#), Ok(ClientCommand::Send(Frame::text("ping"))));
        let problem = parse_command(r#"{"subscribe": 5}"#).unwrap_err();
        assert_eq!(problem, "`subscribe` must be a string");
        let problem = parse_command(r#"{"subscribe": "a", "send": "b"}"#).unwrap_err();
        assert!(problem.contains("exactly one key"), "{problem}");
        let problem = parse_command("not json secret-ish").unwrap_err();
        assert!(problem.starts_with("a command must be a JSON object") && !problem.contains("secret-ish"), "{problem}");
    }

    #[test]
    fn a_full_outbox_lets_the_client_go_with_a_reason_and_a_closed_one_ends_quietly() {
        let session = SessionId::new("s1").expect("id");
        let (outbox, pending) = mpsc::channel::<Message>(2);
        assert!(queue(&outbox, Message::Text("1".into()), &session).is_none());
        assert!(queue(&outbox, Message::Text("2".into()), &session).is_none());
        match queue(&outbox, Message::Text("3".into()), &session) {
            Some(End::Close(frame)) => assert_eq!(frame, close(1008, "client too slow: 2 frames waiting")),
            _ => panic!("a full outbox closes the client with 1008"),
        }
        drop(pending);
        assert!(matches!(queue(&outbox, Message::Text("4".into()), &session), Some(End::Gone)));
    }

    #[test]
    fn relay_slots_are_bounded_and_given_back() {
        let open = Arc::new(AtomicUsize::new(0));
        let first = Slot::take(&open, 2).expect("one");
        let second = Slot::take(&open, 2).expect("two");
        assert!(Slot::take(&open, 2).is_none(), "a third is refused");
        drop(first);
        assert!(Slot::take(&open, 2).is_some(), "a slot given back can be taken");
        drop(second);
        assert_eq!(open.load(Ordering::Acquire), 0);
    }
}
