//! The type matrix (SPEC §5): one column per row of the mapping table, written with typical
//! values, edge values and NULLs, read back from the topic and compared with what was
//! written, in Debezium's representation.

use serde_json::{json, Value};

use crate::support::capture::Capture;

mod debezium;

const SCHEMA: &str = "
    CREATE EXTENSION citext;
    CREATE SCHEMA l1;
    CREATE TYPE l1.mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE l1.types (
        id int PRIMARY KEY,
        c_bool boolean, c_int2 smallint, c_int4 integer, c_int8 bigint,
        c_float4 real, c_float8 double precision,
        c_numeric numeric(10,3), c_varnumeric numeric,
        c_char char(3), c_varchar varchar(20), c_text text, c_citext citext,
        c_inet inet, c_cidr cidr, c_macaddr macaddr,
        c_bytea bytea, c_date date, c_time time, c_timestamp timestamp, c_timestamptz timestamptz,
        c_timetz timetz, c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_xml xml,
        c_enum l1.mood, c_bit1 bit(1), c_bits bit(10), c_varbit varbit,
        c_int_array int[], c_text_array text[], c_money money
    );";

const TYPICAL: &str = r#"INSERT INTO l1.types VALUES (1,
    true, -32768, 2147483647, -9223372036854775808,
    1.5, -2.25e300,
    12345.678, 1.50,
    'ab', 'héllo', 'unicode ✓ 日本', 'MiXeD',
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
    '\xdeadbeef', '2024-02-29', '13:14:15.123456', '2024-02-29 13:14:15.5', '2024-02-29 13:14:15.5+02',
    '13:14:15+02', '1 day 02:00:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": 1, "a": 2}', '<a>x</a>',
    'happy', B'1', B'1000000001', B'101',
    '{1,NULL,3}', '{"a b","c\"d",NULL}', 1234.56)"#;

const EDGES: &str = "INSERT INTO l1.types VALUES (2,
    false, 0, -1, 0,
    'NaN', '-Infinity',
    -0.001, -12345678901234567890.5,
    '', '', '', '',
    '::1', '::/0', '00:00:00:00:00:00',
    '\\x', '-infinity', '24:00:00', 'infinity', '-infinity',
    '00:00:00-08', '-1 mons', '00000000-0000-0000-0000-000000000000', '[]', '{}', '',
    'sad', B'0', B'0000000000', B'',
    '{}', '{}', -0.01)";

const NULLS: &str = "INSERT INTO l1.types (id) VALUES (3)";

fn typical() -> Value {
    json!({
        "id": 1,
        "c_bool": true, "c_int2": -32768, "c_int4": 2147483647, "c_int8": i64::MIN,
        "c_float4": 1.5, "c_float8": -2.25e300,
        // 12345.678 at scale 3: unscaled 12345678, big-endian two's complement.
        "c_numeric": [0, 188, 97, 78],
        // Debezium strips trailing zeros of a variable-scale numeric: 1.50 → 15 × 10^-1.
        "c_varnumeric": {"scale": 1, "value": [15]},
        "c_char": "ab ", "c_varchar": "héllo", "c_text": "unicode ✓ 日本", "c_citext": "MiXeD",
        "c_inet": "192.168.0.1/24", "c_cidr": "10.0.0.0/8", "c_macaddr": "08:00:2b:01:02:03",
        "c_bytea": [0xde, 0xad, 0xbe, 0xef],
        "c_date": 19782,
        "c_time": 47_655_123_456_i64,
        "c_timestamp": 1_709_212_455_500_000_i64,
        "c_timestamptz": "2024-02-29T11:14:15.500000Z",
        "c_timetz": "11:14:15Z",
        "c_interval": 93_600_000_000_i64,
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_json": "{\"a\": [1, 2]}", "c_jsonb": "{\"a\": 2, \"b\": 1}", "c_xml": "<a>x</a>",
        "c_enum": "happy", "c_bit1": true,
        // Bits little-endian as Debezium's BitSet writes them: 0b1000000001 = 513.
        "c_bits": [1, 2], "c_varbit": [5],
        "c_int_array": [1, null, 3], "c_text_array": ["a b", "c\"d", null],
        // 1234.56 at scale 2: unscaled 123456 = 0x01E240.
        "c_money": [0x01, 0xe2, 0x40],
    })
}

fn edges() -> Value {
    json!({
        "id": 2,
        "c_bool": false, "c_int2": 0, "c_int4": -1, "c_int8": 0,
        "c_float4": "NaN", "c_float8": "-Infinity",
        "c_numeric": [255],
        "c_varnumeric": {"scale": 1, "value": [249, 78, 177, 96, 126, 208, 201, 147, 199]},
        "c_char": "   ", "c_varchar": "", "c_text": "", "c_citext": "",
        "c_inet": "::1", "c_cidr": "::/0", "c_macaddr": "00:00:00:00:00:00",
        "c_bytea": [],
        "c_date": -2_147_472_691,
        "c_time": 86_400_000_000_i64,
        "c_timestamp": 9_223_372_036_825_200_000_i64,
        "c_timestamptz": "-infinity",
        "c_timetz": "08:00:00Z",
        // A month is 30.4375 days in Debezium's MicroDuration.
        "c_interval": -2_629_800_000_000_i64,
        "c_uuid": "00000000-0000-0000-0000-000000000000",
        "c_json": "[]", "c_jsonb": "{}", "c_xml": "",
        "c_enum": "sad", "c_bit1": false,
        "c_bits": [], "c_varbit": [],
        "c_int_array": [], "c_text_array": [],
        "c_money": [0xff],
    })
}

fn nulls() -> Value {
    let mut row = serde_json::Map::new();
    for (name, _) in typical().as_object().expect("an object") {
        row.insert(name.clone(), Value::Null);
    }
    row.insert("id".into(), json!(3));
    Value::Object(row)
}

/// Compares column by column so a failure names the column.
fn assert_row(actual: &Value, expected: &Value) {
    let expected = expected.as_object().expect("an object");
    let actual = actual
        .as_object()
        .unwrap_or_else(|| panic!("not a row: {actual}"));
    for (column, value) in expected {
        assert_eq!(actual.get(column), Some(value), "column {column}");
    }
    assert_eq!(actual.len(), expected.len(), "columns: {actual:?}");
}

#[tokio::test]
async fn every_type_round_trips() {
    let mut capture = Capture::on_shared_testbed(SCHEMA).await;
    let config = capture.config(&["l1.types"], "", "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;
    for insert in [TYPICAL, EDGES, NULLS] {
        capture
            .client
            .batch_execute(insert)
            .await
            .unwrap_or_else(|e| panic!("{insert}: {e}"));
    }
    let records = capture.read("l1.types", 3).await;
    assert_eq!(records.len(), 3);
    assert_row(&records[0].value["after"], &typical());
    assert_row(&records[1].value["after"], &edges());
    assert_row(&records[2].value["after"], &nulls());
    assert_eq!(capture.stop(), 0);
}
