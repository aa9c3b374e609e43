//! Follows the engine's events during a run: time spent in each state, state spans and logins for the
//! HTML timeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use warden_actors::{SessionHandle, Warden, WardenEventKind};
use warden_engine::{AuthKind, EventKind, SessionId, StateKind, UnixMs};

/// A session's state over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSpan {
    /// The session's index in the scenario.
    pub session: usize,
    /// The state.
    pub state: StateKind,
    /// When it was entered.
    pub from: UnixMs,
    /// When it was left.
    pub to: UnixMs,
}

/// Requests over time, in equal buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    /// The bucket width in ms.
    pub width_ms: u64,
    /// Requests that succeeded, per bucket.
    pub ok: Vec<u64>,
    /// Requests that failed (or whose outcome is unknown), per bucket.
    pub failed: Vec<u64>,
}

/// What happened over a run, for drawing.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// The run's start.
    pub start: UnixMs,
    /// The run's end.
    pub end: UnixMs,
    /// The sessions' ids, by index.
    pub sessions: Vec<String>,
    /// Every session's states over time.
    pub spans: Vec<StateSpan>,
    /// Successful logins: session index and time.
    pub logins: Vec<(usize, UnixMs)>,
    /// Requests over time.
    pub buckets: Buckets,
}

#[derive(Default)]
struct Inner {
    start: UnixMs,
    keep_spans: bool,
    print_events: bool,
    ids: Vec<SessionId>,
    /// Each session's state and since when, once known.
    current: Vec<Option<(StateKind, UnixMs)>>,
    /// When the current process came up (sessions whose state is not known yet started then).
    up_since: UnixMs,
    totals: BTreeMap<StateKind, u64>,
    spans: Vec<StateSpan>,
    logins: Vec<(usize, UnixMs)>,
}

impl Inner {
    fn close(&mut self, session: usize, state: StateKind, from: UnixMs, to: UnixMs) {
        let ms = u64::try_from(to.as_millis().saturating_sub(from.as_millis()).max(0)).unwrap_or(0);
        *self.totals.entry(state).or_default() += ms;
        if self.keep_spans && to > from {
            self.spans.push(StateSpan { session, state, from, to });
        }
    }

    fn state_changed(&mut self, session: usize, from: StateKind, to: StateKind, at: UnixMs) {
        let (state, since) = self.current[session].unwrap_or((from, self.up_since));
        self.close(session, state, since, at);
        self.current[session] = Some((to, at));
    }
}

/// Records a run's events; cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    pub(crate) fn new(start: UnixMs, keep_spans: bool, print_events: bool, ids: Vec<SessionId>) -> Recorder {
        let current = vec![None; ids.len()];
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                start,
                keep_spans,
                print_events,
                ids,
                current,
                up_since: start,
                ..Inner::default()
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut inner| f(&mut inner))
    }

    /// Follows a warden's events until it is gone.
    pub(crate) fn follow(&self, warden: &Warden) {
        let mut events = warden.events();
        let recorder = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => recorder.with(|inner| {
                        if inner.print_events {
                            eprintln!("{} {} {:?}", event.at, event.session, event.kind);
                        }
                        let Some(session) = inner.ids.iter().position(|id| *id == event.session) else { return };
                        match event.kind {
                            WardenEventKind::Session(EventKind::StateChanged { from, to, .. }) => {
                                inner.state_changed(session, from, to, event.at);
                            }
                            WardenEventKind::Session(EventKind::GrantInstalled { kind: AuthKind::Login, .. }) => {
                                inner.logins.push((session, event.at));
                            }
                            _ => {}
                        }
                    }),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the run's event follower lagged; time in state is approximate");
                        None
                    }
                    Err(RecvError::Closed) => return,
                };
            }
        });
    }

    /// The process went down at `at`: every session's current interval ends.
    pub(crate) fn process_down(&self, handles: &[SessionHandle], at: UnixMs) {
        self.capture_final_states(handles, at);
        self.with(|inner| {
            for session in 0..inner.current.len() {
                if let Some((state, since)) = inner.current[session].take() {
                    inner.close(session, state, since, at);
                }
            }
        });
    }

    /// The process came back at `at`.
    pub(crate) fn process_up(&self, at: UnixMs) {
        self.with(|inner| inner.up_since = at);
    }

    /// Sessions that never changed state are in the state their handle shows, since the process came up.
    pub(crate) fn capture_final_states(&self, handles: &[SessionHandle], _at: UnixMs) {
        self.with(|inner| {
            for (session, handle) in handles.iter().enumerate() {
                if session < inner.current.len() && inner.current[session].is_none() {
                    inner.current[session] = Some((handle.status().state, inner.up_since));
                }
            }
        });
    }

    /// Milliseconds per state name, summed over sessions, with open intervals closed at `end`.
    pub(crate) fn time_in_state(&self, end: UnixMs) -> BTreeMap<String, u64> {
        self.with(|inner| {
            for session in 0..inner.current.len() {
                if let Some((state, since)) = inner.current[session].take() {
                    inner.close(session, state, since, end);
                    inner.current[session] = Some((state, end));
                }
            }
            inner.totals.iter().map(|(state, ms)| (state.name().to_owned(), *ms)).collect()
        })
        .unwrap_or_default()
    }

    /// The timeline (call after [`Recorder::time_in_state`]).
    pub(crate) fn timeline(&self, end: UnixMs, buckets: Buckets) -> Timeline {
        self.with(|inner| Timeline {
            start: inner.start,
            end,
            sessions: inner.ids.iter().map(ToString::to_string).collect(),
            spans: inner.spans.clone(),
            logins: inner.logins.clone(),
            buckets,
        })
        .unwrap_or_default()
    }
}
