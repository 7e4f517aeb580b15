//! `cdc-source init` creates what is missing and safe to create; `teardown` drops what pgcdc
//! created (the slot, DDL capture's event triggers, functions and state table, and the
//! publication, signal table and schema it marked) and nothing else.

use tokio_postgres::Client;

use super::check::CREATED_BY;
use super::replication::ReplicationClient;
use super::snapshot::plan::quote_ident;
use super::{ddl, setup, Prepared, SourceError};
use crate::config::SourceConfig;

/// Creates the signal table, the publication and the slot when missing; with
/// `fix_replica_identity`, sets REPLICA IDENTITY FULL on captured tables that need it.
/// Returns one line per thing done or found.
pub async fn init(
    config: &SourceConfig,
    fix_replica_identity: bool,
) -> Result<Vec<String>, SourceError> {
    let prepared = Prepared::from_config(config)?;
    let mut client = prepared.options.connect_sql().await?;
    let mut done = Vec::new();
    if ddl::prepare(&mut client, config.capture.ddl).await? {
        done.push(format!(
            "DDL capture is on: event triggers {} and {} are ready",
            ddl::COMMAND_END_TRIGGER,
            ddl::SQL_DROP_TRIGGER
        ));
    } else {
        done.push("DDL capture is off (`cdc-source check` says why)".to_owned());
    }
    if fix_replica_identity {
        done.extend(set_full_identity(&client, &prepared).await?);
    }
    if let Some(signal) = &prepared.signal_table {
        setup::ensure_signal_table(&client, signal).await?;
        done.push(format!("signal table {}.{} is ready", signal.0, signal.1));
    }
    let publication = &config.capture.publication;
    let tables = setup::ensure_publication(
        &client,
        publication,
        &prepared.filter,
        prepared.signal_table.as_ref(),
    )
    .await?;
    done.push(format!(
        "publication {publication} covers {} captured tables",
        tables.len()
    ));
    let slot = &config.capture.slot;
    let mut replication = ReplicationClient::connect(&prepared.options).await?;
    let state = setup::ensure_slot(&client, &mut replication, slot).await?;
    done.push(format!(
        "replication slot {slot} is ready at {}",
        state.confirmed_flush
    ));
    Ok(done)
}

async fn set_full_identity(
    client: &Client,
    prepared: &Prepared,
) -> Result<Vec<String>, SourceError> {
    let tables = super::catalog::captured_tables(client, &prepared.filter).await?;
    let mut done = Vec::new();
    for (schema, table) in tables {
        // A partitioned table and each of its partitions log their own old rows.
        let rows = client
            .query(
                "WITH RECURSIVE tree(oid) AS ( \
                     SELECT to_regclass(format('%I.%I', $1::text, $2::text))::oid \
                   UNION ALL \
                     SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid) \
                 SELECT format('%I.%I', n.nspname, c.relname) \
                 FROM tree JOIN pg_class c ON c.oid = tree.oid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS \
                   (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))",
                &[&schema, &table],
            )
            .await
            .map_err(SourceError::sql("read a table's replica identity"))?;
        for row in rows {
            let sql = format!(
                "ALTER TABLE {} REPLICA IDENTITY FULL",
                row.get::<_, String>(0)
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(SourceError::sql(&sql))?;
            done.push(format!("ran {sql}"));
        }
    }
    Ok(done)
}

/// Drops the slot, DDL capture's objects, and the publication, signal table and schema if
/// pgcdc created them.
/// Returns one line per object dropped or left.
pub async fn teardown(config: &SourceConfig) -> Result<Vec<String>, SourceError> {
    let prepared = Prepared::from_config(config)?;
    let mut client = prepared.options.connect_sql().await?;
    let mut done = vec![drop_slot(&client, &config.capture.slot).await?];
    done.extend(ddl::teardown(&mut client).await?);
    let publication = &config.capture.publication;
    done.push(
        drop_marked(
            &client,
            &format!("publication {publication}"),
            "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1",
            &[publication],
            &format!("DROP PUBLICATION {}", quote_ident(publication)),
        )
        .await?,
    );
    if let Some((schema, table)) = &prepared.signal_table {
        done.push(
            drop_marked(
                &client,
                &format!("signal table {schema}.{table}"),
                "SELECT obj_description(to_regclass(format('%I.%I', $1::text, $2::text)), 'pg_class') \
                 WHERE to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                &[schema, table],
                &format!("DROP TABLE {}", quote_table(schema, table)),
            )
            .await?,
        );
        done.push(
            drop_marked(
                &client,
                &format!("schema {schema}"),
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace n WHERE nspname = $1 \
                 AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid)",
                &[schema],
                &format!("DROP SCHEMA {}", quote_ident(schema)),
            )
            .await?,
        );
    }
    Ok(done)
}

async fn drop_slot(client: &Client, slot: &str) -> Result<String, SourceError> {
    let Some(row) = setup::slot_row(client, slot).await? else {
        return Ok(format!("no replication slot {slot}"));
    };
    if let Some(setup::SlotHolder { pid, who, .. }) = row.holder {
        return Err(SourceError::Prerequisites(format!(
            "replication slot {slot} is in use by pid {pid} ({who}): stop cdc-source first (or SELECT pg_terminate_backend({pid});)"
        )));
    }
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(SourceError::sql("drop the replication slot"))?;
    Ok(format!("dropped replication slot {slot}"))
}

/// Runs `drop` when `lookup` finds the object with pgcdc's mark.
async fn drop_marked(
    client: &Client,
    what: &str,
    lookup: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    drop: &str,
) -> Result<String, SourceError> {
    let found = client
        .query_opt(lookup, params)
        .await
        .map_err(SourceError::sql(what))?;
    let Some(row) = found else {
        return Ok(format!("no {what} to drop"));
    };
    if row.get::<_, Option<String>>(0).as_deref() != Some(CREATED_BY) {
        return Ok(format!("left {what}: pgcdc did not create it"));
    }
    client
        .batch_execute(drop)
        .await
        .map_err(SourceError::sql(drop))?;
    Ok(format!("dropped {what}"))
}

fn quote_table(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}
