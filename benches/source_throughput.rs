//! cdc-source against `pg_recvlogical` draining the same backlog, in one run (`cargo bench
//! --bench source_throughput`). Both read a slot created before the workload over loopback
//! TCP with pgoutput; `pg_recvlogical` writes to /dev/null, cdc-source produces Avro to a
//! tansu broker and is done when its slot's confirmed LSN reaches the end of the workload.
//! Prints rows/s of each, their ratio, and cdc-source's peak RSS. cdc-source's start-up
//! (prerequisite checks, the snapshot state, topics) takes about half a second before it
//! streams, so its rate from the moment its slot becomes active is printed too.
//! Rows: PGCDC_BENCH_ROWS (default 200000), rows per transaction:
//! PGCDC_BENCH_TRANSACTION_ROWS (default 1000).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    env_number, lsn, peak_rss_kib, source_config, wait_active, wait_confirmed, STREAM_ONLY,
};
use support::postgres::{bin_dir, REPLICATOR};
use support::process::CdcProcess;
use support::{Broker, PgCluster, SchemaRegistry, TestNames};

#[tokio::main]
async fn main() {
    let rows = env_number("PGCDC_BENCH_ROWS", 200_000);
    let per_transaction = env_number("PGCDC_BENCH_TRANSACTION_ROWS", 1000).max(1);
    let pg = PgCluster::new().await;
    let broker = Broker::start_memory().await;
    let registry = SchemaRegistry::start();
    let names = TestNames::new();
    let client = names.create_database(&pg).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE bench (id int PRIMARY KEY, name text NOT NULL, qty int, price numeric(10,2),
                                 created timestamptz, note text);
             ALTER TABLE bench OWNER TO {REPLICATOR};
             CREATE PUBLICATION {publication} FOR TABLE bench;",
            publication = names.publication,
        ))
        .await
        .expect("set up the benchmark database");
    // A slot cannot be created in a transaction that wrote, so each in a query of its own.
    for slot in [names.slot.clone(), format!("{}_recv", names.slot)] {
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .await
            .expect("create a slot");
    }
    let guard = names.guard(&pg);
    for start in (0..rows).step_by(per_transaction as usize) {
        let end = (start + per_transaction).min(rows) - 1;
        client
            .batch_execute(&format!(
                "INSERT INTO bench SELECT i, 'name ' || i, i % 100, i * 0.01, now(), repeat('x', 200)
                 FROM generate_series({start}, {end}) i"
            ))
            .await
            .expect("insert the workload");
    }
    let end = lsn(&client, "SELECT pg_current_wal_lsn()::text").await;
    let end_text = format!("{:X}/{:X}", end >> 32, end & 0xFFFF_FFFF);

    let dsn = format!("{}&replication=database", pg.url(&names.db, REPLICATOR));
    let started = Instant::now();
    let status = Command::new(bin_dir().join("pg_recvlogical"))
        .args(["-d", &dsn, "-S", &format!("{}_recv", names.slot), "--start"])
        .args(["-E", &end_text, "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={}", names.publication))
        .status()
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    let recvlogical = started.elapsed();
    let _ = client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{}_recv')",
            names.slot
        ))
        .await;

    let config = source_config(&pg, &names, &broker, &registry.url(), STREAM_ONLY, "");
    let started = Instant::now();
    let source = CdcProcess::run(&config);
    let streaming = wait_active(&client, &names.slot, &source).await;
    wait_confirmed(&client, &names.slot, end, &source).await;
    let pgcdc = started.elapsed();
    let from_streaming = streaming.elapsed();
    let rss = peak_rss_kib(source.pid());
    drop(source);
    drop(guard);

    let rate = |elapsed: Duration| rows as f64 / elapsed.as_secs_f64();
    println!("rows: {rows} in transactions of {per_transaction}");
    println!(
        "pg_recvlogical: {:>10.0} rows/s ({:.2?})",
        rate(recvlogical),
        recvlogical
    );
    println!(
        "cdc-source:     {:>10.0} rows/s ({:.2?}; {:.0} rows/s over the {:.2?} from its slot \
         becoming active), peak RSS {} MiB",
        rate(pgcdc),
        pgcdc,
        rate(from_streaming),
        from_streaming,
        rss / 1024
    );
    println!(
        "ratio cdc-source / pg_recvlogical: {:.2} (streaming alone: {:.2})",
        rate(pgcdc) / rate(recvlogical),
        rate(from_streaming) / rate(recvlogical)
    );
}
