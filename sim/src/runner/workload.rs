//! The workload driver: strategies issuing requests through `SessionHandle::execute` during market hours.
//!
//! One task walks the merged arrival times of every strategy in order (periodic arrivals line strategies
//! up on the same instants, as bar-driven strategies do; Poisson arrivals spread them over the open
//! market's time). Each request is an `execute` future polled once on the spot — it takes the lease (or
//! starts waiting for one) at the instant it is issued — and then spawned: every attempt is a round trip
//! through the network (`BrokerModel::call`), so it completes when its answer is back, and the virtual
//! time from issue to answer is its delay. While the simulated process is down, its strategies are down
//! too: no requests are issued.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use warden_actors::{ExecuteError, SessionHandle};
use warden_engine::rng::SplitMix64;
use warden_engine::{Idempotency, UnixMs};

use super::World;
use super::recorder::{Buckets, Recorder};
use crate::model::{ModelRequest, Window};
use crate::report::DelayHistogram;
use crate::scenario::Arrival;

/// How many buckets the timeline's request chart has.
const BUCKETS: u64 = 240;

/// What the workload saw.
#[derive(Debug, Default)]
pub(crate) struct WorkloadTotals {
    pub(crate) issued: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) outcome_unknown: u64,
    pub(crate) delays: DelayHistogram,
    pub(crate) buckets: Buckets,
}

impl WorkloadTotals {
    fn record(&mut self, start: UnixMs, issued_at: UnixMs, done_at: UnixMs, result: &Result<(), ExecuteError>) {
        let bucket = bucket_of(start, issued_at, self.buckets.width_ms);
        match result {
            Ok(()) => {
                self.ok += 1;
                if let Some(n) = self.buckets.ok.get_mut(bucket) {
                    *n += 1;
                }
            }
            Err(error) => {
                if matches!(error, ExecuteError::OutcomeUnknown(_)) {
                    self.outcome_unknown += 1;
                } else {
                    self.failed += 1;
                }
                if let Some(n) = self.buckets.failed.get_mut(bucket) {
                    *n += 1;
                }
            }
        }
        self.delays.record(done_at.saturating_duration_since(issued_at));
    }
}

/// The instant `gap` of open time after `t` among sorted, disjoint `windows` (see
/// [`Workload::after_open_time`]).
fn after_open_time(windows: &[Window], t: UnixMs, gap: Duration) -> Option<UnixMs> {
    let mut i = windows.partition_point(|w| w.to <= t);
    let mut from = t;
    let mut left = gap;
    while let Some(w) = windows.get(i) {
        from = from.max(w.from);
        let open = w.to.saturating_duration_since(from);
        if left < open {
            return Some(from.saturating_add(left));
        }
        left -= open;
        i += 1;
    }
    None
}

fn bucket_of(start: UnixMs, t: UnixMs, width_ms: u64) -> usize {
    let offset = u64::try_from(t.as_millis().saturating_sub(start.as_millis()).max(0)).unwrap_or(0);
    usize::try_from(offset / width_ms.max(1)).unwrap_or(usize::MAX)
}

/// Counts the requests still waiting for their answer, so that the run can wait for the last one
/// (a plain count: cheaper than a `JoinSet` for a million short tasks).
#[derive(Clone, Default)]
struct InFlight {
    inner: Arc<(AtomicUsize, Notify)>,
}

/// One request in flight; dropping it counts the request done.
struct InFlightGuard(Arc<(AtomicUsize, Notify)>);

impl InFlight {
    fn start(&self) -> InFlightGuard {
        self.inner.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.inner.clone())
    }

    async fn all_done(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.inner.0.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

/// Drives the scenario's workload.
pub(crate) struct Workload {
    world: Arc<World>,
    handles: Arc<ArcSwap<Vec<SessionHandle>>>,
    totals: Arc<Mutex<WorkloadTotals>>,
    rng: SplitMix64,
    next_op: u64,
}

impl Workload {
    pub(crate) fn new(world: Arc<World>, handles: Arc<ArcSwap<Vec<SessionHandle>>>, _recorder: Recorder) -> Workload {
        let span_ms = u64::try_from(world.scenario.duration.as_millis()).unwrap_or(u64::MAX);
        let width_ms = span_ms.div_ceil(BUCKETS).max(1);
        let buckets = Buckets { width_ms, ok: vec![0; BUCKETS as usize], failed: vec![0; BUCKETS as usize] };
        let totals = WorkloadTotals { buckets, ..WorkloadTotals::default() };
        let rng = SplitMix64::new(world.seed ^ 0x5EED_F00D);
        Workload { world, handles, totals: Arc::new(Mutex::new(totals)), rng, next_op: 1 }
    }

    /// Issues every request of the scenario, waits for the ones still in flight, and returns the totals.
    pub(crate) async fn run(mut self) -> WorkloadTotals {
        let clock = self.world.clock;
        let end = self.world.scenario.end;
        let in_flight = InFlight::default();
        let strategies = self.world.scenario.workload.strategies;
        let rate = self.world.scenario.workload.rate_per_strategy;
        if strategies > 0 && rate > 0.0 {
            let mut arrivals = BinaryHeap::new();
            for strategy in 0..strategies {
                let gap = self.first_gap(rate);
                if let Some(t) = self.after_open_time(self.world.scenario.start, gap) {
                    arrivals.push(Reverse((t, strategy)));
                }
            }
            let mut now = self.world.scenario.start;
            while let Some(Reverse((t, strategy))) = arrivals.pop() {
                if t >= end {
                    break;
                }
                if t > now {
                    tokio::time::sleep_until(clock.instant_at(t)).await;
                    now = t;
                }
                self.issue(t, strategy, &in_flight);
                let gap = self.gap(rate);
                if let Some(next) = self.after_open_time(t, gap) {
                    arrivals.push(Reverse((next, strategy)));
                }
            }
        }
        tokio::time::sleep_until(clock.instant_at(end)).await;
        in_flight.all_done().await;
        std::mem::take(&mut *self.totals.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The first arrival's offset: periodic strategies start together, Poisson ones at random.
    fn first_gap(&mut self, rate: f64) -> Duration {
        match self.world.scenario.workload.arrival {
            Arrival::Periodic => Duration::ZERO,
            Arrival::Poisson => self.gap(rate),
        }
    }

    /// The time to a strategy's next request.
    fn gap(&mut self, rate: f64) -> Duration {
        let mean_s = 1.0 / rate;
        let seconds = match self.world.scenario.workload.arrival {
            Arrival::Periodic => mean_s,
            Arrival::Poisson => -(1.0 - self.rng.next_unit()).ln() * mean_s,
        };
        Duration::from_millis(((seconds * 1000.0).round() as u64).max(1))
    }

    /// The instant `gap` of open-market time after `t` (from the next opening if the market is closed at
    /// `t`): a strategy's clock runs only while the market is open, so Poisson arrivals stay spread at
    /// the open instead of piling up on it. `None` if the market does not stay open that long again.
    fn after_open_time(&self, t: UnixMs, gap: Duration) -> Option<UnixMs> {
        after_open_time(&self.world.scenario.workload.open_windows, t, gap)
    }

    fn issue(&mut self, t: UnixMs, strategy: u32, in_flight: &InFlight) {
        let handles = self.handles.load();
        if handles.is_empty() {
            return; // the process is down, and its strategies with it
        }
        let index = strategy as usize % handles.len();
        let handle = handles[index].clone();
        let workload = &self.world.scenario.workload;
        let kind = workload.pick(self.rng.next_unit());
        let idempotent = workload.kind(kind).is_none_or(|k| k.idempotent);
        let request = ModelRequest { kind, idempotent, op_id: self.next_op };
        self.next_op += 1;
        let idempotency = if idempotent { Idempotency::Idempotent } else { Idempotency::NonIdempotent };
        let start = self.world.scenario.start;
        let world = self.world.clone();
        // Every attempt is a call through the network: judged by the broker when it arrives, answered
        // after its whole round trip (`BrokerModel::call`).
        let mut future = Box::pin(async move {
            handle
                .execute(idempotency, |lease| {
                    let world = world.clone();
                    async move { world.models[index].call(world.clock.now(), lease.token(), &request).await }
                })
                .await
        });
        if let Ok(mut totals) = self.totals.lock() {
            totals.issued += 1;
        }
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => {
                if let Ok(mut totals) = self.totals.lock() {
                    totals.record(start, t, t, &result);
                }
            }
            Poll::Pending => {
                let totals = self.totals.clone();
                let world = self.world.clone();
                let guard = in_flight.start();
                tokio::spawn(async move {
                    let _guard = guard;
                    let result = future.await;
                    if let Ok(mut totals) = totals.lock() {
                        totals.record(start, t, world.clock.now(), &result);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(from: i64, to: i64) -> Window {
        Window { from: UnixMs::from_millis(from), to: UnixMs::from_millis(to) }
    }

    #[test]
    fn open_time_skips_the_closed_hours() {
        let windows = [w(100, 200), w(1_000, 1_100)];
        let at = |t: i64, gap: u64| after_open_time(&windows, UnixMs::from_millis(t), Duration::from_millis(gap));
        assert_eq!(at(0, 10), Some(UnixMs::from_millis(110)));
        assert_eq!(at(150, 20), Some(UnixMs::from_millis(170)));
        // 50 ms left today, the other 30 after the next opening.
        assert_eq!(at(150, 80), Some(UnixMs::from_millis(1_030)));
        assert_eq!(at(150, 150), None);
        assert_eq!(at(5_000, 1), None);
    }
}
