//! warden-engine: the sans-IO core of warden.
//!
//! This crate decides everything about one broker session — when to log in, refresh, ping or give up,
//! which token may be handed out and which request must wait — and does nothing else. It is
//! deterministic: it performs no networking, no disk access, reads no clock and spawns nothing. Time is
//! always a parameter (`now: UnixMs`), randomness (jitter) comes from a generator seeded by the caller,
//! and every effect is an [`Output`] value that a driver (warden-actors, the simulator, a test) carries
//! out and answers with another input.
//!
//! The main types:
//! - [`Session`]: the state machine of one broker session, in the shape of quinn-proto's `Connection`:
//!   `handle_*(now, …)` inputs, [`Session::poll_output`] drained until empty after every input, and
//!   [`Session::poll_timeout`] for the next deadline.
//! - [`Policy`]: every tunable, from TOML, with the peer strategies as presets.
//! - [`Grant`], [`Secret`], [`ErrorClass`], [`UnixMs`], [`Generation`], [`SessionId`]: the values.
//! - [`Broker`] and [`Store`]: the ports that adapters implement.
//! - [`Snapshot`]: what a store keeps so that a session resumes after a restart without a new login.
//!
//! ```
//! use warden_engine::{Output, Policy, Session, SessionConfig, SessionId, UnixMs, WaiterId};
//!
//! let config = SessionConfig::new(SessionId::new("demo").unwrap(), Policy::default());
//! let now = UnixMs::from_millis(1_700_000_000_000);
//! let mut session = Session::new(config, now);
//! session.handle_request(now, WaiterId(1), None);
//! // The default (eager) policy starts a login at once; the request waits for it.
//! let outputs: Vec<Output> = std::iter::from_fn(|| session.poll_output()).collect();
//! assert!(outputs.iter().any(|o| matches!(o, Output::Login { .. })));
//! ```

#![forbid(unsafe_code)]

pub mod calendar;
pub mod class;
pub mod event;
pub mod grant;
pub mod ids;
pub mod kinds;
pub mod limits;
pub mod policy;
pub mod ports;
pub mod ratelimit;
pub mod retry;
pub mod rng;
pub mod secret;
pub mod session;
pub mod snapshot;
pub mod stall;
pub mod time;

pub use class::{AuthFailure, ErrorClass};
pub use event::{DeferCause, EventKind, InvalidReason, Reason, SessionEvent};
pub use grant::{Credentials, Grant};
pub use ids::{AttemptId, Fence, Generation, MemberName, MemberNameError, SessionId, SessionIdError, WaiterId};
pub use policy::{
    AfterCutoff, Backoff, DailyCutoff, Mode, OnCompeting, Policy, PolicyError, Preset, Rate, RestartLimit,
};
pub use ports::{
    BoxFuture, Broker, BrokerError, BrokerRequest, Capabilities, Delivery, Durability, HeldLease, KeepaliveStatus,
    LeaseOutcome, LoadOutcome, LoginAttempt, LoginRequest, Pending, Store, StoreError,
};
pub use retry::{AfterFailure, FailedCall, Idempotency};
pub use secret::Secret;
pub use session::{AuthKind, Input, Lease, Output, RequestError, Session, SessionConfig, StateKind};
pub use snapshot::{CredentialsFingerprint, RestoreError, SNAPSHOT_FORMAT_VERSION, Snapshot};
pub use stall::{CallKind, LastFailure, Stall, WaitingFor};
pub use time::UnixMs;
