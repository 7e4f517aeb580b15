//! Unchanged TOASTed values (SPEC §4): pgoutput does not resend a >2 kB value an update left
//! alone; under FULL identity the old image supplies it, otherwise the placeholder stands in.

use serde_json::{json, Value};

use crate::support::capture::Capture;

/// Stored out of line and uncompressed (STORAGE EXTERNAL), so the server really TOASTs it.
const SCHEMA: &str = "CREATE SCHEMA l1;
    CREATE TABLE l1.doc (id int PRIMARY KEY, body text, n int);
    ALTER TABLE l1.doc ALTER COLUMN body SET STORAGE EXTERNAL;";

async fn update_leaving_body_alone(identity_sql: &str) -> (String, Value) {
    let schema = format!("{SCHEMA} {identity_sql}");
    let mut capture = Capture::on_shared_testbed(&schema).await;
    let config = capture.config(&["l1.doc"], "", "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;

    let body: String = "0123456789abcdef".repeat(256);
    capture
        .client
        .execute("INSERT INTO l1.doc VALUES (1, $1, 1)", &[&body])
        .await
        .unwrap();
    capture
        .client
        .batch_execute("UPDATE l1.doc SET n = 2 WHERE id = 1")
        .await
        .unwrap();
    let records = capture.read("l1.doc", 2).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0].value["after"]["body"], body.as_str());
    assert_eq!(capture.stop(), 0);
    (body, records[1].value.clone())
}

#[tokio::test]
async fn unchanged_toast_under_default_identity_is_the_placeholder() {
    let (_, update) = update_leaving_body_alone("").await;
    assert_eq!(update["op"], "u");
    assert_eq!(update["before"], Value::Null);
    assert_eq!(
        update["after"],
        json!({"id": 1, "body": "__debezium_unavailable_value", "n": 2})
    );
}

#[tokio::test]
async fn unchanged_toast_under_full_identity_comes_from_the_old_row() {
    let (body, update) =
        update_leaving_body_alone("ALTER TABLE l1.doc REPLICA IDENTITY FULL;").await;
    assert_eq!(update["op"], "u");
    assert_eq!(update["before"], json!({"id": 1, "body": body, "n": 1}));
    assert_eq!(update["after"], json!({"id": 1, "body": body, "n": 2}));
}
