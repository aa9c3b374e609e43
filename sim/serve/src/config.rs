//! The `[serve]` table of `warden.toml`: where the service listens, how it is secured, its limits.
//!
//! ```toml
//! [serve]
//! listen = "127.0.0.1:7878"          # a non-loopback address needs [serve.tls] or allow_plain_http
//! token_file = "warden-serve.token"  # the bearer token; made (mode 0600) when missing
//! webhook = "https://hooks.example/warden"   # told when a person must act
//! max_request_bytes = 1048576
//! request_timeout = "10s"            # every route but the proxy and the event streams
//! proxy_timeout = "60s"              # one proxied call, its waits and retries included
//! drain_timeout = "30s"              # how long SIGTERM waits for proxied calls in flight
//! events_kept = 10000                # events kept for a resume with Last-Event-ID …
//! events_kept_for = "1h"             # … and for how long at most
//! max_event_subscribers = 1000
//! max_streams = 64                   # broker streams relayed at once (GET /v1/sessions/ID/stream)
//! stream_buffer = 1024               # frames waiting for a stream client; a client that lets it fill is let go
//! browser_session_ttl = "12h"
//!
//! [serve.tls]
//! cert = "/etc/warden/tls/cert.pem"
//! key = "/etc/warden/tls/key.pem"
//!
//! [serve.sessions.saxo-main]
//! api_root = "https://gateway.saxobank.com/sim/openapi/"  # where /proxy/saxo-main/… goes
//! login_url = "https://sim.logonvalidation.net/authorize?…" # shown when a person must sign in
//! ```
//!
//! Only this table is read here; the rest of the file (the store, the sessions) belongs to the
//! configuration loader (`warden_adapters::config`), which accepts `[serve]` without reading it. Every
//! key is optional; unknown keys are errors. Errors are the loader's [`ConfigError`]s, from the same
//! shared locator: the file, the line and column, the key, and "did you mean" for a close name. Relative
//! paths are relative to the configuration file's folder.
//!
//! `[serve.sessions.ID]` names a session of the file's `[sessions.ID]` ([`ServeConfig::check_sessions`]
//! says which one when it does not): `api_root` is the API root proxied calls go to (needed for Saxo,
//! whose settings name only the login server; Kite's and IBKR's come from their `base_url`, Kotak's from
//! the grant, OAuth2's from its first `api_hosts` entry), `login_url` where a person signs in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warden_adapters::config::locate::{Document, KeyPath};
use warden_adapters::config::located::{Locator, suggest, syntax_problem};
use warden_adapters::config::{ConfiguredSession, Place};
use warden_engine::time::HumanDuration;

pub use warden_adapters::config::ConfigError;

/// The address the service listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// The largest request body accepted (proxied calls included), unless set: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = warden_adapters::config::MAX_CONFIG_BYTES;
/// The token file's name beside the configuration file, unless set.
pub const DEFAULT_TOKEN_FILE: &str = "warden-serve.token";

/// The file as far as this module reads it: `[serve]`, every other table ignored.
#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    serve: RawServe,
}

/// `[serve]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    allow_plain_http: Option<bool>,
    token_file: Option<PathBuf>,
    webhook: Option<String>,
    webhook_timeout: Option<HumanDuration>,
    max_request_bytes: Option<usize>,
    request_timeout: Option<HumanDuration>,
    proxy_timeout: Option<HumanDuration>,
    drain_timeout: Option<HumanDuration>,
    events_kept: Option<usize>,
    events_kept_for: Option<HumanDuration>,
    max_event_subscribers: Option<usize>,
    max_streams: Option<usize>,
    stream_buffer: Option<usize>,
    browser_session_ttl: Option<HumanDuration>,
    tls: Option<RawTls>,
    #[serde(default)]
    sessions: std::collections::BTreeMap<String, RawServeSession>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServeSession {
    api_root: Option<String>,
    login_url: Option<String>,
}

/// `[serve.sessions.ID]`: what the service needs to know about one session beyond the loader's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeSession {
    /// The session's id.
    pub id: String,
    /// Where proxied calls go (`api_root`).
    pub api_root: Option<reqwest::Url>,
    /// Where a person signs in (`login_url`).
    pub login_url: Option<String>,
    /// Where the table is written.
    pub place: Place,
}

/// The certificate chain and private key files of the TLS listener (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// The `[serve]` table, checked, with every default filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Whether a non-loopback address may be served without TLS (only behind a trusted TLS proxy).
    pub allow_plain_http: bool,
    /// The bearer token's file (made, mode 0600, when missing and no token is given otherwise).
    pub token_file: PathBuf,
    /// Where to POST a note when a person must act on a session.
    pub webhook: Option<String>,
    /// How long one webhook delivery may take.
    pub webhook_timeout: Duration,
    /// The largest request body accepted.
    pub max_request_bytes: usize,
    /// The time limit of every route but the proxy and the event streams.
    pub request_timeout: Duration,
    /// The time limit of one proxied call (its waits for a token and the request limit, its retries).
    pub proxy_timeout: Duration,
    /// How long a SIGTERM waits for proxied calls in flight before the service stops.
    pub drain_timeout: Duration,
    /// The events kept for a resume (`Last-Event-ID`).
    pub events_kept: usize,
    /// The longest an event is kept for a resume.
    pub events_kept_for: Duration,
    /// The most event streams open at once (SSE and WebSocket together).
    pub max_event_subscribers: usize,
    /// The most broker streams relayed at once (`GET /v1/sessions/{id}/stream`).
    pub max_streams: usize,
    /// The frames a stream relay keeps waiting for its client; when full, the client is disconnected.
    pub stream_buffer: usize,
    /// How long a browser's sign-in lasts.
    pub browser_session_ttl: Duration,
    /// TLS, when configured.
    pub tls: Option<TlsFiles>,
    /// `[serve.sessions.*]`, by id.
    pub sessions: Vec<ServeSession>,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7878))),
            allow_plain_http: false,
            token_file: PathBuf::from(DEFAULT_TOKEN_FILE),
            webhook: None,
            webhook_timeout: Duration::from_secs(5),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            request_timeout: Duration::from_secs(10),
            proxy_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            events_kept: 10_000,
            events_kept_for: Duration::from_secs(3600),
            max_event_subscribers: 1_000,
            max_streams: 64,
            stream_buffer: 1_024,
            browser_session_ttl: Duration::from_secs(12 * 3600),
            tls: None,
            sessions: Vec::new(),
        }
    }
}

impl ServeConfig {
    /// Reads `[serve]` from the configuration file at `path` (a missing table gives the defaults).
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let origin = path.display().to_string();
        let read_error = |detail: String| ConfigError::Read { path: origin.clone(), detail };
        let size = std::fs::metadata(path).map_err(|e| read_error(e.to_string()))?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(read_error(format!("it is {size} bytes; a configuration is at most {MAX_CONFIG_BYTES}")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        ServeConfig::parse(&text, &origin, folder)
    }

    /// Reads `[serve]` from configuration text; `origin` names it in errors, relative paths are taken
    /// relative to `folder`.
    pub fn parse(text: &str, origin: &str, folder: &Path) -> Result<ServeConfig, ConfigError> {
        let doc = Document::parse(text).map_err(|e| {
            let p = syntax_problem(origin, text, &e);
            ConfigError::Syntax { origin: p.origin, line: p.line, column: p.column, problem: p.problem }
        })?;
        let loc = Locator::new(origin, &doc);
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::from(loc.toml_error(&e)))?;
        let raw = raw.serve;
        let at = |key: &str| KeyPath::of(&["serve", key]);
        let invalid = |key: &str, problem: String| ConfigError::from(loc.invalid(&at(key), problem));
        let defaults = ServeConfig::default();
        let listen = match raw.listen {
            Some(text) => text
                .parse()
                .map_err(|_| invalid("listen", format!("\"{text}\" is not an address like 127.0.0.1:7878")))?,
            None => defaults.listen,
        };
        let at_folder = |p: PathBuf| if p.is_absolute() { p } else { folder.join(p) };
        let positive = |name: &str, value: Option<HumanDuration>, default: Duration| match value {
            Some(HumanDuration(d)) if d.is_zero() => Err(invalid(name, "must be longer than zero".to_owned())),
            Some(HumanDuration(d)) => Ok(d),
            None => Ok(default),
        };
        let at_least_one = |name: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(invalid(name, "must be at least 1".to_owned())),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        if let Some(url) = &raw.webhook
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("webhook", "must be an http or https URL".to_owned()));
        }
        let mut sessions = Vec::with_capacity(raw.sessions.len());
        for (id, session) in raw.sessions {
            let path = KeyPath::of(&["serve", "sessions", &id]);
            let api_root = match session.api_root {
                Some(text) => match reqwest::Url::parse(&text) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    _ => {
                        let problem = format!("\"{text}\" is not an http or https URL");
                        return Err(loc.invalid(&path.key("api_root"), problem).into());
                    }
                },
                None => None,
            };
            sessions.push(ServeSession { id, api_root, login_url: session.login_url, place: loc.place(&path) });
        }
        let config = ServeConfig {
            listen,
            allow_plain_http: raw.allow_plain_http.unwrap_or(false),
            token_file: at_folder(raw.token_file.unwrap_or(defaults.token_file)),
            webhook: raw.webhook,
            webhook_timeout: positive("webhook_timeout", raw.webhook_timeout, defaults.webhook_timeout)?,
            max_request_bytes: at_least_one("max_request_bytes", raw.max_request_bytes, defaults.max_request_bytes)?,
            request_timeout: positive("request_timeout", raw.request_timeout, defaults.request_timeout)?,
            proxy_timeout: positive("proxy_timeout", raw.proxy_timeout, defaults.proxy_timeout)?,
            drain_timeout: positive("drain_timeout", raw.drain_timeout, defaults.drain_timeout)?,
            events_kept: at_least_one("events_kept", raw.events_kept, defaults.events_kept)?,
            events_kept_for: positive("events_kept_for", raw.events_kept_for, defaults.events_kept_for)?,
            max_event_subscribers: at_least_one(
                "max_event_subscribers",
                raw.max_event_subscribers,
                defaults.max_event_subscribers,
            )?,
            max_streams: at_least_one("max_streams", raw.max_streams, defaults.max_streams)?,
            stream_buffer: at_least_one("stream_buffer", raw.stream_buffer, defaults.stream_buffer)?,
            browser_session_ttl: positive(
                "browser_session_ttl",
                raw.browser_session_ttl,
                defaults.browser_session_ttl,
            )?,
            tls: raw.tls.map(|t| TlsFiles { cert: at_folder(t.cert), key: at_folder(t.key) }),
            sessions,
        };
        Ok(config)
    }

    /// The `[serve.sessions.ID]` of a session, if written.
    pub fn session(&self, id: &str) -> Option<&ServeSession> {
        self.sessions.iter().find(|s| s.id == id)
    }

    /// Checks that every `[serve.sessions.ID]` names a session of the file (`sessions`, the loader's),
    /// with the closest id when it does not.
    pub fn check_sessions(&self, sessions: &[ConfiguredSession]) -> Result<(), ConfigError> {
        let known: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        for session in &self.sessions {
            if !known.contains(&session.id.as_str()) {
                let problem =
                    format!("there is no [sessions.{}] in this file{}", session.id, suggest(&session.id, &known));
                return Err(session.place.problem(problem).into());
            }
        }
        Ok(())
    }

    /// Whether the listen address is served safely: loopback, TLS, or plain HTTP explicitly allowed.
    pub fn check_listen(&self, listen: SocketAddr) -> Result<(), String> {
        if listen.ip().is_loopback() || self.tls.is_some() || self.allow_plain_http {
            return Ok(());
        }
        Err(format!(
            "{listen} is not a loopback address: configure [serve.tls] (cert, key), or set allow_plain_http = true \
             (or pass --allow-plain-http) only behind a TLS proxy you trust"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(text, "warden.toml", Path::new("/etc/warden"))
    }

    #[test]
    fn defaults_fill_a_missing_table_and_the_rest_of_the_file_is_left_alone() {
        let config = parse("[store]\npath = \"/var/lib/warden\"\n[sessions.a]\nbroker = \"kite\"\n").unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.token_file, Path::new("/etc/warden/warden-serve.token"));
        assert_eq!(config.events_kept, 10_000);
    }

    #[test]
    fn keys_are_read_and_checked() {
        let config = parse(
            "[serve]\nlisten = \"0.0.0.0:9000\"\nevents_kept = 50\nevents_kept_for = \"5m\"\n\
             [serve.tls]\ncert = \"tls/cert.pem\"\nkey = \"/k.pem\"\n",
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.events_kept_for, Duration::from_secs(300));
        let tls = config.tls.clone().unwrap();
        assert_eq!(
            (tls.cert.as_path(), tls.key.as_path()),
            (Path::new("/etc/warden/tls/cert.pem"), Path::new("/k.pem"))
        );
        assert!(config.check_listen(config.listen).is_ok(), "TLS makes a public address fine");
        let error = parse("[serve]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "warden.toml line 2, column 1: `serve.listen`: \"nowhere\" is not an address like 127.0.0.1:7878"
        );
        let error = parse("[store]\npath = \"x\"\n\n[serve]\nlistne = \"127.0.0.1:1\"\n").unwrap_err().to_string();
        assert_eq!(error, "warden.toml line 5, column 1: unknown key `listne` in [serve] (did you mean `listen`?)");
        let error = parse("[serve]\nevents_kept = 0\n").unwrap_err().to_string();
        assert_eq!(error, "warden.toml line 2, column 1: `serve.events_kept`: must be at least 1");
        let error = parse("[serve]\nproxy_timeout = \"soon\"\n").unwrap_err();
        assert_eq!((error.line(), error.key()), (Some(2), Some("serve.proxy_timeout")), "{error}");
        let error = parse("[serve]\nlisten = \n").unwrap_err().to_string();
        assert!(error.starts_with("warden.toml line 2, column 10: not valid TOML"), "{error}");
        let error = parse("[serve.sessions.a]\napi_root = \"ftp://x\"\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "warden.toml line 2, column 1: `serve.sessions.a.api_root`: \"ftp://x\" is not an http or https URL"
        );
        let error = parse("[serve.sessions.a]\napi_rot = \"https://x\"\n").unwrap_err().to_string();
        assert!(error.contains("unknown key `api_rot` in [serve.sessions.a] (did you mean `api_root`?)"), "{error}");
    }

    #[test]
    fn a_public_address_needs_tls_or_an_explicit_flag() {
        let config = parse("[serve]\nlisten = \"0.0.0.0:7878\"\n").unwrap();
        let error = config.check_listen(config.listen).unwrap_err();
        assert!(error.contains("is not a loopback address"), "{error}");
        let config = parse("[serve]\nlisten = \"0.0.0.0:7878\"\nallow_plain_http = true\n").unwrap();
        assert!(config.check_listen(config.listen).is_ok());
        assert!(ServeConfig::default().check_listen("[::1]:7878".parse().unwrap()).is_ok());
    }
}
