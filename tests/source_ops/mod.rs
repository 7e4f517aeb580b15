//! Each row operation under each replica identity, read back from the topic as the exact
//! Debezium envelopes (SPEC §4).

use serde_json::{json, Value};

use crate::support::capture::{Capture, Decoded};

const TABLE: &str = "l1.item";

/// Runs one statement in its own transaction and returns that transaction's id.
async fn in_transaction(capture: &Capture<'_>, sql: &str) -> i64 {
    let txid: i64 = capture
        .client
        .query_one(
            &format!("WITH change AS ({sql} RETURNING 1) SELECT pg_current_xact_id()::text::bigint FROM (SELECT count(*) FROM change) c"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0);
    txid
}

async fn truncate(capture: &Capture<'_>) -> i64 {
    let transaction = capture
        .client
        .simple_query("BEGIN; TRUNCATE l1.item; SELECT pg_current_xact_id()::text; COMMIT;");
    let messages = transaction.await.expect("truncate");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(|t| t.parse().unwrap()),
            _ => None,
        })
        .expect("a txid row")
}

/// Checks a record's envelope: op, images, and the source and transaction blocks.
fn assert_envelope(
    record: &Decoded,
    capture: &Capture<'_>,
    op: &str,
    txid: i64,
    before: Value,
    after: Value,
) {
    let envelope = &record.value;
    assert_eq!(envelope["op"], op, "{envelope:#}");
    assert_eq!(envelope["before"], before, "before of {op}: {envelope:#}");
    assert_eq!(envelope["after"], after, "after of {op}: {envelope:#}");
    let source = &envelope["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], capture.names.topic_prefix.as_str());
    assert_eq!(source["db"], capture.names.db.as_str());
    assert_eq!(
        (&source["schema"], &source["table"]),
        (&json!("l1"), &json!("item"))
    );
    assert_eq!(source["snapshot"], "false");
    assert_eq!(source["txId"], txid, "{source:#}");
    let sequence: Vec<String> =
        serde_json::from_str(source["sequence"].as_str().expect("sequence")).expect("JSON array");
    let (previous_commit, lsn): (u64, u64) =
        (sequence[0].parse().unwrap(), sequence[1].parse().unwrap());
    assert_eq!(source["lsn"], lsn);
    // The tests' transactions run one after another, so each change follows the commit of the
    // transaction before.
    assert!(
        previous_commit > 0 && previous_commit <= lsn,
        "the previous transaction's commit ({previous_commit}) must precede the change's LSN {lsn}"
    );
    let transaction = &envelope["transaction"];
    let id = transaction["id"].as_str().expect("a transaction id");
    let commit_lsn: u64 = id
        .strip_prefix(&format!("{txid}:"))
        .and_then(|lsn| lsn.parse().ok())
        .unwrap_or_else(|| panic!("transaction id {id}"));
    assert!(
        lsn < commit_lsn,
        "change LSN {lsn} must precede commit LSN {commit_lsn}"
    );
    for field in ["ts_ms", "ts_us", "ts_ns"] {
        assert!(
            envelope[field].as_i64().is_some_and(|t| t > 0),
            "{field}: {envelope:#}"
        );
        assert!(
            source[field].as_i64().is_some_and(|t| t > 0),
            "source.{field}: {source:#}"
        );
    }
}

fn assert_tombstone(record: &Decoded, key: Value) {
    assert_eq!(record.value, Value::Null, "a tombstone has a null value");
    assert_eq!(record.key, key);
}

fn header(record: &Decoded, name: &str) -> Option<Value> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| serde_json::from_slice(value).expect("JSON header"))
}

/// The images each identity gives to a key-change delete and to a plain delete.
struct Images {
    update_before: Value,
    key_change_before: Value,
    delete_before: Value,
}

async fn every_operation(identity_sql: &str, images: Images) {
    let schema = format!("CREATE SCHEMA l1; CREATE TABLE l1.item (id int NOT NULL, name text NOT NULL, qty int); {identity_sql}");
    let mut capture = Capture::on_shared_testbed(&schema).await;
    let config = capture.config(&[TABLE], "", "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;

    let insert = in_transaction(&capture, "INSERT INTO l1.item VALUES (1, 'one', 10)").await;
    let update = in_transaction(&capture, "UPDATE l1.item SET qty = 11 WHERE id = 1").await;
    let key_change = in_transaction(&capture, "UPDATE l1.item SET id = 2 WHERE id = 1").await;
    let delete = in_transaction(&capture, "DELETE FROM l1.item WHERE id = 2").await;
    let truncated = truncate(&capture).await;

    let records = capture.read(TABLE, 8).await;
    let ops: Vec<&str> = records.iter().map(Decoded::op).collect();
    assert_eq!(
        ops,
        ["c", "u", "d", "tombstone", "c", "d", "tombstone", "t"],
        "source log:\n{}",
        capture.source_log()
    );

    let row = |id: i32, qty: i32| json!({"id": id, "name": "one", "qty": qty});
    assert_envelope(&records[0], &capture, "c", insert, Value::Null, row(1, 10));
    assert_eq!(records[0].key, json!({"id": 1}));
    assert_envelope(
        &records[1],
        &capture,
        "u",
        update,
        images.update_before,
        row(1, 11),
    );
    assert_envelope(
        &records[2],
        &capture,
        "d",
        key_change,
        images.key_change_before,
        Value::Null,
    );
    assert_eq!(records[2].key, json!({"id": 1}));
    assert_eq!(
        header(&records[2], "__debezium.newkey"),
        Some(json!({"id": 2}))
    );
    assert_tombstone(&records[3], json!({"id": 1}));
    assert_envelope(
        &records[4],
        &capture,
        "c",
        key_change,
        Value::Null,
        row(2, 11),
    );
    assert_eq!(records[4].key, json!({"id": 2}));
    assert_eq!(
        header(&records[4], "__debezium.oldkey"),
        Some(json!({"id": 1}))
    );
    assert_eq!(records[2].value["transaction"]["total_order"], 1);
    assert_eq!(records[4].value["transaction"]["total_order"], 2);
    assert_envelope(
        &records[5],
        &capture,
        "d",
        delete,
        images.delete_before,
        Value::Null,
    );
    assert_tombstone(&records[6], json!({"id": 2}));
    assert_envelope(
        &records[7],
        &capture,
        "t",
        truncated,
        Value::Null,
        Value::Null,
    );
    assert_eq!(records[7].key, Value::Null, "a truncate has a null key");
    assert_eq!(capture.stop(), 0);
}

/// Under DEFAULT and USING INDEX identity only the key columns of an old image are real: the
/// others hold null (nullable) or the type's zero value (NOT NULL), as Debezium writes them.
fn key_only(id: i32) -> Value {
    json!({"id": id, "name": "", "qty": null})
}

#[tokio::test]
async fn default_identity_operations() {
    every_operation(
        "ALTER TABLE l1.item ADD PRIMARY KEY (id);",
        Images {
            update_before: Value::Null,
            key_change_before: key_only(1),
            delete_before: key_only(2),
        },
    )
    .await;
}

#[tokio::test]
async fn using_index_identity_operations() {
    every_operation(
        "CREATE UNIQUE INDEX item_id ON l1.item (id);
         ALTER TABLE l1.item REPLICA IDENTITY USING INDEX item_id;",
        Images {
            update_before: Value::Null,
            key_change_before: key_only(1),
            delete_before: key_only(2),
        },
    )
    .await;
}

#[tokio::test]
async fn full_identity_operations() {
    every_operation(
        "ALTER TABLE l1.item ADD PRIMARY KEY (id); ALTER TABLE l1.item REPLICA IDENTITY FULL;",
        Images {
            update_before: json!({"id": 1, "name": "one", "qty": 10}),
            key_change_before: json!({"id": 1, "name": "one", "qty": 11}),
            delete_before: json!({"id": 2, "name": "one", "qty": 11}),
        },
    )
    .await;
}

#[tokio::test]
async fn a_new_column_registers_a_new_schema_version() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.item (id int PRIMARY KEY, name text);",
    )
    .await;
    let config = capture.config(&[TABLE], "", "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.item VALUES (1, 'before');
             ALTER TABLE l1.item ADD COLUMN color text;
             INSERT INTO l1.item VALUES (2, 'after', 'red');",
        )
        .await
        .unwrap();
    let records = capture.read(TABLE, 2).await;
    assert_eq!(
        records[0].value["after"],
        json!({"id": 1, "name": "before"})
    );
    assert_eq!(
        records[1].value["after"],
        json!({"id": 2, "name": "after", "color": "red"})
    );
    let subject = format!("{}-value", capture.topic(TABLE));
    let versions: Value = reqwest::get(format!(
        "{}/subjects/{subject}/versions",
        capture.registry_url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(versions, json!([1, 2]));
    assert_eq!(capture.stop(), 0);
}

#[tokio::test]
async fn excluded_columns_stay_out_under_full_identity() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.item (id int PRIMARY KEY, name text, secret text);
         ALTER TABLE l1.item REPLICA IDENTITY FULL;",
    )
    .await;
    let config = capture.config(
        &[TABLE],
        "exclude_columns = [\"l1.item.secret\"]",
        "[kafka.topic]\npartitions = 1",
    );
    capture.start(&config).await;
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.item VALUES (1, 'a', 'hunter2');
             UPDATE l1.item SET name = 'b' WHERE id = 1;",
        )
        .await
        .unwrap();
    let records = capture.read(TABLE, 2).await;
    assert_eq!(records[0].value["after"], json!({"id": 1, "name": "a"}));
    assert_eq!(records[1].value["before"], json!({"id": 1, "name": "a"}));
    assert_eq!(records[1].value["after"], json!({"id": 1, "name": "b"}));
    assert_eq!(records[1].key, json!({"id": 1}));
    assert_eq!(capture.stop(), 0);
}
