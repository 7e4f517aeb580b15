//! The dead-letter topic: records the sink cannot apply go there, unchanged, with headers saying
//! where they came from and why. They are flushed (acknowledged by the broker) before the
//! batch that skips them commits, so a poison record is never both skipped and lost.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use super::SinkError;
use crate::kafka::{ConsumedRecord, TopicSettings};

/// Header names, as Kafka Connect's dead-letter queue spells them.
pub const HEADER_TOPIC: &str = "__connect.errors.topic";
/// The original partition (decimal text).
pub const HEADER_PARTITION: &str = "__connect.errors.partition";
/// The original offset (decimal text).
pub const HEADER_OFFSET: &str = "__connect.errors.offset";
/// Why the record could not be applied.
pub const HEADER_ERROR: &str = "__connect.errors.exception.message";
/// The target's SQL state, when the target refused the record (pgcdc's own header).
pub const HEADER_SQL_STATE: &str = "__pgcdc.errors.sqlstate";

/// How long a flush before a batch commit may wait for the broker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Remembers the first failed delivery, so a flush can tell success from silent loss.
#[derive(Default)]
pub struct DeliveryCheck {
    failure: Mutex<Option<rdkafka::error::KafkaError>>,
}

impl ClientContext for DeliveryCheck {}

impl ProducerContext for DeliveryCheck {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut failure = self.failure.lock().expect("delivery lock");
            failure.get_or_insert_with(|| error.clone());
        }
    }
}

/// A producer for the dead-letter topic.
pub struct DeadLetters {
    topic: String,
    producer: BaseProducer<DeliveryCheck>,
    pending: usize,
}

impl DeadLetters {
    /// A producer for `topic` on `brokers`, idempotent and acknowledged by all replicas; the
    /// topic is created (with the broker's defaults) when missing.
    pub async fn new(
        brokers: &str,
        topic: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<DeadLetters, SinkError> {
        crate::kafka::ensure_topic(brokers, options, topic, &TopicSettings::default()).await?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        for (key, value) in options {
            config.set(key, value);
        }
        let producer = config
            .create_with_context(DeliveryCheck::default())
            .map_err(|source| SinkError::Kafka {
                what: format!("create the producer for dead-letter topic {topic}"),
                source,
            })?;
        Ok(DeadLetters {
            topic: topic.to_owned(),
            producer,
            pending: 0,
        })
    }

    /// Enqueues `record` with the reason it could not be applied and, when the target refused
    /// it, the target's SQL state.
    pub fn send(
        &mut self,
        record: &ConsumedRecord,
        reason: &str,
        sql_state: Option<&str>,
    ) -> Result<(), SinkError> {
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(record.topic.as_bytes()),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(offset.as_bytes()),
            })
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(reason.as_bytes()),
            });
        if let Some(sql_state) = sql_state {
            headers = headers.insert(Header {
                key: HEADER_SQL_STATE,
                value: Some(sql_state.as_bytes()),
            });
        }
        let mut out = BaseRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            out = out.payload(value.as_slice());
        }
        self.producer
            .send(out)
            .map_err(|(source, _)| SinkError::Kafka {
                what: format!("enqueue a record for dead-letter topic {}", self.topic),
                source,
            })?;
        self.pending += 1;
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            reason,
            dead_letter_topic = self.topic,
            "record sent to the dead-letter topic"
        );
        Ok(())
    }

    /// Waits until the broker acknowledged every record sent so far; an error if any failed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending == 0 {
            return Ok(());
        }
        let what = || format!("deliver records to dead-letter topic {}", self.topic);
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|source| SinkError::Kafka {
                what: what(),
                source,
            })?;
        let failure = self
            .producer
            .context()
            .failure
            .lock()
            .expect("delivery lock")
            .take();
        if let Some(source) = failure {
            return Err(SinkError::Kafka {
                what: what(),
                source,
            });
        }
        self.pending = 0;
        Ok(())
    }
}
