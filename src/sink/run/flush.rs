//! Applying a gathered batch: in one target transaction with its offsets, or divided by
//! partition over `apply.workers` connections, each part in a transaction of its own that also
//! stores its partitions' offsets (so effectively-once holds per partition). A batch that
//! truncates a table stays whole, so the truncate keeps its place among the rows of every
//! partition; schema changes are applied between batches.

use std::collections::HashMap;
use std::time::Instant;

use tokio_postgres::{Client, Transaction};

use super::pending::{target_name, Pending};
use super::progress::topic_counts;
use super::{poison, Item, Session};
use crate::config::SinkConfig;
use crate::metrics::SinkMetrics;
use crate::sink::apply::Applier;
use crate::sink::batch::{Segment, TableBatch};
use crate::sink::change::SinkTable;
use crate::sink::ddl::{self, TargetTable};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::enums::TargetEnums;
use crate::sink::offsets::{self, Partition};
use crate::sink::SinkError;

/// Target tables and statements of a session.
pub(super) struct Writer<'a> {
    pub(super) config: &'a SinkConfig,
    pub(super) metrics: &'a SinkMetrics,
    pub(super) targets: HashMap<(String, String), TargetTable>,
    pub(super) enums: TargetEnums,
    pub(super) applier: Applier,
}

/// An apply connection besides the session's first.
pub(super) struct Helper {
    client: Client,
    applier: Applier,
}

impl Helper {
    /// A helper applying over `client`.
    pub(super) fn new(client: Client) -> Helper {
        Helper {
            client,
            applier: Applier::default(),
        }
    }

    /// Forgets prepared statements made for tables whose definition changed.
    pub(super) fn reset(&mut self) {
        self.applier.reset();
    }
}

impl Session<'_> {
    /// Applies the pending batch: in one transaction with its offsets, or divided over the
    /// apply connections by partition, each part in a transaction with its own offsets.
    pub(super) async fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending.records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let skipped = pending.skipped;
        let applied = topic_counts(&pending.records);
        // A truncate must stay in place among its table's rows from every partition.
        if self.helpers.is_empty() || pending.truncates || pending.slots_used() < 2 {
            self.flush_whole(pending).await?;
        } else {
            self.flush_parts(pending).await?;
        }
        self.metrics.observe_batch(started.elapsed());
        self.report_progress(&applied);
        if skipped > 0 {
            tracing::info!(
                skipped,
                "skipped changes the target already has (a source replay)"
            );
        }
        self.apply_pending_changes().await
    }

    /// Logs the apply progress lines that are due after a batch of `applied` records.
    fn report_progress(&mut self, applied: &[(String, u64, u64)]) {
        let metrics = self.metrics;
        let topics = applied
            .iter()
            .map(|(topic, records, bytes)| (topic.as_str(), *records, *bytes));
        for line in self
            .progress
            .applied(topics, || metrics.lag_by_topic(), Instant::now())
        {
            tracing::info!(
                topic = line.topic.as_deref().unwrap_or("all"),
                records = line.records,
                records_per_second = line.records_per_second,
                megabytes_per_second = format!("{:.1}", line.megabytes_per_second),
                backlog_records = line.backlog,
                eta_seconds = line.eta_seconds,
                "apply progress"
            );
        }
    }

    /// Applies the batch in one transaction on the first connection.
    async fn flush_whole(&mut self, mut pending: Pending) -> Result<(), SinkError> {
        match self.apply_batch(&mut pending).await {
            Ok(()) => {}
            Err(error) if error.is_data_error() => {
                tracing::warn!(%error, "the target rejected a batch; applying it change by change to find the record");
                self.writer.targets.clear();
                self.reapply_one_by_one(&pending).await?;
            }
            Err(error) => return Err(error),
        }
        self.committed(&pending);
        Ok(())
    }

    /// Applies the batch's parts at once, one per connection. Target tables are created or
    /// widened first, so no two connections change a definition. A part the target rejects
    /// is applied again change by change once all are done; a failed part fails the session
    /// after the others committed (each holds its partitions' offsets, so none is applied
    /// twice).
    async fn flush_parts(&mut self, pending: Pending) -> Result<(), SinkError> {
        if self.config.apply.create_tables {
            self.prepare_enum_types(&pending).await?;
        }
        self.resolve_targets(&pending).await?;
        if let Some(dead_letters) = &mut self.dead_letters {
            // Records poisoned while decoding: delivered before any part stores their offsets.
            dead_letters.flush()?;
        }
        let mut parts = pending.split();
        // A partition whose only record was a schema change has nothing to apply.
        parts.retain(|part| !part.records.is_empty());
        tracing::debug!(
            parts = parts.len(),
            records = parts.iter().map(|p| p.records.len()).sum::<usize>(),
            "applying a batch over several connections"
        );
        let Session {
            config,
            metrics,
            client,
            writer,
            helpers,
            ..
        } = self;
        let connections = std::iter::once((client, &mut writer.applier))
            .chain(helpers.iter_mut().map(|h| (&mut h.client, &mut h.applier)));
        let targets = &writer.targets;
        let outcomes = futures_util::future::join_all(parts.iter_mut().zip(connections).map(
            |(part, (client, applier))| apply_part(client, applier, targets, config, metrics, part),
        ))
        .await;
        let mut failure = None;
        for (part, outcome) in parts.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => self.committed(&part),
                Err(error) if error.is_data_error() => {
                    tracing::warn!(%error, "the target rejected part of a batch; applying it change by change to find the record");
                    self.writer.targets.clear();
                    self.reapply_one_by_one(&part).await?;
                    self.committed(&part);
                }
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn apply_batch(&mut self, pending: &mut Pending) -> Result<(), SinkError> {
        if self.config.apply.create_tables {
            self.prepare_enum_types(pending).await?;
        }
        let tx = begin(&mut self.client, self.config.apply.disable_triggers).await?;
        check_fence(&tx, &self.config.apply.group_id, pending).await?;
        for changes in pending.take_tables() {
            for segment in TableBatch::of(changes).segments() {
                self.writer.apply(&tx, segment).await?;
            }
        }
        finish(
            tx,
            &self.config.apply.group_id,
            pending,
            &mut self.dead_letters,
        )
        .await
    }

    /// Creates or widens the target tables of the batch's changes (in a transaction of its
    /// own, when any is missing or lacks a column) and keeps them for the parts to apply to.
    async fn resolve_targets(&mut self, pending: &Pending) -> Result<(), SinkError> {
        let shapes = pending.shapes();
        if shapes
            .iter()
            .all(|table| self.writer.cached(table).is_some())
        {
            return Ok(());
        }
        let tx = begin(&mut self.client, false).await?;
        for table in shapes {
            self.writer.resolve(&tx, table).await?;
        }
        tx.commit()
            .await
            .map_err(|e| SinkError::target("commit the target tables' definitions", e))
    }

    /// Creates or extends the target's enum types the batch's columns use, each statement
    /// committed before the batch's transaction begins (see [`TargetEnums`]).
    async fn prepare_enum_types(&mut self, pending: &Pending) -> Result<(), SinkError> {
        for table in pending.shapes() {
            self.writer
                .enums
                .prepare(&self.client, table, &self.config.apply.target_schema)
                .await?;
        }
        Ok(())
    }

    /// Applies the batch's records one at a time, each in a savepoint, routing the ones the
    /// target rejects to the dead-letter topic (or stopping with the first one's offset).
    pub(super) async fn reapply_one_by_one(&mut self, pending: &Pending) -> Result<(), SinkError> {
        let mut tx = begin(&mut self.client, self.config.apply.disable_triggers).await?;
        check_fence(&tx, &self.config.apply.group_id, pending).await?;
        let mut progress = self.applied.clone();
        for record in &pending.records {
            let partition = (record.topic.clone(), record.partition);
            let Ok(Some(Item::Change(change))) = self.decoders.decode(record).await else {
                continue;
            };
            let stored = progress.entry(partition).or_default();
            if offsets::already_applied(Some(stored), change.position) {
                continue;
            }
            stored.position = stored.position.max(change.position);
            let batch = TableBatch::of(vec![change]);
            let savepoint = tx
                .savepoint("pgcdc_change")
                .await
                .map_err(|e| SinkError::target("create a savepoint", e))?;
            let mut outcome = Ok(());
            for segment in batch.segments() {
                outcome = self.writer.apply(&savepoint, segment).await;
                if outcome.is_err() {
                    break;
                }
            }
            match outcome {
                Ok(()) => savepoint
                    .commit()
                    .await
                    .map_err(|e| SinkError::target("release a savepoint", e))?,
                Err(error) if error.is_data_error() => {
                    savepoint
                        .rollback()
                        .await
                        .map_err(|e| SinkError::target("roll back a savepoint", e))?;
                    self.writer.targets.clear();
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
        finish(
            tx,
            &self.config.apply.group_id,
            pending,
            &mut self.dead_letters,
        )
        .await
    }

    /// The batch is durable in the target: remember its progress and tell the group.
    pub(super) fn committed(&mut self, pending: &Pending) {
        let mut start = self.start.lock().expect("start offsets lock");
        for (partition, progress) in &pending.progress {
            self.applied.insert(partition.clone(), *progress);
            start.insert(partition.clone(), progress.next_offset);
        }
        drop(start);
        let next: HashMap<Partition, i64> = pending
            .progress
            .iter()
            .map(|(p, progress)| (p.clone(), progress.next_offset))
            .collect();
        self.consumer.commit(&next);
    }
}

impl Writer<'_> {
    /// Applies one segment to its target table.
    pub(super) async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        segment: &Segment,
    ) -> Result<(), SinkError> {
        if let Segment::Truncate { table } = segment {
            // A truncate carries no key schema: it must not create the table, and a table the
            // target does not have yet has nothing to truncate.
            let (schema, name) = target_name(self.config, table);
            if ddl::describe(tx, &schema, &name).await?.is_none() {
                return Ok(());
            }
        }
        let target = self.resolve(tx, segment.table()).await?;
        apply_segment(
            tx,
            &mut self.applier,
            &target,
            segment,
            self.config,
            self.metrics,
        )
        .await
    }

    /// The target table known for `table`, when it has every column of it.
    pub(super) fn cached(&self, table: &SinkTable) -> Option<&TargetTable> {
        self.targets
            .get(&target_name(self.config, table))
            .filter(|target| {
                table
                    .columns
                    .iter()
                    .all(|c| target.column_type(&c.name).is_some())
            })
    }

    /// The target table for `table`: created or widened when allowed, recorded for `verify`.
    pub(super) async fn resolve(
        &mut self,
        tx: &Transaction<'_>,
        table: &SinkTable,
    ) -> Result<TargetTable, SinkError> {
        if let Some(target) = self.cached(table) {
            return Ok(target.clone());
        }
        let (schema, name) = target_name(self.config, table);
        let create = self.config.apply.create_tables;
        let qualified = format!("{schema}.{name}");
        let mut target = match ddl::describe(tx, &schema, &name).await? {
            Some(target) => target,
            None if create => {
                run_ddl(
                    tx,
                    &ddl::create_table_sql(&schema, &name, table, &self.config.apply.target_schema),
                    &qualified,
                )
                .await?;
                tracing::info!(table = qualified, "created the target table");
                described(tx, &schema, &name).await?
            }
            None => return Err(SinkError::MissingTable { table: qualified }),
        };
        let added = ddl::add_columns_sql(&target, table, &self.config.apply.target_schema);
        if let Some(sql) = added.filter(|_| create) {
            run_ddl(tx, &sql, &qualified).await?;
            tracing::info!(table = qualified, "added new columns to the target table");
            target = described(tx, &schema, &name).await?;
        }
        if !table.key.is_empty() && target.primary_key.is_empty() {
            return Err(SinkError::NoPrimaryKey { table: qualified });
        }
        offsets::record_table(
            tx,
            &self.config.apply.group_id,
            (&table.schema, &table.table),
            (&schema, &name),
        )
        .await?;
        self.targets.insert((schema, name), target.clone());
        Ok(target)
    }
}

/// Applies one part of a batch on its own connection, in one transaction with its offsets;
/// its tables were resolved before.
async fn apply_part(
    client: &mut Client,
    applier: &mut Applier,
    targets: &HashMap<(String, String), TargetTable>,
    config: &SinkConfig,
    metrics: &SinkMetrics,
    part: &mut Pending,
) -> Result<(), SinkError> {
    let tx = begin(client, config.apply.disable_triggers).await?;
    check_fence(&tx, &config.apply.group_id, part).await?;
    for changes in part.take_tables() {
        for segment in TableBatch::of(changes).segments() {
            let (schema, name) = target_name(config, segment.table());
            let target = targets
                .get(&(schema, name))
                .ok_or_else(|| SinkError::MissingTable {
                    table: format!("{}.{}", segment.table().schema, segment.table().table),
                })?;
            apply_segment(&tx, applier, target, segment, config, metrics).await?;
        }
    }
    finish(tx, &config.apply.group_id, part, &mut None).await
}

/// Applies a segment to its resolved target table and counts the rows.
async fn apply_segment(
    tx: &Transaction<'_>,
    applier: &mut Applier,
    target: &TargetTable,
    segment: &Segment,
    config: &SinkConfig,
    metrics: &SinkMetrics,
) -> Result<(), SinkError> {
    applier
        .apply(tx, target, segment, config.apply.on_conflict)
        .await?;
    for (op, rows) in segment.applied_rows() {
        metrics.count_applied(segment.table(), op, rows);
    }
    Ok(())
}

async fn run_ddl(tx: &Transaction<'_>, sql: &str, table: &str) -> Result<(), SinkError> {
    tx.batch_execute(sql)
        .await
        .map_err(|e| SinkError::target(format!("create or alter table {table}"), e))
}

async fn described(
    tx: &Transaction<'_>,
    schema: &str,
    name: &str,
) -> Result<TargetTable, SinkError> {
    ddl::describe(tx, schema, name)
        .await?
        .ok_or_else(|| SinkError::MissingTable {
            table: format!("{schema}.{name}"),
        })
}

pub(super) async fn begin(
    client: &mut Client,
    disable_triggers: bool,
) -> Result<Transaction<'_>, SinkError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| SinkError::target("begin a transaction", e))?;
    if disable_triggers {
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .await
            .map_err(|e| {
                SinkError::target(
                    "set session_replication_role = replica (needs superuser, or on PostgreSQL 15+ GRANT SET ON PARAMETER session_replication_role)",
                    e,
                )
            })?;
    }
    Ok(tx)
}

/// Stores the offsets, makes sure dead letters are delivered, and commits.
async fn finish(
    tx: Transaction<'_>,
    group_id: &str,
    pending: &Pending,
    dead_letters: &mut Option<DeadLetters>,
) -> Result<(), SinkError> {
    offsets::store(&tx, group_id, &pending.progress).await?;
    if let Some(dead_letters) = dead_letters {
        dead_letters.flush()?;
    }
    tx.commit()
        .await
        .map_err(|e| SinkError::target("commit a batch", e))
}

/// Another sink of the group applied these partitions meanwhile: the session restarts from
/// the stored offsets rather than apply records twice.
async fn check_fence(
    tx: &Transaction<'_>,
    group_id: &str,
    pending: &Pending,
) -> Result<(), SinkError> {
    let stored = offsets::lock(tx, group_id, pending.first_offsets.keys()).await?;
    for (partition, first) in &pending.first_offsets {
        let Some(progress) = stored.get(partition) else {
            continue;
        };
        if *first < progress.next_offset {
            return Err(SinkError::Fenced {
                topic: partition.0.clone(),
                partition: partition.1,
                stored: progress.next_offset,
                consumed: *first,
            });
        }
        if *first > progress.next_offset {
            tracing::warn!(
                topic = partition.0,
                partition = partition.1,
                from = progress.next_offset,
                to = first,
                "records are gone from the broker (retention?) and were never applied"
            );
        }
    }
    Ok(())
}
