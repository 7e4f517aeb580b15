//! SASL/SCRAM, as Amazon MSK, Redpanda Cloud and Aiven use it: cdc-source passes
//! `[kafka.options]` `sasl.*` to librdkafka and streams to a broker that requires them.

use std::time::Duration;

use crate::support::capture::Capture;
use crate::support::{decode_avro, read_topic_with, shared_pg, shared_registry, Broker};

const USER: &str = "cdc";
const PASSWORD: &str = "scr@m secret";

#[tokio::test]
async fn a_broker_requiring_scram_gets_the_credentials_from_kafka_options() {
    let broker = Broker::start_with_scram_user(USER, PASSWORD).await;
    let registry = shared_registry().url();
    let mut capture = Capture::new(
        shared_pg().await,
        &broker,
        &registry,
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let options = format!(
        "[kafka.options]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{USER}\"\n\
         \"sasl.password\" = \"{PASSWORD}\""
    );
    let config = capture.config(&["l1.t"], "snapshot = \"never\"", &options);
    capture.start(&config).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (1, 'through SASL')")
        .await
        .expect("insert");
    let (bootstrap, topic, client_options) = (
        broker.bootstrap(),
        capture.topic("l1.t"),
        broker.client_options(),
    );
    let records = tokio::task::spawn_blocking(move || {
        read_topic_with(
            &bootstrap,
            &client_options,
            &topic,
            1,
            Duration::from_secs(30),
        )
    })
    .await
    .expect("reader");
    assert_eq!(records.len(), 1, "source stderr:\n{}", capture.source_log());
    let value = decode_avro(&registry, records[0].value.as_deref().expect("a value"));
    assert_eq!(value["after"]["v"], "through SASL");
    assert!(
        !capture.source_log().contains("scr@m"),
        "the SASL password was printed:\n{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);
}
