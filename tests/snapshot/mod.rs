//! Snapshots (SPEC §2 `capture.snapshot`, §4 `op = r`): the initial snapshot is consistent
//! with the slot under concurrent writes, reads keyless and composite-key tables in chunks,
//! stops promptly on SIGTERM, resumes after crashes; incremental snapshots run under load
//! and resume after a crash; each snapshot mode does what it promises. Checked end to end
//! with `cdc-sink verify`.
//!
//! The tests that move the most records run one at a time, each on a broker of its own
//! (`Capture::for_heavy_load`). The boundary test's is in memory: its sink reads the topic
//! once from its start, so it never resumes inside a record batch (the SQLite broker's
//! reason, see `shared_record_broker`), and tansu's SQLite engine takes 10 s and more to
//! serve its 200,000 records. The crash tests keep SQLite brokers, whose slower
//! acknowledgements leave time to kill the source midway.

mod incremental;
mod locks;
mod modes;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::sink::target::Target;
use crate::support::capture::{eventually, Capture, Decoded, WAIT};
use crate::support::process::CdcProcess;

/// A writer updating (every `spread`th row per round), deleting and inserting rows of
/// `table` (id bigint, counter int) in small transactions until `stop` is set; returns how
/// many rounds it ran.
fn writer(
    capture: &Capture<'_>,
    table: &str,
    spread: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let table = table.to_owned();
    capture.writer(Duration::from_millis(5), stop, move |round| {
        format!(
            "BEGIN;
             UPDATE {table} SET counter = counter + 1 WHERE id % {spread} = {m};
             DELETE FROM {table} WHERE id % 1009 = {d};
             INSERT INTO {table} (id, counter, note) VALUES ({new}, 0, 'new') ON CONFLICT DO NOTHING;
             COMMIT;",
            m = round % spread,
            d = round % 1009,
            new = 10_000_000 + round,
        )
    })
}

/// A writer changing a few rows all over `l1.item` per transaction (an update of ten, a
/// delete, an insert) until `stop` is set; returns how many rounds it ran.
fn scattered_writer(capture: &Capture<'_>, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    capture.writer(Duration::from_millis(5), stop, |round| {
        let spot = round * 7919 % 200_000;
        format!(
            "BEGIN;
             UPDATE l1.item SET counter = counter + 1 WHERE id BETWEEN {spot} AND {spot} + 9;
             DELETE FROM l1.item WHERE id = {gone};
             INSERT INTO l1.item (id, counter, note) VALUES ({new}, 0, 'new');
             COMMIT;",
            gone = (spot + 100_003) % 200_000,
            new = 10_000_000 + round,
        )
    })
}

/// Waits until the running source's log contains `text`.
/// Fails once the log went `stall` without growing (the source is stuck, not slow: a
/// snapshot logs its progress every 5 s), or after ten times that in all.
async fn wait_log(process: &CdcProcess, text: &str, stall: Duration) {
    let started = tokio::time::Instant::now();
    let mut grown = started;
    let mut length = 0;
    loop {
        let log = process.stderr_text();
        if log.contains(text) {
            return;
        }
        if log.len() != length {
            (length, grown) = (log.len(), tokio::time::Instant::now());
        }
        assert!(
            grown.elapsed() < stall && started.elapsed() < stall * 10,
            "cdc-source never logged {text:?} (its log unchanged for {:?}):\n{log}",
            grown.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The chunk count the source logged when its snapshot started.
fn chunk_count(log: &str) -> usize {
    log.split("chunks=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Counts the records of `decoded` by `source.snapshot` marker.
fn marker_count(records: &[Decoded], marker: &str) -> usize {
    records
        .iter()
        .filter(|r| r.value["source"]["snapshot"].as_str() == Some(marker))
        .count()
}

/// Sink, verify, and the counter sums agree for each `(source table, rows)`.
async fn settle_equal(capture: &Capture<'_>, tables: &[&str]) -> Target {
    let mut target = Target::new(capture, "batch_size = 5000").await;
    target.start();
    target.settle_like_source(capture, tables).await;
    target
}

const ITEMS: &str = "CREATE SCHEMA l1;
    CREATE TABLE l1.item (id bigint PRIMARY KEY, counter int NOT NULL, note text);
    INSERT INTO l1.item SELECT g, 0, repeat('x', 100) FROM generate_series(1, 200000) g;
    ANALYZE l1.item;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_snapshot_meets_the_stream_without_gap_or_overlap() {
    let mut capture = Capture::for_heavy_load_in_memory(ITEMS).await;
    let config = capture.config(
        &["l1.*"],
        "snapshot = \"initial\"\nsnapshot_workers = 4\nsnapshot_chunk_size = 20000",
        "",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let source = CdcProcess::run(&config);
    let load = writer(&capture, "l1.item", 97, Arc::clone(&stop));
    wait_log(&source, "initial snapshot completed", WAIT).await;
    capture.source = Some(source);
    assert!(eventually(WAIT, || capture.slot_streaming()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.expect("writer");
    assert!(rounds > 5, "the writer ran {rounds} rounds only");
    let log = capture.source_log();
    assert!(chunk_count(&log) >= 8, "expected about 10 chunks:\n{log}");
    settle_equal(&capture, &["l1.item"]).await;
    // The sink has applied everything, so the topic holds every event; the reader goes on to
    // its end past the snapshot's rows.
    let events = capture.read("l1.item", 200_000).await;
    let final_rows = capture
        .client
        .query("SELECT id, counter FROM l1.item", &[])
        .await
        .expect("the source's rows")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    if let Err(problem) = snapshot_meets_stream(&events, &final_rows) {
        panic!("{problem}");
    }
    assert_eq!(capture.stop(), 0);
}

/// Checks the topic of a table `(id, counter)` whose rows change only by `counter + 1`
/// updates, deletes and inserts of new ids with counter 0 (see [`writer`]): every row the
/// snapshot saw was read once (`op = r`) before any streamed change of it, and the stream
/// carries exactly the changes committed after the snapshot. Per key, in topic order:
/// - at most one read, and only as the key's first event;
/// - after a read of counter k, updates of k + 1, k + 2, … with none left out (a gap) and
///   none at or below k (an overlap: a change the snapshot already held, streamed again);
/// - without a read, the first event is an insert of counter 0: an update or delete first
///   means the snapshot missed a row that existed, or a change from before it was streamed;
/// - a delete only last;
/// - the last event leaves the row as the source has it now (`final_rows`: id → counter); a
///   key without events must be a row gone before the snapshot, absent from the source now.
fn snapshot_meets_stream(events: &[Decoded], final_rows: &HashMap<i64, i32>) -> Result<(), String> {
    let mut by_key: BTreeMap<i64, Vec<(&str, i64)>> = BTreeMap::new();
    for event in events.iter().filter(|e| !e.value.is_null()) {
        let id = event.key["id"].as_i64().expect("an id key");
        let counter = event.value["after"]["counter"].as_i64().unwrap_or(-1);
        by_key.entry(id).or_default().push((event.op(), counter));
    }
    let reads = events.iter().filter(|e| e.op() == "r").count();
    for (id, changes) in &by_key {
        let problem = |what: &str| {
            Err(format!(
                "row {id}: {what}; its events (op, counter): {changes:?}"
            ))
        };
        let mut counter = match changes[0] {
            ("r", k) | ("c", k @ 0) => k,
            _ => return problem("the first event is neither a snapshot read nor an insert"),
        };
        for (at, &(op, next)) in changes.iter().enumerate().skip(1) {
            match op {
                "u" if next == counter + 1 => counter = next,
                "u" if next <= counter => return problem("an update streamed again (overlap)"),
                "u" => return problem("an update left out (gap)"),
                "d" if at == changes.len() - 1 => {}
                "d" => return problem("events after its delete"),
                "r" => return problem("read twice"),
                _ => return problem("an insert of a row that exists"),
            }
        }
        let deleted = changes.last().is_some_and(|(op, _)| *op == "d");
        match final_rows.get(id) {
            Some(_) if deleted => return problem("deleted, but the source has it"),
            None if !deleted => return problem("present, but the source deleted it"),
            Some(&now) if i64::from(now) != counter => {
                return problem(&format!("the source's counter is {now}"))
            }
            _ => {}
        }
    }
    let mut unseen: Vec<&i64> = final_rows
        .keys()
        .filter(|id| !by_key.contains_key(id))
        .collect();
    unseen.sort_unstable();
    if !unseen.is_empty() {
        return Err(format!(
            "{} rows of the source never reached the topic (neither read nor streamed), first {:?}",
            unseen.len(),
            &unseen[..unseen.len().min(20)]
        ));
    }
    let read_then_changed = by_key
        .values()
        .filter(|changes| changes[0].0 == "r" && changes.len() > 1)
        .count();
    if read_then_changed == 0 {
        return Err(format!(
            "none of the {reads} rows read by the snapshot changed after it: nothing met"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_and_composite_key_tables_are_read_in_chunks() {
    let mut capture = Capture::for_heavy_load(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.nokey (at int, note text);
         ALTER TABLE l1.nokey REPLICA IDENTITY FULL;
         INSERT INTO l1.nokey SELECT g % 1000, 'n' || g FROM generate_series(1, 30000) g;
         CREATE TABLE l1.pair (a int, b text, v int, PRIMARY KEY (a, b));
         INSERT INTO l1.pair SELECT g % 100, 'b' || g, g FROM generate_series(1, 30000) g;
         ANALYZE l1.nokey; ANALYZE l1.pair;",
    )
    .await;
    let config = capture.config(
        &["l1.*"],
        "snapshot = \"initial\"\nsnapshot_workers = 3\nsnapshot_chunk_size = 4000",
        "",
    );
    capture.start(&config).await;
    let nokey = capture.read("l1.nokey", 30000).await;
    let pair = capture.read("l1.pair", 30000).await;
    assert_eq!((nokey.len(), pair.len()), (30000, 30000));
    assert!(nokey.iter().chain(&pair).all(|r| r.op() == "r"));
    let log = capture.source_log();
    assert!(
        chunk_count(&log) >= 12,
        "expected both tables in several chunks:\n{log}"
    );
    let all: Vec<Decoded> = nokey.into_iter().chain(pair).collect();
    assert_eq!(marker_count(&all, "first"), 1);
    assert_eq!(marker_count(&all, "last"), 1);
    assert_eq!(
        marker_count(&all, "first_in_data_collection")
            + marker_count(&all, "last_in_data_collection"),
        2
    );
    let mut keys: Vec<String> = all
        .iter()
        .filter(|r| !r.key.is_null())
        .map(|r| r.key.to_string())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 30000, "every composite key once");
    settle_equal(&capture, &["l1.nokey", "l1.pair"]).await;
    assert_eq!(capture.stop(), 0);
}

/// Killed in the middle of its initial snapshot, the source keeps the chunks the broker
/// acknowledged and hands the rest to incremental snapshots; killed again while those run, it
/// goes on from their last recorded chunk. Under writes throughout, every row arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_killed_again_and_again_resumes_and_loses_nothing() {
    let mut capture = Capture::for_heavy_load(ITEMS).await;
    let config = capture.config(
        &["l1.*"],
        "snapshot = \"initial\"\nsnapshot_workers = 2\nsnapshot_chunk_size = 5000\nincremental_chunk_size = 2000",
        "[kafka.options]\n\"queue.buffering.max.messages\" = \"2000\"",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = scattered_writer(&capture, Arc::clone(&stop));
    let mut first = running_midway(&config).await;
    first.kill9();
    let mut logs = vec![first.stderr_text()];
    for kill in 1..=2 {
        let mut resumed = CdcProcess::run(&config);
        wait_log(&resumed, "incremental snapshot progress", WAIT).await;
        let log = resumed.stderr_text();
        assert!(
            !log.contains("incremental snapshot completed"),
            "the snapshot finished before kill {kill}:\n{log}"
        );
        resumed.kill9();
        logs.push(log);
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.expect("writer");
    assert!(rounds > 5, "the writer ran {rounds} rounds only");
    let last = CdcProcess::run(&config);
    wait_log(&last, "incremental snapshot completed", WAIT * 3).await;
    capture.source = Some(last);

    let handover = &logs[1];
    assert!(
        handover.contains("resuming the interrupted initial snapshot")
            && !handover.contains("dropped the replication slot to take a new snapshot"),
        "the second run should resume, not start over:\n{handover}"
    );
    let kept = handover
        .split("rows_kept=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(kept >= 5000, "no acknowledged chunk was kept:\n{handover}");
    assert!(
        logs[2].contains("resuming incremental snapshot"),
        "the third run should go on with the incremental snapshot:\n{}",
        logs[2]
    );
    settle_equal(&capture, &["l1.item"]).await;
    assert_eq!(capture.stop(), 0);
}

/// A table without a key cannot be read on by another reader: killed midway, the snapshot
/// starts over, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_keyless_table_killed_midway_starts_over() {
    let capture = Capture::for_heavy_load(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.item (id bigint, counter int NOT NULL, note text);
         ALTER TABLE l1.item REPLICA IDENTITY FULL;
         INSERT INTO l1.item SELECT g, 0, repeat('x', 100) FROM generate_series(1, 200000) g;
         ANALYZE l1.item;",
    )
    .await;
    let config = slow_snapshot_config(&capture, 2);
    let mut first = running_midway(&config).await;
    first.kill9();
    let mut second = CdcProcess::run(&config);
    wait_log(&second, "initial snapshot completed", WAIT * 3).await;
    let log = second.stderr_text();
    assert!(
        log.contains("the interrupted initial snapshot cannot be resumed; starting it over")
            && log.contains("l1.item has no key to continue reading it by")
            && log.contains("dropped the replication slot to take a new snapshot"),
        "{log}"
    );
    second.terminate();
    assert_eq!(second.wait_exit(Duration::from_secs(20)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_stops_promptly_on_sigterm() {
    let capture = Capture::on_shared_sink_testbed(ITEMS).await;
    let mut source = running_midway(&slow_snapshot_config(&capture, 4)).await;
    source.terminate();
    assert_eq!(source.wait_exit(Duration::from_secs(20)), 0);
    let log = source.stderr_text();
    assert!(!log.contains("initial snapshot completed"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// An initial snapshot of `l1.*` by `workers` workers in chunks of 5,000 rows, held back by a
/// small producer queue so that its first progress line (5 s in) comes long before its end.
fn slow_snapshot_config(capture: &Capture<'_>, workers: usize) -> String {
    capture.config(
        &["l1.*"],
        &format!(
            "snapshot = \"initial\"\nsnapshot_workers = {workers}\nsnapshot_chunk_size = 5000"
        ),
        "[kafka.options]\n\"queue.buffering.max.messages\" = \"2000\"",
    )
}

/// `cdc-source run` once its snapshot is under way and not yet complete.
async fn running_midway(config: &str) -> CdcProcess {
    let source = CdcProcess::run(config);
    wait_log(&source, "snapshot progress", WAIT).await;
    assert!(
        !source.stderr_text().contains("initial snapshot completed"),
        "the snapshot finished before it could be interrupted"
    );
    source
}
