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

/// How far out of order arrivals can come (the longest one-way trip a scenario can draw, with room to
/// spare): entries this much older than a window's start are dropped.
const MAX_REORDER: Duration = Duration::from_secs(60);

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
            // Calls are judged when they are sent, with the instant they arrive: a call sent later on a
            // faster path can arrive earlier. The log is kept sorted by arrival, and a call counts the
            // admitted arrivals in the window that ends with it, (at − per, at].
            let window_start = at.saturating_sub(limit.per);
            let oldest_kept = window_start.saturating_sub(MAX_REORDER);
            while log.front().is_some_and(|&t| t <= oldest_kept) {
                log.pop_front();
            }
            let from = log.partition_point(|&t| t <= window_start);
            let to = log.partition_point(|&t| t <= at);
            if to - from >= limit.max as usize {
                let frees_at = log.get(from).map_or(at, |&t| t.saturating_add(limit.per));
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
            let position = log.partition_point(|&t| t <= at);
            log.insert(position, at);
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
    fn calls_arriving_out_of_order_are_counted_in_their_own_window() {
        let mut l =
            Limiter::new(&RateLimit { windows: vec![Limit { max: 2, per: Duration::from_secs(1) }], penalty: None });
        // Judged in send order, arriving out of order: 900, then 100 (a faster path), then 1_050.
        assert!(l.admit(t(900)).is_ok());
        assert!(l.admit(t(100)).is_ok());
        // The window (50, 1_050] holds 100 and 900: full. (950, 1_950] would hold only 900.
        assert_eq!(l.admit(t(1_050)), Err(Duration::from_millis(50)));
        assert!(l.admit(t(1_101)).is_ok(), "100 left the window");
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
