//! The sessions the service serves: for each, its `SessionHandle`, its adapter's [`BrokerApi`] and
//! where proxied calls go.
//!
//! Readers (every proxied call, every status request) load the whole map lock-free (arc-swap); a reload
//! replaces it under a lock, so a call in flight keeps the session it started with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use reqwest::Url;
use warden_actors::SessionHandle;
use warden_actors::stream::StreamSpec;
use warden_adapters::broker::BrokerApi;
use warden_engine::SessionId;

/// Who put a session in the registry: reloads only touch those their source put there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Handed to the service by the program that embeds it.
    Direct,
    /// Opened from a [`SessionSource`](crate::SessionSource).
    Source,
}

/// One served session.
#[derive(Clone)]
pub struct ServedSession {
    /// The session.
    pub handle: SessionHandle,
    /// Its adapter's API (the proxy's way to the broker).
    pub api: Arc<dyn BrokerApi>,
    /// The API root proxied calls go to (`None`: the adapter's default, or the grant's).
    pub base_url: Option<Url>,
    /// Where a person signs in when the broker's login needs a browser.
    pub login_url: Option<String>,
    /// The configuration's revision (see [`SessionEntry`](crate::SessionEntry)).
    pub revision: String,
    /// Who put it here.
    pub origin: Origin,
    /// The broker stream `GET /v1/sessions/{id}/stream` relays (`None`: the route answers 404 `no_stream`).
    pub stream: Option<StreamSpec>,
}

impl std::fmt::Debug for ServedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedSession")
            .field("id", self.handle.id())
            .field("api", &self.api.name())
            .field("base_url", &self.base_url.as_ref().map(Url::as_str))
            .field("origin", &self.origin)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl ServedSession {
    /// A session handed in directly: its handle and its adapter's API.
    pub fn new(handle: SessionHandle, api: Arc<dyn BrokerApi>) -> ServedSession {
        ServedSession {
            handle,
            api,
            base_url: None,
            login_url: None,
            revision: String::new(),
            origin: Origin::Direct,
            stream: None,
        }
    }

    /// Sets the broker stream relayed by `GET /v1/sessions/{id}/stream`: a protocol of
    /// `warden_actors::stream::brokers` for the broker's streaming URL (and, for Saxo, its reauthorizer).
    #[must_use]
    pub fn with_stream(mut self, stream: StreamSpec) -> ServedSession {
        self.stream = Some(stream);
        self
    }

    /// Sets the API root proxied calls go to.
    #[must_use]
    pub fn with_base_url(mut self, base_url: Url) -> ServedSession {
        self.base_url = Some(base_url);
        self
    }

    /// Sets where a person signs in for a browser login.
    #[must_use]
    pub fn with_login_url(mut self, login_url: impl Into<String>) -> ServedSession {
        self.login_url = Some(login_url.into());
        self
    }

    /// The session's id.
    pub fn id(&self) -> &SessionId {
        self.handle.id()
    }
}

type Map = BTreeMap<SessionId, Arc<ServedSession>>;

/// The served sessions, by id.
#[derive(Default)]
pub struct Registry {
    current: ArcSwap<Map>,
    write: Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("sessions", &self.current.load().len()).finish()
    }
}

impl Registry {
    /// A session, by id.
    pub fn get(&self, id: &SessionId) -> Option<Arc<ServedSession>> {
        self.current.load().get(id).cloned()
    }

    /// A session, by its id as text.
    pub fn find(&self, id: &str) -> Option<Arc<ServedSession>> {
        let id = SessionId::new(id).ok()?;
        self.get(&id)
    }

    /// Every session, in id order.
    pub fn all(&self) -> Vec<Arc<ServedSession>> {
        self.current.load().values().cloned().collect()
    }

    /// How many sessions are served.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether no session is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or replaces) a session.
    pub fn insert(&self, session: ServedSession) {
        self.edit(|map| {
            map.insert(session.id().clone(), Arc::new(session));
        });
    }

    /// Removes a session.
    pub fn remove(&self, id: &SessionId) -> Option<Arc<ServedSession>> {
        let mut removed = None;
        self.edit(|map| removed = map.remove(id));
        removed
    }

    fn edit(&self, change: impl FnOnce(&mut Map)) {
        let _writer = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut map = Map::clone(&self.current.load());
        change(&mut map);
        self.current.store(Arc::new(map));
    }
}
