//! The `warden-sim` command line: replay scenarios, compare policies, serve mock brokers, measure at scale.
//!
//! ```text
//! warden-sim run sim/scenarios                      # every scenario; exit 1 if an expectation fails
//! warden-sim run sim/scenarios/saxo.toml --json out.json --html out.html
//! warden-sim run sim/scenarios --seeds 20           # 20 seeds each, the worst reported
//! warden-sim run sim/scenarios --quiet --json -     # the reports as JSON on standard output
//! warden-sim compare sim/scenarios/kotak-neo.toml --policies reactive,proactive,hybrid --html cmp.html
//! warden-sim mock-broker --broker zerodha --port 8000                # a Kite-compatible mock broker
//! warden-sim mock-broker --broker ibkr --scenario sim/scenarios/http/ibkr.toml --for 10m
//! warden-sim gen-creds --broker ibkr ./ibkr-keys                     # client and mock key material
//! warden-sim bench --quick --json bench.json      # measure warden at scale (docs/benchmarks.md)
//! ```
//!
//! Tables and the summary go to standard output (to standard error when `--json -` takes standard
//! output); warnings, errors and the progress bar go to standard error. The bar shows for `--seeds N`
//! and for runs longer than a second, only when standard error is a terminal and not with `--quiet`.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use warden_engine::Preset;
use warden_sim::report::{Report, render_comparison, render_table};
use warden_sim::runner::{ProgressSink, RunOptions, RunOutput, StoreKind, Timeline, run};
use warden_sim::scenario::Scenario;
use warden_sim::{html, mock};

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
        /// Write the reports (one object per scenario) as JSON here; `-` for standard output.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a self-contained HTML page with each scenario's timeline here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Run with this seed instead of each scenario's own.
        #[arg(long)]
        seed: Option<u64>,
        /// Run this many seeds per scenario (from the scenario's seed, or --seed, upwards); report the worst.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        seeds: u64,
        /// Run under this policy preset instead of the scenario's.
        #[arg(long)]
        policy: Option<Preset>,
        /// Where the engine keeps snapshots during a run.
        #[arg(long, value_enum, default_value_t = StoreArg::Sled)]
        store: StoreArg,
        /// Print only failures and the summary; no progress bar.
        #[arg(long)]
        quiet: bool,
        /// Print every engine event to standard error as it happens.
        #[arg(long)]
        events: bool,
    },
    /// Serve one broker's wire protocol on 127.0.0.1 (a mock broker), with a scenario's faults in real time.
    MockBroker {
        /// The broker: saxo, ibkr, kotak-neo (or kotak), zerodha (or kite), oauth2.
        #[arg(long)]
        broker: String,
        /// The port (0: a free one; the first line printed names it).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A scenario whose `[broker]` the mock plays from its `start`, beginning now.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// A folder with the account the mock accepts (IBKR: the `mock/` folder gen-creds writes;
        /// others: `account.toml`); without it, the demo account.
        #[arg(long)]
        creds: Option<PathBuf>,
        /// Wait the model's latencies (its round trips) on every call.
        #[arg(long)]
        latency: bool,
        /// The model's seed (without a scenario).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// IBKR: compute signature base strings as if served from this origin (https://api.ibkr.com).
        #[arg(long)]
        sign_as: Option<String>,
        /// Stream heartbeat interval (default: the broker's own), e.g. "5s".
        #[arg(long)]
        heartbeat: Option<String>,
        /// Stream tick interval, e.g. "500ms".
        #[arg(long, default_value = "1s")]
        tick: String,
        /// Stop by itself after this long (e.g. "10m"); without it, at Ctrl-C.
        #[arg(long = "for")]
        run_for: Option<String>,
    },
    /// Write matching credentials for a client and a mock broker into a folder (never overwrites).
    GenCreds {
        /// The broker: ibkr writes DIR/client and DIR/mock key material; the others DIR/account.toml.
        #[arg(long)]
        broker: String,
        /// The folder.
        dir: PathBuf,
    },
    /// Replay one scenario under several policy presets and print them side by side.
    Compare {
        /// The scenario file.
        file: PathBuf,
        /// The presets to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "reactive,proactive,scheduled,daily,keepalive,hybrid")]
        policies: Vec<Preset>,
        /// Write the reports (one object per policy) as JSON here; `-` for standard output.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a self-contained HTML page with each policy's timeline here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Run with this seed instead of the scenario's own.
        #[arg(long)]
        seed: Option<u64>,
        /// Where the engine keeps snapshots during a run.
        #[arg(long, value_enum, default_value_t = StoreArg::Sled)]
        store: StoreArg,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Measure warden at scale beside what users would build instead (see docs/benchmarks.md).
    Bench(warden_sim::bench::BenchArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// Where the human-readable output goes: standard output, or standard error when `--json -` takes
/// standard output. A closed pipe is ignored (`warden-sim run … | head` must not panic; the exit status
/// still reports the run).
#[derive(Clone, Copy)]
struct Out {
    to_stderr: bool,
}

impl Out {
    fn line(&self, text: &str) {
        let _ = if self.to_stderr {
            writeln!(std::io::stderr().lock(), "{text}")
        } else {
            writeln!(std::io::stdout().lock(), "{text}")
        };
    }
}

/// Units of the progress bar per run.
const UNITS_PER_RUN: u64 = 1_000;

/// The progress bar: hidden until it has something to show (several runs, or a run longer than a
/// second), and always when standard error is not a terminal or with `--quiet`.
struct Progress {
    bar: ProgressBar,
    enabled: bool,
}

impl Progress {
    fn new(runs: u64, quiet: bool) -> Progress {
        let enabled = !quiet && std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(Some(runs * UNITS_PER_RUN), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        let progress = Progress { bar, enabled };
        if runs > 1 {
            progress.show();
        }
        progress
    }

    fn show(&self) {
        if self.enabled && self.bar.is_hidden() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// A sink for run number `n` (0-based) that moves the bar and shows it once the run takes a second.
    fn sink(&self, n: u64, message: String) -> Option<ProgressSink> {
        if !self.enabled {
            return None;
        }
        self.bar.set_message(message);
        let bar = self.bar.clone();
        let enabled = self.enabled;
        Some(ProgressSink::new(move |fraction| {
            bar.set_position(n * UNITS_PER_RUN + (fraction * UNITS_PER_RUN as f64) as u64);
            if enabled && bar.is_hidden() && bar.elapsed() > Duration::from_secs(1) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }))
    }

    /// Prints without tearing the bar.
    fn say(&self, out: Out, text: &str) {
        self.bar.suspend(|| out.line(text));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
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
                progress: None,
            };
            let outputs = Outputs { json: json.as_deref(), html: html.as_deref() };
            run_command(&paths, outputs, seeds, options, quiet)
        }
        Command::Compare { file, policies, json, html, seed, store, quiet } => {
            let outputs = Outputs { json: json.as_deref(), html: html.as_deref() };
            compare_command(&file, &policies, outputs, seed, store.into(), quiet)
        }
        Command::MockBroker { broker, port, scenario, creds, latency, seed, sign_as, heartbeat, tick, run_for } => {
            let args = MockArgs { broker, port, scenario, creds, latency, seed, sign_as, heartbeat, tick, run_for };
            mock_broker_command(args)
        }
        Command::GenCreds { broker, dir } => gen_creds_command(&broker, &dir),
        Command::Bench(args) => warden_sim::bench::run(args),
    }
}

/// `mock-broker`'s arguments.
struct MockArgs {
    broker: String,
    port: u16,
    scenario: Option<PathBuf>,
    creds: Option<PathBuf>,
    latency: bool,
    seed: u64,
    sign_as: Option<String>,
    heartbeat: Option<String>,
    tick: String,
    run_for: Option<String>,
}

fn parse_duration_arg(name: &str, text: &str) -> Result<Duration, String> {
    warden_sim::scenario::parse_duration_with_days(text).map_err(|e| format!("--{name}: {e}"))
}

fn mock_broker_command(args: MockArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let Some(kind) = mock::cli::broker_kind(&args.broker) else {
        return fail(format!(
            "--broker `{}`: not a served broker (saxo, ibkr, kotak-neo, zerodha, oauth2; kite and kotak also work)",
            args.broker
        ));
    };
    let scenario = match &args.scenario {
        Some(path) => match Scenario::load(path) {
            Ok(scenario) => Some(scenario),
            Err(e) => return fail(e.to_string()),
        },
        None => None,
    };
    let mut streams = mock::StreamSettings::default();
    match parse_duration_arg("tick", &args.tick) {
        Ok(tick) => streams.tick = tick,
        Err(e) => return fail(e),
    }
    if let Some(heartbeat) = &args.heartbeat {
        match parse_duration_arg("heartbeat", heartbeat) {
            Ok(d) => streams.heartbeat = Some(d),
            Err(e) => return fail(e),
        }
    }
    let run_for = match args.run_for.as_deref().map(|t| parse_duration_arg("for", t)).transpose() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let options = mock::cli::ServeOptions {
        kind,
        port: args.port,
        scenario,
        creds: args.creds.clone(),
        latency: args.latency,
        seed: args.seed,
        sign_as: args.sign_as,
        streams,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let mock = match mock::cli::start(&options).await {
            Ok(mock) => mock,
            Err(e) => return fail(e.to_string()),
        };
        let out = Out { to_stderr: false };
        for line in mock::cli::banner(&mock, args.creds.is_none()) {
            out.line(&line);
        }
        let _ = std::io::stdout().flush();
        let stop = async move {
            match run_for {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let stats = mock::cli::serve_until(mock, stop).await;
        out.line(&serde_json::to_string(&stats).unwrap_or_default());
        ExitCode::SUCCESS
    })
}

fn gen_creds_command(broker: &str, dir: &Path) -> ExitCode {
    let Some(kind) = mock::cli::broker_kind(broker) else {
        eprintln!("error: --broker `{broker}`: not a served broker (saxo, ibkr, kotak-neo, zerodha, oauth2)");
        return ExitCode::from(2);
    };
    match mock::ibkr_creds::generate_account(kind, dir) {
        Ok(files) => {
            for file in files {
                println!("wrote {}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where the reports go besides the tables.
struct Outputs<'a> {
    json: Option<&'a Path>,
    html: Option<&'a Path>,
}

impl Outputs<'_> {
    fn out(&self) -> Out {
        Out { to_stderr: self.json.is_some_and(|p| p == Path::new("-")) }
    }

    /// Writes the JSON and the HTML page, or says why not.
    fn write(&self, runs: &[(Report, Option<Timeline>)]) -> Result<(), String> {
        if let Some(path) = self.json {
            let reports: Vec<&Report> = runs.iter().map(|(r, _)| r).collect();
            let text = serde_json::to_string_pretty(&reports).map_err(|e| format!("cannot encode the reports: {e}"))?;
            if path == Path::new("-") {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            } else {
                write_file(path, &(text + "\n"))?;
            }
        }
        if let Some(path) = self.html {
            write_file(path, &html::render(runs))?;
        }
        Ok(())
    }
}

/// Every scenario named by `paths`, or every error met while reading them. Warnings are printed.
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
            Ok(scenario) => {
                for warning in &scenario.warnings {
                    eprintln!("warning: {warning}");
                }
                scenarios.push((file, scenario));
            }
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

/// The command that replays one report's run: every option that changed it.
fn reproduce(file: &Path, report: &Report, options: &RunOptions) -> String {
    let mut command = format!("warden-sim run {} --seed {}", file.display(), report.seed);
    if let Some(preset) = options.preset {
        command.push_str(&format!(" --policy {preset}"));
    }
    if options.store == StoreKind::Memory {
        command.push_str(" --store memory");
    }
    command
}

fn run_command(paths: &[PathBuf], outputs: Outputs<'_>, seeds: u64, base: RunOptions, quiet: bool) -> ExitCode {
    let out = outputs.out();
    let scenarios = match load_all(paths) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let progress = Progress::new(scenarios.len() as u64 * seeds, quiet);
    let mut runs: Vec<(Report, Option<Timeline>)> = Vec::new();
    let mut failed = Vec::new();
    let mut n = 0;
    for (file, scenario) in &scenarios {
        let first = base.seed.unwrap_or(scenario.seed);
        let mut worst: Option<RunOutput> = None;
        for offset in 0..seeds {
            let seed = first.wrapping_add(offset);
            let message = format!("{} (seed {seed})", scenario.name);
            let options = RunOptions { seed: Some(seed), progress: progress.sink(n, message), ..base.clone() };
            n += 1;
            match run(scenario, &options) {
                Ok(output) => {
                    if worst.as_ref().is_none_or(|w| worse(&output.report, &w.report)) {
                        worst = Some(output);
                    }
                }
                Err(e) => {
                    progress.finish();
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        let Some(output) = worst else { continue };
        let report = output.report;
        if !report.passed() {
            failed.push(format!(
                "{} (seed {}): reproduce with `{}`",
                report.scenario,
                report.seed,
                reproduce(file, &report, &base)
            ));
        }
        if !quiet || !report.passed() {
            progress.say(out, &render_table(&report));
        }
        runs.push((report, output.timeline));
    }
    progress.finish();
    if let Err(e) = outputs.write(&runs) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    out.line(&format!("{} scenario(s), {} passed, {} failed", runs.len(), runs.len() - failed.len(), failed.len()));
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for line in &failed {
            out.line(&format!("FAILED: {line}"));
        }
        ExitCode::from(1)
    }
}

fn compare_command(
    file: &Path,
    presets: &[Preset],
    outputs: Outputs<'_>,
    seed: Option<u64>,
    store: StoreKind,
    quiet: bool,
) -> ExitCode {
    let out = outputs.out();
    let scenario = match Scenario::load(file) {
        Ok(s) => {
            for warning in &s.warnings {
                eprintln!("warning: {warning}");
            }
            s
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let progress = Progress::new(presets.len() as u64, quiet);
    let mut runs = Vec::new();
    for (n, preset) in presets.iter().enumerate() {
        let message = format!("{} under {preset}", scenario.name);
        let options = RunOptions {
            store,
            seed,
            preset: Some(*preset),
            timeline: outputs.html.is_some(),
            progress: progress.sink(n as u64, message),
            ..RunOptions::default()
        };
        match run(&scenario, &options) {
            Ok(output) => runs.push((output.report, output.timeline)),
            Err(e) => {
                progress.finish();
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    progress.finish();
    let reports: Vec<Report> = runs.iter().map(|(r, _)| r.clone()).collect();
    out.line(&render_comparison(&reports));
    if let Err(e) = outputs.write(&runs) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
