//! warden-actors: the runtime around warden's session core.
//!
//! Each broker session is a supervised ractor actor driving one [`warden_engine::Session`]: it feeds
//! the core its inputs (timer ticks, token requests, rejections, broker results), carries out the core's
//! outputs (broker calls as tasks off the mailbox, leases into a lock-free cell, snapshots into the
//! store, events onto a broadcast) and re-arms one timer from the core's next deadline.
//!
//! - [`Warden`]: build it, `open` sessions, subscribe to `events`, `shutdown`.
//! - [`SessionHandle`]: `token()` (lock-free while the session is valid), `execute()` (rule 7 retries),
//!   `subscribe()`, `logout()`, `reset()`, `update_credentials()`, `supply_second_factor()`.
//! - [`Warden::from_config`]: a `Warden` and its sessions from a `warden.toml` ([`config`]).
//! - [`stream::Streams`]: WebSockets that follow a session's grant (re-authorised in place or
//!   reconnected make-before-break, subscriptions replayed, gaps reported, heartbeats kept).
//! - [`Clock`]: the one real clock (wall base + tokio's `Instant`, so paused time moves it).
//! - [`commit::GroupCommit`]: one store flush for the durable writes of many sessions.
//! - [`testing::ScriptedBroker`]: a scripted fake broker for tests.
//!
//! See `docs/runtime.md` for the design: supervision, the hot path, rate limits.

#![forbid(unsafe_code)]

mod catch;
pub mod clock;
pub mod cluster;
pub mod commit;
pub mod config;
mod errors;
mod fingerprint;
mod handle;
mod herd;
pub mod lease;
mod message;
pub mod ratelimit;
mod session_actor;
mod shared;
pub mod stream;
mod supervisor;
pub mod testing;
mod timer;
mod warden;

pub use clock::Clock;
pub use config::{ConfiguredSpec, FromConfigError, OpenedSession, load_specs};
pub use errors::{ExecuteError, TokenError, WardenError};
pub use handle::{SessionHandle, TokenFuture};
pub use lease::LeaseGuard;
pub use shared::{SessionStats, SessionStatus, WardenEvent, WardenEventKind};
pub use stream::{StreamEvent, StreamHandle, StreamSettings, StreamSpec, Streams};
pub use warden::{
    DEFAULT_DURABLE_WAIT, DEFAULT_LEASE_TTL, EVENT_CAPACITY, SHARED_POLICIES, SessionSpec, Warden, WardenBuilder,
};
