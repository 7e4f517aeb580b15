//! cdc-source's initial snapshot against `COPY … TO STDOUT` of the same table, in one run
//! (`cargo bench --bench snapshot_throughput`). A fresh table `public.bench` of
//! PGCDC_BENCH_ROWS rows (default 1000000, ~280 bytes each) is read over loopback TCP by:
//! - `psql` running `COPY (SELECT * FROM bench) TO STDOUT` into /dev/null, in text and in
//!   binary format;
//! - `cdc-source run` with `capture.snapshot = "initial_only"` and PGCDC_BENCH_WORKERS
//!   snapshot workers (default 4), producing Avro to a tansu broker; it creates the
//!   publication and slot itself and exits once the snapshot is in the broker.
//!
//! Prints rows/s of each, the ratio of cdc-source to COPY text, and cdc-source's peak RSS,
//! after checking that the topic holds one record per row.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{env_number, peak_rss_kib, source_config, SourceBed};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::postgres::{bin_dir, REPLICATOR, SUPERUSER};
use support::process::CdcProcess;
use support::PgCluster;

/// How long the snapshot may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(600);

/// Runs `sql` through `psql` with its output into /dev/null and returns how long it took.
fn psql_copy(pg: &PgCluster, db: &str, sql: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new(bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &pg.port().to_string(), "-U", SUPERUSER, "-d", db])
        .args(["-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql {sql} failed");
    started.elapsed()
}

/// The number of records in `topic`, counted by reading every partition to its end. (tansu's
/// ListOffsets answers the newest batch's base offset + 1, so `fetch_watermarks` falls short
/// of the end whenever the last batch holds more than one record; fetch responses are right.)
fn topic_records(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "snapshot-throughput")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("create topic reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign partitions");
    let (mut records, mut at_end) = (0, HashSet::new());
    let started = Instant::now();
    while at_end.len() < partitions {
        assert!(started.elapsed() < LIMIT, "reading {topic} did not finish");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => records += 1,
            Some(Err(KafkaError::PartitionEOF(partition))) => _ = at_end.insert(partition),
            Some(Err(e)) => panic!("read {topic}: {e}"),
            None => {}
        }
    }
    records
}

#[tokio::main]
async fn main() {
    let rows = env_number("PGCDC_BENCH_ROWS", 1_000_000);
    let workers = env_number("PGCDC_BENCH_WORKERS", 4).max(1);
    let SourceBed {
        pg,
        broker,
        registry,
        names,
        client,
    } = SourceBed::start().await;
    let guard = names.guard(&pg);
    // cdc-source creates the publication, so its role owns the table and may create in the db.
    client
        .batch_execute(&format!(
            "CREATE TABLE bench (id int PRIMARY KEY, name text NOT NULL, qty int, price numeric(10,2),
                                 created timestamptz, note text);
             ALTER TABLE bench OWNER TO {REPLICATOR};
             GRANT CREATE ON DATABASE {db} TO {REPLICATOR};",
            db = names.db,
        ))
        .await
        .expect("set up the benchmark database");
    for start in (0..rows).step_by(100_000) {
        let end = (start + 100_000).min(rows) - 1;
        client
            .batch_execute(&format!(
                "INSERT INTO bench SELECT i, 'name ' || i, i % 100, i * 0.01, now(), repeat('x', 200)
                 FROM generate_series({start}, {end}) i"
            ))
            .await
            .expect("fill the table");
    }
    client
        .batch_execute("VACUUM ANALYZE bench")
        .await
        .expect("vacuum");

    let copy_text = psql_copy(&pg, &names.db, "COPY (SELECT * FROM bench) TO STDOUT");
    let copy_binary = psql_copy(
        &pg,
        &names.db,
        "COPY (SELECT * FROM bench) TO STDOUT (FORMAT binary)",
    );

    let config = source_config(
        &pg,
        &names,
        &broker,
        &registry.url(),
        &format!("snapshot = \"initial_only\"\nsnapshot_workers = {workers}"),
        "",
    );
    let started = Instant::now();
    let mut source = CdcProcess::run(&config);
    let mut rss = 0;
    while source.is_running() {
        rss = rss.max(peak_rss_kib(source.pid()));
        assert!(
            started.elapsed() < LIMIT,
            "cdc-source did not finish: {}",
            source.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = started.elapsed();
    let code = source.wait_exit(Duration::from_secs(1));
    assert_eq!(code, 0, "cdc-source failed: {}", source.stderr_text());
    let topic = format!("{}.public.bench", names.topic_prefix);
    assert_eq!(topic_records(&broker.bootstrap(), &topic), rows, "{topic}");
    drop(source);
    drop(guard);

    let rate = |elapsed: Duration| rows as f64 / elapsed.as_secs_f64();
    let line = |what: &str, elapsed: Duration| {
        format!(
            "{what:<25}{rows} rows in {:.2} s = {:.0} rows/s",
            elapsed.as_secs_f64(),
            rate(elapsed)
        )
    };
    println!("{}", line("COPY TO STDOUT (text):", copy_text));
    println!("{}", line("COPY TO STDOUT (binary):", copy_binary));
    println!(
        "{} (peak RSS {} MiB, {workers} workers)",
        line("cdc-source snapshot:", snapshot),
        rss / 1024
    );
    println!(
        "ratio cdc-source / COPY text: {:.2}",
        rate(snapshot) / rate(copy_text)
    );
}
