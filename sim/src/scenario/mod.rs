//! Scenario files: the TOML format (see `docs/scenarios.md`), parsed into typed, resolved values.
//!
//! [`Scenario::load`] reads one file, [`Scenario::load_dir`] every `*.toml` in a directory (sorted by
//! name). Parsing happens in two passes: serde into the file's own structs (unknown keys are errors
//! everywhere), then resolution — times placed on the run's calendar as [`UnixMs`] instants, local times
//! expanded day by day, the broker model's defaults overridden, the engine [`Policy`] built from its
//! preset with the model's hints and checked against the model's token lifetime, and the `[expect]`
//! names checked against the report's fields. Any problem is a [`ScenarioError`] that names the file,
//! the line and column, the key and the problem; nothing panics on any input.
//!
//! ```
//! use warden_sim::scenario::Scenario;
//!
//! let err = Scenario::parse("name = \"x\"\nseed = 1\nstart = \"2026-03-09T08:00:00\"\n", "x.toml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "x.toml line 3, column 9: `start`: \"2026-03-09T08:00:00\" has no time zone or UTC offset, so it names \
//!      no instant (write it like \"2026-03-09T08:00:00+05:30[Asia/Kolkata]\" or \"2026-03-09T08:00:00+05:30\")"
//! );
//! ```

mod error;
mod feasibility;
mod raw;
mod resolve;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_engine::policy::LocalTime;
use warden_engine::policy::PolicyFile;
use warden_engine::rng::SplitMix64;
use warden_engine::{Policy, PolicyError, Preset, UnixMs};

use crate::model::{BrokerModel, BrokerSpec, KindId, Window};
use crate::report::Expectations;

pub use error::ScenarioError;
pub use feasibility::ScenarioWarning;
pub use values::{Instant, TimeSpec, parse_duration_with_days, parse_instant, parse_time_spec};
pub use warden_adapters::config::locate::{KeyPath, Segment};

/// The longest run a scenario may describe.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The longest run of a scenario with `transport = "http"` (it runs in real time).
pub const MAX_HTTP_DURATION: Duration = Duration::from_secs(10 * 60);

/// How a scenario's calls reach the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// The broker models in process, in virtual time (tokio's paused clock): deterministic.
    #[default]
    Virtual,
    /// warden's real adapters against the mock brokers (`crate::mock`) over loopback HTTP, in real time
    /// from the scenario's `start`: the same models behind each broker's wire format. Not byte for byte
    /// deterministic (real time, real sockets); its `[expect]` bounds must hold.
    Http,
}

/// One scenario, resolved: every time an instant, every duration a [`Duration`], the policy built.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Scenario {
    /// Its name (`name`).
    pub name: String,
    /// What it exercises (`description`).
    pub description: String,
    /// Where it came from (the path, or the origin given to [`Scenario::parse`]).
    pub origin: String,
    /// How its calls reach the broker (`transport`).
    pub transport: Transport,
    /// The seed of every random choice in the run.
    pub seed: u64,
    /// When the run starts (`start`).
    pub start: UnixMs,
    /// When it ends (`start + duration`, or `end`).
    pub end: UnixMs,
    /// `end - start`.
    pub duration: Duration,
    /// The zone of `start` (its IANA zone, or its fixed offset): local times in `[faults]` are in it.
    pub zone: jiff::tz::TimeZone,
    /// The broker model's rules, with every override and every scheduled event.
    pub broker: BrokerSpec,
    /// The engine policy (preset plus overrides, filled with the model's hints, validated).
    pub policy: Policy,
    /// The `[policy]` table as written, to build the same overrides on another preset.
    pub policy_file: PolicyFile,
    /// Who sends requests, how often, when.
    pub workload: Workload,
    /// Faults injected into warden itself.
    pub faults: Faults,
    /// What an operator does during the run.
    pub operator: Operator,
    /// The `[expect]` bounds.
    pub expect: Expectations,
    /// What will not go well (an offered load above a broker limit, a token that cannot cover a 25-hour
    /// day): printed when the scenario loads.
    pub warnings: Vec<ScenarioWarning>,
}

/// The `[workload]` table, resolved.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Workload {
    /// How many strategies send requests (0: keep-alive only).
    pub strategies: u32,
    /// Requests per second of each strategy while the market is open.
    pub rate_per_strategy: f64,
    /// How each strategy spaces its requests.
    pub arrival: Arrival,
    /// The request kinds and their weights.
    pub mix: Vec<MixEntry>,
    /// When the market is open.
    pub market_hours: MarketHours,
    /// Which days the market opens.
    pub trading_days: TradingDays,
    /// One broker session (account) per entry, named: `sessions = 3` gives `s1`..`s3`, `hosts = [..]` the
    /// host names (OAuth2), otherwise the model's name.
    pub sessions: Vec<String>,
    /// The periods of the run in which the market is open, sorted, not overlapping.
    pub open_windows: Vec<Window>,
    /// Requests at exact instants (`[[workload.at]]`), sorted by time.
    pub scripted: Vec<ScriptedBurst>,
}

/// `count` requests of one kind sent at one instant (`[[workload.at]]`), whether the market is open or
/// not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptedBurst {
    /// When they are sent.
    pub at: UnixMs,
    /// Which kind (an entry of the mix).
    pub kind: KindId,
    /// How many.
    pub count: u32,
    /// To this session (an index into [`Workload::sessions`]); `None`: spread over the sessions as the
    /// strategies are (request `i` to session `i % sessions`).
    pub session: Option<usize>,
}

impl Workload {
    /// The mix entry for a uniform random `unit` in `[0, 1)`, by weight.
    pub fn pick(&self, unit: f64) -> KindId {
        let total: f64 = self.mix.iter().map(|m| m.weight).sum();
        let mut target = unit * total;
        for (i, entry) in self.mix.iter().enumerate() {
            if target < entry.weight {
                return KindId(i as u16);
            }
            target -= entry.weight;
        }
        KindId(self.mix.len().saturating_sub(1) as u16)
    }

    /// The mix entry of a kind.
    pub fn kind(&self, kind: KindId) -> Option<&MixEntry> {
        self.mix.get(usize::from(kind.0))
    }

    /// Whether the market is open at `t`.
    pub fn is_open(&self, t: UnixMs) -> bool {
        crate::model::window_at(&self.open_windows, t, |w| *w).is_some()
    }

    /// The total open time of the run.
    pub fn open_time(&self) -> Duration {
        self.open_windows.iter().map(|w| w.to.saturating_duration_since(w.from)).sum()
    }

    /// About how many requests the run sends: strategies × rate × open time, plus the scripted ones.
    pub fn expected_requests(&self) -> f64 {
        let scripted: u64 = self.scripted.iter().map(|b| u64::from(b.count)).sum();
        f64::from(self.strategies) * self.rate_per_strategy * self.open_time().as_secs_f64() + scripted as f64
    }

    /// The market's zone: the days of per-day counts, local times of `[[workload.at]]`, the HTML report.
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        match &self.market_hours {
            MarketHours::Always { tz } | MarketHours::Daily { tz, .. } => tz,
        }
    }
}

/// One `[[workload.mix]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct MixEntry {
    /// A label (`quote`, `order`, `positions`).
    pub kind: String,
    /// Whether executing it twice is harmless.
    pub idempotent: bool,
    /// Its relative weight (> 0).
    pub weight: f64,
}

/// How a strategy spaces its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Exponential gaps (a Poisson process) at the strategy's rate.
    Poisson,
    /// Even gaps of `1 / rate`, every strategy starting when the market opens: a herd at the open.
    Periodic,
}

/// When the market is open.
#[derive(Clone, Debug, PartialEq)]
pub enum MarketHours {
    /// All day on trading days (in `tz`).
    Always {
        /// The zone whose days count.
        tz: jiff::tz::TimeZone,
    },
    /// From `open` to `close` on trading days.
    Daily {
        /// Opening time.
        open: LocalTime,
        /// Closing time (after `open`).
        close: LocalTime,
        /// Their zone.
        tz: jiff::tz::TimeZone,
    },
}

/// A set of days of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradingDays(u8);

impl TradingDays {
    /// Monday to Friday.
    pub const WEEKDAYS: TradingDays = TradingDays(0b001_1111);
    /// Every day.
    pub const ALL: TradingDays = TradingDays(0b111_1111);

    /// The set of these days.
    pub fn of(days: impl IntoIterator<Item = jiff::civil::Weekday>) -> TradingDays {
        TradingDays(days.into_iter().fold(0, |bits, d| bits | (1 << d.to_monday_zero_offset())))
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: jiff::civil::Weekday) -> bool {
        self.0 & (1 << day.to_monday_zero_offset()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Faults injected into warden itself (`[faults]`), sorted by time.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub struct Faults {
    /// Session actors panic at these instants.
    pub panics: Vec<PanicFault>,
    /// The process restarts (the Warden is rebuilt on the same store) at these instants.
    pub restarts: Vec<RestartFault>,
    /// Store writes fail during these periods.
    pub store_write_failures: Vec<Window>,
}

/// What an operator does during the run (`[operator]`), sorted by time.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub struct Operator {
    /// A person logs in through the broker's web page and the operator hands the code to the session
    /// (`SessionHandle::supply_second_factor`).
    pub login_codes: Vec<OperatorAction>,
    /// The operator resets the session (`SessionHandle::reset`).
    pub resets: Vec<OperatorAction>,
}

/// One operator action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorAction {
    /// When.
    pub at: UnixMs,
    /// On which session (an index into [`Workload::sessions`]); `None`: every session.
    pub session: Option<usize>,
}

/// A session actor panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PanicFault {
    /// When.
    pub at: UnixMs,
    /// Which session (an index into [`Workload::sessions`]); `None`: every session.
    pub session: Option<usize>,
}

/// The process restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartFault {
    /// When it goes down.
    pub at: UnixMs,
    /// How long until the new Warden is built.
    pub downtime: Duration,
}

impl Scenario {
    /// Reads and resolves a scenario file. Errors name the path as given.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::Read { path: origin.clone(), detail: e.to_string() })?;
        Scenario::parse(&text, &origin)
    }

    /// Parses and resolves scenario text; `origin` names it in errors (usually its path).
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        resolve::parse(text, origin)
    }

    /// The `*.toml` files of a directory, sorted by name.
    pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
        let listing_error =
            |e: std::io::Error| ScenarioError::ReadDir { path: dir.display().to_string(), detail: e.to_string() };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(listing_error)? {
            let path = entry.map_err(listing_error)?.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Every scenario of a directory, sorted by file name; the first error stops it.
    pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
        Scenario::files_in(dir)?.iter().map(|p| Scenario::load(p)).collect()
    }

    /// The preset the `[policy]` table starts from.
    pub fn preset(&self) -> Preset {
        self.policy_file.preset.unwrap_or_default()
    }

    /// The same `[policy]` overrides on another preset (for `compare`), filled with the model's hints
    /// and checked against its token lifetime.
    pub fn policy_for(&self, preset: Preset) -> Result<Policy, PolicyError> {
        let mut file = self.policy_file.clone();
        file.preset = Some(preset);
        let policy = file.into_policy(&self.broker.hints())?;
        policy.validate_for_lifetime(self.broker.nominal_lifetime())?;
        Ok(policy)
    }

    /// The seed of session `index`'s broker model, derived from the scenario's seed.
    pub fn session_seed(&self, index: usize) -> u64 {
        SplitMix64::new(self.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
    }

    /// A fresh broker model for session `index` (one account or host), labelled with its name.
    pub fn model(&self, index: usize) -> BrokerModel {
        let label = self.workload.sessions.get(index).cloned().unwrap_or_else(|| format!("s{}", index + 1));
        BrokerModel::with_label(self.broker.clone(), self.session_seed(index), label)
    }
}
