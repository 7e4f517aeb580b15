//! Resuming an initial snapshot that a source stopped in the middle of.
//!
//! The exported snapshot the first run read at does not outlive its connection, so the rows
//! not yet acknowledged cannot be read at the consistent point any more. The slot still can:
//! it stays at the consistent point until streaming confirms past it. So a restarted source
//! keeps what the broker acknowledged (as its `initial-progress` record says), streams from
//! the consistent point, and reads each unfinished table from its first unacknowledged chunk
//! on with incremental snapshots (DBLog watermarks).
//!
//! The guarantee is Debezium's for incremental snapshots: every row arrives, either as an
//! `r` event or as the change events that wrote it, and no `r` event overtakes a change of
//! its row. Rows of chunks acknowledged after the last progress record was written arrive
//! twice as `r` events; nothing is read again from before it.

use super::state::{
    incremental_key, initial_key, initial_progress_key, IncrementalRecord, InitialProgressRecord,
    InitialRecord, Resume, SnapshotState,
};
use crate::lsn::Lsn;

/// What an interrupted initial snapshot becomes when it is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The initial snapshot, recorded as complete: its remaining rows are handed over.
    pub initial: InitialRecord,
    /// One incremental snapshot per table with rows left, from its first unread key.
    pub incremental: Vec<IncrementalRecord>,
}

impl Handover {
    /// The snapshot state once the handover is recorded.
    pub fn state(&self) -> SnapshotState {
        SnapshotState {
            initial: Some(self.initial.clone()),
            incremental: self
                .incremental
                .iter()
                .map(|record| (record.id(), record.clone()))
                .collect(),
            ..SnapshotState::default()
        }
    }

    /// The records of `topic` (the offsets topic) that record the handover for `slot`, whose
    /// state was `previous`, as `(topic, key, value)` with `None` for a tombstone. In this
    /// order, so that a run stopped while writing them finds either the progress record still
    /// there (and hands over again) or every incremental snapshot recorded: the previous
    /// slot's incremental snapshots are forgotten, the unfinished tables' are written, then
    /// the initial snapshot's completion, and last the progress record is deleted.
    pub fn records(
        &self,
        topic: &str,
        slot: &str,
        previous: &SnapshotState,
    ) -> Vec<(String, String, Option<Vec<u8>>)> {
        let continued = self.state().incremental;
        let mut records: Vec<_> = previous
            .incremental
            .keys()
            .filter(|id| !continued.contains_key(*id))
            .map(|id| (topic.to_owned(), incremental_key(slot, id), None))
            .collect();
        for record in &self.incremental {
            records.push((
                topic.to_owned(),
                incremental_key(slot, &record.id()),
                json(record),
            ));
        }
        records.push((topic.to_owned(), initial_key(slot), json(&self.initial)));
        records.push((topic.to_owned(), initial_progress_key(slot), None));
        records
    }
}

/// A record's value in the offsets topic.
fn json<T: serde::Serialize>(value: &T) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(value).expect("a record serializes"))
}

/// The handover of the interrupted snapshot `progress` to incremental snapshots, or why it
/// must start over; `slot_confirmed` is the slot's `confirmed_flush_lsn`, `captured` the
/// tables (`schema.table`) captured now: a table no longer among them is not read on.
pub fn hand_over(
    progress: &InitialProgressRecord,
    slot_confirmed: Option<&str>,
    captured: &[String],
) -> Result<Handover, String> {
    let recorded: Lsn = progress
        .consistent_point
        .parse()
        .map_err(|_| format!("its record names no LSN ({})", progress.consistent_point))?;
    let confirmed: Option<Lsn> = slot_confirmed.and_then(|lsn| lsn.parse().ok());
    if confirmed != Some(recorded) {
        return Err(format!(
            "the slot is at {}, not at the snapshot's consistent point {recorded}",
            slot_confirmed.unwrap_or("no confirmed position")
        ));
    }
    let mut incremental = Vec::new();
    let tables: Vec<_> = progress
        .tables
        .iter()
        .filter(|table| captured.contains(&table.table))
        .collect();
    for table in &tables {
        match &table.resume {
            Resume::Done => {}
            Resume::FromKey(from_key) => incremental.push(IncrementalRecord {
                table: table.table.clone(),
                filter: None,
                last_key: None,
                from_key: from_key.clone(),
                done: false,
                rows: table.rows,
            }),
            Resume::StartOver => {
                return Err(format!(
                    "{} has no key to continue reading it by",
                    table.table
                ))
            }
        }
    }
    Ok(Handover {
        initial: InitialRecord {
            slot: progress.slot.clone(),
            consistent_point: progress.consistent_point.clone(),
            tables: tables.iter().map(|t| t.table.clone()).collect(),
            rows: tables.iter().map(|t| t.rows).sum(),
        },
        incremental,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::snapshot::state::TableProgress;

    fn progress(tables: Vec<(&str, u64, Resume)>) -> InitialProgressRecord {
        InitialProgressRecord {
            slot: "s".into(),
            consistent_point: "0/16B3748".into(),
            tables: tables
                .into_iter()
                .map(|(table, rows, resume)| TableProgress {
                    table: table.into(),
                    rows,
                    resume,
                })
                .collect(),
        }
    }

    #[test]
    fn unfinished_tables_continue_from_their_first_unread_key() {
        let record = progress(vec![
            ("l1.a", 30, Resume::Done),
            ("l1.b", 10, Resume::FromKey(Some(vec!["11".into()]))),
            ("l1.c", 0, Resume::FromKey(None)),
        ]);
        let captured = ["l1.a", "l1.b", "l1.c"].map(String::from);
        let handover = hand_over(&record, Some("0/16B3748"), &captured).expect("resumable");
        assert_eq!(handover.initial.tables, ["l1.a", "l1.b", "l1.c"]);
        assert_eq!(handover.initial.rows, 40);
        assert_eq!(handover.initial.consistent_point, "0/16B3748");
        let continued: Vec<_> = handover
            .incremental
            .iter()
            .map(|r| {
                (
                    r.table.as_str(),
                    r.from_key.clone(),
                    r.last_key.is_none(),
                    r.done,
                )
            })
            .collect();
        assert_eq!(
            continued,
            [
                ("l1.b", Some(vec!["11".to_owned()]), true, false),
                ("l1.c", None, true, false)
            ]
        );
    }

    #[test]
    fn a_moved_or_missing_slot_or_a_keyless_table_starts_over() {
        let record = progress(vec![("l1.a", 3, Resume::FromKey(None))]);
        let captured = ["l1.a", "l1.k"].map(String::from);
        let moved = hand_over(&record, Some("0/16B3750"), &captured).expect_err("moved");
        assert!(
            moved.contains("not at the snapshot's consistent point 0/16B3748"),
            "{moved}"
        );
        assert!(hand_over(&record, None, &captured).is_err());
        let keyless = progress(vec![("l1.k", 3, Resume::StartOver)]);
        let error = hand_over(&keyless, Some("0/16B3748"), &captured).expect_err("keyless");
        assert_eq!(error, "l1.k has no key to continue reading it by");
    }

    #[test]
    fn the_handover_is_written_so_that_a_stop_midway_hands_over_again() {
        let record = progress(vec![
            ("l1.a", 30, Resume::Done),
            ("l1.b", 10, Resume::FromKey(Some(vec!["11".into()]))),
        ]);
        let captured = ["l1.a", "l1.b"].map(String::from);
        let handover = hand_over(&record, Some("0/16B3748"), &captured).expect("resumable");
        let mut previous = SnapshotState::default();
        for table in ["l1.b", "l1.old"] {
            let mut old = handover.incremental[0].clone();
            old.table = table.into();
            previous.incremental.insert(table.into(), old);
        }
        let records = handover.records("offsets", "s", &previous);
        let written: Vec<(&str, bool)> = records
            .iter()
            .map(|(topic, key, value)| {
                assert_eq!(topic, "offsets");
                (key.as_str(), value.is_some())
            })
            .collect();
        assert_eq!(
            written,
            [
                ("incremental/s/l1.old", false),
                ("incremental/s/l1.b", true),
                ("initial/s", true),
                ("initial-progress/s", false),
            ]
        );
        let continued: IncrementalRecord =
            serde_json::from_slice(records[1].2.as_deref().expect("a value")).expect("json");
        assert_eq!(continued.from_key, Some(vec!["11".to_owned()]));
        let state = handover.state();
        assert!(state.knows("l1.a") && state.knows("l1.b"));
    }

    #[test]
    fn tables_no_longer_captured_are_not_read_on() {
        let record = progress(vec![
            ("l1.a", 3, Resume::FromKey(None)),
            ("l1.gone", 5, Resume::StartOver),
        ]);
        let captured = ["l1.a".to_owned()];
        let handover = hand_over(&record, Some("0/16B3748"), &captured).expect("resumable");
        assert_eq!(handover.initial.tables, ["l1.a"]);
        assert_eq!(handover.initial.rows, 3);
        assert_eq!(handover.incremental.len(), 1);
    }
}
