//! Replaying a captured schema change on the target: what the change did, worked out from the
//! table's definition before and after it (columns matched by `attnum`, so a renamed column
//! keeps its data), not the statement's text, which may name objects the target lacks.
//!
//! Each step checks the target first (a column is renamed only if the target has the old name
//! and not the new one, added only if missing, …), so replaying a change twice — after a
//! source replay — changes nothing the second time. Without the definition before the change
//! (the source's DDL capture had not seen the table yet) only what is safe is done: missing
//! columns are added; nothing is dropped, renamed or retyped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Transaction;

use super::change::{EnumType, SinkColumn, SinkTable};
use super::ddl::{create_table_sql, enum_target, quote_ident};
use super::SinkError;
use crate::event::{ColumnDescription, TableDescription};

/// A column as the target has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// Its name.
    pub name: String,
    /// `format_type` of its type, user types schema-qualified.
    pub sql_type: String,
    /// Whether it is `NOT NULL`.
    pub not_null: bool,
}

/// A target table's columns and primary key, as replaying needs them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetShape {
    /// Columns in table order.
    pub columns: Vec<TargetColumn>,
    /// The primary key's constraint name and columns, if it has one.
    pub primary_key: Option<(String, Vec<String>)>,
}

/// Reads the target table's shape, `None` when it does not exist.
pub async fn target_shape(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<Option<TargetShape>, SinkError> {
    let search_path: String = tx
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .map_err(|e| SinkError::target("read search_path", e))?
        .get(0);
    tx.execute("SELECT set_config('search_path', 'pg_catalog', true)", &[])
        .await
        .map_err(|e| SinkError::target("set search_path", e))?;
    // With only `pg_catalog` visible, `format_type` qualifies user types as the source does.
    let rows = tx
        .query(
            "SELECT a.attname::text,
                    replace(format_type(a.atttypid, a.atttypmod), '\"', ''),
                    a.attnotnull
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await;
    tx.execute(
        "SELECT set_config('search_path', $1, true)",
        &[&search_path],
    )
    .await
    .map_err(|e| SinkError::target("restore search_path", e))?;
    let rows = rows.map_err(|e| SinkError::target("describe the target table", e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let key = tx
        .query_opt(
            "SELECT k.conname::text,
                    array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
                          ORDER BY u.n)
             FROM pg_constraint k
             JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND k.contype = 'p'",
            &[&schema, &table],
        )
        .await
        .map_err(|e| SinkError::target("read the target table's primary key", e))?;
    Ok(Some(TargetShape {
        columns: rows
            .iter()
            .map(|row| TargetColumn {
                name: row.get(0),
                sql_type: row.get(1),
                not_null: row.get(2),
            })
            .collect(),
        primary_key: key.map(|row| (row.get(0), row.get(1))),
    }))
}

/// Which user types (schema-qualified `format_type` spellings, arrays stripped) exist on the
/// target.
pub async fn known_types(
    tx: &Transaction<'_>,
    description: &TableDescription,
) -> Result<Vec<String>, SinkError> {
    let names: Vec<String> = description
        .columns
        .iter()
        .filter(|c| c.enum_values.is_none() && is_user_type(&c.type_expression))
        .map(|c| element_type(&c.type_expression).to_owned())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "SELECT name FROM unnest($1::text[]) AS name WHERE to_regtype(name) IS NOT NULL",
            &[&names],
        )
        .await
        .map_err(|e| SinkError::target("look up the column types on the target", e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A type spelled schema-qualified by `format_type` (only `pg_catalog` visible): a user's.
fn is_user_type(type_expression: &str) -> bool {
    let mut quoted = false;
    type_expression.chars().any(|c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == '.' && !quoted
    })
}

/// The element type of an array type's spelling (`integer[]` → `integer`).
fn element_type(type_expression: &str) -> &str {
    type_expression.trim_end_matches("[]")
}

/// What a replayed column's type is on the target: the source enum type (made on the target
/// beforehand, see [`enum_table`]); a user type the target has; `text` for one it lacks
/// (composites and other types travel in their text form); else the source's spelling.
pub fn column_type(
    column: &ColumnDescription,
    table: &SinkTable,
    target_schema: &str,
    known: &[String],
) -> String {
    let element = element_type(&column.type_expression);
    let array = &column.type_expression[element.len()..];
    if let Some(enum_type) = enum_of(column) {
        let (schema, name) = enum_target(&enum_type, table, target_schema);
        return format!("{}.{}{array}", quote_ident(&schema), quote_ident(&name));
    }
    if is_user_type(element) && !known.iter().any(|k| k == element) {
        return format!("text{array}");
    }
    column.type_expression.clone()
}

fn enum_of(column: &ColumnDescription) -> Option<EnumType> {
    let labels = column.enum_values.as_ref()?;
    let mut enum_type = EnumType::parse(element_type(&column.type_expression), "")?;
    enum_type.labels = labels.clone();
    Some(enum_type)
}

/// The description as a [`SinkTable`] whose columns have their target types: for creating the
/// table and the enum types its columns use.
pub fn sink_table(
    description: &TableDescription,
    target_schema: &str,
    known: &[String],
) -> SinkTable {
    let mut table = SinkTable {
        schema: description.schema.clone(),
        table: description.table.clone(),
        columns: Vec::new(),
        key: Vec::new(),
    };
    let columns = description
        .columns
        .iter()
        .map(|column| SinkColumn {
            name: column.name.clone(),
            sql_type: column_type(column, &table, target_schema, known),
            optional: column.optional,
            enum_type: enum_of(column).map(Arc::new),
        })
        .collect();
    table.columns = columns;
    table.key = description
        .primary_key
        .iter()
        .filter_map(|name| table.columns.iter().position(|c| &c.name == name))
        .collect();
    table
}

/// `DEFAULT …` or `GENERATED ALWAYS AS (…) STORED` for a created column; none for identity
/// and serial columns, whose values always come from the source.
fn default_clause(column: &ColumnDescription) -> String {
    match &column.default_expression {
        Some(expression) if column.generated => {
            format!(" GENERATED ALWAYS AS ({expression}) STORED")
        }
        Some(expression) if !column.auto_incremented => format!(" DEFAULT {expression}"),
        _ => String::new(),
    }
}

/// The statements that create the described table as `target` (schema, name).
pub fn create_statements(
    description: &TableDescription,
    target: (&str, &str),
    target_schema: &str,
    known: &[String],
) -> Vec<String> {
    let table = sink_table(description, target_schema, known);
    let mut statements = vec![create_table_sql(target.0, target.1, &table, target_schema)];
    let quoted = format!("{}.{}", quote_ident(target.0), quote_ident(target.1));
    for column in &description.columns {
        let clause = default_clause(column);
        if clause.is_empty() {
            continue;
        }
        if column.generated {
            // A generated column cannot be made one later: drop and add it (the table is new).
            let sql_type = column_type(column, &table, target_schema, known);
            let name = quote_ident(&column.name);
            statements.push(format!(
                "ALTER TABLE {quoted} DROP COLUMN {name}, ADD COLUMN {name} {sql_type}{clause}"
            ));
        } else {
            statements.push(format!(
                "ALTER TABLE {quoted} ALTER COLUMN {}{}",
                quote_ident(&column.name),
                clause.replacen(" DEFAULT", " SET DEFAULT", 1)
            ));
        }
    }
    statements
}

/// The `ALTER TABLE` statements that take the target table `quoted` (of shape `target`) from
/// `previous` (when known) to `description`.
pub fn alter_statements(
    quoted: &str,
    target: &TargetShape,
    previous: Option<&TableDescription>,
    description: &TableDescription,
    target_schema: &str,
    known: &[String],
) -> Vec<String> {
    let table = sink_table(description, target_schema, known);
    let previous: HashMap<i32, &ColumnDescription> = previous
        .map(|p| p.columns.iter().map(|c| (c.position, c)).collect())
        .unwrap_or_default();
    let known_before = !previous.is_empty();
    let mut names: Vec<String> = target.columns.iter().map(|c| c.name.clone()).collect();
    let has = |names: &[String], name: &str| names.iter().any(|n| n == name);
    let mut statements = Vec::new();
    // Renames first, so the steps below see the new names.
    for column in &description.columns {
        let Some(before) = previous.get(&column.position) else {
            continue;
        };
        if before.name != column.name && has(&names, &before.name) && !has(&names, &column.name) {
            statements.push(format!(
                "ALTER TABLE {quoted} RENAME COLUMN {} TO {}",
                quote_ident(&before.name),
                quote_ident(&column.name)
            ));
            for name in names.iter_mut().filter(|n| **n == before.name) {
                name.clone_from(&column.name);
            }
        }
    }
    let mut actions = Vec::new();
    let positions: Vec<i32> = description.columns.iter().map(|c| c.position).collect();
    let mut dropped: Vec<&ColumnDescription> = previous
        .values()
        .filter(|before| !positions.contains(&before.position) && has(&names, &before.name))
        .copied()
        .collect();
    dropped.sort_by_key(|before| before.position);
    for before in dropped {
        actions.push(format!("DROP COLUMN {}", quote_ident(&before.name)));
        names.retain(|name| *name != before.name);
    }
    for column in &description.columns {
        let name = quote_ident(&column.name);
        let sql_type = column_type(column, &table, target_schema, known);
        let before = previous.get(&column.position).copied();
        if !has(&names, &column.name) {
            if known_before && before.is_some() {
                // The source had it under this position: the target lacks it on purpose.
                continue;
            }
            let not_null = if column.optional { "" } else { " NOT NULL" };
            actions.push(format!(
                "ADD COLUMN {name} {sql_type}{}{not_null}",
                default_clause(column)
            ));
            continue;
        }
        let Some(before) = before else {
            continue;
        };
        let current = target.columns.iter().find(|c| {
            c.name == column.name || (c.name == before.name && before.name != column.name)
        });
        if before.type_expression != column.type_expression
            && current.is_some_and(|c| c.sql_type != sql_type.replace('"', ""))
        {
            actions.push(format!(
                "ALTER COLUMN {name} TYPE {sql_type} USING {name}::{sql_type}"
            ));
        }
        if before.optional != column.optional {
            let not_null = current.is_some_and(|c| c.not_null);
            if column.optional && not_null {
                actions.push(format!("ALTER COLUMN {name} DROP NOT NULL"));
            } else if !column.optional && !not_null {
                actions.push(format!("ALTER COLUMN {name} SET NOT NULL"));
            }
        }
        if before.default_expression != column.default_expression
            && !column.auto_incremented
            && !column.generated
        {
            actions.push(match &column.default_expression {
                Some(expression) => format!("ALTER COLUMN {name} SET DEFAULT {expression}"),
                None => format!("ALTER COLUMN {name} DROP DEFAULT"),
            });
        }
    }
    let key = &description.primary_key;
    let target_key = target.primary_key.as_ref();
    if !key.is_empty() && target_key.map(|(_, columns)| columns) != Some(key) {
        if let Some((constraint, _)) = target_key {
            actions.push(format!("DROP CONSTRAINT {}", quote_ident(constraint)));
        }
        let columns: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
        actions.push(format!("ADD PRIMARY KEY ({})", columns.join(", ")));
    }
    if !actions.is_empty() {
        statements.push(format!("ALTER TABLE {quoted} {}", actions.join(", ")));
    }
    statements
}

/// The statements that move the target table `from` to `to` (schema, name), when they differ.
pub fn rename_statements(from: (&str, &str), to: (&str, &str)) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = format!("{}.{}", quote_ident(from.0), quote_ident(from.1));
    if from.0 != to.0 {
        statements.push(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(to.0)));
        statements.push(format!(
            "ALTER TABLE {current} SET SCHEMA {}",
            quote_ident(to.0)
        ));
        current = format!("{}.{}", quote_ident(to.0), quote_ident(from.1));
    }
    if from.1 != to.1 {
        statements.push(format!(
            "ALTER TABLE {current} RENAME TO {}",
            quote_ident(to.1)
        ));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(
        position: i32,
        name: &str,
        type_expression: &str,
        optional: bool,
    ) -> ColumnDescription {
        ColumnDescription {
            name: name.into(),
            position,
            type_expression: type_expression.into(),
            optional,
            ..Default::default()
        }
    }

    fn people(columns: Vec<ColumnDescription>) -> TableDescription {
        TableDescription {
            schema: "l1".into(),
            table: "people".into(),
            columns,
            primary_key: vec!["id".into()],
        }
    }

    fn target(columns: &[(&str, &str, bool)]) -> TargetShape {
        TargetShape {
            columns: columns
                .iter()
                .map(|(name, sql_type, not_null)| TargetColumn {
                    name: (*name).into(),
                    sql_type: (*sql_type).into(),
                    not_null: *not_null,
                })
                .collect(),
            primary_key: Some(("people_pkey".into(), vec!["id".into()])),
        }
    }

    const T: &str = "\"l1\".\"people\"";

    #[test]
    fn a_rename_keeps_the_column_and_a_drop_and_add_are_told_apart() {
        let before = people(vec![
            column(1, "id", "integer", false),
            column(2, "name", "text", true),
            column(3, "score", "integer", true),
        ]);
        let after = people(vec![
            column(1, "id", "integer", false),
            column(2, "full_name", "text", true),
            column(4, "score", "bigint", true),
        ]);
        let shape = target(&[
            ("id", "integer", true),
            ("name", "text", false),
            ("score", "integer", false),
        ]);
        assert_eq!(
            alter_statements(T, &shape, Some(&before), &after, "", &[]),
            [
                format!("ALTER TABLE {T} RENAME COLUMN \"name\" TO \"full_name\""),
                format!("ALTER TABLE {T} DROP COLUMN \"score\", ADD COLUMN \"score\" bigint"),
            ]
        );
    }

    #[test]
    fn type_nullability_and_default_changes_follow_the_source() {
        let before = people(vec![
            column(1, "id", "integer", false),
            column(2, "qty", "integer", true),
            column(3, "note", "character varying(10)", false),
        ]);
        let mut after = people(vec![
            column(1, "id", "integer", false),
            column(2, "qty", "bigint", false),
            column(3, "note", "text", true),
        ]);
        after.columns[2].default_expression = Some("'none'::text".into());
        let shape = target(&[
            ("id", "integer", true),
            ("qty", "integer", false),
            ("note", "character varying(10)", true),
        ]);
        assert_eq!(
            alter_statements(T, &shape, Some(&before), &after, "", &[]),
            [format!(
                "ALTER TABLE {T} ALTER COLUMN \"qty\" TYPE bigint USING \"qty\"::bigint, \
                 ALTER COLUMN \"qty\" SET NOT NULL, \
                 ALTER COLUMN \"note\" TYPE text USING \"note\"::text, \
                 ALTER COLUMN \"note\" DROP NOT NULL, \
                 ALTER COLUMN \"note\" SET DEFAULT 'none'::text"
            )]
        );
    }

    #[test]
    fn replaying_a_change_the_target_already_has_does_nothing() {
        let before = people(vec![
            column(1, "id", "integer", false),
            column(2, "name", "text", true),
        ]);
        let after = people(vec![
            column(1, "id", "integer", false),
            column(2, "full_name", "text", true),
        ]);
        let shape = target(&[("id", "integer", true), ("full_name", "text", false)]);
        assert!(alter_statements(T, &shape, Some(&before), &after, "", &[]).is_empty());
    }

    #[test]
    fn without_the_definition_before_only_missing_columns_are_added() {
        let after = people(vec![
            column(1, "id", "bigint", false),
            column(3, "full_name", "text", true),
        ]);
        let shape = target(&[("id", "integer", true), ("name", "text", false)]);
        assert_eq!(
            alter_statements(T, &shape, None, &after, "", &[]),
            [format!("ALTER TABLE {T} ADD COLUMN \"full_name\" text")]
        );
    }

    #[test]
    fn user_types_map_to_the_targets_or_to_text() {
        let table = sink_table(&people(Vec::new()), "", &[]);
        let mut mood = column(2, "mood", "l1.mood[]", true);
        mood.enum_values = Some(vec!["sad".into(), "ok".into()]);
        assert_eq!(
            column_type(&mood, &table, "replica", &[]),
            "\"replica\".\"mood\"[]"
        );
        let pair = column(3, "pair", "l1.pair", true);
        assert_eq!(column_type(&pair, &table, "", &[]), "text");
        assert_eq!(
            column_type(&pair, &table, "", &["l1.pair".into()]),
            "l1.pair"
        );
        let plain = column(4, "n", "numeric(10,2)", true);
        assert_eq!(column_type(&plain, &table, "", &[]), "numeric(10,2)");
    }

    #[test]
    fn a_new_primary_key_replaces_the_old_one() {
        let before = people(vec![
            column(1, "id", "integer", false),
            column(2, "k", "integer", false),
        ]);
        let mut after = before.clone();
        after.primary_key = vec!["id".into(), "k".into()];
        let shape = target(&[("id", "integer", true), ("k", "integer", true)]);
        assert_eq!(
            alter_statements(T, &shape, Some(&before), &after, "", &[]),
            [format!(
                "ALTER TABLE {T} DROP CONSTRAINT \"people_pkey\", ADD PRIMARY KEY (\"id\", \"k\")"
            )]
        );
    }

    #[test]
    fn renamed_tables_move_schema_then_name() {
        assert_eq!(
            rename_statements(("l1", "a"), ("l2", "b")),
            [
                "CREATE SCHEMA IF NOT EXISTS \"l2\"",
                "ALTER TABLE \"l1\".\"a\" SET SCHEMA \"l2\"",
                "ALTER TABLE \"l2\".\"a\" RENAME TO \"b\"",
            ]
        );
        assert!(rename_statements(("l1", "a"), ("l1", "a")).is_empty());
    }
}
