//! Table locks of the initial snapshot's workers, so that a `TRUNCATE` or a table-rewriting
//! `ALTER TABLE` during the snapshot neither empties a table the snapshot has not read yet nor
//! deadlocks with it.
//!
//! Both take an `ACCESS EXCLUSIVE` lock, and neither is MVCC-safe: once one commits, a
//! transaction on an older snapshot sees the table empty. So the first worker (which also plans
//! the snapshot) takes `ACCESS SHARE` on every table before reading any, as Debezium does, and
//! holds it until the snapshot ends; such statements wait for it. Another worker must not wait
//! for a lock: a waiting `ACCESS EXCLUSIVE` request queues every later `ACCESS SHARE` request
//! behind it, and that worker would wait for the statement, the statement for the first worker,
//! and the first worker (its transaction open until the snapshot ends) for it. So the other
//! workers lock a table with `NOWAIT` before reading it and, when that fails, hand the chunk to
//! the first worker, which already holds the lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::plan::qualified;
use super::SnapshotError;
use crate::event::TableSchema;
use crate::kafka::progress::Ticket;

/// Takes `ACCESS SHARE` on `table` for the rest of the worker's transaction, waiting for it.
pub async fn lock_shared(client: &Client, table: &TableSchema) -> Result<(), SnapshotError> {
    client
        .batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS SHARE MODE",
            qualified(table)
        ))
        .await
        .map_err(|source| SnapshotError::Sql {
            what: format!("lock {} for the snapshot", table.qualified_name()),
            source: source.into(),
        })
}

/// Takes `ACCESS SHARE` on `table` unless that would wait; false when it would. A savepoint
/// keeps the worker's transaction (and its snapshot) alive through the refusal.
async fn try_lock_shared(client: &Client, table: &TableSchema) -> Result<bool, SnapshotError> {
    let sql_error = |source: tokio_postgres::Error| SnapshotError::Sql {
        what: format!("lock {} for the snapshot", table.qualified_name()),
        source: source.into(),
    };
    client
        .batch_execute("SAVEPOINT pgcdc_lock")
        .await
        .map_err(sql_error)?;
    let locked = client
        .batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT",
            qualified(table)
        ))
        .await;
    match locked {
        Ok(()) => {
            client
                .batch_execute("RELEASE SAVEPOINT pgcdc_lock")
                .await
                .map_err(sql_error)?;
            Ok(true)
        }
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT pgcdc_lock")
                .await
                .map_err(sql_error)?;
            Ok(false)
        }
        Err(error) => Err(sql_error(error)),
    }
}

/// Chunks the other workers could not lock, for the first worker, and how many of those
/// workers still run (the first one ends only after them, since they may hand it more).
pub struct Handover {
    chunks: Mutex<Vec<(usize, Ticket)>>,
    helpers_running: AtomicUsize,
}

impl Handover {
    /// A handover between the first worker and `helpers` others.
    pub fn new(helpers: usize) -> Handover {
        Handover {
            chunks: Mutex::new(Vec::new()),
            helpers_running: AtomicUsize::new(helpers),
        }
    }

    /// A chunk handed over, oldest first.
    pub fn take(&self) -> Option<(usize, Ticket)> {
        let mut chunks = self.chunks.lock().expect("handover lock");
        (!chunks.is_empty()).then(|| chunks.remove(0))
    }

    /// Called by a worker other than the first when it ends, whether it failed or not.
    pub fn helper_finished(&self) {
        self.helpers_running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether every other worker ended and nothing is left handed over.
    pub fn settled(&self) -> bool {
        self.helpers_running.load(Ordering::Acquire) == 0
            && self.chunks.lock().expect("handover lock").is_empty()
    }

    /// Whether a worker other than the first may read a chunk of `table` (`index` among the
    /// snapshot's tables): it holds the table's lock, or got it without waiting. Otherwise
    /// the chunk goes to the first worker.
    pub async fn may_read(
        &self,
        client: &Client,
        locked: &mut HashSet<usize>,
        (index, table): (usize, &TableSchema),
        chunk: (usize, Ticket),
    ) -> Result<bool, SnapshotError> {
        if locked.contains(&index) {
            return Ok(true);
        }
        if try_lock_shared(client, table).await? {
            locked.insert(index);
            return Ok(true);
        }
        tracing::info!(table = %table.qualified_name(), "a statement waits for the table's lock (a TRUNCATE or ALTER TABLE during the snapshot): the worker holding it reads this chunk");
        self.chunks.lock().expect("handover lock").push(chunk);
        Ok(false)
    }
}
