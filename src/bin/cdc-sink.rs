//! `cdc-sink`: applies change topics to a target PostgreSQL, and verifies the result.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pgcdc::cli::{self, LogFormat, EXIT_CONFIG, EXIT_RUNTIME};
use pgcdc::config::SinkConfig;
use pgcdc::metrics::SinkMetrics;

#[derive(Parser)]
#[command(
    name = "cdc-sink",
    version,
    about = "Apply change topics to a target PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The sink configuration file (TOML).
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
    /// Consume the topics and apply the changes (the default).
    Run,
    /// Compare every applied table with its source: row count and content hash.
    Verify,
}

async fn run(config: SinkConfig) -> anyhow::Result<ExitCode> {
    let metrics = SinkMetrics::new()?;
    if let Some(addr) = config.metrics.listen {
        metrics.serve(addr).await?;
    }
    let shutdown = cli::watch_signals("applying the pending batch, then stopping")?;
    match pgcdc::sink::run::run(config, metrics, shutdown).await {
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

async fn verify(config: SinkConfig) -> anyhow::Result<ExitCode> {
    match pgcdc::sink::verify_all::verify_all(&config).await {
        Ok(reports) if reports.is_empty() => {
            eprintln!(
                "error: nothing to verify: group `{}` has applied no table to this target yet",
                config.apply.group_id
            );
            Ok(ExitCode::from(EXIT_RUNTIME))
        }
        Ok(reports) => {
            for report in &reports {
                println!("{report}");
            }
            let all_match = reports.iter().all(|r| r.matches());
            Ok(ExitCode::from(if all_match { 0 } else { EXIT_RUNTIME }))
        }
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
    cli::keep_large_buffers_out_of_the_heap();
    let cli = Cli::parse();
    if let Err(message) = cli::init_logging(cli.log_format, &cli.log_level) {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let config: SinkConfig = match cli::load_config(cli.config, "config/sink.example.toml") {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match cli::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(run(config)),
        Command::Verify => runtime.block_on(verify(config)),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_RUNTIME)
    })
}
