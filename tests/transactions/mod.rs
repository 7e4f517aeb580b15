//! A transaction spanning tables: one `transaction.id`, orders that count events overall and
//! per table, commit order per table, and BEGIN/END records on `<prefix>.transaction`.

use serde_json::{json, Value};

use crate::support::capture::Capture;
use crate::support::{decode_avro, read_topic};

#[tokio::test]
async fn multi_table_transaction_shares_one_id_in_commit_order() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.a (id int PRIMARY KEY, v text);
         CREATE TABLE l1.b (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.*"], "", "[kafka.topic]\npartitions = 1");
    capture.start(&config).await;

    capture
        .client
        .batch_execute(
            "BEGIN;
             INSERT INTO l1.a VALUES (1, 'a1');
             INSERT INTO l1.b VALUES (1, 'b1');
             UPDATE l1.a SET v = 'a1-2' WHERE id = 1;
             INSERT INTO l1.b VALUES (2, 'b2');
             COMMIT;",
        )
        .await
        .unwrap();

    let a = capture.read("l1.a", 2).await;
    let b = capture.read("l1.b", 2).await;
    let summary = |records: &[crate::support::capture::Decoded]| -> Vec<Value> {
        records
            .iter()
            .map(|r| {
                json!([
                    r.op(),
                    r.value["after"]["v"],
                    r.value["transaction"]["total_order"],
                    r.value["transaction"]["data_collection_order"]
                ])
            })
            .collect()
    };
    assert_eq!(
        summary(&a),
        [json!(["c", "a1", 1, 1]), json!(["u", "a1-2", 3, 2])]
    );
    assert_eq!(
        summary(&b),
        [json!(["c", "b1", 2, 1]), json!(["c", "b2", 4, 2])]
    );
    let id = &a[0].value["transaction"]["id"];
    assert!(id.as_str().is_some_and(|id| id.contains(':')), "{id}");
    for record in a.iter().chain(&b) {
        assert_eq!(&record.value["transaction"]["id"], id);
    }

    let topic = format!("{}.transaction", capture.names.topic_prefix);
    let (bootstrap, registry_url) = (capture.bootstrap.clone(), capture.registry_url.clone());
    let metadata = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, &topic, 2, crate::support::capture::WAIT)
            .iter()
            .map(|r| decode_avro(&registry_url, r.value.as_deref().expect("a value")))
            .collect::<Vec<Value>>()
    })
    .await
    .unwrap();
    assert_eq!(metadata.len(), 2, "{metadata:#?}");
    assert_eq!(
        (&metadata[0]["status"], &metadata[0]["id"]),
        (&json!("BEGIN"), id)
    );
    assert_eq!(
        (&metadata[1]["status"], &metadata[1]["id"]),
        (&json!("END"), id)
    );
    assert_eq!(metadata[1]["event_count"], 4);
    assert_eq!(
        metadata[1]["data_collections"],
        json!([{"data_collection": "l1.a", "event_count": 2}, {"data_collection": "l1.b", "event_count": 2}])
    );
    assert_eq!(capture.stop(), 0);
}
