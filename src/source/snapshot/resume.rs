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

use super::state::{IncrementalRecord, InitialProgressRecord, InitialRecord, Resume};
use crate::lsn::Lsn;

/// What an interrupted initial snapshot becomes when it is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The initial snapshot, recorded as complete: its remaining rows are handed over.
    pub initial: InitialRecord,
    /// One incremental snapshot per table with rows left, from its first unread key.
    pub incremental: Vec<IncrementalRecord>,
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
