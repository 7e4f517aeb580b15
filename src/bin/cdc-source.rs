//! `cdc-source`: streams committed changes from a PostgreSQL pgoutput slot to Kafka topics.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pgcdc::cli::{self, LogFormat, EXIT_CONFIG, EXIT_PREREQUISITE, EXIT_RUNTIME};
use pgcdc::config::SourceConfig;
use pgcdc::metrics::SourceMetrics;
use pgcdc::source::check::{self, Purpose};
use pgcdc::source::{provision, SourceError};

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
    /// Check every prerequisite and print the fix for each one missing (exit 3 if any).
    Check,
    /// Create what is missing: the publication, the slot and the signal table.
    Init {
        /// Also set REPLICA IDENTITY FULL on captured tables without a primary key.
        #[arg(long)]
        fix_replica_identity: bool,
    },
    /// Drop the slot, and the publication and signal table pgcdc created.
    Teardown,
}

async fn run(config: SourceConfig) -> anyhow::Result<ExitCode> {
    let metrics = SourceMetrics::new()?;
    if let Some(addr) = config.metrics.listen {
        metrics.serve(addr).await?;
    }
    let shutdown = cli::watch_signals("flushing and confirming what the broker acknowledged")?;
    Ok(finish(pgcdc::source::run(config, metrics, shutdown).await))
}

async fn check(config: SourceConfig) -> ExitCode {
    match check::check(&config, Purpose::Check).await {
        Ok(report) => {
            for line in &report.lines {
                println!("{line}");
            }
            ExitCode::from(if report.failed() {
                EXIT_PREREQUISITE
            } else {
                0
            })
        }
        Err(error) => finish(Err(error)),
    }
}

/// Prints what `init` or `teardown` did.
fn report(done: Result<Vec<String>, SourceError>) -> ExitCode {
    finish(done.map(|lines| {
        for line in lines {
            println!("{line}");
        }
    }))
}

fn finish(outcome: Result<(), SourceError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(if error.is_config() {
                EXIT_CONFIG
            } else if error.is_prerequisite() {
                EXIT_PREREQUISITE
            } else {
                EXIT_RUNTIME
            })
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
        Command::Check => Ok(runtime.block_on(check(config))),
        Command::Init {
            fix_replica_identity,
        } => Ok(report(
            runtime.block_on(provision::init(&config, fix_replica_identity)),
        )),
        Command::Teardown => Ok(report(runtime.block_on(provision::teardown(&config)))),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_RUNTIME)
    })
}
