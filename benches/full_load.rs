//! The first copy of a table, PostgreSQL to PostgreSQL, by native logical replication and by
//! pgcdc, in one run (`cargo bench --bench full_load -- --rows 1000000 --note-bytes 200
//! --partitions 1`; `--partitions`, PGCDC_BENCH_PARTITIONS, is the topic's, default 1). A
//! source table `bench` of `--rows` rows (PGCDC_BENCH_ROWS, default 1,000,000; bigint key,
//! integers, numeric, timestamptz and a text of `--note-bytes` bytes, PGCDC_BENCH_NOTE_BYTES,
//! default 200, so about 280 bytes a row) is copied into two databases of one target cluster
//! (fsync on) holding the same empty table:
//! - native: `CREATE SUBSCRIPTION … WITH (copy_data = true)` on a publication of its own,
//!   timed from the statement (which creates the slot) until the table is synced and equal;
//! - pgcdc: `cdc-source run` with `capture.snapshot = "initial_only"` (it creates its slot and
//!   publication, snapshots with its default workers into a tansu broker and exits once the
//!   broker acknowledged every row) and `cdc-sink run` with default settings, started once the
//!   topic exists, timed from cdc-source's start until the target table is equal.
//!
//! `PGCDC_BENCH_SOURCE_EXTRA` appends lines to cdc-source's configuration after its
//! `[kafka.topic]` table (e.g. `[kafka.options]` and `"compression.type" = "zstd"`), and
//! `PGCDC_BENCH_SINK_EXTRA` to cdc-sink's `[apply]`.
//!
//! Prints each path's time and rows/s, the ratio, when cdc-source had the snapshot in the
//! broker, both binaries' peak RSS, and where their time went: the snapshot workers' seconds
//! reading, encoding and producing (from cdc-source's last log line), and cdc-sink's seconds
//! waiting for fetched records, decoding, waiting for the applier, and in target
//! transactions (from its metrics).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{durable_target, peak_rss_kib, setting, sink_config, source_config, SourceBed};
use support::kafka::topic_exists;
use support::postgres::{REPLICATOR, SUPERUSER};
use support::process::CdcProcess;
use support::{free_port, http, PgCluster, TestNames};
use tokio_postgres::Client;

/// How long either path may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(1800);

/// How often the target is polled (each poll is an index lookup or a catalog query).
const POLL: Duration = Duration::from_millis(20);

fn table_sql(note_bytes: i64) -> String {
    format!(
        "CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, qty int,
                             price numeric(12,2), created timestamptz,
                             note text CHECK (length(note) <= {note_bytes}))"
    )
}

const DIGEST_SQL: &str =
    "SELECT count(*), coalesce(sum(id), 0)::bigint, coalesce(sum(qty), 0)::bigint FROM bench";

async fn digest(client: &Client) -> (i64, i64, i64) {
    let row = client.query_one(DIGEST_SQL, &[]).await.expect("digest");
    (row.get(0), row.get(1), row.get(2))
}

async fn holds(client: &Client, sql: &str) -> bool {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Waits until `ready` (a cheap query) says the copy is complete, then until the table's
/// digest equals `expected`, failing once `alive` says the copier died.
async fn wait_equal(
    client: &Client,
    ready: &str,
    expected: (i64, i64, i64),
    started: Instant,
    mut alive: impl FnMut() -> bool,
) -> Duration {
    loop {
        assert!(
            started.elapsed() < LIMIT && alive(),
            "the copy did not finish"
        );
        if holds(client, ready).await && digest(client).await == expected {
            return started.elapsed();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Native logical replication's initial copy into a database of its own.
async fn run_native(
    source: &PgCluster,
    source_client: &Client,
    names: &TestNames,
    target: &PgCluster,
    table: &str,
    expected: (i64, i64, i64),
) -> Duration {
    let publication = format!("{}_native", names.publication);
    source_client
        .batch_execute(&format!("CREATE PUBLICATION {publication} FOR TABLE bench"))
        .await
        .expect("create the native publication");
    let db = TestNames::new();
    let client = db.create_database(target).await;
    client.batch_execute(table).await.expect("create the table");
    let subscription = db.publication.clone();
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION {subscription}
             CONNECTION 'host=127.0.0.1 port={port} dbname={source_db} user={SUPERUSER}'
             PUBLICATION {publication} WITH (copy_data = true)",
            port = source.port(),
            source_db = names.db,
        ))
        .await
        .expect("create the subscription");
    // 's' (synced) and 'r' (ready) come after the table's copy committed.
    let synced =
        "SELECT coalesce(bool_and(srsubstate IN ('s', 'r')), false) FROM pg_subscription_rel";
    let took = wait_equal(&client, synced, expected, started, || true).await;
    client
        .batch_execute(&format!("DROP SUBSCRIPTION {subscription}"))
        .await
        .expect("drop the subscription and its slot");
    took
}

/// What pgcdc's run measured.
struct PgcdcRun {
    /// From cdc-source's start until the target table was equal.
    total: Duration,
    /// From cdc-source's start until it exited, the snapshot acknowledged by the broker.
    source_done: Duration,
    /// cdc-sink's time in target transactions.
    in_batches: f64,
    /// The snapshot workers' summed seconds: `read_seconds=…` and the like from the log.
    source_stages: String,
    /// cdc-sink's decoding task's seconds by stage.
    sink_stages: String,
    source_rss_kib: u64,
    sink_rss_kib: u64,
}

async fn run_pgcdc(
    bed: &SourceBed,
    target: &PgCluster,
    table: &str,
    partitions: i64,
    expected: (i64, i64, i64),
) -> PgcdcRun {
    let SourceBed {
        pg,
        broker,
        registry,
        names,
        ..
    } = bed;
    let db = TestNames::new();
    let client = db.create_database(target).await;
    client.batch_execute(table).await.expect("create the table");
    let topic = format!("{}.public.bench", names.topic_prefix);
    let group = format!("bench_{}", db.db);
    let metrics = format!("127.0.0.1:{}", free_port());
    let sink_config = sink_config(
        &target.url(&db.db, SUPERUSER),
        &topic,
        &group,
        broker,
        &registry.url(),
        &metrics,
        "",
    );
    let source_config = source_config(
        pg,
        names,
        broker,
        &registry.url(),
        "snapshot = \"initial_only\"",
        &format!(
            "[kafka.topic]\npartitions = {partitions}\n{}",
            std::env::var("PGCDC_BENCH_SOURCE_EXTRA").unwrap_or_default()
        ),
    );
    let started = Instant::now();
    let mut source = CdcProcess::run(&source_config);
    let bootstrap = broker.bootstrap();
    while !topic_exists(&bootstrap, &topic) {
        assert!(
            source.is_running() && started.elapsed() < LIMIT,
            "cdc-source made no topic: {}",
            source.stderr_text()
        );
        tokio::time::sleep(POLL).await;
    }
    let mut sink = CdcProcess::sink("run", &sink_config);
    let (source_pid, sink_pid) = (source.pid(), sink.pid());
    let (mut source_rss_kib, mut source_done) = (0, None);
    // Every record of the snapshot stored as applied: one record per row.
    let ready = format!(
        "SELECT coalesce(sum(next_offset), 0) >= {rows} FROM pgcdc.sink_offsets WHERE group_id = '{group}'",
        rows = expected.0
    );
    let offsets_table = "SELECT to_regclass('pgcdc.sink_offsets') IS NOT NULL";
    let total = loop {
        assert!(
            started.elapsed() < LIMIT && sink.is_running(),
            "the copy did not finish: {}",
            sink.stderr_text()
        );
        if source_done.is_none() {
            source_rss_kib = source_rss_kib.max(peak_rss_kib(source_pid));
            if !source.is_running() {
                source_done = Some(started.elapsed());
                let code = source.wait_exit(Duration::from_secs(1));
                assert_eq!(code, 0, "cdc-source failed: {}", source.stderr_text());
            }
        }
        if holds(&client, offsets_table).await
            && holds(&client, &ready).await
            && digest(&client).await == expected
        {
            break started.elapsed();
        }
        tokio::time::sleep(POLL).await;
    };
    let sink_rss_kib = peak_rss_kib(sink_pid);
    let (_, exposition) = http::get(&metrics, "/metrics").expect("scrape cdc-sink");
    let in_batches = http::samples(&exposition, "pgcdc_sink_batch_seconds_sum")
        .first()
        .map_or(0.0, |(_, seconds)| *seconds);
    let sink_stages: Vec<String> = http::samples(&exposition, "pgcdc_sink_stage_seconds_total")
        .iter()
        .map(|(labels, seconds)| format!("{} {seconds:.2} s", labels.replace("stage=", "")))
        .collect();
    drop(sink);
    let log = source.stderr_text();
    let completed = log
        .lines()
        .find(|line| line.contains("initial snapshot completed"))
        .unwrap_or_default();
    let source_stages: Vec<&str> = completed
        .split_whitespace()
        .filter(|field| field.starts_with("workers=") || field.contains("_seconds="))
        .collect();
    PgcdcRun {
        total,
        source_done: source_done.expect("cdc-source exited before the target was equal"),
        in_batches,
        source_stages: source_stages.join(" "),
        sink_stages: sink_stages.join(", "),
        source_rss_kib,
        sink_rss_kib,
    }
}

#[tokio::main]
async fn main() {
    let rows = setting("--rows", "PGCDC_BENCH_ROWS", 1_000_000);
    let note_bytes = setting("--note-bytes", "PGCDC_BENCH_NOTE_BYTES", 200);
    let partitions = setting("--partitions", "PGCDC_BENCH_PARTITIONS", 1);
    let bed = SourceBed::start().await;
    let target = durable_target().await;
    let guard = bed.names.guard(&bed.pg);
    let table = table_sql(note_bytes);
    // cdc-source creates its publication, so its role owns the table and may create in the db.
    bed.client
        .batch_execute(&format!(
            "{table};
             ALTER TABLE bench OWNER TO {REPLICATOR};
             GRANT CREATE ON DATABASE {db} TO {REPLICATOR};",
            db = bed.names.db,
        ))
        .await
        .expect("set up the source database");
    for start in (0..rows).step_by(100_000) {
        let end = (start + 100_000).min(rows) - 1;
        bed.client
            .batch_execute(&format!(
                "INSERT INTO bench SELECT i, 'name ' || i, i % 100, i * 0.01, now(),
                                          repeat('x', {note_bytes})
                 FROM generate_series({start}, {end}) i"
            ))
            .await
            .expect("fill the table");
    }
    bed.client
        .batch_execute("VACUUM ANALYZE bench")
        .await
        .expect("vacuum");
    let expected = digest(&bed.client).await;
    let size: i64 = bed
        .client
        .query_one("SELECT pg_table_size('bench')", &[])
        .await
        .expect("table size")
        .get(0);

    let native = run_native(&bed.pg, &bed.client, &bed.names, &target, &table, expected).await;
    let pgcdc = run_pgcdc(&bed, &target, &table, partitions, expected).await;
    drop(guard);

    let rate = |took: Duration| rows as f64 / took.as_secs_f64();
    println!(
        "{rows} rows ({} MiB of table), {partitions} topic partition(s), target fsync on",
        size / (1024 * 1024)
    );
    println!(
        "native (copy_data = true)          {:>8.2} s {:>9.0} rows/s",
        native.as_secs_f64(),
        rate(native)
    );
    println!(
        "pgcdc (cdc-source → tansu → cdc-sink) {:>5.2} s {:>9.0} rows/s",
        pgcdc.total.as_secs_f64(),
        rate(pgcdc.total)
    );
    println!(
        "  cdc-source had the snapshot in the broker after {:.2} s ({:.0} rows/s), peak RSS {} MiB",
        pgcdc.source_done.as_secs_f64(),
        rate(pgcdc.source_done),
        pgcdc.source_rss_kib / 1024
    );
    println!("    snapshot workers, summed: {}", pgcdc.source_stages);
    println!(
        "  cdc-sink spent {:.2} s in target transactions, peak RSS {} MiB",
        pgcdc.in_batches,
        pgcdc.sink_rss_kib / 1024
    );
    println!("    decoding task: {}", pgcdc.sink_stages);
    println!(
        "ratio pgcdc / native: {:.2}",
        rate(pgcdc.total) / rate(native)
    );
}
