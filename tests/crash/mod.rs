//! No loss under crash (SPEC §6): `kill -9` the source repeatedly while a writer commits; every
//! committed change still reaches the topic, in order per key (a replayed suffix is allowed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::capture::{Capture, Decoded};
use crate::support::describe_partitions;
use crate::support::process::CdcProcess;

const KILLS: usize = 3;

/// Per key, `(lsn, op, v)` in topic order.
fn by_key(records: &[Decoded]) -> BTreeMap<i64, Vec<(u64, String, i64)>> {
    let mut keys: BTreeMap<i64, Vec<(u64, String, i64)>> = BTreeMap::new();
    for record in records.iter().filter(|r| !r.value.is_null()) {
        let id = record.key["id"].as_i64().expect("an id key");
        let lsn = record.value["source"]["lsn"].as_u64().expect("source.lsn");
        let v = record.value["after"]["v"].as_i64().expect("after.v");
        keys.entry(id)
            .or_default()
            .push((lsn, record.op().to_owned(), v));
    }
    keys
}

/// Whether every committed row arrived with its final value, each key's distinct changes in
/// LSN order (duplicates only as replays of what came before).
fn complete_and_ordered(
    keys: &BTreeMap<i64, Vec<(u64, String, i64)>>,
    last: i64,
) -> Result<(), String> {
    for id in 1..=last {
        let changes = keys.get(&id).ok_or_else(|| {
            let missing: Vec<i64> = (1..=last).filter(|id| !keys.contains_key(id)).collect();
            format!(
                "row {id} never arrived: {} of {last} rows arrived; missing {} rows, first {:?}",
                keys.len(),
                missing.len(),
                &missing[..missing.len().min(20)]
            )
        })?;
        let distinct: Vec<u64> = changes
            .iter()
            .map(|c| c.0)
            .fold(Vec::new(), |mut seen, lsn| {
                if !seen.contains(&lsn) {
                    seen.push(lsn);
                }
                seen
            });
        if distinct.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "row {id}: first arrivals out of LSN order: {changes:?}"
            ));
        }
        let expected_final = if id < last { 1 } else { 0 };
        let (_, _, final_v) = changes.last().expect("non-empty");
        if *final_v != expected_final {
            return Err(format!(
                "row {id}: last value {final_v}, committed {expected_final}: {changes:?}"
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_nothing() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v int NOT NULL);",
    )
    .await;
    let config = capture.config(&["l1.t"], "", "");
    capture.start(&config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicI32::new(0));
    let writer = {
        let (stop, committed) = (stop.clone(), committed.clone());
        let writer_client = capture.pg.superuser_client(&capture.names.db).await;
        tokio::spawn(async move {
            let mut id = 0;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                writer_client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO l1.t VALUES ({id}, 0); UPDATE l1.t SET v = 1 WHERE id = {}; COMMIT;",
                        id - 1
                    ))
                    .await
                    .expect("writer transaction");
                committed.store(id, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut source = capture.source.take().expect("running");
        source.kill9();
        drop(source);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut restarted = CdcProcess::run(&config);
        assert!(
            restarted.is_running(),
            "restart failed: {}",
            restarted.stderr_text()
        );
        capture.source = Some(restarted);
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let last = i64::from(committed.load(Ordering::Relaxed));
    assert!(last > 100, "the writer committed only {last} transactions");

    let mut outcome = Err("nothing read".to_owned());
    for _ in 0..12 {
        let records = capture
            .read_within("l1.t", usize::MAX, Duration::from_secs(8))
            .await;
        outcome = complete_and_ordered(&by_key(&records), last).map_err(|problem| {
            let read: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
            format!(
                "{problem}\n{}",
                describe_partitions(&capture.bootstrap, &capture.topic("l1.t"), &read)
            )
        });
        if outcome.is_ok() {
            break;
        }
    }
    if let Err(problem) = outcome {
        let stderr = capture
            .source
            .as_ref()
            .map(|s| s.stderr_text())
            .unwrap_or_default();
        panic!("{problem}\nsource stderr:\n{stderr}");
    }
    assert_eq!(capture.stop(), 0);
}
