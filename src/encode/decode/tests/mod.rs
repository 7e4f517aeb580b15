//! Decoder tests: change events go through the real [`Encoder`] (Avro against an in-process
//! Confluent-compatible registry, JSON as is) and must come back as the exact [`SinkChange`].

mod malformed;
mod types;

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::*;
use crate::encode::{Encoder, EncoderSettings, Record};
use crate::event::change::{Cell, EnumType, Position, SinkColumn, SinkOp, SinkTable};
use crate::event::types::BinaryEncoding;
use crate::event::{
    ChangeEvent, Column, Op, PgType, ReplicaIdentity, SnapshotMarker, SourcePosition, TableSchema,
    TransactionBlock, Value,
};
use crate::lsn::Lsn;

const PREFIX: &str = "shop";
const COMMIT_US: i64 = 1_704_164_645_678_901;
const PROCESSED_US: i64 = 1_704_164_646_000_123;
/// The mock registry answers 500 for this id.
const FAILING_ID: u32 = 500;
const FORMATS: [Format; 2] = [Format::Avro, Format::Json];

/// Schemas registered with the mock registry (id = position + 1) and how often ids were fetched.
#[derive(Default)]
struct Registered {
    schemas: Vec<String>,
    fetches: usize,
}

type Shared = Arc<Mutex<Registered>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Registered> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn register(State(shared): State<Shared>, body: String) -> Json<serde_json::Value> {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let schema = body["schema"].as_str().unwrap().to_string();
    let mut registered = lock(&shared);
    let id = match registered.schemas.iter().position(|s| *s == schema) {
        Some(index) => index + 1,
        None => {
            registered.schemas.push(schema);
            registered.schemas.len()
        }
    };
    Json(serde_json::json!({ "id": id }))
}

async fn schema_by_id(State(shared): State<Shared>, Path(id): Path<u32>) -> Response {
    if id == FAILING_ID {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let mut registered = lock(&shared);
    registered.fetches += 1;
    let index = usize::try_from(id).unwrap().wrapping_sub(1);
    match registered.schemas.get(index) {
        Some(schema) => Json(serde_json::json!({ "schema": schema })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error_code": 40403, "message": "Schema not found"})),
        )
            .into_response(),
    }
}

/// A registry speaking the two calls encoder and decoder make; serves until the runtime ends.
async fn mock_registry() -> (String, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, shared)
}

/// An encoder and a decoder of one format, sharing a mock registry for Avro.
struct Harness {
    encoder: Encoder,
    decoder: RecordDecoder,
    registry: Option<Shared>,
}

impl Harness {
    async fn new(format: Format) -> Harness {
        Harness::for_target(format, TargetTypes::default()).await
    }

    /// A harness whose decoder writes for a target with `target`'s extension types.
    async fn for_target(format: Format, target: TargetTypes) -> Harness {
        let (url, registry) = match format {
            Format::Avro => {
                let (url, shared) = mock_registry().await;
                (Some(url), Some(shared))
            }
            Format::Json => (None, None),
        };
        let client = url
            .as_deref()
            .map(|url| Arc::new(RegistryClient::new(url).unwrap()));
        let encoder = Encoder::new(EncoderSettings {
            topic_prefix: PREFIX.to_string(),
            format,
            registry: url.as_deref().map(crate::config::RegistryAccess::url),
            database: "shopdb".to_string(),
        })
        .await
        .unwrap();
        Harness {
            encoder,
            decoder: RecordDecoder::new(format, client, target),
            registry,
        }
    }

    async fn encode(&mut self, event: &ChangeEvent) -> Record {
        self.encoder.register_table(&event.table).await.unwrap();
        self.encoder.encode_change(event, PROCESSED_US).unwrap()
    }

    async fn decode(&mut self, record: &Record) -> Result<Option<SinkChange>, DecodeError> {
        self.decoder
            .decode(record.key.as_deref(), record.value.as_deref())
            .await
    }

    async fn round_trip(&mut self, event: &ChangeEvent) -> SinkChange {
        let record = self.encode(event).await;
        self.decode(&record).await.unwrap().unwrap()
    }
}

fn column(name: &str, pg_type: PgType, optional: bool) -> Column {
    Column {
        name: name.to_string(),
        type_oid: 0,
        type_modifier: -1,
        pg_type,
        optional,
        in_identity: false,
        default: None,
    }
}

fn table(name: &str, columns: Vec<Column>, key: Vec<usize>) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        relation_id: 16_384,
        schema: "public".to_string(),
        table: name.to_string(),
        columns,
        key,
        identity: ReplicaIdentity::Default,
    })
}

fn position() -> SourcePosition {
    SourcePosition {
        commit_ts_us: COMMIT_US,
        txid: Some(771),
        lsn: Some(Lsn(24_023_200)),
        previous_commit: Some(Lsn(24_023_128)),
        snapshot: SnapshotMarker::False,
    }
}

/// The position of [`event`]'s events: the commit LSN of `transaction.id`, the change's
/// LSN, then `data_collection_order`.
const POSITION: Position = Position {
    commit_lsn: 24_023_300,
    lsn: 24_023_200,
    order: 2,
};

fn event(
    table: &Arc<TableSchema>,
    op: Op,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
) -> ChangeEvent {
    ChangeEvent {
        table: Arc::clone(table),
        op,
        before,
        after,
        source: position(),
        transaction: Some(TransactionBlock {
            id: "771:24023300".to_string(),
            total_order: 3,
            data_collection_order: 2,
        }),
        key_change: None,
    }
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

fn sink_column(name: &str, sql_type: &str, optional: bool) -> SinkColumn {
    SinkColumn {
        name: name.to_string(),
        sql_type: sql_type.to_string(),
        optional,
        enum_type: None,
    }
}

/// id integer NOT NULL (the key), name text NULL, price numeric(10,2) NOT NULL.
fn item_table() -> Arc<TableSchema> {
    table(
        "item",
        vec![
            column("id", PgType::Int4, false),
            column("name", PgType::Text, true),
            column(
                "price",
                PgType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                false,
            ),
        ],
        vec![0],
    )
}

fn item_sink_table(key: Vec<usize>) -> SinkTable {
    SinkTable {
        schema: "public".to_string(),
        table: "item".to_string(),
        columns: vec![
            sink_column("id", "integer", false),
            sink_column("name", "text", true),
            sink_column("price", "numeric(10,2)", false),
        ],
        key,
    }
}

fn item_row(id: i32, name: Option<&str>, cents: i16) -> Vec<Value> {
    vec![
        Value::Int(id),
        name.map_or(Value::Null, |name| Value::String(name.to_string())),
        Value::Decimal {
            unscaled: cents.to_be_bytes().to_vec(),
            scale: 2,
        },
    ]
}

#[tokio::test]
async fn inserts_updates_and_reads_round_trip() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let table = item_table();
        let insert = event(
            &table,
            Op::Create,
            None,
            Some(item_row(1, Some("a\"b"), -150)),
        );
        let change = harness.round_trip(&insert).await;
        assert_eq!(
            change,
            SinkChange {
                table: Arc::new(item_sink_table(vec![0])),
                op: SinkOp::Create,
                before: None,
                after: Some(vec![text("1"), text("a\"b"), text("-1.50")]),
                position: POSITION,
            },
            "{format:?}"
        );
        let update = event(
            &table,
            Op::Update,
            Some(item_row(1, None, 0)),
            Some(item_row(1, Some("ü"), 12_345)),
        );
        let updated = harness.round_trip(&update).await;
        assert_eq!(updated.op, SinkOp::Update);
        assert_eq!(
            updated.before,
            Some(vec![text("1"), Cell::Null, text("0.00")])
        );
        assert_eq!(
            updated.after,
            Some(vec![text("1"), text("ü"), text("123.45")])
        );
        assert!(
            Arc::ptr_eq(&change.table, &updated.table),
            "one SinkTable per schema pair"
        );
        let read = event(&table, Op::Read, None, Some(item_row(2, None, 1)));
        let read = harness.round_trip(&read).await;
        assert_eq!(read.op, SinkOp::Read);
        assert_eq!(read.after, Some(vec![text("2"), Cell::Null, text("0.01")]));
        // A snapshot read is placed by source.sequence: it belongs to no transaction.
        let read_at = Position {
            commit_lsn: 24_023_128,
            lsn: 0,
            order: 0,
        };
        assert_eq!(read.position, read_at, "{format:?}");
    }
}

#[tokio::test]
async fn deletes_carry_the_key_only_image_and_tombstones_decode_to_none() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let table = item_table();
        let delete = event(
            &table,
            Op::Delete,
            Some(vec![Value::Int(7), Value::Absent, Value::Absent]),
            None,
        );
        let record = harness.encode(&delete).await;
        let change = harness.decode(&record).await.unwrap().unwrap();
        assert_eq!(change.op, SinkOp::Delete);
        assert_eq!(change.after, None);
        // Absent nullable columns are null; absent NOT NULL ones get their type's zero value,
        // so only the key columns of such an image are real.
        assert_eq!(
            change.before,
            Some(vec![text("7"), Cell::Null, text("0.00")])
        );
        assert_eq!(change.table.key, vec![0]);
        let tombstone = harness.encoder.tombstone(&delete).unwrap();
        assert_eq!(
            harness.decode(&tombstone).await.unwrap(),
            None,
            "{format:?}"
        );
    }
}

#[tokio::test]
async fn truncates_and_keyless_tables_have_no_key() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let mut truncate = event(&item_table(), Op::Truncate, None, None);
        truncate.transaction = None;
        let change = harness.round_trip(&truncate).await;
        assert_eq!(change.op, SinkOp::Truncate);
        assert_eq!((change.before, change.after), (None, None));
        assert_eq!(*change.table, item_sink_table(vec![]));
        assert_eq!(
            change.position,
            Position {
                commit_lsn: 24_023_128,
                order: 0,
                ..POSITION
            }
        );

        let keyless = Arc::new(TableSchema {
            identity: ReplicaIdentity::Full,
            ..(*table("log", vec![column("line", PgType::Text, false)], vec![])).clone()
        });
        let delete = event(
            &keyless,
            Op::Delete,
            Some(vec![Value::String("x".into())]),
            None,
        );
        let record = harness.encode(&delete).await;
        assert_eq!(record.key, None);
        let change = harness.decode(&record).await.unwrap().unwrap();
        assert!(change.table.key.is_empty());
        assert_eq!(change.before, Some(vec![text("x")]));
    }
}

#[tokio::test]
async fn unavailable_values_become_unavailable_cells() {
    let placeholder_types = vec![
        PgType::Text,
        PgType::Bytea,
        PgType::Json,
        PgType::Uuid,
        PgType::Timestamptz { fraction_digits: 6 },
        PgType::Decimal {
            precision: 60,
            scale: 2,
        },
        PgType::VariableDecimal,
        PgType::Bits { length: Some(8) },
        PgType::Array(Box::new(PgType::Text)),
        PgType::Array(Box::new(PgType::Bytea)),
        PgType::Array(Box::new(PgType::Uuid)),
        PgType::Array(Box::new(PgType::Int8)),
        PgType::Array(Box::new(PgType::Int2)),
        PgType::Array(Box::new(PgType::Float4)),
        PgType::Array(Box::new(PgType::Date)),
        PgType::Array(Box::new(PgType::Decimal {
            precision: 5,
            scale: 1,
        })),
        PgType::Array(Box::new(PgType::VariableDecimal)),
        PgType::Hstore,
        PgType::HstoreMap,
        PgType::Array(Box::new(PgType::HstoreMap)),
        PgType::EncodedBytea {
            encoding: BinaryEncoding::Hex,
        },
        PgType::Array(Box::new(PgType::EncodedBytea {
            encoding: BinaryEncoding::Base64,
        })),
    ];
    let mut columns = vec![column("id", PgType::Int4, false)];
    for (index, ty) in placeholder_types.iter().enumerate() {
        columns.push(column(&format!("c{index}"), ty.clone(), index % 2 == 0));
    }
    let table = table("toasty", columns, vec![0]);
    let mut after = vec![Value::Int(1)];
    after.extend(std::iter::repeat_n(
        Value::Unavailable,
        placeholder_types.len(),
    ));
    let mut expected = vec![text("1")];
    expected.extend(std::iter::repeat_n(
        Cell::Unavailable,
        placeholder_types.len(),
    ));
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let update = event(&table, Op::Update, None, Some(after.clone()));
        let change = harness.round_trip(&update).await;
        assert_eq!(change.after.as_ref(), Some(&expected), "{format:?}");
    }
}

#[tokio::test]
async fn names_and_positions_come_from_the_source_block() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let table = Arc::new(TableSchema {
            schema: "my-schema".to_string(),
            ..(*table(
                "2024 orders",
                vec![
                    column("order id", PgType::Int4, false),
                    column("1st", PgType::Text, true),
                ],
                vec![0],
            ))
            .clone()
        });
        let mut insert = event(
            &table,
            Op::Create,
            None,
            Some(vec![Value::Int(5), Value::String("x".into())]),
        );
        insert.source.previous_commit = None;
        let change = harness.round_trip(&insert).await;
        let mut without_transaction = insert.clone();
        without_transaction.transaction = None;
        let fallback = harness.round_trip(&without_transaction).await;
        assert_eq!(
            fallback.position,
            Position {
                commit_lsn: 24_023_200,
                lsn: 24_023_200,
                order: 0,
            },
            "without a transaction block, source.sequence (here without its first element)"
        );
        assert_eq!(
            *change.table,
            SinkTable {
                schema: "my-schema".to_string(),
                table: "2024 orders".to_string(),
                columns: vec![
                    sink_column("order id", "integer", false),
                    sink_column("1st", "text", true),
                ],
                key: vec![0],
            },
            "{format:?}"
        );
        assert_eq!(
            change.position,
            Position {
                commit_lsn: 24_023_300,
                lsn: 24_023_200,
                order: 2,
            },
            "the commit LSN of transaction.id"
        );
    }
}

/// A source run's first transaction carries where streaming started as its previous commit:
/// replayed by a later run, the same change comes with another `source.sequence`, and must
/// still sit at the same position, or the sink would apply it again.
#[tokio::test]
async fn a_replayed_change_keeps_its_position_whatever_its_sequence() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let table = item_table();
        let first = event(&table, Op::Create, None, Some(item_row(1, None, 1)));
        let mut replayed = first.clone();
        replayed.source.previous_commit = Some(Lsn(24_023_150));
        let (first, replayed) = (
            harness.round_trip(&first).await,
            harness.round_trip(&replayed).await,
        );
        assert_eq!(first.position, POSITION, "{format:?}");
        assert_eq!(replayed.position, POSITION, "{format:?}");
    }
}

#[tokio::test]
async fn avro_schemas_are_fetched_once_per_id() {
    let mut harness = Harness::new(Format::Avro).await;
    let table = item_table();
    for id in 0..5 {
        let insert = event(&table, Op::Create, None, Some(item_row(id, None, 1)));
        harness.round_trip(&insert).await;
    }
    let registry = harness.registry.as_ref().unwrap();
    assert_eq!(lock(registry).fetches, 2, "key and value schema, once each");
}

#[test]
fn decoding_can_move_between_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    let mut decoder = RecordDecoder::new(Format::Json, None, TargetTypes::default());
    assert_send(&decoder.decode(None, None));
}
