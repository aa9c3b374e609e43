//! The login rate limit, as a sliding window over the persisted history of login attempts.
//!
//! Counting attempts (rather than holding a token bucket in memory) is what lets the limit survive a
//! restart: the history is part of the [`crate::Snapshot`], so a crash loop or a process restart cannot
//! buy a fresh allowance and hammer the broker into locking the account.

use std::collections::VecDeque;

use crate::policy::Rate;
use crate::time::UnixMs;

/// The most attempts ever kept, whatever the rate says (a bound on the snapshot's size).
pub const MAX_HISTORY: usize = 256;

/// Recent login attempts, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginHistory {
    attempts: VecDeque<UnixMs>,
}

impl LoginHistory {
    /// A history from recorded attempts (any order; the newest [`MAX_HISTORY`] are kept).
    pub fn from_attempts(mut attempts: Vec<UnixMs>) -> LoginHistory {
        attempts.sort_unstable();
        let skip = attempts.len().saturating_sub(MAX_HISTORY);
        LoginHistory { attempts: attempts.into_iter().skip(skip).collect() }
    }

    /// A history for a session whose real history was lost (a damaged store): as if all but one of the
    /// attempts `rate` allows had just been made, so one login may start at once and the rate holds
    /// from then on.
    pub fn assume_spent(now: UnixMs, rate: Option<Rate>) -> LoginHistory {
        let spent = rate.map_or(0, |r| (r.max as usize).saturating_sub(1)).min(MAX_HISTORY);
        LoginHistory { attempts: std::iter::repeat_n(now, spent).collect() }
    }

    /// The earliest instant at or after `now` at which another attempt stays within `rate`.
    pub fn next_allowed(&self, now: UnixMs, rate: Option<Rate>) -> UnixMs {
        let Some(rate) = rate else { return now };
        let max = rate.max as usize;
        if max == 0 {
            return UnixMs::MAX;
        }
        if self.attempts.len() < max {
            return now;
        }
        // The attempt `max` places back must have left the window.
        let oldest_in_window = self.attempts[self.attempts.len() - max];
        oldest_in_window.saturating_add(rate.per.0).max(now)
    }

    /// Records an attempt at `now`, keeping only what `rate` needs (and at most [`MAX_HISTORY`]).
    pub fn record(&mut self, now: UnixMs, rate: Option<Rate>) {
        self.attempts.push_back(now);
        let keep = rate.map_or(1, |r| r.max as usize).clamp(1, MAX_HISTORY);
        while self.attempts.len() > keep {
            self.attempts.pop_front();
        }
    }

    /// Forgets the newest attempt (a login thrown away and made again counts once).
    pub fn forget_last(&mut self) {
        self.attempts.pop_back();
    }

    /// The attempts kept, oldest first.
    pub fn attempts(&self) -> impl Iterator<Item = UnixMs> + '_ {
        self.attempts.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn three_per_five_minutes() {
        let rate = Some(Rate::new(3, Duration::from_secs(300)));
        let mut h = LoginHistory::default();
        let t = |s: i64| UnixMs::from_millis(s * 1000);
        for s in [0, 10, 20] {
            assert_eq!(h.next_allowed(t(s), rate), t(s));
            h.record(t(s), rate);
        }
        assert_eq!(h.next_allowed(t(30), rate), t(300));
        assert_eq!(h.next_allowed(t(301), rate), t(301));
        let restored = LoginHistory::from_attempts(h.attempts().collect());
        assert_eq!(restored.next_allowed(t(30), rate), t(300));
        assert_eq!(h.next_allowed(t(30), None), t(30));
    }

    #[test]
    fn a_lost_history_allows_one_login_then_the_rate() {
        let rate = Some(Rate::new(3, Duration::from_secs(300)));
        let t = |s: i64| UnixMs::from_millis(s * 1000);
        let mut h = LoginHistory::assume_spent(t(0), rate);
        assert_eq!(h.next_allowed(t(0), rate), t(0));
        h.record(t(0), rate);
        assert_eq!(h.next_allowed(t(1), rate), t(300));
        assert_eq!(LoginHistory::assume_spent(t(0), None).next_allowed(t(0), None), t(0));
    }
}
