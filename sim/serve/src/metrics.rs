//! `GET /metrics`: the Prometheus text exposition.
//!
//! Two parts, each from one source of truth:
//!
//! - per session, rendered at scrape time from the same [`SessionView`]s the status API shows (so the two
//!   always agree): `warden_session_state{session,state}` (1 for the current state, 0 for the others),
//!   `warden_session_generation`, `warden_session_logins_total`, `warden_session_refreshes_total`,
//!   `warden_session_keepalives_total`, `warden_session_failures_total{call,class}`,
//!   `warden_session_expires_in_seconds` (only while a token is published), `warden_session_waiters`
//!   (proxied calls waiting for a token or the request limit) and `warden_session_ready`;
//! - the proxy's, recorded as calls finish through the `metrics` facade into a local
//!   `metrics-exporter-prometheus` recorder: `warden_proxy_requests_total{session,status}` and the
//!   histogram `warden_proxy_request_duration_seconds{session}`.
//!
//! [`SessionCounters`] holds what the service itself counts per session (failures by class from the
//! event stream, proxied calls waiting and in flight); it survives a reload of the session.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use warden_engine::{SessionId, StateKind};

use crate::view::SessionView;

/// The latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// How often the recorder folds recorded values into its histograms (it buffers them until then).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What the service counts for one session.
#[derive(Debug, Default)]
pub struct SessionCounters {
    failures: Mutex<BTreeMap<String, u64>>,
    waiting: AtomicU64,
    in_flight: AtomicU64,
}

impl SessionCounters {
    /// Counts a failed call (`login`, `refresh`, `keep-alive`) of `class`.
    pub fn failed(&self, call: &str, class: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *failures.entry(format!("{call}:{class}")).or_default() += 1;
    }

    /// Failures so far, by `call:class`.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Proxied calls waiting for a token or the request limit.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Proxied calls in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a proxied call started; the guard marks it done, and its `waited` ends its wait.
    pub fn start_call(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        CallGuard { counters: self.clone(), waiting: std::sync::atomic::AtomicBool::new(true) }
    }
}

/// A proxied call in flight (see [`SessionCounters::start_call`]).
#[derive(Debug)]
pub struct CallGuard {
    counters: Arc<SessionCounters>,
    waiting: std::sync::atomic::AtomicBool,
}

impl CallGuard {
    /// The call stopped waiting (it reached the broker); later calls change nothing.
    pub fn waited(&self) {
        if self.waiting.swap(false, Ordering::Relaxed) {
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.waited();
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The metrics: the proxy's recorder and the per-session counters.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sessions: Mutex<HashMap<SessionId, Arc<SessionCounters>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A recorder with the latency buckets set.
    pub fn new() -> Metrics {
        let matcher = Matcher::Full("warden_proxy_request_duration_seconds".into());
        let builder = match PrometheusBuilder::new().set_buckets_for_metric(matcher, &LATENCY_BUCKETS) {
            Ok(with_buckets) => with_buckets,
            Err(error) => {
                tracing::warn!(%error, "latency buckets refused; the proxy latency is a summary");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Metrics { recorder, handle, sessions: Mutex::new(HashMap::new()) }
    }

    /// The counters of session `id` (made on first use).
    pub fn counters(&self, id: &SessionId) -> Arc<SessionCounters> {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.entry(id.clone()).or_default().clone()
    }

    /// Records one proxied call: its session, the status answered and how long it took.
    pub fn record_proxy(&self, session: &str, status: u16, elapsed: Duration) {
        metrics::with_local_recorder(&self.recorder, || {
            let session = session.to_owned();
            metrics::counter!("warden_proxy_requests_total", "session" => session.clone(), "status" => status.to_string())
                .increment(1);
            metrics::histogram!("warden_proxy_request_duration_seconds", "session" => session)
                .record(elapsed.as_secs_f64());
        });
    }

    /// Folds buffered values into the histograms (call every [`UPKEEP_INTERVAL`]).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exposition: the sessions in `views`, then the proxy's metrics.
    pub fn render(&self, views: &[SessionView]) -> String {
        let mut out = String::new();
        render_sessions(&mut out, views);
        out.push_str(&self.handle.render());
        out
    }
}

/// A label value, escaped for the text format.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A per-session family with one value: name, type, help, and how to read the value.
type SimpleFamily = (&'static str, &'static str, &'static str, fn(&SessionView) -> u64);

fn render_sessions(out: &mut String, views: &[SessionView]) {
    family(out, "warden_session_state", "gauge", "1 for the session's current state, 0 for the others.");
    for view in views {
        for state in StateKind::ALL {
            let on = u8::from(state == view.state);
            let _ = writeln!(out, "warden_session_state{{session=\"{}\",state=\"{}\"}} {on}", label(&view.id), state);
        }
    }
    let simple: [SimpleFamily; 6] = [
        ("warden_session_generation", "gauge", "The session's newest grant generation.", |v| v.generation),
        ("warden_session_logins_total", "counter", "Login calls started.", |v| v.stats.logins),
        ("warden_session_refreshes_total", "counter", "Refresh calls started.", |v| v.stats.refreshes),
        ("warden_session_keepalives_total", "counter", "Keep-alive calls started.", |v| v.stats.keepalives),
        ("warden_session_waiters", "gauge", "Proxied calls waiting for a token or the request limit.", |v| {
            v.proxy.waiting
        }),
        ("warden_session_ready", "gauge", "1 when /readyz counts the session as ready.", |v| u64::from(v.ready.ready)),
    ];
    for (name, kind, help, value) in simple {
        family(out, name, kind, help);
        for view in views {
            let _ = writeln!(out, "{name}{{session=\"{}\"}} {}", label(&view.id), value(view));
        }
    }
    family(
        out,
        "warden_session_failures_total",
        "counter",
        "Failed logins, refreshes and keep-alives since the service started, by call and class.",
    );
    for view in views {
        for (key, count) in &view.failures {
            let (call, class) = key.split_once(':').unwrap_or((key.as_str(), "unknown"));
            let _ = writeln!(
                out,
                "warden_session_failures_total{{session=\"{}\",call=\"{}\",class=\"{}\"}} {count}",
                label(&view.id),
                label(call),
                label(class)
            );
        }
    }
    family(out, "warden_session_expires_in_seconds", "gauge", "Seconds until the published token expires.");
    for view in views {
        if let Some(ms) = view.token.as_ref().and_then(|t| t.expires_in_ms) {
            let _ = writeln!(
                out,
                "warden_session_expires_in_seconds{{session=\"{}\"}} {:.3}",
                label(&view.id),
                ms as f64 / 1e3
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_calls_are_counted_and_timed() {
        let metrics = Metrics::new();
        metrics.record_proxy("a", 200, Duration::from_micros(300));
        metrics.record_proxy("a", 502, Duration::from_millis(3));
        metrics.upkeep();
        let text = metrics.render(&[]);
        assert!(text.contains("warden_proxy_requests_total{session=\"a\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("warden_proxy_request_duration_seconds_bucket{session=\"a\",le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("warden_proxy_request_duration_seconds_count{session=\"a\"} 2"), "{text}");
    }

    #[test]
    fn call_guards_count_waiting_and_in_flight() {
        let counters = Arc::new(SessionCounters::default());
        let guard = counters.start_call();
        assert_eq!((counters.waiting(), counters.in_flight()), (1, 1));
        guard.waited();
        guard.waited();
        assert_eq!((counters.waiting(), counters.in_flight()), (0, 1));
        drop(guard);
        assert_eq!((counters.waiting(), counters.in_flight()), (0, 0));
        counters.failed("login", "transient");
        counters.failed("login", "transient");
        assert_eq!(counters.failures().get("login:transient"), Some(&2));
    }
}
