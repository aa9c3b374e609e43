//! The event log behind `GET /v1/events`: every event numbered, kept for a bounded number of events and
//! time, readable from any kept number on.
//!
//! [`EventLog::push`] numbers an event, renders its JSON once and keeps it; the oldest are dropped beyond
//! `events_kept` or `events_kept_for`. A [`Subscription`] reads the log from where it stands, so a slow
//! subscriber never loses events to a full queue: it only falls behind, and if it falls behind the oldest
//! kept event it gets an explicit [`Item::Gap`] and goes on from the oldest kept. A resume
//! (`Last-Event-ID: n`) starts after `n` the same way.
//!
//! Numbers start at the process's start time in milliseconds times 1,000 and count up, so they keep
//! growing across restarts: a client resuming with a number of an earlier run gets a gap (its events are
//! gone), never a silent wait for numbers that will not come.
//!
//! [`event_json`] renders a [`WardenEvent`] — `{"id", "session", "at", "at_ms", "type", "text", "data"}` —
//! where `text` is the event's sentence and `data` its fields (no secret: events carry none).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warden_actors::{Clock, WardenEvent, WardenEventKind};
use warden_engine::{EventKind, SessionId, UnixMs};

/// The most events one read of the log hands a subscriber at once.
pub const READ_BATCH: usize = 256;

/// One kept event.
#[derive(Debug)]
pub struct StoredEvent {
    /// Its number.
    pub id: u64,
    /// When it happened.
    pub at: UnixMs,
    /// Its session, if it is about one.
    pub session: Option<SessionId>,
    /// Its type (`state_changed`).
    pub kind: &'static str,
    /// Its JSON, rendered once.
    pub json: String,
}

/// What a subscriber reads next.
#[derive(Clone, Debug)]
pub enum Item {
    /// An event.
    Event(Arc<StoredEvent>),
    /// Events that are no longer kept (or were never known here) were skipped.
    Gap {
        /// The first number skipped.
        first_missed: u64,
        /// The last number skipped (`None` when the asked-for number is not one of this process's).
        last_missed: Option<u64>,
    },
}

impl Item {
    /// The item's JSON.
    pub fn json(&self) -> String {
        match self {
            Item::Event(event) => event.json.clone(),
            Item::Gap { first_missed, last_missed } => {
                let text = match last_missed {
                    Some(last) => format!(
                        "events {first_missed} to {last} are no longer kept; read the current state from /v1/sessions"
                    ),
                    None => format!(
                        "event {first_missed} is not one of this process's (it restarted?); read the current state \
                         from /v1/sessions"
                    ),
                };
                let missed = last_missed.map(|last| last.saturating_sub(*first_missed) + 1);
                json!({"id": null, "type": "gap", "first_missed": first_missed, "last_missed": last_missed,
                       "missed": missed, "text": text})
                .to_string()
            }
        }
    }

    /// The item's number (`None` for a gap).
    pub fn id(&self) -> Option<u64> {
        match self {
            Item::Event(event) => Some(event.id),
            Item::Gap { .. } => None,
        }
    }
}

struct Ring {
    events: VecDeque<Arc<StoredEvent>>,
    next_id: u64,
    first_id: u64,
}

/// The numbered, bounded event log. See the module documentation.
pub struct EventLog {
    ring: Mutex<Ring>,
    latest: watch::Sender<u64>,
    clock: Clock,
    kept: usize,
    kept_for: Duration,
    max_subscribers: usize,
    subscribers: Arc<AtomicUsize>,
    closing: CancellationToken,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("kept", &self.kept).field("kept_for", &self.kept_for).finish_non_exhaustive()
    }
}

/// Too many event streams are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{open} event streams are open, the most allowed (max_event_subscribers)")]
pub struct TooManySubscribers {
    /// How many are open.
    pub open: usize,
}

impl EventLog {
    /// A log keeping at most `kept` events, none older than `kept_for`, read by at most `max_subscribers`
    /// at once; numbers start at the clock's time in milliseconds times 1,000.
    pub fn new(clock: Clock, kept: usize, kept_for: Duration, max_subscribers: usize) -> EventLog {
        let first_id = u64::try_from(clock.now().as_millis()).unwrap_or(0).saturating_mul(1_000).max(1);
        EventLog {
            ring: Mutex::new(Ring { events: VecDeque::new(), next_id: first_id, first_id }),
            latest: watch::Sender::new(first_id),
            clock,
            kept: kept.max(1),
            kept_for,
            max_subscribers,
            subscribers: Arc::new(AtomicUsize::new(0)),
            closing: CancellationToken::new(),
        }
    }

    /// Keeps an event; returns its number. `data` holds its fields; `text` its sentence.
    pub fn push(&self, session: Option<&SessionId>, at: UnixMs, kind: &'static str, text: String, data: Value) -> u64 {
        let now = self.clock.now();
        let id = {
            let mut ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let id = ring.next_id;
            ring.next_id += 1;
            let json = json!({
                "id": id,
                "session": session.map(SessionId::as_str),
                "at": at.to_string(),
                "at_ms": at.as_millis(),
                "type": kind,
                "text": text,
                "data": data,
            })
            .to_string();
            ring.events.push_back(Arc::new(StoredEvent { id, at, session: session.cloned(), kind, json }));
            let oldest_allowed = now.saturating_sub(self.kept_for);
            while ring.events.len() > self.kept || ring.events.front().is_some_and(|e| e.at < oldest_allowed) {
                ring.events.pop_front();
            }
            id
        };
        self.latest.send_replace(id);
        id
    }

    /// Keeps a warden event (see [`event_json`]); returns its number.
    pub fn push_warden(&self, event: &WardenEvent) -> u64 {
        let (kind, data) = event_json(&event.kind);
        self.push(Some(&event.session), event.at, kind, event.kind.to_string(), data)
    }

    /// The number of the newest event (`None` if none was pushed yet).
    pub fn latest_id(&self) -> Option<u64> {
        let ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (ring.next_id > ring.first_id).then(|| ring.next_id - 1)
    }

    /// The kept events, oldest first.
    pub fn kept(&self) -> Vec<Arc<StoredEvent>> {
        let ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.events.iter().cloned().collect()
    }

    /// A subscription that reads every event after `last_seen` (`None`: from the next event on).
    pub fn subscribe(self: &Arc<Self>, last_seen: Option<u64>) -> Result<Subscription, TooManySubscribers> {
        let open = self.subscribers.fetch_add(1, Ordering::AcqRel) + 1;
        if open > self.max_subscribers {
            self.subscribers.fetch_sub(1, Ordering::AcqRel);
            return Err(TooManySubscribers { open: open - 1 });
        }
        let next = {
            let ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            last_seen.map_or(ring.next_id, |seen| seen.saturating_add(1))
        };
        Ok(Subscription {
            log: self.clone(),
            latest: self.latest.subscribe(),
            next,
            pending: VecDeque::new(),
            _open: OpenGuard(self.subscribers.clone()),
        })
    }

    /// How many event streams are open.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// Ends every subscription (at shutdown): their `next` returns `None`.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Moves `next` to the kept events: the items to hand out from there, at most [`READ_BATCH`].
    fn read(&self, next: &mut u64, out: &mut VecDeque<Item>) {
        let ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest = ring.events.front().map_or(ring.next_id, |e| e.id);
        if *next > ring.next_id || *next < ring.first_id {
            // Not a number of this process's: say so, and go on from the oldest kept.
            out.push_back(Item::Gap { first_missed: *next, last_missed: None });
            *next = oldest;
        } else if *next < oldest {
            out.push_back(Item::Gap { first_missed: *next, last_missed: Some(oldest - 1) });
            *next = oldest;
        }
        let start = usize::try_from(*next - oldest).unwrap_or(usize::MAX);
        for event in ring.events.iter().skip(start).take(READ_BATCH) {
            debug_assert_eq!(event.id, *next, "event numbers are contiguous");
            out.push_back(Item::Event(event.clone()));
            *next = event.id + 1;
        }
    }
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One reader of the log, in order, from where it started. Dropping it frees its place.
pub struct Subscription {
    log: Arc<EventLog>,
    latest: watch::Receiver<u64>,
    next: u64,
    pending: VecDeque<Item>,
    _open: OpenGuard,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("next", &self.next).finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next item, waiting for it; `None` when the log is closed (shutdown).
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            if self.log.closing.is_cancelled() {
                return None;
            }
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            // Mark the newest number seen before reading, so a push after the read wakes the wait below.
            self.latest.borrow_and_update();
            self.log.read(&mut self.next, &mut self.pending);
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.latest.changed() => if changed.is_err() { return None },
                () = self.log.closing.cancelled() => return None,
            }
        }
    }
}

/// A warden event's type and fields, for its JSON.
pub fn event_json(kind: &WardenEventKind) -> (&'static str, Value) {
    let data = serde_json::to_value(kind).unwrap_or(Value::Null);
    // The fields without the enum's wrapping: {"Session": {"StateChanged": {...}}} → {...}.
    let fields = |value: Value| -> Value {
        let mut value = value;
        for _ in 0..2 {
            value = match value {
                Value::Object(map) if map.len() == 1 => map.into_iter().next().map_or(Value::Null, |(_, v)| v),
                other => return other,
            };
        }
        value
    };
    let kind_name = match kind {
        WardenEventKind::Session(event) => match event {
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::GrantInstalled { .. } => "grant_installed",
            EventKind::Revoked { .. } => "revoked",
            EventKind::AuthFailed { .. } => "auth_failed",
            EventKind::Deferred { .. } => "deferred",
            EventKind::KeepaliveFailed { .. } => "keepalive_failed",
            EventKind::LoginDiscarded { .. } => "login_discarded",
            EventKind::PolicyWarning { .. } => "policy_warning",
            _ => "session_event",
        },
        WardenEventKind::StoreQuarantined { .. } => "store_quarantined",
        WardenEventKind::PersistFailed { .. } => "persist_failed",
        WardenEventKind::ActorRestarting { .. } => "actor_restarting",
        WardenEventKind::FreshTokenRefused { .. } => "fresh_token_refused",
        WardenEventKind::PolicyWarning { .. } => "policy_warning",
        _ => "event",
    };
    (kind_name, fields(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_engine::{Reason, StateKind};

    fn log(kept: usize) -> Arc<EventLog> {
        let clock = Clock::starting_at(UnixMs::from_millis(1_000));
        Arc::new(EventLog::new(clock, kept, Duration::from_secs(3600), 10))
    }

    fn push(log: &EventLog, n: usize) {
        for i in 0..n {
            log.push(None, UnixMs::from_millis(1_000), "test", format!("event {i}"), Value::Null);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_read_every_event_in_order_and_resume_after_a_number() {
        let log = log(100);
        let mut live = log.subscribe(None).unwrap();
        push(&log, 5);
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(live.next().await.unwrap().id().unwrap());
        }
        assert_eq!(ids, (1_000_000..1_000_005).collect::<Vec<_>>());
        let mut resumed = log.subscribe(Some(1_000_002)).unwrap();
        assert_eq!(resumed.next().await.unwrap().id(), Some(1_000_003));
        assert_eq!(resumed.next().await.unwrap().id(), Some(1_000_004));
    }

    #[tokio::test(start_paused = true)]
    async fn a_resume_from_further_back_than_kept_gets_a_gap_first() {
        let log = log(3);
        push(&log, 10);
        let mut resumed = log.subscribe(Some(1_000_001)).unwrap();
        let gap = resumed.next().await.unwrap();
        assert!(matches!(gap, Item::Gap { first_missed: 1_000_002, last_missed: Some(1_000_006) }), "{gap:?}");
        assert!(gap.json().contains("\"missed\":5"), "{}", gap.json());
        assert_eq!(resumed.next().await.unwrap().id(), Some(1_000_007));
        let mut stranger = log.subscribe(Some(5)).unwrap();
        assert!(matches!(stranger.next().await.unwrap(), Item::Gap { last_missed: None, .. }));
        assert_eq!(stranger.next().await.unwrap().id(), Some(1_000_007));
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_are_limited_and_freed_when_dropped() {
        let clock = Clock::starting_at(UnixMs::from_millis(1_000));
        let log = Arc::new(EventLog::new(clock, 10, Duration::from_secs(60), 2));
        let a = log.subscribe(None).unwrap();
        let _b = log.subscribe(None).unwrap();
        assert_eq!(log.subscribe(None).unwrap_err(), TooManySubscribers { open: 2 });
        drop(a);
        assert!(log.subscribe(None).is_ok());
    }

    #[test]
    fn warden_events_render_type_text_and_fields() {
        let kind = WardenEventKind::Session(EventKind::StateChanged {
            from: StateKind::Valid,
            to: StateKind::Expired,
            reason: Reason::DailyCutoff,
        });
        let (name, data) = event_json(&kind);
        assert_eq!(name, "state_changed");
        assert_eq!(data["to"], "Expired");
        assert_eq!(data["from"], "Valid");
    }
}
