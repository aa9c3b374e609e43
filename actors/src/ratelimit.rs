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
    /// A limiter that never lets more than `rate.max` requests into any window of length `rate.per`
    /// (what brokers count), allowing bursts of a quarter of that.
    ///
    /// GCRA lets `burst + window / period` cells into a window, so `period` is chosen for
    /// `burst + sustained = max`: bursts of `max / 4` (at least 1), then `max − burst` per window, spread.
    pub fn new(account: impl Into<String>, rate: Rate, clock: Clock) -> AccountLimiter {
        let (burst, sustained) = shape(rate.max);
        // A millisecond of slack: brokers count with millisecond clocks and either window edge.
        let period = rate.per.0 / sustained + Duration::from_millis(1);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst);
        AccountLimiter { account: account.into(), limiter: RateLimiter::direct_with_clock(quota, clock.clone()), clock }
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

/// The burst and the sustained count per window of a limit of `max` per window.
fn shape(max: u32) -> (u32, u32) {
    let max = max.max(1);
    let burst = (max / 4).max(1);
    (burst, max.saturating_sub(burst).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_plus_sustained_never_exceeds_the_limit() {
        for max in [1, 2, 3, 4, 5, 10, 50, 120, 1000] {
            let (burst, sustained) = shape(max);
            assert!(burst >= 1 && sustained >= 1);
            assert!(burst + sustained <= max.max(2), "max {max}: {burst} + {sustained}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_of_the_limit_ever_holds_more_than_max() {
        let clock = Clock::starting_at(warden_engine::UnixMs::from_millis(0));
        let limiter = AccountLimiter::new("acct", Rate::new(10, Duration::from_secs(1)), clock.clone());
        let mut admitted = Vec::new();
        let deadline = clock.monotonic_now() + Duration::from_secs(3600);
        for _ in 0..200 {
            assert!(limiter.acquire(deadline).await);
            admitted.push(clock.now().as_millis());
        }
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|u| **u < t + 1000).count();
            assert!(in_window <= 10, "{in_window} requests within 1 s from {t} ms");
        }
        // And the limiter is not needlessly slow: 200 requests take well under 40 s.
        assert!(*admitted.last().unwrap_or(&0) < 30_000);
    }
}
