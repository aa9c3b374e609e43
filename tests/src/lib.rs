//! warden-tests: cross-crate integration and end-to-end tests (see `tests/`).
//!
//! The library itself only holds helpers shared by those tests.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The repository's `sim/scenarios` directory.
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("sim").join("scenarios")
}

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
