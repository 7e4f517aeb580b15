//! Smoke tests of the test bed itself, so a failure elsewhere can be trusted to be the
//! connector's and not the harness's.

use std::process::Command;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::support::postgres::{bin_dir, REPLICATOR};
use crate::support::{
    decode_avro, read_topic, shared_broker, shared_pg, shared_registry, Broker, PgCluster,
    TestNames,
};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn logical_decoding_works_through_a_scram_replication_connection() {
    let pg = shared_pg().await;
    let names = TestNames::new();
    let client = names.create_database(pg).await;
    let guard = names.guard(pg);
    client
        .batch_execute(&format!(
            "CREATE TABLE item (id int PRIMARY KEY, name text);
             GRANT SELECT ON item TO {REPLICATOR};
             CREATE PUBLICATION {} FOR TABLE item;",
            names.publication
        ))
        .await
        .unwrap();

    // The slot is created the way the source connects: `replication=database` as the
    // replicator, authenticated with SCRAM.
    let dsn = format!("{}&replication=database", pg.url(&names.db, REPLICATOR));
    let out = Command::new(bin_dir().join("pg_recvlogical"))
        .args(["-d", &dsn, "--slot", &names.slot])
        .args(["--create-slot", "--plugin", "test_decoding"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_recvlogical --create-slot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    client
        .batch_execute("INSERT INTO item VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let changes: Vec<String> = client
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&names.slot],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let inserts: Vec<_> = changes
        .iter()
        .filter(|c| c.starts_with("table public.item: INSERT"))
        .collect();
    assert_eq!(inserts.len(), 2, "{changes:#?}");

    drop(guard);
    let left: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)
                  + (SELECT count(*) FROM pg_publication WHERE pubname = $2)",
            &[&names.slot, &names.publication],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the guard left its slot or publication behind");
}

#[tokio::test]
async fn own_cluster_survives_restart_and_crash() {
    let pg = PgCluster::new().await;
    let client = pg.superuser_client("postgres").await;
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1);")
        .await
        .unwrap();
    let port = pg.port();

    pg.restart().await;
    pg.kill().await;
    pg.start().await;

    assert_eq!(pg.port(), port);
    let client = pg.superuser_client("postgres").await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: &str) {
    let headers = OwnedHeaders::new().insert(Header {
        key: "origin",
        value: Some("smoke"),
    });
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
}

fn values(records: &[crate::support::TestRecord]) -> Vec<String> {
    let mut values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    values.sort();
    values
}

#[tokio::test]
async fn broker_round_trip() {
    let broker = shared_broker().await;
    let topic = format!("{}.public.item", TestNames::new().topic_prefix);
    broker.create_topic(&topic, 3).await;

    let producer = producer(&broker.bootstrap());
    for i in 1..=3 {
        produce(&producer, &topic, &format!("k{i}"), &format!("v{i}")).await;
    }

    let records = read_topic(&broker.bootstrap(), &topic, 3, READ_TIMEOUT);
    assert_eq!(values(&records), ["v1", "v2", "v3"]);
    for record in &records {
        assert_eq!(record.header("origin"), Some(&b"smoke"[..]));
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        assert_eq!(
            key.replace('k', "v").as_bytes(),
            record.value.as_deref().unwrap()
        );
    }
    // Nothing beyond what was produced.
    let again = read_topic(&broker.bootstrap(), &topic, 4, Duration::from_secs(2));
    assert_eq!(again.len(), 3);
}

#[tokio::test]
async fn persistent_broker_keeps_data_across_restart() {
    let broker = Broker::start_persistent().await;
    let topic = format!("{}.public.item", TestNames::new().topic_prefix);
    broker.create_topic(&topic, 1).await;
    let producer = producer(&broker.bootstrap());
    produce(&producer, &topic, "a", "before-1").await;
    produce(&producer, &topic, "b", "before-2").await;

    broker.restart().await;
    // A fresh producer: the old one's idempotence state belongs to the previous process.
    let producer = self::producer(&broker.bootstrap());
    produce(&producer, &topic, "c", "after").await;

    let records = read_topic(&broker.bootstrap(), &topic, 3, READ_TIMEOUT);
    assert_eq!(values(&records), ["after", "before-1", "before-2"]);
}

const SCHEMA_V1: &str = r#"{"type":"record","name":"Item","fields":[{"name":"id","type":"int"}]}"#;
const SCHEMA_V2: &str = r#"{"type":"record","name":"Item","fields":[{"name":"id","type":"int"},{"name":"name","type":["null","string"],"default":null}]}"#;

/// V2 plus a required field without a default.
const SCHEMA_V3_REQUIRED: &str = r#"{"type":"record","name":"Item","fields":[{"name":"id","type":"int"},{"name":"name","type":["null","string"],"default":null},{"name":"qty","type":"int"}]}"#;
/// Only an optional field.
const SCHEMA_V4_NO_ID: &str = r#"{"type":"record","name":"Item","fields":[{"name":"name","type":["null","string"],"default":null}]}"#;
/// Only a required field the latest version lacks.
const SCHEMA_V5_QTY_ONLY: &str =
    r#"{"type":"record","name":"Item","fields":[{"name":"qty","type":"int"}]}"#;

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn registry_speaks_the_confluent_api() {
    use reqwest::Method;
    let base = shared_registry().url();
    let subject = format!("{}.public.item-value", TestNames::new().topic_prefix);
    let versions = format!("{base}/subjects/{subject}/versions");

    let (status, first) = call(
        Method::POST,
        versions.clone(),
        Some(json!({"schema": SCHEMA_V1})),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = call(
        Method::POST,
        versions.clone(),
        Some(json!({"schema": SCHEMA_V1})),
    )
    .await;
    assert_eq!(first["id"], again["id"], "same schema, same id");
    let (_, second) = call(
        Method::POST,
        versions.clone(),
        Some(json!({"schema": SCHEMA_V2})),
    )
    .await;
    assert_ne!(first["id"], second["id"]);

    let (_, list) = call(Method::GET, versions.clone(), None).await;
    assert_eq!(list, json!([1, 2]));
    let (_, latest) = call(Method::GET, format!("{versions}/latest"), None).await;
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["id"], second["id"]);
    assert_eq!(latest["subject"], subject.as_str());
    assert_eq!(latest["schema"], SCHEMA_V2);

    let (_, by_id) = call(
        Method::GET,
        format!("{base}/schemas/ids/{}", first["id"]),
        None,
    )
    .await;
    assert_eq!(by_id["schema"], SCHEMA_V1);
    let (_, found) = call(
        Method::POST,
        format!("{base}/subjects/{subject}"),
        Some(json!({"schema": SCHEMA_V1})),
    )
    .await;
    assert_eq!(found["version"], 1);
    let (status, compatible) = call(
        Method::POST,
        format!("{base}/compatibility/subjects/{subject}/versions/latest"),
        Some(json!({"schema": SCHEMA_V2})),
    )
    .await;
    assert_eq!((status, compatible), (200, json!({"is_compatible": true})));
    let (_, subjects) = call(Method::GET, format!("{base}/subjects"), None).await;
    assert!(subjects.as_array().unwrap().contains(&json!(subject)));

    let (status, missing) = call(
        Method::GET,
        format!("{base}/subjects/nope-{subject}/versions/latest"),
        None,
    )
    .await;
    assert_eq!((status, &missing["error_code"]), (404, &json!(40401)));
    assert!(missing["message"].is_string());
    let (status, missing) = call(Method::GET, format!("{versions}/7"), None).await;
    assert_eq!((status, &missing["error_code"]), (404, &json!(40402)));
    let (status, missing) = call(Method::GET, format!("{base}/schemas/ids/999999"), None).await;
    assert_eq!((status, &missing["error_code"]), (404, &json!(40403)));
    let (status, invalid) = call(
        Method::POST,
        versions,
        Some(json!({"schema": "{\"type\": \"nope\"}"})),
    )
    .await;
    assert_eq!((status, &invalid["error_code"]), (422, &json!(42201)));
}

/// BACKWARD by default, as Confluent and Redpanda: a new required field is refused with 409,
/// an optional one with a default is not; the levels are set and read with Confluent's shapes.
#[tokio::test]
async fn registry_enforces_compatibility_levels() {
    use crate::support::registry::{Compatibility, SchemaRegistry};
    use reqwest::Method;
    let registry = SchemaRegistry::start();
    let base = registry.url();
    let subject = "shop.l1.people-value";
    let versions = format!("{base}/subjects/{subject}/versions");
    let config = format!("{base}/config/{subject}");
    let register = |schema: &'static str| {
        call(
            Method::POST,
            versions.clone(),
            Some(json!({ "schema": schema })),
        )
    };

    assert_eq!(
        call(Method::GET, format!("{base}/config"), None).await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    let (status, unset) = call(Method::GET, config.clone(), None).await;
    assert_eq!((status, &unset["error_code"]), (404, &json!(40408)));
    assert_eq!(
        call(Method::GET, format!("{config}?defaultToGlobal=true"), None).await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );

    let (status, v1) = register(SCHEMA_V1).await;
    assert_eq!(status, 200, "{v1}");
    let (status, v2) = register(SCHEMA_V2).await;
    assert_eq!(
        status, 200,
        "an optional field with a default is BACKWARD: {v2}"
    );
    let (status, refused) = register(SCHEMA_V3_REQUIRED).await;
    assert_eq!(
        (status, &refused["error_code"]),
        (409, &json!(409)),
        "{refused}"
    );
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: ["
        )) && message.contains("'BACKWARD'"),
        "{message}"
    );
    let (status, compatible) = call(
        Method::POST,
        format!("{base}/compatibility/subjects/{subject}/versions/latest?verbose=true"),
        Some(json!({ "schema": SCHEMA_V3_REQUIRED })),
    )
    .await;
    assert_eq!((status, &compatible["is_compatible"]), (200, &json!(false)));
    assert!(!compatible["messages"].as_array().unwrap().is_empty());
    // A schema the subject already has is answered with its id, whatever the level.
    assert_eq!(register(SCHEMA_V1).await, (200, v1.clone()));

    // FORWARD: the old schema must read the new data, so adding a required field is fine;
    // FULL_TRANSITIVE: dropping the required id is not, as version 1 could not read the data.
    assert_eq!(
        call(
            Method::PUT,
            config.clone(),
            Some(json!({"compatibility": "FORWARD"}))
        )
        .await,
        (200, json!({"compatibility": "FORWARD"}))
    );
    let (status, _) = register(SCHEMA_V3_REQUIRED).await;
    assert_eq!(status, 200);
    registry.set_compatibility(Some(subject), Compatibility::FullTransitive);
    assert_eq!(
        call(Method::GET, config.clone(), None).await,
        (200, json!({"compatibilityLevel": "FULL_TRANSITIVE"}))
    );
    let (status, _) = register(SCHEMA_V4_NO_ID).await;
    assert_eq!(status, 409, "v1 cannot read data without its required id");

    // NONE accepts anything; deleting the subject's level brings back the global one.
    let (status, _) = call(
        Method::PUT,
        config.clone(),
        Some(json!({"compatibility": "none"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = register(SCHEMA_V4_NO_ID).await;
    assert_eq!(status, 200);
    assert_eq!(
        call(Method::DELETE, config.clone(), None).await,
        (200, json!({"compatibilityLevel": "NONE"}))
    );
    assert_eq!(
        registry.compatibility(Some(subject)),
        Compatibility::Backward
    );
    let (status, _) = register(SCHEMA_V5_QTY_ONLY).await;
    assert_eq!(
        status, 409,
        "BACKWARD again after the subject's level is deleted"
    );
    let (status, bad) = call(
        Method::PUT,
        format!("{base}/config"),
        Some(json!({"compatibility": "SIDEWAYS"})),
    )
    .await;
    assert_eq!((status, &bad["error_code"]), (422, &json!(42203)));
    assert_eq!(
        call(
            Method::PUT,
            format!("{base}/config"),
            Some(json!({"compatibility": "NONE"}))
        )
        .await,
        (200, json!({"compatibility": "NONE"}))
    );
    let (status, _) = register(SCHEMA_V5_QTY_ONLY).await;
    assert_eq!(
        status, 200,
        "the global NONE applies to a subject without a level"
    );
}

#[tokio::test]
async fn decode_avro_reads_confluent_framing() {
    let registry = shared_registry();
    let subject = format!("{}.public.item-value", TestNames::new().topic_prefix);
    let (_, registered) = call(
        reqwest::Method::POST,
        format!("{}/subjects/{subject}/versions", registry.url()),
        Some(json!({"schema": SCHEMA_V2})),
    )
    .await;
    let id = registered["id"].as_u64().unwrap() as u32;

    let schema = apache_avro::Schema::parse_str(SCHEMA_V2).unwrap();
    let datum = apache_avro::types::Value::Record(vec![
        ("id".into(), apache_avro::types::Value::Int(7)),
        (
            "name".into(),
            apache_avro::types::Value::Union(1, Box::new("seven".into())),
        ),
    ]);
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend(apache_avro::to_avro_datum(&schema, datum).unwrap());

    let decoded = tokio::task::spawn_blocking({
        let url = registry.url();
        move || decode_avro(&url, &framed)
    })
    .await
    .unwrap();
    assert_eq!(decoded, json!({"id": 7, "name": "seven"}));
}
