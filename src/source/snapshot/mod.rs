//! Snapshots: the rows that existed before streaming began, as `op = r` events.
//!
//! ```text
//! initial:      CREATE_REPLICATION_SLOT … (SNAPSHOT 'export') ──▶ N workers SET TRANSACTION SNAPSHOT
//!               chunks (key / ctid ranges) ──COPY TO STDOUT──▶ rows ──▶ encode ──▶ producer
//!               all acknowledged ──▶ `initial/<slot>` record ──▶ stream from the consistent point
//! incremental:  signal row ──▶ per chunk: low watermark, SELECT chunk, high watermark, all
//!               through the stream; rows changed inside the window are dropped from the chunk
//! ```
//!
//! The initial snapshot reads the database exactly as it was at the slot's consistent point,
//! so streaming from that point neither loses nor repeats a change. Its completion is recorded
//! in `__pgcdc-offsets.<prefix>` only after the broker acknowledged every row; a run that finds
//! a slot without that record drops the slot and starts over.

pub mod copy_text;
pub mod incremental;
pub mod initial;
mod locks;
pub mod markers;
pub mod plan;
pub mod resume;
pub mod signal;
mod stages;
pub mod state;
pub mod visibility;

use crate::config::SnapshotMode;
use crate::encode::EncodeError;
use crate::kafka::{KafkaError, SendError};
use crate::pg::PgConnectError;
use crate::source::catalog::CatalogError;

/// Why a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A snapshot query failed.
    #[error("snapshot: {what}: {source}")]
    Sql {
        what: String,
        source: crate::pg::PgError,
    },
    /// A snapshot connection could not be opened.
    #[error(transparent)]
    Connect(#[from] PgConnectError),
    /// A table could not be described.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A row could not become an event.
    #[error("snapshot of {table}: {message}")]
    Row { table: String, message: String },
    /// Encoding or schema registration failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The broker refused or could not be reached.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// librdkafka refused a record.
    #[error("could not enqueue a snapshot record: {0}")]
    Produce(SendError),
    /// Shutdown was requested before the snapshot completed; the next run starts it over.
    #[error("shutdown requested during the snapshot")]
    Interrupted,
    /// The incremental snapshot reader ended (its error, if any, came before).
    #[error("the incremental snapshot reader stopped")]
    ReaderStopped,
    /// The server did not export a snapshot with the new slot.
    #[error("CREATE_REPLICATION_SLOT exported no snapshot")]
    NoSnapshotExported,
}

impl From<SendError> for SnapshotError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Undelivered(error) => SnapshotError::Kafka(error),
            SendError::Interrupted => SnapshotError::Interrupted,
            other => SnapshotError::Produce(other),
        }
    }
}

impl SnapshotError {
    /// Whether the server refused to read a table (or a row would not parse), rather than the
    /// connection failing: reading that table again will not help.
    pub fn is_refusal(&self) -> bool {
        match self {
            SnapshotError::Sql { source, .. } => source.code().is_some() && !source.is_closed(),
            SnapshotError::Catalog(CatalogError::Query { source, .. }) => {
                source.code().is_some() && !source.is_closed()
            }
            SnapshotError::Catalog(_) | SnapshotError::Row { .. } => true,
            _ => false,
        }
    }

    /// Whether trying the snapshot again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SnapshotError::Sql { source, .. } => source.is_closed(),
            SnapshotError::Connect(_)
            | SnapshotError::ReaderStopped
            | SnapshotError::Produce(SendError::Kafka(_)) => true,
            SnapshotError::Kafka(error) => matches!(
                error,
                KafkaError::Unreachable { .. }
                    | KafkaError::CreateTopic { .. }
                    | KafkaError::Delivery { .. }
            ),
            _ => false,
        }
    }
}

/// What the slot looks like before the source decides whether to snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotCondition {
    /// No slot of that name.
    Missing,
    /// The slot exists and its WAL is available.
    Usable,
    /// The slot was invalidated (`wal_status = lost`): changes were missed.
    Lost,
}

/// What the source does before streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Stream from the slot (creating it when missing, without a snapshot).
    Stream,
    /// (Re)create the slot with an exported snapshot, read every table, then stream or stop.
    Snapshot {
        /// An existing slot must be dropped first.
        drop_slot: bool,
        /// Stream after the snapshot (every mode but `initial_only`).
        then_stream: bool,
    },
    /// Nothing to do: `initial_only` and the snapshot was completed before.
    Stop,
}

/// Debezium's snapshot modes applied to the slot and the recorded snapshot state.
pub fn start_action(mode: SnapshotMode, slot: SlotCondition, completed: bool) -> StartAction {
    let snapshot = |then_stream| StartAction::Snapshot {
        drop_slot: slot != SlotCondition::Missing,
        then_stream,
    };
    match mode {
        SnapshotMode::NoData => StartAction::Stream,
        SnapshotMode::Always => snapshot(true),
        SnapshotMode::InitialOnly if completed => StartAction::Stop,
        SnapshotMode::InitialOnly => snapshot(false),
        // Initial: a slot lost after the snapshot is an error naming the fix (`ensure_slot`);
        // a slot dropped after it is recreated, as Debezium does, with a warning.
        SnapshotMode::Initial if completed => StartAction::Stream,
        SnapshotMode::Initial if slot == SlotCondition::Lost => StartAction::Stream,
        SnapshotMode::Initial => snapshot(true),
        SnapshotMode::WhenNeeded if completed && slot == SlotCondition::Usable => {
            StartAction::Stream
        }
        SnapshotMode::WhenNeeded => snapshot(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlotCondition::*;
    use StartAction::*;

    fn snap(drop_slot: bool, then_stream: bool) -> StartAction {
        Snapshot {
            drop_slot,
            then_stream,
        }
    }

    #[test]
    fn modes_follow_debezium() {
        let cases = [
            (SnapshotMode::NoData, Missing, false, Stream),
            (SnapshotMode::NoData, Usable, false, Stream),
            (SnapshotMode::Initial, Missing, false, snap(false, true)),
            (SnapshotMode::Initial, Usable, false, snap(true, true)),
            (SnapshotMode::Initial, Usable, true, Stream),
            (SnapshotMode::Initial, Missing, true, Stream),
            (SnapshotMode::Initial, Lost, true, Stream),
            (
                SnapshotMode::InitialOnly,
                Missing,
                false,
                snap(false, false),
            ),
            (SnapshotMode::InitialOnly, Usable, true, Stop),
            (SnapshotMode::WhenNeeded, Usable, true, Stream),
            (SnapshotMode::WhenNeeded, Missing, true, snap(false, true)),
            (SnapshotMode::WhenNeeded, Lost, true, snap(true, true)),
            (SnapshotMode::WhenNeeded, Usable, false, snap(true, true)),
            (SnapshotMode::Always, Usable, true, snap(true, true)),
        ];
        for (mode, slot, completed, expected) in cases {
            assert_eq!(
                start_action(mode, slot, completed),
                expected,
                "{mode:?} {slot:?} completed={completed}"
            );
        }
    }
}
