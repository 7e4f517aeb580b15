//! How a table is split into chunks: key ranges for tables with a key (boundaries from a
//! row sample, sorted by the server so they follow the key's own ordering), ctid block
//! ranges for tables without one, a single chunk for small tables. Each chunk is one
//! `COPY (SELECT …) TO STDOUT` statement.

use tokio_postgres::Client;

use super::SnapshotError;
use crate::event::TableSchema;

/// Sampled keys per chunk boundary: enough that chunks come out roughly even.
const SAMPLE_ROWS_PER_CHUNK: u64 = 50;
/// The smallest sample worth taking; below it the sampling query is all overhead.
const MIN_SAMPLE_ROWS: u64 = 1_000;

/// The part of a table one chunk reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRange {
    /// The whole table.
    All,
    /// Keys from `from` (inclusive) up to `to` (exclusive); `None` is unbounded. The values
    /// are the key columns' text forms.
    Keys {
        from: Option<Vec<String>>,
        to: Option<Vec<String>>,
    },
    /// Heap blocks from `from` up to `to` (exclusive, `None`: to the end).
    Blocks { from: u32, to: Option<u32> },
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is on by default).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"schema"."table"`.
pub fn qualified(table: &TableSchema) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.table)
    )
}

/// The published columns, quoted, in table order.
pub fn select_list(table: &TableSchema) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    columns.join(", ")
}

/// `("k1", "k2")`, the key as a row value.
pub fn key_row(table: &TableSchema) -> String {
    let names: Vec<String> = table
        .key
        .iter()
        .map(|&index| quote_ident(&table.columns[index].name))
        .collect();
    format!("({})", names.join(", "))
}

/// `('v1', 'v2')`: untyped literals, which the server reads as the key columns' types.
pub fn literal_row(values: &[String]) -> String {
    let literals: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
    format!("({})", literals.join(", "))
}

/// The statement that reads one chunk.
pub fn chunk_copy(table: &TableSchema, range: &ChunkRange) -> String {
    let condition = match range {
        ChunkRange::All => String::new(),
        ChunkRange::Keys { from, to } => {
            let key = key_row(table);
            let mut parts = Vec::new();
            if let Some(from) = from {
                parts.push(format!("{key} >= {}", literal_row(from)));
            }
            if let Some(to) = to {
                parts.push(format!("{key} < {}", literal_row(to)));
            }
            where_clause(&parts)
        }
        ChunkRange::Blocks { from, to } => {
            let mut parts = vec![format!("ctid >= '({from},0)'::tid")];
            if let Some(to) = to {
                parts.push(format!("ctid < '({to},0)'::tid"));
            }
            where_clause(&parts)
        }
    };
    format!(
        "COPY (SELECT {} FROM {}{condition}) TO STDOUT",
        select_list(table),
        qualified(table)
    )
}

fn where_clause(parts: &[String]) -> String {
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

/// A table's size as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct TableSize {
    /// Estimated rows: `pg_class.reltuples`, or an exact count when never analyzed.
    pub rows: u64,
    /// Heap blocks.
    pub blocks: u32,
}

/// Looks up the size of `table` inside the snapshot transaction.
pub async fn table_size(client: &Client, table: &TableSchema) -> Result<TableSize, SnapshotError> {
    let sql_error = |source: tokio_postgres::Error| SnapshotError::Sql {
        what: format!("estimate the size of {}", table.qualified_name()),
        source: source.into(),
    };
    let row = client
        .query_one(
            "SELECT reltuples::float8, \
                    (pg_relation_size(oid) / current_setting('block_size')::int)::int8 \
             FROM pg_class WHERE oid = $1",
            &[&table.relation_id],
        )
        .await
        .map_err(sql_error)?;
    let reltuples: f64 = row.get(0);
    let blocks = u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX);
    // -1 until the first VACUUM or ANALYZE: count instead of guessing.
    let rows = if reltuples < 0.0 {
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", qualified(table)), &[])
            .await
            .map_err(sql_error)?
            .get(0);
        count as u64
    } else {
        reltuples as u64
    };
    Ok(TableSize { rows, blocks })
}

/// Splits `table` into chunks of about `chunk_rows` rows.
pub async fn plan_chunks(
    client: &Client,
    table: &TableSchema,
    size: TableSize,
    chunk_rows: u64,
) -> Result<Vec<ChunkRange>, SnapshotError> {
    let chunks = size.rows.div_ceil(chunk_rows.max(1));
    if chunks <= 1 {
        return Ok(vec![ChunkRange::All]);
    }
    if table.key.is_empty() {
        return Ok(block_ranges(size.blocks, chunks));
    }
    let sample = sample_keys(client, table, size.rows, chunks).await?;
    Ok(key_ranges(sample, chunks))
}

/// `chunks` ranges of equal block counts; the last is open-ended.
pub fn block_ranges(blocks: u32, chunks: u64) -> Vec<ChunkRange> {
    let per_chunk = (u64::from(blocks).div_ceil(chunks)).max(1) as u32;
    let mut ranges = Vec::new();
    let mut from: u32 = 0;
    loop {
        let to = from.saturating_add(per_chunk);
        if to >= blocks {
            ranges.push(ChunkRange::Blocks { from, to: None });
            return ranges;
        }
        ranges.push(ChunkRange::Blocks { from, to: Some(to) });
        from = to;
    }
}

/// Boundaries at even steps through a sorted key sample.
pub fn key_ranges(sorted_sample: Vec<Vec<String>>, chunks: u64) -> Vec<ChunkRange> {
    let step = (sorted_sample.len() as u64 / chunks).max(1) as usize;
    let mut bounds: Vec<Vec<String>> = sorted_sample.into_iter().step_by(step).skip(1).collect();
    bounds.dedup();
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut from = None;
    for bound in bounds {
        ranges.push(ChunkRange::Keys {
            from: from.take(),
            to: Some(bound.clone()),
        });
        from = Some(bound);
    }
    ranges.push(ChunkRange::Keys { from, to: None });
    ranges
}

async fn sample_keys(
    client: &Client,
    table: &TableSchema,
    rows: u64,
    chunks: u64,
) -> Result<Vec<Vec<String>>, SnapshotError> {
    let wanted = (chunks * SAMPLE_ROWS_PER_CHUNK).max(MIN_SAMPLE_ROWS);
    let percent = (100.0 * wanted as f64 / rows.max(1) as f64).min(100.0);
    let key_text: Vec<String> = table
        .key
        .iter()
        .map(|&index| format!("{}::text", quote_ident(&table.columns[index].name)))
        .collect();
    // Qualified: a bare name in ORDER BY would sort by the output column, the key's text.
    let order: Vec<String> = table
        .key
        .iter()
        .map(|&index| format!("sampled.{}", quote_ident(&table.columns[index].name)))
        .collect();
    // BERNOULLI picks rows, not pages: page samples of a table filled in key order come in
    // runs of neighbouring keys, which makes uneven chunks.
    let sql = format!(
        "SELECT {} FROM {} AS sampled TABLESAMPLE BERNOULLI ({percent}) ORDER BY {}",
        key_text.join(", "),
        qualified(table),
        order.join(", ")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|source| SnapshotError::Sql {
            what: format!("sample the keys of {}", table.qualified_name()),
            source: source.into(),
        })?;
    Ok(rows
        .iter()
        .map(|row| (0..table.key.len()).map(|i| row.get(i)).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Column, PgType, ReplicaIdentity};

    fn table(key: Vec<usize>) -> TableSchema {
        let column = |name: &str| Column {
            name: name.to_owned(),
            type_oid: 23,
            type_modifier: -1,
            pg_type: PgType::Int4,
            optional: false,
            in_identity: false,
            default: None,
        };
        TableSchema {
            relation_id: 1,
            schema: "l1".to_owned(),
            table: "it's".to_owned(),
            columns: vec![column("a"), column("b\"x"), column("c")],
            key,
            identity: ReplicaIdentity::Default,
        }
    }

    #[test]
    fn key_chunks_compare_the_key_as_a_row() {
        let range = ChunkRange::Keys {
            from: Some(vec!["1".into(), "o'k".into()]),
            to: Some(vec!["2".into(), "z".into()]),
        };
        assert_eq!(
            chunk_copy(&table(vec![0, 1]), &range),
            "COPY (SELECT \"a\", \"b\"\"x\", \"c\" FROM \"l1\".\"it's\" WHERE (\"a\", \"b\"\"x\") >= ('1', 'o''k') AND (\"a\", \"b\"\"x\") < ('2', 'z')) TO STDOUT"
        );
        assert_eq!(
            chunk_copy(&table(vec![0]), &ChunkRange::All),
            "COPY (SELECT \"a\", \"b\"\"x\", \"c\" FROM \"l1\".\"it's\") TO STDOUT"
        );
    }

    #[test]
    fn block_chunks_use_tid_ranges() {
        assert_eq!(
            block_ranges(10, 3),
            vec![
                ChunkRange::Blocks {
                    from: 0,
                    to: Some(4)
                },
                ChunkRange::Blocks {
                    from: 4,
                    to: Some(8)
                },
                ChunkRange::Blocks { from: 8, to: None },
            ]
        );
        assert_eq!(
            block_ranges(0, 3),
            vec![ChunkRange::Blocks { from: 0, to: None }]
        );
        assert!(chunk_copy(&table(vec![]), &block_ranges(10, 3)[1])
            .ends_with("WHERE ctid >= '(4,0)'::tid AND ctid < '(8,0)'::tid) TO STDOUT"));
    }

    #[test]
    fn key_ranges_cover_everything_without_overlap() {
        let sample: Vec<Vec<String>> = (0..10).map(|i| vec![i.to_string()]).collect();
        let key = |i: &str| Some(vec![i.to_owned()]);
        assert_eq!(
            key_ranges(sample, 3),
            vec![
                ChunkRange::Keys {
                    from: None,
                    to: key("3")
                },
                ChunkRange::Keys {
                    from: key("3"),
                    to: key("6")
                },
                ChunkRange::Keys {
                    from: key("6"),
                    to: key("9")
                },
                ChunkRange::Keys {
                    from: key("9"),
                    to: None
                },
            ]
        );
        assert_eq!(
            key_ranges(Vec::new(), 3),
            vec![ChunkRange::Keys {
                from: None,
                to: None
            }]
        );
    }
}
