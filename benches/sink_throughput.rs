//! cdc-sink against PostgreSQL's native logical replication applying the same backlog, in
//! one run (`cargo bench --bench sink_throughput`). A source cluster takes the workload
//! (inserts in transactions of PGCDC_BENCH_TRANSACTION_ROWS rows, default 1000; rows:
//! PGCDC_BENCH_ROWS, default 200000) with two slots already in place; with
//! PGCDC_BENCH_WORKLOAD=mixed every row is then updated, a tenth deleted and a twentieth given
//! a new key, in transactions of the same size, and a last row marks the end. cdc-source drains one
//! slot into an Avro topic backlog before anything is timed. Then, into two databases of one
//! target cluster (fsync on, as in production) holding the same empty table:
//! - native: a subscription on the other slot (`create_slot = false, copy_data = false`),
//!   enabled once the backlog is complete;
//! - cdc-sink: `cdc-sink run` on the topic backlog;
//! - the apply engine: the backlog's records, read from the broker before the clock starts,
//!   applied from memory by the same decoding, batching and apply code in this process
//!   (`pgcdc::sink::run::apply_records`), so what the broker costs cdc-sink shows.
//!
//! Each is timed from its start until the target table equals the source's (count and sums;
//! probed once the last row is in), and from its first row on, which leaves out start-up. Prints rows/s of each, their ratios, cdc-sink's
//! peak RSS and time in target transactions, and how fast the backlog can merely be read
//! from the broker (the ceiling the broker sets).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{
    create_slots, durable_target, env_number, lsn, peak_rss_kib, sink_config, source_config,
    wait_confirmed, SourceBed, STREAM_ONLY,
};
use pgcdc::config::{ConfigFile, SinkConfig};
use pgcdc::kafka::ConsumedRecord;
use pgcdc::metrics::SinkMetrics;
use pgcdc::sink::run::apply_records;
use support::postgres::{REPLICATOR, SUPERUSER};
use support::process::CdcProcess;
use support::{free_port, http, Broker, PgCluster, TestNames};
use tokio::sync::watch;
use tokio_postgres::Client;

const TABLE_SQL: &str = "CREATE TABLE bench (id int PRIMARY KEY, name text NOT NULL, qty int,
                         price numeric(10,2), created timestamptz, note text)";

/// How long either side may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(600);

/// When the first row arrived and when the last did, measured from `started`.
struct Applied {
    first_row: Duration,
    all_rows: Duration,
}

impl Applied {
    fn rate(&self, changes: i64) -> f64 {
        changes as f64 / self.all_rows.as_secs_f64()
    }

    fn rate_after_first_row(&self, changes: i64) -> f64 {
        changes as f64 / (self.all_rows - self.first_row).as_secs_f64()
    }
}

/// What the target must hold at the end: the last row written, and the table's digest.
struct Expected {
    last_id: i64,
    digest: (i64, i64, i64),
    /// Row changes made on the source.
    changes: i64,
    /// Records cdc-source publishes for them (a delete adds a tombstone, a key change is a
    /// delete, a tombstone and a create).
    records: i64,
}

const DIGEST_SQL: &str =
    "SELECT count(*), coalesce(sum(id), 0)::bigint, coalesce(sum(qty), 0)::bigint FROM bench";

async fn digest(client: &Client) -> (i64, i64, i64) {
    let row = client.query_one(DIGEST_SQL, &[]).await.expect("digest");
    (row.get(0), row.get(1), row.get(2))
}

/// Polls the target table until it equals the source's. The probes are index lookups, so
/// polling costs both sides the same little; the digest runs only once the last row is in.
async fn wait_applied(
    target: &Client,
    expected: &Expected,
    started: Instant,
    mut alive: impl FnMut() -> bool,
    consumed: Option<&str>,
) -> Applied {
    let mut first_row = None;
    // Cheap tests before the digest's full scan, which would otherwise run every round and
    // take the CPU the apply needs: the last row is there (native replication applies in
    // commit order, so it is the last to arrive) and, for cdc-sink (whose partitions arrive
    // in no order among each other), the offsets it stored count every record.
    let mut last = format!(
        "SELECT EXISTS (SELECT 1 FROM bench WHERE id = {})",
        expected.last_id
    );
    if let Some(group) = consumed {
        last = format!(
            "{last} AND (SELECT coalesce(sum(next_offset), 0) >= {records} \
             FROM pgcdc.sink_offsets WHERE group_id = '{group}')",
            records = expected.records
        );
    }
    loop {
        assert!(
            started.elapsed() < LIMIT && alive(),
            "the apply did not finish"
        );
        if first_row.is_none() && exists(target, "SELECT EXISTS (SELECT 1 FROM bench)").await {
            first_row = Some(started.elapsed());
        }
        if let Some(first_row) = first_row {
            if exists(target, &last).await && digest(target).await == expected.digest {
                return Applied {
                    first_row,
                    all_rows: started.elapsed(),
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn exists(client: &Client, sql: &str) -> bool {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Runs one statement in a transaction of its own and returns the rows it changed.
async fn changed(source: &Client, sql: &str) -> i64 {
    source.execute(sql, &[]).await.expect(sql) as i64
}

/// The workload on the source, with a slot for cdc-source and one for the subscription
/// created first, so both hold all of it. Returns the WAL position after it and what the
/// target must end with.
async fn fill_source(
    source: &Client,
    names: &TestNames,
    rows: i64,
    per_transaction: i64,
    mixed: bool,
) -> (u64, Expected) {
    source
        .batch_execute(&format!(
            "{TABLE_SQL};
             ALTER TABLE bench OWNER TO {REPLICATOR};
             CREATE PUBLICATION {publication} FOR TABLE bench;",
            publication = names.publication,
        ))
        .await
        .expect("set up the source database");
    create_slots(source, &[&names.slot, &native_slot(names)]).await;
    let (mut inserts, mut updates, mut deletes, mut key_changes) = (0, 0, 0, 0);
    let ranges = || {
        (0..rows)
            .step_by(per_transaction as usize)
            .map(move |start| (start, (start + per_transaction).min(rows) - 1))
    };
    for (start, end) in ranges() {
        inserts += changed(
            source,
            &format!(
            "INSERT INTO bench SELECT i, 'name ' || i, i % 100, i * 0.01, now(), repeat('x', 200)
             FROM generate_series({start}, {end}) i"
        ),
        )
        .await;
    }
    let mut last_id = rows - 1;
    if mixed {
        for (start, end) in ranges() {
            updates += changed(source, &format!(
                "UPDATE bench SET qty = qty + 1, note = repeat('y', 200) WHERE id BETWEEN {start} AND {end}"
            ))
            .await;
        }
        for (start, end) in ranges() {
            deletes += changed(
                source,
                &format!("DELETE FROM bench WHERE id BETWEEN {start} AND {end} AND id % 10 = 3"),
            )
            .await;
            key_changes += changed(source, &format!(
                "UPDATE bench SET id = id + {rows} WHERE id BETWEEN {start} AND {end} AND id % 20 = 7"
            ))
            .await;
        }
        last_id = -1;
        inserts += changed(
            source,
            "INSERT INTO bench VALUES (-1, 'last', 0, 0, now(), 'the end of the workload')",
        )
        .await;
    }
    let expected = Expected {
        last_id,
        digest: digest(source).await,
        changes: inserts + updates + deletes + key_changes,
        records: inserts + updates + 2 * deletes + 3 * key_changes,
    };
    (
        lsn(source, "SELECT pg_current_wal_lsn()::text").await,
        expected,
    )
}

fn native_slot(names: &TestNames) -> String {
    format!("{}_native", names.slot)
}

/// Runs cdc-source until its slot is confirmed past `end`: the topic then holds every row.
async fn fill_topic(source: &Client, config: &str, slot: &str, end: u64) {
    let process = CdcProcess::run(config);
    wait_confirmed(source, slot, end, &process).await;
    process.terminate();
}

async fn run_native(
    source: &PgCluster,
    target: &PgCluster,
    names: &TestNames,
    expected: &Expected,
) -> Applied {
    let db = TestNames::new();
    let client = db.create_database(target).await;
    client
        .batch_execute(&format!(
            "{TABLE_SQL};
             CREATE SUBSCRIPTION {sub} CONNECTION 'host=127.0.0.1 port={port} dbname={source_db} user={SUPERUSER}'
             PUBLICATION {publication}
             WITH (create_slot = false, slot_name = '{slot}', copy_data = false, enabled = false);",
            sub = db.publication,
            port = source.port(),
            source_db = names.db,
            publication = names.publication,
            slot = native_slot(names),
        ))
        .await
        .expect("create the subscription");
    let started = Instant::now();
    client
        .batch_execute(&format!("ALTER SUBSCRIPTION {} ENABLE", db.publication))
        .await
        .expect("enable the subscription");
    let applied = wait_applied(&client, expected, started, || true, None).await;
    client
        .batch_execute(&format!(
            "ALTER SUBSCRIPTION {sub} DISABLE;
             ALTER SUBSCRIPTION {sub} SET (slot_name = NONE);
             DROP SUBSCRIPTION {sub};",
            sub = db.publication
        ))
        .await
        .expect("drop the subscription");
    applied
}

/// A target database of its own holding the empty table, and a sink configuration (metrics
/// on `metrics`, none when empty) and group for it: the client, the group, the configuration.
async fn sink_database(
    target: &PgCluster,
    names: &TestNames,
    broker: &Broker,
    registry: &str,
    metrics: &str,
) -> (Client, String, String) {
    let db = TestNames::new();
    let client = db.create_database(target).await;
    client
        .batch_execute(TABLE_SQL)
        .await
        .expect("create the table");
    let group = format!("bench_{}", db.db);
    let config = sink_config(
        &target.url(&db.db, SUPERUSER),
        &format!("{}.public.bench", names.topic_prefix),
        &group,
        broker,
        registry,
        metrics,
        "",
    );
    (client, group, config)
}

/// The apply engine's run on `records` held in memory, into a database of its own.
async fn run_engine(
    target: &PgCluster,
    names: &TestNames,
    broker: &Broker,
    registry: &str,
    expected: &Expected,
    records: Vec<ConsumedRecord>,
) -> Applied {
    let (client, group, config) = sink_database(target, names, broker, registry, "").await;
    let config = SinkConfig::from_toml_str(&config, []).expect("the apply engine's configuration");
    let metrics = SinkMetrics::new().expect("metrics");
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    // An error shows here, as the task's panic, before the wait below gives up.
    let engine = tokio::spawn(async move {
        apply_records(&config, &metrics, records, shutdown)
            .await
            .expect("the apply engine");
    });
    let applied = wait_applied(
        &client,
        expected,
        started,
        || !engine.is_finished(),
        Some(&group),
    )
    .await;
    stop.send(true).expect("stop the apply engine");
    engine.await.expect("the apply engine's task");
    applied
}

/// cdc-sink's run: when rows arrived, its peak RSS, and the seconds its batches took.
async fn run_sink(
    target: &PgCluster,
    names: &TestNames,
    broker: &Broker,
    registry: &str,
    expected: &Expected,
) -> (Applied, u64, f64) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let (client, group, config) = sink_database(target, names, broker, registry, &metrics).await;
    let started = Instant::now();
    let mut sink = CdcProcess::sink("run", &config);
    let pid = sink.pid();
    let applied = wait_applied(
        &client,
        expected,
        started,
        || sink.is_running(),
        Some(&group),
    )
    .await;
    let rss = peak_rss_kib(pid);
    let (_, exposition) = http::get(&metrics, "/metrics").expect("scrape cdc-sink");
    let in_batches = http::samples(&exposition, "pgcdc_sink_batch_seconds_sum")
        .first()
        .map_or(0.0, |(_, seconds)| *seconds);
    drop(sink);
    (applied, rss, in_batches)
}

#[tokio::main]
async fn main() {
    let rows = env_number("PGCDC_BENCH_ROWS", 200_000);
    let per_transaction = env_number("PGCDC_BENCH_TRANSACTION_ROWS", 1000).max(1);
    let mixed = std::env::var("PGCDC_BENCH_WORKLOAD").is_ok_and(|w| w == "mixed");
    let SourceBed {
        pg: source,
        broker,
        registry,
        names,
        client,
    } = SourceBed::start().await;
    let target = durable_target().await;
    let guard = names.guard(&source);
    let (end, expected) = fill_source(&client, &names, rows, per_transaction, mixed).await;
    let records = expected.records;
    let changes = expected.changes;
    let config = source_config(
        &source,
        &names,
        &broker,
        &registry.url(),
        STREAM_ONLY,
        "[kafka.topic]\npartitions = 3",
    );
    fill_topic(&client, &config, &names.slot, end).await;

    let topic = format!("{}.public.bench", names.topic_prefix);
    let bootstrap = broker.bootstrap();
    let started = Instant::now();
    let read = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            support::read_topic(&bootstrap, &topic, records as usize, LIMIT)
        })
        .await
        .expect("read the topic")
    };
    let broker_read = started.elapsed();
    assert_eq!(read.len() as i64, records, "the topic holds every change");
    let in_memory = read
        .into_iter()
        .map(|record| ConsumedRecord {
            topic: topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key,
            value: record.value,
        })
        .collect();
    let engine = run_engine(
        &target,
        &names,
        &broker,
        &registry.url(),
        &expected,
        in_memory,
    )
    .await;
    let native = run_native(&source, &target, &names, &expected).await;
    let (sink, rss, in_batches) =
        run_sink(&target, &names, &broker, &registry.url(), &expected).await;
    let _ = client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{}')",
            native_slot(&names)
        ))
        .await;
    drop(guard);

    let workload = if mixed {
        "inserts, then updates, deletes and key changes"
    } else {
        "inserts"
    };
    println!(
        "{changes} row changes ({workload}; {rows} rows) in transactions of {per_transaction}, target fsync on"
    );
    for (name, applied) in [
        ("native logical replication", &native),
        ("cdc-sink", &sink),
        ("apply engine (no broker)", &engine),
    ] {
        println!(
            "{name:<27} {:>9.0} changes/s ({:.2?}; first row after {:.2?}, {:.0} changes/s from there)",
            applied.rate(changes),
            applied.all_rows,
            applied.first_row,
            applied.rate_after_first_row(changes),
        );
    }
    println!(
        "reading the topic alone      {:>9.0} records/s ({broker_read:.2?}; librdkafka, no decoding)",
        records as f64 / broker_read.as_secs_f64()
    );
    println!(
        "cdc-sink peak RSS {} MiB, {in_batches:.2}s of its run in target transactions",
        rss / 1024
    );
    for (name, applied) in [("cdc-sink", &sink), ("apply engine", &engine)] {
        println!(
            "ratio {name} / native: {:.2} (from first row: {:.2})",
            applied.rate(changes) / native.rate(changes),
            applied.rate_after_first_row(changes) / native.rate_after_first_row(changes)
        );
    }
}
