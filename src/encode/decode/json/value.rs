//! One column value of a JSON payload → its cell: primitives, base64 bytes and decimals,
//! VariableScaleDecimal objects and arrays, all through one [`Sink`] trait.

use std::fmt::{self, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::change::Cell;

use super::super::plan::{ColumnPlan, ValuePlan};
use super::super::text::{
    capacity_hint, is_placeholder, push_scalar, ArrayText, MapText, Scalar, ScalarKind,
};
use super::super::{DecodeError, Scratch};
use super::StrSeed;

/// A JSON primitive as a visitor received it.
#[derive(Debug, Clone, Copy)]
enum Prim<'x> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'x str),
}

/// The value of `prim` for a column of `kind`; base64 is decoded into `bytes`.
fn to_scalar<'x>(
    kind: ScalarKind,
    prim: Prim<'x>,
    bytes: &'x mut Vec<u8>,
) -> Result<Scalar<'x>, String> {
    let number = |prim| match prim {
        Prim::I64(i) => Some(i as f64),
        Prim::U64(u) => Some(u as f64),
        Prim::F64(f) => Some(f),
        Prim::Str("NaN") => Some(f64::NAN),
        Prim::Str("Infinity") => Some(f64::INFINITY),
        Prim::Str("-Infinity") => Some(f64::NEG_INFINITY),
        _ => None,
    };
    let scalar = match (kind, prim) {
        (ScalarKind::Bool, Prim::Bool(b)) => Some(Scalar::Bool(b)),
        (
            ScalarKind::Int
            | ScalarKind::Long
            | ScalarKind::Date
            | ScalarKind::Time
            | ScalarKind::Timestamp
            | ScalarKind::TimeMillis
            | ScalarKind::TimestampMillis
            | ScalarKind::Interval,
            Prim::I64(_) | Prim::U64(_),
        ) => match prim {
            Prim::I64(i) => Some(Scalar::Int(i)),
            Prim::U64(u) => i64::try_from(u).ok().map(Scalar::Int),
            _ => None,
        },
        (ScalarKind::Float, prim) => number(prim).map(|f| Scalar::Float(narrow(f))),
        (ScalarKind::Double, prim) => number(prim).map(Scalar::Double),
        (
            ScalarKind::Decimal { .. } | ScalarKind::Bytes | ScalarKind::Bits { .. },
            Prim::Str(s),
        ) => {
            decode_base64(s, bytes)?;
            Some(Scalar::Bytes(bytes))
        }
        (
            ScalarKind::Text
            | ScalarKind::Uuid
            | ScalarKind::ZonedTimestamp
            | ScalarKind::EncodedBytes(_)
            | ScalarKind::Hstore { .. },
            Prim::Str(s),
        ) => Some(Scalar::Str(s)),
        _ => None,
    };
    scalar.ok_or_else(|| format!("a {kind:?} column cannot hold {prim:?}"))
}

/// The f32 whose shortest form JsonConverter wrote, from serde_json's f64 of that text.
/// Narrowing the f64 rounds the decimal twice, which is wrong for a few values (7.038531e-26
/// of all 2³² was found), so the neighbours are tried too: the right f32 is the one whose
/// shortest form reads back as the same f64.
fn narrow(wide: f64) -> f32 {
    let nearest = wide as f32;
    if !nearest.is_finite() {
        return nearest;
    }
    [nearest, nearest.next_up(), nearest.next_down()]
        .into_iter()
        .find(|&candidate| reads_back_as(candidate, wide))
        .unwrap_or(nearest)
}

fn reads_back_as(candidate: f32, wide: f64) -> bool {
    let mut text = FloatText::default();
    write!(text, "{candidate:?}").is_ok()
        && std::str::from_utf8(text.written())
            .ok()
            .and_then(|t| t.parse().ok())
            == Some(wide)
}

/// A stack buffer for one float's text, so the check above allocates nothing.
#[derive(Default)]
struct FloatText {
    bytes: [u8; 32],
    length: usize,
}

impl FloatText {
    fn written(&self) -> &[u8] {
        self.bytes.get(..self.length).unwrap_or_default()
    }
}

impl fmt::Write for FloatText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.length + s.len();
        self.bytes
            .get_mut(self.length..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.length = end;
        Ok(())
    }
}

/// Standard padded base64 (what JsonConverter writes for bytes) into `out`.
fn decode_base64(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    STANDARD
        .decode_vec(text, out)
        .map_err(|_| format!("invalid base64 {text:?}"))
}

/// What a JSON value is turned into; [`Any`] forwards each kind of JSON value to it.
trait Sink<'de>: Sized {
    type Out;
    fn expecting(&self) -> &'static str;
    fn null(self) -> Result<Self::Out, String>;
    fn prim(self, prim: Prim<'_>) -> Result<Self::Out, String>;
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Out, A::Error>;
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error>;
}

struct Any<S>(S);

impl<'de, S: Sink<'de>> Visitor<'de> for Any<S> {
    type Value = S::Out;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.expecting())
    }

    fn visit_unit<E: de::Error>(self) -> Result<S::Out, E> {
        self.0.null().map_err(E::custom)
    }

    fn visit_none<E: de::Error>(self) -> Result<S::Out, E> {
        self.0.null().map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<S::Out, E> {
        self.0.prim(Prim::Bool(v)).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<S::Out, E> {
        self.0.prim(Prim::I64(v)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<S::Out, E> {
        self.0.prim(Prim::U64(v)).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<S::Out, E> {
        self.0.prim(Prim::F64(v)).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<S::Out, E> {
        self.0.prim(Prim::Str(v)).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S::Out, A::Error> {
        self.0.seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Out, A::Error> {
        self.0.map(map)
    }
}

pub(super) struct CellSeed<'p>(pub CellSink<'p>);

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = Cell;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(Any(self.0))
    }
}

/// One column value → its cell.
pub(super) struct CellSink<'p> {
    pub column: &'p ColumnPlan,
    pub scratch: &'p mut Scratch,
    /// Where a value problem is recorded under the column's name.
    pub failure: &'p mut Option<DecodeError>,
}

impl CellSink<'_> {
    /// Records a value problem under the column's name, for the error the caller returns.
    fn fail(self, detail: String) -> String {
        *self.failure = Some(DecodeError::Value {
            column: self.column.field.clone(),
            detail: detail.clone(),
        });
        detail
    }

    fn kind(&self) -> Result<ScalarKind, String> {
        match self.column.value {
            ValuePlan::Scalar(kind) => Ok(kind),
            ValuePlan::Array { .. } => Err("expected an array".to_string()),
            ValuePlan::Map { .. } => Err("expected an object".to_string()),
        }
    }
}

fn scalar_cell(kind: ScalarKind, scalar: &Scalar<'_>) -> Result<Cell, String> {
    if is_placeholder(kind, scalar) {
        return Ok(Cell::Unavailable);
    }
    let mut out = String::with_capacity(capacity_hint(scalar));
    push_scalar(&mut out, kind, scalar)?;
    Ok(Cell::Text(out))
}

impl<'de> Sink<'de> for CellSink<'_> {
    type Out = Cell;

    fn expecting(&self) -> &'static str {
        "a column value"
    }

    fn null(self) -> Result<Cell, String> {
        Ok(Cell::Null)
    }

    fn prim(self, prim: Prim<'_>) -> Result<Cell, String> {
        let result = self.kind().and_then(|kind| {
            let scalar = to_scalar(kind, prim, &mut self.scratch.bytes)?;
            scalar_cell(kind, &scalar)
        });
        result.map_err(|detail| self.fail(detail))
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        let ValuePlan::Array {
            items, placeholder, ..
        } = &self.column.value
        else {
            return Err(de::Error::custom(self.fail("unexpected array".to_string())));
        };
        let mut out = String::new();
        let mut text = ArrayText::start(&mut out, *placeholder);
        while seq
            .next_element_seed(ItemSeed(ItemSink {
                items,
                out: &mut out,
                text: &mut text,
                scratch: &mut *self.scratch,
            }))?
            .is_some()
        {}
        match text.finish(&mut out) {
            Ok(true) => Ok(Cell::Unavailable),
            Ok(false) => Ok(Cell::Text(out)),
            Err(detail) => Err(de::Error::custom(self.fail(detail))),
        }
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Cell, A::Error> {
        if let ValuePlan::Map { nullable, json } = self.column.value {
            let mut out = String::new();
            return Ok(if map_text(map, &mut out, nullable.is_some(), json)? {
                Cell::Unavailable
            } else {
                Cell::Text(out)
            });
        }
        let kind = self.kind().map_err(de::Error::custom)?;
        let scalar = struct_scalar(kind, map, &mut self.scratch.bytes)?;
        scalar_cell(kind, &scalar).map_err(|detail| de::Error::custom(self.fail(detail)))
    }
}

/// A JSON object of strings (a map column) as hstore or JSON text appended to `out`; true
/// when it was the placeholder.
fn map_text<'de, A: MapAccess<'de>>(
    mut map: A,
    out: &mut String,
    nullable: bool,
    json: bool,
) -> Result<bool, A::Error> {
    let mut text = MapText::start(out, json);
    while let Some(key) = map.next_key_seed(StrSeed)? {
        let value: Option<String> = map.next_value()?;
        if value.is_none() && !nullable {
            return Err(de::Error::custom(format!(
                "null value for key {key:?} in a map of required strings"
            )));
        }
        text.pair(out, &key, value.as_deref());
    }
    Ok(text.finish(out))
}

/// A struct-valued column: a VariableScaleDecimal (its unscaled bytes left in `bytes`) or a
/// Point.
fn struct_scalar<'de, 'b, A: MapAccess<'de>>(
    kind: ScalarKind,
    map: A,
    bytes: &'b mut Vec<u8>,
) -> Result<Scalar<'b>, A::Error> {
    if let ScalarKind::Point { .. } = kind {
        let (x, y) = point(map)?;
        return Ok(Scalar::Point { x, y });
    }
    let scale = variable_decimal(map, bytes)?;
    Ok(Scalar::VarDecimal {
        scale,
        unscaled: bytes,
    })
}

/// A JSON double: a number, or the string JsonConverter writes for a non-finite one.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonDouble {
    Number(f64),
    Text(String),
}

impl JsonDouble {
    fn value<E: de::Error>(self) -> Result<f64, E> {
        match self {
            JsonDouble::Number(value) => Ok(value),
            JsonDouble::Text(text) => match text.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(E::custom(format!("{text:?} is not a double"))),
            },
        }
    }
}

/// `{"x":…,"y":…,"wkb":…,"srid":…}`: the coordinates.
fn point<'de, A: MapAccess<'de>>(mut map: A) -> Result<(f64, f64), A::Error> {
    let (mut x, mut y) = (None, None);
    while let Some(key) = map.next_key_seed(StrSeed)? {
        match &*key {
            "x" => x = Some(map.next_value::<JsonDouble>()?.value()?),
            "y" => y = Some(map.next_value::<JsonDouble>()?.value()?),
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    x.zip(y)
        .ok_or_else(|| de::Error::custom("a Point needs x and y"))
}

/// `{"scale":s,"value":"<base64>"}`: the scale, with the unscaled bytes left in `bytes`.
fn variable_decimal<'de, A: MapAccess<'de>>(
    mut map: A,
    bytes: &mut Vec<u8>,
) -> Result<i64, A::Error> {
    let mut scale = None;
    let mut value = false;
    while let Some(key) = map.next_key_seed(StrSeed)? {
        match &*key {
            "scale" => scale = Some(map.next_value::<i64>()?),
            "value" => {
                let text = map.next_value_seed(StrSeed)?;
                decode_base64(&text, bytes).map_err(de::Error::custom)?;
                value = true;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    match (scale, value) {
        (Some(scale), true) => Ok(scale),
        _ => Err(de::Error::custom(
            "a VariableScaleDecimal needs scale and value",
        )),
    }
}

struct ItemSeed<'p>(ItemSink<'p>);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Any(self.0))
    }
}

/// One array element → appended to the literal being built.
struct ItemSink<'p> {
    items: &'p ValuePlan,
    out: &'p mut String,
    text: &'p mut ArrayText,
    scratch: &'p mut Scratch,
}

impl<'de> Sink<'de> for ItemSink<'_> {
    type Out = ();

    fn expecting(&self) -> &'static str {
        "an array element"
    }

    fn null(self) -> Result<(), String> {
        self.text.null(self.out);
        Ok(())
    }

    fn prim(self, prim: Prim<'_>) -> Result<(), String> {
        let ValuePlan::Scalar(kind) = *self.items else {
            return Err("expected a nested array".to_string());
        };
        let Scratch { item, bytes } = self.scratch;
        let scalar = to_scalar(kind, prim, bytes)?;
        self.text.scalar(self.out, item, kind, &scalar)
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValuePlan::Array {
            items, placeholder, ..
        } = self.items
        else {
            return Err(de::Error::custom("unexpected nested array"));
        };
        self.text.nested(self.out);
        let mut nested = ArrayText::start(self.out, *placeholder);
        while seq
            .next_element_seed(ItemSeed(ItemSink {
                items,
                out: &mut *self.out,
                text: &mut nested,
                scratch: &mut *self.scratch,
            }))?
            .is_some()
        {}
        nested.finish(self.out).map_err(de::Error::custom)?;
        Ok(())
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if let ValuePlan::Map { nullable, json } = *self.items {
            let item = &mut self.scratch.item;
            item.clear();
            let placeholder = map_text(map, item, nullable.is_some(), json)?;
            self.text.printed(self.out, item, placeholder);
            return Ok(());
        }
        let ValuePlan::Scalar(kind) = *self.items else {
            return Err(de::Error::custom("unexpected object"));
        };
        let Scratch { item, bytes } = self.scratch;
        let scalar = struct_scalar(kind, map, bytes)?;
        self.text
            .scalar(self.out, item, kind, &scalar)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_and_rejects_garbage() {
        let mut out = Vec::new();
        for (text, expected) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYmFy", b"foobar"),
            ("+/8=", &[0xfb, 0xff]),
        ] {
            decode_base64(text, &mut out).unwrap();
            assert_eq!(out, expected, "{text}");
        }
        for bad in ["Z", "Zg=", "Z===", "Zg==Zg==", "Zm9*", "Zg=a", "éé"] {
            assert!(decode_base64(bad, &mut out).is_err(), "{bad}");
        }
    }
}
