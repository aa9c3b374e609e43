//! Telling a person that a session needs them: a JSON POST to the `[serve] webhook`, besides the
//! `operator_needed` event on `/v1/events`.
//!
//! A session that goes `Invalid` for a reason a person can fix — it needs a second factor
//! (`needs_human`), its broker's daily expiry passed and the next login needs a person (`after_cutoff`),
//! the broker rejected its credentials (`bad_credentials`), or it stopped after too many rejected logins
//! (`failure_budget_spent`) — produces one [`Note`]. Notes queue (at most [`QUEUE_LIMIT`]; more are
//! dropped with a warning) for one delivery task that POSTs each, with the configured timeout, at most
//! [`ATTEMPTS`] times with a doubling pause. The webhook's URL is treated as a secret (chat webhooks
//! carry their key in it): it is never logged.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

/// The most notes waiting for delivery.
pub const QUEUE_LIMIT: usize = 64;
/// Delivery attempts per note.
pub const ATTEMPTS: u32 = 3;
/// The pause after the first failed attempt (doubled after each).
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// What a person is told.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Note {
    /// `operator_needed`.
    pub kind: &'static str,
    /// The session.
    pub session: String,
    /// Why (`needs_human`, `after_cutoff`, `bad_credentials`, `failure_budget_spent`).
    pub reason: &'static str,
    /// The sentence.
    pub text: String,
    /// What to do, as a sentence.
    pub action: String,
    /// Where a person signs in for the broker's browser login, if the session has one.
    pub login_url: Option<String>,
    /// The event's number on `/v1/events`.
    pub event_id: u64,
    /// When (RFC 3339).
    pub at: String,
}

/// The webhook's delivery queue (or nothing, without a webhook).
#[derive(Clone, Debug)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Note>>,
}

impl Notifier {
    /// Starts the delivery task for `webhook` (none: notes only become events).
    pub fn start(webhook: Option<String>, timeout: Duration) -> Notifier {
        let Some(url) = webhook else { return Notifier { queue: None } };
        let client = match reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "the webhook client could not be built; notes only become events");
                return Notifier { queue: None };
            }
        };
        let (queue, notes) = mpsc::channel(QUEUE_LIMIT);
        tokio::spawn(deliver(client, url, notes));
        Notifier { queue: Some(queue) }
    }

    /// Queues a note for the webhook (dropped, with a warning, when the queue is full).
    pub fn notify(&self, note: Note) {
        let Some(queue) = &self.queue else { return };
        if let Err(error) = queue.try_send(note) {
            tracing::warn!(
                session = %match &error { mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n.session.clone() },
                "the webhook queue is full or closed; this note is only on /v1/events"
            );
        }
    }
}

async fn deliver(client: reqwest::Client, url: String, mut notes: mpsc::Receiver<Note>) {
    while let Some(note) = notes.recv().await {
        let body = serde_json::to_vec(&note).unwrap_or_default();
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=ATTEMPTS {
            let sent = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(session = %note.session, reason = note.reason, "webhook told");
                    break;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    tracing::warn!(session = %note.session, attempt, status, "the webhook refused a note");
                }
                Err(error) => {
                    let kind = if error.is_timeout() { "timeout" } else { "connection failed" };
                    tracing::warn!(session = %note.session, attempt, kind, "the webhook could not be reached");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}
