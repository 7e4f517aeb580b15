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
    /// The source enum type of an enum column (or of an array column's elements), when the
    /// schema names it; `sql_type` is then `text` (or `text[]`) for targets without it.
    pub enum_type: Option<Arc<EnumType>>,
}

/// A source enum type, from an `io.debezium.data.Enum` schema: the type named by its
/// `__debezium.source.column.type` parameter, the labels by `allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumType {
    /// The type's schema, when the name is qualified.
    pub schema: Option<String>,
    /// The type's name.
    pub name: String,
    /// The labels in sort order.
    pub labels: Vec<String>,
}

impl EnumType {
    /// The type a parameter names, read as SQL reads a type name: `l1.mood`, `"My Schema"."Mood"`
    /// (quoted parts kept as written, unquoted ones folded to lower case, as PostgreSQL folds
    /// them); `None` when it is not such a name. `allowed` is Debezium's comma-separated list.
    pub fn parse(type_name: &str, allowed: &str) -> Option<EnumType> {
        let mut parts = sql_identifiers(type_name)?;
        let name = parts.pop()?;
        let schema = parts.pop();
        if !parts.is_empty() {
            return None;
        }
        let labels = if allowed.is_empty() {
            Vec::new()
        } else {
            allowed.split(',').map(str::to_owned).collect()
        };
        Some(EnumType {
            schema,
            name,
            labels,
        })
    }
}

/// Splits a dotted SQL name into its identifiers; `None` when it is malformed.
fn sql_identifiers(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' || c.is_whitespace() {
                    return None;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Where a change sits in the source's stream: `source.sequence` as numbers, then the change's
/// place in its transaction. Strictly increasing along one table's changes: the first element
/// is the end of the commit streamed before the change's transaction (so it grows from one
/// transaction to the next, which arrive in commit order), the second the change's own LSN
/// (growing inside a transaction), the third `transaction.data_collection_order`, which tells
/// apart the changes that share one LSN (the delete and the create of a key change, the rows of
/// a multi-row insert such as `COPY`). A snapshot read counts as lower than every change its
/// transaction boundary precedes (its LSN is taken as 0). So a position tells a replay from new
/// data. Ordered field by field, in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The transaction's own commit LSN, from `transaction.id` (`"<txid>:<commit lsn>"`): the
    /// same however often a replay sends the change. Without a transaction block, the first
    /// element of `source.sequence` (the end LSN of the previous transaction's commit; Debezium's
    /// `null` falls back to the change's LSN).
    pub commit_lsn: u64,
    /// The change's own LSN (second element).
    pub lsn: u64,
    /// The change's `transaction.data_collection_order` (1-based among its table's changes in
    /// its transaction); 0 when the record has no transaction block (a snapshot read, or a
    /// producer without transaction metadata), so that changes sharing an LSN cannot be told
    /// apart.
    pub order: u64,
}

impl Position {
    /// Whether no other change of the table can have this position: it has an order. Without
    /// one, the rows of a snapshot or of a multi-row insert share it.
    pub fn is_unique(&self) -> bool {
        self.order != 0
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_type_names_read_as_sql_reads_them() {
        let parsed = |name| EnumType::parse(name, "a,b").map(|t| (t.schema, t.name));
        assert_eq!(parsed("l1.mood"), Some((Some("l1".into()), "mood".into())));
        assert_eq!(
            parsed("\"My Schema\".\"Mo\"\"od\""),
            Some((Some("My Schema".into()), "Mo\"od".into()))
        );
        assert_eq!(parsed("MOOD"), Some((None, "mood".into())));
        for malformed in ["", "a..b", "a.b.c", "\"open", "a b", "a.\"\""] {
            assert_eq!(parsed(malformed), None, "{malformed}");
        }
        assert_eq!(
            EnumType::parse("mood", "sad,ok").unwrap().labels,
            ["sad", "ok"]
        );
        assert!(EnumType::parse("mood", "").unwrap().labels.is_empty());
    }
}
