//! What a broker model saw: [`ModelStats`], plain counters the runner folds into its report.

use std::ops::AddAssign;

use serde::Serialize;

/// Counters of one broker model (or, added together, of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ModelStats {
    /// Login calls that reached the model.
    pub login_attempts: u64,
    /// Successful logins.
    pub logins: u64,
    /// Failed logins (any reason).
    pub login_failures: u64,
    /// Successful logins made while the session of the one before was still accepted: a second session
    /// that competed with a live one (what a client that forgets its grant does).
    pub logins_while_live: u64,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Failed refresh-token grants (any reason).
    pub refresh_failures: u64,
    /// Refresh calls refused because the refresh token was dead, used or unknown (a full login is next).
    pub refresh_rejections: u64,
    /// Keep-alive calls.
    pub keepalives: u64,
    /// Keep-alive calls that did not answer `Alive`.
    pub keepalive_failures: u64,
    /// Logout calls.
    pub logouts: u64,
    /// Workload requests that reached the model.
    pub requests_seen: u64,
    /// Workload requests answered OK.
    pub requests_ok: u64,
    /// Requests refused for their token (expired, revoked or unknown); includes `dead_token_uses`.
    pub rejections: u64,
    /// Requests presenting a token past its declared expiry: warden served a dead token.
    pub dead_token_uses: u64,
    /// Requests presenting a token the model never issued.
    pub unknown_tokens: u64,
    /// Non-idempotent requests executed.
    pub orders_executed: u64,
    /// Non-idempotent operations executed a second time (same `op_id`).
    pub duplicate_orders: u64,
    /// Non-idempotent requests executed whose answer was lost.
    pub outcome_unknown: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    /// Calls failed by the error rates (5xx).
    pub transient_errors: u64,
    /// Calls failed by an outage.
    pub outage_errors: u64,
    /// Times the account was locked after wrong credentials.
    pub lockouts: u64,
    /// Scheduled early expiries that have taken effect.
    pub early_expiries: u64,
    /// Scheduled silent de-authentications that have taken effect.
    pub silent_deauths: u64,
    /// Competing logins that have taken effect.
    pub competing_logins: u64,
    /// Sessions that died for lack of activity.
    pub idle_timeouts: u64,
    /// Login codes people obtained for operators to hand in.
    pub login_codes_issued: u64,
}

impl AddAssign for ModelStats {
    fn add_assign(&mut self, o: ModelStats) {
        let ModelStats {
            login_attempts,
            logins,
            login_failures,
            logins_while_live,
            refreshes,
            refresh_failures,
            refresh_rejections,
            keepalives,
            keepalive_failures,
            logouts,
            requests_seen,
            requests_ok,
            rejections,
            dead_token_uses,
            unknown_tokens,
            orders_executed,
            duplicate_orders,
            outcome_unknown,
            rate_limited,
            transient_errors,
            outage_errors,
            lockouts,
            early_expiries,
            silent_deauths,
            competing_logins,
            idle_timeouts,
            login_codes_issued,
        } = o;
        self.login_attempts += login_attempts;
        self.logins += logins;
        self.login_failures += login_failures;
        self.logins_while_live += logins_while_live;
        self.refreshes += refreshes;
        self.refresh_failures += refresh_failures;
        self.refresh_rejections += refresh_rejections;
        self.keepalives += keepalives;
        self.keepalive_failures += keepalive_failures;
        self.logouts += logouts;
        self.requests_seen += requests_seen;
        self.requests_ok += requests_ok;
        self.rejections += rejections;
        self.dead_token_uses += dead_token_uses;
        self.unknown_tokens += unknown_tokens;
        self.orders_executed += orders_executed;
        self.duplicate_orders += duplicate_orders;
        self.outcome_unknown += outcome_unknown;
        self.rate_limited += rate_limited;
        self.transient_errors += transient_errors;
        self.outage_errors += outage_errors;
        self.lockouts += lockouts;
        self.early_expiries += early_expiries;
        self.silent_deauths += silent_deauths;
        self.competing_logins += competing_logins;
        self.idle_timeouts += idle_timeouts;
        self.login_codes_issued += login_codes_issued;
    }
}
