//! Crashes (SPEC §6): `kill -9` of the sink, several times, and of the source, during a
//! 100,000-row mixed workload. The target ends equal to the source, so no change was applied
//! twice in a way that matters (a counter incremented by updates would show it), and the
//! source's replay after its crash is skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::target::Target;
use crate::support::capture::Capture;
use crate::support::process::CdcProcess;

const ROUNDS: i64 = 50;
const ROWS_PER_ROUND: i64 = 2000;

fn round_sql(round: i64) -> String {
    let first = round * ROWS_PER_ROUND + 1;
    let last = first + ROWS_PER_ROUND - 1;
    format!(
        "BEGIN;
         INSERT INTO l1.acct SELECT g, 0, 'n' || g FROM generate_series({first}, {last}) g;
         UPDATE l1.acct SET counter = counter + 1 WHERE id % 50 = {m50} AND id < {first};
         DELETE FROM l1.acct WHERE id % 97 = {m97} AND id < {first};
         COMMIT;",
        m50 = round % 50,
        m97 = round % 97,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_sink_and_source_changes_nothing() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.acct (id bigint PRIMARY KEY, counter int NOT NULL, note text);",
    )
    .await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "batch_size = 2000").await;
    // A killed sink stays a member of the group until its session times out, and until then
    // the broker may leave its partitions to it. A static member (as a restarted pod would be)
    // takes its predecessor's place at once.
    target.config = target.config.replace(
        "[schema_registry]",
        "[kafka.options]\n\"group.instance.id\" = \"sink-under-test\"\n\n[schema_registry]",
    );
    target.start();

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        let client = capture.pg.superuser_client(&capture.names.db).await;
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                client
                    .batch_execute(&round_sql(round))
                    .await
                    .expect("workload round");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done.store(true, Ordering::Relaxed);
        })
    };

    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut sink = target.sink.take().expect("sink running");
        sink.kill9();
        target.start();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut source = capture.source.take().expect("source running");
    source.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    capture.source = Some(CdcProcess::run(&config));
    writer.await.expect("writer");
    assert!(done.load(Ordering::Relaxed));

    let expected_rows: i64 = capture
        .client
        .query_one("SELECT count(*) FROM l1.acct", &[])
        .await
        .expect("count")
        .get(0);
    target.settle(&[&format!("l1.acct -> l1.acct: ok ({expected_rows} rows)")]);
    let source_sum: i64 = capture
        .client
        .query_one("SELECT sum(counter)::bigint FROM l1.acct", &[])
        .await
        .expect("source sum")
        .get(0);
    let target_sum: i64 = target
        .client
        .query_one("SELECT sum(counter)::bigint FROM l1.acct", &[])
        .await
        .expect("target sum")
        .get(0);
    assert_eq!(target_sum, source_sum);
    let sink_log = target
        .sink
        .as_ref()
        .map(CdcProcess::stderr_text)
        .unwrap_or_default();
    assert!(
        sink_log.contains("skipped changes the target already has (a source replay)"),
        "the source's replay after kill -9 was not skipped:\n{sink_log}"
    );
    assert_eq!(capture.stop(), 0);
}
