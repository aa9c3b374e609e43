//! Snapshots: what a store keeps of a session so that it resumes after a crash or a restart.
//!
//! A snapshot holds the state's name, the grant with its login time, the generation counter, the failure
//! counters and the recent login attempts (so the login rate limit holds across restarts). It does not
//! hold calls in flight: they died with the process, and the attempt they spent is already in the
//! history. [`Session::restore`](crate::Session::restore) turns a snapshot back into a session: a grant
//! still usable resumes as `Valid` with no login; an expired one becomes `Expired` (lazy) or
//! `Reinitializing` (eager).
//!
//! The format carries a version ([`SNAPSHOT_FORMAT_VERSION`]); a snapshot of another version is refused
//! with [`RestoreError::UnsupportedVersion`], never misread.

use serde::{Deserialize, Serialize};

use crate::event::InvalidReason;
use crate::grant::Grant;
use crate::ids::{Generation, SessionId};
use crate::kinds::StateKind;
use crate::secret::Secret;
use crate::time::UnixMs;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// A session's persisted state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Whose snapshot this is.
    pub session_id: SessionId,
    /// When it was taken.
    pub saved_at: UnixMs,
    /// The state at that time.
    pub state: StateKind,
    /// Why the session gave up, when `state` is `Invalid`.
    pub invalid_reason: Option<InvalidReason>,
    /// The newest generation handed out (grants only ever get newer numbers).
    pub generation: Generation,
    /// The current grant, if any.
    pub grant: Option<StoredGrant>,
    /// Recent login attempts, oldest first (the login rate limit's memory).
    pub login_attempts: Vec<UnixMs>,
    /// Failed login or refresh attempts in a row (drives backoff).
    pub consecutive_failures: u32,
    /// Credential rejections in a row (the failure budget).
    pub consecutive_rejections: u32,
    /// No login or refresh before this instant (backoff, a broker's retry-after).
    pub retry_not_before: UnixMs,
    /// The next login asks to take the account over from a competing session.
    pub take_over: bool,
    /// The next grant must come from a full login, not a refresh (session age reached, taking over).
    #[serde(default)]
    pub force_login: bool,
    /// The last time a request was seen (for the idle timeout).
    pub last_activity: UnixMs,
    /// The fingerprint of the credentials the session last ran with (set by the runtime).
    #[serde(default)]
    pub credentials_fingerprint: Option<CredentialsFingerprint>,
    /// With `after_cutoff = "operator"`: the last login or operator action; a daily cut-off after it
    /// means no automatic login until a person acts.
    #[serde(default)]
    pub operator_anchor: Option<UnixMs>,
}

/// A keyed digest of the credentials a session last ran with. The runtime computes it (the core only
/// stores and compares it), so that a session that gave up on bad credentials leaves `Invalid` by itself
/// when it is opened with different ones — an operator who fixed a password and restarted needs no code
/// and no deleted database. Both parts are secrets: they serialise redacted outside the store's records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsFingerprint {
    /// The random key the digest was made with (hex).
    pub key: Secret,
    /// The digest of the credentials under `key` (hex).
    pub digest: Secret,
}

/// The current grant as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredGrant {
    /// The grant (the store encrypts it).
    pub grant: Grant,
    /// Its generation.
    pub generation: Generation,
    /// When the login that began its refresh chain happened (daily cut-off and session age count from
    /// here).
    pub logged_in_at: UnixMs,
    /// The broker rejected the access token (or it expired): only its refresh token may still be used.
    pub access_dead: bool,
    /// The refresh token was rejected.
    pub refresh_dead: bool,
}

/// Why a snapshot cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The snapshot was written in a format this build does not read.
    #[error("snapshot of session {session} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The session named in the snapshot.
        session: String,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The snapshot belongs to another session.
    #[error("snapshot belongs to session {found}, not {expected}")]
    WrongSession {
        /// The session being restored.
        expected: String,
        /// The session named in the snapshot.
        found: String,
    },
}
