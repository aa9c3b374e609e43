//! Logs: a full session cycle at trace level shows its state changes, logins, refreshes and failures,
//! inside a span that names the session — and none of its secrets.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{SessionSpec, Warden};
use warden_engine::{BrokerError, Capabilities, Credentials, ErrorClass, Idempotency, Preset, SessionId};

/// Collects everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_cycle_is_logged_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let pair = Reply::grant_with_refresh(Duration::from_secs(20 * 60), Duration::from_secs(3600));
    let broker = Arc::new(
        ScriptedBroker::new("saxo")
            .with_capabilities(Capabilities { refresh: true, keepalive: false })
            .login_fallback(pair.clone())
            .refresh_fallback(pair),
    );
    broker.push_refreshes([Reply::error(503, "token endpoint down")]);
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.refresh_buffer = Some(Duration::from_secs(30));
    let credentials = Credentials::new().with("user", "trader").with("password", "hunter2-password");
    let spec = SessionSpec::new(SessionId::new("saxo-main").unwrap(), broker.clone())
        .with_policy(policy)
        .with_credentials(credentials);
    let session = warden.open(spec).await.unwrap();
    session.token().await.unwrap();
    // The refresh at 19m30s fails once, then succeeds; a rejection later forces a login.
    tokio::time::sleep(Duration::from_secs(25 * 60)).await;
    let lease = session.token().await.unwrap();
    let _ = session
        .execute(Idempotency::Idempotent, |_| std::future::ready(Err::<(), _>(BrokerError::http(401, "expired"))))
        .await;
    session.report_rejection(lease.generation, ErrorClass::AuthExpired);
    tokio::time::sleep(Duration::from_secs(5)).await;
    session.logout().await.unwrap();
    warden.shutdown(false).await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for wanted in [
        "login started",
        "moved from",
        "installed grant",
        "the refresh failed",
        "revoked grant",
        "session{id=saxo-main}",
    ] {
        assert!(text.contains(wanted), "the logs lack `{wanted}`:\n{text}");
    }
    assert!(text.lines().any(|l| l.contains("WARN") && l.contains("the refresh failed")), "{text}");
    for secret in ["hunter2-password", "saxo-tok-", "saxo-ref-"] {
        assert!(!text.contains(secret), "a secret (`{secret}`) reached the logs:\n{text}");
    }
}
