//! warden-sim: replays broker-session expiry scenarios against the real warden engine in virtual time.
//!
//! A scenario (a TOML file, see `docs/scenarios.md`) names a broker model and its faults, a policy, a
//! workload, a fault plan and the bounds the run must stay within. This crate holds the parts the runner
//! builds on:
//!
//! - [`scenario`]: the file format and its parser; [`scenario::Scenario::load`] gives typed, resolved values
//!   (instants as [`warden_engine::UnixMs`], durations, the engine's [`warden_engine::Policy`]) or a
//!   [`scenario::ScenarioError`] that names the file, the line, the key and the problem.
//! - [`model`]: in-process broker models ([`model::BrokerModel`]) that implement [`warden_engine::Broker`]
//!   and enforce each broker's rules (lifetimes, error codes, rate limits, resets), deterministically from a
//!   seed and without reading a clock: time always comes in as a parameter.
//! - [`mock`]: the same models served over HTTP and WebSocket in each broker's wire format (mock brokers
//!   for real clients, in real time).
//! - [`report`]: the run's [`report::Report`], the `[expect]` bounds ([`report::Expectations`]) and the
//!   plain-text tables the CLI prints.
//!
//! ```
//! use warden_sim::scenario::Scenario;
//!
//! let scenario = Scenario::parse(r#"
//!     name = "demo"
//!     seed = 7
//!     start = "2026-03-09T08:00:00+05:30[Asia/Kolkata]"
//!     duration = "1d"
//!     [broker]
//!     model = "kotak-neo"
//!     [policy]
//!     preset = "hybrid"
//! "#, "demo.toml").unwrap();
//! assert_eq!(scenario.broker.kind.name(), "kotak-neo");
//! ```

#![forbid(unsafe_code)]

pub mod bench;
pub mod html;
pub mod mock;
pub mod model;
pub mod report;
pub mod runner;
pub mod scenario;
