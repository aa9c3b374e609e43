//! The supervisor: restarts session actors that fail, with backoff and an intensity limit.
//!
//! ractor restarts nothing by itself; this actor links every session actor to itself and decides in
//! `handle_supervisor_evt`. A failed (or unexpectedly stopped) session actor is restarted after the
//! policy's `reinitialize_delay`, doubled per restart within the `restart_limit` window, capped at
//! `backoff.max`, spread by ±20 %. More than `restart_limit.max` restarts within `restart_limit.within`
//! and the session is restarted once more with the instruction to give up: it goes `Invalid` (persisted,
//! with the reason and an event) instead of looping. The new actor resumes from the store, so a grant
//! that is still valid is reused without a login.
//!
//! While a session has no actor, the lease it last published stays servable until its `usable_until`,
//! when the supervisor withdraws it: a crash does not interrupt trading, and cannot serve a dead token.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use warden_engine::rng::SplitMix64;
use warden_engine::{Generation, InvalidReason, SessionId, UnixMs};

use crate::session_actor::{SessionActor, SessionArgs};
use crate::shared::{Counters, SessionShared, WardenEventKind};

/// A message to the supervisor.
pub(crate) enum SupervisorMsg {
    /// Start supervising a new session.
    Start { args: SessionArgs, reply: oneshot::Sender<Result<(), String>> },
    /// Restart a session whose backoff has passed.
    Respawn { session: SessionId },
    /// Stop supervising a session (it is being closed): do not restart it.
    Forget { session: SessionId, reply: oneshot::Sender<()> },
    /// The lease a dead session actor left published reached its end.
    Withdraw { session: SessionId, generation: Generation },
}

/// The supervisor actor.
pub(crate) struct Supervisor;

struct Entry {
    args: SessionArgs,
    restarts: VecDeque<UnixMs>,
}

/// The supervisor's state.
pub(crate) struct SupervisorState {
    entries: HashMap<SessionId, Entry>,
    by_actor: HashMap<ActorId, SessionId>,
    rng: SplitMix64,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = u64;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        seed: u64,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState { entries: HashMap::new(), by_actor: HashMap::new(), rng: SplitMix64::new(seed) })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Start { args, reply } => {
                let session = args.shared.id.clone();
                let result = spawn(&myself, state, &args).await.map_err(|e| e.to_string());
                if result.is_ok() {
                    state.entries.insert(session, Entry { args, restarts: VecDeque::new() });
                }
                let _ = reply.send(result);
            }
            SupervisorMsg::Respawn { session } => {
                let Some(entry) = state.entries.get(&session) else { return Ok(()) };
                let args = entry.args.clone();
                if let Err(error) = spawn(&myself, state, &args).await {
                    child_down(&myself, state, session, format!("restart failed: {error}"));
                }
            }
            SupervisorMsg::Forget { session, reply } => {
                state.entries.remove(&session);
                state.by_actor.retain(|_, s| *s != session);
                let _ = reply.send(());
            }
            SupervisorMsg::Withdraw { session, generation } => {
                if let Some(entry) = state.entries.get(&session) {
                    let shared = &entry.args.shared;
                    if shared.actor.borrow().is_none() && shared.lease.published_generation() == generation {
                        shared.lease.publish(None);
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, cause) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell.get_id(), error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell.get_id(), reason.unwrap_or_else(|| "stopped without a reason".to_owned()))
            }
            _ => return Ok(()),
        };
        if let Some(session) = state.by_actor.remove(&id) {
            child_down(&myself, state, session, cause);
        }
        Ok(())
    }
}

async fn spawn(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    args: &SessionArgs,
) -> Result<(), ractor::SpawnErr> {
    let (actor, _join) = Actor::spawn_linked(None, SessionActor, args.clone(), myself.get_cell()).await?;
    state.by_actor.insert(actor.get_id(), args.shared.id.clone());
    Ok(())
}

/// A session's actor is gone: schedule its restart (or its giving up).
fn child_down(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, session: SessionId, cause: String) {
    let unit = state.rng.next_unit();
    let Some(entry) = state.entries.get_mut(&session) else { return };
    let shared: Arc<SessionShared> = entry.args.shared.clone();
    shared.actor.send_replace(None);
    if shared.is_closed() {
        return;
    }
    let env = &shared.env;
    let now = env.clock.now();
    let policy = &shared.policy;
    tracing::warn!(session = %session, %cause, "session actor failed");
    Counters::bump(&shared.counters.restarts);

    // Keep the last published lease until its end, then withdraw it.
    if let Some(lease) = shared.lease.load() {
        let wait = lease.usable_until.saturating_duration_since(now);
        let generation = lease.generation;
        let session = session.clone();
        myself.send_after(wait, move || SupervisorMsg::Withdraw { session, generation });
    }

    let within = policy.restart_limit.within.0;
    entry.restarts.push_back(now);
    while entry.restarts.front().is_some_and(|t| t.saturating_add(within) <= now) {
        entry.restarts.pop_front();
    }
    let restarts = u32::try_from(entry.restarts.len()).unwrap_or(u32::MAX);
    let delay = if restarts > policy.restart_limit.max {
        let within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        entry.args.give_up = Some(InvalidReason::RestartLimit { restarts, within_ms });
        Duration::ZERO
    } else {
        restart_delay(policy.reinitialize_delay, policy.backoff.max.0, restarts, unit)
    };
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    env.publish(&session, now, WardenEventKind::ActorRestarting { restarts, delay_ms, cause });
    if entry.args.give_up.is_some() && restarts > policy.restart_limit.max.saturating_add(2) {
        // Even giving up keeps failing (the store cannot be read?): stop trying, close the session.
        tracing::error!(session = %session, "session cannot be restarted; closing it");
        shared.closed.store(true, Ordering::Release);
        shared.lease.publish(None);
        return;
    }
    myself.send_after(delay, move || SupervisorMsg::Respawn { session });
}

/// `base × 2^(restarts−1)`, capped at `max`, spread by ±20 % with `unit` in `[0, 1)`.
fn restart_delay(base: Duration, max: Duration, restarts: u32, unit: f64) -> Duration {
    let exp = restarts.saturating_sub(1).min(30);
    let grown = base.saturating_mul(1u32 << exp).min(max.max(base));
    grown.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_grows_and_caps() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(restart_delay(base, max, 1, 0.5), Duration::from_secs(5));
        assert_eq!(restart_delay(base, max, 2, 0.5), Duration::from_secs(10));
        assert_eq!(restart_delay(base, max, 9, 0.5), Duration::from_secs(60));
        assert_eq!(restart_delay(base, max, 1, 0.0), Duration::from_secs(4));
    }
}
