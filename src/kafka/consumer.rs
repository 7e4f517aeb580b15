//! The sink's consumer: subscribes to topic patterns in a consumer group, starts each assigned
//! partition at the offset the target says is next (never the group's committed offset), and
//! hands records to the async side in chunks through a bounded channel, so memory stays
//! bounded and no await happens per record.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::fetch_watch::{FetchWatch, PartitionFetch, Suspect, FETCH_STALL_LIMIT};
use super::probe::Probe;
use super::producer::log_to_tracing;
use super::KafkaError;

/// Records per chunk handed to the async side.
const CHUNK: usize = 1024;
/// Chunks the channel holds: with [`CHUNK`], bounds the records read ahead of the applier.
const CHANNEL_CHUNKS: usize = 2;
/// How long one poll waits when nothing arrives; also how fast a stop request is noticed.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a metadata or watermark request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the consumer thread waits before offering a chunk to a full channel again.
const FULL_WAIT: Duration = Duration::from_millis(2);

/// The most a fetch brings back (compressed) unless `[kafka.options]` says otherwise. A
/// heaptrack profile of a mixed backlog (LZ4, 3 partitions) found librdkafka's decompressed
/// fetches and their queued messages to be half the heap (21 of 42 MiB), and 256 KiB fetches
/// took the sink's peak RSS from 67 to 52 MiB; but tansu sends no record batch larger than
/// the fetch limit, so a record the producer may send (up to `message.max.bytes`, 1,000,000 by
/// default) would never arrive, and a fetch must hold the largest.
const FETCH_MAX_BYTES: u64 = 1024 * 1024;

/// Options pgcdc sets unless `[kafka.options]` overrides them.
const DEFAULT_OPTIONS: &[(&str, &str)] = &[
    // Progress lives in the target; the group's offsets are only committed for monitoring.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    // A partition the target knows nothing of starts at its first record.
    ("auto.offset.reset", "earliest"),
    // New topics (named or matching a pattern) are found within this time, not librdkafka's
    // 5 minutes: with the group's rejoin, inside the 10 s the README promises. A pattern makes
    // each refresh list every topic of the broker, so not much more often than that.
    ("topic.metadata.refresh.interval.ms", "5000"),
    // Read-ahead bounds memory: librdkafka's defaults (a 64 MiB queue, 50 MiB fetches, and
    // 100,000 messages kept per partition) would make read-ahead most of the sink's footprint
    // while buying no throughput. A fetch is limited by its compressed size but decompressed
    // whole (LZ4 batches grow several times), and every queued message keeps its batch's
    // buffer alive, so the limits that bound memory are the fetch size ([`FETCH_MAX_BYTES`])
    // and the messages kept per partition, not the queue's kilobytes. With these the sink's
    // peak RSS on a backlog went from 130-148 MiB to about 62 MiB at the same rate; the
    // consumer thread's chunks and the batch being gathered hold well over a thousand records
    // per partition anyway.
    ("queued.max.messages.kbytes", "8192"),
    ("queued.min.messages", "1000"),
    // With a full queue librdkafka stops fetching for this long (1 s by default), which left
    // the applier idle once it had caught up with the read-ahead.
    ("fetch.queue.backoff.ms", "10"),
    // How long the broker may hold a fetch that finds nothing new. Kafka and Redpanda answer
    // as soon as a record arrives, but some brokers (tansu) hold every fetch this long even
    // when records arrive meanwhile, so librdkafka's 500 ms would be added to every change's
    // latency there. The price is an idle sink asking each broker 50 times a second (tansu
    // spends about 4% of a core on that; `fetch.wait.max.ms = 500` in `[kafka.options]` when
    // latency matters less).
    ("fetch.wait.max.ms", "20"),
    // Statistics carry each partition's high watermark, from which the lag is reported.
    ("statistics.interval.ms", "5000"),
];

/// One record, owned, as the consumer thread hands it over.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// What the consumer thread hands over.
pub enum Consumed {
    /// Records in partition order. `caught_up`: the chunk ended because nothing more was ready
    /// (less than a chunk left at the broker), so a batch need not wait for more.
    Records {
        /// The records.
        records: Vec<ConsumedRecord>,
        /// Nothing more was ready when the chunk was handed over.
        caught_up: bool,
    },
    /// The consumer failed for good (the session restarts).
    Failed(KafkaError),
}

/// Where each partition starts when it is assigned: the offset after the last applied record.
pub type StartOffsets = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Receives each fetching partition's lag: topic, partition, and the records between its high
/// watermark and the next offset to apply.
pub type LagReport = Box<dyn Fn(&str, i32, i64) + Send + Sync>;

/// Rebalance handling: assigned partitions start at [`StartOffsets`] (offset 0 when unknown, the
/// first record of a new topic). Statistics report the lag behind the applied offsets.
pub struct SinkContext {
    start: StartOffsets,
    report_lag: LagReport,
    /// Set at each assignment, before any record of it is handed over.
    assigned: Arc<AtomicBool>,
    /// Where each partition's fetch stood, to notice fetching that stopped.
    fetch_watch: Mutex<FetchWatch>,
    /// How long a fetch position may stand still before the broker is asked about it.
    stall_limit: Duration,
    /// Partitions whose fetch position stood still too long; the poll loop asks the broker
    /// whether they have records to read.
    suspects: Mutex<Vec<Suspect>>,
}

impl ClientContext for SinkContext {
    /// rdkafka's default hands these to `log`, which nothing here prints: a consumer's
    /// warnings (a failed fetch, a refused commit) were lost.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    /// A subscribed topic that does not exist yet, or was just created and has no leader yet,
    /// is expected (the source creates topics as tables get their first change, and a sink
    /// started beside it subscribes before that; not every schema-change topic the sink looks
    /// for exists): it is picked up once it is ready, so it is not an error.
    fn error(&self, error: RdKafkaError, reason: &str) {
        if is_topic_not_ready(&error) {
            tracing::debug!(%error, reason, "a subscribed topic is not ready yet");
        } else {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let suspects = self.fetch_watch.lock().expect("fetch watch lock").observe(
            &PartitionFetch::all(&statistics),
            Instant::now(),
            self.stall_limit,
        );
        if !suspects.is_empty() {
            *self.suspects.lock().expect("suspects lock") = suspects;
        }
        let start = self.start.lock().expect("start offsets lock");
        for (topic, stats) in &statistics.topics {
            for (&partition, stats) in &stats.partitions {
                // librdkafka lists an internal partition -1, and partitions not yet fetching
                // have no watermark.
                if partition < 0 || stats.fetch_state != "active" || stats.hi_offset < 0 {
                    continue;
                }
                let next = start
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0)
                    .max(stats.lo_offset);
                (self.report_lag)(topic, partition, (stats.hi_offset - next).max(0));
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let start = self.start.lock().expect("start offsets lock");
                let assigned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                for (topic, partition) in &assigned {
                    let offset = start
                        .get(&(topic.clone(), *partition))
                        .copied()
                        .unwrap_or(0);
                    if let Err(error) =
                        tpl.set_partition_offset(topic, *partition, Offset::Offset(offset))
                    {
                        tracing::error!(topic, partition, %error, "cannot set a start offset");
                    }
                }
                tracing::info!(partitions = assigned.len(), "partitions assigned");
                self.assigned.store(true, Ordering::SeqCst);
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassigning partitions failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance failed"),
        }
    }
}

/// A subscribed consumer and the thread that polls it.
pub struct ChangeConsumer {
    consumer: Arc<BaseConsumer<SinkContext>>,
    probe: Arc<Probe>,
    assigned: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ChangeConsumer {
    /// Subscribes to `subscriptions` (topic names and `^…$` regexes, see [`subscription`]) in
    /// `group_id` and starts polling; records arrive on the returned channel, and each
    /// partition's lag goes to `report_lag`.
    pub fn start(
        brokers: &str,
        group_id: &str,
        subscriptions: &[String],
        options: &BTreeMap<String, String>,
        start: StartOffsets,
        report_lag: LagReport,
    ) -> Result<(ChangeConsumer, mpsc::Receiver<Consumed>), KafkaError> {
        Self::watched(
            brokers,
            group_id,
            subscriptions,
            options,
            start,
            report_lag,
            FETCH_STALL_LIMIT,
        )
    }

    /// [`start`](Self::start), with fetch positions that stand still for `stall_limit`
    /// checked against the broker.
    pub(super) fn watched(
        brokers: &str,
        group_id: &str,
        subscriptions: &[String],
        options: &BTreeMap<String, String>,
        start: StartOffsets,
        report_lag: LagReport,
        stall_limit: Duration,
    ) -> Result<(ChangeConsumer, mpsc::Receiver<Consumed>), KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", group_id);
        for (key, value) in DEFAULT_OPTIONS {
            config.set(*key, *value);
        }
        config.set("fetch.max.bytes", fetch_max_bytes(options));
        for (key, value) in options {
            config.set(key, value);
        }
        let assigned = Arc::new(AtomicBool::new(false));
        let context = SinkContext {
            start,
            report_lag,
            assigned: Arc::clone(&assigned),
            fetch_watch: Mutex::new(FetchWatch::default()),
            stall_limit,
            suspects: Mutex::new(Vec::new()),
        };
        let consumer: BaseConsumer<SinkContext> = config
            .create_with_context(context)
            .map_err(|error| KafkaError::creating(error, KafkaError::CreateConsumer))?;
        let names: Vec<&str> = subscriptions.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(KafkaError::CreateConsumer)?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
        let probe = Arc::new(Probe::new(brokers, options)?);
        let thread = {
            let (consumer, stop, probe) =
                (Arc::clone(&consumer), Arc::clone(&stop), Arc::clone(&probe));
            std::thread::Builder::new()
                .name("sink consumer".into())
                .spawn(move || poll_loop(&consumer, &probe, &stop, &sender))
                .map_err(|e| {
                    KafkaError::CreateConsumer(RdKafkaError::Subscription(e.to_string()))
                })?
        };
        Ok((
            ChangeConsumer {
                consumer,
                probe,
                assigned,
                stop,
                thread: Some(thread),
            },
            receiver,
        ))
    }

    /// Each partition of `topic` with its low and high watermark; none when the topic does
    /// not exist. Asked on a connection of its own, not behind the consumer's fetches.
    pub async fn watermarks(&self, topic: &str) -> Result<HashMap<i32, (i64, i64)>, KafkaError> {
        let (probe, name) = (Arc::clone(&self.probe), topic.to_owned());
        tokio::task::spawn_blocking(move || probe.topic_watermarks(&name))
            .await
            .expect("watermark reader thread")
    }

    /// Whether partitions were assigned since the last call (topics may have been created):
    /// records of an assignment are handed over only after it is flagged.
    pub fn take_assignment(&self) -> bool {
        self.assigned.swap(false, Ordering::SeqCst)
    }

    /// Makes `partition` of `topic` deliver again from `offset` (records of it already in the
    /// channel still arrive: the caller skips them).
    pub fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        self.consumer
            .seek(topic, partition, Offset::Offset(offset), METADATA_TIMEOUT)
            .map_err(KafkaError::Consume)
    }

    /// Commits `next offsets` to the group, for monitoring tools; failures are only logged,
    /// since progress lives in the target.
    pub fn commit(&self, next_offsets: &HashMap<(String, i32), i64>) {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next_offsets {
            if let Err(error) =
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                tracing::debug!(%error, "cannot list an offset to commit");
            }
        }
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(%error, "committing offsets to the group failed");
        }
    }
}

impl Drop for ChangeConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls until stopped or the receiver is gone, sending records in chunks.
fn poll_loop(
    consumer: &BaseConsumer<SinkContext>,
    probe: &Probe,
    stop: &AtomicBool,
    sender: &mpsc::Sender<Consumed>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut chunk: Vec<ConsumedRecord> = Vec::new();
        let mut wait = POLL_WAIT;
        let mut caught_up = false;
        while chunk.len() < CHUNK {
            match consumer.poll(wait) {
                None => {
                    caught_up = at_high_watermarks(consumer, &chunk);
                    break;
                }
                Some(Ok(message)) => chunk.push(ConsumedRecord {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                }),
                Some(Err(error)) if is_fatal(&error) => {
                    let _ = sender.blocking_send(Consumed::Failed(KafkaError::Consume(error)));
                    return;
                }
                Some(Err(error)) if is_topic_not_ready(&error) => {
                    tracing::debug!(%error, "a subscribed topic is not ready yet");
                }
                Some(Err(error)) => tracing::warn!(%error, "consumer error; retrying"),
            }
            // Once records flow, take what is already buffered without waiting.
            wait = Duration::ZERO;
        }
        if let Some(failed) = stalled(consumer, probe) {
            let _ = sender.blocking_send(Consumed::Failed(failed));
            return;
        }
        if !chunk.is_empty() && !hand_over(sender, stop, chunk, caught_up) {
            return;
        }
    }
}

/// The consumer stopped fetching when a partition whose fetch position stood still has records
/// after it at the broker, at two looks a statistics interval apart with its position the
/// same (a record produced just before the first look may not be fetched yet). Suspects the
/// broker has nothing more for start their clocks again, and so do all when the broker cannot
/// answer (an outage is not a stall).
fn stalled(consumer: &BaseConsumer<SinkContext>, probe: &Probe) -> Option<KafkaError> {
    let context = consumer.context();
    let suspects = std::mem::take(&mut *context.suspects.lock().expect("suspects lock"));
    if suspects.is_empty() {
        return None;
    }
    let keys: Vec<(String, i32)> = suspects
        .iter()
        .map(|s| (s.topic.clone(), s.partition))
        .collect();
    let ends = match probe.high_watermarks(&keys) {
        Ok(ends) => ends,
        Err(error) => {
            tracing::debug!(%error, "cannot ask for the high watermarks of unmoving partitions");
            HashMap::new()
        }
    };
    // Positions now, not as of the statistics: nothing waits in the queue, so the next record
    // to hand over is the next to fetch.
    let positions: HashMap<(String, i32), i64> = consumer
        .position()
        .map(|list| {
            list.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(offset) => Some(((e.topic().to_owned(), e.partition()), offset)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let start = context.start.lock().expect("start offsets lock");
    let mut watch = context.fetch_watch.lock().expect("fetch watch lock");
    let now = Instant::now();
    let stalled: Vec<String> = suspects
        .iter()
        .zip(&keys)
        .filter_map(|(suspect, key)| {
            // A partition that never handed a record over stands where it was to start.
            let at = positions
                .get(key)
                .or_else(|| start.get(key))
                .copied()
                .unwrap_or(0);
            let end = ends.get(key).copied();
            watch
                .judge(suspect, at, end, now)
                .then(|| suspect.describe(at, end.unwrap_or(at)))
        })
        .collect();
    (!stalled.is_empty()).then(|| KafkaError::FetchStalled {
        partitions: stalled.join(", "),
    })
}

/// Whether the broker holds less than a chunk more for each partition in `chunk`, by the high
/// watermarks librdkafka last heard of: the chunk ended for want of records, not because the
/// next fetch is under way with a backlog. Under steady traffic the watermark runs a few
/// records ahead of what a fetch returned (records arrive while it is answered), so "exactly
/// at the watermark" would rarely hold. Unknown watermarks count as reached.
fn at_high_watermarks(consumer: &BaseConsumer<SinkContext>, chunk: &[ConsumedRecord]) -> bool {
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    for record in chunk {
        last.insert((&record.topic, record.partition), record.offset);
    }
    last.into_iter().all(|((topic, partition), offset)| {
        nearly_caught_up(offset, cached_high_watermark(consumer, topic, partition))
    })
}

/// Whether a partition whose last record read is `offset` has less than a chunk left before
/// `high` (unknown: yes).
fn nearly_caught_up(offset: i64, high: Option<i64>) -> bool {
    high.is_none_or(|high| high - (offset + 1) < CHUNK as i64)
}

/// The high watermark of a partition as of its latest fetch, without asking the broker
/// (rust-rdkafka does not wrap `rd_kafka_get_watermark_offsets`).
fn cached_high_watermark(
    consumer: &BaseConsumer<SinkContext>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is valid while `consumer` is borrowed; librdkafka reads the
    // NUL-terminated topic name and writes the two offsets, under its own locks.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// Sends a chunk, waiting while the channel is full; false once the receiver is gone or a stop
/// was requested (so dropping [`ChangeConsumer`] never waits on a receiver that stopped reading).
fn hand_over(
    sender: &mpsc::Sender<Consumed>,
    stop: &AtomicBool,
    records: Vec<ConsumedRecord>,
    caught_up: bool,
) -> bool {
    let mut pending = Consumed::Records { records, caught_up };
    loop {
        match sender.try_send(pending) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                pending = chunk;
                std::thread::sleep(FULL_WAIT);
            }
        }
    }
}

/// Whether `error` says a subscribed topic is not there yet: librdkafka reports "Subscribed
/// topic not available" for a topic the broker does not know (yet), and for a matching topic
/// whose creation is under way, which brokers answer with LEADER_NOT_AVAILABLE until its
/// partitions have leaders.
fn is_topic_not_ready(error: &RdKafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::LeaderNotAvailable
        )
    )
}

/// Errors after which the consumer cannot go on (the rest are retried by librdkafka).
fn is_fatal(error: &RdKafkaError) -> bool {
    matches!(
        error,
        RdKafkaError::MessageConsumptionFatal(_) | RdKafkaError::Subscription(_)
    )
}

/// Whether `topic` matches an `apply.topics` entry: a name, or a pattern whose `*` matches
/// any run of characters.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = topic.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The consumer's `fetch.max.bytes` unless `[kafka.options]` sets it: [`FETCH_MAX_BYTES`], or
/// the options' `message.max.bytes` when that is larger (users raise it for large records, and
/// librdkafka refuses to create a consumer whose fetch limit is set below it).
fn fetch_max_bytes(options: &BTreeMap<String, String>) -> String {
    let message_max = options
        .get("message.max.bytes")
        .and_then(|bytes| bytes.trim().parse::<u64>().ok())
        .unwrap_or(0);
    FETCH_MAX_BYTES.max(message_max).to_string()
}

/// librdkafka's subscription for a pattern: a regex (`^…$`) when it has `*`, else the name.
pub fn subscription(pattern: &str) -> String {
    if !pattern.contains('*') {
        return pattern.to_owned();
    }
    let mut regex = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '.' => regex.push_str("\\."),
            other => regex.push(other),
        }
    }
    regex.push('$');
    regex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_not_created_yet_or_without_a_leader_yet_are_not_errors() {
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::LeaderNotAvailable,
        ] {
            assert!(is_topic_not_ready(&RdKafkaError::Global(code)), "{code:?}");
            assert!(is_topic_not_ready(&RdKafkaError::MessageConsumption(code)));
        }
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(!is_topic_not_ready(&RdKafkaError::Global(code)), "{code:?}");
        }
    }

    #[test]
    fn the_fetch_limit_makes_room_for_the_largest_message() {
        let options = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let fetch = |pairs: &[(&str, &str)]| fetch_max_bytes(&options(pairs));
        assert_eq!(fetch(&[]), "1048576");
        assert_eq!(fetch(&[("message.max.bytes", "1000")]), "1048576");
        assert_eq!(fetch(&[("message.max.bytes", "4000000")]), "4000000");
        let defaults = options(&[]);
        assert!(ChangeConsumer::start(
            "127.0.0.1:1",
            "pgcdc-test",
            &["t".to_owned()],
            &defaults,
            StartOffsets::default(),
            Box::new(|_, _, _| {}),
        )
        .is_ok());
        let large_records = options(&[("message.max.bytes", "4000000")]);
        let started = ChangeConsumer::start(
            "127.0.0.1:1",
            "pgcdc-test",
            &["t".to_owned()],
            &large_records,
            StartOffsets::default(),
            Box::new(|_, _, _| {}),
        );
        assert!(
            started.is_ok(),
            "{:?}",
            started.err().map(|e| e.to_string())
        );
    }

    #[test]
    fn topics_match_names_and_patterns() {
        assert!(topic_matches("shop.l1.orders", "shop.l1.orders"));
        assert!(!topic_matches("shop.l1.orders", "shop.l1.orders2"));
        assert!(topic_matches("shop.l1.*", "shop.l1.orders"));
        assert!(topic_matches("shop.l1.*", "shop.l1."));
        assert!(!topic_matches("shop.l1.*", "shop.l2.orders"));
        assert!(topic_matches("*.orders", "a.b.orders"));
        assert!(topic_matches("s*.l*.o*s", "shop.l1.orders"));
        assert!(!topic_matches("s*.l*.o*s", "shop.l1.order"));
        assert!(topic_matches("a*a", "aa"));
        assert!(!topic_matches("a*a", "a"));
    }

    #[test]
    fn patterns_become_anchored_regexes() {
        assert_eq!(subscription("shop.l1.orders"), "shop.l1.orders");
        assert_eq!(subscription("shop.l1.*"), "^shop\\.l1\\..*$");
        assert_eq!(subscription("*.orders"), "^.*\\.orders$");
    }

    fn record(offset: i64) -> Vec<ConsumedRecord> {
        vec![ConsumedRecord {
            topic: "t".into(),
            partition: 0,
            offset,
            key: None,
            value: None,
        }]
    }

    #[test]
    fn a_full_channel_is_waited_for_until_a_stop() {
        let (sender, mut receiver) = mpsc::channel(1);
        let stop = AtomicBool::new(false);
        assert!(hand_over(&sender, &stop, record(0), true));
        let waiting = std::thread::scope(|scope| {
            let waiting = scope.spawn(|| hand_over(&sender, &stop, record(1), true));
            std::thread::sleep(Duration::from_millis(20));
            assert!(!waiting.is_finished(), "a full channel is waited for");
            stop.store(true, Ordering::Relaxed);
            waiting.join().expect("sender thread")
        });
        assert!(!waiting, "a stop ends the wait without sending");
        let Ok(Consumed::Records { records: first, .. }) = receiver.try_recv() else {
            panic!("the first chunk was sent");
        };
        assert_eq!(first[0].offset, 0);
        assert!(
            receiver.try_recv().is_err(),
            "the second chunk was not sent"
        );
    }

    #[test]
    fn a_chunk_is_caught_up_when_less_than_a_chunk_is_left_at_the_broker() {
        assert!(nearly_caught_up(9, Some(10)));
        assert!(nearly_caught_up(9, Some(10 + CHUNK as i64 - 1)));
        assert!(!nearly_caught_up(9, Some(10 + CHUNK as i64)));
        assert!(nearly_caught_up(9, None));
    }

    #[test]
    fn a_closed_channel_ends_the_hand_over() {
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        assert!(!hand_over(
            &sender,
            &AtomicBool::new(false),
            record(0),
            true
        ));
    }
}
