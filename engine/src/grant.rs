//! What a login gives and what a login needs: [`Grant`] and [`Credentials`].
//!
//! A grant is the access token with its lifetime, an optional refresh token, and named extras that some
//! brokers hand out with it (a feed token, a WebSocket cookie, a `sid`). Every secret in it is a
//! [`Secret`], so `{:?}` of a grant is safe to log.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::time::UnixMs;

/// The result of a successful login or refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The token sent with every broker request.
    pub access_token: Secret,
    /// The token that buys a new grant without a full login, if the broker has one.
    pub refresh_token: Option<Secret>,
    /// When the broker issued the grant (the adapter's `now` at the call's start: a safe under-estimate).
    pub issued_at: UnixMs,
    /// When the access token dies, if the broker says; `None` means "until rejected or cut off".
    pub expires_at: Option<UnixMs>,
    /// When the refresh token dies, if the broker says.
    pub refresh_expires_at: Option<UnixMs>,
    /// Other secrets that come with the grant, by name (`feed_token`, `ws_cookie`, `sid`).
    pub extras: BTreeMap<String, Secret>,
}

impl Grant {
    /// A grant with an access token issued at `issued_at`, no expiry, no refresh token, no extras.
    pub fn new(access_token: impl Into<Secret>, issued_at: UnixMs) -> Grant {
        Grant {
            access_token: access_token.into(),
            refresh_token: None,
            issued_at,
            expires_at: None,
            refresh_expires_at: None,
            extras: BTreeMap::new(),
        }
    }

    /// Sets the access token's lifetime, counted from `issued_at`.
    #[must_use]
    pub fn expires_in(mut self, lifetime: Duration) -> Grant {
        self.expires_at = Some(self.issued_at.saturating_add(lifetime));
        self
    }

    /// Adds a refresh token that lives `lifetime` from `issued_at` (`None`: no known end).
    #[must_use]
    pub fn with_refresh(mut self, token: impl Into<Secret>, lifetime: Option<Duration>) -> Grant {
        self.refresh_token = Some(token.into());
        self.refresh_expires_at = lifetime.map(|l| self.issued_at.saturating_add(l));
        self
    }

    /// Adds a named extra secret.
    #[must_use]
    pub fn with_extra(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Grant {
        self.extras.insert(name.into(), value.into());
        self
    }

    /// The access token's lifetime as issued, if it has an expiry.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at.map(|e| e.saturating_duration_since(self.issued_at))
    }

    /// Whether the refresh token can still be used at `now`.
    pub fn can_refresh(&self, now: UnixMs) -> bool {
        self.refresh_token.is_some() && self.refresh_expires_at.is_none_or(|end| now < end)
    }
}

/// What a login needs, by name (`user`, `password`, `totp_secret`, `mpin`, `client_id`, …).
///
/// Debug lists the names, never the values.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credentials {
    fields: BTreeMap<String, Secret>,
}

impl Credentials {
    /// No fields.
    pub fn new() -> Credentials {
        Credentials::default()
    }

    /// Adds or replaces one field.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Credentials {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// One field, if present.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.fields.get(name)
    }

    /// The names of the fields present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.fields.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_debug_hides_every_secret() {
        let g = Grant::new("tok-123", UnixMs::from_millis(0))
            .expires_in(Duration::from_secs(1200))
            .with_refresh("ref-456", Some(Duration::from_secs(3600)))
            .with_extra("feed_token", "feed-789");
        let debug = format!("{g:?}");
        for secret in ["tok-123", "ref-456", "feed-789"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert_eq!(g.lifetime(), Some(Duration::from_secs(1200)));
        assert!(g.can_refresh(UnixMs::from_millis(3_599_999)));
        assert!(!g.can_refresh(UnixMs::from_millis(3_600_000)));
        let creds = Credentials::new().with("password", "pw-secret");
        assert_eq!(format!("{creds:?}"), "{\"password\"}");
    }
}
