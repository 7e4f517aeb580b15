//! Enum types on the target: with `apply.create_tables`, a source enum type a column uses is
//! created on the target with the same labels in the same order, and labels the source adds
//! later are added with `ALTER TYPE … ADD VALUE` at the same place.
//!
//! PostgreSQL refuses to use a label added inside the transaction that is still open ("unsafe
//! use of new value"), so labels are added on the sink's connection before a batch begins,
//! each statement committing on its own.

use std::collections::HashMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::change::{EnumType, SinkTable};
use super::ddl::{enum_target, quote_ident};
use super::SinkError;

/// The labels of the target's enum types as last read or made, by (schema, name).
#[derive(Debug, Default)]
pub struct TargetEnums {
    labels: HashMap<(String, String), Vec<String>>,
}

impl TargetEnums {
    /// Makes sure the target has every enum type `table`'s columns name, with at least the
    /// source's labels. `target_schema` is `apply.target_schema`.
    pub async fn prepare(
        &mut self,
        client: &Client,
        table: &SinkTable,
        target_schema: &str,
    ) -> Result<(), SinkError> {
        for enum_type in table.columns.iter().filter_map(|c| c.enum_type.as_deref()) {
            let key = enum_target(enum_type, table, target_schema);
            let known = self.labels.get(&key);
            if known.is_some_and(|labels| enum_type.labels.iter().all(|l| labels.contains(l))) {
                continue;
            }
            let labels = prepare_type(client, &key, enum_type).await?;
            self.labels.insert(key, labels);
        }
        Ok(())
    }
}

/// Creates the type or adds the labels it lacks; returns its labels afterwards.
async fn prepare_type(
    client: &Client,
    (schema, name): &(String, String),
    source: &EnumType,
) -> Result<Vec<String>, SinkError> {
    let quoted = format!("{}.{}", quote_ident(schema), quote_ident(name));
    let labels = match target_labels(client, schema, name).await? {
        TargetType::Enum(labels) => labels,
        // A type of that name that is not an enum: casting into it is left to PostgreSQL.
        TargetType::Other => return Ok(source.labels.clone()),
        TargetType::Missing => {
            let create = create_sql(schema, &quoted, &source.labels);
            match client.batch_execute(&create).await {
                Ok(()) => tracing::info!(r#type = quoted, "created the enum type on the target"),
                // Another sink of the group made it first.
                Err(error) if error.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
                Err(error) => {
                    return Err(SinkError::target(
                        format!("create enum type {quoted}"),
                        error,
                    ))
                }
            }
            target_labels(client, schema, name).await?.labels()
        }
    };
    let additions = add_value_statements(&quoted, &labels, &source.labels);
    if additions.is_empty() {
        return Ok(labels);
    }
    for statement in additions {
        client
            .batch_execute(&statement)
            .await
            .map_err(|e| SinkError::target(format!("add a label to enum type {quoted}"), e))?;
    }
    tracing::info!(
        r#type = quoted,
        "added the source's new labels to the target's enum type"
    );
    Ok(target_labels(client, schema, name).await?.labels())
}

/// What the target has under an enum type's name.
enum TargetType {
    /// No type of that name.
    Missing,
    /// An enum, with its labels in sort order.
    Enum(Vec<String>),
    /// A type of another kind.
    Other,
}

impl TargetType {
    fn labels(self) -> Vec<String> {
        match self {
            TargetType::Enum(labels) => labels,
            TargetType::Missing | TargetType::Other => Vec::new(),
        }
    }
}

/// What the target has under the type's name.
async fn target_labels(client: &Client, schema: &str, name: &str) -> Result<TargetType, SinkError> {
    let row = client
        .query_opt(
            "SELECT t.typtype = 'e', \
                    coalesce(array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
                             FILTER (WHERE e.enumlabel IS NOT NULL), '{}') \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             LEFT JOIN pg_enum e ON e.enumtypid = t.oid \
             WHERE n.nspname = $1 AND t.typname = $2 GROUP BY t.oid, t.typtype",
            &[&schema, &name],
        )
        .await
        .map_err(|e| SinkError::target("look up an enum type", e))?;
    Ok(match row {
        None => TargetType::Missing,
        Some(row) if row.get(0) => TargetType::Enum(row.get(1)),
        Some(_) => TargetType::Other,
    })
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn create_sql(schema: &str, quoted: &str, labels: &[String]) -> String {
    let labels: Vec<String> = labels.iter().map(|l| literal(l)).collect();
    format!(
        "CREATE SCHEMA IF NOT EXISTS {}; CREATE TYPE {quoted} AS ENUM ({})",
        quote_ident(schema),
        labels.join(", ")
    )
}

/// `ALTER TYPE … ADD VALUE` for each source label the target lacks, placed after the source
/// label before it (or before the first), so the target's order follows the source's.
fn add_value_statements(quoted: &str, target: &[String], source: &[String]) -> Vec<String> {
    let mut have: Vec<&str> = target.iter().map(String::as_str).collect();
    let mut statements = Vec::new();
    for (index, label) in source.iter().enumerate() {
        if have.contains(&label.as_str()) {
            continue;
        }
        let place = match index.checked_sub(1).map(|i| source[i].as_str()) {
            Some(previous) => format!(" AFTER {}", literal(previous)),
            None => have
                .first()
                .map(|first| format!(" BEFORE {}", literal(first)))
                .unwrap_or_default(),
        };
        statements.push(format!(
            "ALTER TYPE {quoted} ADD VALUE IF NOT EXISTS {}{place}",
            literal(label)
        ));
        have.push(label);
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(list: &[&str]) -> Vec<String> {
        list.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn new_labels_keep_the_source_order() {
        assert_eq!(
            add_value_statements(
                "\"l1\".\"mood\"",
                &labels(&["ok", "happy"]),
                &labels(&["sad", "ok", "meh", "happy", "elated"])
            ),
            [
                "ALTER TYPE \"l1\".\"mood\" ADD VALUE IF NOT EXISTS 'sad' BEFORE 'ok'",
                "ALTER TYPE \"l1\".\"mood\" ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok'",
                "ALTER TYPE \"l1\".\"mood\" ADD VALUE IF NOT EXISTS 'elated' AFTER 'happy'",
            ]
        );
        assert!(
            add_value_statements("t", &labels(&["a", "b", "x"]), &labels(&["a", "b"])).is_empty()
        );
        assert_eq!(
            add_value_statements("t", &[], &labels(&["it's"])),
            ["ALTER TYPE t ADD VALUE IF NOT EXISTS 'it''s'"]
        );
    }

    #[test]
    fn a_created_type_lists_the_labels_in_order() {
        assert_eq!(
            create_sql("l1", "\"l1\".\"mood\"", &labels(&["sad", "o'k"])),
            "CREATE SCHEMA IF NOT EXISTS \"l1\"; CREATE TYPE \"l1\".\"mood\" AS ENUM ('sad', 'o''k')"
        );
    }
}
