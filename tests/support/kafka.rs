//! Reading what landed in Kafka, and decoding it independently of `pgcdc::encode`, so the
//! tests check the encoder instead of trusting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::random_suffix;

#[derive(Clone, Debug, PartialEq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl TestRecord {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Whether `topic` exists with at least one partition.
pub fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a metadata client");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .is_ok_and(|metadata| {
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
}

/// How many partitions `topic` has (0 when it does not exist).
pub fn partition_count(bootstrap: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a metadata client");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("the topic's metadata")
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// Each partition of `topic` as `(partition, low, high)` watermarks, `None` when the broker
/// does not answer within `timeout` or the topic does not exist. A client of the caller's, so
/// that a sampler does not connect anew each time.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Option<Vec<(i32, i64, i64)>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout).ok()?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    if partitions.is_empty() {
        return None;
    }
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout).ok()?;
            Some((partition, low, high))
        })
        .collect()
}

/// A client for [`watermarks`].
pub fn metadata_client(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "2000")
        .create()
        .expect("a metadata client")
}

/// Reads `topic` from the beginning of every partition until `expected` records arrived or
/// `timeout` passed, and returns what arrived (so a test can assert on a short read). Once
/// `expected` records arrived it reads on to each partition's high watermark as the broker
/// gives it then, and until no more records come within half a second, so records beyond
/// the expected ones (duplicates, say) are returned too.
/// Waits for the topic to exist. Blocking: consumes on the calling thread, commits nothing.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<TestRecord> {
    read_topic_with(bootstrap, &[], topic, expected, timeout)
}

/// [`read_topic`] with more librdkafka settings (a broker's SASL credentials).
pub fn read_topic_with(
    bootstrap: &str,
    options: &[(&str, String)],
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<TestRecord> {
    let deadline = Instant::now() + timeout;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // Required by librdkafka for a consumer; never joined, since partitions are assigned.
        .set("group.id", format!("testbed-reader-{}", random_suffix()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    for (key, value) in options {
        config.set(*key, value);
    }
    let consumer: BaseConsumer = config.create().expect("create reader");

    let partitions = loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(2));
        let found = metadata.ok().and_then(|m| {
            m.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        });
        match found {
            Some(ids) if !ids.is_empty() => break ids,
            _ if Instant::now() >= deadline => return Vec::new(),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign partitions");

    let mut records = Vec::new();
    // Each partition's high watermark, asked once `expected` records arrived.
    let mut ends: Option<Vec<(i32, i64)>> = None;
    loop {
        if records.len() >= expected && ends.is_none() {
            ends = Some(high_watermarks(&consumer, topic, &partitions));
        }
        let at_ends = ends
            .as_ref()
            .is_some_and(|ends| read_to(&consumer, topic, ends));
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            if let Some(ends) = ends.as_ref().filter(|_| !at_ends) {
                eprintln!("read_topic {topic}: the high watermarks {ends:?} were not reached");
            }
            break;
        }
        match consumer.poll(remaining.min(Duration::from_millis(500))) {
            // Past the high watermarks, what the last fetches brought is read too: tansu's
            // in-memory engine gives as a partition's latest offset the first offset of its
            // last record batch plus one, short of the batch's other records.
            None if at_ends => break,
            Some(Ok(message)) => records.push(TestRecord {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
                partition: message.partition(),
                offset: message.offset(),
            }),
            Some(Err(e)) => eprintln!("read_topic {topic}: {e}"),
            None => {}
        }
    }
    if records.len() < expected && expected != usize::MAX {
        let read: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
        eprintln!("{}", describe_partitions(bootstrap, topic, &read));
    }
    records
}

/// The partitions that hold records, each with its high watermark: the offset after the last
/// record the broker holds.
fn high_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i64)> {
    partitions
        .iter()
        .filter_map(|&partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic} partition {partition}: {e}"));
            (high > low).then_some((partition, high))
        })
        .collect()
}

/// Whether the consumer's position reached `ends` in every partition listed.
fn read_to<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    ends: &[(i32, i64)],
) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    ends.iter().all(|&(partition, high)| {
        positions
            .find_partition(topic, partition)
            .is_some_and(|p| matches!(p.offset(), Offset::Offset(at) if at >= high))
    })
}

/// Per partition: the broker's low/high watermarks and the offsets a reader got, for messages
/// about short reads.
pub fn describe_partitions(bootstrap: &str, topic: &str, read: &[(i32, i64)]) -> String {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create watermark reader");
    let mut text = format!("{topic}:");
    for partition in 0..16 {
        let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))
        else {
            break;
        };
        let offsets: Vec<i64> = read
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| *offset)
            .collect();
        text.push_str(&format!(
            "\n  partition {partition}: watermarks {low}..{high}, read {} records, first offsets {:?}",
            offsets.len(),
            &offsets[..offsets.len().min(5)]
        ));
    }
    text
}

/// Decodes a Confluent-framed Avro datum (magic byte 0, big-endian schema id, datum) into
/// JSON, fetching the writer schema from the registry. Unions become their branch's value;
/// bytes and decimals arrays of numbers; non-finite floats the strings "NaN", "Infinity",
/// "-Infinity" (JSON has no such numbers).
pub fn decode_avro(registry_url: &str, bytes: &[u8]) -> serde_json::Value {
    avro_to_json(decode_avro_datum(registry_url, bytes))
}

/// Decodes a Confluent-framed Avro datum into apache_avro's value model.
pub fn decode_avro_datum(registry_url: &str, bytes: &[u8]) -> apache_avro::types::Value {
    assert!(
        bytes.len() >= 5 && bytes[0] == 0,
        "not Confluent-framed Avro: {bytes:?}"
    );
    let id = u32::from_be_bytes(bytes[1..5].try_into().expect("four bytes"));
    let schema = writer_schema(registry_url, id);
    let mut datum = &bytes[5..];
    let value = apache_avro::from_avro_datum(&schema, &mut datum, None)
        .unwrap_or_else(|e| panic!("decode Avro datum with schema id {id}: {e}"));
    assert!(
        datum.is_empty(),
        "{} bytes left after the Avro datum",
        datum.len()
    );
    value
}

fn float_to_json(value: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(value) {
        Some(number) => serde_json::Value::Number(number),
        None if value.is_nan() => "NaN".into(),
        None if value > 0.0 => "Infinity".into(),
        None => "-Infinity".into(),
    }
}

fn avro_to_json(value: apache_avro::types::Value) -> serde_json::Value {
    use apache_avro::types::Value as Avro;
    match value {
        Avro::Float(f) => float_to_json(f64::from(f)),
        Avro::Double(d) => float_to_json(d),
        Avro::Union(_, inner) => avro_to_json(*inner),
        // Connect's Date, Time and Timestamp as the numbers they are on the wire.
        Avro::Date(days) | Avro::TimeMillis(days) => days.into(),
        Avro::TimestampMillis(millis) => millis.into(),
        Avro::Array(items) => items.into_iter().map(avro_to_json).collect(),
        Avro::Record(fields) => fields
            .into_iter()
            .map(|(name, value)| (name, avro_to_json(value)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Avro::Map(pairs) => pairs
            .into_iter()
            .map(|(key, value)| (key, avro_to_json(value)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => serde_json::Value::try_from(other).expect("Avro value as JSON"),
    }
}

/// Schemas by (registry, id): ids are immutable, so one fetch per process suffices.
/// Shared, not cloned: a chaos run's end checks decode millions of records.
fn writer_schema(registry_url: &str, id: u32) -> Arc<apache_avro::Schema> {
    type Schemas = HashMap<(String, u32), Arc<apache_avro::Schema>>;
    static CACHE: Mutex<Option<Schemas>> = Mutex::new(None);
    let key = (registry_url.to_owned(), id);
    if let Some(schema) = CACHE.lock().unwrap().get_or_insert_default().get(&key) {
        return schema.clone();
    }
    let url = format!("{registry_url}/schemas/ids/{id}");
    // A thread with a runtime of its own: callers may be inside a runtime, where blocking
    // on another would panic.
    let body: serde_json::Value = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime for the registry request")
            .block_on(async {
                let response = reqwest::get(&url).await.expect("GET schema by id");
                assert!(
                    response.status().is_success(),
                    "GET {url}: {}",
                    response.status()
                );
                response.json().await.expect("schema JSON")
            })
    })
    .join()
    .expect("registry request thread");
    let text = body["schema"].as_str().expect("\"schema\" field");
    let schema = Arc::new(
        apache_avro::Schema::parse_str(text)
            .unwrap_or_else(|e| panic!("schema id {id} does not parse: {e}")),
    );
    CACHE
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert(key, Arc::clone(&schema));
    schema
}
