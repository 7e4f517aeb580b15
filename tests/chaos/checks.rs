//! The end-of-run checks that do not trust the project's own code: a digest of every row on
//! both sides, the target's audit of applied changes against what the topics hold, and the
//! slot's confirmed position against what the broker held when it was read.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio_postgres::Client;

use super::workload::Committed;
use crate::support::kafka::{metadata_client, watermarks};
use crate::support::postgres::table_columns;
use crate::support::{decode_avro, read_topic};

/// Rows of one table: how many each side has, and how many differ.
#[derive(Debug, Default, Clone)]
pub struct TableDigest {
    pub source_rows: usize,
    pub target_rows: usize,
    /// Source rows (as whole-row text, with multiplicity) the target lacks.
    pub lost: usize,
    /// Target rows the source lacks.
    pub extra: usize,
    /// The columns (`name type [not null] [default]`, in order) of the source and the target
    /// when they differ.
    pub columns_differ: Option<(Vec<String>, Vec<String>)>,
}

async fn row_hashes(client: &Client, table: &str) -> BTreeMap<String, usize> {
    let mut hashes = BTreeMap::new();
    for row in client
        .query(&format!("SELECT md5(t::text) FROM {table} t"), &[])
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"))
    {
        *hashes.entry(row.get::<_, String>(0)).or_default() += 1;
    }
    hashes
}

/// Compares `table`'s columns and its rows (as multisets of the rows' text, so a keyless
/// table's duplicates count), independently of `cdc-sink verify`.
pub async fn digest(source: &Client, target: &Client, table: &str) -> TableDigest {
    let definitions = (
        table_columns(source, table).await,
        table_columns(target, table).await,
    );
    let (ours, theirs) = (
        row_hashes(source, table).await,
        row_hashes(target, table).await,
    );
    let missing = |a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>| {
        a.iter()
            .map(|(hash, &count)| count.saturating_sub(b.get(hash).copied().unwrap_or(0)))
            .sum()
    };
    TableDigest {
        source_rows: ours.values().sum(),
        target_rows: theirs.values().sum(),
        lost: missing(&ours, &theirs),
        extra: missing(&theirs, &ours),
        columns_differ: (definitions.0 != definitions.1).then_some(definitions),
    }
}

/// A change as the topic carries it.
#[derive(Debug, Clone)]
pub struct TopicChange {
    pub partition: i32,
    pub offset: i64,
    pub op: String,
    pub id: Option<i64>,
    pub wal: Option<i64>,
    pub xid: Option<i64>,
}

/// Every change record of `topic` (tombstones left out), decoded.
pub fn read_changes(bootstrap: &str, registry: &str, topic: &str) -> Vec<TopicChange> {
    let records: i64 = watermarks(&metadata_client(bootstrap), topic, Duration::from_secs(10))
        .unwrap_or_default()
        .iter()
        .map(|(_, low, high)| high - low)
        .sum();
    read_topic(bootstrap, topic, records as usize, Duration::from_secs(900))
        .into_iter()
        .filter_map(|record| {
            let value = decode_avro(registry, record.value.as_deref()?);
            let image = if value["after"].is_null() {
                &value["before"]
            } else {
                &value["after"]
            };
            Some(TopicChange {
                partition: record.partition,
                offset: record.offset,
                op: value["op"].as_str().unwrap_or_default().to_owned(),
                id: image["id"].as_i64(),
                wal: image["wal"].as_i64(),
                xid: value["source"]["txId"].as_i64(),
            })
        })
        .collect()
}

/// What the audit shows.
#[derive(Debug, Default)]
pub struct AuditFindings {
    /// Row changes the target committed.
    pub applied: usize,
    /// Applications of a row version beyond what the topic asked for: each streamed change
    /// once, and once more for each snapshot read of that version.
    pub applied_twice: usize,
    /// Snapshot reads of a version applied before (a restarted or repeated snapshot).
    pub re_read: usize,
    /// A version applied after a later one of the same row.
    pub out_of_order: usize,
    /// Changes applied to a row after its delete.
    pub after_delete: usize,
    pub examples: Vec<String>,
}

/// Checks the target's audit (`public.applied`) against the changes of the keyed tables'
/// topics (`changes` by table name).
pub async fn audit(target: &Client, changes: &HashMap<String, Vec<TopicChange>>) -> AuditFindings {
    // Per (table, id, wal): snapshot reads on the topic, and whether a streamed change has it.
    let mut asked: HashMap<(String, i64, i64), (usize, bool)> = HashMap::new();
    for (table, records) in changes {
        for change in records {
            let (Some(id), Some(wal)) = (change.id, change.wal) else {
                continue;
            };
            if change.op == "d" {
                continue;
            }
            let entry = asked.entry((table.clone(), id, wal)).or_default();
            if change.op == "r" {
                entry.0 += 1;
            } else {
                entry.1 = true;
            }
        }
    }
    let rows = target
        .query(
            "SELECT tbl, id, op, wal FROM public.applied ORDER BY seq",
            &[],
        )
        .await
        .expect("read the audit");
    let mut findings = AuditFindings {
        applied: rows.len(),
        ..AuditFindings::default()
    };
    let mut history: HashMap<(String, i64), (i64, bool)> = HashMap::new();
    let mut applications: HashMap<(String, i64, i64), usize> = HashMap::new();
    let mut deletes: HashMap<(String, i64), usize> = HashMap::new();
    for row in rows {
        let (table, id, op, wal): (String, i64, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if op == "t" {
            history.retain(|(t, _), _| *t != table);
            continue;
        }
        let key = (table.clone(), id);
        let (last_wal, deleted) = history.get(&key).copied().unwrap_or((i64::MIN, false));
        if deleted {
            findings.after_delete += 1;
            findings
                .examples
                .push(format!("{table} {id}: {op} at {wal} after its delete"));
        }
        if op == "d" {
            *deletes.entry(key.clone()).or_default() += 1;
            history.insert(key, (last_wal, true));
            continue;
        }
        if wal < last_wal {
            findings.out_of_order += 1;
            findings.examples.push(format!(
                "{table} {id}: version {wal} applied after {last_wal}"
            ));
        }
        history.insert(key, (wal.max(last_wal), false));
        *applications.entry((table, id, wal)).or_default() += 1;
    }
    for (version, count) in applications {
        let (reads, streamed) = asked.get(&version).copied().unwrap_or((0, false));
        let allowed = reads + usize::from(streamed);
        if count > allowed {
            findings.applied_twice += count - allowed;
            findings.examples.push(format!(
                "{version:?} applied {count} times; the topic has {reads} snapshot reads and {} streamed change",
                usize::from(streamed)
            ));
        }
        findings.re_read += count.min(allowed).saturating_sub(1);
    }
    for (key, count) in deletes {
        if count > 1 {
            findings.applied_twice += count - 1;
            findings
                .examples
                .push(format!("{key:?} deleted {count} times"));
        }
    }
    findings.examples.truncate(20);
    findings
}

/// The slot's confirmed position and, read right after it, each partition's high watermark.
#[derive(Debug, Clone)]
pub struct FlushSample {
    pub confirmed: u64,
    pub high: HashMap<(String, i32), i64>,
}

/// One change of a row on a topic: `(topic, partition, id, wal)`.
type RowChange = (String, i32, Option<i64>, Option<i64>);

/// Streamed transactions found committed below a confirmed position whose changes were not
/// all on the broker when that position was read; returns how many were checked, and the
/// problems. `skip` holds WAL ranges whose changes a lost slot did not stream.
pub fn confirmed_ahead_of_broker(
    committed: &[Committed],
    samples: &[FlushSample],
    changes: &HashMap<String, Vec<TopicChange>>,
    skip: &[(u64, u64)],
) -> (usize, Vec<String>) {
    // Per transaction, the first offset of each of its changes, by (topic, partition).
    let mut first: HashMap<i64, HashMap<RowChange, i64>> = HashMap::new();
    for (topic, records) in changes {
        for change in records.iter().filter(|c| c.op != "r") {
            let Some(xid) = change.xid else { continue };
            let offset = first
                .entry(xid)
                .or_default()
                .entry((topic.clone(), change.partition, change.id, change.wal))
                .or_insert(change.offset);
            *offset = (*offset).min(change.offset);
        }
    }
    let mut checked = 0;
    let mut problems = Vec::new();
    for transaction in committed {
        if skip
            .iter()
            .any(|&(from, to)| (from..=to).contains(&transaction.at_or_after))
        {
            continue;
        }
        // The first sample that confirmed past the transaction's commit is the strictest:
        // watermarks only grow.
        let Some(sample) = samples
            .iter()
            .find(|s| s.confirmed >= transaction.at_or_after)
        else {
            continue;
        };
        // A transaction without a streamed change was read by a snapshot instead (committed
        // before a slot was created); whether its rows arrived is the digest's to say.
        let Some(records) = first.get(&transaction.xid) else {
            continue;
        };
        checked += 1;
        for ((topic, partition, id, _), offset) in records {
            // Every topic answered for the sample; a partition it lacks was made later.
            let high = sample
                .high
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            if *offset >= high {
                problems.push(format!(
                    "transaction {}: row {id:?} at {topic}[{partition}]@{offset}, but the slot confirmed {} while the partition ended at {high}",
                    transaction.xid, sample.confirmed
                ));
            }
        }
    }
    problems.truncate(20);
    (checked, problems)
}
