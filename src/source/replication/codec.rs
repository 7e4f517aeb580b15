//! Sans-IO framing of backend messages and the replication sub-protocol inside CopyData.
//! `decode` returns `Ok(None)` when more bytes are needed and never panics on any input.

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;

use super::ReplicationError;
use crate::lsn::Lsn;

/// CopyBothResponse; postgres-protocol's parser does not know it (SPEC §9).
const COPY_BOTH_RESPONSE_TAG: u8 = b'W';
/// XLogData inside CopyData: `w`, wal start, wal end, send time, then the plugin's bytes.
const XLOG_DATA_TAG: u8 = b'w';
const XLOG_DATA_HEADER_LEN: usize = 1 + 8 + 8 + 8;
/// Primary keepalive inside CopyData: `k`, wal end, send time, reply-requested flag.
const KEEPALIVE_TAG: u8 = b'k';
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;
/// Standby status update: `r`, written, flushed, applied, clock, reply-requested flag.
const STATUS_UPDATE_TAG: u8 = b'r';
const STATUS_UPDATE_LEN: usize = 1 + 8 + 8 + 8 + 8 + 1;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
/// Longest backend message accepted, length field included. The server builds each message in
/// a buffer of at most 1 GiB (`MaxAllocSize`), so a longer length is a corrupt stream.
const MAX_MESSAGE_LEN: usize = 1 << 30;
/// Most buffer space reserved ahead of an incomplete message's bytes: its length field alone
/// must not allocate (up to 4 GiB); a large message grows the buffer as its bytes arrive.
const MAX_RESERVE_AHEAD: usize = 1 << 20;

/// One backend message: what postgres-protocol parses, plus CopyBothResponse.
pub(crate) enum Backend {
    /// The server entered CopyBoth mode (START_REPLICATION accepted).
    CopyBothResponse,
    /// Any message postgres-protocol knows.
    Message(Message),
}

/// Splits the next complete message off `buf`; `Ok(None)` when it is not complete yet.
pub(crate) fn decode(buf: &mut BytesMut) -> Result<Option<Backend>, ReplicationError> {
    let (Some(&tag), Some(len)) = (buf.first(), be_u32(buf, 1)) else {
        return Ok(None);
    };
    // postgres-protocol reserves a whole message's length as soon as it sees the header, so
    // only complete messages of a sane length go to it.
    let total = usize::try_from(len)
        .ok()
        .filter(|len| (4..=MAX_MESSAGE_LEN).contains(len))
        .and_then(|len| len.checked_add(1))
        .ok_or_else(|| {
            ReplicationError::Protocol(format!(
                "message of type {:?} from the server with length {len}",
                char::from(tag)
            ))
        })?;
    if buf.len() < total {
        buf.reserve((total - buf.len()).min(MAX_RESERVE_AHEAD));
        return Ok(None);
    }
    if tag != COPY_BOTH_RESPONSE_TAG {
        return Message::parse(buf)
            .map(|message| message.map(Backend::Message))
            .map_err(|e| {
                ReplicationError::Protocol(format!("malformed message from the server: {e}"))
            });
    }
    let frame = buf.split_to(total);
    // Same layout as CopyOutResponse: overall format, column count, one format per column.
    match be_u16(&frame, 6) {
        Some(columns) if total == 8 + 2 * usize::from(columns) => {
            Ok(Some(Backend::CopyBothResponse))
        }
        _ => Err(ReplicationError::Protocol(format!(
            "malformed CopyBothResponse of {total} bytes"
        ))),
    }
}

/// A message of the logical replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// WAL data: for pgoutput, one pgoutput message.
    XLogData {
        /// WAL position this data starts at (0/0 for messages not tied to one).
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// The server's clock when it sent this, µs since the Unix epoch.
        server_time_us: i64,
        /// The output plugin's bytes.
        data: Bytes,
    },
    /// The server's heartbeat; answer with a status update when `reply_requested`.
    Keepalive {
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// The server's clock when it sent this, µs since the Unix epoch.
        server_time_us: i64,
        /// The server disconnects after `wal_sender_timeout` unless a status update arrives.
        reply_requested: bool,
    },
}

/// Reads XLogData or a keepalive out of a CopyData body, slicing (not copying) the data.
pub(crate) fn parse_replication_message(
    mut body: Bytes,
) -> Result<ReplicationMessage, ReplicationError> {
    match body.first() {
        Some(&XLOG_DATA_TAG) => match (be_u64(&body, 1), be_u64(&body, 9), be_u64(&body, 17)) {
            (Some(start), Some(end), Some(time)) => Ok(ReplicationMessage::XLogData {
                wal_start: Lsn(start),
                wal_end: Lsn(end),
                server_time_us: pg_to_unix_us(time),
                data: body.split_off(XLOG_DATA_HEADER_LEN),
            }),
            _ => Err(truncated("XLogData", body.len())),
        },
        Some(&KEEPALIVE_TAG) => match (be_u64(&body, 1), be_u64(&body, 9), body.get(17)) {
            (Some(end), Some(time), Some(&reply)) if body.len() == KEEPALIVE_LEN => {
                Ok(ReplicationMessage::Keepalive {
                    wal_end: Lsn(end),
                    server_time_us: pg_to_unix_us(time),
                    reply_requested: reply != 0,
                })
            }
            _ => Err(truncated("keepalive", body.len())),
        },
        Some(&tag) => Err(ReplicationError::Protocol(format!(
            "unknown replication message type {:?} in CopyData",
            char::from(tag)
        ))),
        None => Err(ReplicationError::Protocol(
            "empty CopyData in the replication stream".into(),
        )),
    }
}

/// Appends a standby status update, framed as CopyData.
pub(crate) fn encode_status(
    out: &mut BytesMut,
    written: Lsn,
    flushed: Lsn,
    applied: Lsn,
    clock_unix_us: i64,
    reply_requested: bool,
) {
    out.reserve(1 + 4 + STATUS_UPDATE_LEN);
    out.put_u8(b'd');
    // STATUS_UPDATE_LEN is a small constant, so the cast cannot truncate.
    out.put_u32(4 + STATUS_UPDATE_LEN as u32);
    out.put_u8(STATUS_UPDATE_TAG);
    out.put_u64(written.0);
    out.put_u64(flushed.0);
    out.put_u64(applied.0);
    out.put_i64(clock_unix_us.saturating_sub(PG_EPOCH_OFFSET_US));
    out.put_u8(u8::from(reply_requested));
}

/// A PostgreSQL timestamp (µs since 2000-01-01) as µs since the Unix epoch.
fn pg_to_unix_us(pg_us: u64) -> i64 {
    // The wire carries a signed value; reinterpret the bits.
    (pg_us as i64).saturating_add(PG_EPOCH_OFFSET_US)
}

/// The local clock in µs since the Unix epoch.
pub(crate) fn now_unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn truncated(what: &str, len: usize) -> ReplicationError {
    ReplicationError::Protocol(format!("truncated {what} message of {len} bytes"))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(slice.try_into().ok()?))
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let slice = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(slice.try_into().ok()?))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(slice.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend message: tag, length, body.
    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn xlog_data(start: u64, end: u64, time: i64, data: &[u8]) -> Vec<u8> {
        let mut body = vec![b'w'];
        body.extend_from_slice(&start.to_be_bytes());
        body.extend_from_slice(&end.to_be_bytes());
        body.extend_from_slice(&time.to_be_bytes());
        body.extend_from_slice(data);
        body
    }

    fn keepalive(end: u64, time: i64, reply: u8) -> Vec<u8> {
        let mut body = vec![b'k'];
        body.extend_from_slice(&end.to_be_bytes());
        body.extend_from_slice(&time.to_be_bytes());
        body.push(reply);
        body
    }

    /// CopyBothResponse with binary format and zero columns, as a walsender sends it.
    const COPY_BOTH: [u8; 8] = [b'W', 0, 0, 0, 7, 0, 0, 0];

    fn stream_fixture() -> Vec<u8> {
        let mut bytes = COPY_BOTH.to_vec();
        bytes.extend(frame(
            b'd',
            &xlog_data(0x16_B374_D848, 0x16_B374_D900, 1_000_000, b"Bxyz"),
        ));
        bytes.extend(frame(b'd', &keepalive(0x16_B374_D900, -5, 1)));
        bytes.extend(frame(b'c', &[]));
        bytes
    }

    fn decode_all(bytes: &[u8]) -> Vec<String> {
        let mut buf = BytesMut::from(bytes);
        let mut seen = Vec::new();
        while let Some(message) = decode(&mut buf).unwrap() {
            seen.push(match message {
                Backend::CopyBothResponse => "W".to_string(),
                Backend::Message(Message::CopyData(body)) => {
                    format!(
                        "{:?}",
                        parse_replication_message(body.into_bytes()).unwrap()
                    )
                }
                Backend::Message(Message::CopyDone) => "c".to_string(),
                Backend::Message(_) => "other".to_string(),
            });
        }
        assert!(buf.is_empty());
        seen
    }

    #[test]
    fn decodes_copy_both_xlogdata_keepalive_and_copy_done() {
        let seen = decode_all(&stream_fixture());
        assert_eq!(
            seen,
            vec![
                "W".to_string(),
                format!(
                    "{:?}",
                    ReplicationMessage::XLogData {
                        wal_start: Lsn(0x16_B374_D848),
                        wal_end: Lsn(0x16_B374_D900),
                        server_time_us: 946_684_801_000_000,
                        data: Bytes::from_static(b"Bxyz"),
                    }
                ),
                format!(
                    "{:?}",
                    ReplicationMessage::Keepalive {
                        wal_end: Lsn(0x16_B374_D900),
                        server_time_us: 946_684_799_999_995,
                        reply_requested: true,
                    }
                ),
                "c".to_string(),
            ]
        );
    }

    #[test]
    fn every_prefix_waits_for_more_bytes_without_panicking() {
        let bytes = stream_fixture();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut complete = 0;
            while let Some(_message) = decode(&mut buf).unwrap() {
                complete += 1;
            }
            assert!(complete <= 3, "cut {cut}");
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_messages() {
        let bytes = stream_fixture();
        let mut buf = BytesMut::new();
        let mut count = 0;
        for byte in bytes {
            buf.put_u8(byte);
            while decode(&mut buf).unwrap().is_some() {
                count += 1;
            }
        }
        assert_eq!(count, 4);
    }

    #[test]
    fn xlogdata_is_a_slice_of_the_read_buffer() {
        let mut buf = BytesMut::from(&frame(b'd', &xlog_data(1, 2, 3, b"payload"))[..]);
        let start = buf.as_ptr() as usize;
        let Some(Backend::Message(Message::CopyData(body))) = decode(&mut buf).unwrap() else {
            panic!("expected CopyData");
        };
        let ReplicationMessage::XLogData { data, .. } =
            parse_replication_message(body.into_bytes()).unwrap()
        else {
            panic!("expected XLogData");
        };
        assert_eq!(&data[..], b"payload");
        assert_eq!(data.as_ptr() as usize, start + 5 + 25);
    }

    #[test]
    fn truncated_replication_messages_are_errors() {
        let xlog = xlog_data(1, 2, 3, b"");
        for cut in 0..xlog.len() {
            let result = parse_replication_message(Bytes::copy_from_slice(&xlog[..cut]));
            assert!(result.is_err(), "XLogData cut at {cut}");
        }
        let empty = parse_replication_message(Bytes::copy_from_slice(&xlog)).unwrap();
        assert!(matches!(empty, ReplicationMessage::XLogData { data, .. } if data.is_empty()));
        let ka = keepalive(1, 2, 0);
        for cut in 0..ka.len() {
            assert!(parse_replication_message(Bytes::copy_from_slice(&ka[..cut])).is_err());
        }
        let mut long = ka.clone();
        long.push(0);
        assert!(parse_replication_message(Bytes::from(long)).is_err());
        let error = parse_replication_message(Bytes::from_static(b"zabc")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "replication protocol violation: unknown replication message type 'z' in CopyData"
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        // Length below 4.
        assert!(decode(&mut BytesMut::from(&[b'W', 0, 0, 0, 3][..])).is_err());
        assert!(decode(&mut BytesMut::from(&[b'd', 0, 0, 0, 3][..])).is_err());
        // Column count disagreeing with the length.
        assert!(decode(&mut BytesMut::from(&[b'W', 0, 0, 0, 7, 0, 0, 1][..])).is_err());
        // Unknown tag.
        assert!(decode(&mut BytesMut::from(&frame(b'?', b"")[..])).is_err());
        // Two text columns: valid.
        let mut two = BytesMut::from(&frame(b'W', &[0, 0, 2, 0, 0, 0, 0])[..]);
        assert!(matches!(
            decode(&mut two).unwrap(),
            Some(Backend::CopyBothResponse)
        ));
    }

    #[test]
    fn a_length_field_alone_allocates_little_and_a_huge_one_is_refused() {
        // Found by the copy_data fuzz target: a CopyData header claiming 4 GiB made
        // postgres-protocol reserve 4 GiB before a single byte of the body had arrived.
        for tag in [b'd', b'W'] {
            let mut huge = BytesMut::from(&[tag, 0xff, 0xff, 0xff, 0xff][..]);
            let error = decode(&mut huge).err().expect("refused").to_string();
            assert!(error.contains("with length 4294967295"), "{error}");
            assert!(huge.capacity() < 1 << 20);
        }
        let mut large = BytesMut::from(&[b'd', 0x40, 0, 0, 0][..]);
        assert!(decode(&mut large).unwrap().is_none());
        assert!(large.capacity() <= 5 + MAX_RESERVE_AHEAD);
        assert!(decode(&mut BytesMut::from(&[b'd', 0x40, 0, 0, 1][..])).is_err());
    }

    #[test]
    fn status_update_layout() {
        let mut out = BytesMut::new();
        let clock = PG_EPOCH_OFFSET_US + 0x0102;
        encode_status(&mut out, Lsn(0x10), Lsn(0x20), Lsn(0x30), clock, true);
        let mut expected = vec![b'd', 0, 0, 0, 38, b'r'];
        expected.extend_from_slice(&0x10u64.to_be_bytes());
        expected.extend_from_slice(&0x20u64.to_be_bytes());
        expected.extend_from_slice(&0x30u64.to_be_bytes());
        expected.extend_from_slice(&0x0102i64.to_be_bytes());
        expected.push(1);
        assert_eq!(&out[..], &expected[..]);
    }
}
