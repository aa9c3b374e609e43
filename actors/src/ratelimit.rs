//! Request rate limits per broker account, shared by every session of that account.
//!
//! governor's GCRA limiter on warden's [`Clock`], so that tokio's paused time drives it in tests and
//! simulations. Waiting uses tokio's `sleep` for the time governor reports, never governor's own
//! `until_ready` (which sleeps on a clock tokio cannot pause). The wait is bounded by the caller.
//!
//! The login rate limit is not here: it lives in the core, as a sliding window over the persisted login
//! history, because it must hold across restarts (a governor bucket in memory would be refilled by
//! every crash).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;
use warden_engine::Rate;

use crate::clock::Clock;

/// The request limiter of one broker account.
pub struct AccountLimiter {
    account: String,
    clock: Clock,
    limiter: RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<Duration>>,
}

impl std::fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLimiter").field("account", &self.account).finish_non_exhaustive()
    }
}

impl AccountLimiter {
    /// A limiter allowing `rate.max` requests per `rate.per`, in bursts of up to `rate.max`.
    pub fn new(account: impl Into<String>, rate: Rate, clock: Clock) -> AccountLimiter {
        let max = NonZeroU32::new(rate.max).unwrap_or(NonZeroU32::MIN);
        let period = (rate.per.0 / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(max)).allow_burst(max);
        AccountLimiter { account: account.into(), limiter: RateLimiter::direct_with_clock(quota, clock), clock }
    }

    /// The account's name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Takes one request's worth of allowance, waiting (on tokio's clock) until `deadline` at most.
    /// Returns false if the allowance did not free up in time.
    pub async fn acquire(&self, deadline: Instant) -> bool {
        loop {
            match self.limiter.check() {
                Ok(()) => return true,
                Err(not_until) => {
                    let at =
                        self.clock.monotonic_now() + not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
                    if at > deadline {
                        return false;
                    }
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }
}
