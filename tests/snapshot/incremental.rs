//! Incremental snapshots: a table added to `capture.tables` while another is streamed under
//! load is read in chunks between watermarks; concurrent updates win over stale chunk rows; a
//! crash resumes from the last acknowledged chunk; the target ends equal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{settle_equal, wait_log, writer};
use crate::support::capture::{eventually, Capture, WAIT};
use crate::support::process::CdcProcess;
use crate::support::{shared_broker, shared_registry, PgCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_table_is_snapshotted_incrementally_under_load_and_resumes_after_a_crash() {
    let mut capture = Capture::for_heavy_load(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.a (id bigint PRIMARY KEY, counter int NOT NULL, note text);
         INSERT INTO l1.a SELECT g, 0, 'a' FROM generate_series(1, 1000) g;
         CREATE TABLE l1.b (id bigint PRIMARY KEY, counter int NOT NULL, note text);
         INSERT INTO l1.b SELECT g, 0, repeat('b', 50) FROM generate_series(1, 200000) g;",
    )
    .await;
    let extra =
        "snapshot = \"initial\"\nsignal_table = \"pgcdc.signal\"\nincremental_chunk_size = 100";
    capture.start(&capture.config(&["l1.a"], extra, "")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loads = [
        writer(&capture, "l1.a", 97, Arc::clone(&stop)),
        writer(&capture, "l1.b", 2003, Arc::clone(&stop)),
    ];
    assert_eq!(capture.stop(), 0);

    let config = capture.config(&["l1.a", "l1.b"], extra, "");
    let mut first = CdcProcess::run(&config);
    // About 2,000 chunks of 100 rows; killed once a chunk's progress is in the offsets topic,
    // long before the last chunk. The request sits behind the writers' backlog in the WAL,
    // which a loaded machine (the whole suite on two cores) takes minutes to decode.
    let progressed = eventually(WAIT * 6, || async {
        snapshot_rows(&capture, "l1.b").await > 0
    })
    .await;
    assert!(
        progressed,
        "no incremental progress:\n{}",
        first.stderr_text()
    );
    assert!(
        !first
            .stderr_text()
            .contains("incremental snapshot completed"),
        "the incremental snapshot finished before the kill"
    );
    first.kill9();
    let first_log = first.stderr_text();
    let recorded = snapshot_rows(&capture, "l1.b").await;

    let second = CdcProcess::run(&config);
    wait_log(&second, "resuming incremental snapshot", WAIT).await;
    wait_log(&second, "incremental snapshot completed", WAIT * 3).await;
    let log = second.stderr_text();
    let resumed: u64 = log
        .split("resuming incremental snapshot table=l1.b rows=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(0);
    assert!(
        resumed >= recorded,
        "resumed at {resumed} rows, before the recorded {recorded}:\n{log}\nfirst run:\n{first_log}"
    );
    capture.source = Some(second);
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        assert!(load.await.expect("writer") > 5);
    }
    let target = settle_equal(&capture, &["l1.a", "l1.b"]).await;
    let source_sum: i64 = capture
        .client
        .query_one("SELECT sum(counter)::bigint FROM l1.b", &[])
        .await
        .expect("source sum")
        .get(0);
    let target_sum: i64 = target
        .client
        .query_one("SELECT sum(counter)::bigint FROM l1.b", &[])
        .await
        .expect("target sum")
        .get(0);
    assert_eq!(target_sum, source_sum);
    assert_eq!(capture.stop(), 0);
}

/// The rows the offsets topic records as read by `table`'s incremental snapshot (0 if none).
async fn snapshot_rows(capture: &Capture<'_>, table: &str) -> u64 {
    let bootstrap = capture.bootstrap.clone();
    let topic = format!("__pgcdc-offsets.{}", capture.names.topic_prefix);
    let key = format!("incremental/{}/{table}", capture.names.slot);
    tokio::task::spawn_blocking(move || {
        pgcdc::kafka::read_latest(
            &bootstrap,
            &BTreeMap::new(),
            &topic,
            Duration::from_secs(10),
        )
    })
    .await
    .expect("reader thread")
    .ok()
    .and_then(|state| state.get(key.as_bytes()).cloned())
    .and_then(|value| serde_json::from_slice::<serde_json::Value>(&value).ok())
    .and_then(|record| record["rows"].as_u64())
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_missed_a_streamed_commit_is_read_again() {
    // Its own cluster: commits wait for a standby that never answers, except where
    // synchronous_commit = local, which is everyone's default here but the writer's.
    let pg = PgCluster::new().await;
    let registry = shared_registry().url();
    let mut capture = Capture::new(
        &pg,
        shared_broker().await,
        &registry,
        "CREATE SCHEMA l1;
         CREATE TABLE l1.c (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO l1.c SELECT g, 0 FROM generate_series(1, 10) g;",
    )
    .await;
    let config = capture.config(
        &["l1.c"],
        "snapshot = \"no_data\"\nsignal_table = \"pgcdc.signal\"",
        "[kafka.topic]\npartitions = 1",
    );
    capture.start(&config).await;
    for sql in [
        "ALTER SYSTEM SET synchronous_commit = 'local'",
        "ALTER SYSTEM SET synchronous_standby_names = 'pgcdc_absent_standby'",
        "SELECT pg_reload_conf()",
    ] {
        capture.client.batch_execute(sql).await.expect(sql);
    }

    // In the WAL and streamed, but invisible to every snapshot until its wait is cancelled.
    let writer = pg.superuser_client(&capture.names.db).await;
    let hung = tokio::spawn(async move {
        writer
            .batch_execute("SET synchronous_commit = on; UPDATE l1.c SET v = 1 WHERE id = 5")
            .await
    });
    let streamed = capture.read("l1.c", 1).await;
    assert_eq!(streamed[0].op(), "u");
    capture
        .client
        .batch_execute(
            r#"INSERT INTO pgcdc.signal (id, type, data)
               VALUES ('s1', 'execute-snapshot', '{"data-collections": ["l1.c"]}')"#,
        )
        .await
        .expect("signal");
    let source = capture.source.as_ref().expect("running");
    wait_log(source, "reading an incremental snapshot chunk again", WAIT).await;
    assert!(!source
        .stderr_text()
        .contains("incremental snapshot completed"));

    capture
        .client
        .batch_execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        )
        .await
        .expect("cancel the wait");
    hung.await.expect("writer").expect("the update commits");
    wait_log(source, "incremental snapshot completed", WAIT).await;

    let records = capture.read("l1.c", 11).await;
    let reads: Vec<(i64, i64)> = records[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.op(), "r", "{r:?}");
            let after = &r.value["after"];
            (after["id"].as_i64().unwrap(), after["v"].as_i64().unwrap())
        })
        .collect();
    let expected: Vec<(i64, i64)> = (1..=10).map(|id| (id, i64::from(id == 5))).collect();
    assert_eq!(reads, expected);
    assert_eq!(capture.stop(), 0);
}
