//! Group commit: one store flush makes the durable writes of many sessions durable.
//!
//! A session actor writes a snapshot that must survive a crash with `Store::save_deferred`; when the
//! store answers `Pending::Flush`, the actor hands a [`Ticket`] to the [`GroupCommit`] of its `Warden`
//! and holds back what depends on the write (see `docs/runtime.md`, "Durable before handed out"). The
//! committer is one task: it takes every ticket queued so far, runs one `Store::flush` on tokio's blocking
//! pool, and then calls each ticket with the flush's result. Tickets that arrive while a flush runs wait
//! for the next one, so under load each flush serves everything that queued during the previous one, and
//! a lone write waits for one flush and no more: the delay is bounded by two flushes. While writes stream
//! in (the previous flush served more than one), the committer lingers [`LINGER`] before it takes a round,
//! so that each flush serves more of them; the bound grows by that much.
//!
//! A ticket is called only after a flush that started after it was submitted has returned, and the actor
//! submits a ticket only after its write returned: no write is reported durable before its flush. A flush
//! that fails reports its error to every ticket of its round (the sessions go on from memory and say so);
//! a flush that never returns is cut short by each session's own bounded wait.
//!
//! ```
//! # async fn demo() {
//! use std::sync::Arc;
//! use warden_actors::commit::GroupCommit;
//! use warden_adapters::MemoryStore;
//!
//! let commit = GroupCommit::start(Arc::new(MemoryStore::new()));
//! let (done, durable) = tokio::sync::oneshot::channel();
//! commit.submit(Box::new(move |result| {
//!     let _ = done.send(result);
//! }));
//! assert!(durable.await.unwrap().is_ok());
//! assert_eq!(commit.stats().flushes, 1);
//! # }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;
use warden_engine::{Store, StoreError};

/// What to call once the flush that covers a write has returned.
pub type Ticket = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What the committer has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Flushes run.
    pub flushes: u64,
    /// Tickets answered.
    pub tickets: u64,
    /// Flushes that failed.
    pub failures: u64,
}

/// The committer of one store. Dropping it ends its task once the tickets already queued are answered.
pub struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Vec<Ticket>>,
    wake: Notify,
    closed: AtomicBool,
    flushes: AtomicU64,
    tickets: AtomicU64,
    failures: AtomicU64,
}

impl GroupCommit {
    /// Starts the committer of `store` on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> GroupCommit {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Vec::new()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            tickets: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        // The task does not keep the store open: a `Warden` that is gone releases its database at once.
        tokio::spawn(run(inner.clone(), Arc::downgrade(&store)));
        GroupCommit { inner }
    }

    /// Queues a ticket for the next flush. The queue holds at most one ticket per write that asked for
    /// one; the runtime bounds those per session (`MAX_PENDING_DURABLE`).
    pub fn submit(&self, ticket: Ticket) {
        self.inner.queue.lock().unwrap_or_else(PoisonError::into_inner).push(ticket);
        self.inner.wake.notify_one();
    }

    /// What the committer has done so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            flushes: self.inner.flushes.load(Ordering::Relaxed),
            tickets: self.inner.tickets.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("stats", &self.stats()).finish()
    }
}

/// How long the committer lingers before taking a round while writes come in a stream (the previous
/// round served more than one write), so that one flush serves more of them.
pub const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// The committer's loop: take every queued ticket, flush once, answer them all.
async fn run(inner: Arc<Inner>, store: Weak<dyn Store>) {
    let mut last_round = 0usize;
    loop {
        if last_round > 1 {
            // Real time on the blocking pool, not tokio's timer: a paused clock must not move for it.
            let _ = tokio::task::spawn_blocking(|| std::thread::sleep(LINGER)).await;
        }
        let round = std::mem::take(&mut *inner.queue.lock().unwrap_or_else(PoisonError::into_inner));
        if round.is_empty() {
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            inner.wake.notified().await;
            continue;
        }
        let Some(flushing) = store.upgrade() else {
            let gone = StoreError::WriteFailed { detail: "the store was closed before the flush".to_owned() };
            for ticket in round {
                ticket(Err(gone.clone()));
            }
            continue;
        };
        // On the blocking pool: a flush is an fsync, and while it runs tokio's paused clock stands still.
        let result = match tokio::task::spawn_blocking(move || flushing.flush()).await {
            Ok(result) => result,
            Err(error) => Err(StoreError::WriteFailed { detail: format!("the flush did not finish: {error}") }),
        };
        inner.flushes.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            inner.failures.fetch_add(1, Ordering::Relaxed);
        }
        inner.tickets.fetch_add(round.len() as u64, Ordering::Relaxed);
        last_round = round.len();
        for ticket in round {
            ticket(result.clone());
        }
    }
}
