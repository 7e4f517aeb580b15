//! A capture under test: a database of its own on a cluster, tables owned by the connector's
//! role (so the source creates the publication itself, as a user's first run does), the real
//! `cdc-source` binary streaming it to a broker, and helpers to read the decoded envelopes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::postgres::REPLICATOR;
use super::process::CdcProcess;
use super::{decode_avro, read_topic, Broker, PgCluster, ReplicationGuard, TestNames};

/// How long a test waits for records or for the source to become ready.
pub const WAIT: Duration = Duration::from_secs(60);

/// One test's database, names, and running source.
pub struct Capture<'a> {
    pub pg: &'a PgCluster,
    pub names: TestNames,
    pub client: Client,
    pub bootstrap: String,
    pub registry_url: String,
    pub source: Option<CdcProcess>,
    _guard: ReplicationGuard,
    /// A broker of this capture's own, stopped after its source.
    own_broker: Option<Broker>,
    /// Held by a heavy-load capture until it ends.
    _heavy: Option<SemaphorePermit<'static>>,
}

impl<'a> Capture<'a> {
    /// Creates the database, runs `schema_sql` as superuser, and hands the tables to the
    /// connector's role. Nothing streams until [`start`](Self::start).
    pub async fn new(
        pg: &'a PgCluster,
        broker: &Broker,
        registry_url: &str,
        schema_sql: &str,
    ) -> Capture<'a> {
        let names = TestNames::new();
        let client = names.create_database(pg).await;
        let guard = names.guard(pg);
        client
            .batch_execute(schema_sql)
            .await
            .expect("create the test schema");
        hand_to_replicator(&client, &names.db).await;
        Capture {
            pg,
            names,
            client,
            bootstrap: broker.bootstrap(),
            registry_url: registry_url.to_owned(),
            source: None,
            _guard: guard,
            own_broker: None,
            _heavy: None,
        }
    }

    /// [`new`](Self::new) on the process's shared cluster, broker and registry.
    pub async fn on_shared_testbed(schema_sql: &str) -> Capture<'static> {
        let registry = super::shared_registry().url();
        Capture::new(
            super::shared_pg().await,
            super::shared_broker().await,
            &registry,
            schema_sql,
        )
        .await
    }

    /// As [`on_shared_testbed`](Self::on_shared_testbed), on the broker for consumers that
    /// resume at stored offsets ([`super::broker::shared_record_broker`]).
    pub async fn on_shared_sink_testbed(schema_sql: &str) -> Capture<'static> {
        let registry = super::shared_registry().url();
        Capture::new(
            super::shared_pg().await,
            super::broker::shared_record_broker().await,
            &registry,
            schema_sql,
        )
        .await
    }

    /// As [`on_shared_sink_testbed`](Self::on_shared_sink_testbed), for tests that push
    /// hundreds of thousands of records or restart clients under load: one runs at a time
    /// (two on two cores starve each other and the servers until their waits time out), on
    /// an SQLite broker of its own (the engine serializes its writes, so on the shared broker
    /// every other test would wait behind them).
    pub async fn for_heavy_load(schema_sql: &str) -> Capture<'static> {
        Capture::heavy(Broker::start_persistent(), schema_sql).await
    }

    /// As [`for_heavy_load`](Self::for_heavy_load), on an in-memory broker of its own, which
    /// serves records many times faster: for a sink that reads its topics once from their
    /// start (see [`super::broker::shared_record_broker`] for why a resuming one cannot).
    pub async fn for_heavy_load_in_memory(schema_sql: &str) -> Capture<'static> {
        Capture::heavy(Broker::start_memory(), schema_sql).await
    }

    async fn heavy(
        broker: impl std::future::Future<Output = Broker>,
        schema_sql: &str,
    ) -> Capture<'static> {
        let permit = heavy_load_permit().await;
        let broker = broker.await;
        let registry = super::shared_registry().url();
        let mut capture =
            Capture::new(super::shared_pg().await, &broker, &registry, schema_sql).await;
        capture.own_broker = Some(broker);
        capture._heavy = Some(permit);
        capture
    }

    /// The source configuration for `tables`, with `extra` TOML appended to sections by name.
    /// A writer on a connection of its own: runs the statements `round(n)` returns for
    /// n = 1, 2, … with `pause` between them until `stop` is set; returns how many rounds ran.
    pub fn writer(
        &self,
        pause: Duration,
        stop: Arc<AtomicBool>,
        round: impl Fn(u64) -> String + Send + 'static,
    ) -> JoinHandle<u64> {
        let url = self.pg.url(&self.names.db, "postgres");
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("writer connects");
            tokio::spawn(connection);
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                rounds += 1;
                client
                    .batch_execute(&round(rounds))
                    .await
                    .expect("writer round");
                tokio::time::sleep(pause).await;
            }
            rounds
        })
    }

    pub fn config(&self, tables: &[&str], extra_capture: &str, extra_kafka: &str) -> String {
        let tables: Vec<String> = tables.iter().map(|t| format!("\"{t}\"")).collect();
        format!(
            r#"
[postgres]
url = "{url}"

[capture]
slot = "{slot}"
publication = "{publication}"
tables = [{tables}]
heartbeat_interval = "1s"
status_interval = "200ms"
{extra_capture}

[kafka]
brokers = "{bootstrap}"
topic_prefix = "{prefix}"
format = "avro"
{extra_kafka}

[schema_registry]
url = "{registry}"

[metrics]
listen = ""
"#,
            url = self.pg.url(&self.names.db, REPLICATOR),
            slot = self.names.slot,
            publication = self.names.publication,
            tables = tables.join(", "),
            bootstrap = self.bootstrap,
            prefix = self.names.topic_prefix,
            registry = self.registry_url,
        )
    }

    /// Starts `cdc-source run` with `config` and waits until it streams from its slot.
    pub async fn start(&mut self, config: &str) {
        let mut process = CdcProcess::run(config);
        let ready = self.wait_streaming(&mut process).await;
        assert!(
            ready,
            "cdc-source did not start streaming; stderr:\n{}",
            process.stderr_text()
        );
        self.source = Some(process);
    }

    async fn wait_streaming(&self, process: &mut CdcProcess) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if !process.is_running() {
                return false;
            }
            if self.slot_streaming().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Whether a walsender streams from this test's slot. A slot is already `active` while
    /// `CREATE_REPLICATION_SLOT` waits for running transactions (other tests') to finish;
    /// rows committed before it becomes consistent are not streamed, so that does not count.
    pub async fn slot_streaming(&self) -> bool {
        self.client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
                 WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')",
                &[&self.names.slot],
            )
            .await
            .expect("query pg_replication_slots")
            .is_some()
    }

    /// The slot's confirmed flush LSN as a number.
    pub async fn confirmed_flush(&self) -> u64 {
        let text: String = self
            .client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.names.slot],
            )
            .await
            .expect("query the slot")
            .get(0);
        parse_lsn(&text)
    }

    /// Copies this test's slot as `<slot>_backup`, for [`restore_slot`](Self::restore_slot).
    pub async fn back_up_slot(&self) {
        let slot = &self.names.slot;
        self.client
            .batch_execute(&format!(
                "SELECT pg_copy_logical_replication_slot('{slot}', '{slot}_backup')"
            ))
            .await
            .expect("copy the slot");
    }

    /// Puts the slot back as [`back_up_slot`](Self::back_up_slot) copied it (the source
    /// stopped), advanced to `advance_to` if given: the next source run publishes again what
    /// the runs since published from there.
    pub async fn restore_slot(&self, advance_to: Option<u64>) {
        let slot = &self.names.slot;
        let advance = advance_to.map_or(String::new(), |lsn| {
            format!(
                "SELECT pg_replication_slot_advance('{slot}', '{}/{:X}'::pg_lsn);",
                lsn >> 32,
                lsn & 0xffff_ffff
            )
        });
        self.client
            .batch_execute(&format!(
                "SELECT pg_drop_replication_slot('{slot}');
                 SELECT pg_copy_logical_replication_slot('{slot}_backup', '{slot}');
                 SELECT pg_drop_replication_slot('{slot}_backup'); {advance}"
            ))
            .await
            .expect("put the slot back");
    }

    /// The server's current WAL insert position as a number.
    pub async fn current_wal_lsn(&self) -> u64 {
        current_wal_lsn(&self.client).await
    }

    /// `<prefix>.<schema>.<table>`.
    pub fn topic(&self, table: &str) -> String {
        format!("{}.{table}", self.names.topic_prefix)
    }

    /// Reads `expected` records of a table's topic (blocking on a helper thread) and decodes
    /// keys and values; a tombstone's value is JSON null.
    pub async fn read(&self, table: &str, expected: usize) -> Vec<Decoded> {
        let records = self.read_within(table, expected, WAIT).await;
        if records.len() < expected {
            eprintln!(
                "only {} of {expected} records arrived on {}; source stderr:\n{}",
                records.len(),
                self.topic(table),
                self.source_log()
            );
        }
        records
    }

    /// [`read`](Self::read) that gives up after `timeout`, returning what arrived.
    pub async fn read_within(
        &self,
        table: &str,
        expected: usize,
        timeout: Duration,
    ) -> Vec<Decoded> {
        let (bootstrap, topic, registry) = (
            self.bootstrap.clone(),
            self.topic(table),
            self.registry_url.clone(),
        );
        tokio::task::spawn_blocking(move || {
            read_topic(&bootstrap, &topic, expected, timeout)
                .into_iter()
                .map(|record| Decoded {
                    key: record
                        .key
                        .as_deref()
                        .map_or(Value::Null, |k| decode_avro(&registry, k)),
                    value: record
                        .value
                        .as_deref()
                        .map_or(Value::Null, |v| decode_avro(&registry, v)),
                    headers: record.headers,
                    partition: record.partition,
                    offset: record.offset,
                })
                .collect()
        })
        .await
        .expect("reader thread")
    }

    /// What the running source printed, for assertion messages.
    pub fn source_log(&self) -> String {
        self.source
            .as_ref()
            .map(|s| s.stderr_text())
            .unwrap_or_default()
    }

    /// Stops the source with SIGTERM and returns its exit code.
    pub fn stop(&mut self) -> i32 {
        let mut process = self.source.take().expect("the source is running");
        process.terminate();
        process.wait_exit(WAIT)
    }
}

/// Held by a test that pushes hundreds of thousands of records or restarts its servers under
/// load, so that one such test runs at a time: two on two cores starve each other.
pub async fn heavy_load_permit() -> SemaphorePermit<'static> {
    static HEAVY_LOAD: Semaphore = Semaphore::const_new(1);
    HEAVY_LOAD.acquire().await.expect("never closed")
}

/// Lets the connector's role create the publication itself, as a user's first run does: it
/// may create in `db`, owns every table and uses every schema.
pub async fn hand_to_replicator(client: &Client, db: &str) {
    client
            .batch_execute(&format!(
                "GRANT CREATE ON DATABASE {db} TO {REPLICATOR};
                 DO $$ DECLARE t record; BEGIN
                   FOR t IN SELECT schemaname, tablename FROM pg_tables
                            WHERE schemaname NOT IN ('pg_catalog', 'information_schema') LOOP
                     EXECUTE format('ALTER TABLE %I.%I OWNER TO {REPLICATOR}', t.schemaname, t.tablename);
                   END LOOP;
                   FOR t IN SELECT nspname FROM pg_namespace
                            WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema' LOOP
                     EXECUTE format('GRANT USAGE ON SCHEMA %I TO {REPLICATOR}', t.nspname);
                   END LOOP;
                 END $$;",
                db = db
            ))
            .await
            .expect("hand the tables to the connector role");
}

/// The current WAL position of the server `client` is connected to, as a number.
pub async fn current_wal_lsn(client: &Client) -> u64 {
    let text: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("query pg_current_wal_lsn")
        .get(0);
    parse_lsn(&text)
}

/// A record read back: decoded key and value, and its headers.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub key: Value,
    pub value: Value,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl Decoded {
    /// The envelope's `op`.
    pub fn op(&self) -> &str {
        self.value["op"].as_str().unwrap_or("tombstone")
    }
}

/// Parses `X/Y` into a number.
pub fn parse_lsn(text: &str) -> u64 {
    let (high, low) = text.split_once('/').expect("an LSN");
    (u64::from_str_radix(high, 16).expect("hex") << 32) | u64::from_str_radix(low, 16).expect("hex")
}

/// Waits until `ready` holds, polling an async condition.
pub async fn eventually<F, Fut>(timeout: Duration, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if ready().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
