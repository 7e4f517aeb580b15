//! The sink's side of a pipeline under test: a target database (on the capture's cluster or
//! a cluster of its own), a `cdc-sink` configuration for it, and helpers to wait for equality.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::support::capture::Capture;
use crate::support::process::CdcProcess;
use crate::support::{PgCluster, TestNames};

/// How long a pipeline may go without the target changing before settling fails.
const SETTLE_STALLED: Duration = Duration::from_secs(90);
/// How long a pipeline may take to settle however steadily the target changes: a stuck sink
/// is caught by `SETTLE_STALLED`; this ends a run that keeps changing without ever matching.
/// The heaviest test (an incremental snapshot of 200,000 rows under load, with a crash) has
/// needed over 300 s from a fresh clone with the debug build.
const SETTLE_MAX: Duration = Duration::from_secs(600);

/// A target database and the configuration of a sink applying one capture's topics to it.
pub struct Target {
    pub client: Client,
    pub db: String,
    pub config: String,
    pub sink: Option<CdcProcess>,
}

impl Target {
    /// A target database on the capture's own cluster.
    pub async fn new(capture: &Capture<'_>, extra_apply: &str) -> Target {
        Target::on(capture.pg, capture, extra_apply).await
    }

    /// A target database on `cluster`.
    pub async fn on(cluster: &PgCluster, capture: &Capture<'_>, extra_apply: &str) -> Target {
        let names = TestNames::new();
        let client = names.create_database(cluster).await;
        let config = format!(
            r#"
[postgres]
url = "{target}"

[apply]
topics = ["{prefix}.l1.*"]
group_id = "sink_{db}"
batch_timeout = "100ms"
{extra_apply}

[source_postgres]
url = "{source}"

[kafka]
brokers = "{brokers}"

[schema_registry]
url = "{registry}"

[metrics]
listen = ""
"#,
            target = cluster.url(&names.db, "postgres"),
            prefix = capture.names.topic_prefix,
            db = names.db,
            source = capture.pg.url(&capture.names.db, "postgres"),
            brokers = capture.bootstrap,
            registry = capture.registry_url,
        );
        Target {
            client,
            db: names.db.clone(),
            config,
            sink: None,
        }
    }

    /// A new client after the target cluster restarted.
    pub async fn reconnect(&mut self, cluster: &PgCluster) {
        self.client = cluster.superuser_client(&self.db).await;
    }

    /// Starts `cdc-sink run`.
    pub fn start(&mut self) {
        let mut sink = CdcProcess::sink("run", &self.config);
        assert!(sink.is_running(), "cdc-sink exited: {}", sink.stderr_text());
        self.sink = Some(sink);
    }

    /// Runs `cdc-sink verify` until it prints exactly `expected` (sorted lines) and exits
    /// accordingly (0 only when every line is ok), or fails with its last output once verify
    /// printed the same for [`SETTLE_STALLED`] (the sink is stuck, not slow) or after
    /// [`SETTLE_MAX`].
    pub fn settle(&mut self, expected: &[&str]) {
        self.settle_or_show(expected, String::new);
    }

    /// [`settle`](Self::settle), adding `context()` (another process's log) to a failure.
    fn settle_or_show(&mut self, expected: &[&str], context: impl Fn() -> String) {
        let started = Instant::now();
        let mut changed = started;
        let mut previous = String::new();
        let expected_code = if expected.iter().all(|line| line.contains(": ok (")) {
            0
        } else {
            1
        };
        loop {
            if let Some(sink) = self.sink.as_mut() {
                assert!(
                    sink.is_running(),
                    "cdc-sink exited:\n{}",
                    sink.stderr_text()
                );
            }
            let mut verify = CdcProcess::sink("verify", &self.config);
            let code = verify.wait_exit(Duration::from_secs(60));
            let output = verify.stdout_text();
            let mut lines: Vec<&str> = output.lines().collect();
            lines.sort_unstable();
            if code == expected_code && lines == expected {
                return;
            }
            if output != previous {
                changed = Instant::now();
                previous.clone_from(&output);
            }
            assert!(
                changed.elapsed() < SETTLE_STALLED && started.elapsed() < SETTLE_MAX,
                "verify never reported {expected:#?}; last exit {code} (unchanged for {:?}):\n{output}{}\nsink stderr:\n{}\n{}",
                changed.elapsed(),
                verify.stderr_text(),
                self.sink.as_ref().map(CdcProcess::stderr_text).unwrap_or_default(),
                context()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// [`settle`](Self::settle) on every one of `tables` (`schema.table`, applied under the
    /// same name) being equal, with the row count the source has now.
    pub async fn settle_like_source(&mut self, capture: &Capture<'_>, tables: &[&str]) {
        let mut expected = Vec::new();
        for table in tables {
            let rows: i64 = capture
                .client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .expect("count")
                .get(0);
            let unit = if rows == 1 { "row" } else { "rows" };
            expected.push(format!("{table} -> {table}: ok ({rows} {unit})"));
        }
        expected.sort();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        self.settle_or_show(&expected, || {
            format!("source stderr:\n{}", capture.source_log())
        });
    }

    /// The first column of every row `sql` returns, as text.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        self.client
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect()
    }
}
