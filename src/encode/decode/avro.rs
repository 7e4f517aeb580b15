//! Avro binary datums read by a [`Plan`]: zig-zag varints, little-endian floats, length-prefixed
//! bytes and strings, unions by branch index, arrays in blocks. Every read is bounds-checked and
//! every length is bounded by the bytes left, so malformed input is an error, never a panic or
//! a huge allocation.

use std::borrow::Cow;

use crate::event::change::{Cell, SinkChange};

use super::plan::{
    Branches, ColumnPlan, Parts, Plan, SourceStep, Step, TransactionStep, ValuePlan,
};
use super::schema::{Kind, Schema};
use super::text::{
    capacity_hint, is_placeholder, push_scalar, ArrayText, MapText, Scalar, ScalarKind,
};
use super::{DecodeError, Scratch};

/// Array items of zero-size types (`null`, empty records) carry no bytes to bound their count.
const MAX_ZERO_SIZE_ITEMS: u64 = 1 << 16;

/// Why a datum could not be read; the caller says where.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Problem {
    Truncated,
    BadVarint,
    BadBoolean(u8),
    BadLength(i64),
    BadUtf8,
    BadBranch(i64),
    IntOutOfRange(i64),
    TooManyItems(i64),
    Value(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Truncated => write!(f, "the datum is truncated"),
            Problem::BadVarint => write!(f, "a varint longer than 64 bits"),
            Problem::BadBoolean(byte) => write!(f, "boolean byte {byte}"),
            Problem::BadLength(length) => write!(f, "length {length} does not fit the datum"),
            Problem::BadUtf8 => write!(f, "a string that is not UTF-8"),
            Problem::BadBranch(branch) => write!(f, "union branch {branch} does not exist"),
            Problem::IntOutOfRange(value) => write!(f, "int {value} is out of range"),
            Problem::TooManyItems(count) => write!(f, "array block of {count} items"),
            Problem::Value(detail) => f.write_str(detail),
        }
    }
}

/// A cursor over a datum's bytes.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { rest: data }
    }

    fn byte(&mut self) -> Result<u8, Problem> {
        let (&byte, rest) = self.rest.split_first().ok_or(Problem::Truncated)?;
        self.rest = rest;
        Ok(byte)
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], Problem> {
        if length > self.rest.len() {
            return Err(Problem::Truncated);
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }

    /// A zig-zag varint of at most ten bytes.
    pub fn long(&mut self) -> Result<i64, Problem> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            if shift == 63 && byte > 1 {
                return Err(Problem::BadVarint);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(Problem::BadVarint)
    }

    fn int(&mut self) -> Result<i64, Problem> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| Problem::IntOutOfRange(value))?;
        Ok(value)
    }

    fn boolean(&mut self) -> Result<bool, Problem> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Problem::BadBoolean(other)),
        }
    }

    fn float(&mut self) -> Result<f32, Problem> {
        let bytes = self.take(4)?;
        Ok(f32::from_le_bytes(
            bytes.try_into().map_err(|_| Problem::Truncated)?,
        ))
    }

    fn double(&mut self) -> Result<f64, Problem> {
        let bytes = self.take(8)?;
        Ok(f64::from_le_bytes(
            bytes.try_into().map_err(|_| Problem::Truncated)?,
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Problem> {
        let length = self.long()?;
        let size = usize::try_from(length).map_err(|_| Problem::BadLength(length))?;
        if size > self.rest.len() {
            return Err(Problem::BadLength(length));
        }
        self.take(size)
    }

    fn str(&mut self) -> Result<&'a str, Problem> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Problem::BadUtf8)
    }

    /// The branch of a `["null", T]` union: false for null.
    fn present(&mut self, branches: Branches) -> Result<bool, Problem> {
        match self.long()? {
            branch if branch == branches.null => Ok(false),
            branch if branch == branches.value => Ok(true),
            branch => Err(Problem::BadBranch(branch)),
        }
    }

    /// The item count of the next array block (0 at the end), checked against the bytes left.
    fn block(&mut self, min_item_size: usize) -> Result<u64, Problem> {
        let count = self.long()?;
        let count = if count < 0 {
            // A negative count is followed by the block's size in bytes.
            let size = self.long()?;
            if usize::try_from(size).map_or(true, |size| size > self.rest.len()) {
                return Err(Problem::BadLength(size));
            }
            count.unsigned_abs()
        } else {
            count.unsigned_abs()
        };
        let fits = match u64::try_from(min_item_size) {
            Ok(0) => count <= MAX_ZERO_SIZE_ITEMS,
            Ok(size) => count
                .checked_mul(size)
                .is_some_and(|needed| needed <= self.rest.len() as u64),
            Err(_) => false,
        };
        if fits {
            Ok(count)
        } else {
            Err(Problem::TooManyItems(
                i64::try_from(count).unwrap_or(i64::MAX),
            ))
        }
    }

    /// Reads past a datum of `schema`.
    fn skip(&mut self, schema: &Schema) -> Result<(), Problem> {
        match &schema.kind {
            Kind::Null => {}
            Kind::Boolean => {
                self.boolean()?;
            }
            Kind::Int | Kind::Long => {
                self.long()?;
            }
            Kind::Float => {
                self.take(4)?;
            }
            Kind::Double => {
                self.take(8)?;
            }
            Kind::Bytes | Kind::String => {
                self.bytes()?;
            }
            Kind::Array(items) => loop {
                let count = self.block(items.min_size())?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.skip(items)?;
                }
            },
            Kind::Map(values) => loop {
                let count = self.block(values.min_size() + 1)?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.bytes()?;
                    self.skip(values)?;
                }
            },
            Kind::Record(record) => {
                for (_, field) in &record.fields {
                    self.skip(field)?;
                }
            }
            Kind::Union(branches) => {
                let branch = self.long()?;
                let schema = usize::try_from(branch)
                    .ok()
                    .and_then(|index| branches.get(index))
                    .ok_or(Problem::BadBranch(branch))?;
                self.skip(schema)?;
            }
        }
        Ok(())
    }

    fn scalar(&mut self, kind: ScalarKind) -> Result<Scalar<'a>, Problem> {
        Ok(match kind {
            ScalarKind::Bool => Scalar::Bool(self.boolean()?),
            ScalarKind::Int | ScalarKind::Date | ScalarKind::TimeMillis => Scalar::Int(self.int()?),
            ScalarKind::Long
            | ScalarKind::Time
            | ScalarKind::Timestamp
            | ScalarKind::TimestampMillis
            | ScalarKind::Interval => Scalar::Int(self.long()?),
            ScalarKind::Float => Scalar::Float(self.float()?),
            ScalarKind::Double => Scalar::Double(self.double()?),
            ScalarKind::Decimal { .. } | ScalarKind::Bytes | ScalarKind::Bits { .. } => {
                Scalar::Bytes(self.bytes()?)
            }
            ScalarKind::VarDecimal { scale_first } => {
                let (scale, unscaled) = if scale_first {
                    let scale = self.int()?;
                    (scale, self.bytes()?)
                } else {
                    let unscaled = self.bytes()?;
                    (self.int()?, unscaled)
                };
                Scalar::VarDecimal { scale, unscaled }
            }
            ScalarKind::Text
            | ScalarKind::Uuid
            | ScalarKind::ZonedTimestamp
            | ScalarKind::EncodedBytes(_)
            | ScalarKind::Hstore { .. } => Scalar::Str(self.str()?),
            ScalarKind::Point {
                wkb_null,
                srid_null,
            } => {
                let (x, y) = (self.double()?, self.double()?);
                // The WKB and SRID say nothing a point column keeps: read past them.
                if self.present_unless(wkb_null)? {
                    self.bytes()?;
                }
                if self.present_unless(srid_null)? {
                    self.int()?;
                }
                Scalar::Point { x, y }
            }
        })
    }

    /// Whether a field follows: always for a required one, else as its union branch says
    /// (`null` is the null branch's index).
    fn present_unless(&mut self, null: Option<i64>) -> Result<bool, Problem> {
        match null {
            None => Ok(true),
            Some(null) => Ok(self.long()? != null),
        }
    }

    fn optional_str(&mut self, branches: Option<Branches>) -> Result<Option<&'a str>, Problem> {
        match branches {
            Some(branches) if !self.present(branches)? => Ok(None),
            _ => self.str().map(Some),
        }
    }

    /// An array datum as an array literal appended to `out`; true when it was the placeholder.
    fn array(
        &mut self,
        out: &mut String,
        item: &mut String,
        items: &ValuePlan,
        nullable: Option<Branches>,
        mut text: ArrayText,
    ) -> Result<bool, Problem> {
        loop {
            let count = self.block(1)?;
            if count == 0 {
                break;
            }
            for _ in 0..count {
                if let Some(branches) = nullable {
                    if !self.present(branches)? {
                        text.null(out);
                        continue;
                    }
                }
                match items {
                    ValuePlan::Scalar(kind) => {
                        let scalar = self.scalar(*kind)?;
                        text.scalar(out, item, *kind, &scalar)
                            .map_err(Problem::Value)?;
                    }
                    ValuePlan::Array {
                        items: inner,
                        nullable: inner_nullable,
                        placeholder,
                    } => {
                        text.nested(out);
                        let nested = ArrayText::start(out, *placeholder);
                        self.array(out, item, inner, *inner_nullable, nested)?;
                    }
                    ValuePlan::Map { nullable, json } => {
                        item.clear();
                        let placeholder = self.map(item, *nullable, *json)?;
                        text.printed(out, item, placeholder);
                    }
                }
            }
        }
        text.finish(out).map_err(Problem::Value)
    }

    /// A map of strings as hstore (or JSON) text appended to `out`; true when it was the
    /// placeholder.
    fn map(
        &mut self,
        out: &mut String,
        nullable: Option<Branches>,
        json: bool,
    ) -> Result<bool, Problem> {
        let mut text = MapText::start(out, json);
        loop {
            // A key's length and the value's branch or length: at least two bytes a pair.
            let count = self.block(2)?;
            if count == 0 {
                break;
            }
            for _ in 0..count {
                let key = self.str()?;
                let value = self.optional_str(nullable)?;
                text.pair(out, key, value);
            }
        }
        Ok(text.finish(out))
    }

    fn cell(&mut self, column: &ColumnPlan, item: &mut String) -> Result<Cell, Problem> {
        if let Some(branches) = column.nullable {
            if !self.present(branches)? {
                return Ok(Cell::Null);
            }
        }
        match &column.value {
            ValuePlan::Scalar(kind) => {
                let scalar = self.scalar(*kind)?;
                if is_placeholder(*kind, &scalar) {
                    return Ok(Cell::Unavailable);
                }
                let mut out = String::with_capacity(capacity_hint(&scalar));
                push_scalar(&mut out, *kind, &scalar).map_err(Problem::Value)?;
                Ok(Cell::Text(out))
            }
            ValuePlan::Array {
                items,
                nullable,
                placeholder,
            } => {
                let mut out = String::new();
                let text = ArrayText::start(&mut out, *placeholder);
                if self.array(&mut out, item, items, *nullable, text)? {
                    Ok(Cell::Unavailable)
                } else {
                    Ok(Cell::Text(out))
                }
            }
            ValuePlan::Map { nullable, json } => {
                let mut out = String::new();
                if self.map(&mut out, *nullable, *json)? {
                    Ok(Cell::Unavailable)
                } else {
                    Ok(Cell::Text(out))
                }
            }
        }
    }

    fn row(
        &mut self,
        plan: &Plan,
        branches: Option<Branches>,
        scratch: &mut Scratch,
    ) -> Result<Option<Vec<Cell>>, DecodeError> {
        if let Some(branches) = branches {
            if !self
                .present(branches)
                .map_err(|p| malformed(p, "a row image"))?
            {
                return Ok(None);
            }
        }
        let mut cells = Vec::with_capacity(plan.columns.len());
        for column in &plan.columns {
            let cell = self
                .cell(column, &mut scratch.item)
                .map_err(|problem| match problem {
                    Problem::Value(detail) => DecodeError::Value {
                        column: column.field.clone(),
                        detail,
                    },
                    problem => malformed(problem, &format!("column {}", column.field)),
                })?;
            cells.push(cell);
        }
        Ok(Some(cells))
    }

    fn source(&mut self, steps: &[SourceStep], parts: &mut Parts<'a>) -> Result<(), Problem> {
        for step in steps {
            match step {
                SourceStep::Schema(branches) => {
                    parts.schema = self.optional_str(*branches)?.map(Cow::Borrowed);
                }
                SourceStep::Table(branches) => {
                    parts.table = self.optional_str(*branches)?.map(Cow::Borrowed);
                }
                SourceStep::Sequence(branches) => {
                    parts.sequence = self.optional_str(*branches)?.map(Cow::Borrowed);
                }
                SourceStep::Lsn(branches) => {
                    parts.lsn = match branches {
                        Some(branches) if !self.present(*branches)? => None,
                        _ => Some(self.long()?),
                    };
                }
                SourceStep::Skip(schema) => self.skip(schema)?,
            }
        }
        Ok(())
    }

    fn transaction(
        &mut self,
        branches: Option<Branches>,
        steps: &[TransactionStep],
        parts: &mut Parts<'a>,
    ) -> Result<(), Problem> {
        if let Some(branches) = branches {
            if !self.present(branches)? {
                return Ok(());
            }
        }
        for step in steps {
            match step {
                TransactionStep::Order => parts.order = Some(self.long()?),
                TransactionStep::Id => parts.transaction_id = Some(Cow::Borrowed(self.str()?)),
                TransactionStep::Skip(schema) => self.skip(schema)?,
            }
        }
        Ok(())
    }
}

fn malformed(problem: Problem, at: &str) -> DecodeError {
    DecodeError::Malformed {
        part: "value",
        detail: format!("{problem} (reading {at})"),
    }
}

/// Decodes one envelope datum (the bytes after the Confluent header).
pub(super) fn decode(
    plan: &mut Plan,
    datum: &[u8],
    scratch: &mut Scratch,
) -> Result<SinkChange, DecodeError> {
    let mut reader = Reader::new(datum);
    let mut parts = Parts::default();
    for step in &plan.steps {
        match step {
            Step::Before(branches) => parts.before = reader.row(plan, *branches, scratch)?,
            Step::After(branches) => parts.after = reader.row(plan, *branches, scratch)?,
            Step::Source(steps) => reader
                .source(steps, &mut parts)
                .map_err(|p| malformed(p, "the source block"))?,
            Step::Transaction(branches, steps) => reader
                .transaction(*branches, steps, &mut parts)
                .map_err(|p| malformed(p, "the transaction block"))?,
            Step::Op => {
                let op = reader.str().map_err(|p| malformed(p, "op"))?;
                parts.op = Some(Cow::Borrowed(op));
            }
            Step::Skip(schema) => reader
                .skip(schema)
                .map_err(|p| malformed(p, "an envelope field"))?,
        }
    }
    if !reader.rest.is_empty() {
        return Err(DecodeError::Malformed {
            part: "value",
            detail: format!(
                "{} bytes after the end of the datum: the schema does not match the data",
                reader.rest.len()
            ),
        });
    }
    plan.finish(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::avro::write_long;

    #[test]
    fn varints_round_trip_and_overlong_ones_fail() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_long(&mut out, value);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.long(), Ok(value));
            assert!(reader.rest.is_empty());
        }
        assert_eq!(Reader::new(&[0x80]).long(), Err(Problem::Truncated));
        assert_eq!(Reader::new(&[0xff; 10]).long(), Err(Problem::BadVarint));
        let mut eleven = vec![0xff; 9];
        eleven.push(0x02);
        assert_eq!(Reader::new(&eleven).long(), Err(Problem::BadVarint));
    }

    #[test]
    fn lengths_and_blocks_are_bounded_by_the_input() {
        let mut out = Vec::new();
        write_long(&mut out, 5);
        out.extend_from_slice(b"abc");
        assert_eq!(Reader::new(&out).bytes(), Err(Problem::BadLength(5)));
        assert_eq!(Reader::new(&[1]).bytes(), Err(Problem::BadLength(-1)));
        let mut block = Vec::new();
        write_long(&mut block, i64::MIN);
        assert!(Reader::new(&block).block(1).is_err());
        let mut block = Vec::new();
        write_long(&mut block, 1_000_000);
        assert!(Reader::new(&block).block(0).is_err());
        let mut block = Vec::new();
        write_long(&mut block, -2);
        write_long(&mut block, 2);
        block.extend_from_slice(&[2, 4]);
        let mut reader = Reader::new(&block);
        assert_eq!(reader.block(1), Ok(2));
        assert_eq!(reader.int(), Ok(1));
        assert_eq!(reader.int(), Ok(2));
    }
}
