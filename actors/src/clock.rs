//! The one real clock.
//!
//! warden's core takes time as a parameter; this is where the runtime gets it. A [`Clock`] reads wall-clock
//! time from one of three sources:
//!
//! - [`Clock::system`]: the system's wall clock, read every time (so warden follows NTP steps and the time
//!   a laptop spent asleep, which tokio's monotonic clock does not count);
//! - [`Clock::starting_at`]: a virtual wall clock that starts at a given instant and advances with
//!   tokio's clock, so that tokio's paused time (`#[tokio::test(start_paused = true)]`, the simulator)
//!   moves it exactly as real time would;
//! - [`Clock::from_source`]: any function (tests inject a wall clock that jumps).
//!
//! Timers sleep on tokio's monotonic clock, which stops during a suspend and ignores clock steps. So a
//! clock with a real or injected source runs one watcher task that compares the wall clock with the
//! monotonic one every [`Clock::check_interval`] (1 s by default): a jump (more than
//! [`JUMP_THRESHOLD_MS`] between the two) is counted on a watch ([`Clock::jumps`]) that every session
//! actor follows, re-evaluating its deadlines at once — after a 45-minute sleep, a token the broker has
//! expired meanwhile is withdrawn within a second, and a cut-off that fell in the sleep takes effect. A
//! jump back changes nothing already decided: the core never lets its time run backwards.
//!
//! The clock also keeps a coarse reading ([`Clock::coarse_now`]): the latest wall time any reader or the
//! watcher saw, in one atomic. The token hot path compares a lease's `usable_until` with it (about a
//! nanosecond), so a lease is not handed out past its end even before its session's actor wakes up.
//!
//! Every other crate is forbidden by `clippy.toml` to read `SystemTime::now` or `Instant::now`; the reads
//! below are the only ones, and are marked.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;
use warden_engine::UnixMs;

/// How far the wall clock may drift from the monotonic clock between two checks before it counts as a
/// jump (a step of the system clock, or a suspend).
pub const JUMP_THRESHOLD_MS: i64 = 500;

/// How often a real clock's watcher compares the wall clock with the monotonic clock, unless set otherwise.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A wall-clock source.
pub type WallSource = Arc<dyn Fn() -> UnixMs + Send + Sync>;

enum Source {
    System,
    Virtual { base_wall: UnixMs },
    Injected(WallSource),
}

struct Inner {
    source: Source,
    /// tokio's instant when the clock was made (the virtual source counts from here).
    base: Instant,
    /// The latest wall time seen, in milliseconds: the hot path's coarse clock.
    coarse_ms: AtomicI64,
    /// Wall-clock jumps detected so far.
    jumps: watch::Sender<u64>,
    check_interval: Duration,
}

/// Wall-clock time for the runtime. Cheap to clone; clones share the coarse reading and the jump watch.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.inner.source {
            Source::System => "system",
            Source::Virtual { .. } => "virtual",
            Source::Injected(_) => "injected",
        };
        f.debug_struct("Clock").field("source", &source).field("now", &self.now()).finish()
    }
}

impl Clock {
    fn new(source: Source, check_interval: Option<Duration>) -> Clock {
        #[allow(clippy::disallowed_methods)] // the one place that reads the clock
        let base = Instant::now(); // the one place that reads the clock
        let clock = Clock {
            inner: Arc::new(Inner {
                source,
                base,
                coarse_ms: AtomicI64::new(i64::MIN),
                jumps: watch::Sender::new(0),
                check_interval: check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL),
            }),
        };
        clock.now();
        if check_interval.is_some() {
            tokio::spawn(watch_for_jumps(Arc::downgrade(&clock.inner)));
        }
        clock
    }

    /// The system's wall clock, followed through clock steps and suspends. Must be called inside a tokio
    /// runtime (it starts the jump watcher).
    pub fn system() -> Clock {
        Clock::new(Source::System, Some(DEFAULT_CHECK_INTERVAL))
    }

    /// A clock that reads `wall` now and advances with tokio's clock (the simulator's virtual wall
    /// clock). It cannot jump, so it has no watcher. Must be called inside a tokio runtime.
    pub fn starting_at(wall: UnixMs) -> Clock {
        Clock::new(Source::Virtual { base_wall: wall }, None)
    }

    /// A clock that reads its wall time from `source` (tests inject one that jumps), watched for jumps
    /// every `check_interval`. Must be called inside a tokio runtime.
    pub fn from_source(source: WallSource, check_interval: Duration) -> Clock {
        Clock::new(Source::Injected(source), Some(check_interval.max(Duration::from_millis(1))))
    }

    /// The current wall-clock time.
    pub fn now(&self) -> UnixMs {
        let now = match &self.inner.source {
            Source::System => {
                #[allow(clippy::disallowed_methods)] // the one place that reads the clock
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(); // the one place that reads the clock
                UnixMs::from_millis(i64::try_from(wall.as_millis()).unwrap_or(i64::MAX))
            }
            Source::Virtual { base_wall } => base_wall.saturating_add(self.elapsed()),
            Source::Injected(source) => source(),
        };
        self.note(now);
        now
    }

    /// The latest wall time this clock has seen (never later than the real time): what the token hot
    /// path compares a lease's end with. Advanced by every [`Clock::now`] and by the jump watcher.
    #[inline(always)]
    pub fn coarse_now(&self) -> UnixMs {
        UnixMs::from_millis(self.inner.coarse_ms.load(Ordering::Relaxed))
    }

    /// Moves the coarse reading forward to `now` (a plain store, and only when it moved: readers on
    /// other cores keep their cache line while nothing changes).
    fn note(&self, now: UnixMs) {
        let ms = now.as_millis();
        if ms > self.inner.coarse_ms.load(Ordering::Relaxed) {
            self.inner.coarse_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Time since the clock was created, on tokio's monotonic clock.
    pub fn elapsed(&self) -> Duration {
        self.monotonic_now().saturating_duration_since(self.inner.base)
    }

    /// tokio's monotonic instant now (for `sleep_until` and timeouts).
    pub fn monotonic_now(&self) -> Instant {
        #[allow(clippy::disallowed_methods)] // the one place that reads the clock
        Instant::now() // the one place that reads the clock
    }

    /// The tokio instant at which the wall clock will show `t`, as far as is known now (for timers; a
    /// later jump of the wall clock is announced on [`Clock::jumps`], and timers are re-armed then).
    pub fn instant_at(&self, t: UnixMs) -> Instant {
        let ahead = t.saturating_duration_since(self.now());
        self.monotonic_now() + ahead
    }

    /// A watch of the number of wall-clock jumps detected: changes when the wall clock jumped.
    pub fn jumps(&self) -> watch::Receiver<u64> {
        self.inner.jumps.subscribe()
    }

    /// How often the watcher looks for jumps (`None`: this clock cannot jump).
    pub fn check_interval(&self) -> Option<Duration> {
        match self.inner.source {
            Source::Virtual { .. } => None,
            _ => Some(self.inner.check_interval),
        }
    }
}

/// The watcher of a real (or injected) clock: every `check_interval`, compares how far the wall clock
/// moved with how far the monotonic clock did; a difference beyond [`JUMP_THRESHOLD_MS`] is a jump.
/// Ends when the clock is dropped.
async fn watch_for_jumps(inner: Weak<Inner>) {
    let Some(clock) = inner.upgrade().map(|inner| Clock { inner }) else { return };
    let mut last = (clock.now(), clock.monotonic_now());
    let interval = clock.inner.check_interval;
    drop(clock);
    loop {
        tokio::time::sleep(interval).await;
        let Some(clock) = inner.upgrade().map(|inner| Clock { inner }) else { return };
        let (wall, mono) = (clock.now(), clock.monotonic_now());
        let moved_wall_ms = wall.as_millis().saturating_sub(last.0.as_millis());
        let moved_mono_ms = i64::try_from(mono.saturating_duration_since(last.1).as_millis()).unwrap_or(i64::MAX);
        if (moved_wall_ms - moved_mono_ms).abs() > JUMP_THRESHOLD_MS {
            tracing::warn!(
                jump_ms = moved_wall_ms - moved_mono_ms,
                "the wall clock jumped (a clock step or a suspend); every session re-evaluates its deadlines"
            );
            clock.inner.jumps.send_modify(|n| *n += 1);
        }
        last = (wall, mono);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_the_virtual_wall_clock() {
        let clock = Clock::starting_at(UnixMs::from_millis(1_000_000));
        assert_eq!(clock.now(), UnixMs::from_millis(1_000_000));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), UnixMs::from_millis(1_000_000 + 3_600_000));
        let at = clock.instant_at(UnixMs::from_millis(1_000_000 + 3_601_000));
        tokio::time::sleep_until(at).await;
        assert_eq!(clock.now(), UnixMs::from_millis(1_000_000 + 3_601_000));
        assert_eq!(clock.coarse_now(), clock.now());
        assert_eq!(clock.check_interval(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_jump_of_an_injected_wall_clock_is_seen_within_the_check_interval() {
        // A wall clock that follows tokio's time, plus an offset the test moves (a laptop asleep: wall
        // time passes while tokio's monotonic time stands still).
        let virtual_wall = Clock::starting_at(UnixMs::from_millis(5_000_000));
        let offset_ms = Arc::new(AtomicI64::new(0));
        let source = {
            let offset_ms = offset_ms.clone();
            Arc::new(move || {
                virtual_wall.now().saturating_add(Duration::from_millis(offset_ms.load(Ordering::SeqCst) as u64))
            }) as WallSource
        };
        let clock = Clock::from_source(source, Duration::from_secs(1));
        let mut jumps = clock.jumps();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(!jumps.has_changed().unwrap(), "a wall clock that keeps pace with tokio's does not jump");
        offset_ms.store(45 * 60_000, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(jumps.has_changed().unwrap(), "the jump is noticed within one check interval");
        assert_eq!(*jumps.borrow_and_update(), 1);
        // The watcher saw the jumped wall clock at its check (4 s after the start).
        assert_eq!(clock.coarse_now(), UnixMs::from_millis(5_000_000 + 4_000 + 45 * 60_000));
    }
}
