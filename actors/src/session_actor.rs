//! The session actor: the one driver loop around a session's state machine.
//!
//! For every message: feed the matching input to the core, drain its outputs, re-arm the one timer from
//! `poll_timeout()`. Outputs become effects: broker calls run as tasks off the mailbox (with the policy's
//! `auth_timeout`, a panic caught and sent back as a message) and their results come back as messages;
//! leases are published into the lock-free cell; waiters are answered; snapshots and events go to the
//! store; events go to the broadcast.
//!
//! **Durable before handed out.** A new grant is handed out — published into the lease cell, or served to
//! a waiting request — only once a snapshot holding it is on disk, so a crash never costs a second login.
//! The core emits `Persist { durability: Flushed }` in the same drain that publishes and serves a new
//! grant; the actor writes the snapshot at once (`Store::save_deferred`), hands a ticket to the
//! `Warden`'s group commit ([`crate::commit`]) when the store still needs a flush, and holds back the
//! `Publish` and the `Serve`s of any generation newer than the newest one confirmed durable until the
//! flush that covers the write has returned (the `Durable` message). A login waits the same way for the
//! save of its attempt, which the core emits just before it. Everything else — withdrawals, failures,
//! events, refreshes, keep-alives — goes out at once. A held `Publish` is replaced by any later one (the
//! core's latest decision wins); a held `Serve` whose lease died meanwhile (revoked, or past its usable
//! end) is asked of the core again for that waiter, never answered with a dead token. The wait is bounded
//! by `durable_wait` (a store that fails or hangs must never block trading): past it, or when a write or a
//! flush fails, what was held goes out from memory and a `PersistFailed` event says so.
//!
//! The timer is an entry in the `Warden`'s [`crate::timer::Timers`] (no task per session): the actor
//! arms its next deadline there after every message, and gets one `Tick` when it comes (or when the
//! wall clock jumped).
//!
//! Logs: every message is handled inside a `session` span carrying the session's id; state changes,
//! grants, revocations and logins are logged at `info`, failures, give-ups and quarantines at `warn`, and
//! nothing logged carries a secret (events describe grants by generation and lifetime only).
//!
//! A failure of the actor (a panicking adapter, a store that cannot be read, an injected fault) ends it
//! with an error; the supervisor restarts it, and the new actor resumes from the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio::time::Instant;
use warden_engine::{
    AttemptId, AuthFailure, BrokerError, Credentials, Durability, ErrorClass, EventKind, Generation, Grant, Lease,
    LoadOutcome, LoginRequest, Output, Pending, RequestError, Secret, Session, SessionConfig, SessionEvent, StateKind,
    StoreError, UnixMs, WaiterId,
};

use crate::catch::CatchUnwind;
pub(crate) use crate::message::SessionMsg;
use crate::shared::{Counters, SessionShared, WardenEventKind, lock};

/// At most this many durable writes of one session wait for a flush at once; a write beyond that flushes
/// by itself before the actor goes on (this bounds the committer's queue at this many per session).
pub(crate) const MAX_PENDING_DURABLE: usize = 16;

/// How many times one message may send held requests back to the core (their lease died while they
/// waited for the disk); each round can only enqueue them, so one suffices, and this bounds it anyway.
const MAX_REQUEUE_ROUNDS: usize = 4;

/// The actor (stateless; the state is [`ActorState`]; its arguments are the session's shared state).
pub(crate) struct SessionActor;

type Reply = oneshot::Sender<Result<Lease, RequestError>>;

/// A running session.
pub(crate) struct ActorState {
    shared: Arc<SessionShared>,
    session: Session,
    waiters: HashMap<WaiterId, Reply>,
    next_waiter: u64,
    /// This actor's key in the `Warden`'s timers.
    timer_key: u64,
    /// The deadline armed there, and what it was computed from (the core's deadline, the disk wait's).
    armed: Option<Instant>,
    armed_from: (Option<UnixMs>, Option<Instant>),
    /// The login or refresh, and the keep-alive, this actor has in flight (the core allows one of each);
    /// dropping the state (the actor stopped or failed) aborts them, so that a restarted actor never has
    /// a predecessor's login in flight beside its own (single flight across a crash). A call's slot is
    /// emptied when its answer arrives, which also frees the finished task at once.
    auth_call: Option<(AttemptId, CallGuard)>,
    keepalive_call: Option<(AttemptId, CallGuard)>,
    gate: DurableGate,
}

/// What waits for the disk. Only the newest durable generation and the ticket counter live in the actor
/// for good; the rest is allocated while something waits (a few milliseconds per grant change).
#[derive(Default)]
struct DurableGate {
    /// The newest generation held in a snapshot this actor knows to be durable.
    durable: Generation,
    next_ticket: u64,
    waiting: Option<Box<Waiting>>,
}

/// The durable writes in flight and what they hold back.
#[derive(Default)]
struct Waiting {
    /// Durable writes whose flush has not returned: (ticket, the generation the snapshot holds).
    pending: VecDeque<(u64, Generation)>,
    /// When the oldest pending write stops being waited for.
    deadline: Option<Instant>,
    /// The core's latest publication, when it names a generation not yet durable.
    publish: Option<Lease>,
    /// Requests served with a generation not yet durable.
    serves: Vec<(WaiterId, Lease)>,
    /// A login whose attempt is being saved.
    login: Option<HeldLogin>,
}

impl DurableGate {
    fn waiting(&mut self) -> &mut Waiting {
        self.waiting.get_or_insert_with(Box::default)
    }

    /// The last durable write in flight: (ticket, generation).
    fn last_pending(&self) -> Option<(u64, Generation)> {
        self.waiting.as_ref().and_then(|w| w.pending.back().copied())
    }

    fn pending_len(&self) -> usize {
        self.waiting.as_ref().map_or(0, |w| w.pending.len())
    }

    fn first_pending_ticket(&self) -> Option<u64> {
        self.waiting.as_ref().and_then(|w| w.pending.front().map(|(ticket, _)| *ticket))
    }

    fn deadline(&self) -> Option<Instant> {
        self.waiting.as_ref().and_then(|w| w.deadline)
    }

    /// The newest generation a durable write already covers or will cover.
    fn covered(&self) -> Generation {
        self.last_pending().map_or(self.durable, |(_, generation)| generation.max(self.durable))
    }

    /// The newest generation something held waits for.
    fn needed(&self) -> Generation {
        let Some(waiting) = &self.waiting else { return Generation::NONE };
        let serves = waiting.serves.iter().map(|(_, lease)| lease.generation).max().unwrap_or_default();
        waiting.publish.as_ref().map_or(serves, |lease| lease.generation.max(serves))
    }

    /// Every pending write up to `ticket` is durable (or given up on).
    fn done_upto(&mut self, ticket: u64) {
        let Some(waiting) = self.waiting.as_mut() else { return };
        while let Some(&(t, generation)) = waiting.pending.front() {
            if t > ticket {
                break;
            }
            waiting.pending.pop_front();
            self.durable = self.durable.max(generation);
        }
    }

    /// Frees the waiting state once nothing waits.
    fn tidy(&mut self) {
        if self
            .waiting
            .as_ref()
            .is_some_and(|w| w.pending.is_empty() && w.publish.is_none() && w.serves.is_empty() && w.login.is_none())
        {
            self.waiting = None;
        }
    }
}

/// A login held until the save of its attempt is durable.
struct HeldLogin {
    /// The ticket of that save.
    after: u64,
    now: UnixMs,
    attempt: AttemptId,
    take_over: bool,
    second_factor: Option<Secret>,
}

/// What must hold before a broker call starts (in a cluster: the login's attempt recorded under the
/// lease's fence); `Err` is the message the actor gets instead of the call's answer.
pub(crate) type BeforeCall = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SessionMsg>> + Send>>;

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
    type Arguments = Arc<SessionShared>;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        shared: Arc<SessionShared>,
    ) -> Result<ActorState, ActorProcessingErr> {
        let env = shared.env.clone();
        let now = env.clock.now();
        let restarts = shared.counters.snapshot().restarts;
        let config = SessionConfig::new(shared.id.clone(), shared.policy.as_ref().clone())
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
        let give_up = lock(&shared.supervision).give_up.clone();
        let mut state = ActorState {
            shared: shared.clone(),
            session,
            waiters: HashMap::new(),
            next_waiter: 1,
            timer_key: env.timers.key(),
            armed: None,
            armed_from: (None, None),
            auth_call: None,
            keepalive_call: None,
            gate: DurableGate::default(),
        };
        if let Some(reason) = give_up {
            state.session.handle_give_up(now, reason);
        }
        let span = tracing::info_span!("session", id = %shared.id);
        span.in_scope(|| state.drain(&myself, now, false));
        // Known to the supervisor before it is linked to it (after this returns), so that a failure is
        // always traced back to the session.
        lock(&env.actors).insert(myself.get_id(), shared.clone());
        shared.set_actor(myself);
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

    async fn post_stop(&self, myself: ActorRef<SessionMsg>, state: &mut ActorState) -> Result<(), ActorProcessingErr> {
        state.shared.env.timers.rearm(state.timer_key, state.armed.take(), None, &myself);
        state.shared.clear_actor(myself.get_id());
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
    let now = state.shared.clock.now();
    if state.is_lost() {
        // Lost (the renewal found out, or a write here did): stop; nothing in the mailbox is carried out.
        state.lose(myself, now, "its lease was lost".to_owned());
        return Ok(());
    }
    if state.shared.lease.take_used() {
        state.session.handle_activity(now);
    }
    let mut rearm = false;
    let session = &mut state.session;
    match message {
        SessionMsg::Tick => {
            session.handle_tick(now);
            state.disk_wait_over(now);
            // The entry that fired is gone (or the clock jumped): arm the next deadline whatever it is.
            rearm = true;
        }
        SessionMsg::Token { newer_than, reply } => {
            let waiter = WaiterId(state.next_waiter);
            state.next_waiter += 1;
            state.waiters.insert(waiter, reply);
            session.handle_request(now, waiter, newer_than);
        }
        SessionMsg::Rejected { generation, class } => session.handle_rejected(now, generation, class),
        SessionMsg::AuthDone { attempt, result } => {
            state.auth_call.take_if(|(call, _)| *call == attempt);
            state.session.handle_auth_completed(now, attempt, result);
        }
        SessionMsg::KeepaliveDone { attempt, result } => {
            state.keepalive_call.take_if(|(call, _)| *call == attempt);
            state.session.handle_keepalive_completed(now, attempt, result);
        }
        SessionMsg::Durable { ticket, result } => state.durable(myself, now, ticket, result),
        SessionMsg::Reset => session.handle_reset(now),
        SessionMsg::CredentialsUpdated => {
            session.handle_credentials_updated(now);
            adopt_credentials(&state.shared, &mut state.session, now);
        }
        SessionMsg::SecondFactor(code) => session.handle_second_factor(now, code),
        SessionMsg::Logout { reply } => {
            session.handle_logout(now);
            state.drain(myself, now, false);
            let _ = reply.send(());
            return Ok(());
        }
        SessionMsg::CallPanicked { call, detail } => {
            return Err(format!("broker adapter panicked during {call}: {detail}").into());
        }
        SessionMsg::Crash(why) => return Err(why.into()),
        SessionMsg::LeaseLost { detail } => {
            state.lose(myself, now, detail);
            return Ok(());
        }
    }
    state.drain(myself, now, rearm);
    Ok(())
}

impl ActorState {
    /// Carries out every output of the core, releases what the disk no longer holds back, publishes the
    /// status and re-arms the timer (always when `rearm`, else only if the deadline changed).
    fn drain(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, rearm: bool) {
        if self.is_lost() {
            return;
        }
        let mut events: Vec<SessionEvent> = Vec::new();
        let mut state_change = None;
        for _ in 0..MAX_REQUEUE_ROUNDS {
            // Every snapshot taken while draining is the same (no input reaches the core meanwhile): one
            // write per pass, as durable as the strongest request, where the first one asked for it.
            let mut written: Option<Durability> = None;
            while let Some(output) = self.session.poll_output() {
                if self.is_lost() {
                    // A write was refused for a lost lease: nothing more goes out.
                    return;
                }
                match output {
                    Output::Publish(lease) => self.publish(lease),
                    Output::Serve { waiter, lease } => {
                        if lease.generation <= self.gate.durable {
                            self.answer(waiter, Ok(lease));
                        } else {
                            self.gate.waiting().serves.push((waiter, lease));
                        }
                    }
                    Output::Fail { waiter, error } => self.answer(waiter, Err(error)),
                    Output::Login { attempt, take_over, second_factor } => {
                        self.login(myself, now, attempt, take_over, second_factor)
                    }
                    Output::Refresh { attempt, grant } => self.start_refresh(myself, now, attempt, grant),
                    Output::Keepalive { attempt, grant } => self.start_keepalive(myself, now, attempt, grant),
                    Output::Logout { grant } => self.start_logout(now, grant),
                    Output::Persist { durability } => match (written, durability) {
                        (Some(Durability::Flushed), _) | (Some(_), Durability::Buffered) => {}
                        (_, Durability::Buffered) => {
                            written = Some(Durability::Buffered);
                            let snapshot = self.session.snapshot();
                            if let Err(error) = self.save(&snapshot, Durability::Buffered) {
                                self.write_failed(myself, now, &error);
                            }
                        }
                        (_, _) => {
                            written = Some(Durability::Flushed);
                            self.persist_durable(myself, now);
                        }
                    },
                    Output::Event(event) => {
                        log_event(&event.kind);
                        match &event.kind {
                            EventKind::StateChanged { to, .. } => state_change = Some((*to, event.at)),
                            EventKind::Revoked { generation, .. } => {
                                self.shared.revoked_upto.fetch_max(generation.0, std::sync::atomic::Ordering::AcqRel);
                            }
                            _ => {}
                        }
                        events.push(event);
                    }
                    _ => {}
                }
            }
            if self.is_lost() {
                // A write was refused for a lost lease: nothing more goes out, not even the events.
                return;
            }
            let requeued = self.release(myself, now);
            if requeued.is_empty() {
                break;
            }
            for waiter in requeued {
                self.session.handle_request(now, waiter, None);
            }
        }
        if !events.is_empty() {
            // One log write for the whole step, then the broadcast.
            let written = match self.shared.fence() {
                Some(fence) => self
                    .shared
                    .env
                    .store
                    .fence_status(&self.shared.id, fence)
                    .and_then(|()| self.shared.env.store.append_logs_fenced(&self.shared.id, &events, fence)),
                None => self.shared.env.store.append_logs(&self.shared.id, &events),
            };
            if let Err(error) = written {
                if matches!(error, StoreError::Fenced { .. }) {
                    self.lose(myself, now, format!("a transition log write was refused: {error}"));
                    return;
                }
                tracing::debug!(session = %self.shared.id, %error, "transition log entries not written");
            }
            for event in events {
                self.shared.env.publish(&self.shared.id, event.at, WardenEventKind::Session(event.kind));
            }
        }
        self.publish_status(state_change);
        self.arm_timer(myself, rearm);
    }

    /// The core's publication: a withdrawal or a durable generation goes out at once; a generation not yet
    /// durable waits (replacing any publication waiting before it).
    fn publish(&mut self, lease: Option<Lease>) {
        match lease {
            Some(lease) if lease.generation > self.gate.durable => self.gate.waiting().publish = Some(lease),
            lease => {
                if let Some(waiting) = self.gate.waiting.as_mut() {
                    waiting.publish = None;
                }
                self.shared.lease.publish(lease);
            }
        }
    }

    /// A login starts once the save of its attempt (the durable write just before it) is on disk.
    fn login(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        now: UnixMs,
        attempt: AttemptId,
        take_over: bool,
        second_factor: Option<Secret>,
    ) {
        match self.gate.last_pending() {
            None => self.start_login(myself, now, attempt, take_over, second_factor),
            Some((after, _)) => {
                let held = HeldLogin { after, now, attempt, take_over, second_factor };
                if let Some(earlier) = self.gate.waiting().login.replace(held) {
                    // The core has one login in flight at a time; should another come, the first goes first.
                    debug_assert!(false, "a second login while one waits for its attempt's save");
                    self.start_login(myself, earlier.now, earlier.attempt, earlier.take_over, earlier.second_factor);
                }
            }
        }
    }

    /// Writes the current snapshot durably: now if the store can, else with a ticket for the group commit.
    fn persist_durable(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs) {
        let snapshot = self.session.snapshot();
        let generation = snapshot.generation;
        let store = &self.shared.env.store;
        let outcome = match self.shared.fence() {
            _ if self.gate.pending_len() >= MAX_PENDING_DURABLE => {
                self.save(&snapshot, Durability::Flushed).map(|()| Pending::Durable)
            }
            Some(fence) => {
                store.fence_status(&self.shared.id, fence).and_then(|()| store.save_deferred_fenced(&snapshot, fence))
            }
            None => store.save_deferred(&snapshot),
        };
        match outcome {
            Ok(Pending::Flush) => {
                let ticket = self.gate.next_ticket;
                self.gate.next_ticket += 1;
                let until = self.shared.clock.monotonic_now() + self.shared.env.durable_wait;
                let waiting = self.gate.waiting();
                waiting.pending.push_back((ticket, generation));
                waiting.deadline.get_or_insert(until);
                let actor = myself.clone();
                self.shared.env.commit.submit(Box::new(move |result| {
                    // A stopped actor is fine: its successor starts from the store.
                    let _ = actor.cast(SessionMsg::Durable { ticket, result });
                }));
            }
            Ok(_) => self.gate.durable = self.gate.durable.max(generation),
            Err(error @ StoreError::Fenced { .. }) => self.write_failed(myself, now, &error),
            Err(error) => {
                // Trading goes on from memory.
                self.persist_failed(now, &error);
                self.gate.durable = self.gate.durable.max(generation);
            }
        }
    }

    /// Whether this member lost the session's lease (the actor is stopping).
    fn is_lost(&self) -> bool {
        self.shared.lost.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Saves the snapshot, under the session's fence when the store is shared (refused at once if an
    /// earlier write under it was refused).
    fn save(&self, snapshot: &warden_engine::Snapshot, durability: Durability) -> Result<(), StoreError> {
        let store = &self.shared.env.store;
        match self.shared.fence() {
            Some(fence) => {
                store.fence_status(&self.shared.id, fence).and_then(|()| store.save_fenced(snapshot, durability, fence))
            }
            None => store.save(snapshot, durability),
        }
    }

    /// A write failed: a refusal for the fence means the lease is lost; anything else, the session goes
    /// on from memory and says so.
    fn write_failed(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, error: &StoreError) {
        if matches!(error, StoreError::Fenced { .. }) {
            self.lose(myself, now, format!("a snapshot write was refused: {error}"));
        } else {
            self.persist_failed(now, error);
        }
    }

    /// This member lost the session's lease: answer every waiter `NotOwner`, abort the broker calls in
    /// flight, forget what waited for the disk, and stop — no logout, no revocation, no further write.
    /// The new owner restores the snapshot and reuses a still-valid grant.
    fn lose(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, detail: String) {
        self.shared.mark_lost(now, detail);
        for (_, reply) in self.waiters.drain() {
            let _ = reply.send(Err(RequestError::NotOwner));
        }
        self.auth_call = None;
        self.keepalive_call = None;
        self.gate.waiting = None;
        myself.stop(Some("lease lost".to_owned()));
    }

    /// The flush covering durable write `ticket` (and every earlier one) returned.
    fn durable(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, ticket: u64, result: Result<(), StoreError>) {
        // One flush serves many sessions and returns `Ok` when a write under a lost fence was refused:
        // whether ours was is the fence's status.
        if let (Ok(()), Some(fence)) = (&result, self.shared.fence())
            && let Err(error) = self.shared.env.store.fence_status(&self.shared.id, fence)
        {
            self.lose(myself, now, format!("a durable snapshot write was refused: {error}"));
            return;
        }
        if let Err(error) = &result
            && self.gate.first_pending_ticket().is_some_and(|t| t <= ticket)
        {
            self.persist_failed(now, error);
        }
        self.gate.done_upto(ticket);
        let until = self.shared.clock.monotonic_now() + self.shared.env.durable_wait;
        if let Some(waiting) = self.gate.waiting.as_mut() {
            waiting.deadline = (!waiting.pending.is_empty()).then_some(until);
        }
    }

    /// Past `durable_wait` without a flush: what waited goes out from memory, and an event says so.
    fn disk_wait_over(&mut self, now: UnixMs) {
        if self.gate.deadline().is_some_and(|deadline| self.shared.clock.monotonic_now() >= deadline) {
            let wait = warden_engine::time::format_duration(self.shared.env.durable_wait);
            let error = StoreError::WriteFailed { detail: format!("no flush confirmed the write within {wait}") };
            self.persist_failed(now, &error);
            self.gate.done_upto(u64::MAX);
            if let Some(waiting) = self.gate.waiting.as_mut() {
                waiting.deadline = None;
            }
        }
    }

    /// Hands out what no longer waits for the disk. Returns the requests whose lease died while they
    /// waited: the core is asked for them again.
    fn release(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs) -> Vec<WaiterId> {
        if self.gate.needed() > self.gate.covered() {
            // Held for a generation no durable write covers (a grant restored from the store, saved
            // without a flush by a predecessor): write it durably now.
            self.persist_durable(myself, now);
        }
        let durable = self.gate.durable;
        let Some(waiting) = self.gate.waiting.as_mut() else { return Vec::new() };
        if let Some(lease) = waiting.publish.take_if(|lease| lease.generation <= durable) {
            self.shared.lease.publish(Some(lease));
        }
        let mut requeued = Vec::new();
        if waiting.serves.iter().any(|(_, lease)| lease.generation <= durable) {
            let serves = std::mem::take(&mut waiting.serves);
            let mut ready = Vec::new();
            for (waiter, lease) in serves {
                if lease.generation > durable {
                    waiting.serves.push((waiter, lease));
                } else {
                    ready.push((waiter, lease));
                }
            }
            for (waiter, lease) in ready {
                if self.shared.is_current(&lease, now) {
                    self.answer(waiter, Ok(lease));
                } else if let Some(reply) = self.waiters.remove(&waiter) {
                    let again = WaiterId(self.next_waiter);
                    self.next_waiter += 1;
                    self.waiters.insert(again, reply);
                    requeued.push(again);
                }
            }
        }
        let first_pending = self.gate.first_pending_ticket();
        let login =
            self.gate.waiting.as_mut().and_then(|w| w.login.take_if(|l| first_pending.is_none_or(|t| t > l.after)));
        if let Some(login) = login {
            self.start_login(myself, login.now, login.attempt, login.take_over, login.second_factor);
        }
        self.gate.tidy();
        requeued
    }

    fn persist_failed(&self, now: UnixMs, error: &StoreError) {
        Counters::bump(&self.shared.counters.persist_failures);
        tracing::warn!(%error, "snapshot not saved; continuing from memory");
        let detail = error.to_string();
        self.shared.env.publish(&self.shared.id, now, WardenEventKind::PersistFailed { detail });
    }

    /// Arms the next deadline (the core's, or the end of the wait for the disk) in the timers.
    fn arm_timer(&mut self, myself: &ActorRef<SessionMsg>, force: bool) {
        let from = (self.session.poll_timeout(), self.gate.deadline());
        if !force && from == self.armed_from {
            return;
        }
        let core = from.0.map(|t| self.shared.clock.instant_at(t));
        let desired = match (core, from.1) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.shared.env.timers.rearm(self.timer_key, self.armed, desired, myself);
        self.armed = desired;
        self.armed_from = from;
    }

    fn answer(&mut self, waiter: WaiterId, result: Result<Lease, RequestError>) {
        if let Some(reply) = self.waiters.remove(&waiter) {
            // The caller may have given up; nothing to do then.
            let _ = reply.send(result);
        }
    }

    fn publish_status(&mut self, state_change: Option<(StateKind, UnixMs)>) {
        let generation = self.session.generation();
        let invalid_reason = self.session.invalid_reason().cloned();
        let stall = self.session.stall();
        self.shared.update_status(|status| {
            if let Some((state, since)) = state_change {
                status.state = state;
                status.since = since;
            }
            status.generation = generation;
            status.invalid_reason = invalid_reason;
            status.last_failure = stall.last_failure;
            status.waiting_for = stall.waiting_for;
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
        if self.is_lost() {
            return;
        }
        Counters::bump(&self.shared.counters.logins);
        tracing::info!(attempt = attempt.0, take_over, "login started");
        let broker = self.shared.broker.clone();
        let credentials: Credentials = self.shared.credentials();
        let clock = self.shared.clock.clone();
        let fenced = self.shared.fence().is_some();
        let call = async move {
            // In a cluster the login starts after its attempt was recorded under the fence (and any older
            // owner's attempt was waited out): `now` is the time of that record.
            let now = if fenced { clock.now() } else { now };
            let request = LoginRequest { credentials: &credentials, second_factor: second_factor.as_ref(), take_over };
            broker.login(now, request).await
        };
        let before = self.shared.fence().map(|fence| {
            let check: BeforeCall = Box::pin(crate::cluster::before_login(self.shared.clone(), fence, attempt));
            check
        });
        let guard = self
            .spawn_call_after(myself, "login", before, call, move |result| SessionMsg::AuthDone { attempt, result });
        self.auth_call = Some((attempt, guard));
    }

    fn start_refresh(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, attempt: AttemptId, grant: Arc<Grant>) {
        if self.is_lost() {
            return;
        }
        Counters::bump(&self.shared.counters.refreshes);
        tracing::debug!(attempt = attempt.0, "refresh started");
        let broker = self.shared.broker.clone();
        let call = async move { broker.refresh(now, &grant).await };
        let guard = self.spawn_call(myself, "refresh", call, move |result| SessionMsg::AuthDone { attempt, result });
        self.auth_call = Some((attempt, guard));
    }

    fn start_keepalive(&mut self, myself: &ActorRef<SessionMsg>, now: UnixMs, attempt: AttemptId, grant: Arc<Grant>) {
        if self.is_lost() {
            return;
        }
        Counters::bump(&self.shared.counters.keepalives);
        let broker = self.shared.broker.clone();
        let call = async move { broker.keepalive(now, &grant).await };
        let guard =
            self.spawn_call(myself, "keep-alive", call, move |result| SessionMsg::KeepaliveDone { attempt, result });
        self.keepalive_call = Some((attempt, guard));
    }

    fn start_logout(&self, now: UnixMs, grant: Arc<Grant>) {
        if self.is_lost() {
            return;
        }
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
    /// comes back as a message. The guard aborts the call when dropped.
    fn spawn_call<T, F, M>(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        call: &'static str,
        future: F,
        message: M,
    ) -> CallGuard
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, BrokerError>> + Send + 'static,
        M: FnOnce(Result<T, AuthFailure>) -> SessionMsg + Send + 'static,
    {
        self.spawn_call_after(myself, call, None, future, message)
    }

    /// [`ActorState::spawn_call`] after `before` (outside the call's `auth_timeout`): a check that may
    /// answer the actor instead of letting the call start.
    fn spawn_call_after<T, F, M>(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        call: &'static str,
        before: Option<BeforeCall>,
        future: F,
        message: M,
    ) -> CallGuard
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, BrokerError>> + Send + 'static,
        M: FnOnce(Result<T, AuthFailure>) -> SessionMsg + Send + 'static,
    {
        let me = myself.clone();
        let broker = self.shared.broker.clone();
        let limit = self.shared.policy.auth_timeout;
        let task = tokio::spawn(async move {
            if let Some(before) = before
                && let Err(instead) = before.await
            {
                let _ = me.cast(instead);
                return;
            }
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
        CallGuard(task.abort_handle())
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

/// How long a caller waits for a fresh actor before giving up, beyond the request timeout.
pub(crate) const ACTOR_GRACE: Duration = Duration::from_secs(1);
