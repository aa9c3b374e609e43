//! The lock-free lease cell: how `token()` answers without touching the session actor.
//!
//! The session actor publishes its current [`Lease`] (token, generation, usable-until) into a
//! [`LeaseCell`] whenever the core says so, and withdraws it (publishes the empty lease) the moment the
//! core's deadline for it passes. Readers load it with arc-swap: no lock, no mailbox round trip, and no
//! reference-count traffic — a [`LeaseGuard`] borrows the published lease through arc-swap's per-thread
//! debt slots, so two threads reading the same lease do not fight over one cache line.
//!
//! The hot path does not read a clock (a clock read costs more than the whole load); correctness rests
//! on the actor withdrawing the lease at its `usable_until`, which the core sets `expiry_margin` before
//! the token's real expiry.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, Guard};
use warden_engine::{Generation, Grant, Lease, UnixMs};

/// The published lease of one session.
#[derive(Debug)]
pub struct LeaseCell {
    current: ArcSwap<Lease>,
    /// Set by readers when they take a lease; the actor clears it when it checks for idleness.
    used: AtomicBool,
}

impl Default for LeaseCell {
    fn default() -> LeaseCell {
        LeaseCell { current: ArcSwap::new(empty_lease()), used: AtomicBool::new(false) }
    }
}

/// The placeholder meaning "nothing published": generation zero, never handed out. One for the whole
/// process, shared by every cell that has nothing published.
fn empty_lease() -> Arc<Lease> {
    static EMPTY: OnceLock<Arc<Lease>> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            Arc::new(Lease {
                generation: Generation::NONE,
                grant: Arc::new(Grant::new("", UnixMs::EPOCH)),
                usable_until: UnixMs::EPOCH,
            })
        })
        .clone()
}

impl LeaseCell {
    /// The published lease, if there is one. Lock-free; marks the session as used.
    #[inline(always)]
    pub fn load(&self) -> Option<LeaseGuard> {
        let guard = self.current.load();
        if guard.generation == Generation::NONE {
            return None;
        }
        // Only write the flag when it is clear: a shared cache line that is only read stays cheap.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        Some(LeaseGuard { inner: guard })
    }

    /// The published lease, if there is one, without marking the session as used: for status pages and
    /// metrics, which must not keep an idle session alive.
    pub fn peek(&self) -> Option<Arc<Lease>> {
        let lease = self.current.load_full();
        (lease.generation != Generation::NONE).then_some(lease)
    }

    /// Replaces the published lease (`None` withdraws it).
    pub fn publish(&self, lease: Option<Lease>) {
        self.current.store(lease.map_or_else(empty_lease, Arc::new));
    }

    /// The generation published now (zero when none).
    pub fn published_generation(&self) -> Generation {
        self.current.load().generation
    }

    /// Whether a lease was taken since the last call (clears the flag).
    pub fn take_used(&self) -> bool {
        self.used.load(Ordering::Relaxed) && self.used.swap(false, Ordering::Relaxed)
    }
}

/// A lease handed to a caller: borrowed from the cell (hot path) or owned (answered by the actor).
///
/// Dereferences to [`Lease`]: `guard.token()`, `guard.generation`. Hold it only for the call it
/// authorises; use [`LeaseGuard::into_lease`] to keep it longer.
pub struct LeaseGuard {
    /// A borrowed lease (arc-swap debt slot) from the cell, or an owned `Arc` wrapped as a guard.
    inner: Guard<Arc<Lease>>,
}

impl LeaseGuard {
    /// A guard around a lease the actor sent.
    pub fn owned(lease: Lease) -> LeaseGuard {
        LeaseGuard { inner: Guard::from_inner(Arc::new(lease)) }
    }

    /// The lease as an owned value (clones the grant's `Arc` if borrowed).
    pub fn into_lease(self) -> Lease {
        Arc::unwrap_or_clone(Guard::into_inner(self.inner))
    }
}

impl Deref for LeaseGuard {
    type Target = Lease;

    #[inline]
    fn deref(&self) -> &Lease {
        &self.inner
    }
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Lease::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn publish_load_withdraw() {
        assert_send::<LeaseGuard>();
        let cell = LeaseCell::default();
        assert!(cell.load().is_none());
        assert!(!cell.take_used());
        let grant = Arc::new(Grant::new("tok", UnixMs::EPOCH));
        cell.publish(Some(Lease { generation: Generation(3), grant, usable_until: UnixMs::MAX }));
        let lease = cell.load().expect("published");
        assert_eq!((lease.generation, lease.token()), (Generation(3), "tok"));
        assert!(cell.take_used());
        assert!(!cell.take_used());
        assert_eq!(cell.peek().map(|l| l.generation), Some(Generation(3)));
        assert!(!cell.take_used(), "a look at the lease is not a use");
        cell.publish(None);
        assert!(cell.peek().is_none());
        assert!(cell.load().is_none());
        assert_eq!(lease.into_lease().generation, Generation(3), "a taken lease outlives its withdrawal");
    }
}
