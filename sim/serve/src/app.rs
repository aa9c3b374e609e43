//! The service's shared state ([`App`]) and the event pump that feeds the event log from the `Warden`'s
//! broadcast.
//!
//! The pump reads every warden event once: it numbers and keeps it ([`EventLog`]), counts failed calls
//! by class for the status API and `/metrics`, and turns a session's giving up for a reason a person can
//! fix into an `operator_needed` event and a webhook note. If the pump falls behind the broadcast
//! (`EVENT_CAPACITY` events), it keeps an `events_lost` event saying how many it missed.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_actors::{Clock, Warden, WardenEvent, WardenEventKind};
use warden_engine::{EventKind, InvalidReason, Reason, SessionEvent, StateKind};

use crate::auth::Auth;
use crate::config::ServeConfig;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::notify::{Note, Notifier};
use crate::page::Page;
use crate::registry::Registry;
use crate::source::SessionSource;
use crate::view::{self, SessionView, class_label, reason_label};

/// Everything a request handler may need.
pub struct App {
    /// The runtime.
    pub warden: Warden,
    /// Its clock.
    pub clock: Clock,
    /// The served sessions.
    pub registry: Registry,
    /// The numbered event log.
    pub events: Arc<EventLog>,
    /// Who may call.
    pub auth: Arc<Auth>,
    /// The status page.
    pub page: Arc<Page>,
    /// The metrics.
    pub metrics: Metrics,
    /// The webhook.
    pub notifier: Notifier,
    /// Where sessions come from on a reload.
    pub source: Option<Arc<dyn SessionSource>>,
    /// One reload at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The `[serve]` settings.
    pub config: ServeConfig,
    /// Proxied calls in flight (a shutdown waits for them).
    pub in_flight: TaskTracker,
    /// Cancelled at shutdown: background tasks stop.
    pub stopping: CancellationToken,
    /// Opens the broker streams relayed by `GET /v1/sessions/{id}/stream`.
    pub streams: warden_actors::stream::Streams,
    /// Stream relays open now (at most `max_streams`).
    pub stream_relays: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("sessions", &self.registry.len()).finish_non_exhaustive()
    }
}

impl App {
    /// The view of every served session, in id order.
    pub fn views(&self) -> Vec<SessionView> {
        self.registry.all().iter().map(|served| self.view_of(served)).collect()
    }

    /// The view of one session.
    pub fn view_of(&self, served: &crate::registry::ServedSession) -> SessionView {
        let log = self.history(served.id());
        let counters = self.metrics.counters(served.id());
        view::build(served, self.clock.now(), &log, &counters)
    }

    /// A session's transition log, oldest first (empty when the store cannot say).
    pub fn history(&self, id: &warden_engine::SessionId) -> Vec<SessionEvent> {
        match self.warden.store().read_log(id, view::HISTORY_LIMIT) {
            Ok(log) => log,
            Err(error) => {
                tracing::warn!(session = %id, %error, "the transition log could not be read");
                Vec::new()
            }
        }
    }

    /// Starts the background tasks: the event pump (reading `receiver`, the warden's events) and the
    /// metrics upkeep.
    pub fn start_background(self: &Arc<Self>, receiver: tokio::sync::broadcast::Receiver<WardenEvent>) {
        tokio::spawn(pump(self.clone(), receiver));
        let app = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(crate::metrics::UPKEEP_INTERVAL) => app.metrics.upkeep(),
                    () = app.stopping.cancelled() => return,
                }
            }
        });
    }
}

async fn pump(app: Arc<App>, mut receiver: tokio::sync::broadcast::Receiver<WardenEvent>) {
    loop {
        let received = tokio::select! {
            received = receiver.recv() => received,
            () = app.stopping.cancelled() => return,
        };
        match received {
            Ok(event) => handle(&app, &event),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the event pump fell behind the warden's broadcast");
                let text = format!("{missed} events were lost before they could be numbered");
                app.events.push(None, app.clock.now(), "events_lost", text, json!({"missed": missed}));
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn handle(app: &App, event: &WardenEvent) {
    let id = app.events.push_warden(event);
    match &event.kind {
        WardenEventKind::Session(EventKind::AuthFailed { kind, class, .. }) => {
            app.metrics.counters(&event.session).failed(&kind.to_string(), class_label(class));
        }
        WardenEventKind::Session(EventKind::KeepaliveFailed { class, .. }) => {
            app.metrics.counters(&event.session).failed("keep-alive", class_label(class));
        }
        WardenEventKind::Session(EventKind::StateChanged {
            to: StateKind::Invalid,
            reason: Reason::GaveUp(why),
            ..
        }) => {
            operator_needed(app, event, why, id);
        }
        _ => {}
    }
}

/// What a person should do about a reason to give up, if a person can fix it.
fn action(reason: &InvalidReason, session: &str) -> Option<String> {
    let second_factor = format!(
        "hand in the broker's code or request token: sign in at the broker's login page (its redirect lands on \
         /callback/{session}), or POST it to /v1/sessions/{session}/second-factor"
    );
    match reason {
        InvalidReason::NeedsHuman { .. } | InvalidReason::AfterCutoff { .. } => Some(second_factor),
        InvalidReason::BadCredentials { .. } | InvalidReason::FailureBudgetSpent { .. } => Some(format!(
            "check the account, then POST new credentials to /v1/sessions/{session}/credentials (or reset it with \
             /v1/sessions/{session}/reset)"
        )),
        _ => None,
    }
}

fn operator_needed(app: &App, event: &WardenEvent, reason: &InvalidReason, invalid_event: u64) {
    let (label, fixable) = reason_label(reason);
    let Some(action) = action(reason, event.session.as_str()).filter(|_| fixable) else { return };
    let login_url = app.registry.get(&event.session).and_then(|s| s.login_url.clone());
    let text = format!("session {} needs a person: {reason}", event.session);
    let data = json!({"reason": label, "action": action, "login_url": login_url, "invalid_event": invalid_event});
    let id = app.events.push(Some(&event.session), event.at, "operator_needed", text.clone(), data);
    tracing::warn!(session = %event.session, reason = label, "a person must act on this session");
    app.notifier.notify(Note {
        kind: "operator_needed",
        session: event.session.to_string(),
        reason: label,
        text,
        action,
        login_url,
        event_id: id,
        at: event.at.to_string(),
    });
}
