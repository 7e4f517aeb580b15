//! End-to-end latency as a user sees it: pgcdc against PostgreSQL's native logical
//! replication under the same paced workload, in one run (`cargo bench --bench latency --
//! --rate 5000 --seconds 30 --rows-per-transaction 5 --partitions 1`; env fallbacks PGCDC_BENCH_RATE,
//! PGCDC_BENCH_SECONDS, PGCDC_BENCH_TRANSACTION_ROWS, PGCDC_BENCH_PARTITIONS).
//!
//! A source cluster's table `bench` stamps each row with `written = clock_timestamp()`.
//! Two databases of one target cluster (fsync on, as in production) hold the same table,
//! whose rows are stamped with their commit time by an `ENABLE ALWAYS` deferred constraint
//! trigger (see [`TARGET_SQL`]):
//! - native: a subscription on a slot of its own (`create_slot = false, copy_data = false`);
//! - pgcdc: cdc-source (Avro) into a tansu broker, cdc-sink with default settings from there.
//!
//! A third figure isolates cdc-source: a consumer (`fetch.wait.max.ms = 10`) records when
//! each row's record reached it. Both paths and the consumer first carry a probe row (id -1),
//! so group joins and connection set-up are not measured. Then the writer inserts `--rate`
//! rows/s in transactions of `--rows-per-transaction` rows on a fixed schedule for
//! `--seconds` (an achieved rate below the asked one means the machine is saturated). A row's
//! latency is `arrived - written` (or receive time - `written`), `arrived` being stamped as
//! the target transaction commits.
//! Prints p50/p95/p99/max per path, the ratio pgcdc / native and both processes' peak RSS.
//!
//! PGCDC_BENCH_SINK_EXTRA is appended to cdc-sink's `[apply]` section (which comes last), for
//! experiments such as `batch_timeout = "20ms"`, `workers = 1` or a following
//! `[kafka.options]` table (see `common::sink_config`).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    cpu_time, create_slots, durable_target, peak_rss_kib, setting, sink_config, sink_experiment,
    source_config, SourceBed, STREAM_ONLY,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::postgres::{REPLICATOR, SUPERUSER};
use support::process::CdcProcess;
use support::{random_suffix, TestNames};
use tokio::time::MissedTickBehavior;
use tokio_postgres::Client;

/// The source's table, and `arrival` stamped by a deferred constraint trigger: it runs when
/// the row's transaction commits, so a row counts as arrived when it becomes visible, not when
/// it was inserted into a batch still under way. `ENABLE ALWAYS`: the subscription's apply
/// worker runs as `session_replication_role = replica`, and with an empty `search_path`.
const TARGET_SQL: &str = "
    CREATE TABLE bench (id bigint PRIMARY KEY, payload text, written timestamptz NOT NULL);
    CREATE TABLE arrival (id bigint PRIMARY KEY, arrived timestamptz NOT NULL);
    CREATE FUNCTION stamp_arrival() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN INSERT INTO public.arrival VALUES (NEW.id, pg_catalog.clock_timestamp()); RETURN NULL; END $$;
    CREATE CONSTRAINT TRIGGER stamp_arrival AFTER INSERT ON bench
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stamp_arrival();
    ALTER TABLE bench ENABLE ALWAYS TRIGGER stamp_arrival;";

/// The warm-up row; measured rows have ids from 0.
const PROBE_ID: i64 = -1;

/// How long warm-up, or the paths catching up after the writes, may take.
const LIMIT: Duration = Duration::from_secs(120);

/// When the consumer received each id, in ms since the Unix epoch, shared with its thread.
type Received = Arc<Mutex<HashMap<i64, f64>>>;

/// p50, p95, p99 and max (the 100th percentile).
const PERCENTILES: [f64; 4] = [0.5, 0.95, 0.99, 1.0];

/// A path's latencies at [`PERCENTILES`], in ms, over its measured rows.
struct Latency {
    rows: i64,
    ms: [f64; 4],
}

impl Latency {
    /// The measured rows of a target's `bench`, percentiles computed by the target.
    async fn of_target(client: &Client) -> Latency {
        let row = client
            .query_one(
                "SELECT count(*), percentile_cont($1::float8[]) WITHIN GROUP (ORDER BY ms)
                 FROM (SELECT (extract(epoch FROM arrived - written) * 1000)::float8 AS ms
                       FROM bench JOIN arrival USING (id) WHERE id >= 0) measured",
                &[&PERCENTILES.as_slice()],
            )
            .await
            .expect("latency percentiles");
        let ms: Vec<f64> = row.get(1);
        Latency {
            rows: row.get(0),
            ms: ms.try_into().expect("one figure per percentile"),
        }
    }

    /// Interpolates between the nearest ranks as `percentile_cont` does, so the figures
    /// compare with the targets'.
    fn of(mut ms: Vec<f64>) -> Latency {
        ms.sort_by(f64::total_cmp);
        let at = |fraction: f64| {
            let position = fraction * (ms.len() - 1) as f64;
            let (low, high) = (ms[position.floor() as usize], ms[position.ceil() as usize]);
            low + (high - low) * position.fract()
        };
        Latency {
            rows: ms.len() as i64,
            ms: PERCENTILES.map(at),
        }
    }
}

/// Table cells of the figures, one decimal.
fn cells(ms: [f64; 4]) -> String {
    ms.map(|ms| format!("{ms:.1}")).join(" | ")
}

/// The `id` of a record key: Confluent framing (magic byte 0, four bytes of schema id), then
/// an Avro record whose only field is the `long` id, a zigzag varint.
fn key_id(key: &[u8]) -> i64 {
    assert!(key.len() > 5 && key[0] == 0, "not an Avro key: {key:?}");
    let mut zigzag = 0u64;
    for (index, byte) in key[5..].iter().enumerate() {
        zigzag |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            break;
        }
    }
    (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64)
}

/// Reads `topic` from the beginning of every partition on a thread of its own, noting when
/// each row's record arrived, until `stop`.
fn spawn_consumer(
    bootstrap: String,
    topic: String,
    partitions: i32,
    received: &Received,
    stop: &Arc<AtomicBool>,
) {
    let (received, stop) = (Arc::clone(received), Arc::clone(stop));
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            // Required by librdkafka; never joined, since partitions are assigned.
            .set("group.id", format!("latency-{}", random_suffix()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("create the consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(&topic, partition, Offset::Beginning)
                .expect("add a partition");
        }
        consumer.assign(&assignment).expect("assign the partitions");
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH);
                    let id = key_id(message.key().expect("a keyed record"));
                    let ms = now.expect("after 1970").as_secs_f64() * 1000.0;
                    received.lock().unwrap().insert(id, ms);
                }
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
    });
}

/// Inserts `transactions` of `per_transaction` rows each, `rate` rows/s on schedule; a
/// transaction that falls behind is followed by the missed ones at once. Returns how long
/// it took.
async fn write_paced(
    source: &Client,
    rate: i64,
    per_transaction: i64,
    transactions: i64,
) -> Duration {
    let period = Duration::from_secs_f64(per_transaction as f64 / rate as f64);
    let mut schedule = tokio::time::interval(period);
    schedule.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    for transaction in 0..transactions {
        schedule.tick().await;
        let first = transaction * per_transaction;
        source
            .batch_execute(&format!(
                "INSERT INTO bench (id, payload) SELECT i, md5(i::text)
                 FROM generate_series({first}, {}) i",
                first + per_transaction - 1
            ))
            .await
            .expect("insert a transaction");
    }
    started.elapsed()
}

async fn holds(client: &Client, sql: &str) -> bool {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// cdc-source and cdc-sink, running.
struct Pipeline {
    source: CdcProcess,
    sink: CdcProcess,
}

impl Pipeline {
    /// Waits until `done`, failing with both logs after [`LIMIT`] or if either exits.
    async fn wait_for(&mut self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !done().await {
            assert!(
                started.elapsed() < LIMIT && self.source.is_running() && self.sink.is_running(),
                "{what} did not happen within {LIMIT:?}\ncdc-source:\n{}\ncdc-sink:\n{}",
                self.source.stderr_text(),
                self.sink.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::main]
async fn main() {
    let rate = setting("--rate", "PGCDC_BENCH_RATE", 5000);
    let seconds = setting("--seconds", "PGCDC_BENCH_SECONDS", 30);
    let per_transaction = setting("--rows-per-transaction", "PGCDC_BENCH_TRANSACTION_ROWS", 5);
    // One table's topic, as most brokers create it; brokers that hold a fetch for its whole
    // wait (tansu) wait once per partition without records.
    let partitions = setting("--partitions", "PGCDC_BENCH_PARTITIONS", 1) as i32;
    let transactions = (rate * seconds / per_transaction).max(1);
    let rows = transactions * per_transaction;
    let sink_extra = sink_experiment();
    let SourceBed {
        pg: source,
        broker,
        registry,
        names,
        client: writer,
    } = SourceBed::start().await;
    let target = durable_target().await;
    writer
        .batch_execute(&format!(
            "CREATE TABLE bench (id bigint PRIMARY KEY, payload text,
                                 written timestamptz NOT NULL DEFAULT clock_timestamp());
             ALTER TABLE bench OWNER TO {REPLICATOR};
             CREATE PUBLICATION {publication} FOR TABLE bench;",
            publication = names.publication,
        ))
        .await
        .expect("set up the source database");
    let native_slot = format!("{}_native", names.slot);
    create_slots(&writer, &[&names.slot, &native_slot]).await;
    let guard = names.guard(&source);
    let (pgcdc_db, native_db) = (TestNames::new(), TestNames::new());
    let pgcdc_target = pgcdc_db.create_database(&target).await;
    let native_target = native_db.create_database(&target).await;
    for client in [&pgcdc_target, &native_target] {
        client
            .batch_execute(TARGET_SQL)
            .await
            .expect("set up a target database");
    }

    let topic = format!("{}.public.bench", names.topic_prefix);
    let topic_settings = format!("[kafka.topic]\npartitions = {partitions}");
    let config = source_config(
        &source,
        &names,
        &broker,
        &registry.url(),
        STREAM_ONLY,
        &topic_settings,
    );
    let url = target.url(&pgcdc_db.db, SUPERUSER);
    let sink_config = sink_config(
        &url,
        &topic,
        "bench_latency",
        &broker,
        &registry.url(),
        "",
        "",
    );
    let mut pipeline = Pipeline {
        source: CdcProcess::run(&config),
        sink: CdcProcess::sink("run", &sink_config),
    };
    native_target
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION {subscription}
             CONNECTION 'host=127.0.0.1 port={port} dbname={db} user={SUPERUSER}'
             PUBLICATION {publication}
             WITH (create_slot = false, slot_name = '{native_slot}', copy_data = false)",
            subscription = native_db.publication,
            port = source.port(),
            db = names.db,
            publication = names.publication,
        ))
        .await
        .expect("create the subscription");

    let probe = format!("INSERT INTO bench (id, payload) VALUES ({PROBE_ID}, 'probe')");
    writer
        .batch_execute(&probe)
        .await
        .expect("insert the probe");
    let probe = format!("SELECT EXISTS (SELECT 1 FROM bench WHERE id = {PROBE_ID})");
    let warm = async || holds(&pgcdc_target, &probe).await && holds(&native_target, &probe).await;
    pipeline.wait_for("the probe row's arrival", warm).await;
    let idle = idle_cpu(&[
        ("cdc-sink", pipeline.sink.pid()),
        ("cdc-source", pipeline.source.pid()),
        ("tansu", broker.pid()),
    ])
    .await;
    // The topic exists now (cdc-sink read the probe from it), so the consumer can assign it.
    let received = Received::default();
    let stop = Arc::new(AtomicBool::new(false));
    spawn_consumer(broker.bootstrap(), topic, partitions, &received, &stop);
    let read = async || received.lock().unwrap().contains_key(&PROBE_ID);
    pipeline
        .wait_for("the consumer's reading the probe", read)
        .await;

    let elapsed = write_paced(&writer, rate, per_transaction, transactions).await;
    // The last row's key is an index lookup, so polling for it costs the targets little
    // while they catch up; the count runs only once it is in.
    let all_in = format!(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM bench WHERE id = {last})
                THEN (SELECT count(*) FROM bench WHERE id >= 0) = {rows} ELSE false END",
        last = rows - 1
    );
    let done = async || {
        received.lock().unwrap().len() as i64 == rows + 1
            && holds(&pgcdc_target, &all_in).await
            && holds(&native_target, &all_in).await
    };
    pipeline.wait_for("the arrival of every row", done).await;
    stop.store(true, Ordering::Relaxed);
    let source_rss = peak_rss_kib(pipeline.source.pid());
    let sink_rss = peak_rss_kib(pipeline.sink.pid());

    native_target
        .batch_execute(&format!("DROP SUBSCRIPTION {}", native_db.publication))
        .await
        .expect("drop the subscription and its slot");
    drop((pipeline, guard));
    let native = Latency::of_target(&native_target).await;
    let pgcdc = Latency::of_target(&pgcdc_target).await;
    let written = writer
        .query(
            "SELECT id, (extract(epoch FROM written) * 1000)::float8 FROM bench WHERE id >= 0",
            &[],
        )
        .await
        .expect("read the written times");
    let received = received.lock().unwrap();
    let consumed = Latency::of(
        written
            .iter()
            .map(|row| received[&row.get::<_, i64>(0)] - row.get::<_, f64>(1))
            .collect(),
    );

    println!(
        "{rows} rows at {rate} rows/s in transactions of {per_transaction} for {seconds}s \
         (achieved {:.0} rows/s); topic partitions: {partitions}; target fsync on; \
         cdc-sink [apply] extra: {:?}",
        rows as f64 / elapsed.as_secs_f64(),
        sink_extra,
    );
    println!("| path | rows | p50 | p95 | p99 | max (ms) |\n|---|---|---|---|---|---|");
    for (path, latency) in [
        ("native logical replication", &native),
        ("pgcdc (cdc-source → broker → cdc-sink)", &pgcdc),
        ("cdc-source → consumer (fetch.wait.max.ms = 10)", &consumed),
    ] {
        println!("| {path} | {} | {} |", latency.rows, cells(latency.ms));
    }
    let ratios = std::array::from_fn(|i| pgcdc.ms[i] / native.ms[i]);
    println!("| ratio pgcdc / native | | {} |", cells(ratios));
    println!(
        "peak RSS: cdc-source {} MiB, cdc-sink {} MiB",
        source_rss / 1024,
        sink_rss / 1024
    );
    println!("idle, before the writes (CPU time per second of wall time): {idle}");
}

/// How much CPU each process uses while nothing is written: what waiting for changes costs
/// (e.g. the fetches an idle consumer sends).
async fn idle_cpu(processes: &[(&str, u32)]) -> String {
    const WINDOW: Duration = Duration::from_secs(5);
    let before: Vec<Duration> = processes.iter().map(|(_, pid)| cpu_time(*pid)).collect();
    tokio::time::sleep(WINDOW).await;
    processes
        .iter()
        .zip(before)
        .map(|((name, pid), before)| {
            let used = cpu_time(*pid).saturating_sub(before);
            format!(
                "{name} {:.1} ms/s",
                used.as_secs_f64() * 1000.0 / WINDOW.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
