//! Column types from the catalog: the `pg_type` facts the source loads when a Relation message
//! arrives, and how they pick a [`PgType`]. The query text lives here; the caller runs it.

use std::collections::HashMap;

use super::PgType;

/// Loads the `pg_type` rows for the type OIDs in `$1::oid[]` and, recursively, for their array
/// element and domain base types. Columns, in order, with their SQL types:
/// `oid` (oid → u32), `name` (text), `kind` (`"char"` → i8, `typtype`), `category`
/// (`"char"` → i8, `typcategory`), `element_oid` (oid), `base_oid` (oid),
/// `base_type_modifier` (int4, `typtypmod`), `enum_labels` (text[], in sort order, empty for
/// non-enums), `qualified_name` (text, `schema.name` quoted where SQL needs it). Feed them to
/// [`catalog_types_from_rows`] as [`CatalogTypeRow`]s.
pub const CATALOG_TYPES_SQL: &str = "\
WITH RECURSIVE wanted(oid) AS (
    SELECT unnest($1::oid[])
  UNION
    SELECT related.oid
    FROM wanted
    JOIN pg_catalog.pg_type t ON t.oid = wanted.oid,
    unnest(ARRAY[t.typelem, t.typbasetype]) AS related(oid)
    WHERE related.oid <> 0
)
SELECT t.oid,
       t.typname::text AS name,
       t.typtype AS kind,
       t.typcategory AS category,
       t.typelem AS element_oid,
       t.typbasetype AS base_oid,
       t.typtypmod AS base_type_modifier,
       COALESCE(
           (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
            FROM pg_catalog.pg_enum e
            WHERE e.enumtypid = t.oid),
           ARRAY[]::text[]) AS enum_labels,
       format('%I.%I', n.nspname, t.typname) AS qualified_name
FROM wanted
JOIN pg_catalog.pg_type t ON t.oid = wanted.oid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace";

/// One row of [`CATALOG_TYPES_SQL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTypeRow {
    /// `pg_type.oid`.
    pub oid: u32,
    /// `typname`.
    pub name: String,
    /// `typtype` as an ASCII byte.
    pub kind: u8,
    /// `typcategory` as an ASCII byte.
    pub category: u8,
    /// `typelem`, 0 if none.
    pub element_oid: u32,
    /// `typbasetype`, 0 unless a domain.
    pub base_oid: u32,
    /// `typtypmod`: a domain's type modifier, else -1.
    pub base_type_modifier: i32,
    /// Enum labels in `enumsortorder`.
    pub enum_labels: Vec<String>,
    /// `schema.name`, each part quoted where SQL needs it (`format('%I.%I', …)`).
    pub qualified_name: String,
}

/// What the catalog says about a column's type (pg_type), enough to pick its PgType.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogType {
    /// `pg_type.oid`.
    pub oid: u32,
    /// `typname`, e.g. "int4", "numeric", "citext", "_int4", "mood".
    pub name: String,
    /// `typtype`: b'b' base, b'e' enum, b'd' domain, b'c' composite, b'r' range, b'm' multirange, b'p' pseudo.
    pub kind: u8,
    /// `typcategory`: b'A' for arrays.
    pub category: u8,
    /// Arrays: the element type.
    pub element: Option<Box<CatalogType>>,
    /// Domains: the base type (with the domain's typmod in `base_type_modifier`).
    pub base: Option<Box<CatalogType>>,
    /// Domains: `typtypmod`.
    pub base_type_modifier: i32,
    /// Enums: labels in sort order.
    pub enum_labels: Vec<String>,
    /// `schema.name`, quoted where SQL needs it, e.g. `l1.mood`.
    pub qualified_name: String,
}

/// Far beyond any real chain of domains and arrays; stops a malformed row set from looping.
const MAX_TYPE_DEPTH: usize = 32;

/// Resolves rows into types keyed by OID, with element and base types linked in; a reference to
/// an OID missing from the rows is left as `None`.
pub fn catalog_types_from_rows(
    rows: impl IntoIterator<Item = CatalogTypeRow>,
) -> HashMap<u32, CatalogType> {
    let rows: HashMap<u32, CatalogTypeRow> = rows.into_iter().map(|row| (row.oid, row)).collect();
    rows.keys()
        .filter_map(|&oid| Some((oid, resolve(&rows, oid, 0)?)))
        .collect()
}

fn resolve(rows: &HashMap<u32, CatalogTypeRow>, oid: u32, depth: usize) -> Option<CatalogType> {
    if depth > MAX_TYPE_DEPTH {
        return None;
    }
    let row = rows.get(&oid)?;
    let linked = |related: u32| {
        (related != 0)
            .then(|| resolve(rows, related, depth + 1))
            .flatten()
            .map(Box::new)
    };
    Some(CatalogType {
        oid: row.oid,
        name: row.name.clone(),
        kind: row.kind,
        category: row.category,
        element: linked(row.element_oid),
        base: linked(row.base_oid),
        base_type_modifier: row.base_type_modifier,
        enum_labels: row.enum_labels.clone(),
        qualified_name: row.qualified_name.clone(),
    })
}

/// The precision of a time type declared without one.
const DEFAULT_TIME_PRECISION: u32 = 6;

/// `VARHDRSZ`, which numeric's type modifier carries on top of precision and scale.
const NUMERIC_TYPMOD_OFFSET: i32 = 4;

impl PgType {
    /// Picks the family for a column of this type with this atttypmod.
    ///
    /// Domains take their base type's family, with the domain's own type modifier when it has
    /// one (a domain column's atttypmod is -1). Built-in and extension types are recognised by
    /// `typname` alone, whatever their schema. `int2vector`/`oidvector` look like arrays in the
    /// catalog but print space-separated, so they stay `Other`.
    pub fn from_catalog(ty: &CatalogType, type_modifier: i32) -> PgType {
        match (ty.kind, &ty.base, &ty.element) {
            (b'd', Some(base), _) => {
                let modifier = if ty.base_type_modifier != -1 {
                    ty.base_type_modifier
                } else {
                    type_modifier
                };
                PgType::from_catalog(base, modifier)
            }
            (b'e', _, _) => PgType::Enum {
                type_name: ty.qualified_name.clone(),
                labels: ty.enum_labels.clone(),
            },
            (b'b', _, Some(element))
                if ty.category == b'A'
                    && !matches!(ty.name.as_str(), "int2vector" | "oidvector") =>
            {
                // An array column's atttypmod is its element's (numeric(10,2)[]).
                PgType::Array(Box::new(PgType::from_catalog(element, type_modifier)))
            }
            (b'b', _, _) => base_type(&ty.name, type_modifier),
            _ => PgType::Other {
                type_name: ty.name.clone(),
            },
        }
    }
}

fn base_type(name: &str, type_modifier: i32) -> PgType {
    match name {
        "bool" => PgType::Bool,
        "int2" => PgType::Int2,
        "int4" => PgType::Int4,
        "int8" => PgType::Int8,
        "oid" => PgType::Oid,
        "money" => PgType::Money {
            fraction_digits: super::MONEY_FRACTION_DIGITS,
        },
        "point" => PgType::Point,
        "ltree" => PgType::Ltree,
        "hstore" => PgType::Hstore,
        "float4" => PgType::Float4,
        "float8" => PgType::Float8,
        "numeric" => numeric(type_modifier),
        "bpchar" | "varchar" | "text" | "name" | "char" | "citext" | "inet" | "cidr"
        | "macaddr" | "macaddr8" => PgType::Text,
        "bytea" => PgType::Bytea,
        "date" => PgType::Date,
        "time" => PgType::Time,
        "timestamp" => PgType::Timestamp,
        // The type modifier of time types is the declared precision (pgjdbc's scale).
        "timestamptz" => PgType::Timestamptz {
            fraction_digits: u32::try_from(type_modifier)
                .map_or(DEFAULT_TIME_PRECISION, |p| p.min(DEFAULT_TIME_PRECISION)),
        },
        "timetz" => PgType::Timetz,
        "interval" => PgType::Interval,
        "uuid" => PgType::Uuid,
        "json" | "jsonb" => PgType::Json,
        "xml" => PgType::Xml,
        // bit's and varbit's type modifier is the length itself; varbit(1) is a boolean too in
        // Debezium (debezium/dbz#2045).
        "bit" | "varbit" => match u32::try_from(type_modifier) {
            Ok(1) => PgType::Bit1,
            Ok(length) if length > 1 => PgType::Bits {
                length: Some(length),
            },
            _ => PgType::Bits { length: None },
        },
        _ => PgType::Other {
            type_name: name.to_owned(),
        },
    }
}

/// numeric's typmod is `((precision << 16) | scale) + 4`; since PostgreSQL 15 the scale is an
/// 11-bit signed number. No typmod, or a negative scale, leaves the scale to each value.
fn numeric(type_modifier: i32) -> PgType {
    let Some(packed) = type_modifier
        .checked_sub(NUMERIC_TYPMOD_OFFSET)
        .filter(|packed| *packed >= 0)
    else {
        return PgType::VariableDecimal;
    };
    let precision = (packed >> 16) & 0xffff;
    let scale = ((packed & 0x7ff) ^ 0x400) - 0x400;
    match (u32::try_from(precision), u32::try_from(scale)) {
        (Ok(precision), Ok(scale)) => PgType::Decimal { precision, scale },
        _ => PgType::VariableDecimal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(oid: u32, name: &str, kind: u8, category: u8) -> CatalogTypeRow {
        CatalogTypeRow {
            oid,
            name: name.to_owned(),
            kind,
            category,
            element_oid: 0,
            base_oid: 0,
            base_type_modifier: -1,
            enum_labels: vec![],
            qualified_name: format!("public.{name}"),
        }
    }

    /// The rows PostgreSQL 15 returned for a test table's column types (see the module tests).
    fn catalog() -> HashMap<u32, CatalogType> {
        catalog_types_from_rows([
            row(23, "int4", b'b', b'N'),
            row(1700, "numeric", b'b', b'N'),
            CatalogTypeRow {
                base_oid: 1700,
                base_type_modifier: 786_438,
                ..row(16498, "money2", b'd', b'N')
            },
            CatalogTypeRow {
                element_oid: 16490,
                ..row(16489, "_mood", b'b', b'A')
            },
            row(1562, "varbit", b'b', b'V'),
            row(1560, "bit", b'b', b'V'),
            row(16385, "citext", b'b', b'S'),
            CatalogTypeRow {
                base_oid: 16498,
                ..row(16500, "d2", b'd', b'N')
            },
            CatalogTypeRow {
                base_oid: 1007,
                ..row(16502, "intarr", b'd', b'A')
            },
            CatalogTypeRow {
                element_oid: 16498,
                ..row(16497, "_money2", b'b', b'A')
            },
            row(1184, "timestamptz", b'b', b'D'),
            CatalogTypeRow {
                element_oid: 21,
                ..row(22, "int2vector", b'b', b'A')
            },
            row(3908, "tsrange", b'r', b'R'),
            row(21, "int2", b'b', b'N'),
            CatalogTypeRow {
                enum_labels: vec!["sad".into(), "ok".into(), "happy".into()],
                ..row(16490, "mood", b'e', b'E')
            },
            CatalogTypeRow {
                element_oid: 23,
                ..row(1007, "_int4", b'b', b'A')
            },
        ])
    }

    fn column(catalog: &HashMap<u32, CatalogType>, oid: u32, typmod: i32) -> PgType {
        PgType::from_catalog(catalog.get(&oid).expect("type in catalog"), typmod)
    }

    #[test]
    fn rows_link_elements_and_bases() {
        let catalog = catalog();
        let d2 = catalog.get(&16500).unwrap();
        let money2 = d2.base.as_deref().unwrap();
        assert_eq!(money2.name, "money2");
        assert_eq!(money2.base.as_deref().unwrap().name, "numeric");
        let moods = catalog.get(&16489).unwrap();
        assert_eq!(
            moods.element.as_deref().unwrap().enum_labels,
            vec!["sad", "ok", "happy"]
        );
        assert_eq!(catalog.get(&23).unwrap().element, None);
        // A dangling reference is dropped, not an error.
        let partial = catalog_types_from_rows([CatalogTypeRow {
            element_oid: 99,
            ..row(1007, "_int4", b'b', b'A')
        }]);
        assert_eq!(partial.get(&1007).unwrap().element, None);
        // A cycle cannot hang the resolver.
        let looped = catalog_types_from_rows([CatalogTypeRow {
            base_oid: 7,
            ..row(7, "loop", b'd', b'N')
        }]);
        assert_eq!(
            PgType::from_catalog(looped.get(&7).unwrap(), -1),
            PgType::Other {
                type_name: "loop".into()
            }
        );
    }

    #[test]
    fn families_from_the_catalog() {
        let catalog = catalog();
        assert_eq!(column(&catalog, 23, -1), PgType::Int4);
        assert_eq!(column(&catalog, 21, -1), PgType::Int2);
        // numeric(10,3): atttypmod 655367.
        assert_eq!(
            column(&catalog, 1700, 655_367),
            PgType::Decimal {
                precision: 10,
                scale: 3
            }
        );
        assert_eq!(column(&catalog, 1700, -1), PgType::VariableDecimal);
        // numeric(5,-1): atttypmod 329731, scale 0x7ff as 11-bit signed.
        assert_eq!(column(&catalog, 1700, 329_731), PgType::VariableDecimal);
        // Domain over numeric(12,2), and a domain over that domain.
        let money = PgType::Decimal {
            precision: 12,
            scale: 2,
        };
        assert_eq!(column(&catalog, 16498, -1), money);
        assert_eq!(column(&catalog, 16500, -1), money);
        assert_eq!(column(&catalog, 16497, -1), PgType::Array(Box::new(money)));
        assert_eq!(
            column(&catalog, 16489, -1),
            PgType::Array(Box::new(PgType::Enum {
                type_name: "public.mood".into(),
                labels: vec!["sad".into(), "ok".into(), "happy".into()]
            }))
        );
        assert_eq!(
            column(&catalog, 16502, -1),
            PgType::Array(Box::new(PgType::Int4))
        );
        assert_eq!(column(&catalog, 1562, -1), PgType::Bits { length: None });
        assert_eq!(column(&catalog, 1562, 1), PgType::Bit1);
        assert_eq!(
            column(&catalog, 1562, 33),
            PgType::Bits { length: Some(33) }
        );
        assert_eq!(column(&catalog, 1560, 1), PgType::Bit1);
        assert_eq!(column(&catalog, 1560, 5), PgType::Bits { length: Some(5) });
        assert_eq!(column(&catalog, 16385, -1), PgType::Text);
        assert_eq!(
            column(&catalog, 1184, 3),
            PgType::Timestamptz { fraction_digits: 3 }
        );
        assert_eq!(
            column(&catalog, 1184, -1),
            PgType::Timestamptz { fraction_digits: 6 }
        );
        assert_eq!(
            column(&catalog, 22, -1),
            PgType::Other {
                type_name: "int2vector".into()
            }
        );
        assert_eq!(
            column(&catalog, 3908, -1),
            PgType::Other {
                type_name: "tsrange".into()
            }
        );
    }

    #[test]
    fn builtin_names() {
        let base = |name: &str, typmod| {
            PgType::from_catalog(
                &catalog_types_from_rows([row(1, name, b'b', b'U')])
                    .remove(&1)
                    .unwrap(),
                typmod,
            )
        };
        let cases = [
            ("bool", PgType::Bool),
            ("int8", PgType::Int8),
            ("float4", PgType::Float4),
            ("float8", PgType::Float8),
            ("bpchar", PgType::Text),
            ("varchar", PgType::Text),
            ("text", PgType::Text),
            ("name", PgType::Text),
            ("char", PgType::Text),
            ("inet", PgType::Text),
            ("cidr", PgType::Text),
            ("macaddr", PgType::Text),
            ("macaddr8", PgType::Text),
            ("bytea", PgType::Bytea),
            ("date", PgType::Date),
            ("time", PgType::Time),
            ("timestamp", PgType::Timestamp),
            ("timetz", PgType::Timetz),
            ("interval", PgType::Interval),
            ("uuid", PgType::Uuid),
            ("json", PgType::Json),
            ("jsonb", PgType::Json),
            ("xml", PgType::Xml),
            ("oid", PgType::Oid),
            ("money", PgType::Money { fraction_digits: 2 }),
            ("point", PgType::Point),
            ("ltree", PgType::Ltree),
            ("hstore", PgType::Hstore),
        ];
        for (name, expected) in cases {
            assert_eq!(base(name, -1), expected, "{name}");
        }
        // numeric(1000,0) and numeric(38,38).
        assert_eq!(
            base("numeric", (1000 << 16) + 4),
            PgType::Decimal {
                precision: 1000,
                scale: 0
            }
        );
        assert_eq!(
            base("numeric", ((38 << 16) | 38) + 4),
            PgType::Decimal {
                precision: 38,
                scale: 38
            }
        );
        // numeric(3,1000) (PostgreSQL 15 allows scale > precision, up to 1000).
        assert_eq!(
            base("numeric", ((3 << 16) | 1000) + 4),
            PgType::Decimal {
                precision: 3,
                scale: 1000
            }
        );
        // numeric(10,-5).
        assert_eq!(
            base("numeric", ((10 << 16) | (0x800 - 5)) + 4),
            PgType::VariableDecimal
        );
        // Composite, pseudo and multirange types keep their names.
        for (kind, name) in [
            (b'c', "address"),
            (b'p', "record"),
            (b'm', "int4multirange"),
        ] {
            let types = catalog_types_from_rows([row(1, name, kind, b'C')]);
            assert_eq!(
                PgType::from_catalog(types.get(&1).unwrap(), -1),
                PgType::Other {
                    type_name: name.into()
                }
            );
        }
    }

    #[test]
    fn query_text_selects_the_row_fields_in_order() {
        let select = CATALOG_TYPES_SQL
            .split_once("\nSELECT ")
            .map(|(_, rest)| rest)
            .unwrap();
        let columns = [
            "t.oid",
            "AS name",
            "AS kind",
            "AS category",
            "AS element_oid",
            "AS base_oid",
            "AS base_type_modifier",
            "AS enum_labels",
        ];
        let mut from = 0;
        for column in columns {
            let at = select[from..].find(column).expect(column);
            from += at + column.len();
        }
        assert!(CATALOG_TYPES_SQL.contains("$1::oid[]"));
        assert_eq!(
            CATALOG_TYPES_SQL.matches('(').count(),
            CATALOG_TYPES_SQL.matches(')').count()
        );
    }
}
