//! The workload driver: strategies issuing requests through `SessionHandle::execute` during market hours.
//!
//! One task walks the merged arrival times of every strategy in order (periodic arrivals line strategies
//! up on the same instants, as bar-driven strategies do; Poisson arrivals spread them). Each request is
//! an `execute` future polled once on the spot: served from the published lease, it completes at once;
//! otherwise it is spawned and completes when the session answers, and the virtual time it waited is its
//! delay. While the simulated process is down, its strategies are down too: no requests are issued.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinSet;
use warden_actors::{ExecuteError, SessionHandle};
use warden_engine::rng::SplitMix64;
use warden_engine::{Idempotency, UnixMs};

use super::World;
use super::recorder::{Buckets, Recorder};
use crate::model::ModelRequest;
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

fn bucket_of(start: UnixMs, t: UnixMs, width_ms: u64) -> usize {
    let offset = u64::try_from(t.as_millis().saturating_sub(start.as_millis()).max(0)).unwrap_or(0);
    usize::try_from(offset / width_ms.max(1)).unwrap_or(usize::MAX)
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
        let clock = self.world.clock.clone();
        let end = self.world.scenario.end;
        let mut in_flight = JoinSet::new();
        let strategies = self.world.scenario.workload.strategies;
        let rate = self.world.scenario.workload.rate_per_strategy;
        if strategies > 0 && rate > 0.0 {
            let mut arrivals = BinaryHeap::new();
            for strategy in 0..strategies {
                let first = self.world.scenario.start.saturating_add(self.first_gap(rate));
                if let Some(t) = self.next_open(first) {
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
                self.issue(t, strategy, &mut in_flight);
                let gap = self.gap(rate);
                if let Some(next) = self.next_open(t.saturating_add(gap)) {
                    arrivals.push(Reverse((next, strategy)));
                }
                // Reap finished requests now and then so the set stays small.
                while let Some(Some(_)) = in_flight.try_join_next().map(Some) {}
            }
        }
        tokio::time::sleep_until(clock.instant_at(end)).await;
        while in_flight.join_next().await.is_some() {}
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

    /// `t` if the market is open then, else the next opening; `None` if it never opens again.
    fn next_open(&self, t: UnixMs) -> Option<UnixMs> {
        let windows = &self.world.scenario.workload.open_windows;
        let i = windows.partition_point(|w| w.to <= t);
        windows.get(i).map(|w| w.from.max(t))
    }

    fn issue(&mut self, t: UnixMs, strategy: u32, in_flight: &mut JoinSet<()>) {
        let handles = self.handles.load();
        if handles.is_empty() {
            return; // the process is down, and its strategies with it
        }
        let index = strategy as usize % handles.len();
        let handle = handles[index].clone();
        let model = self.world.models[index].clone();
        let workload = &self.world.scenario.workload;
        let kind = workload.pick(self.rng.next_unit());
        let idempotent = workload.kind(kind).is_none_or(|k| k.idempotent);
        let request = ModelRequest { kind, idempotent, op_id: self.next_op };
        self.next_op += 1;
        let idempotency = if idempotent { Idempotency::Idempotent } else { Idempotency::NonIdempotent };
        let clock = self.world.clock.clone();
        let start = self.world.scenario.start;
        let call_clock = clock.clone();
        let mut future = Box::pin(async move {
            handle
                .execute(idempotency, |lease| {
                    std::future::ready(model.request(call_clock.now(), lease.token(), &request).result)
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
                in_flight.spawn(async move {
                    let result = future.await;
                    if let Ok(mut totals) = totals.lock() {
                        totals.record(start, t, clock.now(), &result);
                    }
                });
            }
        }
    }
}
