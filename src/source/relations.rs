//! The relation cache, and the turn of pgoutput row messages into change events (SPEC §4).
//!
//! pgoutput sends a Relation message before the first change of a table in each session and
//! again after its definition changed; row messages refer to it by OID. Tuples list the
//! published columns in table order; columns excluded by `capture.exclude_columns` are
//! dropped here, so a [`TableSchema`] only holds what is published to Kafka.
//!
//! Images by replica identity, as PostgreSQL logs them:
//! - DEFAULT / USING INDEX: an update carries an old tuple (`K`, key columns only) only when
//!   the key changed; a delete always carries `K`.
//! - FULL: updates and deletes carry the whole old row (`O`), already detoasted.
//! - An unchanged TOASTed column of the new row comes as `u` (not sent): filled from the old
//!   row under FULL, else [`Value::Unavailable`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::types::{parse_text, PgType, TypeError};
use crate::event::{
    ChangeEvent, KeyChange, Op, Row, SourcePosition, TableSchema, TransactionBlock, Value,
};
use crate::lsn::Lsn;
use crate::source::pgoutput::{Delete, Insert, OldTuple, Relation, Truncate, TupleValue, Update};

/// Why a row message could not become change events.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A row message named a relation no Relation message described.
    #[error("pgoutput sent a change for relation {0} before describing it")]
    UnknownRelation(u32),
    /// The tuple has a different number of columns than the Relation message announced.
    #[error("table {table}: the change has {got} columns, the relation has {expected}")]
    ColumnCount {
        table: String,
        got: usize,
        expected: usize,
    },
    /// A column's text form could not be parsed as its type.
    #[error("table {table}, column {column}: {source}")]
    Value {
        table: String,
        column: String,
        source: TypeError,
    },
    /// The server sent a binary tuple value; pgcdc asks for text only.
    #[error("table {table}, column {column}: unexpected binary value (pgcdc requests text)")]
    BinaryValue { table: String, column: String },
}

/// A described relation: its published schema and where each tuple position lands in it.
#[derive(Debug, Clone)]
pub struct RelationEntry {
    /// The schema events of this table carry.
    pub schema: Arc<TableSchema>,
    /// For each tuple position, the column index in `schema`, or None when excluded.
    pub tuple_columns: Vec<Option<usize>>,
    /// Whether `capture.tables` selects the table (a publication may cover more tables).
    pub captured: bool,
    /// The Relation message it was described from.
    pub relation: Relation,
}

impl RelationEntry {
    /// Whether `tuple` holds an enum label the described types lack: the type gained a label
    /// after the table was described, which PostgreSQL announces with no new Relation message.
    pub fn has_unknown_label(&self, tuple: &[TupleValue<'_>]) -> bool {
        tuple
            .iter()
            .zip(&self.tuple_columns)
            .any(|(value, target)| {
                let (Some(index), TupleValue::Text(text)) = (target, value) else {
                    return false;
                };
                let pg_type = &self.schema.columns[*index].pg_type;
                match pg_type {
                    PgType::Enum { labels, .. } => !labels.iter().any(|l| l.as_bytes() == *text),
                    PgType::Array(element) if matches!(**element, PgType::Enum { .. }) => {
                        parse_text(pg_type, text).is_ok_and(|value| unknown_label(&value, element))
                    }
                    _ => false,
                }
            })
    }
}

impl RelationEntry {
    /// Whether `tuple` holds a NULL in a column the description calls `NOT NULL`: the row was
    /// written before a `SET NOT NULL` (the catalog describes the table as it is now, the WAL
    /// as it was).
    pub fn has_null_in_required(&self, tuple: &[TupleValue<'_>]) -> bool {
        tuple
            .iter()
            .zip(&self.tuple_columns)
            .any(|(value, target)| {
                matches!(value, TupleValue::Null)
                    && target.is_some_and(|index| !self.schema.columns[index].optional)
            })
    }

    /// This entry with the columns `tuple` holds a NULL in made optional.
    pub fn with_nulls_allowed(&self, tuple: &[TupleValue<'_>]) -> RelationEntry {
        let mut schema = (*self.schema).clone();
        for (value, target) in tuple.iter().zip(&self.tuple_columns) {
            if let (TupleValue::Null, Some(index)) = (value, target) {
                schema.columns[*index].optional = true;
            }
        }
        RelationEntry {
            schema: Arc::new(schema),
            ..self.clone()
        }
    }
}

/// Whether a parsed enum value (or array of them) holds a label `enum_type` lacks.
fn unknown_label(value: &Value, enum_type: &PgType) -> bool {
    match (value, enum_type) {
        (Value::Array(items), _) => items.iter().any(|item| unknown_label(item, enum_type)),
        (Value::String(label), PgType::Enum { labels, .. }) => !labels.contains(label),
        _ => false,
    }
}

/// Relations described in the current replication session, by OID.
#[derive(Debug, Default)]
pub struct Relations {
    entries: HashMap<u32, Arc<RelationEntry>>,
}

impl Relations {
    /// Stores (or replaces) a relation's description.
    pub fn insert(&mut self, entry: RelationEntry) {
        self.entries
            .insert(entry.schema.relation_id, Arc::new(entry));
    }

    /// The description of a relation.
    pub fn get(&self, relation_id: u32) -> Result<Arc<RelationEntry>, EventError> {
        self.entries
            .get(&relation_id)
            .cloned()
            .ok_or(EventError::UnknownRelation(relation_id))
    }
}

/// The transaction being decoded: its identity and the counters of the `transaction` block.
#[derive(Debug, Clone)]
pub struct OpenTransaction {
    /// The transaction id.
    pub xid: u32,
    /// Its commit LSN, announced by Begin.
    pub commit_lsn: Lsn,
    /// The end LSN of the transaction streamed before it (or where streaming started): the
    /// first element of its events' `source.sequence`, as Debezium's `lastCommitLsn`.
    pub previous_commit: Lsn,
    /// Its commit time, µs since the Unix epoch.
    pub commit_ts_us: i64,
    /// `"<txid>:<commit lsn>"`.
    pub id: String,
    events: i64,
    per_table: Vec<(u32, String, i64)>,
}

impl OpenTransaction {
    /// Starts counting the events of a transaction: `(commit LSN, previous commit's end)`.
    pub fn new(xid: u32, (commit_lsn, previous_commit): (Lsn, Lsn), commit_ts_us: i64) -> Self {
        OpenTransaction {
            xid,
            commit_lsn,
            previous_commit,
            commit_ts_us,
            id: format!("{xid}:{}", commit_lsn.0),
            events: 0,
            per_table: Vec::new(),
        }
    }

    /// Events emitted so far.
    pub fn event_count(&self) -> i64 {
        self.events
    }

    /// `(schema.table, events)` in first-seen order, for the END record.
    pub fn data_collections(&self) -> Vec<(String, i64)> {
        self.per_table
            .iter()
            .map(|(_, name, count)| (name.clone(), *count))
            .collect()
    }

    fn next_block(&mut self, table: &TableSchema) -> TransactionBlock {
        self.events += 1;
        let count = match self
            .per_table
            .iter_mut()
            .find(|(id, _, _)| *id == table.relation_id)
        {
            Some((_, _, count)) => count,
            None => {
                self.per_table
                    .push((table.relation_id, table.qualified_name(), 0));
                &mut self.per_table.last_mut().expect("just pushed").2
            }
        };
        *count += 1;
        TransactionBlock {
            id: self.id.clone(),
            total_order: self.events,
            data_collection_order: *count,
        }
    }

    fn position(&self, lsn: Lsn) -> SourcePosition {
        SourcePosition {
            commit_ts_us: self.commit_ts_us,
            txid: Some(self.xid),
            lsn: Some(lsn),
            previous_commit: Some(self.previous_commit),
            snapshot: Default::default(),
        }
    }

    fn event(
        &mut self,
        table: &Arc<TableSchema>,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        lsn: Lsn,
    ) -> ChangeEvent {
        ChangeEvent {
            table: Arc::clone(table),
            op,
            before,
            after,
            source: self.position(lsn),
            transaction: Some(self.next_block(table)),
            key_change: None,
        }
    }
}

/// Converts one tuple into a row of the entry's schema; unsent columns stay [`Value::Absent`].
fn row_of(entry: &RelationEntry, tuple: &[TupleValue<'_>]) -> Result<Row, EventError> {
    let table = &entry.schema;
    if tuple.len() != entry.tuple_columns.len() {
        return Err(EventError::ColumnCount {
            table: table.qualified_name(),
            got: tuple.len(),
            expected: entry.tuple_columns.len(),
        });
    }
    let mut row = vec![Value::Absent; table.columns.len()];
    for (value, target) in tuple.iter().zip(&entry.tuple_columns) {
        let Some(index) = *target else { continue };
        let column = &table.columns[index];
        row[index] = match value {
            TupleValue::Null => Value::Null,
            TupleValue::UnchangedToast => Value::Unavailable,
            TupleValue::Text(text) => {
                parse_text(&column.pg_type, text).map_err(|source| EventError::Value {
                    table: table.qualified_name(),
                    column: column.name.clone(),
                    source,
                })?
            }
            TupleValue::Binary(_) => {
                return Err(EventError::BinaryValue {
                    table: table.qualified_name(),
                    column: column.name.clone(),
                })
            }
        };
    }
    Ok(row)
}

/// The old image of an update or delete. A key-only tuple (`K`) lists every column but
/// sends the non-identity ones as NULL: they are Absent, not NULL.
fn old_row(entry: &RelationEntry, old: &OldTuple<'_>) -> Result<Row, EventError> {
    match old {
        OldTuple::Full(tuple) => row_of(entry, tuple),
        OldTuple::Key(tuple) => {
            let mut row = row_of(entry, tuple)?;
            for (value, column) in row.iter_mut().zip(&entry.schema.columns) {
                if !column.in_identity {
                    *value = Value::Absent;
                }
            }
            Ok(row)
        }
    }
}

/// Fills unchanged TOASTed columns of the new row from a full old row.
fn fill_unchanged_toast(after: &mut Row, before: &Row) {
    for (new, old) in after.iter_mut().zip(before) {
        if *new == Value::Unavailable && !matches!(old, Value::Unavailable | Value::Absent) {
            *new = old.clone();
        }
    }
}

fn key_values(table: &TableSchema, row: &Row) -> Vec<Value> {
    table.key_of(row).into_iter().cloned().collect()
}

/// An Insert → one `c` event.
pub fn insert_events(
    entry: &RelationEntry,
    insert: &Insert<'_>,
    lsn: Lsn,
    tx: &mut OpenTransaction,
) -> Result<Vec<ChangeEvent>, EventError> {
    let after = row_of(entry, &insert.new)?;
    Ok(vec![tx.event(
        &entry.schema,
        Op::Create,
        None,
        Some(after),
        lsn,
    )])
}

/// An Update → one `u` event, or a `d` for the old key and a `c` for the new one when the
/// key changed (Debezium's key-change pair; the caller adds the tombstone between them).
pub fn update_events(
    entry: &RelationEntry,
    update: &Update<'_>,
    lsn: Lsn,
    tx: &mut OpenTransaction,
) -> Result<Vec<ChangeEvent>, EventError> {
    let table = &entry.schema;
    let before = update
        .old
        .as_ref()
        .map(|old| old_row(entry, old))
        .transpose()?;
    let mut after = row_of(entry, &update.new)?;
    // A TOASTed key column unchanged by the update comes as `u` in the new row but with its
    // value in the old key image: fill it, or the key would look changed.
    if let Some(before) = &before {
        fill_unchanged_toast(&mut after, before);
    }
    let old_key = before
        .as_ref()
        .filter(|_| !table.key.is_empty())
        .map(|before| key_values(table, before));
    let new_key = key_values(table, &after);
    match old_key {
        Some(old_key) if old_key != new_key => {
            let mut delete = tx.event(table, Op::Delete, before, None, lsn);
            delete.key_change = Some(KeyChange::NewKey(new_key));
            let mut create = tx.event(table, Op::Create, None, Some(after), lsn);
            create.key_change = Some(KeyChange::OldKey(old_key));
            Ok(vec![delete, create])
        }
        _ => {
            // Under DEFAULT / USING INDEX the old image only exists when the key changed.
            let before = before.filter(|_| matches!(update.old, Some(OldTuple::Full(_))));
            Ok(vec![tx.event(table, Op::Update, before, Some(after), lsn)])
        }
    }
}

/// A Delete → one `d` event whose `before` is the key or the full old row.
pub fn delete_events(
    entry: &RelationEntry,
    delete: &Delete<'_>,
    lsn: Lsn,
    tx: &mut OpenTransaction,
) -> Result<Vec<ChangeEvent>, EventError> {
    let before = old_row(entry, &delete.old)?;
    Ok(vec![tx.event(
        &entry.schema,
        Op::Delete,
        Some(before),
        None,
        lsn,
    )])
}

/// A Truncate → one `t` event per captured table it names.
pub fn truncate_events(
    relations: &Relations,
    truncate: &Truncate,
    lsn: Lsn,
    tx: &mut OpenTransaction,
) -> Result<Vec<ChangeEvent>, EventError> {
    let mut events = Vec::new();
    for &relation_id in &truncate.relation_ids {
        let entry = relations.get(relation_id)?;
        if entry.captured {
            events.push(tx.event(&entry.schema, Op::Truncate, None, None, lsn));
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Column, PgType, ReplicaIdentity};

    fn column(name: &str, pg_type: PgType, in_identity: bool) -> Column {
        Column {
            name: name.into(),
            type_oid: 0,
            type_modifier: -1,
            pg_type,
            optional: !in_identity,
            in_identity,
            default: None,
        }
    }

    /// `item (id int, body text, secret text)` with `secret` excluded from capture.
    fn entry(identity: ReplicaIdentity) -> RelationEntry {
        RelationEntry {
            schema: Arc::new(TableSchema {
                relation_id: 7,
                schema: "l1".into(),
                table: "item".into(),
                columns: vec![
                    column("id", PgType::Int4, true),
                    column("body", PgType::Text, false),
                ],
                key: vec![0],
                identity,
            }),
            tuple_columns: vec![Some(0), Some(1), None],
            captured: true,
            relation: Relation {
                xid: None,
                relation_id: 7,
                namespace: "l1".into(),
                name: "item".into(),
                replica_identity: b'd',
                columns: Vec::new(),
            },
        }
    }

    #[test]
    fn labels_an_enum_gained_later_are_noticed() {
        let mood = PgType::Enum {
            type_name: "l1.mood".into(),
            labels: vec!["sad".into(), "ok".into()],
        };
        let mut entry = entry(ReplicaIdentity::Default);
        let mut schema = (*entry.schema).clone();
        schema.columns[1] = column("body", mood.clone(), false);
        schema
            .columns
            .push(column("moods", PgType::Array(Box::new(mood)), false));
        entry.schema = Arc::new(schema);
        entry.tuple_columns = vec![Some(0), Some(1), Some(2)];
        let known = tuple(&[Some("1"), Some("ok"), Some("{sad,NULL,ok}")]);
        assert!(!entry.has_unknown_label(&known));
        assert!(entry.has_unknown_label(&tuple(&[Some("1"), Some("elated"), None])));
        assert!(entry.has_unknown_label(&tuple(&[Some("1"), None, Some("{{ok},{elated}}")])));
        assert!(!entry.has_unknown_label(&tuple(&[Some("1"), Some("<unchanged>"), None])));
    }

    #[test]
    fn a_null_from_before_set_not_null_makes_its_column_optional() {
        let mut entry = entry(ReplicaIdentity::Default);
        let mut schema = (*entry.schema).clone();
        schema.columns[1].optional = false;
        entry.schema = Arc::new(schema);
        let row = tuple(&[Some("1"), None, None]);
        assert!(entry.has_null_in_required(&row));
        assert!(!entry.has_null_in_required(&tuple(&[Some("1"), Some("b"), None])));
        let relaxed = entry.with_nulls_allowed(&row);
        assert!(relaxed.schema.columns[1].optional);
        assert!(
            !relaxed.schema.columns[0].optional,
            "untouched columns keep NOT NULL"
        );
        assert!(!relaxed.has_null_in_required(&row));
    }

    fn tuple<'a>(values: &[Option<&'a str>]) -> Vec<TupleValue<'a>> {
        values
            .iter()
            .map(|v| match v {
                Some("<unchanged>") => TupleValue::UnchangedToast,
                Some(text) => TupleValue::Text(text.as_bytes()),
                None => TupleValue::Null,
            })
            .collect()
    }

    fn transaction() -> OpenTransaction {
        OpenTransaction::new(42, (Lsn(0x100), Lsn(0x80)), 1_000)
    }

    #[test]
    fn insert_drops_excluded_columns_and_counts_orders() {
        let mut tx = transaction();
        let insert = Insert {
            xid: None,
            relation_id: 7,
            new: tuple(&[Some("1"), Some("a"), Some("hidden")]),
        };
        let events = insert_events(
            &entry(ReplicaIdentity::Default),
            &insert,
            Lsn(0x90),
            &mut tx,
        )
        .unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.op, Op::Create);
        assert_eq!(
            event.after,
            Some(vec![Value::Int(1), Value::String("a".into())])
        );
        assert_eq!(event.source.sequence(), r#"["128","144"]"#);
        let block = event.transaction.as_ref().unwrap();
        assert_eq!(
            (
                block.id.as_str(),
                block.total_order,
                block.data_collection_order
            ),
            ("42:256", 1, 1)
        );
    }

    #[test]
    fn update_without_old_tuple_has_no_before_and_keeps_the_toast_placeholder() {
        let mut tx = transaction();
        let update = Update {
            xid: None,
            relation_id: 7,
            old: None,
            new: tuple(&[Some("1"), Some("<unchanged>"), None]),
        };
        let events =
            update_events(&entry(ReplicaIdentity::Default), &update, Lsn(1), &mut tx).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].op, Op::Update);
        assert_eq!(events[0].before, None);
        assert_eq!(
            events[0].after,
            Some(vec![Value::Int(1), Value::Unavailable])
        );
    }

    #[test]
    fn full_identity_fills_unchanged_toast_from_the_old_row() {
        let mut tx = transaction();
        let update = Update {
            xid: None,
            relation_id: 7,
            old: Some(OldTuple::Full(tuple(&[Some("1"), Some("long"), None]))),
            new: tuple(&[Some("1"), Some("<unchanged>"), None]),
        };
        let events =
            update_events(&entry(ReplicaIdentity::Full), &update, Lsn(1), &mut tx).unwrap();
        let long = Value::String("long".into());
        assert_eq!(events[0].before, Some(vec![Value::Int(1), long.clone()]));
        assert_eq!(events[0].after, Some(vec![Value::Int(1), long]));
    }

    #[test]
    fn key_change_is_a_delete_then_a_create() {
        let mut tx = transaction();
        let update = Update {
            xid: None,
            relation_id: 7,
            old: Some(OldTuple::Key(tuple(&[Some("1"), None, None]))),
            new: tuple(&[Some("2"), Some("b"), None]),
        };
        let events =
            update_events(&entry(ReplicaIdentity::Default), &update, Lsn(1), &mut tx).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].op, Op::Delete);
        assert_eq!(events[0].before, Some(vec![Value::Int(1), Value::Absent]));
        assert_eq!(
            events[0].key_change,
            Some(KeyChange::NewKey(vec![Value::Int(2)]))
        );
        assert_eq!(events[1].op, Op::Create);
        assert_eq!(
            events[1].key_change,
            Some(KeyChange::OldKey(vec![Value::Int(1)]))
        );
        let orders: Vec<i64> = events
            .iter()
            .map(|e| e.transaction.as_ref().unwrap().total_order)
            .collect();
        assert_eq!(orders, [1, 2]);
    }

    #[test]
    fn key_only_old_tuple_with_the_same_key_is_a_plain_update() {
        let mut tx = transaction();
        let update = Update {
            xid: None,
            relation_id: 7,
            old: Some(OldTuple::Key(tuple(&[Some("1"), None, None]))),
            new: tuple(&[Some("1"), Some("b"), None]),
        };
        let events =
            update_events(&entry(ReplicaIdentity::Default), &update, Lsn(1), &mut tx).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].before, None);
    }

    #[test]
    fn an_unchanged_toasted_key_is_not_a_key_change() {
        let mut tx = transaction();
        let update = Update {
            xid: None,
            relation_id: 7,
            old: Some(OldTuple::Key(tuple(&[Some("1"), None, None]))),
            new: tuple(&[Some("<unchanged>"), Some("b"), None]),
        };
        let events =
            update_events(&entry(ReplicaIdentity::Default), &update, Lsn(1), &mut tx).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].op, Op::Update);
        assert_eq!(
            events[0].after,
            Some(vec![Value::Int(1), Value::String("b".into())])
        );
    }

    #[test]
    fn delete_before_is_the_key_image() {
        let mut tx = transaction();
        let delete = Delete {
            xid: None,
            relation_id: 7,
            old: OldTuple::Key(tuple(&[Some("3"), None, None])),
        };
        let events =
            delete_events(&entry(ReplicaIdentity::Default), &delete, Lsn(1), &mut tx).unwrap();
        assert_eq!(events[0].op, Op::Delete);
        assert_eq!(events[0].before, Some(vec![Value::Int(3), Value::Absent]));
        assert_eq!(events[0].after, None);
    }

    #[test]
    fn wrong_column_count_and_bad_text_are_errors() {
        let mut tx = transaction();
        let short = Insert {
            xid: None,
            relation_id: 7,
            new: tuple(&[Some("1")]),
        };
        assert!(matches!(
            insert_events(&entry(ReplicaIdentity::Default), &short, Lsn(1), &mut tx),
            Err(EventError::ColumnCount {
                got: 1,
                expected: 3,
                ..
            })
        ));
        let bad = Insert {
            xid: None,
            relation_id: 7,
            new: tuple(&[Some("x"), None, None]),
        };
        let error =
            insert_events(&entry(ReplicaIdentity::Default), &bad, Lsn(1), &mut tx).unwrap_err();
        assert!(
            error.to_string().starts_with("table l1.item, column id:"),
            "{error}"
        );
    }

    #[test]
    fn truncate_skips_uncaptured_tables() {
        let mut relations = Relations::default();
        relations.insert(entry(ReplicaIdentity::Default));
        let mut other = entry(ReplicaIdentity::Default);
        other.captured = false;
        other.schema = Arc::new(TableSchema {
            relation_id: 8,
            ..(*other.schema).clone()
        });
        relations.insert(other);
        let truncate = Truncate {
            xid: None,
            options: 0,
            relation_ids: vec![7, 8],
        };
        let events = truncate_events(&relations, &truncate, Lsn(1), &mut transaction()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].op, events[0].table.relation_id),
            (Op::Truncate, 7)
        );
        assert!(matches!(
            relations.get(9),
            Err(EventError::UnknownRelation(9))
        ));
    }
}
