//! Several warden processes (members) on one shared store: what the runtime adds around the store's
//! leases and fences.
//!
//! - [`owner`]: rendezvous (highest-random-weight) placement of a session over the live members — a pure
//!   function: every member computes the same owner from the same member list, and a member joining or
//!   leaving moves only the sessions it gains or loses.
//! - `before_login`: what a login in a cluster does before its broker call — wait out a login attempt an
//!   older owner recorded less than `auth_timeout` ago, then record its own attempt under the session's
//!   fence (refused when the lease is lost: no login).
//! - `blocking`: a store call on tokio's blocking pool (a shared store answers after a round trip).
//!
//! The renewal loop (renew every lease at once, heartbeat, re-place sessions) is the `Warden`'s; see
//! `docs/cluster.md`.

use std::sync::Arc;

use warden_engine::{AttemptId, AuthFailure, ErrorClass, Fence, MemberName, SessionId, Store, StoreError};

use crate::message::SessionMsg;
use crate::shared::SessionShared;

/// FNV-1a over `bytes`, then a SplitMix64 finaliser: a hash that is the same on every member and every
/// build (unlike std's `DefaultHasher`, whose algorithm may change).
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The weight of `member` for `session`: the member with the highest weight owns the session.
fn weight(session: u64, member: &MemberName) -> u64 {
    mix(session ^ stable_hash(member.as_str().as_bytes()))
}

/// The member that owns `session` among `members` (rendezvous hashing), `None` when there are none.
/// Independent of the order of `members`; ties (astronomically rare) go to the smaller name.
pub fn owner<'a>(session: &SessionId, members: &'a [MemberName]) -> Option<&'a MemberName> {
    let key = stable_hash(session.as_str().as_bytes());
    members.iter().max_by(|a, b| weight(key, a).cmp(&weight(key, b)).then_with(|| b.cmp(a)))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<MemberName> {
        names.iter().map(|n| MemberName::new(*n).expect("member name")).collect()
    }

    fn sessions(n: usize) -> Vec<SessionId> {
        (0..n).map(|i| SessionId::new(format!("acct-{i}")).expect("session id")).collect()
    }

    #[test]
    fn the_owner_does_not_depend_on_the_order_of_members() {
        let abc = members(&["a", "b", "c"]);
        let cba = members(&["c", "b", "a"]);
        for session in sessions(500) {
            assert_eq!(owner(&session, &abc), owner(&session, &cba));
        }
        assert_eq!(owner(&SessionId::new("x").expect("id"), &[]), None);
    }

    #[test]
    fn a_joining_member_takes_only_its_share() {
        let before = members(&["a", "b", "c"]);
        let after = members(&["a", "b", "c", "d"]);
        let all = sessions(10_000);
        let mut moved = 0;
        for session in &all {
            let (old, new) = (owner(session, &before).expect("owner"), owner(session, &after).expect("owner"));
            if old != new {
                assert_eq!(new.as_str(), "d", "a session moves only to the member that joined");
                moved += 1;
            }
        }
        // About a quarter moves (to the new member), nothing else.
        assert!((2_250..=2_750).contains(&moved), "{moved} of 10,000 moved");
    }

    #[test]
    fn a_leaving_member_hands_out_only_its_own() {
        let before = members(&["a", "b", "c"]);
        let after = members(&["a", "c"]);
        for session in &sessions(10_000) {
            let old = owner(session, &before).expect("owner");
            if old.as_str() != "b" {
                assert_eq!(owner(session, &after), Some(old), "a session of a member that stays does not move");
            }
        }
    }

    #[test]
    fn sessions_spread_evenly() {
        let three = members(&["warden-1", "warden-2", "warden-3"]);
        let mut counts = [0usize; 3];
        for session in &sessions(10_000) {
            let at = three.iter().position(|m| Some(m) == owner(session, &three)).expect("owner");
            counts[at] += 1;
        }
        for count in counts {
            // 3,333 each, within 4 %.
            assert!((3_200..=3_467).contains(&count), "{counts:?}");
        }
    }
}
