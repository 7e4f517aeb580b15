//! A decode plan: what one pair of key and value schemas means for the sink, worked out once
//! so that decoding a record only walks flat lists. Built from the [`Schema`] tree of either
//! format; the Avro reader follows `steps` in writer order, the JSON reader finds fields by name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::encode::columns::UNBOUNDED_BITS_LENGTH;
use crate::encode::schema::DECIMAL_NAME;
use crate::encode::{
    BINARY_ENCODING_PARAMETER, SOURCE_COLUMN_NAME_PARAMETER, SOURCE_COLUMN_TYPE_PARAMETER,
};
use crate::event::change::{Cell, EnumType, Position, SinkChange, SinkColumn, SinkOp, SinkTable};
use crate::event::types::BinaryEncoding;

use super::schema::{Kind, Record, Schema};
use super::text::{ArrayPlaceholder, ScalarKind};
use super::DecodeError;

const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
const POINT_NAME: &str = "io.debezium.data.geometry.Point";
const ENUM_NAME: &str = "io.debezium.data.Enum";
/// PostgreSQL's limit on a numeric type modifier's precision (and its scale's magnitude).
const MAX_NUMERIC_PRECISION: i64 = 1000;

/// Extension types the target database has: they decide the column type (and text form) of
/// values whose source type needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetTypes {
    /// `hstore`: hstore columns get it, else jsonb.
    pub hstore: bool,
    /// `ltree`: ltree columns get it, else text.
    pub ltree: bool,
}

/// The branch indexes of an Avro `["null", T]` union (either order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Branches {
    pub null: i64,
    pub value: i64,
}

/// How one column's (or array element's) value is read and printed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ValuePlan {
    Scalar(ScalarKind),
    Array {
        items: Box<ValuePlan>,
        /// Set when elements are `["null", T]`.
        nullable: Option<Branches>,
        placeholder: ArrayPlaceholder,
    },
    /// A map of strings to strings (hstore under `hstore.handling.mode = map`).
    Map {
        /// Set when values are `["null", "string"]`.
        nullable: Option<Branches>,
        /// Printed as a JSON object (for jsonb) rather than hstore text.
        json: bool,
    },
}

/// One column of the value record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ColumnPlan {
    /// The writer's field name (sanitized in Avro, the column name in JSON).
    pub field: String,
    /// Set when the column is `["null", T]`.
    pub nullable: Option<Branches>,
    pub value: ValuePlan,
}

/// One envelope field, in writer order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Before(Option<Branches>),
    After(Option<Branches>),
    Source(Vec<SourceStep>),
    /// The `transaction` block (`["null", record]` or a record) and its fields' steps.
    Transaction(Option<Branches>, Vec<TransactionStep>),
    Op,
    Skip(Schema),
}

/// One field of the `transaction` block: `id` and `data_collection_order` read, the rest
/// skipped.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TransactionStep {
    Id,
    Order,
    Skip(Schema),
}

/// One field of the `source` block: the four the sink reads, the rest skipped.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SourceStep {
    Schema(Option<Branches>),
    Table(Option<Branches>),
    Sequence(Option<Branches>),
    Lsn(Option<Branches>),
    Skip(Schema),
}

/// What a reader found in one envelope, borrowing from the record where it can.
#[derive(Debug, Default)]
pub(super) struct Parts<'a> {
    pub before: Option<Vec<Cell>>,
    pub after: Option<Vec<Cell>>,
    pub op: Option<Cow<'a, str>>,
    pub schema: Option<Cow<'a, str>>,
    pub table: Option<Cow<'a, str>>,
    pub sequence: Option<Cow<'a, str>>,
    pub lsn: Option<i64>,
    /// `transaction.data_collection_order`.
    pub order: Option<i64>,
    /// `transaction.id`, `"<txid>:<commit lsn>"`.
    pub transaction_id: Option<Cow<'a, str>>,
}

/// Everything needed to decode the records of one (key schema, value schema) pair.
#[derive(Debug)]
pub(super) struct Plan {
    pub columns: Vec<ColumnPlan>,
    /// Writer field name → column index, for JSON objects.
    pub by_field: HashMap<String, usize>,
    pub steps: Vec<Step>,
    sink_columns: Vec<SinkColumn>,
    key: Vec<usize>,
    /// Schema and table from the envelope's name, for envelopes without a usable source block.
    fallback: (String, String),
    /// The tables decoded with this plan so far (normally one), by source schema and table.
    tables: Vec<Arc<SinkTable>>,
}

impl Plan {
    /// The plan for records whose value has schema `envelope` and whose key has `key`.
    pub fn build(
        envelope: &Schema,
        key: Option<&Schema>,
        target: TargetTypes,
    ) -> Result<Plan, String> {
        let record = envelope
            .record()
            .ok_or("not a change-event Envelope: the value schema is not a record")?;
        let value = value_record(record)?;
        let mut columns = Vec::with_capacity(value.fields.len());
        let mut sink_columns = Vec::with_capacity(value.fields.len());
        let mut by_field = HashMap::with_capacity(value.fields.len());
        for (index, (field, schema)) in value.fields.iter().enumerate() {
            let (plan, sink) =
                column(field, schema, target).map_err(|e| format!("column {field}: {e}"))?;
            columns.push(plan);
            sink_columns.push(sink);
            by_field.insert(field.clone(), index);
        }
        let key = match key {
            None => Vec::new(),
            Some(key) => key_indexes(key, &by_field)?,
        };
        let steps = record
            .fields
            .iter()
            .map(|(name, schema)| step(name, schema))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            columns,
            by_field,
            steps,
            sink_columns,
            key,
            fallback: names_from(&record.name),
            tables: Vec::new(),
        })
    }

    /// The change the parts describe.
    pub fn finish(&mut self, parts: Parts<'_>) -> Result<SinkChange, DecodeError> {
        let op = match parts.op.as_deref() {
            Some("c") => SinkOp::Create,
            Some("u") => SinkOp::Update,
            Some("d") => SinkOp::Delete,
            Some("r") => SinkOp::Read,
            Some("t") => SinkOp::Truncate,
            other => {
                return Err(DecodeError::Op {
                    op: other.unwrap_or("<missing>").to_string(),
                })
            }
        };
        let missing = match op {
            SinkOp::Create | SinkOp::Read | SinkOp::Update if parts.after.is_none() => {
                Some(("after", parts.op.as_deref()))
            }
            SinkOp::Delete if parts.before.is_none() => Some(("before", parts.op.as_deref())),
            _ => None,
        };
        if let Some((image, op)) = missing {
            return Err(DecodeError::MissingImage {
                op: op.unwrap_or_default().to_string(),
                image,
            });
        }
        // A snapshot read belongs to no transaction: its sequence places it.
        let transaction_id = match op {
            SinkOp::Read => None,
            _ => parts.transaction_id.as_deref(),
        };
        let mut position = position(parts.sequence.as_deref(), parts.lsn, transaction_id)?;
        if op == SinkOp::Read {
            // A snapshot row is the table's state as of its LSN (the slot's consistent point,
            // or an incremental snapshot's high watermark): before every change committed
            // there or later, including one whose commit record starts at that very LSN.
            position.lsn = 0;
        } else {
            // Orders start at 1; a negative one is no order at all.
            position.order = parts
                .order
                .and_then(|order| u64::try_from(order).ok())
                .unwrap_or(0);
        }
        let table = self.table(parts.schema.as_deref(), parts.table.as_deref());
        Ok(SinkChange {
            table,
            op,
            before: parts.before,
            after: parts.after,
            position,
        })
    }

    /// The shared table description for these names, made on first use.
    fn table(&mut self, schema: Option<&str>, table: Option<&str>) -> Arc<SinkTable> {
        let (schema, table) = match (schema, table) {
            (Some(schema), Some(table)) => (schema, table),
            _ => (self.fallback.0.as_str(), self.fallback.1.as_str()),
        };
        if let Some(found) = self
            .tables
            .iter()
            .find(|known| known.schema == schema && known.table == table)
        {
            return Arc::clone(found);
        }
        let made = Arc::new(SinkTable {
            schema: schema.to_string(),
            table: table.to_string(),
            columns: self.sink_columns.clone(),
            key: self.key.clone(),
        });
        self.tables.push(Arc::clone(&made));
        made
    }
}

/// The `...Value` record of an envelope, from its `before` or `after` field.
fn value_record(envelope: &Record) -> Result<&Arc<Record>, String> {
    let image = |name: &str| {
        envelope
            .fields
            .iter()
            .find(|(field, _)| field == name)
            .and_then(|(_, schema)| match schema.nullable() {
                Some((_, _, inner)) => inner.record(),
                None => schema.record(),
            })
    };
    let has_op = envelope
        .fields
        .iter()
        .any(|(name, schema)| name == "op" && schema.kind == Kind::String);
    match (image("before"), image("after")) {
        (Some(before), Some(after)) if before.name != after.name => Err(format!(
            "before ({}) and after ({}) are different records",
            before.name, after.name
        )),
        (Some(value), _) | (None, Some(value)) if has_op => Ok(value),
        _ => Err(format!(
            "{} is not a change-event Envelope (needs before/after records and a string op)",
            envelope.name
        )),
    }
}

fn nullable_parts(schema: &Schema) -> (Option<Branches>, &Schema) {
    match schema.nullable() {
        Some((null, value, inner)) => (Some(Branches { null, value }), inner),
        None => (None, schema),
    }
}

fn column(
    field: &str,
    schema: &Schema,
    target: TargetTypes,
) -> Result<(ColumnPlan, SinkColumn), String> {
    let (nullable, inner) = nullable_parts(schema);
    let (value, sql_type) = value_plan(inner, target)?;
    let name = inner
        .parameter(SOURCE_COLUMN_NAME_PARAMETER)
        .unwrap_or(field)
        .to_string();
    let plan = ColumnPlan {
        field: field.to_string(),
        nullable,
        value,
    };
    let sink = SinkColumn {
        name,
        sql_type,
        optional: nullable.is_some(),
        enum_type: enum_type(inner).map(Arc::new),
    };
    Ok((plan, sink))
}

/// The source enum type an `io.debezium.data.Enum` schema (or an array's elements) names.
fn enum_type(schema: &Schema) -> Option<EnumType> {
    if let Kind::Array(items) = &schema.kind {
        return enum_type(nullable_parts(items).1);
    }
    if schema.name.as_deref() != Some(ENUM_NAME) {
        return None;
    }
    let type_name = schema.parameter(SOURCE_COLUMN_TYPE_PARAMETER)?;
    EnumType::parse(type_name, schema.parameter("allowed").unwrap_or_default())
}

fn value_plan(schema: &Schema, target: TargetTypes) -> Result<(ValuePlan, String), String> {
    if let Kind::Array(items) = &schema.kind {
        let (nullable, inner) = nullable_parts(items);
        let (items, sql_type) = value_plan(inner, target)?;
        let placeholder = match items {
            ValuePlan::Scalar(kind) => ArrayPlaceholder::of(kind),
            ValuePlan::Array { .. } => ArrayPlaceholder::None,
            ValuePlan::Map { .. } => ArrayPlaceholder::Single,
        };
        let plan = ValuePlan::Array {
            items: Box::new(items),
            nullable,
            placeholder,
        };
        return Ok((plan, format!("{sql_type}[]")));
    }
    if let Kind::Map(values) = &schema.kind {
        let (nullable, inner) = nullable_parts(values);
        if inner.kind != Kind::String {
            return Err(format!("unsupported map of {:?}", inner.kind));
        }
        // A map of strings is how Debezium's map mode sends hstore.
        let json = !target.hstore;
        let sql_type = if json { "jsonb" } else { "hstore" };
        return Ok((ValuePlan::Map { nullable, json }, sql_type.to_string()));
    }
    let (kind, sql_type) = scalar_kind(schema, target)?;
    Ok((ValuePlan::Scalar(kind), sql_type))
}

/// SPEC §5 read backwards: the physical type and semantic name → how to print, and as what.
fn scalar_kind(schema: &Schema, target: TargetTypes) -> Result<(ScalarKind, String), String> {
    let name = schema.name.as_deref().unwrap_or_default();
    let source_type = schema
        .parameter(SOURCE_COLUMN_TYPE_PARAMETER)
        .map(str::to_ascii_lowercase);
    if let (Kind::String, Some(mode)) = (&schema.kind, schema.parameter(BINARY_ENCODING_PARAMETER))
    {
        let encoding = BinaryEncoding::from_name(mode)
            .ok_or_else(|| format!("unknown {BINARY_ENCODING_PARAMETER} {mode:?}"))?;
        return Ok((ScalarKind::EncodedBytes(encoding), "bytea".to_string()));
    }
    let (kind, sql_type) = match &schema.kind {
        Kind::Boolean => (ScalarKind::Bool, "boolean"),
        Kind::Int => match name {
            "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
                (ScalarKind::Date, "date")
            }
            "org.apache.kafka.connect.data.Time" => (ScalarKind::TimeMillis, "time(3)"),
            _ if schema.int16 => (ScalarKind::Int, "smallint"),
            _ => (ScalarKind::Int, "integer"),
        },
        Kind::Long => match name {
            "io.debezium.time.MicroTime" => (ScalarKind::Time, "time(6)"),
            "io.debezium.time.MicroTimestamp" => (ScalarKind::Timestamp, "timestamp(6)"),
            "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                (ScalarKind::TimestampMillis, "timestamp(3)")
            }
            "io.debezium.time.MicroDuration" => (ScalarKind::Interval, "interval"),
            _ => (ScalarKind::Long, "bigint"),
        },
        Kind::Float => (ScalarKind::Float, "real"),
        Kind::Double => (ScalarKind::Double, "double precision"),
        Kind::Bytes if source_type.as_deref() == Some("money") => {
            let (kind, _) = bytes_kind(schema, name);
            (kind, "money")
        }
        Kind::Bytes => return Ok(bytes_kind(schema, name)),
        Kind::String => match name {
            "io.debezium.time.ZonedTimestamp" => (ScalarKind::ZonedTimestamp, "timestamptz"),
            "io.debezium.time.ZonedTime" => (ScalarKind::Text, "timetz"),
            // ISO 8601 (`P1Y2M3DT4H5M6.78S`), which interval input reads as it is.
            "io.debezium.time.Interval" => (ScalarKind::Text, "interval"),
            "io.debezium.data.Uuid" => (ScalarKind::Uuid, "uuid"),
            // An hstore travels as a JSON object; without the extension the target gets jsonb.
            "io.debezium.data.Json" if source_type.as_deref() == Some("hstore") => {
                if target.hstore {
                    (ScalarKind::Hstore { as_json: false }, "hstore")
                } else {
                    (ScalarKind::Hstore { as_json: true }, "jsonb")
                }
            }
            // json, not jsonb: the target keeps the text the source sent, so content compares.
            "io.debezium.data.Json" => (ScalarKind::Text, "json"),
            "io.debezium.data.Xml" => (ScalarKind::Text, "xml"),
            "io.debezium.data.Ltree" if target.ltree => (ScalarKind::Text, "ltree"),
            _ => (ScalarKind::Text, "text"),
        },
        Kind::Record(record) if name == VARIABLE_SCALE_DECIMAL => {
            (variable_scale_decimal(record)?, "numeric")
        }
        Kind::Record(record) if name == POINT_NAME => (point(record)?, "point"),
        other => return Err(format!("unsupported column type {other:?}")),
    };
    Ok((kind, sql_type.to_string()))
}

fn bytes_kind(schema: &Schema, name: &str) -> (ScalarKind, String) {
    let parameter = |key| schema.parameter(key).and_then(|v| v.parse::<i64>().ok());
    let decimal = schema.decimal.or_else(|| {
        (name == DECIMAL_NAME).then(|| {
            let precision = parameter("connect.decimal.precision").and_then(|p| p.try_into().ok());
            (parameter("scale").unwrap_or(0), precision)
        })
    });
    if let Some((scale, precision)) = decimal {
        let sql_type = match precision.and_then(|p| i64::try_from(p).ok()) {
            Some(p) if (1..=MAX_NUMERIC_PRECISION).contains(&p) && scale.abs() <= p => {
                format!("numeric({p},{scale})")
            }
            _ => "numeric".to_string(),
        };
        return (ScalarKind::Decimal { scale }, sql_type);
    }
    if name == "io.debezium.data.Bits" {
        let length = schema
            .parameter("length")
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&length| length != UNBOUNDED_BITS_LENGTH);
        return (ScalarKind::Bits { length }, "bit varying".to_string());
    }
    (ScalarKind::Bytes, "bytea".to_string())
}

/// Debezium's Point struct: x and y, then the optional wkb and srid.
fn point(record: &Record) -> Result<ScalarKind, String> {
    let field = |index: usize, name: &str, kind: Kind| {
        let (field, schema) = record.fields.get(index)?;
        let (nullable, inner) = nullable_parts(schema);
        (field == name && inner.kind == kind).then_some(nullable.map(|b| b.null))
    };
    let layout = (
        field(0, "x", Kind::Double),
        field(1, "y", Kind::Double),
        field(2, "wkb", Kind::Bytes),
        field(3, "srid", Kind::Int),
    );
    match layout {
        (Some(None), Some(None), Some(wkb_null), Some(srid_null)) if record.fields.len() == 4 => {
            Ok(ScalarKind::Point {
                wkb_null,
                srid_null,
            })
        }
        _ => Err(format!(
            "{POINT_NAME} without double x, double y, bytes wkb and int srid"
        )),
    }
}

fn variable_scale_decimal(record: &Record) -> Result<ScalarKind, String> {
    match record.fields.as_slice() {
        [(a, a_type), (b, b_type)] => match (a.as_str(), &a_type.kind, b.as_str(), &b_type.kind) {
            ("scale", Kind::Int, "value", Kind::Bytes) => {
                Ok(ScalarKind::VarDecimal { scale_first: true })
            }
            ("value", Kind::Bytes, "scale", Kind::Int) => {
                Ok(ScalarKind::VarDecimal { scale_first: false })
            }
            _ => Err(format!(
                "{VARIABLE_SCALE_DECIMAL} without int scale and bytes value"
            )),
        },
        _ => Err(format!(
            "{VARIABLE_SCALE_DECIMAL} without int scale and bytes value"
        )),
    }
}

fn key_indexes(key: &Schema, by_field: &HashMap<String, usize>) -> Result<Vec<usize>, String> {
    let record = key.record().ok_or("the key schema is not a record")?;
    record
        .fields
        .iter()
        .map(|(field, _)| {
            by_field
                .get(field)
                .copied()
                .ok_or_else(|| format!("key field {field} is not a column of the value schema"))
        })
        .collect()
}

fn step(name: &str, schema: &Schema) -> Result<Step, String> {
    let image_branches = || nullable_parts(schema).0;
    Ok(match name {
        "before" => Step::Before(image_branches()),
        "after" => Step::After(image_branches()),
        "op" => Step::Op,
        "source" => match schema.record() {
            Some(source) => Step::Source(
                source
                    .fields
                    .iter()
                    .map(|(name, schema)| source_step(name, schema))
                    .collect::<Result<_, _>>()?,
            ),
            None => Step::Skip(schema.clone()),
        },
        "transaction" => transaction_step(schema),
        _ => Step::Skip(schema.clone()),
    })
}

/// The `transaction` block's step; skipped when it is not a (nullable) record.
fn transaction_step(schema: &Schema) -> Step {
    let (branches, inner) = nullable_parts(schema);
    let Some(block) = inner.record() else {
        return Step::Skip(schema.clone());
    };
    let fields = block
        .fields
        .iter()
        .map(|(name, schema)| match name.as_str() {
            "data_collection_order" if schema.kind == Kind::Long => TransactionStep::Order,
            "id" if schema.kind == Kind::String => TransactionStep::Id,
            _ => TransactionStep::Skip(schema.clone()),
        })
        .collect();
    Step::Transaction(branches, fields)
}

fn source_step(name: &str, schema: &Schema) -> Result<SourceStep, String> {
    let (nullable, inner) = nullable_parts(schema);
    let expect = |kind: Kind| {
        if inner.kind == kind {
            Ok(nullable)
        } else {
            Err(format!("source.{name} is not a {kind:?}"))
        }
    };
    Ok(match name {
        "schema" => SourceStep::Schema(expect(Kind::String)?),
        "table" => SourceStep::Table(expect(Kind::String)?),
        "sequence" => SourceStep::Sequence(expect(Kind::String)?),
        "lsn" => SourceStep::Lsn(expect(Kind::Long)?),
        _ => SourceStep::Skip(schema.clone()),
    })
}

/// `<prefix>.<schema>.<table>.Envelope` → (schema, table). The prefix may itself hold dots,
/// so the last two parts before the suffix are taken.
fn names_from(record_name: &str) -> (String, String) {
    let base = record_name
        .strip_suffix(".Envelope")
        .or_else(|| record_name.strip_suffix(".Value"))
        .unwrap_or(record_name);
    let mut parts = base.rsplitn(3, '.');
    let table = parts.next().unwrap_or_default();
    let schema = parts.next().unwrap_or_default();
    (schema.to_string(), table.to_string())
}

/// A change's position: its transaction's own commit LSN from `transaction_id`
/// (`"<txid>:<commit lsn>"`) when there is one, else the first element of `source.sequence`
/// (`["<previous commit's end>","<lsn>"]`, elements possibly `null`); then the change's LSN,
/// falling back to `source.lsn`, and for a missing commit LSN to the change LSN.
///
/// The previous commit's end is where streaming started for a source run's first
/// transaction, so a replay of that transaction by the next run would sort above its first
/// copy; the own commit LSN does not move.
pub(super) fn position(
    sequence: Option<&str>,
    lsn: Option<i64>,
    transaction_id: Option<&str>,
) -> Result<Position, DecodeError> {
    let lsn = lsn
        .map(|lsn| {
            u64::try_from(lsn).map_err(|_| DecodeError::Sequence {
                sequence: format!("source.lsn {lsn}"),
            })
        })
        .transpose()?;
    let (commit, change) = match sequence {
        Some(text) => parse_sequence(text).ok_or_else(|| DecodeError::Sequence {
            sequence: text.to_string(),
        })?,
        None => (None, None),
    };
    let change = change.or(lsn).or(commit).unwrap_or(0);
    let commit = transaction_id.and_then(own_commit_lsn).or(commit);
    Ok(Position {
        commit_lsn: commit.unwrap_or(change),
        lsn: change,
        order: 0,
    })
}

/// The commit LSN of a `transaction.id` (`"<txid>:<commit lsn>"`, the LSN as a decimal
/// number, as Debezium's PostgreSQL connector writes it).
fn own_commit_lsn(id: &str) -> Option<u64> {
    id.split_once(':')?.1.parse().ok()
}

fn parse_sequence(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (first, second) = inner.split_once(',')?;
    let element = |item: &str| -> Option<Option<u64>> {
        let item = item.trim();
        if item == "null" {
            return Some(None);
        }
        let digits = item.strip_prefix('"')?.strip_suffix('"')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(Some)
    };
    Some((element(first)?, element(second)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_id_gives_its_own_commit_lsn() {
        assert_eq!(own_commit_lsn("731:37804480"), Some(37_804_480));
        assert_eq!(own_commit_lsn("731"), None);
        assert_eq!(own_commit_lsn("731:0/24B0A40"), None);
    }

    #[test]
    fn sequences_parse_with_fallbacks() {
        let at = |commit_lsn, lsn| Position {
            commit_lsn,
            lsn,
            order: 0,
        };
        assert_eq!(
            position(Some(r#"["24023128","24023200"]"#), Some(1), None).unwrap(),
            at(24_023_128, 24_023_200)
        );
        assert_eq!(
            position(Some(r#"[null,"7"]"#), None, None).unwrap(),
            at(7, 7)
        );
        assert_eq!(
            position(Some("[null,null]"), Some(9), None).unwrap(),
            at(9, 9)
        );
        assert_eq!(position(None, Some(9), None).unwrap(), at(9, 9));
        assert_eq!(position(None, None, None).unwrap(), at(0, 0));
        assert_eq!(
            position(
                Some(r#"["24023128","24023200"]"#),
                None,
                Some("771:24023300")
            )
            .unwrap(),
            at(24_023_300, 24_023_200),
            "the transaction's own commit LSN comes first"
        );
        assert_eq!(
            position(Some(r#"["24023128","24023200"]"#), None, Some("771")).unwrap(),
            at(24_023_128, 24_023_200),
            "an id without an LSN leaves the sequence's"
        );
        for bad in [
            "",
            "[]",
            r#"["1"]"#,
            r#"["1","x"]"#,
            r#"[1,2]"#,
            r#"["-1","2"]"#,
        ] {
            assert!(position(Some(bad), None, None).is_err(), "{bad}");
        }
        assert!(position(None, Some(-1), None).is_err());
    }

    #[test]
    fn names_come_from_the_envelope_name() {
        assert_eq!(
            names_from("my.prefix.public.item.Envelope"),
            ("public".to_string(), "item".to_string())
        );
        assert_eq!(
            names_from("item.Value"),
            (String::new(), "item".to_string())
        );
    }
}
