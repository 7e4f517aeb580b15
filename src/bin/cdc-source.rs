//! `cdc-source`: streams committed changes from a PostgreSQL pgoutput slot to Kafka topics.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pgcdc::cli::{self, LogFormat, EXIT_CONFIG, EXIT_RUNTIME};
use pgcdc::config::SourceConfig;
use pgcdc::metrics::SourceMetrics;

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

async fn run(config: SourceConfig) -> anyhow::Result<ExitCode> {
    let metrics = SourceMetrics::new()?;
    if let Some(addr) = config.metrics.listen {
        metrics.serve(addr).await?;
    }
    let shutdown = cli::watch_signals("flushing and confirming what the broker acknowledged")?;
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
    if let Err(message) = cli::init_logging(cli.log_format, &cli.log_level) {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let config: SourceConfig = match cli::load_config(cli.config, "config/source.example.toml") {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match cli::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(run(config)),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_RUNTIME)
    })
}
