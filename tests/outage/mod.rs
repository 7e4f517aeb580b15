//! Broker outage (SPEC §6): while the broker is down the slot must not move past what it
//! acknowledged; once it is back, every row committed meanwhile arrives.

use std::time::Duration;

use crate::support::capture::{eventually, Capture};
use crate::support::{shared_pg, shared_registry, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_waits_for_the_broker() {
    let pg = shared_pg().await;
    let broker = Broker::start_persistent().await;
    let registry = shared_registry();
    let mut capture = Capture::new(
        pg,
        &broker,
        &registry.url(),
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.t"], "", "");
    capture.start(&config).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (0, 'before')")
        .await
        .unwrap();
    assert_eq!(capture.read("l1.t", 1).await.len(), 1);

    broker.stop().await;
    let before_outage_writes = capture.current_wal_lsn().await;
    // The slot is sampled all through the outage, while the rows are written and for long
    // enough after for several status updates and heartbeats to have gone out, so a confirm
    // that moves past them and back, or only for a moment, is caught too.
    let outage = tokio::time::Instant::now();
    let mut samples = 0;
    let mut written = 0;
    while written < 50 || outage.elapsed() < Duration::from_secs(4) {
        for _ in 0..5 {
            if written < 50 {
                written += 1;
                capture
                    .client
                    .execute("INSERT INTO l1.t VALUES ($1, 'during')", &[&written])
                    .await
                    .unwrap();
            }
        }
        let confirmed = capture.confirmed_flush().await;
        samples += 1;
        assert!(
            confirmed <= before_outage_writes,
            "{:?} into the outage the slot moved to {confirmed:#x} past unacknowledged rows written from {before_outage_writes:#x}",
            outage.elapsed()
        );
        assert!(
            capture.source.as_mut().unwrap().is_running(),
            "the source must wait, not exit: {}",
            capture.source_log()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(samples >= 20, "the slot was sampled {samples} times only");
    let after_outage_writes = capture.current_wal_lsn().await;

    broker.start().await;
    let records = capture.read("l1.t", 51).await;
    let mut ids: Vec<i64> = records
        .iter()
        .map(|r| r.key["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids,
        (0..=50).collect::<Vec<i64>>(),
        "stderr:\n{}",
        capture.source.as_ref().unwrap().stderr_text()
    );
    let advanced = eventually(Duration::from_secs(30), || async {
        capture.confirmed_flush().await >= after_outage_writes
    })
    .await;
    assert!(
        advanced,
        "the slot did not catch up after the broker returned"
    );
    assert_eq!(capture.stop(), 0);
}
