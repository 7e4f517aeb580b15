//! Debezium's `source.snapshot` marker for rows read by parallel workers: `first` on the
//! snapshot's first row, `first_in_data_collection` on each other table's first row,
//! `last_in_data_collection` on each table's last row, `last` on the snapshot's last row,
//! `true` on the rest (the last ones win when a row is both).
//!
//! A table's last row is only known once every chunk of it has been read, so each chunk's
//! last row is handed in when the chunk ends and held until the next chunk of the same table
//! ends (it was not the last) or none is left (it was).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::event::SnapshotMarker;

/// Marker state shared by the snapshot workers.
pub struct Markers<T> {
    first_overall: AtomicBool,
    first_in_table: Vec<AtomicBool>,
    remaining: Mutex<Remaining<T>>,
}

struct Remaining<T> {
    chunks: usize,
    per_table: Vec<usize>,
    held: Vec<Option<T>>,
}

impl<T> Markers<T> {
    /// For tables with these chunk counts (indexes are table numbers).
    pub fn new(chunks_per_table: &[usize]) -> Self {
        Markers {
            first_overall: AtomicBool::new(false),
            first_in_table: chunks_per_table
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            remaining: Mutex::new(Remaining {
                chunks: chunks_per_table.iter().sum(),
                per_table: chunks_per_table.to_vec(),
                held: chunks_per_table.iter().map(|_| None).collect(),
            }),
        }
    }

    /// The marker of a row of `table` that is not the last of its chunk.
    pub fn row(&self, table: usize) -> SnapshotMarker {
        let first_in_table = !self.first_in_table[table].load(Ordering::Relaxed)
            && !self.first_in_table[table].swap(true, Ordering::AcqRel);
        if !first_in_table {
            SnapshotMarker::True
        } else if !self.first_overall.swap(true, Ordering::AcqRel) {
            SnapshotMarker::First
        } else {
            SnapshotMarker::FirstInDataCollection
        }
    }

    /// A chunk of `table` ended with `last_row` (none when it was empty): returns the rows
    /// that can now be published, with their markers.
    pub fn chunk_done(&self, table: usize, last_row: Option<T>) -> Vec<(T, SnapshotMarker)> {
        let mut remaining = self.remaining.lock().expect("markers lock");
        remaining.chunks -= 1;
        remaining.per_table[table] -= 1;
        let mut ready = Vec::new();
        if let Some(row) = last_row {
            if let Some(previous) = remaining.held[table].replace(row) {
                ready.push((previous, self.row(table)));
            }
        }
        if remaining.per_table[table] == 0 {
            if let Some(row) = remaining.held[table].take() {
                let marker = match self.row(table) {
                    _ if remaining.chunks == 0 => SnapshotMarker::Last,
                    SnapshotMarker::First => SnapshotMarker::First,
                    _ => SnapshotMarker::LastInDataCollection,
                };
                ready.push((row, marker));
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SnapshotMarker::*;

    #[test]
    fn one_table_in_one_chunk() {
        let markers = Markers::new(&[1]);
        assert_eq!(markers.row(0), First);
        assert_eq!(markers.row(0), True);
        assert_eq!(markers.chunk_done(0, Some("c")), vec![("c", Last)]);
    }

    #[test]
    fn the_last_row_waits_for_the_tables_last_chunk() {
        let markers = Markers::new(&[2, 1]);
        assert_eq!(markers.row(0), First);
        assert_eq!(markers.chunk_done(0, Some("a1")), vec![]);
        assert_eq!(markers.row(1), FirstInDataCollection);
        assert_eq!(markers.row(0), True);
        assert_eq!(
            markers.chunk_done(0, Some("a2")),
            vec![("a1", True), ("a2", LastInDataCollection)]
        );
        assert_eq!(markers.chunk_done(1, Some("b")), vec![("b", Last)]);
    }

    #[test]
    fn empty_chunks_release_the_held_row() {
        let markers = Markers::new(&[2, 1]);
        assert_eq!(markers.chunk_done(1, None), vec![]);
        assert_eq!(markers.chunk_done(0, Some("only")), vec![]);
        assert_eq!(markers.chunk_done(0, None), vec![("only", Last)]);
    }

    #[test]
    fn a_single_row_table_that_is_not_first_or_last() {
        let markers = Markers::new(&[1, 1, 1]);
        assert_eq!(markers.row(0), First);
        assert_eq!(
            markers.chunk_done(1, Some("b")),
            vec![("b", LastInDataCollection)]
        );
        assert_eq!(
            markers.chunk_done(0, Some("a")),
            vec![("a", LastInDataCollection)]
        );
        assert_eq!(markers.chunk_done(2, Some("c")), vec![("c", Last)]);
    }
}
