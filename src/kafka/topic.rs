//! Topic creation through the admin API (CreateTopics), with the broker's defaults unless
//! `[kafka.topic]` says otherwise.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::error::KafkaError;
use super::producer::LogContext;

/// How pgcdc creates missing topics (`[kafka.topic]`); unset fields take the broker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Partition count of new topics.
    pub partitions: Option<i32>,
    /// Replication factor of new topics.
    pub replication_factor: Option<i32>,
    /// `cleanup.policy` of new topics (`delete`, `compact`, `compact,delete`).
    pub cleanup_policy: Option<String>,
}

/// Asks the broker for its own default (KIP-464, Kafka ≥ 2.4; tansu 0.6 takes it too).
const BROKER_DEFAULT: i32 = -1;
/// Used instead of [`BROKER_DEFAULT`] when a broker does not understand it: the one value
/// that works on any cluster, including a single development broker.
const FALLBACK: i32 = 1;
/// How long the broker may take to answer, and to finish creating the topic.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `topic` on `brokers` with a short-lived admin client (for topics a process writes
/// besides its main ones, like the sink's dead-letter topic); that it exists is success.
pub async fn ensure_topic(
    brokers: &str,
    options: &std::collections::BTreeMap<String, String>,
    topic: &str,
    settings: &TopicSettings,
) -> Result<(), KafkaError> {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in options {
        config.set(key, value);
    }
    let admin: AdminClient<LogContext> =
        config
            .create_with_context(LogContext)
            .map_err(|source| KafkaError::CreateTopic {
                topic: topic.to_owned(),
                source,
            })?;
    create_topic(&admin, topic, settings).await
}

/// Creates `topic`; that it already exists is success.
pub(super) async fn create_topic(
    admin: &AdminClient<LogContext>,
    topic: &str,
    settings: &TopicSettings,
) -> Result<(), KafkaError> {
    let partitions = settings.partitions.unwrap_or(BROKER_DEFAULT);
    let replication = settings.replication_factor.unwrap_or(BROKER_DEFAULT);
    let policy = settings.cleanup_policy.as_deref();
    let uses_defaults = partitions == BROKER_DEFAULT || replication == BROKER_DEFAULT;
    let result = match request(admin, topic, partitions, replication, policy).await {
        Err(error) if uses_defaults && defaults_rejected(&error) => {
            tracing::warn!(
                topic,
                %error,
                "the broker does not take default partition counts and replication factors \
                 (Kafka < 2.4): creating the topic with 1 partition and replication factor 1; \
                 set [kafka.topic] partitions and replication_factor to choose"
            );
            let fallback = |value: i32| {
                if value == BROKER_DEFAULT {
                    FALLBACK
                } else {
                    value
                }
            };
            request(
                admin,
                topic,
                fallback(partitions),
                fallback(replication),
                policy,
            )
            .await
        }
        other => other,
    };
    result.map_err(|source| KafkaError::CreateTopic {
        topic: topic.to_owned(),
        source,
    })
}

async fn request(
    admin: &AdminClient<LogContext>,
    topic: &str,
    partitions: i32,
    replication: i32,
    cleanup_policy: Option<&str>,
) -> Result<(), RdKafkaError> {
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    if let Some(policy) = cleanup_policy {
        new_topic = new_topic.set("cleanup.policy", policy);
    }
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    for result in admin.create_topics([&new_topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(RdKafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Whether the error is how a broker (or librdkafka, for brokers older than CreateTopics v4)
/// says it does not understand [`BROKER_DEFAULT`].
fn defaults_rejected(error: &RdKafkaError) -> bool {
    matches!(
        error,
        RdKafkaError::AdminOp(
            RDKafkaErrorCode::UnsupportedFeature
                | RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::InvalidRequest
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_only_when_the_broker_rejects_defaults() {
        for code in [
            RDKafkaErrorCode::UnsupportedFeature,
            RDKafkaErrorCode::UnsupportedVersion,
            RDKafkaErrorCode::InvalidPartitions,
            RDKafkaErrorCode::InvalidReplicationFactor,
            RDKafkaErrorCode::InvalidRequest,
        ] {
            assert!(defaults_rejected(&RdKafkaError::AdminOp(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::InvalidTopic,
        ] {
            assert!(!defaults_rejected(&RdKafkaError::AdminOp(code)), "{code:?}");
        }
        assert!(!defaults_rejected(&RdKafkaError::Canceled));
    }
}
