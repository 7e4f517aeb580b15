//! Errors of the Kafka module, each naming the operation that failed.

use rdkafka::error::KafkaError as RdKafkaError;

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused a configuration property (unknown key or invalid value).
    #[error("create the Kafka client: option {key:?} is invalid: {reason}")]
    InvalidOption {
        /// The property's key, as given in `[kafka.options]` or set by pgcdc.
        key: String,
        /// librdkafka's explanation (the value is left out: it may be a secret).
        reason: String,
    },
    /// librdkafka could not create the client (for example conflicting options).
    #[error("create the Kafka producer: {0}")]
    CreateProducer(#[source] RdKafkaError),
    /// librdkafka could not create or subscribe the consumer.
    #[error("create the Kafka consumer: {0}")]
    CreateConsumer(#[source] RdKafkaError),
    /// The consumer failed for good while polling.
    #[error("consume: {0}")]
    Consume(#[source] RdKafkaError),
    /// Partitions with records to read were not fetched for a while, their broker connected
    /// and nothing waiting to be read: librdkafka stopped fetching them.
    #[error("the consumer fetched nothing for partitions that have records to read ({partitions}); a new consumer will read them")]
    FetchStalled {
        /// Each partition: where it stands, its end, and for how long.
        partitions: String,
    },
    /// Reading a topic's partitions and watermarks failed.
    #[error("read the watermarks of {topic}: {source}")]
    Watermarks {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: RdKafkaError,
    },
    /// No broker answered a metadata request in time.
    #[error("broker unreachable at {brokers}: {source}")]
    Unreachable {
        /// The bootstrap servers that were tried.
        brokers: String,
        /// What librdkafka reported.
        #[source]
        source: RdKafkaError,
    },
    /// The broker refused to create a topic, or did not answer.
    #[error("create topic {topic}: {source}")]
    CreateTopic {
        /// The topic that could not be created.
        topic: String,
        /// What librdkafka or the broker reported.
        #[source]
        source: RdKafkaError,
    },
    /// librdkafka would not enqueue a record (other than a full queue).
    #[error("produce a record to {topic}: {source}")]
    Produce {
        /// The record's topic.
        topic: String,
        /// What librdkafka reported.
        #[source]
        source: RdKafkaError,
    },
    /// The broker did not take a record: its transaction can never be confirmed.
    #[error("deliver a record to {topic} partition {partition}: {source}")]
    Delivery {
        /// The record's topic.
        topic: String,
        /// The partition it was assigned to (-1 when none was).
        partition: i32,
        /// What librdkafka or the broker reported.
        #[source]
        source: RdKafkaError,
    },
    /// Records were still undelivered when the flush timed out, or the flush failed.
    #[error("flush the producer: {0}")]
    Flush(#[source] RdKafkaError),
}

impl KafkaError {
    /// Why librdkafka would not create a client: an option it refused, or else `otherwise`.
    pub(super) fn creating(
        error: RdKafkaError,
        otherwise: fn(RdKafkaError) -> KafkaError,
    ) -> KafkaError {
        match error {
            RdKafkaError::ClientConfig(_, reason, key, _) => {
                KafkaError::InvalidOption { key, reason }
            }
            other => otherwise(other),
        }
    }
}

/// Why [`super::Producer::send`] did not enqueue a record.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// librdkafka's queue is full: pause ([`super::BACKPRESSURE_PAUSE`]) and retry.
    #[error("the producer queue is full")]
    Backpressure,
    /// The record cannot be produced at all.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// An earlier record was not delivered: what was produced since cannot be confirmed.
    #[error("delivery failed: {0}")]
    Undelivered(KafkaError),
    /// librdkafka refuses the record even with an empty queue: it is larger than the queue.
    #[error("a record for {topic} ({bytes} bytes) is larger than the producer queue: raise kafka.options \"queue.buffering.max.kbytes\" (and the broker's message.max.bytes)")]
    TooLarge { topic: String, bytes: usize },
    /// Shutdown was requested while waiting for room in the queue.
    #[error("shutdown requested while waiting for the broker")]
    Interrupted,
}
