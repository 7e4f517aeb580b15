//! The batch being gathered, and how it divides among the apply connections: every partition's
//! changes go to one connection (its slot), so each key's changes stay in order on it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::SinkConfig;
use crate::kafka::ConsumedRecord;
use crate::sink::change::{SinkChange, SinkOp, SinkTable};
use crate::sink::offsets::{Partition, PartitionProgress};

/// One table's changes from the partitions of one slot, in arrival order.
pub(super) struct TableChanges {
    pub(super) slot: usize,
    pub(super) target: (String, String),
    pub(super) changes: Vec<SinkChange>,
}

/// A batch being gathered: per-table changes, and the progress each partition reaches with it.
#[derive(Default)]
pub(super) struct Pending {
    /// Each (slot, table)'s changes in arrival order; sorted by source position before
    /// applying, since one table's changes may come from several partitions.
    pub(super) tables: Vec<TableChanges>,
    table_index: HashMap<(usize, (String, String)), usize>,
    /// The slot of each partition in the batch: partitions are dealt out in the order they
    /// first appear, so a batch's partitions spread evenly over the connections.
    slots: HashMap<Partition, usize>,
    pub(super) progress: HashMap<Partition, PartitionProgress>,
    pub(super) first_offsets: HashMap<Partition, i64>,
    /// The batch's records, kept to find a poison record by applying them one by one.
    pub(super) records: Vec<ConsumedRecord>,
    pub(super) changes: usize,
    /// Changes left out as replays of what the target already has.
    pub(super) skipped: usize,
    /// The batch truncates a table: its changes from every partition are applied in one
    /// transaction, in source order.
    pub(super) truncates: bool,
}

impl Pending {
    /// The slot of `partition`, dealing a new one to the next of `slots` slots.
    pub(super) fn slot(&mut self, partition: &Partition, slots: usize) -> usize {
        let next = self.slots.len() % slots.max(1);
        *self.slots.entry(partition.clone()).or_insert(next)
    }

    /// Adds a change read from a partition of `slot`.
    pub(super) fn push(&mut self, config: &SinkConfig, slot: usize, change: SinkChange) {
        let target = target_name(config, &change.table);
        let tables = &mut self.tables;
        let index = *self
            .table_index
            .entry((slot, target.clone()))
            .or_insert_with(|| {
                tables.push(TableChanges {
                    slot,
                    target,
                    changes: Vec::new(),
                });
                tables.len() - 1
            });
        self.truncates |= change.op == SinkOp::Truncate;
        self.tables[index].changes.push(change);
        self.changes += 1;
    }

    /// How many slots hold records.
    pub(super) fn slots_used(&self) -> usize {
        let mut used: Vec<usize> = self.slots.values().copied().collect();
        used.sort_unstable();
        used.dedup();
        used.len()
    }

    /// Each table's changes from every slot, sorted by source position (stable: changes
    /// without a position keep their arrival order).
    pub(super) fn take_tables(&mut self) -> Vec<Vec<SinkChange>> {
        let mut merged: Vec<((String, String), Vec<SinkChange>)> = Vec::new();
        for table in std::mem::take(&mut self.tables) {
            match merged
                .iter_mut()
                .find(|(target, _)| *target == table.target)
            {
                Some((_, changes)) => changes.extend(table.changes),
                None => merged.push((table.target, table.changes)),
            }
        }
        self.table_index.clear();
        merged
            .into_iter()
            .map(|(_, mut changes)| {
                changes.sort_by_key(|change| change.position);
                changes
            })
            .collect()
    }

    /// The batch divided by slot, one part per slot in use, each with its partitions'
    /// changes, records and progress.
    pub(super) fn split(self) -> Vec<Pending> {
        let mut parts: Vec<Pending> = Vec::new();
        let mut part_of_slot: HashMap<usize, usize> = HashMap::new();
        let slots = self.slots;
        let mut part = |slot: usize, parts: &mut Vec<Pending>| {
            *part_of_slot.entry(slot).or_insert_with(|| {
                parts.push(Pending::default());
                parts.len() - 1
            })
        };
        for table in self.tables {
            let index = part(table.slot, &mut parts);
            let into = &mut parts[index];
            into.changes += table.changes.len();
            into.truncates |= table.changes.iter().any(|c| c.op == SinkOp::Truncate);
            into.table_index
                .insert((table.slot, table.target.clone()), into.tables.len());
            into.tables.push(table);
        }
        for record in self.records {
            let partition = (record.topic.clone(), record.partition);
            let index = part(slots[&partition], &mut parts);
            parts[index].records.push(record);
        }
        for (partition, progress) in self.progress {
            let index = part(slots[&partition], &mut parts);
            parts[index].progress.insert(partition, progress);
        }
        for (partition, offset) in self.first_offsets {
            let index = part(slots[&partition], &mut parts);
            parts[index].first_offsets.insert(partition, offset);
        }
        for (partition, slot) in slots {
            let index = part(slot, &mut parts);
            parts[index].slots.insert(partition, slot);
        }
        if let Some(first) = parts.first_mut() {
            first.skipped = self.skipped;
        }
        parts
    }

    /// The distinct table shapes the batch's changes carry.
    pub(super) fn shapes(&self) -> Vec<&Arc<SinkTable>> {
        let mut seen: Vec<&Arc<SinkTable>> = Vec::new();
        for change in self.tables.iter().flat_map(|t| &t.changes) {
            if !seen.iter().any(|table| Arc::ptr_eq(table, &change.table)) {
                seen.push(&change.table);
            }
        }
        seen
    }
}

/// The target (schema, table) of a source table.
pub(super) fn target_name(config: &SinkConfig, table: &SinkTable) -> (String, String) {
    (
        config.target_schema(&table.schema).to_owned(),
        table.table.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::sink::change::{Cell, Position, SinkColumn};

    fn config() -> SinkConfig {
        SinkConfig::from_toml_str(
            "[postgres]\nurl = \"postgresql://a@h/d\"\n[kafka]\nbrokers = \"b:1\"\n\
             [apply]\ntopics = [\"shop.l1.*\"]\n",
            Vec::new(),
        )
        .expect("config")
    }

    fn table(name: &str) -> Arc<SinkTable> {
        Arc::new(SinkTable {
            schema: "l1".into(),
            table: name.into(),
            columns: vec![SinkColumn {
                name: "id".into(),
                sql_type: "integer".into(),
                optional: false,
                enum_type: None,
            }],
            key: vec![0],
        })
    }

    fn change(table: &Arc<SinkTable>, op: SinkOp, id: u64, lsn: u64) -> SinkChange {
        SinkChange {
            table: Arc::clone(table),
            op,
            before: None,
            after: Some(vec![Cell::Text(id.to_string())]),
            position: Position {
                commit_lsn: lsn,
                lsn,
                order: 1,
            },
        }
    }

    /// Takes a change read at `offset` of `partition` of topic `t`, as the session does.
    fn take(pending: &mut Pending, partition: i32, offset: i64, change: SinkChange) {
        let partition: Partition = ("t".into(), partition);
        let slot = pending.slot(&partition, 2);
        pending.push(&config(), slot, change);
        pending
            .first_offsets
            .entry(partition.clone())
            .or_insert(offset);
        pending.progress.insert(
            partition.clone(),
            PartitionProgress {
                next_offset: offset + 1,
                ..Default::default()
            },
        );
        pending.records.push(ConsumedRecord {
            topic: partition.0,
            partition: partition.1,
            offset,
            key: None,
            value: None,
        });
    }

    fn ids(changes: &[SinkChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match &c.after.as_ref().expect("after")[0] {
                Cell::Text(id) => id.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn partitions_are_dealt_over_the_slots_in_order_of_arrival() {
        let mut pending = Pending::default();
        let t = table("t");
        for (partition, offset) in [(5, 10), (2, 7), (5, 11), (9, 3)] {
            take(
                &mut pending,
                partition,
                offset,
                change(&t, SinkOp::Create, 1, 1),
            );
        }
        assert_eq!(pending.slot(&("t".into(), 5), 2), 0);
        assert_eq!(pending.slot(&("t".into(), 2), 2), 1);
        assert_eq!(pending.slot(&("t".into(), 9), 2), 0);
        assert_eq!(pending.slots_used(), 2);
        assert_eq!(pending.changes, 4);
    }

    #[test]
    fn a_split_keeps_each_partition_whole_in_one_part() {
        let mut pending = Pending::default();
        let (t, u) = (table("t"), table("u"));
        take(&mut pending, 0, 100, change(&t, SinkOp::Create, 1, 10));
        take(&mut pending, 1, 200, change(&t, SinkOp::Create, 2, 20));
        take(&mut pending, 0, 101, change(&u, SinkOp::Update, 3, 30));
        take(&mut pending, 2, 300, change(&t, SinkOp::Delete, 4, 40));
        take(&mut pending, 1, 201, change(&t, SinkOp::Update, 5, 50));
        pending.skipped = 2;
        let parts = pending.split();
        assert_eq!(parts.len(), 2);
        let offsets = |part: &Pending| -> Vec<(i32, i64)> {
            part.records
                .iter()
                .map(|r| (r.partition, r.offset))
                .collect()
        };
        assert_eq!(offsets(&parts[0]), [(0, 100), (0, 101), (2, 300)]);
        assert_eq!(offsets(&parts[1]), [(1, 200), (1, 201)]);
        let mut progress: Vec<(i32, i64)> = parts[0]
            .progress
            .iter()
            .map(|((_, p), progress)| (*p, progress.next_offset))
            .collect();
        progress.sort_unstable();
        assert_eq!(progress, [(0, 102), (2, 301)]);
        assert_eq!(parts[1].first_offsets[&("t".to_owned(), 1)], 200);
        assert_eq!((parts[0].changes, parts[1].changes), (3, 2));
        assert_eq!((parts[0].skipped, parts[1].skipped), (2, 0));
        let mut first = parts.into_iter().next().expect("a part");
        let tables = first.take_tables();
        assert_eq!(tables.len(), 2);
        assert_eq!(ids(&tables[0]), ["1", "4"]);
        assert_eq!(ids(&tables[1]), ["3"]);
    }

    #[test]
    fn a_whole_batch_orders_each_table_by_source_position_across_slots() {
        let mut pending = Pending::default();
        let t = table("t");
        take(&mut pending, 0, 1, change(&t, SinkOp::Create, 1, 30));
        take(&mut pending, 1, 1, change(&t, SinkOp::Truncate, 2, 20));
        take(&mut pending, 0, 2, change(&t, SinkOp::Create, 3, 40));
        take(&mut pending, 1, 2, change(&t, SinkOp::Create, 4, 10));
        assert!(pending.truncates);
        let tables = pending.take_tables();
        assert_eq!(tables.len(), 1);
        assert_eq!(ids(&tables[0]), ["4", "2", "1", "3"]);
    }
}
