//! Ways of writing a batch of upserts, side by side in one run (`cargo bench --bench
//! apply_statements`): one `INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT … DO
//! UPDATE`; `COPY` into a temporary table and one `INSERT … SELECT … FROM stage ON CONFLICT …
//! DO UPDATE`; and, for new keys only, `COPY` straight into the table. Batches of
//! PGCDC_BENCH_BATCH rows (default 5000), PGCDC_BENCH_ROWS rows (default 200000) of about 280
//! bytes, each batch in one transaction, into a cluster with fsync on; first as inserts of
//! new keys, then as updates of the same keys. Prints rows/s of each. cdc-sink uses the
//! direct COPY for rows inserted by the stream and the unnest upsert for the rest; the
//! "cdc-sink's applier" figure runs its own code on the same rows (changes collected per key,
//! COPY in a savepoint for new keys, the upsert for updates), and the "replay" figure sends
//! the inserts again, as a source replay into a filled table does (the COPY meets an existing
//! key, is rolled back to its savepoint, and the rows go to the upsert).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::env_number;
use futures_util::SinkExt;
use pgcdc::config::OnConflict;
use pgcdc::sink::apply::Applier;
use pgcdc::sink::batch::TableBatch;
use pgcdc::sink::change::{Cell, Position, SinkChange, SinkColumn, SinkOp, SinkTable};
use pgcdc::sink::ddl;
use support::postgres::ClusterSetup;
use support::{PgCluster, TestNames};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

const COLUMNS: [(&str, &str); 6] = [
    ("id", "integer"),
    ("name", "text"),
    ("qty", "integer"),
    ("price", "numeric(10,2)"),
    ("created", "timestamptz"),
    ("note", "text"),
];

/// One batch as the sink holds it: text per column, row by row.
fn batch(first: usize, rows: usize, round: usize) -> Vec<[String; 6]> {
    (first..first + rows)
        .map(|i| {
            [
                i.to_string(),
                format!("name {i} round {round}"),
                ((i + round) % 100).to_string(),
                format!("{}.{:02}", i / 100, i % 100),
                "2024-02-29T13:14:15.123456Z".to_owned(),
                "x".repeat(200),
            ]
        })
        .collect()
}

fn create_sql(table: &str) -> String {
    let columns: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    format!(
        "CREATE TABLE {table} ({}, PRIMARY KEY (id))",
        columns.join(", ")
    )
}

fn conflict_clause() -> String {
    let updates: Vec<String> = COLUMNS[1..]
        .iter()
        .map(|(n, _)| format!("{n} = EXCLUDED.{n}"))
        .collect();
    format!("ON CONFLICT (id) DO UPDATE SET {}", updates.join(", "))
}

fn unnest_sql(table: &str) -> String {
    let casts: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("u.{n}::{t}")).collect();
    let arrays: Vec<String> = (1..=COLUMNS.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    format!(
        "INSERT INTO {table} ({names}) SELECT {} FROM unnest({}) AS u({names}) {}",
        casts.join(", "),
        arrays.join(", "),
        conflict_clause(),
        names = names.join(", "),
    )
}

async fn apply_unnest(client: &mut Client, statement: &Statement, rows: &[[String; 6]]) {
    let columns: Vec<Vec<&str>> = (0..COLUMNS.len())
        .map(|c| rows.iter().map(|row| row[c].as_str()).collect())
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> =
        columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    let tx = client.transaction().await.expect("begin");
    tx.execute(statement, &params).await.expect("unnest upsert");
    tx.commit().await.expect("commit");
}

/// COPY text format: backslash, tab, newline and carriage return escaped.
fn copy_text(rows: &[[String; 6]]) -> Bytes {
    let mut out = String::with_capacity(rows.len() * 300);
    for row in rows {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    other => out.push(other),
                }
            }
        }
        out.push('\n');
    }
    Bytes::from(out)
}

async fn copy_in(tx: &tokio_postgres::Transaction<'_>, sql: &str, rows: &[[String; 6]]) {
    let sink = tx.copy_in(sql).await.expect("start COPY");
    let mut sink = std::pin::pin!(sink);
    sink.send(copy_text(rows)).await.expect("COPY data");
    sink.as_mut().finish().await.expect("finish COPY");
}

async fn apply_copy_merge(client: &mut Client, table: &str, rows: &[[String; 6]]) {
    let tx = client.transaction().await.expect("begin");
    copy_in(&tx, "COPY stage FROM STDIN", rows).await;
    tx.batch_execute(&format!(
        "INSERT INTO {table} SELECT * FROM stage {}",
        conflict_clause()
    ))
    .await
    .expect("merge");
    tx.commit().await.expect("commit");
}

async fn apply_copy_direct(client: &mut Client, table: &str, rows: &[[String; 6]]) {
    let tx = client.transaction().await.expect("begin");
    copy_in(&tx, &format!("COPY {table} FROM STDIN"), rows).await;
    tx.commit().await.expect("commit");
}

/// The table as the sink's decoder describes it from the change events' schemas.
fn sink_table(table: &str) -> Arc<SinkTable> {
    Arc::new(SinkTable {
        schema: "public".into(),
        table: table.into(),
        columns: COLUMNS
            .iter()
            .map(|(name, sql_type)| SinkColumn {
                name: (*name).into(),
                sql_type: (*sql_type).into(),
                optional: *name != "id",
                enum_type: None,
            })
            .collect(),
        key: vec![0],
    })
}

/// Applies `rows` as changes of kind `op` with cdc-sink's applier, in one transaction.
async fn apply_with_applier(
    client: &mut Client,
    applier: &mut Applier,
    table: &Arc<SinkTable>,
    op: SinkOp,
    rows: &[[String; 6]],
) {
    let changes = rows.iter().map(|row| SinkChange {
        table: Arc::clone(table),
        op,
        before: None,
        after: Some(row.iter().map(|v| Cell::Text(v.clone())).collect()),
        position: Position::default(),
    });
    let batch = TableBatch::of(changes.collect());
    let tx = client.transaction().await.expect("begin");
    let target = ddl::describe(&tx, &table.schema, &table.table)
        .await
        .expect("describe")
        .expect("the table");
    for segment in batch.segments() {
        applier
            .apply(&tx, &target, segment, OnConflict::Update)
            .await
            .expect("apply");
    }
    tx.commit().await.expect("commit");
}

#[tokio::main]
async fn main() {
    let total = env_number("PGCDC_BENCH_ROWS", 200_000) as usize;
    let batch_rows = env_number("PGCDC_BENCH_BATCH", 5000).max(1) as usize;
    let pg = PgCluster::with_setup(ClusterSetup {
        extra_conf: "fsync = on\nfull_page_writes = on\n".into(),
        ..ClusterSetup::default()
    })
    .await;
    let names = TestNames::new();
    let mut client = names.create_database(&pg).await;
    client
        .batch_execute(&format!(
            "{}; {}; {}; {}; CREATE TEMP TABLE stage (LIKE by_copy) ON COMMIT DELETE ROWS;",
            create_sql("by_unnest"),
            create_sql("by_copy"),
            create_sql("by_direct_copy"),
            create_sql("by_applier"),
        ))
        .await
        .expect("create tables");
    let unnest = client
        .prepare(&unnest_sql("by_unnest"))
        .await
        .expect("prepare");
    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let applied = sink_table("by_applier");
    let mut applier = Applier::default();
    println!("rows: {total} in batches of {batch_rows}, fsync on");
    for (round, phase) in ["insert", "update"].into_iter().enumerate() {
        let batches: Vec<Vec<[String; 6]>> = (0..total)
            .step_by(batch_rows)
            .map(|first| batch(first, batch_rows.min(total - first), round))
            .collect();
        let started = Instant::now();
        for rows in &batches {
            apply_unnest(&mut client, &unnest, rows).await;
        }
        let by_unnest = rate(started.elapsed());
        let started = Instant::now();
        for rows in &batches {
            apply_copy_merge(&mut client, "by_copy", rows).await;
        }
        let by_copy = rate(started.elapsed());
        print!(
            "{phase}: unnest upsert {by_unnest:>7.0} rows/s, COPY + merge {by_copy:>7.0} rows/s"
        );
        if phase == "insert" {
            let started = Instant::now();
            for rows in &batches {
                apply_copy_direct(&mut client, "by_direct_copy", rows).await;
            }
            print!(
                ", COPY into the table {:>7.0} rows/s",
                rate(started.elapsed())
            );
        }
        let op = if phase == "insert" {
            SinkOp::Create
        } else {
            SinkOp::Update
        };
        let started = Instant::now();
        for rows in &batches {
            apply_with_applier(&mut client, &mut applier, &applied, op, rows).await;
        }
        println!(
            ", cdc-sink's applier {:>7.0} rows/s",
            rate(started.elapsed())
        );
    }
    // The inserts once more, into the filled table, with a fresh applier (as after a restart).
    let batches: Vec<Vec<[String; 6]>> = (0..total)
        .step_by(batch_rows)
        .map(|first| batch(first, batch_rows.min(total - first), 2))
        .collect();
    let mut applier = Applier::default();
    let started = Instant::now();
    for rows in &batches {
        apply_with_applier(&mut client, &mut applier, &applied, SinkOp::Create, rows).await;
    }
    println!(
        "replay of the inserts into the filled table: cdc-sink's applier {:>7.0} rows/s",
        rate(started.elapsed())
    );
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM by_applier WHERE name LIKE '% round 2'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(count as usize, total, "every replayed row written");
}
