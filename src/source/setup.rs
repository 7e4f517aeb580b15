//! What must exist before streaming: the publication covering the captured tables and the
//! pgoutput slot (created here without a snapshot; the initial snapshot creates its own), and
//! the signal table. Anything present but unusable is an error that names the SQL to fix it.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::TableFilter;
use crate::lsn::Lsn;
use crate::source::catalog::{captured_tables, CatalogError, PUBLISHED_TABLES_SQL};
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
        source: crate::pg::PgError,
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
        let missing: Vec<&(String, String)> = named
            .iter()
            .filter(|table| !tables.contains(table))
            .collect();
        for (schema, table) in &missing {
            if let Some(root) = partition_root(client, schema, table).await? {
                return Err(SetupError::Prerequisite(format!(
                    "capture.tables names {schema}.{table}, a partition of {root}: partitioned tables are captured as their root, so name {root} instead"
                )));
            }
        }
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|(s, t)| format!("{s}.{t}")).collect();
            return Err(SetupError::Prerequisite(format!(
                "capture.tables names {} which does not exist in the source database: create it or remove it from capture.tables",
                names.join(", ")
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
/// exist, or adds the ones it lacks, and makes a publication pgcdc created publish
/// partitioned tables through their root. Returns the captured tables.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    filter: &TableFilter,
    signal_table: Option<&(String, String)>,
) -> Result<Vec<(String, String)>, SetupError> {
    let tables = existing_captured_tables(client, filter).await?;
    let mut published_set = tables.clone();
    published_set.extend(signal_table.cloned());
    let Some(existing) = publication_state(client, publication).await? else {
        create_publication(client, publication, &published_set).await?;
        return Ok(tables);
    };
    let missing: Vec<(String, String)> = published_set
        .into_iter()
        .filter(|table| !existing.tables.contains(table))
        .collect();
    if !missing.is_empty() {
        add_to_publication(client, publication, &missing).await?;
    }
    if !existing.via_root && !partitioned(client, &tables).await?.is_empty() {
        let fix = via_root_sql(publication);
        if !existing.created_by_pgcdc {
            return Err(SetupError::Prerequisite(format!(
                "publication {publication} publishes partitioned tables partition by partition: run {fix};"
            )));
        }
        client
            .batch_execute(&fix)
            .await
            .map_err(|source| SetupError::Sql {
                what: format!(
                    "set publish_via_partition_root on publication {publication} ({fix})"
                ),
                source: source.into(),
            })?;
        tracing::info!(
            publication,
            "the publication now publishes partitioned tables through their root"
        );
    }
    Ok(tables)
}

/// `ALTER PUBLICATION … SET (publish_via_partition_root = true)`.
pub fn via_root_sql(publication: &str) -> String {
    format!(
        "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
        quote_ident(publication)
    )
}

/// Which of `tables` are partitioned tables, as `schema.table`.
pub async fn partitioned(
    client: &Client,
    tables: &[(String, String)],
) -> Result<Vec<String>, SetupError> {
    let (schemas, names): (Vec<&str>, Vec<&str>) =
        tables.iter().map(|(s, t)| (s.as_str(), t.as_str())).unzip();
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)              FROM unnest($1::text[], $2::text[]) AS t(schema_name, table_name)              JOIN pg_namespace n ON n.nspname = t.schema_name              JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name              WHERE c.relkind = 'p' ORDER BY 1",
            &[&schemas, &names],
        )
        .await
        .map_err(|source| SetupError::Sql {
            what: "find the partitioned tables among the captured ones".into(),
            source: source.into(),
        })?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The root partitioned table of a partition, `schema.table`, or `None` when `schema.table`
/// is not a partition (or does not exist).
async fn partition_root(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Option<String>, SetupError> {
    let row = client
        .query_opt(
            "WITH RECURSIVE up(oid) AS (                  SELECT to_regclass(format('%I.%I', $1::text, $2::text))::oid                UNION ALL                  SELECT i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.oid)              SELECT format('%I.%I', n.nspname, c.relname)              FROM up JOIN pg_class c ON c.oid = up.oid JOIN pg_namespace n ON n.oid = c.relnamespace              WHERE c.relkind = 'p' AND NOT c.relispartition",
            &[&schema, &table],
        )
        .await
        .map_err(|source| SetupError::Sql {
            what: format!("look up whether {schema}.{table} is a partition"),
            source: source.into(),
        })?;
    Ok(row.map(|row| row.get(0)))
}

/// Adds tables captured since the publication was made (they are snapshotted incrementally).
async fn add_to_publication(
    client: &Client,
    publication: &str,
    missing: &[(String, String)],
) -> Result<(), SetupError> {
    let sql = add_table_sql(publication, missing);
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
            source: source.into(),
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
            source: source.into(),
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
            "capture.signal_table {schema}.{table} does not exist and this role cannot create it; run: {sql}; (users who send signals need INSERT on it)"
        ))
    })?;
    tracing::info!(table = %quoted, "created the signal table");
    Ok(())
}

/// What an existing publication is.
struct PublicationState {
    /// The tables it publishes (for a partitioned table published through its root, the root).
    tables: Vec<(String, String)>,
    /// `publish_via_partition_root`.
    via_root: bool,
    /// Whether pgcdc created it (its comment says so).
    created_by_pgcdc: bool,
}

async fn publication_state(
    client: &Client,
    publication: &str,
) -> Result<Option<PublicationState>, SetupError> {
    let sql_error = |source: tokio_postgres::Error| SetupError::Sql {
        what: format!("look up publication {publication}"),
        source: source.into(),
    };
    let Some(row) = client
        .query_opt(
            "SELECT pubviaroot, coalesce(obj_description(oid, 'pg_publication') = $2, false)              FROM pg_publication WHERE pubname = $1",
            &[&publication, &CREATED_BY],
        )
        .await
        .map_err(sql_error)?
    else {
        return Ok(None);
    };
    let rows = client
        .query(PUBLISHED_TABLES_SQL, &[&publication])
        .await
        .map_err(sql_error)?;
    Ok(Some(PublicationState {
        tables: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        via_root: row.get(0),
        created_by_pgcdc: row.get(1),
    }))
}

/// `ALTER PUBLICATION "p" ADD TABLE "s"."t", …`.
pub fn add_table_sql(publication: &str, tables: &[(String, String)]) -> String {
    let list: Vec<String> = tables.iter().map(quote_table).collect();
    format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(publication),
        list.join(", ")
    )
}

/// Creates the publication for `tables`, publishing partitioned tables through their root.
/// Not `FOR TABLES IN SCHEMA`, even where it could: that would publish a table created later
/// without a primary key or replica identity at once, and PostgreSQL would then refuse its
/// updates and deletes; table discovery adds new tables only once they have one.
async fn create_publication(
    client: &Client,
    publication: &str,
    tables: &[(String, String)],
) -> Result<(), SetupError> {
    let listed: Vec<String> = tables.iter().map(quote_table).collect();
    let sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
        quote_ident(publication),
        listed.join(", ")
    );
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
            source: source.into(),
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
    /// The walsender streaming from it.
    pub holder: Option<SlotHolder>,
    /// The WAL written since `confirmed_flush`, e.g. `"56 bytes"`; `""` when unknown.
    pub lag: String,
}

/// The walsender that streams from a slot.
pub struct SlotHolder {
    /// The walsender's process id.
    pub pid: i32,
    /// The `application_name` its client connected with (`""` when it set none).
    pub application_name: String,
    /// Who that is, for messages: `"<application_name> from <client address>"`.
    pub who: String,
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
                    a.application_name, \
                    format('%s from %s', coalesce(a.application_name, 'unknown client'), \
                           coalesce(a.client_addr::text, 'a local socket')), \
                    coalesce(pg_size_pretty(pg_wal_lsn_diff( \
                        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                             ELSE pg_current_wal_lsn() END, \
                        s.confirmed_flush_lsn)), '') \
             FROM pg_replication_slots s \
             LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid \
             WHERE s.slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|source| SetupError::Sql {
            what: format!("look up replication slot {slot}"),
            source: source.into(),
        })?;
    Ok(row.map(|row| SlotRow {
        plugin: row.get(0),
        same_database: row.get(1),
        confirmed_flush: row.get(2),
        wal_status: row.get(3),
        holder: row.get::<_, Option<i32>>(4).map(|pid| SlotHolder {
            pid,
            application_name: row.get::<_, Option<String>>(5).unwrap_or_default(),
            who: row.get(6),
        }),
        lag: row.get(7),
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
                    source: source.into(),
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
