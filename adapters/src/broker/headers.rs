//! Rate-limit headers: `Retry-After` and the `X-RateLimit-*` family, read into typed values.
//!
//! [`retry_after`] reads `Retry-After` in both of its forms (delta seconds, or an HTTP date measured
//! from `now`). [`RateAllowance::parse`] reads every `X-RateLimit-*` header into named windows: the
//! plain `X-RateLimit-Limit/Remaining/Reset` trio is the window named `""`, and Saxo's per-dimension
//! headers (`X-RateLimit-Session-Remaining`, `X-RateLimit-AppDay-Reset`, …) are windows named after
//! their dimension (`Session`, `AppDay`). A reset is a delta in seconds, or — when the value is an
//! epoch timestamp (at least 10⁹) — the time until that instant. [`RateAllowance::exhausted_for`] is the
//! wait a window with nothing left asks for; the adapters use it as the retry-after of a 429 that did not
//! say `Retry-After`.
//!
//! ```
//! use warden_adapters::broker::headers::RateAllowance;
//! use warden_engine::UnixMs;
//!
//! let headers = [("x-ratelimit-session-remaining", "0"), ("x-ratelimit-session-reset", "12")];
//! let allowance = RateAllowance::parse(headers.iter().copied(), UnixMs::EPOCH);
//! assert_eq!(allowance.exhausted_for(), Some(std::time::Duration::from_secs(12)));
//! ```

use std::time::Duration;

use warden_engine::UnixMs;

/// The most a broker's wait is believed: a day (a larger value is taken as a day).
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Values at or above this are epoch seconds, below it delta seconds.
const EPOCH_SECONDS_FROM: f64 = 1e9;

/// How long `Retry-After` asks to wait: `"120"` (seconds) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00
/// GMT"`) measured from `now`. A date in the past is a zero wait; an unreadable value is `None`.
pub fn retry_after(value: &str, now: UnixMs) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_WAIT));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(UnixMs::from_timestamp(at).saturating_duration_since(now).min(MAX_WAIT))
}

/// A reset value: delta seconds (decimals allowed) or epoch seconds, as a wait from `now`.
fn reset_after(value: &str, now: UnixMs) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    let wait = if seconds >= EPOCH_SECONDS_FROM {
        let at = UnixMs::from_millis((seconds * 1000.0) as i64);
        at.saturating_duration_since(now)
    } else {
        Duration::from_secs_f64(seconds)
    };
    Some(wait.min(MAX_WAIT))
}

/// One rate-limit window the server reported.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AllowanceWindow {
    /// The window's name: `""` for the plain `X-RateLimit-*` headers, the dimension otherwise
    /// (`Session`, `AppDay`, `SessionOrders`), as the server spelled it.
    pub name: String,
    /// Requests allowed in the window.
    pub limit: Option<u64>,
    /// Requests left in the window.
    pub remaining: Option<u64>,
    /// When the window refills, from the response's `now`.
    pub reset_after: Option<Duration>,
}

/// What the server said about the caller's remaining allowance, from one response's headers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RateAllowance {
    /// The windows, in the order their first header appeared.
    pub windows: Vec<AllowanceWindow>,
}

impl RateAllowance {
    /// Reads every `X-RateLimit-*` header (names case-insensitive); `now` turns epoch resets into waits.
    /// Unreadable values are skipped.
    pub fn parse<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>, now: UnixMs) -> RateAllowance {
        let mut allowance = RateAllowance::default();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            let Some(rest) = lower.strip_prefix("x-ratelimit-") else { continue };
            let (window, field) = match rest.rsplit_once('-') {
                Some((window, field)) => (&name[name.len() - rest.len()..][..window.len()], field),
                None => ("", rest),
            };
            let slot = match field {
                "limit" | "remaining" | "reset" => allowance.window_mut(window),
                _ => continue,
            };
            match field {
                "limit" => slot.limit = value.trim().parse().ok(),
                "remaining" => slot.remaining = value.trim().parse().ok(),
                _ => slot.reset_after = reset_after(value, now),
            }
        }
        allowance
    }

    /// Reads the headers of a response.
    pub fn from_header_map(headers: &reqwest::header::HeaderMap, now: UnixMs) -> RateAllowance {
        RateAllowance::parse(
            headers.iter().filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v))),
            now,
        )
    }

    fn window_mut(&mut self, name: &str) -> &mut AllowanceWindow {
        let index = match self.windows.iter().position(|w| w.name.eq_ignore_ascii_case(name)) {
            Some(index) => index,
            None => {
                self.windows.push(AllowanceWindow { name: name.to_owned(), ..AllowanceWindow::default() });
                self.windows.len() - 1
            }
        };
        &mut self.windows[index]
    }

    /// Whether the server said nothing about limits.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The window with the fewest requests left, if any window said how many.
    pub fn tightest(&self) -> Option<&AllowanceWindow> {
        self.windows.iter().filter(|w| w.remaining.is_some()).min_by_key(|w| w.remaining)
    }

    /// If some window has nothing left, how long until the last such window refills (unknown resets
    /// count as zero).
    pub fn exhausted_for(&self) -> Option<Duration> {
        self.windows.iter().filter(|w| w.remaining == Some(0)).map(|w| w.reset_after.unwrap_or_default()).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMs = UnixMs::from_millis(1_445_412_480_000); // 2015-10-21T07:28:00Z

    #[test]
    fn retry_after_reads_both_forms() {
        assert_eq!(retry_after("120", NOW), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", NOW), Some(Duration::ZERO));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:30:00 GMT", NOW), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", NOW), Some(Duration::ZERO), "a past date");
        assert_eq!(retry_after("soon", NOW), None);
        assert_eq!(retry_after("-5", NOW), None);
        assert_eq!(retry_after("99999999", NOW), Some(MAX_WAIT), "capped at a day");
    }

    #[test]
    fn plain_and_dimensioned_windows() {
        let headers = [
            ("X-RateLimit-Limit", "100"),
            ("X-RateLimit-Remaining", "7"),
            ("X-RateLimit-Reset", "1445412540"), // epoch: 60 s after NOW
            ("X-RateLimit-Session-Limit", "120"),
            ("X-RateLimit-Session-Remaining", "0"),
            ("X-RateLimit-Session-Reset", "12.5"),
            ("X-RateLimit-AppDay-Remaining", "9000000"),
            ("X-RateLimit-Session-Bogus", "1"),
            ("Content-Type", "application/json"),
            ("X-RateLimit-Remaining", "lots"),
        ];
        let a = RateAllowance::parse(headers.iter().copied(), NOW);
        assert_eq!(a.windows.len(), 3);
        assert_eq!(
            a.windows[0],
            AllowanceWindow {
                name: String::new(),
                limit: Some(100),
                remaining: None, // the unreadable repeat replaced it
                reset_after: Some(Duration::from_secs(60)),
            }
        );
        assert_eq!(a.windows[1].name, "Session");
        assert_eq!(a.windows[1].reset_after, Some(Duration::from_millis(12_500)));
        assert_eq!(a.tightest().map(|w| w.name.as_str()), Some("Session"));
        assert_eq!(a.exhausted_for(), Some(Duration::from_millis(12_500)));
        assert!(RateAllowance::parse([("Date", "x")], NOW).is_empty());
    }
}
