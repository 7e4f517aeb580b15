//! An in-memory, Confluent-compatible schema registry speaking the real REST API (SPEC §8).
//!
//! It runs on a runtime thread of its own so that one registry can serve tests whose
//! `#[tokio::test]` runtimes come and go.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Default)]
struct Store {
    /// Distinct schemas; the id of `schemas[i]` is `i + 1`.
    schemas: Vec<StoredSchema>,
    /// Each subject's versions: `versions[v - 1]` is the schema id of version `v`.
    subjects: BTreeMap<String, Vec<usize>>,
    /// The global compatibility level; `None` is the real registries' default, BACKWARD.
    global: Option<Compatibility>,
    /// Subject-level compatibility, set with `PUT /config/{subject}`.
    compatibility: HashMap<String, Compatibility>,
}

impl Store {
    /// The level that applies to `subject`: its own, else the global one.
    fn level(&self, subject: &str) -> Compatibility {
        self.compatibility
            .get(subject)
            .copied()
            .or(self.global)
            .unwrap_or(Compatibility::Backward)
    }
}

/// Confluent's compatibility levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compatibility {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Compatibility {
    const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level as the registry does: case-insensitively.
    pub fn parse(text: &str) -> Option<Compatibility> {
        Compatibility::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }

    /// Whether the new schema must read data written with the old ones.
    fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether the old schemas must read data written with the new one.
    fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }
}

#[derive(PartialEq)]
struct StoredSchema {
    schema_type: String,
    schema: String,
}

type Shared = Arc<Mutex<Store>>;

pub struct SchemaRegistry {
    addr: SocketAddr,
    store: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchemaRegistry {
    /// Serves on a free loopback port until dropped.
    pub fn start() -> SchemaRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the registry port");
        SchemaRegistry::serve(listener, None)
    }

    /// Serves on `address` (e.g. `0.0.0.0:8081`) until dropped: the registry as a program of
    /// its own, for the docker smoke test (tests/docker/schema-registry.rs).
    pub fn start_on(address: &str) -> std::io::Result<SchemaRegistry> {
        let listener = std::net::TcpListener::bind(address)?;
        Ok(SchemaRegistry::serve(listener, None))
    }

    /// A registry that answers only requests with HTTP basic auth as `user` / `password`, and
    /// others with 401 and Confluent's error body.
    pub fn start_with_basic_auth(user: &str, password: &str) -> SchemaRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the registry port");
        SchemaRegistry::serve(
            listener,
            Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{password}"))
            )),
        )
    }

    fn serve(listener: std::net::TcpListener, authorization: Option<String>) -> SchemaRegistry {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("registry address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let store = Shared::default();
        let state = Arc::clone(&store);
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
                    let router = match authorization {
                        Some(expected) => router(state).layer(
                            axum::middleware::from_fn_with_state(Arc::new(expected), require_auth),
                        ),
                        None => router(state),
                    };
                    axum::serve(listener, router)
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
            store,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets `subject`'s compatibility level, or the global one for `None`, as
    /// `PUT /config[/{subject}]` does. Tests on the shared registry set their own subjects
    /// only: the global level applies to every test in the process.
    pub fn set_compatibility(&self, subject: Option<&str>, level: Compatibility) {
        let mut store = self.store.lock().unwrap();
        match subject {
            Some(subject) => {
                store.compatibility.insert(subject.to_owned(), level);
            }
            None => store.global = Some(level),
        }
    }

    /// The level that applies to `subject` (its own, else the global one), or the global
    /// level for `None`.
    pub fn compatibility(&self, subject: Option<&str>) -> Compatibility {
        let store = self.store.lock().unwrap();
        match subject {
            Some(subject) => store.level(subject),
            None => store.global.unwrap_or(Compatibility::Backward),
        }
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

fn router(store: Shared) -> Router {
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
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .with_state(store)
}

/// Lets through requests whose `Authorization` header is `expected`, as a registry with basic
/// auth does; answers others as Confluent's does.
async fn require_auth(
    State(expected): State<Arc<String>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if given == Some(expected.as_str()) {
        next.run(request).await
    } else {
        error(401, "Unauthorized")
    }
}

/// Standard padded base64, for the expected `Authorization` header.
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
/// first three digits of a five-digit code, or the code itself (409).
fn error(code: u32, message: impl Into<String>) -> Response {
    let status = if code >= 10_000 { code / 100 } else { code };
    let status = StatusCode::from_u16(status as u16).expect("valid status");
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
    let existing = store.schemas.iter().position(|s| *s == candidate);
    let versions = store.subjects.get(&subject).cloned().unwrap_or_default();
    if let Some(index) = existing {
        // A schema the subject already has: its id, without a compatibility check.
        if versions.contains(&(index + 1)) {
            return ok(json!({ "id": index + 1 }));
        }
    }
    let level = store.level(&subject);
    let problems = incompatibilities(&store, &versions, &candidate, level);
    if !problems.is_empty() {
        return error(
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                problems.join(", ")
            ),
        );
    }
    let id = match existing {
        Some(index) => index + 1,
        None => {
            store.schemas.push(candidate);
            store.schemas.len()
        }
    };
    store.subjects.entry(subject).or_default().push(id);
    ok(json!({ "id": id }))
}

/// Why `candidate` may not follow the subject's `versions` (schema ids, oldest first) under
/// `level`, in the shape of Confluent's `details`; empty when it may. Schemas other than Avro
/// are not checked.
fn incompatibilities(
    store: &Store,
    versions: &[usize],
    candidate: &StoredSchema,
    level: Compatibility,
) -> Vec<String> {
    if level == Compatibility::None || candidate.schema_type != "AVRO" || versions.is_empty() {
        return Vec::new();
    }
    let Some(new) = comparable(&candidate.schema) else {
        return Vec::new();
    };
    let earlier: Vec<(usize, usize)> = versions
        .iter()
        .enumerate()
        .map(|(index, &id)| (index + 1, id))
        .collect();
    let against = if level.transitive() {
        &earlier[..]
    } else {
        &earlier[earlier.len() - 1..]
    };
    let mut problems = Vec::new();
    for &(version, id) in against.iter().rev() {
        let stored = &store.schemas[id - 1];
        if stored.schema_type != "AVRO" {
            continue;
        }
        let Some(old) = comparable(&stored.schema) else {
            continue;
        };
        let mut found = Vec::new();
        if level.backward() {
            if let Err(e) = SchemaCompatibility::can_read(&old, &new) {
                found.push(format!(
                    "{{errorType:'READER_INCOMPATIBLE', description:'The new schema cannot read data written with the old one: {e}'}}"
                ));
            }
        }
        if level.forward() {
            if let Err(e) = SchemaCompatibility::can_read(&new, &old) {
                found.push(format!(
                    "{{errorType:'WRITER_INCOMPATIBLE', description:'The old schema cannot read data written with the new one: {e}'}}"
                ));
            }
        }
        if !found.is_empty() {
            problems.extend(found);
            problems.push(format!("{{oldSchemaVersion: {version}}}"));
            problems.push(format!("{{oldSchema: '{}'}}", stored.schema));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("{{compatibility: '{}'}}", level.as_str()));
    }
    problems
}

/// `text` parsed for a compatibility check. Logical types are dropped first: Java Avro's
/// `SchemaCompatibility`, which the real registries use, compares the underlying types only,
/// while apache_avro's finds e.g. a decimal "inconclusive" even against itself.
fn comparable(text: &str) -> Option<apache_avro::Schema> {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("logicalType");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut json: Value = serde_json::from_str(text).ok()?;
    strip(&mut json);
    apache_avro::Schema::parse(&json).ok()
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

/// Whether a schema may follow version `version` of `subject` (Confluent: only that version
/// is checked, whatever the level's transitivity). `?verbose=true` adds the reasons.
async fn check_compatibility(
    State(store): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let candidate = match parse_schema_body(&body) {
        Ok(schema) => schema,
        Err(message) => return error(42201, message),
    };
    let store = store.lock().unwrap();
    let Some(versions) = store.subjects.get(&subject) else {
        if version == "latest" {
            return ok(json!({ "is_compatible": true }));
        }
        return subject_not_found(&subject);
    };
    let chosen = match version.as_str() {
        "latest" | "-1" => versions.last().copied(),
        other => other
            .parse::<usize>()
            .ok()
            .filter(|&v| v >= 1)
            .and_then(|v| versions.get(v - 1).copied()),
    };
    let Some(id) = chosen else {
        return error(40402, format!("Version {version} not found."));
    };
    let level = match store.level(&subject) {
        Compatibility::BackwardTransitive => Compatibility::Backward,
        Compatibility::ForwardTransitive => Compatibility::Forward,
        Compatibility::FullTransitive => Compatibility::Full,
        level => level,
    };
    let problems = incompatibilities(&store, &[id], &candidate, level);
    let mut body = json!({ "is_compatible": problems.is_empty() });
    if query.get("verbose").is_some_and(|v| v == "true") {
        body["messages"] = json!(problems);
    }
    ok(body)
}

fn level_body(body: &Bytes) -> Option<Compatibility> {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("compatibility")
            .and_then(Value::as_str)
            .and_then(Compatibility::parse)
    })
}

fn invalid_level() -> Response {
    error(
        42203,
        "Invalid compatibility level. Valid values are none, backward, forward, full, \
         backward_transitive, forward_transitive, and full_transitive",
    )
}

async fn get_global_config(State(store): State<Shared>) -> Response {
    let level = store
        .lock()
        .unwrap()
        .global
        .unwrap_or(Compatibility::Backward);
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_global_config(State(store): State<Shared>, body: Bytes) -> Response {
    let Some(level) = level_body(&body) else {
        return invalid_level();
    };
    store.lock().unwrap().global = Some(level);
    ok(json!({ "compatibility": level.as_str() }))
}

async fn get_config(
    State(store): State<Shared>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let store = store.lock().unwrap();
    let default_to_global = query.get("defaultToGlobal").is_some_and(|v| v == "true");
    match store.compatibility.get(&subject) {
        Some(level) => ok(json!({ "compatibilityLevel": level.as_str() })),
        None if default_to_global => {
            ok(json!({ "compatibilityLevel": store.level(&subject).as_str() }))
        }
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
    let Some(level) = level_body(&body) else {
        return invalid_level();
    };
    store.lock().unwrap().compatibility.insert(subject, level);
    ok(json!({ "compatibility": level.as_str() }))
}

/// Removes the subject's own level, answering the one it had; the global one applies again.
async fn delete_config(State(store): State<Shared>, Path(subject): Path<String>) -> Response {
    match store.lock().unwrap().compatibility.remove(&subject) {
        Some(level) => ok(json!({ "compatibilityLevel": level.as_str() })),
        None => subject_not_found(&subject),
    }
}
