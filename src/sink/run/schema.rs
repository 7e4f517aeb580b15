//! The session's side of schema changes (see [`crate::sink::schema_changes`]): queueing them
//! as they are read, holding back records written after a DROP, and applying each in its turn.

use std::collections::HashMap;

use super::{begin, Decoded, Item, Session};
use crate::event::TableChangeKind;
use crate::kafka::{topic_matches, ConsumedRecord};
use crate::sink::ddl::quote_ident;
use crate::sink::offsets;
use crate::sink::schema_changes::{PendingChange, TableChange};
use crate::sink::SinkError;

impl Session<'_> {
    /// Whether this sink applies `topic`.
    pub(super) fn applies(&self, topic: &str) -> bool {
        self.config
            .apply
            .topics
            .iter()
            .any(|pattern| topic_matches(pattern, topic))
    }

    /// Queues a schema-change record; it is applied (and its offset stored) in its turn.
    pub(super) fn queue_schema_changes(
        &mut self,
        record: ConsumedRecord,
        changes: Vec<TableChange>,
    ) {
        let dropped_topics = changes
            .iter()
            .filter(|change| change.kind == TableChangeKind::Drop)
            .map(TableChange::topic)
            .filter(|topic| self.applies(topic))
            .collect();
        self.pending_changes.push_back(PendingChange {
            record,
            changes,
            dropped_topics,
            watermarks: None,
            met_after: HashMap::new(),
        });
    }

    /// A record written after a pending DROP of its table must not be applied before it: the
    /// batch before it is applied and the DROP with it when the table's other partitions are
    /// that far too; otherwise the session ends, to read the record again later.
    pub(super) async fn wait_for_pending_changes(
        &mut self,
        decoded: &Decoded,
    ) -> Result<(), SinkError> {
        let Ok(Some(Item::Change(change))) = &decoded.change else {
            return Ok(());
        };
        let record = &decoded.record;
        let blocked = |pending: &PendingChange| pending.precedes(&record.topic, change.position);
        if !self.pending_changes.iter().any(blocked) {
            return Ok(());
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
        match self.pending_changes.iter().find(|p| blocked(p)) {
            None => Ok(()),
            Some(pending) => Err(SinkError::WaitingForDrop {
                topic: record.topic.clone(),
                partition: record.partition,
                table: pending
                    .changes
                    .iter()
                    .map(|c| format!("{}.{}", c.schema, c.table))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Applies the queued schema changes whose tables' earlier records are all applied, in
    /// the order they were read.
    pub(super) async fn apply_pending_changes(&mut self) -> Result<(), SinkError> {
        while let Some(front) = self.pending_changes.front_mut() {
            if !front.dropped_topics.is_empty() {
                if front.watermarks.is_none() {
                    let mut marks = HashMap::new();
                    for topic in &front.dropped_topics {
                        for (partition, low_high) in self.consumer.watermarks(topic).await? {
                            marks.insert((topic.clone(), partition), low_high);
                        }
                    }
                    front.watermarks = Some(marks);
                }
                let group = &self.config.apply.group_id;
                let stored =
                    offsets::stored_for(&self.client, group, &front.dropped_topics).await?;
                if !front.caught_up(&stored) {
                    return Ok(());
                }
            }
            let pending = self.pending_changes.pop_front().expect("a front");
            self.apply_schema_change(pending).await?;
        }
        Ok(())
    }

    /// Applies one schema-change record and stores its offset, in one target transaction.
    async fn apply_schema_change(&mut self, pending: PendingChange) -> Result<(), SinkError> {
        let config = self.config;
        let group = &config.apply.group_id;
        let record = &pending.record;
        let partition = (record.topic.clone(), record.partition);
        let tx = begin(&mut self.client, false).await?;
        let stored = offsets::lock(&tx, group, std::iter::once(&partition))
            .await?
            .get(&partition)
            .copied();
        if let Some(stored) = stored.filter(|s| s.next_offset > record.offset) {
            return Err(SinkError::Fenced {
                topic: record.topic.clone(),
                partition: record.partition,
                stored: stored.next_offset,
                consumed: record.offset,
            });
        }
        let mut progress = stored.unwrap_or_default();
        for change in &pending.changes {
            if offsets::already_applied(stored.as_ref(), change.position) {
                continue;
            }
            progress.position = progress.position.max(change.position);
            if change.kind != TableChangeKind::Drop
                || !pending.dropped_topics.contains(&change.topic())
            {
                continue;
            }
            let target = (
                config.target_schema(&change.schema).to_owned(),
                change.table.clone(),
            );
            let quoted = format!("{}.{}", quote_ident(&target.0), quote_ident(&target.1));
            let source = format!("{}.{}", change.schema, change.table);
            // Records of its topic can be read before the DROP (they are on other topics): if
            // some written after the drop were applied, a table of the same name was created
            // since, and the target table now holds its rows.
            // Locked, so no other sink of the group applies records of it meanwhile.
            let written_since = offsets::lock_topic(&tx, group, &change.topic())
                .await?
                .iter()
                .any(|p| p.position > change.position);
            if written_since {
                tracing::warn!(source, target = quoted, "the source table was dropped and made again under its name before the sink read the DROP: the target table is kept (rows of the dropped table may remain in it)");
                continue;
            }
            if config.apply.drop_tables {
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {quoted}"))
                    .await
                    .map_err(|e| SinkError::target(format!("drop table {quoted}"), e))?;
            }
            offsets::forget_table(&tx, group, (&target.0, &target.1)).await?;
            self.writer.targets.remove(&target);
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
