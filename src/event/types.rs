//! PostgreSQL types → value shapes (SPEC §5): which family a column's type belongs to, and how its
//! text form (pgoutput's tuple format) becomes a [`Value`](super::Value).

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
    /// real.
    Float4,
    /// double precision.
    Float8,
    /// numeric(p,s), with precision and scale from the type modifier.
    Decimal { precision: u32, scale: u32 },
    /// numeric without precision and scale.
    VariableDecimal,
    /// char, varchar, text, citext, inet, cidr, macaddr, macaddr8.
    Text,
    /// bytea.
    Bytea,
    /// date.
    Date,
    /// time without time zone.
    Time,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone.
    Timestamptz,
    /// time with time zone.
    Timetz,
    /// interval.
    Interval,
    /// uuid.
    Uuid,
    /// json, jsonb.
    Json,
    /// xml.
    Xml,
    /// A user-defined enum type, with its labels in sort order.
    Enum { labels: Vec<String> },
    /// bit(1).
    Bit1,
    /// bit(n > 1), varbit; `length` is n or None for unbounded varbit.
    Bits { length: Option<u32> },
    /// An array of any other family.
    Array(Box<PgType>),
    /// Anything else: carried as its text form under the type's name.
    Other { type_name: String },
}
