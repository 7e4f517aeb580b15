//! The source: reads a pgoutput slot and publishes change events.
//!
//! ```text
//! replication ──XLogData──▶ pgoutput ──Message──▶ relations ──ChangeEvent──▶ encode ──▶ kafka::Producer
//!      ▲                                                                                   │ delivery acks
//!      └───────────── flushed LSN ◀────────── progress (acknowledged-LSN tracker) ◀───────┘
//! ```
//!
//! [`run`] prepares the publication, connects to the broker and registry once (failing fast
//! with a clear error), then runs streaming sessions. A session that ends with a transient
//! error (connection lost, PostgreSQL restarted, a record the broker refused) is followed by a
//! new one after a backoff; it resumes from the slot's confirmed LSN with a fresh producer and
//! progress tracker, so nothing unacknowledged is ever confirmed and nothing is skipped.

pub mod catalog;
pub mod check;
pub mod ddl;
pub mod discovery;
pub mod messages;
pub mod pgoutput;
pub mod provision;
pub mod relations;
pub mod replication;
pub mod session;
pub mod setup;
pub mod snapshot;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{SnapshotMode, SourceConfig, TableFilter};
use crate::encode::{EncodeError, Encoder, EncoderSettings, RegistryError};
use crate::kafka::progress::Progress;
use crate::kafka::{
    ensure_topic, read_latest, KafkaError, Producer, ProducerSettings, SendError, TopicSettings,
};
use crate::lsn::Lsn;
use crate::metrics::SourceMetrics;
use crate::pg::{PgConnectError, PgConnectOptions};
use catalog::CapturedTable;
use discovery::DiscoverySettings;
use replication::SnapshotAction;
use replication::{ReplicationClient, ReplicationError};
use session::{Session, SessionSettings, HEARTBEAT_PREFIX};
use setup::SetupError;
use snapshot::incremental::{Incremental, IncrementalSettings};
use snapshot::initial::{publish_and_wait, InitialSnapshot};
use snapshot::signal::execute_snapshot_data;
use snapshot::state::{
    incremental_key, initial_key, initial_progress_key, offsets_topic, InitialRecord, SnapshotState,
};
use snapshot::{SlotCondition, SnapshotError, StartAction};

/// How long a shutdown waits for the broker to acknowledge what is queued.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// First and longest pause between reconnection attempts.
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that streamed this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
/// At start-up, transient errors (a slot still held by a killed predecessor) are retried
/// this long before the source gives up.
const STARTUP_RETRY_WINDOW: Duration = Duration::from_secs(60);
/// How long reading the offsets topic back may take.
const STATE_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration is unusable; the message names the key.
    #[error("{0}")]
    Config(String),
    /// A prerequisite is missing or setting it up failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// An ordinary SQL connection failed.
    #[error(transparent)]
    Connect(#[from] PgConnectError),
    /// The replication connection failed.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// A catalog lookup failed.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// A pgoutput message could not be decoded.
    #[error("undecodable pgoutput message: {0}")]
    Decode(#[from] pgoutput::DecodeError),
    /// A row message could not become events.
    #[error(transparent)]
    Event(#[from] relations::EventError),
    /// A snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Encoding or schema registration failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Creating the producer or a topic, or reaching the broker, failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// librdkafka refused a record.
    #[error("could not enqueue a record: {0}")]
    Produce(SendError),
    /// The broker did not take a record: the session restarts from the slot.
    #[error("delivery failed: {0}")]
    Delivery(KafkaError),
    /// The server ended the replication stream.
    #[error("the server ended the replication stream")]
    StreamEnded,
    /// A message that belongs inside a transaction came outside one.
    #[error("protocol error: {0} outside a transaction")]
    OutsideTransaction(&'static str),
    /// A second Begin arrived before the first transaction's Commit.
    #[error("protocol error: Begin inside an open transaction")]
    NestedBegin,
    /// Shutdown was requested while waiting for room in the producer queue.
    #[error("shutdown requested while waiting for the broker")]
    Interrupted,
    /// Prerequisite checks failed; the lines say what to fix.
    #[error("prerequisites missing (`cdc-source check` lists every check):\n{0}")]
    Prerequisites(String),
    /// Streamed in-progress transactions arrived although pgcdc did not ask for them.
    #[error(
        "protocol error: the server streamed an in-progress transaction pgcdc did not ask for"
    )]
    UnexpectedStreaming,
}

impl From<SendError> for SourceError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Undelivered(error) => SourceError::Delivery(error),
            SendError::Interrupted => SourceError::Interrupted,
            other => SourceError::Produce(other),
        }
    }
}

impl SourceError {
    /// Whether a new session may succeed where this one failed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Replication(error) => error.is_transient(),
            SourceError::Setup(SetupError::Replication { source, .. }) => source.is_transient(),
            SourceError::Setup(SetupError::Sql { source, .. }) => source.is_closed(),
            SourceError::Catalog(catalog::CatalogError::Query { source, .. }) => source.is_closed(),
            SourceError::Connect(_) | SourceError::Delivery(_) | SourceError::StreamEnded => true,
            SourceError::Kafka(error) => matches!(
                error,
                KafkaError::Unreachable { .. } | KafkaError::CreateTopic { .. }
            ),
            SourceError::Produce(SendError::Kafka(_)) => true,
            SourceError::Snapshot(error) => error.is_transient(),
            SourceError::Encode(EncodeError::Registry(error)) => matches!(
                error,
                RegistryError::Unreachable { .. } | RegistryError::Status { status: 500.., .. }
            ),
            _ => false,
        }
    }

    /// Whether the configuration is at fault (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, SourceError::Config(_))
    }

    /// Maps a failed catalog statement to an error that says what was being done.
    pub(crate) fn sql(what: &str) -> impl FnOnce(tokio_postgres::Error) -> SourceError + '_ {
        move |source| {
            SourceError::Setup(SetupError::Sql {
                what: what.to_owned(),
                source: source.into(),
            })
        }
    }

    /// Whether a prerequisite is missing (exit code 3).
    pub fn is_prerequisite(&self) -> bool {
        matches!(
            self,
            SourceError::Prerequisites(_) | SourceError::Setup(SetupError::Prerequisite(_))
        )
    }
}

/// What every verb derives from the configuration before it connects.
pub(crate) struct Prepared {
    pub(crate) options: PgConnectOptions,
    pub(crate) filter: TableFilter,
    pub(crate) signal_table: Option<(String, String)>,
}

impl Prepared {
    pub(crate) fn from_config(config: &SourceConfig) -> Result<Prepared, SourceError> {
        let mut options = PgConnectOptions::parse(&config.postgres.url)
            .map_err(|e| SourceError::Config(format!("postgres.url: {e}")))?;
        if let Some(password) = config
            .postgres
            .password()
            .map_err(|e| SourceError::Config(e.to_string()))?
        {
            options = options.with_password(password);
        }
        let filter =
            TableFilter::new(&config.capture).map_err(|e| SourceError::Config(e.to_string()))?;
        let signal_table = config.capture.signal_table.as_deref().and_then(|name| {
            name.split_once('.')
                .map(|(schema, table)| (schema.to_owned(), table.to_owned()))
        });
        Ok(Prepared {
            options,
            filter,
            signal_table,
        })
    }
}

/// Everything a session needs that outlives sessions.
struct Runner {
    config: SourceConfig,
    options: PgConnectOptions,
    filter: TableFilter,
    tables: Vec<(String, String)>,
    /// The captured tables as the catalog showed them at start.
    catalog: Vec<CapturedTable>,
    /// The captured tables as table discovery last recorded them, read at start.
    recorded: Option<Vec<CapturedTable>>,
    signal_table: Option<(String, String)>,
    encoder: Encoder,
    metrics: SourceMetrics,
    shutdown: watch::Receiver<bool>,
    /// Whether DDL capture is on (its messages become schema change events).
    ddl: bool,
}

/// Runs the source until `shutdown` becomes true (exit 0) or an error it cannot recover from.
pub async fn run(
    config: SourceConfig,
    metrics: SourceMetrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    if config.capture.streaming {
        return Err(SourceError::Config(
            "capture.streaming = true is not supported by this version: set it to false".into(),
        ));
    }
    let Prepared {
        options,
        filter,
        signal_table,
    } = Prepared::from_config(&config)?;
    let report = check::check(&config, check::Purpose::Start).await?;
    for line in report
        .lines
        .iter()
        .filter(|l| l.verdict == check::Verdict::Warn)
    {
        tracing::warn!("{}: {}", line.name, line.message);
    }
    if report.failed() {
        return Err(SourceError::Prerequisites(report.failures()));
    }
    let mut sql = options.connect_sql().await?;
    let ddl = ddl::prepare(&mut sql, config.capture.ddl).await?;
    if let Some(signal) = &signal_table {
        setup::ensure_signal_table(&sql, signal).await?;
    }
    let tables = setup::ensure_publication(
        &sql,
        &config.capture.publication,
        &filter,
        signal_table.as_ref(),
    )
    .await?;
    tracing::info!(tables = tables.len(), publication = %config.capture.publication, "captured tables");
    let catalog = catalog::captured_relations(&sql, &filter).await?;
    drop(sql);
    let encoder = Encoder::new(EncoderSettings {
        topic_prefix: config.kafka.topic_prefix.clone(),
        format: config.kafka.format,
        registry: config
            .schema_registry
            .access()
            .map_err(|e| SourceError::Config(e.to_string()))?,
        database: options.dbname.clone(),
    })
    .await?;
    if let Some(interval) = config.capture.heartbeat_interval {
        tokio::spawn(heartbeat(options.clone(), interval, shutdown.clone()));
    }
    let mut runner = Runner {
        config,
        options,
        filter,
        tables,
        catalog,
        recorded: None,
        signal_table,
        encoder,
        metrics,
        shutdown,
        ddl,
    };
    if !runner.start_with_retries().await? {
        return Ok(());
    }
    if let Some(interval) = runner.config.capture.discovery_interval {
        let settings = DiscoverySettings {
            options: runner.options.clone(),
            filter: runner.filter.clone(),
            publication: runner.config.capture.publication.clone(),
            slot: runner.config.capture.slot.clone(),
            interval,
        };
        let recorded = runner.recorded.is_some();
        let known = runner
            .recorded
            .take()
            .unwrap_or_else(|| std::mem::take(&mut runner.catalog));
        tokio::spawn(discovery::run(
            settings,
            known,
            recorded,
            runner.shutdown.clone(),
        ));
    }
    runner.stream_with_retries().await
}

fn producer_for(
    config: &SourceConfig,
    progress: Arc<Mutex<Progress>>,
) -> Result<Producer, KafkaError> {
    let settings = ProducerSettings {
        brokers: config.kafka.brokers.clone(),
        options: config.kafka.options.clone(),
        topic: TopicSettings {
            partitions: config.kafka.topic.partitions,
            replication_factor: config.kafka.topic.replication_factor,
            cleanup_policy: config.kafka.topic.cleanup_policy.clone(),
        },
    };
    Producer::new(&settings, progress)
}

impl Runner {
    /// Takes the snapshot the mode asks for; false when the source should stop afterwards.
    async fn start_with_retries(&mut self) -> Result<bool, SourceError> {
        let started = Instant::now();
        let mut backoff = BACKOFF_INITIAL;
        loop {
            let error = match self.start().await {
                Ok(stream) => return Ok(stream),
                Err(SourceError::Snapshot(SnapshotError::Interrupted)) => return Ok(false),
                Err(error) => error,
            };
            if !error.is_transient()
                || started.elapsed() >= STARTUP_RETRY_WINDOW
                || *self.shutdown.borrow()
            {
                return Err(error);
            }
            self.metrics.count_error(error_kind(&error));
            tracing::warn!(%error, retry_in = ?backoff, "start-up interrupted; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn start(&mut self) -> Result<bool, SourceError> {
        let state = self.load_state().await?;
        self.recorded.clone_from(&state.tables);
        let slot = self.config.capture.slot.clone();
        let sql = self.options.connect_sql().await?;
        let condition = setup::slot_condition(&sql, &slot).await?;
        let completed = state.initial.is_some();
        match snapshot::start_action(self.config.capture.snapshot, condition, completed) {
            StartAction::Stop => {
                tracing::info!(
                    slot,
                    "initial_only: the initial snapshot was completed before; nothing to do"
                );
                Ok(false)
            }
            StartAction::Stream => {
                if completed && condition == SlotCondition::Missing {
                    tracing::warn!(slot, "the slot is gone since the initial snapshot: a new one streams from now on and changes made meanwhile are missed; set capture.snapshot = \"when_needed\" to snapshot again in this case");
                }
                // Table discovery, when it recorded the tables before, finds those added to
                // capture.tables meanwhile itself.
                let discovers = self.config.capture.discovery_interval.is_some();
                if completed && !(discovers && state.tables.is_some()) {
                    self.request_new_tables(&sql, &state).await?;
                }
                Ok(true)
            }
            StartAction::Snapshot {
                drop_slot,
                then_stream,
            } => {
                let resumable = then_stream
                    && condition == SlotCondition::Usable
                    && self.config.capture.snapshot != SnapshotMode::Always;
                if resumable && self.resume_initial(&sql, &state).await? {
                    return Ok(true);
                }
                if condition == SlotCondition::Lost {
                    tracing::warn!(slot, "replication slot {slot} was invalidated (wal_status = lost): its WAL is gone and the changes since its confirmed position were missed; dropping it and taking a new snapshot (capture.snapshot = \"{}\")", self.config.capture.snapshot.name());
                }
                if drop_slot {
                    setup::drop_slot(&sql, &slot).await?;
                }
                self.initial_snapshot(&state).await?;
                if !then_stream {
                    tracing::info!(slot, "initial_only: snapshot complete; the slot keeps WAL from its consistent point until a streaming run consumes it or it is dropped");
                }
                Ok(then_stream)
            }
        }
    }

    /// The snapshot state of this slot, from `__pgcdc-offsets.<prefix>` (created if missing).
    async fn load_state(&self) -> Result<SnapshotState, SourceError> {
        let kafka = &self.config.kafka;
        let topic = offsets_topic(&kafka.topic_prefix);
        let settings = TopicSettings {
            partitions: Some(1),
            replication_factor: kafka.topic.replication_factor,
            cleanup_policy: Some("compact".to_owned()),
        };
        ensure_topic(&kafka.brokers, &kafka.options, &topic, &settings).await?;
        let (brokers, options) = (kafka.brokers.clone(), kafka.options.clone());
        let records = tokio::task::spawn_blocking(move || {
            read_latest(&brokers, &options, &topic, STATE_READ_TIMEOUT)
        })
        .await
        .expect("offsets reader thread")?;
        Ok(SnapshotState::from_records(
            &self.config.capture.slot,
            &records,
        ))
    }

    /// Creates the slot with an exported snapshot, reads every captured table at its
    /// consistent point and records the completion once the broker has every row.
    async fn initial_snapshot(&mut self, state: &SnapshotState) -> Result<(), SourceError> {
        let capture = &self.config.capture;
        let mut replication = ReplicationClient::connect(&self.options).await?;
        let created = replication
            .create_logical_slot(&capture.slot, false, SnapshotAction::Export)
            .await
            .map_err(|source| SetupError::Replication {
                what: format!("create replication slot {}", capture.slot),
                source,
            })?;
        let snapshot_name = created
            .snapshot_name
            .ok_or(SnapshotError::NoSnapshotExported)?;
        tracing::info!(slot = %capture.slot, consistent_point = %created.consistent_point, "created replication slot with an exported snapshot");
        let progress = Arc::new(Mutex::new(Progress::new(Lsn::ZERO)));
        let mut producer = producer_for(&self.config, Arc::clone(&progress))?;
        let snapshot = InitialSnapshot {
            options: &self.options,
            snapshot_name: &snapshot_name,
            consistent_point: created.consistent_point,
            tables: &self.tables,
            filter: &self.filter,
            workers: capture.snapshot_workers,
            chunk_rows: capture.snapshot_chunk_size,
            metrics: &self.metrics,
            shutdown: self.shutdown.clone(),
            slot: &capture.slot,
            offsets_topic: &offsets_topic(&self.config.kafka.topic_prefix),
        };
        let rows = snapshot
            .run(&mut self.encoder, &mut producer, &progress)
            .await?;
        let topic = offsets_topic(&self.config.kafka.topic_prefix);
        let record = InitialRecord {
            slot: capture.slot.clone(),
            consistent_point: created.consistent_point.to_string(),
            tables: self
                .tables
                .iter()
                .map(|(s, t)| format!("{s}.{t}"))
                .collect(),
            rows,
        };
        let mut records = vec![
            (
                topic.clone(),
                initial_key(&capture.slot),
                Some(serde_json::to_vec(&record).expect("a record serializes")),
            ),
            (topic.clone(), initial_progress_key(&capture.slot), None),
        ];
        // A new initial snapshot supersedes the incremental ones of the old slot.
        for id in state.incremental.keys() {
            records.push((topic.clone(), incremental_key(&capture.slot, id), None));
        }
        publish_and_wait(&producer, &progress, &records, &self.shutdown).await?;
        // The exported snapshot lives until the replication connection moves on.
        drop(replication);
        Ok(())
    }

    /// Continues an initial snapshot a previous run was stopped in the middle of, when its
    /// progress was recorded and its slot has not moved: the acknowledged chunks stay, the
    /// rest is handed over to incremental snapshots (see [`snapshot::resume`]). False when
    /// the snapshot must start over.
    async fn resume_initial(
        &self,
        sql: &tokio_postgres::Client,
        state: &SnapshotState,
    ) -> Result<bool, SourceError> {
        let Some(progress) = &state.initial_progress else {
            return Ok(false);
        };
        let slot = &self.config.capture.slot;
        let confirmed = setup::slot_row(sql, slot)
            .await?
            .and_then(|row| row.confirmed_flush);
        let captured: Vec<String> = self
            .tables
            .iter()
            .map(|(s, t)| format!("{s}.{t}"))
            .collect();
        let handover = match snapshot::resume::hand_over(progress, confirmed.as_deref(), &captured)
        {
            Ok(handover) => handover,
            Err(reason) => {
                tracing::warn!(
                    slot,
                    reason,
                    "the interrupted initial snapshot cannot be resumed; starting it over"
                );
                return Ok(false);
            }
        };
        let topic = offsets_topic(&self.config.kafka.topic_prefix);
        let records = handover.records(&topic, slot, state);
        let progress_tracker = Arc::new(Mutex::new(Progress::new(Lsn::ZERO)));
        let producer = producer_for(&self.config, Arc::clone(&progress_tracker))?;
        publish_and_wait(&producer, &progress_tracker, &records, &self.shutdown).await?;
        tracing::info!(
            slot,
            consistent_point = %handover.initial.consistent_point,
            rows_kept = handover.initial.rows,
            tables_continued = %handover
                .incremental
                .iter()
                .map(|r| r.table.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            "resuming the interrupted initial snapshot: the acknowledged chunks are kept, the rest is read by incremental snapshots while streaming from the consistent point"
        );
        self.request_new_tables(sql, &handover.state()).await?;
        Ok(true)
    }

    /// Tables captured now but not at the initial snapshot get an `execute-snapshot` signal.
    async fn request_new_tables(
        &self,
        sql: &tokio_postgres::Client,
        state: &SnapshotState,
    ) -> Result<(), SourceError> {
        let new: Vec<String> = self
            .tables
            .iter()
            .map(|(schema, table)| format!("{schema}.{table}"))
            .filter(|name| !state.knows(name))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let prefix = messages::prefix(messages::SNAPSHOT_REQUEST, &self.config.capture.slot);
        sql.execute(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&prefix, &execute_snapshot_data(&new)],
        )
        .await
        .map_err(|source| SetupError::Sql {
            what: format!("signal incremental snapshots of {}", new.join(", ")),
            source: source.into(),
        })?;
        tracing::info!(tables = %new.join(", "), "tables added to capture.tables will be snapshotted incrementally");
        Ok(())
    }

    async fn stream_with_retries(&mut self) -> Result<(), SourceError> {
        let started = Instant::now();
        let mut streamed_once = false;
        let mut backoff = BACKOFF_INITIAL;
        loop {
            let session_start = Instant::now();
            let error = match self.session(&mut streamed_once).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let retry =
                error.is_transient() && (streamed_once || started.elapsed() < STARTUP_RETRY_WINDOW);
            if !retry || *self.shutdown.borrow() {
                return Err(error);
            }
            if session_start.elapsed() >= BACKOFF_RESET_AFTER {
                backoff = BACKOFF_INITIAL;
            }
            self.metrics.count_error(error_kind(&error));
            tracing::warn!(%error, retry_in = ?backoff, "streaming interrupted; resuming from the slot");
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One session: connect, make sure the slot exists, stream until shutdown or an error.
    async fn session(&mut self, streamed_once: &mut bool) -> Result<(), SourceError> {
        let capture = &self.config.capture;
        let sql = self.options.connect_sql().await?;
        let mut replication = ReplicationClient::connect(&self.options).await?;
        let slot = setup::ensure_slot(&sql, &mut replication, &capture.slot).await?;
        let progress = Arc::new(Mutex::new(Progress::new(slot.confirmed_flush)));
        let mut producer = producer_for(&self.config, Arc::clone(&progress))?;
        for topic in fixed_topics(&self.config.kafka.topic_prefix) {
            producer.ensure_topic(&topic).await?;
        }
        let publication_names = format!("\"{}\"", capture.publication.replace('"', "\"\""));
        let stream = replication
            .start_logical_replication(
                &capture.slot,
                slot.confirmed_flush,
                &[
                    ("proto_version", "1"),
                    ("publication_names", &publication_names),
                    ("messages", "true"),
                ],
            )
            .await?;
        tracing::info!(slot = %capture.slot, from = %slot.confirmed_flush, "streaming");
        *streamed_once = true;
        let settings = SessionSettings {
            filter: self.filter.clone(),
            tombstones: self.config.kafka.tombstones,
            status_interval: capture.status_interval,
            slot: capture.slot.clone(),
            shutdown: self.shutdown.clone(),
            ddl: self.ddl,
            streamed_from: slot.confirmed_flush,
        };
        let unfinished = self
            .load_state()
            .await?
            .incremental
            .into_values()
            .filter(|record| !record.done)
            .collect();
        let incremental = Incremental::new(
            IncrementalSettings {
                options: self.options.clone(),
                signal_table: self.signal_table.clone(),
                chunk_rows: capture.incremental_chunk_size,
                filter: self.filter.clone(),
                slot: capture.slot.clone(),
                offsets_topic: offsets_topic(&self.config.kafka.topic_prefix),
            },
            unfinished,
        );
        let mut session = Session::new(
            stream,
            &sql,
            &mut self.encoder,
            &mut producer,
            (progress, incremental),
            &self.metrics,
            &settings,
        );
        match session.run().await {
            Ok(_) | Err(SourceError::Interrupted) => {}
            Err(error) => return Err(error),
        }
        let confirmed = session.finish(SHUTDOWN_FLUSH_TIMEOUT).await?;
        tracing::info!(confirmed = %confirmed, "stopped");
        Ok(())
    }
}

/// The topics every source writes besides the table topics (SPEC §3).
fn fixed_topics(prefix: &str) -> [String; 4] {
    [
        format!("{prefix}.transaction"),
        format!("{prefix}.message"),
        format!("__pgcdc-heartbeat.{prefix}"),
        crate::encode::schema_changes_topic(prefix),
    ]
}

fn error_kind(error: &SourceError) -> &'static str {
    match error {
        SourceError::Replication(_) | SourceError::StreamEnded => "replication",
        SourceError::Connect(_) | SourceError::Catalog(_) | SourceError::Setup(_) => "postgres",
        SourceError::Delivery(_) | SourceError::Kafka(_) | SourceError::Produce(_) => "kafka",
        SourceError::Encode(_) => "encode",
        SourceError::Snapshot(_) => "snapshot",
        _ => "other",
    }
}

/// Emits a non-transactional logical message every `interval`, so that the slot advances
/// (and WAL is released) even when no captured table changes.
async fn heartbeat(
    options: PgConnectOptions,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let sql = format!("SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')");
    let mut client = None;
    let mut warned = false;
    let mut timer = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if client.is_none() {
            match options.connect_sql().await {
                Ok(connected) => client = Some(connected),
                Err(error) if !warned => {
                    tracing::warn!(%error, "heartbeat connection failed; retrying every interval");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        let Some(connected) = &client else { continue };
        match connected.batch_execute(&sql).await {
            Ok(()) => warned = false,
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "heartbeat failed; the slot only advances with captured changes until it works again");
                    warned = true;
                }
                if connected.is_closed() {
                    client = None;
                }
            }
        }
    }
}
