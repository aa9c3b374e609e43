//! Measures the token hot path against the alternatives, in one run, and prints one JSON line.
//!
//! `cargo run --release -p warden-actors --example hot_path`
//!
//! On a 2-worker tokio runtime, two concurrent readers each time batches of calls of:
//! - `token`: `SessionHandle::token()` awaited, on a valid session (the lock-free lease cell);
//! - `try_token`: `SessionHandle::try_token()`, the same load without a future;
//! - `arcswap`: a bare `ArcSwap::load()` of the same kind of value (the floor);
//! - `rwlock`: `std::sync::RwLock` read plus an `Arc` clone (the obvious alternative);
//! - `ractor_call`: a `call_t!` round trip to an actor that answers with the lease (what the hot path
//!   avoids).
//!
//! Each figure is the median of the per-call times of all batches of both readers.

use std::hint::black_box;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use warden_actors::testing::ScriptedBroker;
use warden_actors::{Clock, SessionSpec, Warden};
use warden_engine::{Lease, Policy, Preset, SessionId};

const READERS: usize = 2;
const BATCHES: usize = 25;

/// Runs `$op` (an expression using `$state`, awaited) in `BATCHES` batches of `$per_batch` calls on each
/// of `READERS` tasks, each task owning a clone of `$state`; evaluates to the median nanoseconds per call.
macro_rules! measure {
    ($clock:expr, $per_batch:expr, $state:expr, |$s:ident| $op:expr) => {{
        let clock: Clock = $clock.clone();
        let per_batch: u32 = $per_batch;
        let tasks: Vec<_> = (0..READERS)
            .map(|_| {
                let $s = $state.clone();
                let clock = clock.clone();
                tokio::spawn(async move {
                    let mut per_call = Vec::with_capacity(BATCHES);
                    for _ in 0..BATCHES {
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
            all.extend(task.await.expect("reader task"));
        }
        median(&mut all)
    }};
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let broker = Arc::new(ScriptedBroker::new("bench"));
        let warden = Warden::builder().build().await.expect("warden");
        let clock = warden.clock();
        let mut policy = Policy::preset(Preset::Reactive);
        policy.idle_timeout = None;
        let spec = SessionSpec::new(SessionId::new("bench").expect("id"), broker).with_policy(policy);
        let session = warden.open(spec).await.expect("open");
        let first = session.token().await.expect("a token");
        assert!(session.try_token().is_some(), "the lease is published: the hot path is what gets measured");
        let lease = Arc::new(first.into_lease());

        let token_ns = measure!(clock, 2_000_000, session, |s| match s.token().await {
            Ok(lease) => lease.generation.0,
            Err(_) => 0,
        });

        let try_ns = measure!(clock, 2_000_000, session, |s| match s.try_token() {
            Some(lease) => lease.generation.0,
            None => 0,
        });
        let cell = Arc::new(ArcSwap::from(lease.clone()));
        let arcswap_ns = measure!(clock, 2_000_000, cell, |c| c.load().generation.0);

        let lock = Arc::new(RwLock::new(lease.clone()));
        let rwlock_ns = measure!(clock, 1_000_000, lock, |l| {
            let lease: Arc<Lease> = l.read().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone());
            lease.generation.0
        });

        let (echo, _join) = Actor::spawn(None, Echo, lease.clone()).await.expect("echo actor");
        let ractor_ns = measure!(clock, 20_000, echo, |e| match ractor::call_t!(e, |reply| reply, 1_000) {
            Ok(lease) => lease.generation.0,
            Err(_) => 0,
        });

        println!(
            "{{\"token_ns_median\":{token_ns:.1},\"arcswap_ns_median\":{arcswap_ns:.1},\"rwlock_ns_median\":{rwlock_ns:.1},\
             \"ractor_call_ns_median\":{ractor_ns:.1},\"try_token_ns_median\":{try_ns:.1},\"ratio_vs_ractor_call\":{:.1},\"try_token_ratio_vs_ractor_call\":{:.1},\"readers\":{READERS},\"worker_threads\":2}}",
            ractor_ns / token_ns,
            ractor_ns / try_ns
        );
        warden.shutdown(false).await;
    });
}
