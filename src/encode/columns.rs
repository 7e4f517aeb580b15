//! Column types (SPEC §5): the Connect schema of each [`PgType`], which [`Value`] shape it
//! takes, and what stands in for the values an image does not carry.
//!
//! Absent and unavailable values are written as described in the `encode` module's doc.

use std::borrow::Cow;

use crate::event::{Column, PgType, Value, UNAVAILABLE_VALUE_PLACEHOLDER};

use super::schema::{DefaultValue, Field, Kind, Schema, DECIMAL_NAME};
use super::{BINARY_ENCODING_PARAMETER, SOURCE_COLUMN_TYPE_PARAMETER};

/// Debezium's name of the point struct.
pub(crate) const POINT_NAME: &str = "io.debezium.data.geometry.Point";
/// `UUID.nameUUIDFromBytes` of the placeholder: what Debezium puts in an unchanged TOASTed uuid[].
pub(crate) const UNAVAILABLE_UUID_PLACEHOLDER: &str = "b68a35a7-17ad-35b3-af2a-ae46edb4545a";
/// Debezium's `length` parameter for a varbit without a declared length (Java's Integer.MAX_VALUE).
pub(crate) const UNBOUNDED_BITS_LENGTH: u32 = i32::MAX as u32;

/// Why one value could not be written; the caller adds the table and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueError {
    /// The value's shape does not fit the column type.
    Mismatch {
        expected: &'static str,
        found: &'static str,
    },
    /// NULL in a NOT NULL column.
    Null,
    /// An unchanged TOASTed value for a type that has no placeholder.
    NoPlaceholder,
    /// A decimal at another scale than the column's.
    DecimalScale { found: u32, expected: u32 },
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Mismatch { expected, found } => {
                write!(f, "expected a {expected} value, got {found}")
            }
            ValueError::Null => write!(f, "NULL in a column declared NOT NULL"),
            ValueError::NoPlaceholder => write!(
                f,
                "an unchanged TOASTed value of a type without a placeholder; \
                 set REPLICA IDENTITY FULL on the table"
            ),
            ValueError::DecimalScale { found, expected } => {
                write!(
                    f,
                    "decimal at scale {found}, the column's scale is {expected}"
                )
            }
        }
    }
}

/// The Connect schema of a column of type `ty` (required; the caller makes it optional).
pub(crate) fn column_schema(ty: &PgType) -> Schema {
    let semantic = |kind: Kind, name: &str| Schema::new(kind).named(name).version(1);
    match ty {
        PgType::Bool | PgType::Bit1 => Schema::new(Kind::Boolean),
        PgType::Int2 => Schema::new(Kind::Int16),
        PgType::Int4 => Schema::new(Kind::Int32),
        PgType::Int8 | PgType::Oid => Schema::new(Kind::Int64),
        PgType::Float4 => Schema::new(Kind::Float32),
        PgType::Float8 | PgType::DecimalDouble { .. } => Schema::new(Kind::Float64),
        PgType::DecimalText { .. } => Schema::new(Kind::String),
        PgType::Decimal { precision, scale } => semantic(Kind::Bytes, DECIMAL_NAME)
            .parameter("scale", scale.to_string())
            .parameter("connect.decimal.precision", precision.to_string()),
        // The source type travels as Debezium's `column.propagate.source.type` would send it,
        // so a sink can create a money column rather than a numeric one.
        PgType::Money { fraction_digits } => semantic(Kind::Bytes, DECIMAL_NAME)
            .parameter("scale", fraction_digits.to_string())
            .parameter(SOURCE_COLUMN_TYPE_PARAMETER, "money"),
        PgType::VariableDecimal => Schema::record(
            "io.debezium.data.VariableScaleDecimal",
            vec![
                Field::new("scale", Schema::new(Kind::Int32)),
                Field::new("value", Schema::new(Kind::Bytes)),
            ],
        )
        .version(1)
        .doc("Variable scaled decimal"),
        PgType::Text | PgType::Other { .. } => Schema::new(Kind::String),
        PgType::Bytea => Schema::new(Kind::Bytes),
        PgType::EncodedBytea { encoding } => {
            Schema::new(Kind::String).parameter(BINARY_ENCODING_PARAMETER, encoding.name())
        }
        PgType::Date => semantic(Kind::Int32, "io.debezium.time.Date"),
        PgType::Time => semantic(Kind::Int64, "io.debezium.time.MicroTime"),
        PgType::Timestamp => semantic(Kind::Int64, "io.debezium.time.MicroTimestamp"),
        PgType::Timestamptz { .. } => semantic(Kind::String, "io.debezium.time.ZonedTimestamp"),
        PgType::Timetz => semantic(Kind::String, "io.debezium.time.ZonedTime"),
        PgType::Interval => semantic(Kind::Int64, "io.debezium.time.MicroDuration"),
        PgType::IntervalText => semantic(Kind::String, "io.debezium.time.Interval"),
        PgType::TimestampMillis { connect: false } => {
            semantic(Kind::Int64, "io.debezium.time.Timestamp")
        }
        PgType::TimestampMillis { connect: true } => {
            semantic(Kind::Int64, "org.apache.kafka.connect.data.Timestamp")
        }
        PgType::ConnectDate => semantic(Kind::Int32, "org.apache.kafka.connect.data.Date"),
        PgType::ConnectTime => semantic(Kind::Int32, "org.apache.kafka.connect.data.Time"),
        PgType::Uuid => semantic(Kind::String, "io.debezium.data.Uuid"),
        PgType::Json => semantic(Kind::String, "io.debezium.data.Json"),
        PgType::Hstore => semantic(Kind::String, "io.debezium.data.Json")
            .parameter(SOURCE_COLUMN_TYPE_PARAMETER, "hstore"),
        // Keys are never null, values may be.
        PgType::HstoreMap => Schema::new(Kind::Map(Box::new(Schema::new(Kind::String).optional()))),
        PgType::Xml => semantic(Kind::String, "io.debezium.data.Xml"),
        PgType::Ltree => semantic(Kind::String, "io.debezium.data.Ltree"),
        PgType::Point => Schema::record(
            POINT_NAME,
            vec![
                Field::new("x", Schema::new(Kind::Float64)),
                Field::new("y", Schema::new(Kind::Float64)),
                Field::new("wkb", Schema::new(Kind::Bytes).optional()),
                Field::new("srid", Schema::new(Kind::Int32).optional()),
            ],
        )
        .version(1)
        .doc("Geometry (POINT)"),
        PgType::Enum { type_name, labels } => {
            let schema = semantic(Kind::String, "io.debezium.data.Enum")
                .parameter("allowed", labels.join(","));
            // The type's name, under the key of Debezium's `column.propagate.source.type`, lets
            // a sink create the same type, but only when `allowed` (comma-separated, without
            // escapes, as in Debezium) gives its labels back unchanged.
            if labels.iter().any(|label| label.contains(',')) {
                schema
            } else {
                schema.parameter(SOURCE_COLUMN_TYPE_PARAMETER, type_name.clone())
            }
        }
        PgType::Bits { length } => semantic(Kind::Bytes, "io.debezium.data.Bits").parameter(
            "length",
            length.unwrap_or(UNBOUNDED_BITS_LENGTH).to_string(),
        ),
        // PostgreSQL arrays may hold NULL elements, so elements are optional, as Debezium has
        // them for every type but enums: its required enum elements fail its connector on a
        // NULL element, which pgcdc must carry.
        PgType::Array(element) => {
            Schema::new(Kind::Array(Box::new(column_schema(element).optional())))
        }
    }
}

/// The scale a decimal column's values must have: numeric(p,s)'s, or money's.
pub(crate) fn decimal_scale(ty: &PgType) -> Option<u32> {
    match ty {
        PgType::Decimal { scale, .. } => Some(*scale),
        PgType::Money { fraction_digits } => Some(*fraction_digits),
        _ => None,
    }
}

/// A decimal value's unscaled bytes, when it is at `expected` scale.
pub(crate) fn at_scale(unscaled: &[u8], found: u32, expected: u32) -> Result<&[u8], ValueError> {
    if found == expected {
        Ok(unscaled)
    } else {
        Err(ValueError::DecimalScale { found, expected })
    }
}

/// Types whose values are [`Value::String`].
pub(crate) fn is_string_like(ty: &PgType) -> bool {
    matches!(
        ty,
        PgType::Text
            | PgType::Timestamptz { .. }
            | PgType::Timetz
            | PgType::Uuid
            | PgType::Json
            | PgType::Xml
            | PgType::Ltree
            | PgType::Hstore
            | PgType::DecimalText { .. }
            | PgType::IntervalText
            | PgType::EncodedBytea { .. }
            | PgType::Enum { .. }
            | PgType::Other { .. }
    )
}

/// Types whose values are [`Value::Int`].
pub(crate) fn is_int_like(ty: &PgType) -> bool {
    matches!(
        ty,
        PgType::Int2 | PgType::Int4 | PgType::Date | PgType::ConnectDate | PgType::ConnectTime
    )
}

/// Types whose values are [`Value::Long`].
pub(crate) fn is_long_like(ty: &PgType) -> bool {
    matches!(
        ty,
        PgType::Int8
            | PgType::Oid
            | PgType::Time
            | PgType::Timestamp
            | PgType::TimestampMillis { .. }
            | PgType::Interval
    )
}

/// The value shape a column of type `ty` takes, for error messages.
pub(crate) fn expected_kind(ty: &PgType) -> &'static str {
    match ty {
        PgType::Bool | PgType::Bit1 => "boolean",
        ty if is_int_like(ty) => "int",
        ty if is_long_like(ty) => "long",
        PgType::Float4 => "float",
        PgType::Float8 | PgType::DecimalDouble { .. } => "double",
        PgType::Decimal { .. } | PgType::Money { .. } => "decimal",
        PgType::Point => "point",
        PgType::VariableDecimal => "variable-scale decimal",
        PgType::Bytea | PgType::Bits { .. } => "bytes",
        PgType::Array(_) => "array",
        PgType::HstoreMap => "map",
        _ => "string",
    }
}

/// The shape of a value, for error messages.
pub(crate) fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Absent => "absent",
        Value::Unavailable => "unavailable",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Decimal { .. } => "decimal",
        Value::VariableDecimal { .. } => "variable-scale decimal",
        Value::Point { .. } => "point",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
    }
}

/// The value to write for a column: `None` for null; for an absent value of a NOT NULL
/// column its schema default, else the type's zero value (Debezium's fallback); the
/// placeholder for an unavailable one.
pub(crate) fn resolve<'a>(
    column: &'a Column,
    value: &'a Value,
) -> Result<Option<Cow<'a, Value>>, ValueError> {
    let ty = &column.pg_type;
    match value {
        Value::Null if column.optional => Ok(None),
        Value::Null => Err(ValueError::Null),
        Value::Absent if column.optional => Ok(None),
        Value::Absent => Ok(Some(match &column.default {
            Some(default) => Cow::Borrowed(default),
            None => Cow::Owned(zero(ty)),
        })),
        Value::Unavailable => placeholder(ty)
            .map(|value| Some(Cow::Owned(value)))
            .ok_or(ValueError::NoPlaceholder),
        value => Ok(Some(Cow::Borrowed(value))),
    }
}

/// A column default as the schema's default value (SPEC §5: Debezium's `connect.default`).
/// A decimal's is left out: Avro readers such as the Rust `apache-avro` crate refuse a bytes
/// default on a `decimal` logical type, and a registry built on one refuses the schema.
pub(crate) fn schema_default(value: &Value) -> Option<DefaultValue> {
    Some(match value {
        Value::Bool(b) => DefaultValue::json(b.to_string()),
        Value::Int(i) => DefaultValue::json(i.to_string()),
        Value::Long(l) => DefaultValue::json(l.to_string()),
        Value::Float(f) => DefaultValue::json(serde_json::Value::from(f64::from(*f)).to_string()),
        Value::Double(d) => DefaultValue::json(serde_json::Value::from(*d).to_string()),
        Value::String(text) => DefaultValue::string(text),
        _ => return None,
    })
}

/// Where a nullable column's union has its null branch: `["null", T]`, or `[T, "null"]` when
/// the schema carries a default (an Avro union's default must match its first branch).
pub(crate) fn null_branch_first(column: &Column) -> bool {
    column.default.is_none()
}

/// Debezium's fallback for a missing value of a NOT NULL column.
fn zero(ty: &PgType) -> Value {
    match ty {
        PgType::Bool | PgType::Bit1 => Value::Bool(false),
        PgType::Int2 | PgType::Int4 | PgType::Date | PgType::ConnectDate | PgType::ConnectTime => {
            Value::Int(0)
        }
        PgType::Int8
        | PgType::Oid
        | PgType::Time
        | PgType::Timestamp
        | PgType::TimestampMillis { .. }
        | PgType::Interval => Value::Long(0),
        PgType::Float4 => Value::Float(0.0),
        PgType::Float8 | PgType::DecimalDouble { .. } => Value::Double(0.0),
        PgType::DecimalText { .. } => Value::String("0".to_string()),
        PgType::IntervalText => Value::String("P0Y0M0DT0H0M0S".to_string()),
        // BigInteger.ZERO.toByteArray() is one zero byte.
        PgType::Decimal { scale, .. } => Value::Decimal {
            unscaled: vec![0],
            scale: *scale,
        },
        PgType::Money { fraction_digits } => Value::Decimal {
            unscaled: vec![0],
            scale: *fraction_digits,
        },
        PgType::Point => Value::Point { x: 0.0, y: 0.0 },
        PgType::VariableDecimal => Value::VariableDecimal {
            unscaled: vec![0],
            scale: 0,
        },
        PgType::Timestamptz { .. } => Value::String("1970-01-01T00:00:00Z".to_string()),
        PgType::Timetz => Value::String("00:00:00Z".to_string()),
        PgType::Bytea | PgType::Bits { .. } => Value::Bytes(Vec::new()),
        PgType::Array(_) => Value::Array(Vec::new()),
        PgType::Hstore => Value::String("{}".to_string()),
        PgType::HstoreMap => Value::Map(Vec::new()),
        PgType::Text
        | PgType::EncodedBytea { .. }
        | PgType::Uuid
        | PgType::Json
        | PgType::Xml
        | PgType::Ltree
        | PgType::Enum { .. }
        | PgType::Other { .. } => Value::String(String::new()),
    }
}

/// What Debezium writes for an unchanged TOASTed value; `None` for types PostgreSQL never
/// TOASTs (fixed-length) or for which Debezium has no placeholder.
fn placeholder(ty: &PgType) -> Option<Value> {
    let bytes = || UNAVAILABLE_VALUE_PLACEHOLDER.as_bytes().to_vec();
    match ty {
        // Debezium reads the placeholder as hstore text of one pair, key and value both it.
        PgType::Hstore => Some(Value::String(format!(
            "{{\"{UNAVAILABLE_VALUE_PLACEHOLDER}\":\"{UNAVAILABLE_VALUE_PLACEHOLDER}\"}}"
        ))),
        PgType::HstoreMap => Some(Value::Map(vec![(
            UNAVAILABLE_VALUE_PLACEHOLDER.to_string(),
            Some(UNAVAILABLE_VALUE_PLACEHOLDER.to_string()),
        )])),
        ty if is_string_like(ty) => Some(Value::String(UNAVAILABLE_VALUE_PLACEHOLDER.to_string())),
        PgType::Bytea | PgType::Bits { .. } => Some(Value::Bytes(bytes())),
        PgType::Decimal { scale, .. } => Some(Value::Decimal {
            unscaled: bytes(),
            scale: *scale,
        }),
        PgType::VariableDecimal => Some(Value::VariableDecimal {
            unscaled: bytes(),
            scale: 0,
        }),
        PgType::Array(element) => array_placeholder(element).map(Value::Array),
        _ => None,
    }
}

fn array_placeholder(element: &PgType) -> Option<Vec<Value>> {
    let numbers = |each: fn(u8) -> Value| {
        Some(
            UNAVAILABLE_VALUE_PLACEHOLDER
                .bytes()
                .map(each)
                .collect::<Vec<_>>(),
        )
    };
    match element {
        PgType::Uuid => Some(vec![Value::String(
            UNAVAILABLE_UUID_PLACEHOLDER.to_string(),
        )]),
        ty if is_int_like(ty) => numbers(|b| Value::Int(i32::from(b))),
        ty if is_long_like(ty) => numbers(|b| Value::Long(i64::from(b))),
        PgType::Float4 => numbers(|b| Value::Float(f32::from(b))),
        PgType::Float8 | PgType::DecimalDouble { .. } => numbers(|b| Value::Double(f64::from(b))),
        PgType::Bool | PgType::Bit1 | PgType::Array(_) => None,
        other => placeholder(other).map(|value| vec![value]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::schema::to_avro_json;
    use crate::event::types::BinaryEncoding;

    #[test]
    fn semantic_types_follow_debezium() {
        let cases: Vec<(PgType, &str)> = vec![
            (PgType::Int2, r#"{"type":"int","connect.type":"int16"}"#),
            (PgType::Float4, r#""float""#),
            (
                PgType::Other {
                    type_name: "point".into(),
                },
                r#""string""#,
            ),
            (
                PgType::Date,
                r#"{"type":"int","connect.version":1,"connect.name":"io.debezium.time.Date"}"#,
            ),
            (
                PgType::Timestamptz { fraction_digits: 6 },
                r#"{"type":"string","connect.version":1,"connect.name":"io.debezium.time.ZonedTimestamp"}"#,
            ),
            (
                PgType::Enum {
                    type_name: "l1.abc".into(),
                    labels: vec!["a".into(), "b".into(), "c".into()],
                },
                r#"{"type":"string","connect.version":1,"connect.parameters":{"allowed":"a,b,c","__debezium.source.column.type":"l1.abc"},"connect.name":"io.debezium.data.Enum"}"#,
            ),
            (
                PgType::Enum {
                    type_name: "l1.odd".into(),
                    labels: vec!["a,b".into(), "c".into()],
                },
                r#"{"type":"string","connect.version":1,"connect.parameters":{"allowed":"a,b,c"},"connect.name":"io.debezium.data.Enum"}"#,
            ),
            (
                PgType::Bits { length: Some(8) },
                r#"{"type":"bytes","connect.version":1,"connect.parameters":{"length":"8"},"connect.name":"io.debezium.data.Bits"}"#,
            ),
            (
                PgType::Bits { length: None },
                r#"{"type":"bytes","connect.version":1,"connect.parameters":{"length":"2147483647"},"connect.name":"io.debezium.data.Bits"}"#,
            ),
            (
                PgType::Array(Box::new(PgType::Uuid)),
                r#"{"type":"array","items":["null",{"type":"string","connect.version":1,"connect.name":"io.debezium.data.Uuid"}]}"#,
            ),
            // Optional elements also for enums (see column_schema).
            (
                PgType::Array(Box::new(PgType::Enum {
                    type_name: "l1.ab".into(),
                    labels: vec!["a".into(), "b".into()],
                })),
                r#"{"type":"array","items":["null",{"type":"string","connect.version":1,"connect.parameters":{"allowed":"a,b","__debezium.source.column.type":"l1.ab"},"connect.name":"io.debezium.data.Enum"}]}"#,
            ),
            (PgType::Oid, r#""long""#),
            (
                PgType::HstoreMap,
                r#"{"type":"map","values":["null","string"]}"#,
            ),
            (
                PgType::EncodedBytea {
                    encoding: BinaryEncoding::Base64UrlSafe,
                },
                r#"{"type":"string","connect.parameters":{"__pgcdc.binary.handling.mode":"base64-url-safe"}}"#,
            ),
            (
                PgType::ConnectDate,
                r#"{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Date","logicalType":"date"}"#,
            ),
            (
                PgType::ConnectTime,
                r#"{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Time","logicalType":"time-millis"}"#,
            ),
            (
                PgType::TimestampMillis { connect: true },
                r#"{"type":"long","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Timestamp","logicalType":"timestamp-millis"}"#,
            ),
            (
                PgType::TimestampMillis { connect: false },
                r#"{"type":"long","connect.version":1,"connect.name":"io.debezium.time.Timestamp"}"#,
            ),
            (
                PgType::IntervalText,
                r#"{"type":"string","connect.version":1,"connect.name":"io.debezium.time.Interval"}"#,
            ),
            (
                PgType::Array(Box::new(PgType::Oid)),
                r#"{"type":"array","items":["null","long"]}"#,
            ),
            (
                PgType::Money { fraction_digits: 2 },
                r#"{"type":"bytes","scale":2,"precision":64,"connect.version":1,"connect.parameters":{"scale":"2","__debezium.source.column.type":"money"},"connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}"#,
            ),
            (
                PgType::Ltree,
                r#"{"type":"string","connect.version":1,"connect.name":"io.debezium.data.Ltree"}"#,
            ),
            (
                PgType::Array(Box::new(PgType::Ltree)),
                r#"{"type":"array","items":["null",{"type":"string","connect.version":1,"connect.name":"io.debezium.data.Ltree"}]}"#,
            ),
            (
                PgType::Hstore,
                r#"{"type":"string","connect.version":1,"connect.parameters":{"__debezium.source.column.type":"hstore"},"connect.name":"io.debezium.data.Json"}"#,
            ),
            (
                PgType::Point,
                r#"{"type":"record","name":"Point","namespace":"io.debezium.data.geometry","fields":[{"name":"x","type":"double"},{"name":"y","type":"double"},{"name":"wkb","type":["null","bytes"],"default":null},{"name":"srid","type":["null","int"],"default":null}],"connect.doc":"Geometry (POINT)","connect.version":1,"connect.name":"io.debezium.data.geometry.Point"}"#,
            ),
        ];
        for (ty, expected) in cases {
            assert_eq!(to_avro_json(&column_schema(&ty)), expected, "{ty:?}");
        }
    }

    fn column(pg_type: PgType, optional: bool, default: Option<Value>) -> Column {
        Column {
            default,
            ..crate::encode::tests::column("c", pg_type, optional)
        }
    }

    fn resolved(column: &Column, value: &Value) -> Result<Option<Value>, ValueError> {
        resolve(column, value).map(|v| v.map(Cow::into_owned))
    }

    #[test]
    fn absent_values_become_null_or_zero_or_the_default() {
        let ty = PgType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(
            resolved(&column(ty.clone(), true, None), &Value::Absent),
            Ok(None)
        );
        assert_eq!(
            resolved(&column(ty, false, None), &Value::Absent),
            Ok(Some(Value::Decimal {
                unscaled: vec![0],
                scale: 2
            }))
        );
        assert_eq!(
            resolved(
                &column(PgType::Timestamptz { fraction_digits: 6 }, false, None),
                &Value::Absent
            ),
            Ok(Some(Value::String("1970-01-01T00:00:00Z".into())))
        );
        // Debezium: a schema default wins over the fallback.
        assert_eq!(
            resolved(
                &column(PgType::Int4, false, Some(Value::Int(7))),
                &Value::Absent
            ),
            Ok(Some(Value::Int(7)))
        );
        assert_eq!(
            resolved(
                &column(PgType::Money { fraction_digits: 2 }, false, None),
                &Value::Absent
            ),
            Ok(Some(Value::Decimal {
                unscaled: vec![0],
                scale: 2
            }))
        );
        assert_eq!(
            resolved(&column(PgType::Hstore, false, None), &Value::Absent),
            Ok(Some(Value::String("{}".into())))
        );
        assert_eq!(
            resolved(&column(PgType::Int4, false, None), &Value::Null),
            Err(ValueError::Null)
        );
        assert_eq!(
            resolved(&column(PgType::Int4, true, None), &Value::Null),
            Ok(None)
        );
    }

    #[test]
    fn unavailable_values_become_placeholders() {
        let resolved =
            |ty: PgType| super::tests::resolved(&column(ty, true, None), &Value::Unavailable);
        assert_eq!(
            resolved(PgType::Json),
            Ok(Some(Value::String(UNAVAILABLE_VALUE_PLACEHOLDER.into())))
        );
        assert_eq!(
            resolved(PgType::Bytea),
            Ok(Some(Value::Bytes(UNAVAILABLE_VALUE_PLACEHOLDER.into())))
        );
        assert_eq!(
            resolved(PgType::Array(Box::new(PgType::Text))),
            Ok(Some(Value::Array(vec![Value::String(
                UNAVAILABLE_VALUE_PLACEHOLDER.into()
            )])))
        );
        assert_eq!(
            resolved(PgType::Array(Box::new(PgType::Uuid))),
            Ok(Some(Value::Array(vec![Value::String(
                UNAVAILABLE_UUID_PLACEHOLDER.into()
            )])))
        );
        let Ok(Some(Value::Array(ints))) = resolved(PgType::Array(Box::new(PgType::Int4))) else {
            panic!("int[] placeholder");
        };
        assert_eq!(ints.len(), UNAVAILABLE_VALUE_PLACEHOLDER.len());
        assert_eq!(ints.first(), Some(&Value::Int(i32::from(b'_'))));
        assert_eq!(resolved(PgType::Int4), Err(ValueError::NoPlaceholder));
        assert_eq!(
            resolved(PgType::Array(Box::new(PgType::Bool))),
            Err(ValueError::NoPlaceholder)
        );
    }
}
