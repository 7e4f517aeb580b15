//! Incremental snapshots while streaming (DBLog's watermark algorithm, as Debezium runs it).
//!
//! For each chunk a reader task (its own SQL connection) emits a low-watermark message (a
//! transactional logical message, committed on its own), selects the next
//! `incremental_chunk_size` rows after the last key read, hands them to the session, and emits
//! the high-watermark message. The session sees both in the stream: between them it notes the
//! key of every streamed change of that table; at the high watermark it publishes the chunk's
//! rows except those keys, whose streamed change is newer. Streaming never pauses.
//!
//! Snapshots are requested by `execute-snapshot` rows in the signal table (Debezium's signals,
//! when `capture.signal_table` is set) or by pgcdc's own request messages (tables added to
//! `capture.tables` or created later); either way the request sits in the WAL, so it is
//! recorded in the offsets topic in its transaction's turn.
//!
//! A chunk whose query missed a transaction that committed before its low watermark is read
//! again (see [`visibility`](super::visibility)); so is a chunk whose table was truncated
//! inside its window.
//!
//! A chunk's progress record (`incremental/<slot>/<table>` in the offsets topic) is written
//! once the slot's confirmable position passes the high watermark, i.e. once every row of the
//! chunk was acknowledged; a crash re-reads at most the chunks after the last record.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::plan::{key_row, literal_row, qualified, select_list};
use super::signal::{parse_execute_snapshot, Watermark, EXECUTE_SNAPSHOT};
use super::state::{incremental_key, tables_key, IncrementalRecord};
use super::visibility::{current_snapshot, TxSnapshot, UnsettledCommits};
use super::SnapshotError;
use crate::config::TableFilter;
use crate::encode::Record;
use crate::event::types::parse_text;
use crate::event::{ChangeEvent, Op, Row, SnapshotMarker, SourcePosition, TableSchema, Value};
use crate::lsn::Lsn;
use crate::pg::PgConnectOptions;
use crate::source::catalog::{describe_relation, relation_from_catalog};
use crate::source::messages;
use crate::source::pgoutput::{Relation, Tuple, TupleValue};

/// What incremental snapshots need from the configuration.
#[derive(Clone)]
pub struct IncrementalSettings {
    /// The captured database.
    pub options: PgConnectOptions,
    /// The signal table, `(schema, table)`, when users may request snapshots there.
    pub signal_table: Option<(String, String)>,
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// Column exclusions.
    pub filter: TableFilter,
    /// The slot, part of the progress records' keys.
    pub slot: String,
    /// `__pgcdc-offsets.<prefix>`.
    pub offsets_topic: String,
}

/// A closed window: the rows to publish and where the table's snapshot stands.
pub struct ClosedWindow {
    /// `r` events for the rows the stream did not change inside the window.
    pub events: Vec<ChangeEvent>,
    /// The schema the rows were read with (registered before they are encoded).
    pub schema: Arc<TableSchema>,
    /// The table's progress after this chunk.
    pub record: IncrementalRecord,
}

/// A chunk the reader selected between its watermarks.
struct ChunkRead {
    schema: Arc<TableSchema>,
    rows: Vec<Row>,
    last_key: Option<Vec<String>>,
    full: bool,
    snapshot: TxSnapshot,
}

/// What the reader found between its watermarks.
enum ChunkOutcome {
    /// The chunk's rows.
    Read(ChunkRead),
    /// The table cannot be read by key (gone, or without a key); the reason says which.
    Unreadable(String),
}

/// What the reader task is asked to do.
struct ChunkRequest {
    window: String,
    table: String,
    filter: Option<String>,
    after: Option<Vec<String>>,
    /// Read from this key on (inclusive) when nothing was read yet.
    from: Option<Vec<String>>,
    /// The previous read of this chunk was discarded: pause before reading it again.
    again: bool,
}

/// How long the reader waits before reading a discarded chunk again, so a transaction that
/// stays invisible (waiting for a synchronous standby) does not make it spin.
const READ_AGAIN_PAUSE: Duration = Duration::from_millis(100);

/// The window of the chunk being read.
struct Window {
    id: String,
    open: bool,
    changed: HashSet<String>,
    /// Transactions streamed before the low watermark that some snapshot may not see.
    committed_before: HashSet<u32>,
    truncated: bool,
}

/// Where the signal table's `id`, `type` and `data` columns sit in its tuples.
struct SignalColumns {
    relation_id: u32,
    id: usize,
    kind: usize,
    data: usize,
}

/// The session's incremental snapshots: queue, open window, reader, deferred progress.
pub struct Incremental {
    settings: IncrementalSettings,
    queue: VecDeque<IncrementalRecord>,
    window: Option<Window>,
    requests: Option<mpsc::Sender<ChunkRequest>>,
    chunks: Option<mpsc::Receiver<Result<ChunkOutcome, SnapshotError>>>,
    signal: Option<SignalColumns>,
    deferred: Vec<(Lsn, IncrementalRecord)>,
    windows_opened: u64,
    unsettled: UnsettledCommits,
    read_again: bool,
    /// The open window's chunk, when the reader finished it before its high watermark
    /// streamed in.
    early: Option<ChunkOutcome>,
    /// Chunks the reader still owes for windows given up on (their table was dropped).
    stale: usize,
}

/// What a signal-table change means for the session.
pub enum SignalEffect {
    /// Nothing for pgcdc.
    None,
    /// New incremental snapshots were queued: record them in this transaction.
    Requested(Vec<IncrementalRecord>),
    /// The high watermark: publish the chunk.
    CloseWindow,
}

impl Incremental {
    /// Resumes the unfinished snapshots recorded in the offsets topic.
    pub fn new(settings: IncrementalSettings, unfinished: Vec<IncrementalRecord>) -> Self {
        for record in &unfinished {
            tracing::info!(table = %record.table, rows = record.rows, last_key = ?record.last_key, "resuming incremental snapshot");
        }
        Incremental {
            settings,
            queue: unfinished.into(),
            window: None,
            requests: None,
            chunks: None,
            signal: None,
            deferred: Vec::new(),
            windows_opened: 0,
            unsettled: UnsettledCommits::default(),
            read_again: false,
            early: None,
            stale: 0,
        }
    }

    /// Notes where the signal table's columns are when its Relation message arrives.
    pub fn on_relation(&mut self, relation: &Relation) {
        let Some((schema, table)) = &self.settings.signal_table else {
            return;
        };
        if relation.namespace != *schema || relation.name != *table {
            return;
        }
        let position = |name: &str| relation.columns.iter().position(|c| c.name == name);
        match (position("id"), position("type"), position("data")) {
            (Some(id), Some(kind), Some(data)) => {
                self.signal = Some(SignalColumns {
                    relation_id: relation.relation_id,
                    id,
                    kind,
                    data,
                })
            }
            _ => tracing::error!(
                table = %format!("{schema}.{table}"),
                "the signal table needs the columns id, type and data; signals are ignored"
            ),
        }
    }

    /// Whether `relation_id` is the signal table.
    pub fn is_signal(&self, relation_id: u32) -> bool {
        self.signal
            .as_ref()
            .is_some_and(|s| s.relation_id == relation_id)
    }

    /// A row inserted into the signal table.
    pub fn on_signal_insert(&mut self, tuple: &Tuple<'_>) -> SignalEffect {
        let Some(columns) = &self.signal else {
            return SignalEffect::None;
        };
        let (id, kind, data) = (
            text(tuple, columns.id),
            text(tuple, columns.kind),
            text(tuple, columns.data),
        );
        match kind.as_deref() {
            Some(EXECUTE_SNAPSHOT) => self.request(id.as_deref(), data.as_deref().unwrap_or("")),
            other => {
                tracing::warn!(id, kind = other, "ignoring a signal of an unknown type");
                SignalEffect::None
            }
        }
    }

    fn request(&mut self, id: Option<&str>, data: &str) -> SignalEffect {
        let requests = match parse_execute_snapshot(data) {
            Ok(requests) => requests,
            Err(error) => {
                tracing::error!(id, %error, "ignoring an execute-snapshot signal");
                return SignalEffect::None;
            }
        };
        let mut queued = Vec::new();
        for request in requests {
            if self
                .queue
                .iter()
                .any(|r| r.table == request.table && r.filter == request.filter)
            {
                tracing::info!(table = %request.table, "an incremental snapshot of the table is already under way");
                continue;
            }
            tracing::info!(table = %request.table, filter = request.filter, "incremental snapshot requested");
            let record = IncrementalRecord {
                table: request.table,
                filter: request.filter,
                last_key: None,
                from_key: None,
                done: false,
                rows: 0,
            };
            self.queue.push_back(record.clone());
            queued.push(record);
        }
        SignalEffect::Requested(queued)
    }

    /// One of this source's own messages of kind [`messages::SNAPSHOT_REQUEST`] (snapshots
    /// are requested) or [`messages::WATERMARK`] (a window opens or closes).
    pub fn on_message(&mut self, kind: &str, content: &[u8]) -> SignalEffect {
        if kind == messages::SNAPSHOT_REQUEST {
            return self.request(Some(kind), &String::from_utf8_lossy(content));
        }
        let Some(window) = &mut self.window else {
            return SignalEffect::None;
        };
        match Watermark::parse(content) {
            Some(Watermark::Open(id)) if !window.open && id == window.id => {
                window.open = true;
                window.committed_before = self.unsettled.take();
                SignalEffect::None
            }
            Some(Watermark::Close(id)) if window.open && id == window.id => {
                SignalEffect::CloseWindow
            }
            _ => SignalEffect::None,
        }
    }

    /// A streamed change: inside an open window, its keys win over the chunk's rows, and a
    /// truncate voids the chunk.
    pub fn observe(&mut self, event: &ChangeEvent) {
        let (Some(window), Some(current)) = (&mut self.window, self.queue.front()) else {
            return;
        };
        let table = &event.table;
        if !window.open || current.table != table.qualified_name() {
            return;
        }
        if event.op == Op::Truncate {
            window.truncated = true;
        }
        for row in [&event.before, &event.after].into_iter().flatten() {
            window.changed.insert(key_text(table, row));
        }
    }

    /// A streamed commit of a transaction with captured changes.
    pub fn committed(&mut self, xid: u32) {
        self.unsettled.committed(xid);
    }

    /// Whether [`settle`](Self::settle) has anything to forget.
    pub fn has_unsettled(&self) -> bool {
        !self.unsettled.is_empty()
    }

    /// Forgets the committed transactions a snapshot taken now sees.
    pub fn settle(&mut self, snapshot: &TxSnapshot) {
        self.unsettled.settle(snapshot);
    }

    /// The table of `name` is gone: its snapshots end (recorded as done), and a window open
    /// on it is given up, so none of its rows is published after its DROP.
    pub fn forget_table(&mut self, name: &str, position: Lsn) {
        let reading = self.queue.front().is_some_and(|r| r.table == name);
        if reading && self.window.take().is_some() && self.early.take().is_none() {
            self.stale += 1;
        }
        let (gone, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|r| r.table == name);
        self.queue = kept;
        for mut record in gone {
            tracing::info!(table = %record.table, rows = record.rows, "the table is gone: its incremental snapshot ends");
            record.done = true;
            self.deferred.push((position, record));
        }
    }

    /// Looks whether the reader finished the open window's chunk early (kept for the window's
    /// close) or failed; its failure ends the session, which starts a new reader.
    pub fn check_reader(&mut self) -> Result<(), SnapshotError> {
        if self.window.is_none() || self.early.is_some() {
            return Ok(());
        }
        match self.try_next_chunk() {
            Some(Ok(outcome)) => {
                self.early = Some(outcome);
                Ok(())
            }
            Some(Err(error)) => Err(error),
            None => Ok(()),
        }
    }

    /// The reader's next chunk if it is ready, stale ones skipped; an error once the reader
    /// is gone.
    fn try_next_chunk(&mut self) -> Option<Result<ChunkOutcome, SnapshotError>> {
        let chunks = self.chunks.as_mut()?;
        loop {
            match chunks.try_recv() {
                Ok(_) if self.stale > 0 => self.stale -= 1,
                Ok(outcome) => return Some(outcome),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Some(Err(SnapshotError::ReaderStopped))
                }
            }
        }
    }

    /// The open window's chunk, waited for; stale ones skipped.
    async fn next_chunk(&mut self) -> Result<ChunkOutcome, SnapshotError> {
        if let Some(outcome) = self.early.take() {
            return Ok(outcome);
        }
        let chunks = self.chunks.as_mut().ok_or(SnapshotError::ReaderStopped)?;
        loop {
            match chunks.recv().await {
                Some(_) if self.stale > 0 => self.stale -= 1,
                Some(outcome) => return outcome,
                None => return Err(SnapshotError::ReaderStopped),
            }
        }
    }

    /// Asks the reader for the next chunk when no window is open and work is queued.
    pub fn start_next_chunk(&mut self) {
        if self.window.is_some() {
            return;
        }
        let Some(current) = self.queue.front() else {
            return;
        };
        if self.requests.is_none() {
            let (requests, commands) = mpsc::channel(1);
            let (results, chunks) = mpsc::channel(1);
            tokio::spawn(reader(self.settings.clone(), commands, results));
            self.requests = Some(requests);
            self.chunks = Some(chunks);
        }
        self.windows_opened += 1;
        let id = format!(
            "pgcdc-{}-{}-{}",
            std::process::id(),
            now_ms(),
            self.windows_opened
        );
        let request = ChunkRequest {
            window: id.clone(),
            table: current.table.clone(),
            filter: current.filter.clone(),
            after: current.last_key.clone(),
            from: current.from_key.clone(),
            again: std::mem::take(&mut self.read_again),
        };
        if let Some(requests) = &self.requests {
            // Capacity 1 and one request per window: there is always room.
            let _ = requests.try_send(request);
        }
        self.window = Some(Window {
            id,
            open: false,
            changed: HashSet::new(),
            committed_before: HashSet::new(),
            truncated: false,
        });
    }

    /// Closes the window at its high watermark: the chunk's rows that the stream did not
    /// change meanwhile, as `r` events at `position`, and the table's progress record to
    /// write once `position`'s transaction is confirmed; `None` when there is nothing to
    /// publish: the chunk must be read again, or the table cannot be read by key (its
    /// snapshot ends, with a warning).
    pub async fn close_window(
        &mut self,
        position: &SourcePosition,
    ) -> Result<Option<ClosedWindow>, SnapshotError> {
        let window = self.window.take().expect("an open window");
        let chunk = match self.next_chunk().await? {
            ChunkOutcome::Read(chunk) => chunk,
            ChunkOutcome::Unreadable(reason) => {
                self.unsettled.extend(window.committed_before);
                let mut record = self.queue.pop_front().expect("a queued table");
                tracing::warn!(table = %record.table, reason, "the table cannot be snapshotted incrementally; its rows from before it was captured are not read");
                record.done = true;
                self.deferred
                    .push((position.lsn.unwrap_or(Lsn::ZERO), record));
                return Ok(None);
            }
        };
        let missed = window
            .committed_before
            .iter()
            .any(|&xid| chunk.snapshot.hides(xid));
        self.unsettled.extend(window.committed_before);
        self.unsettled.settle(&chunk.snapshot);
        if missed || window.truncated {
            let table = &self.queue.front().expect("a queued table").table;
            tracing::info!(%table, truncated = window.truncated, "reading an incremental snapshot chunk again: its query ran before a change streamed ahead of it became visible, or the table was truncated");
            self.read_again = true;
            return Ok(None);
        }
        let mut events = Vec::with_capacity(chunk.rows.len());
        for row in chunk.rows {
            if window.changed.contains(&key_text(&chunk.schema, &row)) {
                continue;
            }
            events.push(ChangeEvent {
                table: Arc::clone(&chunk.schema),
                op: Op::Read,
                before: None,
                after: Some(row),
                source: SourcePosition {
                    snapshot: SnapshotMarker::Incremental,
                    ..position.clone()
                },
                transaction: None,
                key_change: None,
            });
        }
        let current = self.queue.front_mut().expect("a queued table");
        current.rows += events.len() as u64;
        if chunk.last_key.is_some() {
            current.last_key = chunk.last_key;
        }
        current.done = !chunk.full;
        let record = current.clone();
        if record.done {
            self.queue.pop_front();
            tracing::info!(table = %record.table, rows = record.rows, "incremental snapshot completed");
        } else {
            tracing::debug!(table = %record.table, rows = record.rows, "incremental snapshot chunk");
        }
        let commit = position.lsn.unwrap_or(Lsn::ZERO);
        self.deferred.push((commit, record.clone()));
        Ok(Some(ClosedWindow {
            events,
            schema: chunk.schema,
            record,
        }))
    }

    /// The offsets-topic record of the tables captured from here on (the content of a
    /// [`messages::CAPTURED_TABLES`] message).
    pub fn tables_record(&self, content: &[u8]) -> Record {
        Record {
            topic: self.settings.offsets_topic.clone(),
            key: Some(tables_key(&self.settings.slot).into_bytes()),
            value: Some(content.to_vec()),
            headers: Vec::new(),
        }
    }

    /// The offsets-topic record for `record`, keyed by slot and table, its value JSON.
    pub fn state_record(&self, record: &IncrementalRecord) -> Record {
        Record {
            topic: self.settings.offsets_topic.clone(),
            key: Some(incremental_key(&self.settings.slot, &record.id()).into_bytes()),
            value: Some(serde_json::to_vec(record).expect("a record serializes")),
            headers: Vec::new(),
        }
    }

    /// The newest progress record of each table whose chunk is confirmed (`confirmable` past
    /// its commit); older ones would be overwritten in the compacted topic anyway.
    pub fn confirmed_records(&mut self, confirmable: Lsn) -> Vec<IncrementalRecord> {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(lsn, _)| *lsn < confirmable);
        self.deferred = waiting;
        let mut newest: Vec<IncrementalRecord> = Vec::new();
        for (_, record) in ready {
            match newest.iter_mut().find(|r| r.id() == record.id()) {
                Some(older) => *older = record,
                None => newest.push(record),
            }
        }
        newest
    }
}

fn text(tuple: &Tuple<'_>, index: usize) -> Option<String> {
    match tuple.get(index) {
        Some(TupleValue::Text(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    }
}

/// A row's key as a string, comparable between stream changes and chunk rows of one schema.
/// The query reading the chunk `request` asks for: the next `rows` rows by key.
fn chunk_select(schema: &TableSchema, request: &ChunkRequest, rows: u64) -> String {
    let mut conditions = Vec::new();
    match (&request.after, &request.from) {
        (Some(after), _) => {
            conditions.push(format!("{} > {}", key_row(schema), literal_row(after)))
        }
        (None, Some(from)) => {
            conditions.push(format!("{} >= {}", key_row(schema), literal_row(from)))
        }
        (None, None) => {}
    }
    if let Some(filter) = &request.filter {
        conditions.push(format!("({filter})"));
    }
    format!(
        "SELECT {} FROM {}{} ORDER BY {} LIMIT {rows}",
        select_list(schema),
        qualified(schema),
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        },
        key_row(schema).trim_matches(|c| c == '(' || c == ')'),
    )
}

fn key_text(table: &TableSchema, row: &[Value]) -> String {
    format!("{:?}", table.key_of(row))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The reader task: one connection, one chunk per request.
async fn reader(
    settings: IncrementalSettings,
    mut requests: mpsc::Receiver<ChunkRequest>,
    results: mpsc::Sender<Result<ChunkOutcome, SnapshotError>>,
) {
    let client = match settings.options.connect_sql().await {
        Ok(client) => client,
        Err(error) => {
            let _ = results.send(Err(error.into())).await;
            return;
        }
    };
    while let Some(request) = requests.recv().await {
        if request.again {
            tokio::time::sleep(READ_AGAIN_PAUSE).await;
        }
        let outcome = read_window(&client, &settings, &request).await;
        let failed = outcome.is_err();
        if results.send(outcome).await.is_err() || failed {
            return;
        }
        let high_watermark = Watermark::Close(request.window);
        if let Err(error) = emit_watermark(&client, &settings.slot, &high_watermark).await {
            tracing::error!(%error, "could not write the incremental snapshot's high watermark");
            return;
        }
    }
}

/// Writes a watermark into the WAL, in a transaction of its own.
async fn emit_watermark(
    client: &Client,
    slot: &str,
    watermark: &Watermark,
) -> Result<(), tokio_postgres::Error> {
    let prefix = messages::prefix(messages::WATERMARK, slot);
    client
        .execute(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&prefix, &watermark.content()],
        )
        .await
        .map(|_| ())
}

/// Writes the low watermark and selects the chunk. A table the server will not let it read
/// (gone, not readable by this role, a filter it refuses, a value that does not parse) ends
/// its snapshot with the reason, after the low watermark, so the window still closes; only a
/// lost connection is an error.
async fn read_window(
    client: &Client,
    settings: &IncrementalSettings,
    request: &ChunkRequest,
) -> Result<ChunkOutcome, SnapshotError> {
    emit_watermark(
        client,
        &settings.slot,
        &Watermark::Open(request.window.clone()),
    )
    .await
    .map_err(|source| SnapshotError::Sql {
        what: format!(
            "incremental snapshot of {}: write the low watermark",
            request.table
        ),
        source: source.into(),
    })?;
    match read_chunk(client, settings, request).await {
        Err(error) if error.is_refusal() => {
            // A failed chunk query leaves its transaction aborted.
            let _ = client.batch_execute("ROLLBACK").await;
            Ok(ChunkOutcome::Unreadable(error.to_string()))
        }
        outcome => outcome,
    }
}

/// Selects the chunk, inside the window [`read_window`] opened.
async fn read_chunk(
    client: &Client,
    settings: &IncrementalSettings,
    request: &ChunkRequest,
) -> Result<ChunkOutcome, SnapshotError> {
    let sql_error = |what: &str| {
        let what = format!("incremental snapshot of {}: {what}", request.table);
        move |source: tokio_postgres::Error| SnapshotError::Sql {
            what,
            source: source.into(),
        }
    };
    let (schema_name, table_name) =
        request
            .table
            .split_once('.')
            .ok_or_else(|| SnapshotError::Row {
                table: request.table.clone(),
                message: "name the table as schema.table".into(),
            })?;
    let relation = relation_from_catalog(client, schema_name, table_name).await?;
    let entry = describe_relation(client, &relation, &settings.filter).await?;
    let schema = entry.schema;
    if schema.key.is_empty() {
        return Ok(ChunkOutcome::Unreadable(
            "it has neither a primary key nor a replica identity index to read it by".into(),
        ));
    }
    let sql = chunk_select(&schema, request, settings.chunk_rows);
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(sql_error("begin the chunk's transaction"))?;
    let snapshot = current_snapshot(client).await?;
    let messages = client
        .simple_query(&format!("{sql}; COMMIT"))
        .await
        .map_err(sql_error("select the chunk"))?;
    let mut rows = Vec::new();
    let mut last_key = None;
    for message in &messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let mut values = Vec::with_capacity(schema.columns.len());
        for (index, column) in schema.columns.iter().enumerate() {
            values.push(match row.get(index) {
                None => Value::Null,
                Some(text) => parse_text(&column.pg_type, text.as_bytes()).map_err(|error| {
                    SnapshotError::Row {
                        table: request.table.clone(),
                        message: format!("column {}: {error}", column.name),
                    }
                })?,
            });
        }
        last_key = Some(
            schema
                .key
                .iter()
                .map(|&index| row.get(index).unwrap_or_default().to_owned())
                .collect(),
        );
        rows.push(values);
    }
    let full = rows.len() as u64 >= settings.chunk_rows;
    Ok(ChunkOutcome::Read(ChunkRead {
        schema,
        rows,
        last_key,
        full,
        snapshot,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CaptureSection;
    use crate::event::{ReplicaIdentity, TableSchema};

    fn incremental(queued: &[&str]) -> Incremental {
        let capture: CaptureSection = toml::from_str("tables = [\"l1.*\"]").expect("a section");
        let settings = IncrementalSettings {
            options: PgConnectOptions::parse("postgresql://u@127.0.0.1/d").expect("a URL"),
            signal_table: None,
            chunk_rows: 10,
            filter: TableFilter::new(&capture).expect("a filter"),
            slot: "s".into(),
            offsets_topic: "__pgcdc-offsets.p".into(),
        };
        let records = queued
            .iter()
            .map(|table| IncrementalRecord {
                table: (*table).into(),
                filter: None,
                last_key: None,
                from_key: None,
                done: false,
                rows: 0,
            })
            .collect();
        Incremental::new(settings, records)
    }

    fn window(id: &str) -> Window {
        Window {
            id: id.into(),
            open: true,
            changed: HashSet::new(),
            committed_before: HashSet::new(),
            truncated: false,
        }
    }

    fn chunk(table: &str) -> ChunkOutcome {
        ChunkOutcome::Read(ChunkRead {
            schema: Arc::new(TableSchema {
                relation_id: 1,
                schema: "l1".into(),
                table: table.into(),
                columns: Vec::new(),
                key: Vec::new(),
                identity: ReplicaIdentity::Default,
            }),
            rows: Vec::new(),
            last_key: None,
            full: false,
            snapshot: TxSnapshot::parse("10:10:").expect("a snapshot"),
        })
    }

    #[test]
    fn a_chunk_reads_after_the_last_key_or_from_the_handed_over_one() {
        let column = |name: &str| crate::event::Column {
            name: name.to_owned(),
            type_oid: 20,
            type_modifier: -1,
            pg_type: crate::event::PgType::Int8,
            optional: false,
            in_identity: false,
            default: None,
        };
        let schema = TableSchema {
            relation_id: 1,
            schema: "l1".into(),
            table: "t".into(),
            columns: vec![column("id"), column("v")],
            key: vec![0],
            identity: ReplicaIdentity::Default,
        };
        let request = |after: Option<&str>, from: Option<&str>| ChunkRequest {
            window: "w".into(),
            table: "l1.t".into(),
            filter: None,
            after: after.map(|k| vec![k.to_owned()]),
            from: from.map(|k| vec![k.to_owned()]),
            again: false,
        };
        let select = r#"SELECT "id", "v" FROM "l1"."t""#;
        assert_eq!(
            chunk_select(&schema, &request(None, None), 5),
            format!(r#"{select} ORDER BY "id" LIMIT 5"#)
        );
        assert_eq!(
            chunk_select(&schema, &request(None, Some("40")), 5),
            format!(r#"{select} WHERE ("id") >= ('40') ORDER BY "id" LIMIT 5"#),
            "the handed-over key is the first unread row's"
        );
        assert_eq!(
            chunk_select(&schema, &request(Some("44"), Some("40")), 5),
            format!(r#"{select} WHERE ("id") > ('44') ORDER BY "id" LIMIT 5"#)
        );
    }

    #[tokio::test]
    async fn a_dropped_tables_window_is_given_up_and_its_chunk_skipped() {
        let mut snapshots = incremental(&["l1.gone", "l1.kept"]);
        let (results, chunks) = mpsc::channel(4);
        snapshots.chunks = Some(chunks);
        snapshots.window = Some(window("w1"));
        snapshots.forget_table("l1.gone", Lsn(5));
        assert!(
            snapshots.window.is_none(),
            "the window on the dropped table is given up"
        );
        assert_eq!(snapshots.queue.len(), 1);
        let ended = snapshots.confirmed_records(Lsn(6));
        assert_eq!(
            ended
                .iter()
                .map(|r| (r.table.as_str(), r.done))
                .collect::<Vec<_>>(),
            [("l1.gone", true)]
        );
        // The reader still sends the given-up window's chunk, then the next window's.
        results.send(Ok(chunk("gone"))).await.unwrap();
        results.send(Ok(chunk("kept"))).await.unwrap();
        snapshots.window = Some(window("w2"));
        snapshots.check_reader().expect("no reader error");
        let Some(ChunkOutcome::Read(early)) = &snapshots.early else {
            panic!("the next window's chunk is kept for its close");
        };
        assert_eq!(early.schema.table, "kept");
    }

    #[tokio::test]
    async fn a_reader_error_or_exit_is_reported_while_a_window_waits() {
        let mut snapshots = incremental(&["l1.t"]);
        let (results, chunks) = mpsc::channel(1);
        snapshots.chunks = Some(chunks);
        snapshots.window = Some(window("w1"));
        snapshots.check_reader().expect("nothing yet");
        results
            .send(Err(SnapshotError::ReaderStopped))
            .await
            .unwrap();
        assert!(matches!(
            snapshots.check_reader(),
            Err(SnapshotError::ReaderStopped)
        ));
        drop(results);
        assert!(snapshots.check_reader().is_err(), "a reader that is gone");
    }

    #[test]
    fn progress_of_two_snapshots_of_one_table_is_kept_apart() {
        let mut snapshots = incremental(&[]);
        let whole = IncrementalRecord {
            table: "l1.p".into(),
            filter: None,
            last_key: None,
            from_key: None,
            done: true,
            rows: 3,
        };
        let partition = IncrementalRecord {
            filter: Some("tableoid IN (7)".into()),
            rows: 1,
            ..whole.clone()
        };
        snapshots.deferred = vec![(Lsn(1), whole), (Lsn(2), partition)];
        assert_eq!(snapshots.confirmed_records(Lsn(3)).len(), 2);
    }
}
