//! Endpoint classes and their published rate limits, as data.
//!
//! Each adapter declares a table of [`EndpointLimit`]s (`SAXO_LIMITS`, `IBKR_LIMITS`, `KITE_LIMITS`, …):
//! which requests belong to a class (a method and a path prefix), whom the limit counts against
//! ([`LimitScope`]) and the rate. The runtime does not apply these tables yet (it limits one rate per
//! account); they are here so that it can: [`classify`] finds the class of a request, and the HTTP shell
//! files the server's remaining-allowance headers under that class (see
//! [`crate::broker::http::AllowanceBook`]).
//!
//! ```
//! use warden_adapters::broker::limits::classify;
//! use warden_adapters::broker::saxo::SAXO_LIMITS;
//!
//! let class = classify(SAXO_LIMITS, "POST", "/sim/openapi/trade/v2/orders").unwrap();
//! assert_eq!(class.class, "orders");
//! ```

use std::time::Duration;

use warden_engine::Rate;

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
    /// The limit as the engine's [`Rate`].
    pub fn rate(&self) -> Rate {
        Rate::new(self.max, self.per)
    }

    /// Whether a request with `method` and `path` belongs to this class.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.is_none_or(|m| m.eq_ignore_ascii_case(method)) && path.contains(self.path)
    }
}

/// The first class in `table` that a request belongs to (tables list specific classes before general
/// ones).
pub fn classify<'t>(table: &'t [EndpointLimit], method: &str, path: &str) -> Option<&'t EndpointLimit> {
    table.iter().find(|limit| limit.matches(method, path))
}

/// Every class in `table` that a request belongs to (a request can count against several limits, e.g.
/// Kite's orders per second and per minute).
pub fn matching<'t>(
    table: &'t [EndpointLimit],
    method: &'t str,
    path: &'t str,
) -> impl Iterator<Item = &'t EndpointLimit> {
    table.iter().filter(move |limit| limit.matches(method, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[EndpointLimit] = &[
        EndpointLimit {
            class: "orders",
            method: Some("POST"),
            path: "/orders",
            scope: LimitScope::Session,
            max: 1,
            per: Duration::from_secs(1),
        },
        EndpointLimit {
            class: "any",
            method: None,
            path: "/",
            scope: LimitScope::App,
            max: 120,
            per: Duration::from_secs(60),
        },
    ];

    #[test]
    fn first_match_wins() {
        assert_eq!(classify(TABLE, "post", "/trade/orders").map(|l| l.class), Some("orders"));
        assert_eq!(classify(TABLE, "GET", "/trade/orders").map(|l| l.class), Some("any"));
        assert_eq!(classify(TABLE, "GET", "nothing"), None);
        assert_eq!(matching(TABLE, "POST", "/orders").count(), 2);
        assert_eq!(TABLE[1].rate(), Rate::new(120, Duration::from_secs(60)));
    }
}
