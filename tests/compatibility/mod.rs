//! A real registry's compatibility rules (BACKWARD by default): a table change its value
//! subject refuses stops the source with the registry's message, the subject and the fix;
//! once the subject allows it, a restarted source delivers the change.

use std::time::Duration;

use serde_json::json;

use crate::support::capture::{Capture, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_type_change_stops_the_source_until_the_subject_allows_it() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.people (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.people"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.people VALUES (1, '10')")
        .await
        .unwrap();
    let first = capture.read("l1.people", 1).await;
    assert_eq!(first[0].value["after"]["v"], json!("10"));

    let before_change = capture.current_wal_lsn().await;
    capture
        .client
        .batch_execute(
            "ALTER TABLE l1.people ALTER COLUMN v TYPE integer USING v::integer;
             INSERT INTO l1.people VALUES (2, 20);",
        )
        .await
        .unwrap();

    let mut source = capture.source.take().expect("the source is running");
    let code = tokio::task::spawn_blocking(move || {
        let code = source.wait_exit(WAIT);
        (code, source.stderr_text())
    })
    .await
    .unwrap();
    let (code, log) = code;
    assert_eq!(code, 1, "a refused schema is a runtime error:\n{log}");
    let subject = format!("{}-value", capture.topic("l1.people"));
    let config_url = format!("{}/config/{subject}", capture.registry_url);
    let expected_start = format!(
        "error: schema registry refused the new value schema of subject \"{subject}\" (HTTP 409): \
         Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: ["
    );
    let expected_end = format!(
        "The change is incompatible under the subject's compatibility setting; allow it, then \
         restart the source: curl -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
         --data '{{\"compatibility\":\"NONE\"}}' {config_url}\n"
    );
    assert!(
        log.contains(&expected_start) && log.ends_with(&expected_end),
        "{log}"
    );
    assert!(
        capture.confirmed_flush().await <= before_change,
        "the slot must not move past the refused change"
    );
    assert!(
        capture
            .read_within("l1.people", 2, Duration::from_secs(2))
            .await
            .len()
            == 1,
        "nothing of the refused change was produced"
    );

    // The fix the message gives, as curl sends it.
    let answer = reqwest::Client::new()
        .put(&config_url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"NONE"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap(),
        json!({"compatibility": "NONE"})
    );

    capture.start(&config).await;
    let records = capture.read("l1.people", 2).await;
    assert_eq!(records.len(), 2, "{}", capture.source_log());
    // Found by its row: records of different partitions are read in no set order.
    let second = records
        .iter()
        .find(|record| record.value["after"]["id"] == json!(2))
        .expect("the second row's record");
    assert_eq!(second.value["after"], json!({"id": 2, "v": 20}));
    assert_eq!(capture.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nullable_new_column_passes_backward() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.people (id int PRIMARY KEY, v text NOT NULL);",
    )
    .await;
    let config = capture.config(&["l1.people"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.people VALUES (1, 'a');
             ALTER TABLE l1.people ADD COLUMN note text, ALTER COLUMN v TYPE varchar(20);
             INSERT INTO l1.people VALUES (2, 'b', 'n');
             ALTER TABLE l1.people ALTER COLUMN id TYPE bigint;
             INSERT INTO l1.people VALUES (3, 'c', NULL);",
        )
        .await
        .unwrap();
    let records = capture.read("l1.people", 3).await;
    let mut afters: Vec<_> = records.iter().map(|r| r.value["after"].clone()).collect();
    // Keys spread over the topic's partitions, which are read one after another.
    afters.sort_by_key(|after| after["id"].as_i64());
    assert_eq!(
        afters,
        [
            json!({"id": 1, "v": "a"}),
            json!({"id": 2, "v": "b", "note": "n"}),
            json!({"id": 3, "v": "c", "note": null}),
        ]
    );
    // The key after the key column became bigint; found by its row, since the read order
    // across partitions is not the write order.
    let third = records
        .iter()
        .find(|record| record.value["after"]["id"] == json!(3))
        .expect("the third row's record");
    assert_eq!(third.key, json!({"id": 3}));
    assert_eq!(capture.stop(), 0);
}
