//! The transition table of the session state machine, and the fixtures that drive it.
//!
//! A row names a `from` state (or `[*]`, construction and restore), an input key, the state the session
//! is in after that one input, and the set of output kinds it produced. [`run`] builds a session in the
//! `from` state through real inputs (a login completed, a deadline ticked, a rejection reported…), applies
//! the input, and reports what happened; `transition_table.rs` checks every row of [`TABLE`], and
//! `state_machine_doc.rs` checks that `docs/state-machine.md` lists exactly these rows and that each of
//! its rows holds when driven.
//!
//! The fixtures share one policy (the `hybrid` preset with a 30 s refresh buffer, no jitter, at most two
//! waiters, refresh capability on) and one timeline: the session starts at [`T0`], its first login
//! completes one second later with a 20-minute token that carries a refresh token, so the refresh is due
//! at `T0 + 1170 s` and the token stops being handed out at `T0 + 1195 s` (5 s expiry margin). A
//! condition in an input key switches on the setting the row needs: `(lazy)`, `(yield)`,
//! `@daily_cutoff` (03:00 Asia/Kolkata, 24-hour tokens), `@max_session_age` (10 min), `@idle_timeout`
//! (10 min), `Keepalive…` (keep-alive capability, 60 s interval), `@lazy_threshold` (60 s).

use std::time::Duration;

use warden_engine::{
    AfterCutoff, AttemptId, AuthFailure, Capabilities, DailyCutoff, ErrorClass, Generation, Input, InvalidReason,
    KeepaliveStatus, Mode, OnCompeting, Output, Policy, Preset, Secret, SessionConfig, StateKind, UnixMs, WaiterId,
};

use super::{Harness, at, plus};

/// Monday 2026-03-02, 10:00 in Kolkata.
pub const T0_TEXT: &str = "2026-03-02T04:30:00Z";

/// The start of every fixture's timeline.
pub fn t0() -> UnixMs {
    at(T0_TEXT)
}

/// One row of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// The state the session is in before the input (`[*]`: no session yet).
    pub from: &'static str,
    /// The input key (see [`run`]).
    pub input: &'static str,
    /// The state after the input.
    pub to: &'static str,
    /// The kinds of output the input produced ([`super::output_name`]), in any order.
    pub outputs: &'static [&'static str],
}

/// What one driven row produced.
#[derive(Debug)]
pub struct Outcome {
    /// The state after the input.
    pub to: StateKind,
    /// The outputs of the input.
    pub outputs: Vec<Output>,
    /// The harness after the input, for further checks.
    pub harness: Harness,
}

/// The settings a row needs, read from its `from` state and input key.
#[derive(Clone, Debug, Default)]
struct Variant {
    lazy: bool,
    yield_: bool,
    keepalive: bool,
    keepalive_pending: bool,
    keepalive_older: bool,
    keepalive_threshold_one: bool,
    daily: bool,
    long_tokens: bool,
    after_cutoff: bool,
    warmup: bool,
    idle: bool,
    session_age: bool,
    no_refresh_buffer: bool,
    lazy_threshold: bool,
    budget_one: bool,
    needs_human: bool,
    late: bool,
    backing_off: bool,
    long_backoff: bool,
    waiter: bool,
    table_full: bool,
    login_only: bool,
    proactive_logins: bool,
    operator: bool,
}

fn variant(from: &str, input: &str) -> Variant {
    let has = |s: &str| input.contains(s);
    let mut v = Variant {
        lazy: has("lazy)") || (from == "Expired" && !has("warm")),
        yield_: has("(yield)"),
        keepalive: has("Keepalive") || has("@keepalive"),
        daily: has("daily_cutoff") || has("warm") || has("operator"),
        long_tokens: has("Tick@daily_cutoff") || has("warm") || has("operator"),
        after_cutoff: has("after daily_cutoff") || has("before daily_cutoff"),
        keepalive_older: has("older grant"),
        warmup: has("warm"),
        idle: has("idle_timeout"),
        session_age: has("max_session_age") || has("(login)"),
        lazy_threshold: has("lazy_threshold"),
        budget_one: has("budget spent"),
        keepalive_threshold_one: has("last allowed"),
        needs_human: from == "Invalid" && has("SecondFactor") && !has("other reason"),
        late: has("late"),
        backing_off: has("Tick@retry") || has("backing off"),
        long_backoff: has("backing off"),
        waiter: from == "Initializing" && has("request_timeout"),
        table_full: has("table full"),
        login_only: has("login only"),
        proactive_logins: has("proactive_logins"),
        operator: has("operator"),
        ..Variant::default()
    };
    v.keepalive_pending = v.keepalive && from != "[*]" && input.starts_with("KeepaliveCompleted") && !has("stale");
    v.no_refresh_buffer = from == "Valid" && has("Tick@expiry");
    v
}

/// The token lifetime the fixtures' broker gives.
fn lifetime(v: &Variant) -> Duration {
    if v.long_tokens { Duration::from_secs(24 * 3600) } else { Duration::from_secs(1200) }
}

fn policy(v: &Variant) -> Policy {
    let mut p = Policy::preset(Preset::Hybrid);
    p.refresh_buffer = (!v.no_refresh_buffer).then_some(Duration::from_secs(30));
    p.lazy_threshold = v.lazy_threshold.then_some(Duration::from_secs(60));
    p.jitter = 0.0;
    p.backoff.jitter = 0.0;
    p.keepalive_interval = Some(Duration::from_secs(60));
    p.keepalive_failures_before_expired = if v.keepalive_threshold_one { 1 } else { 2 };
    p.daily_cutoff = v.daily.then(|| {
        let mut cutoff = DailyCutoff::new("03:00".parse().expect("time"), "Asia/Kolkata").expect("zone");
        cutoff.warmup = v.warmup.then(|| "08:45".parse().expect("time"));
        cutoff
    });
    p.max_session_age = v.session_age.then_some(Duration::from_secs(600));
    p.idle_timeout = v.idle.then_some(Duration::from_secs(600));
    p.max_consecutive_failures = if v.budget_one { 1 } else { 3 };
    p.max_waiters = 2;
    p.proactive_logins = v.proactive_logins;
    p.after_cutoff = if v.operator { AfterCutoff::Operator } else { AfterCutoff::Login };
    p.mode = if v.lazy { Mode::Lazy } else { Mode::Eager };
    p.on_competing = if v.yield_ { OnCompeting::Yield } else { OnCompeting::TakeOver };
    p.validate().expect("fixture policy is valid");
    p
}

fn config(v: &Variant) -> SessionConfig {
    SessionConfig::new(super::sid(), policy(v))
        .with_capabilities(Capabilities { refresh: !v.login_only, keepalive: v.keepalive })
}

fn fail(class: ErrorClass) -> AuthFailure {
    AuthFailure::new(class, "scripted failure")
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn expect_state(h: &Harness, want: StateKind, step: &str) -> Result<(), String> {
    check(h.session.state() == want, || {
        format!("fixture: after {step} the session is {}, not {want}", h.session.state())
    })
}

/// A session that completed its first login at `T0 + 1 s` (lazy: after a request at `T0`).
fn valid(v: &Variant) -> Result<Harness, String> {
    let mut h = Harness::new(config(v), t0());
    if v.lazy {
        h.request(None);
    }
    h.now = plus(t0(), 1);
    let grant = h.grant(Some(lifetime(v)), true);
    h.complete_auth(Ok(grant));
    expect_state(&h, StateKind::Valid, "the first login")?;
    Ok(h)
}

/// Puts a session into `state` through real inputs.
fn reach(state: StateKind, v: &Variant) -> Result<Harness, String> {
    let mut h = match state {
        StateKind::Initializing => {
            check(!v.lazy, || "Initializing needs an eager policy".into())?;
            let mut h = Harness::new(config(v), t0());
            if v.waiter {
                h.request(None);
            }
            h
        }
        StateKind::Valid => {
            let mut h = valid(v)?;
            if v.keepalive_pending {
                h.tick(plus(t0(), 61));
                check(h.keepalive.is_some(), || "fixture: no keep-alive at T0 + 61 s".into())?;
            }
            if v.keepalive_older {
                // The broker rejects g1 while its ping is out; a refresh installs g2.
                h.input(Input::Rejected { generation: Generation(1), class: ErrorClass::AuthExpired });
                h.now = plus(t0(), 62);
                let grant = h.grant(Some(lifetime(v)), true);
                h.complete_auth(Ok(grant));
                check(h.session.generation() == Generation(2), || "fixture: no second grant".into())?;
            }
            h
        }
        StateKind::ExpiringSoon => {
            let mut h = valid(v)?;
            h.tick(if v.session_age { plus(t0(), 601) } else { plus(t0(), 1170) });
            if v.backing_off {
                h.now = plus(h.now, 1);
                // A broker's retry-after can outlast the token; plain backoff (5 s) does not.
                let class = if v.long_backoff {
                    ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(60)) }
                } else {
                    ErrorClass::Transient
                };
                h.complete_auth(Err(fail(class)));
                check(h.auth.is_none(), || "fixture: a call is still outstanding".into())?;
            }
            h
        }
        StateKind::Expired => {
            let mut h = valid(v)?;
            if v.warmup {
                h.tick(at("2026-03-02T21:30:00Z"));
            } else {
                h.now = plus(t0(), 2);
                let generation = h.session.generation();
                h.input(Input::Rejected { generation, class: ErrorClass::AuthExpired });
            }
            h
        }
        StateKind::Reinitializing => {
            let mut h = Harness::new(config(v), t0());
            h.now = plus(t0(), 1);
            h.complete_auth(Err(fail(ErrorClass::Transient)));
            if !v.backing_off {
                h.now = plus(t0(), 2);
                h.request(None);
                if v.table_full {
                    h.request(None);
                }
                h.tick(plus(t0(), 6));
                check(h.auth.is_some(), || "fixture: no login after the backoff".into())?;
            }
            h
        }
        StateKind::Invalid if v.operator => {
            // The broker's daily expiry passes; its next login needs a person.
            let mut h = valid(v)?;
            h.tick(at("2026-03-02T21:30:00Z"));
            h
        }
        StateKind::Invalid => {
            let mut h = Harness::new(config(v), t0());
            h.now = plus(t0(), 1);
            if v.late {
                h.input(Input::GiveUp(give_up_reason()));
            } else {
                let class = if v.needs_human { ErrorClass::NeedsHuman } else { ErrorClass::Permanent };
                h.complete_auth(Err(fail(class)));
            }
            h
        }
        StateKind::Stopped => {
            if v.late {
                let mut h = Harness::new(config(v), t0());
                h.now = plus(t0(), 1);
                h.input(Input::Logout);
                h
            } else {
                let mut h = valid(v)?;
                h.now = plus(t0(), 2);
                h.input(Input::Logout);
                h
            }
        }
    };
    expect_state(&h, state, "the fixture's inputs")?;
    h.last.clear();
    Ok(h)
}

fn give_up_reason() -> InvalidReason {
    InvalidReason::RestartLimit { restarts: 5, within_ms: 60_000 }
}

/// One second after the first daily cut-off of the fixtures' timeline (03:00 in Kolkata).
fn after_cutoff() -> UnixMs {
    at("2026-03-02T21:30:01Z")
}

/// The instant at which a `Tick@…` key's deadline falls in the fixtures' timeline.
fn deadline(from: StateKind, key: &str) -> Result<UnixMs, String> {
    let name = key.trim_start_matches("Tick@").split(' ').next().unwrap_or_default();
    Ok(match (from, name) {
        (StateKind::Valid, "refresh_at") => plus(t0(), 1170),
        (StateKind::Valid, "lazy_threshold") => plus(t0(), 1140),
        (StateKind::Valid, "max_session_age") => plus(t0(), 601),
        (StateKind::Valid | StateKind::ExpiringSoon, "expiry") => plus(t0(), 1195),
        (StateKind::Valid, "daily_cutoff") => at("2026-03-02T21:30:00Z"),
        (StateKind::Valid, "idle_timeout") => plus(t0(), 600),
        (StateKind::Valid, "keepalive") => plus(t0(), 61),
        (StateKind::Initializing, "request_timeout") => plus(t0(), 30),
        (StateKind::Reinitializing, "request_timeout") => plus(t0(), 32),
        (StateKind::Reinitializing, "retry") => plus(t0(), 6),
        (StateKind::ExpiringSoon, "retry") => plus(t0(), 1176),
        (StateKind::Expired, "warmup") => at("2026-03-03T03:15:00Z"),
        _ => return Err(format!("no deadline `{name}` in state {from}")),
    })
}

fn auth_class(arg: &str) -> Option<ErrorClass> {
    Some(match arg {
        "AuthExpired" => ErrorClass::AuthExpired,
        "RateLimited" => ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(60)) },
        "Transient" => ErrorClass::Transient,
        "Permanent" => ErrorClass::Permanent,
        "NeedsHuman" => ErrorClass::NeedsHuman,
        "Competing" => ErrorClass::Competing,
        _ => return None,
    })
}

/// The text between the first `(` and the matching `)` of a key, split at commas.
fn args(key: &str) -> Vec<&str> {
    let Some(open) = key.find('(') else { return Vec::new() };
    let close = key[open..].find(')').map_or(key.len(), |c| open + c);
    key[open + 1..close].split(',').map(str::trim).collect()
}

/// Applies the input named by `key` to a session in state `from`.
fn act(h: &mut Harness, from: StateKind, key: &str, v: &Variant) -> Result<Vec<Output>, String> {
    let name = key.split(['(', '@', ' ']).next().unwrap_or_default();
    let args = args(key);
    let unknown = || format!("unknown input key `{key}` for state {from}");
    Ok(match name {
        "Tick" if key == "Tick (nothing due)" => {
            let t = plus(h.now, 1);
            check(h.session.poll_timeout().is_none_or(|d| d > t), || "fixture: a deadline is due".into())?;
            h.tick(t)
        }
        "Tick" => {
            let want = deadline(from, key)?;
            let next = h.session.poll_timeout();
            check(next == Some(want), || format!("`{key}`: the next deadline is {next:?}, expected {want}"))?;
            h.tick(want)
        }
        "Request" => {
            if v.lazy_threshold {
                h.now = plus(t0(), 1150);
            }
            let current = h.session.generation();
            let newer_than = match args.first().copied() {
                None | Some("table full" | "operator") => None,
                Some("newer_than=current") => Some(current),
                Some("newer_than=older") => Some(Generation(current.0 - 1)),
                _ => return Err(unknown()),
            };
            h.request(newer_than).1
        }
        "Cancel" => h.input(Input::Cancel { waiter: WaiterId(1) }),
        "Rejected" => {
            let current = h.session.generation();
            let generation = match args.first().copied() {
                Some("current") => current,
                Some("stale") => Generation(current.0.saturating_sub(1)),
                _ => return Err(unknown()),
            };
            let class = args.get(1).map_or(Some(ErrorClass::AuthExpired), |c| auth_class(c)).ok_or_else(unknown)?;
            h.input(Input::Rejected { generation, class })
        }
        "AuthCompleted" => match args.first().copied() {
            Some("stale") => {
                let grant = h.grant(Some(lifetime(v)), true);
                h.input(Input::AuthCompleted { attempt: AttemptId(999), result: Ok(grant) })
            }
            Some("ok" | "late") => {
                let mut lifetime = lifetime(v);
                if v.after_cutoff {
                    // The answer comes after the cut-off, with a token that would otherwise still live.
                    h.now = after_cutoff();
                    lifetime = Duration::from_secs(48 * 3600);
                }
                let grant = h.grant(Some(lifetime), true);
                h.complete_auth(Ok(grant))
            }
            Some(class) => {
                let class = auth_class(class).ok_or_else(unknown)?;
                h.complete_auth(Err(fail(class)))
            }
            None => return Err(unknown()),
        },
        "KeepaliveCompleted" => match args.first().copied() {
            Some("stale") => {
                h.input(Input::KeepaliveCompleted { attempt: AttemptId(998), result: Ok(KeepaliveStatus::Alive) })
            }
            Some("alive") => h.complete_keepalive(Ok(KeepaliveStatus::Alive)),
            Some("unauthenticated") => h.complete_keepalive(Ok(KeepaliveStatus::Unauthenticated)),
            Some("competing") => h.complete_keepalive(Ok(KeepaliveStatus::Competing)),
            Some(class) => {
                let class = auth_class(class).ok_or_else(unknown)?;
                h.complete_keepalive(Err(fail(class)))
            }
            None => return Err(unknown()),
        },
        "Activity" => h.input(Input::Activity),
        "Reset" => h.input(Input::Reset),
        "CredentialsUpdated" => h.input(Input::CredentialsUpdated),
        "SecondFactor" => h.input(Input::SecondFactor(Secret::new("123456"))),
        "Logout" => h.input(Input::Logout),
        "GiveUp" => h.input(Input::GiveUp(give_up_reason())),
        _ => return Err(unknown()),
    })
}

/// Builds a session from nothing: `new (eager)`, `new (lazy)`, or a restore of a snapshot.
fn construct(key: &str) -> Result<Harness, String> {
    let v = variant("[*]", key);
    Ok(match key {
        "new (eager)" | "new (lazy)" => Harness::new(config(&v), t0()),
        "restore (usable grant)" => {
            let snapshot = valid(&v)?.session.snapshot();
            Harness::restore(config(&v), snapshot, plus(t0(), 10))
        }
        "restore (expired grant, lazy)" | "restore (expired grant, eager)" => {
            let snapshot = valid(&v)?.session.snapshot();
            Harness::restore(config(&v), snapshot, plus(t0(), 2000))
        }
        "restore (Invalid)" => {
            let snapshot = reach(StateKind::Invalid, &v)?.session.snapshot();
            Harness::restore(config(&v), snapshot, plus(t0(), 10))
        }
        "restore (Invalid after a crash loop, usable grant)" => {
            let mut h = valid(&v)?;
            h.input(Input::GiveUp(give_up_reason()));
            expect_state(&h, StateKind::Invalid, "the supervisor's give-up")?;
            Harness::restore(config(&v), h.session.snapshot(), plus(t0(), 10))
        }
        _ => return Err(format!("unknown construction `{key}`")),
    })
}

/// Parses a state name as the table writes it.
pub fn state(name: &str) -> Result<StateKind, String> {
    StateKind::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| format!("unknown state `{name}`"))
}

/// Drives one row: a session in `from` (or none, for `[*]`), then the input `key`.
pub fn run(from: &str, key: &str) -> Result<Outcome, String> {
    if from == "[*]" {
        let harness = construct(key)?;
        return Ok(Outcome { to: harness.session.state(), outputs: harness.last.clone(), harness });
    }
    let from_state = state(from)?;
    let v = variant(from, key);
    let mut harness = reach(from_state, &v)?;
    let outputs = act(&mut harness, from_state, key, &v)?;
    Ok(Outcome { to: harness.session.state(), outputs, harness })
}

/// Every legal (state, input) pair, with the state it leads to and the outputs it produces.
pub const TABLE: &[Row] = &[
    Row { from: "[*]", input: "new (eager)", to: "Initializing", outputs: &["Login", "Persist"] },
    Row { from: "[*]", input: "new (lazy)", to: "Expired", outputs: &["Persist"] },
    Row {
        from: "[*]",
        input: "restore (usable grant)",
        to: "Valid",
        outputs: &["Publish(lease)", "StateChanged", "Persist"],
    },
    Row {
        from: "[*]",
        input: "restore (expired grant, lazy)",
        to: "Expired",
        outputs: &["StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "[*]",
        input: "restore (expired grant, eager)",
        to: "Reinitializing",
        outputs: &["Refresh", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "[*]", input: "restore (Invalid)", to: "Invalid", outputs: &["StateChanged", "Persist"] },
    Row {
        from: "[*]",
        input: "restore (Invalid after a crash loop, usable grant)",
        to: "Valid",
        outputs: &["Publish(lease)", "StateChanged", "Persist"],
    },
    Row { from: "Initializing", input: "Tick (nothing due)", to: "Initializing", outputs: &[] },
    Row { from: "Initializing", input: "Tick@request_timeout", to: "Initializing", outputs: &["Fail(Timeout)"] },
    Row { from: "Initializing", input: "Request", to: "Initializing", outputs: &[] },
    Row { from: "Initializing", input: "Cancel", to: "Initializing", outputs: &[] },
    Row { from: "Initializing", input: "Rejected(stale)", to: "Initializing", outputs: &[] },
    Row {
        from: "Initializing",
        input: "AuthCompleted(ok)",
        to: "Valid",
        outputs: &["Publish(lease)", "GrantInstalled", "StateChanged", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(ok) (issued before daily_cutoff)",
        to: "Initializing",
        outputs: &["LoginDiscarded", "Logout", "Login", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(AuthExpired)",
        to: "Reinitializing",
        outputs: &["StateChanged", "AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(AuthExpired) (budget spent)",
        to: "Invalid",
        outputs: &["StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(RateLimited)",
        to: "Reinitializing",
        outputs: &["StateChanged", "AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(Transient)",
        to: "Reinitializing",
        outputs: &["StateChanged", "AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(Permanent)",
        to: "Invalid",
        outputs: &["StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(NeedsHuman)",
        to: "Invalid",
        outputs: &["StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(Competing)",
        to: "Reinitializing",
        outputs: &["Login", "StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Initializing",
        input: "AuthCompleted(Competing) (yield)",
        to: "Invalid",
        outputs: &["StateChanged", "AuthFailed", "Persist"],
    },
    Row { from: "Initializing", input: "AuthCompleted(stale)", to: "Initializing", outputs: &["Logout"] },
    Row { from: "Initializing", input: "KeepaliveCompleted(stale)", to: "Initializing", outputs: &[] },
    Row { from: "Initializing", input: "Activity", to: "Initializing", outputs: &[] },
    Row { from: "Initializing", input: "Reset", to: "Reinitializing", outputs: &["StateChanged", "Persist"] },
    Row { from: "Initializing", input: "CredentialsUpdated", to: "Initializing", outputs: &["Persist"] },
    Row { from: "Initializing", input: "SecondFactor", to: "Initializing", outputs: &[] },
    Row { from: "Initializing", input: "Logout", to: "Stopped", outputs: &["StateChanged", "Persist"] },
    Row { from: "Initializing", input: "GiveUp", to: "Invalid", outputs: &["StateChanged", "Persist"] },
    Row { from: "Valid", input: "Tick (nothing due)", to: "Valid", outputs: &[] },
    Row { from: "Valid", input: "Tick@keepalive", to: "Valid", outputs: &["Keepalive"] },
    Row { from: "Valid", input: "Tick@lazy_threshold", to: "Valid", outputs: &["Publish(none)"] },
    Row {
        from: "Valid",
        input: "Tick@refresh_at",
        to: "ExpiringSoon",
        outputs: &["Refresh", "StateChanged", "Persist"],
    },
    Row { from: "Valid", input: "Tick@refresh_at (login only)", to: "Valid", outputs: &[] },
    Row {
        from: "Valid",
        input: "Tick@refresh_at (login only, proactive_logins)",
        to: "ExpiringSoon",
        outputs: &["Login", "StateChanged", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@max_session_age",
        to: "ExpiringSoon",
        outputs: &["Login", "StateChanged", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@expiry",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@expiry (lazy)",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@daily_cutoff",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@daily_cutoff (lazy)",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@daily_cutoff (warm-up)",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@daily_cutoff (operator)",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Tick@idle_timeout",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "Valid", input: "Request", to: "Valid", outputs: &["Serve"] },
    Row {
        from: "Valid",
        input: "Request@lazy_threshold",
        to: "ExpiringSoon",
        outputs: &["Refresh", "Serve", "Publish(lease)", "StateChanged", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Request(newer_than=current)",
        to: "Reinitializing",
        outputs: &["Refresh", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "Valid", input: "Request(newer_than=older)", to: "Valid", outputs: &["Serve"] },
    Row { from: "Valid", input: "Cancel", to: "Valid", outputs: &[] },
    Row {
        from: "Valid",
        input: "Rejected(current, AuthExpired)",
        to: "Reinitializing",
        outputs: &["Refresh", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Rejected(current, AuthExpired) (lazy)",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Rejected(current, Competing)",
        to: "Reinitializing",
        outputs: &["Login", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "Rejected(current, Competing) (yield)",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "Valid", input: "Rejected(current, Transient)", to: "Valid", outputs: &[] },
    Row { from: "Valid", input: "Rejected(stale)", to: "Valid", outputs: &[] },
    Row { from: "Valid", input: "AuthCompleted(stale)", to: "Valid", outputs: &["Logout"] },
    Row { from: "Valid", input: "KeepaliveCompleted(alive)", to: "Valid", outputs: &[] },
    Row {
        from: "Valid",
        input: "KeepaliveCompleted(unauthenticated)",
        to: "Reinitializing",
        outputs: &["Refresh", "Publish(none)", "StateChanged", "Revoked", "KeepaliveFailed", "Persist"],
    },
    Row { from: "Valid", input: "KeepaliveCompleted(unauthenticated) (older grant)", to: "Valid", outputs: &[] },
    Row { from: "Valid", input: "KeepaliveCompleted(Transient)", to: "Valid", outputs: &["KeepaliveFailed"] },
    Row {
        from: "Valid",
        input: "KeepaliveCompleted(Transient) (last allowed)",
        to: "Reinitializing",
        outputs: &["Refresh", "Publish(none)", "StateChanged", "Revoked", "KeepaliveFailed", "Persist"],
    },
    Row {
        from: "Valid",
        input: "KeepaliveCompleted(competing)",
        to: "Reinitializing",
        outputs: &["Login", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "KeepaliveCompleted(competing) (yield)",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "Valid", input: "Activity", to: "Valid", outputs: &[] },
    Row {
        from: "Valid",
        input: "Reset",
        to: "Reinitializing",
        outputs: &["Login", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "Valid", input: "CredentialsUpdated", to: "Valid", outputs: &["Persist"] },
    Row { from: "Valid", input: "SecondFactor", to: "Valid", outputs: &[] },
    Row {
        from: "Valid",
        input: "Logout",
        to: "Stopped",
        outputs: &["Logout", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "Valid",
        input: "GiveUp",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "ExpiringSoon", input: "Tick (nothing due)", to: "ExpiringSoon", outputs: &[] },
    Row { from: "ExpiringSoon", input: "Tick@retry", to: "ExpiringSoon", outputs: &["Refresh"] },
    Row {
        from: "ExpiringSoon",
        input: "Tick@expiry",
        to: "Reinitializing",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "Tick@expiry (backing off, lazy)",
        to: "Reinitializing",
        outputs: &["Deferred", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "ExpiringSoon", input: "Request", to: "ExpiringSoon", outputs: &["Serve"] },
    Row {
        from: "ExpiringSoon",
        input: "Request(newer_than=current)",
        to: "Reinitializing",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "ExpiringSoon", input: "Cancel", to: "ExpiringSoon", outputs: &[] },
    Row {
        from: "ExpiringSoon",
        input: "Rejected(current, AuthExpired)",
        to: "Reinitializing",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "Rejected(current, AuthExpired) (backing off, lazy)",
        to: "Expired",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "Rejected(current, Competing)",
        to: "Reinitializing",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "Rejected(current, Competing) (yield)",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "ExpiringSoon", input: "Rejected(stale)", to: "ExpiringSoon", outputs: &[] },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(ok)",
        to: "Valid",
        outputs: &["Publish(lease)", "GrantInstalled", "StateChanged", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(ok) (after daily_cutoff)",
        to: "Reinitializing",
        outputs: &["Login", "Publish(none)", "StateChanged", "Revoked", "AuthFailed", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(AuthExpired)",
        to: "ExpiringSoon",
        outputs: &["Login", "AuthFailed", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(RateLimited)",
        to: "ExpiringSoon",
        outputs: &["AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(Transient)",
        to: "ExpiringSoon",
        outputs: &["AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(Permanent)",
        to: "ExpiringSoon",
        outputs: &["Login", "AuthFailed", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(NeedsHuman)",
        to: "ExpiringSoon",
        outputs: &["Login", "AuthFailed", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(Competing)",
        to: "ExpiringSoon",
        outputs: &["Login", "AuthFailed", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(Competing) (yield)",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "AuthFailed", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "AuthCompleted(Permanent) (login)",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "AuthFailed", "Persist"],
    },
    Row { from: "ExpiringSoon", input: "AuthCompleted(stale)", to: "ExpiringSoon", outputs: &["Logout"] },
    Row { from: "ExpiringSoon", input: "KeepaliveCompleted(stale)", to: "ExpiringSoon", outputs: &[] },
    Row { from: "ExpiringSoon", input: "Activity", to: "ExpiringSoon", outputs: &[] },
    Row {
        from: "ExpiringSoon",
        input: "Reset",
        to: "Reinitializing",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "ExpiringSoon", input: "CredentialsUpdated", to: "ExpiringSoon", outputs: &["Persist"] },
    Row { from: "ExpiringSoon", input: "SecondFactor", to: "ExpiringSoon", outputs: &[] },
    Row {
        from: "ExpiringSoon",
        input: "Logout",
        to: "Stopped",
        outputs: &["Logout", "Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row {
        from: "ExpiringSoon",
        input: "GiveUp",
        to: "Invalid",
        outputs: &["Publish(none)", "StateChanged", "Revoked", "Persist"],
    },
    Row { from: "Expired", input: "Tick (nothing due)", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "Tick@warmup", to: "Reinitializing", outputs: &["Login", "StateChanged", "Persist"] },
    Row { from: "Expired", input: "Request", to: "Reinitializing", outputs: &["Refresh", "StateChanged", "Persist"] },
    Row { from: "Expired", input: "Cancel", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "Rejected(current, AuthExpired)", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "Rejected(stale)", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "AuthCompleted(stale)", to: "Expired", outputs: &["Logout"] },
    Row { from: "Expired", input: "KeepaliveCompleted(stale)", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "Activity", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "Reset", to: "Reinitializing", outputs: &["Login", "StateChanged", "Persist"] },
    Row { from: "Expired", input: "CredentialsUpdated", to: "Expired", outputs: &["Persist"] },
    Row { from: "Expired", input: "SecondFactor", to: "Expired", outputs: &[] },
    Row { from: "Expired", input: "Logout", to: "Stopped", outputs: &["Logout", "StateChanged", "Persist"] },
    Row { from: "Expired", input: "GiveUp", to: "Invalid", outputs: &["StateChanged", "Persist"] },
    Row { from: "Reinitializing", input: "Tick (nothing due)", to: "Reinitializing", outputs: &[] },
    Row { from: "Reinitializing", input: "Tick@request_timeout", to: "Reinitializing", outputs: &["Fail(Timeout)"] },
    Row { from: "Reinitializing", input: "Tick@retry", to: "Reinitializing", outputs: &["Login", "Persist"] },
    Row { from: "Reinitializing", input: "Request", to: "Reinitializing", outputs: &[] },
    Row { from: "Reinitializing", input: "Request (table full)", to: "Reinitializing", outputs: &["Fail(Overloaded)"] },
    Row { from: "Reinitializing", input: "Cancel", to: "Reinitializing", outputs: &[] },
    Row { from: "Reinitializing", input: "Rejected(stale)", to: "Reinitializing", outputs: &[] },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(ok)",
        to: "Valid",
        outputs: &["Serve", "Publish(lease)", "GrantInstalled", "StateChanged", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(AuthExpired)",
        to: "Reinitializing",
        outputs: &["AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(AuthExpired) (budget spent)",
        to: "Invalid",
        outputs: &["Fail(Invalid)", "StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(RateLimited)",
        to: "Reinitializing",
        outputs: &["AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(Transient)",
        to: "Reinitializing",
        outputs: &["AuthFailed", "Deferred", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(Permanent)",
        to: "Invalid",
        outputs: &["Fail(Invalid)", "StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(NeedsHuman)",
        to: "Invalid",
        outputs: &["Fail(Invalid)", "StateChanged", "AuthFailed", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(Competing)",
        to: "Reinitializing",
        outputs: &["Login", "AuthFailed", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "AuthCompleted(Competing) (yield)",
        to: "Invalid",
        outputs: &["Fail(Invalid)", "StateChanged", "AuthFailed", "Persist"],
    },
    Row { from: "Reinitializing", input: "AuthCompleted(stale)", to: "Reinitializing", outputs: &["Logout"] },
    Row { from: "Reinitializing", input: "KeepaliveCompleted(stale)", to: "Reinitializing", outputs: &[] },
    Row { from: "Reinitializing", input: "Activity", to: "Reinitializing", outputs: &[] },
    Row { from: "Reinitializing", input: "Reset", to: "Reinitializing", outputs: &["Persist"] },
    Row { from: "Reinitializing", input: "CredentialsUpdated", to: "Reinitializing", outputs: &["Persist"] },
    Row { from: "Reinitializing", input: "SecondFactor", to: "Reinitializing", outputs: &[] },
    Row {
        from: "Reinitializing",
        input: "Logout",
        to: "Stopped",
        outputs: &["Fail(Stopped)", "StateChanged", "Persist"],
    },
    Row {
        from: "Reinitializing",
        input: "GiveUp",
        to: "Invalid",
        outputs: &["Fail(Invalid)", "StateChanged", "Persist"],
    },
    Row { from: "Invalid", input: "Tick (nothing due)", to: "Invalid", outputs: &[] },
    Row { from: "Invalid", input: "Request", to: "Invalid", outputs: &["Fail(Invalid)"] },
    Row { from: "Invalid", input: "Cancel", to: "Invalid", outputs: &[] },
    Row { from: "Invalid", input: "Rejected(stale)", to: "Invalid", outputs: &[] },
    Row { from: "Invalid", input: "AuthCompleted(stale)", to: "Invalid", outputs: &["Logout"] },
    Row { from: "Invalid", input: "AuthCompleted(late, ok)", to: "Invalid", outputs: &["Logout"] },
    Row { from: "Invalid", input: "KeepaliveCompleted(stale)", to: "Invalid", outputs: &[] },
    Row { from: "Invalid", input: "Activity", to: "Invalid", outputs: &[] },
    Row { from: "Invalid", input: "Reset", to: "Reinitializing", outputs: &["Login", "StateChanged", "Persist"] },
    Row {
        from: "Invalid",
        input: "CredentialsUpdated",
        to: "Reinitializing",
        outputs: &["Login", "StateChanged", "Persist"],
    },
    Row {
        from: "Invalid",
        input: "SecondFactor",
        to: "Reinitializing",
        outputs: &["Login", "StateChanged", "Persist"],
    },
    Row { from: "Invalid", input: "SecondFactor (other reason)", to: "Invalid", outputs: &[] },
    Row {
        from: "Invalid",
        input: "SecondFactor (operator, after the cut-off)",
        to: "Reinitializing",
        outputs: &["Login", "StateChanged", "Persist"],
    },
    Row { from: "Invalid", input: "Request (operator, after the cut-off)", to: "Invalid", outputs: &["Fail(Invalid)"] },
    Row { from: "Invalid", input: "Logout", to: "Stopped", outputs: &["StateChanged", "Persist"] },
    Row { from: "Invalid", input: "GiveUp", to: "Invalid", outputs: &["Persist"] },
    Row { from: "Stopped", input: "Tick (nothing due)", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "Request", to: "Stopped", outputs: &["Fail(Stopped)"] },
    Row { from: "Stopped", input: "Cancel", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "Rejected(stale)", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "AuthCompleted(stale)", to: "Stopped", outputs: &["Logout"] },
    Row { from: "Stopped", input: "AuthCompleted(late, ok)", to: "Stopped", outputs: &["Logout"] },
    Row { from: "Stopped", input: "KeepaliveCompleted(stale)", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "Activity", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "Reset", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "CredentialsUpdated", to: "Stopped", outputs: &["Persist"] },
    Row { from: "Stopped", input: "SecondFactor", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "Logout", to: "Stopped", outputs: &[] },
    Row { from: "Stopped", input: "GiveUp", to: "Stopped", outputs: &[] },
];
