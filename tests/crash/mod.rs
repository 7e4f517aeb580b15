//! No loss under crash (SPEC §6): `kill -9` the source repeatedly while a writer commits; every
//! committed change still reaches the topic, in order per key (a replayed suffix is allowed).
//!
//! Every change leaves a trace of its own: each row carries a version, 0 when inserted and one
//! more with each update, so a lost change shows as a missing version even when a later one
//! overwrote the row.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::capture::{Capture, Decoded, WAIT};
use crate::support::describe_partitions;
use crate::support::process::CdcProcess;

const KILLS: usize = 3;
/// Updates each row gets after its insert: one in each of the next `UPDATES` transactions.
const UPDATES: i64 = 2;

/// Per key, `(lsn, op, version)` in topic order.
fn by_key(records: &[Decoded]) -> BTreeMap<i64, Vec<(u64, String, i64)>> {
    let mut keys: BTreeMap<i64, Vec<(u64, String, i64)>> = BTreeMap::new();
    for record in records.iter().filter(|r| !r.value.is_null()) {
        let id = record.key["id"].as_i64().expect("an id key");
        let lsn = record.value["source"]["lsn"].as_u64().expect("source.lsn");
        let version = record.value["after"]["version"]
            .as_i64()
            .expect("after.version");
        keys.entry(id)
            .or_default()
            .push((lsn, record.op().to_owned(), version));
    }
    keys
}

/// Whether every committed change of every row arrived, in order per key. Transaction `n`
/// inserts row `n` (version 0) and updates each of the `UPDATES` rows before it, so row `id`
/// ends at version `min(UPDATES, last - id)`. Per key the versions must run 0, 1, 2, … (an
/// insert, then updates) up to that last one, each step one more than the step before; a
/// step back to a version already seen starts a replay (the source re-sends what it had not
/// confirmed), which must go on from there without leaving one out. A version always comes
/// with the same LSN, and a new version with a higher one.
fn every_change_in_order(
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
        let problem = |what: String| Err(format!("row {id}: {what}: {changes:?}"));
        let mut lsns: Vec<u64> = Vec::new();
        let mut previous: Option<i64> = None;
        for (lsn, op, version) in changes {
            let expected_op = if *version == 0 { "c" } else { "u" };
            if op != expected_op {
                return problem(format!("version {version} arrived as {op}"));
            }
            let step_back = previous.is_some_and(|p| *version <= p);
            if !step_back && *version != previous.map_or(0, |p| p + 1) {
                return problem(format!(
                    "version {version} follows {previous:?}: a change is missing"
                ));
            }
            match lsns.get(*version as usize) {
                Some(first) if first != lsn => {
                    return problem(format!("version {version} arrived at two LSNs"))
                }
                Some(_) => {}
                None if lsns.last().is_some_and(|before| before >= lsn) => {
                    return problem(format!(
                        "version {version} has no higher LSN than the one before"
                    ))
                }
                None => lsns.push(*lsn),
            }
            previous = Some(*version);
        }
        let expected_last = UPDATES.min(last - id);
        if previous != Some(expected_last) {
            return problem(format!(
                "ends at version {previous:?}, committed {expected_last}"
            ));
        }
    }
    Ok(())
}

/// The pid of the walsender streaming from the capture's slot, if one does.
async fn walsender(capture: &Capture<'_>) -> Option<i32> {
    capture
        .client
        .query_opt(
            "SELECT r.pid FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
             WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')",
            &[&capture.names.slot],
        )
        .await
        .expect("query pg_replication_slots")
        .map(|row| row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_nothing() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, version int NOT NULL);",
    )
    .await;
    let config = capture.config(&["l1.t"], "", "");
    capture.start(&config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicI64::new(0));
    let writer = {
        let (stop, committed) = (stop.clone(), committed.clone());
        let writer_client = capture.pg.superuser_client(&capture.names.db).await;
        tokio::spawn(async move {
            let mut id = 0;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                writer_client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO l1.t VALUES ({id}, 0);
                         UPDATE l1.t SET version = version + 1 WHERE id BETWEEN {} AND {};
                         COMMIT;",
                        id - UPDATES,
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
        let killed = walsender(&capture).await.expect("the source streams");
        let mut source = capture.source.take().expect("running");
        source.kill9();
        drop(source);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Running is only worth asserting once the restart had time to fail: when a new
        // walsender streams for it (the killed one's may linger until the server notices).
        let mut restarted = CdcProcess::run(&config);
        let deadline = tokio::time::Instant::now() + WAIT;
        while restarted.is_running()
            && tokio::time::Instant::now() < deadline
            && walsender(&capture).await.is_none_or(|pid| pid == killed)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            restarted.is_running() && walsender(&capture).await.is_some_and(|pid| pid != killed),
            "the restarted source did not stream again: {}",
            restarted.stderr_text()
        );
        capture.source = Some(restarted);
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let last = committed.load(Ordering::Relaxed);
    assert!(last > 100, "the writer committed only {last} transactions");

    let mut outcome = Err("nothing read".to_owned());
    for _ in 0..12 {
        let records = capture
            .read_within("l1.t", usize::MAX, Duration::from_secs(8))
            .await;
        outcome = every_change_in_order(&by_key(&records), last).map_err(|problem| {
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
