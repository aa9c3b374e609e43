//! The bounded table of requests waiting for a token, each with a deadline.
//!
//! Ordered two ways: by id (to cancel or answer one) and by deadline (to time out the earliest in
//! O(log n)). Both are B-trees, so iteration order — and hence the output trace — is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Generation, WaiterId};
use crate::time::UnixMs;

/// One waiting request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) deadline: UnixMs,
    pub(crate) newer_than: Option<Generation>,
}

/// Waiting requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Waiters {
    by_id: BTreeMap<WaiterId, Waiter>,
    by_deadline: BTreeSet<(UnixMs, WaiterId)>,
}

impl Waiters {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn contains(&self, id: WaiterId) -> bool {
        self.by_id.contains_key(&id)
    }

    pub(crate) fn insert(&mut self, id: WaiterId, waiter: Waiter) {
        if let Some(old) = self.by_id.insert(id, waiter) {
            self.by_deadline.remove(&(old.deadline, id));
        }
        self.by_deadline.insert((waiter.deadline, id));
    }

    pub(crate) fn remove(&mut self, id: WaiterId) -> Option<Waiter> {
        let waiter = self.by_id.remove(&id)?;
        self.by_deadline.remove(&(waiter.deadline, id));
        Some(waiter)
    }

    pub(crate) fn earliest_deadline(&self) -> Option<UnixMs> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the requests whose deadline is at or before `now`, earliest first.
    pub(crate) fn take_expired(&mut self, now: UnixMs) -> Vec<WaiterId> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            self.by_deadline.pop_first();
            self.by_id.remove(&id);
            expired.push(id);
        }
        expired
    }

    /// Removes and returns the requests that a grant of `generation` satisfies, earliest deadline first.
    pub(crate) fn take_satisfied_by(&mut self, generation: Generation) -> Vec<WaiterId> {
        let ids: Vec<WaiterId> = self
            .by_deadline
            .iter()
            .filter(|(_, id)| self.by_id.get(id).is_some_and(|w| w.newer_than.is_none_or(|g| generation > g)))
            .map(|(_, id)| *id)
            .collect();
        for id in &ids {
            self.remove(*id);
        }
        ids
    }

    /// Removes and returns every request, earliest deadline first.
    pub(crate) fn take_all(&mut self) -> Vec<WaiterId> {
        self.by_id.clear();
        std::mem::take(&mut self.by_deadline).into_iter().map(|(_, id)| id).collect()
    }
}
