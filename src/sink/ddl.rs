//! Target tables: what the target has (columns and their types, primary key), and the DDL that
//! creates a missing table or adds a column a newer schema brought.

use tokio_postgres::{Client, Transaction};

use super::change::{EnumType, SinkColumn, SinkTable};
use super::SinkError;
use crate::encode::decode::TargetTypes;

/// A target table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    /// Target schema name.
    pub schema: String,
    /// Target table name.
    pub table: String,
    /// Columns as (name, `format_type` of the column's type), in table order.
    pub columns: Vec<(String, String)>,
    /// Primary-key column names, in key order; empty when the table has none.
    pub primary_key: Vec<String>,
}

impl TargetTable {
    /// `"schema"."table"`, quoted for SQL.
    pub fn quoted_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// The SQL type of a column, if the table has it.
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, ty)| ty.as_str())
    }
}

/// Quotes an identifier: double quotes around it, inner double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Which extension types the target has, as its search path finds them (where tables are made).
pub async fn target_types(client: &Client) -> Result<TargetTypes, SinkError> {
    let row = client
        .query_one(
            "SELECT to_regtype('hstore') IS NOT NULL, to_regtype('ltree') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|source| SinkError::target("look up the target's extension types", source))?;
    Ok(TargetTypes {
        hstore: row.get(0),
        ltree: row.get(1),
    })
}

/// Reads the target table, or `None` when it does not exist.
pub async fn describe(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<Option<TargetTable>, SinkError> {
    let rows = tx
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                    coalesce((SELECT k.n::int FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                              WHERE k.attnum = a.attnum), 0)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(|source| SinkError::target("describe the target table", source))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut key: Vec<(i32, String)> = Vec::new();
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let position: i32 = row.get(2);
        if position > 0 {
            key.push((position, name.clone()));
        }
        columns.push((name, row.get(1)));
    }
    key.sort();
    Ok(Some(TargetTable {
        schema: schema.to_owned(),
        table: table.to_owned(),
        columns,
        primary_key: key.into_iter().map(|(_, name)| name).collect(),
    }))
}

/// Where the target keeps a source enum type: in `apply.target_schema` when it is set (as the
/// tables are), else in the type's own schema (or, for an unqualified name, its table's).
pub fn enum_target(
    enum_type: &EnumType,
    table: &SinkTable,
    target_schema: &str,
) -> (String, String) {
    let schema = if !target_schema.is_empty() {
        target_schema
    } else {
        enum_type.schema.as_deref().unwrap_or(&table.schema)
    };
    (schema.to_owned(), enum_type.name.clone())
}

/// The SQL type a created column gets: the target's enum type for a column of a known enum
/// type (an array of it for arrays), else the type its schema maps to.
fn column_sql_type(column: &SinkColumn, table: &SinkTable, target_schema: &str) -> String {
    match &column.enum_type {
        Some(enum_type) => {
            let (schema, name) = enum_target(enum_type, table, target_schema);
            let quoted = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
            // `text`, `text[]` or deeper: PostgreSQL has one array type per element type.
            let array = if column.sql_type.ends_with("[]") {
                "[]"
            } else {
                ""
            };
            format!("{quoted}{array}")
        }
        None => column.sql_type.clone(),
    }
}

/// `CREATE TABLE` for `source` under the target name: its columns with their SQL types, and the
/// key schema's columns as primary key. `target_schema` is `apply.target_schema`.
pub fn create_table_sql(
    schema: &str,
    table: &str,
    source: &SinkTable,
    target_schema: &str,
) -> String {
    let mut columns: Vec<String> = source
        .columns
        .iter()
        .map(|column| {
            let not_null = if column.optional { "" } else { " NOT NULL" };
            format!(
                "{} {}{not_null}",
                quote_ident(&column.name),
                column_sql_type(column, source, target_schema)
            )
        })
        .collect();
    if !source.key.is_empty() {
        let key: Vec<String> = source
            .key
            .iter()
            .filter_map(|&i| source.columns.get(i))
            .map(|column| quote_ident(&column.name))
            .collect();
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema_q}; CREATE TABLE IF NOT EXISTS {schema_q}.{table_q} ({})",
        columns.join(", "),
        schema_q = quote_ident(schema),
        table_q = quote_ident(table),
    )
}

/// `ALTER TABLE … ADD COLUMN` for every column of `source` the target lacks; `None` when
/// nothing is missing. New columns are nullable: existing rows have no value for them.
pub fn add_columns_sql(
    target: &TargetTable,
    source: &SinkTable,
    target_schema: &str,
) -> Option<String> {
    let missing: Vec<String> = source
        .columns
        .iter()
        .filter(|column| target.column_type(&column.name).is_none())
        .map(|column| {
            format!(
                "ADD COLUMN IF NOT EXISTS {} {}",
                quote_ident(&column.name),
                column_sql_type(column, source, target_schema)
            )
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "ALTER TABLE {} {}",
            target.quoted_name(),
            missing.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::change::SinkColumn;

    fn source() -> SinkTable {
        let column = |name: &str, sql_type: &str, optional: bool| SinkColumn {
            name: name.into(),
            sql_type: sql_type.into(),
            optional,
            enum_type: None,
        };
        SinkTable {
            schema: "l1".into(),
            table: "orders".into(),
            columns: vec![
                column("id", "integer", false),
                column("region", "text", false),
                column("total", "numeric(10,2)", true),
            ],
            key: vec![1, 0],
        }
    }

    #[test]
    fn create_table_uses_the_key_schema_as_primary_key() {
        assert_eq!(
            create_table_sql("replica", "orders", &source(), ""),
            "CREATE SCHEMA IF NOT EXISTS \"replica\"; CREATE TABLE IF NOT EXISTS \"replica\".\"orders\" \
             (\"id\" integer NOT NULL, \"region\" text NOT NULL, \"total\" numeric(10,2), \
             PRIMARY KEY (\"region\", \"id\"))"
        );
    }

    #[test]
    fn only_missing_columns_are_added() {
        let target = TargetTable {
            schema: "l1".into(),
            table: "orders".into(),
            columns: vec![
                ("id".into(), "integer".into()),
                ("region".into(), "text".into()),
            ],
            primary_key: vec!["region".into(), "id".into()],
        };
        assert_eq!(
            add_columns_sql(&target, &source(), "").as_deref(),
            Some("ALTER TABLE \"l1\".\"orders\" ADD COLUMN IF NOT EXISTS \"total\" numeric(10,2)")
        );
        let mut complete = target;
        complete
            .columns
            .push(("total".into(), "numeric(10,2)".into()));
        assert_eq!(add_columns_sql(&complete, &source(), ""), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
