//! What the store costs per transition, amortised over 10,000 sessions.
//!
//! A transition is a grant change as the runtime persists it: the session's snapshot, written durably
//! (`Store::save_deferred`, then the group commit's flush, `warden_actors::commit::GroupCommit`). Two
//! writer tasks (the two worker threads, as session actors would) make one transition for every session,
//! round after round; a round ends when every write of it is confirmed durable. The figure is the wall
//! time per transition:
//!
//! - `sled_unflushed`: sled with `FlushPolicy::Never` (durable only with sled's background flush);
//! - `sled_flush_on_grant`: sled at default durability — every snapshot flushed, the flush shared by
//!   every write queued while the previous one ran (group commit);
//! - `sled_flush_every`: sled with `FlushPolicy::Always` (every write flushes before it returns: no
//!   sharing; measured over 1,000 sessions);
//! - `memory`: `MemoryStore` (an encode/decode round trip, no disk).
//!
//! The transition's log entries (the grant installed, the state change: one `append_logs` per step) are
//! timed apart, in the same rounds: `log_us_per_step_*`.

use std::sync::Arc;
use std::time::Duration;

use warden_actors::Clock;
use warden_actors::commit::GroupCommit;
use warden_adapters::{FlushPolicy, KeySource, MemoryStore, SledOptions, SledStore};
use warden_engine::snapshot::StoredGrant;
use warden_engine::{
    AuthKind, Durability, EventKind, Generation, Grant, Pending, Reason, SNAPSHOT_FORMAT_VERSION, SessionEvent,
    SessionId, Snapshot, StateKind, Store, UnixMs,
};

use super::stats::{Stopwatch, median};
use super::{BenchError, Figures, runtime, setup};

/// Sessions per round.
const SESSIONS: usize = 10_000;
/// Writer tasks (as many as worker threads).
const WRITERS: usize = 2;

pub(crate) fn run(figures: &mut Figures, quick: bool) -> Result<(), BenchError> {
    let rounds = if quick { 1 } else { 3 };
    figures.section(&format!(
        "persistence: µs per transition (a durable snapshot) and per step's log entries (2), {SESSIONS} sessions, \
         {rounds} round(s)"
    ));
    let configs: [(&str, Option<FlushPolicy>, usize, &str); 4] = [
        ("sled_unflushed", Some(FlushPolicy::Never), SESSIONS, "sled, flushed only in the background"),
        ("sled_flush_on_grant", Some(FlushPolicy::AsRequested), SESSIONS, "sled, default: group commit (target <= 10)"),
        ("sled_flush_every", Some(FlushPolicy::Always), SESSIONS / 10, "sled, a flush on every write"),
        ("memory", None, SESSIONS, "MemoryStore"),
    ];
    for (label, flush, sessions, what) in configs {
        let measured = measure(flush, sessions, rounds)?;
        figures.set(&format!("persist_us_per_transition_{label}"), Some(measured.snapshot_us), what);
        figures.set(&format!("log_us_per_step_{label}"), Some(measured.log_us), "append_logs of a step's 2 entries");
        if flush == Some(FlushPolicy::AsRequested) {
            figures.set(
                "persist_flushes_per_1k_transitions_flush_on_grant",
                Some(measured.flushes * 1000.0 / (sessions * rounds) as f64),
                "flushes per 1,000 durable writes (group commit)",
            );
        }
    }
    Ok(())
}

/// What one store configuration cost.
struct Measured {
    snapshot_us: f64,
    log_us: f64,
    flushes: f64,
}

/// Runs the rounds on a fresh store.
fn measure(flush: Option<FlushPolicy>, sessions: usize, rounds: usize) -> Result<Measured, BenchError> {
    let dir = tempfile::tempdir().map_err(setup)?;
    let store: Arc<dyn Store> = match flush {
        None => Arc::new(MemoryStore::new()),
        Some(policy) => {
            let options = SledOptions::default().key(KeySource::Bytes([7; 32])).flush(policy);
            Arc::new(SledStore::open(dir.path().join("warden.db"), options).map_err(setup)?)
        }
    };
    let ids: Arc<Vec<SessionId>> =
        Arc::new((0..sessions).map(|i| SessionId::new(format!("u{i:06}"))).collect::<Result<_, _>>().map_err(setup)?);
    let runtime = runtime()?;
    runtime.block_on(async move {
        let clock = Clock::system();
        let commit = Arc::new(GroupCommit::start(store.clone()));
        // Every session has a snapshot and a log already (transitions replace and extend them).
        for id in ids.iter() {
            store.save(&snapshot(id, 0, clock.now()), Durability::Buffered).map_err(setup)?;
            store.append_logs(id, &events(0, clock.now())).map_err(setup)?;
        }
        store.flush().map_err(setup)?;
        let (mut snapshot_us, mut log_us) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        for round in 1..=rounds as u64 {
            for logs in [false, true] {
                let watch = Stopwatch::start(&clock);
                let writers: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let (store, commit, ids, clock) = (store.clone(), commit.clone(), ids.clone(), clock.clone());
                        tokio::spawn(async move { write_round(&*store, &commit, &ids, w, round, logs, &clock).await })
                    })
                    .collect();
                for writer in writers {
                    writer.await.map_err(setup)??;
                }
                let per = watch.elapsed().as_secs_f64() * 1e6 / sessions as f64;
                if logs { log_us.push(per) } else { snapshot_us.push(per) }
            }
        }
        let flushes = commit.stats().flushes as f64;
        Ok(Measured { snapshot_us: median(&mut snapshot_us), log_us: median(&mut log_us), flushes })
    })
}

/// One writer's share of a round: for every `WRITERS`-th session, a durable snapshot (then the wait until
/// every one is confirmed), or the step's log entries.
async fn write_round(
    store: &dyn Store,
    commit: &GroupCommit,
    ids: &[SessionId],
    writer: usize,
    generation: u64,
    logs: bool,
    clock: &Clock,
) -> Result<(), BenchError> {
    let mut confirmations = Vec::new();
    for id in ids.iter().skip(writer).step_by(WRITERS) {
        let now = clock.now();
        if logs {
            store.append_logs(id, &events(generation, now)).map_err(setup)?;
        } else if let Pending::Flush = store.save_deferred(&snapshot(id, generation, now)).map_err(setup)? {
            let (done, confirmed) = tokio::sync::oneshot::channel();
            commit.submit(Box::new(move |result| {
                let _ = done.send(result);
            }));
            confirmations.push(confirmed);
        }
        tokio::task::yield_now().await;
    }
    for confirmed in confirmations {
        confirmed.await.map_err(setup)?.map_err(setup)?;
    }
    Ok(())
}

/// A 440-byte access token, as brokers' JWTs are.
fn token(generation: u64) -> String {
    format!("eyJhbGciOiJSUzI1NiJ9.{}.{generation:08}", "x".repeat(400))
}

/// A `Valid` snapshot with a grant of `generation` (a refresh token, a login history).
fn snapshot(id: &SessionId, generation: u64, now: UnixMs) -> Snapshot {
    let grant = Grant::new(token(generation), now)
        .expires_in(Duration::from_secs(1200))
        .with_refresh(format!("refresh-{generation}"), Some(Duration::from_secs(3600)));
    Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        session_id: id.clone(),
        saved_at: now,
        state: StateKind::Valid,
        invalid_reason: None,
        generation: Generation(generation),
        grant: Some(StoredGrant {
            grant,
            generation: Generation(generation),
            logged_in_at: now,
            access_dead: false,
            refresh_dead: false,
        }),
        login_attempts: vec![now],
        consecutive_failures: 0,
        consecutive_rejections: 0,
        retry_not_before: now,
        take_over: false,
        force_login: false,
        last_activity: now,
        credentials_fingerprint: None,
        operator_anchor: None,
    }
}

/// The log entries of a grant change.
fn events(generation: u64, now: UnixMs) -> [SessionEvent; 2] {
    [
        SessionEvent {
            at: now,
            kind: EventKind::GrantInstalled {
                generation: Generation(generation),
                kind: AuthKind::Refresh,
                issued_at: now,
                expires_at: Some(now.saturating_add(Duration::from_secs(1200))),
                lifetime_ms: Some(1_200_000),
            },
        },
        SessionEvent {
            at: now,
            kind: EventKind::StateChanged {
                from: StateKind::ExpiringSoon,
                to: StateKind::Valid,
                reason: Reason::Authenticated,
            },
        },
    ]
}
