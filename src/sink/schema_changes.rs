//! Schema changes for the sink: which `<prefix>.schema_changes` topics belong to the topics it
//! applies, how their records read, and when a table's DROP may be applied.
//!
//! cdc-source publishes a table's DROP (the table was dropped, renamed or moved to another
//! schema) only after the broker acknowledged every record of that table it
//! published before. So when the sink reads the DROP, each partition of the table's topic
//! already holds everything that precedes it, and the DROP is applied once each partition is
//! applied up to the high watermark it had then, or up to the first record written after the
//! drop (of a table created again under the name, say), whichever comes first. Records written
//! after the drop wait for it. Applying it removes the table from `pgcdc.sink_tables` (so
//! `verify` stops comparing it), drops the target table with `apply.drop_tables`, and stores
//! the schema-change record's offset, all in one target transaction.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::change::Position;
use super::offsets::PartitionProgress;
use crate::encode::decode::{source_position, DecodeError};
use crate::encode::registry::{RegistryClient, RegistryError};
use crate::encode::table_topic;
use crate::event::{ColumnDescription, TableChangeKind, TableDescription};
use crate::kafka::ConsumedRecord;

/// The suffix of the schema-change topics' names.
const TOPIC_SUFFIX: &str = ".schema_changes";
/// The value schema's name ends with this (`io.debezium.connector.<connector>.…`).
const VALUE_NAME_SUFFIX: &str = ".SchemaChangeValue";

/// The schema-change topics that may go with `topics`: `<prefix>.schema_changes` for every
/// prefix an entry can start with, up to its first `*` (`shop.l1.*` and `shop.l1.orders` give
/// `shop` and `shop.l1`). A pattern that starts with `*` names no prefix.
pub fn schema_change_topics(topics: &[String]) -> Vec<String> {
    let mut prefixes: Vec<&str> = Vec::new();
    for topic in topics {
        let literal = topic.split('*').next().unwrap_or_default();
        for (index, _) in literal.match_indices('.') {
            let prefix = &literal[..index];
            if !prefix.is_empty() && !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
    }
    prefixes
        .into_iter()
        .map(|prefix| format!("{prefix}{TOPIC_SUFFIX}"))
        .collect()
}

/// Whether records of `topic` may be schema changes.
pub fn is_schema_change_topic(topic: &str) -> bool {
    topic.ends_with(TOPIC_SUFFIX)
}

/// One table change a schema-change record announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// The source's `topic_prefix` (`source.name`).
    pub prefix: String,
    /// The table's schema.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// What happened to it.
    pub kind: TableChangeKind,
    /// The change's position in the source stream.
    pub position: Position,
    /// The statement, when the source captured it.
    pub ddl: Option<String>,
    /// The table's definition after the change, when the source captured it.
    pub description: Option<TableDescription>,
    /// Its definition before (old names after a rename), when the source knew it.
    pub previous: Option<TableDescription>,
}

impl TableChange {
    /// The table's data topic.
    pub fn topic(&self) -> String {
        table_topic(&self.prefix, &self.schema, &self.table)
    }

    /// The data topic the table had before the change: another one after a rename.
    pub fn previous_topic(&self) -> String {
        match &self.previous {
            Some(previous) => table_topic(&self.prefix, &previous.schema, &previous.table),
            None => self.topic(),
        }
    }
}

/// Reads schema-change records, Avro (schemas by id from the registry, cached) or JSON.
pub struct SchemaChangeReader {
    registry: Option<Arc<RegistryClient>>,
    /// Parsed value schemas by id; `None` for a schema that is not a schema-change value.
    schemas: HashMap<u32, Option<apache_avro::Schema>>,
}

impl SchemaChangeReader {
    /// A reader fetching Avro schemas from `registry`.
    pub fn new(registry: Option<Arc<RegistryClient>>) -> SchemaChangeReader {
        SchemaChangeReader {
            registry,
            schemas: HashMap::new(),
        }
    }

    /// The table changes a record's value announces; `None` when it is not a schema change
    /// event (a table named `schema_changes` has such a topic name too).
    pub async fn read(&mut self, value: &[u8]) -> Result<Option<Vec<TableChange>>, DecodeError> {
        let payload = match value {
            [0, a, b, c, d, datum @ ..] => {
                let id = u32::from_be_bytes([*a, *b, *c, *d]);
                let Some(schema) = self.avro_schema(id).await? else {
                    return Ok(None);
                };
                let decoded = apache_avro::from_avro_datum(schema, &mut &datum[..], None)
                    .map_err(|e| malformed(e.to_string()))?;
                Json::try_from(decoded).map_err(|e| malformed(e.to_string()))?
            }
            _ => {
                let envelope: Json =
                    serde_json::from_slice(value).map_err(|e| malformed(e.to_string()))?;
                let named = envelope["schema"]["name"]
                    .as_str()
                    .is_some_and(|name| name.ends_with(VALUE_NAME_SUFFIX));
                if !named {
                    return Ok(None);
                }
                envelope["payload"].clone()
            }
        };
        table_changes(&payload).map(Some)
    }

    async fn avro_schema(&mut self, id: u32) -> Result<Option<&apache_avro::Schema>, DecodeError> {
        if !self.schemas.contains_key(&id) {
            let registry = self.registry.as_deref().ok_or(DecodeError::NoRegistry)?;
            let text = registry
                .schema_by_id(id)
                .await
                .map_err(|source| match source {
                    RegistryError::Status { status: 404, .. } => {
                        DecodeError::UnknownSchema { part: "value", id }
                    }
                    source => DecodeError::Registry {
                        part: "value",
                        id,
                        source,
                    },
                })?;
            let parsed = apache_avro::Schema::parse_str(&text)
                .ok()
                .filter(|schema| match schema {
                    apache_avro::Schema::Record(record) => {
                        record.name.name == VALUE_NAME_SUFFIX[1..]
                    }
                    _ => false,
                });
            self.schemas.insert(id, parsed);
        }
        Ok(self.schemas.get(&id).and_then(Option::as_ref))
    }
}

fn malformed(detail: String) -> DecodeError {
    DecodeError::Malformed {
        part: "schema change",
        detail,
    }
}

/// The table changes of a schema change event's payload.
fn table_changes(payload: &Json) -> Result<Vec<TableChange>, DecodeError> {
    let source = &payload["source"];
    let prefix = source["name"]
        .as_str()
        .ok_or_else(|| malformed("no source.name".into()))?;
    let position = source_position(
        source["sequence"].as_str(),
        source["lsn"].as_i64(),
        payload["transactionId"].as_str(),
    )?;
    let changes = payload["tableChanges"]
        .as_array()
        .ok_or_else(|| malformed("no tableChanges array".into()))?;
    changes
        .iter()
        .map(|change| {
            let kind = change["type"]
                .as_str()
                .and_then(TableChangeKind::parse)
                .ok_or_else(|| malformed(format!("tableChanges type {}", change["type"])))?;
            let id = change["id"].as_str().unwrap_or_default();
            let (schema, table) = table_id(id).ok_or_else(|| {
                malformed(format!(
                    "tableChanges id {id:?} is not \"schema\".\"table\""
                ))
            })?;
            let description = table_description(&change["table"], &schema, &table)?;
            let previous = match change["previousId"].as_str().and_then(table_id) {
                Some((old_schema, old_table)) => {
                    table_description(&change["previousTable"], &old_schema, &old_table)?.or_else(
                        || {
                            Some(TableDescription {
                                schema: old_schema,
                                table: old_table,
                                ..Default::default()
                            })
                        },
                    )
                }
                None => table_description(&change["previousTable"], &schema, &table)?,
            };
            Ok(TableChange {
                prefix: prefix.to_owned(),
                schema,
                table,
                kind,
                position,
                ddl: payload["ddl"].as_str().map(str::to_owned),
                description,
                previous,
            })
        })
        .collect()
}

/// A schema change event's `table` (Debezium's `Table`), `None` when null.
fn table_description(
    table: &Json,
    schema: &str,
    name: &str,
) -> Result<Option<TableDescription>, DecodeError> {
    if table.is_null() {
        return Ok(None);
    }
    let columns = table["columns"]
        .as_array()
        .ok_or_else(|| malformed("a table description without columns".into()))?;
    let text = |value: &Json| value.as_str().map(str::to_owned);
    let int = |value: &Json| value.as_i64().and_then(|v| i32::try_from(v).ok());
    let columns = columns
        .iter()
        .map(|column| {
            Ok(ColumnDescription {
                name: text(&column["name"])
                    .ok_or_else(|| malformed("a column without a name".into()))?,
                position: int(&column["position"])
                    .ok_or_else(|| malformed("a column without a position".into()))?,
                type_name: text(&column["typeName"]).unwrap_or_default(),
                type_expression: text(&column["typeExpression"])
                    .or_else(|| text(&column["typeName"]))
                    .ok_or_else(|| malformed("a column without a type".into()))?,
                native_type: column["nativeType"]
                    .as_i64()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or_default(),
                jdbc_type: int(&column["jdbcType"]).unwrap_or_default(),
                length: int(&column["length"]),
                scale: int(&column["scale"]),
                optional: column["optional"].as_bool().unwrap_or(true),
                auto_incremented: column["autoIncremented"].as_bool().unwrap_or(false),
                generated: column["generated"].as_bool().unwrap_or(false),
                default_expression: text(&column["defaultValueExpression"]),
                enum_values: column["enumValues"].as_array().map(|labels| {
                    labels
                        .iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                }),
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let primary_key = table["primaryKeyColumnNames"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(TableDescription {
        schema: schema.to_owned(),
        table: name.to_owned(),
        columns,
        primary_key,
    }))
}

/// `"schema"."table"` (Debezium's quoting, `""` inside a name) → its two names.
fn table_id(id: &str) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut rest = id;
    while !rest.is_empty() {
        let body = rest.strip_prefix('"')?;
        let mut name = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            let (index, c) = chars.next()?;
            if c != '"' {
                name.push(c);
            } else if body[index + 1..].starts_with('"') {
                name.push('"');
                chars.next();
            } else {
                break index + 1;
            }
        };
        names.push(name);
        rest = &body[end..];
        if let Some(next) = rest.strip_prefix('.') {
            rest = next;
        } else if !rest.is_empty() {
            return None;
        }
    }
    let table = names.pop()?;
    let schema = names.pop()?;
    Some((schema, table))
}

/// A topic partition.
type Partition = (String, i32);

/// A schema-change record read but not applied yet: an ALTER or DROP waits for the records
/// of its table that precede it, and records written after any change wait for it.
#[derive(Debug)]
pub struct PendingChange {
    /// The schema-change record.
    pub record: ConsumedRecord,
    /// What it says.
    pub changes: Vec<TableChange>,
    /// The topics whose records before the change must be applied first (of the tables it
    /// alters or drops that this sink applies; after a rename, the old name's).
    pub waits_for: Vec<String>,
    /// The topics whose records after the change wait for it.
    pub blocks: Vec<String>,
    /// Each partition of `waits_for` and the offset it must be applied up to (its high
    /// watermark when first looked at), and its low watermark; `None` until looked at.
    pub watermarks: Option<HashMap<Partition, (i64, i64)>>,
    /// Partitions where a record written after the change was met, and its offset.
    pub met_after: HashMap<Partition, i64>,
}

impl PendingChange {
    /// A pending record announcing `changes`; `applies` tells the data topics this sink
    /// applies.
    pub fn new(
        record: ConsumedRecord,
        changes: Vec<TableChange>,
        applies: impl Fn(&str) -> bool,
    ) -> PendingChange {
        let mut waits_for = Vec::new();
        let mut blocks = Vec::new();
        for change in &changes {
            let (topic, previous) = (change.topic(), change.previous_topic());
            if !applies(&topic) && !applies(&previous) {
                continue;
            }
            if change.kind != TableChangeKind::Create && !waits_for.contains(&previous) {
                waits_for.push(previous.clone());
            }
            for topic in [topic, previous] {
                if !blocks.contains(&topic) {
                    blocks.push(topic);
                }
            }
        }
        PendingChange {
            record,
            changes,
            waits_for,
            blocks,
            watermarks: None,
            met_after: HashMap::new(),
        }
    }

    /// Where the record's first change sits in the source stream (none: first).
    pub fn position(&self) -> Position {
        self.changes
            .iter()
            .map(|change| change.position)
            .min()
            .unwrap_or_default()
    }

    /// Where the record's last change sits in the source stream (none: first).
    pub fn last_position(&self) -> Position {
        self.changes
            .iter()
            .map(|change| change.position)
            .max()
            .unwrap_or_default()
    }

    /// Whether a data record at `position` on `topic` was written after this change.
    pub fn precedes(&self, topic: &str, position: Position) -> bool {
        self.blocks.iter().any(|t| t == topic)
            && self.changes.iter().any(|change| position > change.position)
    }

    /// Whether every partition of the topics it waits for is applied far enough, given the
    /// progress stored for each (absent before any was applied).
    pub fn caught_up(&self, stored: &HashMap<Partition, PartitionProgress>) -> bool {
        let Some(watermarks) = &self.watermarks else {
            return self.waits_for.is_empty();
        };
        watermarks
            .iter()
            .all(|(partition, &marks)| self.shortfall(partition, marks, stored).is_none())
    }

    /// The partitions it still waits for, each with the next offset to apply there and the
    /// offset it must reach (sorted; none before the watermarks were looked at).
    pub fn behind(&self, stored: &HashMap<Partition, PartitionProgress>) -> Vec<Behind> {
        let mut behind: Vec<Behind> = self
            .watermarks
            .iter()
            .flatten()
            .filter_map(|(partition, &marks)| {
                let (next, needed) = self.shortfall(partition, marks, stored)?;
                Some(Behind {
                    partition: partition.clone(),
                    next,
                    needed,
                })
            })
            .collect();
        behind.sort_by(|a, b| a.partition.cmp(&b.partition));
        behind
    }

    /// Where `partition` (its watermarks `(low, high)`) stands and the offset it must reach,
    /// when it is not there yet: its high watermark, or sooner the record met after the change.
    fn shortfall(
        &self,
        partition: &Partition,
        (low, high): (i64, i64),
        stored: &HashMap<Partition, PartitionProgress>,
    ) -> Option<(i64, i64)> {
        let next = stored.get(partition).map_or(low, |p| p.next_offset);
        let needed = self
            .met_after
            .get(partition)
            .map_or(high, |&at| at.min(high));
        (next < needed).then_some((next, needed))
    }
}

/// A partition a schema change waits for: the next offset the sink will apply there, and the
/// offset it must reach first.
#[derive(Debug, PartialEq, Eq)]
pub struct Behind {
    /// The partition.
    pub partition: Partition,
    /// The next offset to apply.
    pub next: i64,
    /// The offset the change waits for.
    pub needed: i64,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (topic, partition) = &self.partition;
        write!(
            f,
            "{topic}[{partition}] at {} of {}",
            self.next, self.needed
        )
    }
}

/// Marks each of `read` (in offset order per partition) that only repeats changes its partition
/// brought before it, `before` telling where a partition stood before this read (applied or
/// queued): a source restarted before it confirmed them publishes them again. Such a copy
/// waits for no record and holds none back. It is queued after the originals it repeats (see
/// [`in_source_order`]), so that by its turn they are applied and applying it only stores its
/// offset; holding rows back for it instead would hold a row written between two changes for
/// the copy of the first while the second, queued ahead of the copy, waits for that row.
pub fn mark_replays(read: &mut [PendingChange], before: impl Fn(&Partition) -> Position) {
    let mut reached: HashMap<Partition, Position> = HashMap::new();
    for pending in read
        .iter_mut()
        .filter(|pending| !pending.changes.is_empty())
    {
        let partition = (pending.record.topic.clone(), pending.record.partition);
        let high = reached
            .entry(partition)
            .or_insert_with_key(|partition| before(partition));
        let last = pending.last_position();
        if last <= *high {
            pending.waits_for.clear();
            pending.blocks.clear();
        }
        *high = (*high).max(last);
    }
}

/// Records read from the schema-change topics in the order their changes happened: by source
/// position across partitions, but never ahead of an earlier record of their own partition. A
/// source restarted after publishing a change publishes it again with what followed it; by its
/// own position such a copy would sort before the later originals, and applying it (storing
/// the offset after it) would make those originals look applied. Each record is ordered by the
/// highest position its partition reached up to it (`read` is in offset order per partition).
pub fn in_source_order<T>(read: Vec<T>, origin: impl Fn(&T) -> (Partition, Position)) -> Vec<T> {
    let mut reached: HashMap<Partition, Position> = HashMap::new();
    let mut ordered: Vec<(Position, T)> = read
        .into_iter()
        .map(|item| {
            let (partition, position) = origin(&item);
            let high = reached.entry(partition).or_default();
            *high = (*high).max(position);
            (*high, item)
        })
        .collect();
    ordered.sort_by_key(|(at, _)| *at);
    ordered.into_iter().map(|(_, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_republished_change_stays_behind_the_later_originals_of_its_partition() {
        let at = |lsn| Position {
            commit_lsn: lsn,
            lsn,
            order: 0,
        };
        let (people, extra): (Partition, Partition) = (
            ("p.schema_changes".into(), 0),
            ("p.schema_changes".into(), 1),
        );
        // Partition 0: SET (12), DROP (13), then a restarted source's SET (12) and DROP (13)
        // again; partition 1: a change at 15 and one at 11.
        let read = vec![
            (people.clone(), at(12), "set"),
            (extra.clone(), at(11), "other"),
            (people.clone(), at(13), "drop"),
            (people.clone(), at(12), "set again"),
            (extra.clone(), at(15), "create"),
            (people.clone(), at(13), "drop again"),
        ];
        let ordered = in_source_order(read, |(p, at, _)| (p.clone(), *at));
        let names: Vec<&str> = ordered.iter().map(|(_, _, name)| *name).collect();
        assert_eq!(
            names,
            ["other", "set", "drop", "set again", "drop again", "create"]
        );
    }

    #[test]
    fn a_schema_change_sorts_among_the_rows_of_its_own_transaction() {
        // An ALTER in the transaction committed at 300, after the previous one ended at 100:
        // its rows before the ALTER (LSN 200) and after it (210) carry the commit LSN 300 in
        // `transaction.id`, as the change does in `transactionId`.
        let payload = serde_json::json!({
            "source": {"name": "p", "sequence": "[\"100\",\"205\"]", "lsn": 205},
            "transactionId": "9:300",
            "tableChanges": [{"type": "ALTER", "id": "\"l1\".\"t\"", "table": null}],
        });
        let changes = table_changes(&payload).unwrap();
        let at = |lsn, order| Position {
            commit_lsn: 300,
            lsn,
            order,
        };
        assert_eq!(changes[0].position, at(205, 0));
        assert!(at(200, 1) < changes[0].position && changes[0].position < at(210, 2));
        // Without the field (an older source), the sequence places it.
        let mut older = payload.clone();
        older.as_object_mut().unwrap().remove("transactionId");
        let changes = table_changes(&older).unwrap();
        assert_eq!(changes[0].position.commit_lsn, 100);
    }

    #[test]
    fn schema_change_topics_follow_the_prefixes_of_the_sinks_topics() {
        let topics = [
            "shop.l1.*".to_owned(),
            "shop.l2.orders".to_owned(),
            "*.x".to_owned(),
        ];
        assert_eq!(
            schema_change_topics(&topics),
            [
                "shop.schema_changes",
                "shop.l1.schema_changes",
                "shop.l2.schema_changes",
            ]
        );
        assert!(is_schema_change_topic("shop.schema_changes"));
        assert!(!is_schema_change_topic("shop.l1.orders"));
    }

    #[test]
    fn table_ids_read_as_debezium_quotes_them() {
        assert_eq!(table_id("\"l1\".\"t\""), Some(("l1".into(), "t".into())));
        assert_eq!(
            table_id("\"a\"\"b\".\"c.d\""),
            Some(("a\"b".into(), "c.d".into()))
        );
        assert_eq!(
            table_id("\"db\".\"l1\".\"t\""),
            Some(("l1".into(), "t".into()))
        );
        for malformed in ["", "l1.t", "\"l1\"", "\"l1\".\"t", "\"l1\"x\"t\""] {
            assert_eq!(table_id(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn a_drop_waits_for_every_partition_of_its_table() {
        let drop = TableChange {
            prefix: "p".into(),
            schema: "l1".into(),
            table: "t".into(),
            kind: TableChangeKind::Drop,
            position: Position {
                commit_lsn: 9,
                lsn: 9,
                order: 0,
            },
            ddl: None,
            description: None,
            previous: None,
        };
        let record = ConsumedRecord {
            topic: "p.schema_changes".into(),
            partition: 0,
            offset: 4,
            key: None,
            value: None,
        };
        let mut pending = PendingChange::new(record, vec![drop], |topic| topic == "p.l1.t");
        assert_eq!(pending.waits_for, ["p.l1.t"]);
        let at = |partition: i32| ("p.l1.t".to_owned(), partition);
        let stored = |entries: &[(i32, i64)]| -> HashMap<Partition, PartitionProgress> {
            entries
                .iter()
                .map(|(p, next)| {
                    let progress = PartitionProgress {
                        next_offset: *next,
                        ..Default::default()
                    };
                    (at(*p), progress)
                })
                .collect()
        };
        assert!(!pending.caught_up(&stored(&[])), "watermarks not read yet");
        assert!(pending.precedes(
            "p.l1.t",
            Position {
                commit_lsn: 10,
                lsn: 10,
                order: 0,
            }
        ));
        assert!(!pending.precedes(
            "p.l1.t",
            Position {
                commit_lsn: 9,
                lsn: 8,
                order: 0,
            }
        ));
        assert!(!pending.precedes(
            "p.l1.u",
            Position {
                commit_lsn: 10,
                lsn: 10,
                order: 0,
            }
        ));
        pending.watermarks = Some(HashMap::from([
            (at(0), (0, 10)),
            (at(1), (0, 5)),
            (at(2), (0, 0)),
        ]));
        assert!(!pending.caught_up(&stored(&[(0, 10)])));
        assert!(pending.caught_up(&stored(&[(0, 10), (1, 5)])));
        // Records after the drop on partition 1 from offset 3: applied up to there suffices.
        pending.met_after.insert(at(1), 3);
        assert!(pending.caught_up(&stored(&[(0, 10), (1, 3)])));
        assert!(!pending.caught_up(&stored(&[(0, 10), (1, 2)])));
        let behind = pending.behind(&stored(&[(1, 2)]));
        let described: Vec<String> = behind.iter().map(ToString::to_string).collect();
        assert_eq!(described, ["p.l1.t[0] at 0 of 10", "p.l1.t[1] at 2 of 3"]);
        // Retention removed partition 0's records: its low watermark counts as applied.
        pending.watermarks = Some(HashMap::from([(at(0), (10, 10)), (at(1), (0, 5))]));
        assert!(pending.caught_up(&stored(&[(1, 5)])));
    }

    #[test]
    fn a_change_published_again_holds_no_row_back_and_waits_for_none() {
        let at = |lsn: u64| Position {
            commit_lsn: lsn,
            lsn,
            order: 0,
        };
        let pending = |partition: i32, offset: i64, lsn: u64| {
            let alter = TableChange {
                prefix: "p".into(),
                schema: "l1".into(),
                table: "t".into(),
                kind: TableChangeKind::Alter,
                position: at(lsn),
                ddl: None,
                description: None,
                previous: None,
            };
            let record = ConsumedRecord {
                topic: "p.schema_changes".into(),
                partition,
                offset,
                key: None,
                value: None,
            };
            PendingChange::new(record, vec![alter], |topic| topic == "p.l1.t")
        };
        // Applied up to 100 on partition 0; the source then sent 200 and 300, and again from
        // 200 (a replay) before 400. Partition 1 is on its own.
        let mut read = vec![
            pending(0, 1, 200),
            pending(0, 2, 300),
            pending(0, 3, 200),
            pending(0, 4, 300),
            pending(0, 5, 400),
            pending(1, 0, 150),
        ];
        mark_replays(&mut read, |partition| {
            if partition.1 == 0 {
                at(100)
            } else {
                Position::default()
            }
        });
        let replayed: Vec<bool> = read.iter().map(|p| p.blocks.is_empty()).collect();
        assert_eq!(replayed, [false, false, true, true, false, false]);
        assert!(read[3].waits_for.is_empty());
        // A row written between 200 and 300 waits for the first 200 only, not its copy.
        let between = at(250);
        assert!(read[0].precedes("p.l1.t", between));
        assert!(!read[2].precedes("p.l1.t", between));

        // Where the partition stood counts: 300 applied before this read.
        let mut read = vec![pending(0, 6, 300), pending(0, 7, 400)];
        mark_replays(&mut read, |_| at(300));
        assert!(read[0].blocks.is_empty() && !read[1].blocks.is_empty());
    }
}
