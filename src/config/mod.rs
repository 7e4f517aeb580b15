//! cdc-source's and cdc-sink's configuration (SPEC §2): a TOML file, `PGCDC__<SECTION>__<KEY>` environment
//! overrides on top of it, then typed deserialization and validation.
//!
//! ```text
//! file ──toml──▶ document ──env overrides──▶ key check ──serde──▶ SourceConfig ──validate──▶ ok
//! ```
//!
//! Unknown keys are found by walking the document against the field lists serde derives for each
//! section ([`keys`]), so the lists never drift from the structs and the error can name the full
//! key path and the section's valid keys; type errors get their key path from
//! `serde_path_to_error`. Every error names the key as `section.key` and says how to fix it.

mod de;
mod keys;
mod overrides;
#[cfg(test)]
mod reference_tests;
mod registry;
mod sink;
mod table_filter;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::event::types::{
    BinaryHandling, DecimalHandling, HstoreHandling, IntervalHandling, TimePrecision,
};

pub use registry::{RegistryAccess, SchemaRegistrySection};
pub use sink::{
    ApplySection, DdlMode, OnConflict, SinkConfig, SinkKafkaSection, SinkMetricsSection,
    DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TIMEOUT, DEFAULT_GROUP_ID, DEFAULT_SINK_METRICS_LISTEN,
};
pub use table_filter::TableFilter;

/// Replication slot name when none is configured: one pgcdc per database is the common case,
/// and a fixed name lets `teardown` find what `init` created.
pub const DEFAULT_SLOT: &str = "pgcdc";
/// Publication name when none is configured: same reason as [`DEFAULT_SLOT`].
pub const DEFAULT_PUBLICATION: &str = "pgcdc";
/// Snapshot reader connections when none are configured (one per core on most servers).
pub const DEFAULT_SNAPSHOT_WORKERS: usize = 4;
/// Initial-snapshot chunk size: large enough that per-chunk queries cost little, small
/// enough that a table of a few hundred thousand rows spreads over every worker.
pub const DEFAULT_SNAPSHOT_CHUNK_SIZE: u64 = 50_000;
/// Incremental-snapshot chunk size: one chunk is buffered while its window is open.
pub const DEFAULT_INCREMENTAL_CHUNK_SIZE: u64 = 2048;

/// Snapshot mode when none is configured: Debezium's default, so a new consumer gets the
/// current rows and then every change.
pub const DEFAULT_SNAPSHOT: SnapshotMode = SnapshotMode::Initial;
/// Heartbeat interval: keeps an idle slot's confirmed LSN near the WAL end (so WAL does not pile
/// up) at the cost of one small record per interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Standby status interval: bounds how far the server's flushed LSN trails broker
/// acknowledgements, far below the server's default `wal_sender_timeout` of 60 s.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Tables created later are looked for this often: a few seconds after its creation a table
/// is captured, and the catalog query it takes is cheap.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// In-progress transaction streaming is off by default: it needs PostgreSQL 14+ and local disk.
pub const DEFAULT_STREAMING: bool = false;
/// Tombstones are on by default: Debezium emits them so log compaction can drop deleted keys.
pub const DEFAULT_TOMBSTONES: bool = true;
/// Metrics address: loopback, so metrics are not exposed beyond the host unless asked for.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9187));
/// Longest PostgreSQL identifier in bytes (NAMEDATALEN − 1); longer slot or publication names
/// are refused or truncated by the server.
pub const MAX_IDENTIFIER_LEN: usize = 63;
/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PGCDC__";

/// cdc-source's whole configuration (SPEC §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The database to capture from.
    pub postgres: PostgresSection,
    /// What to capture and how.
    pub capture: CaptureSection,
    /// Where the change events go.
    pub kafka: KafkaSection,
    /// The schema registry for Avro; absent is fine for JSON.
    #[serde(default)]
    pub schema_registry: SchemaRegistrySection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[postgres]`: the connection to the captured database.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// libpq-style URL (`postgresql://user@host:port/db?sslmode=...`); may carry a password, so
    /// print it only through [`PostgresSection::url_redacted`].
    pub url: String,
    /// File holding the password (trailing newline ignored); `""` or absent: none.
    #[serde(default, deserialize_with = "de::optional_path")]
    pub password_file: Option<PathBuf>,
}

/// `[capture]`: the slot, the publication and which tables and columns to capture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// Logical replication slot (pgoutput).
    #[serde(default = "default_slot")]
    pub slot: String,
    /// Publication; created by `init`/`run` for `tables` when missing.
    #[serde(default = "default_publication")]
    pub publication: String,
    /// Include patterns, `schema.table` with `*` wildcards; at least one.
    pub tables: Vec<String>,
    /// Exclude patterns, same syntax; they win over `tables`.
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Columns left out of every event, `schema.table.column` with `*` wildcards.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// When to snapshot the existing rows.
    #[serde(default = "default_snapshot")]
    pub snapshot: SnapshotMode,
    /// How often to emit a heartbeat; `None` (configured as `"0"`) disables heartbeats.
    #[serde(
        default = "default_heartbeat_interval",
        deserialize_with = "de::optional_duration"
    )]
    pub heartbeat_interval: Option<Duration>,
    /// PG14+: have the server stream in-progress transactions (spooled to disk until commit).
    #[serde(default = "default_streaming")]
    pub streaming: bool,
    /// How often standby status updates (the flushed LSN) go to the server.
    #[serde(default = "default_status_interval", deserialize_with = "de::duration")]
    pub status_interval: Duration,
    /// Connections that read the initial snapshot in parallel, sharing its exported snapshot.
    #[serde(default = "default_snapshot_workers")]
    pub snapshot_workers: usize,
    /// Rows per chunk of the initial snapshot (key ranges, or ctid block ranges without a key).
    #[serde(default = "default_snapshot_chunk_size")]
    pub snapshot_chunk_size: u64,
    /// Rows per chunk of an incremental snapshot: held in memory while its window is open.
    #[serde(default = "default_incremental_chunk_size")]
    pub incremental_chunk_size: u64,
    /// `schema.table` taking Debezium's `execute-snapshot` signals; `None` (configured as
    /// `""`): none.
    #[serde(default, deserialize_with = "de::optional_string")]
    pub signal_table: Option<String>,
    /// How often the catalog is read for tables that `tables` matches but the source does not
    /// capture yet (created, renamed or detached since); `None` (configured as `"0"`): never.
    #[serde(
        default = "default_discovery_interval",
        deserialize_with = "de::optional_duration"
    )]
    pub discovery_interval: Option<Duration>,
    /// DDL capture: event triggers publish every schema change of the captured tables to
    /// `<prefix>.schema_changes`, in order with the rows. `None` (unset): on when the role may
    /// create event triggers (superuser, or `rds_superuser` on RDS), else off with a warning.
    #[serde(default)]
    pub ddl: Option<bool>,
    /// Debezium's `decimal.handling.mode`: numeric and money as `precise` Decimals, as
    /// `string`s or as `double`s.
    #[serde(default)]
    pub decimal_handling_mode: DecimalHandling,
    /// Debezium's `interval.handling.mode`: microseconds (`numeric`) or ISO 8601 (`string`).
    #[serde(default)]
    pub interval_handling_mode: IntervalHandling,
    /// Debezium's `money.fraction.digits`: the scale of money's Decimal (values round half up).
    #[serde(default = "default_money_fraction_digits")]
    pub money_fraction_digits: u32,
    /// Debezium's `time.precision.mode`: `microseconds`, `adaptive_time_microseconds` or
    /// `connect`.
    #[serde(default)]
    pub time_precision_mode: TimePrecision,
    /// Debezium's `binary.handling.mode`: bytea as `bytes`, or as `base64`, `base64-url-safe`
    /// or `hex` text.
    #[serde(default)]
    pub binary_handling_mode: BinaryHandling,
    /// Debezium's `hstore.handling.mode`: hstore as a JSON object (`json`) or a `map`.
    #[serde(default)]
    pub hstore_handling_mode: HstoreHandling,
}

/// `capture.snapshot`: when to copy the existing rows (Debezium's `snapshot.mode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when no snapshot was completed for this slot yet, then stream.
    Initial,
    /// Never snapshot; stream from the slot's position (alias `never`).
    #[serde(alias = "never")]
    NoData,
    /// Snapshot as `initial` does, then stop without streaming.
    InitialOnly,
    /// Snapshot when the slot is new or its position is no longer available, then stream.
    WhenNeeded,
    /// Snapshot on every start, then stream.
    Always,
}

impl SnapshotMode {
    /// The mode as `capture.snapshot` spells it.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMode::Initial => "initial",
            SnapshotMode::NoData => "no_data",
            SnapshotMode::InitialOnly => "initial_only",
            SnapshotMode::WhenNeeded => "when_needed",
            SnapshotMode::Always => "always",
        }
    }

    /// Whether a start with an invalidated slot drops it and snapshots again, rather than
    /// stopping with the fix.
    pub fn snapshots_after_lost_slot(self) -> bool {
        matches!(self, SnapshotMode::WhenNeeded | SnapshotMode::Always)
    }
}

/// `[kafka]`: the brokers, topic naming, encoding and producer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics are `<topic_prefix>.<schema>.<table>`.
    pub topic_prefix: String,
    /// Record encoding.
    pub format: Format,
    /// Emit a null-value record after each delete.
    #[serde(default = "default_tombstones")]
    pub tombstones: bool,
    /// librdkafka properties passed through; scalar TOML values become strings and dotted TOML
    /// keys (`compression.type = "lz4"` unquoted) are flattened back to `compression.type`.
    #[serde(default, deserialize_with = "de::librdkafka_options")]
    pub options: BTreeMap<String, String>,
    /// Settings for the topics pgcdc creates.
    #[serde(default)]
    pub topic: TopicSection,
}

/// `kafka.format`: how keys and values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Avro in the Confluent wire format, schemas registered in `schema_registry`.
    Avro,
    /// Kafka Connect JsonConverter envelopes (`{"schema":…,"payload":…}`), same field names.
    Json,
}

/// `[kafka.topic]`: settings for topics pgcdc creates; `None` leaves the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSection {
    /// Partition count.
    pub partitions: Option<i32>,
    /// Replication factor.
    pub replication_factor: Option<i32>,
    /// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub cleanup_policy: Option<String>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address to serve `/metrics` and `/healthz` on; `None` (configured as `""`) disables it.
    #[serde(
        default = "default_metrics_listen",
        deserialize_with = "de::optional_socket_addr"
    )]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: default_metrics_listen(),
        }
    }
}

fn default_slot() -> String {
    DEFAULT_SLOT.to_owned()
}

fn default_publication() -> String {
    DEFAULT_PUBLICATION.to_owned()
}

fn default_snapshot() -> SnapshotMode {
    DEFAULT_SNAPSHOT
}

fn default_heartbeat_interval() -> Option<Duration> {
    Some(DEFAULT_HEARTBEAT_INTERVAL)
}

fn default_money_fraction_digits() -> u32 {
    crate::event::MONEY_FRACTION_DIGITS
}

fn default_snapshot_workers() -> usize {
    DEFAULT_SNAPSHOT_WORKERS
}

fn default_snapshot_chunk_size() -> u64 {
    DEFAULT_SNAPSHOT_CHUNK_SIZE
}

fn default_incremental_chunk_size() -> u64 {
    DEFAULT_INCREMENTAL_CHUNK_SIZE
}

fn default_discovery_interval() -> Option<Duration> {
    Some(DEFAULT_DISCOVERY_INTERVAL)
}

fn default_status_interval() -> Duration {
    DEFAULT_STATUS_INTERVAL
}

fn default_streaming() -> bool {
    DEFAULT_STREAMING
}

fn default_tombstones() -> bool {
    DEFAULT_TOMBSTONES
}

fn default_metrics_listen() -> Option<SocketAddr> {
    Some(DEFAULT_METRICS_LISTEN)
}

/// Why the configuration could not be loaded; each message names the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {}: {source}; check the --config path", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin} is not valid TOML: {message}")]
    Syntax {
        /// What was parsed (the file name).
        origin: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A key no section defines.
    #[error("unknown key `{key}`{}; the valid keys {place} are: {valid}", set_by(.var))]
    UnknownKey {
        /// Full key path, e.g. `capture.slott`.
        key: String,
        /// The environment variable that set it, if one did.
        var: Option<String>,
        /// Where the key was found, e.g. `in [capture]`.
        place: String,
        /// The valid keys there, comma-separated.
        valid: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}`: add it under [{section}], e.g. {example}")]
    Missing {
        /// Full key path, e.g. `capture.tables`.
        key: String,
        /// Its section.
        section: &'static str,
        /// A line to add.
        example: &'static str,
    },
    /// A value of the wrong type or one that fails validation.
    #[error("`{key}`{}: {message}", set_by(.var))]
    Invalid {
        /// Full key path, e.g. `capture.slot`.
        key: String,
        /// The environment variable that set it, if one did.
        var: Option<String>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A `PGCDC__` variable that does not name a key or has an unusable value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `postgres.password_file` could not be read or holds no password.
    #[error("`postgres.password_file`: {} {problem}; fix the file or set password_file = \"\" for no password", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

fn set_by(var: &Option<String>) -> String {
    var.as_ref()
        .map(|var| format!(" (set by {var})"))
        .unwrap_or_default()
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            var: None,
            message: message.into(),
        }
    }
}

/// A configuration file: its sections' keys, its required keys and its own validation.
pub trait ConfigFile: DeserializeOwned {
    /// Required keys as (section, key, a line to add); serde would say only "missing field".
    const REQUIRED: &'static [(&'static str, &'static str, &'static str)];

    /// Every section (nested ones as `kafka.topic`) with the keys it accepts.
    fn sections() -> Vec<(&'static str, &'static [&'static str])>;

    /// Checks values and rules between keys that serde cannot express.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Reads FILE, applies `PGCDC__SECTION__KEY` environment overrides, deserializes and validates.
    fn load(path: &Path) -> Result<Self, ConfigError> {
        let env = overrides::process_env()?;
        Self::load_with_env(path, env)
    }

    /// Same as [`ConfigFile::load`], with the environment given explicitly (for tests).
    fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse(&text, &path.display().to_string(), env)
    }

    /// Parses configuration text, applies the given `PGCDC__` overrides and validates.
    fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        parse(text, "the configuration", env)
    }
}

impl ConfigFile for SourceConfig {
    const REQUIRED: &'static [(&'static str, &'static str, &'static str)] = &[
        (
            "postgres",
            "url",
            "url = \"postgresql://replicator@127.0.0.1:5432/shop\"",
        ),
        ("capture", "tables", "tables = [\"public.*\"]"),
        ("kafka", "brokers", "brokers = \"127.0.0.1:9092\""),
        ("kafka", "topic_prefix", "topic_prefix = \"shop\""),
        ("kafka", "format", "format = \"avro\" (or \"json\")"),
    ];

    fn sections() -> Vec<(&'static str, &'static [&'static str])> {
        vec![
            ("postgres", keys::field_names::<PostgresSection>()),
            ("capture", keys::field_names::<CaptureSection>()),
            ("kafka", keys::field_names::<KafkaSection>()),
            ("kafka.topic", keys::field_names::<TopicSection>()),
            (
                "schema_registry",
                keys::field_names::<SchemaRegistrySection>(),
            ),
            ("metrics", keys::field_names::<MetricsSection>()),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_source()
    }
}

impl PostgresSection {
    /// The password from `password_file`, if set, without trailing newlines.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        read_secret_file(path)
            .map(Some)
            .map_err(|problem| ConfigError::PasswordFile {
                path: path.clone(),
                problem,
            })
    }

    /// The URL with any password (in the user info or a `password=` parameter) replaced by `***`.
    pub fn url_redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for PostgresSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSection")
            .field("url", &self.url_redacted())
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// The secret a file holds, without trailing newlines; the error says what is wrong with it.
pub(super) fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "is not valid UTF-8".to_owned())?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(secret.to_owned())
}

/// `url` with the password of its user info (or a `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(hosts);
        }
        None => out.push_str(authority),
    }
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<&str> = query
                .split('&')
                .map(|param| {
                    if param.starts_with("password=") {
                        "password=***"
                    } else {
                        param
                    }
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

fn parse<C: ConfigFile>(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<C, ConfigError> {
    let mut document: toml::Table =
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
    let origins = overrides::apply(&mut document, env)?;
    keys::check::<C>(&document, &origins)?;
    let config: C =
        serde_path_to_error::deserialize(toml::Value::Table(document)).map_err(|e| {
            let key = e.path().to_string();
            let var = origins.var_for(&key).map(str::to_owned);
            let mut message = e.inner().message().to_owned();
            if var.is_some() && message.starts_with("invalid type") {
                message.push_str(overrides::TYPE_HINT);
            }
            ConfigError::Invalid { key, var, message }
        })?;
    config.validate().map_err(|e| origins.attach(e))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/source.example.toml");

    const MINIMAL: &str = r#"
        [postgres]
        url = "postgresql://replicator@127.0.0.1:5432/shop"
        [capture]
        tables = ["l1.*"]
        [kafka]
        brokers = "127.0.0.1:9092"
        topic_prefix = "shop"
        format = "json"
    "#;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn example_file_parses_and_validates() {
        let config = SourceConfig::from_toml_str(EXAMPLE, no_env()).unwrap();
        assert_eq!(
            config.postgres.url,
            "postgresql://replicator@127.0.0.1:5432/shop?sslmode=prefer"
        );
        assert_eq!(config.postgres.password_file, None);
        assert_eq!(config.capture.slot, "pgcdc");
        assert_eq!(config.capture.publication, "pgcdc");
        assert_eq!(config.capture.tables, vec!["l1.*".to_owned()]);
        assert!(config.capture.exclude_tables.is_empty());
        assert!(config.capture.exclude_columns.is_empty());
        assert_eq!(config.capture.snapshot, SnapshotMode::Initial);
        assert_eq!(
            config.capture.heartbeat_interval,
            Some(Duration::from_secs(10))
        );
        assert!(!config.capture.streaming);
        assert_eq!(config.capture.status_interval, Duration::from_secs(1));
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.kafka.topic_prefix, "shop");
        assert_eq!(config.kafka.format, Format::Avro);
        assert!(config.kafka.tombstones);
        assert_eq!(
            config.kafka.options,
            BTreeMap::from([("compression.type".to_owned(), "lz4".to_owned())])
        );
        assert_eq!(config.kafka.topic, TopicSection::default());
        assert_eq!(
            config.schema_registry.url.as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(config.metrics.listen, Some(DEFAULT_METRICS_LISTEN));
    }

    #[test]
    fn example_file_documents_every_key() {
        let sections = [
            ("postgres", keys::field_names::<PostgresSection>()),
            ("capture", keys::field_names::<CaptureSection>()),
            ("kafka", keys::field_names::<KafkaSection>()),
            ("kafka.topic", keys::field_names::<TopicSection>()),
            (
                "schema_registry",
                keys::field_names::<SchemaRegistrySection>(),
            ),
            ("metrics", keys::field_names::<MetricsSection>()),
        ];
        for (section, fields) in sections {
            assert!(
                EXAMPLE.contains(&format!("[{section}]")),
                "[{section}] missing from the example"
            );
            for field in fields {
                let plain = EXAMPLE.contains(&format!("\n{field} = "));
                let commented = EXAMPLE.contains(&format!("\n# {field} = "));
                let table = EXAMPLE.contains(&format!("[{section}.{field}]"));
                assert!(
                    plain || commented || table,
                    "{section}.{field} missing from the example"
                );
            }
        }
    }

    #[test]
    fn defaults_apply_to_a_minimal_file() {
        let config = SourceConfig::from_toml_str(MINIMAL, no_env()).unwrap();
        assert_eq!(config.capture.slot, DEFAULT_SLOT);
        assert_eq!(config.capture.publication, DEFAULT_PUBLICATION);
        assert_eq!(config.capture.snapshot, DEFAULT_SNAPSHOT);
        assert_eq!(
            config.capture.heartbeat_interval,
            Some(DEFAULT_HEARTBEAT_INTERVAL)
        );
        assert_eq!(config.capture.status_interval, DEFAULT_STATUS_INTERVAL);
        assert_eq!(config.capture.streaming, DEFAULT_STREAMING);
        assert_eq!(config.kafka.tombstones, DEFAULT_TOMBSTONES);
        assert!(config.kafka.options.is_empty());
        assert_eq!(config.kafka.topic, TopicSection::default());
        assert_eq!(config.schema_registry.url, None);
        assert_eq!(config.metrics.listen, Some(DEFAULT_METRICS_LISTEN));
        assert_eq!(config.postgres.password_file, None);
    }

    #[test]
    fn snapshot_modes_and_alias() {
        for (text, mode) in [
            ("initial", SnapshotMode::Initial),
            ("no_data", SnapshotMode::NoData),
            ("never", SnapshotMode::NoData),
            ("initial_only", SnapshotMode::InitialOnly),
            ("when_needed", SnapshotMode::WhenNeeded),
            ("always", SnapshotMode::Always),
        ] {
            let env = [("PGCDC__CAPTURE__SNAPSHOT".to_owned(), text.to_owned())];
            let config = SourceConfig::from_toml_str(MINIMAL, env).unwrap();
            assert_eq!(config.capture.snapshot, mode, "{text}");
        }
        let err = SourceConfig::from_toml_str(
            &MINIMAL.replace(
                "tables = [\"l1.*\"]",
                "tables = [\"l1.*\"]\nsnapshot = \"sometimes\"",
            ),
            no_env(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "`capture.snapshot`: unknown variant `sometimes`, expected one of `initial`, \
             `never`, `no_data`, `initial_only`, `when_needed`, `always`"
        );
    }

    #[test]
    fn type_errors_name_the_key_path() {
        let text = MINIMAL.replace("tables = [\"l1.*\"]", "tables = [\"l1.*\", 5]");
        let err = SourceConfig::from_toml_str(&text, no_env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`capture.tables[1]`: invalid type: integer `5`, expected a string"
        );
        let text = MINIMAL.replace(
            "format = \"json\"",
            "format = \"json\"\ntombstones = \"yes\"",
        );
        let err = SourceConfig::from_toml_str(&text, no_env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kafka.tombstones`: invalid type: string \"yes\", expected a boolean"
        );
        let text = format!("{MINIMAL}\n[kafka.topic]\npartitions = 3000000000\n");
        let err = SourceConfig::from_toml_str(&text, no_env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kafka.topic.partitions`: invalid value: integer `3000000000`, expected i32"
        );
    }

    #[test]
    fn syntax_error_names_the_origin_and_line() {
        let err = SourceConfig::from_toml_str("[postgres\nurl = 1", no_env())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the configuration is not valid TOML: TOML parse error at line 1"),
            "{err}"
        );
    }

    #[test]
    fn load_reads_the_file_and_applies_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let env = [
            (
                "PGCDC__KAFKA__BROKERS".to_owned(),
                "127.0.0.1:9093".to_owned(),
            ),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let config = SourceConfig::load_with_env(&path, env).unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9093");

        let missing = dir.path().join("absent.toml");
        let err = SourceConfig::load_with_env(&missing, no_env())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read the configuration file {}: ",
                missing.display()
            )),
            "{err}"
        );
        assert!(err.ends_with("; check the --config path"), "{err}");

        std::fs::write(&path, "[postgres\n").unwrap();
        let err = SourceConfig::load_with_env(&path, no_env())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{} is not valid TOML: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn postgres_password_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        let env = [(
            "PGCDC__POSTGRES__PASSWORD_FILE".to_owned(),
            file.display().to_string(),
        )];
        let config = SourceConfig::from_toml_str(MINIMAL, env).unwrap();
        assert_eq!(
            config.postgres.password().unwrap().as_deref(),
            Some("s3cret")
        );

        std::fs::write(&file, "\n").unwrap();
        let err = config.postgres.password().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "`postgres.password_file`: {} is empty; fix the file or set password_file = \"\" for no password",
                file.display()
            )
        );

        std::fs::remove_file(&file).unwrap();
        let err = config.postgres.password().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "`postgres.password_file`: {} cannot be read: ",
                file.display()
            )),
            "{err}"
        );

        let config = SourceConfig::from_toml_str(
            &MINIMAL.replace("[capture]", "password_file = \"\"\n[capture]"),
            no_env(),
        )
        .unwrap();
        assert_eq!(config.postgres.password_file, None);
        assert_eq!(config.postgres.password().unwrap(), None);
    }

    #[test]
    fn url_passwords_are_redacted() {
        let section = |url: &str| PostgresSection {
            url: url.to_owned(),
            password_file: None,
        };
        assert_eq!(
            section("postgresql://app:hunter2@db:5432/shop?sslmode=require").url_redacted(),
            "postgresql://app:***@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            section("postgres://app@db/shop?password=hunter2&sslmode=disable").url_redacted(),
            "postgres://app@db/shop?password=***&sslmode=disable"
        );
        assert_eq!(section("postgresql://db").url_redacted(), "postgresql://db");
        let debug = format!("{:?}", section("postgresql://app:hunter2@db/shop"));
        assert_eq!(
            debug,
            "PostgresSection { url: \"postgresql://app:***@db/shop\", password_file: None }"
        );
    }
}
