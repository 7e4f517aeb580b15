//! Per-table batches: the changes of one apply cycle, collapsed to the last change per key.
//!
//! Pure. A table's changes form a sequence of [`Segment`]s: a truncate, or a schema change
//! (new columns), ends the current segment so that what came before it is applied before it.
//! Inside a keyed segment only the last change of each key matters: an insert then an update
//! is one upsert of the updated row, a delete then a re-insert is one upsert, an insert then a
//! delete is one delete (of a row the target may not have, which deletes nothing). Tables
//! without a key cannot be collapsed; their changes stay in order.

use std::collections::HashMap;
use std::sync::Arc;

use super::change::{Cell, SinkChange, SinkOp, SinkTable};

/// What a batch knows of an upserted row's key, from the changes it holds for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// Inserted (`op = c`) and not deleted before in the batch: the key is new to the stream,
    /// so `COPY` may load the row, and `on_conflict` = nothing | error applies if it is not.
    Inserted,
    /// Read by a snapshot (`op = r`): it overwrites a row the target holds, but a snapshot
    /// mostly fills a table without its keys, so `COPY` is tried first.
    Read,
    /// Updated, or inserted again after a delete: the target may hold the key.
    Updated,
}

/// What the target must end up with for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyedAction {
    /// Insert the row, or update it when the key exists; `how` says what the batch knows of
    /// the key.
    Upsert { row: Vec<Cell>, how: Upserted },
    /// Delete the row with this key (key cells in key order).
    Delete { key: Vec<Cell> },
}

/// A run of changes applied as a unit, in order relative to the other segments.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Changes to a table with a key: one action per key, in order of each key's first change.
    Keyed {
        table: Arc<SinkTable>,
        actions: Vec<KeyedAction>,
    },
    /// Changes to a table without a key, in stream order.
    Keyless {
        table: Arc<SinkTable>,
        changes: Vec<SinkChange>,
    },
    /// `TRUNCATE` of the table.
    Truncate { table: Arc<SinkTable> },
}

impl Segment {
    /// The table the segment changes, as the schemas that carried its changes describe it.
    pub fn table(&self) -> &SinkTable {
        match self {
            Segment::Keyed { table, .. }
            | Segment::Keyless { table, .. }
            | Segment::Truncate { table } => table,
        }
    }

    /// The rows it applies by the `applied` metric's `op`: upserts, deletes and truncates.
    pub fn applied_rows(&self) -> [(&'static str, usize); 3] {
        let (upserts, deletes, truncates) = match self {
            Segment::Truncate { .. } => (0, 0, 1),
            Segment::Keyed { actions, .. } => {
                let deletes = actions
                    .iter()
                    .filter(|a| matches!(a, KeyedAction::Delete { .. }))
                    .count();
                (actions.len() - deletes, deletes, 0)
            }
            Segment::Keyless { changes, .. } => {
                let deletes = changes.iter().filter(|c| c.op == SinkOp::Delete).count();
                (changes.len() - deletes, deletes, 0)
            }
        };
        [
            ("upsert", upserts),
            ("delete", deletes),
            ("truncate", truncates),
        ]
    }
}

/// A table's pending changes.
#[derive(Debug, Default)]
pub struct TableBatch {
    segments: Vec<Segment>,
    /// Key cells → index into the current keyed segment's actions.
    positions: HashMap<Vec<Cell>, usize>,
    changes: usize,
}

impl TableBatch {
    /// A batch of `changes`, in their order.
    pub fn of(changes: Vec<SinkChange>) -> TableBatch {
        let mut batch = TableBatch::default();
        for change in changes {
            batch.push(change);
        }
        batch
    }

    /// Adds one change, collapsing it with an earlier change of the same key.
    pub fn push(&mut self, change: SinkChange) {
        self.changes += 1;
        if change.op == SinkOp::Truncate {
            self.positions.clear();
            self.segments.push(Segment::Truncate {
                table: change.table,
            });
            return;
        }
        if change.table.key.is_empty() {
            self.push_keyless(change);
        } else {
            self.push_keyed(change);
        }
    }

    /// How many changes were pushed (before collapsing).
    pub fn len(&self) -> usize {
        self.changes
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// The segments to apply, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn push_keyless(&mut self, change: SinkChange) {
        if let Some(Segment::Keyless { table, changes }) = self.segments.last_mut() {
            if *table == change.table {
                changes.push(change);
                return;
            }
        }
        self.segments.push(Segment::Keyless {
            table: Arc::clone(&change.table),
            changes: vec![change],
        });
    }

    fn push_keyed(&mut self, change: SinkChange) {
        let table = Arc::clone(&change.table);
        let Some(action) = keyed_action(change) else {
            return;
        };
        let same_table = matches!(self.segments.last(), Some(Segment::Keyed { table: current, .. }) if *current == table);
        if !same_table {
            self.positions.clear();
            self.segments.push(Segment::Keyed {
                table: Arc::clone(&table),
                actions: Vec::new(),
            });
        }
        let Some(Segment::Keyed { actions, .. }) = self.segments.last_mut() else {
            return;
        };
        let key = action_key(&table, &action);
        match self.positions.get(&key) {
            Some(&index) => actions[index] = merge(&actions[index], action),
            None => {
                self.positions.insert(key, actions.len());
                actions.push(action);
            }
        }
    }
}

/// The action a change asks for; `None` for a change without the image it needs.
fn keyed_action(change: SinkChange) -> Option<KeyedAction> {
    let table = change.table;
    match change.op {
        SinkOp::Create | SinkOp::Read | SinkOp::Update => {
            change.after.map(|row| KeyedAction::Upsert {
                row,
                how: match change.op {
                    SinkOp::Create => Upserted::Inserted,
                    SinkOp::Read => Upserted::Read,
                    _ => Upserted::Updated,
                },
            })
        }
        SinkOp::Delete => change.before.map(|row| KeyedAction::Delete {
            key: table
                .key
                .iter()
                .map(|&i| row.get(i).cloned().unwrap_or(Cell::Null))
                .collect(),
        }),
        SinkOp::Truncate => None,
    }
}

fn action_key(table: &SinkTable, action: &KeyedAction) -> Vec<Cell> {
    match action {
        KeyedAction::Upsert { row, .. } => table
            .key
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or(Cell::Null))
            .collect(),
        KeyedAction::Delete { key } => key.clone(),
    }
}

/// The later action wins, except that an unavailable (unchanged TOAST) cell keeps the earlier
/// value, an upsert after an upsert keeps what the first said of the key, and an insert after
/// a delete replaces a row the target may still hold.
fn merge(earlier: &KeyedAction, later: KeyedAction) -> KeyedAction {
    match (earlier, later) {
        (KeyedAction::Delete { .. }, KeyedAction::Upsert { row, .. }) => KeyedAction::Upsert {
            row,
            how: Upserted::Updated,
        },
        (KeyedAction::Upsert { row: old, how }, KeyedAction::Upsert { row: mut new, .. }) => {
            for (cell, previous) in new.iter_mut().zip(old) {
                if *cell == Cell::Unavailable {
                    *cell = previous.clone();
                }
            }
            KeyedAction::Upsert {
                row: new,
                how: *how,
            }
        }
        (_, later) => later,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::change::{Position, SinkColumn};

    fn table(key: &[usize]) -> Arc<SinkTable> {
        Arc::new(SinkTable {
            schema: "l1".into(),
            table: "t".into(),
            columns: ["id", "v"]
                .iter()
                .map(|name| SinkColumn {
                    name: (*name).into(),
                    sql_type: "integer".into(),
                    optional: true,
                    enum_type: None,
                })
                .collect(),
            key: key.to_vec(),
        })
    }

    fn text(value: &str) -> Cell {
        Cell::Text(value.into())
    }

    fn row(id: &str, v: &str) -> Vec<Cell> {
        vec![text(id), text(v)]
    }

    fn change(
        table: &Arc<SinkTable>,
        op: SinkOp,
        before: Option<Vec<Cell>>,
        after: Option<Vec<Cell>>,
    ) -> SinkChange {
        SinkChange {
            table: Arc::clone(table),
            op,
            before,
            after,
            position: Position::default(),
        }
    }

    fn actions(batch: TableBatch) -> Vec<KeyedAction> {
        match batch.segments().to_vec().as_slice() {
            [Segment::Keyed { actions, .. }] => actions.clone(),
            other => panic!("expected one keyed segment: {other:?}"),
        }
    }

    #[test]
    fn the_last_change_per_key_wins_in_first_seen_order() {
        let t = table(&[0]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "a"))));
        batch.push(change(&t, SinkOp::Create, None, Some(row("2", "b"))));
        batch.push(change(&t, SinkOp::Update, None, Some(row("1", "c"))));
        assert_eq!(batch.len(), 3);
        assert_eq!(
            actions(batch),
            vec![
                KeyedAction::Upsert {
                    row: row("1", "c"),
                    how: Upserted::Inserted
                },
                KeyedAction::Upsert {
                    row: row("2", "b"),
                    how: Upserted::Inserted
                },
            ]
        );
    }

    #[test]
    fn delete_then_reinsert_ends_with_the_row_present() {
        let t = table(&[0]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Update, None, Some(row("1", "a"))));
        batch.push(change(
            &t,
            SinkOp::Delete,
            Some(vec![text("1"), Cell::Null]),
            None,
        ));
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "b"))));
        assert_eq!(
            actions(batch),
            vec![KeyedAction::Upsert {
                row: row("1", "b"),
                how: Upserted::Updated
            }]
        );
    }

    #[test]
    fn insert_then_delete_is_a_delete() {
        let t = table(&[0]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "a"))));
        batch.push(change(
            &t,
            SinkOp::Delete,
            Some(vec![text("1"), Cell::Null]),
            None,
        ));
        assert_eq!(
            actions(batch),
            vec![KeyedAction::Delete {
                key: vec![text("1")]
            }]
        );
    }

    #[test]
    fn unavailable_cells_keep_the_value_from_earlier_in_the_batch() {
        let t = table(&[0]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "big"))));
        batch.push(change(
            &t,
            SinkOp::Update,
            None,
            Some(vec![text("1"), Cell::Unavailable]),
        ));
        assert_eq!(
            actions(batch),
            vec![KeyedAction::Upsert {
                row: row("1", "big"),
                how: Upserted::Inserted
            }]
        );
    }

    #[test]
    fn updates_and_snapshot_reads_are_told_from_inserts() {
        let t = table(&[0]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Update, None, Some(row("1", "a"))));
        batch.push(change(&t, SinkOp::Read, None, Some(row("2", "a"))));
        batch.push(change(&t, SinkOp::Update, None, Some(row("2", "b"))));
        batch.push(change(&t, SinkOp::Delete, Some(row("3", "a")), None));
        batch.push(change(&t, SinkOp::Read, None, Some(row("3", "b"))));
        assert_eq!(
            actions(batch),
            vec![
                KeyedAction::Upsert {
                    row: row("1", "a"),
                    how: Upserted::Updated
                },
                KeyedAction::Upsert {
                    row: row("2", "b"),
                    how: Upserted::Read
                },
                KeyedAction::Upsert {
                    row: row("3", "b"),
                    how: Upserted::Updated
                },
            ]
        );
    }

    #[test]
    fn a_truncate_splits_the_batch() {
        let t = table(&[0]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "a"))));
        batch.push(change(&t, SinkOp::Truncate, None, None));
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "b"))));
        let segments = batch.segments().to_vec();
        assert_eq!(segments.len(), 3);
        assert!(matches!(&segments[1], Segment::Truncate { .. }));
        let Segment::Keyed { actions, .. } = &segments[2] else {
            panic!("{segments:?}");
        };
        assert_eq!(
            actions,
            &vec![KeyedAction::Upsert {
                row: row("1", "b"),
                how: Upserted::Inserted
            }]
        );
    }

    #[test]
    fn a_new_schema_starts_a_new_segment() {
        let old = table(&[0]);
        let mut wider = (*old).clone();
        wider.columns.push(SinkColumn {
            name: "w".into(),
            sql_type: "text".into(),
            optional: true,
            enum_type: None,
        });
        let wider = Arc::new(wider);
        let mut batch = TableBatch::default();
        batch.push(change(&old, SinkOp::Create, None, Some(row("1", "a"))));
        batch.push(change(
            &wider,
            SinkOp::Update,
            None,
            Some(vec![text("1"), text("b"), text("x")]),
        ));
        assert_eq!(batch.segments().to_vec().len(), 2);
    }

    #[test]
    fn keyless_changes_stay_in_order() {
        let t = table(&[]);
        let mut batch = TableBatch::default();
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "a"))));
        batch.push(change(&t, SinkOp::Create, None, Some(row("1", "a"))));
        batch.push(change(&t, SinkOp::Delete, Some(row("1", "a")), None));
        let segments = batch.segments().to_vec();
        let [Segment::Keyless { changes, .. }] = segments.as_slice() else {
            panic!("{segments:?}");
        };
        let ops: Vec<SinkOp> = changes.iter().map(|c| c.op).collect();
        assert_eq!(ops, [SinkOp::Create, SinkOp::Create, SinkOp::Delete]);
    }
}
