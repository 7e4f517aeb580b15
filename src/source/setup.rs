//! What must exist before streaming: the publication covering the captured tables and the
//! pgoutput slot (created here without a snapshot; the initial snapshot creates its own), and
//! the signal table. Anything present but unusable is an error that names the SQL to fix it.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::TableFilter;
use crate::lsn::Lsn;
use crate::source::catalog::{captured_tables, CatalogError};
use crate::source::check::CREATED_BY;
use crate::source::replication::{ReplicationClient, ReplicationError, SnapshotAction};
use crate::source::snapshot::plan::quote_ident;
use crate::source::snapshot::SlotCondition;

/// A prerequisite is missing or wrong, or setting it up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A catalog query failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A statement that creates or inspects a prerequisite failed.
    #[error("{what}: {source}")]
    Sql {
        what: String,
        source: tokio_postgres::Error,
    },
    /// The replication connection refused a command.
    #[error("{what}: {source}")]
    Replication {
        what: String,
        source: ReplicationError,
    },
    /// Something the user must fix; the message says how.
    #[error("{0}")]
    Prerequisite(String),
}

fn quote_table((schema, table): &(String, String)) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// The tables `filter` captures; an error names a literally named table that does not exist,
/// or says that nothing matches.
pub async fn existing_captured_tables(
    client: &Client,
    filter: &TableFilter,
) -> Result<Vec<(String, String)>, SetupError> {
    let tables = captured_tables(client, filter).await?;
    if let Some(named) = filter.exact_tables() {
        let missing: Vec<String> = named
            .iter()
            .filter(|table| !tables.contains(table))
            .map(|(schema, table)| format!("{schema}.{table}"))
            .collect();
        if !missing.is_empty() {
            return Err(SetupError::Prerequisite(format!(
                "capture.tables names {} which does not exist in the source database: create it or remove it from capture.tables",
                missing.join(", ")
            )));
        }
    }
    if tables.is_empty() {
        return Err(SetupError::Prerequisite(
            "capture.tables matches no table in the source database: check the schema and table patterns".into(),
        ));
    }
    Ok(tables)
}

/// Creates the publication for the captured tables (and the signal table) if it does not
/// exist, or adds the ones it lacks. Returns the captured tables.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    filter: &TableFilter,
    signal_table: Option<&(String, String)>,
) -> Result<Vec<(String, String)>, SetupError> {
    let tables = existing_captured_tables(client, filter).await?;
    let mut published_set = tables.clone();
    published_set.extend(signal_table.cloned());
    match published_tables(client, publication).await? {
        None => create_publication(client, publication, &published_set).await?,
        Some(published) => {
            let missing: Vec<(String, String)> = published_set
                .into_iter()
                .filter(|table| !published.contains(table))
                .collect();
            if !missing.is_empty() {
                add_to_publication(client, publication, &missing).await?;
            }
        }
    }
    Ok(tables)
}

/// Adds tables captured since the publication was made (they are snapshotted incrementally).
async fn add_to_publication(
    client: &Client,
    publication: &str,
    missing: &[(String, String)],
) -> Result<(), SetupError> {
    let sql = publication_sql("ALTER", publication, "ADD TABLE", missing);
    client.batch_execute(&sql).await.map_err(|_| {
        SetupError::Prerequisite(format!(
            "publication {publication} does not cover every captured table and this role cannot add them; run as the tables' owner: {sql};"
        ))
    })?;
    tracing::info!(
        publication,
        tables = missing.len(),
        "added tables to the publication"
    );
    Ok(())
}

/// Creates the signal table in Debezium's shape when it does not exist.
pub async fn ensure_signal_table(
    client: &Client,
    (schema, table): &(String, String),
) -> Result<(), SetupError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[schema, table],
        )
        .await
        .map_err(|source| SetupError::Sql {
            what: format!("look up the signal table {schema}.{table}"),
            source,
        })?
        .is_some();
    if exists {
        return Ok(());
    }
    let quoted = quote_table(&(schema.clone(), table.clone()));
    let create = crate::source::snapshot::signal::create_table_sql(&quoted);
    let schema_exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])
        .await
        .map_err(|source| SetupError::Sql {
            what: format!("look up schema {schema}"),
            source,
        })?
        .is_some();
    let create_schema = if schema_exists {
        String::new()
    } else {
        format!(
            "CREATE SCHEMA {0}; COMMENT ON SCHEMA {0} IS '{CREATED_BY}';",
            quote_ident(schema)
        )
    };
    let sql = format!("{create_schema} {create}");
    let marked = format!("{sql}; COMMENT ON TABLE {quoted} IS '{CREATED_BY}'");
    client.batch_execute(&marked).await.map_err(|_| {
        SetupError::Prerequisite(format!(
            "capture.signal_table {schema}.{table} does not exist and this role cannot create it; run: {sql}; and grant this role INSERT, DELETE on it"
        ))
    })?;
    tracing::info!(table = %quoted, "created the signal table");
    Ok(())
}

async fn published_tables(
    client: &Client,
    publication: &str,
) -> Result<Option<Vec<(String, String)>>, SetupError> {
    let sql_error = |source| SetupError::Sql {
        what: format!("look up publication {publication}"),
        source,
    };
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(sql_error)?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(sql_error)?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// `<verb> PUBLICATION "p" <clause> "s"."t", …`.
fn publication_sql(
    verb: &str,
    publication: &str,
    clause: &str,
    tables: &[(String, String)],
) -> String {
    let list: Vec<String> = tables.iter().map(quote_table).collect();
    format!(
        "{verb} PUBLICATION {} {clause} {}",
        quote_ident(publication),
        list.join(", ")
    )
}

async fn create_publication(
    client: &Client,
    publication: &str,
    tables: &[(String, String)],
) -> Result<(), SetupError> {
    let sql = publication_sql("CREATE", publication, "FOR TABLE", tables);
    client
        .batch_execute(&format!(
            "{sql}; COMMENT ON PUBLICATION {} IS '{CREATED_BY}'",
            quote_ident(publication)
        ))
        .await
        .map_err(|source| SetupError::Sql {
            what: format!(
                "create publication {publication} (the role must own the tables; or run as an owner: {sql};)"
            ),
            source,
        })?;
    tracing::info!(publication, tables = tables.len(), "created publication");
    Ok(())
}

/// A replication slot as `pg_replication_slots` shows it.
pub struct SlotRow {
    /// The output plugin; `None` for a physical slot.
    pub plugin: Option<String>,
    /// Whether it decodes this database.
    pub same_database: bool,
    /// `confirmed_flush_lsn` as text.
    pub confirmed_flush: Option<String>,
    /// `wal_status` (`lost` once invalidated), `""` when unknown.
    pub wal_status: String,
    /// The walsender streaming from it, and who that is.
    pub holder: Option<(i32, String)>,
}

impl SlotRow {
    /// Why pgcdc cannot stream from this slot, with the fix; `None` when it can.
    pub fn unusable(&self, slot: &str) -> Option<String> {
        let drop = format!("SELECT pg_drop_replication_slot('{slot}');");
        if self.plugin.as_deref() != Some("pgoutput") || !self.same_database {
            Some(format!(
                "replication slot {slot} exists but is not a pgoutput slot of this database (plugin {}): choose another capture.slot or drop it: {drop}",
                self.plugin.as_deref().unwrap_or("none: a physical slot")
            ))
        } else if self.wal_status == "lost" {
            Some(format!(
                "replication slot {slot} was invalidated (wal_status = lost): its WAL is gone and changes were missed; drop it ({drop}) and start again with a snapshot (capture.snapshot = \"when_needed\" does this by itself)"
            ))
        } else {
            None
        }
    }
}

/// Looks the slot up.
pub async fn slot_row(client: &Client, slot: &str) -> Result<Option<SlotRow>, SetupError> {
    let row = client
        .query_opt(
            "SELECT s.plugin::text, coalesce(s.database::text = current_database(), false), \
                    s.confirmed_flush_lsn::text, coalesce(s.wal_status, ''), s.active_pid, \
                    (SELECT format('%s from %s', a.application_name, coalesce(a.client_addr::text, 'a local socket')) \
                     FROM pg_stat_activity a WHERE a.pid = s.active_pid) \
             FROM pg_replication_slots s WHERE s.slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|source| SetupError::Sql {
            what: format!("look up replication slot {slot}"),
            source,
        })?;
    Ok(row.map(|row| SlotRow {
        plugin: row.get(0),
        same_database: row.get(1),
        confirmed_flush: row.get(2),
        wal_status: row.get(3),
        holder: row.get::<_, Option<i32>>(4).map(|pid| {
            let who: Option<String> = row.get(5);
            (pid, who.unwrap_or_else(|| "unknown client".into()))
        }),
    }))
}

/// Whether the slot exists and whether its WAL is still there.
pub async fn slot_condition(client: &Client, slot: &str) -> Result<SlotCondition, SetupError> {
    Ok(match slot_row(client, slot).await? {
        None => SlotCondition::Missing,
        Some(row) if row.wal_status == "lost" => SlotCondition::Lost,
        Some(_) => SlotCondition::Usable,
    })
}

/// How long a slot still held by a killed predecessor's walsender is waited for.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(60);

/// Drops the slot, waiting while a walsender of a killed predecessor still holds it.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), SetupError> {
    let deadline = Instant::now() + SLOT_RELEASE_WAIT;
    loop {
        let result = client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await;
        match result {
            Ok(_) => {
                tracing::info!(slot, "dropped the replication slot to take a new snapshot");
                return Ok(());
            }
            Err(error)
                if error.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(source) => {
                return Err(SetupError::Sql {
                    what: format!("drop replication slot {slot} to take a new snapshot"),
                    source,
                })
            }
        }
    }
}

/// The slot's state as the server reports it.
#[derive(Debug, Clone, Copy)]
pub struct SlotState {
    /// Where streaming resumes: the slot's confirmed flush LSN.
    pub confirmed_flush: Lsn,
}

/// Looks the slot up and creates it when missing; errors name the fix when it is unusable.
pub async fn ensure_slot(
    client: &Client,
    replication: &mut ReplicationClient,
    slot: &str,
) -> Result<SlotState, SetupError> {
    if let Some(state) = existing_slot(client, slot).await? {
        return Ok(state);
    }
    let created = replication
        .create_logical_slot(slot, false, SnapshotAction::NoExport)
        .await
        .map_err(|source| SetupError::Replication {
            what: format!("create replication slot {slot}"),
            source,
        })?;
    tracing::info!(slot, consistent_point = %created.consistent_point, "created replication slot");
    Ok(SlotState {
        confirmed_flush: created.consistent_point,
    })
}

async fn existing_slot(client: &Client, slot: &str) -> Result<Option<SlotState>, SetupError> {
    let Some(row) = slot_row(client, slot).await? else {
        return Ok(None);
    };
    if let Some(problem) = row.unusable(slot) {
        return Err(SetupError::Prerequisite(problem));
    }
    let confirmed_flush = row
        .confirmed_flush
        .as_deref()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            SetupError::Prerequisite(format!(
                "replication slot {slot} has no usable confirmed_flush_lsn ({:?}); \
             drop it (SELECT pg_drop_replication_slot('{slot}');) and let pgcdc create it again",
                row.confirmed_flush
            ))
        })?;
    Ok(Some(SlotState { confirmed_flush }))
}
