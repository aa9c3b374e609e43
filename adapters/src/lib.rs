//! warden-adapters: the IO edges of warden.
//!
//! This crate implements the engine's ports against the outside world. Today that is the [`Store`]
//! port: [`SledStore`] keeps session snapshots and transition logs on disk in sled, every record
//! encrypted at rest; [`MemoryStore`] keeps them in memory for tests; [`FaultyStore`] wraps either and
//! fails writes on demand for the simulator. See [`store`] and `docs/store.md`.
//!
//! [`Store`]: warden_engine::Store

#![forbid(unsafe_code)]

pub mod store;

pub use store::{
    FaultyStore, FlushPolicy, KEY_ENV_VAR, KeyLookup, KeySource, LOG_STEP_FORMAT_VERSION, MemoryStats, MemoryStore,
    ObservedLifetime, QuarantineEntry, RECORD_FORMAT_VERSION, RecordAddress, RecordCodec, RecordError, SledOptions,
    SledStore, StoreKey, WallClock, WriteFaults, observed_lifetimes,
};
