//! The workload driver: strategies and scripted bursts issuing requests through `SessionHandle::execute`.
//!
//! One task walks the merged arrival times of every strategy and every `[[workload.at]]` burst in order
//! (periodic arrivals line strategies up on the same instants, as bar-driven strategies do; Poisson
//! arrivals spread them over the open market's time; bursts go out at their instant, open or not). Each
//! request is an `execute` future polled once on the spot — it takes the lease (or starts waiting for
//! one) at the instant it is issued — and then spawned: every attempt is a round trip through the network
//! (`BrokerModel::call`), so it completes when its answer is back, and the virtual time from issue to
//! answer is its delay. While the simulated process is down its strategies are down too: nothing is
//! issued; a request whose process died before its answer came back never gets an answer (an order's
//! outcome is then unknown).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use warden_actors::{ExecuteError, LeaseGuard, SessionHandle};
use warden_engine::rng::SplitMix64;
use warden_engine::{Idempotency, UnixMs};

use super::failure::failure_kind;
use super::recorder::Buckets;
use super::{ProgressSink, World};
use crate::model::{KindId, ModelRequest, Window};
use crate::report::{DelayHistogram, FailureCounts, FailureKind, InvalidCounts, KindCounts};
use crate::scenario::Arrival;

/// How many times a run wakes to report its progress (always, so that a listener changes nothing).
const PROGRESS_MARKS: u32 = 200;

/// The width of a bucket of the timeline's request chart.
const BUCKET_WIDTH: Duration = Duration::from_secs(300);

/// How a request ended, as its strategy saw it.
enum Outcome {
    Ok,
    Failed(FailureKind),
}

/// What the workload saw.
#[derive(Debug, Default)]
pub(crate) struct WorkloadTotals {
    pub(crate) issued: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) outcome_unknown: u64,
    /// From issue to answer.
    pub(crate) delays: DelayHistogram,
    /// From issue to the first attempt's send.
    pub(crate) waits: DelayHistogram,
    pub(crate) failed_by: FailureCounts,
    pub(crate) invalid_by: InvalidCounts,
    /// Per mix entry.
    pub(crate) by_kind: Vec<KindCounts>,
    /// Requests over time, if a timeline was asked for.
    pub(crate) buckets: Option<Buckets>,
}

impl WorkloadTotals {
    fn record(&mut self, start: UnixMs, kind: KindId, issued_at: UnixMs, done_at: UnixMs, outcome: &Outcome) {
        let per_kind = self.by_kind.get_mut(usize::from(kind.0));
        let ok = matches!(outcome, Outcome::Ok);
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                if let Some(k) = per_kind {
                    k.ok += 1;
                }
            }
            Outcome::Failed(why) => {
                self.failed_by.add(*why, &mut self.invalid_by);
                let unknown = *why == FailureKind::OutcomeUnknown;
                if unknown {
                    self.outcome_unknown += 1;
                } else {
                    self.failed += 1;
                }
                if let Some(k) = per_kind {
                    if unknown {
                        k.outcome_unknown += 1;
                    } else {
                        k.failed += 1;
                    }
                }
            }
        }
        if let Some(buckets) = &mut self.buckets {
            let bucket = bucket_of(start, issued_at, buckets.width_ms);
            let counts = if ok { &mut buckets.ok } else { &mut buckets.failed };
            if let Some(n) = counts.get_mut(bucket) {
                *n += 1;
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

/// What every request of the run shares: the world and the totals.
struct Shared {
    world: Arc<World>,
    totals: Mutex<WorkloadTotals>,
}

impl Shared {
    fn totals(&self) -> std::sync::MutexGuard<'_, WorkloadTotals> {
        // A panic while the lock was held leaves counters half-updated, nothing worse: keep counting.
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who sends the next request.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// The `n`-th `[[workload.at]]` burst (before strategies at the same instant).
    Burst(usize),
    /// A strategy.
    Strategy(u32),
}

/// Drives the scenario's workload.
pub(crate) struct Workload {
    shared: Arc<Shared>,
    progress: Option<ProgressSink>,
    /// The next progress mark (1..PROGRESS_MARKS).
    next_mark: u32,
    handles: Arc<ArcSwap<Vec<SessionHandle>>>,
    rng: SplitMix64,
    next_op: u64,
}

impl Workload {
    pub(crate) fn new(
        world: Arc<World>,
        handles: Arc<ArcSwap<Vec<SessionHandle>>>,
        timeline: bool,
        progress: Option<ProgressSink>,
    ) -> Workload {
        let buckets = timeline.then(|| {
            let width_ms = BUCKET_WIDTH.as_millis() as u64;
            let span_ms = u64::try_from(world.scenario.duration.as_millis()).unwrap_or(u64::MAX);
            let n = usize::try_from(span_ms.div_ceil(width_ms)).unwrap_or(0).max(1);
            Buckets { width_ms, ok: vec![0; n], failed: vec![0; n] }
        });
        let kinds = world.scenario.workload.mix.len();
        let totals =
            WorkloadTotals { buckets, by_kind: vec![KindCounts::default(); kinds], ..WorkloadTotals::default() };
        let rng = SplitMix64::new(world.seed ^ 0x5EED_F00D);
        let shared = Arc::new(Shared { world, totals: Mutex::new(totals) });
        Workload { shared, progress, next_mark: 1, handles, rng, next_op: 1 }
    }

    /// The instant of progress mark `k`.
    fn mark_at(&self, k: u32) -> UnixMs {
        let scenario = &self.world().scenario;
        let ms = u64::try_from(scenario.duration.as_millis()).unwrap_or(u64::MAX);
        scenario.start.saturating_add(Duration::from_millis(ms / u64::from(PROGRESS_MARKS) * u64::from(k)))
    }

    /// Sleeps through the progress marks before `t`, reporting each.
    async fn marks_until(&mut self, t: UnixMs) {
        while self.next_mark < PROGRESS_MARKS && self.mark_at(self.next_mark) < t {
            let mark = self.mark_at(self.next_mark);
            tokio::time::sleep_until(self.world().clock.instant_at(mark)).await;
            if let Some(progress) = &self.progress {
                progress.report(f64::from(self.next_mark) / f64::from(PROGRESS_MARKS));
            }
            self.next_mark += 1;
        }
    }

    fn world(&self) -> &World {
        &self.shared.world
    }

    /// Issues every request of the scenario, waits for the ones still in flight, and returns the totals.
    pub(crate) async fn run(mut self) -> WorkloadTotals {
        let world = self.shared.world.clone();
        let scenario = &world.scenario;
        let end = scenario.end;
        let in_flight = InFlight::default();
        let rate = scenario.workload.rate_per_strategy;
        let mut arrivals = BinaryHeap::new();
        for (i, burst) in scenario.workload.scripted.iter().enumerate() {
            arrivals.push(Reverse((burst.at, Source::Burst(i))));
        }
        if rate > 0.0 {
            for strategy in 0..scenario.workload.strategies {
                let gap = self.first_gap(rate);
                if let Some(t) = self.after_open_time(scenario.start, gap) {
                    arrivals.push(Reverse((t, Source::Strategy(strategy))));
                }
            }
        }
        let mut now = scenario.start;
        while let Some(Reverse((t, source))) = arrivals.pop() {
            if t >= end {
                break;
            }
            self.marks_until(t).await;
            if t > now {
                tokio::time::sleep_until(world.clock.instant_at(t)).await;
                now = t;
            }
            match source {
                Source::Burst(i) => {
                    let burst = scenario.workload.scripted[i];
                    for n in 0..burst.count {
                        self.issue(t, burst.session.unwrap_or(n as usize), burst.kind, &in_flight);
                    }
                }
                Source::Strategy(strategy) => {
                    let kind = scenario.workload.pick(self.rng.next_unit());
                    self.issue(t, strategy as usize, kind, &in_flight);
                    let gap = self.gap(rate);
                    if let Some(next) = self.after_open_time(t, gap) {
                        arrivals.push(Reverse((next, source)));
                    }
                }
            }
        }
        self.marks_until(end).await;
        tokio::time::sleep_until(world.clock.instant_at(end)).await;
        in_flight.all_done().await;
        if let Some(progress) = &self.progress {
            progress.report(1.0);
        }
        std::mem::take(&mut *self.shared.totals())
    }

    /// The first arrival's offset: periodic strategies start together, Poisson ones at random.
    fn first_gap(&mut self, rate: f64) -> Duration {
        match self.world().scenario.workload.arrival {
            Arrival::Periodic => Duration::ZERO,
            Arrival::Poisson => self.gap(rate),
        }
    }

    /// The time to a strategy's next request.
    fn gap(&mut self, rate: f64) -> Duration {
        let mean_s = 1.0 / rate;
        let seconds = match self.world().scenario.workload.arrival {
            Arrival::Periodic => mean_s,
            Arrival::Poisson => -(1.0 - self.rng.next_unit()).ln() * mean_s,
        };
        Duration::from_millis(((seconds * 1000.0).round() as u64).max(1))
    }

    /// The instant `gap` of open-market time after `t` (from the next opening if the market is closed at
    /// `t`): a strategy's clock runs only while the market is open, so Poisson arrivals stay spread at
    /// the open instead of piling up on it. `None` if the market does not stay open that long again.
    fn after_open_time(&self, t: UnixMs, gap: Duration) -> Option<UnixMs> {
        after_open_time(&self.world().scenario.workload.open_windows, t, gap)
    }

    /// Issues one request of `kind` at `t` to session `slot % sessions`.
    fn issue(&mut self, t: UnixMs, slot: usize, kind: KindId, in_flight: &InFlight) {
        let handles = self.handles.load();
        if handles.is_empty() {
            return; // the process is down, and its strategies with it
        }
        let index = slot % handles.len();
        let handle = handles[index].clone();
        let idempotent = self.world().scenario.workload.kind(kind).is_none_or(|k| k.idempotent);
        let request = ModelRequest { kind, idempotent, op_id: self.next_op };
        self.next_op += 1;
        let idempotency = if idempotent { Idempotency::Idempotent } else { Idempotency::NonIdempotent };
        let process = self.world().process_generation();
        let shared = self.shared.clone();
        let mut first_attempt = true;
        // Every attempt is a call through the network: judged by the broker when it arrives, answered
        // after its whole round trip (`BrokerModel::call`).
        let op = move |lease: LeaseGuard| {
            let shared = shared.clone();
            let sent_at = shared.world.clock.now();
            if std::mem::take(&mut first_attempt) {
                shared.totals().waits.record(sent_at.saturating_duration_since(t));
            }
            async move {
                match &shared.world.http {
                    None => shared.world.models[index].call(sent_at, lease.token(), &request).await,
                    Some(http) => http.call(index, sent_at, &lease.grant, &request).await,
                }
            }
        };
        let mut future = Box::pin(async move { handle.execute(idempotency, op).await });
        self.shared.totals().issued += 1;
        if let Some(k) = self.shared.totals().by_kind.get_mut(usize::from(kind.0)) {
            k.total += 1;
        }
        let outcome = move |shared: &Shared, result: Result<(), ExecuteError>| {
            if shared.world.process_generation() != process {
                // The process died before the answer came back: its strategy never saw one.
                Outcome::Failed(if idempotent { FailureKind::Closed } else { FailureKind::OutcomeUnknown })
            } else {
                match result {
                    Ok(()) => Outcome::Ok,
                    Err(error) => Outcome::Failed(failure_kind(&error)),
                }
            }
        };
        let start = self.world().scenario.start;
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => {
                let outcome = outcome(&self.shared, result);
                self.shared.totals().record(start, kind, t, t, &outcome);
            }
            Poll::Pending => {
                let shared = self.shared.clone();
                let guard = in_flight.start();
                tokio::spawn(async move {
                    let _guard = guard;
                    let result = future.await;
                    let outcome = outcome(&shared, result);
                    let done_at = shared.world.clock.now();
                    shared.totals().record(start, kind, t, done_at, &outcome);
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
