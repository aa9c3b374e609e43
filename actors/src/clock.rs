//! The one real clock.
//!
//! warden's core takes time as a parameter; this is where the runtime gets it. A [`Clock`] is a
//! wall-clock base (read once) plus tokio's monotonic `Instant`, so that tokio's paused time
//! (`#[tokio::test(start_paused = true)]`, the simulator) moves it exactly like real time moves it in
//! production. Every other crate is forbidden by `clippy.toml` to read `SystemTime::now` or
//! `Instant::now`; the two reads below are the only ones, and are marked.
//!
//! The wall base is read once, so later steps of the system clock (NTP corrections) are not followed:
//! warden's notion of wall time advances monotonically from start-up. Restart the process after a
//! large clock correction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use warden_engine::UnixMs;

/// Wall-clock time for the runtime: a base plus tokio's monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall: UnixMs,
    base: Instant,
}

impl Clock {
    /// The system's wall clock. Must be called inside a tokio runtime.
    pub fn system() -> Clock {
        #[allow(clippy::disallowed_methods)] // the one place that reads the clock
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(); // the one place that reads the clock
        let ms = i64::try_from(wall.as_millis()).unwrap_or(i64::MAX);
        Clock::starting_at(UnixMs::from_millis(ms))
    }

    /// A clock that reads `wall` now and advances with tokio's clock (the simulator's virtual wall
    /// clock). Must be called inside a tokio runtime.
    pub fn starting_at(wall: UnixMs) -> Clock {
        #[allow(clippy::disallowed_methods)] // the one place that reads the clock
        let base = Instant::now(); // the one place that reads the clock
        Clock { base_wall: wall, base }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> UnixMs {
        self.base_wall.saturating_add(self.elapsed())
    }

    /// Time since the clock was created (monotonic).
    pub fn elapsed(&self) -> Duration {
        self.monotonic_now().saturating_duration_since(self.base)
    }

    /// tokio's monotonic instant now (for `sleep_until` and timeouts).
    pub fn monotonic_now(&self) -> Instant {
        #[allow(clippy::disallowed_methods)] // the one place that reads the clock
        Instant::now() // the one place that reads the clock
    }

    /// The tokio instant at which the wall clock shows `t` (for timers).
    pub fn instant_at(&self, t: UnixMs) -> Instant {
        let offset_ms = t.as_millis().saturating_sub(self.base_wall.as_millis()).max(0);
        self.base + Duration::from_millis(offset_ms.unsigned_abs())
    }
}

/// governor reads warden's clock, so rate limits follow tokio's paused time in tests and simulations.
impl governor::clock::Clock for Clock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_the_wall_clock() {
        let clock = Clock::starting_at(UnixMs::from_millis(1_000_000));
        assert_eq!(clock.now(), UnixMs::from_millis(1_000_000));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), UnixMs::from_millis(1_000_000 + 3_600_000));
        let at = clock.instant_at(UnixMs::from_millis(1_000_000 + 3_601_000));
        tokio::time::sleep_until(at).await;
        assert_eq!(clock.now(), UnixMs::from_millis(1_000_000 + 3_601_000));
    }
}
