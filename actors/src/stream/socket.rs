//! The socket under a stream: opening it with tokio-tungstenite (rustls for `wss://`) from a
//! [`ConnectRequest`], and converting frames. Errors name the target (scheme, host, path) and never the
//! URL's query or a header: a Kite ticker URL carries the access token.

use std::time::Duration;

use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::protocol::{ConnectRequest, Frame};

/// An open socket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a socket could not be opened.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    /// What happened, without secrets.
    pub(crate) why: String,
    /// The HTTP status of a refused upgrade.
    pub(crate) status: Option<u16>,
}

/// Opens the socket for `request`, within `timeout`; frames larger than `max_frame_bytes` are refused.
pub(crate) async fn connect(
    request: &ConnectRequest,
    timeout: Duration,
    max_frame_bytes: usize,
) -> Result<Ws, ConnectFailure> {
    let target = &request.target;
    let fail = |why: String| ConnectFailure { why, status: None };
    let mut http = request
        .url
        .expose()
        .into_client_request()
        .map_err(|_| fail(format!("{target}: the URL is not a WebSocket URL")))?;
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| fail(format!("{target}: `{name}` is not a header name")))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| fail(format!("{target}: the `{name}` header is not a valid value")))?;
        value.set_sensitive(true);
        http.headers_mut().insert(name, value);
    }
    let config =
        WebSocketConfig::default().max_message_size(Some(max_frame_bytes)).max_frame_size(Some(max_frame_bytes));
    let secrets: Vec<&str> =
        std::iter::once(request.url.expose()).chain(request.headers.iter().map(|(_, v)| v.expose())).collect();
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async_with_config(http, Some(config), false)).await {
        Err(_) => {
            Err(fail(format!("{target}: no connection within {}", warden_engine::time::format_duration(timeout))))
        }
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(response))) => {
            let status = response.status().as_u16();
            Err(ConnectFailure {
                why: format!("{target}: the upgrade was refused with HTTP {status}"),
                status: Some(status),
            })
        }
        Ok(Err(error)) => {
            let text = warden_adapters::broker::http::scrub(&error.to_string(), &secrets);
            Err(fail(format!("{target}: {}", scrub_query(&text))))
        }
    }
}

/// Drops anything that looks like a query string from an error text (a URL the library quoted).
fn scrub_query(text: &str) -> String {
    text.split_whitespace()
        .map(|word| match word.find('?') {
            Some(i) if word.contains("://") => &word[..i],
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A frame as a WebSocket message.
pub(crate) fn message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::text(text),
        Frame::Binary(bytes) => Message::binary(bytes),
    }
}

/// Sends `frames` in order, each within `timeout`.
pub(crate) async fn send_all(ws: &mut Ws, frames: Vec<Frame>, timeout: Duration) -> Result<(), String> {
    for frame in frames {
        match tokio::time::timeout(timeout, ws.send(message(frame))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("a write failed ({})", scrub_query(&e.to_string()))),
            Err(_) => return Err("a write did not finish in time".to_owned()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_scrubbed_from_error_texts() {
        assert_eq!(scrub_query("URL error: wss://h/x?access_token=T failed"), "URL error: wss://h/x failed");
    }
}
