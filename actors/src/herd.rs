//! The slow path of `token()` for a herd: many requests that find no published lease ask the session
//! actor once between them.
//!
//! When a session has no lease to hand out (expired, logging in, refreshing past its lazy threshold),
//! every request takes the slow path. Instead of each sending its own message and waiting for its own
//! answer — a hundred thousand messages in, a hundred thousand answers out — the requests of a session
//! park here: one of them (the one that finds nobody asking) asks the actor, and when it gets its answer
//! it shares it and wakes the others at once. A woken request takes the lease from the cell if it is
//! published, else the shared answer if it is still current (not revoked, not past its usable end), or a
//! shared final error (`Invalid`, `Stopped`, `Closed`); otherwise it becomes the next one to ask. A
//! request that asks and is cancelled hands the asking on (its guard wakes the others).
//!
//! Limits stay what they were: at most `max_waiters` requests park per session (more are refused at once
//! with `Overloaded`), and each waits at most its own deadline (`request_timeout`). The core still sees
//! every request that asks, so single flight, lazy refreshes and idle timeouts work as before. The
//! parking state is allocated the first time a session takes the slow path.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use warden_engine::{Lease, RequestError};

/// The parked requests of one session.
#[derive(Debug, Default)]
pub(crate) struct Herd {
    state: Mutex<HerdState>,
    /// Woken when an answer is shared (or the one asking gave up).
    ready: Notify,
    /// Requests parked now.
    parked: AtomicU32,
}

#[derive(Debug, Default)]
struct HerdState {
    /// A request is asking the actor now.
    asking: bool,
    /// Counts answers shared (and askers that gave up): a parked request waits for the next round.
    round: u64,
    /// The last answer shared.
    answer: Option<Result<Lease, RequestError>>,
}

/// What a parked request does next.
pub(crate) enum Next<'a> {
    /// Take this answer.
    Answer(Result<Lease, RequestError>),
    /// Ask the actor (nobody else is); share the answer through the guard.
    Ask(Asking<'a>),
    /// Wait for the next round.
    Wait,
}

impl Herd {
    fn state(&self) -> MutexGuard<'_, HerdState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks one request, unless `max_waiters` already are. The returned guard unparks it.
    pub(crate) fn park(&self, max_waiters: u32) -> Option<Parked<'_>> {
        if self.parked.fetch_add(1, Ordering::AcqRel) >= max_waiters {
            self.parked.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let round = self.state().round;
        Some(Parked { herd: self, round })
    }
}

/// A parked request (unparked when dropped).
pub(crate) struct Parked<'a> {
    herd: &'a Herd,
    /// The last round this request has seen.
    round: u64,
}

impl<'a> Parked<'a> {
    /// A registration for the next wake-up, made before looking (so that no wake-up is missed).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'a> {
        self.herd.ready.notified()
    }

    /// Looks at the shared state: an answer of a round this request has not seen (if `usable`), else the
    /// turn to ask if nobody is, else wait.
    pub(crate) fn next(&mut self, usable: impl Fn(&Lease) -> bool) -> Next<'a> {
        let mut state = self.herd.state();
        if state.round > self.round {
            self.round = state.round;
            match &state.answer {
                Some(Ok(lease)) if usable(lease) => return Next::Answer(Ok(lease.clone())),
                Some(Err(error)) if is_final(error) => return Next::Answer(Err(error.clone())),
                _ => {}
            }
        }
        if state.asking {
            return Next::Wait;
        }
        state.asking = true;
        Next::Ask(Asking { herd: self.herd, done: false })
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.herd.parked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The turn to ask the actor. [`Asking::share`] hands the answer to the parked requests; dropped without
/// it (the request was cancelled), it passes the turn on.
pub(crate) struct Asking<'a> {
    herd: &'a Herd,
    done: bool,
}

impl Asking<'_> {
    /// Shares the actor's answer and wakes every parked request.
    pub(crate) fn share(mut self, answer: &Result<Lease, RequestError>) {
        self.finish(Some(answer.clone()));
    }

    fn finish(&mut self, answer: Option<Result<Lease, RequestError>>) {
        self.done = true;
        {
            let mut state = self.herd.state();
            state.asking = false;
            state.round = state.round.wrapping_add(1);
            state.answer = answer;
        }
        self.herd.ready.notify_waiters();
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(None);
        }
    }
}

/// An error every request of the session would get as well (the session's state, not the request's).
fn is_final(error: &RequestError) -> bool {
    matches!(error, RequestError::Invalid(_) | RequestError::Stopped | RequestError::Closed | RequestError::NotOwner)
}
