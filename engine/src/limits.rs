//! A broker's published request limits per endpoint class, and what its answers say about the allowance
//! left, as plain data.
//!
//! A broker adapter declares a table of [`EndpointLimit`]s ([`crate::Broker::endpoint_limits`]): which
//! requests belong to a class (a method and a path fragment), whom the limit counts against
//! ([`LimitScope`]) and the rate. The runtime gives every class a limiter of its own (one per session, or
//! one per account for limits that count the whole application or user) and makes each call whose
//! [`Route`] falls in a class wait for all of them. [`classify`] finds the first class of a request,
//! [`matching`] every class it counts against. A broker's answer can say how much of a window is left
//! ([`ServerAllowance`], from `X-RateLimit-*` headers): the runtime tells the limiter, so calls the
//! broker counted from elsewhere (another platform, the broker's own web page) are respected too.
//!
//! ```
//! use std::time::Duration;
//! use warden_engine::limits::{EndpointLimit, LimitScope, Route, classify, matching};
//!
//! const TABLE: &[EndpointLimit] = &[
//!     EndpointLimit::new("orders", Some("POST"), "/orders", LimitScope::Session, 1, Duration::from_secs(1)),
//!     EndpointLimit::new("any", None, "/", LimitScope::App, 120, Duration::from_secs(60)),
//! ];
//! let order = Route::new("POST", "/trade/v2/orders");
//! assert_eq!(classify(TABLE, order).map(|l| l.class), Some("orders"));
//! assert_eq!(matching(TABLE, order).count(), 2);
//! ```

use std::time::Duration;

use crate::policy::Rate;
use crate::time::UnixMs;

/// Whom a limit counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitScope {
    /// One session (one grant).
    Session,
    /// The whole application (all sessions of one API key).
    App,
    /// One user name across every session and platform.
    User,
}

/// One class of endpoints and its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLimit {
    /// The class's name (`orders`, `quote`, `tickle`), unique within a table.
    pub class: &'static str,
    /// The HTTP method the class covers (`None`: every method).
    pub method: Option<&'static str>,
    /// The path fragment the class covers: a request belongs to the class when its path contains it.
    pub path: &'static str,
    /// Whom the limit counts against.
    pub scope: LimitScope,
    /// Requests allowed per window.
    pub max: u32,
    /// The window.
    pub per: Duration,
}

impl EndpointLimit {
    /// A class: requests with `method` (any if `None`) whose path contains `path`, `max` per `per`.
    pub const fn new(
        class: &'static str,
        method: Option<&'static str>,
        path: &'static str,
        scope: LimitScope,
        max: u32,
        per: Duration,
    ) -> EndpointLimit {
        EndpointLimit { class, method, path, scope, max, per }
    }

    /// The limit as a [`Rate`].
    pub fn rate(&self) -> Rate {
        Rate::new(self.max, self.per)
    }

    /// Whether a request on `route` belongs to this class.
    pub fn matches(&self, route: Route<'_>) -> bool {
        self.method.is_none_or(|m| m.eq_ignore_ascii_case(route.method)) && route.path.contains(self.path)
    }
}

/// Where a request goes: its HTTP method and its URL's path (never the query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    /// The HTTP method (`GET`, `POST`; any case).
    pub method: &'a str,
    /// The URL's path (`/trade/v2/orders`).
    pub path: &'a str,
}

impl<'a> Route<'a> {
    /// A route.
    pub const fn new(method: &'a str, path: &'a str) -> Route<'a> {
        Route { method, path }
    }
}

/// The first class in `table` that a request belongs to (tables list specific classes before general
/// ones).
pub fn classify<'t>(table: &'t [EndpointLimit], route: Route<'_>) -> Option<&'t EndpointLimit> {
    table.iter().find(|limit| limit.matches(route))
}

/// Every class in `table` that a request belongs to (a request can count against several limits, e.g.
/// Saxo's orders per second and its trade service group per minute).
pub fn matching<'t, 'r>(table: &'t [EndpointLimit], route: Route<'r>) -> impl Iterator<Item = &'t EndpointLimit> + 'r
where
    't: 'r,
{
    table.iter().filter(move |limit| limit.matches(route))
}

/// What a broker's answer said about the allowance left in its tightest window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerAllowance {
    /// When the answer came.
    pub at: UnixMs,
    /// Requests the broker will still take before the window refills.
    pub remaining: u64,
    /// How long after `at` the window refills.
    pub reset_after: Duration,
}

impl ServerAllowance {
    /// The instant the window refills.
    pub fn resets_at(&self) -> UnixMs {
        self.at.saturating_add(self.reset_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[EndpointLimit] = &[
        EndpointLimit::new("orders", Some("POST"), "/orders", LimitScope::Session, 1, Duration::from_secs(1)),
        EndpointLimit::new("any", None, "/", LimitScope::App, 120, Duration::from_secs(60)),
    ];

    #[test]
    fn first_match_wins_and_every_match_counts() {
        assert_eq!(classify(TABLE, Route::new("post", "/trade/orders")).map(|l| l.class), Some("orders"));
        assert_eq!(classify(TABLE, Route::new("GET", "/trade/orders")).map(|l| l.class), Some("any"));
        assert_eq!(classify(TABLE, Route::new("GET", "nothing")), None);
        assert_eq!(matching(TABLE, Route::new("POST", "/orders")).count(), 2);
        assert_eq!(TABLE[1].rate(), Rate::new(120, Duration::from_secs(60)));
    }

    #[test]
    fn an_allowance_resets_after_its_wait() {
        let a = ServerAllowance { at: UnixMs::from_millis(1_000), remaining: 0, reset_after: Duration::from_secs(2) };
        assert_eq!(a.resets_at(), UnixMs::from_millis(3_000));
    }
}
