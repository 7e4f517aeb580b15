//! A statement that needs a table's `ACCESS EXCLUSIVE` lock (`TRUNCATE`, a rewriting `ALTER
//! TABLE`) while the initial snapshot runs: it waits for the snapshot, which neither reads the
//! table emptied by it nor deadlocks with it. The fault-injection run found the deadlock: one
//! worker held the table's lock and waited (its transaction open) for the snapshot to end,
//! the `TRUNCATE` waited for that worker, and another worker, about to read the table, queued
//! behind the `TRUNCATE`.

use std::time::Duration;

use super::wait_log;
use crate::support::capture::{eventually, Capture, WAIT};
use crate::support::process::CdcProcess;

/// Never analyzed (autovacuum off), so planning the snapshot counts each table's rows, as a
/// fresh table's first snapshot does. Largest first, one chunk each: `l1.big` keeps one
/// worker busy while the other reads `l1.mid` (about 10 s: the `ALTER` must be queued before
/// it is done, even on a loaded machine) and then takes `l1.late`.
const SCHEMA: &str = "CREATE SCHEMA l1;
    CREATE TABLE l1.big (id bigint PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
    INSERT INTO l1.big SELECT g, repeat('x', 100) FROM generate_series(1, 400000) g;
    CREATE TABLE l1.mid (id bigint PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
    INSERT INTO l1.mid SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g;
    CREATE TABLE l1.late (id bigint PRIMARY KEY, v int NOT NULL) WITH (autovacuum_enabled = false);
    INSERT INTO l1.late SELECT g, g FROM generate_series(1, 500) g;";

/// Whether the worker reading `l1.big` is the first one: it locked every table, `l1.late`
/// included, before reading any; the other worker locks only what it reads.
async fn first_worker_reads_big(capture: &Capture<'_>) -> bool {
    capture
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
             WHERE a.query LIKE 'COPY (SELECT %\"big\"%' \
               AND l.relation = 'l1.late'::regclass AND l.granted",
            &[],
        )
        .await
        .expect("pg_locks")
        .get::<_, i64>(0)
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_rewrite_during_the_snapshot_waits_for_it_without_deadlock() {
    // Which worker takes which of the first two chunks is a race. Only when the first worker
    // reads l1.big does the other one, done with l1.mid, meet the queued ALTER at l1.late (the
    // case that deadlocked); otherwise the first worker reads l1.late itself. Start over then.
    for _ in 0..5 {
        let capture = Capture::for_heavy_load(SCHEMA).await;
        let config = capture.config(
            &["l1.*"],
            "snapshot = \"initial\"\nsnapshot_workers = 2\nsnapshot_chunk_size = 10000000",
            "",
        );
        let writer = capture.pg.superuser_client(&capture.names.db).await;
        let source = CdcProcess::run(&config);
        let reading_big = || async {
            capture
                .client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT %\"big\"%'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get::<_, i64>(0)
                > 0
        };
        assert!(
            eventually(WAIT, reading_big).await,
            "the snapshot never read l1.big:\n{}",
            source.stderr_text()
        );
        if first_worker_reads_big(&capture).await {
            return rewrite_during_snapshot(capture, source, writer).await;
        }
    }
    panic!("in five snapshots the first worker never read l1.big");
}

/// Queues the `ALTER` at `l1.late` while the first worker reads `l1.big` and the other one
/// `l1.mid`, and checks what follows.
async fn rewrite_during_snapshot(
    mut capture: Capture<'static>,
    source: CdcProcess,
    writer: tokio_postgres::Client,
) {
    let rewrite = tokio::spawn(async move {
        writer
            .batch_execute("ALTER TABLE l1.late ALTER COLUMN v TYPE bigint")
            .await
    });
    let rewritten = tokio::time::timeout(Duration::from_secs(120), rewrite).await;
    assert!(
        matches!(rewritten, Ok(Ok(Ok(())))),
        "the ALTER TABLE did not finish within 120 s ({rewritten:?}): the snapshot deadlocked with it:\n{}",
        source.stderr_text()
    );
    wait_log(
        &source,
        "initial snapshot completed",
        Duration::from_secs(30),
    )
    .await;
    let log = source.stderr_text();
    assert!(
        log.contains("the worker holding it reads this chunk"),
        "the worker that read l1.mid did not hand l1.late over:\n{log}"
    );
    capture.source = Some(source);
    let reads = capture.read("l1.late", 500).await;
    let mut ids: Vec<i64> = reads
        .iter()
        .filter(|record| record.op() == "r")
        .map(|record| record.key["id"].as_i64().expect("an id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=500).collect::<Vec<i64>>(),
        "the snapshot did not read l1.late as it was before the ALTER"
    );
    assert_eq!(capture.stop(), 0);
}
