//! The `pgcdc.ddl` messages the event triggers emit (see `capture.sql`), read back from the
//! slot and turned into [`SchemaChange`]s of the captured tables: pure functions, no I/O.

use serde::Deserialize;

use crate::config::TableFilter;
use crate::event::{
    ColumnDescription, SchemaChange, SourcePosition, TableChangeKind, TableDescription,
};

/// `java.sql.Types` codes, the ones Debezium's PostgreSQL types map to.
pub mod jdbc {
    pub const BIT: i32 = -7;
    pub const SMALLINT: i32 = 5;
    pub const INTEGER: i32 = 4;
    pub const BIGINT: i32 = -5;
    pub const REAL: i32 = 7;
    pub const DOUBLE: i32 = 8;
    pub const NUMERIC: i32 = 2;
    pub const CHAR: i32 = 1;
    pub const VARCHAR: i32 = 12;
    pub const BINARY: i32 = -2;
    pub const DATE: i32 = 91;
    pub const TIME: i32 = 92;
    pub const TIMESTAMP: i32 = 93;
    pub const OTHER: i32 = 1111;
    pub const STRUCT: i32 = 2002;
    pub const ARRAY: i32 = 2003;
    pub const SQLXML: i32 = 2009;
    pub const REF_CURSOR: i32 = 2012;
}

/// One message's content.
#[derive(Debug, Clone, Deserialize)]
pub struct DdlMessage {
    /// `CREATE`, `ALTER` or `DROP`.
    pub kind: String,
    /// The command tag (`ALTER TABLE`, `DROP TABLE`, `DROP TYPE` for a cascade, …).
    #[serde(default)]
    pub command_tag: Option<String>,
    /// The command's object identity.
    #[serde(default)]
    pub object_identity: Option<String>,
    /// The statement (`current_query()`: the whole query string the client sent).
    #[serde(default)]
    pub ddl: Option<String>,
    /// The table's oid.
    pub relid: u32,
    /// The table's schema after the change (for a drop, the dropped table's).
    pub schema: String,
    /// The table's name after the change.
    pub table: String,
    /// Its description after the change; null for a drop.
    #[serde(default)]
    pub after: Option<RawTable>,
    /// Its description before the change, when it was known.
    #[serde(default)]
    pub before: Option<RawTable>,
}

/// A table's description as `pgcdc.ddl_describe` writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawTable {
    pub schema: String,
    pub table: String,
    pub columns: Vec<RawColumn>,
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub replica_identity: Option<String>,
}

/// A column's description as `pgcdc.ddl_column` writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawColumn {
    pub attnum: i32,
    pub name: String,
    /// The declared type's name (`int4`, `_varchar`, `l1.posint`).
    pub type_name: String,
    /// `format_type` of the base type with its modifier.
    pub type_expression: String,
    /// The declared type's oid.
    pub type_oid: u32,
    /// The base type's name (domains resolved; an array's element type).
    pub base_type: String,
    /// Whether the base type is in `pg_catalog`.
    pub base_catalog: bool,
    /// The base type's `typtype` (`b`, `e`, `c`, `r`, …).
    pub base_kind: String,
    /// Whether the base type is an array (of `base_type`).
    pub base_array: bool,
    /// The modifier that applies to the base type (-1: none).
    pub base_typmod: i32,
    pub not_null: bool,
    #[serde(default)]
    pub default: Option<String>,
    pub generated: bool,
    pub auto_incremented: bool,
    #[serde(default)]
    pub enum_values: Option<Vec<String>>,
}

/// The JDBC type code Debezium (through PgJDBC's type cache) gives a column of this base type.
pub fn jdbc_type(base_type: &str, in_catalog: bool, kind: &str, array: bool) -> i32 {
    if array {
        return jdbc::ARRAY;
    }
    match kind {
        "c" => return jdbc::STRUCT,
        "e" => return jdbc::VARCHAR,
        _ if !in_catalog => return jdbc::OTHER,
        _ => {}
    }
    match base_type {
        "bool" | "bit" => jdbc::BIT,
        "int2" => jdbc::SMALLINT,
        "int4" => jdbc::INTEGER,
        "int8" | "oid" => jdbc::BIGINT,
        "float4" => jdbc::REAL,
        "float8" | "money" => jdbc::DOUBLE,
        "numeric" => jdbc::NUMERIC,
        "char" | "bpchar" => jdbc::CHAR,
        "varchar" | "text" | "name" => jdbc::VARCHAR,
        "bytea" => jdbc::BINARY,
        "date" => jdbc::DATE,
        "time" | "timetz" => jdbc::TIME,
        "timestamp" | "timestamptz" => jdbc::TIMESTAMP,
        "xml" => jdbc::SQLXML,
        "refcursor" => jdbc::REF_CURSOR,
        _ => jdbc::OTHER,
    }
}

/// Length (or precision) and scale from a type modifier, as the type defines them:
/// `varchar(10)` → (10, -), `numeric(10,2)` → (10, 2), `bit(3)` → (3, -),
/// `timestamp(3)` → (-, 3).
pub fn length_and_scale(base_type: &str, typmod: i32) -> (Option<i32>, Option<i32>) {
    if typmod < 0 {
        return (None, None);
    }
    match base_type {
        "varchar" | "bpchar" => (Some(typmod - 4), None),
        "numeric" => {
            let packed = typmod - 4;
            let precision = (packed >> 16) & 0xffff;
            // The scale is an 11-bit two's-complement number (PostgreSQL 15 allows negative ones).
            let scale = ((packed & 0x7ff) ^ 0x400) - 0x400;
            (Some(precision), Some(scale))
        }
        "bit" | "varbit" => (Some(typmod), None),
        "time" | "timetz" | "timestamp" | "timestamptz" => (None, Some(typmod)),
        "interval" => match typmod & 0xffff {
            0xffff => (None, None),
            precision => (None, Some(precision)),
        },
        _ => (None, None),
    }
}

impl RawColumn {
    fn describe(&self) -> ColumnDescription {
        let (length, scale) = length_and_scale(&self.base_type, self.base_typmod);
        ColumnDescription {
            name: self.name.clone(),
            position: self.attnum,
            type_name: self.type_name.clone(),
            type_expression: self.type_expression.clone(),
            native_type: self.type_oid,
            jdbc_type: jdbc_type(
                &self.base_type,
                self.base_catalog,
                &self.base_kind,
                self.base_array,
            ),
            length,
            scale,
            optional: !self.not_null,
            auto_incremented: self.auto_incremented,
            generated: self.generated,
            default_expression: self.default.clone(),
            enum_values: self.enum_values.clone(),
        }
    }
}

impl RawTable {
    /// The description a schema change carries: columns in `attnum` order, those
    /// `capture.exclude_columns` leaves out of the events left out here too.
    pub fn describe(&self, filter: &TableFilter) -> TableDescription {
        let excluded = |name: &str| filter.excluded_column(&self.schema, &self.table, name);
        let mut columns: Vec<ColumnDescription> = self
            .columns
            .iter()
            .filter(|column| !excluded(&column.name))
            .map(RawColumn::describe)
            .collect();
        columns.sort_by_key(|column| column.position);
        TableDescription {
            schema: self.schema.clone(),
            table: self.table.clone(),
            columns,
            primary_key: self
                .primary_key
                .iter()
                .filter(|name| !excluded(name))
                .cloned()
                .collect(),
        }
    }
}

impl DdlMessage {
    /// Reads a message's content.
    pub fn parse(content: &[u8]) -> Result<DdlMessage, String> {
        serde_json::from_slice(content).map_err(|error| error.to_string())
    }

    /// The schema change this message is for the tables `filter` captures, `None` when it
    /// concerns a table not captured. A table renamed or moved into the captured set is new
    /// there: a CREATE (without `previous`). One renamed or moved out of it is left to table
    /// discovery, which announces its DROP.
    pub fn schema_change(
        &self,
        filter: &TableFilter,
        source: SourcePosition,
    ) -> Result<Option<SchemaChange>, String> {
        let kind = TableChangeKind::parse(&self.kind)
            .ok_or_else(|| format!("unknown kind {:?}", self.kind))?;
        if !filter.matches(&self.schema, &self.table) {
            return Ok(None);
        }
        let after = self.after.as_ref().map(|table| table.describe(filter));
        let mut previous = self.before.as_ref().map(|table| table.describe(filter));
        let mut kind = kind;
        if kind == TableChangeKind::Alter {
            if let Some(before) = &previous {
                if !filter.matches(&before.schema, &before.table) {
                    kind = TableChangeKind::Create;
                    previous = None;
                }
            }
        }
        if kind != TableChangeKind::Drop && after.is_none() {
            return Err(format!("a {} without the table's description", self.kind));
        }
        Ok(Some(SchemaChange {
            schema: self.schema.clone(),
            table: self.table.clone(),
            kind,
            ddl: self.ddl.clone(),
            table_description: after,
            previous,
            source,
            transaction_id: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CaptureSection;

    fn filter(tables: &[&str], exclude_columns: &[&str]) -> TableFilter {
        let capture: CaptureSection = toml::from_str(&format!(
            "tables = {tables:?}\nexclude_columns = {exclude_columns:?}"
        ))
        .unwrap();
        TableFilter::new(&capture).unwrap()
    }

    fn position() -> SourcePosition {
        SourcePosition {
            commit_ts_us: 1,
            txid: Some(7),
            lsn: Some(crate::lsn::Lsn(100)),
            previous_commit: Some(crate::lsn::Lsn(200)),
            snapshot: Default::default(),
        }
    }

    /// A message as the event trigger writes it, for `ALTER TABLE l1.t RENAME COLUMN name TO
    /// full_name` on a table with a serial key, a varchar, a domain, an enum array and a
    /// generated column.
    const RENAME: &str = r#"{"ddl": "ALTER TABLE l1.t RENAME COLUMN name TO full_name", "kind": "ALTER",
      "relid": 16404, "table": "t", "schema": "l1", "command_tag": "ALTER TABLE", "object_identity": "l1.t.full_name",
      "after": {"table": "t", "schema": "l1", "primary_key": ["id"], "replica_identity": "d", "columns": [
        {"name": "g", "attnum": 7, "default": "(id * 2)", "identity": null, "not_null": false, "type_oid": 23, "base_kind": "b", "base_type": "int4", "generated": true, "type_name": "int4", "base_array": false, "base_typmod": -1, "enum_values": null, "base_catalog": true, "type_expression": "integer", "auto_incremented": false},
        {"name": "id", "attnum": 1, "default": "nextval('l1.t_id_seq'::regclass)", "identity": null, "not_null": true, "type_oid": 23, "base_kind": "b", "base_type": "int4", "generated": false, "type_name": "int4", "base_array": false, "base_typmod": -1, "enum_values": null, "base_catalog": true, "type_expression": "integer", "auto_incremented": true},
        {"name": "full_name", "attnum": 2, "default": "'x'::character varying", "identity": null, "not_null": true, "type_oid": 1043, "base_kind": "b", "base_type": "varchar", "generated": false, "type_name": "varchar", "base_array": false, "base_typmod": 14, "enum_values": null, "base_catalog": true, "type_expression": "character varying(10)", "auto_incremented": false},
        {"name": "ms", "attnum": 4, "default": null, "identity": null, "not_null": false, "type_oid": 16390, "base_kind": "e", "base_type": "mood", "generated": false, "type_name": "l1._mood", "base_array": true, "base_typmod": -1, "enum_values": ["sad", "ok"], "base_catalog": false, "type_expression": "l1.mood[]", "auto_incremented": false},
        {"name": "mm", "attnum": 6, "default": null, "identity": null, "not_null": false, "type_oid": 16401, "base_kind": "b", "base_type": "numeric", "generated": false, "type_name": "l1.money2", "base_array": false, "base_typmod": 655366, "enum_values": null, "base_catalog": true, "type_expression": "numeric(10,2)", "auto_incremented": false}]},
      "before": {"table": "t", "schema": "l1", "primary_key": ["id"], "replica_identity": "d", "columns": [
        {"name": "id", "attnum": 1, "default": "nextval('l1.t_id_seq'::regclass)", "identity": null, "not_null": true, "type_oid": 23, "base_kind": "b", "base_type": "int4", "generated": false, "type_name": "int4", "base_array": false, "base_typmod": -1, "enum_values": null, "base_catalog": true, "type_expression": "integer", "auto_incremented": true},
        {"name": "name", "attnum": 2, "default": "'x'::character varying", "identity": null, "not_null": true, "type_oid": 1043, "base_kind": "b", "base_type": "varchar", "generated": false, "type_name": "varchar", "base_array": false, "base_typmod": 14, "enum_values": null, "base_catalog": true, "type_expression": "character varying(10)", "auto_incremented": false}]}}"#;

    #[test]
    fn an_alter_becomes_the_tables_description_after_and_before() {
        let message = DdlMessage::parse(RENAME.as_bytes()).unwrap();
        let change = message
            .schema_change(&filter(&["l1.*"], &["l1.t.mm"]), position())
            .unwrap()
            .unwrap();
        assert_eq!(change.kind, TableChangeKind::Alter);
        assert_eq!(change.table_id(), r#""l1"."t""#);
        assert_eq!(
            change.ddl.as_deref(),
            Some("ALTER TABLE l1.t RENAME COLUMN name TO full_name")
        );
        assert_eq!(change.source, position());
        let after = change.table_description.unwrap();
        assert_eq!((after.schema.as_str(), after.table.as_str()), ("l1", "t"));
        assert_eq!(after.primary_key, ["id"]);
        let summary: Vec<(&str, i32, &str, bool)> = after
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.position,
                    c.type_expression.as_str(),
                    c.optional,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("id", 1, "integer", false),
                ("full_name", 2, "character varying(10)", false),
                ("ms", 4, "l1.mood[]", true),
                ("g", 7, "integer", true),
            ],
            "attnum order, the excluded column left out"
        );
        assert_eq!(
            after.columns[0],
            ColumnDescription {
                name: "id".into(),
                position: 1,
                type_name: "int4".into(),
                type_expression: "integer".into(),
                native_type: 23,
                jdbc_type: jdbc::INTEGER,
                length: None,
                scale: None,
                optional: false,
                auto_incremented: true,
                generated: false,
                default_expression: Some("nextval('l1.t_id_seq'::regclass)".into()),
                enum_values: None,
            }
        );
        assert_eq!(
            (after.columns[1].length, after.columns[1].jdbc_type),
            (Some(10), jdbc::VARCHAR)
        );
        assert_eq!(after.columns[2].jdbc_type, jdbc::ARRAY);
        assert_eq!(
            after.columns[2].enum_values.as_deref(),
            Some(&["sad".to_owned(), "ok".to_owned()][..])
        );
        assert!(after.columns[3].generated);
        assert_eq!(
            after.columns[3].default_expression.as_deref(),
            Some("(id * 2)")
        );
        let previous = change.previous.unwrap();
        assert_eq!(previous.columns[1].name, "name");
        assert_eq!(previous.columns[1].position, 2);
    }

    #[test]
    fn renames_into_and_out_of_the_captured_set_and_drops() {
        let mut message = DdlMessage::parse(RENAME.as_bytes()).unwrap();
        if let Some(before) = message.before.as_mut() {
            before.schema = "staging".into();
        }
        let change = message
            .schema_change(&filter(&["l1.*"], &[]), position())
            .unwrap()
            .unwrap();
        assert_eq!(change.kind, TableChangeKind::Create);
        assert_eq!(change.previous, None);
        // Moved out (or never captured): nothing for this source.
        assert!(message
            .schema_change(&filter(&["l2.*"], &[]), position())
            .unwrap()
            .is_none());
        // Renamed within the captured set: an ALTER under the new name, the old one in previous.
        let mut renamed = DdlMessage::parse(RENAME.as_bytes()).unwrap();
        renamed.table = "u".into();
        if let Some(after) = renamed.after.as_mut() {
            after.table = "u".into();
        }
        let change = renamed
            .schema_change(&filter(&["l1.*"], &[]), position())
            .unwrap()
            .unwrap();
        assert_eq!(change.kind, TableChangeKind::Alter);
        assert_eq!(change.table_id(), r#""l1"."u""#);
        assert_eq!(change.previous.unwrap().table, "t");

        let drop = DdlMessage {
            kind: "DROP".into(),
            after: None,
            ..DdlMessage::parse(RENAME.as_bytes()).unwrap()
        };
        let change = drop
            .schema_change(&filter(&["l1.t"], &[]), position())
            .unwrap()
            .unwrap();
        assert_eq!(change.kind, TableChangeKind::Drop);
        assert_eq!(change.table_description, None);
        assert!(change.previous.is_some());
        let broken = DdlMessage {
            kind: "ALTER".into(),
            after: None,
            ..drop
        };
        assert!(broken
            .schema_change(&filter(&["l1.t"], &[]), position())
            .is_err());
        assert!(DdlMessage::parse(b"{").is_err());
    }

    #[test]
    fn jdbc_types_follow_debezium() {
        let cases = [
            ("int2", jdbc::SMALLINT),
            ("int4", jdbc::INTEGER),
            ("int8", jdbc::BIGINT),
            ("oid", jdbc::BIGINT),
            ("float4", jdbc::REAL),
            ("float8", jdbc::DOUBLE),
            ("money", jdbc::DOUBLE),
            ("numeric", jdbc::NUMERIC),
            ("bool", jdbc::BIT),
            ("bit", jdbc::BIT),
            ("bpchar", jdbc::CHAR),
            ("varchar", jdbc::VARCHAR),
            ("text", jdbc::VARCHAR),
            ("bytea", jdbc::BINARY),
            ("date", jdbc::DATE),
            ("timetz", jdbc::TIME),
            ("timestamptz", jdbc::TIMESTAMP),
            ("xml", jdbc::SQLXML),
            ("uuid", jdbc::OTHER),
            ("jsonb", jdbc::OTHER),
            ("varbit", jdbc::OTHER),
        ];
        for (name, code) in cases {
            assert_eq!(jdbc_type(name, true, "b", false), code, "{name}");
        }
        assert_eq!(jdbc_type("int4", true, "b", true), jdbc::ARRAY);
        assert_eq!(jdbc_type("mood", false, "e", false), jdbc::VARCHAR);
        assert_eq!(jdbc_type("address", false, "c", false), jdbc::STRUCT);
        assert_eq!(jdbc_type("citext", false, "b", false), jdbc::OTHER);
        assert_eq!(jdbc_type("int4range", true, "r", false), jdbc::OTHER);
    }

    #[test]
    fn modifiers_become_length_and_scale() {
        assert_eq!(length_and_scale("varchar", 14), (Some(10), None));
        assert_eq!(length_and_scale("bpchar", 5), (Some(1), None));
        assert_eq!(length_and_scale("numeric", 655_366), (Some(10), Some(2)));
        // numeric(5,-2): PostgreSQL 15 packs the negative scale in 11 bits.
        assert_eq!(
            length_and_scale("numeric", ((5 << 16) | 0x7fe) + 4),
            (Some(5), Some(-2))
        );
        assert_eq!(length_and_scale("bit", 3), (Some(3), None));
        assert_eq!(length_and_scale("timestamptz", 3), (None, Some(3)));
        assert_eq!(length_and_scale("interval", 0x7fff_0003), (None, Some(3)));
        assert_eq!(length_and_scale("interval", 0x7fff_ffff), (None, None));
        assert_eq!(length_and_scale("numeric", -1), (None, None));
        assert_eq!(length_and_scale("int4", -1), (None, None));
    }
}
