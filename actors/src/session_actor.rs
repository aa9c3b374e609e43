//! The session actor: the one driver loop around a session's state machine.
//!
//! For every message: feed the matching input to the core, drain its outputs, re-arm the one timer from
//! `poll_timeout()`. Outputs become effects: broker calls run as tasks off the mailbox (with the policy's
//! `auth_timeout`, a panic caught and sent back as a message) and their results come back as messages;
//! leases are published into the lock-free cell; waiters are answered; snapshots and events go to the
//! store; events go to the broadcast.
//!
//! The timer is one task per actor that sleeps until the deadline the actor last set and then sends one
//! `Tick`; re-arming only changes the deadline, and ticks never pile up (one outstanding at most). It also
//! sends a `Tick` when the clock reports a wall-clock jump (a suspend, a clock step), so deadlines that
//! fell in the jump take effect at once.
//!
//! Logs: every message is handled inside a `session` span carrying the session's id; state changes,
//! grants, revocations and logins are logged at `info`, failures, give-ups and quarantines at `warn`, and
//! nothing logged carries a secret (events describe grants by generation and lifetime only).
//!
//! A failure of the actor (a panicking adapter, a store that cannot be read, an injected fault) ends it
//! with an error; the supervisor restarts it, and the new actor resumes from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warden_engine::{
    AttemptId, AuthFailure, BrokerError, Credentials, ErrorClass, EventKind, Grant, InvalidReason, Lease, LoadOutcome,
    LoginRequest, Output, RequestError, Secret, Session, SessionConfig, StateKind, UnixMs, WaiterId,
};

use crate::catch::CatchUnwind;
pub(crate) use crate::message::SessionMsg;
use crate::shared::{Counters, SessionShared, SessionStatus, WardenEventKind};

/// Start-up arguments; cloned by the supervisor for every restart.
#[derive(Clone)]
pub(crate) struct SessionArgs {
    pub(crate) shared: Arc<SessionShared>,
    /// Set by the supervisor when the restart limit is spent: the new actor goes `Invalid` at once.
    pub(crate) give_up: Option<InvalidReason>,
}

/// The actor (stateless; the state is [`ActorState`]).
pub(crate) struct SessionActor;

/// A running session.
pub(crate) struct ActorState {
    shared: Arc<SessionShared>,
    session: Session,
    waiters: HashMap<WaiterId, oneshot::Sender<Result<Lease, RequestError>>>,
    next_waiter: u64,
    timer: watch::Sender<Option<Instant>>,
    timer_task: JoinHandle<()>,
    status: SessionStatus,
    /// The broker calls this actor started; dropping the state (the actor stopped or failed) aborts
    /// those still running, so that a restarted actor never has a predecessor's login in flight beside
    /// its own (single flight across a crash).
    calls: Vec<CallGuard>,
}

/// Aborts a broker call's task when dropped.
struct CallGuard(tokio::task::AbortHandle);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = ActorState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<ActorState, ActorProcessingErr> {
        let shared = args.shared;
        let env = shared.env.clone();
        let now = env.clock.now();
        let restarts = shared.counters.snapshot().restarts;
        let config = SessionConfig::new(shared.id.clone(), shared.policy.clone())
            .with_capabilities(shared.broker.capabilities())
            .with_seed(shared.seed ^ restarts.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let session = match env.store.load(&shared.id)? {
            LoadOutcome::Found(snapshot) => match Session::restore(config.clone(), *snapshot, now) {
                Ok(session) => session,
                Err(error) => {
                    let reason = error.to_string();
                    tracing::warn!(session = %shared.id, %reason, "stored snapshot not usable; starting fresh");
                    env.publish(&shared.id, now, WardenEventKind::StoreQuarantined { reason });
                    Session::new(config, now)
                }
            },
            LoadOutcome::Quarantined { reason, login_attempts } => {
                tracing::warn!(session = %shared.id, %reason, "stored record quarantined; starting fresh");
                env.publish(&shared.id, now, WardenEventKind::StoreQuarantined { reason });
                Session::recover(config, now, login_attempts)
            }
            _ => Session::new(config, now),
        };
        let mut session = session;
        adopt_credentials(&shared, &mut session, now);
        let (timer, timer_rx) = watch::channel(None);
        let timer_task = tokio::spawn(run_timer(myself.clone(), timer_rx, shared.clock.jumps()));
        let stall = session.stall();
        let status = SessionStatus {
            state: session.state(),
            generation: session.generation(),
            invalid_reason: session.invalid_reason().cloned(),
            since: now,
            last_failure: stall.last_failure,
            waiting_for: stall.waiting_for,
        };
        let mut state = ActorState {
            shared: shared.clone(),
            session,
            waiters: HashMap::new(),
            next_waiter: 1,
            timer,
            timer_task,
            status,
            calls: Vec::new(),
        };
        if let Some(reason) = args.give_up {
            state.session.handle_give_up(now, reason);
        }
        let span = tracing::info_span!("session", id = %shared.id);
        span.in_scope(|| state.drain(&myself, now));
        shared.actor.send_replace(Some(myself));
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        message: SessionMsg,
        state: &mut ActorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("session", id = %state.shared.id);
        span.in_scope(|| handle_message(&myself, message, state))
    }

    async fn post_stop(&self, _myself: ActorRef<SessionMsg>, state: &mut ActorState) -> Result<(), ActorProcessingErr> {
        state.timer_task.abort();
        state.shared.actor.send_replace(None);
        if let Err(error) = state.shared.env.store.flush() {
            tracing::warn!(session = %state.shared.id, %error, "final store flush failed");
        }
        Ok(())
    }
}

/// Compares the credentials the session is opened with against the fingerprint of those it last ran
/// with: different ones count as new credentials (a session that gave up on bad ones tries again).
fn adopt_credentials(shared: &SessionShared, session: &mut Session, now: UnixMs) {
    let stored = session.credentials_fingerprint().cloned();
    let Some(current) = crate::fingerprint::fingerprint(&shared.credentials(), stored.as_ref()) else {
        tracing::warn!(session = %shared.id, "the system random generator failed; credentials not fingerprinted");
        return;
    };
    if stored.as_ref().is_some_and(|s| s.digest != current.digest) {
        tracing::info!(session = %shared.id, "opened with other credentials than it last ran with");
        session.handle_credentials_updated(now);
    }
    session.set_credentials_fingerprint(now, current);
}

/// One message: feed the core, drain its outputs.
fn handle_message(
    myself: &ActorRef<SessionMsg>,
    message: SessionMsg,
    state: &mut ActorState,
) -> Result<(), ActorProcessingErr> {
    {
        let now = state.shared.clock.now();
        if state.shared.lease.take_used() {
            state.session.handle_activity(now);
        }
        let session = &mut state.session;
        match message {
            SessionMsg::Tick => session.handle_tick(now),
            SessionMsg::Token { newer_than, reply } => {
                let waiter = WaiterId(state.next_waiter);
                state.next_waiter += 1;
                state.waiters.insert(waiter, reply);
                session.handle_request(now, waiter, newer_than);
            }
            SessionMsg::Rejected { generation, class } => session.handle_rejected(now, generation, class),
            SessionMsg::AuthDone { attempt, result } => session.handle_auth_completed(now, attempt, result),
            SessionMsg::KeepaliveDone { attempt, result } => session.handle_keepalive_completed(now, attempt, result),
            SessionMsg::Reset => session.handle_reset(now),
            SessionMsg::CredentialsUpdated => {
                session.handle_credentials_updated(now);
                adopt_credentials(&state.shared, &mut state.session, now);
            }
            SessionMsg::SecondFactor(code) => session.handle_second_factor(now, code),
            SessionMsg::Logout { reply } => {
                session.handle_logout(now);
                state.drain(myself, now);
                let _ = reply.send(());
                return Ok(());
            }
            SessionMsg::CallPanicked { call, detail } => {
                return Err(format!("broker adapter panicked during {call}: {detail}").into());
            }
            SessionMsg::Crash(why) => return Err(why.into()),
        }
        state.drain(myself, now);
        Ok(())
    }
}

impl ActorState {
    /// Carries out every output of the core, then re-arms the timer.
    fn drain(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Publish(lease) => self.shared.lease.publish(lease),
                Output::Serve { waiter, lease } => self.answer(waiter, Ok(lease)),
                Output::Fail { waiter, error } => self.answer(waiter, Err(error)),
                Output::Login { attempt, take_over, second_factor } => {
                    self.start_login(myself, now, attempt, take_over, second_factor)
                }
                Output::Refresh { attempt, grant } => self.start_refresh(myself, now, attempt, grant),
                Output::Keepalive { attempt, grant } => self.start_keepalive(myself, now, attempt, grant),
                Output::Logout { grant } => self.start_logout(now, grant),
                Output::Persist { durability } => {
                    let snapshot = self.session.snapshot();
                    if let Err(error) = self.shared.env.store.save(&snapshot, durability) {
                        Counters::bump(&self.shared.counters.persist_failures);
                        tracing::warn!(%error, "snapshot not saved; continuing from memory");
                        let detail = error.to_string();
                        self.shared.env.publish(&self.shared.id, now, WardenEventKind::PersistFailed { detail });
                    }
                }
                Output::Event(event) => {
                    log_event(&event.kind);
                    match &event.kind {
                        EventKind::StateChanged { to, .. } => {
                            self.status.state = *to;
                            self.status.since = event.at;
                        }
                        EventKind::Revoked { generation, .. } => {
                            self.shared.revoked_upto.fetch_max(generation.0, std::sync::atomic::Ordering::AcqRel);
                        }
                        _ => {}
                    }
                    if let Err(error) = self.shared.env.store.append_log(&self.shared.id, &event) {
                        tracing::debug!(session = %self.shared.id, %error, "transition log entry not written");
                    }
                    self.shared.env.publish(&self.shared.id, event.at, WardenEventKind::Session(event.kind));
                }
                _ => {}
            }
        }
        self.publish_status();
        let deadline = self.session.poll_timeout().map(|t| self.shared.clock.instant_at(t));
        self.timer.send_if_modified(|current| {
            let changed = *current != deadline;
            *current = deadline;
            changed
        });
    }

    fn answer(&mut self, waiter: WaiterId, result: Result<Lease, RequestError>) {
        if let Some(reply) = self.waiters.remove(&waiter) {
            // The caller may have given up; nothing to do then.
            let _ = reply.send(result);
        }
    }

    fn publish_status(&mut self) {
        self.status.generation = self.session.generation();
        self.status.invalid_reason = self.session.invalid_reason().cloned();
        let stall = self.session.stall();
        self.status.last_failure = stall.last_failure;
        self.status.waiting_for = stall.waiting_for;
        let status = &self.status;
        self.shared.status.send_if_modified(|current| {
            let changed = current != status;
            if changed {
                *current = status.clone();
            }
            changed
        });
    }

    fn start_login(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        now: UnixMs,
        attempt: AttemptId,
        take_over: bool,
        second_factor: Option<Secret>,
    ) {
        Counters::bump(&self.shared.counters.logins);
        tracing::info!(attempt = attempt.0, take_over, "login started");
        let broker = self.shared.broker.clone();
        let credentials: Credentials = self.shared.credentials();
        let call = async move {
            let request = LoginRequest { credentials: &credentials, second_factor: second_factor.as_ref(), take_over };
            broker.login(now, request).await
        };
        self.spawn_call(myself, "login", call, move |result| SessionMsg::AuthDone { attempt, result });
    }

    fn start_refresh(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, attempt: AttemptId, grant: Arc<Grant>) {
        Counters::bump(&self.shared.counters.refreshes);
        tracing::debug!(attempt = attempt.0, "refresh started");
        let broker = self.shared.broker.clone();
        let call = async move { broker.refresh(now, &grant).await };
        self.spawn_call(myself, "refresh", call, move |result| SessionMsg::AuthDone { attempt, result });
    }

    fn start_keepalive(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, attempt: AttemptId, grant: Arc<Grant>) {
        Counters::bump(&self.shared.counters.keepalives);
        let broker = self.shared.broker.clone();
        let call = async move { broker.keepalive(now, &grant).await };
        self.spawn_call(myself, "keep-alive", call, move |result| SessionMsg::KeepaliveDone { attempt, result });
    }

    fn start_logout(&self, now: UnixMs, grant: Arc<Grant>) {
        let broker = self.shared.broker.clone();
        let limit = self.shared.policy.auth_timeout;
        let id = self.shared.id.clone();
        tokio::spawn(async move {
            let call = CatchUnwind::new(tokio::time::timeout(limit, async move { broker.logout(now, &grant).await }));
            match call.await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => tracing::info!(session = %id, %error, "logout failed at the broker"),
                Ok(Err(_)) => tracing::info!(session = %id, "logout timed out"),
                Err(detail) => tracing::warn!(session = %id, %detail, "broker adapter panicked during logout"),
            }
        });
    }

    /// Runs a broker call off the mailbox with the policy's `auth_timeout`; its result (or its panic)
    /// comes back as a message.
    fn spawn_call<T, F, M>(&mut self, myself: &ActorRef<SessionMsg>, call: &'static str, future: F, message: M)
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, BrokerError>> + Send + 'static,
        M: FnOnce(Result<T, AuthFailure>) -> SessionMsg + Send + 'static,
    {
        let me = myself.clone();
        let broker = self.shared.broker.clone();
        let limit = self.shared.policy.auth_timeout;
        self.calls.retain(|c| !c.0.is_finished());
        let task = tokio::spawn(async move {
            let msg = match CatchUnwind::new(tokio::time::timeout(limit, future)).await {
                Ok(Ok(result)) => message(result.map_err(|error| failure_of(broker.as_ref(), &error))),
                Ok(Err(_)) => message(Err(AuthFailure::new(
                    ErrorClass::Transient,
                    format!(
                        "{call} got no answer within auth_timeout ({})",
                        warden_engine::time::format_duration(limit)
                    ),
                ))),
                Err(detail) => SessionMsg::CallPanicked { call, detail },
            };
            // The actor may have stopped meanwhile; its successor starts from the store.
            let _ = me.cast(msg);
        });
        self.calls.push(CallGuard(task.abort_handle()));
    }
}

/// An adapter error as the core sees it: its class and a description without secrets.
pub(crate) fn failure_of(broker: &dyn warden_engine::Broker, error: &BrokerError) -> AuthFailure {
    let class = broker.classify(error);
    let mut detail = String::new();
    if let Some(status) = error.status {
        detail.push_str(&format!("HTTP {status} "));
    }
    if let Some(code) = &error.code {
        detail.push_str(&format!("[{code}] "));
    }
    detail.push_str(&error.message);
    AuthFailure::new(class, detail)
}

/// Logs one of the core's events: failures and give-ups at `warn`, the rest at `info` (`debug` for
/// deferrals). The message is the event's sentence, which carries no secret.
fn log_event(kind: &EventKind) {
    match kind {
        EventKind::AuthFailed { .. }
        | EventKind::KeepaliveFailed { .. }
        | EventKind::LoginDiscarded { .. }
        | EventKind::PolicyWarning { .. }
        | EventKind::StateChanged { to: StateKind::Invalid, .. } => tracing::warn!("{kind}"),
        EventKind::Deferred { .. } => tracing::debug!("{kind}"),
        _ => tracing::info!("{kind}"),
    }
}

/// The actor's one timer: sleeps until the deadline the actor set last, then sends one `Tick`; also sends
/// one when the clock reports a wall-clock jump.
async fn run_timer(
    actor: ActorRef<SessionMsg>,
    mut deadline: watch::Receiver<Option<Instant>>,
    mut jumps: watch::Receiver<u64>,
) {
    let mut jumps_open = true;
    loop {
        let current = *deadline.borrow_and_update();
        let sleep = async {
            match current {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {
                if actor.cast(SessionMsg::Tick).is_err() {
                    return;
                }
                // Wait for the actor to set the next deadline (it always moves past `at`).
                if deadline.changed().await.is_err() {
                    return;
                }
            }
            changed = deadline.changed() => if changed.is_err() { return },
            jumped = jumps.changed(), if jumps_open => match jumped {
                Ok(()) => {
                    if actor.cast(SessionMsg::Tick).is_err() {
                        return;
                    }
                }
                Err(_) => jumps_open = false,
            },
        }
    }
}

/// How long a caller waits for a fresh actor before giving up, beyond the request timeout.
pub(crate) const ACTOR_GRACE: Duration = Duration::from_secs(1);
