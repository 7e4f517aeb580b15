//! Encoder tests: Avro datums decoded back with `apache_avro` against the derived schemas, and
//! JSON compared byte for byte.

use std::sync::Arc;

use apache_avro::types::Value as Avro;

use super::*;
use crate::event::{
    PgType, ReplicaIdentity, SnapshotMarker, TransactionBlock, TransactionStatus,
    UNAVAILABLE_VALUE_PLACEHOLDER,
};
use crate::lsn::Lsn;

const PREFIX: &str = "shop";
/// 2024-01-02T03:04:05.678901Z.
const COMMIT_US: i64 = 1_704_164_645_678_901;
const PROCESSED_US: i64 = 1_704_164_646_000_123;

/// A column with no catalog facts beyond its type and nullability.
pub(super) fn column(name: &str, pg_type: PgType, optional: bool) -> Column {
    Column {
        name: name.to_string(),
        type_oid: 0,
        type_modifier: -1,
        pg_type,
        optional,
        in_identity: false,
        default: None,
    }
}

fn table(name: &str, columns: Vec<Column>, key: Vec<usize>) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        relation_id: 16_384,
        schema: "public".to_string(),
        table: name.to_string(),
        columns,
        key,
        identity: ReplicaIdentity::Default,
    })
}

fn position() -> SourcePosition {
    SourcePosition {
        commit_ts_us: COMMIT_US,
        txid: Some(771),
        lsn: Some(Lsn(24_023_200)),
        previous_commit: Some(Lsn(24_023_128)),
        snapshot: SnapshotMarker::False,
    }
}

fn event(
    table: &Arc<TableSchema>,
    op: Op,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
) -> ChangeEvent {
    ChangeEvent {
        table: Arc::clone(table),
        op,
        before,
        after,
        source: position(),
        transaction: Some(TransactionBlock {
            id: "771:24023128".to_string(),
            total_order: 3,
            data_collection_order: 2,
        }),
        key_change: None,
    }
}

fn blocks() -> Blocks {
    Blocks {
        source: fixed_schema("source.avsc", SOURCE_AVSC).unwrap(),
        transaction: fixed_schema("transaction-block.avsc", TRANSACTION_BLOCK_AVSC).unwrap(),
    }
}

fn source_block<'a>(table: &'a TableSchema, position: &'a SourcePosition) -> SourceBlock<'a> {
    SourceBlock {
        name: PREFIX,
        db: "shopdb",
        schema: &table.schema,
        table: &table.table,
        position,
    }
}

fn decode(schema: &apache_avro::Schema, bytes: &[u8]) -> Avro {
    let mut reader = bytes;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None).unwrap();
    assert!(reader.is_empty(), "{} bytes left over", reader.len());
    value
}

fn record(fields: Vec<(&str, Avro)>) -> Avro {
    Avro::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
    )
}

fn some(value: Avro) -> Avro {
    Avro::Union(1, Box::new(value))
}

fn null() -> Avro {
    Avro::Union(0, Box::new(Avro::Null))
}

fn string(text: &str) -> Avro {
    Avro::String(text.to_string())
}

fn avro_source() -> Avro {
    record(vec![
        ("version", string(env!("CARGO_PKG_VERSION"))),
        ("connector", string("postgresql")),
        ("name", string(PREFIX)),
        ("ts_ms", Avro::Long(1_704_164_645_678)),
        ("snapshot", Avro::Union(0, Box::new(string("false")))),
        ("db", string("shopdb")),
        ("sequence", some(string(r#"["24023128","24023200"]"#))),
        ("ts_us", some(Avro::Long(COMMIT_US))),
        ("ts_ns", some(Avro::Long(COMMIT_US * 1000))),
        ("schema", string("public")),
        ("table", string("every_type")),
        ("txId", some(Avro::Long(771))),
        ("lsn", some(Avro::Long(24_023_200))),
        ("xmin", null()),
        ("origin", null()),
        ("origin_lsn", null()),
    ])
}

fn avro_tail(op: &str) -> Vec<(&'static str, Avro)> {
    vec![
        ("source", avro_source()),
        (
            "transaction",
            some(record(vec![
                ("id", string("771:24023128")),
                ("total_order", Avro::Long(3)),
                ("data_collection_order", Avro::Long(2)),
            ])),
        ),
        ("op", Avro::String(op.to_string())),
        ("ts_ms", some(Avro::Long(1_704_164_646_000))),
        ("ts_us", some(Avro::Long(PROCESSED_US))),
        ("ts_ns", some(Avro::Long(PROCESSED_US * 1000))),
    ]
}

fn decimal(bytes: &[u8]) -> Avro {
    Avro::Decimal(apache_avro::Decimal::from(bytes.to_vec()))
}

fn variable_decimal(scale: i32, bytes: &[u8]) -> Avro {
    record(vec![
        ("scale", Avro::Int(scale)),
        ("value", Avro::Bytes(bytes.to_vec())),
    ])
}

/// One NOT NULL and one nullable column of every type family.
fn every_type_table() -> Arc<TableSchema> {
    let types = vec![
        ("bool", PgType::Bool),
        ("i2", PgType::Int2),
        ("i4", PgType::Int4),
        ("i8", PgType::Int8),
        ("f4", PgType::Float4),
        ("f8", PgType::Float8),
        (
            "price",
            PgType::Decimal {
                precision: 10,
                scale: 2,
            },
        ),
        ("amount", PgType::VariableDecimal),
        ("text", PgType::Text),
        ("bytea", PgType::Bytea),
        ("day", PgType::Date),
        ("at", PgType::Time),
        ("ts", PgType::Timestamp),
        ("tstz", PgType::Timestamptz { fraction_digits: 6 }),
        ("ttz", PgType::Timetz),
        ("dur", PgType::Interval),
        ("uid", PgType::Uuid),
        ("doc", PgType::Json),
        ("xml", PgType::Xml),
        (
            "mood",
            PgType::Enum {
                type_name: "l1.mood".into(),
                labels: vec!["sad".into(), "ok".into()],
            },
        ),
        ("flag", PgType::Bit1),
        ("bits", PgType::Bits { length: Some(12) }),
        ("tags", PgType::Array(Box::new(PgType::Text))),
        (
            "point",
            PgType::Other {
                type_name: "point".into(),
            },
        ),
    ];
    let mut columns = Vec::new();
    for (name, ty) in types {
        columns.push(column(&format!("{name}_req"), ty.clone(), false));
        columns.push(column(&format!("{name}_opt"), ty, true));
    }
    table("every_type", columns, vec![4])
}

/// A value per type family, in `every_type_table` order, with its expected Avro decoding.
fn every_type_values() -> Vec<(Value, Avro)> {
    vec![
        (Value::Bool(true), Avro::Boolean(true)),
        (Value::Int(-7), Avro::Int(-7)),
        (Value::Int(42), Avro::Int(42)),
        (Value::Long(-9_000_000_000), Avro::Long(-9_000_000_000)),
        (Value::Float(1.5), Avro::Float(1.5)),
        (Value::Double(-2.25), Avro::Double(-2.25)),
        (
            Value::Decimal {
                unscaled: vec![0x30, 0x39],
                scale: 2,
            },
            decimal(&[0x30, 0x39]),
        ),
        (
            Value::VariableDecimal {
                unscaled: vec![0xff, 0x85],
                scale: 3,
            },
            variable_decimal(3, &[0xff, 0x85]),
        ),
        (Value::String("héllo".into()), string("héllo")),
        (Value::Bytes(vec![0, 1, 255]), Avro::Bytes(vec![0, 1, 255])),
        (Value::Int(19_724), Avro::Int(19_724)),
        (Value::Long(3_723_000_004), Avro::Long(3_723_000_004)),
        (
            Value::Long(1_704_164_645_678_901),
            Avro::Long(1_704_164_645_678_901),
        ),
        (
            Value::String("2024-01-02T03:04:05.678901Z".into()),
            string("2024-01-02T03:04:05.678901Z"),
        ),
        (Value::String("03:04:05Z".into()), string("03:04:05Z")),
        (Value::Long(86_400_000_000), Avro::Long(86_400_000_000)),
        (
            Value::String("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
            string("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        (Value::String(r#"{"a":1}"#.into()), string(r#"{"a":1}"#)),
        (Value::String("<a/>".into()), string("<a/>")),
        (Value::String("ok".into()), string("ok")),
        (Value::Bool(false), Avro::Boolean(false)),
        (
            Value::Bytes(vec![0x0a, 0xbc]),
            Avro::Bytes(vec![0x0a, 0xbc]),
        ),
        (
            Value::Array(vec![Value::String("x".into()), Value::Null]),
            Avro::Array(vec![some(string("x")), null()]),
        ),
        (Value::String("(1,2)".into()), string("(1,2)")),
    ]
}

fn avro_schema(table: &TableSchema) -> (apache_avro::Schema, apache_avro::Schema) {
    let topic = format!("{PREFIX}.{}.{}", table.schema, table.table);
    let schemas = derive_table(table, &topic, Format::Avro, &blocks()).unwrap();
    let key = apache_avro::Schema::parse_str(&schema::to_avro_json(&schemas.key.unwrap())).unwrap();
    let envelope =
        apache_avro::Schema::parse_str(&schema::to_avro_json(&schemas.envelope)).unwrap();
    (key, envelope)
}

fn avro_envelope(event: &ChangeEvent) -> Vec<u8> {
    let mut out = Vec::new();
    avro::write_envelope(
        &mut out,
        event,
        &source_block(&event.table, &event.source),
        PROCESSED_US,
    )
    .unwrap();
    out
}

#[test]
fn avro_writes_every_value_kind_nullable_and_not() {
    let table = every_type_table();
    let (key_schema, envelope_schema) = avro_schema(&table);
    let values = every_type_values();
    let mut row = Vec::new();
    let mut expected = Vec::new();
    for (value, avro) in &values {
        row.push(value.clone());
        row.push(value.clone());
        expected.push(avro.clone());
        expected.push(some(avro.clone()));
    }
    // The nullable text column holds NULL instead.
    let text_opt = table
        .columns
        .iter()
        .position(|c| c.name == "text_opt")
        .unwrap();
    row[text_opt] = Value::Null;
    expected[text_opt] = null();
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let after = record(names.iter().copied().zip(expected).collect());

    let insert = event(&table, Op::Create, None, Some(row.clone()));
    let mut fields = vec![("before", null()), ("after", some(after))];
    fields.extend(avro_tail("c"));
    assert_eq!(
        decode(&envelope_schema, &avro_envelope(&insert)),
        record(fields)
    );

    let mut key = Vec::new();
    avro::write_key(&mut key, &table, &row).unwrap();
    assert_eq!(
        decode(&key_schema, &key),
        record(vec![("i4_req", Avro::Int(42))])
    );
}

#[test]
fn avro_writes_absent_columns_as_null_or_zero() {
    let table = every_type_table();
    let (_, envelope_schema) = avro_schema(&table);
    let mut before = vec![Value::Absent; table.columns.len()];
    before[4] = Value::Int(42);
    let zeros = vec![
        Avro::Boolean(false),
        Avro::Int(0),
        Avro::Int(42),
        Avro::Long(0),
        Avro::Float(0.0),
        Avro::Double(0.0),
        decimal(&[0]),
        variable_decimal(0, &[0]),
        string(""),
        Avro::Bytes(vec![]),
        Avro::Int(0),
        Avro::Long(0),
        Avro::Long(0),
        string("1970-01-01T00:00:00Z"),
        string("00:00:00Z"),
        Avro::Long(0),
        string(""),
        string(""),
        string(""),
        string(""),
        Avro::Boolean(false),
        Avro::Bytes(vec![]),
        Avro::Array(vec![]),
        string(""),
    ];
    let expected: Vec<(&str, Avro)> = table
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let value = if column.optional {
                null()
            } else {
                zeros[index / 2].clone()
            };
            (column.name.as_str(), value)
        })
        .collect();
    let delete = event(&table, Op::Delete, Some(before), None);
    let mut fields = vec![("before", some(record(expected))), ("after", null())];
    fields.extend(avro_tail("d"));
    assert_eq!(
        decode(&envelope_schema, &avro_envelope(&delete)),
        record(fields)
    );
}

#[test]
fn avro_writes_unavailable_values_as_the_placeholder() {
    let ph = UNAVAILABLE_VALUE_PLACEHOLDER;
    let table = table(
        "toasty",
        vec![
            column("id", PgType::Int4, false),
            column("body", PgType::Text, false),
            column("blob", PgType::Bytea, true),
            column(
                "price",
                PgType::Decimal {
                    precision: 60,
                    scale: 0,
                },
                true,
            ),
            column("tags", PgType::Array(Box::new(PgType::Json)), true),
            column("ids", PgType::Array(Box::new(PgType::Int8)), false),
        ],
        vec![0],
    );
    let (_, envelope_schema) = avro_schema(&table);
    let mut after = vec![Value::Int(1)];
    after.extend(std::iter::repeat_n(Value::Unavailable, 5));
    let update = event(&table, Op::Update, None, Some(after));
    let bytes = avro_envelope(&update);
    let Avro::Record(fields) = decode(&envelope_schema, &bytes) else {
        panic!("not a record");
    };
    let ph_longs = ph.bytes().map(|b| some(Avro::Long(i64::from(b)))).collect();
    assert_eq!(
        fields[1].1,
        some(record(vec![
            ("id", Avro::Int(1)),
            ("body", string(ph)),
            ("blob", some(Avro::Bytes(ph.as_bytes().to_vec()))),
            ("price", some(decimal(ph.as_bytes()))),
            ("tags", some(Avro::Array(vec![some(string(ph))]))),
            ("ids", Avro::Array(ph_longs)),
        ]))
    );
}

#[test]
fn avro_envelopes_of_updates_and_truncates() {
    let table = table(
        "every_type",
        vec![
            column("id", PgType::Int4, false),
            column("name", PgType::Text, true),
        ],
        vec![0],
    );
    let (_, envelope_schema) = avro_schema(&table);
    let row = |id: i32, name: &str| vec![Value::Int(id), Value::String(name.into())];
    let image = |id: i32, name: &str| {
        some(record(vec![
            ("id", Avro::Int(id)),
            ("name", some(string(name))),
        ]))
    };
    let update = event(&table, Op::Update, Some(row(1, "a")), Some(row(1, "b")));
    let mut fields = vec![("before", image(1, "a")), ("after", image(1, "b"))];
    fields.extend(avro_tail("u"));
    assert_eq!(
        decode(&envelope_schema, &avro_envelope(&update)),
        record(fields)
    );

    let mut truncate = event(&table, Op::Truncate, None, None);
    truncate.transaction = None;
    let mut fields = vec![("before", null()), ("after", null())];
    fields.extend(avro_tail("t"));
    fields[3] = ("transaction", null());
    assert_eq!(
        decode(&envelope_schema, &avro_envelope(&truncate)),
        record(fields)
    );
}

#[test]
fn avro_names_are_sanitized_and_keep_the_column_name() {
    let table = Arc::new(TableSchema {
        schema: "my-schema".into(),
        ..(*table(
            "2024 orders",
            vec![
                column("order id", PgType::Int4, false),
                column("1st", PgType::Text, true),
                column("n um", PgType::VariableDecimal, true),
            ],
            vec![0],
        ))
        .clone()
    });
    let topic = "shop.my-schema.2024_orders";
    let schemas = derive_table(&table, topic, Format::Avro, &blocks()).unwrap();
    assert_eq!(
        schema::to_avro_json(&schemas.key.unwrap()),
        concat!(
            r#"{"type":"record","name":"Key","namespace":"shop.my_schema._2024_orders","fields":["#,
            r#"{"name":"order_id","type":{"type":"int","connect.parameters":"#,
            r#"{"__debezium.source.column.name":"order id"}}}],"#,
            r#""connect.name":"shop.my_schema._2024_orders.Key"}"#
        )
    );
    let envelope = schema::to_avro_json(&schemas.envelope);
    assert!(envelope.contains(r#"{"name":"_1st","type":["null",{"type":"string","connect.parameters":{"__debezium.source.column.name":"1st"}}],"default":null}"#), "{envelope}");
    assert!(
        envelope.contains(
            r#"{"name":"n_um","type":["null",{"type":"record","name":"VariableScaleDecimal""#
        ),
        "{envelope}"
    );
    apache_avro::Schema::parse_str(&envelope).unwrap();

    let clash = table_with(vec![
        column("a b", PgType::Int4, false),
        column("a_b", PgType::Int4, false),
    ]);
    let error = derive_table(&clash, "t", Format::Avro, &blocks())
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "table public.clash: columns \"a b\" and \"a_b\" both become the Avro field \"a_b\"; rename one of them"
    );
    // JSON keeps names as they are.
    assert!(derive_table(&clash, "t", Format::Json, &blocks()).is_ok());
}

fn table_with(columns: Vec<Column>) -> Arc<TableSchema> {
    table("clash", columns, vec![0])
}

#[test]
fn fixed_schemas_parse_and_round_trip_through_the_model() {
    for (file, text) in [
        ("source.avsc", SOURCE_AVSC),
        ("transaction-block.avsc", TRANSACTION_BLOCK_AVSC),
        ("transaction-key.avsc", TRANSACTION_KEY_AVSC),
        ("transaction-value.avsc", TRANSACTION_VALUE_AVSC),
        ("message-key.avsc", MESSAGE_KEY_AVSC),
        ("message-value.avsc", MESSAGE_VALUE_AVSC),
        ("heartbeat-key.avsc", HEARTBEAT_KEY_AVSC),
        ("heartbeat-value.avsc", HEARTBEAT_VALUE_AVSC),
    ] {
        apache_avro::Schema::parse_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let model = fixed_schema(file, text).unwrap();
        let rendered: serde_json::Value =
            serde_json::from_str(&schema::to_avro_json(&model)).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(rendered, original, "{file}");
    }
    let Kind::Struct(fields) = fixed_schema("message-value.avsc", MESSAGE_VALUE_AVSC)
        .unwrap()
        .kind
    else {
        panic!("not a struct");
    };
    assert_eq!(
        fields[2].schema,
        blocks().source,
        "the message's source block"
    );
}

#[test]
fn avro_fixed_records_decode_with_their_schemas() {
    let parse = |text| apache_avro::Schema::parse_str(text).unwrap();
    let end = TransactionEvent {
        status: TransactionStatus::End {
            data_collections: vec![("public.a".into(), 2), ("public.b".into(), 1)],
        },
        id: "771:24023128".into(),
        ts_ms: 1_704_164_645_678,
        event_count: 3,
    };
    let mut out = Vec::new();
    avro::write_transaction_value(&mut out, &end);
    let collection = |name: &str, count| {
        some(record(vec![
            ("data_collection", string(name)),
            ("event_count", Avro::Long(count)),
        ]))
    };
    assert_eq!(
        decode(&parse(TRANSACTION_VALUE_AVSC), &out),
        record(vec![
            ("status", string("END")),
            ("id", string("771:24023128")),
            ("event_count", some(Avro::Long(3))),
            (
                "data_collections",
                some(Avro::Array(vec![
                    collection("public.a", 2),
                    collection("public.b", 1)
                ]))
            ),
            ("ts_ms", Avro::Long(1_704_164_645_678)),
        ])
    );
    let begin = TransactionEvent {
        status: TransactionStatus::Begin,
        event_count: 0,
        ..end
    };
    let mut out = Vec::new();
    avro::write_transaction_value(&mut out, &begin);
    assert_eq!(
        decode(&parse(TRANSACTION_VALUE_AVSC), &out),
        record(vec![
            ("status", string("BEGIN")),
            ("id", string("771:24023128")),
            ("event_count", null()),
            ("data_collections", null()),
            ("ts_ms", Avro::Long(1_704_164_645_678)),
        ])
    );
    let mut out = Vec::new();
    avro::write_transaction_key(&mut out, &begin);
    assert_eq!(
        decode(&parse(TRANSACTION_KEY_AVSC), &out),
        record(vec![("id", string("771:24023128"))])
    );

    let position = position();
    let empty = TableSchema {
        schema: String::new(),
        table: String::new(),
        ..(*table("x", vec![], vec![])).clone()
    };
    let mut out = Vec::new();
    avro::write_message_value(
        &mut out,
        "audit",
        b"\x00hi",
        &source_block(&empty, &position),
        PROCESSED_US,
    );
    let Avro::Record(mut source) = avro_source() else {
        unreachable!()
    };
    source[9].1 = string("");
    source[10].1 = string("");
    assert_eq!(
        decode(&parse(MESSAGE_VALUE_AVSC), &out),
        record(vec![
            ("op", string("m")),
            ("ts_ms", some(Avro::Long(1_704_164_646_000))),
            ("source", Avro::Record(source)),
            (
                "message",
                record(vec![
                    ("prefix", some(string("audit"))),
                    ("content", some(Avro::Bytes(b"\x00hi".to_vec()))),
                ])
            ),
        ])
    );
    let mut out = Vec::new();
    avro::write_message_key(&mut out, "audit");
    assert_eq!(
        decode(&parse(MESSAGE_KEY_AVSC), &out),
        record(vec![("prefix", some(string("audit")))])
    );
    let mut out = Vec::new();
    avro::write_heartbeat_key(&mut out, PREFIX);
    assert_eq!(
        decode(&parse(HEARTBEAT_KEY_AVSC), &out),
        record(vec![("serverName", string(PREFIX))])
    );
    let mut out = Vec::new();
    avro::write_heartbeat_value(&mut out, 1_704_164_645_678);
    assert_eq!(
        decode(&parse(HEARTBEAT_VALUE_AVSC), &out),
        record(vec![("ts_ms", Avro::Long(1_704_164_645_678))])
    );
}

// ---------------------------------------------------------------------------------------------
// JSON, through the public API
// ---------------------------------------------------------------------------------------------

async fn json_encoder() -> Encoder {
    Encoder::new(EncoderSettings {
        topic_prefix: PREFIX.to_string(),
        format: Format::Json,
        registry: None,
        database: "shopdb".to_string(),
    })
    .await
    .unwrap()
}

fn small_table() -> Arc<TableSchema> {
    table(
        "item",
        vec![
            column("id", PgType::Int4, false),
            column("name", PgType::Text, true),
            column(
                "price",
                PgType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                false,
            ),
        ],
        vec![0],
    )
}

fn text(bytes: &Option<Vec<u8>>) -> &str {
    std::str::from_utf8(bytes.as_deref().unwrap()).unwrap()
}

const JSON_KEY_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"shop.public.item.Key"}"#;
const JSON_SOURCE_SCHEMA: &str = concat!(
    r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},"#,
    r#"{"type":"string","optional":false,"field":"connector"},"#,
    r#"{"type":"string","optional":false,"field":"name"},"#,
    r#"{"type":"int64","optional":false,"field":"ts_ms"},"#,
    r#"{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"#,
    r#""parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"#,
    r#""default":"false","field":"snapshot"},"#,
    r#"{"type":"string","optional":false,"field":"db"},"#,
    r#"{"type":"string","optional":true,"field":"sequence"},"#,
    r#"{"type":"int64","optional":true,"field":"ts_us"},"#,
    r#"{"type":"int64","optional":true,"field":"ts_ns"},"#,
    r#"{"type":"string","optional":false,"field":"schema"},"#,
    r#"{"type":"string","optional":false,"field":"table"},"#,
    r#"{"type":"int64","optional":true,"field":"txId"},"#,
    r#"{"type":"int64","optional":true,"field":"lsn"},"#,
    r#"{"type":"int64","optional":true,"field":"xmin"},"#,
    r#"{"type":"string","optional":true,"field":"origin"},"#,
    r#"{"type":"int64","optional":true,"field":"origin_lsn"}],"#,
    r#""optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"}"#
);

fn json_value_fields(optional: bool) -> String {
    format!(
        concat!(
            r#"{{"type":"struct","fields":[{{"type":"int32","optional":false,"field":"id"}},"#,
            r#"{{"type":"string","optional":true,"field":"name"}},"#,
            r#"{{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,"#,
            r#""parameters":{{"scale":"2","connect.decimal.precision":"10"}},"field":"price"}}],"#,
            r#""optional":{},"name":"shop.public.item.Value","field":"#
        ),
        optional
    )
}

fn json_envelope_schema() -> String {
    format!(
        concat!(
            r#"{{"type":"struct","fields":[{}"before"}},{}"after"}},{},"#,
            r#"{{"type":"struct","fields":[{{"type":"string","optional":false,"field":"id"}},"#,
            r#"{{"type":"int64","optional":false,"field":"total_order"}},"#,
            r#"{{"type":"int64","optional":false,"field":"data_collection_order"}}],"#,
            r#""optional":true,"name":"event.block","version":1,"field":"transaction"}},"#,
            r#"{{"type":"string","optional":false,"field":"op"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_ms"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_us"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_ns"}}],"#,
            r#""optional":false,"name":"shop.public.item.Envelope","version":2}}"#
        ),
        json_value_fields(true),
        json_value_fields(true),
        JSON_SOURCE_SCHEMA
    )
}

const JSON_SOURCE: &str = concat!(
    r#"{"version":"0.1.0","connector":"postgresql","name":"shop","ts_ms":1704164645678,"#,
    r#""snapshot":"false","db":"shopdb","sequence":"[\"24023128\",\"24023200\"]","#,
    r#""ts_us":1704164645678901,"ts_ns":1704164645678901000,"schema":"public","table":"item","#,
    r#""txId":771,"lsn":24023200,"xmin":null,"origin":null,"origin_lsn":null}"#
);
const JSON_TAIL: &str = concat!(
    r#""transaction":{"id":"771:24023128","total_order":3,"data_collection_order":2},"#,
    r#""op":"#
);
const JSON_TIMES: &str =
    r#","ts_ms":1704164646000,"ts_us":1704164646000123,"ts_ns":1704164646000123000}"#;

#[tokio::test]
async fn json_change_events_match_connect_json_converter() {
    assert_eq!(
        env!("CARGO_PKG_VERSION"),
        "0.1.0",
        "JSON_SOURCE names the version"
    );
    let mut encoder = json_encoder().await;
    let table = small_table();
    encoder.register_table(&table).await.unwrap();
    let row = |id: i32, name: Value| {
        vec![
            Value::Int(id),
            name,
            Value::Decimal {
                unscaled: vec![0x04, 0xd2],
                scale: 2,
            },
        ]
    };

    let insert = event(
        &table,
        Op::Create,
        None,
        Some(row(1, Value::String("a\"b".into()))),
    );
    let record = encoder.encode_change(&insert, PROCESSED_US).unwrap();
    assert_eq!(record.topic, "shop.public.item");
    assert_eq!(
        text(&record.key),
        format!(r#"{{"schema":{JSON_KEY_SCHEMA},"payload":{{"id":1}}}}"#)
    );
    assert_eq!(
        text(&record.value),
        format!(
            r#"{{"schema":{},"payload":{{"before":null,"after":{{"id":1,"name":"a\"b","price":"BNI="}},"source":{JSON_SOURCE},{JSON_TAIL}"c"{JSON_TIMES}}}"#,
            json_envelope_schema()
        )
    );
    assert!(record.headers.is_empty());
    let parsed: serde_json::Value =
        serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
    assert_eq!(parsed["payload"]["after"]["price"], "BNI=");

    // A delete under DEFAULT identity: only the key is real; NOT NULL price gets its zero.
    let mut delete = event(
        &table,
        Op::Delete,
        Some(vec![Value::Int(1), Value::Absent, Value::Absent]),
        None,
    );
    delete.key_change = Some(KeyChange::NewKey(vec![Value::Int(2)]));
    let record = encoder.encode_change(&delete, PROCESSED_US).unwrap();
    assert_eq!(
        text(&record.value),
        format!(
            r#"{{"schema":{},"payload":{{"before":{{"id":1,"name":null,"price":"AA=="}},"after":null,"source":{JSON_SOURCE},{JSON_TAIL}"d"{JSON_TIMES}}}"#,
            json_envelope_schema()
        )
    );
    assert_eq!(
        record.headers,
        vec![(NEW_KEY_HEADER, br#"{"id":2}"#.to_vec())]
    );
    let tombstone = encoder.tombstone(&delete).unwrap();
    assert_eq!(
        tombstone,
        Record {
            topic: "shop.public.item".into(),
            key: record.key.clone(),
            value: None,
            headers: record.headers.clone(),
        }
    );

    let mut create = event(&table, Op::Create, None, Some(row(2, Value::Null)));
    create.key_change = Some(KeyChange::OldKey(vec![Value::Int(1)]));
    let record = encoder.encode_change(&create, PROCESSED_US).unwrap();
    assert_eq!(
        record.headers,
        vec![(OLD_KEY_HEADER, br#"{"id":1}"#.to_vec())]
    );

    let mut truncate = event(&table, Op::Truncate, None, None);
    truncate.transaction = None;
    let record = encoder.encode_change(&truncate, PROCESSED_US).unwrap();
    assert_eq!(record.key, None);
    assert_eq!(
        text(&record.value),
        format!(
            r#"{{"schema":{},"payload":{{"before":null,"after":null,"source":{JSON_SOURCE},"transaction":null,"op":"t"{JSON_TIMES}}}"#,
            json_envelope_schema()
        )
    );
}

#[tokio::test]
async fn json_values_of_every_kind() {
    let mut encoder = json_encoder().await;
    let table = every_type_table();
    encoder.register_table(&table).await.unwrap();
    let mut row = Vec::new();
    for (value, _) in every_type_values() {
        row.push(value.clone());
        row.push(if matches!(value, Value::String(_)) {
            Value::Null
        } else {
            value
        });
    }
    let insert = event(&table, Op::Read, None, Some(row));
    let record = encoder.encode_change(&insert, PROCESSED_US).unwrap();
    let parsed: serde_json::Value =
        serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
    let after = &parsed["payload"]["after"];
    let expected: serde_json::Value = serde_json::from_str(concat!(
        r#"{"bool_req":true,"bool_opt":true,"i2_req":-7,"i2_opt":-7,"i4_req":42,"i4_opt":42,"#,
        r#""i8_req":-9000000000,"i8_opt":-9000000000,"f4_req":1.5,"f4_opt":1.5,"#,
        r#""f8_req":-2.25,"f8_opt":-2.25,"price_req":"MDk=","price_opt":"MDk=","#,
        r#""amount_req":{"scale":3,"value":"/4U="},"amount_opt":{"scale":3,"value":"/4U="},"#,
        r#""text_req":"héllo","text_opt":null,"bytea_req":"AAH/","bytea_opt":"AAH/","#,
        r#""day_req":19724,"day_opt":19724,"at_req":3723000004,"at_opt":3723000004,"#,
        r#""ts_req":1704164645678901,"ts_opt":1704164645678901,"#,
        r#""tstz_req":"2024-01-02T03:04:05.678901Z","tstz_opt":null,"#,
        r#""ttz_req":"03:04:05Z","ttz_opt":null,"dur_req":86400000000,"dur_opt":86400000000,"#,
        r#""uid_req":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","uid_opt":null,"#,
        r#""doc_req":"{\"a\":1}","doc_opt":null,"xml_req":"<a/>","xml_opt":null,"#,
        r#""mood_req":"ok","mood_opt":null,"flag_req":false,"flag_opt":false,"#,
        r#""bits_req":"Crw=","bits_opt":"Crw=","tags_req":["x",null],"tags_opt":["x",null],"#,
        r#""point_req":"(1,2)","point_opt":null}"#
    ))
    .unwrap();
    assert_eq!(after, &expected);
    assert_eq!(parsed["payload"]["op"], "r");
    assert_eq!(parsed["schema"]["fields"][1]["fields"][2]["type"], "int16");
    assert_eq!(
        parsed["schema"]["fields"][1]["fields"][14],
        serde_json::json!({"type":"struct","fields":[{"type":"int32","optional":false,"field":"scale"},{"type":"bytes","optional":false,"field":"value"}],"optional":false,"name":"io.debezium.data.VariableScaleDecimal","version":1,"doc":"Variable scaled decimal","field":"amount_req"})
    );
}

#[tokio::test]
async fn json_fixed_records() {
    let encoder = json_encoder().await;
    let record = encoder
        .encode_transaction(&TransactionEvent {
            status: TransactionStatus::End {
                data_collections: vec![("public.item".into(), 2)],
            },
            id: "771:24023128".into(),
            ts_ms: 1_704_164_645_678,
            event_count: 2,
        })
        .unwrap();
    assert_eq!(record.topic, "shop.transaction");
    assert_eq!(
        text(&record.key),
        r#"{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1},"payload":{"id":"771:24023128"}}"#
    );
    let value: serde_json::Value =
        serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        value["payload"],
        serde_json::json!({"status":"END","id":"771:24023128","event_count":2,"data_collections":[{"data_collection":"public.item","event_count":2}],"ts_ms":1_704_164_645_678i64})
    );
    assert_eq!(
        value["schema"]["fields"][3],
        serde_json::json!({"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"data_collection"},{"type":"int64","optional":false,"field":"event_count"}],"optional":true,"name":"event.collection","version":1},"optional":true,"field":"data_collections"})
    );

    let message = LogicalMessage {
        prefix: "audit".into(),
        content: b"hi".to_vec(),
        transactional: false,
        source: position(),
    };
    let record = encoder.encode_message(&message, PROCESSED_US).unwrap();
    assert_eq!(record.topic, "shop.message");
    let value: serde_json::Value =
        serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        value["payload"]["message"],
        serde_json::json!({"prefix":"audit","content":"aGk="})
    );
    assert_eq!(value["payload"]["source"]["table"], "");
    assert_eq!(value["payload"]["op"], "m");

    let record = encoder.encode_heartbeat(1_704_164_645_678).unwrap();
    assert_eq!(record.topic, "__pgcdc-heartbeat.shop");
    assert_eq!(
        text(&record.value),
        r#"{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat","version":1},"payload":{"ts_ms":1704164645678}}"#
    );
    let key: serde_json::Value = serde_json::from_slice(record.key.as_deref().unwrap()).unwrap();
    assert_eq!(key["payload"], serde_json::json!({"serverName":"shop"}));
}

#[tokio::test]
async fn errors_name_the_table_and_column() {
    let mut encoder = json_encoder().await;
    let table = small_table();
    let insert = event(
        &table,
        Op::Create,
        None,
        Some(vec![Value::Int(1), Value::Null, Value::Null]),
    );
    assert_eq!(
        encoder.encode_change(&insert, 0).unwrap_err().to_string(),
        "table public.item (relation 16384) has no registered schema for this version: register_table must see every Relation before the table's events"
    );
    encoder.register_table(&table).await.unwrap();
    assert_eq!(
        encoder.encode_change(&insert, 0).unwrap_err().to_string(),
        "table public.item, column price: NULL in a column declared NOT NULL"
    );
    let short = event(&table, Op::Create, None, Some(vec![Value::Int(1)]));
    assert_eq!(
        encoder.encode_change(&short, 0).unwrap_err().to_string(),
        "table public.item: a row image has 1 values for 3 columns"
    );
    let no_before = event(&table, Op::Delete, None, None);
    assert_eq!(
        encoder
            .encode_change(&no_before, 0)
            .unwrap_err()
            .to_string(),
        "table public.item: a 'd' event needs its before image"
    );
}

#[tokio::test]
async fn registering_an_equal_schema_keeps_one_version() {
    let mut encoder = json_encoder().await;
    let first = small_table();
    let copy = Arc::new((*first).clone());
    encoder.register_table(&first).await.unwrap();
    encoder.register_table(&copy).await.unwrap();
    assert_eq!(encoder.tables[&first.relation_id].len(), 1);
    assert!(Arc::ptr_eq(
        &encoder.tables[&first.relation_id][0].schema,
        &copy
    ));
    // Events still carrying the first Arc are found by content.
    let insert = event(
        &first,
        Op::Create,
        None,
        Some(vec![
            Value::Int(1),
            Value::Null,
            Value::Decimal {
                unscaled: vec![1],
                scale: 2,
            },
        ]),
    );
    assert!(encoder.encode_change(&insert, 0).is_ok());

    let mut evolved = (*first).clone();
    evolved.columns.push(column("note", PgType::Text, true));
    encoder.register_table(&Arc::new(evolved)).await.unwrap();
    assert_eq!(encoder.tables[&first.relation_id].len(), 2);
    assert!(
        encoder.encode_change(&insert, 0).is_ok(),
        "old versions stay usable"
    );
}

#[tokio::test]
async fn avro_needs_a_registry_url() {
    let settings = EncoderSettings {
        topic_prefix: PREFIX.into(),
        format: Format::Avro,
        registry: None,
        database: "shopdb".into(),
    };
    assert!(matches!(
        Encoder::new(settings).await,
        Err(EncodeError::MissingRegistryUrl)
    ));
}

// ---------------------------------------------------------------------------------------------
// Schema change events with table descriptions (DDL capture)
// ---------------------------------------------------------------------------------------------

fn described_column(
    name: &str,
    position: i32,
    expression: &str,
) -> crate::event::ColumnDescription {
    crate::event::ColumnDescription {
        name: name.into(),
        position,
        type_name: "varchar".into(),
        type_expression: expression.into(),
        native_type: 1043,
        jdbc_type: 12,
        length: Some(10),
        scale: None,
        optional: position != 1,
        auto_incremented: false,
        generated: false,
        default_expression: Some("'x'::character varying".into()),
        enum_values: None,
    }
}

/// `ALTER TABLE public.item RENAME COLUMN name TO full_name`, and its enum column.
fn renamed_column_change() -> SchemaChange {
    let before = crate::event::TableDescription {
        schema: "public".into(),
        table: "item".into(),
        columns: vec![
            crate::event::ColumnDescription {
                name: "id".into(),
                position: 1,
                type_name: "int4".into(),
                type_expression: "integer".into(),
                native_type: 23,
                jdbc_type: 4,
                length: None,
                scale: None,
                optional: false,
                auto_incremented: true,
                generated: false,
                default_expression: Some("nextval('public.item_id_seq'::regclass)".into()),
                enum_values: None,
            },
            described_column("name", 2, "character varying(10)"),
            crate::event::ColumnDescription {
                name: "mood".into(),
                position: 4,
                type_name: "public.mood".into(),
                type_expression: "public.mood".into(),
                native_type: 3_000_000_000,
                jdbc_type: 12,
                length: None,
                scale: None,
                optional: true,
                auto_incremented: false,
                generated: false,
                default_expression: None,
                enum_values: Some(vec!["sad".into(), "ok".into()]),
            },
        ],
        primary_key: vec!["id".into()],
    };
    let mut after = before.clone();
    after.columns[1].name = "full_name".into();
    SchemaChange {
        schema: "public".into(),
        table: "item".into(),
        kind: TableChangeKind::Alter,
        ddl: Some("ALTER TABLE public.item RENAME COLUMN name TO full_name".into()),
        table_description: Some(after),
        previous: Some(before),
        source: position(),
        transaction_id: Some("771:24023300".into()),
    }
}

use crate::event::TableChangeKind;

#[test]
fn the_schema_change_value_schema_survives_the_model() {
    let original = apache_avro::Schema::parse_str(SCHEMA_CHANGE_VALUE_AVSC).unwrap();
    let model = fixed_schema("schema-change-value.avsc", SCHEMA_CHANGE_VALUE_AVSC).unwrap();
    let rendered = apache_avro::Schema::parse_str(&schema::to_avro_json(&model))
        .unwrap_or_else(|e| panic!("{e}: {}", schema::to_avro_json(&model)));
    assert_eq!(rendered.canonical_form(), original.canonical_form());
    // previousTable is the same Table as table, in both renderings.
    let Kind::Struct(fields) = &model.kind else {
        panic!("not a struct")
    };
    let Kind::Array(changes) = &fields[5].schema.kind else {
        panic!("tableChanges is not an array")
    };
    let Kind::Struct(change) = &changes.kind else {
        panic!("not a struct")
    };
    let names: Vec<&str> = change.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["type", "id", "table", "previousId", "previousTable"]
    );
    assert_eq!(change[4].schema, change[2].schema);
}

/// The Avro and the JSON payload of a schema change, as the sink reads them (JSON values).
async fn schema_change_payloads(change: &SchemaChange) -> (serde_json::Value, serde_json::Value) {
    let mut avro_bytes = Vec::new();
    let empty = TableSchema {
        schema: change.schema.clone(),
        table: change.table.clone(),
        ..(*table("x", vec![], vec![])).clone()
    };
    avro::write_schema_change_value(
        &mut avro_bytes,
        change,
        &source_block(&empty, &change.source),
        PROCESSED_US,
    );
    let schema = apache_avro::Schema::parse_str(SCHEMA_CHANGE_VALUE_AVSC).unwrap();
    let avro = serde_json::Value::try_from(decode(&schema, &avro_bytes)).unwrap();
    let encoder = Encoder::new(EncoderSettings {
        topic_prefix: PREFIX.to_string(),
        format: Format::Json,
        registry: None,
        database: "shopdb".to_string(),
    })
    .await
    .unwrap();
    let record = encoder.encode_schema_change(change, PROCESSED_US).unwrap();
    assert_eq!(record.topic, "shop.schema_changes");
    let json: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
    (avro, json)
}

#[tokio::test]
async fn schema_changes_carry_the_table_before_and_after_in_avro_and_json() {
    let change = renamed_column_change();
    let (avro, json) = schema_change_payloads(&change).await;
    assert_eq!(avro, json["payload"], "Avro and JSON payloads are the same");
    let table_change = &json["payload"]["tableChanges"][0];
    let column = |name: &str, position: i32, expression: &str| {
        serde_json::json!({
            "name": name, "jdbcType": 12, "nativeType": 1043, "typeName": "varchar",
            "typeExpression": expression, "charsetName": null, "length": 10, "scale": null,
            "position": position, "optional": position != 1, "autoIncremented": false,
            "generated": false, "comment": null,
            "defaultValueExpression": "'x'::character varying", "enumValues": null
        })
    };
    assert_eq!(table_change["type"], "ALTER");
    assert_eq!(table_change["id"], r#""public"."item""#);
    assert_eq!(table_change["previousId"], r#""public"."item""#);
    assert_eq!(
        table_change["table"]["columns"][1],
        column("full_name", 2, "character varying(10)")
    );
    assert_eq!(
        table_change["previousTable"]["columns"][1],
        column("name", 2, "character varying(10)")
    );
    assert_eq!(
        table_change["table"]["primaryKeyColumnNames"],
        serde_json::json!(["id"])
    );
    assert_eq!(
        table_change["table"]["defaultCharsetName"],
        serde_json::Value::Null
    );
    assert_eq!(table_change["table"]["columns"][0]["autoIncremented"], true);
    let mood = &table_change["table"]["columns"][2];
    assert_eq!(mood["enumValues"], serde_json::json!(["sad", "ok"]));
    assert_eq!(mood["nativeType"], 3_000_000_000u32 as i32);
    assert_eq!(
        json["payload"]["ddl"],
        "ALTER TABLE public.item RENAME COLUMN name TO full_name"
    );
    assert_eq!(json["payload"]["transactionId"], "771:24023300");
    assert_eq!(json["schema"]["fields"][6]["field"], "transactionId");
    assert_eq!(json["schema"]["fields"][6]["optional"], true);
    // The JSON schema describes both tables.
    let change_fields = &json["schema"]["fields"][5]["items"]["fields"];
    assert_eq!(change_fields[3]["field"], "previousId");
    assert_eq!(change_fields[4]["field"], "previousTable");
    assert_eq!(
        change_fields[4]["name"],
        "io.debezium.connector.schema.Table"
    );
    assert_eq!(change_fields[4]["optional"], true);

    // A DROP discovery finds keeps its shape, with the new fields null.
    let drop = SchemaChange {
        kind: TableChangeKind::Drop,
        ddl: None,
        table_description: None,
        previous: None,
        transaction_id: None,
        ..change
    };
    let (avro, json) = schema_change_payloads(&drop).await;
    assert_eq!(avro, json["payload"]);
    assert_eq!(json["payload"]["transactionId"], serde_json::Value::Null);
    assert_eq!(
        json["payload"]["tableChanges"],
        serde_json::json!([{"type": "DROP", "id": "\"public\".\"item\"", "table": null,
                            "previousId": null, "previousTable": null}])
    );
}
