//! Records the decoder must refuse with an error naming the problem, and never panic on.

use std::cell::RefCell;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

use super::*;

fn wire_error(error: DecodeError) -> (&'static str, String) {
    match error {
        DecodeError::WireFormat { part, detail } => (part, detail),
        other => panic!("expected a wire-format error, got {other:?}"),
    }
}

#[tokio::test]
async fn avro_headers_ids_and_registry_failures() {
    let mut harness = Harness::new(Format::Avro).await;
    let insert = event(&item_table(), Op::Create, None, Some(item_row(1, None, 5)));
    let record = harness.encode(&insert).await;
    let value = record.value.clone().unwrap();
    let key = record.key.clone().unwrap();
    let decode = async |harness: &mut Harness, key: Option<Vec<u8>>, value: Vec<u8>| {
        let record = Record {
            key,
            value: Some(value),
            ..record.clone()
        };
        harness.decode(&record).await
    };

    let mut bad_magic = value.clone();
    bad_magic[0] = 1;
    let error = decode(&mut harness, Some(key.clone()), bad_magic)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "value is not in the Confluent wire format: magic byte 1, expected 0"
    );
    let error = decode(&mut harness, Some(vec![0, 0]), value.clone())
        .await
        .unwrap_err();
    assert_eq!(wire_error(error).0, "key");

    let with_id = |id: u32| {
        let mut bytes = value.clone();
        bytes[1..5].copy_from_slice(&id.to_be_bytes());
        bytes
    };
    let error = decode(&mut harness, Some(key.clone()), with_id(9_999))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        DecodeError::UnknownSchema {
            part: "value",
            id: 9_999
        }
    ));
    assert!(!error.is_transient());
    let error = decode(&mut harness, Some(key.clone()), with_id(FAILING_ID))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DecodeError::Registry { id: FAILING_ID, .. }),
        "{error}"
    );
    assert!(error.is_transient());

    let mut trailing = value.clone();
    trailing.push(0);
    let error = decode(&mut harness, Some(key.clone()), trailing)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed value: 1 bytes after the end of the datum: the schema does not match the data"
    );

    // Every strict prefix is an error: a short header or a truncated datum.
    for cut in 0..value.len() {
        let error = decode(&mut harness, Some(key.clone()), value[..cut].to_vec())
            .await
            .unwrap_err();
        if cut < 5 {
            wire_error(error);
        } else {
            assert!(
                matches!(error, DecodeError::Malformed { .. }),
                "{cut}: {error}"
            );
        }
    }

    let mut unregistered = RecordDecoder::new(Format::Avro, None, TargetTypes::default());
    let error = unregistered
        .decode(Some(&key), Some(&value))
        .await
        .unwrap_err();
    assert!(matches!(error, DecodeError::NoRegistry));
    let nowhere = Arc::new(RegistryClient::new("http://127.0.0.1:9").unwrap());
    let error = RecordDecoder::new(Format::Avro, Some(nowhere), TargetTypes::default())
        .decode(Some(&key), Some(&value))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    let (value_id, _) = confluent_header("value", &value).unwrap();
    assert!(
        error.to_string().starts_with(&format!(
            "fetching value schema id {value_id}: schema registry unreachable"
        )),
        "{error}"
    );
}

#[tokio::test]
async fn records_that_are_not_change_events_are_refused() {
    for format in FORMATS {
        let mut harness = Harness::new(format).await;
        let heartbeat = harness.encoder.encode_heartbeat(1).unwrap();
        let error = harness.decode(&heartbeat).await.unwrap_err();
        assert!(
            matches!(&error, DecodeError::Schema { detail, .. }
                if detail.contains("is not a change-event Envelope")),
            "{format:?}: {error}"
        );
        assert!(!error.is_transient());
    }
}

/// The JSON value of `record` with `from` replaced by `to`.
fn edited(record: &Record, from: &str, to: &str) -> Record {
    let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
    assert!(value.contains(from), "{from} not in {value}");
    Record {
        value: Some(value.replacen(from, to, 1).into_bytes()),
        ..record.clone()
    }
}

#[tokio::test]
async fn json_envelope_errors_name_the_problem() {
    let mut harness = Harness::new(Format::Json).await;
    let table = item_table();
    let insert = harness
        .encode(&event(&table, Op::Create, None, Some(item_row(1, None, 5))))
        .await;
    let delete = harness
        .encode(&event(&table, Op::Delete, Some(item_row(1, None, 5)), None))
        .await;
    let mut message = async |record: Record| harness.decode(&record).await.unwrap_err().to_string();

    assert_eq!(
        message(edited(&insert, r#""op":"c""#, r#""op":"x""#)).await,
        r#"op "x" is not one of c, u, d, r, t"#
    );
    assert_eq!(
        message(edited(&delete, r#""op":"d""#, r#""op":"c""#)).await,
        "a 'c' event without its after image"
    );
    assert_eq!(
        message(edited(
            &insert,
            r#""after":{"id":1"#,
            r#""after":{"id":"one""#
        ))
        .await,
        r#"column id: a Int column cannot hold Str("one")"#
    );
    assert_eq!(
        message(edited(&insert, r#""price":"AAU=""#, r#""price":"A""#)).await,
        r#"column price: invalid base64 "A""#
    );
    let unknown = message(edited(
        &insert,
        r#""after":{"id":1"#,
        r#""after":{"nope":1"#,
    ))
    .await;
    assert!(
        unknown.starts_with(r#"malformed value: payload: field "nope" is not in the value schema"#),
        "{unknown}"
    );
    assert_eq!(
        message(edited(&insert, r#"[\"24023128\",\"24023200\"]"#, "oops")).await,
        r#"source.sequence "oops" is not ["<commit lsn>","<lsn>"]"#
    );
    let garbage = Record {
        value: Some(b"not json".to_vec()),
        ..insert.clone()
    };
    assert_eq!(
        message(garbage).await,
        r#"malformed value: not a Kafka Connect JSON envelope {"schema":…,"payload":…}"#
    );
    let value = insert.value.clone().unwrap();
    for cut in 0..value.len() {
        let truncated = Record {
            value: Some(value[..cut].to_vec()),
            ..insert.clone()
        };
        assert!(harness.decode(&truncated).await.is_err(), "{cut}");
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Overwrite(Vec<(Index, u8)>),
    Insert(Index, Vec<u8>),
    Replace(Vec<u8>),
}

impl Mutation {
    /// Mutates `bytes`, leaving the first `keep` bytes (the Avro header) unless replacing all.
    fn apply(&self, bytes: &[u8], keep: usize) -> Vec<u8> {
        let body = bytes.len() - keep;
        let at = |index: &Index| keep + index.index(body.max(1)).min(body);
        match self {
            Mutation::Truncate(index) => bytes[..at(index)].to_vec(),
            Mutation::Overwrite(changes) => {
                let mut out = bytes.to_vec();
                for (index, byte) in changes {
                    if body > 0 {
                        out[keep + index.index(body)] = *byte;
                    }
                }
                out
            }
            Mutation::Insert(index, extra) => {
                let mut out = bytes.to_vec();
                let position = at(index);
                out.splice(position..position, extra.iter().copied());
                out
            }
            Mutation::Replace(random) => random.clone(),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<Index>(), any::<u8>()), 1..8).prop_map(Mutation::Overwrite),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(index, extra)| Mutation::Insert(index, extra)),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Mutation::Replace),
    ]
}

/// Records of a table with every type, valid, then mutated at random: decoding returns
/// (an error or a change) and never panics; a strict prefix is always an error.
#[test]
fn mutated_records_never_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for format in FORMATS {
        let (harness, records) = runtime.block_on(async {
            let mut harness = Harness::new(format).await;
            let mut columns = vec![column("id", PgType::Int4, false)];
            let mut rows = vec![vec![Value::Int(1)], vec![Value::Int(2)]];
            for (index, (pg_type, _, values)) in types::cases().into_iter().enumerate() {
                columns.push(column(&format!("c{index}"), pg_type.clone(), true));
                for (row, (source, _)) in rows.iter_mut().zip(values.iter().cycle().skip(1)) {
                    row.push(match source {
                        Some(source) => parse_text_value(&pg_type, source),
                        None => Value::Null,
                    });
                }
            }
            let table = table("fuzz", columns, vec![0]);
            let mut records = Vec::new();
            for row in rows {
                let record = harness
                    .encode(&event(&table, Op::Update, Some(row.clone()), Some(row)))
                    .await;
                harness.decode(&record).await.unwrap().unwrap();
                records.push(record);
            }
            (harness, records)
        });
        let harness = RefCell::new(harness);
        let keep = if format == Format::Avro { 5 } else { 0 };
        let mut runner = TestRunner::new(Config::with_cases(1024));
        runner
            .run(&(any::<Index>(), mutation()), |(which, mutation)| {
                let record = which.get(&records);
                let value = record.value.as_deref().unwrap_or_default();
                let mutated = mutation.apply(value, keep);
                let result = runtime.block_on(
                    harness
                        .borrow_mut()
                        .decoder
                        .decode(record.key.as_deref(), Some(&mutated)),
                );
                if mutated.len() < value.len() && value.starts_with(&mutated) {
                    prop_assert!(result.is_err(), "a strict prefix decoded: {:?}", result);
                }
                Ok(())
            })
            .unwrap();
    }
}

fn parse_text_value(pg_type: &PgType, source: &str) -> Value {
    crate::event::types::parse_text(pg_type, source.as_bytes()).unwrap()
}
