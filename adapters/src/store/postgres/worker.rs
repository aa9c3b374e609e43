//! The worker thread of a [`PostgresStore`](super::PostgresStore): it owns the connection and does all
//! the talking to PostgreSQL.
//!
//! The `Store` trait is synchronous and is called from tokio's worker and blocking threads, where the
//! `postgres` crate's client (which runs a runtime of its own) must not block. So one plain thread owns
//! the client; the handle queues writes and [`Job`]s (reads and ownership calls) in the shared state and
//! waits for their outcome. The loop: take every queued job and up to `max_batch_writes` writes; commit
//! the writes in one transaction ([`commit_batch`]); then run the jobs, in order. A connection that fails
//! is dropped and opened again with a bounded backoff (doubling from `RECONNECT_BACKOFF_MIN` to
//! `RECONNECT_BACKOFF_MAX`); the batch that was being committed goes back to the queue and is retried,
//! and so is every job whose caller still waits. When the store is dropped, the worker commits what is
//! queued with at most `CLOSE_ATTEMPTS` connection attempts, then stops.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use postgres::{Client, NoTls};
use warden_engine::{Fence, SessionId, StoreError};

use super::queue::{Refusal, Shared, Write, WriteKind};
use super::schema;

/// The first wait before a new connection attempt.
pub(super) const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between connection attempts.
pub(super) const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long the probe of a connection after an error without SQLSTATE may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection attempts a closing store makes before it gives up the writes still queued.
const CLOSE_ATTEMPTS: u32 = 5;

/// A read or an ownership call, run on the worker's connection.
pub(super) trait Job: Send {
    /// Runs it; a database error is returned, and the worker decides (retry after a reconnect, or fail).
    fn run(&mut self, client: &mut Client) -> Result<(), postgres::Error>;
    /// Reports a failure to the caller.
    fn fail(&mut self, error: StoreError);
    /// Whether the caller stopped waiting (then it is not run again).
    fn abandoned(&self) -> bool;
}

/// A [`Job`] made of a closure and the channel its caller waits on.
pub(super) struct Call<T, F> {
    pub run: F,
    pub reply: SyncSender<Result<T, StoreError>>,
    pub abandoned: Arc<AtomicBool>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnMut(&mut Client) -> Result<Result<T, StoreError>, postgres::Error> + Send,
{
    fn run(&mut self, client: &mut Client) -> Result<(), postgres::Error> {
        let outcome = (self.run)(client)?;
        let _ = self.reply.try_send(outcome);
        Ok(())
    }

    fn fail(&mut self, error: StoreError) {
        let _ = self.reply.try_send(Err(error));
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }
}

/// What the worker needs besides the shared state.
pub(super) struct WorkerConfig {
    pub config: postgres::Config,
    pub schema: String,
    pub place: String,
    pub max_batch_writes: usize,
    pub log_retention: usize,
}

/// Whether an error means the connection is gone (or the server going away): reconnect and retry.
pub(super) fn connection_lost(client: &mut Client, error: &postgres::Error) -> bool {
    if client.is_closed() || error.is_closed() {
        return true;
    }
    match error.code() {
        // No SQLSTATE: an IO error on the connection, or one of ours (a parameter that does not encode):
        // ask the connection.
        None => client.is_valid(PROBE_TIMEOUT).is_err(),
        // 08: connection exception; 57P01-57P03: the server shuts down or cannot take connections.
        Some(code) => code.code().starts_with("08") || matches!(code.code(), "57P01" | "57P02" | "57P03"),
    }
}

/// Whether a database error is worth retrying on the same connection (deadlock, serialisation).
fn transient(error: &postgres::Error) -> bool {
    matches!(error.code().map(|c| c.code()), Some("40001" | "40P01" | "55P03" | "57014"))
}

/// The worker's loop; returns when the store is closed and the queue is empty (or given up).
pub(super) fn run(shared: Arc<Shared>, config: WorkerConfig, first: Client) {
    let mut client = Some(first);
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut close_attempts = 0;
    loop {
        let (batch, jobs, closing) = {
            let mut state = shared.lock();
            while state.writes.is_empty() && state.jobs.is_empty() && !state.closing {
                state = shared.work.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.closing && state.writes.is_empty() && state.jobs.is_empty() {
                return;
            }
            let take = state.writes.len().min(config.max_batch_writes);
            let batch: Vec<Write> = state.writes.drain(..take).collect();
            state.in_flight = batch.len();
            let jobs: Vec<Box<dyn Job>> = state.jobs.drain(..).collect();
            (batch, jobs, state.closing)
        };
        let Some(connected) = client.as_mut() else {
            // Not connected: put everything back, wait, and try to connect.
            requeue(&shared, batch, jobs);
            if closing {
                close_attempts += 1;
                if close_attempts > CLOSE_ATTEMPTS {
                    give_up(&shared, &config.place);
                    return;
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            match connect(&config) {
                Ok(new) => {
                    client = Some(new);
                    backoff = RECONNECT_BACKOFF_MIN;
                    shared.lock().stats.reconnects += 1;
                }
                Err(error) => {
                    let text = format!("connecting: {error}");
                    tracing::warn!(store = %config.place, error = %text, "PostgreSQL store: no connection; retrying");
                    shared.lock().last_error = Some(text);
                }
            }
            continue;
        };
        if !batch.is_empty() {
            match commit_batch(connected, &batch, config.log_retention) {
                Ok(refusals) => {
                    let done = batch.last().map_or(0, |w| w.id);
                    for (session, refusal) in &refusals {
                        tracing::warn!(
                            session = %session,
                            fence = %refusal.fence,
                            current = %refusal.current,
                            "PostgreSQL store: a write under a lost lease was refused"
                        );
                    }
                    shared.committed(&batch, &refusals, done);
                }
                Err(error) => {
                    let lost = connection_lost(connected, &error);
                    let text = format!("committing {} write(s): {}", batch.len(), describe(&error));
                    tracing::warn!(store = %config.place, error = %text, "PostgreSQL store: batch not committed; it is retried");
                    shared.failed(batch, text);
                    if closing {
                        close_attempts += 1;
                        if close_attempts > CLOSE_ATTEMPTS {
                            give_up(&shared, &config.place);
                            return;
                        }
                    }
                    if lost {
                        client = None;
                    } else if !transient(&error) {
                        // Not a connection problem and not a conflict: wait before the retry.
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    }
                    requeue(&shared, Vec::new(), jobs);
                    continue;
                }
            }
        }
        let mut left = jobs.into_iter();
        while let Some(mut job) = left.next() {
            if job.abandoned() {
                continue;
            }
            match job.run(connected) {
                Ok(()) => {}
                Err(error) if connection_lost(connected, &error) => {
                    let text = describe(&error);
                    shared.lock().last_error = Some(text.clone());
                    tracing::warn!(store = %config.place, error = %text, "PostgreSQL store: connection lost");
                    let mut rest: Vec<Box<dyn Job>> = vec![job];
                    rest.extend(left);
                    requeue(&shared, Vec::new(), rest);
                    client = None;
                    break;
                }
                Err(error) => job.fail(StoreError::Io { path: config.place.clone(), detail: describe(&error) }),
            }
        }
        backoff = RECONNECT_BACKOFF_MIN;
    }
}

/// Puts writes and jobs back at the front of their queues, in order.
fn requeue(shared: &Shared, batch: Vec<Write>, jobs: Vec<Box<dyn Job>>) {
    let mut state = shared.lock();
    state.in_flight = 0;
    for write in batch.into_iter().rev() {
        state.writes.push_front(write);
    }
    for job in jobs.into_iter().rev() {
        if !job.abandoned() {
            state.jobs.push_front(job);
        }
    }
}

/// A closing store that cannot reach the database: the queued writes are lost (none was reported
/// durable), the waiting calls fail.
fn give_up(shared: &Shared, place: &str) {
    let mut state = shared.lock();
    let lost = state.writes.len();
    state.writes.clear();
    let jobs: Vec<Box<dyn Job>> = state.jobs.drain(..).collect();
    drop(state);
    if lost > 0 {
        tracing::warn!(store = %place, lost, "PostgreSQL store closed without a connection: queued writes not committed");
    }
    for mut job in jobs {
        job.fail(StoreError::Io { path: place.to_owned(), detail: "the store closed without a connection".to_owned() });
    }
    shared.progress.notify_all();
}

/// After the worker panicked: the store refuses new work, and every waiting call and flush fails now.
pub(super) fn stopped(shared: &Shared, place: &str) {
    let mut state = shared.lock();
    state.stopped = true;
    state.last_error = Some("the worker thread panicked".to_owned());
    let jobs: Vec<Box<dyn Job>> = state.jobs.drain(..).collect();
    drop(state);
    for mut job in jobs {
        job.fail(StoreError::Io { path: place.to_owned(), detail: "the store's worker stopped".to_owned() });
    }
    shared.progress.notify_all();
}

/// Opens a connection and checks the schema is there (the first open also migrates, see
/// [`schema::migrate`]).
pub(super) fn connect(config: &WorkerConfig) -> Result<Client, postgres::Error> {
    let mut client = config.config.connect(NoTls)?;
    client.batch_execute(&schema::search_path_statement(&config.schema))?;
    Ok(client)
}

/// An error's text: the server's message and code for a database error, else the driver's text.
pub(super) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({}: {})", db.message(), db.severity(), db.code().code()),
        None => error.to_string(),
    }
}

/// Commits one batch in one transaction and returns the writes refused for their fence.
///
/// 1. The leases of the sessions with fenced writes are read and locked (`FOR SHARE`, in session
///    order): a member acquiring one of them waits until this transaction ends, so no write lands under
///    a fence after a newer one was granted.
/// 2. A fenced write whose fence is not the current one (or whose lease was released) is refused.
/// 3. The net effect is written: removes first, then the latest snapshot of each session (one upsert of
///    all of them), then the log steps (one insert; a step already there — a retry of a batch whose
///    commit reply was lost — is left as it is), then the trims.
fn commit_batch(
    client: &mut Client,
    batch: &[Write],
    log_retention: usize,
) -> Result<Vec<(SessionId, Refusal)>, postgres::Error> {
    let mut tx = client.transaction()?;
    let fenced: BTreeSet<&str> = batch.iter().filter(|w| w.fence.is_some()).map(|w| w.session.as_str()).collect();
    let mut current: HashMap<String, (Fence, bool)> = HashMap::new();
    if !fenced.is_empty() {
        let sessions: Vec<&str> = fenced.into_iter().collect();
        for row in tx.query(
            "SELECT session, fence, member IS NOT NULL FROM leases WHERE session = ANY($1) ORDER BY session FOR SHARE",
            &[&sessions],
        )? {
            let fence: i64 = row.get(1);
            current.insert(row.get(0), (Fence(fence as u64), row.get(2)));
        }
    }
    let mut refusals = Vec::new();
    let mut removes: BTreeSet<&str> = BTreeSet::new();
    // The latest snapshot per session: (fence, record).
    let mut snapshots: HashMap<&str, (i64, &[u8])> = HashMap::new();
    let mut steps: Vec<(&str, i64, &[u8])> = Vec::new();
    let mut trims: BTreeSet<&str> = BTreeSet::new();
    for write in batch {
        let session = write.session.as_str();
        if let Some(fence) = write.fence {
            let holder = current.get(session).copied().unwrap_or((Fence::NONE, false));
            if holder != (fence, true) {
                refusals.push((write.session.clone(), Refusal { fence, current: holder.0 }));
                continue;
            }
        }
        let fence = write.fence.map_or(0, |f| f.0 as i64);
        match &write.kind {
            WriteKind::Remove => {
                removes.insert(session);
                snapshots.remove(session);
                steps.retain(|(s, _, _)| *s != session);
                trims.remove(session);
            }
            WriteKind::Snapshot(record) => {
                snapshots.insert(session, (fence, record.as_slice()));
            }
            WriteKind::LogStep { seq, record, trim } => {
                steps.push((session, *seq as i64, record.as_slice()));
                if *trim {
                    trims.insert(session);
                }
            }
        }
    }
    if !removes.is_empty() {
        let sessions: Vec<&str> = removes.into_iter().collect();
        tx.execute("DELETE FROM snapshots WHERE session = ANY($1)", &[&sessions])?;
        tx.execute("DELETE FROM log WHERE session = ANY($1)", &[&sessions])?;
    }
    if !snapshots.is_empty() {
        let mut entries: Vec<(&str, (i64, &[u8]))> = snapshots.into_iter().collect();
        entries.sort_by_key(|(session, _)| *session);
        let sessions: Vec<&str> = entries.iter().map(|(s, _)| *s).collect();
        let fences: Vec<i64> = entries.iter().map(|(_, (f, _))| *f).collect();
        let records: Vec<&[u8]> = entries.iter().map(|(_, (_, r))| *r).collect();
        tx.execute(
            "INSERT INTO snapshots (session, fence, record, quarantined) \
             SELECT s, f, r, NULL FROM UNNEST($1::text[], $2::int8[], $3::bytea[]) AS t(s, f, r) \
             ON CONFLICT (session) DO UPDATE SET fence = EXCLUDED.fence, record = EXCLUDED.record, quarantined = NULL",
            &[&sessions, &fences, &records],
        )?;
    }
    if !steps.is_empty() {
        let sessions: Vec<&str> = steps.iter().map(|(s, _, _)| *s).collect();
        let seqs: Vec<i64> = steps.iter().map(|(_, q, _)| *q).collect();
        let records: Vec<&[u8]> = steps.iter().map(|(_, _, r)| *r).collect();
        tx.execute(
            "INSERT INTO log (session, seq, record) \
             SELECT s, q, r FROM UNNEST($1::text[], $2::int8[], $3::bytea[]) AS t(s, q, r) \
             ON CONFLICT (session, seq) DO NOTHING",
            &[&sessions, &seqs, &records],
        )?;
    }
    if !trims.is_empty() {
        let sessions: Vec<&str> = trims.into_iter().collect();
        tx.execute(
            "DELETE FROM log AS l USING ( \
                SELECT session, seq FROM ( \
                    SELECT session, seq, row_number() OVER (PARTITION BY session ORDER BY seq DESC) AS rn \
                    FROM log WHERE session = ANY($1)) AS ranked \
                WHERE rn > $2) AS old \
             WHERE l.session = old.session AND l.seq = old.seq",
            &[&sessions, &(log_retention as i64)],
        )?;
    }
    tx.commit()?;
    Ok(refusals)
}
