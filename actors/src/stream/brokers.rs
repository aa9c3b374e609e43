//! The stream protocols of the brokers warden has adapters for: [`SaxoStream`], [`IbkrStream`],
//! [`KotakStream`], [`KiteTicker`]. Pure: URLs, headers and frames from a grant, frames read.
//!
//! | protocol | grant on | a new grant | heartbeat | two sockets |
//! | --- | --- | --- | --- | --- |
//! | Saxo streaming | `Authorization: Bearer` on connect | re-authorised in place: `PUT /streamingws/authorize?contextId=…` (a `_disconnect` refuses the grant) | the server's `_heartbeat` | yes |
//! | IBKR Web API | cookie `api=<session>` (the grant's `session`, from `/tickle`), `oauth_token` in the URL | reconnect | `tic` every minute | yes |
//! | Kotak Neo | a `cn` frame with the token and `sid` after connect | reconnect | `{"type":"hb"}` every 30 s | no |
//! | Kite ticker | `api_key` and `access_token` in the URL (never logged) | reconnect (an old token gets 403 after the daily change) | the server's 1-byte frames | yes |

use std::time::Duration;

use warden_adapters::ApiRequest;
use warden_engine::Grant;

use super::protocol::{ConnectRequest, Frame, GenerationChange, Inbound, StreamProtocol};

fn extra<'g>(grant: &'g Grant, name: &str) -> Result<&'g str, String> {
    grant
        .extras
        .get(name)
        .map(|s| s.expose())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("the grant has no `{name}` (was it issued by the broker's adapter?)"))
}

fn with_query(base: &str, query: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{query}")
}

fn encode(text: &str) -> String {
    warden_adapters::broker::http::percent_encode(text)
}

/// Saxo OpenAPI streaming. The socket is `{streaming_url}/connect?contextId=…` with the access token as
/// a bearer header; after each refresh the new token is handed to the open socket with
/// `PUT {streaming_url}/authorize?contextId=…` (over HTTPS), so the socket is never reopened for a new
/// grant. Messages are Saxo's binary frames; the server's `_heartbeat` control messages are heartbeats,
/// and its `_disconnect` says the socket's authorisation ended (a re-authentication is needed before
/// more messages come): the grant is refused, so the stream reconnects only with a newer one. Other
/// control messages are not for the user. Subscriptions are made over HTTP with the context id (not by
/// this stream).
#[derive(Clone, Debug)]
pub struct SaxoStream {
    /// `wss://streaming.saxobank.com/sim/openapi/streamingws` (its `https` form takes the authorisation).
    pub streaming_url: String,
    /// The context id of this connection (the client chooses it).
    pub context_id: String,
}

impl SaxoStream {
    /// Saxo's streaming at `streaming_url` with `context_id`.
    pub fn new(streaming_url: impl Into<String>, context_id: impl Into<String>) -> SaxoStream {
        SaxoStream {
            streaming_url: streaming_url.into().trim_end_matches('/').to_owned(),
            context_id: context_id.into(),
        }
    }

    /// The HTTP(S) form of the streaming URL.
    fn http_base(&self) -> String {
        if let Some(rest) = self.streaming_url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = self.streaming_url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            self.streaming_url.clone()
        }
    }
}

/// The reference id of a Saxo binary message: 8 bytes message id, 2 reserved, 1 byte length, the id.
pub fn saxo_reference_id(frame: &[u8]) -> Option<&str> {
    let len = usize::from(*frame.get(10)?);
    std::str::from_utf8(frame.get(11..11 + len)?).ok()
}

impl StreamProtocol for SaxoStream {
    fn name(&self) -> &str {
        "saxo-streaming"
    }

    fn connect(&self, grant: &Grant) -> Result<ConnectRequest, String> {
        let url = format!("{}/connect?contextId={}", self.streaming_url, encode(&self.context_id));
        Ok(ConnectRequest::new(url).header("Authorization", format!("Bearer {}", grant.access_token.expose())))
    }

    fn subscribe(&self, _topic: &str) -> Vec<Frame> {
        Vec::new()
    }

    fn unsubscribe(&self, _topic: &str) -> Vec<Frame> {
        Vec::new()
    }

    fn classify(&self, frame: &Frame) -> Inbound {
        match frame {
            Frame::Binary(bytes) => match saxo_reference_id(bytes) {
                Some("_heartbeat") => Inbound::Heartbeat,
                Some("_disconnect") => {
                    Inbound::AuthRejected("the streaming server disconnected (_disconnect)".to_owned())
                }
                Some(id) if id.starts_with('_') => Inbound::Ignore,
                _ => Inbound::Data,
            },
            Frame::Text(_) => Inbound::Data,
        }
    }

    fn on_new_grant(&self) -> GenerationChange {
        GenerationChange::ReauthorizeInPlace
    }

    fn reauthorize(&self) -> Option<ApiRequest> {
        Some(ApiRequest::put(format!("{}/authorize?contextId={}", self.http_base(), encode(&self.context_id))))
    }
}

/// The IBKR Web API WebSocket (`wss://api.ibkr.com/v1/api/ws`): the OAuth access token as `oauth_token`
/// in the URL (the grant's extra `oauth_token`) and the cookie `api=<session>` (the grant's extra
/// `session`: the brokerage session's `/tickle` value, which the IBKR adapter reads at login); a grant
/// without them cannot connect, and the stream says so. A `tic` every minute keeps the socket; topics are
/// IBKR's own subscribe commands (`smd+265598+{"fields":["31"]}`), sent as written, and unsubscribed
/// with IBKR's `u…` form.
#[derive(Clone, Debug)]
pub struct IbkrStream {
    /// `wss://api.ibkr.com/v1/api/ws`.
    pub url: String,
    /// How often to send `tic` (IBKR wants one at least every minute).
    pub tic_interval: Duration,
}

impl IbkrStream {
    /// IBKR's WebSocket at `url`, a `tic` every 50 s.
    pub fn new(url: impl Into<String>) -> IbkrStream {
        IbkrStream { url: url.into(), tic_interval: Duration::from_secs(50) }
    }
}

impl StreamProtocol for IbkrStream {
    fn name(&self) -> &str {
        "ibkr-websocket"
    }

    fn connect(&self, grant: &Grant) -> Result<ConnectRequest, String> {
        let token = extra(grant, "oauth_token")?;
        let session = extra(grant, "session")?;
        let url = with_query(&self.url, &format!("oauth_token={}", encode(token)));
        Ok(ConnectRequest::new(url).header("Cookie", format!("api={session}")))
    }

    fn subscribe(&self, topic: &str) -> Vec<Frame> {
        vec![Frame::text(topic)]
    }

    fn unsubscribe(&self, topic: &str) -> Vec<Frame> {
        // `smd+265598+{…}` is undone by `umd+265598+{}`.
        let mut parts = topic.splitn(3, '+');
        match (parts.next(), parts.next()) {
            (Some(kind), Some(conid)) if kind.len() == 3 && kind.starts_with('s') => {
                vec![Frame::text(format!("u{}+{conid}+{{}}", &kind[1..]))]
            }
            _ => Vec::new(),
        }
    }

    fn heartbeat(&self) -> Option<(Frame, Duration)> {
        Some((Frame::text("tic"), self.tic_interval))
    }

    fn classify(&self, frame: &Frame) -> Inbound {
        let Frame::Text(text) = frame else { return Inbound::Data };
        let topic = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("topic").and_then(|t| t.as_str()).map(str::to_owned));
        match topic.as_deref() {
            Some("tic") | Some("system") => Inbound::Heartbeat,
            Some("sts") => {
                let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                if value.pointer("/args/authenticated").and_then(|a| a.as_bool()) == Some(false) {
                    Inbound::AuthRejected("the brokerage session is not authenticated".to_owned())
                } else {
                    Inbound::Ignore
                }
            }
            _ => Inbound::Data,
        }
    }
}

/// Kotak Neo's WebSocket: after connecting, a `cn` frame with the session token and `sid`; topics are
/// scrip lists (`nse_cm|11536&nse_cm|1594`) subscribed with `mws` and unsubscribed with `mwu`; the
/// client sends `{"type":"hb"}` every 30 s. One socket per session: a new grant means break, then make.
#[derive(Clone, Debug)]
pub struct KotakStream {
    /// The feed's URL.
    pub url: String,
    /// How often to send `{"type":"hb"}`.
    pub heartbeat_interval: Duration,
}

impl KotakStream {
    /// Kotak's feed at `url`, a heartbeat every 30 s.
    pub fn new(url: impl Into<String>) -> KotakStream {
        KotakStream { url: url.into(), heartbeat_interval: Duration::from_secs(30) }
    }
}

impl StreamProtocol for KotakStream {
    fn name(&self) -> &str {
        "kotak-feed"
    }

    fn connect(&self, _grant: &Grant) -> Result<ConnectRequest, String> {
        Ok(ConnectRequest::new(self.url.clone()))
    }

    fn authenticate(&self, grant: &Grant) -> Vec<Frame> {
        let sid = grant.extras.get("sid").map_or("", |s| s.expose());
        let message = serde_json::json!({ "type": "cn", "Authorization": grant.access_token.expose(), "Sid": sid });
        vec![Frame::Text(message.to_string())]
    }

    fn awaits_auth_ack(&self) -> bool {
        true
    }

    fn subscribe(&self, topic: &str) -> Vec<Frame> {
        vec![Frame::Text(serde_json::json!({ "type": "mws", "scrips": topic, "channelnum": 1 }).to_string())]
    }

    fn unsubscribe(&self, topic: &str) -> Vec<Frame> {
        vec![Frame::Text(serde_json::json!({ "type": "mwu", "scrips": topic, "channelnum": 1 }).to_string())]
    }

    fn heartbeat(&self) -> Option<(Frame, Duration)> {
        Some((Frame::text(r#"{"type":"hb"}"#), self.heartbeat_interval))
    }

    fn classify(&self, frame: &Frame) -> Inbound {
        let Frame::Text(text) = frame else { return Inbound::Data };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return Inbound::Data };
        match value.get("type").and_then(|t| t.as_str()) {
            Some("hb") => Inbound::Heartbeat,
            Some("cn") => match value.get("stat").and_then(|s| s.as_str()) {
                Some("Ok") | Some("ok") => Inbound::Authenticated,
                _ => Inbound::AuthRejected(
                    value.get("msg").and_then(|m| m.as_str()).unwrap_or("the connection was refused").to_owned(),
                ),
            },
            _ => Inbound::Data,
        }
    }

    fn allows_overlap(&self) -> bool {
        false
    }
}

/// Kite's ticker: `{url}?api_key=…&access_token=…` (the URL is a secret, never logged); topics are
/// instrument tokens (`408065`) subscribed with `{"a":"subscribe","v":[…]}` and put in `full` mode;
/// the server's 1-byte binary frames are heartbeats, text frames are postbacks and errors, longer binary
/// frames are ticks. An old access token gets HTTP 403 on connect after the daily change: the stream then
/// reconnects only with the newer grant.
#[derive(Clone, Debug)]
pub struct KiteTicker {
    /// `wss://ws.kite.trade`.
    pub url: String,
}

impl KiteTicker {
    /// Kite's ticker at `url`.
    pub fn new(url: impl Into<String>) -> KiteTicker {
        KiteTicker { url: url.into() }
    }
}

fn instrument(topic: &str) -> serde_json::Value {
    topic.parse::<u64>().map_or_else(|_| serde_json::Value::from(topic), serde_json::Value::from)
}

impl StreamProtocol for KiteTicker {
    fn name(&self) -> &str {
        "kite-ticker"
    }

    fn connect(&self, grant: &Grant) -> Result<ConnectRequest, String> {
        let api_key = extra(grant, "api_key")?;
        let query = format!("api_key={}&access_token={}", encode(api_key), encode(grant.access_token.expose()));
        Ok(ConnectRequest::new(with_query(&self.url, &query)))
    }

    fn subscribe(&self, topic: &str) -> Vec<Frame> {
        let token = instrument(topic);
        vec![
            Frame::Text(serde_json::json!({ "a": "subscribe", "v": [token] }).to_string()),
            Frame::Text(serde_json::json!({ "a": "mode", "v": ["full", [token]] }).to_string()),
        ]
    }

    fn unsubscribe(&self, topic: &str) -> Vec<Frame> {
        vec![Frame::Text(serde_json::json!({ "a": "unsubscribe", "v": [instrument(topic)] }).to_string())]
    }

    fn classify(&self, frame: &Frame) -> Inbound {
        match frame {
            Frame::Binary(bytes) if bytes.len() <= 1 => Inbound::Heartbeat,
            Frame::Binary(_) => Inbound::Data,
            Frame::Text(text) => {
                let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                match value.get("type").and_then(|t| t.as_str()) {
                    Some("error") if text.contains("TokenException") => {
                        Inbound::AuthRejected("the ticker refused the access token".to_owned())
                    }
                    _ => Inbound::Data,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_engine::UnixMs;

    fn grant() -> Grant {
        Grant::new("TOKEN", UnixMs::EPOCH).with_extra("api_key", "KEY").with_extra("sid", "SID")
    }

    #[test]
    fn kite_puts_the_token_in_the_url_and_keeps_it_out_of_logs() {
        let kite = KiteTicker::new("wss://ws.kite.trade");
        let request = kite.connect(&grant()).unwrap();
        assert_eq!(request.url.expose(), "wss://ws.kite.trade?api_key=KEY&access_token=TOKEN");
        assert_eq!(request.target, "wss://ws.kite.trade");
        assert_eq!(
            kite.subscribe("408065"),
            [Frame::text(r#"{"a":"subscribe","v":[408065]}"#), Frame::text(r#"{"a":"mode","v":["full",[408065]]}"#)]
        );
        assert_eq!(kite.classify(&Frame::Binary(vec![0])), Inbound::Heartbeat);
        assert_eq!(kite.classify(&Frame::Binary(vec![0, 1, 2])), Inbound::Data);
        assert!(kite.connect(&Grant::new("T", UnixMs::EPOCH)).is_err(), "no api_key");
    }

    #[test]
    fn kotak_authenticates_with_a_frame_and_keeps_a_heartbeat() {
        let kotak = KotakStream::new("wss://feed.example");
        let auth = kotak.authenticate(&grant());
        assert_eq!(auth, [Frame::text(r#"{"Authorization":"TOKEN","Sid":"SID","type":"cn"}"#)]);
        assert_eq!(kotak.classify(&Frame::text(r#"{"type":"cn","stat":"Ok"}"#)), Inbound::Authenticated);
        assert!(matches!(kotak.classify(&Frame::text(r#"{"type":"cn","stat":"NotOk"}"#)), Inbound::AuthRejected(_)));
        assert_eq!(kotak.classify(&Frame::text(r#"{"type":"hb"}"#)), Inbound::Heartbeat);
        assert_eq!(kotak.heartbeat().unwrap().1, Duration::from_secs(30));
        assert!(!kotak.allows_overlap());
    }

    #[test]
    fn ibkr_carries_the_session_cookie_and_tics() {
        let ibkr = IbkrStream::new("wss://api.ibkr.com/v1/api/ws");
        let grant = grant().with_extra("oauth_token", "OAUTH").with_extra("session", "S1");
        let request = ibkr.connect(&grant).unwrap();
        assert_eq!(request.url.expose(), "wss://api.ibkr.com/v1/api/ws?oauth_token=OAUTH");
        assert_eq!(request.headers[0].1.expose(), "api=S1");
        let why = ibkr.connect(&self::grant().with_extra("oauth_token", "OAUTH")).unwrap_err();
        assert!(why.contains("`session`") && !why.contains("TOKEN"), "never the access token as the cookie: {why}");
        assert_eq!(ibkr.unsubscribe(r#"smd+265598+{"fields":["31"]}"#), [Frame::text("umd+265598+{}")]);
        assert_eq!(ibkr.classify(&Frame::text(r#"{"topic":"system","hb":1}"#)), Inbound::Heartbeat);
        let unauthenticated = Frame::text(r#"{"topic":"sts","args":{"authenticated":false}}"#);
        assert!(matches!(ibkr.classify(&unauthenticated), Inbound::AuthRejected(_)));
    }

    #[test]
    fn saxo_reauthorises_in_place_and_reads_heartbeats() {
        let saxo = SaxoStream::new("wss://streaming.example/sim/openapi/streamingws/", "ctx 1");
        let request = saxo.connect(&grant()).unwrap();
        assert_eq!(request.url.expose(), "wss://streaming.example/sim/openapi/streamingws/connect?contextId=ctx%201");
        assert_eq!(request.headers[0].1.expose(), "Bearer TOKEN");
        assert_eq!(saxo.on_new_grant(), GenerationChange::ReauthorizeInPlace);
        assert_eq!(
            saxo.reauthorize().unwrap().url,
            "https://streaming.example/sim/openapi/streamingws/authorize?contextId=ctx%201"
        );
        let mut heartbeat = vec![0u8; 10];
        heartbeat.push(10);
        heartbeat.extend_from_slice(b"_heartbeat");
        assert_eq!(saxo.classify(&Frame::Binary(heartbeat)), Inbound::Heartbeat);
        let mut data = vec![0u8; 10];
        data.push(2);
        data.extend_from_slice(b"p1");
        assert_eq!(saxo.classify(&Frame::Binary(data)), Inbound::Data);
        let mut disconnect = vec![0u8; 10];
        disconnect.push(11);
        disconnect.extend_from_slice(b"_disconnect");
        assert!(matches!(saxo.classify(&Frame::Binary(disconnect)), Inbound::AuthRejected(_)));
    }
}
