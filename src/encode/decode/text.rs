//! Column values → PostgreSQL's text input form, shared by the Avro and JSON readers: each
//! reader turns its bytes into a borrowed [`Scalar`], and [`push_scalar`] prints it for the
//! column's [`ScalarKind`]. Arrays become array literals through [`ArrayText`]; decimals and
//! dates and times have their own modules.

use std::fmt::Write;

use crate::encode::columns::UNAVAILABLE_UUID_PLACEHOLDER;
use crate::event::types::BinaryEncoding;
use crate::event::UNAVAILABLE_VALUE_PLACEHOLDER;

use super::datetime::{push_date, push_time, push_timestamp, push_zoned_timestamp};
use super::decimal::push_decimal;

/// The placeholder as bytes (what bytes, bits and decimal columns carry).
const PLACEHOLDER: &[u8] = UNAVAILABLE_VALUE_PLACEHOLDER.as_bytes();

/// How a column's (or array element's) value is read and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarKind {
    Bool,
    Int,
    Long,
    Float,
    Double,
    /// Connect Decimal: unscaled bytes at a fixed scale.
    Decimal {
        scale: i64,
    },
    /// VariableScaleDecimal; `scale_first` is the Avro record's field order.
    VarDecimal {
        scale_first: bool,
    },
    /// Strings printed as they are (text, enum, json, xml, timetz, anything else).
    Text,
    /// uuid: a string, with its own array placeholder.
    Uuid,
    /// ZonedTimestamp: ISO-8601 with Java's year signs, rewritten for PostgreSQL.
    ZonedTimestamp,
    Bytes,
    /// bytea sent as text under a string `binary.handling.mode`.
    EncodedBytes(BinaryEncoding),
    /// Debezium Bits: little-endian bitset bytes; `length` bits, `None` for unbounded varbit.
    Bits {
        length: Option<u32>,
    },
    Date,
    Time,
    Timestamp,
    /// Connect's `Time`: ms since midnight.
    TimeMillis,
    /// `io.debezium.time.Timestamp` and Connect's `Timestamp`: ms since the epoch.
    TimestampMillis,
    Interval,
    /// Debezium's `io.debezium.data.geometry.Point` struct, printed `(x,y)`. Each of `wkb`
    /// and `srid` is the null branch of its Avro union, or `None` when the field is required.
    Point {
        wkb_null: Option<i64>,
        srid_null: Option<i64>,
    },
    /// hstore held as Debezium's JSON object, printed in hstore's own text form, or as it is
    /// (`as_json`, for a jsonb column); either way its placeholder is Debezium's one pair.
    Hstore {
        as_json: bool,
    },
}

/// One value as a reader found it, borrowing from the record or the reader's scratch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scalar<'a> {
    Bool(bool),
    /// int, long and the semantic types built on them.
    Int(i64),
    Float(f32),
    Double(f64),
    /// bytes, Decimal, Bits.
    Bytes(&'a [u8]),
    VarDecimal {
        scale: i64,
        unscaled: &'a [u8],
    },
    Str(&'a str),
    Point {
        x: f64,
        y: f64,
    },
}

/// Whether `scalar` is the placeholder of an unchanged TOASTed value for a column of `kind`.
pub(super) fn is_placeholder(kind: ScalarKind, scalar: &Scalar<'_>) -> bool {
    match (kind, scalar) {
        (
            ScalarKind::Text
            | ScalarKind::Uuid
            | ScalarKind::ZonedTimestamp
            | ScalarKind::EncodedBytes(_),
            Scalar::Str(s),
        ) => *s == UNAVAILABLE_VALUE_PLACEHOLDER,
        (
            ScalarKind::Bytes | ScalarKind::Bits { .. } | ScalarKind::Decimal { .. },
            Scalar::Bytes(b),
        ) => *b == PLACEHOLDER,
        (ScalarKind::VarDecimal { .. }, Scalar::VarDecimal { unscaled, .. }) => {
            *unscaled == PLACEHOLDER
        }
        (ScalarKind::Hstore { .. }, Scalar::Str(s)) => is_hstore_placeholder(s),
        _ => false,
    }
}

/// Debezium's unchanged-TOAST hstore: one pair, key and value both the placeholder.
fn is_hstore_placeholder(json: &str) -> bool {
    json.strip_prefix("{\"")
        .and_then(|rest| rest.strip_suffix("\"}"))
        .and_then(|pair| pair.split_once("\":\""))
        .is_some_and(|(key, value)| {
            key == UNAVAILABLE_VALUE_PLACEHOLDER && value == UNAVAILABLE_VALUE_PLACEHOLDER
        })
}

/// What stands in for an unchanged TOASTed array (see the `encode` module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArrayPlaceholder {
    /// Element types without one (boolean, nested arrays).
    None,
    /// One element that is itself the element type's placeholder.
    Single,
    /// The placeholder's bytes as numbers, one element each.
    Numbers,
}

impl ArrayPlaceholder {
    /// The placeholder form of arrays of `element`.
    pub fn of(element: ScalarKind) -> ArrayPlaceholder {
        match element {
            ScalarKind::Bool => ArrayPlaceholder::None,
            ScalarKind::Int
            | ScalarKind::Long
            | ScalarKind::Float
            | ScalarKind::Double
            | ScalarKind::Date
            | ScalarKind::Time
            | ScalarKind::Timestamp
            | ScalarKind::TimeMillis
            | ScalarKind::TimestampMillis
            | ScalarKind::Interval => ArrayPlaceholder::Numbers,
            _ => ArrayPlaceholder::Single,
        }
    }
}

/// Builds one map's text, hstore (`"k"=>"v", "n"=>NULL`) or a JSON object for a jsonb
/// column, and tells whether it was the placeholder: one pair, key and value both it.
pub(super) struct MapText {
    json: bool,
    count: usize,
    placeholder: bool,
}

impl MapText {
    /// Opens the map.
    pub fn start(out: &mut String, json: bool) -> MapText {
        if json {
            out.push('{');
        }
        MapText {
            json,
            count: 0,
            placeholder: false,
        }
    }

    /// One pair; `None` is a NULL value.
    pub fn pair(&mut self, out: &mut String, key: &str, value: Option<&str>) {
        if self.count > 0 {
            out.push_str(if self.json { "," } else { ", " });
        }
        self.count += 1;
        self.placeholder = self.count == 1
            && key == UNAVAILABLE_VALUE_PLACEHOLDER
            && value == Some(UNAVAILABLE_VALUE_PLACEHOLDER);
        if self.json {
            push_json_string(out, key);
            out.push(':');
            match value {
                Some(value) => push_json_string(out, value),
                None => out.push_str("null"),
            }
        } else {
            push_hstore_item(out, key);
            out.push_str("=>");
            match value {
                Some(value) => push_hstore_item(out, value),
                None => out.push_str("NULL"),
            }
        }
    }

    /// Closes the map; true when it was the placeholder.
    pub fn finish(self, out: &mut String) -> bool {
        if self.json {
            out.push('}');
        }
        self.placeholder && self.count == 1
    }
}

fn push_json_string(out: &mut String, text: &str) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{}", serde_json::Value::from(text));
}

/// Builds one array literal (`{1,NULL,"a b"}`) and tells whether it was the placeholder.
pub(super) struct ArrayText {
    placeholder: ArrayPlaceholder,
    count: usize,
    matches: bool,
    /// Why the first element, which looked like the placeholder, could not be printed.
    unprintable: Option<String>,
}

impl ArrayText {
    /// Opens the literal.
    pub fn start(out: &mut String, placeholder: ArrayPlaceholder) -> ArrayText {
        out.push('{');
        ArrayText {
            placeholder,
            count: 0,
            matches: placeholder != ArrayPlaceholder::None,
            unprintable: None,
        }
    }

    fn separate(&mut self, out: &mut String) {
        if self.count > 0 {
            out.push(',');
        }
        self.count += 1;
    }

    /// A NULL element.
    pub fn null(&mut self, out: &mut String) {
        self.separate(out);
        self.matches = false;
        out.push_str("NULL");
    }

    /// A scalar element, quoted as needed; `item` is scratch space for its text.
    pub fn scalar(
        &mut self,
        out: &mut String,
        item: &mut String,
        kind: ScalarKind,
        scalar: &Scalar<'_>,
    ) -> Result<(), String> {
        let index = self.count;
        self.separate(out);
        self.matches &= match self.placeholder {
            ArrayPlaceholder::None => false,
            ArrayPlaceholder::Single if kind == ScalarKind::Uuid => {
                index == 0 && *scalar == Scalar::Str(UNAVAILABLE_UUID_PLACEHOLDER)
            }
            ArrayPlaceholder::Single => index == 0 && is_placeholder(kind, scalar),
            ArrayPlaceholder::Numbers => PLACEHOLDER
                .get(index)
                .is_some_and(|&byte| is_number(scalar, byte)),
        };
        item.clear();
        match push_scalar(item, kind, scalar) {
            Ok(()) => push_array_item(out, item),
            // The placeholder need not be a valid element (encoded bytes): its error stands
            // only if the array turns out not to be the placeholder.
            Err(detail) if self.matches && self.placeholder == ArrayPlaceholder::Single => {
                self.unprintable = Some(detail);
            }
            Err(detail) => return Err(detail),
        }
        Ok(())
    }

    /// An element already printed into `item` (a map's text), and whether it was the
    /// element type's placeholder.
    pub fn printed(&mut self, out: &mut String, item: &str, placeholder: bool) {
        let index = self.count;
        self.separate(out);
        self.matches &= self.placeholder == ArrayPlaceholder::Single && index == 0 && placeholder;
        push_array_item(out, item);
    }

    /// A nested array element: the caller writes it into `out` with its own `ArrayText`.
    pub fn nested(&mut self, out: &mut String) {
        self.separate(out);
        self.matches = false;
    }

    /// Closes the literal; true when the array was the placeholder.
    pub fn finish(self, out: &mut String) -> Result<bool, String> {
        out.push('}');
        let placeholder = self.matches
            && match self.placeholder {
                ArrayPlaceholder::None => false,
                ArrayPlaceholder::Single => self.count == 1,
                ArrayPlaceholder::Numbers => self.count == PLACEHOLDER.len(),
            };
        match self.unprintable {
            Some(detail) if !placeholder => Err(detail),
            _ => Ok(placeholder),
        }
    }
}

fn is_number(scalar: &Scalar<'_>, byte: u8) -> bool {
    match *scalar {
        Scalar::Int(i) => i == i64::from(byte),
        Scalar::Float(f) => f == f32::from(byte),
        Scalar::Double(d) => d == f64::from(byte),
        _ => false,
    }
}

/// An array element, double-quoted (with `"` and `\` escaped) when PostgreSQL's array parser
/// would otherwise misread it.
fn push_array_item(out: &mut String, item: &str) {
    let needs_quotes = item.is_empty()
        || item.eq_ignore_ascii_case("NULL")
        || item.bytes().any(|b| {
            matches!(
                b,
                b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        });
    if !needs_quotes {
        out.push_str(item);
        return;
    }
    out.push('"');
    for c in item.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends `scalar`'s text form for a column of `kind`.
pub(super) fn push_scalar(
    out: &mut String,
    kind: ScalarKind,
    scalar: &Scalar<'_>,
) -> Result<(), String> {
    match (kind, *scalar) {
        (ScalarKind::Bool, Scalar::Bool(b)) => out.push_str(if b { "true" } else { "false" }),
        (ScalarKind::Int | ScalarKind::Long, Scalar::Int(i)) => push_int(out, i),
        (ScalarKind::Float, Scalar::Float(f)) => push_float(out, f64::from(f), f),
        (ScalarKind::Double, Scalar::Double(d)) => push_float(out, d, d),
        (ScalarKind::Decimal { scale }, Scalar::Bytes(unscaled)) => {
            push_decimal(out, unscaled, scale)?
        }
        (ScalarKind::VarDecimal { .. }, Scalar::VarDecimal { scale, unscaled }) => {
            push_decimal(out, unscaled, scale)?
        }
        (ScalarKind::Text | ScalarKind::Uuid, Scalar::Str(s)) => out.push_str(s),
        (ScalarKind::ZonedTimestamp, Scalar::Str(s)) => push_zoned_timestamp(out, s),
        (ScalarKind::Bytes, Scalar::Bytes(bytes)) => push_bytea(out, bytes),
        (ScalarKind::EncodedBytes(encoding), Scalar::Str(text)) => {
            let mut bytes = Vec::with_capacity(text.len());
            encoding.decode(text, &mut bytes)?;
            push_bytea(out, &bytes);
        }
        (ScalarKind::Bits { length }, Scalar::Bytes(bytes)) => push_bits(out, bytes, length)?,
        (ScalarKind::Date, Scalar::Int(days)) => push_date(out, days)?,
        (ScalarKind::Time, Scalar::Int(micros)) => push_time(out, micros)?,
        (ScalarKind::Timestamp, Scalar::Int(micros)) => push_timestamp(out, micros),
        (ScalarKind::TimeMillis, Scalar::Int(millis)) => push_time(out, millis * 1_000)?,
        (ScalarKind::TimestampMillis, Scalar::Int(millis)) => {
            push_timestamp(out, millis.saturating_mul(1_000))
        }
        (ScalarKind::Interval, Scalar::Int(micros)) => {
            push_int(out, micros);
            out.push_str(" microseconds");
        }
        (ScalarKind::Point { .. }, Scalar::Point { x, y }) => {
            out.push('(');
            push_float(out, x, x);
            out.push(',');
            push_float(out, y, y);
            out.push(')');
        }
        (ScalarKind::Hstore { as_json: false }, Scalar::Str(json)) => push_hstore(out, json)?,
        (ScalarKind::Hstore { as_json: true }, Scalar::Str(json)) => out.push_str(json),
        (kind, scalar) => return Err(format!("a {kind:?} column cannot hold {scalar:?}")),
    }
    Ok(())
}

/// A JSON object of strings (Debezium's `hstore.handling.mode = json`) as hstore text:
/// `"k"=>"v", "n"=>NULL`.
fn push_hstore(out: &mut String, json: &str) -> Result<(), String> {
    let pairs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("hstore JSON {json:?}: {e}"))?;
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        push_hstore_item(out, key);
        out.push_str("=>");
        match value {
            serde_json::Value::String(text) => push_hstore_item(out, text),
            serde_json::Value::Null => out.push_str("NULL"),
            other => return Err(format!("hstore JSON value {other} is not a string or null")),
        }
    }
    Ok(())
}

fn push_hstore_item(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A cell's initial capacity, so that most values need no regrowth.
pub(super) fn capacity_hint(scalar: &Scalar<'_>) -> usize {
    match scalar {
        Scalar::Str(s) => s.len(),
        Scalar::Bytes(bytes) => 2 + bytes.len() * 2,
        Scalar::VarDecimal { unscaled, .. } => 4 + unscaled.len() * 3,
        _ => 28,
    }
}

/// The decimal digits of `value`, written backwards into `buffer` (20 bytes hold any u64).
pub(super) fn digits(buffer: &mut [u8; 20], mut value: u64) -> &str {
    let mut length = 0;
    for slot in buffer.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
        length += 1;
        if value == 0 {
            break;
        }
    }
    let written = buffer.get(buffer.len() - length..).unwrap_or_default();
    std::str::from_utf8(written).unwrap_or_default()
}

/// `value` with at least `width` digits (zero-padded); no `fmt` machinery on the hot path.
pub(super) fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buffer = [0; 20];
    let text = digits(&mut buffer, value);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(text.len())));
    out.push_str(text);
}

pub(super) fn push_int(out: &mut String, value: i64) {
    if value < 0 {
        out.push('-');
    }
    push_padded(out, value.unsigned_abs(), 1);
}

/// Shortest round-trip form (PostgreSQL's float input reads it back exactly), or the special
/// values' spellings.
fn push_float(out: &mut String, value: f64, shortest: impl std::fmt::Debug) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(out, "{shortest:?}");
    }
}

fn push_bytea(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for &byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// Debezium's bitset bytes (bit i in byte i/8 at position i%8; the string's last character is
/// bit 0) as a bit string of `length` characters; an unbounded varbit's length is unknown, so
/// it gets the bits up to the highest set one.
fn push_bits(out: &mut String, bytes: &[u8], length: Option<u32>) -> Result<(), String> {
    let bit = |i: usize| {
        bytes
            .get(i / 8)
            .is_some_and(|byte| byte >> (i % 8) & 1 == 1)
    };
    let highest = (0..bytes.len() * 8).rev().find(|&i| bit(i));
    let length = match length {
        Some(length) => usize::try_from(length).map_err(|_| "bit length out of range")?,
        None => highest.map_or(0, |i| i + 1),
    };
    if highest.is_some_and(|i| i >= length) {
        return Err(format!(
            "Bits value has a bit set beyond its length {length}"
        ));
    }
    out.reserve(length);
    for i in (0..length).rev() {
        out.push(if bit(i) { '1' } else { '0' });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: ScalarKind, scalar: Scalar<'_>) -> String {
        let mut out = String::new();
        push_scalar(&mut out, kind, &scalar).unwrap();
        out
    }

    #[test]
    fn floats_bytes_and_bits() {
        assert_eq!(text(ScalarKind::Float, Scalar::Float(0.1)), "0.1");
        assert_eq!(text(ScalarKind::Double, Scalar::Double(1e300)), "1e300");
        assert_eq!(text(ScalarKind::Double, Scalar::Double(f64::NAN)), "NaN");
        assert_eq!(
            text(ScalarKind::Float, Scalar::Float(f32::NEG_INFINITY)),
            "-Infinity"
        );
        assert_eq!(
            text(ScalarKind::Bytes, Scalar::Bytes(&[0, 0xab, 0xff])),
            "\\x00abff"
        );
        let bits = |bytes, length| text(ScalarKind::Bits { length }, Scalar::Bytes(bytes));
        assert_eq!(bits(&[0x05], Some(3)), "101");
        assert_eq!(bits(&[0x01, 0x02], Some(10)), "1000000001");
        assert_eq!(bits(&[0x01], Some(16)), "0000000000000001");
        assert_eq!(bits(&[], Some(5)), "00000");
        assert_eq!(bits(&[0xff, 0x01], None), "111111111");
        assert_eq!(bits(&[], None), "");
        let mut out = String::new();
        assert!(push_bits(&mut out, &[0x08], Some(3)).is_err());
    }

    #[test]
    fn array_items_are_quoted_when_needed() {
        let mut out = String::new();
        let mut item = String::new();
        let mut array = ArrayText::start(&mut out, ArrayPlaceholder::Single);
        for s in [
            "plain",
            "a b",
            "x\"y",
            "back\\slash",
            "",
            "null",
            "{}",
            "日本",
        ] {
            array
                .scalar(&mut out, &mut item, ScalarKind::Text, &Scalar::Str(s))
                .unwrap();
        }
        array.null(&mut out);
        assert!(!array.finish(&mut out).unwrap());
        assert_eq!(
            out,
            r#"{plain,"a b","x\"y","back\\slash","","null","{}",日本,NULL}"#
        );
    }
}
