//! The Avro encoder against the test bed's schema registry: registration, schema evolution and
//! records that decode with the registered writer schemas.

use std::sync::Arc;

use serde_json::{json, Value as Json};

use pgcdc::encode::{Encoder, EncoderSettings, Format, RegistryClient, RegistryError};
use pgcdc::event::{
    ChangeEvent, Column, LogicalMessage, Op, PgType, ReplicaIdentity, SnapshotMarker,
    SourcePosition, TableSchema, TransactionEvent, TransactionStatus, Value,
};
use pgcdc::lsn::Lsn;

use crate::support::{decode_avro, shared_registry, TestNames};

fn column(name: &str, pg_type: PgType, optional: bool) -> Column {
    Column {
        name: name.into(),
        type_oid: 0,
        type_modifier: -1,
        pg_type,
        optional,
        in_identity: false,
        default: None,
    }
}

fn item_table(extra: Option<Column>) -> Arc<TableSchema> {
    let mut columns = vec![
        column("id", PgType::Int4, false),
        column("name", PgType::Text, true),
    ];
    columns.extend(extra);
    Arc::new(TableSchema {
        relation_id: 16_400,
        schema: "public".into(),
        table: "item".into(),
        columns,
        key: vec![0],
        identity: ReplicaIdentity::Default,
    })
}

fn position() -> SourcePosition {
    SourcePosition {
        commit_ts_us: 1_704_164_645_678_901,
        txid: Some(771),
        lsn: Some(Lsn(24_023_200)),
        previous_commit: Some(Lsn(24_023_128)),
        snapshot: SnapshotMarker::False,
    }
}

fn insert(table: &Arc<TableSchema>, row: Vec<Value>) -> ChangeEvent {
    ChangeEvent {
        table: Arc::clone(table),
        op: Op::Create,
        before: None,
        after: Some(row),
        source: position(),
        transaction: None,
        key_change: None,
    }
}

fn schema_id(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[1..5].try_into().unwrap())
}

async fn decode(url: &str, bytes: &[u8]) -> Json {
    let (url, bytes) = (url.to_string(), bytes.to_vec());
    tokio::task::spawn_blocking(move || decode_avro(&url, &bytes))
        .await
        .unwrap()
}

async fn versions(url: &str, subject: &str) -> Json {
    reqwest::get(format!("{url}/subjects/{subject}/versions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn avro_encoder(prefix: &str) -> Encoder {
    Encoder::new(EncoderSettings {
        topic_prefix: prefix.to_string(),
        format: Format::Avro,
        registry: Some(pgcdc::config::RegistryAccess::url(&shared_registry().url())),
        database: "shopdb".into(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn tables_register_once_per_version_and_decode() {
    let url = shared_registry().url();
    let prefix = TestNames::new().topic_prefix;
    let mut encoder = avro_encoder(&prefix).await;
    let topic = format!("{prefix}.public.item");

    let v1 = item_table(None);
    encoder.register_table(&v1).await.unwrap();
    encoder.register_table(&v1).await.unwrap();
    encoder
        .register_table(&Arc::new((*v1).clone()))
        .await
        .unwrap();
    let row = vec![Value::Int(1), Value::String("one".into())];
    let first = encoder.encode_change(&insert(&v1, row), 1_000_000).unwrap();
    assert_eq!(first.topic, topic);
    let first_value = first.value.unwrap();
    let first_key = first.key.unwrap();
    assert_eq!(versions(&url, &format!("{topic}-value")).await, json!([1]));
    assert_eq!(versions(&url, &format!("{topic}-key")).await, json!([1]));

    // A new column is a new schema version with a new id; the key schema is unchanged.
    let v2 = item_table(Some(column("note", PgType::Text, true)));
    encoder.register_table(&v2).await.unwrap();
    let row = vec![Value::Int(2), Value::Null, Value::String("new".into())];
    let second = encoder.encode_change(&insert(&v2, row), 1_000_000).unwrap();
    let second_value = second.value.unwrap();
    assert_ne!(schema_id(&first_value), schema_id(&second_value));
    assert_eq!(schema_id(&first_key), schema_id(&second.key.unwrap()));
    assert_eq!(
        versions(&url, &format!("{topic}-value")).await,
        json!([1, 2])
    );

    assert_eq!(decode(&url, &first_key).await, json!({"id": 1}));
    let decoded = decode(&url, &second_value).await;
    assert_eq!(decoded["before"], Json::Null);
    assert_eq!(
        decoded["after"],
        json!({"id": 2, "name": null, "note": "new"})
    );
    assert_eq!(decoded["op"], "c");
    assert_eq!(decoded["ts_ms"], 1_000);
    assert_eq!(
        decoded["source"],
        json!({
            "version": env!("CARGO_PKG_VERSION"), "connector": "postgresql", "name": prefix,
            "ts_ms": 1_704_164_645_678i64, "snapshot": "false", "db": "shopdb",
            "sequence": "[\"24023128\",\"24023200\"]", "ts_us": 1_704_164_645_678_901i64,
            "ts_ns": 1_704_164_645_678_901_000i64, "schema": "public", "table": "item",
            "txId": 771, "lsn": 24_023_200, "xmin": null, "origin": null, "origin_lsn": null
        })
    );
    assert_eq!(
        decode(&url, &first_value).await["after"],
        json!({"id": 1, "name": "one"})
    );
}

#[tokio::test]
async fn fixed_records_decode_with_their_registered_schemas() {
    let url = shared_registry().url();
    let prefix = TestNames::new().topic_prefix;
    let encoder = avro_encoder(&prefix).await;

    let begin = encoder
        .encode_transaction(&TransactionEvent {
            status: TransactionStatus::Begin,
            id: "771:24023128".into(),
            ts_ms: 1_704_164_645_678,
            event_count: 0,
        })
        .unwrap();
    assert_eq!(begin.topic, format!("{prefix}.transaction"));
    assert_eq!(
        decode(&url, &begin.value.unwrap()).await,
        json!({"status": "BEGIN", "id": "771:24023128", "event_count": null,
               "data_collections": null, "ts_ms": 1_704_164_645_678i64})
    );
    assert_eq!(
        decode(&url, &begin.key.unwrap()).await,
        json!({"id": "771:24023128"})
    );

    let message = encoder
        .encode_message(
            &LogicalMessage {
                prefix: "audit".into(),
                content: b"hi".to_vec(),
                transactional: true,
                source: position(),
            },
            2_000_000,
        )
        .unwrap();
    assert_eq!(message.topic, format!("{prefix}.message"));
    let value = decode(&url, &message.value.unwrap()).await;
    assert_eq!(value["op"], "m");
    assert_eq!(value["message"]["prefix"], "audit");
    assert_eq!(value["source"]["schema"], "");
    assert_eq!(
        decode(&url, &message.key.unwrap()).await,
        json!({"prefix": "audit"})
    );

    let heartbeat = encoder.encode_heartbeat(1_704_164_645_678).unwrap();
    assert_eq!(heartbeat.topic, format!("__pgcdc-heartbeat.{prefix}"));
    assert_eq!(
        decode(&url, &heartbeat.value.unwrap()).await,
        json!({"ts_ms": 1_704_164_645_678i64})
    );
    assert_eq!(
        decode(&url, &heartbeat.key.unwrap()).await,
        json!({"serverName": prefix})
    );
}

#[tokio::test]
async fn registry_client_reports_registry_errors_and_caches_schemas() {
    let url = shared_registry().url();
    let client = RegistryClient::new(&url).unwrap();
    let subject = format!("{}.public.x-value", TestNames::new().topic_prefix);

    let error = client
        .register(&subject, r#"{"type":"nope"}"#)
        .await
        .unwrap_err();
    let RegistryError::Status {
        status, error_code, ..
    } = &error
    else {
        panic!("expected a status error, got {error}");
    };
    assert_eq!((*status, *error_code), (422, Some(42201)));
    assert!(
        error.to_string().starts_with(&format!(
            "schema registry {url}/subjects/{subject}/versions answered HTTP 422 (error_code 42201): "
        )),
        "{error}"
    );

    let id = client.register(&subject, "\"long\"").await.unwrap();
    assert_eq!(client.register(&subject, "\"long\"").await.unwrap(), id);
    let fresh = RegistryClient::new(&url).unwrap();
    assert_eq!(&*fresh.schema_by_id(id).await.unwrap(), "\"long\"");
    assert!(matches!(
        fresh.schema_by_id(u32::MAX).await,
        Err(RegistryError::Status {
            status: 404,
            error_code: Some(40403),
            ..
        })
    ));
}
