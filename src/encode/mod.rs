//! Change events → Kafka records in Debezium's shapes (SPEC §3, §4, §5).
//!
//! ```text
//! register_table (each Relation) ─▶ derive Key/Value/Envelope schemas ─▶ registry ids (Avro)
//!                                                                       or schema JSON (JSON)
//! encode_change (each event) ─▶ cached prefix (magic byte + id │ {"schema":…,"payload":)
//!                               + key/envelope written straight from the row's Values
//! ```
//!
//! Schemas follow Debezium 2.x as written by Confluent's AvroConverter (Avro, `connect.*`
//! properties) or Kafka Connect's JsonConverter with `schemas.enable=true` (JSON). Both are
//! derived from one Connect-style description (the `schema` module); the fixed records
//! (transaction metadata, logical messages, heartbeats, the `source` and `transaction` blocks)
//! are the `.avsc` files under `schemas/`.
//!
//! # Absent and unavailable column values
//! Under `REPLICA IDENTITY DEFAULT` or `USING INDEX`, the `before` image of a delete (and of an
//! update that changed the key) carries only the identity columns. As Debezium does, every
//! other column is written as null when it is nullable and otherwise as its type's zero value
//! (0, false, `""`, empty bytes, a zero decimal, `1970-01-01T00:00:00Z` for timestamptz,
//! `00:00:00Z` for timetz, an empty array). A consumer tells real values from absent ones by
//! the record key: in such an image only the fields that are also fields of the key are real.
//! Under `REPLICA IDENTITY FULL` every field of `before` is real.
//!
//! An unchanged TOASTed value the server did not send is written as Debezium's placeholder
//! `__debezium_unavailable_value`: the string for text-like types, its UTF-8 bytes for bytes
//! and decimals, and for arrays what Debezium writes (a one-element array holding the
//! placeholder for text and bytes elements, the placeholder's bytes as numbers for numeric
//! elements). A consumer must leave such a column unchanged.

mod avro;
mod columns;
pub mod decode;
mod json;
pub mod registry;
mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{
    ChangeEvent, Column, KeyChange, LogicalMessage, Op, SchemaChange, SourcePosition, TableSchema,
    TransactionEvent, Value,
};

pub use registry::{RegistryClient, RegistryError};
use schema::{Field, Kind, Schema};

/// `source.connector`.
const CONNECTOR: &str = "postgresql";
/// Header on the delete half of a key change: the new key, as JSON text.
pub const NEW_KEY_HEADER: &str = "__debezium.newkey";
/// Header on the create half of a key change: the old key, as JSON text.
pub const OLD_KEY_HEADER: &str = "__debezium.oldkey";
/// Parameter carrying a column's real name when its Avro field name had to be adjusted.
pub const SOURCE_COLUMN_NAME_PARAMETER: &str = "__debezium.source.column.name";
/// The schema parameter naming a column's source type (Debezium's `column.propagate.source.type`);
/// pgcdc sets it on enum columns, with the enum's qualified name, and on money and hstore.
pub const SOURCE_COLUMN_TYPE_PARAMETER: &str = "__debezium.source.column.type";
/// The schema parameter naming the text encoding of a bytea STRING (`binary.handling.mode`'s
/// value); Debezium has none, and without it a sink cannot tell encoded bytes from text.
pub const BINARY_ENCODING_PARAMETER: &str = "__pgcdc.binary.handling.mode";
/// The Envelope schema version Debezium 2.x writes.
const ENVELOPE_VERSION: u32 = 2;
/// Bytes reserved per column when sizing a record buffer, so most rows need no regrowth.
const BYTES_PER_COLUMN_HINT: usize = 24;

const SOURCE_AVSC: &str = include_str!("../../schemas/source.avsc");
const TRANSACTION_BLOCK_AVSC: &str = include_str!("../../schemas/transaction-block.avsc");
const TRANSACTION_KEY_AVSC: &str = include_str!("../../schemas/transaction-key.avsc");
const TRANSACTION_VALUE_AVSC: &str = include_str!("../../schemas/transaction-value.avsc");
const MESSAGE_KEY_AVSC: &str = include_str!("../../schemas/message-key.avsc");
const MESSAGE_VALUE_AVSC: &str = include_str!("../../schemas/message-value.avsc");
const HEARTBEAT_KEY_AVSC: &str = include_str!("../../schemas/heartbeat-key.avsc");
const HEARTBEAT_VALUE_AVSC: &str = include_str!("../../schemas/heartbeat-value.avsc");
const SCHEMA_CHANGE_KEY_AVSC: &str = include_str!("../../schemas/schema-change-key.avsc");
const SCHEMA_CHANGE_VALUE_AVSC: &str = include_str!("../../schemas/schema-change-value.avsc");

pub use crate::config::{Format, RegistryAccess};

/// What the encoder needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSettings {
    /// `kafka.topic_prefix`: topic prefix, `source.name` and schema name prefix.
    pub topic_prefix: String,
    /// `kafka.format`.
    pub format: Format,
    /// `[schema_registry]`: where the registry is and how to log in; required for Avro.
    pub registry: Option<RegistryAccess>,
    /// The captured database's name (`source.db`).
    pub database: String,
}

/// A record ready to produce: topic, optional key, optional value (None = tombstone), headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: String,
    /// Serialized key; `None` for tables without a key and for truncates.
    pub key: Option<Vec<u8>>,
    /// Serialized value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Kafka headers.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Why a schema or record could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Avro needs a registry.
    #[error("schema_registry.url is required when kafka.format = \"avro\"")]
    MissingRegistryUrl,
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry refused a new schema version (HTTP 409): the table changed in a way the
    /// subject's compatibility setting forbids. Retrying cannot help; someone must decide.
    #[error(
        "schema registry refused the new {part} schema of subject {subject:?} (HTTP 409): \
         {message}. The change is incompatible under the subject's compatibility setting; \
         allow it, then restart the source: curl -X PUT \
         -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
         --data '{{\"compatibility\":\"NONE\"}}' {config_url}"
    )]
    IncompatibleSchema {
        /// `key` or `value`.
        part: &'static str,
        subject: String,
        /// The registry's own explanation.
        message: String,
        /// `<registry>/config/<subject>`.
        config_url: String,
    },
    /// A bundled `.avsc` file does not describe a supported schema.
    #[error("bundled schema {file} is invalid: {detail}")]
    FixedSchema { file: &'static str, detail: String },
    /// An event of a table whose schema was never registered.
    #[error(
        "table {table} (relation {relation_id}) has no registered schema for this version: \
         register_table must see every Relation before the table's events"
    )]
    UnregisteredTable { table: String, relation_id: u32 },
    /// Two columns whose names become the same Avro field name.
    #[error(
        "table {table}: columns {first:?} and {second:?} both become the Avro field {field:?}; \
         rename one of them"
    )]
    FieldNameClash {
        table: String,
        first: String,
        second: String,
        field: String,
    },
    /// A column value that does not fit its column.
    #[error("table {table}, column {column}: {problem}")]
    Value {
        table: String,
        column: String,
        problem: String,
    },
    /// A row image whose length differs from the table's column count.
    #[error("table {table}: a row image has {found} values for {expected} columns")]
    RowLength {
        table: String,
        expected: usize,
        found: usize,
    },
    /// A key that names a column the table does not have.
    #[error("table {table}: key column index {index} is out of range")]
    KeyIndex { table: String, index: usize },
    /// An event without the image its operation needs.
    #[error("table {table}: a '{op}' event needs its {image} image")]
    MissingImage {
        table: String,
        op: &'static str,
        image: &'static str,
    },
}

/// The variable part of a `source` block.
pub(crate) struct SourceBlock<'a> {
    name: &'a str,
    db: &'a str,
    schema: &'a str,
    table: &'a str,
    position: &'a SourcePosition,
}

/// One instant in Debezium's three resolutions.
pub(crate) struct Timestamps {
    ms: i64,
    us: i64,
    ns: i64,
}

impl Timestamps {
    fn from_micros(us: i64) -> Timestamps {
        Timestamps {
            ms: us.div_euclid(1000),
            us,
            ns: us.saturating_mul(1000),
        }
    }
}

fn check_row_length(table: &TableSchema, row: &[Value]) -> Result<(), EncodeError> {
    if row.len() == table.columns.len() {
        Ok(())
    } else {
        Err(EncodeError::RowLength {
            table: table.qualified_name(),
            expected: table.columns.len(),
            found: row.len(),
        })
    }
}

fn key_out_of_range(table: &TableSchema, index: usize) -> EncodeError {
    EncodeError::KeyIndex {
        table: table.qualified_name(),
        index,
    }
}

fn value_error(table: &TableSchema, column: &Column, problem: columns::ValueError) -> EncodeError {
    EncodeError::Value {
        table: table.qualified_name(),
        column: column.name.clone(),
        problem: problem.to_string(),
    }
}

/// Where serialized schemas go.
enum Backend {
    Avro(Box<RegistryClient>),
    Json,
}

impl Backend {
    /// The bytes every datum of `schema` starts with: the Confluent header (magic byte 0 and
    /// the registered id, big-endian) or the JSON envelope up to the payload.
    async fn prefix(&self, subject: &str, schema: &Schema) -> Result<Box<[u8]>, EncodeError> {
        match self {
            Backend::Avro(registry) => {
                let id = registry
                    .register(subject, &schema::to_avro_json(schema))
                    .await
                    .map_err(|error| incompatible(registry, subject, error))?;
                let mut prefix = vec![0];
                prefix.extend_from_slice(&id.to_be_bytes());
                Ok(prefix.into_boxed_slice())
            }
            Backend::Json => {
                let text = format!(
                    "{{\"schema\":{},\"payload\":",
                    schema::to_connect_json(schema)
                );
                Ok(text.into_bytes().into_boxed_slice())
            }
        }
    }
}

/// A 409 answer to a registration as [`EncodeError::IncompatibleSchema`]; other errors as they are.
fn incompatible(registry: &RegistryClient, subject: &str, error: RegistryError) -> EncodeError {
    match error {
        RegistryError::Status {
            status: 409,
            message,
            ..
        } => EncodeError::IncompatibleSchema {
            part: if subject.ends_with("-key") {
                "key"
            } else {
                "value"
            },
            subject: subject.to_string(),
            message,
            config_url: registry.config_url(subject),
        },
        other => EncodeError::Registry(other),
    }
}

/// A topic with fixed key and value schemas.
struct FixedTopic {
    topic: String,
    key: Box<[u8]>,
    value: Box<[u8]>,
}

impl FixedTopic {
    async fn new(
        backend: &Backend,
        topic: String,
        key: (&'static str, &str),
        value: (&'static str, &str),
    ) -> Result<FixedTopic, EncodeError> {
        let key = backend
            .prefix(&format!("{topic}-key"), &fixed_schema(key.0, key.1)?)
            .await?;
        let value = backend
            .prefix(&format!("{topic}-value"), &fixed_schema(value.0, value.1)?)
            .await?;
        Ok(FixedTopic { topic, key, value })
    }
}

fn fixed_schema(file: &'static str, text: &str) -> Result<Schema, EncodeError> {
    schema::from_avro(text).map_err(|detail| EncodeError::FixedSchema { file, detail })
}

/// One version of a table's schemas.
struct TableEntry {
    schema: Arc<TableSchema>,
    topic: String,
    key: Option<Box<[u8]>>,
    value: Box<[u8]>,
}

/// A table version's Connect schemas.
struct TableSchemas {
    key: Option<Schema>,
    envelope: Schema,
}

/// The `source` and `transaction` blocks every envelope embeds.
struct Blocks {
    source: Schema,
    transaction: Schema,
}

/// Derives the key and envelope schemas of `table`. Avro names are made valid (the real
/// column name then travels in [`SOURCE_COLUMN_NAME_PARAMETER`]); JSON keeps names as they are.
fn derive_table(
    table: &TableSchema,
    topic: &str,
    format: Format,
    blocks: &Blocks,
) -> Result<TableSchemas, EncodeError> {
    let avro = format == Format::Avro;
    let base = if avro {
        schema::avro_full_name(topic)
    } else {
        topic.to_string()
    };
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(table.columns.len());
    let mut fields = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let name = if avro {
            schema::avro_name(&column.name)
        } else {
            column.name.clone()
        };
        if let Some(first) = seen.insert(name.clone(), &column.name) {
            return Err(EncodeError::FieldNameClash {
                table: table.qualified_name(),
                first: first.to_string(),
                second: column.name.clone(),
                field: name,
            });
        }
        let mut field_schema = columns::column_schema(&column.pg_type);
        // A named record is defined once per schema, so it cannot carry per-column parameters.
        if name != column.name && !matches!(field_schema.kind, Kind::Struct(_)) {
            field_schema = field_schema.parameter(SOURCE_COLUMN_NAME_PARAMETER, &column.name);
        }
        if column.optional {
            field_schema = field_schema.optional();
        }
        field_schema.default = column.default.as_ref().and_then(columns::schema_default);
        fields.push(Field::new(name, field_schema));
    }
    let key = if table.key.is_empty() {
        None
    } else {
        let key_fields = table
            .key
            .iter()
            .map(|&index| {
                fields
                    .get(index)
                    .cloned()
                    .ok_or_else(|| key_out_of_range(table, index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(Schema::record(format!("{base}.Key"), key_fields))
    };
    let value = Schema::record(format!("{base}.Value"), fields);
    let optional_long = || Schema::new(Kind::Int64).optional();
    let envelope = Schema::record(
        format!("{base}.Envelope"),
        vec![
            Field::new("before", value.clone().optional()),
            Field::new("after", value.optional()),
            Field::new("source", blocks.source.clone()),
            Field::new("transaction", blocks.transaction.clone().optional()),
            Field::new("op", Schema::new(Kind::String)),
            Field::new("ts_ms", optional_long()),
            Field::new("ts_us", optional_long()),
            Field::new("ts_ns", optional_long()),
        ],
    )
    .version(ENVELOPE_VERSION);
    Ok(TableSchemas { key, envelope })
}

/// Debezium's table id, `"schema"."table"`, each part double-quoted (`""` inside).
pub(crate) fn table_id(schema: &str, table: &str) -> String {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    format!("{}.{}", quote(schema), quote(table))
}

/// `<prefix>.schema_changes`, where changes to the captured tables' definitions go.
pub fn schema_changes_topic(prefix: &str) -> String {
    schema::topic_name(&format!("{prefix}.schema_changes"))
}

/// `<prefix>.<schema>.<table>`, with characters Kafka does not allow replaced by `_`.
pub fn table_topic(prefix: &str, schema: &str, table: &str) -> String {
    schema::topic_name(&format!("{prefix}.{schema}.{table}"))
}

/// Turns change events, transaction markers, logical messages and heartbeats into records.
pub struct Encoder {
    settings: EncoderSettings,
    backend: Backend,
    blocks: Blocks,
    /// Every registered version of each table, by relation id, most recent last.
    tables: HashMap<u32, Vec<TableEntry>>,
    transaction: FixedTopic,
    message: FixedTopic,
    heartbeat: FixedTopic,
    schema_changes: FixedTopic,
}

impl Encoder {
    /// An encoder; for Avro it registers the fixed schemas (transaction, message, heartbeat).
    pub async fn new(settings: EncoderSettings) -> Result<Encoder, EncodeError> {
        let backend = match settings.format {
            Format::Avro => {
                let access = settings
                    .registry
                    .as_ref()
                    .filter(|access| !access.url.is_empty())
                    .ok_or(EncodeError::MissingRegistryUrl)?;
                Backend::Avro(Box::new(RegistryClient::connect(access)?))
            }
            Format::Json => Backend::Json,
        };
        let blocks = Blocks {
            source: fixed_schema("source.avsc", SOURCE_AVSC)?,
            transaction: fixed_schema("transaction-block.avsc", TRANSACTION_BLOCK_AVSC)?,
        };
        let prefix = &settings.topic_prefix;
        let transaction = FixedTopic::new(
            &backend,
            schema::topic_name(&format!("{prefix}.transaction")),
            ("transaction-key.avsc", TRANSACTION_KEY_AVSC),
            ("transaction-value.avsc", TRANSACTION_VALUE_AVSC),
        )
        .await?;
        let message = FixedTopic::new(
            &backend,
            schema::topic_name(&format!("{prefix}.message")),
            ("message-key.avsc", MESSAGE_KEY_AVSC),
            ("message-value.avsc", MESSAGE_VALUE_AVSC),
        )
        .await?;
        let heartbeat = FixedTopic::new(
            &backend,
            schema::topic_name(&format!("__pgcdc-heartbeat.{prefix}")),
            ("heartbeat-key.avsc", HEARTBEAT_KEY_AVSC),
            ("heartbeat-value.avsc", HEARTBEAT_VALUE_AVSC),
        )
        .await?;
        let schema_changes = FixedTopic::new(
            &backend,
            schema_changes_topic(prefix),
            ("schema-change-key.avsc", SCHEMA_CHANGE_KEY_AVSC),
            ("schema-change-value.avsc", SCHEMA_CHANGE_VALUE_AVSC),
        )
        .await?;
        Ok(Encoder {
            settings,
            backend,
            blocks,
            tables: HashMap::new(),
            transaction,
            message,
            heartbeat,
            schema_changes,
        })
    }

    /// Derives and (avro) registers the schemas of a table version; cheap no-op when unchanged.
    /// Called on every Relation message, before that table's events.
    pub async fn register_table(&mut self, table: &Arc<TableSchema>) -> Result<(), EncodeError> {
        let entries = self.tables.entry(table.relation_id).or_default();
        let known = entries
            .iter()
            .position(|entry| Arc::ptr_eq(&entry.schema, table) || *entry.schema == **table);
        if let Some(position) = known {
            // Events now carry this Arc: keep it so lookups stay a pointer comparison.
            let mut entry = entries.remove(position);
            entry.schema = Arc::clone(table);
            entries.push(entry);
            return Ok(());
        }
        let topic = self.topic(table);
        let schemas = derive_table(table, &topic, self.settings.format, &self.blocks)?;
        let key = match &schemas.key {
            Some(key) => Some(self.backend.prefix(&format!("{topic}-key"), key).await?),
            None => None,
        };
        let value = self
            .backend
            .prefix(&format!("{topic}-value"), &schemas.envelope)
            .await?;
        self.tables
            .entry(table.relation_id)
            .or_default()
            .push(TableEntry {
                schema: Arc::clone(table),
                topic,
                key,
                value,
            });
        Ok(())
    }

    /// `<prefix>.<schema>.<table>`, with characters Kafka does not allow replaced by `_`.
    pub fn topic(&self, table: &TableSchema) -> String {
        table_topic(&self.settings.topic_prefix, &table.schema, &table.table)
    }

    /// The change event as a record on its table's topic.
    pub fn encode_change(
        &self,
        event: &ChangeEvent,
        processed_at_us: i64,
    ) -> Result<Record, EncodeError> {
        let entry = self.entry(&event.table)?;
        let table = &*event.table;
        let key = self.change_key(entry, event)?;
        let source = SourceBlock {
            name: &self.settings.topic_prefix,
            db: &self.settings.database,
            schema: &table.schema,
            table: &table.table,
            position: &event.source,
        };
        let mut value = self.start(
            &entry.value,
            table.columns.len() * 2 * BYTES_PER_COLUMN_HINT,
        );
        match &self.backend {
            Backend::Avro(_) => avro::write_envelope(&mut value, event, &source, processed_at_us)?,
            Backend::Json => json::write_envelope(&mut value, event, &source, processed_at_us)?,
        }
        self.finish(&mut value);
        Ok(Record {
            topic: entry.topic.clone(),
            key,
            value: Some(value),
            headers: key_change_headers(event)?,
        })
    }

    /// The tombstone after a delete: same topic, key and headers, null value.
    pub fn tombstone(&self, event: &ChangeEvent) -> Result<Record, EncodeError> {
        let entry = self.entry(&event.table)?;
        Ok(Record {
            topic: entry.topic.clone(),
            key: self.change_key(entry, event)?,
            value: None,
            headers: key_change_headers(event)?,
        })
    }

    /// A BEGIN or END record for `<prefix>.transaction`.
    pub fn encode_transaction(&self, event: &TransactionEvent) -> Result<Record, EncodeError> {
        let fixed = &self.transaction;
        let mut key = self.start(&fixed.key, event.id.len() + 8);
        let mut value = self.start(&fixed.value, 128);
        match &self.backend {
            Backend::Avro(_) => {
                avro::write_transaction_key(&mut key, event);
                avro::write_transaction_value(&mut value, event);
            }
            Backend::Json => {
                json::write_transaction_key(&mut key, event);
                json::write_transaction_value(&mut value, event);
            }
        }
        Ok(self.fixed_record(fixed, key, value))
    }

    /// A logical decoding message for `<prefix>.message`.
    pub fn encode_message(
        &self,
        message: &LogicalMessage,
        processed_at_us: i64,
    ) -> Result<Record, EncodeError> {
        let fixed = &self.message;
        let source = SourceBlock {
            name: &self.settings.topic_prefix,
            db: &self.settings.database,
            schema: "",
            table: "",
            position: &message.source,
        };
        let mut key = self.start(&fixed.key, message.prefix.len() + 8);
        let mut value = self.start(&fixed.value, message.content.len() * 2 + 256);
        let (prefix, content) = (&message.prefix, &message.content);
        match &self.backend {
            Backend::Avro(_) => {
                avro::write_message_key(&mut key, prefix);
                avro::write_message_value(&mut value, prefix, content, &source, processed_at_us);
            }
            Backend::Json => {
                json::write_message_key(&mut key, prefix);
                json::write_message_value(&mut value, prefix, content, &source, processed_at_us);
            }
        }
        Ok(self.fixed_record(fixed, key, value))
    }

    /// A schema change event for `<prefix>.schema_changes`, keyed by database and table.
    pub fn encode_schema_change(
        &self,
        change: &SchemaChange,
        processed_at_us: i64,
    ) -> Result<Record, EncodeError> {
        let fixed = &self.schema_changes;
        let database = &self.settings.database;
        let source = SourceBlock {
            name: &self.settings.topic_prefix,
            db: database,
            schema: &change.schema,
            table: &change.table,
            position: &change.source,
        };
        let names = database.len() + change.schema.len() + change.table.len();
        let mut key = self.start(&fixed.key, names + 16);
        let described = [&change.table_description, &change.previous]
            .iter()
            .filter_map(|table| table.as_ref())
            .map(|table| table.columns.len() * 256)
            .sum::<usize>();
        let mut value = self.start(&fixed.value, names * 2 + 512 + described);
        match &self.backend {
            Backend::Avro(_) => {
                avro::write_schema_change_key(&mut key, database, change);
                avro::write_schema_change_value(&mut value, change, &source, processed_at_us);
            }
            Backend::Json => {
                json::write_schema_change_key(&mut key, database, change);
                json::write_schema_change_value(&mut value, change, &source, processed_at_us);
            }
        }
        Ok(self.fixed_record(fixed, key, value))
    }

    /// A heartbeat for `__pgcdc-heartbeat.<prefix>`.
    pub fn encode_heartbeat(&self, ts_ms: i64) -> Result<Record, EncodeError> {
        let fixed = &self.heartbeat;
        let server_name = &self.settings.topic_prefix;
        let mut key = self.start(&fixed.key, server_name.len() + 16);
        let mut value = self.start(&fixed.value, 16);
        match &self.backend {
            Backend::Avro(_) => {
                avro::write_heartbeat_key(&mut key, server_name);
                avro::write_heartbeat_value(&mut value, ts_ms);
            }
            Backend::Json => {
                json::write_heartbeat_key(&mut key, server_name);
                json::write_heartbeat_value(&mut value, ts_ms);
            }
        }
        Ok(self.fixed_record(fixed, key, value))
    }

    fn entry(&self, table: &Arc<TableSchema>) -> Result<&TableEntry, EncodeError> {
        self.tables
            .get(&table.relation_id)
            .and_then(|entries| {
                entries
                    .iter()
                    .rev()
                    .find(|entry| Arc::ptr_eq(&entry.schema, table))
                    .or_else(|| entries.iter().rev().find(|entry| *entry.schema == **table))
            })
            .ok_or_else(|| EncodeError::UnregisteredTable {
                table: table.qualified_name(),
                relation_id: table.relation_id,
            })
    }

    /// A buffer holding `prefix`, with room for `body` more bytes.
    fn start(&self, prefix: &[u8], body: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(prefix.len() + body + 1);
        out.extend_from_slice(prefix);
        out
    }

    /// Closes the JSON envelope opened by the prefix.
    fn finish(&self, out: &mut Vec<u8>) {
        if matches!(self.backend, Backend::Json) {
            out.push(b'}');
        }
    }

    fn fixed_record(&self, fixed: &FixedTopic, mut key: Vec<u8>, mut value: Vec<u8>) -> Record {
        self.finish(&mut key);
        self.finish(&mut value);
        Record {
            topic: fixed.topic.clone(),
            key: Some(key),
            value: Some(value),
            headers: Vec::new(),
        }
    }

    /// The record key: the key columns of `after` (`before` for deletes); none for truncates
    /// and tables without a key.
    fn change_key(
        &self,
        entry: &TableEntry,
        event: &ChangeEvent,
    ) -> Result<Option<Vec<u8>>, EncodeError> {
        let table = &*event.table;
        let missing = |image| EncodeError::MissingImage {
            table: table.qualified_name(),
            op: event.op.code(),
            image,
        };
        let row = match event.op {
            Op::Truncate => return Ok(None),
            Op::Delete => event.before.as_deref().ok_or_else(|| missing("before"))?,
            Op::Create | Op::Update | Op::Read => {
                event.after.as_deref().ok_or_else(|| missing("after"))?
            }
        };
        let Some(prefix) = &entry.key else {
            return Ok(None);
        };
        let mut key = self.start(prefix, table.key.len() * BYTES_PER_COLUMN_HINT);
        match &self.backend {
            Backend::Avro(_) => avro::write_key(&mut key, table, row)?,
            Backend::Json => json::write_key(&mut key, table, row)?,
        }
        self.finish(&mut key);
        Ok(Some(key))
    }
}

/// Debezium's key-change headers: the other key as JSON text (`{"id":2}`).
fn key_change_headers(event: &ChangeEvent) -> Result<Vec<(&'static str, Vec<u8>)>, EncodeError> {
    let (name, values) = match &event.key_change {
        None => return Ok(Vec::new()),
        Some(KeyChange::NewKey(values)) => (NEW_KEY_HEADER, values),
        Some(KeyChange::OldKey(values)) => (OLD_KEY_HEADER, values),
    };
    let mut text = Vec::with_capacity(values.len() * BYTES_PER_COLUMN_HINT);
    json::write_key_values(&mut text, &event.table, values)?;
    Ok(vec![(name, text)])
}

#[cfg(test)]
mod tests;
