//! What both binaries' command lines share: exit codes, logging set-up, signal handling and
//! loading the configuration file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::ConfigFile;

/// Exit code for a runtime failure (SPEC §1).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for bad configuration or usage (SPEC §1).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failed prerequisite (SPEC §1).
pub const EXIT_PREREQUISITE: u8 = 3;

/// Log line format (`--log-format`).
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr with a level or tracing filter (`--log-level`).
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
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

/// Loads the configuration named by `--config`, or says what is wrong (exit code 2).
pub fn load_config<C: ConfigFile>(path: Option<PathBuf>, example: &str) -> Result<C, ExitCode> {
    let Some(path) = path else {
        eprintln!("error: --config FILE is required (see {example})");
        return Err(ExitCode::from(EXIT_CONFIG));
    };
    C::load(&path).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Flips the shutdown flag on SIGINT or SIGTERM; a second signal exits at once.
pub fn watch_signals(what_happens: &'static str) -> std::io::Result<watch::Receiver<bool>> {
    let (sender, receiver) = watch::channel(false);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested: {what_happens} (signal again to exit at once)");
        let _ = sender.send(true);
        // A second signal ends the process without waiting: nothing unfinished was
        // recorded as done, so the next start does it again.
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        std::process::exit(130);
    });
    Ok(receiver)
}

/// Allocations of this size or more get pages of their own, returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Keeps large, short-lived buffers (librdkafka's decompressed fetches, a batch's `COPY`
/// data) out of the heap. glibc serves them from the heap once a freed one raised its dynamic
/// mmap threshold, and a heap per thread then keeps the freed space: a heaptrack profile of
/// cdc-sink on a mixed backlog showed a 42 MiB heap peak under a 67–71 MiB RSS. Fixing the
/// threshold at glibc's initial 128 KiB gave 60–62 MiB at the same rate.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_large_buffers_out_of_the_heap() {
    // SAFETY: mallopt only sets a parameter of the allocator, which may change at any time.
    // It fails only for a value out of range, which this one is not.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
}

/// Other allocators return large buffers to the system on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_large_buffers_out_of_the_heap() {}

/// A runtime for a binary: two workers, enough for its few tasks.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: start the async runtime: {error}");
            ExitCode::from(EXIT_RUNTIME)
        })
}
