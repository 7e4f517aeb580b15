//! The sink's progress, kept in the target (`pgcdc.sink_offsets`) and written in the same
//! transaction as the changes it stands for, so a crash can never separate the two. Each row
//! holds a partition's next offset to consume and the source position of the last change
//! applied from it; the latter makes a source replay (same changes at new offsets) harmless.
//! `pgcdc.sink_tables` records which source table each target table comes from, for `verify`.

use std::collections::HashMap;

use tokio_postgres::{Client, GenericClient, Transaction};

use super::change::Position;
use super::SinkError;

/// Creates the bookkeeping tables when missing, and adds `data_collection_order` to a
/// `sink_offsets` made before it existed (checked first: `ALTER TABLE` would wait for the locks
/// other sinks of the group hold on their rows).
const SETUP_SQL: &str = "
    SET client_min_messages = warning;
    CREATE SCHEMA IF NOT EXISTS pgcdc;
    CREATE TABLE IF NOT EXISTS pgcdc.sink_offsets (
        group_id text NOT NULL,
        topic text NOT NULL,
        kafka_partition integer NOT NULL,
        next_offset bigint NOT NULL,
        commit_lsn bigint NOT NULL,
        lsn bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        data_collection_order bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (group_id, topic, kafka_partition));
    DO $$BEGIN
        IF NOT EXISTS (SELECT FROM pg_attribute
                       WHERE attrelid = 'pgcdc.sink_offsets'::regclass
                         AND attname = 'data_collection_order' AND NOT attisdropped) THEN
            ALTER TABLE pgcdc.sink_offsets
                ADD COLUMN data_collection_order bigint NOT NULL DEFAULT 0;
        END IF;
    END$$;
    CREATE TABLE IF NOT EXISTS pgcdc.sink_tables (
        group_id text NOT NULL,
        source_schema text NOT NULL,
        source_table text NOT NULL,
        target_schema text NOT NULL,
        target_table text NOT NULL,
        PRIMARY KEY (group_id, target_schema, target_table));
    RESET client_min_messages;";

/// A topic partition.
pub type Partition = (String, i32);

/// Where a partition stands: the next offset to consume and the last source position applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionProgress {
    /// The offset of the first record not yet applied.
    pub next_offset: i64,
    /// The source position of the last change applied from this partition.
    pub position: Position,
}

/// Creates `pgcdc.sink_offsets` and `pgcdc.sink_tables` if needed.
pub async fn setup(client: &Client) -> Result<(), SinkError> {
    client.batch_execute(SETUP_SQL).await.map_err(|e| {
        SinkError::target(
            "create pgcdc.sink_offsets (the role needs CREATE on the database, or create the pgcdc schema for it)",
            e,
        )
    })
}

/// Every partition's stored progress for `group_id`.
pub async fn load(
    client: &Client,
    group_id: &str,
) -> Result<HashMap<Partition, PartitionProgress>, SinkError> {
    let rows = client
        .query(
            "SELECT topic, kafka_partition, next_offset, commit_lsn, lsn, data_collection_order FROM pgcdc.sink_offsets WHERE group_id = $1",
            &[&group_id],
        )
        .await
        .map_err(|e| SinkError::target("read pgcdc.sink_offsets", e))?;
    Ok(rows.iter().map(progress_row).collect())
}

/// Stores the progress of the partitions a batch touched, inside the batch's transaction.
pub async fn store(
    tx: &Transaction<'_>,
    group_id: &str,
    progress: &HashMap<Partition, PartitionProgress>,
) -> Result<(), SinkError> {
    if progress.is_empty() {
        return Ok(());
    }
    let mut topics = Vec::with_capacity(progress.len());
    let mut partitions = Vec::with_capacity(progress.len());
    let mut offsets = Vec::with_capacity(progress.len());
    let mut commit_lsns = Vec::with_capacity(progress.len());
    let mut lsns = Vec::with_capacity(progress.len());
    let mut orders = Vec::with_capacity(progress.len());
    for ((topic, partition), p) in progress {
        topics.push(topic.as_str());
        partitions.push(*partition);
        offsets.push(p.next_offset);
        // LSNs stay far below 2^63; the cast keeps their order.
        commit_lsns.push(p.position.commit_lsn as i64);
        lsns.push(p.position.lsn as i64);
        orders.push(p.position.order as i64);
    }
    tx.execute(
        "INSERT INTO pgcdc.sink_offsets
             (group_id, topic, kafka_partition, next_offset, commit_lsn, lsn, data_collection_order)
         SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
         ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE SET
             next_offset = EXCLUDED.next_offset, commit_lsn = EXCLUDED.commit_lsn,
             lsn = EXCLUDED.lsn, data_collection_order = EXCLUDED.data_collection_order,
             updated_at = now()",
        &[&group_id, &topics, &partitions, &offsets, &commit_lsns, &lsns, &orders],
    )
    .await
    .map_err(|e| SinkError::target("store the batch's offsets in pgcdc.sink_offsets", e))?;
    Ok(())
}

/// Locks and reads the stored progress of `partitions` for the rest of the transaction, so
/// two sinks of one group cannot both apply the same records.
pub async fn lock<'a>(
    tx: &Transaction<'_>,
    group_id: &str,
    partitions: impl Iterator<Item = &'a Partition>,
) -> Result<HashMap<Partition, PartitionProgress>, SinkError> {
    let (topics, numbers): (Vec<&str>, Vec<i32>) = partitions
        .map(|(topic, partition)| (topic.as_str(), *partition))
        .unzip();
    let rows = tx
        .query(
            "SELECT o.topic, o.kafka_partition, o.next_offset, o.commit_lsn, o.lsn, o.data_collection_order
             FROM pgcdc.sink_offsets o
             JOIN unnest($2::text[], $3::int[]) AS p(topic, kafka_partition)
               ON o.topic = p.topic AND o.kafka_partition = p.kafka_partition
             WHERE o.group_id = $1
             FOR UPDATE OF o",
            &[&group_id, &topics, &numbers],
        )
        .await
        .map_err(|e| SinkError::target("lock the batch's rows in pgcdc.sink_offsets", e))?;
    Ok(rows.iter().map(progress_row).collect())
}

fn progress_row(row: &tokio_postgres::Row) -> (Partition, PartitionProgress) {
    let progress = PartitionProgress {
        next_offset: row.get(2),
        position: Position {
            commit_lsn: row.get::<_, i64>(3) as u64,
            lsn: row.get::<_, i64>(4) as u64,
            order: row.get::<_, i64>(5) as u64,
        },
    };
    ((row.get(0), row.get(1)), progress)
}

/// Records that `target` is written from `source` (for `verify`).
pub async fn record_table(
    tx: &Transaction<'_>,
    group_id: &str,
    source: (&str, &str),
    target: (&str, &str),
) -> Result<(), SinkError> {
    tx.execute(
        "INSERT INTO pgcdc.sink_tables VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (group_id, target_schema, target_table) DO UPDATE
         SET source_schema = EXCLUDED.source_schema, source_table = EXCLUDED.source_table",
        &[&group_id, &source.0, &source.1, &target.0, &target.1],
    )
    .await
    .map_err(|e| SinkError::target("record the table in pgcdc.sink_tables", e))?;
    Ok(())
}

/// The progress stored for each partition of `topics` (by any sink of the group).
pub async fn stored_for(
    client: &impl GenericClient,
    group_id: &str,
    topics: &[String],
) -> Result<HashMap<Partition, PartitionProgress>, SinkError> {
    let rows = client
        .query(
            "SELECT topic, kafka_partition, next_offset, commit_lsn, lsn, data_collection_order FROM pgcdc.sink_offsets
             WHERE group_id = $1 AND topic = ANY ($2)",
            &[&group_id, &topics],
        )
        .await
        .map_err(|e| SinkError::target("read pgcdc.sink_offsets", e))?;
    Ok(rows.iter().map(progress_row).collect())
}

/// Locks and reads the stored progress of every partition of `topic` for the rest of the
/// transaction.
pub async fn lock_topic(
    tx: &Transaction<'_>,
    group_id: &str,
    topic: &str,
) -> Result<Vec<PartitionProgress>, SinkError> {
    let rows = tx
        .query(
            "SELECT topic, kafka_partition, next_offset, commit_lsn, lsn, data_collection_order FROM pgcdc.sink_offsets
             WHERE group_id = $1 AND topic = $2 FOR UPDATE",
            &[&group_id, &topic],
        )
        .await
        .map_err(|e| SinkError::target("lock a topic's rows in pgcdc.sink_offsets", e))?;
    Ok(rows.iter().map(|row| progress_row(row).1).collect())
}

/// Forgets that `target` is written by this group (its source table is gone).
pub async fn forget_table(
    tx: &Transaction<'_>,
    group_id: &str,
    (schema, table): (&str, &str),
) -> Result<(), SinkError> {
    tx.execute(
        "DELETE FROM pgcdc.sink_tables WHERE group_id = $1 AND target_schema = $2 AND target_table = $3",
        &[&group_id, &schema, &table],
    )
    .await
    .map_err(|e| SinkError::target("remove the table from pgcdc.sink_tables", e))?;
    Ok(())
}

/// Whether a change at `position` was already applied from its partition: it lies at or below
/// the last applied position. A position without an order (a snapshot read, or a record
/// without transaction metadata) may be shared by several changes (a snapshot's rows, a
/// multi-row insert's), so only one strictly below is skipped. Changes without a position
/// (zero) are never skipped: nothing orders them.
pub fn already_applied(stored: Option<&PartitionProgress>, position: Position) -> bool {
    let Some(stored) = stored.map(|p| p.position) else {
        return false;
    };
    if position == Position::default() {
        false
    } else if position.is_unique() {
        position <= stored
    } else {
        position < stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(commit_lsn: u64, lsn: u64, order: u64) -> Position {
        Position {
            commit_lsn,
            lsn,
            order,
        }
    }

    fn stored(position: Position) -> PartitionProgress {
        PartitionProgress {
            next_offset: 10,
            position,
        }
    }

    #[test]
    fn replays_at_or_below_the_stored_position_are_skipped() {
        let stored = stored(at(200, 150, 3));
        assert!(already_applied(Some(&stored), at(200, 150, 3)));
        assert!(already_applied(Some(&stored), at(200, 150, 2)));
        assert!(already_applied(Some(&stored), at(200, 120, 9)));
        assert!(already_applied(Some(&stored), at(100, 190, 1)));
        assert!(!already_applied(Some(&stored), at(200, 150, 4)));
        assert!(!already_applied(Some(&stored), at(200, 160, 1)));
        assert!(!already_applied(Some(&stored), at(300, 10, 1)));
        assert!(!already_applied(None, at(1, 1, 1)));
        assert!(!already_applied(Some(&stored), Position::default()));
    }

    #[test]
    fn a_key_change_is_told_apart_by_its_order() {
        // The delete of the old key is its table's 4th change in the transaction, the create
        // of the new key the 5th; both at LSN 150.
        let (delete, create) = (at(200, 150, 4), at(200, 150, 5));
        assert!(!already_applied(Some(&stored(delete)), create));
        assert!(already_applied(Some(&stored(create)), delete));
        assert!(already_applied(Some(&stored(create)), create));
    }

    #[test]
    fn positions_without_an_order_are_skipped_only_strictly_below() {
        // Rows of one snapshot, or of a multi-row insert from a producer without transaction
        // metadata, share their position: the next one must not count as applied.
        let snapshot_row = at(200, 0, 0);
        assert!(!already_applied(Some(&stored(snapshot_row)), snapshot_row));
        assert!(already_applied(Some(&stored(at(200, 1, 1))), snapshot_row));
        let copied_row = at(200, 150, 0);
        assert!(!already_applied(Some(&stored(copied_row)), copied_row));
        assert!(already_applied(Some(&stored(at(200, 160, 0))), copied_row));
        // Stored before the order was (0): a change at its LSN is not skipped.
        assert!(!already_applied(Some(&stored(copied_row)), at(200, 150, 1)));
    }
}
