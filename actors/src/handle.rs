//! `SessionHandle`: what a strategy holds to use a session.
//!
//! - [`SessionHandle::token`]: the hot path. While the session is `Valid`/`ExpiringSoon` it loads the
//!   published lease from the lock-free cell (no actor involved); otherwise it waits for the session, at
//!   most the policy's `request_timeout`, parked with the session's other waiting requests: one of them
//!   asks the actor for all ([`crate::herd`]).
//! - [`SessionHandle::execute`]: runs a broker call with a lease and applies rule 7: a call the broker
//!   rejected as unauthenticated is reported with its generation and run again with a newer grant (up to
//!   `retry_on_rejection` times); a call that is not idempotent and got no answer (or a gateway's
//!   500/502/504) is returned as [`ExecuteError::OutcomeUnknown`], never retried. The waits before each
//!   attempt's broker call — for a token, then for the account's request rate limit — share one
//!   `request_timeout`, and the lease is checked again after them: a lease that died while the call
//!   waited is never used.
//! - [`SessionHandle::subscribe`]: a watch of the session's status.
//! - operator commands: [`SessionHandle::logout`], [`SessionHandle::reset`],
//!   [`SessionHandle::update_credentials`], [`SessionHandle::supply_second_factor`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ractor::ActorRef;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use warden_engine::limits::Route;
use warden_engine::retry::{AfterFailure, FailedCall, after_failure};
use warden_engine::{
    BrokerError, Credentials, ErrorClass, Generation, Idempotency, Lease, Policy, RequestError, Secret, SessionId,
};

use crate::errors::{ExecuteError, TokenError};
use crate::herd::Next;
use crate::lease::LeaseGuard;
use crate::ratelimit::{limiter_told, limiters_for};
use crate::session_actor::{ACTOR_GRACE, SessionMsg};
use crate::shared::{Counters, SessionShared, SessionStats, SessionStatus, WardenEventKind};

/// A handle on one open session. Cheap to clone; all clones talk to the same session.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    shared: Arc<SessionShared>,
}

impl SessionHandle {
    pub(crate) fn new(shared: Arc<SessionShared>) -> SessionHandle {
        SessionHandle { shared }
    }

    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.shared.id
    }

    /// The session's policy.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The published lease, if the session has one now: lock-free, never waits, never touches the actor.
    /// A lease past its usable end on the clock's coarse reading is not handed out, even if the session's
    /// actor has not withdrawn it yet (after a suspend, say).
    #[inline]
    pub fn try_token(&self) -> Option<LeaseGuard> {
        let coarse_now = self.shared.clock.coarse_now();
        self.shared.lease.load().filter(|lease| coarse_now < lease.usable_until)
    }

    /// The published lease, for looking at (a status page shows its expiry, its age and a fingerprint of
    /// its token): unlike [`SessionHandle::try_token`] it does not count as a use, so the idle timeout does
    /// not see it. Use `token()` for calls.
    pub fn peek_lease(&self) -> Option<Arc<warden_engine::Lease>> {
        self.shared.lease.peek()
    }

    /// A token the broker will accept, or why not.
    ///
    /// Lock-free while the session is `Valid`/`ExpiringSoon`; otherwise waits for the session (a login,
    /// a refresh), at most the policy's `request_timeout`.
    ///
    /// The lease is loaded before the returned future is first polled, so the fast path costs one
    /// lock-free load; only the slow path builds (and boxes) the waiting machinery.
    #[inline(always)]
    pub fn token(&self) -> TokenFuture<'_> {
        match self.try_token() {
            Some(lease) => TokenFuture { state: TokenState::Ready(Some(lease)) },
            None => TokenFuture { state: TokenState::Waiting(Box::pin(self.token_parked(self.deadline()))) },
        }
    }

    /// A token of a generation newer than `generation` (the caller saw that one rejected).
    pub async fn token_newer_than(&self, generation: Generation) -> Result<LeaseGuard, TokenError> {
        self.token_within(Some(generation), self.deadline()).await
    }

    /// A token (newer than `newer_than`, if given), waiting at most until `deadline`.
    async fn token_within(&self, newer_than: Option<Generation>, deadline: Instant) -> Result<LeaseGuard, TokenError> {
        if let Some(lease) = self.try_token().filter(|l| newer_than.is_none_or(|seen| l.generation > seen)) {
            return Ok(lease);
        }
        match newer_than {
            None => self.token_parked(deadline).await,
            Some(_) => self.ask_actor(newer_than, deadline).await.map(LeaseGuard::owned),
        }
    }

    /// The slow path of a request for any token: it parks with the session's other such requests, and one
    /// of them asks the actor for all (see [`crate::herd`]).
    async fn token_parked(&self, deadline: Instant) -> Result<LeaseGuard, TokenError> {
        let max_waiters = self.shared.policy.max_waiters;
        let Some(mut parked) = self.shared.herd().park(max_waiters) else {
            return Err(RequestError::Overloaded { max_waiters });
        };
        loop {
            let notified = parked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(lease) = self.try_token() {
                return Ok(lease);
            }
            let now = self.shared.clock.now();
            match parked.next(|lease| self.shared.is_current(lease, now)) {
                Next::Answer(answer) => return answer.map(LeaseGuard::owned),
                Next::Ask(asking) => {
                    let answer = self.ask_actor(None, deadline).await;
                    asking.share(&answer);
                    return answer.map(LeaseGuard::owned);
                }
                Next::Wait => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(self.timeout());
                    }
                }
            }
        }
    }

    /// A timeout that says why: the session's last failure and what it waits for.
    fn timeout(&self) -> TokenError {
        RequestError::Timeout(Box::new(self.status().stall()))
    }

    /// Asks the actor for a token and waits for its answer (or for a restarted actor) until `deadline`.
    async fn ask_actor(&self, newer_than: Option<Generation>, deadline: Instant) -> Result<Lease, TokenError> {
        loop {
            let actor = self.wait_for_actor(deadline).await?;
            let (reply, answer) = oneshot::channel();
            if actor.cast(SessionMsg::Token { newer_than, reply }).is_err() {
                // The actor died between lookup and send; its successor will answer.
                self.wait_for_actor_change(&actor, deadline).await?;
                continue;
            }
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(result)) => return result,
                // The actor died with the request in its mailbox: ask its successor.
                Ok(Err(_)) => continue,
                Err(_) => return Err(self.timeout()),
            }
        }
    }

    fn deadline(&self) -> Instant {
        self.shared.clock.monotonic_now() + self.shared.policy.request_timeout + ACTOR_GRACE
    }

    /// The current actor, waiting (until `deadline`) while the supervisor restarts it.
    async fn wait_for_actor(&self, deadline: Instant) -> Result<ActorRef<SessionMsg>, TokenError> {
        if let Some(actor) = self.shared.actor().filter(|_| !self.shared.is_closed()) {
            return Ok(actor);
        }
        // Subscribe before looking, so that an actor started in between is not missed.
        let mut started = self.shared.env.actor_started.subscribe();
        loop {
            if self.shared.is_closed() {
                return Err(self.shared.closed_error());
            }
            if let Some(actor) = self.shared.actor() {
                return Ok(actor);
            }
            self.wait_for_a_start(&mut started, deadline).await?;
        }
    }

    /// Waits until the session has an actor other than `dead` (or none, when it is being restarted).
    async fn wait_for_actor_change(&self, dead: &ActorRef<SessionMsg>, deadline: Instant) -> Result<(), TokenError> {
        let mut started = self.shared.env.actor_started.subscribe();
        loop {
            if self.shared.is_closed() {
                return Err(self.shared.closed_error());
            }
            if self.shared.actor().is_none_or(|a| a.get_id() != dead.get_id()) {
                return Ok(());
            }
            self.wait_for_a_start(&mut started, deadline).await?;
        }
    }

    /// Waits (until `deadline`) until any session actor of the `Warden` starts or stops.
    async fn wait_for_a_start(&self, started: &mut watch::Receiver<u64>, deadline: Instant) -> Result<(), TokenError> {
        match tokio::time::timeout_at(deadline, started.changed()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.shared.closed_error()),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Runs a broker call with a token, classifying its error through the broker adapter and retrying
    /// only as rule 7 allows.
    ///
    /// `op` gets a lease for each attempt. Before each attempt's broker call it waits for a token and then
    /// for the account's request rate limit, both within one `request_timeout` (the error says which wait
    /// ran out: [`ExecuteError::Token`] or [`ExecuteError::RateLimited`]); a lease that died during the
    /// waits is replaced by the current one, never used. A rejection (the broker said the token is not
    /// authenticated) is reported with the lease's generation, and `op` runs again with a newer grant, at
    /// most `retry_on_rejection` times — unless the retry's grant was fresh (younger than
    /// `min_grant_age`): then the broker refuses the call, not the token, and the call fails with
    /// [`ExecuteError::FreshTokenRefused`] without another login. A call that is not idempotent and got no
    /// answer, or a gateway's 500/502/504, comes back as [`ExecuteError::OutcomeUnknown`]. Any other error
    /// is returned as it is ([`ExecuteError::Broker`]); it never changes the session's state.
    pub async fn execute<T, F, Fut>(&self, idempotency: Idempotency, op: F) -> Result<T, ExecuteError>
    where
        F: FnMut(LeaseGuard) -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        self.run(None, idempotency, op).await
    }

    /// [`SessionHandle::execute`] for a call on `route` (its HTTP method and path): besides the
    /// account's request rate, each attempt also waits for the limit of every endpoint class of the
    /// broker that the route falls in (`Broker::endpoint_limits`: Saxo's one order a second per
    /// session, IBKR's `/tickle` once a second), within the same `request_timeout`. After each attempt,
    /// what the broker's answer said about the allowance left (`Broker::reported_allowance`) and a 429's
    /// `Retry-After` are told to the limiter of the route's class (or the account's), so requests the
    /// broker counted from elsewhere are respected too.
    ///
    /// ```no_run
    /// # async fn f(handle: warden_actors::SessionHandle, saxo: warden_adapters::broker::saxo::Saxo) {
    /// use warden_adapters::broker::ApiRequest;
    /// use warden_engine::{Idempotency, limits::Route};
    ///
    /// let url = "https://gateway.saxobank.com/sim/openapi/trade/v2/orders";
    /// let route = Route::new("POST", "/sim/openapi/trade/v2/orders");
    /// let body = serde_json::json!({"Amount": 1});
    /// let answer = handle
    ///     .execute_at(route, Idempotency::NonIdempotent, |lease| {
    ///         let request = ApiRequest::post(url).json(body.clone());
    ///         let saxo = &saxo;
    ///         async move { saxo.send(warden_engine::UnixMs::from_millis(0), &lease.grant, request).await }
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn execute_at<T, F, Fut>(
        &self,
        route: Route<'_>,
        idempotency: Idempotency,
        op: F,
    ) -> Result<T, ExecuteError>
    where
        F: FnMut(LeaseGuard) -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        self.run(Some(route), idempotency, op).await
    }

    async fn run<T, F, Fut>(
        &self,
        route: Option<Route<'_>>,
        idempotency: Idempotency,
        mut op: F,
    ) -> Result<T, ExecuteError>
    where
        F: FnMut(LeaseGuard) -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        let policy = &self.shared.policy;
        let mut retries = 0;
        let mut rejected: Option<Generation> = None;
        loop {
            let deadline = self.shared.clock.monotonic_now() + policy.request_timeout;
            let lease = self.lease_for_call(rejected, deadline, route).await?;
            let (generation, issued_at) = (lease.generation, lease.grant.issued_at);
            let grant = route.map(|_| lease.grant.clone());
            let result = op(lease).await;
            if let (Some(route), Some(grant)) = (route, &grant) {
                self.tell_allowance(grant, route);
            }
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let class = self.shared.broker.classify(&error);
            if let ErrorClass::RateLimited { retry_after: Some(wait) } = class
                && let Some(limiter) = limiter_told(&self.shared.class_limiters, self.shared.limiter.as_ref(), route)
            {
                limiter.observe(0, self.shared.clock.monotonic_now() + wait);
            }
            let grant_age = self.shared.clock.now().saturating_duration_since(issued_at);
            let call = FailedCall { class, delivery: error.delivery, idempotency, retries_done: retries, grant_age };
            let decision = after_failure(&call, policy);
            if matches!(class, ErrorClass::AuthExpired | ErrorClass::Competing) && decision.reports_rejection() {
                self.report_rejection(generation, class);
            }
            match decision {
                AfterFailure::RetryWithNewerGrant => {
                    retries += 1;
                    Counters::bump(&self.shared.counters.retries);
                    rejected = Some(generation);
                }
                AfterFailure::OutcomeUnknown => return Err(ExecuteError::OutcomeUnknown(error)),
                AfterFailure::FreshTokenRefused => {
                    Counters::bump(&self.shared.counters.fresh_token_refusals);
                    let grant_age_ms = u64::try_from(grant_age.as_millis()).unwrap_or(u64::MAX);
                    let detail = crate::session_actor::failure_of(self.shared.broker.as_ref(), &error).detail;
                    tracing::warn!(
                        session = %self.shared.id, %generation, grant_age_ms, %detail,
                        "the broker refused a fresh token for a retried call; no login started for it"
                    );
                    let kind = WardenEventKind::FreshTokenRefused { generation, grant_age_ms, detail };
                    self.shared.env.publish(&self.shared.id, self.shared.clock.now(), kind);
                    return Err(ExecuteError::FreshTokenRefused { generation, grant_age, error });
                }
                AfterFailure::Fail => return Err(ExecuteError::Broker { class, error }),
            }
        }
    }

    /// The lease one attempt's broker call starts with: a token (newer than `rejected`, if given), then the
    /// account's request rate limit, all before `deadline`; checked again after the waits, and replaced
    /// if it died meanwhile (its grant revoked, or its usable end passed).
    async fn lease_for_call(
        &self,
        rejected: Option<Generation>,
        deadline: Instant,
        route: Option<Route<'_>>,
    ) -> Result<LeaseGuard, ExecuteError> {
        loop {
            let lease = self.token_within(rejected, deadline).await?;
            for limiter in limiters_for(&self.shared.class_limiters, self.shared.limiter.as_ref(), route) {
                if !limiter.acquire(deadline).await {
                    return Err(ExecuteError::RateLimited {
                        account: limiter.account().to_owned(),
                        request_timeout: self.shared.policy.request_timeout,
                    });
                }
            }
            if self.shared.limiter.is_none() && route.is_none() {
                return Ok(lease);
            }
            if self.shared.is_current(&lease, self.shared.clock.now()) {
                return Ok(lease);
            }
            Counters::bump(&self.shared.counters.stale_after_wait);
        }
    }

    /// Tells the limiter concerned what the broker's last answer to a call with `grant` on `route` said
    /// about the allowance left.
    fn tell_allowance(&self, grant: &warden_engine::Grant, route: Route<'_>) {
        let Some(allowance) = self.shared.broker.reported_allowance(grant, route) else { return };
        let Some(limiter) = limiter_told(&self.shared.class_limiters, self.shared.limiter.as_ref(), Some(route)) else {
            return;
        };
        let (now, resets_at) = (self.shared.clock.now(), allowance.resets_at());
        if resets_at <= now {
            return;
        }
        let left = resets_at.saturating_duration_since(now);
        limiter.observe(allowance.remaining, self.shared.clock.monotonic_now() + left);
    }

    /// Tells the session that the broker rejected a call made with `generation` (fire and forget).
    /// A rejection naming an older generation than the current one is ignored by the session.
    pub fn report_rejection(&self, generation: Generation, class: ErrorClass) {
        Counters::bump(&self.shared.counters.rejections_reported);
        if let Some(actor) = self.shared.actor() {
            // Lost only if the actor is restarting; the next rejection reports it again.
            let _ = actor.cast(SessionMsg::Rejected { generation, class });
        }
    }

    /// A watch of the session's status (state, generation, why invalid).
    pub fn subscribe(&self) -> watch::Receiver<SessionStatus> {
        self.shared.subscribe()
    }

    /// The session's status now.
    pub fn status(&self) -> SessionStatus {
        self.shared.status()
    }

    /// What the runtime has done for this session so far.
    pub fn stats(&self) -> SessionStats {
        self.shared.counters.snapshot()
    }

    /// Logs out at the broker and stops the session (`Stopped`); waits until it is done.
    pub async fn logout(&self) -> Result<(), TokenError> {
        let (reply, done) = oneshot::channel();
        self.send(SessionMsg::Logout { reply }).await?;
        tokio::time::timeout_at(self.deadline(), done)
            .await
            .map_err(|_| self.timeout())?
            .map_err(|_| self.shared.closed_error())
    }

    /// Operator reset: forget the grant and the failure counters, log in again (within the login rate
    /// limit).
    pub async fn reset(&self) -> Result<(), TokenError> {
        self.send(SessionMsg::Reset).await
    }

    /// Replaces the credentials used by the next login; an `Invalid` session tries again.
    pub async fn update_credentials(&self, credentials: Credentials) -> Result<(), TokenError> {
        *crate::shared::lock(&self.shared.credentials) = credentials;
        self.send(SessionMsg::CredentialsUpdated).await
    }

    /// Supplies a second factor (a TOTP code, an SMS code) when the session says `NeedsHuman`.
    pub async fn supply_second_factor(&self, code: Secret) -> Result<(), TokenError> {
        self.send(SessionMsg::SecondFactor(code)).await
    }

    /// Fault injection (tests, the simulator): fails the session actor as a panic would.
    pub async fn inject_failure(&self, why: impl Into<String>) -> Result<(), TokenError> {
        self.send(SessionMsg::Crash(why.into())).await
    }

    /// Sends a message to the current actor, waiting (bounded) while it restarts.
    async fn send(&self, mut message: SessionMsg) -> Result<(), TokenError> {
        let deadline = self.deadline();
        loop {
            let actor = self.wait_for_actor(deadline).await?;
            match actor.cast(message) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    message = match error {
                        ractor::MessagingErr::SendErr(message) => message,
                        _ => return Err(self.shared.closed_error()),
                    };
                    self.wait_for_actor_change(&actor, deadline).await?;
                }
            }
        }
    }
}

/// The future of [`SessionHandle::token`]: ready at once on the hot path, otherwise waiting for the
/// session.
#[must_use = "a token future does nothing unless awaited"]
pub struct TokenFuture<'a> {
    state: TokenState<'a>,
}

type Waiting<'a> = Pin<Box<dyn Future<Output = Result<LeaseGuard, TokenError>> + Send + 'a>>;

enum TokenState<'a> {
    Ready(Option<LeaseGuard>),
    Waiting(Waiting<'a>),
}

impl Future for TokenFuture<'_> {
    type Output = Result<LeaseGuard, TokenError>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            TokenState::Ready(lease) => match lease.take() {
                Some(lease) => Poll::Ready(Ok(lease)),
                // Polled again after it returned the lease: a misuse; answer rather than panic.
                None => Poll::Ready(Err(TokenError::Closed)),
            },
            TokenState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for TokenFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = matches!(self.state, TokenState::Ready(_));
        f.debug_struct("TokenFuture").field("ready", &ready).finish()
    }
}
