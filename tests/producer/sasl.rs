//! SASL/SCRAM, as Amazon MSK, Redpanda Cloud and Aiven use it: cdc-source passes
//! `[kafka.options]` `sasl.*` to librdkafka and streams to a broker that requires them.

use super::insert_and_read_back;
use crate::support::capture::Capture;
use crate::support::{shared_pg, shared_registry, Broker};

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
    let value = insert_and_read_back(&capture, &broker, &registry, "through SASL").await;
    assert_eq!(value["after"]["v"], "through SASL");
    assert!(
        !capture.source_log().contains("scr@m"),
        "the SASL password was printed:\n{}",
        capture.source_log()
    );
    assert_eq!(capture.stop(), 0);
}
