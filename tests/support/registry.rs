//! An in-memory, Confluent-compatible schema registry speaking the real REST API (SPEC §8).
//!
//! It runs on a runtime thread of its own so that one registry can serve tests whose
//! `#[tokio::test]` runtimes come and go.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Default)]
struct Store {
    /// Distinct schemas; the id of `schemas[i]` is `i + 1`.
    schemas: Vec<StoredSchema>,
    /// Each subject's versions: `versions[v - 1]` is the schema id of version `v`.
    subjects: BTreeMap<String, Vec<usize>>,
    compatibility: HashMap<String, String>,
}

#[derive(PartialEq)]
struct StoredSchema {
    schema_type: String,
    schema: String,
}

type Shared = Arc<Mutex<Store>>;

pub struct SchemaRegistry {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchemaRegistry {
    /// Serves on a free loopback port until dropped.
    pub fn start() -> SchemaRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the registry port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("registry address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("schema-registry".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("registry runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("registry listener");
                    axum::serve(listener, router())
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .expect("serve the registry");
                });
            })
            .expect("spawn the registry thread");
        SchemaRegistry {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One registry per test process. Ids are global, so tests isolate by subject name
/// (subjects derive from topic names, which carry the test's prefix).
pub fn shared_registry() -> &'static SchemaRegistry {
    static SHARED: OnceLock<SchemaRegistry> = OnceLock::new();
    SHARED.get_or_init(SchemaRegistry::start)
}

fn router() -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/schemas/ids/{id}", get(get_schema))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_compatibility),
        )
        .route("/config", get(get_global_config))
        .route("/config/{subject}", get(get_config).put(put_config))
        .with_state(Shared::default())
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    reply(StatusCode::OK, body)
}

/// Confluent's error body: `{"error_code": 40401, "message": ...}`; the HTTP status is the
/// first three digits of the code.
fn error(code: u32, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16((code / 100) as u16).expect("valid status");
    reply(
        status,
        json!({"error_code": code, "message": message.into()}),
    )
}

fn subject_not_found(subject: &str) -> Response {
    error(40401, format!("Subject '{subject}' not found."))
}

/// Parses `{"schema": "...", "schemaType": "..."}` whatever the request's content type,
/// and checks that an Avro schema parses, as the real registry does. Errors are 42201.
fn parse_schema_body(body: &Bytes) -> Result<StoredSchema, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid request body: {e}"))?;
    let schema = value
        .get("schema")
        .and_then(Value::as_str)
        .ok_or("Either the input schema or one its references is invalid")?
        .to_owned();
    let schema_type = value
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO")
        .to_owned();
    if schema_type == "AVRO" {
        if let Err(e) = apache_avro::Schema::parse_str(&schema) {
            return Err(format!("Invalid schema: {e}"));
        }
    }
    Ok(StoredSchema {
        schema_type,
        schema,
    })
}

fn schema_json(subject: &str, version: usize, id: usize, stored: &StoredSchema) -> Value {
    let mut body = json!({
        "subject": subject,
        "version": version,
        "id": id,
        "schema": stored.schema,
    });
    if stored.schema_type != "AVRO" {
        body["schemaType"] = json!(stored.schema_type);
    }
    body
}

async fn list_subjects(State(store): State<Shared>) -> Response {
    let store = store.lock().unwrap();
    ok(json!(store.subjects.keys().collect::<Vec<_>>()))
}

async fn list_versions(State(store): State<Shared>, Path(subject): Path<String>) -> Response {
    let store = store.lock().unwrap();
    match store.subjects.get(&subject) {
        Some(ids) => ok(json!((1..=ids.len()).collect::<Vec<_>>())),
        None => subject_not_found(&subject),
    }
}

async fn register(
    State(store): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let candidate = match parse_schema_body(&body) {
        Ok(schema) => schema,
        Err(message) => return error(42201, message),
    };
    let mut store = store.lock().unwrap();
    let id = match store.schemas.iter().position(|s| *s == candidate) {
        Some(index) => index + 1,
        None => {
            store.schemas.push(candidate);
            store.schemas.len()
        }
    };
    let versions = store.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    ok(json!({ "id": id }))
}

async fn lookup(State(store): State<Shared>, Path(subject): Path<String>, body: Bytes) -> Response {
    let candidate = match parse_schema_body(&body) {
        Ok(schema) => schema,
        Err(message) => return error(42201, message),
    };
    let store = store.lock().unwrap();
    let Some(versions) = store.subjects.get(&subject) else {
        return subject_not_found(&subject);
    };
    let found = versions
        .iter()
        .enumerate()
        .find(|(_, &id)| store.schemas[id - 1] == candidate);
    match found {
        Some((index, &id)) => ok(schema_json(&subject, index + 1, id, &store.schemas[id - 1])),
        None => error(40403, "Schema not found"),
    }
}

async fn get_version(
    State(store): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let store = store.lock().unwrap();
    let Some(versions) = store.subjects.get(&subject) else {
        return subject_not_found(&subject);
    };
    let index = match version.as_str() {
        "latest" | "-1" => versions.len().checked_sub(1),
        other => match other.parse::<usize>() {
            Ok(v) if v >= 1 => Some(v - 1),
            _ => {
                return error(
                    42202,
                    "The specified version is not a valid version id. \
                     Allowed values are between [1, 2^31-1] and the string \"latest\"",
                )
            }
        },
    };
    match index.and_then(|i| versions.get(i).map(|&id| (i, id))) {
        Some((i, id)) => ok(schema_json(&subject, i + 1, id, &store.schemas[id - 1])),
        None => error(40402, format!("Version {version} not found.")),
    }
}

async fn get_schema(State(store): State<Shared>, Path(id): Path<String>) -> Response {
    let store = store.lock().unwrap();
    let stored = id
        .parse::<usize>()
        .ok()
        .filter(|&id| id >= 1)
        .and_then(|id| store.schemas.get(id - 1));
    match stored {
        Some(stored) => {
            let mut body = json!({ "schema": stored.schema });
            if stored.schema_type != "AVRO" {
                body["schemaType"] = json!(stored.schema_type);
            }
            ok(body)
        }
        None => error(40403, "Schema not found"),
    }
}

/// Every schema is compatible: tests exercise the client's protocol, not evolution rules.
async fn check_compatibility(
    State(store): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(message) = parse_schema_body(&body) {
        return error(42201, message);
    }
    let store = store.lock().unwrap();
    if version != "latest" && !store.subjects.contains_key(&subject) {
        return subject_not_found(&subject);
    }
    ok(json!({ "is_compatible": true }))
}

async fn get_global_config() -> Response {
    ok(json!({ "compatibilityLevel": "BACKWARD" }))
}

async fn get_config(State(store): State<Shared>, Path(subject): Path<String>) -> Response {
    let store = store.lock().unwrap();
    match store.compatibility.get(&subject) {
        Some(level) => ok(json!({ "compatibilityLevel": level })),
        None => error(
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        ),
    }
}

async fn put_config(
    State(store): State<Shared>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let level = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("compatibility")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(level) = level else {
        return error(42203, "Invalid compatibility level");
    };
    store
        .lock()
        .unwrap()
        .compatibility
        .insert(subject, level.clone());
    ok(json!({ "compatibility": level }))
}
