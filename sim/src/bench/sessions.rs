//! Many sessions on the sled store at default durability, each session count in a child process of its
//! own (so that one count's memory does not pollute the next), then a crash and a restart.
//!
//! A child opens N sessions of a fake broker with 20-minute tokens and a keep-alive (60 s in the full run),
//! concurrently, and waits until every one serves a token: that is the open time. Resident memory
//! (`VmRSS`) before and after gives the memory per session. Then it runs for a while in real time (three
//! minutes in the full run) while the broker notes, for every keep-alive, how late it came: the time of
//! the call minus (the broker's previous answer to that session + the interval). Then `Warden::shutdown`.
//!
//! The crash step: a child opens N sessions and, once every one has served a token, says so; the parent
//! kills it with SIGKILL at once. A second child opens the same sessions on the same store: every grant
//! is still valid, so it must serve them all without a single login.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_actors::{Clock, SessionHandle, SessionSpec, Warden};
use warden_engine::{
    BoxFuture, Broker, BrokerError, Capabilities, Grant, KeepaliveStatus, LoginRequest, Policy, Preset, SessionId,
    UnixMs,
};

use super::child::{CHILD_PREFIX, ChildSpec};
use super::stats::{available_kib, ms, percentile};
use super::{BenchError, Figures, progress, setup};

/// The tokens' lifetime.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(20 * 60);

/// How many opens run at once.
const OPENERS: usize = 4;

/// A broker that answers at once, issues 20-minute tokens named after the order of their logins, and
/// notes how late each keep-alive comes.
pub(crate) struct LagBroker {
    clock: Clock,
    base: tokio::time::Instant,
    interval_us: u64,
    /// The broker's last answer to each login (indexed by the login's number), in µs since `base`.
    last_us: Vec<AtomicU64>,
    next_login: AtomicU64,
    lags_us: Mutex<Vec<u32>>,
    keepalives: AtomicU64,
}

impl LagBroker {
    pub(crate) fn new(clock: Clock, sessions: usize, interval: Duration) -> LagBroker {
        LagBroker {
            base: clock.monotonic_now(),
            clock,
            interval_us: u64::try_from(interval.as_micros()).unwrap_or(u64::MAX),
            last_us: (0..sessions + 1).map(|_| AtomicU64::new(0)).collect(),
            next_login: AtomicU64::new(0),
            lags_us: Mutex::new(Vec::new()),
            keepalives: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.clock.monotonic_now().saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn logins(&self) -> u64 {
        self.next_login.load(Ordering::SeqCst)
    }

    pub(crate) fn keepalives(&self) -> u64 {
        self.keepalives.load(Ordering::SeqCst)
    }

    /// The keep-alive lags seen so far, sorted, in µs.
    pub(crate) fn lags_us(&self) -> Vec<u32> {
        let mut lags = self.lags_us.lock().map(|l| l.clone()).unwrap_or_default();
        lags.sort_unstable();
        lags
    }
}

impl Broker for LagBroker {
    fn name(&self) -> &str {
        "lag"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { refresh: true, keepalive: true }
    }

    fn token_lifetime(&self) -> Option<Duration> {
        Some(TOKEN_LIFETIME)
    }

    fn login<'a>(&'a self, now: UnixMs, _request: LoginRequest<'a>) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let n = self.next_login.fetch_add(1, Ordering::SeqCst);
        if let Some(last) = self.last_us.get(n as usize) {
            last.store(self.now_us().max(1), Ordering::SeqCst);
        }
        let grant = Grant::new(format!("k{n}"), now)
            .expires_in(TOKEN_LIFETIME)
            .with_refresh(format!("r{n}"), Some(Duration::from_secs(3600)));
        Box::pin(async move { Ok(grant) })
    }

    fn refresh<'a>(&'a self, now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<Grant, BrokerError>> {
        let fresh = Grant::new(grant.access_token.expose().to_owned(), now).expires_in(TOKEN_LIFETIME);
        Box::pin(async move { Ok(fresh) })
    }

    fn keepalive<'a>(&'a self, _now: UnixMs, grant: &'a Grant) -> BoxFuture<'a, Result<KeepaliveStatus, BrokerError>> {
        self.keepalives.fetch_add(1, Ordering::Relaxed);
        let now = self.now_us();
        let login: Option<usize> = grant.access_token.expose().strip_prefix('k').and_then(|n| n.parse().ok());
        if let Some(last) = login.and_then(|n| self.last_us.get(n)) {
            let previous = last.swap(now.max(1), Ordering::SeqCst);
            if previous > 0 {
                let lag = now.saturating_sub(previous.saturating_add(self.interval_us));
                if let Ok(mut lags) = self.lags_us.lock() {
                    lags.push(u32::try_from(lag).unwrap_or(u32::MAX));
                }
            }
        }
        Box::pin(async { Ok(KeepaliveStatus::Alive) })
    }

    fn logout<'a>(&'a self, _now: UnixMs, _grant: &'a Grant) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The policy of the bench's sessions: warden's default (`hybrid`: eager, keep-alive, refresh ahead).
pub(crate) fn policy(keepalive: Duration) -> Policy {
    let mut policy = Policy::preset(Preset::Hybrid);
    policy.keepalive_interval = Some(keepalive);
    policy
}

/// Opens sessions `0..count` (`s0`, `s1`, …) with `OPENERS` opens at a time, in index order.
pub(crate) async fn open_all(
    warden: &Warden,
    broker: Arc<dyn Broker>,
    policy: Policy,
    count: usize,
) -> Result<Vec<SessionHandle>, BenchError> {
    let policy = Arc::new(policy);
    let mut openers = Vec::with_capacity(OPENERS);
    for opener in 0..OPENERS {
        let (warden, broker, policy) = (warden.clone(), broker.clone(), policy.clone());
        openers.push(tokio::spawn(async move {
            let mut opened = Vec::new();
            for i in (opener..count).step_by(OPENERS) {
                let id = SessionId::new(format!("s{i}")).map_err(setup)?;
                let spec = SessionSpec::new(id, broker.clone()).with_policy(Policy::clone(&policy));
                opened.push((i, warden.open(spec).await.map_err(setup)?));
            }
            Ok::<_, BenchError>(opened)
        }));
    }
    let mut handles: Vec<Option<SessionHandle>> = vec![None; count];
    for opener in openers {
        for (i, handle) in opener.await.map_err(setup)?? {
            handles[i] = Some(handle);
        }
    }
    Ok(handles.into_iter().flatten().collect())
}

/// Waits until every session serves a token; fails if one cannot.
pub(crate) async fn wait_for_tokens(handles: &[SessionHandle]) -> Result<(), BenchError> {
    for handle in handles {
        if let Err(error) = handle.token().await {
            return Err(BenchError::Broken(format!("session {} has no token: {error}", handle.id())));
        }
    }
    Ok(())
}

/// A session count of the sessions part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// 1,000 sessions.
    #[value(name = "1k")]
    OneThousand,
    /// 10,000 sessions.
    #[value(name = "10k")]
    TenThousand,
    /// 100,000 sessions.
    #[value(name = "100k")]
    HundredThousand,
    /// 1,000,000 sessions (only if it fits in memory).
    #[value(name = "1m")]
    OneMillion,
}

impl Size {
    /// The count and its JSON label.
    fn count_and_label(self) -> (usize, &'static str) {
        match self {
            Size::OneThousand => (1_000, "1k"),
            Size::TenThousand => (10_000, "10k"),
            Size::HundredThousand => (100_000, "100k"),
            Size::OneMillion => (1_000_000, "1m"),
        }
    }
}

/// What the sessions part runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// The short version (CI).
    pub(crate) quick: bool,
    /// The counts; empty: the default ones.
    pub(crate) sizes: Vec<Size>,
    /// How long keep-alives are watched at each count; `None`: the default.
    pub(crate) window: Option<Duration>,
}

/// The sizes measured, with their JSON labels.
fn sizes(options: &Options) -> Vec<(usize, &'static str)> {
    if !options.sizes.is_empty() {
        options.sizes.iter().map(|size| size.count_and_label()).collect()
    } else if options.quick {
        vec![(1_000, "1k"), (10_000, "10k")]
    } else {
        vec![(1_000, "1k"), (10_000, "10k"), (100_000, "100k"), (1_000_000, "1m")]
    }
}

pub(crate) fn run(figures: &mut Figures, options: &Options) -> Result<(), BenchError> {
    let quick = options.quick;
    let (window, keepalive) = if quick {
        (Duration::from_secs(10), Duration::from_secs(4))
    } else {
        (Duration::from_secs(180), Duration::from_secs(60))
    };
    let window = options.window.unwrap_or(window);
    figures.section(&format!(
        "sessions on sled (default durability), one child process each: open, memory, keep-alive lag over {} s \
         (interval {} s), shutdown",
        window.as_secs(),
        keepalive.as_secs()
    ));
    let mut kib_per_session: Option<f64> = None;
    for (count, label) in sizes(options) {
        // Run 1M only if the memory measured at 100k says it fits, with a quarter to spare.
        if count >= 1_000_000 {
            let needed = kib_per_session.map(|k| k * count as f64 * 1.25 + 2.0 * 1024.0 * 1024.0);
            if needed.is_none_or(|needed| needed > available_kib()) {
                progress(&format!("bench: {label} sessions skipped (not enough memory)"));
                for field in ["open_s", "rss_kib_per_session", "lag_ms_max", "lag_ms_p99", "shutdown_s"] {
                    figures.set(&format!("sessions_{label}_{field}"), None, "skipped: does not fit in memory");
                }
                continue;
            }
        }
        progress(&format!("bench: {label} sessions"));
        let spec = ChildSpec::Sessions { count, window, keepalive };
        let result = run_child(&spec)?;
        let get = |key: &str| result.get(key).and_then(serde_json::Value::as_f64);
        kib_per_session = get("rss_kib_per_session");
        figures.set(&format!("sessions_{label}_open_s"), get("open_s"), "open every session until all serve a token");
        figures.set(&format!("sessions_{label}_rss_kib_per_session"), kib_per_session, "resident memory per session");
        figures.set(&format!("sessions_{label}_lag_ms_max"), get("lag_ms_max"), "keep-alive lag, max");
        figures.set(&format!("sessions_{label}_lag_ms_p99"), get("lag_ms_p99"), "keep-alive lag, p99");
        figures.set(&format!("sessions_{label}_shutdown_s"), get("shutdown_s"), "Warden::shutdown");
        figures.set(&format!("sessions_{label}_keepalives"), get("keepalives"), "keep-alives in the window");
        figures.set(
            &format!("sessions_{label}_cpu_us_per_keepalive"),
            get("cpu_us_per_keepalive"),
            "CPU per keep-alive",
        );
    }
    crash_and_restart(figures, if quick { 1_000 } else { 100_000 })
}

/// Kills a child that has every session serving with SIGKILL, restarts on the same store, and counts
/// the logins of the restart (every grant is still valid: there must be none).
fn crash_and_restart(figures: &mut Figures, count: usize) -> Result<(), BenchError> {
    let dir = tempfile::tempdir().map_err(setup)?;
    let path = dir.path().join("warden.db");
    progress(&format!("bench: kill -9 with {count} sessions, then restart"));
    let spec = ChildSpec::Crash { count, path: path.clone() };
    let mut child = Command::new(std::env::current_exe().map_err(setup)?)
        .args(["bench", "--child", &spec.to_arg()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(setup)?;
    let stdout = child.stdout.take().ok_or_else(|| setup("no standard output from the child"))?;
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.starts_with(CHILD_PREFIX));
    // Kill at once: every grant was handed out, so every grant must already be on disk.
    child.kill().map_err(setup)?;
    let _ = child.wait();
    if !ready {
        return Err(BenchError::Child { spec: spec.to_arg(), detail: "it never had every session serving".into() });
    }
    let restart = run_child(&ChildSpec::Restart { count, path })?;
    let get = |key: &str| restart.get(key).and_then(serde_json::Value::as_f64);
    figures.section(&format!("crash: kill -9 with {count} sessions serving, then a restart on the same store"));
    figures.set("restart_after_kill_sessions", Some(count as f64), "sessions serving when the child was killed");
    figures.set("restart_after_kill_logins", get("logins"), "logins after the restart (must be 0)");
    figures.set("restart_after_kill_reused", get("reused"), "sessions serving their grant from before the kill");
    figures.set("restart_after_kill_open_s", get("open_s"), "reopen every session until all serve a token");
    match get("logins") {
        Some(0.0) => Ok(()),
        logins => Err(BenchError::Broken(format!(
            "after kill -9 with every session serving, the restart logged in {logins:?} times (a grant handed out \
             was not on disk)"
        ))),
    }
}

/// Runs a child and returns the JSON object it printed.
fn run_child(spec: &ChildSpec) -> Result<serde_json::Map<String, serde_json::Value>, BenchError> {
    let output = Command::new(std::env::current_exe().map_err(setup)?)
        .args(["bench", "--child", &spec.to_arg()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(setup)?;
    let child_error = |detail: String| BenchError::Child { spec: spec.to_arg(), detail };
    if !output.status.success() {
        return Err(child_error(format!("exited with {}", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(CHILD_PREFIX))
        .ok_or_else(|| child_error("printed no figures".to_owned()))?;
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(child_error(format!("printed figures that do not parse: {line}"))),
    }
}

/// Keep-alive lag statistics in ms: (max, p99).
pub(crate) fn lag_ms(lags_us: &[u32]) -> (f64, f64) {
    let max = lags_us.last().copied().unwrap_or(0);
    let p99 = percentile(lags_us, 99.0);
    (ms(Duration::from_micros(u64::from(max))), ms(Duration::from_micros(u64::from(p99))))
}
