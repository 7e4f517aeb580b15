//! The session's side of schema changes (see [`crate::sink::schema_changes`]): reading them
//! from their own feed before each chunk of records, holding back a partition whose next record
//! was written after a change that cannot be applied yet, and applying each change in its turn.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinHandle};
use tokio_postgres::Transaction;

use super::{begin, poison, Decoded, Item, Session};
use crate::config::{DdlMode, SinkConfig};
use crate::event::TableChangeKind;
use crate::kafka::{topic_matches, ConsumedRecord, KafkaError, TopicFeed};
use crate::sink::ddl::{quote_ident, TargetTable};
use crate::sink::offsets::{self, Partition};
use crate::sink::replay;
use crate::sink::schema_changes::{self, Behind, PendingChange, TableChange};
use crate::sink::SinkError;

/// How long the schema-change topics are asked for again before the session gives up.
const FEED_PATIENCE: Duration = Duration::from_secs(120);

/// What a read of the schema-change topics hands back: the feed, and the records it read.
pub(super) type FeedReadOutcome = (TopicFeed, Result<Vec<ConsumedRecord>, KafkaError>);

/// A read of the schema-change topics under way on a blocking thread.
pub(super) type FeedRead = JoinHandle<FeedReadOutcome>;

/// How long the schema change at the front of the queue waits before the sink says what for,
/// and how often it says so again.
const WAIT_REPORT: Duration = Duration::from_secs(60);

/// A schema-change record: its topic, partition and offset.
type RecordId = (String, i32, i64);

fn record_id(record: &ConsumedRecord) -> RecordId {
    (record.topic.clone(), record.partition, record.offset)
}

/// Watches the schema change at the front of the queue while it waits for its tables' earlier
/// records, and warns when it waits long: a table whose rows stop arriving on the target then
/// says which change holds it and which partitions that change still waits for.
#[derive(Default)]
pub(super) struct FrontWait {
    /// The waiting change, since when it waits, and when that was last reported.
    current: Option<(RecordId, Instant, Instant)>,
}

impl FrontWait {
    /// Notes what the front change waits for now (`None`: nothing waits).
    fn observe(
        &mut self,
        waiting: Option<(RecordId, Vec<Behind>)>,
        held: &HashMap<Partition, i64>,
    ) {
        let Some((id, behind)) = waiting else {
            self.current = None;
            return;
        };
        let now = Instant::now();
        match &mut self.current {
            Some((current, since, reported)) if *current == id => {
                if reported.elapsed() < WAIT_REPORT {
                    return;
                }
                *reported = now;
                let behind: Vec<String> = behind.iter().map(ToString::to_string).collect();
                let mut held: Vec<String> = held
                    .iter()
                    .map(|((topic, partition), offset)| format!("{topic}[{partition}] at {offset}"))
                    .collect();
                held.sort();
                tracing::warn!(
                    topic = id.0,
                    partition = id.1,
                    offset = id.2,
                    waiting_seconds = since.elapsed().as_secs(),
                    behind = ?behind,
                    held_back = ?held,
                    "a schema change is still waiting for its tables' earlier records to be applied"
                );
            }
            _ => self.current = Some((id, now, now)),
        }
    }
}

/// Whether `error` is a broker too busy to answer the feed's requests in time.
fn feed_busy(error: &SinkError) -> bool {
    matches!(
        error,
        SinkError::Consumer(KafkaError::Watermarks { .. } | KafkaError::Consume(_))
    )
}

/// Passes on the outcome of a read nothing waits for: a busy broker is only warned about, as
/// the next read asks again.
pub(super) fn warn_if_feed_busy(outcome: Result<(), SinkError>) -> Result<(), SinkError> {
    match outcome {
        Err(error) if feed_busy(&error) => {
            tracing::warn!(%error, "reading the schema-change topics failed; asking again later");
            Ok(())
        }
        outcome => outcome,
    }
}

impl Session<'_> {
    /// Whether this sink applies `topic`.
    pub(super) fn applies(&self, topic: &str) -> bool {
        self.config
            .apply
            .topics
            .iter()
            .any(|pattern| topic_matches(pattern, topic))
    }

    /// Starts reading the schema-change topics up to their current end on a blocking thread,
    /// unless a read is under way; the session goes on applying records meanwhile.
    pub(super) fn start_feed_read(&mut self, under_way: &mut Option<FeedRead>) {
        if under_way.is_some() {
            return;
        }
        let Some(mut feed) = self.feed.take() else {
            return;
        };
        let look_for_new_topics = self.consumer.take_assignment();
        *under_way = Some(tokio::task::spawn_blocking(move || {
            let read = feed.read_to_end(look_for_new_topics);
            (feed, read)
        }));
    }

    /// Reads the schema-change topics up to their current end and queues what is new, waiting
    /// for it: every change that precedes a record consumed before now is then known. A read
    /// under way may have started before the record was consumed, so another follows it. A
    /// broker too busy to answer is asked again for [`FEED_PATIENCE`] (records wait
    /// meanwhile), not the session ended: a new session would ask the same busy broker again
    /// after a rebalance.
    pub(super) async fn read_schema_changes(
        &mut self,
        under_way: &mut Option<FeedRead>,
    ) -> Result<(), SinkError> {
        if let Some(read) = under_way.take() {
            let outcome = self.finish_feed_read(read.await).await;
            warn_if_feed_busy(outcome)?;
        }
        let started = Instant::now();
        loop {
            self.start_feed_read(under_way);
            let Some(read) = under_way.take() else {
                return Ok(());
            };
            match self.finish_feed_read(read.await).await {
                Err(error) if feed_busy(&error) && started.elapsed() < FEED_PATIENCE => {
                    tracing::warn!(%error, "reading the schema-change topics failed; asking again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Takes the feed back from a finished read and queues the schema changes it found.
    pub(super) async fn finish_feed_read(
        &mut self,
        joined: Result<FeedReadOutcome, JoinError>,
    ) -> Result<(), SinkError> {
        let (feed, read) = joined.map_err(|_| SinkError::ConsumerStopped)?;
        self.feed = Some(feed);
        let mut read_now = Vec::new();
        for record in read.map_err(|e: KafkaError| SinkError::from(e))? {
            let partition = (record.topic.clone(), record.partition);
            if self
                .applied
                .get(&partition)
                .is_some_and(|p| record.offset < p.next_offset)
            {
                continue;
            }
            let Some(value) = record.value.as_deref() else {
                continue;
            };
            match self.decoders.schema_changes.read(value).await {
                Ok(Some(changes)) => {
                    read_now.push(PendingChange::new(record, changes, |t| self.applies(t)));
                }
                // A data topic of a table named `schema_changes`: its records are applied as
                // data.
                Ok(None) => {}
                Err(error) if error.is_transient() => {
                    return Err(SinkError::Registry(Box::new(error)))
                }
                Err(error) => {
                    poison(
                        &mut self.dead_letters,
                        self.metrics,
                        &record,
                        &error.to_string(),
                        None,
                    )?;
                    read_now.push(PendingChange::new(record, Vec::new(), |_| false));
                }
            }
        }
        let queued = &self.pending_changes;
        let applied = &self.applied;
        schema_changes::mark_replays(&mut read_now, |partition| {
            queued
                .iter()
                .filter(|p| p.record.topic == partition.0 && p.record.partition == partition.1)
                .map(PendingChange::last_position)
                .fold(
                    applied
                        .get(partition)
                        .map(|p| p.position)
                        .unwrap_or_default(),
                    Ord::max,
                )
        });
        // The changes of different tables are on different partitions, read in no particular
        // order; the source published them one at a time, each acknowledged before the next,
        // so everything read now follows what was read before, and ordering them by position
        // (each partition's own order kept) restores the order they happened in.
        self.pending_changes
            .extend(schema_changes::in_source_order(read_now, |pending| {
                (
                    (pending.record.topic.clone(), pending.record.partition),
                    pending.position(),
                )
            }));
        Ok(())
    }

    /// Whether `decoded` is to be dropped: its partition is held back, or delivers again from
    /// an earlier offset after being released and has not reached it yet.
    pub(super) fn held_back(&mut self, decoded: &Decoded) -> bool {
        let record = &decoded.record;
        let partition = (record.topic.clone(), record.partition);
        if self.held.contains_key(&partition) {
            return true;
        }
        match self.released.get(&partition) {
            Some(&from) if record.offset == from => {
                self.released.remove(&partition);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// A record written after a pending schema change of its table must not be applied before
    /// it: the batch before it is applied, and the change with it when the table's other
    /// partitions are that far too; otherwise its partition is held back (`true`) until the
    /// change is applied, and then delivers again from this record.
    pub(super) async fn wait_for_pending_changes(
        &mut self,
        decoded: &Decoded,
    ) -> Result<bool, SinkError> {
        let Ok(Some(Item::Change(change))) = &decoded.change else {
            return Ok(false);
        };
        let record = &decoded.record;
        let blocked = |pending: &PendingChange| pending.precedes(&record.topic, change.position);
        if !self.pending_changes.iter().any(blocked) {
            return Ok(false);
        }
        let partition = (record.topic.clone(), record.partition);
        for pending in self.pending_changes.iter_mut().filter(|p| blocked(p)) {
            pending
                .met_after
                .entry(partition.clone())
                .or_insert(record.offset);
        }
        self.flush().await?;
        self.apply_pending_changes().await?;
        if !self.pending_changes.iter().any(blocked) {
            return Ok(false);
        }
        tracing::debug!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            "holding the partition back until a schema change before this record is applied"
        );
        self.held.insert(partition, record.offset);
        Ok(true)
    }

    /// Applies the queued schema changes whose tables' earlier records are all applied, in
    /// the order they were read; then held-back partitions deliver again.
    pub(super) async fn apply_pending_changes(&mut self) -> Result<(), SinkError> {
        let mut applied_any = false;
        let mut waiting = None;
        while let Some(front) = self.pending_changes.front_mut() {
            if !front.waits_for.is_empty() {
                if front.watermarks.is_none() {
                    let mut marks = HashMap::new();
                    for topic in &front.waits_for {
                        for (partition, low_high) in self.consumer.watermarks(topic).await? {
                            marks.insert((topic.clone(), partition), low_high);
                        }
                    }
                    front.watermarks = Some(marks);
                }
                let group = &self.config.apply.group_id;
                let stored = offsets::stored_for(&self.client, group, &front.waits_for).await?;
                if !front.caught_up(&stored) {
                    waiting = Some((record_id(&front.record), front.behind(&stored)));
                    break;
                }
            }
            let pending = self.pending_changes.pop_front().expect("a front");
            self.apply_schema_change(pending).await?;
            applied_any = true;
        }
        self.front_wait.observe(waiting, &self.held);
        if applied_any {
            for (partition, offset) in std::mem::take(&mut self.held) {
                self.consumer.seek(&partition.0, partition.1, offset)?;
                self.released.insert(partition, offset);
            }
        }
        Ok(())
    }

    /// Applies one schema-change record and stores its offset, in one target transaction. A
    /// change the target refuses goes to the dead-letter topic, or stops the sink.
    async fn apply_schema_change(&mut self, pending: PendingChange) -> Result<(), SinkError> {
        self.last_schema_change = Some(Instant::now());
        let config = self.config;
        let replaying = config.apply.ddl == DdlMode::Apply;
        if replaying {
            for change in pending.changes.iter().filter(|c| defines(c.kind)) {
                if let Some(description) = &change.description {
                    let table = replay::sink_table(description, &config.apply.target_schema, &[]);
                    self.writer
                        .enums
                        .prepare(&self.client, &table, &config.apply.target_schema)
                        .await?;
                }
            }
        }
        let group = &config.apply.group_id;
        let record = &pending.record;
        let partition: Partition = (record.topic.clone(), record.partition);
        let mut tx = begin(&mut self.client, false).await?;
        let stored = offsets::lock(&tx, group, std::iter::once(&partition))
            .await?
            .get(&partition)
            .copied();
        if let Some(stored) = stored.filter(|s| s.next_offset > record.offset) {
            // Another sink of the group applied it.
            tracing::info!(
                topic = record.topic,
                partition = record.partition,
                offset = record.offset,
                stored_next_offset = stored.next_offset,
                "a schema-change record is already applied (by another sink of the group)"
            );
            drop(tx);
            self.applied.insert(partition, stored);
            return Ok(());
        }
        let mut progress = stored.unwrap_or_default();
        for change in &pending.changes {
            // Unlike rows, a change at exactly the stored position is the same change again
            // (each has a position of its own): replaying a CREATE after a later rename would
            // make the table again.
            if stored.is_some_and(|s| change.position <= s.position) {
                continue;
            }
            progress.position = progress.position.max(change.position);
            let ours = pending.blocks.contains(&change.topic());
            if change.kind == TableChangeKind::Drop {
                if ours {
                    drop_table(&tx, config, change, &mut self.writer.targets).await?;
                }
                continue;
            }
            if !ours || !replaying {
                continue;
            }
            let savepoint = tx
                .savepoint("pgcdc_schema_change")
                .await
                .map_err(|e| SinkError::target("create a savepoint", e))?;
            let outcome = replay_change(&savepoint, config, change).await;
            for (schema, table) in [
                change.previous.as_ref().map(|p| (&p.schema, &p.table)),
                Some((&change.schema, &change.table)),
            ]
            .into_iter()
            .flatten()
            {
                let target = (config.target_schema(schema).to_owned(), table.clone());
                self.writer.targets.remove(&target);
            }
            self.writer.applier.reset();
            for helper in &mut self.helpers {
                helper.reset();
            }
            match outcome {
                Ok(()) => savepoint
                    .commit()
                    .await
                    .map_err(|e| SinkError::target("release a savepoint", e))?,
                Err(error) if !error.is_transient() => {
                    savepoint
                        .rollback()
                        .await
                        .map_err(|e| SinkError::target("roll back a savepoint", e))?;
                    poison(
                        &mut self.dead_letters,
                        self.metrics,
                        record,
                        &error.to_string(),
                        error.sql_state(),
                    )?;
                }
                Err(error) => return Err(error),
            }
        }
        progress.next_offset = record.offset + 1;
        let stored_now = HashMap::from([(partition.clone(), progress)]);
        offsets::store(&tx, group, &stored_now).await?;
        tx.commit()
            .await
            .map_err(|e| SinkError::target("commit a schema change", e))?;
        self.applied.insert(partition.clone(), progress);
        self.start
            .lock()
            .expect("start offsets lock")
            .insert(partition.clone(), progress.next_offset);
        self.consumer
            .commit(&HashMap::from([(partition, progress.next_offset)]));
        Ok(())
    }
}

/// Applies a table's DROP: the table leaves `pgcdc.sink_tables`, and is dropped with
/// `apply.drop_tables` unless a table of its name was made since.
async fn drop_table(
    tx: &Transaction<'_>,
    config: &SinkConfig,
    change: &TableChange,
    targets: &mut HashMap<(String, String), TargetTable>,
) -> Result<(), SinkError> {
    let group = &config.apply.group_id;
    let target = (
        config.target_schema(&change.schema).to_owned(),
        change.table.clone(),
    );
    let quoted = quoted(&target.0, &target.1);
    let source = format!("{}.{}", change.schema, change.table);
    // Records of its topic can be read before the DROP (they are on other topics): if some
    // written after the drop were applied, a table of the same name was created since, and
    // the target table now holds its rows. Locked, so no other sink of the group applies
    // records of it meanwhile.
    let written_since = offsets::lock_topic(tx, group, &change.topic())
        .await?
        .iter()
        .any(|p| p.position > change.position);
    if written_since {
        tracing::warn!(source, target = quoted, "the source table was dropped and made again under its name before the sink read the DROP: the target table is kept (rows of the dropped table may remain in it)");
        return Ok(());
    }
    if config.apply.drop_tables {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {quoted}"))
            .await
            .map_err(|e| SinkError::target(format!("drop table {quoted}"), e))?;
    }
    offsets::forget_table(tx, group, (&target.0, &target.1)).await?;
    targets.remove(&target);
    if config.apply.drop_tables {
        tracing::info!(
            source,
            target = quoted,
            "the source table is gone: dropped the target table"
        );
    } else {
        tracing::info!(
            source,
            target = quoted,
            "the source table is gone: kept the target table (apply.drop_tables = false)"
        );
    }
    Ok(())
}

/// Replays a CREATE or ALTER on the target: moves a renamed table, then creates the table or
/// takes its columns and key from the definition before the change to the one after.
async fn replay_change(
    tx: &Transaction<'_>,
    config: &SinkConfig,
    change: &TableChange,
) -> Result<(), SinkError> {
    let target_schema = &config.apply.target_schema;
    let group = &config.apply.group_id;
    let to = (config.target_schema(&change.schema), change.table.as_str());
    let table = quoted(to.0, to.1);
    if let Some(previous) = &change.previous {
        let from = (
            config.target_schema(&previous.schema),
            previous.table.as_str(),
        );
        if from != to
            && replay::target_shape(tx, from.0, from.1).await?.is_some()
            && replay::target_shape(tx, to.0, to.1).await?.is_none()
        {
            run_statements(tx, &replay::rename_statements(from, to), change, &table).await?;
            offsets::forget_table(tx, group, from).await?;
            offsets::record_table(tx, group, (&change.schema, &change.table), to).await?;
        }
    }
    let Some(description) = &change.description else {
        return Ok(());
    };
    let known = replay::known_types(tx, description).await?;
    let statements = match replay::target_shape(tx, to.0, to.1).await? {
        Some(shape) => {
            let previous = change.previous.as_ref().filter(|p| !p.columns.is_empty());
            replay::alter_statements(&table, &shape, previous, description, target_schema, &known)
        }
        None if change.kind == TableChangeKind::Create || config.apply.create_tables => {
            let statements = replay::create_statements(description, to, target_schema, &known);
            offsets::record_table(tx, group, (&change.schema, &change.table), to).await?;
            statements
        }
        None => Vec::new(),
    };
    run_statements(tx, &statements, change, &table).await
}

/// Runs `statements` for `table`, naming the schema change in the error.
async fn run_statements(
    tx: &Transaction<'_>,
    statements: &[String],
    change: &TableChange,
    table: &str,
) -> Result<(), SinkError> {
    for statement in statements {
        tx.batch_execute(statement).await.map_err(|e| {
            let ddl = change.ddl.as_deref().unwrap_or("(statement not captured)");
            SinkError::target(
                format!("replay the schema change `{ddl}` on {table} with `{statement}`"),
                e,
            )
        })?;
        tracing::info!(table, statement, "replayed a source schema change");
    }
    Ok(())
}

/// A target table's quoted name.
fn quoted(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// Whether `kind` changes a table's definition (rather than ending it).
fn defines(kind: TableChangeKind) -> bool {
    matches!(kind, TableChangeKind::Create | TableChangeKind::Alter)
}
