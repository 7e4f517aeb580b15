//! The `payload` half of a Kafka Connect JSON envelope, read by a [`Plan`]: serde_json drives
//! seeds that write each column value straight into its text form, so no `serde_json::Value`
//! tree is built. Bytes and decimals arrive as base64, VariableScaleDecimal as
//! `{"scale":s,"value":"<base64>"}`, non-finite floats as the strings `NaN` / `Infinity`.

mod value;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::event::change::{Cell, SinkChange};

use super::plan::{Parts, Plan};
use super::{DecodeError, Scratch};
use value::{CellSeed, CellSink};

/// Decodes one envelope payload (the JSON after `"payload":`).
pub(super) fn decode(
    plan: &mut Plan,
    payload: &[u8],
    scratch: &mut Scratch,
) -> Result<SinkChange, DecodeError> {
    let mut failure = None;
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let seed = EnvelopeSeed {
        plan,
        scratch,
        failure: &mut failure,
    };
    let parts = seed
        .deserialize(&mut deserializer)
        .and_then(|parts| deserializer.end().map(|()| parts));
    match parts {
        Ok(parts) => plan.finish(parts),
        Err(error) => Err(failure.unwrap_or_else(|| DecodeError::Malformed {
            part: "value",
            detail: format!("payload: {error}"),
        })),
    }
}

/// A string, borrowed from the payload unless it had escapes.
pub(super) struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// A string or null.
struct OptionalStr;

impl<'de> DeserializeSeed<'de> for OptionalStr {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalStr {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        StrSeed.deserialize(deserializer).map(Some)
    }
}

struct EnvelopeSeed<'p> {
    plan: &'p Plan,
    scratch: &'p mut Scratch,
    failure: &'p mut Option<DecodeError>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Parts<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Parts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a change-event envelope object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let EnvelopeSeed {
            plan,
            scratch,
            failure,
        } = self;
        let mut parts = Parts::default();
        while let Some(key) = map.next_key_seed(StrSeed)? {
            match &*key {
                "before" | "after" => {
                    let row = map.next_value_seed(RowSeed {
                        plan,
                        scratch: &mut *scratch,
                        failure: &mut *failure,
                    })?;
                    if key == "before" {
                        parts.before = row;
                    } else {
                        parts.after = row;
                    }
                }
                "op" => parts.op = map.next_value_seed(OptionalStr)?,
                "source" => {
                    if let Some(source) = map.next_value::<Option<Source<'de>>>()? {
                        parts.schema = source.schema;
                        parts.table = source.table;
                        parts.sequence = source.sequence;
                        parts.lsn = source.lsn;
                    }
                }
                "transaction" => {
                    if let Some(block) = map.next_value::<Option<TransactionBlock>>()? {
                        parts.order = block.data_collection_order;
                        parts.transaction_id = block.id.map(Cow::Owned);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// The fields of the `source` block the sink reads.
#[derive(serde::Deserialize)]
struct Source<'a> {
    #[serde(borrow, default, deserialize_with = "optional_str")]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_str")]
    table: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_str")]
    sequence: Option<Cow<'a, str>>,
    #[serde(default)]
    lsn: Option<i64>,
}

/// The field of the `transaction` block the sink reads.
#[derive(serde::Deserialize)]
struct TransactionBlock {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data_collection_order: Option<i64>,
}

/// serde's own `Option<Cow<str>>` always copies; this borrows when the text has no escapes.
fn optional_str<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    OptionalStr.deserialize(deserializer)
}

/// A row image object, or null.
struct RowSeed<'p> {
    plan: &'p Plan,
    scratch: &'p mut Scratch,
    failure: &'p mut Option<DecodeError>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<Vec<Cell>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<Vec<Cell>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row image object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let plan = self.plan;
        let mut cells = vec![Cell::Null; plan.columns.len()];
        let mut next = 0;
        while let Some(index) = map.next_key_seed(FieldSeed { plan, next })? {
            let column = plan
                .columns
                .get(index)
                .ok_or_else(|| de::Error::custom("column index out of range"))?;
            let cell = map.next_value_seed(CellSeed(CellSink {
                column,
                scratch: &mut *self.scratch,
                failure: &mut *self.failure,
            }))?;
            if let Some(slot) = cells.get_mut(index) {
                *slot = cell;
            }
            next = index + 1;
        }
        Ok(Some(cells))
    }
}

/// A row object's key as a column index; fields usually come in column order, so the next
/// column is tried before the name lookup.
struct FieldSeed<'p> {
    plan: &'p Plan,
    next: usize,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        if self
            .plan
            .columns
            .get(self.next)
            .is_some_and(|c| c.field == v)
        {
            return Ok(self.next);
        }
        self.plan
            .by_field
            .get(v)
            .copied()
            .ok_or_else(|| E::custom(format!("field {v:?} is not in the value schema")))
    }
}
