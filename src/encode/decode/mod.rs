//! Kafka records written by cdc-source → [`SinkChange`]s for cdc-sink: the encoder read
//! backwards (SPEC §3–§5), with every column value in PostgreSQL's text input form for the
//! column's SQL type, so the sink can send it as text and cast it with `::<sql_type>`.
//!
//! ```text
//! (key, value) ─▶ Avro: Confluent header → (key id, value id)   JSON: split {"schema":…,"payload":…}
//!              ─▶ plan cache (one Plan per key/value schema pair; a miss fetches and parses them)
//!              ─▶ avro::decode / json::decode: cells as PostgreSQL text ─▶ SinkChange
//! ```
//!
//! Steady state does no schema parsing and no registry request: Avro plans are found by the
//! two schema ids, JSON plans by comparing the record's schema bytes with the last plan's.
//!
//! # Text forms
//! Numbers print exactly (floats in their shortest round-trip form, `NaN`, `Infinity`);
//! decimals from their unscaled two's complement; bytea as `\x…`; dates, times and timestamps
//! in ISO form with `BC` before year 1 and `infinity`/`-infinity` for the sentinels; intervals
//! as `<µs> microseconds`; Bits as a bit string of the schema's `length`; arrays as array
//! literals. Values equal to Debezium's placeholder for an unchanged TOASTed value (see the
//! `encode` module's doc) become [`Cell::Unavailable`](crate::event::change::Cell::Unavailable).
//!
//! What the topics cannot give back: an unbounded varbit's leading zero bits (its length is
//! not in the schema), an interval's months (Debezium folds them into µs at 30.4375 days), the
//! trailing fractional zeros of an unconstrained numeric (VariableScaleDecimal strips them),
//! and, for Avro, the original name of a VariableScaleDecimal column whose name had to be
//! adjusted (a named record cannot carry `__debezium.source.column.name`).
//!
//! # Keys
//! [`SinkTable::key`](crate::event::change::SinkTable) lists the columns of the record key's
//! schema. Truncates and tables without a key have a null key, so their tables have an empty
//! key even when other records of the same table carry one; do not create target tables from
//! a truncate.

mod avro;
mod datetime;
mod decimal;
mod json;
mod plan;
mod schema;
mod text;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Format;
use crate::encode::registry::{RegistryClient, RegistryError};
use crate::event::change::{Position, SinkChange};

use plan::Plan;
pub use plan::TargetTypes;

/// JsonConverter writes the schema first, without whitespace; the fast path relies on that.
const JSON_SCHEMA_PREFIX: &[u8] = b"{\"schema\":";
const JSON_PAYLOAD_INFIX: &[u8] = b",\"payload\":";

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// An Avro key or value without the Confluent header (magic byte 0, 4-byte schema id).
    #[error("{part} is not in the Confluent wire format: {detail}")]
    WireFormat { part: &'static str, detail: String },
    /// Avro records need a registry client to look their schemas up.
    #[error("kafka.format = \"avro\" needs a schema registry to decode records")]
    NoRegistry,
    /// The registry does not know a schema id (HTTP 404).
    #[error("{part} schema id {id} is unknown to the schema registry")]
    UnknownSchema { part: &'static str, id: u32 },
    /// Fetching a schema failed for another reason.
    #[error("fetching {part} schema id {id}: {source}")]
    Registry {
        part: &'static str,
        id: u32,
        #[source]
        source: RegistryError,
    },
    /// Schemas the decoder cannot use: not a change-event Envelope, an unsupported column type.
    #[error("unusable schema ({context}): {detail}")]
    Schema { context: String, detail: String },
    /// Bytes that do not match their schema: truncated or malformed Avro, invalid JSON.
    #[error("malformed {part}: {detail}")]
    Malformed { part: &'static str, detail: String },
    /// A column value that has no text form for its column.
    #[error("column {column}: {detail}")]
    Value { column: String, detail: String },
    /// The envelope's `op` is missing or not one of `c`, `u`, `d`, `r`, `t`.
    #[error("op {op:?} is not one of c, u, d, r, t")]
    Op { op: String },
    /// An operation without the row image it needs (an insert without `after`, …).
    #[error("a '{op}' event without its {image} image")]
    MissingImage { op: String, image: &'static str },
    /// `source.sequence` or `source.lsn` does not hold LSNs.
    #[error("source.sequence {sequence:?} is not [\"<commit lsn>\",\"<lsn>\"]")]
    Sequence { sequence: String },
}

impl DecodeError {
    /// Whether retrying the same record later can succeed: the registry was unreachable or
    /// answered 5xx, 408 or 429. Everything else is a poison record.
    pub fn is_transient(&self) -> bool {
        match self {
            DecodeError::Registry { source, .. } => match source {
                RegistryError::Unreachable { .. } => true,
                RegistryError::Status { status, .. } => {
                    *status >= 500 || *status == 408 || *status == 429
                }
                RegistryError::InvalidUrl { .. }
                | RegistryError::BadResponse { .. }
                | RegistryError::TlsFile { .. } => false,
            },
            _ => false,
        }
    }

    /// Whether the registry cannot be used as configured (refused our credentials or
    /// certificate, or a TLS file is unusable): no record is to blame, nothing will decode.
    pub fn is_registry_access(&self) -> bool {
        matches!(
            self,
            DecodeError::Registry {
                source: RegistryError::Status {
                    status: 401 | 403,
                    ..
                } | RegistryError::TlsFile { .. }
                    | RegistryError::InvalidUrl { .. },
                ..
            }
        )
    }
}

/// A record's position from its `source.sequence` and `source.lsn`, and its transaction's own
/// commit LSN from `transaction_id` (`"<txid>:<commit lsn>"`) when it has one, as data events
/// carry them.
pub fn source_position(
    sequence: Option<&str>,
    lsn: Option<i64>,
    transaction_id: Option<&str>,
) -> Result<Position, DecodeError> {
    plan::position(sequence, lsn, transaction_id)
}

/// Buffers reused across records.
#[derive(Debug, Default)]
struct Scratch {
    /// One array element's text before quoting.
    item: String,
    /// Decoded base64 (JSON bytes and decimals).
    bytes: Vec<u8>,
}

/// A JSON plan with the schema bytes it was built from.
#[derive(Debug)]
struct JsonPlan {
    value_schema: Box<[u8]>,
    key_schema: Option<Box<[u8]>>,
    plan: Plan,
}

impl JsonPlan {
    /// The value's payload when key and value carry exactly this plan's schemas, laid out as
    /// JsonConverter writes them.
    fn payload<'v>(&self, key: Option<&[u8]>, value: &'v [u8]) -> Option<&'v [u8]> {
        let payload = value
            .strip_prefix(JSON_SCHEMA_PREFIX)?
            .strip_prefix(&*self.value_schema)?
            .strip_prefix(JSON_PAYLOAD_INFIX)?
            .strip_suffix(b"}")?;
        let key_matches = match (key, &self.key_schema) {
            (None, None) => true,
            (Some(key), Some(schema)) => key
                .strip_prefix(JSON_SCHEMA_PREFIX)
                .and_then(|rest| rest.strip_prefix(&**schema))
                .is_some_and(|rest| rest.starts_with(JSON_PAYLOAD_INFIX)),
            _ => false,
        };
        key_matches.then_some(payload)
    }
}

/// Decodes the records of cdc-source's data topics into [`SinkChange`]s, caching one plan per
/// key/value schema pair.
pub struct RecordDecoder {
    format: Format,
    registry: Option<Arc<RegistryClient>>,
    avro_plans: HashMap<(Option<u32>, u32), Plan>,
    json_plans: Vec<JsonPlan>,
    /// The JSON plan the previous record used: tried first.
    last_json: usize,
    scratch: Scratch,
    target: TargetTypes,
}

impl RecordDecoder {
    /// A decoder for records in `format` bound for a target with `target`'s types; Avro needs
    /// the registry the source registers in.
    pub fn new(
        format: Format,
        registry: Option<Arc<RegistryClient>>,
        target: TargetTypes,
    ) -> RecordDecoder {
        RecordDecoder {
            format,
            registry,
            target,
            avro_plans: HashMap::new(),
            json_plans: Vec::new(),
            last_json: 0,
            scratch: Scratch::default(),
        }
    }

    /// The change one record carries; `None` for a tombstone (null value). Awaits only when
    /// the record's schemas are new to this decoder.
    pub async fn decode(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Option<SinkChange>, DecodeError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let change = match self.format {
            Format::Avro => {
                let (value_id, datum) = confluent_header("value", value)?;
                let key_id = key
                    .map(|key| confluent_header("key", key).map(|(id, _)| id))
                    .transpose()?;
                let plan = match self.avro_plans.entry((key_id, value_id)) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => {
                        let registry = self.registry.as_deref().ok_or(DecodeError::NoRegistry)?;
                        entry.insert(avro_plan(registry, key_id, value_id, self.target).await?)
                    }
                };
                avro::decode(plan, datum, &mut self.scratch)?
            }
            Format::Json => {
                let (position, payload) = self.json_plan(key, value)?;
                let plan = &mut self.json_plans[position].plan;
                json::decode(plan, payload, &mut self.scratch)?
            }
        };
        Ok(Some(change))
    }

    /// The position in `json_plans` of the plan for these records, and the value's payload.
    fn json_plan<'v>(
        &mut self,
        key: Option<&[u8]>,
        value: &'v [u8],
    ) -> Result<(usize, &'v [u8]), DecodeError> {
        let last = self.json_plans.get(self.last_json);
        if let Some(payload) = last.and_then(|plan| plan.payload(key, value)) {
            return Ok((self.last_json, payload));
        }
        let (value_schema, payload) = split_envelope("value", value)?;
        let key_schema = key
            .map(|key| split_envelope("key", key).map(|(schema, _)| schema))
            .transpose()?;
        let known = self.json_plans.iter().position(|plan| {
            *plan.value_schema == *value_schema && plan.key_schema.as_deref() == key_schema
        });
        let position = match known {
            Some(position) => position,
            None => {
                let context = || "embedded JSON schemas".to_string();
                let schema_error = |detail| DecodeError::Schema {
                    context: context(),
                    detail,
                };
                let envelope = schema::parse_connect(value_schema).map_err(schema_error)?;
                let key = key_schema
                    .map(schema::parse_connect)
                    .transpose()
                    .map_err(schema_error)?;
                let plan =
                    Plan::build(&envelope, key.as_ref(), self.target).map_err(schema_error)?;
                self.json_plans.push(JsonPlan {
                    value_schema: value_schema.into(),
                    key_schema: key_schema.map(Into::into),
                    plan,
                });
                self.json_plans.len() - 1
            }
        };
        self.last_json = position;
        Ok((position, payload))
    }
}

/// The schema id and the datum of a Confluent wire-format key or value.
fn confluent_header<'b>(
    part: &'static str,
    bytes: &'b [u8],
) -> Result<(u32, &'b [u8]), DecodeError> {
    match bytes {
        [0, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [magic, ..] if *magic != 0 => Err(DecodeError::WireFormat {
            part,
            detail: format!("magic byte {magic}, expected 0"),
        }),
        _ => Err(DecodeError::WireFormat {
            part,
            detail: format!("{} bytes are too few for the 5-byte header", bytes.len()),
        }),
    }
}

/// Fetches and parses the schemas of a key/value id pair into a plan.
async fn avro_plan(
    registry: &RegistryClient,
    key_id: Option<u32>,
    value_id: u32,
    target: TargetTypes,
) -> Result<Plan, DecodeError> {
    let value_text = fetch(registry, "value", value_id).await?;
    let parsed = |part: &str, id: u32, text: &str| {
        schema::parse_avro(text).map_err(|detail| DecodeError::Schema {
            context: format!("{part} schema id {id}"),
            detail,
        })
    };
    let envelope = parsed("value", value_id, &value_text)?;
    let key = match key_id {
        Some(id) => Some(parsed("key", id, &fetch(registry, "key", id).await?)?),
        None => None,
    };
    Plan::build(&envelope, key.as_ref(), target).map_err(|detail| DecodeError::Schema {
        context: match key_id {
            Some(key_id) => format!("key schema id {key_id}, value schema id {value_id}"),
            None => format!("value schema id {value_id}"),
        },
        detail,
    })
}

async fn fetch(
    registry: &RegistryClient,
    part: &'static str,
    id: u32,
) -> Result<Arc<str>, DecodeError> {
    registry
        .schema_by_id(id)
        .await
        .map_err(|source| match source {
            RegistryError::Status { status: 404, .. } => DecodeError::UnknownSchema { part, id },
            source => DecodeError::Registry { part, id, source },
        })
}

/// The schema and payload of a JsonConverter envelope `{"schema":…,"payload":…}` (whitespace
/// allowed); the payload is validated when it is decoded.
fn split_envelope<'b>(
    part: &'static str,
    bytes: &'b [u8],
) -> Result<(&'b [u8], &'b [u8]), DecodeError> {
    let mut cursor = JsonCursor { bytes, pos: 0 };
    let split = cursor
        .expect(b"{")
        .and_then(|()| cursor.expect(b"\"schema\""))
        .and_then(|()| cursor.expect(b":"))
        .and_then(|()| cursor.value())
        .and_then(|schema| {
            cursor.expect(b",")?;
            cursor.expect(b"\"payload\"")?;
            cursor.expect(b":")?;
            let payload = cursor.value()?;
            cursor.expect(b"}")?;
            cursor.skip_whitespace();
            (cursor.pos == bytes.len()).then_some((schema, payload))
        });
    split.ok_or_else(|| DecodeError::Malformed {
        part,
        detail: "not a Kafka Connect JSON envelope {\"schema\":…,\"payload\":…}".to_string(),
    })
}

/// Just enough JSON scanning to find the boundaries of the envelope's two values.
struct JsonCursor<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> JsonCursor<'b> {
    fn skip_whitespace(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.pos += 1;
        }
    }

    fn expect(&mut self, token: &[u8]) -> Option<()> {
        self.skip_whitespace();
        let rest = self.bytes.get(self.pos..)?;
        rest.starts_with(token).then(|| self.pos += token.len())
    }

    /// One JSON value's bytes: an object, array or string by its balanced end, anything else
    /// up to the next delimiter.
    fn value(&mut self) -> Option<&'b [u8]> {
        self.skip_whitespace();
        let start = self.pos;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut pos = start;
        let end = loop {
            let Some(&byte) = self.bytes.get(pos) else {
                break (!in_string && depth == 0 && pos > start).then_some(pos)?;
            };
            pos += 1;
            if in_string {
                match byte {
                    b'\\' => pos += 1,
                    b'"' if depth == 0 => break pos,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => break pos - 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        break pos;
                    }
                }
                b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => break pos - 1,
                _ => {}
            }
        };
        let value = self.bytes.get(start..end).filter(|v| !v.is_empty())?;
        self.pos = end;
        Some(value)
    }
}

#[cfg(test)]
mod tests;
