//! A randomised driver of one session, and the model of what the session owes its callers.
//!
//! [`Spec`] is a policy drawn from the presets with small variations (tiny lifetimes come from the
//! broker side, in [`Step::AuthDone`]); [`Step`] is one thing that happens to a session: time passes, a
//! request arrives or goes away, a caller reports a rejection, the broker answers a login, refresh or
//! keep-alive, an operator acts, or the process restarts from its snapshot. Steps are abstract where the
//! concrete value depends on what the session did ("answer the outstanding login", "reject the current
//! generation"); [`Driver::step`] resolves them against the session.
//!
//! [`Observer`] is the model: from the inputs and the outputs alone it keeps the obligations of DESIGN §2
//! — which requests are owed an answer and until when, which calls are outstanding, which generations
//! the broker rejected, when each grant's login happened and so when its daily cut-off falls, when logins
//! were started — and records a [`Violation`] naming the [`Rule`] whenever the session breaks one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use warden_engine::policy::LocalTime;
use warden_engine::{
    AttemptId, AuthFailure, AuthKind, Capabilities, DailyCutoff, Durability, ErrorClass, EventKind, Generation, Grant,
    Input, InvalidReason, KeepaliveStatus, Lease, Mode, OnCompeting, Output, Policy, Preset, Rate, RequestError,
    Secret, Session, SessionConfig, Snapshot, StateKind, UnixMs, WaiterId,
};

use super::{drain, plus_ms, sid};

/// The time zones the specs draw daily cut-offs from.
pub const ZONES: [&str; 4] = ["Asia/Kolkata", "America/New_York", "Europe/Copenhagen", "UTC"];

/// 2026-01-01T00:00:00Z, the earliest start of a generated run.
pub const YEAR_START_MS: i64 = 1_767_225_600_000;

/// A daily cut-off as drawn: zone index in [`ZONES`], hour, minute, optional warm-up (hour, minute).
pub type Daily = (usize, i8, i8, Option<(i8, i8)>);

/// A policy and broker drawn for one run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The preset the policy starts from.
    pub preset: Preset,
    /// Eager or lazy.
    pub mode: Mode,
    /// The broker has a refresh-token grant.
    pub refresh_cap: bool,
    /// The broker has keep-alive pings.
    pub keepalive_cap: bool,
    /// Override of `refresh_buffer` in seconds (`Some(None)`: off).
    pub refresh_buffer_s: Option<Option<u64>>,
    /// Override of `lazy_threshold` in seconds (`Some(None)`: off).
    pub lazy_threshold_s: Option<Option<u64>>,
    /// `jitter`.
    pub jitter: f64,
    /// `expiry_margin` in seconds.
    pub expiry_margin_s: u64,
    /// `keepalive_interval` in seconds (used when the preset has one or the broker needs one).
    pub keepalive_interval_s: u64,
    /// `keepalive_failures_before_expired`.
    pub keepalive_failures: u32,
    /// Override of the daily cut-off (`Some(None)`: off).
    pub daily: Option<Option<Daily>>,
    /// `max_session_age` in seconds.
    pub max_session_age_s: Option<u64>,
    /// `idle_timeout` in seconds.
    pub idle_timeout_s: Option<u64>,
    /// `max_consecutive_failures`.
    pub max_failures: u32,
    /// `login_rate` (max, per seconds); `None`: off.
    pub login_rate: Option<(u32, u64)>,
    /// `request_timeout` in seconds.
    pub request_timeout_s: u64,
    /// `max_waiters`.
    pub max_waiters: u32,
    /// `on_competing`.
    pub on_competing: OnCompeting,
    /// Backoff minimum and maximum in seconds, and its jitter.
    pub backoff: (u64, u64, f64),
    /// The session's jitter seed.
    pub seed: u64,
    /// Milliseconds after 2026-01-01T00:00Z at which the run starts.
    pub start_ms: i64,
}

impl Spec {
    /// The policy this spec describes (valid by construction).
    pub fn policy(&self) -> Policy {
        let mut p = Policy::preset(self.preset);
        p.mode = self.mode;
        let secs = Duration::from_secs;
        if let Some(buffer) = self.refresh_buffer_s {
            p.refresh_buffer = buffer.map(secs);
        }
        if let Some(threshold) = self.lazy_threshold_s {
            p.lazy_threshold = threshold.map(secs);
        }
        p.jitter = self.jitter;
        p.expiry_margin = secs(self.expiry_margin_s);
        if p.keepalive_interval.is_some() || self.keepalive_cap {
            p.keepalive_interval = Some(secs(self.keepalive_interval_s));
        }
        p.keepalive_failures_before_expired = self.keepalive_failures;
        if let Some(daily) = self.daily {
            p.daily_cutoff = daily.map(|(zone, hour, minute, warmup)| {
                let at = LocalTime::hm(hour, minute).expect("valid time");
                let mut cutoff = DailyCutoff::new(at, ZONES[zone]).expect("known zone");
                cutoff.warmup = warmup.map(|(h, m)| LocalTime::hm(h, m).expect("valid time"));
                cutoff
            });
        }
        p.max_session_age = self.max_session_age_s.map(secs);
        p.idle_timeout = self.idle_timeout_s.map(secs);
        p.max_consecutive_failures = self.max_failures;
        p.login_rate = self.login_rate.map(|(max, per)| Rate::new(max, secs(per)));
        p.request_timeout = secs(self.request_timeout_s);
        p.max_waiters = self.max_waiters;
        p.on_competing = self.on_competing;
        p.backoff.min = secs(self.backoff.0).into();
        p.backoff.max = secs(self.backoff.1).into();
        p.backoff.jitter = self.backoff.2;
        p.validate().unwrap_or_else(|e| panic!("generated policy is invalid: {e}"));
        p
    }

    /// The broker's capabilities.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities { refresh: self.refresh_cap, keepalive: self.keepalive_cap }
    }

    /// The session configuration.
    pub fn config(&self) -> SessionConfig {
        SessionConfig::new(sid(), self.policy()).with_capabilities(self.capabilities()).with_seed(self.seed)
    }

    /// When the run starts.
    pub fn start(&self) -> UnixMs {
        UnixMs::from_millis(YEAR_START_MS + self.start_ms)
    }
}

/// Policies drawn from the presets with small variations.
pub fn spec_strategy() -> impl Strategy<Value = Spec> {
    let daily =
        (0usize..ZONES.len(), 0i8..24, prop::sample::select(vec![0i8, 30]), prop::option::of((0i8..24, 0i8..60)));
    let first = (
        prop::sample::select(Preset::ALL.to_vec()),
        prop_oneof![Just(Mode::Eager), Just(Mode::Lazy)],
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::option::of(1u64..=600)),
        prop::option::of(prop::option::of(1u64..=300)),
        prop_oneof![Just(0.0), 0.0f64..=0.5],
        0u64..=5,
    );
    let second = (
        5u64..=120,
        1u32..=3,
        prop::option::weighted(0.4, prop::option::weighted(0.8, daily)),
        prop::option::weighted(0.2, 60u64..=4 * 3600),
        prop::option::weighted(0.2, 60u64..=3 * 3600),
        1u32..=4,
        prop::option::weighted(0.7, (1u32..=4, 10u64..=900)),
        1u64..=120,
        prop_oneof![1u32..=4, Just(16_384u32)],
        prop_oneof![Just(OnCompeting::TakeOver), Just(OnCompeting::Yield)],
    );
    let third = ((1u64..=10, 10u64..=600, prop_oneof![Just(0.0), 0.0f64..=1.0]), any::<u64>(), 0i64..365 * 86_400_000);
    (first, second, third).prop_map(|(a, b, c)| Spec {
        preset: a.0,
        mode: a.1,
        refresh_cap: a.2,
        keepalive_cap: a.3,
        refresh_buffer_s: a.4,
        lazy_threshold_s: a.5,
        jitter: a.6,
        expiry_margin_s: a.7,
        keepalive_interval_s: b.0,
        keepalive_failures: b.1,
        daily: b.2,
        max_session_age_s: b.3,
        idle_timeout_s: b.4,
        max_failures: b.5,
        login_rate: b.6,
        request_timeout_s: b.7,
        max_waiters: b.8,
        on_competing: b.9,
        backoff: c.0,
        seed: c.1,
        start_ms: c.2,
    })
}

/// Which generation a request asks to be newer than.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newer {
    /// Any grant will do.
    Any,
    /// The caller saw the newest generation rejected.
    Current,
    /// The caller saw an older generation rejected.
    Older,
}

/// Which generation a rejection names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The newest generation handed out.
    Current,
    /// One this many generations older.
    Older(u64),
}

/// The broker's answer to a login or refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// A grant: lifetime of the access token (ms, from the call's start) and of the refresh token
    /// (`None`: none; `Some(None)`: no known end).
    Ok {
        /// Access-token lifetime in ms; `None`: no expiry.
        lifetime_ms: Option<u64>,
        /// Refresh token and its lifetime in ms.
        refresh: Option<Option<u64>>,
    },
    /// A failure of this class.
    Err(ErrorClass),
}

/// The broker's answer to a keep-alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepaliveResult {
    /// Still authenticated.
    Alive,
    /// Not authenticated any more.
    Unauthenticated,
    /// Another login holds the account.
    Competing,
    /// The ping failed with this class.
    Err(ErrorClass),
}

/// One thing that happens to a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The clock moves forward by `ms`, then a tick.
    Advance {
        /// How far.
        ms: u64,
    },
    /// A tick exactly at `poll_timeout()` (one second later if there is none).
    TickAtTimeout,
    /// A tick one millisecond before `poll_timeout()`: must do nothing.
    TickJustBefore,
    /// A tick at an earlier time than the last one (a wall-clock step back): must do nothing.
    TickEarlier {
        /// How far back.
        ms: u64,
    },
    /// A request for a token.
    Request {
        /// Which generation it must be newer than.
        newer: Newer,
    },
    /// A waiting request goes away (the `pick`-th outstanding one, if any).
    Cancel {
        /// Which one.
        pick: usize,
    },
    /// Requests were served from the hot path.
    Activity,
    /// A caller's broker call failed.
    Reject {
        /// With which generation.
        which: Which,
        /// How.
        class: ErrorClass,
    },
    /// The outstanding login or refresh is answered (nothing happens if none is outstanding).
    AuthDone {
        /// The answer.
        result: AuthResult,
    },
    /// An answer naming an attempt that is not outstanding (a duplicate or a stray).
    AuthStale {
        /// Which earlier attempt it names (modulo those answered), or a never-issued one.
        pick: usize,
        /// Whether it carries a grant.
        ok: bool,
    },
    /// The outstanding keep-alive is answered (nothing happens if none is outstanding).
    KeepaliveDone {
        /// The answer.
        result: KeepaliveResult,
    },
    /// A keep-alive answer naming an attempt that is not outstanding.
    KeepaliveStale,
    /// Operator reset.
    Reset,
    /// New credentials.
    CredentialsUpdated,
    /// A second factor.
    SecondFactor,
    /// Log out.
    Logout,
    /// The supervisor gives up.
    GiveUp,
    /// The process dies and restarts from the session's snapshot (through rmp-serde) after `down_ms`.
    Restart {
        /// How long the process was down.
        down_ms: u64,
    },
}

fn class_strategy() -> impl Strategy<Value = ErrorClass> {
    prop_oneof![
        4 => Just(ErrorClass::AuthExpired),
        4 => Just(ErrorClass::Transient),
        1 => Just(ErrorClass::RateLimited { retry_after: None }),
        1 => (1u64..=900).prop_map(|s| ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(s)) }),
        1 => Just(ErrorClass::Permanent),
        1 => Just(ErrorClass::NeedsHuman),
        1 => Just(ErrorClass::Competing),
    ]
}

fn lifetime_strategy() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        2 => (1u64..=10_000).prop_map(Some),
        3 => (10_000u64..=600_000).prop_map(Some),
        3 => (600_000u64..=4 * 3_600_000).prop_map(Some),
        1 => (4 * 3_600_000u64..=2 * 86_400_000).prop_map(Some),
    ]
}

fn auth_result_strategy() -> impl Strategy<Value = AuthResult> {
    let refresh = prop_oneof![Just(None), Just(Some(None)), (1_000u64..=3 * 3_600_000).prop_map(|ms| Some(Some(ms))),];
    prop_oneof![
        6 => (lifetime_strategy(), refresh).prop_map(|(lifetime_ms, refresh)| AuthResult::Ok { lifetime_ms, refresh }),
        4 => class_strategy().prop_map(AuthResult::Err),
    ]
}

fn keepalive_result_strategy() -> impl Strategy<Value = KeepaliveResult> {
    prop_oneof![
        6 => Just(KeepaliveResult::Alive),
        2 => Just(KeepaliveResult::Unauthenticated),
        1 => Just(KeepaliveResult::Competing),
        2 => class_strategy().prop_map(KeepaliveResult::Err),
    ]
}

/// The steps, weighted so that a run of a few dozen reaches every state.
pub fn step_strategy(stopped: bool) -> BoxedStrategy<Step> {
    let restart_weight = if stopped { 8 } else { 2 };
    prop_oneof![
        6 => (1u64..=3_000).prop_map(|ms| Step::Advance { ms }),
        3 => (3_000u64..=900_000).prop_map(|ms| Step::Advance { ms }),
        2 => (900_000u64..=3 * 86_400_000).prop_map(|ms| Step::Advance { ms }),
        10 => Just(Step::TickAtTimeout),
        1 => Just(Step::TickJustBefore),
        1 => (1u64..=600_000).prop_map(|ms| Step::TickEarlier { ms }),
        6 => Just(Step::Request { newer: Newer::Any }),
        1 => Just(Step::Request { newer: Newer::Current }),
        1 => Just(Step::Request { newer: Newer::Older }),
        2 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
        1 => Just(Step::Activity),
        2 => class_strategy().prop_map(|class| Step::Reject { which: Which::Current, class }),
        2 => (1u64..=3, class_strategy()).prop_map(|(k, class)| Step::Reject { which: Which::Older(k), class }),
        12 => auth_result_strategy().prop_map(|result| Step::AuthDone { result }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Step::AuthStale { pick, ok }),
        4 => keepalive_result_strategy().prop_map(|result| Step::KeepaliveDone { result }),
        1 => Just(Step::KeepaliveStale),
        1 => Just(Step::Reset),
        1 => Just(Step::CredentialsUpdated),
        1 => Just(Step::SecondFactor),
        1 => Just(Step::Logout),
        1 => Just(Step::GiveUp),
        restart_weight => prop_oneof![Just(0u64), 1u64..=60_000, 60_000u64..=86_400_000]
            .prop_map(|down_ms| Step::Restart { down_ms }),
    ]
    .boxed()
}

/// The rules of DESIGN §2 that the observer checks (rule 7 is a pure function, checked on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Rule 1.
    NeverServeADeadToken,
    /// Rule 2.
    SingleFlight,
    /// Rule 3.
    StaleGenerationsTriggerNothing,
    /// Rule 4.
    EveryWaiterAnsweredExactlyOnce,
    /// Rule 5.
    LoginAttemptsWithinRateLimit,
    /// Rule 6.
    PermanentErrorOrSpentBudgetGoesInvalidAndStays,
}

/// A broken rule.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// At which step (1-based).
    pub step: usize,
    /// What happened.
    pub message: String,
}

/// A login or refresh the session asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Its id.
    pub attempt: AttemptId,
    /// Login or refresh.
    pub kind: AuthKind,
    /// When it started (the grant it yields is issued then).
    pub started: UnixMs,
    /// For a refresh: when the login of the chain it extends was issued.
    pub chain_start: Option<UnixMs>,
}

/// What the model knows of an installed grant.
#[derive(Clone, Copy, Debug)]
struct Facts {
    /// When the login that began its refresh chain was issued (its daily cut-off counts from here).
    chain_start: UnixMs,
}

/// One waiting request.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    /// When it must have been answered.
    pub deadline: UnixMs,
    /// The generation it must be newer than.
    pub newer_than: Option<Generation>,
}

/// An input as the observer needs to see it.
#[derive(Clone, Debug)]
enum Fed {
    Tick,
    Request,
    Cancel,
    Rejected { generation: Generation, class: ErrorClass },
    AuthDone { call: Call, failure: Option<ErrorClass>, token: Option<String> },
    AuthStale,
    KeepaliveDone { result: KeepaliveResult, pinged: Option<Generation> },
    KeepaliveStale,
    Activity,
    Reset,
    CredentialsUpdated,
    SecondFactor,
    Logout,
    GiveUp,
    Restart,
}

/// The state of the session as seen between inputs.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    state: StateKind,
    invalid_reason: Option<InvalidReason>,
    generation: Generation,
    auth: Option<(AttemptId, AuthKind)>,
    keepalive: Option<AttemptId>,
    waiting: usize,
    lease: Option<(Generation, UnixMs)>,
    timeout: Option<UnixMs>,
}

impl Seen {
    fn of(session: &Session) -> Seen {
        Seen {
            state: session.state(),
            invalid_reason: session.invalid_reason().cloned(),
            generation: session.generation(),
            auth: session.auth_in_flight(),
            keepalive: session.keepalive_in_flight(),
            waiting: session.waiting(),
            lease: session.lease().map(|l| (l.generation, l.usable_until)),
            timeout: session.poll_timeout(),
        }
    }
}

/// The next occurrence of the local time `at` in `zone` strictly after `t` (an independent computation
/// with jiff; `daily_cutoff.rs` checks the session's against hand-computed instants).
pub fn next_local_after(t: UnixMs, at: LocalTime, zone: &str) -> UnixMs {
    let tz = jiff::tz::TimeZone::get(zone).expect("zone");
    let ts = jiff::Timestamp::from_millisecond(t.as_millis()).expect("in range");
    let mut date = ts.to_zoned(tz.clone()).date().yesterday().expect("date");
    loop {
        let candidate = date.to_datetime(at.0).to_zoned(tz.clone()).expect("zoned").timestamp();
        if candidate > ts {
            return UnixMs::from_timestamp(candidate);
        }
        date = date.tomorrow().expect("date");
    }
}

/// Coverage counters, to show that the generated runs reach what the properties talk about.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Steps after which the session was in each state.
    pub states: BTreeMap<StateKind, usize>,
    /// Output kinds seen.
    pub outputs: BTreeMap<String, usize>,
    /// Reasons for `Invalid` seen.
    pub invalid_reasons: BTreeSet<String>,
    /// Stale inputs checked for rule 3.
    pub stale_checked: usize,
    /// Restarts that resumed a usable grant without a login.
    pub restarts_resuming_grant: usize,
    /// Logins refused by the rate limit (the session announced a `LoginRate` wait).
    pub rate_limited_waits: usize,
    /// Leases served within the last minute of their usable life.
    pub serves_near_end: usize,
}

/// The model of obligations (see the module documentation).
#[derive(Debug)]
pub struct Observer {
    policy: Policy,
    capabilities: Capabilities,
    /// Requests owed an answer.
    pub waiters: BTreeMap<WaiterId, Waiting>,
    /// The outstanding login or refresh.
    pub auth: Option<Call>,
    /// The outstanding keep-alive and the generation it pings.
    pub keepalive: Option<(AttemptId, Option<Generation>)>,
    grants: BTreeMap<Generation, Facts>,
    tokens: HashMap<String, Generation>,
    dead: BTreeSet<Generation>,
    published: Option<Lease>,
    logins: Vec<UnixMs>,
    rejections: u32,
    /// Every broken rule so far.
    pub violations: Vec<Violation>,
    /// Coverage.
    pub stats: Stats,
    step: usize,
}

impl Observer {
    fn new(policy: Policy, capabilities: Capabilities) -> Observer {
        Observer {
            policy,
            capabilities,
            waiters: BTreeMap::new(),
            auth: None,
            keepalive: None,
            grants: BTreeMap::new(),
            tokens: HashMap::new(),
            dead: BTreeSet::new(),
            published: None,
            logins: Vec::new(),
            rejections: 0,
            violations: Vec::new(),
            stats: Stats::default(),
            step: 0,
        }
    }

    fn violate(&mut self, rule: Rule, message: String) {
        self.violations.push(Violation { rule, step: self.step, message });
    }

    /// Why handing out `lease` at `now` would hand out a dead token, if it would.
    fn dead_lease(&self, lease: &Lease, now: UnixMs) -> Option<String> {
        let generation = lease.generation;
        if self.dead.contains(&generation) {
            return Some(format!("{generation} was rejected by the broker"));
        }
        if let Some(expires_at) = lease.grant.expires_at {
            let limit = expires_at.saturating_sub(self.policy.expiry_margin_for(lease.grant.lifetime()));
            if now >= limit {
                return Some(format!("{generation} is past expiry − margin ({limit}) at {now}"));
            }
            if lease.usable_until > limit {
                return Some(format!(
                    "{generation} usable until {} beyond expiry − margin {limit}",
                    lease.usable_until
                ));
            }
        }
        let Some(facts) = self.grants.get(&generation) else {
            return Some(format!("{generation} was never installed"));
        };
        if let Some(cutoff) = &self.policy.daily_cutoff {
            let cut = next_local_after(facts.chain_start, cutoff.at, cutoff.tz.name());
            if now >= cut {
                return Some(format!(
                    "{generation} (login issued {}) is past the daily cut-off {cut} at {now}",
                    facts.chain_start
                ));
            }
            if lease.usable_until > cut {
                return Some(format!(
                    "{generation} (login issued {}) usable until {} beyond the daily cut-off {cut}",
                    facts.chain_start, lease.usable_until
                ));
            }
        }
        None
    }

    /// Records what an input tells the model before the session answers it.
    fn before(&mut self, fed: &Fed, now: UnixMs, pre: &Seen) {
        match fed {
            Fed::AuthDone { .. } => self.auth = None,
            Fed::KeepaliveDone { .. } => self.keepalive = None,
            _ => {}
        }
        match fed {
            Fed::Rejected { generation, class: ErrorClass::AuthExpired | ErrorClass::Competing } => {
                self.dead.insert(*generation);
            }
            Fed::KeepaliveDone { result, pinged: Some(generation) } => {
                if matches!(
                    result,
                    KeepaliveResult::Unauthenticated
                        | KeepaliveResult::Competing
                        | KeepaliveResult::Err(ErrorClass::AuthExpired | ErrorClass::Competing)
                ) {
                    self.dead.insert(*generation);
                }
            }
            Fed::AuthDone { call, failure: Some(ErrorClass::AuthExpired), .. }
                if call.kind == AuthKind::Login && !matches!(pre.state, StateKind::Invalid | StateKind::Stopped) =>
            {
                self.rejections += 1;
            }
            Fed::Reset if pre.state != StateKind::Stopped => self.rejections = 0,
            Fed::CredentialsUpdated => self.rejections = 0,
            Fed::SecondFactor if matches!(pre.invalid_reason, Some(InvalidReason::NeedsHuman { .. })) => {
                self.rejections = 0;
            }
            Fed::Restart => {
                // The process died: its waiting requests and calls in flight died with it, and its hot
                // path is gone.
                self.waiters.clear();
                self.auth = None;
                self.keepalive = None;
                self.published = None;
            }
            _ => {}
        }
        let _ = now;
    }

    /// Checks the outputs of one input, in order.
    fn outputs(&mut self, fed: &Fed, now: UnixMs, outputs: &[Output], pre: &Seen, post: &Seen, overloaded_ok: bool) {
        let mut saved_flushed = false;
        for output in outputs {
            *self.stats.outputs.entry(super::output_name(output)).or_default() += 1;
            match output {
                Output::Persist { durability: Durability::Flushed } => saved_flushed = true,
                Output::Login { attempt, .. } => {
                    // Rule 5 across a crash: the attempt is on disk before the login leaves, because the
                    // driver carries outputs out in order and the flushed save comes first.
                    if !saved_flushed {
                        self.violate(
                            Rule::LoginAttemptsWithinRateLimit,
                            format!("Login {attempt:?} comes before a flushed save of its attempt"),
                        );
                    }
                    if let Some(call) = self.auth {
                        self.violate(Rule::SingleFlight, format!("Login {attempt:?} while {call:?} is outstanding"));
                    }
                    self.auth =
                        Some(Call { attempt: *attempt, kind: AuthKind::Login, started: now, chain_start: None });
                    self.check_login_rate(now);
                    self.check_no_call_while_invalid(fed, pre, post, "Login");
                }
                Output::Refresh { attempt, grant } => {
                    if let Some(call) = self.auth {
                        self.violate(Rule::SingleFlight, format!("Refresh {attempt:?} while {call:?} is outstanding"));
                    }
                    if !self.capabilities.refresh {
                        self.violate(Rule::SingleFlight, "Refresh asked of a broker without refresh".into());
                    }
                    let chain_start = self
                        .tokens
                        .get(grant.access_token.expose())
                        .and_then(|g| self.grants.get(g))
                        .map(|f| f.chain_start);
                    self.auth = Some(Call { attempt: *attempt, kind: AuthKind::Refresh, started: now, chain_start });
                    self.check_no_call_while_invalid(fed, pre, post, "Refresh");
                }
                Output::Keepalive { attempt, grant } => {
                    if let Some(other) = self.keepalive {
                        self.violate(Rule::SingleFlight, format!("Keepalive {attempt:?} while {other:?} is out"));
                    }
                    if !self.capabilities.keepalive {
                        self.violate(Rule::SingleFlight, "Keepalive asked of a broker without keep-alive".into());
                    }
                    let pinged = self.tokens.get(grant.access_token.expose()).copied();
                    self.keepalive = Some((*attempt, pinged));
                }
                Output::Serve { waiter, lease } => {
                    match self.waiters.remove(waiter) {
                        None => self.violate(
                            Rule::EveryWaiterAnsweredExactlyOnce,
                            format!("Serve of {waiter:?}, which is not waiting (answered twice, or never asked)"),
                        ),
                        Some(w) => {
                            if w.newer_than.is_some_and(|g| lease.generation <= g) {
                                self.violate(
                                    Rule::EveryWaiterAnsweredExactlyOnce,
                                    format!(
                                        "{waiter:?} wanted newer than {:?}, got {}",
                                        w.newer_than, lease.generation
                                    ),
                                );
                            }
                        }
                    }
                    if let Some(problem) = self.dead_lease(lease, now) {
                        self.violate(Rule::NeverServeADeadToken, format!("Serve {waiter:?}: {problem}"));
                    }
                    if now >= lease.usable_until {
                        self.violate(
                            Rule::NeverServeADeadToken,
                            format!("Serve {waiter:?} at {now}, lease usable until {}", lease.usable_until),
                        );
                    }
                    if lease.usable_until.as_millis() - now.as_millis() < 60_000 {
                        self.stats.serves_near_end += 1;
                    }
                }
                Output::Fail { waiter, error } => {
                    let waiting = self.waiters.remove(waiter);
                    let rule = Rule::EveryWaiterAnsweredExactlyOnce;
                    match (waiting, error) {
                        (None, _) => self.violate(rule, format!("Fail of {waiter:?}, which is not waiting")),
                        (Some(w), RequestError::Timeout(_)) if now < w.deadline => {
                            self.violate(rule, format!("{waiter:?} timed out at {now}, deadline {}", w.deadline));
                        }
                        (Some(_), RequestError::Invalid(_)) if post.state != StateKind::Invalid => {
                            self.violate(rule, format!("{waiter:?} failed Invalid in {}", post.state));
                        }
                        (Some(_), RequestError::Stopped) if post.state != StateKind::Stopped => {
                            self.violate(rule, format!("{waiter:?} failed Stopped in {}", post.state));
                        }
                        (Some(_), RequestError::Overloaded { .. }) if !overloaded_ok => {
                            self.violate(rule, format!("{waiter:?} refused as overloaded with room to wait"));
                        }
                        _ => {}
                    }
                }
                Output::Publish(Some(lease)) => {
                    if let Some(problem) = self.dead_lease(lease, now) {
                        self.violate(Rule::NeverServeADeadToken, format!("Publish: {problem}"));
                    }
                    if now >= lease.usable_until {
                        self.violate(Rule::NeverServeADeadToken, format!("Publish of a lease already over at {now}"));
                    }
                    self.published = Some(lease.clone());
                }
                Output::Publish(None) => self.published = None,
                Output::Event(event) => match &event.kind {
                    EventKind::GrantInstalled { generation, kind, issued_at, .. } => {
                        let completing = match fed {
                            Fed::AuthDone { call, token, .. } => Some((call, token)),
                            _ => None,
                        };
                        let Some((call, token)) = completing else {
                            self.violate(Rule::SingleFlight, format!("grant {generation} installed without an answer"));
                            continue;
                        };
                        let chain_start = match kind {
                            AuthKind::Login => *issued_at,
                            AuthKind::Refresh => call.chain_start.unwrap_or(*issued_at),
                        };
                        self.grants.insert(*generation, Facts { chain_start });
                        if let Some(token) = token {
                            self.tokens.insert(token.clone(), *generation);
                        }
                        if *kind == AuthKind::Login {
                            self.rejections = 0;
                        }
                    }
                    EventKind::Deferred { cause: warden_engine::event::DeferCause::LoginRate, .. } => {
                        self.stats.rate_limited_waits += 1;
                    }
                    // A login that straddled a daily cut-off is thrown away and made again at once; the
                    // two count as one attempt against the login rate.
                    EventKind::LoginDiscarded { .. } => {
                        self.logins.pop();
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn check_login_rate(&mut self, now: UnixMs) {
        self.logins.push(now);
        let Some(rate) = self.policy.login_rate else { return };
        let n = self.logins.len();
        let max = rate.max as usize;
        if n > max {
            let first = self.logins[n - 1 - max];
            let span = now.as_millis() - first.as_millis();
            if span < rate.per.0.as_millis() as i64 {
                self.violate(
                    Rule::LoginAttemptsWithinRateLimit,
                    format!(
                        "{} logins within {span} ms (rate {} per {:?}): {first} … {now}",
                        max + 1,
                        rate.max,
                        rate.per.0
                    ),
                );
            }
        }
    }

    fn check_no_call_while_invalid(&mut self, fed: &Fed, pre: &Seen, post: &Seen, what: &str) {
        let leaves_invalid = matches!(fed, Fed::Reset | Fed::CredentialsUpdated)
            || (matches!(fed, Fed::SecondFactor)
                && matches!(pre.invalid_reason, Some(InvalidReason::NeedsHuman { .. })))
            || (matches!(fed, Fed::Restart) && matches!(pre.invalid_reason, Some(InvalidReason::RestartLimit { .. })));
        if post.state == StateKind::Invalid || (pre.state == StateKind::Invalid && !leaves_invalid) {
            self.violate(
                Rule::PermanentErrorOrSpentBudgetGoesInvalidAndStays,
                format!("{what} while Invalid ({:?} → {:?}) on {fed:?}", pre.invalid_reason, post.invalid_reason),
            );
        }
    }

    /// Checks after an input, against the session's state.
    fn after(&mut self, fed: &Fed, now: UnixMs, session: &Session, pre: &Seen, post: &Seen) {
        // Rule 1: the standing publication and the session's own lease are alive.
        if let Some(lease) = self.published.clone() {
            if self.dead.contains(&lease.generation) {
                self.violate(
                    Rule::NeverServeADeadToken,
                    format!("the hot path still publishes {}, which was rejected", lease.generation),
                );
            }
            if !post.state.token_usable() {
                self.violate(Rule::NeverServeADeadToken, format!("a lease is still published in {}", post.state));
            }
        }
        if let Some(lease) = session.lease()
            && let Some(problem) = self.dead_lease(&lease, now)
        {
            self.violate(Rule::NeverServeADeadToken, format!("Session::lease(): {problem}"));
        }
        // Rule 2: the session agrees with the model about what is outstanding.
        if post.auth.map(|(a, _)| a) != self.auth.map(|c| c.attempt) {
            self.violate(Rule::SingleFlight, format!("auth_in_flight {:?}, model {:?}", post.auth, self.auth));
        }
        if post.keepalive != self.keepalive.map(|k| k.0) {
            self.violate(
                Rule::SingleFlight,
                format!("keepalive_in_flight {:?}, model {:?}", post.keepalive, self.keepalive),
            );
        }
        // Rule 4: nothing waits past its deadline, and the driver is woken in time.
        let rule = Rule::EveryWaiterAnsweredExactlyOnce;
        if post.waiting != self.waiters.len() {
            self.violate(rule, format!("session has {} waiting, model {}", post.waiting, self.waiters.len()));
        }
        if let Some((id, w)) = self.waiters.iter().find(|(_, w)| w.deadline <= now) {
            let message = format!("{id:?} unanswered at {now}, deadline {}", w.deadline);
            self.violate(rule, message);
        }
        if let Some(earliest) = self.waiters.values().map(|w| w.deadline).min()
            && post.timeout.is_none_or(|t| t > earliest)
        {
            self.violate(
                rule,
                format!("poll_timeout {:?} is after the earliest waiter deadline {earliest}", post.timeout),
            );
        }
        if matches!(post.state, StateKind::Invalid | StateKind::Stopped) && !self.waiters.is_empty() {
            self.violate(rule, format!("{} requests still wait in {}", self.waiters.len(), post.state));
        }
        // Rule 6: give up on a permanent error or a spent budget, for a reason, and stay.
        self.check_invalid(fed, pre, post);
        // Coverage.
        *self.stats.states.entry(post.state).or_default() += 1;
        if let Some(reason) = &post.invalid_reason {
            let name = format!("{reason:?}");
            self.stats.invalid_reasons.insert(name.split([' ', '{']).next().unwrap_or_default().to_owned());
        }
    }

    fn check_invalid(&mut self, fed: &Fed, pre: &Seen, post: &Seen) {
        let rule = Rule::PermanentErrorOrSpentBudgetGoesInvalidAndStays;
        let live = !matches!(pre.state, StateKind::Invalid | StateKind::Stopped);
        let yield_ = self.policy.on_competing == OnCompeting::Yield;
        // What the input must lead to, and which reasons may explain a new `Invalid`.
        let (must, may): (Option<&str>, &[&str]) = match fed {
            Fed::AuthDone { call, failure: Some(class), .. } if live => match (call.kind, class) {
                (AuthKind::Login, ErrorClass::Permanent) => (Some("BadCredentials"), &["BadCredentials"]),
                (AuthKind::Login, ErrorClass::NeedsHuman) => (Some("NeedsHuman"), &["NeedsHuman"]),
                (AuthKind::Login, ErrorClass::AuthExpired)
                    if self.rejections >= self.policy.max_consecutive_failures =>
                {
                    (Some("FailureBudgetSpent"), &["FailureBudgetSpent"])
                }
                (_, ErrorClass::Competing) if yield_ => (Some("Competing"), &["Competing"]),
                _ => (None, &[]),
            },
            Fed::GiveUp if pre.state != StateKind::Stopped => (Some("RestartLimit"), &["RestartLimit"]),
            Fed::Rejected { class: ErrorClass::Competing, .. } if yield_ => (None, &["Competing"]),
            Fed::KeepaliveDone {
                result: KeepaliveResult::Competing | KeepaliveResult::Err(ErrorClass::Competing),
                ..
            } if yield_ => (None, &["Competing"]),
            _ => (None, &[]),
        };
        let reason = post.invalid_reason.as_ref().map(|r| format!("{r:?}"));
        let reason_name = reason.as_deref().and_then(|r| r.split([' ', '{']).next()).unwrap_or("-").to_owned();
        if let Some(want) = must
            && reason_name != want
        {
            self.violate(rule, format!("{fed:?} must give Invalid({want}), session is {} ({reason:?})", post.state));
        }
        if post.state == StateKind::Invalid && pre.state != StateKind::Invalid && !may.contains(&reason_name.as_str()) {
            self.violate(rule, format!("went Invalid ({reason:?}) on {fed:?}, which does not justify it"));
        }
        let leaves = match fed {
            Fed::Reset | Fed::CredentialsUpdated | Fed::Logout => true,
            Fed::SecondFactor => matches!(pre.invalid_reason, Some(InvalidReason::NeedsHuman { .. })),
            // Giving up after a crash loop lasts as long as the process: a restart has a fresh budget.
            Fed::Restart => matches!(pre.invalid_reason, Some(InvalidReason::RestartLimit { .. })),
            _ => false,
        };
        if pre.state == StateKind::Invalid && !leaves && post.state != StateKind::Invalid {
            self.violate(rule, format!("left Invalid for {} on {fed:?}", post.state));
        }
    }
}

/// Drives one session through [`Step`]s and checks it with an [`Observer`].
#[derive(Debug)]
pub struct Driver {
    /// The spec of the run.
    pub spec: Spec,
    config: SessionConfig,
    /// The session (replaced on restart).
    pub session: Session,
    /// The driver's clock: the latest time given to the session.
    pub now: UnixMs,
    /// The model.
    pub obs: Observer,
    /// `Debug` of every input and its outputs, with times, when tracing.
    pub trace: Option<Vec<String>>,
    /// Steps applied.
    pub steps: usize,
    answered: Vec<AttemptId>,
    next_waiter: u64,
    next_token: u64,
}

impl Driver {
    /// A new session per `spec`, at its start time.
    pub fn new(spec: Spec, trace: bool) -> Driver {
        let config = spec.config();
        let now = spec.start();
        let session = Session::new(config.clone(), now);
        let mut driver = Driver {
            obs: Observer::new(config.policy.clone(), config.capabilities),
            spec,
            config,
            session,
            now,
            trace: trace.then(Vec::new),
            steps: 0,
            answered: Vec::new(),
            next_waiter: 1,
            next_token: 1,
        };
        let pre = Seen::of(&driver.session);
        let outputs = drain(&mut driver.session);
        driver.record("new", &outputs);
        driver.observe(&Fed::Restart, &outputs, &pre, false);
        driver
    }

    fn record(&mut self, what: &str, outputs: &[Output]) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{} {what}", self.now));
            for output in outputs {
                trace.push(format!("  {output:?}"));
            }
        }
    }

    fn observe(&mut self, fed: &Fed, outputs: &[Output], pre: &Seen, overloaded_ok: bool) {
        let post = Seen::of(&self.session);
        self.obs.outputs(fed, self.now, outputs, pre, &post, overloaded_ok);
        self.obs.after(fed, self.now, &self.session, pre, &post);
        if let Some(t) = post.timeout
            && t <= self.now
        {
            panic!("poll_timeout {t} is not after now {}", self.now);
        }
    }

    /// Feeds one input at the driver's time and checks the result.
    fn feed(&mut self, fed: Fed, input: Input) -> Vec<Output> {
        let pre = Seen::of(&self.session);
        let overloaded_ok = self.obs.waiters.len() > self.config.policy.max_waiters as usize;
        self.obs.before(&fed, self.now, &pre);
        let what = format!("{input:?}");
        self.session.handle(self.now, input);
        let outputs = drain(&mut self.session);
        self.record(&what, &outputs);
        self.observe(&fed, &outputs, &pre, overloaded_ok);
        outputs
    }

    /// Feeds an input that must change nothing (rule 3): first a tick at the same time so that nothing
    /// due is left, then the input; `allowed` says which outputs it may produce.
    fn feed_stale(&mut self, fed: Fed, input: Input, allowed: &[&str], free_keepalive: bool) {
        self.feed(Fed::Tick, Input::Tick);
        let mut before = Seen::of(&self.session);
        let outputs = self.feed(fed.clone(), input);
        let mut after = Seen::of(&self.session);
        if free_keepalive {
            // The answer frees the keep-alive slot, so the current grant's own ping may start now.
            after.keepalive = None;
            before.keepalive = None;
            after.timeout = before.timeout;
        }
        let unexpected: Vec<&Output> = outputs
            .iter()
            .filter(|o| !allowed.contains(&super::output_name(o).as_str()))
            .filter(|o| !(free_keepalive && matches!(o, Output::Keepalive { .. })))
            .collect();
        if !unexpected.is_empty() || before != after {
            let message = format!("{fed:?} changed things: outputs {unexpected:?}, {before:?} → {after:?}");
            self.obs.violate(Rule::StaleGenerationsTriggerNothing, message);
        }
        self.obs.stats.stale_checked += 1;
    }

    fn grant(&mut self, call: &Call, lifetime_ms: Option<u64>, refresh: Option<Option<u64>>) -> Grant {
        let n = self.next_token;
        self.next_token += 1;
        let mut grant = Grant::new(format!("access-{n}"), call.started);
        if let Some(ms) = lifetime_ms {
            grant = grant.expires_in(Duration::from_millis(ms));
        }
        if let Some(lifetime) = refresh {
            grant = grant.with_refresh(format!("refresh-{n}"), lifetime.map(Duration::from_millis));
        }
        grant
    }

    /// Applies one step.
    pub fn step(&mut self, step: &Step) {
        self.steps += 1;
        self.obs.step = self.steps;
        match step {
            Step::Advance { ms } => {
                self.now = plus_ms(self.now, *ms as i64);
                self.feed(Fed::Tick, Input::Tick);
            }
            Step::TickAtTimeout => {
                self.now = self.session.poll_timeout().unwrap_or_else(|| plus_ms(self.now, 1000));
                self.feed(Fed::Tick, Input::Tick);
            }
            Step::TickJustBefore | Step::TickEarlier { .. } => {
                let t = match step {
                    Step::TickEarlier { ms } => plus_ms(self.now, -(*ms as i64)),
                    _ => match self.session.poll_timeout() {
                        Some(t) => plus_ms(t, -1),
                        None => return,
                    },
                };
                let before = Seen::of(&self.session);
                self.session.handle_tick(t);
                let outputs = drain(&mut self.session);
                self.now = self.now.max(t);
                self.record(&format!("Tick at {t}"), &outputs);
                assert!(outputs.is_empty(), "a tick at {t} before any deadline produced {outputs:?}");
                assert_eq!(before, Seen::of(&self.session), "a tick before any deadline changed the session");
            }
            Step::Request { newer } => {
                let current = self.session.generation();
                let newer_than = match newer {
                    Newer::Any => None,
                    Newer::Current => Some(current),
                    Newer::Older if current.0 >= 1 => Some(Generation(current.0 - 1)),
                    Newer::Older => None,
                };
                let waiter = WaiterId(self.next_waiter);
                self.next_waiter += 1;
                // A caller that saw a generation rejected reports it dead.
                if let Some(g) = newer_than {
                    self.obs.dead.insert(g);
                }
                let deadline = self.now.saturating_add(self.config.policy.request_timeout);
                self.obs.waiters.insert(waiter, Waiting { deadline, newer_than });
                self.feed(Fed::Request, Input::Request { waiter, newer_than });
            }
            Step::Cancel { pick } => {
                let waiter = if self.obs.waiters.is_empty() {
                    WaiterId(u64::MAX)
                } else {
                    *self.obs.waiters.keys().nth(pick % self.obs.waiters.len()).expect("in range")
                };
                self.obs.waiters.remove(&waiter);
                self.feed(Fed::Cancel, Input::Cancel { waiter });
            }
            Step::Activity => {
                self.feed(Fed::Activity, Input::Activity);
            }
            Step::Reject { which, class } => {
                let current = self.session.generation();
                let generation = match which {
                    Which::Current => current,
                    Which::Older(k) => Generation(current.0.saturating_sub(*k)),
                };
                let fed = Fed::Rejected { generation, class: *class };
                let input = Input::Rejected { generation, class: *class };
                let usable = self.session.lease().map(|l| l.generation);
                // A grant kept after a crash loop is marked dead by a rejection, for the next process.
                let kept = matches!(self.session.invalid_reason(), Some(InvalidReason::RestartLimit { .. }))
                    && generation == current;
                if usable == Some(generation) {
                    self.feed(fed, input);
                } else {
                    self.feed_stale(fed, input, if kept { &["Persist"] } else { &[] }, false);
                }
            }
            Step::AuthDone { result } => {
                let Some(call) = self.obs.auth else { return };
                self.answered.push(call.attempt);
                let (result, failure, token) = match result {
                    AuthResult::Ok { lifetime_ms, refresh } => {
                        let grant = self.grant(&call, *lifetime_ms, *refresh);
                        let token = grant.access_token.expose().to_owned();
                        (Ok(grant), None, Some(token))
                    }
                    AuthResult::Err(class) => (Err(AuthFailure::new(*class, "scripted")), Some(*class), None),
                };
                self.feed(
                    Fed::AuthDone { call, failure, token },
                    Input::AuthCompleted { attempt: call.attempt, result },
                );
            }
            Step::AuthStale { pick, ok } => {
                let outstanding = self.obs.auth.map(|c| c.attempt);
                let earlier: Vec<AttemptId> =
                    self.answered.iter().copied().filter(|a| Some(*a) != outstanding).collect();
                let attempt = if earlier.is_empty() { AttemptId(u64::MAX - 1) } else { earlier[pick % earlier.len()] };
                let result = if *ok {
                    let call = Call { attempt, kind: AuthKind::Login, started: self.now, chain_start: None };
                    Ok(self.grant(&call, Some(3_600_000), None))
                } else {
                    Err(AuthFailure::new(ErrorClass::Transient, "stray"))
                };
                let allowed: &[&str] = if *ok { &["Logout"] } else { &[] };
                self.feed_stale(Fed::AuthStale, Input::AuthCompleted { attempt, result }, allowed, false);
            }
            Step::KeepaliveDone { result } => {
                let Some((attempt, pinged)) = self.obs.keepalive else { return };
                let status = match result {
                    KeepaliveResult::Alive => Ok(KeepaliveStatus::Alive),
                    KeepaliveResult::Unauthenticated => Ok(KeepaliveStatus::Unauthenticated),
                    KeepaliveResult::Competing => Ok(KeepaliveStatus::Competing),
                    KeepaliveResult::Err(class) => Err(AuthFailure::new(*class, "scripted")),
                };
                let fed = Fed::KeepaliveDone { result: *result, pinged };
                let input = Input::KeepaliveCompleted { attempt, result: status };
                let usable = self.session.lease().map(|l| l.generation);
                if pinged.is_some() && usable == pinged {
                    self.feed(fed, input);
                } else {
                    // The ping was about a grant that is no longer the usable one: its answer is stale —
                    // except that a grant kept after a crash loop is marked dead by an answer saying so,
                    // for the next process (as by a rejection).
                    let says_dead = matches!(
                        result,
                        KeepaliveResult::Unauthenticated
                            | KeepaliveResult::Competing
                            | KeepaliveResult::Err(ErrorClass::AuthExpired | ErrorClass::Competing)
                    );
                    let kept = matches!(self.session.invalid_reason(), Some(InvalidReason::RestartLimit { .. }))
                        && pinged == Some(self.session.generation())
                        && says_dead;
                    self.feed_stale(fed, input, if kept { &["Persist"] } else { &[] }, true);
                }
            }
            Step::KeepaliveStale => {
                let input = Input::KeepaliveCompleted {
                    attempt: AttemptId(u64::MAX - 2),
                    result: Ok(KeepaliveStatus::Unauthenticated),
                };
                self.feed_stale(Fed::KeepaliveStale, input, &[], false);
            }
            Step::Reset => {
                self.feed(Fed::Reset, Input::Reset);
            }
            Step::CredentialsUpdated => {
                self.feed(Fed::CredentialsUpdated, Input::CredentialsUpdated);
            }
            Step::SecondFactor => {
                self.feed(Fed::SecondFactor, Input::SecondFactor(Secret::new("424242")));
            }
            Step::Logout => {
                self.feed(Fed::Logout, Input::Logout);
            }
            Step::GiveUp => {
                self.feed(Fed::GiveUp, Input::GiveUp(InvalidReason::RestartLimit { restarts: 5, within_ms: 60_000 }));
            }
            Step::Restart { down_ms } => self.restart(*down_ms),
        }
    }

    /// The process dies and a new one restores the session from its snapshot, round-tripped through
    /// rmp-serde the way the sled store writes it.
    fn restart(&mut self, down_ms: u64) {
        let snapshot = self.session.snapshot();
        let bytes =
            warden_engine::secret::serialize_exposed(|| rmp_serde::to_vec_named(&snapshot)).expect("snapshot encodes");
        let decoded: Snapshot = rmp_serde::from_slice(&bytes).expect("snapshot decodes");
        assert_eq!(decoded, snapshot, "the snapshot changed through rmp-serde");
        let pre = Seen::of(&self.session);
        let usable_before = pre.lease;
        self.now = plus_ms(self.now, down_ms as i64);
        self.obs.before(&Fed::Restart, self.now, &pre);
        self.session = Session::restore(self.config.clone(), decoded, self.now).expect("restore");
        self.answered.clear();
        let outputs = drain(&mut self.session);
        self.record(&format!("Restart after {down_ms} ms"), &outputs);
        self.observe(&Fed::Restart, &outputs, &pre, false);
        if usable_before.is_some()
            && self.session.state().token_usable()
            && !outputs.iter().any(|o| matches!(o, Output::Login { .. }))
        {
            self.obs.stats.restarts_resuming_grant += 1;
        }
    }

    /// Violations of `rule` so far.
    pub fn violations_of(&self, rule: Rule) -> Vec<&Violation> {
        self.obs.violations.iter().filter(|v| v.rule == rule).collect()
    }
}
