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

/// The operations of records in topic order, one letter each.
fn keyless_ops(records: &[Decoded]) -> String {
    let mut sorted: Vec<&Decoded> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    sorted.iter().map(|r| r.op()).collect()
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

/// A slot the server invalidated while the source was away (`max_slot_wal_keep_size`,
/// `wal_status = lost`): `initial` stops with the fix, in the server's terms; `when_needed`
/// says what happened, drops the slot and snapshots again; nothing streams on silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_stops_initial_and_is_snapshotted_again_by_when_needed() {
    // The cluster's WAL limit changes for a moment: a cluster of this test's own.
    let cluster = crate::support::PgCluster::new().await;
    let registry = crate::support::shared_registry().url();
    let broker = crate::support::shared_broker().await;
    let schema = format!(
        "{TEN_ROWS} CREATE TABLE public.filler (x text);
         CREATE TABLE l1.k (a int, b text); ALTER TABLE l1.k REPLICA IDENTITY FULL;
         INSERT INTO l1.k VALUES (1, 'one'), (2, 'two'), (2, 'two');"
    );
    let mut capture = Capture::new(&cluster, broker, &registry, &schema).await;
    let when_needed = capture.config(&["l1.*"], "snapshot = \"when_needed\"", "");
    capture.start(&when_needed).await;
    assert_eq!(ops(&all_records(&capture, 10).await), (10, 0));
    let keyless = capture.read("l1.k", 3).await;
    assert_eq!(
        keyless_ops(&keyless),
        "rrr",
        "a first snapshot sends no truncate"
    );
    assert_eq!(capture.stop(), 0);

    crate::support::postgres::invalidate_slot(
        &capture.client,
        &capture.names.slot,
        "public.filler",
    )
    .await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (11, 'while the slot was lost')")
        .await
        .expect("insert");

    let initial = capture.config(&["l1.*"], "snapshot = \"initial\"", "");
    let (code, log) = CdcProcess::complete("run", &initial, WAIT);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("was invalidated (wal_status = lost)")
            && log.contains(&format!(
                "SELECT pg_drop_replication_slot('{}');",
                capture.names.slot
            )),
        "{log}"
    );
    let mut check = CdcProcess::spawn("check", &when_needed, &[], &[]);
    let code = check.wait_exit(WAIT);
    let log = check.stdout_text() + &check.stderr_text();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("capture.snapshot = \"when_needed\" drops it and takes a new snapshot"),
        "{log}"
    );

    capture.start(&when_needed).await;
    let records = all_records(&capture, 21).await;
    assert_eq!(ops(&records), (21, 0), "a new snapshot of all 11 rows");
    assert!(records.iter().any(|r| r.value["after"]["id"] == 11));
    // Rows without a key cannot be matched to the ones read before: a truncate goes first,
    // in their one partition, so a consumer replaces them instead of holding them twice.
    let keyless = capture.read("l1.k", 7).await;
    assert_eq!(keyless_ops(&keyless), "rrrtrrr", "{keyless:?}");
    assert!(keyless.iter().all(|r| r.partition == keyless[0].partition));
    assert!(
        capture
            .source_log()
            .contains("dropping it and taking a new snapshot (capture.snapshot = \"when_needed\")"),
        "{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);
}
