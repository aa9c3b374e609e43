//! How often streams may reconnect: a [`ReconnectBudget`] per broker account (at most `max` connection
//! attempts in any window of `per`, across every stream of the account) and a [`Backoff`] per stream
//! (exponential with jitter between consecutive failures). Pure: time is a parameter.
//!
//! A flapping network makes every stream of an account fail at once; without a shared budget each would
//! retry on its own schedule and together they would hammer the broker — a connection storm that some
//! brokers punish by blocking the account. The budget spaces the attempts of all of them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use warden_engine::UnixMs;
use warden_engine::rng::SplitMix64;

/// At most `max` connection attempts per window of `per`, for every stream of one account together.
#[derive(Debug)]
pub struct ReconnectBudget {
    account: String,
    max: u32,
    per: Duration,
    attempts: Mutex<VecDeque<UnixMs>>,
}

impl ReconnectBudget {
    /// A budget of `max` attempts (at least one) per `per` for `account`.
    pub fn new(account: impl Into<String>, max: u32, per: Duration) -> ReconnectBudget {
        let max = max.max(1);
        ReconnectBudget {
            account: account.into(),
            max,
            per,
            attempts: Mutex::new(VecDeque::with_capacity(max as usize)),
        }
    }

    /// The account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Takes a place for an attempt at `now` and returns `None`, or returns the earliest instant at which
    /// one will be free (nothing is taken then).
    pub fn try_take(&self, now: UnixMs) -> Option<UnixMs> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        while attempts.front().is_some_and(|t| t.saturating_add(self.per) <= now) {
            attempts.pop_front();
        }
        if attempts.len() < self.max as usize {
            attempts.push_back(now);
            return None;
        }
        attempts.front().map(|t| t.saturating_add(self.per))
    }
}

/// Exponential backoff with ±20 % jitter between a stream's consecutive failed connections: `min`,
/// doubled for each failure, capped at `max`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff from `min` to `max`, its jitter seeded with `seed`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff { min, max: max.max(min), failures: 0, rng: SplitMix64::new(seed) }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let base = self.min.saturating_mul(1 << exponent).min(self.max);
        // A factor in [0.8, 1.2).
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.8 + 0.4 * unit).min(self.max)
    }

    /// The connection held: start again from `min`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_spaces_attempts_of_an_account() {
        let budget = ReconnectBudget::new("acct", 2, Duration::from_secs(10));
        let t = |s: i64| UnixMs::from_millis(s * 1000);
        assert_eq!(budget.try_take(t(0)), None);
        assert_eq!(budget.try_take(t(1)), None);
        assert_eq!(budget.try_take(t(2)), Some(t(10)), "full until the first attempt leaves the window");
        assert_eq!(budget.try_take(t(10)), None);
        assert_eq!(budget.try_take(t(10)), Some(t(11)));
    }

    #[test]
    fn backoff_doubles_within_its_bounds() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let nominal = Duration::from_millis(100 * (1 << i.min(10))).min(Duration::from_secs(1));
            assert!(*d >= nominal.mul_f64(0.8) && *d <= Duration::from_secs(1), "{i}: {d:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(121));
    }
}
