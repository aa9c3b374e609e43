//! The timers of every session actor of a `Warden`, in one task.
//!
//! Each session actor has one deadline at a time (the core's `poll_timeout()`, or the end of a wait for
//! the disk): it arms it here with [`Timers::rearm`], and the timer task sends it one `Tick` when the
//! deadline comes. The deadlines sit in one ordered map, keyed by (instant, actor key), so a session
//! costs one map entry instead of a task of its own, and re-arming is a removal and an insertion. The
//! task sleeps until the earliest deadline (tokio's `sleep_until`, so paused time drives it in tests and
//! in the simulator) and is woken early only when a deadline earlier than every other one is armed.
//! Deadlines that fall due together are ticked in key order, so a replay under paused time ticks them in
//! the same order every time.
//!
//! When the clock reports a wall-clock jump (a suspend, a clock step), every armed actor gets a `Tick` at
//! once: its deadlines are wall-clock times, and those that fell in the jump take effect then.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ractor::ActorRef;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::message::SessionMsg;

/// The deadlines of one `Warden`'s session actors and the task that fires them.
pub(crate) struct Timers {
    inner: Arc<Inner>,
}

struct Inner {
    deadlines: Mutex<BTreeMap<(Instant, u64), ActorRef<SessionMsg>>>,
    /// Wakes the task: a new earliest deadline, or the end.
    wake: Notify,
    next_key: AtomicU64,
    closed: AtomicBool,
}

impl Inner {
    fn deadlines(&self) -> MutexGuard<'_, BTreeMap<(Instant, u64), ActorRef<SessionMsg>>> {
        // Every update is one map operation: a poisoned lock still holds a consistent map.
        self.deadlines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Timers {
    /// Starts the timer task on the current tokio runtime.
    pub(crate) fn start(clock: &Clock) -> Timers {
        let inner = Arc::new(Inner {
            deadlines: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            next_key: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        });
        let jumps = clock.check_interval().map(|_| clock.jumps());
        tokio::spawn(run(inner.clone(), clock.clone(), jumps));
        Timers { inner }
    }

    /// A key for a new actor (unique within this `Warden`).
    pub(crate) fn key(&self) -> u64 {
        self.inner.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Moves the deadline of the actor with `key` from `old` to `new` (either may be `None`).
    pub(crate) fn rearm(&self, key: u64, old: Option<Instant>, new: Option<Instant>, actor: &ActorRef<SessionMsg>) {
        let mut deadlines = self.inner.deadlines();
        if let Some(old) = old {
            deadlines.remove(&(old, key));
        }
        if let Some(new) = new {
            deadlines.insert((new, key), actor.clone());
            let earliest = deadlines.first_key_value().is_some_and(|((at, k), _)| (*at, *k) == (new, key));
            drop(deadlines);
            if earliest {
                self.inner.wake.notify_one();
            }
        }
    }
}

impl Timers {
    /// Forgets every armed deadline (the actors are gone: a shutdown ended them without `post_stop`).
    pub(crate) fn clear(&self) {
        let deadlines = std::mem::take(&mut *self.inner.deadlines());
        drop(deadlines);
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").field("armed", &self.inner.deadlines().len()).finish()
    }
}

/// The timer task: fires what is due, then sleeps until the earliest deadline, a new earlier one, or a
/// jump of the wall clock.
async fn run(inner: Arc<Inner>, clock: Clock, mut jumps: Option<watch::Receiver<u64>>) {
    let mut due = Vec::new();
    loop {
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let now = clock.monotonic_now();
        let next = {
            let mut deadlines = inner.deadlines();
            while let Some(entry) = deadlines.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            deadlines.first_key_value().map(|((at, _), _)| *at)
        };
        for actor in due.drain(..) {
            // A stopped actor is fine: its successor arms its own deadline.
            let _ = actor.cast(SessionMsg::Tick);
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let jumped = async {
            match jumps.as_mut() {
                Some(jumps) => jumps.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = inner.wake.notified() => {}
            open = jumped => {
                if open {
                    let actors: Vec<ActorRef<SessionMsg>> = inner.deadlines().values().cloned().collect();
                    for actor in actors {
                        let _ = actor.cast(SessionMsg::Tick);
                    }
                } else {
                    jumps = None;
                }
            }
        }
    }
}
