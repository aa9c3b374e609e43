//! In-process broker models: [`BrokerModel`] implements [`warden_engine::Broker`] and enforces one
//! broker's rules, so the simulator can run the real engine against it in virtual time.
//!
//! A model is built from a [`BrokerSpec`] (each broker's defaults from its public documentation, overridable by a
//! scenario's `[broker]` table) and a seed. It never reads a clock: every call carries the wall-clock
//! `now` (for a workload request, the instant it was sent), and every time-based broker event — an
//! early expiry, a silent de-authentication, a reset, a competing login, an idle timeout, an outage — is
//! applied when a call arrives with a `now` past it:
//!
//! - Scheduled events that end the session and the daily/weekly resets are known in advance, so each
//!   token's death (instant and reason) is fixed when it is issued: the first event or reset after its
//!   issue. Judging a token is then two comparisons, whatever order calls arrive in.
//! - What depends on the calls themselves (an idle timeout, a competing hold, a lock-out, a superseded or
//!   rotated token, rate limits) is updated as calls arrive.
//!
//! Every call is a round trip ([`Trip`]): the model judges it when it arrives, half its latency after it
//! was sent, and the caller has the answer when the whole latency has passed. Login, refresh, keep-alive
//! and logout sleep for both legs with `tokio::time::sleep` (virtual time under tokio's paused clock) and
//! stamp grants with the send time; a token is born, for the model's own bookkeeping, when its login or
//! refresh arrives. [`BrokerModel::call`] is the workload's request: it sleeps once, for the whole round
//! trip, and is judged as of its arrival when the model next looks at anything at or after that instant
//! (every call arriving earlier is judged first, so the broker sees calls in arrival order);
//! [`BrokerModel::request`] judges at once as of the arrival, for tests that call in arrival order. Judging
//! a request is O(1) and allocation-free when it succeeds.
//!
//! ```
//! use warden_engine::UnixMs;
//! use warden_sim::model::{BrokerModel, BrokerSpec, ModelKind, ModelRequest};
//!
//! let model = BrokerModel::new(BrokerSpec::preset(ModelKind::Saxo), 7);
//! let response = model.request(UnixMs::from_millis(0), "not-a-token", &ModelRequest::read(0));
//! assert!(response.result.is_err());
//! assert_eq!(model.stats().unknown_tokens, 1);
//! ```

mod limit;
mod refusals;
mod routes;
mod spec;
mod stats;
mod trip;
mod wire;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use warden_engine::rng::SplitMix64;
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, ErrorClass, Grant, KeepaliveStatus, LoginRequest, UnixMs,
};

use limit::Limiter;
use refusals::Refusals;
pub use refusals::{REFUSALS_KEPT, Refusal};
pub use routes::route_of;
pub use spec::{
    Affects, BrokerEvent, BrokerSpec, Endpoint, ErrorRates, EventKind, Latency, Limit, Lockout, LoginAfterExpiry,
    ModelKind, Outage, OutageMode, RateLimit, RejectionForm, TokenExpiry, WeeklyReset, Window, window_at,
};
pub use stats::ModelStats;
pub use trip::Trip;
pub use wire::{
    CODE_ACCOUNT_LOCKED, CODE_ANGEL_INVALID_TOKEN, CODE_COMPETING, CODE_IBKR_NO_SESSION, CODE_INVALID_CREDENTIALS,
    CODE_INVALID_GRANT, CODE_INVALID_TOKEN, CODE_KITE_TOKEN, CODE_KOTAK_JWT, CODE_KOTAK_SESSION,
    CODE_LOGIN_CODE_INVALID, CODE_NEEDS_PERSON, CODE_OPENALGO_EXPIRED, CODE_RESPONSE_LOST, CODE_SECOND_FACTOR,
    classify,
};

/// Which entry of the workload's request mix a request comes from (an index into the scenario's
/// `[[workload.mix]]`); the model only uses it as a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KindId(pub u16);

/// A workload request, as the broker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelRequest {
    /// Which kind of request (a mix entry).
    pub kind: KindId,
    /// Whether executing it twice is harmless (a quote) or not (an order).
    pub idempotent: bool,
    /// The operation's identity: a non-idempotent operation executed twice is a duplicate order.
    pub op_id: u64,
}

impl ModelRequest {
    /// An idempotent request of kind 0.
    pub fn read(op_id: u64) -> ModelRequest {
        ModelRequest { kind: KindId(0), idempotent: true, op_id }
    }

    /// A non-idempotent request (an order) of kind 0.
    pub fn order(op_id: u64) -> ModelRequest {
        ModelRequest { kind: KindId(0), idempotent: false, op_id }
    }
}

/// What the broker answered a workload request, and how long the answer took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelResponse {
    /// The round trip: the caller sees the answer at `sent_at + latency`.
    pub latency: Duration,
    /// The answer.
    pub result: Result<(), BrokerError>,
}

/// A login as a wire protocol presents it ([`BrokerModel::judge_login`], the mock servers): what the
/// `Broker` trait's login says, plus what only a wire protocol can say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginAttempt<'a> {
    /// The login asks to take the account over from another session (IBKR's `compete: true`).
    pub take_over: bool,
    /// A second factor or a person's login code, if the login carries one.
    pub second_factor: Option<&'a str>,
    /// The credentials on the wire did not match the account's (a wrong MPIN, checksum, client secret or
    /// signature): refused as wrong credentials, and counted toward a lock-out, like a period of
    /// `wrong_credentials`.
    pub wrong_credentials: bool,
    /// The wire protocol needs a person's login code for every login (Kite's request token, an OAuth
    /// authorization code): `second_factor` must be a fresh, unused code from
    /// [`BrokerModel::issue_login_code`], whatever `login_after_expiry` says.
    pub code_required: bool,
}

/// Which kind of call a round trip is, for its latency ([`BrokerModel::sample_trip`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallKind {
    /// A login (`login_latency`).
    Login,
    /// A refresh-token grant (`refresh_latency`).
    Refresh,
    /// A keep-alive or a logout (`keepalive_latency`).
    Keepalive,
    /// A workload request (`request_latency`).
    Request,
}

/// Why the broker stopped accepting a token before its declared expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Revocation {
    /// An intraday invalidation the broker reports (Kotak `900901`).
    EarlyExpiry,
    /// A silent de-authentication.
    SilentDeauth,
    /// Another login took the account.
    CompetingLogin,
    /// A daily or weekly reset.
    Reset,
    /// The session idled out without keep-alive or requests.
    IdleTimeout,
    /// A newer login of the same account replaced it.
    Superseded,
    /// A refresh token that was used (refresh rotates the pair).
    Rotated,
    /// Logged out.
    LoggedOut,
    /// The session died on the request's endpoint only ([`Endpoint::early_expiries`]); other endpoints
    /// still accept the token.
    EndpointExpiry,
}

impl Revocation {
    fn of(kind: EventKind) -> Revocation {
        match kind {
            EventKind::EarlyExpiry => Revocation::EarlyExpiry,
            EventKind::SilentDeauth => Revocation::SilentDeauth,
            EventKind::CompetingLogin => Revocation::CompetingLogin,
        }
    }
}

/// Whether the broker would accept a token at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenVerdict {
    /// Accepted.
    Accepted,
    /// Past its declared expiry (presenting it is warden's fault).
    Expired,
    /// Revoked before its declared expiry.
    Revoked(Revocation),
    /// Never issued by this model.
    Unknown,
}

/// One issued token (access or refresh).
#[derive(Debug)]
struct TokenRecord {
    text: String,
    refresh: bool,
    /// When the broker issued it (`now + latency` of the call that made it).
    born_at: UnixMs,
    /// The declared expiry (what the grant says).
    expires_at: UnixMs,
    /// When it stops being accepted before that, and why.
    dies_at: UnixMs,
    death: Option<Revocation>,
}

impl TokenRecord {
    fn verdict(&self, at: UnixMs) -> TokenVerdict {
        if at >= self.expires_at {
            TokenVerdict::Expired
        } else if at >= self.dies_at {
            TokenVerdict::Revoked(self.death.unwrap_or(Revocation::Reset))
        } else {
            TokenVerdict::Accepted
        }
    }

    /// Ends the token at `at` for `why`, unless it ends earlier anyway.
    fn kill(&mut self, at: UnixMs, why: Revocation) {
        if at < self.dies_at {
            self.dies_at = at;
            self.death = Some(why);
        }
    }
}

/// The mutable state of a model.
#[derive(Debug)]
struct State {
    rng: SplitMix64,
    tokens: Vec<TokenRecord>,
    /// Indices of tokens that may still be alive (pruned on login and refresh).
    live: Vec<usize>,
    /// The access token of the latest login or refresh.
    current: Option<usize>,
    /// The first scheduled event not yet applied.
    next_event: usize,
    /// Another login holds the account until a login takes it over.
    held_by_other: bool,
    last_activity: UnixMs,
    login_limiter: Limiter,
    request_limiter: Limiter,
    order_limiter: Limiter,
    /// One per [`BrokerSpec::endpoints`] entry (empty limits for those without their own).
    endpoint_limiters: Vec<Limiter>,
    /// With [`LoginAfterExpiry::Person`]: logins work without a person's code until then (`None`: no login
    /// yet — the run's first login counts as made by a person before the start).
    person_ok_until: Option<UnixMs>,
    /// Login codes handed to operators, newest last (at most [`LOGIN_CODES_KEPT`]).
    codes: Vec<LoginCode>,
    wrong_streak: u32,
    locked_until: UnixMs,
    executed: HashSet<u64>,
    refusals: Refusals,
    stats: ModelStats,
    /// Workload requests sent and not yet judged, the next to arrive first (see [`BrokerModel::call`]).
    arrivals: BinaryHeap<Reverse<Arrival>>,
    /// Verdicts of requests judged before their caller came for them, by [`Arrival::seq`].
    verdicts: HashMap<u64, Result<(), BrokerError>>,
    /// Requests whose caller went away before its answer: judged all the same (the broker got them),
    /// their verdicts dropped.
    abandoned: HashSet<u64>,
    next_seq: u64,
}

/// A workload request on its way to the broker: judged when the model next looks at anything at or after
/// its arrival, in arrival order.
struct Arrival {
    trip: Trip,
    seq: u64,
    token: String,
    req: ModelRequest,
}

impl fmt::Debug for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the token: Debug output never carries one.
        f.debug_struct("Arrival").field("trip", &self.trip).field("seq", &self.seq).field("req", &self.req).finish()
    }
}

impl Arrival {
    fn key(&self) -> (UnixMs, u64) {
        (self.trip.arrives_at(), self.seq)
    }
}

impl PartialEq for Arrival {
    fn eq(&self, other: &Arrival) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Arrival {}

impl PartialOrd for Arrival {
    fn partial_cmp(&self, other: &Arrival) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Arrival {
    fn cmp(&self, other: &Arrival) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// A request the caller waits on; dropped before its answer, it leaves its verdict to be discarded.
struct PendingCall<'a> {
    model: &'a BrokerModel,
    seq: u64,
    answered: bool,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let mut state = self.model.lock();
            if state.verdicts.remove(&self.seq).is_none() {
                state.abandoned.insert(self.seq);
            }
        }
    }
}

struct Inner {
    spec: BrokerSpec,
    /// The endpoint classes it declares to warden (from the spec's order and endpoint limits).
    limits: Box<[warden_engine::limits::EndpointLimit]>,
    label: String,
    state: Mutex<State>,
}

/// A simulated broker account. Cheap to clone (clones share the account); deterministic for a seed and
/// a sequence of calls.
#[derive(Clone)]
pub struct BrokerModel {
    inner: Arc<Inner>,
}

impl fmt::Debug for BrokerModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerModel").field("kind", &self.inner.spec.kind).field("label", &self.inner.label).finish()
    }
}

/// The most login codes a model remembers (older ones are forgotten: they have expired long since).
const LOGIN_CODES_KEPT: usize = 64;

/// A login code a person obtained and handed to an operator.
#[derive(Debug)]
struct LoginCode {
    text: String,
    issued_at: UnixMs,
    used: bool,
}

/// Preallocated room for executed operation ids.
const EXECUTED_CAPACITY: usize = 1 << 14;

impl BrokerModel {
    /// A model of one account, labelled with the model's name.
    pub fn new(spec: BrokerSpec, seed: u64) -> BrokerModel {
        let label = spec.kind.name().to_owned();
        BrokerModel::with_label(spec, seed, label)
    }

    /// A model of one account whose tokens carry `label` (a session or host name).
    pub fn with_label(spec: BrokerSpec, seed: u64, label: impl Into<String>) -> BrokerModel {
        let state = State {
            rng: SplitMix64::new(seed),
            tokens: Vec::new(),
            live: Vec::new(),
            current: None,
            next_event: 0,
            held_by_other: false,
            last_activity: UnixMs::from_millis(i64::MIN),
            login_limiter: Limiter::new(&spec.login_limit),
            request_limiter: Limiter::new(&spec.request_limit),
            order_limiter: Limiter::new(&spec.order_limit),
            endpoint_limiters: spec
                .endpoints
                .iter()
                .map(|e| Limiter::new(&e.limit.clone().unwrap_or_default()))
                .collect(),
            person_ok_until: None,
            codes: Vec::new(),
            wrong_streak: 0,
            locked_until: UnixMs::from_millis(i64::MIN),
            executed: HashSet::with_capacity(EXECUTED_CAPACITY),
            refusals: Refusals::default(),
            stats: ModelStats::default(),
            arrivals: BinaryHeap::new(),
            verdicts: HashMap::new(),
            abandoned: HashSet::new(),
            next_seq: 0,
        };
        let limits = routes::endpoint_limits(&spec);
        BrokerModel { inner: Arc::new(Inner { spec, limits, label: label.into(), state: Mutex::new(state) }) }
    }

    /// The rules this model enforces.
    pub fn spec(&self) -> &BrokerSpec {
        &self.inner.spec
    }

    /// The label its tokens carry.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// What the engine's presets should know about this broker ([`BrokerSpec::hints`]).
    pub fn hints(&self) -> warden_engine::policy::BrokerHints {
        self.inner.spec.hints()
    }

    /// The token lifetime policies are checked against ([`BrokerSpec::nominal_lifetime`]).
    pub fn token_lifetime(&self) -> Duration {
        self.inner.spec.nominal_lifetime()
    }

    /// The counters so far (requests still on their way are counted as arrived).
    pub fn stats(&self) -> ModelStats {
        self.settled(UnixMs::MAX).stats
    }

    /// Whether the broker would accept `token` for a request arriving at `at`. Changes nothing and
    /// counts nothing: for assertions.
    pub fn verdict(&self, token: &str, at: UnixMs) -> TokenVerdict {
        let state = self.settled(at);
        let Some(index) = state.find(token, false) else { return TokenVerdict::Unknown };
        let verdict = state.tokens[index].verdict(at);
        // An idle timeout not yet applied (no call has arrived since) still counts.
        if verdict == TokenVerdict::Accepted
            && let Some(idle_death) = state.pending_idle_death(&self.inner.spec)
            && at >= idle_death
            && state.tokens[index].born_at < idle_death
            && state.live.contains(&index)
        {
            return TokenVerdict::Revoked(Revocation::IdleTimeout);
        }
        verdict
    }

    /// Whether the broker would accept `token` at `at` ([`BrokerModel::verdict`] is `Accepted`).
    pub fn is_accepted(&self, token: &str, at: UnixMs) -> bool {
        self.verdict(token, at) == TokenVerdict::Accepted
    }

    /// Samples the round trip of a workload request sent at `sent_at` (from the model's seeded
    /// generator; call it when the request is sent).
    pub fn send_request(&self, sent_at: UnixMs) -> Trip {
        let latency = self.inner.spec.request_latency.sample(&mut self.lock().rng);
        Trip::new(sent_at, latency)
    }

    /// Judges a workload request when it arrives ([`Trip::arrives_at`]) and answers; the answer reaches
    /// the caller after `latency` from the send (the whole round trip, or an outage's hang). Call it at the
    /// arrival instant, so that the model sees calls in the order the broker would. O(1) and
    /// allocation-free when it succeeds.
    pub fn judge_request(&self, trip: Trip, token: &str, req: &ModelRequest) -> ModelResponse {
        let mut state = self.settled(trip.arrives_at());
        state.judge_request(&self.inner.spec, trip, token, req)
    }

    /// A workload request sent at `sent_at` with `token`, without waiting: samples the round trip, judges
    /// the token at once as of its arrival and returns the answer with its latency. For tests and
    /// benchmarks that call in arrival order; the runner uses [`BrokerModel::call`].
    pub fn request(&self, sent_at: UnixMs, token: &str, req: &ModelRequest) -> ModelResponse {
        let trip = self.send_request(sent_at);
        self.judge_request(trip, token, req)
    }

    /// A workload request as the runner makes it, sent now (`sent_at` is the caller's wall clock): returns
    /// when the answer is back (tokio's clock). The broker judges it as of its arrival: lazily, when the
    /// model next looks at anything at or after that instant (another call's arrival, a report) or when
    /// the answer is due, whichever comes first, always in arrival order — one timer per request instead
    /// of a sleep to the arrival and another to the answer. A caller that goes away before its answer
    /// leaves the request to be judged all the same: the broker got it.
    pub async fn call(&self, sent_at: UnixMs, token: &str, req: &ModelRequest) -> Result<(), BrokerError> {
        let spec = &self.inner.spec;
        let (through, wait) = {
            let mut state = self.lock();
            let trip = Trip::new(sent_at, spec.request_latency.sample(&mut state.rng));
            // An outage that hangs requests holds the answer for its hang instead of the round trip.
            let wait = match window_at(&spec.outages, trip.arrives_at(), |o| o.window) {
                Some(Outage { affects, mode: OutageMode::Hang(hang), .. }) if affects.requests => *hang,
                _ => trip.latency,
            };
            let seq = state.next_seq;
            state.next_seq += 1;
            state.arrivals.push(Reverse(Arrival { trip, seq, token: token.to_owned(), req: *req }));
            ((trip.arrives_at(), seq), wait)
        };
        let mut pending = PendingCall { model: self, seq: through.1, answered: false };
        tokio::time::sleep(wait).await;
        pending.answered = true;
        let mut state = self.lock();
        state.settle(spec, through);
        state.verdicts.remove(&through.1).unwrap_or_else(|| Err(BrokerError::no_answer("the request was lost")))
    }

    /// A person logs in through the broker's web page at `at` and gets a login code (Kite's request token):
    /// single-use, good for the spec's `login_code_lifetime`. Hand it to warden as a second factor.
    pub fn issue_login_code(&self, at: UnixMs) -> String {
        let mut state = self.lock();
        let text = format!("{}-code{}-{}", self.inner.label, state.stats.login_codes_issued, at.as_millis());
        state.stats.login_codes_issued += 1;
        if state.codes.len() >= LOGIN_CODES_KEPT {
            state.codes.remove(0);
        }
        state.codes.push(LoginCode { text: text.clone(), issued_at: at, used: false });
        text
    }

    /// Samples the round trip of a call of `kind` sent at `sent_at` from the spec's latencies (for a
    /// server that serves the model in real time: sleep the uplink, judge, sleep the rest).
    pub fn sample_trip(&self, kind: CallKind, sent_at: UnixMs) -> Trip {
        match kind {
            CallKind::Login => self.trip(sent_at, |s| &s.login_latency),
            CallKind::Refresh => self.trip(sent_at, |s| &s.refresh_latency),
            CallKind::Keepalive => self.trip(sent_at, |s| &s.keepalive_latency),
            CallKind::Request => self.send_request(sent_at),
        }
    }

    /// Judges a login when it arrives ([`Trip::arrives_at`]), without waiting: the round trip (or an
    /// outage's hang) to wait in all, and the answer. What the `Broker` trait's login does between its
    /// sleeps; a mock server calls it for the login step of a broker's wire protocol.
    pub fn judge_login(&self, trip: Trip, attempt: LoginAttempt<'_>) -> (Duration, Result<Grant, BrokerError>) {
        self.decide_login(trip, attempt)
    }

    /// Judges a refresh-token grant when it arrives, without waiting (see [`BrokerModel::judge_login`]).
    pub fn judge_refresh(&self, trip: Trip, refresh_token: &str) -> (Duration, Result<Grant, BrokerError>) {
        if self.inner.spec.refresh_lifetime.is_none() {
            self.lock().stats.refresh_failures += 1;
            return (trip.latency, Err(wire::invalid_grant()));
        }
        let grant = Grant::new("", trip.sent_at).with_refresh(refresh_token.to_owned(), None);
        self.decide_refresh(trip, &grant)
    }

    /// Judges a keep-alive with `token` when it arrives, without waiting. A broker without a keep-alive
    /// answers `Alive` and counts nothing.
    pub fn judge_keepalive(&self, trip: Trip, token: &str) -> (Duration, Result<KeepaliveStatus, BrokerError>) {
        if !self.inner.spec.keepalive {
            return (Duration::ZERO, Ok(KeepaliveStatus::Alive));
        }
        self.decide_keepalive(trip, &Grant::new(token.to_owned(), trip.sent_at))
    }

    /// Judges a logout of the session of `token` (and `refresh_token`, if given) when it arrives.
    pub fn judge_logout(&self, trip: Trip, token: &str, refresh_token: Option<&str>) {
        let mut grant = Grant::new(token.to_owned(), trip.sent_at);
        if let Some(refresh) = refresh_token {
            grant = grant.with_refresh(refresh.to_owned(), None);
        }
        self.decide_logout(trip, &grant);
    }

    /// An intraday invalidation at `at`, on demand (a mock server's test route): every token still
    /// alive dies then as an [`Revocation::EarlyExpiry`], as a scheduled `early_expiries` entry would
    /// end it. Returns how many tokens it ended.
    pub fn invalidate(&self, at: UnixMs) -> usize {
        let spec = &self.inner.spec;
        let mut guard = self.settled(at);
        let state = &mut *guard;
        state.advance(spec, at);
        let mut ended = 0;
        for &i in &state.live {
            let token = &mut state.tokens[i];
            if token.verdict(at) == TokenVerdict::Accepted {
                token.kill(at, Revocation::EarlyExpiry);
                ended += 1;
            }
        }
        state.stats.early_expiries += 1;
        state.prune(at);
        ended
    }

    /// The requests refused for their token so far (at most [`REFUSALS_KEPT`] are kept), and how many
    /// more were not kept.
    pub fn refusals(&self) -> (Vec<Refusal>, u64) {
        let state = self.settled(UnixMs::MAX);
        (state.refusals.kept.clone(), state.refusals.dropped)
    }

    /// The state with every request that arrives at or before `at` judged: what the broker has seen by
    /// then.
    fn settled(&self, at: UnixMs) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.settle(&self.inner.spec, (at, u64::MAX));
        state
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves counters, not invariants, half-updated: keep going.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Samples the round trip of a call sent at `sent_at` from one of the spec's latencies.
    fn trip(&self, sent_at: UnixMs, latency: fn(&BrokerSpec) -> &Latency) -> Trip {
        let sample = latency(&self.inner.spec).sample(&mut self.lock().rng);
        Trip::new(sent_at, sample)
    }

    /// Decides a login when it arrives; returns the round trip (or hang) to wait in all and the answer.
    fn decide_login(&self, trip: Trip, attempt: LoginAttempt<'_>) -> (Duration, Result<Grant, BrokerError>) {
        let spec = &self.inner.spec;
        let mut guard = self.settled(trip.arrives_at());
        let state = &mut *guard;
        let (now, at) = (trip.sent_at, trip.arrives_at());
        state.stats.login_attempts += 1;
        state.advance(spec, at);
        let refused = state.refuse_login(spec, at, trip.latency, attempt);
        if let Some((latency, error)) = refused {
            state.stats.login_failures += 1;
            return (latency, Err(error));
        }
        if state.current.is_some_and(|i| state.tokens[i].verdict(at) == TokenVerdict::Accepted) {
            state.stats.logins_while_live += 1;
        }
        state.wrong_streak = 0;
        state.held_by_other = false;
        if spec.login_after_expiry == LoginAfterExpiry::Person && state.person_ok_until.is_none_or(|until| at >= until)
        {
            // A person logged in (or this is the run's first login): good until the next daily expiry.
            state.person_ok_until = Some(spec.next_daily_expiry_after(at));
        }
        if spec.login_revokes_previous {
            for &i in &state.live {
                state.tokens[i].kill(at, Revocation::Superseded);
            }
        }
        state.prune(at);
        let grant = state.issue_pair(spec, &self.inner.label, now, at, true);
        state.stats.logins += 1;
        (trip.latency, Ok(grant))
    }

    /// Decides a refresh when it arrives.
    fn decide_refresh(&self, trip: Trip, grant: &Grant) -> (Duration, Result<Grant, BrokerError>) {
        let spec = &self.inner.spec;
        let mut guard = self.settled(trip.arrives_at());
        let state = &mut *guard;
        state.advance(spec, trip.arrives_at());
        let answer = state.refresh(spec, &self.inner.label, trip, grant);
        match &answer {
            Ok(_) => state.stats.refreshes += 1,
            Err(_) => state.stats.refresh_failures += 1,
        }
        answer.map_or_else(|(latency, e)| (latency, Err(e)), |g| (trip.latency, Ok(g)))
    }

    /// Decides a keep-alive when it arrives.
    fn decide_keepalive(&self, trip: Trip, grant: &Grant) -> (Duration, Result<KeepaliveStatus, BrokerError>) {
        let spec = &self.inner.spec;
        let mut guard = self.settled(trip.arrives_at());
        let state = &mut *guard;
        state.stats.keepalives += 1;
        state.advance(spec, trip.arrives_at());
        let answer = state.keepalive(spec, trip, grant);
        if !matches!(answer, (_, Ok(KeepaliveStatus::Alive))) {
            state.stats.keepalive_failures += 1;
        }
        answer
    }

    /// Decides a logout when it arrives.
    fn decide_logout(&self, trip: Trip, grant: &Grant) {
        let spec = &self.inner.spec;
        let mut guard = self.settled(trip.arrives_at());
        let state = &mut *guard;
        let at = trip.arrives_at();
        state.stats.logouts += 1;
        state.advance(spec, at);
        let texts = [Some(grant.access_token.expose()), grant.refresh_token.as_ref().map(|t| t.expose())];
        for (refresh, text) in [false, true].into_iter().zip(texts) {
            if let Some(index) = text.and_then(|t| state.find(t, refresh)) {
                state.tokens[index].kill(at, Revocation::LoggedOut);
                if state.current == Some(index) {
                    state.current = None;
                }
            }
        }
    }
}

impl State {
    /// Judges a workload request as of its arrival (every call that arrived before it judged already).
    fn judge_request(&mut self, spec: &BrokerSpec, trip: Trip, token: &str, req: &ModelRequest) -> ModelResponse {
        let state = self;
        state.stats.requests_seen += 1;
        let mut latency = trip.latency;
        let at = trip.arrives_at();
        state.advance(spec, at);
        if let Some(outage) = window_at(&spec.outages, at, |o| o.window).filter(|o| o.affects.requests) {
            state.stats.outage_errors += 1;
            let error = match outage.mode {
                OutageMode::Error => wire::unavailable(),
                OutageMode::Hang(hang) => {
                    latency = hang;
                    wire::hung()
                }
            };
            return ModelResponse { latency, result: Err(error) };
        }
        if let Err(wait) = state.request_limiter.admit(at) {
            state.stats.rate_limited += 1;
            return ModelResponse { latency, result: Err(wire::rate_limited(wait)) };
        }
        let endpoint = spec.endpoint_of(req.kind);
        let own_limit = endpoint.filter(|&e| spec.endpoints[e].limit.is_some());
        let endpoint_limiter = match own_limit {
            Some(e) => Some(&mut state.endpoint_limiters[e]),
            None if !req.idempotent => Some(&mut state.order_limiter),
            None => None,
        };
        if let Some(Err(wait)) = endpoint_limiter.map(|l| l.admit(at)) {
            state.stats.rate_limited += 1;
            return ModelResponse { latency, result: Err(wire::rate_limited(wait)) };
        }
        let verdict = match state.find(token, false) {
            Some(index) => {
                let record = &state.tokens[index];
                match (record.verdict(at), endpoint) {
                    (TokenVerdict::Accepted, Some(e)) => {
                        let expiries = &spec.endpoints[e].early_expiries;
                        let next = expiries.get(expiries.partition_point(|t| *t <= record.born_at));
                        if next.is_some_and(|t| *t <= at && *t < record.dies_at) {
                            TokenVerdict::Revoked(Revocation::EndpointExpiry)
                        } else {
                            TokenVerdict::Accepted
                        }
                    }
                    (verdict, _) => verdict,
                }
            }
            None => TokenVerdict::Unknown,
        };
        let form = endpoint.and_then(|e| spec.endpoints[e].rejection_form).unwrap_or(spec.rejection_form);
        match verdict {
            TokenVerdict::Accepted => {}
            rejected => {
                state.stats.rejections += 1;
                state.refusals.record(Refusal { sent_at: trip.sent_at, arrived_at: at, kind: req.kind, verdict });
                let error = match rejected {
                    TokenVerdict::Expired => {
                        state.stats.dead_token_uses += 1;
                        wire::token_expired(spec.kind, form)
                    }
                    TokenVerdict::Revoked(Revocation::CompetingLogin) => wire::competing(spec.kind),
                    TokenVerdict::Unknown => {
                        state.stats.unknown_tokens += 1;
                        wire::token_expired(spec.kind, form)
                    }
                    _ => wire::token_rejected(spec.kind, form, state.rng.next_u64()),
                };
                return ModelResponse { latency, result: Err(error) };
            }
        }
        if spec.errors.request > 0.0 && state.rng.next_unit() < spec.errors.request {
            state.stats.transient_errors += 1;
            return ModelResponse { latency, result: Err(wire::unavailable()) };
        }
        state.last_activity = state.last_activity.max(at);
        if !req.idempotent {
            state.stats.orders_executed += 1;
            if !state.executed.insert(req.op_id) {
                state.stats.duplicate_orders += 1;
            }
            if spec.errors.response_lost > 0.0 && state.rng.next_unit() < spec.errors.response_lost {
                state.stats.outcome_unknown += 1;
                return ModelResponse { latency, result: Err(wire::response_lost()) };
            }
        }
        state.stats.requests_ok += 1;
        ModelResponse { latency, result: Ok(()) }
    }

    /// Judges the requests on their way that arrive at or before `through` (arrival instant, then send
    /// order), keeping each verdict for its caller.
    fn settle(&mut self, spec: &BrokerSpec, through: (UnixMs, u64)) {
        while self.arrivals.peek().is_some_and(|Reverse(next)| next.key() <= through) {
            let Some(Reverse(arrival)) = self.arrivals.pop() else { break };
            let response = self.judge_request(spec, arrival.trip, &arrival.token, &arrival.req);
            if !self.abandoned.remove(&arrival.seq) {
                self.verdicts.insert(arrival.seq, response.result);
            }
        }
    }

    /// The index of the token with this text, if this model issued it (as a refresh token or not).
    fn find(&self, text: &str, refresh: bool) -> Option<usize> {
        let (_, tail) = text.rsplit_once('-')?;
        let digits = tail.strip_prefix(if refresh { 'r' } else { 'a' })?;
        let index: usize = digits.parse().ok()?;
        self.tokens.get(index).filter(|t| t.text == text && t.refresh == refresh).map(|_| index)
    }

    /// Applies the scheduled events up to `at` and a pending idle timeout.
    fn advance(&mut self, spec: &BrokerSpec, at: UnixMs) {
        while let Some(event) = spec.events.get(self.next_event)
            && event.at <= at
        {
            match event.kind {
                EventKind::EarlyExpiry => self.stats.early_expiries += 1,
                EventKind::SilentDeauth => self.stats.silent_deauths += 1,
                EventKind::CompetingLogin => {
                    self.stats.competing_logins += 1;
                    self.held_by_other = true;
                }
            }
            self.next_event += 1;
        }
        if let Some(death) = self.pending_idle_death(spec)
            && at > death
        {
            for &i in &self.live {
                if self.tokens[i].born_at < death {
                    self.tokens[i].kill(death, Revocation::IdleTimeout);
                }
            }
            self.stats.idle_timeouts += 1;
        }
    }

    /// When the current session idles out, if it is alive until then and nothing has happened since.
    fn pending_idle_death(&self, spec: &BrokerSpec) -> Option<UnixMs> {
        let idle = spec.idle_timeout?;
        let current = &self.tokens[self.current?];
        let death = self.last_activity.saturating_add(idle);
        (current.dies_at > death && current.expires_at > death).then_some(death)
    }

    /// Why a login arriving at `now` fails, with the latency of the failure; `None` if it succeeds.
    fn refuse_login(
        &mut self,
        spec: &BrokerSpec,
        now: UnixMs,
        latency: Duration,
        attempt: LoginAttempt<'_>,
    ) -> Option<(Duration, BrokerError)> {
        let LoginAttempt { take_over, second_factor, wrong_credentials, code_required } = attempt;
        if let Some(outage) = window_at(&spec.outages, now, |o| o.window).filter(|o| o.affects.login) {
            self.stats.outage_errors += 1;
            return Some(match outage.mode {
                OutageMode::Error => (latency, wire::unavailable()),
                OutageMode::Hang(hang) => (hang, wire::hung()),
            });
        }
        if let Err(wait) = self.login_limiter.admit(now) {
            self.stats.rate_limited += 1;
            return Some((latency, wire::rate_limited(wait)));
        }
        if now < self.locked_until {
            return Some((latency, wire::account_locked()));
        }
        if wrong_credentials || window_at(&spec.wrong_credentials, now, |w| *w).is_some() {
            self.wrong_streak += 1;
            if let Some(lockout) = spec.lockout
                && self.wrong_streak >= lockout.after
            {
                self.locked_until = now.saturating_add(lockout.duration);
                self.wrong_streak = 0;
                self.stats.lockouts += 1;
            }
            return Some((latency, wire::invalid_credentials(spec.kind)));
        }
        if second_factor.is_none() && window_at(&spec.second_factor, now, |w| *w).is_some() {
            return Some((latency, wire::second_factor()));
        }
        let after_daily_expiry = spec.login_after_expiry == LoginAfterExpiry::Person
            && self.person_ok_until.is_some_and(|until| now >= until);
        if code_required || after_daily_expiry {
            // The daily expiry passed (or the wire protocol needs a code for every login): only a
            // person's fresh, unused code logs in.
            let Some(code) = second_factor else { return Some((latency, wire::login_needs_person())) };
            let fresh =
                |c: &LoginCode| c.text == code && !c.used && now < c.issued_at.saturating_add(spec.login_code_lifetime);
            match self.codes.iter_mut().find(|c| fresh(c)) {
                Some(c) => c.used = true,
                None => return Some((latency, wire::login_code_invalid())),
            }
        }
        if self.held_by_other && !take_over {
            return Some((latency, wire::login_competing()));
        }
        if spec.errors.login > 0.0 && self.rng.next_unit() < spec.errors.login {
            self.stats.transient_errors += 1;
            return Some((latency, wire::unavailable()));
        }
        None
    }

    /// A refresh-token grant: checks the refresh token, rotates the pair.
    fn refresh(
        &mut self,
        spec: &BrokerSpec,
        label: &str,
        trip: Trip,
        grant: &Grant,
    ) -> Result<Grant, (Duration, BrokerError)> {
        let (now, latency) = (trip.arrives_at(), trip.latency);
        if spec.refresh_lifetime.is_none() {
            return Err((Duration::ZERO, BrokerError::not_sent("this broker has no refresh grant")));
        }
        if let Some(outage) = window_at(&spec.outages, now, |o| o.window).filter(|o| o.affects.refresh) {
            self.stats.outage_errors += 1;
            return Err(match outage.mode {
                OutageMode::Error => (latency, wire::unavailable()),
                OutageMode::Hang(hang) => (hang, wire::hung()),
            });
        }
        if spec.errors.refresh > 0.0 && self.rng.next_unit() < spec.errors.refresh {
            self.stats.transient_errors += 1;
            return Err((latency, wire::unavailable()));
        }
        let index = grant.refresh_token.as_ref().and_then(|t| self.find(t.expose(), true));
        let Some(index) = index.filter(|&i| self.tokens[i].verdict(now) == TokenVerdict::Accepted) else {
            self.stats.refresh_rejections += 1;
            return Err((latency, wire::invalid_grant()));
        };
        self.tokens[index].kill(now, Revocation::Rotated);
        self.prune(now);
        Ok(self.issue_pair(spec, label, trip.sent_at, now, false))
    }

    fn keepalive(
        &mut self,
        spec: &BrokerSpec,
        trip: Trip,
        grant: &Grant,
    ) -> (Duration, Result<KeepaliveStatus, BrokerError>) {
        let (now, latency) = (trip.arrives_at(), trip.latency);
        if !spec.keepalive {
            return (Duration::ZERO, Ok(KeepaliveStatus::Alive));
        }
        if let Some(outage) = window_at(&spec.outages, now, |o| o.window).filter(|o| o.affects.keepalive) {
            self.stats.outage_errors += 1;
            return match outage.mode {
                OutageMode::Error => (latency, Err(wire::unavailable())),
                OutageMode::Hang(hang) => (hang, Err(wire::hung())),
            };
        }
        if spec.errors.keepalive > 0.0 && self.rng.next_unit() < spec.errors.keepalive {
            self.stats.transient_errors += 1;
            return (latency, Err(wire::unavailable()));
        }
        let Some(index) = self.find(grant.access_token.expose(), false) else {
            return (latency, Err(wire::token_expired(spec.kind, spec.rejection_form)));
        };
        let status = match self.tokens[index].verdict(now) {
            TokenVerdict::Accepted => {
                self.last_activity = self.last_activity.max(now);
                KeepaliveStatus::Alive
            }
            TokenVerdict::Revoked(Revocation::CompetingLogin) => KeepaliveStatus::Competing,
            _ => KeepaliveStatus::Unauthenticated,
        };
        (latency, Ok(status))
    }

    /// Forgets tokens that can no longer be accepted.
    fn prune(&mut self, now: UnixMs) {
        let tokens = &self.tokens;
        self.live.retain(|&i| tokens[i].dies_at > now && tokens[i].expires_at > now);
    }

    /// Issues an access token (and a refresh token, if the model has them) born at `born`, declared from
    /// `now`, and makes it the current session.
    fn issue_pair(&mut self, spec: &BrokerSpec, label: &str, now: UnixMs, born: UnixMs, login: bool) -> Grant {
        let expires_at = match spec.token_expiry {
            TokenExpiry::After(lifetime) => now.saturating_add(lifetime),
            TokenExpiry::DailyAt(at) => warden_engine::calendar::next_local_time_after(born, at, &spec.tz),
        };
        let access = self.issue(spec, label, false, born, expires_at);
        let mut grant = Grant::new(self.tokens[access].text.clone(), now);
        grant.expires_at = Some(expires_at);
        if let Some(lifetime) = spec.refresh_lifetime {
            let refresh = self.issue(spec, label, true, born, now.saturating_add(lifetime));
            grant = grant.with_refresh(self.tokens[refresh].text.clone(), Some(lifetime));
        }
        if login {
            match spec.kind {
                ModelKind::KotakNeo => grant = grant.with_extra("sid", format!("{label}-sid{access}")),
                ModelKind::Ibkr => grant = grant.with_extra("ws_cookie", format!("{label}-ws{access}")),
                _ => {}
            }
        }
        self.current = Some(access);
        self.last_activity = self.last_activity.max(born);
        grant
    }

    fn issue(&mut self, spec: &BrokerSpec, label: &str, refresh: bool, born: UnixMs, expires_at: UnixMs) -> usize {
        let index = self.tokens.len();
        let text = format!("{label}-{}{index}", if refresh { 'r' } else { 'a' });
        let first_event = spec.events.get(spec.events.partition_point(|e| e.at <= born));
        let mut dies_at = spec.next_reset_after(born);
        let mut death = (dies_at != UnixMs::MAX).then_some(Revocation::Reset);
        if let Some(event) = first_event
            && event.at < dies_at
        {
            dies_at = event.at;
            death = Some(Revocation::of(event.kind));
        }
        self.tokens.push(TokenRecord { text, refresh, born_at: born, expires_at, dies_at, death });
        self.live.push(index);
        index
    }
}

impl Broker for BrokerModel {
    fn name(&self) -> &str {
        self.inner.spec.kind.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.spec.capabilities()
    }

    fn endpoint_limits(&self) -> &[warden_engine::limits::EndpointLimit] {
        &self.inner.limits
    }

    fn login<'a>(&'a self, now: UnixMs, request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let take_over = request.take_over;
        let second_factor = request.second_factor.map(|s| s.expose().to_owned());
        Box::pin(async move {
            let trip = self.trip(now, |s| &s.login_latency);
            tokio::time::sleep(trip.uplink()).await;
            let attempt =
                LoginAttempt { take_over, second_factor: second_factor.as_deref(), ..LoginAttempt::default() };
            let (wait, answer) = self.decide_login(trip, attempt);
            tokio::time::sleep(wait.saturating_sub(trip.uplink())).await;
            answer
        })
    }

    fn refresh<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        Box::pin(async move {
            if self.inner.spec.refresh_lifetime.is_none() {
                return Err(BrokerError::not_sent("this broker has no refresh grant"));
            }
            let trip = self.trip(now, |s| &s.refresh_latency);
            tokio::time::sleep(trip.uplink()).await;
            let (wait, answer) = self.decide_refresh(trip, grant);
            tokio::time::sleep(wait.saturating_sub(trip.uplink())).await;
            answer
        })
    }

    fn keepalive<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<KeepaliveStatus, BrokerError>> {
        Box::pin(async move {
            if !self.inner.spec.keepalive {
                return Ok(KeepaliveStatus::Alive);
            }
            let trip = self.trip(now, |s| &s.keepalive_latency);
            tokio::time::sleep(trip.uplink()).await;
            let (wait, answer) = self.decide_keepalive(trip, grant);
            tokio::time::sleep(wait.saturating_sub(trip.uplink())).await;
            answer
        })
    }

    fn logout<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let trip = self.trip(now, |s| &s.keepalive_latency);
            tokio::time::sleep(trip.uplink()).await;
            self.decide_logout(trip, grant);
            tokio::time::sleep(trip.downlink()).await;
            Ok(())
        })
    }

    fn classify(&self, error: &BrokerError) -> ErrorClass {
        wire::classify(error)
    }
}
