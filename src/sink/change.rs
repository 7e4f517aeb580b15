//! What the sink applies: change records decoded from the topics, with each column value already
//! in PostgreSQL's text input form, so the target parses it with the column's own type.
//!
//! Pure: built by `encode::decode` from Avro or JSON envelopes, consumed by `sink::batch` and
//! `sink::apply`.

use std::sync::Arc;

/// One column of a captured table, as the envelope's value schema describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkColumn {
    /// The PostgreSQL column name (the Avro field name unless `__debezium.source.column.name`
    /// gives the original).
    pub name: String,
    /// The SQL type the value's text parses as and a created target column gets, e.g.
    /// `integer`, `numeric(10,2)`, `timestamp(6)`, `text[]`.
    pub sql_type: String,
    /// Whether the schema allows null.
    pub optional: bool,
}

/// A source table as one pair of key and value schemas describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkTable {
    /// Source schema (namespace) name, from the record name `<prefix>.<schema>.<table>.Value`.
    pub schema: String,
    /// Source table name.
    pub table: String,
    /// Columns in table order, as the value schema lists them.
    pub columns: Vec<SinkColumn>,
    /// Indexes into `columns` of the key schema's fields, in key order; empty for a null key
    /// (a table without primary key or identity index).
    pub key: Vec<usize>,
}

/// A column value in PostgreSQL's text input form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// `__debezium_unavailable_value`: an unchanged TOASTed value; the target keeps its value.
    Unavailable,
    /// The value as PostgreSQL's input function for `SinkColumn::sql_type` accepts it.
    Text(String),
}

/// The envelope's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOp {
    /// `c`
    Create,
    /// `u`
    Update,
    /// `d`
    Delete,
    /// `r`: a snapshot read, applied as an upsert.
    Read,
    /// `t`
    Truncate,
}

/// Where a change sits in the source's stream: `source.sequence` as numbers. Strictly
/// increasing along one table's changes (transactions arrive in commit order, and changes
/// inside one in LSN order), so it tells a replay from new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The commit LSN of the change's transaction (first element of `source.sequence`).
    pub commit_lsn: u64,
    /// The change's own LSN (second element).
    pub lsn: u64,
}

/// One decoded change event.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkChange {
    /// The table the change belongs to; shared by every change decoded with the same schemas.
    pub table: Arc<SinkTable>,
    /// What happened.
    pub op: SinkOp,
    /// The old row image, aligned with `table.columns` (absent columns are [`Cell::Null`]).
    pub before: Option<Vec<Cell>>,
    /// The new row image, aligned with `table.columns`.
    pub after: Option<Vec<Cell>>,
    /// The change's position in the source stream.
    pub position: Position,
}
