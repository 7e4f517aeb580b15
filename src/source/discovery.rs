//! Tables that start to match `capture.tables` while the source runs: created, renamed or
//! moved into a captured schema, or detached from a partitioned table; and partitions that a
//! captured partitioned table gains (created or attached).
//!
//! Every `capture.discovery_interval` the catalog is read and compared with what was captured
//! before. A new table is added to the publication when the publication does not cover it
//! already (one created `FOR TABLES IN SCHEMA` does), and an incremental snapshot of it is
//! requested in the same transaction: the request is a logical message that sits in the WAL
//! right where the table joins the publication, so its rows written before (which were never
//! published) arrive through the snapshot and every later change through the stream. A new
//! partition gets a snapshot of its rows through the root (`tableoid` filter): a table attached
//! with rows brings them without any change being logged. A table that disappears gets a DROP
//! on the schema-change topic, placed after its last change (see [`TABLE_DROPPED_PREFIX`]).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::config::TableFilter;
use crate::pg::{PgConnectOptions, PgError};
use crate::source::catalog::{
    captured_relations, CapturedTable, CatalogError, PUBLISHED_TABLES_SQL,
};
use crate::source::setup::add_table_sql;
use crate::source::snapshot::signal::{
    execute_snapshot_data, filtered_snapshot_data, SNAPSHOT_REQUEST_PREFIX,
};

/// The prefix of the transactional logical message by which discovery says, in its turn in
/// the WAL, that a captured table is gone (dropped, renamed, or moved out of the captured
/// schema); the content is a [`DroppedTable`] in JSON.
pub const TABLE_DROPPED_PREFIX: &str = "pgcdc-dropped";

/// A table that is no longer captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedTable {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub table: String,
}

impl DroppedTable {
    /// Reads a [`TABLE_DROPPED_PREFIX`] message's content.
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

/// Reads the catalog every interval until shutdown. `captured` are the tables the source
/// captured when it started (its publication covers them); anything else found is new.
pub async fn run(
    settings: DiscoverySettings,
    captured: Vec<(String, String)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut discovery = Discovery {
        settings,
        known: None,
        captured,
        unpublishable: HashSet::new(),
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
    /// The tables captured after the last round; `None` before the first.
    known: Option<Vec<CapturedTable>>,
    /// The tables captured at start, until the first round has read their OIDs.
    captured: Vec<(String, String)>,
    /// Tables this role could not add to the publication (already said so; tried again).
    unpublishable: HashSet<String>,
}

impl Discovery {
    async fn discover(&mut self, client: &mut Client) -> Result<(), DiscoveryError> {
        let current = captured_relations(client, &self.settings.filter).await?;
        let Some(known) = &self.known else {
            let started: Vec<CapturedTable> = current
                .iter()
                .filter(|t| self.captured.contains(&(t.schema.clone(), t.table.clone())))
                .cloned()
                .collect();
            let any_new = started.len() < current.len();
            self.known = Some(started);
            return match any_new {
                true => self.apply(client, current).await,
                false => Ok(()),
            };
        };
        if Changes::between(known, &current).is_empty() {
            return Ok(());
        }
        self.apply(client, current).await
    }

    /// Publishes what changed from the known tables to `current`, and remembers `current`
    /// (but for tables that could not be added to the publication, which are tried again).
    async fn apply(
        &mut self,
        client: &mut Client,
        current: Vec<CapturedTable>,
    ) -> Result<(), DiscoveryError> {
        let known = self.known.clone().unwrap_or_default();
        let changes = Changes::between(&known, &current);
        let published = published_tables(client, &self.settings.publication).await?;
        let publication = &self.settings.publication;
        let mut tx = client
            .transaction()
            .await
            .map_err(sql_error("begin adding tables"))?;
        for table in &changes.dropped {
            let dropped = DroppedTable {
                schema: table.schema.clone(),
                table: table.table.clone(),
            };
            tx.execute(
                "SELECT pg_logical_emit_message(true, $1, $2)",
                &[
                    &TABLE_DROPPED_PREFIX,
                    &serde_json::to_string(&dropped).expect("a name serializes"),
                ],
            )
            .await
            .map_err(sql_error("announce a dropped table"))?;
            tracing::info!(table = %table.name(), "a captured table was dropped, renamed or moved: it is no longer captured");
        }
        let mut failed: Vec<String> = Vec::new();
        for table in &changes.created {
            let name = table.name();
            if published.contains(&name) {
                continue;
            }
            let sql = add_table_sql(publication, &[(table.schema.clone(), table.table.clone())]);
            let savepoint = tx
                .savepoint("pgcdc_add_table")
                .await
                .map_err(sql_error("add a table to the publication"))?;
            match savepoint.batch_execute(&sql).await {
                Ok(()) => {
                    savepoint
                        .commit()
                        .await
                        .map_err(sql_error("add a table to the publication"))?;
                    tracing::info!(table = %name, publication, "added a new table to the publication");
                }
                Err(error) => {
                    savepoint
                        .rollback()
                        .await
                        .map_err(sql_error("add a table to the publication"))?;
                    if self.unpublishable.insert(name.clone()) {
                        tracing::error!(table = %name, error = %PgError::from(error), "a new table matches capture.tables but this role cannot add it to the publication, so it is not captured: run as its owner {sql}; (pgcdc then snapshots it)");
                    }
                    failed.push(name);
                }
            }
        }
        for data in changes.snapshot_requests(&failed) {
            tx.execute(
                "SELECT pg_logical_emit_message(true, $1, $2)",
                &[&SNAPSHOT_REQUEST_PREFIX, &data],
            )
            .await
            .map_err(sql_error("request a snapshot of a new table"))?;
        }
        tx.commit()
            .await
            .map_err(sql_error("commit the new tables"))?;
        for table in &changes.created {
            let name = table.name();
            if !failed.contains(&name) {
                self.unpublishable.remove(&name);
                tracing::info!(table = %name, "captured a new table; its existing rows are snapshotted incrementally");
            }
        }
        self.known = Some(
            current
                .into_iter()
                .filter(|table| !failed.contains(&table.name()))
                .collect(),
        );
        Ok(())
    }
}

/// The tables the publication publishes now, `schema.table` (roots for partitioned tables
/// published through their root), whatever the publication's form.
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
