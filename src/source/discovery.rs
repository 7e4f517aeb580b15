//! Tables that start to match `capture.tables` while the source runs: created, renamed or
//! moved into a captured schema, or detached from a partitioned table; and partitions that a
//! captured partitioned table gains (created or attached).
//!
//! Every `capture.discovery_interval` the catalog is read and compared with what was captured
//! before, as recorded in the offsets topic (so changes made while the source was stopped
//! count too). A new table is added to the publication when the publication does not cover it
//! already (a `FOR TABLES IN SCHEMA` one does), and an incremental snapshot of it is requested
//! in the same transaction: the request is a logical message that sits in the WAL right where
//! the table joins the publication, so its rows written before (which were never published)
//! arrive through the snapshot and every later change through the stream. A table without an
//! identifying replica identity is not added (PostgreSQL would refuse its updates and
//! deletes) until it gets one. A new partition gets a snapshot of its rows through the root
//! (`tableoid` filter): a table attached with rows brings them without any change being
//! logged. A table that disappears gets a DROP on the schema-change topic, placed after its
//! last change (see [`messages`]).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::config::TableFilter;
use crate::pg::{PgConnectOptions, PgError};
use crate::source::catalog::{
    captured_relations, CapturedTable, CatalogError, PUBLISHED_TABLES_SQL,
};
use crate::source::messages::{self, CAPTURED_TABLES, SNAPSHOT_REQUEST, TABLE_DROPPED};
use crate::source::setup::add_table_sql;
use crate::source::snapshot::plan::quote_ident;
use crate::source::snapshot::signal::{execute_snapshot_data, filtered_snapshot_data};

/// A table that is no longer captured: the content of a
/// [`TABLE_DROPPED`](messages::TABLE_DROPPED) message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedTable {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub table: String,
}

impl DroppedTable {
    /// Reads a message's content.
    pub fn parse(content: &[u8]) -> Option<DroppedTable> {
        serde_json::from_slice(content).ok()
    }
}

/// What discovery needs from the configuration.
pub struct DiscoverySettings {
    /// The captured database.
    pub options: PgConnectOptions,
    /// Which tables are captured.
    pub filter: TableFilter,
    /// The publication new tables are added to.
    pub publication: String,
    /// The slot, whose own messages discovery writes.
    pub slot: String,
    /// How often the catalog is read.
    pub interval: Duration,
}

/// How the captured tables changed between two readings of the catalog.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Tables not captured before (a name not seen before, or seen with another OID).
    pub created: Vec<CapturedTable>,
    /// Tables captured before that are gone (dropped, renamed, or no longer matched).
    pub dropped: Vec<CapturedTable>,
    /// Captured partitioned tables and the leaf partitions they gained.
    pub new_partitions: Vec<(CapturedTable, Vec<u32>)>,
}

impl Changes {
    /// The difference from `known` to `current`.
    pub fn between(known: &[CapturedTable], current: &[CapturedTable]) -> Changes {
        let same = |a: &CapturedTable, b: &CapturedTable| {
            a.oid == b.oid && a.schema == b.schema && a.table == b.table
        };
        let mut changes = Changes::default();
        for table in current {
            match known.iter().find(|k| same(k, table)) {
                None => changes.created.push(table.clone()),
                Some(before) => {
                    let gained: Vec<u32> = table
                        .partitions
                        .iter()
                        .filter(|oid| !before.partitions.contains(oid))
                        .copied()
                        .collect();
                    if !gained.is_empty() {
                        changes.new_partitions.push((table.clone(), gained));
                    }
                }
            }
        }
        changes.dropped = known
            .iter()
            .filter(|k| !current.iter().any(|table| same(k, table)))
            .cloned()
            .collect();
        changes
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.dropped.is_empty() && self.new_partitions.is_empty()
    }

    /// The `execute-snapshot` data of the snapshots the changes need: each new table whole,
    /// and the rows of each root's new partitions.
    pub fn snapshot_requests(&self, skip: &[String]) -> Vec<String> {
        let mut requests: Vec<String> = self
            .created
            .iter()
            .map(CapturedTable::name)
            .filter(|name| !skip.contains(name))
            .map(|name| execute_snapshot_data(&[name]))
            .collect();
        for (root, partitions) in &self.new_partitions {
            let oids: Vec<String> = partitions.iter().map(u32::to_string).collect();
            let filter = format!("tableoid IN ({})", oids.join(", "));
            requests.push(filtered_snapshot_data(&root.name(), &filter));
        }
        requests
    }
}

/// How long adding a table waits for the writers in its way (see [`Discovery::apply`]).
const LOCK_TIMEOUT: &str = "5s";

/// Reads the catalog every interval until shutdown. `known` are the tables captured when the
/// source last recorded them (in the offsets topic), or, when it never did, those it started
/// with: whatever differs from them is new, gone or gained partitions.
pub async fn run(
    settings: DiscoverySettings,
    known: Vec<CapturedTable>,
    recorded: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut discovery = Discovery {
        settings,
        known,
        recorded,
        warned: HashSet::new(),
    };
    let mut client: Option<Client> = None;
    let mut timer = tokio::time::interval(discovery.settings.interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match discovery.settings.options.connect_sql().await {
                Ok(connected) => Some(connected),
                Err(error) => {
                    if !warned {
                        tracing::warn!(%error, "table discovery cannot connect; retrying every interval");
                        warned = true;
                    }
                    continue;
                }
            };
        }
        let Some(connected) = client.as_mut() else {
            continue;
        };
        match discovery.discover(connected).await {
            Ok(()) => warned = false,
            Err(error) if !warned => {
                tracing::warn!(%error, "table discovery failed; retrying every interval");
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// Why one round of discovery failed (the next round tries again).
#[derive(Debug, thiserror::Error)]
enum DiscoveryError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{what}: {source}")]
    Sql { what: String, source: PgError },
}

fn sql_error(what: &str) -> impl FnOnce(tokio_postgres::Error) -> DiscoveryError + '_ {
    move |source| DiscoveryError::Sql {
        what: what.to_owned(),
        source: source.into(),
    }
}

struct Discovery {
    settings: DiscoverySettings,
    /// The tables captured after the last round.
    known: Vec<CapturedTable>,
    /// Whether `known` is what the offsets topic holds (else the next round records it).
    recorded: bool,
    /// Tables already warned about (not added yet; tried again every round).
    warned: HashSet<String>,
}

impl Discovery {
    async fn discover(&mut self, client: &mut Client) -> Result<(), DiscoveryError> {
        let current = captured_relations(client, &self.settings.filter).await?;
        if Changes::between(&self.known, &current).is_empty() && self.recorded {
            return Ok(());
        }
        self.apply(client, current).await
    }

    /// Publishes what changed from the known tables to `current`, in one transaction: the
    /// DROPs of the tables gone, the new tables added to the publication, the snapshots they
    /// and new partitions need, and the captured tables from then on (recorded in the offsets
    /// topic by the session). A new table that cannot be added yet is left out and tried
    /// again next round.
    ///
    /// Before adding a table, its in-flight writers are waited for (a SHARE lock, with a
    /// timeout): a transaction that began before the table joined the publication and commits
    /// after may not have its changes published by every PostgreSQL minor release, and the
    /// snapshot only sees what committed before it.
    async fn apply(
        &mut self,
        client: &mut Client,
        current: Vec<CapturedTable>,
    ) -> Result<(), DiscoveryError> {
        let changes = Changes::between(&self.known, &current);
        let published = published_tables(client, &self.settings.publication).await?;
        let slot = self.settings.slot.clone();
        let mut tx = client
            .transaction()
            .await
            .map_err(sql_error("begin adding tables"))?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await
            .map_err(sql_error("set lock_timeout"))?;
        let emit = "SELECT pg_logical_emit_message(true, $1, $2)";
        for table in &changes.dropped {
            if still_named(&tx, table).await? {
                tracing::info!(table = %table.name(), "a table no longer matches capture.tables: it is not captured from now on");
                continue;
            }
            let dropped = DroppedTable {
                schema: table.schema.clone(),
                table: table.table.clone(),
            };
            let content = serde_json::to_string(&dropped).expect("a name serializes");
            tx.execute(emit, &[&messages::prefix(TABLE_DROPPED, &slot), &content])
                .await
                .map_err(sql_error("announce a dropped table"))?;
            tracing::info!(table = %table.name(), "a captured table was dropped, renamed or moved: it is no longer captured");
        }
        let mut left_out: Vec<String> = Vec::new();
        for table in &changes.created {
            let name = table.name();
            if !table.identified {
                if self.warned.insert(name.clone()) {
                    tracing::warn!(table = %name, "a new table matches capture.tables but has no primary key and no replica identity, so publishing it would make PostgreSQL refuse its updates and deletes: run ALTER TABLE {} REPLICA IDENTITY FULL; (or add a primary key), and pgcdc captures it", quote_table(table));
                }
                left_out.push(name);
            } else if !published.contains(&name) && !self.add(&mut tx, table).await? {
                left_out.push(name);
            }
        }
        let requests = changes.snapshot_requests(&left_out);
        for data in &requests {
            tx.execute(emit, &[&messages::prefix(SNAPSHOT_REQUEST, &slot), data])
                .await
                .map_err(sql_error("request a snapshot of a new table"))?;
        }
        let captured: Vec<CapturedTable> = current
            .into_iter()
            .filter(|table| !left_out.contains(&table.name()))
            .collect();
        let content = serde_json::to_string(&captured).expect("tables serialize");
        tx.execute(emit, &[&messages::prefix(CAPTURED_TABLES, &slot), &content])
            .await
            .map_err(sql_error("record the captured tables"))?;
        tx.commit()
            .await
            .map_err(sql_error("commit the new tables"))?;
        for table in &changes.created {
            let name = table.name();
            if !left_out.contains(&name) {
                self.warned.remove(&name);
                tracing::info!(table = %name, "captured a new table; its existing rows are snapshotted incrementally");
            }
        }
        self.known = captured;
        self.recorded = true;
        Ok(())
    }

    /// Adds `table` to the publication inside `tx` (in a savepoint); false when it cannot be
    /// added now, which is logged once.
    async fn add(
        &mut self,
        tx: &mut Transaction<'_>,
        table: &CapturedTable,
    ) -> Result<bool, DiscoveryError> {
        let publication = &self.settings.publication;
        let name = table.name();
        let sql = add_table_sql(publication, &[(table.schema.clone(), table.table.clone())]);
        let savepoint = tx
            .savepoint("pgcdc_add_table")
            .await
            .map_err(sql_error("add a table to the publication"))?;
        let added = savepoint
            .batch_execute(&format!(
                "LOCK TABLE {} IN SHARE MODE; {sql}",
                quote_table(table)
            ))
            .await;
        let Err(error) = added else {
            savepoint
                .commit()
                .await
                .map_err(sql_error("add a table to the publication"))?;
            tracing::info!(table = %name, publication, "added a new table to the publication");
            return Ok(true);
        };
        savepoint
            .rollback()
            .await
            .map_err(sql_error("add a table to the publication"))?;
        let error = PgError::from(error);
        if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            tracing::debug!(table = %name, "a new table is busy; adding it next round");
            return Ok(false);
        }
        if !self.warned.insert(name.clone()) {
            return Ok(false);
        }
        if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            tracing::error!(table = %name, %error, "a new table matches capture.tables but this role cannot add it to the publication, so it is not captured: run as its owner {sql}; (pgcdc then snapshots it)");
        } else {
            tracing::error!(table = %name, %error, "a new table matches capture.tables but adding it to the publication failed; trying again every interval");
        }
        Ok(false)
    }
}

/// Whether `table` still exists under its name (the configuration no longer selects it),
/// rather than being dropped, renamed or moved.
async fn still_named(
    client: &impl GenericClient,
    table: &CapturedTable,
) -> Result<bool, DiscoveryError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = $1 AND n.nspname = $2 AND c.relname = $3",
            &[&table.oid, &table.schema, &table.table],
        )
        .await
        .map_err(sql_error("look up a table that is no longer captured"))?;
    Ok(row.is_some())
}

fn quote_table(table: &CapturedTable) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.table)
    )
}

/// The tables the publication publishes now, `schema.table`, whatever its form.
async fn published_tables(
    client: &Client,
    publication: &str,
) -> Result<Vec<String>, DiscoveryError> {
    let rows = client
        .query(PUBLISHED_TABLES_SQL, &[&publication])
        .await
        .map_err(sql_error("read the publication's tables"))?;
    Ok(rows
        .iter()
        .map(|row| format!("{}.{}", row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, oid: u32, partitions: &[u32]) -> CapturedTable {
        let (schema, table) = name.split_once('.').unwrap();
        CapturedTable {
            schema: schema.into(),
            table: table.into(),
            oid,
            partitions: partitions.to_vec(),
            identified: true,
        }
    }

    #[test]
    fn new_gone_and_replaced_tables_and_new_partitions() {
        let known = [
            table("l1.a", 1, &[]),
            table("l1.gone", 2, &[]),
            table("l1.again", 3, &[]),
            table("l1.parts", 4, &[40, 41]),
        ];
        let current = [
            table("l1.a", 1, &[]),
            table("l1.again", 30, &[]),
            table("l1.parts", 4, &[41, 42, 43]),
            table("l1.late", 5, &[]),
        ];
        let changes = Changes::between(&known, &current);
        assert_eq!(
            changes.created,
            [table("l1.again", 30, &[]), table("l1.late", 5, &[])]
        );
        assert_eq!(
            changes.dropped,
            [table("l1.gone", 2, &[]), table("l1.again", 3, &[])]
        );
        assert_eq!(
            changes.new_partitions,
            [(table("l1.parts", 4, &[41, 42, 43]), vec![42, 43])]
        );
        assert_eq!(
            changes.snapshot_requests(&["l1.late".to_owned()]),
            [
                execute_snapshot_data(&["l1.again".to_owned()]),
                filtered_snapshot_data("l1.parts", "tableoid IN (42, 43)"),
            ]
        );
        assert!(Changes::between(&current, &current).is_empty());
    }
}
