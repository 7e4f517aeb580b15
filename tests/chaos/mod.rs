//! The fault-injection run (issue 18): the whole pipeline under a mixed workload while faults
//! drawn from a seed hit it one after the other — processes killed and stopped, the broker
//! and both clusters restarted, links cut, the slot invalidated — each followed by the wait
//! for the target to catch up again. At the end the target must equal the source (by
//! `cdc-sink verify` and by a digest of every row), the target's audit must show no change
//! applied twice or out of order, and the slot must never have been confirmed past what the
//! broker held.
//!
//! `short_run_loses_nothing` runs in the suite (one fault of each main kind). The long run is
//! `scripts/chaos.sh`, which runs the same test with `PGCDC_CHAOS_LONG` and `PGCDC_CHAOS_*` parameters and
//! prints the figures table of the README.

mod bed;
mod checks;
mod network;
mod plan;
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bed::Bed;
use checks::{FlushSample, TableDigest};
use plan::{Fault, Plan};
use workload::WriterState;

use crate::support::capture::parse_lsn;
use crate::support::kafka::{metadata_client, watermarks};
use crate::support::process::{Binary, CdcProcess};

/// How long the target may take to catch up after a fault before the run fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(900);

/// What a run measured.
#[derive(Debug, Default)]
struct Figures {
    seed: u64,
    injected: BTreeMap<Fault, usize>,
    longest_recovery: BTreeMap<Fault, Duration>,
    rows_written: i64,
    schema_changes: i64,
    digests: Vec<(String, TableDigest)>,
    audit: checks::AuditFindings,
    flush_checked: usize,
    flush_problems: Vec<String>,
    unplanned_exits: Vec<String>,
    elapsed: Duration,
}

impl Figures {
    fn lost(&self) -> usize {
        self.digests.iter().map(|(_, d)| d.lost).sum()
    }

    fn extra(&self) -> usize {
        self.digests.iter().map(|(_, d)| d.extra).sum()
    }

    fn columns_differ(&self) -> usize {
        self.digests
            .iter()
            .filter(|(_, d)| d.columns_differ.is_some())
            .count()
    }

    /// The README's table.
    fn table(&self) -> String {
        let mut text = format!(
            "Seed {}, {} faults in {:.0?}, {} rows written, {} schema changes, {} row changes \
             applied.\n\n\
             | fault | injected | longest recovery |\n|---|---:|---:|\n",
            self.seed,
            self.injected.values().sum::<usize>(),
            self.elapsed,
            self.rows_written,
            self.schema_changes,
            self.audit.applied
        );
        for (fault, count) in &self.injected {
            text.push_str(&format!(
                "| {} | {count} | {:.1} s |\n",
                fault.description(),
                self.longest_recovery[fault].as_secs_f64()
            ));
        }
        text.push_str(&format!(
            "\n| check | result |\n|---|---:|\n\
             | rows at the end, source / target | {} / {} |\n\
             | rows lost (source rows missing or different on the target) | {} |\n\
             | rows on the target that the source lacks | {} |\n\
             | tables whose columns differ | {} |\n\
             | changes applied twice (audit) | {} |\n\
             | changes applied out of order / after their row's delete | {} / {} |\n\
             | snapshot re-reads applied (restarted or repeated snapshots) | {} |\n\
             | committed transactions checked against the broker at confirmation | {} |\n\
             | slot confirmed ahead of the broker | {} |\n\
             | unexpected exits (by itself, or non-zero after SIGTERM) | {} |\n",
            self.digests
                .iter()
                .map(|(_, d)| d.source_rows)
                .sum::<usize>(),
            self.digests
                .iter()
                .map(|(_, d)| d.target_rows)
                .sum::<usize>(),
            self.lost(),
            self.extra(),
            self.columns_differ(),
            self.audit.applied_twice,
            self.audit.out_of_order,
            self.audit.after_delete,
            self.audit.re_read,
            self.flush_checked,
            self.flush_problems.len(),
            self.unplanned_exits.len()
        ));
        text
    }
}

/// The slot's confirmed position, then the watermarks of the tables' topics, every 250 ms
/// until `stop`; a sample is skipped while the cluster or the broker does not answer.
fn sampler(
    bed: &Bed,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<FlushSample>> {
    let (cluster_port, db, slot) = (
        bed.source_pg.port(),
        bed.names.db.clone(),
        bed.names.slot.clone(),
    );
    let bootstrap = bed.broker.bootstrap();
    let topics: Vec<String> = ["acct", "scratch", "nokey", "beat", "shape"]
        .iter()
        .map(|t| format!("{}.l1.{t}", bed.names.topic_prefix))
        .collect();
    tokio::spawn(async move {
        let consumer = Arc::new(metadata_client(&bootstrap));
        let mut samples = Vec::new();
        let mut client = None;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if client.is_none() {
                client = tokio_postgres::connect(
                    &format!("host=127.0.0.1 port={cluster_port} user=postgres dbname={db} connect_timeout=2"),
                    tokio_postgres::NoTls,
                )
                .await
                .ok()
                .map(|(client, connection)| {
                    tokio::spawn(connection);
                    client
                });
            }
            let Some(connected) = &client else { continue };
            let confirmed = match connected
                .query_opt(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
            {
                Ok(Some(row)) => row.get::<_, Option<String>>(0).map(|t| parse_lsn(&t)),
                Ok(None) => None,
                Err(_) => {
                    client = None;
                    None
                }
            };
            let Some(confirmed) = confirmed else { continue };
            let (consumer, topics) = (Arc::clone(&consumer), topics.clone());
            // A sample counts only when every topic answered: a broker that just restarted
            // may not, and a missing watermark must not read as an empty partition.
            let high = tokio::task::spawn_blocking(move || {
                let mut high = HashMap::new();
                for topic in topics {
                    for (partition, _, end) in
                        watermarks(&consumer, &topic, Duration::from_secs(1))?
                    {
                        high.insert((topic.clone(), partition), end);
                    }
                }
                Some(high)
            })
            .await
            .expect("watermark thread");
            if let Some(high) = high {
                samples.push(FlushSample { confirmed, high });
            }
        }
        samples
    })
}

/// Injects one fault and undoes it after `outage`; returns a WAL range whose changes a lost
/// slot did not stream.
async fn inject(
    bed: &mut Bed,
    state: &WriterState,
    fault: Fault,
    outage: Duration,
) -> Option<(u64, u64)> {
    match fault {
        Fault::SourceKill9 | Fault::SourceTerm | Fault::SinkKill9 | Fault::SinkTerm => {
            let binary = if matches!(fault, Fault::SourceKill9 | Fault::SourceTerm) {
                Binary::Source
            } else {
                Binary::Sink
            };
            bed.supervise();
            bed.stop(
                binary,
                matches!(fault, Fault::SourceKill9 | Fault::SinkKill9),
            );
            tokio::time::sleep(outage / 4).await;
            bed.start(binary);
        }
        Fault::BrokerKill9 => {
            bed.broker.kill();
            tokio::time::sleep(outage / 2).await;
            bed.broker.start().await;
        }
        Fault::BrokerRestart => {
            bed.broker.stop().await;
            tokio::time::sleep(outage / 2).await;
            bed.broker.start().await;
        }
        Fault::SourcePgImmediateRestart => {
            bed.source_pg.stop_immediate().await;
            tokio::time::sleep(outage / 2).await;
            bed.source_pg.start().await;
            bed.reconnect_source().await;
        }
        Fault::TargetPgImmediateRestart => {
            bed.target_pg.stop_immediate().await;
            tokio::time::sleep(outage / 2).await;
            bed.target_pg.start().await;
        }
        Fault::SourcePgNetworkCut => {
            bed.source_ns.cut(bed.source_pg.port());
            tokio::time::sleep(outage + Duration::from_secs(2)).await;
            bed.source_ns.restore(bed.source_pg.port());
        }
        Fault::SinkBrokerNetworkCut => {
            bed.sink_ns.cut(bed.broker.port());
            tokio::time::sleep(outage + Duration::from_secs(2)).await;
            bed.sink_ns.restore(bed.broker.port());
        }
        Fault::SlotInvalidated => return Some(invalidate_slot(bed, state).await),
    }
    None
}

/// Stops the source, makes the server drop the slot's WAL (`max_slot_wal_keep_size`) and
/// starts the source again, which must say so and take a new snapshot (`when_needed`). No
/// row is removed meanwhile: a snapshot brings rows, not their deletions.
async fn invalidate_slot(bed: &mut Bed, state: &WriterState) -> (u64, u64) {
    state.no_removals.store(true, Ordering::Relaxed);
    // Removals committed before this point must reach the topics before the slot goes.
    let written = bed.source_wal().await;
    let delivered = crate::support::capture::eventually(Duration::from_secs(300), || async {
        let confirmed: Option<String> = bed
            .source_client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&bed.names.slot],
            )
            .await
            .ok()
            .and_then(|row| row.get(0));
        confirmed.is_some_and(|c| parse_lsn(&c) >= written)
    })
    .await;
    assert!(
        delivered,
        "the source did not confirm {written} within 300 s:\n{}",
        bed.logs()
    );
    bed.stop(Binary::Source, false);
    crate::support::postgres::invalidate_slot(&bed.source_client, &bed.names.slot, "public.filler")
        .await;
    bed.start(Binary::Source);
    let said_so = crate::support::capture::eventually(Duration::from_secs(120), || async {
        bed.source.as_ref().is_some_and(|s| {
            s.stderr_text()
                .contains("was invalidated (wal_status = lost)")
        })
    })
    .await;
    assert!(
        said_so,
        "the source did not report the lost slot:\n{}",
        bed.logs()
    );
    let streaming = crate::support::capture::eventually(Duration::from_secs(600), || async {
        bed.slot_wal_status().await.is_some_and(|s| s != "lost")
    })
    .await;
    assert!(
        streaming,
        "the source did not stream again after its new snapshot:\n{}",
        bed.logs()
    );
    let resumed = bed.source_wal().await;
    (written, resumed)
}

/// Waits until the target's heartbeat reached `wanted`, restarting processes that exited by
/// themselves; returns how long that took.
async fn recover(bed: &mut Bed, wanted: i64, started: Instant) -> Duration {
    loop {
        bed.supervise();
        if bed.target_beat().await.is_some_and(|n| n >= wanted) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "the target did not reach heartbeat {wanted} within {RECOVERY_LIMIT:?}:\n{}",
            bed.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(plan: Plan) -> Figures {
    let _heavy = crate::support::capture::heavy_load_permit().await;
    let run_started = Instant::now();
    let mut bed = match Bed::new(plan.prefill_rows).await {
        Ok(bed) => bed,
        Err(e) => {
            panic!("the chaos test bed needs network namespaces (root, iproute2, iptables): {e}")
        }
    };
    bed.start_sink();
    bed.start_source();
    let state = Arc::new(WriterState::default());
    let source_url = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        bed.source_pg.port(),
        bed.names.db
    );
    let writer = workload::writer(source_url.clone(), plan.workload_rng(), Arc::clone(&state));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samples = sampler(&bed, Arc::clone(&sampling));
    let schedule = plan.schedule();
    let big_at = schedule.len() / 3;
    let mut big = None;
    let mut figures = Figures {
        seed: plan.seed,
        ..Figures::default()
    };
    let mut skip = Vec::new();
    for (index, (fault, pause, outage)) in schedule.into_iter().enumerate() {
        if plan
            .time_limit
            .is_some_and(|limit| run_started.elapsed() > limit)
        {
            eprintln!("chaos: time limit reached after {index} faults");
            break;
        }
        // The first fault hits while the initial snapshot still runs.
        tokio::time::sleep(if index == 0 {
            Duration::from_millis(800)
        } else {
            pause
        })
        .await;
        if index == big_at {
            big = Some(workload::large_transaction(
                source_url.clone(),
                plan.prefill_rows + 1,
                plan.big_transaction_rows,
            ));
        }
        eprintln!("chaos: fault {index}: {} (outage {outage:?})", fault.name());
        skip.extend(inject(&mut bed, &state, fault, outage).await);
        // A heartbeat committed after the fault ended: a restarted source cluster must take
        // writes again, and the pipeline carry them.
        let after_fault = state.beat.load(Ordering::Relaxed) + 1;
        let recovery = recover(&mut bed, after_fault, Instant::now()).await;
        if fault == Fault::SlotInvalidated {
            state.no_removals.store(false, Ordering::Relaxed);
        }
        *figures.injected.entry(fault).or_default() += 1;
        let longest = figures.longest_recovery.entry(fault).or_default();
        *longest = (*longest).max(recovery);
    }
    if let Some(big) = big {
        big.await.expect("the large transaction");
    }
    state.stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    recover(&mut bed, state.beat.load(Ordering::Relaxed), Instant::now()).await;
    let verified = tokio::task::block_in_place(|| settle_verify(&mut bed));
    sampling.store(true, Ordering::Relaxed);
    let samples = samples.await.expect("sampler");
    figures.elapsed = run_started.elapsed();
    figures.schema_changes = state.schema_changes.load(Ordering::Relaxed);
    figures.rows_written =
        plan.prefill_rows + plan.big_transaction_rows + state.changes.load(Ordering::Relaxed);
    for table in workload::TABLES {
        let digest = checks::digest(&bed.source_client, &bed.target_client, table).await;
        figures.digests.push((table.to_owned(), digest));
    }
    let (bootstrap, registry, prefix) = (
        bed.broker.bootstrap(),
        bed.registry.url(),
        bed.names.topic_prefix.clone(),
    );
    let changes: HashMap<String, Vec<checks::TopicChange>> =
        tokio::task::spawn_blocking(move || {
            ["acct", "big", "scratch", "nokey", "beat", "shape"]
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        checks::read_changes(&bootstrap, &registry, &format!("{prefix}.l1.{t}")),
                    )
                })
                .collect()
        })
        .await
        .expect("topic reader");
    let keyed: HashMap<String, Vec<checks::TopicChange>> = changes
        .iter()
        .filter(|(t, _)| matches!(t.as_str(), "acct" | "big" | "scratch" | "shape"))
        .map(|(t, c)| (t.clone(), c.clone()))
        .collect();
    figures.audit = checks::audit(&bed.target_client, &keyed).await;
    let topics_by_name: HashMap<String, Vec<checks::TopicChange>> = changes
        .into_iter()
        .filter(|(t, _)| t != "big")
        .map(|(t, c)| {
            (
                format!("{prefix}.l1.{t}", prefix = bed.names.topic_prefix),
                c,
            )
        })
        .collect();
    let committed = state.committed.lock().unwrap().clone();
    let (checked, problems) =
        checks::confirmed_ahead_of_broker(&committed, &samples, &topics_by_name, &skip);
    figures.flush_checked = checked;
    figures.flush_problems = problems;
    figures.unplanned_exits = bed
        .ended
        .iter()
        .filter(|e| !e.planned)
        .map(|e| format!("{:?} exited with {}:\n{}", e.binary, e.code, e.log_tail))
        .collect();
    eprintln!("{}", figures.table());
    if let Err(output) = verified {
        panic!(
            "cdc-sink verify never reported every table equal:\n{output}\n{}",
            bed.logs()
        );
    }
    figures
}

/// Runs `cdc-sink verify` until every table is reported equal (exit 0); returns its last
/// output once it stayed the same for two minutes (the pipeline is stuck, not slow) or after
/// ten.
fn settle_verify(bed: &mut Bed) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut previous, mut changed) = (String::new(), Instant::now());
    loop {
        bed.supervise();
        let mut verify = CdcProcess::sink("verify", &bed.sink_config);
        let code = verify.wait_exit(Duration::from_secs(300));
        let output = format!("{}{}", verify.stdout_text(), verify.stderr_text());
        if code == 0 && output.matches(": ok (").count() == workload::TABLES.len() {
            return Ok(());
        }
        if output != previous {
            (previous, changed) = (output.clone(), Instant::now());
        }
        if Instant::now() >= deadline || changed.elapsed() > Duration::from_secs(120) {
            return Err(output);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Fails the run on any loss, double application or early confirmation, with the details.
fn assert_nothing_lost(figures: &Figures) {
    let problems = [
        (
            figures.lost() == 0,
            format!("rows lost: {:?}", figures.digests),
        ),
        (
            figures.extra() == 0,
            format!("rows the source lacks: {:?}", figures.digests),
        ),
        (
            figures.columns_differ() == 0,
            format!("columns differ: {:?}", figures.digests),
        ),
        (
            figures.audit.applied_twice == 0
                && figures.audit.out_of_order == 0
                && figures.audit.after_delete == 0,
            format!("audit: {:?}", figures.audit),
        ),
        (
            figures.flush_problems.is_empty(),
            format!(
                "slot confirmed ahead of the broker: {:?}",
                figures.flush_problems
            ),
        ),
    ];
    let failed: Vec<&String> = problems
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, m)| m)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}", figures.table());
    assert!(
        figures.flush_checked > 0,
        "no transaction was checked against the broker"
    );
}

/// One fault of each main kind, a few minutes: the run `.ci/run` includes. With
/// `PGCDC_CHAOS_LONG` set (`scripts/chaos.sh` sets it) it is the long run instead, with the
/// parameters of [`Plan::from_env`], and writes its figures to `PGCDC_CHAOS_REPORT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_run_loses_nothing() {
    let plan = if std::env::var_os("PGCDC_CHAOS_LONG").is_some() {
        Plan::from_env()
    } else {
        Plan::short(18)
    };
    let figures = run(plan).await;
    if let Ok(path) = std::env::var("PGCDC_CHAOS_REPORT") {
        std::fs::write(&path, figures.table()).expect("write the report");
    }
    for exit in &figures.unplanned_exits {
        eprintln!("unplanned exit: {exit}");
    }
    assert_nothing_lost(&figures);
}
