//! Shared helpers of the engine's integration tests: a [`Harness`] that drives one [`Session`] the way a
//! driver does (one input, then drain `poll_output()`), remembering which login/refresh and keep-alive
//! calls are outstanding so that tests can answer them; names of outputs for tables; and, in
//! [`table`], the fixtures that put a session into each of the seven states through real inputs plus the
//! transition table that `transition_table.rs` asserts and `docs/state-machine.md` must repeat.
//!
//! Each test binary uses a different part of this module, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod model;
pub mod table;

use std::collections::BTreeSet;
use std::time::Duration;

use warden_engine::{
    AttemptId, AuthFailure, AuthKind, EventKind, Generation, Grant, Input, KeepaliveStatus, Output, RequestError,
    Session, SessionConfig, SessionId, Snapshot, UnixMs, WaiterId,
};

/// An instant given as RFC 3339 text (`"2026-03-08T07:00:00Z"`).
pub fn at(text: &str) -> UnixMs {
    UnixMs::from_timestamp(text.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("bad instant {text}: {e}")))
}

/// `t` plus whole seconds.
pub fn plus(t: UnixMs, seconds: i64) -> UnixMs {
    UnixMs::from_millis(t.as_millis() + seconds * 1000)
}

/// `t` plus milliseconds.
pub fn plus_ms(t: UnixMs, ms: i64) -> UnixMs {
    UnixMs::from_millis(t.as_millis() + ms)
}

/// The session id every test uses.
pub fn sid() -> SessionId {
    SessionId::new("test-session").expect("valid id")
}

/// Every output the session has queued.
pub fn drain(session: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

/// A short, stable name of an output kind, as the transition table writes it.
pub fn output_name(output: &Output) -> String {
    match output {
        Output::Login { .. } => "Login".into(),
        Output::Refresh { .. } => "Refresh".into(),
        Output::Keepalive { .. } => "Keepalive".into(),
        Output::Logout { .. } => "Logout".into(),
        Output::Publish(Some(_)) => "Publish(lease)".into(),
        Output::Publish(None) => "Publish(none)".into(),
        Output::Serve { .. } => "Serve".into(),
        Output::Fail { error, .. } => match error {
            RequestError::Invalid(_) => "Fail(Invalid)".into(),
            RequestError::Timeout(_) => "Fail(Timeout)".into(),
            RequestError::Stopped => "Fail(Stopped)".into(),
            RequestError::Overloaded { .. } => "Fail(Overloaded)".into(),
            other => format!("Fail({other:?})"),
        },
        Output::Persist { .. } => "Persist".into(),
        Output::Event(event) => match &event.kind {
            EventKind::StateChanged { .. } => "StateChanged".into(),
            EventKind::GrantInstalled { .. } => "GrantInstalled".into(),
            EventKind::Revoked { .. } => "Revoked".into(),
            EventKind::AuthFailed { .. } => "AuthFailed".into(),
            EventKind::Deferred { .. } => "Deferred".into(),
            EventKind::KeepaliveFailed { .. } => "KeepaliveFailed".into(),
            EventKind::LoginDiscarded { .. } => "LoginDiscarded".into(),
            EventKind::PolicyWarning { .. } => "PolicyWarning".into(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// The set of output kinds in `outputs`.
pub fn output_names(outputs: &[Output]) -> BTreeSet<String> {
    outputs.iter().map(output_name).collect()
}

/// Drives one session like a driver does and remembers the calls it has asked for.
#[derive(Debug)]
pub struct Harness {
    /// The session under test.
    pub session: Session,
    /// The driver's clock.
    pub now: UnixMs,
    /// The login or refresh the session asked for and nobody answered yet, with its start time.
    pub auth: Option<(AttemptId, AuthKind, UnixMs)>,
    /// The keep-alive the session asked for and nobody answered yet.
    pub keepalive: Option<AttemptId>,
    /// Outputs of the last input.
    pub last: Vec<Output>,
    next_waiter: u64,
    next_token: u64,
}

impl Harness {
    /// A new session created at `now`, its first outputs drained.
    pub fn new(config: SessionConfig, now: UnixMs) -> Harness {
        let session = Session::new(config, now);
        Harness::wrap(session, now)
    }

    /// A session restored from `snapshot` at `now`, its first outputs drained.
    pub fn restore(config: SessionConfig, snapshot: Snapshot, now: UnixMs) -> Harness {
        let session = Session::restore(config, snapshot, now).expect("restore");
        Harness::wrap(session, now)
    }

    fn wrap(session: Session, now: UnixMs) -> Harness {
        let mut h =
            Harness { session, now, auth: None, keepalive: None, last: Vec::new(), next_waiter: 1, next_token: 1 };
        h.absorb();
        h
    }

    /// Drains the session's outputs and records the calls they start.
    fn absorb(&mut self) -> Vec<Output> {
        let outputs = drain(&mut self.session);
        for output in &outputs {
            match output {
                Output::Login { attempt, .. } => self.auth = Some((*attempt, AuthKind::Login, self.now)),
                Output::Refresh { attempt, .. } => self.auth = Some((*attempt, AuthKind::Refresh, self.now)),
                Output::Keepalive { attempt, .. } => self.keepalive = Some(*attempt),
                _ => {}
            }
        }
        self.last = outputs.clone();
        outputs
    }

    /// Feeds one input at `t` (the driver's clock moves there) and drains the outputs.
    pub fn input_at(&mut self, t: UnixMs, input: Input) -> Vec<Output> {
        self.now = self.now.max(t);
        if let Input::AuthCompleted { attempt, .. } = &input
            && self.auth.is_some_and(|(a, _, _)| a == *attempt)
        {
            self.auth = None;
        }
        if let Input::KeepaliveCompleted { attempt, .. } = &input
            && self.keepalive == Some(*attempt)
        {
            self.keepalive = None;
        }
        self.session.handle(t, input);
        self.absorb()
    }

    /// Feeds one input at the driver's current time.
    pub fn input(&mut self, input: Input) -> Vec<Output> {
        self.input_at(self.now, input)
    }

    /// A tick at `t`.
    pub fn tick(&mut self, t: UnixMs) -> Vec<Output> {
        self.input_at(t, Input::Tick)
    }

    /// A tick at the session's next deadline (which must exist).
    pub fn tick_at_timeout(&mut self) -> Vec<Output> {
        let t = self.session.poll_timeout().expect("the session has a deadline");
        self.tick(t)
    }

    /// A fresh waiter id.
    pub fn waiter(&mut self) -> WaiterId {
        let id = WaiterId(self.next_waiter);
        self.next_waiter += 1;
        id
    }

    /// A request with a fresh waiter id; returns the id and the outputs.
    pub fn request(&mut self, newer_than: Option<Generation>) -> (WaiterId, Vec<Output>) {
        let waiter = self.waiter();
        let outputs = self.input(Input::Request { waiter, newer_than });
        (waiter, outputs)
    }

    /// A grant as a broker would issue it for the outstanding call: issued when the call started, with
    /// the given lifetime and optionally a refresh token living an hour.
    pub fn grant(&mut self, lifetime: Option<Duration>, refresh: bool) -> Grant {
        let issued_at = self.auth.map_or(self.now, |(_, _, started)| started);
        let n = self.next_token;
        self.next_token += 1;
        let mut grant = Grant::new(format!("access-{n}"), issued_at);
        if let Some(lifetime) = lifetime {
            grant = grant.expires_in(lifetime);
        }
        if refresh {
            grant = grant.with_refresh(format!("refresh-{n}"), Some(Duration::from_secs(3600)));
        }
        grant
    }

    /// Answers the outstanding login or refresh at the current time.
    pub fn complete_auth(&mut self, result: Result<Grant, AuthFailure>) -> Vec<Output> {
        let (attempt, _, _) = self.auth.expect("a login or refresh is outstanding");
        self.input(Input::AuthCompleted { attempt, result })
    }

    /// Answers the outstanding keep-alive at the current time.
    pub fn complete_keepalive(&mut self, result: Result<KeepaliveStatus, AuthFailure>) -> Vec<Output> {
        let attempt = self.keepalive.expect("a keep-alive is outstanding");
        self.input(Input::KeepaliveCompleted { attempt, result })
    }
}
