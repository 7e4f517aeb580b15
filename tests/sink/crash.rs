//! Crashes (SPEC §6): `kill -9` of the sink, several times, and of the source, during a
//! 100,000-row mixed workload. The target ends equal to the source, and an audit trigger on
//! the target shows that no change was applied twice or out of order: every change carries
//! its source WAL position, since events hold absolute after-images and a batch applied again
//! would otherwise leave no trace. At least one kill lands while a batch's target transaction
//! is open, and that transaction is rolled back; the source's replay after its crash is
//! skipped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::target::Target;
use crate::support::capture::{eventually, Capture};
use crate::support::process::CdcProcess;

const ROUNDS: i64 = 50;
const ROWS_PER_ROUND: i64 = 2000;
const SINK_KILLS: usize = 3;

/// `wal` is the source's WAL insert position when the row was written, set by a trigger just
/// before the change's own WAL record: a single writer commits one transaction after the
/// other and changes a row at most once in each, so per row it rises with every change, as
/// the change's LSN does.
const SOURCE_SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.acct (id bigint PRIMARY KEY, counter int NOT NULL, note text, wal bigint NOT NULL);
    CREATE FUNCTION l1.stamp() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN NEW.wal := pg_current_wal_insert_lsn() - '0/0'::pg_lsn; RETURN NEW; END$$;
    CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON l1.acct
        FOR EACH ROW EXECUTE FUNCTION l1.stamp();";

/// The target table made before the sink starts (the sink applies to an existing table as it
/// is), with a trigger that records every row change the sink's transactions commit.
const TARGET_SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.acct (id bigint PRIMARY KEY, counter int NOT NULL, note text, wal bigint NOT NULL);
    CREATE TABLE public.applied (seq bigserial PRIMARY KEY, id bigint NOT NULL, op text NOT NULL, wal bigint NOT NULL);
    CREATE FUNCTION public.applied() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO public.applied (id, op, wal) VALUES (OLD.id, 'd', OLD.wal);
            RETURN OLD;
        END IF;
        INSERT INTO public.applied (id, op, wal) VALUES (NEW.id, lower(left(TG_OP, 1)), NEW.wal);
        RETURN NEW;
    END$$;
    CREATE TRIGGER applied AFTER INSERT OR UPDATE OR DELETE ON l1.acct
        FOR EACH ROW EXECUTE FUNCTION public.applied();";

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

/// The transactions of the sink that hold a transaction id (it locked or wrote something),
/// open in the target database now.
async fn open_sink_transactions(target: &Target) -> Vec<String> {
    target
        .client
        .query(
            "SELECT backend_xid::text FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'pgcdc'
               AND backend_xid IS NOT NULL",
            &[],
        )
        .await
        .expect("query pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Whether one of `xids` was rolled back, once none of them is in progress any more (a
/// backend notices its client is gone when it next reads from or writes to it).
async fn one_rolled_back(target: &Target, xids: &[String]) -> bool {
    let statuses = || async {
        let mut statuses = Vec::new();
        for xid in xids {
            let status: Option<String> = target
                .client
                .query_one("SELECT pg_xact_status($1::text::xid8)", &[xid])
                .await
                .expect("pg_xact_status")
                .get(0);
            statuses.push(status.unwrap_or_default());
        }
        statuses
    };
    let settled = eventually(Duration::from_secs(30), || async {
        statuses().await.iter().all(|s| s != "in progress")
    })
    .await;
    assert!(
        settled,
        "transactions {xids:?} of a killed sink stayed open"
    );
    statuses().await.iter().any(|s| s == "aborted")
}

/// Per key, the audit's `(op, wal)` in the order they were applied.
async fn applied_by_key(target: &Target) -> BTreeMap<i64, Vec<(String, i64)>> {
    let mut keys: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for row in target
        .client
        .query("SELECT id, op, wal FROM public.applied ORDER BY seq", &[])
        .await
        .expect("read the audit")
    {
        keys.entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    keys
}

/// Checks the audit: per key, each change applied once and in source order (its `wal` above
/// the one applied before it; a delete carries the `wal` of the row it removed), and nothing
/// after a delete (ids are never reused).
fn once_and_in_order(keys: &BTreeMap<i64, Vec<(String, i64)>>) -> Result<(), String> {
    for (id, changes) in keys {
        for pair in changes.windows(2) {
            let ((op, wal), (next_op, next_wal)) = (&pair[0], &pair[1]);
            if op == "d" {
                return Err(format!(
                    "row {id}: changes applied after its delete: {changes:?}"
                ));
            }
            if next_op == "d" || next_wal > wal {
                continue;
            }
            if next_wal < wal {
                return Err(format!(
                    "row {id}: a change applied after a later one: {changes:?}"
                ));
            }
            return Err(format!("row {id}: a change applied twice: {changes:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_sink_and_source_applies_no_change_twice() {
    let mut capture = Capture::on_shared_sink_testbed(SOURCE_SCHEMA).await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "batch_size = 2000").await;
    target
        .client
        .batch_execute(TARGET_SCHEMA)
        .await
        .expect("the target table and its audit");
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

    // The source first, while the writer writes, so that it replays what it had not
    // confirmed into the sink's backlog.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut source = capture.source.take().expect("source running");
    source.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    capture.start(&config).await;

    let mut sink_logs = Vec::new();
    let mut kills_in_open_batches = 0;
    for _ in 0..SINK_KILLS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The kill waits (a while at most) for a batch's transaction to be open: a sink is
        // idle until it has found the topic, and between batches when it keeps up.
        let mut open = Vec::new();
        let waiting = tokio::time::Instant::now();
        while open.is_empty() && waiting.elapsed() < Duration::from_secs(30) {
            open = open_sink_transactions(&target).await;
        }
        let mut sink = target.sink.take().expect("sink running");
        sink.kill9();
        sink_logs.push(sink.stderr_text());
        if !open.is_empty() && one_rolled_back(&target, &open).await {
            kills_in_open_batches += 1;
        }
        target.start();
    }
    writer.await.expect("writer");
    assert!(done.load(Ordering::Relaxed));

    let expected_rows: i64 = capture
        .client
        .query_one("SELECT count(*) FROM l1.acct", &[])
        .await
        .expect("count")
        .get(0);
    target.settle(&[&format!("l1.acct -> l1.acct: ok ({expected_rows} rows)")]);
    assert!(
        kills_in_open_batches > 0,
        "none of the {SINK_KILLS} kills of the sink rolled back an open batch"
    );
    if let Err(problem) = once_and_in_order(&applied_by_key(&target).await) {
        panic!("{problem}");
    }
    sink_logs.extend(target.sink.as_ref().map(CdcProcess::stderr_text));
    let sink_logs = sink_logs.join("\n");
    assert!(
        sink_logs.contains("skipped changes the target already has (a source replay)"),
        "the source's replay after kill -9 was not skipped:\n{sink_logs}"
    );
    assert_eq!(capture.stop(), 0);
}

/// A source run's first transaction carries, as the first element of `source.sequence`,
/// where that run started streaming; an idle slot's confirmed position moves past the last
/// commit's end, so the next run, replaying that transaction after a crash, may start further
/// on and send it with a higher sequence. The sink places a change by its transaction's own
/// commit LSN (`transaction.id`), which a replay does not move, so it skips the copy. The
/// replay is made exact: the slot is put back (a copy taken before the transaction) and
/// advanced past WAL of an unpublished table, to just before the transaction. A keyless table
/// shows a transaction applied twice as extra rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_transaction_replayed_from_further_on_is_not_applied_again() {
    let (mut capture, mut target) = super::one_partition_pipeline(
        "CREATE SCHEMA l1; CREATE TABLE l1.nokey (v text); ALTER TABLE l1.nokey REPLICA IDENTITY FULL;
         CREATE TABLE public.unpublished (v text);",
        "",
    )
    .await;
    target.start();
    capture
        .client
        .batch_execute("INSERT INTO l1.nokey VALUES ('before')")
        .await
        .expect("first transaction");
    target.settle_like_source(&capture, &["l1.nokey"]).await;
    assert_eq!(capture.stop(), 0);

    capture.back_up_slot().await;
    capture
        .client
        .batch_execute("INSERT INTO public.unpublished SELECT 'x' FROM generate_series(1, 100)")
        .await
        .expect("write unpublished WAL");
    let further_on = capture.current_wal_lsn().await;
    capture
        .client
        .batch_execute("INSERT INTO l1.nokey VALUES ('t'), ('u'), ('t')")
        .await
        .expect("the transaction to replay");
    let config = capture.config(
        &["l1.*"],
        "snapshot = \"never\"",
        "[kafka.topic]\npartitions = 1",
    );
    capture.start(&config).await;
    target.settle_like_source(&capture, &["l1.nokey"]).await;
    assert_eq!(capture.stop(), 0);

    // Put back, to just before the transaction.
    capture.restore_slot(Some(further_on)).await;
    capture.start(&config).await;
    let records = capture.read("l1.nokey", 7).await;
    // The first element of each record's `source.sequence`: `before`, then the transaction
    // as the second run sent it, then as the third.
    let starts: Vec<u64> = records
        .iter()
        .map(|record| {
            let sequence = record.value["source"]["sequence"].as_str().unwrap_or("");
            sequence
                .split('"')
                .nth(1)
                .and_then(|lsn| lsn.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(starts.len(), 7, "{records:?}");
    assert!(
        starts[1] < further_on && starts[4] == further_on,
        "the replay does not start further on than the first copy: {starts:?}, {further_on}"
    );
    capture
        .client
        .batch_execute("INSERT INTO l1.nokey VALUES ('after')")
        .await
        .expect("a later transaction");
    target.settle_like_source(&capture, &["l1.nokey"]).await;
    assert_eq!(
        target
            .rows("SELECT string_agg(v, ',' ORDER BY v) FROM l1.nokey")
            .await,
        ["after,before,t,t,u"]
    );
    assert_eq!(capture.stop(), 0);
}
