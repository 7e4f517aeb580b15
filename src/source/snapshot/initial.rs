//! The initial snapshot: `snapshot_workers` connections import the slot's exported snapshot
//! and read the captured tables chunk by chunk with `COPY … TO STDOUT`; every row becomes an
//! `op = r` event. Each worker runs on a thread of its own, so parsing and encoding use every
//! core, and the producer's bounded queue holds them back when the broker is slower (a worker
//! that cannot enqueue stops reading, and the server waits on its socket).
//!
//! Chunks are numbered in the order workers take them, and each is a checkpoint of its own
//! in the acknowledgement tracker, positioned at its number. So the tracker's confirmable
//! position is the count of leading chunks the broker acknowledged whole, and every couple
//! of seconds an `initial-progress/<slot>` record says where each table's unacknowledged
//! rows start. A source stopped in the middle resumes from there (see [`resume_points`]).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{pin_mut, StreamExt};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::copy_text::split_row;
use super::locks::{lock_shared, Handover};
use super::markers::Markers;
use super::plan::{chunk_copy, plan_chunks, table_size, ChunkRange};
use super::stages::{lap, ChunkClock, Stages};
use super::state::{initial_progress_key, InitialProgressRecord, Resume, TableProgress};
use super::SnapshotError;
use crate::config::TableFilter;
use crate::encode::{Encoder, Record};
use crate::event::types::parse_text;
use crate::event::{ChangeEvent, Op, SnapshotMarker, SourcePosition, TableSchema, Value};
use crate::kafka::progress::{Progress, Ticket};
use crate::kafka::{Producer, BACKPRESSURE_PAUSE};
use crate::lsn::Lsn;
use crate::metrics::{SnapshotCounters, SourceMetrics};
use crate::pg::PgConnectOptions;
use crate::source::catalog::{describe_relation, relation_from_catalog};

/// How often progress is logged per table.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often the snapshot's own thread looks whether the workers are done.
const WORKERS_POLL: Duration = Duration::from_millis(50);
/// Rows between checks for a shutdown request or a failed worker.
const SHUTDOWN_CHECK_ROWS: u64 = 4096;
/// How often the snapshot's progress record is written when chunks were acknowledged.
const PROGRESS_RECORD_INTERVAL: Duration = Duration::from_secs(2);

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
    /// The slot, named in the progress records.
    pub slot: &'a str,
    /// Where the progress records go: `__pgcdc-offsets.<prefix>`.
    pub offsets_topic: &'a str,
}

/// One table being read.
struct TableJob {
    schema: Arc<TableSchema>,
    name: String,
    estimate: u64,
    rows: AtomicU64,
    bytes: AtomicU64,
    counters: SnapshotCounters,
}

/// Everything the workers share.
struct Job<'a> {
    tables: Vec<TableJob>,
    /// Every chunk, in the order the workers take them: a chunk's place is its number.
    plan: Vec<(usize, ChunkRange)>,
    /// The number of the next chunk to take.
    next: Mutex<usize>,
    /// Rows each finished chunk published, by chunk number.
    chunk_rows: Vec<AtomicU64>,
    /// Rows are held with the ticket of the chunk they were read in.
    markers: Markers<(ChangeEvent, Ticket)>,
    encoder: &'a Encoder,
    producer: &'a Producer,
    progress: &'a Mutex<Progress>,
    position: SourcePosition,
    shutdown: watch::Receiver<bool>,
    /// Set by the first worker that fails, so that the others stop too.
    failed: AtomicBool,
    /// Chunks the other workers could not lock, for the first worker.
    handover: Handover,
    slot: &'a str,
    offsets_topic: &'a str,
    /// Where the workers' time goes.
    stages: Stages,
}

/// How long a question about a topic may take before the snapshot fails (and is retried).
const TOPIC_QUERY: Duration = Duration::from_secs(30);

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
        self.clear_keyless(&tables, encoder, producer, progress)
            .await?;
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
        let job = Job {
            tables,
            chunk_rows: chunks.iter().map(|_| AtomicU64::new(0)).collect(),
            plan: chunks,
            next: Mutex::new(0),
            markers: Markers::new(&chunk_counts),
            encoder,
            producer,
            progress,
            position: SourcePosition {
                commit_ts_us: now_us(),
                txid: Some(txid),
                lsn: Some(self.consistent_point),
                previous_commit: None,
                snapshot: SnapshotMarker::True,
            },
            shutdown: self.shutdown.clone(),
            failed: AtomicBool::new(false),
            handover: Handover::new(clients.len() - 1),
            slot: self.slot,
            offsets_topic: self.offsets_topic,
            stages: Stages::default(),
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
        let stages = &job.stages;
        tracing::info!(
            rows,
            tables = job.tables.len(),
            seconds = format!("{seconds:.1}"),
            rows_per_second = (rows as f64 / seconds.max(1e-3)) as u64,
            workers = self.workers,
            read_seconds = Stages::seconds(&stages.read),
            encode_seconds = Stages::seconds(&stages.encode),
            produce_seconds = Stages::seconds(&stages.produce),
            "initial snapshot completed"
        );
        Ok(rows)
    }

    /// Sends a truncate event for each table without a key whose topic already holds records
    /// (an earlier snapshot was interrupted, or the slot was lost after one), and waits until
    /// the broker has them. A consumer cannot match such a table's rows to the ones sent
    /// before, so without it a consumer that applies truncates (cdc-sink does) would hold them
    /// twice; a first snapshot sends none, as Debezium does.
    /// Records with a null key share one partition, so the truncate precedes the rows. It
    /// carries no LSN: it belongs to no transaction, and a sink's replay check never skips it.
    async fn clear_keyless(
        &self,
        tables: &[TableJob],
        encoder: &Encoder,
        producer: &Producer,
        progress: &Mutex<Progress>,
    ) -> Result<(), SnapshotError> {
        // The truncates vouch for no chunk: their ticket is aborted once they are delivered,
        // so that it never holds back the chunks' checkpoints (the snapshot's progress records).
        let ticket = progress.lock().expect("progress lock").begin();
        for table in tables.iter().filter(|t| t.schema.key.is_empty()) {
            let topic = encoder.topic(&table.schema);
            let sent_before =
                tokio::task::block_in_place(|| producer.topic_has_records(&topic, TOPIC_QUERY))?;
            if !sent_before {
                continue;
            }
            let event = ChangeEvent {
                table: Arc::clone(&table.schema),
                op: Op::Truncate,
                before: None,
                after: None,
                source: SourcePosition {
                    commit_ts_us: now_us(),
                    txid: None,
                    lsn: None,
                    previous_commit: None,
                    snapshot: SnapshotMarker::True,
                },
                transaction: None,
                key_change: None,
            };
            let record = encoder.encode_change(&event, now_us())?;
            progress.lock().expect("progress lock").produced(ticket);
            enqueue(producer, &record, ticket, &self.shutdown).await?;
            tracing::info!(table = %table.name, "a table without a key is read again: a truncate event goes ahead of its rows, so that consumers replace them rather than hold them twice");
        }
        let drained = drain(producer, &self.shutdown).await;
        progress.lock().expect("progress lock").abort(ticket);
        drained
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
            lock_shared(client, &entry.schema).await?;
            encoder.register_table(&entry.schema).await?;
            producer.ensure_topic(&encoder.topic(&entry.schema)).await?;
            let size = table_size(client, &entry.schema).await?;
            let chunks = plan_chunks(client, &entry.schema, size, self.chunk_rows).await?;
            let name = entry.schema.qualified_name();
            let counters = self.metrics.snapshot_started(&name, size.rows);
            planned.push((
                TableJob {
                    schema: entry.schema,
                    name,
                    estimate: size.rows,
                    rows: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    counters,
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
    /// runtime, logs and records progress meanwhile, and returns the first worker's error.
    fn run_workers(&self, clients: &[Client], started: Instant) -> Result<(), SnapshotError> {
        let runtime = &tokio::runtime::Handle::current();
        std::thread::scope(|scope| {
            let workers: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(index, client)| {
                    scope.spawn(move || runtime.block_on(self.worker(client, index)))
                })
                .collect();
            let (mut logged, mut recorded) = (Instant::now(), Instant::now());
            let mut recorded_chunks = 0;
            while !workers.iter().all(|worker| worker.is_finished()) {
                std::thread::sleep(WORKERS_POLL);
                if logged.elapsed() >= PROGRESS_LOG_INTERVAL {
                    self.log_progress(started.elapsed());
                    logged = Instant::now();
                }
                if recorded.elapsed() >= PROGRESS_RECORD_INTERVAL {
                    recorded_chunks = self.record_progress(recorded_chunks);
                    recorded = Instant::now();
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

    /// The first worker (`index` 0, the one that planned and locked every table) or another.
    async fn worker(&self, client: &Client, index: usize) -> Result<(), SnapshotError> {
        let result = if index == 0 {
            self.read_chunks_holding_locks(client).await
        } else {
            let result = self.read_chunks(client).await;
            self.handover.helper_finished();
            result
        };
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }

    /// The first worker: chunks handed over first, then the next ones, until the other
    /// workers ended and handed over nothing more.
    async fn read_chunks_holding_locks(&self, client: &Client) -> Result<(), SnapshotError> {
        while !self.failed.load(Ordering::Relaxed) {
            if let Some((number, ticket)) = self.handover.take().or_else(|| self.take_chunk()) {
                self.read_chunk(client, number, ticket).await?;
            } else if self.handover.settled() {
                return Ok(());
            } else {
                tokio::time::sleep(WORKERS_POLL).await;
            }
        }
        Ok(())
    }

    /// Another worker: the next chunks, each only when its table's lock comes without
    /// waiting (see [`super::locks`]).
    async fn read_chunks(&self, client: &Client) -> Result<(), SnapshotError> {
        let mut locked = HashSet::new();
        while !self.failed.load(Ordering::Relaxed) {
            let Some((number, ticket)) = self.take_chunk() else {
                return Ok(());
            };
            let table = self.plan[number].0;
            let lockable = (table, self.tables[table].schema.as_ref());
            if self
                .handover
                .may_read(client, &mut locked, lockable, (number, ticket))
                .await?
            {
                self.read_chunk(client, number, ticket).await?;
            }
        }
        Ok(())
    }

    /// The next chunk's number and its checkpoint, begun under the same lock so that
    /// checkpoints follow chunk numbers.
    fn take_chunk(&self) -> Option<(usize, Ticket)> {
        let mut next = self.next.lock().expect("chunk lock");
        if *next == self.plan.len() {
            return None;
        }
        let number = *next;
        *next += 1;
        Some((number, self.progress.lock().expect("progress lock").begin()))
    }

    async fn read_chunk(
        &self,
        client: &Client,
        number: usize,
        ticket: Ticket,
    ) -> Result<(), SnapshotError> {
        let (table_index, range) = &self.plan[number];
        let table_index = *table_index;
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
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut clock = ChunkClock::default();
        let mut since = Instant::now();
        while let Some(row) = rows.next().await {
            let arrived = lap(&mut clock.read, since);
            let row = row.map_err(sql_error)?;
            bytes += row.len() as u64;
            let event = self.event(table, &row)?;
            since = lap(&mut clock.encode, arrived);
            if let Some(previous) = held.replace(event) {
                self.produced(ticket);
                let marker = self.markers.row(table_index);
                since = self
                    .send(table, previous, marker, ticket, &mut clock)
                    .await?;
            }
            count += 1;
            if count.is_multiple_of(SHUTDOWN_CHECK_ROWS)
                && (*self.shutdown.borrow() || self.failed.load(Ordering::Relaxed))
            {
                return Err(SnapshotError::Interrupted);
            }
        }
        // The chunk's last row may be sent with a later chunk of its table (its marker is
        // only known then); it counts against this chunk, which stays unacknowledged until
        // that row is.
        if held.is_some() {
            self.produced(ticket);
        }
        let held = held.map(|event| (event, ticket));
        for ((event, owner), marker) in self.markers.chunk_done(table_index, held) {
            self.send(table, event, marker, owner, &mut clock).await?;
        }
        self.chunk_rows[number].store(count, Ordering::Relaxed);
        self.stages.add(&clock);
        table.bytes.fetch_add(bytes, Ordering::Relaxed);
        table.counters.bytes.inc_by(bytes);
        self.progress
            .lock()
            .expect("progress lock")
            .commit(ticket, Lsn(number as u64 + 1));
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

    /// Counts one more record against a chunk's checkpoint, before the chunk is committed.
    fn produced(&self, ticket: Ticket) {
        self.progress
            .lock()
            .expect("progress lock")
            .produced(ticket);
    }

    /// Encodes and enqueues a row already counted against the checkpoint `ticket`; returns
    /// when it was enqueued.
    async fn send(
        &self,
        table: &TableJob,
        mut event: ChangeEvent,
        marker: SnapshotMarker,
        ticket: Ticket,
        clock: &mut ChunkClock,
    ) -> Result<Instant, SnapshotError> {
        event.source.snapshot = marker;
        let started = Instant::now();
        let record = self.encoder.encode_change(&event, now_us())?;
        let encoded = lap(&mut clock.encode, started);
        enqueue(self.producer, &record, ticket, &self.shutdown).await?;
        let enqueued = lap(&mut clock.produce, encoded);
        table.rows.fetch_add(1, Ordering::Relaxed);
        table.counters.rows.inc();
        Ok(enqueued)
    }

    /// Writes where each table's unacknowledged rows start when more chunks were acknowledged
    /// than `recorded`; returns the chunks the record written (or the previous one) covers.
    /// Nothing waits for the record: losing it only means reading more again.
    fn record_progress(&self, recorded: usize) -> usize {
        let acknowledged = {
            let progress = self.progress.lock().expect("progress lock");
            usize::try_from(progress.confirmable().0).unwrap_or(usize::MAX)
        };
        if acknowledged <= recorded {
            return recorded;
        }
        let keyed: Vec<bool> = self
            .tables
            .iter()
            .map(|table| !table.schema.key.is_empty())
            .collect();
        let mut rows = vec![0u64; self.tables.len()];
        for (number, (table, _)) in self.plan.iter().enumerate().take(acknowledged) {
            rows[*table] += self.chunk_rows[number].load(Ordering::Relaxed);
        }
        let record = InitialProgressRecord {
            slot: self.slot.to_owned(),
            consistent_point: self.position.lsn.unwrap_or(Lsn::ZERO).to_string(),
            tables: resume_points(&self.plan, &keyed, acknowledged)
                .into_iter()
                .zip(&self.tables)
                .zip(rows)
                .map(|((resume, table), rows)| TableProgress {
                    table: table.name.clone(),
                    rows,
                    resume,
                })
                .collect(),
        };
        let value = serde_json::to_vec(&record).expect("a record serializes");
        let key = initial_progress_key(self.slot);
        let ticket = self.progress.lock().expect("progress lock").begin();
        self.produced(ticket);
        // The workers keep the producer's queue full: wait for room as they do, for a while.
        let deadline = Instant::now() + PROGRESS_RECORD_INTERVAL;
        let sent = loop {
            match self.producer.send_or_full(
                self.offsets_topic,
                Some(key.as_bytes()),
                Some(&value),
                &[],
                ticket,
                &self.shutdown,
            ) {
                Ok(false) if Instant::now() < deadline && !self.failed.load(Ordering::Relaxed) => {
                    std::thread::sleep(BACKPRESSURE_PAUSE / 2);
                }
                outcome => break outcome,
            }
        };
        // The record's acknowledgement moves no checkpoint.
        self.progress.lock().expect("progress lock").abort(ticket);
        match sent {
            Ok(true) => {
                tracing::debug!(chunks = acknowledged, "recorded the snapshot's progress");
                acknowledged
            }
            // Still no room, or a failing producer (the workers see the same): try again later.
            Ok(false) | Err(_) => recorded,
        }
    }

    fn log_progress(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let (mut total_rows, mut total_bytes, mut total_estimate) = (0, 0, 0);
        for table in &self.tables {
            let rows = table.rows.load(Ordering::Relaxed);
            let bytes = table.bytes.load(Ordering::Relaxed);
            total_rows += rows;
            total_bytes += bytes;
            total_estimate += table.estimate.max(rows);
            if rows == 0 || rows >= table.estimate && table.estimate > 0 {
                continue;
            }
            let rate = rows as f64 / seconds;
            tracing::info!(
                table = %table.name,
                rows,
                estimated_total = table.estimate,
                megabytes = format!("{:.1}", bytes as f64 / 1e6),
                rows_per_second = rate as u64,
                eta_seconds = eta(rows, table.estimate, rate),
                "snapshot progress"
            );
        }
        let rate = total_rows as f64 / seconds;
        tracing::info!(
            tables = self.tables.len(),
            rows = total_rows,
            estimated_total = total_estimate,
            megabytes = format!("{:.1}", total_bytes as f64 / 1e6),
            rows_per_second = rate as u64,
            megabytes_per_second = format!("{:.1}", total_bytes as f64 / 1e6 / seconds),
            eta_seconds = eta(total_rows, total_estimate, rate),
            "snapshot progress, all tables"
        );
    }
}

/// Seconds until `estimate` rows are read at `rate` rows per second.
fn eta(rows: u64, estimate: u64, rate: f64) -> u64 {
    (estimate.saturating_sub(rows) as f64 / rate.max(1.0)).round() as u64
}

/// Where each table's unacknowledged rows start once the first `acknowledged` chunks of
/// `plan` were acknowledged whole; `keyed[t]` says whether table `t` can be read by key.
/// A table's chunks follow its key order in the plan, so its acknowledged chunks are a key
/// range from its first row and the rest starts at its first unacknowledged chunk.
pub fn resume_points(
    plan: &[(usize, ChunkRange)],
    keyed: &[bool],
    acknowledged: usize,
) -> Vec<Resume> {
    let mut points = vec![Resume::Done; keyed.len()];
    let mut seen = vec![false; keyed.len()];
    for (table, range) in &plan[acknowledged.min(plan.len())..] {
        if std::mem::replace(&mut seen[*table], true) {
            continue;
        }
        points[*table] = match range {
            _ if !keyed[*table] => Resume::StartOver,
            ChunkRange::All => Resume::FromKey(None),
            ChunkRange::Keys { from, .. } => Resume::FromKey(from.clone()),
            ChunkRange::Blocks { .. } => Resume::StartOver,
        };
    }
    points
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

/// Enqueues a record counted against `ticket`, pausing while the producer's queue is full.
async fn enqueue(
    producer: &Producer,
    record: &Record,
    ticket: Ticket,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), SnapshotError> {
    while !producer.send_or_full(
        &record.topic,
        record.key.as_deref(),
        record.value.as_deref(),
        &[],
        ticket,
        shutdown,
    )? {
        tokio::time::sleep(BACKPRESSURE_PAUSE).await;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(from: Option<&str>, to: Option<&str>) -> ChunkRange {
        let key = |k: Option<&str>| k.map(|k| vec![k.to_owned()]);
        ChunkRange::Keys {
            from: key(from),
            to: key(to),
        }
    }

    fn from(key: Option<&str>) -> Resume {
        Resume::FromKey(key.map(|k| vec![k.to_owned()]))
    }

    /// Table 0 in three key chunks, table 1 whole, table 2 (keyless) in two block ranges,
    /// interleaved as the planner does.
    fn plan() -> Vec<(usize, ChunkRange)> {
        vec![
            (0, keys(None, Some("10"))),
            (1, ChunkRange::All),
            (
                2,
                ChunkRange::Blocks {
                    from: 0,
                    to: Some(8),
                },
            ),
            (0, keys(Some("10"), Some("20"))),
            (2, ChunkRange::Blocks { from: 8, to: None }),
            (0, keys(Some("20"), None)),
        ]
    }

    #[test]
    fn each_table_resumes_at_its_first_unacknowledged_chunk() {
        let keyed = [true, true, false];
        let cases = [
            (0, vec![from(None), from(None), Resume::StartOver]),
            (1, vec![from(Some("10")), from(None), Resume::StartOver]),
            (2, vec![from(Some("10")), Resume::Done, Resume::StartOver]),
            (4, vec![from(Some("20")), Resume::Done, Resume::StartOver]),
            (5, vec![from(Some("20")), Resume::Done, Resume::Done]),
            (6, vec![Resume::Done, Resume::Done, Resume::Done]),
            (9, vec![Resume::Done, Resume::Done, Resume::Done]),
        ];
        for (acknowledged, expected) in cases {
            assert_eq!(
                resume_points(&plan(), &keyed, acknowledged),
                expected,
                "{acknowledged} chunks acknowledged"
            );
        }
    }

    #[test]
    fn a_keyless_table_read_whole_starts_over() {
        let plan = vec![(0, ChunkRange::All)];
        assert_eq!(resume_points(&plan, &[false], 0), vec![Resume::StartOver]);
        assert_eq!(resume_points(&plan, &[false], 1), vec![Resume::Done]);
    }

    #[test]
    fn the_remaining_estimate_is_read_at_the_current_rate() {
        assert_eq!(eta(100, 1_100, 100.0), 10);
        assert_eq!(eta(2_000, 1_000, 100.0), 0, "past the estimate");
        assert_eq!(eta(0, 1_000, 0.0), 1_000, "no rate yet counts as one row/s");
    }
}
