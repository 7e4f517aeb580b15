//! `cdc-sink verify`: compares a source table with the table the sink writes it to, by row
//! count and an order-independent content hash computed in SQL on each side, and names the
//! first keys that differ.
//!
//! Both sides print every row the same way: the output-function text of each compared column,
//! quoted with `format('%L')` (so NULL and the string `'NULL'` differ, and no value can run
//! into the next), columns in name order. Rows go into 2^n buckets by the md5 of their key's
//! text; per bucket each side returns the row count and the sum of 60 bits of every row's md5,
//! which is one scan per side and one small row per bucket in the client, whatever the order
//! of the rows. Only buckets whose sums differ are then read key by key, in key order, to name
//! the first differing keys.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// Rows per bucket the bucket count aims at, so that a differing bucket is about one page.
const ROWS_PER_BUCKET: f64 = 50_000.0;
/// At most this many buckets: the aggregate's result stays small for any table.
const MAX_BUCKETS: u32 = 1 << 16;
/// Differing keys a report names.
const MAX_REPORTED_KEYS: usize = 5;
/// Differing buckets read key by key at most: enough to name a handful of keys, and a short
/// `= ANY` list.
const MAX_INSPECTED_BUCKETS: usize = 64;
/// Keys fetched per side and page when reading differing buckets.
const PAGE_KEYS: i64 = 50_000;
/// Pages read per side at most: each one scans the whole table again, so a table that differs
/// everywhere costs a bounded number of scans and rows.
const MAX_PAGES: usize = 4;
/// `format()` takes at most 100 arguments, the format string included.
const FORMAT_MAX_VALUES: usize = 90;

/// Fixes every setting the output functions depend on, so equal values print alike on both
/// servers whatever the roles' or databases' defaults.
const BEGIN_SQL: &str = "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
    SET LOCAL TimeZone = 'UTC';
    SET LOCAL DateStyle = 'ISO, MDY';
    SET LOCAL IntervalStyle = 'postgres';
    SET LOCAL extra_float_digits = 3;
    SET LOCAL bytea_output = 'hex';
    SET LOCAL lc_monetary = 'C'";

const LOOKUP_SQL: &str = "SELECT c.oid FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname = $2";

const COLUMNS_SQL: &str = "SELECT a.attname::text, array_position(pk.indkey::int2[], a.attnum)
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = a.attrelid AND pk.indisprimary
    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped";

/// The planner's estimate: the last analyzed row density times the current size; without
/// statistics, a generous guess from the size alone (more buckets only cost a longer
/// aggregate result, too few make differing buckets expensive to read). Partitioned tables
/// add up their partitions.
const ESTIMATE_SQL: &str = "SELECT coalesce(sum(CASE
        WHEN c.relpages > 0 AND c.reltuples >= 0 THEN c.reltuples / c.relpages
            * (pg_catalog.pg_relation_size(c.oid)
               / pg_catalog.current_setting('block_size')::float8)
        ELSE pg_catalog.pg_relation_size(c.oid) / 32.0 END), 0)::float8
    FROM pg_catalog.pg_class c
    WHERE c.oid = $1 OR c.oid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass))";

/// A source table and where the sink writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePair {
    /// Schema of the source table.
    pub source_schema: String,
    /// Name of the source table.
    pub source_table: String,
    /// Schema of the target table.
    pub target_schema: String,
    /// Name of the target table.
    pub target_table: String,
}

impl TablePair {
    fn name(&self, side: Side) -> String {
        match side {
            Side::Source => format!("{}.{}", self.source_schema, self.source_table),
            Side::Target => format!("{}.{}", self.target_schema, self.target_table),
        }
    }

    fn quoted(&self, side: Side) -> String {
        match side {
            Side::Source => format!(
                "{}.{}",
                quote_ident(&self.source_schema),
                quote_ident(&self.source_table)
            ),
            Side::Target => format!(
                "{}.{}",
                quote_ident(&self.target_schema),
                quote_ident(&self.target_table)
            ),
        }
    }
}

/// Which of the two databases a query ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The database pgcdc captures from.
    Source,
    /// The database the sink writes to.
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A query of the comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The server refused a query or the connection broke.
    #[error("verify {table} on the {side}: {what} failed: {source}")]
    Query {
        /// The database the query ran on.
        side: Side,
        /// The table on that side, `schema.table`.
        table: String,
        /// What the query was for.
        what: &'static str,
        /// The query's SQL text.
        sql: String,
        /// The tokio-postgres error.
        source: crate::pg::PgError,
    },
}

/// How one key differs between the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    /// The source has the key, the target does not.
    MissingInTarget,
    /// The target has the key, the source does not.
    MissingInSource,
    /// Both have the key with different values in some compared column.
    ContentDiffers,
    /// The key is not unique on some side, and the sides hold different numbers of its rows.
    RowCountDiffers {
        /// Source rows with the key.
        source: u64,
        /// Target rows with the key.
        target: u64,
    },
}

impl fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DifferenceKind::MissingInTarget => f.write_str("missing in target"),
            DifferenceKind::MissingInSource => f.write_str("missing in source"),
            DifferenceKind::ContentDiffers => f.write_str("content differs"),
            DifferenceKind::RowCountDiffers { source, target } => {
                write!(
                    f,
                    "{} in source, {} in target",
                    rows(*source),
                    rows(*target)
                )
            }
        }
    }
}

/// A key whose rows differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDifference {
    /// The key columns' values in their text form (None for NULL), as `TableReport::key_columns`.
    pub key: Vec<Option<String>>,
    /// How the rows differ.
    pub kind: DifferenceKind,
}

/// The outcome of comparing one table pair; `Display` gives the one line `verify` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The tables compared.
    pub pair: TablePair,
    /// Rows in the source table; None when it does not exist.
    pub source_rows: Option<u64>,
    /// Rows in the target table; None when it does not exist.
    pub target_rows: Option<u64>,
    /// Source columns the target lacks (by name, sorted): not compared.
    pub source_columns_missing_in_target: Vec<String>,
    /// The columns that identify a row, in key order; empty when a table is missing.
    pub key_columns: Vec<String>,
    /// Buckets the rows were hashed into; 0 when a table is missing.
    pub buckets: u32,
    /// Buckets whose row count or content hash differ.
    pub differing_buckets: u32,
    /// The first differing keys, in (bucket, key text) order, at most five.
    pub differences: Vec<KeyDifference>,
    /// More keys differ (or may differ) than `differences` lists.
    pub more_differences: bool,
}

impl TableReport {
    /// Both tables exist and hold the same rows in every compared column.
    pub fn matches(&self) -> bool {
        self.source_rows.is_some()
            && self.source_rows == self.target_rows
            && self.differing_buckets == 0
    }

    fn write_key(&self, f: &mut fmt::Formatter<'_>, key: &[Option<String>]) -> fmt::Result {
        let values: Vec<&str> = key.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
        write!(
            f,
            "({})=({})",
            self.key_columns.join(", "),
            values.join(", ")
        )
    }
}

fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

fn side_rows(n: Option<u64>) -> String {
    n.map_or_else(|| "table missing".to_owned(), rows)
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}: ",
            self.pair.name(Side::Source),
            self.pair.name(Side::Target)
        )?;
        let columns_note = (!self.source_columns_missing_in_target.is_empty()).then(|| {
            format!(
                "source columns missing in target, not compared: {}",
                self.source_columns_missing_in_target.join(", ")
            )
        });
        if self.matches() {
            write!(f, "ok ({}", side_rows(self.source_rows))?;
            if let Some(note) = columns_note {
                write!(f, "; {note}")?;
            }
            return f.write_str(")");
        }
        write!(
            f,
            "DIFFERENT source {}, target {}",
            side_rows(self.source_rows),
            side_rows(self.target_rows)
        )?;
        if !self.differences.is_empty() {
            f.write_str("; first differing keys: ")?;
            for (i, difference) in self.differences.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                self.write_key(f, &difference.key)?;
                write!(f, " [{}]", difference.kind)?;
            }
            if self.more_differences {
                f.write_str(", ...")?;
            }
        } else if self.differing_buckets > 0 {
            write!(
                f,
                "; content differs in {} of {} buckets, no differing key found within the \
                 inspection limit",
                self.differing_buckets, self.buckets
            )?;
        }
        if let Some(note) = columns_note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// Compares `pair`'s source table (on `source`) with its target table (on `target`). Runs a
/// read-only REPEATABLE READ transaction of its own on each client, so call it outside any
/// transaction; the two must be different connections.
pub async fn verify_table(
    source: &Client,
    target: &Client,
    pair: &TablePair,
) -> Result<TableReport, VerifyError> {
    let source = Session::new(source, Side::Source, pair);
    let target = Session::new(target, Side::Target, pair);
    let outcome = compare(&source, &target, pair).await;
    // Read-only: ending with ROLLBACK loses nothing, also after an error aborted a transaction.
    let (source_end, target_end) = tokio::join!(source.end(), target.end());
    let report = outcome?;
    source_end?;
    target_end?;
    Ok(report)
}

async fn compare(
    source: &Session<'_>,
    target: &Session<'_>,
    pair: &TablePair,
) -> Result<TableReport, VerifyError> {
    let (source_info, target_info) = tokio::join!(source.begin(), target.begin());
    let (source_info, target_info) = (source_info?, target_info?);
    let (source_info, target_info) = match (source_info, target_info) {
        (Some(s), Some(t)) => (s, t),
        (source_info, target_info) => {
            let (source_rows, target_rows) = tokio::join!(
                source.count_if(source_info.is_some()),
                target.count_if(target_info.is_some())
            );
            return Ok(TableReport {
                pair: pair.clone(),
                source_rows: source_rows?,
                target_rows: target_rows?,
                source_columns_missing_in_target: Vec::new(),
                key_columns: Vec::new(),
                buckets: 0,
                differing_buckets: 0,
                differences: Vec::new(),
                more_differences: false,
            });
        }
    };
    let plan = Plan::new(&source_info, &target_info);
    let (source_buckets, target_buckets) =
        tokio::join!(source.bucket_hashes(&plan), target.bucket_hashes(&plan));
    let (source_buckets, target_buckets) = (source_buckets?, target_buckets?);
    let count = |buckets: &BTreeMap<i32, BucketHash>| buckets.values().map(|b| b.rows).sum();
    let differing: Vec<i32> = source_buckets
        .keys()
        .chain(target_buckets.keys())
        .copied()
        .collect::<BTreeSet<i32>>()
        .into_iter()
        .filter(|b| source_buckets.get(b) != target_buckets.get(b))
        .collect();
    let (differences, more_differences) = if differing.is_empty() {
        (Vec::new(), false)
    } else {
        inspect(source, target, &plan, &differing).await?
    };
    Ok(TableReport {
        pair: pair.clone(),
        source_rows: Some(count(&source_buckets)),
        target_rows: Some(count(&target_buckets)),
        source_columns_missing_in_target: plan.source_only_columns,
        key_columns: plan.key_columns,
        buckets: plan.buckets,
        differing_buckets: differing.len() as u32,
        differences,
        more_differences,
    })
}

/// Reads the first differing buckets key by key on both sides, in (bucket, key text) order,
/// until it has found one key more than a report names or has read `MAX_PAGES` pages.
async fn inspect(
    source: &Session<'_>,
    target: &Session<'_>,
    plan: &Plan,
    differing: &[i32],
) -> Result<(Vec<KeyDifference>, bool), VerifyError> {
    let inspected = &differing[..differing.len().min(MAX_INSPECTED_BUCKETS)];
    let mut found = Vec::new();
    let mut after = (-1, String::new());
    for _ in 0..MAX_PAGES {
        let (source_page, target_page) = tokio::join!(
            source.keys_page(plan, inspected, &after),
            target.keys_page(plan, inspected, &after)
        );
        let (source_page, target_page) = (source_page?, target_page?);
        // A full page may stop anywhere: only positions up to the smaller last position of
        // the full pages are known on both sides. The rest is read again with the next page.
        let bound = [&source_page, &target_page]
            .into_iter()
            .filter(|page| page.len() as i64 == PAGE_KEYS)
            .filter_map(|page| page.last().map(KeyHashes::position))
            .min()
            .map(|(bucket, key)| (bucket, key.to_owned()));
        diff_pages(&source_page, &target_page, bound.as_ref(), &mut found);
        if found.len() > MAX_REPORTED_KEYS {
            found.truncate(MAX_REPORTED_KEYS);
            return Ok((found, true));
        }
        match bound {
            Some(position) => after = position,
            None => return Ok((found, differing.len() > inspected.len())),
        }
    }
    Ok((found, true))
}

/// Merges two pages sorted by (bucket, key text) up to `bound` (inclusive; None: everything)
/// and appends each differing key to `found`, stopping once it holds more than a report names.
fn diff_pages(
    source: &[KeyHashes],
    target: &[KeyHashes],
    bound: Option<&(i32, String)>,
    found: &mut Vec<KeyDifference>,
) {
    let within = |k: &&KeyHashes| bound.is_none_or(|(b, key)| k.position() <= (*b, key.as_str()));
    let mut source = source.iter().take_while(within).peekable();
    let mut target = target.iter().take_while(within).peekable();
    while found.len() <= MAX_REPORTED_KEYS {
        let (entry, kind) = match (source.peek().copied(), target.peek().copied()) {
            (None, None) => return,
            (Some(s), None) => {
                source.next();
                (s, DifferenceKind::MissingInTarget)
            }
            (None, Some(t)) => {
                target.next();
                (t, DifferenceKind::MissingInSource)
            }
            (Some(s), Some(t)) => match s.position().cmp(&t.position()) {
                Ordering::Less => {
                    source.next();
                    (s, DifferenceKind::MissingInTarget)
                }
                Ordering::Greater => {
                    target.next();
                    (t, DifferenceKind::MissingInSource)
                }
                Ordering::Equal => {
                    source.next();
                    target.next();
                    if s.rows != t.rows {
                        let (source, target) = (s.rows, t.rows);
                        (s, DifferenceKind::RowCountDiffers { source, target })
                    } else if s.hashes != t.hashes {
                        (s, DifferenceKind::ContentDiffers)
                    } else {
                        continue;
                    }
                }
            },
        };
        found.push(KeyDifference {
            key: decode_literals(&entry.key).unwrap_or_else(|| vec![Some(entry.key.clone())]),
            kind,
        });
    }
}

/// What the comparison reads from one side's catalog.
struct TableInfo {
    /// Column names, in no particular order.
    columns: Vec<String>,
    /// Primary-key columns in key order; empty without a primary key.
    primary_key: Vec<String>,
    estimated_rows: f64,
}

/// What both sides compute, decided from both catalogs.
struct Plan {
    /// Target columns the source has too, by name.
    columns: Vec<String>,
    source_only_columns: Vec<String>,
    key_columns: Vec<String>,
    /// A power of two.
    buckets: u32,
}

impl Plan {
    fn new(source: &TableInfo, target: &TableInfo) -> Plan {
        let source_columns: BTreeSet<&String> = source.columns.iter().collect();
        let target_columns: BTreeSet<&String> = target.columns.iter().collect();
        let columns: Vec<String> = target_columns
            .intersection(&source_columns)
            .map(|c| (*c).clone())
            .collect();
        let source_only_columns = source_columns
            .difference(&target_columns)
            .map(|c| (*c).clone())
            .collect();
        // The key the sink writes by: the target's primary key, else the source's. A key
        // column that is not compared cannot identify rows on both sides.
        let key_columns = [&target.primary_key, &source.primary_key]
            .into_iter()
            .find(|key| !key.is_empty() && key.iter().all(|c| columns.contains(c)))
            .cloned()
            .unwrap_or_else(|| columns.clone());
        let estimate = source.estimated_rows.max(target.estimated_rows);
        let wanted = (estimate / ROWS_PER_BUCKET)
            .ceil()
            .clamp(1.0, MAX_BUCKETS as f64) as u32;
        Plan {
            columns,
            source_only_columns,
            key_columns,
            buckets: wanted.next_power_of_two(),
        }
    }

    /// `(bucket, key text, row md5)` of every row of `table`. The key's md5 picks the bucket
    /// because it is the same on every server (unlike `hashtext`, whose result depends on the
    /// CPU's byte order and is not promised across major versions).
    fn rows_sql(&self, table: &str) -> String {
        format!(
            "SELECT ('x' || substr(md5(k), 1, 8))::bit(32)::int & $1 AS b, k, h \
             FROM (SELECT ({key}) COLLATE \"C\" AS k, md5({row}) AS h FROM {table} OFFSET 0) r",
            key = encode_columns(&self.key_columns),
            row = encode_columns(&self.columns),
        )
    }

    /// Per bucket: rows and the sum of the first 60 bits of each row's md5 (a numeric sum:
    /// no overflow, and the same whatever the row order).
    fn buckets_sql(&self, table: &str) -> String {
        format!(
            "SELECT b, count(*), sum(('x' || substr(h, 1, 15))::bit(60)::bigint)::text \
             FROM ({rows}) s GROUP BY b",
            rows = self.rows_sql(table)
        )
    }

    /// One page of keys in the given buckets after a (bucket, key text) position, each with its
    /// rows' hashes (several for a key that is not unique on this side).
    fn keys_sql(&self, table: &str) -> String {
        format!(
            "SELECT b, k, count(*), string_agg(h, ',' ORDER BY h) FROM ({rows}) s \
             WHERE b = ANY($2) AND (b, k) > ($3, $4::text COLLATE \"C\") \
             GROUP BY b, k ORDER BY b, k LIMIT $5",
            rows = self.rows_sql(table)
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
struct BucketHash {
    rows: u64,
    sum: String,
}

/// One key of a differing bucket.
struct KeyHashes {
    bucket: i32,
    /// The key columns' values encoded as `format('%L,…')` prints them.
    key: String,
    /// Rows with this key.
    rows: u64,
    /// The sorted md5s of the key's rows, comma separated.
    hashes: String,
}

impl KeyHashes {
    /// Where the key sorts: as the server sorts `ORDER BY b, k COLLATE "C"` (byte order).
    fn position(&self) -> (i32, &str) {
        (self.bucket, &self.key)
    }
}

/// One side's connection during a comparison, with what its errors name.
struct Session<'a> {
    client: &'a Client,
    side: Side,
    /// `schema.table` for messages.
    name: String,
    /// `"schema"."table"` for SQL.
    quoted: String,
    schema: &'a str,
    table: &'a str,
}

impl<'a> Session<'a> {
    fn new(client: &'a Client, side: Side, pair: &'a TablePair) -> Session<'a> {
        let (schema, table) = match side {
            Side::Source => (&pair.source_schema, &pair.source_table),
            Side::Target => (&pair.target_schema, &pair.target_table),
        };
        Session {
            client,
            side,
            name: pair.name(side),
            quoted: pair.quoted(side),
            schema,
            table,
        }
    }

    fn error(&self, what: &'static str, sql: &str, source: tokio_postgres::Error) -> VerifyError {
        VerifyError::Query {
            side: self.side,
            table: self.name.clone(),
            what,
            sql: sql.to_owned(),
            source: source.into(),
        }
    }

    async fn query(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, VerifyError> {
        self.client
            .query(sql, params)
            .await
            .map_err(|e| self.error(what, sql, e))
    }

    async fn batch(&self, what: &'static str, sql: &str) -> Result<(), VerifyError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.error(what, sql, e))
    }

    /// Starts the snapshot and reads the table's columns, key and size; None if it does not
    /// exist.
    async fn begin(&self) -> Result<Option<TableInfo>, VerifyError> {
        self.batch("start a read-only snapshot", BEGIN_SQL).await?;
        let found = self
            .query(
                "look up the table",
                LOOKUP_SQL,
                &[&self.schema, &self.table],
            )
            .await?;
        let Some(oid) = found.first().map(|row| row.get::<_, u32>(0)) else {
            return Ok(None);
        };
        let rows = self.query("read the columns", COLUMNS_SQL, &[&oid]).await?;
        let mut key: Vec<(i32, String)> = Vec::new();
        let mut columns = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            if let Some(position) = row.get::<_, Option<i32>>(1) {
                key.push((position, name.clone()));
            }
            columns.push(name);
        }
        key.sort();
        let estimate = self
            .query("estimate the row count", ESTIMATE_SQL, &[&oid])
            .await?;
        Ok(Some(TableInfo {
            columns,
            primary_key: key.into_iter().map(|(_, name)| name).collect(),
            estimated_rows: estimate[0].get(0),
        }))
    }

    /// The row count when the table exists (the other side's table is missing).
    async fn count_if(&self, exists: bool) -> Result<Option<u64>, VerifyError> {
        if !exists {
            return Ok(None);
        }
        let sql = format!("SELECT count(*) FROM {}", self.quoted);
        let rows = self.query("count the rows", &sql, &[]).await?;
        Ok(Some(rows[0].get::<_, i64>(0) as u64))
    }

    async fn bucket_hashes(&self, plan: &Plan) -> Result<BTreeMap<i32, BucketHash>, VerifyError> {
        let mask = (plan.buckets - 1) as i32;
        let rows = self
            .query(
                "hash the rows by key bucket",
                &plan.buckets_sql(&self.quoted),
                &[&mask],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let hash = BucketHash {
                    rows: row.get::<_, i64>(1) as u64,
                    sum: row.get(2),
                };
                (row.get(0), hash)
            })
            .collect())
    }

    async fn keys_page(
        &self,
        plan: &Plan,
        buckets: &[i32],
        after: &(i32, String),
    ) -> Result<Vec<KeyHashes>, VerifyError> {
        let mask = (plan.buckets - 1) as i32;
        let rows = self
            .query(
                "read the keys of differing buckets",
                &plan.keys_sql(&self.quoted),
                &[&mask, &buckets, &after.0, &after.1, &PAGE_KEYS],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| KeyHashes {
                bucket: row.get(0),
                key: row.get(1),
                rows: row.get::<_, i64>(2) as u64,
                hashes: row.get(3),
            })
            .collect())
    }

    async fn end(&self) -> Result<(), VerifyError> {
        self.batch("end the snapshot", "ROLLBACK").await
    }
}

/// `"name"`, with inner double quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL expression that prints the given columns of a row as one text: each column's
/// output-function text as `format('%L')` quotes it (`NULL` unquoted), comma separated.
/// The output function, unlike a cast to text, prints `true` as `t`, an inet without its
/// `/32` and a char(n) with its padding, as pgoutput (hence the sink) sees them.
fn encode_columns(columns: &[String]) -> String {
    if columns.is_empty() {
        return "''".to_owned();
    }
    columns
        .chunks(FORMAT_MAX_VALUES)
        .map(|chunk| {
            let idents: Vec<String> = chunk.iter().map(|c| quote_ident(c)).collect();
            format!(
                "format('{}', {})",
                vec!["%L"; chunk.len()].join(","),
                idents.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join(" || ',' || ")
}

/// Decodes what [`encode_columns`] prints back into values; None if `text` is not such output.
fn decode_literals(text: &str) -> Option<Vec<Option<String>>> {
    let mut values = Vec::new();
    if text.is_empty() {
        return Some(values);
    }
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix("NULL") {
            values.push(None);
            rest = after;
        } else {
            // quote_literal doubles quotes, and backslashes too when it adds the E prefix.
            let (escaped, body) = match rest.strip_prefix("E'") {
                Some(body) => (true, body),
                None => (false, rest.strip_prefix('\'')?),
            };
            let mut value = String::new();
            let mut chars = body.char_indices().peekable();
            loop {
                let (i, c) = chars.next()?;
                match c {
                    '\'' if chars.peek().is_some_and(|&(_, next)| next == '\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    '\'' => {
                        rest = &body[i + 1..];
                        break;
                    }
                    '\\' if escaped => value.push(chars.next()?.1),
                    c => value.push(c),
                }
            }
            values.push(Some(value));
        }
        if rest.is_empty() {
            return Some(values);
        }
        rest = rest.strip_prefix(',')?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b c"), "\"a\"\"b c\"");
        assert_eq!(
            encode_columns(&names(&["id", "Name"])),
            "format('%L,%L', \"id\", \"Name\")"
        );
    }

    #[test]
    fn wide_rows_are_split_into_several_format_calls() {
        let columns: Vec<String> = (0..95).map(|i| format!("c{i}")).collect();
        let sql = encode_columns(&columns);
        assert_eq!(sql.matches("format(").count(), 2);
        assert!(sql.contains("\"c89\") || ',' || format('%L,%L,%L,%L,%L', \"c90\""));
    }

    #[test]
    fn literals_decode() {
        assert_eq!(
            decode_literals("'17',NULL,E'a\\\\b''c','x,y','NULL'"),
            Some(vec![
                Some("17".to_owned()),
                None,
                Some("a\\b'c".to_owned()),
                Some("x,y".to_owned()),
                Some("NULL".to_owned()),
            ])
        );
        assert_eq!(decode_literals(""), Some(vec![]));
        assert_eq!(decode_literals("''"), Some(vec![Some(String::new())]));
        assert_eq!(decode_literals("'unterminated"), None);
        assert_eq!(decode_literals("'a'x"), None);
    }

    fn page(entries: &[(i32, &str, &str)]) -> Vec<KeyHashes> {
        entries
            .iter()
            .map(|&(bucket, key, hashes)| KeyHashes {
                bucket,
                key: key.to_owned(),
                rows: hashes.split(',').count() as u64,
                hashes: hashes.to_owned(),
            })
            .collect()
    }

    #[test]
    fn pages_merge_up_to_the_bound() {
        let source = page(&[
            (0, "'1'", "a"),
            (0, "'2'", "b"),
            (1, "'3'", "c"),
            (1, "'5'", "e,e"),
            (1, "'9'", "z"),
        ]);
        let target = page(&[
            (0, "'2'", "B"),
            (1, "'3'", "c"),
            (1, "'4'", "d"),
            (1, "'5'", "e"),
        ]);
        let mut found = Vec::new();
        diff_pages(&source, &target, Some(&(1, "'5'".to_owned())), &mut found);
        let key = |v: &str| vec![Some(v.to_owned())];
        assert_eq!(
            found,
            vec![
                KeyDifference {
                    key: key("1"),
                    kind: DifferenceKind::MissingInTarget
                },
                KeyDifference {
                    key: key("2"),
                    kind: DifferenceKind::ContentDiffers
                },
                KeyDifference {
                    key: key("4"),
                    kind: DifferenceKind::MissingInSource
                },
                KeyDifference {
                    key: key("5"),
                    kind: DifferenceKind::RowCountDiffers {
                        source: 2,
                        target: 1
                    }
                },
            ]
        );
    }

    #[test]
    fn bucket_count_follows_the_larger_estimate() {
        let info = |estimated_rows: f64| TableInfo {
            columns: names(&["id"]),
            primary_key: names(&["id"]),
            estimated_rows,
        };
        assert_eq!(Plan::new(&info(0.0), &info(-1.0)).buckets, 1);
        assert_eq!(Plan::new(&info(120_000.0), &info(10.0)).buckets, 4);
        assert_eq!(Plan::new(&info(1e12), &info(0.0)).buckets, MAX_BUCKETS);
    }
}
