//! One streaming session: from START_REPLICATION until the connection ends, an error, or
//! shutdown. Decodes each XLogData message, turns row changes into events, encodes and
//! enqueues them, and reports to the server only what [`Progress`] says is acknowledged.
//!
//! Nothing here waits per event: records are enqueued into librdkafka and acknowledged by its
//! delivery callbacks. When librdkafka's bounded queue is full the session stops reading from
//! the server (back-pressure) but keeps sending status updates so the walsender does not time
//! out; the slot stays where the acknowledgements put it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::config::TableFilter;
use crate::encode::{Encoder, Record};
use crate::event::{
    ChangeEvent, LogicalMessage, Op, SchemaChange, SourcePosition, TableChangeKind,
    TransactionEvent, TransactionStatus,
};
use crate::kafka::progress::{Progress, Ticket};
use crate::kafka::{Producer, BACKPRESSURE_PAUSE};
use crate::lsn::Lsn;
use crate::metrics::SourceMetrics;
use crate::source::catalog::describe_relation;
use crate::source::ddl::{self, message::DdlMessage};
use crate::source::discovery::DroppedTable;
use crate::source::messages::{self, Sender};
use crate::source::pgoutput::{self, Decoder, Message, OldTuple, Relation, Tuple};
use crate::source::relations::{self, OpenTransaction, RelationEntry, Relations};
use crate::source::replication::{ReplicationMessage, ReplicationStream};
use crate::source::snapshot::incremental::{Incremental, SignalEffect};
use crate::source::snapshot::visibility::current_snapshot;
use crate::source::SourceError;

/// The prefix of the logical messages pgcdc emits as heartbeats.
pub const HEARTBEAT_PREFIX: &str = "pgcdc-heartbeat";

/// How long shutdown waits for the server to end the replication stream.
const STREAM_END_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a session that do not change while it runs.
pub struct SessionSettings {
    /// Which tables and columns are captured.
    pub filter: TableFilter,
    /// Whether a null-value record follows each delete.
    pub tombstones: bool,
    /// How often a standby status update goes to the server.
    pub status_interval: Duration,
    /// The slot, whose own logical messages the session acts on.
    pub slot: String,
    /// Becomes true when shutdown is requested.
    pub shutdown: watch::Receiver<bool>,
    /// Whether DDL capture is on: its messages become schema change events.
    pub ddl: bool,
    /// Where streaming starts (the slot's confirmed position): what the first transaction
    /// gives as the previous transaction's commit in `source.sequence`.
    pub streamed_from: Lsn,
}

/// A transaction being streamed: its event counters and its progress ticket.
struct StreamedTransaction {
    events: OpenTransaction,
    ticket: Ticket,
    begin_published: bool,
}

/// The state of one replication session.
pub struct Session<'a> {
    pub(crate) stream: ReplicationStream,
    pub(crate) sql: &'a Client,
    pub(crate) encoder: &'a mut Encoder,
    pub(crate) producer: &'a mut Producer,
    pub(crate) progress: Arc<Mutex<Progress>>,
    pub(crate) metrics: &'a SourceMetrics,
    pub(crate) settings: &'a SessionSettings,
    decoder: Decoder,
    relations: Relations,
    transaction: Option<StreamedTransaction>,
    /// The end LSN of the last transaction streamed, or where streaming started.
    last_commit_end: Lsn,
    last_received: Lsn,
    last_status: Instant,
    incremental: Incremental,
}

/// How a session ended without an error.
pub enum SessionEnd {
    /// Shutdown was requested; everything acknowledged has been confirmed.
    Shutdown,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl<'a> Session<'a> {
    /// A session over a freshly started replication stream.
    pub fn new(
        stream: ReplicationStream,
        sql: &'a Client,
        encoder: &'a mut Encoder,
        producer: &'a mut Producer,
        (progress, incremental): (Arc<Mutex<Progress>>, Incremental),
        metrics: &'a SourceMetrics,
        settings: &'a SessionSettings,
    ) -> Self {
        Session {
            stream,
            sql,
            encoder,
            producer,
            progress,
            incremental,
            metrics,
            settings,
            decoder: Decoder::new(),
            relations: Relations::default(),
            transaction: None,
            last_commit_end: settings.streamed_from,
            last_received: Lsn::ZERO,
            last_status: Instant::now(),
        }
    }

    /// Streams until shutdown is requested or an error ends the session.
    pub async fn run(&mut self) -> Result<SessionEnd, SourceError> {
        let mut shutdown = self.settings.shutdown.clone();
        let mut status_timer = tokio::time::interval(self.settings.status_interval);
        status_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return Ok(SessionEnd::Shutdown),
                _ = status_timer.tick() => {
                    self.send_status(false).await?;
                    self.write_confirmed_snapshot_progress().await?;
                    self.settle_streamed_commits().await?;
                }
                message = self.stream.next() => match message? {
                    Some(message) => self.handle(message).await?,
                    None => return Err(SourceError::StreamEnded),
                },
            }
            self.check_delivery()?;
            self.incremental.start_next_chunk();
            self.incremental.check_reader()?;
        }
    }

    /// Flushes the producer, confirms what was acknowledged and ends the stream.
    pub async fn finish(mut self, flush_timeout: Duration) -> Result<Lsn, SourceError> {
        if let Err(error) = self.producer.flush(flush_timeout) {
            tracing::warn!(%error, "not every record was acknowledged before shutdown; they will be sent again on the next start");
        }
        self.send_status(false).await?;
        let confirmed = self.confirmable();
        // Ending the stream drains what the server still sends; a large transaction in flight
        // must not hold up the exit. Dropping the connection is as safe: the slot was updated.
        if tokio::time::timeout(STREAM_END_TIMEOUT, self.stream.finish())
            .await
            .is_err()
        {
            tracing::warn!(
                "the server did not end the replication stream in time; closing the connection"
            );
        }
        Ok(confirmed)
    }

    fn confirmable(&self) -> Lsn {
        self.progress.lock().expect("progress lock").confirmable()
    }

    fn check_delivery(&self) -> Result<(), SourceError> {
        match self.producer.take_fatal_error() {
            Some(error) => Err(SourceError::Delivery(error)),
            None => Ok(()),
        }
    }

    async fn send_status(&mut self, reply_requested: bool) -> Result<(), SourceError> {
        let (confirmed, inflight) = {
            let progress = self.progress.lock().expect("progress lock");
            (progress.confirmable(), progress.inflight_records())
        };
        // Reported as written too: a walsender that sees the client behind its sent position
        // sends a keepalive once it is idle, and that keepalive's position is what lets an
        // idle slot advance (see `handle`).
        self.stream
            .send_status(confirmed, confirmed, confirmed, reply_requested)
            .await?;
        self.last_status = Instant::now();
        self.metrics
            .observe_progress(confirmed, self.last_received, inflight);
        Ok(())
    }

    /// Incremental snapshot progress whose chunks the slot confirmed, to the offsets topic.
    /// Its own checkpoint at the already confirmed position, so it holds nothing back.
    async fn write_confirmed_snapshot_progress(&mut self) -> Result<(), SourceError> {
        let confirmed = self.confirmable();
        let incremental = &mut self.incremental;
        let records: Vec<_> = incremental
            .confirmed_records(confirmed)
            .iter()
            .map(|record| incremental.state_record(record))
            .collect();
        let Some(Some(last)) = records.last().map(|record| record.value.as_ref()) else {
            return Ok(());
        };
        tracing::info!(record = %String::from_utf8_lossy(last), "incremental snapshot progress");
        let ticket = self.progress.lock().expect("progress lock").begin();
        for record in &records {
            self.send(record, ticket).await?;
        }
        self.progress
            .lock()
            .expect("progress lock")
            .commit(ticket, confirmed);
        Ok(())
    }

    /// Forgets the streamed commits that a snapshot taken now sees, so incremental snapshots
    /// remember only the few that may still be invisible.
    async fn settle_streamed_commits(&mut self) -> Result<(), SourceError> {
        if !self.incremental.has_unsettled() {
            return Ok(());
        }
        let snapshot = current_snapshot(self.sql).await?;
        self.incremental.settle(&snapshot);
        Ok(())
    }

    async fn handle(&mut self, message: ReplicationMessage) -> Result<(), SourceError> {
        match message {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.last_received = self.last_received.max(wal_end);
                self.handle_xlog(wal_start, data).await
            }
            ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                self.last_received = self.last_received.max(wal_end);
                if self.transaction.is_none() {
                    self.progress
                        .lock()
                        .expect("progress lock")
                        .idle_position(wal_end);
                }
                if reply_requested {
                    self.send_status(false).await?;
                }
                Ok(())
            }
        }
    }

    async fn handle_xlog(&mut self, lsn: Lsn, data: Bytes) -> Result<(), SourceError> {
        match self.decoder.decode(&data)? {
            Message::Begin(begin) => {
                if self.transaction.is_some() {
                    return Err(SourceError::NestedBegin);
                }
                let ticket = self.progress.lock().expect("progress lock").begin();
                self.transaction = Some(StreamedTransaction {
                    events: OpenTransaction::new(
                        begin.xid,
                        (begin.final_lsn, self.last_commit_end),
                        begin.commit_ts_us,
                    ),
                    ticket,
                    begin_published: false,
                });
            }
            Message::Commit(commit) => self.commit(commit.end_lsn).await?,
            Message::Relation(relation) => {
                tracing::debug!(namespace = %relation.namespace, name = %relation.name, id = relation.relation_id, "relation message");
                self.incremental.on_relation(&relation);
                let entry = self.describe(&relation).await?;
                self.relations.insert(entry);
            }
            Message::Insert(insert) if self.incremental.is_signal(insert.relation_id) => {
                let effect = self.incremental.on_signal_insert(&insert.new);
                self.apply_signal(effect).await?;
            }
            Message::Insert(insert) => {
                let entry = self
                    .entry(insert.relation_id, [Some(&insert.new), None], true)
                    .await?;
                if entry.captured {
                    let events = relations::insert_events(&entry, &insert, lsn, self.open()?)?;
                    self.publish_changes(events).await?;
                }
            }
            Message::Update(update) => {
                let old = update.old.as_ref().map(OldTuple::tuple);
                let entry = self
                    .entry(update.relation_id, [Some(&update.new), old], true)
                    .await?;
                if entry.captured {
                    let events = relations::update_events(&entry, &update, lsn, self.open()?)?;
                    self.publish_changes(events).await?;
                }
            }
            Message::Delete(delete) => {
                let entry = self
                    .entry(delete.relation_id, [Some(delete.old.tuple()), None], false)
                    .await?;
                if entry.captured {
                    let events = relations::delete_events(&entry, &delete, lsn, self.open()?)?;
                    self.publish_changes(events).await?;
                }
            }
            Message::Truncate(truncate) => {
                let transaction = self
                    .transaction
                    .as_mut()
                    .ok_or(SourceError::OutsideTransaction("Truncate"))?;
                let events = relations::truncate_events(
                    &self.relations,
                    &truncate,
                    lsn,
                    &mut transaction.events,
                )?;
                self.publish_changes(events).await?;
            }
            Message::Message(message) => self.logical_message(&message, lsn).await?,
            Message::Origin(_) | Message::Type(_) => {}
            Message::StreamStart(_)
            | Message::StreamStop
            | Message::StreamCommit(_)
            | Message::StreamAbort(_) => return Err(SourceError::UnexpectedStreaming),
        }
        Ok(())
    }

    /// Records requested snapshots in this transaction, or publishes a closed window's rows.
    async fn apply_signal(&mut self, effect: SignalEffect) -> Result<(), SourceError> {
        let ticket = self
            .transaction
            .as_ref()
            .ok_or(SourceError::OutsideTransaction("signal"))?
            .ticket;
        match effect {
            SignalEffect::None => Ok(()),
            SignalEffect::Requested(records) => {
                for record in &records {
                    let record = self.incremental.state_record(record);
                    self.send(&record, ticket).await?;
                }
                Ok(())
            }
            SignalEffect::CloseWindow => self.publish_window(ticket).await,
        }
    }

    /// The high watermark: the chunk's surviving rows, positioned at this transaction.
    async fn publish_window(&mut self, ticket: Ticket) -> Result<(), SourceError> {
        let transaction = &self
            .transaction
            .as_ref()
            .ok_or(SourceError::OutsideTransaction("signal"))?
            .events;
        let position = SourcePosition {
            commit_ts_us: transaction.commit_ts_us,
            txid: Some(transaction.xid),
            lsn: Some(transaction.commit_lsn),
            previous_commit: None,
            snapshot: Default::default(),
        };
        let Some(closed) = self.incremental.close_window(&position).await? else {
            return Ok(());
        };
        self.encoder.register_table(&closed.schema).await?;
        self.producer
            .ensure_topic(&self.encoder.topic(&closed.schema))
            .await?;
        let table = closed.record.table.clone();
        let counter = self.metrics.snapshot_rows(&table);
        let processed_at = now_us();
        for event in &closed.events {
            let record = self.encoder.encode_change(event, processed_at)?;
            self.send(&record, ticket).await?;
            counter.inc();
        }
        if closed.record.done {
            self.metrics.snapshot_completed(&table);
        }
        Ok(())
    }

    /// Describes a relation from the catalog; a captured one gets its schemas and topic ready.
    async fn describe(&mut self, relation: &Relation) -> Result<RelationEntry, SourceError> {
        let entry = describe_relation(self.sql, relation, &self.settings.filter).await?;
        if entry.captured {
            self.encoder.register_table(&entry.schema).await?;
            let topic = self.encoder.topic(&entry.schema);
            self.producer.ensure_topic(&topic).await?;
            tracing::debug!(topic, "schemas registered and topic ready");
        }
        Ok(entry)
    }

    /// The relation's entry for a change with these tuples (the first a whole new row when
    /// `first_is_new_row`): described again first when they hold an enum label its types lack
    /// (its value schema then gets the label too), with columns made optional when the new
    /// row holds NULL where the catalog now says `NOT NULL`.
    async fn entry(
        &mut self,
        relation_id: u32,
        tuples: [Option<&Tuple<'_>>; 2],
        first_is_new_row: bool,
    ) -> Result<Arc<RelationEntry>, SourceError> {
        let mut entry = self.relations.get(relation_id)?;
        if !entry.captured {
            return Ok(entry);
        }
        // Only a new row is whole: an old key tuple holds NULL for every other column.
        if let Some(tuple) = tuples[0].filter(|_| first_is_new_row) {
            if entry.has_null_in_required(tuple) {
                tracing::info!(table = %entry.schema.qualified_name(), "a change from before a SET NOT NULL holds a NULL: its columns are optional in the table's schema from here on");
                let relaxed = entry.with_nulls_allowed(tuple);
                self.encoder.register_table(&relaxed.schema).await?;
                self.relations.insert(relaxed);
                entry = self.relations.get(relation_id)?;
            }
        }
        if !tuples.iter().flatten().any(|t| entry.has_unknown_label(t)) {
            return Ok(entry);
        }
        tracing::info!(table = %entry.schema.qualified_name(), "an enum type the table uses gained labels: describing the table again");
        let fresh = self.describe(&entry.relation).await?;
        self.relations.insert(fresh);
        Ok(self.relations.get(relation_id)?)
    }

    fn open(&mut self) -> Result<&mut OpenTransaction, SourceError> {
        self.transaction
            .as_mut()
            .map(|t| &mut t.events)
            .ok_or(SourceError::OutsideTransaction("row change"))
    }

    async fn commit(&mut self, end_lsn: Lsn) -> Result<(), SourceError> {
        let transaction = self
            .transaction
            .take()
            .ok_or(SourceError::OutsideTransaction("Commit"))?;
        if transaction.begin_published {
            self.metrics
                .observe_commit(transaction.events.commit_ts_us, now_us());
            self.incremental.committed(transaction.events.xid);
            let end = TransactionEvent {
                status: TransactionStatus::End {
                    data_collections: transaction.events.data_collections(),
                },
                id: transaction.events.id.clone(),
                ts_ms: transaction.events.commit_ts_us / 1000,
                event_count: transaction.events.event_count(),
            };
            let record = self.encoder.encode_transaction(&end)?;
            self.send(&record, transaction.ticket).await?;
        }
        self.progress
            .lock()
            .expect("progress lock")
            .commit(transaction.ticket, end_lsn);
        self.last_commit_end = end_lsn;
        Ok(())
    }

    async fn publish_changes(&mut self, events: Vec<ChangeEvent>) -> Result<(), SourceError> {
        if events.is_empty() {
            return Ok(());
        }
        let ticket = self.publish_begin_once().await?;
        let processed_at = now_us();
        for event in &events {
            self.incremental.observe(event);
            let record = self.encoder.encode_change(event, processed_at)?;
            self.send(&record, ticket).await?;
            if event.op == Op::Delete && self.settings.tombstones && !event.table.key.is_empty() {
                let tombstone = self.encoder.tombstone(event)?;
                self.send(&tombstone, ticket).await?;
            }
            self.metrics.count_event(&event.table, event.op);
        }
        Ok(())
    }

    /// Publishes the transaction's BEGIN record before its first event.
    async fn publish_begin_once(&mut self) -> Result<Ticket, SourceError> {
        let transaction = self
            .transaction
            .as_mut()
            .ok_or(SourceError::OutsideTransaction("row change"))?;
        let ticket = transaction.ticket;
        if transaction.begin_published {
            return Ok(ticket);
        }
        transaction.begin_published = true;
        let begin = TransactionEvent {
            status: TransactionStatus::Begin,
            id: transaction.events.id.clone(),
            ts_ms: transaction.events.commit_ts_us / 1000,
            event_count: 0,
        };
        let record = self.encoder.encode_transaction(&begin)?;
        self.send(&record, ticket).await?;
        Ok(ticket)
    }

    /// `pg_logical_emit_message` output: pgcdc's own messages are acted on (those of other
    /// slots ignored), heartbeats go to the heartbeat topic, everything else to
    /// `<prefix>.message`. A non-transactional message is a checkpoint of its own.
    async fn logical_message(
        &mut self,
        message: &pgoutput::LogicalMessage<'_>,
        lsn: Lsn,
    ) -> Result<(), SourceError> {
        if message.prefix == ddl::MESSAGE_PREFIX {
            return self.ddl_message(message).await;
        }
        match messages::sender(message.prefix, &self.settings.slot) {
            Sender::Own(kind) => return self.own_message(kind, message).await,
            Sender::Other => return Ok(()),
            Sender::User => {}
        }
        let record = if message.prefix == HEARTBEAT_PREFIX {
            self.encoder.encode_heartbeat(now_us() / 1000)?
        } else {
            let source = match &self.transaction {
                Some(transaction) if message.transactional => SourcePosition {
                    commit_ts_us: transaction.events.commit_ts_us,
                    txid: Some(transaction.events.xid),
                    lsn: Some(message.lsn),
                    previous_commit: Some(transaction.events.previous_commit),
                    snapshot: Default::default(),
                },
                _ => SourcePosition {
                    commit_ts_us: now_us(),
                    txid: None,
                    lsn: Some(message.lsn),
                    previous_commit: Some(self.last_commit_end),
                    snapshot: Default::default(),
                },
            };
            let event = LogicalMessage {
                prefix: message.prefix.to_owned(),
                content: message.content.to_vec(),
                transactional: message.transactional,
                source,
            };
            self.encoder.encode_message(&event, now_us())?
        };
        match &self.transaction {
            Some(transaction) if message.transactional => {
                let ticket = transaction.ticket;
                self.send(&record, ticket).await
            }
            None if message.transactional => {
                Err(SourceError::OutsideTransaction("transactional Message"))
            }
            _ => {
                let ticket = self.progress.lock().expect("progress lock").begin();
                self.send(&record, ticket).await?;
                let checkpoint = lsn.max(message.lsn);
                self.progress
                    .lock()
                    .expect("progress lock")
                    .commit(ticket, checkpoint);
                Ok(())
            }
        }
    }

    /// One of this source's own messages (see [`messages`]), in its place among the changes.
    async fn own_message(
        &mut self,
        kind: &str,
        message: &pgoutput::LogicalMessage<'_>,
    ) -> Result<(), SourceError> {
        let Some(ticket) = self
            .transaction
            .as_ref()
            .map(|t| t.ticket)
            .filter(|_| message.transactional)
        else {
            tracing::warn!(
                prefix = message.prefix,
                "ignoring a non-transactional message with a prefix of pgcdc's own"
            );
            return Ok(());
        };
        match kind {
            messages::TABLE_DROPPED => self.table_dropped(message.content, message.lsn).await,
            messages::CAPTURED_TABLES => {
                let record = self.incremental.tables_record(message.content);
                self.send(&record, ticket).await
            }
            _ => {
                let effect = self.incremental.on_message(kind, message.content);
                self.apply_signal(effect).await
            }
        }
    }

    /// A captured table stopped being captured (discovery's message, inside its transaction):
    /// its DROP schema change goes out once every record before it is acknowledged, so a
    /// consumer that reads the DROP already has every record of the table.
    async fn table_dropped(&mut self, content: &[u8], lsn: Lsn) -> Result<(), SourceError> {
        let Some(dropped) = DroppedTable::parse(content) else {
            tracing::warn!(content = %String::from_utf8_lossy(content), "ignoring an unreadable dropped-table message");
            return Ok(());
        };
        let transaction = self
            .transaction
            .as_ref()
            .ok_or(SourceError::OutsideTransaction("dropped-table message"))?;
        let (ticket, transaction_id, source) = (
            transaction.ticket,
            transaction.events.id.clone(),
            SourcePosition {
                commit_ts_us: transaction.events.commit_ts_us,
                txid: Some(transaction.events.xid),
                lsn: Some(lsn),
                previous_commit: Some(transaction.events.previous_commit),
                snapshot: Default::default(),
            },
        );
        self.incremental
            .forget_table(&format!("{}.{}", dropped.schema, dropped.table), lsn);
        self.await_acknowledged().await?;
        let change = SchemaChange {
            schema: dropped.schema,
            table: dropped.table,
            kind: TableChangeKind::Drop,
            ddl: None,
            table_description: None,
            previous: None,
            source,
            transaction_id: Some(transaction_id),
        };
        let record = self.encoder.encode_schema_change(&change, now_us())?;
        self.send(&record, ticket).await?;
        tracing::info!(table = %format!("{}.{}", change.schema, change.table), "published the table's DROP schema change");
        Ok(())
    }

    /// A DDL capture message (any source's event trigger emits it, every source reads it): for
    /// a captured table, its schema change goes out once every record before it is
    /// acknowledged, and nothing after it is handled before the broker acknowledged the change
    /// itself. A consumer thus finds every record of the table written before the change
    /// before the change, and the change before every record written after it.
    async fn ddl_message(
        &mut self,
        message: &pgoutput::LogicalMessage<'_>,
    ) -> Result<(), SourceError> {
        if !self.settings.ddl {
            return Ok(());
        }
        let Some(transaction) = self.transaction.as_ref().filter(|_| message.transactional) else {
            tracing::warn!("ignoring a non-transactional DDL capture message");
            return Ok(());
        };
        // A message's LSN is where its record ends, which is where the next record (a row of
        // the same transaction) may start: one less is still within the message's record and
        // strictly between the rows before it and those after it.
        let (ticket, transaction_id, source) = (
            transaction.ticket,
            transaction.events.id.clone(),
            SourcePosition {
                commit_ts_us: transaction.events.commit_ts_us,
                txid: Some(transaction.events.xid),
                lsn: Some(Lsn(message.lsn.0.saturating_sub(1))),
                previous_commit: Some(transaction.events.previous_commit),
                snapshot: Default::default(),
            },
        );
        let parsed = DdlMessage::parse(message.content)
            .and_then(|ddl| ddl.schema_change(&self.settings.filter, source));
        let change = match parsed {
            Ok(Some(change)) => SchemaChange {
                transaction_id: Some(transaction_id),
                ..change
            },
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, content = %String::from_utf8_lossy(message.content), "ignoring an unreadable DDL capture message");
                return Ok(());
            }
        };
        self.await_acknowledged().await?;
        let record = self.encoder.encode_schema_change(&change, now_us())?;
        self.send(&record, ticket).await?;
        self.await_acknowledged().await?;
        tracing::info!(table = %format!("{}.{}", change.schema, change.table), kind = change.kind.as_str(), ddl = change.ddl.as_deref().unwrap_or(""), "published a schema change");
        Ok(())
    }

    /// Waits until the broker acknowledged every record sent so far, keeping the walsender
    /// alive meanwhile.
    async fn await_acknowledged(&mut self) -> Result<(), SourceError> {
        loop {
            if self
                .progress
                .lock()
                .expect("progress lock")
                .inflight_records()
                == 0
            {
                return Ok(());
            }
            self.check_delivery()?;
            if *self.settings.shutdown.borrow() {
                return Err(SourceError::Interrupted);
            }
            if self.last_status.elapsed() >= self.settings.status_interval {
                self.send_status(false).await?;
            }
            tokio::time::sleep(BACKPRESSURE_PAUSE).await;
        }
    }

    /// Enqueues one record, waiting (and keeping the walsender alive) while the queue is full.
    async fn send(&mut self, record: &Record, ticket: Ticket) -> Result<(), SourceError> {
        // Counted before the enqueue: the delivery callback may run before `send` returns.
        self.progress
            .lock()
            .expect("progress lock")
            .produced(ticket);
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect();
        while !self.producer.send_or_full(
            &record.topic,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
            ticket,
            &self.settings.shutdown,
        )? {
            if self.last_status.elapsed() >= self.settings.status_interval {
                self.send_status(false).await?;
            }
            tokio::time::sleep(BACKPRESSURE_PAUSE).await;
        }
        Ok(())
    }
}
