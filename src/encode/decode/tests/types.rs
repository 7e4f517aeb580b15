//! Every SPEC §5 type row, with edge values, from PostgreSQL text through the source's parser
//! and encoder and back to the text the sink sends.

use super::*;
use crate::event::types::parse_text;

/// A column type, the SQL type the sink gets, and (source text, expected cell) pairs; a
/// `None` source text is SQL NULL.
pub(super) type Case = (PgType, &'static str, Vec<(Option<&'static str>, Cell)>);

fn same(values: &[&'static str]) -> Vec<(Option<&'static str>, Cell)> {
    values.iter().map(|v| (Some(*v), text(v))).collect()
}

fn pairs(values: &[(&'static str, &'static str)]) -> Vec<(Option<&'static str>, Cell)> {
    values.iter().map(|(v, e)| (Some(*v), text(e))).collect()
}

fn array(element: PgType) -> PgType {
    PgType::Array(Box::new(element))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        (
            PgType::Bool,
            "boolean",
            pairs(&[("t", "true"), ("f", "false")]),
        ),
        (PgType::Int2, "smallint", same(&["-32768", "32767", "0"])),
        (
            PgType::Int4,
            "integer",
            same(&["-2147483648", "2147483647"]),
        ),
        (
            PgType::Int8,
            "bigint",
            same(&["-9223372036854775808", "9223372036854775807"]),
        ),
        (
            PgType::Float4,
            "real",
            pairs(&[
                ("0.1", "0.1"),
                ("1e-45", "1e-45"),
                // Read as f64 and narrowed, this one lands on the neighbouring f32.
                ("7.038531e-26", "7.038531e-26"),
                ("3.4028235e+38", "3.4028235e38"),
                ("-0", "-0.0"),
                ("NaN", "NaN"),
                ("Infinity", "Infinity"),
                ("-Infinity", "-Infinity"),
            ]),
        ),
        (
            PgType::Float8,
            "double precision",
            pairs(&[
                ("0.30000000000000004", "0.30000000000000004"),
                ("1.7976931348623157e+308", "1.7976931348623157e308"),
                ("5e-324", "5e-324"),
                // serde_json reads these one ULP off unless its float_roundtrip is on.
                ("1.0715660391465826e-75", "1.0715660391465826e-75"),
                ("-1.81996730402717e-179", "-1.81996730402717e-179"),
                ("-2.25", "-2.25"),
                ("NaN", "NaN"),
                ("-Infinity", "-Infinity"),
            ]),
        ),
        (
            PgType::Decimal {
                precision: 10,
                scale: 2,
            },
            "numeric(10,2)",
            pairs(&[
                ("123.45", "123.45"),
                ("-1.5", "-1.50"),
                ("0", "0.00"),
                ("-0.01", "-0.01"),
                ("-99999999.99", "-99999999.99"),
            ]),
        ),
        (
            PgType::Decimal {
                precision: 60,
                scale: 0,
            },
            "numeric(60,0)",
            same(&[
                "-123456789012345678901234567890123456789012345678901234567890",
                "340282366920938463463374607431768211456",
            ]),
        ),
        (
            PgType::VariableDecimal,
            "numeric",
            vec![
                (Some("1.50"), text("1.5")),
                (Some("-0.001"), text("-0.001")),
                (Some("12300"), text("12300")),
                (
                    Some("-1234567890123456789012345678901234567890.0123456789"),
                    text("-1234567890123456789012345678901234567890.0123456789"),
                ),
                // numeric NaN has no Debezium form: the source sends null.
                (Some("NaN"), Cell::Null),
            ],
        ),
        (
            PgType::Text,
            "text",
            same(&["héllo ✓", "", "quote\" back\\slash\nnew line", "NULL"]),
        ),
        (PgType::Bytea, "bytea", same(&["\\x0001ff", "\\x"])),
        (
            PgType::EncodedBytea {
                encoding: BinaryEncoding::Base64,
            },
            "bytea",
            same(&["\\x0001fbff", "\\x"]),
        ),
        (
            PgType::EncodedBytea {
                encoding: BinaryEncoding::Base64UrlSafe,
            },
            "bytea",
            same(&["\\x0001fbff", "\\x"]),
        ),
        (
            PgType::EncodedBytea {
                encoding: BinaryEncoding::Hex,
            },
            "bytea",
            same(&["\\x0001fbff", "\\x"]),
        ),
        (
            PgType::Date,
            "date",
            same(&[
                "2024-01-02",
                "0001-01-01",
                "0044-03-15 BC",
                "5874897-12-31",
                "infinity",
                "-infinity",
            ]),
        ),
        (
            PgType::Time,
            "time(6)",
            same(&["13:51:30.123456", "00:00:00", "23:59:59.999999", "24:00:00"]),
        ),
        (
            PgType::Timestamp,
            "timestamp(6)",
            same(&[
                "2016-11-04 13:51:30.123456",
                "1969-12-31 23:59:59.999999",
                "4713-12-31 23:59:59.999999 BC",
                "294247-01-01 23:59:59.999999",
                "infinity",
                "-infinity",
            ]),
        ),
        (
            PgType::Timestamptz { fraction_digits: 6 },
            "timestamptz",
            pairs(&[
                (
                    "2024-01-02 05:04:05.678901+02",
                    "2024-01-02T03:04:05.678901Z",
                ),
                (
                    "0044-03-15 12:00:00+00 BC",
                    "0044-03-15T12:00:00.000000Z BC",
                ),
                (
                    "0001-06-01 00:00:00+00 BC",
                    "0001-06-01T00:00:00.000000Z BC",
                ),
                ("10000-01-01 00:00:00+00", "10000-01-01T00:00:00.000000Z"),
                ("infinity", "infinity"),
                ("-infinity", "-infinity"),
            ]),
        ),
        (
            PgType::Timetz,
            "timetz",
            pairs(&[
                ("03:04:05.5+02", "01:04:05.5Z"),
                ("24:00:00+00", "24:00:00Z"),
            ]),
        ),
        (
            PgType::Interval,
            "interval",
            pairs(&[
                ("1 day 02:03:04.5", "93784500000 microseconds"),
                ("-00:00:01", "-1000000 microseconds"),
                ("00:00:00", "0 microseconds"),
            ]),
        ),
        (
            PgType::Uuid,
            "uuid",
            same(&["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
        ),
        (
            PgType::Json,
            "json",
            same(&[r#"{"a": [1, null], "b": "ü"}"#]),
        ),
        (PgType::Xml, "xml", same(&["<a>ü</a>"])),
        (
            PgType::Enum {
                type_name: "l1.mood".into(),
                labels: vec!["sad".into(), "ok".into()],
            },
            "text",
            same(&["ok"]),
        ),
        (
            PgType::Bit1,
            "boolean",
            pairs(&[("1", "true"), ("0", "false")]),
        ),
        (
            PgType::Bits { length: Some(12) },
            "bit varying",
            same(&["101000000001", "000000000000", "000000000001"]),
        ),
        // An unbounded varbit's length is not in the schema: leading zeros are lost.
        (
            PgType::Bits { length: None },
            "bit varying",
            pairs(&[("00101", "101"), ("1", "1")]),
        ),
        (
            array(PgType::Text),
            "text[]",
            same(&[
                r#"{"a b","x\"y",NULL,"NULL","",日本,"back\\slash","{}"}"#,
                "{}",
            ]),
        ),
        (
            array(PgType::Int4),
            "integer[]",
            pairs(&[
                ("{1,NULL,-3}", "{1,NULL,-3}"),
                ("{{1,2},{3,4}}", "{1,2,3,4}"),
            ]),
        ),
        (
            array(PgType::Decimal {
                precision: 5,
                scale: 2,
            }),
            "numeric(5,2)[]",
            same(&["{1.50,-0.01,NULL}"]),
        ),
        (
            array(PgType::VariableDecimal),
            "numeric[]",
            pairs(&[("{1.50,NULL,-7}", "{1.5,NULL,-7}")]),
        ),
        (
            array(PgType::Timestamp),
            "timestamp(6)[]",
            same(&[r#"{"2024-01-01 00:00:00","0044-03-15 12:00:00.500000 BC",infinity}"#]),
        ),
        (
            array(PgType::Date),
            "date[]",
            same(&[r#"{2024-01-02,"0044-03-15 BC",-infinity}"#]),
        ),
        (
            array(PgType::Bytea),
            "bytea[]",
            same(&[r#"{"\\x0a","\\x",NULL}"#]),
        ),
        (
            array(PgType::EncodedBytea {
                encoding: BinaryEncoding::Base64,
            }),
            "bytea[]",
            same(&[r#"{"\\xfbff","\\x",NULL}"#]),
        ),
        (
            array(PgType::Bool),
            "boolean[]",
            pairs(&[("{t,f}", "{true,false}")]),
        ),
        (
            array(PgType::Float8),
            "double precision[]",
            same(&["{NaN,-Infinity,1.5}"]),
        ),
        (
            array(PgType::Uuid),
            "uuid[]",
            same(&["{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"]),
        ),
        (
            array(PgType::Json),
            "json[]",
            same(&[r#"{"{\"a\": 1}",NULL}"#]),
        ),
        (
            array(PgType::Bits { length: Some(3) }),
            "bit varying[]",
            same(&["{101,000}"]),
        ),
        (
            PgType::Other {
                type_name: "tsrange".into(),
            },
            "text",
            same(&["[\"2024-01-01 00:00:00\",)"]),
        ),
        (PgType::Oid, "bigint", same(&["4000000000", "0"])),
        (
            PgType::Money { fraction_digits: 2 },
            "money",
            pairs(&[
                ("$1,234.11", "1234.11"),
                ("-$0.50", "-0.50"),
                ("$0.00", "0.00"),
            ]),
        ),
        (
            PgType::Point,
            "point",
            pairs(&[
                ("(1,2)", "(1.0,2.0)"),
                ("(1.5,-2.25)", "(1.5,-2.25)"),
                ("(1e+300,NaN)", "(1e300,NaN)"),
            ]),
        ),
        (
            array(PgType::Point),
            "point[]",
            pairs(&[(r#"{"(1,2)","(3,4)"}"#, r#"{"(1.0,2.0)","(3.0,4.0)"}"#)]),
        ),
        // Without the extensions on the target: ltree as text, hstore as its JSON in jsonb.
        (PgType::Ltree, "text", same(&["Top.Science", ""])),
        (
            PgType::Hstore,
            "jsonb",
            pairs(&[
                (r#""a"=>"1", "b"=>NULL"#, r#"{"a":"1","b":null}"#),
                ("", "{}"),
            ]),
        ),
        (
            PgType::HstoreMap,
            "jsonb",
            pairs(&[
                (r#""a"=>"1", "b"=>NULL"#, r#"{"a":"1","b":null}"#),
                ("", "{}"),
            ]),
        ),
        (
            array(PgType::HstoreMap),
            "jsonb[]",
            pairs(&[(r#"{"\"k\"=>\"v\"",NULL}"#, r#"{"{\"k\":\"v\"}",NULL}"#)]),
        ),
    ]
}

/// Table `t<index>`: an int key `id` and a nullable `v` of `pg_type`.
fn keyed_value_table(index: usize, pg_type: &PgType) -> Arc<TableSchema> {
    table(
        &format!("t{index}"),
        vec![
            column("id", PgType::Int4, false),
            column("v", pg_type.clone(), true),
        ],
        vec![0],
    )
}

#[tokio::test]
async fn extension_types_use_the_targets_own_types_when_it_has_them() {
    let target = TargetTypes {
        hstore: true,
        ltree: true,
    };
    let cases: [(PgType, &str, &str, &str); 7] = [
        (PgType::Ltree, "ltree", "Top.Science", "Top.Science"),
        (
            PgType::Hstore,
            "hstore",
            r#""a"=>"1", "b"=>NULL, "q\"x"=>"\\""#,
            r#""a"=>"1", "b"=>NULL, "q\"x"=>"\\""#,
        ),
        (PgType::Hstore, "hstore", "", ""),
        (
            array(PgType::Hstore),
            "hstore[]",
            r#"{"\"k\"=>\"v\""}"#,
            r#"{"\"k\"=>\"v\""}"#,
        ),
        (
            PgType::HstoreMap,
            "hstore",
            r#""a"=>"1", "b"=>NULL, "q\"x"=>"\\""#,
            r#""a"=>"1", "b"=>NULL, "q\"x"=>"\\""#,
        ),
        (PgType::HstoreMap, "hstore", "", ""),
        (
            array(PgType::HstoreMap),
            "hstore[]",
            r#"{"\"k\"=>\"v\"",NULL}"#,
            r#"{"\"k\"=>\"v\"",NULL}"#,
        ),
    ];
    for format in FORMATS {
        let mut harness = Harness::for_target(format, target).await;
        for (index, (pg_type, sql_type, source, expected)) in cases.iter().enumerate() {
            let table = keyed_value_table(index, pg_type);
            let value = parse_text(pg_type, source.as_bytes()).unwrap();
            let insert = event(&table, Op::Create, None, Some(vec![Value::Int(1), value]));
            let change = harness.round_trip(&insert).await;
            let context = format!("{format:?} {pg_type} {source:?}");
            assert_eq!(change.table.columns[1].sql_type, *sql_type, "{context}");
            assert_eq!(
                change.after,
                Some(vec![text("1"), text(expected)]),
                "{context}"
            );
        }
    }
}

#[tokio::test]
async fn every_type_round_trips_to_postgres_text() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        for (index, (pg_type, sql_type, values)) in cases().into_iter().enumerate() {
            let table = keyed_value_table(index, &pg_type);
            for (source, expected) in values {
                let value = match source {
                    Some(source) => parse_text(&pg_type, source.as_bytes()).unwrap(),
                    None => Value::Null,
                };
                let insert = event(&table, Op::Create, None, Some(vec![Value::Int(1), value]));
                let change = harness.round_trip(&insert).await;
                let context = format!("{format:?} {pg_type} {source:?}");
                let decoded = &change.table.columns[1];
                let enum_type = match &pg_type {
                    PgType::Enum { labels, .. } => Some(Arc::new(EnumType {
                        schema: Some("l1".into()),
                        name: "mood".into(),
                        labels: labels.clone(),
                    })),
                    _ => None,
                };
                assert_eq!(
                    decoded,
                    &SinkColumn {
                        enum_type,
                        ..sink_column("v", sql_type, true)
                    },
                    "{context}"
                );
                assert_eq!(change.after, Some(vec![text("1"), expected]), "{context}");
            }
        }
    }
}

#[tokio::test]
async fn not_null_columns_of_every_type_decode_without_a_union() {
    let cases = cases();
    let columns: Vec<Column> = cases
        .iter()
        .enumerate()
        .map(|(index, (pg_type, _, _))| column(&format!("c{index}"), pg_type.clone(), false))
        .collect();
    let table = table("wide", columns, vec![1, 0]);
    let mut row = Vec::new();
    let mut expected = Vec::new();
    for (pg_type, _, values) in &cases {
        let (source, cell) = values
            .iter()
            .find(|(source, cell)| source.is_some() && *cell != Cell::Null)
            .unwrap();
        row.push(parse_text(pg_type, source.unwrap().as_bytes()).unwrap());
        expected.push(cell.clone());
    }
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let change = harness
            .round_trip(&event(&table, Op::Create, None, Some(row.clone())))
            .await;
        assert_eq!(change.after.as_ref(), Some(&expected), "{format:?}");
        assert_eq!(change.table.key, vec![1, 0]);
        assert!(change.table.columns.iter().all(|c| !c.optional));
    }
}
