//! Avro binary encoding, written straight from [`Value`]s in schema order: the hot path, so no
//! intermediate Avro value trees and no lookups by field name. Every function here writes
//! exactly the layout of the schemas in [`super::schema`] / `schemas/*.avsc`; the tests decode
//! the bytes with `apache_avro` against those schemas.

use crate::event::types::point_wkb;
use crate::event::{
    ChangeEvent, Column, ColumnDescription, PgType, SchemaChange, TableDescription, TableSchema,
    TransactionEvent, TransactionStatus, Value,
};

use super::columns::{
    at_scale, decimal_scale, expected_kind, is_int_like, is_long_like, is_string_like,
    null_branch_first, resolve, value_kind, ValueError,
};
use super::{table_id, EncodeError, SourceBlock, Timestamps};

/// Union branch of `null` in `["null", T]`.
const NULL_BRANCH: i64 = 0;
/// Union branch of `T` in `["null", T]`.
const VALUE_BRANCH: i64 = 1;

/// A zigzag varint `long` (also used for `int`, which has the same encoding).
pub(crate) fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Length-prefixed bytes.
pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// A length-prefixed UTF-8 string.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    write_bytes(out, text.as_bytes());
}

fn write_optional_long(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(value) => {
            write_long(out, VALUE_BRANCH);
            write_long(out, value);
        }
        None => write_long(out, NULL_BRANCH),
    }
}

fn write_optional_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => {
            write_long(out, VALUE_BRANCH);
            write_str(out, value);
        }
        None => write_long(out, NULL_BRANCH),
    }
}

/// One column value; optional columns are `["null", T]` unions, `[T, "null"]` with a default.
fn write_column(out: &mut Vec<u8>, column: &Column, value: &Value) -> Result<(), ValueError> {
    let (null, present) = if null_branch_first(column) {
        (NULL_BRANCH, VALUE_BRANCH)
    } else {
        (VALUE_BRANCH, NULL_BRANCH)
    };
    match (resolve(column, value)?, column.optional) {
        (None, true) => write_long(out, null),
        (None, false) => return Err(ValueError::Null),
        (Some(value), true) => {
            write_long(out, present);
            write_value(out, &column.pg_type, &value)?;
        }
        (Some(value), false) => write_value(out, &column.pg_type, &value)?,
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, ty: &PgType, value: &Value) -> Result<(), ValueError> {
    match (ty, value) {
        (PgType::Bool | PgType::Bit1, Value::Bool(b)) => out.push(u8::from(*b)),
        (ty, Value::Int(i)) if is_int_like(ty) => write_long(out, i64::from(*i)),
        (ty, Value::Long(l)) if is_long_like(ty) => write_long(out, *l),
        (PgType::Float4, Value::Float(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (PgType::Float8 | PgType::DecimalDouble { .. }, Value::Double(d)) => {
            out.extend_from_slice(&d.to_le_bytes())
        }
        (ty, Value::Decimal { unscaled, scale }) if decimal_scale(ty).is_some() => {
            let expected = decimal_scale(ty).unwrap_or(*scale);
            write_bytes(out, at_scale(unscaled, *scale, expected)?);
        }
        (PgType::VariableDecimal, Value::VariableDecimal { unscaled, scale }) => {
            write_long(out, i64::from(*scale));
            write_bytes(out, unscaled);
        }
        (PgType::Point, Value::Point { x, y }) => {
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&y.to_le_bytes());
            write_long(out, VALUE_BRANCH);
            write_bytes(out, &point_wkb(*x, *y));
            write_long(out, NULL_BRANCH);
        }
        (ty, Value::String(s)) if is_string_like(ty) => write_str(out, s),
        (PgType::Bytea | PgType::Bits { .. }, Value::Bytes(b)) => write_bytes(out, b),
        (PgType::Array(element), Value::Array(items)) => {
            // One block holding every item, then the empty block that ends the array.
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for item in items {
                    match item {
                        Value::Null => write_long(out, NULL_BRANCH),
                        item => {
                            write_long(out, VALUE_BRANCH);
                            write_value(out, element, item)?;
                        }
                    }
                }
            }
            write_long(out, 0);
        }
        (PgType::HstoreMap, Value::Map(pairs)) => {
            if !pairs.is_empty() {
                write_long(out, pairs.len() as i64);
                for (key, value) in pairs {
                    write_str(out, key);
                    match value {
                        Some(value) => {
                            write_long(out, VALUE_BRANCH);
                            write_str(out, value);
                        }
                        None => write_long(out, NULL_BRANCH),
                    }
                }
            }
            write_long(out, 0);
        }
        (ty, value) => {
            return Err(ValueError::Mismatch {
                expected: expected_kind(ty),
                found: value_kind(value),
            })
        }
    }
    Ok(())
}

/// The columns at `indexes` of a row image, as a record.
fn write_columns(
    out: &mut Vec<u8>,
    table: &TableSchema,
    row: &[Value],
    indexes: impl Iterator<Item = usize>,
) -> Result<(), EncodeError> {
    super::check_row_length(table, row)?;
    for index in indexes {
        let (Some(column), Some(value)) = (table.columns.get(index), row.get(index)) else {
            return Err(super::key_out_of_range(table, index));
        };
        write_column(out, column, value)
            .map_err(|problem| super::value_error(table, column, problem))?;
    }
    Ok(())
}

/// The key record of a row image.
pub(crate) fn write_key(
    out: &mut Vec<u8>,
    table: &TableSchema,
    row: &[Value],
) -> Result<(), EncodeError> {
    write_columns(out, table, row, table.key.iter().copied())
}

fn write_optional_row(
    out: &mut Vec<u8>,
    table: &TableSchema,
    row: Option<&[Value]>,
) -> Result<(), EncodeError> {
    match row {
        Some(row) => {
            write_long(out, VALUE_BRANCH);
            write_columns(out, table, row, 0..table.columns.len())
        }
        None => {
            write_long(out, NULL_BRANCH);
            Ok(())
        }
    }
}

/// `io.debezium.connector.postgresql.Source`.
fn write_source(out: &mut Vec<u8>, source: &SourceBlock<'_>) {
    let times = Timestamps::from_micros(source.position.commit_ts_us);
    write_str(out, env!("CARGO_PKG_VERSION"));
    write_str(out, super::CONNECTOR);
    write_str(out, source.name);
    write_long(out, times.ms);
    // ["string", "null"]: the string branch comes first because it carries the default.
    write_long(out, 0);
    write_str(out, source.position.snapshot.as_str());
    write_str(out, source.db);
    write_optional_str(out, Some(&source.position.sequence()));
    write_optional_long(out, Some(times.us));
    write_optional_long(out, Some(times.ns));
    write_str(out, source.schema);
    write_str(out, source.table);
    write_optional_long(out, source.position.txid.map(i64::from));
    write_optional_long(out, source.position.lsn.map(|lsn| lsn.0 as i64));
    // xmin, origin and origin_lsn: pgoutput tells neither, and Debezium sends them null too.
    write_optional_long(out, None);
    write_optional_str(out, None);
    write_optional_long(out, None);
}

/// `<prefix>.<schema>.<table>.Envelope`.
pub(crate) fn write_envelope(
    out: &mut Vec<u8>,
    event: &ChangeEvent,
    source: &SourceBlock<'_>,
    processed_at_us: i64,
) -> Result<(), EncodeError> {
    let table = &*event.table;
    write_optional_row(out, table, event.before.as_deref())?;
    write_optional_row(out, table, event.after.as_deref())?;
    write_source(out, source);
    match &event.transaction {
        Some(block) => {
            write_long(out, VALUE_BRANCH);
            write_str(out, &block.id);
            write_long(out, block.total_order);
            write_long(out, block.data_collection_order);
        }
        None => write_long(out, NULL_BRANCH),
    }
    write_str(out, event.op.code());
    let times = Timestamps::from_micros(processed_at_us);
    write_optional_long(out, Some(times.ms));
    write_optional_long(out, Some(times.us));
    write_optional_long(out, Some(times.ns));
    Ok(())
}

/// `io.debezium.connector.common.TransactionMetadataKey`.
pub(crate) fn write_transaction_key(out: &mut Vec<u8>, event: &TransactionEvent) {
    write_str(out, &event.id);
}

/// `io.debezium.connector.common.TransactionMetadataValue`.
pub(crate) fn write_transaction_value(out: &mut Vec<u8>, event: &TransactionEvent) {
    match &event.status {
        TransactionStatus::Begin => {
            write_str(out, "BEGIN");
            write_str(out, &event.id);
            write_optional_long(out, None);
            write_long(out, NULL_BRANCH);
        }
        TransactionStatus::End { data_collections } => {
            write_str(out, "END");
            write_str(out, &event.id);
            write_optional_long(out, Some(event.event_count));
            write_long(out, VALUE_BRANCH);
            if !data_collections.is_empty() {
                write_long(out, data_collections.len() as i64);
                for (collection, count) in data_collections {
                    write_long(out, VALUE_BRANCH);
                    write_str(out, collection);
                    write_long(out, *count);
                }
            }
            write_long(out, 0);
        }
    }
    write_long(out, event.ts_ms);
}

/// `io.debezium.connector.postgresql.MessageKey`.
pub(crate) fn write_message_key(out: &mut Vec<u8>, prefix: &str) {
    write_optional_str(out, Some(prefix));
}

/// `io.debezium.connector.postgresql.MessageValue`.
pub(crate) fn write_message_value(
    out: &mut Vec<u8>,
    prefix: &str,
    content: &[u8],
    source: &SourceBlock<'_>,
    processed_at_us: i64,
) {
    write_str(out, "m");
    write_optional_long(out, Some(Timestamps::from_micros(processed_at_us).ms));
    write_source(out, source);
    write_optional_str(out, Some(prefix));
    write_long(out, VALUE_BRANCH);
    write_bytes(out, content);
}

/// `io.debezium.connector.postgresql.SchemaChangeKey`.
pub(crate) fn write_schema_change_key(out: &mut Vec<u8>, database: &str, change: &SchemaChange) {
    write_str(out, database);
    write_optional_str(out, Some(&change.schema));
    write_optional_str(out, Some(&change.table));
}

/// `io.debezium.connector.postgresql.SchemaChangeValue`: one table change, with the table's
/// description after the change and (pgcdc's extension) before it.
pub(crate) fn write_schema_change_value(
    out: &mut Vec<u8>,
    change: &SchemaChange,
    source: &SourceBlock<'_>,
    processed_at_us: i64,
) {
    write_source(out, source);
    write_long(out, Timestamps::from_micros(processed_at_us).ms);
    write_optional_str(out, Some(source.db));
    write_optional_str(out, Some(&change.schema));
    write_optional_str(out, change.ddl.as_deref());
    write_long(out, 1);
    write_str(out, change.kind.as_str());
    write_str(out, &change.table_id());
    write_optional_table(out, change.table_description.as_ref());
    let previous_id = change
        .previous
        .as_ref()
        .map(|previous| table_id(&previous.schema, &previous.table));
    write_optional_str(out, previous_id.as_deref());
    write_optional_table(out, change.previous.as_ref());
    write_long(out, 0);
    write_optional_str(out, change.transaction_id.as_deref());
}

fn write_optional_bool(out: &mut Vec<u8>, value: Option<bool>) {
    match value {
        Some(value) => {
            write_long(out, VALUE_BRANCH);
            out.push(u8::from(value));
        }
        None => write_long(out, NULL_BRANCH),
    }
}

/// An array of strings (its items in one block).
fn write_strings(out: &mut Vec<u8>, items: &[String]) {
    if !items.is_empty() {
        write_long(out, items.len() as i64);
        for item in items {
            write_str(out, item);
        }
    }
    write_long(out, 0);
}

/// `["null", io.debezium.connector.schema.Table]`.
fn write_optional_table(out: &mut Vec<u8>, table: Option<&TableDescription>) {
    let Some(table) = table else {
        write_long(out, NULL_BRANCH);
        return;
    };
    write_long(out, VALUE_BRANCH);
    write_optional_str(out, None);
    write_long(out, VALUE_BRANCH);
    write_strings(out, &table.primary_key);
    if !table.columns.is_empty() {
        write_long(out, table.columns.len() as i64);
        for column in &table.columns {
            write_table_column(out, column);
        }
    }
    write_long(out, 0);
    write_optional_str(out, None);
}

/// `io.debezium.connector.schema.Column`.
fn write_table_column(out: &mut Vec<u8>, column: &ColumnDescription) {
    write_str(out, &column.name);
    write_long(out, i64::from(column.jdbc_type));
    // An oid above i32::MAX wraps, as it does in PostgreSQL's own int4 casts of oids.
    write_optional_long(out, Some(i64::from(column.native_type as i32)));
    write_str(out, &column.type_name);
    write_optional_str(out, Some(&column.type_expression));
    write_optional_str(out, None);
    write_optional_long(out, column.length.map(i64::from));
    write_optional_long(out, column.scale.map(i64::from));
    write_long(out, i64::from(column.position));
    write_optional_bool(out, Some(column.optional));
    write_optional_bool(out, Some(column.auto_incremented));
    write_optional_bool(out, Some(column.generated));
    write_optional_str(out, None);
    write_optional_str(out, column.default_expression.as_deref());
    match &column.enum_values {
        Some(values) => {
            write_long(out, VALUE_BRANCH);
            write_strings(out, values);
        }
        None => write_long(out, NULL_BRANCH),
    }
}

/// `io.debezium.connector.common.ServerNameKey`.
pub(crate) fn write_heartbeat_key(out: &mut Vec<u8>, server_name: &str) {
    write_str(out, server_name);
}

/// `io.debezium.connector.common.Heartbeat`.
pub(crate) fn write_heartbeat_value(out: &mut Vec<u8>, ts_ms: i64) {
    write_long(out, ts_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zigzag_varints() {
        let encoded = |v: i64| {
            let mut out = Vec::new();
            write_long(&mut out, v);
            out
        };
        assert_eq!(encoded(0), [0]);
        assert_eq!(encoded(-1), [1]);
        assert_eq!(encoded(1), [2]);
        assert_eq!(encoded(-64), [0x7f]);
        assert_eq!(encoded(64), [0x80, 0x01]);
        assert_eq!(encoded(300), [0xd8, 0x04]);
        assert_eq!(
            encoded(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    fn column(pg_type: PgType, optional: bool) -> Column {
        crate::encode::tests::column("c", pg_type, optional)
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused() {
        let mut out = Vec::new();
        assert_eq!(
            write_column(&mut out, &column(PgType::Int4, false), &Value::Long(1)),
            Err(ValueError::Mismatch {
                expected: "int",
                found: "long"
            })
        );
        assert_eq!(
            write_column(
                &mut out,
                &column(
                    PgType::Decimal {
                        precision: 5,
                        scale: 2
                    },
                    true
                ),
                &Value::Decimal {
                    unscaled: vec![1],
                    scale: 1
                }
            ),
            Err(ValueError::DecimalScale {
                found: 1,
                expected: 2
            })
        );
        assert_eq!(
            write_column(
                &mut out,
                &column(PgType::Array(Box::new(PgType::Text)), true),
                &Value::Array(vec![Value::Absent])
            ),
            Err(ValueError::Mismatch {
                expected: "string",
                found: "absent"
            })
        );
    }
}
