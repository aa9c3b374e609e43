//! What a stream needs to know of a broker's WebSocket protocol: the [`StreamProtocol`] trait. Pure:
//! every method maps a grant, a topic or a frame to what to send or what a frame means; the driver
//! ([`super::driver`]) does the IO.
//!
//! The order a driver follows on every connection: [`StreamProtocol::connect`] (the URL and headers,
//! the grant on them where the broker wants it there), then [`StreamProtocol::authenticate`] (frames sent
//! first), then — if [`StreamProtocol::awaits_auth_ack`] — wait for a frame that
//! [`StreamProtocol::classify`] reads as [`Inbound::Authenticated`], then one
//! [`StreamProtocol::subscribe`] per topic of the ledger. While connected it sends
//! [`StreamProtocol::heartbeat`]'s frame at its interval. When the session installs a new grant,
//! [`StreamProtocol::on_new_grant`] says what that means for the socket.

use std::fmt;
use std::time::Duration;

use warden_adapters::ApiRequest;
use warden_engine::{Grant, Secret};

/// One WebSocket data frame.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Frames can carry tokens (an authentication message): Debug shows their size only.
        match self {
            Frame::Text(t) => write!(f, "Text({} bytes)", t.len()),
            Frame::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

impl Frame {
    /// A text frame.
    pub fn text(text: impl Into<String>) -> Frame {
        Frame::Text(text.into())
    }

    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Text(t) => t.as_bytes(),
            Frame::Binary(b) => b,
        }
    }
}

/// How to open the socket: the URL and the headers, either of which may carry the grant.
pub struct ConnectRequest {
    /// The URL (`wss://…`); a secret, because some brokers put the token in it (Kite's ticker).
    pub url: Secret,
    /// Extra headers (`Authorization`, `Cookie`); values are secrets.
    pub headers: Vec<(String, Secret)>,
    /// What logs and errors may show of the URL: its scheme, host and path, never its query.
    pub target: String,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ConnectRequest").field("target", &self.target).field("headers", &names).finish()
    }
}

impl ConnectRequest {
    /// A request for `url`, with no extra header.
    pub fn new(url: impl Into<String>) -> ConnectRequest {
        let url = url.into();
        let target = redact_url(&url);
        ConnectRequest { url: Secret::new(url), headers: Vec::new(), target }
    }

    /// With a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Secret>) -> ConnectRequest {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// A URL without its query and fragment (`wss://ws.kite.trade/`): what may be logged.
pub fn redact_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let base = &url[..end];
    // Userinfo (`wss://user:pass@host`) goes too.
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => base.to_owned(),
    }
}

/// What an inbound frame is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// Data for the user.
    Data,
    /// The broker's heartbeat (proof of life, not for the user).
    Heartbeat,
    /// The broker confirmed the authentication.
    Authenticated,
    /// The broker refused the grant: the stream reports the rejection to the session and reconnects
    /// only with a newer grant.
    AuthRejected(String),
    /// A control frame of the broker's that the user need not see.
    Ignore,
}

/// What a new generation of the session's grant means for an open socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationChange {
    /// The socket takes the new grant in place (Saxo's `PUT /streamingws/authorize`); no reconnect.
    ReauthorizeInPlace,
    /// A new socket with the new grant replaces the old one (make-before-break where
    /// [`StreamProtocol::allows_overlap`]).
    Reconnect,
}

/// One broker's WebSocket protocol, as pure functions.
pub trait StreamProtocol: Send + Sync + 'static {
    /// A short name for logs (`kite-ticker`).
    fn name(&self) -> &str;

    /// How to open a socket with `grant`.
    fn connect(&self, grant: &Grant) -> Result<ConnectRequest, String>;

    /// Frames that authenticate a new socket, sent before any subscription (none: the connect request
    /// authenticates).
    fn authenticate(&self, grant: &Grant) -> Vec<Frame> {
        let _ = grant;
        Vec::new()
    }

    /// Whether the broker confirms the authentication with a frame ([`Inbound::Authenticated`]) that
    /// must arrive before subscribing.
    fn awaits_auth_ack(&self) -> bool {
        false
    }

    /// The frames that subscribe to `topic`.
    fn subscribe(&self, topic: &str) -> Vec<Frame>;

    /// The frames that unsubscribe from `topic`.
    fn unsubscribe(&self, topic: &str) -> Vec<Frame>;

    /// The frame the client must send to keep the socket alive, and how often.
    fn heartbeat(&self) -> Option<(Frame, Duration)> {
        None
    }

    /// What an inbound frame is.
    fn classify(&self, frame: &Frame) -> Inbound;

    /// What a new grant means for an open socket.
    fn on_new_grant(&self) -> GenerationChange {
        GenerationChange::Reconnect
    }

    /// For [`GenerationChange::ReauthorizeInPlace`]: the HTTP call that hands the new grant to the open
    /// socket (the grant is put on it by the [`super::Reauthorizer`]).
    fn reauthorize(&self) -> Option<ApiRequest> {
        None
    }

    /// Whether the broker lets a second socket open while the first one lives (make-before-break).
    fn allows_overlap(&self) -> bool {
        true
    }

    /// Whether a close frame from the server says the grant died (then the stream reconnects only with a
    /// newer one). The default: close code 1008 (policy violation) or 4000–4999 with a reason that
    /// mentions a token, a session or authentication.
    fn closed_for_auth(&self, code: u16, reason: &str) -> bool {
        let reason = reason.to_ascii_lowercase();
        let says_auth = ["token", "auth", "session", "expired"].iter().any(|w| reason.contains(w));
        code == 1008 || ((4000..5000).contains(&code) && says_auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(redact_url("wss://ws.kite.trade?api_key=k&access_token=SECRET"), "wss://ws.kite.trade");
        assert_eq!(redact_url("wss://u:p@h.example/ws#x"), "wss://h.example/ws");
        let request = ConnectRequest::new("wss://h/ws?access_token=SECRET").header("Cookie", "api=SESSION");
        let debug = format!("{request:?}");
        assert!(!debug.contains("SECRET") && !debug.contains("SESSION"), "{debug}");
        assert_eq!(format!("{:?}", Frame::text("{\"token\":\"SECRET\"}")), "Text(18 bytes)");
    }
}
