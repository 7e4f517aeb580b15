//! cdc-sink end to end (SPEC §6): PostgreSQL → cdc-source → broker → cdc-sink → PostgreSQL,
//! checked with `cdc-sink verify` and with the target's rows themselves.

mod bad_records;
mod crash;
mod evolution;
mod pickup;
mod registry_auth;
pub mod target;
mod types;

use std::time::Duration;

use crate::support::capture::Capture;
use crate::support::{free_port, http, wait_until};
use target::Target;

/// `schema_sql` captured (`l1.*`, no snapshot) into topics of one partition, so that the
/// changes of a table keep their order whatever their key, and a target configured with
/// `extra_apply`; the sink is not started yet.
pub async fn one_partition_pipeline(
    schema_sql: &str,
    extra_apply: &str,
) -> (Capture<'static>, Target) {
    one_partition_pipeline_with(schema_sql, "", extra_apply).await
}

/// [`one_partition_pipeline`] with `extra_capture` lines added to the source's `[capture]`.
pub async fn one_partition_pipeline_with(
    schema_sql: &str,
    extra_capture: &str,
    extra_apply: &str,
) -> (Capture<'static>, Target) {
    let mut capture = Capture::on_shared_sink_testbed(schema_sql).await;
    let config = capture.config(
        &["l1.*"],
        &format!("snapshot = \"never\"\n{extra_capture}"),
        "[kafka.topic]\npartitions = 1",
    );
    capture.start(&config).await;
    let target = Target::new(&capture, extra_apply).await;
    (capture, target)
}

const SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.orders (id int PRIMARY KEY, customer text NOT NULL, total numeric(10,2), note text, updates int NOT NULL DEFAULT 0);
    CREATE TABLE l1.lines (order_id int, line int, sku text, qty int, PRIMARY KEY (order_id, line));
    CREATE TABLE l1.events (at timestamptz, kind text, payload jsonb);
    ALTER TABLE l1.events REPLICA IDENTITY FULL;
    CREATE TABLE l1.scratch (id int PRIMARY KEY, v text);";

const WORKLOAD: &str = "
    INSERT INTO l1.orders (id, customer, total, note) SELECT g, 'c' || g, g * 1.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' END FROM generate_series(1, 500) g;
    INSERT INTO l1.lines SELECT g / 4, g % 4, 'sku' || g, g FROM generate_series(4, 400) g;
    INSERT INTO l1.events VALUES ('2024-01-01 00:00:00+00', 'a', '{\"x\": 1}'), ('2024-01-01 00:00:00+00', 'a', '{\"x\": 1}'), ('2024-01-02 00:00:00+00', 'b', NULL);
    INSERT INTO l1.scratch SELECT g, 'v' FROM generate_series(1, 50) g;
    UPDATE l1.orders SET total = total + 1, updates = updates + 1 WHERE id % 5 = 0;
    UPDATE l1.orders SET note = 'again', updates = updates + 1 WHERE id % 10 = 0;
    DELETE FROM l1.orders WHERE id % 7 = 0;
    UPDATE l1.orders SET id = id + 1000 WHERE id = 1;
    BEGIN; DELETE FROM l1.orders WHERE id = 2; INSERT INTO l1.orders (id, customer) VALUES (2, 'reborn'); COMMIT;
    UPDATE l1.lines SET qty = qty * 2 WHERE line = 0;
    DELETE FROM l1.lines WHERE line = 3;
    UPDATE l1.events SET kind = 'c' WHERE kind = 'b';
    DELETE FROM l1.events WHERE ctid = (SELECT ctid FROM l1.events WHERE kind = 'a' LIMIT 1);
    UPDATE l1.scratch SET v = 'w' WHERE id < 10;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_workload_arrives_equal() {
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    let metrics = format!("127.0.0.1:{}", free_port());
    target.config = target
        .config
        .replace("listen = \"\"", &format!("listen = \"{metrics}\""));
    target.start();
    capture
        .client
        .batch_execute(WORKLOAD)
        .await
        .expect("workload");

    target.settle(&[
        "l1.events -> l1.events: ok (2 rows)",
        "l1.lines -> l1.lines: ok (298 rows)",
        "l1.orders -> l1.orders: ok (429 rows)",
        "l1.scratch -> l1.scratch: ok (50 rows)",
    ]);
    assert_eq!(
        target
            .rows("SELECT customer || ':' || coalesce(note, '-') FROM l1.orders WHERE id IN (2, 1001, 10) ORDER BY id")
            .await,
        ["reborn:-", "c10:again", "c1:n"]
    );
    assert_metrics_after_settling(&metrics, &capture.topic("l1.orders"));
    let sink = target.sink.as_mut().expect("sink running");
    sink.terminate();
    assert_eq!(
        sink.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        sink.stderr_text()
    );
    assert_eq!(capture.stop(), 0);
}

/// What a scraper sees once the pipeline settled: healthy, rows applied and deleted, and
/// every partition of `topic` without lag (statistics refresh every 5 seconds).
fn assert_metrics_after_settling(addr: &str, topic: &str) {
    assert_eq!(http::get(addr, "/healthz").expect("GET /healthz").0, 200);
    let (status, exposition) = http::get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    for op in ["upsert", "delete"] {
        let labels = format!("op=\"{op}\",table=\"l1.orders\"");
        assert!(
            http::samples(&exposition, "pgcdc_sink_applied_total")
                .iter()
                .any(|(l, value)| *l == labels && *value > 0.0),
            "no {labels} in:\n{exposition}"
        );
    }
    let lag_of_topic = || {
        let (_, exposition) = http::get(addr, "/metrics").expect("GET /metrics");
        http::samples(&exposition, "pgcdc_sink_consumer_lag")
            .into_iter()
            .filter(|(labels, _)| labels.contains(&format!("topic=\"{topic}\"")))
            .map(|(_, lag)| lag)
            .collect::<Vec<f64>>()
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let lags = lag_of_topic();
            !lags.is_empty() && lags.iter().all(|lag| *lag == 0.0)
        }),
        "consumer lag of {topic} never reported as 0: {:?}",
        lag_of_topic()
    );
}

/// Records near the producer's size limit (`message.max.bytes`, 1,000,000) arrive whole: the
/// consumer's fetches hold them (tansu sends no record batch larger than the fetch limit, so
/// with smaller fetches the sink waited forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_near_the_producers_size_limit_arrive_whole() {
    let (mut capture, mut target) = one_partition_pipeline(
        "CREATE SCHEMA l1; CREATE TABLE l1.big (id int PRIMARY KEY, body text NOT NULL);",
        "",
    )
    .await;
    target.start();
    // About 700 kB of random hex digits per row, which LZ4 cannot shrink much.
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.big SELECT r, (SELECT string_agg(md5(random()::text || i || r), '')
                                       FROM generate_series(1, 22000) i)
             FROM generate_series(1, 3) r",
        )
        .await
        .expect("workload");
    target.settle(&["l1.big -> l1.big: ok (3 rows)"]);
    let digest =
        "SELECT md5(string_agg(body, '' ORDER BY id)) || ' ' || sum(length(body)) FROM l1.big";
    let source: String = capture
        .client
        .query_one(digest, &[])
        .await
        .expect("source digest")
        .get(0);
    assert!(source.ends_with(" 2112000"), "{source}");
    assert_eq!(target.rows(digest).await, [source]);
    assert_eq!(capture.stop(), 0);
}

/// A truncate and the changes around it. One partition: a truncate has no key, so across
/// partitions nothing orders it against the table's keyed changes (see the README).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_empties_the_target_table_between_changes() {
    let (mut capture, mut target) = one_partition_pipeline(
        "CREATE SCHEMA l1; CREATE TABLE l1.scratch (id int PRIMARY KEY, v text);",
        "",
    )
    .await;
    target.start();
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.scratch SELECT g, 'v' FROM generate_series(1, 50) g;
             TRUNCATE l1.scratch;
             INSERT INTO l1.scratch VALUES (7, 'after truncate');",
        )
        .await
        .expect("workload");
    target.settle(&["l1.scratch -> l1.scratch: ok (1 row)"]);
    assert_eq!(
        target.rows("SELECT id || ':' || v FROM l1.scratch").await,
        ["7:after truncate"]
    );
    assert_eq!(capture.stop(), 0);
}
mod ddl;

/// A `COPY` writes its rows with multi-row inserts, whose rows share one LSN, and a key change
/// is a delete and a create at one LSN: their `data_collection_order`s tell them apart, so none
/// counts as applied already, neither inside a batch nor after the batch before it stored its
/// position (small batches end inside both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_sharing_an_lsn_are_all_applied() {
    use futures_util::SinkExt;

    let (mut capture, mut target) = one_partition_pipeline(
        "CREATE SCHEMA l1; CREATE TABLE l1.copied (id int PRIMARY KEY, v text NOT NULL);",
        "batch_size = 7",
    )
    .await;
    target.start();
    let rows: String = (1..=500).map(|id| format!("{id}\tv{id}\n")).collect();
    let tx = capture.client.transaction().await.expect("begin");
    let sink = tx
        .copy_in("COPY l1.copied (id, v) FROM STDIN")
        .await
        .expect("start the copy");
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(rows))
        .await
        .expect("copy rows");
    assert_eq!(sink.as_mut().finish().await.expect("finish the copy"), 500);
    tx.batch_execute("UPDATE l1.copied SET id = id + 1000 WHERE id <= 20")
        .await
        .expect("key changes");
    tx.commit().await.expect("commit");
    target.settle(&["l1.copied -> l1.copied: ok (500 rows)"]);
    assert_eq!(
        target
            .rows("SELECT count(*) || ' ' || min(id) || ' ' || max(id) FROM l1.copied")
            .await,
        ["500 21 1020"]
    );
    assert_eq!(capture.stop(), 0);
}
