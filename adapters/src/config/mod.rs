//! Configuration files: `warden.toml` — the store, the sessions with their broker adapters, policies and
//! credentials by reference — and the located, suggest-the-right-name errors every TOML parser of the
//! workspace shares.
//!
//! ```toml
//! [store]
//! path = "/var/lib/warden/warden.db"
//! key = "env:WARDEN_KEY"            # or "file:/etc/warden/store.key", or "auto"
//!
//! [cluster]                          # optional: one member of several on one PostgreSQL
//! database = "env:WARDEN_DB_URL"     # a reference only: the URL may hold a password
//! member = "warden-1"
//! lease_ttl = "10s"
//!
//! [sessions.kite-main]
//! broker = "kite"
//! account = "ZX1234"
//! credentials = { api_key = "env:KITE_API_KEY", api_secret = "file:/run/secrets/kite_api_secret" }
//! policy = { preset = "daily", after_cutoff = "operator" }
//! ```
//!
//! - [`WardenConfig::load`] / [`WardenConfig::parse`]: text in, typed configuration out (pure: nothing
//!   is resolved, nothing is connected). Errors are [`ConfigError`]s naming the file, the line and
//!   column, the key and the problem, with "did you mean" for close names.
//! - [`ConfiguredSession::credentials`] and [`StoreConfig::sled_options`] resolve the `env:`/`file:`
//!   references through an [`Environment`](sources::Environment): the real one
//!   ([`SystemEnvironment`](sources::SystemEnvironment)) or one in memory for tests.
//! - [`AdapterFactory`] builds each session's broker adapter (one HTTP client per distinct HTTP
//!   settings). The runtime (`warden-actors`) turns all of it into sessions.
//!
//! The pieces: [`raw`] (the file as written), [`resolve`] (checks and policies), [`sources`] (secret
//! references), [`build`] (adapters), [`locate`] and [`located`] (finding keys, wording errors).
//! `docs/adapters.md` ("warden.toml") documents the format with an example per broker.

pub mod build;
pub mod error;
pub mod locate;
pub mod located;
pub mod raw;
mod resolve;
pub mod sources;

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_engine::{Credentials, MemberName, Policy, SessionId};

pub use build::{Adapter, AdapterFactory};
pub use error::ConfigError;
pub use located::{LocatedProblem, Place};
pub use raw::BrokerName;
pub use sources::{Environment, SecretRef, SourceError, StaticEnvironment, SystemEnvironment};

use crate::broker::{HttpSettings, IbkrSettings, KiteSettings, KotakSettings, OAuth2Settings, SaxoSettings};
use crate::store::{FlushPolicy, KEY_ENV_VAR, KeyLookup, KeySource, PostgresOptions, SledOptions, StoreKey};

/// The largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A `warden.toml`, checked: the store and the sessions. Holds no secret, only references to them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WardenConfig {
    /// Where it came from (the path, or the origin given to [`WardenConfig::parse`]).
    pub origin: String,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[cluster]`: several warden processes on one PostgreSQL database, when set.
    pub cluster: Option<ClusterConfig>,
    /// `[sessions.*]`, in the order written.
    pub sessions: Vec<ConfiguredSession>,
    /// `allow_inline_secrets`: whether secrets written in the file itself were accepted.
    pub allow_inline_secrets: bool,
    /// What was accepted but ignored, located like errors. `[serve]` is accepted without a warning:
    /// `warden serve` reads it.
    pub warnings: Vec<LocatedProblem>,
}

impl WardenConfig {
    /// Reads and checks a configuration file. Errors name the path as given.
    pub fn load(path: &Path) -> Result<WardenConfig, ConfigError> {
        let origin = path.display().to_string();
        let read_error = |detail: String| ConfigError::Read { path: origin.clone(), detail };
        let size = std::fs::metadata(path).map_err(|e| read_error(e.to_string()))?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(read_error(format!("it is {size} bytes; a configuration is at most {MAX_CONFIG_BYTES}")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
        WardenConfig::parse(&text, &origin)
    }

    /// Checks configuration text; `origin` names it in errors (usually its path).
    pub fn parse(text: &str, origin: &str) -> Result<WardenConfig, ConfigError> {
        resolve::parse(text, origin)
    }

    /// The session with this id.
    pub fn session(&self, id: &str) -> Option<&ConfiguredSession> {
        self.sessions.iter().find(|s| s.id.as_str() == id)
    }
}

/// `[store]`: where snapshots are kept and how they are sealed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The sled database's directory (`path`).
    pub path: PathBuf,
    /// Where the encryption key comes from (`key`, default `"auto"`).
    pub key: KeyRef,
    /// The key the store was sealed with until now, to rotate from (`previous_key`).
    pub previous_key: Option<KeyRef>,
    /// When writes are flushed (`durability`: `"as_requested"`, `"always"`, `"never"`).
    pub durability: FlushPolicy,
}

/// `[cluster]`: this process is one member of several that share a PostgreSQL database (see
/// `docs/cluster.md`). Holds no secret: the database URL is read from the environment when the store
/// opens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The environment variable that holds the PostgreSQL URL (`database = "env:NAME"`).
    pub database_env: String,
    /// This member's name (`member`), unique among the live members.
    pub member: MemberName,
    /// How long a lease lasts unless renewed (`lease_ttl`, default 10 s, at least 1 s).
    pub lease_ttl: Duration,
    /// Where the table is written.
    pub place: Place,
}

impl ClusterConfig {
    /// The store's options: the URL from the environment, the key from `[store]` (an `env:` or `file:`
    /// reference, read now; the key file is never created here — every member needs the same one).
    pub fn postgres_options(&self, store: &StoreConfig, env: &dyn Environment) -> Result<PostgresOptions, ConfigError> {
        let url = SecretRef::Env(self.database_env.clone())
            .resolve(env)
            .map_err(|e| ConfigError::from(self.place.problem(format!("`database`: {e}"))))?;
        let problem = |detail: String| ConfigError::from(self.place.problem(detail));
        let key = match store.key.key_source(env)?.lookup(&store.path) {
            Ok(KeyLookup::Found { key, .. }) => key,
            Ok(KeyLookup::MissingFile { path }) => {
                return Err(problem(format!(
                    "the store key file {} does not exist: with [cluster] it is never created, every member needs \
                     a copy of the same key",
                    path.display()
                )));
            }
            Err(error) => return Err(problem(error.to_string())),
        };
        Ok(PostgresOptions::new(url.expose().to_owned(), key))
    }
}

/// Where the store's key comes from, as written.
#[derive(Debug, Clone)]
pub enum KeyRef {
    /// `"auto"`: `WARDEN_KEY` if set, else a key file beside the database, created on first run.
    Auto,
    /// `"env:NAME"`, `"file:PATH"` (the key file, created on first run) or the key itself.
    Source {
        /// The reference.
        source: SecretRef,
        /// Where it is written.
        place: Place,
    },
}

impl KeyRef {
    /// The store's key source: `env:WARDEN_KEY` and `auto` are the store's own; another variable (or an
    /// inline key) is read now and must hold the base64 of 32 bytes; a `file:` is the key file.
    pub fn key_source(&self, env: &dyn Environment) -> Result<KeySource, ConfigError> {
        match self {
            KeyRef::Auto => Ok(KeySource::EnvOrFile),
            KeyRef::Source { source: SecretRef::Env(name), .. } if name == KEY_ENV_VAR => Ok(KeySource::Env),
            KeyRef::Source { source: SecretRef::File(path), .. } => Ok(KeySource::File(path.clone())),
            KeyRef::Source { source, place } => {
                let text = source.resolve(env).map_err(|e| ConfigError::from(place.problem(e)))?;
                let origin = match source {
                    SecretRef::Env(name) => format!("the environment variable `{name}`"),
                    _ => "the key".to_owned(),
                };
                let key = StoreKey::from_base64(text.expose(), &origin).map_err(|e| {
                    let detail = match e {
                        warden_engine::StoreError::Key { detail } => detail,
                        other => other.to_string(),
                    };
                    ConfigError::from(place.problem(detail))
                })?;
                Ok(KeySource::Bytes(*key.bytes()))
            }
        }
    }
}

impl StoreConfig {
    /// The store's options: key source (resolved through `env` where it must be read now), previous key,
    /// flush policy.
    pub fn sled_options(&self, env: &dyn Environment) -> Result<SledOptions, ConfigError> {
        let mut options = SledOptions::default().key(self.key.key_source(env)?).flush(self.durability);
        if let Some(previous) = &self.previous_key {
            options = options.previous_key(previous.key_source(env)?);
        }
        Ok(options)
    }
}

/// One `[sessions.ID]` table, checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConfiguredSession {
    /// Its id (the table's name).
    pub id: SessionId,
    /// The broker account whose request limit it shares (`account`; `None`: the id).
    pub account: Option<String>,
    /// The seed of its jitter (`seed`, default 0).
    pub seed: u64,
    /// The broker and its adapter's settings.
    pub adapter: AdapterConfig,
    /// Its HTTP client's settings (`[http]`, then the session's `connect_timeout`, `request_timeout`,
    /// `max_response_bytes`).
    pub http: HttpSettings,
    /// Its policy, built and validated.
    pub policy: Policy,
    /// Its credentials, as references.
    pub credentials: Vec<CredentialRef>,
    /// Where its table is written.
    pub place: Place,
}

/// One credential: its name and where its value comes from.
#[derive(Debug, Clone)]
pub struct CredentialRef {
    /// The credential's name (`api_secret`).
    pub name: String,
    /// The reference.
    pub source: SecretRef,
    /// Where it is written.
    pub place: Place,
}

impl ConfiguredSession {
    /// Its credentials, each reference resolved through `env`. An unset variable, a missing, empty or
    /// world-readable file is an error located at the credential. IBKR's key files are checked here (the
    /// two PEM keys parse, `dh_param` holds a Diffie-Hellman prime and generator) so that a bad file
    /// stops the start instead of every login.
    pub fn credentials(&self, env: &dyn Environment) -> Result<Credentials, ConfigError> {
        let mut credentials = Credentials::new();
        for credential in &self.credentials {
            let secret = credential.source.resolve(env).map_err(|e| ConfigError::from(credential.place.problem(e)))?;
            if let AdapterConfig::Ibkr(_) = self.adapter {
                use crate::broker::ibkr::oauth;
                let bad = |e: oauth::OAuthError| ConfigError::from(credential.place.problem(e));
                match credential.name.as_str() {
                    "signature_key" => drop(oauth::parse_private_key(secret.expose(), "signature_key").map_err(bad)?),
                    "encryption_key" => {
                        drop(oauth::parse_private_key(secret.expose(), "encryption_key").map_err(bad)?);
                    }
                    "dh_param" => {
                        let dh = oauth::DhParams::from_pem(secret.expose()).map_err(bad)?;
                        credentials = credentials
                            .with("dh_prime", dh.prime.to_str_radix(16))
                            .with("dh_generator", dh.generator.to_string());
                        continue;
                    }
                    _ => {}
                }
            }
            credentials = credentials.with(credential.name.clone(), secret);
        }
        Ok(credentials)
    }

    /// The broker's name.
    pub fn broker(&self) -> BrokerName {
        self.adapter.broker()
    }
}

/// A broker and its adapter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterConfig {
    /// `broker = "saxo"`.
    Saxo(SaxoSettings),
    /// `broker = "ibkr"`.
    Ibkr(IbkrSettings),
    /// `broker = "kotak_neo"`.
    KotakNeo(KotakSettings),
    /// `broker = "kite"`.
    Kite(KiteSettings),
    /// `broker = "oauth2"`.
    OAuth2(OAuth2Settings),
}

impl AdapterConfig {
    /// Which broker.
    pub fn broker(&self) -> BrokerName {
        match self {
            AdapterConfig::Saxo(_) => BrokerName::Saxo,
            AdapterConfig::Ibkr(_) => BrokerName::Ibkr,
            AdapterConfig::KotakNeo(_) => BrokerName::KotakNeo,
            AdapterConfig::Kite(_) => BrokerName::Kite,
            AdapterConfig::OAuth2(_) => BrokerName::Oauth2,
        }
    }

    /// The token lifetime the settings declare (policies are checked against it); `None` where the
    /// broker sets it each day (Kite) or the answer says (OAuth2 without `token_lifetime`).
    pub fn token_lifetime(&self) -> Option<Duration> {
        match self {
            AdapterConfig::Saxo(s) => Some(s.token_lifetime),
            AdapterConfig::Ibkr(s) => Some(s.lst_lifetime),
            AdapterConfig::KotakNeo(s) => Some(s.token_lifetime),
            AdapterConfig::Kite(_) => None,
            AdapterConfig::OAuth2(s) => s.token_lifetime,
        }
    }
}
