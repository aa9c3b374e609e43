//! Configuration files: `warden.toml`, and the located, suggest-the-right-name errors every TOML parser
//! of the workspace shares.
//!
//! - [`locate`]: a parsed [`Document`](locate::Document) with the byte span of every key, dotted
//!   [`KeyPath`](locate::KeyPath)s, byte offsets to lines and columns.
//! - [`located`]: [`LocatedProblem`](located::LocatedProblem) ("file line L, column C: problem"), the
//!   [`Locator`](located::Locator) that rewrites serde's errors to name the key as written, and
//!   [`suggest`](located::suggest) for "did you mean".

pub mod locate;
pub mod located;
