//! Incremental snapshots: a table added to `capture.tables` while another is streamed under
//! load is read in chunks between watermarks; concurrent updates win over stale chunk rows; a
//! crash resumes from the last acknowledged chunk; the target ends equal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{settle_equal, wait_log, writer};
use crate::support::capture::{eventually, Capture, WAIT};
use crate::support::process::CdcProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_table_is_snapshotted_incrementally_under_load_and_resumes_after_a_crash() {
    let mut capture = Capture::on_shared_sink_testbed(
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
    // About 2,000 chunks of 100 rows; killed once two progress records were written (so the
    // first was surely delivered), long before the last chunk.
    let progressed = eventually(WAIT, || async {
        first
            .stderr_text()
            .matches("incremental snapshot progress")
            .count()
            >= 2
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

    let second = CdcProcess::run(&config);
    wait_log(&second, "resuming incremental snapshot", WAIT).await;
    wait_log(&second, "incremental snapshot completed", WAIT * 3).await;
    let log = second.stderr_text();
    assert!(
        !log.contains("rows=0 last_key=None"),
        "the resumed snapshot started from scratch:\n{log}\nfirst run:\n{first_log}"
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
