//! A real schema captured whole (`l1.*`), end to end under a concurrent writer (issue 12):
//! a partitioned table arrives as one table named after its root, user-defined types (an
//! enum, an enum array, domains, a composite) arrive with the target's enum type made to
//! match, and tables and partitions created mid-stream are captured without a restart,
//! their rows from before they joined the publication included.

mod partitions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::sink::target::Target;
use crate::support::capture::Capture;
use crate::support::postgres::REPLICATOR;
use crate::support::random_suffix;

const SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TYPE l1.mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN l1.posint AS integer CHECK (VALUE > 0);
    CREATE DOMAIN l1.price AS numeric(10,2);
    CREATE TYPE l1.pair AS (a int, b text);
    CREATE TABLE l1.people (id int PRIMARY KEY, name text NOT NULL, mood l1.mood,
        moods l1.mood[], qty l1.posint, price l1.price, pair l1.pair);
    CREATE TABLE l1.measurements (id bigint, at date, v numeric(8,2), PRIMARY KEY (id, at))
        PARTITION BY RANGE (at);
    CREATE TABLE l1.measurements_2024 PARTITION OF l1.measurements
        FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE l1.measurements_2025 PARTITION OF l1.measurements
        FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    INSERT INTO l1.people SELECT g, 'p' || g, (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::l1.mood,
        ARRAY['ok', NULL, 'happy']::l1.mood[], g, g * 1.5, ROW(g, 'x, ' || g)::l1.pair
        FROM generate_series(1, 300) g;
    INSERT INTO l1.measurements SELECT g, DATE '2024-01-01' + g % 730, g
        FROM generate_series(1, 3000) g;";

/// A writer changing people and measurements in small transactions until `stop`; once
/// `year_2026` is set it also writes rows that belong to the 2026 partition.
fn writer(
    capture: &Capture<'_>,
    year_2026: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    capture.writer(Duration::from_millis(10), stop, move |r| {
        let days = if year_2026.load(Ordering::Relaxed) {
            1095
        } else {
            730
        };
        format!(
            "BEGIN;
             UPDATE l1.people SET mood = (ARRAY['sad', 'ok', 'happy'])[(id + {r}) % 3 + 1]::l1.mood,
                 qty = qty + 1, moods = moods || 'sad'::l1.mood WHERE id % 17 = {m17};
             INSERT INTO l1.people VALUES ({p}, 'new', 'happy', '{{sad,NULL}}', 1, 9.99, ROW(1, 'a\"b'));
             INSERT INTO l1.measurements VALUES ({id}, DATE '2024-01-01' + {r} % {days}, {r});
             UPDATE l1.measurements SET v = v + 1 WHERE id % 97 = {m97};
             DELETE FROM l1.measurements WHERE id % 501 = {m501};
             COMMIT;",
            m17 = r % 17,
            p = 10_000 + r,
            id = 100_000 + r,
            m97 = r % 97,
            m501 = r % 501,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_schema_with_partitions_user_types_and_late_tables_arrives_equal() {
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    let config = capture.config(&["l1.*"], "discovery_interval = \"1s\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    target.start();
    let (year_2026, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = writer(&capture, Arc::clone(&year_2026), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A partition made mid-stream, written to at once.
    capture
        .client
        .batch_execute(
            "CREATE TABLE l1.measurements_2026 PARTITION OF l1.measurements
                 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             INSERT INTO l1.measurements VALUES (900000, '2026-06-01', 1);",
        )
        .await
        .expect("a new partition");
    year_2026.store(true, Ordering::Relaxed);
    // A table created and filled in one transaction (its rows precede its publication), filled
    // more afterwards; the connector's role owns it, so the source may publish it.
    capture
        .client
        .batch_execute(&format!(
            "BEGIN;
             CREATE TABLE l1.late (id int PRIMARY KEY, mood l1.mood, note text);
             INSERT INTO l1.late SELECT g, 'ok', 'in the creating transaction' FROM generate_series(1, 500) g;
             ALTER TABLE l1.late OWNER TO {REPLICATOR};
             COMMIT;"
        ))
        .await
        .expect("a late table");
    // A label added to the enum, used at once.
    capture
        .client
        .batch_execute("ALTER TYPE l1.mood ADD VALUE 'elated' AFTER 'happy'")
        .await
        .expect("a new enum label");
    capture
        .client
        .batch_execute(
            "UPDATE l1.people SET mood = 'elated', moods = '{elated,sad}' WHERE id % 10 = 0",
        )
        .await
        .expect("the new label in use");
    for round in 0..20 {
        capture
            .client
            .batch_execute(&format!(
                "INSERT INTO l1.late VALUES ({id}, 'elated', 'after'); UPDATE l1.late SET note = 'changed' WHERE id = {round} + 1;",
                id = 1000 + round
            ))
            .await
            .expect("later rows of the late table");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.expect("writer");
    assert!(rounds > 10, "the writer ran {rounds} rounds");

    target
        .settle_like_source(&capture, &["l1.late", "l1.measurements", "l1.people"])
        .await;
    assert_eq!(
        target
            .rows("SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'l1' AND c.relkind IN ('r', 'p') ORDER BY 1")
            .await,
        ["late", "measurements", "people"],
        "one target table per source table, none per partition"
    );
    assert_eq!(
        target
            .rows("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'l1.mood'::regtype")
            .await,
        ["sad,ok,happy,elated"]
    );
    assert_eq!(
        target
            .rows("SELECT format('%s %s %s %s', pg_typeof(mood), pg_typeof(moods), pg_typeof(qty), pg_typeof(price)) FROM l1.people LIMIT 1")
            .await,
        ["l1.mood l1.mood[] integer numeric"]
    );
    assert!(
        capture.source_log().contains(
            "captured a new table; its existing rows are snapshotted incrementally table=l1.late"
        ),
        "{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);
}

/// A schema publication a superuser made (`FOR TABLES IN SCHEMA`) covers a table another role
/// creates later: it streams from its first row, without the source adding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_publication_covers_tables_created_later_by_anyone() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    capture
        .client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLES IN SCHEMA l1 WITH (publish_via_partition_root = true)",
            capture.names.publication
        ))
        .await
        .expect("a schema publication");
    let config = capture.config(&["l1.*"], "discovery_interval = \"1s\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    target.start();
    let owner = format!("owner_{}", random_suffix());
    capture
        .client
        .batch_execute(&format!(
            "CREATE ROLE {owner} NOLOGIN;
             BEGIN;
             CREATE TABLE l1.other (id int PRIMARY KEY, v text);
             ALTER TABLE l1.other OWNER TO {owner};
             INSERT INTO l1.other SELECT g, 'v' FROM generate_series(1, 50) g;
             COMMIT;
             INSERT INTO l1.t VALUES (1, 'a');"
        ))
        .await
        .expect("a table of another role");
    target
        .settle_like_source(&capture, &["l1.other", "l1.t"])
        .await;
    // Streamed from the creating transaction, and read once more by the snapshot every table
    // found later gets.
    let ops: Vec<String> = capture
        .read_within("l1.other", 101, Duration::from_secs(10))
        .await
        .iter()
        .map(|record| record.op().to_owned())
        .collect();
    assert_eq!(
        ops.iter().filter(|op| *op == "c").count(),
        50,
        "the creating transaction's rows are streamed: {ops:?}"
    );
    assert_eq!(capture.stop(), 0);
}

/// A table dropped at the source stops being captured: with `apply.drop_tables` the target
/// table goes too, after every change made before the drop; without it the target keeps the
/// table and its rows. Either way `verify` stops comparing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_at_the_source_is_dropped_or_kept_on_the_target() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.keep (id int PRIMARY KEY, v text);
         CREATE TABLE l1.gone (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.*"], "discovery_interval = \"1s\"", "");
    capture.start(&config).await;
    let mut dropping = Target::new(&capture, "drop_tables = true").await;
    dropping.start();
    let mut keeping = Target::new(&capture, "").await;
    keeping.start();
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.keep SELECT g, 'k' FROM generate_series(1, 20) g;
             INSERT INTO l1.gone SELECT g, 'g' FROM generate_series(1, 300) g;",
        )
        .await
        .expect("rows");
    let both = [
        "l1.gone -> l1.gone: ok (300 rows)",
        "l1.keep -> l1.keep: ok (20 rows)",
    ];
    dropping.settle(&both);
    keeping.settle(&both);
    capture
        .client
        .batch_execute(
            "UPDATE l1.gone SET v = 'last' WHERE id <= 100;
             DROP TABLE l1.gone;
             INSERT INTO l1.keep VALUES (21, 'after the drop');",
        )
        .await
        .expect("drop a table");
    dropping.settle(&["l1.keep -> l1.keep: ok (21 rows)"]);
    keeping.settle(&["l1.keep -> l1.keep: ok (21 rows)"]);
    let exists = "SELECT coalesce(to_regclass('l1.gone')::text, 'none')";
    assert_eq!(dropping.rows(exists).await, ["none"]);
    assert_eq!(keeping.rows(exists).await, ["l1.gone"]);
    assert_eq!(
        keeping
            .rows("SELECT count(*)::text FROM l1.gone WHERE v = 'last'")
            .await,
        ["100"],
        "every change before the drop was applied"
    );
    let records = capture.read("schema_changes", 1).await;
    assert_eq!(records.len(), 1);
    let event = &records[0].value;
    assert_eq!(event["tableChanges"][0]["type"], "DROP");
    assert_eq!(event["tableChanges"][0]["id"], "\"l1\".\"gone\"");
    assert_eq!(event["source"]["table"], "gone");
    assert_eq!(capture.stop(), 0);
}

/// A table created later without a primary key or replica identity is not published (that
/// would make PostgreSQL refuse its updates and deletes) until it gets one; then it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_without_identity_waits_for_one_and_its_updates_keep_working() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.*"], "discovery_interval = \"1s\"", "");
    capture.start(&config).await;
    capture
        .client
        .batch_execute(&format!(
            "CREATE TABLE l1.log (at int, msg text); ALTER TABLE l1.log OWNER TO {REPLICATOR};
             INSERT INTO l1.log VALUES (1, 'a'), (2, 'b');"
        ))
        .await
        .expect("a keyless table");
    let warned = crate::support::capture::eventually(Duration::from_secs(30), || async {
        capture
            .source_log()
            .contains("has no primary key and no replica identity")
    })
    .await;
    assert!(warned, "{}", capture.source_log());
    capture
        .client
        .batch_execute("UPDATE l1.log SET msg = 'still updatable' WHERE at = 1")
        .await
        .expect("the application's updates keep working");
    capture
        .client
        .batch_execute(
            "ALTER TABLE l1.log REPLICA IDENTITY FULL;
             INSERT INTO l1.log VALUES (3, 'c');",
        )
        .await
        .expect("a replica identity");
    let added = crate::support::capture::eventually(Duration::from_secs(30), || async {
        capture
            .source_log()
            .contains("added a new table to the publication table=l1.log")
    })
    .await;
    assert!(added, "{}", capture.source_log());
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.log VALUES (4, 'd'); UPDATE l1.log SET msg = 'e' WHERE at = 4;",
        )
        .await
        .expect("changes once published");
    let mut ops: Vec<String> = capture
        .read("l1.log", 2)
        .await
        .iter()
        .map(|record| record.op().to_owned())
        .collect();
    // Null keys spread over partitions: the reader may see them in either order.
    ops.sort();
    assert_eq!(
        ops,
        ["c", "u"],
        "changes after it joined the publication stream"
    );
    assert!(
        capture
            .source_log()
            .contains("the table cannot be snapshotted incrementally"),
        "its earlier rows cannot be read by key, and the log says so:\n{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);
}
