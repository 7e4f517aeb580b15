//! Catalog lookups over an ordinary SQL connection: what a Relation message does not say
//! (nullability, primary key, type families) and which tables `capture.tables` selects.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::config::TableFilter;
use crate::event::types::{
    catalog_types_from_rows, column_default, CatalogTypeRow, PgType, CATALOG_TYPES_SQL,
};
use crate::event::{Column, ReplicaIdentity, TableSchema};
use crate::source::pgoutput::{Relation, RelationColumn};
use crate::source::relations::RelationEntry;

/// A catalog query failed, or the catalog contradicts the replication stream.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The SQL query itself failed.
    #[error("catalog query ({what}) failed: {source}")]
    Query {
        what: &'static str,
        source: crate::pg::PgError,
    },
    /// A table to snapshot does not exist (any more).
    #[error("table {table} does not exist")]
    Missing { table: String },
    /// A Relation message used a replica identity code PostgreSQL does not define.
    #[error("table {table}: unknown replica identity code {code:?}")]
    ReplicaIdentity { table: String, code: char },
    /// A column's type OID was not found in pg_type.
    #[error("table {table}, column {column}: type OID {oid} not found in pg_type")]
    UnknownType {
        table: String,
        column: String,
        oid: u32,
    },
}

/// Facts about one column that the Relation message lacks.
struct AttributeFacts {
    not_null: bool,
    /// 1-based position in the primary key, if part of it.
    primary_key_position: Option<i32>,
    /// The column default's expression (`pg_get_expr`), if it has one.
    default_expression: Option<String>,
}

const ATTRIBUTES_SQL: &str = "
    SELECT a.attname::text, a.attnotnull, array_position(pk.conkey, a.attnum),
           pg_get_expr(d.adbin, d.adrelid)
    FROM pg_attribute a
    LEFT JOIN pg_constraint pk ON pk.conrelid = a.attrelid AND pk.contype = 'p'
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.attgenerated = ''
    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped";

async fn attribute_facts(
    client: &Client,
    relation_id: u32,
) -> Result<HashMap<String, AttributeFacts>, CatalogError> {
    let rows = client
        .query(ATTRIBUTES_SQL, &[&relation_id])
        .await
        .map_err(|source| CatalogError::Query {
            what: "columns",
            source: source.into(),
        })?;
    Ok(rows
        .iter()
        .map(|row| {
            let facts = AttributeFacts {
                not_null: row.get(1),
                primary_key_position: row.get(2),
                default_expression: row.get(3),
            };
            (row.get::<_, String>(0), facts)
        })
        .collect())
}

async fn type_families(
    client: &Client,
    oids: Vec<u32>,
) -> Result<HashMap<u32, crate::event::types::CatalogType>, CatalogError> {
    let rows = client
        .query(CATALOG_TYPES_SQL, &[&oids])
        .await
        .map_err(|source| CatalogError::Query {
            what: "types",
            source: source.into(),
        })?;
    let rows = rows.iter().map(|row| CatalogTypeRow {
        oid: row.get(0),
        name: row.get(1),
        kind: row.get::<_, i8>(2) as u8,
        category: row.get::<_, i8>(3) as u8,
        element_oid: row.get(4),
        base_oid: row.get(5),
        base_type_modifier: row.get(6),
        enum_labels: row.get(7),
        qualified_name: row.get(8),
    });
    Ok(catalog_types_from_rows(rows))
}

/// Builds the published schema of a relation from its Relation message and the catalog.
///
/// The key is the replica identity (primary key under DEFAULT, index columns under USING
/// INDEX), and the primary key in constraint order under FULL; else none (null keys).
pub async fn describe_relation(
    client: &Client,
    relation: &Relation,
    filter: &TableFilter,
) -> Result<RelationEntry, CatalogError> {
    let captured = filter.matches(&relation.namespace, &relation.name);
    if !captured {
        return Ok(uncaptured(relation));
    }
    let qualified = format!("{}.{}", relation.namespace, relation.name);
    let identity = ReplicaIdentity::from_code(relation.replica_identity).ok_or(
        CatalogError::ReplicaIdentity {
            table: qualified.clone(),
            code: char::from(relation.replica_identity),
        },
    )?;
    let facts = attribute_facts(client, relation.relation_id).await?;
    let oids = relation.columns.iter().map(|c| c.type_oid).collect();
    let types = type_families(client, oids).await?;

    let mut columns = Vec::new();
    let mut tuple_columns = Vec::new();
    let mut primary_key = Vec::new();
    let mut identity_key = Vec::new();
    for message_column in &relation.columns {
        let fact = facts.get(&message_column.name);
        let in_primary_key = fact.and_then(|f| f.primary_key_position);
        // Under FULL every column is flagged as identity; only the primary key is the key.
        let identity_column = message_column.is_key() && identity != ReplicaIdentity::Full;
        let key_column = in_primary_key.is_some() || identity_column;
        if !key_column
            && filter.excluded_column(&relation.namespace, &relation.name, &message_column.name)
        {
            tuple_columns.push(None);
            continue;
        }
        let catalog_type =
            types
                .get(&message_column.type_oid)
                .ok_or_else(|| CatalogError::UnknownType {
                    table: qualified.clone(),
                    column: message_column.name.clone(),
                    oid: message_column.type_oid,
                })?;
        let index = columns.len();
        if let Some(position) = in_primary_key {
            primary_key.push((position, index));
        }
        if identity_column {
            identity_key.push(index);
        }
        let pg_type = PgType::from_catalog(catalog_type, message_column.type_modifier)
            .with_modes(filter.type_modes(), message_column.type_modifier);
        let default = fact
            .and_then(|f| f.default_expression.as_deref())
            .and_then(|expression| column_default(&pg_type, &catalog_type.name, expression));
        columns.push(Column {
            name: message_column.name.clone(),
            type_oid: message_column.type_oid,
            type_modifier: message_column.type_modifier,
            pg_type,
            optional: !fact.is_some_and(|f| f.not_null),
            in_identity: message_column.is_key(),
            default,
        });
        tuple_columns.push(Some(index));
    }
    primary_key.sort_unstable();
    // The flags describe the table as the stream saw it (the catalog may have moved on): under
    // DEFAULT they are the primary key, under USING INDEX the index columns, which are also
    // all an old image carries. Only FULL needs the catalog's primary key.
    let key = if identity == ReplicaIdentity::Full {
        primary_key.into_iter().map(|(_, index)| index).collect()
    } else {
        identity_key
    };
    Ok(RelationEntry {
        schema: Arc::new(TableSchema {
            relation_id: relation.relation_id,
            schema: relation.namespace.clone(),
            table: relation.name.clone(),
            columns,
            key,
            identity,
        }),
        tuple_columns,
        captured,
        relation: relation.clone(),
    })
}

/// A table the publication covers but `capture.tables` does not select: its changes are
/// skipped, so it needs no catalog lookups (its types may not even exist any more).
fn uncaptured(relation: &Relation) -> RelationEntry {
    RelationEntry {
        schema: Arc::new(TableSchema {
            relation_id: relation.relation_id,
            schema: relation.namespace.clone(),
            table: relation.name.clone(),
            columns: Vec::new(),
            key: Vec::new(),
            identity: ReplicaIdentity::from_code(relation.replica_identity)
                .unwrap_or(ReplicaIdentity::Default),
        }),
        tuple_columns: vec![None; relation.columns.len()],
        captured: false,
        relation: relation.clone(),
    }
}

const RELATION_SQL: &str = "
    SELECT c.oid, c.relreplident
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname = $2";

/// The columns pgoutput publishes (not dropped, not generated), flagged as pgoutput flags
/// them: every column under FULL, else those of the replica identity index.
const RELATION_COLUMNS_SQL: &str = "
    SELECT a.attname::text, a.atttypid, a.atttypmod,
           c.relreplident = 'f' OR a.attnum = ANY (coalesce(i.indkey::int2[], '{}'))
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid
    LEFT JOIN pg_index i ON i.indexrelid = pg_get_replica_identity_index(c.oid)
    WHERE c.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY a.attnum";

/// The Relation message pgoutput would send for `schema.table` now, built from the catalog,
/// so that snapshot rows carry the same schema as the changes streamed after them.
pub async fn relation_from_catalog(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Relation, CatalogError> {
    let query_error = |what| {
        move |source: tokio_postgres::Error| CatalogError::Query {
            what,
            source: source.into(),
        }
    };
    let row = client
        .query_opt(RELATION_SQL, &[&schema, &table])
        .await
        .map_err(query_error("table"))?
        .ok_or_else(|| CatalogError::Missing {
            table: format!("{schema}.{table}"),
        })?;
    let relation_id: u32 = row.get(0);
    let replica_identity = row.get::<_, i8>(1) as u8;
    let columns = client
        .query(RELATION_COLUMNS_SQL, &[&relation_id])
        .await
        .map_err(query_error("columns"))?
        .iter()
        .map(|row| RelationColumn {
            flags: u8::from(row.get::<_, bool>(3)),
            name: row.get(0),
            type_oid: row.get(1),
            type_modifier: row.get(2),
        })
        .collect();
    Ok(Relation {
        xid: None,
        relation_id,
        namespace: schema.to_owned(),
        name: table.to_owned(),
        replica_identity,
        columns,
    })
}

/// The tables publication `$1` publishes, as `(schema, table)`, partitions left out: a table
/// listed itself, or a partitioned table all of whose leaf partitions are listed (a
/// publication without `publish_via_partition_root` lists those).
pub const PUBLISHED_TABLES_SQL: &str = "
    WITH RECURSIVE listed AS (
        SELECT c.oid FROM pg_publication_tables t
        JOIN pg_namespace n ON n.nspname = t.schemaname
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
        WHERE t.pubname = $1
    ), tree(root, oid) AS (
        SELECT c.oid, c.oid FROM pg_class c WHERE c.relkind = 'p' AND NOT c.relispartition
      UNION ALL
        SELECT tree.root, i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid
    )
    SELECT n.nspname::text, c.relname::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT c.relispartition AND (
        c.oid IN (SELECT oid FROM listed)
        OR (c.relkind = 'p'
            AND EXISTS (SELECT 1 FROM tree t WHERE t.root = c.oid AND t.oid IN (SELECT oid FROM listed))
            AND NOT EXISTS (SELECT 1 FROM tree t JOIN pg_class leaf ON leaf.oid = t.oid
                            WHERE t.root = c.oid AND leaf.relkind <> 'p'
                              AND t.oid NOT IN (SELECT oid FROM listed))))
    ORDER BY 1, 2";

/// Every permanent user table that is not a partition (temporary and unlogged tables cannot
/// be published): its schema, name and OID, for a partitioned table the OIDs of its leaf
/// partitions (at any depth), which hold its rows, and whether its updates and deletes log an
/// old row that identifies it (a primary key, or a replica identity index or FULL).
const USER_TABLES_SQL: &str = "
    SELECT n.nspname::text, c.relname::text, c.oid,
           CASE WHEN c.relkind = 'p' THEN ARRAY(
               WITH RECURSIVE tree(oid) AS (
                   SELECT c.oid
                 UNION ALL
                   SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid)
               SELECT tree.oid FROM tree JOIN pg_class part ON part.oid = tree.oid
               WHERE part.relkind <> 'p' ORDER BY 1)
           ELSE '{}'::oid[] END,
           c.relreplident IN ('f', 'i') OR (c.relreplident = 'd' AND EXISTS
               (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    ORDER BY 1, 2";

/// A table `capture.tables` selects, as the catalog shows it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedTable {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// `pg_class.oid`: tells a table from another one of the same name made later.
    pub oid: u32,
    /// A partitioned table's leaf partitions; empty for a plain table.
    pub partitions: Vec<u32>,
    /// Whether its updates and deletes log an identifying old row; PostgreSQL refuses updates
    /// and deletes of a published table that logs none.
    pub identified: bool,
}

impl CapturedTable {
    /// `schema.table`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// The tables `capture.tables` / `exclude_tables` select (partitioned tables as their root).
pub async fn captured_relations(
    client: &Client,
    filter: &TableFilter,
) -> Result<Vec<CapturedTable>, CatalogError> {
    let rows = client
        .query(USER_TABLES_SQL, &[])
        .await
        .map_err(|source| CatalogError::Query {
            what: "tables",
            source: source.into(),
        })?;
    Ok(rows
        .iter()
        .map(|row| CapturedTable {
            schema: row.get(0),
            table: row.get(1),
            oid: row.get(2),
            partitions: row.get(3),
            identified: row.get(4),
        })
        .filter(|table| filter.matches(&table.schema, &table.table))
        .collect())
}

/// The tables `capture.tables` / `exclude_tables` select, as `(schema, table)`.
pub async fn captured_tables(
    client: &Client,
    filter: &TableFilter,
) -> Result<Vec<(String, String)>, CatalogError> {
    Ok(captured_relations(client, filter)
        .await?
        .into_iter()
        .map(|table| (table.schema, table.table))
        .collect())
}
