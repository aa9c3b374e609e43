//! Where the served sessions come from, and how a reload applies a new list of them.
//!
//! A [`SessionSource`] says which sessions the configuration wants now, as [`SessionEntry`]s: a
//! `SessionSpec` for `Warden::open`, the adapter's [`BrokerApi`] for the proxy, the API root, and a
//! revision (a digest of the session's configuration: equal revisions mean nothing changed). The
//! `warden.toml` loader implements it; tests implement it over a list they edit.
//!
//! [`apply`] compares a loaded list with what is served: a new id is opened, a changed revision is closed
//! and opened again (its snapshot stays in the store, so a still-valid grant is reused), an id no longer
//! listed is closed (not logged out: its grant stays in the store). Sessions handed to the service
//! directly (not from the source) are left alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::Url;
use serde::Serialize;
use warden_actors::stream::StreamSpec;
use warden_actors::{SessionSpec, Warden};
use warden_adapters::broker::BrokerApi;
use warden_engine::{BoxFuture, SessionId};

use crate::registry::{Origin, Registry, ServedSession};

/// One session as the configuration describes it.
#[derive(Clone)]
pub struct SessionEntry {
    /// What `Warden::open` needs (id, broker, credentials, policy, account).
    pub spec: SessionSpec,
    /// The adapter's API, for the proxy.
    pub api: Arc<dyn BrokerApi>,
    /// The API root proxied calls go to (`None`: the adapter's default or the grant's).
    pub base_url: Option<Url>,
    /// Where a person signs in when the broker's login needs a browser (shown on the page and in
    /// notifications); never a secret.
    pub login_url: Option<String>,
    /// A digest of the session's configuration: a different revision re-opens the session.
    pub revision: String,
    /// The broker stream `GET /v1/sessions/{id}/stream` relays (`None`: none).
    pub stream: Option<StreamSpec>,
}

impl std::fmt::Debug for SessionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEntry")
            .field("id", &self.spec.id)
            .field("api", &self.api.name())
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// Why a source could not say which sessions to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {detail}")]
pub struct SourceError {
    /// The source (a file path).
    pub origin: String,
    /// What went wrong (located when the source can).
    pub detail: String,
}

/// Says which sessions to serve; read at start and on every reload (`POST /v1/reload`, SIGHUP).
pub trait SessionSource: Send + Sync + 'static {
    /// What the source is, for logs and errors (`/etc/warden/warden.toml`).
    fn describe(&self) -> String;

    /// Every session the configuration wants now.
    fn load(&self) -> BoxFuture<'_, Result<Vec<SessionEntry>, SourceError>>;
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Sessions opened.
    pub added: Vec<String>,
    /// Sessions closed and opened again with their new configuration.
    pub changed: Vec<String>,
    /// Sessions closed.
    pub removed: Vec<String>,
    /// Sessions left as they were.
    pub unchanged: Vec<String>,
    /// Sessions that could not be opened or closed, with why.
    pub failed: Vec<ReloadFailure>,
}

/// A session a reload could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadFailure {
    /// The session.
    pub session: String,
    /// Why.
    pub detail: String,
}

/// Applies `entries` (a source's list) to `registry` and `warden`: opens, re-opens and closes sessions.
pub async fn apply(warden: &Warden, registry: &Registry, entries: Vec<SessionEntry>) -> ReloadReport {
    let mut report = ReloadReport::default();
    let wanted: BTreeSet<SessionId> = entries.iter().map(|e| e.spec.id.clone()).collect();
    for served in registry.all() {
        if served.origin == Origin::Source && !wanted.contains(served.id()) {
            let id = served.id().clone();
            registry.remove(&id);
            match warden.close(&id).await {
                Ok(()) => report.removed.push(id.to_string()),
                Err(error) => report.failed.push(ReloadFailure { session: id.to_string(), detail: error.to_string() }),
            }
        }
    }
    let mut seen = BTreeSet::new();
    for entry in entries {
        let id = entry.spec.id.clone();
        if !seen.insert(id.clone()) {
            let detail = "listed twice; the second entry was ignored".to_owned();
            report.failed.push(ReloadFailure { session: id.to_string(), detail });
            continue;
        }
        let current = registry.get(&id);
        match current {
            Some(served) if served.origin == Origin::Direct => {
                let detail = "served by the embedding program; the source's entry was ignored".to_owned();
                report.failed.push(ReloadFailure { session: id.to_string(), detail });
            }
            Some(served) if served.revision == entry.revision => report.unchanged.push(id.to_string()),
            Some(_) => {
                registry.remove(&id);
                let _ = warden.close(&id).await;
                match open(warden, registry, entry).await {
                    Ok(()) => report.changed.push(id.to_string()),
                    Err(detail) => report.failed.push(ReloadFailure { session: id.to_string(), detail }),
                }
            }
            None => match open(warden, registry, entry).await {
                Ok(()) => report.added.push(id.to_string()),
                Err(detail) => report.failed.push(ReloadFailure { session: id.to_string(), detail }),
            },
        }
    }
    report
}

async fn open(warden: &Warden, registry: &Registry, entry: SessionEntry) -> Result<(), String> {
    let handle = warden.open(entry.spec).await.map_err(|e| e.to_string())?;
    let mut served = ServedSession::new(handle, entry.api);
    served.base_url = entry.base_url;
    served.login_url = entry.login_url;
    served.revision = entry.revision;
    served.origin = Origin::Source;
    served.stream = entry.stream;
    registry.insert(served);
    Ok(())
}
