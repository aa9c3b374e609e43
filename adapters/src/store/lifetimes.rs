//! Observed token lifetimes: what the transition log says about how long a broker's tokens really live.
//!
//! Every installed grant is logged as [`EventKind::GrantInstalled`] with its lifetime as issued.
//! [`observed_lifetimes`] picks those out of a log (oldest first), so a policy can refresh before the
//! shortest lifetime a broker has actually handed out (the Kotak document asks for exactly this).
//! [`SledStore::read_observed_lifetimes`](crate::SledStore::read_observed_lifetimes) and
//! [`MemoryStore::read_observed_lifetimes`](crate::MemoryStore::read_observed_lifetimes) read a session's
//! log and apply it.

use std::time::Duration;

use warden_engine::{AuthKind, EventKind, Generation, SessionEvent, UnixMs};

/// One grant's lifetime as the broker issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedLifetime {
    /// When the grant was issued.
    pub issued_at: UnixMs,
    /// Its generation.
    pub generation: Generation,
    /// Whether a login or a refresh produced it.
    pub kind: AuthKind,
    /// How long its access token was to live.
    pub lifetime: Duration,
}

/// The lifetimes of the grants installed in `events`, in the events' order. Grants without an expiry
/// ("until rejected") have no lifetime and are left out.
pub fn observed_lifetimes(events: &[SessionEvent]) -> Vec<ObservedLifetime> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::GrantInstalled { generation, kind, issued_at, expires_at, lifetime_ms } => {
                let lifetime = match (lifetime_ms, expires_at) {
                    (Some(ms), _) => Duration::from_millis(*ms),
                    (None, Some(expiry)) => expiry.saturating_duration_since(*issued_at),
                    (None, None) => return None,
                };
                Some(ObservedLifetime { issued_at: *issued_at, generation: *generation, kind: *kind, lifetime })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_engine::{Reason, StateKind};

    #[test]
    fn picks_installed_grants_with_a_lifetime() {
        let t = UnixMs::from_millis;
        let events = vec![
            SessionEvent {
                at: t(1),
                kind: EventKind::StateChanged {
                    from: StateKind::Initializing,
                    to: StateKind::Valid,
                    reason: Reason::Authenticated,
                },
            },
            SessionEvent {
                at: t(2),
                kind: EventKind::GrantInstalled {
                    generation: Generation(1),
                    kind: AuthKind::Login,
                    issued_at: t(2),
                    expires_at: Some(t(1_200_002)),
                    lifetime_ms: Some(1_200_000),
                },
            },
            SessionEvent {
                at: t(3),
                kind: EventKind::GrantInstalled {
                    generation: Generation(2),
                    kind: AuthKind::Refresh,
                    issued_at: t(3),
                    expires_at: Some(t(603)),
                    lifetime_ms: None,
                },
            },
            SessionEvent {
                at: t(4),
                kind: EventKind::GrantInstalled {
                    generation: Generation(3),
                    kind: AuthKind::Login,
                    issued_at: t(4),
                    expires_at: None,
                    lifetime_ms: None,
                },
            },
        ];
        let seen = observed_lifetimes(&events);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].lifetime, Duration::from_secs(1200));
        assert_eq!(
            (seen[1].generation, seen[1].kind, seen[1].lifetime),
            (Generation(2), AuthKind::Refresh, Duration::from_millis(600))
        );
    }
}
