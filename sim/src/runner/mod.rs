//! The runner: replays one scenario against the real engine in virtual time and reports what a strategy
//! would have seen.
//!
//! The engine under test is the real one: a `Warden` from warden-actors (supervised session actors, the
//! lock-free hot path, the engine's state machine) on a `SledStore` in a temporary directory (or a
//! `MemoryStore` with [`StoreKind::Memory`]), with the scenario's broker models behind the `Broker` trait.
//! Time is tokio's paused clock on a current-thread runtime: whenever every task waits, tokio jumps to the
//! next timer, so a trading week replays in a fraction of a second, and the same scenario and seed replay
//! exactly. The simulated wall clock is a [`Clock`] based at the scenario's `start`.
//!
//! The workload issues every request through `SessionHandle::execute`; each attempt is a round trip
//! through the network (`BrokerModel::call`): judged by the broker model when it arrives, answered when
//! its whole latency has passed. A request's delay is the virtual time from issue to answer. Faults are scheduled tasks: actor panics (`inject_failure`), process restarts
//! (the `Warden` is dropped without a goodbye and rebuilt on the same store after the downtime), and store
//! write failures (a `FaultyStore` switch).

mod failure;
mod http;
mod recorder;
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use warden_actors::{Clock, SessionHandle, SessionSpec, Warden, WardenError};
use warden_adapters::{FaultyStore, FlushPolicy, KeySource, MemoryStore, SledOptions, SledStore, WriteFaults};
use warden_engine::rng::SplitMix64;
use warden_engine::{Policy, PolicyError, Preset, Secret, SessionId, Store, StoreError};

use crate::model::{BrokerModel, ModelStats, Refusal};
use crate::report::{EventCategory, Report, RunDays, day_entries};
use crate::scenario::{Scenario, Transport};
use recorder::Recorder;
pub use recorder::{Buckets, MARKERS_KEPT, Marker, MarkerKind, StateSpan, Timeline};
use workload::{Workload, WorkloadTotals};

/// Where the engine keeps its snapshots during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// A sled database in a temporary directory (the production store, encrypted).
    #[default]
    Sled,
    /// An in-memory store (faster; persistence is still exercised across restarts).
    Memory,
}

/// Where a run reports how far it got: a fraction from 0 to 1 of its virtual time, about 200 times a
/// run. Reporting never changes the run (the runner wakes at the same instants whether or not anyone
/// listens).
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(f64) + Send + Sync>);

impl ProgressSink {
    /// A sink that calls `f`.
    pub fn new(f: impl Fn(f64) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Arc::new(f))
    }

    fn report(&self, fraction: f64) {
        (self.0)(fraction.clamp(0.0, 1.0));
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// How to run a scenario.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The store.
    pub store: StoreKind,
    /// Run with this seed instead of the scenario's.
    pub seed: Option<u64>,
    /// Run under this policy preset (with the scenario's overrides) instead of the scenario's.
    pub preset: Option<Preset>,
    /// Keep the timeline (state spans, logins, requests over time) for the HTML report.
    pub timeline: bool,
    /// Print every engine event to standard error as it happens (for following a run by eye).
    pub print_events: bool,
    /// Told how far the run got, now and then.
    pub progress: Option<ProgressSink>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The report, with its expectations evaluated.
    pub report: Report,
    /// The timeline, if asked for.
    pub timeline: Option<Timeline>,
    /// The requests the broker refused for their token, every session's, by arrival (at most
    /// `REFUSALS_KEPT` per session).
    pub refusals: Vec<Refusal>,
}

/// Why a scenario could not be run (as opposed to: it ran and failed an expectation).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The tokio runtime could not be built.
    #[error("scenario {scenario}: cannot start the runtime: {detail}")]
    Runtime {
        /// The scenario.
        scenario: String,
        /// What failed.
        detail: String,
    },
    /// The policy preset asked for does not fit the scenario.
    #[error("scenario {scenario}: policy: {error}")]
    Policy {
        /// The scenario.
        scenario: String,
        /// What is wrong.
        error: PolicyError,
    },
    /// The store could not be opened.
    #[error("scenario {scenario}: store: {error}")]
    Store {
        /// The scenario.
        scenario: String,
        /// What failed.
        error: StoreError,
    },
    /// A mock broker of an HTTP scenario could not start.
    #[error("scenario {scenario}: mock broker: {detail}")]
    Mock {
        /// The scenario.
        scenario: String,
        /// What failed.
        detail: String,
    },
    /// The engine refused to start a session.
    #[error("scenario {scenario}: engine: {error}")]
    Engine {
        /// The scenario.
        scenario: String,
        /// What failed.
        error: WardenError,
    },
}

/// Runs one scenario. Deterministic: the same scenario, options and seed give the same report.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunOutput, RunError> {
    let runtime = match scenario.transport {
        // Time only: nothing in a run does IO through tokio, and without the IO driver a step of the
        // paused clock costs no system call (a run has millions of them).
        Transport::Virtual => tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build(),
        // Real sockets, real time: the mock brokers and the adapters share two worker threads.
        Transport::Http => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
    }
    .map_err(|e| RunError::Runtime { scenario: scenario.name.clone(), detail: e.to_string() })?;
    runtime.block_on(simulate(scenario, options))
}

/// The parts of a run that survive a simulated process restart.
struct World {
    scenario: Scenario,
    policy: Policy,
    clock: Clock,
    store: Arc<dyn Store>,
    faults: WriteFaults,
    models: Vec<BrokerModel>,
    ids: Vec<SessionId>,
    seed: u64,
    /// Bumped when the simulated process dies: requests of an earlier process never see their answer.
    process: AtomicU64,
    /// With `transport = "http"`: the mock brokers serving the models and the adapters talking to them.
    http: Option<http::HttpWorld>,
}

impl World {
    /// Which process is running (0 until the first restart).
    fn process_generation(&self) -> u64 {
        self.process.load(Ordering::Acquire)
    }

    /// Builds a `Warden` on the world's store and opens every session.
    /// The recorder follows its events from before the first session opens.
    async fn boot(&self, generation: u64, recorder: &Recorder) -> Result<(Warden, Vec<SessionHandle>), WardenError> {
        let warden = Warden::builder()
            .store(self.store.clone())
            .clock(self.clock.clone())
            .seed(self.seed.wrapping_add(generation))
            .build()
            .await?;
        recorder.follow(&warden);
        let mut handles = Vec::with_capacity(self.models.len());
        for (i, model) in self.models.iter().enumerate() {
            let spec = match &self.http {
                Some(http) => SessionSpec::new(self.ids[i].clone(), http.clients[i].broker())
                    .with_credentials(http.credentials[i].clone()),
                None => SessionSpec::new(self.ids[i].clone(), Arc::new(model.clone())),
            };
            let spec = spec
                .with_policy(self.policy.clone())
                .with_account(model.label().to_owned())
                .with_seed(self.scenario.session_seed(i));
            handles.push(warden.open(spec).await?);
        }
        Ok((warden, handles))
    }
}

async fn simulate(scenario: &Scenario, options: &RunOptions) -> Result<RunOutput, RunError> {
    let name = scenario.name.clone();
    let mut scenario = scenario.clone();
    let seed = options.seed.unwrap_or(scenario.seed);
    scenario.seed = seed;
    let preset = options.preset.unwrap_or_else(|| scenario.preset());
    let policy = match options.preset {
        Some(preset) => {
            scenario.policy_for(preset).map_err(|error| RunError::Policy { scenario: name.clone(), error })?
        }
        None => scenario.policy.clone(),
    };
    let clock = match scenario.transport {
        Transport::Virtual => Clock::starting_at(scenario.start),
        Transport::Http => crate::mock::cli::clock_starting_at(scenario.start).0,
    };
    let sessions = scenario.workload.sessions.len().max(1);
    let models: Vec<BrokerModel> = (0..sessions).map(|i| scenario.model(i)).collect();
    let http = match scenario.transport {
        Transport::Virtual => None,
        Transport::Http => Some(
            http::HttpWorld::start(&scenario, &models, &clock)
                .await
                .map_err(|detail| RunError::Mock { scenario: name.clone(), detail })?,
        ),
    };
    let ids = models.iter().enumerate().map(|(i, m)| session_id(i, m.label())).collect();

    // The store lives in a temporary directory for the run (and across simulated restarts).
    let dir = tempfile::tempdir().map_err(|e| RunError::Store {
        scenario: name.clone(),
        error: StoreError::Io { path: "a temporary directory".to_owned(), detail: e.to_string() },
    })?;
    let faults = WriteFaults::new();
    let store: Arc<dyn Store> = match options.store {
        StoreKind::Memory => Arc::new(FaultyStore::with_faults(MemoryStore::new(), faults.clone())),
        StoreKind::Sled => {
            let mut key = [0u8; 32];
            let mut rng = SplitMix64::new(seed);
            for chunk in key.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            // Durability is not under test in a throw-away directory: flush in the background only.
            let options = SledOptions::default().key(KeySource::Bytes(key)).flush(FlushPolicy::Never);
            let sled = SledStore::open(dir.path().join("warden.db"), options)
                .map_err(|error| RunError::Store { scenario: name.clone(), error })?;
            Arc::new(FaultyStore::with_faults(sled, faults.clone()))
        }
    };
    let days = RunDays::new(scenario.start, scenario.end, scenario.workload.zone());
    let world =
        Arc::new(World { scenario, policy, clock, store, faults, models, ids, seed, process: AtomicU64::new(0), http });
    let recorder =
        Recorder::new(world.scenario.start, days.clone(), options.timeline, options.print_events, world.ids.clone());

    let (warden, handles) =
        world.boot(0, &recorder).await.map_err(|error| RunError::Engine { scenario: name.clone(), error })?;
    let handles = Arc::new(ArcSwap::from_pointee(handles));
    let warden = Arc::new(std::sync::Mutex::new(Some(warden)));
    let retries = Arc::new(AtomicU64::new(0));

    let faults = schedule_faults(world.clone(), handles.clone(), warden.clone(), recorder.clone(), retries.clone());
    let workload = Workload::new(world.clone(), handles.clone(), options.timeline, options.progress.clone());
    let totals: WorkloadTotals = workload.run().await;
    for task in faults {
        task.abort();
    }

    let end = world.scenario.end.max(world.clock.now());
    let current = warden.lock().ok().and_then(|mut w| w.take());
    if let Some(warden) = current {
        retries.fetch_add(retry_count(&handles.load()), Ordering::Relaxed);
        recorder.capture_final_states(&handles.load(), end);
        warden.shutdown(false).await;
    }
    // Let the event follower drain what the shutdown published.
    tokio::task::yield_now().await;
    if let Some(http) = &world.http {
        http.stop();
    }

    let mut stats = ModelStats::default();
    for model in &world.models {
        stats += model.stats();
    }
    let mut report = Report::new(name, seed, preset.name());
    report.requests_total = totals.issued;
    report.requests_ok = totals.ok;
    report.requests_failed = totals.failed;
    report.outcome_unknown = totals.outcome_unknown;
    report.requests_retried = retries.load(Ordering::Relaxed);
    report.max_request_delay_ms = totals.delays.max_ms();
    report.p99_request_delay_ms = totals.delays.p99_ms();
    report.max_token_wait_ms = totals.waits.max_ms();
    report.p99_token_wait_ms = totals.waits.p99_ms();
    report.failed_by = totals.failed_by;
    report.invalid_by = totals.invalid_by;
    report.by_kind = world.scenario.workload.mix.iter().map(|m| m.kind.clone()).zip(totals.by_kind).collect();
    // `logins` counts the grants warden installed (its events); the broker's count of granted logins
    // minus those is what was discarded.
    report.logins = recorder.count_of(EventCategory::Login);
    report.login_attempts = stats.login_attempts;
    report.logins_discarded = stats.logins.saturating_sub(report.logins);
    report.refreshes = stats.refreshes;
    report.keepalives = stats.keepalives;
    report.login_failures = stats.login_failures;
    report.rejections = stats.rejections;
    report.dead_token_uses = stats.dead_token_uses;
    report.duplicate_orders = stats.duplicate_orders;
    report.refresh_failures = stats.refresh_failures;
    report.keepalive_failures = stats.keepalive_failures;
    report.rate_limited = stats.rate_limited;
    report.account_lockouts = stats.lockouts;
    report.days = day_entries(&days);
    report.events = recorder.events();
    for (state, ms) in recorder.time_in_state(end) {
        report.time_in_state.insert(state, ms);
    }
    report.finish();
    world.scenario.expect.evaluate(&mut report);
    let timeline = if options.timeline {
        let trading =
            days.days().iter().map(|d| world.scenario.workload.trading_days.contains(d.date.weekday())).collect();
        recorder.timeline(end, trading, totals.buckets.unwrap_or_default()).map(|mut timeline| {
            broker_markers(&world, &mut timeline);
            timeline.markers.sort_by_key(|m| (m.at, m.session, m.kind));
            timeline
        })
    } else {
        None
    };
    let mut refusals: Vec<Refusal> = world.models.iter().flat_map(|m| m.refusals().0).collect();
    refusals.sort_by_key(|r| (r.arrived_at, r.sent_at));
    drop(dir);
    Ok(RunOutput { report, timeline, refusals })
}

/// The broker's side of the timeline: the requests it refused and the sessions it ended on its own
/// (scheduled events, daily and weekly resets).
fn broker_markers(world: &World, timeline: &mut Timeline) {
    for (session, model) in world.models.iter().enumerate() {
        let (refusals, dropped) = model.refusals();
        for refusal in refusals {
            let detail = format!("rejected ({:?}), sent {}", refusal.verdict, refusal.sent_at);
            timeline.add_marker(Marker {
                at: refusal.arrived_at,
                session: Some(session),
                kind: MarkerKind::Rejection,
                detail,
            });
        }
        timeline.markers_dropped += dropped;
    }
    let spec = &world.scenario.broker;
    let (start, end) = (world.scenario.start, world.scenario.end);
    for event in spec.events.iter().filter(|e| start <= e.at && e.at <= end) {
        let detail = event.kind.name().replace('_', " ");
        timeline.add_marker(Marker { at: event.at, session: None, kind: MarkerKind::Deauth, detail });
    }
    let mut t = start;
    while t < end {
        let next = spec.next_reset_after(t);
        if next > end {
            break;
        }
        timeline.add_marker(Marker {
            at: next,
            session: None,
            kind: MarkerKind::Deauth,
            detail: "broker reset".to_owned(),
        });
        t = next;
    }
}

/// A valid session id for session `index` with this label.
fn session_id(index: usize, label: &str) -> SessionId {
    let clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(48)
        .collect();
    SessionId::new(format!("s{index}-{clean}")).unwrap_or_else(|_| fallback_id(index))
}

fn fallback_id(index: usize) -> SessionId {
    match SessionId::new(format!("s{index}")) {
        Ok(id) => id,
        Err(_) => SessionId::new("s").unwrap_or_else(|_| fallback_id(index)),
    }
}

fn retry_count(handles: &[SessionHandle]) -> u64 {
    handles.iter().map(|h| h.stats().retries).sum()
}

/// Schedules the scenario's faults as tasks.
fn schedule_faults(
    world: Arc<World>,
    handles: Arc<ArcSwap<Vec<SessionHandle>>>,
    warden: Arc<std::sync::Mutex<Option<Warden>>>,
    recorder: Recorder,
    retries: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Every task reads the clock through the world (never a copy of it: the clock is shared state).
    let mut tasks = Vec::new();
    for fault in world.scenario.faults.panics.clone() {
        let handles = handles.clone();
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(world.clock.instant_at(fault.at)).await;
            let current = handles.load();
            for (i, handle) in current.iter().enumerate() {
                if fault.session.is_none_or(|s| s == i) {
                    let _ = handle.inject_failure("scenario fault: actor panic").await;
                }
            }
        }));
    }
    // The operator: a person logs in at the broker's web page and hands the code to the session; or
    // resets it. While the process is down there is nobody to hand it to (the code goes stale).
    for (action, reset) in world
        .scenario
        .operator
        .login_codes
        .iter()
        .map(|a| (*a, false))
        .chain(world.scenario.operator.resets.iter().map(|a| (*a, true)))
    {
        let handles = handles.clone();
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(world.clock.instant_at(action.at)).await;
            let current = handles.load();
            for (i, handle) in current.iter().enumerate() {
                if action.session.is_some_and(|s| s != i) {
                    continue;
                }
                let _ = if reset {
                    handle.reset().await
                } else {
                    let code = world.models[i].issue_login_code(world.clock.now());
                    handle.supply_second_factor(Secret::new(code)).await
                };
            }
        }));
    }
    for window in world.scenario.faults.store_write_failures.clone() {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(world.clock.instant_at(window.from)).await;
            world.faults.set_failing(true);
            tokio::time::sleep_until(world.clock.instant_at(window.to)).await;
            world.faults.set_failing(false);
        }));
    }
    let restarts = world.scenario.faults.restarts.clone();
    if !restarts.is_empty() {
        tasks.push(tokio::spawn(async move {
            for (n, fault) in restarts.iter().enumerate() {
                tokio::time::sleep_until(world.clock.instant_at(fault.at)).await;
                // The process dies: no logout, no final flush, in-flight calls lost with it.
                world.process.fetch_add(1, Ordering::AcqRel);
                let old = warden.lock().ok().and_then(|mut w| w.take());
                retries.fetch_add(retry_count(&handles.load()), Ordering::Relaxed);
                recorder.process_down(&handles.load(), world.clock.now());
                handles.store(Arc::new(Vec::new()));
                drop(old);
                tokio::time::sleep(fault.downtime).await;
                recorder.process_up(world.clock.now());
                match world.boot(n as u64 + 1, &recorder).await {
                    Ok((new, fresh)) => {
                        handles.store(Arc::new(fresh));
                        if let Ok(mut slot) = warden.lock() {
                            *slot = Some(new);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "the simulated process could not restart");
                        return;
                    }
                }
            }
        }));
    }
    tasks
}
