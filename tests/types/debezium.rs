//! Debezium conformance of the rows where pgcdc used to differ (issue 16): each is checked in
//! the registered Avro schema (type, `connect.name`, version, parameters, default) and in the
//! value, against what Debezium's PostgreSQL connector tests expect.

use serde_json::{json, Value};

use crate::support::capture::{Capture, Decoded};

const SCHEMA: &str = "
    CREATE EXTENSION hstore;
    CREATE EXTENSION ltree;
    CREATE SCHEMA l1;
    CREATE TYPE l1.mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE l1.conform (
        id serial PRIMARY KEY,
        big bigserial, small smallserial,
        o oid, oa oid[],
        m money NOT NULL,
        tz timestamptz, tza timestamptz[], tz3 timestamptz(3),
        p point,
        lt ltree, lta ltree[],
        h hstore, ha hstore[],
        moods l1.mood[],
        answer int NOT NULL DEFAULT 42,
        stamp timestamptz DEFAULT now()
    );";

const INSERT: &str = r#"INSERT INTO l1.conform
    (o, oa, m, tz, tza, tz3, p, lt, lta, h, ha, moods) VALUES
    (4000000000, '{3,4000000000}', '$1,234.11',
     '2020-04-01 13:51:02+02', '{"2020-04-01 13:51:02+02","2020-04-01 14:51:03.5+02"}',
     '2020-04-01 11:51:02.12+00',
     '(1,1)', 'Top.Science', '{Ship.Frigate,Ship.Destroyer}',
     'a=>1, b=>NULL, "key #1"=>"val \"q\""', ARRAY['k=>v'::hstore, 'n=>NULL'],
     '{sad,happy}')"#;

/// `schema_sql` with `table` captured into one partition (`extra_capture` added to
/// `[capture]`), `statements` run one by one, and the first `expected` records read back.
async fn captured(
    schema_sql: &str,
    table: &str,
    extra_capture: &str,
    statements: &[&str],
    expected: usize,
) -> (Capture<'static>, Vec<Decoded>) {
    let mut capture = Capture::on_shared_testbed(schema_sql).await;
    let config = capture.config(&[table], extra_capture, "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;
    for statement in statements {
        capture
            .client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let records = capture.read(table, expected).await;
    assert_eq!(records.len(), expected, "{}", capture.source_log());
    (capture, records)
}

/// The subject's latest registered schema, parsed.
async fn registered(capture: &Capture<'_>, subject: &str) -> Value {
    let url = format!(
        "{}/subjects/{subject}/versions/latest",
        capture.registry_url
    );
    let answer: Value = reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .json()
        .await
        .expect("registry JSON");
    serde_json::from_str(answer["schema"].as_str().expect("a schema string")).expect("Avro JSON")
}

/// The record named `name` anywhere in an Avro schema.
fn record<'a>(schema: &'a Value, name: &str) -> &'a Value {
    fn find<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
        match node {
            Value::Object(map) => {
                if map.get("type") == Some(&json!("record"))
                    && map.get("name") == Some(&json!(name))
                {
                    return Some(node);
                }
                map.values().find_map(|child| find(child, name))
            }
            Value::Array(items) => items.iter().find_map(|child| find(child, name)),
            _ => None,
        }
    }
    find(schema, name).unwrap_or_else(|| panic!("no record {name} in {schema}"))
}

/// The field called `name` of an Avro record.
fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no field {name} in {record}"))
}

/// `["null", T]`'s T.
fn nullable(field: &Value) -> &Value {
    match field["type"].as_array().map(Vec::as_slice) {
        Some([null, inner]) if *null == json!("null") => inner,
        _ => panic!("not [\"null\", T]: {field}"),
    }
}

/// The LSNs of `source.sequence`.
fn sequence(value: &Value) -> (u64, u64) {
    let text = value["source"]["sequence"].as_str().expect("a sequence");
    let pair: Vec<String> = serde_json::from_str(text).expect("a JSON array of strings");
    let lsn = |i: usize| pair[i].parse::<u64>().expect("a decimal LSN");
    (lsn(0), lsn(1))
}

#[tokio::test]
async fn the_rows_debezium_writes_differently_now_match() {
    // Insert, delete, tombstone.
    let (mut capture, records) = captured(
        SCHEMA,
        "l1.conform",
        "",
        &[INSERT, "DELETE FROM l1.conform"],
        3,
    )
    .await;
    let (insert, delete) = (&records[0].value, &records[1].value);

    let wkb: Vec<u8> = [1u8, 1, 0, 0, 0]
        .into_iter()
        .chain(1.0f64.to_le_bytes())
        .chain(1.0f64.to_le_bytes())
        .collect();
    let after = &insert["after"];
    let expected = json!({
        "id": 1, "big": 1, "small": 1,
        "o": 4_000_000_000i64, "oa": [3, 4_000_000_000i64],
        // 1234.11 at scale 2: unscaled 123411 = 0x01E213.
        "m": [0x01, 0xe2, 0x13],
        "tz": "2020-04-01T11:51:02.000000Z",
        "tza": ["2020-04-01T11:51:02.000000Z", "2020-04-01T12:51:03.500000Z"],
        "tz3": "2020-04-01T11:51:02.120Z",
        "p": {"x": 1.0, "y": 1.0, "wkb": wkb, "srid": null},
        "lt": "Top.Science", "lta": ["Ship.Frigate", "Ship.Destroyer"],
        "h": r#"{"a":"1","b":null,"key #1":"val \"q\""}"#,
        "ha": [r#"{"k":"v"}"#, r#"{"n":null}"#],
        "moods": ["sad", "happy"],
        "answer": 42,
    });
    for (column, value) in expected.as_object().expect("an object") {
        assert_eq!(&after[column], value, "column {column}");
    }
    assert!(after["stamp"].is_string(), "{after}");

    // A delete's before image under DEFAULT identity lacks the non-key columns: a NOT NULL
    // one carries its schema default, else Debezium's fallback (money: 0.00).
    let before = &delete["before"];
    assert_eq!(before["id"], 1);
    assert_eq!(before["m"], json!([0]), "{before}");
    assert_eq!(before["big"], 0, "{before}");
    assert_eq!(before["small"], 0, "{before}");
    assert_eq!(before["answer"], 42, "{before}");
    assert_eq!(before["o"], Value::Null);

    // source.sequence: [previous transaction's commit end, this event's LSN].
    let (insert_previous, insert_lsn) = sequence(insert);
    let (delete_previous, delete_lsn) = sequence(delete);
    assert_eq!(insert["source"]["lsn"], insert_lsn);
    assert_eq!(delete["source"]["lsn"], delete_lsn);
    assert!(
        insert_previous <= insert_lsn,
        "{insert_previous} > {insert_lsn}"
    );
    assert!(
        insert_lsn < delete_previous && delete_previous <= delete_lsn,
        "the delete's transaction follows the insert's: {insert_lsn} < {delete_previous} <= {delete_lsn}"
    );

    let topic = capture.topic("l1.conform");
    let value_schema = registered(&capture, &format!("{topic}-value")).await;
    let source = record(&value_schema, "Source");
    assert_eq!(source["connect.version"], 1, "{source}");
    assert_eq!(field(source, "origin")["type"], json!(["null", "string"]));
    assert_eq!(field(source, "origin_lsn")["type"], json!(["null", "long"]));

    let value = record(&value_schema, "Value");
    let serial = |name: &str, avro: &str| {
        let column = field(value, name);
        assert_eq!(column["default"], 0, "{column}");
        assert_eq!(column["type"]["type"], avro, "{column}");
        assert_eq!(column["type"]["connect.default"], 0, "{column}");
    };
    serial("id", "int");
    serial("big", "long");
    serial("small", "int");
    assert_eq!(field(value, "small")["type"]["connect.type"], "int16");
    assert_eq!(field(value, "answer")["default"], 42);
    // A function default gets the type's placeholder, with the value branch first.
    let stamp = field(value, "stamp");
    assert_eq!(stamp["default"], "1970-01-01T00:00:00.000000Z", "{stamp}");
    assert_eq!(stamp["type"][1], "null", "{stamp}");

    assert_eq!(*nullable(field(value, "o")), json!("long"));
    assert_eq!(
        *nullable(field(value, "oa")),
        json!({"type": "array", "items": ["null", "long"]})
    );
    let money = &field(value, "m")["type"];
    assert_eq!(money["type"], "bytes");
    assert_eq!(money["logicalType"], "decimal");
    assert_eq!(money["scale"], 2);
    assert_eq!(
        money["connect.name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(money["connect.parameters"]["scale"], "2");
    assert!(money["connect.parameters"]["connect.decimal.precision"].is_null());
    let point = nullable(field(value, "p"));
    assert_eq!(point["connect.name"], "io.debezium.data.geometry.Point");
    assert_eq!(point["connect.version"], 1);
    assert_eq!(point["connect.doc"], "Geometry (POINT)");
    let point_fields: Vec<(&str, Value)> = point["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| (f["name"].as_str().expect("a name"), f["type"].clone()))
        .collect();
    assert_eq!(
        point_fields,
        [
            ("x", json!("double")),
            ("y", json!("double")),
            ("wkb", json!(["null", "bytes"])),
            ("srid", json!(["null", "int"])),
        ]
    );
    let ltree = nullable(field(value, "lt"));
    assert_eq!(ltree["connect.name"], "io.debezium.data.Ltree");
    assert_eq!(ltree["connect.version"], 1);
    assert_eq!(
        nullable(field(value, "lta"))["items"][1]["connect.name"],
        "io.debezium.data.Ltree"
    );
    let hstore = nullable(field(value, "h"));
    assert_eq!(hstore["connect.name"], "io.debezium.data.Json");
    assert_eq!(hstore["connect.version"], 1);
    let timestamptz = nullable(field(value, "tz"));
    assert_eq!(
        timestamptz["connect.name"],
        "io.debezium.time.ZonedTimestamp"
    );
    // Enum arrays keep optional elements (Debezium's required ones fail on a NULL element).
    let moods = nullable(field(value, "moods"));
    assert_eq!(moods["items"][0], "null", "{moods}");
    assert_eq!(moods["items"][1]["connect.name"], "io.debezium.data.Enum");

    let key_schema = registered(&capture, &format!("{topic}-key")).await;
    let key_id = field(record(&key_schema, "Key"), "id");
    assert_eq!(key_id["default"], 0, "{key_id}");
    assert_eq!(capture.stop(), 0);
}

const DECIMALS: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.prices (id int PRIMARY KEY, total numeric(10,2), ratio numeric, m money,
                            totals numeric(6,1)[]);";

const DECIMAL_ROW: &str =
    "INSERT INTO l1.prices VALUES (1, 12.3, 1.50, '-$1,234.11', '{1.5,NULL}'), (2, NULL, 'NaN', NULL, NULL)";

/// `decimal.handling.mode = string` in JSON, where a precise Decimal is unreadable base64
/// (`"BM4="` for 12.30): plain strings, schema `string`.
#[tokio::test]
async fn decimals_travel_as_strings_in_string_mode() {
    let mut capture = Capture::on_shared_testbed(DECIMALS).await;
    let config = capture
        .config(
            &["l1.prices"],
            "decimal_handling_mode = \"string\"",
            "[kafka.topic]\npartitions = 1",
        )
        .replace("format = \"avro\"", "format = \"json\"");
    capture.start(&config).await;
    capture
        .client
        .batch_execute(DECIMAL_ROW)
        .await
        .expect("rows");
    let (bootstrap, topic) = (capture.bootstrap.clone(), capture.topic("l1.prices"));
    let records = tokio::task::spawn_blocking(move || {
        crate::support::read_topic(&bootstrap, &topic, 2, std::time::Duration::from_secs(30))
    })
    .await
    .expect("reader");
    assert_eq!(records.len(), 2, "{}", capture.source_log());
    let values: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().expect("a value")).expect("JSON"))
        .collect();
    assert_eq!(
        values[0]["payload"]["after"],
        json!({"id": 1, "total": "12.30", "ratio": "1.50", "m": "-1234.11", "totals": ["1.5", null]})
    );
    assert_eq!(
        values[1]["payload"]["after"],
        json!({"id": 2, "total": null, "ratio": "NaN", "m": null, "totals": null})
    );
    let after_fields = values[0]["schema"]["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["field"] == "after"))
        .expect("the after field")["fields"]
        .clone();
    assert_eq!(
        after_fields[1],
        json!({"type": "string", "optional": true, "field": "total"})
    );
    assert_eq!(capture.stop(), 0);
}

/// `decimal.handling.mode = double`: FLOAT64 in the schema, doubles in the values.
#[tokio::test]
async fn decimals_travel_as_doubles_in_double_mode() {
    let (mut capture, records) = captured(
        DECIMALS,
        "l1.prices",
        "decimal_handling_mode = \"double\"",
        &[DECIMAL_ROW],
        2,
    )
    .await;
    assert_eq!(
        records[0].value["after"],
        json!({"id": 1, "total": 12.3, "ratio": 1.5, "m": -1234.11, "totals": [1.5, null]})
    );
    assert_eq!(records[1].value["after"]["ratio"], "NaN");
    let value_schema = registered(&capture, &format!("{}-value", capture.topic("l1.prices"))).await;
    let value = record(&value_schema, "Value");
    assert_eq!(field(value, "total")["type"], json!(["null", "double"]));
    assert_eq!(field(value, "m")["type"], json!(["null", "double"]));
    assert_eq!(capture.stop(), 0);
}

/// `money_fraction_digits` (Debezium's `money.fraction.digits`): money's Decimal at that
/// scale, rounded half up.
#[tokio::test]
async fn money_takes_the_configured_fraction_digits() {
    let (mut capture, records) = captured(
        "CREATE SCHEMA l1; CREATE TABLE l1.cash (id int PRIMARY KEY, m money NOT NULL);",
        "l1.cash",
        "money_fraction_digits = 0",
        &["INSERT INTO l1.cash VALUES (1, '$1,234.56'), (2, '-$0.50')"],
        2,
    )
    .await;
    // 1235 = 0x04D3; -0.50 rounds half up (away from zero) to -1.
    assert_eq!(records[0].value["after"]["m"], json!([0x04, 0xd3]));
    assert_eq!(records[1].value["after"]["m"], json!([0xff]));
    let value_schema = registered(&capture, &format!("{}-value", capture.topic("l1.cash"))).await;
    let money = &field(record(&value_schema, "Value"), "m")["type"];
    assert_eq!(money["scale"], 0, "{money}");
    assert_eq!(money["connect.parameters"]["scale"], "0", "{money}");
    assert_eq!(capture.stop(), 0);
}
