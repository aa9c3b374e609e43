//! Several warden processes (members) on one shared store: what the runtime adds around the store's
//! leases and fences.
//!
//! - `before_login`: what a login in a cluster does before its broker call — wait out a login attempt an
//!   older owner recorded less than `auth_timeout` ago, then record its own attempt under the session's
//!   fence (refused when the lease is lost: no login).
//! - `blocking`: a store call on tokio's blocking pool (a shared store answers after a round trip).
//!
//! The renewal loop (renew every lease at once, heartbeat) is the `Warden`'s; see
//! `docs/cluster.md`.

use std::sync::Arc;

use warden_engine::{AttemptId, AuthFailure, ErrorClass, Fence, SessionId, Store, StoreError};

use crate::message::SessionMsg;
use crate::shared::SessionShared;

/// Runs a store call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    store: Arc<dyn Store>,
    call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || call(store.as_ref())).await.unwrap_or_else(|error| {
        Err(StoreError::WriteFailed { detail: format!("the store call did not finish: {error}") })
    })
}

/// Before a login's broker call, in a cluster: waits out a login attempt recorded under an older fence
/// less than `auth_timeout` ago (its owner may still be inside that call: two logins would compete),
/// then records this attempt under `fence`. A refusal means the lease is lost (`LeaseLost`: no login);
/// a store that cannot record it fails the attempt as transient (no unrecorded login either).
pub(crate) async fn before_login(
    shared: Arc<SessionShared>,
    fence: Fence,
    attempt: AttemptId,
) -> Result<(), SessionMsg> {
    let store = shared.env.store.clone();
    let id: SessionId = shared.id.clone();
    let not_recorded = |error: StoreError| SessionMsg::AuthDone {
        attempt,
        result: Err(AuthFailure::new(
            ErrorClass::Transient,
            format!("the login attempt could not be recorded in the shared store ({error}); no login was started"),
        )),
    };
    let last = {
        let id = id.clone();
        blocking(store.clone(), move |store| store.login_attempts(&id, 1)).await.map_err(not_recorded)?
    };
    if let Some(previous) = last.last().filter(|previous| previous.fence < fence) {
        let until = previous.at.saturating_add(shared.policy.auth_timeout);
        let wait = until.saturating_duration_since(shared.clock.now());
        if !wait.is_zero() {
            tracing::info!(session = %id, previous = %previous.fence, "waiting out an older owner's login attempt");
            tokio::time::sleep(wait).await;
        }
    }
    let now = shared.clock.now();
    match blocking(store, move |store| store.record_login_attempt(&id, fence, now)).await {
        Ok(()) => Ok(()),
        Err(error @ StoreError::Fenced { .. }) => {
            Err(SessionMsg::LeaseLost { detail: format!("recording a login attempt was refused: {error}") })
        }
        Err(error) => Err(not_recorded(error)),
    }
}
