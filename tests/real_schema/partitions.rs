//! Partitions detached and attached mid-stream: the root's topic holds every row that was in
//! the root exactly once, whichever partition it went to and however the partition joined.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::capture::{eventually, Capture, WAIT};
use crate::support::postgres::REPLICATOR;

const SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.parted (id bigint, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE l1.parted_2024 PARTITION OF l1.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE l1.parted_2025 PARTITION OF l1.parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    INSERT INTO l1.parted SELECT g, DATE '2024-01-01' + g * 3, g FROM generate_series(1, 200) g;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_and_attached_partitions_keep_the_roots_topic_exact() {
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    let config = capture.config(&["l1.*"], "discovery_interval = \"1s\"", "");
    capture.start(&config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let load = {
        let url = capture.pg.url(&capture.names.db, "postgres");
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("writer connects");
            tokio::spawn(connection);
            while !stop.load(Ordering::Relaxed) {
                let r = written.fetch_add(1, Ordering::Relaxed);
                client
                    .batch_execute(&format!(
                        "INSERT INTO l1.parted VALUES ({}, DATE '2025-01-01' + {} % 365, 0)",
                        10_000 + r,
                        r
                    ))
                    .await
                    .expect("writer insert");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    capture
        .client
        .batch_execute("ALTER TABLE l1.parted DETACH PARTITION l1.parted_2024")
        .await
        .expect("detach");
    capture
        .client
        .batch_execute(&format!(
            "CREATE TABLE l1.parted_2026 (LIKE l1.parted INCLUDING ALL);
             ALTER TABLE l1.parted_2026 OWNER TO {REPLICATOR};
             INSERT INTO l1.parted_2026 SELECT 50000 + g, DATE '2026-01-01' + g, g FROM generate_series(1, 100) g;"
        ))
        .await
        .expect("a table to attach");
    tokio::time::sleep(Duration::from_secs(2)).await;
    capture
        .client
        .batch_execute(
            "ALTER TABLE l1.parted ATTACH PARTITION l1.parted_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        )
        .await
        .expect("attach");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("writer");

    let expected = 200 + written.load(Ordering::Relaxed) as usize + 100;
    let records = capture.read("l1.parted", expected).await;
    let late = capture
        .read_within("l1.parted", expected + 1, Duration::from_secs(5))
        .await;
    assert_eq!(late.len(), expected, "no record beyond the expected ones");
    let mut per_key: BTreeMap<(i64, String), Vec<String>> = BTreeMap::new();
    for record in &records {
        let after = &record.value["after"];
        let key = (after["id"].as_i64().expect("id"), after["at"].to_string());
        per_key.entry(key).or_default().push(record.op().to_owned());
    }
    assert_eq!(per_key.len(), expected, "every row once: {per_key:?}");
    let ops = |range: std::ops::Range<i64>| {
        let mut ops: Vec<&str> = per_key
            .iter()
            .filter(|((id, _), _)| range.contains(id))
            .flat_map(|(_, ops)| ops.iter().map(String::as_str))
            .collect();
        ops.dedup();
        ops
    };
    assert_eq!(
        ops(1..201),
        ["r"],
        "the initial snapshot, detached partition's rows included"
    );
    assert_eq!(ops(10_000..50_000), ["c"], "the writer's rows, streamed");
    assert_eq!(
        ops(50_001..50_101),
        ["r"],
        "the attached table's rows, snapshotted through the root"
    );
    assert!(
        capture
            .source_log()
            .contains("incremental snapshot requested table=l1.parted filter=\"tableoid IN ("),
        "{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);
}

/// What changes while the source is stopped is found when it starts again (the captured
/// tables are recorded in the offsets topic): a table created, a partition attached with its
/// rows, a table dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_source_was_stopped_are_found_at_start() {
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    capture
        .client
        .batch_execute(&format!(
            "CREATE TABLE l1.doomed (id int PRIMARY KEY); ALTER TABLE l1.doomed OWNER TO {REPLICATOR};"
        ))
        .await
        .expect("a table to drop");
    let config = capture.config(&["l1.*"], "discovery_interval = \"1s\"", "");
    capture.start(&config).await;
    let recorded = eventually(WAIT, || async {
        recorded_tables(&capture).await.contains("doomed")
    })
    .await;
    assert!(
        recorded,
        "discovery never recorded the tables:\n{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);

    capture
        .client
        .batch_execute(&format!(
            "CREATE TABLE l1.made (id int PRIMARY KEY, v text); ALTER TABLE l1.made OWNER TO {REPLICATOR};
             INSERT INTO l1.made SELECT g, 'while stopped' FROM generate_series(1, 30) g;
             CREATE TABLE l1.parted_2026 (LIKE l1.parted INCLUDING ALL);
             INSERT INTO l1.parted_2026 SELECT 60000 + g, DATE '2026-01-01' + g, g FROM generate_series(1, 40) g;
             ALTER TABLE l1.parted ATTACH PARTITION l1.parted_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             DROP TABLE l1.doomed;"
        ))
        .await
        .expect("changes while the source is stopped");
    capture.start(&config).await;
    assert_eq!(
        capture.read("l1.made", 30).await.len(),
        30,
        "the new table's rows"
    );
    let attached = capture
        .read("l1.parted", 200 + 40)
        .await
        .iter()
        .filter(|record| {
            record.value["after"]["id"]
                .as_i64()
                .is_some_and(|id| id > 60_000)
        })
        .count();
    assert_eq!(
        attached, 40,
        "the attached partition's rows, through the root"
    );
    let drops = capture.read("schema_changes", 1).await;
    assert_eq!(drops.len(), 1);
    assert_eq!(drops[0].value["tableChanges"][0]["id"], "\"l1\".\"doomed\"");
    assert_eq!(capture.stop(), 0);
}

/// The tables the offsets topic records for the capture's slot, as JSON text.
async fn recorded_tables(capture: &Capture<'_>) -> String {
    let bootstrap = capture.bootstrap.clone();
    let topic = format!("__pgcdc-offsets.{}", capture.names.topic_prefix);
    let key = format!("tables/{}", capture.names.slot);
    tokio::task::spawn_blocking(move || {
        pgcdc::kafka::read_latest(
            &bootstrap,
            &std::collections::BTreeMap::new(),
            &topic,
            Duration::from_secs(10),
        )
    })
    .await
    .expect("reader thread")
    .ok()
    .and_then(|records| records.get(key.as_bytes()).cloned())
    .map(|value| String::from_utf8_lossy(&value).into_owned())
    .unwrap_or_default()
}
