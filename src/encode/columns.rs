//! Column types (SPEC §5): the Connect schema of each [`PgType`], which [`Value`] shape it
//! takes, and what stands in for the values an image does not carry.
//!
//! Absent and unavailable values are written as described in the `encode` module's doc.

use std::borrow::Cow;

use crate::event::{PgType, Value, UNAVAILABLE_VALUE_PLACEHOLDER};

use super::schema::{Field, Kind, Schema, DECIMAL_NAME};
use super::SOURCE_COLUMN_TYPE_PARAMETER;

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
        PgType::Int8 => Schema::new(Kind::Int64),
        PgType::Float4 => Schema::new(Kind::Float32),
        PgType::Float8 => Schema::new(Kind::Float64),
        PgType::Decimal { precision, scale } => semantic(Kind::Bytes, DECIMAL_NAME)
            .parameter("scale", scale.to_string())
            .parameter("connect.decimal.precision", precision.to_string()),
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
        PgType::Date => semantic(Kind::Int32, "io.debezium.time.Date"),
        PgType::Time => semantic(Kind::Int64, "io.debezium.time.MicroTime"),
        PgType::Timestamp => semantic(Kind::Int64, "io.debezium.time.MicroTimestamp"),
        PgType::Timestamptz => semantic(Kind::String, "io.debezium.time.ZonedTimestamp"),
        PgType::Timetz => semantic(Kind::String, "io.debezium.time.ZonedTime"),
        PgType::Interval => semantic(Kind::Int64, "io.debezium.time.MicroDuration"),
        PgType::Uuid => semantic(Kind::String, "io.debezium.data.Uuid"),
        PgType::Json => semantic(Kind::String, "io.debezium.data.Json"),
        PgType::Xml => semantic(Kind::String, "io.debezium.data.Xml"),
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
        // PostgreSQL arrays may hold NULL elements, so elements are optional (as in Debezium).
        PgType::Array(element) => {
            Schema::new(Kind::Array(Box::new(column_schema(element).optional())))
        }
    }
}

/// Types whose values are [`Value::String`].
pub(crate) fn is_string_like(ty: &PgType) -> bool {
    matches!(
        ty,
        PgType::Text
            | PgType::Timestamptz
            | PgType::Timetz
            | PgType::Uuid
            | PgType::Json
            | PgType::Xml
            | PgType::Enum { .. }
            | PgType::Other { .. }
    )
}

/// The value shape a column of type `ty` takes, for error messages.
pub(crate) fn expected_kind(ty: &PgType) -> &'static str {
    match ty {
        PgType::Bool | PgType::Bit1 => "boolean",
        PgType::Int2 | PgType::Int4 | PgType::Date => "int",
        PgType::Int8 | PgType::Time | PgType::Timestamp | PgType::Interval => "long",
        PgType::Float4 => "float",
        PgType::Float8 => "double",
        PgType::Decimal { .. } => "decimal",
        PgType::VariableDecimal => "variable-scale decimal",
        PgType::Bytea | PgType::Bits { .. } => "bytes",
        PgType::Array(_) => "array",
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
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "array",
    }
}

/// The value to write for a column: `None` for null, the zero value for an absent value of a
/// NOT NULL column, the placeholder for an unavailable one.
pub(crate) fn resolve<'a>(
    ty: &PgType,
    optional: bool,
    value: &'a Value,
) -> Result<Option<Cow<'a, Value>>, ValueError> {
    match value {
        Value::Null if optional => Ok(None),
        Value::Null => Err(ValueError::Null),
        Value::Absent if optional => Ok(None),
        Value::Absent => Ok(Some(Cow::Owned(zero(ty)))),
        Value::Unavailable => placeholder(ty)
            .map(|value| Some(Cow::Owned(value)))
            .ok_or(ValueError::NoPlaceholder),
        value => Ok(Some(Cow::Borrowed(value))),
    }
}

/// Debezium's fallback for a missing value of a NOT NULL column.
fn zero(ty: &PgType) -> Value {
    match ty {
        PgType::Bool | PgType::Bit1 => Value::Bool(false),
        PgType::Int2 | PgType::Int4 | PgType::Date => Value::Int(0),
        PgType::Int8 | PgType::Time | PgType::Timestamp | PgType::Interval => Value::Long(0),
        PgType::Float4 => Value::Float(0.0),
        PgType::Float8 => Value::Double(0.0),
        // BigInteger.ZERO.toByteArray() is one zero byte.
        PgType::Decimal { scale, .. } => Value::Decimal {
            unscaled: vec![0],
            scale: *scale,
        },
        PgType::VariableDecimal => Value::VariableDecimal {
            unscaled: vec![0],
            scale: 0,
        },
        PgType::Timestamptz => Value::String("1970-01-01T00:00:00Z".to_string()),
        PgType::Timetz => Value::String("00:00:00Z".to_string()),
        PgType::Bytea | PgType::Bits { .. } => Value::Bytes(Vec::new()),
        PgType::Array(_) => Value::Array(Vec::new()),
        PgType::Text
        | PgType::Uuid
        | PgType::Json
        | PgType::Xml
        | PgType::Enum { .. }
        | PgType::Other { .. } => Value::String(String::new()),
    }
}

/// What Debezium writes for an unchanged TOASTed value; `None` for types PostgreSQL never
/// TOASTs (fixed-length) or for which Debezium has no placeholder.
fn placeholder(ty: &PgType) -> Option<Value> {
    let bytes = || UNAVAILABLE_VALUE_PLACEHOLDER.as_bytes().to_vec();
    match ty {
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
        PgType::Int2 | PgType::Int4 | PgType::Date => numbers(|b| Value::Int(i32::from(b))),
        PgType::Int8 | PgType::Time | PgType::Timestamp | PgType::Interval => {
            numbers(|b| Value::Long(i64::from(b)))
        }
        PgType::Float4 => numbers(|b| Value::Float(f32::from(b))),
        PgType::Float8 => numbers(|b| Value::Double(f64::from(b))),
        PgType::Bool | PgType::Bit1 | PgType::Array(_) => None,
        other => placeholder(other).map(|value| vec![value]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::schema::to_avro_json;

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
                PgType::Timestamptz,
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
        ];
        for (ty, expected) in cases {
            assert_eq!(to_avro_json(&column_schema(&ty)), expected, "{ty:?}");
        }
    }

    #[test]
    fn absent_values_become_null_or_zero() {
        let ty = PgType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(resolve(&ty, true, &Value::Absent), Ok(None));
        assert_eq!(
            resolve(&ty, false, &Value::Absent)
                .unwrap()
                .unwrap()
                .into_owned(),
            Value::Decimal {
                unscaled: vec![0],
                scale: 2
            }
        );
        assert_eq!(
            resolve(&PgType::Timestamptz, false, &Value::Absent)
                .unwrap()
                .unwrap()
                .into_owned(),
            Value::String("1970-01-01T00:00:00Z".into())
        );
        assert_eq!(
            resolve(&PgType::Int4, false, &Value::Null),
            Err(ValueError::Null)
        );
        assert_eq!(resolve(&PgType::Int4, true, &Value::Null), Ok(None));
    }

    #[test]
    fn unavailable_values_become_placeholders() {
        let resolved =
            |ty: PgType| resolve(&ty, true, &Value::Unavailable).map(|v| v.map(Cow::into_owned));
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
