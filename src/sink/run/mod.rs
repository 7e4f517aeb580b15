//! `cdc-sink run`: sessions of consume → decode → batch → apply, each batch one target
//! transaction that also stores the offsets it consumed. Decoding runs on a task of its own,
//! so the next batch is decoded while the target applies the current one.
//!
//! A session starts from the offsets stored in the target. Any failure of the target or the
//! broker ends the session without committing anything of the pending batch; the next session
//! (after a backoff) starts again from the stored offsets, so nothing is skipped and nothing
//! applied twice. A record the target rejects for its data is found by applying the batch again
//! change by change, each in a savepoint, and is dead-lettered or stops the sink by name.

mod flush;
mod pending;
mod progress;
mod records;
mod schema;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

use self::flush::{begin, Helper, Writer};
use self::pending::Pending;
use self::progress::ApplyProgress;
use self::records::{MemoryFeed, RecordSource};
use self::schema::{warn_if_feed_busy, FeedRead, FrontWait};
use super::apply::Applier;
use super::change::SinkChange;
use super::ddl;
use super::dead_letter::DeadLetters;
use super::enums::TargetEnums;
use super::offsets::{self, Partition, PartitionProgress};
use super::schema_changes::{self, is_schema_change_topic, PendingChange, SchemaChangeReader};
use super::SinkError;
use crate::config::{Format, SinkConfig};
use crate::encode::decode::{DecodeError, RecordDecoder, TargetTypes};
use crate::encode::registry::RegistryClient;
use crate::kafka::{
    subscription, ChangeConsumer, Consumed, ConsumedRecord, KafkaError, StartOffsets, TopicFeed,
};
use crate::metrics::SinkMetrics;
use crate::pg::PgConnectOptions;

/// First and longest pause between sessions.
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Before the first session got going, transient errors are retried this long, so a typo'd
/// host fails the start instead of retrying forever.
const STARTUP_RETRY_WINDOW: Duration = Duration::from_secs(60);
/// Decoded chunks waiting for the applier: with the consumer's chunks, bounds read-ahead.
const DECODED_CHUNKS: usize = 2;
/// How often schema changes waiting for their tables' records are looked at again (the
/// records may be applied by another sink of the group).
const PENDING_CHANGE_RETRY: Duration = Duration::from_secs(1);

/// Runs the sink until `shutdown` becomes true or an error that retrying cannot fix.
pub async fn run(
    config: SinkConfig,
    metrics: SinkMetrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let options = connect_options(&config)?;
    let mut decoders = Decoders::new(registry(&config)?, TargetTypes::default());
    let mut backoff = BACKOFF_INITIAL;
    let first_start = Instant::now();
    let mut applying = false;
    loop {
        let started = Instant::now();
        let outcome = session(
            &config,
            &options,
            &mut decoders,
            &metrics,
            shutdown.clone(),
            &mut applying,
        )
        .await;
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let retry =
            error.is_transient() && (applying || first_start.elapsed() < STARTUP_RETRY_WINDOW);
        if !retry || *shutdown.borrow() {
            return Err(error);
        }
        metrics.count_error(error.kind());
        if started.elapsed() > Duration::from_secs(60) {
            backoff = BACKOFF_INITIAL;
        }
        tracing::warn!(%error, retry_in = ?backoff, "applying interrupted; resuming from the offsets stored in the target");
        let mut stop = shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The target's connection options, with the password from `postgres.password_file` if set.
fn connect_options(config: &SinkConfig) -> Result<PgConnectOptions, SinkError> {
    let mut options = PgConnectOptions::parse(&config.postgres.url)
        .map_err(|e| SinkError::Config(format!("postgres.url: {e}")))?;
    if let Some(password) = config
        .postgres
        .password()
        .map_err(|e| SinkError::Config(e.to_string()))?
    {
        options = options.with_password(password);
    }
    Ok(options)
}

/// The Schema Registry client, when a URL is set.
fn registry(config: &SinkConfig) -> Result<Option<Arc<RegistryClient>>, SinkError> {
    let access = config
        .schema_registry
        .access()
        .map_err(|e| SinkError::Config(e.to_string()))?;
    access
        .map(|access| {
            RegistryClient::connect(&access)
                .map(Arc::new)
                .map_err(|e| SinkError::Config(format!("[schema_registry]: {e}")))
        })
        .transpose()
}

/// One decoder per wire format; a record's first byte tells which it is (Avro's Confluent
/// framing starts with a zero byte, a JSON envelope with `{`).
struct Decoders {
    registry: Option<Arc<RegistryClient>>,
    target: TargetTypes,
    avro: RecordDecoder,
    json: RecordDecoder,
    schema_changes: SchemaChangeReader,
}

/// What a record carries.
enum Item {
    /// A row change (or truncate) of a table.
    Change(SinkChange),
    /// A schema change event (read and applied through the schema-change feed).
    SchemaChange,
}

impl Decoders {
    fn new(registry: Option<Arc<RegistryClient>>, target: TargetTypes) -> Decoders {
        Decoders {
            avro: RecordDecoder::new(Format::Avro, registry.clone(), target),
            json: RecordDecoder::new(Format::Json, None, target),
            schema_changes: SchemaChangeReader::new(registry.clone()),
            registry,
            target,
        }
    }

    /// Decoders of their own, with empty caches, on the same registry.
    fn fresh(&self) -> Decoders {
        Decoders::new(self.registry.clone(), self.target)
    }

    /// Decodes for a target with these types from now on (plans made for others are dropped).
    fn use_target(&mut self, target: TargetTypes) {
        if target != self.target {
            *self = Decoders::new(self.registry.clone(), target);
        }
    }

    async fn decode(&mut self, record: &ConsumedRecord) -> Result<Option<Item>, DecodeError> {
        let (key, value) = (record.key.as_deref(), record.value.as_deref());
        if let Some(value) = value.filter(|_| is_schema_change_topic(&record.topic)) {
            if self.schema_changes.read(value).await?.is_some() {
                return Ok(Some(Item::SchemaChange));
            }
        }
        let avro = value.or(key).is_some_and(|bytes| bytes.first() == Some(&0));
        let decoder = if avro { &mut self.avro } else { &mut self.json };
        Ok(decoder.decode(key, value).await?.map(Item::Change))
    }
}

/// A consumed record with its decoded change.
struct Decoded {
    record: ConsumedRecord,
    change: Result<Option<Item>, DecodeError>,
}

impl Decoded {
    /// Whether it is a change with a source position (a schema change may precede it).
    fn has_position(&self) -> bool {
        matches!(&self.change, Ok(Some(Item::Change(change))) if change.position != Default::default())
    }
}

/// What the decoding task hands over.
enum DecodedChunk {
    /// Decoded records; `caught_up` as the consumer said of their chunk.
    Records {
        records: Vec<Decoded>,
        caught_up: bool,
    },
    Failed(KafkaError),
}

/// Decodes the consumer's chunks in order until either side stops, counting the time spent
/// waiting for records, decoding them and handing them over.
async fn decode_chunks(
    mut decoders: Decoders,
    mut consumed: mpsc::Receiver<Consumed>,
    decoded: mpsc::Sender<DecodedChunk>,
    metrics: SinkMetrics,
) {
    let [fetch, decode, handover] =
        ["fetch", "decode", "handover"].map(|stage| metrics.stage_seconds(stage));
    let mut since = Instant::now();
    let mut lap = |counter: &prometheus::Counter| {
        let now = Instant::now();
        counter.inc_by(now.duration_since(since).as_secs_f64());
        since = now;
    };
    while let Some(chunk) = consumed.recv().await {
        lap(&fetch);
        let chunk = match chunk {
            Consumed::Records { records, caught_up } => {
                let mut out = Vec::with_capacity(records.len());
                for record in records {
                    let change = decoders.decode(&record).await;
                    out.push(Decoded { record, change });
                }
                DecodedChunk::Records {
                    records: out,
                    caught_up,
                }
            }
            Consumed::Failed(error) => DecodedChunk::Failed(error),
        };
        lap(&decode);
        if decoded.send(chunk).await.is_err() {
            return;
        }
        lap(&handover);
    }
}

/// Ends the decoding task with the session that started it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything one session holds.
struct Session<'a> {
    config: &'a SinkConfig,
    metrics: &'a SinkMetrics,
    client: Client,
    /// Where records come from (the group's consumer, or memory).
    consumer: RecordSource,
    start: StartOffsets,
    /// Decodes again when a rejected batch is applied change by change.
    decoders: &'a mut Decoders,
    dead_letters: Option<DeadLetters>,
    applied: HashMap<Partition, PartitionProgress>,
    writer: Writer<'a>,
    /// The other apply connections (`apply.workers` − 1); `client` is the first.
    helpers: Vec<Helper>,
    pending: Pending,
    /// Schema changes read and not applied yet, in the order they were read.
    pending_changes: VecDeque<PendingChange>,
    /// Reads the schema-change topics (`None` while a read is under way).
    feed: Option<TopicFeed>,
    /// Partitions held back behind a schema change, from this offset on.
    held: HashMap<Partition, i64>,
    /// Released partitions delivering again from this offset; their records before it (still
    /// in the channel from before) are skipped.
    released: HashMap<Partition, i64>,
    /// When a schema change was last applied.
    last_schema_change: Option<Instant>,
    /// The schema change at the front of the queue while it waits.
    front_wait: FrontWait,
    /// What the progress lines report.
    progress: ApplyProgress,
}

async fn session(
    config: &SinkConfig,
    options: &PgConnectOptions,
    decoders: &mut Decoders,
    metrics: &SinkMetrics,
    shutdown: watch::Receiver<bool>,
    applying: &mut bool,
) -> Result<(), SinkError> {
    let target = Target::open(config, options).await?;
    let subscriptions: Vec<String> = config
        .apply
        .topics
        .iter()
        .map(|t| subscription(t))
        .collect();
    let (consumer, consumed) = ChangeConsumer::start(
        &config.kafka.brokers,
        &config.apply.group_id,
        &subscriptions,
        &config.kafka.options,
        Arc::clone(&target.start),
        metrics.lag_report(),
    )?;
    let records = (RecordSource::Broker(consumer), consumed);
    drive(
        config, metrics, decoders, target, records, shutdown, applying,
    )
    .await
}

/// Applies `records` held in memory as `cdc-sink run` applies the topics' records (same
/// decoding, batching, target transactions and stored offsets; schema changes and dead
/// letters still go through the broker), until `shutdown` becomes true: the apply engine's
/// speed without the broker's.
pub async fn apply_records(
    config: &SinkConfig,
    metrics: &SinkMetrics,
    records: Vec<ConsumedRecord>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let options = connect_options(config)?;
    let mut decoders = Decoders::new(registry(config)?, TargetTypes::default());
    let target = Target::open(config, &options).await?;
    let (feed, consumed) = MemoryFeed::start(records);
    let records = (RecordSource::Memory(feed), consumed);
    let mut applying = false;
    drive(
        config,
        metrics,
        &mut decoders,
        target,
        records,
        shutdown,
        &mut applying,
    )
    .await
}

/// The target's connections and the progress stored in it.
struct Target {
    client: Client,
    helpers: Vec<Helper>,
    applied: HashMap<Partition, PartitionProgress>,
    /// Where each partition starts: the offset after its last applied record.
    start: StartOffsets,
    /// The extension types the target has.
    types: TargetTypes,
}

impl Target {
    /// Connects `apply.workers` times and loads the stored offsets.
    async fn open(config: &SinkConfig, options: &PgConnectOptions) -> Result<Target, SinkError> {
        let client = options.connect_sql().await?;
        offsets::setup(&client).await?;
        let mut helpers = Vec::with_capacity(config.apply.workers - 1);
        for _ in 1..config.apply.workers {
            helpers.push(Helper::new(options.connect_sql().await?));
        }
        let applied = offsets::load(&client, &config.apply.group_id).await?;
        let types = ddl::target_types(&client).await?;
        let start: StartOffsets = Arc::new(Mutex::new(
            applied
                .iter()
                .map(|(p, progress)| (p.clone(), progress.next_offset))
                .collect(),
        ));
        Ok(Target {
            client,
            helpers,
            applied,
            start,
            types,
        })
    }
}

/// A session's loop: decodes what `consumed` delivers, batches and applies it, and reads the
/// schema-change topics, until `shutdown` or an error.
async fn drive(
    config: &SinkConfig,
    metrics: &SinkMetrics,
    decoders: &mut Decoders,
    target: Target,
    (source, consumed): (RecordSource, mpsc::Receiver<Consumed>),
    mut shutdown: watch::Receiver<bool>,
    applying: &mut bool,
) -> Result<(), SinkError> {
    let feed = TopicFeed::new(
        &config.kafka.brokers,
        schema_changes::schema_change_topics(&config.apply.topics),
        &config.kafka.options,
        target
            .applied
            .iter()
            .filter(|((topic, _), _)| is_schema_change_topic(topic))
            .map(|(p, progress)| (p.clone(), progress.next_offset))
            .collect(),
    )?;
    let dead_letters = match config.apply.dead_letter_topic.as_str() {
        "" => None,
        topic => Some(DeadLetters::new(&config.kafka.brokers, topic, &config.kafka.options).await?),
    };
    decoders.use_target(target.types);
    let (decoded, mut records) = mpsc::channel(DECODED_CHUNKS);
    let _decoding = AbortOnDrop(tokio::spawn(decode_chunks(
        decoders.fresh(),
        consumed,
        decoded,
        metrics.clone(),
    )));
    tracing::info!(topics = ?config.apply.topics, group = %config.apply.group_id, "applying");
    metrics.set_healthy(true);
    *applying = true;
    let mut session = Session {
        config,
        metrics,
        client: target.client,
        consumer: source,
        start: target.start,
        decoders,
        dead_letters,
        applied: target.applied,
        writer: Writer {
            config,
            metrics,
            targets: HashMap::new(),
            enums: TargetEnums::default(),
            applier: Applier::default(),
        },
        helpers: target.helpers,
        pending: Pending::default(),
        pending_changes: VecDeque::new(),
        feed: Some(feed),
        held: HashMap::new(),
        released: HashMap::new(),
        last_schema_change: None,
        front_wait: FrontWait::default(),
        progress: ApplyProgress::new(Instant::now()),
    };
    let mut feed_read: Option<FeedRead> = None;
    session.start_feed_read(&mut feed_read);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut changes_timer = tokio::time::interval(PENDING_CHANGE_RETRY);
    loop {
        let wake =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            // The watch's guard is dropped at once: it must not be held across the flush.
            _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => {
                session.flush().await?;
                tracing::info!("stopped");
                return Ok(());
            }
            () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                session.flush().await?;
                deadline = None;
            }
            _ = changes_timer.tick() => {
                // Changes no record follows (a DROP, a CREATE of an empty table) are found by
                // reading now and then, without holding records back.
                session.start_feed_read(&mut feed_read);
                session.apply_pending_changes().await?;
            }
            joined = async { feed_read.as_mut().expect("a read under way").await }, if feed_read.is_some() => {
                feed_read = None;
                warn_if_feed_busy(session.finish_feed_read(joined).await)?;
                session.apply_pending_changes().await?;
            }
            decoded = records.recv() => match decoded {
                Some(DecodedChunk::Records { records: chunk, caught_up }) => {
                    // Every schema change before these records is in the broker by now.
                    // Records without a source position (not pgcdc's) wait for none.
                    if chunk.iter().any(Decoded::has_position) {
                        session.read_schema_changes(&mut feed_read).await?;
                    }
                    for decoded in chunk {
                        if session.held_back(&decoded)
                            || session.wait_for_pending_changes(&decoded).await?
                        {
                            continue;
                        }
                        session.take(decoded)?;
                        if session.pending.changes >= config.apply.batch_size {
                            session.flush().await?;
                        }
                    }
                    // Group commit: once the broker holds less than a chunk more for these
                    // partitions and no chunk waits, the batch is applied now, so a lone change
                    // waits for nothing and batches grow only while changes arrive faster than
                    // the target applies them; `batch_timeout` bounds the wait while they keep
                    // coming. Partitions released after a schema change are
                    // waited for, so that the rows written after it, from every partition of
                    // the table, are applied in one batch in the order they were written; for
                    // `batch_timeout` after a schema change batches wait as they always did, as
                    // a partition not held back then may still bring earlier rows.
                    let settled = session
                        .last_schema_change
                        .is_none_or(|at| at.elapsed() >= config.apply.batch_timeout);
                    if caught_up && records.is_empty() && session.released.is_empty() && settled {
                        session.flush().await?;
                    }
                    if session.pending.records.is_empty() {
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + config.apply.batch_timeout);
                    }
                }
                Some(DecodedChunk::Failed(error)) => return Err(error.into()),
                None => return Err(SinkError::ConsumerStopped),
            },
        }
    }
}

impl Session<'_> {
    /// Adds one decoded record to the pending batch.
    fn take(&mut self, Decoded { record, change }: Decoded) -> Result<(), SinkError> {
        let partition: Partition = (record.topic.clone(), record.partition);
        let stored = self
            .pending
            .progress
            .get(&partition)
            .or_else(|| self.applied.get(&partition))
            .copied();
        if stored.is_some_and(|p| record.offset < p.next_offset) {
            return Ok(());
        }
        let mut progress = stored.unwrap_or_default();
        progress.next_offset = record.offset + 1;
        let slot = self.pending.slot(&partition, self.config.apply.workers);
        match change {
            // A pattern of `apply.topics` matched a schema-change topic: its records are read,
            // applied and stored through the schema-change feed.
            Ok(Some(Item::SchemaChange)) => return Ok(()),
            Ok(None) => {}
            Ok(Some(Item::Change(change)))
                if offsets::already_applied(stored.as_ref(), change.position) =>
            {
                self.metrics.count_skipped(&change.table);
                self.pending.skipped += 1;
            }
            Ok(Some(Item::Change(change))) => {
                progress.position = progress.position.max(change.position);
                self.pending.push(self.config, slot, change);
            }
            Err(DecodeError::NoRegistry) => {
                return Err(SinkError::Config(
                    "schema_registry.url: the topics carry Avro records; set the registry's URL, e.g. \"http://127.0.0.1:8081\"".into(),
                ))
            }
            Err(error) if error.is_transient() => return Err(SinkError::Registry(Box::new(error))),
            Err(error) if error.is_registry_access() => {
                return Err(SinkError::Config(format!(
                    "{error}; check [schema_registry] username, password and TLS files"
                )))
            }
            Err(error) => poison(&mut self.dead_letters, self.metrics, &record, &error.to_string(), None)?,
        }
        self.pending
            .first_offsets
            .entry(partition.clone())
            .or_insert(record.offset);
        self.pending.progress.insert(partition, progress);
        self.pending.records.push(record);
        Ok(())
    }
}

/// A record that cannot be applied: to the dead-letter topic, or the end of the sink.
fn poison(
    dead_letters: &mut Option<DeadLetters>,
    metrics: &SinkMetrics,
    record: &ConsumedRecord,
    reason: &str,
    sql_state: Option<&str>,
) -> Result<(), SinkError> {
    match dead_letters {
        Some(dead_letters) => {
            dead_letters.send(record, reason, sql_state)?;
            metrics.count_dead_letter(&record.topic);
            Ok(())
        }
        None => Err(SinkError::Poison {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            reason: reason.to_owned(),
        }),
    }
}
