//! A record the sink cannot decode (SPEC §6, issue: bad input loses nothing): without a
//! dead-letter topic the sink stops and names topic, partition and offset; with one, the
//! record lands there with its origin in headers and everything else is applied.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::one_partition_pipeline;
use super::target::Target;
use crate::support::capture::Capture;
use crate::support::process::CdcProcess;
use crate::support::read_topic;

const SCHEMA: &str = "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);";
const GARBAGE: &[u8] = b"\x00\x00\x00\x7f\xffnot avro at all";

/// Produces GARBAGE with key `k` to `topic` and returns (partition, offset).
async fn produce_garbage(bootstrap: &str, topic: &str) -> (i32, i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create a producer");
    producer
        .send(
            FutureRecord::to(topic)
                .key(b"k".as_slice())
                .payload(GARBAGE),
            Duration::from_secs(30),
        )
        .await
        .map(|delivery| (delivery.partition, delivery.offset))
        .expect("produce the garbage record")
}

/// One partition, so the garbage record sits between known changes.
async fn pipeline(extra_apply: &str) -> (Capture<'static>, Target) {
    let (capture, mut target) = one_partition_pipeline(SCHEMA, extra_apply).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (1, 'before')")
        .await
        .expect("first row");
    target.start();
    target.settle(&["l1.t -> l1.t: ok (1 row)"]);
    (capture, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_stops_the_sink_naming_its_offset() {
    let (mut capture, mut target) = pipeline("").await;
    let topic = capture.topic("l1.t");
    let (partition, offset) = produce_garbage(&capture.bootstrap, &topic).await;
    let sink = target.sink.as_mut().expect("sink running");
    let code = sink.wait_exit(Duration::from_secs(60));
    let stderr = sink.stderr_text();
    assert_eq!(code, 1, "{stderr}");
    let expected =
        format!("error: poison record at {topic} partition {partition} offset {offset}: ");
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert!(stderr.contains("set apply.dead_letter_topic"), "{stderr}");
    assert_eq!(capture.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_goes_to_the_dead_letter_topic() {
    let dead_letters = format!("dlq_{}", crate::support::random_suffix());
    let (mut capture, mut target) =
        pipeline(&format!("dead_letter_topic = \"{dead_letters}\"")).await;
    let topic = capture.topic("l1.t");
    let (partition, offset) = produce_garbage(&capture.bootstrap, &topic).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (2, 'after')")
        .await
        .expect("row after the garbage");
    target.settle(&["l1.t -> l1.t: ok (2 rows)"]);

    let records = read_topic(
        &capture.bootstrap,
        &dead_letters,
        1,
        Duration::from_secs(30),
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.key.as_deref(), Some(b"k".as_slice()));
    assert_eq!(record.value.as_deref(), Some(GARBAGE));
    assert_eq!(
        record.header("__connect.errors.topic"),
        Some(topic.as_bytes())
    );
    assert_eq!(
        record.header("__connect.errors.partition"),
        Some(partition.to_string().as_bytes())
    );
    assert_eq!(
        record.header("__connect.errors.offset"),
        Some(offset.to_string().as_bytes())
    );
    let reason = String::from_utf8_lossy(
        record
            .header("__connect.errors.exception.message")
            .expect("an error header"),
    )
    .into_owned();
    assert!(!reason.is_empty());
    let sink = target.sink.as_mut().expect("sink running");
    assert!(sink.is_running(), "{}", sink.stderr_text());
    sink.terminate();
    assert_eq!(
        sink.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        sink.stderr_text()
    );
    assert_eq!(capture.stop(), 0);
}

/// A CHECK constraint only the target has: the row that breaks it is refused in PostgreSQL's
/// own words, with the constraint's name and the table, in the sink's error and log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_refusal_is_shown_in_postgresqls_words() {
    let (mut capture, mut target) = pipeline("").await;
    refuse_long_values(&target).await;
    capture
        .client
        .batch_execute("INSERT INTO l1.t VALUES (2, 'far too long for the target')")
        .await
        .expect("a row the target refuses");
    let (stderr, error) = poison_stop(&mut target);
    let error = error.as_str();
    for fragment in [
        "\"l1\".\"t\": ERROR: ",
        "ERROR: new row for relation \"t\" violates check constraint \"v_is_short\"",
        "SQLSTATE 23514",
        "table l1.t",
        "constraint v_is_short",
        "DETAIL: Failing row contains (2, far too long for the target)",
    ] {
        assert!(
            error.contains(fragment),
            "{fragment:?} missing from {error:?}"
        );
    }
    assert!(!stderr.contains("db error"), "{stderr}");
    assert_eq!(capture.stop(), 0);
}

/// With a dead-letter topic, the refused record goes there with the server's words and the
/// SQL state in its headers, and the rows around it are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_carries_the_servers_words_to_the_dead_letter_topic() {
    let dead_letters = format!("dlq_{}", crate::support::random_suffix());
    let (mut capture, target) = pipeline(&format!("dead_letter_topic = \"{dead_letters}\"")).await;
    refuse_long_values(&target).await;
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.t VALUES (2, 'far too long for the target');
             INSERT INTO l1.t VALUES (3, 'short');",
        )
        .await
        .expect("rows");
    let records = read_topic(
        &capture.bootstrap,
        &dead_letters,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let header =
        |name| String::from_utf8_lossy(records[0].header(name).unwrap_or_default()).into_owned();
    assert_eq!(header("__pgcdc.errors.sqlstate"), "23514");
    let reason = header("__connect.errors.exception.message");
    assert!(
        reason.contains("violates check constraint \"v_is_short\"")
            && reason.contains("constraint v_is_short"),
        "{reason}"
    );
    assert_eq!(
        target
            .rows("SELECT id || ':' || v FROM l1.t ORDER BY id")
            .await,
        ["1:before", "3:short"]
    );
    assert_eq!(capture.stop(), 0);
}

/// Parallel apply: a backlog spread over three partitions is applied by two connections, one
/// part each; the part holding a refused row is applied again change by change, the row goes
/// to the dead-letter topic and every other row of every partition is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_in_one_part_of_a_parallel_batch_loses_nothing_else() {
    let dead_letters = format!("dlq_{}", crate::support::random_suffix());
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    let config = capture.config(
        &["l1.*"],
        "snapshot = \"never\"",
        "[kafka.topic]\npartitions = 3",
    );
    capture.start(&config).await;
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.t SELECT g, CASE g WHEN 17 THEN 'far too long for the target' \
             ELSE 'row ' || g END FROM generate_series(1, 40) g",
        )
        .await
        .expect("rows");
    let topic = capture.topic("l1.t");
    assert_eq!(
        read_topic(&capture.bootstrap, &topic, 40, Duration::from_secs(60)).len(),
        40
    );
    let mut target = Target::new(
        &capture,
        &format!("workers = 2\ndead_letter_topic = \"{dead_letters}\""),
    )
    .await;
    target
        .client
        .batch_execute(
            "CREATE SCHEMA l1;
             CREATE TABLE l1.t (id int PRIMARY KEY, v text CONSTRAINT v_is_short CHECK (length(v) < 10));
             CREATE TABLE public.applied (id int);
             CREATE FUNCTION public.applied() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.applied VALUES (NEW.id); RETURN NEW; END$$;
             CREATE TRIGGER applied AFTER INSERT OR UPDATE ON l1.t
                 FOR EACH ROW EXECUTE FUNCTION public.applied();",
        )
        .await
        .expect("a target table with a constraint only the target has");
    target.start();
    let records = read_topic(
        &capture.bootstrap,
        &dead_letters,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        String::from_utf8_lossy(
            records[0]
                .header("__pgcdc.errors.sqlstate")
                .unwrap_or_default()
        ),
        "23514"
    );
    let all_but_17: Vec<String> = (1..=40)
        .filter(|id| *id != 17)
        .map(|id| id.to_string())
        .collect();
    let applied = crate::support::capture::eventually(Duration::from_secs(60), || async {
        target
            .rows("SELECT t.id::text FROM l1.t t ORDER BY t.id")
            .await
            == all_but_17
    })
    .await;
    let stderr = target
        .sink
        .as_ref()
        .map(CdcProcess::stderr_text)
        .unwrap_or_default();
    assert!(
        applied,
        "applied {:?}\n{stderr}",
        target
            .rows("SELECT t.id::text FROM l1.t t ORDER BY t.id")
            .await
    );
    assert!(
        stderr.contains("the target rejected part of a batch"),
        "the batch was not divided over the connections:\n{stderr}"
    );
    assert_eq!(
        target
            .rows("SELECT count(*)::text FROM public.applied GROUP BY id HAVING count(*) > 1")
            .await,
        Vec::<String>::new(),
        "a row applied twice"
    );
    assert_eq!(capture.stop(), 0);
}

/// A trigger recording every row the sink writes to `l1.t` (id, value, and the transaction
/// that wrote it) in `public.applied`, to show what was applied, how often and together.
async fn audit_target(target: &Target) {
    target
        .client
        .batch_execute(
            "CREATE TABLE public.applied (seq bigserial, id int, v text, xid xid8 DEFAULT pg_current_xact_id());
             CREATE FUNCTION public.applied() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.applied (id, v) VALUES (NEW.id, NEW.v); RETURN NEW; END$$;
             CREATE TRIGGER applied AFTER INSERT OR UPDATE ON l1.t
                 FOR EACH ROW EXECUTE FUNCTION public.applied();",
        )
        .await
        .expect("an audit of the target table");
}

/// Under `on_conflict = "error"`, a pipeline with row 1 applied, then stopped; rows 2, 3 and
/// 4 are written while it is stopped, so the restarted sink gets them in one batch, and the
/// target already has a row 3 of its own. Returns the offset of row 3's record.
async fn conflict_ahead(extra_apply: &str) -> (Capture<'static>, Target, i64) {
    let (capture, mut target) = pipeline(&format!("on_conflict = \"error\"\n{extra_apply}")).await;
    let mut sink = target.sink.take().expect("sink running");
    sink.terminate();
    assert_eq!(
        sink.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        sink.stderr_text()
    );
    capture
        .client
        .batch_execute(
            "INSERT INTO l1.t VALUES (2, 'two'); INSERT INTO l1.t VALUES (3, 'three');
             INSERT INTO l1.t VALUES (4, 'four');",
        )
        .await
        .expect("rows");
    let records = capture.read("l1.t", 4).await;
    let offset = records
        .iter()
        .find(|r| r.key["id"] == 3)
        .unwrap_or_else(|| panic!("no record of row 3 in {records:?}"))
        .offset;
    target
        .client
        .batch_execute("INSERT INTO l1.t VALUES (3, 'squatter')")
        .await
        .expect("a row of the target's own");
    audit_target(&target).await;
    target.start();
    (capture, target, offset)
}

/// Without a dead-letter topic, an insert of a key the target has stops the sink in
/// PostgreSQL's words, naming the record's offset, with neither it nor the record after it
/// applied; once the target's row is gone, the restarted sink applies it and everything
/// around it, each row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_key_under_on_conflict_error_stops_the_sink_until_it_is_fixed() {
    let (mut capture, mut target, offset) = conflict_ahead("").await;
    let topic = capture.topic("l1.t");
    let (_, error) = poison_stop(&mut target);
    let error = error.as_str();
    for fragment in [
        format!("error: poison record at {topic} partition 0 offset {offset}: "),
        "ERROR: duplicate key value violates unique constraint".to_owned(),
        "SQLSTATE 23505".to_owned(),
        "table l1.t".to_owned(),
        "DETAIL: Key (id)=(3) already exists.".to_owned(),
    ] {
        assert!(
            error.contains(&fragment),
            "{fragment:?} missing from {error:?}"
        );
    }
    let rows = target
        .rows("SELECT id || ':' || v FROM l1.t ORDER BY id")
        .await;
    assert!(
        rows.contains(&"3:squatter".to_owned()) && !rows.contains(&"4:four".to_owned()),
        "the refused record and the one after it were applied: {rows:?}"
    );

    target
        .client
        .batch_execute("DELETE FROM l1.t WHERE id = 3")
        .await
        .expect("the fix");
    target.start();
    target.settle(&["l1.t -> l1.t: ok (4 rows)"]);
    assert_eq!(
        target
            .rows("SELECT id || ':' || v FROM public.applied ORDER BY seq")
            .await,
        ["2:two", "3:three", "4:four"],
        "each row applied once, in order"
    );
    assert_eq!(capture.stop(), 0);
}

/// With a dead-letter topic, an insert of a key the target has goes there with SQL state
/// 23505, the target's row stays, and the rows before and after it in the same batch are
/// applied in one transaction (the refused change is undone to its savepoint alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_key_under_on_conflict_error_goes_to_the_dead_letter_topic_alone() {
    let dead_letters = format!("dlq_{}", crate::support::random_suffix());
    let (mut capture, mut target, offset) =
        conflict_ahead(&format!("dead_letter_topic = \"{dead_letters}\"")).await;
    target.settle(&["l1.t -> l1.t: DIFFERENT source 4 rows, target 4 rows; first differing keys: (id)=(3) [content differs]"]);
    let records = read_topic(
        &capture.bootstrap,
        &dead_letters,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let header =
        |name| String::from_utf8_lossy(records[0].header(name).unwrap_or_default()).into_owned();
    assert_eq!(header("__connect.errors.offset"), offset.to_string());
    assert_eq!(header("__pgcdc.errors.sqlstate"), "23505");
    let reason = header("__connect.errors.exception.message");
    assert!(
        reason.contains("duplicate key value violates unique constraint")
            && reason.contains("Key (id)=(3) already exists."),
        "{reason}"
    );
    assert_eq!(
        target
            .rows("SELECT id || ':' || v FROM l1.t ORDER BY id")
            .await,
        ["1:before", "2:two", "3:squatter", "4:four"]
    );
    assert_eq!(
        target
            .rows("SELECT string_agg(id::text, ',' ORDER BY seq) FROM public.applied GROUP BY xid")
            .await,
        ["2,4"],
        "rows 2 and 4 applied once each, in one transaction"
    );
    assert_eq!(capture.stop(), 0);
}

/// A CHECK constraint only the target has: values of 10 characters and more are refused.
async fn refuse_long_values(target: &Target) {
    target
        .client
        .batch_execute("ALTER TABLE l1.t ADD CONSTRAINT v_is_short CHECK (length(v) < 10)")
        .await
        .expect("a constraint only the target has");
}

/// Waits for the sink to exit 1 on a poison record; its stderr and the error line.
fn poison_stop(target: &mut Target) -> (String, String) {
    let sink = target.sink.as_mut().expect("sink running");
    assert_eq!(
        sink.wait_exit(Duration::from_secs(60)),
        1,
        "{}",
        sink.stderr_text()
    );
    let stderr = sink.stderr_text();
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error: poison record at "))
        .unwrap_or_else(|| panic!("no poison error in:\n{stderr}"))
        .to_owned();
    (stderr, error)
}
