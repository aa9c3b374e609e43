//! Endpoint classes and their published rate limits, as data (the types live in
//! [`warden_engine::limits`], so that the `Broker` port can declare them).
//!
//! Each adapter declares a table of [`EndpointLimit`]s (`SAXO_LIMITS`, `IBKR_LIMITS`, `KITE_LIMITS`, …)
//! and returns it from `Broker::endpoint_limits`: the runtime then limits every class a call falls in
//! (`SessionHandle::execute_at`), not only the account. [`classify`] finds the class of a request; the
//! HTTP shell files the server's remaining-allowance headers under that class and the grant the call
//! carried (see [`crate::broker::http::AllowanceBook`]), and `Broker::reported_allowance` hands them to
//! the runtime's limiter.
//!
//! ```
//! use warden_adapters::broker::limits::{Route, classify};
//! use warden_adapters::broker::saxo::SAXO_LIMITS;
//!
//! let class = classify(SAXO_LIMITS, Route::new("POST", "/sim/openapi/trade/v2/orders")).unwrap();
//! assert_eq!(class.class, "orders");
//! ```

pub use warden_engine::limits::{EndpointLimit, LimitScope, Route, ServerAllowance, classify, matching};
