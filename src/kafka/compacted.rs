//! Reads a compacted topic (pgcdc's `__pgcdc-offsets.<prefix>`) from its start to its end
//! and keeps the latest value of each key, as Kafka Connect reads its offsets topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::error::KafkaError;
use super::producer::LogContext;

/// How long the topic must stay silent past its reported end before it counts as read.
const QUIET: Duration = Duration::from_millis(500);

/// librdkafka's producer-only properties (CONFIGURATION.md, scope P): the source's
/// `[kafka.options]` are meant for its producer, and a consumer warns about each of these.
const PRODUCER_ONLY: [&str; 24] = [
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

fn is_producer_only(key: &str) -> bool {
    PRODUCER_ONLY.contains(&key)
}

/// Reads every partition of `topic` up to its current end; a null value deletes its key.
pub fn read_latest(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, KafkaError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "pgcdc-offsets-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for (key, value) in options.iter().filter(|(key, _)| !is_producer_only(key)) {
        config.set(key, value);
    }
    let consumer: BaseConsumer<LogContext> = config
        .create_with_context(LogContext)
        .map_err(KafkaError::CreateConsumer)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| KafkaError::Unreachable {
            brokers: brokers.to_owned(),
            source,
        })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut unread = BTreeSet::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(KafkaError::Consume)?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(KafkaError::Consume)?;
            unread.insert((partition, high));
        }
    }
    let mut latest = BTreeMap::new();
    if unread.is_empty() {
        return Ok(latest);
    }
    consumer.assign(&assignment).map_err(KafkaError::Consume)?;
    // Some brokers (tansu) report a high watermark inside the last record batch, and their
    // end-of-partition signal with it: after reaching both, read on until the topic is quiet.
    let deadline = Instant::now() + timeout;
    loop {
        let wait = if unread.is_empty() {
            QUIET
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let Some(message) = consumer.poll(wait) else {
            if unread.is_empty() {
                return Ok(latest);
            }
            return Err(KafkaError::Consume(
                rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                ),
            ));
        };
        let message = match message {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                unread.retain(|&(p, _)| p != partition);
                continue;
            }
            Err(error) => return Err(KafkaError::Consume(error)),
        };
        let partition = message.partition();
        if let Some(key) = message.key() {
            match message.payload() {
                Some(value) => latest.insert(key.to_vec(), value.to_vec()),
                None => latest.remove(key),
            };
        }
        unread.retain(|&(p, high)| p != partition || message.offset() + 1 < high);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_stay_with_the_producer() {
        assert!(is_producer_only("compression.type"));
        assert!(is_producer_only("linger.ms"));
        assert!(!is_producer_only("security.protocol"));
        assert!(!is_producer_only("sasl.mechanisms"));
        assert!(!is_producer_only("client.id"));
    }
}
