//! The producer against a real Kafka-protocol broker (tansu): topic creation, delivery
//! reports feeding the acknowledged-LSN tracker, and what consumers read back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcdc::kafka::progress::Progress;
use pgcdc::kafka::{Producer, ProducerSettings, TopicSettings, BACKPRESSURE_PAUSE};
use pgcdc::lsn::Lsn;

use crate::support::capture::Capture;
use crate::support::kafka::partition_count;
use crate::support::{decode_avro, read_topic, read_topic_with, shared_broker, Broker, TestNames};

mod sasl;
mod tls;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Inserts a row with `v` = `text` into the capture's `l1.t`, reads its one record back from
/// `broker` as its clients must connect (SASL, TLS), and decodes the value with the schema
/// from the plain registry at `registry_url`.
async fn insert_and_read_back(
    capture: &Capture<'_>,
    broker: &Broker,
    registry_url: &str,
    text: &str,
) -> serde_json::Value {
    capture
        .client
        .execute("INSERT INTO l1.t VALUES (1, $1)", &[&text])
        .await
        .expect("insert");
    let (bootstrap, topic, client_options) = (
        broker.bootstrap(),
        capture.topic("l1.t"),
        broker.client_options(),
    );
    let records = tokio::task::spawn_blocking(move || {
        read_topic_with(&bootstrap, &client_options, &topic, 1, TIMEOUT)
    })
    .await
    .expect("reader");
    assert_eq!(records.len(), 1, "source stderr:\n{}", capture.source_log());
    decode_avro(registry_url, records[0].value.as_deref().expect("a value"))
}

fn producer(bootstrap: String, topic: TopicSettings, progress: &Arc<Mutex<Progress>>) -> Producer {
    let settings = ProducerSettings {
        brokers: bootstrap,
        options: BTreeMap::new(),
        topic,
    };
    Producer::new(&settings, Arc::clone(progress)).expect("create producer")
}

#[tokio::test]
async fn a_thousand_records_are_acknowledged_and_read_back_in_key_order() {
    let broker = shared_broker().await;
    let topic = format!("{}.public.item", TestNames::new().topic_prefix);
    let start = Lsn(0x1_0000);
    let progress = Arc::new(Mutex::new(Progress::new(start)));
    let settings = TopicSettings {
        partitions: Some(4),
        ..TopicSettings::default()
    };
    let mut producer = producer(broker.bootstrap(), settings, &progress);
    producer
        .check_connectivity(TIMEOUT)
        .expect("tansu answers metadata");
    producer.ensure_topic(&topic).await.expect("create topic");
    producer.ensure_topic(&topic).await.expect("cached");
    let bootstrap = broker.bootstrap();
    let topic_for_metadata = topic.clone();
    let partitions =
        tokio::task::spawn_blocking(move || partition_count(&bootstrap, &topic_for_metadata))
            .await
            .unwrap();
    assert_eq!(partitions, 4);

    // 100 transactions of 10 records over 20 keys; values number the records in stream order.
    let (_shutdown, running) = tokio::sync::watch::channel(false);
    let mut last_commit = start;
    for transaction in 0..100u64 {
        let ticket = progress.lock().unwrap().begin();
        for i in 0..10u64 {
            let sequence = transaction * 10 + i;
            let key = format!("row-{}", sequence % 20);
            let value = sequence.to_string();
            while !producer
                .send_or_full(
                    &topic,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[("seq", value.as_bytes())],
                    ticket,
                    &running,
                )
                .expect("send")
            {
                tokio::time::sleep(BACKPRESSURE_PAUSE).await;
            }
            progress.lock().unwrap().produced(ticket);
        }
        last_commit = Lsn(start.0 + (transaction + 1) * 0x100);
        progress.lock().unwrap().commit(ticket, last_commit);
    }

    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (confirmable, inflight) = {
            let progress = progress.lock().unwrap();
            (progress.confirmable(), progress.inflight_records())
        };
        if confirmable == last_commit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmable stuck at {confirmable} (inflight {inflight}), fatal: {:?}",
            producer.take_fatal_error()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(progress.lock().unwrap().inflight_records(), 0);
    assert!(producer.take_fatal_error().is_none());
    producer.flush(TIMEOUT).expect("flush");

    let bootstrap = broker.bootstrap();
    let read = topic.clone();
    let records = tokio::task::spawn_blocking(move || read_topic(&bootstrap, &read, 1000, TIMEOUT))
        .await
        .unwrap();
    assert_eq!(records.len(), 1000);

    let mut per_key: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    let mut partitions_per_key: HashMap<Vec<u8>, BTreeSet<i32>> = HashMap::new();
    for record in &records {
        let key = record.key.clone().expect("keyed record");
        let value: u64 = String::from_utf8(record.value.clone().expect("value"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(record.header("seq"), Some(value.to_string().as_bytes()));
        per_key.entry(key.clone()).or_default().push(value);
        partitions_per_key
            .entry(key)
            .or_default()
            .insert(record.partition);
    }
    assert_eq!(per_key.len(), 20);
    for (key, values) in &per_key {
        let row: u64 = String::from_utf8_lossy(key)
            .strip_prefix("row-")
            .unwrap()
            .parse()
            .unwrap();
        let expected: Vec<u64> = (0..50).map(|n| n * 20 + row).collect();
        assert_eq!(values, &expected, "records of key row-{row} out of order");
        assert_eq!(partitions_per_key[key].len(), 1, "key row-{row} split");
    }
}

#[tokio::test]
async fn an_existing_topic_is_fine_and_broker_defaults_are_accepted() {
    let broker = shared_broker().await;
    let names = TestNames::new();
    let progress = Arc::new(Mutex::new(Progress::new(Lsn::ZERO)));
    let mut producer = producer(broker.bootstrap(), TopicSettings::default(), &progress);

    let existing = format!("{}.public.existing", names.topic_prefix);
    broker.create_topic(&existing, 2).await;
    producer
        .ensure_topic(&existing)
        .await
        .expect("an existing topic");

    // Partition count and replication factor left to the broker (-1).
    let fresh = format!("{}.public.fresh", names.topic_prefix);
    producer
        .ensure_topic(&fresh)
        .await
        .expect("broker defaults");

    let bootstrap = broker.bootstrap();
    let counts = tokio::task::spawn_blocking(move || {
        (
            partition_count(&bootstrap, &existing),
            partition_count(&bootstrap, &fresh),
        )
    })
    .await
    .unwrap();
    assert_eq!(counts.0, 2);
    assert!(counts.1 >= 1, "the new topic has no partitions");
}

/// Sends one batch of `(key, value)` records under one ticket and waits until all are acked.
async fn send_acknowledged(
    producer: &mut Producer,
    progress: &Arc<Mutex<Progress>>,
    topic: &str,
    records: &[(String, String)],
    commit: Lsn,
) {
    let ticket = progress.lock().unwrap().begin();
    for (key, value) in records {
        progress.lock().unwrap().produced(ticket);
        producer
            .send(
                topic,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[],
                ticket,
            )
            .expect("room in the queue");
    }
    progress.lock().unwrap().commit(ticket, commit);
    let acknowledged = crate::support::capture::eventually(TIMEOUT, || async {
        progress.lock().unwrap().confirmable() == commit
    })
    .await;
    assert!(acknowledged, "{commit} was not acknowledged");
}

#[tokio::test]
async fn the_compacted_state_reader_sees_the_latest_value_of_every_key() {
    let broker = shared_broker().await;
    let topic = format!("__pgcdc-offsets.{}", TestNames::new().topic_prefix);
    let progress = Arc::new(Mutex::new(Progress::new(Lsn(0x100))));
    let settings = TopicSettings {
        partitions: Some(1),
        cleanup_policy: Some("compact".to_owned()),
        ..TopicSettings::default()
    };
    let mut producer = producer(broker.bootstrap(), settings, &progress);
    producer.ensure_topic(&topic).await.expect("create topic");
    // One lone record, then batches rewriting one key many times, as progress records are.
    let first = vec![("initial".to_owned(), "done".to_owned())];
    send_acknowledged(&mut producer, &progress, &topic, &first, Lsn(0x200)).await;
    for round in 0..3u64 {
        let batch: Vec<(String, String)> = (0..40)
            .map(|chunk| ("table".to_owned(), format!("{round}-{chunk}")))
            .collect();
        send_acknowledged(&mut producer, &progress, &topic, &batch, Lsn(0x300 + round)).await;
        let (bootstrap, read) = (broker.bootstrap(), topic.clone());
        let latest = tokio::task::spawn_blocking(move || {
            pgcdc::kafka::read_latest(&bootstrap, &BTreeMap::new(), &read, TIMEOUT)
        })
        .await
        .unwrap()
        .expect("read the state");
        let expected: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"initial".to_vec(), b"done".to_vec()),
            (b"table".to_vec(), format!("{round}-39").into_bytes()),
        ]
        .into();
        assert_eq!(latest, expected, "after round {round}");
    }
}
