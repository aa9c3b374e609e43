//! The account's request limiter through the public runtime: `execute` at 80 % and 100 % of a 10/s
//! limit never puts more than 10 calls into any 1 s window, loses nothing at 80 %, and keeps up at 100 %.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MONDAY_0900_IST, clock_at, quiet_policy};
use warden_actors::testing::{Reply, ScriptedBroker};
use warden_actors::{ExecuteError, SessionHandle, SessionSpec, Warden};
use warden_engine::rng::SplitMix64;
use warden_engine::{Idempotency, Preset, Rate, SessionId, UnixMs};

const LIMIT: u32 = 10;
const PER: Duration = Duration::from_secs(1);

/// A running session whose policy limits requests to 10 per second, logged in.
async fn limited_session(name: &str) -> (Warden, SessionHandle) {
    let broker = Arc::new(ScriptedBroker::new(name).login_fallback(Reply::Grant { lifetime: None, refresh: None }));
    let warden = Warden::builder().clock(clock_at(MONDAY_0900_IST)).build().await.unwrap();
    let mut policy = quiet_policy(Preset::Hybrid);
    policy.request_rate = Some(Rate::new(LIMIT, PER));
    // The test measures the limiter itself: no allowance for network jitter (calls "arrive" when made).
    policy.network_jitter = Duration::ZERO;
    let spec = SessionSpec::new(SessionId::new(name).unwrap(), broker).with_policy(policy);
    let session = warden.open(spec).await.unwrap();
    session.token().await.expect("the session logs in");
    (warden, session)
}

/// What a load run saw: the instant of every broker call, and every `execute` result with its wait.
#[derive(Default)]
struct Outcome {
    calls: Vec<UnixMs>,
    failures: Vec<ExecuteError>,
    waits: Vec<Duration>,
}

/// Issues one `execute` at each instant of `arrivals` (offsets from now), each in its own task, and
/// waits for all of them. The operation records the warden clock's time of the call.
async fn run_load(warden: &Warden, session: &SessionHandle, arrivals: &[Duration]) -> Outcome {
    let clock = warden.clock();
    let start = clock.monotonic_now();
    let calls = Arc::new(Mutex::new(Vec::with_capacity(arrivals.len())));
    let mut tasks = Vec::with_capacity(arrivals.len());
    for offset in arrivals {
        tokio::time::sleep_until(start + *offset).await;
        let session = session.clone();
        let calls = calls.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let asked = clock.monotonic_now();
            let result = session
                .execute(Idempotency::Idempotent, |_lease| {
                    calls.lock().unwrap().push(clock.now());
                    std::future::ready(Ok(()))
                })
                .await;
            (result, clock.monotonic_now() - asked)
        }));
    }
    let mut outcome = Outcome::default();
    for task in tasks {
        let (result, waited) = task.await.unwrap();
        outcome.waits.push(waited);
        if let Err(error) = result {
            outcome.failures.push(error);
        }
    }
    outcome.calls = std::mem::take(&mut *calls.lock().unwrap());
    outcome.calls.sort();
    outcome
}

/// The most calls in any closed window `[t, t + per]` starting at a call (the busiest windows start at
/// a call; closed, so it holds for brokers counting either edge).
fn busiest_window(calls: &[UnixMs], per: Duration) -> usize {
    let per_ms = i64::try_from(per.as_millis()).unwrap();
    (0..calls.len())
        .map(|i| calls[i..].iter().take_while(|t| t.as_millis() <= calls[i].as_millis() + per_ms).count())
        .max()
        .unwrap_or(0)
}

/// Poisson arrivals at `rate_per_s` for `span`, seeded.
fn poisson(rate_per_s: f64, span: Duration, seed: u64) -> Vec<Duration> {
    let mut rng = SplitMix64::new(seed);
    let mut at = Duration::ZERO;
    let mut arrivals = Vec::new();
    loop {
        let gap_s = -(1.0 - rng.next_unit()).ln() / rate_per_s;
        at += Duration::from_millis((gap_s * 1000.0).round() as u64);
        if at >= span {
            return arrivals;
        }
        arrivals.push(at);
    }
}

fn p99(waits: &mut [Duration]) -> Duration {
    waits.sort();
    waits[(waits.len() * 99 / 100).min(waits.len() - 1)]
}

#[tokio::test(start_paused = true)]
async fn at_80_percent_of_the_limit_no_call_fails_and_no_window_exceeds_it() {
    let (warden, session) = limited_session("eighty").await;
    // 8 requests a second, Poisson, for an hour: about 28,800 requests, many short bursts above 10/s.
    let arrivals = poisson(8.0, Duration::from_secs(3600), 80);
    let mut outcome = run_load(&warden, &session, &arrivals).await;

    assert!(outcome.failures.is_empty(), "{} of {} calls failed: {:?}", outcome.failures.len(), arrivals.len(), {
        outcome.failures.first()
    });
    assert_eq!(outcome.calls.len(), arrivals.len());
    let busiest = busiest_window(&outcome.calls, PER);
    assert!(busiest <= LIMIT as usize, "{busiest} calls within one second");
    let p99 = p99(&mut outcome.waits);
    assert!(p99 <= Duration::from_secs(2), "p99 wait {p99:?}");
    assert_eq!(busiest, LIMIT as usize, "Poisson bursts fill some windows to the limit");
    warden.shutdown(false).await;
}

#[tokio::test(start_paused = true)]
async fn at_100_percent_of_the_limit_every_call_goes_and_throughput_reaches_the_limit() {
    let (warden, session) = limited_session("hundred").await;
    // Bar-driven strategies: a herd of 20 requests every 2 s, five minutes long (3,000 requests).
    let arrivals: Vec<Duration> =
        (0..150u64).flat_map(|bar| std::iter::repeat_n(Duration::from_secs(2 * bar), 20)).collect();
    let started = warden.clock().now();
    let outcome = run_load(&warden, &session, &arrivals).await;

    assert!(outcome.failures.is_empty(), "{} of {} calls failed", outcome.failures.len(), arrivals.len());
    assert_eq!(outcome.calls.len(), arrivals.len());
    let busiest = busiest_window(&outcome.calls, PER);
    assert_eq!(busiest, LIMIT as usize, "windows are filled to the limit, never beyond");
    // 3,000 calls at 10/s take 300 s: the last goes within 1 % of that.
    let last = outcome.calls.last().unwrap().as_millis() - started.as_millis();
    assert!(last <= 303_000, "the last call went {last} ms after the first bar");
    warden.shutdown(false).await;
}
