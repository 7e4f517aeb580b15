//! DDL capture (issue 13, the source side): event triggers installed by the source put every
//! CREATE, ALTER and DROP TABLE into the WAL, and the source publishes them to
//! `<prefix>.schema_changes` with the table's description after and before the change, in
//! order with the rows; a role that may not create event triggers is told what it loses;
//! `teardown` removes the triggers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::capture::{Capture, Decoded};
use crate::support::postgres::{REPLICATOR, SUPERUSER};
use crate::support::process::CdcProcess;

const VERB_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cdc-source <verb>` and returns its exit code and everything it printed.
fn verb(verb: &str, config: &str) -> (i32, String) {
    let mut process = CdcProcess::spawn(verb, config, &[], &[]);
    let code = process.wait_exit(VERB_TIMEOUT);
    (
        code,
        format!("{}{}", process.stdout_text(), process.stderr_text()),
    )
}

/// The configuration with the superuser as the connector's role (it may create event
/// triggers, so `capture.ddl` unset means on).
fn as_superuser(capture: &Capture<'_>, config: &str) -> String {
    config.replace(
        &capture.pg.url(&capture.names.db, REPLICATOR),
        &capture.pg.url(&capture.names.db, SUPERUSER),
    )
}

/// Lets every schema of `table`'s subjects change (a NOT NULL added is not BACKWARD
/// compatible), through the registry's REST `/config/{subject}`.
async fn compatibility_none(capture: &Capture<'_>, table: &str) {
    let client = reqwest::Client::new();
    for part in ["key", "value"] {
        let url = format!(
            "{}/config/{}-{part}",
            capture.registry_url,
            capture.topic(table)
        );
        let response = client
            .put(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(r#"{"compatibility": "NONE"}"#)
            .send()
            .await;
        if let Err(error) = response {
            eprintln!("PUT {url}: {error}");
        }
    }
}

async fn execute(capture: &Capture<'_>, sql: &str) {
    capture
        .client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One column as the test compares it: name, position, typeExpression, optional.
fn columns(table: &Value) -> Vec<(String, i64, String, bool)> {
    table["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("no columns in {table}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["position"].as_i64().unwrap(),
                c["typeExpression"].as_str().unwrap().to_owned(),
                c["optional"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn column(
    name: &str,
    position: i64,
    expression: &str,
    optional: bool,
) -> (String, i64, String, bool) {
    (name.to_owned(), position, expression.to_owned(), optional)
}

/// What one schema change event says, for comparison.
#[derive(Debug, PartialEq)]
struct Summary {
    kind: String,
    id: String,
    ddl: String,
    columns: Option<Vec<(String, i64, String, bool)>>,
    previous_id: Option<String>,
    previous_columns: Option<Vec<(String, i64, String, bool)>>,
}

fn summary(record: &Decoded) -> Summary {
    let change = &record.value["tableChanges"][0];
    let described = |value: &Value| (!value.is_null()).then(|| columns(value));
    Summary {
        kind: change["type"].as_str().unwrap().to_owned(),
        id: change["id"].as_str().unwrap().to_owned(),
        ddl: record.value["ddl"].as_str().unwrap_or_default().to_owned(),
        columns: described(&change["table"]),
        previous_id: change["previousId"].as_str().map(str::to_owned),
        previous_columns: described(&change["previousTable"]),
    }
}

/// The field names of a row event's `after`, sorted.
fn fields(record: &Decoded) -> Vec<String> {
    let mut names: Vec<String> = record.value["after"]
        .as_object()
        .unwrap_or_else(|| panic!("no after in {}", record.value))
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_kind_of_table_ddl_becomes_its_schema_change_in_order_with_the_rows() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.t (id int PRIMARY KEY, name varchar(10), qty int NOT NULL, score int);",
    )
    .await;
    compatibility_none(&capture, "l1.t").await;
    let config = as_superuser(
        &capture,
        &capture.config(
            &["l1.*"],
            "discovery_interval = \"0\"",
            "[kafka.topic]\npartitions = 1",
        ),
    );
    capture.start(&config).await;
    assert!(
        capture.source_log().contains("DDL capture is on"),
        "{}",
        capture.source_log()
    );

    let steps: [(&str, &str); 8] = [
        (
            "ALTER TABLE l1.t ADD COLUMN note text",
            "INSERT INTO l1.t VALUES (2, 'b', 20, 200, 'n')",
        ),
        (
            "ALTER TABLE l1.t ADD COLUMN flag boolean NOT NULL DEFAULT false",
            "INSERT INTO l1.t VALUES (3, 'c', 30, 300, 'n', true)",
        ),
        (
            "ALTER TABLE l1.t DROP COLUMN score",
            "INSERT INTO l1.t VALUES (4, 'd', 40, 'n', true)",
        ),
        (
            "ALTER TABLE l1.t RENAME COLUMN name TO full_name",
            "INSERT INTO l1.t VALUES (5, 'e', 50, 'n', true)",
        ),
        (
            "ALTER TABLE l1.t ALTER COLUMN qty TYPE bigint",
            "INSERT INTO l1.t VALUES (6, 'f', 5000000000, 'n', true)",
        ),
        (
            "ALTER TABLE l1.t ALTER COLUMN full_name TYPE text",
            "INSERT INTO l1.t VALUES (7, 'longer than ten', 70, 'n', true)",
        ),
        (
            "ALTER TABLE l1.t ALTER COLUMN qty DROP NOT NULL",
            "INSERT INTO l1.t VALUES (8, 'h', 80, 'n', true)",
        ),
        (
            "ALTER TABLE l1.t ALTER COLUMN qty SET NOT NULL",
            "INSERT INTO l1.t VALUES (9, 'i', 90, 'n', true)",
        ),
    ];
    execute(&capture, "INSERT INTO l1.t VALUES (1, 'a', 10, 100)").await;
    for (ddl, insert) in steps {
        execute(&capture, ddl).await;
        execute(&capture, insert).await;
    }
    for ddl in [
        "CREATE TABLE l1.n (id int PRIMARY KEY, v text)",
        "ALTER TABLE l1.n RENAME TO n2",
        "DROP TABLE l1.n2",
    ] {
        execute(&capture, ddl).await;
    }

    let changes = capture.read("schema_changes", 11).await;
    assert_eq!(changes.len(), 11, "{}", capture.source_log());
    let id = column("id", 1, "integer", false);
    let name = column("name", 2, "character varying(10)", true);
    let full_name = column("full_name", 2, "character varying(10)", true);
    let full_text = column("full_name", 2, "text", true);
    let qty = column("qty", 3, "integer", false);
    let qty_big = column("qty", 3, "bigint", false);
    let qty_null = column("qty", 3, "bigint", true);
    let score = column("score", 4, "integer", true);
    let note = column("note", 5, "text", true);
    let flag = column("flag", 6, "boolean", false);
    let t = r#""l1"."t""#;
    let alter = |ddl: &str, before: Vec<_>, after: Vec<_>| Summary {
        kind: "ALTER".into(),
        id: t.into(),
        ddl: ddl.into(),
        columns: Some(after),
        previous_id: Some(t.into()),
        previous_columns: Some(before),
    };
    let v1 = vec![id.clone(), name.clone(), qty.clone(), score.clone()];
    let v2 = [v1.clone(), vec![note.clone()]].concat();
    let v3 = [v2.clone(), vec![flag.clone()]].concat();
    let v4 = vec![id.clone(), name, qty.clone(), note.clone(), flag.clone()];
    let v5 = vec![
        id.clone(),
        full_name.clone(),
        qty,
        note.clone(),
        flag.clone(),
    ];
    let v6 = vec![
        id.clone(),
        full_name,
        qty_big.clone(),
        note.clone(),
        flag.clone(),
    ];
    let v7 = vec![
        id.clone(),
        full_text.clone(),
        qty_big.clone(),
        note.clone(),
        flag.clone(),
    ];
    let v8 = vec![
        id.clone(),
        full_text.clone(),
        qty_null,
        note.clone(),
        flag.clone(),
    ];
    let v9 = vec![id.clone(), full_text, qty_big, note, flag];
    let expected = [
        alter(steps[0].0, v1, v2.clone()),
        alter(steps[1].0, v2, v3.clone()),
        alter(steps[2].0, v3, v4.clone()),
        alter(steps[3].0, v4, v5.clone()),
        alter(steps[4].0, v5, v6.clone()),
        alter(steps[5].0, v6, v7.clone()),
        alter(steps[6].0, v7, v8.clone()),
        alter(steps[7].0, v8, v9),
    ];
    let n_columns = vec![id, column("v", 2, "text", true)];
    let expected_tables = [
        Summary {
            kind: "CREATE".into(),
            id: r#""l1"."n""#.into(),
            ddl: "CREATE TABLE l1.n (id int PRIMARY KEY, v text)".into(),
            columns: Some(n_columns.clone()),
            previous_id: None,
            previous_columns: None,
        },
        Summary {
            kind: "ALTER".into(),
            id: r#""l1"."n2""#.into(),
            ddl: "ALTER TABLE l1.n RENAME TO n2".into(),
            columns: Some(n_columns.clone()),
            previous_id: Some(r#""l1"."n""#.into()),
            previous_columns: Some(n_columns.clone()),
        },
        Summary {
            kind: "DROP".into(),
            id: r#""l1"."n2""#.into(),
            ddl: "DROP TABLE l1.n2".into(),
            columns: None,
            previous_id: Some(r#""l1"."n2""#.into()),
            previous_columns: Some(n_columns),
        },
    ];
    let summaries: Vec<Summary> = changes.iter().map(summary).collect();
    assert_eq!(summaries[..8], expected[..]);
    assert_eq!(summaries[8..], expected_tables[..]);

    // The details of one change: the rest of Debezium's Column, the key, the source block.
    let added = &changes[1].value;
    let flag_column = &added["tableChanges"][0]["table"]["columns"][5];
    assert_eq!(
        flag_column,
        &json!({"name": "flag", "jdbcType": -7, "nativeType": 16, "typeName": "bool",
                "typeExpression": "boolean", "charsetName": null, "length": null,
                "scale": null, "position": 6, "optional": false, "autoIncremented": false,
                "generated": false, "comment": null, "defaultValueExpression": "false",
                "enumValues": null})
    );
    let name_column = &added["tableChanges"][0]["table"]["columns"][1];
    assert_eq!(name_column["typeName"], "varchar");
    assert_eq!(name_column["length"], 10);
    assert_eq!(name_column["jdbcType"], 12);
    assert_eq!(
        added["tableChanges"][0]["table"]["primaryKeyColumnNames"],
        json!(["id"])
    );
    assert_eq!(added["source"]["table"], "t");
    assert_eq!(added["schemaName"], "l1");
    assert_eq!(changes[1].key["tableName"], "t");

    // Every row written after a change carries the new value schema.
    let rows = capture.read("l1.t", 9).await;
    assert_eq!(rows.len(), 9);
    let expected_fields: [&[&str]; 9] = [
        &["id", "name", "qty", "score"],
        &["id", "name", "qty", "score", "note"],
        &["id", "name", "qty", "score", "note", "flag"],
        &["id", "name", "qty", "note", "flag"],
        &["id", "full_name", "qty", "note", "flag"],
        &["id", "full_name", "qty", "note", "flag"],
        &["id", "full_name", "qty", "note", "flag"],
        &["id", "full_name", "qty", "note", "flag"],
        &["id", "full_name", "qty", "note", "flag"],
    ];
    for (row, expected) in rows.iter().zip(expected_fields) {
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(fields(row), expected, "{}", row.value);
    }
    assert_eq!(rows[5].value["after"]["qty"], 5_000_000_000i64);
    assert_eq!(rows[6].value["after"]["full_name"], "longer than ten");
    // And each change sits between the rows before and after it in the WAL.
    for (index, change) in changes[..8].iter().enumerate() {
        let lsn = change.value["source"]["lsn"].as_i64().unwrap();
        assert!(rows[index].value["source"]["lsn"].as_i64().unwrap() < lsn);
        assert!(lsn < rows[index + 1].value["source"]["lsn"].as_i64().unwrap());
    }
    assert_eq!(capture.stop(), 0);
}

#[tokio::test]
async fn a_ddl_between_rows_of_one_transaction_keeps_its_place() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    compatibility_none(&capture, "l1.t").await;
    let config = as_superuser(
        &capture,
        &capture.config(&["l1.t"], "discovery_interval = \"0\"", ""),
    );
    capture.start(&config).await;
    execute(
        &capture,
        "BEGIN;
         INSERT INTO l1.t VALUES (1, 'before');
         ALTER TABLE l1.t ADD COLUMN w int NOT NULL DEFAULT 7;
         UPDATE l1.t SET v = 'after', w = 8 WHERE id = 1;
         INSERT INTO l1.t VALUES (2, 'after', 9);
         COMMIT;",
    )
    .await;
    let changes = capture.read("schema_changes", 1).await;
    assert_eq!(changes.len(), 1, "{}", capture.source_log());
    let change = &changes[0].value;
    assert_eq!(change["tableChanges"][0]["type"], "ALTER");
    assert_eq!(
        columns(&change["tableChanges"][0]["table"]),
        [
            column("id", 1, "integer", false),
            column("v", 2, "text", true),
            column("w", 3, "integer", false),
        ]
    );
    // The statement is what the client sent: here the whole batch.
    assert!(change["ddl"]
        .as_str()
        .unwrap()
        .contains("ALTER TABLE l1.t ADD COLUMN w int NOT NULL DEFAULT 7"));
    let mut rows = capture.read("l1.t", 3).await;
    assert_eq!(rows.len(), 3);
    // Keys 1 and 2 may be on different partitions: the WAL order is the LSN's.
    rows.sort_by_key(|row| row.value["source"]["lsn"].as_i64());
    assert_eq!(rows[0].value["after"], json!({"id": 1, "v": "before"}));
    assert_eq!(
        rows[1].value["after"],
        json!({"id": 1, "v": "after", "w": 8})
    );
    assert_eq!(
        rows[2].value["after"],
        json!({"id": 2, "v": "after", "w": 9})
    );
    let lsn = |value: &Value| value["source"]["lsn"].as_i64().unwrap();
    let (first, ddl, second) = (lsn(&rows[0].value), lsn(change), lsn(&rows[1].value));
    assert!(first < ddl && ddl < second, "{first} {ddl} {second}");
    let txid = |value: &Value| value["source"]["txId"].as_i64().unwrap();
    assert_eq!(txid(change), txid(&rows[0].value));
    assert_eq!(txid(change), txid(&rows[2].value));
    assert_eq!(capture.stop(), 0);
}

/// The event triggers and state table teardown must remove: what `\dy` and `\dt pgcdc.*` list.
async fn ddl_objects(capture: &Capture<'_>) -> Vec<String> {
    capture
        .client
        .query(
            "SELECT 'event trigger ' || evtname FROM pg_event_trigger \
             UNION ALL SELECT 'relation ' || oid::regclass::text FROM pg_class \
                       WHERE relnamespace::regnamespace::text = 'pgcdc' \
             UNION ALL SELECT 'function ' || oid::regprocedure::text FROM pg_proc \
                       WHERE pronamespace::regnamespace::text = 'pgcdc' \
             UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'pgcdc' \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("list DDL capture objects")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn line<'a>(output: &'a str, prefix: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{output}"))
}

#[tokio::test]
async fn a_role_without_the_privilege_is_warned_and_teardown_removes_the_triggers() {
    let capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let config = capture.config(&["l1.t"], "", "");
    let superuser = as_superuser(&capture, &config);

    // The connector's role may not create event triggers: a warning that says what is lost.
    let (code, output) = verb("check", &config);
    assert_eq!(code, 0, "{output}");
    let warning = line(&output, "warn  DDL capture: ");
    for fragment in [
        "off: role replicator may not create event triggers",
        "renamed columns",
        "ALTER ROLE replicator SUPERUSER;",
        "capture.ddl = false",
    ] {
        assert!(
            warning.contains(fragment),
            "{fragment:?} missing: {warning}"
        );
    }
    // Asking for it anyway is a failure naming the key.
    let (code, output) = verb(
        "check",
        &config.replace("[capture]", "[capture]\nddl = true"),
    );
    assert_eq!(code, 3, "{output}");
    assert!(line(&output, "FAIL  DDL capture: ").contains("capture.ddl = true"));
    // Off on purpose: said so, no warning.
    let (code, output) = verb(
        "check",
        &config.replace("[capture]", "[capture]\nddl = false"),
    );
    assert_eq!(code, 0, "{output}");
    assert!(line(&output, "ok    DDL capture: ").contains("off (capture.ddl = false)"));
    assert_eq!(ddl_objects(&capture).await, Vec::<String>::new());

    // A superuser's init installs the triggers; the connector's role then uses them.
    let (code, output) = verb("init", &superuser);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("DDL capture is on"), "{output}");
    let installed = ddl_objects(&capture).await;
    for object in [
        "event trigger pgcdc_ddl_command_end",
        "event trigger pgcdc_sql_drop",
        "relation pgcdc.ddl_tables",
        "schema pgcdc",
    ] {
        assert!(
            installed.contains(&object.to_owned()),
            "{object} missing: {installed:?}"
        );
    }
    let seeded: i64 = capture
        .client
        .query_one("SELECT count(*) FROM pgcdc.ddl_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seeded, 1, "the existing table is known");
    let (code, output) = verb("check", &config);
    assert_eq!(code, 0, "{output}");
    assert!(
        line(&output, "ok    DDL capture: ").contains("on: event triggers"),
        "{output}"
    );
    // A second install (another source, or the next start) changes nothing.
    let (code, output) = verb("init", &superuser);
    assert_eq!(code, 0, "{output}");
    assert_eq!(ddl_objects(&capture).await, installed);

    // A superuser's teardown drops them, with the schema pgcdc made for them.
    let (code, output) = verb("teardown", &superuser);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("dropped DDL capture"), "{output}");
    assert_eq!(ddl_objects(&capture).await, Vec::<String>::new());
    // DDL still works once they are gone.
    execute(&capture, "ALTER TABLE l1.t ADD COLUMN w int").await;
}

/// Each source start refreshes `pgcdc.ddl_tables` from the catalog. A start while a DDL
/// transaction was open put back the table's description from before it once it committed, so
/// the next change carried a wrong `before` and the sink replayed a column rename as a new
/// column (the chaos run's target kept the old column). The refresh now waits for it.
#[tokio::test]
async fn a_source_starting_during_an_open_ddl_transaction_keeps_the_description_it_commits() {
    let capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let mut starting = capture.pg.superuser_client(&capture.names.db).await;
    pgcdc::source::ddl::install(&mut starting)
        .await
        .expect("install DDL capture");
    let mut altering = capture.pg.superuser_client(&capture.names.db).await;
    let open = altering.transaction().await.expect("begin");
    open.batch_execute("ALTER TABLE l1.t ADD COLUMN c int")
        .await
        .expect("alter in an open transaction");
    let refresh = tokio::spawn(async move {
        pgcdc::source::ddl::install(&mut starting)
            .await
            .expect("refresh DDL capture");
    });
    // The refresh must have begun before the ALTER commits, or there is no race to lose.
    let waits = crate::support::capture::eventually(Duration::from_secs(30), || async {
        let waiting: i64 = capture
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        waiting > 0
    })
    .await;
    assert!(
        waits,
        "the refresh did not wait for the open DDL transaction"
    );
    open.commit().await.expect("commit the ALTER");
    refresh.await.expect("the refresh");
    let kept: String = capture
        .client
        .query_one(
            "SELECT (description->'columns')::text FROM pgcdc.ddl_tables \
             WHERE relid = 'l1.t'::regclass",
            &[],
        )
        .await
        .expect("read pgcdc.ddl_tables")
        .get(0);
    let kept: Value = serde_json::from_str(&kept).expect("columns as JSON");
    let names: Vec<&str> = kept
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["id", "v", "c"], "{kept}");
}
