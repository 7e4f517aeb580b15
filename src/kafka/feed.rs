//! A reader of a few named topics outside any consumer group, read up to their current end on
//! request: the sink reads the schema-change topics with it, so that before it applies a record
//! it has read every schema change the broker held when the record was read.
//!
//! A record consumed at some time was produced before it; cdc-source publishes a schema change
//! and has it acknowledged before it produces any record written after the change. So reading
//! each schema-change partition up to the high watermark it has at any later time yields every
//! change that precedes the record.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::consumer::ConsumedRecord;
use super::producer::LogContext;
use super::KafkaError;

/// How long a metadata or watermark request may take (a busy broker answers slowly).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long reading up to the high watermarks may take before it counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often topics that did not exist are looked for again, besides when asked to.
const MISSING_RECHECK: Duration = Duration::from_secs(5);

/// Named topics read from given offsets up to their end, on request.
pub struct TopicFeed {
    consumer: BaseConsumer<LogContext>,
    /// Asks for metadata and watermarks on a connection of its own: on the reading
    /// consumer's, a broker that holds each fetch for its whole wait (tansu) answers them only
    /// after the fetch, once per partition.
    probe: BaseConsumer<LogContext>,
    topics: Vec<String>,
    /// The next offset to read of each assigned partition.
    next: HashMap<(String, i32), i64>,
    /// Where partitions not assigned yet start (stored progress), else at their start.
    start: HashMap<(String, i32), i64>,
    /// When the topics without partitions were last looked for.
    missing_checked: Option<Instant>,
}

impl TopicFeed {
    /// A feed of `topics`; a partition starts at its offset in `start`, else at its first
    /// record. `options` are the consumer's `[kafka.options]`.
    pub fn new(
        brokers: &str,
        topics: Vec<String>,
        options: &BTreeMap<String, String>,
        start: HashMap<(String, i32), i64>,
    ) -> Result<TopicFeed, KafkaError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (key, value) in options {
            config.set(key, value);
        }
        // Not in a group: progress is the caller's, and nothing is committed.
        config
            .set("group.id", "pgcdc-schema-changes")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Brokers that hold a fetch for its whole wait (tansu) would stall each read.
            .set("fetch.wait.max.ms", "50");
        let create = |config: &ClientConfig| {
            config
                .create_with_context(LogContext)
                .map_err(|error| match error {
                    RdKafkaError::ClientConfig(_, reason, key, _) => {
                        KafkaError::InvalidOption { key, reason }
                    }
                    other => KafkaError::CreateConsumer(other),
                })
        };
        let consumer = create(&config)?;
        let probe = create(&config)?;
        Ok(TopicFeed {
            consumer,
            probe,
            topics,
            next: HashMap::new(),
            start,
            missing_checked: None,
        })
    }

    /// Reads every partition of the feed's topics from where it stands up to the high
    /// watermark it has now, blocking. Topics that did not exist are looked for again when
    /// `look_for_new_topics` (the caller's consumer was assigned partitions: a topic may have
    /// been created) or every [`MISSING_RECHECK`]: a source creates its schema-change topic
    /// before any topic of its tables, so a record of a new table topic comes with an
    /// assignment made after the schema-change topic existed.
    pub fn read_to_end(
        &mut self,
        look_for_new_topics: bool,
    ) -> Result<Vec<ConsumedRecord>, KafkaError> {
        let recheck = look_for_new_topics
            || self
                .missing_checked
                .is_none_or(|at| at.elapsed() >= MISSING_RECHECK);
        let mut assign = false;
        for topic in &self.topics {
            if self.next.keys().any(|(t, _)| t == topic) || !recheck {
                continue;
            }
            for partition in self.partitions(topic)? {
                let (low, _) = self
                    .probe
                    .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                    .map_err(|source| KafkaError::Watermarks {
                        topic: topic.clone(),
                        source,
                    })?;
                let key = (topic.clone(), partition);
                let start = self.start.get(&key).copied().unwrap_or(low).max(low);
                self.next.insert(key, start);
                assign = true;
            }
        }
        if recheck {
            self.missing_checked = Some(Instant::now());
        }
        let ends = self.high_watermarks()?;
        let mut ends: HashMap<(String, i32), i64> = ends
            .into_iter()
            .filter(|(key, high)| self.next.get(key).is_some_and(|next| next < high))
            .collect();
        if assign {
            let mut list = TopicPartitionList::new();
            for ((topic, partition), offset) in &self.next {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(KafkaError::Consume)?;
            }
            self.consumer.assign(&list).map_err(KafkaError::Consume)?;
        }
        let mut records = Vec::new();
        let deadline = Instant::now() + READ_TIMEOUT;
        while !ends.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(KafkaError::Consume(RdKafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                )));
            }
            let message = match self.consumer.poll(wait.min(Duration::from_millis(100))) {
                None => continue,
                Some(Ok(message)) => message,
                Some(Err(RdKafkaError::PartitionEOF(_))) => continue,
                Some(Err(error)) => return Err(KafkaError::Consume(error)),
            };
            let key = (message.topic().to_owned(), message.partition());
            if self
                .next
                .get(&key)
                .is_some_and(|&next| message.offset() < next)
            {
                continue;
            }
            self.next.insert(key.clone(), message.offset() + 1);
            if ends
                .get(&key)
                .is_some_and(|&end| message.offset() + 1 >= end)
            {
                ends.remove(&key);
            }
            records.push(ConsumedRecord {
                topic: key.0,
                partition: key.1,
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            });
        }
        Ok(records)
    }

    /// The high watermark of every known partition, in one request per broker.
    fn high_watermarks(&self) -> Result<HashMap<(String, i32), i64>, KafkaError> {
        if self.next.is_empty() {
            return Ok(HashMap::new());
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition) in self.next.keys() {
            list.add_partition_offset(topic, *partition, Offset::End)
                .map_err(KafkaError::Consume)?;
        }
        // A timestamp of -1 (`Offset::End`) asks ListOffsets for the latest offset.
        let found = self
            .probe
            .offsets_for_times(list, REQUEST_TIMEOUT)
            .map_err(|source| KafkaError::Watermarks {
                topic: self.topics.join(", "),
                source,
            })?;
        let mut highs = HashMap::new();
        for element in found.elements() {
            if let Some(error) = element.error().err() {
                return Err(KafkaError::Watermarks {
                    topic: element.topic().to_owned(),
                    source: error,
                });
            }
            if let Offset::Offset(high) = element.offset() {
                highs.insert((element.topic().to_owned(), element.partition()), high);
            }
        }
        Ok(highs)
    }

    /// The partitions of `topic`; none when it does not exist.
    fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        let metadata = self
            .probe
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|source| KafkaError::Watermarks {
                topic: topic.to_owned(),
                source,
            })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }
}
