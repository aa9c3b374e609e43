//! The write queue between a [`PostgresStore`](super::PostgresStore) handle and its worker thread, and
//! the overlay that lets reads see writes not yet committed.
//!
//! Every write (a sealed snapshot, a sealed log step, a remove) gets an increasing id when it is queued;
//! the worker takes them in that order, in batches, and commits each batch in one transaction. `done` is
//! the highest id such that every write up to it was committed or refused (for its fence): a flush
//! waits until `done` reaches the last id queued before it. A batch that fails goes back to the front of
//! the queue and is retried (it was never reported durable), so `done` never passes a write that is not
//! in the database. The overlay keeps, per session, what is queued but not committed (the latest
//! snapshot or remove, and the log steps) and is cleaned as batches commit: a `load` or `read_log`
//! consults it first (read your writes).

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use warden_engine::{Fence, SessionEvent, SessionId, Snapshot, StoreError};

/// One queued write.
#[derive(Debug)]
pub(super) struct Write {
    /// Its place in the queue (ids only grow).
    pub id: u64,
    /// The session it writes.
    pub session: SessionId,
    /// The writer's fence; `None` for an unfenced write (a store with one writer).
    pub fence: Option<Fence>,
    /// What it writes.
    pub kind: WriteKind,
}

/// What a queued write does.
#[derive(Debug)]
pub(super) enum WriteKind {
    /// Replaces the snapshot with this sealed record.
    Snapshot(Vec<u8>),
    /// Adds a sealed log step at `seq`; `trim` asks the batch to drop the session's steps beyond the
    /// retention.
    LogStep { seq: u64, record: Vec<u8>, trim: bool },
    /// Forgets the session's snapshot and log.
    Remove,
}

/// What a session has queued and not committed.
#[derive(Default)]
pub(super) struct Overlay {
    /// The latest snapshot write: its id and the snapshot (`None`: a remove came after it).
    pub snapshot: Option<(u64, Option<Box<Snapshot>>)>,
    /// The id of a queued remove: the database's log of the session does not count before it commits.
    pub removed: Option<u64>,
    /// Queued log steps: id, sequence number, entries.
    pub steps: Vec<(u64, u64, Vec<SessionEvent>)>,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.removed.is_none() && self.steps.is_empty()
    }

    /// Forgets what the writes up to `done` put here (they are in the database now, or were refused).
    fn settle(&mut self, done: u64) {
        if self.snapshot.as_ref().is_some_and(|(id, _)| *id <= done) {
            self.snapshot = None;
        }
        if self.removed.is_some_and(|id| id <= done) {
            self.removed = None;
        }
        self.steps.retain(|(id, _, _)| *id > done);
    }
}

/// A refusal: a write under `fence` found `current` holding the lease.
#[derive(Clone, Copy, Debug)]
pub(super) struct Refusal {
    pub fence: Fence,
    pub current: Fence,
}

/// Where a session's log is: the fence its next sequence numbers belong to, and the next one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor {
    pub fence: Fence,
    pub next: u64,
    /// Steps appended through this handle since the last trim.
    pub since_trim: u32,
}

/// What the handle and the worker share, under one lock.
#[derive(Default)]
pub(super) struct State {
    /// The id the next write gets.
    pub next_id: u64,
    /// Every write with an id up to this one is committed or refused.
    pub done: u64,
    /// Writes queued and not yet taken by the worker.
    pub writes: VecDeque<Write>,
    /// Writes the worker is committing now.
    pub in_flight: usize,
    /// Per session: what is queued and not committed.
    pub overlay: HashMap<SessionId, Overlay>,
    /// Per session: the newest fence whose write was refused.
    pub refused: HashMap<SessionId, Refusal>,
    /// Per session: its log cursor in this handle.
    pub cursors: HashMap<SessionId, Cursor>,
    /// Reads and ownership calls waiting for the worker.
    pub jobs: VecDeque<Box<dyn super::worker::Job>>,
    /// Why the last attempt to reach the database failed (`None` once one succeeded).
    pub last_error: Option<String>,
    /// The store was dropped: the worker commits what is queued (bounded) and stops.
    pub closing: bool,
    /// The worker is gone (it panicked): nothing will be committed any more.
    pub stopped: bool,
    /// Counters.
    pub stats: super::PostgresStats,
}

/// The state and the two things to wait on: `work` (the worker: something to do) and `progress`
/// (flushes and writers held back by a full queue: a batch finished).
#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    pub work: Condvar,
    pub progress: Condvar,
}

/// How long one wait on a condition variable lasts before the waiter counts it against its bound: the
/// bounds are counted in these slices, so no clock is read.
pub(super) const WAIT_SLICE: Duration = Duration::from_millis(20);

impl Shared {
    pub fn new() -> Shared {
        let shared = Shared::default();
        shared.lock().next_id = 1;
        shared
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under the lock leaves the state consistent, so a panic elsewhere changes nothing.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (one slice at most) for progress; `true` if the slice ran out.
    pub fn wait_progress<'a>(&self, guard: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
        let (guard, timeout) = self.progress.wait_timeout(guard, WAIT_SLICE).unwrap_or_else(PoisonError::into_inner);
        (guard, timeout.timed_out())
    }

    /// Queues a write (waiting, bounded, while the queue is full) and records it in the overlay with
    /// `overlay`. Returns its id.
    pub fn enqueue(
        &self,
        session: &SessionId,
        fence: Option<Fence>,
        kind: WriteKind,
        limits: &QueueLimits,
        overlay: impl FnOnce(&mut Overlay, u64),
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(StoreError::WriteFailed { detail: "the PostgreSQL store's worker stopped".to_owned() });
        }
        if let (Some(fence), Some(refusal)) = (fence, state.refused.get(session))
            && fence <= refusal.fence
        {
            return Err(fenced(session, fence, refusal.current));
        }
        let mut slices = limits.full_wait_slices;
        while state.writes.len() + state.in_flight >= limits.max_queued_writes {
            if state.closing {
                return Err(StoreError::WriteFailed { detail: "the PostgreSQL store is closing".to_owned() });
            }
            let (next, timed_out) = self.wait_progress(state);
            state = next;
            if timed_out {
                slices = slices.saturating_sub(1);
                if slices == 0 {
                    return Err(StoreError::WriteFailed {
                        detail: format!(
                            "the PostgreSQL write queue stayed full ({} writes) for {:?}{}",
                            limits.max_queued_writes,
                            WAIT_SLICE * limits.full_wait_slices,
                            last_error_text(&state)
                        ),
                    });
                }
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        overlay(state.overlay.entry(session.clone()).or_default(), id);
        state.writes.push_back(Write { id, session: session.clone(), fence, kind });
        drop(state);
        self.work.notify_one();
        Ok(id)
    }

    /// Waits, bounded, until every write up to `id` is committed or refused.
    pub fn wait_done(&self, id: u64, slices: u32, what: &str, place: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        let mut left = slices;
        while state.done < id {
            if state.stopped {
                return Err(StoreError::Io {
                    path: place.to_owned(),
                    detail: format!("{what}: the store's worker stopped; queued writes were not committed"),
                });
            }
            let (next, timed_out) = self.wait_progress(state);
            state = next;
            if timed_out {
                left = left.saturating_sub(1);
                if left == 0 {
                    let waiting = id.saturating_sub(state.done);
                    return Err(StoreError::Io {
                        path: place.to_owned(),
                        detail: format!(
                            "{what}: {waiting} queued write(s) not committed within {:?}{}; they stay queued and are \
                             retried, none of them is durable yet",
                            WAIT_SLICE * slices,
                            last_error_text(&state)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// After a batch up to `done` committed: settles the overlay of its sessions, records refusals, and
    /// wakes the waiters.
    pub fn committed(&self, batch: &[Write], refusals: &[(SessionId, Refusal)], done: u64) {
        let mut state = self.lock();
        state.done = state.done.max(done);
        state.in_flight = 0;
        state.last_error = None;
        for write in batch {
            if let Some(overlay) = state.overlay.get_mut(&write.session) {
                overlay.settle(done);
                if overlay.is_empty() {
                    state.overlay.remove(&write.session);
                }
            }
        }
        for (session, refusal) in refusals {
            let newest = state.refused.entry(session.clone()).or_insert(*refusal);
            if refusal.fence >= newest.fence {
                *newest = *refusal;
            }
            // The cursor of a refused fence is of no use any more.
            if state.cursors.get(session).is_some_and(|cursor| cursor.fence <= refusal.fence) {
                state.cursors.remove(session);
            }
        }
        state.stats.batches += 1;
        state.stats.writes_committed += (batch.len() - refusals.len()) as u64;
        state.stats.writes_refused += refusals.len() as u64;
        drop(state);
        self.progress.notify_all();
    }

    /// After a batch failed: puts it back at the front of the queue, in order, to be retried.
    pub fn failed(&self, batch: Vec<Write>, error: String) {
        let mut state = self.lock();
        state.in_flight = 0;
        for write in batch.into_iter().rev() {
            state.writes.push_front(write);
        }
        state.last_error = Some(error);
        state.stats.batch_failures += 1;
        drop(state);
        self.progress.notify_all();
    }
}

/// The bounds of the queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct QueueLimits {
    pub max_queued_writes: usize,
    pub full_wait_slices: u32,
}

pub(super) fn fenced(session: &SessionId, fence: Fence, current: Fence) -> StoreError {
    StoreError::Fenced { session: session.to_string(), fence, current }
}

fn last_error_text(state: &State) -> String {
    match &state.last_error {
        Some(error) => format!(" (the last attempt failed: {error})"),
        None => String::new(),
    }
}
