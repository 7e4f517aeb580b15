//! `cdc-source check` against real misconfigured clusters (issue 5's matrix): each
//! misconfiguration makes it exit 3 with the fix for it, and after that fix it passes.
//! `init` then `teardown` leave the server as it was.

use std::time::Duration;

use tokio_postgres::Client;

use crate::support::capture::{eventually, Capture};
use crate::support::postgres::{bin_dir, ClusterSetup, REPLICATOR, REPLICATOR_PASSWORD};
use crate::support::process::CdcProcess;
use crate::support::{free_port, random_suffix, shared_broker, shared_registry, PgCluster};

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cdc-source <verb>` and returns its exit code and everything it printed.
fn verb(verb: &str, config: &str, args: &[&str]) -> (i32, String) {
    let mut process = CdcProcess::spawn(verb, config, args, &[]);
    let code = process.wait_exit(CHECK_TIMEOUT);
    (
        code,
        format!("{}{}", process.stdout_text(), process.stderr_text()),
    )
}

/// Runs `check`, which must exit 3, and returns what it printed.
fn failing(config: &str) -> String {
    let (code, output) = verb("check", config, &[]);
    assert_eq!(code, 3, "check should fail:\n{output}");
    output
}

/// The FAIL line of check `name` in `output` contains every fragment.
fn assert_line(output: &str, name: &str, fragments: &[&str]) {
    let prefix = format!("FAIL  {name}: ");
    let line = output
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{output}"));
    for fragment in fragments {
        assert!(
            line.contains(fragment),
            "{fragment:?} missing from {line:?}"
        );
    }
}

/// `check` exits 3 and its FAIL line of `name` contains every fragment.
fn assert_fails(config: &str, name: &str, fragments: &[&str]) {
    assert_line(&failing(config), name, fragments);
}

/// `check` exits 0 and prints no FAIL line.
fn assert_passes(config: &str) {
    let (code, output) = verb("check", config, &[]);
    assert_eq!(code, 0, "check should pass:\n{output}");
    assert!(!output.contains("FAIL"), "{output}");
}

/// A login role with the connector's password, on `client`'s cluster.
async fn role(client: &Client, attributes: &str) -> String {
    let name = format!("role_{}", random_suffix());
    client
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN {attributes} PASSWORD '{REPLICATOR_PASSWORD}'"
        ))
        .await
        .expect("create role");
    name
}

fn as_role(config: &str, role: &str) -> String {
    config.replace(&format!("//{REPLICATOR}:"), &format!("//{role}:"))
}

const ONE_TABLE: &str = "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY);";

/// A capture of [`ONE_TABLE`] on a cluster of the test's own.
async fn one_table_on(pg: &PgCluster) -> Capture<'_> {
    Capture::new(
        pg,
        shared_broker().await,
        &shared_registry().url(),
        ONE_TABLE,
    )
    .await
}

#[tokio::test]
async fn a_role_without_replication_or_select_is_told_the_grants() {
    let capture = Capture::on_shared_testbed(ONE_TABLE).await;
    let pub_sql = format!(
        "CREATE PUBLICATION {} FOR TABLE l1.t",
        capture.names.publication
    );
    capture
        .client
        .batch_execute(&pub_sql)
        .await
        .expect("publication");
    let user = role(&capture.client, "").await;
    let config = as_role(&capture.config(&["l1.t"], "", ""), &user);
    let output = failing(&config);
    assert_line(
        &output,
        "replication role",
        &[&format!(
            "as a superuser: ALTER ROLE {user} WITH REPLICATION;"
        )],
    );
    assert_line(
        &output,
        "SELECT privilege",
        &[&format!("GRANT SELECT ON l1.t TO {user};")],
    );
    capture
        .client
        .batch_execute(&format!("ALTER ROLE {user} WITH REPLICATION"))
        .await
        .expect("fix the role");
    assert_fails(&config, "SELECT privilege", &["GRANT SELECT"]);
    capture
        .client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA l1 TO {user}; GRANT SELECT ON l1.t TO {user}"
        ))
        .await
        .expect("grant");
    assert_passes(&config);
}

#[tokio::test]
async fn a_keyless_table_under_default_identity_needs_full_identity() {
    let capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY); CREATE TABLE l1.nokey (v int);",
    )
    .await;
    let config = capture.config(&["l1.*"], "", "");
    assert_fails(
        &config,
        "replica identity",
        &[
            "l1.nokey has no primary key",
            "ALTER TABLE l1.nokey REPLICA IDENTITY FULL;",
        ],
    );
    let (code, output) = verb("init", &config, &["--fix-replica-identity"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("REPLICA IDENTITY FULL"), "{output}");
    assert_passes(&config);
}

#[tokio::test]
async fn a_publication_missing_a_table_is_told_the_alter() {
    let capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY); CREATE TABLE l1.u (id int PRIMARY KEY);",
    )
    .await;
    let publication = &capture.names.publication;
    capture
        .client
        .batch_execute(&format!("CREATE PUBLICATION {publication} FOR TABLE l1.t"))
        .await
        .expect("publication without l1.u");
    let config = capture.config(&["l1.t", "l1.u"], "", "");
    let add = format!("ALTER PUBLICATION \"{publication}\" ADD TABLE l1.u;");
    assert_fails(&config, "publication", &["lacks l1.u", &add]);
    capture
        .client
        .batch_execute(&add)
        .await
        .expect("add the table");
    assert_passes(&config);
}

const PARTITIONED: &str = "CREATE SCHEMA l1;
    CREATE TABLE l1.parted (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE l1.parted_2024 PARTITION OF l1.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');";

#[tokio::test]
async fn a_publication_of_partitions_one_by_one_is_told_to_publish_through_the_root() {
    let capture = Capture::on_shared_testbed(PARTITIONED).await;
    let publication = &capture.names.publication;
    capture
        .client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE l1.parted"
        ))
        .await
        .expect("a publication without publish_via_partition_root");
    let config = capture.config(&["l1.*"], "", "");
    let output = failing(&config);
    let fix =
        format!("ALTER PUBLICATION \"{publication}\" SET (publish_via_partition_root = true);");
    let failures: Vec<&str> = output.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failures.len(), 1, "{output}");
    assert_line(
        &output,
        "partitioned tables",
        &["publishes the partitions of l1.parted one by one", &fix],
    );
    capture
        .client
        .batch_execute(&fix)
        .await
        .expect("publish through the root");
    assert_passes(&config);
}

#[tokio::test]
async fn a_partition_named_in_capture_tables_is_told_its_root() {
    let capture = Capture::on_shared_testbed(PARTITIONED).await;
    let config = capture.config(&["l1.parted_2024"], "", "");
    assert_fails(
        &config,
        "captured tables",
        &[
            "l1.parted_2024, a partition of l1.parted",
            "name l1.parted instead",
        ],
    );
}

/// The pid of the walsender streaming from the capture's slot, once one does.
async fn slot_walsender(capture: &Capture<'_>) -> Option<i32> {
    capture
        .client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&capture.names.slot],
        )
        .await
        .expect("look up the slot")
        .get(0)
}

#[tokio::test]
async fn a_slot_streamed_by_a_running_cdc_source_is_ok() {
    let mut capture = Capture::on_shared_testbed(ONE_TABLE).await;
    let config = capture.config(&["l1.t"], "", "");
    capture.start(&config).await;
    let walsender = slot_walsender(&capture).await.expect("cdc-source streams");
    let (code, output) = verb("check", &config, &[]);
    assert_eq!(code, 0, "check should pass:\n{output}");
    assert!(!output.contains("FAIL"), "{output}");
    let line = output
        .lines()
        .find(|line| line.starts_with("ok    replication slot: "))
        .unwrap_or_else(|| panic!("no ok line for the slot:\n{output}"));
    let held = format!(
        "{} streaming, held by cdc-source pid {walsender} (pgcdc from ",
        capture.names.slot
    );
    assert!(line.contains(&held), "{held:?} missing from {line:?}");
    assert!(line.contains(", lag "), "no lag in {line:?}");
    assert_eq!(capture.stop(), 0);
    assert_passes(&config);
}

/// A `pg_recvlogical` streaming from a slot, killed when dropped.
struct Recvlogical(std::process::Child);

impl Drop for Recvlogical {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_slot_held_by_another_client_names_it_and_how_to_end_it() {
    let mut capture = Capture::on_shared_testbed(ONE_TABLE).await;
    let config = capture.config(&["l1.t"], "", "");
    // cdc-source makes its slot and publication, then leaves them to the other client.
    capture.start(&config).await;
    assert_eq!(capture.stop(), 0);
    let dsn = format!(
        "{}&replication=database",
        capture.pg.url(&capture.names.db, REPLICATOR)
    );
    let recvlogical = Recvlogical(
        std::process::Command::new(bin_dir().join("pg_recvlogical"))
            .args(["-d", &dsn, "--slot", &capture.names.slot, "--start"])
            .args(["-f", "/dev/null", "-o", "proto_version=1"])
            .args([
                "-o",
                &format!("publication_names={}", capture.names.publication),
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn pg_recvlogical"),
    );
    assert!(
        eventually(CHECK_TIMEOUT, || async {
            slot_walsender(&capture).await.is_some()
        })
        .await,
        "pg_recvlogical did not take the slot"
    );
    let walsender = slot_walsender(&capture)
        .await
        .expect("pg_recvlogical streams");
    assert_fails(
        &config,
        "replication slot",
        &[
            &format!("is in use by another connection (pid {walsender}, pg_recvlogical from "),
            &format!("SELECT pg_terminate_backend({walsender});"),
        ],
    );
    drop(recvlogical);
    assert!(
        eventually(CHECK_TIMEOUT, || async {
            slot_walsender(&capture).await.is_none()
        })
        .await,
        "the slot stayed held after pg_recvlogical ended"
    );
    assert_passes(&config);
}

#[tokio::test]
async fn an_unreachable_broker_and_registry_are_named() {
    let capture = Capture::on_shared_testbed(ONE_TABLE).await;
    let good = capture.config(&["l1.t"], "", "");
    let nowhere_broker = format!("127.0.0.1:{}", free_port());
    let nowhere_registry = format!("http://127.0.0.1:{}", free_port());
    let bad = good
        .replace(&capture.bootstrap, &nowhere_broker)
        .replace(&capture.registry_url, &nowhere_registry);
    let output = failing(&bad);
    assert_line(&output, "broker", &[&nowhere_broker, "kafka.brokers"]);
    assert_line(
        &output,
        "schema registry",
        &[&nowhere_registry, "schema_registry.url"],
    );
    assert_passes(&good);
}

#[tokio::test]
async fn wal_level_and_exhausted_slots_name_the_setting_and_the_restart() {
    let pg = PgCluster::with_setup(ClusterSetup {
        extra_conf: "wal_level = replica\nmax_replication_slots = 1".into(),
        ..ClusterSetup::default()
    })
    .await;
    let capture = one_table_on(&pg).await;
    capture
        .client
        .batch_execute("SELECT pg_create_physical_replication_slot('someone_elses')")
        .await
        .expect("take the only slot");
    let config = capture.config(&["l1.t"], "", "");
    let output = failing(&config);
    assert_line(
        &output,
        "wal_level",
        &[
            "wal_level is replica",
            "`wal_level = logical`",
            "a restart is needed",
        ],
    );
    assert_line(
        &output,
        "replication slots",
        &[
            "all 1 replication slots are in use (someone_elses)",
            "SELECT pg_drop_replication_slot('name');",
            "`max_replication_slots = 2`",
        ],
    );
    capture
        .client
        .batch_execute("ALTER SYSTEM SET wal_level = logical")
        .await
        .expect("fix wal_level");
    pg.restart().await;
    let client = pg.superuser_client(&capture.names.db).await;
    assert_fails(&config, "replication slots", &["someone_elses"]);
    client
        .batch_execute("SELECT pg_drop_replication_slot('someone_elses')")
        .await
        .expect("free the slot");
    assert_passes(&config);
}

#[tokio::test]
async fn a_pg_hba_rejection_is_told_the_line_to_add() {
    let superuser_only = "local all         postgres                 trust\n\
                          host  all         postgres 127.0.0.1/32    trust\n\
                          host  replication postgres 127.0.0.1/32    trust\n";
    let pg = PgCluster::with_setup(ClusterSetup {
        hba: Some(superuser_only.into()),
        ..ClusterSetup::default()
    })
    .await;
    let capture = one_table_on(&pg).await;
    let config = capture.config(&["l1.t"], "", "");
    let line = format!(
        "host {} {REPLICATOR} 127.0.0.1/32 scram-sha-256",
        capture.names.db
    );
    assert_fails(
        &config,
        "connection",
        &[
            "no pg_hba.conf entry",
            &format!("`{line}`"),
            "SELECT pg_reload_conf();",
        ],
    );
    pg.append_hba(&line);
    capture
        .client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    assert_passes(&config);
}

/// What pgcdc could leave behind on a server: slots, publications, schemas, relations.
async fn server_objects(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT 'slot ' || slot_name FROM pg_replication_slots \
             UNION ALL SELECT 'publication ' || pubname FROM pg_publication \
             UNION ALL SELECT 'schema ' || nspname FROM pg_namespace \
             UNION ALL SELECT 'relation ' || oid::regclass::text FROM pg_class \
                       WHERE relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) \
                         AND relnamespace::regnamespace::text NOT LIKE 'pg_toast%' \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("list server objects")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn init_then_teardown_leave_the_server_as_it_was() {
    let pg = PgCluster::new().await;
    let capture = one_table_on(&pg).await;
    let config = capture.config(&["l1.t"], "signal_table = \"pgcdc_signals.signal\"", "");
    let before = server_objects(&capture.client).await;

    let (code, output) = verb("init", &config, &[]);
    assert_eq!(code, 0, "{output}");
    let (slot, publication) = (&capture.names.slot, &capture.names.publication);
    for done in [
        "signal table pgcdc_signals.signal is ready".to_owned(),
        format!("publication {publication} covers 1 captured tables"),
        format!("replication slot {slot} is ready at "),
    ] {
        assert!(output.contains(&done), "{done:?} missing:\n{output}");
    }
    let after_init = server_objects(&capture.client).await;
    for created in [
        format!("slot {slot}"),
        format!("publication {publication}"),
        "schema pgcdc_signals".to_owned(),
        "relation pgcdc_signals.signal".to_owned(),
    ] {
        assert!(
            after_init.contains(&created),
            "{created} missing: {after_init:?}"
        );
    }
    assert_passes(&config);

    let (code, output) = verb("teardown", &config, &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        output.lines().filter(|l| l.starts_with("dropped ")).count(),
        4,
        "{output}"
    );
    assert_eq!(server_objects(&capture.client).await, before);

    // A publication someone else made is left alone.
    capture
        .client
        .batch_execute(&format!("CREATE PUBLICATION {publication} FOR TABLE l1.t"))
        .await
        .expect("user's publication");
    let (code, output) = verb("teardown", &config, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!(
            "left publication {publication}: pgcdc did not create it"
        )),
        "{output}"
    );
}
