//! Follows the engine's events during a run: time spent in each state, event categories counted per day
//! (cut-offs, warm-ups, logins and re-logins, revocations, restarts), and — for the HTML timeline — state
//! spans and markers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use warden_actors::{SessionHandle, Warden, WardenEventKind};
use warden_engine::{AuthKind, EventKind, Reason, SessionId, StateKind, UnixMs};

use crate::report::{EventCategory, EventSummary, EventTally, RunDays};

/// The most markers a timeline keeps (a storm of rejections must not grow memory without bound); the
/// rest are counted.
pub const MARKERS_KEPT: usize = 50_000;

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

/// What a timeline marker marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MarkerKind {
    /// A login grant was installed.
    Login,
    /// The broker refused a request for its token.
    Rejection,
    /// The broker ended the session on its own: an intraday invalidation, a silent de-authentication, a
    /// competing login, a daily or weekly reset.
    Deauth,
    /// The engine's daily cut-off.
    Cutoff,
    /// A warm-up login before market open.
    Warmup,
    /// A session actor failed and was restarted, or the process restarted.
    Restart,
    /// A session gave up (`Invalid`).
    GaveUp,
}

impl MarkerKind {
    /// Every kind, in legend order.
    pub const ALL: [MarkerKind; 7] = [
        MarkerKind::Login,
        MarkerKind::Rejection,
        MarkerKind::Deauth,
        MarkerKind::Cutoff,
        MarkerKind::Warmup,
        MarkerKind::Restart,
        MarkerKind::GaveUp,
    ];

    /// Its name (CSS class, legend).
    pub fn name(self) -> &'static str {
        match self {
            MarkerKind::Login => "login",
            MarkerKind::Rejection => "rejection",
            MarkerKind::Deauth => "deauth",
            MarkerKind::Cutoff => "cutoff",
            MarkerKind::Warmup => "warmup",
            MarkerKind::Restart => "restart",
            MarkerKind::GaveUp => "gave-up",
        }
    }
}

/// One marker on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// When.
    pub at: UnixMs,
    /// Which session (`None`: the whole process, or the broker account of every session).
    pub session: Option<usize>,
    /// What.
    pub kind: MarkerKind,
    /// A short description for the hover text.
    pub detail: String,
}

/// Requests over time, in equal buckets from the run's start.
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
#[derive(Clone, Debug)]
pub struct Timeline {
    /// The run's start.
    pub start: UnixMs,
    /// The run's end.
    pub end: UnixMs,
    /// The calendar days of the run in the market's zone (whose times the page shows).
    pub days: RunDays,
    /// Which of those days the market opens.
    pub trading: Vec<bool>,
    /// The sessions' ids, by index.
    pub sessions: Vec<String>,
    /// Every session's states over time.
    pub spans: Vec<StateSpan>,
    /// Logins, rejections, de-authentications, cut-offs, warm-ups, restarts, sorted by time.
    pub markers: Vec<Marker>,
    /// Markers not kept (beyond [`MARKERS_KEPT`]).
    pub markers_dropped: u64,
    /// Requests over time.
    pub buckets: Buckets,
}

impl Timeline {
    /// Adds a marker (if there is room for it).
    pub fn add_marker(&mut self, marker: Marker) {
        if self.markers.len() < MARKERS_KEPT {
            self.markers.push(marker);
        } else {
            self.markers_dropped += 1;
        }
    }
}

struct Inner {
    start: UnixMs,
    days: RunDays,
    keep_spans: bool,
    print_events: bool,
    ids: Vec<SessionId>,
    /// Each session's state and since when, once known.
    current: Vec<Option<(StateKind, UnixMs)>>,
    /// When the current process came up (sessions whose state is not known yet started then).
    up_since: UnixMs,
    totals: BTreeMap<StateKind, u64>,
    spans: Vec<StateSpan>,
    markers: Vec<Marker>,
    markers_dropped: u64,
    tallies: BTreeMap<EventCategory, EventTally>,
    /// Whether each session has had a login grant in this run (the next one is a re-login).
    logged_in: Vec<bool>,
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

    fn count(&mut self, category: EventCategory, at: UnixMs) {
        self.tallies.entry(category).or_default().add(at, &self.days);
    }

    fn mark(&mut self, at: UnixMs, session: Option<usize>, kind: MarkerKind, detail: impl Into<String>) {
        if !self.keep_spans {
            return;
        }
        if self.markers.len() < MARKERS_KEPT {
            self.markers.push(Marker { at, session, kind, detail: detail.into() });
        } else {
            self.markers_dropped += 1;
        }
    }

    /// Counts (and marks) one event of session `session`.
    fn event(&mut self, session: usize, at: UnixMs, kind: &WardenEventKind) {
        match kind {
            WardenEventKind::Session(EventKind::StateChanged { from, to, reason }) => {
                self.state_changed(session, *from, *to, at);
                match reason {
                    Reason::DailyCutoff => {
                        self.count(EventCategory::Cutoff, at);
                        self.mark(at, Some(session), MarkerKind::Cutoff, "daily cut-off");
                    }
                    Reason::Warmup => {
                        self.count(EventCategory::WarmupLogin, at);
                        self.mark(at, Some(session), MarkerKind::Warmup, "warm-up login");
                    }
                    Reason::Rejected => self.count(EventCategory::Rejected, at),
                    Reason::Reset => self.count(EventCategory::OperatorReset, at),
                    _ => {}
                }
                if *to == StateKind::Invalid {
                    self.count(EventCategory::GaveUp, at);
                    let detail = match reason {
                        Reason::GaveUp(why) => format!("gave up: {why}"),
                        _ => "gave up".to_owned(),
                    };
                    self.mark(at, Some(session), MarkerKind::GaveUp, detail);
                }
            }
            WardenEventKind::Session(EventKind::GrantInstalled { kind: AuthKind::Login, .. }) => {
                self.count(EventCategory::Login, at);
                if std::mem::replace(&mut self.logged_in[session], true) {
                    self.count(EventCategory::Relogin, at);
                }
                self.mark(at, Some(session), MarkerKind::Login, "login");
            }
            WardenEventKind::Session(EventKind::GrantInstalled { kind: AuthKind::Refresh, .. }) => {
                self.count(EventCategory::Refresh, at);
            }
            WardenEventKind::Session(EventKind::AuthFailed { kind: AuthKind::Login, .. }) => {
                self.count(EventCategory::LoginFailed, at);
            }
            WardenEventKind::Session(EventKind::Revoked { .. }) => self.count(EventCategory::Revocation, at),
            WardenEventKind::ActorRestarting { cause, .. } => {
                self.count(EventCategory::ActorRestart, at);
                self.mark(at, Some(session), MarkerKind::Restart, format!("actor restart: {cause}"));
            }
            _ => {}
        }
    }
}

/// Records a run's events; cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    pub(crate) fn new(
        start: UnixMs,
        days: RunDays,
        keep_spans: bool,
        print_events: bool,
        ids: Vec<SessionId>,
    ) -> Recorder {
        let sessions = ids.len();
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                start,
                days,
                keep_spans,
                print_events,
                ids,
                current: vec![None; sessions],
                up_since: start,
                totals: BTreeMap::new(),
                spans: Vec::new(),
                markers: Vec::new(),
                markers_dropped: 0,
                tallies: BTreeMap::new(),
                logged_in: vec![false; sessions],
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
                        if let Some(session) = inner.ids.iter().position(|id| *id == event.session) {
                            inner.event(session, event.at, &event.kind);
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
            inner.count(EventCategory::ProcessRestart, at);
            inner.mark(at, None, MarkerKind::Restart, "process restart");
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

    /// How many events of a category so far.
    pub(crate) fn count_of(&self, category: EventCategory) -> u64 {
        self.with(|inner| inner.tallies.get(&category).map_or(0, EventTally::count)).unwrap_or(0)
    }

    /// The report's `events`: every category, with per-day counts.
    pub(crate) fn events(&self) -> BTreeMap<String, EventSummary> {
        self.with(|inner| {
            EventCategory::ALL
                .iter()
                .map(|c| {
                    let summary = inner.tallies.get(c).cloned().unwrap_or_default().summary(inner.start, &inner.days);
                    (c.name().to_owned(), summary)
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// The timeline so far (call after [`Recorder::time_in_state`]); the runner adds the broker's markers.
    pub(crate) fn timeline(&self, end: UnixMs, trading: Vec<bool>, buckets: Buckets) -> Option<Timeline> {
        self.with(|inner| Timeline {
            start: inner.start,
            end,
            days: inner.days.clone(),
            trading,
            sessions: inner.ids.iter().map(ToString::to_string).collect(),
            spans: std::mem::take(&mut inner.spans),
            markers: std::mem::take(&mut inner.markers),
            markers_dropped: inner.markers_dropped,
            buckets,
        })
    }
}
