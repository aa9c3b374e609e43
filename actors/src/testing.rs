//! A scripted fake broker for tests and examples.
//!
//! Each call pops the next scripted [`Reply`] for its kind (login, refresh, keep-alive); when a script
//! runs out, the kind's fallback answers. Calls are counted. Grants get unique tokens
//! (`<name>-tok-<n>`), are issued at the call's `now`, and last as long as the reply says. A reply can
//! take time (tokio time, so paused clocks apply) and can panic, to test supervision.
//!
//! ```
//! use std::time::Duration;
//! use warden_actors::testing::{Reply, ScriptedBroker};
//!
//! let broker = ScriptedBroker::new("fake")
//!     .with_latency(Duration::from_millis(200))
//!     .script_logins([Reply::error(401, "bad password"), Reply::grant(Duration::from_secs(3600))]);
//! assert_eq!(broker.logins(), 0);
//! ```

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, Grant, KeepaliveStatus, LoginRequest, Secret, UnixMs,
};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A grant whose access token lives `lifetime` (`None`: no expiry), with a refresh token living
    /// `refresh` if set.
    Grant {
        /// Access-token lifetime.
        lifetime: Option<Duration>,
        /// Refresh-token lifetime, if the grant has one.
        refresh: Option<Duration>,
    },
    /// An error.
    Error(BrokerError),
    /// A keep-alive status.
    Keepalive(KeepaliveStatus),
    /// A panic inside the adapter (an adapter bug).
    Panic(&'static str),
    /// Never answers (the runtime's `auth_timeout` must cut it off).
    Hang,
}

impl Reply {
    /// A grant with an access token of `lifetime` and no refresh token.
    pub fn grant(lifetime: Duration) -> Reply {
        Reply::Grant { lifetime: Some(lifetime), refresh: None }
    }

    /// A grant with an access token of `lifetime` and a refresh token of `refresh`.
    pub fn grant_with_refresh(lifetime: Duration, refresh: Duration) -> Reply {
        Reply::Grant { lifetime: Some(lifetime), refresh: Some(refresh) }
    }

    /// An answered HTTP error.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::Error(BrokerError::http(status, message))
    }
}

#[derive(Debug)]
struct Scripts {
    logins: VecDeque<Reply>,
    refreshes: VecDeque<Reply>,
    keepalives: VecDeque<Reply>,
    login_fallback: Reply,
    refresh_fallback: Reply,
    keepalive_fallback: Reply,
}

/// A broker that answers from scripts. See the module documentation.
#[derive(Debug)]
pub struct ScriptedBroker {
    name: String,
    capabilities: Capabilities,
    token_lifetime: Option<Duration>,
    latency: Duration,
    scripts: Mutex<Scripts>,
    logins: AtomicU64,
    refreshes: AtomicU64,
    keepalives: AtomicU64,
    logouts: AtomicU64,
    tokens: AtomicU64,
}

impl ScriptedBroker {
    /// A broker named `name` that grants one-hour tokens to every login, refreshes nothing and needs no
    /// keep-alive, instantly.
    pub fn new(name: &str) -> ScriptedBroker {
        ScriptedBroker {
            name: name.to_owned(),
            capabilities: Capabilities::default(),
            token_lifetime: None,
            latency: Duration::ZERO,
            scripts: Mutex::new(Scripts {
                logins: VecDeque::new(),
                refreshes: VecDeque::new(),
                keepalives: VecDeque::new(),
                login_fallback: Reply::grant(Duration::from_secs(3600)),
                refresh_fallback: Reply::grant(Duration::from_secs(3600)),
                keepalive_fallback: Reply::Keepalive(KeepaliveStatus::Alive),
            }),
            logins: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            logouts: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
        }
    }

    /// Sets what the broker claims to support.
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> ScriptedBroker {
        self.capabilities = capabilities;
        self
    }

    /// Declares the lifetime of the tokens it issues ([`Broker::token_lifetime`]).
    #[must_use]
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> ScriptedBroker {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// Every call takes this long (tokio time).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> ScriptedBroker {
        self.latency = latency;
        self
    }

    fn edit(&self, f: impl FnOnce(&mut Scripts)) {
        if let Ok(mut scripts) = self.scripts.lock() {
            f(&mut scripts);
        }
    }

    /// Queues answers for the next logins.
    #[must_use]
    pub fn script_logins(self, replies: impl IntoIterator<Item = Reply>) -> ScriptedBroker {
        self.push_logins(replies);
        self
    }

    /// Queues answers for the next logins (on a shared broker).
    pub fn push_logins(&self, replies: impl IntoIterator<Item = Reply>) {
        self.edit(|s| s.logins.extend(replies));
    }

    /// Queues answers for the next refreshes.
    pub fn push_refreshes(&self, replies: impl IntoIterator<Item = Reply>) {
        self.edit(|s| s.refreshes.extend(replies));
    }

    /// Drops the refresh answers still queued (the fallback answers from now on).
    pub fn clear_refreshes(&self) {
        self.edit(|s| s.refreshes.clear());
    }

    /// Queues answers for the next keep-alives.
    pub fn push_keepalives(&self, replies: impl IntoIterator<Item = Reply>) {
        self.edit(|s| s.keepalives.extend(replies));
    }

    /// What logins answer once their script is empty.
    #[must_use]
    pub fn login_fallback(self, reply: Reply) -> ScriptedBroker {
        self.edit(|s| s.login_fallback = reply);
        self
    }

    /// What refreshes answer once their script is empty.
    #[must_use]
    pub fn refresh_fallback(self, reply: Reply) -> ScriptedBroker {
        self.edit(|s| s.refresh_fallback = reply);
        self
    }

    /// What keep-alives answer once their script is empty.
    #[must_use]
    pub fn keepalive_fallback(self, reply: Reply) -> ScriptedBroker {
        self.edit(|s| s.keepalive_fallback = reply);
        self
    }

    /// Grants handed out so far (logins and refreshes that answered with one).
    pub fn grants_issued(&self) -> u64 {
        self.tokens.load(Ordering::SeqCst)
    }

    /// Login calls so far.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::SeqCst)
    }

    /// Refresh calls so far.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// Keep-alive calls so far.
    pub fn keepalives(&self) -> u64 {
        self.keepalives.load(Ordering::SeqCst)
    }

    /// Logout calls so far.
    pub fn logouts(&self) -> u64 {
        self.logouts.load(Ordering::SeqCst)
    }

    fn next(&self, pick: impl FnOnce(&mut Scripts) -> Reply) -> Reply {
        self.scripts.lock().map(|mut s| pick(&mut s)).unwrap_or(Reply::Error(BrokerError::not_sent("script poisoned")))
    }

    fn grant(&self, now: UnixMs, lifetime: Option<Duration>, refresh: Option<Duration>) -> Grant {
        let n = self.tokens.fetch_add(1, Ordering::SeqCst) + 1;
        let mut grant = Grant::new(Secret::new(format!("{}-tok-{n}", self.name)), now);
        grant.expires_at = lifetime.map(|l| now.saturating_add(l));
        if let Some(refresh) = refresh {
            grant = grant.with_refresh(Secret::new(format!("{}-ref-{n}", self.name)), Some(refresh));
        }
        grant
    }

    async fn answer_grant(&self, now: UnixMs, reply: Reply) -> Result<Grant, BrokerError> {
        self.wait(&reply).await;
        match reply {
            Reply::Grant { lifetime, refresh } => Ok(self.grant(now, lifetime, refresh)),
            Reply::Error(error) => Err(error),
            Reply::Keepalive(_) => Err(BrokerError::http(500, "scripted a keep-alive status for a grant call")),
            Reply::Panic(why) => panic!("{why}"),
            Reply::Hang => Err(BrokerError::no_answer("hung")),
        }
    }

    async fn wait(&self, reply: &Reply) {
        if matches!(reply, Reply::Hang) {
            tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
        } else if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

impl Broker for ScriptedBroker {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn token_lifetime(&self) -> Option<Duration> {
        self.token_lifetime
    }

    fn login<'a>(&'a self, now: UnixMs, _request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        let reply = self.next(|s| s.logins.pop_front().unwrap_or_else(|| s.login_fallback.clone()));
        Box::pin(self.answer_grant(now, reply))
    }

    fn refresh<'a>(&'a self, now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let reply = self.next(|s| s.refreshes.pop_front().unwrap_or_else(|| s.refresh_fallback.clone()));
        Box::pin(self.answer_grant(now, reply))
    }

    fn keepalive<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<KeepaliveStatus, BrokerError>> {
        self.keepalives.fetch_add(1, Ordering::SeqCst);
        let reply = self.next(|s| s.keepalives.pop_front().unwrap_or_else(|| s.keepalive_fallback.clone()));
        Box::pin(async move {
            self.wait(&reply).await;
            match reply {
                Reply::Keepalive(status) => Ok(status),
                Reply::Error(error) => Err(error),
                Reply::Panic(why) => panic!("{why}"),
                Reply::Grant { .. } => Ok(KeepaliveStatus::Alive),
                Reply::Hang => Err(BrokerError::no_answer("hung")),
            }
        })
    }

    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.logouts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}
