//! The bodies of the cargo-fuzz targets under `fuzz/`, one function per target, each feeding
//! outside bytes to the real parser of them. They live here, not in `fuzz/`, so the corpus
//! replay test below runs the very same code under `cargo test`, and they can reach the
//! crate-private parsers without widening the public API. Every function must return (an
//! error is fine) for every input: a panic, a hang or a huge allocation is a bug.

use std::sync::{Arc, LazyLock};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use postgres_protocol::message::backend::Message;

use crate::config::{ConfigFile, Format, SinkConfig, SourceConfig};
use crate::encode::decode::{RecordDecoder, TargetTypes};
use crate::encode::registry::{self, RegistryClient};
use crate::source::ddl::message::DdlMessage;
use crate::source::pgoutput::{Decoder, Message as PgOutput};
use crate::source::replication::codec::{self, Backend};
use crate::source::replication::ReplicationMessage;

/// Registry ids of the fixed table's key and value schemas in `fuzz/avro/` (captured from the
/// encoder; the Avro seeds carry these ids).
const AVRO_KEY_ID: u32 = 9;
const AVRO_VALUE_ID: u32 = 10;
/// Id under which `registry_response` caches a fetched schema before decoding with it.
const FETCHED_ID: u32 = 1;
/// Nothing listens on the discard port of loopback; an id the cache lacks fails to fetch.
const NO_REGISTRY: &str = "http://127.0.0.1:9";
/// A Stream Start for xid 7, first segment: puts a decoder inside a streamed block.
const STREAM_START: [u8; 6] = [b'S', 0, 0, 0, 7, 1];
/// Key length meaning "the record has no key" in `decode` inputs.
const NO_KEY: u16 = u16::MAX;

/// The registry clients are built once: building one loads the system's TLS roots.
static AVRO_REGISTRY: LazyLock<Arc<RegistryClient>> = LazyLock::new(|| {
    let client = RegistryClient::new(NO_REGISTRY).expect("a valid URL");
    client.cache_schemas([
        (AVRO_KEY_ID, include_str!("../fuzz/avro/key.avsc")),
        (AVRO_VALUE_ID, include_str!("../fuzz/avro/value.avsc")),
    ]);
    Arc::new(client)
});
static FETCHED_REGISTRY: LazyLock<Arc<RegistryClient>> =
    LazyLock::new(|| Arc::new(RegistryClient::new(NO_REGISTRY).expect("a valid URL")));
/// Context for the registry client's timers and sockets when a decode needs an uncached id.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// `pgoutput`: one pgoutput message, decoded outside and inside a streamed block (where
/// most messages carry an extra xid); a logical decoding message's content is read as a DDL
/// capture message, as the source does with those of its prefix.
pub fn pgoutput(data: &[u8]) {
    let _ = Decoder::new().decode(data);
    let mut in_stream = Decoder::new();
    in_stream
        .decode(&STREAM_START)
        .expect("Stream Start opens a block");
    if let Ok(PgOutput::Message(message)) = in_stream.decode(data) {
        let _ = DdlMessage::parse(message.content);
    }
}

/// `copy_data`: the bytes as one CopyData body (XLogData or keepalive), then as a stream of
/// backend messages whose CopyData bodies go the same way, XLogData payloads on to pgoutput.
pub fn copy_data(data: &[u8]) {
    let _ = codec::parse_replication_message(Bytes::copy_from_slice(data));
    let mut buf = BytesMut::from(data);
    let mut decoder = Decoder::new();
    while let Ok(Some(backend)) = codec::decode(&mut buf) {
        if let Backend::Message(Message::CopyData(body)) = backend {
            if let Ok(ReplicationMessage::XLogData { data, .. }) =
                codec::parse_replication_message(body.into_bytes())
            {
                let _ = decoder.decode(&data);
            }
        }
    }
}

/// `decode`: a Kafka record as the sink decodes it. Layout: a format byte (odd: Avro against
/// the fixed schemas of `fuzz/avro/`, even: JSON), the key's length as a big-endian u16
/// (`0xffff`: no key), the key, then the value.
pub fn decode(data: &[u8]) {
    if let Some(mut record) = Record::split(data) {
        let _ = block(record.decoder.decode(record.key, Some(record.value)));
    }
}

/// A `decode` input taken apart.
struct Record<'d> {
    decoder: RecordDecoder,
    key: Option<&'d [u8]>,
    value: &'d [u8],
}

impl<'d> Record<'d> {
    fn split(data: &'d [u8]) -> Option<Record<'d>> {
        let (&format, rest) = data.split_first()?;
        let (length, rest) = rest.split_first_chunk::<2>()?;
        let (key, value) = match u16::from_be_bytes(*length) {
            NO_KEY => (None, rest),
            length => {
                let (key, value) = rest.split_at(usize::from(length).min(rest.len()));
                (Some(key), value)
            }
        };
        let decoder = if format % 2 == 1 {
            RecordDecoder::new(
                Format::Avro,
                Some(Arc::clone(&AVRO_REGISTRY)),
                TargetTypes::default(),
            )
        } else {
            RecordDecoder::new(Format::Json, None, TargetTypes::default())
        };
        Some(Record {
            decoder,
            key,
            value,
        })
    }
}

/// `config`: configuration text, then after a NUL byte `NAME=VALUE` lines as the environment,
/// through the loading and validation of both programs' configurations.
pub fn config(data: &[u8]) {
    let (text, env) = match data.iter().position(|&byte| byte == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let _ = SourceConfig::from_toml_str(&text, env.clone());
    let _ = SinkConfig::from_toml_str(&text, env);
}

/// `registry_response`: an HTTP status (big-endian u16) and a response body, read as the
/// client reads answers; a schema it yields is then parsed and planned as the sink does with
/// a fetched schema, and the Avro datum after a NUL byte (never part of JSON text) decoded
/// with it.
pub fn registry_response(data: &[u8]) {
    let Some((status, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (body, datum) = match rest.iter().position(|&byte| byte == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };
    let body = String::from_utf8_lossy(body);
    let url = reqwest::Url::parse(NO_REGISTRY).expect("a valid URL");
    let Ok(answer) = registry::parse_response(&url, u16::from_be_bytes(*status), &body) else {
        return;
    };
    let _ = registry::registered_id(&answer, &url);
    let Ok(schema) = registry::schema_text(&answer, &url) else {
        return;
    };
    FETCHED_REGISTRY.cache_schemas([(FETCHED_ID, &*schema)]);
    let mut decoder = RecordDecoder::new(
        Format::Avro,
        Some(Arc::clone(&FETCHED_REGISTRY)),
        TargetTypes::default(),
    );
    let record = [&[0][..], &FETCHED_ID.to_be_bytes(), datum].concat();
    let _ = block(decoder.decode(None, Some(&record)));
}

/// Runs a decode that awaits only for a registry request; one that would (an id the cache
/// lacks) is dropped, `None`, instead of waiting on the network.
fn block<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    let _context = RUNTIME.enter();
    future.now_or_never()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every committed seed of every target goes through the target's function, so a
    /// crashing input once fixed and added to the corpus stays fixed.
    #[test]
    fn seed_corpora_replay_without_panicking() {
        type Body = fn(&[u8]);
        let targets: [(&str, Body); 5] = [
            ("pgoutput", pgoutput),
            ("copy_data", copy_data),
            ("decode", decode),
            ("config", config),
            ("registry_response", registry_response),
        ];
        let corpora = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (target, body) in targets {
            let mut seeds = 0;
            for entry in std::fs::read_dir(corpora.join(target)).unwrap() {
                let path = entry.unwrap().path();
                body(&std::fs::read(&path).unwrap());
                seeds += 1;
            }
            assert!(seeds > 0, "no seeds for {target}");
        }
    }

    /// The captured records (named after their format) still decode: the fixed schemas and
    /// the seeds match what the encoder writes.
    #[test]
    fn captured_records_decode() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
        for format in ["avro", "json"] {
            for op in ["create", "update", "delete", "read", "truncate"] {
                let data = std::fs::read(corpus.join(format!("{format}-{op}"))).unwrap();
                let mut record = Record::split(&data).unwrap();
                let change = block(record.decoder.decode(record.key, Some(record.value)));
                assert!(
                    matches!(change, Some(Ok(Some(_)))),
                    "{format}-{op}: {change:?}"
                );
            }
        }
    }
}
