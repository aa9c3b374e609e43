//! Wall-clock calendar arithmetic: the next daily cut-off or warm-up time in a time zone.
//!
//! A daily cut-off is a local time ("03:00 in Asia/Kolkata"), so its instant moves with daylight saving
//! time. jiff does the zone arithmetic; local times that do not exist on a spring-forward day are moved
//! forward by the gap (02:30 → 03:30 EDT) and times that occur twice on a fall-back day take their first
//! occurrence — jiff's "compatible" rule, the one RFC 5545 calendars use.

use crate::policy::{LocalTime, Zone};
use crate::time::UnixMs;

/// The first daily occurrence of the local time `at` in `zone` strictly after `t`.
///
/// Once a day: on a fall-back day a time that the wall clock shows twice counts only at its first
/// occurrence.
///
/// Returns [`UnixMs::MAX`] only for instants outside jiff's range (years beyond ±9999).
pub fn next_local_time_after(t: UnixMs, at: LocalTime, zone: &Zone) -> UnixMs {
    let Some(ts) = t.to_timestamp() else {
        return UnixMs::MAX;
    };
    let today = ts.to_zoned(zone.tz().clone()).date();
    // Yesterday's occurrence can still lie after `t` in zones whose offset changes by more than a day's
    // worth of hours around `t` (it cannot in practice, but checking costs nothing).
    for days in -1..=2i64 {
        let Ok(date) = today.checked_add(jiff::Span::new().days(days)) else {
            continue;
        };
        let Ok(zoned) = date.to_datetime(at.0).to_zoned(zone.tz().clone()) else {
            continue;
        };
        let candidate = UnixMs::from_timestamp(zoned.timestamp());
        if candidate > t {
            return candidate;
        }
    }
    UnixMs::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UnixMs {
        UnixMs::from_timestamp(text.parse::<jiff::Timestamp>().unwrap())
    }

    fn next(t: &str, local: &str, zone: &str) -> String {
        let zone = Zone::new(zone).unwrap();
        next_local_time_after(at(t), local.parse().unwrap(), &zone).to_string()
    }

    #[test]
    fn kolkata_has_no_dst() {
        // 03:00 IST is 21:30 UTC the day before.
        assert_eq!(next("2026-03-09T12:00:00Z", "03:00", "Asia/Kolkata"), "2026-03-09T21:30:00Z");
        assert_eq!(next("2026-03-09T21:30:00Z", "03:00", "Asia/Kolkata"), "2026-03-10T21:30:00Z");
        assert_eq!(next("2026-03-09T21:29:59.999Z", "03:00", "Asia/Kolkata"), "2026-03-09T21:30:00Z");
    }

    #[test]
    fn new_york_across_both_changes_of_2026() {
        // Spring forward on 2026-03-08: 01:00 is still EST, the next day's is EDT.
        assert_eq!(next("2026-03-07T12:00:00Z", "01:00", "America/New_York"), "2026-03-08T06:00:00Z");
        assert_eq!(next("2026-03-08T07:00:00Z", "01:00", "America/New_York"), "2026-03-09T05:00:00Z");
        // 02:30 does not exist on 2026-03-08: it moves forward by the gap to 03:30 EDT.
        assert_eq!(next("2026-03-08T05:00:00Z", "02:30", "America/New_York"), "2026-03-08T07:30:00Z");
        // Fall back on 2026-11-01: 01:30 happens twice; the first (EDT) one counts.
        assert_eq!(next("2026-11-01T04:00:00Z", "01:30", "America/New_York"), "2026-11-01T05:30:00Z");
        assert_eq!(next("2026-11-01T05:30:00Z", "01:30", "America/New_York"), "2026-11-02T06:30:00Z");
    }

    #[test]
    fn copenhagen_across_both_changes_of_2026() {
        // Spring forward on 2026-03-29 (02:00 CET → 03:00 CEST).
        assert_eq!(next("2026-03-28T12:00:00Z", "03:00", "Europe/Copenhagen"), "2026-03-29T01:00:00Z");
        assert_eq!(next("2026-03-27T12:00:00Z", "03:00", "Europe/Copenhagen"), "2026-03-28T02:00:00Z");
        assert_eq!(next("2026-03-29T00:00:00Z", "02:30", "Europe/Copenhagen"), "2026-03-29T01:30:00Z");
        // Fall back on 2026-10-25 (03:00 CEST → 02:00 CET): 02:30 happens twice, the first counts.
        assert_eq!(next("2026-10-24T12:00:00Z", "02:30", "Europe/Copenhagen"), "2026-10-25T00:30:00Z");
        assert_eq!(next("2026-10-25T00:30:00Z", "02:30", "Europe/Copenhagen"), "2026-10-26T01:30:00Z");
    }
}
