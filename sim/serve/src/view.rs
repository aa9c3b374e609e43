//! What the status API, the page and `/metrics` show of a session: one [`SessionView`], built from the
//! session's status, its published lease (looked at without counting as a use), its stats, the serve
//! counters and its transition log.
//!
//! From the transition log: the login attempts within the policy's `login_rate` window (logins that
//! ended in a grant or a failure in the window), and the token lifetimes — as issued (each installed
//! grant's lifetime) and as actually lived (from a grant's issue to its rejection, expiry, failed
//! keep-alive or daily cut-off; grants replaced early by a refresh, reset or logout are left out, they
//! say nothing about how long the broker lets a token live) — as count, p5 and p50.
//!
//! Nothing secret is shown: a token appears as its fingerprint (the first 12 hex digits of its SHA-256)
//! and its age.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use warden_actors::SessionStats;
use warden_engine::{
    AuthKind, ErrorClass, EventKind, Generation, InvalidReason, LastFailure, Reason, SessionEvent, StateKind, UnixMs,
    WaitingFor,
};

use crate::metrics::SessionCounters;
use crate::registry::ServedSession;

/// The most transition-log entries read for one view (the store keeps 1,000 per session by default).
pub const HISTORY_LIMIT: usize = 1_000;

/// A session as the status API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SessionView {
    /// The id.
    pub id: String,
    /// The broker adapter's name.
    pub broker: String,
    /// The state.
    pub state: StateKind,
    /// The newest generation.
    pub generation: u64,
    /// When the state was entered.
    pub since: String,
    /// The same, in Unix milliseconds.
    pub since_ms: i64,
    /// Whether a token is handed out now.
    pub usable: bool,
    /// Whether `/readyz` counts it as ready, and if not why.
    pub ready: Readiness,
    /// Why it gave up, when `Invalid`.
    pub invalid_reason: Option<ReasonView>,
    /// The published token (never the token itself).
    pub token: Option<TokenView>,
    /// The last failed login, refresh or keep-alive since the last grant.
    pub last_failure: Option<FailureView>,
    /// What it waits for when it has no usable grant.
    pub waiting_for: Option<WaitView>,
    /// Login attempts in the login-rate window.
    pub logins: LoginWindow,
    /// Token lifetimes from the transition log.
    pub lifetimes: Lifetimes,
    /// What the runtime did for it.
    pub stats: SessionStats,
    /// Failed logins, refreshes and keep-alives since the service started, by `call:class`.
    pub failures: BTreeMap<String, u64>,
    /// The proxy's view: where calls go, how many wait and how many are in flight.
    pub proxy: ProxyView,
    /// Where a person signs in for a browser login, if the session has one.
    pub login_url: Option<String>,
}

/// Whether a session counts as ready.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// Ready or not.
    pub ready: bool,
    /// Why not.
    pub because: Option<String>,
}

/// Why a session gave up.
#[derive(Clone, Debug, Serialize)]
pub struct ReasonView {
    /// `needs_human`, `after_cutoff`, `bad_credentials`, `failure_budget_spent`, `competing`,
    /// `restart_limit`.
    pub kind: &'static str,
    /// The sentence.
    pub text: String,
    /// Whether a person can fix it (a second factor, a login code, new credentials, a reset).
    pub operator_action: bool,
}

/// The published token, described.
#[derive(Clone, Debug, Serialize)]
pub struct TokenView {
    /// Its generation.
    pub generation: u64,
    /// The first 12 hex digits of the token's SHA-256.
    pub fingerprint: String,
    /// When it was issued (Unix ms).
    pub issued_at_ms: i64,
    /// How old it is.
    pub age_ms: u64,
    /// When the broker expires it (Unix ms), if it does.
    pub expires_at_ms: Option<i64>,
    /// Time left until then.
    pub expires_in_ms: Option<u64>,
    /// Until when warden hands it out (Unix ms).
    pub usable_until_ms: i64,
    /// Time left until then.
    pub usable_for_ms: u64,
}

/// The last failure, with its sentence.
#[derive(Clone, Debug, Serialize)]
pub struct FailureView {
    /// When (Unix ms).
    pub at_ms: i64,
    /// `login`, `refresh` or `keep-alive`.
    pub call: String,
    /// Its class (`transient`).
    pub class: &'static str,
    /// What the broker said (no secrets).
    pub detail: String,
    /// The sentence.
    pub text: String,
}

/// What the session waits for, with its sentence.
#[derive(Clone, Debug, Serialize)]
pub struct WaitView {
    /// `call`, `attempt` or `warmup`.
    pub kind: &'static str,
    /// Since when a call is in flight, or when the next attempt or the warm-up is (Unix ms).
    pub at_ms: i64,
    /// The sentence.
    pub text: String,
}

/// Login attempts within the policy's login-rate window.
#[derive(Clone, Debug, Serialize)]
pub struct LoginWindow {
    /// Attempts that ended in the window.
    pub in_window: u32,
    /// The most the policy allows in it (`None`: no limit).
    pub max: Option<u32>,
    /// The window.
    pub window_ms: Option<u64>,
}

/// A distribution's count and low percentiles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: usize,
    /// The 5th percentile (nearest rank).
    pub p5_ms: Option<u64>,
    /// The median (nearest rank).
    pub p50_ms: Option<u64>,
}

/// Token lifetimes as issued and as lived.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lifetimes {
    /// As the broker issued them.
    pub issued: Percentiles,
    /// From issue to rejection or expiry.
    pub lived: Percentiles,
}

/// The proxy's view of a session.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyView {
    /// The API root proxied calls go to (`None`: the adapter's default or the grant's).
    pub base_url: Option<String>,
    /// Proxied calls waiting for a token or the request limit.
    pub waiting: u64,
    /// Proxied calls in flight (waiting or at the broker).
    pub in_flight: u64,
}

/// An error class as a label (`auth_expired`).
pub fn class_label(class: &ErrorClass) -> &'static str {
    match class {
        ErrorClass::AuthExpired => "auth_expired",
        ErrorClass::RateLimited { .. } => "rate_limited",
        ErrorClass::Transient => "transient",
        ErrorClass::Permanent => "permanent",
        ErrorClass::NeedsHuman => "needs_human",
        ErrorClass::Competing => "competing",
        _ => "other",
    }
}

/// A reason to give up, as a label, and whether a person can fix it.
pub fn reason_label(reason: &InvalidReason) -> (&'static str, bool) {
    match reason {
        InvalidReason::NeedsHuman { .. } => ("needs_human", true),
        InvalidReason::AfterCutoff { .. } => ("after_cutoff", true),
        InvalidReason::BadCredentials { .. } => ("bad_credentials", true),
        InvalidReason::FailureBudgetSpent { .. } => ("failure_budget_spent", true),
        InvalidReason::Competing => ("competing", false),
        InvalidReason::RestartLimit { .. } => ("restart_limit", false),
        _ => ("other", false),
    }
}

/// A token's fingerprint: the first 12 hex digits of its SHA-256.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    hex::encode(&digest[..6])
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Builds the view of `served` at `now` from its transition log `log` (oldest first) and `counters`.
pub fn build(served: &ServedSession, now: UnixMs, log: &[SessionEvent], counters: &SessionCounters) -> SessionView {
    let handle = &served.handle;
    let status = handle.status();
    let token = handle.peek_lease().map(|lease| {
        let grant = &lease.grant;
        TokenView {
            generation: lease.generation.0,
            fingerprint: fingerprint(grant.access_token.expose()),
            issued_at_ms: grant.issued_at.as_millis(),
            age_ms: ms(now.saturating_duration_since(grant.issued_at)),
            expires_at_ms: grant.expires_at.map(UnixMs::as_millis),
            expires_in_ms: grant.expires_at.map(|at| ms(at.saturating_duration_since(now))),
            usable_until_ms: lease.usable_until.as_millis(),
            usable_for_ms: ms(lease.usable_until.saturating_duration_since(now)),
        }
    });
    let usable = status.state.token_usable() && token.is_some();
    let invalid_reason = status.invalid_reason.as_ref().map(|reason| {
        let (kind, operator_action) = reason_label(reason);
        ReasonView { kind, text: reason.to_string(), operator_action }
    });
    let last_failure = status.last_failure.as_ref().map(failure_view);
    let waiting_for = status.waiting_for.as_ref().map(wait_view);
    let ready = readiness(status.state, usable, status.last_failure.as_ref(), status.invalid_reason.as_ref());
    let policy = handle.policy();
    let window = policy.login_rate.map(|rate| rate.per.0);
    let logins = LoginWindow {
        in_window: window.map_or(0, |w| logins_since(log, now.saturating_sub(w))),
        max: policy.login_rate.map(|rate| rate.max),
        window_ms: window.map(ms),
    };
    SessionView {
        id: served.id().to_string(),
        broker: served.api.name().to_owned(),
        state: status.state,
        generation: status.generation.0,
        since: status.since.to_string(),
        since_ms: status.since.as_millis(),
        usable,
        ready,
        invalid_reason,
        token,
        last_failure,
        waiting_for,
        logins,
        lifetimes: lifetimes(log),
        stats: handle.stats(),
        failures: counters.failures(),
        proxy: ProxyView {
            base_url: served.base_url.as_ref().map(|u| u.as_str().to_owned()),
            waiting: counters.waiting(),
            in_flight: counters.in_flight(),
        },
        login_url: served.login_url.clone(),
    }
}

fn failure_view(failure: &LastFailure) -> FailureView {
    FailureView {
        at_ms: failure.at.as_millis(),
        call: failure.call.to_string(),
        class: class_label(&failure.class),
        detail: failure.detail.clone(),
        text: failure.to_string(),
    }
}

fn wait_view(waiting: &WaitingFor) -> WaitView {
    let (kind, at) = match waiting {
        WaitingFor::Call { since, .. } => ("call", *since),
        WaitingFor::Attempt { at, .. } => ("attempt", *at),
        WaitingFor::Warmup { at } => ("warmup", *at),
    };
    WaitView { kind, at_ms: at.as_millis(), text: waiting.to_string() }
}

/// `/readyz`'s reading of one session: ready when a token is handed out now, or when it is `Expired`
/// with no failure since its last grant (idle, overnight or lazy: it logs in on the next request).
fn readiness(
    state: StateKind,
    usable: bool,
    failure: Option<&LastFailure>,
    invalid: Option<&InvalidReason>,
) -> Readiness {
    let because = match state {
        _ if usable => None,
        StateKind::Valid | StateKind::ExpiringSoon => Some("its token is being replaced".to_owned()),
        StateKind::Expired if failure.is_none() => None,
        StateKind::Expired => failure.map(|f| format!("expired; {f}")),
        StateKind::Initializing => Some("its first login is under way".to_owned()),
        StateKind::Reinitializing => Some(match failure {
            Some(f) => format!("logging in again; {f}"),
            None => "logging in again".to_owned(),
        }),
        StateKind::Invalid => Some(match invalid {
            Some(reason) => format!("gave up: {reason}"),
            None => "gave up".to_owned(),
        }),
        StateKind::Stopped => Some("logged out".to_owned()),
    };
    Readiness { ready: because.is_none(), because }
}

/// Logins that ended (in a grant or a failure) at or after `since`.
pub fn logins_since(log: &[SessionEvent], since: UnixMs) -> u32 {
    let ended = log.iter().filter(|e| e.at >= since).filter(|e| {
        matches!(
            e.kind,
            EventKind::GrantInstalled { kind: AuthKind::Login, .. }
                | EventKind::AuthFailed { kind: AuthKind::Login, .. }
        )
    });
    u32::try_from(ended.count()).unwrap_or(u32::MAX)
}

/// Token lifetimes from a transition log (oldest first). See the module documentation.
pub fn lifetimes(log: &[SessionEvent]) -> Lifetimes {
    let mut issued = Vec::new();
    let mut issued_at: HashMap<Generation, UnixMs> = HashMap::new();
    let mut lived = Vec::new();
    for event in log {
        match &event.kind {
            EventKind::GrantInstalled { generation, issued_at: at, expires_at, lifetime_ms, .. } => {
                issued_at.insert(*generation, *at);
                if let Some(lifetime) = lifetime_ms.or_else(|| expires_at.map(|e| ms(e.saturating_duration_since(*at))))
                {
                    issued.push(lifetime);
                }
            }
            EventKind::Revoked { generation, reason } if ended_by_the_broker(reason) => {
                if let Some(at) = issued_at.remove(generation) {
                    lived.push(ms(event.at.saturating_duration_since(at)));
                }
            }
            EventKind::Revoked { generation, .. } => {
                issued_at.remove(generation);
            }
            _ => {}
        }
    }
    Lifetimes { issued: percentiles(issued), lived: percentiles(lived) }
}

/// Whether a revocation ends a token's natural life (rather than warden replacing it early).
fn ended_by_the_broker(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::Rejected
            | Reason::TokenExpired
            | Reason::KeepaliveUnauthenticated
            | Reason::KeepaliveFailed
            | Reason::DailyCutoff
    )
}

/// Count, p5 and p50 (nearest rank) of `values`.
pub fn percentiles(mut values: Vec<u64>) -> Percentiles {
    values.sort_unstable();
    let rank = |q: f64| -> Option<u64> {
        if values.is_empty() {
            return None;
        }
        let index = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        values.get(index).copied()
    };
    Percentiles { count: values.len(), p5_ms: rank(0.05), p50_ms: rank(0.5) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> UnixMs {
        UnixMs::from_millis(ms)
    }

    fn installed(t: i64, generation: u64, lifetime_ms: u64) -> SessionEvent {
        SessionEvent {
            at: at(t),
            kind: EventKind::GrantInstalled {
                generation: Generation(generation),
                kind: AuthKind::Login,
                issued_at: at(t),
                expires_at: Some(at(t + lifetime_ms as i64)),
                lifetime_ms: Some(lifetime_ms),
            },
        }
    }

    fn revoked(t: i64, generation: u64, reason: Reason) -> SessionEvent {
        SessionEvent { at: at(t), kind: EventKind::Revoked { generation: Generation(generation), reason } }
    }

    #[test]
    fn lifetimes_as_issued_and_as_lived() {
        let log = vec![
            installed(0, 1, 3_600_000),
            revoked(1_200_000, 1, Reason::Rejected),
            installed(1_300_000, 2, 3_600_000),
            revoked(1_400_000, 2, Reason::Reset),
            installed(1_500_000, 3, 1_800_000),
            revoked(3_300_000, 3, Reason::TokenExpired),
        ];
        let seen = lifetimes(&log);
        assert_eq!(seen.issued, Percentiles { count: 3, p5_ms: Some(1_800_000), p50_ms: Some(3_600_000) });
        assert_eq!(seen.lived, Percentiles { count: 2, p5_ms: Some(1_200_000), p50_ms: Some(1_200_000) });
        assert_eq!(logins_since(&log, at(1_300_000)), 2);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = percentiles((1..=100).collect());
        assert_eq!((p.count, p.p5_ms, p.p50_ms), (100, Some(5), Some(50)));
        assert_eq!(percentiles(vec![]), Percentiles::default());
        assert_eq!(percentiles(vec![7]).p5_ms, Some(7));
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01");
    }
}
