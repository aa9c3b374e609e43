//! The bench's child processes: one session count each, and the two halves of the crash step.
//!
//! The parent runs `warden-sim bench --child "<spec>"` and reads one line starting with
//! [`CHILD_PREFIX`] followed by a JSON object from the child's standard output. A crash child prints that
//! line when every session serves a token, then waits to be killed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use warden_actors::{Clock, Warden};

use super::sessions::{LagBroker, lag_ms, open_all, policy, wait_for_tokens};
use super::stats::{Stopwatch, rss_kib};
use super::{BenchError, runtime, setup};

/// What starts a child's figures line.
pub(crate) const CHILD_PREFIX: &str = "BENCH-CHILD ";

/// What a child measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChildSpec {
    /// `count` sessions in a fresh store: open, memory, keep-alive lag over `window`, shutdown.
    Sessions { count: usize, window: Duration, keepalive: Duration },
    /// `count` sessions at `path`; says when every one serves, then waits to be killed.
    Crash { count: usize, path: PathBuf },
    /// `count` sessions at `path` after a crash: logins and grants reused.
    Restart { count: usize, path: PathBuf },
}

impl ChildSpec {
    /// The `--child` argument.
    pub(crate) fn to_arg(&self) -> String {
        match self {
            ChildSpec::Sessions { count, window, keepalive } => {
                format!("sessions {count} {} {}", window.as_millis(), keepalive.as_millis())
            }
            ChildSpec::Crash { count, path } => format!("crash {count} {}", path.display()),
            ChildSpec::Restart { count, path } => format!("restart {count} {}", path.display()),
        }
    }

    /// Reads a `--child` argument.
    pub(crate) fn parse(arg: &str) -> Option<ChildSpec> {
        let mut words = arg.splitn(3, ' ');
        let kind = words.next()?;
        let count: usize = words.next()?.parse().ok()?;
        let rest = words.next()?;
        match kind {
            "sessions" => {
                let (window, keepalive) = rest.split_once(' ')?;
                let window = Duration::from_millis(window.parse().ok()?);
                let keepalive = Duration::from_millis(keepalive.parse().ok()?);
                Some(ChildSpec::Sessions { count, window, keepalive })
            }
            "crash" => Some(ChildSpec::Crash { count, path: PathBuf::from(rest) }),
            "restart" => Some(ChildSpec::Restart { count, path: PathBuf::from(rest) }),
            _ => None,
        }
    }
}

/// Runs one child measurement and prints its line.
pub(crate) fn run_child(arg: &str) -> ExitCode {
    let Some(spec) = ChildSpec::parse(arg) else {
        eprintln!("error: bench child: cannot read `{arg}`");
        return ExitCode::from(2);
    };
    let result = match &spec {
        ChildSpec::Sessions { count, window, keepalive } => sessions(*count, *window, *keepalive),
        ChildSpec::Crash { count, path } => crash(*count, path),
        ChildSpec::Restart { count, path } => restart(*count, path),
    };
    match result {
        Ok(figures) => {
            say(&figures.to_string());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: bench child `{arg}`: {error}");
            ExitCode::from(2)
        }
    }
}

fn say(json: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{CHILD_PREFIX}{json}");
    let _ = out.flush();
}

/// The CPU time this process has used (user + system), from `/proc/self/stat` (in 1/100 s).
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = text.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn sessions(count: usize, window: Duration, keepalive: Duration) -> Result<serde_json::Value, BenchError> {
    let dir = tempfile::tempdir().map_err(setup)?;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let clock = Clock::system();
        let warden = Warden::builder().store_path(dir.path().join("warden.db")).clock(clock.clone()).build().await?;
        let broker = Arc::new(LagBroker::new(clock.clone(), count, keepalive));
        let before = rss_kib();
        let watch = Stopwatch::start(&clock);
        let handles = open_all(&warden, broker.clone(), policy(keepalive), count).await?;
        wait_for_tokens(&handles).await?;
        let open_s = watch.elapsed().as_secs_f64();
        let after = rss_kib();
        let logins = broker.logins();

        let cpu_before = cpu_time();
        let keepalives_before = broker.keepalives();
        tokio::time::sleep(window).await;
        let cpu = cpu_time().saturating_sub(cpu_before);
        let keepalives = broker.keepalives() - keepalives_before;
        let (lag_max, lag_p99) = lag_ms(&broker.lags_us());

        let watch = Stopwatch::start(&clock);
        warden.shutdown(false).await;
        let shutdown_s = watch.elapsed().as_secs_f64();
        drop(handles);
        Ok(serde_json::json!({
            "sessions": count,
            "open_s": open_s,
            "rss_kib_per_session": (after - before) / count as f64,
            "rss_kib_before": before,
            "rss_kib_after": after,
            "logins": logins,
            "keepalives": keepalives,
            "lag_ms_max": lag_max,
            "lag_ms_p99": lag_p99,
            "cpu_us_per_keepalive": if keepalives > 0 { cpu.as_secs_f64() * 1e6 / keepalives as f64 } else { 0.0 },
            "shutdown_s": shutdown_s,
        }))
    })
}

fn crash(count: usize, path: &std::path::Path) -> Result<serde_json::Value, BenchError> {
    let runtime = runtime()?;
    runtime.block_on(async move {
        let clock = Clock::system();
        let warden = Warden::builder().store_path(path).clock(clock.clone()).build().await?;
        let keepalive = Duration::from_secs(60);
        let broker = Arc::new(LagBroker::new(clock.clone(), count, keepalive));
        let handles = open_all(&warden, broker.clone(), policy(keepalive), count).await?;
        wait_for_tokens(&handles).await?;
        say(&serde_json::json!({ "serving": count, "logins": broker.logins() }).to_string());
        // Wait to be killed (bounded, in case the parent died).
        tokio::time::sleep(Duration::from_secs(600)).await;
        Err(BenchError::Broken("the crash child was not killed".into()))
    })
}

fn restart(count: usize, path: &std::path::Path) -> Result<serde_json::Value, BenchError> {
    let runtime = runtime()?;
    runtime.block_on(async move {
        let clock = Clock::system();
        let warden = Warden::builder().store_path(path).clock(clock.clone()).build().await?;
        let keepalive = Duration::from_secs(60);
        let broker = Arc::new(LagBroker::new(clock.clone(), count, keepalive));
        let watch = Stopwatch::start(&clock);
        let handles = open_all(&warden, broker.clone(), policy(keepalive), count).await?;
        wait_for_tokens(&handles).await?;
        let open_s = watch.elapsed().as_secs_f64();
        let mut reused = 0u64;
        for handle in &handles {
            if handle.token().await.is_ok_and(|lease| lease.generation.0 == 1) {
                reused += 1;
            }
        }
        let logins = broker.logins();
        warden.shutdown(false).await;
        Ok(serde_json::json!({ "sessions": count, "logins": logins, "reused": reused, "open_s": open_s }))
    })
}

impl From<warden_actors::WardenError> for BenchError {
    fn from(error: warden_actors::WardenError) -> BenchError {
        BenchError::Setup(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for spec in [
            ChildSpec::Sessions { count: 1000, window: Duration::from_secs(10), keepalive: Duration::from_secs(4) },
            ChildSpec::Crash { count: 10, path: PathBuf::from("/tmp/a b/warden.db") },
            ChildSpec::Restart { count: 10, path: PathBuf::from("/tmp/x") },
        ] {
            assert_eq!(ChildSpec::parse(&spec.to_arg()), Some(spec));
        }
        assert_eq!(ChildSpec::parse("nonsense"), None);
    }
}
