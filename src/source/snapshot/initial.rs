//! The initial snapshot: `snapshot_workers` connections import the slot's exported snapshot
//! and read the captured tables chunk by chunk with `COPY … TO STDOUT`; every row becomes an
//! `op = r` event. Each worker runs on a thread of its own, so parsing and encoding use every
//! core, and the producer's bounded queue holds them back when the broker is slower (a worker
//! that cannot enqueue stops reading, and the server waits on its socket).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{pin_mut, StreamExt};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::copy_text::split_row;
use super::markers::Markers;
use super::plan::{chunk_copy, plan_chunks, table_size, ChunkRange};
use super::SnapshotError;
use crate::config::TableFilter;
use crate::encode::Encoder;
use crate::event::types::parse_text;
use crate::event::{ChangeEvent, Op, SnapshotMarker, SourcePosition, TableSchema, Value};
use crate::kafka::progress::{Progress, Ticket};
use crate::kafka::{Producer, BACKPRESSURE_PAUSE};
use crate::lsn::Lsn;
use crate::metrics::SourceMetrics;
use crate::pg::PgConnectOptions;
use crate::source::catalog::{describe_relation, relation_from_catalog};

/// How often progress is logged per table.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often the snapshot's own thread looks whether the workers are done.
const WORKERS_POLL: Duration = Duration::from_millis(50);
/// Rows between checks for a shutdown request or a failed worker.
const SHUTDOWN_CHECK_ROWS: u64 = 4096;

/// What the initial snapshot reads and where it publishes.
pub struct InitialSnapshot<'a> {
    /// Connection options of the captured database.
    pub options: &'a PgConnectOptions,
    /// The snapshot exported by CREATE_REPLICATION_SLOT.
    pub snapshot_name: &'a str,
    /// The slot's consistent point: the `source.lsn` of every snapshot row.
    pub consistent_point: Lsn,
    /// The captured tables, `(schema, table)`.
    pub tables: &'a [(String, String)],
    /// Column exclusions.
    pub filter: &'a TableFilter,
    /// Connections to read with.
    pub workers: usize,
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// Snapshot metrics.
    pub metrics: &'a SourceMetrics,
    /// Becomes true when shutdown is requested.
    pub shutdown: watch::Receiver<bool>,
}

/// One table being read.
struct TableJob {
    schema: Arc<TableSchema>,
    name: String,
    estimate: u64,
    rows: AtomicU64,
    counter: prometheus::IntCounter,
}

/// Everything the workers share.
struct Job<'a> {
    tables: Vec<TableJob>,
    queue: Mutex<VecDeque<(usize, ChunkRange)>>,
    markers: Markers<ChangeEvent>,
    encoder: &'a Encoder,
    producer: &'a Producer,
    progress: &'a Mutex<Progress>,
    ticket: Ticket,
    position: SourcePosition,
    shutdown: watch::Receiver<bool>,
    /// Set by the first worker that fails, so that the others stop too.
    failed: AtomicBool,
}

impl InitialSnapshot<'_> {
    /// Reads every table and returns once every row was acknowledged by the broker; returns
    /// the number of rows.
    pub async fn run(
        &self,
        encoder: &mut Encoder,
        producer: &mut Producer,
        progress: &Mutex<Progress>,
    ) -> Result<u64, SnapshotError> {
        let started = Instant::now();
        let clients = self.import_snapshot().await?;
        let (tables, chunks, txid) = self.plan(&clients[0], encoder, producer).await?;
        let chunk_counts: Vec<usize> = (0..tables.len())
            .map(|t| chunks.iter().filter(|(table, _)| *table == t).count())
            .collect();
        tracing::info!(
            tables = tables.len(),
            chunks = chunks.len(),
            workers = clients.len(),
            consistent_point = %self.consistent_point,
            "initial snapshot started"
        );
        let ticket = progress.lock().expect("progress lock").begin();
        let job = Job {
            tables,
            queue: Mutex::new(chunks.into()),
            markers: Markers::new(&chunk_counts),
            encoder,
            producer,
            progress,
            ticket,
            position: SourcePosition {
                commit_ts_us: now_us(),
                txid: Some(txid),
                lsn: Some(self.consistent_point),
                commit_lsn: None,
                snapshot: SnapshotMarker::True,
            },
            shutdown: self.shutdown.clone(),
            failed: AtomicBool::new(false),
        };
        tokio::task::block_in_place(|| job.run_workers(&clients, started))?;
        drain(job.producer, &self.shutdown).await?;
        for table in &job.tables {
            self.metrics.snapshot_completed(&table.name);
        }
        let rows: u64 = job
            .tables
            .iter()
            .map(|t| t.rows.load(Ordering::Relaxed))
            .sum();
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            rows,
            tables = job.tables.len(),
            seconds = format!("{seconds:.1}"),
            rows_per_second = (rows as f64 / seconds.max(1e-3)) as u64,
            "initial snapshot completed"
        );
        Ok(rows)
    }

    /// Opens the worker connections, each in a transaction on the exported snapshot.
    async fn import_snapshot(&self) -> Result<Vec<Client>, SnapshotError> {
        let mut clients = Vec::with_capacity(self.workers);
        for _ in 0..self.workers.max(1) {
            let client = self.options.connect_sql().await?;
            client
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                    self.snapshot_name.replace('\'', "''")
                ))
                .await
                .map_err(|source| SnapshotError::Sql {
                    what: "import the exported snapshot".into(),
                    source: source.into(),
                })?;
            clients.push(client);
        }
        Ok(clients)
    }

    /// Describes every table, registers its schemas, creates its topic and splits it into
    /// chunks, largest tables first, their chunks interleaved so that workers read several
    /// tables at once. Also returns the snapshot's transaction id horizon.
    async fn plan(
        &self,
        client: &Client,
        encoder: &mut Encoder,
        producer: &mut Producer,
    ) -> Result<(Vec<TableJob>, Vec<(usize, ChunkRange)>, u32), SnapshotError> {
        let mut planned = Vec::with_capacity(self.tables.len());
        for (schema, table) in self.tables {
            let relation = relation_from_catalog(client, schema, table).await?;
            let entry = describe_relation(client, &relation, self.filter).await?;
            encoder.register_table(&entry.schema).await?;
            producer.ensure_topic(&encoder.topic(&entry.schema)).await?;
            let size = table_size(client, &entry.schema).await?;
            let chunks = plan_chunks(client, &entry.schema, size, self.chunk_rows).await?;
            let name = entry.schema.qualified_name();
            let counter = self.metrics.snapshot_started(&name);
            planned.push((
                TableJob {
                    schema: entry.schema,
                    name,
                    estimate: size.rows,
                    rows: AtomicU64::new(0),
                    counter,
                },
                chunks,
            ));
        }
        planned.sort_by_key(|(table, _)| std::cmp::Reverse(table.estimate));
        let mut queues: Vec<VecDeque<ChunkRange>> = Vec::new();
        let mut tables = Vec::new();
        for (table, chunks) in planned {
            tables.push(table);
            queues.push(chunks.into());
        }
        let mut chunks = Vec::new();
        while queues.iter().any(|q| !q.is_empty()) {
            for (index, queue) in queues.iter_mut().enumerate() {
                if let Some(range) = queue.pop_front() {
                    chunks.push((index, range));
                }
            }
        }
        let xmin: i64 = client
            .query_one("SELECT txid_snapshot_xmin(txid_current_snapshot())", &[])
            .await
            .map_err(|source| SnapshotError::Sql {
                what: "read the snapshot's transaction horizon".into(),
                source: source.into(),
            })?
            .get(0);
        Ok((tables, chunks, xmin as u32))
    }
}

impl Job<'_> {
    /// Runs one worker per client, each on a thread of its own driving its reads on the
    /// runtime, logs progress meanwhile, and returns the first worker's error.
    fn run_workers(&self, clients: &[Client], started: Instant) -> Result<(), SnapshotError> {
        let runtime = tokio::runtime::Handle::current();
        std::thread::scope(|scope| {
            let workers: Vec<_> = clients
                .iter()
                .map(|client| scope.spawn(|| runtime.block_on(self.worker(client))))
                .collect();
            let mut logged = Instant::now();
            while !workers.iter().all(|worker| worker.is_finished()) {
                std::thread::sleep(WORKERS_POLL);
                if logged.elapsed() >= PROGRESS_LOG_INTERVAL {
                    self.log_progress(started.elapsed());
                    logged = Instant::now();
                }
            }
            // Workers that stopped because another failed report `Interrupted`: name the cause.
            let error = workers
                .into_iter()
                .filter_map(|worker| worker.join().expect("snapshot worker panicked").err())
                .min_by_key(|error| matches!(error, SnapshotError::Interrupted));
            error.map_or(Ok(()), Err)
        })
    }

    async fn worker(&self, client: &Client) -> Result<(), SnapshotError> {
        let result = self.read_chunks(client).await;
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }

    async fn read_chunks(&self, client: &Client) -> Result<(), SnapshotError> {
        while !self.failed.load(Ordering::Relaxed) {
            let next = self.queue.lock().expect("queue lock").pop_front();
            let Some((table, range)) = next else {
                return Ok(());
            };
            self.read_chunk(client, table, &range).await?;
        }
        Ok(())
    }

    async fn read_chunk(
        &self,
        client: &Client,
        table_index: usize,
        range: &ChunkRange,
    ) -> Result<(), SnapshotError> {
        let table = &self.tables[table_index];
        let sql_error = |source: tokio_postgres::Error| SnapshotError::Sql {
            what: format!("read {}", table.name),
            source: source.into(),
        };
        let sql = chunk_copy(&table.schema, range);
        tracing::debug!(%sql, "reading a snapshot chunk");
        let rows = client.copy_out(&sql).await.map_err(sql_error)?;
        pin_mut!(rows);
        let mut held: Option<ChangeEvent> = None;
        let mut count = 0u64;
        while let Some(row) = rows.next().await {
            let event = self.event(table, &row.map_err(sql_error)?)?;
            if let Some(previous) = held.replace(event) {
                self.publish(table, previous, self.markers.row(table_index))
                    .await?;
            }
            count += 1;
            if count.is_multiple_of(SHUTDOWN_CHECK_ROWS)
                && (*self.shutdown.borrow() || self.failed.load(Ordering::Relaxed))
            {
                return Err(SnapshotError::Interrupted);
            }
        }
        for (event, marker) in self.markers.chunk_done(table_index, held) {
            self.publish(table, event, marker).await?;
        }
        Ok(())
    }

    fn event(&self, table: &TableJob, row: &[u8]) -> Result<ChangeEvent, SnapshotError> {
        let columns = &table.schema.columns;
        let mut fields = Vec::with_capacity(columns.len());
        split_row(row, columns.len(), &mut fields).map_err(|error| SnapshotError::Row {
            table: table.name.clone(),
            message: error.to_string(),
        })?;
        let mut values = Vec::with_capacity(columns.len());
        for (field, column) in fields.iter().zip(columns) {
            values.push(match field {
                None => Value::Null,
                Some(text) => {
                    parse_text(&column.pg_type, text).map_err(|error| SnapshotError::Row {
                        table: table.name.clone(),
                        message: format!("column {}: {error}", column.name),
                    })?
                }
            });
        }
        Ok(ChangeEvent {
            table: Arc::clone(&table.schema),
            op: Op::Read,
            before: None,
            after: Some(values),
            source: self.position.clone(),
            transaction: None,
            key_change: None,
        })
    }

    async fn publish(
        &self,
        table: &TableJob,
        mut event: ChangeEvent,
        marker: SnapshotMarker,
    ) -> Result<(), SnapshotError> {
        event.source.snapshot = marker;
        let record = self.encoder.encode_change(&event, now_us())?;
        self.progress
            .lock()
            .expect("progress lock")
            .produced(self.ticket);
        while !self.producer.send_or_full(
            &record.topic,
            record.key.as_deref(),
            record.value.as_deref(),
            &[],
            self.ticket,
            &self.shutdown,
        )? {
            tokio::time::sleep(BACKPRESSURE_PAUSE).await;
        }
        table.rows.fetch_add(1, Ordering::Relaxed);
        table.counter.inc();
        Ok(())
    }

    fn log_progress(&self, elapsed: Duration) {
        for table in &self.tables {
            let rows = table.rows.load(Ordering::Relaxed);
            if rows == 0 || rows >= table.estimate && table.estimate > 0 {
                continue;
            }
            let rate = rows as f64 / elapsed.as_secs_f64().max(1e-3);
            let eta = table.estimate.saturating_sub(rows) as f64 / rate.max(1.0);
            tracing::info!(
                table = %table.name,
                rows,
                estimated_total = table.estimate,
                rows_per_second = rate as u64,
                eta_seconds = eta.round() as u64,
                "snapshot progress"
            );
        }
    }
}

/// Waits until the producer has nothing in flight: every record acknowledged, or an error.
pub async fn drain(
    producer: &Producer,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), SnapshotError> {
    loop {
        if let Some(error) = producer.take_fatal_error() {
            return Err(SnapshotError::Kafka(error));
        }
        if producer.queue_len() == 0 {
            return Ok(());
        }
        if *shutdown.borrow() {
            return Err(SnapshotError::Interrupted);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Publishes records without a position of their own (snapshot state) and waits until the
/// broker acknowledged them.
pub async fn publish_and_wait(
    producer: &Producer,
    progress: &Mutex<Progress>,
    records: &[(String, String, Option<Vec<u8>>)],
    shutdown: &watch::Receiver<bool>,
) -> Result<(), SnapshotError> {
    let ticket = progress.lock().expect("progress lock").begin();
    for (topic, key, value) in records {
        progress.lock().expect("progress lock").produced(ticket);
        while !producer.send_or_full(
            topic,
            Some(key.as_bytes()),
            value.as_deref(),
            &[],
            ticket,
            shutdown,
        )? {
            tokio::time::sleep(BACKPRESSURE_PAUSE).await;
        }
    }
    drain(producer, shutdown).await
}
