//! Column defaults as Debezium's schemas carry them (`PostgresDefaultValueConverter`): a
//! constant default is the column's value in its schema; a default computed by a function
//! (`nextval(…)` of a serial, `now()`, `gen_random_uuid()`, `CURRENT_TIMESTAMP`) becomes the
//! type's placeholder (0 for a serial). Types Debezium has no default converter for, and
//! expressions it cannot read, get no default.

use super::{parse_text, PgType};
use crate::event::Value;

/// SQL value functions PostgreSQL prints without parentheses.
const CURRENT_DATE_TIMES: [&str; 5] = [
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
];

/// The schema default of a column of type `pg_type`, declared as `type_name` (its `pg_type`
/// name), whose default is `expression` as `pg_get_expr` prints it.
pub fn column_default(pg_type: &PgType, type_name: &str, expression: &str) -> Option<Value> {
    if !has_default_converter(pg_type, type_name) {
        return None;
    }
    let expression = expression.trim();
    if is_function_call(expression) {
        return placeholder(pg_type);
    }
    let literal = literal(expression)?;
    let literal = match (pg_type, literal.as_str()) {
        (PgType::Bool, "true") => "t".to_string(),
        (PgType::Bool, "false") => "f".to_string(),
        _ => literal,
    };
    parse_text(pg_type, literal.as_bytes())
        .ok()
        .filter(|value| *value != Value::Null)
}

/// The types Debezium converts defaults of, by their `pg_type` name (a domain's own name has
/// none).
fn has_default_converter(pg_type: &PgType, type_name: &str) -> bool {
    matches!(
        (pg_type, type_name),
        (PgType::Bool, "bool")
            | (PgType::Int2, "int2")
            | (PgType::Int4, "int4")
            | (PgType::Int8, "int8")
            | (PgType::Float4, "float4")
            | (PgType::Float8, "float8")
            | (PgType::Decimal { .. }, "numeric")
            | (PgType::Text, "text" | "varchar" | "bpchar")
            | (PgType::Json, "json" | "jsonb")
            | (PgType::Xml, "xml")
            | (PgType::Uuid, "uuid")
            | (PgType::Date, "date")
            | (PgType::Time, "time")
            | (PgType::Timestamp, "timestamp")
            | (PgType::Timestamptz { .. }, "timestamptz")
            | (PgType::Interval, "interval")
    )
}

/// `name(…)`, optionally behind an opening parenthesis, or one of the SQL value functions: as
/// Debezium's `FUNCTION_DEFAULT_PATTERN` and `CURRENT_DATE_TIMES` tell a computed default.
fn is_function_call(expression: &str) -> bool {
    if CURRENT_DATE_TIMES.contains(&expression.to_ascii_lowercase().as_str()) {
        return true;
    }
    let rest = expression.strip_prefix('(').unwrap_or(expression);
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    name_end > 0 && rest[name_end..].starts_with('(') && rest[name_end + 1..].contains(')')
}

/// The value Debezium puts in the schema for a computed default of this type.
fn placeholder(pg_type: &PgType) -> Option<Value> {
    Some(match pg_type {
        PgType::Bool => Value::Bool(false),
        PgType::Int2 | PgType::Int4 | PgType::Date => Value::Int(0),
        PgType::Int8 | PgType::Time | PgType::Timestamp | PgType::Interval => Value::Long(0),
        PgType::Float4 => Value::Float(0.0),
        PgType::Float8 => Value::Double(0.0),
        PgType::Decimal { scale, .. } => Value::Decimal {
            unscaled: vec![0],
            scale: *scale,
        },
        PgType::Text | PgType::Xml => Value::String(String::new()),
        PgType::Json => Value::String("{}".to_string()),
        PgType::Uuid => Value::String("00000000-0000-0000-0000-000000000000".to_string()),
        PgType::Timestamptz { .. } => parse_text(pg_type, b"1970-01-01 00:00:00+00").ok()?,
        _ => return None,
    })
}

/// The constant of `'text'::type` (quotes doubled inside), `value::type` or a bare `value`;
/// `None` for `NULL` and for anything else (an operator expression).
fn literal(expression: &str) -> Option<String> {
    if let Some(quoted) = expression.strip_prefix('\'') {
        let mut text = String::new();
        let mut chars = quoted.char_indices();
        while let Some((index, c)) = chars.next() {
            if c != '\'' {
                text.push(c);
                continue;
            }
            if quoted[index + 1..].starts_with('\'') {
                text.push('\'');
                chars.next();
                continue;
            }
            let rest = &quoted[index + 1..];
            return (rest.is_empty() || rest.starts_with("::")).then_some(text);
        }
        return None;
    }
    let bare = expression
        .split_once("::")
        .map_or(expression, |(value, _)| value);
    let simple = bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    (simple && !bare.is_empty() && !bare.eq_ignore_ascii_case("null")).then(|| bare.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default(pg_type: PgType, type_name: &str, expression: &str) -> Option<Value> {
        column_default(&pg_type, type_name, expression)
    }

    #[test]
    fn computed_defaults_become_the_types_placeholder() {
        assert_eq!(
            default(PgType::Int4, "int4", "nextval('d_a_seq'::regclass)"),
            Some(Value::Int(0))
        );
        assert_eq!(
            default(
                PgType::Int8,
                "int8",
                "nextval('\"S\".\"big id\"'::regclass)"
            ),
            Some(Value::Long(0))
        );
        assert_eq!(
            default(PgType::Int2, "int2", "nextval('s'::regclass)"),
            Some(Value::Int(0))
        );
        assert_eq!(
            default(PgType::Timestamp, "timestamp", "now()"),
            Some(Value::Long(0))
        );
        assert_eq!(
            default(
                PgType::Timestamptz { fraction_digits: 6 },
                "timestamptz",
                "CURRENT_TIMESTAMP"
            ),
            Some(Value::String("1970-01-01T00:00:00.000000Z".into()))
        );
        assert_eq!(
            default(PgType::Uuid, "uuid", "gen_random_uuid()"),
            Some(Value::String("00000000-0000-0000-0000-000000000000".into()))
        );
        assert_eq!(
            default(PgType::Date, "date", "(now())::date"),
            Some(Value::Int(0))
        );
    }

    #[test]
    fn constant_defaults_are_the_columns_values() {
        assert_eq!(
            default(PgType::Int4, "int4", "2147483647"),
            Some(Value::Int(i32::MAX))
        );
        assert_eq!(
            default(PgType::Int4, "int4", "'-5'::integer"),
            Some(Value::Int(-5))
        );
        assert_eq!(
            default(PgType::Text, "text", "'ab''c'::text"),
            Some(Value::String("ab'c".into()))
        );
        assert_eq!(
            default(PgType::Text, "varchar", "'x'::character varying"),
            Some(Value::String("x".into()))
        );
        assert_eq!(
            default(PgType::Date, "date", "'2021-03-19'::date"),
            Some(Value::Int(18705))
        );
        assert_eq!(
            default(
                PgType::Timestamptz { fraction_digits: 6 },
                "timestamptz",
                "'2021-03-20 13:44:28+00'::timestamp with time zone"
            ),
            Some(Value::String("2021-03-20T13:44:28.000000Z".into()))
        );
        assert_eq!(
            default(PgType::Interval, "interval", "'01:00:00'::interval"),
            Some(Value::Long(3_600_000_000))
        );
        assert_eq!(
            default(PgType::Bool, "bool", "true"),
            Some(Value::Bool(true))
        );
        assert_eq!(
            default(PgType::Float8, "float8", "1.5"),
            Some(Value::Double(1.5))
        );
        assert_eq!(
            default(
                PgType::Decimal {
                    precision: 10,
                    scale: 2
                },
                "numeric",
                "12.5"
            ),
            Some(Value::Decimal {
                unscaled: vec![0x04, 0xe2],
                scale: 2
            })
        );
    }

    #[test]
    fn no_default_where_debezium_has_none() {
        // NULL, operator expressions, and types without a default converter.
        assert_eq!(default(PgType::Int4, "int4", "NULL::integer"), None);
        assert_eq!(default(PgType::Int2, "int2", "(1 + 2)"), None);
        assert_eq!(
            default(PgType::Text, "text", "('a'::text || 'b'::text)"),
            None
        );
        assert_eq!(
            default(PgType::Money { fraction_digits: 2 }, "money", "1.5"),
            None
        );
        assert_eq!(default(PgType::VariableDecimal, "numeric", "0"), None);
        assert_eq!(default(PgType::Text, "inet", "'10.0.0.1'::inet"), None);
        assert_eq!(default(PgType::Int4, "posint", "1"), None);
        assert_eq!(
            default(
                PgType::Array(Box::new(PgType::Int4)),
                "_int4",
                "'{1,2}'::integer[]"
            ),
            None
        );
    }
}
