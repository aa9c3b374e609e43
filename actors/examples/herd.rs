//! A herd of concurrent requests on an expired session, in real time; prints one JSON line.
//!
//! `cargo run --release -p warden-actors --example herd -- --requests 10000`
//!
//! A lazy session starts `Expired`; `--requests` tasks ask for a token at once. The fake broker's login
//! takes `--login-ms` (200) of real time. Exactly one login must happen, every request must get the new
//! token, and the slowest requests should wait little longer than the login itself.

use std::sync::Arc;
use std::time::Duration;

use warden_actors::testing::ScriptedBroker;
use warden_actors::{SessionSpec, Warden};
use warden_engine::{Mode, Policy, Preset, SessionId};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let requests = arg("--requests", 10_000);
    let login_ms = arg("--login-ms", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let broker = Arc::new(ScriptedBroker::new("herd").with_latency(Duration::from_millis(login_ms)));
        let warden = Warden::builder().build().await.expect("warden");
        let clock = warden.clock();
        let mut policy = Policy::preset(Preset::Reactive);
        policy.mode = Mode::Lazy;
        policy.max_waiters = u32::try_from(requests).unwrap_or(u32::MAX).max(1);
        let spec = SessionSpec::new(SessionId::new("herd").expect("id"), broker.clone()).with_policy(policy);
        let session = warden.open(spec).await.expect("open");
        assert!(session.try_token().is_none(), "the session starts expired");

        let start = clock.monotonic_now();
        let tasks: Vec<_> = (0..requests)
            .map(|_| {
                let session = session.clone();
                let clock = clock.clone();
                tokio::spawn(async move {
                    let asked = clock.monotonic_now();
                    let ok = session.token().await.is_ok();
                    (ok, clock.monotonic_now().saturating_duration_since(asked))
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(tasks.len());
        let mut failed = 0u64;
        for task in tasks {
            match task.await {
                Ok((true, latency)) => latencies.push(latency),
                _ => failed += 1,
            }
        }
        let total = clock.monotonic_now().saturating_duration_since(start);
        latencies.sort();
        let p99 = latencies.get((latencies.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{{\"requests\":{requests},\"logins\":{},\"failed\":{failed},\"p99_ms\":{:.1},\"max_ms\":{:.1},\
             \"login_latency_ms\":{login_ms},\"wall_ms\":{:.1}}}",
            broker.logins(),
            ms(p99),
            ms(latencies.last().copied().unwrap_or_default()),
            ms(total),
        );
        warden.shutdown(false).await;
    });
}
