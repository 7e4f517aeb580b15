//! `cdc-source`: streams committed changes from a PostgreSQL pgoutput slot to Kafka topics.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use pgcdc::config::{ConfigFile, SourceConfig};
use pgcdc::metrics::SourceMetrics;

/// Exit code for a runtime failure (SPEC §1).
const EXIT_RUNTIME: u8 = 1;
/// Exit code for bad configuration or usage (SPEC §1).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "cdc-source",
    version,
    about = "Stream PostgreSQL changes to Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The source configuration file (TOML).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or tracing filter (e.g. `info`, `pgcdc=debug`).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand)]
enum Command {
    /// Stream changes from the slot to the topics (the default).
    Run,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("--log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Flips the shutdown flag on SIGINT or SIGTERM.
fn watch_signals() -> std::io::Result<watch::Receiver<bool>> {
    let (sender, receiver) = watch::channel(false);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested: flushing and confirming what the broker acknowledged (signal again to exit at once)");
        let _ = sender.send(true);
        // A second signal ends the process without waiting: nothing unacknowledged was
        // confirmed, so the next start replays it.
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        std::process::exit(130);
    });
    Ok(receiver)
}

async fn run(config: SourceConfig) -> anyhow::Result<ExitCode> {
    let metrics = SourceMetrics::new()?;
    if let Some(addr) = config.metrics.listen {
        metrics.serve(addr).await?;
    }
    let shutdown = watch_signals()?;
    match pgcdc::source::run(config, metrics, shutdown).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(if error.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            }))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_logging(cli.log_format, &cli.log_level) {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some(path) = cli.config else {
        eprintln!("error: --config FILE is required (see config/source.example.toml)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let config = match SourceConfig::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let command = cli.command.unwrap_or(Command::Run);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = match command {
        Command::Run => runtime.block_on(run(config)),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_RUNTIME)
    })
}
