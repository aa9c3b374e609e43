//! The vocabulary of the session state machine: its configuration, the state names, inputs, outputs,
//! leases and request errors.

use std::sync::Arc;

use crate::class::{AuthFailure, ErrorClass};
use crate::event::{InvalidReason, SessionEvent};
use crate::grant::Grant;
use crate::ids::{AttemptId, Generation, SessionId, WaiterId};
pub use crate::kinds::{AuthKind, StateKind};
use crate::policy::Policy;
use crate::ports::{Capabilities, Durability, KeepaliveStatus};
use crate::secret::Secret;
use crate::stall::Stall;
use crate::time::UnixMs;

/// What a session is fixed with when it is created.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The session's name.
    pub id: SessionId,
    /// Its policy (validated by the caller; [`crate::Policy::validate`]).
    pub policy: Policy,
    /// What its broker supports.
    pub capabilities: Capabilities,
    /// Seed of the jitter generator: the same seed and inputs give the same outputs.
    pub seed: u64,
}

impl SessionConfig {
    /// A configuration with no refresh or keep-alive capability and seed 0.
    pub fn new(id: SessionId, policy: Policy) -> SessionConfig {
        SessionConfig { id, policy, capabilities: Capabilities::default(), seed: 0 }
    }

    /// Sets the broker's capabilities.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> SessionConfig {
        self.capabilities = capabilities;
        self
    }

    /// Sets the jitter seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> SessionConfig {
        self.seed = seed;
        self
    }
}

/// A token that may be used now: the grant, its generation, and until when it may be handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The grant's generation: report it with a rejection.
    pub generation: Generation,
    /// The grant (secrets inside print as `***`).
    pub grant: Arc<Grant>,
    /// After this instant the lease must not be handed out any more.
    pub usable_until: UnixMs,
}

impl Lease {
    /// The access token, for the request about to be sent.
    pub fn token(&self) -> &str {
        self.grant.access_token.expose()
    }
}

/// Why a request for a token got no token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The session gave up; an operator must act.
    #[error("session is invalid: {0}")]
    Invalid(InvalidReason),
    /// No token came within the request timeout; the [`Stall`] says what failed last and what the session
    /// was waiting for.
    #[error("no token within the request timeout{0}")]
    Timeout(Box<Stall>),
    /// The session is logged out.
    #[error("session is stopped (logged out)")]
    Stopped,
    /// Too many requests are already waiting.
    #[error("too many requests waiting for a token (max_waiters = {max_waiters})")]
    Overloaded {
        /// The limit.
        max_waiters: u32,
    },
    /// The session's driver is gone (the session was closed, or its runtime shut down). The core never
    /// says this; drivers do.
    #[error("session is closed")]
    Closed,
    /// This process no longer owns the session (a store shared by several warden processes): its lease
    /// was lost or handed over, and another member runs the session now. Drivers say this.
    #[error("session is not owned by this member any more (its lease was lost or handed over to another member)")]
    NotOwner,
}

/// An input to the session; [`crate::Session::handle`] dispatches it to the matching `handle_*` method.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Input {
    /// Time passed: process every deadline up to now.
    Tick,
    /// A request wants a token (newer than `newer_than`, if given: the caller saw that one rejected).
    Request {
        /// The request's id.
        waiter: WaiterId,
        /// Only a grant newer than this will do.
        newer_than: Option<Generation>,
    },
    /// A waiting request went away (its caller gave up).
    Cancel {
        /// The request's id.
        waiter: WaiterId,
    },
    /// A caller's broker call failed with this class while using this generation.
    Rejected {
        /// The generation the call used.
        generation: Generation,
        /// What the failure means.
        class: ErrorClass,
    },
    /// A login or refresh finished.
    AuthCompleted {
        /// The attempt it answers.
        attempt: AttemptId,
        /// The grant, or why not.
        result: Result<Grant, AuthFailure>,
    },
    /// A keep-alive ping finished.
    KeepaliveCompleted {
        /// The attempt it answers.
        attempt: AttemptId,
        /// What the ping found, or why it failed.
        result: Result<KeepaliveStatus, AuthFailure>,
    },
    /// Requests were served from the published lease since the last report (for the idle timeout).
    Activity,
    /// An operator reset: forget the grant and the failure count, log in again.
    Reset,
    /// New credentials were supplied.
    CredentialsUpdated,
    /// An operator supplied a second factor.
    SecondFactor(Secret),
    /// Log out and stop.
    Logout,
    /// The supervisor gives up on this session.
    GiveUp(InvalidReason),
}

/// An effect for the driver to carry out. Drain [`crate::Session::poll_output`] after every input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Start a full login; answer with [`Input::AuthCompleted`] naming `attempt`.
    Login {
        /// The attempt's id.
        attempt: AttemptId,
        /// Ask the broker to make this login the active one.
        take_over: bool,
        /// A second factor an operator supplied.
        second_factor: Option<Secret>,
    },
    /// Start a refresh-token grant; answer with [`Input::AuthCompleted`] naming `attempt`.
    Refresh {
        /// The attempt's id.
        attempt: AttemptId,
        /// The grant whose refresh token to use.
        grant: Arc<Grant>,
    },
    /// Send a keep-alive ping; answer with [`Input::KeepaliveCompleted`] naming `attempt`.
    Keepalive {
        /// The attempt's id.
        attempt: AttemptId,
        /// The grant to ping with.
        grant: Arc<Grant>,
    },
    /// Log out at the broker (fire and forget; no answer needed).
    Logout {
        /// The grant to end.
        grant: Arc<Grant>,
    },
    /// Replace the lease that the lock-free hot path hands out (`None`: hand out nothing; ask the session).
    Publish(Option<Lease>),
    /// Answer a waiting request with a token.
    Serve {
        /// The request.
        waiter: WaiterId,
        /// The token.
        lease: Lease,
    },
    /// Answer a waiting request with an error.
    Fail {
        /// The request.
        waiter: WaiterId,
        /// Why.
        error: RequestError,
    },
    /// Save [`crate::Session::snapshot`] with this durability.
    Persist {
        /// How durable the write must be.
        durability: Durability,
    },
    /// Tell the world (broadcast, transition log).
    Event(SessionEvent),
}
