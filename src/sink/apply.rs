//! Applying segments inside one target transaction: multi-row upserts and deletes from
//! `unnest` over text arrays (one round trip per statement, whatever the batch size), truncates,
//! and change-by-change statements for tables without a key. New inserts and snapshot reads go
//! through `COPY` first, which PostgreSQL loads about 1.7 times faster than the upsert
//! (`cargo bench --bench apply_statements`); a key the target already has sends them to the
//! upsert instead.
//!
//! Values travel as text and are cast to the target column's own type, so a target table made
//! by hand with other but compatible types (varchar(40) for text, bigint for integer) works.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use super::batch::{KeyedAction, Segment, Upserted};
use super::change::{Cell, SinkChange, SinkOp, SinkTable};
use super::ddl::{quote_ident, TargetTable};
use super::SinkError;
use crate::config::OnConflict;

/// How long inserts into a table go straight to the upsert after a COPY met an existing key:
/// a target that already holds the rows (a replay into a pre-filled table) would otherwise pay
/// for a failed COPY on every batch.
const COPY_PAUSE: Duration = Duration::from_secs(60);
/// The size of the pieces `COPY` data is sent in.
const COPY_PIECE_BYTES: usize = 64 * 1024;

/// Applies segments; keeps prepared statements of the current target connection.
#[derive(Default)]
pub struct Applier {
    statements: HashMap<String, Statement>,
    /// Tables (quoted names) whose inserts skip COPY until the given time.
    copy_paused: HashMap<String, Instant>,
}

/// The rows of one upsert statement: same target columns, same conflict handling.
struct UpsertGroup<'a> {
    /// Indexes into the source table's columns that the statement writes.
    columns: Vec<usize>,
    conflict: OnConflict,
    /// Every row was inserted or read by a snapshot (no update or delete before it in the
    /// batch), so `COPY` is tried first; a key the target holds sends the group to the upsert.
    copy_first: bool,
    rows: Vec<&'a [Cell]>,
}

impl Applier {
    /// Forgets prepared statements (they belong to a connection that is gone).
    pub fn reset(&mut self) {
        self.statements.clear();
    }

    /// Applies one segment to `target`.
    pub async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        target: &TargetTable,
        segment: &Segment,
        on_conflict: OnConflict,
    ) -> Result<(), SinkError> {
        match segment {
            Segment::Truncate { .. } => {
                let sql = format!("TRUNCATE {}", target.quoted_name());
                tx.batch_execute(&sql)
                    .await
                    .map_err(|e| SinkError::target(format!("truncate {}", target.quoted_name()), e))
            }
            Segment::Keyed { table, actions } => {
                self.apply_keyed(tx, target, table, actions, on_conflict)
                    .await
            }
            Segment::Keyless { table, changes } => {
                self.apply_keyless(tx, target, table, changes).await
            }
        }
    }

    async fn apply_keyed(
        &mut self,
        tx: &Transaction<'_>,
        target: &TargetTable,
        table: &SinkTable,
        actions: &[KeyedAction],
        on_conflict: OnConflict,
    ) -> Result<(), SinkError> {
        let deletes: Vec<&[Cell]> = actions
            .iter()
            .filter_map(|action| match action {
                KeyedAction::Delete { key } => Some(key.as_slice()),
                KeyedAction::Upsert { .. } => None,
            })
            .collect();
        if !deletes.is_empty() {
            let key_columns: Vec<usize> = (0..table.key.len()).collect();
            let key_names: Vec<&str> = table
                .key
                .iter()
                .map(|&i| table.columns[i].name.as_str())
                .collect();
            let sql = delete_sql(target, &key_names)?;
            self.run(tx, &sql, &key_columns, &deletes, target).await?;
        }
        for group in upsert_groups(table, actions, on_conflict) {
            if group.copy_first
                && self
                    .copy_rows(tx, target, table, &group.columns, &group.rows)
                    .await?
            {
                continue;
            }
            let sql = upsert_sql(target, table, &group.columns, group.conflict)?;
            self.run(tx, &sql, &group.columns, &group.rows, target)
                .await?;
        }
        Ok(())
    }

    async fn apply_keyless(
        &mut self,
        tx: &Transaction<'_>,
        target: &TargetTable,
        table: &SinkTable,
        changes: &[SinkChange],
    ) -> Result<(), SinkError> {
        let all: Vec<usize> = (0..table.columns.len()).collect();
        let mut inserts: Vec<&[Cell]> = Vec::new();
        for change in changes {
            match (change.op, &change.before, &change.after) {
                (SinkOp::Create | SinkOp::Read, _, Some(after)) => inserts.push(after),
                (SinkOp::Update | SinkOp::Delete, Some(before), after) => {
                    self.flush_inserts(tx, target, table, &all, &mut inserts)
                        .await?;
                    let sql = match (change.op, after) {
                        (SinkOp::Update, Some(_)) => keyless_update_sql(target, table)?,
                        _ => keyless_delete_sql(target, table)?,
                    };
                    let mut values: Vec<Option<&str>> =
                        before.iter().map(|cell| text_of(Some(cell))).collect();
                    if let (SinkOp::Update, Some(after)) = (change.op, after) {
                        values.extend(after.iter().map(|cell| text_of(Some(cell))));
                    }
                    self.run_one(tx, &sql, &values, target).await?;
                }
                _ => {}
            }
        }
        self.flush_inserts(tx, target, table, &all, &mut inserts)
            .await
    }

    async fn flush_inserts(
        &mut self,
        tx: &Transaction<'_>,
        target: &TargetTable,
        table: &SinkTable,
        columns: &[usize],
        inserts: &mut Vec<&[Cell]>,
    ) -> Result<(), SinkError> {
        if inserts.is_empty() || self.copy_rows(tx, target, table, columns, inserts).await? {
            inserts.clear();
            return Ok(());
        }
        let sql = upsert_sql(target, table, columns, OnConflict::Error)?;
        self.run(tx, &sql, columns, inserts, target).await?;
        inserts.clear();
        Ok(())
    }

    /// Runs `sql` with one text array per entry of `columns`, each holding that cell of every row.
    async fn run(
        &mut self,
        tx: &Transaction<'_>,
        sql: &str,
        columns: &[usize],
        rows: &[&[Cell]],
        target: &TargetTable,
    ) -> Result<(), SinkError> {
        let what = || format!("apply changes to {}", target.quoted_name());
        let statement = self.prepared(tx, sql, target).await?;
        let arrays: Vec<Vec<Option<&str>>> = columns
            .iter()
            .map(|&column| rows.iter().map(|row| text_of(row.get(column))).collect())
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        tx.execute(&statement, &params)
            .await
            .map_err(|e| SinkError::target(what(), e))?;
        Ok(())
    }
}

impl Applier {
    /// Loads `rows` with `COPY … FROM STDIN` inside a savepoint. `Ok(false)` when a key already
    /// exists (rolled back; the caller upserts instead); other rejections are the rows' errors.
    async fn copy_rows(
        &mut self,
        tx: &Transaction<'_>,
        target: &TargetTable,
        table: &SinkTable,
        columns: &[usize],
        rows: &[&[Cell]],
    ) -> Result<bool, SinkError> {
        let name = target.quoted_name();
        if self
            .copy_paused
            .get(&name)
            .is_some_and(|until| Instant::now() < *until)
        {
            return Ok(false);
        }
        let quoted: Vec<String> = columns
            .iter()
            .map(|&i| quote_ident(&table.columns[i].name))
            .collect();
        let sql = format!("COPY {name} ({}) FROM STDIN", quoted.join(", "));
        let what = || format!("copy rows into {name}");
        tx.batch_execute("SAVEPOINT pgcdc_copy")
            .await
            .map_err(|e| SinkError::target("create a savepoint", e))?;
        let copied = async {
            let sink = tx.copy_in(&sql).await?;
            let mut sink = std::pin::pin!(sink);
            // Sent piece by piece: the server parses one while the next is written, and no
            // buffer grows past the allocator's mmap threshold.
            let mut piece = Vec::with_capacity(COPY_PIECE_BYTES);
            for row in rows {
                copy_row(columns, row, &mut piece);
                if piece.len() >= COPY_PIECE_BYTES {
                    let full = std::mem::replace(&mut piece, Vec::with_capacity(COPY_PIECE_BYTES));
                    sink.send(Bytes::from(full)).await?;
                }
            }
            if !piece.is_empty() {
                sink.send(Bytes::from(piece)).await?;
            }
            sink.as_mut().finish().await
        }
        .await;
        match copied {
            Ok(_) => {
                tx.batch_execute("RELEASE SAVEPOINT pgcdc_copy")
                    .await
                    .map_err(|e| SinkError::target("release a savepoint", e))?;
                Ok(true)
            }
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT pgcdc_copy")
                    .await
                    .map_err(|e| SinkError::target("roll back a savepoint", e))?;
                self.copy_paused.insert(name, Instant::now() + COPY_PAUSE);
                Ok(false)
            }
            Err(error) => Err(SinkError::target(what(), error)),
        }
    }

    /// Runs `sql` with one text parameter per value (a single-row statement).
    async fn run_one(
        &mut self,
        tx: &Transaction<'_>,
        sql: &str,
        values: &[Option<&str>],
        target: &TargetTable,
    ) -> Result<(), SinkError> {
        let statement = self.prepared(tx, sql, target).await?;
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        tx.execute(&statement, &params).await.map_err(|e| {
            SinkError::target(format!("apply changes to {}", target.quoted_name()), e)
        })?;
        Ok(())
    }

    async fn prepared(
        &mut self,
        tx: &Transaction<'_>,
        sql: &str,
        target: &TargetTable,
    ) -> Result<Statement, SinkError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = tx.prepare(sql).await.map_err(|e| {
            SinkError::target(
                format!("prepare a statement for {}", target.quoted_name()),
                e,
            )
        })?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn text_of(cell: Option<&Cell>) -> Option<&str> {
    match cell {
        Some(Cell::Text(text)) => Some(text),
        _ => None,
    }
}

/// Appends `COPY`'s text format of the given columns of `row` to `out`: tab-separated, `\N`
/// for NULL, and backslash, tab, newline and carriage return escaped.
fn copy_row(columns: &[usize], row: &[Cell], out: &mut Vec<u8>) {
    for (n, &column) in columns.iter().enumerate() {
        if n > 0 {
            out.push(b'\t');
        }
        match text_of(row.get(column)) {
            None => out.extend_from_slice(b"\\N"),
            Some(text) => escape_copy_value(text, out),
        }
    }
    out.push(b'\n');
}

fn escape_copy_value(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Splits upserts by the columns they can write (unchanged-TOAST cells are left out, so the
/// target keeps its value) and by conflict handling (`on_conflict` applies to inserts only;
/// updates and snapshot reads always overwrite).
fn upsert_groups<'a>(
    table: &SinkTable,
    actions: &'a [KeyedAction],
    on_conflict: OnConflict,
) -> Vec<UpsertGroup<'a>> {
    let mut groups: Vec<UpsertGroup<'a>> = Vec::new();
    for action in actions {
        let KeyedAction::Upsert { row, how } = action else {
            continue;
        };
        let columns: Vec<usize> = (0..table.columns.len())
            .filter(|&i| row.get(i) != Some(&Cell::Unavailable))
            .collect();
        let conflict = if *how == Upserted::Inserted {
            on_conflict
        } else {
            OnConflict::Update
        };
        let copy_first = *how != Upserted::Updated;
        match groups
            .iter_mut()
            .find(|g| g.columns == columns && g.conflict == conflict && g.copy_first == copy_first)
        {
            Some(group) => group.rows.push(row),
            None => groups.push(UpsertGroup {
                columns,
                conflict,
                copy_first,
                rows: vec![row],
            }),
        }
    }
    groups
}

/// The target type of a source column, or an error naming the missing column.
fn target_type<'a>(target: &'a TargetTable, column: &str) -> Result<&'a str, SinkError> {
    target
        .column_type(column)
        .ok_or_else(|| SinkError::MissingColumn {
            table: format!("{}.{}", target.schema, target.table),
            column: column.to_owned(),
        })
}

/// `SELECT u."c"::type, … FROM unnest($1::text[], …) AS u("c", …)` over the given columns,
/// parameters numbered from `first`.
fn unnest_select(
    target: &TargetTable,
    names: &[&str],
    first: usize,
) -> Result<(String, String), SinkError> {
    let mut casts = Vec::with_capacity(names.len());
    let mut arrays = Vec::with_capacity(names.len());
    let mut aliases = Vec::with_capacity(names.len());
    for (offset, name) in names.iter().enumerate() {
        let quoted = quote_ident(name);
        casts.push(format!("u.{quoted}::{}", target_type(target, name)?));
        arrays.push(format!("${}::text[]", first + offset));
        aliases.push(quoted);
    }
    Ok((
        casts.join(", "),
        format!("unnest({}) AS u({})", arrays.join(", "), aliases.join(", ")),
    ))
}

fn upsert_sql(
    target: &TargetTable,
    table: &SinkTable,
    columns: &[usize],
    conflict: OnConflict,
) -> Result<String, SinkError> {
    let names: Vec<&str> = columns
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let (select, from) = unnest_select(target, &names, 1)?;
    let quoted: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) SELECT {select} FROM {from}",
        target.quoted_name(),
        quoted.join(", ")
    );
    let key: Vec<String> = target.primary_key.iter().map(|k| quote_ident(k)).collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|name| !target.primary_key.iter().any(|k| k == *name))
        .map(|name| format!("{q} = EXCLUDED.{q}", q = quote_ident(name)))
        .collect();
    match conflict {
        OnConflict::Error => {}
        _ if key.is_empty() => {}
        OnConflict::Update if !updates.is_empty() => sql.push_str(&format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            updates.join(", ")
        )),
        OnConflict::Update | OnConflict::Nothing => {
            sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", key.join(", ")))
        }
    }
    Ok(sql)
}

fn delete_sql(target: &TargetTable, key_names: &[&str]) -> Result<String, SinkError> {
    let (_, from) = unnest_select(target, key_names, 1)?;
    let matches: Result<Vec<String>, SinkError> = key_names
        .iter()
        .map(|name| {
            let q = quote_ident(name);
            Ok(format!("t.{q} = u.{q}::{}", target_type(target, name)?))
        })
        .collect();
    Ok(format!(
        "DELETE FROM {} AS t USING {from} WHERE {}",
        target.quoted_name(),
        matches?.join(" AND ")
    ))
}

/// Matches one row of a table without a key by every column's text as the column's type
/// prints it (json has no equality operator, NULLs must match NULLs, and the topic's text of a
/// value, e.g. an ISO timestamp, need not be the type's output text), parameters from `first`.
fn keyless_match(
    target: &TargetTable,
    table: &SinkTable,
    first: usize,
) -> Result<String, SinkError> {
    let conditions: Result<Vec<String>, SinkError> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(format!(
                "t.{}::text IS NOT DISTINCT FROM (${}::text)::{}::text",
                quote_ident(&column.name),
                first + i,
                target_type(target, &column.name)?
            ))
        })
        .collect();
    Ok(conditions?.join(" AND "))
}

fn keyless_delete_sql(target: &TargetTable, table: &SinkTable) -> Result<String, SinkError> {
    Ok(format!(
        "DELETE FROM {name} WHERE ctid = (SELECT t.ctid FROM {name} AS t WHERE {} LIMIT 1)",
        keyless_match(target, table, 1)?,
        name = target.quoted_name()
    ))
}

fn keyless_update_sql(target: &TargetTable, table: &SinkTable) -> Result<String, SinkError> {
    let count = table.columns.len();
    let sets: Result<Vec<String>, SinkError> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(format!(
                "{} = (${}::text)::{}",
                quote_ident(&column.name),
                count + i + 1,
                target_type(target, &column.name)?
            ))
        })
        .collect();
    Ok(format!(
        "UPDATE {name} SET {} WHERE ctid = (SELECT t.ctid FROM {name} AS t WHERE {} LIMIT 1)",
        sets?.join(", "),
        keyless_match(target, table, 1)?,
        name = target.quoted_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::change::SinkColumn;

    #[test]
    fn copy_text_escapes_what_the_format_reserves() {
        let first = [
            Cell::Text("1".into()),
            Cell::Text("a\\b\tc\nd\re".into()),
            Cell::Null,
        ];
        let second = [
            Cell::Text("2".into()),
            Cell::Text("\\.".into()),
            Cell::Text("héllo".into()),
        ];
        let mut out = Vec::new();
        copy_row(&[0, 1, 2], &first, &mut out);
        copy_row(&[0, 1, 2], &second, &mut out);
        assert_eq!(
            out,
            "1\ta\\\\b\\tc\\nd\\re\t\\N\n2\t\\\\.\théllo\n".as_bytes()
        );
        out.clear();
        copy_row(&[2, 0], &first, &mut out);
        assert_eq!(out, b"\\N\t1\n");
    }

    fn table() -> SinkTable {
        SinkTable {
            schema: "l1".into(),
            table: "t".into(),
            columns: ["id", "v", "doc"]
                .iter()
                .map(|name| SinkColumn {
                    name: (*name).into(),
                    sql_type: "text".into(),
                    optional: true,
                    enum_type: None,
                })
                .collect(),
            key: vec![0],
        }
    }

    fn target() -> TargetTable {
        TargetTable {
            schema: "r".into(),
            table: "t".into(),
            columns: vec![
                ("id".into(), "integer".into()),
                ("v".into(), "character varying(10)".into()),
                ("doc".into(), "text".into()),
            ],
            primary_key: vec!["id".into()],
        }
    }

    #[test]
    fn upserts_cast_text_arrays_to_the_target_types() {
        assert_eq!(
            upsert_sql(&target(), &table(), &[0, 1, 2], OnConflict::Update).unwrap(),
            "INSERT INTO \"r\".\"t\" (\"id\", \"v\", \"doc\") SELECT u.\"id\"::integer, \
             u.\"v\"::character varying(10), u.\"doc\"::text FROM unnest($1::text[], $2::text[], \
             $3::text[]) AS u(\"id\", \"v\", \"doc\") ON CONFLICT (\"id\") DO UPDATE SET \
             \"v\" = EXCLUDED.\"v\", \"doc\" = EXCLUDED.\"doc\""
        );
        assert!(
            upsert_sql(&target(), &table(), &[0, 1], OnConflict::Nothing)
                .unwrap()
                .ends_with("ON CONFLICT (\"id\") DO NOTHING")
        );
        assert!(upsert_sql(&target(), &table(), &[0], OnConflict::Error)
            .unwrap()
            .ends_with("AS u(\"id\")"));
    }

    #[test]
    fn deletes_join_on_the_key() {
        assert_eq!(
            delete_sql(&target(), &["id"]).unwrap(),
            "DELETE FROM \"r\".\"t\" AS t USING unnest($1::text[]) AS u(\"id\") WHERE t.\"id\" = u.\"id\"::integer"
        );
    }

    #[test]
    fn unavailable_cells_leave_their_column_out() {
        let text = |s: &str| Cell::Text(s.into());
        let actions = vec![
            KeyedAction::Upsert {
                row: vec![text("1"), text("a"), Cell::Unavailable],
                how: Upserted::Updated,
            },
            KeyedAction::Upsert {
                row: vec![text("2"), text("b"), text("d")],
                how: Upserted::Updated,
            },
            KeyedAction::Upsert {
                row: vec![text("3"), text("c"), text("e")],
                how: Upserted::Inserted,
            },
            KeyedAction::Upsert {
                row: vec![text("4"), text("c"), text("e")],
                how: Upserted::Read,
            },
        ];
        let groups = upsert_groups(&table(), &actions, OnConflict::Error);
        let shapes: Vec<(Vec<usize>, OnConflict, bool, usize)> = groups
            .iter()
            .map(|g| (g.columns.clone(), g.conflict, g.copy_first, g.rows.len()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                (vec![0, 1], OnConflict::Update, false, 1),
                (vec![0, 1, 2], OnConflict::Update, false, 1),
                (vec![0, 1, 2], OnConflict::Error, true, 1),
                (vec![0, 1, 2], OnConflict::Update, true, 1),
            ]
        );
    }

    #[test]
    fn a_column_the_target_lacks_is_named() {
        let mut narrow = target();
        narrow.columns.pop();
        let error = upsert_sql(&narrow, &table(), &[0, 1, 2], OnConflict::Update).unwrap_err();
        assert_eq!(
            error.to_string(),
            "target table r.t has no column \"doc\": add it, or set apply.create_tables = true"
        );
    }
}
