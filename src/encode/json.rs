//! The `payload` half of Kafka Connect's JsonConverter output (`schemas.enable=true`), written
//! straight from [`Value`]s: bytes and decimals as base64 (Connect's default), a
//! VariableScaleDecimal as `{"scale":s,"value":"<base64>"}`, non-finite floats as the strings
//! Jackson writes ("NaN", "Infinity", "-Infinity"). The `schema` half is rendered once per
//! table version by [`super::schema::to_connect_json`].

use std::fmt::Debug;
use std::io::Write;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;

use crate::event::types::point_wkb;
use crate::event::{
    ChangeEvent, Column, ColumnDescription, PgType, SchemaChange, TableDescription, TableSchema,
    TransactionEvent, TransactionStatus, Value,
};

use super::columns::{
    at_scale, decimal_scale, expected_kind, is_int_like, is_long_like, is_string_like, resolve,
    value_kind, ValueError,
};
use super::{table_id, EncodeError, SourceBlock, Timestamps};

/// `bytes` as a standard, padded base64 JSON string (what JsonConverter writes for bytes).
fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}", Base64Display::new(bytes, &STANDARD));
    out.push(b'"');
}

/// `text` as a JSON string literal; runs that need no escaping are copied as they are.
pub(crate) fn push_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..index).unwrap_or_default());
        out.extend_from_slice(escape);
        start = index + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// A number in its shortest round-trip form.
fn push_number(out: &mut Vec<u8>, number: impl Debug) {
    // Writing into a Vec<u8> cannot fail.
    let _ = write!(out, "{number:?}");
}

fn push_optional_number(out: &mut Vec<u8>, number: Option<i64>) {
    match number {
        Some(number) => push_number(out, number),
        None => out.extend_from_slice(b"null"),
    }
}

/// Jackson writes non-finite floats as strings.
fn push_float(out: &mut Vec<u8>, value: f64, text: impl Debug) {
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"\"Infinity\"".as_slice()
        } else {
            b"\"-Infinity\"".as_slice()
        });
    } else {
        push_number(out, text);
    }
}

/// `"name":` with the comma that separates it from a previous member.
fn push_member(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    push_string(out, name);
    out.push(b':');
}

fn write_column(out: &mut Vec<u8>, column: &Column, value: &Value) -> Result<(), ValueError> {
    match resolve(column, value)? {
        Some(value) => write_value(out, &column.pg_type, &value),
        None if column.optional => {
            out.extend_from_slice(b"null");
            Ok(())
        }
        None => Err(ValueError::Null),
    }
}

fn write_value(out: &mut Vec<u8>, ty: &PgType, value: &Value) -> Result<(), ValueError> {
    match (ty, value) {
        (PgType::Bool | PgType::Bit1, Value::Bool(b)) => {
            out.extend_from_slice(if *b { b"true".as_slice() } else { b"false" })
        }
        (ty, Value::Int(i)) if is_int_like(ty) => push_number(out, i),
        (ty, Value::Long(l)) if is_long_like(ty) => push_number(out, l),
        (PgType::Float4, Value::Float(f)) => push_float(out, f64::from(*f), f),
        (PgType::Float8 | PgType::DecimalDouble { .. }, Value::Double(d)) => push_float(out, *d, d),
        (ty, Value::Decimal { unscaled, scale }) if decimal_scale(ty).is_some() => {
            let expected = decimal_scale(ty).unwrap_or(*scale);
            push_base64(out, at_scale(unscaled, *scale, expected)?);
        }
        (PgType::Point, Value::Point { x, y }) => {
            out.extend_from_slice(b"{\"x\":");
            push_float(out, *x, x);
            out.extend_from_slice(b",\"y\":");
            push_float(out, *y, y);
            out.extend_from_slice(b",\"wkb\":");
            push_base64(out, &point_wkb(*x, *y));
            out.extend_from_slice(b",\"srid\":null}");
        }
        (PgType::VariableDecimal, Value::VariableDecimal { unscaled, scale }) => {
            out.extend_from_slice(b"{\"scale\":");
            push_number(out, scale);
            out.extend_from_slice(b",\"value\":");
            push_base64(out, unscaled);
            out.push(b'}');
        }
        (ty, Value::String(s)) if is_string_like(ty) => push_string(out, s),
        (PgType::Bytea | PgType::Bits { .. }, Value::Bytes(b)) => push_base64(out, b),
        (PgType::Array(element), Value::Array(items)) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                match item {
                    Value::Null => out.extend_from_slice(b"null"),
                    item => write_value(out, element, item)?,
                }
            }
            out.push(b']');
        }
        (PgType::HstoreMap, Value::Map(pairs)) => {
            out.push(b'{');
            for (index, (key, value)) in pairs.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                push_string(out, key);
                out.push(b':');
                match value {
                    Some(value) => push_string(out, value),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.push(b'}');
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

/// The columns at `indexes` as an object, `values` yielding their values in the same order.
fn write_object<'v>(
    out: &mut Vec<u8>,
    table: &TableSchema,
    indexes: impl Iterator<Item = usize>,
    mut values: impl Iterator<Item = Option<&'v Value>>,
) -> Result<(), EncodeError> {
    out.push(b'{');
    let mut first = true;
    for index in indexes {
        let (Some(column), Some(Some(value))) = (table.columns.get(index), values.next()) else {
            return Err(super::key_out_of_range(table, index));
        };
        push_member(out, &mut first, &column.name);
        write_column(out, column, value)
            .map_err(|problem| super::value_error(table, column, problem))?;
    }
    out.push(b'}');
    Ok(())
}

/// The key payload of a row image.
pub(crate) fn write_key(
    out: &mut Vec<u8>,
    table: &TableSchema,
    row: &[Value],
) -> Result<(), EncodeError> {
    super::check_row_length(table, row)?;
    let values = table.key.iter().map(|&index| row.get(index));
    write_object(out, table, table.key.iter().copied(), values)
}

/// A key given as its values in key order (the other key of a key change).
pub(crate) fn write_key_values(
    out: &mut Vec<u8>,
    table: &TableSchema,
    values: &[Value],
) -> Result<(), EncodeError> {
    if values.len() != table.key.len() {
        return Err(EncodeError::RowLength {
            table: table.qualified_name(),
            expected: table.key.len(),
            found: values.len(),
        });
    }
    write_object(
        out,
        table,
        table.key.iter().copied(),
        values.iter().map(Some),
    )
}

fn write_optional_row(
    out: &mut Vec<u8>,
    table: &TableSchema,
    row: Option<&[Value]>,
) -> Result<(), EncodeError> {
    match row {
        Some(row) => {
            super::check_row_length(table, row)?;
            write_object(out, table, 0..table.columns.len(), row.iter().map(Some))
        }
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn write_source(out: &mut Vec<u8>, source: &SourceBlock<'_>) {
    let times = Timestamps::from_micros(source.position.commit_ts_us);
    let first = &mut true;
    out.push(b'{');
    push_member(out, first, "version");
    push_string(out, env!("CARGO_PKG_VERSION"));
    push_member(out, first, "connector");
    push_string(out, super::CONNECTOR);
    push_member(out, first, "name");
    push_string(out, source.name);
    push_member(out, first, "ts_ms");
    push_number(out, times.ms);
    push_member(out, first, "snapshot");
    push_string(out, source.position.snapshot.as_str());
    push_member(out, first, "db");
    push_string(out, source.db);
    push_member(out, first, "sequence");
    push_string(out, &source.position.sequence());
    push_member(out, first, "ts_us");
    push_number(out, times.us);
    push_member(out, first, "ts_ns");
    push_number(out, times.ns);
    push_member(out, first, "schema");
    push_string(out, source.schema);
    push_member(out, first, "table");
    push_string(out, source.table);
    push_member(out, first, "txId");
    push_optional_number(out, source.position.txid.map(i64::from));
    push_member(out, first, "lsn");
    push_optional_number(out, source.position.lsn.map(|lsn| lsn.0 as i64));
    for absent in ["xmin", "origin", "origin_lsn"] {
        push_member(out, first, absent);
        out.extend_from_slice(b"null");
    }
    out.push(b'}');
}

/// The envelope payload of a change event.
pub(crate) fn write_envelope(
    out: &mut Vec<u8>,
    event: &ChangeEvent,
    source: &SourceBlock<'_>,
    processed_at_us: i64,
) -> Result<(), EncodeError> {
    let table = &*event.table;
    let first = &mut true;
    out.push(b'{');
    push_member(out, first, "before");
    write_optional_row(out, table, event.before.as_deref())?;
    push_member(out, first, "after");
    write_optional_row(out, table, event.after.as_deref())?;
    push_member(out, first, "source");
    write_source(out, source);
    push_member(out, first, "transaction");
    match &event.transaction {
        Some(block) => {
            out.extend_from_slice(b"{\"id\":");
            push_string(out, &block.id);
            out.extend_from_slice(b",\"total_order\":");
            push_number(out, block.total_order);
            out.extend_from_slice(b",\"data_collection_order\":");
            push_number(out, block.data_collection_order);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    push_member(out, first, "op");
    push_string(out, event.op.code());
    let times = Timestamps::from_micros(processed_at_us);
    push_member(out, first, "ts_ms");
    push_number(out, times.ms);
    push_member(out, first, "ts_us");
    push_number(out, times.us);
    push_member(out, first, "ts_ns");
    push_number(out, times.ns);
    out.push(b'}');
    Ok(())
}

/// `TransactionMetadataKey` payload.
pub(crate) fn write_transaction_key(out: &mut Vec<u8>, event: &TransactionEvent) {
    out.extend_from_slice(b"{\"id\":");
    push_string(out, &event.id);
    out.push(b'}');
}

/// `TransactionMetadataValue` payload.
pub(crate) fn write_transaction_value(out: &mut Vec<u8>, event: &TransactionEvent) {
    out.extend_from_slice(b"{\"status\":");
    match &event.status {
        TransactionStatus::Begin => {
            out.extend_from_slice(b"\"BEGIN\",\"id\":");
            push_string(out, &event.id);
            out.extend_from_slice(b",\"event_count\":null,\"data_collections\":null");
        }
        TransactionStatus::End { data_collections } => {
            out.extend_from_slice(b"\"END\",\"id\":");
            push_string(out, &event.id);
            out.extend_from_slice(b",\"event_count\":");
            push_number(out, event.event_count);
            out.extend_from_slice(b",\"data_collections\":[");
            for (index, (collection, count)) in data_collections.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"data_collection\":");
                push_string(out, collection);
                out.extend_from_slice(b",\"event_count\":");
                push_number(out, count);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"ts_ms\":");
    push_number(out, event.ts_ms);
    out.push(b'}');
}

/// `MessageKey` payload.
pub(crate) fn write_message_key(out: &mut Vec<u8>, prefix: &str) {
    out.extend_from_slice(b"{\"prefix\":");
    push_string(out, prefix);
    out.push(b'}');
}

/// `SchemaChangeKey` payload.
pub(crate) fn write_schema_change_key(out: &mut Vec<u8>, database: &str, change: &SchemaChange) {
    out.extend_from_slice(b"{\"databaseName\":");
    push_string(out, database);
    out.extend_from_slice(b",\"schemaName\":");
    push_string(out, &change.schema);
    out.extend_from_slice(b",\"tableName\":");
    push_string(out, &change.table);
    out.push(b'}');
}

/// `SchemaChangeValue` payload: one table change, with the table's description after the
/// change and (pgcdc's extension) before it; field names as in the Avro schema.
pub(crate) fn write_schema_change_value(
    out: &mut Vec<u8>,
    change: &SchemaChange,
    source: &SourceBlock<'_>,
    processed_at_us: i64,
) {
    out.extend_from_slice(b"{\"source\":");
    write_source(out, source);
    out.extend_from_slice(b",\"ts_ms\":");
    push_number(out, Timestamps::from_micros(processed_at_us).ms);
    out.extend_from_slice(b",\"databaseName\":");
    push_string(out, source.db);
    out.extend_from_slice(b",\"schemaName\":");
    push_string(out, &change.schema);
    out.extend_from_slice(b",\"ddl\":");
    push_optional_string(out, change.ddl.as_deref());
    out.extend_from_slice(b",\"tableChanges\":[{\"type\":");
    push_string(out, change.kind.as_str());
    out.extend_from_slice(b",\"id\":");
    push_string(out, &change.table_id());
    out.extend_from_slice(b",\"table\":");
    write_optional_table(out, change.table_description.as_ref());
    out.extend_from_slice(b",\"previousId\":");
    let previous_id = change
        .previous
        .as_ref()
        .map(|previous| table_id(&previous.schema, &previous.table));
    push_optional_string(out, previous_id.as_deref());
    out.extend_from_slice(b",\"previousTable\":");
    write_optional_table(out, change.previous.as_ref());
    out.extend_from_slice(b"}],\"transactionId\":");
    push_optional_string(out, change.transaction_id.as_deref());
    out.push(b'}');
}

fn push_optional_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => push_string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

fn push_strings(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_string(out, item);
    }
    out.push(b']');
}

/// A `Table` struct, or null.
fn write_optional_table(out: &mut Vec<u8>, table: Option<&TableDescription>) {
    let Some(table) = table else {
        out.extend_from_slice(b"null");
        return;
    };
    out.extend_from_slice(b"{\"defaultCharsetName\":null,\"primaryKeyColumnNames\":");
    push_strings(out, &table.primary_key);
    out.extend_from_slice(b",\"columns\":[");
    for (index, column) in table.columns.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_table_column(out, column);
    }
    out.extend_from_slice(b"],\"comment\":null}");
}

/// A `Column` struct.
fn write_table_column(out: &mut Vec<u8>, column: &ColumnDescription) {
    out.extend_from_slice(b"{\"name\":");
    push_string(out, &column.name);
    out.extend_from_slice(b",\"jdbcType\":");
    push_number(out, column.jdbc_type);
    out.extend_from_slice(b",\"nativeType\":");
    push_number(out, column.native_type as i32);
    out.extend_from_slice(b",\"typeName\":");
    push_string(out, &column.type_name);
    out.extend_from_slice(b",\"typeExpression\":");
    push_string(out, &column.type_expression);
    out.extend_from_slice(b",\"charsetName\":null,\"length\":");
    push_optional_number(out, column.length.map(i64::from));
    out.extend_from_slice(b",\"scale\":");
    push_optional_number(out, column.scale.map(i64::from));
    out.extend_from_slice(b",\"position\":");
    push_number(out, column.position);
    out.extend_from_slice(b",\"optional\":");
    push_bool(out, column.optional);
    out.extend_from_slice(b",\"autoIncremented\":");
    push_bool(out, column.auto_incremented);
    out.extend_from_slice(b",\"generated\":");
    push_bool(out, column.generated);
    out.extend_from_slice(b",\"comment\":null,\"defaultValueExpression\":");
    push_optional_string(out, column.default_expression.as_deref());
    out.extend_from_slice(b",\"enumValues\":");
    match &column.enum_values {
        Some(values) => push_strings(out, values),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `MessageValue` payload.
pub(crate) fn write_message_value(
    out: &mut Vec<u8>,
    prefix: &str,
    content: &[u8],
    source: &SourceBlock<'_>,
    processed_at_us: i64,
) {
    out.extend_from_slice(b"{\"op\":\"m\",\"ts_ms\":");
    push_number(out, Timestamps::from_micros(processed_at_us).ms);
    out.extend_from_slice(b",\"source\":");
    write_source(out, source);
    out.extend_from_slice(b",\"message\":{\"prefix\":");
    push_string(out, prefix);
    out.extend_from_slice(b",\"content\":");
    push_base64(out, content);
    out.extend_from_slice(b"}}");
}

/// `ServerNameKey` payload.
pub(crate) fn write_heartbeat_key(out: &mut Vec<u8>, server_name: &str) {
    out.extend_from_slice(b"{\"serverName\":");
    push_string(out, server_name);
    out.push(b'}');
}

/// `Heartbeat` payload.
pub(crate) fn write_heartbeat_value(out: &mut Vec<u8>, ts_ms: i64) {
    out.extend_from_slice(b"{\"ts_ms\":");
    push_number(out, ts_ms);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", "\"\""),
            ("f", "\"Zg==\""),
            ("fo", "\"Zm8=\""),
            ("foo", "\"Zm9v\""),
            ("foob", "\"Zm9vYg==\""),
            ("fooba", "\"Zm9vYmE=\""),
            ("foobar", "\"Zm9vYmFy\""),
        ] {
            assert_eq!(text(|out| push_base64(out, input.as_bytes())), expected);
        }
        assert_eq!(text(|out| push_base64(out, &[0xfb, 0xff])), "\"+/8=\"");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            text(|out| push_string(out, "a\"b\\c\nd\u{1f}é\u{7f}")),
            "\"a\\\"b\\\\c\\nd\\u001fé\u{7f}\""
        );
        assert_eq!(text(|out| push_string(out, "")), "\"\"");
    }

    #[test]
    fn floats_follow_jackson() {
        let value = |ty: PgType, v: Value| text(|out| write_value(out, &ty, &v).unwrap());
        assert_eq!(value(PgType::Float8, Value::Double(1.0)), "1.0");
        assert_eq!(value(PgType::Float8, Value::Double(-0.25)), "-0.25");
        assert_eq!(value(PgType::Float8, Value::Double(f64::NAN)), "\"NaN\"");
        assert_eq!(
            value(PgType::Float8, Value::Double(f64::INFINITY)),
            "\"Infinity\""
        );
        assert_eq!(
            value(PgType::Float4, Value::Float(f32::NEG_INFINITY)),
            "\"-Infinity\""
        );
        assert_eq!(value(PgType::Float4, Value::Float(0.1)), "0.1");
    }
}
