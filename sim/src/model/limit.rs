//! A broker-side rate limiter: sliding windows over the instants of admitted calls, plus a penalty box.
//!
//! Exact sliding-window logs (a ring of at most `max` instants per window), so checking a call is O(1)
//! amortised and allocation-free once the rings have grown. Time is a parameter: the call's arrival
//! instant at the broker.

use std::collections::VecDeque;
use std::time::Duration;

use warden_engine::UnixMs;

use super::spec::{Limit, RateLimit};

/// The state of one rate limit.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    windows: Vec<(Limit, VecDeque<UnixMs>)>,
    penalty: Option<Duration>,
    penalty_until: UnixMs,
}

/// The most instants a ring preallocates; larger limits grow on use.
const PREALLOCATE_MAX: usize = 4_096;

impl Limiter {
    /// A limiter that enforces `spec`.
    pub(crate) fn new(spec: &RateLimit) -> Limiter {
        let windows = spec
            .windows
            .iter()
            .map(|&limit| (limit, VecDeque::with_capacity((limit.max as usize).min(PREALLOCATE_MAX))))
            .collect();
        Limiter { windows, penalty: spec.penalty, penalty_until: UnixMs::from_millis(i64::MIN) }
    }

    /// Admits a call arriving at `at` and records it, or refuses it with how long to wait. A breach
    /// starts the penalty, if there is one; refused calls are not recorded.
    pub(crate) fn admit(&mut self, at: UnixMs) -> Result<(), Duration> {
        if at < self.penalty_until {
            return Err(self.penalty_until.saturating_duration_since(at));
        }
        let mut wait = None;
        for (limit, log) in &mut self.windows {
            let window_start = at.saturating_sub(limit.per);
            while log.front().is_some_and(|&t| t <= window_start) {
                log.pop_front();
            }
            if log.len() >= limit.max as usize {
                let frees_at = log.front().map_or(at, |&t| t.saturating_add(limit.per));
                let w = frees_at.saturating_duration_since(at).max(Duration::from_millis(1));
                wait = Some(wait.map_or(w, |old: Duration| old.max(w)));
            }
        }
        if let Some(wait) = wait {
            return Err(match self.penalty {
                Some(penalty) => {
                    self.penalty_until = at.saturating_add(penalty);
                    penalty
                }
                None => wait,
            });
        }
        for (_, log) in &mut self.windows {
            log.push_back(at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> UnixMs {
        UnixMs::from_millis(ms)
    }

    #[test]
    fn sliding_window_frees_as_calls_age() {
        let mut l =
            Limiter::new(&RateLimit { windows: vec![Limit { max: 2, per: Duration::from_secs(1) }], penalty: None });
        assert!(l.admit(t(0)).is_ok());
        assert!(l.admit(t(100)).is_ok());
        assert_eq!(l.admit(t(500)), Err(Duration::from_millis(500)));
        assert!(l.admit(t(1_000)).is_ok());
        assert_eq!(l.admit(t(1_050)), Err(Duration::from_millis(50)));
    }

    #[test]
    fn a_breach_starts_the_penalty() {
        let mut l = Limiter::new(&RateLimit {
            windows: vec![Limit { max: 1, per: Duration::from_secs(1) }],
            penalty: Some(Duration::from_secs(600)),
        });
        assert!(l.admit(t(0)).is_ok());
        assert_eq!(l.admit(t(10)), Err(Duration::from_secs(600)));
        assert_eq!(l.admit(t(300_010)), Err(Duration::from_secs(300)));
        assert!(l.admit(t(600_010)).is_ok());
    }
}
