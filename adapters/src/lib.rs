//! warden-adapters: the IO edges of warden.
//!
//! This crate implements the engine's ports against the outside world:
//! - the [`Broker`] port over HTTP, one adapter per broker ([`broker`]: Saxo, Interactive Brokers,
//!   Kotak Neo, Zerodha Kite, OAuth 2.0 client credentials), all on one shared [`HttpClient`]; see
//!   `docs/adapters.md`;
//! - [`config`]: the `warden.toml` file (store, sessions, adapter settings, credentials by reference) and
//!   the located, did-you-mean errors shared with the simulator's scenario parser;
//! - the [`Store`] port: [`SledStore`] keeps session snapshots and transition logs on disk in sled,
//!   every record encrypted at rest; [`PostgresStore`] keeps them in PostgreSQL for several processes,
//!   with fenced leases on sessions; [`MemoryStore`] keeps them in memory for tests; [`FaultyStore`]
//!   wraps any of them and fails writes on demand for the simulator. See [`store`] and `docs/store.md`.
//!
//! [`Broker`]: warden_engine::Broker
//! [`Store`]: warden_engine::Store

#![forbid(unsafe_code)]

pub mod broker;
pub mod config;
pub mod store;

pub use broker::{
    AdapterError, ApiRequest, ApiResponse, ClientAuth, HttpClient, HttpSettings, Ibkr, IbkrSettings, Kite,
    KiteSettings, KotakNeo, KotakSettings, OAuth2ClientCredentials, OAuth2Settings, RateAllowance, Saxo, SaxoSettings,
};

pub use store::{
    FaultyStore, FlushPolicy, KEY_ENV_VAR, KeyLookup, KeySource, LOG_STEP_FORMAT_VERSION, MemoryStats, MemoryStore,
    ObservedLifetime, PostgresOptions, PostgresStats, PostgresStore, QuarantineEntry, RECORD_FORMAT_VERSION,
    RecordAddress, RecordCodec, RecordError, SledOptions, SledStore, StoreKey, WallClock, WriteFaults,
    observed_lifetimes,
};
