use super::*;
use proptest::prelude::*;

/// 2000-01-01 00:00:01 UTC in µs since the Unix epoch: the decoded form of PG timestamp 1_000_000.
const ONE_SECOND_AFTER_PG_EPOCH: i64 = 946_684_801_000_000;

fn be32(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

fn be64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// Decodes `bytes` with a decoder inside the streamed block of `xid`.
fn decode_in_stream(xid: u32, bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut decoder = Decoder::new();
    let start = [&[b'S'][..], &be32(xid), &[1]].concat();
    decoder.decode(&start).unwrap();
    decoder.decode(bytes)
}

fn decode(bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
    Decoder::new().decode(bytes)
}

#[test]
fn begin() {
    let raw = [
        &[b'B'][..],
        &be64(0x16_B374_D848),
        &1_000_000i64.to_be_bytes(),
        &be32(742),
    ]
    .concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Begin(Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_ts_us: ONE_SECOND_AFTER_PG_EPOCH,
            xid: 742,
        }))
    );
}

#[test]
fn commit() {
    let raw = [
        &[b'C', 0][..],
        &be64(0x100),
        &be64(0x128),
        &(-1_000_000i64).to_be_bytes(),
    ]
    .concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x128),
            commit_ts_us: 946_684_799_000_000,
        }))
    );
}

#[test]
fn origin() {
    let raw = [&[b'O'][..], &be64(0x42), b"pg_16385\0"].concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Origin(Origin {
            commit_lsn: Lsn(0x42),
            name: "pg_16385",
        }))
    );
}

fn relation_body() -> Vec<u8> {
    [
        &be32(16_384)[..],
        b"public\0",
        b"orders\0",
        b"d",
        &2u16.to_be_bytes(),
        &[1],
        b"id\0",
        &be32(20),
        &(-1i32).to_be_bytes(),
        &[0],
        "prix_€\0".as_bytes(),
        &be32(1700),
        &655_366i32.to_be_bytes(),
    ]
    .concat()
}

fn expected_relation(xid: Option<u32>) -> Message<'static> {
    Message::Relation(Relation {
        xid,
        relation_id: 16_384,
        namespace: "public".into(),
        name: "orders".into(),
        replica_identity: b'd',
        columns: vec![
            RelationColumn {
                flags: 1,
                name: "id".into(),
                type_oid: 20,
                type_modifier: -1,
            },
            RelationColumn {
                flags: 0,
                name: "prix_€".into(),
                type_oid: 1700,
                type_modifier: 655_366,
            },
        ],
    })
}

#[test]
fn relation() {
    let raw = [&[b'R'][..], &relation_body()].concat();
    let decoded = decode(&raw).unwrap();
    assert_eq!(decoded, expected_relation(None));
    let Message::Relation(relation) = decoded else {
        unreachable!()
    };
    let keys: Vec<bool> = relation
        .columns
        .iter()
        .map(RelationColumn::is_key)
        .collect();
    assert_eq!(keys, [true, false]);
}

#[test]
fn relation_in_stream_carries_xid() {
    let raw = [&[b'R'][..], &be32(900), &relation_body()].concat();
    assert_eq!(
        decode_in_stream(900, &raw),
        Ok(expected_relation(Some(900)))
    );
}

#[test]
fn type_message() {
    let body = [&be32(16_390)[..], b"public\0", b"mood\0"].concat();
    let expected = |xid| {
        Message::Type(TypeMessage {
            xid,
            type_oid: 16_390,
            namespace: "public".into(),
            name: "mood".into(),
        })
    };
    assert_eq!(decode(&[&[b'Y'][..], &body].concat()), Ok(expected(None)));
    let streamed = [&[b'Y'][..], &be32(7), &body].concat();
    assert_eq!(decode_in_stream(7, &streamed), Ok(expected(Some(7))));
}

/// TupleData with one column of each kind: NULL, unchanged TOAST, text "42", binary 0x0001.
fn tuple_body() -> Vec<u8> {
    [
        &4u16.to_be_bytes()[..],
        b"n",
        b"u",
        b"t",
        &be32(2),
        b"42",
        b"b",
        &be32(2),
        &[0, 1],
    ]
    .concat()
}

fn expected_tuple() -> Tuple<'static> {
    vec![
        TupleValue::Null,
        TupleValue::UnchangedToast,
        TupleValue::Text(b"42"),
        TupleValue::Binary(&[0, 1]),
    ]
}

#[test]
fn insert() {
    let raw = [&[b'I'][..], &be32(16_384), b"N", &tuple_body()].concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Insert(Insert {
            xid: None,
            relation_id: 16_384,
            new: expected_tuple(),
        }))
    );
}

#[test]
fn insert_in_stream_carries_xid() {
    let raw = [&[b'I'][..], &be32(901), &be32(16_384), b"N", &tuple_body()].concat();
    assert_eq!(
        decode_in_stream(900, &raw),
        Ok(Message::Insert(Insert {
            xid: Some(901),
            relation_id: 16_384,
            new: expected_tuple(),
        }))
    );
}

#[test]
fn insert_with_no_columns() {
    let raw = [&[b'I'][..], &be32(1), b"N", &0u16.to_be_bytes()].concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Insert(Insert {
            xid: None,
            relation_id: 1,
            new: vec![],
        }))
    );
}

#[test]
fn update_without_old_tuple() {
    let raw = [&[b'U'][..], &be32(16_384), b"N", &tuple_body()].concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Update(Update {
            xid: None,
            relation_id: 16_384,
            old: None,
            new: expected_tuple(),
        }))
    );
}

#[test]
fn update_with_key_and_full_old_tuple() {
    let key = [
        &[b'U'][..],
        &be32(16_384),
        b"K",
        &1u16.to_be_bytes(),
        b"t",
        &be32(1),
        b"7",
        b"N",
        &tuple_body(),
    ]
    .concat();
    assert_eq!(
        decode(&key),
        Ok(Message::Update(Update {
            xid: None,
            relation_id: 16_384,
            old: Some(OldTuple::Key(vec![TupleValue::Text(b"7")])),
            new: expected_tuple(),
        }))
    );
    let full = [
        &[b'U'][..],
        &be32(16_384),
        b"O",
        &tuple_body(),
        b"N",
        &tuple_body(),
    ]
    .concat();
    let decoded = decode(&full).unwrap();
    assert_eq!(
        decoded,
        Message::Update(Update {
            xid: None,
            relation_id: 16_384,
            old: Some(OldTuple::Full(expected_tuple())),
            new: expected_tuple(),
        })
    );
    let Message::Update(Update { old: Some(old), .. }) = decoded else {
        unreachable!()
    };
    assert_eq!(old.tuple(), &expected_tuple());
}

#[test]
fn update_in_stream_carries_xid() {
    let raw = [&[b'U'][..], &be32(5), &be32(16_384), b"N", &tuple_body()].concat();
    assert_eq!(
        decode_in_stream(5, &raw),
        Ok(Message::Update(Update {
            xid: Some(5),
            relation_id: 16_384,
            old: None,
            new: expected_tuple(),
        }))
    );
}

#[test]
fn delete() {
    let key = [&[b'D'][..], &be32(16_384), b"K", &tuple_body()].concat();
    assert_eq!(
        decode(&key),
        Ok(Message::Delete(Delete {
            xid: None,
            relation_id: 16_384,
            old: OldTuple::Key(expected_tuple()),
        }))
    );
    let full = [&[b'D'][..], &be32(9), &be32(16_384), b"O", &tuple_body()].concat();
    assert_eq!(
        decode_in_stream(9, &full),
        Ok(Message::Delete(Delete {
            xid: Some(9),
            relation_id: 16_384,
            old: OldTuple::Full(expected_tuple()),
        }))
    );
}

#[test]
fn truncate() {
    let raw = [&[b'T'][..], &be32(2), &[3], &be32(16_384), &be32(16_390)].concat();
    let decoded = decode(&raw).unwrap();
    assert_eq!(
        decoded,
        Message::Truncate(Truncate {
            xid: None,
            options: 3,
            relation_ids: vec![16_384, 16_390],
        })
    );
    let Message::Truncate(truncate) = decoded else {
        unreachable!()
    };
    assert!(truncate.cascade());
    assert!(truncate.restart_identity());

    let streamed = [&[b'T'][..], &be32(11), &be32(1), &[2], &be32(16_384)].concat();
    let decoded = decode_in_stream(11, &streamed).unwrap();
    assert_eq!(
        decoded,
        Message::Truncate(Truncate {
            xid: Some(11),
            options: 2,
            relation_ids: vec![16_384],
        })
    );
    let Message::Truncate(truncate) = decoded else {
        unreachable!()
    };
    assert!(!truncate.cascade());
    assert!(truncate.restart_identity());
}

#[test]
fn logical_message() {
    let raw = [
        &[b'M', 1][..],
        &be64(0x300),
        b"audit\0",
        &be32(3),
        &[0, 0xFF, 7],
    ]
    .concat();
    assert_eq!(
        decode(&raw),
        Ok(Message::Message(LogicalMessage {
            xid: None,
            transactional: true,
            lsn: Lsn(0x300),
            prefix: "audit",
            content: &[0, 0xFF, 7],
        }))
    );
    let streamed = [&[b'M'][..], &be32(12), &[0], &be64(0x300), b"\0", &be32(0)].concat();
    assert_eq!(
        decode_in_stream(12, &streamed),
        Ok(Message::Message(LogicalMessage {
            xid: Some(12),
            transactional: false,
            lsn: Lsn(0x300),
            prefix: "",
            content: &[],
        }))
    );
}

#[test]
fn stream_commit_and_abort() {
    let commit = [
        &[b'c'][..],
        &be32(900),
        &[0],
        &be64(0x500),
        &be64(0x530),
        &1_000_000i64.to_be_bytes(),
    ]
    .concat();
    assert_eq!(
        decode(&commit),
        Ok(Message::StreamCommit(StreamCommit {
            xid: 900,
            flags: 0,
            commit_lsn: Lsn(0x500),
            end_lsn: Lsn(0x530),
            commit_ts_us: ONE_SECOND_AFTER_PG_EPOCH,
        }))
    );
    let abort = [&[b'A'][..], &be32(900), &be32(903)].concat();
    assert_eq!(
        decode(&abort),
        Ok(Message::StreamAbort(StreamAbort {
            xid: 900,
            subxid: 903,
        }))
    );
}

#[test]
fn stream_start_and_stop_toggle_xid_reading() {
    let mut decoder = Decoder::new();
    let plain = [&[b'I'][..], &be32(16_384), b"N", &0u16.to_be_bytes()].concat();
    let streamed = [&[b'I'][..], &be32(900), &plain[1..]].concat();
    let insert = |xid| {
        Message::Insert(Insert {
            xid,
            relation_id: 16_384,
            new: vec![],
        })
    };

    assert_eq!(decoder.decode(&plain), Ok(insert(None)));
    assert_eq!(decoder.stream_xid(), None);

    let start = [&[b'S'][..], &be32(900), &[1]].concat();
    assert_eq!(
        decoder.decode(&start),
        Ok(Message::StreamStart(StreamStart {
            xid: 900,
            first_segment: true,
        }))
    );
    assert_eq!(decoder.stream_xid(), Some(900));
    assert_eq!(decoder.decode(&streamed), Ok(insert(Some(900))));
    // Without its xid the same change is four bytes short inside a block.
    assert!(decoder.decode(&plain).is_err());

    assert_eq!(decoder.decode(b"E"), Ok(Message::StreamStop));
    assert_eq!(decoder.stream_xid(), None);
    assert_eq!(decoder.decode(&plain), Ok(insert(None)));

    let next_segment = [&[b'S'][..], &be32(900), &[0]].concat();
    assert_eq!(
        decoder.decode(&next_segment),
        Ok(Message::StreamStart(StreamStart {
            xid: 900,
            first_segment: false,
        }))
    );
    assert_eq!(decoder.decode(&streamed), Ok(insert(Some(900))));
    assert_eq!(decoder.decode(b"E"), Ok(Message::StreamStop));
}

#[test]
fn error_empty_message() {
    assert_eq!(decode(b""), Err(DecodeError::Empty));
}

#[test]
fn error_unknown_tag() {
    assert_eq!(decode(b"Z"), Err(DecodeError::UnknownTag(b'Z')));
    // Protocol 3 two-phase messages are not requested, so they are unknown here.
    assert_eq!(decode(b"P"), Err(DecodeError::UnknownTag(b'P')));
}

#[test]
fn error_truncated_names_field_and_offset() {
    let raw = [&[b'B'][..], &be64(1), &[0, 0]].concat();
    assert_eq!(
        decode(&raw),
        Err(DecodeError::Truncated {
            message: "Begin",
            field: "commit timestamp",
            offset: 9,
        })
    );
    let unterminated = [&[b'O'][..], &be64(1), b"name"].concat();
    assert_eq!(
        decode(&unterminated),
        Err(DecodeError::Truncated {
            message: "Origin",
            field: "origin name",
            offset: 9,
        })
    );
    assert_eq!(
        decode(b"E").err(),
        Some(DecodeError::NoStreamOpen),
        "Stream Stop has no body, so it cannot be truncated"
    );
}

#[test]
fn error_huge_counts_do_not_allocate() {
    let tuple = [&[b'I'][..], &be32(1), b"N", &u16::MAX.to_be_bytes()].concat();
    assert_eq!(
        decode(&tuple),
        Err(DecodeError::Truncated {
            message: "Insert",
            field: "tuple column kind",
            offset: 8,
        })
    );
    let truncate = [&[b'T'][..], &be32(u32::MAX), &[0]].concat();
    assert_eq!(
        decode(&truncate),
        Err(DecodeError::Truncated {
            message: "Truncate",
            field: "relation OID",
            offset: 6,
        })
    );
    let relation = [
        &[b'R'][..],
        &be32(1),
        b"\0",
        b"\0",
        b"d",
        &u16::MAX.to_be_bytes(),
    ]
    .concat();
    assert_eq!(
        decode(&relation),
        Err(DecodeError::Truncated {
            message: "Relation",
            field: "column flags",
            offset: 10,
        })
    );
    let content = [&[b'M', 0][..], &be64(1), b"p\0", &be32(i32::MAX as u32)].concat();
    assert_eq!(
        decode(&content),
        Err(DecodeError::Truncated {
            message: "Message",
            field: "content",
            offset: 12,
        })
    );
}

#[test]
fn error_trailing_bytes() {
    let raw = [&[b'A'][..], &be32(1), &be32(2), &[0, 0]].concat();
    assert_eq!(
        decode(&raw),
        Err(DecodeError::TrailingBytes {
            message: "Stream Abort",
            count: 2,
        })
    );
    let mut decoder = Decoder::new();
    decoder.decode(&[b'S', 0, 0, 0, 1, 1]).unwrap();
    assert_eq!(
        decoder.decode(b"E\0"),
        Err(DecodeError::TrailingBytes {
            message: "Stream Stop",
            count: 1,
        })
    );
    assert_eq!(
        decoder.stream_xid(),
        Some(1),
        "a failed Stream Stop keeps the block open"
    );
}

#[test]
fn error_unknown_tuple_kind() {
    let insert = [&[b'I'][..], &be32(1), b"K", &0u16.to_be_bytes()].concat();
    assert_eq!(
        decode(&insert),
        Err(DecodeError::UnknownTupleKind {
            message: "Insert",
            kind: b'K',
        })
    );
    let update = [&[b'U'][..], &be32(1), b"X", &0u16.to_be_bytes()].concat();
    assert_eq!(
        decode(&update),
        Err(DecodeError::UnknownTupleKind {
            message: "Update",
            kind: b'X',
        })
    );
    let update_new = [
        &[b'U'][..],
        &be32(1),
        b"K",
        &0u16.to_be_bytes(),
        b"O",
        &0u16.to_be_bytes(),
    ]
    .concat();
    assert_eq!(
        decode(&update_new),
        Err(DecodeError::UnknownTupleKind {
            message: "Update",
            kind: b'O',
        })
    );
    let delete = [&[b'D'][..], &be32(1), b"N", &0u16.to_be_bytes()].concat();
    assert_eq!(
        decode(&delete),
        Err(DecodeError::UnknownTupleKind {
            message: "Delete",
            kind: b'N',
        })
    );
}

#[test]
fn error_unknown_column_kind() {
    let raw = [&[b'I'][..], &be32(1), b"N", &2u16.to_be_bytes(), b"n", b"x"].concat();
    assert_eq!(
        decode(&raw),
        Err(DecodeError::UnknownColumnKind {
            message: "Insert",
            column: 1,
            kind: b'x',
        })
    );
}

#[test]
fn error_invalid_utf8() {
    let origin = [&[b'O'][..], &be64(1), &[0xC3, 0x28, 0]].concat();
    assert_eq!(
        decode(&origin),
        Err(DecodeError::InvalidUtf8 {
            message: "Origin",
            field: "origin name",
        })
    );
    let type_message = [&[b'Y'][..], &be32(1), b"public\0", &[0xFF, 0]].concat();
    assert_eq!(
        decode(&type_message),
        Err(DecodeError::InvalidUtf8 {
            message: "Type",
            field: "type name",
        })
    );
}

#[test]
fn error_negative_length() {
    let raw = [
        &[b'I'][..],
        &be32(1),
        b"N",
        &1u16.to_be_bytes(),
        b"t",
        &(-1i32).to_be_bytes(),
    ]
    .concat();
    assert_eq!(
        decode(&raw),
        Err(DecodeError::NegativeLength {
            message: "Insert",
            field: "tuple column value",
            length: -1,
        })
    );
}

#[test]
fn error_timestamp_out_of_range() {
    let raw = [&[b'B'][..], &be64(1), &i64::MAX.to_be_bytes(), &be32(1)].concat();
    assert_eq!(
        decode(&raw),
        Err(DecodeError::TimestampOutOfRange {
            message: "Begin",
            micros: i64::MAX,
        })
    );
}

#[test]
fn error_stream_protocol_violations_keep_state() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(b"E"), Err(DecodeError::NoStreamOpen));
    assert_eq!(decoder.stream_xid(), None);

    decoder.decode(&[b'S', 0, 0, 0, 1, 1]).unwrap();
    assert_eq!(
        decoder.decode(&[b'S', 0, 0, 0, 2, 1]),
        Err(DecodeError::StreamAlreadyOpen {
            open_xid: 1,
            xid: 2,
        })
    );
    assert_eq!(decoder.stream_xid(), Some(1));

    let mut closed = Decoder::new();
    assert!(closed.decode(&[b'S', 0, 0, 0]).is_err());
    assert_eq!(
        closed.stream_xid(),
        None,
        "a truncated Stream Start opens nothing"
    );
}

#[test]
fn errors_read_as_sentences() {
    let error = DecodeError::Truncated {
        message: "Insert",
        field: "relation OID",
        offset: 1,
    };
    assert_eq!(
        error.to_string(),
        "pgoutput Insert message truncated at byte 1 while reading relation OID"
    );
    assert_eq!(
        DecodeError::UnknownTag(b'Z').to_string(),
        "unknown pgoutput message tag 0x5a: the server may speak a newer protocol version than requested"
    );
}

/// A test-only encoder: the inverse of [`Decoder::decode`]; writes the xid iff it is `Some`.
fn encode(message: &Message<'_>) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(text.as_bytes());
        out.push(0);
    }
    fn xid(out: &mut Vec<u8>, xid: Option<u32>) {
        if let Some(xid) = xid {
            out.extend_from_slice(&xid.to_be_bytes());
        }
    }
    fn timestamp(out: &mut Vec<u8>, unix_us: i64) {
        out.extend_from_slice(&(unix_us - PG_EPOCH_OFFSET_US).to_be_bytes());
    }
    fn tuple(out: &mut Vec<u8>, values: &Tuple<'_>) {
        out.extend_from_slice(&u16::try_from(values.len()).unwrap().to_be_bytes());
        for value in values {
            let (kind, bytes) = match value {
                TupleValue::Null => (b'n', None),
                TupleValue::UnchangedToast => (b'u', None),
                TupleValue::Text(bytes) => (b't', Some(bytes)),
                TupleValue::Binary(bytes) => (b'b', Some(bytes)),
            };
            out.push(kind);
            if let Some(bytes) = bytes {
                out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    fn old_tuple(out: &mut Vec<u8>, old: &OldTuple<'_>) {
        match old {
            OldTuple::Key(_) => out.push(b'K'),
            OldTuple::Full(_) => out.push(b'O'),
        }
        tuple(out, old.tuple());
    }

    let mut out = Vec::new();
    match message {
        Message::Begin(begin) => {
            out.push(b'B');
            out.extend_from_slice(&begin.final_lsn.0.to_be_bytes());
            timestamp(&mut out, begin.commit_ts_us);
            out.extend_from_slice(&begin.xid.to_be_bytes());
        }
        Message::Commit(commit) => {
            out.extend_from_slice(&[b'C', commit.flags]);
            out.extend_from_slice(&commit.commit_lsn.0.to_be_bytes());
            out.extend_from_slice(&commit.end_lsn.0.to_be_bytes());
            timestamp(&mut out, commit.commit_ts_us);
        }
        Message::Origin(origin) => {
            out.push(b'O');
            out.extend_from_slice(&origin.commit_lsn.0.to_be_bytes());
            string(&mut out, origin.name);
        }
        Message::Relation(relation) => {
            out.push(b'R');
            xid(&mut out, relation.xid);
            out.extend_from_slice(&relation.relation_id.to_be_bytes());
            string(&mut out, &relation.namespace);
            string(&mut out, &relation.name);
            out.push(relation.replica_identity);
            let count = u16::try_from(relation.columns.len()).unwrap();
            out.extend_from_slice(&count.to_be_bytes());
            for column in &relation.columns {
                out.push(column.flags);
                string(&mut out, &column.name);
                out.extend_from_slice(&column.type_oid.to_be_bytes());
                out.extend_from_slice(&column.type_modifier.to_be_bytes());
            }
        }
        Message::Type(type_message) => {
            out.push(b'Y');
            xid(&mut out, type_message.xid);
            out.extend_from_slice(&type_message.type_oid.to_be_bytes());
            string(&mut out, &type_message.namespace);
            string(&mut out, &type_message.name);
        }
        Message::Insert(insert) => {
            out.push(b'I');
            xid(&mut out, insert.xid);
            out.extend_from_slice(&insert.relation_id.to_be_bytes());
            out.push(b'N');
            tuple(&mut out, &insert.new);
        }
        Message::Update(update) => {
            out.push(b'U');
            xid(&mut out, update.xid);
            out.extend_from_slice(&update.relation_id.to_be_bytes());
            if let Some(old) = &update.old {
                old_tuple(&mut out, old);
            }
            out.push(b'N');
            tuple(&mut out, &update.new);
        }
        Message::Delete(delete) => {
            out.push(b'D');
            xid(&mut out, delete.xid);
            out.extend_from_slice(&delete.relation_id.to_be_bytes());
            old_tuple(&mut out, &delete.old);
        }
        Message::Truncate(truncate) => {
            out.push(b'T');
            xid(&mut out, truncate.xid);
            let count = u32::try_from(truncate.relation_ids.len()).unwrap();
            out.extend_from_slice(&count.to_be_bytes());
            out.push(truncate.options);
            for id in &truncate.relation_ids {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        Message::Message(message) => {
            out.push(b'M');
            xid(&mut out, message.xid);
            out.push(u8::from(message.transactional));
            out.extend_from_slice(&message.lsn.0.to_be_bytes());
            string(&mut out, message.prefix);
            let length = u32::try_from(message.content.len()).unwrap();
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(message.content);
        }
        Message::StreamStart(start) => {
            out.push(b'S');
            out.extend_from_slice(&start.xid.to_be_bytes());
            out.push(u8::from(start.first_segment));
        }
        Message::StreamStop => out.push(b'E'),
        Message::StreamCommit(commit) => {
            out.push(b'c');
            out.extend_from_slice(&commit.xid.to_be_bytes());
            out.push(commit.flags);
            out.extend_from_slice(&commit.commit_lsn.0.to_be_bytes());
            out.extend_from_slice(&commit.end_lsn.0.to_be_bytes());
            timestamp(&mut out, commit.commit_ts_us);
        }
        Message::StreamAbort(abort) => {
            out.push(b'A');
            out.extend_from_slice(&abort.xid.to_be_bytes());
            out.extend_from_slice(&abort.subxid.to_be_bytes());
        }
    }
    out
}

/// The decoder state a message needs: the open block's xid, if any.
fn required_stream(message: &Message<'_>) -> Option<u32> {
    match message {
        Message::Relation(Relation { xid, .. })
        | Message::Type(TypeMessage { xid, .. })
        | Message::Insert(Insert { xid, .. })
        | Message::Update(Update { xid, .. })
        | Message::Delete(Delete { xid, .. })
        | Message::Truncate(Truncate { xid, .. })
        | Message::Message(LogicalMessage { xid, .. }) => *xid,
        Message::StreamStop => Some(1),
        _ => None,
    }
}

fn decoder_for(message: &Message<'_>) -> Decoder {
    let mut decoder = Decoder::new();
    if let Some(xid) = required_stream(message) {
        decoder
            .decode(&encode(&Message::StreamStart(StreamStart {
                xid,
                first_segment: true,
            })))
            .unwrap();
    }
    decoder
}

// Generated messages borrow their strings and bytes like decoded ones do; leaking those few
// small test values is the simplest way to give them the 'static lifetime a strategy needs.
fn leaked_str() -> impl Strategy<Value = &'static str> {
    "[^\\x00]{0,10}".prop_map(|text| &*Box::leak(text.into_boxed_str()))
}

fn leaked_bytes() -> impl Strategy<Value = &'static [u8]> {
    proptest::collection::vec(any::<u8>(), 0..12).prop_map(|bytes| &*bytes.leak())
}

fn name() -> impl Strategy<Value = String> {
    "[^\\x00]{0,10}"
}

fn lsn_value() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn unix_timestamp() -> impl Strategy<Value = i64> {
    (i64::MIN..=i64::MAX - PG_EPOCH_OFFSET_US).prop_map(|pg| pg + PG_EPOCH_OFFSET_US)
}

fn stream_xid() -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(any::<u32>())
}

fn tuple_strategy() -> impl Strategy<Value = Tuple<'static>> {
    let value = prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        leaked_bytes().prop_map(TupleValue::Text),
        leaked_bytes().prop_map(TupleValue::Binary),
    ];
    proptest::collection::vec(value, 0..6)
}

fn old_tuple_strategy() -> impl Strategy<Value = OldTuple<'static>> {
    prop_oneof![
        tuple_strategy().prop_map(OldTuple::Key),
        tuple_strategy().prop_map(OldTuple::Full),
    ]
}

fn message_strategy() -> impl Strategy<Value = Message<'static>> {
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    );
    prop_oneof![
        (lsn_value(), unix_timestamp(), any::<u32>()).prop_map(|(final_lsn, commit_ts_us, xid)| {
            Message::Begin(Begin {
                final_lsn,
                commit_ts_us,
                xid,
            })
        }),
        (any::<u8>(), lsn_value(), lsn_value(), unix_timestamp()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_ts_us)| Message::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_ts_us,
            })
        ),
        (lsn_value(), leaked_str())
            .prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
        (
            stream_xid(),
            any::<u32>(),
            name(),
            name(),
            any::<u8>(),
            proptest::collection::vec(column, 0..5),
        )
            .prop_map(
                |(xid, relation_id, namespace, name, replica_identity, columns)| {
                    Message::Relation(Relation {
                        xid,
                        relation_id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }
            ),
        (stream_xid(), any::<u32>(), name(), name()).prop_map(
            |(xid, type_oid, namespace, name)| Message::Type(TypeMessage {
                xid,
                type_oid,
                namespace,
                name,
            })
        ),
        (stream_xid(), any::<u32>(), tuple_strategy()).prop_map(|(xid, relation_id, new)| {
            Message::Insert(Insert {
                xid,
                relation_id,
                new,
            })
        }),
        (
            stream_xid(),
            any::<u32>(),
            proptest::option::of(old_tuple_strategy()),
            tuple_strategy(),
        )
            .prop_map(|(xid, relation_id, old, new)| Message::Update(Update {
                xid,
                relation_id,
                old,
                new,
            })),
        (stream_xid(), any::<u32>(), old_tuple_strategy()).prop_map(|(xid, relation_id, old)| {
            Message::Delete(Delete {
                xid,
                relation_id,
                old,
            })
        }),
        (
            stream_xid(),
            any::<u8>(),
            proptest::collection::vec(any::<u32>(), 0..5),
        )
            .prop_map(|(xid, options, relation_ids)| Message::Truncate(Truncate {
                xid,
                options,
                relation_ids,
            })),
        (
            stream_xid(),
            any::<bool>(),
            lsn_value(),
            leaked_str(),
            leaked_bytes(),
        )
            .prop_map(|(xid, transactional, lsn, prefix, content)| {
                Message::Message(LogicalMessage {
                    xid,
                    transactional,
                    lsn,
                    prefix,
                    content,
                })
            }),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            Message::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(Message::StreamStop),
        (
            any::<u32>(),
            any::<u8>(),
            lsn_value(),
            lsn_value(),
            unix_timestamp()
        )
            .prop_map(|(xid, flags, commit_lsn, end_lsn, commit_ts_us)| {
                Message::StreamCommit(StreamCommit {
                    xid,
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_ts_us,
                })
            }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(xid, subxid)| Message::StreamAbort(StreamAbort { xid, subxid })),
    ]
}

const TAGS: &[u8] = b"BCORYIUDTMSEcA";

proptest! {
    #[test]
    fn round_trips_and_every_truncation_fails(message in message_strategy()) {
        let bytes = encode(&message);
        let decoder = decoder_for(&message);

        let mut whole = decoder.clone();
        prop_assert_eq!(whole.decode(&bytes), Ok(message.clone()));

        for end in 0..bytes.len() {
            let mut truncated = decoder.clone();
            let prefix = bytes.get(..end).unwrap();
            prop_assert!(truncated.decode(prefix).is_err(), "prefix of {} bytes decoded", end);
            prop_assert_eq!(&truncated, &decoder, "a failed decode changed the state");
        }

        let mut longer = decoder.clone();
        let mut extended = bytes.clone();
        extended.push(0);
        prop_assert!(longer.decode(&extended).is_err());
    }

    #[test]
    fn random_bytes_never_panic(
        tag in proptest::sample::select(TAGS),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        open in stream_xid(),
    ) {
        let mut decoder = Decoder::new();
        if let Some(xid) = open {
            decoder.decode(&[&[b'S'][..], &xid.to_be_bytes(), &[1]].concat()).unwrap();
        }
        let tagged = [&[tag][..], &body].concat();
        let _ = decoder.clone().decode(&tagged);
        let _ = decoder.decode(&body);
    }

    #[test]
    fn flipped_bytes_never_panic(
        message in message_strategy(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode(&message);
        let index = position.index(bytes.len());
        if let Some(slot) = bytes.get_mut(index) {
            *slot = byte;
        }
        let _ = decoder_for(&message).decode(&bytes);
    }
}
