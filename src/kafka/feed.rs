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
use super::probe::Probe;
use super::producer::LogContext;
use super::KafkaError;

/// How long reading up to the high watermarks may take before it counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often topics that did not exist are looked for again, besides when asked to.
const MISSING_RECHECK: Duration = Duration::from_secs(5);

/// Named topics read from given offsets up to their end, on request.
pub struct TopicFeed {
    consumer: BaseConsumer<LogContext>,
    /// Asks for metadata and watermarks without waiting behind the reader's fetches.
    probe: Probe,
    topics: Vec<String>,
    /// The next offset to read of each partition found.
    next: HashMap<(String, i32), i64>,
    /// Where partitions not assigned yet start (stored progress), else at their start.
    start: HashMap<(String, i32), i64>,
    /// When the topics without partitions were last looked for.
    missing_checked: Option<Instant>,
    /// The caller asked to look for new topics and they were not looked for since.
    look_requested: bool,
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
        let consumer = config
            .create_with_context(LogContext)
            .map_err(|error| KafkaError::creating(error, KafkaError::CreateConsumer))?;
        Ok(TopicFeed {
            consumer,
            probe: Probe::new(brokers, options)?,
            topics,
            next: HashMap::new(),
            start,
            missing_checked: None,
            look_requested: false,
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
        // A request to look survives a read that fails before looking.
        self.look_requested |= look_for_new_topics;
        let recheck = self.look_requested
            || self
                .missing_checked
                .is_none_or(|at| at.elapsed() >= MISSING_RECHECK);
        for topic in &self.topics {
            if self.next.keys().any(|(t, _)| t == topic) || !recheck {
                continue;
            }
            for partition in self.probe.partitions(topic)? {
                let (low, _) = self.probe.watermarks(topic, partition)?;
                let key = (topic.clone(), partition);
                let start = self.start.get(&key).copied().unwrap_or(low).max(low);
                self.next.insert(key, start);
            }
        }
        if recheck {
            self.missing_checked = Some(Instant::now());
            self.look_requested = false;
        }
        let ends = self.probe.high_watermarks(self.next.keys())?;
        let ends: HashMap<(String, i32), i64> = ends
            .into_iter()
            .filter(|(key, high)| self.next.get(key).is_some_and(|next| next < high))
            .collect();
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        // Assigned only while reading: an assigned consumer fetches all the time in the
        // background, and a broker answering many idle fetches slows down for everyone.
        let mut list = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            list.add_partition_offset(
                topic,
                *partition,
                Offset::Offset(self.next[&(topic.clone(), *partition)]),
            )
            .map_err(KafkaError::Consume)?;
        }
        self.consumer.assign(&list).map_err(KafkaError::Consume)?;
        let read = self.read_until(ends);
        self.consumer.unassign().map_err(KafkaError::Consume)?;
        read
    }

    /// Polls the assigned partitions until each reached its end in `ends`. The next offsets
    /// move only when every partition got there: records read before a failure are read again.
    fn read_until(
        &mut self,
        mut ends: HashMap<(String, i32), i64>,
    ) -> Result<Vec<ConsumedRecord>, KafkaError> {
        let mut next: HashMap<(String, i32), i64> = ends
            .keys()
            .map(|key| (key.clone(), self.next[key]))
            .collect();
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
            if next.get(&key).is_none_or(|&next| message.offset() < next) {
                continue;
            }
            next.insert(key.clone(), message.offset() + 1);
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
        self.next.extend(next);
        Ok(records)
    }
}
