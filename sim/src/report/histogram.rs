//! [`DelayHistogram`]: the p99 and maximum of a run's delays, in O(1) per sample without allocating.

use std::time::Duration;

/// The p99 and maximum of request delays, recorded in O(1) without allocating: exact to the
/// millisecond up to 4,096 ms, then within 1/256 (the bucket's upper edge is reported).
#[derive(Clone, Debug)]
pub struct DelayHistogram {
    exact: Vec<u64>,
    /// `(octave, sub-bucket)` counts above the exact range.
    coarse: Vec<u64>,
    count: u64,
    max_ms: u64,
}

const EXACT_MS: u64 = 4_096;
const SUB_BUCKETS: u64 = 256;
const OCTAVES: u64 = 52;

impl Default for DelayHistogram {
    fn default() -> DelayHistogram {
        DelayHistogram {
            exact: vec![0; EXACT_MS as usize],
            coarse: vec![0; (OCTAVES * SUB_BUCKETS) as usize],
            count: 0,
            max_ms: 0,
        }
    }
}

impl DelayHistogram {
    /// An empty histogram.
    pub fn new() -> DelayHistogram {
        DelayHistogram::default()
    }

    /// Records one delay.
    pub fn record(&mut self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.record_ms(ms);
    }

    /// Records one delay in milliseconds.
    pub fn record_ms(&mut self, ms: u64) {
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
        if ms < EXACT_MS {
            self.exact[ms as usize] += 1;
        } else {
            let (octave, sub) = coarse_bucket(ms);
            if let Some(slot) = self.coarse.get_mut((octave * SUB_BUCKETS + sub) as usize) {
                *slot += 1;
            }
        }
    }

    /// How many delays were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The longest delay, in ms.
    pub fn max_ms(&self) -> u64 {
        self.max_ms
    }

    /// The delay at quantile `q` (0..=1), in ms; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.exact.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as u64;
            }
        }
        for (i, n) in self.coarse.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (octave, sub) = (i as u64 / SUB_BUCKETS, i as u64 % SUB_BUCKETS);
                let low = EXACT_MS << octave;
                let width = low / SUB_BUCKETS;
                return (low + (sub + 1) * width - 1).min(self.max_ms);
            }
        }
        self.max_ms
    }

    /// The 99th percentile, in ms.
    pub fn p99_ms(&self) -> u64 {
        self.quantile_ms(0.99)
    }
}

/// The octave (power of two above 4,096 ms) and sub-bucket of a delay of at least 4,096 ms.
fn coarse_bucket(ms: u64) -> (u64, u64) {
    let octave = u64::from((ms / EXACT_MS).ilog2()).min(OCTAVES - 1);
    let low = EXACT_MS << octave;
    let sub = ((ms - low) / (low / SUB_BUCKETS)).min(SUB_BUCKETS - 1);
    (octave, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = DelayHistogram::new();
        assert_eq!(h.p99_ms(), 0);
        for ms in 1..=1000 {
            h.record_ms(ms);
        }
        assert_eq!(h.p99_ms(), 990);
        assert_eq!(h.max_ms(), 1000);
        h.record_ms(100_000);
        assert_eq!(h.max_ms(), 100_000);
        let mut big = DelayHistogram::new();
        big.record_ms(10_000);
        let p = big.p99_ms();
        assert!((10_000..=10_000 + 10_000 / 256 + 1).contains(&p), "{p}");
        big.record(Duration::MAX);
        assert_eq!(big.max_ms(), u64::MAX);
    }
}
