//! The session state machine: one broker session, as a pure value.
//!
//! Shaped like quinn-proto's `Connection`. A driver calls, in this order:
//!
//! 1. one input: `handle_*(now, …)` (or [`Session::handle`] with an [`Input`]);
//! 2. [`Session::poll_output`] until it returns `None`, carrying out each [`Output`] (start a login, answer
//!    a waiter, publish a lease, persist, emit an event);
//! 3. [`Session::poll_timeout`], and arranges a [`Session::handle_tick`] at that instant.
//!
//! Invariants after every input (the property tests check them):
//! - a token is handed out (by `Serve` or `Publish`) only in `Valid`/`ExpiringSoon`, before its expiry
//!   minus `expiry_margin`, before the daily cut-off after its login, and never for a generation the
//!   broker rejected;
//! - at most one login or refresh is in flight, and at most one keep-alive;
//! - every request is answered exactly once (`Serve` or `Fail`), unless its caller cancels it;
//! - logins obey the login rate limit, counted across restarts;
//! - `poll_timeout()` is later than the last `now` (a driver never spins).
//!
//! Every input first processes the deadlines that are due, so a late tick can never let a dead token
//! through. `now` may go backwards (a wall-clock step); the session then keeps its last `now`.

mod types;
mod waiters;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub use types::{AuthKind, Input, Lease, Output, RequestError, SessionConfig, StateKind};
use waiters::{Waiter, Waiters};

use crate::calendar::next_local_time_after;
use crate::class::{AuthFailure, ErrorClass};
use crate::event::{DeferCause, EventKind, InvalidReason, Reason, SessionEvent};
use crate::grant::Grant;
use crate::ids::{AttemptId, Generation, SessionId, WaiterId};
use crate::policy::{AfterCutoff, Mode, OnCompeting, Policy};
use crate::ports::{Capabilities, Durability, KeepaliveStatus};
use crate::ratelimit::LoginHistory;
use crate::rng::SplitMix64;
use crate::secret::Secret;
use crate::snapshot::{CredentialsFingerprint, RestoreError, SNAPSHOT_FORMAT_VERSION, Snapshot, StoredGrant};
use crate::stall::{CallKind, LastFailure, Stall, WaitingFor};
use crate::time::UnixMs;

/// A state with the data valid in it.
///
/// The login/refresh and keep-alive calls in flight are kept on the session, not in a state: a call
/// outlives the state that started it (a rejection can turn `ExpiringSoon` into `Reinitializing` while
/// the refresh is still out), and keeping one slot for each is what makes single flight structural.
#[derive(Clone, Debug)]
enum State {
    /// The first login is in flight.
    Initializing,
    /// The grant is usable; nothing is due before `Active`'s deadlines.
    Valid(Active),
    /// The grant is usable and a new one is wanted: a call is in flight or waits for its gate.
    ExpiringSoon(Active),
    /// Nothing usable, nothing wanted yet.
    Expired {
        /// When an eager session logs in again after a daily cut-off.
        warmup_at: Option<UnixMs>,
    },
    /// Nothing usable; a grant is wanted: a call is in flight or waits for its gate.
    Reinitializing,
    /// Gave up until an operator acts.
    Invalid(InvalidReason),
    /// Logged out.
    Stopped,
}

impl State {
    fn kind(&self) -> StateKind {
        match self {
            State::Initializing => StateKind::Initializing,
            State::Valid(_) => StateKind::Valid,
            State::ExpiringSoon(_) => StateKind::ExpiringSoon,
            State::Expired { .. } => StateKind::Expired,
            State::Reinitializing => StateKind::Reinitializing,
            State::Invalid(_) => StateKind::Invalid,
            State::Stopped => StateKind::Stopped,
        }
    }

    fn active(&self) -> Option<&Active> {
        match self {
            State::Valid(a) | State::ExpiringSoon(a) => Some(a),
            _ => None,
        }
    }

    fn active_mut(&mut self) -> Option<&mut Active> {
        match self {
            State::Valid(a) | State::ExpiringSoon(a) => Some(a),
            _ => None,
        }
    }

    /// Whether the session wants a new grant (and so starts a call when its gate opens).
    fn wants_grant(&self) -> bool {
        matches!(self, State::ExpiringSoon(_) | State::Reinitializing | State::Initializing)
    }
}

/// The deadlines of a usable grant, computed when it is installed.
#[derive(Clone, Copy, Debug)]
struct Active {
    /// Not handed out from here on.
    usable_until: UnixMs,
    /// Why it ends then (token expiry or daily cut-off).
    until_reason: ReasonCode,
    /// When to start replacing it, and why.
    refresh_at: Option<(UnixMs, ReasonCode)>,
    /// From here on, a request that reaches the session starts a refresh.
    lazy_at: Option<UnixMs>,
    /// The next keep-alive ping.
    keepalive_at: Option<UnixMs>,
    /// Failed pings in a row.
    keepalive_failures: u32,
}

/// The reasons a deadline can carry (a `Copy` subset of [`Reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReasonCode {
    TokenExpired,
    DailyCutoff,
    RefreshDue,
    SessionAgeReached,
}

impl From<ReasonCode> for Reason {
    fn from(code: ReasonCode) -> Reason {
        match code {
            ReasonCode::TokenExpired => Reason::TokenExpired,
            ReasonCode::DailyCutoff => Reason::DailyCutoff,
            ReasonCode::RefreshDue => Reason::RefreshDue,
            ReasonCode::SessionAgeReached => Reason::SessionAgeReached,
        }
    }
}

/// The current grant and what is known about it.
#[derive(Clone, Debug)]
struct Installed {
    grant: Arc<Grant>,
    generation: Generation,
    logged_in_at: UnixMs,
    access_dead: bool,
    refresh_dead: bool,
}

/// One broker session. See the module documentation for the driving protocol.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    policy: Policy,
    capabilities: Capabilities,
    state: State,
    installed: Option<Installed>,
    /// The newest generation handed out; survives the grant (generations never repeat).
    generation: Generation,
    auth_in_flight: Option<(AttemptId, AuthKind)>,
    /// When the login or refresh in flight started.
    auth_started_at: UnixMs,
    /// The last failed login, refresh or keep-alive since the last grant (what a timed-out request is
    /// told).
    last_failure: Option<LastFailure>,
    /// With `after_cutoff = "operator"`: the last login or operator action; a cut-off after it blocks
    /// automatic logins.
    operator_anchor: UnixMs,
    /// The fingerprint of the credentials the session runs with (set by the driver, persisted).
    credentials_fingerprint: Option<CredentialsFingerprint>,
    /// The policy-feasibility warning was given.
    warned: bool,
    /// The keep-alive in flight and the generation of the grant it pings.
    keepalive_in_flight: Option<(AttemptId, Generation)>,
    waiters: Waiters,
    history: LoginHistory,
    failures: u32,
    rejections: u32,
    retry_not_before: UnixMs,
    retry_cause: DeferCause,
    /// The next grant must come from a full login (session age reached, taking over).
    force_login: bool,
    take_over: bool,
    second_factor: Option<Secret>,
    next_attempt: u64,
    last_activity: UnixMs,
    last_now: UnixMs,
    /// What the hot path currently hands out: generation and until when.
    published: Option<(Generation, UnixMs)>,
    dirty: Option<Durability>,
    rng: SplitMix64,
    out: VecDeque<Output>,
}

impl Session {
    // ----- construction -------------------------------------------------------------------------

    fn blank(config: SessionConfig, now: UnixMs) -> Session {
        Session {
            id: config.id,
            policy: config.policy,
            capabilities: config.capabilities,
            state: State::Expired { warmup_at: None },
            installed: None,
            generation: Generation::NONE,
            auth_in_flight: None,
            auth_started_at: now,
            last_failure: None,
            operator_anchor: now,
            credentials_fingerprint: None,
            warned: false,
            keepalive_in_flight: None,
            waiters: Waiters::default(),
            history: LoginHistory::default(),
            failures: 0,
            rejections: 0,
            retry_not_before: now,
            retry_cause: DeferCause::Backoff,
            force_login: false,
            take_over: false,
            second_factor: None,
            next_attempt: 1,
            last_activity: now,
            last_now: now,
            published: None,
            dirty: None,
            rng: SplitMix64::new(config.seed),
            out: VecDeque::new(),
        }
    }

    /// A new session with no grant. An eager policy starts the first login at once (`Initializing`); a
    /// lazy one waits for the first request (`Expired`).
    pub fn new(config: SessionConfig, now: UnixMs) -> Session {
        let mut s = Session::blank(config, now);
        if s.policy.mode == Mode::Eager {
            s.state = State::Initializing;
            s.start_auth(now);
        }
        s.mark_dirty(Durability::Buffered);
        s.finish(now);
        s
    }

    /// A new session whose stored record was lost (damaged, or the store was rebuilt): like
    /// [`Session::new`], with the login attempts that could be salvaged, or — when none could — a history
    /// that allows one login at once and the policy's `login_rate` from then on.
    pub fn recover(config: SessionConfig, now: UnixMs, login_attempts: Option<Vec<UnixMs>>) -> Session {
        let mut s = Session::blank(config, now);
        s.history = match login_attempts {
            Some(attempts) => LoginHistory::from_attempts(attempts),
            None => LoginHistory::assume_spent(now, s.policy.login_rate),
        };
        if s.policy.mode == Mode::Eager {
            s.state = State::Initializing;
            s.want_grant(now);
        }
        s.mark_dirty(Durability::Buffered);
        s.finish(now);
        s
    }

    /// A session resumed from a snapshot: a grant still usable at `now` gives `Valid` (no login); an
    /// unusable one gives `Expired` (lazy) or `Reinitializing` (eager); `Invalid` stays `Invalid`.
    pub fn restore(config: SessionConfig, snapshot: Snapshot, now: UnixMs) -> Result<Session, RestoreError> {
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(RestoreError::UnsupportedVersion {
                session: snapshot.session_id.to_string(),
                found: snapshot.format_version,
                supported: SNAPSHOT_FORMAT_VERSION,
            });
        }
        if snapshot.session_id != config.id {
            return Err(RestoreError::WrongSession {
                expected: config.id.to_string(),
                found: snapshot.session_id.to_string(),
            });
        }
        let mut s = Session::blank(config, now);
        let now = now.max(snapshot.saved_at);
        s.last_now = now;
        s.generation = snapshot.generation;
        s.history = LoginHistory::from_attempts(snapshot.login_attempts);
        s.failures = snapshot.consecutive_failures;
        s.rejections = snapshot.consecutive_rejections;
        s.retry_not_before = snapshot.retry_not_before;
        s.take_over = snapshot.take_over;
        s.force_login = snapshot.force_login;
        s.credentials_fingerprint = snapshot.credentials_fingerprint;
        // A snapshot from before `after_cutoff = "operator"` was set: the last login, else the save.
        s.operator_anchor =
            snapshot.operator_anchor.or(snapshot.grant.as_ref().map(|g| g.logged_in_at)).unwrap_or(snapshot.saved_at);
        // Idleness counts from the restart: the stored time only knows the requests the session saw itself,
        // not those served from the published lease since (the runtime reports those lazily), so judging
        // idleness by it would let a busy session lapse across a restart.
        s.last_activity = now;
        s.installed = snapshot.grant.map(|g| Installed {
            grant: Arc::new(g.grant),
            generation: g.generation,
            logged_in_at: g.logged_in_at,
            access_dead: g.access_dead,
            refresh_dead: g.refresh_dead,
        });
        let to = match (snapshot.state, snapshot.invalid_reason) {
            // Giving up after a crash loop lasts as long as its cause: this process's actor. A new process
            // has a fresh restart budget and reuses the grant kept for it.
            (StateKind::Invalid, Some(InvalidReason::RestartLimit { .. })) => match s.usable_installed() {
                Some(_) => State::Valid(s.compute_active(now)),
                None => State::Expired { warmup_at: s.warmup_after(now, &Reason::Restored) },
            },
            (StateKind::Invalid, reason) => {
                let reason = reason.unwrap_or(InvalidReason::FailureBudgetSpent { failures: s.rejections });
                s.installed = None;
                State::Invalid(reason)
            }
            _ => match s.usable_installed() {
                Some(_) => State::Valid(s.compute_active(now)),
                None => State::Expired { warmup_at: s.warmup_after(now, &Reason::Restored) },
            },
        };
        s.state = to;
        s.emit(now, EventKind::StateChanged { from: snapshot.state, to: s.state.kind(), reason: Reason::Restored });
        // Deadlines that passed while the process was down take effect now (expiry, cut-off, refresh).
        s.process_deadlines(now);
        // By mode: an eager session logs in now, whatever ended its grant while the process was down
        // (unless it had idled out, or it is between a daily cut-off and its warm-up time).
        if s.pending_warmup(now).is_none() {
            s.wake_eager(now);
        }
        s.mark_dirty(Durability::Buffered);
        s.finish(now);
        Ok(s)
    }

    // ----- getters ------------------------------------------------------------------------------

    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The policy it runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The current state.
    pub fn state(&self) -> StateKind {
        self.state.kind()
    }

    /// Why the session gave up, when it is `Invalid`.
    pub fn invalid_reason(&self) -> Option<&InvalidReason> {
        match &self.state {
            State::Invalid(reason) => Some(reason),
            _ => None,
        }
    }

    /// The newest generation handed out.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The token a request would get now, if any (as of the last input).
    pub fn lease(&self) -> Option<Lease> {
        let active = self.state.active()?;
        let installed = self.installed.as_ref().filter(|i| !i.access_dead)?;
        Some(Lease {
            generation: installed.generation,
            grant: installed.grant.clone(),
            usable_until: active.usable_until,
        })
    }

    /// Requests waiting for a token.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Whether a login or refresh is in flight.
    pub fn auth_in_flight(&self) -> Option<(AttemptId, AuthKind)> {
        self.auth_in_flight
    }

    /// Whether a keep-alive is in flight.
    pub fn keepalive_in_flight(&self) -> Option<AttemptId> {
        self.keepalive_in_flight.map(|(attempt, _)| attempt)
    }

    /// Recent login attempts, oldest first.
    pub fn login_attempts(&self) -> impl Iterator<Item = UnixMs> + '_ {
        self.history.attempts()
    }

    /// The persisted form of the session as of the last input.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            session_id: self.id.clone(),
            saved_at: self.last_now,
            state: self.state.kind(),
            invalid_reason: self.invalid_reason().cloned(),
            generation: self.generation,
            grant: self.installed.as_ref().map(|i| StoredGrant {
                grant: Grant::clone(&i.grant),
                generation: i.generation,
                logged_in_at: i.logged_in_at,
                access_dead: i.access_dead,
                refresh_dead: i.refresh_dead,
            }),
            login_attempts: self.history.attempts().collect(),
            consecutive_failures: self.failures,
            consecutive_rejections: self.rejections,
            retry_not_before: self.retry_not_before,
            take_over: self.take_over,
            force_login: self.force_login,
            last_activity: self.last_activity,
            credentials_fingerprint: self.credentials_fingerprint.clone(),
            operator_anchor: (self.policy.after_cutoff == AfterCutoff::Operator).then_some(self.operator_anchor),
        }
    }

    /// Why the session has no token to give now: the last failure since the last grant, and what it
    /// waits for (as of the last input). Empty while a grant is usable and nothing failed.
    pub fn stall(&self) -> Stall {
        let waiting_for = match (&self.state, self.auth_in_flight) {
            (_, Some((_, kind))) => Some(WaitingFor::Call { kind, since: self.auth_started_at }),
            (State::Expired { warmup_at: Some(at) }, None) => Some(WaitingFor::Warmup { at: *at }),
            (state, None) if state.wants_grant() => {
                let (at, cause) = self.gate(self.last_now);
                Some(WaitingFor::Attempt { kind: self.next_auth_kind(self.last_now), at, cause })
            }
            _ => None,
        };
        Stall { last_failure: self.last_failure.clone(), waiting_for }
    }

    /// The fingerprint of the credentials the session runs with, as last set.
    pub fn credentials_fingerprint(&self) -> Option<&CredentialsFingerprint> {
        self.credentials_fingerprint.as_ref()
    }

    // ----- outputs ------------------------------------------------------------------------------

    /// The next effect to carry out; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.out.pop_front();
        if output.is_none() && self.out.capacity() > 0 {
            // Drained: give the buffer back (a runtime holds many idle sessions; a step's outputs are few).
            self.out = VecDeque::new();
        }
        output
    }

    /// The next instant at which [`Session::handle_tick`] has work, if any. Always later than the last
    /// `now` given.
    pub fn poll_timeout(&self) -> Option<UnixMs> {
        let mut next = self.waiters.earliest_deadline();
        let mut consider = |t: Option<UnixMs>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        match &self.state {
            State::Valid(a) | State::ExpiringSoon(a) => {
                consider(Some(a.usable_until));
                consider(self.idle_at());
                if matches!(self.state, State::Valid(_)) {
                    consider(a.refresh_at.map(|(t, _)| t));
                }
                if let Some((_, until)) = self.published {
                    consider(Some(until));
                }
                if self.keepalive_in_flight.is_none() && self.auth_in_flight.is_none() {
                    consider(a.keepalive_at);
                }
            }
            State::Expired { warmup_at, .. } => consider(*warmup_at),
            _ => {}
        }
        if matches!(self.state, State::Expired { .. } | State::Reinitializing | State::Initializing) {
            consider(self.operator_cutoff());
        }
        if self.state.wants_grant() && self.auth_in_flight.is_none() {
            consider(Some(self.gate(self.last_now).0));
        }
        // `UnixMs::MAX` means "never" (a grant without expiry or cut-off): not a deadline to arm.
        let next = next.filter(|t| *t != UnixMs::MAX);
        debug_assert!(next.is_none_or(|t| t > self.last_now), "poll_timeout {next:?} not after {}", self.last_now);
        next
    }

    // ----- inputs -------------------------------------------------------------------------------

    /// Dispatches an [`Input`] to its `handle_*` method.
    pub fn handle(&mut self, now: UnixMs, input: Input) {
        match input {
            Input::Tick => self.handle_tick(now),
            Input::Request { waiter, newer_than } => self.handle_request(now, waiter, newer_than),
            Input::Cancel { waiter } => self.handle_cancel(now, waiter),
            Input::Rejected { generation, class } => self.handle_rejected(now, generation, class),
            Input::AuthCompleted { attempt, result } => self.handle_auth_completed(now, attempt, result),
            Input::KeepaliveCompleted { attempt, result } => self.handle_keepalive_completed(now, attempt, result),
            Input::Activity => self.handle_activity(now),
            Input::Reset => self.handle_reset(now),
            Input::CredentialsUpdated => self.handle_credentials_updated(now),
            Input::SecondFactor(code) => self.handle_second_factor(now, code),
            Input::Logout => self.handle_logout(now),
            Input::GiveUp(reason) => self.handle_give_up(now, reason),
        }
    }

    /// Time passed: processes every deadline up to `now`. An extra call is a harmless no-op.
    pub fn handle_tick(&mut self, now: UnixMs) {
        let now = self.enter(now);
        self.finish(now);
    }

    /// A request wants a token. It is answered at once (a token, or an error when the session is
    /// `Invalid`/`Stopped` or the waiter table is full) or when a grant arrives or its deadline passes.
    /// `newer_than` names a generation the caller saw rejected: only a newer grant will do.
    pub fn handle_request(&mut self, now: UnixMs, waiter: WaiterId, newer_than: Option<Generation>) {
        let now = self.enter(now);
        self.last_activity = now;
        if self.waiters.contains(waiter) {
            debug_assert!(false, "waiter {waiter:?} is already waiting");
            self.finish(now);
            return;
        }
        match &self.state {
            State::Stopped => self.out.push_back(Output::Fail { waiter, error: RequestError::Stopped }),
            State::Invalid(reason) => {
                let error = RequestError::Invalid(reason.clone());
                self.out.push_back(Output::Fail { waiter, error });
                if let Some(seen) = newer_than {
                    self.kept_grant_rejected(seen, ErrorClass::AuthExpired);
                }
            }
            State::Valid(_) | State::ExpiringSoon(_) => {
                let current = self.installed.as_ref().map_or(Generation::NONE, |i| i.generation);
                match newer_than {
                    Some(seen) if seen >= current => {
                        self.enqueue(now, waiter, newer_than);
                        if seen == current {
                            // The caller saw the current grant rejected: the same as a rejection.
                            self.expire(now, Reason::Rejected);
                        }
                    }
                    _ => {
                        if let Some(lease) = self.lease() {
                            self.out.push_back(Output::Serve { waiter, lease });
                        }
                        if let State::Valid(active) = &self.state
                            && active.lazy_at.is_some_and(|t| now >= t)
                        {
                            self.begin_replacement(now, Reason::LazyRefresh);
                        }
                    }
                }
            }
            State::Expired { .. } => {
                self.enqueue(now, waiter, newer_than);
                self.transition(now, State::Reinitializing, Reason::Demand);
                self.want_grant(now);
            }
            State::Initializing | State::Reinitializing => self.enqueue(now, waiter, newer_than),
        }
        self.finish(now);
    }

    /// A waiting request's caller went away; it is forgotten without an answer.
    pub fn handle_cancel(&mut self, now: UnixMs, waiter: WaiterId) {
        let now = self.enter(now);
        self.waiters.remove(waiter);
        self.finish(now);
    }

    /// A caller's broker call, made with `generation`, failed as `class`. An authentication rejection of
    /// the current grant expires it (and starts a re-login); one naming an older generation is stale and
    /// changes nothing. Other classes are the caller's business, except `Competing`.
    pub fn handle_rejected(&mut self, now: UnixMs, generation: Generation, class: ErrorClass) {
        let now = self.enter(now);
        let current = self.usable_installed().map(|i| i.generation);
        if current == Some(generation) && self.state.kind().token_usable() {
            match class {
                ErrorClass::AuthExpired => self.expire(now, Reason::Rejected),
                ErrorClass::Competing => self.competing(now),
                _ => {}
            }
        } else if matches!(class, ErrorClass::AuthExpired | ErrorClass::Competing) {
            self.kept_grant_rejected(generation, class);
        }
        self.finish(now);
    }

    /// A login or refresh finished. Answers naming another attempt than the one in flight are ignored
    /// (a grant among them is logged out, since nobody will use it). A grant that a daily cut-off has
    /// already killed (a login issued before it, a refresh of a login from before it) is not installed.
    pub fn handle_auth_completed(&mut self, now: UnixMs, attempt: AttemptId, result: Result<Grant, AuthFailure>) {
        let now = self.enter(now);
        let kind = match self.auth_in_flight {
            Some((current, kind)) if current == attempt => kind,
            _ => {
                if let Ok(grant) = result {
                    self.out.push_back(Output::Logout { grant: Arc::new(grant) });
                }
                self.finish(now);
                return;
            }
        };
        self.auth_in_flight = None;
        if !self.state.wants_grant() {
            // Logged out or gave up while the call was out: end the grant we will not use.
            if let Ok(grant) = result {
                self.out.push_back(Output::Logout { grant: Arc::new(grant) });
            }
            self.finish(now);
            return;
        }
        let result = match result {
            // Rule 1: a token issued before the last daily cut-off is dead. A login that straddled the
            // cut-off is thrown away and made again at once — no backoff, and the two count as one
            // attempt against the login rate (with `after_cutoff = "operator"` a person must log in).
            Ok(grant) if kind == AuthKind::Login && self.cut_off_since(grant.issued_at, now) => {
                let cutoff_at = self
                    .policy
                    .daily_cutoff
                    .as_ref()
                    .map_or(now, |c| next_local_time_after(grant.issued_at, c.at, &c.tz));
                self.emit(now, EventKind::LoginDiscarded { issued_at: grant.issued_at, cutoff_at });
                self.out.push_back(Output::Logout { grant: Arc::new(grant) });
                self.history.forget_last();
                self.start_auth(now);
                self.finish(now);
                return;
            }
            other => other,
        };
        let result = result.and_then(|grant| {
            let margin = self.policy.expiry_margin_for(grant.lifetime());
            let dies = grant.expires_at.map(|e| e.saturating_sub(margin));
            if dies.is_some_and(|dies| dies <= now) {
                return Err(AuthFailure::new(
                    ErrorClass::Transient,
                    "the broker returned a token that expires within the expiry margin",
                ));
            }
            // A refresh continues the chain of the grant it refreshed, which must still be installed (a
            // cut-off, an idle timeout or a reset dropped it meanwhile) and younger than the last cut-off.
            // Refusing a refresh this way is a refresh rejection: a login follows.
            match kind {
                AuthKind::Refresh
                    if self.installed.as_ref().is_none_or(|i| self.cut_off_since(i.logged_in_at, now)) =>
                {
                    Err(AuthFailure::new(
                        ErrorClass::AuthExpired,
                        "the refreshed grant belongs to a login before the daily cut-off, or was dropped",
                    ))
                }
                _ => Ok(grant),
            }
        });
        match result {
            Ok(grant) => self.install(now, grant, kind),
            Err(failure) => self.auth_failed(now, kind, failure),
        }
        self.finish(now);
    }

    /// A keep-alive ping finished. An answer about an older grant than the current one changes nothing.
    pub fn handle_keepalive_completed(
        &mut self,
        now: UnixMs,
        attempt: AttemptId,
        result: Result<KeepaliveStatus, AuthFailure>,
    ) {
        let now = self.enter(now);
        let Some((_, pinged)) = self.keepalive_in_flight.filter(|(current, _)| *current == attempt) else {
            self.finish(now);
            return;
        };
        self.keepalive_in_flight = None;
        // An answer about an older grant says nothing about the current one (rule 3).
        let current = self.installed.as_ref().filter(|i| !i.access_dead).map(|i| i.generation);
        if !self.state.kind().token_usable() || current != Some(pinged) {
            // A session that gave up keeps its grant for the next process; if the broker says that grant
            // is dead, it must not come back after a restart (as a rejection would say).
            let dead = match &result {
                Ok(KeepaliveStatus::Unauthenticated) => Some(ErrorClass::AuthExpired),
                Ok(KeepaliveStatus::Competing) => Some(ErrorClass::Competing),
                Err(failure) if matches!(failure.class, ErrorClass::AuthExpired | ErrorClass::Competing) => {
                    Some(failure.class)
                }
                _ => None,
            };
            if let Some(class) = dead {
                self.kept_grant_rejected(pinged, class);
            }
            self.finish(now);
            return;
        }
        let interval = self.policy.keepalive_interval.unwrap_or(Duration::from_secs(60));
        let class = match &result {
            Ok(KeepaliveStatus::Alive) => None,
            Ok(KeepaliveStatus::Unauthenticated) => Some(ErrorClass::AuthExpired),
            Ok(KeepaliveStatus::Competing) => Some(ErrorClass::Competing),
            Err(failure) => Some(failure.class),
        };
        if let Some(class) = class {
            let detail = match &result {
                Ok(KeepaliveStatus::Unauthenticated) => "the broker says the session is not authenticated".to_owned(),
                Ok(_) => "the broker says another login holds the account".to_owned(),
                Err(failure) => failure.detail.clone(),
            };
            self.last_failure = Some(LastFailure { at: now, call: CallKind::Keepalive, class, detail });
        }
        match class {
            None => {
                if let Some(active) = self.state.active_mut() {
                    active.keepalive_failures = 0;
                    active.keepalive_at = Some(now.saturating_add(interval));
                }
            }
            Some(ErrorClass::AuthExpired) => {
                self.emit(now, EventKind::KeepaliveFailed { class: ErrorClass::AuthExpired, consecutive: 1 });
                self.expire(now, Reason::KeepaliveUnauthenticated);
            }
            Some(ErrorClass::Competing) => self.competing(now),
            Some(class) => {
                let threshold = self.policy.keepalive_failures_before_expired;
                let mut consecutive = 0;
                if let Some(active) = self.state.active_mut() {
                    active.keepalive_failures += 1;
                    active.keepalive_at = Some(now.saturating_add(interval));
                    consecutive = active.keepalive_failures;
                }
                self.emit(now, EventKind::KeepaliveFailed { class, consecutive });
                if consecutive >= threshold {
                    self.expire(now, Reason::KeepaliveFailed);
                }
            }
        }
        self.finish(now);
    }

    /// Requests were served from the published lease (the hot path); counts as activity for the idle
    /// timeout.
    pub fn handle_activity(&mut self, now: UnixMs) {
        // The requests happened before this instant's deadlines are looked at: an idle timeout falling
        // due now must see them.
        self.last_activity = now.max(self.last_now);
        let now = self.enter(now);
        self.finish(now);
    }

    /// Operator reset: forget the grant, the failure counters and the backoff, and log in again (the
    /// login rate limit still applies). Waiting requests keep waiting. No effect once `Stopped`.
    pub fn handle_reset(&mut self, now: UnixMs) {
        let now = self.enter(now);
        if matches!(self.state, State::Stopped) {
            self.finish(now);
            return;
        }
        self.revoke(now, Reason::Reset);
        self.installed = None;
        self.clear_failures(now);
        self.operator_anchor = now;
        self.transition(now, State::Reinitializing, Reason::Reset);
        self.want_grant(now);
        self.mark_dirty(Durability::Flushed);
        self.finish(now);
    }

    /// New credentials were supplied: the failure counters are cleared, and an `Invalid` session tries
    /// again.
    pub fn handle_credentials_updated(&mut self, now: UnixMs) {
        let now = self.enter(now);
        self.clear_failures(now);
        self.operator_anchor = now;
        if matches!(self.state, State::Invalid(_)) {
            // A grant kept through a crash loop is not reused once an operator acts: log in afresh.
            self.installed = None;
            self.transition(now, State::Reinitializing, Reason::CredentialsUpdated);
            self.want_grant(now);
        }
        self.mark_dirty(Durability::Buffered);
        self.finish(now);
    }

    /// An operator supplied a second factor (or a login code, such as Kite's request token): the next
    /// login carries it, and a session that gave up for want of one — or because the broker's daily expiry
    /// needs a person — tries again.
    pub fn handle_second_factor(&mut self, now: UnixMs, code: Secret) {
        let now = self.enter(now);
        self.second_factor = Some(code);
        self.operator_anchor = now;
        if matches!(self.state, State::Invalid(InvalidReason::NeedsHuman { .. } | InvalidReason::AfterCutoff { .. })) {
            self.clear_failures(now);
            self.transition(now, State::Reinitializing, Reason::SecondFactor);
            self.want_grant(now);
        }
        self.finish(now);
    }

    /// Sets the fingerprint of the credentials the session runs with (the driver computes it); it is
    /// persisted with the next snapshot. Compare it with the stored one before setting it, and call
    /// [`Session::handle_credentials_updated`] when they differ.
    pub fn set_credentials_fingerprint(&mut self, now: UnixMs, fingerprint: CredentialsFingerprint) {
        let now = self.enter(now);
        if self.credentials_fingerprint.as_ref() != Some(&fingerprint) {
            self.credentials_fingerprint = Some(fingerprint);
            self.mark_dirty(Durability::Buffered);
        }
        self.finish(now);
    }

    /// Log out: end the grant at the broker, tell dependants to drop their caches, fail every waiting
    /// request with `Stopped`. Final.
    pub fn handle_logout(&mut self, now: UnixMs) {
        let now = self.enter(now);
        if matches!(self.state, State::Stopped) {
            self.finish(now);
            return;
        }
        self.revoke(now, Reason::LoggedOut);
        if let Some(installed) = self.installed.take() {
            self.out.push_back(Output::Logout { grant: installed.grant });
        }
        for waiter in self.waiters.take_all() {
            self.out.push_back(Output::Fail { waiter, error: RequestError::Stopped });
        }
        self.transition(now, State::Stopped, Reason::LoggedOut);
        self.mark_dirty(Durability::Flushed);
        self.finish(now);
    }

    /// The supervisor gives up on the session (restart intensity exceeded).
    pub fn handle_give_up(&mut self, now: UnixMs, reason: InvalidReason) {
        let now = self.enter(now);
        if !matches!(self.state, State::Stopped) {
            self.give_up(now, reason);
        }
        self.finish(now);
    }

    // ----- the machinery ------------------------------------------------------------------------

    /// Starts an input: clamps `now` so that time never runs backwards, then applies due deadlines.
    fn enter(&mut self, now: UnixMs) -> UnixMs {
        let now = now.max(self.last_now);
        self.last_now = now;
        self.process_deadlines(now);
        now
    }

    /// Ends an input: applies deadlines the input made due, publishes the hot-path lease if it changed,
    /// and asks for a snapshot to be saved if anything persistent changed.
    fn finish(&mut self, now: UnixMs) {
        self.process_deadlines(now);
        self.sync_publication(now);
        if let Some(durability) = self.dirty.take() {
            self.out.push_back(Output::Persist { durability });
        }
    }

    fn mark_dirty(&mut self, durability: Durability) {
        self.dirty = match (self.dirty, durability) {
            (Some(Durability::Flushed), _) | (_, Durability::Flushed) => Some(Durability::Flushed),
            _ => Some(Durability::Buffered),
        };
    }

    fn emit(&mut self, at: UnixMs, kind: EventKind) {
        self.out.push_back(Output::Event(SessionEvent { at, kind }));
    }

    fn transition(&mut self, now: UnixMs, to: State, reason: Reason) {
        let from = self.state.kind();
        self.state = to;
        let to = self.state.kind();
        if from != to {
            self.emit(now, EventKind::StateChanged { from, to, reason });
            self.mark_dirty(Durability::Buffered);
        }
    }

    /// Applies every deadline at or before `now`, until nothing more is due.
    fn process_deadlines(&mut self, now: UnixMs) {
        let expired = self.waiters.take_expired(now);
        if !expired.is_empty() {
            let stall = self.stall();
            for waiter in expired {
                self.out.push_back(Output::Fail { waiter, error: RequestError::Timeout(Box::new(stall.clone())) });
            }
        }
        // Each pass either changes the state or starts a call; a handful of passes always suffice.
        for _ in 0..8 {
            if !self.process_one_deadline(now) {
                break;
            }
        }
    }

    /// Applies the first due deadline; false when none is due.
    fn process_one_deadline(&mut self, now: UnixMs) -> bool {
        match &self.state {
            State::Valid(active) | State::ExpiringSoon(active) => {
                let active = *active;
                if now >= active.usable_until {
                    self.expire(now, active.until_reason.into());
                    return true;
                }
                if self.idle_at().is_some_and(|t| now >= t) {
                    self.expire(now, Reason::Idle);
                    return true;
                }
                if let (State::Valid(_), Some((at, reason))) = (&self.state, active.refresh_at)
                    && now >= at
                {
                    // A refresh is cheap and keeps the chain alive; a full login nobody asked for is what
                    // brokers limit. Without `proactive_logins`, a renewal that needs a login waits for a
                    // request (from `lazy_threshold` before expiry on).
                    let login_needed = self.next_auth_kind(now) == AuthKind::Login;
                    if login_needed && reason == ReasonCode::RefreshDue && !self.policy.proactive_logins {
                        if let Some(active) = self.state.active_mut() {
                            active.refresh_at = None;
                        }
                    } else {
                        self.begin_replacement(now, reason.into());
                    }
                    return true;
                }
                if matches!(self.state, State::ExpiringSoon(_)) && self.start_auth_if_due(now) {
                    return true;
                }
                if active.keepalive_at.is_some_and(|t| now >= t)
                    && self.keepalive_in_flight.is_none()
                    && self.auth_in_flight.is_none()
                    && self.capabilities.keepalive
                    && let Some((grant, generation)) = self.installed.as_ref().map(|i| (i.grant.clone(), i.generation))
                {
                    let attempt = self.new_attempt();
                    self.keepalive_in_flight = Some((attempt, generation));
                    if let Some(active) = self.state.active_mut() {
                        active.keepalive_at = None;
                    }
                    self.out.push_back(Output::Keepalive { attempt, grant });
                    return true;
                }
                false
            }
            State::Expired { .. } | State::Reinitializing | State::Initializing
                if self.operator_cutoff().is_some_and(|cut| now >= cut) =>
            {
                self.operator_needed(now);
                true
            }
            State::Expired { warmup_at: Some(at), .. } if now >= *at => {
                self.transition(now, State::Reinitializing, Reason::Warmup);
                self.want_grant(now);
                true
            }
            State::Reinitializing | State::Initializing => self.start_auth_if_due(now),
            _ => false,
        }
    }

    /// Whether a daily cut-off lies between `logged_in_at` and `now`: a login (and every refresh of it)
    /// from before it is dead.
    fn cut_off_since(&self, logged_in_at: UnixMs, now: UnixMs) -> bool {
        self.policy.daily_cutoff.as_ref().is_some_and(|c| next_local_time_after(logged_in_at, c.at, &c.tz) <= now)
    }

    /// The warm-up instant an expired session waits for: the policy's next warm-up time, whatever ended
    /// the grant (an expiry just before the cut-off, the cut-off itself, a rejection…), except idleness —
    /// a session nobody uses does not want a grant.
    fn warmup_after(&self, now: UnixMs, reason: &Reason) -> Option<UnixMs> {
        let cutoff = self.policy.daily_cutoff.as_ref()?;
        let warmup = cutoff.warmup?;
        (*reason != Reason::Idle).then(|| next_local_time_after(now, warmup, &cutoff.tz))
    }

    /// With `after_cutoff = "operator"`: the first cut-off after the last login or operator action, from
    /// which no login may start by itself.
    fn operator_cutoff(&self) -> Option<UnixMs> {
        let cutoff = self.policy.daily_cutoff.as_ref().filter(|_| self.policy.after_cutoff == AfterCutoff::Operator)?;
        Some(next_local_time_after(self.operator_anchor, cutoff.at, &cutoff.tz))
    }

    /// Whether a login now would be an automatic login after a cut-off that needs a person.
    fn operator_blocks_login(&self, now: UnixMs) -> bool {
        self.operator_cutoff().is_some_and(|cut| now >= cut)
    }

    /// A cut-off passed that needs a person to log in again: give up until one acts.
    fn operator_needed(&mut self, now: UnixMs) {
        let cutoff_at = self.operator_cutoff().unwrap_or(now);
        self.give_up(now, InvalidReason::AfterCutoff { cutoff_at });
    }

    /// A caller saw the grant kept while the session is not serving (given up after a crash loop)
    /// rejected: it is dead, and a later process must not reuse it.
    fn kept_grant_rejected(&mut self, generation: Generation, class: ErrorClass) {
        if !matches!(self.state, State::Invalid(_)) || self.usable_installed().map(|i| i.generation) != Some(generation)
        {
            return;
        }
        if let Some(installed) = &mut self.installed {
            installed.access_dead = true;
        }
        if class == ErrorClass::Competing && self.policy.on_competing == OnCompeting::TakeOver {
            self.take_over = true;
            self.force_login = true;
        }
        self.mark_dirty(Durability::Flushed);
    }

    /// The installed grant, if its access token is not known dead.
    fn usable_installed(&self) -> Option<&Installed> {
        self.installed.as_ref().filter(|i| !i.access_dead)
    }

    /// Between a daily cut-off and its warm-up time (the warm-up comes before the next cut-off): the
    /// warm-up instant an expired session waits for.
    fn pending_warmup(&self, now: UnixMs) -> Option<UnixMs> {
        let cutoff = self.policy.daily_cutoff.as_ref()?;
        let warmup_at = next_local_time_after(now, cutoff.warmup?, &cutoff.tz);
        (warmup_at < next_local_time_after(now, cutoff.at, &cutoff.tz)).then_some(warmup_at)
    }

    /// When the idle timeout ends the session, if it has one.
    fn idle_at(&self) -> Option<UnixMs> {
        self.policy.idle_timeout.map(|idle| self.last_activity.saturating_add(idle))
    }

    /// The earliest instant a new call may start, and what holds it back.
    fn gate(&self, now: UnixMs) -> (UnixMs, DeferCause) {
        let mut gate = (self.retry_not_before.max(now), self.retry_cause);
        let kind = self.next_auth_kind(now);
        if kind == AuthKind::Refresh && self.retry_cause == DeferCause::Backoff && !self.waiters.is_empty() {
            // Requests wait: a refresh may be retried early (refreshes do not lock accounts), so that the
            // session serves again within `waiting_refresh_retry` of the broker's return.
            if let Some(failure) = &self.last_failure {
                let early = failure.at.saturating_add(self.policy.waiting_refresh_retry).max(now);
                gate.0 = gate.0.min(early);
            }
        }
        if kind == AuthKind::Login {
            let allowed = self.history.next_allowed(now, self.policy.login_rate);
            if allowed > gate.0 {
                gate = (allowed, DeferCause::LoginRate);
            }
        }
        gate
    }

    /// Refresh when the broker has one and the refresh token still works, unless a login is required.
    fn next_auth_kind(&self, now: UnixMs) -> AuthKind {
        let refreshable = self
            .installed
            .as_ref()
            .is_some_and(|i| !i.refresh_dead && i.grant.can_refresh(now) && !self.cut_off_since(i.logged_in_at, now));
        if self.capabilities.refresh && refreshable && !self.force_login { AuthKind::Refresh } else { AuthKind::Login }
    }

    /// In a state that wants a grant: starts the call now if its gate is open, else announces the wait.
    fn want_grant(&mut self, now: UnixMs) {
        if self.auth_in_flight.is_some() || !self.state.wants_grant() {
            return;
        }
        let (until, cause) = self.gate(now);
        if until <= now {
            self.start_auth(now);
        } else {
            self.emit(now, EventKind::Deferred { until, cause });
        }
    }

    /// Starts the call if none is in flight and the gate is open; true if it started one.
    fn start_auth_if_due(&mut self, now: UnixMs) -> bool {
        if self.auth_in_flight.is_some() || self.gate(now).0 > now {
            return false;
        }
        self.start_auth(now);
        true
    }

    fn new_attempt(&mut self) -> AttemptId {
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        attempt
    }

    /// Starts a login or refresh (the caller checked the gate). A login that would follow a cut-off
    /// needing a person gives up instead.
    fn start_auth(&mut self, now: UnixMs) {
        let kind = self.next_auth_kind(now);
        if kind == AuthKind::Login && self.operator_blocks_login(now) {
            self.operator_needed(now);
            return;
        }
        let attempt = self.new_attempt();
        self.auth_in_flight = Some((attempt, kind));
        self.auth_started_at = now;
        match (kind, &self.installed) {
            (AuthKind::Refresh, Some(installed)) => {
                let grant = installed.grant.clone();
                self.out.push_back(Output::Refresh { attempt, grant });
            }
            _ => {
                self.history.record(now, self.policy.login_rate);
                // The attempt must be on disk before the login leaves, or a crash loop could exceed the
                // login rate: the save comes first in the outputs, and drivers carry them out in order.
                self.dirty = None;
                self.out.push_back(Output::Persist { durability: Durability::Flushed });
                let second_factor = self.second_factor.take();
                self.out.push_back(Output::Login { attempt, take_over: self.take_over, second_factor });
            }
        }
    }

    /// `Valid` → `ExpiringSoon`: start replacing the grant while it is still served.
    fn begin_replacement(&mut self, now: UnixMs, reason: Reason) {
        let State::Valid(active) = &self.state else { return };
        let active = *active;
        if reason == Reason::SessionAgeReached {
            self.force_login = true;
        }
        self.transition(now, State::ExpiringSoon(active), reason);
        self.want_grant(now);
    }

    /// Deadlines of the installed grant under the policy.
    fn compute_active(&mut self, now: UnixMs) -> Active {
        let Some(installed) = &self.installed else {
            return Active {
                usable_until: now,
                until_reason: ReasonCode::TokenExpired,
                refresh_at: None,
                lazy_at: None,
                keepalive_at: None,
                keepalive_failures: 0,
            };
        };
        let grant = &installed.grant;
        let policy = &self.policy;
        let margin = policy.expiry_margin_for(grant.lifetime());
        let mut usable_until = grant.expires_at.map_or(UnixMs::MAX, |e| e.saturating_sub(margin));
        let mut until_reason = ReasonCode::TokenExpired;
        if let Some(cutoff) = &policy.daily_cutoff {
            let cut = next_local_time_after(installed.logged_in_at, cutoff.at, &cutoff.tz);
            if cut < usable_until {
                usable_until = cut;
                until_reason = ReasonCode::DailyCutoff;
            }
        }
        let mut refresh_at = None;
        if let (Some(buffer), Some(expires_at)) = (policy.refresh_buffer, grant.expires_at) {
            let spread_ms = (buffer.as_millis() as f64 * policy.jitter * self.rng.next_unit()) as u64;
            let at = expires_at.saturating_sub(buffer).saturating_sub(Duration::from_millis(spread_ms));
            // Never sooner than half the lifetime: a buffer longer than the token must not loop.
            let half_life = grant.issued_at.saturating_add(grant.lifetime().unwrap_or_default() / 2);
            refresh_at = Some((at.max(half_life), ReasonCode::RefreshDue));
        }
        if let Some(age) = policy.max_session_age {
            let at = installed.logged_in_at.saturating_add(age);
            if refresh_at.is_none_or(|(r, _)| at < r) {
                refresh_at = Some((at, ReasonCode::SessionAgeReached));
            }
        }
        let refresh_at = refresh_at.filter(|(at, _)| *at < usable_until);
        let lazy_at = match (policy.lazy_threshold, grant.expires_at) {
            (Some(threshold), Some(expires_at)) => {
                Some(expires_at.saturating_sub(threshold)).filter(|t| *t < usable_until)
            }
            _ => None,
        };
        let keepalive_at = match (self.capabilities.keepalive, policy.keepalive_interval) {
            (true, Some(interval)) => Some(now.saturating_add(interval)),
            _ => None,
        };
        Active { usable_until, until_reason, refresh_at, lazy_at, keepalive_at, keepalive_failures: 0 }
    }

    /// A new grant: next generation, `Valid`, waiting requests served.
    fn install(&mut self, now: UnixMs, grant: Grant, kind: AuthKind) {
        self.generation = self.generation.next();
        let logged_in_at = match (kind, &self.installed) {
            (AuthKind::Refresh, Some(previous)) => previous.logged_in_at,
            _ => now,
        };
        let lifetime_ms = grant.lifetime().map(|l| l.as_millis() as u64);
        if let (false, Some(lifetime)) = (self.warned, grant.lifetime()) {
            let refreshable = self.capabilities.refresh && grant.refresh_token.is_some();
            if let Some(detail) = self.policy.feasibility(lifetime, refreshable) {
                self.warned = true;
                self.emit(now, EventKind::PolicyWarning { detail });
            }
        }
        self.emit(
            now,
            EventKind::GrantInstalled {
                generation: self.generation,
                kind,
                issued_at: grant.issued_at,
                expires_at: grant.expires_at,
                lifetime_ms,
            },
        );
        self.installed = Some(Installed {
            grant: Arc::new(grant),
            generation: self.generation,
            logged_in_at,
            access_dead: false,
            refresh_dead: false,
        });
        if kind == AuthKind::Login {
            self.take_over = false;
            self.force_login = false;
            self.rejections = 0;
            self.operator_anchor = now;
        }
        self.failures = 0;
        self.last_failure = None;
        self.retry_not_before = now;
        let active = self.compute_active(now);
        self.transition(now, State::Valid(active), Reason::Authenticated);
        self.mark_dirty(Durability::Flushed);
        // Publish before answering the waiters: one that asks again at once finds the lease on the hot
        // path instead of queueing behind the actor.
        self.sync_publication(now);
        if let Some(lease) = self.lease() {
            for waiter in self.waiters.take_satisfied_by(lease.generation) {
                self.out.push_back(Output::Serve { waiter, lease: lease.clone() });
            }
        }
    }

    /// A login or refresh failed: count it, back off, give up if the failure says so.
    fn auth_failed(&mut self, now: UnixMs, kind: AuthKind, failure: AuthFailure) {
        let AuthFailure { class, detail } = failure;
        self.last_failure = Some(LastFailure { at: now, call: kind.into(), class, detail: detail.clone() });
        let refresh_rejected = kind == AuthKind::Refresh
            && matches!(class, ErrorClass::AuthExpired | ErrorClass::Permanent | ErrorClass::NeedsHuman);
        if refresh_rejected {
            // The refresh token is dead; a full login is next. That is not a login failure.
            if let Some(installed) = &mut self.installed {
                installed.refresh_dead = true;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        if kind == AuthKind::Login && class == ErrorClass::AuthExpired {
            self.rejections = self.rejections.saturating_add(1);
        }
        self.emit(
            now,
            EventKind::AuthFailed { kind, class, detail: detail.clone(), consecutive_failures: self.rejections },
        );
        self.mark_dirty(Durability::Buffered);
        if !refresh_rejected {
            match class {
                ErrorClass::Permanent => return self.give_up(now, InvalidReason::BadCredentials { detail }),
                ErrorClass::NeedsHuman => return self.give_up(now, InvalidReason::NeedsHuman { detail }),
                ErrorClass::AuthExpired if self.rejections >= self.policy.max_consecutive_failures => {
                    let failures = self.rejections;
                    return self.give_up(now, InvalidReason::FailureBudgetSpent { failures });
                }
                ErrorClass::Competing if self.policy.on_competing == OnCompeting::Yield => {
                    return self.give_up(now, InvalidReason::Competing);
                }
                ErrorClass::Competing => {
                    self.take_over = true;
                    self.force_login = true;
                }
                ErrorClass::RateLimited { retry_after } => {
                    let backoff = self.backoff_delay();
                    let wait = retry_after.unwrap_or_default().max(backoff);
                    self.retry_not_before = now.saturating_add(wait);
                    self.retry_cause = if retry_after.is_some_and(|r| r >= backoff) {
                        DeferCause::RetryAfter
                    } else {
                        DeferCause::Backoff
                    };
                }
                _ => {
                    self.retry_not_before = now.saturating_add(self.backoff_delay());
                    self.retry_cause = DeferCause::Backoff;
                }
            }
        }
        if matches!(self.state, State::Initializing) {
            self.transition(now, State::Reinitializing, Reason::AuthFailed);
        }
        self.want_grant(now);
    }

    fn backoff_delay(&mut self) -> Duration {
        let unit = self.rng.next_unit();
        self.policy.backoff.delay(self.failures.max(1), unit)
    }

    fn clear_failures(&mut self, now: UnixMs) {
        self.failures = 0;
        self.rejections = 0;
        self.retry_not_before = now;
        self.retry_cause = DeferCause::Backoff;
    }

    /// Tell dependants that the usable grant is dead, if there is one.
    fn revoke(&mut self, now: UnixMs, reason: Reason) {
        if self.state.kind().token_usable()
            && let Some(installed) = &self.installed
        {
            let generation = installed.generation;
            self.emit(now, EventKind::Revoked { generation, reason });
        }
    }

    /// The usable grant stops being usable (expiry, cut-off, rejection, failed keep-alive, idle).
    fn expire(&mut self, now: UnixMs, reason: Reason) {
        if !self.state.kind().token_usable() {
            return;
        }
        if reason == Reason::DailyCutoff && self.policy.after_cutoff == AfterCutoff::Operator {
            // The broker's login after its daily expiry needs a person.
            self.operator_needed(now);
            return;
        }
        let replacing = matches!(self.state, State::ExpiringSoon(_));
        self.revoke(now, reason.clone());
        match reason {
            // A cut-off demands a fresh login; an idle session lets everything go.
            Reason::DailyCutoff | Reason::Idle => self.installed = None,
            _ => {
                if let Some(installed) = &mut self.installed {
                    installed.access_dead = true;
                }
            }
        }
        self.mark_dirty(Durability::Flushed);
        if self.auth_in_flight.is_some() || (replacing && reason == Reason::TokenExpired) {
            // The replacement already under way (or backing off) becomes the re-login.
            self.transition(now, State::Reinitializing, reason);
            self.want_grant(now);
            return;
        }
        let warmup_at = self.warmup_after(now, &reason);
        self.transition(now, State::Expired { warmup_at }, reason.clone());
        if !self.waiters.is_empty() {
            self.transition(now, State::Reinitializing, Reason::Demand);
            self.want_grant(now);
        } else {
            self.wake_if_eager(now, reason);
        }
    }

    /// In `Expired`: an eager session whose grant was killed while in use (a rejection, a keep-alive
    /// saying the session is gone, a competing login) logs in again at once. A token that simply ran out
    /// unused, an idle session and a daily cut-off (it has its warm-up time) wait for a request: an eager
    /// re-login nobody asked for is a wasted login, and logins are what brokers limit.
    fn wake_if_eager(&mut self, now: UnixMs, reason: Reason) {
        let killed = matches!(
            reason,
            Reason::Rejected | Reason::KeepaliveUnauthenticated | Reason::KeepaliveFailed | Reason::Competing
        );
        if killed {
            self.wake_eager(now);
        }
    }

    /// In `Expired`: an eager session that has not idled out logs in now.
    fn wake_eager(&mut self, now: UnixMs) {
        let recently_active = self.idle_at().is_none_or(|t| now < t);
        if self.policy.mode == Mode::Eager && recently_active && matches!(self.state, State::Expired { .. }) {
            self.transition(now, State::Reinitializing, Reason::Eager);
            self.want_grant(now);
        }
    }

    /// Another login holds the account.
    fn competing(&mut self, now: UnixMs) {
        match self.policy.on_competing {
            OnCompeting::Yield => self.give_up(now, InvalidReason::Competing),
            OnCompeting::TakeOver => {
                self.take_over = true;
                self.force_login = true;
                self.expire(now, Reason::Competing);
            }
        }
    }

    /// Go to `Invalid`: fail every waiting request, drop the grant.
    fn give_up(&mut self, now: UnixMs, reason: InvalidReason) {
        self.revoke(now, Reason::GaveUp(reason.clone()));
        // After a crash loop the grant is not served (the session is `Invalid`) but kept in the snapshot:
        // the crash loop was this process's, and the next process reuses the grant.
        if !matches!(reason, InvalidReason::RestartLimit { .. }) {
            self.installed = None;
        }
        for waiter in self.waiters.take_all() {
            self.out.push_back(Output::Fail { waiter, error: RequestError::Invalid(reason.clone()) });
        }
        self.transition(now, State::Invalid(reason.clone()), Reason::GaveUp(reason));
        self.mark_dirty(Durability::Flushed);
    }

    fn enqueue(&mut self, now: UnixMs, waiter: WaiterId, newer_than: Option<Generation>) {
        if self.waiters.len() >= self.policy.max_waiters as usize {
            let error = RequestError::Overloaded { max_waiters: self.policy.max_waiters };
            self.out.push_back(Output::Fail { waiter, error });
            return;
        }
        let deadline = now.saturating_add(self.policy.request_timeout);
        self.waiters.insert(waiter, Waiter { deadline, newer_than });
    }

    /// What the hot path should hand out now: the generation and until when.
    fn desired_publication(&self, now: UnixMs) -> Option<(Generation, UnixMs)> {
        let installed = self.installed.as_ref().filter(|i| !i.access_dead)?;
        let until = match &self.state {
            State::Valid(a) => {
                // Past the lazy threshold, requests must reach the session so that one starts a refresh
                // (unless a proactive refresh comes first anyway).
                let lazy = a.lazy_at.filter(|l| a.refresh_at.is_none_or(|(r, _)| *l < r));
                lazy.map_or(a.usable_until, |l| l.min(a.usable_until))
            }
            State::ExpiringSoon(a) => a.usable_until,
            _ => return None,
        };
        (now < until).then_some((installed.generation, until))
    }

    fn sync_publication(&mut self, now: UnixMs) {
        let desired = self.desired_publication(now);
        if desired == self.published {
            return;
        }
        self.published = desired;
        let lease = match (desired, &self.installed) {
            (Some((generation, usable_until)), Some(installed)) => {
                Some(Lease { generation, grant: installed.grant.clone(), usable_until })
            }
            _ => None,
        };
        self.out.push_back(Output::Publish(lease));
    }
}
