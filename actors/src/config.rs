//! From a `warden.toml` to running sessions: [`Warden::from_config`], or the steps one by one —
//! [`WardenBuilder::from_config`] for the store and [`load_specs`] for the sessions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use warden_actors::Warden;
//! use warden_adapters::config::{SystemEnvironment, WardenConfig};
//!
//! let config = WardenConfig::load("/etc/warden/warden.toml".as_ref())?;
//! for warning in &config.warnings {
//!     eprintln!("{warning}");
//! }
//! let (warden, sessions) = Warden::from_config(&config, &SystemEnvironment).await?;
//! let kite = &sessions[0];
//! let token = kite.handle.token().await?;
//! # let _ = token;
//! warden.shutdown(false).await;
//! # Ok(()) }
//! ```
//!
//! Every credential reference is resolved and every adapter built before the store is opened, so a
//! missing variable or a world-readable key file stops the start with an error naming the file, the
//! line and the key — before a single login.

use std::sync::Arc;

use warden_adapters::config::{Adapter, AdapterFactory, ConfigError, Environment, WardenConfig};

use crate::clock::Clock;
use crate::errors::WardenError;
use crate::handle::SessionHandle;
use crate::warden::{SessionSpec, Warden, WardenBuilder};

/// A configured session ready to open: its spec (adapter, credentials, policy, account, seed) and its
/// adapter as its own type (for calls through its `send`, and for streams).
#[derive(Debug, Clone)]
pub struct ConfiguredSpec {
    /// What `Warden::open` takes.
    pub spec: SessionSpec,
    /// The broker adapter.
    pub adapter: Adapter,
}

/// An open configured session.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// Its handle.
    pub handle: SessionHandle,
    /// Its broker adapter.
    pub adapter: Adapter,
}

/// Why [`Warden::from_config`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FromConfigError {
    /// The configuration refers to something that cannot be had, or an adapter could not be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened, or a session not started.
    #[error(transparent)]
    Warden(#[from] WardenError),
}

/// The sessions of `config`, their credentials resolved through `env` and their adapters built (IBKR's
/// signs with `clock`; sessions with the same HTTP settings share one client).
pub fn load_specs(
    config: &WardenConfig,
    env: &dyn Environment,
    clock: &Clock,
) -> Result<Vec<ConfiguredSpec>, ConfigError> {
    let signing_clock = clock.clone();
    let mut factory = AdapterFactory::new(Arc::new(move || signing_clock.now()));
    let mut specs = Vec::with_capacity(config.sessions.len());
    for session in &config.sessions {
        let credentials = session.credentials(env)?;
        let adapter = factory.build(session)?;
        let mut spec = SessionSpec::new(session.id.clone(), adapter.broker())
            .with_credentials(credentials)
            .with_policy(session.policy.clone())
            .with_seed(session.seed);
        if let Some(account) = &session.account {
            spec = spec.with_account(account.clone());
        }
        specs.push(ConfiguredSpec { spec, adapter });
    }
    Ok(specs)
}

impl WardenBuilder {
    /// A builder with `config`'s store: its path, its key (resolved through `env` where it must be read
    /// now) and its durability — or, with `[cluster]`, the PostgreSQL database named by `database`, this
    /// member's name and its lease TTL (the store opens in `build`).
    pub fn from_config(config: &WardenConfig, env: &dyn Environment) -> Result<WardenBuilder, ConfigError> {
        match &config.cluster {
            Some(cluster) => Ok(Warden::builder()
                .postgres(cluster.postgres_options(&config.store, env)?)
                .member(cluster.member.clone())
                .lease_ttl(cluster.lease_ttl)),
            None => Ok(Warden::builder().store_path_with(&config.store.path, config.store.sled_options(env)?)),
        }
    }
}

impl Warden {
    /// Starts a `Warden` from a configuration: resolves every credential and builds every adapter (so a
    /// bad reference stops the start before the store is opened), opens the store, then opens the sessions
    /// in the order written. On the system clock. If a session cannot be opened, the ones already open are
    /// stopped (without logout) and the error returned.
    ///
    /// With `[cluster]` the sessions are placed over the live members instead ([`Warden::place`]): the
    /// ones returned are those this member runs after the first round; the others are opened here when
    /// placement moves them here (find them with [`Warden::session`]).
    pub async fn from_config(
        config: &WardenConfig,
        env: &dyn Environment,
    ) -> Result<(Warden, Vec<OpenedSession>), FromConfigError> {
        let clock = Clock::system();
        let specs = load_specs(config, env, &clock)?;
        let warden = WardenBuilder::from_config(config, env)?.clock(clock).build().await?;
        if config.cluster.is_some() {
            let adapters: std::collections::HashMap<_, _> =
                specs.iter().map(|c| (c.spec.id.clone(), c.adapter.clone())).collect();
            if let Err(error) = warden.place(specs.into_iter().map(|c| c.spec).collect()).await {
                warden.shutdown(false).await;
                return Err(error.into());
            }
            let opened = warden
                .owned()
                .into_iter()
                .filter_map(|id| {
                    Some(OpenedSession { handle: warden.session(&id)?, adapter: adapters.get(&id)?.clone() })
                })
                .collect();
            return Ok((warden, opened));
        }
        let mut opened = Vec::with_capacity(specs.len());
        for ConfiguredSpec { spec, adapter } in specs {
            match warden.open(spec).await {
                Ok(handle) => opened.push(OpenedSession { handle, adapter }),
                Err(error) => {
                    warden.shutdown(false).await;
                    return Err(error.into());
                }
            }
        }
        Ok((warden, opened))
    }
}
