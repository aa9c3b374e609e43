//! Small statistics for the bench: medians, percentiles, resident memory, a stopwatch on the runtime's
//! clock.

use std::time::Duration;

use warden_actors::Clock;

/// The median of `values` (sorts them); 0 when empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile (0–100, nearest rank) of `sorted` values; 0 when empty.
pub(crate) fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's resident memory now, in KiB (`VmRSS` in `/proc/self/status`); 0 if unknown.
pub(crate) fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Memory the system could still hand out, in KiB (`MemAvailable` in `/proc/meminfo`); 0 if unknown.
pub(crate) fn available_kib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Measures elapsed time on the runtime's clock (its monotonic reading).
#[derive(Clone, Debug)]
pub(crate) struct Stopwatch {
    clock: Clock,
    start: tokio::time::Instant,
}

impl Stopwatch {
    pub(crate) fn start(clock: &Clock) -> Stopwatch {
        Stopwatch { clock: clock.clone(), start: clock.monotonic_now() }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.clock.monotonic_now().saturating_duration_since(self.start)
    }
}

/// Milliseconds, as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile::<u32>(&[], 50.0), 0);
        assert!(rss_kib() > 0.0, "Linux reports the resident memory");
    }
}
