//! What pgcdc remembers about snapshots, as JSON records in the compacted topic
//! `__pgcdc-offsets.<topic_prefix>`: whether the initial snapshot of a slot was completed,
//! and how far each incremental snapshot got. A record is only written once everything it
//! vouches for was acknowledged by the broker, so a crash can only make work be done again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::source::catalog::CapturedTable;

/// The offsets topic of a topic prefix.
pub fn offsets_topic(prefix: &str) -> String {
    format!("__pgcdc-offsets.{prefix}")
}

/// The initial snapshot of a slot was completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialRecord {
    /// The slot whose consistent point the snapshot was taken at.
    pub slot: String,
    /// That consistent point.
    pub consistent_point: String,
    /// The tables read, `schema.table`.
    pub tables: Vec<String>,
    /// Rows published.
    pub rows: u64,
}

/// How far an initial snapshot still running got: written while it reads, so that a source
/// stopped in the middle resumes from the chunks the broker acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialProgressRecord {
    /// The slot whose consistent point the snapshot reads at.
    pub slot: String,
    /// That consistent point; the record only applies to a slot still confirmed there.
    pub consistent_point: String,
    /// Every table the snapshot reads, in its plan's order.
    pub tables: Vec<TableProgress>,
}

/// How far the initial snapshot got in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableProgress {
    /// `schema.table`.
    pub table: String,
    /// Rows acknowledged by the broker.
    pub rows: u64,
    /// Where the unread rows start.
    pub resume: Resume,
}

/// Where the rows of a table not yet acknowledged start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// Every row was acknowledged.
    Done,
    /// From this key (text forms, inclusive; `None`: the table's first row) to the end: the
    /// table is read by key, so another reader can take over from there.
    FromKey(Option<Vec<String>>),
    /// The table is read by heap blocks (it has no key), so no other reader can continue its
    /// part: the snapshot must start over.
    StartOver,
}

/// An incremental snapshot of one table: requested, in progress or done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalRecord {
    /// `schema.table`.
    pub table: String,
    /// The signal's `additional-conditions` filter, if any.
    pub filter: Option<String>,
    /// The key (text forms) of the last row of the last chunk whose rows were acknowledged;
    /// `None` before the first chunk.
    pub last_key: Option<Vec<String>>,
    /// Where reading starts before the first chunk: the key (text forms) of the first row to
    /// read, inclusive; `None` reads from the table's start. Set when an interrupted initial
    /// snapshot hands its unread chunks over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_key: Option<Vec<String>>,
    /// Every chunk was read.
    pub done: bool,
    /// Rows published so far.
    pub rows: u64,
}

impl IncrementalRecord {
    /// What tells this snapshot from others: the table, and the filter when there is one (a
    /// table may be read whole and, say, one new partition of it by a filter).
    pub fn id(&self) -> String {
        match &self.filter {
            None => self.table.clone(),
            Some(filter) => format!("{}?{filter}", self.table),
        }
    }
}

/// The snapshot state of one slot, as read back from the offsets topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotState {
    /// The completed initial snapshot, if any.
    pub initial: Option<InitialRecord>,
    /// How far an initial snapshot that did not complete got, if it recorded any progress.
    pub initial_progress: Option<InitialProgressRecord>,
    /// Incremental snapshots by [`IncrementalRecord::id`].
    pub incremental: BTreeMap<String, IncrementalRecord>,
    /// The tables captured as table discovery last recorded them.
    pub tables: Option<Vec<CapturedTable>>,
}

/// The key of a slot's initial-snapshot record.
pub fn initial_key(slot: &str) -> String {
    format!("initial/{slot}")
}

/// The key of a slot's record of an initial snapshot in progress.
pub fn initial_progress_key(slot: &str) -> String {
    format!("initial-progress/{slot}")
}

/// The key of the record of the tables a slot's source captures.
pub fn tables_key(slot: &str) -> String {
    format!("tables/{slot}")
}

/// The key of an incremental snapshot's record; `id` is [`IncrementalRecord::id`].
pub fn incremental_key(slot: &str, id: &str) -> String {
    format!("incremental/{slot}/{id}")
}

impl SnapshotState {
    /// The state of `slot` among the latest records of the topic; records that do not parse
    /// are left out with a warning (nothing is taken as complete that is not proven so).
    pub fn from_records(slot: &str, records: &BTreeMap<Vec<u8>, Vec<u8>>) -> SnapshotState {
        let mut state = SnapshotState::default();
        let initial = initial_key(slot);
        let initial_progress = initial_progress_key(slot);
        let tables = tables_key(slot);
        let incremental = incremental_key(slot, "");
        for (key, value) in records {
            let key = String::from_utf8_lossy(key);
            if *key == initial {
                state.initial = parse(&key, value);
            } else if *key == initial_progress {
                state.initial_progress = parse(&key, value);
            } else if *key == tables {
                state.tables = parse(&key, value);
            } else if key.starts_with(&incremental) {
                if let Some(record) = parse::<IncrementalRecord>(&key, value) {
                    state.incremental.insert(record.id(), record);
                }
            }
        }
        state
    }

    /// Whether `table` was read by the initial snapshot or an incremental snapshot of all its
    /// rows was started.
    pub fn knows(&self, table: &str) -> bool {
        self.initial
            .as_ref()
            .is_some_and(|initial| initial.tables.iter().any(|t| t == table))
            || self.incremental.contains_key(table)
    }
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(key, %error, "ignoring an unreadable snapshot record");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(entries: &[(&str, &str)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn only_the_slots_records_count() {
        let state = SnapshotState::from_records(
            "s1",
            &records(&[
                (
                    "initial/s1",
                    r#"{"slot":"s1","consistent_point":"0/10","tables":["l1.a"],"rows":3}"#,
                ),
                (
                    "initial/s2",
                    r#"{"slot":"s2","consistent_point":"0/20","tables":["l1.b"],"rows":1}"#,
                ),
                (
                    "incremental/s1/l1.b",
                    r#"{"table":"l1.b","filter":null,"last_key":["7"],"done":false,"rows":7}"#,
                ),
                ("incremental/s1/l1.c", "not json"),
                (
                    "tables/s1",
                    r#"[{"schema":"l1","table":"a","oid":7,"partitions":[],"identified":true}]"#,
                ),
                (
                    "incremental/s1/l1.d?tableoid IN (7)",
                    r#"{"table":"l1.d","filter":"tableoid IN (7)","last_key":null,"done":false,"rows":0}"#,
                ),
            ]),
        );
        assert_eq!(state.initial.as_ref().map(|i| i.rows), Some(3));
        assert!(state.knows("l1.a"));
        assert!(state.knows("l1.b"));
        assert!(!state.knows("l1.c"));
        assert!(
            !state.knows("l1.d"),
            "a filtered snapshot does not read the whole table"
        );
        assert!(state.incremental.contains_key("l1.d?tableoid IN (7)"));
        assert_eq!(
            state.tables.as_deref().map(|t| t[0].oid),
            Some(7),
            "the captured tables"
        );
        assert_eq!(
            state.incremental["l1.b"].last_key,
            Some(vec!["7".to_owned()])
        );
    }
}
