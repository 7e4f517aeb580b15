//! `cdc-sink verify`: every table the sink's group applies (from `pgcdc.sink_tables`) compared
//! with its source, one report per table.

use super::verify::{verify_table, TablePair, TableReport};
use super::SinkError;
use crate::config::{PostgresSection, SinkConfig};
use crate::pg::PgConnectOptions;

/// Compares every table the group applied; the reports are in target-name order.
pub async fn verify_all(config: &SinkConfig) -> Result<Vec<TableReport>, SinkError> {
    let source_section = config.source_postgres.as_ref().ok_or_else(|| {
        SinkError::Config(
            "missing key `source_postgres.url`: verify reads the source database; add [source_postgres] url = \"postgresql://replicator@127.0.0.1:5432/shop\"".into(),
        )
    })?;
    let source = connect(source_section, "source_postgres").await?;
    let target = connect(&config.postgres, "postgres").await?;
    let rows = target
        .query(
            "SELECT source_schema, source_table, target_schema, target_table
             FROM pgcdc.sink_tables WHERE group_id = $1 ORDER BY target_schema, target_table",
            &[&config.apply.group_id],
        )
        .await
        .map_err(|e| {
            SinkError::target(
                "read pgcdc.sink_tables (has cdc-sink run applied anything to this target?)",
                e,
            )
        })?;
    let mut reports = Vec::with_capacity(rows.len());
    for row in rows {
        let pair = TablePair {
            source_schema: row.get(0),
            source_table: row.get(1),
            target_schema: row.get(2),
            target_table: row.get(3),
        };
        let report = verify_table(&source, &target, &pair)
            .await
            .map_err(|e| SinkError::Verify(Box::new(e)))?;
        reports.push(report);
    }
    Ok(reports)
}

async fn connect(
    section: &PostgresSection,
    key: &str,
) -> Result<tokio_postgres::Client, SinkError> {
    let mut options = PgConnectOptions::parse(&section.url)
        .map_err(|e| SinkError::Config(format!("{key}.url: {e}")))?;
    if let Some(password) = section
        .password()
        .map_err(|e| SinkError::Config(e.to_string()))?
    {
        options = options.with_password(password);
    }
    Ok(options.connect_sql().await?)
}
