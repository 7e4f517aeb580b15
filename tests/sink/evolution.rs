//! Schema evolution and target outages mid-stream.

use std::time::Duration;

use super::target::Target;
use crate::support::capture::Capture;
use crate::support::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_column_is_added_to_the_target() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    target.start();
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.t SELECT g, 'v' || g FROM generate_series(1, 20) g;
             ALTER TABLE l1.t ADD COLUMN price numeric(8,2);
             INSERT INTO l1.t SELECT g, 'w' || g, g / 4.0 FROM generate_series(21, 30) g;
             UPDATE l1.t SET price = 9.99 WHERE id = 1;",
        )
        .await
        .expect("workload");
    target.settle(&["l1.t -> l1.t: ok (30 rows)"]);
    assert_eq!(
        target
            .rows("SELECT id || ':' || coalesce(price::text, '-') FROM l1.t WHERE id IN (1, 2, 22) ORDER BY id")
            .await,
        ["1:9.99", "2:-", "22:5.50"]
    );
    assert_eq!(capture.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_rides_out_a_target_outage() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, n int NOT NULL);",
    )
    .await;
    let config = capture.config(&["l1.*"], "snapshot = \"never\"", "");
    capture.start(&config).await;
    let target_cluster = PgCluster::new().await;
    let mut target = Target::on(&target_cluster, &capture, "").await;
    target.start();
    capture
        .client
        .batch_execute("INSERT INTO l1.t SELECT g, 0 FROM generate_series(1, 1000) g")
        .await
        .expect("first rows");
    target.settle(&["l1.t -> l1.t: ok (1000 rows)"]);

    target_cluster.stop().await;
    for round in 1..=5 {
        capture
            .client
            .batch_execute(&format!(
                "UPDATE l1.t SET n = n + 1 WHERE id % 5 = {};
                 INSERT INTO l1.t SELECT g, {round} FROM generate_series({round} * 1000 + 1, {round} * 1000 + 200) g;",
                round % 5
            ))
            .await
            .expect("writes during the outage");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    target_cluster.start().await;
    target.reconnect(&target_cluster).await;
    target.settle(&["l1.t -> l1.t: ok (2000 rows)"]);
    let sink = target.sink.as_ref().expect("sink running");
    assert!(
        sink.stderr_text()
            .contains("applying interrupted; resuming from the offsets stored in the target"),
        "{}",
        sink.stderr_text()
    );
    assert_eq!(capture.stop(), 0);
}
