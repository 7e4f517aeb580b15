//! Which tables and columns to capture: `capture.tables`, `exclude_tables` and `exclude_columns`
//! compiled once and matched per relation, not per row.
//!
//! Patterns are `schema.table` (or `schema.table.column`); `*` matches any run of characters
//! within one part, never across the dot. Matching is case-sensitive, against the names as
//! PostgreSQL stores them (unquoted identifiers are lower case).

use super::{CaptureSection, ConfigError};
use crate::event::types::TypeModes;
#[cfg(test)]
use crate::event::types::{
    BinaryHandling, DecimalHandling, HstoreHandling, IntervalHandling, TimePrecision,
};

/// The compiled include/exclude patterns of `[capture]`.
#[derive(Debug, Clone)]
pub struct TableFilter {
    include: Vec<[Glob; 2]>,
    exclude: Vec<[Glob; 2]>,
    exclude_columns: Vec<[Glob; 3]>,
    modes: TypeModes,
}

impl TableFilter {
    /// Compiles the patterns of `capture`; an error names the key and the malformed pattern.
    pub fn new(capture: &CaptureSection) -> Result<TableFilter, ConfigError> {
        const TABLE_FIX: &str = "write schema.table, with * matching any run of characters, \
                                 e.g. \"public.orders\" or \"l1.*\"";
        const COLUMN_FIX: &str = "write schema.table.column, with * matching any run of \
                                  characters, e.g. \"public.users.ssn\"";
        // The signal table carries pgcdc's own bookkeeping, never data events.
        let excluded: Vec<String> = capture
            .exclude_tables
            .iter()
            .chain(&capture.signal_table)
            .cloned()
            .collect();
        Ok(TableFilter {
            include: compile(&capture.tables, "capture.tables", "table", TABLE_FIX)?,
            exclude: compile(&excluded, "capture.exclude_tables", "table", TABLE_FIX)?,
            exclude_columns: compile(
                &capture.exclude_columns,
                "capture.exclude_columns",
                "column",
                COLUMN_FIX,
            )?,
            modes: TypeModes {
                decimal: capture.decimal_handling_mode,
                interval: capture.interval_handling_mode,
                money_fraction_digits: capture.money_fraction_digits,
                time_precision: capture.time_precision_mode,
                binary: capture.binary_handling_mode,
                hstore: capture.hstore_handling_mode,
            },
        })
    }

    /// Debezium's handling modes for the captured columns' values (`*_handling_mode`).
    pub fn type_modes(&self) -> TypeModes {
        self.modes
    }

    /// Whether `schema.table` is captured: some include pattern matches and no exclude pattern.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        let names = [schema, table];
        self.include.iter().any(|p| all_match(p, &names))
            && !self.exclude.iter().any(|p| all_match(p, &names))
    }

    /// Whether `column` of `schema.table` is left out of events (`exclude_columns`).
    pub fn excluded_column(&self, schema: &str, table: &str, column: &str) -> bool {
        let names = [schema, table, column];
        self.exclude_columns.iter().any(|p| all_match(p, &names))
    }

    /// Whether any include pattern has a `*` (so the captured set can change as tables appear).
    pub fn has_wildcards(&self) -> bool {
        self.include
            .iter()
            .any(|pattern| pattern.iter().any(|glob| !glob.is_literal()))
    }

    /// The schemas an include pattern captures whole (`l1.*`) and no exclude pattern touches
    /// (the signal table aside, which pgcdc publishes anyway): a publication may cover them
    /// `FOR TABLES IN SCHEMA`, so tables created there later are published from the start.
    pub fn whole_schemas(&self, signal_table: Option<&(String, String)>) -> Vec<String> {
        let mut schemas: Vec<String> = Vec::new();
        for [schema, table] in &self.include {
            if !schema.is_literal() || table.0 != "*" || schemas.contains(&schema.0) {
                continue;
            }
            let touched = self.exclude.iter().any(|[ex_schema, ex_table]| {
                let signal =
                    signal_table.is_some_and(|(s, t)| ex_schema.0 == *s && ex_table.0 == *t);
                !signal && ex_schema.matches(&schema.0)
            });
            if !touched {
                schemas.push(schema.0.clone());
            }
        }
        schemas
    }

    /// The included tables when every include pattern is literal, in configuration order,
    /// without duplicates and without excluded tables; `None` when some pattern has a `*`.
    pub fn exact_tables(&self) -> Option<Vec<(String, String)>> {
        if self.has_wildcards() {
            return None;
        }
        let mut tables: Vec<(String, String)> = Vec::with_capacity(self.include.len());
        for [schema, table] in &self.include {
            let pair = (schema.0.clone(), table.0.clone());
            if !tables.contains(&pair)
                && !self
                    .exclude
                    .iter()
                    .any(|p| all_match(p, &[&pair.0, &pair.1]))
            {
                tables.push(pair);
            }
        }
        Some(tables)
    }
}

fn compile<const N: usize>(
    patterns: &[String],
    key: &str,
    what: &str,
    fix: &str,
) -> Result<Vec<[Glob; N]>, ConfigError> {
    patterns
        .iter()
        .map(|pattern| {
            split::<N>(pattern).ok_or_else(|| {
                ConfigError::invalid(key, format!("\"{pattern}\" is not a {what} pattern: {fix}"))
            })
        })
        .collect()
}

/// `pattern` split at its dots into exactly `N` non-empty parts.
fn split<const N: usize>(pattern: &str) -> Option<[Glob; N]> {
    let parts: Vec<Glob> = pattern
        .split('.')
        .map(|part| Glob(part.to_owned()))
        .collect();
    if parts.iter().any(|glob| glob.0.is_empty()) {
        return None;
    }
    parts.try_into().ok()
}

fn all_match<const N: usize>(pattern: &[Glob; N], names: &[&str; N]) -> bool {
    pattern
        .iter()
        .zip(names)
        .all(|(glob, name)| glob.matches(name))
}

/// One part of a pattern; `*` matches any run of characters (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(String);

impl Glob {
    fn is_literal(&self) -> bool {
        !self.0.contains('*')
    }

    /// Greedy matching with backtracking to the last `*`: linear for the usual one-star
    /// patterns, never exponential. Bytewise is exact for UTF-8 because `*` is ASCII.
    fn matches(&self, text: &str) -> bool {
        let pattern = self.0.as_bytes();
        let text = text.as_bytes();
        let (mut p, mut t) = (0, 0);
        // After a `*`: the pattern index following it and the text index it was tried at.
        let mut retry: Option<(usize, usize)> = None;
        while let Some(&c) = text.get(t) {
            match pattern.get(p) {
                Some(b'*') => {
                    retry = Some((p + 1, t));
                    p += 1;
                }
                Some(&expected) if expected == c => {
                    p += 1;
                    t += 1;
                }
                _ => match retry {
                    Some((after_star, tried)) => {
                        retry = Some((after_star, tried + 1));
                        p = after_star;
                        t = tried + 1;
                    }
                    None => return false,
                },
            }
        }
        pattern
            .get(p..)
            .unwrap_or_default()
            .iter()
            .all(|&c| c == b'*')
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ConfigFile, SnapshotMode, SourceConfig};
    use super::*;

    fn capture(tables: &[&str], exclude: &[&str], columns: &[&str]) -> CaptureSection {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        CaptureSection {
            slot: "pgcdc".to_owned(),
            publication: "pgcdc".to_owned(),
            tables: owned(tables),
            exclude_tables: owned(exclude),
            exclude_columns: owned(columns),
            snapshot: SnapshotMode::Initial,
            heartbeat_interval: None,
            streaming: false,
            status_interval: Duration::from_secs(1),
            snapshot_workers: 1,
            snapshot_chunk_size: 1,
            incremental_chunk_size: 1,
            signal_table: None,
            discovery_interval: None,
            ddl: None,
            decimal_handling_mode: DecimalHandling::Precise,
            interval_handling_mode: IntervalHandling::Numeric,
            money_fraction_digits: 2,
            time_precision_mode: TimePrecision::Microseconds,
            binary_handling_mode: BinaryHandling::Bytes,
            hstore_handling_mode: HstoreHandling::Json,
        }
    }

    fn filter(tables: &[&str], exclude: &[&str], columns: &[&str]) -> TableFilter {
        TableFilter::new(&capture(tables, exclude, columns)).unwrap()
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "orders", true),
            ("orders", "orders", true),
            ("orders", "Orders", false),
            ("orders", "orders2", false),
            ("ord*", "orders", true),
            ("ord*", "or", false),
            ("*s", "orders", true),
            ("*s", "order", false),
            ("o*r*s", "orders", true),
            ("o*r*s", "ors", true),
            ("o*r*s", "oxs", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**", "x", true),
            ("t_*", "t_ü", true),
            ("*ü", "grün", false),
            ("*ün", "grün", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob(pattern.to_owned()).matches(text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn include_and_exclude() {
        let filter = filter(&["l1.*", "l2.orders"], &["l1.tmp_*"], &[]);
        assert!(filter.matches("l1", "users"));
        assert!(filter.matches("l2", "orders"));
        assert!(!filter.matches("l1", "tmp_load"));
        assert!(!filter.matches("l2", "users"));
        assert!(!filter.matches("l3", "orders"));
        assert!(!filter.matches("L1", "users"));
    }

    #[test]
    fn star_does_not_cross_the_dot() {
        let filter = filter(&["l*.t"], &[], &[]);
        assert!(filter.matches("l1", "t"));
        assert!(
            !filter.matches("l1.x", "y.t"),
            "schema names with dots match only literally"
        );
        let all = super::TableFilter::new(&capture(&["*.*"], &[], &[])).unwrap();
        assert!(all.matches("any", "table"));
    }

    #[test]
    fn excluded_columns() {
        let filter = filter(&["*.*"], &[], &["l1.users.ssn", "*.*.secret_*"]);
        assert!(filter.excluded_column("l1", "users", "ssn"));
        assert!(!filter.excluded_column("l1", "users", "name"));
        assert!(!filter.excluded_column("l2", "users", "ssn"));
        assert!(filter.excluded_column("l2", "accounts", "secret_key"));
    }

    #[test]
    fn wildcards_and_exact_tables() {
        let literal = filter(&["l1.a", "l2.b", "l1.a", "l1.c"], &["l1.c"], &[]);
        assert!(!literal.has_wildcards());
        assert_eq!(
            literal.exact_tables(),
            Some(vec![
                ("l1".to_owned(), "a".to_owned()),
                ("l2".to_owned(), "b".to_owned()),
            ])
        );
        let wild = filter(&["l1.a", "l2.*"], &[], &[]);
        assert!(wild.has_wildcards());
        assert_eq!(wild.exact_tables(), None);
        let wild_exclude_only = filter(&["l1.a"], &["*.tmp"], &[]);
        assert!(!wild_exclude_only.has_wildcards());
        assert_eq!(
            wild_exclude_only.exact_tables(),
            Some(vec![("l1".to_owned(), "a".to_owned())])
        );
    }

    #[test]
    fn malformed_patterns_name_the_key() {
        let error = |tables: &[&str], exclude: &[&str], columns: &[&str]| {
            TableFilter::new(&capture(tables, exclude, columns))
                .unwrap_err()
                .to_string()
        };
        for bad in ["orders", "a.b.c", ".orders", "public.", "*"] {
            assert_eq!(
                error(&[bad], &[], &[]),
                format!(
                    "`capture.tables`: \"{bad}\" is not a table pattern: write schema.table, \
                     with * matching any run of characters, e.g. \"public.orders\" or \"l1.*\""
                )
            );
        }
        assert!(error(&["a.b"], &["tmp"], &[])
            .starts_with("`capture.exclude_tables`: \"tmp\" is not a table pattern: "));
        assert_eq!(
            error(&["a.b"], &[], &["users.ssn"]),
            "`capture.exclude_columns`: \"users.ssn\" is not a column pattern: write \
             schema.table.column, with * matching any run of characters, e.g. \
             \"public.users.ssn\""
        );
    }

    #[test]
    fn validation_uses_the_filter() {
        let text = r#"
            [postgres]
            url = "postgresql://replicator@127.0.0.1:5432/shop"
            [capture]
            tables = ["l1.*"]
            exclude_columns = ["ssn"]
            [kafka]
            brokers = "127.0.0.1:9092"
            topic_prefix = "shop"
            format = "json"
        "#;
        let err = SourceConfig::from_toml_str(text, Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`capture.exclude_columns`: \"ssn\" is not a column pattern"),
            "{err}"
        );
    }

    #[test]
    fn whole_schemas_are_those_no_exclude_touches() {
        let signal = ("l1".to_owned(), "signals".to_owned());
        let mut section = capture(
            &["l1.*", "l2.*", "l3.orders", "l*.*", "l4.*"],
            &["l2.secret"],
            &[],
        );
        section.signal_table = Some("l1.signals".into());
        let filter = TableFilter::new(&section).unwrap();
        assert_eq!(filter.whole_schemas(Some(&signal)), ["l1", "l4"]);
        assert_eq!(filter.whole_schemas(None), ["l4"]);
        let star = TableFilter::new(&capture(&["l1.*"], &["*.tmp"], &[])).unwrap();
        assert!(star.whole_schemas(None).is_empty());
    }
}
