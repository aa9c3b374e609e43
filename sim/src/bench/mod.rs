//! `warden-sim bench`: measures warden at scale in one run, beside what users would build instead, and
//! prints one table (and, with `--json`, one JSON object of figures).
//!
//! The parts, each in its own module:
//!
//! - [`hot`]: the token hot path (`token()`) beside the floor (a bare arc-swap load) and the designs it
//!   replaces (an `RwLock`, a `watch` channel, a ractor call), with one and two concurrent readers;
//!   `token()` on handles picked at random among 100,000 sessions; `execute`'s overhead over a raw call.
//! - [`herd`]: herds of 1k, 10k and 100k requests on an expired session (a 200 ms fake login): logins and
//!   p99 for warden, for a token behind a mutex (re-checked after taking the lock) and for a cache without
//!   single flight.
//! - [`sessions`]: 1k, 10k, 100k (and 1M when it fits in memory) sessions on the sled store at default
//!   durability, each size in a child process of its own: open time, resident memory per session,
//!   keep-alive lag (real time), shutdown time; then a child killed with SIGKILL and a restart that must
//!   reuse every grant without a login.
//! - [`persist`]: the store's cost per transition (a snapshot and its log entries) with sled unflushed,
//!   flushed on grant changes (group commit), flushed on every write, and in memory.
//! - [`simspeed`]: the simulator's speed on the saxo scenario.
//!
//! Timing comes from the runtime's clock (`warden_actors::Clock`), never from `Instant::now` directly.
//! `--quick` is the short version for CI (well under a minute); without it a run takes about 20 minutes
//! (three minutes of keep-alives per session count); `--sizes` and `--window` shorten the sessions part. `--runs N` repeats everything and reports the median
//! of each figure. `docs/benchmarks.md` explains every figure.

mod child;
mod figures;
mod herd;
mod hot;
mod persist;
mod plot;
mod sessions;
mod simspeed;
mod stats;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub use figures::Figures;
pub use sessions::Size;

/// The parts of the bench, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The token hot path and `execute`'s overhead.
    Hot,
    /// Herds on an expired session, warden beside the naive designs.
    Herd,
    /// Many sessions on sled: open, memory, keep-alive lag, shutdown, kill -9 and restart.
    Sessions,
    /// The store's cost per transition.
    Persist,
    /// The simulator's speed on the saxo scenario.
    Sim,
}

/// `warden-sim bench` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Write the figures as one JSON object here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The short version (for CI): fewer and smaller runs, well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Write SVG plots (memory and open time against sessions, herd p99) into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Run only these parts (comma-separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Run everything this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The session counts of the sessions part (comma-separated); default: 1k,10k,100k,1m (1k,10k with
    /// `--quick`). 1m runs only if it fits in memory.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub sizes: Vec<sessions::Size>,
    /// How long the sessions part watches keep-alives at each count, in seconds; default 180 (10 with
    /// `--quick`). The keep-alive interval stays 60 s (4 s with `--quick`).
    #[arg(long)]
    pub window: Option<u64>,
    /// Internal: run one measurement in this process and print its figures (the parent's child runs).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

/// Runs the bench (or, with `--child`, one child measurement).
pub fn run(args: BenchArgs) -> ExitCode {
    if let Some(spec) = &args.child {
        return child::run_child(spec);
    }
    let parts = if args.only.is_empty() {
        vec![Part::Hot, Part::Herd, Part::Sessions, Part::Persist, Part::Sim]
    } else {
        args.only.clone()
    };
    let runs = args.runs.max(1);
    let mut all = Vec::with_capacity(runs);
    for run in 1..=runs {
        let mut figures = Figures::new(args.quick);
        for part in &parts {
            progress(&format!("bench: run {run}/{runs}: {part:?}"));
            let result = match part {
                Part::Hot => hot::run(&mut figures, args.quick),
                Part::Herd => herd::run(&mut figures, args.quick),
                Part::Sessions => {
                    let options = sessions::Options {
                        quick: args.quick,
                        sizes: args.sizes.clone(),
                        window: args.window.map(std::time::Duration::from_secs),
                    };
                    sessions::run(&mut figures, &options)
                }
                Part::Persist => persist::run(&mut figures, args.quick),
                Part::Sim => simspeed::run(&mut figures, args.quick),
            };
            if let Err(error) = result {
                eprintln!("error: bench part {part:?}: {error}");
                return ExitCode::from(2);
            }
        }
        all.push(figures);
    }
    let figures =
        if all.len() == 1 { all.pop().unwrap_or_else(|| Figures::new(args.quick)) } else { Figures::median_of(all) };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", figures.table());
    if let Some(path) = &args.json
        && let Err(error) = std::fs::write(path, figures.json() + "\n")
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    if let Some(dir) = &args.plots
        && let Err(error) = plot::write_all(dir, &figures)
    {
        eprintln!("error: cannot write the plots into {}: {error}", dir.display());
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// A progress line on standard error.
fn progress(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Why a bench part could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A runtime, a store or a session could not be set up.
    #[error("setting up: {0}")]
    Setup(String),
    /// A child process failed or printed no figures.
    #[error("child process `{spec}`: {detail}")]
    Child {
        /// What the child measured.
        spec: String,
        /// What went wrong.
        detail: String,
    },
    /// A measurement contradicted what it measures (a login where none may happen, a failed request).
    #[error("{0}")]
    Broken(String),
}

fn setup(error: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(error.to_string())
}

/// A tokio runtime with two worker threads (the machine this is measured on has two cores).
fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(setup)
}
