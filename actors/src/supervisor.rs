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
//!
//! The supervisor keeps no table of its own: a session's restart history lives with the session's shared
//! state, and the `Warden`'s table of running actors says which session an actor ran.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use warden_engine::rng::SplitMix64;
use warden_engine::{Generation, InvalidReason};

use crate::session_actor::SessionActor;
use crate::shared::{Counters, Env, SessionShared, WardenEventKind, lock};

/// A message to the supervisor.
pub(crate) enum SupervisorMsg {
    /// Restart a session whose backoff has passed.
    Respawn { shared: Arc<SessionShared> },
    /// The lease a dead session actor left published reached its end.
    Withdraw { shared: Arc<SessionShared>, generation: Generation },
}

/// The supervisor actor. Sessions are spawned linked to it by `Warden::open` (concurrently, without a
/// round trip through this actor); each session actor registers itself in the `Warden`'s table of
/// actors before it is linked, so that every failure reported here is traced back to its session.
pub(crate) struct Supervisor;

/// The supervisor's state: the jitter generator, and the `Warden`'s shared state (its table of actors).
pub(crate) struct SupervisorState {
    rng: SplitMix64,
    env: Arc<Env>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = (u64, Arc<Env>);

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        (seed, env): (u64, Arc<Env>),
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState { rng: SplitMix64::new(seed), env })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Respawn { shared } => {
                if shared.is_closed() {
                    return Ok(());
                }
                let spawned = Actor::spawn_linked(None, SessionActor, shared.clone(), myself.get_cell()).await;
                if let Err(error) = spawned {
                    child_down(&myself, state, shared, format!("restart failed: {error}"));
                }
            }
            SupervisorMsg::Withdraw { shared, generation } => {
                if shared.has_no_actor() && shared.lease.published_generation() == generation {
                    shared.lease.publish(None);
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
        let shared = lock(&state.env.actors).remove(&id);
        if let Some(shared) = shared {
            shared.clear_actor(id);
            child_down(&myself, state, shared, cause);
        }
        Ok(())
    }
}

/// A session's actor is gone: schedule its restart (or its giving up), unless the session is closed.
fn child_down(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    shared: Arc<SessionShared>,
    cause: String,
) {
    if shared.is_closed() {
        return;
    }
    let unit = state.rng.next_unit();
    let session = shared.id.clone();
    let env = &shared.env;
    let now = env.clock.now();
    let policy = &shared.policy;
    tracing::warn!(session = %session, %cause, "session actor failed");
    Counters::bump(&shared.counters.restarts);

    // Keep the last published lease until its end, then withdraw it.
    if let Some(lease) = shared.lease.load() {
        let wait = lease.usable_until.saturating_duration_since(now);
        let generation = lease.generation;
        let shared = shared.clone();
        myself.send_after(wait, move || SupervisorMsg::Withdraw { shared, generation });
    }

    let within = policy.restart_limit.within.0;
    let (restarts, giving_up) = {
        let mut supervision = lock(&shared.supervision);
        supervision.restarts.push_back(now);
        while supervision.restarts.front().is_some_and(|t| t.saturating_add(within) <= now) {
            supervision.restarts.pop_front();
        }
        let restarts = u32::try_from(supervision.restarts.len()).unwrap_or(u32::MAX);
        if restarts > policy.restart_limit.max {
            let within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
            supervision.give_up = Some(InvalidReason::RestartLimit { restarts, within_ms });
        }
        (restarts, supervision.give_up.is_some())
    };
    let delay = if restarts > policy.restart_limit.max {
        Duration::ZERO
    } else {
        restart_delay(policy.reinitialize_delay, policy.backoff.max.0, restarts, unit)
    };
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    env.publish(&session, now, WardenEventKind::ActorRestarting { restarts, delay_ms, cause });
    if giving_up && restarts > policy.restart_limit.max.saturating_add(2) {
        // Even giving up keeps failing (the store cannot be read?): stop trying, close the session.
        tracing::error!(session = %session, "session cannot be restarted; closing it");
        shared.closed.store(true, Ordering::Release);
        shared.lease.publish(None);
        return;
    }
    myself.send_after(delay, move || SupervisorMsg::Respawn { shared });
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
