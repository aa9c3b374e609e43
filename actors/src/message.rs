//! The messages a session actor handles: what its handle, the timers, the committer and its broker-call
//! tasks send it.
//!
//! They sit below both the actor and the state it shares with handles and the supervisor
//! ([`crate::shared`]), so neither module depends on the other for them.

use tokio::sync::oneshot;
use warden_engine::{
    AttemptId, AuthFailure, ErrorClass, Generation, Grant, KeepaliveStatus, Lease, RequestError, Secret, StoreError,
};

/// A message to a session actor.
#[derive(Debug)]
pub(crate) enum SessionMsg {
    /// The timer fired.
    Tick,
    /// A request for a token (the hot path found none to take).
    Token { newer_than: Option<Generation>, reply: oneshot::Sender<Result<Lease, RequestError>> },
    /// A caller's broker call was rejected.
    Rejected { generation: Generation, class: ErrorClass },
    /// A login or refresh call finished.
    AuthDone { attempt: AttemptId, result: Result<Grant, AuthFailure> },
    /// A keep-alive call finished.
    KeepaliveDone { attempt: AttemptId, result: Result<KeepaliveStatus, AuthFailure> },
    /// The flush that covers the actor's durable write `ticket` (and every earlier one) returned.
    Durable { ticket: u64, result: Result<(), StoreError> },
    /// A broker call panicked: the adapter has a bug; fail the actor so that it restarts clean.
    CallPanicked { call: &'static str, detail: String },
    /// Operator reset.
    Reset,
    /// New credentials (already stored on the shared state).
    CredentialsUpdated,
    /// A second factor from an operator.
    SecondFactor(Secret),
    /// Log out; answers when the session is `Stopped`.
    Logout { reply: oneshot::Sender<()> },
    /// Fault injection: fail the actor with this message.
    Crash(String),
    /// This member lost the session's lease (a store shared by several members): stop at once, with no
    /// logout, no revocation and no further write.
    LeaseLost { detail: String },
}
