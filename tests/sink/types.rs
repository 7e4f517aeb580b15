//! Every SPEC §5 type through source and sink: the target table the sink creates holds the
//! same text as the source for values the envelope carries exactly. (What the Debezium format
//! cannot carry, such as an interval's months or a timetz's own offset, is in the README.)
//! bit(1) travels as a plain boolean, as in Debezium, so the created column is boolean: it is
//! checked on its own rather than by `verify`, which compares text ('1' against 't').

use super::one_partition_pipeline_with;
use super::target::Target;
use crate::support::capture::Capture;

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
        c_enum l1.mood, c_bits bit(10), c_varbit varbit,
        c_int_array int[], c_text_array text[], c_money money
    );
    CREATE TABLE l1.flags (id int PRIMARY KEY, c_bit1 bit(1));";

const ROWS: &str = r#"
    INSERT INTO l1.types VALUES (1,
        true, -32768, 2147483647, -9223372036854775808,
        1.5, -2.25e300,
        12345.678, 1.5,
        'ab', 'héllo', 'unicode ✓ 日本', 'MiXeD',
        '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
        '\xdeadbeef', '2024-02-29', '13:14:15.123456', '2024-02-29 13:14:15.5', '2024-02-29 13:14:15.5+02',
        '13:14:15+00', '02:00:00.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": 1, "a": 2}', '<a>x</a>',
        'happy', B'1000000001', B'101',
        '{1,NULL,3}', '{"a b","c\"d",NULL}', 1234.56);
    INSERT INTO l1.types VALUES (2,
        false, 0, -1, 0,
        'NaN', '-Infinity',
        -0.001, -12345678901234567890.5,
        '', '', '', '',
        '::1', '::/0', '00:00:00:00:00:00',
        '\x', '1999-12-31', '00:00:00', '0001-01-01 00:00:00 BC', '1970-01-01 00:00:00+00',
        '00:00:00+00', '-00:00:01', '00000000-0000-0000-0000-000000000000', '[]', '{}', '',
        'sad', B'0000000000', B'1',
        '{}', '{}', -0.01);
    INSERT INTO l1.types (id) VALUES (3);
    UPDATE l1.types SET c_text = 'changed', c_int_array = '{7}' WHERE id = 1;
    INSERT INTO l1.flags VALUES (1, B'1'), (2, B'0'), (3, NULL);"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_equal() {
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    target.start();
    capture.client.batch_execute(ROWS).await.expect("rows");
    target.settle(&[
        "l1.flags -> l1.flags: DIFFERENT source 3 rows, target 3 rows; first differing keys: (id)=(1) [content differs], (id)=(2) [content differs]",
        "l1.types -> l1.types: ok (3 rows)",
    ]);
    assert_eq!(
        target
            .rows("SELECT format('%s:%s:%s', id, pg_typeof(c_bit1), coalesce(c_bit1::text, '-')) FROM l1.flags ORDER BY id")
            .await,
        ["1:boolean:true", "2:boolean:false", "3:boolean:-"]
    );
    assert_eq!(capture.stop(), 0);
}

const DEBEZIUM_SCHEMA: &str = "
    CREATE EXTENSION hstore;
    CREATE EXTENSION ltree;
    CREATE SCHEMA l1;
    CREATE TYPE l1.mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE l1.shapes (
        id serial PRIMARY KEY, o oid, oa oid[], m money NOT NULL, tz timestamptz,
        tza timestamptz[], p point, lt ltree, lta ltree[], h hstore, ha hstore[], moods l1.mood[]
    );
    CREATE TABLE l1.spans (id int PRIMARY KEY, iv interval);";

const DEBEZIUM_ROWS: &str = r#"
    INSERT INTO l1.shapes (o, oa, m, tz, tza, p, lt, lta, h, ha, moods) VALUES
        (4000000000, '{3,4000000000}', '-$1,234.11', '2020-04-01 13:51:02+02',
         '{"2020-04-01 13:51:02.5+02"}', '(1.5,-2)', 'Top.Science', '{Ship.Frigate,Ship.Destroyer}',
         'a=>1, b=>NULL, "key #1"=>"val \"q\\"', ARRAY['k=>v'::hstore], '{sad,happy}'),
        (0, '{}', '$0.00', NULL, NULL, NULL, NULL, NULL, '', NULL, NULL);
    INSERT INTO l1.spans VALUES (1, '1 mon');"#;

/// Each column's type and text in the target, `|`-separated, row by row.
const SHAPES: &str = "SELECT concat_ws('|', id, pg_typeof(o), o, pg_typeof(m), m, tz, tza,
        pg_typeof(p), p, pg_typeof(lt), lt, lta, pg_typeof(h), h, ha, pg_typeof(moods), moods)
    FROM l1.shapes ORDER BY id";

/// Money, point, ltree and hstore arrive as themselves where the target has the types (hstore
/// from Debezium's JSON object), as jsonb and text where it has not; oid as bigint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_shaped_types_arrive_in_their_own_column_types() {
    let mut capture = Capture::on_shared_sink_testbed(DEBEZIUM_SCHEMA).await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let mut with_extensions = Target::new(&capture, "").await;
    with_extensions
        .client
        .batch_execute("CREATE EXTENSION hstore; CREATE EXTENSION ltree; CREATE SCHEMA l1; CREATE TYPE l1.mood AS ENUM ('sad', 'ok', 'happy');")
        .await
        .expect("target extensions");
    with_extensions.start();
    let mut without = Target::new(&capture, "").await;
    without.start();
    capture
        .client
        .batch_execute(DEBEZIUM_ROWS)
        .await
        .expect("rows");
    // A month travels as 30.4375 days (Debezium's MicroDuration), so verify, comparing text,
    // finds `1 mon` and `730:30:00` different.
    let spans = "l1.spans -> l1.spans: DIFFERENT source 1 row, target 1 row; first differing keys: (id)=(1) [content differs]";
    with_extensions.settle(&["l1.shapes -> l1.shapes: ok (2 rows)", spans]);
    assert_eq!(
        with_extensions.rows("SELECT iv::text FROM l1.spans").await,
        ["730:30:00"]
    );
    assert_eq!(
        with_extensions.rows(SHAPES).await,
        [
            r#"1|bigint|4000000000|money|-$1,234.11|2020-04-01 11:51:02+00|{"2020-04-01 11:51:02.5+00"}|point|(1.5,-2)|ltree|Top.Science|{Ship.Frigate,Ship.Destroyer}|hstore|"a"=>"1", "b"=>NULL, "key #1"=>"val \"q\\"|{"\"k\"=>\"v\""}|l1.mood[]|{sad,happy}"#,
            "2|bigint|0|money|$0.00|point|ltree|hstore||l1.mood[]",
        ]
    );
    // Without the extensions: hstore as jsonb (verify compares text, so it differs), ltree as
    // text.
    without.settle(&["l1.shapes -> l1.shapes: DIFFERENT source 2 rows, target 2 rows; first differing keys: (id)=(1) [content differs], (id)=(2) [content differs]", spans]);
    assert_eq!(
        without.rows(SHAPES).await,
        [
            r#"1|bigint|4000000000|money|-$1,234.11|2020-04-01 11:51:02+00|{"2020-04-01 11:51:02.5+00"}|point|(1.5,-2)|text|Top.Science|{Ship.Frigate,Ship.Destroyer}|jsonb|{"a": "1", "b": null, "key #1": "val \"q\\"}|{"{\"k\": \"v\"}"}|l1.mood[]|{sad,happy}"#,
            "2|bigint|0|money|$0.00|point|text|jsonb|{}|l1.mood[]",
        ]
    );
    assert_eq!(capture.stop(), 0);
}

/// Decimals sent as strings (`decimal_handling_mode = "string"`) and as doubles go back into
/// the target's own numeric and money columns, and into text and double precision columns of
/// a table the sink creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_in_string_and_double_mode_are_applied() {
    const SCHEMA: &str = "
        CREATE SCHEMA l1;
        CREATE TABLE l1.prices (id int PRIMARY KEY, total numeric(10,2), ratio numeric, m money,
                                totals numeric(6,1)[]);";
    for mode in ["string", "double"] {
        let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
        let config = capture.config(
            &["l1.*"],
            &format!("snapshot = \"never\"\ndecimal_handling_mode = \"{mode}\""),
            "",
        );
        capture.start(&config).await;
        let mut existing = Target::new(&capture, "").await;
        existing
            .client
            .batch_execute(SCHEMA)
            .await
            .expect("target table");
        existing.start();
        let mut created = Target::new(&capture, "").await;
        created.start();
        capture
            .client
            .batch_execute(
                "INSERT INTO l1.prices VALUES (1, 12.3, 1.5, '-$1,234.11', '{1.5,NULL}'), (2, NULL, 'NaN', NULL, NULL)",
            )
            .await
            .expect("rows");
        existing.settle(&["l1.prices -> l1.prices: ok (2 rows)"]);
        let shape = "SELECT concat_ws('|', id, pg_typeof(total), total, ratio, m, totals) FROM l1.prices ORDER BY id";
        assert_eq!(
            existing.rows(shape).await,
            ["1|numeric|12.30|1.5|-$1,234.11|{1.5,NULL}", "2|numeric|NaN"],
            "{mode}"
        );
        let expected = match mode {
            "string" => ["1|text|12.30|1.5|-1234.11|{1.5,NULL}", "2|text|NaN"],
            _ => [
                "1|double precision|12.3|1.5|-1234.11|{1.5,NULL}",
                "2|double precision|NaN",
            ],
        };
        // The sink creates the table with the first batch: wait for both rows in it.
        let mut rows = Vec::new();
        for _ in 0..300 {
            let exists = created
                .rows("SELECT (to_regclass('l1.prices') IS NOT NULL)::text")
                .await;
            if exists == ["true"] {
                rows = created.rows(shape).await;
                if rows.len() == 2 {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(rows, expected, "{mode}");
        assert_eq!(capture.stop(), 0);
    }
}

/// `interval_handling_mode = "string"`: ISO 8601 text on the topic, and months arrive exact
/// (with the default microseconds a month is 30.4375 days), so verify finds the tables equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intervals_in_string_mode_arrive_exact() {
    let (mut capture, mut target) = one_partition_pipeline_with(
        "CREATE SCHEMA l1; CREATE TABLE l1.spans (id int PRIMARY KEY, iv interval, ivs interval[]);",
        "interval_handling_mode = \"string\"",
        "",
    )
    .await;
    target.start();
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.spans VALUES
                (1, '1 year 2 mons 3 days 04:05:06.78', '{1 mon,-00:00:00.3}'),
                (2, '-1 mons', NULL), (3, '00:00:00.000001', '{}')",
        )
        .await
        .expect("rows");
    let records = capture.read("l1.spans", 3).await;
    let values: Vec<_> = records.iter().map(|r| r.value["after"].clone()).collect();
    assert_eq!(
        values,
        [
            serde_json::json!({"id": 1, "iv": "P1Y2M3DT4H5M6.78S", "ivs": ["P0Y1M0DT0H0M0S", "P0Y0M0DT0H0M-0.299999999S"]}),
            serde_json::json!({"id": 2, "iv": "P0Y-1M0DT0H0M0S", "ivs": null}),
            serde_json::json!({"id": 3, "iv": "P0Y0M0DT0H0M0.000000999S", "ivs": []}),
        ]
    );
    target.settle(&["l1.spans -> l1.spans: ok (3 rows)"]);
    assert_eq!(
        target
            .rows("SELECT concat_ws('|', pg_typeof(iv), iv) FROM l1.spans ORDER BY id")
            .await,
        [
            "interval|1 year 2 mons 3 days 04:05:06.78",
            "interval|-1 mons",
            "interval|00:00:00.000001"
        ]
    );
    assert_eq!(capture.stop(), 0);
}

/// `binary_handling_mode` `base64`, `base64-url-safe` and `hex`: bytea as text on the topic
/// (arrays too, and the placeholder for an unchanged TOASTed value), decoded back into the
/// `bytea` columns of a table the sink creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_in_text_modes_arrives_as_bytes() {
    const SCHEMA: &str = "
        CREATE SCHEMA l1;
        CREATE TABLE l1.blobs (id int PRIMARY KEY, b bytea, big bytea, bs bytea[], n int);
        ALTER TABLE l1.blobs ALTER big SET STORAGE EXTERNAL;";
    for (mode, small, element) in [
        ("base64", "+/8A", "AQ=="),
        ("base64-url-safe", "-_8A", "AQ=="),
        ("hex", "fbff00", "01"),
    ] {
        let (mut capture, mut target) =
            one_partition_pipeline_with(SCHEMA, &format!("binary_handling_mode = \"{mode}\""), "")
                .await;
        target.start();
        // 4,800 bytes stored out of line, so the update below leaves it unchanged and unsent.
        capture
            .client
            .batch_execute(
                "INSERT INTO l1.blobs VALUES
                    (1, '\\xfbff00',
                     (SELECT string_agg(decode(md5(g::text), 'hex'), ''::bytea) FROM generate_series(1, 300) g),
                     '{\"\\\\x01\",NULL}', 0),
                    (2, '', NULL, '{}', 0), (3, NULL, NULL, NULL, 0);
                 UPDATE l1.blobs SET n = 1 WHERE id = 1;",
            )
            .await
            .expect("rows");
        let records = capture.read("l1.blobs", 4).await;
        let after: Vec<_> = records.iter().map(|r| r.value["after"].clone()).collect();
        assert_eq!(after[0]["b"], small, "{mode}");
        assert_eq!(after[0]["bs"], serde_json::json!([element, null]), "{mode}");
        let big = after[0]["big"].as_str().expect("big as text");
        assert_eq!(
            big.len(),
            if mode == "hex" { 9_600 } else { 6_400 },
            "{mode}"
        );
        assert_eq!(after[1]["b"], "", "{mode}");
        assert_eq!(after[1]["bs"], serde_json::json!([]), "{mode}");
        assert_eq!(after[2]["b"], serde_json::Value::Null, "{mode}");
        assert_eq!(after[3]["big"], "__debezium_unavailable_value", "{mode}");
        target.settle(&["l1.blobs -> l1.blobs: ok (3 rows)"]);
        let shape = "SELECT concat_ws('|', id, pg_typeof(b), encode(b, 'hex'), pg_typeof(bs), bs, \
                     md5(big), n) FROM l1.blobs ORDER BY id";
        let source_big: String = capture
            .client
            .query_one("SELECT md5(big) FROM l1.blobs WHERE id = 1", &[])
            .await
            .expect("source md5")
            .get(0);
        assert_eq!(
            target.rows(shape).await,
            [
                format!("1|bytea|fbff00|bytea[]|{{\"\\\\x01\",NULL}}|{source_big}|1"),
                "2|bytea||bytea[]|{}|0".to_string(),
                "3|bytea|bytea[]|0".to_string(),
            ],
            "{mode}"
        );
        assert_eq!(capture.stop(), 0);
    }
}

/// `hstore_handling_mode = "map"`: hstore as a Connect MAP of optional strings (arrays too,
/// Debezium's one-pair placeholder for an unchanged TOASTed value), back into `hstore`
/// columns of a table the sink creates where the target has the extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hstore_in_map_mode_arrives_as_hstore() {
    let (mut capture, mut target) = one_partition_pipeline_with(
        "CREATE EXTENSION hstore; CREATE SCHEMA l1;
         CREATE TABLE l1.kv (id int PRIMARY KEY, h hstore, hs hstore[], big hstore, n int);
         ALTER TABLE l1.kv ALTER big SET STORAGE EXTERNAL;",
        "hstore_handling_mode = \"map\"",
        "",
    )
    .await;
    target
        .client
        .batch_execute("CREATE EXTENSION hstore")
        .await
        .expect("target extension");
    target.start();
    // `big` (100 pairs) is stored out of line, so the update leaves it unchanged and unsent.
    capture
        .client
        .batch_execute(
            r#"INSERT INTO l1.kv VALUES
                (1, 'a=>1, b=>NULL, "key #1"=>"val \"q\\"', ARRAY['k=>v'::hstore, NULL],
                 (SELECT hstore(array_agg('k' || g), array_agg(md5(g::text))) FROM generate_series(1, 100) g), 0),
                (2, '', '{}', NULL, 0);
               UPDATE l1.kv SET n = 1 WHERE id = 1;"#,
        )
        .await
        .expect("rows");
    let records = capture.read("l1.kv", 3).await;
    let after: Vec<_> = records.iter().map(|r| r.value["after"].clone()).collect();
    assert_eq!(
        after[0]["h"],
        serde_json::json!({"a": "1", "b": null, "key #1": "val \"q\\"})
    );
    assert_eq!(after[0]["hs"], serde_json::json!([{"k": "v"}, null]));
    assert_eq!(
        after[0]["big"].as_object().map(|pairs| pairs.len()),
        Some(100)
    );
    assert_eq!(after[1]["h"], serde_json::json!({}));
    assert_eq!(
        after[2]["big"],
        serde_json::json!({"__debezium_unavailable_value": "__debezium_unavailable_value"})
    );
    target.settle(&["l1.kv -> l1.kv: ok (2 rows)"]);
    let source_big: String = capture
        .client
        .query_one("SELECT md5(big::text) FROM l1.kv WHERE id = 1", &[])
        .await
        .expect("source md5")
        .get(0);
    assert_eq!(
        target
            .rows("SELECT concat_ws('|', id, pg_typeof(h), h, pg_typeof(hs), hs, md5(big::text), n) FROM l1.kv ORDER BY id")
            .await,
        [
            format!(r#"1|hstore|"a"=>"1", "b"=>NULL, "key #1"=>"val \"q\\"|hstore[]|{{"\"k\"=>\"v\"",NULL}}|{source_big}|1"#),
            "2|hstore||hstore[]|{}|0".to_string(),
        ]
    );
    assert_eq!(capture.stop(), 0);
}

/// `time_precision_mode`: Connect's own Date / Time / Timestamp (milliseconds) with
/// `connect`, `io.debezium.time.Timestamp` for a timestamp(0–3) with
/// `adaptive_time_microseconds`; cdc-sink reads each back into date, time and timestamp
/// columns, equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_precision_modes_arrive_equal() {
    const SCHEMA: &str = "CREATE SCHEMA l1;
        CREATE TABLE l1.times (id int PRIMARY KEY, d date, t time(3), ts timestamp(3),
                               ts6 timestamp, tss timestamp(3)[]);";
    const ROWS: &str = "INSERT INTO l1.times VALUES
        (1, '2024-02-29', '13:14:15.123', '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456',
         '{\"1969-12-31 23:59:59.999\",NULL}'),
        (2, '1900-01-01', '00:00:00', '1900-01-01 00:00:00', 'infinity', '{}')";
    for (mode, ts_name, ts6) in [
        (
            "connect",
            "org.apache.kafka.connect.data.Timestamp",
            // Connect's Timestamp is milliseconds whatever the column's precision.
            serde_json::json!(1_709_212_455_123i64),
        ),
        (
            "adaptive_time_microseconds",
            "io.debezium.time.Timestamp",
            serde_json::json!(1_709_212_455_123_456i64),
        ),
    ] {
        let (mut capture, mut target) =
            one_partition_pipeline_with(SCHEMA, &format!("time_precision_mode = \"{mode}\""), "")
                .await;
        target.start();
        capture.client.batch_execute(ROWS).await.expect("rows");
        let records = capture.read("l1.times", 2).await;
        let after = &records[0].value["after"];
        assert_eq!(after["ts"], 1_709_212_455_123i64, "{mode}");
        assert_eq!(after["ts6"], ts6, "{mode}");
        assert_eq!(after["tss"], serde_json::json!([-1, null]), "{mode}");
        let (t, d) = match mode {
            "connect" => (serde_json::json!(47_655_123), serde_json::json!(19_782)),
            _ => (
                serde_json::json!(47_655_123_000i64),
                serde_json::json!(19_782),
            ),
        };
        assert_eq!((&after["t"], &after["d"]), (&t, &d), "{mode}");
        let subject = format!("{}-value", capture.topic("l1.times"));
        let schema = reqwest::get(format!(
            "{}/subjects/{subject}/versions/latest",
            capture.registry_url
        ))
        .await
        .expect("registry")
        .text()
        .await
        .expect("schema");
        assert!(schema.contains(ts_name), "{mode}: {schema}");
        if mode == "connect" {
            // ts6 keeps only milliseconds, as in Debezium; the other columns compare equal.
            target.settle(&["l1.times -> l1.times: DIFFERENT source 2 rows, target 2 rows; first differing keys: (id)=(1) [content differs]"]);
        } else {
            target.settle(&["l1.times -> l1.times: ok (2 rows)"]);
        }
        assert_eq!(
            target
                .rows("SELECT concat_ws('|', d, t, ts, ts6, tss) FROM l1.times ORDER BY id")
                .await,
            [
                format!(
                    "2024-02-29|13:14:15.123|2024-02-29 13:14:15.123|2024-02-29 13:14:15.123{}|{{\"1969-12-31 23:59:59.999\",NULL}}",
                    if mode == "connect" { "" } else { "456" }
                ),
                "1900-01-01|00:00:00|1900-01-01 00:00:00|infinity|{}".to_string(),
            ],
            "{mode}"
        );
        assert_eq!(capture.stop(), 0);
    }
}
