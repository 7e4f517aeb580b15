//! cdc-sink's configuration (SPEC §2): which topics to apply, to which target, and how.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::Deserialize;

use super::validate::check_postgres_url;
use super::{de, keys, ConfigError, ConfigFile, PostgresSection, SchemaRegistrySection};

/// Consumer group when none is configured: one sink per target is the common case.
pub const DEFAULT_GROUP_ID: &str = "pgcdc-sink";
/// Rows per target transaction: large enough that per-transaction costs (commit, fsync,
/// offsets row) vanish, small enough that a batch's rows stay a few MB in memory.
pub const DEFAULT_BATCH_SIZE: usize = 5000;
/// The longest a batch gathers changes while more keep arriving (one with nothing more ready is
/// applied at once): bounds the added latency under steady traffic.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_millis(200);
/// Missing tables are created by default: a new pipeline should work without hand-made DDL.
pub const DEFAULT_CREATE_TABLES: bool = true;
/// Most target connections a sink applies over (`apply.workers`).
pub const MAX_APPLY_WORKERS: usize = 64;
/// Most batch_size a sink may hold: memory is bounded by this many decoded rows.
pub const MAX_BATCH_SIZE: usize = 1_000_000;
/// Metrics address: loopback, one port above the source's default so both run on one host.
pub const DEFAULT_SINK_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9188));

/// cdc-sink's whole configuration (SPEC §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The target database.
    pub postgres: PostgresSection,
    /// What to apply and how.
    pub apply: ApplySection,
    /// The source database, read only by `verify`.
    #[serde(default)]
    pub source_postgres: Option<PostgresSection>,
    /// Where the change events come from.
    pub kafka: SinkKafkaSection,
    /// The schema registry Avro records name their schemas in.
    #[serde(default)]
    pub schema_registry: SchemaRegistrySection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: SinkMetricsSection,
}

/// `[apply]`: the topics, the consumer group and how changes land in the target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplySection {
    /// Topic names or `*` patterns, e.g. `shop.l1.*`; topics created later are picked up.
    pub topics: Vec<String>,
    /// Kafka consumer group.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Target schema for every table; `""` keeps the source's schema name.
    #[serde(default)]
    pub target_schema: String,
    /// What an insert does when its key already exists in the target.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Create missing target tables and add new columns from the schemas.
    #[serde(default = "default_create_tables")]
    pub create_tables: bool,
    /// Apply with `session_replication_role = replica` (triggers and FK checks off).
    #[serde(default)]
    pub disable_triggers: bool,
    /// Most changes in one target transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The longest a batch gathers changes while more keep arriving.
    #[serde(default = "default_batch_timeout", deserialize_with = "de::duration")]
    pub batch_timeout: Duration,
    /// Target connections applying in parallel, each partition's changes on one of them;
    /// default: the sink host's cores, at least 2.
    #[serde(default = "default_apply_workers")]
    pub workers: usize,
    /// Where undecodable or rejected records go, with error headers; `""` stops the sink instead.
    #[serde(default)]
    pub dead_letter_topic: String,
    /// Drop the target table when the source announces that its table is gone; by default the
    /// target keeps the table and its rows.
    #[serde(default)]
    pub drop_tables: bool,
    /// What to do with the source's schema changes (captured DDL): replay them or skip them.
    #[serde(default)]
    pub ddl: DdlMode,
}

/// `apply.ddl`: whether the sink replays the source's schema changes on the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DdlMode {
    /// Replay each change in its place among the rows: columns added, dropped, renamed,
    /// retyped, tables created and renamed.
    #[default]
    Apply,
    /// Leave the target's definitions alone; new columns are still added from new schemas
    /// (with `create_tables`).
    Skip,
}

/// `apply.on_conflict`: what an insert does when its key already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Overwrite the existing row (an upsert), as Debezium's JDBC sink in upsert mode.
    #[default]
    Update,
    /// Keep the existing row.
    Nothing,
    /// Treat it as a data error: dead-letter it or stop.
    Error,
}

/// `[kafka]` of the sink: the brokers and consumer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkKafkaSection {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka properties passed through to the consumer and the dead-letter producer.
    #[serde(default, deserialize_with = "de::librdkafka_options")]
    pub options: BTreeMap<String, String>,
}

/// `[metrics]` of the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkMetricsSection {
    /// Address to serve `/metrics` and `/healthz` on; `None` (configured as `""`) disables it.
    #[serde(
        default = "default_sink_metrics_listen",
        deserialize_with = "de::optional_socket_addr"
    )]
    pub listen: Option<SocketAddr>,
}

impl Default for SinkMetricsSection {
    fn default() -> Self {
        SinkMetricsSection {
            listen: default_sink_metrics_listen(),
        }
    }
}

fn default_group_id() -> String {
    DEFAULT_GROUP_ID.to_owned()
}

fn default_create_tables() -> bool {
    DEFAULT_CREATE_TABLES
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}

/// The sink host's cores, at least 2 and at most 8: the target usually has as many, and even on
/// one core a second connection applies while the first waits for its commit to be flushed.
fn default_apply_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 8)
}

fn default_sink_metrics_listen() -> Option<SocketAddr> {
    Some(DEFAULT_SINK_METRICS_LISTEN)
}

impl ConfigFile for SinkConfig {
    const REQUIRED: &'static [(&'static str, &'static str, &'static str)] = &[
        (
            "postgres",
            "url",
            "url = \"postgresql://apply@127.0.0.1:5433/replica\"",
        ),
        ("apply", "topics", "topics = [\"shop.l1.*\"]"),
        ("kafka", "brokers", "brokers = \"127.0.0.1:9092\""),
    ];

    fn sections() -> Vec<(&'static str, &'static [&'static str])> {
        vec![
            ("postgres", keys::field_names::<PostgresSection>()),
            ("apply", keys::field_names::<ApplySection>()),
            ("source_postgres", keys::field_names::<PostgresSection>()),
            ("kafka", keys::field_names::<SinkKafkaSection>()),
            (
                "schema_registry",
                keys::field_names::<SchemaRegistrySection>(),
            ),
            ("metrics", keys::field_names::<SinkMetricsSection>()),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_postgres_url(&self.postgres.url)
            .map_err(|message| ConfigError::invalid("postgres.url", message))?;
        if let Some(source) = &self.source_postgres {
            check_postgres_url(&source.url)
                .map_err(|message| ConfigError::invalid("source_postgres.url", message))?;
        }
        self.validate_apply()?;
        if self.kafka.brokers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "list at least one broker as host:port (comma-separated), e.g. \"127.0.0.1:9092\"",
            ));
        }
        self.schema_registry.validate()
    }
}

impl SinkConfig {
    fn validate_apply(&self) -> Result<(), ConfigError> {
        let apply = &self.apply;
        if apply.topics.is_empty() {
            return Err(ConfigError::invalid(
                "apply.topics",
                "list at least one topic or pattern, e.g. topics = [\"shop.l1.*\"]",
            ));
        }
        if let Some(bad) = apply.topics.iter().find(|t| !is_topic_name(t, true)) {
            return Err(ConfigError::invalid(
                "apply.topics",
                format!(
                    "\"{bad}\" is not a topic name or pattern: use A-Z a-z 0-9 . _ - and * as \
                     a wildcard, e.g. \"shop.l1.*\""
                ),
            ));
        }
        if apply.group_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "apply.group_id",
                "must not be empty, e.g. \"pgcdc-sink\"",
            ));
        }
        if apply.target_schema.len() > super::MAX_IDENTIFIER_LEN {
            return Err(ConfigError::invalid(
                "apply.target_schema",
                "is longer than PostgreSQL's 63-byte identifier limit",
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&apply.batch_size) {
            return Err(ConfigError::invalid(
                "apply.batch_size",
                format!(
                    "{} is out of range: use 1 to {MAX_BATCH_SIZE}, e.g. 5000",
                    apply.batch_size
                ),
            ));
        }
        if !(1..=MAX_APPLY_WORKERS).contains(&apply.workers) {
            return Err(ConfigError::invalid(
                "apply.workers",
                format!(
                    "{} is out of range: use 1 to {MAX_APPLY_WORKERS}, e.g. 4",
                    apply.workers
                ),
            ));
        }
        if apply.batch_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "apply.batch_timeout",
                "must be longer than 0, e.g. \"200ms\"",
            ));
        }
        if !apply.dead_letter_topic.is_empty() && !is_topic_name(&apply.dead_letter_topic, false) {
            return Err(ConfigError::invalid(
                "apply.dead_letter_topic",
                format!(
                    "\"{}\" is not a topic name: use A-Z a-z 0-9 . _ -, e.g. \"pgcdc-sink.dlq\", \
                     or \"\" to stop on a poison message",
                    apply.dead_letter_topic
                ),
            ));
        }
        Ok(())
    }

    /// The target schema for a source schema: `apply.target_schema`, or the same name.
    pub fn target_schema<'a>(&'a self, source_schema: &'a str) -> &'a str {
        if self.apply.target_schema.is_empty() {
            source_schema
        } else {
            &self.apply.target_schema
        }
    }
}

/// Kafka's legal topic characters, plus `*` in patterns.
fn is_topic_name(name: &str, pattern: bool) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || (pattern && b == b'*')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/sink.example.toml");

    const MINIMAL: &str = r#"
        [postgres]
        url = "postgresql://apply@127.0.0.1:5433/replica"
        [apply]
        topics = ["shop.l1.*"]
        [kafka]
        brokers = "127.0.0.1:9092"
    "#;

    fn error(text: &str, env: &[(&str, &str)]) -> String {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        SinkConfig::from_toml_str(text, env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn example_file_parses_and_documents_every_key() {
        let config = SinkConfig::from_toml_str(EXAMPLE, Vec::new()).unwrap();
        assert_eq!(config.apply.topics, ["shop.l1.*"]);
        assert_eq!(config.apply.on_conflict, OnConflict::Update);
        assert!(config.source_postgres.is_some());
        for (section, fields) in SinkConfig::sections() {
            assert!(
                EXAMPLE.contains(&format!("[{section}]")),
                "[{section}] missing"
            );
            for field in fields {
                assert!(
                    EXAMPLE.contains(&format!("\n{field} = "))
                        || EXAMPLE.contains(&format!("\n# {field} = "))
                        || EXAMPLE.contains(&format!("[{section}.{field}]")),
                    "{section}.{field} missing from the example"
                );
            }
        }
    }

    #[test]
    fn defaults_apply_to_a_minimal_file() {
        let config = SinkConfig::from_toml_str(MINIMAL, Vec::new()).unwrap();
        let apply = &config.apply;
        assert_eq!(apply.group_id, DEFAULT_GROUP_ID);
        assert_eq!(apply.target_schema, "");
        assert_eq!(apply.on_conflict, OnConflict::Update);
        assert!(apply.create_tables);
        assert!(!apply.disable_triggers);
        assert_eq!(apply.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(apply.batch_timeout, DEFAULT_BATCH_TIMEOUT);
        assert!((2..=8).contains(&apply.workers), "{}", apply.workers);
        assert_eq!(apply.dead_letter_topic, "");
        assert!(!apply.drop_tables);
        assert_eq!(apply.ddl, DdlMode::Apply);
        assert!(config.source_postgres.is_none());
        assert_eq!(config.metrics.listen, Some(DEFAULT_SINK_METRICS_LISTEN));
        assert_eq!(config.target_schema("l1"), "l1");
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = error(&format!("{MINIMAL}\n[apply.x]\n"), &[]);
        assert!(unknown.contains("apply.x"), "{unknown}");
        let missing = error(
            "[postgres]\nurl = \"postgresql://a@h/d\"\n[kafka]\nbrokers = \"b:1\"\n",
            &[],
        );
        assert!(
            missing.starts_with("missing key `apply.topics`"),
            "{missing}"
        );
        for (var, value, key) in [
            ("PGCDC__APPLY__BATCH_SIZE", "0", "apply.batch_size"),
            ("PGCDC__APPLY__WORKERS", "0", "apply.workers"),
            (
                "PGCDC__APPLY__BATCH_TIMEOUT",
                "\"0s\"",
                "apply.batch_timeout",
            ),
            (
                "PGCDC__APPLY__ON_CONFLICT",
                "\"replace\"",
                "apply.on_conflict",
            ),
            ("PGCDC__APPLY__TOPICS", "[\"a b\"]", "apply.topics"),
            (
                "PGCDC__APPLY__DEAD_LETTER_TOPIC",
                "\"dl*\"",
                "apply.dead_letter_topic",
            ),
            ("PGCDC__POSTGRES__URL", "\"mysql://x\"", "postgres.url"),
            (
                "PGCDC__SCHEMA_REGISTRY__URL",
                "\"ftp://x\"",
                "schema_registry.url",
            ),
        ] {
            let message = error(MINIMAL, &[(var, value)]);
            assert!(message.contains(key), "{var}: {message}");
            assert!(message.contains(var), "{var}: {message}");
        }
    }

    #[test]
    fn target_schema_overrides_the_source_schema() {
        let config = SinkConfig::from_toml_str(
            MINIMAL,
            [(
                "PGCDC__APPLY__TARGET_SCHEMA".to_owned(),
                "\"replica\"".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(config.target_schema("l1"), "replica");
    }
}
