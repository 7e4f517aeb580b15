//! Signals (Debezium's signalling table): rows inserted into `capture.signal_table` with
//! columns `id`, `type` and `data`. `execute-snapshot` asks for an incremental snapshot:
//! `{"data-collections": ["schema.table", …], "type": "incremental",
//!   "additional-conditions": [{"data-collection": "schema.table", "filter": "id > 10"}]}`.
//! pgcdc's own requests and window watermarks are transactional logical messages instead.

use serde::Deserialize;

/// The SQL that creates a signal table in Debezium's shape.
pub fn create_table_sql(quoted_table: &str) -> String {
    format!(
        "CREATE TABLE {quoted_table} (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048))"
    )
}

/// The signal type that requests an incremental snapshot.
pub const EXECUTE_SNAPSHOT: &str = "execute-snapshot";
/// The content of a watermark message (see `source::messages`), which opens or closes an
/// incremental snapshot's window: it sits in the WAL in commit order with the changes, as
/// Debezium's signal-table watermarks do, without a table to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watermark {
    /// The low watermark of a window.
    Open(String),
    /// The high watermark of a window.
    Close(String),
}

impl Watermark {
    /// The message content.
    pub fn content(&self) -> String {
        match self {
            Watermark::Open(window) => format!("open:{window}"),
            Watermark::Close(window) => format!("close:{window}"),
        }
    }

    /// Reads a message content; `None` when it is not a watermark.
    pub fn parse(content: &[u8]) -> Option<Watermark> {
        let text = std::str::from_utf8(content).ok()?;
        if let Some(window) = text.strip_prefix("open:") {
            Some(Watermark::Open(window.to_owned()))
        } else {
            text.strip_prefix("close:")
                .map(|window| Watermark::Close(window.to_owned()))
        }
    }
}

/// One table an `execute-snapshot` signal names, with its optional row filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// `schema.table`.
    pub table: String,
    /// A SQL condition on the table's rows.
    pub filter: Option<String>,
}

#[derive(Deserialize)]
struct ExecuteSnapshot {
    #[serde(rename = "data-collections")]
    data_collections: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, rename = "additional-conditions")]
    additional_conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "data-collection")]
    data_collection: String,
    filter: String,
}

/// Parses an `execute-snapshot` signal's data; the error says what is wrong with it.
pub fn parse_execute_snapshot(data: &str) -> Result<Vec<SnapshotRequest>, String> {
    let signal: ExecuteSnapshot = serde_json::from_str(data).map_err(|e| {
        format!("execute-snapshot data is not {{\"data-collections\": [\"schema.table\"], \"type\": \"incremental\"}}: {e}")
    })?;
    if let Some(kind) = signal.kind.as_deref() {
        if !kind.eq_ignore_ascii_case("incremental") {
            return Err(format!(
                "execute-snapshot type {kind:?} is not supported: use \"incremental\""
            ));
        }
    }
    Ok(signal
        .data_collections
        .into_iter()
        .map(|table| SnapshotRequest {
            filter: signal
                .additional_conditions
                .iter()
                .find(|c| c.data_collection == table)
                .map(|c| c.filter.clone()),
            table,
        })
        .collect())
}

/// The data of an `execute-snapshot` signal for `tables`.
pub fn execute_snapshot_data(tables: &[String]) -> String {
    serde_json::json!({ "data-collections": tables, "type": "incremental" }).to_string()
}

/// The data of an `execute-snapshot` signal for the rows of `table` that `filter` selects.
pub fn filtered_snapshot_data(table: &str, filter: &str) -> String {
    serde_json::json!({
        "data-collections": [table],
        "type": "incremental",
        "additional-conditions": [{ "data-collection": table, "filter": filter }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debezium_signals_parse() {
        let requests = parse_execute_snapshot(
            r#"{"data-collections": ["l1.a", "l1.b"], "type": "INCREMENTAL",
                "additional-conditions": [{"data-collection": "l1.b", "filter": "id > 10"}]}"#,
        )
        .unwrap();
        assert_eq!(
            requests,
            vec![
                SnapshotRequest {
                    table: "l1.a".into(),
                    filter: None
                },
                SnapshotRequest {
                    table: "l1.b".into(),
                    filter: Some("id > 10".into())
                },
            ]
        );
        assert_eq!(
            parse_execute_snapshot(&filtered_snapshot_data("l1.p", "tableoid IN (7)")).unwrap(),
            vec![SnapshotRequest {
                table: "l1.p".into(),
                filter: Some("tableoid IN (7)".into())
            }]
        );
        assert_eq!(
            parse_execute_snapshot(&execute_snapshot_data(&["l1.c".to_owned()])).unwrap(),
            vec![SnapshotRequest {
                table: "l1.c".into(),
                filter: None
            }]
        );
        assert!(
            parse_execute_snapshot(r#"{"data-collections": ["l1.a"], "type": "blocking"}"#)
                .unwrap_err()
                .contains("use \"incremental\"")
        );
        assert!(parse_execute_snapshot("{}").is_err());
    }

    #[test]
    fn watermarks_round_trip() {
        for watermark in [
            Watermark::Open("w-1".into()),
            Watermark::Close("w:2".into()),
        ] {
            assert_eq!(
                Watermark::parse(watermark.content().as_bytes()),
                Some(watermark)
            );
        }
        assert_eq!(Watermark::parse(b"other"), None);
        assert_eq!(Watermark::parse(&[0xff]), None);
    }
}
