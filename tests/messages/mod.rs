//! `pg_logical_emit_message` output on `<prefix>.message`, and the JSON format end to end.

use serde_json::{json, Value};

use crate::support::capture::{Capture, WAIT};
use crate::support::{decode_avro, read_topic};

async fn capture() -> Capture<'static> {
    Capture::on_shared_testbed("CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);")
        .await
}

/// Reads `expected` raw records of `topic`, values only.
async fn read_values(
    capture: &Capture<'_>,
    topic: String,
    expected: usize,
) -> Vec<crate::support::TestRecord> {
    let bootstrap = capture.bootstrap.clone();
    tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic, expected, WAIT))
        .await
        .unwrap()
}

#[tokio::test]
async fn logical_messages_reach_the_message_topic() {
    let mut capture = capture().await;
    let config = capture.config(&["l1.t"], "", "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;
    capture
        .client
        .batch_execute(
            "BEGIN;
             INSERT INTO l1.t VALUES (1, 'x');
             SELECT pg_logical_emit_message(true, 'app', 'hello');
             COMMIT;
             SELECT pg_logical_emit_message(false, 'audit', 'outside');",
        )
        .await
        .unwrap();
    let records = read_values(
        &capture,
        format!("{}.message", capture.names.topic_prefix),
        2,
    )
    .await;
    let decoded: Vec<(Value, Value)> = records
        .iter()
        .map(|r| {
            let key = decode_avro(&capture.registry_url, r.key.as_deref().unwrap());
            (
                key,
                decode_avro(&capture.registry_url, r.value.as_deref().unwrap()),
            )
        })
        .collect();
    assert_eq!(decoded.len(), 2, "{decoded:#?}");
    let (key, value) = &decoded[0];
    assert_eq!(key, &json!({"prefix": "app"}));
    assert_eq!(value["op"], "m");
    assert_eq!(
        value["message"],
        json!({"prefix": "app", "content": b"hello".to_vec()})
    );
    assert!(
        value["source"]["txId"].is_number(),
        "a transactional message has its txid"
    );
    let (key, value) = &decoded[1];
    assert_eq!(key, &json!({"prefix": "audit"}));
    assert_eq!(value["message"]["content"], json!(b"outside".to_vec()));
    assert_eq!(value["source"]["txId"], Value::Null);
    assert_eq!(capture.stop(), 0);
}

#[tokio::test]
async fn json_format_carries_schema_and_payload() {
    let mut capture = capture().await;
    let config = capture
        .config(&["l1.t"], "", "[kafka.topic]\npartitions = 1")
        .replace("format = \"avro\"", "format = \"json\"");
    capture.start(&config).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (1, 'x')")
        .await
        .unwrap();
    let records = read_values(&capture, capture.topic("l1.t"), 1).await;
    assert_eq!(records.len(), 1);
    let key: Value = serde_json::from_slice(records[0].key.as_deref().unwrap()).unwrap();
    let value: Value = serde_json::from_slice(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(key["payload"], json!({"id": 1}));
    let prefix = &capture.names.topic_prefix;
    assert_eq!(key["schema"]["name"], format!("{prefix}.l1.t.Key"));
    assert_eq!(value["schema"]["name"], format!("{prefix}.l1.t.Envelope"));
    assert_eq!(value["payload"]["op"], "c");
    assert_eq!(value["payload"]["after"], json!({"id": 1, "v": "x"}));
    assert_eq!(value["payload"]["source"]["table"], "t");
    assert_eq!(capture.stop(), 0);
}
