//! `capture.snapshot` modes: `never` emits no `r` events, `initial_only` exits after the
//! snapshot, `when_needed` snapshots again when the slot is gone.

use std::time::Duration;

use crate::support::capture::{Capture, Decoded, WAIT};
use crate::support::process::CdcProcess;

const TEN_ROWS: &str = "CREATE SCHEMA l1;
    CREATE TABLE l1.t (id int PRIMARY KEY, v text);
    INSERT INTO l1.t SELECT g, 'v' || g FROM generate_series(1, 10) g;";

/// Every record of the topic of `l1.t`, reading until nothing more arrives.
async fn all_records(capture: &Capture<'_>, at_least: usize) -> Vec<Decoded> {
    let mut records = capture.read_within("l1.t", at_least, WAIT).await;
    let more = capture
        .read_within("l1.t", records.len() + 1, Duration::from_secs(3))
        .await;
    if more.len() > records.len() {
        records = more;
    }
    records
}

fn ops(records: &[Decoded]) -> (usize, usize) {
    let reads = records.iter().filter(|r| r.op() == "r").count();
    let creates = records.iter().filter(|r| r.op() == "c").count();
    (reads, creates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_emits_no_snapshot_reads() {
    let mut capture = Capture::on_shared_testbed(TEN_ROWS).await;
    capture
        .start(&capture.config(&["l1.*"], "snapshot = \"never\"", ""))
        .await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (11, 'new')")
        .await
        .expect("insert");
    let records = all_records(&capture, 1).await;
    assert_eq!(ops(&records), (0, 1), "{records:?}");
    assert_eq!(capture.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_only_exits_after_the_snapshot() {
    let capture = Capture::on_shared_testbed(TEN_ROWS).await;
    let config = capture.config(&["l1.*"], "snapshot = \"initial_only\"", "");
    let (code, log) = CdcProcess::complete("run", &config, WAIT);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("initial_only: snapshot complete"), "{log}");
    let records = all_records(&capture, 10).await;
    assert_eq!(ops(&records), (10, 0));
    let (code, log) = CdcProcess::complete("run", &config, WAIT);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("nothing to do"), "{log}");
    assert_eq!(all_records(&capture, 10).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_needed_snapshots_again_when_the_slot_is_gone() {
    let mut capture = Capture::on_shared_testbed(TEN_ROWS).await;
    let config = capture.config(&["l1.*"], "snapshot = \"when_needed\"", "");
    capture.start(&config).await;
    assert_eq!(ops(&all_records(&capture, 10).await), (10, 0));
    assert_eq!(capture.stop(), 0);

    capture.start(&config).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (11, 'new')")
        .await
        .expect("insert");
    assert_eq!(
        ops(&all_records(&capture, 11).await),
        (10, 1),
        "no second snapshot while the slot is there"
    );
    assert_eq!(capture.stop(), 0);

    capture
        .client
        .execute(
            "SELECT pg_drop_replication_slot($1)",
            &[&capture.names.slot],
        )
        .await
        .expect("drop the slot");
    capture.start(&config).await;
    assert_eq!(
        ops(&all_records(&capture, 22).await),
        (21, 1),
        "a new snapshot of all 11 rows"
    );
    assert_eq!(capture.stop(), 0);
}
