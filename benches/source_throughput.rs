//! cdc-source against `pg_recvlogical` draining the same backlog, in one run (`cargo bench
//! --bench source_throughput`). Each reads a slot of its own, created before the workload,
//! over loopback TCP with pgoutput; `pg_recvlogical` writes to /dev/null and is done when it
//! exits at the workload's end LSN, cdc-source produces Avro to a tansu broker and is done
//! when its slot's confirmed LSN reaches that end (the topic is then checked to hold every
//! row). `pg_recvlogical` drains twice, before and after cdc-source, and its mean is the
//! reference, so neither side has the warmer caches. Both are timed two ways, the same for
//! each: from the process's start (whole run) and from its slot becoming active (streaming,
//! which leaves out cdc-source's half second of prerequisite checks and topics). Prints rows/s,
//! both ratios and cdc-source's peak RSS.
//! Rows: PGCDC_BENCH_ROWS (default 200000), rows per transaction:
//! PGCDC_BENCH_TRANSACTION_ROWS (default 1000).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    create_slots, env_number, lsn, peak_rss_kib, source_config, wait_active, wait_confirmed,
    SourceBed, STREAM_ONLY,
};
use support::postgres::{bin_dir, REPLICATOR};
use support::process::CdcProcess;
use support::{PgCluster, TestNames};
use tokio_postgres::Client;

/// How long reading the topic back may take.
const READ_LIMIT: Duration = Duration::from_secs(300);

/// One drain of the backlog: from the reader's start, and from its slot becoming active.
struct Drain {
    whole: Duration,
    streaming: Duration,
}

impl Drain {
    /// The mean of two drains.
    fn mean(a: &Drain, b: &Drain) -> Drain {
        Drain {
            whole: (a.whole + b.whole) / 2,
            streaming: (a.streaming + b.streaming) / 2,
        }
    }
}

/// Runs `pg_recvlogical` on `slot` until the workload's end LSN, then drops the slot.
async fn drain_with_recvlogical(
    client: &Client,
    pg: &PgCluster,
    names: &TestNames,
    slot: &str,
    end: &str,
) -> Drain {
    let dsn = format!("{}&replication=database", pg.url(&names.db, REPLICATOR));
    let started = Instant::now();
    let mut child = Command::new(bin_dir().join("pg_recvlogical"))
        .args(["-d", &dsn, "-S", slot, "--start"])
        .args(["-E", end, "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={}", names.publication))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run pg_recvlogical");
    let active = wait_active(client, slot, || "see pg_recvlogical's stderr above".into()).await;
    let status = loop {
        if let Some(status) = child.try_wait().expect("pg_recvlogical's status") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert!(status.success(), "pg_recvlogical failed");
    let drain = Drain {
        whole: started.elapsed(),
        streaming: active.elapsed(),
    };
    let _ = client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await;
    drain
}

#[tokio::main]
async fn main() {
    let rows = env_number("PGCDC_BENCH_ROWS", 200_000);
    let per_transaction = env_number("PGCDC_BENCH_TRANSACTION_ROWS", 1000).max(1);
    let SourceBed {
        pg,
        broker,
        registry,
        names,
        client,
    } = SourceBed::start().await;
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
    let recv_slots = [
        format!("{}_recv_a", names.slot),
        format!("{}_recv_b", names.slot),
    ];
    create_slots(&client, &[&names.slot, &recv_slots[0], &recv_slots[1]]).await;
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

    let before = drain_with_recvlogical(&client, &pg, &names, &recv_slots[0], &end_text).await;

    let config = source_config(&pg, &names, &broker, &registry.url(), STREAM_ONLY, "");
    let started = Instant::now();
    let source = CdcProcess::run(&config);
    let active = wait_active(&client, &names.slot, || source.stderr_text()).await;
    wait_confirmed(&client, &names.slot, end, &source).await;
    let pgcdc = Drain {
        whole: started.elapsed(),
        streaming: active.elapsed(),
    };
    let rss = peak_rss_kib(source.pid());
    drop(source);

    let after = drain_with_recvlogical(&client, &pg, &names, &recv_slots[1], &end_text).await;
    let recvlogical = Drain::mean(&before, &after);
    let topic = format!("{}.public.bench", names.topic_prefix);
    let bootstrap = broker.bootstrap();
    let published = tokio::task::spawn_blocking(move || {
        support::read_topic(&bootstrap, &topic, rows as usize, READ_LIMIT).len()
    })
    .await
    .expect("read the topic");
    assert_eq!(published as i64, rows, "the topic holds every row");
    drop(guard);

    let rate = |elapsed: Duration| rows as f64 / elapsed.as_secs_f64();
    println!("rows: {rows} in transactions of {per_transaction}; the topic holds every row");
    for (name, drain) in [
        ("pg_recvlogical, before", &before),
        ("pg_recvlogical, after", &after),
        ("cdc-source", &pgcdc),
    ] {
        println!(
            "{name:<23} whole run {:>8.0} rows/s ({:.2?}), streaming {:>8.0} rows/s ({:.2?})",
            rate(drain.whole),
            drain.whole,
            rate(drain.streaming),
            drain.streaming,
        );
    }
    println!("cdc-source peak RSS {} MiB", rss / 1024);
    println!(
        "ratio cdc-source / pg_recvlogical (mean of both): whole run {:.2}, streaming {:.2}",
        rate(pgcdc.whole) / rate(recvlogical.whole),
        rate(pgcdc.streaming) / rate(recvlogical.streaming)
    );
}
