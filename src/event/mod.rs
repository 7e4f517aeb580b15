//! The change-event model both binaries share: tables, rows, values and the events made of them.
//!
//! Nothing here does I/O. The source builds these from pgoutput messages (`source::relations`),
//! the encoders turn them into Avro or JSON, and the sink decodes them back.

pub mod change;
pub mod types;

use std::sync::Arc;

use crate::lsn::Lsn;
pub use types::{DecimalHandling, PgType, MONEY_FRACTION_DIGITS};

/// The placeholder Debezium writes for an unchanged TOASTed value the server did not send.
pub const UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// Which old-row columns PostgreSQL logs for updates and deletes (`ALTER TABLE … REPLICA IDENTITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// The primary key columns (`d`).
    Default,
    /// Nothing; updates and deletes are refused on published tables (`n`).
    Nothing,
    /// Every column (`f`).
    Full,
    /// The columns of a chosen unique index (`i`).
    Index,
}

impl ReplicaIdentity {
    /// Reads pgoutput's / `pg_class.relreplident`'s one-letter code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            b'd' => Some(Self::Default),
            b'n' => Some(Self::Nothing),
            b'f' => Some(Self::Full),
            b'i' => Some(Self::Index),
            _ => None,
        }
    }
}

/// One column of a captured table, as the catalog and the Relation message describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// `pg_type` OID of the column's type.
    pub type_oid: u32,
    /// `atttypmod`: length, precision/scale or -1.
    pub type_modifier: i32,
    /// The type's family, which decides the Avro type and how text is parsed.
    pub pg_type: PgType,
    /// Whether the column may hold NULL (no `NOT NULL` constraint).
    pub optional: bool,
    /// Whether pgoutput flagged the column as part of the replica identity.
    pub in_identity: bool,
    /// The schema default Debezium gives the column (see [`types::column_default`]).
    pub default: Option<Value>,
}

/// A captured table: its columns in table order and which of them form the message key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The relation OID pgoutput uses to refer to the table.
    pub relation_id: u32,
    /// Schema (namespace) name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Columns in table order (dropped and generated columns excluded).
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key: the primary key, else the replica identity index;
    /// empty when the table has neither (its records get a null key).
    pub key: Vec<usize>,
    /// The table's replica identity.
    pub identity: ReplicaIdentity,
}

impl TableSchema {
    /// `schema.table`, the name used in topics, metrics and logs.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The key columns' values of a row image, in key order.
    pub fn key_of<'a>(&self, row: &'a [Value]) -> Vec<&'a Value> {
        self.key
            .iter()
            .filter_map(|&index| row.get(index))
            .collect()
    }
}

/// A column value, already converted from PostgreSQL's text form to its Avro-level shape (SPEC §5).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// The image does not carry this column (non-identity columns of a key-only old image).
    Absent,
    /// An unchanged TOASTed value the server did not send; encoded as the placeholder.
    Unavailable,
    /// boolean, bit(1).
    Bool(bool),
    /// smallint, integer, date (days since epoch).
    Int(i32),
    /// bigint, time (µs), timestamp (µs), interval (µs).
    Long(i64),
    /// real.
    Float(f32),
    /// double precision.
    Double(f64),
    /// numeric(p,s): big-endian two's-complement unscaled value at the column's scale.
    Decimal { unscaled: Vec<u8>, scale: u32 },
    /// numeric without a declared scale: Debezium's VariableScaleDecimal.
    VariableDecimal { unscaled: Vec<u8>, scale: i32 },
    /// point: its coordinates (the WKB is derived from them).
    Point { x: f64, y: f64 },
    /// Text-like values and types carried as their string form (timestamptz, uuid, json, …).
    String(String),
    /// bytea, bit(n), varbit.
    Bytes(Vec<u8>),
    /// Arrays of any of the above.
    Array(Vec<Value>),
    /// hstore under `hstore.handling.mode = map`: its pairs in the server's order.
    Map(Vec<(String, Option<String>)>),
}

/// A row image: one value per column of its table, in table order.
pub type Row = Vec<Value>;

/// What happened to a row (Debezium's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Insert (`c`).
    Create,
    /// Update (`u`).
    Update,
    /// Delete (`d`).
    Delete,
    /// Snapshot read (`r`).
    Read,
    /// Truncate (`t`).
    Truncate,
}

impl Op {
    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    /// Parses Debezium's one-letter code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "c" => Some(Op::Create),
            "u" => Some(Op::Update),
            "d" => Some(Op::Delete),
            "r" => Some(Op::Read),
            "t" => Some(Op::Truncate),
            _ => None,
        }
    }
}

/// The `source.snapshot` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMarker {
    /// A streamed change.
    #[default]
    False,
    /// A snapshot row that is neither first nor last.
    True,
    /// The first row of the snapshot.
    First,
    /// The first row of a table within the snapshot.
    FirstInDataCollection,
    /// The last row of a table within the snapshot.
    LastInDataCollection,
    /// The last row of the snapshot.
    Last,
    /// A row read by an incremental snapshot.
    Incremental,
}

impl SnapshotMarker {
    /// The string Debezium writes.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::True => "true",
            SnapshotMarker::First => "first",
            SnapshotMarker::FirstInDataCollection => "first_in_data_collection",
            SnapshotMarker::LastInDataCollection => "last_in_data_collection",
            SnapshotMarker::Last => "last",
            SnapshotMarker::Incremental => "incremental",
        }
    }
}

/// Where a change came from in the WAL (the variable part of the `source` block).
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePosition {
    /// Commit time of the transaction, µs since the Unix epoch.
    pub commit_ts_us: i64,
    /// Transaction id (xid), when known.
    pub txid: Option<u32>,
    /// LSN of the change itself.
    pub lsn: Option<Lsn>,
    /// The end LSN of the previous transaction's commit: first element of `source.sequence`.
    pub previous_commit: Option<Lsn>,
    /// Snapshot marker.
    pub snapshot: SnapshotMarker,
}

impl SourcePosition {
    /// Debezium's `source.sequence`: `["<previous commit's end lsn>","<lsn>"]` as decimal
    /// strings.
    pub fn sequence(&self) -> String {
        let text = |lsn: Option<Lsn>| match lsn {
            Some(lsn) => format!("\"{}\"", lsn.0),
            None => "null".to_string(),
        };
        format!("[{},{}]", text(self.previous_commit), text(self.lsn))
    }
}

/// The `transaction` block of a change event.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionBlock {
    /// `"<txid>:<commit lsn>"`.
    pub id: String,
    /// 1-based position of the event within its transaction.
    pub total_order: i64,
    /// 1-based position of the event among its table's events within the transaction.
    pub data_collection_order: i64,
}

/// Which side of a key change an event is, carried in a Kafka header as Debezium does.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyChange {
    /// On the delete of the old key: `__debezium.newkey` holds the new key.
    NewKey(Vec<Value>),
    /// On the create of the new key: `__debezium.oldkey` holds the old key.
    OldKey(Vec<Value>),
}

/// One row-level change of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The table as it was when the change was made.
    pub table: Arc<TableSchema>,
    /// What happened.
    pub op: Op,
    /// The old image, per replica identity (SPEC §4).
    pub before: Option<Row>,
    /// The new image; `None` for deletes and truncates.
    pub after: Option<Row>,
    /// WAL position and commit time.
    pub source: SourcePosition,
    /// Transaction metadata.
    pub transaction: Option<TransactionBlock>,
    /// Set on both halves of a primary-key change.
    pub key_change: Option<KeyChange>,
}

/// `BEGIN` or `END` of a transaction, for the `<prefix>.transaction` topic.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionStatus {
    /// The transaction started.
    Begin,
    /// The transaction committed; carries per-table event counts.
    End {
        /// `(schema.table, events)` in first-seen order.
        data_collections: Vec<(String, i64)>,
    },
}

/// A transaction metadata record.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionEvent {
    /// BEGIN or END.
    pub status: TransactionStatus,
    /// `"<txid>:<commit lsn>"`, as in the change events' `transaction.id`.
    pub id: String,
    /// Commit time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Number of change events in the transaction (END only, 0 at BEGIN).
    pub event_count: i64,
}

/// A `pg_logical_emit_message` message, for the `<prefix>.message` topic.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalMessage {
    /// The message's prefix (also its key).
    pub prefix: String,
    /// The message body.
    pub content: Vec<u8>,
    /// Whether it was emitted inside a transaction.
    pub transactional: bool,
    /// WAL position and commit time.
    pub source: SourcePosition,
}

/// What happened to a table, as a schema change event's `tableChanges[].type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChangeKind {
    /// The table was created.
    Create,
    /// Its definition changed.
    Alter,
    /// It was dropped (or no longer matches `capture.tables`): it is not captured any more.
    Drop,
}

impl TableChangeKind {
    /// The spelling in the event.
    pub fn as_str(self) -> &'static str {
        match self {
            TableChangeKind::Create => "CREATE",
            TableChangeKind::Alter => "ALTER",
            TableChangeKind::Drop => "DROP",
        }
    }

    /// Reads the spelling back.
    pub fn parse(text: &str) -> Option<TableChangeKind> {
        [
            TableChangeKind::Create,
            TableChangeKind::Alter,
            TableChangeKind::Drop,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// A change to one captured table's definition, for `<prefix>.schema_changes` (Debezium's
/// schema change event, one table per event).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    /// The table's schema.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// What happened.
    pub kind: TableChangeKind,
    /// The statement, when it is known.
    pub ddl: Option<String>,
    /// The table's definition after the change; `None` for a DROP, or when it is not known
    /// (a DROP found by discovery, without DDL capture).
    pub table_description: Option<TableDescription>,
    /// The table's definition before the change, when DDL capture knew it (pgcdc's extension
    /// of Debezium's event: with it a consumer tells a renamed column from a dropped one).
    pub previous: Option<TableDescription>,
    /// Where the change sits in the stream: the changes of the table before it precede it.
    pub source: SourcePosition,
    /// The `transaction.id` of the row events of the transaction that made the change
    /// (`"<txid>:<commit lsn>"`), so that a consumer orders it among them by their own commit.
    pub transaction_id: Option<String>,
}

/// A table's definition, as a schema change event's `table` describes it (Debezium's
/// `io.debezium.connector.schema.Table`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableDescription {
    /// The table's schema (before a rename, the old one).
    pub schema: String,
    /// The table's name (before a rename, the old one).
    pub table: String,
    /// Its columns in `position` order, dropped ones left out.
    pub columns: Vec<ColumnDescription>,
    /// The primary key's columns in key order; empty without a primary key.
    pub primary_key: Vec<String>,
}

/// One column of a [`TableDescription`] (Debezium's `io.debezium.connector.schema.Column`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnDescription {
    /// Its name.
    pub name: String,
    /// PostgreSQL's `attnum`: a rename keeps it, a dropped column's is never used again, so a
    /// consumer comparing two descriptions tells a rename from a drop and an add.
    pub position: i32,
    /// The declared type's name without modifiers (`varchar`, `l1.posint` for a domain).
    pub type_name: String,
    /// The type the values have, domains resolved to their base type, with modifiers, as
    /// `format_type` spells it with only `pg_catalog` visible: `character varying(10)`,
    /// `numeric(10,2)`, `integer[]`, `l1.mood` (user types schema-qualified).
    pub type_expression: String,
    /// The declared type's oid.
    pub native_type: u32,
    /// The JDBC type code Debezium gives the type (`java.sql.Types`).
    pub jdbc_type: i32,
    /// Length or precision from the type's modifier, if it has one.
    pub length: Option<i32>,
    /// Scale from the type's modifier, if it has one.
    pub scale: Option<i32>,
    /// Whether the column may hold NULL.
    pub optional: bool,
    /// An identity column or one defaulting to a sequence's `nextval`.
    pub auto_incremented: bool,
    /// A generated (`GENERATED ALWAYS AS … STORED`) column.
    pub generated: bool,
    /// The default's SQL expression (`pg_get_expr`), if any; for a generated column its
    /// generation expression.
    pub default_expression: Option<String>,
    /// An enum's labels in order (of the element type for an array of an enum).
    pub enum_values: Option<Vec<String>>,
}

impl SchemaChange {
    /// Debezium's table id: `"schema"."table"`, each part double-quoted.
    pub fn table_id(&self) -> String {
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        format!("{}.{}", quote(&self.schema), quote(&self.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_a_json_array_of_decimal_strings() {
        let position = SourcePosition {
            commit_ts_us: 0,
            txid: Some(7),
            lsn: Some(Lsn(24023200)),
            previous_commit: Some(Lsn(24023128)),
            snapshot: SnapshotMarker::False,
        };
        assert_eq!(position.sequence(), r#"["24023128","24023200"]"#);
    }

    #[test]
    fn op_codes_round_trip() {
        for op in [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate] {
            assert_eq!(Op::from_code(op.code()), Some(op));
        }
    }
}
