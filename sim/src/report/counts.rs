//! The report's breakdowns: failures by error kind ([`FailureCounts`], [`InvalidCounts`]), outcomes per
//! request kind ([`KindCounts`]) and engine events by category with per-day counts ([`EventSummary`]).
//!
//! Every bucket is always present in the JSON (zero when nothing landed in it), so that `[expect]` can
//! bound any of them and a report's shape does not depend on what happened.

use serde::Serialize;
use warden_engine::UnixMs;

use super::days::RunDays;

/// Why a request failed, as the strategy saw it. The runner maps the runtime's errors onto these; an
/// error kind the runtime adds later lands in [`FailureKind::Other`] until it gets a bucket of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// No token came within the request timeout.
    Timeout,
    /// The session gave up (`Invalid`), for this reason.
    Invalid(InvalidKind),
    /// warden's own request limiter did not free up within the request timeout.
    RateLimited,
    /// The broker answered 429.
    BrokerRateLimited,
    /// The broker rejected the token (or the session was competing) after every retry rule 7 allows.
    RejectedAfterRetries,
    /// The broker failed the call (5xx, outage, no answer) and it was not retried.
    BrokerUnavailable,
    /// The broker refused the call for another reason (a permanent error, a person needed).
    BrokerRefused,
    /// A retry was rejected again although its grant was fresh: the broker refuses the call, not the
    /// token (no login was started for it).
    FreshTokenRefused,
    /// An order got no answer: the broker may have executed it (not retried, to avoid a duplicate).
    OutcomeUnknown,
    /// Too many requests were already waiting for a token (`max_waiters`).
    Overloaded,
    /// The session is logged out.
    Stopped,
    /// The session or its process went away while the request waited or was in flight.
    Closed,
    /// A kind the runtime reports that the simulator does not know yet.
    Other,
}

/// Why a session gave up, as counted in [`InvalidCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidKind {
    /// The broker rejected the credentials.
    BadCredentials,
    /// A person must act (second factor, a browser login).
    NeedsHuman,
    /// Too many credential rejections in a row.
    FailureBudgetSpent,
    /// Another login holds the account and the policy yields.
    Competing,
    /// The session actor crashed too often.
    RestartLimit,
    /// The broker's daily expiry passed and a person must log in (`after_cutoff = "operator"`).
    AfterCutoff,
    /// A reason the simulator does not know yet.
    Other,
}

/// Failed requests by kind of error. `outcome_unknown` is here too, so the buckets add up to
/// `requests_failed + outcome_unknown`; `invalid` is the sum of [`InvalidCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FailureCounts {
    /// [`FailureKind::Timeout`].
    pub timeout: u64,
    /// [`FailureKind::Invalid`], every reason.
    pub invalid: u64,
    /// [`FailureKind::RateLimited`].
    pub rate_limited: u64,
    /// [`FailureKind::BrokerRateLimited`].
    pub broker_rate_limited: u64,
    /// [`FailureKind::RejectedAfterRetries`].
    pub rejected_after_retries: u64,
    /// [`FailureKind::BrokerUnavailable`].
    pub broker_unavailable: u64,
    /// [`FailureKind::BrokerRefused`].
    pub broker_refused: u64,
    /// [`FailureKind::FreshTokenRefused`].
    pub fresh_token_refused: u64,
    /// [`FailureKind::OutcomeUnknown`].
    pub outcome_unknown: u64,
    /// [`FailureKind::Overloaded`].
    pub overloaded: u64,
    /// [`FailureKind::Stopped`].
    pub stopped: u64,
    /// [`FailureKind::Closed`].
    pub closed: u64,
    /// [`FailureKind::Other`].
    pub other: u64,
}

/// Requests failed because the session gave up, by its reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct InvalidCounts {
    /// [`InvalidKind::BadCredentials`].
    pub bad_credentials: u64,
    /// [`InvalidKind::NeedsHuman`].
    pub needs_human: u64,
    /// [`InvalidKind::FailureBudgetSpent`].
    pub failure_budget_spent: u64,
    /// [`InvalidKind::Competing`].
    pub competing: u64,
    /// [`InvalidKind::RestartLimit`].
    pub restart_limit: u64,
    /// [`InvalidKind::AfterCutoff`].
    pub after_cutoff: u64,
    /// [`InvalidKind::Other`].
    pub other: u64,
}

impl FailureCounts {
    /// Counts one failure; the reason of an `Invalid` goes to `invalid_by`.
    pub fn add(&mut self, kind: FailureKind, invalid_by: &mut InvalidCounts) {
        let slot = match kind {
            FailureKind::Timeout => &mut self.timeout,
            FailureKind::Invalid(reason) => {
                *match reason {
                    InvalidKind::BadCredentials => &mut invalid_by.bad_credentials,
                    InvalidKind::NeedsHuman => &mut invalid_by.needs_human,
                    InvalidKind::FailureBudgetSpent => &mut invalid_by.failure_budget_spent,
                    InvalidKind::Competing => &mut invalid_by.competing,
                    InvalidKind::RestartLimit => &mut invalid_by.restart_limit,
                    InvalidKind::AfterCutoff => &mut invalid_by.after_cutoff,
                    InvalidKind::Other => &mut invalid_by.other,
                } += 1;
                &mut self.invalid
            }
            FailureKind::RateLimited => &mut self.rate_limited,
            FailureKind::BrokerRateLimited => &mut self.broker_rate_limited,
            FailureKind::RejectedAfterRetries => &mut self.rejected_after_retries,
            FailureKind::BrokerUnavailable => &mut self.broker_unavailable,
            FailureKind::BrokerRefused => &mut self.broker_refused,
            FailureKind::FreshTokenRefused => &mut self.fresh_token_refused,
            FailureKind::OutcomeUnknown => &mut self.outcome_unknown,
            FailureKind::Overloaded => &mut self.overloaded,
            FailureKind::Stopped => &mut self.stopped,
            FailureKind::Closed => &mut self.closed,
            FailureKind::Other => &mut self.other,
        };
        *slot += 1;
    }

    /// Every bucket's count (each failure is in exactly one).
    pub fn total(&self) -> u64 {
        let FailureCounts {
            timeout,
            invalid,
            rate_limited,
            broker_rate_limited,
            rejected_after_retries,
            broker_unavailable,
            broker_refused,
            fresh_token_refused,
            outcome_unknown,
            overloaded,
            stopped,
            closed,
            other,
        } = *self;
        timeout
            + invalid
            + rate_limited
            + broker_rate_limited
            + rejected_after_retries
            + broker_unavailable
            + broker_refused
            + fresh_token_refused
            + outcome_unknown
            + overloaded
            + stopped
            + closed
            + other
    }
}

/// The outcomes of one kind of request (a `[[workload.mix]]` entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    /// Issued.
    pub total: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed (after any retries), not counting `outcome_unknown`.
    pub failed: u64,
    /// Orders whose answer was lost.
    pub outcome_unknown: u64,
}

/// What the engine's event stream says happened, counted per category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EventCategory {
    /// A session passed the daily cut-off (`StateChanged` for `DailyCutoff`).
    Cutoff,
    /// A warm-up login started before market open (`StateChanged` for `Warmup`).
    WarmupLogin,
    /// A login grant was installed.
    Login,
    /// A login grant was installed for a session that had one before (the first login of each session
    /// is not a re-login).
    Relogin,
    /// A refresh grant was installed.
    Refresh,
    /// A login failed.
    LoginFailed,
    /// A grant was revoked (drop every cache derived from it).
    Revocation,
    /// A session acted on a broker rejection (`StateChanged` for `Rejected`).
    Rejected,
    /// A session gave up (entered `Invalid`).
    GaveUp,
    /// An operator reset a session (`StateChanged` for `Reset`).
    OperatorReset,
    /// A session actor failed and was restarted.
    ActorRestart,
    /// The simulated process went down and came back (a `[faults] restarts` entry).
    ProcessRestart,
}

impl EventCategory {
    /// Every category, in report order.
    pub const ALL: [EventCategory; 12] = [
        EventCategory::Cutoff,
        EventCategory::WarmupLogin,
        EventCategory::Login,
        EventCategory::Relogin,
        EventCategory::Refresh,
        EventCategory::LoginFailed,
        EventCategory::Revocation,
        EventCategory::Rejected,
        EventCategory::GaveUp,
        EventCategory::OperatorReset,
        EventCategory::ActorRestart,
        EventCategory::ProcessRestart,
    ];

    /// The category's name in the report and in `[expect]` (`events.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            EventCategory::Cutoff => "cutoff",
            EventCategory::WarmupLogin => "warmup_login",
            EventCategory::Login => "login",
            EventCategory::Relogin => "relogin",
            EventCategory::Refresh => "refresh",
            EventCategory::LoginFailed => "login_failed",
            EventCategory::Revocation => "revocation",
            EventCategory::Rejected => "rejected",
            EventCategory::GaveUp => "gave_up",
            EventCategory::OperatorReset => "operator_reset",
            EventCategory::ActorRestart => "actor_restart",
            EventCategory::ProcessRestart => "process_restart",
        }
    }
}

/// How often an event category happened, on which days, first and last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// How many times.
    pub count: u64,
    /// How many times on each day of the report's `days`.
    pub per_day: Vec<u64>,
    /// The first time, in the market's zone (RFC 9557), if any.
    pub first: Option<String>,
    /// The last time, in the market's zone, if any.
    pub last: Option<String>,
    /// The first time, in ms after the run's start.
    pub first_ms: Option<u64>,
    /// The last time, in ms after the run's start.
    pub last_ms: Option<u64>,
}

/// Counts of one category as the run goes; [`EventTally::summary`] makes the report's entry.
#[derive(Clone, Debug, Default)]
pub struct EventTally {
    count: u64,
    per_day: Vec<u64>,
    first: Option<UnixMs>,
    last: Option<UnixMs>,
}

impl EventTally {
    /// Counts one occurrence at `at`.
    pub fn add(&mut self, at: UnixMs, days: &RunDays) {
        self.count += 1;
        if self.per_day.len() < days.len() {
            self.per_day.resize(days.len(), 0);
        }
        if let Some(day) = days.index_of(at).and_then(|i| self.per_day.get_mut(i)) {
            *day += 1;
        }
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    /// How many so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The report's entry: instants in the days' zone and as offsets from `start`.
    pub fn summary(&self, start: UnixMs, days: &RunDays) -> EventSummary {
        let mut per_day = self.per_day.clone();
        per_day.resize(days.len(), 0);
        let local = |t: UnixMs| t.to_timestamp().map(|ts| ts.to_zoned(days.zone().clone()).to_string());
        let offset = |t: UnixMs| u64::try_from(t.as_millis().saturating_sub(start.as_millis())).ok();
        EventSummary {
            count: self.count,
            per_day,
            first: self.first.and_then(local),
            last: self.last.and_then(local),
            first_ms: self.first.and_then(offset),
            last_ms: self.last.and_then(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_lands_in_one_bucket() {
        let mut failed = FailureCounts::default();
        let mut invalid = InvalidCounts::default();
        for kind in [
            FailureKind::Timeout,
            FailureKind::Invalid(InvalidKind::NeedsHuman),
            FailureKind::Invalid(InvalidKind::Other),
            FailureKind::RejectedAfterRetries,
            FailureKind::OutcomeUnknown,
            FailureKind::Other,
        ] {
            failed.add(kind, &mut invalid);
        }
        assert_eq!(failed.total(), 6);
        assert_eq!((failed.invalid, invalid.needs_human, invalid.other), (2, 1, 1));
    }

    #[test]
    fn tallies_count_per_day() {
        let zone = jiff::tz::TimeZone::UTC;
        let at = |s: &str| UnixMs::from_timestamp(s.parse::<jiff::Timestamp>().unwrap());
        let days = RunDays::new(at("2026-03-09T12:00:00Z"), at("2026-03-11T12:00:00Z"), &zone);
        let mut tally = EventTally::default();
        tally.add(at("2026-03-10T03:00:00Z"), &days);
        tally.add(at("2026-03-11T03:00:00Z"), &days);
        let summary = tally.summary(at("2026-03-09T12:00:00Z"), &days);
        assert_eq!(summary.per_day, vec![0, 1, 1]);
        assert_eq!(summary.first.as_deref(), Some("2026-03-10T03:00:00+00:00[UTC]"));
        assert_eq!(summary.first_ms, Some(15 * 3_600_000));
        assert_eq!(summary.count, 2);
    }
}
