//! `cdc-sink verify`'s comparison engine against real PostgreSQL: two databases of the shared
//! cluster play source and target, and every test checks the exact report line or fields.

use pgcdc::sink::verify::{verify_table, DifferenceKind, KeyDifference, TablePair, TableReport};
use tokio_postgres::{Client, NoTls};

use crate::support::postgres::REPLICATOR;
use crate::support::{fresh_database, random_suffix, shared_pg};

/// A source and a target database. The target session prints values differently from the
/// source's (time zone, date, interval, float and bytea styles): verify must not care.
async fn databases(source_sql: &str, target_sql: &str) -> (Client, Client) {
    let pg = shared_pg().await;
    let (_, source) = fresh_database(pg).await;
    let (_, target) = fresh_database(pg).await;
    source
        .batch_execute(source_sql)
        .await
        .unwrap_or_else(|e| panic!("source setup: {e:?}"));
    target
        .batch_execute(
            "SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY';
             SET IntervalStyle = 'sql_standard'; SET extra_float_digits = 0;
             SET bytea_output = 'escape'",
        )
        .await
        .expect("target session settings");
    target
        .batch_execute(target_sql)
        .await
        .unwrap_or_else(|e| panic!("target setup: {e:?}"));
    (source, target)
}

fn same(schema: &str, table: &str) -> TablePair {
    TablePair {
        source_schema: schema.to_owned(),
        source_table: table.to_owned(),
        target_schema: schema.to_owned(),
        target_table: table.to_owned(),
    }
}

async fn verify(source: &Client, target: &Client, pair: &TablePair) -> TableReport {
    verify_table(source, target, pair)
        .await
        .unwrap_or_else(|e| panic!("verify {pair:?}: {e}"))
}

fn key(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

fn difference(values: &[&str], kind: DifferenceKind) -> KeyDifference {
    KeyDifference {
        key: key(values),
        kind,
    }
}

#[tokio::test]
async fn equal_tables_with_text_compatible_types_match() {
    let rows = |doc1: &str, doc3: &str| {
        format!(
            r#"INSERT INTO l1.items VALUES
            (1, 5, 12.5, '2024-02-29 13:14:15.5+02', '{doc1}', 'héllo', 'ab', true,
             '\xdead', '1 day 02:00:00', 0.1, '{{a,"b c"}}', '192.168.0.1'),
            (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (3, -32768, -0.001, 'infinity', '{doc3}', '', '', false,
             '\x', '-1 mons', 'NaN', '{{}}', '::1'),
            (4, 0, 99999.999, '1999-12-31 23:59:59.999999+00', 'null', 'it''s NULL', 'x', true,
             '\x00', '0', -1e300, '{{NULL}}', '10.0.0.1/8');"#
        )
    };
    // The sink writes jsonb values as the source prints them; json keeps that text as is.
    let (source, target) = databases(
        &format!(
            "CREATE SCHEMA l1;
             CREATE TABLE l1.items (id int PRIMARY KEY, qty smallint, price numeric(12,3),
                 at timestamptz, doc jsonb, name varchar(20), code char(4), flag boolean,
                 raw bytea, span interval, ratio double precision, tags text[], addr inet);
             {}",
            rows(r#"{"b": 1, "a": [1, 2]}"#, r#"[{"y":1,"x":2}]"#)
        ),
        &format!(
            "CREATE SCHEMA l1;
             CREATE TABLE l1.items (id int PRIMARY KEY, qty integer, price numeric(12,3),
                 at timestamptz, doc json, name text, code char(4), flag boolean,
                 raw bytea, span interval, ratio double precision, tags text[], addr inet);
             {}",
            rows(r#"{"a": [1, 2], "b": 1}"#, r#"[{"x": 2, "y": 1}]"#)
        ),
    )
    .await;
    let report = verify(&source, &target, &same("l1", "items")).await;
    assert_eq!(report.to_string(), "l1.items -> l1.items: ok (4 rows)");
    assert!(report.matches());
    assert_eq!(report.key_columns, ["id"]);
    assert_eq!(report.buckets, 1);
}

const TEN_ROWS: &str = "CREATE SCHEMA l1;
    CREATE TABLE l1.t (id int PRIMARY KEY, v text);
    INSERT INTO l1.t SELECT g, 'v' || g FROM generate_series(1, 10) g;";

#[tokio::test]
async fn missing_extra_and_changed_rows_are_named_by_key() {
    let (source, target) = databases(
        TEN_ROWS,
        &format!(
            "{TEN_ROWS}
             DELETE FROM l1.t WHERE id = 3;
             INSERT INTO l1.t VALUES (11, 'v11');
             UPDATE l1.t SET v = NULL WHERE id = 7;"
        ),
    )
    .await;
    let report = verify(&source, &target, &same("l1", "t")).await;
    // One bucket: keys in the order of their quoted text, so '11' before '3'.
    assert_eq!(
        report.to_string(),
        "l1.t -> l1.t: DIFFERENT source 10 rows, target 10 rows; first differing keys: \
         (id)=(11) [missing in source], (id)=(3) [missing in target], \
         (id)=(7) [content differs]"
    );
    assert!(!report.matches());
    assert_eq!(
        (report.source_rows, report.target_rows),
        (Some(10), Some(10))
    );
    assert_eq!((report.buckets, report.differing_buckets), (1, 1));
    assert!(!report.more_differences);
}

#[tokio::test]
async fn more_than_five_differences_end_with_an_ellipsis() {
    let (source, target) = databases(
        TEN_ROWS,
        &format!("{TEN_ROWS} DELETE FROM l1.t WHERE id > 2;"),
    )
    .await;
    let report = verify(&source, &target, &same("l1", "t")).await;
    assert_eq!(
        report.to_string(),
        "l1.t -> l1.t: DIFFERENT source 10 rows, target 2 rows; first differing keys: \
         (id)=(10) [missing in target], (id)=(3) [missing in target], \
         (id)=(4) [missing in target], (id)=(5) [missing in target], \
         (id)=(6) [missing in target], ..."
    );
    assert!(report.more_differences);
}

#[tokio::test]
async fn composite_keys_and_names_that_need_quoting() {
    let table = r#"
        CREATE SCHEMA "Sales Dept";
        CREATE TABLE "Sales Dept"."Order ""Lines""" (
            "Unit Price" numeric(8,2), region text, line int, note text,
            PRIMARY KEY (region, line));
        INSERT INTO "Sales Dept"."Order ""Lines""" VALUES
            (1.50, 'eu', 1, 'a'), (2.00, 'eu', 2, NULL),
            (3.25, E'o''hara, ny\\1', 2, 'b'), (4.00, 'us', 1, 'c');"#;
    let (source, target) = databases(
        table,
        &format!(
            r#"{table}
            DELETE FROM "Sales Dept"."Order ""Lines""" WHERE line = 2 AND region <> 'eu';
            UPDATE "Sales Dept"."Order ""Lines""" SET "Unit Price" = 1.51
                WHERE region = 'eu' AND line = 1;"#
        ),
    )
    .await;
    let report = verify(&source, &target, &same("Sales Dept", "Order \"Lines\"")).await;
    // Key columns in primary-key order, not in the name order rows are hashed in.
    assert_eq!(report.key_columns, ["region", "line"]);
    assert_eq!(
        report.to_string(),
        "Sales Dept.Order \"Lines\" -> Sales Dept.Order \"Lines\": DIFFERENT source 4 rows, \
         target 3 rows; first differing keys: (region, line)=(eu, 1) [content differs], \
         (region, line)=(o'hara, ny\\1, 2) [missing in target]"
    );
    assert_eq!(
        report.differences[1],
        difference(&["o'hara, ny\\1", "2"], DifferenceKind::MissingInTarget)
    );
}

#[tokio::test]
async fn tables_without_primary_key_compare_whole_rows() {
    let tables = "CREATE SCHEMA l1;
        CREATE TABLE l1.bag (b text, a int);
        CREATE TABLE l1.src_keyless (id int, v text);
        CREATE TABLE l1.tgt_keyless (id int, v text);";
    let (source, target) = databases(
        &format!(
            "{tables}
             ALTER TABLE l1.tgt_keyless ADD PRIMARY KEY (id);
             INSERT INTO l1.bag VALUES ('x', 1), ('x', 1), (NULL, 2), ('y', 3);
             INSERT INTO l1.src_keyless VALUES (1, 'a'), (2, 'b');
             INSERT INTO l1.tgt_keyless VALUES (1, 'a'), (2, 'b');"
        ),
        &format!(
            "{tables}
             ALTER TABLE l1.src_keyless ADD PRIMARY KEY (id);
             INSERT INTO l1.bag VALUES ('x', 1), (NULL, 2), ('z', 3);
             INSERT INTO l1.src_keyless VALUES (1, 'a'), (2, 'c');
             INSERT INTO l1.tgt_keyless VALUES (1, 'a'), (2, 'c');"
        ),
    )
    .await;
    let report = verify(&source, &target, &same("l1", "bag")).await;
    assert_eq!(report.key_columns, ["a", "b"]);
    assert_eq!(
        report.to_string(),
        "l1.bag -> l1.bag: DIFFERENT source 4 rows, target 3 rows; first differing keys: \
         (a, b)=(1, x) [2 rows in source, 1 row in target], (a, b)=(3, y) [missing in target], \
         (a, b)=(3, z) [missing in source]"
    );
    // The key is the target's primary key when it has one, else the source's.
    for table in ["src_keyless", "tgt_keyless"] {
        let report = verify(&source, &target, &same("l1", table)).await;
        assert_eq!(report.key_columns, ["id"], "{table}");
        assert_eq!(
            report.differences,
            [difference(&["2"], DifferenceKind::ContentDiffers)],
            "{table}"
        );
    }
}

#[tokio::test]
async fn empty_tables_match() {
    let schema = "CREATE SCHEMA l1; CREATE TABLE l1.empty (id bigint PRIMARY KEY, v text);";
    let (source, target) = databases(schema, schema).await;
    let report = verify(&source, &target, &same("l1", "empty")).await;
    assert_eq!(report.to_string(), "l1.empty -> l1.empty: ok (0 rows)");
    assert!(report.matches());
}

#[tokio::test]
async fn columns_on_one_side_only_are_not_compared() {
    let (source, target) = databases(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.people (id int PRIMARY KEY, name text, secret text, zip text);
         INSERT INTO l1.people VALUES (1, 'ann', 's1', '1000'), (2, 'bob', 's2', '2000');",
        "CREATE SCHEMA l1;
         CREATE TABLE l1.people (id int PRIMARY KEY, name text, applied_at timestamptz DEFAULT now());
         INSERT INTO l1.people (id, name) VALUES (1, 'ann'), (2, 'bob');",
    )
    .await;
    let report = verify(&source, &target, &same("l1", "people")).await;
    assert_eq!(
        report.to_string(),
        "l1.people -> l1.people: ok (2 rows; source columns missing in target, not compared: \
         secret, zip)"
    );
}

#[tokio::test]
async fn a_missing_table_is_a_difference() {
    let (source, target) = databases(
        "CREATE SCHEMA l1; CREATE TABLE l1.gone (id int); INSERT INTO l1.gone VALUES (1), (2);",
        "CREATE SCHEMA l2; CREATE TABLE l2.t (id int); INSERT INTO l2.t VALUES (1);",
    )
    .await;
    let report = verify(&source, &target, &same("l1", "gone")).await;
    assert_eq!(
        report.to_string(),
        "l1.gone -> l1.gone: DIFFERENT source 2 rows, target table missing"
    );
    assert!(!report.matches());
    let renamed = TablePair {
        source_schema: "l1".to_owned(),
        source_table: "never".to_owned(),
        target_schema: "l2".to_owned(),
        target_table: "t".to_owned(),
    };
    let report = verify(&source, &target, &renamed).await;
    assert_eq!(
        report.to_string(),
        "l1.never -> l2.t: DIFFERENT source table missing, target 1 row"
    );
}

#[tokio::test]
async fn wide_rows_are_hashed_in_several_format_calls() {
    // format() takes at most 100 arguments.
    let columns: Vec<String> = (0..150).map(|i| format!("c{i:03} int")).collect();
    let table = format!(
        "CREATE SCHEMA l1; CREATE TABLE l1.wide (id int PRIMARY KEY, {});
         INSERT INTO l1.wide (id) SELECT generate_series(1, 3);
         UPDATE l1.wide SET c120 = id, c000 = -id;",
        columns.join(", ")
    );
    let (source, target) = databases(&table, &table).await;
    let pair = same("l1", "wide");
    assert!(verify(&source, &target, &pair).await.matches());
    target
        .batch_execute("UPDATE l1.wide SET c149 = 7 WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(
        verify(&source, &target, &pair).await.differences,
        [difference(&["2"], DifferenceKind::ContentDiffers)]
    );
}

#[tokio::test]
async fn a_large_table_is_hashed_in_several_buckets() {
    let table = "CREATE SCHEMA l1;
        CREATE TABLE l1.big (id int PRIMARY KEY, v text, amount numeric(12,2));
        INSERT INTO l1.big SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, 120000) g;
        ANALYZE l1.big;";
    let (source, target) = databases(table, table).await;
    let pair = same("l1", "big");
    let report = verify(&source, &target, &pair).await;
    assert_eq!(report.to_string(), "l1.big -> l1.big: ok (120000 rows)");
    // 120000 rows at about 50000 per bucket, rounded up to a power of two.
    assert_eq!(report.buckets, 4);

    // One changed row in each bucket: the keys of the last buckets come after the first page
    // of keys, so finding them all reads several pages. The bucket formula is verify's own.
    let bucket_of = |b: i32| {
        format!(
            "(SELECT min(id) FROM l1.big
              WHERE (('x' || substr(md5(format('%L', id)), 1, 8))::bit(32)::int & 3) = {b})"
        )
    };
    let picked = source
        .query_one(
            &format!(
                "SELECT {}, {}, {}, {}",
                bucket_of(0),
                bucket_of(1),
                bucket_of(2),
                bucket_of(3)
            ),
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<i32> = (0..4).map(|i| picked.get(i)).collect();
    target
        .batch_execute(&format!(
            "DELETE FROM l1.big WHERE id = {};
             UPDATE l1.big SET amount = 0 WHERE id = {};
             UPDATE l1.big SET v = 'changed' WHERE id = {};
             DELETE FROM l1.big WHERE id = {};
             INSERT INTO l1.big VALUES (200000, 'new', 1);",
            ids[0], ids[1], ids[2], ids[3]
        ))
        .await
        .unwrap();
    let report = verify(&source, &target, &pair).await;
    assert_eq!(
        (report.source_rows, report.target_rows),
        (Some(120000), Some(119999))
    );
    assert_eq!((report.buckets, report.differing_buckets), (4, 4));
    let expected = vec![
        difference(&[&ids[0].to_string()], DifferenceKind::MissingInTarget),
        difference(&[&ids[1].to_string()], DifferenceKind::ContentDiffers),
        difference(&[&ids[2].to_string()], DifferenceKind::ContentDiffers),
        difference(&[&ids[3].to_string()], DifferenceKind::MissingInTarget),
        difference(&["200000"], DifferenceKind::MissingInSource),
    ];
    let mut found = report.differences.clone();
    // The new key's bucket is not known up front; the others come in bucket order.
    let new_key = found
        .iter()
        .position(|d| d.kind == DifferenceKind::MissingInSource)
        .expect("the new key is reported");
    let new = found.remove(new_key);
    found.push(new);
    assert_eq!(found, expected);
    assert!(!report.more_differences);
}

#[tokio::test]
async fn a_failed_query_names_the_table_and_side() {
    let pg = shared_pg().await;
    let schema = "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY);";
    let (_, source) = fresh_database(pg).await;
    let (target_db, target_admin) = fresh_database(pg).await;
    source.batch_execute(schema).await.unwrap();
    target_admin.batch_execute(schema).await.unwrap();
    // The replicator role has no privileges on the target's schema.
    let (target, connection) = tokio_postgres::connect(&pg.url(&target_db, REPLICATOR), NoTls)
        .await
        .expect("connect as the replicator");
    tokio::spawn(connection);
    let error = verify_table(&source, &target, &same("l1", "t"))
        .await
        .expect_err("the target table is not readable");
    assert_eq!(
        error.to_string(),
        "verify l1.t on the target: hash the rows by key bucket failed: \
         ERROR: permission denied for schema l1 (SQLSTATE 42501)"
    );
    // Both snapshots were ended: the connections are usable again.
    for client in [&source, &target] {
        let row = client
            .query_one("SELECT current_setting('transaction_isolation')", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "read committed");
    }
}

#[tokio::test]
async fn a_default_collation_other_than_c_changes_nothing() {
    // Keys are ordered byte-wise on both sides, as verify merges them; in en-US order 'a'
    // would come before 'B' and 'Z', and a merge in the wrong order would pair the wrong keys.
    let pg = shared_pg().await;
    let admin = pg.superuser_client("postgres").await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let db = format!("db_{}", random_suffix());
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C' \
                 TEMPLATE template0"
            ))
            .await
            .expect("create a database with an ICU default collation");
        clients.push(pg.superuser_client(&db).await);
    }
    let (source, target) = (&clients[0], &clients[1]);
    let table = "CREATE SCHEMA l1; CREATE TABLE l1.names (name text PRIMARY KEY, n int);";
    source
        .batch_execute(&format!(
            "{table} INSERT INTO l1.names VALUES ('a', 1), ('B', 2), ('Z', 3);"
        ))
        .await
        .unwrap();
    target
        .batch_execute(&format!(
            "{table} INSERT INTO l1.names VALUES ('B', 2), ('Z', 4);"
        ))
        .await
        .unwrap();
    let report = verify(source, target, &same("l1", "names")).await;
    assert_eq!(
        report.to_string(),
        "l1.names -> l1.names: DIFFERENT source 3 rows, target 2 rows; first differing keys: \
         (name)=(Z) [content differs], (name)=(a) [missing in target]"
    );
}
