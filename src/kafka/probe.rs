//! Metadata and watermark questions on a connection of their own. On a consumer's connection
//! they queue behind its fetches, and a broker that holds each fetch for its whole wait (tansu)
//! answers them only after the fetch, one partition at a time.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::producer::LogContext;
use super::KafkaError;

/// How long a metadata or watermark request may take (a busy broker answers slowly).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client that only asks the broker about topics; its calls block.
pub struct Probe {
    client: BaseConsumer<LogContext>,
}

impl Probe {
    /// A probe of `brokers`; `options` are the consumer's `[kafka.options]`.
    pub fn new(brokers: &str, options: &BTreeMap<String, String>) -> Result<Probe, KafkaError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (key, value) in options {
            config.set(key, value);
        }
        let client = config
            .create_with_context(LogContext)
            .map_err(|error| KafkaError::creating(error, KafkaError::CreateConsumer))?;
        Ok(Probe { client })
    }

    /// The partitions of `topic`; none when it does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        let metadata = self
            .client
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|source| watermarks_error(topic, source))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// The low and high watermark of one partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.client
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|source| watermarks_error(topic, source))
    }

    /// Each partition of `topic` with its low and high watermark; none when the topic does
    /// not exist.
    pub fn topic_watermarks(&self, topic: &str) -> Result<HashMap<i32, (i64, i64)>, KafkaError> {
        self.partitions(topic)?
            .into_iter()
            .map(|partition| Ok((partition, self.watermarks(topic, partition)?)))
            .collect()
    }

    /// The high watermark of each of `partitions`, in one request per broker.
    pub fn high_watermarks<'a>(
        &self,
        partitions: impl IntoIterator<Item = &'a (String, i32)>,
    ) -> Result<HashMap<(String, i32), i64>, KafkaError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition_offset(topic, *partition, Offset::End)
                .map_err(KafkaError::Consume)?;
        }
        if list.count() == 0 {
            return Ok(HashMap::new());
        }
        let topics = || {
            let elements = list.elements();
            let mut names: Vec<&str> = elements.iter().map(|e| e.topic()).collect();
            names.dedup();
            names.join(", ")
        };
        // A timestamp of -1 (`Offset::End`) asks ListOffsets for the latest offset.
        let found = self
            .client
            .offsets_for_times(list.clone(), REQUEST_TIMEOUT)
            .map_err(|source| watermarks_error(&topics(), source))?;
        let mut highs = HashMap::new();
        for element in found.elements() {
            if let Some(error) = element.error().err() {
                return Err(watermarks_error(element.topic(), error));
            }
            if let Offset::Offset(high) = element.offset() {
                highs.insert((element.topic().to_owned(), element.partition()), high);
            }
        }
        Ok(highs)
    }
}

fn watermarks_error(topic: &str, source: RdKafkaError) -> KafkaError {
    KafkaError::Watermarks {
        topic: topic.to_owned(),
        source,
    }
}
