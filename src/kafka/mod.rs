//! Kafka I/O: the source's producer that reports deliveries to the acknowledged-LSN tracker
//! ([`progress`]), topic creation, the sink's consumer and schema-change feed,
//! and a probe for metadata and watermarks.

mod compacted;
mod consumer;
mod error;
mod feed;
mod fetch_watch;
mod probe;
mod producer;
pub mod progress;
mod topic;

pub use compacted::read_latest;
pub use consumer::{
    subscription, topic_matches, ChangeConsumer, Consumed, ConsumedRecord, LagReport, StartOffsets,
};
pub use error::{KafkaError, SendError};
pub use feed::TopicFeed;
pub use probe::Probe;
pub use producer::{Producer, ProducerSettings, BACKPRESSURE_PAUSE};
pub use topic::{ensure_topic, TopicSettings};
