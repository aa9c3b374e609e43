//! The ports: what the core needs from the outside world, as traits that adapters implement.
//!
//! [`Broker`] talks to a broker (log in, refresh, ping, log out, classify an error, put a grant on a
//! request). [`Store`] keeps [`Snapshot`]s and the transition log, and — for a store that several warden
//! processes share — who owns each session: leases with a fencing number ([`Fence`]), fenced writes,
//! member heartbeats and a shared login-attempt history. The core never calls either: the
//! driver (warden-actors) does, when the session's outputs ask for it. Calls take `now` as a parameter
//! (time is always passed in), and broker futures are boxed so that brokers of different kinds can sit
//! behind one `Arc<dyn Broker>`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::event::SessionEvent;
use crate::grant::{Credentials, Grant};
use crate::ids::{Fence, MemberName, SessionId};
use crate::secret::Secret;
use crate::snapshot::Snapshot;
use crate::time::UnixMs;

/// A boxed, sendable future: the return type of every broker call.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a broker can do beyond logging in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// It has a refresh-token grant (Saxo, OAuth2 with refresh tokens).
    pub refresh: bool,
    /// It needs (and answers) keep-alive pings (IBKR `tickle`).
    pub keepalive: bool,
}

/// How far a failed request got: decides whether a retry could duplicate it (rule 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// It never left (connection refused, rate limited locally): the broker did nothing.
    NotSent,
    /// It left but no answer came (timeout, connection lost): the broker may have executed it.
    Unknown,
    /// The broker answered (with an error status) and did not execute it.
    Answered,
}

/// An error from a broker call, as raw facts; [`Broker::classify`] says what it means.
///
/// The message must not contain secrets: adapters build it from status lines and error codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    /// The HTTP status, if there was a response.
    pub status: Option<u16>,
    /// The broker's own error code (`900901`, `TokenException`), if any.
    pub code: Option<String>,
    /// A description for people.
    pub message: String,
    /// How long the broker asked to wait (`Retry-After`), if it said.
    pub retry_after: Option<Duration>,
    /// How far the request got.
    pub delivery: Delivery,
}

impl BrokerError {
    /// An answered error with an HTTP status.
    ///
    /// A 500, 502 or 504 is an answer from the broker's front (a gateway, a load balancer, a crashed
    /// handler) that says nothing about whether the request was executed behind it: its delivery is
    /// [`Delivery::Unknown`], so a non-idempotent call (an order) that gets one comes back as an unknown
    /// outcome and is never retried. An adapter that knows a particular such answer means "not executed"
    /// marks it with [`BrokerError::not_executed`].
    pub fn http(status: u16, message: impl Into<String>) -> BrokerError {
        let delivery = if matches!(status, 500 | 502 | 504) { Delivery::Unknown } else { Delivery::Answered };
        BrokerError { status: Some(status), code: None, message: message.into(), retry_after: None, delivery }
    }

    /// Marks an answer as one the broker documents as "not executed" (its delivery becomes
    /// [`Delivery::Answered`]), e.g. a 500 whose body carries an order-validation code.
    #[must_use]
    pub fn not_executed(mut self) -> BrokerError {
        self.delivery = Delivery::Answered;
        self
    }

    /// A request that got no answer (timeout, connection lost).
    pub fn no_answer(message: impl Into<String>) -> BrokerError {
        BrokerError {
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
            delivery: Delivery::Unknown,
        }
    }

    /// A request that never left.
    pub fn not_sent(message: impl Into<String>) -> BrokerError {
        BrokerError {
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
            delivery: Delivery::NotSent,
        }
    }

    /// Adds the broker's error code.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> BrokerError {
        self.code = Some(code.into());
        self
    }

    /// Adds a retry-after.
    #[must_use]
    pub fn with_retry_after(mut self, wait: Duration) -> BrokerError {
        self.retry_after = Some(wait);
        self
    }
}

/// What a login call gets.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    /// The session's credentials.
    pub credentials: &'a Credentials,
    /// A second factor an operator supplied, if the last attempt asked for one.
    pub second_factor: Option<&'a Secret>,
    /// Ask the broker to make this login the active one (IBKR `compete: true`).
    pub take_over: bool,
}

/// What a keep-alive ping found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepaliveStatus {
    /// The session is authenticated.
    Alive,
    /// The broker answered, but the session is not authenticated (IBKR: HTTP 200, `authenticated: false`).
    Unauthenticated,
    /// Another login holds the account (IBKR `competing: true`).
    Competing,
}

/// An outgoing broker request, for [`Broker::authorize`] to put the grant on.
#[derive(Debug, Clone, Default)]
pub struct BrokerRequest {
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers to send; values are secrets because authorisation headers are.
    pub headers: Vec<(String, Secret)>,
}

/// A broker, as the runtime sees it.
///
/// Implementations speak one broker's protocol. Every call takes the wall-clock `now` at which it starts
/// (adapters stamp `issued_at` with it: an under-estimate, hence safe) and must finish or fail within the
/// policy's `auth_timeout` (the runtime enforces it too).
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and reports (`saxo`, `ibkr`).
    fn name(&self) -> &str;

    /// What the broker supports besides login.
    fn capabilities(&self) -> Capabilities;

    /// The lifetime of the access tokens this broker issues, if it is known before the first login (Saxo:
    /// 20 minutes). `Warden::open` checks the session's policy against it and warns when the policy cannot
    /// keep such tokens alive (see [`crate::Policy::feasibility`]).
    fn token_lifetime(&self) -> Option<Duration> {
        None
    }

    /// The broker's published request limits per endpoint class (Saxo: one order a second per session).
    /// The runtime limits every class a call's [`crate::limits::Route`] falls in (see
    /// `SessionHandle::execute_at`), besides the policy's account-wide `request_rate`. Empty by default.
    fn endpoint_limits(&self) -> &[crate::limits::EndpointLimit] {
        &[]
    }

    /// What the broker said, in its last answer to a call made with `grant` on `route`'s class, about
    /// the allowance left (its `X-RateLimit-*` headers), so that the runtime's limiter also respects what
    /// the broker counted from elsewhere. `None` (the default) when it said nothing.
    fn reported_allowance(
        &self,
        grant: &Grant,
        route: crate::limits::Route<'_>,
    ) -> Option<crate::limits::ServerAllowance> {
        let _ = (grant, route);
        None
    }

    /// A full login.
    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>>;

    /// A refresh-token grant. Only called when [`Capabilities::refresh`] is set.
    fn refresh<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let _ = (now, grant);
        Box::pin(async { Err(BrokerError::not_sent("this broker has no refresh grant")) })
    }

    /// A keep-alive ping. Only called when [`Capabilities::keepalive`] is set.
    fn keepalive<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<KeepaliveStatus, BrokerError>> {
        let _ = (now, grant);
        Box::pin(async { Ok(KeepaliveStatus::Alive) })
    }

    /// Ends the session at the broker.
    fn logout<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// What an error means. The default reads the HTTP status ([`ErrorClass::from_http_status`]);
    /// brokers with their own codes (Kotak's `900901`) override it.
    fn classify(&self, error: &BrokerError) -> ErrorClass {
        match error.status {
            Some(status) => ErrorClass::from_http_status(status, error.retry_after),
            None => ErrorClass::Transient,
        }
    }

    /// Puts the grant on an outgoing request (a bearer header, a signature, a cookie).
    fn authorize(&self, grant: &Grant, request: &mut BrokerRequest) -> Result<(), BrokerError> {
        request
            .headers
            .push(("Authorization".to_owned(), Secret::new(format!("Bearer {}", grant.access_token.expose()))));
        Ok(())
    }
}

/// How hard a store write must try to reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Written to the store's buffers; flushed in the background.
    Buffered,
    /// On disk before the call returns (a new grant: losing it costs a login).
    Flushed,
}

/// What a write made with [`Store::save_deferred`] still needs before it survives a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pending {
    /// Nothing: it is as durable as this store makes anything (it is in memory, it flushed already, or it
    /// is set to reach the disk only in the background).
    Durable,
    /// It is durable once a [`Store::flush`] that starts after the write has returned `Ok`: one flush
    /// serves the writes of many sessions (group commit).
    Flush,
}

/// What loading a session's snapshot found.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadOutcome {
    /// A snapshot.
    Found(Box<Snapshot>),
    /// Nothing stored for this session.
    Missing,
    /// A record was there but could not be read (or the whole store was unreadable and rebuilt); it was
    /// moved aside, and the session starts fresh.
    Quarantined {
        /// What was wrong with it.
        reason: String,
        /// The login attempts that could still be read from the damaged record, oldest first; `None`
        /// when none could: the session then allows one login at once and the policy's `login_rate`
        /// from then on, so a damaged store cannot become a lock-out.
        login_attempts: Option<Vec<UnixMs>>,
    },
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the database.
    #[error("store at {path} is locked by another process (one process per database): {detail}")]
    Locked {
        /// The database path.
        path: String,
        /// The underlying error.
        detail: String,
    },
    /// The database could not be opened or written.
    #[error("store at {path}: {detail}")]
    Io {
        /// The database path.
        path: String,
        /// The underlying error.
        detail: String,
    },
    /// The encryption key is missing or malformed.
    #[error("store key: {detail}")]
    Key {
        /// What is wrong with the key.
        detail: String,
    },
    /// A record could not be encoded.
    #[error("store record for session {session}: {detail}")]
    Encode {
        /// The session.
        session: String,
        /// What failed.
        detail: String,
    },
    /// The store refused the write (simulated or real fault).
    #[error("store write failed: {detail}")]
    WriteFailed {
        /// What failed.
        detail: String,
    },
    /// A write, a login attempt or a lease renewal under `fence` was refused: that fence no longer holds
    /// the session's lease (a newer owner holds `current`, or the lease expired or was released). The
    /// caller has lost the session: it must stop writing and logging in for it.
    #[error("session {session}: fence {fence} no longer holds the lease (the current fence is {current})")]
    Fenced {
        /// The session.
        session: String,
        /// The fence the caller wrote under.
        fence: Fence,
        /// The fence the store holds for the session now ([`Fence::NONE`] if none was ever granted).
        current: Fence,
    },
}

/// A lease on a session that a member holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    /// The session.
    pub session: SessionId,
    /// Its fencing number: every write and login for the session carries it.
    pub fence: Fence,
    /// When it lapses unless renewed (the `now` of the call plus its TTL).
    pub expires_at: UnixMs,
}

/// What [`Store::acquire_lease`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseOutcome {
    /// The lease is the caller's, under a fence larger than any granted before on this session.
    Granted(HeldLease),
    /// Another member holds it until `expires_at`.
    Held {
        /// The member that holds it.
        holder: MemberName,
        /// Its fence.
        fence: Fence,
        /// When it lapses unless renewed.
        expires_at: UnixMs,
    },
}

/// A login attempt recorded in a store shared by several members (see [`Store::record_login_attempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// When it started.
    pub at: UnixMs,
    /// The fence of the owner that made it.
    pub fence: Fence,
}

/// Keeps snapshots and transition logs. Implementations must never panic on stored bytes: a record
/// that does not decrypt or decode is quarantined and reported as [`LoadOutcome::Quarantined`].
pub trait Store: Send + Sync + 'static {
    /// The latest snapshot of a session.
    fn load(&self, session: &SessionId) -> Result<LoadOutcome, StoreError>;
    /// Replaces a session's snapshot.
    fn save(&self, snapshot: &Snapshot, durability: Durability) -> Result<(), StoreError>;
    /// Replaces a session's snapshot that must survive a crash ([`Durability::Flushed`]) without waiting
    /// for the disk: the caller learns what is still needed ([`Pending`]) and arranges the flush, so that
    /// one flush serves many sessions. The default saves with `Flushed` and answers `Durable`.
    fn save_deferred(&self, snapshot: &Snapshot) -> Result<Pending, StoreError> {
        self.save(snapshot, Durability::Flushed).map(|()| Pending::Durable)
    }
    /// Appends to a session's transition log (the oldest entries beyond the retention cap are dropped).
    fn append_log(&self, session: &SessionId, event: &SessionEvent) -> Result<(), StoreError>;
    /// Appends several entries to a session's transition log, in order (one write where the store can).
    /// The default appends them one by one.
    fn append_logs(&self, session: &SessionId, events: &[SessionEvent]) -> Result<(), StoreError> {
        events.iter().try_for_each(|event| self.append_log(session, event))
    }
    /// The newest `limit` log entries of a session, oldest first.
    fn read_log(&self, session: &SessionId, limit: usize) -> Result<Vec<SessionEvent>, StoreError>;
    /// Forgets a session (snapshot and log).
    fn remove(&self, session: &SessionId) -> Result<(), StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    // Ownership. A store that several processes share (`is_shared`) grants leases with fencing numbers
    // and refuses writes under a fence that no longer holds the lease; a store with one owner (the
    // in-process stores) keeps the defaults below: every lease is granted under `Fence::SINGLE_OWNER`,
    // never lapses, and fenced writes are plain writes. Time is a parameter (`now`): members' clocks
    // decide when leases lapse, never whether a stale write lands — the fence decides that.

    /// Whether other processes share this store: then leases are real, every write of a session must carry
    /// its fence (the `_fenced` methods) and leases lapse unless renewed. `false` by default.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes the lease on `session` for `member` until `now + ttl`, when it is free, lapsed, released, or
    /// already `member`'s: each grant gets a fence larger than any before on this session (a member that
    /// acquires again fences out its own older holder). The default grants [`Fence::SINGLE_OWNER`].
    fn acquire_lease(
        &self,
        session: &SessionId,
        member: &MemberName,
        ttl: Duration,
        now: UnixMs,
    ) -> Result<LeaseOutcome, StoreError> {
        let _ = member;
        Ok(LeaseOutcome::Granted(HeldLease {
            session: session.clone(),
            fence: Fence::SINGLE_OWNER,
            expires_at: now.saturating_add(ttl),
        }))
    }

    /// Extends `member`'s lease under `fence` to `now + ttl` and returns the new expiry; a lease that
    /// lapsed, was released or was taken is not renewed ([`StoreError::Fenced`]): acquire it again.
    fn renew_lease(
        &self,
        session: &SessionId,
        member: &MemberName,
        fence: Fence,
        ttl: Duration,
        now: UnixMs,
    ) -> Result<UnixMs, StoreError> {
        let _ = (session, member, fence);
        Ok(now.saturating_add(ttl))
    }

    /// Extends every unexpired lease of `member` to `now + ttl` at once (one statement, not one per
    /// session) and returns the leases renewed: one the member thought it held and that is not among them
    /// is lost. A single-owner store keeps no lease table and returns none: its leases never lapse.
    fn renew_all(&self, member: &MemberName, ttl: Duration, now: UnixMs) -> Result<Vec<HeldLease>, StoreError> {
        let _ = (member, ttl, now);
        Ok(Vec::new())
    }

    /// Gives the lease up (a session handed over on purpose): the next acquire by anyone succeeds at once,
    /// with a larger fence. Writes queued before the call are committed first; writes under `fence` after
    /// it are refused. Releasing a lease that is no longer held is not an error.
    fn release_lease(&self, session: &SessionId, member: &MemberName, fence: Fence) -> Result<(), StoreError> {
        let _ = (session, member, fence);
        Ok(())
    }

    /// Replaces a session's snapshot, only while `fence` holds its lease ([`StoreError::Fenced`] if not).
    /// The default ignores the fence.
    fn save_fenced(&self, snapshot: &Snapshot, durability: Durability, fence: Fence) -> Result<(), StoreError> {
        let _ = fence;
        self.save(snapshot, durability)
    }

    /// [`Store::save_deferred`] under a fence. A refusal can be known only when the write commits: after
    /// the flush that covers it, ask [`Store::fence_status`]. The default ignores the fence.
    fn save_deferred_fenced(&self, snapshot: &Snapshot, fence: Fence) -> Result<Pending, StoreError> {
        let _ = fence;
        self.save_deferred(snapshot)
    }

    /// [`Store::append_logs`] under a fence (refused as [`Store::save_fenced`] is). The default ignores
    /// the fence.
    fn append_logs_fenced(&self, session: &SessionId, events: &[SessionEvent], fence: Fence) -> Result<(), StoreError> {
        let _ = fence;
        self.append_logs(session, events)
    }

    /// `Err(StoreError::Fenced)` once a write of `session` under `fence` (or an older fence) was refused:
    /// what a caller of [`Store::save_deferred_fenced`] checks after the flush, since one flush serves many
    /// sessions and returns `Ok` when every write it covers was committed or refused. `Ok` by default.
    fn fence_status(&self, session: &SessionId, fence: Fence) -> Result<(), StoreError> {
        let _ = (session, fence);
        Ok(())
    }

    /// Registers `member` as live until `now + ttl`, or extends it (the heartbeat). No-op by default.
    fn heartbeat_member(&self, member: &MemberName, ttl: Duration, now: UnixMs) -> Result<(), StoreError> {
        let _ = (member, ttl, now);
        Ok(())
    }

    /// Takes `member` out of the live members at once (a clean shutdown). No-op by default.
    fn leave_member(&self, member: &MemberName) -> Result<(), StoreError> {
        let _ = member;
        Ok(())
    }

    /// The members whose heartbeat has not lapsed at `now`, sorted by name. None by default (a single
    /// owner places every session on itself).
    fn live_members(&self, now: UnixMs) -> Result<Vec<MemberName>, StoreError> {
        let _ = now;
        Ok(Vec::new())
    }

    /// Records, durably and before the broker call, that the owner under `fence` starts a login for
    /// `session` at `at`; refused ([`StoreError::Fenced`]) when `fence` no longer holds the lease, so a
    /// member that lost the session does not log in. All members see the history
    /// ([`Store::login_attempts`]). A single-owner store keeps the history in the snapshot instead: no-op
    /// by default.
    fn record_login_attempt(&self, session: &SessionId, fence: Fence, at: UnixMs) -> Result<(), StoreError> {
        let _ = (session, fence, at);
        Ok(())
    }

    /// The newest `limit` login attempts recorded for `session` by any member, oldest first (the last is
    /// the latest, with the fence that made it). None by default.
    fn login_attempts(&self, session: &SessionId, limit: usize) -> Result<Vec<LoginAttempt>, StoreError> {
        let _ = (session, limit);
        Ok(Vec::new())
    }
}
