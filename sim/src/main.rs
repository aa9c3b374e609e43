//! The `warden-sim` command line: replay scenarios, compare policies.
//!
//! ```text
//! warden-sim run sim/scenarios                      # every scenario; exit 1 if an expectation fails
//! warden-sim run sim/scenarios/saxo.toml --json out.json --html out.html
//! warden-sim run sim/scenarios --seeds 20           # 20 seeds each, the worst reported
//! warden-sim compare sim/scenarios/kotak-neo.toml --policies reactive,proactive,hybrid
//! warden-sim bench --quick --json bench.json              # measure warden at scale (docs/benchmarks.md)
//! ```

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Prints a line to standard output, ignoring a closed pipe (`warden-sim run … | head` must not panic;
/// the exit status still reports the run).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
use warden_engine::Preset;
use warden_sim::html;
use warden_sim::report::{Report, render_comparison, render_table};
use warden_sim::runner::{RunOptions, RunOutput, StoreKind, Timeline, run};
use warden_sim::scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "warden-sim",
    version,
    about = "Replays broker-session expiry scenarios against the real warden engine in virtual time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay scenario files (or every *.toml in a directory); exit status 1 if an expectation fails.
    Run {
        /// Scenario files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write the reports (one object per scenario) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a self-contained HTML page with each scenario's timeline here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Run with this seed instead of each scenario's own.
        #[arg(long)]
        seed: Option<u64>,
        /// Run this many seeds per scenario (from the scenario's seed, or --seed, upwards); report the worst.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Run under this policy preset instead of the scenario's.
        #[arg(long)]
        policy: Option<Preset>,
        /// Where the engine keeps snapshots during a run.
        #[arg(long, value_enum, default_value_t = StoreArg::Sled)]
        store: StoreArg,
        /// Print only failures and the summary.
        #[arg(long)]
        quiet: bool,
        /// Print every engine event to standard error as it happens.
        #[arg(long)]
        events: bool,
    },
    /// Replay one scenario under several policy presets and print them side by side.
    Compare {
        /// The scenario file.
        file: PathBuf,
        /// The presets to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "reactive,proactive,scheduled,daily,keepalive,hybrid")]
        policies: Vec<Preset>,
        /// Write the reports (one object per policy) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run with this seed instead of the scenario's own.
        #[arg(long)]
        seed: Option<u64>,
        /// Where the engine keeps snapshots during a run.
        #[arg(long, value_enum, default_value_t = StoreArg::Sled)]
        store: StoreArg,
    },
    /// Measure warden at scale beside what users would build instead (see docs/benchmarks.md).
    Bench(warden_sim::bench::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreArg {
    /// A sled database in a temporary directory.
    Sled,
    /// Memory only.
    Memory,
}

impl From<StoreArg> for StoreKind {
    fn from(store: StoreArg) -> StoreKind {
        match store {
            StoreArg::Sled => StoreKind::Sled,
            StoreArg::Memory => StoreKind::Memory,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { paths, json, html, seed, seeds, policy, store, quiet, events } => {
            let options = RunOptions {
                store: store.into(),
                preset: policy,
                timeline: html.is_some(),
                print_events: events,
                seed,
            };
            run_command(&paths, json.as_deref(), html.as_deref(), seeds.max(1), options, quiet)
        }
        Command::Compare { file, policies, json, seed, store } => {
            compare_command(&file, &policies, json.as_deref(), seed, store.into())
        }
        Command::Bench(args) => warden_sim::bench::run(args),
    }
}

/// Every scenario named by `paths`, or every error met while reading them.
fn load_all(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Scenario)>, Vec<String>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match Scenario::files_in(path) {
                Ok(found) if found.is_empty() => errors.push(format!("{}: no *.toml scenario files", path.display())),
                Ok(found) => files.extend(found),
                Err(e) => errors.push(e.to_string()),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut scenarios = Vec::new();
    for file in files {
        match Scenario::load(&file) {
            Ok(scenario) => scenarios.push((file, scenario)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() { Ok(scenarios) } else { Err(errors) }
}

/// Which of two reports is worse: failed expectations first, then failed requests, then delay.
fn worse(a: &Report, b: &Report) -> bool {
    let key = |r: &Report| (!r.passed(), r.requests_failed, r.p99_request_delay_ms, r.max_request_delay_ms);
    key(a) > key(b)
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn run_command(
    paths: &[PathBuf],
    json: Option<&Path>,
    html_path: Option<&Path>,
    seeds: u64,
    base: RunOptions,
    quiet: bool,
) -> ExitCode {
    let scenarios = match load_all(paths) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let progress = std::io::stderr().is_terminal() && !quiet;
    let total = scenarios.len();
    let mut outputs: Vec<(Report, Option<Timeline>)> = Vec::new();
    let mut failed = Vec::new();
    for (n, (file, scenario)) in scenarios.iter().enumerate() {
        let first = base.seed.unwrap_or(scenario.seed);
        let mut worst: Option<RunOutput> = None;
        for offset in 0..seeds {
            if progress {
                eprint!("\r\x1b[2K[{}/{total}] {} (seed {})", n + 1, scenario.name, first.wrapping_add(offset));
            }
            let options = RunOptions { seed: Some(first.wrapping_add(offset)), ..base.clone() };
            match run(scenario, &options) {
                Ok(output) => {
                    if worst.as_ref().is_none_or(|w| worse(&output.report, &w.report)) {
                        worst = Some(output);
                    }
                }
                Err(e) => {
                    if progress {
                        eprintln!();
                    }
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        if progress {
            eprint!("\r\x1b[2K");
        }
        let Some(output) = worst else { continue };
        let report = output.report;
        if !report.passed() {
            failed.push(format!(
                "{} (seed {}): reproduce with `warden-sim run {} --seed {}`",
                report.scenario,
                report.seed,
                file.display(),
                report.seed
            ));
        }
        if !quiet || !report.passed() {
            say!("{}", render_table(&report));
        }
        outputs.push((report, output.timeline));
    }
    if let Some(path) = json {
        let reports: Vec<&Report> = outputs.iter().map(|(r, _)| r).collect();
        match serde_json::to_string_pretty(&reports) {
            Ok(text) => {
                if let Err(e) = write_file(path, &(text + "\n")) {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            Err(e) => {
                eprintln!("error: cannot encode the reports: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = html_path
        && let Err(e) = write_file(path, &html::render(&outputs))
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    say!("{} scenario(s), {} passed, {} failed", outputs.len(), outputs.len() - failed.len(), failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for line in &failed {
            say!("FAILED: {line}");
        }
        ExitCode::from(1)
    }
}

fn compare_command(
    file: &Path,
    presets: &[Preset],
    json: Option<&Path>,
    seed: Option<u64>,
    store: StoreKind,
) -> ExitCode {
    let scenario = match Scenario::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let progress = std::io::stderr().is_terminal();
    let mut reports = Vec::new();
    for (n, preset) in presets.iter().enumerate() {
        if progress {
            eprint!("\r\x1b[2K[{}/{}] {} under {preset}", n + 1, presets.len(), scenario.name);
        }
        let options = RunOptions { store, seed, preset: Some(*preset), ..RunOptions::default() };
        match run(&scenario, &options) {
            Ok(output) => reports.push(output.report),
            Err(e) => {
                eprintln!("\nerror: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if progress {
        eprint!("\r\x1b[2K");
    }
    say!("{}", render_comparison(&reports));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&reports).unwrap_or_default() + "\n";
        if let Err(e) = write_file(path, &text) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
