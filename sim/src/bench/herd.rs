//! Herds: many requests at once on an expired session whose login takes 200 ms, in real time.
//!
//! Every request is its own task; the tasks are spawned first and released together, and each measures
//! its own wait, from its request to its token. Three designs get the same herd:
//!
//! - **warden**: a lazy session (expired until asked), `max_waiters` at least the herd; single flight
//!   means one login, and every request gets the new token.
//! - **mutex**: a token behind a `tokio::sync::Mutex`, re-checked after taking the lock: the first
//!   request logs in holding the lock, the rest queue on it and find the token when their turn comes
//!   (one login; every request serialised on the lock).
//! - **no single flight**: a cache that every request reads, and every request that finds it expired
//!   logs in itself (one login per request that arrives before the first login finishes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use warden_actors::testing::ScriptedBroker;
use warden_actors::{Clock, SessionSpec, Warden};
use warden_engine::{Mode, Policy, Preset, SessionId};

use super::stats::{ms, percentile};
use super::{BenchError, Figures, runtime, setup};

/// The fake login's latency.
const LOGIN: Duration = Duration::from_millis(200);

/// What one herd gave.
struct Outcome {
    logins: u64,
    p99: Duration,
    failed: u64,
}

pub(crate) fn run(figures: &mut Figures, quick: bool) -> Result<(), BenchError> {
    let sizes: &[(usize, &str)] =
        if quick { &[(1_000, "1k"), (10_000, "10k")] } else { &[(1_000, "1k"), (10_000, "10k"), (100_000, "100k")] };
    figures.section("herds on an expired session (200 ms login): logins and p99 wait (ms)");
    for &(size, label) in sizes {
        let warden = herd(size, Design::Warden)?;
        if warden.failed > 0 || warden.logins != 1 {
            return Err(BenchError::Broken(format!(
                "warden herd of {size}: {} requests got no token, {} logins (single flight means one)",
                warden.failed, warden.logins
            )));
        }
        let mutex = herd(size, Design::Mutex)?;
        let naive = herd(size, Design::NoSingleFlight)?;
        figures.set(&format!("herd_{label}_logins"), Some(warden.logins as f64), "warden: logins");
        figures.set(&format!("herd_{label}_p99_ms"), Some(ms(warden.p99)), "warden: p99 wait");
        figures.set(&format!("herd_{label}_logins_mutex"), Some(mutex.logins as f64), "token behind a mutex: logins");
        figures.set(&format!("herd_{label}_p99_ms_mutex"), Some(ms(mutex.p99)), "token behind a mutex: p99 wait");
        figures.set(
            &format!("herd_{label}_logins_no_single_flight"),
            Some(naive.logins as f64),
            "cache without single flight: logins",
        );
        figures.set(
            &format!("herd_{label}_p99_ms_no_single_flight"),
            Some(ms(naive.p99)),
            "cache without single flight: p99 wait",
        );
    }
    figures.set("herd_login_ms", Some(ms(LOGIN)), "the fake login's latency");
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Design {
    Warden,
    Mutex,
    NoSingleFlight,
}

/// A token and when it stops being good.
#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    until: tokio::time::Instant,
}

fn herd(size: usize, design: Design) -> Result<Outcome, BenchError> {
    let runtime = runtime()?;
    runtime.block_on(async move {
        let clock = Clock::system();
        let logins = Arc::new(AtomicU64::new(0));
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::with_capacity(size);
        let mut keep = None;
        match design {
            Design::Warden => {
                let broker = Arc::new(ScriptedBroker::new("herd").with_latency(LOGIN));
                let warden = Warden::builder().clock(clock.clone()).build().await.map_err(setup)?;
                let mut policy = Policy::preset(Preset::Reactive);
                policy.mode = Mode::Lazy;
                policy.idle_timeout = None;
                policy.max_waiters = u32::try_from(size).unwrap_or(u32::MAX);
                let id = SessionId::new("herd").map_err(setup)?;
                let session =
                    warden.open(SessionSpec::new(id, broker.clone()).with_policy(policy)).await.map_err(setup)?;
                if session.try_token().is_some() {
                    return Err(BenchError::Broken("the herd's session is not expired".into()));
                }
                for _ in 0..size {
                    let (session, clock, mut go) = (session.clone(), clock.clone(), go_rx.clone());
                    tasks.push(tokio::spawn(async move {
                        let _ = go.wait_for(|go| *go).await;
                        let asked = clock.monotonic_now();
                        let ok = session.token().await.is_ok();
                        (ok, clock.monotonic_now().saturating_duration_since(asked))
                    }));
                }
                keep = Some((warden, broker));
            }
            Design::Mutex => {
                let cache = Arc::new(tokio::sync::Mutex::new(None::<Cached>));
                for _ in 0..size {
                    let (cache, clock, logins, mut go) = (cache.clone(), clock.clone(), logins.clone(), go_rx.clone());
                    tasks.push(tokio::spawn(async move {
                        let _ = go.wait_for(|go| *go).await;
                        let asked = clock.monotonic_now();
                        let mut guard = cache.lock().await;
                        let now = clock.monotonic_now();
                        let token = match guard.as_ref().filter(|c| now < c.until) {
                            Some(cached) => cached.token.clone(),
                            None => {
                                let fresh = fake_login(&clock, &logins).await;
                                let token = fresh.token.clone();
                                *guard = Some(fresh);
                                token
                            }
                        };
                        drop(guard);
                        (!token.is_empty(), clock.monotonic_now().saturating_duration_since(asked))
                    }));
                }
            }
            Design::NoSingleFlight => {
                let cache = Arc::new(ArcSwapOption::<Cached>::empty());
                for _ in 0..size {
                    let (cache, clock, logins, mut go) = (cache.clone(), clock.clone(), logins.clone(), go_rx.clone());
                    tasks.push(tokio::spawn(async move {
                        let _ = go.wait_for(|go| *go).await;
                        let asked = clock.monotonic_now();
                        let now = clock.monotonic_now();
                        let cached = cache.load_full().filter(|c| now < c.until);
                        let token = match cached {
                            Some(cached) => cached.token.clone(),
                            None => {
                                let fresh = Arc::new(fake_login(&clock, &logins).await);
                                cache.store(Some(fresh.clone()));
                                fresh.token.clone()
                            }
                        };
                        (!token.is_empty(), clock.monotonic_now().saturating_duration_since(asked))
                    }));
                }
            }
        }
        // Let every task reach the gate, then release the herd.
        tokio::time::sleep(Duration::from_millis(50)).await;
        go_tx.send_replace(true);
        let mut waits = Vec::with_capacity(size);
        let mut failed = 0;
        for task in tasks {
            match task.await {
                Ok((true, wait)) => waits.push(wait),
                _ => failed += 1,
            }
        }
        waits.sort_unstable();
        let logins = match &keep {
            Some((warden, broker)) => {
                let logins = broker.logins();
                warden.shutdown(false).await;
                logins
            }
            None => logins.load(Ordering::SeqCst),
        };
        Ok(Outcome { logins, p99: percentile(&waits, 99.0), failed })
    })
}

/// A login of the naive designs: 200 ms, counted, a one-hour token.
async fn fake_login(clock: &Clock, logins: &AtomicU64) -> Cached {
    tokio::time::sleep(LOGIN).await;
    let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
    Cached { token: Arc::from(format!("naive-tok-{n}")), until: clock.monotonic_now() + Duration::from_secs(3600) }
}
