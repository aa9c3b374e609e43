//! A call's round trip through the network: [`Trip`], the one place that says when a broker sees a call
//! and when its answer reaches the caller.
//!
//! The caller sends at `sent_at`; the broker judges the call when it arrives, half the round trip later
//! (`arrives_at = sent_at + latency / 2`, rounded down to the millisecond); the answer reaches the caller
//! when the round trip is over (`answered_at = sent_at + latency`). So an order sent at 02:59:59.900 with
//! a 300 ms round trip reaches the broker at 03:00:00.050, after a 03:00 cut-off, and its answer comes
//! back at 03:00:00.200.
//!
//! ```
//! use std::time::Duration;
//! use warden_engine::UnixMs;
//! use warden_sim::model::Trip;
//!
//! let trip = Trip::new(UnixMs::from_millis(1_000), Duration::from_millis(301));
//! assert_eq!(trip.arrives_at(), UnixMs::from_millis(1_150));
//! assert_eq!(trip.answered_at(), UnixMs::from_millis(1_301));
//! assert_eq!(trip.uplink() + trip.downlink(), trip.latency);
//! ```

use std::time::Duration;

use warden_engine::UnixMs;

/// One call's timing: when it was sent and how long the round trip takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    /// When the caller sent it.
    pub sent_at: UnixMs,
    /// The whole round trip (whole milliseconds).
    pub latency: Duration,
}

impl Trip {
    /// A call sent at `sent_at` whose round trip takes `latency`.
    pub fn new(sent_at: UnixMs, latency: Duration) -> Trip {
        Trip { sent_at, latency }
    }

    /// From sending to the broker seeing it: half the round trip, rounded down to the millisecond.
    pub fn uplink(&self) -> Duration {
        let ms = u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(ms / 2)
    }

    /// From the broker's verdict to the caller having the answer: the rest of the round trip.
    pub fn downlink(&self) -> Duration {
        self.latency.saturating_sub(self.uplink())
    }

    /// When the broker judges the call.
    pub fn arrives_at(&self) -> UnixMs {
        self.sent_at.saturating_add(self.uplink())
    }

    /// When the answer reaches the caller.
    pub fn answered_at(&self) -> UnixMs {
        self.sent_at.saturating_add(self.latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_sees_a_call_half_way() {
        let trip = Trip::new(UnixMs::from_millis(0), Duration::from_millis(300));
        assert_eq!((trip.uplink(), trip.downlink()), (Duration::from_millis(150), Duration::from_millis(150)));
        let zero = Trip::new(UnixMs::from_millis(5), Duration::ZERO);
        assert_eq!((zero.arrives_at(), zero.answered_at()), (UnixMs::from_millis(5), UnixMs::from_millis(5)));
        let odd = Trip::new(UnixMs::from_millis(0), Duration::from_millis(1));
        assert_eq!((odd.uplink(), odd.downlink()), (Duration::ZERO, Duration::from_millis(1)));
    }
}
