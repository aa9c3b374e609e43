//! The `Store` port's adapters: where session snapshots and transition logs live.
//!
//! - [`SledStore`]: the real one, on disk in sled, every record encrypted with XChaCha20-Poly1305.
//! - [`MemoryStore`]: in memory, for tests and runs without persistence.
//! - [`PostgresStore`]: in PostgreSQL, shared by several warden processes, each session owned by one of
//!   them under a fenced lease; records sealed as in sled.
//! - [`FaultyStore`]: wraps any of them and fails writes on demand (the simulator's store faults).
//!
//! The pieces: [`key`] (where the encryption key comes from), [`record`] (the bytes of a record),
//! [`lifetimes`] (observed token lifetimes from the log), and inside [`sled_store`]: opening the files
//! and moving an unreadable database aside ([`sled_store::open`]), lost, changed and rotated keys
//! ([`sled_store::keys`]), the list of sessions that have saved ([`sled_store::known`]).
//! `docs/store.md` explains the format, the recovery rules and the limits.

pub mod faulty;
pub mod key;
pub mod lifetimes;
pub mod memory;
pub mod postgres;
pub mod record;
pub mod sled_store;

pub use faulty::{FaultyStore, WriteFaults};
pub use key::{KEY_ENV_VAR, KeyLookup, KeySource, StoreKey};
pub use lifetimes::{ObservedLifetime, observed_lifetimes};
pub use memory::{MemoryStats, MemoryStore};
pub use postgres::{PostgresOptions, PostgresStats, PostgresStore};
pub use record::{LOG_STEP_FORMAT_VERSION, RECORD_FORMAT_VERSION, RecordAddress, RecordCodec, RecordError};
pub use sled_store::{FlushPolicy, QuarantineEntry, SledOptions, SledStore, WallClock};
