//! Sans-IO decoder of the pgoutput logical replication protocol, versions 1 and 2.
//!
//! ```text
//! XLogData payload ──▶ Decoder::decode ──▶ Message<'_> (borrows names, prefixes, tuple values)
//!                        │
//!                        └─ state: the xid of the open streamed block (Stream Start .. Stream Stop)
//! ```
//!
//! Protocol facts that shape this code:
//! - Protocol 2 (PG14+, `streaming = on`) sends in-progress transactions as blocks between Stream
//!   Start and Stream Stop. Only inside such a block do Relation, Type, Insert, Update, Delete,
//!   Truncate and Message carry a leading Int32 xid; the bytes alone do not say whether it is
//!   there, hence the decoder's state. That xid may be a subtransaction's, not the block's.
//! - Stream Commit and Stream Abort arrive outside any block. Stream Abort's abort LSN and
//!   timestamp exist only with protocol 4 and `streaming = parallel`, which pgcdc never asks for.
//! - Timestamps are µs since 2000-01-01; they are returned as µs since the Unix epoch.
//! - Relation's namespace is the empty string for `pg_catalog`.
//! - A tuple column is `n` (NULL), `u` (unchanged TOASTed value, not sent), `t` (text form) or
//!   `b` (binary form, only with the `binary` option).
//! - Update carries an old tuple only when the replica identity changed (`K`, key columns) or
//!   the identity is FULL (`O`, whole old row); Delete always carries one of them.

mod cursor;
#[cfg(test)]
mod tests;

use crate::lsn::Lsn;
use cursor::Cursor;

/// µs between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Decodes pgoutput messages; tracks whether a streamed block is open (protocol 2 xid fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoder {
    stream_xid: Option<u32>,
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// 'B': a transaction starts.
    Begin(Begin),
    /// 'C': the transaction started by the last Begin committed.
    Commit(Commit),
    /// 'O': the transaction came from another replication origin.
    Origin(Origin<'a>),
    /// 'R': a table's shape, sent before its first change and after each schema change.
    Relation(Relation),
    /// 'Y': a non-built-in data type used by a following Relation.
    Type(TypeMessage),
    /// 'I': a row was inserted.
    Insert(Insert<'a>),
    /// 'U': a row was updated.
    Update(Update<'a>),
    /// 'D': a row was deleted.
    Delete(Delete<'a>),
    /// 'T': tables were truncated.
    Truncate(Truncate),
    /// 'M': a logical decoding message (`pg_logical_emit_message`).
    Message(LogicalMessage<'a>),
    /// 'S': a block of a streamed in-progress transaction opens.
    StreamStart(StreamStart),
    /// 'E': the open streamed block ends.
    StreamStop,
    /// 'c': a streamed transaction committed.
    StreamCommit(StreamCommit),
    /// 'A': a streamed (sub)transaction aborted.
    StreamAbort(StreamAbort),
}

/// A transaction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the commit record; the transaction is complete once this is acknowledged.
    pub final_lsn: Lsn,
    /// Commit time, µs since the Unix epoch.
    pub commit_ts_us: i64,
    /// Transaction id.
    pub xid: u32,
}

/// The transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Unused by PostgreSQL so far (always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: where to confirm the slot once this is delivered.
    pub end_lsn: Lsn,
    /// Commit time, µs since the Unix epoch.
    pub commit_ts_us: i64,
}

/// The transaction was replayed from another origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    /// Commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// Origin name.
    pub name: &'a str,
}

/// A table's shape; owned because the caller caches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// Table OID, the key later change messages refer to.
    pub relation_id: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// `relreplident`: `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns in tuple order (dropped and generated columns excluded).
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 0: the column is part of the replica identity key.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// Data type OID.
    pub type_oid: u32,
    /// `atttypmod` (-1 when none).
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Whether the column belongs to the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// A data type referenced by a following Relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// Type OID.
    pub type_oid: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// A row was inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert<'a> {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// OID of the table, announced earlier by a Relation.
    pub relation_id: u32,
    /// The new row.
    pub new: Tuple<'a>,
}

/// A row was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<'a> {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// OID of the table, announced earlier by a Relation.
    pub relation_id: u32,
    /// The old row: absent unless the key changed or the identity is FULL.
    pub old: Option<OldTuple<'a>>,
    /// The new row; unchanged TOASTed columns are [`TupleValue::UnchangedToast`].
    pub new: Tuple<'a>,
}

/// A row was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete<'a> {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// OID of the table, announced earlier by a Relation.
    pub relation_id: u32,
    /// The deleted row's identity.
    pub old: OldTuple<'a>,
}

/// The old image of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple<'a> {
    /// 'K': identity columns only; the other columns are NULL.
    Key(Tuple<'a>),
    /// 'O': the whole old row (REPLICA IDENTITY FULL).
    Full(Tuple<'a>),
}

impl<'a> OldTuple<'a> {
    /// The column values, whichever image this is.
    pub fn tuple(&self) -> &Tuple<'a> {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

/// Tables were truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// Bit 0: CASCADE; bit 1: RESTART IDENTITY.
    pub options: u8,
    /// OIDs of the truncated tables.
    pub relation_ids: Vec<u32>,
}

impl Truncate {
    /// Whether TRUNCATE ... CASCADE was used.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// Whether TRUNCATE ... RESTART IDENTITY was used.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// A logical decoding message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage<'a> {
    /// Xid of the streamed transaction, inside a stream block only.
    pub xid: Option<u32>,
    /// Emitted as part of a transaction (else sent immediately, outside Begin/Commit).
    pub transactional: bool,
    /// LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: &'a str,
    /// The content, opaque bytes.
    pub content: &'a [u8],
}

/// A block of a streamed transaction opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// Top-level transaction id.
    pub xid: u32,
    /// The first block of this transaction.
    pub first_segment: bool,
}

/// A streamed transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    /// Top-level transaction id.
    pub xid: u32,
    /// Unused by PostgreSQL so far (always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record.
    pub end_lsn: Lsn,
    /// Commit time, µs since the Unix epoch.
    pub commit_ts_us: i64,
}

/// A streamed transaction, or one of its subtransactions, aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// Top-level transaction id.
    pub xid: u32,
    /// The aborted subtransaction; equals `xid` when the whole transaction aborted.
    pub subxid: u32,
}

/// One tuple's column values, borrowed from the message bytes (zero-copy).
pub type Tuple<'a> = Vec<TupleValue<'a>>;

/// One column value of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleValue<'a> {
    /// SQL NULL.
    Null,
    /// A TOASTed value that did not change and was not sent.
    UnchangedToast,
    /// The value in PostgreSQL's text output format.
    Text(&'a [u8]),
    /// The value in PostgreSQL's binary send format.
    Binary(&'a [u8]),
}

/// Why a pgoutput message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message has no bytes at all, not even a tag.
    #[error("empty pgoutput message")]
    Empty,
    /// The tag names no message of protocol 1 or 2.
    #[error("unknown pgoutput message tag {0:#04x}: the server may speak a newer protocol version than requested")]
    UnknownTag(u8),
    /// The message ends before one of its fields (or a string lacks its NUL).
    #[error("pgoutput {message} message truncated at byte {offset} while reading {field}")]
    Truncated {
        /// Message kind.
        message: &'static str,
        /// Field being read.
        field: &'static str,
        /// Byte offset (from the tag) where the field starts.
        offset: usize,
    },
    /// Trailing bytes follow a complete message.
    #[error("pgoutput {message} message has {count} trailing bytes")]
    TrailingBytes {
        /// Message kind.
        message: &'static str,
        /// Number of unread bytes.
        count: usize,
    },
    /// A tuple marker is not one this message allows (`N`; `K`/`O` for old rows).
    #[error("pgoutput {message} message has unknown tuple kind {kind:#04x}")]
    UnknownTupleKind {
        /// Message kind.
        message: &'static str,
        /// The marker byte found.
        kind: u8,
    },
    /// A tuple column is not `n`, `u`, `t` or `b`.
    #[error("pgoutput {message} message has unknown kind {kind:#04x} for column {column}")]
    UnknownColumnKind {
        /// Message kind.
        message: &'static str,
        /// Zero-based column index.
        column: usize,
        /// The kind byte found.
        kind: u8,
    },
    /// A name or prefix is not valid UTF-8.
    #[error("pgoutput {message} message has invalid UTF-8 in {field}")]
    InvalidUtf8 {
        /// Message kind.
        message: &'static str,
        /// Field holding the string.
        field: &'static str,
    },
    /// A byte length is negative.
    #[error("pgoutput {message} message has negative length {length} for {field}")]
    NegativeLength {
        /// Message kind.
        message: &'static str,
        /// Field whose length it is.
        field: &'static str,
        /// The length read.
        length: i32,
    },
    /// A timestamp cannot be expressed in µs since the Unix epoch.
    #[error("pgoutput {message} message has out-of-range timestamp {micros} µs since 2000-01-01")]
    TimestampOutOfRange {
        /// Message kind.
        message: &'static str,
        /// The raw PostgreSQL timestamp.
        micros: i64,
    },
    /// Stream Start arrived while a block was already open.
    #[error("pgoutput Stream Start for xid {xid} while the block of xid {open_xid} is still open")]
    StreamAlreadyOpen {
        /// Xid of the block still open.
        open_xid: u32,
        /// Xid of the new Stream Start.
        xid: u32,
    },
    /// Stream Stop arrived with no open block.
    #[error("pgoutput Stream Stop without a preceding Stream Start")]
    NoStreamOpen,
}

impl Decoder {
    /// A decoder outside any streamed block.
    pub fn new() -> Self {
        Self::default()
    }

    /// The xid of the open streamed block, if any.
    pub fn stream_xid(&self) -> Option<u32> {
        self.stream_xid
    }

    /// Decodes one whole message (the payload of one XLogData). On error the state is unchanged.
    pub fn decode<'a>(&mut self, bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let (&tag, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let in_stream = self.stream_xid.is_some();
        let message = match tag {
            b'B' => decode_begin(body)?,
            b'C' => decode_commit(body)?,
            b'O' => decode_origin(body)?,
            b'R' => decode_relation(body, in_stream)?,
            b'Y' => decode_type(body, in_stream)?,
            b'I' => decode_insert(body, in_stream)?,
            b'U' => decode_update(body, in_stream)?,
            b'D' => decode_delete(body, in_stream)?,
            b'T' => decode_truncate(body, in_stream)?,
            b'M' => decode_logical_message(body, in_stream)?,
            b'S' => {
                let start = decode_stream_start(body)?;
                if let Some(open_xid) = self.stream_xid {
                    return Err(DecodeError::StreamAlreadyOpen {
                        open_xid,
                        xid: start.xid,
                    });
                }
                self.stream_xid = Some(start.xid);
                Message::StreamStart(start)
            }
            b'E' => {
                Cursor::new("Stream Stop", body).finish()?;
                if self.stream_xid.take().is_none() {
                    return Err(DecodeError::NoStreamOpen);
                }
                Message::StreamStop
            }
            b'c' => decode_stream_commit(body)?,
            b'A' => decode_stream_abort(body)?,
            other => return Err(DecodeError::UnknownTag(other)),
        };
        Ok(message)
    }
}

fn timestamp(cursor: &mut Cursor<'_>, field: &'static str) -> Result<i64, DecodeError> {
    let micros = cursor.i64(field)?;
    micros
        .checked_add(PG_EPOCH_OFFSET_US)
        .ok_or(DecodeError::TimestampOutOfRange {
            message: cursor.message(),
            micros,
        })
}

fn lsn(cursor: &mut Cursor<'_>, field: &'static str) -> Result<Lsn, DecodeError> {
    cursor.u64(field).map(Lsn)
}

fn stream_xid(cursor: &mut Cursor<'_>, in_stream: bool) -> Result<Option<u32>, DecodeError> {
    if in_stream {
        cursor.u32("xid").map(Some)
    } else {
        Ok(None)
    }
}

fn decode_begin(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Begin", body);
    let begin = Begin {
        final_lsn: lsn(&mut cursor, "final LSN")?,
        commit_ts_us: timestamp(&mut cursor, "commit timestamp")?,
        xid: cursor.u32("xid")?,
    };
    cursor.finish()?;
    Ok(Message::Begin(begin))
}

fn decode_commit(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Commit", body);
    let commit = Commit {
        flags: cursor.u8("flags")?,
        commit_lsn: lsn(&mut cursor, "commit LSN")?,
        end_lsn: lsn(&mut cursor, "end LSN")?,
        commit_ts_us: timestamp(&mut cursor, "commit timestamp")?,
    };
    cursor.finish()?;
    Ok(Message::Commit(commit))
}

fn decode_origin(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Origin", body);
    let origin = Origin {
        commit_lsn: lsn(&mut cursor, "commit LSN")?,
        name: cursor.str("origin name")?,
    };
    cursor.finish()?;
    Ok(Message::Origin(origin))
}

/// Smallest encoding of one Relation column: flags, empty name, type OID, type modifier.
const MIN_RELATION_COLUMN_LEN: usize = 1 + 1 + 4 + 4;

fn decode_relation(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Relation", body);
    let xid = stream_xid(&mut cursor, in_stream)?;
    let relation_id = cursor.u32("relation OID")?;
    let namespace = cursor.str("namespace")?.to_owned();
    let name = cursor.str("relation name")?.to_owned();
    let replica_identity = cursor.u8("replica identity")?;
    let count = usize::from(cursor.u16("column count")?);
    let mut columns = Vec::with_capacity(count.min(cursor.remaining() / MIN_RELATION_COLUMN_LEN));
    for _ in 0..count {
        columns.push(RelationColumn {
            flags: cursor.u8("column flags")?,
            name: cursor.str("column name")?.to_owned(),
            type_oid: cursor.u32("column type OID")?,
            type_modifier: cursor.i32("column type modifier")?,
        });
    }
    cursor.finish()?;
    Ok(Message::Relation(Relation {
        xid,
        relation_id,
        namespace,
        name,
        replica_identity,
        columns,
    }))
}

fn decode_type(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Type", body);
    let type_message = TypeMessage {
        xid: stream_xid(&mut cursor, in_stream)?,
        type_oid: cursor.u32("type OID")?,
        namespace: cursor.str("namespace")?.to_owned(),
        name: cursor.str("type name")?.to_owned(),
    };
    cursor.finish()?;
    Ok(Message::Type(type_message))
}

/// TupleData: Int16 column count, then per column a kind byte and, for `t`/`b`, a value.
fn tuple<'a>(cursor: &mut Cursor<'a>) -> Result<Tuple<'a>, DecodeError> {
    let count = usize::from(cursor.u16("tuple column count")?);
    // Every column takes at least its kind byte, so this never over-allocates on a lie.
    let mut values = Vec::with_capacity(count.min(cursor.remaining()));
    for column in 0..count {
        let value = match cursor.u8("tuple column kind")? {
            b'n' => TupleValue::Null,
            b'u' => TupleValue::UnchangedToast,
            b't' => TupleValue::Text(cursor.length_prefixed("tuple column value")?),
            b'b' => TupleValue::Binary(cursor.length_prefixed("tuple column value")?),
            kind => {
                return Err(DecodeError::UnknownColumnKind {
                    message: cursor.message(),
                    column,
                    kind,
                })
            }
        };
        values.push(value);
    }
    Ok(values)
}

fn new_tuple<'a>(cursor: &mut Cursor<'a>) -> Result<Tuple<'a>, DecodeError> {
    match cursor.u8("new tuple marker")? {
        b'N' => tuple(cursor),
        kind => Err(DecodeError::UnknownTupleKind {
            message: cursor.message(),
            kind,
        }),
    }
}

fn old_tuple<'a>(cursor: &mut Cursor<'a>, kind: u8) -> Result<OldTuple<'a>, DecodeError> {
    match kind {
        b'K' => tuple(cursor).map(OldTuple::Key),
        b'O' => tuple(cursor).map(OldTuple::Full),
        kind => Err(DecodeError::UnknownTupleKind {
            message: cursor.message(),
            kind,
        }),
    }
}

fn decode_insert(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Insert", body);
    let insert = Insert {
        xid: stream_xid(&mut cursor, in_stream)?,
        relation_id: cursor.u32("relation OID")?,
        new: new_tuple(&mut cursor)?,
    };
    cursor.finish()?;
    Ok(Message::Insert(insert))
}

fn decode_update(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Update", body);
    let xid = stream_xid(&mut cursor, in_stream)?;
    let relation_id = cursor.u32("relation OID")?;
    let (old, new) = match cursor.u8("tuple marker")? {
        b'N' => (None, tuple(&mut cursor)?),
        kind => {
            let old = old_tuple(&mut cursor, kind)?;
            (Some(old), new_tuple(&mut cursor)?)
        }
    };
    cursor.finish()?;
    Ok(Message::Update(Update {
        xid,
        relation_id,
        old,
        new,
    }))
}

fn decode_delete(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Delete", body);
    let xid = stream_xid(&mut cursor, in_stream)?;
    let relation_id = cursor.u32("relation OID")?;
    let kind = cursor.u8("old tuple marker")?;
    let old = old_tuple(&mut cursor, kind)?;
    cursor.finish()?;
    Ok(Message::Delete(Delete {
        xid,
        relation_id,
        old,
    }))
}

fn decode_truncate(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Truncate", body);
    let xid = stream_xid(&mut cursor, in_stream)?;
    let count = cursor.u32("relation count")?;
    let options = cursor.u8("options")?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut relation_ids = Vec::with_capacity(count.min(cursor.remaining() / 4));
    for _ in 0..count {
        relation_ids.push(cursor.u32("relation OID")?);
    }
    cursor.finish()?;
    Ok(Message::Truncate(Truncate {
        xid,
        options,
        relation_ids,
    }))
}

fn decode_logical_message(body: &[u8], in_stream: bool) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Message", body);
    let message = LogicalMessage {
        xid: stream_xid(&mut cursor, in_stream)?,
        transactional: cursor.u8("flags")? & 1 != 0,
        lsn: lsn(&mut cursor, "message LSN")?,
        prefix: cursor.str("prefix")?,
        content: cursor.length_prefixed("content")?,
    };
    cursor.finish()?;
    Ok(Message::Message(message))
}

fn decode_stream_start(body: &[u8]) -> Result<StreamStart, DecodeError> {
    let mut cursor = Cursor::new("Stream Start", body);
    let start = StreamStart {
        xid: cursor.u32("xid")?,
        first_segment: cursor.u8("first segment flag")? != 0,
    };
    cursor.finish()?;
    Ok(start)
}

fn decode_stream_commit(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Stream Commit", body);
    let commit = StreamCommit {
        xid: cursor.u32("xid")?,
        flags: cursor.u8("flags")?,
        commit_lsn: lsn(&mut cursor, "commit LSN")?,
        end_lsn: lsn(&mut cursor, "end LSN")?,
        commit_ts_us: timestamp(&mut cursor, "commit timestamp")?,
    };
    cursor.finish()?;
    Ok(Message::StreamCommit(commit))
}

fn decode_stream_abort(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut cursor = Cursor::new("Stream Abort", body);
    let abort = StreamAbort {
        xid: cursor.u32("xid")?,
        subxid: cursor.u32("subxid")?,
    };
    cursor.finish()?;
    Ok(Message::StreamAbort(abort))
}
