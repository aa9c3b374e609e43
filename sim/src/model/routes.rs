//! The endpoint classes a broker model declares to warden, so that the runtime keeps the model's own
//! per-endpoint limits (`Broker::endpoint_limits`) the way it keeps a real adapter's.
//!
//! A model limits non-idempotent requests by its order limit (Saxo's one order a second per session),
//! and the requests of an endpoint with a limit of its own by that limit. Each window of those limits
//! becomes an [`EndpointLimit`] with a fixed name and path, and each request a [`Route`] that falls in
//! exactly the classes the model counts it against: `POST /orders` for an order, `GET|POST
//! /endpoint-N/` for endpoint N, `GET /quotes` (no class) otherwise. The names are static, so at most
//! [`MAX_WINDOWS`] windows of the order limit and of each of the first [`MAX_ENDPOINTS`] endpoints are
//! declared; a model with more keeps them itself (and answers 429 when they are passed).

use warden_engine::limits::{EndpointLimit, LimitScope, Route};

use super::{BrokerSpec, KindId, RateLimit};

/// Windows declared per limit.
pub const MAX_WINDOWS: usize = 4;
/// Endpoints whose own limits are declared.
pub const MAX_ENDPOINTS: usize = 4;

const ORDER_CLASSES: [&str; MAX_WINDOWS] = ["orders", "orders-2", "orders-3", "orders-4"];
const ENDPOINT_PATHS: [&str; MAX_ENDPOINTS] = ["/endpoint-1/", "/endpoint-2/", "/endpoint-3/", "/endpoint-4/"];
const ENDPOINT_CLASSES: [[&str; MAX_WINDOWS]; MAX_ENDPOINTS] = [
    ["endpoint-1", "endpoint-1-2", "endpoint-1-3", "endpoint-1-4"],
    ["endpoint-2", "endpoint-2-2", "endpoint-2-3", "endpoint-2-4"],
    ["endpoint-3", "endpoint-3-2", "endpoint-3-3", "endpoint-3-4"],
    ["endpoint-4", "endpoint-4-2", "endpoint-4-3", "endpoint-4-4"],
];

/// The classes `spec` declares.
pub(crate) fn endpoint_limits(spec: &BrokerSpec) -> Box<[EndpointLimit]> {
    let windows = |limit: &RateLimit, names: &[&'static str; MAX_WINDOWS], method: Option<&'static str>, path| {
        limit
            .windows
            .iter()
            .zip(names)
            .map(move |(w, name)| EndpointLimit::new(name, method, path, LimitScope::Session, w.max, w.per))
            .collect::<Vec<_>>()
    };
    let mut limits = windows(&spec.order_limit, &ORDER_CLASSES, Some("POST"), "/orders");
    for (i, endpoint) in spec.endpoints.iter().enumerate().take(MAX_ENDPOINTS) {
        if let Some(limit) = &endpoint.limit {
            limits.extend(windows(limit, &ENDPOINT_CLASSES[i], None, ENDPOINT_PATHS[i]));
        }
    }
    limits.into_boxed_slice()
}

/// The route of a request of `kind` in `spec`'s terms (see the module documentation).
pub fn route_of(spec: &BrokerSpec, kind: KindId, idempotent: bool) -> Route<'static> {
    let method = if idempotent { "GET" } else { "POST" };
    match spec.endpoint_of(kind) {
        Some(e) if spec.endpoints[e].limit.is_some() => {
            Route::new(method, ENDPOINT_PATHS.get(e).copied().unwrap_or("/endpoint-other/"))
        }
        _ if idempotent => Route::new("GET", "/quotes"),
        _ => Route::new("POST", "/orders"),
    }
}

#[cfg(test)]
mod tests {
    use warden_engine::limits::matching;

    use super::*;
    use crate::model::ModelKind;

    #[test]
    fn an_order_counts_against_the_order_limit_and_a_quote_against_nothing() {
        let spec = BrokerSpec::preset(ModelKind::Saxo);
        let limits = endpoint_limits(&spec);
        assert!(!spec.order_limit.windows.is_empty(), "Saxo limits orders");
        let order = route_of(&spec, KindId(1), false);
        let classes: Vec<&str> = matching(&limits, order).map(|l| l.class).collect();
        assert_eq!(classes.len(), spec.order_limit.windows.len().min(MAX_WINDOWS));
        assert!(classes.iter().all(|c| c.starts_with("orders")));
        assert_eq!(matching(&limits, route_of(&spec, KindId(0), true)).count(), 0);
    }
}
