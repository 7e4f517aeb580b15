//! Why the sink stopped or must retry, split by what the caller does about it: transient target
//! errors are retried, data errors make a record poison, the rest stop the sink.

use tokio_postgres::error::SqlState;

/// An error of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is unusable; the message names the key.
    #[error("{0}")]
    Config(String),
    /// A statement on the target failed.
    #[error("target database: could not {what}: {source}")]
    Target {
        /// What was being done, e.g. "apply a batch to l1.orders".
        what: String,
        /// The server's or the connection's error.
        #[source]
        source: crate::pg::PgError,
    },
    /// Connecting to the target failed.
    #[error(transparent)]
    Connect(#[from] crate::pg::PgConnectError),
    /// A table is missing in the target and `apply.create_tables` is off.
    #[error("target table {table} does not exist: create it, or set apply.create_tables = true")]
    MissingTable {
        /// `schema.table` in the target.
        table: String,
    },
    /// The target table lacks a column the changes carry and `apply.create_tables` is off.
    #[error("target table {table} has no column \"{column}\": add it, or set apply.create_tables = true")]
    MissingColumn {
        /// `schema.table` in the target.
        table: String,
        /// The column.
        column: String,
    },
    /// A record that cannot be applied (undecodable, or rejected by the target for its data),
    /// with no dead-letter topic to put it in.
    #[error("poison record at {topic} partition {partition} offset {offset}: {reason}; fix or remove it, or set apply.dead_letter_topic to route such records there")]
    Poison {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Why it cannot be applied.
        reason: String,
    },
    /// The target table has no primary key, but the changes are keyed (upserts need one).
    #[error("target table {table} has no primary key: add one on the source's key columns (see the key schema), or let cdc-sink create the table")]
    NoPrimaryKey {
        /// `schema.table` in the target.
        table: String,
    },
    /// Another sink of the group applied a partition meanwhile; the session restarts from
    /// the offsets stored in the target.
    #[error("{topic} partition {partition}: the target already holds offsets up to {stored}, this batch starts at {consumed}; another cdc-sink of the group applied them")]
    Fenced {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset stored in the target.
        stored: i64,
        /// The first offset of the batch.
        consumed: i64,
    },
    /// The consumer failed.
    #[error(transparent)]
    Consumer(#[from] crate::kafka::KafkaError),
    /// The schema registry could not be asked for a record's schema.
    #[error(transparent)]
    Registry(Box<crate::encode::decode::DecodeError>),
    /// A comparison query of `verify` failed.
    #[error(transparent)]
    Verify(Box<super::verify::VerifyError>),
    /// A record written after a table's DROP arrived before the DROP could be applied (other
    /// partitions of the table are behind); the session starts again from the stored offsets.
    #[error("{topic} partition {partition}: a record written after the DROP of {table} waits until the table's other partitions are applied")]
    WaitingForDrop {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The dropped table, `schema.table`.
        table: String,
    },
    /// The consumer's poll thread ended.
    #[error("the Kafka consumer thread stopped")]
    ConsumerStopped,
    /// The broker could not be used.
    #[error("kafka: could not {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl SinkError {
    /// A failed target statement.
    pub fn target(what: impl Into<String>, source: tokio_postgres::Error) -> SinkError {
        SinkError::Target {
            what: what.into(),
            source: source.into(),
        }
    }

    /// Whether retrying the same work on a fresh connection may succeed: the connection was
    /// lost, the server is restarting, or a concurrency conflict rolled the transaction back.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Connect(_)
            | SinkError::Fenced { .. }
            | SinkError::WaitingForDrop { .. }
            | SinkError::ConsumerStopped
            | SinkError::Registry(_)
            | SinkError::Kafka { .. } => true,
            SinkError::Consumer(error) => {
                !matches!(error, crate::kafka::KafkaError::InvalidOption { .. })
            }
            SinkError::Target { source, .. } => is_transient_pg(source),
            _ => false,
        }
    }

    /// Whether the configuration is at fault (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, SinkError::Config(_))
    }

    /// A label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Target { .. } | SinkError::Connect(_) => "target",
            SinkError::Consumer(_) | SinkError::ConsumerStopped | SinkError::Kafka { .. } => {
                "kafka"
            }
            SinkError::Fenced { .. } => "fenced",
            SinkError::Poison { .. } => "poison",
            _ => "other",
        }
    }

    /// The target's SQL state, when the target refused a statement.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            SinkError::Target { source, .. } => source.code().map(|code| code.code()),
            _ => None,
        }
    }

    /// Whether the target refused the data itself (constraint, type, value), so the record
    /// that caused it is poison rather than the sink broken.
    pub fn is_data_error(&self) -> bool {
        let SinkError::Target { source, .. } = self else {
            return false;
        };
        source.code().is_some_and(|code| {
            let class = &code.code()[..2];
            // 22: data exception; 23: integrity constraint violation.
            class == "22" || class == "23"
        })
    }
}

fn is_transient_pg(error: &crate::pg::PgError) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(code) = error.code() else {
        // No SQLSTATE: an I/O error on the connection is worth retrying; a value that could
        // not be serialized (or any other client-side error) is not.
        return error.cause().is_some_and(|s| s.is::<std::io::Error>());
    };
    let class = &code.code()[..2];
    // 08: connection exception; 40: transaction rollback (serialization, deadlock);
    // 53: insufficient resources; 57: operator intervention (shutdown, crash recovery).
    matches!(class, "08" | "40" | "53" | "57") || *code == SqlState::LOCK_NOT_AVAILABLE
}
