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
//! browser_session_ttl = "12h"
//!
//! [serve.tls]
//! cert = "/etc/warden/tls/cert.pem"
//! key = "/etc/warden/tls/key.pem"
//! ```
//!
//! Only this table is read here; the rest of the file (the store, the sessions) belongs to the
//! configuration loader and is left alone. Every key is optional; unknown keys are errors. Relative paths
//! are relative to the configuration file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warden_engine::time::HumanDuration;

/// The address the service listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// The largest request body accepted (proxied calls included), unless set: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// The token file's name beside the configuration file, unless set.
pub const DEFAULT_TOKEN_FILE: &str = "warden-serve.token";

/// Why the `[serve]` table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {detail}")]
    Read {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The file is not TOML, or `[serve]` has a wrong or unknown key.
    #[error("{path}: [serve]: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (the key and the problem).
        detail: String,
    },
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
    browser_session_ttl: Option<HumanDuration>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
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
    /// How long a browser's sign-in lasts.
    pub browser_session_ttl: Duration,
    /// TLS, when configured.
    pub tls: Option<TlsFiles>,
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
            browser_session_ttl: Duration::from_secs(12 * 3600),
            tls: None,
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
        let invalid = |detail: String| ConfigError::Invalid { path: origin.to_owned(), detail };
        let table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.message().to_owned()))?;
        let raw = match table.get("serve") {
            Some(value) => RawServe::deserialize(value.clone()).map_err(|e| invalid(e.message().to_owned()))?,
            None => RawServe::default(),
        };
        let defaults = ServeConfig::default();
        let listen = match raw.listen {
            Some(text) => text
                .parse()
                .map_err(|_| invalid(format!("`listen` = \"{text}\" is not an address like 127.0.0.1:7878")))?,
            None => defaults.listen,
        };
        let at_folder = |p: PathBuf| if p.is_absolute() { p } else { folder.join(p) };
        let positive = |name: &str, value: Option<HumanDuration>, default: Duration| match value {
            Some(HumanDuration(d)) if d.is_zero() => Err(invalid(format!("`{name}` must be longer than zero"))),
            Some(HumanDuration(d)) => Ok(d),
            None => Ok(default),
        };
        let at_least_one = |name: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(invalid(format!("`{name}` must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        if let Some(url) = &raw.webhook
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("`webhook` must be an http or https URL".to_owned()));
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
            browser_session_ttl: positive(
                "browser_session_ttl",
                raw.browser_session_ttl,
                defaults.browser_session_ttl,
            )?,
            tls: raw.tls.map(|t| TlsFiles { cert: at_folder(t.cert), key: at_folder(t.key) }),
        };
        Ok(config)
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
        assert!(error.contains("`listen` = \"nowhere\" is not an address"), "{error}");
        let error = parse("[serve]\nlistne = \"127.0.0.1:1\"\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `listne`"), "{error}");
        let error = parse("[serve]\nevents_kept = 0\n").unwrap_err().to_string();
        assert!(error.contains("`events_kept` must be at least 1"), "{error}");
        let error = parse("[serve]\nproxy_timeout = \"soon\"\n").unwrap_err().to_string();
        assert!(error.contains("proxy_timeout") || error.contains("soon"), "{error}");
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
