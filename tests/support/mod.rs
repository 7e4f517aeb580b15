//! Test bed shared by every integration test module: throwaway PostgreSQL clusters, tansu
//! brokers, an in-process schema registry and helpers to read what landed in Kafka.
//!
//! Every resource lives under one directory per test process (`testbed_root()`), so a run
//! can clean up after itself — and after earlier runs that were killed — without touching
//! anything else on the machine.

// Each test module uses its own subset of this API, so some items are unused in any one build.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod capture;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod tls;

pub use broker::{shared_broker, Broker};
pub use kafka::{decode_avro, describe_partitions, read_topic, read_topic_with, TestRecord};
pub use postgres::{
    fresh_database, shared_pg, ClusterSetup, PgCluster, ReplicationGuard, TestNames,
};
pub use registry::{shared_registry, SchemaRegistry};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `<target>/tmp/testbed`: holds one directory per test process, named after its pid.
fn testbed_base() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("testbed")
}

/// This process's directory. The first call also sweeps directories of processes that are
/// gone and starts a watchdog that cleans this one up when this process exits: a `static`
/// is never dropped, so the shared cluster and broker would otherwise outlive the run.
pub fn testbed_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = testbed_base();
        std::fs::create_dir_all(&base).expect("create testbed base directory");
        sweep_dead_runs(&base);
        let root = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&root).expect("create testbed root");
        spawn_exit_watchdog(&root);
        root
    })
}

/// A fresh directory under this run's root, named `<prefix>-<random>`.
pub fn unique_dir(prefix: &str) -> PathBuf {
    let dir = testbed_root().join(format!("{prefix}-{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("create testbed directory");
    dir
}

/// Ten lower-case alphanumerics: valid in database, slot, publication and topic names.
pub fn random_suffix() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), 10)
        .to_lowercase()
}

/// A loopback port that was free a moment ago. Callers retry on the rare collision.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// Polls `ready` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Stops the clusters and brokers under the given run directories and removes them; the
/// same script sweeps after `scripts/test.sh`, so there is one implementation of cleanup.
const CLEANUP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed-cleanup.sh");

/// Removes what earlier test processes left behind when they were killed before their
/// watchdog could run (or when the watchdog itself was killed).
fn sweep_dead_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let dead: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.parse::<u32>().is_ok() && !pid_alive(&name)
        })
        .map(|entry| entry.path())
        .collect();
    if !dead.is_empty() {
        let _ = Command::new(CLEANUP_SCRIPT).args(&dead).status();
    }
}

fn spawn_exit_watchdog(root: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; exec '{CLEANUP_SCRIPT}' '{root}'",
        pid = std::process::id(),
        root = root.display(),
    );
    // `setsid --fork` detaches the watchdog into a session of its own, so a Ctrl-C on the
    // run does not kill it before it has cleaned up, and returns at once.
    let status = Command::new("setsid")
        .arg("--fork")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn the testbed exit watchdog");
    assert!(status.success(), "setsid failed: {status}");
}
