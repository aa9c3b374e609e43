//! The requests a broker model refused for their token, kept for timelines and tests: [`Refusal`].
//!
//! At most [`REFUSALS_KEPT`] are kept per model (a storm of rejections must not grow memory without
//! bound); the rest are counted.

use warden_engine::UnixMs;

use super::{KindId, TokenVerdict};

/// The most refusals a model keeps.
pub const REFUSALS_KEPT: usize = 10_000;

/// One request refused for its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// When the caller sent it.
    pub sent_at: UnixMs,
    /// When the broker judged it.
    pub arrived_at: UnixMs,
    /// Which kind of request.
    pub kind: KindId,
    /// Why: expired, revoked (and why) or unknown.
    pub verdict: TokenVerdict,
}

/// The kept refusals and the count of those not kept.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    pub(crate) kept: Vec<Refusal>,
    pub(crate) dropped: u64,
}

impl Refusals {
    pub(crate) fn record(&mut self, refusal: Refusal) {
        if self.kept.len() < REFUSALS_KEPT {
            self.kept.push(refusal);
        } else {
            self.dropped += 1;
        }
    }
}
