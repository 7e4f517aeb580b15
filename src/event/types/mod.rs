//! PostgreSQL types → value shapes (SPEC §5): which family a column's type belongs to, and how its
//! text form (pgoutput's tuple format) becomes a [`Value`](super::Value).
//!
//! ```text
//! pg_type rows ──catalog_types_from_rows──▶ CatalogType ──PgType::from_catalog(typmod)──▶ PgType
//! tuple text   ─────────────────────────────parse_text(&PgType, bytes)──────────────────▶ Value
//! ```
//!
//! The text parsers expect what the source's sessions ask the server for: `DateStyle=ISO, MDY`,
//! `IntervalStyle=postgres`, `TimeZone=UTC`, `extra_float_digits=3`, `bytea_output=hex`. The
//! conversions follow Debezium's PostgreSQL connector with `time.precision.mode=microseconds` and
//! `decimal.handling.mode=precise`; where pgcdc departs from it, the parser's doc says so.

mod array;
mod binary;
mod catalog;
mod datetime;
mod defaults;
mod geometry;
mod hstore;
mod numeric;

use std::fmt;

pub use binary::{BinaryEncoding, BinaryHandling};
pub use catalog::{catalog_types_from_rows, CatalogType, CatalogTypeRow, CATALOG_TYPES_SQL};
pub use datetime::{TIMESTAMP_NEGATIVE_INFINITY_MICROS, TIMESTAMP_POSITIVE_INFINITY_MICROS};
pub use defaults::column_default;
pub use geometry::{point_wkb, POINT_WKB_LEN};
pub use hstore::HstoreHandling;

/// Microseconds in a millisecond.
const MICROS_PER_MILLI: i64 = 1_000;

/// Debezium's default `money.fraction.digits`: the scale of a money column's Decimal.
pub const MONEY_FRACTION_DIGITS: u32 = 2;

/// Debezium's `interval.handling.mode`: how interval values travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalHandling {
    /// `MicroDuration`: microseconds, a month counted as 30.4375 days.
    #[default]
    Numeric,
    /// `io.debezium.time.Interval`: ISO 8601 `P1Y2M3DT4H5M6.78S`, months kept.
    String,
}

/// Debezium's `time.precision.mode` (for date, time and timestamp; the zoned types are
/// strings in every mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecision {
    /// `MicroTime` and `MicroTimestamp` whatever the declared precision.
    #[default]
    Microseconds,
    /// `MicroTime`; a timestamp of precision 0–3 as `io.debezium.time.Timestamp` (ms).
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's own `Date`, `Time` (ms) and `Timestamp` (ms) logical types.
    Connect,
}

/// Debezium's handling modes that change how captured values travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeModes {
    /// `decimal.handling.mode`.
    pub decimal: DecimalHandling,
    /// `interval.handling.mode`.
    pub interval: IntervalHandling,
    /// `money.fraction.digits`: the scale of a money column's Decimal.
    pub money_fraction_digits: u32,
    /// `time.precision.mode`.
    pub time_precision: TimePrecision,
    /// `binary.handling.mode`.
    pub binary: BinaryHandling,
    /// `hstore.handling.mode`.
    pub hstore: HstoreHandling,
}

impl Default for TypeModes {
    fn default() -> TypeModes {
        TypeModes {
            decimal: DecimalHandling::default(),
            interval: IntervalHandling::default(),
            money_fraction_digits: MONEY_FRACTION_DIGITS,
            time_precision: TimePrecision::default(),
            binary: BinaryHandling::default(),
            hstore: HstoreHandling::default(),
        }
    }
}

/// Debezium's `decimal.handling.mode`: how numeric and money values travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecimalHandling {
    /// Connect `Decimal` (or `VariableScaleDecimal` without a declared scale): exact.
    #[default]
    Precise,
    /// The decimal's plain text: exact and readable, no arithmetic type.
    String,
    /// A double: readable, rounded to 15–17 significant digits.
    Double,
}

use super::Value;

/// A column type's family; it decides the Avro type, the semantic name and the text parser.
#[derive(Debug, Clone, PartialEq)]
pub enum PgType {
    /// boolean.
    Bool,
    /// smallint.
    Int2,
    /// integer.
    Int4,
    /// bigint.
    Int8,
    /// oid: an unsigned 32-bit number, carried as INT64 as Debezium does.
    Oid,
    /// real.
    Float4,
    /// double precision.
    Float8,
    /// numeric(p,s), with precision and scale from the type modifier.
    Decimal { precision: u32, scale: u32 },
    /// numeric without precision and scale.
    VariableDecimal,
    /// money: a Decimal at `fraction_digits` (`money.fraction.digits`, by default
    /// [`MONEY_FRACTION_DIGITS`]).
    Money { fraction_digits: u32 },
    /// numeric (`money`: money) under `decimal.handling.mode = string`: the plain decimal text.
    DecimalText { money: bool },
    /// numeric (`money`: money) under `decimal.handling.mode = double`: a double.
    DecimalDouble { money: bool },
    /// char, varchar, text, citext, inet, cidr, macaddr, macaddr8.
    Text,
    /// bytea.
    Bytea,
    /// bytea under a string `binary.handling.mode`: text in `encoding`.
    EncodedBytea { encoding: BinaryEncoding },
    /// date.
    Date,
    /// time without time zone.
    Time,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone; Debezium prints exactly `fraction_digits` (the declared
    /// precision, 6 without one; 0 prints a fraction only when it is not zero).
    Timestamptz { fraction_digits: u32 },
    /// time with time zone.
    Timetz,
    /// interval.
    Interval,
    /// interval under `interval.handling.mode = string`: ISO 8601 text.
    IntervalText,
    /// timestamp in milliseconds: `io.debezium.time.Timestamp` (adaptive modes, precision
    /// 0–3) or Connect's `Timestamp` (`connect`).
    TimestampMillis { connect: bool },
    /// date under `time.precision.mode = connect`: Connect's `Date` (days).
    ConnectDate,
    /// time under `time.precision.mode = connect`: Connect's `Time` (ms since midnight).
    ConnectTime,
    /// uuid.
    Uuid,
    /// json, jsonb.
    Json,
    /// xml.
    Xml,
    /// point: Debezium's `io.debezium.data.geometry.Point` struct.
    Point,
    /// ltree (extension): its text, named `io.debezium.data.Ltree`.
    Ltree,
    /// hstore (extension): a JSON object, as `hstore.handling.mode = json`.
    Hstore,
    /// hstore under `hstore.handling.mode = map`: a map of its pairs.
    HstoreMap,
    /// A user-defined enum type: its qualified name (`l1.mood`, quoted where SQL needs it)
    /// and its labels in sort order.
    Enum {
        type_name: String,
        labels: Vec<String>,
    },
    /// bit(1).
    Bit1,
    /// bit(n > 1), varbit; `length` is n or None for unbounded varbit.
    Bits { length: Option<u32> },
    /// An array of any other family.
    Array(Box<PgType>),
    /// Anything else: carried as its text form under the type's name.
    Other { type_name: String },
}

impl PgType {
    /// Debezium's semantic type name (the `connect.name` schema property), if the family has one.
    pub fn semantic_name(&self) -> Option<&'static str> {
        match self {
            PgType::Decimal { .. } | PgType::Money { .. } => {
                Some("org.apache.kafka.connect.data.Decimal")
            }
            PgType::VariableDecimal => Some("io.debezium.data.VariableScaleDecimal"),
            PgType::Date => Some("io.debezium.time.Date"),
            PgType::Time => Some("io.debezium.time.MicroTime"),
            PgType::Timestamp => Some("io.debezium.time.MicroTimestamp"),
            PgType::Timestamptz { .. } => Some("io.debezium.time.ZonedTimestamp"),
            PgType::Timetz => Some("io.debezium.time.ZonedTime"),
            PgType::Interval => Some("io.debezium.time.MicroDuration"),
            PgType::IntervalText => Some("io.debezium.time.Interval"),
            PgType::TimestampMillis { connect: false } => Some("io.debezium.time.Timestamp"),
            PgType::TimestampMillis { connect: true } => {
                Some("org.apache.kafka.connect.data.Timestamp")
            }
            PgType::ConnectDate => Some("org.apache.kafka.connect.data.Date"),
            PgType::ConnectTime => Some("org.apache.kafka.connect.data.Time"),
            PgType::Uuid => Some("io.debezium.data.Uuid"),
            PgType::Json | PgType::Hstore => Some("io.debezium.data.Json"),
            PgType::Xml => Some("io.debezium.data.Xml"),
            PgType::Point => Some("io.debezium.data.geometry.Point"),
            PgType::Ltree => Some("io.debezium.data.Ltree"),
            PgType::Enum { .. } => Some("io.debezium.data.Enum"),
            // Debezium gives bit(1) (and varbit(1)) a plain boolean schema.
            PgType::Bits { .. } => Some("io.debezium.data.Bits"),
            PgType::Bool
            | PgType::Int2
            | PgType::Int4
            | PgType::Int8
            | PgType::Oid
            | PgType::DecimalText { .. }
            | PgType::DecimalDouble { .. }
            | PgType::Float4
            | PgType::Float8
            | PgType::Text
            | PgType::Bytea
            | PgType::EncodedBytea { .. }
            | PgType::HstoreMap
            | PgType::Bit1
            | PgType::Array(_)
            | PgType::Other { .. } => None,
        }
    }
}

impl PgType {
    /// The family under Debezium's handling modes (also for array elements), for a column
    /// with this type modifier: numeric and money as text or a double
    /// (`decimal.handling.mode`), interval as ISO 8601 text (`interval.handling.mode`), money's
    /// scale (`money.fraction.digits`), date, time and timestamp units (`time.precision.mode`),
    /// bytea as text (`binary.handling.mode`), hstore as a map (`hstore.handling.mode`).
    pub fn with_modes(self, modes: TypeModes, type_modifier: i32) -> PgType {
        if let (PgType::Bytea, Some(encoding)) = (&self, modes.binary.encoding()) {
            return PgType::EncodedBytea { encoding };
        }
        if self == PgType::Hstore && modes.hstore == HstoreHandling::Map {
            return PgType::HstoreMap;
        }
        let money = matches!(self, PgType::Money { .. });
        // A time type's modifier is its declared precision; -1 (none) is 6.
        let millis = (0..=3).contains(&type_modifier);
        match (self, modes.decimal) {
            (PgType::Array(element), _) => {
                PgType::Array(Box::new(element.with_modes(modes, type_modifier)))
            }
            (PgType::Date, _) if modes.time_precision == TimePrecision::Connect => {
                PgType::ConnectDate
            }
            (PgType::Time, _) if modes.time_precision == TimePrecision::Connect => {
                PgType::ConnectTime
            }
            (PgType::Timestamp, _) if modes.time_precision == TimePrecision::Connect => {
                PgType::TimestampMillis { connect: true }
            }
            (PgType::Timestamp, _)
                if modes.time_precision == TimePrecision::AdaptiveTimeMicroseconds && millis =>
            {
                PgType::TimestampMillis { connect: false }
            }
            (PgType::Interval, _) if modes.interval == IntervalHandling::String => {
                PgType::IntervalText
            }
            (PgType::Money { .. }, DecimalHandling::Precise) => PgType::Money {
                fraction_digits: modes.money_fraction_digits,
            },
            (
                PgType::Decimal { .. } | PgType::VariableDecimal | PgType::Money { .. },
                DecimalHandling::String,
            ) => PgType::DecimalText { money },
            (
                PgType::Decimal { .. } | PgType::VariableDecimal | PgType::Money { .. },
                DecimalHandling::Double,
            ) => PgType::DecimalDouble { money },
            (other, _) => other,
        }
    }
}

/// SQL-ish names for messages and logs: `numeric(10,2)`, `varbit`, `int4[]`, `mood`'s labels elided.
impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Bool => f.write_str("boolean"),
            PgType::Int2 => f.write_str("smallint"),
            PgType::Int4 => f.write_str("integer"),
            PgType::Int8 => f.write_str("bigint"),
            PgType::Oid => f.write_str("oid"),
            PgType::Money { .. }
            | PgType::DecimalText { money: true }
            | PgType::DecimalDouble { money: true } => f.write_str("money"),
            PgType::DecimalText { money: false } | PgType::DecimalDouble { money: false } => {
                f.write_str("numeric")
            }
            PgType::Point => f.write_str("point"),
            PgType::Ltree => f.write_str("ltree"),
            PgType::Hstore | PgType::HstoreMap => f.write_str("hstore"),
            PgType::Float4 => f.write_str("real"),
            PgType::Float8 => f.write_str("double precision"),
            PgType::Decimal { precision, scale } => write!(f, "numeric({precision},{scale})"),
            PgType::VariableDecimal => f.write_str("numeric"),
            PgType::Text => f.write_str("text"),
            PgType::Bytea | PgType::EncodedBytea { .. } => f.write_str("bytea"),
            PgType::Date => f.write_str("date"),
            PgType::Time => f.write_str("time"),
            PgType::Timestamp => f.write_str("timestamp"),
            PgType::Timestamptz { .. } => f.write_str("timestamptz"),
            PgType::Timetz => f.write_str("timetz"),
            PgType::Interval | PgType::IntervalText => f.write_str("interval"),
            PgType::TimestampMillis { .. } => f.write_str("timestamp"),
            PgType::ConnectDate => f.write_str("date"),
            PgType::ConnectTime => f.write_str("time"),
            PgType::Uuid => f.write_str("uuid"),
            PgType::Json => f.write_str("json"),
            PgType::Xml => f.write_str("xml"),
            PgType::Enum { type_name, .. } => f.write_str(type_name),
            PgType::Bit1 => f.write_str("bit(1)"),
            PgType::Bits { length: Some(n) } => write!(f, "bit({n})"),
            PgType::Bits { length: None } => f.write_str("varbit"),
            PgType::Array(element) => write!(f, "{element}[]"),
            PgType::Other { type_name } => f.write_str(type_name),
        }
    }
}

/// The longest excerpt of an offending value an error message carries.
const MAX_ERROR_TEXT_CHARS: usize = 64;

/// A column value whose text form does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// The text is not a valid value of the type.
    #[error("cannot read {type_name} value {text:?}: {reason}")]
    Malformed {
        /// The column type, as [`PgType`]'s `Display` names it.
        type_name: String,
        /// The offending text, cut to 64 characters.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value is valid but does not fit the Debezium representation (e.g. µs since epoch in i64).
    #[error("{type_name} value {text:?} is out of the representable range")]
    OutOfRange {
        /// The column type.
        type_name: String,
        /// The offending text, cut to 64 characters.
        text: String,
    },
}

impl TypeError {
    fn malformed(pg_type: &PgType, text: &[u8], reason: &'static str) -> Self {
        TypeError::Malformed {
            type_name: pg_type.to_string(),
            text: excerpt(text),
            reason,
        }
    }

    fn out_of_range(pg_type: &PgType, text: &[u8]) -> Self {
        TypeError::OutOfRange {
            type_name: pg_type.to_string(),
            text: excerpt(text),
        }
    }
}

/// The first 64 characters of `text` (lossy UTF-8), with `…` when cut.
fn excerpt(text: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(text);
    let mut chars = lossy.char_indices();
    match chars.nth(MAX_ERROR_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", lossy.get(..cut).unwrap_or_default()),
        None => lossy.into_owned(),
    }
}

/// Converts one column's text form (pgoutput `t` tuple data, or `COPY … TO` text) into its value.
///
/// SQL NULL never reaches this function (pgoutput and COPY mark it separately); inside arrays an
/// unquoted `NULL` becomes [`Value::Null`]. Special cases, all as Debezium does unless noted:
/// - numeric `NaN`/`Infinity`/`-Infinity` have no precise decimal form: they become
///   [`Value::Null`] (Debezium fails the connector instead).
/// - numeric without a scale is Debezium's VariableScaleDecimal: trailing fractional zeros are
///   stripped (`1.50` → unscaled 15, scale 1).
/// - date `infinity`/`-infinity` → −2147472692 / −2147472691, Debezium's wrapped values;
///   timestamp → 9223372036825200000 / -9223372036832400000 µs; timestamptz → the strings
///   `infinity`/`-infinity`.
/// - timestamptz → ISO-8601 at UTC with exactly the column's precision in fraction digits
///   (6 by default: `.120000`), as Debezium's `ZonedTimestamp`; timetz → as Java's
///   `ISO_OFFSET_TIME` prints it: fraction without trailing zeros (`.12`), none when zero.
/// - bit(n)/varbit → the bits as a little-endian number in the fewest bytes (none for all-zero
///   bits), like Debezium's `BitSet.toByteArray()`.
/// - multi-dimensional arrays are flattened in row-major order.
pub fn parse_text(pg_type: &PgType, text: &[u8]) -> Result<Value, TypeError> {
    match pg_type {
        PgType::Bool => match text {
            b"t" => Ok(Value::Bool(true)),
            b"f" => Ok(Value::Bool(false)),
            _ => Err(TypeError::malformed(pg_type, text, "expected t or f")),
        },
        PgType::Int2 => parse_number::<i16>(pg_type, text).map(|v| Value::Int(v.into())),
        PgType::Int4 => parse_number::<i32>(pg_type, text).map(Value::Int),
        PgType::Int8 => parse_number::<i64>(pg_type, text).map(Value::Long),
        PgType::Oid => parse_number::<u32>(pg_type, text).map(|v| Value::Long(v.into())),
        PgType::Money { fraction_digits } => numeric::parse_money(pg_type, text, *fraction_digits),
        PgType::DecimalText { money } => {
            numeric::plain_text(pg_type, text, *money).map(Value::String)
        }
        PgType::DecimalDouble { money } => {
            let plain = numeric::plain_text(pg_type, text, *money)?;
            plain
                .parse::<f64>()
                .map(Value::Double)
                .map_err(|_| TypeError::malformed(pg_type, text, "not a decimal number"))
        }
        PgType::Point => geometry::parse_point(pg_type, text),
        PgType::Hstore => hstore::parse_json(pg_type, text).map(Value::String),
        PgType::HstoreMap => hstore::parse_pairs(pg_type, text).map(Value::Map),
        PgType::Float4 => match text {
            b"NaN" => Ok(Value::Float(f32::NAN)),
            b"Infinity" => Ok(Value::Float(f32::INFINITY)),
            b"-Infinity" => Ok(Value::Float(f32::NEG_INFINITY)),
            _ => parse_number::<f32>(pg_type, text).map(Value::Float),
        },
        PgType::Float8 => match text {
            b"NaN" => Ok(Value::Double(f64::NAN)),
            b"Infinity" => Ok(Value::Double(f64::INFINITY)),
            b"-Infinity" => Ok(Value::Double(f64::NEG_INFINITY)),
            _ => parse_number::<f64>(pg_type, text).map(Value::Double),
        },
        PgType::Decimal { scale, .. } => numeric::parse_fixed(pg_type, text, *scale),
        PgType::VariableDecimal => numeric::parse_variable(pg_type, text),
        PgType::Text
        | PgType::Uuid
        | PgType::Json
        | PgType::Xml
        | PgType::Ltree
        | PgType::Enum { .. }
        | PgType::Other { .. } => utf8(pg_type, text).map(|s| Value::String(s.to_owned())),
        PgType::Bytea => binary::parse_bytea(pg_type, text).map(Value::Bytes),
        PgType::EncodedBytea { encoding } => {
            binary::parse_bytea(pg_type, text).map(|bytes| Value::String(encoding.encode(&bytes)))
        }
        PgType::Date => datetime::parse_date(pg_type, text).map(Value::Int),
        PgType::Time => datetime::parse_time(pg_type, text).map(Value::Long),
        PgType::Timestamp => datetime::parse_timestamp(pg_type, text).map(Value::Long),
        PgType::Timestamptz { fraction_digits } => {
            datetime::parse_timestamptz(pg_type, text, *fraction_digits).map(Value::String)
        }
        PgType::Timetz => datetime::parse_timetz(pg_type, text).map(Value::String),
        PgType::Interval => datetime::parse_interval(pg_type, text).map(Value::Long),
        PgType::IntervalText => datetime::parse_interval_iso(pg_type, text).map(Value::String),
        PgType::TimestampMillis { .. } => datetime::parse_timestamp(pg_type, text)
            .map(|micros| Value::Long(micros.div_euclid(MICROS_PER_MILLI))),
        PgType::ConnectDate => datetime::parse_date(pg_type, text).map(Value::Int),
        PgType::ConnectTime => datetime::parse_time(pg_type, text).map(|micros| {
            // At most 86,400,000 ms: always an int.
            Value::Int((micros / MICROS_PER_MILLI) as i32)
        }),
        PgType::Bit1 => binary::parse_bit1(pg_type, text).map(Value::Bool),
        PgType::Bits { .. } => binary::parse_bits(pg_type, text).map(Value::Bytes),
        PgType::Array(element) => array::parse_array(pg_type, element, text),
    }
}

fn utf8<'a>(pg_type: &PgType, text: &'a [u8]) -> Result<&'a str, TypeError> {
    std::str::from_utf8(text).map_err(|_| TypeError::malformed(pg_type, text, "not valid UTF-8"))
}

fn parse_number<T: std::str::FromStr>(pg_type: &PgType, text: &[u8]) -> Result<T, TypeError> {
    utf8(pg_type, text)?
        .parse()
        .map_err(|_| TypeError::malformed(pg_type, text, "not a number of this type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pg_type: PgType, text: &str) -> Value {
        parse_text(&pg_type, text.as_bytes()).unwrap()
    }

    #[test]
    fn boolean() {
        assert_eq!(parse(PgType::Bool, "t"), Value::Bool(true));
        assert_eq!(parse(PgType::Bool, "f"), Value::Bool(false));
        let err = parse_text(&PgType::Bool, b"true").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot read boolean value "true": expected t or f"#
        );
    }

    #[test]
    fn smallint_and_integer() {
        assert_eq!(parse(PgType::Int2, "0"), Value::Int(0));
        assert_eq!(parse(PgType::Int2, "-32768"), Value::Int(-32768));
        assert_eq!(parse(PgType::Int2, "32767"), Value::Int(32767));
        assert_eq!(parse(PgType::Int4, "-2147483648"), Value::Int(i32::MIN));
        assert_eq!(parse(PgType::Int4, "2147483647"), Value::Int(i32::MAX));
        assert_eq!(parse(PgType::Int4, "-42"), Value::Int(-42));
        assert!(parse_text(&PgType::Int2, b"32768").is_err());
        assert!(parse_text(&PgType::Int4, b"2147483648").is_err());
        assert!(parse_text(&PgType::Int4, b"1.0").is_err());
        assert!(parse_text(&PgType::Int4, b"").is_err());
    }

    #[test]
    fn bigint() {
        assert_eq!(parse(PgType::Int8, "0"), Value::Long(0));
        assert_eq!(
            parse(PgType::Int8, "-9223372036854775808"),
            Value::Long(i64::MIN)
        );
        assert_eq!(
            parse(PgType::Int8, "9223372036854775807"),
            Value::Long(i64::MAX)
        );
        assert!(parse_text(&PgType::Int8, b"9223372036854775808").is_err());
        assert!(parse_text(&PgType::Int8, b"12a").is_err());
    }

    #[test]
    fn handling_modes_pick_the_family() {
        let modes = |time_precision| TypeModes {
            time_precision,
            ..TypeModes::default()
        };
        let adaptive = modes(TimePrecision::AdaptiveTimeMicroseconds);
        assert_eq!(
            PgType::Timestamp.with_modes(adaptive, 3),
            PgType::TimestampMillis { connect: false }
        );
        assert_eq!(PgType::Timestamp.with_modes(adaptive, 4), PgType::Timestamp);
        assert_eq!(
            PgType::Timestamp.with_modes(adaptive, -1),
            PgType::Timestamp
        );
        assert_eq!(PgType::Time.with_modes(adaptive, 0), PgType::Time);
        let connect = modes(TimePrecision::Connect);
        assert_eq!(
            PgType::Array(Box::new(PgType::Date)).with_modes(connect, -1),
            PgType::Array(Box::new(PgType::ConnectDate))
        );
        assert_eq!(
            parse(
                PgType::TimestampMillis { connect: true },
                "1969-12-31 23:59:59.9995"
            ),
            Value::Long(-1)
        );
        assert_eq!(
            parse(PgType::ConnectTime, "13:14:15.123456"),
            Value::Int(47_655_123)
        );
        let strings = TypeModes {
            decimal: DecimalHandling::String,
            interval: IntervalHandling::String,
            ..TypeModes::default()
        };
        assert_eq!(
            PgType::Money { fraction_digits: 2 }.with_modes(strings, -1),
            PgType::DecimalText { money: true }
        );
        assert_eq!(
            PgType::Interval.with_modes(strings, -1),
            PgType::IntervalText
        );
    }

    #[test]
    fn oid_is_a_long() {
        assert_eq!(parse(PgType::Oid, "4000000000"), Value::Long(4_000_000_000));
        assert_eq!(parse(PgType::Oid, "0"), Value::Long(0));
        assert!(parse_text(&PgType::Oid, b"4294967296").is_err());
        assert!(parse_text(&PgType::Oid, b"-1").is_err());
    }

    #[test]
    fn extension_and_geometric_types() {
        assert_eq!(
            parse(PgType::Ltree, "Top.Science"),
            Value::String("Top.Science".into())
        );
        assert_eq!(
            parse(PgType::Hstore, r#""a"=>"1", "b"=>NULL"#),
            Value::String(r#"{"a":"1","b":null}"#.into())
        );
        assert_eq!(
            parse(PgType::Point, "(1,-2.5)"),
            Value::Point { x: 1.0, y: -2.5 }
        );
        assert_eq!(
            parse(PgType::Money { fraction_digits: 2 }, "$12.30"),
            Value::Decimal {
                unscaled: vec![0x04, 0xce],
                scale: 2
            }
        );
    }

    #[test]
    fn real_and_double() {
        assert_eq!(parse(PgType::Float4, "1.1"), Value::Float(1.1));
        assert_eq!(parse(PgType::Float4, "-0"), Value::Float(-0.0));
        assert_eq!(
            parse(PgType::Float4, "3.40282347e+38"),
            Value::Float(f32::MAX)
        );
        assert_eq!(
            parse(PgType::Float4, "Infinity"),
            Value::Float(f32::INFINITY)
        );
        assert_eq!(
            parse(PgType::Float4, "-Infinity"),
            Value::Float(f32::NEG_INFINITY)
        );
        assert!(matches!(parse(PgType::Float4, "NaN"), Value::Float(v) if v.is_nan()));
        assert_eq!(
            parse(PgType::Float8, "0.10000000000000001"),
            Value::Double(0.1)
        );
        assert_eq!(
            parse(PgType::Float8, "-1.7976931348623157e+308"),
            Value::Double(f64::MIN)
        );
        assert_eq!(
            parse(PgType::Float8, "4.9406564584124654e-324"),
            Value::Double(f64::from_bits(1))
        );
        assert_eq!(
            parse(PgType::Float8, "Infinity"),
            Value::Double(f64::INFINITY)
        );
        assert_eq!(
            parse(PgType::Float8, "-Infinity"),
            Value::Double(f64::NEG_INFINITY)
        );
        assert!(matches!(parse(PgType::Float8, "NaN"), Value::Double(v) if v.is_nan()));
        assert!(parse_text(&PgType::Float8, b"1,5").is_err());
    }

    #[test]
    fn text_like_types_are_strings() {
        for pg_type in [
            PgType::Text,
            PgType::Uuid,
            PgType::Json,
            PgType::Xml,
            PgType::Enum {
                type_name: "l1.mood".into(),
                labels: vec!["happy".into()],
            },
            PgType::Other {
                type_name: "tsrange".into(),
            },
        ] {
            assert_eq!(parse(pg_type.clone(), ""), Value::String(String::new()));
            assert_eq!(
                parse(pg_type.clone(), "héllo, 世界 🎉"),
                Value::String("héllo, 世界 🎉".into())
            );
            assert!(parse_text(&pg_type, b"\xff\xfe").is_err());
        }
        assert_eq!(
            parse(PgType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Value::String("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
        assert_eq!(
            parse(PgType::Json, r#"{"a": [1, null]}"#),
            Value::String(r#"{"a": [1, null]}"#.into())
        );
        assert_eq!(
            parse(PgType::Text, "192.168.0.1/24"),
            Value::String("192.168.0.1/24".into())
        );
        assert_eq!(
            parse(PgType::Text, "08:00:2b:01:02:03"),
            Value::String("08:00:2b:01:02:03".into())
        );
    }

    #[test]
    fn errors_carry_a_short_excerpt() {
        let long = "x".repeat(100);
        let err = parse_text(&PgType::Int4, long.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            TypeError::Malformed {
                type_name: "integer".into(),
                text: format!("{}…", "x".repeat(64)),
                reason: "not a number of this type",
            }
        );
        let err = parse_text(&PgType::Text, b"ok \xff").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read text value \"ok \u{fffd}\": not valid UTF-8"
        );
    }

    #[test]
    fn semantic_names() {
        let cases = [
            (PgType::Bool, None),
            (PgType::Int8, None),
            (
                PgType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                Some("org.apache.kafka.connect.data.Decimal"),
            ),
            (
                PgType::VariableDecimal,
                Some("io.debezium.data.VariableScaleDecimal"),
            ),
            (PgType::Text, None),
            (PgType::Bytea, None),
            (PgType::Date, Some("io.debezium.time.Date")),
            (PgType::Time, Some("io.debezium.time.MicroTime")),
            (PgType::Timestamp, Some("io.debezium.time.MicroTimestamp")),
            (
                PgType::Timestamptz { fraction_digits: 6 },
                Some("io.debezium.time.ZonedTimestamp"),
            ),
            (PgType::Timetz, Some("io.debezium.time.ZonedTime")),
            (PgType::Interval, Some("io.debezium.time.MicroDuration")),
            (PgType::Uuid, Some("io.debezium.data.Uuid")),
            (PgType::Json, Some("io.debezium.data.Json")),
            (PgType::Xml, Some("io.debezium.data.Xml")),
            (
                PgType::Enum {
                    type_name: "mood".into(),
                    labels: vec![],
                },
                Some("io.debezium.data.Enum"),
            ),
            (PgType::Bit1, None),
            (
                PgType::Bits { length: Some(8) },
                Some("io.debezium.data.Bits"),
            ),
            (PgType::Bits { length: None }, Some("io.debezium.data.Bits")),
            (PgType::Array(Box::new(PgType::Date)), None),
            (
                PgType::Other {
                    type_name: "money".into(),
                },
                None,
            ),
        ];
        for (pg_type, name) in cases {
            assert_eq!(pg_type.semantic_name(), name, "{pg_type}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(
            PgType::Array(Box::new(PgType::Decimal {
                precision: 10,
                scale: 2
            }))
            .to_string(),
            "numeric(10,2)[]"
        );
        assert_eq!(PgType::Bits { length: None }.to_string(), "varbit");
        assert_eq!(
            PgType::Other {
                type_name: "tsrange".into()
            }
            .to_string(),
            "tsrange"
        );
    }
}
