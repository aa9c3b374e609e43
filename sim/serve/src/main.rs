//! The `warden` binary: `warden serve --config warden.toml [--listen ADDR]` runs the service;
//! `warden serve --demo` runs mock brokers in-process with a session for each (see [`DemoSource`]).
//! `warden check --config warden.toml` checks the whole file as `serve` would read it, starting nothing
//! (every key with its line, every policy, every credential reference resolved and every adapter built,
//! `[serve]`: where it listens, that the address is safe to serve, the token file, the TLS files) and
//! exits 0, or prints what is wrong and exits 2.
//!
//! Signals: SIGTERM and SIGINT drain and stop (no logout: sessions resume on the next start); SIGHUP
//! re-reads the session source.
//!
//! The runtime and the sessions come from [`runtime_for`]: the one place where the configuration's
//! `[store]` and `[sessions.*]` tables become a `WardenBuilder` and a `SessionSource`
//! ([`FileSource`]: the real broker adapters, the file's store; SIGHUP and `POST /v1/reload` re-read
//! the sessions).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use warden_actors::{Clock, Warden, WardenBuilder};
use warden_adapters::config::SystemEnvironment;
use warden_serve::auth::{TOKEN_ENV_VAR, TokenOrigin, load_or_create_token};
use warden_serve::demo::DemoSource;
use warden_serve::{ConfigError, FileSource, ServeOptions, SessionSource};

#[derive(Parser)]
#[command(name = "warden", version, about = "Keeps broker API sessions alive for trading engines in any language")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: proxy, status API, events, status page, metrics.
    Serve {
        /// The configuration file.
        #[arg(long, required_unless_present = "demo", conflicts_with = "demo")]
        config: Option<PathBuf>,
        /// Nothing configured: start mock brokers in this process (Saxo, IBKR, Kotak Neo, Kite, OAuth2) and
        /// serve a session for each; the token file is ./warden-serve.token.
        #[arg(long)]
        demo: bool,
        /// Where to listen (default: `[serve] listen`, else 127.0.0.1:7878).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve a non-loopback address without TLS (only behind a TLS proxy you trust).
        #[arg(long)]
        allow_plain_http: bool,
    },
    /// Check the configuration's `[serve]` table and exit.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// The runtime and the session source for the configuration at `config_path`: the file's `[store]`
/// (its path, its key, its durability) on the system clock, and a [`FileSource`] that reads its
/// `[sessions.*]` with the real broker adapters and their credentials from the environment and files
/// the references name — at start and on every reload.
fn runtime_for(config_path: &Path) -> Result<(WardenBuilder, Option<Arc<dyn SessionSource>>), ConfigError> {
    let (builder, source) = FileSource::open(config_path, Arc::new(SystemEnvironment))?;
    Ok((builder, Some(source)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config, demo, listen, allow_plain_http } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
            tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colours).init();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("warden: could not start the async runtime: {error}");
                    return ExitCode::from(1);
                }
            };
            // clap refuses --config with --demo, and requires one of them.
            debug_assert!(config.is_some() != demo);
            match runtime.block_on(serve(config.as_deref(), listen, allow_plain_http)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("warden serve: {error}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    // The adapters are built on warden's clock, which runs a task: a small runtime for the check.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("warden: could not start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let checked = match runtime.block_on(async { FileSource::check(path, &SystemEnvironment) }) {
        Ok(checked) => checked,
        Err(error) => {
            eprintln!("warden check: {error}");
            return ExitCode::from(2);
        }
    };
    for warning in &checked.config.warnings {
        eprintln!("warden check: warning: {warning}");
    }
    let config = checked.serve;
    let mut problems = Vec::new();
    if let Err(problem) = config.check_listen(config.listen) {
        problems.push(problem);
    }
    if let Some(tls) = &config.tls
        && let Err(error) = warden_serve::server::tls_acceptor(tls)
    {
        problems.push(error.to_string());
    }
    let token = match std::fs::metadata(&config.token_file) {
        Ok(_) => match load_or_create_token(&config.token_file, None) {
            Ok(_) => format!("the bearer token is in {}", config.token_file.display()),
            Err(error) => {
                problems.push(error.to_string());
                String::new()
            }
        },
        Err(_) => format!("{} will be made on the first start", config.token_file.display()),
    };
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("warden check: {}: [serve]: {problem}", path.display());
        }
        return ExitCode::from(2);
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let sessions: Vec<String> =
        checked.config.sessions.iter().map(|s| format!("{} ({})", s.id, s.broker().as_str())).collect();
    println!(
        "{}: fine: {} session(s): {}; store {}; listens on {scheme}://{}; {token}",
        path.display(),
        sessions.len(),
        sessions.join(", "),
        checked.config.store.path.display(),
        config.listen
    );
    ExitCode::SUCCESS
}

/// Serves the configuration at `path`, or the demo without one.
async fn serve(path: Option<&Path>, listen: Option<SocketAddr>, allow_plain_http: bool) -> Result<(), String> {
    let (builder, source, config) = match path {
        Some(path) => {
            let (builder, source) = runtime_for(path).map_err(|e| e.to_string())?;
            (builder, source, warden_serve::ServeConfig::load(path).map_err(|e| e.to_string())?)
        }
        None => {
            let demo = DemoSource::start(Clock::system()).await.map_err(|e| e.to_string())?;
            tracing::info!("demo: five mock brokers in this process, a session for each, snapshots in memory");
            let source: Arc<dyn SessionSource> = Arc::new(demo);
            (Warden::builder().memory_store(), Some(source), warden_serve::ServeConfig::default())
        }
    };
    let listen = listen.unwrap_or(config.listen);
    let (token, origin) =
        load_or_create_token(&config.token_file, std::env::var(TOKEN_ENV_VAR).ok()).map_err(|e| e.to_string())?;
    match origin {
        TokenOrigin::Environment => tracing::info!("the bearer token comes from {TOKEN_ENV_VAR}"),
        TokenOrigin::File => tracing::info!(file = %config.token_file.display(), "the bearer token is in its file"),
        TokenOrigin::Created => {
            tracing::info!(file = %config.token_file.display(), "made a new bearer token (mode 0600)")
        }
    }
    let warden = builder.build().await.map_err(|e| e.to_string())?;
    let options = ServeOptions { config, listen, allow_plain_http, token, warden, sessions: Vec::new(), source };
    let on_service = |service: &warden_serve::Service| {
        let service = service.clone();
        tokio::spawn(async move {
            let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                tracing::warn!("SIGHUP cannot be watched; reload with POST /v1/reload");
                return;
            };
            while hangups.recv().await.is_some() {
                match service.reload().await {
                    Ok(report) => tracing::info!(?report, "SIGHUP: reloaded"),
                    Err(error) => tracing::warn!(%error, "SIGHUP: not reloaded"),
                }
            }
        });
    };
    warden_serve::serve(options, on_service, stop_signal()).await.map_err(|e| e.to_string())
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("signals cannot be watched; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
