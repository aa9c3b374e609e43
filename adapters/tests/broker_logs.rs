//! A full cycle of every adapter against its scripted server under a trace-level log capture: the logs
//! must name every broker and hold none of the secrets used. Alone in its test binary: tracing decides
//! once per call site whether anything listens, and a test running beside it on another thread could
//! settle that for a call site before this test's subscriber exists, losing its lines.

mod common;
#[path = "common/cycles.rs"]
mod cycles;

use std::sync::{Arc, Mutex};

use cycles::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn trace_logs_of_full_cycles_hold_no_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut secrets = Vec::new();
    secrets.extend(saxo_cycle().await);
    secrets.extend(ibkr_cycle().await);
    secrets.extend(kotak_cycle().await);
    secrets.extend(kite_cycle().await);
    secrets.extend(oauth2_cycle().await);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for broker in ["saxo", "ibkr", "kotak", "kite", "oauth2"] {
        assert!(logs.contains(&format!("broker=\"{broker}\"")), "no log line from {broker}:\n{logs}");
    }
    assert!(logs.contains("logged in"), "{logs}");
    assert_no_secret(&logs, &secrets);
}
