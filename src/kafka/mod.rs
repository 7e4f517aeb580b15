//! Kafka I/O for the source: the producer that reports deliveries to the acknowledged-LSN
//! tracker ([`crate::source::progress`]), and topic creation.

mod error;
mod producer;
mod topic;

pub use error::{KafkaError, SendError};
pub use producer::{Producer, ProducerSettings};
pub use topic::TopicSettings;
