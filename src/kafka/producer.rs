//! The record producer: enqueues records without waiting, reports every delivery to the
//! acknowledged-LSN tracker, and keeps the first delivery failure for the source to act on.
//!
//! ```text
//! source ──send(record, ticket)──▶ librdkafka queue ──▶ broker
//!                                        │ delivery report (polling thread)
//!            Progress::acked(ticket) ◀───┤ success
//!            fatal error, no ack     ◀───┘ failure: the slot never moves past it
//! ```
//!
//! Records are never given up on while the broker is unreachable (`message.timeout.ms=0`): the
//! bounded queue fills, `send` reports back-pressure, and the slot stays where it is.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::watch;

use super::error::{KafkaError, SendError};
use super::progress::{Progress, Ticket};
use super::topic::{create_topic, TopicSettings};

/// What the producer needs to know: where the brokers are, librdkafka pass-through options
/// (`[kafka.options]`) and how to create missing topics (`[kafka.topic]`).
#[derive(Clone)]
pub struct ProducerSettings {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Any librdkafka property; applied last, so it overrides pgcdc's defaults.
    pub options: BTreeMap<String, String>,
    /// Partitions, replication and cleanup policy of topics pgcdc creates.
    pub topic: TopicSettings,
}

impl fmt::Debug for ProducerSettings {
    // Option values may hold credentials (`sasl.password`, `ssl.key.password`): keys only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerSettings")
            .field("brokers", &self.brokers)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("topic", &self.topic)
            .finish()
    }
}

/// librdkafka properties pgcdc sets unless `[kafka.options]` overrides them.
const DEFAULT_OPTIONS: &[(&str, &str)] = &[
    // No duplicates or reordering when the producer retries (SPEC §6).
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Never give up on a record while the broker is down: the queue fills, the source waits and
    // the slot stays put, instead of a record being dropped and the slot passing it.
    ("message.timeout.ms", "0"),
    // Bounded memory: the whole source must stay under 64 MB RSS.
    ("queue.buffering.max.kbytes", "16384"),
    ("queue.buffering.max.messages", "100000"),
    // Throughput: wait briefly to fill batches of up to 10 000 records or 1 MB (the most a
    // broker with the default message.max.bytes accepts).
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1000000"),
    ("compression.type", "lz4"),
    // The Java client's key hashing, so a row lands on the partition Debezium would choose.
    // Null keys (tables without a key, truncates) all go to one partition rather than a random
    // one, so a consumer sees a keyless table's changes in commit order.
    ("partitioner", "murmur2"),
];

/// How long a caller of [`Producer::send_or_full`] pauses before trying a full queue again.
pub const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(2);

/// Produces records, reports each delivery to the shared Progress, and signals fatal delivery errors.
pub struct Producer {
    producer: ThreadedProducer<DeliveryContext>,
    brokers: String,
    /// Options for the admin client, created on the first topic check.
    admin_config: ClientConfig,
    admin: Option<AdminClient<LogContext>>,
    topic_settings: TopicSettings,
    known_topics: HashSet<String>,
}

impl Producer {
    /// Creates the producer; it connects in the background.
    pub fn new(
        settings: &ProducerSettings,
        progress: Arc<Mutex<Progress>>,
    ) -> Result<Producer, KafkaError> {
        let mut admin_config = ClientConfig::new();
        admin_config.set("bootstrap.servers", &settings.brokers);
        let mut config = admin_config.clone();
        for (key, value) in DEFAULT_OPTIONS {
            config.set(*key, *value);
        }
        for (key, value) in &settings.options {
            config.set(key, value);
            admin_config.set(key, value);
        }
        let context = DeliveryContext {
            progress,
            fatal: Mutex::new(None),
        };
        let producer = config
            .create_with_context(context)
            .map_err(|error| KafkaError::creating(error, KafkaError::CreateProducer))?;
        Ok(Producer {
            producer,
            brokers: settings.brokers.clone(),
            admin_config,
            admin: None,
            topic_settings: settings.topic.clone(),
            known_topics: HashSet::new(),
        })
    }

    /// Checks the broker answers metadata within `timeout`; the error says "broker unreachable at <brokers>".
    pub fn check_connectivity(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .client()
            .fetch_metadata(None, timeout)
            .map(drop)
            .map_err(|source| KafkaError::Unreachable {
                brokers: self.brokers.clone(),
                source,
            })
    }

    /// Whether `topic` holds any record (a partition's high watermark above 0); false when it
    /// does not exist. Blocks for up to `timeout` per request.
    pub fn topic_has_records(&self, topic: &str, timeout: Duration) -> Result<bool, KafkaError> {
        let client = self.producer.client();
        let unreachable = |source| KafkaError::Unreachable {
            brokers: self.brokers.clone(),
            source,
        };
        let metadata = client
            .fetch_metadata(Some(topic), timeout)
            .map_err(unreachable)?;
        let Some(found) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
        else {
            return Ok(false);
        };
        for partition in found.partitions() {
            let (_, high) = client
                .fetch_watermarks(topic, partition.id(), timeout)
                .map_err(unreachable)?;
            if high > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates the topic if it does not exist (admin CreateTopics; already-exists is fine); cached so each topic is checked once per process.
    pub async fn ensure_topic(&mut self, topic: &str) -> Result<(), KafkaError> {
        if self.known_topics.contains(topic) {
            return Ok(());
        }
        let admin = match &mut self.admin {
            Some(admin) => admin,
            slot @ None => slot.insert(self.admin_config.create_with_context(LogContext).map_err(
                |source| KafkaError::CreateTopic {
                    topic: topic.to_owned(),
                    source,
                },
            )?),
        };
        create_topic(admin, topic, &self.topic_settings).await?;
        self.known_topics.insert(topic.to_owned());
        Ok(())
    }

    /// Enqueues one record without waiting for delivery; Err(Backpressure) when librdkafka's queue is full (the caller pauses and retries: see [`send_or_full`](Self::send_or_full)).
    ///
    /// The caller counts an enqueued record with [`Progress::produced`]; before or after its
    /// delivery report does not matter, before the transaction's commit does.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
        ticket: Ticket,
    ) -> Result<(), SendError> {
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, ticket.into_raw());
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if !headers.is_empty() {
            let owned = headers.iter().fold(
                OwnedHeaders::new_with_capacity(headers.len()),
                |owned, &(key, value)| {
                    owned.insert(Header {
                        key,
                        value: Some(value),
                    })
                },
            );
            record = record.headers(owned);
        }
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::Backpressure)
            }
            Err((source, _)) => Err(SendError::Kafka(KafkaError::Produce {
                topic: topic.to_owned(),
                source,
            })),
        }
    }

    /// [`send`](Self::send) for a caller that waits while the queue is full: `Ok(false)` when
    /// it is full and waiting can help. A failed earlier delivery, a record too large for even
    /// the empty queue, or a requested shutdown end the wait.
    pub fn send_or_full(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
        ticket: Ticket,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool, SendError> {
        match self.send(topic, key, value, headers, ticket) {
            Ok(()) => Ok(true),
            Err(SendError::Backpressure) => {
                if let Some(error) = self.take_fatal_error() {
                    Err(SendError::Undelivered(error))
                } else if *shutdown.borrow() {
                    Err(SendError::Interrupted)
                } else if self.queue_len() == 0 {
                    Err(SendError::TooLarge {
                        topic: topic.to_owned(),
                        bytes: value.map_or(0, <[u8]>::len),
                    })
                } else {
                    Ok(false)
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The first fatal delivery error seen since start (a record that could not be delivered): the source must restart from the slot.
    pub fn take_fatal_error(&self) -> Option<KafkaError> {
        lock(&self.producer.context().fatal).take()
    }

    /// Waits until everything enqueued is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout).map_err(KafkaError::Flush)
    }

    /// Records enqueued and not yet reported delivered (or failed).
    pub fn queue_len(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }
}

/// A poisoned lock only means another thread panicked while holding it; the counters inside
/// are still the best information there is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Routes librdkafka's logs and client errors to `tracing` (rdkafka's default goes to `log`).
pub(super) struct LogContext;

impl rdkafka::consumer::ConsumerContext for LogContext {}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

/// Passes one librdkafka log line to `tracing` at its level.
pub(super) fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, message, "librdkafka"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, message, "librdkafka"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, message, "librdkafka")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, message, "librdkafka"),
    }
}

/// Turns delivery reports into acknowledgements, or into the fatal error that stops the source.
struct DeliveryContext {
    progress: Arc<Mutex<Progress>>,
    fatal: Mutex<Option<KafkaError>>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        // Transient (broker down, connection refused): librdkafka retries on its own. Fatal
        // ones also fail every queued record, which `delivery` reports.
        tracing::warn!(%error, reason, "kafka producer error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let ticket = Ticket::from_raw(opaque);
        match result {
            Ok(_) => lock(&self.progress).acked(ticket),
            Err((error, message)) => {
                // Not acknowledged: the tracker never confirms past this record's transaction.
                let mut fatal = lock(&self.fatal);
                if fatal.is_none() {
                    if !is_purged(error) {
                        tracing::error!(
                            topic = message.topic(),
                            partition = message.partition(),
                            %error,
                            "a record could not be delivered; the source must restart from the slot"
                        );
                    }
                    *fatal = Some(KafkaError::Delivery {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        source: error.clone(),
                    });
                }
            }
        }
    }
}

/// Records dropped by a producer going away at shutdown (rdkafka purges what is still queued
/// or in flight on drop): expected then, and never acknowledged, so never confirmed either.
fn is_purged(error: &RdKafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;
    use rdkafka::bindings::rd_kafka_resp_err_t;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::RDKafkaApiKey;
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Instant;

    #[test]
    fn only_purges_at_shutdown_count_as_expected_losses() {
        for code in [
            RDKafkaErrorCode::PurgeQueue,
            RDKafkaErrorCode::PurgeInflight,
        ] {
            assert!(is_purged(&RdKafkaError::MessageProduction(code)));
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::MessageSizeTooLarge,
        ] {
            assert!(!is_purged(&RdKafkaError::MessageProduction(code)));
        }
    }

    const TOPIC: &str = "pgcdc.public.item";
    const WAIT: Duration = Duration::from_secs(20);

    fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(TOPIC, 3, 1).expect("mock topic");
        mock
    }

    fn settings(brokers: String, options: &[(&str, &str)]) -> ProducerSettings {
        ProducerSettings {
            brokers,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            topic: TopicSettings::default(),
        }
    }

    fn tracker(start: Lsn) -> Arc<Mutex<Progress>> {
        Arc::new(Mutex::new(Progress::new(start)))
    }

    fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if ready() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        ready()
    }

    /// Produces one transaction of `records` records and commits it at `end_lsn`.
    fn produce_transaction(
        producer: &Producer,
        progress: &Mutex<Progress>,
        records: usize,
        end_lsn: Lsn,
    ) {
        let ticket = lock(progress).begin();
        for i in 0..records {
            let key = format!("key-{i}");
            let value = format!("value-{i}");
            producer
                .send(
                    TOPIC,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[],
                    ticket,
                )
                .expect("enqueue");
            lock(progress).produced(ticket);
        }
        lock(progress).commit(ticket, end_lsn);
    }

    fn confirmable(progress: &Mutex<Progress>) -> Lsn {
        lock(progress).confirmable()
    }

    #[test]
    fn delivered_records_move_progress() {
        let mock = mock_cluster();
        let progress = tracker(Lsn(0x10));
        let producer = Producer::new(&settings(mock.bootstrap_servers(), &[]), progress.clone())
            .expect("producer");
        producer
            .check_connectivity(Duration::from_secs(10))
            .expect("mock broker answers");

        produce_transaction(&producer, &progress, 100, Lsn(0x100));
        produce_transaction(&producer, &progress, 1, Lsn(0x200));
        lock(&progress).idle_position(Lsn(0x300));

        assert!(wait_until(|| confirmable(&progress) == Lsn(0x300)));
        assert_eq!(lock(&progress).inflight_records(), 0);
        assert_eq!(producer.queue_len(), 0);
        producer.flush(Duration::from_secs(1)).expect("flush");
        assert!(producer.take_fatal_error().is_none());
    }

    #[test]
    fn keys_values_and_headers_reach_the_broker() {
        let mock = mock_cluster();
        let progress = tracker(Lsn(0x10));
        let producer = Producer::new(&settings(mock.bootstrap_servers(), &[]), progress.clone())
            .expect("producer");
        let ticket = lock(&progress).begin();
        producer
            .send(
                TOPIC,
                Some(b"k1"),
                Some(b"v1"),
                &[("__debezium.newkey", b"k2"), ("empty", b"")],
                ticket,
            )
            .expect("enqueue");
        producer
            .send(TOPIC, Some(b"k1"), None, &[], ticket)
            .expect("enqueue tombstone");
        lock(&progress).produced(ticket);
        lock(&progress).produced(ticket);
        lock(&progress).commit(ticket, Lsn(0x20));
        producer.flush(WAIT).expect("flush");
        assert_eq!(confirmable(&progress), Lsn(0x20));

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "reader")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..3 {
            assignment
                .add_partition_offset(TOPIC, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let mut records = Vec::new();
        let deadline = Instant::now() + WAIT;
        while records.len() < 2 && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("consume");
                let headers: Vec<(String, Vec<u8>)> = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                records.push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                    headers,
                ));
            }
        }
        assert_eq!(
            records,
            vec![
                (
                    Some(b"k1".to_vec()),
                    Some(b"v1".to_vec()),
                    vec![
                        ("__debezium.newkey".to_owned(), b"k2".to_vec()),
                        ("empty".to_owned(), Vec::new())
                    ]
                ),
                (Some(b"k1".to_vec()), None, Vec::new()),
            ]
        );
    }

    #[test]
    fn nothing_is_acknowledged_while_the_broker_is_down() {
        let mock = mock_cluster();
        let progress = tracker(Lsn(0x10));
        let producer = Producer::new(&settings(mock.bootstrap_servers(), &[]), progress.clone())
            .expect("producer");
        produce_transaction(&producer, &progress, 10, Lsn(0x100));
        assert!(wait_until(|| confirmable(&progress) == Lsn(0x100)));

        mock.broker_down(1).expect("broker down");
        produce_transaction(&producer, &progress, 50, Lsn(0x200));
        lock(&progress).idle_position(Lsn(0x280));
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(confirmable(&progress), Lsn(0x100));
        assert_eq!(lock(&progress).inflight_records(), 50);
        assert_eq!(producer.queue_len(), 50);
        assert!(producer.flush(Duration::from_millis(200)).is_err());
        assert!(producer.take_fatal_error().is_none());

        mock.broker_up(1).expect("broker up");
        assert!(wait_until(|| confirmable(&progress) == Lsn(0x280)));
        assert_eq!(lock(&progress).inflight_records(), 0);
        assert!(producer.take_fatal_error().is_none());
    }

    #[test]
    fn a_full_queue_pushes_back_until_the_broker_drains_it() {
        let mock = mock_cluster();
        let progress = tracker(Lsn(0x10));
        // Down before the producer exists: the mock applies it on its own thread, and records
        // sent right after a later call could still slip through.
        mock.broker_down(1).expect("broker down");
        let producer = Producer::new(
            &settings(
                mock.bootstrap_servers(),
                &[("queue.buffering.max.messages", "5")],
            ),
            progress.clone(),
        )
        .expect("producer");

        let ticket = lock(&progress).begin();
        for _ in 0..5 {
            producer
                .send(TOPIC, Some(b"k"), Some(b"v"), &[], ticket)
                .expect("room for five");
            lock(&progress).produced(ticket);
        }
        assert!(matches!(
            producer.send(TOPIC, Some(b"k"), Some(b"v"), &[], ticket),
            Err(SendError::Backpressure)
        ));
        let (shutdown, running) = watch::channel(false);
        let send = || producer.send_or_full(TOPIC, Some(b"k"), Some(b"v"), &[], ticket, &running);
        assert!(!send().expect("full, worth waiting"));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!send().expect("still full"));
        assert_eq!(
            producer.queue_len(),
            5,
            "nothing drains while the broker is down"
        );
        shutdown.send(true).expect("receiver alive");
        assert!(matches!(send(), Err(SendError::Interrupted)));
        shutdown.send(false).expect("receiver alive");

        mock.broker_up(1).expect("broker up");
        assert!(wait_until(
            || send().expect("room after the broker drained the queue")
        ));
        lock(&progress).produced(ticket);
        lock(&progress).commit(ticket, Lsn(0x100));
        assert!(wait_until(|| confirmable(&progress) == Lsn(0x100)));
    }

    #[test]
    fn a_failed_delivery_is_fatal_and_never_acknowledged() {
        let mock = mock_cluster();
        let progress = tracker(Lsn(0x10));
        let producer = Producer::new(&settings(mock.bootstrap_servers(), &[]), progress.clone())
            .expect("producer");
        produce_transaction(&producer, &progress, 1, Lsn(0x100));
        assert!(wait_until(|| confirmable(&progress) == Lsn(0x100)));

        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
        );
        produce_transaction(&producer, &progress, 1, Lsn(0x200));
        assert!(wait_until(|| producer.queue_len() == 0));
        let error = producer.take_fatal_error().expect("a fatal delivery error");
        assert!(
            matches!(&error, KafkaError::Delivery { topic, .. } if topic == TOPIC),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("deliver a record to {TOPIC} partition ")),
            "{error}"
        );
        assert!(producer.take_fatal_error().is_none());
        assert_eq!(confirmable(&progress), Lsn(0x100));
        assert_eq!(lock(&progress).inflight_records(), 1);
    }

    #[test]
    fn an_unknown_option_is_named() {
        let error = Producer::new(
            &settings("127.0.0.1:9".to_owned(), &[("no.such.option", "1")]),
            tracker(Lsn::ZERO),
        )
        .err()
        .expect("an invalid option");
        assert!(
            matches!(&error, KafkaError::InvalidOption { key, .. } if key == "no.such.option"),
            "{error:?}"
        );
        assert!(error
            .to_string()
            .starts_with("create the Kafka client: option \"no.such.option\" is invalid: "));
    }

    #[test]
    fn options_override_the_defaults() {
        // acks=1 contradicts the default enable.idempotence=true; librdkafka says so.
        let error = Producer::new(
            &settings("127.0.0.1:9".to_owned(), &[("acks", "1")]),
            tracker(Lsn::ZERO),
        )
        .err()
        .expect("conflicting options");
        assert!(error.to_string().contains("acks"), "{error}");
        Producer::new(
            &settings(
                "127.0.0.1:9".to_owned(),
                &[("acks", "1"), ("enable.idempotence", "false")],
            ),
            tracker(Lsn::ZERO),
        )
        .expect("consistent overrides");
    }

    #[test]
    fn an_unreachable_broker_is_reported_with_its_address() {
        let producer = Producer::new(&settings("127.0.0.1:9".to_owned(), &[]), tracker(Lsn::ZERO))
            .expect("producer");
        let error = producer
            .check_connectivity(Duration::from_millis(500))
            .expect_err("nothing listens on port 9");
        assert!(
            error
                .to_string()
                .starts_with("broker unreachable at 127.0.0.1:9: "),
            "{error}"
        );
    }

    #[test]
    fn the_producer_and_topic_checks_can_move_between_threads() {
        fn assert_send<T: Send>(_: &T) {}
        let mut producer =
            Producer::new(&settings("127.0.0.1:9".to_owned(), &[]), tracker(Lsn::ZERO))
                .expect("producer");
        assert_send(&producer);
        assert_send(&producer.ensure_topic(TOPIC));
    }

    #[test]
    fn settings_debug_hides_option_values() {
        let settings = settings(
            "b:9092".to_owned(),
            &[("sasl.password", "hunter2"), ("linger.ms", "1")],
        );
        let text = format!("{settings:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sasl.password"), "{text}");
    }
}
