//! The calendar days of a run in the market's zone: [`RunDays`], which numbers them for per-day counts and
//! says which ones the run covers from midnight to midnight (the days a `per_day` bound judges).
//!
//! ```
//! use warden_engine::UnixMs;
//! use warden_sim::report::RunDays;
//!
//! let zone = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
//! // Monday 08:00 IST to Thursday 08:00 IST: four days touched, Tuesday and Wednesday whole.
//! let start = UnixMs::from_timestamp("2026-03-09T02:30:00Z".parse().unwrap());
//! let end = UnixMs::from_timestamp("2026-03-12T02:30:00Z".parse().unwrap());
//! let days = RunDays::new(start, end, &zone);
//! assert_eq!(days.len(), 4);
//! assert_eq!(days.full(), vec![false, true, true, false]);
//! assert_eq!(days.index_of(UnixMs::from_timestamp("2026-03-10T18:29:59Z".parse().unwrap())), Some(1));
//! assert_eq!(days.index_of(UnixMs::from_timestamp("2026-03-10T18:30:00Z".parse().unwrap())), Some(2));
//! ```

use jiff::civil::Date;
use jiff::tz::TimeZone;
use warden_engine::UnixMs;

/// The most days a run can touch (a run lasts at most 366 days).
const MAX_DAYS: usize = 400;

/// One calendar day of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDay {
    /// The date in the market's zone.
    pub date: Date,
    /// When it starts (local midnight, or the first instant after a midnight a DST change skips).
    pub from: UnixMs,
    /// When the next day starts.
    pub to: UnixMs,
    /// Whether the run covers it from start to end.
    pub full: bool,
}

/// The calendar days a run touches, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDays {
    zone: TimeZone,
    days: Vec<RunDay>,
}

impl RunDays {
    /// The days from `start`'s date to the date of the run's last instant, in `zone`.
    pub fn new(start: UnixMs, end: UnixMs, zone: &TimeZone) -> RunDays {
        let mut days = Vec::new();
        let date_of = |t: UnixMs| t.to_timestamp().map(|ts| ts.to_zoned(zone.clone()).date());
        let last_instant = UnixMs::from_millis(end.as_millis().saturating_sub(1).max(start.as_millis()));
        if let (Some(first), Some(last)) = (date_of(start), date_of(last_instant)) {
            let mut date = first;
            while date <= last && days.len() < MAX_DAYS {
                let (Some(from), Some(next)) = (day_start(date, zone), date.tomorrow().ok()) else { break };
                let Some(to) = day_start(next, zone) else { break };
                days.push(RunDay { date, from, to, full: start <= from && to <= end });
                date = next;
            }
        }
        RunDays { zone: zone.clone(), days }
    }

    /// The zone the days are in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The days.
    pub fn days(&self) -> &[RunDay] {
        &self.days
    }

    /// How many days.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Whether the run touches no day (it cannot, but the type allows it).
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// For each day, whether the run covers it whole.
    pub fn full(&self) -> Vec<bool> {
        self.days.iter().map(|d| d.full).collect()
    }

    /// Which day `t` falls on, if the run touches it.
    pub fn index_of(&self, t: UnixMs) -> Option<usize> {
        let i = self.days.partition_point(|d| d.to <= t);
        self.days.get(i).filter(|d| d.from <= t).map(|_| i)
    }
}

/// The first instant of `date` in `zone`.
fn day_start(date: Date, zone: &TimeZone) -> Option<UnixMs> {
    date.to_zoned(zone.clone()).ok().map(|z| UnixMs::from_timestamp(z.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UnixMs {
        UnixMs::from_timestamp(text.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn a_daylight_saving_day_has_its_own_length() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let days = RunDays::new(at("2026-11-01T04:00:00Z"), at("2026-11-02T05:00:00Z"), &zone);
        assert_eq!(days.len(), 1);
        let day = &days.days()[0];
        assert_eq!(day.to.as_millis() - day.from.as_millis(), 25 * 3_600_000);
        assert!(day.full);
        assert_eq!(days.index_of(at("2026-11-02T04:59:59Z")), Some(0));
        assert_eq!(days.index_of(at("2026-11-02T05:00:00Z")), None);
    }

    #[test]
    fn a_run_inside_one_day() {
        let zone = TimeZone::UTC;
        let days = RunDays::new(at("2026-03-09T08:00:00Z"), at("2026-03-09T12:00:00Z"), &zone);
        assert_eq!(days.len(), 1);
        assert_eq!(days.full(), vec![false]);
        let whole = RunDays::new(at("2026-03-09T00:00:00Z"), at("2026-03-10T00:00:00Z"), &zone);
        assert_eq!(whole.full(), vec![true]);
    }
}
