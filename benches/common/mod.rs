//! What the benchmarks share besides the test bed: the source side of a run, settings from the
//! environment, a child's peak memory, WAL positions, and cdc-source's and cdc-sink's configs.

// Each benchmark uses its own subset.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::support::capture::parse_lsn;
use crate::support::postgres::{ClusterSetup, REPLICATOR};
use crate::support::process::CdcProcess;
use crate::support::{Broker, PgCluster, SchemaRegistry, TestNames};

/// The source side of a benchmark: a cluster with a database of its own, a tansu broker
/// keeping records in memory, and the registry.
pub struct SourceBed {
    pub pg: PgCluster,
    pub broker: Broker,
    pub registry: SchemaRegistry,
    pub names: TestNames,
    /// A connection to the benchmark's database.
    pub client: tokio_postgres::Client,
}

impl SourceBed {
    /// Starts the cluster, broker and registry and creates the database.
    pub async fn start() -> SourceBed {
        let pg = PgCluster::new().await;
        let broker = Broker::start_memory().await;
        let registry = SchemaRegistry::start();
        let names = TestNames::new();
        let client = names.create_database(&pg).await;
        SourceBed {
            pg,
            broker,
            registry,
            names,
            client,
        }
    }
}

/// Creates pgoutput slots, each in a query of its own: a slot cannot be created in a
/// transaction that wrote.
pub async fn create_slots(client: &tokio_postgres::Client, slots: &[&str]) {
    for slot in slots {
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[slot],
            )
            .await
            .expect("create a slot");
    }
}

/// cdc-sink's configuration for applying `topic` into the database at `url`, with `extra`
/// lines appended to `[apply]`, then `PGCDC_BENCH_SINK_EXTRA` for experiments such as
/// `workers = 1` or `batch_timeout = "20ms"` (an environment override would reach cdc-source
/// too, which has no `[apply]`).
pub fn sink_config(
    url: &str,
    topic: &str,
    group_id: &str,
    broker: &Broker,
    registry: &str,
    metrics: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[postgres]
url = "{url}"
[kafka]
brokers = "{brokers}"
[schema_registry]
url = "{registry}"
[metrics]
listen = "{metrics}"
[apply]
topics = ["{topic}"]
group_id = "{group_id}"
{extra}
{experiment}
"#,
        brokers = broker.bootstrap(),
        experiment = sink_experiment(),
    )
}

/// `PGCDC_BENCH_SINK_EXTRA`: lines every benchmark appends to cdc-sink's `[apply]` (which
/// comes last, so a following `[kafka.options]` table works too).
pub fn sink_experiment() -> String {
    std::env::var("PGCDC_BENCH_SINK_EXTRA").unwrap_or_default()
}

/// `--flag N` from the command line, else environment variable `variable`, else `default`.
/// Other arguments (cargo passes `--bench`) are ignored.
pub fn setting(flag: &str, variable: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    let value = match args.iter().position(|arg| arg == flag) {
        Some(at) => args.get(at + 1).and_then(|value| value.parse().ok()),
        None => Some(env_number(variable, default)),
    };
    match value {
        Some(value) if value > 0 => value,
        _ => panic!("{flag} (or {variable}) needs a positive whole number"),
    }
}

/// A target cluster that syncs its WAL to disk, as a production target does.
pub async fn durable_target() -> PgCluster {
    PgCluster::with_setup(ClusterSetup {
        extra_conf: "fsync = on\nfull_page_writes = on\n".into(),
        ..ClusterSetup::default()
    })
    .await
}

/// A whole number from the environment variable `name`, or `default`.
pub fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peak resident set size of process `pid` in KiB (`VmHWM`), 0 when it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The CPU time process `pid` has used so far (user and system), zero when unreadable.
pub fn cpu_time(pid: u32) -> Duration {
    // Fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second on Linux); the
    // command name (field 2) may hold spaces, so fields are counted after its closing ')'.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let fields: Vec<u64> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .map(|field| field.parse().unwrap_or(0))
                .collect();
            Some(fields.iter().sum::<u64>())
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The LSN a query returns as text (`pg_current_wal_lsn()::text`), 0 for NULL.
pub async fn lsn(client: &tokio_postgres::Client, sql: &str) -> u64 {
    let text: Option<String> = client.query_one(sql, &[]).await.expect(sql).get(0);
    text.map_or(0, |t| parse_lsn(&t))
}

/// The `[capture]` line of benchmarks that stream their own slot: `initial` would drop a slot
/// it has no snapshot record of and snapshot instead.
pub const STREAM_ONLY: &str = "snapshot = \"never\"";

/// cdc-source's configuration for a benchmark of table `public.bench`: Avro, no heartbeats,
/// frequent status updates, `capture` lines added to `[capture]` (e.g. [`STREAM_ONLY`]),
/// `extra` appended (e.g. a `[kafka.topic]` section).
pub fn source_config(
    pg: &PgCluster,
    names: &TestNames,
    broker: &Broker,
    registry: &str,
    capture: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[postgres]
url = "{url}"
[capture]
slot = "{slot}"
publication = "{publication}"
tables = ["public.bench"]
heartbeat_interval = "0s"
status_interval = "50ms"
{capture}
[schema_registry]
url = "{registry}"
[metrics]
listen = ""
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
format = "avro"
{extra}
"#,
        url = pg.url(&names.db, REPLICATOR),
        slot = names.slot,
        publication = names.publication,
        brokers = broker.bootstrap(),
        prefix = names.topic_prefix,
    )
}

/// Waits until a walsender holds `slot` (its reader streams) and returns when it saw that,
/// failing with `log()` (the reader's output) after a minute.
pub async fn wait_active(
    client: &tokio_postgres::Client,
    slot: &str,
    log: impl Fn() -> String,
) -> Instant {
    let started = Instant::now();
    loop {
        let active: bool = client
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("slot state")
            .get(0);
        if active {
            return Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing streamed from slot {slot}: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `slot`'s confirmed flush LSN reaches `end`, failing with `source`'s log after
/// ten minutes.
pub async fn wait_confirmed(
    client: &tokio_postgres::Client,
    slot: &str,
    end: u64,
    source: &CdcProcess,
) {
    let confirmed = format!(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    let started = Instant::now();
    while lsn(client, &confirmed).await < end {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "cdc-source did not finish: {}",
            source.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
