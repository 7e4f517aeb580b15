//! Schema changes replayed on the target in their place among the rows (issue 13): every DDL
//! kind under a concurrent writer, DDL between two rows of one key, and kill -9 of both
//! processes during a migration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::target::Target;
use crate::support::capture::{eventually, Capture};
use crate::support::postgres::{table_columns, REPLICATOR};
use crate::support::process::CdcProcess;
use crate::support::registry::{shared_registry, Compatibility};

/// The source configuration with DDL capture on, as a superuser (event triggers need one).
fn ddl_config(capture: &Capture<'_>) -> String {
    capture
        .config(&["l1.*"], "discovery_interval = \"1s\"\nddl = true", "")
        .replace(
            &capture.pg.url(&capture.names.db, REPLICATOR),
            &capture.pg.url(&capture.names.db, "postgres"),
        )
}

/// The registry refuses some of these changes under its default BACKWARD compatibility (a
/// column's type changed to one Avro cannot promote); these tables' subjects take any.
fn allow_any_schema(capture: &Capture<'_>, tables: &[&str]) {
    for table in tables {
        for part in ["key", "value"] {
            let subject = format!("{}-{part}", capture.topic(table));
            shared_registry().set_compatibility(Some(&subject), Compatibility::None);
        }
    }
}

/// A source with DDL capture on `schema_sql`, streaming, and a target applying it with
/// `extra_apply`; every table of these tests takes any schema change.
async fn ddl_pipeline(schema_sql: &str, extra_apply: &str) -> (Capture<'static>, Target, String) {
    let mut capture = Capture::for_heavy_load(schema_sql).await;
    allow_any_schema(
        &capture,
        &["l1.people", "l1.t", "l1.extra", "l1.extra_renamed"],
    );
    let config = ddl_config(&capture);
    capture.start(&config).await;
    let target = Target::new(&capture, extra_apply).await;
    (capture, target, config)
}

/// Inserts, updates and deletes rows of `l1.people` through columns no DDL touches, until
/// `stop`.
fn writer(capture: &Capture<'_>, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    capture.writer(Duration::from_millis(10), stop, |r| {
        format!(
            "BEGIN;
             INSERT INTO l1.people (id, keep) VALUES ({id}, 'w{r}');
             UPDATE l1.people SET keep = keep || '+' WHERE id % 13 = {m13};
             DELETE FROM l1.people WHERE id % 101 = {m101} AND id > 1000;
             COMMIT;",
            id = 1000 + r,
            m13 = r % 13,
            m101 = r % 101,
        )
    })
}

const PEOPLE: &str = "CREATE TABLE l1.people (id int PRIMARY KEY, keep text, name text,
    score int, qty int, note varchar(10), code text);";

/// `l1.people` with 200 rows and an `l1.doomed` table, then `more` SQL.
fn people_schema(more: &str) -> String {
    format!(
        "CREATE SCHEMA l1; {PEOPLE}
         INSERT INTO l1.people SELECT g, 'k' || g, 'n' || g, g, g, 'note' || g, g::text
             FROM generate_series(1, 200) g;
         CREATE TABLE l1.doomed (id int PRIMARY KEY); {more}"
    )
}

/// Every DDL kind, each a statement or two apart, while the writer runs.
const MIGRATION: &[&str] = &[
    "ALTER TABLE l1.people ADD COLUMN a int",
    "ALTER TABLE l1.people ADD COLUMN b text DEFAULT 'dflt'",
    "ALTER TABLE l1.people DROP COLUMN score",
    "ALTER TABLE l1.people RENAME COLUMN name TO full_name",
    "ALTER TABLE l1.people ALTER COLUMN qty TYPE bigint",
    "UPDATE l1.people SET qty = 5000000000 WHERE id = 1",
    "ALTER TABLE l1.people ALTER COLUMN note TYPE text",
    "UPDATE l1.people SET note = 'longer than ten characters' WHERE id = 2",
    "ALTER TABLE l1.people ALTER COLUMN code TYPE int USING code::int",
    "ALTER TABLE l1.people ALTER COLUMN a SET DEFAULT 0",
    "UPDATE l1.people SET a = 0 WHERE a IS NULL",
    "ALTER TABLE l1.people ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE l1.people ALTER COLUMN keep SET NOT NULL",
    "ALTER TABLE l1.people ALTER COLUMN keep DROP NOT NULL",
    "CREATE TABLE l1.extra (id int PRIMARY KEY, v numeric(8,2) NOT NULL DEFAULT 1.5)",
    "INSERT INTO l1.extra SELECT g, g FROM generate_series(1, 50) g",
    "INSERT INTO l1.doomed SELECT g FROM generate_series(11, 20) g",
    "DROP TABLE l1.doomed",
    "ALTER TABLE l1.extra RENAME TO extra_renamed",
    "INSERT INTO l1.extra_renamed VALUES (51, 9.25)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ddl_kind_under_a_writer_is_replayed_in_order() {
    let (mut capture, mut target, _) = ddl_pipeline(
        &people_schema("INSERT INTO l1.doomed SELECT generate_series(1, 10);"),
        "drop_tables = true",
    )
    .await;
    target.start();
    let stop = Arc::new(AtomicBool::new(false));
    let load = writer(&capture, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for statement in MIGRATION {
        capture
            .client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.expect("writer");
    assert!(rounds > 10, "the writer ran {rounds} rounds");

    target
        .settle_like_source(&capture, &["l1.extra_renamed", "l1.people"])
        .await;
    for table in ["l1.people", "l1.extra_renamed"] {
        assert_eq!(
            table_columns(&target.client, table).await,
            table_columns(&capture.client, table).await,
            "{table}'s columns"
        );
    }
    assert_eq!(
        target
            .rows("SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'l1' AND c.relkind = 'r' ORDER BY 1")
            .await,
        ["extra_renamed", "people"],
        "created, renamed and dropped tables"
    );
    assert_eq!(
        target
            .rows("SELECT format('%s %s %s %s', qty, note, b, full_name) FROM l1.people WHERE id IN (1, 2) ORDER BY id")
            .await,
        ["5000000000 note1 dflt n1", "2 longer than ten characters dflt n2"]
    );
    assert_eq!(capture.stop(), 0);
}

/// `l1.t` with two rows.
const TWO_ROWS: &str = "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text, n int);
    INSERT INTO l1.t VALUES (1, 'first', 1), (2, 'second', 2);";

/// A DDL inside a transaction and between two rows of one key: each row is applied against
/// the shape it was written in. An audit trigger on the target records every applied row;
/// each key's rows are in order (keys in different partitions may be applied by different
/// connections, so there is no order across keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_around_a_ddl_are_applied_against_their_own_shape() {
    let (mut capture, mut target, _) = ddl_pipeline(TWO_ROWS, "").await;
    target.start();
    target.settle(&["l1.t -> l1.t: ok (2 rows)"]);
    target
        .client
        .batch_execute(
            "CREATE TABLE public.audit (seq serial, row jsonb);
             CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.audit (row) VALUES (to_jsonb(NEW)); RETURN NEW; END$$;
             CREATE TRIGGER audit AFTER INSERT OR UPDATE ON l1.t
                 FOR EACH ROW EXECUTE FUNCTION public.audit();",
        )
        .await
        .expect("audit trigger");
    capture
        .client
        .batch_execute(
            "BEGIN;
             UPDATE l1.t SET v = 'before rename' WHERE id = 1;
             ALTER TABLE l1.t RENAME COLUMN v TO w;
             UPDATE l1.t SET w = 'after rename' WHERE id = 1;
             ALTER TABLE l1.t ALTER COLUMN n TYPE bigint;
             UPDATE l1.t SET n = 5000000000 WHERE id = 1;
             COMMIT;
             UPDATE l1.t SET w = 'before drop' WHERE id = 2;
             ALTER TABLE l1.t DROP COLUMN w;
             UPDATE l1.t SET n = 7 WHERE id = 2;
             ALTER TABLE l1.t ADD COLUMN w int;
             UPDATE l1.t SET w = 42 WHERE id = 2;",
        )
        .await
        .expect("DDL between rows");
    target.settle(&["l1.t -> l1.t: ok (2 rows)"]);
    assert_eq!(
        target
            .rows("SELECT row::text FROM public.audit ORDER BY row->>'id', seq")
            .await,
        [
            r#"{"n": 1, "v": "before rename", "id": 1}"#,
            r#"{"n": 1, "w": "after rename", "id": 1}"#,
            r#"{"n": 5000000000, "w": "after rename", "id": 1}"#,
            r#"{"n": 2, "w": "before drop", "id": 2}"#,
            r#"{"n": 7, "id": 2}"#,
            r#"{"n": 7, "w": 42, "id": 2}"#,
        ]
    );
    assert_eq!(
        table_columns(&target.client, "l1.t").await,
        table_columns(&capture.client, "l1.t").await
    );
    assert_eq!(capture.stop(), 0);
}

/// `kill -9` of the source and the sink at points of a 20-statement migration under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_migration_loses_nothing() {
    let (mut capture, mut target, config) = ddl_pipeline(&people_schema(""), "").await;
    target.config = target.config.replace(
        "[schema_registry]",
        "[kafka.options]\n\"group.instance.id\" = \"ddl-sink-under-test\"\n\n[schema_registry]",
    );
    target.start();
    let stop = Arc::new(AtomicBool::new(false));
    let load = writer(&capture, Arc::clone(&stop));
    for (index, statement) in MIGRATION.iter().enumerate() {
        capture
            .client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        match index % 5 {
            1 => {
                target.sink.take().expect("sink running").kill9();
                target.start();
            }
            3 => {
                capture.source.take().expect("source running").kill9();
                capture.source = Some(CdcProcess::run(&config));
            }
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("writer");
    target
        .settle_like_source(&capture, &["l1.extra_renamed", "l1.people"])
        .await;
    for table in ["l1.people", "l1.extra_renamed"] {
        assert_eq!(
            table_columns(&target.client, table).await,
            table_columns(&capture.client, table).await,
            "{table}'s columns; the last sink's log:\n{}",
            target
                .sink
                .as_ref()
                .map(CdcProcess::stderr_text)
                .unwrap_or_default()
        );
    }
    assert_eq!(capture.stop(), 0);
}

/// The source publishes schema changes and their rows again (its slot put back, as when it
/// crashed before confirming them) before the sink applied the first copies: each change is
/// applied once and no row waits for a copy. Found by the fault-injection run: a row written
/// between two changes waited for the first change's copy, queued behind the second change,
/// which waited for that row; the table's topic stalled for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_published_twice_before_the_sink_applies_them_hold_no_row_back() {
    let (mut capture, mut target, config) = ddl_pipeline(TWO_ROWS, "").await;
    assert_eq!(capture.read("l1.t", 2).await.len(), 2, "the snapshot");
    assert_eq!(capture.stop(), 0);
    capture.back_up_slot().await;
    capture
        .client
        .batch_execute(
            "BEGIN;
             UPDATE l1.t SET v = 'before add' WHERE id = 1;
             ALTER TABLE l1.t ADD COLUMN c text DEFAULT 'd';
             UPDATE l1.t SET c = 'after add' WHERE id = 1;
             COMMIT;
             BEGIN;
             UPDATE l1.t SET v = 'before rename' WHERE id = 2;
             ALTER TABLE l1.t RENAME COLUMN c TO r;
             UPDATE l1.t SET r = 'after rename' WHERE id = 2;
             COMMIT;
             BEGIN;
             UPDATE l1.t SET n = 10 WHERE id = 1;
             ALTER TABLE l1.t DROP COLUMN v, ALTER COLUMN n TYPE bigint;
             UPDATE l1.t SET n = 5000000000 WHERE id = 1;
             COMMIT;",
        )
        .await
        .expect("three transactions with a DDL between rows");
    let written = capture.current_wal_lsn().await;
    capture.start(&config).await;
    confirmed_up_to(&capture, written).await;
    assert_eq!(capture.stop(), 0);
    // Put back, to before the three transactions.
    capture.restore_slot(None).await;
    capture.start(&config).await;
    confirmed_up_to(&capture, written).await;
    assert_eq!(
        capture.read("l1.t", 2 + 6 * 2).await.len(),
        2 + 6 * 2,
        "the snapshot, then the six rows twice"
    );

    target.start();
    target.settle_like_source(&capture, &["l1.t"]).await;
    assert_eq!(
        table_columns(&target.client, "l1.t").await,
        table_columns(&capture.client, "l1.t").await
    );
    assert_eq!(
        target
            .rows("SELECT format('%s %s %s', id, n, r) FROM l1.t ORDER BY id")
            .await,
        ["1 5000000000 after add", "2 2 after rename"]
    );
    assert_eq!(capture.stop(), 0);
}

/// Waits until the running source confirmed `lsn`: everything before it is on the broker.
async fn confirmed_up_to(capture: &Capture<'_>, lsn: u64) {
    let confirmed = eventually(Duration::from_secs(60), || async {
        capture.confirmed_flush().await >= lsn
    })
    .await;
    assert!(
        confirmed,
        "the source did not confirm {lsn}:\n{}",
        capture.source_log()
    );
}
