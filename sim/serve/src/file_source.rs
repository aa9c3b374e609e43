//! `warden.toml` as the service's [`SessionSource`]: [`FileSource`] reads the file's `[sessions.*]` with
//! the workspace's configuration loader (`warden_adapters::config`, `warden_actors::load_specs`: the real
//! broker adapters, credentials resolved from their `env:`/`file:` references) and its
//! `[serve.sessions.*]` (the API root and login page of each), at start and on every reload.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use warden_adapters::config::SystemEnvironment;
//! use warden_serve::file_source::FileSource;
//!
//! let path = std::path::Path::new("/etc/warden/warden.toml");
//! let (builder, source) = FileSource::open(path, Arc::new(SystemEnvironment))?;
//! let warden = builder.build().await?;            // the file's [store]
//! # let _ = (warden, source);
//! # Ok(()) }
//! ```
//!
//! The store (`[store]`) and the `[serve]` settings other than `[serve.sessions.*]` are read once, at
//! start: a reload re-reads the sessions only, and says so in the log when `[store]` changed.
//!
//! A session's revision is a digest of its configuration (adapter, HTTP settings, policy, account, seed,
//! credential references, its `[serve.sessions.ID]`) and of its resolved credentials, keyed with a random
//! key made when the source is, so that a rotated secret file re-opens the session on the next reload and
//! the digest says nothing about the secret outside this process (it is never shown anyway).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use warden_actors::{Clock, WardenBuilder, load_specs};
use warden_adapters::broker::BrokerApi;
use warden_adapters::config::{Adapter, AdapterConfig, ConfigError, ConfiguredSession, Environment, WardenConfig};
use warden_engine::{BoxFuture, Credentials};

use crate::config::ServeConfig;
use crate::source::{SessionEntry, SessionSource, SourceError};

/// The sessions of a `warden.toml`.
pub struct FileSource {
    path: PathBuf,
    env: Arc<dyn Environment>,
    clock: Clock,
    /// The store's configuration as read at start (a reload that sees another one says so).
    store_at_start: String,
    revision_key: [u8; 32],
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Everything [`FileSource::check`] found in a file, for `warden check`.
#[derive(Debug)]
pub struct Checked {
    /// The loader's view (store, sessions, warnings).
    pub config: WardenConfig,
    /// The `[serve]` table.
    pub serve: ServeConfig,
}

impl FileSource {
    /// Reads the file once to check it, and returns the runtime's builder (the file's `[store]`, the
    /// system clock) and the source of its sessions. Nothing is started: the sessions open when the
    /// service is built.
    pub fn open(path: &Path, env: Arc<dyn Environment>) -> Result<(WardenBuilder, Arc<FileSource>), ConfigError> {
        let checked = FileSource::check(path, env.as_ref())?;
        let clock = Clock::system();
        let builder = WardenBuilder::from_config(&checked.config, env.as_ref())?.clock(clock.clone());
        let mut revision_key = [0u8; 32];
        getrandom::fill(&mut revision_key).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            detail: format!("no randomness for the revision key: {e}"),
        })?;
        let store_at_start = format!("{:?}", checked.config.store);
        let source = FileSource { path: path.to_owned(), env, clock, store_at_start, revision_key };
        Ok((builder, Arc::new(source)))
    }

    /// Checks a file as `warden serve` would read it, starting nothing: the loader's checks (every key,
    /// every policy), `[serve]`, `[serve.sessions.*]` against `[sessions.*]`, every credential reference
    /// resolved and every adapter built. Call inside a tokio runtime (warden's clock runs a task).
    pub fn check(path: &Path, env: &dyn Environment) -> Result<Checked, ConfigError> {
        let config = WardenConfig::load(path)?;
        let serve = ServeConfig::load(path)?;
        serve.check_sessions(&config.sessions)?;
        config.store.sled_options(env)?;
        load_specs(&config, env, &Clock::system())?;
        Ok(Checked { config, serve })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Vec<SessionEntry>, ConfigError> {
        let config = WardenConfig::load(&self.path)?;
        if format!("{:?}", config.store) != self.store_at_start {
            tracing::warn!(config = %self.path.display(), "[store] changed; it is read at start only (restart to use it)");
        }
        let serve = ServeConfig::load(&self.path)?;
        serve.check_sessions(&config.sessions)?;
        let specs = load_specs(&config, self.env.as_ref(), &self.clock)?;
        let mut entries = Vec::with_capacity(specs.len());
        for (configured, session) in specs.into_iter().zip(&config.sessions) {
            let table = serve.session(session.id.as_str());
            let base_url = table.and_then(|t| t.api_root.clone()).or_else(|| default_api_root(&session.adapter));
            let login_url = table.and_then(|t| t.login_url.clone());
            let revision =
                self.revision(session, &configured.spec.credentials, base_url.as_ref(), login_url.as_deref());
            entries.push(SessionEntry {
                api: api_of(&configured.adapter),
                spec: configured.spec,
                base_url,
                login_url,
                revision,
                // warden.toml names no streaming URL yet: sessions from the file relay no stream.
                stream: None,
            });
        }
        Ok(entries)
    }

    fn revision(
        &self,
        session: &ConfiguredSession,
        credentials: &Credentials,
        base_url: Option<&reqwest::Url>,
        login_url: Option<&str>,
    ) -> String {
        let mut digest = Sha256::new();
        digest.update(self.revision_key);
        // Every part but the place (moving a table in the file changes nothing).
        let described = format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}",
            session.adapter,
            session.http,
            session.policy,
            session.account,
            session.seed,
            session.credentials.iter().map(|c| (&c.name, &c.source)).collect::<Vec<_>>(),
            base_url.map(reqwest::Url::as_str),
            login_url,
        );
        digest.update(described.as_bytes());
        for name in credentials.names() {
            digest.update(name.as_bytes());
            digest.update([0]);
            if let Some(value) = credentials.get(name) {
                digest.update(value.expose().as_bytes());
            }
            digest.update([0]);
        }
        hex::encode(&digest.finalize()[..16])
    }
}

impl SessionSource for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<SessionEntry>, SourceError>> {
        Box::pin(async move {
            self.read().map_err(|e| SourceError { origin: self.describe(), detail: without_origin(&e, &self.path) })
        })
    }
}

/// The message of `error` without a leading "PATH: " or "PATH line …" origin (the source error names it).
fn without_origin(error: &ConfigError, path: &Path) -> String {
    let text = error.to_string();
    let origin = path.display().to_string();
    match text.strip_prefix(&origin) {
        Some(rest) => rest.trim_start_matches(':').trim_start().to_owned(),
        None => text,
    }
}

/// A configured adapter as the proxy's [`BrokerApi`].
pub fn api_of(adapter: &Adapter) -> Arc<dyn BrokerApi> {
    match adapter {
        Adapter::Saxo(a) => a.clone(),
        Adapter::Ibkr(a) => a.clone(),
        Adapter::KotakNeo(a) => a.clone(),
        Adapter::Kite(a) => a.clone(),
        Adapter::OAuth2(a) => a.clone(),
        // `Adapter` is non-exhaustive: a broker added later answers "no mapping" until it gets one.
        other => Arc::new(Unmapped(other.broker())),
    }
}

/// The API root a session's proxied calls go to when `[serve.sessions.ID] api_root` is not set: the
/// adapter's own (Kite's and IBKR's `base_url`; Kotak's comes from the grant), else OAuth2's first
/// `api_hosts` entry over HTTPS. Saxo has none: its settings name the login server only.
pub fn default_api_root(adapter: &AdapterConfig) -> Option<reqwest::Url> {
    match adapter {
        AdapterConfig::OAuth2(settings) => {
            let host = settings.api_hosts.first()?;
            reqwest::Url::parse(&format!("https://{host}/")).ok()
        }
        _ => None,
    }
}

/// A broker with no proxy mapping yet.
struct Unmapped(Arc<dyn warden_engine::Broker>);

impl BrokerApi for Unmapped {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn send_raw<'a>(
        &'a self,
        _now: warden_engine::UnixMs,
        _grant: &'a warden_engine::Grant,
        _request: warden_adapters::ApiRequest,
    ) -> BoxFuture<'a, Result<warden_adapters::broker::RawAnswer, warden_engine::BrokerError>> {
        let name = self.0.name().to_owned();
        Box::pin(async move {
            Err(warden_engine::BrokerError::not_sent(format!("{name}: the proxy has no mapping for this broker")))
        })
    }
}
