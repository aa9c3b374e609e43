//! The token hot path beside the floor and the designs it replaces, and `execute`'s overhead.
//!
//! On a 2-worker runtime, one or two reader tasks each time batches of calls; a figure is the median of
//! the per-call times of every batch of every reader:
//!
//! - `token`: `SessionHandle::token()` awaited on a valid session (the lease cell);
//! - `arcswap`: a bare `ArcSwap::load()` of a lease (the floor: what `token()` costs at best);
//! - `rwlock`: `std::sync::RwLock` read plus an `Arc` clone (the obvious shared cache);
//! - `watch`: a tokio `watch` borrow plus an `Arc` clone (the obvious async cache);
//! - `ractor_call`: a `call_t!` round trip to an actor holding the lease (asking the session actor);
//! - `token_random_100k`: `token()` on a handle picked at random among 100,000 open sessions (cache
//!   misses included), beside `arcswap_random_100k` (a random load among 100,000 cells, each behind its
//!   own `Arc` as a session's state is);
//! - `execute_overhead`: `execute(Idempotent, op)` minus the same `op` called directly with a lease, where
//!   `op` is a fake broker call that answers at once.

use std::hint::black_box;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use warden_actors::testing::ScriptedBroker;
use warden_actors::{Clock, SessionHandle, SessionSpec, Warden};
use warden_engine::rng::SplitMix64;
use warden_engine::{BrokerError, Idempotency, Lease, Mode, Policy, Preset, SessionId};

use super::stats::median;
use super::{BenchError, Figures, runtime, setup};

/// Runs `$op` (an expression using `$s`, a clone of `$state` per reader, awaited as needed) in `$batches`
/// batches of `$per_batch` calls on each of `$readers` tasks; evaluates to the median nanoseconds per call.
macro_rules! measure {
    ($clock:expr, $readers:expr, $batches:expr, $per_batch:expr, $state:expr, |$s:ident| $op:expr) => {{
        let clock: Clock = $clock.clone();
        let per_batch: u32 = $per_batch;
        let batches: usize = $batches;
        let tasks: Vec<_> = (0..$readers)
            .map(|reader: u64| {
                #[allow(unused_mut)]
                let mut $s = ($state.clone(), SplitMix64::new(reader.wrapping_add(1)));
                let clock = clock.clone();
                tokio::spawn(async move {
                    let mut per_call = Vec::with_capacity(batches);
                    for _ in 0..batches {
                        let start = clock.monotonic_now();
                        let mut sink = 0u64;
                        for _ in 0..per_batch {
                            sink = sink.wrapping_add($op);
                        }
                        black_box(sink);
                        let elapsed = clock.monotonic_now().saturating_duration_since(start);
                        per_call.push(elapsed.as_nanos() as f64 / f64::from(per_batch));
                    }
                    per_call
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.map_err(setup)?);
        }
        median(&mut all)
    }};
}

/// An actor that answers every call with its lease (the design `token()` avoids: asking an actor).
struct Echo;

impl Actor for Echo {
    type Msg = RpcReplyPort<Arc<Lease>>;
    type State = Arc<Lease>;
    type Arguments = Arc<Lease>;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, lease: Arc<Lease>) -> Result<Arc<Lease>, ActorProcessingErr> {
        Ok(lease)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        reply: RpcReplyPort<Arc<Lease>>,
        lease: &mut Arc<Lease>,
    ) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(lease.clone());
        Ok(())
    }
}

/// A fake broker call that answers at once (what `execute` wraps).
async fn fake_broker_call(lease: &Lease) -> Result<u64, BrokerError> {
    Ok(black_box(lease.generation.0))
}

fn valid_policy() -> Policy {
    let mut policy = Policy::preset(Preset::Reactive);
    policy.idle_timeout = None;
    policy.mode = Mode::Eager;
    policy
}

pub(crate) fn run(figures: &mut Figures, quick: bool) -> Result<(), BenchError> {
    let (batches, per_batch, calls) = if quick { (7, 200_000, 4_000) } else { (25, 1_000_000, 20_000) };
    let runtime = runtime()?;
    runtime.block_on(async {
        let warden = Warden::builder().memory_store().build().await.map_err(setup)?;
        let clock = warden.clock();
        let broker = Arc::new(ScriptedBroker::new("bench"));
        let id = SessionId::new("hot").map_err(setup)?;
        let session =
            warden.open(SessionSpec::new(id, broker.clone()).with_policy(valid_policy())).await.map_err(setup)?;
        let lease = Arc::new(session.token().await.map_err(setup)?.into_lease());
        if session.try_token().is_none() {
            return Err(BenchError::Broken("the lease is not published: the hot path would not be measured".into()));
        }
        let cell = Arc::new(ArcSwap::from(lease.clone()));
        let lock = Arc::new(RwLock::new(lease.clone()));
        let (watch_tx, watch_rx) = tokio::sync::watch::channel(lease.clone());
        let (echo, _join) = Actor::spawn(None, Echo, lease.clone()).await.map_err(setup)?;

        figures.section("hot path: ns per call (median of batches); 1 reader, then 2 concurrent readers");
        for readers in [1u64, 2] {
            let suffix = if readers == 1 { "" } else { "_2readers" };
            let token = measure!(clock, readers, batches, per_batch, session, |s| match s.0.token().await {
                Ok(lease) => lease.generation.0,
                Err(_) => 0,
            });
            let arcswap = measure!(clock, readers, batches, per_batch, cell, |c| c.0.load().generation.0);
            let rwlock = measure!(clock, readers, batches, per_batch / 4, lock, |l| {
                let lease: Arc<Lease> = l.0.read().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone());
                lease.generation.0
            });
            let watch = measure!(clock, readers, batches, per_batch / 4, watch_rx, |w| {
                let lease: Arc<Lease> = w.0.borrow().clone();
                lease.generation.0
            });
            let ractor = measure!(clock, readers, batches, calls, echo, |e| {
                match ractor::call_t!(e.0, |reply| reply, 1_000) {
                    Ok(lease) => lease.generation.0,
                    Err(_) => 0,
                }
            });
            let who = if readers == 1 { "1 reader" } else { "2 readers" };
            figures.set(&format!("token_ns{suffix}"), Some(token), &format!("SessionHandle::token(), {who}"));
            figures.set(&format!("arcswap_ns{suffix}"), Some(arcswap), "bare ArcSwap::load (the floor)");
            figures.set(&format!("rwlock_ns{suffix}"), Some(rwlock), "RwLock read + Arc clone");
            figures.set(&format!("watch_ns{suffix}"), Some(watch), "tokio watch borrow + Arc clone");
            figures.set(&format!("ractor_call_ns{suffix}"), Some(ractor), "ractor call_t! round trip");
            figures.set(
                &format!("token_vs_arcswap{suffix}"),
                Some(token / arcswap.max(f64::MIN_POSITIVE)),
                "token_ns / arcswap_ns (target <= 2.5)",
            );
        }
        drop(watch_tx);

        let raw =
            measure!(clock, 1u64, batches, per_batch / 4, lease, |l| fake_broker_call(&l.0).await.unwrap_or_default());
        let executed = measure!(clock, 1u64, batches, per_batch / 4, session, |s| {
            let op = |lease: warden_actors::LeaseGuard| async move { fake_broker_call(&lease).await };
            s.0.execute(Idempotency::Idempotent, op).await.unwrap_or(0)
        });
        figures.set("execute_ns", Some(executed), "execute(Idempotent, fake call)");
        figures.set("raw_call_ns", Some(raw), "the fake call alone, with a lease in hand");
        figures.set("execute_overhead_ns", Some((executed - raw).max(0.0)), "execute_ns - raw_call_ns (target <= 150)");
        warden.shutdown(false).await;
        Ok::<(), BenchError>(())
    })?;
    random_100k(figures, quick)
}

/// `token()` on handles picked at random among 100,000 valid sessions, beside a random load among
/// 100,000 arc-swap cells.
fn random_100k(figures: &mut Figures, quick: bool) -> Result<(), BenchError> {
    const SESSIONS: usize = 100_000;
    let (batches, per_batch) = if quick { (7, 200_000) } else { (25, 1_000_000) };
    let runtime = runtime()?;
    runtime.block_on(async {
        let warden = Warden::builder().memory_store().build().await.map_err(setup)?;
        let clock = warden.clock();
        let broker = Arc::new(ScriptedBroker::new("bench"));
        let policy = valid_policy();
        let mut handles: Vec<SessionHandle> = Vec::with_capacity(SESSIONS);
        for i in 0..SESSIONS {
            let id = SessionId::new(format!("r{i}")).map_err(setup)?;
            let spec = SessionSpec::new(id, broker.clone()).with_policy(policy.clone());
            handles.push(warden.open(spec).await.map_err(setup)?);
        }
        let mut cells = Vec::with_capacity(SESSIONS);
        for handle in &handles {
            // Each cell on the heap on its own, as each session's state is: the floor pays the same
            // pointer chase as a handle, but nothing else.
            cells.push(Arc::new(ArcSwap::from(Arc::new(handle.token().await.map_err(setup)?.into_lease()))));
        }
        let handles = Arc::new(handles);
        let cells = Arc::new(cells);
        let n = SESSIONS as u64;
        let token = measure!(clock, 1u64, batches, per_batch, handles, |h| {
            let i = h.1.below(n) as usize;
            match h.0[i].token().await {
                Ok(lease) => lease.generation.0,
                Err(_) => 0,
            }
        });
        let floor = measure!(clock, 1u64, batches, per_batch, cells, |c| {
            let i = c.1.below(n) as usize;
            c.0[i].load().generation.0
        });
        figures.set("token_random_100k_ns", Some(token), "token() on a random one of 100,000 sessions");
        figures.set("arcswap_random_100k_ns", Some(floor), "a random one of 100,000 arc-swap loads (the floor)");
        warden.shutdown(false).await;
        Ok(())
    })
}
